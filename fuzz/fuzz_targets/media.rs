//! The elementary-stream and MP4 readers: config records, Annex B conversion, ADTS, boxes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use mpegts::es;
    for ps in [es::avc_parameter_sets(data), es::hevc_parameter_sets(data)].into_iter().flatten() {
        let mut out = Vec::new();
        let _ = es::to_annex_b(mpegts::VideoType::H264, &ps, data, true, &mut out);
    }
    if let Ok(cfg) = es::parse_audio_specific_config(data) {
        let _ = es::adts_header(&cfg, data.len());
    }
    for b in fmp4::boxes(data).take(1000) {
        if b.is_err() {
            break;
        }
    }
    let _ = fmp4::complete_len(data);
});

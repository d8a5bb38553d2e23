//! Whole media files (FLV, MP4 with `moov` anywhere, fragmented MP4) read into a sample index
//! (`media::Media::open`), then every sample's payload built and a seek made.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = media::Media::open(&mut media::Slice(data)) else { return };
    assert!(m.samples.len() <= media::MAX_SAMPLES);
    assert!(m.headers.iter().all(|(_, h)| h.len() <= media::MAX_HEADER + 16));
    for s in m.samples.iter().take(10_000) {
        let start = (s.offset as usize).min(data.len());
        let end = start.saturating_add(s.size as usize).min(data.len());
        let _ = m.payload(s, &data[start..end]);
    }
    let at = m.seek(m.duration_ms / 2);
    assert!(at < m.samples.len());
});

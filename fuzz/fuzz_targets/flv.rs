//! FLV tag headers, codec configuration records and whole files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = flv::parse_video(data) {
        let _ = flv::codec::parse_video_config(h.codec, h.payload(data));
    }
    if let Ok(h) = flv::parse_audio(data) {
        let _ = flv::codec::parse_audio_config(h.codec, h.payload(data));
    }
    if let Ok(reader) = flv::FlvReader::new(bytes::Bytes::copy_from_slice(data)) {
        for tag in reader.take(1000) {
            if tag.is_err() {
                break;
            }
        }
    }
});

//! AMF0 (and the AMF3 subset) decoding, and re-encoding what decoded.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(values) = amf0::decode_all(data) {
        let mut out = Vec::new();
        for v in &values {
            amf0::encode(v, &mut out);
        }
    }
});

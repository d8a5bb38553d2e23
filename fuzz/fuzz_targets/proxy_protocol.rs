//! PROXY protocol headers (v1 and v2): `sluice::proxy_protocol::parse` on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::proxy_protocol::{parse, Error, MAX_HEADER, V1_MAX};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(p) => {
            // A header is a prefix of the input, within the bounds, and parses the same alone.
            assert!(p.consumed <= data.len() && p.consumed <= MAX_HEADER);
            assert!(p.version == 2 || p.consumed <= V1_MAX);
            assert_eq!(parse(&data[..p.consumed]), Ok(p));
        }
        // Incomplete means every byte so far is header: never more than a header can hold.
        Err(Error::Incomplete) => assert!(data.len() < MAX_HEADER),
        Err(_) => {}
    }
});

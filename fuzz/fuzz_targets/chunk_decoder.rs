//! The chunk decoder alone, after the first byte picks a chunk size.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&size, rest)) = data.split_first() else { return };
    let mut dec = rtmp::chunk::ChunkDecoder::new(1 << 16, 16);
    let _ = dec.set_chunk_size(128 + u32::from(size) * 16);
    let mut buf = bytes::BytesMut::from(rest);
    while let Ok(Some(_)) = dec.read(&mut buf) {}
});

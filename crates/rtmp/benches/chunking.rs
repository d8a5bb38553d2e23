//! `cargo bench -p rtmp --bench chunking`: the RTMP chunk stream's two hot paths, per message.
//!
//! - `encode`: a video message's chunks built once ([`rtmp::chunk::encode_message`]), as the hub
//!   does for every frame and chunk size its players use.
//! - `decode`: a publisher's chunked message reassembled by [`rtmp::chunk::ChunkDecoder`], as
//!   every ingest connection does for every message. Each iteration first copies the message's
//!   wire bytes into the connection's read buffer (what the socket read does), so that buffer is
//!   warm in cache as it is live; the copy is a small part (a `memcpy` of the bytes).
//!
//! 10 KB (an inter frame at 2.5 Mbit/s) and 100 KB (a keyframe) messages, at chunk size 4096
//! (what ffmpeg and OBS publish with, and `chunk_size 4096`) and 128 (the protocol's default: a
//! publisher that never sends Set Chunk Size, or `chunk_size 128`). Throughput is payload bytes.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rtmp::chunk::{encode_message, ChunkDecoder};
use std::hint::black_box;

const VIDEO_CSID: u32 = 6;
const VIDEO_TYPE: u8 = 9;
const SIZES: [usize; 2] = [10_000, 100_000];
const CHUNK_SIZES: [u32; 2] = [4096, 128];

/// An AVC video tag body of `len` bytes: FLV video header, then one length-prefixed NAL unit of
/// random-looking bytes (so nothing compresses or repeats in a way a real frame would not).
fn video_payload(len: usize, keyframe: bool) -> Vec<u8> {
    let mut p = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    let nal_len = len - p.len() - 4;
    p.extend_from_slice(&(nal_len as u32).to_be_bytes());
    p.push(if keyframe { 0x65 } else { 0x41 });
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ len as u64;
    while p.len() < len {
        // xorshift64: cheap, deterministic noise.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.push(x as u8);
    }
    p
}

fn encoded(payload: &[u8], chunk_size: u32) -> BytesMut {
    let mut out = BytesMut::new();
    encode_message(&mut out, chunk_size, VIDEO_CSID, 40_000, VIDEO_TYPE, 1, payload);
    out
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtmp/encode");
    for len in SIZES {
        let payload = video_payload(len, len > 50_000);
        g.throughput(Throughput::Bytes(len as u64));
        for chunk_size in CHUNK_SIZES {
            g.bench_with_input(BenchmarkId::new(format!("chunk{chunk_size}"), len), &payload, |b, payload| {
                b.iter(|| black_box(encoded(black_box(payload), chunk_size)))
            });
        }
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtmp/decode");
    for len in SIZES {
        let payload = video_payload(len, len > 50_000);
        g.throughput(Throughput::Bytes(len as u64));
        for chunk_size in CHUNK_SIZES {
            let wire = encoded(&payload, chunk_size);
            let mut decoder = ChunkDecoder::new(5_000_000, 16);
            decoder.set_chunk_size(chunk_size).expect("a valid chunk size");
            // One read buffer for the connection's life, as ingest keeps it: each iteration copies
            // the wire bytes in (standing for the socket read) and takes the message out.
            let mut buf = BytesMut::with_capacity(256 * 1024);
            g.bench_function(BenchmarkId::new(format!("chunk{chunk_size}"), len), |b| {
                b.iter(|| {
                    buf.extend_from_slice(&wire);
                    black_box(decoder.read(&mut buf).expect("valid chunks").expect("a whole message"))
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);

//! `cargo bench -p fmp4 --bench fragment`: fMP4 fragments (HLS fMP4 segments and LL-HLS parts,
//! DASH/CMAF chunks, MP4 recordings) per frame.
//!
//! - `fmp4/frame`: a fragment holding one frame: a 10 KB H.264 keyframe, a 10 KB inter frame
//!   (with a composition offset, as B-frames give) and a 371-byte AAC frame (128 kbit/s at
//!   44.1 kHz). A CMAF chunk of one frame is this.
//! - `fmp4/part`: a 200 ms LL-HLS part at 30 fps: 6 video frames (the first a keyframe) and 9 AAC
//!   frames in two track runs; divide by 15 for the cost per frame.
//!
//! Throughput is the sample bytes carried.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fmp4::{fragment, Sample, TrackRun};
use std::hint::black_box;

const VIDEO_FRAME: usize = 10_000;
const AAC_FRAME: usize = 371;
const VIDEO_TRACK: u32 = 1;
const AUDIO_TRACK: u32 = 2;

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    (0..len)
        .map(|_| {
            // xorshift64: cheap, deterministic noise.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One length-prefixed NAL unit of `len` bytes in all (fMP4 carries AVC as RTMP does).
fn avc_sample(len: usize, keyframe: bool, seed: u64) -> Sample {
    let mut data = ((len - 4) as u32).to_be_bytes().to_vec();
    data.push(if keyframe { 0x65 } else { 0x41 });
    data.extend_from_slice(&noise(len - 5, seed));
    Sample { duration: 3000, keyframe, cts_offset: if keyframe { 0 } else { 6000 }, data: Bytes::from(data) }
}

fn aac_sample(seed: u64) -> Sample {
    Sample { duration: 1024, keyframe: true, cts_offset: 0, data: Bytes::from(noise(AAC_FRAME, seed)) }
}

fn bytes_of(samples: &[Sample]) -> u64 {
    samples.iter().map(|s| s.data.len() as u64).sum()
}

fn one_frame(c: &mut Criterion) {
    let mut g = c.benchmark_group("fmp4/frame");
    let cases = [
        ("h264_key_10k", VIDEO_TRACK, avc_sample(VIDEO_FRAME, true, 1)),
        ("h264_inter_10k", VIDEO_TRACK, avc_sample(VIDEO_FRAME, false, 2)),
        ("aac_371", AUDIO_TRACK, aac_sample(3)),
    ];
    for (name, track_id, sample) in cases {
        let samples = [sample];
        g.throughput(Throughput::Bytes(bytes_of(&samples)));
        let mut sequence = 1u32;
        g.bench_function(name, |b| {
            b.iter(|| {
                sequence = sequence.wrapping_add(1);
                let run = TrackRun { track_id, base_decode_time: u64::from(sequence) * 3000, samples: &samples };
                black_box(fragment(sequence, black_box(&[run])).expect("a valid fragment"))
            })
        });
    }
    g.finish();
}

fn part(c: &mut Criterion) {
    let video: Vec<Sample> = (0..6).map(|i| avc_sample(VIDEO_FRAME, i == 0, i)).collect();
    let audio: Vec<Sample> = (0..9).map(|i| aac_sample(100 + i)).collect();
    let mut g = c.benchmark_group("fmp4/part");
    g.throughput(Throughput::Bytes(bytes_of(&video) + bytes_of(&audio)));
    let mut sequence = 1u32;
    g.bench_function("6_video_9_aac", |b| {
        b.iter(|| {
            sequence = sequence.wrapping_add(1);
            let runs = [
                TrackRun { track_id: VIDEO_TRACK, base_decode_time: u64::from(sequence) * 18_000, samples: &video },
                TrackRun { track_id: AUDIO_TRACK, base_decode_time: u64::from(sequence) * 9216, samples: &audio },
            ];
            black_box(fragment(sequence, black_box(&runs)).expect("a valid fragment"))
        })
    });
    g.finish();
}

criterion_group!(benches, one_frame, part);
criterion_main!(benches);

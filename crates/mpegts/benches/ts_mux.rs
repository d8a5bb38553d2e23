//! `cargo bench -p mpegts --bench ts_mux`: HLS's TS path per frame, as the segmenter runs it
//! (crates/hls/src/segmenter.rs, `write_video` and `flush_ts_audio`).
//!
//! - `ts/frame`: a whole frame, from the RTMP codec payload to TS packets: a 10 KB H.264 keyframe
//!   (SPS and PPS not in band, so [`mpegts::to_annex_b`] inserts them, as for ffmpeg's and OBS's
//!   streams) and inter frame converted to Annex B then muxed as one PES, and a 371-byte AAC
//!   frame (128 kbit/s at 44.1 kHz) given its ADTS header then muxed as one PES.
//! - `ts/pes`: [`mpegts::Muxer::write_pes`] alone, on the same elementary stream bytes.
//!
//! Throughput is the frame's codec payload bytes.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mpegts::{
    adts_header, avc_parameter_sets, parse_audio_specific_config, to_annex_b, AacConfig, AudioType, Muxer,
    ParameterSets, Pes, Track, VideoType,
};
use std::hint::black_box;

const VIDEO_FRAME: usize = 10_000;
const AAC_FRAME: usize = 371;
/// AAC-LC, 44.1 kHz, stereo.
const ASC: [u8; 2] = [0x12, 0x10];

/// An `AVCDecoderConfigurationRecord` (4-byte NAL lengths) with one SPS and one PPS, as x264
/// writes for 720p High profile.
fn avcc() -> Vec<u8> {
    let sps = [0x67, 0x64, 0x00, 0x1F, 0xAC, 0xD9, 0x40, 0x50, 0x05, 0xBB, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10];
    let pps = [0x68, 0xEB, 0xE3, 0xCB, 0x22, 0xC0];
    let mut r = vec![1, 0x64, 0x00, 0x1F, 0xFF, 0xE1];
    r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    r.extend_from_slice(&sps);
    r.push(1);
    r.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    r.extend_from_slice(&pps);
    r
}

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

/// `len` bytes of length-prefixed NAL units as an FLV AVC frame carries them after its 5-byte
/// tag header: an SEI then the slice (IDR for a keyframe).
fn avc_frame(len: usize, keyframe: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let sei = [&[0x06u8, 0x05, 0x10][..], &noise(17, 1)].concat();
    out.extend_from_slice(&(sei.len() as u32).to_be_bytes());
    out.extend_from_slice(&sei);
    let slice_len = len - out.len() - 4;
    out.extend_from_slice(&(slice_len as u32).to_be_bytes());
    out.push(if keyframe { 0x65 } else { 0x41 });
    out.extend_from_slice(&noise(slice_len - 1, len as u64));
    out
}

fn mux_video(mux: &mut Muxer, ps: &ParameterSets, data: &[u8], keyframe: bool, out: &mut Vec<u8>) {
    // A fresh buffer per frame, as the segmenter does.
    let mut es = Vec::with_capacity(data.len() + 256);
    to_annex_b(VideoType::H264, ps, data, keyframe, &mut es).expect("valid NAL units");
    let pes = Pes { pts: 126_000, dts: Some(120_000), pcr: Some(120_000), random_access: keyframe, data: &es };
    mux.write_pes(Track::Video, &pes, out).expect("video track");
}

fn mux_audio(mux: &mut Muxer, cfg: &AacConfig, raw: &[u8], es: &mut Vec<u8>, out: &mut Vec<u8>) {
    es.clear();
    es.extend_from_slice(&adts_header(cfg, raw.len()).expect("ADTS can say it"));
    es.extend_from_slice(raw);
    let pes = Pes { pts: 126_000, dts: None, pcr: None, random_access: false, data: es };
    mux.write_pes(Track::Audio, &pes, out).expect("audio track");
}

fn frame(c: &mut Criterion) {
    let ps = avc_parameter_sets(&avcc()).expect("a valid record");
    let cfg = parse_audio_specific_config(&ASC).expect("a valid config");
    let mut mux = Muxer::new(Some(VideoType::H264), Some(AudioType::Aac));
    // The segment being written: cleared when it passes 1 MB so it stays in the same memory.
    let mut out = Vec::with_capacity(1 << 21);
    let mut g = c.benchmark_group("ts/frame");
    for (name, keyframe) in [("h264_key_10k", true), ("h264_inter_10k", false)] {
        let data = avc_frame(VIDEO_FRAME, keyframe);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                if out.len() > 1 << 20 {
                    out.clear();
                }
                mux_video(&mut mux, &ps, black_box(&data), keyframe, &mut out);
            })
        });
    }
    let raw = noise(AAC_FRAME, 7);
    let mut es = Vec::new();
    g.throughput(Throughput::Bytes(AAC_FRAME as u64));
    g.bench_function("aac_371", |b| {
        b.iter(|| {
            if out.len() > 1 << 20 {
                out.clear();
            }
            mux_audio(&mut mux, &cfg, black_box(&raw), &mut es, &mut out);
        })
    });
    g.finish();
}

fn pes(c: &mut Criterion) {
    let ps = avc_parameter_sets(&avcc()).expect("a valid record");
    let mut es = Vec::new();
    to_annex_b(VideoType::H264, &ps, &avc_frame(VIDEO_FRAME, false), false, &mut es).expect("valid NAL units");
    let mut mux = Muxer::new(Some(VideoType::H264), Some(AudioType::Aac));
    let mut out = Vec::with_capacity(1 << 21);
    let mut g = c.benchmark_group("ts/pes");
    g.throughput(Throughput::Bytes(es.len() as u64));
    g.bench_function("video_10k", |b| {
        b.iter(|| {
            if out.len() > 1 << 20 {
                out.clear();
            }
            let pes = Pes { pts: 126_000, dts: Some(120_000), pcr: Some(120_000), random_access: false, data: &es };
            mux.write_pes(Track::Video, black_box(&pes), &mut out).expect("video track");
        })
    });
    g.finish();
}

criterion_group!(benches, frame, pes);
criterion_main!(benches);

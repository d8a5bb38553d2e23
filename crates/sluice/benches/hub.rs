//! `cargo bench -p sluice --bench hub`: the hub's hand-over of a frame to its subscribers, and
//! its once-per-chunk-size RTMP chunk cache, without sockets or wake-ups (sluice-bench's `fanout`
//! bench measures the wake-ups of subscriber tasks on a runtime).
//!
//! - `hub/handover`: the publisher pushes one 10 KB video frame ([`Stream::push`]) into a stream
//!   with N = 1, 100 and 1000 subscribers, then each subscriber takes its batch
//!   ([`Subscriber::try_batch`], what `next_batch` does once woken). Throughput is hand-overs
//!   (elements): time per iteration / N is the cost per frame per subscriber.
//! - `hub/handover_rtmp`: the same, and each subscriber also takes the frame's RTMP chunks
//!   ([`Frame::rtmp_chunks`]) as an RTMP player does before writing them.
//! - `hub/chunks`: a frame's chunks the first time (built, with the frame made) and every later
//!   time (cached) at chunk size 4096, and at chunk size 128, another than the cached one (built
//!   per call).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::hub::{Entry, Frame, Hub, Publisher, Stream, StreamKey, StreamOptions, Subscriber};
use std::hint::black_box;
use std::sync::Arc;

const PAYLOAD: usize = 10_000;
/// What connection.rs takes per wake-up (its `MAX_BATCH`).
const MAX_BATCH: usize = 64;
const CHUNK_SIZE: u32 = 4096;
/// The chunk stream RTMP players get video on (`MediaKind::Video.csid()`).
const VIDEO_CSID: u32 = 6;
/// One keyframe every 60 frames: 2 s GOPs at 30 fps, so the GOP cache works as it does live.
const GOP: u32 = 60;

/// An AVC video tag body: FLV video header, then one length-prefixed NAL unit of noise.
fn video_payload(keyframe: bool) -> Bytes {
    let mut p = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    p.extend_from_slice(&((PAYLOAD - 9) as u32).to_be_bytes());
    p.push(if keyframe { 0x65 } else { 0x41 });
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while p.len() < PAYLOAD {
        // xorshift64: cheap, deterministic noise.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.push(x as u8);
    }
    Bytes::from(p)
}

/// The publisher's side: frames with rising timestamps, a keyframe every [`GOP`].
struct Source {
    key: Bytes,
    inter: Bytes,
    n: u32,
}

impl Source {
    fn new() -> Self {
        Self { key: video_payload(true), inter: video_payload(false), n: 0 }
    }

    fn next(&mut self) -> Frame {
        self.n += 1;
        let payload = if self.n.is_multiple_of(GOP) { &self.key } else { &self.inter };
        Frame::video(self.n * 33, payload.clone()).expect("an AVC frame")
    }
}

/// A published stream with `n` subscribers (kept with the hub and publisher that own it).
fn stream_with(n: usize) -> (Arc<Hub>, Publisher, Arc<Stream>, Vec<Subscriber>) {
    let hub = Hub::new();
    let key = StreamKey { app: "live".into(), name: "bench".into() };
    let publisher = hub.publish(key, StreamOptions { ring_len: 256, gop_cache: true }).expect("free to publish");
    let stream = publisher.stream().clone();
    let subs = (0..n).map(|_| stream.subscribe().1).collect();
    (hub, publisher, stream, subs)
}

fn handover(c: &mut Criterion, group: &str, take_chunks: bool) {
    let mut g = c.benchmark_group(group);
    for n in [1usize, 100, 1000] {
        let (_hub, _publisher, stream, mut subs) = stream_with(n);
        let mut source = Source::new();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                stream.push(source.next());
                for sub in &mut subs {
                    let batch = sub.try_batch(MAX_BATCH);
                    debug_assert_eq!(batch.entries.len(), 1);
                    if take_chunks {
                        for entry in &batch.entries {
                            if let Entry::Frame(f) = entry {
                                black_box(f.rtmp_chunks(CHUNK_SIZE, VIDEO_CSID));
                            }
                        }
                    }
                    black_box(batch);
                }
            })
        });
    }
    g.finish();
}

fn handover_plain(c: &mut Criterion) {
    handover(c, "hub/handover", false);
}

fn handover_rtmp(c: &mut Criterion) {
    handover(c, "hub/handover_rtmp", true);
}

fn chunks(c: &mut Criterion) {
    let mut g = c.benchmark_group("hub/chunks");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    let payload = video_payload(false);
    let fresh = || Frame::video(40_000, payload.clone()).expect("an AVC frame");
    // A new frame each time (its making, a header parse, is part of the figure): criterion's
    // batched setup would keep every built buffer until the batch ends, timing fresh pages
    // instead of the allocator's reused memory, which is what a live stream gets.
    g.bench_function("built", |b| b.iter(|| black_box(fresh().rtmp_chunks(CHUNK_SIZE, VIDEO_CSID))));
    let cached = fresh();
    cached.rtmp_chunks(CHUNK_SIZE, VIDEO_CSID);
    g.bench_function("cached", |b| b.iter(|| black_box(cached.rtmp_chunks(CHUNK_SIZE, VIDEO_CSID))));
    g.bench_function("other_size", |b| b.iter(|| black_box(cached.rtmp_chunks(128, VIDEO_CSID))));
    g.finish();
}

criterion_group!(benches, handover_plain, handover_rtmp, chunks);
criterion_main!(benches);

//! `cargo bench -p sluice-bench --bench fanout`: the cost of waking subscribers and handing them a
//! frame, without sockets. Compares the hub's per-stream ring (what sluice
//! uses) with `tokio::sync::broadcast`, the obvious alternative (tokio#5465: its receivers contend
//! on one lock), and measures building a frame's RTMP chunks once versus once per player.
//!
//! Each round the publisher pushes one video frame and waits until every subscriber task has
//! taken it, so the figure is the wake-up + hand-over cost per subscriber per frame, on one and on
//! two worker threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice::hub::{Entry, Frame, Hub, StreamKey, StreamOptions};

const FRAMES: usize = 300;
const PAYLOAD: usize = 10_000;

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().expect("runtime")
}

/// Counts hand-overs; the one that completes a round wakes the publisher.
#[derive(Default)]
struct Done {
    count: AtomicUsize,
    target: AtomicUsize,
    round_over: tokio::sync::Notify,
}

impl Done {
    fn add(&self, n: usize) {
        let now = self.count.fetch_add(n, Ordering::AcqRel) + n;
        if now >= self.target.load(Ordering::Acquire) {
            self.round_over.notify_one();
        }
    }

    async fn wait_for(&self, target: usize) {
        self.target.store(target, Ordering::Release);
        while self.count.load(Ordering::Acquire) < target {
            self.round_over.notified().await;
        }
    }
}

fn frame(i: usize) -> Frame {
    let mut payload = vec![0u8; PAYLOAD];
    payload[0] = if i.is_multiple_of(60) { 0x17 } else { 0x27 };
    payload[1] = 1;
    Frame::video(i as u32 * 33, Bytes::from(payload)).expect("an AVC frame")
}

fn hub_ring(workers: usize, subscribers: usize) -> Duration {
    runtime(workers).block_on(async {
        let hub = Hub::new();
        let key = StreamKey { app: "live".into(), name: "bench".into() };
        let publisher = hub.publish(key, StreamOptions { ring_len: 256, gop_cache: true }).unwrap();
        let stream = publisher.stream().clone();
        let done = Arc::new(Done::default());
        for _ in 0..subscribers {
            let (_, mut sub) = stream.subscribe();
            let done = done.clone();
            tokio::spawn(async move {
                let mut seen = 0;
                while seen < FRAMES {
                    let batch = sub.next_batch(64).await;
                    let frames = batch.entries.iter().filter(|e| matches!(e, Entry::Frame(_))).count();
                    seen += frames;
                    done.add(frames);
                }
            });
        }
        tokio::task::yield_now().await;
        let start = Instant::now();
        for i in 0..FRAMES {
            stream.push(frame(i));
            done.wait_for((i + 1) * subscribers).await;
        }
        start.elapsed()
    })
}

fn broadcast(workers: usize, subscribers: usize) -> Duration {
    runtime(workers).block_on(async {
        let (tx, _) = tokio::sync::broadcast::channel::<Arc<Frame>>(256);
        let done = Arc::new(Done::default());
        for _ in 0..subscribers {
            let mut rx = tx.subscribe();
            let done = done.clone();
            tokio::spawn(async move {
                for _ in 0..FRAMES {
                    if rx.recv().await.is_err() {
                        break;
                    }
                    done.add(1);
                }
            });
        }
        tokio::task::yield_now().await;
        let start = Instant::now();
        for i in 0..FRAMES {
            let _ = tx.send(Arc::new(frame(i)));
            done.wait_for((i + 1) * subscribers).await;
        }
        start.elapsed()
    })
}

fn chunking(players: usize) -> (Duration, Duration) {
    let frames: Vec<Frame> = (0..FRAMES).map(frame).collect();
    let start = Instant::now();
    for f in &frames {
        for _ in 0..players {
            std::hint::black_box(f.rtmp_chunks(4096, 6));
        }
    }
    let shared = start.elapsed();
    let start = Instant::now();
    for f in &frames {
        for _ in 0..players {
            let mut out = bytes::BytesMut::new();
            rtmp::chunk::encode_message(&mut out, 4096, 6, f.timestamp, 9, 1, &f.payload);
            std::hint::black_box(out);
        }
    }
    (shared, start.elapsed())
}

fn per_op(d: Duration, ops: usize) -> f64 {
    d.as_nanos() as f64 / ops as f64
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep it quick there.
    let quick = !std::env::args().any(|a| a == "--bench");
    let counts: &[usize] = if quick { &[100] } else { &[100, 1000, 5000] };
    println!("fan-out hand-over: {FRAMES} frames of {PAYLOAD} bytes, ns per subscriber per frame");
    println!("{:>8}  {:>12}  {:>9}  {:>9}", "workers", "subscribers", "hub ring", "broadcast");
    for workers in [1, 2] {
        for &n in counts {
            let ring = per_op(hub_ring(workers, n), n * FRAMES);
            let bc = per_op(broadcast(workers, n), n * FRAMES);
            println!("{workers:>8}  {n:>12}  {ring:>9.0}  {bc:>9.0}");
        }
    }
    let players = if quick { 10 } else { 1000 };
    let (shared, each) = chunking(players);
    println!(
        "RTMP chunking for {players} players: built once and shared {:.0} ns/player/frame, built per player {:.0} ns/player/frame",
        per_op(shared, players * FRAMES),
        per_op(each, players * FRAMES)
    );
}

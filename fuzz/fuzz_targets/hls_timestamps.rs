//! The HLS segmenter fed valid H.264/AAC frames with hostile timestamps: each 6-byte record is a
//! kind byte (track, keyframe, how the timestamp moves) and 4 bytes of timestamp or step, then a
//! frame size byte. Checked after every run, for MPEG-TS and fMP4: no panic; the target
//! duration stays bounded and no `#EXTINF` is 0.000; held bytes stay under the segment bound;
//! in every MPEG-TS segment each track's DTS increases, PTS >= DTS, and video starts at a
//! keyframe.
#![no_main]
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// An AVC sequence header (FLV tag body) for 1280x720 High profile.
const AVC_HEADER: [u8; 52] = [
    0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9,
    0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19,
    0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8, 0x00,
];
/// AAC LC, 44100 Hz, stereo.
const AAC_HEADER: [u8; 4] = [0xAF, 0x00, 0x12, 0x10];
const VIDEO_PID: u16 = 0x100;

fn video(key: bool, cts_ms: i32, size: usize) -> Bytes {
    let nal_len = size as u32 + 1;
    let cts = cts_ms.to_be_bytes();
    let mut b = vec![if key { 0x17 } else { 0x27 }, 1, cts[1], cts[2], cts[3]];
    b.extend_from_slice(&nal_len.to_be_bytes());
    b.push(if key { 0x65 } else { 0x41 });
    b.resize(b.len() + size, 0x88);
    Bytes::from(b)
}

fn audio(size: usize) -> Bytes {
    let mut b = vec![0xAF, 0x01, 0x21, 0x10];
    b.resize(4 + size.max(2), 0x8c);
    Bytes::from(b)
}

/// Feeds one tag body, its header parsed first (as sluice's ingest does).
fn push(seg: &mut hls::Segmenter, video: bool, ts: u32, body: &Bytes) {
    if video {
        seg.push_video(ts, flv::parse_video(body).ok().as_ref(), body, 0);
    } else {
        seg.push_audio(ts, flv::parse_audio(body).ok().as_ref(), body, 0);
    }
}

/// `b` after `a` on the 33-bit MPEG-TS clock.
fn after(a: u64, b: u64) -> bool {
    let d = b.wrapping_sub(a) & ((1 << 33) - 1);
    d != 0 && d < 1 << 32
}

fn check_segment(data: &[u8]) {
    let starts = mpegts::read::pes_starts(data);
    if let Some(first) = starts.iter().find(|p| p.pid == VIDEO_PID) {
        assert!(first.random_access, "a segment starts mid-GOP");
    }
    for pid in [VIDEO_PID, VIDEO_PID + 1] {
        let track: Vec<_> = starts.iter().filter(|p| p.pid == pid).collect();
        for w in track.windows(2) {
            let (a, b) = (w[0].dts.unwrap(), w[1].dts.unwrap());
            assert!(after(a, b), "pid {pid:#x}: DTS {a} then {b}");
        }
        for p in track {
            let (pts, dts) = (p.pts.unwrap(), p.dts.unwrap());
            assert!(pts == dts || after(dts, pts), "PTS {pts} before DTS {dts}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    for container in [hls::Container::Ts, hls::Container::Fmp4] {
        let settings = hls::Settings {
            container,
            fragment: Duration::from_secs(1),
            max_fragment: Duration::from_secs(4),
            ..hls::Settings::default()
        };
        let Ok(mut seg) = hls::Segmenter::new(settings, "f", Box::new(|| [0; 16])) else { return };
        push(&mut seg, true, 0, &Bytes::from_static(&AVC_HEADER));
        push(&mut seg, false, 0, &Bytes::from_static(&AAC_HEADER));
        let limit = seg.max_segment_bytes();
        let mut ts = 0u32;
        let check = |seg: &mut hls::Segmenter| {
            while let Some(ev) = seg.poll_event() {
                if let hls::Event::Segment { data, duration, .. } = ev {
                    assert!(duration > 0.0005 && duration <= 11.0, "segment of {duration} s");
                    if container == hls::Container::Ts {
                        check_segment(&data);
                    }
                }
            }
            assert!(seg.held_bytes() <= limit + (1 << 20), "{} bytes held", seg.held_bytes());
        };
        for rec in data.chunks_exact(6) {
            let kind = rec[0];
            let value = u32::from_be_bytes([rec[1], rec[2], rec[3], rec[4]]);
            ts = match kind >> 4 {
                0..=9 => ts.wrapping_add(value % 200),
                10 => ts,
                11 => ts.wrapping_sub(value % 100_000),
                12 => ts.wrapping_add(value),
                _ => value,
            };
            let size = usize::from(rec[5]) * 16;
            let is_video = kind & 1 == 1;
            let body = if is_video { video(kind & 2 == 2, i32::from(rec[5]) - 64, size) } else { audio(size) };
            push(&mut seg, is_video, ts, &body);
            check(&mut seg);
        }
        seg.finish();
        check(&mut seg);
        let text = seg.playlist();
        let target: u64 = text.lines().find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:")).unwrap().parse().unwrap();
        // max_fragment (4 s) + the largest step the timeline lets through (5 s) + a frame.
        assert!(target <= 11, "{text}");
        assert!(!text.contains("#EXTINF:0.000"), "{text}");
    }
});

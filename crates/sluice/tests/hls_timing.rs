//! HLS timing end to end: ffmpeg publishes into sluice, and the low-latency fMP4 playlist and
//! segments it writes keep RFC 8216's rules exactly: program date-times advance by `#EXTINF`,
//! parts add up to their segment, nothing is above its target, and each track's fragments follow
//! each other without gap or overlap.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn printed_ms(text: &str) -> u64 {
    let (s, ms) = text.split_once('.').unwrap();
    assert_eq!(ms.len(), 3, "three decimals: {text}");
    s.parse::<u64>().unwrap() * 1000 + ms.parse::<u64>().unwrap()
}

/// Milliseconds of the day: the test lasts seconds, and differences are taken modulo a day.
fn pdt_ms(text: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| text[r].parse::<u64>().unwrap();
    ((n(11..13) * 60 + n(14..16)) * 60 + n(17..19)) * 1000 + n(20..23)
}

#[test]
fn ffmpeg_into_low_latency_fmp4_gives_exact_dates_durations_and_decode_times() {
    let dir = TempDir::new("hls-timing");
    let hls = dir.path("hls");
    let server = Server::start(&format!(
        "hls on; hls_path {}; hls_fragment 1s; hls_fragment_type fmp4; hls_low_latency on; \
         hls_part_duration 300ms; hls_playlist_length 20s;",
        hls.display()
    ));
    let _publisher = ffmpeg_publish(&server.url("timing"), 30, 25);
    let playlist = hls.join("timing.m3u8");
    let deadline = Instant::now() + Duration::from_secs(40);
    let text = loop {
        let text = std::fs::read_to_string(&playlist).unwrap_or_default();
        if text.matches("#EXTINF").count() >= 6 {
            break text;
        }
        assert!(Instant::now() < deadline, "no playlist; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let target: u64 = text.lines().find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:")).unwrap().parse().unwrap();
    let part_target = printed_ms(text.lines().find_map(|l| l.strip_prefix("#EXT-X-PART-INF:PART-TARGET=")).unwrap());
    let (mut pdt, mut parts, mut previous): (Option<u64>, Vec<u64>, Option<(u64, u64)>) = (None, Vec::new(), None);
    let mut files = Vec::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = Some(pdt_ms(v));
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:DURATION=") {
            let d = printed_ms(v.split(',').next().unwrap());
            assert!(d <= part_target, "part {d} ms above PART-TARGET: {text}");
            parts.push(d);
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let d = printed_ms(v.trim_end_matches(','));
            assert!((d + 500) / 1000 <= target, "EXTINF {d} ms above TARGETDURATION: {text}");
            if !parts.is_empty() {
                assert_eq!(parts.iter().sum::<u64>(), d, "parts {parts:?} of a {d} ms segment: {text}");
            }
            let start = pdt.take().expect("a date-time per segment");
            if let Some((p, pd)) = previous {
                assert_eq!((start + 86_400_000 - p) % 86_400_000, pd, "PDT advances by EXTINF: {text}");
            }
            previous = Some((start, d));
            parts.clear();
        } else if !line.starts_with('#') {
            files.push(hls.join(line));
        }
    }
    // Every track's fragments, across the listed segments, start where the previous ended.
    let mut ends = std::collections::BTreeMap::<u32, u64>::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        for b in fmp4::boxes(&data) {
            let b = b.unwrap();
            if &b.kind != b"moof" {
                continue;
            }
            for run in fmp4::parse_moof(&data[b.offset..b.end()]).unwrap() {
                let start = run.base_decode_time.unwrap();
                if let Some(end) = ends.get(&run.track_id) {
                    assert_eq!(start, *end, "track {} of {}: gap or overlap", run.track_id, file.display());
                }
                ends.insert(run.track_id, start + run.samples.iter().map(|s| u64::from(s.duration)).sum::<u64>());
            }
        }
    }
    assert_eq!(ends.len(), 2, "video and audio");
}

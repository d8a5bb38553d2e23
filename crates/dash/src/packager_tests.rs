use super::*;

/// An AVC sequence header (FLV tag body) for 1280x720 High profile.
const AVC_HEADER: [u8; 52] = [
    0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9,
    0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19,
    0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8, 0x00,
];
/// AAC LC, 44100 Hz, stereo.
const AAC_HEADER: [u8; 4] = [0xAF, 0x00, 0x12, 0x10];

fn push(p: &mut Packager, video: bool, ts: u32, body: &Bytes, now_ms: u64) {
    if video {
        p.push_video(ts, flv::parse_video(body).ok().as_ref(), body, now_ms);
    } else {
        p.push_audio(ts, flv::parse_audio(body).ok().as_ref(), body, now_ms);
    }
}

fn video_frame(key: bool, size: usize) -> Bytes {
    let nal: Vec<u8> = if key { vec![0x65; size] } else { vec![0x41; size] };
    let mut b = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    b.extend_from_slice(&(nal.len() as u32).to_be_bytes());
    b.extend_from_slice(&nal);
    Bytes::from(b)
}

fn audio_frame() -> Bytes {
    Bytes::from_static(&[0xAF, 0x01, 0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c])
}

fn packager(fragment_ms: u64, window_ms: u64, nested: bool) -> Packager {
    let s = Settings {
        fragment: Duration::from_millis(fragment_ms),
        playlist_length: Duration::from_millis(window_ms),
        nested,
        part: None,
    };
    Packager::new(s, "cam")
}

fn low_latency(fragment_ms: u64, part_ms: u64) -> Packager {
    let s = Settings {
        fragment: Duration::from_millis(fragment_ms),
        playlist_length: Duration::from_millis(10_000),
        part: Some(Duration::from_millis(part_ms)),
        ..Settings::default()
    };
    Packager::new(s, "cam")
}

/// `secs` seconds of 25 fps video (a keyframe every `gop` frames) and AAC from `start` ms.
fn feed(p: &mut Packager, start: u32, secs: u32, gop: u32, audio: bool) -> Vec<Event> {
    let mut events = Vec::new();
    push(p, true, start, &Bytes::from_static(&AVC_HEADER), 0);
    if audio {
        push(p, false, start, &Bytes::from_static(&AAC_HEADER), 0);
    }
    let mut next_audio = 0f64;
    for i in 0..secs * 25 {
        let ts = i * 40;
        while audio && next_audio <= f64::from(ts) {
            push(p, false, start + next_audio as u32, &audio_frame(), 1_000_000 + next_audio as u64);
            next_audio += 1024.0 * 1000.0 / 44_100.0;
        }
        push(p, true, start + ts, &video_frame(i % gop == 0, 100), 1_000_000 + u64::from(ts));
        events.extend(std::iter::from_fn(|| p.poll_event()));
    }
    events
}

fn files(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Init { file, .. } | Event::Fragment { file, .. } => Some(file.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn fragments_are_cut_at_keyframes_and_named_by_their_start_in_ms() {
    let mut p = packager(2000, 10_000, false);
    // A keyframe a second, starting at a publisher clock of 5 s.
    let events = feed(&mut p, 5000, 7, 25, true);
    let names = files(&events);
    assert_eq!(&names[..2], ["cam-init.m4v", "cam-init.m4a"]);
    let video: Vec<&String> = names.iter().filter(|f| f.ends_with(".m4v") && !f.contains("init")).collect();
    assert_eq!(video, ["cam-0.m4v", "cam-2000.m4v", "cam-4000.m4v"]);
    // Audio before the first keyframe is not written: the first audio fragment starts with it.
    assert!(names.contains(&"cam-22.m4a".to_string()), "{names:?}");
    assert!(p.next_files().contains(&"cam-6000.m4v".to_string()), "{:?}", p.next_files());
    let mpd = p.mpd(2_000_000);
    assert!(mpd.contains("<S t=\"0\" d=\"2000\"/>\n            <S d=\"2000\"/>\n            <S d=\"2000\"/>"), "{mpd}");
    assert!(mpd.contains("availabilityStartTime=\"1970-01-01T00:16:40.000Z\""), "{mpd}");
    assert!(mpd.contains("codecs=\"avc1.64001f\" width=\"1280\" height=\"720\""), "{mpd}");
    assert!(mpd.contains("codecs=\"mp4a.40.2\" audioSamplingRate=\"44100\""), "{mpd}");
}

#[test]
fn fragments_hold_styp_moof_mdat_whose_times_match_the_mpd() {
    let mut p = packager(2000, 10_000, false);
    let events = feed(&mut p, 0, 5, 25, true);
    for e in &events {
        let Event::Fragment { file, data } = e else { continue };
        let kinds: Vec<[u8; 4]> = fmp4::boxes(data).map(|b| b.unwrap().kind).collect();
        assert_eq!(kinds, [*b"styp", *b"moof", *b"mdat"], "{file}");
        let moof = fmp4::find(data, b"moof").unwrap();
        let runs = fmp4::parse_moof(&data[moof.offset..moof.end()]).unwrap();
        let start: u64 = file.trim_start_matches("cam-").split('.').next().unwrap().parse().unwrap();
        if file.ends_with(".m4v") {
            assert_eq!(runs[0].base_decode_time, Some(start), "{file}");
            assert!(runs[0].samples[0].is_sync(), "{file} starts with a keyframe");
        } else {
            assert_eq!(runs[0].base_decode_time.unwrap() * 1000 / 44_100, start, "{file}");
        }
    }
}

#[test]
fn the_window_keeps_playlist_length_over_fragment_and_expires_the_rest() {
    let mut p = packager(1000, 3000, true);
    let events = feed(&mut p, 0, 8, 25, false);
    let expired: Vec<&String> =
        events.iter().filter_map(|e| if let Event::Expired { file } = e { Some(file) } else { None }).collect();
    assert_eq!(expired, ["cam/0.m4v", "cam/1000.m4v", "cam/2000.m4v", "cam/3000.m4v"]);
    let mpd = p.mpd(0);
    assert_eq!(mpd.matches("<S ").count(), 3, "{mpd}");
    assert!(mpd.contains("media=\"$Time$.m4v\" initialization=\"init.m4v\""), "{mpd}");
    assert!(!mpd.contains("AdaptationSet id=\"2\""), "no audio, no audio AdaptationSet");
}

#[test]
fn the_end_writes_the_open_fragment_and_makes_the_mpd_static() {
    let mut p = packager(2000, 10_000, false);
    feed(&mut p, 0, 3, 25, true);
    p.finish();
    let events: Vec<Event> = std::iter::from_fn(|| p.poll_event()).collect();
    assert!(files(&events).contains(&"cam-2000.m4v".to_string()), "{:?}", files(&events));
    assert_eq!(events.last(), Some(&Event::Manifest));
    let mpd = p.mpd(0);
    assert!(mpd.contains("type=\"static\"") && mpd.contains("mediaPresentationDuration=\"PT3.000S\""), "{mpd}");
    assert!(p.ended());
    assert!(p.next_files().is_empty(), "nothing follows the end");
    assert_eq!(p.init_files(), ["cam-init.m4v", "cam-init.m4a"]);
    assert!(p.fragment_files().contains(&"cam-2000.m4v".to_string()), "{:?}", p.fragment_files());
    assert_eq!(p.end(), 3000);
}

#[test]
fn a_gop_longer_than_twice_the_fragment_is_cut_anyway() {
    let mut p = packager(1000, 10_000, false);
    let events = feed(&mut p, 0, 7, 1000, false);
    let video: Vec<String> = files(&events).into_iter().filter(|f| !f.contains("init")).collect();
    assert_eq!(video, ["cam-0.m4v", "cam-2000.m4v", "cam-4000.m4v"]);
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Warning(_))).count(), 1, "said once");
}

#[test]
fn a_fragment_is_bounded_in_bytes_whatever_the_clock_says() {
    let mut p = packager(5000, 30_000, false);
    push(&mut p, true, 0, &Bytes::from_static(&AVC_HEADER), 0);
    // A frozen clock and 1 MB frames: fragments are cut at the size limit.
    let mut cut = 0;
    for i in 0..40 {
        push(&mut p, true, i, &video_frame(i == 0, 1 << 20), 0);
        assert!(p.held_bytes() <= MAX_FRAGMENT_BYTES + (1 << 20) + 64, "held {}", p.held_bytes());
        cut += std::iter::from_fn(|| p.poll_event()).filter(|e| matches!(e, Event::Fragment { .. })).count();
    }
    assert!(cut >= 3, "{cut}");
}

#[test]
fn timestamp_jumps_are_taken_out_of_the_timeline() {
    let mut p = packager(1000, 10_000, false);
    push(&mut p, true, 0, &Bytes::from_static(&AVC_HEADER), 0);
    for i in 0..50u32 {
        // Halfway the encoder restarts its clock far ahead.
        let ts = if i < 25 { i * 40 } else { 3_000_000 + i * 40 };
        push(&mut p, true, ts, &video_frame(i % 25 == 0, 10), 0);
    }
    p.finish();
    let mpd = p.mpd(0);
    assert!(mpd.contains("mediaPresentationDuration=\"PT2.000S\""), "{mpd}");
}

#[test]
fn audio_only_streams_are_cut_on_audio() {
    let mut p = packager(1000, 10_000, false);
    push(&mut p, false, 0, &Bytes::from_static(&AAC_HEADER), 0);
    for i in 0..200u32 {
        push(&mut p, false, i * 1024 * 1000 / 44_100, &audio_frame(), 0);
    }
    let names = files(&std::iter::from_fn(|| p.poll_event()).collect::<Vec<_>>());
    assert_eq!(names[0], "cam-init.m4a");
    assert!(names.len() >= 4 && names.iter().all(|n| n.ends_with(".m4a")), "{names:?}");
    assert!(!p.mpd(0).contains("AdaptationSet id=\"1\""));
}

#[test]
fn nothing_is_written_before_the_first_keyframe() {
    let mut p = packager(1000, 10_000, false);
    push(&mut p, true, 0, &Bytes::from_static(&AVC_HEADER), 0);
    push(&mut p, false, 0, &Bytes::from_static(&AAC_HEADER), 0);
    push(&mut p, false, 10, &audio_frame(), 0);
    push(&mut p, true, 20, &video_frame(false, 10), 0);
    assert_eq!(p.poll_event(), None);
    assert!(!p.has_fragments());
    push(&mut p, true, 60, &video_frame(true, 10), 5_000);
    assert!(matches!(p.poll_event(), Some(Event::Init { .. })));
}

#[test]
fn a_timeline_may_start_after_an_earlier_publish() {
    let mut p = packager(1000, 10_000, false);
    p.start_at(60_000);
    let names = files(&feed(&mut p, 0, 3, 25, false));
    assert_eq!(names, ["cam-init.m4v", "cam-60000.m4v", "cam-61000.m4v"]);
    assert_eq!(p.end(), 62_000);
    assert!(
        p.mpd(1_000_000).contains("availabilityStartTime=\"1970-01-01T00:15:40.000Z\""),
        "media time 0 is 60 s before the first frame"
    );
}

/// Low latency: every fragment comes first as CMAF chunks, a `moof` + `mdat` per part (the first
/// after the `styp`, video's starting with the keyframe), and the finished fragment is exactly
/// its chunks one after the other; each chunk's decode time follows the previous one's.
#[test]
fn low_latency_fragments_are_their_chunks_one_after_the_other() {
    let mut p = low_latency(2000, 200);
    let events = feed(&mut p, 0, 7, 50, true);
    let mut parts: std::collections::HashMap<String, Vec<Bytes>> = Default::default();
    let mut whole = 0;
    for e in &events {
        match e {
            Event::Part { file, data } => {
                parts.entry(file.clone()).or_default().push(data.clone());
            }
            Event::Fragment { file, data } => {
                whole += 1;
                let chunks = parts.remove(file).unwrap_or_else(|| panic!("{file} had no parts"));
                assert_eq!(chunks.concat(), data.to_vec(), "{file} is its chunks");
                // 2 s of 25 fps video at 200 ms parts: 10 chunks (audio: 200 ms of frames or a little more).
                if file.ends_with(".m4v") {
                    assert_eq!(chunks.len(), 10, "{file}");
                } else {
                    assert!((8..=10).contains(&chunks.len()), "{file}: {}", chunks.len());
                }
                let kinds: Vec<[u8; 4]> = fmp4::boxes(data).map(|b| b.unwrap().kind).collect();
                assert_eq!(kinds[0], *b"styp", "{file}");
                assert_eq!(kinds.len(), 1 + 2 * chunks.len(), "{file}: {kinds:?}");
                let mut next = None;
                for (i, chunk) in chunks.iter().enumerate() {
                    let moof = fmp4::find(chunk, b"moof").unwrap();
                    let runs = fmp4::parse_moof(&chunk[moof.offset..moof.end()]).unwrap();
                    let base = runs[0].base_decode_time.unwrap();
                    assert!(next.is_none_or(|n| n == base), "{file} chunk {i}: {base} after {next:?}");
                    next = Some(base + runs[0].samples.iter().map(|s| u64::from(s.duration)).sum::<u64>());
                    if file.ends_with(".m4v") {
                        assert_eq!(runs[0].samples[0].is_sync(), i == 0, "{file} chunk {i}");
                    }
                }
            }
            _ => {}
        }
    }
    assert!(whole >= 6, "three fragments of each track");
    // The fragments being built have their first chunks out, and the MPD lists them.
    assert_eq!(parts.keys().filter(|f| f.ends_with(".m4v")).collect::<Vec<_>>(), ["cam-6000.m4v"]);
    let mpd = p.mpd(2_000_000);
    assert!(mpd.contains("<S t=\"0\" d=\"2000\"/>\n            <S d=\"2000\"/>\n            <S d=\"2000\"/>\n            <S d=\"2000\"/>\n"), "{mpd}");
    assert!(mpd.contains("availabilityTimeOffset=\"1.800\" availabilityTimeComplete=\"false\""), "{mpd}");
    p.finish();
    let events: Vec<Event> = std::iter::from_fn(|| p.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(e, Event::Fragment { file, .. } if file == "cam-6000.m4v")));
    let mpd = p.mpd(2_000_000);
    assert!(mpd.contains("mediaPresentationDuration=\"PT7.000S\"") && !mpd.contains("availabilityTimeOffset"), "{mpd}");
}

/// Without low latency nothing changes: no parts, one `moof` per fragment.
#[test]
fn without_low_latency_there_are_no_parts() {
    let mut p = packager(2000, 10_000, false);
    let events = feed(&mut p, 0, 5, 50, true);
    assert!(!events.iter().any(|e| matches!(e, Event::Part { .. })));
    assert!(!p.mpd(0).contains("availabilityTimeOffset"));
}

/// An audio-only stream in low latency is still cut on audio.
#[test]
fn low_latency_audio_only_is_cut_on_audio() {
    let mut p = low_latency(1000, 200);
    push(&mut p, false, 0, &Bytes::from_static(&AAC_HEADER), 0);
    for i in 0..200u32 {
        push(&mut p, false, i * 1024 * 1000 / 44_100, &audio_frame(), 0);
    }
    let events: Vec<Event> = std::iter::from_fn(|| p.poll_event()).collect();
    let whole = events.iter().filter(|e| matches!(e, Event::Fragment { .. })).count();
    let parts = events.iter().filter(|e| matches!(e, Event::Part { .. })).count();
    assert!(whole >= 3 && parts >= 4 * whole, "{whole} fragments, {parts} parts");
}

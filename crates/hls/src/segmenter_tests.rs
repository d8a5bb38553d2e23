use super::*;
use crate::playlist;

/// An AVC sequence header (FLV tag body) for 1280x720 High profile.
const AVC_HEADER: [u8; 52] = [
    0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9,
    0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19,
    0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8, 0x00,
];
/// AAC LC, 44100 Hz, stereo.
const AAC_HEADER: [u8; 4] = [0xAF, 0x00, 0x12, 0x10];

/// The tests feed FLV tag bodies: each is parsed here first, as sluice parses each message
/// once when it arrives.
trait PushBody {
    fn push(&mut self, video: bool, timestamp: u32, body: &Bytes, now_ms: u64);
}

impl PushBody for Segmenter {
    fn push(&mut self, video: bool, timestamp: u32, body: &Bytes, now_ms: u64) {
        if video {
            self.push_video(timestamp, flv::parse_video(body).ok().as_ref(), body, now_ms);
        } else {
            self.push_audio(timestamp, flv::parse_audio(body).ok().as_ref(), body, now_ms);
        }
    }
}

fn video_frame(key: bool) -> Bytes {
    let nal: &[u8] = if key { &[0x65, 0x88, 0x84, 0x00, 0x10] } else { &[0x41, 0x9a, 0x02, 0x03] };
    let mut b = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    b.extend_from_slice(&(nal.len() as u32).to_be_bytes());
    b.extend_from_slice(nal);
    Bytes::from(b)
}

fn audio_frame() -> Bytes {
    Bytes::from_static(&[0xAF, 0x01, 0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c])
}

fn settings(fragment_secs: u64) -> Settings {
    Settings { fragment: Duration::from_secs(fragment_secs), ..Settings::default() }
}

fn segmenter(s: Settings) -> Segmenter {
    let mut n = 0u8;
    Segmenter::new(
        s,
        "stream",
        Box::new(move || {
            n += 1;
            [n; 16]
        }),
    )
    .unwrap()
}

/// Feed `secs` seconds of 25 fps video with a keyframe every `gop` frames, plus AAC audio
/// (about 43 frames a second), starting at `start_ms`; returns the events.
fn feed(seg: &mut Segmenter, start_ms: u32, secs: u32, gop: u32, audio: bool) -> Vec<Event> {
    let mut audio_ms = f64::from(start_ms);
    for i in 0..secs * 25 {
        let ts = start_ms + i * 40;
        while audio && audio_ms < f64::from(ts) {
            seg.push(false, audio_ms as u32, &audio_frame(), 1000 + audio_ms as u64);
            audio_ms += 1024.0 * 1000.0 / 44100.0;
        }
        seg.push(true, ts, &video_frame(i % gop == 0), 1000 + u64::from(ts));
    }
    std::iter::from_fn(|| seg.poll_event()).collect()
}

fn started(s: Settings, audio: bool) -> Segmenter {
    let mut seg = segmenter(s);
    seg.push(true, 0, &Bytes::from_static(&AVC_HEADER), 0);
    if audio {
        seg.push(false, 0, &Bytes::from_static(&AAC_HEADER), 0);
    }
    seg
}

fn segments(events: &[Event]) -> Vec<(u64, String, f64, Bytes)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Segment { msn, file, duration, data, .. } => Some((*msn, file.clone(), *duration, data.clone())),
            _ => None,
        })
        .collect()
}

fn assert_ts_packets(data: &[u8]) {
    assert_eq!(data.len() % 188, 0, "whole TS packets");
    assert!(data.chunks(188).all(|p| p[0] == 0x47), "every packet starts with the sync byte");
}

#[test]
fn plain_slicing_cuts_at_the_first_keyframe_after_the_fragment_length() {
    let mut seg = started(settings(3), true);
    let events = feed(&mut seg, 0, 12, 25, true);
    let segs = segments(&events);
    let durations: Vec<f64> = segs.iter().map(|s| s.2).collect();
    assert_eq!(durations, vec![3.0, 3.0, 3.0], "keyframes every second, 3 s fragments");
    assert_eq!(segs[0].1, "stream-0.ts");
    assert_eq!(segs.iter().map(|s| s.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    for s in &segs {
        assert_ts_packets(&s.3);
        assert_eq!(&s.3[..3], &[0x47, 0x40, 0x00], "a segment starts with the PAT");
    }
    let text = seg.playlist();
    assert!(text.contains("#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:3.000,\nstream-0.ts\n"), "{text}");
    assert!(!text.contains("ENDLIST"));
    seg.finish();
    let text = seg.playlist();
    assert!(text.ends_with("stream-3.ts\n#EXT-X-ENDLIST\n"), "the open segment is closed at the end: {text}");
}

#[test]
fn a_long_gop_is_cut_at_max_fragment_as_a_discontinuity() {
    let s = Settings { max_fragment: Duration::from_secs(4), ..settings(2) };
    let mut seg = started(s, false);
    let events = feed(&mut seg, 0, 10, 1000, false);
    let segs = segments(&events);
    assert!(!segs.is_empty(), "forced cuts without keyframes");
    assert!(segs.iter().all(|s| s.2 <= 4.05), "{:?}", segs.iter().map(|s| s.2).collect::<Vec<_>>());
    assert!(seg.playlist().contains("#EXT-X-DISCONTINUITY"));
}

#[test]
fn aligned_slicing_cuts_on_timeline_slots() {
    let s = Settings { slicing: Slicing::Aligned, ..settings(2) };
    let mut seg = started(s, false);
    // Keyframes every 0.4 s starting at 1.2 s: slots are [0,2), [2,4), ...
    let events = feed(&mut seg, 1200, 7, 10, false);
    let segs = segments(&events);
    // The first segment opens at the first keyframe of the next slot (2.0 s), then one per slot.
    assert!(segs.len() >= 2);
    assert!(segs.iter().all(|s| (s.2 - 2.0).abs() < 1e-9), "{:?}", segs.iter().map(|s| s.2).collect::<Vec<_>>());
}

#[test]
fn audio_only_streams_are_cut_on_audio() {
    let mut seg = segmenter(settings(2));
    seg.push(false, 0, &Bytes::from_static(&AAC_HEADER), 0);
    let mut t = 0.0;
    while t < 7000.0 {
        seg.push(false, t as u32, &audio_frame(), 0);
        t += 1024.0 * 1000.0 / 44100.0;
    }
    let events: Vec<Event> = std::iter::from_fn(|| seg.poll_event()).collect();
    let segs = segments(&events);
    assert_eq!(segs.len(), 3);
    assert!(segs.iter().all(|s| (2.0..2.1).contains(&s.2)));
    for s in &segs {
        assert_ts_packets(&s.3);
    }
}

#[test]
fn the_window_slides_and_expired_segments_are_reported() {
    let s = Settings { playlist_length: Duration::from_secs(6), ..settings(2) };
    let mut seg = started(s, false);
    let events = feed(&mut seg, 0, 20, 50, false);
    let expired: Vec<&Event> = events.iter().filter(|e| matches!(e, Event::Expired { .. })).collect();
    assert!(matches!(expired.first(), Some(Event::Expired { file, .. }) if file == "stream-0.ts"));
    let text = seg.playlist();
    assert_eq!(text.matches("#EXTINF").count(), 3, "6 s of 2 s segments: {text}");

    let s = Settings { playlist_length: Duration::from_secs(6), playlist_type: PlaylistType::Event, ..settings(2) };
    let mut seg = started(s, false);
    let events = feed(&mut seg, 0, 20, 50, false);
    assert!(!events.iter().any(|e| matches!(e, Event::Expired { .. })), "event playlists keep everything");
    assert!(seg.playlist().contains("#EXT-X-PLAYLIST-TYPE:EVENT"));
}

#[test]
fn keys_rotate_and_segments_are_encrypted() {
    let s = Settings { keys: Some(KeySettings { fragments_per_key: 2, key_url: String::new() }), ..settings(2) };
    let mut seg = started(s, false);
    let events = feed(&mut seg, 0, 11, 50, false);
    let keys: Vec<&String> =
        events.iter().filter_map(|e| if let Event::Key { file, .. } = e { Some(file) } else { None }).collect();
    assert_eq!(keys, ["stream-0.key", "stream-2.key", "stream-4.key"]);
    for s in segments(&events) {
        assert_eq!(s.3.len() % 16, 0, "AES-CBC output");
        assert_ne!(s.3[0], 0x47, "not plain TS");
    }
    let text = seg.playlist();
    assert!(text.contains("#EXT-X-KEY:METHOD=AES-128,URI=\"stream-2.key\",IV=0x00000000000000000000000000000002\n"));
}

#[test]
fn naming_nested_and_base_url() {
    let s = Settings { nested: true, ..settings(2) };
    let mut seg = started(s, false);
    let events = feed(&mut seg, 0, 5, 50, false);
    assert_eq!(segments(&events)[0].1, "stream/0.ts");
    assert_eq!(seg.playlist_file(), "stream/index.m3u8");
    assert!(seg.playlist().contains("\n0.ts\n"));

    let s = Settings { nested: true, base_url: "http://cdn/hls/".into(), ..settings(2) };
    let mut seg = started(s, false);
    feed(&mut seg, 0, 5, 50, false);
    assert!(seg.playlist().contains("\nhttp://cdn/hls/stream/0.ts\n"));

    let s = Settings { naming: Naming::Timestamp, naming_granularity: 90_000, ..settings(2) };
    let mut seg = started(s, false);
    let events = feed(&mut seg, 4000, 5, 50, false);
    assert_eq!(segments(&events)[0].1, "stream-360000.ts", "90 kHz stream time, rounded down");

    let s = Settings { naming: Naming::System, ..settings(2) };
    let mut seg = started(s, false);
    let events = feed(&mut seg, 0, 5, 50, false);
    assert_eq!(segments(&events)[0].1, "stream-1000.ts", "wall clock ms at the cut");
}

#[test]
fn resumed_playlists_continue_numbering_after_a_discontinuity() {
    let mut first = started(settings(2), false);
    feed(&mut first, 0, 5, 50, false);
    first.finish();
    let restored = playlist::parse_media_playlist(&first.playlist()).unwrap();
    let mut second = started(settings(2), false);
    second.resume(restored);
    let events = feed(&mut second, 0, 5, 50, false);
    let segs = segments(&events);
    assert_eq!(segs[0].0, 3, "numbering continues");
    let text = second.playlist();
    assert!(text.contains("stream-2.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\nstream-3.ts\n"), "{text}");
    assert!(!text.contains("ENDLIST"));
}

#[test]
fn low_latency_parts_make_up_each_segment() {
    let s = Settings { part_target: Some(Duration::from_millis(200)), ..settings(2) };
    let mut seg = started(s, true);
    let events = feed(&mut seg, 0, 5, 50, true);
    let segs = segments(&events);
    assert_eq!(segs.len(), 2);
    for (msn, _, _, data) in &segs {
        let parts: Vec<&Bytes> = events
            .iter()
            .filter_map(|e| match e {
                Event::Part { msn: m, data, .. } if m == msn => Some(data),
                _ => None,
            })
            .collect();
        assert!(parts.len() >= 9, "2 s in parts of at most 0.2 s: {}", parts.len());
        let joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(&joined, data, "the segment is its parts");
        for p in parts {
            assert_ts_packets(p);
            assert_eq!(&p[..3], &[0x47, 0x40, 0x00], "each part starts with the PAT");
        }
    }
    let text = seg.playlist();
    assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.200\n"));
    assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:"));
    for line in text.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
        let d: f64 = line["#EXT-X-PART:DURATION=".len()..].split(',').next().unwrap().parse().unwrap();
        assert!(d <= 0.2 + 1e-9, "{line}");
    }
    assert!(text.contains("#EXT-X-PART:DURATION=0.200,URI=\"stream-0.0.ts\",INDEPENDENT=YES\n"), "{text}");
    assert!(text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"stream-2."), "{text}");
    assert!(seg.has_part(1, Some(3)) && seg.has_part(2, Some(0)));
    assert!(!seg.has_part(2, Some(100)) && !seg.has_part(3, None));
}

#[test]
fn fmp4_writes_an_init_segment_then_styp_moof_mdat_segments() {
    let s = Settings { container: Container::Fmp4, part_target: Some(Duration::from_millis(500)), ..settings(2) };
    let mut seg = started(s, true);
    let events = feed(&mut seg, 0, 5, 50, true);
    let Some(Event::Init { file, data, .. }) = events.iter().find(|e| matches!(e, Event::Init { .. })) else {
        panic!("no init segment: {events:?}")
    };
    assert_eq!(file, "stream-init.mp4");
    assert_eq!(&data[4..8], b"ftyp");
    let segs = segments(&events);
    assert_eq!(segs[0].1, "stream-0.m4s");
    assert_eq!(&segs[0].3[4..8], b"styp");
    let boxes: Vec<String> =
        fmp4::boxes(&segs[0].3).map(|b| String::from_utf8_lossy(&b.unwrap().kind[..]).into_owned()).collect();
    assert_eq!(boxes.first().map(String::as_str), Some("styp"));
    assert!(boxes.windows(2).filter(|w| w[0] == "moof" && w[1] == "mdat").count() >= 4, "{boxes:?}");
    assert!(seg.playlist().contains("#EXT-X-MAP:URI=\"stream-init.mp4\"\n"));
}

#[test]
fn unsupported_codecs_warn_once() {
    let mut seg = segmenter(settings(2));
    // AV1 sequence start (Enhanced RTMP) in MPEG-TS.
    let av1 = Bytes::from_static(&[0x90, b'a', b'v', b'0', b'1', 0x81, 0x00, 0x0c, 0x00]);
    seg.push(true, 0, &av1, 0);
    seg.push(true, 40, &av1, 0);
    let warnings: Vec<Event> = std::iter::from_fn(|| seg.poll_event()).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(matches!(&warnings[0], Event::Warning(w) if w.contains("hls_fragment_type fmp4")));
}

#[test]
fn keys_and_low_latency_do_not_mix() {
    let s = Settings {
        keys: Some(KeySettings { fragments_per_key: 0, key_url: String::new() }),
        part_target: Some(Duration::from_millis(200)),
        ..Settings::default()
    };
    assert!(matches!(Segmenter::new(s, "x", Box::new(|| [0; 16])), Err(SettingsError::KeysWithLowLatency)));
}

/// Video PID and audio PID as the muxer writes them.
const VIDEO_PID: u16 = 0x100;
const AUDIO_PID: u16 = 0x101;

/// 33-bit timestamps: `b` comes after `a` when the forward distance is under half the range.
fn after(a: u64, b: u64) -> bool {
    let d = b.wrapping_sub(a) & ((1 << 33) - 1);
    d != 0 && d < 1 << 32
}

/// A segment's timeline: video DTS strictly increasing with PTS >= DTS, audio PTS strictly
/// increasing, and the first video PES a keyframe.
fn check_ts_timeline(data: &[u8]) -> Result<(), String> {
    let starts = mpegts::read::pes_starts(data);
    let video: Vec<_> = starts.iter().filter(|p| p.pid == VIDEO_PID).collect();
    if let Some(first) = video.first() {
        if !first.random_access {
            return Err(format!("starts mid-GOP: {first:?}"));
        }
    }
    for v in &video {
        let (pts, dts) = (v.pts.ok_or("no PTS")?, v.dts.ok_or("no DTS")?);
        if pts != dts && !after(dts, pts) {
            return Err(format!("PTS before DTS: {v:?}"));
        }
    }
    for pid in [VIDEO_PID, AUDIO_PID] {
        let dts: Vec<u64> = starts.iter().filter(|p| p.pid == pid).filter_map(|p| p.dts).collect();
        if let Some(w) = dts.windows(2).find(|w| !after(w[0], w[1])) {
            return Err(format!("pid {pid:#x}: {} then {}", w[0], w[1]));
        }
    }
    Ok(())
}

fn extinfs(playlist: &str) -> Vec<f64> {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|d| d.trim_end_matches(',').parse().unwrap())
        .collect()
}

fn target_duration(playlist: &str) -> u64 {
    playlist.lines().find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:")).unwrap().parse().unwrap()
}

/// Every segment in `events` has a sane timeline; returns how many there were.
fn assert_segments_sane(events: &[Event]) -> usize {
    let segs = segments(events);
    for (msn, file, duration, data) in &segs {
        assert!(*duration >= 0.001, "{file}: {duration}");
        if let Err(e) = check_ts_timeline(data) {
            panic!("segment {msn} ({file}): {e}");
        }
    }
    segs.len()
}

#[test]
fn a_10_hour_jump_keeps_durations_and_marks_a_discontinuity() {
    let mut seg = started(settings(2), true);
    let mut events = feed(&mut seg, 0, 7, 25, true);
    // The publisher's clock jumps 10 hours ahead, mid-GOP.
    events.extend(feed(&mut seg, 36_000_000 + 7_000, 7, 25, true));
    seg.finish();
    events.extend(std::iter::from_fn(|| seg.poll_event()));
    let text = seg.playlist();
    assert!(target_duration(&text) <= 3, "{text}");
    assert!(extinfs(&text).iter().all(|&d| (0.5..=3.0).contains(&d)), "{text}");
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
    assert!(assert_segments_sane(&events) >= 6);
}

#[test]
fn a_reset_to_zero_gives_no_empty_segment() {
    let mut seg = started(settings(2), true);
    let mut events = feed(&mut seg, 100_000, 5, 25, true);
    // The encoder restarts: its clock starts over at 0, with a keyframe.
    events.extend(feed(&mut seg, 0, 5, 25, true));
    seg.finish();
    events.extend(std::iter::from_fn(|| seg.poll_event()));
    let text = seg.playlist();
    assert!(!text.contains("#EXTINF:0.000"), "{text}");
    assert!(extinfs(&text).iter().all(|&d| d >= 0.5), "{text}");
    assert!(target_duration(&text) <= 3, "{text}");
    assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    assert_segments_sane(&events);
    // The timeline went on: the first segment after the reset starts where the last ended.
    let names: Vec<u64> = segments(&events).iter().map(|s| s.0).collect();
    assert_eq!(names, (0..names.len() as u64).collect::<Vec<_>>());
}

#[test]
fn a_forced_cut_waits_for_the_next_keyframe() {
    // GOPs of 6 s with max_fragment 4 s: the cut at 4 s opens a segment that skips video until
    // the keyframe at 6 s.
    let s = Settings { max_fragment: Duration::from_secs(4), ..settings(2) };
    let mut seg = started(s, true);
    let mut events = feed(&mut seg, 0, 13, 150, true);
    seg.finish();
    events.extend(std::iter::from_fn(|| seg.poll_event()));
    assert!(assert_segments_sane(&events) >= 3);
}

/// One message of a hostile publisher: which track, and how its timestamp moves.
#[derive(Debug, Clone)]
enum Step {
    /// A normal step forward, in ms.
    Forward(u16),
    /// The same timestamp again.
    Frozen,
    /// Back by up to 2^16 ms.
    Back(u16),
    /// Anywhere at all.
    Anywhere(u32),
}

fn hostile_run(container: Container, steps: &[(bool, bool, Step)]) -> (Segmenter, Vec<Event>) {
    let s = Settings { container, max_fragment: Duration::from_secs(6), ..settings(1) };
    let mut seg = started(s, true);
    let mut ts = 0u32;
    let mut events = Vec::new();
    for (video, key, step) in steps {
        ts = match step {
            Step::Forward(d) => ts.wrapping_add(u32::from(*d)),
            Step::Frozen => ts,
            Step::Back(d) => ts.wrapping_sub(u32::from(*d)),
            Step::Anywhere(t) => *t,
        };
        let body = if *video { video_frame(*key) } else { audio_frame() };
        seg.push(*video, ts, &body, 0);
        events.extend(std::iter::from_fn(|| seg.poll_event()));
    }
    seg.finish();
    events.extend(std::iter::from_fn(|| seg.poll_event()));
    (seg, events)
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        8 => (0u16..100).prop_map(Step::Forward),
        1 => Just(Step::Frozen),
        1 => any::<u16>().prop_map(Step::Back),
        1 => any::<u32>().prop_map(Step::Anywhere),
        1 => (1000u16..u16::MAX).prop_map(Step::Forward),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    #[test]
    fn hostile_timestamps_keep_the_playlist_and_segments_sane(
        steps in proptest::collection::vec((proptest::bool::weighted(0.6), proptest::bool::weighted(0.1), step()), 1..1500),
    ) {
        for container in [Container::Ts, Container::Fmp4] {
            let (seg, events) = hostile_run(container, &steps);
            let text = seg.playlist();
            // max_fragment (6 s) + the largest step the timeline lets through (5 s) + a frame.
            proptest::prop_assert!(target_duration(&text) <= 12, "{}", text);
            proptest::prop_assert!(!text.contains("#EXTINF:0.000"), "{}", text);
            if container == Container::Ts {
                for (msn, _, _, data) in segments(&events) {
                    let checked = check_ts_timeline(&data);
                    proptest::prop_assert!(checked.is_ok(), "segment {}: {:?}", msn, checked);
                }
            }
        }
    }
}

#[test]
fn frozen_timestamps_cannot_grow_the_open_segment() {
    for container in [Container::Ts, Container::Fmp4] {
        let mut seg = started(Settings { container, ..settings(2) }, false);
        let limit = seg.max_segment_bytes();
        // 1 MiB frames, all stamped 5000 ms: 2 s of frames are far more than the limit.
        let big = |key: bool| {
            let mut b = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
            b.extend_from_slice(&((1u32 << 20) - 9).to_be_bytes());
            b.push(if key { 0x65 } else { 0x41 });
            b.resize(1 << 20, 0x55);
            Bytes::from(b)
        };
        let (key, delta) = (big(true), big(false));
        let mut cuts = 0;
        for i in 0..limit / (1 << 20) * 3 {
            let body = if i % 10 == 0 { key.clone() } else { delta.clone() };
            seg.push(true, 5000, &body, 0);
            cuts += std::iter::from_fn(|| seg.poll_event()).filter(|e| matches!(e, Event::Segment { .. })).count();
            assert!(seg.held_bytes() <= limit + (2 << 20), "{container:?}: {} held", seg.held_bytes());
        }
        assert!(cuts >= 2, "{container:?}: cut at the size limit ({cuts})");
    }
}

#[test]
fn audio_without_a_keyframe_is_bounded() {
    for container in [Container::Ts, Container::Fmp4] {
        let s = Settings { container, audio_buffer_size: 64 << 10, ..settings(2) };
        let mut seg = started(s, true);
        let mut t = 0.0;
        let mut warnings = 0;
        // Ten minutes of audio and non-key video: no segment ever opens.
        while t < 600_000.0 {
            seg.push(false, t as u32, &audio_frame(), 0);
            if (t as u32) % 40 < 23 {
                seg.push(true, t as u32, &video_frame(false), 0);
            }
            t += 1024.0 * 1000.0 / 44100.0;
            warnings += std::iter::from_fn(|| seg.poll_event()).filter(|e| matches!(e, Event::Warning(_))).count();
            assert!(seg.held_bytes() <= 64 << 10, "{container:?}: {} held", seg.held_bytes());
        }
        assert_eq!(warnings, 1, "{container:?}: said once");
    }
}

#[test]
fn sessions_make_every_name_unique_to_a_publish() {
    let s = Settings {
        session: Some(1_765_000_000_123),
        keys: Some(KeySettings { fragments_per_key: 0, key_url: String::new() }),
        ..settings(2)
    };
    let mut seg = started(s, false);
    let events = feed(&mut seg, 0, 5, 50, false);
    assert_eq!(segments(&events)[0].1, "stream-1765000000123-0.ts");
    assert!(events.iter().any(|e| matches!(e, Event::Key { file, .. } if file == "stream-1765000000123-0.key")));
    let text = seg.playlist();
    assert!(text.contains("URI=\"stream-1765000000123-0.key\"") && text.contains("\nstream-1765000000123-1.ts\n"));

    let s = Settings {
        session: Some(7),
        nested: true,
        container: Container::Fmp4,
        part_target: Some(Duration::from_millis(500)),
        ..settings(2)
    };
    let mut seg = started(s, false);
    let events = feed(&mut seg, 0, 5, 50, false);
    assert_eq!(seg.init_file().as_deref(), Some("stream/7-init.mp4"));
    assert!(events.iter().any(|e| matches!(e, Event::Init { file, .. } if file == "stream/7-init.mp4")));
    assert!(events.iter().any(|e| matches!(e, Event::Part { file, .. } if file == "stream/7-0.0.m4s")));
    assert_eq!(segments(&events)[0].1, "stream/7-0.m4s");
    let text = seg.playlist();
    assert!(text.contains("#EXT-X-MAP:URI=\"7-init.mp4\"") && text.contains("\n7-0.m4s\n"), "{text}");
}

#[test]
fn a_resumed_fmp4_playlist_keeps_each_publish_with_its_init_segment() {
    let fmp4 = |session| Settings { container: Container::Fmp4, session: Some(session), ..settings(2) };
    let mut first = started(fmp4(1), false);
    feed(&mut first, 0, 5, 50, false);
    first.finish();
    let restored = playlist::parse_media_playlist(&first.playlist()).unwrap();
    assert_eq!(restored.segments[0].map.as_deref(), Some("stream-1-init.mp4"));
    let mut second = started(fmp4(2), false);
    second.resume(restored);
    feed(&mut second, 0, 5, 50, false);
    let text = second.playlist();
    assert!(text.contains("#EXT-X-MAP:URI=\"stream-1-init.mp4\"\n#EXTINF:2.000,\nstream-1-0.m4s\n"), "{text}");
    assert!(
        text.contains("stream-1-2.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"stream-2-init.mp4\"\n#EXTINF:2.000,\nstream-2-3.m4s\n"),
        "{text}"
    );
    assert_eq!(text.matches("#EXT-X-MAP").count(), 2, "{text}");
    // Once the first publish's segments leave the window, its init segment goes with them.
    let events = feed(&mut second, 5000, 40, 50, false);
    let expired: Vec<&str> = events
        .iter()
        .filter_map(|e| if let Event::Expired { file, .. } = e { Some(file.as_str()) } else { None })
        .collect();
    assert_eq!(expired.iter().filter(|f| f.ends_with("init.mp4")).collect::<Vec<_>>(), [&"stream-1-init.mp4"]);
    assert_eq!(second.playlist().matches("#EXT-X-MAP").count(), 1);
}

#[test]
fn frames_stamped_before_the_segment_start_cannot_grow_it() {
    let mut seg = started(Settings { container: Container::Fmp4, ..settings(2) }, true);
    let limit = seg.max_segment_bytes();
    seg.push(true, 10_000, &video_frame(true), 0);
    // Big audio frames creeping up by a millisecond from just under a second before the start:
    // no jump, no frozen clock, and no cut possible (it would be a segment of no length).
    let mut big = audio_frame().to_vec();
    big.resize(1 << 20, 0x11);
    let big = Bytes::from(big);
    for i in 0..limit / (1 << 20) * 2 {
        seg.push(false, 9_100 + i as u32 % 800, &big, 0);
        while seg.poll_event().is_some() {}
        assert!(seg.held_bytes() <= limit + (1 << 20), "{} held", seg.held_bytes());
    }
}

#[test]
fn an_interrupted_playlist_goes_on_with_a_discontinuity_and_new_names() {
    let parts = Some(Duration::from_millis(500));
    let fmp4 = Settings { container: Container::Fmp4, session: Some(1), part_target: parts, ..settings(2) };
    let mut seg = started(fmp4, false);
    feed(&mut seg, 0, 5, 50, false);
    seg.interrupt(Some(2)).unwrap();
    let closed = segments(&std::iter::from_fn(|| seg.poll_event()).collect::<Vec<_>>());
    assert_eq!(closed.iter().map(|s| s.1.as_str()).collect::<Vec<_>>(), ["stream-1-2.m4s"], "the open one closed");
    let gap = seg.playlist();
    assert!(!gap.contains("ENDLIST") && !gap.contains("DISCONTINUITY"), "{gap}");
    assert!(gap.ends_with("stream-1-2.m4s\n"), "no hint, no init segment that does not exist yet: {gap}");
    // The next publisher starts its clock at 0 again, with its own sequence headers.
    seg.push(true, 0, &Bytes::from_static(&AVC_HEADER), 0);
    let events = feed(&mut seg, 0, 5, 50, false);
    assert!(events.iter().any(|e| matches!(e, Event::Init { file, .. } if file == "stream-2-init.mp4")));
    assert_eq!(segments(&events)[0].1, "stream-2-3.m4s", "numbering goes on under the new session");
    let text = seg.playlist();
    assert!(text.contains("stream-1-2.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"stream-2-init.mp4\"\n"), "{text}");
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
    seg.finish();
    assert!(seg.playlist().ends_with("#EXT-X-ENDLIST\n"));
}

#[test]
fn a_resumed_playlist_has_one_discontinuity() {
    let mut first = started(settings(2), false);
    feed(&mut first, 0, 5, 50, false);
    first.finish();
    let mut second = started(settings(2), false);
    second.resume(playlist::parse_media_playlist(&first.playlist()).unwrap());
    feed(&mut second, 0, 7, 50, false);
    let text = second.playlist();
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-27T16:05:16.123Z` to Unix ms.
fn parse_pdt(text: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().unwrap();
    let days = days_from_civil(n(0..4), n(5..7), n(8..10));
    let ms = ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000 + n(20..23);
    ms as u64
}

/// A decimal playlist duration as whole milliseconds; it must have been printed exactly.
fn printed_ms(text: &str) -> u64 {
    let (s, ms) = text.split_once('.').unwrap();
    assert_eq!(ms.len(), 3, "three decimals: {text}");
    s.parse::<u64>().unwrap() * 1000 + ms.parse::<u64>().unwrap()
}

/// One segment as a playlist lists it: date-time, discontinuity, parts (ms), `#EXTINF` (ms).
#[derive(Debug, Default)]
struct Listed {
    pdt: Option<u64>,
    discontinuity: bool,
    parts: Vec<u64>,
    extinf: Option<u64>,
}

/// RFC 8216 timing rules a playlist must keep: each `#EXTINF` rounded is at most the target
/// duration, listed parts add up to their segment's `#EXTINF` and none is above `PART-TARGET`,
/// and each date-time is the previous one plus the previous `#EXTINF` (across no discontinuity).
fn check_playlist_times(text: &str) -> Result<(), String> {
    let target = target_duration(text);
    let part_target = text.lines().find_map(|l| l.strip_prefix("#EXT-X-PART-INF:PART-TARGET=")).map(printed_ms);
    let mut listed = vec![Listed::default()];
    for line in text.lines() {
        let cur = listed.last_mut().unwrap();
        if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            cur.pdt = Some(parse_pdt(v));
        } else if line == "#EXT-X-DISCONTINUITY" {
            cur.discontinuity = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:DURATION=") {
            cur.parts.push(printed_ms(v.split(',').next().unwrap()));
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            cur.extinf = Some(printed_ms(v.trim_end_matches(',')));
            listed.push(Listed::default());
        }
    }
    for (i, s) in listed.iter().enumerate() {
        for &p in &s.parts {
            let limit = part_target.ok_or("parts without PART-TARGET")?;
            if p > limit {
                return Err(format!("segment {i}: part of {p} ms above PART-TARGET {limit} ms"));
            }
        }
        let Some(extinf) = s.extinf else { continue };
        if (extinf + 500) / 1000 > target {
            return Err(format!("segment {i}: EXTINF {extinf} ms above TARGETDURATION {target}"));
        }
        if !s.parts.is_empty() && s.parts.iter().sum::<u64>() != extinf {
            return Err(format!("segment {i}: parts {:?} do not add up to EXTINF {extinf} ms", s.parts));
        }
        let next = &listed[i + 1];
        if let (Some(a), Some(b), false) = (s.pdt, next.pdt, next.discontinuity) {
            if b != a + extinf {
                return Err(format!("segment {i}: PDT {a} + EXTINF {extinf} ms != next PDT {b}"));
            }
        }
    }
    Ok(())
}

/// fMP4 decode times: each fragment of a track starts where the previous one ended (tfdt plus
/// its samples' durations), across segments; returns per track the (tfdt, duration) of each run.
fn fmp4_runs(segments: &[Bytes]) -> std::collections::BTreeMap<u32, Vec<(u64, u64)>> {
    let mut runs = std::collections::BTreeMap::<u32, Vec<(u64, u64)>>::new();
    for data in segments {
        for b in fmp4::boxes(data) {
            let b = b.unwrap();
            if &b.kind != b"moof" {
                continue;
            }
            for run in fmp4::parse_moof(&data[b.offset..b.end()]).unwrap() {
                let duration = run.samples.iter().map(|s| u64::from(s.duration)).sum();
                runs.entry(run.track_id).or_default().push((run.base_decode_time.unwrap(), duration));
            }
        }
    }
    runs
}

fn check_fmp4_continuity(segments: &[Bytes]) -> Result<(), String> {
    for (track, runs) in fmp4_runs(segments) {
        for w in runs.windows(2) {
            if w[1].0 != w[0].0 + w[0].1 {
                return Err(format!("track {track}: fragment at {} + {} then one at {}", w[0].0, w[0].1, w[1].0));
            }
        }
    }
    Ok(())
}

/// MPEG-TS audio PES timestamps (AAC, 44.1 kHz) are the first one plus whole AAC frames, to the
/// 90 kHz tick (`hls_sync` smoothing), not RTMP's milliseconds.
fn check_ts_audio_counts_samples(segments: &[Bytes]) -> Result<(), String> {
    let pts: Vec<u64> = segments
        .iter()
        .flat_map(|d| mpegts::read::pes_starts(d))
        .filter(|p| p.pid == AUDIO_PID)
        .filter_map(|p| p.pts)
        .collect();
    let frame = 90_000.0 * 1024.0 / 44_100.0;
    for &p in &pts {
        let frames = ((p - pts[0]) as f64 / frame).round();
        if ((p - pts[0]) as f64 - frames * frame).abs() > 1.0 {
            return Err(format!("audio PES at {p} is not a whole number of frames after {}", pts[0]));
        }
    }
    Ok(())
}

/// A tiny deterministic generator for arrival jitter.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

/// Feed `secs` of video at `fps` (RTMP milliseconds, as an encoder rounds them) with a keyframe
/// every `gop` frames and AAC at 44.1 kHz, starting at `start_ms`; each message arrives at
/// `wall_ms` plus its media time plus up to `jitter_ms` of network delay.
#[allow(clippy::too_many_arguments)]
fn feed_live(
    seg: &mut Segmenter,
    start_ms: u32,
    secs: u32,
    fps: u32,
    gop: u32,
    wall_ms: u64,
    jitter_ms: u64,
    rng: &mut Lcg,
) -> Vec<Event> {
    let mut events = Vec::new();
    let mut audio_frames = 0u64;
    for i in 0..secs * fps {
        let media = u64::from(i) * 1000 / u64::from(fps);
        loop {
            let audio_media = audio_frames * 1024 * 1000 / 44_100;
            if audio_media > media {
                break;
            }
            let now = wall_ms + audio_media + rng.below(jitter_ms);
            seg.push(false, start_ms + audio_media as u32, &audio_frame(), now);
            audio_frames += 1;
        }
        let now = wall_ms + media + rng.below(jitter_ms);
        seg.push(true, start_ms + media as u32, &video_frame(i % gop == 0), now);
        events.extend(std::iter::from_fn(|| seg.poll_event()));
    }
    events
}

fn segment_data(events: &[Event]) -> Vec<Bytes> {
    segments(events).into_iter().map(|s| s.3).collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Program date-times advance by `#EXTINF` exactly whatever the arrival jitter, parts add
    /// up to their segments, no duration is above its target, and fMP4 fragments of each track
    /// follow each other without gap or overlap.
    #[test]
    fn playlist_times_and_decode_times_are_exact(
        fmp4 in proptest::bool::ANY,
        fps in proptest::sample::select(vec![24u32, 25, 30, 50, 60]),
        gop_secs in 1u32..4,
        fragment in 1u64..4,
        part_ms in 100u64..1000,
        jitter_ms in 0u64..200,
        seed in proptest::num::u64::ANY,
        start_ms in 0u32..100_000,
    ) {
        let s = Settings {
            container: if fmp4 { Container::Fmp4 } else { Container::Ts },
            part_target: Some(Duration::from_millis(part_ms)),
            playlist_length: Duration::from_secs(60),
            ..settings(fragment)
        };
        let mut seg = started(s, true);
        let mut rng = Lcg(seed);
        let events = feed_live(&mut seg, start_ms, 20, fps, gop_secs * fps, 1_796_000_000_000, jitter_ms, &mut rng);
        let text = seg.playlist();
        proptest::prop_assert!(text.matches("#EXTINF").count() >= 3, "{}", text);
        if let Err(e) = check_playlist_times(&text) {
            proptest::prop_assert!(false, "{}\n{}", e, text);
        }
        if fmp4 {
            if let Err(e) = check_fmp4_continuity(&segment_data(&events)) {
                proptest::prop_assert!(false, "{}", e);
            }
        } else if let Err(e) = check_ts_audio_counts_samples(&segment_data(&events)) {
            proptest::prop_assert!(false, "{}", e);
        }
    }
}

#[test]
fn program_date_time_is_anchored_once_and_again_after_a_jump() {
    let s = Settings { part_target: Some(Duration::from_millis(500)), ..settings(2) };
    let mut seg = started(s, true);
    let mut rng = Lcg(7);
    let wall = 1_796_000_000_000;
    feed_live(&mut seg, 0, 10, 30, 60, wall, 120, &mut rng);
    let before = seg.playlist();
    check_playlist_times(&before).unwrap();
    // The first segment is dated by the arrival of its first frame.
    let first = before.lines().find_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:")).unwrap();
    assert!((wall..wall + 120).contains(&parse_pdt(first)), "{before}");
    // The encoder restarts 10 s later (wall clock) with its clock at 0: the timeline takes the
    // jump out, the playlist marks it, and the first segment after it is dated by its arrival.
    let restart = wall + 20_000;
    feed_live(&mut seg, 0, 10, 30, 60, restart, 0, &mut rng);
    let text = seg.playlist();
    check_playlist_times(&text).unwrap();
    let after: Vec<&str> = text.split("#EXT-X-DISCONTINUITY\n").collect();
    assert_eq!(after.len(), 2, "{text}");
    let pdt = after[1].lines().find_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:")).unwrap();
    assert!((restart..restart + 100).contains(&parse_pdt(pdt)), "re-anchored at {pdt}: {text}");
}

#[test]
fn fmp4_audio_decode_times_count_samples_and_resync_after_a_gap() {
    let s = Settings { container: Container::Fmp4, ..settings(1) };
    let mut seg = started(s, true);
    let mut rng = Lcg(1);
    let mut events = feed_live(&mut seg, 1000, 5, 25, 25, 0, 0, &mut rng);
    let data = segment_data(&events);
    check_fmp4_continuity(&data).unwrap();
    let audio = &fmp4_runs(&data)[&AUDIO_TRACK];
    assert_eq!(audio[0].0, 44_100, "anchored at the first timestamp (1 s)");
    assert!(audio.iter().all(|r| r.1 % 1024 == 0), "{audio:?}");
    // One second of audio lost (video goes on): the count starts again from the next frame.
    for i in 0..50u32 {
        let ts = 6000 + i * 40;
        if i >= 25 {
            let a = 6000 + 25 * 40 + (i - 25) * 40;
            seg.push(false, a, &audio_frame(), 0);
        }
        seg.push(true, ts, &video_frame(i % 25 == 0), 0);
    }
    seg.finish();
    events.extend(std::iter::from_fn(|| seg.poll_event()));
    let runs = fmp4_runs(&segment_data(&events));
    let audio = &runs[&AUDIO_TRACK];
    let resumed = audio.iter().find(|r| r.0 >= 7000 * 44_100 / 1000 - 1024).expect("audio after the gap");
    assert_eq!(resumed.0, 7000 * 44_100 / 1000, "{audio:?}");
}

#[test]
fn target_duration_never_goes_down_and_counts_what_is_printed() {
    let s = Settings { playlist_length: Duration::from_secs(6), ..settings(1) };
    let mut seg = started(s, false);
    // 2.5 s GOPs: EXTINF 2.500 rounds to 3.
    feed(&mut seg, 0, 10, 62, false);
    feed(&mut seg, 10_000, 1, 25, false);
    assert!(seg.playlist().contains("#EXTINF:2.480,") || seg.playlist().contains("#EXTINF:2.500,"));
    let first = target_duration(&seg.playlist());
    // 1 s GOPs until the long segments have left the window: the target stays.
    feed(&mut seg, 11_000, 20, 25, false);
    let text = seg.playlist();
    assert!(!text.contains("#EXTINF:2.4") && !text.contains("#EXTINF:2.5"), "{text}");
    assert_eq!(target_duration(&text), first, "{text}");
    assert_eq!(seg.position().target_duration, first);
}

#[test]
fn opus_packets_say_their_sample_count() {
    // CELT 20 ms, one frame; SILK 60 ms; two CELT 10 ms frames; code 3 with 6 frames of 2.5 ms.
    assert_eq!(opus_packet_samples(&[0xF8, 0xFF]), Some(960));
    assert_eq!(opus_packet_samples(&[0x18]), Some(2880));
    assert_eq!(opus_packet_samples(&[0xF1]), Some(960));
    assert_eq!(opus_packet_samples(&[0x83, 0x06]), Some(720));
    assert_eq!(opus_packet_samples(&[0x83]), None);
    assert_eq!(opus_packet_samples(&[]), None);
}

#[test]
fn fmp4_video_after_a_pause_keeps_its_own_decode_time() {
    let s = Settings { container: Container::Fmp4, ..settings(1) };
    let mut seg = started(s, true);
    let mut events = Vec::new();
    // 25 fps with AAC; video pauses for 2 s at 3 s (audio goes on), then resumes mid-GOP.
    let mut audio_frames = 0u64;
    for ms in (0..8000u32).step_by(40) {
        while audio_frames * 1024 * 1000 / 44_100 <= u64::from(ms) {
            seg.push(false, (audio_frames * 1024 * 1000 / 44_100) as u32, &audio_frame(), 0);
            audio_frames += 1;
        }
        if !(3000..4960).contains(&ms) {
            seg.push(true, ms, &video_frame(ms % 1000 == 0), 0);
        }
        events.extend(std::iter::from_fn(|| seg.poll_event()));
    }
    seg.finish();
    events.extend(std::iter::from_fn(|| seg.poll_event()));
    let runs = fmp4_runs(&segment_data(&events));
    let video = &runs[&VIDEO_TRACK];
    let resumed = video.iter().find(|r| r.0 > 3000 * 90).expect("video after the pause");
    assert_eq!(resumed.0, 4960 * 90, "{video:?}");
    assert_eq!(video[0].0, 0);
}

#[test]
fn an_interrupted_playlist_keeps_its_target_duration_and_date_times() {
    // Low-latency playlists carry the date-times.
    let ll = Settings { part_target: Some(Duration::from_millis(500)), ..settings(2) };
    let mut seg = started(ll, false);
    feed(&mut seg, 0, 16, 125, false);
    let before = target_duration(&seg.playlist());
    assert!(before >= 5, "{before}");
    seg.interrupt(Some(2)).unwrap();
    // The next publisher's segments are shorter (the listed ones still need the old target) and
    // its wall clock, as the test passes it, restarts too.
    seg.push(true, 0, &Bytes::from_static(&AVC_HEADER), 0);
    feed(&mut seg, 0, 7, 50, false);
    let text = seg.playlist();
    assert_eq!(target_duration(&text), before, "{text}");
    let dates: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:")).collect();
    assert!(dates.len() > 5, "{text}");
    assert!(dates.windows(2).all(|w| w[0] < w[1]), "date-times never go back: {text}");
}

/// The segmenter goes by the header it is given and does not parse the body again: bodies
/// that all say "inter frame" but come with keyframe headers are cut at those keyframes.
#[test]
fn the_header_given_is_the_one_used() {
    let mut seg = started(settings(1), false);
    let inter = video_frame(false);
    let key_header = flv::parse_video(&video_frame(true)).unwrap();
    let inter_header = flv::parse_video(&inter).unwrap();
    assert_eq!(key_header.payload_end - key_header.payload_offset, 9, "the test frames' payload");
    let key_body = {
        let mut b = inter.to_vec();
        b.resize(key_header.payload_end, 0);
        Bytes::from(b)
    };
    for i in 0..100u32 {
        let (h, body) = if i % 25 == 0 { (&key_header, &key_body) } else { (&inter_header, &inter) };
        seg.push_video(i * 40, Some(h), body, 0);
    }
    let events: Vec<Event> = std::iter::from_fn(|| seg.poll_event()).collect();
    let durations: Vec<f64> = segments(&events).iter().map(|s| s.2).collect();
    assert_eq!(durations, vec![1.0, 1.0, 1.0], "cut at the keyframes the headers name");
}

/// A header that does not belong to the body it comes with (its payload ends past the body)
/// is skipped with a warning, not sliced out of bounds.
#[test]
fn a_header_from_another_body_is_skipped() {
    let mut seg = started(settings(1), true);
    let long = flv::parse_video(&video_frame(true)).unwrap();
    let audio = flv::parse_audio(&audio_frame()).unwrap();
    seg.push_video(0, Some(&long), &Bytes::from_static(&[0x17, 1, 0, 0, 0]), 0);
    seg.push_audio(0, Some(&audio), &Bytes::from_static(&[0xAF, 1]), 0);
    let warnings: Vec<String> = std::iter::from_fn(|| seg.poll_event())
        .filter_map(|e| match e {
            Event::Warning(w) => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

fn split_settings() -> Settings {
    Settings {
        container: Container::Fmp4,
        demux: true,
        part_target: Some(Duration::from_millis(500)),
        session: Some(7),
        ..settings(2)
    }
}

/// A complete segment file: (file, data, tracks, media_ms).
type SegmentFile = (String, Bytes, Tracks, Option<(u64, u64)>);

fn segment_files(events: &[Event]) -> Vec<SegmentFile> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Segment { file, data, tracks, media_ms, .. } => {
                Some((file.clone(), data.clone(), *tracks, *media_ms))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn demuxed_fmp4_writes_one_file_per_track_cut_together() {
    let mut seg = started(split_settings(), true);
    let events = feed(&mut seg, 0, 7, 50, true);
    assert!(seg.split());
    let inits: Vec<(&str, Tracks)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Init { file, tracks, .. } => Some((file.as_str(), *tracks)),
            _ => None,
        })
        .collect();
    assert_eq!(inits, [("stream-7-init.mp4", Tracks::Video), ("stream-7-init.a.mp4", Tracks::Audio)]);
    let files = segment_files(&events);
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "stream-7-0.m4s",
            "stream-7-0.a.m4s",
            "stream-7-1.m4s",
            "stream-7-1.a.m4s",
            "stream-7-2.m4s",
            "stream-7-2.a.m4s"
        ]
    );
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    for (file, data, tracks, media_ms) in &files {
        let runs = fmp4_runs(std::slice::from_ref(data));
        let ids: Vec<u32> = runs.keys().copied().collect();
        let want = if file.ends_with(".a.m4s") {
            (vec![AUDIO_TRACK], Tracks::Audio)
        } else {
            (vec![VIDEO_TRACK], Tracks::Video)
        };
        assert_eq!((ids, *tracks), want, "{file}: one track each");
        let (start, end) = media_ms.expect("fMP4 segments say their media time");
        assert!(end > start + 1500, "{file}: {start}..{end}");
        if *tracks == Tracks::Video {
            video.push((start, end))
        } else {
            audio.push((start, end))
        }
    }
    for spans in [&video, &audio] {
        assert!(spans.windows(2).all(|w| w[0].1 == w[1].0), "consecutive segments meet: {spans:?}");
    }
    for (v, a) in video.iter().zip(&audio) {
        assert!(v.0.abs_diff(a.0) < 50 && v.1.abs_diff(a.1) < 50, "cut together: {v:?} {a:?}");
    }
    check_fmp4_continuity(&segment_data(&events)).unwrap();
    // Parts are split too: the audio part of each is named after the video one.
    let parts: Vec<&str> = events
        .iter()
        .filter_map(|e| if let Event::Part { file, .. } = e { Some(file.as_str()) } else { None })
        .collect();
    assert!(parts.contains(&"stream-7-0.0.m4s") && parts.contains(&"stream-7-0.0.a.m4s"), "{parts:?}");
}

/// DASH serves a split segment being written as its parts (`dash::shared`): each track's parts,
/// joined, are its segment file (`styp` first), and each part says where that segment starts on
/// the track's clock, as the segment's `media_ms` will.
#[test]
fn demuxed_parts_join_into_each_tracks_segment_and_say_where_it_starts() {
    let mut seg = started(split_settings(), true);
    let events = feed(&mut seg, 0, 7, 50, true);
    let mut checked = 0;
    for (file, data, tracks, media_ms) in segment_files(&events) {
        let msn: u64 = file.trim_start_matches("stream-7-").split('.').next().unwrap().parse().unwrap();
        let parts: Vec<(&Bytes, Option<u64>)> = events
            .iter()
            .filter_map(|e| match e {
                Event::Part { msn: m, data, tracks: t, media_start_ms, .. } if *m == msn && *t == tracks => {
                    Some((data, *media_start_ms))
                }
                _ => None,
            })
            .collect();
        assert!(parts.len() >= 3, "{file}: 2 s in parts of 0.5 s: {}", parts.len());
        let joined: Vec<u8> = parts.iter().flat_map(|(d, _)| d.iter().copied()).collect();
        assert_eq!(&joined[..], &data[..], "{file}: the segment is its parts");
        assert_eq!(&joined[4..8], b"styp", "{file}");
        let start = media_ms.unwrap().0;
        assert!(parts.iter().all(|(_, s)| *s == Some(start)), "{file}: {start} {parts:?}");
        checked += 1;
    }
    assert_eq!(checked, 6);
}

/// Split, a track with no samples for a whole segment (the publisher's audio stopped for a
/// while): its file is not written (it would be only a `styp`), and its playlist lists a gap
/// there (`#EXT-X-GAP`, version 8; its parts `GAP=YES`), which players do not load; the other
/// track's playlist is unchanged. Said once.
#[test]
fn demuxed_a_track_without_samples_for_a_segment_is_a_gap_not_an_empty_file() {
    let mut seg = started(split_settings(), true);
    let mut events = feed(&mut seg, 0, 4, 50, true);
    events.extend(feed(&mut seg, 4000, 2, 50, false));
    // Open the segment after the gap and hold it there: its parts are listed in full.
    events.extend(feed(&mut seg, 6000, 1, 50, true));
    let files: Vec<String> = segment_files(&events).into_iter().map(|f| f.0).collect();
    assert!(files.contains(&"stream-7-2.m4s".to_string()), "{files:?}");
    assert!(!files.contains(&"stream-7-2.a.m4s".to_string()), "no empty audio file: {files:?}");
    assert!(files.contains(&"stream-7-1.a.m4s".to_string()), "{files:?}");
    let audio = seg.audio_playlist().unwrap();
    assert!(audio.contains("#EXT-X-VERSION:8\n"), "{audio}");
    let gap = audio.split("#EXTINF:").find(|s| s.contains("stream-7-1.a.m4s")).unwrap();
    assert!(gap.ends_with("#EXT-X-GAP\n"), "the gap is the segment after stream-7-1: {audio}");
    assert_eq!(audio.matches("#EXT-X-GAP\n").count(), 1, "{audio}");
    let gap_parts: Vec<&str> =
        audio.lines().filter(|l| l.contains("stream-7-2.") && l.starts_with("#EXT-X-PART:")).collect();
    assert!(!gap_parts.is_empty() && gap_parts.iter().all(|l| l.ends_with(",GAP=YES")), "{audio}");
    assert!(!audio.lines().any(|l| l.contains("stream-7-1.") && l.contains("GAP=YES")), "{audio}");
    let video = seg.playlist();
    assert!(!video.contains("GAP") && video.contains("#EXT-X-VERSION:6\n"), "{video}");
    let warned = events.iter().filter(|e| matches!(e, Event::Warning(w) if w.contains("#EXT-X-GAP"))).count();
    assert_eq!(warned, 1);
    // The gap survives a resumed playlist (`hls_continuous`): the video playlist gives the
    // segments, the audio one its gaps.
    let mut next = segmenter(Settings { session: Some(8), ..split_settings() });
    next.resume(crate::playlist::parse_media_playlist(&video).unwrap());
    next.resume_audio_gaps(&crate::playlist::parse_media_playlist(&audio).unwrap());
    let text = next.render_playlist(audio_name, true);
    assert!(text.contains("#EXT-X-GAP\n#EXTINF:2.000,\nstream-7-2.a.m4s\n"), "{text}");
    assert_eq!(text.matches("#EXT-X-GAP").count(), 1, "{text}");
}

#[test]
fn demuxed_playlists_list_the_same_segments_and_a_master_ties_them() {
    let mut seg = started(split_settings(), true);
    feed(&mut seg, 0, 7, 50, true);
    let video = seg.playlist();
    let audio = seg.audio_playlist().expect("split");
    assert!(
        video.contains("#EXT-X-MAP:URI=\"stream-7-init.mp4\"\n") && video.contains("\nstream-7-1.m4s\n"),
        "{video}"
    );
    assert!(
        audio.contains("#EXT-X-MAP:URI=\"stream-7-init.a.mp4\"\n") && audio.contains("\nstream-7-1.a.m4s\n"),
        "{audio}"
    );
    assert!(
        audio.contains("URI=\"stream-7-0.0.a.m4s\"")
            && audio.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"stream-7-3."),
        "{audio}"
    );
    assert_eq!(video.replace(".a.", ".").len(), video.len());
    assert_eq!(audio.replace(".a.m", ".m"), video, "same timeline, audio names");
    let master = seg.master_playlist().unwrap();
    assert!(master.contains(
        "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"stream-audio.m3u8\"\n"
    ), "{master}");
    assert!(
        master.contains(",CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,AUDIO=\"audio\"\nstream-video.m3u8\n"),
        "{master}"
    );
    assert_eq!(seg.split_playlist_files(), Some(("stream-video.m3u8".into(), "stream-audio.m3u8".into())));
    let expired = feed(&mut seg, 7040, 40, 50, true);
    let gone: Vec<&str> = expired
        .iter()
        .filter_map(|e| if let Event::Expired { file, .. } = e { Some(file.as_str()) } else { None })
        .collect();
    assert!(gone.contains(&"stream-7-0.m4s") && gone.contains(&"stream-7-0.a.m4s"), "{gone:?}");
}

#[test]
fn demux_leaves_single_track_and_muxed_streams_alone() {
    let mut seg = started(split_settings(), false);
    let events = feed(&mut seg, 0, 5, 50, false);
    assert!(!seg.split() && seg.master_playlist().is_none() && seg.audio_playlist().is_none());
    let files = segment_files(&events);
    assert!(files.iter().all(|f| f.2 == Tracks::Video && !f.0.contains(".a.")), "{files:?}");
    let mut muxed = started(Settings { demux: false, ..split_settings() }, true);
    let events = feed(&mut muxed, 0, 5, 50, true);
    assert!(!muxed.split());
    let files = segment_files(&events);
    assert!(files.iter().all(|f| f.2 == Tracks::Both), "{files:?}");
    assert_eq!(fmp4_runs(std::slice::from_ref(&files[0].1)).len(), 2, "one moof with both tracks");
}

#[test]
fn audio_names_put_a_before_the_extension() {
    assert_eq!(audio_name("s-1-5.m4s"), "s-1-5.a.m4s");
    assert_eq!(audio_name("s/1-5.2.m4s"), "s/1-5.2.a.m4s");
    assert_eq!(audio_name("http://cdn/x.y/s-init.mp4"), "http://cdn/x.y/s-init.a.mp4");
}

#[test]
fn demuxed_a_track_that_comes_late_is_left_out_not_muxed_undeclared() {
    // Video first: the init segment has video only; AAC's header comes a second later.
    let mut seg = started(split_settings(), false);
    let mut events = feed(&mut seg, 0, 1, 50, false);
    seg.push(false, 1000, &Bytes::from_static(&AAC_HEADER), 1000);
    events.extend(feed(&mut seg, 1000, 5, 50, true));
    assert!(!seg.split());
    let files = segment_files(&events);
    assert!(files.len() >= 2, "{files:?}");
    for (file, data, tracks, _) in &files {
        assert_eq!(*tracks, Tracks::Video, "{file}");
        assert_eq!(fmp4_runs(std::slice::from_ref(data)).keys().copied().collect::<Vec<_>>(), [VIDEO_TRACK], "{file}");
    }
    assert!(events.iter().any(|e| matches!(e, Event::Warning(w) if w.contains("began after the first segment"))));
}

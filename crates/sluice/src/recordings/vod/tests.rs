use super::*;

const AVC_HEADER: &[u8] =
    &[0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x0A, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x0A, 1, 0, 2, 0x68, 0xCE];
/// AAC-LC, 44.1 kHz, stereo.
const AAC_HEADER: &[u8] = &[0xAF, 0, 0x12, 0x10];

fn tag(out: &mut Vec<u8>, kind: u8, ts: u32, body: &[u8]) {
    let len = body.len() as u32;
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&ts.to_be_bytes()[1..]);
    out.push((ts >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(body);
    out.extend_from_slice(&(len + 11).to_be_bytes());
}

/// An FLV file of `secs` seconds: 25 fps H.264 with a keyframe every `gop` frames (frame `i`'s
/// payload is one NAL unit of `video_bytes` starting with `i`, behind its 4-byte length), and 44.1 kHz AAC frames at their
/// rounded millisecond times.
fn flv_file(secs: u32, gop: u32, video_bytes: usize) -> Vec<u8> {
    flv_tracks(secs, gop, video_bytes, true, true)
}

/// [`flv_file`] with only the tracks asked for.
fn flv_tracks(secs: u32, gop: u32, video_bytes: usize, video: bool, audio: bool) -> Vec<u8> {
    let mut out = b"FLV\x01\x05\0\0\0\x09\0\0\0\0".to_vec();
    if video {
        tag(&mut out, 9, 0, AVC_HEADER);
    }
    if audio {
        tag(&mut out, 8, 0, AAC_HEADER);
    }
    let frames = if video { secs * 25 } else { 0 };
    let audio_frames = if audio { (u64::from(secs) * 44_100 / 1024) as u32 } else { 0 };
    let (mut v, mut a) = (0u32, 0u32);
    while v < frames || a < audio_frames {
        let vt = v * 40;
        let at = (u64::from(a) * 1024 * 1000 / 44_100) as u32;
        if v < frames && (a >= audio_frames || vt <= at) {
            let key = v % gop == 0;
            let mut body = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
            body.extend_from_slice(&(video_bytes as u32).to_be_bytes());
            body.extend_from_slice(&v.to_be_bytes());
            body.resize(5 + 4 + video_bytes, 0);
            tag(&mut out, 9, vt, &body);
            v += 1;
        } else {
            tag(&mut out, 8, at, &[0xAF, 1, 0x21, 0x10, 0x04]);
            a += 1;
        }
    }
    out
}

fn vod(file: &[u8]) -> Vod {
    Vod::open(&mut media::Slice(file)).unwrap()
}

#[test]
fn segments_are_cut_at_keyframes_and_add_up_to_the_file() {
    let file = flv_file(10, 25, 100);
    let v = vod(&file);
    assert_eq!(v.codecs, "h264+aac");
    // Keyframes every second; cut at the first one 4 s on: 0, 4, 8.
    assert_eq!(v.segments(), 3);
    let secs: Vec<f64> = (0..v.segments()).map(|k| v.segment_secs(k)).collect();
    assert_eq!(secs[..2], [4.0, 4.0]);
    let total: f64 = secs.iter().sum();
    assert!((total - v.duration_ms as f64 / 1000.0).abs() < 0.001, "{secs:?} vs {}", v.duration_ms);
    assert!((9.9..=10.1).contains(&total), "{total}");
}

#[test]
fn the_playlist_is_hls_vod_with_a_map_and_versioned_uris() {
    let v = vod(&flv_file(10, 25, 100));
    let p = v.playlist("?v=abc");
    let lines: Vec<&str> = p.lines().collect();
    assert_eq!(lines[..3], ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:4"]);
    assert!(lines.contains(&"#EXT-X-PLAYLIST-TYPE:VOD"));
    assert!(lines.contains(&"#EXT-X-MAP:URI=\"init.mp4?v=abc\""));
    assert_eq!(lines.iter().filter(|l| l.starts_with("#EXTINF:")).count(), 3);
    assert_eq!(lines[lines.len() - 2], "2.m4s?v=abc");
    assert_eq!(lines.last(), Some(&"#EXT-X-ENDLIST"));
}

#[test]
fn a_segment_starts_with_a_keyframe_and_carries_its_frames() {
    let file = flv_file(10, 25, 100);
    let v = vod(&file);
    assert!(v.init.starts_with(&[0, 0, 0]) && &v.init[4..8] == b"ftyp");
    let seg = v.segment(1, &mut media::Slice(&file)).unwrap().unwrap();
    let runs = fmp4::parse_moof(&seg).unwrap();
    let video = runs.iter().find(|r| r.track_id == VIDEO_ID).unwrap();
    assert_eq!(video.base_decode_time, Some(4000));
    assert_eq!(video.samples.len(), 100, "4 s at 25 fps");
    assert!(video.samples[0].is_sync());
    assert!(!video.samples[1].is_sync());
    assert!(video.samples.iter().all(|s| s.duration == 40 && s.size == 104));
    // The first frame's bytes are the tag's payload, not the FLV tag header: frame 100.
    let at = video.data_offset as usize;
    assert_eq!(&seg[at..at + 8], &[0, 0, 0, 100, 0, 0, 0, 100]);
    let audio = runs.iter().find(|r| r.track_id == AUDIO_ID).unwrap();
    // Whole AAC frames on a 44.1 kHz timeline, whatever the milliseconds' rounding.
    assert_eq!(audio.base_decode_time.unwrap() % 1024, 0);
    assert!(audio.samples.iter().all(|s| s.duration == 1024 && s.size == 3));
    assert!(v.segment(3, &mut media::Slice(&file)).unwrap().is_none());
}

#[test]
fn every_frame_is_in_exactly_one_segment() {
    let file = flv_file(10, 25, 10);
    let v = vod(&file);
    let (mut video, mut audio) = (0, 0);
    for k in 0..v.segments() {
        for run in fmp4::parse_moof(&v.segment(k, &mut media::Slice(&file)).unwrap().unwrap()).unwrap() {
            match run.track_id {
                VIDEO_ID => video += run.samples.len(),
                _ => audio += run.samples.len(),
            }
        }
    }
    assert_eq!(video, 250);
    assert_eq!(audio, 10 * 44_100 / 1024);
}

#[test]
fn long_gops_are_cut_at_the_byte_bound() {
    let file = flv_file(4, 100, 1000);
    let media = Media::open(&mut media::Slice(&file)).unwrap();
    let v = Vod::from_media(media).unwrap();
    assert_eq!(v.segments(), 1, "one 4 s GOP");
    let segs = cut(&v.tracks, 10_000);
    assert!(segs.len() >= 9, "{} segments of at most ~10 kB", segs.len());
}

#[test]
fn files_without_a_carried_codec_are_refused() {
    let mut out = b"FLV\x01\x05\0\0\0\x09\0\0\0\0".to_vec();
    // MP3 audio only (sound format 2).
    tag(&mut out, 8, 0, &[0x2F, 0xFF, 0xFB]);
    tag(&mut out, 8, 26, &[0x2F, 0xFF, 0xFB]);
    assert!(matches!(Vod::open(&mut media::Slice(&out)), Err(VodError::NoTracks)));
    assert!(matches!(Vod::open(&mut media::Slice(b"not media at all")), Err(VodError::Media(_))));
}

#[test]
fn an_end_of_sequence_tag_is_no_frame_and_cuts_nothing() {
    // What ffmpeg's FLV muxer writes last: an AVC end of sequence, flagged as a keyframe, at the
    // last frame's time (the 100th frame of a 25-frame GOP file cut at 4 s: 3.96 s after it).
    let mut file = flv_file(8, 50, 10);
    tag(&mut file, 9, 7960, &[0x17, 2, 0, 0, 0]);
    let v = vod(&file);
    assert_eq!(v.segments(), 2, "no segment of nothing at the end");
    let seg = v.segment(1, &mut media::Slice(&file)).unwrap().unwrap();
    let runs = fmp4::parse_moof(&seg).unwrap();
    let video = runs.iter().find(|r| r.track_id == VIDEO_ID).unwrap();
    assert_eq!(video.samples.last().unwrap().duration, 40, "the last frame keeps its duration");
    assert!((v.segment_secs(1) - 4.0).abs() < 0.05, "{}", v.segment_secs(1));
}

#[test]
fn a_keyframe_a_little_before_the_target_still_cuts() {
    // Keyframes every 1.96 s (49 frames): cut at 3.92 s, as B-frames' decode times would show.
    let v = vod(&flv_file(10, 49, 10));
    let secs: Vec<f64> = (0..v.segments()).map(|k| v.segment_secs(k)).collect();
    assert_eq!(secs[..2], [3.92, 3.92], "{secs:?}");
}

#[test]
fn audio_only_and_video_only_files_are_cut_too() {
    let audio = flv_tracks(10, 25, 10, false, true);
    let v = vod(&audio);
    assert_eq!(v.codecs, "aac");
    assert_eq!(v.segments(), 3, "every 4 s, at any frame");
    let seg = v.segment(1, &mut media::Slice(&audio)).unwrap().unwrap();
    let runs = fmp4::parse_moof(&seg).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].track_id, AUDIO_ID);

    let video = flv_tracks(10, 50, 10, true, false);
    let v = vod(&video);
    assert_eq!(v.codecs, "h264");
    assert_eq!(v.segments(), 3, "keyframes every 2 s: 0, 4, 8");
    let total: f64 = (0..v.segments()).map(|k| v.segment_secs(k)).sum();
    assert!((total - 10.0).abs() < 0.001, "{total}");
}

#[test]
fn a_file_cut_short_after_indexing_gives_shorter_segments_not_errors() {
    let file = flv_file(10, 25, 100);
    let v = vod(&file);
    let short = &file[..file.len() / 2];
    assert!(v.segment(0, &mut media::Slice(short)).unwrap().is_some());
    assert!(v.segment(2, &mut media::Slice(short)).unwrap().is_none(), "nothing left of the last segment");
}

#[test]
fn a_growing_file_lists_only_the_segments_that_can_no_longer_change() {
    let whole = flv_file(13, 50, 200);
    let closed = vod(&whole);
    // The file as a recorder has written it so far: up to about 8.5 s, the last tag cut short.
    let cut_at = whole.len() * 85 / 130 + 7;
    let growing = Vod::open_growing(&mut media::Slice(&whole[..cut_at])).unwrap();
    assert!(growing.growing());
    // Cuts at 4 s and 8 s; the one from 8 s is still open (the next keyframe is not written),
    // and the one from 4 s ends less than a second before the newest sample: the first only.
    assert_eq!(growing.segments(), 1);
    let playlist = growing.playlist("");
    assert!(playlist.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && !playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    assert_eq!(playlist.matches("#EXTINF:").count(), 1, "{playlist}");
    assert_eq!(growing.segment(1, &mut media::Slice(&whole[..cut_at])).unwrap(), None, "not listed, not served");
    // What it lists is what the closed file serves, byte for byte.
    let early = growing.segment(0, &mut media::Slice(&whole[..cut_at])).unwrap().unwrap();
    assert_eq!(early, closed.segment(0, &mut media::Slice(&whole)).unwrap().unwrap());
    assert_eq!(growing.init, closed.init);
    assert_eq!(growing.segment_secs(0), closed.segment_secs(0));

    let later = Vod::open_growing(&mut media::Slice(&whole[..whole.len() - 1000])).unwrap();
    assert_eq!(later.segments(), 2, "the segment from 4 s settles as the file grows");
}

#[test]
fn samples_past_the_end_of_a_growing_file_and_all_after_them_are_left_out() {
    let mut m = media::Media::open(&mut media::Slice(&flv_file(2, 25, 100))).unwrap();
    let total = m.samples.len();
    let at = m.samples[total / 2].offset + 1;
    written_only(&mut m, at);
    assert_eq!(m.samples.len(), total / 2, "the half-written sample and everything after it");
    assert!(m.samples.iter().all(|s| s.offset + u64::from(s.size) <= at));
}

//! Fragmented MP4 written from real encoder output, checked with ffprobe and ffmpeg: codecs,
//! picture size, frame counts and durations, with no warning and no decode error.

mod common;

use common::*;
use fmp4::complete_len;

/// Length of every clip, seconds.
const CLIP: f64 = 2.0;
/// Frames in a 2 s clip at 25 fps.
const VIDEO_FRAMES: usize = 50;

/// Makes an FLV with ffmpeg (`extra` selects the streams) and reads it into tracks.
fn flv_tracks(dir: &TempDir, extra: &[&str]) -> Vec<Track> {
    let flv = dir.path("in.flv");
    let mut args: Vec<String> = lavfi_inputs("2");
    args.extend(["-c:v", "libx264", "-g", "25", "-c:a", "aac"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["-f".into(), "flv".into(), flv.to_str().unwrap().into()]);
    ffmpeg(&args.iter().map(String::as_str).collect::<Vec<_>>());
    tracks_from_flv(&flv)
}

/// Writes `tracks` as init segment + two fragments into `dir`.
fn write(dir: &TempDir, tracks: &[Track]) -> std::path::PathBuf {
    let path = dir.path("out.mp4");
    std::fs::write(&path, write_fmp4(tracks)).unwrap();
    path
}

#[test]
fn h264_and_aac_from_flv() {
    let dir = TempDir::new("avc-aac");
    let tracks = flv_tracks(&dir, &[]);
    assert_eq!(tracks.len(), 2);
    assert_eq!(tracks[0].samples.len(), VIDEO_FRAMES);
    assert!(tracks[0].samples.iter().any(|s| s.cts_offset != 0), "x264 made B-frames");
    assert_eq!(tracks[0].samples.iter().filter(|s| s.keyframe).count(), 2, "-g 25: two GOPs");
    let path = write(&dir, &tracks);
    check(&path, &[Expect::track("h264", &tracks[0], CLIP), Expect::track("aac", &tracks[1], CLIP)]);
}

#[test]
fn h264_only_from_flv() {
    let dir = TempDir::new("avc");
    let tracks = flv_tracks(&dir, &["-an"]);
    assert_eq!(tracks.len(), 1);
    assert_eq!(tracks[0].samples.len(), VIDEO_FRAMES);
    check(&write(&dir, &tracks), &[Expect::track("h264", &tracks[0], CLIP)]);
}

#[test]
fn aac_only_from_flv() {
    let dir = TempDir::new("aac");
    let tracks = flv_tracks(&dir, &["-vn"]);
    assert_eq!(tracks.len(), 1);
    let frames = tracks[0].samples.len();
    assert!((86..=88).contains(&frames), "{frames} AAC frames in 2 s");
    check(&write(&dir, &tracks), &[Expect::track("aac", &tracks[0], CLIP)]);
}

/// Encodes with ffmpeg into a plain MP4, takes its configuration records and samples, writes
/// them as fMP4 and checks the one stream it holds.
fn mp4_roundtrip(tag: &str, codec_args: &[&str], codec_name: &str) -> (Track, serde_json::Value) {
    let dir = TempDir::new(tag);
    let src = dir.path("src.mp4");
    let mut args: Vec<String> = lavfi_inputs("2");
    args.extend(codec_args.iter().map(|s| s.to_string()));
    args.extend(["-f".into(), "mp4".into(), src.to_str().unwrap().into()]);
    ffmpeg(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let mut tracks = tracks_from_mp4(&src);
    assert_eq!(tracks.len(), 1);
    let path = write(&dir, &tracks);
    let mut streams = check(&path, &[Expect::track(codec_name, &tracks[0], CLIP)]);
    (tracks.remove(0), streams.remove(0))
}

#[test]
fn hevc_from_ffmpeg_mp4() {
    let args = ["-an", "-c:v", "libx265", "-tag:v", "hvc1", "-g", "25", "-x265-params", "log-level=error"];
    let (track, stream) = mp4_roundtrip("hevc", &args, "hevc");
    assert!(matches!(track.info.codec, fmp4::Codec::Hevc { .. }));
    assert_eq!(track.samples.len(), VIDEO_FRAMES);
    assert_eq!(stream["codec_tag_string"], "hvc1");
    assert_eq!((stream["width"].as_u64(), stream["height"].as_u64()), (Some(320), Some(240)));
}

#[test]
fn av1_from_ffmpeg_mp4() {
    let args: &[&str] = if has_encoder("libsvtav1") {
        &["-an", "-c:v", "libsvtav1", "-preset", "12", "-g", "25", "-svtav1-params", "lp=1"]
    } else if has_encoder("libaom-av1") {
        &["-an", "-c:v", "libaom-av1", "-cpu-used", "8", "-g", "25"]
    } else {
        eprintln!("no AV1 encoder in this ffmpeg; skipping AV1 interop");
        return;
    };
    let (track, stream) = mp4_roundtrip("av1", args, "av1");
    assert!(matches!(track.info.codec, fmp4::Codec::Av1 { .. }));
    assert_eq!(track.samples.len(), VIDEO_FRAMES);
    assert_eq!(stream["codec_tag_string"], "av01");
}

#[test]
fn opus_from_ffmpeg_mp4() {
    if !has_encoder("libopus") {
        eprintln!("no libopus in this ffmpeg; skipping Opus interop");
        return;
    }
    let (track, stream) = mp4_roundtrip("opus", &["-vn", "-c:a", "libopus", "-ac", "2", "-ar", "48000"], "opus");
    let fmp4::Codec::Opus { channels, pre_skip, .. } = track.info.codec else { panic!("not Opus") };
    assert_eq!((channels, pre_skip), (2, 312));
    assert_eq!(stream["channels"], 2);
    assert_eq!(stream["sample_rate"], "48000");
}

/// A recording cut in the middle of its second fragment, repaired with `complete_len`, plays
/// its first fragment cleanly.
#[test]
fn truncated_recording_is_repaired() {
    let dir = TempDir::new("repair");
    let tracks = flv_tracks(&dir, &[]);
    let whole = write_fmp4(&tracks);

    let first_fragment_end = fmp4::boxes(&whole).map(Result::unwrap).find(|b| &b.kind == b"mdat").unwrap().end();
    let cut = first_fragment_end + (whole.len() - first_fragment_end) / 2;
    let repaired = &whole[..complete_len(&whole[..cut])];
    assert_eq!(repaired.len(), first_fragment_end);

    let mp4 = dir.path("repaired.mp4");
    std::fs::write(&mp4, repaired).unwrap();
    let streams = probe(&mp4);
    decodes_cleanly(&mp4);
    let frames: Vec<usize> = streams.iter().map(|s| s["nb_read_frames"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(frames[0], 25, "the first GOP");
    assert!(frames[1] > 40 && frames[1] < tracks[1].samples.len(), "about 1 s of audio: {}", frames[1]);
}

/// A finished recording rewritten as progressive MP4 (`moov` first, full sample tables) plays
/// the same: codecs, frame and keyframe counts, durations; its tables give back the samples.
#[test]
fn faststart_rewrite_of_real_output() {
    let dir = TempDir::new("faststart");
    let tracks = flv_tracks(&dir, &[]);
    let fragmented = write_fmp4(&tracks);
    let list: Vec<_> = fmp4::boxes(&fragmented).map(Result::unwrap).collect();
    let mut builder = fmp4::TableBuilder::new();
    let mut payload = Vec::new();
    let init_end = list.iter().take_while(|b| &b.kind != b"moof").last().unwrap().end();
    for pair in list.windows(2).filter(|w| &w[0].kind == b"moof") {
        let (moof, mdat) = (pair[0], pair[1]);
        let header = mdat.header_size as u64;
        builder.add_fragment(&fragmented[moof.offset..moof.end()], header, (mdat.size as u64) - header).unwrap();
        payload.extend_from_slice(mdat.payload(&fragmented));
    }
    let (tables, len) = builder.finish();
    let mut out = fmp4::progressive_head(&fragmented[..init_end], &tables, len).unwrap();
    out.extend_from_slice(&payload);
    let kinds: Vec<_> = fmp4::boxes(&out).map(|b| b.unwrap().kind).collect();
    assert_eq!(kinds, [*b"ftyp", *b"moov", *b"mdat"]);

    let path = dir.path("faststart.mp4");
    std::fs::write(&path, &out).unwrap();
    check(&path, &[Expect::track("h264", &tracks[0], CLIP), Expect::track("aac", &tracks[1], CLIP)]);
    let back = tracks_from_mp4(&path);
    for (a, b) in back.iter().zip(&tracks) {
        assert_eq!(a.samples, b.samples, "track {}", b.info.id);
    }
}

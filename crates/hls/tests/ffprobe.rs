//! The segmenter's output read by the real ffmpeg/ffprobe: an FLV made by ffmpeg is segmented to
//! MPEG-TS and to fMP4 and written to a directory as sluice would; every segment and the playlist
//! must probe without warnings, and `ffmpeg -i stream.m3u8 -c copy` must give the whole duration.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use hls::{Container, Event, Segmenter, Settings};

const SECONDS: u32 = 8;

/// Feeds an FLV file's tag to the segmenter, its header parsed first (as sluice parses each
/// message once).
fn push(seg: &mut Segmenter, tag: &flv::Tag, timestamp: u32) {
    if tag.tag_type == flv::TAG_VIDEO {
        seg.push_video(timestamp, flv::parse_video(&tag.body).ok().as_ref(), &tag.body, 0);
    } else {
        seg.push_audio(timestamp, flv::parse_audio(&tag.body).ok().as_ref(), &tag.body, 0);
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hls-ffprobe-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An H.264 + AAC FLV, 2 s GOP, made by ffmpeg.
fn make_flv(dir: &Path, audio: bool, video: bool) -> Bytes {
    let out = dir.join("in.flv");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y"]);
    if video {
        cmd.args(["-f", "lavfi", "-i", &format!("testsrc=size=320x240:rate=25:duration={SECONDS}")]);
    }
    if audio {
        cmd.args(["-f", "lavfi", "-i", &format!("sine=frequency=440:sample_rate=44100:duration={SECONDS}")]);
    }
    if video {
        cmd.args(["-c:v", "libx264", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-bf", "2"]);
        cmd.args(["-pix_fmt", "yuv420p"]);
    }
    if audio {
        cmd.args(["-c:a", "aac", "-b:a", "64k"]);
    }
    let status = cmd.arg(&out).status().expect("ffmpeg runs");
    assert!(status.success());
    Bytes::from(std::fs::read(out).unwrap())
}

/// Run the segmenter over the file and write what it produces, as sluice's hls module does.
fn segment(flv: Bytes, s: Settings, dir: &Path) -> usize {
    let mut seg = Segmenter::new(s, "stream", Box::new(|| [7; 16])).unwrap();
    let mut segments = 0;
    let mut drain = |seg: &mut Segmenter| {
        while let Some(ev) = seg.poll_event() {
            match ev {
                Event::Init { file, data, .. } | Event::Segment { file, data, .. } => {
                    segments += usize::from(file.ends_with(".ts") || file.ends_with(".m4s"));
                    std::fs::write(dir.join(file), data).unwrap();
                }
                Event::Warning(w) => panic!("warning: {w}"),
                _ => {}
            }
        }
        std::fs::write(dir.join(seg.playlist_file()), seg.playlist()).unwrap();
    };
    for tag in flv::FlvReader::new(flv).unwrap() {
        let tag = tag.unwrap();
        if tag.tag_type == flv::TAG_VIDEO || tag.tag_type == flv::TAG_AUDIO {
            push(&mut seg, &tag, tag.timestamp);
            drain(&mut seg);
        }
    }
    seg.finish();
    drain(&mut seg);
    segments
}

fn probe(path: &Path) -> (String, String) {
    let out = Command::new("ffprobe")
        .args(["-v", "warning", "-show_entries", "stream=codec_name,nb_read_frames:format=duration", "-count_frames"])
        .args(["-of", "default=nw=1"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn copy_duration(playlist: &Path, dir: &Path) -> f64 {
    let out_mp4 = dir.join("out.mp4");
    let out = Command::new("ffmpeg")
        .args(["-v", "warning", "-y", "-allowed_extensions", "ALL", "-i"])
        .arg(playlist)
        .args(["-c", "copy"])
        .arg(&out_mp4)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "ffmpeg -c copy: {stderr}");
    let (info, _) = probe(&out_mp4);
    info.lines().find_map(|l| l.strip_prefix("duration=")).unwrap().parse().unwrap()
}

fn check(container: Container, audio: bool, video: bool) {
    let tag = format!("{container:?}-{audio}-{video}");
    let dir = temp_dir(&tag);
    let flv = make_flv(&dir, audio, video);
    let s = Settings { container, fragment: Duration::from_secs(2), ..Settings::default() };
    let n = segment(flv, s, &dir);
    assert!(n >= 3, "{tag}: {n} segments");
    let ext = if container == Container::Ts { "ts" } else { "m4s" };
    for i in 0..n {
        let path = dir.join(format!("stream-{i}.{ext}"));
        let path = if container == Container::Fmp4 {
            // A media segment plays with its init segment in front of it.
            let mut joined = std::fs::read(dir.join("stream-init.mp4")).unwrap();
            joined.extend(std::fs::read(&path).unwrap());
            let p = dir.join(format!("joined-{i}.mp4"));
            std::fs::write(&p, joined).unwrap();
            p
        } else {
            path
        };
        let (info, warnings) = probe(&path);
        assert!(warnings.trim().is_empty(), "{tag} segment {i}: {warnings}");
        assert_eq!(info.contains("codec_name=h264"), video, "{tag}: {info}");
        assert_eq!(info.contains("codec_name=aac"), audio, "{tag}: {info}");
    }
    let duration = copy_duration(&dir.join("stream.m3u8"), &dir);
    assert!((duration - f64::from(SECONDS)).abs() < 0.5, "{tag}: copied {duration} s of {SECONDS}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mpegts_segments_probe_clean_and_copy_whole() {
    check(Container::Ts, true, true);
}

#[test]
fn mpegts_audio_only_and_video_only() {
    check(Container::Ts, true, false);
    check(Container::Ts, false, true);
}

#[test]
fn fmp4_segments_probe_clean_and_copy_whole() {
    check(Container::Fmp4, true, true);
}

#[test]
fn fmp4_audio_only_and_video_only() {
    check(Container::Fmp4, true, false);
    check(Container::Fmp4, false, true);
}

/// Decode a file whole; ffmpeg's complaints (`-v error`) come back.
fn decode_errors(path: &Path, extra: &[&str]) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(path)
        .args(extra)
        // Timestamps as they are (no frame-rate grid): decoding is what is checked.
        .args(["-fps_mode", "passthrough", "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let mut errors = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        errors.push_str(" (exit status)");
    }
    errors
}

/// Segment `flv` with its timestamps rewritten by `stamp`; every segment on its own (fMP4: after
/// its init segment) must decode without an error. Returns the playlist.
fn decode_each_segment(tag: &str, s: Settings, stamp: impl FnMut(u32) -> u32) -> String {
    let dir = temp_dir(tag);
    let flv = make_flv(&dir, true, true);
    let container = s.container;
    let mut seg = Segmenter::new(s, "stream", Box::new(|| [7; 16])).unwrap();
    let mut stamp = stamp;
    let mut files = Vec::new();
    let mut init = Vec::new();
    let mut drain = |seg: &mut Segmenter| {
        while let Some(ev) = seg.poll_event() {
            match ev {
                Event::Init { data, .. } => init = data.to_vec(),
                Event::Segment { file, data, .. } => {
                    let mut whole = init.clone();
                    whole.extend_from_slice(&data);
                    let name = if container == Container::Fmp4 { format!("{file}.mp4") } else { file };
                    std::fs::write(dir.join(&name), whole).unwrap();
                    files.push(name);
                }
                _ => {}
            }
        }
    };
    for tag in flv::FlvReader::new(flv).unwrap() {
        let tag = tag.unwrap();
        if tag.tag_type == flv::TAG_VIDEO || tag.tag_type == flv::TAG_AUDIO {
            push(&mut seg, &tag, stamp(tag.timestamp));
            drain(&mut seg);
        }
    }
    seg.finish();
    drain(&mut seg);
    let text = seg.playlist();
    assert!(files.len() >= 4, "{tag}: {files:?}");
    for f in &files {
        let path = dir.join(f);
        let mut errors = decode_errors(&path, &[]);
        // A segment cut without a keyframe whose GOP outlasts it holds no video at all: an
        // fMP4 file with an empty video track, which ffmpeg will not open alone. Its audio
        // must still decode.
        if container == Container::Fmp4 && video_packets(&path) == 0 {
            errors = decode_errors(&path, &["-vn"]);
        }
        assert!(errors.trim().is_empty(), "{tag} {f}: {errors}\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    text
}

fn video_packets(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-count_packets", "-show_entries", "stream=nb_read_packets"])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

/// The publisher's clock misbehaves: +10 h, back to 0, then a stretch of random timestamps.
/// Each segment on its own must decode without an error (nginx-rtmp's rules left most of them
/// starting mid-GOP, or with timestamps going back), in both containers.
#[test]
fn segments_decode_after_timestamp_jumps() {
    for container in [Container::Ts, Container::Fmp4] {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let stamp = move |t: u32| match t {
            0..2000 => t,
            2000..4000 => t + 36_000_000,
            4000..6000 => t - 4000,
            _ => {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u32
            }
        };
        let s = Settings { container, fragment: Duration::from_secs(1), ..Settings::default() };
        let text = decode_each_segment(&format!("jumps-{container:?}"), s, stamp);
        let target: u64 = text.lines().find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:")).unwrap().parse().unwrap();
        assert!(target <= 7, "{text}");
        assert!(!text.contains("#EXTINF:0.000"), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY"), "{text}");
    }
}

/// GOPs (2 s) longer than `hls_max_fragment` (1.5 s): forced cuts, and video in the segment after
/// each resumes at the next keyframe, so every segment decodes on its own.
#[test]
fn segments_cut_without_a_keyframe_still_decode() {
    for container in [Container::Ts, Container::Fmp4] {
        let s = Settings {
            container,
            fragment: Duration::from_secs(1),
            max_fragment: Duration::from_millis(1500),
            ..Settings::default()
        };
        decode_each_segment(&format!("forced-{container:?}"), s, |t| t);
    }
}

/// Demuxed fMP4 (`Settings::demux`, what DASH shares): every video segment probes as H.264
/// alone and every audio segment as AAC alone (each after its own init segment), without a
/// warning, and ffmpeg copies the whole duration of both tracks from the master playlist.
#[test]
fn demuxed_fmp4_tracks_probe_clean_and_the_master_copies_whole() {
    let dir = temp_dir("demux");
    let flv = make_flv(&dir, true, true);
    let s =
        Settings { container: Container::Fmp4, demux: true, fragment: Duration::from_secs(2), ..Settings::default() };
    let mut seg = Segmenter::new(s, "stream", Box::new(|| [7; 16])).unwrap();
    let mut files = Vec::new();
    let drain = |seg: &mut Segmenter, files: &mut Vec<String>| {
        while let Some(ev) = seg.poll_event() {
            match ev {
                Event::Init { file, data, .. } | Event::Segment { file, data, .. } => {
                    std::fs::write(dir.join(&file), data).unwrap();
                    files.push(file);
                }
                Event::Warning(w) => panic!("warning: {w}"),
                _ => {}
            }
        }
    };
    for tag in flv::FlvReader::new(flv).unwrap() {
        let tag = tag.unwrap();
        if tag.tag_type == flv::TAG_VIDEO || tag.tag_type == flv::TAG_AUDIO {
            push(&mut seg, &tag, tag.timestamp);
            drain(&mut seg, &mut files);
        }
    }
    seg.finish();
    drain(&mut seg, &mut files);
    assert!(seg.split());
    let (video, audio) = seg.split_playlist_files().unwrap();
    std::fs::write(dir.join(video), seg.playlist()).unwrap();
    std::fs::write(dir.join(audio), seg.audio_playlist().unwrap()).unwrap();
    std::fs::write(dir.join(seg.playlist_file()), seg.master_playlist().unwrap()).unwrap();
    let segments: Vec<&String> = files.iter().filter(|f| f.ends_with(".m4s")).collect();
    assert!(segments.len() >= 6, "{files:?}");
    for (i, file) in segments.iter().enumerate() {
        let is_audio = file.ends_with(".a.m4s");
        let init = if is_audio { "stream-init.a.mp4" } else { "stream-init.mp4" };
        let mut joined = std::fs::read(dir.join(init)).unwrap();
        joined.extend(std::fs::read(dir.join(file)).unwrap());
        let p = dir.join(format!("joined-{i}.mp4"));
        std::fs::write(&p, joined).unwrap();
        let (info, warnings) = probe(&p);
        assert!(warnings.trim().is_empty(), "{file}: {warnings}");
        assert_eq!(
            (info.contains("codec_name=h264"), info.contains("codec_name=aac")),
            (!is_audio, is_audio),
            "{file}: {info}"
        );
    }
    let duration = copy_duration(&dir.join("stream.m3u8"), &dir);
    assert!((duration - f64::from(SECONDS)).abs() < 0.5, "copied {duration} s of {SECONDS}");
    let (info, _) = probe(&dir.join("out.mp4"));
    assert!(info.contains("codec_name=h264") && info.contains("codec_name=aac"), "both tracks: {info}");
    let _ = std::fs::remove_dir_all(&dir);
}

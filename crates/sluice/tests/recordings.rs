//! Recordings watched over HTTP as HLS VOD: sluice records a publish (FLV and fragmented MP4),
//! then serves each file as a playlist, an init segment and keyframe-cut fMP4 segments, read
//! by ffprobe/ffmpeg over HTTP; hostile names and files outside `record_path` are refused.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The publish: 8 s, a keyframe every 2 s (25 fps).
const SECS: u32 = 8;
const GOP: u32 = 50;

/// `ffprobe` of a file or URL: (duration in seconds, video packets, codecs).
fn probe(input: &str) -> (f64, usize, Vec<String>) {
    let out = run_timeout(
        Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", "15000000", "-show_entries", "format=duration:stream=codec_name"])
            .args(["-count_packets", "-show_entries", "stream=codec_type,nb_read_packets", "-of", "json", input]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "ffprobe {input}: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let duration = v["format"]["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or(0.0);
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .and_then(|s| s["nb_read_packets"].as_str()?.parse().ok())
        .unwrap_or(0);
    let mut codecs: Vec<String> = streams.iter().filter_map(|s| s["codec_name"].as_str().map(str::to_owned)).collect();
    codecs.sort();
    (duration, video, codecs)
}

/// `curl` of `path` on the server's HTTP port.
fn get(server: &Server, path: &str) -> Reply {
    curl_reply(&[], &format!("http://127.0.0.1:{}{path}", server.http_port))
}

fn wait_log(server: &Server, what: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if server.log().lines().filter(|l| l.contains(what)).count() >= count {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("never saw {count} x {what:?}; log:\n{}", server.log());
}

/// `GET /api/v1/recordings`: the list.
fn listed(server: &Server) -> Vec<serde_json::Value> {
    let reply = get(server, "/api/v1/recordings");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    v["recordings"].as_array().cloned().unwrap_or_default()
}

/// The EXTINF durations and segment URIs of a media playlist.
fn segments(playlist: &str) -> Vec<(f64, String)> {
    let lines: Vec<&str> = playlist.lines().collect();
    lines
        .windows(2)
        .filter_map(|w| {
            let secs = w[0].strip_prefix("#EXTINF:")?.trim_end_matches(',').parse().ok()?;
            Some((secs, w[1].to_owned()))
        })
        .collect()
}

/// `rtmp_extra`: rtmp-level directives (`http_listen` for the built-in server).
fn rtmp_conf(dir: &Path, rtmp_extra: &str) -> String {
    format!(
        "rtmp {{ {rtmp_extra} server {{ listen 127.0.0.1:{{rtmp}};
           application live {{ live on; record all; record_path {dir};
             recorder mp4 {{ record all; record_format mp4; }}
             recorder fast {{ record all; record_format mp4; record_mp4_faststart on; record_suffix .fast.mp4; }} }}
           application private {{ live on; deny play all; record all; record_path {dir}; }}
           application vod {{ live on; }} }} }}",
        dir = dir.display()
    )
}

/// Everything on one recording session: FLV and MP4 played whole, segments at keyframes, the
/// refusals, and an `http { }` location with `recordings on`.
#[test]
fn recordings_play_as_hls_vod() {
    let dir = TempDir::new("recweb");
    let conf = rtmp_conf(&dir.0, "http_listen 127.0.0.1:{http};");
    let server = Server::start_conf(&conf);
    let publisher = ffmpeg_publish(&server.url("stream"), SECS, GOP);
    wait_published(&server, "stream");
    wait_for("the FLV recording", Duration::from_secs(10), || {
        file_exists_nonempty(&dir.path("stream.flv")).then_some(())
    });
    let busy_list = listed(&server);
    assert!(busy_list.iter().any(|r| r["file"] == "stream.flv" && r["writing"] == true), "{busy_list:?}");
    let mut publisher = publisher;
    assert!(wait_timeout(&mut publisher.0, Duration::from_secs(40)).expect("ffmpeg finishes").success());
    wait_log(&server, "record: done", 3);

    // FLV, fragmented MP4, and progressive MP4 (`moov` first, rewritten after the publish).
    for file in ["stream.flv", "stream.mp4", "stream.fast.mp4"] {
        plays_whole(&server, &dir.path(file), file);
    }
    segment_starts_with_a_keyframe(&server, "stream.mp4");

    // The API lists them, with their playlists on this server.
    let list = listed(&server);
    for file in ["stream.flv", "stream.mp4", "stream.fast.mp4"] {
        let r = list.iter().find(|r| r["file"] == file && r["app"] == "live").unwrap_or_else(|| panic!("{list:?}"));
        assert_eq!(r["writing"], false);
        assert_eq!(r["playlist"], format!("/vod/live/{file}/index.m3u8"));
        assert_eq!(r["size"], std::fs::metadata(dir.path(file)).unwrap().len());
    }
    refusals(&server, &dir);

    // An application named `vod` keeps its HTTP-FLV URL on the built-in server: the player
    // gets the FLV header and waits for the stream.
    let url = format!("http://127.0.0.1:{}/vod/nothing.flv", server.http_port);
    let out = run_timeout(Command::new("curl").args(["-s", "--max-time", "2", &url]), Duration::from_secs(10));
    assert!(out.stdout.starts_with(b"FLV"), "HTTP-FLV answered: {:?}", String::from_utf8_lossy(&out.stdout));

    // The same files through an `http { }` location, whose allow/deny apply.
    let block = format!(
        "{}\nhttp {{ server {{ listen 127.0.0.1:{{http}};
           location /rec/ {{ recordings on; }}
           location /closed/ {{ recordings on; deny all; }} }} }}",
        rtmp_conf(&dir.0, "")
    );
    let second = Server::start_conf(&block);
    let list = get(&second, "/rec/live/stream.flv/index.m3u8");
    assert_eq!(list.status, 200, "{}", list.text());
    assert_eq!(segments(&list.text()).len(), segments(&get(&server, "/vod/live/stream.flv/index.m3u8").text()).len());
    assert_eq!(get(&second, "/closed/live/stream.flv/index.m3u8").status, 403);
    assert_eq!(get(&second, "/vod/live/stream.flv/index.m3u8").status, 404, "no built-in /vod/ in an http block");
}

/// A file a recorder is still writing plays as far as it is written: an `EVENT` playlist of
/// the segments that can no longer change, without an end or a version, whose segments are
/// byte for byte the ones the closed file serves; then the closed file's playlist ends.
#[test]
fn recordings_being_written_play_as_far_as_written() {
    let dir = TempDir::new("recgrow");
    let server = Server::start_conf(&rtmp_conf(&dir.0, "http_listen 127.0.0.1:{http};"));
    let mut publisher = ffmpeg_publish(&server.url("growing"), 14, GOP);
    wait_published(&server, "growing");
    let mut early = Vec::new();
    for file in ["growing.flv", "growing.mp4"] {
        let path = format!("/vod/live/{file}/index.m3u8");
        let playlist = wait_for("a settled segment of the growing recording", Duration::from_secs(30), || {
            let r = get(&server, &path);
            assert!(r.status == 200 || r.status == 415, "{file}: {} {}", r.status, r.text());
            (r.status == 200 && !segments(&r.text()).is_empty()).then(|| r.text())
        });
        assert!(playlist.contains("#EXT-X-PLAYLIST-TYPE:EVENT"), "{playlist}");
        assert!(!playlist.contains("#EXT-X-ENDLIST") && !playlist.contains("?v="), "{playlist}");
        let first = &segments(&playlist)[0];
        assert!((3.5..4.5).contains(&first.0), "cut at the keyframe near 4 s: {playlist}");
        let seg = get(&server, &format!("/vod/live/{file}/{}", first.1));
        assert_eq!(seg.status, 200, "{file}: {}", seg.text());
        let init = get(&server, &format!("/vod/live/{file}/init.mp4"));
        assert_eq!(init.status, 200);
        early.push((file, init.body, seg.body));
    }
    assert!(wait_timeout(&mut publisher.0, Duration::from_secs(60)).expect("ffmpeg finishes").success());
    wait_log(&server, "record: done", 3);
    for (file, init, seg) in early {
        let playlist = get(&server, &format!("/vod/live/{file}/index.m3u8")).text();
        assert!(playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD") && playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
        let all = segments(&playlist);
        assert!(all.len() >= 3, "{playlist}");
        let closed = get(&server, &format!("/vod/live/{file}/{}", all[0].1));
        assert!(closed.body == seg, "{file}: segment 0 changed when the file was closed");
        assert!(get(&server, &format!("/vod/live/{file}/init.mp4")).body == init, "{file}: init changed");
        // The URI a player of the growing file kept (no version) still serves it.
        assert!(get(&server, &format!("/vod/live/{file}/0.m4s")).body == seg);
    }
}

/// The playlist covers the file, and ffprobe/ffmpeg read it whole over HTTP.
fn plays_whole(server: &Server, path: &Path, file: &str) {
    plays_whole_as(server, path, file, ["aac", "h264"]);
}

/// [`plays_whole`] for a file of `codecs` (sorted); returns what ffprobe read over HLS.
fn plays_whole_as(server: &Server, path: &Path, file: &str, codecs: [&str; 2]) -> (f64, usize) {
    let (file_secs, file_frames, file_codecs) = probe(path.to_str().unwrap());
    assert_eq!(file_codecs, codecs);
    let url = format!("http://127.0.0.1:{}/vod/live/{file}/index.m3u8", server.http_port);
    let list = get(server, &format!("/vod/live/{file}/index.m3u8"));
    assert_eq!(list.status, 200, "{file}: {}", list.text());
    assert_eq!(list.header("content-type"), Some("application/vnd.apple.mpegurl"));
    let text = list.text();
    for line in ["#EXT-X-VERSION:7", "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-ENDLIST"] {
        assert!(text.lines().any(|l| l == line), "{file}: no {line} in\n{text}");
    }
    assert!(text.contains("#EXT-X-MAP:URI=\"init.mp4?v="), "{text}");
    let segs = segments(&text);
    let total: f64 = segs.iter().map(|s| s.0).sum();
    assert!((total - file_secs).abs() <= 0.5, "{file}: playlist {total} s, file {file_secs} s\n{text}");
    assert!(segs.len() >= 2 && segs.iter().all(|s| s.0 <= 6.5), "{file}: segments of about 4 s\n{text}");

    let (secs, frames, hls_codecs) = probe(&url);
    assert_eq!(hls_codecs, codecs, "{file} over HLS");
    assert!((secs - file_secs).abs() <= 0.5, "{file}: HLS {secs} s, file {file_secs} s");
    assert_eq!(frames, file_frames, "{file}: every video frame is served once");
    let out = run_timeout(
        Command::new("ffmpeg").args(["-v", "error", "-i", &url, "-f", "null", "-"]),
        Duration::from_secs(90),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "decoding {file} over HLS: {stderr}");
    (secs, frames)
}

/// Segment 1 (after the first cut) opens with a video keyframe.
fn segment_starts_with_a_keyframe(server: &Server, file: &str) {
    let text = get(server, &format!("/vod/live/{file}/index.m3u8")).text();
    let (_, uri) = &segments(&text)[1];
    let seg = get(server, &format!("/vod/live/{file}/{uri}"));
    assert_eq!(seg.status, 200);
    assert_eq!(seg.header("cache-control"), Some("public, max-age=31536000, immutable"), "a versioned segment");
    assert_eq!(seg.header("access-control-allow-origin"), Some("*"), "players on other origins");
    let head = curl_reply(&["-I"], &format!("http://127.0.0.1:{}/vod/live/{file}/{uri}", server.http_port));
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some(seg.body.len().to_string().as_str()), "HEAD: the GET's length");
    assert!(head.body.is_empty());
    let runs = fmp4::parse_moof(&seg.body).unwrap();
    let video = runs.iter().find(|r| r.track_id == 1).expect("a video run");
    assert!(video.samples[0].is_sync(), "segment 1 starts with a keyframe");
    assert!(video.base_decode_time.unwrap() > 0);
}

/// Hostile and unknown names, other versions, applications that may not play, files outside
/// `record_path`.
fn refusals(server: &Server, dir: &TempDir) {
    let status = |path: &str| get(server, path).status;
    assert_eq!(status("/vod/live/sluice.conf/index.m3u8"), 400, "not a recording's name");
    assert_eq!(status("/vod/live/stream.ts/index.m3u8"), 400);
    assert_eq!(status("/vod/live/%2Fetc%2Fpasswd/index.m3u8"), 400, "an absolute path is no name");
    assert_eq!(status("/vod/live/..%2fsluice.flv/index.m3u8"), 403, "decoded, it is a traversal");
    assert_eq!(status("/vod/live/../sluice.flv/index.m3u8"), 403, "traversal, as everywhere");
    assert_eq!(status("/vod/live/%2e%2e/index.m3u8"), 403);
    assert_eq!(status("/vod/live/missing.flv/index.m3u8"), 404);
    assert_eq!(status("/vod/nosuchapp/stream.flv/index.m3u8"), 404);
    assert_eq!(status("/vod/live/stream.flv/99.m4s"), 404);
    assert_eq!(status("/vod/live/stream.flv/0.ts"), 404);
    assert_eq!(status("/vod/live/stream.flv/0.m4s?v=other"), 404, "another version of the file");
    let post =
        curl_reply(&["-X", "POST"], &format!("http://127.0.0.1:{}/vod/live/stream.flv/index.m3u8", server.http_port));
    assert_eq!(post.status, 405);
    let preflight =
        curl_reply(&["-X", "OPTIONS"], &format!("http://127.0.0.1:{}/vod/live/stream.flv/0.m4s", server.http_port));
    assert_eq!(preflight.status, 204);
    assert!(preflight.header("access-control-allow-methods").is_some_and(|m| m.contains("GET")));
    std::fs::write(dir.path("junk.flv"), b"FLV but not really").unwrap();
    for _ in 0..2 {
        assert_eq!(status("/vod/live/junk.flv/index.m3u8"), 415, "not a playable file");
    }
    std::fs::remove_file(dir.path("junk.flv")).unwrap();
    let private = get(server, "/vod/private/stream.flv/index.m3u8");
    assert_eq!(private.status, 403, "deny play all: {}", private.text());

    // A recording-looking file outside record_path, reached by a link inside it.
    let outside = TempDir::new("recweb-outside");
    std::fs::copy(dir.path("stream.flv"), outside.path("secret.flv")).unwrap();
    std::os::unix::fs::symlink(outside.path("secret.flv"), dir.path("link.flv")).unwrap();
    assert_eq!(status("/vod/live/link.flv/index.m3u8"), 404, "a link out of record_path is not followed");
    assert!(server.log().contains("resolves outside its record_path"));
    std::fs::remove_file(dir.path("link.flv")).unwrap();
}

/// hls.js in headless Chromium plays an FLV and an MP4 recording, seeks into each and plays to
/// the end; the dashboard lists them and plays one (`tests/browser/recordings.cjs`). `scripts/test` installs Chromium, hls.js and playwright-core (see tests/browser.rs);
/// the page is `tests/browser/vod.html`, served from an `hls_path` directory of the same server.
#[test]
fn hlsjs_plays_and_seeks_recordings() {
    let modules = std::env::var_os("SLUICE_BROWSER_MODULES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser/node_modules"));
    let hlsjs = modules.join("hls.js/dist/hls.min.js");
    assert!(hlsjs.exists() && modules.join("playwright-core").exists(), "run scripts/test: no hls.js in {modules:?}");
    let dir = TempDir::new("recweb-browser");
    let pages = dir.path("hls");
    std::fs::create_dir_all(&pages).unwrap();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    std::fs::copy(here.join("vod.html"), pages.join("vod.html")).unwrap();
    std::fs::copy(&hlsjs, pages.join("hls.min.js")).unwrap();
    let extra = format!("application pages {{ live on; hls on; hls_path {}; }}", pages.display());
    let conf = rtmp_conf(&dir.0, "http_listen 127.0.0.1:{http};")
        .replace("application vod", &format!("{extra} application vod"));
    let server = Server::start_conf(&conf);
    let mut publisher = ffmpeg_publish(&server.url("stream"), SECS, GOP);
    assert!(wait_timeout(&mut publisher.0, Duration::from_secs(40)).expect("ffmpeg finishes").success());
    wait_log(&server, "record: done", 3);

    let urls: Vec<String> = ["stream.flv", "stream.mp4"]
        .iter()
        .map(|f| format!("http://127.0.0.1:{}/hls/vod.html?seek=5&src=/vod/live/{f}/index.m3u8", server.http_port))
        .collect();
    let (lines, console) = chromium_verdicts(&modules, &urls, Duration::from_secs(60));
    let verdicts: Vec<serde_json::Value> = lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(verdicts.len(), 2, "{verdicts:?}\nconsole:\n{console}");
    for (file, v) in ["stream.flv", "stream.mp4"].iter().zip(&verdicts) {
        eprintln!("hls.js, {file}: {v}");
        assert_eq!(v["ok"], true, "{file}: {v}\nconsole:\n{console}\nlog:\n{}", server.log());
        let num = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let (file_secs, _, _) = probe(dir.path(file).to_str().unwrap());
        assert!((num("duration") - file_secs).abs() <= 0.5, "{file}: hls.js duration vs {file_secs}: {v}");
        assert!((4.5..=5.5).contains(&num("landed")), "{file}: the seek to 5 s landed at {v}");
        assert!(num("end") >= file_secs - 0.5, "{file}: played to the end: {v}");
        assert_eq!(v["ended"], true, "{file}: the player says it ended (no stall before the end): {v}");
        assert_eq!(num("width"), 640.0, "{v}");
    }

    // The dashboard lists the recordings and its Watch button plays one.
    let dashboard = format!("http://127.0.0.1:{}/", server.http_port);
    let out = run_timeout(
        Command::new("node")
            .arg(here.join("recordings.cjs"))
            .args([dashboard.as_str(), "stream.mp4"])
            .env("BROWSER_MODULES", &modules)
            .env("PLAY_TIMEOUT_MS", "40000"),
        Duration::from_secs(120),
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    eprintln!("dashboard: {verdict}");
    assert_eq!(verdict["ok"], true, "dashboard: {verdict}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(verdict["errors"], serde_json::json!([]), "{verdict}");
}

/// Files sluice did not write play too: ffmpeg's MP4 (`moov` at the end) and FLV, H.264 with
/// B-frames (composition offsets) and AAC, put in `record_path` by hand. Eight viewers asking at
/// once share one index.
#[test]
fn files_from_other_tools_with_b_frames_play_whole() {
    let dir = TempDir::new("recweb-other");
    for file in ["other.mp4", "other.flv"] {
        let out = run_timeout(
            Command::new("ffmpeg")
                .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=25"])
                .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "7"])
                .args(["-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "50", "-pix_fmt", "yuv420p"])
                .args(["-c:a", "aac", "-b:a", "64k"])
                .arg(dir.path(file)),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "ffmpeg {file}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let server = Server::start_conf(&rtmp_conf(&dir.0, "http_listen 127.0.0.1:{http};"));
    // Viewers arriving together share one index: the file is read once.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let asks: Vec<_> = (0..8).map(|_| s.spawn(|| get(&server, "/vod/live/other.mp4/index.m3u8").status)).collect();
        asks.into_iter().map(|a| a.join().unwrap()).collect()
    });
    assert_eq!(statuses, [200; 8]);
    let indexed = server.log().lines().filter(|l| l.contains("recording indexed") && l.contains("other.mp4")).count();
    assert_eq!(indexed, 1, "one index for eight viewers; log:\n{}", server.log());
    for file in ["other.mp4", "other.flv"] {
        plays_whole(&server, &dir.path(file), file);
    }
}

/// Publishes 6 s of `video` (encoder arguments) with AAC to `name` with the Enhanced RTMP ffmpeg.
fn publish_enhanced(server: &Server, name: &str, video: &[&str]) {
    let mut child = Command::new(enhanced_ffmpeg())
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "6"])
        .args(video)
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", &server.url(name)])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the Enhanced RTMP ffmpeg runs");
    assert!(wait_timeout(&mut child, Duration::from_secs(60)).expect("ffmpeg finishes").success());
}

/// HEVC published over Enhanced RTMP, recorded as MP4 and as (Enhanced) FLV, plays as `hvc1`
/// fMP4 over HLS. Debian's ffprobe reads the MP4 but not the Enhanced FLV file: the FLV is
/// compared with the MP4 of the same publish, over HLS.
#[test]
fn hevc_recordings_play_as_hvc1() {
    let dir = TempDir::new("recweb-hevc");
    let server = Server::start_conf(&rtmp_conf(&dir.0, "http_listen 127.0.0.1:{http};"));
    let x265 =
        ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=50", "-pix_fmt", "yuv420p"];
    publish_enhanced(&server, "hevc", &x265);
    wait_log(&server, "record: done", 3);
    let (mp4_secs, mp4_frames) = plays_whole_as(&server, &dir.path("hevc.mp4"), "hevc.mp4", ["aac", "hevc"]);
    let init = get(&server, "/vod/live/hevc.flv/init.mp4");
    assert_eq!(init.status, 200, "{}", init.text());
    assert!(init.body.windows(4).any(|w| w == b"hvc1"), "an hvc1 sample entry");
    let url = format!("http://127.0.0.1:{}/vod/live/hevc.flv/index.m3u8", server.http_port);
    let (secs, frames, codecs) = probe(&url);
    assert_eq!(codecs, ["aac", "hevc"]);
    assert!((secs - mp4_secs).abs() <= 0.5, "FLV {secs} s, MP4 {mp4_secs} s");
    assert!(frames.abs_diff(mp4_frames) <= 2, "FLV {frames} frames, MP4 {mp4_frames}");
}

/// AV1 published over Enhanced RTMP and recorded as MP4 plays as `av01` fMP4 over HLS.
#[test]
fn av1_recordings_play_as_av01() {
    let dir = TempDir::new("recweb-av1");
    let server = Server::start_conf(&rtmp_conf(&dir.0, "http_listen 127.0.0.1:{http};"));
    let svt = ["-c:v", "libsvtav1", "-preset", "12", "-g", "50", "-pix_fmt", "yuv420p", "-svtav1-params", "lp=1"];
    publish_enhanced(&server, "av1", &svt);
    wait_log(&server, "record: done", 3);
    plays_whole_as(&server, &dir.path("av1.mp4"), "av1.mp4", ["aac", "av1"]);
    let init = get(&server, "/vod/live/av1.mp4/init.mp4");
    assert!(init.body.windows(4).any(|w| w == b"av01"), "an av01 sample entry");
}

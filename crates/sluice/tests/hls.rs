//! HLS end to end: ffmpeg publishes over RTMP, sluice writes `hls_path` and serves it over HTTP,
//! and ffprobe/ffmpeg (and hls.js in headless Chromium, in `browser.rs`) read it back.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// One HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A plain HTTP/1.1 GET (the server closes after answering `Connection: close`).
fn get(port: u16, path: &str) -> Reply {
    request(port, "GET", path, "")
}

/// Any request; `headers` are extra header lines, each ending in CRLF.
fn request(port: u16, method: &str, path: &str, headers: &str) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("http port");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply { status, headers, body: raw[split + 4..].to_vec() }
}

/// Poll `what` until it returns `Some`, or fail with the server log.
fn wait_for<T>(server: &Server, limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn playlist_with(server: &Server, path: &str, min_segments: usize) -> String {
    wait_for(server, Duration::from_secs(30), &format!("{min_segments} segments in {path}"), || {
        let r = get(server.http_port, path);
        (r.status == 200 && r.text().matches("#EXTINF").count() >= min_segments).then(|| r.text())
    })
}

fn hls_server(dir: &TempDir, extra: &str) -> Server {
    let hls = dir.path("hls");
    Server::start(&format!("hls on; hls_path {}; hls_fragment 1s; {extra}", hls.display()))
}

/// ffmpeg with `-v warning`: its stderr must stay empty for a clean read.
fn ffmpeg_copy(input: &str, out: &Path) -> String {
    let o = run_timeout(
        Command::new("ffmpeg").args(["-v", "warning", "-y", "-i", input, "-c", "copy"]).arg(out),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "ffmpeg -c copy failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn duration_of(path: &Path) -> f64 {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(0.0)
}

/// ffprobe of an HLS URL lists the program's streams and then the streams: once each here.
fn hls_streams(url: &str) -> Vec<String> {
    let mut v = ffprobe_streams(url);
    v.dedup();
    v
}

fn uris(playlist: &str) -> Vec<String> {
    playlist.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
}

#[test]
fn mpegts_hls_is_served_probed_and_ended() {
    let dir = TempDir::new("hls-ts");
    let server = hls_server(&dir, "hls_playlist_length 30s;");
    let mut publisher = ffmpeg_publish(&server.url("stream"), 6, 25);

    let text = playlist_with(&server, "/hls/stream.m3u8", 2);
    assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n"), "{text}");
    let r = get(server.http_port, "/hls/stream.m3u8");
    assert_eq!(r.header("content-type"), "application/vnd.apple.mpegurl");
    assert_eq!(r.header("cache-control"), "no-cache");
    assert_eq!(r.header("access-control-allow-origin"), "*");
    let seg = get(server.http_port, &format!("/hls/{}", uris(&text)[0]));
    assert_eq!((seg.status, seg.header("content-type")), (200, "video/mp2t"));
    assert!(seg.header("cache-control").contains("immutable"));
    assert_eq!(seg.body[0], 0x47);
    // Served from memory, with HEAD and Range as from disk.
    let seg_path = format!("/hls/{}", uris(&text)[0]);
    let range = request(server.http_port, "GET", &seg_path, "Range: bytes=188-375\r\n");
    assert_eq!(
        (range.status, range.header("content-range")),
        (206, format!("bytes 188-375/{}", seg.body.len()).as_str())
    );
    assert_eq!(range.body, seg.body[188..376]);
    let head = request(server.http_port, "HEAD", &seg_path, "");
    assert_eq!((head.status, head.header("content-length")), (200, seg.body.len().to_string().as_str()));
    assert!(head.body.is_empty());
    let url = format!("http://127.0.0.1:{}/hls/stream.m3u8", server.http_port);
    assert_eq!(hls_streams(&url), vec!["aac".to_string(), "h264,640,360".to_string()]);

    // The publisher stops: the playlist ends, and the files are as nginx-rtmp names them.
    let _ = publisher.0.wait();
    let text = wait_for(&server, Duration::from_secs(10), "#EXT-X-ENDLIST", || {
        let t = get(server.http_port, "/hls/stream.m3u8").text();
        t.contains("#EXT-X-ENDLIST").then_some(t)
    });
    let on_disk = std::fs::read_to_string(dir.path("hls/stream.m3u8")).unwrap();
    assert_eq!(on_disk, text, "disk and memory agree");
    for u in uris(&text) {
        assert!(u.starts_with("stream-") && u.ends_with(".ts"), "{u}");
        assert!(file_exists_nonempty(&dir.path("hls").join(&u)), "{u} on disk");
    }
    assert!(!std::fs::read_dir(dir.path("hls")).unwrap().any(|e| e
        .unwrap()
        .path()
        .to_string_lossy()
        .ends_with(".tmp")));

    let out = dir.path("copy.mp4");
    let warnings = ffmpeg_copy(&url, &out);
    assert!(warnings.trim().is_empty(), "ffmpeg warned: {warnings}");
    let d = duration_of(&out);
    assert!((d - 6.0).abs() <= 1.0, "copied {d} s of 6 s (±1 segment)");
}

#[test]
fn fmp4_hls_with_init_segment() {
    let dir = TempDir::new("hls-fmp4");
    let server = hls_server(&dir, "hls_fragment_type fmp4;");
    let _publisher = ffmpeg_publish(&server.url("stream"), 8, 25);
    let text = playlist_with(&server, "/hls/stream.m3u8", 2);
    assert!(text.contains("#EXT-X-VERSION:6\n") && text.contains("#EXT-X-MAP:URI=\"stream-init.mp4\"\n"), "{text}");
    let init = get(server.http_port, "/hls/stream-init.mp4");
    assert_eq!((init.status, init.header("content-type")), (200, "video/mp4"));
    assert_eq!(&init.body[4..8], b"ftyp");
    let seg = get(server.http_port, &format!("/hls/{}", uris(&text)[0]));
    assert_eq!(seg.header("content-type"), "video/iso.segment");
    assert_eq!(&seg.body[4..8], b"styp");
    let url = format!("http://127.0.0.1:{}/hls/stream.m3u8", server.http_port);
    assert_eq!(hls_streams(&url), vec!["aac".to_string(), "h264,640,360".to_string()]);

    // Stopping the server mid-stream ends the playlist on disk and keeps the files.
    let mut server = server;
    assert!(server.terminate().success());
    let on_disk = std::fs::read_to_string(dir.path("hls/stream.m3u8")).unwrap();
    assert!(on_disk.ends_with("#EXT-X-ENDLIST\n"), "{on_disk}");
    assert!(file_exists_nonempty(&dir.path("hls/stream-init.mp4")));
}

/// `(msn, parts)` of the segment being written, from a low-latency playlist.
fn live_edge(text: &str) -> (u64, u32) {
    let first: u64 = text.lines().find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:")).unwrap().parse().unwrap();
    let complete = text.matches("#EXTINF").count() as u64;
    let tail = text.rsplit("#EXTINF").next().unwrap();
    let parts = tail.lines().filter(|l| l.starts_with("#EXT-X-PART:")).count() as u32;
    (first + complete, parts)
}

#[test]
fn low_latency_hls_parts_and_blocking_reload() {
    let dir = TempDir::new("hls-ll");
    let server = hls_server(&dir, "hls_fragment_type fmp4; hls_low_latency on; hls_part_duration 200ms;");
    let _publisher = ffmpeg_publish(&server.url("ll"), 12, 25);
    let text = playlist_with(&server, "/hls/ll.m3u8", 2);
    assert!(text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600\n"), "{text}");
    assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.200\n"));
    assert!(text.contains(",INDEPENDENT=YES"));
    let hint = text.lines().find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"")).expect("hint");
    let hint = hint.trim_end_matches('"').to_string();

    // The hinted part does not exist yet: the request is held until it does.
    let started = Instant::now();
    let part = get(server.http_port, &format!("/hls/{hint}"));
    assert_eq!(part.status, 200, "hinted part {hint}");
    let first_box = &part.body[4..8];
    assert!(first_box == b"moof" || first_box == b"styp", "a part is one fragment (the first with styp)");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Blocking reload: ask for the part after the live edge; the answer waits for it.
    let (msn, parts) = live_edge(&get(server.http_port, "/hls/ll.m3u8").text());
    let started = Instant::now();
    let r = get(server.http_port, &format!("/hls/ll.m3u8?_HLS_msn={msn}&_HLS_part={}", parts + 1));
    let waited = started.elapsed();
    assert_eq!(r.status, 200);
    let (msn2, parts2) = live_edge(&r.text());
    assert!((msn2, parts2) > (msn, parts + 1) || msn2 > msn, "({msn},{}) asked, got ({msn2},{parts2})", parts + 1);
    assert!(waited >= Duration::from_millis(100), "the request was held ({waited:?})");
    assert!(waited < Duration::from_secs(3), "and answered once the part came ({waited:?})");
    assert_eq!(get(server.http_port, &format!("/hls/ll.m3u8?_HLS_msn={}", msn + 10)).status, 400);
}

#[test]
fn nested_continuous_playlists_and_cleanup() {
    let dir = TempDir::new("hls-nested");
    let server = hls_server(&dir, "hls_nested on; hls_continuous on; hls_cleanup on; hls_playlist_length 3s;");
    let mut first = ffmpeg_publish(&server.url("cam"), 3, 25);
    let text = playlist_with(&server, "/hls/cam/index.m3u8", 1);
    assert!(uris(&text).iter().all(|u| !u.contains('/') && u.ends_with(".ts")), "nested: relative names {text}");
    let _ = first.0.wait();
    let ended = wait_for(&server, Duration::from_secs(10), "end", || {
        let t = get(server.http_port, "/hls/cam/index.m3u8").text();
        t.contains("#EXT-X-ENDLIST").then_some(t)
    });
    let last_before = uris(&ended).last().unwrap().trim_end_matches(".ts").parse::<u64>().unwrap();
    assert!(dir.path("hls/cam/index.m3u8").exists());

    // Publish again at once: numbering continues after a discontinuity.
    let mut second = ffmpeg_publish(&server.url("cam"), 3, 25);
    let text = wait_for(&server, Duration::from_secs(20), "a new segment", || {
        let t = get(server.http_port, "/hls/cam/index.m3u8").text();
        (!t.contains("ENDLIST") && t.contains("#EXT-X-DISCONTINUITY")).then_some(t)
    });
    let after = text.split("#EXT-X-DISCONTINUITY").nth(1).unwrap();
    let first_new = uris(after)[0].trim_end_matches(".ts").parse::<u64>().unwrap();
    assert_eq!(first_new, last_before + 1, "{text}");
    let _ = second.0.wait();

    // hls_cleanup: everything goes hls_playlist_length after the end.
    wait_for(&server, Duration::from_secs(20), "cleanup", || {
        let left: Vec<PathBuf> = std::fs::read_dir(dir.path("hls/cam")).ok()?.map(|e| e.unwrap().path()).collect();
        left.is_empty().then_some(())
    });
    assert_eq!(get(server.http_port, "/hls/cam/index.m3u8").status, 404);
    // The HLS writer let go of the stream: the hub forgot it.
    assert!(
        get(server.http_port, "/healthz").text().contains("streams 0"),
        "{}",
        get(server.http_port, "/healthz").text()
    );
}

#[test]
fn aes_128_keys_encrypt_segments_that_ffmpeg_decrypts() {
    let dir = TempDir::new("hls-keys");
    let server = hls_server(&dir, "hls_keys on; hls_fragments_per_key 2;");
    let _publisher = ffmpeg_publish(&server.url("secret"), 8, 25);
    let text = playlist_with(&server, "/hls/secret.m3u8", 3);
    assert!(text.contains("#EXT-X-KEY:METHOD=AES-128,URI=\"secret-0.key\",IV=0x00000000000000000000000000000000\n"));
    let key = get(server.http_port, "/hls/secret-0.key");
    assert_eq!((key.status, key.body.len()), (200, 16));
    assert_eq!(std::fs::read(dir.path("hls/secret-0.key")).unwrap(), key.body);
    let seg = get(server.http_port, &format!("/hls/{}", uris(&text)[0]));
    assert_eq!(seg.body.len() % 16, 0);
    assert_ne!(seg.body[0], 0x47, "encrypted");
    let url = format!("http://127.0.0.1:{}/hls/secret.m3u8", server.http_port);
    assert_eq!(hls_streams(&url), vec!["aac".to_string(), "h264,640,360".to_string()]);
}

#[test]
fn naming_by_system_time_and_hls_config_errors() {
    let dir = TempDir::new("hls-naming");
    let server = hls_server(&dir, "hls_fragment_naming system;");
    let _publisher = ffmpeg_publish(&server.url("t"), 5, 25);
    let text = playlist_with(&server, "/hls/t.m3u8", 1);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let id: u64 = uris(&text)[0].trim_start_matches("t-").trim_end_matches(".ts").parse().unwrap();
    assert!(now_ms.abs_diff(id) < 60_000, "wall-clock ms names: {id}");

    // Settings that cannot work are refused by `sluice -t`.
    let conf = dir.path("bad.conf");
    std::fs::write(
        &conf,
        "rtmp { server { application a { hls on; hls_keys on; hls_low_latency on; hls_path /tmp/x; } } }",
    )
    .unwrap();
    let out = Command::new(sluice_bin()).arg("-t").arg("-c").arg(&conf).stderr(Stdio::piped()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hls_keys"), "{}", String::from_utf8_lossy(&out.stderr));
}

fn publish_enhanced(url: &str, codec_args: &[&str], secs: u32) -> Proc {
    let child = Command::new(enhanced_ffmpeg())
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &secs.to_string()])
        .args(codec_args)
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the Enhanced RTMP ffmpeg runs");
    Proc(child)
}

#[test]
fn hevc_from_enhanced_rtmp_in_fmp4_and_mpegts() {
    let dir = TempDir::new("hls-hevc");
    let hls = dir.path("hls");
    let server = Server::start_with(
        "",
        &format!(
            "application fmp4 {{ live on; hls on; hls_path {0}/f; hls_fragment 1s; hls_fragment_type fmp4; }}
             application ts {{ live on; hls on; hls_path {0}/t; hls_fragment 1s; }}",
            hls.display()
        ),
    );
    let x265 =
        ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=25", "-pix_fmt", "yuv420p"];
    let url = |app: &str| format!("rtmp://127.0.0.1:{}/{app}/hevc", server.port);
    let _a = publish_enhanced(&url("fmp4"), &x265, 8);
    let _b = publish_enhanced(&url("ts"), &x265, 8);
    for (loc, tag) in [("/f/hevc.m3u8", "hvc1"), ("/t/hevc.m3u8", "")] {
        playlist_with(&server, loc, 2);
        let out = run_timeout(
            Command::new("ffprobe")
                .args(["-v", "warning", "-show_entries", "stream=codec_name,codec_tag_string,width,height"])
                .args(["-of", "csv=p=0", &format!("http://127.0.0.1:{}{loc}", server.http_port)]),
            Duration::from_secs(30),
        );
        let info = String::from_utf8_lossy(&out.stdout);
        assert!(info.contains("hevc") && info.contains("640,360") && info.contains(tag), "{loc}: {info}");
        assert!(info.contains("aac"), "{loc}: {info}");
    }
}

#[test]
fn nginx_style_http_block_serves_live_hls_through_its_location() {
    let dir = TempDir::new("hls-http-block");
    let root = dir.path("www");
    let server = Server::start_conf(&format!(
        "worker_processes auto;
         events {{ worker_connections 1024; }}
         rtmp {{ server {{ listen 127.0.0.1:{{rtmp}}; chunk_size 4096;
             application live {{ live on; hls on; hls_path {root}/hls; hls_fragment 1s; hls_low_latency on; hls_fragment_type fmp4; }} }} }}
         http {{ sendfile off; server {{ listen 127.0.0.1:{{http}};
             location /hls {{
                 types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
                 root {root};
                 add_header Cache-Control no-cache;
             }} }} }}",
        root = root.display()
    ));
    let _publisher = ffmpeg_publish(&server.url("s"), 8, 25);
    let text = playlist_with(&server, "/hls/s.m3u8", 2);
    // Through the user's `root` location: still the live, in-memory playlist (blocking reload
    // works), with the location's headers.
    let (msn, parts) = live_edge(&text);
    let r = get(server.http_port, &format!("/hls/s.m3u8?_HLS_msn={msn}&_HLS_part={}", parts + 1));
    assert_eq!(r.status, 200);
    assert!(r.text().contains("#EXT-X-PART-INF"), "{}", r.text());
    assert_eq!(r.header("cache-control"), "no-cache");
    assert_eq!(r.header("content-type"), "application/vnd.apple.mpegurl");
}

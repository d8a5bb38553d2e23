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

/// The id at the end of a segment name: `NAME-SESSION-ID.ts` or nested `SESSION-ID.ts`.
fn segment_id(uri: &str) -> u64 {
    let stem = uri.rsplit_once('.').map_or(uri, |(s, _)| s);
    stem.rsplit('-').next().unwrap().parse().unwrap_or_else(|_| panic!("no id in {uri}"))
}

/// A quoted `URI="..."` attribute of the first line starting with `tag`.
fn uri_attr(playlist: &str, tag: &str) -> String {
    let line = playlist.lines().find(|l| l.starts_with(tag)).unwrap_or_else(|| panic!("no {tag} in {playlist}"));
    line.split("URI=\"").nth(1).unwrap().split('"').next().unwrap().to_string()
}

#[test]
fn mpegts_hls_is_served_probed_and_ended() {
    let dir = TempDir::new("hls-ts");
    // The whole stream stays listed; the playlist ends that long after the publisher leaves.
    let server = hls_server(&dir, "hls_playlist_length 8s;");
    let mut publisher = ffmpeg_publish(&server.url("stream"), 6, 25);

    let text = playlist_with(&server, "/hls/stream.m3u8", 2);
    assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n"), "{text}");
    let r = get(server.http_port, "/hls/stream.m3u8");
    assert_eq!(r.header("content-type"), "application/vnd.apple.mpegurl");
    assert_eq!(r.header("cache-control"), "public, max-age=1", "half a target duration (tests/cdn.rs)");
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

    // The publisher stops and does not come back: the playlist ends, and the files are as
    // nginx-rtmp names them.
    let _ = publisher.0.wait();
    let text = wait_for(&server, Duration::from_secs(30), "#EXT-X-ENDLIST", || {
        let t = get(server.http_port, "/hls/stream.m3u8").text();
        t.contains("#EXT-X-ENDLIST").then_some(t)
    });
    // Memory is updated first and the file is written right after it: they agree once it is.
    wait_for(&server, Duration::from_secs(5), "the ended playlist on disk", || {
        let on_disk = std::fs::read_to_string(dir.path("hls/stream.m3u8")).unwrap_or_default();
        (on_disk == text).then_some(())
    });
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
    let map = uri_attr(&text, "#EXT-X-MAP:");
    assert!(text.contains("#EXT-X-VERSION:6\n") && map.starts_with("stream-") && map.ends_with("-init.mp4"), "{text}");
    let init = get(server.http_port, &format!("/hls/{map}"));
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
    assert!(file_exists_nonempty(&dir.path("hls").join(&map)));
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
    continuous_then_cleanup("hls-nested", "", "ts");
}

/// fMP4: each publish's segments keep their own init segment (`#EXT-X-MAP` again after the
/// discontinuity), and cleanup removes both.
#[test]
fn nested_continuous_fmp4_keeps_each_init_segment() {
    continuous_then_cleanup("hls-nested-fmp4", "hls_fragment_type fmp4;", "m4s");
}

fn continuous_then_cleanup(tag: &str, extra: &str, ext: &str) {
    let dir = TempDir::new(tag);
    let server =
        hls_server(&dir, &format!("hls_nested on; hls_continuous on; hls_cleanup on; hls_playlist_length 3s; {extra}"));
    let mut first = ffmpeg_publish(&server.url("cam"), 3, 25);
    let text = playlist_with(&server, "/hls/cam/index.m3u8", 1);
    assert!(uris(&text).iter().all(|u| !u.contains('/') && u.ends_with(ext)), "nested: relative names {text}");
    let _ = first.0.wait();
    let ended = wait_for(&server, Duration::from_secs(10), "end", || {
        let t = get(server.http_port, "/hls/cam/index.m3u8").text();
        t.contains("#EXT-X-ENDLIST").then_some(t)
    });
    let last_before = segment_id(uris(&ended).last().unwrap());
    assert!(dir.path("hls/cam/index.m3u8").exists());

    // Publish again at once: numbering continues after a discontinuity.
    let mut second = ffmpeg_publish(&server.url("cam"), 3, 25);
    let text = wait_for(&server, Duration::from_secs(20), "a new segment", || {
        let t = get(server.http_port, "/hls/cam/index.m3u8").text();
        (!t.contains("ENDLIST") && t.contains("#EXT-X-DISCONTINUITY")).then_some(t)
    });
    let after = text.split("#EXT-X-DISCONTINUITY").nth(1).unwrap();
    let first_new = segment_id(&uris(after)[0]);
    assert_eq!(first_new, last_before + 1, "{text}");
    if ext == "m4s" {
        assert_eq!(text.matches("#EXT-X-MAP:").count(), 2, "{text}");
        assert!(after.starts_with("\n#EXT-X-MAP:"), "{text}");
    }
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
    let key_uri = uri_attr(&text, "#EXT-X-KEY:");
    assert!(
        text.contains(&format!("#EXT-X-KEY:METHOD=AES-128,URI=\"{key_uri}\",IV=0x00000000000000000000000000000000\n"))
    );
    assert!(key_uri.starts_with("secret-") && key_uri.ends_with("-0.key"), "{key_uri}");
    let key = get(server.http_port, &format!("/hls/{key_uri}"));
    assert_eq!((key.status, key.body.len()), (200, 16));
    assert_eq!(std::fs::read(dir.path("hls").join(&key_uri)).unwrap(), key.body);
    let seg = get(server.http_port, &format!("/hls/{}", uris(&text)[0]));
    assert_eq!(seg.body.len() % 16, 0);
    // A TS segment has 0x47 every 188 bytes; encrypted, a few of those bytes may be 0x47 by
    // chance (1 in 256 each), not all of them.
    let syncs = seg.body.iter().step_by(188).filter(|b| **b == 0x47).count();
    assert!(syncs < seg.body.len() / 188 / 2, "encrypted: {syncs} sync bytes in place");
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
    let id = segment_id(&uris(&text)[0]);
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
    spawn_quiet(
        Command::new(enhanced_ffmpeg())
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-t", &secs.to_string()])
            .args(codec_args)
            .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url]),
        "the Enhanced RTMP ffmpeg runs",
    )
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

/// Every URL a finished playlist names (segments, init segment, keys), with its bytes.
fn urls_with_bytes(server: &Server, loc: &str) -> (String, Vec<(String, Vec<u8>)>) {
    let text = wait_for(server, Duration::from_secs(30), &format!("{loc} ended"), || {
        let t = get(server.http_port, loc).text();
        t.contains("#EXT-X-ENDLIST").then_some(t)
    });
    let dir = loc.rsplit_once('/').unwrap().0;
    let mut names = uris(&text);
    for tag in ["#EXT-X-MAP:", "#EXT-X-KEY:"] {
        if text.contains(tag) {
            names.push(uri_attr(&text, tag));
        }
    }
    names.sort();
    names.dedup();
    let fetched = names
        .into_iter()
        .map(|n| {
            let url = format!("{dir}/{n}");
            let r = get(server.http_port, &url);
            assert_eq!(r.status, 200, "{url} while the playlist names it");
            (url, r.body)
        })
        .collect();
    (text, fetched)
}

/// Defect 10: after `hls_cleanup`, a republished stream must not serve other bytes under a URL
/// of the first publish (they are served `immutable`); its init segment and keys included. And
/// (defect 13) the first publish's init segment and keys leave memory with it.
#[test]
fn republishing_never_reuses_a_url() {
    let dir = TempDir::new("hls-republish");
    let hls = dir.path("hls");
    let server = Server::start_with(
        "",
        &format!(
            "application ts {{ live on; hls on; hls_path {0}/t; hls_fragment 1s; hls_cleanup on; hls_playlist_length 2s; }}
             application mp4 {{ live on; hls on; hls_path {0}/f; hls_fragment 1s; hls_cleanup on; hls_playlist_length 2s;
                 hls_fragment_type fmp4; hls_keys on; hls_nested on; }}",
            hls.display()
        ),
    );
    let url = |app: &str| format!("rtmp://127.0.0.1:{}/{app}/s", server.port);
    let sessions: Vec<Vec<(String, Vec<u8>)>> = (0..2)
        .map(|round| {
            let mut a = ffmpeg_publish(&url("ts"), 3, 25);
            let mut b = ffmpeg_publish(&url("mp4"), 3, 25);
            let _ = (a.0.wait(), b.0.wait());
            let (_, mut files) = urls_with_bytes(&server, "/t/s.m3u8");
            let (text, more) = urls_with_bytes(&server, "/f/s/index.m3u8");
            assert!(text.contains("#EXT-X-MAP:") && text.contains("#EXT-X-KEY:"), "round {round}: {text}");
            files.extend(more);
            // hls_cleanup: the playlists go hls_playlist_length after the end.
            for loc in ["/t/s.m3u8", "/f/s/index.m3u8"] {
                wait_for(&server, Duration::from_secs(20), &format!("{loc} cleaned up"), || {
                    (get(server.http_port, loc).status == 404).then_some(())
                });
            }
            files
        })
        .collect();
    let first: HashMap<&String, &Vec<u8>> = sessions[0].iter().map(|(u, b)| (u, b)).collect();
    assert!(first.len() >= 6, "{:?}", first.keys());
    for (url, bytes) in &sessions[1] {
        assert!(first.get(url).is_none_or(|b| *b == bytes), "{url} served other bytes in the second publish");
        assert!(!first.contains_key(url), "{url} named again by the second publish");
    }
    // Nothing of the first publish is still served from memory: removed from disk (keys are
    // not cleaned up), they are gone.
    for (url, _) in sessions[0].iter().filter(|(u, _)| u.ends_with(".key") || u.ends_with(".mp4")) {
        let _ = std::fs::remove_file(format!("{}{url}", hls.display()));
        assert_eq!(get(server.http_port, url).status, 404, "{url} still in memory");
    }
}

/// A crash (SIGKILL) leaves the playlist without `#EXT-X-ENDLIST`; the next start finishes it.
#[test]
fn playlists_left_open_by_a_crash_are_finished_at_start() {
    let dir = TempDir::new("hls-crash");
    let mut server = hls_server(&dir, "hls_nested on;");
    let _publisher = ffmpeg_publish(&server.url("cam"), 20, 25);
    playlist_with(&server, "/hls/cam/index.m3u8", 2);
    server.child.kill().unwrap();
    let _ = server.child.wait();
    let on_disk = std::fs::read_to_string(dir.path("hls/cam/index.m3u8")).unwrap();
    assert!(on_disk.contains("#EXTINF") && !on_disk.contains("#EXT-X-ENDLIST"), "{on_disk}");

    let server = hls_server(&dir, "hls_nested on;");
    let repaired = std::fs::read_to_string(dir.path("hls/cam/index.m3u8")).unwrap();
    assert_eq!(repaired, format!("{on_disk}#EXT-X-ENDLIST\n"));
    assert!(server.log().contains("finished a playlist a crash left open"), "{}", server.log());

    // hls_continuous (on by default) reads the repaired playlist back from disk and goes on.
    let _again = ffmpeg_publish(&server.url("cam"), 3, 25);
    let text = wait_for(&server, Duration::from_secs(30), "the playlist continued", || {
        let t = get(server.http_port, "/hls/cam/index.m3u8").text();
        (t.contains("#EXT-X-DISCONTINUITY") && !t.contains("#EXT-X-ENDLIST")).then_some(t)
    });
    let before = uris(&on_disk);
    assert_eq!(&uris(&text)[..before.len()], &before[..], "{text}");
}

/// Publish `flv`'s audio and video through sluice's own RTMP client, with timestamps rewritten
/// by `stamp` (from the file's timestamp).
async fn publish_restamped(server: &Server, name: &str, flv: bytes::Bytes, stamp: impl Fn(u32) -> u32) {
    use rtmp::{MediaKind, Role};
    let mut c = sluice::client::RtmpClient::connect(server.addr(), "live", Role::Publish(name.into())).await.unwrap();
    assert_eq!(c.next_status().await.unwrap(), "NetStream.Publish.Start");
    let start = Instant::now();
    for tag in flv::FlvReader::new(flv).unwrap() {
        let tag = tag.unwrap();
        let kind = match tag.tag_type {
            flv::TAG_VIDEO => MediaKind::Video,
            flv::TAG_AUDIO => MediaKind::Audio,
            _ => continue,
        };
        // Real time, so the HLS writer keeps up as with a camera.
        tokio::time::sleep_until((start + Duration::from_millis(u64::from(tag.timestamp))).into()).await;
        c.send_media(kind, stamp(tag.timestamp), &tag.body).await.unwrap();
    }
    c.flush().await.unwrap();
}

/// Defect 4 end to end: a publisher whose clock jumps 10 hours ahead, then back to 0, then
/// stamps garbage. The playlist keeps sane durations, marks the discontinuity, and ffmpeg
/// decodes every segment without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_jumps_give_segments_that_all_decode() {
    let dir = TempDir::new("hls-jumps");
    let server = hls_server(&dir, "hls_playlist_length 15s;");
    let src = dir.path("in.flv");
    let made = run_timeout(
        Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=10"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=10"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-bf", "2", "-pix_fmt", "yuv420p"])
            .args(["-c:a", "aac", "-b:a", "64k"])
            .arg(&src),
        Duration::from_secs(60),
    );
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let flv = bytes::Bytes::from(std::fs::read(&src).unwrap());
    let stamp = |t: u32| match t {
        0..3000 => t,
        3000..5000 => t + 36_000_000,
        5000..7000 => t - 5000,
        // Garbage: a hash of the timestamp.
        _ => t.wrapping_mul(2_654_435_761).rotate_left(7),
    };
    publish_restamped(&server, "j", flv, stamp).await;
    let text = tokio::task::spawn_blocking({
        let port = server.http_port;
        move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let t = get(port, "/hls/j.m3u8").text();
                if t.contains("#EXT-X-ENDLIST") || Instant::now() > deadline {
                    return t;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })
    .await
    .unwrap();
    assert!(text.contains("#EXT-X-ENDLIST"), "{text}\n{}", server.log());
    let target: u64 = text.lines().find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:")).unwrap().parse().unwrap();
    assert!(target <= 7, "{text}");
    assert!(!text.contains("#EXTINF:0.000"), "{text}");
    assert!(text.contains("#EXT-X-DISCONTINUITY"), "{text}");
    let segments = uris(&text);
    assert!(segments.len() >= 5, "{text}");
    for s in &segments {
        let path = dir.path("hls").join(s);
        let out = run_timeout(
            Command::new("ffmpeg").args(["-v", "error", "-xerror", "-i"]).arg(&path).args([
                "-fps_mode",
                "passthrough",
                "-f",
                "null",
                "-",
            ]),
            Duration::from_secs(60),
        );
        let errors = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && errors.trim().is_empty(), "{s}: {errors}\n{text}");
    }
}

/// The playlist's segments as (media sequence number, URI), and its `#EXT-X-MAP` URIs.
fn numbered(playlist: &str) -> (Vec<(u64, String)>, Vec<String>) {
    let first: u64 =
        playlist.lines().find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:")).map_or(0, |v| v.parse().unwrap());
    let segs = uris(playlist).into_iter().enumerate().map(|(i, u)| (first + i as u64, u)).collect();
    let maps = playlist
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MAP:"))
        .map(|l| l.split("URI=\"").nth(1).unwrap().split('"').next().unwrap().to_string())
        .collect();
    (segs, maps)
}

/// The session in a segment name (`NAME-SESSION-ID.ext`).
fn session_of(uri: &str) -> &str {
    uri.rsplit('-').nth(1).unwrap_or_else(|| panic!("no session in {uri}"))
}

/// Fetch the playlist every 100 ms from a thread until `stop`, keeping (when, text).
fn poll_playlist(
    port: u16,
    loc: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<(Instant, String)>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let r = get(port, loc);
            if r.status == 200 {
                seen.push((Instant::now(), r.text()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        seen
    })
}

/// Issue 10: a publisher that comes back within `hls_playlist_length` continues the same
/// playlist: no `#EXT-X-ENDLIST` in between, one `#EXT-X-DISCONTINUITY`, numbering goes on, every
/// URL is new (init segments too), every segment decodes, and ffmpeg reading the playlist over
/// HTTP gets the frames of both publishers.
fn republish_within_the_window(tag: &str, extra: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = TempDir::new(tag);
    let server = hls_server(&dir, &format!("hls_playlist_length 10s; {extra}"));
    const LOC: &str = "/hls/s.m3u8";
    let url = format!("http://127.0.0.1:{}{LOC}", server.http_port);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let poller = poll_playlist(server.http_port, LOC, stop.clone());

    let mut first = ffmpeg_publish(&server.url("s"), 4, 25);
    playlist_with(&server, LOC, 1);
    let frames = dir.path("frames.crc");
    let mut reader = Proc(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-rw_timeout", "30000000", "-i", &url, "-map", "0:v:0", "-f", "framecrc"])
            .arg(&frames)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let _ = first.0.wait();
    let first_left = Instant::now();
    // The publisher is away: the playlist has no preload hint of a part to come, and what a
    // low-latency client asks for answers (no request hangs).
    let gap = wait_for(&server, Duration::from_secs(10), "the first publisher's last segment", || {
        let t = get(server.http_port, LOC).text();
        (!t.contains("#EXT-X-PRELOAD-HINT")).then_some(t)
    });
    assert!(!gap.contains("#EXT-X-ENDLIST"), "{gap}");
    let blocked = extra.contains("hls_low_latency on").then(|| {
        let next = numbered(&gap).0.last().unwrap().0 + 1;
        let port = server.http_port;
        std::thread::spawn(move || get(port, &format!("{LOC}?_HLS_msn={next}&_HLS_part=0")).status)
    });
    std::thread::sleep(Duration::from_secs(2));
    let second_came = Instant::now();
    let mut second = ffmpeg_publish(&server.url("s"), 4, 25);
    if let Some(b) = blocked {
        let status = b.join().unwrap();
        assert!(status == 200 || status == 503, "a blocking reload across the gap: {status}");
    }
    let _ = second.0.wait();
    let ended = wait_for(&server, Duration::from_secs(40), "the end of the playlist", || {
        let t = get(server.http_port, LOC).text();
        t.contains("#EXT-X-ENDLIST").then_some(t)
    });
    stop.store(true, Ordering::Relaxed);
    let seen = poller.join().unwrap();

    // One writer all along: the second publish was taken by the waiting task.
    let log = server.log();
    assert_eq!(log.matches("hls: start").count(), 1, "{log}");
    assert!(log.contains("hls: publisher back"), "{log}");
    // Never ended while the publisher was away.
    let in_gap = seen.iter().filter(|(at, _)| *at > first_left && *at < second_came).count();
    assert!(in_gap >= 10, "the playlist was read during the gap ({in_gap} times)");
    let ended_early = seen.iter().find(|(_, t)| t.contains("#EXT-X-ENDLIST") && !t.contains("#EXT-X-DISCONTINUITY"));
    assert!(ended_early.is_none(), "ended before the publisher came back: {}", ended_early.unwrap().1);

    // One playlist: one discontinuity, the numbering goes on, a new session after it.
    let (segs, maps) = numbered(&ended);
    assert_eq!(ended.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{ended}");
    let (before, after) = ended.split_once("#EXT-X-DISCONTINUITY\n").unwrap();
    let (old, new) = (uris(before), uris(after));
    assert!(old.len() >= 3 && new.len() >= 3, "{ended}");
    assert_eq!(segment_id(&new[0]), segment_id(old.last().unwrap()) + 1, "{ended}");
    assert!(segs.iter().all(|(msn, u)| segment_id(u) == *msn), "sequential names are numbers: {ended}");
    let (s1, s2) = (session_of(&old[0]), session_of(&new[0]));
    assert!(s1 != s2 && old.iter().all(|u| session_of(u) == s1) && new.iter().all(|u| session_of(u) == s2));
    if extra.contains("fmp4") {
        assert_eq!(maps.len(), 2, "{ended}");
        assert!(maps[0] != maps[1] && maps[1].contains(s2) && after.starts_with("#EXT-X-MAP:"), "{ended}");
    }
    // No URL ever named two things, in any playlist served along the way.
    let mut by_uri: HashMap<String, u64> = HashMap::new();
    let mut by_msn: HashMap<u64, String> = HashMap::new();
    for (_, t) in &seen {
        for (msn, u) in numbered(t).0 {
            assert_eq!(*by_uri.entry(u.clone()).or_insert(msn), msn, "{u} named twice");
            assert_eq!(*by_msn.entry(msn).or_insert(u.clone()), u, "segment {msn} renamed");
        }
    }
    for part in seen.iter().flat_map(|(_, t)| t.lines()).filter_map(|l| l.strip_prefix("#EXT-X-PART:")) {
        assert!(part.contains(s1) || part.contains(s2), "{part}");
    }

    // Every segment decodes on its own (fMP4 after its init segment).
    for (i, (_, u)) in segs.iter().enumerate() {
        let mut bytes = Vec::new();
        if !maps.is_empty() {
            let map = if old.contains(u) { &maps[0] } else { &maps[1] };
            bytes = get(server.http_port, &format!("/hls/{map}")).body;
        }
        let seg = get(server.http_port, &format!("/hls/{u}"));
        assert_eq!(seg.status, 200, "{u}");
        bytes.extend(seg.body);
        let file = dir.path(&format!("seg{i}.{}", if maps.is_empty() { "ts" } else { "mp4" }));
        std::fs::write(&file, bytes).unwrap();
        let out = run_timeout(
            Command::new("ffmpeg").args(["-v", "error", "-xerror", "-i"]).arg(&file).args(["-f", "null", "-"]),
            Duration::from_secs(60),
        );
        let errors = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && errors.trim().is_empty(), "{u}: {errors}\n{ended}");
        assert!(duration_of(&file) > 0.5, "{u}");
    }

    // The HTTP reader went on to the end: frames of both publishers (4 s at 25 fps each).
    let status = wait_timeout(&mut reader.0, Duration::from_secs(60)).expect("ffmpeg reads up to #EXT-X-ENDLIST");
    let crc = std::fs::read_to_string(&frames).unwrap_or_default();
    let n = crc.lines().filter(|l| !l.starts_with('#')).count();
    assert!(status.success() && n >= 160, "ffmpeg read {n} frames ({status:?}) of {ended}");
}

#[test]
fn republish_within_the_window_continues_mpegts_playlists() {
    // Without `hls_continuous` too: the playlist never ended, so it goes on.
    republish_within_the_window("hls-repub-ts", "hls_continuous off;");
}

#[test]
fn republish_within_the_window_continues_fmp4_playlists() {
    republish_within_the_window("hls-repub-fmp4", "hls_fragment_type fmp4;");
}

#[test]
fn republish_within_the_window_continues_low_latency_playlists() {
    republish_within_the_window("hls-repub-ll", "hls_fragment_type fmp4; hls_low_latency on; hls_part_duration 200ms;");
}

/// Past `hls_playlist_length` the playlist ends; a later publish starts afresh as before (here
/// without `hls_continuous`: numbering from 0, new URLs).
#[test]
fn republish_after_the_window_starts_a_new_playlist() {
    let dir = TempDir::new("hls-repub-late");
    let server = hls_server(&dir, "hls_playlist_length 2s; hls_continuous off;");
    let mut first = ffmpeg_publish(&server.url("s"), 3, 25);
    playlist_with(&server, "/hls/s.m3u8", 1);
    let _ = first.0.wait();
    let left = Instant::now();
    let ended = wait_for(&server, Duration::from_secs(20), "#EXT-X-ENDLIST", || {
        let t = get(server.http_port, "/hls/s.m3u8").text();
        t.contains("#EXT-X-ENDLIST").then_some(t)
    });
    assert!(left.elapsed() >= Duration::from_millis(1500), "ended before the window passed");
    let _second = ffmpeg_publish(&server.url("s"), 4, 25);
    let fresh = wait_for(&server, Duration::from_secs(20), "a new playlist", || {
        let t = get(server.http_port, "/hls/s.m3u8").text();
        (!t.contains("#EXT-X-ENDLIST") && t.contains("#EXTINF")).then_some(t)
    });
    assert!(fresh.contains("#EXT-X-MEDIA-SEQUENCE:0\n") && !fresh.contains("#EXT-X-DISCONTINUITY"), "{fresh}");
    let old = uris(&ended);
    assert!(uris(&fresh).iter().all(|u| !old.contains(u)), "{ended}\n{fresh}");
}

/// Shutdown while the publisher is away ends the playlist at once, as with a publisher.
#[test]
fn shutdown_during_the_gap_ends_the_playlist() {
    let dir = TempDir::new("hls-repub-stop");
    let mut server = hls_server(&dir, "hls_playlist_length 30s;");
    let mut first = ffmpeg_publish(&server.url("s"), 3, 25);
    playlist_with(&server, "/hls/s.m3u8", 1);
    let _ = first.0.wait();
    std::thread::sleep(Duration::from_secs(1));
    let gap = get(server.http_port, "/hls/s.m3u8").text();
    assert!(gap.contains("#EXTINF") && !gap.contains("#EXT-X-ENDLIST"), "{gap}");
    assert!(server.terminate().success());
    let on_disk = std::fs::read_to_string(dir.path("hls/s.m3u8")).unwrap();
    assert!(on_disk.ends_with("#EXT-X-ENDLIST\n"), "{on_disk}");
}

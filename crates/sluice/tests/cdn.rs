//! HLS and DASH behind a CDN: the cache headers and validators of every kind of answer (live
//! and ended playlists, blocking reloads, parts, init segments, segments, MPDs, fragments,
//! misses), `304`s, CORS preflights, and a real cache in front (nginx `proxy_cache`, a CDN
//! stand-in) that ffprobe reads through while the playlist keeps advancing.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Low-latency fMP4 HLS with 1 s segments (target duration 1) written under `dir/hls`.
fn ll_server(dir: &TempDir, extra: &str) -> Server {
    let hls = dir.path("hls");
    Server::start(&format!(
        "hls on; hls_path {}; hls_fragment 1s; hls_fragment_type fmp4; hls_low_latency on; \
         hls_part_duration 200ms; {extra}",
        hls.display()
    ))
}

fn get(url: &str, headers: &[&str]) -> Reply {
    let args: Vec<&str> = headers.iter().flat_map(|h| ["-H", h]).collect();
    curl_reply(&args, url)
}

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.header(name).unwrap_or_default()
}

fn uris(playlist: &str) -> Vec<String> {
    playlist.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
}

/// `#EXT-X-MEDIA-SEQUENCE` plus the complete segments listed: the next segment's number.
fn next_msn(playlist: &str) -> u64 {
    let first: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    first + playlist.matches("#EXTINF").count() as u64
}

fn playlist_with(url: &str, min_segments: usize) -> String {
    wait_for(&format!("{min_segments} segments at {url}"), Duration::from_secs(40), || {
        let r = get(url, &[]);
        (r.status == 200 && r.text().matches("#EXTINF").count() >= min_segments).then(|| r.text())
    })
}

/// The `URI="..."` of the first line starting with `tag`.
fn uri_attr(playlist: &str, tag: &str) -> String {
    let line = playlist.lines().find(|l| l.starts_with(tag)).unwrap_or_else(|| panic!("no {tag} in {playlist}"));
    line.split("URI=\"").nth(1).unwrap().split('"').next().unwrap().to_string()
}

#[test]
fn every_kind_of_hls_answer_carries_cache_headers_and_validators() {
    let dir = TempDir::new("cdn-headers");
    // The playlist ends 3 s after the publisher leaves.
    let server = ll_server(&dir, "hls_playlist_length 3s;");
    let base = format!("http://127.0.0.1:{}/hls", server.http_port);
    let mut publisher = ffmpeg_publish(&server.url("s"), 6, 25);
    let text = playlist_with(&format!("{base}/s.m3u8"), 2);

    // Live playlist: half a target duration (at least 1 s), an ETag, no Last-Modified (it
    // changes within a second).
    let live = get(&format!("{base}/s.m3u8"), &[]);
    assert_eq!(header(&live, "cache-control"), "public, max-age=1");
    let etag = header(&live, "etag").to_owned();
    assert!(etag.starts_with('"'), "{etag:?}");
    assert!(live.header("last-modified").is_none());
    let again = get(&format!("{base}/s.m3u8"), &[&format!("If-None-Match: {etag}")]);
    assert!(
        again.status == 304 || header(&again, "etag") != etag,
        "304 while unchanged, else the new version: {again:?}"
    );
    if again.status == 304 {
        assert!(again.body.is_empty());
        assert_eq!(header(&again, "cache-control"), "public, max-age=1");
    }

    // Blocking reload satisfied at once (the segment is listed): cacheable by its query.
    let msn = next_msn(&text) - 1;
    let blocking = get(&format!("{base}/s.m3u8?_HLS_msn={msn}&_HLS_part=0"), &[]);
    assert_eq!((blocking.status, header(&blocking, "cache-control")), (200, "public, max-age=6"));
    let too_far = get(&format!("{base}/s.m3u8?_HLS_msn={}", msn + 50), &[]);
    assert_eq!((too_far.status, header(&too_far, "cache-control")), (400, "no-cache"));

    // Init segment, segment and part: their names carry the publish's session.
    let init = uri_attr(&text, "#EXT-X-MAP:");
    let segment = uris(&text).pop().unwrap();
    let part = uri_attr(&text, "#EXT-X-PART:");
    for name in [&init, &segment, &part] {
        let r = get(&format!("{base}/{name}"), &[]);
        assert_eq!((r.status, header(&r, "cache-control")), (200, "public, max-age=31536000, immutable"), "{name}");
        let (etag, modified) = (header(&r, "etag").to_owned(), header(&r, "last-modified").to_owned());
        assert!(!etag.is_empty() && modified.ends_with(" GMT"), "{name}: {r:?}");
        let by_etag = get(&format!("{base}/{name}"), &[&format!("If-None-Match: {etag}")]);
        assert_eq!((by_etag.status, by_etag.body.len()), (304, 0), "{name}");
        assert_eq!(header(&by_etag, "etag"), etag);
        let by_date = get(&format!("{base}/{name}"), &[&format!("If-Modified-Since: {modified}")]);
        assert_eq!(by_date.status, 304, "{name}");
        let other = get(&format!("{base}/{name}"), &["If-None-Match: \"other\""]);
        assert_eq!(other.status, 200, "{name}");
    }

    // A segment that does not exist yet: never cached for long.
    let (stem, _) = segment.rsplit_once('-').unwrap();
    let missing = get(&format!("{base}/{stem}-99999.m4s"), &[]);
    assert_eq!((missing.status, header(&missing, "cache-control")), (404, "no-cache"));

    // CORS: any origin may read, and preflights are answered.
    assert_eq!(header(&live, "access-control-allow-origin"), "*");
    let pre = curl_reply(
        &["-X", "OPTIONS", "-H", "Origin: https://player.example", "-H", "Access-Control-Request-Method: GET"],
        &format!("{base}/s.m3u8"),
    );
    assert_eq!(pre.status, 204);
    assert!(header(&pre, "access-control-allow-methods").contains("GET"));
    assert_eq!(header(&pre, "access-control-allow-origin"), "*");

    // Ended: longer, and with Last-Modified.
    let _ = publisher.0.wait();
    let ended = wait_for("#EXT-X-ENDLIST", Duration::from_secs(30), || {
        let r = get(&format!("{base}/s.m3u8"), &[]);
        r.text().contains("#EXT-X-ENDLIST").then_some(r)
    });
    assert_eq!(header(&ended, "cache-control"), "public, max-age=6");
    let modified = header(&ended, "last-modified").to_owned();
    assert!(modified.ends_with(" GMT"), "{ended:?}");
    let by_date = get(&format!("{base}/s.m3u8"), &[&format!("If-Modified-Since: {modified}")]);
    assert_eq!(by_date.status, 304);
    let by_etag = get(&format!("{base}/s.m3u8"), &[&format!("If-None-Match: {}", header(&ended, "etag"))]);
    assert_eq!((by_etag.status, header(&by_etag, "cache-control")), (304, "public, max-age=6"));
}

/// nginx as a caching reverse proxy on a free port, with its own directories; stopped on drop.
struct Nginx {
    _proc: Proc,
    port: u16,
    _dir: TempDir,
}

impl Nginx {
    fn in_front_of(upstream_port: u16) -> Nginx {
        let dir = TempDir::new("cdn-nginx");
        let port = free_port();
        let d = dir.0.display();
        let conf = format!(
            "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    proxy_cache_path {d}/cache levels=1:2 keys_zone=hls:1m max_size=64m inactive=1m use_temp_path=off;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_http_version 1.1;
            proxy_cache hls;
            proxy_cache_lock on;
            proxy_cache_revalidate on;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
"
        );
        let path = dir.path("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let proc = spawn_quiet(
            Command::new("/usr/sbin/nginx")
                .arg("-e")
                .arg(dir.path("error.log"))
                .arg("-p")
                .arg(&dir.0)
                .arg("-c")
                .arg(&path),
            "nginx is installed (/usr/sbin/nginx)",
        );
        let nginx = Nginx { _proc: proc, port, _dir: dir };
        wait_for("nginx listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        nginx
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path("error.log")).unwrap_or_default()
    }
}

#[test]
fn live_hls_through_an_nginx_proxy_cache() {
    let dir = TempDir::new("cdn-nginx-hls");
    let server = ll_server(&dir, "");
    let cdn = Nginx::in_front_of(server.http_port);
    let _publisher = ffmpeg_publish(&server.url("s"), 40, 25);
    let text = playlist_with(&cdn.url("/hls/s.m3u8"), 2);

    // A player reads the stream through the cache.
    let streams = ffprobe_streams(&cdn.url("/hls/s.m3u8"));
    assert!(streams.iter().any(|s| s.starts_with("h264")), "{streams:?}; nginx: {}", cdn.log());

    // Segments and init segments: the second fetch is the cache's.
    for name in [uri_attr(&text, "#EXT-X-MAP:"), uris(&text).pop().unwrap()] {
        let first = get(&cdn.url(&format!("/hls/{name}")), &[]);
        assert_eq!(first.status, 200, "{name}");
        let second = get(&cdn.url(&format!("/hls/{name}")), &[]);
        assert_eq!((second.status, header(&second, "x-cache-status")), (200, "HIT"), "{name}");
        assert_eq!(second.body, first.body);
    }

    // A blocking reload is cached by its query: a second player asking the same gets the cache's.
    let msn = next_msn(&get(&cdn.url("/hls/s.m3u8"), &[]).text()) + 1;
    let blocking = cdn.url(&format!("/hls/s.m3u8?_HLS_msn={msn}&_HLS_part=0"));
    let first = get(&blocking, &[]);
    assert_eq!(first.status, 200, "{first:?}");
    assert!(next_msn(&first.text()) >= msn, "the answer holds the part asked for");
    let second = get(&blocking, &[]);
    assert_eq!((header(&second, "x-cache-status"), second.body.clone()), ("HIT", first.body));

    // The live playlist keeps advancing through the cache, never more than its max-age (1 s,
    // one segment here) behind the origin, while the cache answers most polls.
    let started = Instant::now();
    let (mut hits, mut polls) = (0, 0);
    let start_msn = next_msn(&get(&cdn.url("/hls/s.m3u8"), &[]).text());
    let mut last_msn = start_msn;
    while started.elapsed() < Duration::from_secs(6) {
        let origin = next_msn(&get(&format!("http://127.0.0.1:{}/hls/s.m3u8", server.http_port), &[]).text());
        let cached = get(&cdn.url("/hls/s.m3u8"), &[]);
        let cached_msn = next_msn(&cached.text());
        assert!(cached_msn + 2 >= origin, "the cache's playlist ({cached_msn}) is stale against {origin}");
        assert!(cached_msn >= last_msn, "went backwards");
        last_msn = cached_msn;
        polls += 1;
        hits += (header(&cached, "x-cache-status") == "HIT") as u32;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(last_msn >= start_msn + 3, "advanced from {start_msn} to {last_msn} in 6 s");
    assert!(hits * 2 >= polls, "{hits} of {polls} polls from the cache");
}

#[test]
fn hls_cors_names_one_origin_or_none() {
    let dir = TempDir::new("cdn-cors");
    let (a, b) = (dir.path("a"), dir.path("b"));
    let server = Server::start_with(
        "",
        &format!(
            "application a {{ live on; hls on; hls_path {}; hls_cors off; }}
             application b {{ live on; hls on; hls_path {}; hls_cors https://player.example; }}",
            a.display(),
            b.display()
        ),
    );
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("s.m3u8"), "#EXTM3U\n").unwrap();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", server.http_port);
    let preflight =
        ["-X", "OPTIONS", "-H", "Origin: https://other.example", "-H", "Access-Control-Request-Method: GET"];

    let off = get(&url("/a/s.m3u8"), &[]);
    assert_eq!(off.status, 200);
    assert!(off.header("access-control-allow-origin").is_none(), "{off:?}");
    assert!(curl_reply(&preflight, &url("/a/s.m3u8")).header("access-control-allow-origin").is_none());

    let named = get(&url("/b/missing.m3u8"), &[]);
    assert_eq!((named.status, header(&named, "access-control-allow-origin")), (404, "https://player.example"));
    let pre = curl_reply(&preflight, &url("/b/s.m3u8"));
    assert_eq!((pre.status, header(&pre, "access-control-allow-origin")), (204, "https://player.example"));
}

/// Asserts `name` under `base` is answered 200 with `cache_control`, an ETag and a
/// Last-Modified, and `304` (with the same Cache-Control) to either validator.
fn assert_validated(base: &str, name: &str, cache_control: &str) {
    let r = get(&format!("{base}/{name}"), &[]);
    assert_eq!((r.status, header(&r, "cache-control")), (200, cache_control), "{name}: {r:?}");
    let (etag, modified) = (header(&r, "etag").to_owned(), header(&r, "last-modified").to_owned());
    assert!(etag.starts_with('"') && modified.ends_with(" GMT"), "{name}: {r:?}");
    let by_etag = get(&format!("{base}/{name}"), &[&format!("If-None-Match: {etag}")]);
    assert_eq!((by_etag.status, by_etag.body.len()), (304, 0), "{name}");
    assert_eq!((header(&by_etag, "etag"), header(&by_etag, "cache-control")), (etag.as_str(), cache_control));
    let by_date = get(&format!("{base}/{name}"), &[&format!("If-Modified-Since: {modified}")]);
    assert_eq!(by_date.status, 304, "{name}");
    assert_eq!(get(&format!("{base}/{name}"), &["If-None-Match: \"other\""]).status, 200, "{name}");
}

/// DASH gets what HLS got: the MPD cached a second (an ETag, no Last-Modified: it changes
/// within a second), fragments a minute (their nginx-rtmp names come back after a restart, so
/// not immutable), init segments revalidated every time; validators and `304`s from memory and
/// from disk; errors never cached; and the application's `hls_cors` on its `dash_path` answers.
#[test]
fn every_kind_of_dash_answer_carries_cache_headers_validators_and_the_apps_cors() {
    let dir = TempDir::new("cdn-dash");
    let dash = dir.path("dash");
    // From an earlier run, on disk only.
    std::fs::create_dir_all(&dash).unwrap();
    std::fs::write(dash.join("old.mpd"), "<MPD/>").unwrap();
    std::fs::write(dash.join("old-init.m4v"), "init").unwrap();
    std::fs::write(dash.join("old-0.m4v"), "fragment").unwrap();
    let server = Server::start(&format!(
        "dash on; dash_path {}; dash_fragment 1s; hls_cors https://player.example;",
        dash.display()
    ));
    let base = format!("http://127.0.0.1:{}/dash", server.http_port);
    let _publisher = ffmpeg_publish(&server.url("s"), 20, 25);
    let mpd = wait_for("an MPD listing 2 fragments", Duration::from_secs(40), || {
        let r = get(&format!("{base}/s.mpd"), &[]);
        (r.status == 200 && timeline(&r.text(), "m4v").len() >= 2).then_some(r)
    });

    // The live MPD, from memory.
    assert_eq!(header(&mpd, "cache-control"), "public, max-age=1");
    assert_eq!(header(&mpd, "content-type"), "application/dash+xml");
    assert_eq!(header(&mpd, "access-control-allow-origin"), "https://player.example");
    let etag = header(&mpd, "etag").to_owned();
    assert!(etag.starts_with('"'), "{mpd:?}");
    assert!(mpd.header("last-modified").is_none(), "{mpd:?}");
    let again = get(&format!("{base}/s.mpd"), &[&format!("If-None-Match: {etag}")]);
    assert!(again.status == 304 || header(&again, "etag") != etag, "304 while unchanged: {again:?}");
    assert_eq!(header(&again, "cache-control"), "public, max-age=1");

    // Init segment and a listed fragment, from memory.
    let (t, _) = timeline(&mpd.text(), "m4v")[0];
    assert_validated(&base, "s-init.m4v", "no-cache");
    assert_validated(&base, &format!("s-{t}.m4v"), "public, max-age=60");

    // The same kinds from disk.
    let old = get(&format!("{base}/old.mpd"), &[]);
    assert_eq!((old.status, header(&old, "cache-control")), (200, "public, max-age=1"));
    assert_validated(&base, "old-init.m4v", "no-cache");
    assert_validated(&base, "old-0.m4v", "public, max-age=60");

    // Missing: never cached for long; CORS on errors too, and preflights.
    let missing = get(&format!("{base}/s-999999999.m4v"), &[]);
    assert_eq!((missing.status, header(&missing, "cache-control")), (404, "no-cache"));
    assert_eq!(header(&missing, "access-control-allow-origin"), "https://player.example");
    let pre = curl_reply(
        &["-X", "OPTIONS", "-H", "Origin: https://other.example", "-H", "Access-Control-Request-Method: GET"],
        &format!("{base}/s.mpd"),
    );
    assert_eq!((pre.status, header(&pre, "access-control-allow-origin")), (204, "https://player.example"));
}

/// Live DASH through nginx `proxy_cache`: ffprobe reads the MPD through the cache, and a
/// fragment's second fetch is the cache's (with `no-cache` on every DASH answer, as before, every
/// fetch went upstream).
#[test]
fn live_dash_through_an_nginx_proxy_cache() {
    let dir = TempDir::new("cdn-nginx-dash");
    let server = Server::start(&format!("dash on; dash_path {}; dash_fragment 1s;", dir.path("dash").display()));
    let cdn = Nginx::in_front_of(server.http_port);
    let _publisher = ffmpeg_publish(&server.url("s"), 40, 25);
    let mpd = wait_for("an MPD listing 2 fragments through the cache", Duration::from_secs(40), || {
        let r = get(&cdn.url("/dash/s.mpd"), &[]);
        (r.status == 200 && timeline(&r.text(), "m4v").len() >= 2).then(|| r.text())
    });
    let streams = ffprobe_streams(&cdn.url("/dash/s.mpd"));
    assert!(streams.iter().any(|s| s.starts_with("h264")), "{streams:?}; nginx: {}", cdn.log());

    let (t, _) = timeline(&mpd, "m4v")[0];
    let name = format!("/dash/s-{t}.m4v");
    let first = get(&cdn.url(&name), &[]);
    assert_eq!(first.status, 200, "{name}");
    let second = get(&cdn.url(&name), &[]);
    assert_eq!((second.status, header(&second, "x-cache-status")), (200, "HIT"), "{name}");
    assert_eq!(second.body, first.body);
}

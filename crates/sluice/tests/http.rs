//! The HTTP side against a real client (curl): the built-in server with the implicit hls
//! locations, nginx-style `http { }` blocks (root, alias, types, add_header, index), ranges,
//! HEAD, CORS, errors, `http_listen`/`--http-listen`, and the `LiveContent` hook; `allow`/`deny`
//! and the loopback-only built-in `/control/`; header, keep-alive and connection limits against
//! slow clients; process signals.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// One HTTP answer as curl saw it.
fn curl(url: &str, args: &[&str]) -> Reply {
    curl_reply(args, url)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Files every test serves: `hls/` (flat and nested), `www/` (a site), `secret.txt` outside both.
fn media_dir() -> TempDir {
    let dir = TempDir::new("http");
    let write = |rel: &str, data: &[u8]| {
        let p = dir.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    write("hls/stream.m3u8", b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n");
    write("hls/1.ts", &pattern(1000));
    write("hls/big.ts", &pattern(3 << 20));
    write("hls/enc.key", &[7; 16]);
    write("hls/notes.unknownext", b"?");
    write("hls/nested/stream/index.m3u8", b"#EXTM3U\n#nested\n");
    write("hls/a b.ts", b"space");
    write("www/index.html", b"<h1>home</h1>");
    write("www/sub/page.txt", b"page");
    write("secret.txt", b"top secret");
    dir
}

/// A running sluice binary (killed on drop).
struct Sluice {
    proc: Proc,
    rtmp_port: u16,
    http_port: u16,
    log: std::path::PathBuf,
}

impl Sluice {
    /// Starts sluice on `conf`, where `{rtmp}` and `{http}` stand for two free ports and
    /// `{dir}` for `dir`; `args` are extra command-line arguments (also with `{http}`).
    fn start(dir: &TempDir, conf: &str, args: &[&str]) -> Sluice {
        Self::start_limited(dir, conf, args, None)
    }

    /// [`Sluice::start`] with at most `nofile` open files (soft and hard limit), when given.
    fn start_limited(dir: &TempDir, conf: &str, args: &[&str], nofile: Option<u32>) -> Sluice {
        let (rtmp_port, http_port) = (free_port(), free_port());
        let fill = |s: &str| {
            s.replace("{rtmp}", &rtmp_port.to_string())
                .replace("{http}", &http_port.to_string())
                .replace("{dir}", &dir.0.display().to_string())
        };
        let path = dir.path(&format!("sluice-{rtmp_port}.conf"));
        std::fs::write(&path, fill(conf)).unwrap();
        let log = dir.path(&format!("sluice-{rtmp_port}.log"));
        let mut cmd = match nofile {
            // `exec` keeps the pid, so the child is sluice itself.
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), sluice_bin()]);
                c
            }
            None => Command::new(sluice_bin()),
        };
        let child = cmd
            .arg("-c")
            .arg(&path)
            .args(args.iter().map(|a| fill(a)))
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start sluice");
        let s = Sluice { proc: Proc(child), rtmp_port, http_port, log };
        s.wait_port(rtmp_port);
        s
    }

    fn wait_port(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sluice did not listen on {port}; log:\n{}", self.log());
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// An rtmp block with one HLS application writing to `{dir}/hls`.
const RTMP_HLS: &str =
    "rtmp { server { listen 127.0.0.1:{rtmp}; application live { live on; hls on; hls_path {dir}/hls; } } }\n";

#[test]
fn implicit_hls_location_without_http_block() {
    let dir = media_dir();
    let s = Sluice::start(&dir, RTMP_HLS, &["--http-listen", "127.0.0.1:{http}"]);
    s.wait_port(s.http_port);

    let m3u8 = curl(&s.url("/hls/stream.m3u8"), &[]);
    assert_eq!(m3u8.status, 200, "{}", s.log());
    assert_eq!(m3u8.text(), "#EXTM3U\n#EXT-X-TARGETDURATION:2\n");
    assert_eq!(m3u8.header("content-type"), Some("application/vnd.apple.mpegurl"));
    assert_eq!(m3u8.header("cache-control"), Some("no-cache"));
    assert_eq!(m3u8.header("access-control-allow-origin"), Some("*"));

    let ts = curl(&s.url("/hls/1.ts"), &[]);
    assert_eq!(ts.status, 200);
    assert_eq!(ts.body, pattern(1000));
    assert_eq!(ts.header("content-type"), Some("video/mp2t"));
    assert_eq!(ts.header("content-length"), Some("1000"));
    assert_eq!(ts.header("accept-ranges"), Some("bytes"));
    assert_eq!(ts.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert!(ts.header("last-modified").is_some_and(|v| v.ends_with(" GMT")), "{:?}", ts.headers);
    assert!(ts.header("etag").is_some());

    assert_eq!(curl(&s.url("/hls/enc.key"), &[]).header("cache-control"), Some("no-cache"));
    let nested = curl(&s.url("/hls/nested/stream/index.m3u8"), &[]);
    assert_eq!((nested.status, nested.text().as_str()), (200, "#EXTM3U\n#nested\n"), "hls_nested layout");
    let spaced = curl(&s.url("/hls/a%20b.ts"), &[]);
    assert_eq!((spaced.status, spaced.text().as_str()), (200, "space"), "percent-decoded");

    let missing = curl(&s.url("/hls/404.ts"), &[]);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("cache-control"), Some("no-cache"), "a missing segment is not cached for a year");
    assert_eq!(missing.header("access-control-allow-origin"), Some("*"));
    assert_eq!(curl(&s.url("/secret.txt"), &[]).status, 404, "nothing outside hls_path is served");

    let health = curl(&s.url("/healthz"), &[]);
    assert_eq!((health.status, health.text().as_str()), (200, "ok\nstreams 0\n"));
    assert_eq!(health.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn ranges_head_and_large_files() {
    let dir = media_dir();
    let s = Sluice::start(&dir, RTMP_HLS, &["--http-listen", "127.0.0.1:{http}"]);
    s.wait_port(s.http_port);
    let url = s.url("/hls/1.ts");

    let part = curl(&url, &["-H", "Range: bytes=10-19"]);
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(part.header("content-length"), Some("10"));
    assert_eq!(part.body, pattern(1000)[10..20]);
    assert_eq!(part.header("cache-control"), Some("public, max-age=31536000, immutable"));

    let tail = curl(&url, &["-H", "Range: bytes=-5"]);
    assert_eq!((tail.status, tail.header("content-range")), (206, Some("bytes 995-999/1000")));
    assert_eq!(tail.body, pattern(1000)[995..]);
    let open = curl(&url, &["-r", "990-"]);
    assert_eq!((open.status, open.body.len()), (206, 10));

    let unsatisfiable = curl(&url, &["-H", "Range: bytes=1000-"]);
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(unsatisfiable.header("content-range"), Some("bytes */1000"));
    let several = curl(&url, &["-H", "Range: bytes=0-1,5-6"]);
    assert_eq!((several.status, several.body.len()), (200, 1000), "several ranges: the whole file");

    let head = curl(&url, &["-I"]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1000"));
    assert_eq!(head.header("content-type"), Some("video/mp2t"));
    assert!(head.body.is_empty());

    // A file larger than the read chunk, whole and across a chunk boundary.
    let big = pattern(3 << 20);
    let whole = curl(&s.url("/hls/big.ts"), &[]);
    assert_eq!(whole.body.len(), big.len());
    assert!(whole.body == big, "big file arrives intact");
    let across = curl(&s.url("/hls/big.ts"), &["-r", "65530-131080"]);
    assert_eq!(across.status, 206);
    assert!(across.body == big[65530..=131080]);

    // Conditional requests.
    let etag = whole.header("etag").unwrap().to_owned();
    let same = curl(&s.url("/hls/big.ts"), &["-H", &format!("If-None-Match: {etag}")]);
    assert_eq!((same.status, same.body.len()), (304, 0));
    let lm = whole.header("last-modified").unwrap().to_owned();
    assert_eq!(curl(&s.url("/hls/big.ts"), &["-H", &format!("If-Modified-Since: {lm}")]).status, 304);
    let stale = curl(&s.url("/hls/big.ts"), &["-r", "0-0", "-H", "If-Range: \"0-0\""]);
    assert_eq!((stale.status, stale.body.len()), (200, big.len()), "If-Range mismatch: the whole file");
}

#[test]
fn cors_methods_traversal_and_errors() {
    let dir = media_dir();
    let conf = format!(
        "{RTMP_HLS}http {{ server {{ listen 127.0.0.1:{{http}};
            location /slip {{ alias {{dir}}/hls/; }}
        }} }}"
    );
    let s = Sluice::start(&dir, &conf, &[]);
    s.wait_port(s.http_port);

    let pre = curl(&s.url("/hls/stream.m3u8"), &["-X", "OPTIONS", "-H", "Origin: https://player.example"]);
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    assert_eq!(pre.header("access-control-allow-methods"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(pre.header("access-control-allow-headers"), Some("Range"));
    assert_eq!(curl(&s.url("/healthz"), &["-X", "OPTIONS"]).status, 204);

    let post = curl(&s.url("/hls/stream.m3u8"), &["-X", "POST", "-d", "x"]);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(post.header("access-control-allow-origin"), Some("*"));
    assert_eq!(curl(&s.url("/hls/stream.m3u8"), &["-X", "DELETE"]).status, 405);

    for attack in [
        "/hls/../secret.txt",
        "/hls/%2e%2e/secret.txt",
        "/hls/%2E%2E%2Fsecret.txt",
        "/hls/..%2fsecret.txt",
        "/slip../secret.txt",
        "/slip/../../secret.txt",
    ] {
        let r = curl(&s.url(attack), &[]);
        assert_eq!(r.status, 403, "{attack}: {}", r.text());
        assert!(!r.text().contains("top secret"));
    }
    assert_eq!(curl(&s.url("/hls/%zz"), &[]).status, 400);
    assert_eq!(curl(&s.url("/hls/a%00b"), &[]).status, 400);
    assert_eq!(curl(&s.url("/slip/1.ts"), &[]).status, 200, "alias without the slip works");
    assert_eq!(curl(&s.url("/slip/none.ts"), &[]).status, 404);
    // The implicit /hls/ location joins the block's server (no location of the user's shadows it).
    assert_eq!(curl(&s.url("/hls/1.ts"), &[]).header("cache-control"), Some("public, max-age=31536000, immutable"));
}

#[test]
fn nginx_block_root_alias_types_index_add_header() {
    let dir = media_dir();
    let conf = "http {
        default_type application/x-default;
        server {
            listen 127.0.0.1:{http};
            location /hls {
                types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
                root {dir};
                add_header Cache-Control no-cache;
                add_header Access-Control-Allow-Origin *;
            }
            location /media/ {
                alias {dir}/hls/;
                add_header X-Only-Ok ok;
                add_header X-Always yes always;
                add_header Access-Control-Allow-Origin https://player.example;
            }
            location / { root {dir}/www; }
            location = /exact { alias {dir}/www/sub/page.txt; }
            location /typed { alias {dir}/hls; types { text/x-special ts; } }
        }
    }
    rtmp { server { listen 127.0.0.1:{rtmp}; application live { live on; } } }";
    let s = Sluice::start(&dir, conf, &[]);
    s.wait_port(s.http_port);

    // root: file = root + URI; the block's types; add_header.
    let m3u8 = curl(&s.url("/hls/stream.m3u8"), &[]);
    assert_eq!(m3u8.status, 200);
    assert_eq!(m3u8.header("content-type"), Some("application/vnd.apple.mpegurl"));
    assert_eq!(m3u8.header("cache-control"), Some("no-cache"));
    assert_eq!(m3u8.header("access-control-allow-origin"), Some("*"), "set once, not twice");
    let nested = curl(&s.url("/hls/nested/stream/index.m3u8"), &[]);
    assert_eq!(nested.text(), "#EXTM3U\n#nested\n");
    let unknown = curl(&s.url("/hls/notes.unknownext"), &[]);
    assert_eq!(unknown.header("content-type"), Some("application/x-default"), "default_type inherits from http");

    // alias: file = alias + URI minus the prefix; the built-in map; add_header only on 2xx/3xx.
    let ts = curl(&s.url("/media/1.ts"), &[]);
    assert_eq!((ts.status, ts.body.len()), (200, 1000));
    assert_eq!(ts.header("content-type"), Some("video/mp2t"));
    assert_eq!((ts.header("x-only-ok"), ts.header("x-always")), (Some("ok"), Some("yes")));
    assert_eq!(ts.header("access-control-allow-origin"), Some("https://player.example"), "add_header wins over CORS *");
    assert!(ts.header("cache-control").is_none(), "no hls cache rules outside the implicit locations");
    let missing = curl(&s.url("/media/none.ts"), &[]);
    assert_eq!(missing.status, 404);
    assert_eq!((missing.header("x-only-ok"), missing.header("x-always")), (None, Some("yes")));
    let typed = curl(&s.url("/typed/1.ts"), &[]);
    assert_eq!(typed.header("content-type"), Some("text/x-special"), "a location's types beat the built-in map");

    // index, directory redirects, exact locations.
    let home = curl(&s.url("/"), &[]);
    assert_eq!((home.status, home.text().as_str()), (200, "<h1>home</h1>"));
    assert_eq!(home.header("content-type"), Some("text/html"));
    let redirect = curl(&s.url("/sub?x=1"), &[]);
    assert_eq!((redirect.status, redirect.header("location")), (301, Some("/sub/?x=1")));
    assert_eq!(curl(&s.url("/sub/"), &[]).status, 403, "a directory without index");
    assert_eq!(curl(&s.url("/sub/page.txt"), &[]).text(), "page");
    let exact = curl(&s.url("/exact"), &[]);
    assert_eq!((exact.status, exact.text().as_str()), (200, "page"));
    assert_eq!(curl(&s.url("/nothing-here"), &[]).status, 404);
}

#[test]
fn http_listen_directive_off_and_flag() {
    let dir = media_dir();
    // http_listen in the file.
    let on = Sluice::start(&dir, "rtmp { http_listen 127.0.0.1:{http}; server { listen 127.0.0.1:{rtmp}; } }", &[]);
    on.wait_port(on.http_port);
    assert_eq!(curl(&on.url("/healthz"), &[]).status, 200);

    // off: no HTTP server.
    let off = Sluice::start(&dir, "rtmp { http_listen off; server { listen 127.0.0.1:{rtmp}; } }", &[]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(TcpStream::connect(("127.0.0.1", off.http_port)).is_err());
    assert!(!off.log().contains("http listening"), "{}", off.log());
    assert!(TcpStream::connect(("127.0.0.1", off.rtmp_port)).is_ok(), "RTMP still runs");

    // --http-listen overrides the file.
    let flag = Sluice::start(
        &dir,
        "rtmp { http_listen off; server { listen 127.0.0.1:{rtmp}; } }",
        &["--http-listen", "127.0.0.1:{http}"],
    );
    flag.wait_port(flag.http_port);
    assert_eq!(curl(&flag.url("/healthz"), &[]).status, 200);
    assert!(flag.log().contains(&format!("http listening on 127.0.0.1:{}", flag.http_port)), "{}", flag.log());
}

/// `sluice -t -c FILE [ARGS]`: exit code and stderr.
fn check(dir: &TempDir, name: &str, conf: &str, args: &[&str]) -> (i32, String) {
    let path = dir.path(name);
    std::fs::write(&path, conf).unwrap();
    let out =
        run_timeout(Command::new(sluice_bin()).arg("-t").arg("-c").arg(&path).args(args), Duration::from_secs(10));
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn sluice_t_checks_http_blocks() {
    let dir = TempDir::new("http-t");
    // The stock Debian file, with its include paths moved under a directory that does not
    // exist, so the test does not read the machine's own /etc/nginx.
    let stock = "include /etc/nginx/modules-enabled/*.conf;
http {
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    ssl_protocols TLSv1.2 TLSv1.3;
    access_log /var/log/nginx/access.log;
    gzip on;
    include /etc/nginx/sites-enabled/*;
    server {
        listen 80 default_server;
        root /var/www/html;
        index index.html;
        server_name _;
        location / { try_files $uri $uri/ =404; }
    }
}
rtmp { server { application live { live on; } } }
"
    .replace("/etc/nginx/", &format!("{}/", dir.path("absent-etc-nginx").display()));
    let (code, stderr) = check(&dir, "stock.conf", &stock, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("test is successful"), "{stderr}");
    for ignored in ["sendfile", "ssl_protocols", "mime.types", "sites-enabled", "try_files", "gzip"] {
        let line = stderr.lines().find(|l| l.contains(ignored)).unwrap_or_else(|| panic!("no {ignored}: {stderr}"));
        assert!(line.contains("WARN") && line.contains("ignored"), "{line}");
    }
    assert!(stderr.contains("TLS is not supported yet"), "{stderr}");

    let (code, stderr) = check(&dir, "typo.conf", "http {\n  server {\n    lcation /hls { }\n  }\n}\n", &[]);
    assert_eq!(code, 1);
    let path = dir.path("typo.conf").display().to_string();
    assert!(
        stderr.contains(&format!("{path}:3:5: unknown directive \"lcation\" (did you mean \"location\"?)")),
        "{stderr}"
    );
    let clash = "rtmp { server {\n application a { hls on; hls_path /d/a/hls; }\n application b { hls on; hls_path /d/b/hls; }\n} }";
    let (code, stderr) = check(&dir, "clash.conf", clash, &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains(":3:2: applications \"a\" (hls_path /d/a/hls) and \"b\" (hls_path /d/b/hls)"), "{stderr}");

    let (code, stderr) = check(&dir, "ok.conf", "rtmp { }", &["--http-listen", "nowhere:x"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("invalid value \"nowhere:x\" for \"--http-listen\""), "{stderr}");
    let help = run_timeout(Command::new(sluice_bin()).arg("-h"), Duration::from_secs(10));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--http-listen ADDR|off"));
}

// ---- access rules and the control API (defect 6) ----

const CONTROL: &str = "/control/record/start?app=live&name=nobody";

#[test]
fn builtin_control_is_loopback_only_and_not_cross_origin() {
    let dir = TempDir::new("http-ctl");
    let s = Sluice::start(&dir, RTMP_HLS, &["--http-listen", "0.0.0.0:{http}"]);
    s.wait_port(s.http_port);

    let local = curl(&s.url(CONTROL), &[]);
    assert_eq!(local.status, 204, "loopback may use the control API: {}", s.log());
    assert_eq!(local.header("access-control-allow-origin"), None, "no CORS on state-changing calls");
    let pre = curl(&s.url(CONTROL), &["-X", "OPTIONS", "-H", "Origin: https://evil.example"]);
    assert_eq!(pre.header("access-control-allow-origin"), None, "no CORS preflight either");
    assert_eq!(pre.header("access-control-allow-methods"), None);
    let cross = curl(&s.url(CONTROL), &["-H", "Sec-Fetch-Site: cross-site"]);
    assert_eq!(cross.status, 403, "a page of another site cannot drive the API through the browser");
    assert_eq!(curl(&s.url(CONTROL), &["-H", "Sec-Fetch-Site: same-origin"]).status, 204);
    assert_eq!(curl(&s.url("/healthz"), &[]).header("access-control-allow-origin"), Some("*"), "the rest keeps CORS");

    // From this machine's own non-loopback address (when it has one), the default refuses.
    match non_loopback_ip() {
        Some(ip) => {
            let remote = curl(&format!("http://{ip}:{}{CONTROL}", s.http_port), &[]);
            assert_eq!(remote.status, 403, "{ip}: {}", s.log());
            assert_eq!(remote.header("access-control-allow-origin"), None);
            assert!(s.log().contains("http access forbidden by rule"), "{}", s.log());
            assert_eq!(curl(&format!("http://{ip}:{}/healthz", s.http_port), &[]).status, 200);
        }
        None => eprintln!("no non-loopback address: the remote half of this test was skipped"),
    }
}

/// An address of this machine other than loopback, if it has one.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("192.0.2.1:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn allow_and_deny_in_http_locations() {
    let dir = media_dir();
    let conf = "rtmp { server { listen 127.0.0.1:{rtmp}; application live { live on; } } }
http { server {
    listen 127.0.0.1:{http};
    location /closed { rtmp_control all; deny all; }
    location /others { rtmp_control all; allow 10.0.0.0/8; allow ::1; deny all; }
    location /mine { rtmp_control all; allow 10.0.0.1; allow 127.0.0.1; deny all; }
    location /dash { rtmp_control all; add_header Access-Control-Allow-Origin https://dash.example; }
    location /www { alias {dir}/www; deny 127.0.0.0/8; }
    location /www/sub { alias {dir}/www/sub; }
} }";
    let s = Sluice::start(&dir, conf, &[]);
    s.wait_port(s.http_port);
    let q = "record/start?app=live&name=nobody";
    let closed = curl(&s.url(&format!("/closed/{q}")), &[]);
    assert_eq!(closed.status, 403, "{}", s.log());
    assert_eq!(closed.header("access-control-allow-origin"), None);
    assert_eq!(curl(&s.url(&format!("/others/{q}")), &[]).status, 403);
    let mine = curl(&s.url(&format!("/mine/{q}")), &[]);
    assert_eq!(mine.status, 204, "{}", s.log());
    assert_eq!(mine.header("access-control-allow-origin"), None);
    let cross = ["-H", "Sec-Fetch-Site: cross-site"];
    assert_eq!(curl(&s.url(&format!("/mine/{q}")), &cross).status, 403);
    let dash = curl(&s.url(&format!("/dash/{q}")), &cross);
    assert_eq!(dash.status, 204, "a location naming an origin lets that page in");
    assert_eq!(dash.header("access-control-allow-origin"), Some("https://dash.example"));
    assert_eq!(curl(&s.url("/www/index.html"), &[]).status, 403, "rules cover files too");
    assert_eq!(curl(&s.url("/www/sub/page.txt"), &[]).text(), "page", "a location with no rules of its own");
    let log = s.log();
    assert!(log.contains("http access forbidden by rule") && log.contains("rule=deny all"), "{log}");
}

#[test]
fn sluice_t_checks_allow_and_deny() {
    let dir = TempDir::new("http-t-access");
    let ok = "http { allow 127.0.0.1; server { listen 8080; deny all; location /c { allow ::1; allow 10.0.0.0/8; allow ::ffff:192.0.2.0/120; deny all; } } }";
    let (code, stderr) = check(&dir, "ok.conf", ok, &[]);
    assert_eq!(code, 0, "{stderr}");
    for (conf, want) in [
        (
            "http { server {\n location /c { allow 10.0.0.0/33; } } }",
            ":2:22: invalid value \"10.0.0.0/33\" in \"allow\"",
        ),
        ("http { server { deny publish all; } }", "invalid number of arguments in \"deny\" directive"),
        ("http { server { deny nobody; } }", "invalid value \"nobody\" in \"deny\""),
        ("http { client_header_timeout 0; }", "invalid value \"0\" in \"client_header_timeout\""),
        ("http { server { location / { max_connections 2; } } }", "\"max_connections\" directive is not allowed here"),
    ] {
        let (code, stderr) = check(&dir, "bad.conf", conf, &[]);
        assert_eq!(code, 1, "{conf}: {stderr}");
        assert!(stderr.contains(want), "{conf}: {stderr}");
    }
}

// ---- slow clients and the connection limit (defect 8) ----

/// Reads until the server closes the connection; `None` if it is still open after `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        stream.set_read_timeout(Some(limit.saturating_sub(start.elapsed()).max(Duration::from_millis(10)))).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// Whether the server has closed `stream` (without waiting).
fn is_closed(mut stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let closed = !matches!(stream.read(&mut [0u8; 64]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    closed
}

/// An RTMP handshake (C0 C1, then S0 S1 read back): the RTMP listener still accepts.
fn rtmp_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut c0c1 = vec![0u8; 1537];
    c0c1[0] = 3;
    let mut s0s1 = vec![0u8; 1537];
    s.write_all(&c0c1).is_ok() && s.read_exact(&mut s0s1).is_ok() && s0s1[0] == 3
}

const SLOW_CONF: &str = "rtmp { server { listen 127.0.0.1:{rtmp}; application live { live on; } } }
http { server { listen 127.0.0.1:{http}; client_header_timeout 3s; max_connections 4; } }";

#[test]
fn slow_headers_are_cut_by_client_header_timeout() {
    let dir = TempDir::new("http-slowloris");
    let s = Sluice::start(&dir, SLOW_CONF, &[]);
    s.wait_port(s.http_port);
    let mut slow = TcpStream::connect(("127.0.0.1", s.http_port)).unwrap();
    let mut writer = slow.try_clone().unwrap();
    // One byte every 200 ms of a head that never ends: each byte would reset a per-read timer.
    let trickle = std::thread::spawn(move || {
        for b in b"GET /healthz HTTP/1.1\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a')) {
            if writer.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let took = closed_within(&mut slow, Duration::from_secs(10));
    assert!(took.is_some_and(|t| t >= Duration::from_secs(2)), "closed after {took:?} (timeout 3 s): {}", s.log());
    drop(slow);
    trickle.join().unwrap();
    assert_eq!(curl(&s.url("/healthz"), &[]).status, 200);
}

#[test]
fn connection_limit_closes_extra_connections_and_spares_rtmp() {
    let dir = TempDir::new("http-limit");
    // Few file descriptors, as near the limit in production: without an HTTP limit, idle
    // connections take them all and RTMP accepts fail.
    let s = Sluice::start_limited(&dir, SLOW_CONF, &[], Some(64));
    s.wait_port(s.http_port);
    // Let the server see the readiness probe go, so that it counts no more.
    std::thread::sleep(Duration::from_millis(500));
    // Five idle connections: one is closed at once, long before client_header_timeout (3 s).
    let mut held: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(("127.0.0.1", s.http_port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(1200));
    let closed = held.iter().filter(|c| is_closed(c)).count();
    assert_eq!(closed, 1, "a connection past max_connections is closed at once: {}", s.log());
    // A flood of idle connections: the fifth and later are closed, RTMP keeps answering.
    held.extend((0..80).filter_map(|_| TcpStream::connect(("127.0.0.1", s.http_port)).ok()));
    std::thread::sleep(Duration::from_millis(500));
    assert!(rtmp_answers(s.rtmp_port), "RTMP must not starve behind HTTP: {}", s.log());
    let log = s.log();
    assert_eq!(log.matches("http connection limit reached").count(), 1, "logged once per episode: {log}");
    // The four idle ones time out (client_header_timeout), and /healthz answers again.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut healthy = false;
    while !healthy && Instant::now() < deadline {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2"])
            .arg(s.url("/healthz"))
            .output()
            .unwrap();
        healthy = out.stdout == b"200";
        if !healthy {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert!(healthy, "/healthz answers once the idle connections time out: {}", s.log());
    assert!(held.len() > 60);
}

#[test]
fn send_timeout_drops_a_client_that_stops_reading() {
    let dir = TempDir::new("http-send");
    let big = 32 << 20;
    std::fs::create_dir_all(dir.path("www")).unwrap();
    std::fs::write(dir.path("www/big.bin"), pattern(big)).unwrap();
    let conf = "rtmp { server { listen 127.0.0.1:{rtmp}; } }
http { server { listen 127.0.0.1:{http}; send_timeout 1s; root {dir}; } }";
    let s = Sluice::start(&dir, conf, &[]);
    s.wait_port(s.http_port);
    let mut c = TcpStream::connect(("127.0.0.1", s.http_port)).unwrap();
    c.write_all(b"GET /www/big.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // Read nothing for a while: the socket buffers fill and the server's writes wait.
    std::thread::sleep(Duration::from_secs(4));
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got > 0 && got < big, "the server gave up on a client that read nothing for 1 s: got {got} of {big} bytes");
}

// ---- process signals (defect 7) ----

#[test]
fn signals_keep_the_server_running_and_sigterm_finalises() {
    let dir = TempDir::new("http-signals");
    let conf = "rtmp { server { listen 127.0.0.1:{rtmp}; application live { live on; hls on; hls_path {dir}/hls; hls_fragment 1s; } } }
http { server { listen 127.0.0.1:{http}; } }";
    let mut s = Sluice::start(&dir, conf, &[]);
    s.wait_port(s.http_port);
    let _publisher = ffmpeg_publish(&format!("rtmp://127.0.0.1:{}/live/sig", s.rtmp_port), 60, 25);
    let playlist = s.url("/hls/sig.m3u8");
    wait_until(&s, Duration::from_secs(20), "a segment", || {
        let r = curl(&playlist, &[]);
        r.status == 200 && r.text().contains("#EXTINF")
    });
    let pid = s.proc.0.id().to_string();
    for (signal, line) in [
        ("HUP", "reload: configuration applied"),
        ("USR1", "log files reopened"),
        ("USR2", "binary upgrade is not supported"),
    ] {
        assert!(Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap().success());
        wait_until(&s, Duration::from_secs(10), line, || s.log().contains(line));
        assert!(s.proc.0.try_wait().unwrap().is_none(), "SIG{signal} ended sluice: {}", s.log());
        let health = curl(&s.url("/healthz"), &[]);
        assert_eq!((health.status, health.text().contains("streams 1")), (200, true), "after SIG{signal}");
        assert!(rtmp_answers(s.rtmp_port), "after SIG{signal}");
    }
    // The fast stop (a graceful SIGQUIT is tests/reload.rs's).
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = wait_timeout(&mut s.proc.0, Duration::from_secs(15)).expect("sluice exits after SIGTERM");
    assert!(status.success(), "{status:?}: {}", s.log());
    assert!(s.log().contains("signal=\"SIGTERM\""), "{}", s.log());
    let on_disk = std::fs::read_to_string(dir.path("hls/sig.m3u8")).unwrap();
    assert!(on_disk.ends_with("#EXT-X-ENDLIST\n"), "a graceful shutdown ends the playlist: {on_disk}");
}

/// Polls `ready` until it holds; panics with the log after `limit`.
fn wait_until(s: &Sluice, limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no {what} within {limit:?}; log:\n{}", s.log());
}

// ---- the LiveContent hook, in process ----

mod live_hook {
    use std::future::Future;
    use std::path::{Path, PathBuf};
    use std::pin::Pin;

    use axum::response::{IntoResponse, Response};
    use sluice::http::LiveContent;

    /// Answers the file `stream.m3u8` of one directory from memory, echoing the query.
    pub struct Memory(pub PathBuf);

    impl LiveContent for Memory {
        fn get<'a>(
            &'a self,
            file: &'a Path,
            query: Option<&'a str>,
        ) -> Pin<Box<dyn Future<Output = Option<Response>> + Send + 'a>> {
            let answer = (file == self.0.join("stream.m3u8")).then(|| {
                let body = format!("#EXTM3U\n#from memory {}\n", query.unwrap_or("-"));
                ([("content-type", "application/vnd.apple.mpegurl")], body).into_response()
            });
            Box::pin(async move { answer })
        }
    }
}

#[test]
fn live_content_comes_before_files() {
    let dir = media_dir();
    let text = RTMP_HLS.replace("{rtmp}", "1935").replace("{dir}", &dir.0.display().to_string());
    let config = sluice::config::Config::parse(&text, "live.conf").unwrap();
    let site = config.http.servers().remove(0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = sluice::http::HttpState::for_site(
        sluice::hub::Hub::new(),
        vec![Arc::new(live_hook::Memory(dir.0.join("hls")))],
        site,
        Default::default(),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = rt.spawn(sluice::http::serve(listener, state, shutdown.clone()));
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");

    let live = curl(&url("/hls/stream.m3u8?token=abc"), &[]);
    assert_eq!(live.status, 200);
    assert_eq!(live.text(), "#EXTM3U\n#from memory token=abc\n", "memory wins over the file on disk");
    assert_eq!(live.header("access-control-allow-origin"), Some("*"), "CORS applies to live content");
    let encoded = curl(&url("/hls/%73tream.m3u8"), &[]);
    assert_eq!(encoded.text(), "#EXTM3U\n#from memory -\n", "the hook sees decoded paths");
    let head = curl(&url("/hls/stream.m3u8"), &["-I"]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("23"), "HEAD keeps the length");
    let disk = curl(&url("/hls/1.ts"), &[]);
    assert_eq!((disk.status, disk.body.len()), (200, 1000), "None falls through to the files");
    assert_eq!(curl(&url("/hls/../x"), &[]).status, 403, "traversal is refused before the hook");

    shutdown.cancel();
    rt.block_on(server).unwrap().unwrap();
}

/// Guards the helpers themselves: a reply parses with repeated headers joined.
#[test]
fn reply_parsing() {
    let r = parse_reply(b"HTTP/1.1 206 Partial Content\r\nA: 1\r\na: 2\r\n\r\nxy");
    assert_eq!((r.status, r.header("a"), r.body.as_slice()), (206, Some("1, 2"), &b"xy"[..]));
    assert!(Path::new(sluice_bin()).exists());
}

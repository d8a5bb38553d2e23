//! The web dashboard: served from the binary at `/` on the built-in server (and in a
//! `dashboard on` location of an `http { }` block), turned off by `dashboard off`, and working
//! in headless Chromium against the real JSON API: it lists a stream ffmpeg publishes, plays it,
//! and drops a client with its Drop button. The browser part is driven by
//! `tests/browser/dashboard.cjs` with the playwright-core and Chromium `scripts/test` installs
//! (see `tests/browser.rs`); it saves `target/artifacts/dashboard.png`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};

/// `curl -s -i ARGS... URL`, parsed.
fn request(url: &str, args: &[&str]) -> Reply {
    curl_reply(args, url)
}

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/dashboard")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// sluice with the built-in HTTP server (no `http { }` block) on `{http}`; `rtmp_extra` at the
/// rtmp level, `app` inside `application live { }`.
fn builtin_server(rtmp_extra: &str, app: &str) -> Server {
    Server::start_conf(&format!(
        "rtmp {{\n  http_listen 127.0.0.1:{{http}};\n  {rtmp_extra}\n  server {{\n    listen 127.0.0.1:{{rtmp}};\n    \
         application live {{ live on; {app} }}\n  }}\n}}\n"
    ))
}

const PAGE_MARK: &[u8] = b"<script src=\"dashboard/app.js\"";

#[test]
fn dashboard_page_and_files_are_served_from_the_binary() {
    let server = builtin_server("", "");
    let base = format!("http://127.0.0.1:{}", server.http_port);

    let page = request(&format!("{base}/"), &[]);
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.header("content-type").unwrap_or_default(), "text/html; charset=utf-8");
    assert_eq!(page.header("cache-control").unwrap_or_default(), "no-cache");
    assert!(page.header("content-security-policy").unwrap_or_default().contains("default-src 'none'"), "{page:?}");
    assert!(page.body.windows(PAGE_MARK.len()).any(|w| w == PAGE_MARK), "the dashboard page");

    let app = request(&format!("{base}/dashboard/app.js"), &[]);
    assert_eq!(app.status, 200);
    assert_eq!(app.header("content-type").unwrap_or_default(), "text/javascript; charset=utf-8");
    assert_eq!(app.body, std::fs::read(assets().join("app.js")).unwrap());
    let css = request(&format!("{base}/dashboard/app.css"), &[]);
    assert_eq!((css.status, css.header("content-type").unwrap_or_default()), (200, "text/css; charset=utf-8"));

    // The players are the vendored release files, with the sums the vendor README records.
    let readme = std::fs::read_to_string(assets().join("vendor/README")).unwrap();
    for player in ["hls.min.js", "mpegts.js"] {
        let res = request(&format!("{base}/dashboard/{player}"), &[]);
        assert_eq!(res.status, 200, "{player}");
        assert_eq!(res.header("content-type").unwrap_or_default(), "text/javascript; charset=utf-8", "{player}");
        assert_eq!(res.header("cache-control").unwrap_or_default(), "public, max-age=86400", "{player}");
        assert_eq!(res.body, std::fs::read(assets().join("vendor").join(player)).unwrap(), "{player}");
        let sum = sha256_hex(&res.body);
        assert!(readme.contains(&format!("{player}  sha256 {sum}")), "{player} sha256 {sum} not in the vendor README");
        let etag = res.header("etag").unwrap_or_default().to_owned();
        assert!(!etag.is_empty(), "{player} has an ETag");
        let again = request(&format!("{base}/dashboard/{player}"), &["-H", &format!("If-None-Match: {etag}")]);
        assert_eq!(again.status, 304, "{player} revalidates");
    }
    for licence in ["hls.js.LICENSE", "mpegts.js.LICENSE"] {
        let res = request(&format!("{base}/dashboard/{licence}"), &[]);
        assert!(res.status == 200 && String::from_utf8_lossy(&res.body).contains("Apache License"), "{licence}");
    }

    let head = request(&format!("{base}/dashboard/app.js"), &["-I"]);
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length").unwrap_or_default(), app.body.len().to_string());
    assert_eq!(request(&format!("{base}/dashboard/nothing.js"), &[]).status, 404);
    let post = request(&format!("{base}/"), &["-X", "POST"]);
    assert_eq!((post.status, post.header("allow").unwrap_or_default()), (405, "GET, HEAD"));
}

#[test]
fn dashboard_in_an_http_location_and_off_on_the_builtin_server() {
    let server = Server::start_conf(
        "rtmp { server { listen 127.0.0.1:{rtmp}; application live { live on; } } }\n\
         http { server { listen 127.0.0.1:{http}; location /ui/ { dashboard on; } location /panel { dashboard on; } } }\n",
    );
    let base = format!("http://127.0.0.1:{}", server.http_port);
    let page = request(&format!("{base}/ui/"), &[]);
    assert_eq!((page.status, page.header("content-type").unwrap_or_default()), (200, "text/html; charset=utf-8"));
    let app = request(&format!("{base}/ui/dashboard/app.js"), &[]);
    assert_eq!((app.status, app.header("content-type").unwrap_or_default()), (200, "text/javascript; charset=utf-8"));
    // Without its slash the page's relative links would leave the location.
    let bare = request(&format!("{base}/panel"), &[]);
    assert_eq!((bare.status, bare.header("location").unwrap_or_default()), (301, "/panel/"));
    assert_eq!(request(&format!("{base}/panel/"), &[]).status, 200);
    assert_eq!(request(&format!("{base}/"), &[]).status, 404, "no dashboard outside its location");

    // `dashboard off`: `/` and `/dashboard/` are no longer the dashboard's.
    let off = builtin_server("dashboard off;", "");
    let base = format!("http://127.0.0.1:{}", off.http_port);
    for path in ["/", "/dashboard/app.js", "/dashboard/hls.min.js"] {
        let res = request(&format!("{base}{path}"), &[]);
        assert!(
            !(res.status == 200
                && (res.header("content-type").unwrap_or_default().starts_with("text/html")
                    || res.header("content-type").unwrap_or_default().starts_with("text/javascript"))),
            "{path} is still served with dashboard off: {} {}",
            res.status,
            res.header("content-type").unwrap_or_default()
        );
        assert!(!res.body.windows(PAGE_MARK.len()).any(|w| w == PAGE_MARK), "{path}");
    }
}

fn browser_modules() -> PathBuf {
    let dir = std::env::var_os("SLUICE_BROWSER_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser/node_modules"));
    assert!(
        dir.join("playwright-core").exists(),
        "playwright-core is not in {}: run scripts/test, which installs it with Chromium",
        dir.display()
    );
    dir
}

/// An RTMP player (ffmpeg reading `url` to nowhere) whose flashVer is markup: the page must
/// show it as text.
fn rtmp_player(url: &str) -> Proc {
    spawn_quiet(
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error"])
            .args(["-rtmp_flashver", "<img src=x onerror=\"window.__xss=1\">"])
            .args(["-i", url, "-c", "copy", "-f", "null", "-"]),
        "ffmpeg is installed",
    )
}

/// Runs `tests/browser/dashboard.cjs` on the dashboard at `page` for the stream `live/NAME`
/// with the script's `env` (see the script), saving `target/artifacts/SHOT`; returns its
/// verdict and, for failure messages, that with the script's stderr and the server's log.
fn run_dashboard_script(server: &Server, page: &str, name: &str, shot: &str, env: &[(&str, &str)]) -> (String, String) {
    let modules = browser_modules();
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join(shot);
    let _ = std::fs::remove_file(&screenshot);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.cjs");
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .arg(format!("http://127.0.0.1:{}{page}", server.http_port))
        .arg(format!("live/{name}"))
        .arg(&screenshot)
        .env("BROWSER_MODULES", &modules);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_timeout(&mut cmd, Duration::from_secs(180));
    let verdict = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let context = format!("{verdict}\nstderr:\n{}\nlog:\n{}", String::from_utf8_lossy(&out.stderr), server.log());
    assert!(screenshot.exists(), "no screenshot at {}: {context}", screenshot.display());
    (verdict, context)
}

/// [`run_dashboard_script`] on the built-in server's `/`, which must list and play the stream
/// without logging an error.
fn open_dashboard(server: &Server, name: &str, shot: &str, env: &[(&str, &str)]) -> (String, String) {
    let (verdict, context) = run_dashboard_script(server, "/", name, shot, env);
    assert!(verdict.contains("\"listed\":true"), "the stream is not listed: {context}");
    assert!(verdict.contains("\"errors\":[]"), "the page logged errors: {context}");
    assert!(verdict.contains("\"ok\":true"), "{context}");
    (verdict, context)
}

/// With `hls on` the page plays the stream's HLS with hls.js; a client's Drop button ends its
/// connection; client text stays text.
#[test]
fn dashboard_in_chromium_lists_plays_hls_and_drops() {
    let dir = TempDir::new("dashboard");
    let hls = dir.path("hls");
    let server = builtin_server("", &format!("hls on; hls_path {}; hls_fragment 1s;", hls.display()));
    let _publisher = ffmpeg_publish(&server.url("cam"), 120, 25);
    // The page opens as the stream starts: its player waits for the first segment, with no 404.
    wait_published(&server, "cam");
    let mut player = rtmp_player(&server.url("cam"));
    let (verdict, context) = open_dashboard(&server, "cam", "dashboard.png", &[]);
    assert!(verdict.contains("\"player\":\"HLS\""), "not hls.js: {context}");
    assert!(verdict.contains("\"escaped\":true"), "client text reached the page as HTML: {context}");
    // The dropped player's connection ended: ffmpeg's input closed and it exited.
    assert!(
        wait_timeout(&mut player.0, Duration::from_secs(15)).is_some(),
        "the dropped RTMP player is still connected: {context}"
    );
}

/// Without HLS the page plays the stream over HTTP-FLV with mpegts.js.
#[test]
fn dashboard_in_chromium_plays_http_flv_without_hls() {
    let server = builtin_server("", "");
    let _publisher = ffmpeg_publish(&server.url("flv"), 120, 25);
    wait_published(&server, "flv");
    let (verdict, context) = open_dashboard(&server, "flv", "dashboard-flv.png", &[("DASHBOARD_DROP", "0")]);
    assert!(verdict.contains("\"player\":\"HTTP-FLV\""), "not mpegts.js: {context}");
}

/// With `api_token`, the page asks for the token, sends it, and then works.
#[test]
fn dashboard_in_chromium_asks_for_the_api_token() {
    let server = builtin_server("api_token s3cret-token;", "");
    let _publisher = ffmpeg_publish(&server.url("tok"), 120, 25);
    wait_published(&server, "tok");
    let env = [("DASHBOARD_DROP", "0"), ("DASHBOARD_TOKEN", "s3cret-token")];
    let (verdict, context) = open_dashboard(&server, "tok", "dashboard-token.png", &env);
    assert!(verdict.contains("\"asked_token\":true"), "{context}");
}

/// A page whose API refuses it (here an `http {}` block denying the API to everyone) says so.
#[test]
fn dashboard_in_chromium_says_when_the_api_refuses_it() {
    let server = Server::start_conf(
        "rtmp { server { listen 127.0.0.1:{rtmp}; application live { live on; } } }\n\
         http { server { listen 127.0.0.1:{http}; location /ui/ { dashboard on; } location /api/ { api on; deny all; } } }\n",
    );
    let (verdict, context) =
        run_dashboard_script(&server, "/ui/", "none", "dashboard-refused.png", &[("DASHBOARD_REFUSED", "1")]);
    assert!(verdict.contains("\"ok\":true"), "{context}");
    assert!(verdict.contains("\"errors\":[]"), "the page logged errors: {context}");
    assert!(verdict.contains("The API refused this address (403"), "{context}");
}

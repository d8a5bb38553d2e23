//! mpegts.js in headless Chromium plays HTTP-FLV and WebSocket-FLV from sluice. `scripts/test`
//! installs Chromium (Debian's package) and mpegts.js and playwright-core (npm) into
//! `target/browser/`; the test drives the browser with `tests/browser/play.cjs` and the page
//! `tests/browser/flv.html`, served by sluice from a `root` location next to the `flv_live` one.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

const MPEGTS: &str = "mpegts.js/dist/mpegts.js";

fn browser_modules() -> PathBuf {
    let dir = std::env::var_os("SLUICE_BROWSER_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser/node_modules"));
    assert!(
        dir.join(MPEGTS).exists() && dir.join("playwright-core").exists(),
        "mpegts.js and playwright-core are not in {}: run scripts/test, which installs them with Chromium",
        dir.display()
    );
    dir
}

fn number(json: &str, key: &str) -> f64 {
    let start = json.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("{key} in {json}")) + key.len() + 3;
    json[start..].split([',', '}']).next().unwrap().parse().unwrap_or(f64::NAN)
}

#[test]
fn mpegts_js_plays_http_flv_and_websocket_flv() {
    let modules = browser_modules();
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let dir = TempDir::new("browser-flv");
    let pages = dir.path("page");
    std::fs::create_dir_all(&pages).unwrap();
    std::fs::copy(here.join("flv.html"), pages.join("flv.html")).unwrap();
    std::fs::copy(modules.join(MPEGTS), pages.join("mpegts.js")).unwrap();
    let server = Server::start_conf(&format!(
        "rtmp {{ server {{ listen 127.0.0.1:{{rtmp}}; application live {{ live on; }} }} }}
         http {{ server {{ listen 127.0.0.1:{{http}}; location /live {{ flv_live on; }} location /page/ {{ root {}; }} }} }}",
        dir.0.display()
    ));
    let _publisher = ffmpeg_publish(&server.url("cam"), 90, 25);
    wait_published(&server, "cam");
    let page = |ws: u8| format!("http://127.0.0.1:{}/page/flv.html?src=/live/cam.flv&ws={ws}&secs=8", server.http_port);
    let (verdicts, console) = chromium_verdicts(&modules, &[page(0), page(1)], Duration::from_secs(60));
    assert_eq!(verdicts.len(), 2, "one verdict per page: {verdicts:?}\nconsole:\n{console}");
    for (verdict, what) in verdicts.iter().zip(["HTTP-FLV", "WebSocket-FLV"]) {
        eprintln!("mpegts.js, {what}: {verdict}");
        assert!(
            verdict.contains("\"ok\":true"),
            "mpegts.js did not play {what}: {verdict}\nconsole:\n{console}\nlog:\n{}",
            server.log()
        );
        assert!(number(verdict, "advanced") >= 8.0, "{verdict}");
        assert_eq!(number(verdict, "width"), 640.0, "{verdict}");
    }
    let log = server.log();
    assert!(log.contains("protocol=http-flv") && log.contains("protocol=ws-flv"), "{log}");
}

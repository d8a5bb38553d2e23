//! hls.js and Shaka Player in headless Chromium play what sluice serves. `scripts/test` installs
//! Chromium (Debian's package) and hls.js, shaka-player and playwright-core (npm) into
//! `target/browser/`; the tests drive the browser with `tests/browser/play.cjs` and the pages
//! `tests/browser/player.html` (hls.js) and `tests/browser/shaka.html` (Shaka).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn browser_modules() -> PathBuf {
    let dir = std::env::var_os("SLUICE_BROWSER_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser/node_modules"));
    assert!(
        dir.join(HLSJS).exists() && dir.join(SHAKA).exists() && dir.join("playwright-core").exists(),
        "hls.js, shaka-player and playwright-core are not in {}: run scripts/test, which installs them \
         with Chromium",
        dir.display()
    );
    dir
}

/// A page to open: `page` (in `tests/browser/`) served from `hls_dir` next to `stream`'s
/// playlist, with `query` after `src=STREAM.m3u8`.
struct Page<'a> {
    server: &'a Server,
    hls_dir: &'a Path,
    stream: &'a str,
    page: &'a str,
    query: String,
    /// Segments the playlist lists before the page opens.
    min_segments: usize,
}

/// Serve each page and its player library from its HLS directory (same origin), wait for the
/// streams, and let one Chromium play them all at once; returns each page's JSON verdict.
fn play_pages(pages: &[Page], timeout: Duration) -> Vec<(String, String)> {
    let modules = browser_modules();
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let mut urls = Vec::new();
    for p in pages {
        std::fs::create_dir_all(p.hls_dir).unwrap();
        std::fs::copy(here.join(p.page), p.hls_dir.join(p.page)).unwrap();
        let library = if p.page == "shaka.html" { SHAKA } else { HLSJS };
        let file = Path::new(library).file_name().unwrap();
        std::fs::copy(modules.join(library), p.hls_dir.join(file)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30 + p.min_segments as u64);
        while !std::fs::read_to_string(p.hls_dir.join(format!("{}.m3u8", p.stream)))
            .is_ok_and(|t| t.matches("#EXTINF").count() >= p.min_segments)
        {
            assert!(std::time::Instant::now() < deadline, "no playlist; log:\n{}", p.server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        urls.push(format!("http://127.0.0.1:{}/hls/{}?src={}.m3u8&{}", p.server.http_port, p.page, p.stream, p.query));
    }
    let (verdicts, console) = chromium_verdicts(&modules, &urls, timeout);
    assert_eq!(verdicts.len(), pages.len(), "one verdict per page: {verdicts:?}\nconsole:\n{console}");
    verdicts.into_iter().map(|v| (v, console.clone())).collect()
}

const HLSJS: &str = "hls.js/dist/hls.min.js";
const SHAKA: &str = "shaka-player/dist/shaka-player.compiled.debug.js";

/// hls.js plays one stream; returns its JSON verdict.
fn play_in_chromium(server: &Server, hls_dir: &Path, stream: &str, secs: u32, low_latency: bool) -> String {
    let query = format!("secs={secs}&ll={}", u8::from(low_latency));
    let page = Page { server, hls_dir, stream, page: "player.html", query, min_segments: 2 };
    let (verdict, console) = play_pages(&[page], Duration::from_secs(60)).remove(0);
    assert!(
        verdict.contains("\"ok\":true"),
        "hls.js did not play: {verdict}\nconsole:\n{console}\nlog:\n{}",
        server.log()
    );
    verdict
}

fn number(json: &str, key: &str) -> f64 {
    let start = json.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("{key} in {json}")) + key.len() + 3;
    json[start..].split([',', '}']).next().unwrap().parse().unwrap_or(f64::NAN)
}

#[test]
fn hlsjs_plays_mpegts_hls_for_ten_seconds() {
    let dir = TempDir::new("browser-ts");
    let hls = dir.path("hls");
    let server = Server::start(&format!("hls on; hls_path {}; hls_fragment 1s;", hls.display()));
    let _publisher = ffmpeg_publish(&server.url("stream"), 30, 25);
    let verdict = play_in_chromium(&server, &hls, "stream", 10, false);
    assert!(number(&verdict, "advanced") >= 10.0, "{verdict}");
    assert_eq!(number(&verdict, "width"), 640.0, "{verdict}");
}

#[test]
fn hlsjs_low_latency_mode_plays_fmp4_parts_close_to_live() {
    let dir = TempDir::new("browser-ll");
    let hls = dir.path("hls");
    let server = Server::start(&format!(
        "hls on; hls_path {}; hls_fragment 1s; hls_fragment_type fmp4; hls_low_latency on; hls_part_duration 200ms;",
        hls.display()
    ));
    let _publisher = ffmpeg_publish(&server.url("ll"), 30, 25);
    let verdict = play_in_chromium(&server, &hls, "ll", 8, true);
    assert!(number(&verdict, "advanced") >= 8.0, "{verdict}");
    assert!(verdict.contains("\"lowLatency\":true"), "{verdict}");
    // Publish-to-display latency from the playlist's program date-times (the server's clock when a
    // segment's first frame came in). Documented target: under 2 s; asserted loosely for CI.
    let latency = number(&verdict, "latencyMs");
    eprintln!("hls.js low-latency: {verdict}");
    assert!(latency < 3000.0, "latency {latency} ms: {verdict}");
}

/// Shaka Player in low-latency mode plays MPEG-TS, fMP4 and low-latency HLS for a minute each
/// without a gap or a stall (Shaka placed parts by program date-times that drifted against the
/// media, and left holes). The three play at once in one browser to keep the suite short.
///
/// The page works around a bug of Shaka 5.2 that drops low-latency parts not starting with a
/// keyframe after a needless `abort()`, at random and more often under load
/// (shaka-project/shaka-player#10589; see `shaka.html`): it made the holes this test saw in the
/// LL-HLS case, at start-up and later, and does so with any server's live LL-HLS. The verdict
/// says whether the workaround was applied (`offsetFix`). Shaka's own start is not judged: a page
/// opened on a stream a few segments old plays from its start and then seeks to the live edge, and
/// Shaka may jump to the first buffered frame; so the page opens once 10 segments are listed and
/// its first 2 s of playback are reported ("settling"), not judged.
#[test]
fn shaka_low_latency_mode_plays_ts_fmp4_and_ll_hls_for_a_minute_without_gaps() {
    const SECS: u32 = 60;
    const SETTLE_SECS: u32 = 2;
    const MIN_SEGMENTS: usize = 10;
    let dir = TempDir::new("browser-shaka");
    let kinds = [
        ("ts", "hls_fragment 1s;"),
        ("fmp4", "hls_fragment 1s; hls_fragment_type fmp4;"),
        ("ll", "hls_fragment 1s; hls_fragment_type fmp4; hls_low_latency on; hls_part_duration 200ms;"),
    ];
    // Served under /hls/ (the directory's last component), one server each.
    let hls: Vec<PathBuf> = kinds.iter().map(|(k, _)| dir.path(k).join("hls")).collect();
    let servers: Vec<Server> = kinds
        .iter()
        .zip(&hls)
        .map(|((_, conf), path)| Server::start(&format!("hls on; hls_path {}; {conf}", path.display())))
        .collect();
    let _publishers: Vec<Proc> = servers.iter().map(|s| ffmpeg_publish(&s.url("stream"), SECS + 50, 25)).collect();
    let pages: Vec<Page> = servers
        .iter()
        .zip(&hls)
        .map(|(server, hls_dir)| Page {
            server,
            hls_dir,
            stream: "stream",
            page: "shaka.html",
            query: format!("secs={SECS}&settle={SETTLE_SECS}"),
            min_segments: MIN_SEGMENTS,
        })
        .collect();
    let verdicts = play_pages(&pages, Duration::from_secs(u64::from(SECS) + 40));
    let mut failed = Vec::new();
    for (((kind, _), (verdict, _)), server) in kinds.iter().zip(&verdicts).zip(&servers) {
        eprintln!("Shaka low-latency mode, {kind}: {verdict}");
        if !verdict.contains("\"ok\":true") || number(verdict, "advanced") < f64::from(SECS) {
            failed.push(format!("{kind}: {verdict}\nlog:\n{}", server.log()));
        }
    }
    assert!(failed.is_empty(), "Shaka did not play without gaps:\n{}\nconsole:\n{}", failed.join("\n"), verdicts[0].1);
}

/// Starts one ffmpeg per `(suffix, size)`, publishing `x{suffix}` to `server` for `secs`.
fn publish_renditions(server: &Server, renditions: &[(&str, &str)], secs: u32) -> Vec<Proc> {
    renditions
        .iter()
        .map(|(suffix, size)| ffmpeg_publish_pattern(&server.url(&format!("x{suffix}")), size, secs, 25))
        .collect()
}

/// hls.js plays the master `x.m3u8` in `hls` once it lists `n` variants, switched to each level
/// in turn through its API; returns its verdict.
fn play_master(server: &Server, hls: &Path, n: usize, low_latency: bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while !std::fs::read_to_string(hls.join("x.m3u8")).is_ok_and(|t| t.matches("#EXT-X-STREAM-INF").count() == n) {
        assert!(std::time::Instant::now() < deadline, "no master with {n} variants; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // A segment or two more in each variant.
    std::thread::sleep(Duration::from_secs(2));
    let query = format!("secs=12&cycle=1&ll={}", u8::from(low_latency));
    let page = Page { server, hls_dir: hls, stream: "x", page: "player.html", query, min_segments: 0 };
    let (verdict, console) = play_pages(&[page], Duration::from_secs(60)).remove(0);
    eprintln!("hls.js, hls_variant master (low latency {low_latency}): {verdict}");
    assert!(
        verdict.contains("\"ok\":true"),
        "hls.js did not play: {verdict}\nconsole:\n{console}\nlog:\n{}",
        server.log()
    );
    assert_eq!(number(&verdict, "levels"), n as f64, "{verdict}");
    let switched = verdict.split("\"switched\":[").nth(1).and_then(|s| s.split(']').next()).unwrap_or_default();
    for level in 0..n {
        assert!(switched.split(',').any(|l| l == level.to_string()), "level {level} never played: {verdict}");
    }
    verdict
}

/// The nginx-rtmp wiki's ABR recipe (`exec ffmpeg` making three renditions, `hls_variant`
/// lines): hls.js plays the master playlist and, forced through its API, each level in turn.
#[test]
fn hlsjs_plays_the_wiki_abr_recipe_master_and_each_level() {
    let dir = TempDir::new("browser-variant");
    let hls = dir.path("hls");
    let server =
        Server::start_with("", &wiki_abr_recipe(&hls).replace("hls_nested on;", "hls_nested on; hls_fragment 1s;"));
    let _publisher = ffmpeg_publish(&format!("rtmp://127.0.0.1:{}/src/x", server.port), 60, 25);
    play_master(&server, &hls, 3, false);
}

/// The same with fMP4 low-latency variants, hls.js in low-latency mode.
#[test]
fn hlsjs_low_latency_mode_plays_an_ll_hls_variant_master_and_each_level() {
    let dir = TempDir::new("browser-variant-ll");
    let hls = dir.path("hls");
    let server = Server::start(&format!(
        "hls on; hls_path {}; hls_fragment 1s; hls_nested on; hls_fragment_type fmp4; hls_low_latency on; \
         hls_variant _low BANDWIDTH=160000; hls_variant _hi BANDWIDTH=640000;",
        hls.display()
    ));
    let _publishers = publish_renditions(&server, &[("_low", "320x180"), ("_hi", "640x360")], 60);
    let verdict = play_master(&server, &hls, 2, true);
    assert!(verdict.contains("\"lowLatency\":true"), "{verdict}");
}

/// The built-in transcode ladder's master (`hls_nested on`: `x.m3u8`, the source `x` and its
/// renditions `x_240p`, `x_180p`): hls.js plays it and, forced through its API, each level.
#[test]
fn hlsjs_plays_the_transcode_ladder_master_and_each_level() {
    let dir = TempDir::new("browser-ladder");
    let hls = dir.path("hls");
    let server = Server::start(&format!(
        "hls on; hls_path {}; hls_nested on; hls_fragment 1s; transcode 240p 300k; transcode 180p 200k;",
        hls.display()
    ));
    let _publisher = ffmpeg_publish_pattern(&server.url("x"), "640x360", 60, 25);
    play_master(&server, &hls, 3, false);
}

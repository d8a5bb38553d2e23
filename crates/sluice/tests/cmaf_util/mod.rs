//! What tests/cmaf.rs and tests/cmaf_browser.rs share: a server with HLS fMP4 and DASH in one
//! application, and reading its MPD.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// A server with HLS fMP4 and DASH on in one application; `extra` adds directives (and may set
/// `hls_fragment`, 1s otherwise).
pub fn shared_server(dir: &TempDir, extra: &str) -> (Server, PathBuf, PathBuf) {
    let (hls, dash) = (dir.path("hls"), dir.path("dash"));
    let fragment = if extra.contains("hls_fragment ") { "" } else { "hls_fragment 1s;" };
    let server = Server::start(&format!(
        "hls on; hls_path {}; {fragment} hls_fragment_type fmp4; dash on; dash_path {}; {extra}",
        hls.display(),
        dash.display()
    ));
    (server, hls, dash)
}

/// An attribute of the first element named `element`.
pub fn attr<'a>(text: &'a str, element: &str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("<{element} "))?;
    let tag = &text[start..start + text[start..].find('>')?];
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// (t, d) of every `<S>` of the AdaptationSet whose template ends in `ext`, `t` filled in.
pub fn timeline(mpd: &str, ext: &str) -> Vec<(u64, u64)> {
    let Some(set) = mpd.split("<AdaptationSet").find(|s| s.contains(&format!("$Time$.{ext}"))) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut next = 0;
    for s in set.split("<S ").skip(1) {
        let s = &format!("<S {s}");
        let t = attr(s, "S", "t").map_or(next, |t| t.parse().unwrap());
        let d: u64 = attr(s, "S", "d").unwrap().parse().unwrap();
        out.push((t, d));
        next = t + d;
    }
    out
}

/// The MPD over HTTP once it lists `min` video segments.
pub fn mpd_with(server: &Server, path: &str, min: usize) -> String {
    wait_for(&format!("{min} segments in {path}"), Duration::from_secs(40), || {
        let (status, text) = http_get(server.http_port, path);
        (status == 200 && timeline(&text, "m4v").len() >= min).then_some(text)
    })
}

/// The `media` template's prefix (`NAME-SESSION-`) of the AdaptationSet for `ext`.
pub fn media_prefix(mpd: &str, ext: &str) -> String {
    let set = mpd.split("<AdaptationSet").find(|s| s.contains(&format!("$Time$.{ext}"))).unwrap();
    let media = attr(set, "SegmentTemplate", "media").unwrap();
    media.trim_end_matches(&format!("$Time$.{ext}")).to_string()
}

/// ffprobe's streams of a URL, each once.
pub fn streams(url: &str) -> Vec<String> {
    let mut s = ffprobe_streams(url);
    s.dedup();
    s
}

/// The file in `dir` that is the same file (inode) as `file`.
pub fn same_file_in(dir: &Path, file: &Path) -> Option<PathBuf> {
    let ino = std::fs::metadata(file).ok()?.ino();
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == ino))
}

pub fn fetch(port: u16, path: &str) -> Vec<u8> {
    let out = run_timeout(
        Command::new("curl").args(["-s", "-f", "--max-time", "20"]).arg(format!("http://127.0.0.1:{port}{path}")),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "GET {path}");
    out.stdout
}

pub fn browser_modules() -> PathBuf {
    let dir = std::env::var_os("SLUICE_BROWSER_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser/node_modules"));
    assert!(
        dir.join(DASHJS).exists() && dir.join(HLSJS).exists() && dir.join("playwright-core").exists(),
        "dashjs, hls.js and playwright-core are not in {}: run scripts/test, which installs them with Chromium",
        dir.display()
    );
    dir
}

pub const DASHJS: &str = "dashjs/dist/dash.all.min.js";
pub const HLSJS: &str = "hls.js/dist/hls.min.js";

/// Opens `page?src=SRC&secs=SECS[&ll=1]` served from `dir` (same origin as the stream) in
/// headless Chromium; its JSON verdict, asserted to have played.
pub fn play(server: &Server, modules: &Path, dir: &Path, location: &str, page: &str, query: &str, secs: u32) -> String {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(here.join(page), dir.join(page)).unwrap();
    let library = if page == "dashjs.html" { DASHJS } else { HLSJS };
    std::fs::copy(modules.join(library), dir.join(Path::new(library).file_name().unwrap())).unwrap();
    let url = format!("http://127.0.0.1:{}/{location}/{page}?{query}&secs={secs}", server.http_port);
    let out = run_timeout(
        Command::new("node")
            .arg(here.join("play.cjs"))
            .arg(&url)
            .env("BROWSER_MODULES", modules)
            .env("PLAY_TIMEOUT_MS", ((secs + 45) * 1000).to_string()),
        Duration::from_secs(u64::from(secs) + 80),
    );
    let verdict = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let console = String::from_utf8_lossy(&out.stderr);
    assert!(
        verdict.contains("\"ok\":true"),
        "{page} did not play: {verdict}\nconsole:\n{console}\nlog:\n{}",
        server.log()
    );
    verdict
}

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

/// ffmpeg publishes `secs` of 640x360 H.264 (a keyframe a second) and AAC to `url` in real
/// time, with no audio frames between `gap.0` and `gap.1` seconds (a muted source).
pub fn publish_with_audio_gap(url: &str, secs: u32, gap: (f64, f64)) -> Proc {
    let secs = secs.to_string();
    let dropout = format!("aselect='not(between(t,{},{}))'", gap.0, gap.1);
    ffmpeg_quiet(&[
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=640x360:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        &secs,
        "-af",
        &dropout,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "25",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        "-f",
        "flv",
        url,
    ])
}

/// Opens `page?src=SRC&secs=SECS[&ll=1]` served from `dir` (same origin as the stream) in
/// headless Chromium; its JSON verdict, asserted to have played.
pub fn play(server: &Server, modules: &Path, dir: &Path, location: &str, page: &str, query: &str, secs: u32) -> String {
    play_as(server, modules, (dir, location), page, query, secs, true)
}

/// [`play`]; not `strict`, a verdict that the media advanced is enough (a low-latency player
/// steering to its target may stall a moment).
pub fn play_as(
    server: &Server,
    modules: &Path,
    (dir, location): (&Path, &str),
    page: &str,
    query: &str,
    secs: u32,
    strict: bool,
) -> String {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(here.join(page), dir.join(page)).unwrap();
    let library = if page == "dashjs.html" { DASHJS } else { HLSJS };
    std::fs::copy(modules.join(library), dir.join(Path::new(library).file_name().unwrap())).unwrap();
    let url = format!("http://127.0.0.1:{}/{location}/{page}?{query}&secs={secs}", server.http_port);
    let (verdicts, console) = chromium_verdicts(modules, &[url], Duration::from_secs(u64::from(secs) + 45));
    let verdict = verdicts.join("\n");
    let played = if strict {
        verdict.contains("\"ok\":true")
    } else {
        !verdict.contains("\"error\"") && verdict.contains("\"advanced\"")
    };
    assert!(played, "{page} did not play: {verdict}\nconsole:\n{console}\nlog:\n{}", server.log());
    verdict
}

/// The directives of a low-latency shared application: 4 s segments (a keyframe every 2 s),
/// LL-HLS parts of 200 ms that DASH sends as chunks.
pub const LOW_LATENCY: &str = "hls_fragment 4s; hls_playlist_length 20s; dash_playlist_length 20s; \
     hls_low_latency on; hls_part_duration 200ms; dash_low_latency on;";

/// The start of a video segment that has just begun being written: the last `<S>` of the MPD
/// (listed at the nominal length once its first chunk is out) the moment a new one appears, not
/// on disk under `dash` yet; with the MPD's `media` prefix.
pub fn segment_in_progress(server: &Server, dash: &Path, mpd_path: &str) -> (String, u64) {
    let mut seen = None;
    wait_for("a video segment beginning", Duration::from_secs(40), || {
        let (status, mpd) = http_get(server.http_port, mpd_path);
        let line = timeline(&mpd, "m4v");
        let (t, _) = *line.last().filter(|_| status == 200 && line.len() >= 2)?;
        let new = seen.is_some_and(|s| s != t);
        seen = Some(t);
        let prefix = media_prefix(&mpd, "m4v");
        (new && !dash.join(format!("{prefix}{t}.m4v")).exists()).then_some((prefix, t))
    })
}

/// The top-level box types of MP4 data.
pub fn mp4_boxes(mut data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while data.len() >= 8 {
        let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&data[4..8]).into_owned());
        if size < 8 || size > data.len() {
            break;
        }
        data = &data[size..];
    }
    out
}

/// A number field of a page's JSON verdict.
pub fn verdict_number(verdict: &str, field: &str) -> Option<f64> {
    let at = verdict.find(&format!("\"{field}\":"))? + field.len() + 3;
    let rest = &verdict[at..];
    rest[..rest.find([',', '}'])?].parse().ok()
}

//! `hls_variant` end to end: three ffmpeg publishers (`x_low`, `x_mid`, `x_hi`, different sizes
//! and bit rates) into one application; the master playlist `x.m3u8` on disk and over HTTP, read
//! back with ffprobe. (hls.js plays a master in `browser.rs`.)

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The renditions: suffix, size, video bit rate, configured BANDWIDTH.
const LADDER: [(&str, &str, &str, u64); 3] =
    [("_low", "320x180", "80k", 160_000), ("_mid", "480x270", "200k", 320_000), ("_hi", "640x360", "400k", 640_000)];

/// (status, body) of a GET.
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

/// ffmpeg publishing a synthetic H.264 + AAC stream of `size` at `bitrate`, 25 fps, 1 s GOP.
fn publish(url: &str, size: &str, bitrate: &str, secs: u32) -> Proc {
    spawn_quiet(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", &format!("testsrc=size={size}:rate=25")])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-t", &secs.to_string()])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p"])
            .args(["-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate, "-g", "25"])
            .args(["-c:a", "aac", "-b:a", "32k", "-f", "flv", url]),
        "ffmpeg is installed",
    )
}

fn publish_ladder(server: &Server, secs: u32) -> Vec<Proc> {
    LADDER.iter().map(|(suffix, size, rate, _)| publish(&server.url(&format!("x{suffix}")), size, rate, secs)).collect()
}

/// The `(attributes, uri)` of each `#EXT-X-STREAM-INF` entry.
fn entries(master: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = master.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.strip_prefix("#EXT-X-STREAM-INF:").map(|a| (a.to_string(), lines[i + 1].to_string())))
        .collect()
}

/// One attribute's value in an attribute list (quoted values kept quoted).
fn attr(list: &str, name: &str) -> Option<String> {
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')? + 2;
            (&after[..end], after[end..].trim_start_matches(','))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        if key == name {
            return Some(value.to_string());
        }
        rest = next;
    }
    None
}

/// The master over HTTP once it lists `n` variants.
fn master_with(server: &Server, path: &str, n: usize) -> String {
    wait_for(server, Duration::from_secs(40), &format!("{n} variants in {path}"), || {
        let (status, body) = http_get(server.http_port, path);
        (status == 200 && entries(&body).len() == n).then_some(body)
    })
}

fn hls_app(hls: &Path, extra: &str, variants: &str) -> String {
    format!("hls on; hls_path {}; hls_fragment 1s; hls_playlist_length 6s; {extra} {variants}", hls.display())
}

const VARIANTS: &str =
    "hls_variant _low BANDWIDTH=160000; hls_variant _mid BANDWIDTH=320000; hls_variant _hi BANDWIDTH=640000;";

/// ffprobe's heights of every video stream it found at `url`.
fn heights(url: &str) -> Vec<u32> {
    let mut h: Vec<u32> = ffprobe_streams(url).iter().filter_map(|l| l.split(',').nth(2)?.parse().ok()).collect();
    h.sort();
    h.dedup();
    h
}

#[test]
fn nested_master_lists_live_variants_by_bandwidth_with_their_measured_attributes() {
    let dir = TempDir::new("variant-nested");
    let hls = dir.path("hls");
    // Listed out of order: the master sorts by BANDWIDTH.
    let variants =
        "hls_variant _hi BANDWIDTH=640000; hls_variant _low BANDWIDTH=160000; hls_variant _mid BANDWIDTH=320000;";
    let server = Server::start(&hls_app(&hls, "hls_nested on;", variants));
    let mut publishers = publish_ladder(&server, 60);

    let master = master_with(&server, "/hls/x.m3u8", 3);
    assert!(master.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n"), "{master}");
    let list = entries(&master);
    for ((attrs, uri), (suffix, size, _, bandwidth)) in list.iter().zip(LADDER) {
        assert!(attrs.starts_with(&format!("PROGRAM-ID=1,BANDWIDTH={bandwidth},")), "{master}");
        assert_eq!(uri, &format!("x{suffix}/index.m3u8"), "{master}");
        assert_eq!(attr(attrs, "RESOLUTION").as_deref(), Some(size), "{master}");
        let codecs = attr(attrs, "CODECS").unwrap_or_default();
        assert!(codecs.starts_with("\"avc1.") && codecs.ends_with(",mp4a.40.2\""), "{master}");
        assert_eq!(attr(attrs, "FRAME-RATE").as_deref(), Some("25.000"), "{master}");
        let average: u64 = attr(attrs, "AVERAGE-BANDWIDTH").and_then(|a| a.parse().ok()).unwrap_or(0);
        assert!((20_000..=bandwidth).contains(&average), "measured from the segments, below BANDWIDTH: {master}");
        assert_eq!(attrs.matches("BANDWIDTH=").count(), 2, "configured BANDWIDTH not repeated: {master}");
    }
    // On disk too, in the top directory (nested playlists are in x_low/ and so on).
    let on_disk = wait_for(&server, Duration::from_secs(10), "the master on disk", || {
        std::fs::read_to_string(hls.join("x.m3u8")).ok().filter(|t| entries(t).len() == 3)
    });
    assert_eq!(
        entries(&on_disk).iter().map(|e| &e.1).collect::<Vec<_>>(),
        list.iter().map(|e| &e.1).collect::<Vec<_>>()
    );
    assert!(!hls.join("x_low/x.m3u8").exists() && hls.join("x_low/index.m3u8").exists());

    // ffprobe reads the master (every variant) and each variant playlist.
    let base = format!("http://127.0.0.1:{}/hls", server.http_port);
    assert_eq!(heights(&format!("{base}/x.m3u8")), [180, 270, 360]);
    for ((_, uri), (_, size, _, _)) in list.iter().zip(LADDER) {
        let height: u32 = size.split('x').nth(1).unwrap().parse().unwrap();
        assert_eq!(heights(&format!("{base}/{uri}")), [height], "{uri}");
    }

    // A rendition that stops leaves the master at once (its playlist still waits for it).
    let _ = publishers[1].0.kill();
    let _ = publishers[1].0.wait();
    let master = master_with(&server, "/hls/x.m3u8", 2);
    assert!(!master.contains("x_mid"), "{master}");
    assert!(master.contains("x_low/index.m3u8") && master.contains("x_hi/index.m3u8"), "{master}");
    wait_for(&server, Duration::from_secs(10), "x_mid out of the master on disk", || {
        std::fs::read_to_string(hls.join("x.m3u8")).ok().filter(|t| !t.contains("x_mid") && entries(t).len() == 2)
    });

    // None left: the master is gone (hls_cleanup on), from memory and disk.
    for p in &mut publishers {
        let _ = p.0.kill();
        let _ = p.0.wait();
    }
    wait_for(&server, Duration::from_secs(10), "the master removed", || {
        (http_get(server.http_port, "/hls/x.m3u8").0 == 404 && !hls.join("x.m3u8").exists()).then_some(())
    });
}

#[test]
fn flat_layout_with_base_url_and_variants_without_configured_bandwidth() {
    let dir = TempDir::new("variant-flat");
    let hls = dir.path("hls");
    // `{http}` is the server's HTTP port: absolute URIs that ffprobe can follow.
    let variants =
        "hls_variant _low BANDWIDTH=160000 RESOLUTION=320x180; hls_variant _mid; hls_variant _hi BANDWIDTH=640000;";
    let server = Server::start(&hls_app(&hls, "hls_base_url http://127.0.0.1:{http}/hls/;", variants));
    let _publishers = publish_ladder(&server, 40);

    let master = master_with(&server, "/hls/x.m3u8", 3);
    let list = entries(&master);
    let uris: Vec<&str> = list.iter().map(|e| e.1.as_str()).collect();
    let base = format!("http://127.0.0.1:{}/hls/", server.http_port);
    assert_eq!(uris, [format!("{base}x_low.m3u8"), format!("{base}x_mid.m3u8"), format!("{base}x_hi.m3u8")]);
    // nginx-rtmp's parameters verbatim, joined with ','; what the config gives is not measured.
    assert!(list[0].0.starts_with("PROGRAM-ID=1,BANDWIDTH=160000,RESOLUTION=320x180,AVERAGE-BANDWIDTH="), "{master}");
    assert_eq!(list[0].0.matches("RESOLUTION=").count(), 1, "{master}");
    // `_mid` has no BANDWIDTH: the measured peak stands in (RFC 8216 requires one).
    let mid: u64 = attr(&list[1].0, "BANDWIDTH").and_then(|b| b.parse().ok()).expect("a measured BANDWIDTH");
    assert!((100_000..640_000).contains(&mid), "{master}");
    assert_eq!(attr(&list[1].0, "RESOLUTION").as_deref(), Some("480x270"), "{master}");
    assert!(hls.join("x.m3u8").exists() && hls.join("x_mid.m3u8").exists());
    assert_eq!(heights(&format!("{base}x.m3u8")), [180, 270, 360]);
}

#[test]
fn fmp4_and_low_latency_variants() {
    let dir = TempDir::new("variant-ll");
    let hls = dir.path("hls");
    let extra = "hls_nested on; hls_fragment_type fmp4; hls_low_latency on; hls_part_duration 200ms;";
    let server = Server::start(&hls_app(&hls, extra, VARIANTS));
    let _publishers = publish_ladder(&server, 40);

    let master = master_with(&server, "/hls/x.m3u8", 3);
    let (_, media) = http_get(server.http_port, "/hls/x_low/index.m3u8");
    let version = |t: &str| t.lines().find_map(|l| l.strip_prefix("#EXT-X-VERSION:")).map(str::to_string);
    assert!(media.contains("#EXT-X-PART-INF") && media.contains("#EXT-X-MAP"), "{media}");
    // One version for master and media (RFC 8216 §7: PROGRAM-ID is gone from version 6).
    assert_eq!(version(&master), version(&media), "{master}\n{media}");
    assert!(master.contains("#EXT-X-INDEPENDENT-SEGMENTS\n"), "{master}");
    for (attrs, _) in entries(&master) {
        assert!(!attrs.contains("PROGRAM-ID"), "{master}");
        assert!(attr(&attrs, "CODECS").is_some_and(|c| c.starts_with("\"avc1.")), "{master}");
    }
    assert_eq!(heights(&format!("http://127.0.0.1:{}/hls/x.m3u8", server.http_port)), [180, 270, 360]);

    // Each low-latency variant reports where the others are (RFC 8216bis §4.4.5.4), and what
    // it reports exists: a blocking request for it is answered at once.
    let media = wait_for(&server, Duration::from_secs(10), "rendition reports in x_low", || {
        let (_, t) = http_get(server.http_port, "/hls/x_low/index.m3u8");
        (t.matches("#EXT-X-RENDITION-REPORT:").count() == 2).then_some(t)
    });
    assert!(!media.contains("URI=\"../x_low/"), "{media}");
    let report = media
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-RENDITION-REPORT:URI=\"../x_hi/index.m3u8\","))
        .unwrap_or_else(|| panic!("no report of x_hi: {media}"));
    let (msn, part) = (attr(report, "LAST-MSN").unwrap(), attr(report, "LAST-PART"));
    let query = format!("_HLS_msn={msn}") + &part.map(|p| format!("&_HLS_part={p}")).unwrap_or_default();
    let asked = Instant::now();
    let (status, hi) = http_get(server.http_port, &format!("/hls/x_hi/index.m3u8?{query}"));
    assert_eq!(status, 200, "{query}: {hi}");
    assert!(asked.elapsed() < Duration::from_millis(500), "{query} exists already: {hi}");
}

/// HEVC renditions (the Enhanced RTMP ffmpeg, libx265) in fMP4: `CODECS` names `hvc1` with the
/// profile, compatibility flags, tier and level of the real HEVCDecoderConfigurationRecord.
#[test]
fn hevc_variants_in_fmp4_name_their_codec() {
    let dir = TempDir::new("variant-hevc");
    let hls = dir.path("hls");
    let variants = "hls_variant _low BANDWIDTH=160000; hls_variant _hi BANDWIDTH=640000;";
    let server = Server::start(&hls_app(&hls, "hls_fragment_type fmp4;", variants));
    let ffmpeg = enhanced_ffmpeg();
    let _publishers: Vec<Proc> = [("_low", "320x180"), ("_hi", "640x360")]
        .iter()
        .map(|(suffix, size)| {
            spawn_quiet(
                Command::new(&ffmpeg)
                    .args(["-hide_banner", "-loglevel", "error", "-re"])
                    .args(["-f", "lavfi", "-i", &format!("testsrc=size={size}:rate=25")])
                    .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "30"])
                    .args(["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=25"])
                    .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "32k", "-f", "flv"])
                    .arg(server.url(&format!("x{suffix}"))),
                "the Enhanced RTMP ffmpeg runs",
            )
        })
        .collect();
    let master = master_with(&server, "/hls/x.m3u8", 2);
    assert!(master.starts_with("#EXTM3U\n#EXT-X-VERSION:6\n"), "{master}");
    for ((attrs, _), size) in entries(&master).iter().zip(["320x180", "640x360"]) {
        // x265 Main profile: general_profile_compatibility_flags 1 and 2 (`6`), main tier.
        let codecs = attr(attrs, "CODECS").unwrap_or_default();
        assert!(codecs.starts_with("\"hvc1.1.6.L") && codecs.ends_with(",mp4a.40.2\""), "{master}");
        assert_eq!(attr(attrs, "RESOLUTION").as_deref(), Some(size), "{master}");
    }
    let streams = ffprobe_streams(&format!("http://127.0.0.1:{}/hls/x.m3u8", server.http_port));
    assert!(streams.iter().any(|s| s.starts_with("hevc,640,360")), "{streams:?}");
}

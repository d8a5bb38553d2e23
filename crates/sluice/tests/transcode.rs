//! The built-in transcode ladder against real ffmpeg: a 1280x720 test pattern published over
//! RTMP, renditions probed over RTMP, HLS segment boundaries compared, the child's pid watched.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    alive, curl, ffmpeg_publish_pattern, ffprobe_streams, run_timeout, spawn_quiet, wait_for, Proc, Server, TempDir,
};

/// The pids of the transcode children started so far, from the log.
fn transcode_pids(server: &Server) -> Vec<i32> {
    server
        .log()
        .lines()
        .filter(|l| l.contains("started transcode"))
        .filter_map(|l| l.split("pid=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}

fn wait_rendition(server: &Server, name: &str) {
    let line = format!("rendition published app=live stream={name}");
    wait_for(&format!("{name} published"), Duration::from_secs(60), || server.log().contains(&line).then_some(()));
}

/// `(height, width, bits per second of video)` of `url`, from 6 s of it copied to a file.
fn measure(url: &str, dir: &TempDir, tag: &str) -> (u32, u32, f64) {
    let file = dir.path(&format!("{tag}.flv"));
    let out = run_timeout(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-rw_timeout", "15000000", "-i", url, "-t", "6", "-map", "0:v"])
            .args(["-c", "copy", "-f", "flv", "-y"])
            .arg(&file),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "recording {url}: {}", String::from_utf8_lossy(&out.stderr));
    let probe = run_timeout(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height:format=duration"])
            .args(["-of", "default=nw=1"])
            .arg(&file),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&probe.stdout).into_owned();
    let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or("0").to_owned();
    let bytes = std::fs::metadata(&file).unwrap().len() as f64;
    let secs: f64 = field("duration").parse().unwrap_or(0.0);
    assert!(secs > 3.0, "{url}: {text}");
    (field("height").parse().unwrap(), field("width").parse().unwrap(), bytes * 8.0 / secs)
}

/// The ladder's renditions are streams at the right heights and bitrates; a rendition is not
/// transcoded again (one ffmpeg for the stream, the renditions skipped by name).
#[test]
fn renditions_have_the_ladders_heights_and_bitrates() {
    let server = Server::start("transcode 480p 800k; transcode 240p 300k;");
    let dir = TempDir::new("tc-ladder");
    let _publisher = ffmpeg_publish_pattern(&server.url("cam"), "1280x720", 40, 50);
    wait_rendition(&server, "cam_480p");
    wait_rendition(&server, "cam_240p");
    let (h, w, bps) = measure(&server.url("cam_480p"), &dir, "480");
    assert_eq!(h, 480);
    assert!((852..=856).contains(&w), "width {w}");
    assert!((200_000.0..1_200_000.0).contains(&bps), "480p at {bps} bit/s for 800k");
    let (h, _, bps) = measure(&server.url("cam_240p"), &dir, "240");
    assert_eq!(h, 240);
    assert!((75_000.0..450_000.0).contains(&bps), "240p at {bps} bit/s for 300k");
    let log = server.log();
    assert_eq!(transcode_pids(&server).len(), 1, "one ffmpeg for the stream:\n{log}");
    for r in ["cam_480p", "cam_240p"] {
        let skipped = format!("a rendition is not transcoded again app=live stream={r}");
        assert!(log.contains(&skipped), "{r} not skipped:\n{log}");
    }
    assert!(!log.contains("stream=cam_480p_"), "{log}");
}

/// The segment ids of a playlist (`hls_fragment_naming timestamp`: the start timestamp) with
/// their durations.
fn segments(playlist: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut duration = String::new();
    for l in playlist.lines() {
        if let Some(d) = l.strip_prefix("#EXTINF:") {
            duration = d.trim_end_matches(',').to_owned();
        } else if l.ends_with(".ts") {
            let id = l.trim_end_matches(".ts").rsplit('-').next().unwrap().parse().unwrap();
            out.push((id, duration.clone()));
        }
    }
    out
}

/// With `hls_fragment_slicing aligned`, every rendition's segments start at the source's
/// times: same start timestamps, same durations (but the last, where each stream ends).
#[test]
fn rendition_segments_start_where_the_sources_do() {
    let dir = TempDir::new("tc-hls");
    let hls = dir.path("hls");
    let body = format!(
        "hls on; hls_path {}; hls_fragment 2s; hls_playlist_length 30s; hls_fragment_slicing aligned; hls_fragment_naming timestamp; transcode 360p 500k; transcode 240p 300k;",
        hls.display()
    );
    let server = Server::start(&body);
    let mut publisher = ffmpeg_publish_pattern(&server.url("cam"), "1280x720", 16, 25);
    wait_rendition(&server, "cam_360p");
    common::wait_timeout(&mut publisher.0, Duration::from_secs(60)).expect("the publisher ends");
    for name in ["cam_360p", "cam_240p"] {
        let gone = format!("{name} unpublished");
        wait_for(&gone, Duration::from_secs(20), || server.log().contains(&gone).then_some(()));
    }
    // The playlists wait `hls_playlist_length` for the publisher to come back before they end:
    // read the segments closed so far.
    std::thread::sleep(Duration::from_millis(500));
    let read = |name: &str| std::fs::read_to_string(hls.join(format!("{name}.m3u8"))).unwrap();
    let source = segments(&read("cam"));
    for name in ["cam_360p", "cam_240p"] {
        let rendition = segments(&read(name));
        assert!(rendition.len() >= 4, "{name}: {rendition:?}");
        for (i, (id, duration)) in rendition.iter().enumerate() {
            let same = source.iter().find(|(s, _)| s == id);
            let Some((_, source_duration)) = same else { panic!("{name} segment at {id} is not in {source:?}") };
            // The last one ends where each stream's last frame is.
            if i + 1 < rendition.len() {
                assert_eq!(duration, source_duration, "{name} at {id}");
            }
        }
    }
}

/// The ffmpeg child is respawned when it dies while the stream is live, and gone within 2 s of
/// the publisher's end, its rendition streams unpublished.
#[test]
fn the_child_is_respawned_then_stopped_with_the_publisher() {
    let server = Server::start("transcode 240p 300k; respawn_timeout 1s;");
    let mut publisher = ffmpeg_publish_pattern(&server.url("cam"), "640x360", 60, 25);
    wait_rendition(&server, "cam_240p");
    let first = transcode_pids(&server)[0];
    Command::new("kill").args(["-KILL", &first.to_string()]).status().unwrap();
    let second = wait_for("a respawned ffmpeg", Duration::from_secs(30), || transcode_pids(&server).get(1).copied());
    assert_ne!(first, second);
    wait_for("the rendition back", Duration::from_secs(60), || {
        (server.log().matches("rendition published app=live stream=cam_240p").count() == 2).then_some(())
    });
    assert!(alive(second));
    let _ = publisher.0.kill();
    let _ = publisher.0.wait();
    let stopped = Instant::now();
    wait_for("the ffmpeg child gone", Duration::from_secs(10), || (!alive(second)).then_some(()));
    assert!(stopped.elapsed() < Duration::from_secs(2), "gone after {:?}", stopped.elapsed());
    wait_for("cam_240p unpublished", Duration::from_secs(5), || {
        (server.log().matches("cam_240p unpublished").count() == 2).then_some(())
    });
}

/// `transcode_max 1`: a second stream gets no renditions, and says so once.
#[test]
fn past_transcode_max_a_stream_gets_the_source_only() {
    let server = Server::start("transcode 240p 300k; transcode_max 1;");
    let _a = ffmpeg_publish_pattern(&server.url("cam"), "640x360", 30, 25);
    wait_rendition(&server, "cam_240p");
    let _b = ffmpeg_publish_pattern(&server.url("cam2"), "640x360", 30, 25);
    let refused = "transcode: not transcoded, transcode_max streams are being transcoded";
    wait_for("the refusal", Duration::from_secs(30), || {
        server.log().lines().any(|l| l.contains(refused) && l.contains("stream=cam2")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let log = server.log();
    assert_eq!(log.matches(refused).count(), 1, "{log}");
    assert_eq!(transcode_pids(&server).len(), 1, "{log}");
    assert!(!log.contains("stream=cam2_240p"), "{log}");
}

/// A 1280x720 test pattern at a constant 2.5 Mbit/s (filler data: the pattern alone compresses
/// below the renditions' rates), 25 fps, 1 s GOP.
fn publish_cbr_720p(url: &str, secs: u32) -> Proc {
    spawn_quiet(
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc=size=1280x720:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-t", &secs.to_string()])
            .args([
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
            ])
            .args(["-b:v", "2500k", "-minrate", "2500k", "-maxrate", "2500k", "-bufsize", "2500k"])
            .args(["-x264-params", "nal-hrd=cbr", "-c:a", "aac", "-b:a", "64k", "-f", "flv", url]),
        "ffmpeg is installed",
    )
}

/// The `(attributes, uri)` of each `#EXT-X-STREAM-INF` entry of a master playlist.
fn entries(master: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = master.lines().collect();
    let at = |i: usize| lines.get(i).copied().unwrap_or_default().to_owned();
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| Some((l.strip_prefix("#EXT-X-STREAM-INF:")?.to_owned(), at(i + 1))))
        .collect()
}

/// An unquoted attribute's value (`BANDWIDTH`, `RESOLUTION`).
fn attr<'a>(list: &'a str, name: &str) -> &'a str {
    list.split(',').find_map(|a| a.strip_prefix(name)?.strip_prefix('=')).unwrap_or_else(|| panic!("{name} in {list}"))
}

/// The master at `url` once it lists `n` variants.
fn master_with(server: &Server, url: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = curl(url);
        if status == 200 && entries(&body).len() == n {
            return body;
        }
        assert!(Instant::now() < deadline, "no {n} variants in {url}: {status} {body}\nlog:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// With `hls_nested on` the ladder's master is `NAME.m3u8` (the media playlists are
/// `NAME/index.m3u8`, `NAME_480p/index.m3u8`): the source and its renditions with their measured
/// resolutions, ordered by BANDWIDTH (lowest first, so the source last), each rendition's at
/// least its configured video + audio bit rate plus 10 %; ffprobe plays it; the banner names its
/// URL; it goes when the publisher stops.
#[test]
fn the_nested_ladder_master_lists_the_source_and_its_renditions() {
    let dir = TempDir::new("tc-master");
    let hls = dir.path("hls");
    let body = format!(
        "hls on; hls_path {}; hls_nested on; hls_fragment 1s; hls_playlist_length 4s; transcode 480p 800k; transcode 240p 300k;",
        hls.display()
    );
    let server = Server::start(&body);
    let mut publisher = publish_cbr_720p(&server.url("cam"), 60);
    let url = format!("http://127.0.0.1:{}/hls/cam.m3u8", server.http_port);
    let master = master_with(&server, &url, 3);
    eprintln!("the ladder's master:\n{master}");
    let list = entries(&master);
    let uris: Vec<&str> = list.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(uris, ["cam_240p/index.m3u8", "cam_480p/index.m3u8", "cam/index.m3u8"], "{master}");
    let resolutions: Vec<&str> = list.iter().map(|e| attr(&e.0, "RESOLUTION")).collect();
    assert_eq!(resolutions, ["426x240", "854x480", "1280x720"], "{master}");
    let bandwidth: Vec<u64> = list.iter().map(|e| attr(&e.0, "BANDWIDTH").parse().unwrap()).collect();
    // (300k + 128k) and (800k + 128k) of AAC, plus 10 %.
    assert!(bandwidth[0] >= 470_800 && bandwidth[1] >= 1_020_800, "{master}");
    assert!(bandwidth.windows(2).all(|w| w[0] <= w[1]), "{master}");
    assert!(list.iter().all(|e| e.0.contains("CODECS=\"avc1.") && e.0.contains("FRAME-RATE=25.000")), "{master}");
    assert!(hls.join("cam/index.m3u8").exists() && !hls.join("cam_abr.m3u8").exists());
    let on_disk = wait_for("the master on disk", Duration::from_secs(10), || {
        std::fs::read_to_string(hls.join("cam.m3u8")).ok().filter(|t| entries(t).len() == 3)
    });
    assert_eq!(entries(&on_disk).iter().map(|e| e.1.as_str()).collect::<Vec<_>>(), uris);
    let mut heights: Vec<u32> =
        ffprobe_streams(&url).iter().filter_map(|l| l.split(',').nth(2)?.parse().ok()).collect();
    heights.sort();
    heights.dedup();
    assert_eq!(heights, [240, 480, 720], "ffprobe reads every variant of the master");
    let banner = format!("abr:     http://127.0.0.1:{}/hls/STREAM.m3u8", server.http_port);
    assert!(server.log().contains(&banner), "{}", server.log());

    let _ = publisher.0.kill();
    let _ = publisher.0.wait();
    wait_for("the master removed", Duration::from_secs(20), || {
        (curl(&url).0 == 404 && !hls.join("cam.m3u8").exists()).then_some(())
    });
}

/// With the flat layout the master is `NAME_abr.m3u8` (`NAME.m3u8` is the source's media
/// playlist); a rendition not below the source's height is never listed.
#[test]
fn the_flat_ladder_master_is_name_abr_and_lists_only_live_renditions() {
    let dir = TempDir::new("tc-master-flat");
    let hls = dir.path("hls");
    let body =
        format!("hls on; hls_path {}; hls_fragment 1s; transcode 360p 500k; transcode 180p 200k;", hls.display());
    let server = Server::start(&body);
    let _publisher = ffmpeg_publish_pattern(&server.url("cam"), "640x360", 40, 25);
    let url = format!("http://127.0.0.1:{}/hls/cam_abr.m3u8", server.http_port);
    let master = master_with(&server, &url, 2);
    let mut uris: Vec<String> = entries(&master).into_iter().map(|e| e.1).collect();
    uris.sort();
    assert_eq!(uris, ["cam.m3u8", "cam_180p.m3u8"], "{master}");
    assert!(master.contains("RESOLUTION=320x180") && master.contains("RESOLUTION=640x360"), "{master}");
    let (status, media) = curl(&format!("http://127.0.0.1:{}/hls/cam.m3u8", server.http_port));
    assert!(status == 200 && media.contains("#EXTINF"), "the source's media playlist: {media}");
    assert!(server.log().contains("360p skipped"), "{}", server.log());
    // Segments later, still the same two.
    std::thread::sleep(Duration::from_secs(3));
    let (_, master) = curl(&url);
    assert_eq!(entries(&master).len(), 2, "{master}");
    let banner = format!("abr:     http://127.0.0.1:{}/hls/STREAM_abr.m3u8", server.http_port);
    assert!(server.log().contains(&banner), "{}", server.log());
}

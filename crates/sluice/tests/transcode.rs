//! The built-in transcode ladder against real ffmpeg: a 1280x720 test pattern published over
//! RTMP, renditions probed over RTMP, HLS segment boundaries compared, the child's pid watched.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{ffmpeg_publish_pattern, run_timeout, Server, TempDir};

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` is a live process (a zombie counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

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

//! nginx-rtmp's `pull` against real peers: an edge sluice pulls from nginx-rtmp (Debian's nginx
//! with libnginx-mod-rtmp, private prefix) and from a second sluice; ffmpeg publishes to the
//! origin and plays the edge; ffprobe counts what arrived.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const NGINX_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// nginx-rtmp on a free port, run in the foreground with its files in a temporary directory.
struct Nginx {
    _proc: Proc,
    port: u16,
    dir: TempDir,
}

impl Nginx {
    fn start(app_body: &str) -> Nginx {
        let dir = TempDir::new("nginx");
        let port = free_port();
        std::fs::create_dir_all(dir.path("logs")).unwrap();
        let conf = format!(
            "load_module {NGINX_MODULE};
worker_processes 1;
daemon off;
master_process off;
error_log {err} info;
pid {pid};
events {{ worker_connections 256; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        access_log off;
        application live {{ live on; {app_body} }}
    }}
}}
",
            err = dir.path("error.log").display(),
            pid = dir.path("nginx.pid").display(),
        );
        std::fs::write(dir.path("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(dir.path("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (scripts/test installs nginx and libnginx-mod-rtmp)");
        let nginx = Nginx { _proc: Proc(child), port, dir };
        poll("nginx listening", Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", port)).is_ok());
        nginx
    }

    fn url(&self, name: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{name}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("error.log")).unwrap_or_default()
    }
}

/// A sluice on a given RTMP port (to restart an origin where its edge expects it).
fn sluice_on(port: u16, app_body: &str) -> Server {
    Server::start_conf_on(
        port,
        &format!("rtmp {{ http_listen off; server {{ listen 127.0.0.1:{{rtmp}}; application live {{ live on; {app_body} }} }} }}\n"),
    )
}

/// An edge sluice whose application `live` pulls with `pull_line`, plus `app_extra`.
fn edge(pull_line: &str, app_extra: &str) -> Server {
    Server::start_conf(&format!(
        "rtmp {{ server {{ listen 127.0.0.1:{{rtmp}}; application live {{ live on; {pull_line} {app_extra} }} }} }}
http {{ server {{ listen 127.0.0.1:{{http}}; location /control {{ rtmp_control all; }} }} }}
"
    ))
}

/// Publish a `size` test pattern (H.264 + AAC, a keyframe a second) in real time.
fn publish(url: &str, size: &str, secs: u32) -> Proc {
    ffmpeg_publish_pattern(url, size, secs, 25)
}

/// An ffmpeg player copying `secs` seconds of `url` into the FLV file `out`.
fn record_play(url: &str, secs: u32, out: &Path) -> Proc {
    spawn_quiet(
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-rw_timeout", "30000000", "-i", url])
            .args(["-t", &secs.to_string(), "-c", "copy", "-f", "flv", "-y"])
            .arg(out),
        "ffmpeg is installed",
    )
}

/// Decoded video frames of a file or URL, counted by ffprobe.
fn video_frames(input: &str) -> usize {
    let out = run_timeout(
        Command::new("ffprobe").args(["-v", "error", "-select_streams", "v", "-count_frames"]).args([
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            input,
        ]),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().unwrap_or("").trim().trim_end_matches(',').parse().unwrap_or(0)
}

/// Waits for `p` to exit by itself.
fn finishes(p: &mut Proc, limit: Duration) {
    assert!(wait_timeout(&mut p.0, limit).is_some(), "the player ends by itself");
}

/// Lines of `log` containing `what`.
fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

/// The first player of a stream nobody publishes on the edge starts a pull from nginx-rtmp;
/// ffprobe decodes the pulled stream from the edge.
#[test]
fn pulls_from_nginx_rtmp() {
    let origin = Nginx::start("");
    let _publisher = publish(&origin.url("cam"), "320x240", 60);
    poll("nginx-rtmp publishing", Duration::from_secs(20), || origin.log().contains("publish: name='cam'"));
    let edge = edge(&format!("pull rtmp://127.0.0.1:{}/live;", origin.port), "");
    let dir = TempDir::new("pull-nginx");
    let out = dir.path("played.flv");
    let mut player = record_play(&edge.url("cam"), 4, &out);
    finishes(&mut player, Duration::from_secs(60));
    assert_eq!(ffprobe_streams(out.to_str().unwrap()), ["aac", "h264,320,240"], "log:\n{}", edge.log());
    let frames = video_frames(out.to_str().unwrap());
    assert!(frames >= 50, "{frames} frames in 4 s; edge log:\n{}", edge.log());
    assert!(edge.log().contains("pull started"), "{}", edge.log());
    assert!(origin.log().contains("play: name='cam'"), "nginx-rtmp served the edge's play:\n{}", origin.log());
}

/// Pulling from a second sluice: two players share one upstream connection, which closes when
/// the last one leaves; the pull is a relay publisher in the edge's clients registry, dropped
/// through `/control/drop/publisher` (which drops its players too, as nginx-rtmp).
#[test]
fn pulls_from_sluice_one_upstream_for_two_players_closed_after_the_last() {
    let origin = Server::start("");
    let _publisher = publish(&origin.url("cam"), "320x240", 90);
    wait_published(&origin, "cam");
    let edge = edge(&format!("pull rtmp://127.0.0.1:{}/live;", origin.port), "");
    let dir = TempDir::new("pull-sluice");
    let (a, b) = (dir.path("a.flv"), dir.path("b.flv"));
    let mut first = record_play(&edge.url("cam"), 6, &a);
    poll("the pull", Duration::from_secs(30), || edge.log().contains("pull started"));
    let mut second = record_play(&edge.url("cam"), 3, &b);
    finishes(&mut second, Duration::from_secs(60));
    finishes(&mut first, Duration::from_secs(60));
    for (file, min) in [(&a, 75), (&b, 40)] {
        let frames = video_frames(file.to_str().unwrap());
        assert!(frames >= min, "{} has {frames} frames; edge log:\n{}", file.display(), edge.log());
    }
    // One play reached the origin, and its connection closed after the last player left.
    poll("the upstream to close", Duration::from_secs(20), || edge.log().contains("pull stopped: no players left"));
    let log = origin.log();
    let edge_plays: Vec<&str> = log.lines().filter(|l| l.contains(" play ") && l.contains("stream=cam")).collect();
    assert_eq!(edge_plays.len(), 1, "one upstream play for two players:\n{log}");
    let peer = edge_plays[0].split("client=").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_owned();
    poll("the origin to see the edge leave", Duration::from_secs(20), || {
        origin.log().lines().any(|l| l.contains(&format!("client={peer}")) && l.contains("disconnect"))
    });
    assert_eq!(count(&edge.log(), "pull: playing the remote"), 1, "{}", edge.log());

    // A new player starts a new pull; control drops it (and its player) as a relay publisher.
    let mut third = record_play(&edge.url("cam"), 60, &dir.path("c.flv"));
    poll("the second pull", Duration::from_secs(30), || count(&edge.log(), "pull started") == 2);
    let url = format!("http://127.0.0.1:{}/control/drop/publisher?app=live&name=cam", edge.http_port);
    let out =
        run_timeout(Command::new("curl").args(["-s", "-S", "--max-time", "10"]).arg(&url), Duration::from_secs(20));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1", "one relay publisher dropped");
    poll("the pull dropped", Duration::from_secs(20), || edge.log().contains("pull dropped by control"));
    finishes(&mut third, Duration::from_secs(20));
}

/// A static pull starts with the edge, and its player keeps playing across the origin's death:
/// the origin sluice is killed and started again on the same port with another publisher, and
/// the same ffmpeg player decodes both. The failures in between are logged once, not per retry.
#[test]
fn a_static_pull_brings_the_stream_back_after_the_origin_restarts() {
    let port = free_port();
    let origin = sluice_on(port, "");
    let url = format!("rtmp://127.0.0.1:{port}/live/cam");
    let first = publish(&url, "320x240", 120);
    wait_published(&origin, "cam");
    let edge = edge(&format!("pull rtmp://127.0.0.1:{port}/live/cam name=cam static;"), "pull_reconnect 500ms;");
    poll("the static pull", Duration::from_secs(30), || edge.log().contains("pull started"));
    let dir = TempDir::new("pull-static");
    let log = dir.path("ffmpeg.log");
    let _player = showinfo_player(&edge.url("cam"), &log);
    poll("the player decoding the first origin", Duration::from_secs(30), || {
        showinfo_sizes(&log).get("320x240").is_some_and(|&n| n >= 25)
    });

    drop((origin, first));
    poll("the pull to notice", Duration::from_secs(20), || edge.log().contains("static pull ended"));
    // Several retries fail while the origin is away.
    std::thread::sleep(Duration::from_secs(3));
    let origin = sluice_on(port, "");
    let _second = publish(&url, "160x120", 60);
    wait_published(&origin, "cam");
    poll("the player decoding the restarted origin", Duration::from_secs(40), || {
        showinfo_sizes(&log).get("160x120").is_some_and(|&n| n >= 25)
    });
    let edge_log = edge.log();
    assert!(count(&edge_log, "static pull failed again") >= 2, "retries while the origin was away:\n{edge_log}");
    assert_eq!(count(&edge_log, "static pull failed:"), 1, "one line for the same failure:\n{edge_log}");
    assert_eq!(count(&edge_log, "pull started"), 2, "{edge_log}");
}

/// A pulled stream is a published stream: HLS and `record all` work on it.
#[test]
fn a_pulled_stream_gets_hls_and_a_recording() {
    let origin = Server::start("");
    let _publisher = publish(&origin.url("cam"), "320x240", 90);
    wait_published(&origin, "cam");
    let dir = TempDir::new("pull-outputs");
    let (hls, rec) = (dir.path("hls"), dir.path("rec"));
    std::fs::create_dir_all(&rec).unwrap();
    let extra = format!(
        "hls on; hls_path {}; hls_fragment 1s; hls_playlist_length 10s; record all; record_path {};",
        hls.display(),
        rec.display()
    );
    let edge = edge(&format!("pull rtmp://127.0.0.1:{}/live;", origin.port), &extra);
    let mut player = record_play(&edge.url("cam"), 8, &dir.path("played.flv"));
    let playlist = hls.join("cam.m3u8");
    poll("three HLS segments", Duration::from_secs(40), || {
        std::fs::read_to_string(&playlist).is_ok_and(|p| p.matches("#EXTINF").count() >= 3)
    });
    // ffprobe lists an HLS stream once per program too.
    let mut streams = ffprobe_streams(playlist.to_str().unwrap());
    streams.dedup();
    assert_eq!(streams, ["aac", "h264,320,240"]);
    let text = std::fs::read_to_string(&playlist).unwrap();
    let segment = hls.join(text.lines().find(|l| l.ends_with(".ts")).expect("a segment"));
    let frames = video_frames(segment.to_str().unwrap());
    assert!(frames >= 20, "{frames} frames in {}; edge log:\n{}", segment.display(), edge.log());
    finishes(&mut player, Duration::from_secs(60));
    poll("the pull to stop", Duration::from_secs(20), || edge.log().contains("pull stopped: no players left"));
    let recording = poll_file(&rec, "flv");
    assert_eq!(ffprobe_streams(recording.to_str().unwrap()), ["aac", "h264,320,240"]);
    let frames = video_frames(recording.to_str().unwrap());
    assert!(frames >= 100, "{frames} frames recorded; edge log:\n{}", edge.log());
}

/// The first file with extension `ext` in `dir`, once the recorder closed it.
fn poll_file(dir: &Path, ext: &str) -> PathBuf {
    let mut found = None;
    poll("a recording", Duration::from_secs(20), || {
        found = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == ext) && file_exists_nonempty(p));
        found.is_some()
    });
    found.unwrap()
}

/// nginx-rtmp's `on_play` answering 3xx with an `rtmp://` location: the edge pulls the stream
/// from there (no `pull` line needed) and plays it under the asked name
/// (`notify_relay_redirect off`). Before: the play was refused ("relays are not implemented").
#[test]
fn an_on_play_redirect_to_rtmp_pulls_from_there() {
    let origin = Server::start("");
    let _publisher = publish(&origin.url("cam"), "320x240", 60);
    wait_published(&origin, "cam");
    let backend = redirecting_backend(origin.url("cam"));
    let edge = edge("", &format!("on_play http://127.0.0.1:{backend}/play;"));
    let dir = TempDir::new("pull-redirect");
    let out = dir.path("x.flv");
    let mut player = record_play(&edge.url("asked"), 3, &out);
    finishes(&mut player, Duration::from_secs(60));
    let frames = video_frames(out.to_str().unwrap());
    assert!(frames >= 40, "{frames} frames through the redirect's pull; edge log:\n{}", edge.log());
    assert!(edge.log().contains("play relayed by on_play"), "{}", edge.log());
    poll("the pull to stop after its player", Duration::from_secs(20), || {
        edge.log().contains("pull stopped: no players left")
    });
}

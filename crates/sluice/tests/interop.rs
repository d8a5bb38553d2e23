//! Interop: the real server against real clients (ffmpeg, ffprobe, rtmpdump, GStreamer) run as
//! subprocesses.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn ffmpeg_publish_ffprobe_play() {
    let server = Server::start("");
    let _publisher = ffmpeg_publish(&server.url("cam"), 20, 50);
    wait_published(&server, "cam");
    let streams = ffprobe_streams(&server.url("cam"));
    assert_eq!(streams, vec!["aac".to_string(), "h264,640,360".to_string()], "log:\n{}", server.log());
    // The sequence headers were parsed for stats and logs.
    let log = server.log();
    assert!(log.contains("video: H264") && log.contains("640x360") && log.contains("audio: AAC 44100 Hz"), "{log}");
}

#[test]
fn rtmpdump_records_playable_flv() {
    let server = Server::start("");
    let _publisher = ffmpeg_publish(&server.url("dump"), 20, 25);
    wait_published(&server, "dump");
    let out = server.dir.path("out.flv");
    let dump = run_timeout(
        // The player stays subscribed after the publisher ends (as with nginx-rtmp): rtmpdump
        // stops when nothing arrived for 3 s (-m).
        Command::new("rtmpdump").args(["-v", "-r", &server.url("dump"), "-B", "3", "-m", "3", "-o"]).arg(&out),
        Duration::from_secs(45),
    );
    assert!(file_exists_nonempty(&out), "rtmpdump wrote nothing: {}", String::from_utf8_lossy(&dump.stderr));
    let streams = ffprobe_streams(out.to_str().unwrap());
    assert_eq!(streams, vec!["aac".to_string(), "h264,640,360".to_string()]);
}

fn gstreamer_play(element: &str) {
    let server = Server::start("");
    let _publisher = ffmpeg_publish(&server.url("gst"), 20, 25);
    wait_published(&server, "gst");
    let out = server.dir.path("gst.flv");
    let location = match element {
        // librtmp reads "live=1" from the location to play a live stream.
        "rtmpsrc" => format!("{} live=1", server.url("gst")),
        _ => server.url("gst"),
    };
    let run = run_timeout(
        Command::new("gst-launch-1.0")
            .args(["-q", element, &format!("location={location}"), "num-buffers=60", "!", "filesink"])
            .arg(format!("location={}", out.display())),
        Duration::from_secs(30),
    );
    assert!(run.status.success(), "{element} failed: {}", String::from_utf8_lossy(&run.stderr));
    let streams = ffprobe_streams(out.to_str().unwrap());
    assert!(streams.contains(&"h264,640,360".to_string()), "{element} got {streams:?}");
}

#[test]
fn gstreamer_rtmp2src_plays() {
    gstreamer_play("rtmp2src");
}

#[test]
fn gstreamer_rtmpsrc_plays() {
    gstreamer_play("rtmpsrc");
}

#[test]
fn ffmpeg_relay_to_second_name_and_two_streams_at_once() {
    let server = Server::start("");
    let _a = ffmpeg_publish(&server.url("a"), 25, 25);
    wait_published(&server, "a");
    let _relay = Proc(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-i",
                &server.url("a"),
                "-c",
                "copy",
                "-f",
                "flv",
                &server.url("copy"),
            ])
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_published(&server, "copy");
    let streams = ffprobe_streams(&server.url("copy"));
    assert_eq!(streams, vec!["aac".to_string(), "h264,640,360".to_string()]);
    // The original keeps playing beside its copy.
    assert_eq!(ffprobe_streams(&server.url("a")), streams);
}

#[test]
fn seed_configs_pass_config_test() {
    let dir = TempDir::new("seed");
    let base = "worker_processes  auto;\nevents {\n    worker_connections  1024;\n}\n\nrtmp {\n    server {\n        listen 1935;\n        chunk_size 4096;\n\n        application live {\n            live on;\n            record off;\n            EXTRA\n        }\n    }\n}\n";
    for extra in [
        "",
        "hls on; hls_path /tmp/hls; hls_fragment 3s;",
        "record all; record_path /tmp/recordings; record_unique on;",
    ] {
        let path = dir.path("nginx.conf");
        std::fs::write(&path, base.replace("EXTRA", extra)).unwrap();
        let out = run_timeout(Command::new(sluice_bin()).arg("-t").arg("-c").arg(&path), Duration::from_secs(10));
        assert!(out.status.success(), "{extra}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn config_test_reports_file_line_col() {
    let dir = TempDir::new("bad");
    let path = dir.path("bad.conf");
    std::fs::write(&path, "rtmp {\n    server {\n        chunk_sise 4096;\n    }\n}\n").unwrap();
    let out = run_timeout(Command::new(sluice_bin()).arg("-t").arg("-c").arg(&path), Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3:9:", path.display())), "{err}");
    assert!(err.contains("chunk_size"), "suggests the closest name: {err}");
}

#[test]
fn cli_help_version_and_default_config() {
    let help = run_timeout(Command::new(sluice_bin()).arg("-h"), Duration::from_secs(10));
    assert!(help.status.success() && String::from_utf8_lossy(&help.stdout).contains("-c FILE"));
    let v = run_timeout(Command::new(sluice_bin()).arg("-V"), Duration::from_secs(10));
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("sluice "));
    let d = run_timeout(Command::new(sluice_bin()).arg("--print-default-config"), Duration::from_secs(10));
    let text = String::from_utf8_lossy(&d.stdout);
    assert!(text.contains("listen 1935") && text.contains("application live") && text.contains("8080"), "{text}");
}

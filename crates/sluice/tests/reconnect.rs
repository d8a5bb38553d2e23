//! A publisher that drops and comes back under the same name keeps its players, as with
//! nginx-rtmp: the statuses `publish_notify`/`play_restart` add (read with our own client), and
//! real players (ffmpeg, rtmpdump, GStreamer) that play frames from both publishers.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use rtmp::message::user_control;
use rtmp::{ClientEvent, MediaKind, Role};
use sluice::client::RtmpClient;

const AVC_SEQ_1: &[u8] = &[
    0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02,
    0x68, 0xee,
];
/// Another encoder's configuration (level 4.0): players must get it before its frames.
const AVC_SEQ_2: &[u8] = &[
    0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x28, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x28, 0x01, 0x00, 0x02,
    0x68, 0xee,
];

fn avc_frame(key: bool) -> Vec<u8> {
    let mut v = vec![if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
    v.resize(64, 0xAB);
    v
}

async fn publisher(server: &Server, name: &str) -> RtmpClient {
    let mut c = RtmpClient::connect(server.addr(), "live", Role::Publish(name.into())).await.unwrap();
    assert_eq!(c.next_status().await.unwrap(), "NetStream.Publish.Start");
    c
}

/// The first publisher: sequence header and a keyframe at 5 s into its timeline.
async fn first_publisher(server: &Server, name: &str) -> RtmpClient {
    let mut c = publisher(server, name).await;
    c.send_media(MediaKind::Video, 5000, AVC_SEQ_1).await.unwrap();
    c.send_media(MediaKind::Video, 5000, &avc_frame(true)).await.unwrap();
    c
}

/// A player that has received the first publisher's keyframe.
async fn player_of_first(server: &Server, name: &str) -> RtmpClient {
    let mut p = RtmpClient::connect(server.addr(), "live", Role::Play(name.into())).await.unwrap();
    let got_key = async {
        loop {
            if let ClientEvent::Media { kind: MediaKind::Video, payload, .. } = p.next_event().await.unwrap() {
                if payload[..2] == [0x17, 0x01] {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), got_key).await.expect("the first publisher's keyframe");
    p
}

/// The second publisher: metadata, a new sequence header, an inter frame (a player waits for
/// a keyframe: `wait_key`), a keyframe and an inter frame, its timeline restarting at 0.
async fn second_publisher(server: &Server, name: &str) -> RtmpClient {
    let mut c = publisher(server, name).await;
    let meta = amf0::Value::EcmaArray(vec![("width".into(), amf0::Value::Number(160.0))]);
    c.send_metadata(meta).await.unwrap();
    c.send_media(MediaKind::Video, 0, AVC_SEQ_2).await.unwrap();
    c.send_media(MediaKind::Video, 0, &avc_frame(false)).await.unwrap();
    c.send_media(MediaKind::Video, 0, &avc_frame(true)).await.unwrap();
    c.send_media(MediaKind::Video, 40, &avc_frame(false)).await.unwrap();
    c
}

/// One event as a short word, for comparing sequences.
fn describe(ev: &ClientEvent) -> String {
    match ev {
        ClientEvent::StreamControl(user_control::STREAM_BEGIN, 1) => "begin".into(),
        ClientEvent::StreamControl(user_control::STREAM_EOF, 1) => "eof".into(),
        ClientEvent::StreamControl(e, id) => format!("control {e} {id}"),
        ClientEvent::Status { level, code, description } => format!("{level} {code} ({description})"),
        ClientEvent::Media { kind: MediaKind::Data, payload, .. } => {
            let values = amf0::decode_all(payload).unwrap_or_default();
            format!("data {}", values.first().and_then(amf0::Value::as_str).unwrap_or("?"))
        }
        ClientEvent::Media { kind: MediaKind::Video, timestamp, payload } => match (payload[0], payload[1]) {
            (0x17, 0) if payload[..] == *AVC_SEQ_2 => format!("new header @{timestamp}"),
            (0x17, 0) => format!("old header @{timestamp}"),
            (0x17, _) => format!("key @{timestamp}"),
            _ => format!("inter @{timestamp}"),
        },
        other => format!("{other:?}"),
    }
}

/// Everything a player of `name` receives while its publisher leaves and another one comes.
async fn events_across_a_reconnect(app_body: &str) -> Vec<String> {
    let server = Server::start(app_body);
    let first = first_publisher(&server, "re").await;
    let mut p = player_of_first(&server, "re").await;
    drop(first);
    // The player sees the stream end before the next publisher may start it again.
    let mut seen = Vec::new();
    let until_eof = async {
        loop {
            let ev = describe(&p.next_event().await.unwrap());
            let eof = ev == "eof";
            seen.push(ev);
            if eof {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), until_eof).await.expect("Stream EOF after the publisher left");
    let _second = second_publisher(&server, "re").await;
    let until_last_frame = async {
        loop {
            let ev = describe(&p.next_event().await.unwrap());
            let last = ev == "inter @40";
            seen.push(ev);
            if last {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), until_last_frame)
        .await
        .unwrap_or_else(|_| panic!("the second publisher's frames; got {seen:?}"));
    seen
}

#[tokio::test]
async fn by_default_players_get_only_stream_eof_and_stream_begin_and_keep_playing() {
    let got = events_across_a_reconnect("").await;
    assert_eq!(got, ["eof", "begin", "data onMetaData", "new header @0", "key @0", "inter @40"]);
}

#[tokio::test]
async fn publish_notify_sends_unpublish_and_publish_notify_as_nginx_rtmp() {
    let got = events_across_a_reconnect("publish_notify on;").await;
    assert_eq!(
        got,
        [
            "eof",
            "status NetStream.Play.UnpublishNotify (Stop publishing)",
            "begin",
            "status NetStream.Play.PublishNotify (Start publishing)",
            "data onMetaData",
            "new header @0",
            "key @0",
            "inter @40"
        ]
    );
}

#[tokio::test]
async fn play_restart_sends_play_stop_then_play_start_as_nginx_rtmp() {
    let got = events_across_a_reconnect("play_restart on;").await;
    assert_eq!(
        got,
        [
            "eof",
            "status NetStream.Play.Stop (Stop live)",
            "begin",
            "status NetStream.Play.Start (Start live)",
            "data |RtmpSampleAccess",
            "data onMetaData",
            "new header @0",
            "key @0",
            "inter @40"
        ]
    );
}

#[tokio::test]
async fn play_restart_starts_a_waiting_player_only_when_the_publisher_comes() {
    let server = Server::start("play_restart on;");
    let mut p = RtmpClient::connect(server.addr(), "live", Role::Play("later".into())).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(ev) = p.next_event().await {
            let ev = describe(&ev);
            if !ev.starts_with("control") && !ev.starts_with("Connected") && !ev.starts_with("StreamCreated") {
                let _ = tx.send(ev);
            }
        }
    });
    let played = async {
        while !server.log().lines().any(|l| l.contains(": play client") && l.contains("stream=later")) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), played).await.expect("the play");
    let _publisher = second_publisher(&server, "later").await;
    let mut got = Vec::new();
    let until_last_frame = async {
        while let Some(ev) = rx.recv().await {
            let last = ev == "inter @40";
            got.push(ev);
            if last {
                return;
            }
        }
    };
    let finished = tokio::time::timeout(Duration::from_secs(10), until_last_frame).await;
    assert!(finished.is_ok(), "the publisher's frames; got {got:?}");
    assert_eq!(
        got,
        [
            "begin",
            "status NetStream.Play.Start (Start live)",
            "data |RtmpSampleAccess",
            "data onMetaData",
            "new header @0",
            "key @0",
            "inter @40"
        ]
    );
}

#[tokio::test]
async fn publish_notify_tells_a_player_joining_a_live_stream() {
    let server = Server::start("publish_notify on;");
    let _first = first_publisher(&server, "live").await;
    let mut p = RtmpClient::connect(server.addr(), "live", Role::Play("live".into())).await.unwrap();
    let statuses = async { [p.next_status().await.unwrap(), p.next_status().await.unwrap()] };
    let got = tokio::time::timeout(Duration::from_secs(10), statuses).await.expect("two statuses");
    assert_eq!(got, ["NetStream.Play.Start", "NetStream.Play.PublishNotify"]);
}

#[tokio::test]
async fn idle_streams_off_closes_players_when_the_publisher_leaves() {
    let server = Server::start("idle_streams off;");
    let first = first_publisher(&server, "gone").await;
    let mut p = player_of_first(&server, "gone").await;
    drop(first);
    let closed = async {
        loop {
            if let Err(e) = p.next_event().await {
                return e.to_string();
            }
        }
    };
    let why = tokio::time::timeout(Duration::from_secs(10), closed).await.expect("the player is closed");
    assert!(why.contains("closed by server"), "{why}");
    assert!(server.log().contains("player closed: publisher left (idle_streams off)"));
}

/// Publish a `size` test pattern (H.264 + AAC, a keyframe a second) in real time.
fn publish(url: &str, size: &str, secs: u32) -> Proc {
    ffmpeg_publish_pattern(url, size, secs, 25)
}

/// Start `program` with its stderr in `log`.
fn player(program: &str, args: &[&str], log: &Path) -> Proc {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    Proc(child)
}

/// Decoded video frames of an FLV file by size ("320x240" → count).
fn frame_sizes(file: &Path) -> HashMap<String, usize> {
    let out = run_timeout(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v", "-show_entries", "frame=width,height"])
            .args(["-of", "csv=p=0", file.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let mut sizes = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((w, h)) = line.trim_end_matches(',').split_once(',') {
            *sizes.entry(format!("{w}x{h}")).or_default() += 1;
        }
    }
    sizes
}

fn signal(p: &Proc, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(p.0.id().to_string()).status();
}

/// The issue's scenario: an encoder is killed and reconnects under the same name a moment
/// later; ffmpeg, rtmpdump and GStreamer's `rtmpsrc` keep playing and decode frames of both
/// publishers (320x240, then 160x120), timestamps restarting at 0 as nginx-rtmp sends them.
/// GStreamer's `rtmp2src` ends at Stream EOF, which nginx-rtmp sends as well.
#[test]
fn real_players_play_both_publishers_across_a_reconnect() {
    let server = Server::start("");
    let url = server.url("re");
    let dir = TempDir::new("reconnect");
    let first = publish(&url, "320x240", 120);
    wait_published(&server, "re");

    let (ff_log, rd_file, gst_file, gst2_file) =
        (dir.path("ffmpeg.log"), dir.path("rtmpdump.flv"), dir.path("rtmpsrc.flv"), dir.path("rtmp2src.flv"));
    let ffmpeg =
        player("ffmpeg", &["-nostdin", "-hide_banner", "-i", &url, "-vf", "showinfo", "-f", "null", "-"], &ff_log);
    let rtmpdump =
        player("rtmpdump", &["-q", "--live", "-r", &url, "-o", rd_file.to_str().unwrap()], &dir.path("rd.log"));
    let rtmpsrc_location = format!("location={url} live=1");
    let gst_sink = format!("location={}", gst_file.to_str().unwrap());
    // Unbuffered: what arrived is on disk when the process is killed.
    let rtmpsrc = player(
        "gst-launch-1.0",
        &["rtmpsrc", &rtmpsrc_location, "!", "filesink", "buffer-mode=unbuffered", &gst_sink],
        &dir.path("gst.log"),
    );
    let gst2_sink = format!("location={}", gst2_file.to_str().unwrap());
    let mut rtmp2src = player(
        "gst-launch-1.0",
        &["-e", "rtmp2src", &format!("location={url}"), "!", "filesink", &gst2_sink],
        &dir.path("gst2.log"),
    );

    // All four play the first publisher for a while.
    poll("four players", Duration::from_secs(30), || server.log().matches(" play ").count() >= 4);
    poll("ffmpeg decoding the first publisher", Duration::from_secs(30), || {
        showinfo_sizes(&ff_log).get("320x240").is_some_and(|&n| n >= 25)
    });
    std::thread::sleep(Duration::from_secs(1));

    // The encoder dies (no closeStream), and is back under the same name a moment later.
    drop(first);
    poll("the unpublish", Duration::from_secs(10), || server.log().contains("unpublish client"));
    let mut second = publish(&url, "160x120", 6);
    assert!(wait_timeout(&mut second.0, Duration::from_secs(60)).is_some_and(|s| s.success()), "second publisher");
    poll("ffmpeg decoding the second publisher", Duration::from_secs(20), || {
        showinfo_sizes(&ff_log).get("160x120").is_some_and(|&n| n >= 50)
    });

    // rtmp2src took Stream EOF for the end, as it does with nginx-rtmp.
    let status = wait_timeout(&mut rtmp2src.0, Duration::from_secs(1));
    assert!(status.is_some_and(|s| s.success()), "rtmp2src ends cleanly at Stream EOF");

    // ffmpeg's log and rtmpsrc's unbuffered file are complete already (both ignore signals
    // while they wait for data); rtmpdump closes its file on SIGTERM.
    drop((ffmpeg, rtmpsrc));
    signal(&rtmpdump, "TERM");
    let mut rtmpdump = rtmpdump;
    wait_timeout(&mut rtmpdump.0, Duration::from_secs(15));

    let ff = showinfo_sizes(&ff_log);
    let rd = frame_sizes(&rd_file);
    let gst = frame_sizes(&gst_file);
    let gst2 = frame_sizes(&gst2_file);
    for (who, sizes) in [("ffmpeg", &ff), ("rtmpdump", &rd), ("rtmpsrc", &gst)] {
        let (a, b) = (sizes.get("320x240").copied().unwrap_or(0), sizes.get("160x120").copied().unwrap_or(0));
        assert!(a >= 25 && b >= 50, "{who} played both publishers: {sizes:?}; log:\n{}", server.log());
    }
    assert!(gst2.get("320x240").is_some_and(|&n| n >= 25) && !gst2.contains_key("160x120"), "rtmp2src: {gst2:?}");
}

//! Live behaviour observed through our own RTMP client (crate `rtmp` + `sluice::client`): what a
//! subprocess can't show, such as time to first frame, slow players and byte-exact pass-through.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use rtmp::{ClientEvent, MediaKind, Role};
use sluice::client::RtmpClient;

const AVC_SEQ: &[u8] = &[
    0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02,
    0x68, 0xee,
];
const AAC_SEQ: &[u8] = &[0xAF, 0x00, 0x12, 0x10];

fn avc_frame(key: bool, seq: u32, size: usize) -> Vec<u8> {
    let mut v = vec![if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
    v.extend_from_slice(&seq.to_be_bytes());
    v.resize(size.max(9), 0xAB);
    v
}

async fn publisher(server: &Server, name: &str) -> RtmpClient {
    let mut c = RtmpClient::connect(server.addr(), "live", Role::Publish(name.into())).await.unwrap();
    assert_eq!(c.next_status().await.unwrap(), "NetStream.Publish.Start");
    c
}

async fn player(server: &Server, name: &str) -> RtmpClient {
    let mut c = RtmpClient::connect(server.addr(), "live", Role::Play(name.into())).await.unwrap();
    assert_eq!(c.next_status().await.unwrap(), "NetStream.Play.Start");
    c
}

/// Publish `frames` video frames at 25 fps with a keyframe every `gop` frames.
async fn publish_frames(c: &mut RtmpClient, frames: u32, gop: u32, size: usize) {
    c.send_media(MediaKind::Video, 0, AVC_SEQ).await.unwrap();
    c.send_media(MediaKind::Audio, 0, AAC_SEQ).await.unwrap();
    let start = Instant::now();
    for i in 0..frames {
        let due = start + Duration::from_millis(40 * i as u64);
        tokio::time::sleep_until(due.into()).await;
        c.send_media(MediaKind::Video, i * 40, &avc_frame(i % gop == 0, i, size)).await.unwrap();
    }
}

async fn next_media(c: &mut RtmpClient) -> (MediaKind, u32, Bytes) {
    loop {
        if let ClientEvent::Media { kind, timestamp, payload } = c.next_event().await.unwrap() {
            return (kind, timestamp, payload);
        }
    }
}

/// First video messages a player receives: sequence header, then a keyframe, fast.
async fn first_video(c: &mut RtmpClient) -> (Duration, Vec<Bytes>) {
    let start = Instant::now();
    let mut videos = Vec::new();
    while videos.len() < 2 {
        let (kind, _, payload) = next_media(c).await;
        if kind == MediaKind::Video {
            videos.push(payload);
        }
    }
    (start.elapsed(), videos)
}

#[tokio::test]
async fn gop_cache_starts_players_at_once_with_a_keyframe() {
    let server = Server::start("");
    let mut publ = publisher(&server, "gop").await;
    // One keyframe every 5 s: without the cache a player would wait up to 5 s.
    let feed = tokio::spawn(async move {
        publish_frames(&mut publ, 100, 125, 2000).await;
        publ
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let connect = Instant::now();
    let mut p = player(&server, "gop").await;
    let (_, videos) = first_video(&mut p).await;
    let elapsed = connect.elapsed();
    assert_eq!(&videos[0][..], AVC_SEQ, "sequence header first");
    assert_eq!(videos[1][0], 0x17, "then the cached keyframe");
    assert_eq!(&videos[1][5..9], &0u32.to_be_bytes(), "the GOP's keyframe, frame 0");
    assert!(elapsed < Duration::from_millis(1000), "first keyframe after {elapsed:?}");
    drop(feed);
}

#[tokio::test]
async fn gop_cache_off_makes_players_wait_for_the_next_keyframe() {
    let server = Server::start("gop_cache off;");
    let mut publ = publisher(&server, "nogop").await;
    let feed = tokio::spawn(async move { publish_frames(&mut publ, 100, 50, 2000).await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut p = player(&server, "nogop").await;
    let (_, videos) = first_video(&mut p).await;
    assert_eq!(&videos[0][..], AVC_SEQ);
    // wait_key (on by default) holds video until a keyframe: the next live one, not cached frame 0.
    assert_eq!(videos[1][0], 0x17);
    assert_eq!(&videos[1][5..9], &50u32.to_be_bytes());
    feed.abort();
}

#[tokio::test]
async fn second_publisher_gets_bad_name_and_first_keeps_streaming() {
    let server = Server::start("");
    let mut first = publisher(&server, "taken").await;
    let mut second = RtmpClient::connect(server.addr(), "live", Role::Publish("taken".into())).await.unwrap();
    assert_eq!(second.next_status().await.unwrap(), "NetStream.Publish.BadName");
    assert!(second.next_event().await.is_err(), "refused publisher is disconnected");
    let mut p = player(&server, "taken").await;
    first.send_media(MediaKind::Video, 0, AVC_SEQ).await.unwrap();
    first.send_media(MediaKind::Video, 0, &avc_frame(true, 7, 100)).await.unwrap();
    let (_, videos) = first_video(&mut p).await;
    assert_eq!(&videos[1][5..9], &7u32.to_be_bytes());
}

fn frame_seq(payload: &[u8]) -> Option<u32> {
    (payload.len() >= 9 && payload[1] == 1)
        .then(|| u32::from_be_bytes([payload[5], payload[6], payload[7], payload[8]]))
}

#[tokio::test]
async fn slow_player_skips_to_keyframe_without_delaying_publisher_or_fast_player() {
    // A short ring (out_queue 32) so the slow player falls a whole ring behind within the test.
    let server = Server::start_with("out_queue 32;", "application live { live on; }");
    let mut publ = publisher(&server, "slow").await;
    // A player that stops reading for 5 s (longer than kernel socket buffers can hide at this
    // rate), then reads as fast as it can.
    let mut slow =
        RtmpClient::connect_with(server.addr(), "live", Role::Play("slow".into()), Some(8192)).await.unwrap();
    assert_eq!(slow.next_status().await.unwrap(), "NetStream.Play.Start");
    let mut fast = player(&server, "slow").await;
    let frames = 200u32;
    let feed = tokio::spawn(async move {
        let start = Instant::now();
        // 64 KiB per frame at 25 fps (13 Mbit/s), a keyframe every 25 frames.
        publish_frames(&mut publ, frames, 25, 64 * 1024).await;
        (start.elapsed(), publ)
    });
    let slow_reader = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut seqs: Vec<(u32, bool)> = Vec::new();
        while seqs.last().is_none_or(|s| s.0 + 1 < frames) {
            match tokio::time::timeout(Duration::from_secs(3), next_media(&mut slow)).await {
                Ok((MediaKind::Video, _, p)) => seqs.extend(frame_seq(&p).map(|s| (s, p[0] == 0x17))),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        seqs
    });
    let mut last_seq = 0;
    let mut got = 0;
    while last_seq + 1 < frames {
        let (_, _, payload) = tokio::time::timeout(Duration::from_secs(5), next_media(&mut fast))
            .await
            .expect("fast player kept receiving");
        if let Some(seq) = frame_seq(&payload) {
            last_seq = seq;
            got += 1;
        }
    }
    let (publish_time, _publ) = feed.await.unwrap();
    assert_eq!(got, frames, "fast player lost no frame");
    assert!(publish_time < Duration::from_millis(40 * frames as u64 + 1500), "publisher was slowed: {publish_time:?}");
    let seqs = slow_reader.await.unwrap();
    let gap = seqs.windows(2).find(|w| w[1].0 > w[0].0 + 1);
    let resumed = gap.unwrap_or_else(|| panic!("slow player never skipped: {seqs:?}"))[1];
    assert!(resumed.1, "after a skip the slow player resumes at a keyframe: {seqs:?}");
    assert!(server.log().contains("player lagging, skipped to keyframe"));
}

#[tokio::test]
async fn hevc_enhanced_rtmp_passes_through_byte_exact() {
    let server = Server::start("");
    let mut publ = publisher(&server, "hevc").await;
    let mut p = player(&server, "hevc").await;
    // ExVideoTagHeader: IsExHeader | FrameType << 4 | PacketType, FourCC "hvc1".
    let seq_start: Vec<u8> = [&[0x90u8][..], b"hvc1", &[0x01, 0x01, 0x60, 0x00, 0x00, 0x00]].concat();
    let coded_key: Vec<u8> = [&[0x91u8][..], b"hvc1", &[0, 0, 0], &[0x26, 0x01, 0xAA, 0xBB]].concat();
    let coded_x: Vec<u8> = [&[0xA3u8][..], b"hvc1", &[0x02, 0x01, 0xCC]].concat();
    publ.send_media(MediaKind::Video, 0, &seq_start).await.unwrap();
    publ.send_media(MediaKind::Video, 0, &coded_key).await.unwrap();
    publ.send_media(MediaKind::Video, 40, &coded_x).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let (kind, ts, payload) = next_media(&mut p).await;
        if kind == MediaKind::Video {
            got.push((ts, payload.to_vec()));
        }
    }
    assert_eq!(got, vec![(0, seq_start), (0, coded_key), (40, coded_x)]);
}

#[tokio::test]
async fn player_waits_for_late_publisher() {
    let server = Server::start("");
    let mut p = player(&server, "late").await;
    let mut publ = publisher(&server, "late").await;
    publ.send_media(MediaKind::Video, 0, AVC_SEQ).await.unwrap();
    publ.send_media(MediaKind::Video, 0, &avc_frame(true, 1, 100)).await.unwrap();
    let (_, videos) = tokio::time::timeout(Duration::from_secs(5), first_video(&mut p)).await.unwrap();
    assert_eq!(videos[1][0], 0x17);
}

#[tokio::test]
async fn idle_streams_off_refuses_unknown_stream() {
    let server = Server::start("idle_streams off;");
    let mut c = RtmpClient::connect(server.addr(), "live", Role::Play("nothing".into())).await.unwrap();
    assert_eq!(c.next_status().await.unwrap(), "NetStream.Play.StreamNotFound");
}

#[tokio::test]
async fn unknown_application_is_rejected() {
    let server = Server::start("");
    let mut c = RtmpClient::connect(server.addr(), "nope", Role::Play("x".into())).await.unwrap();
    assert_eq!(c.next_status().await.unwrap(), "NetConnection.Connect.Rejected");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_streams_cleanly() {
    let mut server = Server::start("");
    let _publ = publisher(&server, "term").await;
    let mut p = player(&server, "term").await;
    let status = tokio::task::block_in_place(|| server.terminate());
    assert!(status.success(), "sluice exits 0 on SIGTERM: {status:?}");
    assert_eq!(p.next_status().await.unwrap(), "NetStream.Play.UnpublishNotify");
}

#[tokio::test]
async fn applications_are_separate_namespaces() {
    let server = Server::start_with("", "application live { live on; } application other { live on; }");
    let mut a = publisher(&server, "same").await;
    let mut b = RtmpClient::connect(server.addr(), "other", Role::Publish("same".into())).await.unwrap();
    assert_eq!(b.next_status().await.unwrap(), "NetStream.Publish.Start", "same name in another app is free");
    let mut p = RtmpClient::connect(server.addr(), "other", Role::Play("same".into())).await.unwrap();
    assert_eq!(p.next_status().await.unwrap(), "NetStream.Play.Start");
    a.send_media(MediaKind::Video, 0, AVC_SEQ).await.unwrap();
    a.send_media(MediaKind::Video, 0, &avc_frame(true, 1, 100)).await.unwrap();
    b.send_media(MediaKind::Video, 0, AVC_SEQ).await.unwrap();
    b.send_media(MediaKind::Video, 0, &avc_frame(true, 2, 100)).await.unwrap();
    let (_, videos) = first_video(&mut p).await;
    assert_eq!(&videos[1][5..9], &2u32.to_be_bytes(), "player of other/same gets other's frames");
}

#[tokio::test]
async fn malformed_input_closes_only_that_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start("");
    let mut publ = publisher(&server, "ok").await;
    let mut p = player(&server, "ok").await;
    // A client that completes a simple handshake, then sends a continuation chunk with no header.
    let mut bad = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let mut hello = vec![3u8];
    hello.extend_from_slice(&[0u8; 1536]);
    bad.write_all(&hello).await.unwrap();
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    bad.read_exact(&mut s0s1s2).await.unwrap();
    bad.write_all(&[0u8; 1536]).await.unwrap();
    bad.write_all(&[0xC9, 1, 2, 3, 4]).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), bad.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "server closes the malformed connection");
    // And an HTTP request on the RTMP port.
    let mut http = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), http.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "server closes a non-RTMP connection");
    // Everyone else is unaffected.
    publ.send_media(MediaKind::Video, 0, AVC_SEQ).await.unwrap();
    publ.send_media(MediaKind::Video, 0, &avc_frame(true, 3, 100)).await.unwrap();
    let (_, videos) = first_video(&mut p).await;
    assert_eq!(&videos[1][5..9], &3u32.to_be_bytes());
    let log = server.log();
    assert!(log.contains("chunk stream 9 has no previous header"), "error names what was wrong:\n{log}");
    assert!(log.contains("unsupported RTMP handshake version 71"), "{log}");
}

#[tokio::test]
async fn silent_clients_are_dropped_by_timeout_and_ping() {
    use tokio::io::AsyncReadExt;
    let server = Server::start_with("timeout 1s; ping 1s; ping_timeout 1s;", "application live { live on; }");
    // Connects and never says anything: dropped after `timeout`.
    let mut mute = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    // Plays, then never reads or answers pings again: dropped after `ping` + `ping_timeout`.
    let mut deaf = player(&server, "quiet").await.into_socket();
    let start = Instant::now();
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(6), mute.read_to_end(&mut sink)).await.expect("mute client dropped").ok();
    tokio::time::timeout(Duration::from_secs(6), deaf.read_to_end(&mut sink)).await.expect("deaf client dropped").ok();
    assert!(start.elapsed() >= Duration::from_millis(900), "not before the timeout: {:?}", start.elapsed());
    // The socket closes just before the disconnect line is logged: give the log a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut log = server.log();
    while !(log.contains("no connect within 1s") && log.contains("no reply to ping within 1s"))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        log = server.log();
    }
    assert!(log.contains("no connect within 1s"), "{log}");
    assert!(log.contains("no reply to ping within 1s"), "{log}");
}

#[tokio::test]
async fn record_notify_tells_the_publisher_when_recording_starts_and_stops() {
    let dir = TempDir::new("record-notify");
    let server = Server::start(&format!("record all; record_path {}; record_notify on;", dir.0.display()));
    let mut publ = publisher(&server, "rec").await;
    publish_frames(&mut publ, 10, 5, 200).await;
    let started = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let ClientEvent::Status { code, .. } = publ.next_event().await.unwrap() {
                if code.starts_with("NetStream.Record.") {
                    return code;
                }
            }
        }
    })
    .await
    .expect("a NetStream.Record status");
    assert_eq!(started, "NetStream.Record.Start", "log:\n{}", server.log());
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        }
        out.push(p);
    }
    out
}

#[tokio::test]
async fn names_that_would_become_paths_outside_hls_path_are_refused() {
    let base = TempDir::new("names");
    let hls = base.path("hls");
    let outside = base.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let server = Server::start_with(
        "",
        &format!(
            "application live {{ live on; hls on; hls_path {0}; hls_cleanup on; }}
             application nested {{ live on; hls on; hls_path {0}n; hls_nested on; }}",
            hls.display()
        ),
    );
    let escape = format!("../outside/x{}", "");
    let absolute = format!("{}/abs", outside.display());
    let long = "n".repeat(sluice::untrusted::MAX_STREAM_NAME + 1);
    let bad = [escape.as_str(), absolute.as_str(), ".", "..", "./victim", "a\nINFO forged", "a\\b", &long];
    for (app, name) in bad.iter().map(|n| ("live", *n)).chain([("nested", "")]) {
        let mut c = RtmpClient::connect(server.addr(), app, Role::Publish(name.into())).await.unwrap();
        let status = c.next_status().await.unwrap();
        assert_eq!(status, "NetStream.Publish.BadName", "{app}/{name:?}");
        assert!(c.next_event().await.is_err(), "{name:?}: refused publisher is disconnected");
    }
    assert!(files_under(&outside).is_empty(), "files outside hls_path: {:?}", files_under(&outside));
    let log = server.log();
    assert!(log.contains("publish refused: stream name contains \"/\""), "{log}");
    assert!(!log.contains("\nINFO forged"), "a name cannot forge a log line:\n{log}");
    assert!(log.contains("a\\nINFO forged"), "{log}");
    // A proper name still publishes, and playing a bad name is refused too.
    let _ok = publisher(&server, "fine").await;
    let mut p = RtmpClient::connect(server.addr(), "live", Role::Play("../fine".into())).await.unwrap();
    assert_eq!(p.next_status().await.unwrap(), "NetStream.Play.Failed");
}

#[tokio::test]
async fn a_new_play_on_one_connection_releases_the_previous_stream() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start("");
    let p = player(&server, "a0").await;
    let (mut socket, _, _) = p.into_parts();
    // `play a1` ... `play a300` on stream 1 of the same connection, as raw commands.
    let mut out = bytes::BytesMut::new();
    for i in 1..=300 {
        let mut payload = Vec::new();
        for v in [
            amf0::Value::String("play".into()),
            amf0::Value::Number(0.0),
            amf0::Value::Null,
            amf0::Value::String(format!("a{i}")),
        ] {
            amf0::encode(&v, &mut payload);
        }
        rtmp::chunk::encode_message(&mut out, 4096, 8, 0, 20, 1, &payload);
    }
    socket.write_all(&out).await.unwrap();
    // Each play ends the one before it: 300 "play done" lines, so at most one idle stream.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let done = server.log().matches("play done").count();
        if done >= 300 {
            break;
        }
        assert!(Instant::now() < deadline, "only {done} plays released:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_reads_nothing_does_not_hold_shutdown_past_its_grace() {
    use tokio::io::AsyncWriteExt;
    let mut server = Server::start_with("timeout 60s;", "application live { live on; }");
    let mut publ =
        RtmpClient::connect_with(server.addr(), "live", Role::Publish("stuck".into()), Some(4096)).await.unwrap();
    assert_eq!(publ.next_status().await.unwrap(), "NetStream.Publish.Start");
    let (mut socket, _, _) = publ.into_parts();
    // Commands whose replies it never reads: once both socket buffers are full, the server's
    // write to it blocks (for up to `timeout`).
    let out = unanswered_commands("stuck");
    let flood = tokio::spawn(async move {
        for _ in 0..10 {
            if socket.write_all(&out).await.is_err() {
                break;
            }
        }
        socket
    });
    // Wait until the server stops reading (its writes are blocked), then stop it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    let status = tokio::task::block_in_place(|| server.terminate());
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    let log = server.log();
    assert!(!log.contains("did not close within"), "a blocked write held shutdown:\n{log}");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    flood.abort();
}

#[tokio::test]
async fn an_idle_publisher_is_dropped_after_drop_idle_publisher() {
    use tokio::io::AsyncReadExt;
    let server = Server::start_with("", "application live { live on; drop_idle_publisher 1s; }");
    let mut c = publisher(&server, "idle").await;
    publish_frames(&mut c, 3, 1, 64).await;
    // Stays connected but sends nothing: the connection's timer (no periodic tick) drops it.
    let mut socket = c.into_socket();
    let start = Instant::now();
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(8), socket.read_to_end(&mut sink))
        .await
        .expect("idle publisher dropped")
        .ok();
    assert!(start.elapsed() >= Duration::from_millis(800), "not before the limit: {:?}", start.elapsed());
    let deadline = Instant::now() + Duration::from_secs(3);
    while !server.log().contains("drop_idle_publisher") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = server.log();
    assert!(log.contains("publisher idle for 1s (drop_idle_publisher)"), "{log}");
}

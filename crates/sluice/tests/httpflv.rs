//! HTTP-FLV and WebSocket-FLV players with real clients: ffprobe and ffmpeg over HTTP, a raw
//! WebSocket client, curl; refusals, control's drop, the publisher leaving, and a slow reader.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The built-in HTTP server (no `http {}` block) with `live` and `apps` extra.
fn builtin(app_extra: &str, apps: &str) -> Server {
    Server::start_conf(&format!(
        "rtmp {{ http_listen 127.0.0.1:{{http}}; server {{ listen 127.0.0.1:{{rtmp}}; application live {{ live on; {app_extra} }} {apps} }} }}"
    ))
}

/// Publish `name` for `secs` and wait until it is live.
fn publish(s: &Server, name: &str, secs: u32) -> Proc {
    let p = ffmpeg_publish(&s.url(name), secs, 25);
    wait_published(s, name);
    p
}

/// Send `GET path` (with `extra` header lines) and read the response head: (status, head, the
/// body bytes read with it).
fn open(port: u16, path: &str, extra: &str) -> (TcpStream, u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: flv-test\r\n{extra}\r\n").unwrap();
    let (status, head, rest) = read_head(&mut s);
    (s, status, head, rest)
}

fn read_head(s: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).expect("a response head");
        assert!(n > 0, "closed before the head: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at]).into_owned();
            let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            return (status, head, buf[at + 4..].to_vec());
        }
    }
}

/// Read until the response ends (the chunked terminator, or the connection closes) within `limit`.
fn ends_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut tail = Vec::new();
    let mut chunk = [0u8; 65536];
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                if tail.ends_with(b"\r\n0\r\n\r\n") {
                    return true;
                }
                let keep = tail.len().saturating_sub(8);
                tail.drain(..keep);
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// (type, first two body bytes) of the FLV tags in `flv` after its 13-byte header.
fn tags(flv: &[u8]) -> Vec<(u8, [u8; 2])> {
    let mut out = Vec::new();
    let mut at = 13;
    while at + 11 <= flv.len() {
        let size = u32::from_be_bytes([0, flv[at + 1], flv[at + 2], flv[at + 3]]) as usize;
        if at + 11 + size > flv.len() {
            break;
        }
        let body = &flv[at + 11..at + 11 + size];
        out.push((flv[at], [body.first().copied().unwrap_or(0), body.get(1).copied().unwrap_or(0)]));
        at += 11 + size + 4;
    }
    out
}

#[test]
fn ffprobe_and_ffmpeg_play_http_flv_from_the_builtin_server() {
    let s = builtin("idle_streams off;", "");
    let _publisher = publish(&s, "cam", 60);
    let url = format!("http://127.0.0.1:{}/live/cam.flv", s.http_port);
    assert_eq!(ffprobe_streams(&url), ["aac", "h264,640,360"]);
    let decoding = std::thread::spawn({
        let url = url.clone();
        move || {
            run_timeout(
                Command::new("ffmpeg")
                    .args(["-nostdin", "-hide_banner", "-rw_timeout", "15000000", "-i", &url])
                    .args(["-t", "3", "-f", "null", "-"]),
                Duration::from_secs(60),
            )
        }
    });
    // A player that keeps up is written by the stream's fan-out shard.
    wait_for("ffmpeg written by a shard", Duration::from_secs(30), || {
        let stream = get_json(&s, "/api/v1/streams/live/cam")?;
        (stream["players"]["http_flv"] == 1 && stream["players"]["fanout"] == 1).then_some(())
    });
    let out = decoding.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed: {err}");
    let frames: u32 =
        err.rsplit("frame=").next().and_then(|t| t.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(frames >= 50, "3 s at 25 fps decoded, got {frames}: {err}");
    // curl reads the close-delimited body as a download.
    let got = run_timeout(Command::new("curl").args(["-sv", "--max-time", "2", &url]), Duration::from_secs(30));
    let verbose = String::from_utf8_lossy(&got.stderr).to_ascii_lowercase();
    assert!(verbose.contains("< http/1.0 200") && verbose.contains("< connection: close"), "{verbose}");
    let body = got.stdout;
    assert!(body.starts_with(b"FLV\x01") && body.len() > 10_000, "2 s of FLV: {} bytes", body.len());
    // HEAD: the head alone; other methods are refused; other paths are not streams.
    let head = run_timeout(Command::new("curl").args(["-sI", "--max-time", "20", &url]), Duration::from_secs(30));
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200") && head.contains("content-type: video/x-flv"), "{head}");
    let post = run_timeout(
        Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", &url]),
        Duration::from_secs(30),
    );
    assert_eq!(String::from_utf8_lossy(&post.stdout), "405");
    assert_eq!(http_get(s.http_port, "/live/none.flv").0, 404);
    assert_eq!(http_get(s.http_port, "/nope/cam.flv").0, 404);
    assert_eq!(http_get(s.http_port, "/live/cam.txt").0, 404);
    let log = s.log();
    assert!(log.contains("protocol=http-flv") && log.contains("play done"), "{log}");
}

#[test]
fn the_flv_live_query_form_in_an_http_block() {
    let s = Server::start_conf(
        "rtmp { server { listen 127.0.0.1:{rtmp}; application live { live on; idle_streams off; } } }
         http { server { listen 127.0.0.1:{http}; location /flv { flv_live on; } location /live { flv_live on; } location /other { } } }",
    );
    let _publisher = publish(&s, "cam", 60);
    let url = |q: &str| format!("http://127.0.0.1:{}/flv?{q}", s.http_port);
    assert_eq!(ffprobe_streams(&url(&format!("port={}&app=live&stream=cam", s.port))), ["aac", "h264,640,360"]);
    // The path form (the whole path) in a location that has it.
    assert_eq!(ffprobe_streams(&format!("http://127.0.0.1:{}/live/cam.flv", s.http_port)), ["aac", "h264,640,360"]);
    assert_eq!(curl(&url("stream=cam")).0, 400, "no app");
    assert_eq!(curl(&url("app=live&stream=none")).0, 404);
    assert_eq!(curl(&url("app=live&stream=cam&port=1")).0, 404, "no rtmp block listens on port 1");
    assert_eq!(http_get(s.http_port, "/other/live/cam.flv").0, 404, "a location without flv_live serves files");
}

#[test]
fn websocket_flv_sends_the_flv_header_and_tags() {
    let s = builtin("", "");
    let _publisher = publish(&s, "cam", 60);
    let (mut ws, status, head, rest) = open(
        s.http_port,
        "/live/cam.flv",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    assert_eq!(status, 101, "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    let mut reader = WsReader { s: ws.try_clone().unwrap(), buf: rest };
    let mut flv = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tags(&flv).iter().filter(|(t, _)| *t == 9).count() < 30 {
        assert!(Instant::now() < deadline, "30 video tags in time");
        let (op, payload) = reader.frame();
        assert_eq!(op, 2, "binary messages only");
        flv.extend_from_slice(&payload);
    }
    assert_eq!(&flv[..5], b"FLV\x01\x05", "audio and video");
    let tags = tags(&flv);
    assert_eq!(tags[0].0, 18, "metadata first: {tags:?}");
    assert!(tags.contains(&(9, [0x17, 0])), "the AVC sequence header");
    assert!(tags.contains(&(8, [0xAF, 0])), "the AAC sequence header");
    let first_frame = tags.iter().find(|(t, b)| *t == 9 && b[1] == 1).unwrap();
    assert_eq!(first_frame.1[0], 0x17, "the first video frame is a keyframe");
    // A ping is answered with a pong, a close with a close.
    ws.write_all(&masked(0x89, b"hi")).unwrap();
    let pong = loop {
        let (op, payload) = reader.frame();
        if op != 2 {
            break (op, payload);
        }
    };
    assert_eq!(pong, (0xA, b"hi".to_vec()));
    ws.write_all(&masked(0x88, &1000u16.to_be_bytes())).unwrap();
    let close = loop {
        let (op, payload) = reader.frame();
        if op != 2 {
            break (op, payload);
        }
    };
    assert_eq!(close, (0x8, 1000u16.to_be_bytes().to_vec()));
    assert!(s.log().contains("protocol=ws-flv"));
}

/// A client's frame: masked (RFC 6455, 5.3).
fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [9u8, 8, 7, 6];
    let mut out = vec![b0, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads the server's (unmasked) frames.
struct WsReader {
    s: TcpStream,
    buf: Vec<u8>,
}

impl WsReader {
    fn fill(&mut self, n: usize) {
        let mut chunk = [0u8; 65536];
        while self.buf.len() < n {
            let got = self.s.read(&mut chunk).expect("a frame");
            assert!(got > 0, "the server closed");
            self.buf.extend_from_slice(&chunk[..got]);
        }
    }

    fn frame(&mut self) -> (u8, Vec<u8>) {
        self.fill(2);
        let (op, len7) = (self.buf[0] & 0x0F, self.buf[1] & 0x7F);
        assert_eq!(self.buf[1] & 0x80, 0, "server frames are not masked");
        let (len, at) = match len7 {
            126 => {
                self.fill(4);
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                self.fill(10);
                (u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize, 10)
            }
            n => (n as usize, 2),
        };
        self.fill(at + len);
        let payload = self.buf[at..at + len].to_vec();
        self.buf.drain(..at + len);
        (op, payload)
    }
}

/// A callback backend answering every request with `status`; its port.
fn answering_backend(status: u16) -> u16 {
    refusing_backend(status, "")
}

/// A callback backend answering `status` to requests containing `refuse` and 200 to others;
/// its port.
fn refusing_backend(status: u16, refuse: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            let request = read_request(&mut s);
            let status = if request.contains(refuse) { status } else { 200 };
            let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(reply.as_bytes());
        }
    });
    port
}

/// A request's head and body (by its `Content-Length`).
fn read_request(s: &mut TcpStream) -> String {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = s.read(&mut chunk) {
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn rules_and_on_play_refuse_with_403() {
    let refusing = answering_backend(403);
    let s = builtin(
        "deny play 127.0.0.1;",
        &format!(
            "application cb {{ live on; on_play http://127.0.0.1:{refusing}/; }} application open {{ live on; }}
             application signed {{ live on; idle_streams off; auth_secret s3cret; auth play; }}"
        ),
    );
    assert_eq!(http_get(s.http_port, "/live/cam.flv").0, 403, "deny play");
    assert_eq!(http_get(s.http_port, "/cb/cam.flv").0, 403, "on_play answered 403");
    // A name the policy refuses is a bad request.
    assert_eq!(http_get(s.http_port, "/flv?app=open&stream=..").0, 400);
    // Signed keys: the query is the stream's arguments, in both URL forms. Past the key there is
    // no such stream (idle_streams off): 404.
    let url = run_timeout(
        Command::new(sluice_bin()).args(["token", "--play", "--secret", "s3cret", "--app", "signed", "--name", "cam"]),
        Duration::from_secs(10),
    );
    let url = String::from_utf8_lossy(&url.stdout).trim().to_owned();
    let query = url.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_else(|| panic!("a signed URL: {url}"));
    assert_eq!(http_get(s.http_port, "/signed/cam.flv").0, 403, "no key");
    assert_eq!(http_get(s.http_port, &format!("/signed/cam.flv?{query}")).0, 404);
    assert_eq!(http_get(s.http_port, &format!("/flv?app=signed&stream=cam&{query}")).0, 404);
    assert_eq!(http_get(s.http_port, &format!("/signed/other.flv?{query}")).0, 403, "the key of another stream");
    let log = s.log();
    assert!(log.contains("play refused") && log.contains("reason=rule"), "{log}");
    assert!(log.contains("reason=token"), "{log}");
}

#[test]
fn control_drops_a_player_and_the_publisher_leaving_ends_the_response() {
    let s = builtin("", "");
    let mut publisher = publish(&s, "cam", 60);
    let (mut dropped, status, _, _) = open(s.http_port, "/live/cam.flv", "");
    assert_eq!(status, 200);
    let (mut second, status, _, _) = open(s.http_port, "/live/cam.flv", "");
    assert_eq!(status, 200);
    let mut some = [0u8; 1024];
    assert!(dropped.read(&mut some).unwrap() > 0);
    // Both players are subscribers in the registry; control drops the one it names.
    let client = format!("client={} ", dropped.local_addr().unwrap());
    let id = wait_for("the player's id in the log", Duration::from_secs(10), || {
        let log = s.log();
        let line = log.lines().find(|l| l.contains(&client) && l.contains("clientid="))?.to_owned();
        line.split("clientid=").nth(1)?.split_whitespace().next().map(str::to_owned)
    });
    let (code, body) = http_get(s.http_port, &format!("/control/drop/subscriber?app=live&name=cam&clientid={id}"));
    assert_eq!((code, body.as_str()), (200, "1"));
    assert!(ends_within(&mut dropped, Duration::from_secs(10)), "the dropped player's response ended");
    // The publisher leaves: the other response ends too.
    let _ = publisher.0.kill();
    let _ = publisher.0.wait();
    assert!(ends_within(&mut second, Duration::from_secs(15)), "the response ended with the publisher");
    let log = s.log();
    assert!(log.contains("player dropped by control") && log.contains("player closed: publisher left"), "{log}");
}

const AVC_SEQ: &[u8] = &[
    0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02,
    0x68, 0xee,
];

/// A synthetic AVC frame carrying its sequence number.
fn avc_frame(key: bool, seq: u32, size: usize) -> Vec<u8> {
    let mut v = vec![if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
    v.extend_from_slice(&seq.to_be_bytes());
    v.resize(size.max(9), 0xAB);
    v
}

#[tokio::test]
async fn a_slow_http_player_skips_and_does_not_slow_the_publisher_or_an_rtmp_player() {
    use rtmp::{ClientEvent, MediaKind, Role};
    use sluice::client::RtmpClient;
    // A short ring (out_queue 32) so the slow player falls a whole ring behind within the test.
    let s = Server::start_conf(
        "rtmp { http_listen 127.0.0.1:{http}; out_queue 32; server { listen 127.0.0.1:{rtmp}; application live { live on; } } }",
    );
    let mut publ = RtmpClient::connect(s.addr(), "live", Role::Publish("cam".into())).await.unwrap();
    assert_eq!(publ.next_status().await.unwrap(), "NetStream.Publish.Start");
    // An HTTP player with a tiny receive window that reads nothing for 5 s (longer than the
    // socket and hyper buffers hide at 13 Mbit/s), then reads as fast as it can.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8192).unwrap();
    let mut slow = socket.connect(([127, 0, 0, 1], s.http_port).into()).await.unwrap();
    let slow_addr = slow.local_addr().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut slow, b"GET /live/cam.flv HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut fast = RtmpClient::connect(s.addr(), "live", Role::Play("cam".into())).await.unwrap();
    assert_eq!(fast.next_status().await.unwrap(), "NetStream.Play.Start");
    wait_for("the HTTP player", Duration::from_secs(10), || s.log().contains("protocol=http-flv").then_some(()));
    let frames = 200u32;
    let feed = tokio::spawn(async move {
        let start = Instant::now();
        publ.send_media(MediaKind::Video, 0, AVC_SEQ).await.unwrap();
        for i in 0..frames {
            tokio::time::sleep_until((start + Duration::from_millis(40 * u64::from(i))).into()).await;
            publ.send_media(MediaKind::Video, i * 40, &avc_frame(i % 25 == 0, i, 64 * 1024)).await.unwrap();
        }
        (start.elapsed(), publ)
    });
    let slow_reader = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        while let Ok(Ok(n @ 1..)) =
            tokio::time::timeout(Duration::from_secs(3), tokio::io::AsyncReadExt::read(&mut slow, &mut buf)).await
        {
            total += n;
        }
        total
    });
    let mut got = 0;
    while got < frames {
        let event = tokio::time::timeout(Duration::from_secs(5), fast.next_event()).await;
        match event.expect("the RTMP player kept receiving").unwrap() {
            ClientEvent::Media { kind: MediaKind::Video, payload, .. } if payload[1] == 1 => got += 1,
            _ => {}
        }
    }
    let (publish_time, _publ) = feed.await.unwrap();
    assert!(publish_time < Duration::from_millis(40 * u64::from(frames) + 1500), "publisher slowed: {publish_time:?}");
    let read = slow_reader.await.unwrap();
    let sent = frames as usize * 64 * 1024;
    assert!(read > 0 && read < sent, "the slow player got part of the stream: {read} of {sent} bytes");
    let log = s.log();
    let skipped: Vec<&str> = log.lines().filter(|l| l.contains("skipped to keyframe")).collect();
    assert!(!skipped.is_empty(), "the slow player skipped:\n{log}");
    let client = format!("client={slow_addr}");
    assert!(skipped.iter().all(|l| l.contains(&client)), "only the slow player skipped: {skipped:?}");
}

#[test]
fn shutdown_ends_http_and_websocket_players() {
    let mut s = builtin("", "");
    let _publisher = publish(&s, "cam", 60);
    let (mut http, status, _, _) = open(s.http_port, "/live/cam.flv", "");
    assert_eq!(status, 200);
    let (ws, status, _, rest) = open(
        s.http_port,
        "/live/cam.flv",
        "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    assert_eq!(status, 101);
    let mut reader = WsReader { s: ws, buf: rest };
    assert_eq!(reader.frame().0, 2);
    let status = s.terminate();
    assert!(status.success(), "sluice exits cleanly with players connected: {status:?}");
    assert!(ends_within(&mut http, Duration::from_secs(5)), "the HTTP response ended");
    let close = loop {
        let (op, payload) = reader.frame();
        if op != 2 {
            break (op, payload);
        }
    };
    assert_eq!(close, (0x8, 1001u16.to_be_bytes().to_vec()), "going away");
}

#[test]
fn a_player_that_comes_before_the_publisher_waits_for_it() {
    let s = builtin("", "");
    // idle_streams on (the default): the response starts at once with the FLV header.
    let (mut early, status, _, rest) = open(s.http_port, "/live/later.flv", "");
    assert_eq!(status, 200);
    let _publisher = publish(&s, "later", 60);
    let mut body = rest;
    let mut chunk = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !body.windows(2).any(|w| w == [0x17, 0x01]) {
        assert!(Instant::now() < deadline, "a keyframe came after the publisher started");
        let n = early.read(&mut chunk).unwrap();
        assert!(n > 0, "the response ended");
        body.extend_from_slice(&chunk[..n]);
    }
    assert!(body.windows(4).any(|w| w == b"FLV\x01"), "the FLV header first");
}

#[test]
fn on_update_refusing_ends_the_response() {
    // The publisher's updates are allowed, the players' refused.
    let refusing = refusing_backend(403, "call=update_play");
    let s = builtin(&format!("on_update http://127.0.0.1:{refusing}/; notify_update_timeout 1s;"), "");
    let _publisher = publish(&s, "cam", 60);
    let (mut player, status, _, _) = open(s.http_port, "/live/cam.flv", "");
    assert_eq!(status, 200);
    assert!(ends_within(&mut player, Duration::from_secs(15)), "the response ended at the first on_update");
    let log = s.log();
    assert!(log.contains("player dropped by on_update"), "{log}");
}

#[tokio::test]
async fn a_player_that_reads_nothing_is_cut_by_send_timeout() {
    use rtmp::{MediaKind, Role};
    use sluice::client::RtmpClient;
    let s = Server::start_conf(
        "rtmp { server { listen 127.0.0.1:{rtmp}; application live { live on; } } }
         http { server { listen 127.0.0.1:{http}; send_timeout 2s; location /live { flv_live on; } } }",
    );
    let mut publ = RtmpClient::connect(s.addr(), "live", Role::Publish("cam".into())).await.unwrap();
    assert_eq!(publ.next_status().await.unwrap(), "NetStream.Publish.Start");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8192).unwrap();
    let mut stalled = socket.connect(([127, 0, 0, 1], s.http_port).into()).await.unwrap();
    let client = format!("client={} ", stalled.local_addr().unwrap());
    tokio::io::AsyncWriteExt::write_all(&mut stalled, b"GET /live/cam.flv HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // 13 Mbit/s until the server lets the player go; the player never reads.
    publ.send_media(MediaKind::Video, 0, AVC_SEQ).await.unwrap();
    let start = Instant::now();
    let mut i = 0;
    let cut = loop {
        tokio::time::sleep_until((start + Duration::from_millis(40 * u64::from(i))).into()).await;
        publ.send_media(MediaKind::Video, i * 40, &avc_frame(i % 25 == 0, i, 64 * 1024)).await.unwrap();
        i += 1;
        let log = s.log();
        if log.lines().any(|l| l.contains(&client) && l.contains("play done")) {
            break start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the stalled player was never cut:\n{log}");
    };
    assert!(cut >= Duration::from_secs(2), "not before send_timeout: {cut:?}");
    let log = s.log();
    assert!(log.lines().any(|l| l.contains(&client) && l.contains("send_timeout")), "{log}");
    drop(stalled);
}

/// One FLV tag as a player got it.
struct Tag {
    kind: u8,
    timestamp: u32,
    body: Vec<u8>,
}

/// Every tag of a whole FLV byte stream; panics unless it is exactly a header and whole tags,
/// each with the right PreviousTagSize.
fn parse_flv(flv: &[u8]) -> Vec<Tag> {
    assert!(flv.len() >= 13 && &flv[..3] == b"FLV", "an FLV header");
    let mut out = Vec::new();
    let mut at = 13;
    while at < flv.len() {
        assert!(at + 11 <= flv.len(), "a cut tag header at {at} of {}", flv.len());
        let size = u32::from_be_bytes([0, flv[at + 1], flv[at + 2], flv[at + 3]]) as usize;
        let timestamp = u32::from_be_bytes([flv[at + 7], flv[at + 4], flv[at + 5], flv[at + 6]]);
        let end = at + 11 + size;
        assert!(end + 4 <= flv.len(), "a cut tag at {at} of {}", flv.len());
        let previous = u32::from_be_bytes(flv[end..end + 4].try_into().unwrap()) as usize;
        assert_eq!(previous, 11 + size, "PreviousTagSize of the tag at {at}");
        assert!(matches!(flv[at], 8 | 9 | 18), "a tag type at {at}: {}", flv[at]);
        out.push(Tag { kind: flv[at], timestamp, body: flv[at + 11..end].to_vec() });
        at = end + 4;
    }
    out
}

/// A plain HTTP-FLV player gets a close-delimited HTTP/1.0 response (no chunk framing), is
/// written by a fan-out shard while it keeps up (counted in `players.fanout`), is given back
/// when it stops reading (and skips to a keyframe in the ring), joins again once it reads again,
/// and every byte it got is valid FLV: whole tags in order, one continuous timeline, a
/// sequence header and a keyframe after each skip. The response ends when the publisher leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_flv_player_is_close_delimited_flv_through_a_shard_and_a_give_back() {
    use rtmp::{MediaKind, Role};
    use sluice::client::RtmpClient;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    // A short ring (out_queue 32), so the player falls a whole ring behind while it stops.
    let s = Arc::new(Server::start_conf(
        "rtmp { http_listen 127.0.0.1:{http}; out_queue 32; server { listen 127.0.0.1:{rtmp}; application live { live on; } } }",
    ));
    let mut publ = RtmpClient::connect(s.addr(), "live", Role::Publish("cam".into())).await.unwrap();
    assert_eq!(publ.next_status().await.unwrap(), "NetStream.Publish.Start");
    publ.send_media(MediaKind::Video, 0, AVC_SEQ).await.unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8192).unwrap();
    let player = socket.connect(([127, 0, 0, 1], s.http_port).into()).await.unwrap();
    let client = format!("client={} ", player.local_addr().unwrap());
    let mut player = player.into_std().unwrap();
    player.set_nonblocking(false).unwrap();
    player.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(player, "GET /live/cam.flv HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (status, head, first) = read_head(&mut player);
    assert_eq!(status, 200, "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.0 200"), "an HTTP/1.0 response: {head}");
    assert!(lower.contains("connection: close"), "{head}");
    assert!(!lower.contains("transfer-encoding") && !lower.contains("content-length"), "close-delimited: {head}");

    // The publisher: 64 KiB frames at 25 a second (13 Mbit/s), a keyframe every 25, until told.
    let stop_feed = Arc::new(AtomicBool::new(false));
    let feed = tokio::spawn({
        let stop = stop_feed.clone();
        async move {
            let start = Instant::now();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until((start + Duration::from_millis(40 * u64::from(i))).into()).await;
                publ.send_media(MediaKind::Video, i * 40, &avc_frame(i.is_multiple_of(25), i, 64 * 1024))
                    .await
                    .unwrap();
                i += 1;
            }
            drop(publ);
        }
    });
    // The player: reads, stops for 5 s when told, then reads to the end.
    let pause = Arc::new(AtomicBool::new(false));
    let reader = std::thread::spawn({
        let pause = pause.clone();
        move || {
            let mut got = first;
            let mut buf = vec![0u8; 1 << 16];
            let mut paused = false;
            loop {
                if !paused && pause.load(Ordering::Relaxed) {
                    paused = true;
                    std::thread::sleep(Duration::from_secs(5));
                }
                match player.read(&mut buf) {
                    Ok(0) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("the response did not end cleanly: {e}"),
                }
            }
        }
    });
    let fanout = |s: Arc<Server>, want: u64| {
        tokio::task::spawn_blocking(move || {
            wait_for(&format!("{want} players written by shards"), Duration::from_secs(30), || {
                let stream = get_json(&s, "/api/v1/streams/live/cam")?;
                (stream["players"]["fanout"] == want && stream["players"]["http_flv"] == 1).then_some(())
            })
        })
    };
    fanout(s.clone(), 1).await.unwrap();
    pause.store(true, Ordering::Relaxed);
    let skipped = |s: Arc<Server>, client: String| {
        tokio::task::spawn_blocking(move || {
            wait_for("the stalled player to skip", Duration::from_secs(30), || {
                s.log().lines().any(|l| l.contains(&client) && l.contains("skipped to keyframe")).then_some(())
            })
        })
    };
    skipped(s.clone(), client.clone()).await.unwrap();
    fanout(s.clone(), 1).await.expect("written by a shard again once it reads again");
    stop_feed.store(true, Ordering::Relaxed);
    feed.await.unwrap();
    let got = tokio::task::spawn_blocking(move || reader.join().unwrap()).await.unwrap();

    let tags = parse_flv(&got);
    let mut last: Option<(u32, u32)> = None;
    let (mut gaps, mut headers_before) = (0, false);
    for t in &tags {
        assert_eq!(t.kind, 9, "only video was published");
        if t.body[1] == 0 {
            headers_before = true;
            continue;
        }
        let seq = u32::from_be_bytes(t.body[5..9].try_into().unwrap());
        match last {
            None => assert_eq!((seq, t.timestamp), (0, 0), "starts at the first frame, at 0"),
            Some((prev, _)) => {
                assert!(seq > prev, "frames in order: {seq} after {prev}");
                if seq > prev + 1 {
                    gaps += 1;
                    assert_eq!(t.body[0], 0x17, "a skip resumes at a keyframe (frame {seq})");
                    assert!(headers_before, "the sequence header again before frame {seq}");
                }
            }
        }
        assert_eq!(t.timestamp, seq * 40, "one continuous timeline (frame {seq})");
        assert_eq!(t.body.len(), 64 * 1024, "whole frame {seq}");
        last = Some((seq, t.timestamp));
        headers_before = false;
    }
    assert!(gaps >= 1, "the stalled player skipped");
    assert!(last.is_some_and(|(seq, _)| seq > 100), "it played on after the skip: {:?}", last);
}

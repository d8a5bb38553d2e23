//! Client and server sessions wired together in memory: no sockets, no sleeps.

mod common;

use bytes::BytesMut;
use common::handshaken_server;
use rtmp::message::user_control;
use rtmp::{ClientConfig, ClientEvent, ClientSession, MediaKind, Role, ServerConfig, ServerEvent, ServerSession};

struct Pair {
    client: ClientSession,
    server: ServerSession,
    to_server: BytesMut,
    to_client: BytesMut,
    client_events: Vec<ClientEvent>,
    server_events: Vec<ServerEvent>,
}

impl Pair {
    fn new(role: Role, complex: bool) -> Self {
        let mut rng = rand::thread_rng();
        let cfg = ClientConfig {
            app: "live".into(),
            tc_url: "rtmp://localhost/live".into(),
            role,
            complex_handshake: complex,
            chunk_size: 4096,
            buffer_ms: 1000,
            relay: None,
        };
        let mut client = ClientSession::new(cfg, 0, &mut rng);
        client.start();
        let server = ServerSession::new(ServerConfig::default(), 0, &mut rng);
        Pair {
            client,
            server,
            to_server: BytesMut::new(),
            to_client: BytesMut::new(),
            client_events: vec![],
            server_events: vec![],
        }
    }

    /// Move bytes both ways until quiet, letting `decide` answer server events.
    fn run(&mut self, mut decide: impl FnMut(&mut ServerSession, &ServerEvent)) {
        for _ in 0..50 {
            self.to_server.extend_from_slice(&self.client.take_output());
            let mut events = Vec::new();
            self.server.feed(&mut self.to_server, &mut events).unwrap();
            for e in &events {
                decide(&mut self.server, e);
            }
            self.server_events.extend(events);
            let out = self.server.take_output();
            if out.is_empty() && self.to_server.is_empty() && !self.client_has_output() {
                return;
            }
            self.to_client.extend_from_slice(&out);
            self.client.feed(&mut self.to_client, &mut self.client_events).unwrap();
        }
    }

    fn client_has_output(&mut self) -> bool {
        let out = self.client.take_output();
        let has = !out.is_empty();
        self.to_server.extend_from_slice(&out);
        has
    }

    fn statuses(&self) -> Vec<String> {
        self.client_events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Status { code, .. } => Some(code.clone()),
                _ => None,
            })
            .collect()
    }
}

fn answer(server: &mut ServerSession, ev: &ServerEvent) {
    match ev {
        ServerEvent::Connect(_) => server.accept_connect(),
        ServerEvent::Publish { stream_id, name, .. } => server.accept_publish(*stream_id, name),
        ServerEvent::Play { stream_id, name, reset, .. } => server.accept_play(*stream_id, name, *reset),
        _ => {}
    }
}

#[test]
fn publish_flow_reaches_publish_start_and_media() {
    for complex in [false, true] {
        let mut p = Pair::new(Role::Publish("cam?key=abc".into()), complex);
        p.run(answer);
        assert!(p.client_events.contains(&ClientEvent::Connected));
        assert!(p.statuses().contains(&"NetStream.Publish.Start".to_string()), "{:?}", p.client_events);
        let publish = p.server_events.iter().find_map(|e| match e {
            ServerEvent::Publish { name, args, kind, .. } => Some((name.clone(), args.clone(), kind.clone())),
            _ => None,
        });
        assert_eq!(publish, Some(("cam".into(), "key=abc".into(), "live".into())));
        // Media larger than the chunk size arrives whole, with its timestamp.
        let frame = vec![0x17u8; 10_000];
        p.client.send_media(MediaKind::Video, 40, &frame);
        p.client.send_metadata(amf0::Value::EcmaArray(vec![("width".into(), amf0::Value::Number(640.0))]));
        p.run(answer);
        let media: Vec<_> = p
            .server_events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Media { kind, timestamp, payload, .. } => Some((*kind, *timestamp, payload.len())),
                _ => None,
            })
            .collect();
        assert_eq!(media[0], (MediaKind::Video, 40, 10_000));
        assert_eq!(media[1].0, MediaKind::Data);
    }
}

#[test]
fn a_session_holds_no_buffers_between_reads() {
    let mut p = Pair::new(Role::Publish("cam".into()), true);
    p.run(answer);
    assert!(p.statuses().contains(&"NetStream.Publish.Start".to_string()));
    p.client.send_media(MediaKind::Video, 40, &[0x17; 10_000]);
    p.run(answer);
    assert_eq!(p.server.held_capacity(), 0, "handshake and reply buffers given back");
}

#[test]
fn metadata_loses_set_data_frame() {
    let mut p = Pair::new(Role::Publish("s".into()), false);
    p.run(answer);
    p.client.send_metadata(amf0::Value::EcmaArray(vec![("width".into(), amf0::Value::Number(640.0))]));
    p.run(answer);
    let payload = p
        .server_events
        .iter()
        .find_map(|e| match e {
            ServerEvent::Media { kind: MediaKind::Data, payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .unwrap();
    let values = amf0::decode_all(&payload).unwrap();
    assert_eq!(values[0].as_str(), Some("onMetaData"));
    assert_eq!(values[1].get("width").and_then(amf0::Value::as_f64), Some(640.0));
}

#[test]
fn play_flow_gets_reset_and_start() {
    let mut p = Pair::new(Role::Play("cam".into()), false);
    p.run(|s, e| {
        if let ServerEvent::Play { stream_id, name, .. } = e {
            s.accept_play(*stream_id, name, true);
        } else {
            answer(s, e)
        }
    });
    assert_eq!(p.statuses(), vec!["NetStream.Play.Reset".to_string(), "NetStream.Play.Start".to_string()]);
    assert!(p.client_events.contains(&ClientEvent::StreamControl(user_control::STREAM_BEGIN, 1)));
}

#[test]
fn rejected_connect_reports_error_status() {
    let mut p = Pair::new(Role::Play("cam".into()), false);
    p.run(|s, e| {
        if let ServerEvent::Connect(_) = e {
            s.reject_connect("no such app")
        }
    });
    assert_eq!(p.statuses(), vec!["NetConnection.Connect.Rejected".to_string()]);
}

#[test]
fn a_long_rejection_uses_the_default_chunk_size() {
    // Before connect is accepted no Set Chunk Size was sent: the peer reads 128-byte chunks.
    let mut p = Pair::new(Role::Play("cam".into()), false);
    let why = "x".repeat(400);
    p.run(|s, e| {
        if let ServerEvent::Connect(_) = e {
            s.reject_connect(&why)
        }
    });
    assert_eq!(p.statuses(), vec!["NetConnection.Connect.Rejected".to_string()]);
}

#[test]
fn server_acknowledges_after_window() {
    let mut p = Pair::new(Role::Publish("s".into()), false);
    p.run(answer);
    // The client sends no Window Ack Size here, so tell the server one by hand.
    let mut out = BytesMut::new();
    rtmp::message::window_ack_size(&mut out, 1000);
    p.to_server.extend_from_slice(&out);
    p.client.send_media(MediaKind::Audio, 0, &[0xAF; 3000]);
    p.to_server.extend_from_slice(&p.client.take_output());
    let mut events = Vec::new();
    p.server.feed(&mut p.to_server, &mut events).unwrap();
    let reply = p.server.take_output();
    let mut dec = rtmp::ChunkDecoder::new(1 << 20, 32);
    let mut buf = BytesMut::from(&reply[..]);
    let msg = dec.read(&mut buf).unwrap().unwrap();
    assert_eq!(msg.type_id, rtmp::message::type_id::ACK);
}

#[test]
fn ping_carries_the_callers_time() {
    let mut p = Pair::new(Role::Play("cam".into()), false);
    p.run(answer);
    p.server.send_ping(123_456);
    p.run(answer);
    assert!(p.server_events.contains(&ServerEvent::PingResponse(123_456)), "{:?}", p.server_events);
}

#[test]
fn session_timers_ping_a_silent_peer_and_time_out() {
    use rtmp::{SessionError, TimeoutError, Timeouts};
    use std::time::Duration;
    let secs = Duration::from_secs;
    let timeouts = Timeouts { connect: Some(secs(5)), ping: Some(secs(10)), ping_timeout: secs(3) };
    let mut p = Pair::new(Role::Play("cam".into()), false);
    p.server = ServerSession::new(ServerConfig { timeouts, ..ServerConfig::default() }, 0, &mut rand::thread_rng());
    assert_eq!(p.server.poll_timeout(), Some(secs(5)), "the connect deadline runs first");
    p.run(answer);
    assert_eq!(p.server.poll_timeout(), Some(secs(10)), "connected: ping after silence");
    p.server.handle_timeout(secs(10)).unwrap();
    assert!(p.server.has_output(), "the ping is queued as output bytes");
    p.run(answer);
    assert!(p.server_events.contains(&ServerEvent::PingResponse(10_000)), "{:?}", p.server_events);
    // `run` feeds without time; a silent peer now fails the ping timeout.
    assert_eq!(p.server.poll_timeout(), Some(secs(13)));
    let err = p.server.handle_timeout(secs(13)).unwrap_err();
    assert!(matches!(err, SessionError::Timeout(TimeoutError::Ping(_))), "{err}");
}

#[test]
fn session_timers_connect_timeout() {
    use rtmp::{SessionError, TimeoutError, Timeouts};
    use std::time::Duration;
    let timeouts = Timeouts { connect: Some(Duration::from_secs(5)), ping: None, ping_timeout: Duration::ZERO };
    let mut server =
        ServerSession::new(ServerConfig { timeouts, ..ServerConfig::default() }, 0, &mut rand::thread_rng());
    let mut events = Vec::new();
    server.handle_input(&mut BytesMut::from(&[3u8][..]), &mut events, Duration::from_secs(4)).unwrap();
    server.handle_timeout(Duration::from_secs(4)).unwrap();
    let err = server.handle_timeout(Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err, SessionError::Timeout(TimeoutError::Connect(_))), "{err}");
}

#[test]
fn client_timers_ping_the_server_after_connect() {
    use rtmp::{SessionError, TimeoutError, Timeouts};
    use std::time::Duration;
    let secs = Duration::from_secs;
    let mut p = Pair::new(Role::Play("cam".into()), false);
    p.client.set_timeouts(Timeouts { connect: Some(secs(5)), ping: Some(secs(10)), ping_timeout: secs(3) });
    assert_eq!(p.client.poll_timeout(), Some(secs(5)));
    p.run(answer);
    assert_eq!(p.client.poll_timeout(), Some(secs(10)), "connected: ping after silence");
    p.client.handle_timeout(secs(10)).unwrap();
    let mut events = Vec::new();
    p.server.feed(&mut BytesMut::from(&p.client.take_output()[..]), &mut events).unwrap();
    // The server answers with a Ping Response: input for the client, which clears the ping.
    let mut reply = BytesMut::from(&p.server.take_output()[..]);
    assert!(!reply.is_empty(), "the server answered the ping");
    p.client.handle_input(&mut reply, &mut p.client_events, secs(11)).unwrap();
    assert_eq!(p.client.poll_timeout(), Some(secs(21)));
    p.client.handle_timeout(secs(21)).unwrap();
    let err = p.client.handle_timeout(secs(24)).unwrap_err();
    assert!(matches!(err, SessionError::Timeout(TimeoutError::Ping(_))), "{err}");
}

/// Append an AMF0 command on chunk stream 3 with the default chunk size.
fn command(out: &mut BytesMut, stream_id: u32, name: &str, txn: f64, args: Vec<amf0::Value>) {
    let object = if name == "connect" {
        amf0::Value::object([("app", "live".into()), ("tcUrl", "rtmp://localhost/live".into())])
    } else {
        amf0::Value::Null
    };
    let cmd = rtmp::command::Command { name: name.into(), transaction_id: txn, object, args };
    rtmp::chunk::encode_message(out, 128, 3, 0, rtmp::message::type_id::COMMAND_AMF0, stream_id, &cmd.encode());
}

/// The commands in `bytes` of server output as (name, transaction id, first argument's code
/// or number), following the server's Set Chunk Size as a client does.
fn replies(bytes: &[u8]) -> Vec<(String, f64, String)> {
    let mut dec = rtmp::ChunkDecoder::new(1 << 20, 32);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(msg) = dec.read(&mut buf).unwrap() {
        match msg.type_id {
            rtmp::message::type_id::SET_CHUNK_SIZE => {
                dec.set_chunk_size(rtmp::message::parse_u32(&msg.payload).unwrap()).unwrap()
            }
            rtmp::message::type_id::COMMAND_AMF0 => {
                let cmd = rtmp::command::Command::parse(msg.type_id, &msg.payload).unwrap();
                let arg = match cmd.arg(0) {
                    Some(amf0::Value::Number(n)) => n.to_string(),
                    Some(v) => v.get("code").and_then(amf0::Value::as_str).unwrap_or("").to_string(),
                    None => String::new(),
                };
                out.push((cmd.name, cmd.transaction_id, arg));
            }
            _ => {}
        }
    }
    assert!(buf.is_empty(), "{} bytes of a partial chunk", buf.len());
    out
}

#[test]
fn commands_pipelined_behind_connect_are_answered_in_order() {
    let mut server = handshaken_server();
    // A name long enough that onFCPublish spans 128-byte chunks: held replies must be chunked
    // with the size announced by the accepted connect.
    let name = "c".repeat(300);
    let mut bytes = BytesMut::new();
    command(&mut bytes, 0, "connect", 1.0, vec![]);
    command(&mut bytes, 0, "releaseStream", 2.0, vec![name.as_str().into()]);
    command(&mut bytes, 0, "FCPublish", 3.0, vec![name.as_str().into()]);
    command(&mut bytes, 0, "createStream", 4.0, vec![]);
    command(&mut bytes, 1, "publish", 5.0, vec![name.as_str().into(), "live".into()]);
    let mut events = Vec::new();
    server.feed(&mut bytes, &mut events).unwrap();
    assert!(matches!(&events[..], [ServerEvent::Connect(_), ServerEvent::Publish { stream_id: 1, .. }]), "{events:?}");
    // Nothing is answered while the connect is being decided (an on_connect callback).
    assert!(!server.has_output());
    server.accept_connect();
    server.accept_publish(1, &name);
    let got = replies(&server.take_output());
    let want = [
        ("_result", 1.0, "NetConnection.Connect.Success"),
        ("_result", 2.0, ""),
        ("onFCPublish", 0.0, "NetStream.Publish.Start"),
        ("_result", 4.0, "1"),
        ("onStatus", 0.0, "NetStream.Publish.Start"),
    ];
    let want: Vec<_> = want.iter().map(|(n, t, a)| (n.to_string(), *t, a.to_string())).collect();
    assert_eq!(got, want);
}

#[test]
fn a_rejected_connect_drops_pipelined_replies() {
    let mut server = handshaken_server();
    let mut bytes = BytesMut::new();
    command(&mut bytes, 0, "connect", 1.0, vec![]);
    command(&mut bytes, 0, "createStream", 2.0, vec![]);
    let mut events = Vec::new();
    server.feed(&mut bytes, &mut events).unwrap();
    server.reject_connect("no");
    let got = replies(&server.take_output());
    assert_eq!(got, vec![("_error".to_string(), 1.0, "NetConnection.Connect.Rejected".to_string())]);
}

#[test]
fn pipelining_is_bounded_and_commands_before_connect_are_refused() {
    let mut server = handshaken_server();
    let mut bytes = BytesMut::new();
    command(&mut bytes, 0, "connect", 1.0, vec![]);
    for txn in 0..=rtmp::server::MAX_HELD_REPLIES {
        command(&mut bytes, 0, "createStream", 2.0 + txn as f64, vec![]);
    }
    let err = server.feed(&mut bytes, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, rtmp::SessionError::TooManyPipelined { .. }), "{err}");
    let mut server = handshaken_server();
    let mut bytes = BytesMut::new();
    command(&mut bytes, 0, "createStream", 1.0, vec![]);
    let err = server.feed(&mut bytes, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, rtmp::SessionError::NotConnected(_)), "{err}");
}

/// `seek` and Set Buffer Length reach the caller as events (a file's player acts on them); a
/// negative seek time reads as 0.
#[test]
fn seek_and_buffer_length_reach_the_caller() {
    let mut p = Pair::new(Role::Play("cam".into()), false);
    p.run(|s, e| {
        if let ServerEvent::Play { stream_id, name, .. } = e {
            s.accept_play(*stream_id, name, false);
        } else {
            answer(s, e)
        }
    });
    let buffer = ServerEvent::BufferLength { stream_id: 1, millis: 1000 };
    assert!(p.server_events.contains(&buffer), "{:?}", p.server_events);
    let mut raw = BytesMut::new();
    command(&mut raw, 1, "seek", 0.0, vec![amf0::Value::Number(5000.0)]);
    command(&mut raw, 1, "seek", 0.0, vec![amf0::Value::Number(-3.0)]);
    let mut events = Vec::new();
    p.server.feed(&mut raw, &mut events).unwrap();
    assert_eq!(
        events,
        [ServerEvent::Seek { stream_id: 1, millis: 5000.0 }, ServerEvent::Seek { stream_id: 1, millis: 0.0 }]
    );
}

/// `getStreamLength` reaches the caller with its name (a file's duration is the caller's to
/// know), and the caller's answer is a `_result` with the number of seconds.
#[test]
fn get_stream_length_is_answered_by_the_caller() {
    let mut p = Pair::new(Role::Play("cam".into()), false);
    p.run(answer);
    let mut raw = BytesMut::new();
    command(&mut raw, 1, "getStreamLength", 7.0, vec!["mp4:film?k=v".into()]);
    let mut events = Vec::new();
    p.server.feed(&mut raw, &mut events).unwrap();
    let asked =
        ServerEvent::StreamLength { stream_id: 1, transaction_id: 7.0, name: "mp4:film".into(), args: "k=v".into() };
    assert_eq!(events, [asked]);
    p.server.take_output();
    p.server.answer_stream_length(7.0, 12.5);
    assert_eq!(replies(&p.server.take_output()), [("_result".to_string(), 7.0, "12.5".to_string())]);
}

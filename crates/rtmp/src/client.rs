//! The client side of an RTMP connection as a state machine, used by sluice's tests, its load
//! tool and its relays. It drives connect → createStream → publish/play by itself.
//!
//! Call [`ClientSession::start`] once, then [`ClientSession::feed`] with socket input; write
//! [`ClientSession::take_output`] to the socket after each call.

use amf0::Value;
use bytes::{Bytes, BytesMut};

use crate::chunk::{encode_message, ChunkDecoder, RawMessage, DEFAULT_CHUNK_SIZE};
use crate::command::{decode_values, Command};
use crate::handshake::{ClientHandshake, HandshakeStatus};
use crate::message::{self, csid, type_id, user_control, UserControl};
use crate::server::{MediaKind, SessionError};
use crate::timer::{Timeouts, Timers};
use std::time::Duration;

/// What the client will do once connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Publish a live stream with this name (may carry `?args`).
    Publish(String),
    /// Play this stream name.
    Play(String),
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Application to connect to.
    pub app: String,
    /// `tcUrl` to announce.
    pub tc_url: String,
    /// Publish or play.
    pub role: Role,
    /// Use the digest handshake.
    pub complex_handshake: bool,
    /// Chunk size to send with (announced with Set Chunk Size after connect).
    pub chunk_size: u32,
    /// Buffer length to announce when playing, in milliseconds.
    pub buffer_ms: u32,
    /// Speak as nginx-rtmp's relay does (its `connect` fields and `play` range); `None`: as
    /// sluice's test client.
    pub relay: Option<RelayFields>,
}

/// What nginx-rtmp's relay module sends that a plain client does not
/// (`ngx_rtmp_relay_send_connect`, `ngx_rtmp_relay_send_play`).
#[derive(Debug, Clone, PartialEq)]
pub struct RelayFields {
    /// `flashVer` (nginx-rtmp: `LNX.11,1,102,55`).
    pub flash_ver: String,
    /// `pageUrl`; empty: not sent.
    pub page_url: String,
    /// `swfUrl`; empty: not sent.
    pub swf_url: String,
    /// `play`'s start argument (ms).
    pub play_start: f64,
    /// `play`'s duration argument (ms).
    pub play_duration: f64,
}

/// nginx-rtmp's relay `audioCodecs`.
const RELAY_AUDIO_CODECS: f64 = 3575.0;
/// nginx-rtmp's relay `videoCodecs`.
const RELAY_VIDEO_CODECS: f64 = 252.0;

/// What happened on the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `connect` succeeded.
    Connected,
    /// The stream was created; publish or play has been sent.
    StreamCreated(u32),
    /// An `onStatus` (or connect `_error`) arrived.
    Status {
        /// `status`, `warning` or `error`.
        level: String,
        /// For example `NetStream.Play.Start`.
        code: String,
        /// Human-readable text.
        description: String,
    },
    /// Audio, video or data on the played stream.
    Media {
        /// What it is.
        kind: MediaKind,
        /// Timestamp in milliseconds.
        timestamp: u32,
        /// Body.
        payload: Bytes,
    },
    /// A User Control Stream Begin/EOF/Dry event.
    StreamControl(u16, u32),
}

enum State {
    Handshake(Box<ClientHandshake>),
    Connecting,
    CreatingStream,
    Ready(u32),
}

/// The client half of one RTMP connection.
pub struct ClientSession {
    config: ClientConfig,
    state: State,
    decoder: ChunkDecoder,
    out: BytesMut,
    scratch: Vec<u8>,
    received: u64,
    acked: u64,
    peer_window: u32,
    next_txn: f64,
    timers: Timers,
}

impl ClientSession {
    /// Refuse incoming messages over `max_message` bytes (64 MiB unless set), as the server
    /// side's `max_message` does; call it before the first input.
    pub fn set_max_message(&mut self, max_message: u32) {
        self.decoder = ChunkDecoder::new(max_message, 1024);
    }

    /// A client that has not sent anything yet.
    pub fn new(config: ClientConfig, epoch_ms: u32, rng: &mut impl rand::RngCore) -> Self {
        let hs = ClientHandshake::new(config.complex_handshake, epoch_ms, rng);
        Self {
            config,
            state: State::Handshake(Box::new(hs)),
            decoder: ChunkDecoder::new(64 << 20, 1024),
            out: BytesMut::with_capacity(4096),
            scratch: Vec::new(),
            received: 0,
            acked: 0,
            peer_window: 0,
            next_txn: 1.0,
            timers: Timers::new(Timeouts::default()),
        }
    }

    /// Write C0 and C1.
    pub fn start(&mut self) {
        if let State::Handshake(hs) = &mut self.state {
            self.scratch.clear();
            hs.start(&mut self.scratch);
            self.out.extend_from_slice(&self.scratch);
        }
    }

    /// Turn on the connect timeout and pings (off by default), as [`crate::ServerConfig::timeouts`]
    /// does for a server: a relay drops a silent or never-connecting server the same way.
    /// Time counts from the session's creation.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timers = Timers::new(timeouts);
    }

    /// [`ClientSession::feed`] for input that arrived at `now` (time since the session started).
    pub fn handle_input(
        &mut self,
        input: &mut BytesMut,
        events: &mut Vec<ClientEvent>,
        now: Duration,
    ) -> Result<(), SessionError> {
        self.timers.on_input(now);
        self.feed(input, events)
    }

    /// When the caller must call [`ClientSession::handle_timeout`]; `None`: not before more input.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers.poll_timeout()
    }

    /// Fire the timers due at `now`: queue a ping to a silent server, or fail with
    /// [`SessionError::Timeout`] when the connect or a ping went unanswered.
    pub fn handle_timeout(&mut self, now: Duration) -> Result<(), SessionError> {
        if let Some(value) = self.timers.handle_timeout(now)? {
            message::user_control(&mut self.out, user_control::PING_REQUEST, value);
        }
        Ok(())
    }

    /// Take the bytes to write to the socket.
    pub fn take_output(&mut self) -> Bytes {
        self.out.split().freeze()
    }

    /// The stream id once publish/play has been sent.
    pub fn stream_id(&self) -> Option<u32> {
        match self.state {
            State::Ready(id) => Some(id),
            _ => None,
        }
    }

    /// Feed socket input, collecting events.
    pub fn feed(&mut self, input: &mut BytesMut, events: &mut Vec<ClientEvent>) -> Result<(), SessionError> {
        let before = input.len();
        let result = self.feed_inner(input, events);
        // Count what was consumed: bytes left in `input` arrive again with the next call.
        self.received += (before - input.len()) as u64;
        self.maybe_ack();
        result
    }

    fn feed_inner(&mut self, input: &mut BytesMut, events: &mut Vec<ClientEvent>) -> Result<(), SessionError> {
        if let State::Handshake(hs) = &mut self.state {
            self.scratch.clear();
            let status = hs.feed(input, &mut self.scratch)?;
            self.out.extend_from_slice(&self.scratch);
            if status != HandshakeStatus::Done {
                return Ok(());
            }
            self.send_connect();
        }
        while let Some(msg) = self.decoder.read(input)? {
            self.handle_message(msg, events)?;
        }
        Ok(())
    }

    /// Count `n` bytes received but discarded unparsed (a drain-only load-test player), still
    /// acknowledging them as the protocol requires.
    pub fn skip_received(&mut self, n: usize) {
        self.received += n as u64;
        self.maybe_ack();
    }

    /// Bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    fn maybe_ack(&mut self) {
        if self.peer_window > 0 && self.received - self.acked >= self.peer_window as u64 {
            self.acked = self.received;
            message::ack(&mut self.out, self.received as u32);
        }
    }

    /// Send a media message on the published stream (encoded with our chunk size).
    pub fn send_media(&mut self, kind: MediaKind, timestamp: u32, payload: &[u8]) {
        let stream_id = self.stream_id().unwrap_or(1);
        let body_type = kind.type_id();
        encode_message(&mut self.out, self.config.chunk_size, kind.csid(), timestamp, body_type, stream_id, payload);
    }

    /// Send `@setDataFrame onMetaData {..}`.
    pub fn send_metadata(&mut self, metadata: Value) {
        let body = crate::command::encode_values(&[
            Value::String("@setDataFrame".into()),
            Value::String("onMetaData".into()),
            metadata,
        ]);
        self.send_media(MediaKind::Data, 0, &body);
    }

    /// Send `FCUnpublish` and `deleteStream`, as FFmpeg does when it ends a publish.
    pub fn close_stream(&mut self) {
        if let (State::Ready(id), Role::Publish(name)) = (&self.state, &self.config.role) {
            let (id, name) = (*id, name.clone());
            self.command(0, "FCUnpublish", Value::Null, vec![Value::String(name)]);
            self.command(0, "deleteStream", Value::Null, vec![Value::Number(id as f64)]);
        }
    }

    fn command(&mut self, stream_id: u32, name: &str, object: Value, args: Vec<Value>) {
        let cmd = Command { name: name.into(), transaction_id: self.next_txn, object, args };
        self.next_txn += 1.0;
        let chunk_size = self.out_chunk_size();
        encode_message(&mut self.out, chunk_size, csid::COMMAND, 0, type_id::COMMAND_AMF0, stream_id, &cmd.encode());
    }

    fn out_chunk_size(&self) -> u32 {
        match self.state {
            State::Handshake(_) | State::Connecting => DEFAULT_CHUNK_SIZE,
            _ => self.config.chunk_size,
        }
    }

    fn send_connect(&mut self) {
        self.state = State::Connecting;
        let obj = match &self.config.relay {
            Some(relay) => self.relay_connect_object(relay),
            None => self.connect_object(),
        };
        self.command(0, "connect", obj, vec![]);
    }

    /// nginx-rtmp's relay `connect`, plus the E-RTMP codec list so that HEVC and AV1 pass.
    fn relay_connect_object(&self, relay: &RelayFields) -> Value {
        let mut fields = vec![
            ("app".into(), Value::String(self.config.app.clone())),
            ("tcUrl".into(), Value::String(self.config.tc_url.clone())),
        ];
        if !relay.page_url.is_empty() {
            fields.push(("pageUrl".into(), Value::String(relay.page_url.clone())));
        }
        if !relay.swf_url.is_empty() {
            fields.push(("swfUrl".into(), Value::String(relay.swf_url.clone())));
        }
        fields.extend([
            ("flashVer".into(), Value::String(relay.flash_ver.clone())),
            ("audioCodecs".into(), Value::Number(RELAY_AUDIO_CODECS)),
            ("videoCodecs".into(), Value::Number(RELAY_VIDEO_CODECS)),
            ("fourCcList".into(), four_cc_list()),
        ]);
        Value::Object(fields)
    }

    fn connect_object(&self) -> Value {
        Value::Object(vec![
            ("app".into(), Value::String(self.config.app.clone())),
            ("flashVer".into(), Value::String("FMLE/3.0 (compatible; sluice)".into())),
            ("tcUrl".into(), Value::String(self.config.tc_url.clone())),
            ("fpad".into(), Value::Boolean(false)),
            ("capabilities".into(), Value::Number(15.0)),
            ("audioCodecs".into(), Value::Number(4071.0)),
            ("videoCodecs".into(), Value::Number(252.0)),
            ("videoFunction".into(), Value::Number(1.0)),
            ("fourCcList".into(), four_cc_list()),
        ])
    }

    fn handle_message(&mut self, msg: RawMessage, events: &mut Vec<ClientEvent>) -> Result<(), SessionError> {
        match msg.type_id {
            type_id::SET_CHUNK_SIZE => {
                if let Some(size) = message::parse_u32(&msg.payload) {
                    self.decoder.set_chunk_size(size)?;
                }
            }
            type_id::WINDOW_ACK_SIZE => self.peer_window = message::parse_u32(&msg.payload).unwrap_or(0),
            type_id::USER_CONTROL => match UserControl::parse(&msg.payload) {
                Some(UserControl::PingRequest(t)) => {
                    message::user_control(&mut self.out, user_control::PING_RESPONSE, t)
                }
                Some(UserControl::Stream(e, id)) => events.push(ClientEvent::StreamControl(e, id)),
                _ => {}
            },
            type_id::AUDIO | type_id::VIDEO | type_id::DATA_AMF0 => {
                let kind = match msg.type_id {
                    type_id::AUDIO => MediaKind::Audio,
                    type_id::VIDEO => MediaKind::Video,
                    _ => MediaKind::Data,
                };
                events.push(ClientEvent::Media { kind, timestamp: msg.timestamp, payload: msg.payload });
            }
            type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3 => {
                let cmd = Command::parse(msg.type_id, &msg.payload)?;
                self.handle_command(cmd, events);
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_command(&mut self, cmd: Command, events: &mut Vec<ClientEvent>) {
        match (cmd.name.as_str(), &self.state) {
            ("_result", State::Connecting) => {
                self.timers.on_connected();
                events.push(ClientEvent::Connected);
                if self.config.chunk_size != DEFAULT_CHUNK_SIZE {
                    message::set_chunk_size(&mut self.out, self.config.chunk_size);
                }
                self.state = State::CreatingStream;
                if let Role::Publish(name) = self.config.role.clone() {
                    self.command(0, "releaseStream", Value::Null, vec![Value::String(name.clone())]);
                    self.command(0, "FCPublish", Value::Null, vec![Value::String(name)]);
                }
                self.command(0, "createStream", Value::Null, vec![]);
            }
            ("_result", State::CreatingStream) => {
                let id = cmd.arg(0).and_then(Value::as_f64).unwrap_or(1.0) as u32;
                self.state = State::Ready(id);
                events.push(ClientEvent::StreamCreated(id));
                match self.config.role.clone() {
                    Role::Publish(name) => self.command(
                        id,
                        "publish",
                        Value::Null,
                        vec![Value::String(name), Value::String("live".into())],
                    ),
                    Role::Play(name) => {
                        let range = match &self.config.relay {
                            Some(r) => vec![Value::Number(r.play_start), Value::Number(r.play_duration)],
                            None => vec![Value::Number(-2.0)],
                        };
                        let args = std::iter::once(Value::String(name)).chain(range).collect();
                        self.command(id, "play", Value::Null, args);
                        // After `play`, as nginx-rtmp's relay (`relay_buffer`) and librtmp do.
                        message::set_buffer_length(&mut self.out, id, self.config.buffer_ms);
                    }
                }
            }
            ("onStatus", _) | ("_error", _) => {
                let info = cmd.args.first().unwrap_or(&Value::Null);
                let get = |k: &str| info.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                events.push(ClientEvent::Status {
                    level: get("level"),
                    code: get("code"),
                    description: get("description"),
                });
            }
            _ => {}
        }
    }
}

/// The E-RTMP codecs a client announces it can take.
fn four_cc_list() -> Value {
    Value::StrictArray(["av01", "vp09", "hvc1", "avc1"].iter().map(|s| Value::String((*s).into())).collect())
}

/// Decode a data message body (for example `onMetaData`) into AMF values.
pub fn decode_data(payload: &[u8]) -> Result<Vec<Value>, SessionError> {
    Ok(decode_values(type_id::DATA_AMF0, payload, "data message")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{ServerConfig, ServerEvent, ServerSession};

    fn relay_fields() -> RelayFields {
        RelayFields {
            flash_ver: "LNX.11,1,102,55".into(),
            page_url: "http://page".into(),
            swf_url: String::new(),
            play_start: -1000.0,
            play_duration: 5000.0,
        }
    }

    /// Runs a client against a server that accepts everything; returns the server's events.
    fn run(config: ClientConfig) -> (Vec<ServerEvent>, Vec<ClientEvent>, BytesMut) {
        let mut rng = rand::thread_rng();
        let mut client = ClientSession::new(config, 0, &mut rng);
        let mut server = ServerSession::new(ServerConfig::default(), 0, &mut rng);
        client.start();
        let (mut server_events, mut client_events) = (Vec::new(), Vec::new());
        let (mut to_server, mut to_client) = (BytesMut::new(), BytesMut::new());
        let mut raw = BytesMut::new();
        for _ in 0..20 {
            let out = client.take_output();
            raw.extend_from_slice(&out);
            to_server.extend_from_slice(&out);
            let mut events = Vec::new();
            server.feed(&mut to_server, &mut events).unwrap();
            for e in &events {
                match e {
                    ServerEvent::Connect(_) => server.accept_connect(),
                    ServerEvent::Publish { stream_id, name, .. } => server.accept_publish(*stream_id, name),
                    ServerEvent::Play { stream_id, name, reset, .. } => server.accept_play(*stream_id, name, *reset),
                    _ => {}
                }
            }
            server_events.extend(events);
            to_client.extend_from_slice(&server.take_output());
            client.feed(&mut to_client, &mut client_events).unwrap();
        }
        (server_events, client_events, raw)
    }

    fn config(role: Role, relay: Option<RelayFields>) -> ClientConfig {
        ClientConfig {
            app: "live".into(),
            tc_url: "rtmp://h/live".into(),
            role,
            complex_handshake: false,
            chunk_size: 4096,
            buffer_ms: 5000,
            relay,
        }
    }

    #[test]
    fn a_relay_connects_and_plays_as_nginx_rtmp() {
        let (events, client_events, raw) = run(config(Role::Play("cam".into()), Some(relay_fields())));
        let connect = events.iter().find_map(|e| match e {
            ServerEvent::Connect(info) => Some(info.clone()),
            _ => None,
        });
        let connect = connect.expect("connect");
        assert_eq!((connect.flash_ver.as_str(), connect.page_url.as_str()), ("LNX.11,1,102,55", "http://page"));
        assert_eq!(
            (connect.app.as_str(), connect.tc_url.as_str(), connect.swf_url.as_str()),
            ("live", "rtmp://h/live", "")
        );
        let play = events.iter().find_map(|e| match e {
            ServerEvent::Play { name, start, duration, .. } => Some((name.clone(), *start, *duration)),
            _ => None,
        });
        assert_eq!(play, Some(("cam".into(), -1000.0, 5000.0)));
        assert!(client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::Status { code, .. } if code == "NetStream.Play.Start")));
        // SetBufferLength (user control 3) for stream 1 with 5000 ms, after play.
        let set_buffer: &[u8] = &[0x00, 0x03, 0, 0, 0, 1, 0, 0, 0x13, 0x88];
        assert!(raw.windows(set_buffer.len()).any(|w| w == set_buffer), "SetBufferLength sent");
    }

    #[test]
    fn without_relay_fields_the_client_is_unchanged() {
        let (events, _, _) = run(config(Role::Play("cam".into()), None));
        let connect = events.iter().find_map(|e| match e {
            ServerEvent::Connect(info) => Some(info.clone()),
            _ => None,
        });
        assert_eq!(connect.unwrap().flash_ver, "FMLE/3.0 (compatible; sluice)");
        let play = events.iter().find_map(|e| match e {
            ServerEvent::Play { start, .. } => Some(*start),
            _ => None,
        });
        assert_eq!(play, Some(-2.0));
        let (events, client_events, _) = run(config(Role::Publish("cam".into()), Some(relay_fields())));
        assert!(events
            .iter()
            .any(|e| matches!(e, ServerEvent::Publish { name, kind, .. } if name == "cam" && kind == "live")));
        assert!(client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::Status { code, .. } if code == "NetStream.Publish.Start")));
    }
}

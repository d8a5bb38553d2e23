//! The server side of an RTMP connection as a state machine: bytes in, events and bytes out.
//!
//! Call order: [`ServerSession::feed`] with whatever the socket delivered; it runs the handshake,
//! reassembles messages, answers what needs no decision (acknowledgements, pings, createStream,
//! releaseStream, ...) and returns [`ServerEvent`]s for what does (connect, publish, play, media).
//! The caller answers those with the `accept_*`/`reject_*`/`send_*` methods, then writes
//! [`ServerSession::take_output`] to the socket. Media for players is not encoded here: the hub
//! shares pre-chunked frames between players (see [`crate::chunk::encode_message`]).
//!
//! Clients may pipeline commands behind `connect` without waiting for its `_result`
//! (nginx-rtmp handles them in order). Until the caller accepts or rejects the connect, the
//! session still handles what follows, but holds its replies (at most [`MAX_HELD_REPLIES`]):
//! [`ServerSession::accept_connect`] sends them after the connect's `_result`,
//! [`ServerSession::reject_connect`] drops them. Events such as `Publish` are returned as usual,
//! in order, after the `Connect` event: the caller handles them once it accepted the connect.

use amf0::Value;
use bytes::{Bytes, BytesMut};

use crate::chunk::{encode_message, ChunkDecoder, ChunkError, RawMessage};
use crate::command::{decode_values, encode_values, split_stream_name, status_object, Command, CommandError};
use crate::handshake::{HandshakeError, HandshakeStatus, ServerHandshake};
use crate::message::{self, csid, type_id, user_control, UserControl};
use crate::timer::{TimeoutError, Timeouts, Timers};
use std::time::Duration;

/// Limits and settings of a server connection (nginx-rtmp core directives).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Outgoing chunk size announced at connect (`chunk_size`).
    pub chunk_size: u32,
    /// Window acknowledgement size announced to the peer (`ack_window`).
    pub ack_window: u32,
    /// Largest incoming message accepted (`max_message`).
    pub max_message: u32,
    /// Most chunk streams in use at once (`max_streams`).
    pub max_streams: usize,
    /// Connect timeout and pings (`timeout`, `ping`, `ping_timeout`); off by default.
    pub timeouts: Timeouts,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            chunk_size: 4096,
            ack_window: 5_000_000,
            max_message: 1 << 20,
            max_streams: 32,
            timeouts: Timeouts::default(),
        }
    }
}

/// What kind of media a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Type 8.
    Audio,
    /// Type 9.
    Video,
    /// Type 18 metadata, with `@setDataFrame` already stripped.
    Data,
}

impl MediaKind {
    /// The RTMP message type id.
    pub fn type_id(self) -> u8 {
        match self {
            Self::Audio => type_id::AUDIO,
            Self::Video => type_id::VIDEO,
            Self::Data => type_id::DATA_AMF0,
        }
    }

    /// The chunk stream sluice sends this kind on.
    pub fn csid(self) -> u32 {
        match self {
            Self::Audio => csid::AUDIO,
            Self::Video => csid::VIDEO,
            Self::Data => csid::DATA,
        }
    }
}

/// Properties of the `connect` command.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectInfo {
    /// Application name (the path after the host, without query).
    pub app: String,
    /// Query string that came with the app name, if any.
    pub app_args: String,
    /// `tcUrl`.
    pub tc_url: String,
    /// `flashVer`.
    pub flash_ver: String,
    /// `swfUrl`.
    pub swf_url: String,
    /// `pageUrl`.
    pub page_url: String,
    /// `objectEncoding` (0 = AMF0, 3 = AMF3).
    pub object_encoding: f64,
}

/// What the caller must decide on or act upon.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// The client asks to connect to an application: answer with
    /// [`ServerSession::accept_connect`] or [`ServerSession::reject_connect`].
    Connect(ConnectInfo),
    /// The client wants to publish `name` on `stream_id`.
    Publish {
        /// Message stream id.
        stream_id: u32,
        /// Stream name without query.
        name: String,
        /// Query string after `?`.
        args: String,
        /// `live`, `record` or `append`.
        kind: String,
    },
    /// The client wants to play `name` on `stream_id`.
    Play {
        /// Message stream id.
        stream_id: u32,
        /// Stream name without query.
        name: String,
        /// Query string after `?`.
        args: String,
        /// Start argument (-2 live or recorded, -1 live only, >= 0 recorded from).
        start: f64,
        /// Duration argument (-1 until end).
        duration: f64,
        /// Reset flag.
        reset: bool,
    },
    /// Audio, video or metadata from a publisher.
    Media {
        /// Message stream id.
        stream_id: u32,
        /// What it is.
        kind: MediaKind,
        /// Timestamp in milliseconds.
        timestamp: u32,
        /// Body: the FLV tag body for audio/video; `onMetaData` + values for data.
        payload: Bytes,
    },
    /// Pause (`true`) or resume a play.
    Pause {
        /// Message stream id.
        stream_id: u32,
        /// Paused or resumed.
        paused: bool,
    },
    /// The client asks to play from `millis` (`seek`): answer with `NetStream.Seek.Notify`.
    Seek {
        /// Message stream id.
        stream_id: u32,
        /// Where to play from, in milliseconds (negative and non-finite values read as 0).
        millis: f64,
    },
    /// The client's buffer length (User Control `SetBufferLength`): how far ahead of real time
    /// a recorded stream may be sent.
    BufferLength {
        /// Message stream id.
        stream_id: u32,
        /// Buffer length in milliseconds.
        millis: u32,
    },
    /// The client ended publishing or playing on the stream (FCUnpublish, closeStream, deleteStream).
    CloseStream {
        /// Message stream id.
        stream_id: u32,
    },
    /// The client answered one of our pings.
    PingResponse(u32),
    /// `getStreamLength`: answer with [`ServerSession::answer_stream_length`] (a recorded
    /// stream's duration; 0 for a live one).
    StreamLength {
        /// Message stream id.
        stream_id: u32,
        /// The command's transaction id, for the answer.
        transaction_id: f64,
        /// Stream name without query.
        name: String,
        /// Query string after `?`.
        args: String,
    },
}

/// Why the connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Handshake failure.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// Bad chunking.
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    /// A malformed command.
    #[error("{0}")]
    Command(#[from] CommandError),
    /// A command arrived before `connect`.
    #[error("\"{0}\" before connect")]
    NotConnected(String),
    /// A second `connect` arrived while the first was still being decided.
    #[error("\"connect\" again while the first connect is being decided")]
    ConnectPending,
    /// More replies than [`MAX_HELD_REPLIES`] would wait for the connect to be decided.
    #[error("more than {limit} commands pipelined behind connect")]
    TooManyPipelined {
        /// [`MAX_HELD_REPLIES`].
        limit: usize,
    },
    /// The connect or a ping went unanswered too long.
    #[error(transparent)]
    Timeout(#[from] TimeoutError),
}

/// Replies to commands pipelined behind `connect` that wait for it to be decided; beyond this
/// the client is disconnected (real clients pipeline a handful: releaseStream, FCPublish,
/// createStream).
pub const MAX_HELD_REPLIES: usize = 16;

/// Where the client's `connect` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connect {
    /// Not received yet (or rejected): other commands are refused.
    Awaited,
    /// Received and handed to the caller, who has not answered yet: replies are held.
    Deciding,
    /// Accepted.
    Accepted,
}

/// A reply held back until the connect is decided. Encoded only when sent, with the chunk
/// size in force then (accepting the connect changes it).
struct HeldReply {
    stream_id: u32,
    command: Command,
}

enum State {
    Handshake(Box<ServerHandshake>),
    Connected,
}

/// The server half of one RTMP connection.
pub struct ServerSession {
    config: ServerConfig,
    state: State,
    decoder: ChunkDecoder,
    out: BytesMut,
    scratch: Vec<u8>,
    connect: Connect,
    held: Vec<HeldReply>,
    /// The chunk size the peer expects from us: RTMP's 128 until our Set Chunk Size.
    out_chunk_size: u32,
    next_stream_id: u32,
    received: u64,
    acked: u64,
    peer_window: u32,
    connect_transaction: f64,
    object_encoding: f64,
    timers: Timers,
}

impl ServerSession {
    /// A session awaiting the client's handshake. `epoch_ms` and `random` seed the handshake.
    pub fn new(config: ServerConfig, epoch_ms: u32, rng: &mut impl rand::RngCore) -> Self {
        let decoder = ChunkDecoder::new(config.max_message, config.max_streams);
        Self {
            timers: Timers::new(config.timeouts),
            config,
            state: State::Handshake(Box::new(ServerHandshake::new(epoch_ms, rng))),
            decoder,
            out: BytesMut::new(),
            scratch: Vec::new(),
            connect: Connect::Awaited,
            held: Vec::new(),
            out_chunk_size: crate::chunk::DEFAULT_CHUNK_SIZE,
            next_stream_id: 1,
            received: 0,
            acked: 0,
            peer_window: 0,
            connect_transaction: 1.0,
            object_encoding: 0.0,
        }
    }

    /// The outgoing chunk size this session announces.
    pub fn chunk_size(&self) -> u32 {
        self.out_chunk_size
    }

    /// Bytes waiting to be written to the socket.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Take the bytes waiting to be written to the socket: the whole buffer, so that the
    /// session holds none between its rare replies (a split kept the rest of a 4 KiB buffer
    /// per connection, thousands of which add up).
    pub fn take_output(&mut self) -> Bytes {
        std::mem::take(&mut self.out).freeze()
    }

    /// Bytes of buffer the session holds between reads (its output and handshake buffers;
    /// half-read messages not counted): none once the replies were taken.
    pub fn held_capacity(&self) -> usize {
        self.out.capacity() + self.scratch.capacity()
    }

    /// Total bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    /// Feed bytes from the socket: `input` is consumed as far as complete chunks allow.
    pub fn feed(&mut self, input: &mut BytesMut, events: &mut Vec<ServerEvent>) -> Result<(), SessionError> {
        let before = input.len();
        let result = self.feed_inner(input, events);
        // Count what was consumed: bytes left in `input` arrive again with the next call.
        self.received += (before - input.len()) as u64;
        self.maybe_ack();
        result
    }

    /// [`ServerSession::feed`] for input that arrived at `now` (time since the session started):
    /// the input counts as the peer's sign of life for pings.
    pub fn handle_input(
        &mut self,
        input: &mut BytesMut,
        events: &mut Vec<ServerEvent>,
        now: Duration,
    ) -> Result<(), SessionError> {
        self.timers.on_input(now);
        self.feed(input, events)
    }

    /// When the caller must call [`ServerSession::handle_timeout`] (time since the session
    /// started); `None`: not before more input. Waking earlier is harmless.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers.poll_timeout()
    }

    /// Fire the timers due at `now`: queue a ping to a silent peer (written with
    /// [`ServerSession::take_output`]), or fail with [`SessionError::Timeout`] for a connect
    /// or ping that went unanswered; the caller then closes the connection.
    pub fn handle_timeout(&mut self, now: Duration) -> Result<(), SessionError> {
        if let Some(value) = self.timers.handle_timeout(now)? {
            self.send_ping(value);
        }
        Ok(())
    }

    fn feed_inner(&mut self, input: &mut BytesMut, events: &mut Vec<ServerEvent>) -> Result<(), SessionError> {
        if let State::Handshake(hs) = &mut self.state {
            self.scratch.clear();
            let status = hs.feed(input, &mut self.scratch)?;
            self.out.extend_from_slice(&self.scratch);
            if status != HandshakeStatus::Done {
                return Ok(());
            }
            self.state = State::Connected;
            // Only the handshake uses it (3 KiB): not kept for the connection's life.
            self.scratch = Vec::new();
        }
        while let Some(msg) = self.decoder.read(input)? {
            self.handle_message(msg, events)?;
        }
        Ok(())
    }

    /// Send an Acknowledgement each time another window's worth of bytes arrived (5.4.3).
    fn maybe_ack(&mut self) {
        if self.peer_window > 0 && self.received - self.acked >= self.peer_window as u64 {
            self.acked = self.received;
            message::ack(&mut self.out, self.received as u32);
        }
    }

    fn handle_message(&mut self, msg: RawMessage, events: &mut Vec<ServerEvent>) -> Result<(), SessionError> {
        match msg.type_id {
            type_id::SET_CHUNK_SIZE => {
                if let Some(size) = message::parse_u32(&msg.payload) {
                    self.decoder.set_chunk_size(size)?;
                }
            }
            type_id::ABORT => {
                if let Some(id) = message::parse_u32(&msg.payload) {
                    self.decoder.abort(id);
                }
            }
            type_id::WINDOW_ACK_SIZE => self.peer_window = message::parse_u32(&msg.payload).unwrap_or(0),
            type_id::USER_CONTROL => self.handle_user_control(&msg.payload, events),
            type_id::AUDIO | type_id::VIDEO => events.push(ServerEvent::Media {
                stream_id: msg.stream_id,
                kind: if msg.type_id == type_id::AUDIO { MediaKind::Audio } else { MediaKind::Video },
                timestamp: msg.timestamp,
                payload: msg.payload,
            }),
            type_id::DATA_AMF0 | type_id::DATA_AMF3 => self.handle_data(msg, events)?,
            type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3 => {
                let cmd = Command::parse(msg.type_id, &msg.payload)?;
                self.handle_command(msg.stream_id, cmd, events)?;
            }
            type_id::AGGREGATE => self.handle_aggregate(msg, events),
            // Acknowledgements, Set Peer Bandwidth and shared objects need no answer.
            _ => {}
        }
        Ok(())
    }

    fn handle_user_control(&mut self, body: &[u8], events: &mut Vec<ServerEvent>) {
        match UserControl::parse(body) {
            Some(UserControl::PingRequest(t)) => message::user_control(&mut self.out, user_control::PING_RESPONSE, t),
            Some(UserControl::PingResponse(t)) => events.push(ServerEvent::PingResponse(t)),
            Some(UserControl::SetBufferLength { stream_id, millis }) => {
                events.push(ServerEvent::BufferLength { stream_id, millis })
            }
            _ => {}
        }
    }

    /// Keep `onMetaData` and friends; strip `@setDataFrame` so players get what FMS sends them.
    fn handle_data(&mut self, msg: RawMessage, events: &mut Vec<ServerEvent>) -> Result<(), SessionError> {
        let values = decode_values(msg.type_id, &msg.payload, "data message")?;
        let payload = match values.first().and_then(Value::as_str) {
            Some("@setDataFrame") => encode_values(&values[1..]),
            Some("@clearDataFrame") | None => return Ok(()),
            Some(_) if msg.type_id == type_id::DATA_AMF0 => msg.payload,
            Some(_) => encode_values(&values),
        };
        events.push(ServerEvent::Media {
            stream_id: msg.stream_id,
            kind: MediaKind::Data,
            timestamp: msg.timestamp,
            payload,
        });
        Ok(())
    }

    /// Aggregate messages (7.1.6) carry FLV-style tags back to back; unpack them into media events.
    fn handle_aggregate(&mut self, msg: RawMessage, events: &mut Vec<ServerEvent>) {
        let body = msg.payload;
        let mut pos = 0;
        let mut first_ts: Option<u32> = None;
        while pos + 11 <= body.len() {
            let tag_type = body[pos];
            let size = u32::from_be_bytes([0, body[pos + 1], body[pos + 2], body[pos + 3]]) as usize;
            let ts = u32::from_be_bytes([body[pos + 7], body[pos + 4], body[pos + 5], body[pos + 6]]);
            let start = pos + 11;
            if start + size > body.len() {
                break;
            }
            let base = *first_ts.get_or_insert(ts);
            let timestamp = msg.timestamp.wrapping_add(ts.wrapping_sub(base));
            let payload = body.slice(start..start + size);
            let kind = match tag_type {
                type_id::AUDIO => Some(MediaKind::Audio),
                type_id::VIDEO => Some(MediaKind::Video),
                _ => None,
            };
            if let Some(kind) = kind {
                events.push(ServerEvent::Media { stream_id: msg.stream_id, kind, timestamp, payload });
            }
            pos = start + size + 4;
        }
    }

    fn handle_command(
        &mut self,
        stream_id: u32,
        cmd: Command,
        events: &mut Vec<ServerEvent>,
    ) -> Result<(), SessionError> {
        match (self.connect, cmd.name.as_str()) {
            (Connect::Awaited, "connect") => self.connect = Connect::Deciding,
            (Connect::Awaited, _) => return Err(SessionError::NotConnected(cmd.name)),
            (Connect::Deciding, "connect") => return Err(SessionError::ConnectPending),
            _ => {}
        }
        let txn = cmd.transaction_id;
        match cmd.name.as_str() {
            "connect" => events.push(ServerEvent::Connect(self.connect_info(&cmd))),
            "createStream" => {
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.saturating_add(1);
                self.reply(0, "_result", txn, vec![Value::Number(id as f64)])?;
            }
            "releaseStream" => self.reply(0, "_result", txn, vec![Value::Undefined])?,
            "getStreamLength" => {
                let (name, args) = split_stream_name(&string_arg(&cmd, 0));
                events.push(ServerEvent::StreamLength { stream_id, transaction_id: txn, name, args });
            }
            "FCPublish" => {
                let name = string_arg(&cmd, 0);
                let info = status_object("status", "NetStream.Publish.Start", &name);
                self.reply(0, "onFCPublish", 0.0, vec![info])?;
            }
            "FCUnpublish" => {
                let name = string_arg(&cmd, 0);
                let info = status_object("status", "NetStream.Unpublish.Success", &name);
                self.reply(0, "onFCUnpublish", 0.0, vec![info])?;
            }
            "publish" => {
                let (name, args) = split_stream_name(&string_arg(&cmd, 0));
                let kind = cmd.arg(1).and_then(Value::as_str).unwrap_or("live").to_string();
                events.push(ServerEvent::Publish { stream_id, name, args, kind });
            }
            "play" => events.push(play_event(stream_id, &cmd)),
            "play2" => {
                let name = cmd.arg(0).and_then(|o| o.get("streamName")).and_then(Value::as_str).unwrap_or("");
                let (name, args) = split_stream_name(name);
                events.push(ServerEvent::Play { stream_id, name, args, start: -2.0, duration: -1.0, reset: true });
            }
            "pause" | "pauseRaw" => {
                let paused = cmd.arg(0).and_then(Value::as_bool).unwrap_or(true);
                events.push(ServerEvent::Pause { stream_id, paused });
            }
            "seek" => {
                let millis = cmd.arg(0).and_then(Value::as_f64).filter(|m| m.is_finite() && *m > 0.0).unwrap_or(0.0);
                events.push(ServerEvent::Seek { stream_id, millis });
            }
            "deleteStream" => {
                let id = cmd.arg(0).and_then(Value::as_f64).map_or(stream_id, |n| n as u32);
                events.push(ServerEvent::CloseStream { stream_id: id });
            }
            "closeStream" => events.push(ServerEvent::CloseStream { stream_id }),
            // _checkbw, receiveAudio/receiveVideo, _result of our own calls and unknown commands need no answer.
            _ => {}
        }
        Ok(())
    }

    /// Answer a command the session handles itself: now, or once the connect is accepted when
    /// it is still being decided.
    fn reply(&mut self, stream_id: u32, name: &str, txn: f64, args: Vec<Value>) -> Result<(), SessionError> {
        let command = Command { name: name.into(), transaction_id: txn, object: Value::Null, args };
        if self.connect != Connect::Deciding {
            self.send(stream_id, &command);
            return Ok(());
        }
        if self.held.len() >= MAX_HELD_REPLIES {
            return Err(SessionError::TooManyPipelined { limit: MAX_HELD_REPLIES });
        }
        self.held.push(HeldReply { stream_id, command });
        Ok(())
    }

    fn connect_info(&mut self, cmd: &Command) -> ConnectInfo {
        let get = |key: &str| cmd.object.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        let (app, app_args) = split_stream_name(get("app").trim_end_matches('/'));
        self.connect_transaction = cmd.transaction_id;
        self.object_encoding = cmd.object.get("objectEncoding").and_then(Value::as_f64).unwrap_or(0.0);
        ConnectInfo {
            app,
            app_args,
            tc_url: get("tcUrl"),
            flash_ver: get("flashVer"),
            swf_url: get("swfUrl"),
            page_url: get("pageUrl"),
            object_encoding: self.object_encoding,
        }
    }

    /// Accept the connect: announce window, bandwidth and chunk size, then `_result`, in the order
    /// nginx-rtmp uses; then the replies to commands pipelined behind the connect.
    pub fn accept_connect(&mut self) {
        self.connect = Connect::Accepted;
        self.timers.on_connected();
        message::window_ack_size(&mut self.out, self.config.ack_window);
        message::set_peer_bandwidth(&mut self.out, self.config.ack_window);
        message::set_chunk_size(&mut self.out, self.config.chunk_size);
        self.out_chunk_size = self.config.chunk_size;
        let props = Value::Object(vec![
            ("fmsVer".into(), Value::String("FMS/3,0,1,123".into())),
            ("capabilities".into(), Value::Number(31.0)),
        ]);
        let Value::Object(mut info) = status_object("status", "NetConnection.Connect.Success", "Connection succeeded.")
        else {
            unreachable!("status_object builds an object")
        };
        info.push(("objectEncoding".into(), Value::Number(self.object_encoding)));
        self.send_command(0, "_result", self.connect_transaction, props, vec![Value::Object(info)]);
        for held in std::mem::take(&mut self.held) {
            self.send(held.stream_id, &held.command);
        }
    }

    /// Refuse the connect with `NetConnection.Connect.Rejected`; close the connection after
    /// flushing. Replies to commands pipelined behind it are dropped.
    pub fn reject_connect(&mut self, description: &str) {
        self.connect = Connect::Awaited;
        self.held.clear();
        let info = status_object("error", "NetConnection.Connect.Rejected", description);
        self.send_command(0, "_error", self.connect_transaction, Value::Null, vec![info]);
    }

    /// Answer `getStreamLength` (transaction `txn`) with a duration in seconds.
    pub fn answer_stream_length(&mut self, txn: f64, seconds: f64) {
        self.send_command(0, "_result", txn, Value::Null, vec![Value::Number(seconds)]);
    }

    /// Send an `onStatus` on `stream_id`.
    pub fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        let info = status_object(level, code, description);
        self.send_command(stream_id, "onStatus", 0.0, Value::Null, vec![info]);
    }

    /// Tell a publisher it may start.
    pub fn accept_publish(&mut self, stream_id: u32, name: &str) {
        message::user_control(&mut self.out, user_control::STREAM_BEGIN, stream_id);
        self.send_status(stream_id, "status", "NetStream.Publish.Start", &format!("{name} is now published."));
    }

    /// Tell a player its stream starts: Stream Begin, Play.Reset, Play.Start, `|RtmpSampleAccess`.
    pub fn accept_play(&mut self, stream_id: u32, name: &str, reset: bool) {
        message::user_control(&mut self.out, user_control::STREAM_BEGIN, stream_id);
        if reset {
            self.send_status(stream_id, "status", "NetStream.Play.Reset", &format!("Playing and resetting {name}."));
        }
        self.send_status(stream_id, "status", "NetStream.Play.Start", &format!("Started playing {name}."));
        self.send_sample_access(stream_id);
    }

    /// `|RtmpSampleAccess(true, true)`: the data message that goes with Play.Start (it lets
    /// Flash players read the stream's samples).
    pub fn send_sample_access(&mut self, stream_id: u32) {
        let access =
            encode_values(&[Value::String("|RtmpSampleAccess".into()), Value::Boolean(true), Value::Boolean(true)]);
        encode_message(&mut self.out, self.out_chunk_size, csid::DATA, 0, type_id::DATA_AMF0, stream_id, &access);
    }

    /// Send a User Control event (Stream Begin/EOF/Dry, ping request).
    pub fn send_user_control(&mut self, event: u16, value: u32) {
        message::user_control(&mut self.out, event, value);
    }

    /// Send a Ping Request carrying `now_ms`, the caller's clock in milliseconds (any clock:
    /// the client echoes it back in its Ping Response, [`ServerEvent::PingResponse`]; nginx-rtmp
    /// sends its millisecond clock the same way). It wraps at 2^32 like RTMP timestamps.
    pub fn send_ping(&mut self, now_ms: u32) {
        message::user_control(&mut self.out, user_control::PING_REQUEST, now_ms);
    }

    /// Send an arbitrary command.
    pub fn send_command(&mut self, stream_id: u32, name: &str, txn: f64, object: Value, args: Vec<Value>) {
        let cmd = Command { name: name.into(), transaction_id: txn, object, args };
        self.send(stream_id, &cmd);
    }

    fn send(&mut self, stream_id: u32, cmd: &Command) {
        encode_message(
            &mut self.out,
            self.out_chunk_size,
            csid::COMMAND,
            0,
            type_id::COMMAND_AMF0,
            stream_id,
            &cmd.encode(),
        );
    }
}

fn string_arg(cmd: &Command, n: usize) -> String {
    cmd.arg(n).and_then(Value::as_str).unwrap_or("").to_string()
}

fn play_event(stream_id: u32, cmd: &Command) -> ServerEvent {
    let (name, args) = split_stream_name(&string_arg(cmd, 0));
    let start = cmd.arg(1).and_then(Value::as_f64).unwrap_or(-2.0);
    let duration = cmd.arg(2).and_then(Value::as_f64).unwrap_or(-1.0);
    let reset = cmd.arg(3).and_then(|v| v.as_bool().or(v.as_f64().map(|n| n != 0.0))).unwrap_or(false);
    ServerEvent::Play { stream_id, name, args, start, duration, reset }
}

//! One RTMP connection: the tokio glue around `rtmp::ServerSession`. It reads the socket, feeds
//! the session, turns its events into [`crate::streams`] calls (publish, play) and writes
//! replies and media. A connection publishes at most one stream and plays at most one; it
//! names no output module (they are [`crate::modules`]).
//!
//! Who may connect, publish and play is decided by [`crate::policy`] (rules, signed keys,
//! callbacks), which counts and logs each decision; the connection only tells its client. A
//! decision is a future the connection holds in its own `select!` loop (nginx-rtmp suspends the
//! session the same way): while a callback decides, it reads nothing more from its client
//! (events already read wait in `deferred`), keeps writing what it owes and keeps its timers,
//! and nothing else waits for it. A decision that needs no callback is acted on at once.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtmp::message::user_control;
use rtmp::{ConnectInfo, MediaKind, ServerConfig, ServerEvent, ServerSession};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::access::{ConnectionPermit, Stage};
use crate::clients::{ClientHandle, Kind, Role};
use crate::config::AppConf;
use crate::events::ClientInfo;
use crate::fanout::{self, Membership};
use crate::hub::{Entry, Frame, PublishError, Publisher, StartPack, StreamOptions, Subscriber};
use crate::live::{self, PlayerGate};
use crate::modules::{Status, StatusReceiver};
use crate::notify;
use crate::policy::{self, Admit, Ask, ConnectOk, Ended, PlayArgs, Policy, Refused};
use crate::server::ServerCtx;
use crate::streams::{self, Published};
use crate::transport::{Reader, Writer};
use crate::untrusted::{self, for_log, redact_query};
use crate::vod::{self, Playback};
use crate::wake_gate::{Gate, Gates};

/// Most ring entries a player takes per write: bounds the batch a single writev carries.
const MAX_BATCH: usize = 64;
/// Read buffer of a connection that is not publishing (handshake, commands, acks).
const READ_SMALL: usize = 4096;
/// Read buffer of a publisher. The chunk decoder copies every payload out of it, so one buffer
/// of this size (with room for a partial chunk) serves each read; it is given back whenever a
/// read left nothing in it (see [`read_through`]).
const READ_LARGE: usize = 16 * 1024;

struct Publishing {
    publisher: Publisher,
    stream_id: u32,
    name: String,
    last_media: Instant,
    /// Statuses the output modules have for this publisher (`record_notify`'s
    /// `NetStream.Record.*`); `None` once they have nothing more to say.
    status: Option<StatusReceiver>,
}

struct Playing {
    sub: Subscriber,
    stream_id: u32,
    name: String,
    /// Stale while `direct` holds the player's place (the shard keeps the gate then).
    gate: PlayerGate,
    /// A fan-out shard writes the media while the player keeps up ([`crate::fanout`]).
    direct: Option<Membership>,
}

/// A file played on demand ([`crate::vod`]).
struct PlayingFile {
    playback: Playback,
    stream_id: u32,
    name: String,
}

/// A policy decision, once it is made.
enum Decided {
    Connect(Result<ConnectOk, Refused>),
    Stream(Result<Admit, Refused>),
    /// A `play` file was looked for.
    File(Result<Playback, vod::PlayError>),
    /// A file was looked for to answer `getStreamLength`.
    Length(Option<Arc<vod::Opened>>),
}

/// A policy decision being made (a callback may be asked).
type DecisionFuture = Pin<Box<dyn Future<Output = Decided> + Send>>;

/// An `on_update` being asked; `Err` drops the client.
type UpdateFuture = Pin<Box<dyn Future<Output = Result<(), Refused>> + Send>>;

/// A decision the connection waits for before it reads on.
struct Waiting {
    decision: DecisionFuture,
    then: Resume,
}

/// What was asked, to carry on with once the policy decides.
enum Resume {
    Connect,
    Publish { stream_id: u32, asked: Asked, kind: String },
    Play { stream_id: u32, asked: Asked, reset: bool },
    PlayFile { stream_id: u32, name: String, asked: Asked, reset: bool },
    StreamLength { txn: f64 },
}

/// A stream as the client asked for it: callbacks after the first report this name, as
/// nginx-rtmp does, even when `on_publish`/`on_play` redirected it.
struct Asked {
    name: String,
    args: String,
}

/// `on_update` calls while publishing or playing.
struct Updates {
    started: Instant,
    due: Instant,
    in_flight: Option<UpdateFuture>,
}

struct Conn {
    ctx: Arc<ServerCtx>,
    peer: SocketAddr,
    /// Our entry in the clients registry: app, stream, role, bytes; control drops us through it.
    handle: ClientHandle,
    session: ServerSession,
    app: Option<Arc<AppConf>>,
    /// Who the client is, once it connected (for callbacks and recordings).
    client: Option<ClientInfo>,
    /// The application named at connect (even while `on_connect` decides): its callbacks.
    connect_app: Option<Arc<AppConf>>,
    /// The application's query string from connect (credentials and callbacks).
    app_args: String,
    /// The session's epoch (ms), nginx-rtmp's `epoch` field of `on_connect`.
    epoch: u32,
    /// Our place under `max_connections`; `None` when the server was full.
    permit: Option<ConnectionPermit>,
    /// A callback being waited for: the client's next messages wait in the socket.
    waiting: Option<Waiting>,
    /// Events that arrived together with the one being decided.
    deferred: VecDeque<ServerEvent>,
    /// The published and played streams as asked, for `*_done` and `on_update`.
    asked_publish: Option<Asked>,
    asked_play: Option<Asked>,
    updates: Option<Updates>,
    /// Timestamp of the last media message received or sent (`on_update`'s `timestamp`).
    last_timestamp: u32,
    publishing: Option<Publishing>,
    playing: Option<Playing>,
    /// A file played on demand (instead of `playing`).
    playing_file: Option<PlayingFile>,
    /// The play's start and duration arguments (ms), for a file.
    play_range: (u64, u64),
    /// The client's last `SetBufferLength` (ms).
    buffer_ms: Option<u32>,
    /// The file `getStreamLength` measured, kept indexed for the play that follows it.
    measured: Option<Arc<vod::Opened>>,
    /// Bytes to write, in order: session replies, then media.
    pending: Vec<Bytes>,
    /// A batch went out since the player last tried to join a fan-out shard.
    may_join: bool,
    /// A shard's write to this player failed: the connection ends with it.
    write_error: Option<std::io::Error>,
    /// When the session started: its timers (ping, connect timeout) count from here.
    started: Instant,
    /// When the bytes being handled were read: one clock read per socket read, not per message.
    read_at: Instant,
    closing: bool,
}

/// Why the connection ended, for the log line.
type Outcome = anyhow::Result<&'static str>;

/// Serve one client until it leaves, errs, or the server shuts down; with `tls` (an `ssl`
/// listener), after the TLS handshake.
pub async fn run(socket: TcpStream, peer: SocketAddr, ctx: Arc<ServerCtx>, tls: Option<TlsAcceptor>) {
    let core = &ctx.conf.core;
    let _ = socket.set_nodelay(core.tcp_nodelay);
    let config = ServerConfig {
        chunk_size: core.chunk_size,
        ack_window: core.ack_window,
        max_message: core.max_message,
        max_streams: core.max_streams as usize,
        timeouts: rtmp::Timeouts {
            connect: Some(core.timeout),
            ping: (!core.ping.is_zero()).then_some(core.ping),
            ping_timeout: core.ping_timeout,
        },
    };
    let epoch =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis()) as u32;
    let session = ServerSession::new(config, epoch, &mut rand::thread_rng());
    // Over the registry's bound the connection is closed at once (the registry logs it).
    let kind = if tls.is_some() { Kind::Rtmps } else { Kind::Rtmp };
    let Some(handle) = ctx.clients.register(peer, kind, ctx.index) else { return };
    let permit = ctx.limit.try_acquire();
    // Registered first: a connection in its TLS handshake counts against the registry's bound.
    let Some((mut reader, mut writer)) = crate::transport::open(socket, peer, tls.as_ref(), &ctx, &handle).await else {
        return;
    };
    let mut conn = Conn {
        ctx,
        peer,
        handle,
        session,
        app: None,
        client: None,
        connect_app: None,
        app_args: String::new(),
        epoch,
        permit,
        waiting: None,
        deferred: VecDeque::new(),
        asked_publish: None,
        asked_play: None,
        updates: None,
        last_timestamp: 0,
        publishing: None,
        playing: None,
        playing_file: None,
        play_range: (0, 0),
        buffer_ms: None,
        measured: None,
        pending: Vec::new(),
        may_join: false,
        write_error: None,
        started: Instant::now(),
        read_at: Instant::now(),
        closing: false,
    };
    let outcome = conn.serve(&mut reader, &mut writer).await;
    conn.finish(&mut writer).await;
    let app = conn.app.as_ref().map_or("", |a| a.name.as_str());
    match outcome {
        Ok(why) => tracing::info!(client = %peer, app, bytes_in = conn.session.bytes_received(), "disconnect: {why}"),
        Err(e) => tracing::info!(client = %peer, app, bytes_in = conn.session.bytes_received(), "disconnect: {e:#}"),
    }
}

/// Room for the next read once less than a quarter of `want` is left. Asking for `want` bytes in
/// all (not `want` more) lets the unread part of a chunk move to the front of the same
/// allocation once it holds `want` bytes; asking for `want` more made a buffer holding a partial
/// chunk double instead.
fn make_room(buf: &mut BytesMut, want: usize) {
    if buf.capacity() - buf.len() < want / 4 {
        buf.reserve(want.saturating_sub(buf.len()).max(want / 4));
    }
}

impl Conn {
    async fn serve(&mut self, reader: &mut Reader, writer: &mut Writer) -> Outcome {
        // No buffer until the client sends (see `read_through`); a publisher reads in larger ones.
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        // One timer for every deadline (ping, timeouts, on_update, idle publisher), moved only
        // earlier: a later deadline waits for this one to fire (a harmless early wake), so a
        // publisher's every message does not re-register a timer.
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        // Built once: a fresh `cancelled()` per loop turn registers and unregisters a waiter
        // every message.
        let shutdown = self.ctx.shutdown.clone();
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let dropped = self.handle.dropped();
        tokio::pin!(dropped);
        let mut redirect = Box::pin(self.handle.redirect_signal());
        // The rare branches wait behind gates: a player's media wake-up polls none of them.
        let mut gates = Gates::new();
        let [g_shutdown, g_dropped, g_redirect, g_read, g_timer] = std::array::from_fn(|_| gates.gate());
        loop {
            let read_size = if self.publishing.is_some() { READ_LARGE } else { READ_SMALL };
            // A peer that reads nothing must not hold the connection past shutdown: the write
            // gives up when the server stops.
            tokio::select! {
                // The write first: it almost always completes at once (no random draw per loop).
                biased;
                r = self.flush(writer) => r?,
                _ = gates.wait(&g_shutdown, cancelled.as_mut()) => return Ok("server shutting down"),
                _ = gates.wait(&g_dropped, dropped.as_mut()) => return Ok("dropped by control"),
            }
            if self.closing {
                return Ok("closed by server");
            }
            if std::mem::take(&mut self.may_join) {
                self.join_direct(writer);
            }
            if let Some(due) = self.next_deadline() {
                if armed.is_none_or(|a| due < a) {
                    timer.as_mut().reset(due.into());
                    armed = Some(due);
                    gates.open(&g_timer);
                }
            }
            tokio::select! {
                // While a callback decides, the client's next messages wait in the socket.
                n = read_through(&gates, &g_read, reader, &mut buf, read_size), if self.waiting.is_none() => {
                    let n = n?;
                    if n == 0 {
                        return Ok("closed by client");
                    }
                    self.handle.add_in(n);
                    self.read_at = Instant::now();
                    let since_start = self.read_at.saturating_duration_since(self.started);
                    self.session.handle_input(&mut buf, &mut events, since_start)?;
                    if !events.is_empty() {
                        self.leave_direct();
                    }
                    for ev in events.drain(..) {
                        if self.waiting.is_some() {
                            self.deferred.push_back(ev);
                        } else {
                            self.handle(ev);
                        }
                    }
                    release_if_drained(&mut buf);
                }
                reply = decided(&mut self.waiting) => self.on_decided(reply),
                reply = update_answered(&mut self.updates) => self.on_update_reply(reply)?,
                turn = next_batch(&mut self.playing) => match turn {
                    Some(batch) => self.send_batch(batch),
                    // The player's fan-out shard gave it back.
                    None => self.leave_direct(),
                },
                out = next_file_frame(&mut self.playing_file) => self.on_file_out(out),
                status = module_status(&mut self.publishing) => self.on_module_status(status),
                // After a callback being waited for: the redirect stays in its slot till then.
                () = gates.wait(&g_redirect, redirect.as_mut()), if self.waiting.is_none() => {
                    redirect = Box::pin(self.handle.redirect_signal());
                    self.leave_direct();
                    if let Some(to) = self.handle.take_redirect() {
                        self.on_redirect(to);
                    }
                }
                () = gates.wait(&g_timer, timer.as_mut()), if armed.is_some() => {
                    armed = None;
                    self.on_timer()?;
                }
                _ = gates.wait(&g_shutdown, cancelled.as_mut()) => return Ok("server shutting down"),
                _ = gates.wait(&g_dropped, dropped.as_mut()) => return Ok("dropped by control"),
            }
        }
    }

    /// Write everything pending, giving up on a peer that accepts nothing for `timeout`.
    async fn flush(&mut self, writer: &mut Writer) -> anyhow::Result<()> {
        if self.session.has_output() {
            // The socket is a shard's while it writes media: take it back first.
            self.leave_direct();
        }
        if let Some(e) = self.write_error.take() {
            return Err(e.into());
        }
        self.drain_session();
        if self.pending.is_empty() {
            return Ok(());
        }
        // Counted once per flush, whatever part of it was written, not per write.
        let before = pending_len(&self.pending);
        let written = self.write_pending(writer).await;
        self.handle.add_out(before - pending_len(&self.pending));
        written
    }

    async fn write_pending(&mut self, writer: &mut Writer) -> anyhow::Result<()> {
        // Usually the socket takes everything at once: no timer needed for that.
        if writer.try_write_vectored(&mut self.pending)? {
            return Ok(());
        }
        let timeout = self.ctx.conf.core.timeout;
        match tokio::time::timeout(timeout, writer.write_all_vectored(&mut self.pending)).await {
            Ok(r) => r.map_err(Into::into),
            Err(_) => anyhow::bail!("write timed out after {timeout:?}"),
        }
    }

    /// Move the session's replies into the write queue, keeping them in order with media.
    fn drain_session(&mut self) {
        if self.session.has_output() {
            self.pending.push(self.session.take_output());
        }
    }

    /// Queue a media frame for the player, after any replies queued before it.
    fn push_media(&mut self, frame: &Frame, stream_id: u32) {
        self.last_timestamp = frame.timestamp;
        self.drain_session();
        let chunks = self.chunks(frame, stream_id);
        self.pending.push(chunks);
    }

    fn handle(&mut self, ev: ServerEvent) {
        match ev {
            ServerEvent::Connect(info) => self.on_connect(info),
            ServerEvent::Publish { stream_id, name, args, kind } => self.on_publish(stream_id, name, args, kind),
            ServerEvent::Play { stream_id, name, args, start, duration, reset } => {
                self.on_play(stream_id, name, args, start, duration, reset)
            }
            ServerEvent::Media { kind, timestamp, payload, .. } => self.on_media(kind, timestamp, payload),
            ServerEvent::Pause { stream_id, paused } => self.on_pause(stream_id, paused),
            ServerEvent::Seek { stream_id, millis } => self.on_seek(stream_id, millis),
            ServerEvent::BufferLength { millis, .. } => self.on_buffer_length(millis),
            ServerEvent::CloseStream { stream_id } => self.on_close_stream(stream_id),
            ServerEvent::StreamLength { transaction_id, name, .. } => self.on_stream_length(transaction_id, name),
            ServerEvent::PingResponse(_) => {}
        }
    }

    fn on_connect(&mut self, info: ConnectInfo) {
        let policy = Policy::of(&self.ctx);
        if self.permit.is_none() {
            let max = self.ctx.limit.max().unwrap_or_default();
            let refused = policy::too_many(&policy, self.peer, &info.app, max);
            self.tell_refused(Stage::Connect, 0, &refused.text);
            return;
        }
        let client = ClientInfo {
            id: self.handle.id(),
            addr: self.peer,
            app: info.app.clone(),
            flash_ver: info.flash_ver.clone(),
            swf_url: info.swf_url.clone(),
            tc_url: info.tc_url.clone(),
            page_url: info.page_url.clone(),
        };
        self.handle.set_connect_meta(crate::clients::ConnectMeta {
            flashver: info.flash_ver.clone(),
            swfurl: info.swf_url.clone(),
            pageurl: info.page_url.clone(),
            tcurl: info.tc_url.clone(),
        });
        let app = match policy::application(&policy, &self.ctx.apps, &client) {
            Ok(app) => app,
            Err(refused) => {
                self.tell_refused(Stage::Connect, 0, &refused.text);
                return;
            }
        };
        self.app_args = info.app_args;
        // Known from here on (even if `on_connect` refuses): `on_disconnect` reports it.
        self.connect_app = Some(app.clone());
        self.client = Some(client.clone());
        let (ctx, app_args, epoch) = (self.ctx.clone(), self.app_args.clone(), self.epoch);
        let decision = async move {
            Decided::Connect(policy::connect(&Policy::of(&ctx), &ctx.apps, app, client, &app_args, epoch).await)
        };
        self.decide(Box::pin(decision), Resume::Connect);
    }

    fn accept_connect(&mut self, ok: ConnectOk) {
        self.handle.set_app(&ok.app.name);
        self.connect_app = Some(ok.app.clone());
        self.client = Some(ok.client);
        self.app = Some(ok.app);
        self.session.accept_connect();
    }

    fn stream_options(&self) -> StreamOptions {
        let gop_cache = self.app.as_ref().is_some_and(|a| a.live.gop_cache);
        StreamOptions { ring_len: self.ctx.conf.core.out_queue, gop_cache }
    }

    fn on_publish(&mut self, stream_id: u32, name: String, args: String, kind: String) {
        let (Some(app), Some(client)) = (self.app.clone(), self.client.clone()) else { return };
        if self.publishing.is_some() {
            self.session.send_status(
                stream_id,
                "error",
                "NetStream.Publish.BadName",
                "Already publishing on this connection.",
            );
            return;
        }
        let (ctx, app_args) = (self.ctx.clone(), self.app_args.clone());
        let (n, a, k) = (name.clone(), args.clone(), kind.clone());
        let decision = async move {
            let ask = Ask { client: &client, app: &app, app_args: &app_args, name: &n, args: &a };
            Decided::Stream(policy::publish(&Policy::of(&ctx), &ask, &k).await)
        };
        self.decide(Box::pin(decision), Resume::Publish { stream_id, asked: Asked { name, args }, kind });
    }

    /// Claim the stream in the hub and start its outputs. `name` is where it lands (the
    /// callback may have renamed it), `asked` what the client asked for.
    /// `push_to`: an `rtmp://` location `on_publish` redirected to, which the stream is pushed to.
    fn start_publish(
        &mut self,
        app: &Arc<AppConf>,
        stream_id: u32,
        name: String,
        asked: Asked,
        kind: String,
        push_to: Option<&str>,
    ) {
        // Again here: `on_publish` may have renamed the stream.
        if !self.valid_name(Stage::Publish, stream_id, &name) {
            return;
        }
        let source = streams::Source {
            app,
            name: &name,
            args: &asked.args,
            client: self.client.as_ref(),
            push_to,
            srv: self.ctx.index,
        };
        match self.ctx.streams.publish(&source, self.stream_options()) {
            Ok(Published { publisher, status }) => {
                tracing::info!(client = %self.peer, app = %app.name, stream = %name, args = %redact_query(&asked.args), kind = %for_log(&kind), "publish");
                self.session.accept_publish(stream_id, &name);
                self.handle.set_stream(&name, Role::Publisher);
                self.handle.set_args(&asked.args);
                self.publishing =
                    Some(Publishing { publisher, stream_id, name, last_media: Instant::now(), status: Some(status) });
                self.asked_publish = Some(asked);
                self.start_updates(app);
            }
            Err(e @ (PublishError::AlreadyPublishing(_) | PublishError::TooManyStreams)) => {
                tracing::info!(client = %self.peer, app = %app.name, stream = %name, "publish refused: {e}");
                self.session.send_status(stream_id, "error", "NetStream.Publish.BadName", &e.to_string());
                self.closing = true;
            }
        }
    }

    fn on_play(&mut self, stream_id: u32, name: String, args: String, start: f64, duration: f64, reset: bool) {
        let (Some(app), Some(client)) = (self.app.clone(), self.client.clone()) else { return };
        // The rtmp crate reports an absent start as -2 and an absent duration as -1;
        // nginx-rtmp reports absent ones as 0.
        let start = if start == -2.0 { 0.0 } else { start };
        let duration = if duration == -1.0 { 0.0 } else { duration };
        let play = PlayArgs { start, duration, reset };
        // A file plays from `start` for `duration` (nginx-rtmp's arguments, in ms).
        let ms = |v: f64| if v.is_finite() && v > 0.0 { v as u64 } else { 0 };
        self.play_range = (ms(start), ms(duration));
        let (ctx, app_args) = (self.ctx.clone(), self.app_args.clone());
        let (n, a) = (name.clone(), args.clone());
        let decision = async move {
            let ask = Ask { client: &client, app: &app, app_args: &app_args, name: &n, args: &a };
            Decided::Stream(policy::play(&Policy::of(&ctx), &ask, play).await)
        };
        self.decide(Box::pin(decision), Resume::Play { stream_id, asked: Asked { name, args }, reset });
    }

    /// `pull_from`: an `rtmp://` location `on_play` redirected to, which the stream is pulled from.
    fn start_play(
        &mut self,
        app: &Arc<AppConf>,
        stream_id: u32,
        name: String,
        asked: Asked,
        reset: bool,
        pull_from: Option<&str>,
    ) {
        // An application with `play` plays files first (nginx-rtmp's play module runs before
        // its live module); file names are checked by `vod` ([`untrusted::vod_name`]).
        if app.play.enabled() && pull_from.is_none() {
            return self.find_file(app, stream_id, name, asked, reset);
        }
        self.start_live_play(app, stream_id, name, asked, reset, pull_from)
    }

    /// Play the live stream `name` (see [`Conn::start_play`]).
    fn start_live_play(
        &mut self,
        app: &Arc<AppConf>,
        stream_id: u32,
        name: String,
        asked: Asked,
        reset: bool,
        pull_from: Option<&str>,
    ) {
        // Again here: `on_play` may have redirected the stream.
        if !self.valid_name(Stage::Play, stream_id, &name) {
            return;
        }
        // One play per connection, as nginx-rtmp's live module: a new `play` ends the old one,
        // so repeated plays cannot pile up idle streams in the hub.
        self.stop_playing();
        let player =
            streams::Player { app, name: &name, args: &asked.args, client: self.client.as_ref(), srv: self.ctx.index };
        let found = match pull_from {
            None => self.ctx.streams.play(&player, self.stream_options()),
            Some(url) => match self.ctx.streams.play_pulled(&player, url, self.stream_options()) {
                Ok(found) => Some(found),
                Err(e) => {
                    tracing::info!(client = %self.peer, app = %app.name, stream = %name, url = %notify::log_url(url), "play refused: on_play's relay: {e}");
                    return self.tell_refused(Stage::Play, stream_id, &format!("on_play relay: {e}"));
                }
            },
        };
        // A feature configured to serve this name but not implemented (pull, VOD): say so
        // rather than wait for a publisher or answer "No such stream".
        let unserved = app.unserved_play();
        let (pack, sub) = match found {
            Some((pack, sub)) if pack.live || (app.live.idle_streams && unserved.is_none()) => (pack, sub),
            other => {
                // A stream made for this player alone goes with it.
                drop(other);
                let why = unserved.map_or_else(
                    || format!("No such stream: {name}"),
                    |why| format!("Stream {name} is not published here, and {why}"),
                );
                tracing::info!(client = %self.peer, app = %app.name, stream = %name, "play refused: {why}");
                self.session.send_status(stream_id, "error", "NetStream.Play.StreamNotFound", &why);
                self.closing = true;
                return;
            }
        };
        tracing::info!(client = %self.peer, app = %app.name, stream = %name, args = %redact_query(&asked.args), "play");
        self.handle.set_stream(&name, Role::Player);
        self.handle.set_args(&asked.args);
        // With `play_restart`, nginx-rtmp sends Play.Start when the stream starts, not before.
        if pack.live || !app.live.play_restart {
            self.session.accept_play(stream_id, &name, reset);
        }
        let mut playing = Playing { sub, stream_id, name, gate: PlayerGate::new(&app.live), direct: None };
        if pack.live {
            self.on_joined_live(app, &playing);
            self.send_start_pack(&mut playing, &pack);
        }
        self.playing = Some(playing);
        self.asked_play = Some(asked);
        self.start_updates(app);
    }

    /// Look for the file `name` in the application's `play` locations, reading nothing more
    /// from the client meanwhile; [`Conn::on_file_found`] carries on.
    fn find_file(&mut self, app: &Arc<AppConf>, stream_id: u32, name: String, asked: Asked, reset: bool) {
        self.stop_playing();
        let (streams, app2, n, args, srv) =
            (self.ctx.streams.clone(), app.clone(), name.clone(), asked.args.clone(), self.ctx.index);
        let (addr, (start, duration), client) = (self.peer.ip(), self.play_range, self.client.clone());
        let decision = async move {
            let player = streams::Player { app: &app2, name: &n, args: &args, client: client.as_ref(), srv };
            Decided::File(streams.play_file(&player, addr, start, duration).await)
        };
        self.decide(Box::pin(decision), Resume::PlayFile { stream_id, name, asked, reset });
    }

    /// The file looked for is found (or not): play it, or fall back to the live stream of
    /// that name (as nginx-rtmp's live module takes a play its play module did not), or say
    /// it is not there.
    fn on_file_found(
        &mut self,
        app: &Arc<AppConf>,
        found: Result<Playback, vod::PlayError>,
        (stream_id, name, asked, reset): (u32, String, Asked, bool),
    ) {
        let mut playback = match found {
            Ok(p) => p,
            Err(vod::PlayError::NotFound) if app.live.live => {
                return self.start_live_play(app, stream_id, name, asked, reset, None);
            }
            Err(e @ vod::PlayError::NotFound) => {
                tracing::info!(client = %self.peer, app = %app.name, stream = %for_log(&name), "play refused: {e}");
                self.session.send_status(stream_id, "error", "NetStream.Play.StreamNotFound", &e.to_string());
                self.closing = true;
                return;
            }
            Err(e @ vod::PlayError::BadName(_)) => {
                tracing::info!(client = %self.peer, app = %app.name, stream = %for_log(&name), "play refused: {e}");
                return self.tell_refused(Stage::Play, stream_id, &format!("Bad stream name: {e}."));
            }
        };
        if let Some(ms) = self.buffer_ms {
            playback.buffer(ms);
        }
        tracing::info!(client = %self.peer, app = %app.name, stream = %for_log(&name), args = %redact_query(&asked.args), duration_ms = playback.duration_ms, "play file");
        self.handle.set_file(&name);
        self.handle.set_args(&asked.args);
        if reset {
            self.session.send_status(
                stream_id,
                "status",
                "NetStream.Play.Reset",
                &format!("Playing and resetting {name}."),
            );
        }
        self.session.send_user_control(user_control::STREAM_BEGIN, stream_id);
        self.session.send_status(stream_id, "status", "NetStream.Play.Start", "Start video on demand");
        self.session.send_sample_access(stream_id);
        self.playing_file = Some(PlayingFile { playback, stream_id, name });
        self.measured = None;
        self.asked_play = Some(asked);
        self.start_updates(app);
    }

    /// What the file's playback has for the client.
    fn on_file_out(&mut self, out: Option<vod::Out>) {
        let Some(p) = &self.playing_file else { return };
        let stream_id = p.stream_id;
        match out {
            Some(vod::Out::Frame(f)) => {
                self.handle.set_timestamp(f.timestamp);
                self.push_media(&f, stream_id);
            }
            Some(vod::Out::Seeked(_)) => {
                self.session.send_status(stream_id, "status", "NetStream.Seek.Notify", "Seeking");
                self.session.send_status(stream_id, "status", "NetStream.Play.Start", "Start video on demand");
                self.session.send_user_control(user_control::STREAM_BEGIN, stream_id);
            }
            Some(vod::Out::End) => {
                tracing::debug!(client = %self.peer, stream = %for_log(&p.name), "play file: end");
                self.session.send_user_control(user_control::STREAM_EOF, stream_id);
                self.session.send_status(stream_id, "status", "NetStream.Play.Stop", "Stopped");
            }
            None => self.stop_playing(),
        }
    }

    /// `seek`: a file plays from the keyframe before the time asked; a live stream cannot seek.
    fn on_seek(&mut self, stream_id: u32, millis: f64) {
        match &mut self.playing_file {
            Some(p) if p.stream_id == stream_id => p.playback.seek(millis as u64),
            _ => self.session.send_status(
                stream_id,
                "status",
                "NetStream.Seek.Notify",
                "Seeking is not possible in a live stream.",
            ),
        }
    }

    /// `getStreamLength` (ffmpeg asks it before `play`): a file's duration in seconds, from the
    /// application's `play` directories; 0 for anything else (live streams, nginx-rtmp's
    /// answer), and for a client a plain play would not reveal it to (`deny play`, or players checked
    /// by `on_play`/`on_connect` or a signed key: nothing is looked for then).
    /// Decided like a play, so the play pipelined behind it waits for the answer.
    fn on_stream_length(&mut self, txn: f64, name: String) {
        // Only what a plain play could learn without its checks (signed key, `on_play`).
        let ip = Some(self.peer.ip());
        let refused = |a: &AppConf| crate::access::plain_request_refusal(a, ip).is_some();
        let Some(app) = self.app.clone().filter(|a| a.play.enabled() && !refused(a)) else {
            return self.session.answer_stream_length(txn, 0.0);
        };
        let streams = self.ctx.streams.clone();
        let decision = async move { Decided::Length(streams.find_local_file(&app, &name).await) };
        self.decide(Box::pin(decision), Resume::StreamLength { txn });
    }

    /// `SetBufferLength`: how far ahead of real time a file is sent.
    fn on_buffer_length(&mut self, millis: u32) {
        self.buffer_ms = Some(millis);
        if let Some(p) = &mut self.playing_file {
            p.playback.buffer(millis);
        }
    }

    /// End the current play, if any: leave the stream (the hub forgets it when nobody is left)
    /// and report `on_play_done`.
    fn stop_playing(&mut self) {
        if let Some(p) = self.playing_file.take() {
            self.handle.clear_stream(Role::Player);
            tracing::info!(client = %self.peer, stream = %for_log(&p.name), "play file done");
            drop(p);
            self.notify_done(false);
        }
        let Some(p) = self.playing.take() else { return };
        self.handle.clear_stream(Role::Player);
        tracing::info!(client = %self.peer, stream = %p.name, "play done");
        drop(p);
        self.notify_done(false);
    }

    /// The one check of a stream name before it is used (hub key, file names of outputs):
    /// [`untrusted::stream_name`]. Refuses the client and returns false when it fails.
    fn valid_name(&mut self, stage: Stage, stream_id: u32, name: &str) -> bool {
        let Err(e) = untrusted::stream_name(name) else { return true };
        let app = self.connect_app.as_ref().map_or("", |a| a.name.as_str());
        tracing::info!(client = %self.peer, app = %app, stream = %for_log(name), "{} refused: {e}", stage.as_str());
        self.tell_refused(stage, stream_id, &format!("Bad stream name: {e}."));
        false
    }

    /// The status a refused client gets, then the connection closes.
    fn tell_refused(&mut self, stage: Stage, stream_id: u32, why: &str) {
        match stage {
            Stage::Connect => self.session.reject_connect(why),
            Stage::Publish => self.session.send_status(stream_id, "error", "NetStream.Publish.BadName", why),
            Stage::Play => self.session.send_status(stream_id, "error", "NetStream.Play.Failed", why),
            Stage::Update => {}
        }
        self.closing = true;
    }

    /// Act on a policy decision. Most need no callback and are made at the first poll: those
    /// act at once, as if synchronous; otherwise stop reading until the decision comes.
    fn decide(&mut self, mut decision: DecisionFuture, then: Resume) {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match decision.as_mut().poll(&mut cx) {
            // The `select!` loop polls it next, with its own waker.
            Poll::Pending => self.waiting = Some(Waiting { decision, then }),
            Poll::Ready(decided) => self.resume(then, decided),
        }
    }

    /// A decision that waited for a callback came: act on it, then handle what the client
    /// sent meanwhile.
    fn on_decided(&mut self, decided: Decided) {
        let Some(Waiting { then, .. }) = self.waiting.take() else { return };
        self.resume(then, decided);
        while self.waiting.is_none() && !self.closing {
            let Some(ev) = self.deferred.pop_front() else { break };
            self.handle(ev);
        }
    }

    /// Carry on with what was asked, or tell the client it was refused.
    fn resume(&mut self, then: Resume, decided: Decided) {
        let (stage, stream_id) = match &then {
            Resume::Connect => (Stage::Connect, 0),
            Resume::Publish { stream_id, .. } => (Stage::Publish, *stream_id),
            Resume::Play { stream_id, .. } | Resume::PlayFile { stream_id, .. } => (Stage::Play, *stream_id),
            Resume::StreamLength { .. } => (Stage::Play, 0),
        };
        match (then, decided) {
            (Resume::StreamLength { txn }, Decided::Length(found)) => {
                let secs = found.as_ref().map_or(0.0, |f| f.media.duration_ms as f64 / 1000.0);
                self.session.answer_stream_length(txn, secs);
                self.measured = found;
            }
            (Resume::PlayFile { stream_id, name, asked, reset }, Decided::File(found)) => {
                let Some(app) = self.app.clone() else { return };
                self.on_file_found(&app, found, (stream_id, name, asked, reset));
            }
            (then, decided) => self.resume_decided(then, decided, stage, stream_id),
        }
    }

    /// [`Conn::resume`] for a policy decision.
    fn resume_decided(&mut self, then: Resume, decided: Decided, stage: Stage, stream_id: u32) {
        let admitted = match decided {
            Decided::Connect(Ok(ok)) => return self.accept_connect(ok),
            Decided::Stream(Ok(admit)) => admit,
            Decided::Connect(Err(refused)) | Decided::Stream(Err(refused)) => {
                return self.tell_refused(stage, stream_id, &refused.text);
            }
            // Paired with `Resume::PlayFile` and `Resume::StreamLength` in `resume`.
            Decided::File(_) | Decided::Length(_) => return,
        };
        let Some(app) = self.app.clone() else { return };
        match (then, admitted) {
            (Resume::Publish { stream_id, asked, kind }, Admit::Local { name }) => {
                self.start_publish(&app, stream_id, name, asked, kind, None)
            }
            // nginx-rtmp: publish locally (under `local_name`) and push the stream to `url`.
            (Resume::Publish { stream_id, asked, kind }, Admit::Relay { url, local_name }) => {
                tracing::info!(client = %self.peer, app = %app.name, stream = %local_name, url = %notify::log_url(&url), "publish relayed by on_publish");
                self.start_publish(&app, stream_id, local_name, asked, kind, Some(&url))
            }
            (Resume::Play { stream_id, asked, reset }, Admit::Local { name }) => {
                self.start_play(&app, stream_id, name, asked, reset, None)
            }
            // nginx-rtmp: pull the stream from `url`, published here as `local_name`, and play it.
            (Resume::Play { stream_id, asked, reset }, Admit::Relay { url, local_name }) => {
                tracing::info!(client = %self.peer, app = %app.name, stream = %local_name, url = %notify::log_url(&url), "play relayed by on_play");
                self.start_play(&app, stream_id, local_name, asked, reset, Some(&url))
            }
            // A connect is decided as `Decided::Connect`, above; a file as `Decided::File`.
            (Resume::Connect | Resume::PlayFile { .. } | Resume::StreamLength { .. }, _) => {}
        }
    }

    /// Arm `on_update` when the application has one (once per connection, like nginx-rtmp).
    fn start_updates(&mut self, app: &AppConf) {
        let n = &app.notify;
        if self.updates.is_some() || n.on_update.is_none() || n.update_timeout.is_zero() {
            return;
        }
        let now = Instant::now();
        self.updates = Some(Updates { started: now, due: now + n.update_timeout, in_flight: None });
    }

    /// Ask the policy's `on_update` when it is due and none is in flight.
    fn maybe_update(&mut self, now: Instant) {
        let (Some(app), Some(client)) = (&self.app, &self.client) else { return };
        if app.notify.on_update.is_none() {
            return;
        }
        let Some(u) = &mut self.updates else { return };
        if u.in_flight.is_some() || now < u.due {
            return;
        }
        let (publishing, asked) = match (&self.asked_publish, &self.asked_play) {
            (Some(a), _) => (true, a),
            (None, Some(a)) => (false, a),
            (None, None) => return,
        };
        let time = now.duration_since(u.started).as_secs();
        let timestamp = self.last_timestamp;
        let (ctx, app, client, app_args) = (self.ctx.clone(), app.clone(), client.clone(), self.app_args.clone());
        let (name, args) = (asked.name.clone(), asked.args.clone());
        u.in_flight = Some(Box::pin(async move {
            let ask = Ask { client: &client, app: &app, app_args: &app_args, name: &name, args: &args };
            policy::update(&Policy::of(&ctx), &ask, publishing, time, timestamp).await
        }));
    }

    /// `on_update` answered: the next one is due `notify_update_timeout` from now, unless the
    /// policy drops the client.
    fn on_update_reply(&mut self, reply: Result<(), Refused>) -> anyhow::Result<()> {
        if let (Some(u), Some(app)) = (&mut self.updates, &self.app) {
            u.in_flight = None;
            u.due = Instant::now() + app.notify.update_timeout;
        }
        reply.map_err(|refused| anyhow::anyhow!("dropped by on_update ({})", refused.text))
    }

    /// Report a stream that ended (`on_publish_done`/`on_play_done`, `on_done`); the updates
    /// stop when nothing is left.
    fn notify_done(&mut self, publishing: bool) {
        let asked = if publishing { self.asked_publish.take() } else { self.asked_play.take() };
        if self.asked_publish.is_none() && self.asked_play.is_none() {
            self.updates = None;
        }
        let (Some(a), Some(app), Some(client)) = (asked, &self.app, &self.client) else { return };
        let (name, args) = (a.name.as_str(), a.args.as_str());
        let ended = if publishing { Ended::Publish { name, args } } else { Ended::Play { name, args } };
        policy::done(&Policy::of(&self.ctx), client, app, &[ended]);
    }

    /// The connection ends: what it still published or played ended, then `on_disconnect`
    /// (for every client that got as far as `connect`, as nginx-rtmp does), in that order.
    fn notify_end(&mut self) {
        let (publish, play) = (self.asked_publish.take(), self.asked_play.take());
        self.updates = None;
        let (Some(app), Some(client)) = (&self.connect_app, &self.client) else { return };
        let mut ended = Vec::with_capacity(3);
        if let Some(a) = &publish {
            ended.push(Ended::Publish { name: &a.name, args: &a.args });
        }
        if let Some(a) = &play {
            ended.push(Ended::Play { name: &a.name, args: &a.args });
        }
        ended.push(Ended::Disconnect { app_args: &self.app_args });
        policy::done(&Policy::of(&self.ctx), client, app, &ended);
    }

    fn on_media(&mut self, kind: MediaKind, timestamp: u32, payload: Bytes) {
        let (Some(app), Some(p)) = (&self.app, &mut self.publishing) else { return };
        p.last_media = self.read_at;
        self.last_timestamp = timestamp;
        self.handle.set_timestamp(timestamp);
        if let Some(frame) = live::ingest(&app.live, kind, timestamp, payload) {
            if frame.sequence_header {
                record_codec(&self.peer, p, &frame);
            }
            p.publisher.stream().push_at(frame, self.read_at);
        }
    }

    fn on_pause(&mut self, stream_id: u32, paused: bool) {
        if let Some(p) = self.playing_file.as_mut().filter(|p| p.stream_id == stream_id) {
            p.playback.pause(paused);
            let (code, text) = match paused {
                true => ("NetStream.Pause.Notify", "Paused video on demand"),
                false => ("NetStream.Unpause.Notify", "Unpaused video on demand"),
            };
            self.session.send_status(stream_id, "status", code, text);
            return;
        }
        if let Some(p) = &mut self.playing {
            p.gate.set_paused(paused);
            let code = if paused { "NetStream.Pause.Notify" } else { "NetStream.Unpause.Notify" };
            self.session.send_status(stream_id, "status", code, if paused { "Paused live" } else { "Unpaused live" });
        }
    }

    fn on_close_stream(&mut self, stream_id: u32) {
        if self.publishing.as_ref().is_some_and(|p| p.stream_id == stream_id) {
            if let Some(p) = self.publishing.take() {
                self.handle.clear_stream(Role::Publisher);
                tracing::info!(client = %self.peer, stream = %p.name, "unpublish");
                self.session.send_status(
                    stream_id,
                    "status",
                    "NetStream.Unpublish.Success",
                    &format!("{} is now unpublished.", p.name),
                );
                drop(p);
                self.notify_done(true);
            }
        }
        let file = self.playing_file.as_ref().is_some_and(|p| p.stream_id == stream_id);
        if file || self.playing.as_ref().is_some_and(|p| p.stream_id == stream_id) {
            self.stop_playing();
        }
    }

    /// Control's `/control/redirect` (nginx-rtmp's `ngx_rtmp_control_redirect_handler`): end
    /// the publish or play as the client's own closeStream does (`on_*_done` included), then
    /// publish or play the new name through the client's own path (name check, access rules,
    /// signed keys, `on_publish`/`on_play`; a refusal closes the client as it would then).
    /// nginx-rtmp keeps a publisher's sequence headers and metadata per session, so they go on
    /// to the new stream through the media path (after the callback when there is one). A
    /// player first gets the old stream's stop as `ngx_rtmp_live_stop` sends it, then the new
    /// play's Stream Begin and Play.Start.
    fn on_redirect(&mut self, to: crate::clients::Redirect) {
        let Some(app) = self.app.clone() else { return };
        let crate::clients::Redirect { role, name, args } = to;
        match role {
            Role::Publisher => {
                let Some(p) = &self.publishing else { return };
                let (stream_id, pack) = (p.stream_id, p.publisher.stream().start_pack());
                tracing::info!(client = %self.peer, app = %app.name, stream = %p.name, to = %name, "publish redirected by control");
                self.on_close_stream(stream_id);
                // nginx-rtmp's redirect publishes with an empty type.
                self.on_publish(stream_id, name, args, String::new());
                let headers = [pack.metadata, pack.video_header, pack.audio_header].into_iter().flatten();
                let media = headers.map(|f| ServerEvent::Media {
                    stream_id,
                    kind: f.kind,
                    timestamp: f.timestamp,
                    payload: f.payload.clone(),
                });
                if self.waiting.is_some() {
                    self.deferred.extend(media);
                } else {
                    media.for_each(|ev| self.handle(ev));
                }
            }
            Role::Player if self.playing_file.is_some() => {
                let Some(p) = &self.playing_file else { return };
                let stream_id = p.stream_id;
                tracing::info!(client = %self.peer, app = %app.name, stream = %for_log(&p.name), to = %name, "play file redirected by control");
                self.session.send_user_control(user_control::STREAM_EOF, stream_id);
                self.session.send_status(stream_id, "status", "NetStream.Play.Stop", "Stopped");
                self.on_close_stream(stream_id);
                self.on_play(stream_id, name, args, 0.0, 0.0, false);
            }
            Role::Player => {
                let Some(p) = &self.playing else { return };
                let (stream_id, live) = (p.stream_id, p.sub.stream().is_live());
                tracing::info!(client = %self.peer, app = %app.name, stream = %p.name, to = %name, "play redirected by control");
                if live {
                    self.session.send_user_control(user_control::STREAM_EOF, stream_id);
                    if app.live.play_restart {
                        self.session.send_status(stream_id, "status", "NetStream.Play.Stop", "Stop live");
                    }
                    if app.live.publish_notify {
                        self.session.send_status(
                            stream_id,
                            "status",
                            "NetStream.Play.UnpublishNotify",
                            "Stop publishing",
                        );
                    }
                }
                self.on_close_stream(stream_id);
                // nginx-rtmp's redirect plays from 0 for 0, without reset.
                self.on_play(stream_id, name, args, 0.0, 0.0, false);
            }
            Role::None => {}
        }
    }

    /// Metadata, sequence headers and the cached GOP: what lets a player start at once.
    fn send_start_pack(&mut self, playing: &mut Playing, pack: &StartPack) {
        let has_video = pack.video_header.is_some();
        let frames = pack.metadata.iter().chain(&pack.video_header).chain(&pack.audio_header).chain(&pack.gop);
        for f in frames {
            if playing.gate.admit(f, has_video) {
                self.push_media(f, playing.stream_id);
            }
        }
    }

    fn chunks(&self, frame: &Frame, stream_id: u32) -> Bytes {
        let interleave = self.app.as_ref().is_some_and(|a| a.live.interleave);
        frame.player_chunks(self.session.chunk_size(), interleave, stream_id)
    }

    /// Hand the player's media to a fan-out shard of its stream, when it is caught up with
    /// nothing else to write: plain TCP, live, not paused (see [`crate::fanout`]).
    fn join_direct(&mut self, writer: &Writer) {
        if self.waiting.is_some() || !self.pending.is_empty() || self.session.has_output() {
            return;
        }
        let Some(socket) = writer.tcp() else { return };
        let interleave = self.app.as_ref().is_some_and(|a| a.live.interleave);
        let chunk_size = self.session.chunk_size();
        let counters = self.handle.counters();
        let Some(p) = self.playing.as_mut().filter(|p| p.direct.is_none() && !p.gate.is_paused()) else { return };
        let stream = p.sub.stream().clone();
        let joining = fanout::Joining {
            socket: crate::transport::ShardSocket::new(socket),
            cursor: p.sub.cursor(),
            gate: p.gate.clone(),
            wire: fanout::Wire::Rtmp { chunk_size, interleave, stream_id: p.stream_id },
            counters,
        };
        p.direct = stream.direct.join(&stream, joining);
    }

    /// Take the player back from its fan-out shard: its own task writes from here, starting
    /// with what the shard's last write left.
    fn leave_direct(&mut self) {
        let Some(p) = self.playing.as_mut() else { return };
        let Some(membership) = p.direct.take() else { return };
        let resume = membership.leave();
        p.sub.set_cursor(resume.cursor);
        p.gate = resume.gate;
        if let Some(ts) = resume.last_timestamp {
            self.last_timestamp = ts;
        }
        if !resume.unwritten.is_empty() {
            self.pending.splice(0..0, resume.unwritten);
        }
        if let Some(e) = resume.error {
            self.write_error = Some(e);
        }
    }

    fn send_batch(&mut self, batch: crate::hub::Batch) {
        let Some(mut playing) = self.playing.take() else { return };
        if let Some(ts) =
            batch.entries.iter().rev().find_map(|e| if let Entry::Frame(f) = e { Some(f.timestamp) } else { None })
        {
            self.handle.set_timestamp(ts);
        }
        if batch.skipped > 0 {
            self.handle.add_dropped(batch.skipped);
            // Fell behind: resend headers so the resume point (a keyframe) decodes.
            tracing::debug!(client = %self.peer, stream = %playing.name, skipped = batch.skipped, "player lagging, skipped to keyframe");
            playing.gate.restart();
            let mut pack = playing.sub.stream().start_pack();
            pack.gop.clear();
            self.send_start_pack(&mut playing, &pack);
        }
        let has_video = playing.sub.stream().has_video();
        self.may_join = true;
        for entry in batch.entries {
            match entry {
                Entry::Frame(f) => {
                    if playing.gate.admit(&f, has_video) {
                        self.push_media(&f, playing.stream_id);
                    }
                }
                Entry::Published => self.on_stream_published(&mut playing),
                Entry::Unpublished => {
                    self.on_stream_unpublished(&playing);
                    // `idle_streams off`: nothing more for a player being closed.
                    if self.closing {
                        break;
                    }
                }
            }
        }
        self.playing = Some(playing);
    }

    /// A module's status for the publisher (`record_notify`: a recorder started or stopped).
    fn on_module_status(&mut self, status: Option<Status>) {
        let Some(p) = &mut self.publishing else { return };
        match status {
            Some(st) => self.session.send_status(p.stream_id, st.level, st.code, &st.description),
            // Every module is done reporting: stop listening.
            None => p.status = None,
        }
    }

    /// A player joined a stream that is being published: nginx-rtmp runs `ngx_rtmp_live_start`
    /// for it, so `publish_notify` sends PublishNotify now too (Stream Begin, Play.Start and
    /// `|RtmpSampleAccess` went with the play reply).
    fn on_joined_live(&mut self, app: &AppConf, playing: &Playing) {
        if app.live.publish_notify {
            self.send_publish_notify(playing.stream_id);
        }
    }

    /// `publish_notify`'s status, as nginx-rtmp words it.
    fn send_publish_notify(&mut self, stream_id: u32) {
        self.session.send_status(stream_id, "status", "NetStream.Play.PublishNotify", "Start publishing");
    }

    /// A publisher (re)started the stream: nginx-rtmp's `ngx_rtmp_live_start`. Stream Begin
    /// always; `play_restart` adds Play.Start and `|RtmpSampleAccess`, `publish_notify` adds
    /// PublishNotify (codes, levels and texts as nginx-rtmp sends them). The player stays
    /// subscribed and gets the new publisher's metadata and sequence headers from the ring
    /// before its frames; its gate waits for a keyframe again.
    fn on_stream_published(&mut self, playing: &mut Playing) {
        let Some(app) = &self.app else { return };
        let (notify, restart) = (app.live.publish_notify, app.live.play_restart);
        playing.gate.restart();
        tracing::debug!(client = %self.peer, stream = %playing.name, "player: stream published");
        self.session.send_user_control(user_control::STREAM_BEGIN, playing.stream_id);
        if restart {
            self.session.send_status(playing.stream_id, "status", "NetStream.Play.Start", "Start live");
            self.session.send_sample_access(playing.stream_id);
        }
        if notify {
            self.send_publish_notify(playing.stream_id);
        }
    }

    /// The publisher left: nginx-rtmp's `ngx_rtmp_live_stop`. Stream EOF always (ffmpeg,
    /// rtmpdump and GStreamer's `rtmpsrc` read on after it; `rtmp2src` ends); `play_restart` adds
    /// Play.Stop and `publish_notify` adds UnpublishNotify, either of which ends ffmpeg and
    /// rtmpdump. With `idle_streams off` nginx-rtmp closes every player instead of keeping it
    /// for the next publisher.
    fn on_stream_unpublished(&mut self, playing: &Playing) {
        let Some(app) = &self.app else { return };
        let (notify, restart, idle_streams) = (app.live.publish_notify, app.live.play_restart, app.live.idle_streams);
        self.session.send_user_control(user_control::STREAM_EOF, playing.stream_id);
        if restart {
            self.session.send_status(playing.stream_id, "status", "NetStream.Play.Stop", "Stop live");
        }
        if notify {
            self.session.send_status(playing.stream_id, "status", "NetStream.Play.UnpublishNotify", "Stop publishing");
        }
        if idle_streams {
            tracing::debug!(client = %self.peer, stream = %playing.name, "player: stream unpublished, waiting for a publisher");
        } else {
            tracing::info!(client = %self.peer, stream = %playing.name, "player closed: publisher left (idle_streams off)");
            self.closing = true;
        }
    }

    /// The server is going away: tell a player its stream ended for good, whatever the
    /// application's notify settings, so it exits cleanly rather than on a reset connection.
    fn on_server_shutdown(&mut self, playing: &Playing) {
        self.session.send_status(
            playing.stream_id,
            "status",
            "NetStream.Play.UnpublishNotify",
            &format!("{} is now unpublished.", playing.name),
        );
        self.session.send_user_control(user_control::STREAM_EOF, playing.stream_id);
    }

    /// The earliest of the session's timers (ping, connect timeout), the next `on_update` and
    /// `drop_idle_publisher`; `None` when nothing is pending.
    fn next_deadline(&self) -> Option<Instant> {
        let session = self.session.poll_timeout().map(|d| self.started + d);
        let update = self.update_due();
        let idle_limit = self.app.as_ref().and_then(|a| a.live.drop_idle_publisher);
        let idle = idle_limit.zip(self.publishing.as_ref()).map(|(limit, p)| p.last_media + limit);
        [session, update, idle].into_iter().flatten().min()
    }

    /// When [`Conn::maybe_update`] will call `on_update` (so a due update never spins the loop).
    fn update_due(&self) -> Option<Instant> {
        let u = self.updates.as_ref()?;
        let asked = self.asked_publish.is_some() || self.asked_play.is_some();
        let ready = self.client.is_some() && self.app.as_ref().is_some_and(|a| a.notify.on_update.is_some());
        (u.in_flight.is_none() && asked && ready).then_some(u.due)
    }

    /// Fire what is due: the session pings a silent peer or fails on a missed connect/ping
    /// (`timeout`, `ping`, `ping_timeout`); `on_update`; `drop_idle_publisher` (policy of the
    /// application, so it stays here).
    fn on_timer(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        self.session.handle_timeout(now.duration_since(self.started))?;
        self.maybe_update(now);
        let idle_limit = self.app.as_ref().and_then(|a| a.live.drop_idle_publisher);
        if let (Some(limit), Some(p)) = (idle_limit, &self.publishing) {
            if now.duration_since(p.last_media) >= limit {
                anyhow::bail!("publisher idle for {limit:?} (drop_idle_publisher)");
            }
        }
        Ok(())
    }

    /// End cleanly: publishers' streams are unpublished (players get UnpublishNotify), players
    /// are told the stream ended, then the socket is shut down.
    async fn finish(&mut self, writer: &mut Writer) {
        self.leave_direct();
        if let Some(p) = self.publishing.take() {
            tracing::info!(client = %self.peer, stream = %p.name, "unpublish");
            self.session.send_status(
                p.stream_id,
                "status",
                "NetStream.Unpublish.Success",
                &format!("{} is now unpublished.", p.name),
            );
        }
        if let Some(p) = self.playing.take() {
            if self.ctx.shutdown.is_cancelled() {
                self.on_server_shutdown(&p);
            }
        }
        // A file's player is told it ended, so it exits cleanly rather than on a reset.
        if let Some(p) = self.playing_file.take().filter(|_| self.ctx.shutdown.is_cancelled()) {
            self.session.send_user_control(user_control::STREAM_EOF, p.stream_id);
            self.session.send_status(p.stream_id, "status", "NetStream.Play.Stop", "Stopped");
        }
        self.notify_end();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.flush(writer)).await;
        let _ = writer.shutdown().await;
    }
}

/// The decision being waited for; never, when none is.
async fn decided(waiting: &mut Option<Waiting>) -> Decided {
    match waiting {
        Some(w) => w.decision.as_mut().await,
        None => std::future::pending().await,
    }
}

/// The reply of the `on_update` call in flight; never, when none is.
async fn update_answered(updates: &mut Option<Updates>) -> Result<(), Refused> {
    match updates.as_mut().and_then(|u| u.in_flight.as_mut()) {
        Some(f) => f.as_mut().await,
        None => std::future::pending().await,
    }
}

/// The next module status for the publisher, while modules may still send some.
async fn module_status(publishing: &mut Option<Publishing>) -> Option<Status> {
    match publishing.as_mut().and_then(|p| p.status.as_mut()) {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_file_frame(playing: &mut Option<PlayingFile>) -> Option<vod::Out> {
    match playing {
        Some(p) => p.playback.next().await,
        None => std::future::pending().await,
    }
}

/// The client's next bytes into `buf`, read through `gate` (a player's client sends little).
/// An empty `buf` gets its `size` bytes only once the socket is readable, and gives them back
/// when the read finds nothing after all: a connection waiting for its client's next bytes
/// holds no read buffer (500 publishers each holding 16 KiB between reads cost 8 MiB; one
/// runtime thread reads one socket at a time, so freed buffers are reused at once).
async fn read_through(
    gates: &Gates,
    gate: &Gate,
    reader: &mut Reader,
    buf: &mut BytesMut,
    size: usize,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        gates.poll(gate, cx, |g| {
            if buf.is_empty() {
                if let Reader::Tcp(r) = reader {
                    std::task::ready!(r.as_ref().poll_read_ready(g))?;
                }
            }
            make_room(buf, size);
            let read = tokio_util::io::poll_read_buf(Pin::new(&mut *reader), g, &mut *buf);
            if read.is_pending() {
                release_if_drained(buf);
            }
            read
        })
    })
    .await
}

/// Give the read buffer back when nothing is left in it to decode.
fn release_if_drained(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}

/// The player's next batch; `None` when its fan-out shard, which reads the ring for it
/// meanwhile, gave it back (see [`crate::fanout`]).
async fn next_batch(playing: &mut Option<Playing>) -> Option<crate::hub::Batch> {
    match playing {
        Some(Playing { direct: Some(m), .. }) => {
            std::future::poll_fn(|cx| m.poll_given_back(cx)).await;
            None
        }
        Some(p) => Some(p.sub.next_batch(MAX_BATCH).await),
        None => std::future::pending().await,
    }
}

/// Log a new sequence header's codec and keep it on the stream for stats.
fn record_codec(peer: &SocketAddr, p: &Publishing, frame: &Frame) {
    match live::describe_sequence_header(frame) {
        Ok(Some(desc)) => {
            tracing::info!(client = %peer, stream = %p.name, "{desc}");
            p.publisher.stream().set_codec_info(frame.kind, desc);
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(client = %peer, stream = %p.name, "sequence header not parsed: {e}"),
    }
}

/// Bytes not yet written.
fn pending_len(bufs: &[Bytes]) -> usize {
    bufs.iter().map(Bytes::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    #[test]
    fn a_publishers_read_buffer_stays_near_its_size() {
        let mut buf = BytesMut::with_capacity(READ_SMALL);
        for round in 0..200 {
            // A read fills the buffer; the decoder leaves up to one 4096-byte chunk and its header.
            buf.resize(buf.len() + (buf.capacity() - buf.len()), 0);
            let partial = [0, 4107, 1, 4000][round % 4];
            buf.advance(buf.len() - partial);
            make_room(&mut buf, READ_LARGE);
            // What is allocated: the capacity left plus what was consumed before it.
            assert!(buf.capacity() <= READ_LARGE + 4096 + 12, "round {round}: {} bytes", buf.capacity());
        }
    }

    /// Polls `f` once.
    async fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
        let mut f = std::pin::pin!(f);
        std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await
    }

    #[tokio::test]
    async fn a_connection_waiting_for_its_clients_bytes_holds_no_read_buffer() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (read_half, _write_half) = server.into_split();
        let mut reader = Reader::Tcp(read_half);
        let mut gates = Gates::new();
        let gate = gates.gate();
        let mut buf = BytesMut::new();
        let waiting = poll_once(read_through(&gates, &gate, &mut reader, &mut buf, READ_LARGE)).await;
        assert!(waiting.is_pending());
        assert_eq!(buf.capacity(), 0, "nothing to read: no buffer");

        client.write_all(&[7; 100]).await.unwrap();
        let n = read_through(&gates, &gate, &mut reader, &mut buf, READ_LARGE).await.unwrap();
        assert_eq!((n, buf.len()), (100, 100));
        assert!(buf.capacity() >= READ_LARGE);
        // The decoder left part of a chunk: the buffer is kept for the rest of it.
        buf.advance(60);
        release_if_drained(&mut buf);
        assert!(buf.capacity() >= 40);
        buf.advance(40);
        release_if_drained(&mut buf);
        assert_eq!(buf.capacity(), 0, "everything decoded: the buffer is given back");
        let waiting = poll_once(read_through(&gates, &gate, &mut reader, &mut buf, READ_LARGE)).await;
        assert!(waiting.is_pending());
        assert_eq!(buf.capacity(), 0);
    }
}

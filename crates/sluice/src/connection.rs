//! One RTMP connection: the tokio glue around `rtmp::ServerSession`. It reads the socket, feeds
//! the session, turns its events into [`crate::streams`] calls (publish, play) and writes
//! replies and media. A connection publishes at most one stream and plays at most one; it
//! names no output module (they are [`crate::modules`]).
//!
//! Access control runs here in this order: `max_connections` and `on_connect` at connect;
//! `allow`/`deny` rules, signed keys ([`crate::auth`]) and then `on_publish`/`on_play` before a
//! stream is claimed or played. A callback is a future the connection waits on in its own
//! `select!` loop (nginx-rtmp suspends the session the same way): meanwhile it reads nothing
//! more from its client, keeps writing what it owes, and nothing else waits for it.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtmp::message::user_control;
use rtmp::{ConnectInfo, MediaKind, ServerConfig, ServerEvent, ServerSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::access::{self, ConnectionPermit, Refusal, RuleVerdict, Stage};
use crate::auth::{self, AuthOk};
use crate::clients::{ClientHandle, Kind, Role};
use crate::config::{Action, AppConf};
use crate::events::ClientInfo;
use crate::hub::{Entry, Frame, PublishError, Publisher, StartPack, StreamOptions, Subscriber};
use crate::live::{self, PlayerGate};
use crate::modules::{Status, StatusReceiver};
use crate::notify::{self, Call, CallError, Reply};
use crate::server::ServerCtx;
use crate::streams::{self, Published};
use crate::untrusted::{self, for_log, redact_query};

/// Most ring entries a player takes per write: bounds the batch a single writev carries.
const MAX_BATCH: usize = 64;
/// Read buffer of a connection that is not publishing (handshake, commands, acks).
const READ_SMALL: usize = 4096;
/// Read buffer of a publisher.
const READ_LARGE: usize = 64 * 1024;

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
    gate: PlayerGate,
}

/// A callback's reply, once it comes.
type ReplyFuture = Pin<Box<dyn Future<Output = Result<Reply, CallError>> + Send>>;

/// A decision the connection waits for before it reads on.
struct Waiting {
    reply: ReplyFuture,
    /// The callback's URL, for logs.
    url: String,
    then: Resume,
}

/// What was asked, to carry on with once the callback answers.
enum Resume {
    Connect { app: Arc<AppConf> },
    Publish { stream_id: u32, name: String, args: String, kind: String },
    Play { stream_id: u32, name: String, args: String, reset: bool },
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
    in_flight: Option<ReplyFuture>,
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
    /// Bytes to write, in order: session replies, then media.
    pending: Vec<Bytes>,
    /// When the session started: its timers (ping, connect timeout) count from here.
    started: Instant,
    closing: bool,
}

/// Why the connection ended, for the log line.
type Outcome = anyhow::Result<&'static str>;

/// Serve one client until it leaves, errs, or the server shuts down.
pub async fn run(socket: TcpStream, peer: SocketAddr, ctx: Arc<ServerCtx>) {
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
    let Some(handle) = ctx.clients.register(peer, Kind::Rtmp, ctx.index) else { return };
    let permit = ctx.limit.try_acquire();
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
        pending: Vec::new(),
        started: Instant::now(),
        closing: false,
    };
    let (mut reader, mut writer) = socket.into_split();
    let outcome = conn.serve(&mut reader, &mut writer).await;
    conn.finish(&mut writer).await;
    let app = conn.app.as_ref().map_or("", |a| a.name.as_str());
    match outcome {
        Ok(why) => tracing::info!(client = %peer, app, bytes_in = conn.session.bytes_received(), "disconnect: {why}"),
        Err(e) => tracing::info!(client = %peer, app, bytes_in = conn.session.bytes_received(), "disconnect: {e:#}"),
    }
}

impl Conn {
    async fn serve(&mut self, reader: &mut OwnedReadHalf, writer: &mut OwnedWriteHalf) -> Outcome {
        // Players send little: start small and grow only for a publisher's media.
        let mut buf = BytesMut::with_capacity(READ_SMALL);
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
        loop {
            // A peer that reads nothing must not hold the connection past shutdown: the write
            // gives up when the server stops.
            tokio::select! {
                // The write first: it almost always completes at once (no random draw per loop).
                biased;
                r = self.flush(writer) => r?,
                _ = &mut cancelled => return Ok("server shutting down"),
                _ = &mut dropped => return Ok("dropped by control"),
            }
            if self.closing {
                return Ok("closed by server");
            }
            if let Some(due) = self.next_deadline() {
                if armed.is_none_or(|a| due < a) {
                    timer.as_mut().reset(due.into());
                    armed = Some(due);
                }
            }
            tokio::select! {
                // While a callback decides, the client's next messages wait in the socket.
                n = reader.read_buf(&mut buf), if self.waiting.is_none() => {
                    let n = n?;
                    if n == 0 {
                        return Ok("closed by client");
                    }
                    self.handle.add_in(n);
                    self.session.handle_input(&mut buf, &mut events, self.started.elapsed())?;
                    for ev in events.drain(..) {
                        if self.waiting.is_some() {
                            self.deferred.push_back(ev);
                        } else {
                            self.handle(ev);
                        }
                    }
                    let want = if self.publishing.is_some() { READ_LARGE } else { READ_SMALL };
                    if buf.capacity() - buf.len() < want / 4 {
                        buf.reserve(want);
                    }
                }
                reply = decided(&mut self.waiting) => self.on_decided(reply),
                reply = update_answered(&mut self.updates) => self.on_update_reply(reply)?,
                batch = next_batch(&mut self.playing) => self.send_batch(batch),
                status = module_status(&mut self.publishing) => self.on_module_status(status),
                // After a callback being waited for: the redirect stays in its slot till then.
                to = self.handle.redirected(), if self.waiting.is_none() => self.on_redirect(to),
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    self.on_timer()?;
                }
                _ = &mut cancelled => return Ok("server shutting down"),
                _ = &mut dropped => return Ok("dropped by control"),
            }
        }
    }

    /// Write everything pending, giving up on a peer that accepts nothing for `timeout`.
    async fn flush(&mut self, writer: &mut OwnedWriteHalf) -> anyhow::Result<()> {
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

    async fn write_pending(&mut self, writer: &mut OwnedWriteHalf) -> anyhow::Result<()> {
        // Usually the socket takes everything at once: no timer needed for that.
        if try_write_vectored(writer, &mut self.pending)? {
            return Ok(());
        }
        let timeout = self.ctx.conf.core.timeout;
        match tokio::time::timeout(timeout, write_all_vectored(writer, &mut self.pending)).await {
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
            ServerEvent::CloseStream { stream_id } => self.on_close_stream(stream_id),
            ServerEvent::PingResponse(_) => {}
        }
    }

    fn on_connect(&mut self, info: ConnectInfo) {
        if self.permit.is_none() {
            let max = self.ctx.limit.max().unwrap_or_default();
            self.ctx.access.refuse(Refusal::MaxConnections);
            tracing::info!(client = %self.peer, app = %for_log(&info.app), reason = %Refusal::MaxConnections.as_str(), "connect refused: {max} clients connected (max_connections)");
            self.session.reject_connect("Too many connections.");
            self.closing = true;
            return;
        }
        let Some(app) = self.ctx.apps.iter().find(|a| a.name == info.app).cloned() else {
            tracing::info!(client = %self.peer, app = %for_log(&info.app), "connect refused: no such application");
            self.session.reject_connect(&format!("application \"{}\" not found", for_log(&info.app)));
            self.closing = true;
            return;
        };
        let client = ClientInfo {
            id: self.handle.id(),
            addr: self.peer,
            app: info.app.clone(),
            flash_ver: info.flash_ver.clone(),
            swf_url: info.swf_url.clone(),
            tc_url: info.tc_url.clone(),
            page_url: info.page_url.clone(),
        };
        self.app_args = info.app_args.clone();
        self.connect_app = Some(app.clone());
        if let Some(url) = &app.notify.on_connect {
            let form = notify::connect_form(&client, self.epoch, &info.app_args);
            self.client = Some(client);
            let call = Call::new(&app.notify, "connect", url, form);
            self.wait_for(call, Resume::Connect { app: app.clone() });
            return;
        }
        self.client = Some(client);
        self.accept_connect(app);
    }

    fn accept_connect(&mut self, app: Arc<AppConf>) {
        if let Some(c) = &self.client {
            tracing::info!(client = %self.peer, app = %app.name, tc_url = %for_log(&c.tc_url), flash_ver = %for_log(&c.flash_ver), "connect");
        }
        self.ctx.access.accept(Stage::Connect);
        self.handle.set_app(&app.name);
        self.app = Some(app);
        self.session.accept_connect();
    }

    fn stream_options(&self) -> StreamOptions {
        let gop_cache = self.app.as_ref().is_some_and(|a| a.live.gop_cache);
        StreamOptions { ring_len: self.ctx.conf.core.out_queue, gop_cache }
    }

    fn on_publish(&mut self, stream_id: u32, name: String, args: String, kind: String) {
        let Some(app) = self.app.clone() else { return };
        if self.publishing.is_some() {
            self.session.send_status(
                stream_id,
                "error",
                "NetStream.Publish.BadName",
                "Already publishing on this connection.",
            );
            return;
        }
        if !self.valid_name(Stage::Publish, stream_id, &name)
            || !self.check_access(&app, Action::Publish, stream_id, &name, &args)
        {
            return;
        }
        if let (Some(url), Some(client)) = (&app.notify.on_publish, &self.client) {
            let form = notify::publish_form(client, &name, &kind, &args);
            let call = Call::new(&app.notify, "publish", url, form);
            self.wait_for(call, Resume::Publish { stream_id, name, args, kind });
            return;
        }
        let asked = Asked { name: name.clone(), args: args.clone() };
        self.start_publish(&app, stream_id, name, asked, kind);
    }

    /// Claim the stream in the hub and start its outputs. `name` is where it lands (the
    /// callback may have renamed it), `asked` what the client asked for.
    fn start_publish(&mut self, app: &Arc<AppConf>, stream_id: u32, name: String, asked: Asked, kind: String) {
        // Again here: `on_publish` may have renamed the stream.
        if !self.valid_name(Stage::Publish, stream_id, &name) {
            return;
        }
        let source = streams::Source { app, name: &name, args: &asked.args, client: self.client.as_ref() };
        match streams::publish(&self.ctx.hub, &self.ctx.modules, &source, self.stream_options()) {
            Ok(Published { publisher, status }) => {
                tracing::info!(client = %self.peer, app = %app.name, stream = %name, args = %redact_query(&asked.args), kind = %for_log(&kind), "publish");
                self.ctx.access.accept(Stage::Publish);
                self.session.accept_publish(stream_id, &name);
                self.handle.set_stream(&name, Role::Publisher);
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
        let Some(app) = self.app.clone() else { return };
        if !self.valid_name(Stage::Play, stream_id, &name)
            || !self.check_access(&app, Action::Play, stream_id, &name, &args)
        {
            return;
        }
        if let (Some(url), Some(client)) = (&app.notify.on_play, &self.client) {
            // The rtmp crate reports an absent start as -2 and an absent duration as -1;
            // nginx-rtmp reports absent ones as 0.
            let start = if start == -2.0 { 0.0 } else { start };
            let duration = if duration == -1.0 { 0.0 } else { duration };
            let form = notify::play_form(client, &name, start, duration, reset, &args);
            let call = Call::new(&app.notify, "play", url, form);
            self.wait_for(call, Resume::Play { stream_id, name, args, reset });
            return;
        }
        let asked = Asked { name: name.clone(), args };
        self.start_play(&app, stream_id, name, asked, reset);
    }

    fn start_play(&mut self, app: &Arc<AppConf>, stream_id: u32, name: String, asked: Asked, reset: bool) {
        // Again here: `on_play` may have redirected the stream.
        if !self.valid_name(Stage::Play, stream_id, &name) {
            return;
        }
        // One play per connection, as nginx-rtmp's live module: a new `play` ends the old one,
        // so repeated plays cannot pile up idle streams in the hub.
        self.stop_playing();
        let found = streams::play(&self.ctx.hub, app, &name, self.stream_options());
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
        self.ctx.access.accept(Stage::Play);
        self.handle.set_stream(&name, Role::Player);
        // With `play_restart`, nginx-rtmp sends Play.Start when the stream starts, not before.
        if pack.live || !app.live.play_restart {
            self.session.accept_play(stream_id, &name, reset);
        }
        let mut playing = Playing { sub, stream_id, name, gate: PlayerGate::new(&app.live) };
        if pack.live {
            self.on_joined_live(app, &playing);
            self.send_start_pack(&mut playing, &pack);
        }
        self.playing = Some(playing);
        self.asked_play = Some(asked);
        self.start_updates(app);
    }

    /// End the current play, if any: leave the stream (the hub forgets it when nobody is left)
    /// and report `on_play_done`.
    fn stop_playing(&mut self) {
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

    /// `allow`/`deny` rules, then signed keys and publish keys. Refuses (and returns false)
    /// when the client may not do `action`.
    fn check_access(&mut self, app: &AppConf, action: Action, stream_id: u32, name: &str, args: &str) -> bool {
        match access::check_rules(&app.access.rules, action, self.peer.ip()) {
            RuleVerdict::Denied(rule) => {
                let why = format!("denied by rule \"{}\" (line {})", rule.text, rule.line);
                self.refuse(action.into(), stream_id, name, Refusal::Rule, &why);
                return false;
            }
            RuleVerdict::Allowed(rule) => {
                tracing::info!(client = %self.peer, app = %app.name, stream = %name, rule = %rule.text, line = rule.line, "{} allowed by rule", action.as_str());
            }
            RuleVerdict::NoMatch => {}
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        match auth::authorize(&app.access, action, &app.name, name, args, &self.app_args, now) {
            Ok(AuthOk::NotRequired) => true,
            Ok(how) => {
                let by = if how == AuthOk::Token { "signed token" } else { "publish key" };
                tracing::info!(client = %self.peer, app = %app.name, stream = %name, "{} allowed by {by}", action.as_str());
                true
            }
            Err(e) => {
                let reason = if e.is_token() { Refusal::Token } else { Refusal::PublishKey };
                self.refuse(action.into(), stream_id, name, reason, &e.to_string());
                false
            }
        }
    }

    /// Refuse a connect, publish or play: count it, log why, tell the client with the status
    /// nginx-rtmp clients expect, and close.
    fn refuse(&mut self, stage: Stage, stream_id: u32, name: &str, reason: Refusal, why: &str) {
        self.ctx.access.refuse(reason);
        let app = self.connect_app.as_ref().map_or("", |a| a.name.as_str());
        tracing::info!(client = %self.peer, app = %app, stream = %name, reason = %reason.as_str(), "{} refused: {why}", stage.as_str());
        self.tell_refused(stage, stream_id, why);
    }

    /// The status a refused client gets, then the connection closes.
    fn tell_refused(&mut self, stage: Stage, stream_id: u32, why: &str) {
        match stage {
            // Before the connect is accepted the client still reads 128-byte chunks while the
            // session writes `chunk_size` ones: the reply must fit one small chunk.
            Stage::Connect => self.session.reject_connect("Rejected by on_connect."),
            Stage::Publish => self.session.send_status(stream_id, "error", "NetStream.Publish.BadName", why),
            Stage::Play => self.session.send_status(stream_id, "error", "NetStream.Play.Failed", why),
            Stage::Update => {}
        }
        self.closing = true;
    }

    /// Start a callback and stop reading until it answers.
    fn wait_for(&mut self, call: Call, then: Resume) {
        let app = self.connect_app.as_ref().map_or("", |a| a.name.as_str());
        tracing::debug!(client = %self.peer, app = %app, url = %notify::log_url(&call.url), "notify {}: waiting", call.call);
        let url = notify::log_url(&call.url);
        let notifier = self.ctx.notifier.clone();
        let reply = Box::pin(async move { notifier.call(&call).await });
        self.waiting = Some(Waiting { reply, url, then });
    }

    /// A callback answered: carry on with what was asked, or refuse. Then handle what the
    /// client sent meanwhile.
    fn on_decided(&mut self, reply: Result<Reply, CallError>) {
        let Some(Waiting { url, then, .. }) = self.waiting.take() else { return };
        match then {
            Resume::Connect { app } => self.resume_connect(app, &url, reply),
            Resume::Publish { stream_id, name, args, kind } => {
                self.resume_publish(stream_id, name, args, kind, &url, reply)
            }
            Resume::Play { stream_id, name, args, reset } => {
                self.resume_play(stream_id, name, args, reset, &url, reply)
            }
        }
        while self.waiting.is_none() && !self.closing {
            let Some(ev) = self.deferred.pop_front() else { break };
            self.handle(ev);
        }
    }

    /// Refuse because the callback said no or could not be asked.
    fn refuse_by_callback(
        &mut self,
        stage: Stage,
        stream_id: u32,
        name: &str,
        url: &str,
        reply: Result<Reply, CallError>,
    ) {
        let call = format!("on_{}", stage.as_str());
        // What went wrong, without the callback's URL (the log has it; clients need not).
        let (reason, what) = match &reply {
            Ok(Reply::Refuse(status)) => (Refusal::CallbackStatus, format!("answered {status}")),
            Ok(Reply::Relay(to)) => {
                (Refusal::CallbackRelay, format!("redirected to {to}: relays (pull/push) are not implemented yet"))
            }
            Ok(Reply::Redirect(to)) => (Refusal::CallbackRedirect, format!("redirected to unknown \"{to}\"")),
            Ok(Reply::Allow) => (Refusal::CallbackStatus, "unexpected reply".to_owned()),
            Err(CallError::Timeout(t)) => (Refusal::CallbackTimeout, format!("no reply within {t:?} (notify_timeout)")),
            Err(CallError::Unreachable(_)) => (Refusal::CallbackUnreachable, "callback server unreachable".to_owned()),
        };
        let detail = match &reply {
            Err(e @ CallError::Unreachable(_)) => e.to_string(),
            _ => what.clone(),
        };
        self.ctx.access.refuse(reason);
        let app = self.connect_app.as_ref().map_or("", |a| a.name.as_str());
        tracing::info!(client = %self.peer, app = %app, stream = %name, reason = %reason.as_str(), "{} refused: {call} {url} {detail}", stage.as_str());
        self.tell_refused(stage, stream_id, &format!("{call} {what}"));
    }

    fn resume_connect(&mut self, app: Arc<AppConf>, url: &str, reply: Result<Reply, CallError>) {
        match reply {
            Ok(Reply::Allow) => {
                tracing::info!(client = %self.peer, app = %app.name, url = %url, "connect allowed by on_connect");
                self.accept_connect(app);
            }
            // nginx-rtmp: a redirected connect goes to the application `Location` names.
            Ok(Reply::Redirect(to)) if self.ctx.apps.iter().any(|a| a.name == to) => {
                let target = self.ctx.apps.iter().find(|a| a.name == to).cloned().expect("checked above");
                tracing::info!(client = %self.peer, app = %app.name, url = %url, "connect redirected by on_connect to application \"{to}\"");
                if let Some(c) = &mut self.client {
                    c.app = to;
                }
                self.connect_app = Some(target.clone());
                self.accept_connect(target);
            }
            other => self.refuse_by_callback(Stage::Connect, 0, "", url, other),
        }
    }

    fn resume_publish(
        &mut self,
        stream_id: u32,
        name: String,
        args: String,
        kind: String,
        url: &str,
        reply: Result<Reply, CallError>,
    ) {
        let Some(app) = self.app.clone() else { return };
        let asked = Asked { name: name.clone(), args };
        match reply {
            Ok(Reply::Allow) => {
                tracing::info!(client = %self.peer, app = %app.name, stream = %name, url = %url, "publish allowed by on_publish");
                self.start_publish(&app, stream_id, name, asked, kind);
            }
            Ok(Reply::Redirect(to)) => {
                let to = redirect_name(&to);
                tracing::info!(client = %self.peer, app = %app.name, stream = %name, url = %url, "publish renamed by on_publish to \"{}\"", for_log(&to));
                self.start_publish(&app, stream_id, to, asked, kind);
            }
            other => self.refuse_by_callback(Stage::Publish, stream_id, &name, url, other),
        }
    }

    fn resume_play(
        &mut self,
        stream_id: u32,
        name: String,
        args: String,
        reset: bool,
        url: &str,
        reply: Result<Reply, CallError>,
    ) {
        let Some(app) = self.app.clone() else { return };
        let asked = Asked { name: name.clone(), args };
        match reply {
            Ok(Reply::Allow) => {
                tracing::info!(client = %self.peer, app = %app.name, stream = %name, url = %url, "play allowed by on_play");
                self.start_play(&app, stream_id, name, asked, reset);
            }
            Ok(Reply::Redirect(to)) => {
                let to = redirect_name(&to);
                tracing::info!(client = %self.peer, app = %app.name, stream = %name, url = %url, "play redirected by on_play to \"{}\"", for_log(&to));
                self.start_play(&app, stream_id, to, asked, reset);
            }
            other => self.refuse_by_callback(Stage::Play, stream_id, &name, url, other),
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

    /// Send `on_update` when it is due and none is in flight.
    fn maybe_update(&mut self, now: Instant) {
        let (Some(app), Some(client)) = (&self.app, &self.client) else { return };
        let Some(url) = &app.notify.on_update else { return };
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
        let form = notify::update_form(client, publishing, time, self.last_timestamp, &asked.name, &asked.args);
        let call = Call::new(&app.notify, "update", url, form);
        tracing::debug!(client = %self.peer, app = %app.name, stream = %asked.name, url = %notify::log_url(&call.url), "notify update");
        let notifier = self.ctx.notifier.clone();
        u.in_flight = Some(Box::pin(async move { notifier.call(&call).await }));
    }

    /// nginx-rtmp's rule: a 4xx/5xx answer drops the client; with `notify_update_strict on`
    /// so does any other failure (3xx, timeout, no connection).
    fn on_update_reply(&mut self, reply: Result<Reply, CallError>) -> anyhow::Result<()> {
        let Some(app) = self.app.clone() else { return Ok(()) };
        let strict = app.notify.update_strict;
        let url = notify::log_url(app.notify.on_update.as_deref().unwrap_or_default());
        let stream =
            self.asked_publish.as_ref().or(self.asked_play.as_ref()).map_or("", |a| a.name.as_str()).to_owned();
        let failure = match &reply {
            Ok(Reply::Allow) => None,
            Ok(Reply::Refuse(status)) => Some((Refusal::CallbackStatus, format!("answered {status}"), true)),
            Ok(other) => Some((Refusal::CallbackStatus, format!("answered a redirect ({other:?})"), strict)),
            Err(e @ CallError::Timeout(_)) => Some((Refusal::CallbackTimeout, e.to_string(), strict)),
            Err(e @ CallError::Unreachable(_)) => Some((Refusal::CallbackUnreachable, e.to_string(), strict)),
        };
        if let Some(u) = &mut self.updates {
            u.in_flight = None;
            u.due = Instant::now() + app.notify.update_timeout;
        }
        match failure {
            None => {
                self.ctx.access.accept(Stage::Update);
                Ok(())
            }
            Some((reason, why, true)) => {
                self.ctx.access.refuse(reason);
                tracing::info!(client = %self.peer, app = %app.name, stream = %stream, reason = %reason.as_str(), "update refused: on_update {url} {why}");
                anyhow::bail!("dropped by on_update ({why})")
            }
            Some((_, why, false)) => {
                tracing::warn!(client = %self.peer, app = %app.name, stream = %stream, "on_update {url} failed: {why}; keeping the client (notify_update_strict off)");
                Ok(())
            }
        }
    }

    /// `on_publish_done`/`on_play_done` and `on_done` for a stream that ended.
    fn notify_done(&mut self, publishing: bool) {
        let calls = self.done_calls(publishing);
        if !calls.is_empty() {
            self.ctx.notifier.spawn_all(calls, self.peer.to_string());
        }
    }

    /// The calls that report a stream's end; the updates stop when nothing is left.
    fn done_calls(&mut self, publishing: bool) -> Vec<Call> {
        let asked = if publishing { self.asked_publish.take() } else { self.asked_play.take() };
        if self.asked_publish.is_none() && self.asked_play.is_none() {
            self.updates = None;
        }
        let (Some(asked), Some(app), Some(client)) = (asked, &self.app, &self.client) else { return Vec::new() };
        let n = &app.notify;
        let (call, url) =
            if publishing { ("publish_done", &n.on_publish_done) } else { ("play_done", &n.on_play_done) };
        let mut calls = Vec::new();
        for (call, url) in [(call, url), ("done", &n.on_done)] {
            if let Some(url) = url {
                let form = notify::done_form(client, call, &asked.name, &asked.args);
                calls.push(Call::new(n, call, url, form));
            }
        }
        calls
    }

    /// The calls a connection's end makes: what it still published or played ended, then
    /// `on_disconnect` (for every client that got as far as `connect`, as nginx-rtmp does).
    fn final_calls(&mut self) -> Vec<Call> {
        let mut calls = self.done_calls(true);
        calls.extend(self.done_calls(false));
        if let (Some(app), Some(client)) = (&self.connect_app, &self.client) {
            if let Some(url) = &app.notify.on_disconnect {
                let form = notify::disconnect_form(client, &self.app_args);
                calls.push(Call::new(&app.notify, "disconnect", url, form));
            }
        }
        calls
    }

    fn on_media(&mut self, kind: MediaKind, timestamp: u32, payload: Bytes) {
        let (Some(app), Some(p)) = (&self.app, &mut self.publishing) else { return };
        p.last_media = Instant::now();
        self.last_timestamp = timestamp;
        if let Some(frame) = live::ingest(&app.live, kind, timestamp, payload) {
            if frame.sequence_header {
                record_codec(&self.peer, p, &frame);
            }
            p.publisher.stream().push(frame);
        }
    }

    fn on_pause(&mut self, stream_id: u32, paused: bool) {
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
        if self.playing.as_ref().is_some_and(|p| p.stream_id == stream_id) {
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
        let csid = if interleave { MediaKind::Video.csid() } else { frame.kind.csid() };
        let chunk_size = self.session.chunk_size();
        if stream_id == 1 {
            return frame.rtmp_chunks(chunk_size, csid);
        }
        let mut out = BytesMut::new();
        rtmp::chunk::encode_message(
            &mut out,
            chunk_size,
            csid,
            frame.timestamp,
            frame.kind.type_id(),
            stream_id,
            &frame.payload,
        );
        out.freeze()
    }

    fn send_batch(&mut self, batch: crate::hub::Batch) {
        let Some(mut playing) = self.playing.take() else { return };
        if batch.skipped > 0 {
            // Fell behind: resend headers so the resume point (a keyframe) decodes.
            tracing::debug!(client = %self.peer, stream = %playing.name, skipped = batch.skipped, "player lagging, skipped to keyframe");
            playing.gate.restart();
            let mut pack = playing.sub.stream().start_pack();
            pack.gop.clear();
            self.send_start_pack(&mut playing, &pack);
        }
        let has_video = playing.sub.stream().has_video();
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
    async fn finish(&mut self, writer: &mut OwnedWriteHalf) {
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
        let calls = self.final_calls();
        if !calls.is_empty() {
            self.ctx.notifier.spawn_all(calls, self.peer.to_string());
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.flush(writer)).await;
        let _ = writer.shutdown().await;
    }
}

/// The reply of the callback being waited for; never, when none is.
async fn decided(waiting: &mut Option<Waiting>) -> Result<Reply, CallError> {
    match waiting {
        Some(w) => w.reply.as_mut().await,
        None => std::future::pending().await,
    }
}

/// The reply of the `on_update` call in flight; never, when none is.
async fn update_answered(updates: &mut Option<Updates>) -> Result<Reply, CallError> {
    match updates.as_mut().and_then(|u| u.in_flight.as_mut()) {
        Some(f) => f.as_mut().await,
        None => std::future::pending().await,
    }
}

/// A redirect's `Location` as a stream name: a query it carries is not part of the name.
fn redirect_name(location: &str) -> String {
    location.split_once('?').map_or(location, |(name, _)| name).to_owned()
}

/// The next module status for the publisher, while modules may still send some.
async fn module_status(publishing: &mut Option<Publishing>) -> Option<Status> {
    match publishing.as_mut().and_then(|p| p.status.as_mut()) {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_batch(playing: &mut Option<Playing>) -> crate::hub::Batch {
    match playing {
        Some(p) => p.sub.next_batch(MAX_BATCH).await,
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

/// Most buffers handed to one `writev` (Linux's IOV_MAX is 1024).
const MAX_IOVECS: usize = 64;

/// Write what the socket takes now without waiting; true when everything was written.
fn try_write_vectored(writer: &OwnedWriteHalf, bufs: &mut Vec<Bytes>) -> std::io::Result<bool> {
    let stream: &TcpStream = writer.as_ref();
    loop {
        let slices: Vec<std::io::IoSlice<'_>> =
            bufs.iter().take(MAX_IOVECS).map(|b| std::io::IoSlice::new(b)).collect();
        match stream.try_io(tokio::io::Interest::WRITABLE, || send_vectored(stream, &slices)) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => consume(bufs, n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
        if bufs.is_empty() {
            return Ok(true);
        }
    }
}

/// `sendmsg` rather than `writev`: the same gathered write without the file layer
/// (`vfs_writev`, `fdget_pos`), which showed in the fan-out profile; `MSG_NOSIGNAL` so a peer
/// that left gives an error, not SIGPIPE.
fn send_vectored(stream: &TcpStream, slices: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix (std guarantees it); the msghdr
    // points at `slices`, which outlive the call; no name or control data.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = slices.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = slices.len() as _;
        libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Write all buffers with vectored writes, waiting for the socket as needed.
async fn write_all_vectored(writer: &mut OwnedWriteHalf, bufs: &mut Vec<Bytes>) -> std::io::Result<()> {
    while !bufs.is_empty() {
        let slices: Vec<std::io::IoSlice<'_>> =
            bufs.iter().take(MAX_IOVECS).map(|b| std::io::IoSlice::new(b)).collect();
        let n = writer.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        consume(bufs, n);
    }
    Ok(())
}

/// Drop the first `n` written bytes from `bufs`.
fn consume(bufs: &mut Vec<Bytes>, mut n: usize) {
    use bytes::Buf;
    let mut done = 0;
    while n > 0 {
        let b = &mut bufs[done];
        let take = n.min(b.len());
        b.advance(take);
        n -= take;
        if b.is_empty() {
            done += 1;
        }
    }
    bufs.drain(..done);
}

//! One RTMP connection: the tokio glue around `rtmp::ServerSession`. It reads the socket, feeds
//! the session, turns its events into hub operations (publish, play) and writes replies and
//! media. A connection publishes at most one stream and plays at most one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtmp::message::user_control;
use rtmp::{ConnectInfo, MediaKind, ServerConfig, ServerEvent, ServerSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::config::AppConf;
use crate::events::ClientInfo;
use crate::hub::{Entry, Frame, PublishError, Publisher, StartPack, StreamKey, StreamOptions, Subscriber};
use crate::live::{self, PlayerGate};
use crate::server::ServerCtx;

/// Most ring entries a player takes per write: bounds the batch a single writev carries.
const MAX_BATCH: usize = 64;
/// Read buffer of a connection that is not publishing (handshake, commands, acks).
const READ_SMALL: usize = 4096;
/// Read buffer of a publisher.
const READ_LARGE: usize = 64 * 1024;
/// How often timers (ping, idle publisher) are checked.
const TICK: Duration = Duration::from_millis(500);

struct Publishing {
    publisher: Publisher,
    stream_id: u32,
    name: String,
    last_media: Instant,
}

struct Playing {
    sub: Subscriber,
    stream_id: u32,
    name: String,
    gate: PlayerGate,
}

struct Conn {
    ctx: Arc<ServerCtx>,
    peer: SocketAddr,
    session: ServerSession,
    app: Option<Arc<AppConf>>,
    /// Who the client is, once it connected (for callbacks and recordings).
    client: Option<ClientInfo>,
    publishing: Option<Publishing>,
    playing: Option<Playing>,
    /// Bytes to write, in order: session replies, then media.
    pending: Vec<Bytes>,
    started: Instant,
    last_recv: Instant,
    ping_sent: Option<Instant>,
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
    };
    let epoch =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis()) as u32;
    let session = ServerSession::new(config, epoch, &mut rand::thread_rng());
    let mut conn = Conn {
        ctx,
        peer,
        session,
        app: None,
        client: None,
        publishing: None,
        playing: None,
        pending: Vec::new(),
        started: Instant::now(),
        last_recv: Instant::now(),
        ping_sent: None,
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
        let mut tick = tokio::time::interval(TICK);
        let shutdown = self.ctx.shutdown.clone();
        loop {
            self.flush(writer).await?;
            if self.closing {
                return Ok("closed by server");
            }
            tokio::select! {
                n = reader.read_buf(&mut buf) => {
                    if n? == 0 {
                        return Ok("closed by client");
                    }
                    self.last_recv = Instant::now();
                    self.ping_sent = None;
                    self.session.feed(&mut buf, &mut events)?;
                    for ev in events.drain(..) {
                        self.handle(ev);
                    }
                    let want = if self.publishing.is_some() { READ_LARGE } else { READ_SMALL };
                    if buf.capacity() - buf.len() < want / 4 {
                        buf.reserve(want);
                    }
                }
                batch = next_batch(&mut self.playing) => self.send_batch(batch),
                _ = tick.tick() => self.on_tick()?,
                _ = shutdown.cancelled() => return Ok("server shutting down"),
            }
        }
    }

    /// Write everything pending, giving up on a peer that accepts nothing for `timeout`.
    async fn flush(&mut self, writer: &mut OwnedWriteHalf) -> anyhow::Result<()> {
        self.drain_session();
        if self.pending.is_empty() {
            return Ok(());
        }
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
        self.drain_session();
        let chunks = self.chunks(frame, stream_id);
        self.pending.push(chunks);
    }

    fn handle(&mut self, ev: ServerEvent) {
        match ev {
            ServerEvent::Connect(info) => self.on_connect(info),
            ServerEvent::Publish { stream_id, name, args, kind } => self.on_publish(stream_id, name, args, kind),
            ServerEvent::Play { stream_id, name, args, reset, .. } => self.on_play(stream_id, name, args, reset),
            ServerEvent::Media { kind, timestamp, payload, .. } => self.on_media(kind, timestamp, payload),
            ServerEvent::Pause { stream_id, paused } => self.on_pause(stream_id, paused),
            ServerEvent::CloseStream { stream_id } => self.on_close_stream(stream_id),
            ServerEvent::PingResponse(_) => {}
        }
    }

    fn on_connect(&mut self, info: ConnectInfo) {
        let app = self.ctx.apps.iter().find(|a| a.name == info.app).cloned();
        match app {
            Some(app) => {
                tracing::info!(client = %self.peer, app = %info.app, tc_url = %info.tc_url, flash_ver = %info.flash_ver, "connect");
                self.client = Some(ClientInfo {
                    id: crate::events::next_client_id(),
                    addr: self.peer,
                    app: info.app.clone(),
                    flash_ver: info.flash_ver.clone(),
                    swf_url: info.swf_url.clone(),
                    tc_url: info.tc_url.clone(),
                    page_url: info.page_url.clone(),
                });
                self.app = Some(app);
                self.session.accept_connect();
            }
            None => {
                tracing::info!(client = %self.peer, app = %info.app, "connect refused: no such application");
                self.session.reject_connect(&format!("application \"{}\" not found", info.app));
                self.closing = true;
            }
        }
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
        let key = StreamKey { app: app.name.clone(), name: name.clone() };
        match self.ctx.hub.publish(key, self.stream_options()) {
            Ok(publisher) => {
                tracing::info!(client = %self.peer, app = %app.name, stream = %name, args = %args, kind = %kind, "publish");
                self.session.accept_publish(stream_id, &name);
                crate::hls::on_publish(&self.ctx.hls, &self.ctx.hub, &app, publisher.stream(), &name);
                if let Some(client) = &self.client {
                    crate::record::on_publish(&self.ctx, &app, publisher.stream(), &name, &args, client);
                }
                self.publishing = Some(Publishing { publisher, stream_id, name, last_media: Instant::now() });
            }
            Err(e @ (PublishError::AlreadyPublishing(_) | PublishError::TooManyStreams)) => {
                tracing::info!(client = %self.peer, app = %app.name, stream = %name, "publish refused: {e}");
                self.session.send_status(stream_id, "error", "NetStream.Publish.BadName", &e.to_string());
                self.closing = true;
            }
        }
    }

    fn on_play(&mut self, stream_id: u32, name: String, args: String, reset: bool) {
        let Some(app) = self.app.clone() else { return };
        let key = StreamKey { app: app.name.clone(), name: name.clone() };
        let create = (app.live.live && app.live.idle_streams).then(|| self.stream_options());
        let stream = if app.live.live { self.ctx.hub.get(&key, create) } else { None };
        let stream = match stream {
            Some(s) if s.is_live() || app.live.idle_streams => s,
            _ => {
                tracing::info!(client = %self.peer, app = %app.name, stream = %name, "play refused: stream not found");
                self.session.send_status(
                    stream_id,
                    "error",
                    "NetStream.Play.StreamNotFound",
                    &format!("No such stream: {name}"),
                );
                self.closing = true;
                return;
            }
        };
        tracing::info!(client = %self.peer, app = %app.name, stream = %name, args = %args, "play");
        self.session.accept_play(stream_id, &name, reset);
        let (pack, sub) = stream.subscribe();
        let mut playing = Playing { sub, stream_id, name, gate: PlayerGate::new(&app.live) };
        if pack.live {
            self.send_start_pack(&mut playing, &pack);
        }
        self.playing = Some(playing);
    }

    fn on_media(&mut self, kind: MediaKind, timestamp: u32, payload: Bytes) {
        let (Some(app), Some(p)) = (&self.app, &mut self.publishing) else { return };
        p.last_media = Instant::now();
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
                tracing::info!(client = %self.peer, stream = %p.name, "unpublish");
                self.session.send_status(
                    stream_id,
                    "status",
                    "NetStream.Unpublish.Success",
                    &format!("{} is now unpublished.", p.name),
                );
            }
        }
        if self.playing.as_ref().is_some_and(|p| p.stream_id == stream_id) {
            if let Some(p) = self.playing.take() {
                tracing::info!(client = %self.peer, stream = %p.name, "play done");
                let stream = p.sub.stream().clone();
                drop(p);
                self.ctx.hub.release(&stream);
            }
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
                Entry::Unpublished => self.on_stream_unpublished(&playing),
            }
        }
        self.playing = Some(playing);
    }

    fn on_stream_published(&mut self, playing: &mut Playing) {
        let Some(app) = &self.app else { return };
        let (notify, restart) = (app.live.publish_notify, app.live.play_restart);
        playing.gate.restart();
        if notify {
            self.session.send_status(
                playing.stream_id,
                "status",
                "NetStream.Play.PublishNotify",
                &format!("{} is now published.", playing.name),
            );
        }
        if restart {
            self.session.send_user_control(user_control::STREAM_BEGIN, playing.stream_id);
            self.session.send_status(
                playing.stream_id,
                "status",
                "NetStream.Play.Start",
                &format!("Started playing {}.", playing.name),
            );
        }
    }

    fn on_stream_unpublished(&mut self, playing: &Playing) {
        let restart = self.app.as_ref().is_some_and(|a| a.live.play_restart);
        if restart {
            self.session.send_status(playing.stream_id, "status", "NetStream.Play.Stop", "Stopped live.");
        }
        self.session.send_status(
            playing.stream_id,
            "status",
            "NetStream.Play.UnpublishNotify",
            &format!("{} is now unpublished.", playing.name),
        );
        self.session.send_user_control(user_control::STREAM_EOF, playing.stream_id);
    }

    /// Ping silent peers (`ping`/`ping_timeout`) and drop idle publishers (`drop_idle_publisher`).
    fn on_tick(&mut self) -> anyhow::Result<()> {
        let core = &self.ctx.conf.core;
        let now = Instant::now();
        if self.app.is_none() {
            // No pings before connect (the handshake may not even be done): just a deadline.
            if now.duration_since(self.started) >= core.timeout {
                anyhow::bail!("no connect within {:?} (timeout)", core.timeout);
            }
            return Ok(());
        }
        if let Some(sent) = self.ping_sent {
            if now.duration_since(sent) >= core.ping_timeout {
                anyhow::bail!("no reply to ping within {:?}", core.ping_timeout);
            }
        } else if !core.ping.is_zero() && now.duration_since(self.last_recv) >= core.ping {
            let stamp = now.elapsed().as_millis() as u32;
            self.session.send_user_control(user_control::PING_REQUEST, stamp);
            self.ping_sent = Some(now);
        }
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
                self.on_stream_unpublished(&p);
            }
            let stream = p.sub.stream().clone();
            drop(p);
            self.ctx.hub.release(&stream);
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.flush(writer)).await;
        let _ = writer.shutdown().await;
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

/// Most buffers handed to one `writev` (Linux's IOV_MAX is 1024).
const MAX_IOVECS: usize = 64;

/// Write what the socket takes now without waiting; true when everything was written.
fn try_write_vectored(writer: &OwnedWriteHalf, bufs: &mut Vec<Bytes>) -> std::io::Result<bool> {
    loop {
        let slices: Vec<std::io::IoSlice<'_>> =
            bufs.iter().take(MAX_IOVECS).map(|b| std::io::IoSlice::new(b)).collect();
        match writer.try_write_vectored(&slices) {
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

//! One HTTP-FLV or WebSocket-FLV player's byte stream: what the RTMP connection's play side
//! does (the start pack, the live gate, skip-to-keyframe, publish and unpublish), with FLV tags
//! for RTMP chunks. Each [`FlvPlayer::next_parts`] gives the bytes of one ring batch; the caller
//! writes them before asking again, so a slow reader falls behind in the ring, never in a queue
//! here. The tags are gathered ([`flv::Gathered`]): the player's own tag headers, the frames'
//! bodies shared.
//!
//! A player written directly to its socket ([`super::direct`]) can also be a member of a fan-out
//! shard ([`crate::fanout`], wire [`Wire::Flv`]) while it keeps up: [`FlvPlayer::join_shard`];
//! given back, it carries on from the shard's cursor, gate and timeline, the unwritten rest first.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use flv::{Gathered, LiveMuxer};
use rtmp::MediaKind;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::Session;
use crate::config::AppConf;
use crate::fanout::{Joining, Membership, Wire};
use crate::hub::{Batch, Entry, Frame, StartPack, Subscriber};
use crate::live::PlayerGate;
use crate::policy::{self, Ask, Policy, Refused};
use crate::transport::ShardSocket;

/// Most ring entries taken per write, as the RTMP connection takes.
const MAX_BATCH: usize = 64;

/// An `on_update` being asked; `Err` drops the player.
type UpdateFuture = Pin<Box<dyn Future<Output = Result<(), Refused>> + Send>>;

/// `on_update` every `notify_update_timeout` while playing, as for RTMP players.
struct Updates {
    started: Instant,
    due: Instant,
    in_flight: Option<UpdateFuture>,
}

/// A player of one stream, from its first bytes to its end.
pub(crate) struct FlvPlayer {
    sub: Subscriber,
    app: Arc<AppConf>,
    name: String,
    gate: PlayerGate,
    /// Stale while `shard` writes to the player (the shard keeps the timeline then).
    mux: LiveMuxer,
    /// The tags of the batch being made.
    tags: Gathered,
    /// The header and start pack, given by the first [`FlvPlayer::next_parts`].
    first: Vec<Bytes>,
    /// A fan-out shard writes the frames while the player keeps up.
    shard: Option<Membership>,
    /// Nothing more to send: the publisher left.
    ended: bool,
    /// `on_update` calls, when the application has them.
    updates: Option<Updates>,
    /// Control's drop and the server's shutdown, each built once: a fresh waiter per batch
    /// would register and unregister on the server-wide token for every player every frame.
    dropped: Pin<Box<WaitForCancellationFutureOwned>>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Dropped last (fields drop in order): reports the end once the stream is left.
    session: Session,
}

impl FlvPlayer {
    /// A player that joined `sub` with `pack`; its first bytes are the FLV header and, when the
    /// stream is live, the start pack.
    pub(super) fn new(session: Session, app: Arc<AppConf>, name: String, pack: StartPack, sub: Subscriber) -> Self {
        // Before the publisher, or before its headers came, both tracks may come.
        let known = pack.live && (pack.video_header.is_some() || pack.audio_header.is_some());
        let (audio, video) =
            if known { (pack.audio_header.is_some(), pack.video_header.is_some()) } else { (true, true) };
        let gate = PlayerGate::new(&app.live);
        let n = &app.notify;
        let now = Instant::now();
        let updates = (n.on_update.is_some() && !n.update_timeout.is_zero()).then(|| Updates {
            started: now,
            due: now + n.update_timeout,
            in_flight: None,
        });
        let mux = LiveMuxer::new();
        let dropped = Box::pin(session.handle.dropped());
        let shutdown = Box::pin(session.ctx.shutdown.clone().cancelled_owned());
        let mut p = FlvPlayer {
            sub,
            app,
            name,
            gate,
            mux,
            tags: Gathered::new(),
            first: Vec::new(),
            shard: None,
            ended: false,
            updates,
            dropped,
            shutdown,
            session,
        };
        p.tags.push_header(audio, video);
        if pack.live {
            p.write_start_pack(&pack);
        }
        p.session.handle.add_out(p.tags.len());
        let mut first = Vec::new();
        p.tags.finish(&mut first);
        p.first = first;
        p
    }

    /// The next bytes to send, in one piece; `None` when the response ends (as
    /// [`FlvPlayer::next_parts`]).
    pub(crate) async fn next(&mut self) -> Option<Bytes> {
        let mut parts = Vec::new();
        if !self.next_parts(&mut parts).await {
            return None;
        }
        Some(match parts.len() {
            1 => parts.pop().expect("one"),
            _ => parts.concat().into(),
        })
    }

    /// Join a fan-out shard of the stream, which then writes the frames to `socket` while the
    /// socket takes them at once. Only when everything made so far was written (the caller's
    /// part): the shard starts at the player's ring position.
    pub(crate) fn join_shard(&mut self, socket: &ShardSocket) {
        if self.shard.is_some() || self.ended || !self.first.is_empty() {
            return;
        }
        let stream = self.sub.stream().clone();
        let joining = Joining {
            socket: socket.clone(),
            cursor: self.sub.cursor(),
            gate: self.gate.clone(),
            wire: Wire::flv(self.mux.clone()),
            counters: self.session.handle.counters(),
        };
        self.shard = stream.direct.join(&stream, joining);
    }

    /// Carry on from where the shard gave the player back: its unwritten rest into `out`;
    /// false when the shard's write failed (the client is gone).
    fn leave_shard(&mut self, out: &mut Vec<Bytes>) -> bool {
        let Some(membership) = self.shard.take() else { return true };
        let resume = membership.leave();
        self.sub.set_cursor(resume.cursor);
        self.gate = resume.gate;
        if let Wire::Flv { mux, .. } = resume.wire {
            self.mux = mux;
        }
        if let Some(e) = resume.error {
            self.write_failed(&e);
            return false;
        }
        // The shard counted what it wrote.
        self.session.handle.add_out(resume.unwritten.iter().map(Bytes::len).sum());
        out.extend(resume.unwritten);
        true
    }

    /// The player's socket failed (the client left, or read nothing for `send_timeout`): the
    /// response ends. Routine, and a client can cause it at will: debug only.
    pub(crate) fn write_failed(&self, e: &std::io::Error) {
        tracing::debug!(client = %self.session.client.addr, app = %self.app.name, stream = %self.name, "http-flv player write failed: {e}");
    }

    /// The next bytes to send, as pieces appended to `out`; false when the response ends:
    /// the publisher left, control dropped the player, the server shuts down, or a shard's
    /// write to the player failed.
    pub(crate) async fn next_parts(&mut self, out: &mut Vec<Bytes>) -> bool {
        if !self.first.is_empty() {
            out.append(&mut self.first);
            return true;
        }
        loop {
            if self.ended {
                return false;
            }
            let due = self.updates.as_ref().filter(|u| u.in_flight.is_none()).map(|u| u.due);
            let batch = tokio::select! {
                biased;
                _ = self.dropped.as_mut() => {
                    tracing::info!(client = %self.session.client.addr, stream = %self.name, "player dropped by control");
                    return false;
                }
                _ = self.shutdown.as_mut() => return false,
                answer = update_answered(&mut self.updates) => {
                    if let Err(refused) = answer {
                        tracing::info!(client = %self.session.client.addr, stream = %self.name, "player dropped by on_update ({})", refused.text);
                        return false;
                    }
                    self.update_answered();
                    continue;
                }
                () = update_due(due) => {
                    self.start_update();
                    continue;
                }
                batch = next_batch(&mut self.sub, &self.shard) => batch,
            };
            let Some(batch) = batch else {
                if !self.leave_shard(out) {
                    return false;
                }
                if !out.is_empty() {
                    return true;
                }
                continue;
            };
            // The stream's timeline, as RTMP players report it (stats measure lag with it).
            let last =
                batch.entries.iter().rev().find_map(|e| if let Entry::Frame(f) = e { Some(f.timestamp) } else { None });
            self.write_batch(batch);
            if !self.tags.is_empty() {
                self.session.handle.add_out(self.tags.len());
                if let Some(ts) = last {
                    self.session.handle.set_timestamp(ts);
                }
                self.tags.finish(out);
                return true;
            }
        }
    }

    /// Ask `on_update` now (the stream as asked, the time played, the last timestamp sent).
    fn start_update(&mut self) {
        let Some(u) = &mut self.updates else { return };
        let Some((name, args)) = self.session.asked.clone() else { return };
        let (ctx, app, client) = (self.session.ctx.clone(), self.app.clone(), self.session.client.clone());
        let (time, timestamp) = (u.started.elapsed().as_secs(), self.mux.last_timestamp());
        u.in_flight = Some(Box::pin(async move {
            let ask = Ask { client: &client, app: &app, app_args: "", name: &name, args: &args };
            policy::update(&Policy::of(&ctx), &ask, false, time, timestamp).await
        }));
    }

    /// `on_update` allowed: the next one is due `notify_update_timeout` from now.
    fn update_answered(&mut self) {
        if let Some(u) = &mut self.updates {
            u.in_flight = None;
            u.due = Instant::now() + self.app.notify.update_timeout;
        }
    }

    /// Whether the server is shutting down (a WebSocket then closes with "going away").
    pub(crate) fn shutting_down(&self) -> bool {
        self.session.ctx.shutdown.is_cancelled()
    }

    /// One ring batch as FLV tags, as the RTMP connection's `send_batch` sends it.
    fn write_batch(&mut self, batch: Batch) {
        if batch.skipped > 0 {
            // Fell behind: resume at a keyframe, after the headers it needs.
            tracing::debug!(client = %self.session.client.addr, stream = %self.name, skipped = batch.skipped, "player lagging, skipped to keyframe");
            self.session.handle.add_dropped(batch.skipped);
            self.gate.restart();
            let mut pack = self.sub.stream().start_pack();
            pack.gop.clear();
            self.write_start_pack(&pack);
        }
        let has_video = self.sub.stream().has_video();
        for entry in batch.entries {
            match entry {
                Entry::Frame(f) => {
                    if self.gate.admit(&f, has_video) {
                        self.write_frame(&f);
                    }
                }
                // A new publisher: its metadata and sequence headers follow in the ring.
                Entry::Published => {
                    tracing::debug!(client = %self.session.client.addr, stream = %self.name, "player: stream published");
                    self.gate.restart();
                    self.mux.rebase();
                }
                Entry::Unpublished => {
                    tracing::info!(client = %self.session.client.addr, app = %self.app.name, stream = %self.name, "player closed: publisher left");
                    self.ended = true;
                    break;
                }
            }
        }
    }

    /// Metadata, sequence headers and the cached GOP.
    fn write_start_pack(&mut self, pack: &StartPack) {
        let has_video = pack.video_header.is_some();
        let frames = pack.metadata.iter().chain(&pack.video_header).chain(&pack.audio_header).chain(&pack.gop);
        for f in frames {
            if self.gate.admit(f, has_video) {
                self.write_frame(f);
            }
        }
    }

    fn write_frame(&mut self, f: &Frame) {
        // Data messages (metadata, cue points) have no clock of their own.
        let config = f.sequence_header || f.kind == MediaKind::Data;
        if let Err(e) = self.mux.gather(&mut self.tags, f.kind.type_id(), f.timestamp, &f.payload, config) {
            tracing::debug!(client = %self.session.client.addr, stream = %self.name, "frame not sent: {e}");
        }
    }
}

/// The player's next batch; `None` when its fan-out shard, which reads the ring for it
/// meanwhile, gave it back.
async fn next_batch(sub: &mut Subscriber, shard: &Option<Membership>) -> Option<Batch> {
    match shard {
        Some(m) => {
            std::future::poll_fn(|cx| m.poll_given_back(cx)).await;
            None
        }
        None => Some(sub.next_batch(MAX_BATCH).await),
    }
}

/// The answer of the `on_update` call in flight; never, when none is.
async fn update_answered(updates: &mut Option<Updates>) -> Result<(), Refused> {
    match updates.as_mut().and_then(|u| u.in_flight.as_mut()) {
        Some(f) => f.as_mut().await,
        None => std::future::pending().await,
    }
}

/// When the next `on_update` is due; never, when none is.
async fn update_due(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

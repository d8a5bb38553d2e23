//! One HTTP-FLV or WebSocket-FLV player's byte stream: what the RTMP connection's play side
//! does (the start pack, the live gate, skip-to-keyframe, publish and unpublish), with FLV tags
//! for RTMP chunks. Each [`FlvPlayer::next`] gives the bytes of one ring batch; the caller writes
//! them before asking again, so a slow reader falls behind in the ring, never in a queue here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use flv::LiveMuxer;
use rtmp::MediaKind;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::Session;
use crate::config::AppConf;
use crate::hub::{Batch, Entry, Frame, StartPack, Subscriber};
use crate::live::PlayerGate;
use crate::policy::{self, Ask, Policy, Refused};

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
    mux: LiveMuxer,
    /// The header and start pack, given by the first [`FlvPlayer::next`].
    first: Option<Bytes>,
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
        let mut p =
            FlvPlayer { sub, app, name, gate, mux, first: None, ended: false, updates, dropped, shutdown, session };
        let mut out = LiveMuxer::header(audio, video).to_vec();
        if pack.live {
            p.write_start_pack(&mut out, &pack);
        }
        p.first = Some(out.into());
        p
    }

    /// The next bytes to send; `None` when the response ends: the publisher left, control
    /// dropped the player, or the server shuts down.
    pub(crate) async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            self.session.handle.add_out(first.len());
            return Some(first);
        }
        loop {
            if self.ended {
                return None;
            }
            let due = self.updates.as_ref().filter(|u| u.in_flight.is_none()).map(|u| u.due);
            let batch = tokio::select! {
                biased;
                _ = self.dropped.as_mut() => {
                    tracing::info!(client = %self.session.client.addr, stream = %self.name, "player dropped by control");
                    return None;
                }
                _ = self.shutdown.as_mut() => return None,
                answer = update_answered(&mut self.updates) => {
                    if let Err(refused) = answer {
                        tracing::info!(client = %self.session.client.addr, stream = %self.name, "player dropped by on_update ({})", refused.text);
                        return None;
                    }
                    self.update_answered();
                    continue;
                }
                () = update_due(due) => {
                    self.start_update();
                    continue;
                }
                batch = self.sub.next_batch(MAX_BATCH) => batch,
            };
            let mut out = Vec::new();
            // The stream's timeline, as RTMP players report it (stats measure lag with it).
            let last =
                batch.entries.iter().rev().find_map(|e| if let Entry::Frame(f) = e { Some(f.timestamp) } else { None });
            self.write_batch(&mut out, batch);
            if !out.is_empty() {
                self.session.handle.add_out(out.len());
                if let Some(ts) = last {
                    self.session.handle.set_timestamp(ts);
                }
                return Some(out.into());
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
    fn write_batch(&mut self, out: &mut Vec<u8>, batch: Batch) {
        if batch.skipped > 0 {
            // Fell behind: resume at a keyframe, after the headers it needs.
            tracing::debug!(client = %self.session.client.addr, stream = %self.name, skipped = batch.skipped, "player lagging, skipped to keyframe");
            self.session.handle.add_dropped(batch.skipped);
            self.gate.restart();
            let mut pack = self.sub.stream().start_pack();
            pack.gop.clear();
            self.write_start_pack(out, &pack);
        }
        let has_video = self.sub.stream().has_video();
        let size: usize =
            batch.entries.iter().map(|e| if let Entry::Frame(f) = e { f.payload.len() + 15 } else { 0 }).sum();
        out.reserve(size);
        for entry in batch.entries {
            match entry {
                Entry::Frame(f) => {
                    if self.gate.admit(&f, has_video) {
                        self.write_frame(out, &f);
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
    fn write_start_pack(&mut self, out: &mut Vec<u8>, pack: &StartPack) {
        let has_video = pack.video_header.is_some();
        let frames = pack.metadata.iter().chain(&pack.video_header).chain(&pack.audio_header).chain(&pack.gop);
        for f in frames {
            if self.gate.admit(f, has_video) {
                self.write_frame(out, f);
            }
        }
    }

    fn write_frame(&mut self, out: &mut Vec<u8>, f: &Frame) {
        // Data messages (metadata, cue points) have no clock of their own.
        let config = f.sequence_header || f.kind == MediaKind::Data;
        if let Err(e) = self.mux.write(out, f.kind.type_id(), f.timestamp, &f.payload, config) {
            tracing::debug!(client = %self.session.client.addr, stream = %self.name, "frame not sent: {e}");
        }
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

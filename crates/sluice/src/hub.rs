//! The stream hub: a registry of live streams keyed by (application, name), and the fan-out from
//! one publisher to every subscriber (RTMP players today; HLS, recorders, relays later).
//!
//! Each stream owns a bounded ring of shared [`Entry`]s. The publisher appends and wakes waiting
//! subscribers; it never waits for one. Each subscriber keeps its own read position: one that falls
//! more than the ring's length behind skips to the next keyframe and counts the frames it lost.
//! The ring also carries publish/unpublish events, so subscribers see them in order with media.
//! A stream outlives its publisher while it has subscribers: a publisher that reconnects under
//! the same name finds the same stream, and its players read on (the connection decides what
//! they are told, and closes them with `idle_streams off`).
//!
//! **Invariant:** nothing here awaits a subscriber; the publisher's cost per frame is one ring slot
//! write and one wake-up, whatever the number of players.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtmp::MediaKind;

/// Most frames the GOP cache keeps: a stream with no keyframe for this long stops being cached
/// until the next keyframe, so a broken encoder cannot grow memory.
const MAX_GOP_FRAMES: usize = 4096;
/// Most bytes the GOP cache keeps, for the same reason.
const MAX_GOP_BYTES: usize = 64 << 20;

/// Longest an audio frame waits for a video frame to wake subscribers together (while the
/// stream's fan-out is [`Pacing::batching`]).
const MAX_AUDIO_HOLD: Duration = Duration::from_millis(50);
/// A subscriber picking up entries this long after the newest of them was pushed (or not
/// reaching the ring's head) is late: the server did not get round to it before the next frame
/// (about one audio frame's spacing).
const LATE_PICKUP: Duration = Duration::from_millis(20);
/// A round in which at least 1 pickup in this many was late makes the fan-out batch. Players
/// busy with their own backlog (a slow link; the cached GOP sent to each of 200 players joining
/// a second) are late without the server being busy, so a quarter: when the server falls
/// behind, nearly every pickup is late.
const BUSY_SHARE: u64 = 4;
/// Busy rounds in a row that start batching. A keyframe's round alone is late whenever a
/// stream's shards take longer than [`LATE_PICKUP`] to write it (2000 players of a 2.5 Mbit/s
/// stream on loopback), and so is the round after it; held audio would then cost a second of
/// latency at each keyframe on a server that keeps up. A server that falls behind is late in
/// every round, and batches a few rounds later.
const BUSY_ROUNDS: u32 = 4;
/// A round in which fewer than 1 pickup in this many was late is calm.
const CALM_SHARE: u64 = 100;
/// Calm rounds in a row that end batching (1 s of 30 fps video): batching makes rounds cheaper,
/// so a server near the edge would otherwise flap between the two every few rounds; and not
/// longer, so a burst (a join storm) does not hold audio back for long after it.
const CALM_ROUNDS: u32 = 30;

/// What a message's FLV tag header said, parsed once when the frame is made so that no output
/// parses it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// A video message's header.
    Video(flv::VideoHeader),
    /// An audio message's header.
    Audio(flv::AudioHeader),
    /// A data message, or an audio message whose header did not parse (passed on as it came).
    None,
}

/// One media message from a publisher, stored once and shared by every subscriber.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Audio, video or metadata.
    pub kind: MediaKind,
    /// Publisher timestamp in milliseconds.
    pub timestamp: u32,
    /// The FLV tag body (RTMP message payload).
    pub payload: Bytes,
    /// A video keyframe (players may start here); set from [`Frame::tag`].
    pub keyframe: bool,
    /// An AVC/HEVC/AV1 sequence header, AAC config or `onMetaData`, to be resent to each new
    /// player; set from [`Frame::tag`] (or by [`Frame::data`]).
    pub sequence_header: bool,
    tag: Tag,
    /// The frame chunked for RTMP once, for the first chunk size asked for.
    chunked: OnceLock<(u32, Bytes)>,
}

impl Frame {
    /// A video message; `None` when its tag header does not parse (no output could use it).
    pub fn video(timestamp: u32, payload: Bytes) -> Option<Self> {
        let h = flv::parse_video(&payload).ok()?;
        let seq = h.is_sequence_header();
        Some(Self::with_tag(MediaKind::Video, timestamp, payload, Tag::Video(h), h.is_keyframe() && !seq, seq))
    }

    /// An audio message. One whose tag header does not parse is still passed on (players and
    /// FLV recordings take it as it came), with [`Tag::None`].
    pub fn audio(timestamp: u32, payload: Bytes) -> Self {
        match flv::parse_audio(&payload) {
            Ok(h) => Self::with_tag(MediaKind::Audio, timestamp, payload, Tag::Audio(h), false, h.is_sequence_header()),
            Err(_) => Self::with_tag(MediaKind::Audio, timestamp, payload, Tag::None, false, false),
        }
    }

    /// A data message; `metadata` marks `onMetaData`, kept for new players and recordings.
    pub fn data(timestamp: u32, payload: Bytes, metadata: bool) -> Self {
        Self::with_tag(MediaKind::Data, timestamp, payload, Tag::None, false, metadata)
    }

    fn with_tag(kind: MediaKind, timestamp: u32, payload: Bytes, tag: Tag, keyframe: bool, seq: bool) -> Self {
        Self { kind, timestamp, payload, keyframe, sequence_header: seq, tag, chunked: OnceLock::new() }
    }

    /// The parsed tag header.
    pub fn tag(&self) -> &Tag {
        &self.tag
    }

    /// The video tag header, for a video frame.
    pub fn video_header(&self) -> Option<&flv::VideoHeader> {
        match &self.tag {
            Tag::Video(h) => Some(h),
            _ => None,
        }
    }

    /// The audio tag header, for an audio frame whose header parsed.
    pub fn audio_header(&self) -> Option<&flv::AudioHeader> {
        match &self.tag {
            Tag::Audio(h) => Some(h),
            _ => None,
        }
    }

    /// The codec payload after the tag header (configuration record, NAL units, audio frame);
    /// empty for [`Tag::None`].
    pub fn codec_payload(&self) -> &[u8] {
        match &self.tag {
            Tag::Video(h) => h.payload(&self.payload),
            Tag::Audio(h) => h.payload(&self.payload),
            Tag::None => &[],
        }
    }

    /// The RTMP chunks of this frame for message stream 1 and `chunk_size`: built once and shared
    /// by every player with that chunk size; other sizes are built per call.
    pub fn rtmp_chunks(&self, chunk_size: u32, csid: u32) -> Bytes {
        let build = || {
            let mut out = BytesMut::new();
            let ty = self.kind.type_id();
            rtmp::chunk::encode_message(&mut out, chunk_size, csid, self.timestamp, ty, 1, &self.payload);
            out.freeze()
        };
        let (size, bytes) = self.chunked.get_or_init(|| (chunk_size, build()));
        if *size == chunk_size {
            bytes.clone()
        } else {
            build()
        }
    }

    /// The frame as RTMP chunks for one player: on its kind's chunk stream, or the video one for
    /// all media with `interleave`, on message stream `stream_id`. Players' stream id is 1 (the
    /// only one sluice hands out), which takes the chunking built once and shared; any other is
    /// built for the player.
    pub fn player_chunks(&self, chunk_size: u32, interleave: bool, stream_id: u32) -> Bytes {
        let csid = if interleave { MediaKind::Video.csid() } else { self.kind.csid() };
        if stream_id == 1 {
            return self.rtmp_chunks(chunk_size, csid);
        }
        let mut out = BytesMut::new();
        let ty = self.kind.type_id();
        rtmp::chunk::encode_message(&mut out, chunk_size, csid, self.timestamp, ty, stream_id, &self.payload);
        out.freeze()
    }
}

/// What a subscriber reads from the ring, in order.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A media frame.
    Frame(Arc<Frame>),
    /// A publisher started (or restarted) the stream; its metadata and sequence headers follow
    /// as frames.
    Published,
    /// The publisher went away; subscribers stay attached for the next one.
    Unpublished,
}

/// Registry key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    /// Application name.
    pub app: String,
    /// Stream name (without query).
    pub name: String,
}

/// What a new subscriber needs to start at once: metadata, sequence headers and the frames since
/// the last keyframe.
#[derive(Debug, Default, Clone)]
pub struct StartPack {
    /// Whether a publisher is live now.
    pub live: bool,
    /// `onMetaData` as the publisher sent it.
    pub metadata: Option<Arc<Frame>>,
    /// Video sequence header.
    pub video_header: Option<Arc<Frame>>,
    /// Audio sequence header.
    pub audio_header: Option<Arc<Frame>>,
    /// Frames since the last keyframe (empty when the GOP cache is off).
    pub gop: Vec<Arc<Frame>>,
}

struct Ring {
    slots: Vec<Option<Entry>>,
    /// Sequence number of the next entry to write.
    head: u64,
}

struct State {
    ring: Ring,
    start: StartPack,
    gop_bytes: usize,
    has_video: bool,
    publisher: Option<u64>,
    /// When the current publisher started (for stats).
    published_at: Option<Instant>,
    codecs: CodecInfo,
    last_wake: Instant,
    /// When the newest ring entry was pushed: what pickups are timed against.
    last_push: Instant,
    pacing: Pacing,
}

/// Whether a stream's fan-out batches: decided from its own rounds, so that batching (audio
/// held for the next video frame, Nagle's algorithm on player sockets) only costs latency while
/// the server is busy. A pure state machine: [`Pacing::after_round`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Batch: audio waits for video to wake players, and players let Nagle merge writes.
    pub batching: bool,
    /// Rounds in a row, while batching, without a late pickup.
    calm_rounds: u32,
    /// Rounds in a row, while not batching, that fell behind.
    busy_rounds: u32,
}

impl Pacing {
    /// The pacing after a wake-up round in which subscribers picked up entries `picked` times,
    /// `late` of them late ([`LATE_PICKUP`]). Batching starts when [`BUSY_ROUNDS`] rounds in a
    /// row fall behind (at least one pickup in [`BUSY_SHARE`] late: a few slow players alone do
    /// not count) and ends after [`CALM_ROUNDS`] calm rounds in a row (fewer than one pickup in
    /// [`CALM_SHARE`] late), so it does not flap at the edge.
    pub fn after_round(self, picked: u64, late: u64) -> Pacing {
        if !self.batching {
            if picked == 0 {
                return self;
            }
            let busy = late > 0 && late * BUSY_SHARE >= picked;
            let busy_rounds = if busy { self.busy_rounds + 1 } else { 0 };
            if busy_rounds >= BUSY_ROUNDS {
                return Pacing { batching: true, ..Pacing::default() };
            }
            return Pacing { busy_rounds, ..Pacing::default() };
        }
        if late * CALM_SHARE >= picked.max(1) {
            return Pacing { batching: true, ..Pacing::default() };
        }
        let calm_rounds = self.calm_rounds + 1;
        if calm_rounds >= CALM_ROUNDS {
            Pacing::default()
        } else {
            Pacing { batching: true, calm_rounds, busy_rounds: 0 }
        }
    }
}

/// Pickups since the last wake-up, for [`Pacing`]: all in the low 32 bits, late ones in the
/// high 32 (one atomic add per pickup; the publisher takes and resets both at each wake-up).
#[derive(Default)]
struct Pickups(AtomicU64);

impl Pickups {
    const LATE: u64 = 1 << 32;

    fn count(&self, late: bool) {
        self.0.fetch_add(if late { Self::LATE + 1 } else { 1 }, Ordering::Relaxed);
    }

    /// (picked, late) since the last take.
    fn take(&self) -> (u64, u64) {
        let v = self.0.swap(0, Ordering::Relaxed);
        (v & (Self::LATE - 1), v >> 32)
    }
}

/// What the sequence headers said, for logs and stats.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CodecInfo {
    /// For example "video: H264 High 3.1 1280x720".
    pub video: Option<String>,
    /// For example "audio: AAC 44100 Hz 2 ch".
    pub audio: Option<String>,
}

/// The subscribers waiting for new entries. Cheaper than `tokio::sync::Notify` with thousands of
/// waiters: a subscriber registers its waker once per wake-up round (one lock, one push) and is
/// never unlinked; the publisher takes the whole list at once.
#[derive(Default)]
struct WaitList {
    waiting: Mutex<Waiting>,
    /// The previous round's list, kept for its capacity (only the publisher's wake-up uses it).
    spare: Mutex<Vec<Waker>>,
}

#[derive(Default)]
struct Waiting {
    /// Wake-up rounds so far; a subscriber registered in the current round is not added again.
    round: u64,
    wakers: Vec<Waker>,
}

impl WaitList {
    /// Register `waker` for the next wake-up unless it already is (`registered` is the round the
    /// caller last registered in).
    fn register(&self, waker: &Waker, registered: &mut Option<u64>) {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if *registered != Some(w.round) {
            w.wakers.push(waker.clone());
            *registered = Some(w.round);
        }
    }

    /// Wake everyone registered and start a new round.
    fn wake_all(&self) {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        {
            let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            w.round += 1;
            std::mem::swap(&mut w.wakers, &mut spare);
        }
        for waker in spare.drain(..) {
            waker.wake();
        }
    }
}

/// One live stream.
pub struct Stream {
    /// Its key.
    pub key: StreamKey,
    state: RwLock<State>,
    waiters: WaitList,
    pickups: Pickups,
    gop_cache: bool,
    subscribers: AtomicU64,
    /// The registry holding it, which the last subscriber to leave an idle stream tells.
    hub: Weak<Hub>,
    /// Frames skipped by lagging subscribers, for stats.
    pub dropped: AtomicU64,
    /// Frames published.
    pub frames_in: AtomicU64,
    /// What the current publisher sent, for stats (relaxed counters, reset at publish).
    pub ingest: IngestCounters,
    /// The shards writing directly to this stream's RTMP players that keep up.
    pub direct: crate::fanout::Shards,
}

/// Bytes and frames a stream's publisher sent, by kind: two relaxed atomic adds per frame.
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Audio payload bytes.
    pub audio_bytes: AtomicU64,
    /// Video payload bytes.
    pub video_bytes: AtomicU64,
    /// Data (metadata) payload bytes.
    pub data_bytes: AtomicU64,
    /// Video frames (sequence headers included).
    pub video_frames: AtomicU64,
}

impl IngestCounters {
    fn count(&self, frame: &Frame) {
        let n = frame.payload.len() as u64;
        match frame.kind {
            MediaKind::Audio => self.audio_bytes.fetch_add(n, Ordering::Relaxed),
            MediaKind::Video => {
                self.video_frames.fetch_add(1, Ordering::Relaxed);
                self.video_bytes.fetch_add(n, Ordering::Relaxed)
            }
            MediaKind::Data => self.data_bytes.fetch_add(n, Ordering::Relaxed),
        };
    }

    fn reset(&self) {
        for c in [&self.audio_bytes, &self.video_bytes, &self.data_bytes, &self.video_frames] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// All bytes published.
    pub fn bytes(&self) -> u64 {
        [&self.audio_bytes, &self.video_bytes, &self.data_bytes].iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// What stats read about a stream's current publish.
#[derive(Debug, Clone, Default)]
pub struct PublishInfo {
    /// The hub's id of the publish (a new one per publisher).
    pub id: u64,
    /// When it started.
    pub since: Option<Instant>,
    /// `onMetaData`, video and audio sequence headers, as kept for new players.
    pub metadata: Option<Arc<Frame>>,
    /// The video sequence header.
    pub video_header: Option<Arc<Frame>>,
    /// The audio sequence header.
    pub audio_header: Option<Arc<Frame>>,
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    /// Someone already publishes this name.
    #[error("stream \"{0}\" is already being published")]
    AlreadyPublishing(String),
    /// `max_streams`-style limit on the number of live streams.
    #[error("too many streams")]
    TooManyStreams,
}

impl Stream {
    fn new(key: StreamKey, ring_len: usize, gop_cache: bool, hub: Weak<Hub>) -> Self {
        let len = ring_len.max(16).next_power_of_two();
        Self {
            key,
            state: RwLock::new(State {
                ring: Ring { slots: vec![None; len], head: 0 },
                start: StartPack::default(),
                gop_bytes: 0,
                has_video: false,
                publisher: None,
                published_at: None,
                codecs: CodecInfo::default(),
                last_wake: Instant::now(),
                last_push: Instant::now(),
                pacing: Pacing::default(),
            }),
            waiters: WaitList::default(),
            pickups: Pickups::default(),
            gop_cache,
            subscribers: AtomicU64::new(0),
            hub,
            dropped: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            ingest: IngestCounters::default(),
            direct: Default::default(),
        }
    }

    /// The current publish, `None` when nobody publishes (for stats; clones three `Arc`s).
    pub fn publish_info(&self) -> Option<PublishInfo> {
        let st = self.read();
        let id = st.publisher?;
        Some(PublishInfo {
            id,
            since: st.published_at,
            metadata: st.start.metadata.clone(),
            video_header: st.start.video_header.clone(),
            audio_header: st.start.audio_header.clone(),
        })
    }

    /// Whether a publisher is live.
    pub fn is_live(&self) -> bool {
        self.read().publisher.is_some()
    }

    /// Number of subscribers attached.
    pub fn subscriber_count(&self) -> u64 {
        self.subscribers.load(Ordering::Relaxed)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Append a frame from the publisher and wake subscribers. Never blocks on a subscriber.
    pub fn push(&self, frame: Frame) {
        self.push_at(frame, Instant::now());
    }

    /// [`Stream::push`] for a frame that arrived at `now`: a publisher's connection reads the
    /// clock once per socket read, not once per message.
    pub fn push_at(&self, frame: Frame, now: Instant) {
        let frame = Arc::new(frame);
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        self.ingest.count(&frame);
        let wake = {
            let mut st = self.write();
            self.remember(&mut st, &frame);
            let kind = frame.kind;
            // Nobody reads the ring: new subscribers start from the start pack and the head, so
            // keeping frames here would only hold memory (seconds of media per idle stream).
            if self.subscribers.load(Ordering::Relaxed) > 0 {
                push_entry(&mut st.ring, Entry::Frame(frame));
                st.last_push = now;
            }
            let wake = should_wake(kind, st.has_video, st.pacing.batching, now.saturating_duration_since(st.last_wake));
            if wake {
                st.last_wake = now;
                self.end_round(&mut st);
            }
            wake
        };
        if wake {
            self.waiters.wake_all();
        }
    }

    /// Judge the wake-up round that ends now from its pickups (see [`Pacing`]).
    fn end_round(&self, st: &mut State) {
        let (picked, late) = self.pickups.take();
        let next = st.pacing.after_round(picked, late);
        if next.batching != st.pacing.batching {
            tracing::debug!(app = %self.key.app, stream = %self.key.name, picked, late, batching = next.batching, "fan-out pacing changed");
        }
        st.pacing = next;
    }

    /// Whether the fan-out batches now (see [`Pacing`]).
    pub fn batching(&self) -> bool {
        self.read().pacing.batching
    }

    /// Keep what a new subscriber will need: metadata, sequence headers, the current GOP.
    fn remember(&self, st: &mut State, frame: &Arc<Frame>) {
        match (frame.kind, frame.sequence_header) {
            // Only `onMetaData` (flagged as the data stream's header by `live::ingest`) is what
            // a new player needs; cue points and other data messages are not kept.
            (MediaKind::Data, true) => st.start.metadata = Some(frame.clone()),
            (MediaKind::Data, false) => {}
            (MediaKind::Video, true) => {
                st.has_video = true;
                st.start.video_header = Some(frame.clone());
            }
            (MediaKind::Audio, true) => st.start.audio_header = Some(frame.clone()),
            _ if !self.gop_cache => {}
            (MediaKind::Video, false) if frame.keyframe => {
                st.has_video = true;
                st.start.gop.clear();
                st.gop_bytes = 0;
                cache_frame(st, frame);
            }
            // Before the first keyframe (or after an overflow) there is no GOP to start from.
            _ if st.start.gop.is_empty() && st.has_video => {}
            _ => cache_frame(st, frame),
        }
    }

    /// Subscribe: returns what to send first and a cursor positioned right after it.
    pub fn subscribe(self: &Arc<Self>) -> (StartPack, Subscriber) {
        let st = self.read();
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        let mut pack = st.start.clone();
        pack.live = st.publisher.is_some();
        let sub = Subscriber { stream: self.clone(), cursor: st.ring.head, registered: None, held: Vec::new() };
        (pack, sub)
    }

    /// Payload bytes the GOP cache holds now (for the `sluice_gop_cache_bytes` metric).
    pub fn gop_cache_bytes(&self) -> usize {
        self.read().gop_bytes
    }

    /// Whether the stream carries video (audio is then held back by `wait_video`).
    pub fn has_video(&self) -> bool {
        self.read().has_video
    }

    /// Record what a sequence header said about the stream's codecs.
    pub fn set_codec_info(&self, kind: MediaKind, description: String) {
        let mut st = self.write();
        match kind {
            MediaKind::Video => st.codecs.video = Some(description),
            MediaKind::Audio => st.codecs.audio = Some(description),
            MediaKind::Data => {}
        }
    }

    /// Codecs of the live stream.
    pub fn codec_info(&self) -> CodecInfo {
        self.read().codecs.clone()
    }

    /// Current start pack (used after a subscriber skipped ahead, to resend headers).
    pub fn start_pack(&self) -> StartPack {
        self.read().start.clone()
    }
}

/// Whether a newly pushed frame wakes the subscribers. Video frames always do, and so does
/// everything while the fan-out keeps up. While it is `batching`, in a stream with video, audio
/// frames ride along with the next video frame (or wake after [`MAX_AUDIO_HOLD`]): each player
/// then writes once per video frame instead of once per message, which halves the system calls
/// of the fan-out without delaying video at all.
fn should_wake(kind: MediaKind, has_video: bool, batching: bool, since_last_wake: Duration) -> bool {
    kind != MediaKind::Audio || !batching || !has_video || since_last_wake >= MAX_AUDIO_HOLD
}

fn cache_frame(st: &mut State, frame: &Arc<Frame>) {
    if st.start.gop.len() >= MAX_GOP_FRAMES || st.gop_bytes + frame.payload.len() > MAX_GOP_BYTES {
        st.start.gop.clear();
        st.gop_bytes = 0;
        return;
    }
    st.gop_bytes += frame.payload.len();
    st.start.gop.push(frame.clone());
}

fn push_entry(ring: &mut Ring, entry: Entry) {
    let mask = ring.slots.len() as u64 - 1;
    ring.slots[(ring.head & mask) as usize] = Some(entry);
    ring.head += 1;
}

/// A subscriber's read position in a stream's ring.
pub struct Subscriber {
    stream: Arc<Stream>,
    cursor: u64,
    /// The wake-up round this subscriber's waker is registered in.
    registered: Option<u64>,
    /// Dropped with the subscriber (see [`Subscriber::hold`]).
    held: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

/// The result of one read.
pub struct Batch {
    /// Entries, oldest first.
    pub entries: Vec<Entry>,
    /// Frames skipped because this subscriber fell behind.
    pub skipped: u64,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.skipped == 0
    }
}

impl Subscriber {
    /// A subscriber reading the ring from `cursor` on, without a start pack: a fan-out shard
    /// taking over from players at that position ([`crate::fanout`]).
    pub fn at(stream: &Arc<Stream>, cursor: u64) -> Subscriber {
        stream.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscriber { stream: stream.clone(), cursor, registered: None, held: Vec::new() }
    }

    /// The next ring position this subscriber reads.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Carry on from `cursor` (where a fan-out shard left this subscriber's player).
    pub fn set_cursor(&mut self, cursor: u64) {
        self.cursor = cursor;
    }

    /// The stream subscribed to.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Wait until entries are available, then take up to `max` of them. A subscriber that fell
    /// more than the ring behind resumes at the oldest keyframe (or publish event) still in the ring.
    pub async fn next_batch(&mut self, max: usize) -> Batch {
        std::future::poll_fn(|cx| {
            let batch = self.try_batch(max);
            if !batch.is_empty() {
                return Poll::Ready(batch);
            }
            self.stream.waiters.register(cx.waker(), &mut self.registered);
            // An entry pushed between the first look and registering woke nobody: look again.
            let batch = self.try_batch(max);
            if batch.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(batch)
            }
        })
        .await
    }

    /// Take what is available now without waiting.
    pub fn try_batch(&mut self, max: usize) -> Batch {
        let st = self.stream.read();
        let ring = &st.ring;
        let len = ring.slots.len() as u64;
        let mut skipped = 0;
        if ring.head - self.cursor > len {
            let oldest = ring.head - len;
            let resume =
                (oldest..ring.head).find(|&seq| is_resume_point(&ring.slots[(seq % len) as usize], st.has_video));
            let resume = resume.unwrap_or(ring.head);
            skipped = resume - self.cursor;
            self.cursor = resume;
        }
        let end = ring.head.min(self.cursor + max as u64);
        let entries: Vec<Entry> =
            (self.cursor..end).filter_map(|seq| ring.slots[(seq % len) as usize].clone()).collect();
        self.cursor = end;
        if !entries.is_empty() {
            let late = end < ring.head || st.last_push.elapsed() >= LATE_PICKUP;
            self.stream.pickups.count(late);
        }
        drop(st);
        if skipped > 0 {
            self.stream.dropped.fetch_add(skipped, Ordering::Relaxed);
        }
        Batch { entries, skipped }
    }
}

fn is_resume_point(slot: &Option<Entry>, has_video: bool) -> bool {
    match slot {
        Some(Entry::Frame(f)) => !has_video || (f.kind == MediaKind::Video && f.keyframe),
        Some(_) => true,
        None => false,
    }
}

/// The last subscriber to leave releases the stream: the hub forgets it if nobody publishes
/// either. Only a drop costs the registry lock, and only the last one; reading costs nothing.
impl Drop for Subscriber {
    fn drop(&mut self) {
        let before = self.stream.subscribers.fetch_sub(1, Ordering::Relaxed);
        if before == 1 {
            if let Some(hub) = self.stream.hub.upgrade() {
                hub.release(&self.stream);
            }
        }
    }
}

/// Most streams the registry holds, live or idle (players waiting under `idle_streams on`).
/// Each connection plays at most one stream, so idle streams are bounded by connections too;
/// this caps the server as a whole (an idle stream costs a few KiB).
pub const MAX_STREAMS: usize = 65_536;

/// The registry of streams.
pub struct Hub {
    streams: Mutex<HashMap<StreamKey, Arc<Stream>>>,
    next_publisher: AtomicU64,
    max_streams: usize,
    /// Whether "registry full" was logged (once per episode).
    full_logged: AtomicBool,
    /// Frames dropped for players of streams the registry forgot, by application (so the
    /// server's totals never go down; applications are configured, so the map is bounded).
    dropped_gone: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::with_limit(MAX_STREAMS)
    }
}

/// Settings a stream is created with.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Ring length in entries (`out_queue`-derived).
    pub ring_len: usize,
    /// Keep the current GOP for new players (`gop_cache`).
    pub gop_cache: bool,
}

/// Proof of being a stream's publisher; unpublishes when dropped.
pub struct Publisher {
    stream: Arc<Stream>,
    hub: Arc<Hub>,
    id: u64,
}

impl Publisher {
    /// The stream published to.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        {
            let mut st = self.stream.write();
            if st.publisher != Some(self.id) {
                return;
            }
            st.publisher = None;
            st.published_at = None;
            st.start = StartPack::default();
            st.gop_bytes = 0;
            st.has_video = false;
            st.codecs = CodecInfo::default();
            push_entry(&mut st.ring, Entry::Unpublished);
        }
        self.stream.waiters.wake_all();
        self.hub.release(&self.stream);
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// An empty hub holding at most `max_streams` streams.
    pub fn with_limit(max_streams: usize) -> Self {
        Self {
            streams: Mutex::default(),
            next_publisher: AtomicU64::new(0),
            max_streams,
            full_logged: AtomicBool::new(false),
            dropped_gone: Mutex::default(),
        }
    }

    /// Frames dropped for lagging players since start, by application: the streams' in the
    /// registry now and those of streams gone.
    pub fn dropped_by_app(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = self.dropped_gone.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for stream in self.streams() {
            *out.entry(stream.key.app.clone()).or_default() += stream.dropped.load(Ordering::Relaxed);
        }
        out
    }

    /// Number of streams in the registry, live or idle.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the registry is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, Arc<Stream>>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Become the publisher of `key`, creating the stream if needed. The claim happens under
    /// the registry lock, so a stream that [`Hub::release`] is removing cannot be claimed (it
    /// would be live but unreachable for players).
    pub fn publish(self: &Arc<Self>, key: StreamKey, opts: StreamOptions) -> Result<Publisher, PublishError> {
        let id = self.next_publisher.fetch_add(1, Ordering::Relaxed) + 1;
        let stream = {
            let mut map = self.lock();
            let stream = match map.get(&key) {
                Some(s) => s.clone(),
                None => self.insert_new(&mut map, &key, opts).ok_or(PublishError::TooManyStreams)?,
            };
            let mut st = stream.write();
            if st.publisher.is_some() {
                return Err(PublishError::AlreadyPublishing(key.name));
            }
            st.publisher = Some(id);
            st.published_at = Some(Instant::now());
            stream.frames_in.store(0, Ordering::Relaxed);
            stream.ingest.reset();
            push_entry(&mut st.ring, Entry::Published);
            drop(st);
            stream
        };
        stream.waiters.wake_all();
        Ok(Publisher { stream, hub: self.clone(), id })
    }

    /// Subscribe to `key`. With `create`, a stream nobody publishes yet is made for players
    /// that wait for a publisher (`idle_streams on`), unless the hub is full. Lookup and
    /// subscription happen under the registry lock, so [`Hub::release`] cannot remove the
    /// stream in between.
    pub fn subscribe(
        self: &Arc<Self>,
        key: &StreamKey,
        create: Option<StreamOptions>,
    ) -> Option<(StartPack, Subscriber)> {
        let mut map = self.lock();
        let stream = match (map.get(key), create) {
            (Some(s), _) => s.clone(),
            (None, Some(opts)) => self.insert_new(&mut map, key, opts)?,
            (None, None) => return None,
        };
        Some(stream.subscribe())
    }

    /// Add a stream unless the registry holds `max_streams` already.
    fn insert_new(
        self: &Arc<Self>,
        map: &mut HashMap<StreamKey, Arc<Stream>>,
        key: &StreamKey,
        opts: StreamOptions,
    ) -> Option<Arc<Stream>> {
        if map.len() >= self.max_streams {
            if !self.full_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(app = %key.app, "stream registry full ({} streams): new streams refused", self.max_streams);
            }
            return None;
        }
        let stream = Arc::new(Stream::new(key.clone(), opts.ring_len, opts.gop_cache, Arc::downgrade(self)));
        map.insert(key.clone(), stream.clone());
        Some(stream)
    }

    /// Forget a stream nobody uses any more: called by the last [`Subscriber`] and the
    /// [`Publisher`] as they go, never by hand.
    fn release(&self, stream: &Arc<Stream>) {
        let mut map = self.lock();
        let idle = !stream.is_live() && stream.subscriber_count() == 0;
        if idle && map.get(&stream.key).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            map.remove(&stream.key);
            let dropped = stream.dropped.load(Ordering::Relaxed);
            if dropped > 0 {
                let mut gone = self.dropped_gone.lock().unwrap_or_else(|e| e.into_inner());
                *gone.entry(stream.key.app.clone()).or_default() += dropped;
            }
            if map.len() < self.max_streams {
                self.full_logged.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Whether `key`'s stream has a live publisher now, without subscribing to it.
    pub fn is_live(&self, key: &StreamKey) -> bool {
        self.lock().get(key).is_some_and(|s| s.is_live())
    }

    /// All streams, for stats and shutdown.
    pub fn streams(&self) -> Vec<Arc<Stream>> {
        self.lock().values().cloned().collect()
    }
}

/// What the relay pull and the modules' `on_play` need from the hub: guards a player holds
/// until it leaves (a player count that module subscribers are not part of), and a way to tell
/// waiting players that a stream will not come.
impl Subscriber {
    /// Keep `value` until this subscriber is dropped (after it left the stream): a source marks
    /// its players with a guard whose `Drop` counts them out.
    pub fn hold(&mut self, value: Box<dyn std::any::Any + Send + Sync>) {
        // Several sources of guards (relay pull, exec) may mark one player: keep them all.
        self.held.push(value);
    }
}

impl Stream {
    /// Players waiting on a stream nobody publishes read [`Entry::Unpublished`], as if a
    /// publisher had left (a relay pull that failed to start); a no-op while someone publishes.
    pub fn end_waiting(&self) {
        {
            let mut st = self.write();
            if st.publisher.is_some() {
                return;
            }
            push_entry(&mut st.ring, Entry::Unpublished);
        }
        self.waiters.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> StreamKey {
        StreamKey { app: "live".into(), name: name.into() }
    }

    const OPTS: StreamOptions = StreamOptions { ring_len: 16, gop_cache: true };

    fn video(ts: u32, key: bool) -> Frame {
        Frame::video(ts, Bytes::from(vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 0, 0, 0, 1, 0x65])).unwrap()
    }

    #[test]
    fn second_publisher_is_refused_and_first_keeps_stream() {
        let hub = Hub::new();
        let p1 = hub.publish(key("a"), OPTS).unwrap();
        assert!(matches!(hub.publish(key("a"), OPTS), Err(PublishError::AlreadyPublishing(_))));
        assert!(p1.stream().is_live());
        drop(p1);
        assert!(hub.subscribe(&key("a"), None).is_none(), "idle stream is released");
        assert!(hub.publish(key("a"), OPTS).is_ok());
    }

    #[test]
    fn the_registry_is_bounded_for_idle_and_live_streams() {
        let hub = Arc::new(Hub::with_limit(2));
        let (_, a) = hub.subscribe(&key("a"), Some(OPTS)).expect("idle stream a");
        let _b = hub.subscribe(&key("b"), Some(OPTS)).expect("idle stream b");
        assert!(hub.subscribe(&key("c"), Some(OPTS)).is_none(), "a third idle stream is refused");
        assert_eq!(hub.publish(key("c"), OPTS).err(), Some(PublishError::TooManyStreams));
        // Existing streams stay reachable when the registry is full.
        let _live = hub.publish(key("a"), OPTS).expect("existing stream");
        drop(a);
        assert_eq!(hub.len(), 2, "a is live, so it stays");
    }

    #[test]
    fn a_player_leaving_releases_its_idle_stream() {
        let hub = Hub::new();
        for i in 0..1000 {
            let (_, sub) = hub.subscribe(&key(&format!("a{i}")), Some(OPTS)).unwrap();
            drop(sub);
        }
        assert!(hub.is_empty());
    }

    #[test]
    fn dropping_the_last_subscriber_of_an_idle_stream_removes_it() {
        let hub = Hub::new();
        let (_, first) = hub.subscribe(&key("a"), Some(OPTS)).unwrap();
        let (_, second) = first.stream().subscribe();
        drop(first);
        assert_eq!(hub.len(), 1, "a subscriber is left");
        drop(second);
        assert!(hub.is_empty(), "nobody publishes or plays: the stream is gone");
        // A live stream stays when its last subscriber leaves, and goes with its publisher.
        let publisher = hub.publish(key("b"), OPTS).unwrap();
        drop(publisher.stream().subscribe());
        assert_eq!(hub.len(), 1);
        drop(publisher);
        assert!(hub.is_empty());
    }

    #[test]
    fn a_new_publisher_never_claims_a_stream_being_released() {
        // One thread unpublishes while another publishes the same name: whoever wins, a live
        // stream must be the one players find.
        let hub = Hub::new();
        for _ in 0..500 {
            let old = hub.publish(key("a"), OPTS).unwrap();
            let h = hub.clone();
            let t = std::thread::spawn(move || loop {
                if let Ok(p) = h.publish(key("a"), OPTS) {
                    return p;
                }
            });
            drop(old);
            let new = t.join().unwrap();
            let (pack, _sub) = hub.subscribe(&key("a"), None).expect("the live stream is in the registry");
            assert!(pack.live);
            assert!(Arc::ptr_eq(new.stream(), _sub.stream()));
        }
    }

    #[test]
    fn cue_points_do_not_replace_cached_metadata() {
        let hub = Hub::new();
        let p = hub.publish(key("a"), OPTS).unwrap();
        p.stream().push(Frame::data(0, Bytes::from_static(b"meta"), true));
        p.stream().push(Frame::data(0, Bytes::from_static(b"cue"), false));
        let (pack, _) = p.stream().subscribe();
        assert_eq!(&pack.metadata.unwrap().payload[..], b"meta");
    }

    #[test]
    fn new_subscriber_gets_gop_from_last_keyframe() {
        let hub = Hub::new();
        let p = hub.publish(key("a"), OPTS).unwrap();
        let s = p.stream();
        s.push(Frame::video(0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f])).unwrap());
        s.push(video(0, true));
        s.push(video(33, false));
        s.push(video(66, true));
        s.push(video(100, false));
        let (pack, _sub) = s.subscribe();
        assert!(pack.video_header.is_some());
        let ts: Vec<u32> = pack.gop.iter().map(|f| f.timestamp).collect();
        assert_eq!(ts, vec![66, 100]);
    }

    #[test]
    fn lagging_subscriber_skips_to_keyframe_and_counts_drops() {
        let hub = Hub::new();
        let p = hub.publish(key("a"), OPTS).unwrap();
        let s = p.stream().clone();
        let (_, mut sub) = s.subscribe();
        for i in 0..40u32 {
            s.push(video(i * 10, i % 10 == 0));
        }
        let batch = sub.try_batch(100);
        assert!(batch.skipped > 0);
        match &batch.entries[0] {
            Entry::Frame(f) => assert!(f.keyframe && f.timestamp == 300),
            other => panic!("expected a keyframe, got {other:?}"),
        }
        assert_eq!(s.dropped.load(Ordering::Relaxed), batch.skipped);
        assert_eq!(hub.dropped_by_app()["live"], batch.skipped);
        // The stream goes (publisher and player gone): its drops stay in the totals.
        drop((p, sub, s));
        assert_eq!(hub.len(), 0);
        assert_eq!(hub.dropped_by_app()["live"], batch.skipped, "a counter never goes down");
    }

    #[test]
    fn unpublish_reaches_subscribers_in_order() {
        let hub = Hub::new();
        let p = hub.publish(key("a"), OPTS).unwrap();
        let s = p.stream().clone();
        let (_, mut sub) = s.subscribe();
        s.push(video(0, true));
        drop(p);
        let b = sub.try_batch(10);
        assert!(matches!(b.entries[..], [Entry::Frame(_), Entry::Unpublished]));
    }

    #[test]
    fn audio_waits_for_video_to_wake_players_but_not_for_long() {
        let short = Duration::from_millis(10);
        assert!(should_wake(MediaKind::Video, true, true, short));
        assert!(!should_wake(MediaKind::Audio, true, true, short));
        assert!(should_wake(MediaKind::Audio, true, true, MAX_AUDIO_HOLD));
        assert!(should_wake(MediaKind::Audio, false, true, short), "audio-only streams wake on audio");
        assert!(should_wake(MediaKind::Data, true, true, short));
        assert!(should_wake(MediaKind::Audio, true, false, short), "audio goes at once while the fan-out keeps up");
    }

    #[test]
    fn pacing_batches_only_while_rounds_fall_behind() {
        let calm = Pacing::default();
        assert!(!calm.batching);
        assert_eq!(calm.after_round(1000, 0), calm, "every pickup on time: write at once");
        assert_eq!(calm.after_round(0, 0), calm, "a round nobody picked up from changes nothing");
        assert!(!calm.after_round(1000, 249).batching, "slow players alone do not batch");
        let mut busy = calm;
        for _ in 0..BUSY_ROUNDS - 1 {
            busy = busy.after_round(1000, 250);
            assert!(!busy.batching, "a late round alone (a keyframe's) does not batch");
        }
        assert!(!busy.after_round(1000, 249).after_round(1000, 250).batching, "a round on time starts the count again");
        assert!(
            busy.after_round(0, 0).after_round(1000, 250).batching,
            "a round nobody picked up from changes nothing"
        );
        let busy = busy.after_round(1000, 250);
        assert!(busy.batching, "one pickup in 4 late, BUSY_ROUNDS rounds in a row: rounds fall behind");
        let mut one = calm;
        for _ in 0..BUSY_ROUNDS {
            one = one.after_round(1, 1);
        }
        assert!(one.batching);

        // Batching ends only after CALM_ROUNDS calm rounds in a row (under 1 % late).
        let mut p = busy;
        for _ in 0..CALM_ROUNDS - 1 {
            p = p.after_round(1000, 9);
            assert!(p.batching);
        }
        let almost = p;
        assert!(!p.after_round(1000, 0).batching);
        // A round 1 % late starts the count again.
        let reset = almost.after_round(1000, 10);
        assert!(reset.batching);
        assert!(reset.after_round(1000, 0).batching);
        assert!(reset.after_round(0, 0).batching, "a round nobody picked up from is calm");
    }

    #[test]
    fn pickups_count_late_ones_apart() {
        let p = Pickups::default();
        p.count(false);
        p.count(true);
        p.count(false);
        assert_eq!(p.take(), (3, 1));
        assert_eq!(p.take(), (0, 0), "taken means reset");
    }

    #[test]
    fn a_round_that_falls_behind_makes_the_stream_batch() {
        let hub = Hub::new();
        let p = hub.publish(key("a"), OPTS).unwrap();
        let s = p.stream().clone();
        let (_, mut sub) = s.subscribe();
        s.push(video(0, true));
        s.push(Frame::audio(1, Bytes::from_static(&[0xAF, 1, 0])));
        assert!(!s.batching());
        // Caught up at once: audio was written without waiting for video.
        assert!(!sub.try_batch(100).entries.is_empty());
        // A subscriber that does not reach the head is late; the next wake-up judges the round,
        // and BUSY_ROUNDS such rounds in a row make the stream batch.
        let mut ts = 2;
        for round in 0..BUSY_ROUNDS {
            assert!(!s.batching(), "{round} late rounds do not batch yet");
            for _ in 0..4 {
                s.push(video(ts, false));
                ts += 1;
            }
            let _ = sub.try_batch(1);
        }
        s.push(video(ts, false));
        assert!(s.batching(), "the only pickup was late in every round");
        // (Leaving batching depends on pickups being on time: the pure test above covers it.)
    }

    #[tokio::test]
    async fn waiting_subscribers_wake_once_per_round() {
        let hub = Hub::new();
        let p = hub.publish(key("a"), OPTS).unwrap();
        let s = p.stream().clone();
        let (_, mut sub) = s.subscribe();
        let _ = sub.try_batch(10); // the Published event
        let waiting = tokio::spawn(async move {
            let b = sub.next_batch(10).await;
            b.entries.len()
        });
        tokio::task::yield_now().await;
        while s.waiters.waiting.lock().unwrap().wakers.is_empty() {
            tokio::task::yield_now().await;
        }
        s.push(video(0, true));
        let got = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken").unwrap();
        assert_eq!(got, 1);
        assert!(s.waiters.waiting.lock().unwrap().wakers.is_empty(), "the round's list was taken");

        // Registering twice in one round keeps one waker.
        let waker = Waker::noop().clone();
        let mut registered = None;
        s.waiters.register(&waker, &mut registered);
        s.waiters.register(&waker, &mut registered);
        assert_eq!(s.waiters.waiting.lock().unwrap().wakers.len(), 1);
    }

    /// The frame keeps the header it was made from; the flags players read come from it.
    #[test]
    fn a_frame_carries_its_parsed_tag_header() {
        let body = Bytes::from_static(&[0x17, 1, 0, 0, 0x28, 0, 0, 0, 1, 0x65]);
        let f = Frame::video(0, body.clone()).unwrap();
        assert_eq!(f.tag(), &Tag::Video(flv::parse_video(&body).unwrap()));
        assert_eq!(f.video_header().map(|h| h.composition_time), Some(40));
        assert_eq!(f.codec_payload(), &[0, 0, 0, 1, 0x65]);
        assert!(f.keyframe && !f.sequence_header);
        let config = Frame::video(0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64])).unwrap();
        assert!(config.sequence_header && !config.keyframe, "a sequence header is not a keyframe");
        let aac = Frame::audio(0, Bytes::from_static(&[0xAF, 0, 0x12, 0x10]));
        assert_eq!(aac.audio_header().map(|h| h.codec), Some(flv::AudioCodec::Aac));
        assert!(aac.sequence_header);
        assert_eq!(aac.codec_payload(), &[0x12, 0x10]);
        let garbage = Frame::audio(0, Bytes::new());
        assert_eq!((garbage.tag(), garbage.codec_payload()), (&Tag::None, &[][..]));
        assert!(Frame::video(0, Bytes::new()).is_none(), "video without a header is not a frame");
        assert!(Frame::data(0, Bytes::from_static(b"m"), true).sequence_header);
    }

    /// A frame is stored once per message in the ring: the parsed header (40 bytes) made it 136
    /// bytes on 64-bit targets, from 88; keep it from growing further unnoticed.
    #[test]
    fn a_frame_stays_small() {
        assert!(std::mem::size_of::<Frame>() <= 136, "{} bytes", std::mem::size_of::<Frame>());
    }

    #[test]
    fn chunks_are_built_once_per_chunk_size() {
        let f = Frame::video(5, Bytes::from(vec![0x17; 5000])).unwrap();
        let a = f.rtmp_chunks(4096, 7);
        let b = f.rtmp_chunks(4096, 7);
        assert_eq!(a.as_ptr(), b.as_ptr(), "shared, not rebuilt");
        assert_ne!(f.rtmp_chunks(128, 7).len(), a.len());
    }
}

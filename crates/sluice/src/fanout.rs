//! Direct fan-out: RTMP players that keep up are written to by a few shard tasks per stream
//! instead of each being woken for every frame.
//!
//! Profiled at 1000 players, about a sixth of the server's time went to waking each player's
//! task, scheduling it and polling its connection loop, once per frame and player, before the
//! one `sendmsg` that does the work. A shard is one subscriber of the stream (one wake-up per
//! round) holding up to [`SHARD_MAX`] players' sockets: for each batch it filters the frames
//! through each player's gate and writes them to the player's socket without waiting.
//!
//! Only a player whose socket takes whole batches at once stays in a shard. Everything else
//! goes back to the player's own task, which carries on from the ring exactly where the shard
//! left it (same cursor, same gate, the unwritten rest of a batch first):
//! - a socket that takes part of a batch, or fails (nothing waits on a viewer: its own task
//!   waits, and skips to a keyframe if it falls behind the ring);
//! - anything but a frame in the ring (publish and unpublish events, a shard that fell behind);
//! - anything the player's task has to write or handle itself (a reply, a ping, pause, seek,
//!   close): it leaves its shard first ([`Membership::leave`]).
//!
//! So a socket is written by one side at a time, at message boundaries, under the member's lock.
//!
//! A member's [`Wire`] says how frames go out to it: RTMP chunks (shared by every player with
//! the same chunk size and stream id), or FLV tags for an HTTP-FLV player ([`crate::httpflv`]),
//! whose 11-byte tag headers are its own (its timeline starts at 0) and whose bodies are shared.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::clients::Counters;
use crate::hub::{Batch, Entry, Stream, Subscriber};
use crate::live::PlayerGate;
use crate::transport::{send_now, send_rest, ShardSocket};
use crate::uring::{self, SendRing, Sent, Target};

/// Most players one shard writes to: a stream with more has more shards, which the runtime
/// spreads over its worker threads.
pub const SHARD_MAX: usize = 512;
/// Most ring entries a shard takes per round.
const SHARD_BATCH: usize = 64;

/// The shards of one stream.
#[derive(Default)]
pub struct Shards {
    shards: Mutex<Vec<Arc<Shard>>>,
    /// Shards started from now on send with one `sendmsg` per member, as where io_uring is
    /// unavailable (tests of that path).
    plain: std::sync::atomic::AtomicBool,
}

struct Shard {
    members: Mutex<Members>,
    /// `members.list.len()`, readable without waiting for a round (stats).
    count: AtomicUsize,
    /// Wakes the shard's task when a member left (the last one ends it).
    left: tokio::sync::Notify,
}

struct Members {
    /// The ring position every member is at (the next entry the shard delivers).
    cursor: u64,
    list: Vec<Arc<Member>>,
    /// The task ended: joining it is no longer possible.
    closed: bool,
}

/// One player's place in a shard, shared by the shard's task and the player's.
struct Member {
    state: Mutex<MemberState>,
}

/// What the shard needs to write to one player, and where it stopped.
struct MemberState {
    /// While the shard writes to the player; `None` once the membership ended.
    socket: Option<ShardSocket>,
    /// The next ring entry for this player.
    cursor: u64,
    gate: PlayerGate,
    wire: Wire,
    counters: Counters,
    /// What the socket did not take of the batch that ended the membership.
    unwritten: Vec<Bytes>,
    last_timestamp: Option<u32>,
    /// Why the shard gave the player back, when it was a failed write.
    error: Option<std::io::Error>,
    /// The player's task, woken when the shard gives the player back.
    task: Option<Waker>,
    /// The socket's slot in the shard's ring, once registered there.
    slot: Option<u32>,
}

/// A player's part in direct fan-out, until it leaves.
pub struct Membership {
    member: Arc<Member>,
    shard: Arc<Shard>,
}

/// Where the player's own task carries on after leaving a shard.
pub struct Resume {
    pub cursor: u64,
    pub gate: PlayerGate,
    pub unwritten: Vec<Bytes>,
    pub last_timestamp: Option<u32>,
    pub error: Option<std::io::Error>,
    /// The wire as the shard left it (an FLV player's timeline goes on from it).
    pub wire: Wire,
}

/// How a member's frames go out.
pub enum Wire {
    /// RTMP chunks of the player's chunk size, on its message stream.
    Rtmp {
        chunk_size: u32,
        /// `interleave on`: audio and video on one chunk stream.
        interleave: bool,
        stream_id: u32,
    },
    /// FLV tags on the player's own timeline (HTTP-FLV).
    Flv {
        mux: flv::LiveMuxer,
        /// The round's tags, reused (its buffers are the member's).
        tags: flv::Gathered,
    },
}

impl Wire {
    /// FLV tags going on from `mux`.
    pub fn flv(mux: flv::LiveMuxer) -> Self {
        Wire::Flv { mux, tags: flv::Gathered::new() }
    }
}

/// What a joining player brings.
pub struct Joining {
    pub(crate) socket: ShardSocket,
    pub cursor: u64,
    pub gate: PlayerGate,
    pub wire: Wire,
    pub counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shards {
    /// Join a shard at the player's ring position; `None` when no shard is there now (the
    /// player keeps being served by its own task and may try again after its next batch).
    /// A shard is started when the stream has none with room.
    pub fn join(&self, stream: &Arc<Stream>, joining: Joining) -> Option<Membership> {
        let mut shards = lock(&self.shards);
        shards.retain(|s| s.count.load(Ordering::Relaxed) > 0);
        let mut room = false;
        for shard in shards.iter() {
            if shard.count.load(Ordering::Relaxed) >= SHARD_MAX {
                continue;
            }
            room = true;
            // A shard in the middle of its round: not worth a player task waiting for it.
            let Ok(mut m) = shard.members.try_lock() else { continue };
            if m.closed {
                continue;
            }
            // A player ahead of the shard (it ran first this round) skips what it already has;
            // one behind catches up on its own first.
            if m.cursor <= joining.cursor {
                let member = Member::new(joining);
                m.list.push(member.clone());
                shard.count.store(m.list.len(), Ordering::Relaxed);
                return Some(Membership { member, shard: shard.clone() });
            }
        }
        if room {
            return None;
        }
        let cursor = joining.cursor;
        let member = Member::new(joining);
        let shard = Arc::new(Shard {
            members: Mutex::new(Members { cursor, list: vec![member.clone()], closed: false }),
            count: AtomicUsize::new(1),
            left: tokio::sync::Notify::new(),
        });
        shards.push(shard.clone());
        let ring = if self.plain.load(Ordering::Relaxed) { None } else { SendRing::new(SHARD_MAX) };
        tokio::spawn(run(shard.clone(), Subscriber::at(stream, cursor), Outbox::new(ring)));
        Some(Membership { member, shard })
    }

    /// Shards started from now on send without io_uring.
    #[cfg(test)]
    fn use_plain_sends(&self) {
        self.plain.store(true, Ordering::Relaxed);
    }

    /// Players written by shards now (for tests and stats).
    pub fn members(&self) -> usize {
        lock(&self.shards).iter().map(|s| s.count.load(Ordering::Relaxed)).sum()
    }
}

impl Member {
    fn new(j: Joining) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(MemberState {
                socket: Some(j.socket),
                cursor: j.cursor,
                gate: j.gate,
                wire: j.wire,
                counters: j.counters,
                unwritten: Vec::new(),
                last_timestamp: None,
                error: None,
                task: None,
                slot: None,
            }),
        })
    }
}

/// End the membership (the shard writes no more) and wake the player's task.
fn give_back(st: &mut MemberState) {
    st.socket = None;
    if let Some(task) = st.task.take() {
        task.wake();
    }
}

impl Membership {
    /// Whether the shard gave the player back; registers the player's task to be woken when it
    /// does.
    pub fn poll_given_back(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = lock(&self.member.state);
        if st.socket.is_none() {
            return Poll::Ready(());
        }
        if !st.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            st.task = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Leave the shard: from now on the player's own task writes to its socket.
    pub fn leave(self) -> Resume {
        let mut st = lock(&self.member.state);
        let resume = Resume {
            cursor: st.cursor,
            gate: st.gate.clone(),
            unwritten: std::mem::take(&mut st.unwritten),
            last_timestamp: st.last_timestamp,
            error: st.error.take(),
            wire: std::mem::replace(&mut st.wire, Wire::Rtmp { chunk_size: 0, interleave: false, stream_id: 0 }),
        };
        // Under the same lock: the shard writes nothing after what `resume` says.
        self.end(st);
        resume
    }

    /// End the membership; tell the shard when it still wrote to the player, so its task can
    /// drop it (and end with its last member).
    fn end(&self, mut st: MutexGuard<'_, MemberState>) {
        let had = st.socket.take().is_some();
        drop(st);
        if had {
            self.shard.left.notify_one();
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.end(lock(&self.member.state));
    }
}

/// A shard's task: one subscriber, writing each round to every member.
async fn run(shard: Arc<Shard>, mut sub: Subscriber, mut out: Outbox) {
    loop {
        let batch = tokio::select! {
            batch = sub.next_batch(SHARD_BATCH) => Some(batch),
            () = shard.left.notified() => None,
        };
        let mut m = lock(&shard.members);
        if let Some(batch) = batch {
            deliver(&mut m, &batch, sub.stream(), &mut out);
            m.cursor = sub.cursor();
        }
        m.list.retain(|member| out.keep(&mut lock(&member.state)));
        shard.count.store(m.list.len(), Ordering::Relaxed);
        if m.list.is_empty() {
            m.closed = true;
            return;
        }
    }
}

/// A shard's sending gear, kept from round to round: its ring (where io_uring works) and the
/// buffers of one group of members.
struct Outbox {
    ring: Option<SendRing>,
    /// Each member's part of the round, by its place in the group being sent.
    bufs: Vec<Vec<Bytes>>,
    results: Vec<Sent>,
}

impl Outbox {
    fn new(ring: Option<SendRing>) -> Self {
        Self { ring, bufs: (0..uring::GROUP).map(|_| Vec::new()).collect(), results: Vec::new() }
    }

    /// Whether a member stays; one that left (or was given back) leaves the ring too.
    fn keep(&mut self, st: &mut MemberState) -> bool {
        if st.socket.is_some() {
            return true;
        }
        if let (Some(ring), Some(slot)) = (self.ring.as_mut(), st.slot.take()) {
            ring.unregister(slot);
        }
        false
    }
}

/// A member being written to this round, locked until its send is done: how many bytes it is
/// sent, and the timestamp of the last frame.
struct Held<'a> {
    st: MutexGuard<'a, MemberState>,
    total: usize,
    last: Option<u32>,
}

/// Write `batch` to every member; give back those it cannot be written to whole.
fn deliver(m: &mut Members, batch: &Batch, stream: &Stream, out: &mut Outbox) {
    let has_video = stream.has_video();
    // Only frames go out from here: a member stops before anything else, at its position.
    let frames = batch.entries.iter().take_while(|e| matches!(e, Entry::Frame(_))).count();
    let complete = batch.skipped == 0 && frames == batch.entries.len();
    let (start, end) = (m.cursor, m.cursor + frames as u64);
    for group in m.list.chunks(uring::GROUP) {
        let mut held = Vec::with_capacity(group.len());
        for member in group {
            let mut st = lock(&member.state);
            if st.socket.is_none() {
                continue;
            }
            // The shard fell behind the ring (each player skips on its own, from its position),
            // or the player is already past what this batch can deliver.
            if batch.skipped > 0 || st.cursor > end {
                give_back(&mut st);
                continue;
            }
            let had = st.cursor.saturating_sub(start) as usize;
            let bufs = &mut out.bufs[held.len()];
            let last = admit_frames(&mut st, &batch.entries[had..frames], has_video, bufs);
            let total = bufs.iter().map(Bytes::len).sum();
            st.cursor = end;
            held.push(Held { st, total, last });
        }
        send_group(&mut held, out);
        for (h, bufs) in held.iter_mut().zip(&mut out.bufs) {
            bufs.clear();
            // Given back by a short write too: its unwritten rest covers these frames.
            if h.st.socket.is_some() && !complete {
                give_back(&mut h.st);
            }
        }
    }
}

/// The admitted frames, in the member's wire form, into `bufs`; the last one's timestamp.
fn admit_frames(st: &mut MemberState, entries: &[Entry], has_video: bool, bufs: &mut Vec<Bytes>) -> Option<u32> {
    bufs.clear();
    let mut last = None;
    let MemberState { gate, wire, .. } = st;
    for entry in entries {
        let Entry::Frame(f) = entry else { continue };
        if gate.admit(f, has_video) {
            match wire {
                Wire::Rtmp { chunk_size, interleave, stream_id } => {
                    bufs.push(f.player_chunks(*chunk_size, *interleave, *stream_id))
                }
                Wire::Flv { mux, tags } => {
                    // Data messages (metadata, cue points) have no clock of their own. A body
                    // too large for a tag is not sent (an RTMP message cannot be one).
                    let config = f.sequence_header || f.kind == rtmp::MediaKind::Data;
                    let _ = mux.gather(tags, f.kind.type_id(), f.timestamp, &f.payload, config);
                }
            }
            last = Some(f.timestamp);
        }
    }
    if let Wire::Flv { tags, .. } = wire {
        tags.finish(bufs);
    }
    last
}

/// Each held member's part of the round in one gathered write: the group's first writes in one
/// ring submission where there is a ring, each by its own `sendmsg` otherwise.
fn send_group(held: &mut [Held<'_>], out: &mut Outbox) {
    let Outbox { ring, bufs, results } = out;
    let Some(ring) = ring.as_mut() else {
        for (h, bufs) in held.iter_mut().zip(bufs.iter_mut()) {
            let sent = h.st.socket.as_ref().filter(|_| !bufs.is_empty()).map(|socket| send_now(socket, bufs));
            finish(h, bufs, sent);
        }
        return;
    };
    let mut jobs = Vec::with_capacity(held.len());
    let mut targets = Vec::with_capacity(held.len());
    for (i, h) in held.iter_mut().enumerate() {
        let Some(fd) = h.st.socket.as_ref().map(ShardSocket::fd) else { continue };
        if bufs[i].is_empty() {
            continue;
        }
        let target = match h.st.slot {
            Some(slot) => Target::Slot(slot),
            None => {
                h.st.slot = ring.register(fd);
                h.st.slot.map_or(Target::Fd(fd), Target::Slot)
            }
        };
        targets.push(i);
        jobs.push((target, &bufs[i][..]));
    }
    ring.send(&jobs, results);
    drop(jobs);
    let mut firsts = targets.into_iter().zip(results.drain(..)).peekable();
    for (i, (h, bufs)) in held.iter_mut().zip(bufs.iter_mut()).enumerate() {
        let first = match firsts.peek() {
            Some((at, _)) if *at == i => firsts.next().map(|(_, r)| r),
            _ => None,
        };
        let sent = match (h.st.socket.as_ref(), first) {
            (Some(socket), Some(first)) => Some(send_rest(socket, bufs, first)),
            _ => None,
        };
        finish(h, bufs, sent);
    }
}

/// Account for a member's write (`None`: nothing to write): its bytes and timestamp, or its
/// give-back with the unwritten rest or the error.
fn finish(h: &mut Held<'_>, bufs: &mut Vec<Bytes>, sent: Option<std::io::Result<bool>>) {
    let st = &mut h.st;
    let Some(sent) = sent else { return };
    match sent {
        Ok(true) => st.counters.add_out(h.total),
        Ok(false) => {
            st.counters.add_out(h.total - bufs.iter().map(Bytes::len).sum::<usize>());
            st.unwritten = std::mem::take(bufs);
            give_back(st);
        }
        Err(e) => {
            st.error = Some(e);
            give_back(st);
        }
    }
    if let Some(ts) = h.last {
        st.counters.set_timestamp(ts);
        st.last_timestamp = Some(ts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::{Clients, Kind};
    use crate::config::LiveConf;
    use crate::hub::{Frame, Hub, Publisher, StreamKey, StreamOptions};
    use rtmp::MediaKind;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::tcp::OwnedWriteHalf;
    use tokio::net::{TcpListener, TcpStream};

    const OPTS: StreamOptions = StreamOptions { ring_len: 1024, gop_cache: true };

    fn video(ts: u32, key: bool, size: usize) -> Frame {
        let mut body = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        body.resize(size, (ts % 251) as u8);
        Frame::video(ts, Bytes::from(body)).unwrap()
    }

    /// A connected pair: the server's write half for a shard, the client's socket.
    async fn pair() -> (Arc<OwnedWriteHalf>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // The read half is not needed: the shard only writes.
        let (_, write) = server.into_split();
        (Arc::new(write), client)
    }

    fn joining(stream: &Arc<Stream>, socket: Arc<OwnedWriteHalf>, clients: &Arc<Clients>) -> Joining {
        let handle = clients.register("127.0.0.1:1".parse().unwrap(), Kind::Rtmp, 0).unwrap();
        let (_, sub) = stream.subscribe();
        Joining {
            socket: ShardSocket::new(socket),
            cursor: sub.cursor(),
            gate: PlayerGate::new(&LiveConf::default()),
            wire: Wire::Rtmp { chunk_size: 4096, interleave: false, stream_id: 1 },
            counters: handle.counters(),
        }
    }

    fn chunked(frames: &[Frame]) -> Vec<u8> {
        frames.iter().flat_map(|f| f.rtmp_chunks(4096, MediaKind::Video.csid()).to_vec()).collect()
    }

    async fn given_back(m: &Membership) {
        tokio::time::timeout(Duration::from_secs(10), std::future::poll_fn(|cx| m.poll_given_back(cx)))
            .await
            .expect("the shard gives the player back");
    }

    /// A hub with one published stream, and a client registry for the players' counters;
    /// `plain`: its shards send without io_uring.
    fn fixture(plain: bool) -> (Arc<Hub>, Arc<Clients>, Publisher) {
        let hub = Hub::new();
        let publisher = hub.publish(StreamKey { app: "live".into(), name: "a".into() }, OPTS).unwrap();
        if plain {
            publisher.stream().direct.use_plain_sends();
        }
        (hub, Arc::new(Clients::new(8)), publisher)
    }

    /// Each test twice: with shards sending through io_uring (where this machine has it) and
    /// with one `sendmsg` per member.
    macro_rules! both_send_paths {
        ($($name:ident),*) => {
            mod uring_sends {
                $(#[tokio::test]
                async fn $name() {
                    super::$name(false).await
                })*
            }
            mod plain_sends {
                $(#[tokio::test]
                async fn $name() {
                    super::$name(true).await
                })*
            }
        };
    }

    both_send_paths!(
        a_shard_writes_frames_to_its_members_and_gives_them_back_at_an_event,
        a_full_socket_gives_the_player_back_with_the_unwritten_rest,
        a_player_ahead_of_the_shard_gets_nothing_twice,
        a_member_sent_nothing_in_a_round_stays_in_its_shard,
        an_flv_member_gets_tags_on_its_own_timeline
    );

    /// Members of one shard get every frame, chunked once, written by the shard; an
    /// unpublish gives them back at its position, with nothing left unwritten.
    async fn a_shard_writes_frames_to_its_members_and_gives_them_back_at_an_event(plain: bool) {
        let (_hub, clients, publisher) = fixture(plain);
        let stream = publisher.stream().clone();
        let (s1, mut c1) = pair().await;
        let (s2, mut c2) = pair().await;
        let j1 = joining(&stream, s1, &clients);
        let start = j1.cursor;
        let m1 = stream.direct.join(&stream, j1).expect("starts a shard");
        let m2 = stream.direct.join(&stream, joining(&stream, s2, &clients)).expect("joins it");
        assert_eq!(stream.direct.members(), 2);
        let frames = [video(0, true, 100), video(33, false, 5000), video(66, false, 9000)];
        for f in &frames {
            stream.push(f.clone());
        }
        let want = chunked(&frames);
        for c in [&mut c1, &mut c2] {
            let mut got = vec![0; want.len()];
            tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut got)).await.unwrap().unwrap();
            assert_eq!(got, want, "the frames, in order, as RTMP chunks");
        }
        let head = start + frames.len() as u64;
        drop(publisher);
        for m in [m1, m2] {
            given_back(&m).await;
            let resume = m.leave();
            assert_eq!(resume.cursor, head, "given back at the unpublish event, for the player to handle");
            assert!(resume.unwritten.is_empty());
            assert_eq!(resume.last_timestamp, Some(66));
        }
    }

    /// A member whose socket is full is given back with the rest of the batch, so its own task
    /// carries on from the exact byte; the other member is not held up.
    async fn a_full_socket_gives_the_player_back_with_the_unwritten_rest(plain: bool) {
        let (_hub, clients, publisher) = fixture(plain);
        let stream = publisher.stream().clone();
        let (slow_socket, slow_client) = pair().await;
        let (fast_socket, mut fast_client) = pair().await;
        let slow = joining(&stream, slow_socket, &clients);
        let start = slow.cursor;
        let slow = stream.direct.join(&stream, slow).unwrap();
        let _fast = stream.direct.join(&stream, joining(&stream, fast_socket, &clients)).unwrap();
        let frames: Vec<Frame> = (0..64).map(|i| video(i * 33, i == 0, 256 * 1024)).collect();
        let want = chunked(&frames);
        let reader = tokio::spawn(async move {
            let mut got = vec![0; want.len()];
            fast_client.read_exact(&mut got).await.unwrap();
            got == want
        });
        for f in &frames {
            stream.push(f.clone());
            tokio::task::yield_now().await;
        }
        given_back(&slow).await;
        assert!(
            tokio::time::timeout(Duration::from_secs(10), reader).await.unwrap().unwrap(),
            "the fast player got every byte"
        );
        let resume = slow.leave();
        assert!(!resume.unwritten.is_empty(), "the socket filled in the middle of a batch");
        // What the slow client can read plus the unwritten rest is exactly the frames up to the
        // cursor: nothing lost, nothing twice.
        let mut slow_client = slow_client;
        let mut written = Vec::new();
        let mut buf = vec![0; 1 << 20];
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), slow_client.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            written.extend_from_slice(&buf[..n]);
        }
        let unwritten: Vec<u8> = resume.unwritten.iter().flat_map(|b| b.to_vec()).collect();
        written.extend_from_slice(&unwritten);
        let delivered = (resume.cursor - start) as usize;
        assert!(delivered < frames.len(), "given back before the end");
        assert_eq!(written, chunked(&frames[..delivered]));
    }

    /// An FLV member gets FLV tags on its own timeline (from 0) in the same shard as an RTMP
    /// member, counted as a member, and its timeline goes on after it is given back.
    async fn an_flv_member_gets_tags_on_its_own_timeline(plain: bool) {
        let (_hub, clients, publisher) = fixture(plain);
        let stream = publisher.stream().clone();
        let (s1, mut c1) = pair().await;
        let (s2, mut c2) = pair().await;
        let _rtmp = stream.direct.join(&stream, joining(&stream, s1, &clients)).unwrap();
        let mut j = joining(&stream, s2, &clients);
        j.wire = Wire::flv(flv::LiveMuxer::new());
        let m = stream.direct.join(&stream, j).expect("joins the same shard");
        assert_eq!(stream.direct.members(), 2, "FLV members count as fan-out players");
        let frames = [video(5000, true, 100), video(5033, false, 70_000), video(5066, false, 9000)];
        for f in &frames {
            stream.push(f.clone());
        }
        let mut mux = flv::LiveMuxer::new();
        let mut want = Vec::new();
        for f in &frames {
            mux.write(&mut want, 9, f.timestamp, &f.payload, false).unwrap();
        }
        let mut got = vec![0; want.len()];
        tokio::time::timeout(Duration::from_secs(10), c2.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, want, "FLV tags from 0");
        let mut got = vec![0; chunked(&frames).len()];
        tokio::time::timeout(Duration::from_secs(10), c1.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, chunked(&frames), "the RTMP member is not disturbed");
        drop(publisher);
        given_back(&m).await;
        let Wire::Flv { mux: left, .. } = m.leave().wire else { panic!("an FLV wire") };
        assert_eq!(left.last_timestamp(), 66, "the timeline goes on where the shard left it");
    }

    /// A player that joins ahead of the shard (it read the newest frame before the shard's
    /// round) gets only what it does not have: nothing twice.
    async fn a_player_ahead_of_the_shard_gets_nothing_twice(plain: bool) {
        let (_hub, clients, publisher) = fixture(plain);
        let stream = publisher.stream().clone();
        let (s1, mut c1) = pair().await;
        let (s2, mut c2) = pair().await;
        let j1 = joining(&stream, s1, &clients);
        let cursor = j1.cursor;
        let _m1 = stream.direct.join(&stream, j1).unwrap();
        let (f1, f2) = (video(0, true, 3000), video(33, false, 4000));
        // The shard has not run yet (one thread, no await since): the second player already
        // has f1.
        stream.push(f1.clone());
        let mut j2 = joining(&stream, s2, &clients);
        j2.cursor = cursor + 1;
        assert!(j2.gate.admit(&f1, true), "its own task sent f1");
        let _m2 = stream.direct.join(&stream, j2).expect("joins the shard behind it");
        stream.push(f2.clone());
        let mut got = vec![0; chunked(&[f1.clone(), f2.clone()]).len()];
        tokio::time::timeout(Duration::from_secs(10), c1.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, chunked(&[f1, f2.clone()]));
        let mut got = vec![0; chunked(std::slice::from_ref(&f2)).len()];
        tokio::time::timeout(Duration::from_secs(10), c2.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, chunked(&[f2]), "only the frame it did not have");
    }

    /// A round with nothing for a member (its gate waits for a keyframe) writes nothing to it
    /// and keeps it in the shard, which writes it the keyframe when it comes.
    async fn a_member_sent_nothing_in_a_round_stays_in_its_shard(plain: bool) {
        let (_hub, clients, publisher) = fixture(plain);
        let stream = publisher.stream().clone();
        let (socket, mut client) = pair().await;
        let m = stream.direct.join(&stream, joining(&stream, socket, &clients)).unwrap();
        stream.push(video(0, false, 2000));
        // Let the shard run its round.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let key = video(33, true, 3000);
        stream.push(key.clone());
        let mut got = vec![0; chunked(std::slice::from_ref(&key)).len()];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, chunked(&[key]), "the keyframe, and nothing before it");
        assert_eq!(stream.direct.members(), 1, "still in its shard");
        let resume = m.leave();
        assert!(resume.error.is_none(), "no failed write: {:?}", resume.error);
    }
}

//! The load: one publisher on its own thread, bulk players that only drain and count bytes, and
//! probe players that parse everything to measure time to first frame and latency.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtmp::{ClientEvent, MediaKind, Role};
use sluice::client::RtmpClient;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use crate::sei;
use crate::source::Source;

/// Most bytes a bulk player's socket must hold before it wakes up. On loopback the receiver's
/// wake-ups run on the sender's CPU (the server's), so fewer wake-ups keep the tool from
/// charging the server for itself; but data waiting in the socket shrinks the TCP window the
/// server may send into (256 KiB made players fall behind at 9000), so not more than this.
const MAX_RCVLOWAT: u64 = 64 * 1024;
/// Least low-water mark.
const MIN_RCVLOWAT: u64 = 2048;

/// The low-water mark for a stream of `bytes_per_second`: at most a fifth of a second of media.
/// (Byte counts do not depend on it: the sampler adds what is queued.)
pub fn rcvlowat_for(bytes_per_second: u64) -> u32 {
    (bytes_per_second / 5).clamp(MIN_RCVLOWAT, MAX_RCVLOWAT) as u32
}

impl PlayerStats {
    /// Bytes received so far: read, plus queued in the socket (`FIONREAD`), so the count does
    /// not depend on when the low-water mark last woke the player.
    pub fn received(&self) -> u64 {
        let read = self.bytes.load(Ordering::Relaxed);
        let fd = self.fd.load(Ordering::Relaxed);
        if fd <= 0 {
            return read;
        }
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int; a stale fd at worst reads another socket's queue
        // once, in a bench tool.
        let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) };
        if rc == 0 && queued > 0 {
            read + queued as u64
        } else {
            read
        }
    }
}
/// A gap between video messages longer than this counts as a stall.
const STALL: Duration = Duration::from_millis(500);
/// How long a player may take to get `NetStream.Play.Start`.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Where to publish and play.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// Application.
    pub app: String,
    /// Stream name.
    pub stream: String,
}

/// Wall-clock microseconds since the Unix epoch (the clock SEI stamps use).
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

/// What the publisher has sent.
#[derive(Default)]
pub struct PublishStats {
    /// Payload bytes sent.
    pub bytes: AtomicU64,
    /// Frames sent.
    pub frames: AtomicU64,
    /// Publish.Start received.
    pub live: AtomicBool,
    /// Largest delay behind the real-time schedule seen, microseconds.
    pub max_lag_us: AtomicU64,
    /// Why publishing failed.
    pub error: Mutex<Option<String>>,
}

/// Audio messages the publisher sent, with their send times: AAC frames carry no SEI, so a probe in
/// the same process finds an audio message's send time here by its RTMP timestamp (the publisher's
/// timestamps only grow, looping included, and both servers pass them through unchanged).
/// Bounded: the last [`AUDIO_SENDS_KEPT`] messages (about 20 s of AAC).
static AUDIO_SENDS: Mutex<std::collections::VecDeque<(u32, u64)>> = Mutex::new(std::collections::VecDeque::new());
/// Most audio send times kept.
const AUDIO_SENDS_KEPT: usize = 1024;

fn record_audio_send(timestamp: u32, sent_us: u64) {
    let mut sends = AUDIO_SENDS.lock().unwrap();
    if sends.len() == AUDIO_SENDS_KEPT {
        sends.pop_front();
    }
    sends.push_back((timestamp, sent_us));
}

/// When the audio message with `timestamp` was sent by this process's publisher, if it was.
fn audio_sent_us(timestamp: u32) -> Option<u64> {
    let sends = AUDIO_SENDS.lock().unwrap();
    let i = sends.partition_point(|&(ts, _)| ts < timestamp);
    sends.get(i).filter(|&&(ts, _)| ts == timestamp).map(|&(_, us)| us)
}

/// Run the publisher on its own thread (so thousands of player tasks never delay it) until `stop`.
pub fn spawn_publisher(
    target: Target,
    source: Box<dyn Source + Send>,
    stats: Arc<PublishStats>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(publisher(target, source, stats, stop, true));
    })
}

/// Publish `source` in real time until `stop`, stamping video with SEI send times when `stamp`.
pub async fn publisher(
    target: Target,
    mut source: Box<dyn Source + Send>,
    stats: Arc<PublishStats>,
    stop: Arc<AtomicBool>,
    stamp: bool,
) {
    if let Err(e) = publish(target, source.as_mut(), &stats, &stop, stamp).await {
        stats.live.store(false, Ordering::Relaxed);
        *stats.error.lock().unwrap() = Some(format!("{e:#}"));
    }
}

async fn publish(
    target: Target,
    source: &mut (dyn Source + Send),
    stats: &PublishStats,
    stop: &AtomicBool,
    stamp: bool,
) -> anyhow::Result<()> {
    let mut c = RtmpClient::connect(target.addr, &target.app, Role::Publish(target.stream.clone())).await?;
    let code = c.next_status().await?;
    anyhow::ensure!(code == "NetStream.Publish.Start", "publish refused: {code}");
    stats.live.store(true, Ordering::Relaxed);
    let mut nal_len = 4;
    for h in source.headers() {
        if h.kind == MediaKind::Video {
            nal_len = sei::nal_length_size(&h.payload).unwrap_or(4);
        }
        c.send_media(h.kind, h.timestamp, &h.payload).await?;
    }
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let f = source.next_frame();
        let due = start + Duration::from_millis(f.timestamp as u64);
        tokio::time::sleep_until(due.into()).await;
        let payload = match f.kind {
            MediaKind::Video if stamp && !f.header => {
                sei::stamp_avc(&f.payload, nal_len, now_us(), u64::from(f.timestamp)).unwrap_or(f.payload)
            }
            MediaKind::Audio if stamp && !f.header => {
                record_audio_send(f.timestamp, now_us());
                f.payload
            }
            _ => f.payload,
        };
        c.send_media(f.kind, f.timestamp, &payload).await?;
        let lag = Instant::now().saturating_duration_since(due).as_micros() as u64;
        stats.max_lag_us.fetch_max(lag, Ordering::Relaxed);
        stats.bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
        stats.frames.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Player states.
pub mod state {
    /// Handshake/connect/play in progress.
    pub const JOINING: u8 = 0;
    /// Receiving media.
    pub const PLAYING: u8 = 1;
    /// Could not start, or was disconnected.
    pub const FAILED: u8 = 2;
}

/// A player's counters, read by the sampler.
#[derive(Default)]
pub struct PlayerStats {
    /// Bytes received (read from the socket).
    pub bytes: AtomicU64,
    /// The socket while draining, so the sampler can add what is queued but not yet read
    /// (-1 otherwise).
    pub fd: std::sync::atomic::AtomicI32,
    /// One of [`state`].
    pub state: AtomicU8,
    /// Microseconds from connect to the first media bytes after `NetStream.Play.Start`
    /// (0 until then).
    pub start_us: AtomicU64,
}

/// A bulk player: handshake and play with the real client, then drain with `recv(MSG_TRUNC)` so
/// the kernel discards the data without copying it, still sending Acknowledgements.
/// `rcvlowat` is the socket's low-water mark (see [`rcvlowat_for`]).
pub async fn bulk_player(target: Target, stats: Arc<PlayerStats>, rcvlowat: u32) {
    if let Err(_e) = drain(target, &stats, rcvlowat).await {
        stats.state.store(state::FAILED, Ordering::Relaxed);
    }
}

async fn start_play(target: &Target) -> anyhow::Result<RtmpClient> {
    let mut c = RtmpClient::connect(target.addr, &target.app, Role::Play(target.stream.clone())).await?;
    let started = tokio::time::timeout(START_TIMEOUT, async {
        loop {
            match c.next_event().await? {
                ClientEvent::Status { code, .. } if code == "NetStream.Play.Start" => return Ok(()),
                ClientEvent::Status { level, code, .. } if level == "error" => anyhow::bail!("{code}"),
                _ => {}
            }
        }
    })
    .await;
    started.map_err(|_| anyhow::anyhow!("no NetStream.Play.Start within {START_TIMEOUT:?}"))??;
    Ok(c)
}

async fn drain(target: Target, stats: &PlayerStats, rcvlowat: u32) -> anyhow::Result<()> {
    let connect = Instant::now();
    let c = start_play(&target).await?;
    let (mut socket, mut session, leftover) = c.into_parts();
    stats.state.store(state::PLAYING, Ordering::Relaxed);
    stats.bytes.store(session.bytes_received(), Ordering::Relaxed);
    // Media may have come in the same read as Play.Start; otherwise wait for it without the
    // low-water mark, so the start time is exact, then let the kernel batch wake-ups.
    if leftover == 0 {
        socket.readable().await?;
    }
    stats.start_us.store(connect.elapsed().as_micros().max(1) as u64, Ordering::Relaxed);
    set_rcvlowat(&socket, rcvlowat);
    stats.fd.store(socket.as_raw_fd(), Ordering::Relaxed);
    let result = drain_loop(&mut socket, &mut session, stats).await;
    stats.fd.store(-1, Ordering::Relaxed);
    result
}

async fn drain_loop(
    socket: &mut TcpStream,
    session: &mut rtmp::ClientSession,
    stats: &PlayerStats,
) -> anyhow::Result<()> {
    loop {
        let n = drain_once(socket, stats).await?;
        session.skip_received(n);
        let out = session.take_output();
        if !out.is_empty() {
            socket.write_all(&out).await?;
        }
    }
}

/// Drain a socket whose peer needs no answers (an HTTP response body), counting what came.
pub async fn discard_loop(socket: &TcpStream, stats: &PlayerStats) -> anyhow::Result<()> {
    loop {
        drain_once(socket, stats).await?;
    }
}

/// Wait for bytes and discard what came (at least one byte), counted in `stats`.
async fn drain_once(socket: &TcpStream, stats: &PlayerStats) -> anyhow::Result<usize> {
    loop {
        socket.readable().await?;
        match socket.try_io(Interest::READABLE, || recv_discard(socket, 1 << 20)) {
            Ok(0) => anyhow::bail!("closed by server"),
            Ok(n) => {
                stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
                return Ok(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Set the socket's low-water mark (see [`rcvlowat_for`]).
pub fn set_rcvlowat(socket: &TcpStream, bytes: u32) {
    let fd = socket.as_raw_fd();
    let bytes = bytes as libc::c_int;
    // SAFETY: setsockopt on a valid socket fd with a pointer to a live c_int of the stated size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            &bytes as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Discard up to `max` bytes of queued data without copying them; returns how much there was.
pub fn recv_discard(socket: &TcpStream, max: usize) -> std::io::Result<usize> {
    // SAFETY: with MSG_TRUNC on TCP, Linux discards the data and never writes to the (null) buffer.
    let n = unsafe { libc::recv(socket.as_raw_fd(), std::ptr::null_mut(), max, libc::MSG_TRUNC | libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// What a probe player observed.
#[derive(Debug, Default, Clone)]
pub struct ProbeResult {
    /// Connect → first video message.
    pub first_video: Option<Duration>,
    /// Connect → first video keyframe (coded, not the sequence header).
    pub first_key: Option<Duration>,
    /// The first video message was a sequence header and the first coded frame a keyframe.
    pub headers_first: bool,
    /// Publish-to-play latencies of video messages from SEI stamps, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Publish-to-play latencies of audio messages (send times kept by this process's publisher,
    /// so none with `--no-publish`), in microseconds.
    pub audio_latencies_us: Vec<u64>,
    /// Gaps between video messages longer than [`STALL`].
    pub stalls: u32,
    /// Bytes received.
    pub bytes: u64,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// A probe player: parses everything until `stop`, recording into `out`.
pub async fn probe_player(target: Target, out: Arc<Mutex<ProbeResult>>, stop: Arc<AtomicBool>) {
    if let Err(e) = probe(target, &out, &stop).await {
        out.lock().unwrap().error = Some(format!("{e:#}"));
    }
}

async fn probe(target: Target, out: &Mutex<ProbeResult>, stop: &AtomicBool) -> anyhow::Result<()> {
    let connect = Instant::now();
    let joined_us = now_us();
    let mut c = start_play(&target).await?;
    let mut observer = VideoObserver::new(connect, joined_us);
    while !stop.load(Ordering::Relaxed) {
        let ev = match tokio::time::timeout(Duration::from_millis(200), c.next_event()).await {
            Ok(ev) => ev?,
            Err(_) => continue,
        };
        match ev {
            ClientEvent::Media { kind: MediaKind::Video, timestamp, payload } => {
                observer.video(&mut out.lock().unwrap(), timestamp, &payload)
            }
            ClientEvent::Media { kind: MediaKind::Audio, timestamp, .. } => {
                observer.audio(&mut out.lock().unwrap(), timestamp)
            }
            _ => {}
        }
    }
    Ok(())
}

/// What a probe makes of the video messages it gets, whatever carried them (RTMP, HTTP-FLV).
pub struct VideoObserver {
    connect: Instant,
    joined_us: u64,
    nal_len: usize,
    last_video: Option<Instant>,
    seen_video: bool,
    seen_coded: bool,
    /// Publisher's timestamp minus this player's, learned from the first stamped video frame
    /// (0 over RTMP; HTTP-FLV starts each player at 0).
    offset: Option<u32>,
}

impl VideoObserver {
    /// A probe that connected at `connect` (`joined_us` on the SEI clock).
    pub fn new(connect: Instant, joined_us: u64) -> Self {
        VideoObserver {
            connect,
            joined_us,
            nal_len: 4,
            last_video: None,
            seen_video: false,
            seen_coded: false,
            offset: None,
        }
    }

    /// One audio message with `timestamp` received now.
    pub fn audio(&mut self, r: &mut ProbeResult, timestamp: u32) {
        let Some(offset) = self.offset else { return };
        let Some(sent_us) = audio_sent_us(timestamp.wrapping_add(offset)) else { return };
        // As for video: what was sent before this probe joined came from the GOP cache.
        if sent_us >= self.joined_us {
            r.audio_latencies_us.push(now_us().saturating_sub(sent_us));
        }
    }

    /// One video message (an FLV video tag body) with `timestamp` received now.
    pub fn video(&mut self, r: &mut ProbeResult, timestamp: u32, payload: &[u8]) {
        let now = Instant::now();
        r.bytes += payload.len() as u64;
        let header = flv::parse_video(payload).ok();
        let is_seq = header.as_ref().is_some_and(|h| h.is_sequence_header());
        let is_key = header.as_ref().is_some_and(|h| h.is_keyframe()) && !is_seq;
        if !self.seen_video {
            self.seen_video = true;
            r.first_video = Some(now - self.connect);
            r.headers_first = is_seq;
        }
        if is_seq {
            self.nal_len = sei::nal_length_size(payload).unwrap_or(4);
            return;
        }
        if !self.seen_coded {
            self.seen_coded = true;
            r.headers_first &= is_key;
        }
        if is_key && r.first_key.is_none() {
            r.first_key = Some(now - self.connect);
        }
        if self.last_video.is_some_and(|t| now - t > STALL) {
            r.stalls += 1;
        }
        self.last_video = Some(now);
        if let Some((sent_us, mark)) = sei::read_avc(payload, self.nal_len) {
            self.offset.get_or_insert((mark as u32).wrapping_sub(timestamp));
            // Frames from the GOP cache were sent before this probe joined: not latency.
            if sent_us >= self.joined_us {
                r.latencies_us.push(now_us().saturating_sub(sent_us));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_send_times_are_found_by_timestamp_and_bounded() {
        for ts in 0..AUDIO_SENDS_KEPT as u32 + 10 {
            record_audio_send(1_000_000 + ts * 21, u64::from(ts) + 7);
        }
        assert_eq!(AUDIO_SENDS.lock().unwrap().len(), AUDIO_SENDS_KEPT);
        assert_eq!(audio_sent_us(1_000_000 + 500 * 21), Some(507));
        assert_eq!(audio_sent_us(1_000_000 + 500 * 21 + 1), None, "no message with that timestamp");
        assert_eq!(audio_sent_us(1_000_000), None, "the oldest were dropped");
    }
}

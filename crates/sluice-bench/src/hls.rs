//! HLS viewers (`--hls URL`): each viewer is one keep-alive HTTP/1.1 connection that behaves as
//! hls.js does: it loads the media playlist, starts at the live edge, fetches every new segment in
//! order (whole bodies, drained and counted, never kept) and reloads the playlist every target
//! duration (half of it when the playlist did not change). With `--ll-hls` it fetches the parts
//! instead and reloads with blocking requests (`_HLS_msn=N&_HLS_part=M`), as the playlist's
//! `EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES` allows.
//!
//! Keep-up rule: over a step, the segments that first appeared in any viewer's playlist between
//! the step's start and two target durations before its end are the step's segments; a viewer
//! kept up when it downloaded at least 97 % of their bytes (a segment's size is the most bytes any
//! viewer downloaded for it: the whole segment, or the sum of its parts) and never fell more than
//! one segment (one target duration) behind the live edge: the newest segment in its latest
//! playlist minus the one it fetches next.
//!
//! Blocking reload answer delay (`--ll-hls`): when the answer came minus when the part it asked
//! for ended on the wall clock, from the playlist itself: the segment's `EXT-X-PROGRAM-DATE-TIME`
//! plus the durations of its parts up to and including that one. It includes the publisher's
//! path to the server and the server's wait for the frame that closes the part (about one frame
//! interval), both the same for every viewer; what grows with load is the server's.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::httpflv::{get_head, HttpTarget};
use crate::players::state;
use crate::procstat::{rss_kib, CpuMeter};
use crate::report::{Report, Step};

/// Largest playlist read.
const MAX_PLAYLIST: usize = 1024 * 1024;
/// How long one request may take (a blocking reload waits up to three target durations).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Segments a viewer remembers the downloaded bytes of (a step of 20 s holds 10 of 2 s).
const LEDGER: usize = 256;
/// Answer delays a viewer keeps per step.
const MAX_DELAYS: usize = 2048;
/// Share of the step's segment bytes a viewer must download to keep up.
pub const KEEP_UP_SHARE: f64 = 0.97;
/// A step fails when the segments that appeared in it hold less media than this share of its
/// judged time: the server (which also ingests and segments) fell behind real time, and viewers
/// that kept up with it kept up with a stalled stream.
pub const MIN_MEDIA_SHARE: f64 = 0.75;
/// ...or when they carry less than this share of the publisher's rate over the step: the server
/// dropped frames (sluice's segmenter skips frames when it falls behind its stream).
pub const MIN_RATE_SHARE: f64 = 0.95;
/// Segments a viewer may be behind the live edge and still keep up.
pub const MAX_LAG_SEGMENTS: u64 = 1;

/// Errors in a playlist.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlaylistError {
    /// Not an M3U8 playlist.
    #[error("not a playlist (no #EXTM3U)")]
    NotM3u8,
    /// A master playlist, or a playlist without a target duration.
    #[error("no #EXT-X-TARGETDURATION (a master playlist?)")]
    NoTargetDuration,
}

/// A complete segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    /// URI as written.
    pub uri: String,
    /// `#EXTINF` duration, seconds.
    pub duration: f64,
}

/// A low-latency part.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// The media sequence number of its segment.
    pub msn: u64,
    /// Its index in the segment.
    pub index: u32,
    /// URI as written.
    pub uri: String,
    /// When its media ends on the wall clock (ms since the Unix epoch), from the program date-time.
    pub end_ms: Option<f64>,
}

/// What a viewer needs of a media playlist.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Playlist {
    /// `EXT-X-TARGETDURATION`, seconds.
    pub target_duration: f64,
    /// Complete segments in order.
    pub segments: Vec<Segment>,
    /// Parts listed, in order (those of complete segments and of the open one).
    pub parts: Vec<Part>,
    /// `CAN-BLOCK-RELOAD=YES`.
    pub can_block_reload: bool,
    /// `EXT-X-ENDLIST`.
    pub ended: bool,
}

impl Playlist {
    /// Parse a media playlist.
    pub fn parse(text: &str) -> Result<Playlist, PlaylistError> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some("#EXTM3U") {
            return Err(PlaylistError::NotM3u8);
        }
        let mut pl = Playlist::default();
        let (mut msn, mut index) = (0u64, 0u32);
        // Wall clock (ms) where the current segment, and the next part in it, start.
        let (mut segment_start, mut part_start): (Option<f64>, Option<f64>) = (None, None);
        let mut extinf: Option<f64> = None;
        for line in lines {
            if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                pl.target_duration = v.parse().unwrap_or(0.0);
            } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                msn = v.parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
                pl.can_block_reload = attributes(v).any(|(k, v)| k == "CAN-BLOCK-RELOAD" && v == "YES");
            } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                segment_start = parse_date_time_ms(v);
                part_start = segment_start;
            } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
                let mut part = Part { msn, index, uri: String::new(), end_ms: None };
                for (k, v) in attributes(v) {
                    match k {
                        "URI" => part.uri = v.to_owned(),
                        "DURATION" => {
                            let d: f64 = v.parse().unwrap_or(0.0);
                            part_start = part_start.map(|s| s + d * 1000.0);
                            part.end_ms = part_start;
                        }
                        _ => {}
                    }
                }
                pl.parts.push(part);
                index += 1;
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                extinf = v.split(',').next().and_then(|d| d.trim().parse().ok());
            } else if line == "#EXT-X-ENDLIST" {
                pl.ended = true;
            } else if !line.starts_with('#') {
                pl.segments.push(Segment { msn, uri: line.to_owned(), duration: extinf.unwrap_or(0.0) });
                // A segment without a date-time of its own starts where the previous one ended.
                segment_start = segment_start.zip(extinf).map(|(s, d)| s + d * 1000.0);
                part_start = segment_start;
                msn += 1;
                index = 0;
                extinf = None;
            }
        }
        if pl.target_duration <= 0.0 {
            return Err(PlaylistError::NoTargetDuration);
        }
        Ok(pl)
    }

    /// The newest media sequence number listed: the open segment's (it has parts) or the last
    /// complete one's.
    pub fn newest_msn(&self) -> Option<u64> {
        let complete = self.segments.last().map(|s| s.msn);
        let open = self.parts.last().map(|p| p.msn);
        complete.max(open)
    }

    fn is_complete(&self, msn: u64) -> bool {
        self.segments.iter().any(|s| s.msn == msn)
    }
}

/// `KEY=VALUE,KEY="VALUE",...` attribute lists.
fn attributes(list: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = list;
    std::iter::from_fn(move || {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], quoted[end + 1..].trim_start_matches(','))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        rest = next;
        Some((key.trim(), value))
    })
}

/// `2026-12-07T00:50:55.103Z` (or `+00:00`) as ms since the Unix epoch; other offsets are not
/// written by the servers measured and give `None`.
pub fn parse_date_time_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|v| v.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.splitn(3, ':');
    let (h, min) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + min * 60) as f64 + sec) * 1000.0)
}

/// One request a viewer makes for media.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetch {
    /// A whole segment.
    Segment {
        /// Its media sequence number.
        msn: u64,
        /// URI as written in the playlist.
        uri: String,
    },
    /// A low-latency part.
    Part {
        /// Its segment's media sequence number.
        msn: u64,
        /// URI as written in the playlist.
        uri: String,
    },
}

impl Fetch {
    /// The segment it belongs to.
    pub fn msn(&self) -> u64 {
        match self {
            Fetch::Segment { msn, .. } | Fetch::Part { msn, .. } => *msn,
        }
    }

    fn uri(&self) -> &str {
        match self {
            Fetch::Segment { uri, .. } | Fetch::Part { uri, .. } => uri,
        }
    }
}

/// Where a viewer is in the stream: the next segment (and part) it will fetch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cursor {
    /// `(msn, part)`; `None` before the first playlist.
    pub next: Option<(u64, u32)>,
}

impl Cursor {
    /// What to fetch from `pl`, in order, moving past it. The first playlist starts the viewer at
    /// the live edge: the newest complete segment, or with `parts` the newest part. A viewer left
    /// behind the playlist's window goes on at its oldest entry.
    pub fn plan(&mut self, pl: &Playlist, parts: bool) -> Vec<Fetch> {
        if parts {
            self.plan_parts(pl)
        } else {
            self.plan_segments(pl)
        }
    }

    fn plan_segments(&mut self, pl: &Playlist) -> Vec<Fetch> {
        let Some(last) = pl.segments.last() else { return Vec::new() };
        let from = self.next.map_or(last.msn, |(m, _)| m);
        let out: Vec<Fetch> = pl
            .segments
            .iter()
            .filter(|s| s.msn >= from)
            .map(|s| Fetch::Segment { msn: s.msn, uri: s.uri.clone() })
            .collect();
        if let Some(f) = out.last() {
            self.next = Some((f.msn() + 1, 0));
        }
        out
    }

    fn plan_parts(&mut self, pl: &Playlist) -> Vec<Fetch> {
        let from = match self.next {
            Some(n) => n,
            None => match pl.parts.last() {
                Some(p) => (p.msn, p.index),
                None => return self.plan_segments(pl),
            },
        };
        let mut out = Vec::new();
        // Complete segments it needs whose parts are no longer listed: whole, if it needs them
        // from their start.
        let first_part_msn = pl.parts.first().map_or(u64::MAX, |p| p.msn);
        for s in pl.segments.iter().filter(|s| s.msn < first_part_msn) {
            if (s.msn, 0) >= from {
                out.push(Fetch::Segment { msn: s.msn, uri: s.uri.clone() });
            }
        }
        for p in pl.parts.iter().filter(|p| (p.msn, p.index) >= from) {
            out.push(Fetch::Part { msn: p.msn, uri: p.uri.clone() });
        }
        let last_listed = pl.parts.last().map(|p| (p.msn, p.index + 1));
        let mut next = from.max(last_listed.unwrap_or(from));
        if out.last().is_some_and(|f| matches!(f, Fetch::Segment { .. })) {
            next = next.max((out.last().unwrap().msn() + 1, 0));
        }
        // A segment that is complete has no more parts: the next one starts at its part 0.
        if pl.is_complete(next.0) {
            next = (next.0 + 1, 0);
        }
        self.next = Some(next);
        out
    }

    /// The blocking reload's query for the next part: `_HLS_msn=N&_HLS_part=M`.
    pub fn blocking_query(&self) -> Option<String> {
        self.next.map(|(m, p)| format!("_HLS_msn={m}&_HLS_part={p}"))
    }

    /// How many segments behind the live edge of `pl` the viewer is.
    pub fn lag(&self, pl: &Playlist) -> u64 {
        match (pl.newest_msn(), self.next) {
            (Some(newest), Some((next, _))) => newest.saturating_sub(next),
            _ => 0,
        }
    }
}

/// Where a playlist's URI points, given the playlist's path.
pub fn resolve(playlist_path: &str, uri: &str) -> String {
    if let Some(rest) = uri.strip_prefix("http://").or_else(|| uri.strip_prefix("https://")) {
        return rest.find('/').map_or("/".into(), |i| rest[i..].to_owned());
    }
    if uri.starts_with('/') {
        return uri.to_owned();
    }
    let path = playlist_path.split('?').next().unwrap_or_default();
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    format!("{dir}{uri}")
}

// ---- run-time parts ----

/// When each segment first appeared in any viewer's playlist.
#[derive(Default)]
pub struct Edge {
    /// One more than the newest msn seen (0: none yet), to skip the lock when nothing is new.
    newest: AtomicU64,
    /// One more than the newest complete segment seen (its duration is known from then on).
    complete: AtomicU64,
    /// The latest target duration, ms.
    target_ms: AtomicU64,
    first_listed: Mutex<BTreeMap<u64, Listed>>,
}

/// When a segment first appeared, and its duration once a playlist listed it complete.
#[derive(Clone, Copy)]
struct Listed {
    at: Instant,
    duration: f64,
}

impl Edge {
    fn saw(&self, pl: &Playlist) {
        self.target_ms.store((pl.target_duration * 1000.0) as u64, Ordering::Relaxed);
        let Some(newest) = pl.newest_msn() else { return };
        let complete = pl.segments.last().map_or(0, |s| s.msn + 1);
        if newest < self.newest.load(Ordering::Relaxed) && complete <= self.complete.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let mut map = self.first_listed.lock().unwrap();
        let oldest = pl.segments.first().map_or(newest, |s| s.msn).min(newest);
        for msn in oldest..=newest {
            map.entry(msn).or_insert(Listed { at: now, duration: 0.0 });
        }
        for s in &pl.segments {
            if let Some(l) = map.get_mut(&s.msn) {
                l.duration = s.duration;
            }
        }
        while map.len() > LEDGER * 4 {
            map.pop_first();
        }
        self.newest.fetch_max(newest + 1, Ordering::Relaxed);
        self.complete.fetch_max(complete, Ordering::Relaxed);
    }

    /// Segments that first appeared within `[from, to]`, and their media duration in seconds.
    fn listed_between(&self, from: Instant, to: Instant) -> (Vec<u64>, f64) {
        let map = self.first_listed.lock().unwrap();
        let listed: Vec<(u64, f64)> =
            map.iter().filter(|(_, l)| l.at >= from && l.at <= to).map(|(&m, l)| (m, l.duration)).collect();
        (listed.iter().map(|l| l.0).collect(), listed.iter().map(|l| l.1).sum())
    }
}

/// One viewer's counters.
#[derive(Default)]
pub struct ViewerStats {
    /// [`state`]: joining, playing (got a playlist) or failed (its connection is down).
    pub state: AtomicU8,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Failed requests (refused, an error status, a broken connection, a timeout).
    pub errors: AtomicU64,
    /// Media bytes downloaded.
    pub bytes: AtomicU64,
    /// Most segments behind the live edge since the step began.
    pub max_lag: AtomicU64,
    /// Bytes downloaded per segment, the newest [`LEDGER`].
    ledger: Mutex<VecDeque<(u64, u64)>>,
    /// Blocking reload answer delays this step, µs.
    delays_us: Mutex<Vec<u32>>,
    /// The first error, for the report.
    pub error: Mutex<Option<String>>,
}

impl ViewerStats {
    fn add_bytes(&self, msn: u64, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        let mut l = self.ledger.lock().unwrap();
        match l.iter_mut().rev().find(|(m, _)| *m == msn) {
            Some((_, b)) => *b += n,
            None => {
                if l.len() == LEDGER {
                    l.pop_front();
                }
                l.push_back((msn, n));
            }
        }
    }

    fn bytes_of(&self, msn: u64) -> u64 {
        self.ledger.lock().unwrap().iter().rev().find(|(m, _)| *m == msn).map_or(0, |(_, b)| *b)
    }

    fn fail(&self, e: &anyhow::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.error.lock().unwrap();
        if first.is_none() {
            *first = Some(format!("{e:#}"));
        }
    }
}

/// A keep-alive HTTP/1.1 connection, reconnected when the server closes it.
struct Conn {
    target: HttpTarget,
    socket: Option<TcpStream>,
    /// Bytes read past a response head (the start of its body).
    buf: Vec<u8>,
}

struct Head {
    status: u16,
    length: usize,
    close: bool,
}

impl Conn {
    fn new(target: HttpTarget) -> Conn {
        Conn { target, socket: None, buf: Vec::with_capacity(4096) }
    }

    /// GET `path`; the body is returned when `keep`, else drained and only counted.
    async fn get(&mut self, path: &str, keep: bool) -> anyhow::Result<(u16, usize, Vec<u8>)> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.get_inner(path, keep)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.socket = None;
                Err(e)
            }
            Err(_) => {
                self.socket = None;
                bail!("no answer within {REQUEST_TIMEOUT:?}")
            }
        }
    }

    async fn get_inner(&mut self, path: &str, keep: bool) -> anyhow::Result<(u16, usize, Vec<u8>)> {
        if self.socket.is_none() {
            let s = TcpStream::connect(self.target.addr).await.context("connect")?;
            s.set_nodelay(true)?;
            self.socket = Some(s);
        }
        let s = self.socket.as_mut().unwrap();
        let at = get_head(s, &self.target, path, &mut self.buf).await?;
        let head = parse_head(&self.buf[..at])?;
        self.buf.drain(..at + 4);
        let mut body = Vec::new();
        if keep {
            anyhow::ensure!(head.length <= MAX_PLAYLIST, "playlist of {} bytes", head.length);
            body = std::mem::take(&mut self.buf);
            while body.len() < head.length {
                let n = s.read_buf(&mut body).await?;
                anyhow::ensure!(n > 0, "closed in the body");
            }
            body.truncate(head.length);
        } else {
            let mut left = head.length.saturating_sub(self.buf.len());
            while left > 0 {
                left -= discard(s, left).await?;
            }
        }
        self.buf.clear();
        if head.close {
            self.socket = None;
        }
        Ok((head.status, head.length, body))
    }
}

fn parse_head(head: &[u8]) -> anyhow::Result<Head> {
    let text = std::str::from_utf8(head).context("response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default().split(' ').nth(1).unwrap_or_default().parse()?;
    let (mut length, mut close, mut chunked) = (None, false, false);
    for line in lines {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.parse()?);
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.eq_ignore_ascii_case("chunked");
        }
    }
    anyhow::ensure!(!chunked, "chunked answers are not read (every server measured sends Content-Length)");
    Ok(Head { status, length: length.unwrap_or(0), close })
}

/// Drop up to `max` bytes of the body from the socket without copying them; returns how many.
async fn discard(socket: &TcpStream, max: usize) -> anyhow::Result<usize> {
    loop {
        socket.readable().await?;
        let r = socket.try_io(Interest::READABLE, || crate::players::recv_discard(socket, max.min(1 << 20)));
        match r {
            Ok(0) => bail!("closed in the body"),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// What every viewer of a run shares.
pub struct Shared {
    /// The media playlist.
    pub target: HttpTarget,
    /// `--ll-hls`.
    pub low_latency: bool,
    /// `--hls-reload-only`: only the playlist requests (blocking ones with `--ll-hls`), no media.
    pub reload_only: bool,
    /// When segments appeared.
    pub edge: Edge,
    /// Set at the end of the run.
    pub stop: AtomicBool,
}

/// One viewer, until `shared.stop`; errors are counted, and it reconnects after a second.
pub async fn viewer(shared: Arc<Shared>, stats: Arc<ViewerStats>) {
    let mut conn = Conn::new(shared.target.clone());
    let mut cursor = Cursor::default();
    while !shared.stop.load(Ordering::Relaxed) {
        if let Err(e) = play(&shared, &stats, &mut conn, &mut cursor).await {
            stats.fail(&e);
            stats.state.store(state::FAILED, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn play(shared: &Shared, stats: &ViewerStats, conn: &mut Conn, cursor: &mut Cursor) -> anyhow::Result<()> {
    let base = shared.target.path.clone();
    let mut last_text = Vec::new();
    // The part a blocking request waits for: (when its media ends, ms since the epoch).
    let mut waited_for: Option<(u64, u32)> = None;
    let mut reload_at = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        let blocking = shared.low_latency && cursor.next.is_some();
        let path = match cursor.blocking_query().filter(|_| blocking) {
            Some(q) => {
                waited_for = cursor.next;
                format!("{}?{q}", base.split('?').next().unwrap_or_default())
            }
            None => base.clone(),
        };
        let started = Instant::now();
        let (status, _, text) = conn.get(&path, true).await?;
        stats.requests.fetch_add(1, Ordering::Relaxed);
        anyhow::ensure!(status == 200, "playlist answered {status}");
        let answered_ms = now_ms();
        let pl = Playlist::parse(&String::from_utf8_lossy(&text))?;
        stats.state.store(state::PLAYING, Ordering::Relaxed);
        shared.edge.saw(&pl);
        if let Some((msn, idx)) = waited_for.take() {
            let end = pl.parts.iter().find(|p| p.msn == msn && p.index == idx).and_then(|p| p.end_ms);
            if let Some(end) = end {
                let mut d = stats.delays_us.lock().unwrap();
                if d.len() < MAX_DELAYS {
                    d.push(((answered_ms - end).max(0.0) * 1000.0) as u32);
                }
            }
        }
        if shared.low_latency && cursor.next.is_none() && !pl.can_block_reload {
            bail!("--ll-hls: the playlist has no CAN-BLOCK-RELOAD=YES");
        }
        let changed = text != last_text;
        last_text = text;
        let fetches = cursor.plan(&pl, shared.low_latency);
        stats.max_lag.fetch_max(cursor.lag(&pl), Ordering::Relaxed);
        for f in fetches.into_iter().filter(|_| !shared.reload_only) {
            let (status, len, _) = conn.get(&resolve(&base, f.uri()), false).await?;
            stats.requests.fetch_add(1, Ordering::Relaxed);
            anyhow::ensure!(status == 200, "{} answered {status}", f.uri());
            stats.add_bytes(f.msn(), len as u64);
        }
        if pl.ended {
            bail!("the playlist ended");
        }
        if shared.low_latency {
            continue;
        }
        // hls.js: reload a target duration after the previous load, half of it when unchanged.
        let every = Duration::from_secs_f64(pl.target_duration * if changed { 1.0 } else { 0.5 });
        reload_at = reload_at.max(started) + every;
        tokio::time::sleep_until(reload_at.max(Instant::now()).into()).await;
    }
    Ok(())
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0
}

/// HLS figures of one step.
#[derive(Debug, Default, Clone, Serialize)]
pub struct HlsStep {
    /// Blocking reloads (`--ll-hls`) or plain ones.
    pub low_latency: bool,
    /// `--hls-reload-only`: no media fetched.
    pub reload_only: bool,
    /// Segments the step judged (first listed between its start and two target durations
    /// before its end).
    pub segments: usize,
    /// Their media duration (`#EXTINF`), seconds: about `judged_secs` when the server kept
    /// ingesting and segmenting in real time.
    pub media_secs: f64,
    /// The time they were judged over (from the step's start to two target durations before its
    /// end), seconds.
    pub judged_secs: f64,
    /// Their bit rate (bytes over media duration), Mbit/s: what the publisher sends plus the
    /// container's overhead when the server segmented the whole stream.
    pub media_mbps: f64,
    /// Their bytes (each the most any viewer downloaded of it).
    pub segment_bytes: u64,
    /// HTTP requests answered per second, all viewers.
    pub requests_per_sec: f64,
    /// Failed requests in the step.
    pub errors: u64,
    /// Viewers that were more than [`MAX_LAG_SEGMENTS`] behind the live edge at some reload.
    pub fell_behind: usize,
    /// Blocking reload answer delay (answer time minus the part's end on the wall clock), ms.
    pub answer_delay_ms: crate::report::Latency,
    /// Blocking reloads measured.
    pub answers: usize,
    /// Server threads (`Threads:` in /proc/PID/status) at the end of the step.
    pub server_threads: Option<u64>,
}

/// The verdict of one step for `viewers`: (kept up, figures).
/// With `reload_only` the bytes are not judged (none are fetched): a viewer then kept up when its
/// reloads never left it more than one segment behind and none failed.
pub fn judge(
    viewers: &[Arc<ViewerStats>],
    edge: &Edge,
    from: Instant,
    to: Instant,
    reload_only: bool,
) -> (usize, HlsStep) {
    let (msns, media_secs) = edge.listed_between(from, to);
    let sizes: Vec<u64> = msns.iter().map(|&m| viewers.iter().map(|v| v.bytes_of(m)).max().unwrap_or(0)).collect();
    let total: u64 = sizes.iter().sum();
    let mut fell_behind = 0;
    let kept_up = viewers
        .iter()
        .filter(|v| {
            let got: u64 = msns.iter().map(|&m| v.bytes_of(m)).sum();
            let behind = v.max_lag.load(Ordering::Relaxed) > MAX_LAG_SEGMENTS;
            fell_behind += usize::from(behind);
            let bytes_ok = reload_only || (total > 0 && got as f64 >= total as f64 * KEEP_UP_SHARE);
            bytes_ok && !behind
        })
        .count();
    let mut delays: Vec<f64> = viewers
        .iter()
        .flat_map(|v| v.delays_us.lock().unwrap().iter().map(|&d| d as f64 / 1000.0).collect::<Vec<_>>())
        .collect();
    delays.sort_by(f64::total_cmp);
    let step = HlsStep {
        segments: msns.len(),
        media_secs,
        media_mbps: if media_secs > 0.0 { total as f64 * 8.0 / media_secs / 1e6 } else { 0.0 },
        judged_secs: to.saturating_duration_since(from).as_secs_f64(),
        segment_bytes: total,
        fell_behind,
        answer_delay_ms: crate::report::Latency::of(&delays),
        answers: delays.len(),
        ..HlsStep::default()
    };
    (kept_up, step)
}

/// A step's verdict: 99 % of its `viewers` kept up, and the server kept the stream whole and in
/// real time (see [`MIN_MEDIA_SHARE`], [`MIN_RATE_SHARE`]; no bytes to judge with reloads only).
pub fn passes(kept_up: usize, viewers: usize, hls: &HlsStep, publish_mbps: f64) -> bool {
    kept_up as f64 >= viewers as f64 * crate::report::PASS_SHARE
        && hls.media_secs >= hls.judged_secs * MIN_MEDIA_SHARE
        && (hls.reload_only || hls.media_mbps >= publish_mbps * MIN_RATE_SHARE)
}

/// Start a step's measurement: forget lags and delays so far.
pub fn reset(viewers: &[Arc<ViewerStats>]) {
    for v in viewers {
        v.max_lag.store(0, Ordering::Relaxed);
        v.delays_us.lock().unwrap().clear();
    }
}

/// `Threads:` of /proc/PID/status.
pub fn threads(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

/// What an HLS ramp needs of the command line.
pub struct RampOptions {
    /// `--hls URL`: the media playlist.
    pub target: HttpTarget,
    /// `--ll-hls`.
    pub low_latency: bool,
    /// `--hls-reload-only`.
    pub reload_only: bool,
    /// Viewer counts, one per step.
    pub steps: Vec<usize>,
    /// Seconds each step is measured.
    pub step_secs: u64,
    /// Seconds over which a step's new viewers connect.
    pub join_secs: f64,
    /// `--server-pid`.
    pub server_pid: Option<String>,
    /// Name in the report.
    pub label: String,
}

/// Add viewers step by step until a step fails: a step passes when 99 % of its viewers kept up.
/// `publisher_error` says whether the publisher failed (a failed publisher ends the run).
pub async fn ramp(
    o: &RampOptions,
    publisher_error: impl Fn() -> Option<String>,
    published: impl Fn() -> u64,
) -> anyhow::Result<Report> {
    let shared = Arc::new(Shared {
        target: o.target.clone(),
        low_latency: o.low_latency,
        reload_only: o.reload_only,
        edge: Edge::default(),
        stop: AtomicBool::new(false),
    });
    wait_for_playlist(&o.target).await?;
    let mut report = Report { label: o.label.clone(), ..Report::default() };
    let mut viewers: Vec<Arc<ViewerStats>> = Vec::new();
    for &n in &o.steps {
        let new = n.saturating_sub(viewers.len());
        let gap = Duration::from_secs_f64(o.join_secs / new.max(1) as f64);
        let join_start = Instant::now();
        for i in 0..new {
            let stats = Arc::new(ViewerStats::default());
            tokio::spawn(viewer(shared.clone(), stats.clone()));
            viewers.push(stats);
            tokio::time::sleep_until((join_start + gap * (i as u32 + 1)).into()).await;
        }
        eprintln!("joined {new} HLS viewers ({} in all) in {:.1} s", viewers.len(), join_start.elapsed().as_secs_f64());
        // Let the newest start: a playlist and their first segment.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let step = measure(o, &shared, &viewers, &published).await;
        if let Some(e) = publisher_error() {
            shared.stop.store(true, Ordering::Relaxed);
            bail!("publisher: {e}");
        }
        if !report.record_step(n, "playing", step) {
            break;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    for e in viewers.iter().filter_map(|v| v.error.lock().unwrap().clone()).take(3) {
        eprintln!("  viewer error: {e}");
    }
    Ok(report)
}

/// The playlist is there (the publisher's first segment is done), or an error after 30 s.
async fn wait_for_playlist(target: &HttpTarget) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = Conn::new(target.clone());
    loop {
        let last = match conn.get(&target.path, true).await {
            Ok((200, _, text)) => match Playlist::parse(&String::from_utf8_lossy(&text)) {
                Ok(pl) if !pl.segments.is_empty() => return Ok(()),
                Ok(_) => "no segment yet".to_owned(),
                Err(e) => e.to_string(),
            },
            Ok((status, _, _)) => format!("answered {status}"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!("no playlist with a segment at {} within 30 s: {last}", target.path);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn measure(o: &RampOptions, shared: &Shared, viewers: &[Arc<ViewerStats>], published: impl Fn() -> u64) -> Step {
    let published0 = published();
    reset(viewers);
    let errors_at_start: Vec<u64> = viewers.iter().map(|v| v.errors.load(Ordering::Relaxed)).collect();
    let errors0: u64 = viewers.iter().map(|v| v.errors.load(Ordering::Relaxed)).sum();
    let requests0: u64 = viewers.iter().map(|v| v.requests.load(Ordering::Relaxed)).sum();
    let bytes0: u64 = viewers.iter().map(|v| v.bytes.load(Ordering::Relaxed)).sum();
    let mut server_cpu = o.server_pid.as_deref().map(CpuMeter::new);
    let mut tool_cpu = CpuMeter::new("self");
    let from = Instant::now();
    for sec in (5..=o.step_secs).step_by(5) {
        tokio::time::sleep_until((from + Duration::from_secs(sec)).into()).await;
        let playing = viewers.iter().filter(|v| v.state.load(Ordering::Relaxed) == state::PLAYING).count();
        eprintln!("  {sec}s: {playing}/{} playing", viewers.len());
    }
    tokio::time::sleep_until((from + Duration::from_secs(o.step_secs)).into()).await;
    let secs = from.elapsed().as_secs_f64();
    let publish_mbps = published().saturating_sub(published0) as f64 * 8.0 / secs / 1e6;
    let server_cpu_pct = server_cpu.as_mut().and_then(CpuMeter::lap);
    let tool_cpu_pct = tool_cpu.lap();
    // Segments listed in the last two target durations may still be on their way.
    let target = shared.edge.target_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    let judged_to = Instant::now() - Duration::from_secs_f64((2.0 * target).min(secs / 2.0));
    let errors_of: Vec<u64> = viewers.iter().map(|v| v.errors.load(Ordering::Relaxed)).collect();
    let (mut kept_up, mut hls) = judge(viewers, &shared.edge, from, judged_to, o.reload_only);
    if o.reload_only {
        // No media to miss: a viewer whose reload failed in the step did not keep up.
        let failed = errors_of.iter().zip(&errors_at_start).filter(|(now, then)| now > then).count();
        kept_up = kept_up.saturating_sub(failed);
    }
    hls.low_latency = o.low_latency;
    hls.reload_only = o.reload_only;
    hls.errors = viewers.iter().map(|v| v.errors.load(Ordering::Relaxed)).sum::<u64>() - errors0;
    let requests: u64 = viewers.iter().map(|v| v.requests.load(Ordering::Relaxed)).sum();
    hls.requests_per_sec = (requests - requests0) as f64 / secs;
    hls.server_threads = o.server_pid.as_deref().and_then(threads);
    let bytes: u64 = viewers.iter().map(|v| v.bytes.load(Ordering::Relaxed)).sum();
    let n = viewers.len();
    Step {
        players: n,
        connected: viewers.iter().filter(|v| v.state.load(Ordering::Relaxed) == state::PLAYING).count(),
        failed: viewers.iter().filter(|v| v.state.load(Ordering::Relaxed) == state::FAILED).count(),
        kept_up,
        passed: passes(kept_up, n, &hls, publish_mbps),
        publish_mbps,
        player_mbps: (bytes - bytes0) as f64 * 8.0 / secs / 1e6 / n.max(1) as f64,
        server_cpu_pct,
        server_rss_kb: o.server_pid.as_deref().and_then(rss_kib),
        tool_cpu_pct,
        hls: Some(hls),
        ..Step::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
        #EXTINF:2.000,\ns-7.ts\n#EXTINF:2.000,\ns-8.ts\n#EXTINF:2.000,\ns-9.ts\n";

    const LL: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600\n\
        #EXT-X-PART-INF:PART-TARGET=0.200\n#EXT-X-MEDIA-SEQUENCE:3\n\
        #EXT-X-PROGRAM-DATE-TIME:2026-12-07T00:51:01.000Z\n#EXTINF:2.000,\nb-3.ts\n\
        #EXT-X-PROGRAM-DATE-TIME:2026-12-07T00:51:03.000Z\n\
        #EXT-X-PART:DURATION=1.000,URI=\"b-4.0.ts\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=1.000,URI=\"b-4.1.ts\"\n#EXTINF:2.000,\nb-4.ts\n\
        #EXT-X-PART:DURATION=0.200,URI=\"b-5.0.ts\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.200,URI=\"b-5.1.ts\"\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"b-5.2.ts\"\n";

    #[test]
    fn live_playlists_give_the_live_edge_and_then_only_new_segments() {
        let pl = Playlist::parse(LIVE).unwrap();
        assert_eq!((pl.target_duration, pl.newest_msn(), pl.can_block_reload), (2.0, Some(9), false));
        let mut c = Cursor::default();
        assert_eq!(c.plan(&pl, false), [Fetch::Segment { msn: 9, uri: "s-9.ts".into() }], "starts at the edge");
        assert!(c.plan(&pl, false).is_empty(), "nothing new");
        let next = Playlist::parse(&format!("{LIVE}#EXTINF:2.0,\ns-10.ts\n#EXTINF:2.0,\ns-11.ts\n")).unwrap();
        assert_eq!(c.lag(&next), 1, "fetching 10 while 11 is listed");
        let f: Vec<u64> = c.plan(&next, false).iter().map(Fetch::msn).collect();
        assert_eq!(f, [10, 11], "every new segment, in order");
        assert_eq!(c.lag(&next), 0);
    }

    #[test]
    fn a_viewer_left_behind_the_window_goes_on_at_its_oldest_segment() {
        let pl = Playlist::parse(LIVE).unwrap();
        let mut c = Cursor { next: Some((2, 0)) };
        assert_eq!(c.lag(&pl), 7);
        let f: Vec<u64> = c.plan(&pl, false).iter().map(Fetch::msn).collect();
        assert_eq!(f, [7, 8, 9]);
    }

    #[test]
    fn low_latency_playlists_give_parts_with_wall_clock_ends_and_the_next_blocking_request() {
        let pl = Playlist::parse(LL).unwrap();
        assert!(pl.can_block_reload);
        assert_eq!(pl.newest_msn(), Some(5), "the open segment is the edge");
        assert_eq!(pl.parts.len(), 4);
        let start = parse_date_time_ms("2026-12-07T00:51:03.000Z").unwrap();
        assert_eq!(pl.parts[1].end_ms, Some(start + 2000.0));
        assert_eq!((pl.parts[3].msn, pl.parts[3].index), (5, 1));
        assert_eq!(pl.parts[3].end_ms, Some(start + 2400.0), "dated from the previous segment's end");
        let mut c = Cursor::default();
        assert_eq!(c.plan(&pl, true), [Fetch::Part { msn: 5, uri: "b-5.1.ts".into() }], "starts at the newest part");
        assert_eq!(c.blocking_query().as_deref(), Some("_HLS_msn=5&_HLS_part=2"));
        // Segment 5 closes with no more parts: the next request is segment 6's first part.
        let closed = Playlist::parse(&format!(
            "{}#EXTINF:0.4,\nb-5.ts\n",
            LL.replace("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"b-5.2.ts\"\n", "")
        ))
        .unwrap();
        assert!(c.plan(&closed, true).is_empty());
        assert_eq!(c.blocking_query().as_deref(), Some("_HLS_msn=6&_HLS_part=0"));
    }

    #[test]
    fn a_low_latency_viewer_behind_the_parts_fetches_whole_segments() {
        let pl = Playlist::parse(LL).unwrap();
        let mut c = Cursor { next: Some((3, 0)) };
        let f = c.plan(&pl, true);
        assert_eq!(f[0], Fetch::Segment { msn: 3, uri: "b-3.ts".into() });
        assert_eq!(
            f.iter().skip(1).map(Fetch::uri).collect::<Vec<_>>(),
            ["b-4.0.ts", "b-4.1.ts", "b-5.0.ts", "b-5.1.ts"]
        );
        assert_eq!(c.next, Some((5, 2)));
    }

    #[test]
    fn uris_resolve_against_the_playlist() {
        assert_eq!(resolve("/hls/b.m3u8", "b-1.ts"), "/hls/b-1.ts");
        assert_eq!(resolve("/hls/b.m3u8?x=1", "b-1.ts"), "/hls/b-1.ts");
        assert_eq!(resolve("/hls/b/index.m3u8", "/other/1.ts"), "/other/1.ts");
        assert_eq!(resolve("/hls/b.m3u8", "http://h:1/x/1.ts"), "/x/1.ts");
    }

    #[test]
    fn date_times_and_bad_playlists() {
        assert_eq!(parse_date_time_ms("1970-01-02T00:00:01.5Z"), Some(86_401_500.0));
        assert_eq!(parse_date_time_ms("2000-03-01T00:00:00Z"), Some(951_868_800_000.0));
        assert_eq!(Playlist::parse("nope"), Err(PlaylistError::NotM3u8));
        assert_eq!(
            Playlist::parse("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n"),
            Err(PlaylistError::NoTargetDuration)
        );
    }

    #[test]
    fn a_step_fails_when_the_server_stalls_or_drops_frames_even_if_viewers_kept_up() {
        let whole = HlsStep { media_secs: 16.0, judged_secs: 16.0, media_mbps: 2.6, ..HlsStep::default() };
        assert!(passes(100, 100, &whole, 2.5));
        assert!(passes(99, 100, &whole, 2.5));
        assert!(!passes(98, 100, &whole, 2.5));
        let stalled = HlsStep { media_secs: 10.0, ..whole.clone() };
        assert!(!passes(100, 100, &stalled, 2.5), "segments came slower than real time");
        let dropped = HlsStep { media_mbps: 2.0, ..whole.clone() };
        assert!(!passes(100, 100, &dropped, 2.5), "segments lost frames");
        let reloads = HlsStep { media_mbps: 0.0, reload_only: true, ..whole };
        assert!(passes(100, 100, &reloads, 2.5), "no media fetched: the rate is not judged");
    }

    #[test]
    fn response_heads() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close").unwrap();
        assert_eq!((h.status, h.length, h.close), (200, 12, true));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked").is_err());
    }

    #[test]
    fn keep_up_needs_the_bytes_of_the_steps_segments_and_no_lag() {
        let edge = Edge::default();
        let from = Instant::now();
        edge.saw(&Playlist::parse(LIVE).unwrap());
        let to = Instant::now();
        let good = Arc::new(ViewerStats::default());
        let short = Arc::new(ViewerStats::default());
        let late = Arc::new(ViewerStats::default());
        for m in 7..=9 {
            good.add_bytes(m, 1000);
            late.add_bytes(m, 1000);
            short.add_bytes(m, if m == 9 { 800 } else { 1000 });
        }
        late.max_lag.store(2, Ordering::Relaxed);
        let (kept, step) = judge(&[good.clone(), short.clone(), late.clone()], &edge, from, to, false);
        assert_eq!((kept, step.segments, step.segment_bytes, step.fell_behind), (1, 3, 3000, 1));
        assert_eq!(step.media_secs, 6.0, "the segments' durations");
        let (kept, _) = judge(&[good, short, late], &edge, from, to, true);
        assert_eq!(kept, 2, "reload only: the bytes are not judged, the lag is");
    }
}

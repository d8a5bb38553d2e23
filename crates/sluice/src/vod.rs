//! Video on demand (`play`): FLV and MP4 files played to one RTMP player each, paced in real
//! time. A file is a per-player source: the connection asks [`crate::streams::Streams::play_file`]
//! and gets a [`Playback`], whose frames it writes as it writes a live player's.
//!
//! - Names map to files as in nginx-rtmp (`ngx_rtmp_play_module.c`): `NAME` plays `NAME.flv`,
//!   `mp4:NAME` and `NAME.mp4` play `NAME.mp4` (`flv:NAME` and `NAME.flv` play `NAME.flv`),
//!   looked for in each `play` location in order. The name is checked by
//!   [`crate::untrusted::vod_name`] and the path built from its segments under the location.
//! - Files are indexed once ([`media::Media`], in a blocking task) and shared: every player
//!   of a file holds the same [`Opened`] (one open file, one index) while any plays it.
//! - `http://` locations: the file is downloaded into `play_temp_path` first (kept under
//!   `play_local_path` when set, deleted after playing otherwise), see [`fetch`].
//! - Pacing ([`Playback`]): a task per player reads the samples due (real time from the play
//!   start, plus the client's buffer length, capped at [`MAX_AHEAD`]) in batches of at most
//!   [`READ_BATCH`] bytes, and hands them over a channel of [`QUEUE`] frames, so a player
//!   holds a bounded amount of the file in memory whatever its client does.

mod fetch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use media::{Kind, Media, ReadAt, Tracks};

use crate::file_at::FileAt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::{PlayConf, PlayLocation};
use crate::hub::Frame;
use crate::untrusted::{self, NameError};

/// Frames queued between a player's pacing task and its connection.
const QUEUE: usize = 64;
/// Most bytes read from the file in one go for a player.
const READ_BATCH: usize = 512 * 1024;
/// Largest sample sent (a frame bigger than this is skipped): RTMP's own message limit.
const MAX_SAMPLE: u32 = 0xFF_FFFF;
/// The buffer length assumed until the client sends its own (nginx-rtmp's `buflen` default).
const DEFAULT_BUFFER: Duration = Duration::from_millis(1000);
/// Most a player is sent ahead of real time, whatever buffer it asks for (rtmpdump asks for
/// ten hours): bounds what a client can make the server read at once.
pub const MAX_AHEAD: Duration = Duration::from_secs(10);
/// How much a player is sent at each wake-up, beyond what is due.
const TICK: Duration = Duration::from_millis(100);
/// Files kept indexed ([`Library`]'s table; forgotten when nobody plays them).
const MAX_OPEN_FILES: usize = 1024;

/// Why a name plays nothing.
#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    /// The name could leave the directory, or is not a name.
    #[error("bad file name: {0}")]
    BadName(#[from] NameError),
    /// No location has the file (or could play it).
    #[error("Video on demand stream not found")]
    NotFound,
}

/// A file being played: open once, indexed once, shared by its players.
pub struct Opened {
    path: PathBuf,
    file: std::fs::File,
    /// The file's index.
    pub media: Media,
    /// Deleted when the last player leaves (a download into `play_temp_path`).
    temp: bool,
}

impl Drop for Opened {
    fn drop(&mut self) {
        if self.temp {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A file's modification time and length when it was indexed, and its players' [`Opened`].
type SharedFile = (SystemTime, u64, Weak<Opened>);

/// Files indexed at once: players of a file not indexed yet wait for a turn, and then mostly
/// find it indexed by the first (a crowd joining a cold file indexes it once).
const INDEXING: usize = 4;

/// The files being played, by path: a second player of a file shares the first one's index.
pub struct Library {
    /// By path and the tracks chosen (`?aindex=&vindex=` index the file apart).
    open: Mutex<HashMap<(PathBuf, Tracks), SharedFile>>,
    indexing: tokio::sync::Semaphore,
    http: fetch::Http,
}

impl Default for Library {
    fn default() -> Self {
        Library {
            open: Mutex::default(),
            indexing: tokio::sync::Semaphore::new(INDEXING),
            http: fetch::Http::default(),
        }
    }
}

/// What the name asks for: its path segments and the suffix the file has.
fn map_name(name: &str) -> Result<(Vec<&str>, &'static str), NameError> {
    const FORMATS: [(&str, &str); 2] = [("flv:", ".flv"), ("mp4:", ".mp4")];
    let lower = name.to_ascii_lowercase();
    let (mut rest, mut suffix, mut has_suffix) = (name, ".flv", false);
    for (prefix, sfx) in FORMATS {
        if lower.starts_with(prefix) {
            rest = &name[prefix.len()..];
            suffix = sfx;
            break;
        }
        if lower.ends_with(sfx) {
            suffix = sfx;
        }
    }
    if rest.to_ascii_lowercase().ends_with(suffix) {
        has_suffix = true;
    }
    let segments = untrusted::vod_name(rest)?;
    Ok((segments, if has_suffix { "" } else { suffix }))
}

/// The MP4 tracks the play's query string chooses: nginx-rtmp's `aindex=N` and `vindex=N`
/// (0-based; not a number from 0 to 255: not chosen).
fn chosen_tracks(args: &str) -> Tracks {
    let mut tracks = Tracks::default();
    for (key, value) in args.split('&').filter_map(|kv| kv.split_once('=')) {
        match key {
            "aindex" => tracks.audio = value.parse().ok(),
            "vindex" => tracks.video = value.parse().ok(),
            _ => {}
        }
    }
    tracks
}

/// Who asks, for a fetch's `addr=` and `ARGS`.
pub struct Asker<'a> {
    /// The client's address.
    pub addr: std::net::IpAddr,
    /// The play query string.
    pub args: &'a str,
}

impl Library {
    /// The file `name` names in `conf`'s locations, tried in order, opened and indexed.
    pub async fn find(&self, conf: &PlayConf, name: &str, asker: &Asker<'_>) -> Result<Arc<Opened>, PlayError> {
        let (segments, suffix) = map_name(name)?;
        let mut relative = segments.join("/");
        relative.push_str(suffix);
        let tracks = chosen_tracks(asker.args);
        for location in &conf.locations {
            let found = match location {
                PlayLocation::Dir(dir) => self.open_local(&dir.join(&relative), tracks).await,
                PlayLocation::Http(url) => {
                    match self.http.fetch(url, &relative, asker, &conf.temp_path, conf.local_path.as_deref()).await {
                        Ok((path, temp)) => open_file(path, temp, tracks).await.map(Arc::new),
                        Err(e) => Err(e),
                    }
                }
            };
            match found {
                Ok(opened) => {
                    tracing::debug!(file = %opened.path.display(), format = ?opened.media.format, codecs = %opened.media.describe(), "vod: file opened");
                    return Ok(opened);
                }
                Err(e) => {
                    tracing::debug!(location = ?location, name = %untrusted::for_log(&relative), "vod: not played from here: {e}")
                }
            }
        }
        Err(PlayError::NotFound)
    }

    /// The file `name` names in `conf`'s directories (no `http://` location is asked: nothing
    /// is downloaded for a question), opened and indexed: `getStreamLength`'s answer.
    pub async fn find_local(&self, conf: &PlayConf, name: &str) -> Option<Arc<Opened>> {
        let (segments, suffix) = map_name(name).ok()?;
        let relative = format!("{}{suffix}", segments.join("/"));
        for location in &conf.locations {
            if let PlayLocation::Dir(dir) = location {
                if let Ok(opened) = self.open_local(&dir.join(&relative), Tracks::default()).await {
                    return Some(opened);
                }
            }
        }
        None
    }

    /// A local file, shared with its other players when it has not changed since.
    async fn open_local(&self, path: &Path, tracks: Tracks) -> Result<Arc<Opened>, String> {
        let meta = tokio::fs::metadata(path).await.map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a file".into());
        }
        let stamp = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
        let key = (path.to_path_buf(), tracks);
        if let Some(shared) = self.shared(&key, stamp) {
            return Ok(shared);
        }
        let _turn = self.indexing.acquire().await.map_err(|e| e.to_string())?;
        let key = (path.to_path_buf(), tracks);
        if let Some(shared) = self.shared(&key, stamp) {
            return Ok(shared);
        }
        let opened = Arc::new(open_file(path.to_path_buf(), false, tracks).await?);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= MAX_OPEN_FILES {
            open.retain(|_, (_, _, w)| w.strong_count() > 0);
        }
        if open.len() < MAX_OPEN_FILES {
            open.insert(key, (stamp.0, stamp.1, Arc::downgrade(&opened)));
        }
        Ok(opened)
    }

    fn shared(&self, key: &(PathBuf, Tracks), (mtime, len): (SystemTime, u64)) -> Option<Arc<Opened>> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (t, l, weak) = open.get(key)?;
        (*t == mtime && *l == len).then(|| weak.upgrade()).flatten()
    }
}

/// Open and index `path` (blocking work, off the runtime's threads).
async fn open_file(path: PathBuf, temp: bool, tracks: Tracks) -> Result<Opened, String> {
    let task = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let media = Media::open_tracks(&mut FileAt { file: &file, len }, tracks).map_err(|e| e.to_string());
        match media {
            Ok(media) => Ok(Opened { path, file, media, temp }),
            Err(e) => {
                if temp {
                    let _ = std::fs::remove_file(&path);
                }
                Err(e)
            }
        }
    });
    task.await.map_err(|e| e.to_string())?
}

/// What a player gets from its [`Playback`].
pub enum Out {
    /// A frame to send.
    Frame(Frame),
    /// A seek was done: the frames that follow start at the keyframe before the time asked.
    /// (Carries the task's count of seeks, so frames read before the last seek are dropped.)
    Seeked(u64),
    /// The file (or the duration asked) ended.
    End,
}

/// What the connection asks of the pacing task; the latest wins.
#[derive(Debug, Clone, Copy, Default)]
struct Control {
    paused: bool,
    /// Seek requests, counted, and the last one's time (ms).
    seeks: u64,
    seek_to: u64,
    buffer: Option<Duration>,
}

/// One player's playback of a file: frames paced in real time. Dropping it stops the task.
pub struct Playback {
    frames: mpsc::Receiver<Out>,
    control: watch::Sender<Control>,
    /// Seeks asked, and the last one the task has answered.
    asked: u64,
    answered: u64,
    /// The file's duration, for logs and `getStreamLength`.
    pub duration_ms: u64,
    /// What the modules' `on_play` gave this player (`exec_play_done` runs when dropped).
    guards: Vec<crate::modules::PlayGuard>,
}

impl Playback {
    /// Play `opened` from `start_ms` for `duration_ms` (0: to the end), nginx-rtmp's `play`
    /// start and duration arguments.
    pub fn start(opened: Arc<Opened>, start_ms: u64, duration_ms: u64) -> Playback {
        let (tx, frames) = mpsc::channel(QUEUE);
        let (control, rx) = watch::channel(Control::default());
        let total = opened.media.duration_ms;
        let end = (duration_ms > 0).then(|| start_ms.saturating_add(duration_ms));
        tokio::spawn(pace(opened, start_ms, end, tx, rx));
        Playback { frames, control, asked: 0, answered: 0, duration_ms: total, guards: Vec::new() }
    }

    /// The next thing to send; `None` once the task is gone.
    pub async fn next(&mut self) -> Option<Out> {
        loop {
            match self.frames.recv().await? {
                Out::Seeked(n) => {
                    self.answered = n;
                    if n == self.asked {
                        return Some(Out::Seeked(n));
                    }
                }
                // Read before the last seek: not sent.
                _ if self.answered < self.asked => {}
                out => return Some(out),
            }
        }
    }

    /// Keep `guard` while this playback lasts (a module's "player left" part).
    pub fn hold(&mut self, guard: crate::modules::PlayGuard) {
        self.guards.push(guard);
    }

    /// Play from the keyframe at or before `ms`.
    pub fn seek(&mut self, ms: u64) {
        self.asked += 1;
        self.control.send_modify(|c| {
            c.seeks += 1;
            c.seek_to = ms;
        });
    }

    /// Pause or resume.
    pub fn pause(&mut self, paused: bool) {
        self.control.send_modify(|c| c.paused = paused);
    }

    /// The client's buffer length.
    pub fn buffer(&mut self, millis: u32) {
        let ahead = Duration::from_millis(u64::from(millis)).min(MAX_AHEAD);
        self.control.send_if_modified(|c| {
            let changed = c.buffer != Some(ahead);
            c.buffer = Some(ahead);
            changed
        });
    }
}

/// The headers every player gets first, as frames at `ts`; after a seek (`again`) only the
/// sequence headers (a second `onMetaData` reads to ffmpeg as a new data stream).
fn header_frames(media: &Media, ts: u32, again: bool) -> Vec<Frame> {
    let headers = media.headers.iter().filter(|(kind, _)| !(again && *kind == Kind::Data));
    headers.filter_map(|(kind, body)| frame(*kind, ts, body.clone())).collect()
}

fn frame(kind: Kind, ts: u32, payload: Bytes) -> Option<Frame> {
    match kind {
        Kind::Video => Frame::video(ts, payload),
        Kind::Audio => Some(Frame::audio(ts, payload)),
        Kind::Data => Some(Frame::data(ts, payload, false)),
    }
}

/// The pacing task of one player: sends the samples of `opened` from `start_ms` on, each when
/// its time comes (less the buffer), until `end_ms` or the end of the file.
async fn pace(
    opened: Arc<Opened>,
    start_ms: u64,
    end_ms: Option<u64>,
    tx: mpsc::Sender<Out>,
    mut control: watch::Receiver<Control>,
) {
    let media = &opened.media;
    let mut pos = media.seek(start_ms);
    // On the samples' timeline, as `seek` counts.
    let end_ms = end_ms.map(|end| end.saturating_add(media.start_ms));
    let mut seen = Control::default();
    // Where the clock stands: at `clock.0`, the sample time `clock.1` is due.
    let first_ts = media.samples.get(pos).map_or(0, |s| s.dts);
    let mut clock = (Instant::now(), u64::from(first_ts));
    for f in header_frames(media, first_ts, false) {
        if tx.send(Out::Frame(f)).await.is_err() {
            return;
        }
    }
    let mut ended = false;
    loop {
        let now = control.borrow_and_update().to_owned();
        if now.seeks != seen.seeks {
            pos = media.seek(now.seek_to);
            let ts = media.samples.get(pos).map_or(0, |s| s.dts);
            clock = (Instant::now(), u64::from(ts));
            ended = false;
            let mut out = vec![Out::Seeked(now.seeks)];
            out.extend(header_frames(media, ts, true).into_iter().map(Out::Frame));
            for o in out {
                if tx.send(o).await.is_err() {
                    return;
                }
            }
        }
        if now.paused != seen.paused && !now.paused {
            // Resume where the pause left off, not where the clock would be.
            let ts = media.samples.get(pos).map_or(0, |s| s.dts);
            clock = (Instant::now(), u64::from(ts));
        }
        seen = now;
        let done = pos >= media.samples.len() || end_ms.is_some_and(|end| u64::from(media.samples[pos].dts) >= end);
        if done && !ended {
            ended = true;
            if tx.send(Out::End).await.is_err() {
                return;
            }
        }
        if now.paused || done {
            if control.changed().await.is_err() {
                return;
            }
            continue;
        }
        let ahead = now.buffer.unwrap_or(DEFAULT_BUFFER);
        let sample_ts = u64::from(media.samples[pos].dts);
        let due = clock.0 + Duration::from_millis(sample_ts.saturating_sub(clock.1)).saturating_sub(ahead);
        if due > Instant::now() {
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                changed = control.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
            }
        }
        // Everything due by now (plus the buffer) and within the next tick, up to a batch: a
        // player wakes about once a tick, not once a frame.
        let horizon = clock.1 + (Instant::now() + ahead + TICK).saturating_duration_since(clock.0).as_millis() as u64;
        let batch = due_batch(media, pos, horizon, end_ms);
        let read = read_batch(opened.clone(), pos, batch).await;
        pos += batch;
        for f in read {
            if tx.send(Out::Frame(f)).await.is_err() {
                return;
            }
        }
    }
}

/// How many samples from `pos` are due by `horizon` (ms), at least one, within a read batch.
fn due_batch(media: &Media, pos: usize, horizon: u64, end_ms: Option<u64>) -> usize {
    let mut bytes = 0usize;
    let mut n = 0;
    for s in &media.samples[pos..] {
        let t = u64::from(s.dts);
        if n > 0 && (t > horizon || bytes + s.size as usize > READ_BATCH || n >= QUEUE) {
            break;
        }
        if end_ms.is_some_and(|end| t >= end) {
            break;
        }
        bytes += s.size as usize;
        n += 1;
    }
    n.max(1)
}

/// Read samples `pos..pos + n` (in a blocking task) and make them frames; a sample that
/// cannot be read whole (the file changed, or lies about it) is skipped.
async fn read_batch(opened: Arc<Opened>, pos: usize, n: usize) -> Vec<Frame> {
    let task = tokio::task::spawn_blocking(move || {
        let media = &opened.media;
        let len = opened.file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut reader = FileAt { file: &opened.file, len };
        let mut out = Vec::with_capacity(n);
        for s in media.samples.iter().skip(pos).take(n) {
            if s.size > MAX_SAMPLE {
                continue;
            }
            let Ok(data) = reader.read_at(s.offset, s.size as usize) else { continue };
            if data.len() < s.size as usize {
                continue;
            }
            let payload = media.payload(s, &data);
            if let Some(f) = frame(media.kind(s), s.dts, payload) {
                out.push(f);
            }
        }
        out
    });
    task.await.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_app;

    /// A 4 s FLV file: onMetaData, AVC and AAC headers, a keyframe a second at 25 fps, and
    /// audio every 40 ms; in `dir` as `clip.flv`.
    fn clip(dir: &Path) {
        clip_of(dir, 100);
    }

    /// [`clip`] with `frames` frames (and as many audio frames).
    fn clip_of(dir: &Path, frames: u32) {
        let mut out = flv::file_header(true, true).to_vec();
        let meta = amf0::encode_all(&[
            amf0::Value::String("onMetaData".into()),
            amf0::Value::ecma_array([("duration", amf0::Value::Number(4.0))]),
        ]);
        flv::write_tag(&mut out, flv::TAG_SCRIPT, 0, &meta).unwrap();
        flv::write_tag(&mut out, flv::TAG_VIDEO, 0, &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF, 0xE0, 0]).unwrap();
        flv::write_tag(&mut out, flv::TAG_AUDIO, 0, &[0xAF, 0, 0x12, 0x10]).unwrap();
        for i in 0..frames {
            let key = if i.is_multiple_of(25) { 0x17 } else { 0x27 };
            flv::write_tag(&mut out, flv::TAG_VIDEO, i * 40, &[key, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]).unwrap();
            flv::write_tag(&mut out, flv::TAG_AUDIO, i * 40, &[0xAF, 1, 0x21]).unwrap();
        }
        std::fs::write(dir.join("clip.flv"), out).unwrap();
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sluice-vod-unit-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        clip(&d);
        d
    }

    async fn open(lib: &Library, d: &Path, name: &str) -> Result<Arc<Opened>, PlayError> {
        let app = test_app(&format!("play {};", d.display()));
        let asker = Asker { addr: [127, 0, 0, 1].into(), args: "" };
        lib.find(&app.play, name, &asker).await
    }

    /// The next frame's (kind, timestamp, keyframe), skipping nothing.
    async fn next_frame(p: &mut Playback) -> Option<(rtmp::MediaKind, u32, bool)> {
        match p.next().await? {
            Out::Frame(f) => Some((f.kind, f.timestamp, f.keyframe)),
            Out::Seeked(_) => Some((rtmp::MediaKind::Data, u32::MAX, false)),
            Out::End => None,
        }
    }

    /// Two players of one file share its index; a changed or missing file is not.
    #[tokio::test]
    async fn players_of_a_file_share_one_index() {
        let d = dir("share");
        let lib = Library::default();
        let a = open(&lib, &d, "clip").await.unwrap();
        let b = open(&lib, &d, "clip.flv").await.unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one Opened for both");
        assert!(matches!(open(&lib, &d, "other").await, Err(PlayError::NotFound)));
        assert!(matches!(open(&lib, &d, "../clip").await, Err(PlayError::BadName(_))));
        drop((a, b));
        assert!(lib.shared(&(d.join("clip.flv"), Tracks::default()), (SystemTime::UNIX_EPOCH, 0)).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A crowd of players joining a file nobody plays yet indexes it at most once per turn.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crowd_on_a_cold_file_indexes_it_once() {
        let d = dir("crowd");
        // Long enough that indexing it takes a while.
        clip_of(&d, 20_000);
        let lib = Arc::new(Library::default());
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (lib, d) = (lib.clone(), d.clone());
                tokio::spawn(async move { open(&lib, &d, "clip").await.unwrap() })
            })
            .collect();
        let mut opened: Vec<Arc<Opened>> = Vec::new();
        for t in tasks {
            opened.push(t.await.unwrap());
        }
        let mut distinct: Vec<*const Opened> = opened.iter().map(Arc::as_ptr).collect();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() <= INDEXING, "{} indexes for 20 players", distinct.len());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// `play` start and duration: from the keyframe at or before the start, headers first,
    /// until start + duration, then the end.
    #[tokio::test]
    async fn start_and_duration_arguments() {
        let d = dir("range");
        let lib = Library::default();
        let mut p = Playback::start(open(&lib, &d, "clip").await.unwrap(), 1500, 500);
        p.buffer(u32::MAX);
        use rtmp::MediaKind::{Audio, Data, Video};
        let headers = [next_frame(&mut p).await, next_frame(&mut p).await, next_frame(&mut p).await];
        assert_eq!(headers.map(|h| h.map(|(k, _, _)| k)), [Some(Data), Some(Video), Some(Audio)]);
        assert_eq!(next_frame(&mut p).await, Some((Video, 1000, true)), "the keyframe before 1.5 s");
        let mut last = 0;
        while let Some((_, ts, _)) = next_frame(&mut p).await {
            last = ts;
        }
        assert!((1900..2000).contains(&last), "stopped at 2 s: {last}");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A pause holds the frames (what was read before it may still come); unpaused, playing
    /// goes on from where it stopped, not from where the clock would be.
    #[tokio::test]
    async fn pause_holds_the_frames_until_unpaused() {
        let d = dir("pause");
        let lib = Library::default();
        let mut p = Playback::start(open(&lib, &d, "clip").await.unwrap(), 0, 0);
        p.buffer(0);
        for _ in 0..4 {
            next_frame(&mut p).await.unwrap();
        }
        p.pause(true);
        let mut last = 0;
        while let Ok(Some((_, ts, _))) = tokio::time::timeout(Duration::from_millis(300), next_frame(&mut p)).await {
            last = ts;
        }
        assert!(last < 2000, "played on while paused: {last}");
        p.pause(false);
        let (_, ts, _) = next_frame(&mut p).await.unwrap();
        assert!(ts >= last && ts <= last + 40, "resumed at {ts} after {last}");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A seek drops what was read before it: after `Seeked` come the sequence headers (not
    /// `onMetaData` again), then the keyframe at or before the time.
    #[tokio::test]
    async fn seek_goes_to_the_keyframe_before() {
        let d = dir("seek");
        let lib = Library::default();
        let mut p = Playback::start(open(&lib, &d, "clip").await.unwrap(), 0, 0);
        p.buffer(u32::MAX);
        for _ in 0..10 {
            next_frame(&mut p).await.unwrap();
        }
        p.seek(2700);
        use rtmp::MediaKind::{Audio, Data, Video};
        assert_eq!(next_frame(&mut p).await, Some((Data, u32::MAX, false)), "Seeked first");
        assert_eq!(next_frame(&mut p).await.map(|f| f.0), Some(Video));
        assert_eq!(next_frame(&mut p).await.map(|f| f.0), Some(Audio));
        assert_eq!(next_frame(&mut p).await, Some((Video, 2000, true)));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn aindex_and_vindex_choose_tracks() {
        assert_eq!(chosen_tracks(""), Tracks::default());
        assert_eq!(chosen_tracks("k=v&aindex=1&vindex=2"), Tracks { audio: Some(1), video: Some(2) });
        assert_eq!(chosen_tracks("aindex=-1&vindex=300&aindex"), Tracks::default());
    }

    #[test]
    fn names_map_to_files_as_in_nginx_rtmp() {
        let map = |n: &str| map_name(n).map(|(s, sfx)| format!("{}{sfx}", s.join("/")));
        assert_eq!(map("film").unwrap(), "film.flv");
        assert_eq!(map("film.flv").unwrap(), "film.flv");
        assert_eq!(map("film.mp4").unwrap(), "film.mp4");
        assert_eq!(map("mp4:film").unwrap(), "film.mp4");
        assert_eq!(map("MP4:film.mp4").unwrap(), "film.mp4");
        assert_eq!(map("flv:film").unwrap(), "film.flv");
        assert_eq!(map("/sub/film").unwrap(), "sub/film.flv");
        assert!(map("../etc/passwd").is_err());
        assert!(map("mp4:../x").is_err());
        assert!(map("a/../../x").is_err());
    }
}

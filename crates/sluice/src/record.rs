//! nginx-rtmp's `record` module: published streams written to files, FLV as nginx-rtmp writes
//! them or fragmented MP4, that survive a crash.
//!
//! | directive | meaning |
//! |---|---|
//! | `record off\|all\|audio\|video\|keyframes\|manual` | what to record; words combine (`record audio keyframes;`); `manual` files open only through the control API |
//! | `record_path`, `record_suffix`, `record_unique` | file names: `record_path/NAME[-UNIXTIME]SUFFIX`, strftime patterns in the suffix |
//! | `record_append` | continue an existing FLV file after its last whole tag, timestamps running on |
//! | `record_lock` | fcntl write lock on the file while it is written |
//! | `record_max_size`, `record_max_frames` | close the file at this size or frame count; the next keyframe opens the next (the same name without `record_unique`) |
//! | `record_interval` | close the file and open the next every interval, at a keyframe (the same name, replaced, without `record_unique`) |
//! | `record_notify` | `NetStream.Record.Start`/`Stop`/`Failed` to the publisher |
//! | `recorder NAME { }` | more recorders per stream, each with its own settings |
//! | `record_format flv\|mp4`, `record_mp4_faststart` | sluice extensions: fragmented MP4 (H.264, HEVC, AV1, AAC, Opus), rewritten with `moov` first when closed (files after a publish's first then named `NAME-UNIXTIME[-N]SUFFIX`, so none is reopened mid-rewrite) |
//!
//! The directives are parsed in `config::record`. Every stream with recorders gets a task
//! (`task`) that subscribes to it in the hub and writes each recorder's file; a recorder
//! never slows the publisher or players. Files are whole at every moment: FLV tags and MP4
//! fragments go out at least every second and are synced; a file a crash left unfinished is
//! finished at the next start (`repair`). When a file is closed, [`Notice::RecordDone`] goes
//! to the notify module (`on_record_done`) and others. The control API starts and stops
//! recorders ([`Recorders::start`], [`Recorders::stop`]; HTTP in `control`).
//!
//! [`Notice::RecordDone`]: crate::events::Notice::RecordDone

pub mod control;
mod file;
pub mod mp4_file;
mod naming;
pub mod repair;
mod task;
pub mod timeline;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::events::ClientInfo;
use crate::events::Notices;
use crate::hub::StreamKey;
use crate::modules::PublishCtx;

pub use file::is_locked;
pub use naming::file_path;

/// Control requests a stream's recorder task may have queued.
const COMMAND_QUEUE: usize = 16;

/// Why a control request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// No publisher of this stream has recorders.
    #[error("no recorded stream \"{name}\" in application \"{app}\"")]
    NotPublished {
        /// Application.
        app: String,
        /// Stream name.
        name: String,
    },
    /// The application has no recorder of this name (`""` is the application's own).
    #[error("recorder \"{0}\" not found")]
    UnknownRecorder(String),
    /// The recorder's file is open already.
    #[error("already recording to {}", .0.display())]
    AlreadyRecording(PathBuf),
    /// The recorder has no file open.
    #[error("not recording")]
    NotRecording,
    /// Opening the file failed.
    #[error("recorder error: {0}")]
    Failed(String),
}

/// An `onStatus` for the publisher (`record_notify`): `NetStream.Record.Start`, `.Stop`,
/// `.Failed`, with the recorder's name as description.
pub type RecordStatus = crate::modules::Status;

/// A stream being recorded, as the registry knows it.
struct Registered {
    client: ClientInfo,
    commands: mpsc::Sender<task::Command>,
}

/// The recorder registry: which streams have recorders, for the control API; and the
/// recorder tasks, so shutdown can let them finish their files.
#[derive(Default)]
pub struct Recorders {
    streams: Mutex<HashMap<StreamKey, Registered>>,
    tasks: TaskTracker,
    /// How many rtmp `server` blocks there are (the control API's `srv`); a reload may change it.
    servers: std::sync::atomic::AtomicUsize,
    /// Recording files in use: open by a recorder, or being rewritten with `moov` first. A
    /// recorder never opens one of them (it takes another name), so two recordings never
    /// share a file.
    files: Mutex<HashSet<PathBuf>>,
    /// The files recorders have open now, for stats.
    active: Mutex<HashMap<PathBuf, Recording>>,
}

/// A file a recorder has open, as stats show it.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The stream recorded.
    pub stream: StreamKey,
    /// The recorder's name (`""`: the application's own).
    pub recorder: String,
    /// The file.
    pub file: PathBuf,
    /// When the recorder opened it.
    pub since: std::time::Instant,
}

/// A recording file's path, held while the file is written or rewritten; given back when
/// dropped.
pub(crate) struct FileClaim {
    recorders: Arc<Recorders>,
    path: PathBuf,
}

impl Drop for FileClaim {
    fn drop(&mut self) {
        self.recorders.files().remove(&self.path);
        self.recorders.closed(&self.path);
    }
}

impl Recorders {
    /// An empty registry for a configuration with `rtmp_servers` server blocks.
    pub fn new(rtmp_servers: usize) -> Arc<Self> {
        Arc::new(Recorders { servers: rtmp_servers.into(), ..Self::default() })
    }

    /// How many rtmp `server` blocks there are.
    pub fn servers(&self) -> usize {
        self.servers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A reload changed the number of server blocks.
    pub fn set_servers(&self, n: usize) {
        self.servers.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, Registered>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn files(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Recording>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A recorder opened `file` for the stream `app`/`name`.
    pub(crate) fn opened(&self, file: &Path, app: &str, name: &str, recorder: &str) {
        let stream = StreamKey { app: app.to_owned(), name: name.to_owned() };
        let rec = Recording {
            stream,
            recorder: recorder.to_owned(),
            file: file.to_path_buf(),
            since: std::time::Instant::now(),
        };
        self.active().insert(file.to_path_buf(), rec);
    }

    /// The recorder of `file` closed it (or gave it up).
    pub(crate) fn closed(&self, file: &Path) {
        self.active().remove(file);
    }

    /// The files recorders have open now (one per recorder writing), sorted by file.
    pub fn recordings(&self) -> Vec<Recording> {
        let mut out: Vec<Recording> = self.active().values().cloned().collect();
        out.sort_by(|a, b| a.file.cmp(&b.file));
        out
    }

    /// Every file a recorder holds now: open, or still being finished after it closed (the
    /// last metadata patches, the faststart rewrite). Readers of recordings leave these alone.
    pub fn claimed(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.files().iter().cloned().collect();
        out.sort();
        out
    }

    /// Claims `path` for one recording; `None` while another recording holds it.
    fn claim(self: &Arc<Self>, path: &Path) -> Option<FileClaim> {
        self.files().insert(path.to_path_buf()).then(|| FileClaim { recorders: self.clone(), path: path.to_path_buf() })
    }

    /// Opens recorder `recorder` (`""`: the application's own) of the stream `app`/`name`;
    /// returns the file's path. Recording starts at the next keyframe.
    pub async fn start(&self, app: &str, name: &str, recorder: &str) -> Result<PathBuf, RecordError> {
        self.request(app, name, |reply| task::Command::Start { recorder: recorder.to_owned(), reply }).await
    }

    /// Closes that recorder's file; returns its path.
    pub async fn stop(&self, app: &str, name: &str, recorder: &str) -> Result<PathBuf, RecordError> {
        self.request(app, name, |reply| task::Command::Stop { recorder: recorder.to_owned(), reply }).await
    }

    async fn request(
        &self,
        app: &str,
        name: &str,
        make: impl FnOnce(oneshot::Sender<Result<PathBuf, RecordError>>) -> task::Command,
    ) -> Result<PathBuf, RecordError> {
        let not_published = || RecordError::NotPublished { app: app.to_owned(), name: name.to_owned() };
        let key = StreamKey { app: app.to_owned(), name: name.to_owned() };
        let commands = self.streams().get(&key).map(|r| r.commands.clone()).ok_or_else(not_published)?;
        let (tx, rx) = oneshot::channel();
        commands.send(make(tx)).await.map_err(|_| not_published())?;
        rx.await.unwrap_or_else(|_| Err(not_published()))
    }

    /// The recorded streams (and their publishers) of `app` and `name`, each `None` for any.
    pub fn publishers(&self, app: Option<&str>, name: Option<&str>) -> Vec<(StreamKey, ClientInfo)> {
        let mut out: Vec<_> = self
            .streams()
            .iter()
            .filter(|(k, _)| app.is_none_or(|a| a == k.app) && name.is_none_or(|n| n == k.name))
            .map(|(k, r)| (k.clone(), r.client.clone()))
            .collect();
        out.sort_by(|a, b| (&a.0.app, &a.0.name).cmp(&(&b.0.app, &b.0.name)));
        out
    }

    fn unregister(&self, app: &str, name: &str, client: &ClientInfo) {
        let key = StreamKey { app: app.to_owned(), name: name.to_owned() };
        let mut streams = self.streams();
        if streams.get(&key).is_some_and(|r| r.client.id == client.id) {
            streams.remove(&key);
        }
    }

    /// Waits (up to `grace`) for recorders to finish their files after shutdown.
    pub async fn drain(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            tracing::warn!("some recordings were not finished within {grace:?}; start-up repair finishes them");
        }
    }
}

/// The recording output module: one task per published stream with recorders.
pub struct Output {
    records: Arc<Recorders>,
    notices: Arc<Notices>,
}

impl Output {
    /// The module, over the recorder registry and the notices recordings report to.
    pub fn new(records: Arc<Recorders>, notices: Arc<Notices>) -> Self {
        Self { records, notices }
    }
}

impl crate::modules::Module for Output {
    fn name(&self) -> &'static str {
        "record"
    }

    /// Start the stream's recorders, if its application has any and a client publishes it
    /// (recordings and their callbacks name the client). Recorders with `record_notify` report
    /// to the publisher through `ctx.status`.
    fn on_publish(&self, ctx: &PublishCtx<'_>) {
        let Some(client) = ctx.source.client else { return };
        let slots = task::slots_of(ctx.source.app);
        if slots.is_empty() {
            return;
        }
        let status_tx = slots.iter().any(|(_, c)| c.notify).then(|| ctx.status.clone());
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let key = StreamKey { app: ctx.source.app.name.clone(), name: ctx.source.name.to_owned() };
        self.records.streams().insert(key, Registered { client: client.clone(), commands: tx });
        // Subscribed now, before the publisher's first frame.
        let (_, sub) = ctx.stream.subscribe();
        let task = task::StreamTask::new(
            self.records.clone(),
            self.notices.clone(),
            ctx.source.app,
            ctx.source.name,
            ctx.source.args,
            client,
            status_tx,
        );
        self.records.tasks.spawn(task.run(sub, rx));
    }
}

/// Before serving: finish recordings a crash left unfinished in every `record_path`, and
/// log what was done.
pub fn repair_on_start(config: &Config) {
    for dir in record_dirs(config.servers.iter().flat_map(|s| &s.apps)) {
        for line in repair::repair_dir(&dir) {
            match line {
                Ok(what) => tracing::warn!("record: repaired {what}"),
                Err(e) => tracing::error!("record: {e}"),
            }
        }
    }
}

/// The record directories of `apps` (each one's own, then its recorders'), once each.
pub(crate) fn record_dirs<'a>(apps: impl IntoIterator<Item = &'a crate::config::AppConf>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let confs =
        apps.into_iter().flat_map(|a| std::iter::once(&a.record).chain(a.record.recorders.iter().map(|r| &r.conf)));
    for dir in confs.filter_map(|c| c.path.as_deref()) {
        if !dirs.iter().any(|d| d == dir) {
            dirs.push(dir.to_path_buf());
        }
    }
    dirs
}

/// Whether `path` is a recording still being written (its metadata or mark says so).
pub fn is_unfinished(path: &Path) -> std::io::Result<bool> {
    let file = std::fs::File::open(path)?;
    if let Some(scan) = repair::scan_flv(&file)? {
        return Ok(scan.in_progress);
    }
    Ok(repair::mp4_layout(&file)?
        .and_then(|l| l.mark)
        .is_some_and(|(_, m)| &m == mp4_file::MARK_RECORDING || &m == mp4_file::MARK_RECORDING_FASTSTART))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AppConf;
    use crate::hub::{Frame, Hub, StreamOptions};
    use bytes::Bytes;

    const AVC_HEADER: &[u8] =
        &[0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x0A, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x0A, 1, 0, 2, 0x68, 0xCE];
    const AAC_HEADER: &[u8] = &[0xAF, 0, 0x12, 0x10];

    #[test]
    fn a_file_stays_claimed_until_its_recorder_has_finished_it() {
        let recorders = Recorders::new(1);
        let path = PathBuf::from("/rec/live-1.flv");
        let claim = recorders.claim(&path).unwrap();
        recorders.opened(&path, "live", "s", "");
        // Closed (no longer listed as recording), but still being patched and rewritten.
        recorders.closed(&path);
        assert!(recorders.recordings().is_empty());
        assert_eq!(recorders.claimed(), std::slice::from_ref(&path));
        drop(claim);
        assert!(recorders.claimed().is_empty());
    }

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-record-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn app(body: &str) -> Arc<AppConf> {
        crate::config::test_app(&format!("live on; {body}"))
    }

    fn client() -> ClientInfo {
        ClientInfo {
            id: 7,
            addr: "127.0.0.1:5000".parse().unwrap(),
            app: "live".into(),
            flash_ver: String::new(),
            swf_url: String::new(),
            tc_url: String::new(),
            page_url: String::new(),
        }
    }

    /// Publishes `app`'s stream "s" in memory: `frames` go through the hub to a recorder task,
    /// `control` runs while it records; returns the notices sent.
    async fn record(
        app: Arc<AppConf>,
        frames: Vec<Frame>,
        control: impl AsyncFnOnce(&Recorders),
    ) -> Vec<crate::events::Notice> {
        let hub = Hub::new();
        let recorders = Recorders::new(1);
        let notices = Arc::new(Notices::default());
        let mut rx = notices.subscribe();
        let key = StreamKey { app: "live".into(), name: "s".into() };
        let publisher = hub.publish(key.clone(), StreamOptions { ring_len: 8192, gop_cache: true }).unwrap();
        let (_, sub) = publisher.stream().subscribe();
        let (tx, commands) = mpsc::channel(4);
        recorders.streams().insert(key, Registered { client: client(), commands: tx });
        let task = task::StreamTask::new(recorders.clone(), notices.clone(), &app, "s", "k=v", &client(), None);
        let running = tokio::spawn(task.run(sub, commands));
        tokio::task::yield_now().await;
        let (first, rest) = frames.split_at(frames.len() / 2);
        for f in first {
            publisher.stream().push(f.clone());
        }
        control(&recorders).await;
        for f in rest {
            publisher.stream().push(f.clone());
        }
        drop(publisher);
        running.await.unwrap();
        recorders.drain(Duration::from_secs(5)).await;
        let mut out = Vec::new();
        while let Ok(n) = rx.try_recv() {
            out.push(n);
        }
        out
    }

    /// 4 s at 25 fps (a keyframe a second) with AAC every ~23 ms; the publisher's clock
    /// starts at 100 s and jumps back to 0 after 2 s.
    fn stream() -> Vec<Frame> {
        let mut f = vec![
            Frame::video(100_000, Bytes::from_static(AVC_HEADER)).unwrap(),
            Frame::audio(100_000, Bytes::from_static(AAC_HEADER)),
        ];
        for i in 0..100u32 {
            let base = if i < 50 { 100_000 } else { 0 };
            let ts = base + (i % 50) * 40;
            let key = i % 25 == 0;
            let v = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 0, 0, 0, 1, 0x65];
            f.push(Frame::video(ts, Bytes::from(v)).unwrap());
            for a in 0..2 {
                f.push(Frame::audio(ts + 3 + a * 20, Bytes::from_static(&[0xAF, 1, 0x21, 0x10])));
            }
        }
        f
    }

    fn tags(path: &Path) -> Vec<flv::Tag> {
        let data = Bytes::from(std::fs::read(path).unwrap());
        flv::FlvReader::new(data).unwrap().collect::<Result<_, _>>().unwrap()
    }

    fn done(notices: &[crate::events::Notice], recorder: &str) -> Vec<PathBuf> {
        notices
            .iter()
            .filter_map(|n| match n {
                crate::events::Notice::RecordDone { recorder: r, path, name, args, client } if r == recorder => {
                    assert_eq!((name.as_str(), args.as_str(), client.id), ("s", "k=v", 7));
                    Some(path.clone())
                }
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_recording_starts_at_zero_runs_through_jumps_and_is_announced() {
        let dir = temp("flv");
        let app = app(&format!(
            "record all; record_path {0};
             recorder k {{ record keyframes; record_suffix .k.flv; record_max_frames 2; }}
             recorder m {{ record audio manual; record_suffix .m.flv; }}",
            dir.display()
        ));
        let notices = record(app, stream(), async |r: &Recorders| {
            let path = r.start("live", "s", "m").await.unwrap();
            assert_eq!(path, dir.join("s.m.flv"));
            assert_eq!(r.start("live", "s", "m").await, Err(RecordError::AlreadyRecording(path)));
            assert_eq!(r.start("live", "s", "x").await, Err(RecordError::UnknownRecorder("x".into())));
            assert!(matches!(r.stop("live", "t", "m").await, Err(RecordError::NotPublished { .. })));
        })
        .await;
        assert_eq!(done(&notices, ""), [dir.join("s.flv")]);
        let main = tags(&dir.join("s.flv"));
        let meta = flv::RecordingMeta::decode(&main[0].body).unwrap();
        assert!(!meta.in_progress);
        assert_eq!(meta.duration_ms, 4006, "the last audio frame (3986) and its 20 ms");
        assert_eq!(meta.keyframes.iter().map(|k| k.time_ms).collect::<Vec<_>>(), [0, 1000, 2003, 3003]);
        let video: Vec<u32> = main.iter().filter(|t| t.tag_type == flv::TAG_VIDEO).map(|t| t.timestamp).collect();
        assert_eq!(video.len(), 101, "the sequence header and every frame");
        assert!(video.windows(2).skip(1).all(|w| w[1] > w[0] && w[1] - w[0] <= 60), "no jump: {video:?}");
        // Two keyframes per file, the same name each time: the last file holds the last two.
        assert_eq!(done(&notices, "k").len(), 2);
        let k: Vec<u32> = tags(&dir.join("s.k.flv")).iter().skip(2).map(|t| t.timestamp).collect();
        assert_eq!(k, [0, 1000]);
        // The manual recorder ran from its start (the next frame: audio only) to the end.
        assert_eq!(done(&notices, "m"), [dir.join("s.m.flv")]);
        let m = tags(&dir.join("s.m.flv"));
        assert!(m.iter().skip(1).all(|t| t.tag_type == flv::TAG_AUDIO));
        assert_eq!(m[2].timestamp, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_unwritable_path_fails_once_and_retries_at_keyframes() {
        let dir = temp("unwritable");
        std::fs::write(dir.join("blocker"), "a file where the directory should be").unwrap();
        let app = app(&format!("record video; record_path {};", dir.join("blocker/rec").display()));
        let notices = record(app.clone(), stream(), async |_: &Recorders| {}).await;
        assert!(notices.is_empty(), "nothing was recorded: {notices:?}");
        std::fs::remove_file(dir.join("blocker")).unwrap();
        let notices = record(app, stream(), async |_: &Recorders| {}).await;
        assert_eq!(done(&notices, ""), [dir.join("blocker/rec/s.flv")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_full_disk_loses_frames_not_the_file() {
        // /dev/full takes no byte: every write fails with ENOSPC.
        let app = app("record all; record_path /dev; record_suffix \"\";");
        let hub_frames: Vec<Frame> = stream();
        let notices = {
            let hub = Hub::new();
            let recorders = Recorders::new(1);
            let notices = Arc::new(Notices::default());
            let mut rx = notices.subscribe();
            let key = StreamKey { app: "live".into(), name: "full".into() };
            let publisher = hub.publish(key, StreamOptions { ring_len: 8192, gop_cache: true }).unwrap();
            let (_, sub) = publisher.stream().subscribe();
            let (_tx, commands) = mpsc::channel(4);
            let task = task::StreamTask::new(recorders.clone(), notices.clone(), &app, "full", "", &client(), None);
            let running = tokio::spawn(task.run(sub, commands));
            for f in hub_frames {
                publisher.stream().push(f);
            }
            drop(publisher);
            running.await.unwrap();
            rx.try_recv().ok()
        };
        assert!(
            matches!(notices, Some(crate::events::Notice::RecordDone { .. })),
            "the file is still closed and announced"
        );
    }

    /// VP6 video and MP3 audio: nothing MP4 carries.
    fn unsupported_stream() -> Vec<Frame> {
        let mut f = Vec::new();
        for i in 0..50u32 {
            let key = i % 25 == 0;
            let v = vec![if key { 0x14 } else { 0x24 }, 0, 1, 2, 3];
            f.push(Frame::video(i * 40, Bytes::from(v)).unwrap());
            f.push(Frame::audio(i * 40 + 3, Bytes::from_static(&[0x2F, 0xFF, 0xFB])));
        }
        f
    }

    #[tokio::test]
    async fn a_stream_mp4_cannot_carry_leaves_no_file() {
        let dir = temp("mp4-nothing");
        let app = app(&format!("record all; record_path {}; record_format mp4;", dir.display()));
        let notices = record(app, unsupported_stream(), async |_: &Recorders| {}).await;
        assert!(done(&notices, "").is_empty(), "nothing recorded, nothing announced: {notices:?}");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
        assert!(left.is_empty(), "no empty .mp4 left behind: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Whether `path` is a whole progressive MP4 (`ftyp`, `moov`, `mdat`) with samples.
    fn progressive_samples(path: &Path) -> usize {
        let data = std::fs::read(path).unwrap();
        let kinds: Vec<_> = fmp4::boxes(&data).map(|b| b.unwrap().kind).collect();
        assert_eq!(kinds, [*b"ftyp", *b"moov", *b"mdat"], "{}", path.display());
        let moov = fmp4::find(&data, b"moov").unwrap().payload(&data);
        let mut samples = 0;
        for trak in fmp4::boxes(moov).map(Result::unwrap).filter(|b| &b.kind == b"trak") {
            let mut cur = trak.payload(moov);
            for kind in [b"mdia", b"minf", b"stbl", b"stsz"] {
                cur = fmp4::find(cur, kind).unwrap().payload(cur);
            }
            samples += u32::from_be_bytes(cur[8..12].try_into().unwrap()) as usize;
        }
        samples
    }

    /// Faststart with splits and without `record_unique`: every file is rewritten under its
    /// own name; none is reopened (and emptied) while its rewrite runs. Before, each split
    /// reopened the same path the rewrite was working on, and only one file was left.
    #[tokio::test]
    async fn faststart_splits_keep_every_file() {
        let dir = temp("mp4-split");
        let app = app(&format!(
            "record all; record_path {0}; record_format mp4; record_mp4_faststart on; record_max_frames 75;",
            dir.display()
        ));
        let frames = stream();
        let total = frames.iter().filter(|f| !f.sequence_header).count();
        let notices = record(app, frames, async |_: &Recorders| {}).await;
        let paths = done(&notices, "");
        assert_eq!(paths.len(), 4, "a file a second (75 frames, then a keyframe): {paths:?}");
        // Announced as their rewrites finish, in any order.
        let mut distinct = paths.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), paths.len(), "no name reused: {paths:?}");
        assert!(paths.contains(&dir.join("s.mp4")), "the first file has nginx-rtmp's name: {paths:?}");
        for p in paths.iter().filter(|p| **p != dir.join("s.mp4")) {
            let name = p.file_name().unwrap().to_string_lossy();
            assert!(name.starts_with("s-") && name.ends_with(".mp4"), "NAME-UNIXTIME[-N].mp4: {name}");
        }
        let recorded: usize = paths.iter().map(|p| progressive_samples(p)).sum();
        assert_eq!(recorded, total, "every frame is in one of the files");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
        assert_eq!(left.len(), paths.len(), "no temporary file left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A name that is no file name never becomes a recording, whatever reached the recorder
    /// (the publish check refuses such names first).
    #[tokio::test]
    async fn names_that_are_no_file_names_are_not_recorded() {
        let dir = temp("badname");
        let app = app(&format!("record all; record_path {};", dir.join("rec").display()));
        for name in ["../x", "/abs/x", "", "..", "a\nb"] {
            let hub = Hub::new();
            let recorders = Recorders::new(1);
            let notices = Arc::new(Notices::default());
            let mut rx = notices.subscribe();
            let key = StreamKey { app: "live".into(), name: name.into() };
            let publisher = hub.publish(key, StreamOptions { ring_len: 8192, gop_cache: true }).unwrap();
            let (_, sub) = publisher.stream().subscribe();
            let (_tx, commands) = mpsc::channel(4);
            let task = task::StreamTask::new(recorders.clone(), notices.clone(), &app, name, "", &client(), None);
            let running = tokio::spawn(task.run(sub, commands));
            for f in stream() {
                publisher.stream().push(f);
            }
            drop(publisher);
            running.await.unwrap();
            assert!(rx.try_recv().is_err(), "{name:?}: nothing announced");
        }
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
        assert!(left.is_empty(), "no file, no directory: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recorders_in_nginx_order() {
        let a = app("record all manual; record_path /r; recorder x { record audio; } recorder off { record off; }");
        let names: Vec<_> = task::slots_of(&a).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["x", ""]);
        assert!(task::slots_of(&app("record off;")).is_empty());
    }
}

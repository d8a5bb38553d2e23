//! One task per published stream with recorders: it subscribes to the stream in the hub like
//! a player and feeds every recorder of the application (nginx-rtmp's
//! `ngx_rtmp_record_node_av`, one call per frame and recorder). File I/O runs on the
//! blocking pool; if the disk is slow the task falls behind in the hub's ring and skips to the
//! next keyframe, the publisher and players never wait for it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtmp::MediaKind;
use tokio::sync::{mpsc, oneshot};

use super::file::{blocking, RecFile};
use super::mp4_file::Mp4Mux;
use super::naming::{self, NamingError};
use super::timeline::Timeline;
use super::{repair, FileClaim, RecordError, RecordStatus, Recorders};
use crate::config::{AppConf, RecordConf, RecordFormat};
use crate::events::{ClientInfo, Notice, Notices};
use crate::hub::{Entry, Frame, Subscriber};

/// Ring entries taken at a time.
const MAX_BATCH: usize = 256;
/// How often files are synced to disk and FLV metadata brought up to date: the most a power
/// loss can take from a recording.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// After an error, the earliest next attempt (at a keyframe).
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Keyframe index entries reserved in FLV metadata (18 bytes each); more are thinned out.
const KEYFRAME_INDEX: usize = 1024;
/// Most `NAME-UNIXTIME-N` names tried when the file name is in use.
const MAX_NAME_TRIES: u32 = 1000;

/// A request from the control API.
pub enum Command {
    /// Open a recorder's file.
    Start {
        /// The recorder (`""` for the application's own).
        recorder: String,
        /// The file opened.
        reply: oneshot::Sender<Result<PathBuf, RecordError>>,
    },
    /// Close it.
    Stop {
        /// The recorder.
        recorder: String,
        /// The file closed.
        reply: oneshot::Sender<Result<PathBuf, RecordError>>,
    },
}

/// What a recorder writes with.
enum Mux {
    /// Nothing written yet: the container is made at the first frame.
    None,
    Flv(Box<flv::FileWriter>),
    Mp4(Box<Mp4Mux>),
}

/// A recorder's open file. The file itself is created with the first frame written (MP4:
/// with the first bytes, so a stream with nothing MP4 carries leaves no file), so a recorder
/// opened again (`record_max_size`, `record_interval`) does not empty the file just
/// finished before it has something to put in its place.
struct Open {
    path: PathBuf,
    /// The path is this recording's until the file is closed (and rewritten).
    claim: FileClaim,
    file: Option<RecFile>,
    mux: Mux,
    /// Where the first frame goes on the recording's timeline (0, or the end of an appended
    /// file).
    start_ms: u64,
    /// Set by the first frame written.
    timeline: Option<Timeline>,
    /// Video waits for a keyframe (at the start, after frames were lost).
    need_key: bool,
    frames: u64,
    /// Bytes waiting for the next write.
    pending: Vec<u8>,
    /// After a write error: frames are dropped until then.
    blocked_until: Option<Instant>,
    /// Frames at the last tick, to see a stalled stream.
    frames_at_tick: u64,
}

impl Open {
    fn new(path: PathBuf, claim: FileClaim) -> Self {
        Open {
            path,
            claim,
            file: None,
            mux: Mux::None,
            start_ms: 0,
            timeline: None,
            need_key: true,
            frames: 0,
            pending: Vec::new(),
            blocked_until: None,
            frames_at_tick: 0,
        }
    }

    fn len(&self) -> u64 {
        match &self.mux {
            Mux::None => self.file.as_ref().map_or(0, RecFile::len) + self.pending.len() as u64,
            Mux::Flv(w) => w.len(),
            Mux::Mp4(m) => m.len(),
        }
    }
}

/// One recorder of the stream.
struct Slot {
    /// `""` for the application's own recorder.
    name: String,
    conf: RecordConf,
    open: Option<Open>,
    /// When a file was last opened (tried): `record_interval` counts from it.
    last_open: Option<Instant>,
    /// After a failure, no new attempt before this.
    retry_at: Option<Instant>,
    /// A failure was logged and nothing worked since: further ones are not logged; the next
    /// success is ("recording again").
    error_logged: bool,
    /// Files opened during this publish.
    files_opened: u32,
    /// The last `NAME-UNIXTIME[-N]` name taken: (UNIXTIME, N), so a faststart recorder never
    /// takes a name of this publish again, even once its rewrite is over.
    last_unique: Option<(i64, u32)>,
    /// The stream name cannot be a file name: the recorder never opens (said once).
    refused: bool,
}

impl Slot {
    fn records_video(&self) -> bool {
        self.conf.mode.video || self.conf.mode.keyframes
    }

    /// Starts with the stream, and at keyframes after closing (not `manual`).
    fn auto(&self) -> bool {
        !self.conf.mode.manual && !self.conf.mode.is_off() && !self.refused
    }

    fn is_mp4(&self) -> bool {
        self.conf.format == RecordFormat::Mp4
    }

    fn label(&self) -> &str {
        if self.name.is_empty() {
            "default"
        } else {
            &self.name
        }
    }
}

/// The stream's latest metadata and sequence headers, written at the start of every file.
#[derive(Default)]
struct Headers {
    meta: Option<Arc<Frame>>,
    video: Option<Arc<Frame>>,
    audio: Option<Arc<Frame>>,
}

/// The recorders of one published stream.
pub struct StreamTask {
    recorders: Arc<Recorders>,
    notices: Arc<Notices>,
    app: String,
    name: String,
    args: String,
    client: ClientInfo,
    slots: Vec<Slot>,
    headers: Headers,
    status: Option<mpsc::UnboundedSender<RecordStatus>>,
}

/// The recorders an application has, nginx-rtmp's order: `recorder` blocks, then the
/// application's own if it records anything.
pub fn slots_of(app: &AppConf) -> Vec<(String, RecordConf)> {
    let own = &app.record;
    let mut out: Vec<(String, RecordConf)> = own.recorders.iter().map(|r| (r.name.clone(), r.conf.clone())).collect();
    if !own.mode.is_off() || own.mode.manual {
        out.push((String::new(), RecordConf { recorders: Vec::new(), ..own.clone() }));
    }
    out.retain(|(_, c)| !c.mode.is_off() || c.mode.manual);
    out
}

impl StreamTask {
    /// The task for a stream just published; `status` gets `NetStream.Record.*` for
    /// recorders with `record_notify`.
    pub fn new(
        recorders: Arc<Recorders>,
        notices: Arc<Notices>,
        app: &AppConf,
        name: &str,
        args: &str,
        client: &ClientInfo,
        status: Option<mpsc::UnboundedSender<RecordStatus>>,
    ) -> Self {
        let slots = slots_of(app)
            .into_iter()
            .map(|(name, conf)| Slot {
                name,
                conf,
                open: None,
                last_open: None,
                retry_at: None,
                error_logged: false,
                files_opened: 0,
                last_unique: None,
                refused: false,
            })
            .collect();
        StreamTask {
            recorders,
            notices,
            app: app.name.clone(),
            name: name.to_owned(),
            args: args.to_owned(),
            client: client.clone(),
            slots,
            headers: Headers::default(),
            status,
        }
    }

    /// Records until the publisher leaves.
    pub async fn run(mut self, mut sub: Subscriber, mut commands: mpsc::Receiver<Command>) {
        let now = Instant::now();
        // nginx-rtmp opens the recorders that are not manual when publishing starts.
        for i in 0..self.slots.len() {
            if self.slots[i].auto() {
                let _ = self.open(i, now).await;
            }
        }
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = sub.next_batch(MAX_BATCH) => {
                    if self.on_batch(batch).await {
                        break;
                    }
                }
                Some(cmd) = commands.recv() => self.on_command(cmd).await,
                _ = tick.tick() => self.on_tick().await,
            }
        }
        for i in 0..self.slots.len() {
            self.close(i).await;
        }
        // Like a player that stops: the hub may forget the stream now.
        drop(sub);
        self.recorders.unregister(&self.app, &self.name, &self.client);
    }

    /// Handles a batch; true when the publisher left.
    async fn on_batch(&mut self, batch: crate::hub::Batch) -> bool {
        if batch.skipped > 0 {
            tracing::warn!(app = %self.app, stream = %self.name, skipped = batch.skipped, "record: fell behind the stream (slow disk?); frames skipped, recordings continue at the next keyframe");
            for open in self.slots.iter_mut().filter_map(|s| s.open.as_mut()) {
                open.need_key = true;
            }
        }
        let mut ended = false;
        for entry in batch.entries {
            match entry {
                Entry::Frame(f) => self.on_frame(&f).await,
                Entry::Published => {}
                Entry::Unpublished => {
                    ended = true;
                    break;
                }
            }
        }
        for i in 0..self.slots.len() {
            self.write_pending(i).await;
        }
        ended
    }

    async fn on_frame(&mut self, frame: &Arc<Frame>) {
        match (frame.kind, frame.sequence_header) {
            (MediaKind::Data, true) => {
                self.headers.meta = Some(frame.clone());
                return;
            }
            // Cue points and other data messages are not recorded (as nginx-rtmp) and never
            // replace the metadata a new file starts with.
            (MediaKind::Data, false) => return,
            (MediaKind::Video, true) => self.headers.video = Some(frame.clone()),
            (MediaKind::Audio, true) => self.headers.audio = Some(frame.clone()),
            _ => {}
        }
        let now = Instant::now();
        for i in 0..self.slots.len() {
            self.frame_to(i, frame, now).await;
        }
    }

    /// nginx-rtmp's `ngx_rtmp_record_node_av` for one recorder.
    async fn frame_to(&mut self, i: usize, frame: &Frame, now: Instant) {
        let video = frame.kind == MediaKind::Video;
        let keyframe = video && frame.keyframe;
        let slot = &self.slots[i];
        let mode = slot.conf.mode;
        // A file may start at a keyframe, or at any audio frame for a recorder without video.
        let brk = if video { keyframe } else { !mode.video };
        if brk && slot.auto() {
            let due = slot.conf.interval.is_some_and(|iv| slot.last_open.is_some_and(|t| now >= t + iv));
            let failed = slot.error_logged;
            let may_retry = slot.retry_at.is_none_or(|t| now >= t);
            if due {
                self.close(i).await;
                let _ = self.open(i, now).await;
            } else if slot.open.is_none() && (slot.conf.interval.is_none() || failed) && may_retry {
                let _ = self.open(i, now).await;
            }
        }
        let has_video = self.headers.video.is_some();
        let slot = &mut self.slots[i];
        let records_video = slot.records_video();
        let mp4 = slot.is_mp4();
        let Some(open) = slot.open.as_mut() else { return };
        if open.blocked_until.is_some_and(|t| now < t) {
            return;
        }
        open.blocked_until = None;
        if frame.sequence_header {
            // A new configuration mid-file is written like any frame.
            if open.timeline.is_some() && (if video { records_video } else { mode.audio }) {
                self.write_frame(i, frame, false);
            }
            return;
        }
        if (!video && !mode.audio) || (video && !mode.video && !(mode.keyframes && keyframe)) {
            if let Some(t) = &mut open.timeline {
                // Keeps the clock going, so gaps between recorded keyframes are no jumps.
                t.map(frame.timestamp);
            }
            return;
        }
        if open.timeline.is_none() {
            if records_video && has_video && !keyframe {
                return;
            }
            // MP4 files are created by write_pending, with their first bytes.
            if !mp4 && open.file.is_none() && !self.create_file(i, now).await {
                return;
            }
            self.start_file(i, frame);
        }
        let Some(open) = self.slots[i].open.as_mut() else { return };
        if video && open.need_key {
            if !keyframe {
                return;
            }
            open.need_key = false;
        }
        self.write_frame(i, frame, true);
        let slot = &self.slots[i];
        if let Some(open) = &slot.open {
            let full = slot.conf.max_size > 0 && open.len() >= slot.conf.max_size;
            let enough = slot.conf.max_frames > 0 && open.frames >= slot.conf.max_frames;
            if full || enough {
                tracing::info!(app = %self.app, stream = %self.name, recorder = %slot.label(), "record: {} reached, closing the file", if full { "record_max_size" } else { "record_max_frames" });
                self.close(i).await;
            }
        }
    }

    /// The first frame of a file: container header, metadata and sequence headers.
    fn start_file(&mut self, i: usize, first: &Frame) {
        let (app, name) = (self.app.clone(), self.name.clone());
        let slot = &mut self.slots[i];
        let mode = slot.conf.mode;
        let records_video = slot.records_video();
        let video_header = self.headers.video.clone().filter(|_| records_video);
        let audio_header = self.headers.audio.clone().filter(|_| mode.audio);
        let Some(open) = slot.open.as_mut() else { return };
        let mut timeline = Timeline::new(open.start_ms);
        let start = timeline.map(first.timestamp);
        open.timeline = Some(timeline);
        open.need_key = records_video;
        let mut warnings = Vec::new();
        match &mut open.mux {
            Mux::None if slot.conf.format == RecordFormat::Mp4 => {
                let mut m = Mp4Mux::new(video_header.as_deref(), audio_header.as_deref(), slot.conf.mp4_faststart);
                warnings = m.take_warnings();
                if !m.has_tracks() {
                    warnings.push("nothing this recorder records can go into MP4".into());
                }
                open.mux = Mux::Mp4(Box::new(m));
                return log_warnings(&app, &name, slot.label(), warnings);
            }
            Mux::None => {
                let meta = flv::RecordingMeta::new(
                    self.headers.meta.as_ref().map(|f| &f.payload[..]),
                    audio_header.is_some(),
                    video_header.is_some(),
                );
                let capacity = if records_video { KEYFRAME_INDEX } else { 0 };
                match flv::FileWriter::create(meta, capacity, &mut open.pending) {
                    Ok(w) => open.mux = Mux::Flv(Box::new(w)),
                    Err(e) => warnings.push(format!("the FLV header could not be written: {e}")),
                }
            }
            Mux::Flv(_) | Mux::Mp4(_) => {}
        }
        if let Mux::Flv(w) = &mut open.mux {
            let ts = start as u32;
            for (tag, h) in [(flv::TAG_VIDEO, &video_header), (flv::TAG_AUDIO, &audio_header)] {
                if let Some(h) = h {
                    if let Err(e) = w.write(&mut open.pending, tag, ts, &h.payload, false) {
                        warnings.push(format!("a sequence header could not be written: {e}"));
                    }
                }
            }
        }
        log_warnings(&app, &name, slot.label(), warnings);
    }

    /// Adds a frame to the recorder's pending bytes.
    fn write_frame(&mut self, i: usize, frame: &Frame, count: bool) {
        let slot = &mut self.slots[i];
        let label = slot.label().to_owned();
        let Some(open) = slot.open.as_mut() else { return };
        let Some(timeline) = &mut open.timeline else { return };
        let jumps = timeline.jumps();
        let ts = timeline.map(frame.timestamp);
        if timeline.jumps() > jumps {
            tracing::info!(app = %self.app, stream = %self.name, recorder = %label, at_ms = ts, "record: the publisher's timestamps jumped; the recording runs on without a gap");
        }
        let video = frame.kind == MediaKind::Video;
        let result = match &mut open.mux {
            Mux::Flv(w) => {
                let tag = if video { flv::TAG_VIDEO } else { flv::TAG_AUDIO };
                // FLV timestamps are 32 bits: 49.7 days.
                let key = video && frame.keyframe;
                w.write(&mut open.pending, tag, ts as u32, &frame.payload, key).map_err(|e| e.to_string())
            }
            Mux::Mp4(m) => {
                m.push(ts, frame, &mut open.pending);
                let w = m.take_warnings();
                if !w.is_empty() {
                    log_warnings(&self.app, &self.name, &label, w);
                }
                Ok(())
            }
            Mux::None => Ok(()),
        };
        match result {
            Ok(()) if count => open.frames += 1,
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(app = %self.app, stream = %self.name, recorder = %label, "record: a frame could not be written: {e}")
            }
        }
    }

    /// Writes what the recorder has pending, creating an MP4 file with its first bytes. A
    /// failed write is cut back off the file, so the file stays whole; the recorder drops
    /// frames for a second and goes on at a keyframe.
    async fn write_pending(&mut self, i: usize) {
        let Some(open) = self.slots[i].open.as_ref() else { return };
        if open.pending.is_empty() {
            return;
        }
        if open.file.is_none() && !self.create_file(i, Instant::now()).await {
            return;
        }
        let Some(open) = self.slots[i].open.as_mut() else { return };
        let Some(file) = open.file.as_mut() else { return };
        let data = std::mem::take(&mut open.pending);
        match file.append(data).await {
            Ok(()) => self.worked(i),
            Err(e) => self.write_failed(i, e).await,
        }
    }

    /// A write or an open worked: ends a failure episode (said once, as its start was), so
    /// the next failure is logged again.
    fn worked(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if std::mem::take(&mut slot.error_logged) {
            tracing::info!(app = %self.app, stream = %self.name, recorder = %slot.label(), "record: recording again");
        }
    }

    async fn write_failed(&mut self, i: usize, e: std::io::Error) {
        let now = Instant::now();
        let (app, name) = (self.app.clone(), self.name.clone());
        let slot = &mut self.slots[i];
        let Some(open) = slot.open.as_mut() else { return };
        let Some(file) = open.file.as_mut() else { return };
        let good = file.len();
        match &mut open.mux {
            // The header did not make it: the file starts over at the next keyframe.
            Mux::Flv(w) if good < w.header_len() => {
                let _ = file.truncate(0).await;
                open.mux = Mux::None;
                open.timeline = None;
            }
            Mux::Flv(w) => {
                let _ = file.truncate(good).await;
                w.rewind(good);
            }
            Mux::Mp4(m) => {
                let _ = file.truncate(good).await;
                m.rewind(good);
            }
            Mux::None => {}
        }
        open.pending.clear();
        open.need_key = true;
        open.blocked_until = Some(now + RETRY_AFTER);
        let path = open.path.display().to_string();
        if !slot.error_logged {
            slot.error_logged = true;
            tracing::error!(app = %app, stream = %name, recorder = %slot.label(), "record: cannot write {path}: {e}; the stream goes on, recording retries at a keyframe (further errors are not logged until it works again)");
        }
        let label = slot.label().to_owned();
        self.status(i, "error", "NetStream.Record.Failed", &label);
        crate::metrics::recorder_error(&app, "write");
    }

    /// Opens the recorder (nginx-rtmp's `ngx_rtmp_record_node_open`): picks the file name
    /// now (`record_unique` time, strftime suffix); the file is created with the first frame.
    async fn open(&mut self, i: usize, now: Instant) -> Result<PathBuf, RecordError> {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let slot = &mut self.slots[i];
        if let Some(open) = &slot.open {
            return Err(RecordError::AlreadyRecording(open.path.clone()));
        }
        if slot.refused {
            return Err(RecordError::Failed("the stream name cannot be a file name".to_owned()));
        }
        slot.last_open = Some(now);
        let (path, claim) = match self.claim_name(i, unix) {
            Ok(Some((path, claim, unique))) => {
                if unique.is_some() {
                    self.slots[i].last_unique = unique;
                }
                (path, claim)
            }
            Ok(None) => {
                return Err(self.open_failed(i, now, "every file name for this recording is in use".to_owned()))
            }
            Err(e @ (NamingError::BadName(_) | NamingError::TooLong(_))) => return Err(self.refuse(i, &e.to_string())),
            Err(e) => return Err(self.open_failed(i, now, e.to_string())),
        };
        let slot = &mut self.slots[i];
        slot.files_opened += 1;
        slot.open = Some(Open::new(path.clone(), claim));
        let label = slot.label().to_owned();
        self.recorders.opened(&path, &self.app, &self.name, &self.slots[i].name);
        self.status(i, "status", "NetStream.Record.Start", &label);
        Ok(path)
    }

    /// The recorder's next file name, claimed: nginx-rtmp's, unless another recording holds
    /// it (this recorder's last file while its `moov`-first rewrite runs, a quick republish
    /// still finishing, another recorder with the same name) or it is an MP4 recorder with
    /// `record_mp4_faststart` past its first file of this publish: then the `record_unique`
    /// form, `NAME-UNIXTIME[-N]SUFFIX`, never one this recorder took before. A faststart file
    /// is finished (and announced) only after its rewrite, so reusing its name would replace
    /// it before anyone saw it. Also returns (UNIXTIME, N) when the unique form was taken;
    /// `Ok(None)`: every name tried is in use.
    #[allow(clippy::type_complexity)]
    fn claim_name(&self, i: usize, unix: i64) -> Result<Option<(PathBuf, FileClaim, Option<(i64, u32)>)>, NamingError> {
        let slot = &self.slots[i];
        let conf = &slot.conf;
        let nginx = naming::file_path(conf, &self.name, unix)?;
        let fresh_names = slot.is_mp4() && conf.mp4_faststart && slot.files_opened > 0;
        if !fresh_names {
            if let Some(claim) = self.recorders.claim(&nginx) {
                return Ok(Some((nginx, claim, None)));
            }
        }
        let first = match slot.last_unique {
            Some((t, n)) if fresh_names && t == unix => n + 1,
            _ => 1,
        };
        for n in first..first + MAX_NAME_TRIES {
            let path = naming::unique_path(conf, &self.name, unix, n)?;
            if let Some(claim) = self.recorders.claim(&path) {
                return Ok(Some((path, claim, Some((unix, n)))));
            }
        }
        Ok(None)
    }

    /// The stream name may not become a file name: the recorder stays closed for this
    /// publish, said once. (The publish check refuses such names first; this is the second
    /// wall.)
    fn refuse(&mut self, i: usize, why: &str) -> RecordError {
        let slot = &mut self.slots[i];
        if !slot.refused {
            slot.refused = true;
            tracing::error!(app = %self.app, stream = %crate::untrusted::for_log(&self.name), recorder = %slot.label(), "record: {why}; not recording this stream");
        }
        let label = slot.label().to_owned();
        self.status(i, "error", "NetStream.Record.Failed", &label);
        RecordError::Failed(why.to_owned())
    }

    /// Creates (or, with `record_append`, continues) the recorder's file; false when that
    /// failed (said once; the recorder tries again at a keyframe).
    async fn create_file(&mut self, i: usize, now: Instant) -> bool {
        let (app, name) = (self.app.clone(), self.name.clone());
        let slot = &mut self.slots[i];
        let label = slot.label().to_owned();
        let Some(path) = slot.open.as_ref().map(|o| o.path.clone()) else { return false };
        let mp4 = slot.is_mp4();
        if slot.conf.append && mp4 {
            tracing::warn!(app = %app, stream = %name, recorder = %label, "record: record_append is not supported with record_format mp4; {} is replaced", path.display());
        }
        let append = slot.conf.append && !mp4;
        let created = match RecFile::open(&path, append, slot.conf.lock).await {
            Ok(file) => continue_file(file, append).await,
            Err(e) => Err(e),
        };
        match created {
            Ok((file, mux, start_ms)) => {
                slot.retry_at = None;
                tracing::info!(app = %app, stream = %name, recorder = %label, path = %path.display(), "record: start");
                let Some(open) = slot.open.as_mut() else { return false };
                open.file = Some(file);
                // An MP4 recording has its writer already; an FLV one gets it here.
                if !matches!(mux, Mux::None) {
                    open.mux = mux;
                    open.start_ms = start_ms;
                }
                self.worked(i);
                true
            }
            Err(e) => {
                slot.open = None;
                self.open_failed(i, now, format!("cannot open {}: {e}", path.display()));
                false
            }
        }
    }

    fn open_failed(&mut self, i: usize, now: Instant, why: String) -> RecordError {
        crate::metrics::recorder_error(&self.app, "open");
        let slot = &mut self.slots[i];
        slot.retry_at = Some(now + RETRY_AFTER);
        if !slot.error_logged {
            slot.error_logged = true;
            tracing::error!(app = %self.app, stream = %self.name, recorder = %slot.label(), "record: {why}; the stream goes on, recording retries at a keyframe (further errors are not logged)");
        }
        let label = slot.label().to_owned();
        self.status(i, "error", "NetStream.Record.Failed", &label);
        RecordError::Failed(why)
    }

    /// Closes the recorder's file (nginx-rtmp's `ngx_rtmp_record_node_close`): the last
    /// bytes, the final metadata, a sync; then `record_done`. With `record_mp4_faststart`
    /// the file is rewritten first, still claimed, so no recorder opens it meanwhile; the
    /// announcement follows the rewrite.
    async fn close(&mut self, i: usize) -> Option<PathBuf> {
        let mut patches: Vec<(u64, Vec<u8>)> = Vec::new();
        let open = self.slots[i].open.as_mut()?;
        if let Mux::Mp4(m) = &mut open.mux {
            patches.extend(m.finish(&mut open.pending));
        }
        if open.file.is_none() && !open.pending.is_empty() {
            // An MP4 recording whose first bytes come with its last fragment.
            self.create_file(i, Instant::now()).await;
        }
        let (app, name) = (self.app.clone(), self.name.clone());
        let slot = &mut self.slots[i];
        let mut open = slot.open.take()?;
        let path = open.path.clone();
        self.recorders.closed(&path);
        let label = slot.label().to_owned();
        let Some(mut file) = open.file.take() else {
            // Nothing was written: no file, nothing to announce.
            self.status(i, "status", "NetStream.Record.Stop", &label);
            return Some(path);
        };
        let mut problem = None;
        if let Mux::Flv(w) = &mut open.mux {
            match w.finish() {
                Ok(p) => patches.extend(p.into_iter().map(|p| (p.offset, p.data))),
                Err(e) => problem = Some(e.to_string()),
            }
        }
        let data = std::mem::take(&mut open.pending);
        let written = async {
            file.append(data).await?;
            for (offset, bytes) in patches {
                file.patch(offset, bytes).await?;
            }
            file.sync().await
        }
        .await;
        if let Err(e) = written {
            problem = Some(e.to_string());
        }
        if let Some(e) = problem {
            crate::metrics::recorder_error(&app, "finish");
            tracing::error!(app = %app, stream = %name, recorder = %slot.label(), "record: finishing {} failed: {e}; start-up repair finishes it", path.display());
        }
        let faststart = slot.conf.mp4_faststart && matches!(open.mux, Mux::Mp4(_)) && file.len() > 0;
        let duration_ms = match &open.mux {
            Mux::Flv(w) => w.duration_ms(),
            Mux::Mp4(m) => m.duration_ms(),
            Mux::None => 0,
        };
        let (bytes, frames) = (file.len(), open.frames);
        drop(file);
        tracing::info!(app = %app, stream = %name, recorder = %label, path = %path.display(), duration_ms, bytes, frames, "record: done");
        self.status(i, "status", "NetStream.Record.Stop", &label);
        let notice = Notice::RecordDone {
            client: self.client.clone(),
            name: self.name.clone(),
            args: self.args.clone(),
            recorder: self.slots[i].name.clone(),
            path: path.clone(),
        };
        let claim = open.claim;
        if faststart {
            let notices = self.notices.clone();
            let p = path.clone();
            self.recorders.tasks.spawn(async move {
                let q = p.clone();
                match blocking(move || repair::faststart(&q)).await {
                    Ok(()) => tracing::info!(path = %p.display(), "record: rewritten with moov first"),
                    Err(e) => tracing::error!(path = %p.display(), "record: moov-first rewrite failed: {e}; the fragmented file is kept"),
                }
                drop(claim);
                notices.send(notice);
            });
        } else {
            drop(claim);
            self.notices.send(notice);
        }
        Some(path)
    }

    async fn on_command(&mut self, cmd: Command) {
        let (recorder, reply, start) = match cmd {
            Command::Start { recorder, reply } => (recorder, reply, true),
            Command::Stop { recorder, reply } => (recorder, reply, false),
        };
        let Some(i) = self.slots.iter().position(|s| s.name == recorder) else {
            let _ = reply.send(Err(RecordError::UnknownRecorder(recorder)));
            return;
        };
        let result = if start {
            self.open(i, Instant::now()).await
        } else {
            self.close(i).await.ok_or(RecordError::NotRecording)
        };
        let _ = reply.send(result);
    }

    /// Once a second: fragments of a stalled stream, FLV metadata, sync.
    async fn on_tick(&mut self) {
        for i in 0..self.slots.len() {
            let Some(open) = self.slots[i].open.as_mut() else { continue };
            let stalled = open.frames == open.frames_at_tick;
            open.frames_at_tick = open.frames;
            let mut progress = None;
            match &mut open.mux {
                Mux::Mp4(m) if stalled => m.flush(&mut open.pending),
                Mux::Flv(w) if open.pending.is_empty() => progress = w.progress().ok().flatten(),
                _ => {}
            }
            self.write_pending(i).await;
            let Some(file) = self.slots[i].open.as_mut().and_then(|o| o.file.as_mut()) else { continue };
            let result = async {
                if let Some(p) = progress {
                    file.patch(p.offset, p.data).await?;
                }
                file.sync().await
            }
            .await;
            if let Err(e) = result {
                self.write_failed(i, e).await;
            }
        }
    }

    /// `NetStream.Record.*` to the publisher, for recorders with `record_notify`.
    fn status(&self, i: usize, level: &'static str, code: &'static str, description: &str) {
        if !self.slots[i].conf.notify {
            return;
        }
        if let Some(tx) = &self.status {
            let _ = tx.send(RecordStatus { level, code, description: description.to_owned() });
        }
    }
}

/// A file just opened: empty (or truncated), or, with `record_append`, an FLV file to go on
/// with after its last whole tag: the writer that continues it and where its timeline ends.
async fn continue_file(mut file: RecFile, append: bool) -> std::io::Result<(RecFile, Mux, u64)> {
    if !append || file.len() == 0 {
        return Ok((file, Mux::None, 0));
    }
    let std = file.std();
    let scan = blocking(move || repair::scan_flv(&std)).await?;
    let Some(mut scan) = scan else {
        tracing::warn!(path = %file.path().display(), "record: record_append: the file is not FLV; it is replaced");
        file.truncate(0).await?;
        return Ok((file, Mux::None, 0));
    };
    if scan.sound_len < scan.len {
        tracing::info!(path = %file.path().display(), torn = scan.len - scan.sound_len, "record: record_append: a torn last tag is cut");
        file.truncate(scan.sound_len).await?;
    }
    // The file is being written again: its metadata says so until it is closed.
    if let Some(p) = scan.writer.progress().map_err(std::io::Error::other)? {
        file.patch(p.offset, p.data).await?;
    }
    let start_ms = scan.writer.duration_ms();
    Ok((file, Mux::Flv(Box::new(scan.writer)), start_ms))
}

fn log_warnings(app: &str, name: &str, recorder: &str, warnings: Vec<String>) {
    for w in warnings {
        tracing::warn!(app = %app, stream = %name, recorder = %recorder, "record: {w}");
    }
}

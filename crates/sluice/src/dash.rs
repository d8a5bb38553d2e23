//! nginx-rtmp's `dash` module: every published stream of an application with `dash on` gets a
//! task that subscribes to it in the hub, packages it into fMP4 fragments (the sans-IO `dash`
//! crate) and writes the MPD and fragments to `dash_path` as nginx-rtmp names them. The live
//! MPD, the init segments and each track's newest fragments are also kept in memory and served
//! from there by the HTTP server.
//!
//! | directive | meaning |
//! |---|---|
//! | `dash`, `dash_path` | write DASH for every stream of the application into this directory |
//! | `dash_fragment` | where fragments are cut |
//! | `dash_playlist_length` | the MPD's window |
//! | `dash_nested` | `NAME/index.mpd` instead of `NAME.mpd` |
//! | `dash_cleanup` | remove fragments that left the window, and everything after the stream ends |
//!
//! The directives are parsed in `config::dash`. Files are written atomically (a temporary file
//! renamed over the target). When the publisher leaves, the MPD turns `type="static"` at once
//! (a later publish of the name starts a new task and a new timeline); with `dash_cleanup` the
//! stream's files go `dash_playlist_length` later unless the name was published again meanwhile.
//! Stream names are checked again here (`untrusted::stream_name`) before they become paths.
//!
//! Low latency (`dash_low_latency`, a sluice extension): the fragment being written is held in
//! memory as its CMAF chunks, and a GET of it is answered at once with chunked transfer
//! encoding: the chunks so far, then each one as it comes, until the fragment is complete (then
//! it is written to disk as before). At most [`MAX_WAITING`] such answers and waits for a next
//! fragment run at once; past that a request gets 503.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dash::{Event, Packager, Settings};
use rtmp::MediaKind;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::atomic_file::write_atomically;
use crate::config::AppConf;
use crate::hub::Entry;
use crate::untrusted::{self, NameError};

pub(crate) mod shared;
mod variant;

/// Ring entries the DASH task takes at a time.
const MAX_BATCH: usize = 256;
/// Fragments per track kept in memory per stream: players fetch the newest; older ones are
/// read from disk.
const MEMORY_FRAGMENTS: usize = 3;
/// Most expired files one stream waits to remove; past that a file is removed at once.
const MAX_PENDING_REMOVALS: usize = 4096;

/// Files waiting to be removed until players had time to fetch them, in due order (every
/// file of a stream waits the same grace); at most [`MAX_PENDING_REMOVALS`], past which a file
/// is removed at once. The stream's task removes them as their time comes.
#[derive(Debug, Default)]
pub(crate) struct Removals(VecDeque<(tokio::time::Instant, PathBuf)>);

impl Removals {
    /// `path` goes `grace` from now.
    pub(crate) async fn schedule(&mut self, path: PathBuf, grace: Duration) {
        if self.0.len() >= MAX_PENDING_REMOVALS {
            let _ = tokio::fs::remove_file(&path).await;
            return;
        }
        self.0.push_back((tokio::time::Instant::now() + grace, path));
    }

    /// Removes the files whose time came (all of them with `all`).
    pub(crate) async fn remove_due(&mut self, all: bool) {
        let now = tokio::time::Instant::now();
        while let Some((due, _)) = self.0.front() {
            if !all && *due > now {
                break;
            }
            let Some((_, path)) = self.0.pop_front() else { break };
            let _ = tokio::fs::remove_file(&path).await;
        }
    }
}
/// Longest a request for the next fragment waits for it, and a chunked answer for its next chunk.
const MAX_WAIT: Duration = Duration::from_secs(15);
/// Most requests waiting for a fragment or being answered chunk by chunk, for all streams: each
/// holds a task and its connection open.
const MAX_WAITING: usize = 1024;

/// Live DASH content in memory, keyed by the absolute path it has on disk, so any HTTP location
/// that maps a URL to that file (a `root`, an `alias`, or the implicit `dash_path` location)
/// serves it from memory first.
#[derive(Default)]
pub struct DashStore {
    files: Mutex<MemFiles>,
    /// Which task writes each MPD, and where its timeline ends: an ended stream's task leaves
    /// the MPD and init segments to a later publish of the name, whose timeline starts after
    /// (so no fragment name is used twice while players may still fetch or cache the old ones).
    /// One entry per stream with a task, live or lingering.
    writers: Mutex<HashMap<PathBuf, Writer>>,
    next_writer: AtomicU64,
    /// The DASH tasks, so shutdown lets them write their static MPD.
    tasks: TaskTracker,
    /// Server shutdown: tasks finish their MPD and keep their files.
    shutdown: CancellationToken,
    /// The next fragment of each track of each live stream, before it exists: players that read
    /// the timeline ahead (ffmpeg) ask for it early, and wait for it instead of getting a 404.
    expected: Mutex<HashMap<PathBuf, Expected>>,
    /// The live members of every variant MPD (`hls_variant`, transcode ladder).
    variants: variant::Registry,
    /// Low latency: the fragments being written, their chunks so far.
    partial: Mutex<HashMap<PathBuf, Arc<watch::Sender<Chunks>>>>,
    /// Requests waiting for a fragment or answered chunk by chunk, against [`MAX_WAITING`].
    waiting: Waiting,
    /// [`MAX_WAITING`] was reached (logged once).
    full_logged: std::sync::atomic::AtomicBool,
}

/// [`MAX_WAITING`] permits.
struct Waiting(Arc<tokio::sync::Semaphore>);

impl Default for Waiting {
    fn default() -> Self {
        Waiting(Arc::new(tokio::sync::Semaphore::new(MAX_WAITING)))
    }
}

/// A fragment being written: its chunks so far, and whether it is complete.
#[derive(Default)]
struct Chunks {
    data: Vec<Bytes>,
    complete: bool,
}

/// The files in memory, each with when it came (its `Last-Modified`, and with a count of
/// writes, its `ETag`).
#[derive(Default)]
pub(crate) struct MemFiles {
    files: HashMap<PathBuf, MemFile>,
    /// Files written so far: two writes of one name in the same millisecond get different ETags.
    writes: u64,
}

#[derive(Clone)]
struct MemFile {
    data: Bytes,
    modified: SystemTime,
    etag: String,
}

impl MemFiles {
    pub(crate) fn insert(&mut self, path: PathBuf, data: Bytes) {
        self.writes += 1;
        let modified = SystemTime::now();
        let ms = modified.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        let etag = format!("\"{ms:x}-{:x}-{:x}\"", self.writes, data.len());
        self.files.insert(path, MemFile { data, modified, etag });
    }

    #[cfg(test)]
    pub(crate) fn get(&self, path: &Path) -> Option<&Bytes> {
        self.files.get(path).map(|f| &f.data)
    }

    pub(crate) fn remove(&mut self, path: &Path) -> Option<Bytes> {
        self.files.remove(path).map(|f| f.data)
    }

    #[cfg(test)]
    pub(crate) fn contains_key(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&PathBuf, &Bytes)> {
        self.files.iter().map(|(p, f)| (p, &f.data))
    }

    fn file(&self, path: &Path) -> Option<MemFile> {
        self.files.get(path).cloned()
    }
}

/// The task writing an MPD and where its timeline ends (ms).
#[derive(Clone, Copy)]
struct Writer {
    id: u64,
    end: u64,
}

/// A fragment not written yet: its stream's task bumps `written` on every write.
#[derive(Clone)]
struct Expected {
    written: Arc<watch::Sender<u64>>,
    wait: Duration,
}

impl DashStore {
    /// An empty store; `shutdown` is the server's.
    pub fn new(shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self { shutdown, ..Self::default() })
    }

    /// Wait (up to `grace`) for the DASH tasks to write their last MPD after shutdown.
    pub async fn drain(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            tracing::warn!("some DASH writers did not finish within {grace:?}");
        }
    }

    /// Whether `path` (an MPD) is in memory (HLS viewers of an edge wait for it, [`crate::hls::viewers`]).
    pub fn has_file(&self, path: &Path) -> bool {
        self.files().files.contains_key(path)
    }

    fn files(&self) -> std::sync::MutexGuard<'_, MemFiles> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn writers(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Writer>> {
        self.writers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expected(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Expected>> {
        self.expected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stream's files to come: `next` replaces what `current` held (requests for those may
    /// wait up to `wait` for `written` to say they exist), then the requests waiting are woken
    /// to look again.
    pub(crate) fn expect(
        &self,
        current: &mut Vec<PathBuf>,
        next: Vec<PathBuf>,
        written: &Arc<watch::Sender<u64>>,
        wait: Duration,
    ) {
        {
            let mut expected = self.expected();
            for old in current.drain(..) {
                expected.remove(&old);
            }
            for path in &next {
                expected.insert(path.clone(), Expected { written: written.clone(), wait });
            }
        }
        *current = next;
        written.send_modify(|n| *n += 1);
    }

    fn partial(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<watch::Sender<Chunks>>>> {
        self.partial.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The file at `path` from memory: complete, or (low latency) being written, answered chunk
    /// by chunk; the next fragment of a live stream is waited for, up to two fragment lengths.
    /// `None` lets the HTTP server read the disk.
    pub async fn get(&self, path: &Path) -> Option<axum::response::Response> {
        if let Some(file) = self.files().file(path) {
            return Some(reply(path, file));
        }
        let partial = self.partial().get(path).map(|p| p.subscribe());
        let expected = self.expected().get(path).cloned();
        if partial.is_none() && expected.is_none() {
            return None;
        }
        let Ok(permit) = self.waiting.0.clone().try_acquire_owned() else {
            if !self.full_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    limit = MAX_WAITING,
                    "dash: too many requests waiting for fragments; answering 503 (said once)"
                );
            }
            return Some(axum::response::IntoResponse::into_response(axum::http::StatusCode::SERVICE_UNAVAILABLE));
        };
        if let Some(chunks) = partial {
            return Some(chunked(path, chunks, permit));
        }
        let expected = expected?;
        let mut rx = expected.written.subscribe();
        let found = tokio::time::timeout(expected.wait, async {
            loop {
                if let Some(file) = self.files().file(path) {
                    return Some(Ok(file));
                }
                if let Some(chunks) = self.partial().get(path).map(|p| p.subscribe()) {
                    return Some(Err(chunks));
                }
                // The stream ended, or went on without this name (a jump, a lost track).
                if !self.expected().contains_key(path) || rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match found.ok().flatten()? {
            Ok(file) => Some(reply(path, file)),
            Err(chunks) => Some(chunked(path, chunks, permit)),
        }
    }

    /// Low latency: a chunk of the fragment at `path` being written (the first one opens it).
    fn append_part(&self, path: &Path, data: Bytes) -> bool {
        let mut partial = self.partial();
        let new = !partial.contains_key(path);
        let chunks = partial.entry(path.to_path_buf()).or_default();
        chunks.send_modify(|c| c.data.push(data));
        new
    }

    /// The fragment at `path` is complete (in `files` by now): chunked answers end.
    fn complete_part(&self, path: &Path) {
        if let Some(chunks) = self.partial().remove(path) {
            chunks.send_modify(|c| c.complete = true);
        }
    }
}

/// A fragment being written, as one chunked answer: the chunks so far at once, then each one as
/// it comes. A fragment abandoned, or no chunk for [`MAX_WAIT`], breaks the answer off (the
/// player sees a truncated body, not a short fragment).
fn chunked(
    path: &Path,
    chunks: watch::Receiver<Chunks>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> axum::response::Response {
    let mut res = axum::response::Response::new(axum::body::Body::new(ChunkedBody {
        reader: Some(ChunkReader { chunks, at: 0, _permit: permit }),
        next: None,
    }));
    set_headers(&mut res, path);
    res
}

/// Where a chunked answer is in its fragment.
struct ChunkReader {
    chunks: watch::Receiver<Chunks>,
    at: usize,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl ChunkReader {
    /// The next chunk; `None` at the end of the complete fragment.
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        loop {
            {
                let c = self.chunks.borrow_and_update();
                if let Some(data) = c.data.get(self.at).cloned() {
                    self.at += 1;
                    return Some(Ok(data));
                }
                if c.complete {
                    return None;
                }
            }
            match tokio::time::timeout(MAX_WAIT, self.chunks.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Some(Err(std::io::Error::other("the fragment was abandoned"))),
                Err(_) => return Some(Err(std::io::Error::other("no chunk came in time"))),
            }
        }
    }
}

type NextChunk =
    std::pin::Pin<Box<dyn std::future::Future<Output = (ChunkReader, Option<std::io::Result<Bytes>>)> + Send>>;

/// The chunked body: hyper asks for the next chunk when it has written the last.
struct ChunkedBody {
    reader: Option<ChunkReader>,
    next: Option<NextChunk>,
}

impl axum::body::HttpBody for ChunkedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::io::Result<hyper::body::Frame<Bytes>>>> {
        let this = self.get_mut();
        if this.next.is_none() {
            let Some(mut reader) = this.reader.take() else { return std::task::Poll::Ready(None) };
            this.next = Some(Box::pin(async move {
                let chunk = reader.next().await;
                (reader, chunk)
            }));
        }
        let next = this.next.as_mut().expect("set above");
        let (reader, chunk) = std::task::ready!(next.as_mut().poll(cx));
        this.next = None;
        match chunk {
            Some(Ok(data)) => {
                this.reader = Some(reader);
                std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(data))))
            }
            Some(Err(e)) => std::task::Poll::Ready(Some(Err(e))),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reader.is_none() && self.next.is_none()
    }
}

impl crate::http::LiveContent for DashStore {
    fn get<'a>(
        &'a self,
        file: &'a Path,
        _query: Option<&'a str>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<axum::response::Response>> + Send + 'a>> {
        Box::pin(DashStore::get(self, file))
    }
}

/// A file from memory, with its validators (`If-None-Match`/`If-Modified-Since` are answered
/// `304` by the HTTP layer). A live MPD changes within a second: no `Last-Modified` on it.
fn reply(path: &Path, file: MemFile) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let mut res = axum::response::Response::new(axum::body::Body::from(file.data));
    set_headers(&mut res, path);
    let h = res.headers_mut();
    if let Ok(etag) = HeaderValue::try_from(file.etag) {
        h.insert(header::ETAG, etag);
    }
    if cache::kind(path) != cache::Kind::Mpd {
        if let Ok(date) = HeaderValue::try_from(crate::http::http_date(file.modified)) {
            h.insert(header::LAST_MODIFIED, date);
        }
    }
    res
}

fn set_headers(res: &mut axum::response::Response, path: &Path) {
    use axum::http::{header, HeaderValue};
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache::control(path)));
}

/// `Cache-Control` of DASH answers, from memory or from disk (the `dash_path` location), for
/// browsers and CDNs in front. Unlike HLS's, fragment names are nginx-rtmp's (the fragment's
/// start in ms) and repeat after a restart, and init segments keep their name from one publish
/// to the next: neither is `immutable`.
pub mod cache {
    use std::path::Path;

    /// The MPD: a cache answers the crowd for a second, as HLS's live playlists.
    pub const MPD: &str = "public, max-age=1";
    /// Fragments: kept twice the default window (30 s), all the time a player asks for one, but
    /// not long enough to outlive a restart that reuses its name.
    pub const FRAGMENT: &str = "public, max-age=60";
    /// Init segments (the same name for every publish, with that publish's codec setup),
    /// errors and unknown files: asked again every time (a `304` when unchanged).
    pub const NO_CACHE: &str = "no-cache";

    /// What a DASH file is, by its name.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        /// `NAME.mpd`, `NAME/index.mpd`, variant MPDs.
        Mpd,
        /// `NAME-init.m4v`, `NAME/init.m4a`.
        Init,
        /// `NAME-TIME.m4v`, `NAME/TIME.m4a`, ...
        Fragment,
        /// Anything else.
        Other,
    }

    /// The kind of the file at `path`.
    pub fn kind(path: &Path) -> Kind {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        match path.extension().and_then(|e| e.to_str()) {
            Some("mpd") => Kind::Mpd,
            Some("m4v" | "m4a" | "m4s" | "mp4") if stem == "init" || stem.ends_with("-init") => Kind::Init,
            Some("m4v" | "m4a" | "m4s" | "mp4") => Kind::Fragment,
            _ => Kind::Other,
        }
    }

    /// `Cache-Control` of a successful answer for the file at `path`.
    pub fn control(path: &Path) -> &'static str {
        match kind(path) {
            Kind::Mpd => MPD,
            Kind::Fragment => FRAGMENT,
            Kind::Init | Kind::Other => NO_CACHE,
        }
    }
}

/// MIME types of what DASH writes.
fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("mpd") => "application/dash+xml",
        Some("m4a") => "audio/mp4",
        _ => "video/mp4",
    }
}

/// The packager settings for an application.
fn settings(app: &AppConf) -> Settings {
    Settings {
        fragment: app.dash.fragment,
        playlist_length: app.dash.playlist_length,
        nested: app.dash.nested,
        part: app.dash.part(),
    }
}

/// Where a stream's MPD goes, relative names refused: `stream_name` was checked when the stream
/// was published, and is checked again here, where the name becomes a path.
fn manifest_path(dir: &Path, name: &str, nested: bool) -> Result<PathBuf, NameError> {
    let name = untrusted::stream_name(name)?;
    Ok(dir.join(dash::manifest_file(name, nested)))
}

/// The DASH output module.
pub struct Output {
    store: Arc<DashStore>,
}

impl Output {
    /// The module, writing into `store` (shared with the HTTP server).
    pub fn new(store: Arc<DashStore>) -> Self {
        Self { store }
    }
}

impl crate::modules::Module for Output {
    fn name(&self) -> &'static str {
        "dash"
    }

    fn on_publish(&self, ctx: &crate::modules::PublishCtx<'_>) {
        let app = ctx.source.app;
        let name = ctx.source.name;
        let Some(dir) = app.dash.path.clone().filter(|_| app.dash.enabled) else { return };
        let mpd = match manifest_path(&dir, name, app.dash.nested) {
            Ok(p) => p,
            Err(e) => {
                return tracing::error!(app = %app.name, stream = %untrusted::for_log(name), "dash: {e}; no DASH for this stream")
            }
        };
        if variant::shadows_variant(app, name) {
            return tracing::error!(app = %app.name, stream = %untrusted::for_log(name), "dash: this stream's MPD would be at the path of another stream's variant MPD; no DASH for this stream");
        }
        // The HLS task lists its segments in this MPD instead (`shared`).
        if shared::applies(app, name) {
            return;
        }
        let id = self.store.next_writer.fetch_add(1, Ordering::Relaxed);
        let mut packager = Packager::new(settings(app), name);
        {
            let mut writers = self.store.writers();
            // A fragment after the previous publish's last one (which may still be written).
            let gap = app.dash.fragment.as_millis() as u64 * 2;
            let start = writers.get(&mpd).map_or(0, |w| w.end + gap);
            packager.start_at(start);
            writers.insert(mpd.clone(), Writer { id, end: start });
        }
        let (_, sub) = ctx.stream.subscribe();
        let dir_for_variant = dir.clone();
        let task = DashTask {
            store: self.store.clone(),
            app: app.clone(),
            name: name.to_string(),
            packager,
            dir,
            mpd,
            id,
            in_memory: VecDeque::new(),
            inits: Vec::new(),
            expired: Removals::default(),
            logged: Vec::new(),
            written: Arc::new(watch::channel(0).0),
            next: Vec::new(),
            variant: variant::place(app, &dir_for_variant, name),
            partial: Vec::new(),
        };
        self.store.tasks.spawn(task.run(sub));
    }
}

/// One stream's DASH writer.
struct DashTask {
    store: Arc<DashStore>,
    app: Arc<AppConf>,
    name: String,
    packager: Packager,
    dir: PathBuf,
    mpd: PathBuf,
    /// This task's number in `store.writers`.
    id: u64,
    /// Fragments held in memory, oldest first.
    in_memory: VecDeque<PathBuf>,
    inits: Vec<PathBuf>,
    /// Fragments that left the window, with when they may go.
    expired: Removals,
    /// Errors already logged (a full disk is said once).
    logged: Vec<String>,
    /// Bumped after every write: requests waiting for the next fragment look again.
    written: Arc<watch::Sender<u64>>,
    /// The next fragments' paths, registered in `store.expected`.
    next: Vec<PathBuf>,
    /// The variant MPD this stream is listed in.
    variant: Option<variant::Place>,
    /// Low latency: the fragments this task is writing, in `store.partial`.
    partial: Vec<PathBuf>,
}

impl DashTask {
    async fn run(mut self, mut sub: crate::hub::Subscriber) {
        tracing::info!(app = %self.app.name, stream = %self.name, path = %self.mpd.display(), "dash: start");
        let shutdown = self.store.shutdown.clone();
        loop {
            let batch = tokio::select! {
                batch = sub.next_batch(MAX_BATCH) => batch,
                _ = shutdown.cancelled() => break,
            };
            if batch.skipped > 0 {
                tracing::warn!(app = %self.app.name, stream = %self.name, skipped = batch.skipped, "dash: fell behind the stream; frames skipped");
            }
            let mut unpublished = false;
            for entry in batch.entries {
                match entry {
                    Entry::Frame(f) => match f.kind {
                        MediaKind::Video => {
                            self.packager.push_video(f.timestamp, f.video_header(), &f.payload, unix_ms())
                        }
                        MediaKind::Audio => {
                            self.packager.push_audio(f.timestamp, f.audio_header(), &f.payload, unix_ms())
                        }
                        MediaKind::Data => {}
                    },
                    Entry::Published => {}
                    Entry::Unpublished => {
                        unpublished = true;
                        break;
                    }
                }
            }
            self.apply_events().await;
            self.remove_expired(false).await;
            if unpublished {
                break;
            }
        }
        // Like a player that stops: the hub may forget the stream now.
        drop(sub);
        if let Some(place) = &self.variant {
            // Players must not be sent to a variant that stopped.
            variant::withdraw(&self.store, place, self.mpd_settings(), unix_ms()).await;
        }
        self.packager.finish();
        self.apply_events().await;
        // Chunked answers of a fragment not completed end now (none is left normally: the end
        // completes the open fragments).
        for path in self.partial.drain(..) {
            self.store.partial().remove(&path);
        }
        // Nothing follows: requests waiting for a next fragment get their 404 now.
        self.expect_next();
        tracing::info!(app = %self.app.name, stream = %self.name, "dash: end of stream; the MPD is static");
        self.ended().await;
    }

    /// Another task (a later publish of the name) writes this MPD now.
    fn replaced(&self) -> bool {
        self.store.writers().get(&self.mpd).is_none_or(|w| w.id != self.id)
    }

    async fn apply_events(&mut self) {
        let mut manifest = false;
        while let Some(ev) = self.packager.poll_event() {
            match ev {
                Event::Init { file, data } => {
                    let path = self.dir.join(file);
                    self.write_file(&path, &data).await;
                    self.store.files().insert(path.clone(), data);
                    self.inits.push(path);
                }
                Event::Part { file, data } => {
                    let path = self.dir.join(file);
                    if self.store.append_part(&path, data) {
                        self.partial.push(path);
                        // Requests waiting for this fragment are answered now.
                        self.written.send_modify(|n| *n += 1);
                    }
                }
                Event::Fragment { file, data } => {
                    let path = self.dir.join(file);
                    self.write_file(&path, &data).await;
                    self.store.files().insert(path.clone(), data);
                    self.store.complete_part(&path);
                    self.partial.retain(|p| *p != path);
                    self.in_memory.push_back(path);
                    // Two tracks: a few fragments of each.
                    while self.in_memory.len() > 2 * MEMORY_FRAGMENTS {
                        if let Some(old) = self.in_memory.pop_front() {
                            self.store.files().remove(&old);
                        }
                    }
                }
                Event::Expired { file } => {
                    let path = self.dir.join(file);
                    self.store.files().remove(&path);
                    self.in_memory.retain(|p| *p != path);
                    if self.app.dash.cleanup {
                        self.schedule_removal(path).await;
                    }
                }
                Event::Manifest => manifest = true,
                Event::Warning(w) => tracing::warn!(app = %self.app.name, stream = %self.name, "dash: {w}"),
            }
        }
        if let Some(w) = self.store.writers().get_mut(&self.mpd).filter(|w| w.id == self.id) {
            w.end = self.packager.end();
        }
        if manifest && self.packager.has_fragments() && !self.replaced() {
            let text = Bytes::from(self.packager.mpd(unix_ms()));
            self.store.files().insert(self.mpd.clone(), text.clone());
            let path = self.mpd.clone();
            self.write_file(&path, &text).await;
            self.expect_next();
            if let Some(place) = self.variant.as_ref().filter(|_| !self.packager.ended()) {
                variant::update(&self.store, place, &self.packager, self.mpd_settings(), unix_ms()).await;
            }
        }
    }

    /// What variant MPDs take from the application's settings.
    fn mpd_settings(&self) -> variant::MpdSettings {
        variant::MpdSettings {
            fragment_ms: self.app.dash.fragment.as_millis() as u64,
            window_ms: self.app.dash.playlist_length.as_millis() as u64,
            low_latency: self.packager.low_latency(),
        }
    }

    /// Registers the fragments that come next (none once ended) and wakes the requests waiting.
    fn expect_next(&mut self) {
        let wait = (self.app.dash.fragment * 2).clamp(Duration::from_secs(1), MAX_WAIT);
        let next: Vec<PathBuf> = self.packager.next_files().into_iter().map(|f| self.dir.join(f)).collect();
        self.store.expect(&mut self.next, next, &self.written, wait);
    }

    /// An expired fragment stays on disk `dash_playlist_length` (a player that read the MPD just
    /// before may still fetch it). The queue is bounded: past it, the file goes at once.
    async fn schedule_removal(&mut self, path: PathBuf) {
        self.expired.schedule(path, self.app.dash.playlist_length).await;
    }

    /// Removes the expired fragments whose time came (all of them with `all`).
    async fn remove_expired(&mut self, all: bool) {
        self.expired.remove_due(all).await;
    }

    /// The stream ended: with `dash_cleanup` everything goes after `dash_playlist_length`; the
    /// MPD and init segments stay when the name was published again meanwhile (the new task
    /// writes them now; its fragments have other names).
    async fn ended(&mut self) {
        let linger = self.app.dash.playlist_length.max(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(linger) => {}
            // Files stay after a shutdown, as HLS's.
            _ = self.store.shutdown.cancelled() => return,
        }
        self.clean_up().await;
    }

    async fn clean_up(&mut self) {
        let replaced = !self.release_shared();
        {
            let mut files = self.store.files();
            for path in self.in_memory.drain(..) {
                files.remove(&path);
            }
        }
        if self.app.dash.cleanup {
            self.remove_expired(true).await;
            // A later publish's fragments start after ours: these names are ours alone.
            for f in self.packager.fragment_files() {
                let _ = tokio::fs::remove_file(self.dir.join(f)).await;
            }
            tracing::info!(app = %self.app.name, stream = %self.name, replaced, "dash: cleaned up");
        }
        let mut writers = self.store.writers();
        if writers.get(&self.mpd).is_some_and(|w| w.id == self.id) {
            writers.remove(&self.mpd);
        }
    }

    /// Removes the MPD and init segments (memory, and disk with `dash_cleanup`) unless another
    /// task writes them now; false when one does. The check and the removal are one step under
    /// the writers lock, which a new publish takes to register (`on_publish`): a publish either
    /// came before (its files are left alone) or comes after (it writes its files after these
    /// are gone). Hence the blocking removals here: at most four small unlinks, no await.
    fn release_shared(&mut self) -> bool {
        let writers = self.store.writers();
        if writers.get(&self.mpd).is_none_or(|w| w.id != self.id) {
            return false;
        }
        let shared: Vec<PathBuf> = self.inits.drain(..).chain([self.mpd.clone()]).collect();
        {
            let mut files = self.store.files();
            for path in &shared {
                files.remove(path);
            }
        }
        if self.app.dash.cleanup {
            for path in &shared {
                let _ = std::fs::remove_file(path);
            }
            if self.app.dash.nested {
                // The stream's own directory, if nothing else is in it.
                if let Some(parent) = self.mpd.parent() {
                    let _ = std::fs::remove_dir(parent);
                }
            }
        }
        drop(writers);
        true
    }

    async fn write_file(&mut self, path: &Path, data: &[u8]) {
        if let Err(e) = write_atomically(path, data).await {
            let what = format!("cannot write {}: {e}", path.display());
            let kind = e.kind().to_string();
            if !self.logged.contains(&kind) {
                tracing::error!(app = %self.app.name, stream = %self.name, "dash: {what} (further errors like this are not logged; the stream goes on)");
                self.logged.push(kind);
            }
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_leave_dash_path_get_no_path() {
        let dir = Path::new("/srv/dash");
        for nested in [false, true] {
            for bad in ["../x", "/abs", "", "..", "a/b", "a\\b", "a\nb"] {
                assert!(manifest_path(dir, bad, nested).is_err(), "{bad:?} nested={nested}");
            }
        }
        assert_eq!(manifest_path(dir, "cam.1", false).unwrap(), Path::new("/srv/dash/cam.1.mpd"));
        assert_eq!(manifest_path(dir, "cam", true).unwrap(), Path::new("/srv/dash/cam/index.mpd"));
    }

    /// An old task's cleanup and a new publish of the name, interleaved at the cleanup's first
    /// await (a current-thread runtime runs the spawned publish there): the new publish's init
    /// segment survives. Before, the old task decided "not replaced", awaited its first unlink,
    /// the publish registered and wrote its init, and the old task then removed it.
    #[tokio::test(flavor = "current_thread")]
    async fn an_old_cleanup_never_removes_a_new_publishs_init_segments() {
        let dir = std::env::temp_dir().join(format!("sluice-dash-race-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!("rtmp {{ server {{ application a {{ dash on; dash_path {}; }} }} }}", dir.display());
        let app = Arc::new(crate::config::Config::parse(&text, "t").unwrap().servers[0].apps[0].clone());
        let store = DashStore::new(CancellationToken::new());
        let (mpd, init) = (dir.join("cam.mpd"), dir.join("cam-init.m4v"));
        for f in [&mpd, &init] {
            std::fs::write(f, b"old").unwrap();
            store.files().insert(f.clone(), Bytes::from_static(b"old"));
        }
        store.writers().insert(mpd.clone(), Writer { id: 1, end: 10_000 });
        let mut old = DashTask {
            store: store.clone(),
            app: app.clone(),
            name: "cam".into(),
            packager: Packager::new(settings(&app), "cam"),
            dir: dir.clone(),
            mpd: mpd.clone(),
            id: 1,
            in_memory: VecDeque::new(),
            inits: vec![init.clone()],
            expired: Removals::default(),
            logged: Vec::new(),
            written: Arc::new(watch::channel(0).0),
            next: Vec::new(),
            variant: None,
            partial: Vec::new(),
        };
        let publish = {
            let (store, init) = (store.clone(), init.clone());
            tokio::spawn(async move {
                // What on_publish and the new task's first init segment do.
                store.writers().insert(init.with_file_name("cam.mpd"), Writer { id: 2, end: 12_000 });
                std::fs::write(&init, b"new").unwrap();
                store.files().insert(init, Bytes::from_static(b"new"));
            })
        };
        old.clean_up().await;
        publish.await.unwrap();
        assert_eq!(std::fs::read(&init).unwrap(), b"new", "the new publish's init segment on disk");
        assert_eq!(store.files().get(&init).map(|b| b.to_vec()), Some(b"new".to_vec()));
        assert_eq!(store.writers().get(&mpd).map(|w| w.id), Some(2), "the new task writes the MPD");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fragment being written is answered with its chunks so far, then each new one, and
    /// the answer ends when it is complete; past [`MAX_WAITING`] such answers, 503.
    #[tokio::test]
    async fn a_fragment_being_written_is_answered_chunk_by_chunk_and_such_answers_are_bounded() {
        use axum::body::HttpBody;
        async fn frame(body: &mut axum::body::Body) -> Option<Bytes> {
            let f = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await?;
            Some(f.unwrap().into_data().unwrap())
        }
        let store = DashStore::new(CancellationToken::new());
        let path = Path::new("/d/cam-0.m4v");
        assert!(store.get(path).await.is_none(), "neither written nor expected: the disk's");
        store.append_part(path, Bytes::from_static(b"styp1"));
        let mut body = store.get(path).await.unwrap().into_body();
        assert_eq!(frame(&mut body).await.unwrap(), "styp1");
        store.append_part(path, Bytes::from_static(b"2"));
        assert_eq!(frame(&mut body).await.unwrap(), "2");
        store.files().insert(path.to_path_buf(), Bytes::from_static(b"styp12"));
        store.complete_part(path);
        assert!(frame(&mut body).await.is_none(), "complete: the answer ends");
        store.append_part(Path::new("/d/cam-1.m4v"), Bytes::from_static(b"s"));
        let _all = store.waiting.0.clone().acquire_many_owned(MAX_WAITING as u32).await.unwrap();
        let res = store.get(Path::new("/d/cam-1.m4v")).await.unwrap();
        assert_eq!(res.status(), 503);
    }

    #[test]
    fn cache_control_by_kind() {
        for (path, cc) in [
            ("/d/cam.mpd", cache::MPD),
            ("/d/cam/index.mpd", cache::MPD),
            ("/d/cam-init.m4v", cache::NO_CACHE),
            ("/d/cam/init.m4a", cache::NO_CACHE),
            ("/d/cam-120000.m4v", cache::FRAGMENT),
            ("/d/cam/0.m4a", cache::FRAGMENT),
            ("/d/notes.txt", cache::NO_CACHE),
        ] {
            assert_eq!(cache::control(Path::new(path)), cc, "{path}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(Path::new("/d/a.mpd")), "application/dash+xml");
        assert_eq!(content_type(Path::new("/d/a-0.m4a")), "audio/mp4");
        assert_eq!(content_type(Path::new("/d/a/init.m4v")), "video/mp4");
    }
}

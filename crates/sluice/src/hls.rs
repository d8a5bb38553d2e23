//! nginx-rtmp's `hls` module: every published stream of an application with `hls on` gets a task
//! that subscribes to it in the hub, cuts it into segments (the `hls` crate) and writes the
//! playlist and segments to `hls_path` as nginx-rtmp names them. Live playlists, recent segments,
//! low-latency parts and init segments are also kept in memory and served from there by the
//! HTTP server, with blocking playlist reload for low-latency HLS.
//!
//! | directive | meaning |
//! |---|---|
//! | `hls`, `hls_path` | write HLS for every stream of the application into this directory |
//! | `hls_fragment`, `hls_max_fragment`, `hls_fragment_slicing` | where segments are cut |
//! | `hls_playlist_length`, `hls_type` | the playlist window; `event` keeps everything |
//! | `hls_continuous`, `hls_nested`, `hls_base_url`, `hls_fragment_naming[_granularity]` | names and numbering |
//! | `hls_cleanup` | remove segments that left the window, and everything after the stream ends |
//! | `hls_sync`, `hls_muxdelay`, `hls_max_audio_delay`, `hls_audio_buffer_size` | MPEG-TS timing |
//! | `hls_keys`, `hls_key_path`, `hls_key_url`, `hls_fragments_per_key` | AES-128 encryption |
//! | `hls_fragment_type mpegts\|fmp4`, `hls_low_latency`, `hls_part_duration` | sluice extensions |
//! | `hls_variant` | master playlists of the live variants (`variant`; also the transcode ladder's) |
//!
//! The directives are parsed in `config::hls`. Everything here is I/O glue; the HLS logic is the
//! sans-IO `hls` crate.
//!
//! Every publish gets a session number (from the Unix clock in ms, unique within the process)
//! that every segment, part, init and key name carries (`NAME-SESSION-ID.ts`): files are served
//! as immutable, so a later publish of the same name must never reuse a URL. Stream names are
//! checked again here (`untrusted::stream_name`) before they become paths.
//!
//! A publisher that leaves does not end the playlist at once: the task keeps its subscription
//! (the hub keeps the stream) for `hls_playlist_length`, and if the name is published again
//! meanwhile the same playlist goes on after `#EXT-X-DISCONTINUITY` under a new session
//! (`Segmenter::interrupt`); `on_publish` then starts no second task. Otherwise, or at shutdown,
//! the playlist ends (`#EXT-X-ENDLIST`) and, with `hls_cleanup`, its files go.
//!
//! With `hls_fragment_type fmp4` and `dash on` in the application (no `hls_keys`),
//! a stream's video and audio are split into separate CMAF tracks (`hls::Settings::demux`):
//! `NAME.m3u8` is then a master playlist over `NAME-video.m3u8` and `NAME-audio.m3u8`, and the
//! task hands every init segment and segment to a `dash::shared::Sink`, which serves DASH from the
//! same files and the same `Bytes` (the DASH module runs no packager for that stream).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderValue;
use bytes::Bytes;
use hls::{Container, Event, KeySettings, Naming, Position, Segmenter, Settings, Slicing, Tracks};
use rtmp::MediaKind;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::atomic_file::write_atomically;
use crate::config::{AppConf, HlsConf, HlsFragmentType, HlsNaming, HlsSlicing, HlsType};
use crate::hub::{Entry, Stream};
use crate::untrusted::{self, NameError};

mod repair;
mod variant;
pub mod viewers;

/// Ring entries the HLS task takes at a time.
const MAX_BATCH: usize = 256;
/// Segments whose parts stay in memory (the playlist lists parts for about three target
/// durations).
const PART_SEGMENTS: u64 = 4;
/// Complete segments kept in memory per stream: players fetch the newest; older ones are read
/// from disk. (The whole window would be hundreds of MiB for a few hundred streams.)
const MEMORY_SEGMENTS: usize = 3;
/// Keys kept in memory per stream besides those the playlist still uses (older ones are read
/// from `hls_key_path` on disk).
const MEMORY_KEYS: usize = 2;
/// Largest playlist `hls_continuous` reads back from disk.
const MAX_PREVIOUS_PLAYLIST: u64 = 4 << 20;
/// Most blocking requests wait before `503` (RFC 8216bis §6.2.5.2 suggests three target
/// durations; this caps it).
const MAX_BLOCK: Duration = Duration::from_secs(15);

/// Live HLS content in memory, keyed by the absolute path it has on disk, so any HTTP location
/// that maps a URL to that file (a `root`, an `alias`, or the implicit `hls_path` location) serves
/// it from memory first.
#[derive(Default)]
pub struct HlsStore {
    files: Mutex<HashMap<PathBuf, Stored>>,
    /// Live playlists by their path.
    playlists: Mutex<HashMap<PathBuf, Arc<LivePlaylist>>>,
    /// The HLS tasks, so shutdown lets them write their last playlist.
    tasks: TaskTracker,
    /// The stream each playlist's task writes, while it would take a new publish of it (live,
    /// or waiting for its publisher to come back): `on_publish` starts no second task then.
    writers: Mutex<HashMap<PathBuf, Arc<Stream>>>,
    /// Server shutdown: ended streams then skip waiting for their cleanup.
    shutdown: CancellationToken,
    /// The live variants of every `hls_variant` master playlist.
    variants: variant::Registry,
    /// Streams pulled on demand for HLS viewers ([`viewers`]).
    viewers: Arc<viewers::Viewers>,
}

/// A file in memory, with the validators every answer for it carries, made once.
#[derive(Clone)]
struct Stored {
    data: Bytes,
    kind: StoredKind,
    /// `"MS-LEN"`: when it came into memory and its length.
    etag: HeaderValue,
    /// When it came into memory.
    last_modified: HeaderValue,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StoredKind {
    Segment,
    Part,
    Init,
    Key,
}

/// One stream's playlist as HTTP sees it.
pub struct LivePlaylist {
    state: Mutex<PlaylistState>,
    /// Bumped on every change; blocked requests wait on it.
    changed: watch::Sender<u64>,
}

#[derive(Default, Clone)]
struct PlaylistState {
    /// Shared with every answer: a request or a wake-up copies no text.
    text: Bytes,
    position: Position,
    part_target: Option<Duration>,
    live: bool,
    /// When the text last changed (`Last-Modified` once ended).
    modified: Option<SystemTime>,
    /// Changes so far: with `modified`, the playlist's `ETag`.
    version: u64,
    /// The answer headers made from the fields above, made again only when those change.
    headers: Option<PlaylistHeaders>,
}

/// A playlist's `ETag` and `Cache-Control` values, made once per change rather than once per
/// answer (thousands of blocking reloads are answered at each part).
#[derive(Clone)]
struct PlaylistHeaders {
    /// The `modified`, `version` and target duration they were made for.
    made_for: (Option<SystemTime>, u64, u64),
    etag: HeaderValue,
    live: HeaderValue,
    settled: HeaderValue,
}

/// What an HTTP request for a live HLS file gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// `Cache-Control` ([`cache`] says which).
    pub cache_control: HeaderValue,
    /// `ETag`: a strong validator (`If-None-Match` is answered `304` by the HTTP layer).
    pub etag: Option<HeaderValue>,
    /// `Last-Modified` (an HTTP date), on answers that cannot change within the second it names
    /// (not on live playlists, which change several times a second: `If-Modified-Since` would
    /// then answer `304` for a playlist the client has not seen).
    pub last_modified: Option<HeaderValue>,
    /// The body.
    pub body: Bytes,
}

/// `Cache-Control` of each kind of answer, for browsers and for CDNs in front (Apple's
/// low-latency HLS guidance, RFC 8216bis §6.2.5.2, and what nginx `proxy_cache` obeys).
pub mod cache {
    /// Segments, parts and init segments: their names carry the publish's session and are never
    /// given to other bytes.
    pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
    /// Keys (a CDN should not keep them), errors (`400`, `503`: the next try may succeed) and
    /// missing files: asked again every time.
    pub const NO_CACHE: &str = "no-cache";

    /// A live playlist without a blocking request: at most half a target duration old (at
    /// least 1 s, the header's unit), so a cache answers the crowd and a player polling
    /// every target duration still sees every segment.
    pub fn live_playlist(target_duration: u64) -> String {
        format!("public, max-age={}", (target_duration / 2).max(1))
    }

    /// A blocking reload (`_HLS_msn`/`_HLS_part`) answered with the playlist holding that part,
    /// and an ended playlist (`#EXT-X-ENDLIST`): the answer for that URL never gets more wrong
    /// than the playlist it is, so six target durations (Apple's figure for blocking reloads).
    /// An ended playlist is not kept longer, so a later publish of the name is seen soon.
    pub fn settled_playlist(target_duration: u64) -> String {
        format!("public, max-age={}", 6 * target_duration.max(1))
    }
}

impl HlsStore {
    /// An empty store; `shutdown` is the server's.
    pub fn new(shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self { shutdown, ..Self::default() })
    }

    /// Wait (up to `grace`) for the HLS tasks to finish their playlists after shutdown.
    pub async fn drain(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            tracing::warn!("some HLS writers did not finish within {grace:?}");
        }
    }

    /// Segments the live playlist of `app`/`name` has completed (its media sequence number
    /// after the last complete one); `None` when the stream has no playlist in memory.
    pub fn segments_written(&self, app: &AppConf, name: &str) -> Option<u64> {
        let dir = app.hls.path.as_deref().filter(|_| app.hls.enabled)?;
        let path = playlist_path(dir, name, app.hls.nested).ok()?;
        let playlist = self.playlists().get(&path).cloned()?;
        let position = playlist.state().position;
        Some(position.last_complete.map_or(0, |msn| msn + 1))
    }

    /// Let an HLS (or DASH) request of `file` by `client` start or keep the on-demand pull of
    /// its stream ([`viewers`]), and wait for a starting pull's first playlist (MPD); answered as
    /// usual unless this says otherwise.
    pub async fn admit_viewer(
        &self,
        servers: &[Arc<crate::server::ServerCtx>],
        dash: &crate::dash::DashStore,
        file: &Path,
        client: std::net::SocketAddr,
    ) -> viewers::Admission {
        let ready = viewers::Ready { hls: self, dash, shutdown: &self.shutdown };
        self.viewers.admit(&ready, servers, file, client).await
    }

    /// Whether `path` is an `hls_variant` master playlist with a live variant (its variants are
    /// streams of their own: a request of the master starts no pull).
    fn is_master(&self, path: &Path) -> bool {
        self.variants.has_master(path)
    }

    /// Whether the playlist at `path` is in memory and lists a segment (or has ended): what a
    /// player or a cache in front should get rather than an empty live playlist.
    fn has_playlist(&self, path: &Path) -> bool {
        let Some(playlist) = self.playlists().get(path).cloned() else { return false };
        let st = playlist.state.lock().unwrap_or_else(|e| e.into_inner());
        st.position.last_complete.is_some() || !st.live
    }

    fn files(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Stored>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn playlists(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<LivePlaylist>>> {
        self.playlists.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answer a request for `path` (the file the URL maps to) from memory, or `None` to let the
    /// HTTP server read the disk. `query` carries `_HLS_msn`/`_HLS_part` for blocking reload.
    pub async fn get(&self, path: &Path, query: Option<&str>) -> Option<Reply> {
        let playlist = self.playlists().get(path).cloned();
        if let Some(p) = playlist {
            return Some(p.reply(query).await);
        }
        if let Some(s) = self.files().get(path).cloned() {
            return Some(stored_reply(path, &s));
        }
        // A low-latency client asks for the part its preload hint names before it exists.
        let owner = self.part_owner(path)?;
        let target = owner.state().part_target?;
        let mut rx = owner.changed.subscribe();
        let wait = (target * 3).clamp(Duration::from_secs(1), MAX_BLOCK);
        let found = tokio::time::timeout(wait, async {
            loop {
                if let Some(s) = self.files().get(path).cloned() {
                    return Some(s);
                }
                // Between publishers no segment is open, and the part a hint named before the
                // publisher left never comes (the next publish names its parts anew).
                let st = owner.state();
                if !st.live || st.position.open.is_none() || rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match found {
            Ok(Some(s)) => Some(stored_reply(path, &s)),
            _ => None,
        }
    }

    /// The live playlist a part file name (`NAME-ID.K.ext`, nested `NAME/ID.K.ext`) belongs to.
    fn part_owner(&self, path: &Path) -> Option<Arc<LivePlaylist>> {
        let file = path.file_name()?.to_str()?;
        let dir = path.parent()?;
        let mut pieces = file.rsplitn(3, '.');
        let (_ext, _part, stem) = (pieces.next()?, pieces.next()?, pieces.next()?);
        let playlists = self.playlists();
        if let Some(p) = playlists.get(&dir.join("index.m3u8")) {
            return Some(p.clone());
        }
        // `NAME-SESSION-ID`: the name may hold dashes itself.
        let name = stem.rsplitn(3, '-').nth(2)?;
        playlists.get(&dir.join(format!("{name}.m3u8"))).cloned()
    }

    fn writers(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<Stream>>> {
        self.writers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put(&self, path: PathBuf, data: Bytes, kind: StoredKind) {
        let modified = SystemTime::now();
        let etag = etag(modified, data.len() as u64);
        let last_modified = header_value(crate::http::http_date(modified));
        self.files().insert(path, Stored { data, kind, etag, last_modified });
    }

    fn remove(&self, path: &Path) {
        self.files().remove(path);
    }
}

impl crate::http::LiveContent for HlsStore {
    fn get<'a>(
        &'a self,
        file: &'a Path,
        query: Option<&'a str>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<axum::response::Response>> + Send + 'a>> {
        Box::pin(async move { self.get(file, query).await.map(Reply::into_response) })
    }
}

impl Reply {
    fn into_response(self) -> axum::response::Response {
        use axum::http::{header, StatusCode};
        let mut res = axum::response::Response::new(axum::body::Body::from(self.body));
        *res.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        h.insert(header::CACHE_CONTROL, self.cache_control);
        if let Some(etag) = self.etag {
            h.insert(header::ETAG, etag);
        }
        if let Some(modified) = self.last_modified {
            h.insert(header::LAST_MODIFIED, modified);
        }
        res
    }

    /// A short answer that no cache keeps.
    fn error(status: u16, text: &'static str) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            cache_control: HeaderValue::from_static(cache::NO_CACHE),
            etag: None,
            last_modified: None,
            body: Bytes::from_static(text.as_bytes()),
        }
    }
}

/// A strong validator: `"MS-N"`, milliseconds since the Unix epoch of `modified`, then what
/// tells versions of the same moment apart (a file's length, a playlist's change count).
fn etag(modified: SystemTime, n: u64) -> HeaderValue {
    let ms = modified.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    header_value(format!("\"{ms:x}-{n:x}\""))
}

/// A header value made by sluice (digits, dates, fixed words): always valid.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static(""))
}

fn stored_reply(path: &Path, s: &Stored) -> Reply {
    let cache_control = match s.kind {
        StoredKind::Key => cache::NO_CACHE,
        StoredKind::Segment | StoredKind::Part | StoredKind::Init => cache::IMMUTABLE,
    };
    Reply {
        status: 200,
        content_type: content_type(path),
        cache_control: HeaderValue::from_static(cache_control),
        etag: Some(s.etag.clone()),
        last_modified: Some(s.last_modified.clone()),
        body: s.data.clone(),
    }
}

/// MIME types of what HLS writes.
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("ts") => "video/mp2t",
        Some("m4s") => "video/iso.segment",
        Some("mp4") => "video/mp4",
        _ => "application/octet-stream",
    }
}

impl LivePlaylist {
    fn state(&self) -> PlaylistState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, text: String, position: Position, live: bool) {
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.text != text.as_bytes() || st.version == 0 {
                st.version += 1;
                st.modified = Some(SystemTime::now());
                st.text = Bytes::from(text);
            }
            st.position = position;
            st.live = live;
            st.make_headers();
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// The playlist, after waiting for the segment/part a low-latency client asked for.
    async fn reply(&self, query: Option<&str>) -> Reply {
        let st = self.state();
        let Some((msn, part)) = st.part_target.and(blocking_request(query)) else { return st.ok(false) };
        // RFC 8216bis §6.2.5.2: a request more than two segments ahead is a client error.
        let next = st.position.open.map_or(st.position.last_complete.map_or(0, |m| m + 1), |(m, _)| m);
        if msn > next + 2 {
            return Reply::error(400, "_HLS_msn is too far ahead\n");
        }
        let wait = Duration::from_secs(st.position.target_duration * 3).min(MAX_BLOCK);
        let mut rx = self.changed.subscribe();
        let ready = tokio::time::timeout(wait, async {
            loop {
                let st = self.state();
                if st.position.has(msn, part) || !st.live || rx.changed().await.is_err() {
                    return st;
                }
            }
        })
        .await;
        match ready {
            Ok(st) => st.ok(true),
            Err(_) => Reply::error(503, "the requested part did not come in time\n"),
        }
    }
}

impl PlaylistHeaders {
    fn new(made_for: (Option<SystemTime>, u64, u64)) -> Self {
        let (modified, version, target) = made_for;
        PlaylistHeaders {
            made_for,
            etag: etag(modified.unwrap_or(UNIX_EPOCH), version),
            live: header_value(cache::live_playlist(target)),
            settled: header_value(cache::settled_playlist(target)),
        }
    }
}

impl PlaylistState {
    /// The answer headers, made again first if what they say changed.
    fn make_headers(&mut self) -> &PlaylistHeaders {
        let made_for = (self.modified, self.version, self.position.target_duration);
        if self.headers.as_ref().is_none_or(|h| h.made_for != made_for) {
            self.headers = Some(PlaylistHeaders::new(made_for));
        }
        self.headers.get_or_insert_with(|| PlaylistHeaders::new(made_for))
    }

    /// The playlist as it is now; `settled` when it answers a blocking request it satisfies.
    fn ok(mut self, settled: bool) -> Reply {
        let ended = !self.live;
        // Made already, unless the state was built without `update` or `make_headers`.
        let h = self.make_headers();
        let cache_control = if settled || ended { h.settled.clone() } else { h.live.clone() };
        let etag = h.etag.clone();
        let modified = self.modified.unwrap_or(UNIX_EPOCH);
        Reply {
            status: 200,
            content_type: "application/vnd.apple.mpegurl",
            cache_control,
            etag: Some(etag),
            last_modified: ended.then(|| header_value(crate::http::http_date(modified))),
            body: self.text,
        }
    }
}

/// `_HLS_msn=N[&_HLS_part=M]` from a query string.
fn blocking_request(query: Option<&str>) -> Option<(u64, Option<u32>)> {
    let mut msn = None;
    let mut part = None;
    for pair in query?.split('&') {
        match pair.split_once('=') {
            Some(("_HLS_msn", v)) => msn = v.parse().ok(),
            Some(("_HLS_part", v)) => part = v.parse().ok(),
            _ => {}
        }
    }
    Some((msn?, part))
}

/// The segmenter settings for an application.
pub fn settings(conf: &HlsConf) -> Settings {
    Settings {
        fragment: conf.fragment,
        max_fragment: conf.max_fragment,
        playlist_length: conf.playlist_length,
        sync: conf.sync,
        muxdelay: conf.muxdelay,
        slicing: match conf.fragment_slicing {
            HlsSlicing::Plain => Slicing::Plain,
            HlsSlicing::Aligned => Slicing::Aligned,
        },
        naming: match conf.fragment_naming {
            HlsNaming::Sequential => Naming::Sequential,
            HlsNaming::Timestamp => Naming::Timestamp,
            HlsNaming::System => Naming::System,
        },
        naming_granularity: conf.fragment_naming_granularity,
        playlist_type: match conf.playlist_type {
            HlsType::Live => hls::PlaylistType::Live,
            HlsType::Event => hls::PlaylistType::Event,
        },
        max_audio_delay: conf.max_audio_delay,
        audio_buffer_size: conf.audio_buffer_size as usize,
        base_url: conf.base_url.clone(),
        nested: conf.nested,
        container: match conf.fragment_type {
            HlsFragmentType::Mpegts => Container::Ts,
            HlsFragmentType::Fmp4 => Container::Fmp4,
        },
        part_target: conf.low_latency.then_some(conf.part_duration),
        keys: conf
            .keys
            .then(|| KeySettings { fragments_per_key: conf.fragments_per_key, key_url: conf.key_url.clone() }),
        session: None,
        demux: false,
    }
}

/// The last session number given out.
static LAST_SESSION: AtomicU64 = AtomicU64::new(0);

/// A publish's session number: the Unix time in ms, and above every earlier one of this
/// process (two publishes in the same millisecond, a clock stepped back).
fn new_session(now_ms: u64) -> u64 {
    let next = |last: u64| now_ms.max(last + 1);
    let last = LAST_SESSION.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| Some(next(l))).unwrap_or_default();
    next(last)
}

/// Where a stream's playlist goes, relative names refused: `stream_name` was checked when the
/// stream was published, and is checked again here, where the name becomes a path.
fn playlist_path(dir: &Path, name: &str, nested: bool) -> Result<PathBuf, NameError> {
    let name = untrusted::stream_name(name)?;
    Ok(dir.join(hls::segmenter::playlist_file(name, nested)))
}

/// Before serving: finish the playlists a crash left open in every `hls_path`.
pub fn repair_on_start(config: &crate::config::Config) {
    let mut dirs: Vec<&Path> = Vec::new();
    for app in config.servers.iter().flat_map(|s| &s.apps).filter(|a| a.hls.enabled) {
        if let Some(dir) = app.hls.path.as_deref().filter(|d| !dirs.contains(d)) {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        for line in repair::repair_dir(dir) {
            match line {
                Ok(path) => tracing::warn!(path = %path.display(), "hls: finished a playlist a crash left open"),
                Err(e) => tracing::error!("hls: {e}"),
            }
        }
    }
}

/// The HLS output module.
pub struct Output {
    store: Arc<HlsStore>,
    /// Where streams whose segments DASH shares (`dash::shared`) put them.
    dash: Option<Arc<crate::dash::DashStore>>,
}

impl Output {
    /// The module, writing into `store` (shared with the HTTP server).
    pub fn new(store: Arc<HlsStore>) -> Self {
        Self { store, dash: None }
    }

    /// Streams of applications with `hls_fragment_type fmp4` and `dash on` also serve DASH from
    /// their segments, through `dash`.
    pub fn sharing_with(self, dash: Arc<crate::dash::DashStore>) -> Self {
        Self { dash: Some(dash), ..self }
    }
}

impl crate::modules::Module for Output {
    fn name(&self) -> &'static str {
        "hls"
    }

    fn on_publish(&self, ctx: &crate::modules::PublishCtx<'_>) {
        on_publish(&self.store, self.dash.as_ref(), ctx.source.app, ctx.stream, ctx.source.name);
    }
}

/// Start HLS for a stream just published, if the application has it on. A stream whose
/// publisher came back while its task still waits keeps that task: it reads the new publish from
/// the stream and continues the playlist.
fn on_publish(
    store: &Arc<HlsStore>,
    dash: Option<&Arc<crate::dash::DashStore>>,
    app: &Arc<AppConf>,
    stream: &Arc<Stream>,
    name: &str,
) {
    let Some(dir) = app.hls.path.clone().filter(|_| app.hls.enabled) else { return };
    if crate::dash::shared::shadows_split(app, name) {
        return tracing::error!(app = %app.name, stream = %untrusted::for_log(name), "hls: this stream's playlist would be at the path of another stream's video or audio playlist (HLS fMP4 and DASH share segments: NAME-video.m3u8, NAME-audio.m3u8); no HLS for this stream (DASH packages it itself)");
    }
    // Held until the new task is registered; a waiting task gives up under it too.
    let mut writers = store.writers();
    let path = playlist_path(&dir, name, app.hls.nested).ok();
    if path.as_ref().and_then(|p| writers.get(p)).is_some_and(|s| Arc::ptr_eq(s, stream)) {
        tracing::debug!(app = %app.name, stream = %untrusted::for_log(name), "hls: the waiting playlist continues");
        return;
    }
    let (_, sub) = stream.subscribe();
    let dash = dash.filter(|_| crate::dash::shared::applies(app, name)).cloned();
    match HlsTask::new(store.clone(), app.clone(), dir, name.to_string(), dash) {
        Ok(mut task) => {
            writers.insert(task.playlist_path.clone(), stream.clone());
            drop(writers);
            store.tasks.spawn(async move { task.run(sub).await });
        }
        Err(e) => {
            tracing::error!(app = %app.name, stream = %untrusted::for_log(name), "hls: {e:#}; no HLS for this stream")
        }
    }
}

/// A split stream's video and audio media playlists (`hls::Settings::demux`).
struct SplitPlaylists {
    video_path: PathBuf,
    audio_path: PathBuf,
    video: Arc<LivePlaylist>,
    audio: Arc<LivePlaylist>,
}

/// One stream's HLS writer.
struct HlsTask {
    store: Arc<HlsStore>,
    app: Arc<AppConf>,
    dir: PathBuf,
    key_dir: PathBuf,
    name: String,
    seg: Segmenter,
    playlist_path: PathBuf,
    live: Arc<LivePlaylist>,
    /// Parts in memory, by segment.
    parts: VecDeque<(u64, PathBuf)>,
    /// Complete segments held in memory, oldest first.
    in_memory: VecDeque<PathBuf>,
    /// The init segments in memory (two when video and audio are split).
    inits: Vec<(Tracks, PathBuf)>,
    /// Video and audio split: their media playlists (the master takes `playlist_path`).
    split: Option<SplitPlaylists>,
    /// DASH lists these segments too (`dash::shared`).
    sink: Option<crate::dash::shared::Sink>,
    /// Keys in memory, oldest first, with the first segment that uses each (known once that
    /// segment is complete).
    keys: VecDeque<(Option<u64>, PathBuf)>,
    /// `hls_continuous`: the previous publish's playlist is still to be read from disk.
    resume_from_disk: bool,
    /// Errors already logged (disk full and the like are said once).
    logged: Vec<String>,
    /// Removes expired segment files after their grace (`hls_cleanup`); started when needed.
    reaper: Option<Reaper>,
    /// The master playlist this stream is a variant of (`hls_variant`).
    variant: Option<variant::Member>,
    /// Its frame rate and bit rates, for the master playlist.
    meter: hls::master::Meter,
    /// A publisher is live (between `Published` and `Unpublished`): only then is the stream
    /// listed as a variant.
    publishing: bool,
    /// Listed in its master playlist now.
    listed: bool,
}

impl HlsTask {
    fn new(
        store: Arc<HlsStore>,
        app: Arc<AppConf>,
        dir: PathBuf,
        name: String,
        dash: Option<Arc<crate::dash::DashStore>>,
    ) -> anyhow::Result<Self> {
        let playlist_path = playlist_path(&dir, &name, app.hls.nested)?;
        let sink = dash.and_then(|d| crate::dash::shared::Sink::new(d, app.clone(), &name));
        let s = Settings { session: Some(new_session(unix_ms())), demux: sink.is_some(), ..settings(&app.hls) };
        let mut seg = Segmenter::new(s, &name, Box::new(random_key))?;
        let mut resume_from_disk = false;
        if app.hls.continuous {
            // The playlist of a publish that ended moments ago is in memory; one from before a
            // restart is read from disk in `run`, off the runtime's threads.
            let paths = resume_paths(&dir, &playlist_path, &name, &app, sink.is_some());
            match paths.iter().find_map(|p| previous_in_memory(&store, p)) {
                Some(previous) => {
                    seg.resume(previous);
                    let audio =
                        sink.as_ref().and_then(|_| previous_in_memory(&store, &split_audio_path(&dir, &name, &app)));
                    if let Some(audio) = audio {
                        seg.resume_audio_gaps(&audio);
                    }
                }
                None => resume_from_disk = true,
            }
        }
        let mut first = PlaylistState {
            text: Bytes::from(seg.playlist()),
            position: seg.position(),
            part_target: app.hls.low_latency.then_some(app.hls.part_duration),
            live: true,
            modified: Some(SystemTime::now()),
            version: 1,
            headers: None,
        };
        first.make_headers();
        let live = Arc::new(LivePlaylist { state: Mutex::new(first), changed: watch::channel(0).0 });
        store.playlists().insert(playlist_path.clone(), live.clone());
        let variant = variant::Member::new(&store, &app, &dir, &name);
        let key_dir = app.hls.key_path.clone().unwrap_or_else(|| dir.clone());
        Ok(HlsTask {
            store,
            app,
            dir,
            key_dir,
            name,
            seg,
            playlist_path,
            live,
            parts: VecDeque::new(),
            in_memory: VecDeque::new(),
            inits: Vec::new(),
            split: None,
            sink,
            keys: VecDeque::new(),
            resume_from_disk,
            logged: Vec::new(),
            reaper: None,
            variant,
            meter: hls::master::Meter::default(),
            publishing: true,
            listed: false,
        })
    }

    async fn run(&mut self, mut sub: crate::hub::Subscriber) {
        tracing::info!(app = %self.app.name, stream = %self.name, path = %self.playlist_path.display(), "hls: start");
        if std::mem::take(&mut self.resume_from_disk) {
            let demux = self.sink.is_some();
            let mut previous = None;
            for path in resume_paths(&self.dir, &self.playlist_path, &self.name, &self.app, demux) {
                previous = previous_on_disk(&path).await;
                if previous.is_some() {
                    break;
                }
            }
            if let Some(previous) = previous {
                self.seg.resume(previous);
                if demux {
                    if let Some(audio) = previous_on_disk(&split_audio_path(&self.dir, &self.name, &self.app)).await {
                        self.seg.resume_audio_gaps(&audio);
                    }
                }
                self.publish_playlist_in_memory();
            }
        }
        if let Err(e) = tokio::fs::create_dir_all(self.playlist_path.parent().unwrap_or(&self.dir)).await {
            self.log_once(format!("cannot create {}: {e}", self.dir.display()));
        }
        // While the publisher is away: when the playlist ends unless it comes back.
        let mut gap: Option<tokio::time::Instant> = None;
        loop {
            let batch = match gap {
                None => sub.next_batch(MAX_BATCH).await,
                Some(deadline) => match self.wait_for_publisher(&mut sub, deadline).await {
                    Some(batch) => batch,
                    None => return self.finish(sub).await,
                },
            };
            if batch.skipped > 0 {
                tracing::warn!(app = %self.app.name, stream = %self.name, skipped = batch.skipped, "hls: fell behind the stream; frames skipped");
            }
            for entry in batch.entries {
                match entry {
                    Entry::Frame(f) => match f.kind {
                        MediaKind::Video => {
                            if self.variant.is_some() && !f.sequence_header {
                                self.meter.video_frame(f.timestamp);
                            }
                            self.seg.push_video(f.timestamp, f.video_header(), &f.payload, unix_ms())
                        }
                        MediaKind::Audio => self.seg.push_audio(f.timestamp, f.audio_header(), &f.payload, unix_ms()),
                        MediaKind::Data => {}
                    },
                    Entry::Published => {
                        self.publishing = true;
                        self.meter.reset();
                        if gap.take().is_some() {
                            tracing::info!(app = %self.app.name, stream = %self.name, "hls: publisher back; the playlist continues after a discontinuity");
                        }
                    }
                    Entry::Unpublished if self.store.shutdown.is_cancelled() => return self.finish(sub).await,
                    Entry::Unpublished => {
                        // Players must not be sent to a rendition that stopped.
                        self.leave_master();
                        match self.seg.interrupt(Some(new_session(unix_ms()))) {
                            Ok(()) => {
                                gap = Some(tokio::time::Instant::now() + self.reconnect_window());
                                // DASH's timeline ends with the publish (the next one starts a
                                // new one), after the segment the interruption closed.
                                self.finish_mpd().await;
                            }
                            Err(e) => {
                                tracing::error!(app = %self.app.name, stream = %self.name, "hls: {e}");
                                return self.finish(sub).await;
                            }
                        }
                    }
                }
            }
            self.apply_events().await;
        }
    }

    /// How long a playlist waits for its publisher to come back before it ends: its length.
    /// A player is then still playing what it holds (it is that far behind the live edge at
    /// most), and `hls_cleanup` keeps files that long after they leave the playlist too.
    fn reconnect_window(&self) -> Duration {
        self.app.hls.playlist_length.max(Duration::from_secs(1))
    }

    /// The publisher is away: the next entries of the stream (a new publish), or `None` once
    /// `deadline` or shutdown came first. The task then stops taking publishes, under the
    /// `writers` lock: a publish either reaches this task or starts a new one.
    async fn wait_for_publisher(
        &mut self,
        sub: &mut crate::hub::Subscriber,
        deadline: tokio::time::Instant,
    ) -> Option<crate::hub::Batch> {
        let shutdown = self.store.shutdown.clone();
        tokio::select! {
            batch = sub.next_batch(MAX_BATCH) => return Some(batch),
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.cancelled() => {}
        }
        let mut writers = self.store.writers();
        let batch = sub.try_batch(MAX_BATCH);
        if !batch.entries.is_empty() && !shutdown.is_cancelled() {
            return Some(batch);
        }
        self.stop_writing(&mut writers, sub.stream());
        None
    }

    /// This task takes no more publishes of its stream (unless a newer task already took the
    /// playlist over: then that one's entry stays).
    fn stop_writing(&self, writers: &mut HashMap<PathBuf, Arc<Stream>>, stream: &Arc<Stream>) {
        if writers.get(&self.playlist_path).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            writers.remove(&self.playlist_path);
        }
    }

    /// End the playlist (`#EXT-X-ENDLIST`), then linger and clean up.
    async fn finish(&mut self, sub: crate::hub::Subscriber) {
        self.leave_master();
        self.stop_writing(&mut self.store.writers(), sub.stream());
        self.seg.finish();
        self.apply_events().await;
        self.finish_mpd().await;
        self.ended(sub).await
    }

    /// DASH's MPD turns static.
    async fn finish_mpd(&mut self) {
        // The segment the publisher's leaving closed is listed first.
        self.apply_events().await;
        if let Some(sink) = &mut self.sink {
            sink.finish(unix_ms()).await;
        }
    }

    /// The playlist ended: with `hls_cleanup` everything goes after `hls_playlist_length`,
    /// unless the stream is published again first.
    async fn ended(&mut self, sub: crate::hub::Subscriber) {
        // Like a player that stops: the hub may forget the stream now.
        drop(sub);
        tracing::info!(app = %self.app.name, stream = %self.name, "hls: end of stream");
        self.live.update(self.seg.playlist(), self.seg.position(), false);
        let linger = self.app.hls.playlist_length.max(Duration::from_secs(1));
        let shutdown = self.store.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(linger) => {}
            // Files stay for `hls_continuous` after the restart.
            _ = shutdown.cancelled() => return,
        }
        let replaced = self.replaced();
        if !replaced {
            let mut playlists = self.store.playlists();
            playlists.remove(&self.playlist_path);
            if let Some(split) = &self.split {
                playlists.remove(&split.video_path);
                playlists.remove(&split.audio_path);
            }
        }
        if let Some(sink) = &mut self.sink {
            sink.cleanup(replaced).await;
        }
        for path in self.in_memory.drain(..) {
            self.store.remove(&path);
        }
        for (_, path) in self.parts.drain(..) {
            self.store.remove(&path);
        }
        for path in self.inits.drain(..).map(|(_, p)| p).chain(self.keys.drain(..).map(|(_, p)| p)) {
            self.store.remove(&path);
        }
        if self.app.hls.cleanup && !replaced {
            let split = self.split.iter().flat_map(|s| [s.video_path.clone(), s.audio_path.clone()]);
            let mut files: Vec<PathBuf> =
                self.seg_files_on_disk().into_iter().chain([self.playlist_path.clone()]).chain(split).collect();
            files.sort();
            files.dedup();
            for f in files {
                let _ = tokio::fs::remove_file(&f).await;
            }
            tracing::info!(app = %self.app.name, stream = %self.name, "hls: cleaned up");
        }
    }

    /// Segment and init files the playlist still names (the rest were removed as they
    /// expired).
    fn seg_files_on_disk(&self) -> Vec<PathBuf> {
        let text = self.seg.playlist();
        let Some(list) = hls::playlist::parse_media_playlist(&text) else { return Vec::new() };
        let base = self.playlist_path.parent().unwrap_or(&self.dir);
        // Segments, and the init segment of each publish they come from (`hls_continuous`).
        let uris = list.segments.iter().flat_map(|s| std::iter::once(&s.uri).chain(&s.map));
        let mut files: Vec<PathBuf> = uris.map(|u| base.join(u.rsplit('/').next().unwrap_or(u))).collect();
        files.extend(self.seg.init_file().map(|f| self.dir.join(f)));
        if self.seg.split() {
            let audio: Vec<PathBuf> = files
                .iter()
                .filter_map(|f| Some(f.with_file_name(hls::segmenter::audio_name(f.file_name()?.to_str()?))))
                .collect();
            files.extend(audio);
        }
        files
    }

    async fn apply_events(&mut self) {
        let events: Vec<Event> = std::iter::from_fn(|| self.seg.poll_event()).collect();
        if let Some(member) = self.variant.as_ref().filter(|_| self.listed && self.app.hls.low_latency) {
            variant::set_position(&self.store, member, self.seg.position());
        }
        // The playlist is rendered from the segmenter's state after ALL these events, so what
        // it names must be in memory before it is published, not only up to the current event.
        if self.stage_in_memory(&events) {
            // A part must be fetchable the moment the playlist names it; disk writes come after.
            self.publish_playlist_in_memory();
        }
        let mut playlist_changed = false;
        let mut segment_written = false;
        // The segment whose files are being written: a split segment's video and audio files
        // come one after the other and count as one segment written (`/metrics`).
        let mut writing: Option<(u64, std::time::Instant)> = None;
        for ev in events {
            let same_segment = matches!((&ev, &writing), (Event::Segment { msn, .. }, Some((m, _))) if msn == m);
            if !same_segment {
                if let Some((_, started)) = writing.take() {
                    crate::metrics::hls_segment_written(&self.app.name, started);
                }
            }
            match ev {
                Event::Init { file, data, tracks } => {
                    let path = self.dir.join(file);
                    self.write_file(&path, &data).await;
                    // One per track and publish: its name carries the session. Segments of an
                    // earlier publish still listed find theirs on disk.
                    if self.inits.iter().any(|(t, p)| *t == tracks && *p != path) {
                        for (_, old) in self.inits.drain(..) {
                            self.store.remove(&old);
                        }
                    }
                    self.inits.retain(|(_, p)| *p != path);
                    self.inits.push((tracks, path.clone()));
                    if let Some(sink) = &mut self.sink {
                        sink.init(tracks, &path, &data, self.seg.session()).await;
                    }
                }
                Event::Part { msn, file, data, tracks, media_start_ms, .. } => {
                    if let Some(sink) = &mut self.sink {
                        sink.part(tracks, msn, &data, media_start_ms, unix_ms()).await;
                    }
                    self.parts.push_back((msn, self.dir.join(file)));
                }
                Event::Segment { msn, file, data, duration, tracks, media_ms } => {
                    self.meter.segment(msn, data.len(), duration);
                    segment_written = true;
                    let path = self.dir.join(file);
                    writing.get_or_insert((msn, std::time::Instant::now()));
                    self.write_file(&path, &data).await;
                    if let Some(sink) = &mut self.sink {
                        sink.segment(tracks, &path, &data, media_ms, unix_ms()).await;
                    }
                    self.in_memory.push_back(path);
                    // A split stream has two files a segment.
                    let held = if self.seg.split() { 2 * MEMORY_SEGMENTS } else { MEMORY_SEGMENTS };
                    while self.in_memory.len() > held {
                        if let Some(old) = self.in_memory.pop_front() {
                            self.store.remove(&old);
                        }
                    }
                    self.forget_parts_before(msn.saturating_sub(PART_SEGMENTS));
                    for key in self.keys.iter_mut().filter(|k| k.0.is_none()) {
                        key.0 = Some(msn);
                    }
                }
                Event::Key { file, key } => {
                    let path = self.key_dir.join(file);
                    self.write_file(&path, &key).await;
                    self.keys.push_back((None, path));
                }
                Event::Expired { msn, file } => {
                    self.forget_keys_before(msn + 1);
                    let path = self.dir.join(file);
                    self.store.remove(&path);
                    self.in_memory.retain(|p| *p != path);
                    if self.app.hls.cleanup {
                        let after = self.app.hls.playlist_length;
                        self.reaper.get_or_insert_with(Reaper::start).schedule(path, after).await;
                    }
                }
                Event::Playlist => playlist_changed = true,
                Event::Warning(w) => tracing::warn!(app = %self.app.name, stream = %self.name, "hls: {w}"),
            }
        }
        if let Some((_, started)) = writing {
            crate::metrics::hls_segment_written(&self.app.name, started);
        }
        // A task that gave up waiting for its publisher just as the name was published again
        // ends its playlist after the next task took the path over: the file is the new one's.
        if playlist_changed && !self.replaced() {
            self.publish_playlist_in_memory();
            let text = self.media_playlist();
            if let Some(split) = &self.split {
                let (video, audio) = (split.video_path.clone(), split.audio_path.clone());
                let audio_text = self.seg.audio_playlist().unwrap_or_default();
                self.write_file(&video, text.as_bytes()).await;
                self.write_file(&audio, audio_text.as_bytes()).await;
            }
            let top = self.top_playlist(text.clone());
            self.write_file(&self.playlist_path.clone(), top.as_bytes()).await;
            if segment_written {
                self.join_master(&text);
            }
        }
        if segment_written {
            self.publish_mpd().await;
        }
    }

    /// What `NAME.m3u8` says: the media playlist, or with video and audio split the master.
    fn top_playlist(&self, media: String) -> String {
        self.seg.master_playlist().unwrap_or(media)
    }

    /// DASH's MPD from the segments so far (`dash::shared`).
    async fn publish_mpd(&mut self) {
        let media = self.dash_media();
        if let Some(sink) = &mut self.sink {
            sink.publish(&media, unix_ms()).await;
        }
    }

    /// The tracks as the MPD describes them.
    fn dash_media(&self) -> crate::dash::shared::Media {
        let (video, audio) = self.seg.track_codecs();
        let (w, h) = self.seg.media_info().resolution.unwrap_or((0, 0));
        let (rate, channels) = self.seg.audio_format().unwrap_or((0, 0));
        crate::dash::shared::Media {
            video: video.map(|c| (c, w as u16, h as u16)),
            audio: audio.map(|c| (c, rate, channels)),
        }
    }

    /// The media playlist; a low-latency variant's reports where the other variants of its
    /// master are (`#EXT-X-RENDITION-REPORT`).
    fn media_playlist(&self) -> String {
        let mut text = self.seg.playlist();
        if let Some(member) = self.variant.as_ref().filter(|_| self.listed && self.app.hls.low_latency) {
            if !self.seg.ended() {
                text.push_str(&variant::rendition_reports(&self.store, member));
            }
        }
        text
    }

    /// After a media playlist write with a new segment: list (or update) this stream in its
    /// master playlist, while its publisher is live.
    fn join_master(&mut self, playlist: &str) {
        let Some(member) = self.variant.as_ref().filter(|_| self.publishing && !self.seg.ended()) else { return };
        let measured = hls::master::Variant {
            params: Vec::new(),
            uri: String::new(),
            media: self.seg.media_info(),
            frame_rate: self.meter.frame_rate(),
            peak_bandwidth: self.meter.peak_bandwidth(),
            average_bandwidth: self.meter.average_bandwidth(),
            // Split: listed by its video playlist, its audio playlist as an audio rendition.
            audio: self.seg.split().then(|| {
                let channels = self.seg.audio_format().map_or(2, |(_, c)| c);
                hls::master::AudioRendition { channels, ..Default::default() }
            }),
        };
        let version = playlist
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-VERSION:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(3);
        let master = member.master().display().to_string();
        match variant::update(&self.store, member, measured, version) {
            Ok(()) if !self.listed => {
                self.listed = true;
                tracing::info!(app = %self.app.name, stream = %self.name, master = %master, "hls: listed as a variant");
            }
            Ok(()) => {}
            Err(why) => self.log_once(format!("not listed in the master playlist {master}: {why}")),
        }
    }

    /// This stream leaves its master playlist (its publisher left, or its playlist ended).
    fn leave_master(&mut self) {
        self.publishing = false;
        if let Some(member) = &self.variant {
            variant::withdraw(&self.store, member);
            if std::mem::take(&mut self.listed) {
                let master = member.master().display();
                tracing::info!(app = %self.app.name, stream = %self.name, master = %master, "hls: no longer listed as a variant");
            }
        }
    }

    /// Puts what `events` bring (init segments, parts, segments, keys) into memory; whether a
    /// part came, so the playlist is to be published at once.
    fn stage_in_memory(&self, events: &[Event]) -> bool {
        let mut part = false;
        for ev in events {
            let (path, data, kind) = match ev {
                Event::Init { file, data, .. } => (self.dir.join(file), data.clone(), StoredKind::Init),
                Event::Part { file, data, .. } => {
                    part = true;
                    (self.dir.join(file), data.clone(), StoredKind::Part)
                }
                Event::Segment { file, data, .. } => (self.dir.join(file), data.clone(), StoredKind::Segment),
                Event::Key { file, key } => (self.key_dir.join(file), Bytes::copy_from_slice(key), StoredKind::Key),
                _ => continue,
            };
            self.store.put(path, data, kind);
        }
        part
    }

    /// Another task (a later publish) writes this playlist now.
    fn replaced(&self) -> bool {
        self.store.playlists().get(&self.playlist_path).is_some_and(|p| !Arc::ptr_eq(p, &self.live))
    }

    fn publish_playlist_in_memory(&mut self) {
        let (position, live) = (self.seg.position(), !self.seg.ended());
        let media = self.media_playlist();
        if self.seg.split() {
            let audio = self.seg.audio_playlist().unwrap_or_default();
            let split = self.split_playlists();
            split.video.update(media.clone(), position, live);
            split.audio.update(audio, position, live);
        }
        // With video and audio split the master: it also carries the position, so blocking
        // requests and parts named by a preload hint (found by the stream's name) wait as before.
        self.live.update(self.top_playlist(media), position, live);
    }

    /// The split media playlists, registered in the store the first time.
    fn split_playlists(&mut self) -> &SplitPlaylists {
        let (store, dir, app, name) = (&self.store, &self.dir, &self.app, &self.name);
        self.split.get_or_insert_with(|| {
            let (video, audio) = hls::segmenter::split_playlist_files(name, app.hls.nested);
            let live = || {
                Arc::new(LivePlaylist {
                    state: Mutex::new(PlaylistState {
                        part_target: app.hls.low_latency.then_some(app.hls.part_duration),
                        live: true,
                        ..PlaylistState::default()
                    }),
                    changed: watch::channel(0).0,
                })
            };
            let split = SplitPlaylists {
                video_path: dir.join(video),
                audio_path: dir.join(audio),
                video: live(),
                audio: live(),
            };
            let mut playlists = store.playlists();
            playlists.insert(split.video_path.clone(), split.video.clone());
            playlists.insert(split.audio_path.clone(), split.audio.clone());
            split
        })
    }

    /// Keys only segments before `msn` used leave memory (a few stay for players behind the
    /// live edge); their files stay on disk.
    fn forget_keys_before(&mut self, msn: u64) {
        while self.keys.len() > MEMORY_KEYS && self.keys[1].0.is_some_and(|first| first <= msn) {
            if let Some((_, path)) = self.keys.pop_front() {
                self.store.remove(&path);
            }
        }
    }

    fn forget_parts_before(&mut self, msn: u64) {
        while self.parts.front().is_some_and(|(m, _)| *m < msn) {
            if let Some((_, path)) = self.parts.pop_front() {
                self.store.remove(&path);
            }
        }
    }

    async fn write_file(&mut self, path: &Path, data: &[u8]) {
        if let Err(e) = write_atomically(path, data).await {
            self.log_once(format!("cannot write {}: {e}", path.display()));
        }
    }

    fn log_once(&mut self, what: String) {
        let kind = what.split(':').next_back().unwrap_or_default().to_string();
        if !self.logged.contains(&kind) {
            tracing::error!(app = %self.app.name, stream = %self.name, "hls: {what} (further errors like this are not logged; the stream goes on)");
            self.logged.push(kind);
        }
    }
}

/// The media playlists `hls_continuous` may continue, in order: with video and audio split,
/// `NAME.m3u8` is the master and the video playlist holds the segments (a publish that was not split has
/// them in `NAME.m3u8`).
/// A split stream's audio playlist, whose `#EXT-X-GAP`s a resumed playlist keeps.
fn split_audio_path(dir: &Path, name: &str, app: &AppConf) -> PathBuf {
    dir.join(hls::segmenter::split_playlist_files(name, app.hls.nested).1)
}

fn resume_paths(dir: &Path, playlist_path: &Path, name: &str, app: &AppConf, demux: bool) -> Vec<PathBuf> {
    let video = demux.then(|| dir.join(hls::segmenter::split_playlist_files(name, app.hls.nested).0));
    video.into_iter().chain([playlist_path.to_path_buf()]).collect()
}

/// The playlist of an earlier publish of the same stream still in memory (it ended moments
/// ago), as `hls_continuous` asks.
fn previous_in_memory(store: &HlsStore, path: &Path) -> Option<hls::playlist::Restored> {
    let text = store.playlists().get(path).map(|p| p.state().text)?;
    hls::playlist::parse_media_playlist(std::str::from_utf8(&text).ok()?)
}

/// The playlist of an earlier publish on disk (before a restart), read on the blocking pool.
async fn previous_on_disk(path: &Path) -> Option<hls::playlist::Restored> {
    let len = tokio::fs::metadata(path).await.ok()?.len();
    if len > MAX_PREVIOUS_PLAYLIST {
        return None;
    }
    let text = tokio::fs::read_to_string(path).await.ok()?;
    hls::playlist::parse_media_playlist(&text)
}

/// Most expired files one stream's [`Reaper`] holds; past that a file is removed at once.
const MAX_PENDING_REMOVALS: usize = 4096;

/// Expired segment files stay `hls_playlist_length` after they leave the playlist (a player that
/// read it just before may still fetch them), then one task per stream removes them in order.
/// The queue is bounded, so a publisher cutting segments very fast cannot pile up tasks or
/// memory; the task ends once the stream has ended and the queue is empty.
struct Reaper {
    tx: tokio::sync::mpsc::Sender<(tokio::time::Instant, PathBuf)>,
}

impl Reaper {
    fn start() -> Self {
        Self::with_capacity(MAX_PENDING_REMOVALS)
    }

    fn with_capacity(capacity: usize) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, PathBuf)>(capacity);
        tokio::spawn(async move {
            // Every file waits the same grace, so the queue is in due order.
            while let Some((due, path)) = rx.recv().await {
                tokio::time::sleep_until(due).await;
                let _ = tokio::fs::remove_file(&path).await;
            }
        });
        Reaper { tx }
    }

    async fn schedule(&self, path: PathBuf, after: Duration) {
        let due = tokio::time::Instant::now() + after;
        if let Err(e) = self.tx.try_send((due, path)) {
            let (_, path) = e.into_inner();
            let _ = tokio::fs::remove_file(&path).await;
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn random_key() -> [u8; 16] {
    use rand::RngCore;
    let mut key = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Frame;

    #[tokio::test]
    async fn expired_files_wait_their_grace_and_the_removal_queue_is_bounded() {
        let dir = std::env::temp_dir().join(format!("sluice-reaper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files: Vec<PathBuf> = (0..4).map(|i| dir.join(format!("s{i}.ts"))).collect();
        for f in &files {
            std::fs::write(f, b"x").unwrap();
        }
        let reaper = Reaper::with_capacity(1);
        reaper.schedule(files[0].clone(), Duration::from_millis(300)).await;
        tokio::time::sleep(Duration::from_millis(50)).await; // the task holds the first one
        reaper.schedule(files[1].clone(), Duration::from_millis(300)).await;
        reaper.schedule(files[2].clone(), Duration::from_millis(300)).await;
        assert!(files[0].exists() && files[1].exists(), "files wait their grace");
        assert!(!files[2].exists(), "a full queue removes at once instead of growing");
        drop(reaper);
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(!files[0].exists() && !files[1].exists(), "queued files are removed after the stream ends");
        assert!(files[3].exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Stats read how many segments a stream's live playlist completed.
    #[tokio::test]
    async fn segments_written_counts_the_live_playlists_complete_segments() {
        const AVC_HEADER: &[u8] =
            &[0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x0A, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x0A, 1, 0, 2, 0x68, 0xCE];
        let dir = std::env::temp_dir().join(format!("sluice-hls-count-{}", std::process::id()));
        let app = crate::config::test_app(&format!("live on; hls on; hls_path {}; hls_fragment 1s;", dir.display()));
        let store = HlsStore::new(CancellationToken::new());
        let mut task = HlsTask::new(store.clone(), app.clone(), dir.clone(), "s".into(), None).unwrap();
        assert_eq!(store.segments_written(&app, "s"), Some(0));
        assert_eq!(store.segments_written(&app, "other"), None);
        let header = Frame::video(0, Bytes::from_static(AVC_HEADER)).unwrap();
        task.seg.push_video(0, header.video_header(), &header.payload, 0);
        // A keyframe a second for 4 s: three segments complete, the fourth open.
        for i in 0..100u32 {
            let (tag, nal): (u8, &[u8]) =
                if i % 25 == 0 { (0x17, &[0x65, 0x88, 0x84]) } else { (0x27, &[0x41, 0x9a, 0x02]) };
            let mut frame = vec![tag, 1, 0, 0, 0, 0, 0, 0, nal.len() as u8];
            frame.extend_from_slice(nal);
            let f = Frame::video(i * 40, Bytes::from(frame)).unwrap();
            task.seg.push_video(f.timestamp, f.video_header(), &f.payload, u64::from(i * 40));
        }
        task.publish_playlist_in_memory();
        assert_eq!(store.segments_written(&app, "s"), Some(3));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A task that fell behind gets many events at once; the playlist it publishes (rendered
    /// from the segmenter's state after all of them) must name only what is in memory.
    #[tokio::test]
    async fn a_published_playlist_names_only_what_is_in_memory() {
        const AVC_HEADER: &[u8] =
            &[0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x0A, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x0A, 1, 0, 2, 0x68, 0xCE];
        let dir = std::env::temp_dir().join(format!("sluice-hls-stage-{}", std::process::id()));
        let app = crate::config::test_app(&format!(
            "live on; hls on; hls_path {}; hls_fragment 1s; hls_low_latency on; hls_part_duration 200ms;",
            dir.display()
        ));
        let store = HlsStore::new(CancellationToken::new());
        let mut task = HlsTask::new(store.clone(), app, dir.clone(), "s".into(), None).unwrap();
        let push = |task: &mut HlsTask, f: Frame, now: u64| {
            task.seg.push_video(f.timestamp, f.video_header(), &f.payload, now)
        };
        push(&mut task, Frame::video(0, Bytes::from_static(AVC_HEADER)).unwrap(), 0);
        for i in 0..100u32 {
            let (tag, nal): (u8, &[u8]) =
                if i % 25 == 0 { (0x17, &[0x65, 0x88, 0x84]) } else { (0x27, &[0x41, 0x9a, 0x02]) };
            let mut frame = vec![tag, 1, 0, 0, 0, 0, 0, 0, nal.len() as u8];
            frame.extend_from_slice(nal);
            push(&mut task, Frame::video(i * 40, Bytes::from(frame)).unwrap(), u64::from(i * 40));
        }
        let events: Vec<Event> = std::iter::from_fn(|| task.seg.poll_event()).collect();
        assert!(events.iter().filter(|e| matches!(e, Event::Part { .. })).count() > 10, "a burst of parts");
        assert!(task.stage_in_memory(&events));
        let playlist = task.seg.playlist();
        let named: Vec<&str> = playlist
            .lines()
            .filter_map(|l| match l.strip_prefix("#EXT-X-PART:") {
                Some(attrs) => attrs.split("URI=\"").nth(1).and_then(|u| u.split('"').next()),
                None => (!l.starts_with('#') && !l.is_empty()).then_some(l),
            })
            .collect();
        assert!(named.len() > 10, "{playlist}");
        for uri in named {
            assert!(store.files().contains_key(&dir.join(uri)), "{uri} is named before it is stored:\n{playlist}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// HLS fMP4 with DASH on: the DASH store holds the very allocations the HLS store holds
    /// (one memory copy), under the MPD's names.
    #[tokio::test]
    async fn shared_segments_are_one_allocation_in_both_stores() {
        const AVC_HEADER: &[u8] =
            &[0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x0A, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x0A, 1, 0, 2, 0x68, 0xCE];
        let dir = std::env::temp_dir().join(format!("sluice-hls-shared-{}", std::process::id()));
        let conf = format!(
            "live on; hls on; hls_path {0}/hls; hls_fragment 1s; hls_fragment_type fmp4; dash on; dash_path {0}/dash;",
            dir.display()
        );
        let app = crate::config::test_app(&conf);
        assert!(crate::dash::shared::applies(&app, "s"));
        let store = HlsStore::new(CancellationToken::new());
        let dash = crate::dash::DashStore::new(CancellationToken::new());
        let mut task = HlsTask::new(store.clone(), app, dir.join("hls"), "s".into(), Some(dash.clone())).unwrap();
        let header = Frame::video(0, Bytes::from_static(AVC_HEADER)).unwrap();
        task.seg.push_video(0, header.video_header(), &header.payload, 0);
        let aac = Frame::audio(0, Bytes::from_static(&[0xAF, 0x00, 0x12, 0x10]));
        task.seg.push_audio(0, aac.audio_header(), &aac.payload, 0);
        for i in 0..100u32 {
            let (tag, nal): (u8, &[u8]) =
                if i % 25 == 0 { (0x17, &[0x65, 0x88, 0x84]) } else { (0x27, &[0x41, 0x9a, 0x02]) };
            let mut frame = vec![tag, 1, 0, 0, 0, 0, 0, 0, nal.len() as u8];
            frame.extend_from_slice(nal);
            let f = Frame::video(i * 40, Bytes::from(frame)).unwrap();
            task.seg.push_video(f.timestamp, f.video_header(), &f.payload, u64::from(i * 40));
            let a = Frame::audio(i * 40 + 5, Bytes::from_static(&[0xAF, 0x01, 0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c]));
            task.seg.push_audio(a.timestamp, a.audio_header(), &a.payload, u64::from(i * 40));
        }
        task.apply_events().await;
        assert!(task.seg.split());
        let hls_segments: Vec<Bytes> = store
            .files()
            .values()
            .filter(|s| matches!(s.kind, StoredKind::Segment | StoredKind::Init))
            .map(|s| s.data.clone())
            .collect();
        let dash_files = crate::dash::shared::stored(&dash);
        assert_eq!(hls_segments.len(), 2 + 2 * 3, "two inits, three segments of two tracks");
        for data in &hls_segments {
            let twin = dash_files.iter().find(|(_, d)| d.as_ptr() == data.as_ptr() && d.len() == data.len());
            assert!(twin.is_some(), "a DASH name for each HLS file, same bytes in memory: {dash_files:?}");
        }
        assert!(dash_files.iter().any(|(p, _)| p.extension().is_some_and(|e| e == "mpd")), "the MPD");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn blocking_query() {
        assert_eq!(blocking_request(Some("_HLS_msn=12&_HLS_part=3")), Some((12, Some(3))));
        assert_eq!(blocking_request(Some("_HLS_msn=12")), Some((12, None)));
        assert_eq!(blocking_request(Some("_HLS_part=3")), None);
        assert_eq!(blocking_request(None), None);
    }

    #[test]
    fn names_that_would_leave_hls_path_get_no_path() {
        let dir = Path::new("/srv/hls");
        for nested in [false, true] {
            for bad in ["../x", "/abs", "", "..", "a/b", "a\\b", "a\nb"] {
                assert!(playlist_path(dir, bad, nested).is_err(), "{bad:?} nested={nested}");
            }
        }
        assert_eq!(playlist_path(dir, "cam.1", false).unwrap(), Path::new("/srv/hls/cam.1.m3u8"));
        assert_eq!(playlist_path(dir, "cam", true).unwrap(), Path::new("/srv/hls/cam/index.m3u8"));
    }

    #[test]
    fn sessions_are_unique_and_follow_the_clock() {
        let a = new_session(1_000);
        let b = new_session(1_000);
        let c = new_session(5);
        assert!(a >= 1_000 && b > a && c > b, "{a} {b} {c}");
        let later = new_session(u64::from(u32::MAX) * 1000);
        assert_eq!(later, u64::from(u32::MAX) * 1000);
    }

    /// The answer headers are made once per change, and made again whenever the text or the
    /// target duration changes.
    #[test]
    fn playlist_headers_follow_the_text_and_the_target_duration() {
        let live = LivePlaylist { state: Mutex::new(PlaylistState::default()), changed: watch::channel(0).0 };
        let at = |target_duration| Position { target_duration, last_complete: Some(1), ..Position::default() };
        live.update("#EXTM3U\n#A\n".into(), at(2), true);
        let a = live.state().ok(false);
        assert_eq!((a.cache_control.to_str().unwrap(), &a.body[..]), ("public, max-age=1", &b"#EXTM3U\n#A\n"[..]));
        live.update("#EXTM3U\n#A\n".into(), at(2), true);
        assert_eq!(live.state().ok(false).etag, a.etag, "same text, same ETag");
        live.update("#EXTM3U\n#A\n".into(), at(4), true);
        let longer = live.state().ok(false);
        assert_eq!((longer.cache_control.to_str().unwrap(), &longer.etag), ("public, max-age=2", &a.etag));
        assert_eq!(live.state().ok(true).cache_control, "public, max-age=24", "a settled blocking reload");
        live.update("#EXTM3U\n#B\n".into(), at(4), true);
        let b = live.state().ok(false);
        assert!(b.etag.is_some() && b.etag != a.etag, "new text, new ETag");
        assert_eq!(b.last_modified, None, "a live playlist has no Last-Modified");
        live.update("#EXTM3U\n#B\n#EXT-X-ENDLIST\n".into(), at(4), false);
        let ended = live.state().ok(false);
        assert!(ended.last_modified.unwrap().to_str().unwrap().ends_with(" GMT"));
        assert_eq!(ended.cache_control, "public, max-age=24");
    }

    #[tokio::test]
    async fn parts_named_by_a_preload_hint_wait_for_their_bytes() {
        let store = HlsStore::new(CancellationToken::new());
        let live = Arc::new(LivePlaylist {
            state: Mutex::new(PlaylistState {
                part_target: Some(Duration::from_millis(200)),
                live: true,
                position: Position { open: Some((3, 1)), ..Position::default() },
                ..PlaylistState::default()
            }),
            changed: watch::channel(0).0,
        });
        store.playlists().insert(PathBuf::from("/hls/stream.m3u8"), live.clone());
        let part = PathBuf::from("/hls/stream-1765000000000-3.1.ts");
        let waiter = {
            let store = store.clone();
            let part = part.clone();
            tokio::spawn(async move { store.get(&part, None).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        store.put(part.clone(), Bytes::from_static(b"part"), StoredKind::Part);
        live.update(String::new(), Position { open: Some((3, 2)), ..Position::default() }, true);
        let reply = waiter.await.unwrap().expect("served once it exists");
        assert_eq!((reply.status, &reply.body[..]), (200, &b"part"[..]));
        assert_eq!(reply.content_type, "video/mp2t");
        assert!(store.get(Path::new("/hls/other-1-3.1.ts"), None).await.is_none(), "no such stream");
    }

    #[tokio::test]
    async fn parts_hinted_before_the_publisher_left_are_not_waited_for() {
        let store = HlsStore::new(CancellationToken::new());
        // Still live (the publisher may come back), no segment open: held, this would take 15 s.
        let live = Arc::new(LivePlaylist {
            state: Mutex::new(PlaylistState {
                part_target: Some(Duration::from_secs(5)),
                live: true,
                position: Position { last_complete: Some(3), ..Position::default() },
                ..PlaylistState::default()
            }),
            changed: watch::channel(0).0,
        });
        store.playlists().insert(PathBuf::from("/hls/stream.m3u8"), live);
        let asked = std::time::Instant::now();
        assert!(store.get(Path::new("/hls/stream-1765000000000-3.2.ts"), None).await.is_none());
        assert!(asked.elapsed() < Duration::from_secs(10), "answered without waiting");
    }

    #[tokio::test]
    async fn blocking_reload_waits_for_the_part_then_times_out() {
        let live = LivePlaylist {
            state: Mutex::new(PlaylistState {
                text: Bytes::from_static(b"#EXTM3U\n"),
                part_target: Some(Duration::from_millis(200)),
                live: true,
                position: Position { open: Some((5, 2)), last_complete: Some(4), ended: false, target_duration: 1 },
                ..PlaylistState::default()
            }),
            changed: watch::channel(0).0,
        };
        let r = live.reply(Some("_HLS_msn=5&_HLS_part=1")).await;
        assert_eq!(r.status, 200, "part 1 of 5 exists");
        assert_eq!(live.reply(Some("_HLS_msn=9")).await.status, 400, "too far ahead");
        let started = std::time::Instant::now();
        let r = live.reply(Some("_HLS_msn=5&_HLS_part=2")).await;
        assert_eq!(r.status, 503);
        assert!(started.elapsed() >= Duration::from_secs(3), "held for three target durations");
    }
}

//! Recordings watched in a browser: the FLV and MP4 files in an application's `record_path`
//! (sluice's own fragmented MP4 recordings included) served as HLS VOD without a transcode.
//! Under the location (`/vod/` on the built-in server, `recordings on;` in an `http { }`
//! location):
//!
//! - `APP/FILE/index.m3u8`: the playlist, generated from the file's sample index;
//! - `APP/FILE/init.mp4`: the fMP4 initialization segment;
//! - `APP/FILE/N.m4s`: segment N, `moof` + `mdat` cut at video keyframes about
//!   [`vod::TARGET_SEGMENT_MS`] apart, its samples read from the file by byte ranges.
//!
//! `FILE` is checked by [`untrusted::recording_file`]; `APP` only selects configured
//! applications, whose `record_path` directories (the application's and its recorders') are
//! searched in order; the file opened must be inside one of them after symbolic links are
//! resolved. A finished file is indexed once and the index shared by every viewer (a cache
//! bounded in files and bytes, keyed by path, size and modification time, so a rewritten file
//! is indexed again). The playlist's URIs carry `?v=VERSION` (size and time): a segment asked
//! with another version is `404`, so a player never mixes two versions of one file name.
//!
//! A file a recorder is writing now is served as far as it is written
//! ([`Vod::open_growing`]): an `EVENT` playlist of the segments that can no longer change,
//! without a version in its URIs (those segments stay the same once the file is closed). Its
//! index is built again at most every [`GROWING_REINDEX`], whatever the number of viewers.
//!
//! Who may watch: the location's `allow`/`deny` (checked by [`crate::http`]), then the
//! application's `allow play`/`deny play` rules for the client's address. Applications whose
//! players need a callback (`on_connect`, `on_play`) or a signed key (`auth_secret` with
//! `auth play|both`) are not served (`403`): a plain GET cannot carry what they check.

mod vod;

pub use vod::{Vod, VodError, MAX_SEGMENT_BYTES, TARGET_SEGMENT_MS};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::access::plain_request_refusal;
use crate::config::{AppConf, Location};
use crate::file_at::FileAt;
use crate::http::{peer_ip, status_response, HttpState};
use crate::record::record_dirs;
use crate::untrusted::{self, for_log};

/// Most files whose index is kept.
pub const CACHE_FILES: usize = 64;
/// Most bytes of indexes kept (an hour of 30 fps video with 44.1 kHz AAC costs about 10 MiB:
/// 40 bytes a sample).
pub const CACHE_BYTES: usize = 256 << 20;
/// Most files one listing ([`list`], the API's `/v1/recordings`) looks at.
pub const MAX_LISTED: usize = 10_000;
/// Segments built at once, server-wide (each holds up to [`MAX_SEGMENT_BYTES`] of samples);
/// more requests wait their turn.
pub const CONCURRENT_SEGMENTS: usize = 8;
/// How long the index of a file being written is used before the file is indexed again.
pub const GROWING_REINDEX: std::time::Duration = std::time::Duration::from_secs(2);

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
const MP4_TYPE: &str = "video/mp4";
/// Segments and init of a named version never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";

/// What a request under the location asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Asked<'a> {
    pub(crate) app: &'a str,
    pub(crate) file: &'a str,
    pub(crate) what: Resource,
}

/// The resource of one recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    Playlist,
    Init,
    Segment(usize),
}

/// Why a request is refused before any file is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadRequest {
    /// Not `APP/FILE/RESOURCE` under the location, or an unknown resource: `404`.
    NotFound,
    /// A file name that is no recording's: `400`.
    BadName(untrusted::NameError),
}

/// Splits `path` (normalised) under the location `uri` into application, file and resource.
/// The application may hold `/` (nginx-rtmp allows it); the file may not.
pub(crate) fn parse<'a>(uri: &str, path: &'a str) -> Result<Asked<'a>, BadRequest> {
    let rest = path.strip_prefix(uri.trim_end_matches('/')).ok_or(BadRequest::NotFound)?;
    let rest = rest.strip_prefix('/').ok_or(BadRequest::NotFound)?;
    let mut parts = rest.rsplitn(3, '/');
    let (Some(resource), Some(file), Some(app)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(BadRequest::NotFound);
    };
    if app.is_empty() {
        return Err(BadRequest::NotFound);
    }
    let file = untrusted::recording_file(file).map_err(BadRequest::BadName)?;
    let what = match resource {
        "index.m3u8" => Resource::Playlist,
        "init.mp4" => Resource::Init,
        other => {
            let n = other.strip_suffix(".m4s").ok_or(BadRequest::NotFound)?;
            // Digits only: no sign, no leading `+`, bounded length.
            if n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BadRequest::NotFound);
            }
            Resource::Segment(n.parse().map_err(|_| BadRequest::NotFound)?)
        }
    };
    Ok(Asked { app, file, what })
}

/// Answers a request of a recordings location. `flv_fallback` (the built-in `/vod/`): paths
/// ending in `.flv` are HTTP-FLV requests of an application named like the location.
pub async fn respond(state: &HttpState, loc: &Location, path: &str, req: Request, flv_fallback: bool) -> Response {
    if flv_fallback && path.ends_with(".flv") {
        return crate::httpflv::respond(state, loc, path, req).await;
    }
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        // CORS preflight: players on other origins may ask (the answers carry
        // `Access-Control-Allow-Origin: *` as HLS files do).
        Method::OPTIONS => {
            let mut res = StatusCode::NO_CONTENT.into_response();
            let h = res.headers_mut();
            h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, OPTIONS"));
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Range"));
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
            return res;
        }
        _ => {
            let mut res = status_response(StatusCode::METHOD_NOT_ALLOWED);
            res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
            return res;
        }
    };
    let Some(running) = &state.running else { return status_response(StatusCode::SERVICE_UNAVAILABLE) };
    let client = peer_ip(&req);
    let asked = match parse(&loc.uri, path) {
        Ok(a) => a,
        Err(BadRequest::NotFound) => return status_response(StatusCode::NOT_FOUND),
        Err(BadRequest::BadName(e)) => {
            tracing::info!(client = ?client, path = %for_log(path), "recording refused: {e}");
            return text(StatusCode::BAD_REQUEST, &format!("bad recording name: {e}"));
        }
    };
    let apps: Vec<&AppConf> =
        running.config.servers.iter().flat_map(|s| &s.apps).filter(|a| a.name == asked.app).collect();
    if apps.is_empty() {
        return status_response(StatusCode::NOT_FOUND);
    }
    if let Some(why) = apps.iter().find_map(|a| plain_request_refusal(a, client)) {
        tracing::info!(client = ?client, app = %for_log(asked.app), file = %for_log(asked.file), "recording refused: {why}");
        return text(StatusCode::FORBIDDEN, why);
    }
    let Some(found) = find(&apps, asked.file).await else { return status_response(StatusCode::NOT_FOUND) };
    let growing = is_recording(state, &found.path).await;
    let indexed = if growing { index_growing(&found.path).await } else { index(&found).await };
    let vod = match indexed {
        Ok(v) => v,
        // A recording just started holds no sequence header yet: players wait for segments.
        Err(e) if growing && matches!(*e, VodError::NoTracks) && asked.what == Resource::Playlist => {
            return reply(PLAYLIST_TYPE, NO_CACHE, Body::from(vod::EMPTY_GROWING_PLAYLIST));
        }
        Err(e) => {
            tracing::info!(client = ?client, app = %asked.app, file = %for_log(asked.file), "recording not playable: {e}");
            return text(status_of(&e), &format!("not playable: {e}"));
        }
    };
    // A file being written has no version yet: its listed segments are those it will keep.
    let version = (!vod.growing()).then(|| found.version());
    let query = req.uri().query().unwrap_or("");
    let asked_version = query.split('&').find_map(|p| p.strip_prefix("v="));
    if asked_version.is_some_and(|v| Some(v) != version.as_deref()) {
        return text(StatusCode::NOT_FOUND, "this recording changed: reload the playlist");
    }
    let cache = if asked_version.is_some() { IMMUTABLE } else { NO_CACHE };
    let res = match asked.what {
        Resource::Playlist => {
            let body = vod.playlist(&version.map(|v| format!("?v={v}")).unwrap_or_default());
            reply(PLAYLIST_TYPE, NO_CACHE, Body::from(body))
        }
        Resource::Init => reply(MP4_TYPE, cache, Body::from(vod.init.clone())),
        Resource::Segment(k) if k >= vod.segments() => status_response(StatusCode::NOT_FOUND),
        Resource::Segment(k) => match segment(vod, k, found.path.clone()).await {
            Ok(Some(bytes)) => reply(MP4_TYPE, cache, Body::from(bytes)),
            Ok(None) => status_response(StatusCode::NOT_FOUND),
            Err(e) => {
                tracing::warn!(app = %asked.app, file = %for_log(asked.file), segment = k, "recording segment: {e}");
                status_response(StatusCode::INTERNAL_SERVER_ERROR)
            }
        },
    };
    if head {
        strip(res)
    } else {
        res
    }
}

/// A recording found on disk.
#[derive(Debug, Clone)]
struct Found {
    /// Canonical path, inside a `record_path`.
    path: PathBuf,
    size: u64,
    modified: SystemTime,
}

impl Found {
    /// Names this content of the file: size and modification time.
    fn version(&self) -> String {
        let ns = self.modified.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("{:x}-{:x}", self.size, ns)
    }
}

/// `file` in the first record directory holding it, as a regular file whose resolved path
/// stays inside that directory (a symbolic link out of it is not followed).
async fn find(apps: &[&AppConf], file: &str) -> Option<Found> {
    for dir in record_dirs(apps.iter().copied()) {
        let Ok(root) = tokio::fs::canonicalize(&dir).await else { continue };
        let Ok(path) = tokio::fs::canonicalize(root.join(file)).await else { continue };
        if !path.starts_with(&root) {
            tracing::warn!(dir = %dir.display(), file = %for_log(file), "recording refused: it resolves outside its record_path");
            continue;
        }
        let Ok(meta) = tokio::fs::metadata(&path).await else { continue };
        if !meta.is_file() {
            continue;
        }
        return Some(Found { path, size: meta.len(), modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH) });
    }
    None
}

/// Whether a recorder holds `path` now: writing it, or finishing it after closing (its last
/// patches and faststart rewrite change the file under an index made meanwhile).
async fn is_recording(state: &HttpState, path: &Path) -> bool {
    for file in state.records.claimed() {
        if file == path || tokio::fs::canonicalize(&file).await.is_ok_and(|p| p == path) {
            return true;
        }
    }
    false
}

fn status_of(e: &VodError) -> StatusCode {
    match e {
        VodError::Media(media::MediaError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
        VodError::Media(media::MediaError::Io(_)) | VodError::Io(_) | VodError::Fmp4(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::UNSUPPORTED_MEDIA_TYPE,
    }
}

/// Indexes, shared by every viewer: at most [`CACHE_FILES`] files and [`CACHE_BYTES`], the
/// least recently used dropped first.
struct Cache {
    max_files: usize,
    max_bytes: usize,
    entries: Mutex<HashMap<Key, Cached>>,
    /// One file indexed at a time: viewers arriving together wait for the first one's index
    /// instead of each reading the file.
    building: Arc<tokio::sync::Mutex<()>>,
    segments: Arc<tokio::sync::Semaphore>,
    clock: std::sync::atomic::AtomicU64,
    /// The bound was reached once (logged once).
    full: std::sync::atomic::AtomicBool,
    /// Files that could not be indexed, so that asking again does not read them again (at most
    /// `max_files`; emptied when full).
    failed: Mutex<HashMap<Key, Arc<VodError>>>,
    /// Indexes of files being written, and when each was made (at most `max_files`; the
    /// oldest goes first).
    growing: Mutex<HashMap<PathBuf, (std::time::Instant, Indexed)>>,
}

type Key = (PathBuf, u64, SystemTime);

/// An index, or why a file has none.
type Indexed = Result<Arc<Vod>, Arc<VodError>>;

struct Cached {
    vod: Arc<Vod>,
    used: u64,
}

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Cache::new(CACHE_FILES, CACHE_BYTES))
}

impl Cache {
    fn new(max_files: usize, max_bytes: usize) -> Cache {
        Cache {
            max_files,
            max_bytes,
            entries: Mutex::new(HashMap::new()),
            building: Arc::new(tokio::sync::Mutex::new(())),
            segments: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_SEGMENTS)),
            clock: Default::default(),
            full: Default::default(),
            failed: Mutex::new(HashMap::new()),
            growing: Mutex::new(HashMap::new()),
        }
    }

    /// The index of the growing file `path` made less than [`GROWING_REINDEX`] ago.
    fn fresh_growing(&self, path: &Path) -> Option<Indexed> {
        let map = self.growing.lock().unwrap_or_else(|e| e.into_inner());
        map.get(path).filter(|(made, _)| made.elapsed() < GROWING_REINDEX).map(|(_, v)| v.clone())
    }

    fn put_growing(&self, path: PathBuf, vod: Indexed) {
        let mut map = self.growing.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (made, _)| made.elapsed() < GROWING_REINDEX);
        if map.len() >= self.max_files {
            if let Some(oldest) = map.iter().min_by_key(|(_, (made, _))| *made).map(|(p, _)| p.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(path, (std::time::Instant::now(), vod));
    }

    /// What indexing `key` gave before: the index, or why there is none.
    fn known(&self, key: &Key) -> Option<Result<Arc<Vod>, Arc<VodError>>> {
        if let Some(v) = self.get(key) {
            return Some(Ok(v));
        }
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.get(key).map(|e| Err(e.clone()))
    }

    fn put_failure(&self, key: Key, e: Arc<VodError>) {
        // A read error may pass; a file that is not playable stays so until it changes.
        if matches!(&*e, VodError::Io(_) | VodError::Media(media::MediaError::Io(_))) {
            return;
        }
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if failed.len() >= self.max_files {
            failed.clear();
        }
        failed.insert(key, e);
    }

    fn get(&self, key: &Key) -> Option<Arc<Vod>> {
        let now = self.clock.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get_mut(key).map(|c| {
            c.used = now;
            c.vod.clone()
        })
    }

    fn put(&self, key: Key, vod: Arc<Vod>) {
        let cost = vod.cost();
        if cost > self.max_bytes {
            return;
        }
        let now = self.clock.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Older versions of the same file go first.
        map.retain(|k, _| k.0 != key.0);
        let mut total: usize = map.values().map(|c| c.vod.cost()).sum();
        while !map.is_empty() && (map.len() >= self.max_files || total + cost > self.max_bytes) {
            let Some(oldest) = map.iter().min_by_key(|(_, c)| c.used).map(|(k, _)| k.clone()) else { break };
            if let Some(gone) = map.remove(&oldest) {
                total -= gone.vod.cost();
            }
            if !self.full.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::info!(
                    files = self.max_files,
                    bytes = self.max_bytes,
                    "recordings: index cache full; least recently watched files are indexed again when asked"
                );
            }
        }
        map.insert(key, Cached { vod, used: now });
    }
}

/// The index of `found`, from the cache or built now (off the async threads). The build holds
/// the one build turn and fills the cache even when the request that started it goes away, so
/// viewers who give up cannot start builds side by side.
async fn index(found: &Found) -> Indexed {
    let key: Key = (found.path.clone(), found.size, found.modified);
    let cache = cache();
    if let Some(known) = cache.known(&key) {
        return known;
    }
    let turn = cache.building.clone().lock_owned().await;
    if let Some(known) = cache.known(&key) {
        return known;
    }
    let build = move || {
        let _turn = turn;
        let started = std::time::Instant::now();
        let built = FileAt::open(&key.0).map_err(VodError::from).and_then(|mut file| Vod::open(&mut file));
        let vod = match built {
            Ok(v) => Arc::new(v),
            Err(e) => {
                let e = Arc::new(e);
                cache.put_failure(key, e.clone());
                return Err(e);
            }
        };
        tracing::info!(
            file = %key.0.display(),
            codecs = %vod.codecs,
            duration_ms = vod.duration_ms,
            segments = vod.segments(),
            index_bytes = vod.cost(),
            took_ms = started.elapsed().as_millis() as u64,
            "recording indexed"
        );
        cache.put(key, vod.clone());
        Ok(vod)
    };
    tokio::task::spawn_blocking(build).await.map_err(|e| Arc::new(VodError::Io(std::io::Error::other(e))))?
}

/// The index of `path`, a file a recorder is writing: made again when the last one is older
/// than [`GROWING_REINDEX`], in the same one build turn as finished files' indexes.
async fn index_growing(path: &Path) -> Indexed {
    let cache = cache();
    if let Some(known) = cache.fresh_growing(path) {
        return known;
    }
    let turn = cache.building.clone().lock_owned().await;
    if let Some(known) = cache.fresh_growing(path) {
        return known;
    }
    let path = path.to_path_buf();
    let build = move || {
        let _turn = turn;
        let built = FileAt::open(&path).map_err(VodError::from).and_then(|mut file| Vod::open_growing(&mut file));
        let indexed = built.map(Arc::new).map_err(Arc::new);
        cache.put_growing(path, indexed.clone());
        indexed
    };
    tokio::task::spawn_blocking(build).await.map_err(|e| Arc::new(VodError::Io(std::io::Error::other(e))))?
}

/// Segment `k` of `vod`, read from `path` (off the async threads, [`CONCURRENT_SEGMENTS`] at
/// once: the turn is held until the read ends, even when the request went away).
async fn segment(vod: Arc<Vod>, k: usize, path: PathBuf) -> Result<Option<Vec<u8>>, VodError> {
    let turn = cache().segments.clone().acquire_owned().await.map_err(|e| VodError::Io(std::io::Error::other(e)))?;
    let read = move || {
        let _turn = turn;
        vod.segment(k, &mut FileAt::open(&path)?)
    };
    tokio::task::spawn_blocking(read).await.map_err(|e| VodError::Io(std::io::Error::other(e)))?
}

fn reply(content_type: &'static str, cache: &'static str, body: Body) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res
}

/// A HEAD answer: the GET's headers and length, no body.
fn strip(res: Response) -> Response {
    use axum::body::HttpBody;
    let (mut parts, body) = res.into_parts();
    if let Some(len) = body.size_hint().exact() {
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Response::from_parts(parts, Body::empty())
}

fn text(status: StatusCode, text: &str) -> Response {
    let ct = HeaderValue::from_static("text/plain; charset=utf-8");
    (
        status,
        [(header::CONTENT_TYPE, ct), (header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE))],
        format!("{} {text}\n", status.as_str()),
    )
        .into_response()
}

/// One recording file, as the API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordingFile {
    /// The application whose `record_path` (or a recorder's) holds it.
    pub app: String,
    /// The file's name.
    pub file: String,
    /// Bytes.
    pub size: u64,
    /// Last modified, seconds since the Unix epoch.
    pub modified_unix: u64,
    /// A recorder is writing it now (its playlist lists what is written so far, without an end).
    pub writing: bool,
    /// Its playlist's path on this HTTP server (`null` when no location serves recordings).
    pub playlist: Option<String>,
}

/// The recordings (`.flv`, `.mp4` regular files) in every application's record directories,
/// newest first; at most [`MAX_LISTED`] files are looked at.
pub async fn list(state: &HttpState) -> Vec<RecordingFile> {
    let Some(running) = &state.running else { return Vec::new() };
    let prefix = state.site.locations.iter().find_map(|l| match l.handler {
        Some(crate::config::Handler::Recordings { .. }) => Some(format!("{}/", l.uri.trim_end_matches('/'))),
        _ => None,
    });
    let mut places: Vec<(String, PathBuf)> = Vec::new();
    for app in running.config.servers.iter().flat_map(|s| &s.apps) {
        for dir in record_dirs([app]) {
            if !places.iter().any(|(a, d)| *a == app.name && *d == dir) {
                places.push((app.name.clone(), dir));
            }
        }
    }
    let writing = state.records.claimed();
    let scan = move || {
        let writing: Vec<PathBuf> =
            writing.iter().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())).collect();
        let mut out = Vec::new();
        let mut looked = 0;
        'dirs: for (app, dir) in places {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                looked += 1;
                if looked > MAX_LISTED {
                    break 'dirs;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() || untrusted::recording_file(&name).is_err() {
                    continue;
                }
                let path = std::fs::canonicalize(entry.path()).unwrap_or_else(|_| entry.path());
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                let playlist = prefix.as_ref().map(|p| format!("{p}{}/{}/index.m3u8", url_path(&app), url_path(&name)));
                out.push(RecordingFile {
                    modified_unix: modified.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                    writing: writing.contains(&path),
                    size: meta.len(),
                    app: app.clone(),
                    file: name,
                    playlist,
                });
            }
        }
        out.sort_by(|a, b| b.modified_unix.cmp(&a.modified_unix).then_with(|| a.file.cmp(&b.file)));
        out
    };
    tokio::task::spawn_blocking(scan).await.unwrap_or_default()
}

/// `text` percent-encoded for a URL path (`/` kept: application names may hold it).
fn url_path(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny FLV recording: an AVC header and `frames` keyframes 40 ms apart.
    fn tiny_vod(frames: u32) -> Arc<Vod> {
        let mut f = b"FLV\x01\x01\0\0\0\x09\0\0\0\0".to_vec();
        let mut tag = |ts: u32, body: &[u8]| {
            let len = body.len() as u32;
            f.push(9);
            f.extend_from_slice(&len.to_be_bytes()[1..]);
            f.extend_from_slice(&ts.to_be_bytes()[1..]);
            f.extend_from_slice(&[0, 0, 0, 0]);
            f.extend_from_slice(body);
            f.extend_from_slice(&(len + 11).to_be_bytes());
        };
        tag(0, &[0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x0A, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x0A, 1, 0, 2, 0x68, 0xCE]);
        for i in 0..frames {
            tag(i * 40, &[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]);
        }
        Arc::new(Vod::open(&mut media::Slice(&f)).unwrap())
    }

    fn key(name: &str, size: u64) -> Key {
        (PathBuf::from(name), size, SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn the_index_cache_is_bounded_in_files_and_bytes() {
        let cache = Cache::new(2, 1 << 20);
        let (a, b, c) = (tiny_vod(10), tiny_vod(10), tiny_vod(10));
        cache.put(key("/r/a.flv", 1), a.clone());
        cache.put(key("/r/b.flv", 1), b);
        assert!(cache.get(&key("/r/a.flv", 1)).is_some_and(|v| Arc::ptr_eq(&v, &a)), "shared, not copied");
        cache.put(key("/r/c.flv", 1), c);
        assert!(cache.get(&key("/r/b.flv", 1)).is_none(), "the least recently used goes");
        assert!(cache.get(&key("/r/a.flv", 1)).is_some() && cache.get(&key("/r/c.flv", 1)).is_some());
        // A new version of a file replaces the old one; another size or time is another key.
        cache.put(key("/r/a.flv", 2), tiny_vod(5));
        assert!(cache.get(&key("/r/a.flv", 1)).is_none());
        assert!(cache.get(&key("/r/a.flv", 2)).is_some());

        let big = tiny_vod(1000);
        let small = Cache::new(100, big.cost() + 10);
        small.put(key("/r/x.flv", 1), tiny_vod(1000));
        small.put(key("/r/y.flv", 1), tiny_vod(1000));
        assert!(small.get(&key("/r/x.flv", 1)).is_none(), "bytes bound");
        assert!(small.get(&key("/r/y.flv", 1)).is_some());
        let none = Cache::new(100, 10);
        none.put(key("/r/z.flv", 1), big);
        assert!(none.get(&key("/r/z.flv", 1)).is_none(), "an index larger than the bound is not kept");
    }

    #[test]
    fn files_that_are_not_playable_are_remembered_until_they_change() {
        let cache = Cache::new(2, 1 << 20);
        let junk = || Arc::new(VodError::Media(media::MediaError::UnknownFormat));
        cache.put_failure(key("/r/junk.flv", 1), junk());
        assert!(matches!(cache.known(&key("/r/junk.flv", 1)), Some(Err(_))));
        assert!(cache.known(&key("/r/junk.flv", 2)).is_none(), "another version is tried");
        let io = Arc::new(VodError::Io(std::io::Error::other("EIO")));
        cache.put_failure(key("/r/eio.flv", 1), io);
        assert!(cache.known(&key("/r/eio.flv", 1)).is_none(), "a read error may pass");
        cache.put_failure(key("/r/b.flv", 1), junk());
        cache.put_failure(key("/r/c.flv", 1), junk());
        assert!(cache.failed.lock().unwrap().len() <= 2, "bounded");
    }

    #[test]
    fn listed_playlists_are_percent_encoded() {
        assert_eq!(url_path("a b/c%é.flv"), "a%20b/c%25%C3%A9.flv");
    }

    #[test]
    fn urls_name_app_file_and_resource() {
        let a = parse("/vod/", "/vod/live/cam.flv/index.m3u8").unwrap();
        assert_eq!((a.app, a.file, a.what), ("live", "cam.flv", Resource::Playlist));
        let a = parse("/recordings", "/recordings/a/b/cam-1.mp4/12.m4s").unwrap();
        assert_eq!((a.app, a.file, a.what), ("a/b", "cam-1.mp4", Resource::Segment(12)));
        assert_eq!(parse("/vod/", "/vod/live/x.mp4/init.mp4").unwrap().what, Resource::Init);
        for missing in [
            "/vod/",
            "/vod/live/cam.flv",
            "/vod/cam.flv/index.m3u8",
            "/vod/live/cam.flv/x.ts",
            "/vod/live/cam.flv/-1.m4s",
            "/vod/live/cam.flv/+1.m4s",
            "/vod/live/cam.flv/99999999999.m4s",
            "/vodx/live/cam.flv/index.m3u8",
            "/other/live/cam.flv/index.m3u8",
        ] {
            assert_eq!(parse("/vod/", missing), Err(BadRequest::NotFound), "{missing}");
        }
        for bad in ["/vod/live/cam.txt/index.m3u8", "/vod/live/passwd/index.m3u8", "/vod/live/.flv/index.m3u8"] {
            assert!(matches!(parse("/vod/", bad), Err(BadRequest::BadName(_))), "{bad}");
        }
    }
}

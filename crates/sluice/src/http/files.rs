//! Static files: GET and HEAD of a location's files, with index files for directory URLs,
//! ranges, conditional requests and validators. Bodies are streamed from the file, never read
//! whole.

use std::io::{ErrorKind, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::date::http_date;
use super::range::{self, RangeRequest};
use super::{mime, path, status_response};
use crate::config::Location;

/// Bytes read from a file per body chunk.
const CHUNK: usize = 64 * 1024;

/// Answers GET (or HEAD when `head`) for the normalised `path` in `loc`; `uri` is the request
/// as received (for redirects).
pub(crate) async fn serve(loc: &Location, path: &str, uri: &Uri, headers: &HeaderMap, head: bool) -> Response {
    let file = match path::file_path(loc, path) {
        Ok(Some(file)) => file,
        Ok(None) => return status_response(StatusCode::NOT_FOUND),
        Err(e) => return status_response(e.status()),
    };
    if path.ends_with('/') {
        return serve_index(loc, &file, headers, head).await;
    }
    match open(&file).await {
        Ok(Opened::File(f, meta)) => send(loc, path, f, &meta, headers, head).await,
        Ok(Opened::Dir) => redirect_to_dir(uri),
        Err(status) => status_response(status),
    }
}

/// What a path turned out to be.
enum Opened {
    File(File, Box<std::fs::Metadata>),
    Dir,
}

/// Opens a regular file; directories are reported, anything else (devices, sockets) is 403.
async fn open(file: &Path) -> Result<Opened, StatusCode> {
    let f = File::open(file).await.map_err(|e| io_status(e.kind()))?;
    let meta = f.metadata().await.map_err(|e| io_status(e.kind()))?;
    if meta.is_dir() {
        Ok(Opened::Dir)
    } else if meta.is_file() {
        Ok(Opened::File(f, Box::new(meta)))
    } else {
        Err(StatusCode::FORBIDDEN)
    }
}

/// The status for a failed open.
fn io_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::InvalidFilename => StatusCode::NOT_FOUND,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A URL naming a directory without its trailing slash: 301 to the slashed URL, as nginx.
fn redirect_to_dir(uri: &Uri) -> Response {
    let target = match uri.query() {
        Some(q) => format!("{}/?{q}", uri.path()),
        None => format!("{}/", uri.path()),
    };
    let mut res = status_response(StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = HeaderValue::try_from(target) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// A directory URL: the first `index` file that exists, else 403 (nginx without `autoindex`)
/// or 404 when the directory itself is missing.
async fn serve_index(loc: &Location, dir: &Path, headers: &HeaderMap, head: bool) -> Response {
    for name in &loc.index {
        let candidate: PathBuf = dir.join(name);
        match open(&candidate).await {
            Ok(Opened::File(f, meta)) => return send(loc, name, f, &meta, headers, head).await,
            Ok(Opened::Dir) | Err(StatusCode::NOT_FOUND) => continue,
            Err(status) => return status_response(status),
        }
    }
    match tokio::fs::metadata(dir).await {
        Ok(m) if m.is_dir() => status_response(StatusCode::FORBIDDEN),
        _ => status_response(StatusCode::NOT_FOUND),
    }
}

/// Sends an open file: validators, conditional requests, ranges. `name` gives the type.
async fn send(
    loc: &Location,
    name: &str,
    mut f: File,
    meta: &std::fs::Metadata,
    headers: &HeaderMap,
    head: bool,
) -> Response {
    let len = meta.len();
    let mtime = meta.modified().ok();
    let last_modified = mtime.map(http_date);
    let mtime_secs = mtime.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
    let etag = format!("\"{mtime_secs:x}-{len:x}\"");

    let mut res = Response::new(Body::empty());
    let h = res.headers_mut();
    h.insert(header::ETAG, header_value(&etag));
    if let Some(lm) = &last_modified {
        h.insert(header::LAST_MODIFIED, header_value(lm));
    }
    if not_modified(headers, &etag, last_modified.as_deref()) {
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        return res;
    }
    h.insert(header::CONTENT_TYPE, header_value(mime::content_type(loc, name)));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));

    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) if if_range_holds(headers, &etag, last_modified.as_deref()) => range::parse(v, len),
        _ => RangeRequest::Full,
    };
    let (start, count) = match range {
        RangeRequest::Full => (0, len),
        RangeRequest::Part { start, end } => {
            *res.status_mut() = StatusCode::PARTIAL_CONTENT;
            let v = format!("bytes {start}-{end}/{len}");
            res.headers_mut().insert(header::CONTENT_RANGE, header_value(&v));
            (start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            let mut res = status_response(StatusCode::RANGE_NOT_SATISFIABLE);
            res.headers_mut().insert(header::CONTENT_RANGE, header_value(&format!("bytes */{len}")));
            return res;
        }
    };
    res.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if head || count == 0 {
        return res;
    }
    if start > 0 {
        if let Err(e) = f.seek(SeekFrom::Start(start)).await {
            tracing::warn!(error = %e, "http: seek failed");
            return status_response(StatusCode::INTERNAL_SERVER_ERROR);
        }
    }
    *res.body_mut() = Body::from_stream(ReaderStream::with_capacity(f.take(count), CHUNK));
    res
}

/// A header value from text sluice made itself (dates, numbers, configured types).
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// `If-None-Match` (weak comparison) wins over `If-Modified-Since`, which matches when equal
/// to `Last-Modified` (nginx's `if_modified_since exact`).
pub(crate) fn not_modified(headers: &HeaderMap, etag: &str, last_modified: Option<&str>) -> bool {
    if let Some(inm) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return inm.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag);
    }
    let ims = headers.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok());
    matches!((ims, last_modified), (Some(a), Some(b)) if a.trim() == b)
}

/// `If-Range`: the range applies only while the file is still the one the client has.
fn if_range_holds(headers: &HeaderMap, etag: &str, last_modified: Option<&str>) -> bool {
    match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(v) => v.trim() == etag || Some(v.trim()) == last_modified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(n, v)| (n.clone(), HeaderValue::from_str(v).unwrap())).collect()
    }

    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn conditional_requests() {
        let lm = Some(LM);
        assert!(!not_modified(&HeaderMap::new(), "\"1-2\"", lm));
        assert!(not_modified(&headers(&[(header::IF_NONE_MATCH, "\"0-0\", W/\"1-2\"")]), "\"1-2\"", lm));
        assert!(not_modified(&headers(&[(header::IF_NONE_MATCH, "*")]), "\"1-2\"", lm));
        assert!(!not_modified(&headers(&[(header::IF_NONE_MATCH, "\"1-3\"")]), "\"1-2\"", lm));
        assert!(not_modified(&headers(&[(header::IF_MODIFIED_SINCE, LM)]), "\"1-2\"", lm));
        let both = headers(&[(header::IF_NONE_MATCH, "\"9-9\""), (header::IF_MODIFIED_SINCE, LM)]);
        assert!(!not_modified(&both, "\"1-2\"", lm), "If-None-Match decides alone");
    }

    #[test]
    fn if_range() {
        let lm = Some(LM);
        assert!(if_range_holds(&HeaderMap::new(), "\"1-2\"", lm));
        assert!(if_range_holds(&headers(&[(header::IF_RANGE, "\"1-2\"")]), "\"1-2\"", lm));
        assert!(if_range_holds(&headers(&[(header::IF_RANGE, LM)]), "\"1-2\"", lm));
        assert!(!if_range_holds(&headers(&[(header::IF_RANGE, "\"0-2\"")]), "\"1-2\"", lm));
    }

    #[test]
    fn open_errors_map_to_statuses() {
        assert_eq!(io_status(ErrorKind::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(io_status(ErrorKind::NotADirectory), StatusCode::NOT_FOUND);
        assert_eq!(io_status(ErrorKind::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(io_status(ErrorKind::Other), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

//! Request paths: percent-decoding and normalisation (RFC 3986, 2.1), and mapping a path to a
//! file under a location's `root` or `alias` without ever leaving it.

use std::path::PathBuf;

use axum::http::StatusCode;

use crate::config::{Files, Location};

/// Why a request path cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding")]
    BadEscape,
    /// The decoded bytes are not UTF-8.
    #[error("path is not UTF-8")]
    NotUtf8,
    /// A NUL byte, which no file name can hold.
    #[error("NUL in path")]
    Nul,
    /// A `..` segment (plain or encoded): it would leave the served directory.
    #[error("\"..\" in path")]
    Traversal,
}

impl PathError {
    /// The answer: 403 for traversal attempts (as nginx under a root), 400 for the rest.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            PathError::Traversal => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// The decoded, normalised form of a request path: starts with `/`, no empty, `.` or `..`
/// segments (empty and `.` are dropped, as nginx merges slashes; `..` is refused), a trailing
/// `/` kept (it asks for a directory).
pub(crate) fn normalize(raw: &str) -> Result<String, PathError> {
    let decoded = percent_decode(raw)?;
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.");
    let mut out = String::with_capacity(decoded.len() + 1);
    for seg in segments(&decoded)? {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(out)
}

/// The non-empty, non-`.` segments of a path; `..` is an error.
fn segments(path: &str) -> Result<Vec<&str>, PathError> {
    let mut out = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(PathError::Traversal),
            s => out.push(s),
        }
    }
    Ok(out)
}

/// `%XX` → byte; the result must be UTF-8 without NUL. `+` stays `+` (it means space only in
/// form-encoded queries, never in paths).
fn percent_decode(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
            let hi = hex_value(hex[0]).ok_or(PathError::BadEscape)?;
            let lo = hex_value(hex[1]).ok_or(PathError::BadEscape)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    if out.contains(&0) {
        return Err(PathError::Nul);
    }
    String::from_utf8(out).map_err(|_| PathError::NotUtf8)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The file a normalised `path` names in `loc`: `root` + path, or `alias` + the path after the
/// alias's location prefix. `Ok(None)` when the location serves no files. The part appended
/// is checked again segment by segment, because an alias prefix can end inside a segment
/// (`location /hls { alias /data/; }` must not turn `/hls../x` into `/data/../x`).
pub(crate) fn file_path(loc: &Location, path: &str) -> Result<Option<PathBuf>, PathError> {
    let (mut file, rest) = match &loc.files {
        None => return Ok(None),
        Some(Files::Root(dir)) => (dir.clone(), path),
        Some(Files::Alias { dir, prefix }) => match path.strip_prefix(prefix.as_str()) {
            Some(rest) => (dir.clone(), rest),
            None => return Ok(None),
        },
    };
    for seg in segments(rest)? {
        file.push(seg);
    }
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpServerConf;
    use proptest::prelude::*;

    #[test]
    fn decodes_and_normalises() {
        assert_eq!(normalize("/hls/a%20b.m3u8").unwrap(), "/hls/a b.m3u8");
        assert_eq!(normalize("//hls///./x.ts").unwrap(), "/hls/x.ts");
        assert_eq!(normalize("/hls/").unwrap(), "/hls/");
        assert_eq!(normalize("/hls/.").unwrap(), "/hls/");
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("").unwrap(), "/");
        assert_eq!(normalize("/a+b").unwrap(), "/a+b");
        assert_eq!(normalize("/%C3%A9").unwrap(), "/é");
        assert_eq!(normalize("/%2e%2ehidden").unwrap(), "/..hidden", "only whole segments are traversal");
        assert_eq!(normalize("/%252e%252e/x").unwrap(), "/%2e%2e/x", "decoded once");
    }

    #[test]
    fn traversal_and_junk_are_refused() {
        for bad in ["/..", "/../etc/passwd", "/hls/../../x", "/%2e%2e/x", "/%2E%2E%2Fetc", "/a/%2e%2e%2f%2e%2e/b"] {
            assert_eq!(normalize(bad), Err(PathError::Traversal), "{bad}");
        }
        assert_eq!(normalize("/a%2"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a%00b"), Err(PathError::Nul));
        assert_eq!(normalize("/%ff"), Err(PathError::NotUtf8));
        assert_eq!(PathError::Traversal.status(), StatusCode::FORBIDDEN);
        assert_eq!(PathError::Nul.status(), StatusCode::BAD_REQUEST);
    }

    fn loc(files: Files) -> Location {
        let mut loc = HttpServerConf::default().fallback;
        loc.files = Some(files);
        loc
    }

    #[test]
    fn root_appends_the_whole_path() {
        let l = loc(Files::Root("/tmp".into()));
        assert_eq!(file_path(&l, "/hls/a.ts").unwrap(), Some(PathBuf::from("/tmp/hls/a.ts")));
        assert_eq!(file_path(&l, "/hls/").unwrap(), Some(PathBuf::from("/tmp/hls")));
    }

    #[test]
    fn alias_replaces_the_prefix() {
        let l = loc(Files::Alias { dir: "/data/hls".into(), prefix: "/live/".into() });
        assert_eq!(file_path(&l, "/live/s/index.m3u8").unwrap(), Some(PathBuf::from("/data/hls/s/index.m3u8")));
        let l = loc(Files::Alias { dir: "/data/".into(), prefix: "/hls".into() });
        assert_eq!(file_path(&l, "/hls/a.ts").unwrap(), Some(PathBuf::from("/data/a.ts")));
        assert_eq!(file_path(&l, "/hls../secret"), Err(PathError::Traversal), "nginx's alias slip");
        assert_eq!(file_path(&l, "/other"), Ok(None));
        assert_eq!(file_path(&HttpServerConf::default().fallback, "/x"), Ok(None));
    }

    proptest! {
        #[test]
        fn mapped_files_stay_under_their_directory(raw in "[/a-z.%25e2fE]{0,24}") {
            if let Ok(path) = normalize(&raw) {
                for files in [Files::Root("/srv".into()), Files::Alias { dir: "/srv".into(), prefix: "/a".into() }] {
                    if let Ok(Some(file)) = file_path(&loc(files), &path) {
                        prop_assert!(file.starts_with("/srv"));
                        prop_assert!(!file.components().any(|c| c == std::path::Component::ParentDir), "{file:?}");
                    }
                }
            }
        }
    }
}

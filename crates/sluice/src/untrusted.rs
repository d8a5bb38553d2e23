//! What clients send, checked in one place per kind before the rest of the server uses it.
//!
//! - Stream names become file names (HLS playlists and segments, recordings, keys, later DASH
//!   and exec arguments): [`stream_name`] is the only gate, applied before a stream is claimed
//!   or played, and again by every output that builds a path from a name.
//! - Names of files played on demand (`play`, [`crate::vod`]) may name a subdirectory:
//!   [`vod_name`] is their one gate, and the path is built from the segments it returns, so
//!   no name can leave the configured directory.
//! - Anything a client sent that reaches a log line (names, `flashVer`, `tcUrl`, arguments)
//!   goes through [`for_log`]: control characters escaped, length capped, so a client can
//!   neither forge log lines nor flood them.
//! - Query strings reach the log only through [`redact_query`]: secrets (`key=`, `token=`, ...)
//!   never appear in logs.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Longest stream name accepted, in bytes. nginx-rtmp keeps names in 256-byte buffers; 128
/// leaves room for every suffix an output appends (`-1765000000000-123456.ts`, `_hi`, `.m3u8`)
/// within the 255-byte file-name limit of common filesystems.
pub const MAX_STREAM_NAME: usize = 128;

/// Longest client text written into one log field, in bytes (before escaping).
pub const MAX_LOG_TEXT: usize = 200;

/// Why a stream name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty stream name")]
    Empty,
    #[error("stream name longer than {MAX_STREAM_NAME} bytes")]
    TooLong,
    #[error("stream name \".\" or \"..\"")]
    Dots,
    #[error("stream name contains {0}")]
    BadChar(&'static str),
    #[error("not a recording: the name must end in .flv or .mp4")]
    NotRecording,
}

/// Extensions of files [`recording_file`] accepts: what `record` writes (FLV, MP4).
pub const RECORDING_EXTENSIONS: [&str; 2] = [".flv", ".mp4"];

/// Checks a stream name that will be used as a file name. Refuses names that are empty, longer
/// than [`MAX_STREAM_NAME`], `.` or `..`, or contain `/`, `\`, NUL or any control character.
/// Everything else (dots inside, spaces, UTF-8) is kept as the client sent it, as nginx-rtmp does.
pub fn stream_name(name: &str) -> Result<&str, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_STREAM_NAME {
        return Err(NameError::TooLong);
    }
    if name == "." || name == ".." {
        return Err(NameError::Dots);
    }
    for c in name.chars() {
        let bad = match c {
            '/' => "\"/\"",
            '\\' => "\"\\\"",
            '\0' => "NUL",
            c if c.is_control() => "a control character",
            _ => continue,
        };
        return Err(NameError::BadChar(bad));
    }
    Ok(name)
}

/// Longest name of a file played on demand, in bytes (nginx-rtmp's name buffer is 256).
pub const MAX_VOD_NAME: usize = 255;

/// Checks the name of a file to play on demand (`vod/sub/file.mp4` plays `sub/file.mp4` in a
/// `play` directory) and returns its path segments, to be joined under that directory. Refuses
/// what [`stream_name`] refuses except `/` between segments: any `.` or `..` segment (nginx-rtmp
/// refuses `/../`; sluice refuses every form), `\`, NUL, control characters, more than
/// [`MAX_VOD_NAME`] bytes. Empty segments (`//sub/f`, leading or doubled slashes) are dropped,
/// so the path never becomes absolute.
pub fn vod_name(name: &str) -> Result<Vec<&str>, NameError> {
    if name.len() > MAX_VOD_NAME {
        return Err(NameError::TooLong);
    }
    let segments: Vec<&str> = name.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() {
        return Err(NameError::Empty);
    }
    for seg in &segments {
        if *seg == "." || *seg == ".." {
            return Err(NameError::Dots);
        }
        for c in seg.chars() {
            let bad = match c {
                '\\' => "\"\\\"",
                '\0' => "NUL",
                c if c.is_control() => "a control character",
                _ => continue,
            };
            return Err(NameError::BadChar(bad));
        }
    }
    Ok(segments)
}

/// Checks a recording's file name taken from a URL (`/vod/APP/FILE/...`): a [`stream_name`]
/// (no `/`, `\\`, NUL, control characters, not `.` or `..`, bounded length; suffixes such as
/// `-1765000000.flv` fit) that ends in `.flv` or `.mp4` (any case). The caller still checks
/// that the file it opens is inside the `record_path` it looked in.
pub fn recording_file(name: &str) -> Result<&str, NameError> {
    let name = stream_name(name)?;
    let lower = name.to_ascii_lowercase();
    let known = RECORDING_EXTENSIONS.iter().any(|ext| lower.len() > ext.len() && lower.ends_with(ext));
    if known {
        Ok(name)
    } else {
        Err(NameError::NotRecording)
    }
}

/// Client text made safe for one log field: control characters (newlines included) escaped
/// as `\n`, `\x1b`, ..., and anything past [`MAX_LOG_TEXT`] bytes cut with a `...(N bytes)`
/// marker. Borrows when nothing needed changing.
pub fn for_log(text: &str) -> Cow<'_, str> {
    let clean = !text.chars().any(char::is_control);
    if clean && text.len() <= MAX_LOG_TEXT {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(MAX_LOG_TEXT) + 16);
    let mut taken = 0;
    for c in text.chars() {
        if taken + c.len_utf8() > MAX_LOG_TEXT {
            let _ = write!(out, "...({} bytes)", text.len());
            break;
        }
        taken += c.len_utf8();
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Query parameters whose values are secrets and never logged.
const SECRET_PARAMS: [&str; 8] = ["key", "token", "pass", "password", "passwd", "secret", "sign", "auth"];

/// A query string as the log shows it: values of secret parameters (`key`, `token`,
/// `password`, ...) replaced by `***`, the rest through [`for_log`].
pub fn redact_query(query: &str) -> String {
    let redacted: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s)) => Cow::Owned(format!("{k}=***")),
            _ => Cow::Borrowed(pair),
        })
        .collect();
    for_log(&redacted.join("&")).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_escape_a_directory_are_refused() {
        for bad in ["", ".", "..", "../../x", "/abs/x", "a/b", "a\\b", "a\0b", "a\nb", "a\x7fb"] {
            assert!(stream_name(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(stream_name(&"x".repeat(MAX_STREAM_NAME + 1)), Err(NameError::TooLong));
    }

    #[test]
    fn vod_names_stay_under_their_directory() {
        for bad in ["", "/", "..", "../x", "a/../../etc/passwd", "a/./b", "a\\b", "a\0b", "a\nb"] {
            assert!(vod_name(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(vod_name("film.mp4"), Ok(vec!["film.mp4"]));
        assert_eq!(vod_name("/sub//film"), Ok(vec!["sub", "film"]), "never absolute");
        assert_eq!(vod_name("mp4:a..b"), Ok(vec!["mp4:a..b"]));
        assert_eq!(vod_name(&"x".repeat(MAX_VOD_NAME + 1)), Err(NameError::TooLong));
    }

    #[test]
    fn ordinary_names_pass_unchanged() {
        for good in ["stream", "my.stream", "..x", "x..", "a b", "caméra-1", "KEY_123", &"x".repeat(MAX_STREAM_NAME)] {
            assert_eq!(stream_name(good), Ok(good));
        }
    }

    #[test]
    fn recording_files_are_names_with_a_known_extension() {
        for good in ["cam.flv", "cam-1765000000.mp4", "a b.FLV", "x.y.mp4"] {
            assert_eq!(recording_file(good), Ok(good));
        }
        for bad in
            ["", "..", ".flv", "cam", "cam.ts", "cam.flv.txt", "../cam.flv", "/etc/cam.flv", "a\\b.flv", "a\0.flv"]
        {
            assert!(recording_file(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(recording_file("cam.m3u8"), Err(NameError::NotRecording));
    }

    #[test]
    fn log_text_escapes_control_characters_and_is_capped() {
        assert_eq!(for_log("plain"), "plain");
        assert_eq!(for_log("a\nINFO forged"), "a\\nINFO forged");
        assert_eq!(for_log("\x1b[31m"), "\\x1b[31m");
        let text = "x".repeat(1 << 20);
        let long = for_log(&text);
        assert!(long.len() < MAX_LOG_TEXT + 32, "{} bytes", long.len());
        assert!(long.ends_with("...(1048576 bytes)"));
    }

    #[test]
    fn secrets_in_queries_are_redacted() {
        assert_eq!(redact_query("key=abc&x=1"), "key=***&x=1");
        assert_eq!(redact_query("expires=9&token=deadbeef"), "expires=9&token=***");
        assert_eq!(redact_query("Password=p"), "Password=***");
        assert_eq!(redact_query(""), "");
    }
}

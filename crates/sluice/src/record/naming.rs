//! Recording file names, as nginx-rtmp makes them (`ngx_rtmp_record_make_path`):
//! `record_path/NAME[-UNIXTIME]SUFFIX`, the stream name escaped as a URI component (so a name
//! holding `/` or `..` stays one file in `record_path`), `-UNIXTIME` with `record_unique`, and
//! the suffix run through strftime(3) in local time when it holds a `%`.
//!
//! The name is first checked by [`crate::untrusted::stream_name`], the one gate for names
//! that become paths: the publish check refuses bad names before any output sees them; this
//! is the second wall, so a recorder never builds a path from a name that did not pass.

use std::ffi::CString;
use std::path::PathBuf;

use crate::config::RecordConf;
use crate::untrusted::{self, NameError};

/// Longest file name strftime may produce; nginx-rtmp's limit is its path buffer.
const MAX_SUFFIX: usize = 1024;

/// Why a recorder has no file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    /// The recorder has no `record_path`.
    #[error("no record_path is set")]
    NoRecordPath,
    /// The stream name may not become a file name.
    #[error("the stream name is refused as a file name: {0}")]
    BadName(#[from] NameError),
    /// The escaped name with its suffix is longer than a file name may be.
    #[error("the file name would be {0} bytes once escaped (at most {MAX_FILE_NAME})")]
    TooLong(usize),
}

/// Longest file name common filesystems take (ext4, xfs, btrfs: 255 bytes). A name within
/// [`untrusted::MAX_STREAM_NAME`] can still exceed it once non-ASCII bytes are escaped
/// (`%XX`, three bytes each).
const MAX_FILE_NAME: usize = 255;

/// The file `conf` records stream `name` into when opened at `unix_time` (seconds), as
/// nginx-rtmp names it.
pub fn file_path(conf: &RecordConf, name: &str, unix_time: i64) -> Result<PathBuf, NamingError> {
    make(conf, name, unix_time, conf.unique.then_some(1))
}

/// The `record_unique` form of the name, `NAME-UNIXTIME[-N]SUFFIX` (`-N` only from 2 on),
/// whatever `record_unique` says: for a file whose nginx-rtmp name is taken.
pub fn unique_path(conf: &RecordConf, name: &str, unix_time: i64, n: u32) -> Result<PathBuf, NamingError> {
    make(conf, name, unix_time, Some(n))
}

fn make(conf: &RecordConf, name: &str, unix_time: i64, unique: Option<u32>) -> Result<PathBuf, NamingError> {
    let name = untrusted::stream_name(name)?;
    let dir = conf.path.as_ref().ok_or(NamingError::NoRecordPath)?;
    let mut file = escape(name);
    match unique {
        Some(n) if n >= 2 => file.push_str(&format!("-{unix_time}-{n}")),
        Some(_) => file.push_str(&format!("-{unix_time}")),
        None => {}
    }
    if conf.suffix.contains('%') {
        file.push_str(&strftime(&conf.suffix, unix_time).unwrap_or_else(|| conf.suffix.clone()));
    } else {
        file.push_str(&conf.suffix);
    }
    if file.len() > MAX_FILE_NAME {
        return Err(NamingError::TooLong(file.len()));
    }
    Ok(dir.join(file))
}

/// nginx's `NGX_ESCAPE_URI_COMPONENT`: everything but unreserved characters and a few safe
/// ones becomes `%XX`, so the name cannot leave the directory.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$'()*,:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `strftime(fmt)` of `unix_time` in local time; `None` if `fmt` holds a NUL or expands to
/// nothing or to more than [`MAX_SUFFIX`] bytes.
pub fn strftime(fmt: &str, unix_time: i64) -> Option<String> {
    let c_fmt = CString::new(fmt).ok()?;
    let t: libc::time_t = unix_time as libc::time_t;
    // SAFETY: `tm` is plain data that localtime_r fills in; both pointers are valid for the
    // call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return None;
    }
    let mut buf = vec![0u8; MAX_SUFFIX];
    // SAFETY: `buf` has `buf.len()` writable bytes, the format is NUL-terminated and `tm` was
    // filled by localtime_r; strftime writes at most `buf.len()` bytes and returns the count.
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), c_fmt.as_ptr(), &tm) };
    if n == 0 {
        return None;
    }
    buf.truncate(n);
    String::from_utf8(buf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(unique: bool, suffix: &str) -> RecordConf {
        RecordConf { path: Some("/rec".into()), unique, suffix: suffix.into(), ..RecordConf::default() }
    }

    #[test]
    fn nginx_names() {
        assert_eq!(file_path(&conf(false, ".flv"), "stream", 1_700_000_000), Ok("/rec/stream.flv".into()));
        assert_eq!(file_path(&conf(true, ".flv"), "stream", 1_700_000_000), Ok("/rec/stream-1700000000.flv".into()));
        assert_eq!(file_path(&RecordConf::default(), "stream", 0), Err(NamingError::NoRecordPath));
    }

    #[test]
    fn unique_forms_for_names_in_use() {
        let c = conf(false, ".mp4");
        assert_eq!(unique_path(&c, "s", 1_700_000_000, 1), Ok("/rec/s-1700000000.mp4".into()));
        assert_eq!(unique_path(&c, "s", 1_700_000_000, 2), Ok("/rec/s-1700000000-2.mp4".into()));
        assert_eq!(unique_path(&conf(true, ".mp4"), "s", 5, 1), file_path(&conf(true, ".mp4"), "s", 5));
    }

    #[test]
    fn names_that_are_no_file_names_are_refused() {
        for bad in ["../x", "/abs/x", "", ".", "..", "a\\b", "a\nb", "a\0b"] {
            for c in [conf(false, ".flv"), conf(true, "-%Y.flv")] {
                let refused = file_path(&c, bad, 0);
                assert!(matches!(refused, Err(NamingError::BadName(_))), "{bad:?}: {refused:?}");
                assert!(matches!(unique_path(&c, bad, 0, 2), Err(NamingError::BadName(_))), "{bad:?}");
            }
        }
        let long = "x".repeat(crate::untrusted::MAX_STREAM_NAME + 1);
        assert_eq!(file_path(&conf(false, ".flv"), &long, 0), Err(NamingError::BadName(NameError::TooLong)));
    }

    #[test]
    fn names_too_long_once_escaped_are_refused_with_their_length() {
        // 64 two-byte characters: 128 bytes, a valid stream name, 384 bytes escaped.
        let name = "é".repeat(64);
        assert_eq!(file_path(&conf(false, ".flv"), &name, 0), Err(NamingError::TooLong(388)));
        assert!(file_path(&conf(false, ".flv"), &"é".repeat(40), 0).is_ok());
    }

    #[test]
    fn names_cannot_leave_the_directory() {
        assert_eq!(escape("a/../../etc/passwd"), "a%2F..%2F..%2Fetc%2Fpasswd");
        assert_eq!(escape("cam 1?x=%"), "cam%201%3Fx%3D%25");
        assert_eq!(escape("ü"), "%C3%BC");
        let p = file_path(&conf(false, ".flv"), "..x", 0).unwrap();
        assert_eq!(p, std::path::Path::new("/rec/..x.flv"));
    }

    #[test]
    fn strftime_suffixes() {
        // 2023-11-14 22:13:20 UTC; the hour depends on the local zone, the rest does not.
        let name = file_path(&conf(false, "-%Y-%M-%S.flv"), "s", 1_700_000_000).unwrap();
        assert_eq!(name, PathBuf::from("/rec/s-2023-13-20.flv"));
        assert!(strftime("%%", 0).is_some_and(|s| s == "%"));
        assert_eq!(strftime("a\0b", 0), None);
        assert_eq!(strftime("", 0), None);
    }
}

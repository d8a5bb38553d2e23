//! Recording file names, as nginx-rtmp makes them (`ngx_rtmp_record_make_path`):
//! `record_path/NAME[-UNIXTIME]SUFFIX`, the stream name escaped as a URI component (so a name
//! holding `/` or `..` stays one file in `record_path`), `-UNIXTIME` with `record_unique`, and
//! the suffix run through strftime(3) in local time when it holds a `%`.

use std::ffi::CString;
use std::path::PathBuf;

use crate::config::RecordConf;

/// Longest file name strftime may produce; nginx-rtmp's limit is its path buffer.
const MAX_SUFFIX: usize = 1024;

/// The file `conf` records stream `name` into when opened at `unix_time` (seconds); `None`
/// without `record_path`.
pub fn file_path(conf: &RecordConf, name: &str, unix_time: i64) -> Option<PathBuf> {
    let dir = conf.path.as_ref()?;
    let mut file = escape(name);
    if conf.unique {
        file.push_str(&format!("-{unix_time}"));
    }
    if conf.suffix.contains('%') {
        file.push_str(&strftime(&conf.suffix, unix_time).unwrap_or_else(|| conf.suffix.clone()));
    } else {
        file.push_str(&conf.suffix);
    }
    Some(dir.join(file))
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
        assert_eq!(file_path(&conf(false, ".flv"), "stream", 1_700_000_000), Some("/rec/stream.flv".into()));
        assert_eq!(file_path(&conf(true, ".flv"), "stream", 1_700_000_000), Some("/rec/stream-1700000000.flv".into()));
        assert_eq!(file_path(&RecordConf::default(), "stream", 0), None, "no record_path");
    }

    #[test]
    fn names_cannot_leave_the_directory() {
        assert_eq!(escape("a/../../etc/passwd"), "a%2F..%2F..%2Fetc%2Fpasswd");
        assert_eq!(escape("cam 1?x=%"), "cam%201%3Fx%3D%25");
        assert_eq!(escape("ü"), "%C3%BC");
        let p = file_path(&conf(false, ".flv"), "../x", 0).unwrap();
        assert_eq!(p.parent(), Some(std::path::Path::new("/rec")));
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

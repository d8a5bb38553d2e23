//! Log files: the error log (`error_log`, where every `tracing` event goes) and the access
//! logs (`access_log`, one line per client session, nginx-rtmp's format), both reopened on
//! SIGUSR1 for logrotate.
//!
//! - [`install`] (from `main`, before the configuration is read) sends events to stderr;
//!   [`init`] then applies the configuration's `error_log` and `access_log`s and fails, naming
//!   the file, when one cannot be opened; [`apply`] does the same after a reload (new sessions
//!   use the new access logs). [`reopen`] reopens every open file under its path.
//! - Files are opened `O_APPEND | O_CREAT` and shared by path: two `access_log`s naming one
//!   file write through one descriptor.
//! - Access log lines are formatted when a session ends (`clients::ClientHandle`'s drop) and
//!   handed to one writer thread through a bounded queue: a slow disk never blocks a runtime
//!   thread; when the queue is full the line is dropped and counted (see [`access`]).

mod access;
mod error;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

pub use self::access::{current, flush, render, time_local, Session, Table};
pub use self::error::install;

use crate::config::Config;

/// Applies the configuration's logs at start-up: the error log (file and level) and the
/// access logs. Fails, naming the file, when one cannot be opened; nothing changes then.
/// `RUST_LOG`, when set, decides the level instead of `error_log`.
pub fn init(config: &Config) -> anyhow::Result<()> {
    apply(config)?;
    access::flush_at_exit();
    Ok(())
}

/// Applies a (reloaded) configuration's logs: the new error log and level at once, the new
/// access logs for sessions that start from now on. Fails, naming the file, when one cannot be
/// opened; the logs in use stay as they were then.
pub fn apply(config: &Config) -> anyhow::Result<()> {
    let error_file = match config.error_log.as_ref().and_then(|e| e.file.as_deref()) {
        Some(path) => Some(LogFile::shared(path).map_err(|e| open_error("error_log", path, e))?),
        None => None,
    };
    let table = Table::build(config)?;
    error::set(config.error_log.as_ref(), error_file);
    access::set(table);
    Ok(())
}

/// Reopens every log file in use under its name (what logrotate's `postrotate` asks with
/// SIGUSR1: the old file was renamed, the new one is created). A file that cannot be reopened
/// keeps its old descriptor; the error names the first such file.
pub fn reopen() -> anyhow::Result<()> {
    let files: Vec<Arc<LogFile>> = lock(&OPEN).iter().filter_map(Weak::upgrade).collect();
    let mut failed = None;
    for f in &files {
        if let Err(e) = f.reopen() {
            tracing::error!(file = %f.path.display(), "cannot reopen the log file: {e}");
            failed.get_or_insert_with(|| open_error("log file", &f.path, e));
        }
    }
    match failed {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

fn open_error(what: &str, path: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!("{what} \"{}\": cannot open: {e}", path.display())
}

/// Every log file opened (and still used), for [`reopen`] and for sharing by path.
static OPEN: Mutex<Vec<Weak<LogFile>>> = Mutex::new(Vec::new());

/// An append-only log file that can be reopened under its path.
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogFile {
    /// The open file for `path`, opened (append, create) if nobody has it open yet.
    fn shared(path: &Path) -> std::io::Result<Arc<LogFile>> {
        let mut open = lock(&OPEN);
        open.retain(|w| w.strong_count() > 0);
        if let Some(f) = open.iter().filter_map(Weak::upgrade).find(|f| f.path == path) {
            return Ok(f);
        }
        let f = Arc::new(LogFile { path: path.to_owned(), file: Mutex::new(open_append(path)?) });
        open.push(Arc::downgrade(&f));
        Ok(f)
    }

    fn reopen(&self) -> std::io::Result<()> {
        let fresh = open_append(&self.path)?;
        *lock(&self.file) = fresh;
        Ok(())
    }

    /// Writes `bytes` whole (one `write` for a line: `O_APPEND` keeps lines from several
    /// writers apart).
    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        lock(&self.file).write_all(bytes)
    }
}

/// Opened as nginx opens its logs: append, create with mode 0644 (less the umask).
fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().append(true).create(true).mode(0o644).open(path)
}

/// The logs' locks guard plain data: a poisoned lock is still good to use (and logging must
/// never panic).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

//! The recording file: positional writes from a blocking thread (tokio's blocking pool), so a
//! slow disk never holds up the runtime, and `record_lock`'s fcntl write lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open recording: the file and how long it is.
pub struct RecFile {
    file: Arc<File>,
    path: PathBuf,
    len: u64,
    /// Bytes written since the last sync.
    unsynced: bool,
}

/// Runs `f` on the blocking pool; a panic or a cancelled runtime becomes an I/O error.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(io::Error::other(format!("blocking task: {e}"))))
}

impl RecFile {
    /// Opens `path` for writing (creating it and its directory), truncated unless `keep`
    /// (then it is left as it is, to be continued), with a write lock when `lock`.
    pub async fn open(path: &Path, keep: bool, lock: bool) -> io::Result<RecFile> {
        let path = path.to_path_buf();
        blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new().read(true).write(true).create(true).truncate(!keep).open(&path)?;
            if lock {
                lock_file(&file, &path);
            }
            let len = file.metadata()?.len();
            Ok(RecFile { file: Arc::new(file), path, len, unsynced: false })
        })
        .await
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its length as this writer knows it.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// A handle for blocking work on the file (scanning, repair).
    pub fn std(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Appends `data` at the end. On error the file may hold part of it: [`Self::truncate`]
    /// back to [`Self::len`], which is unchanged.
    pub async fn append(&mut self, data: Vec<u8>) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let (file, at, n) = (self.file.clone(), self.len, data.len() as u64);
        blocking(move || file.write_all_at(&data, at)).await?;
        self.len += n;
        self.unsynced = true;
        Ok(())
    }

    /// Overwrites bytes inside the file.
    pub async fn patch(&mut self, offset: u64, data: Vec<u8>) -> io::Result<()> {
        let file = self.file.clone();
        blocking(move || file.write_all_at(&data, offset)).await?;
        self.unsynced = true;
        Ok(())
    }

    /// Cuts the file to `len` bytes.
    pub async fn truncate(&mut self, len: u64) -> io::Result<()> {
        let file = self.file.clone();
        blocking(move || file.set_len(len)).await?;
        self.len = len;
        Ok(())
    }

    /// Flushes written data to the disk (fdatasync) if anything was written since the last
    /// time, so a power loss keeps what was recorded up to now.
    pub async fn sync(&mut self) -> io::Result<()> {
        if !self.unsynced {
            return Ok(());
        }
        let file = self.file.clone();
        blocking(move || file.sync_data()).await?;
        self.unsynced = false;
        Ok(())
    }
}

/// nginx-rtmp's `record_lock`: an advisory fcntl write lock on the whole file while it is
/// written (released when it is closed), so readers can tell a file in progress. A file
/// someone else holds locked is written anyway, as nginx does, after saying so.
fn lock_file(file: &File, path: &Path) {
    use std::os::fd::AsRawFd;
    // SAFETY: flock is plain data; zeroed is a valid value before the fields are set.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: a valid descriptor and a pointer to an initialised flock for the call.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        tracing::warn!(path = %path.display(), "record: cannot lock the file ({e}); writing it anyway");
    }
}

/// Whether another process holds a write lock on `path` (for tests and tools).
pub fn is_locked(path: &Path) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    // SAFETY: as in lock_file.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: a valid descriptor and a pointer to an initialised flock for the call.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut fl) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

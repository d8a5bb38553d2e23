//! Positioned reads of a file for the media index ([`media::ReadAt`]): `pread`, no shared
//! cursor, so the players of a file (VOD) or the viewers of a recording share one handle.

use std::borrow::Borrow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// `file` read by ranges, up to `len` (its length when indexed: bytes written since are not
/// read, so an index and the reads it asks for agree).
pub(crate) struct FileAt<F> {
    pub(crate) file: F,
    pub(crate) len: u64,
}

impl FileAt<File> {
    /// Opens `path` and takes its length now.
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(FileAt { file, len })
    }
}

impl<F: Borrow<File>> media::ReadAt for FileAt<F> {
    fn read_at(&mut self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let len = usize::try_from(self.len.saturating_sub(offset)).unwrap_or(usize::MAX).min(len);
        let mut buf = vec![0; len];
        let mut done = 0;
        while done < len {
            match self.file.borrow().read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    fn size(&self) -> u64 {
        self.len
    }
}

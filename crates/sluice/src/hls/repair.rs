//! At start-up: finish the playlists a crash (SIGKILL, power loss) left open in `hls_path`, as
//! the recorder finishes its files (`record::repair`). A live playlist without
//! `#EXT-X-ENDLIST` tells players the stream goes on; after a crash it does not.
//!
//! Only media playlists with segments where sluice writes them are touched: `NAME.m3u8` and
//! `NAME/index.m3u8` directly in each `hls_path` (a split stream's `NAME-video.m3u8`,
//! `NAME-audio.m3u8`, nested `NAME/video.m3u8`, `NAME/audio.m3u8`; its master has no segments). Blocking I/O: run before serving.

use std::io;
use std::path::{Path, PathBuf};

/// Largest playlist read (an `hls_type event` playlist of a long stream is a few MiB).
const MAX_PLAYLIST: u64 = 16 << 20;

/// Finish every open playlist in `dir`; returns what was finished, or why one could not be.
pub fn repair_dir(dir: &Path) -> Vec<Result<PathBuf, String>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut done = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        // Nested: the media playlist, or a split stream's video and audio ones.
        let playlists = if kind.is_dir() {
            ["index.m3u8", "video.m3u8", "audio.m3u8"].map(|f| path.join(f)).to_vec()
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "m3u8") {
            vec![path]
        } else {
            continue;
        };
        for playlist in playlists {
            match finish(&playlist) {
                Ok(true) => done.push(Ok(playlist)),
                Ok(false) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => done.push(Err(format!("cannot finish {}: {e}", playlist.display()))),
            }
        }
    }
    done
}

/// Append `#EXT-X-ENDLIST` to an open media playlist (atomically: a temporary file renamed over
/// it). `Ok(false)`: nothing to do.
fn finish(path: &Path) -> io::Result<bool> {
    if std::fs::symlink_metadata(path)?.len() > MAX_PLAYLIST {
        return Ok(false);
    }
    let text = std::fs::read_to_string(path)?;
    // A media playlist with segments, as the HLS writer leaves them (other files are not ours).
    let media = text.starts_with("#EXTM3U") && text.contains("#EXT-X-TARGETDURATION:") && text.contains("#EXTINF:");
    if !media || text.contains("#EXT-X-ENDLIST") {
        return Ok(false);
    }
    let mut finished = text;
    if !finished.ends_with('\n') {
        finished.push('\n');
    }
    finished.push_str("#EXT-X-ENDLIST\n");
    let tmp = path.with_extension("m3u8.tmp");
    std::fs::write(&tmp, finished)?;
    std::fs::rename(&tmp, path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn open_playlists_are_finished_and_nothing_else_is_touched() {
        let dir = TempDir(std::env::temp_dir().join(format!("sluice-hls-repair-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(dir.path());
        std::fs::create_dir_all(dir.path()).unwrap();
        let open = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\na-0.ts\n";
        std::fs::write(dir.path().join("a.m3u8"), open).unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/index.m3u8"), open.trim_end()).unwrap();
        // A split stream, nested: the master has no segments; its video and audio playlists do.
        std::fs::create_dir(dir.path().join("s")).unwrap();
        std::fs::write(dir.path().join("s/index.m3u8"), "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nvideo.m3u8\n")
            .unwrap();
        std::fs::write(dir.path().join("s/video.m3u8"), open).unwrap();
        std::fs::write(dir.path().join("s/audio.m3u8"), open).unwrap();
        let ended = format!("{open}#EXT-X-ENDLIST\n");
        std::fs::write(dir.path().join("c.m3u8"), &ended).unwrap();
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nx.m3u8\n";
        std::fs::write(dir.path().join("master.m3u8"), master).unwrap();
        std::fs::write(dir.path().join("a-0.ts"), b"not a playlist").unwrap();
        let empty = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n";
        std::fs::write(dir.path().join("empty.m3u8"), empty).unwrap();

        let mut done: Vec<PathBuf> = repair_dir(dir.path()).into_iter().map(Result::unwrap).collect();
        done.sort();
        let want = ["a.m3u8", "b/index.m3u8", "s/audio.m3u8", "s/video.m3u8"].map(|f| dir.path().join(f));
        assert_eq!(done, want);
        assert_eq!(std::fs::read_to_string(dir.path().join("a.m3u8")).unwrap(), ended);
        assert_eq!(std::fs::read_to_string(dir.path().join("b/index.m3u8")).unwrap(), ended);
        assert_eq!(std::fs::read_to_string(dir.path().join("c.m3u8")).unwrap(), ended);
        assert_eq!(std::fs::read_to_string(dir.path().join("master.m3u8")).unwrap(), master);
        assert_eq!(std::fs::read_to_string(dir.path().join("empty.m3u8")).unwrap(), empty);
        assert!(repair_dir(dir.path()).is_empty(), "a second start has nothing to do");
        assert!(repair_dir(&dir.path().join("missing")).is_empty());
    }
}

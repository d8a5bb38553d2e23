//! `play http://...` locations, as nginx-rtmp fetches them: `GET LOCATION/NAME.SFX?addr=CLIENT`
//! (`&ARGS` added when the play had a query), the whole body written into `play_temp_path`
//! before playing starts; a non-2xx answer or a failed transfer tries the next location. With
//! `play_local_path` set, the file is then moved to `LOCAL/NAME.SFX` and kept there.
//!
//! Bounds: at most [`MAX_FETCH`] bytes per file, [`CONNECT_TIMEOUT`] to connect and
//! [`IDLE_TIMEOUT`] between two reads, [`MAX_DOWNLOADS`] downloads at once server-wide (a play
//! over it tries the next location); no redirects are followed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use super::Asker;

/// Largest file downloaded: 64 GiB.
const MAX_FETCH: u64 = 64 << 30;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Downloads at once (each player of an `http://` location downloads its own copy).
pub(super) const MAX_DOWNLOADS: usize = 64;

/// The HTTP client, built on first use.
pub(super) struct Http {
    client: OnceLock<Result<reqwest::Client, String>>,
    /// Names temp files apart.
    next: AtomicU64,
    downloads: Arc<Semaphore>,
}

impl Default for Http {
    fn default() -> Self {
        Http { client: OnceLock::new(), next: AtomicU64::new(0), downloads: Arc::new(Semaphore::new(MAX_DOWNLOADS)) }
    }
}

impl Http {
    fn client(&self) -> Result<reqwest::Client, String> {
        let built = self.client.get_or_init(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(IDLE_TIMEOUT)
                .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())
        });
        built.clone()
    }

    /// Download `relative` (the mapped name, suffix included) from `base`; returns the file's
    /// path and whether it is a temp file to delete after playing.
    pub(super) async fn fetch(
        &self,
        base: &str,
        relative: &str,
        asker: &Asker<'_>,
        temp_dir: &Path,
        local_dir: Option<&Path>,
    ) -> Result<(PathBuf, bool), String> {
        let Ok(_slot) = self.downloads.clone().try_acquire_owned() else {
            return Err(format!("{MAX_DOWNLOADS} downloads already running"));
        };
        let client = self.client()?;
        let mut url = format!("{base}/{}?addr={}", encode_path(relative), asker.addr);
        if !asker.args.is_empty() {
            url.push('&');
            url.push_str(asker.args);
        }
        let mut response = client.get(&url).send().await.map_err(|e| format!("GET failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET answered {}", response.status()));
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let temp = temp_dir.join(format!("sluice-vod.{}.{n}", std::process::id()));
        let written = download(&mut response, &temp).await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
        let Some(local) = local_dir else { return Ok((temp, true)) };
        let keep = local.join(relative);
        if let Some(parent) = keep.parent() {
            let _ = tokio::fs::create_dir_all(parent).await;
        }
        match tokio::fs::rename(&temp, &keep).await {
            Ok(()) => Ok((keep, false)),
            // Another filesystem: play the temp file (deleted after) rather than copy it.
            Err(e) => {
                tracing::warn!(path = %keep.display(), "vod: play_local_path: cannot keep the file: {e}");
                Ok((temp, true))
            }
        }
    }
}

/// `path` with every byte but unreserved ones, `/` and `:` percent-encoded (a name's spaces,
/// `#`, `%` stay part of the path).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b':' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn download(response: &mut reqwest::Response, path: &Path) -> Result<(), String> {
    let mut file = tokio::fs::File::create(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
    let mut total = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("download failed: {e}"))? {
        total += chunk.len() as u64;
        if total > MAX_FETCH {
            return Err(format!("larger than {MAX_FETCH} bytes"));
        }
        file.write_all(&chunk).await.map_err(|e| format!("{}: {e}", path.display()))?;
    }
    file.flush().await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_percent_encoded_in_the_path() {
        assert_eq!(super::encode_path("sub/my film#1.mp4"), "sub/my%20film%231.mp4");
        assert_eq!(super::encode_path("caméra.flv"), "cam%C3%A9ra.flv");
    }
}

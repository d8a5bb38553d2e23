//! Files the outputs publish (playlists, manifests, segments), written so that nobody reading
//! the directory sees half of one.

use std::path::Path;

/// Write atomically: a temporary file (`NAME.EXT.tmp`) renamed over the target, so readers of
/// the directory (nginx, a CDN, scripts) never see half a file; the temporary file goes on error.
pub(crate) async fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or_default()));
    let result = async {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::write(&tmp, data).await?;
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

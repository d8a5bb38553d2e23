//! An HTTP-FLV response written to the socket by the player itself, on plain TCP: after hyper
//! has sent the head (close-delimited, `HTTP/1.0`, so the body needs no chunk framing), the
//! response body stays pending while this writes FLV tags with gathered non-blocking writes,
//! the frames' bodies shared rather than copied; while the player keeps up, a fan-out shard
//! writes them instead ([`crate::fanout`]). When the player ends, so does the body, and hyper
//! closes the connection.
//!
//! The socket is a duplicate of the connection's descriptor ([`HeadWatch::arm`]); it is dropped
//! when the body ends, before hyper closes.
//! `send_timeout` holds here as in hyper's writes: a client that takes nothing for that long is
//! cut.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::player::FlvPlayer;
use crate::http::HeadWatch;
use crate::transport::{send_now, ShardSocket};

/// Play `player` to the socket `fd` once hyper has sent the response head.
pub(super) async fn run(mut player: FlvPlayer, head: HeadWatch, fd: OwnedFd) {
    std::future::poll_fn(|cx| head.poll_flushed(cx)).await;
    let fd = Arc::new(fd);
    let socket = ShardSocket::held(fd.clone());
    let limit = head.send_timeout();
    let mut out = Vec::new();
    loop {
        if let Err(e) = write_all(&fd, &socket, &mut out, limit).await {
            player.write_failed(&e);
            return;
        }
        // Caught up: a shard may take over until the socket is full.
        player.join_shard(&socket);
        if !player.next_parts(&mut out).await {
            return;
        }
    }
}

/// Write all of `bufs`, waiting for the socket; fails once the client took nothing for `limit`.
/// The socket is registered with the reactor only while a write waits (a registration of its
/// own, on one more duplicate): a player that keeps up costs the reactor nothing more than
/// the connection's own registration.
async fn write_all(fd: &OwnedFd, socket: &ShardSocket, bufs: &mut Vec<Bytes>, limit: Duration) -> io::Result<()> {
    if bufs.is_empty() || send_now(socket, bufs)? {
        return Ok(());
    }
    // SAFETY: the `AsyncFd` owns the duplicate and closes it.
    let waiter = unsafe { AsyncFd::register_with_interest(fd.try_clone()?, Interest::WRITABLE) }?;
    loop {
        let waited = tokio::time::timeout(limit, waiter.writable()).await;
        let mut ready =
            waited.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "send_timeout: the client read nothing"))??;
        // A full socket clears the readiness it was tried with, so the next wait is for room
        // (and, after progress, a new `send_timeout`).
        match ready.try_io(|_| match send_now(socket, bufs) {
            Ok(true) => Ok(()),
            Ok(false) => Err(io::ErrorKind::WouldBlock.into()),
            Err(e) => Err(e),
        }) {
            Ok(done) => return done,
            Err(_would_block) => continue,
        }
    }
}

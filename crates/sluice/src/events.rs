//! What happens on the server that other modules react to: the notify module's `on_*`
//! callbacks, later `exec_*` and stats. Producers send [`Notice`]s on the shared [`Notices`]
//! channel; consumers subscribe. Nobody waits for a consumer: a slow one misses notices
//! (and logs it), it never slows a stream.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::broadcast;

/// Notices a slow consumer may fall behind by before it misses some.
const CAPACITY: usize = 1024;

/// Who a client is, as nginx-rtmp reports it to callbacks (`addr`, `clientid`, and the
/// `connect` command's fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// nginx-rtmp's `clientid`: a number unique for the server's lifetime.
    pub id: u64,
    /// The peer address.
    pub addr: SocketAddr,
    /// The application connected to.
    pub app: String,
    /// `flashVer` from `connect`.
    pub flash_ver: String,
    /// `swfUrl` from `connect`.
    pub swf_url: String,
    /// `tcUrl` from `connect`.
    pub tc_url: String,
    /// `pageUrl` from `connect`.
    pub page_url: String,
}

/// A new client id.
pub fn next_client_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A recorder closed a file (nginx-rtmp's `record_done`: `on_record_done`,
    /// `exec_record_done`).
    RecordDone {
        /// The publisher whose stream was recorded.
        client: ClientInfo,
        /// Stream name (without query).
        name: String,
        /// The stream name's query string (its arguments are sent as callback fields).
        args: String,
        /// Recorder name (`""` for the application's default recorder).
        recorder: String,
        /// The file written.
        path: PathBuf,
    },
}

/// The server-wide notice channel.
pub struct Notices {
    tx: broadcast::Sender<Notice>,
}

impl Default for Notices {
    fn default() -> Self {
        Notices { tx: broadcast::channel(CAPACITY).0 }
    }
}

impl Notices {
    /// Tell whoever listens; fine when nobody does.
    pub fn send(&self, notice: Notice) {
        let _ = self.tx.send(notice);
    }

    /// Listen from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.tx.subscribe()
    }
}

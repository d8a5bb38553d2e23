//! The socket side of the PROXY protocol: read the header at the start of an accepted
//! connection, in the connection's own task (a slow header holds no accept), under a
//! timeout, taking exactly the header's bytes from the socket so that what follows (RTMP's
//! handshake, a TLS ClientHello, an HTTP request) stays there for the protocol after it.
//!
//! The bytes are peeked, parsed, and only then read: a complete header is read up to its
//! end; an incomplete one is all header, so what was peeked is read and the next peek waits
//! for more. Nothing past the header is ever taken.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{excerpt, parse, Error, Parsed, MAX_HEADER};
use crate::server::{LogEvery, ServerCtx};

/// Connections waiting for their header at once, process-wide. Each holds a
/// [`MAX_HEADER`]-byte buffer until its header is in or its timeout fires; past the bound a
/// new connection is closed at once (RTMP connections are counted by the clients registry
/// only once their address is known, HTTP ones also by their server's `max_connections`).
pub const MAX_WAITING: usize = 4096;

static WAITING: AtomicUsize = AtomicUsize::new(0);

/// How often "too many connections waiting for their header" is logged while it lasts.
const BUSY_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a connection on a `proxy_protocol` address was closed before its protocol started.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// No complete header within the timeout.
    #[error("no complete PROXY protocol header within {0:?}")]
    TimedOut(Duration),
    /// The peer closed first, after `received` bytes of header.
    #[error("closed by the peer after {received} bytes, before a complete PROXY protocol header")]
    Closed {
        /// Header bytes received before the close.
        received: usize,
    },
    /// Reading failed.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are no header, or a broken one.
    #[error("{error} (received \"{excerpt}\")")]
    Header {
        /// What is wrong.
        error: Error,
        /// The first line received, printable.
        excerpt: String,
    },
    /// [`MAX_WAITING`] connections are already waiting for theirs.
    #[error("{MAX_WAITING} connections are already waiting for their PROXY protocol header")]
    Busy,
}

/// A place among the [`MAX_WAITING`] connections reading their header.
struct Waiting;

impl Waiting {
    fn take() -> Option<Waiting> {
        let before = WAITING.fetch_add(1, Ordering::AcqRel);
        if before >= MAX_WAITING {
            WAITING.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Waiting)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads the header of a connection from `balancer` within `timeout`: the client it names,
/// or `balancer` itself when it names none (v1 `UNKNOWN`, v2 `LOCAL`: the balancer's own
/// health checks).
pub async fn client_addr(
    socket: &mut TcpStream,
    balancer: SocketAddr,
    timeout: Duration,
) -> Result<SocketAddr, Failure> {
    let _place = Waiting::take().ok_or(Failure::Busy)?;
    let parsed = tokio::time::timeout(timeout, read_header(socket)).await.map_err(|_| Failure::TimedOut(timeout))??;
    Ok(parsed.source.unwrap_or(balancer))
}

/// Peeks, parses, and reads exactly the header's bytes.
async fn read_header(socket: &mut TcpStream) -> Result<Parsed, Failure> {
    let mut buf = vec![0u8; MAX_HEADER];
    let mut have = 0;
    loop {
        // `parse` never leaves a header incomplete at MAX_HEADER bytes; guard it all the same.
        if have == buf.len() {
            return Err(Failure::Header { error: Error::V2TooLong(have + 1), excerpt: excerpt(&buf) });
        }
        let n = socket.peek(&mut buf[have..]).await?;
        if n == 0 {
            return Err(Failure::Closed { received: have });
        }
        match parse(&buf[..have + n]) {
            Ok(parsed) => {
                socket.read_exact(&mut buf[have..parsed.consumed]).await?;
                return Ok(parsed);
            }
            Err(Error::Incomplete) => {
                socket.read_exact(&mut buf[have..have + n]).await?;
                have += n;
            }
            Err(error) => return Err(Failure::Header { error, excerpt: excerpt(&buf[..have + n]) }),
        }
    }
}

/// Reads the header of a connection accepted on a `proxy_protocol` address (`scheme`: for
/// the log) and returns the client's address; `None` when the connection is to be closed
/// (the reason is logged, with the balancer's address) or the server is shutting down.
pub async fn accept(
    socket: &mut TcpStream,
    balancer: SocketAddr,
    timeout: Duration,
    shutdown: &CancellationToken,
    scheme: &'static str,
) -> Option<SocketAddr> {
    let result = tokio::select! {
        r = client_addr(socket, balancer, timeout) => r,
        _ = shutdown.cancelled() => return None,
    };
    let local = socket.local_addr().ok();
    match result {
        Ok(client) => {
            tracing::debug!(client = %client, balancer = %balancer, scheme, "proxy_protocol: the header names the client");
            Some(client)
        }
        Err(e) => {
            log_failure(balancer, local, scheme, &e);
            None
        }
    }
}

/// One line per refused connection; a connection closed before sending anything (a
/// balancer's TCP health check) at debug, and "too many waiting" at most once per interval.
fn log_failure(balancer: SocketAddr, local: Option<SocketAddr>, scheme: &'static str, e: &Failure) {
    static BUSY: Mutex<LogEvery> = Mutex::new(LogEvery::new(BUSY_LOG_INTERVAL));
    let listen = local.map_or_else(|| "?".to_owned(), |a| a.to_string());
    match e {
        Failure::Closed { received: 0 } => {
            tracing::debug!(balancer = %balancer, listen = %listen, scheme, "proxy_protocol: closed before any byte")
        }
        Failure::Busy => {
            if let Some(refused) = BUSY.lock().unwrap_or_else(|p| p.into_inner()).hit() {
                tracing::warn!(balancer = %balancer, listen = %listen, scheme, refused, "proxy_protocol: connection closed: {e}");
            }
        }
        _ => tracing::warn!(balancer = %balancer, listen = %listen, scheme, "proxy_protocol: connection closed: {e}"),
    }
}

/// An RTMP(S) connection on a `listen ... proxy_protocol` address: the header first (within
/// the server's `timeout`, as nginx-rtmp; before the TLS handshake on `ssl` addresses), then
/// the connection, as the client the header names.
pub async fn run_rtmp(mut socket: TcpStream, balancer: SocketAddr, ctx: Arc<ServerCtx>, tls: Option<TlsAcceptor>) {
    let scheme = if tls.is_some() { "rtmps" } else { "rtmp" };
    let timeout = ctx.conf.core.timeout;
    if let Some(client) = accept(&mut socket, balancer, timeout, &ctx.shutdown, scheme).await {
        crate::connection::run(socket, client, ctx, tls).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        (client, server, peer)
    }

    /// The header in pieces, with the protocol's first bytes in the header's last segment:
    /// the client is the header's, and the bytes after it are left for the protocol.
    #[tokio::test]
    async fn reads_exactly_the_header_across_segments() {
        let (mut client, mut server, peer) = pair().await;
        let writer = tokio::spawn(async move {
            for part in [&b"PRO"[..], b"XY TCP4 203.0.113.7 ", b"192.0.2.1 5000 1935\r\n\x03C0C1"] {
                client.write_all(part).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            client
        });
        let got = client_addr(&mut server, peer, Duration::from_secs(10)).await.unwrap();
        assert_eq!(got, "203.0.113.7:5000".parse().unwrap());
        let mut rest = [0u8; 5];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"\x03C0C1");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn v2_local_keeps_the_peer_and_leaves_the_rest() {
        let (mut client, mut server, peer) = pair().await;
        let mut h = super::super::tests::v2(0, 0x00, &[]);
        h.extend_from_slice(b"\x16\x03\x01");
        client.write_all(&h).await.unwrap();
        assert_eq!(client_addr(&mut server, peer, Duration::from_secs(10)).await.unwrap(), peer);
        let mut rest = [0u8; 3];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"\x16\x03\x01");
    }

    #[tokio::test]
    async fn missing_broken_closed_and_slow_headers_fail() {
        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"\x03rtmp handshake").await.unwrap();
        let e = client_addr(&mut server, peer, Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(e, Failure::Header { error: Error::Missing, .. }), "{e}");

        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n").await.unwrap();
        let e = client_addr(&mut server, peer, Duration::from_secs(10)).await.unwrap_err();
        assert!(e.to_string().contains("PROXY TCP4 1.2.3.4 5.6.7.8 99999 1"), "{e}");

        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"PROXY TCP4").await.unwrap();
        drop(client);
        let e = client_addr(&mut server, peer, Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(e, Failure::Closed { received: 10 }), "{e}");

        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"PROXY TCP4").await.unwrap();
        let e = client_addr(&mut server, peer, Duration::from_millis(50)).await.unwrap_err();
        assert!(matches!(e, Failure::TimedOut(_)), "{e}");
        drop(client);
    }
}

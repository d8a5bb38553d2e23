//! HTTP connections: accepting them within `max_connections`, and serving each with hyper's
//! HTTP/1 server under `client_header_timeout`, `keepalive_timeout` and `send_timeout`, so that
//! a slow or silent client cannot hold a connection (and its file descriptor) for long.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::ConnectionLimit;
use crate::config::HttpLimits;
use crate::httpflv::Upgrades;
use crate::server::{LogEvery, ACCEPT_BACKOFF, ACCEPT_ERROR_LOG_INTERVAL};

/// How often refusals at the connection limit are logged while they go on.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// What an HTTP listener serves: a server's routes, limits and connection count. A reload
/// replaces it; a connection keeps the one it was accepted with.
pub struct Site {
    /// The server's routes over its state.
    pub router: Router,
    /// Its timeouts and `max_connections`.
    pub limits: HttpLimits,
    /// Its open connections (shared by its addresses).
    pub connections: Arc<ConnectionLimit>,
    /// Its `listen ... proxy_protocol` addresses.
    pub proxy_listen: Vec<SocketAddr>,
}

/// Accepts connections until `stop` (or `shutdown`), then waits for the open ones to finish
/// (on `shutdown`, the request in progress).
/// Past `max_connections` a new connection is closed at once: it never waits in the backlog
/// for a place, and the RTMP listeners do not share this count.
pub(super) async fn accept_loop(
    listener: TcpListener,
    local: SocketAddr,
    current: tokio::sync::watch::Receiver<Arc<Site>>,
    stop: CancellationToken,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    // Floods must not flood the log: the first refusal or failure, then one line a minute.
    let mut refusals = LogEvery::new(REFUSAL_LOG_INTERVAL);
    let mut failures = LogEvery::new(ACCEPT_ERROR_LOG_INTERVAL);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => break,
            _ = shutdown.cancelled() => break,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if let Some(failed) = failures.hit() {
                    tracing::warn!(error = %e, failed, "http accept failed");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let site = current.borrow().clone();
        let Some(permit) = site.connections.try_acquire() else {
            if let Some(refused) = refusals.hit() {
                tracing::warn!(
                    max_connections = site.limits.max_connections,
                    client = %peer,
                    refused,
                    "http connection limit reached; new connections are closed until some end"
                );
            }
            drop(socket);
            continue;
        };
        let upgrades = Upgrades { permit: Arc::new(permit), tracker: tracker.clone() };
        let (site, shutdown) = (site.clone(), shutdown.clone());
        let proxy = super::is_proxy_listen(&site.proxy_listen, local);
        tracker.spawn(async move {
            let mut socket = socket;
            // The header first, in the connection's task and under its place in `max_connections`.
            let peer = if proxy {
                let timeout = site.limits.header_timeout;
                crate::proxy_protocol::read::accept(&mut socket, peer, timeout, &shutdown, "http").await
            } else {
                Some(peer)
            };
            if let Some(peer) = peer {
                serve_connection(socket, peer, site.limits, upgrades, site.router.clone(), shutdown).await;
            }
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// One connection, until the client or a timeout closes it; on shutdown, the request in
/// progress finishes and the connection closes.
async fn serve_connection(
    socket: TcpStream,
    peer: SocketAddr,
    limits: HttpLimits,
    upgrades: Upgrades,
    router: Router,
    shutdown: CancellationToken,
) {
    let head = HeadWatch::new(&socket, limits.send_timeout);
    let io = TokioIo::new(SendTimeout::new(socket, limits.send_timeout, head.clone()));
    let info = ConnInfo { peer, upgrades, head };
    // The connection's place, held by the connection and lent to each request: a WebSocket
    // player keeps it (and is tracked with the connections) after the upgrade.
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(info.clone());
        let mut router = router.clone();
        tower_service::Service::call(&mut router, req.map(Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout())
        .keep_alive(limits.keepalive_timeout.is_some());
    // Upgrades: WebSocket-FLV players (`crate::httpflv`).
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts and resets are routine (and a client can cause them at will): debug only.
        tracing::debug!(client = %peer, error = %chain(&e), "http connection ended");
    }
}

/// What a request's connection tells the handlers, in one request extension (one allocation
/// per request rather than one per item).
#[derive(Clone)]
pub struct ConnInfo {
    /// The client.
    pub peer: SocketAddr,
    /// Lent to a WebSocket player ([`Upgrades`]).
    pub upgrades: Upgrades,
    /// The plain socket under the response ([`HeadWatch`]): HTTP-FLV players write to it.
    pub head: HeadWatch,
}

/// An error with its causes (hyper's own text says only what it was doing: "error writing a
/// body to connection"; the cause says why, e.g. `send_timeout`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A socket whose writes fail once the client has taken nothing for `limit` (nginx's
/// `send_timeout`): a client that stops reading a response cannot hold the connection.
struct SendTimeout {
    inner: TcpStream,
    limit: Duration,
    /// Running while a write waits for the client.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Told when a response head asked for is out ([`HeadWatch`]).
    head: HeadWatch,
}

impl SendTimeout {
    fn new(inner: TcpStream, limit: Duration, head: HeadWatch) -> Self {
        SendTimeout { inner, limit, stalled: None, head }
    }

    /// hyper wrote something (after [`HeadWatch::arm`]: the response head).
    fn wrote(&self, poll: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(1..)) = poll {
            self.head.wrote();
        }
    }

    /// Tracks a write's outcome: progress resets the clock, waiting runs it.
    fn track<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "send_timeout: the client read nothing")))
    }
}

impl AsyncRead for SendTimeout {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendTimeout {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&poll);
        self.track(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&poll);
        self.track(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = poll {
            self.head.flushed();
        }
        poll
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.track(cx, poll)
    }
}

/// Lets a response write its body to the socket itself, after hyper has sent the head (an
/// HTTP-FLV player, [`crate::httpflv`]): in every request's extensions on a plain TCP
/// connection. The handler [`arm`](HeadWatch::arm)s it (and gets its own descriptor for the
/// socket); hyper then writes the head (the body stays pending) and, once its write buffer is
/// empty, flushes the connection's IO, which [`SendTimeout`] reports here. From then on hyper
/// writes nothing until the body ends, so the socket is the body's.
#[derive(Clone)]
pub struct HeadWatch(Arc<HeadState>);

struct HeadState {
    fd: std::os::fd::RawFd,
    send_timeout: Duration,
    /// IDLE, ARMED, WRITTEN (a write after arming: the head), FLUSHED.
    stage: std::sync::atomic::AtomicU8,
    waker: std::sync::Mutex<Option<std::task::Waker>>,
}

const IDLE: u8 = 0;
const ARMED: u8 = 1;
const WRITTEN: u8 = 2;
const FLUSHED: u8 = 3;

impl HeadWatch {
    fn new(socket: &TcpStream, send_timeout: Duration) -> Self {
        use std::os::fd::AsRawFd;
        HeadWatch(Arc::new(HeadState {
            fd: socket.as_raw_fd(),
            send_timeout,
            stage: IDLE.into(),
            waker: std::sync::Mutex::new(None),
        }))
    }

    /// The next response's head is to be watched; a descriptor of the connection's socket
    /// (a duplicate: it keeps the socket open while held, and is registered with the reactor
    /// on its own).
    pub fn arm(&self) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::{BorrowedFd, OwnedFd};
        // SAFETY: called by a request's handler, while its connection (which owns the
        // descriptor) is being served.
        let fd: OwnedFd = unsafe { BorrowedFd::borrow_raw(self.0.fd) }.try_clone_to_owned()?;
        self.0.stage.store(ARMED, std::sync::atomic::Ordering::Release);
        Ok(fd)
    }

    /// The server's `send_timeout`, which a body written this way keeps to itself.
    pub fn send_timeout(&self) -> Duration {
        self.0.send_timeout
    }

    /// Ready once the head is written and flushed.
    pub fn poll_flushed(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.stage() == FLUSHED {
            return Poll::Ready(());
        }
        *self.0.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        // Again: the flush may have come between the check and the waker.
        if self.stage() == FLUSHED {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    fn stage(&self) -> u8 {
        self.0.stage.load(std::sync::atomic::Ordering::Acquire)
    }

    fn wrote(&self) {
        if self.stage() == ARMED {
            self.0.stage.store(WRITTEN, std::sync::atomic::Ordering::Release);
        }
    }

    fn flushed(&self) {
        if self.stage() != WRITTEN {
            return;
        }
        self.0.stage.store(FLUSHED, std::sync::atomic::Ordering::Release);
        if let Some(w) = self.0.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
    }
}

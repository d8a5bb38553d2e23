//! A connection's byte stream: plain TCP, or TLS on an `ssl` listener (RTMPS, [`crate::tls`]).
//! The RTMP connection reads a [`Reader`] and writes a [`Writer`] without knowing which.
//!
//! Plain TCP keeps its hot path: media goes out as many `Bytes` in one `sendmsg`, tried before
//! any timer is armed. TLS copies into rustls's writer (it must encrypt anyway) and is flushed
//! at the end of every write, under the same timeout the caller puts on any waiting write.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::clients::ClientHandle;
use crate::server::ServerCtx;

/// The reading side of a connection.
pub enum Reader {
    /// Plain RTMP.
    Tcp(OwnedReadHalf),
    /// RTMPS.
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

/// The writing side of a connection.
pub enum Writer {
    /// Plain RTMP; shared with a fan-out shard while it writes media to this player
    /// ([`crate::fanout`]), one side at a time.
    Tcp(Arc<OwnedWriteHalf>),
    /// RTMPS.
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

/// The two sides of an accepted connection: `socket` as is when `tls` is `None`, else after
/// the TLS handshake (bounded by the server's `timeout`, and given up on shutdown or a control
/// drop). `None` when there is no connection to serve; a failed handshake is logged here, once.
pub async fn open(
    socket: TcpStream,
    peer: SocketAddr,
    tls: Option<&TlsAcceptor>,
    ctx: &ServerCtx,
    handle: &ClientHandle,
) -> Option<(Reader, Writer)> {
    let Some(acceptor) = tls else {
        let (r, w) = socket.into_split();
        return Some((Reader::Tcp(r), Writer::Tcp(Arc::new(w))));
    };
    let limit = ctx.conf.core.timeout;
    let shaken = tokio::select! {
        r = crate::tls::handshake(acceptor, socket, limit) => r,
        _ = ctx.shutdown.cancelled() => return None,
        _ = handle.dropped() => return None,
    };
    match shaken {
        Ok(stream) => {
            tracing::debug!(client = %peer, "tls handshake done");
            let (r, w) = tokio::io::split(stream);
            Some((Reader::Tls(r), Writer::Tls(w)))
        }
        Err(e) => {
            // A plain RTMP client on the ssl port ends here too (rustls: "corrupt message").
            tracing::info!(client = %peer, error = %e, "tls handshake failed");
            None
        }
    }
}

impl AsyncRead for Reader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Reader::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Tls(r) => match ready!(Pin::new(r).poll_read(cx, buf)) {
                // ffmpeg and OBS close without a TLS close_notify: an end like a plain FIN.
                // Nothing is lost by it: RTMP messages carry their lengths, and the session
                // drops a cut one as it would on TCP.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
                r => Poll::Ready(r),
            },
        }
    }
}

impl Writer {
    /// Write what the socket takes now without waiting; true when everything was written.
    /// TLS writes nothing here (false): its records must be flushed, which
    /// [`Writer::write_all_vectored`] does under the caller's timeout.
    pub fn try_write_vectored(&self, bufs: &mut Vec<Bytes>) -> io::Result<bool> {
        match self {
            Writer::Tcp(w) => try_write_vectored(w, bufs),
            Writer::Tls(_) => Ok(bufs.is_empty()),
        }
    }

    /// The plain TCP socket, for a fan-out shard to write to (`None` on TLS).
    pub fn tcp(&self) -> Option<Arc<OwnedWriteHalf>> {
        match self {
            Writer::Tcp(w) => Some(Arc::clone(w)),
            Writer::Tls(_) => None,
        }
    }

    /// Write all buffers, waiting for the socket as needed.
    pub async fn write_all_vectored(&mut self, bufs: &mut Vec<Bytes>) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => loop {
                if try_write_vectored(w, bufs)? {
                    return Ok(());
                }
                w.writable().await?;
            },
            Writer::Tls(w) => {
                write_all_vectored(w, bufs).await?;
                // rustls holds what the socket did not take yet.
                w.flush().await
            }
        }
    }

    /// Close the writing side: a FIN, after a TLS close_notify on RTMPS. Never waits long:
    /// the close_notify waits for room in the socket, which a peer that reads nothing never
    /// makes (a plain FIN needs none).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => shutdown_write(w),
            Writer::Tls(w) => match tokio::time::timeout(CLOSE_NOTIFY_GRACE, w.shutdown()).await {
                Ok(r) => r,
                Err(_) => Err(io::ErrorKind::TimedOut.into()),
            },
        }
    }
}

/// A FIN now, whoever else still holds the socket (a shard lets go of it at its next round).
fn shutdown_write(w: &OwnedWriteHalf) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let stream: &TcpStream = w.as_ref();
    // SAFETY: the descriptor is open: `w` holds the socket.
    if unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How long a TLS close_notify may wait for the peer to make room for it.
const CLOSE_NOTIFY_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Most buffers handed to one `writev` (Linux's IOV_MAX is 1024).
pub(crate) const MAX_IOVECS: usize = 64;

/// Write what the socket takes now without waiting; true when everything was written.
fn try_write_vectored(writer: &OwnedWriteHalf, bufs: &mut Vec<Bytes>) -> io::Result<bool> {
    let stream: &TcpStream = writer.as_ref();
    write_now(bufs, |slices| stream.try_io(tokio::io::Interest::WRITABLE, || send_vectored(stream, slices)))
}

/// Hand `bufs` to `send` (one gathered, non-blocking write) until everything is written (true) or
/// it would block (false), dropping what was written from `bufs`.
fn write_now(bufs: &mut Vec<Bytes>, mut send: impl FnMut(&[io::IoSlice<'_>]) -> io::Result<usize>) -> io::Result<bool> {
    loop {
        let mut slices = [io::IoSlice::new(&[]); MAX_IOVECS];
        let n = fill(&mut slices, bufs);
        if let Some(done) = after_send(bufs, send(&slices[..n]))? {
            return Ok(done);
        }
    }
}

/// Drop what one gathered send wrote from `bufs`: `Some(true)` when everything is written,
/// `Some(false)` when the socket would block, `None` when there is more to send.
fn after_send(bufs: &mut Vec<Bytes>, sent: io::Result<usize>) -> io::Result<Option<bool>> {
    match sent {
        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
        Ok(n) => consume(bufs, n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some(false)),
        Err(e) => return Err(e),
    }
    Ok(bufs.is_empty().then_some(true))
}

/// A plain TCP socket a fan-out shard writes to ([`crate::fanout`]): the write half, held so the
/// descriptor stays open, and the descriptor itself, looked up once (reaching it through tokio's
/// socket on every write was a cache miss per player in the profile).
#[derive(Clone)]
pub(crate) struct ShardSocket {
    fd: std::os::fd::RawFd,
    _held: Arc<dyn Send + Sync>,
}

impl ShardSocket {
    pub(crate) fn new(socket: Arc<OwnedWriteHalf>) -> Self {
        use std::os::fd::AsRawFd;
        let half: &OwnedWriteHalf = &socket;
        let stream: &TcpStream = half.as_ref();
        Self { fd: stream.as_raw_fd(), _held: socket }
    }

    /// The descriptor, open while this is held.
    pub(crate) fn fd(&self) -> std::os::fd::RawFd {
        self.fd
    }

    /// Any holder of an open socket descriptor (an HTTP-FLV player's duplicate of its
    /// connection's, [`crate::httpflv`]): the descriptor stays open while this is held.
    pub(crate) fn held<H: std::os::fd::AsRawFd + Send + Sync + 'static>(holder: Arc<H>) -> Self {
        Self { fd: holder.as_raw_fd(), _held: holder }
    }
}

/// [`Writer::try_write_vectored`] for a fan-out shard, without tokio's readiness bookkeeping,
/// whose per-socket state showed as a cache miss per player in the profile. A shard never waits
/// on a socket: when this returns false the player's own task takes over and waits through
/// tokio, whose readiness is then at worst stale in the optimistic direction (one more try
/// that finds the socket full).
pub(crate) fn send_now(socket: &ShardSocket, bufs: &mut Vec<Bytes>) -> io::Result<bool> {
    write_now(bufs, |slices| send_fd(socket.fd, slices))
}

/// The rest of a send whose first `sendmsg` ran elsewhere (in a batch, see `crate::uring`):
/// drop what `first` wrote from `bufs` and carry on as [`send_now`] does. `bufs` was not empty
/// (a shard sends no empty part).
pub(crate) fn send_rest(socket: &ShardSocket, bufs: &mut Vec<Bytes>, first: io::Result<usize>) -> io::Result<bool> {
    match after_send(bufs, first)? {
        Some(done) => Ok(done),
        None => send_now(socket, bufs),
    }
}

/// Point `slices` at the first buffers; how many.
fn fill<'a>(slices: &mut [io::IoSlice<'a>; MAX_IOVECS], bufs: &'a [Bytes]) -> usize {
    let n = bufs.len().min(MAX_IOVECS);
    for (slice, buf) in slices.iter_mut().zip(bufs) {
        *slice = io::IoSlice::new(buf);
    }
    n
}

/// `sendmsg` rather than `writev`: the same gathered write without the file layer
/// (`vfs_writev`, `fdget_pos`), which showed in the fan-out profile; `MSG_NOSIGNAL` so a peer
/// that left gives an error, not SIGPIPE.
fn send_vectored(stream: &TcpStream, slices: &[io::IoSlice<'_>]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    send_fd(stream.as_raw_fd(), slices)
}

/// One non-blocking `sendmsg` of `slices` on `fd`.
fn send_fd(fd: std::os::fd::RawFd, slices: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix (std guarantees it); the msghdr
    // points at `slices`, which outlive the call; no name or control data. The caller holds the
    // socket `fd` belongs to.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = slices.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = slices.len() as _;
        libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Write all buffers with vectored writes, waiting for the writer as needed.
async fn write_all_vectored<W: AsyncWrite + Unpin>(writer: &mut W, bufs: &mut Vec<Bytes>) -> io::Result<()> {
    while !bufs.is_empty() {
        let slices: Vec<io::IoSlice<'_>> = bufs.iter().take(MAX_IOVECS).map(|b| io::IoSlice::new(b)).collect();
        let n = writer.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        consume(bufs, n);
    }
    Ok(())
}

/// Drop the first `n` written bytes from `bufs`.
fn consume(bufs: &mut Vec<Bytes>, mut n: usize) {
    use bytes::Buf;
    let mut done = 0;
    while n > 0 {
        let b = &mut bufs[done];
        let take = n.min(b.len());
        b.advance(take);
        n -= take;
        if b.is_empty() {
            done += 1;
        }
    }
    bufs.drain(..done);
}

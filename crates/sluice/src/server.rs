//! The RTMP listeners: accept connections and run one task per connection (see `connection`),
//! stopping them all on shutdown. A `listen ... ssl` listener hands its connections the
//! server's TLS acceptor ([`crate::tls`]); the connection's task does the handshake, so a slow
//! one holds no accept and counts against the clients registry's bound like any client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{AppConf, ServerConf};
use crate::connection;
use crate::events::Notices;
use crate::hls::HlsStore;
use crate::hub::Hub;
use crate::streams::Streams;

/// Everything a connection task shares with the rest of the server.
pub struct ServerCtx {
    /// The `server {}` block this listener belongs to.
    pub conf: ServerConf,
    /// Its index among the `rtmp { server {} }` blocks (the control API's `srv=`).
    pub index: usize,
    /// Its applications, shared by every connection instead of copied into each.
    pub apps: Vec<Arc<AppConf>>,
    /// The stream registry.
    pub hub: Arc<Hub>,
    /// Server-wide notices (recordings done, ...) for notify callbacks and stats.
    pub notices: Arc<Notices>,
    /// Access decisions counted server-wide (accepted, refused by reason).
    pub access: Arc<crate::access::Counters>,
    /// HTTP callbacks: pooled clients, bounded calls in flight.
    pub notifier: Arc<crate::notify::Notifier>,
    /// The one publish and play entry ([`crate::streams`]).
    pub streams: Arc<Streams>,
    /// Every connected client, server-wide (control, stats).
    pub clients: Arc<crate::clients::Clients>,
    /// This server block's `max_connections` count.
    pub limit: crate::access::ConnectionLimit,
    /// The applications the configuration in force has, shared by every context of this
    /// block (a reload updates it): a client connected before a reload removed its
    /// application may no longer publish or play there.
    pub apps_now: Arc<AppsNow>,
    /// Cancelled on SIGTERM/SIGINT.
    pub shutdown: CancellationToken,
}

impl ServerCtx {
    /// The context of the server block with index `index`.
    pub fn new(conf: ServerConf, index: usize, shared: &Shared, shutdown: CancellationToken) -> Self {
        let limit = crate::access::ConnectionLimit::new(conf.max_connections);
        Self::with_limit(conf, index, shared, shutdown, limit)
    }

    /// The context of the same server block after a reload: `conf` for the connections that
    /// come from now on, and the same count of connections (those connected stay counted,
    /// against the new `max_connections`).
    pub fn reconfigured(&self, conf: ServerConf, shared: &Shared) -> Self {
        let limit = self.limit.with_max(conf.max_connections);
        let mut ctx = Self::with_limit(conf, self.index, shared, self.shutdown.clone(), limit);
        ctx.apps_now = self.apps_now.clone();
        ctx.apps_now.set(&ctx.conf);
        ctx
    }

    fn with_limit(
        conf: ServerConf,
        index: usize,
        shared: &Shared,
        shutdown: CancellationToken,
        limit: crate::access::ConnectionLimit,
    ) -> Self {
        let apps = conf.apps.iter().cloned().map(Arc::new).collect();
        let apps_now = Arc::new(AppsNow::default());
        apps_now.set(&conf);
        Self {
            apps_now,
            conf,
            index,
            apps,
            hub: shared.hub.clone(),
            notices: shared.notices.clone(),
            access: shared.access.clone(),
            notifier: shared.notifier.clone(),
            streams: shared.streams.clone(),
            clients: shared.clients.clone(),
            limit,
            shutdown,
        }
    }
}

/// The names of a server block's applications in the configuration in force.
#[derive(Debug, Default)]
pub struct AppsNow(std::sync::RwLock<Vec<String>>);

impl AppsNow {
    fn set(&self, conf: &ServerConf) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = conf.apps.iter().map(|a| a.name.clone()).collect();
    }

    /// Whether the configuration in force still has application `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.0.read().unwrap_or_else(|e| e.into_inner()).iter().any(|a| a == name)
    }
}

/// What every server block shares: the stream registry and the outputs' shared state.
pub struct Shared {
    /// The stream registry.
    pub hub: Arc<Hub>,
    /// Live HLS content.
    pub hls: Arc<HlsStore>,
    /// Live DASH content.
    pub dash: Arc<crate::dash::DashStore>,
    /// Server-wide notices.
    pub notices: Arc<Notices>,
    /// The recorder registry.
    pub records: Arc<crate::record::Recorders>,
    /// Access decisions counted.
    pub access: Arc<crate::access::Counters>,
    /// HTTP callbacks.
    pub notifier: Arc<crate::notify::Notifier>,
    /// The one publish and play entry: the hub, the output modules
    /// ([`crate::modules::registered`]) and the relay pulls.
    pub streams: Arc<Streams>,
    /// Every connected client ([`crate::clients`]): what control and stats act on.
    pub clients: Arc<crate::clients::Clients>,
    /// The cluster's stream directory (`cluster_redis`), if any.
    pub directory: Option<Arc<crate::cluster::Directory>>,
}

/// The running server as sluice's own HTTP pages and HTTP players see it: the shared
/// registries, every server block's context (HTTP-FLV players join through them) and the
/// configuration it runs.
pub struct Running {
    /// What every server block shares.
    pub shared: Arc<Shared>,
    /// Each `rtmp { server {} }` block's context, by index.
    pub servers: Vec<Arc<ServerCtx>>,
    /// The configuration running.
    pub config: Arc<crate::config::Config>,
    /// When the server started.
    pub started: Instant,
    /// The same moment on the wall clock.
    pub started_at: std::time::SystemTime,
    /// What stats keep between snapshots (the same across reloads).
    pub meters: Arc<crate::stats::Meters>,
}

/// A bound `listen` address: plain RTMP, or RTMPS (`ssl`) with the server's certificate.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    /// `proxy_protocol`: connections start with a PROXY protocol header ([`crate::proxy_protocol`]).
    proxy: bool,
}

impl From<TcpListener> for Listener {
    /// A plain RTMP listener.
    fn from(tcp: TcpListener) -> Self {
        Listener { tcp, tls: None, proxy: false }
    }
}

impl Listener {
    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// `rtmps` or `rtmp`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "rtmps"
        } else {
            "rtmp"
        }
    }
}

/// What a listener hands each connection it accepts: the server block's context and, on an
/// `ssl` address, the TLS acceptor. A reload replaces it; connections keep the one they
/// were accepted with.
pub struct Accepting {
    /// The server block's context.
    pub ctx: Arc<ServerCtx>,
    /// The block's certificate, on an `ssl` address.
    pub tls: Option<TlsAcceptor>,
    /// `proxy_protocol`: connections start with a PROXY protocol header ([`crate::proxy_protocol`]).
    pub proxy: bool,
}

/// The server block's TLS acceptor, when it has `ssl` addresses.
pub fn tls_acceptor(conf: &ServerConf) -> anyhow::Result<Option<TlsAcceptor>> {
    match &conf.tls {
        // The configuration checked the files already (`sluice -t`): this read fails only if
        // they changed since.
        Some(tls) if !conf.ssl_listen.is_empty() => Ok(Some(crate::tls::acceptor(tls)?)),
        _ => Ok(None),
    }
}

/// Binds one `listen` address of a server block.
pub async fn bind_addr(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (rtmp)"))
}

/// Bind every `listen` address of a server block; `ssl` ones with the block's certificate.
pub async fn bind(conf: &ServerConf) -> anyhow::Result<Vec<Listener>> {
    let acceptor = tls_acceptor(conf)?;
    let mut listeners = Vec::new();
    for addr in &conf.listen {
        let tcp = bind_addr(*addr).await?;
        let tls = if conf.ssl_listen.contains(addr) {
            let acceptor = acceptor.clone().with_context(|| format!("listen {addr} ssl: no ssl_certificate"))?;
            Some(acceptor)
        } else {
            None
        };
        listeners.push(Listener { tcp, tls, proxy: conf.proxy_listen.contains(addr) });
    }
    Ok(listeners)
}

/// Pause after a failed `accept` (out of file descriptors and the like), RTMP and HTTP alike.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How often a recurring accept failure (out of file descriptors, ...) is logged.
pub(crate) const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counts a recurring event and says when to log it: the first time, then at most once per
/// interval with the count since, so that a flood of them cannot flood the log.
#[derive(Debug)]
pub(crate) struct LogEvery {
    every: Duration,
    last: Option<Instant>,
    since: u64,
}

impl LogEvery {
    pub(crate) const fn new(every: Duration) -> Self {
        LogEvery { every, last: None, since: 0 }
    }

    /// Counts one event; `Some(events since the last log line, this one included)` when this
    /// one is to be logged.
    pub(crate) fn hit(&mut self) -> Option<u64> {
        self.since += 1;
        if self.last.is_some_and(|t| t.elapsed() < self.every) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.since))
    }
}

/// Accept connections until shutdown; connection tasks are tracked so shutdown can wait for them.
pub async fn serve(listener: impl Into<Listener>, ctx: Arc<ServerCtx>, tracker: TaskTracker) {
    let Listener { tcp, tls, proxy } = listener.into();
    let stop = ctx.shutdown.clone();
    let (_keep, current) = tokio::sync::watch::channel(Arc::new(Accepting { ctx, tls, proxy }));
    serve_current(tcp, current, stop, tracker).await
}

/// Accept connections until `stop`, handing each the [`Accepting`] current at that moment.
pub async fn serve_current(
    tcp: TcpListener,
    current: tokio::sync::watch::Receiver<Arc<Accepting>>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let mut failures = LogEvery::new(ACCEPT_ERROR_LOG_INTERVAL);
    loop {
        let accepted = tokio::select! {
            a = tcp.accept() => a,
            _ = stop.cancelled() => return,
        };
        match accepted {
            Ok((socket, peer)) => {
                let accepting = current.borrow().clone();
                let ctx = accepting.ctx.clone();
                if let Err(e) = prepare(&socket, &ctx.conf.core) {
                    tracing::warn!(client = %peer, error = %e, "cannot set socket options");
                }
                let tls = accepting.tls.clone();
                if accepting.proxy {
                    tracker.spawn(crate::proxy_protocol::read::run_rtmp(socket, peer, ctx, tls));
                } else {
                    tracker.spawn(connection::run(socket, peer, ctx, tls));
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: log, back off briefly, keep serving.
                if let Some(failed) = failures.hit() {
                    tracing::warn!(error = %e, failed, "rtmp accept failed");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Applies the server block's socket options to an accepted connection: `so_keepalive`
/// (SO_KEEPALIVE, so that the kernel notices peers that vanished without a FIN).
pub(crate) fn prepare(socket: &tokio::net::TcpStream, core: &crate::config::CoreConf) -> std::io::Result<()> {
    if core.so_keepalive {
        set_keepalive(socket, true)?;
    }
    Ok(())
}

fn set_keepalive(socket: &impl std::os::fd::AsRawFd, on: bool) -> std::io::Result<()> {
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_KEEPALIVE, libc::c_int::from(on))
}

/// `setsockopt` with an `int` value (the options std and tokio have no setter for).
pub(crate) fn set_int_option(
    socket: &impl std::os::fd::AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: a valid socket descriptor and a c_int option value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The addresses a listener actually bound (port 0 resolved).
pub fn local_addrs(listeners: &[Listener]) -> Vec<(SocketAddr, &'static str)> {
    listeners.iter().filter_map(|l| Some((l.local_addr().ok()?, l.scheme()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SO_KEEPALIVE as the kernel reports it.
    fn keepalive(socket: &impl std::os::fd::AsRawFd) -> bool {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid socket descriptor, and a c_int with its size for the result.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_KEEPALIVE,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        value != 0
    }

    #[tokio::test]
    async fn so_keepalive_sets_keepalive_on_accepted_sockets() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for (text, want) in [("so_keepalive on;", true), ("", false)] {
            let conf = crate::config::Config::parse(&format!("rtmp {{ {text} server {{ }} }}"), "t").unwrap();
            let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            prepare(&accepted, &conf.servers[0].core).unwrap();
            assert_eq!(keepalive(&accepted), want, "{text:?}");
        }
    }

    #[test]
    fn log_every_logs_the_first_then_counts() {
        let mut log = LogEvery::new(Duration::from_secs(3600));
        assert_eq!(log.hit(), Some(1));
        assert_eq!((0..5).filter_map(|_| log.hit()).count(), 0, "quiet within the interval");
        let mut always = LogEvery::new(Duration::ZERO);
        assert_eq!((always.hit(), always.hit()), (Some(1), Some(1)));
    }
}

//! Starting, reloading and stopping the whole server from a [`Config`]: binds every
//! listener, runs until stopped, applies reloads, then shuts down.
//!
//! A reload builds the server blocks' contexts and HTTP sites anew from the new
//! configuration and hands them to the listeners ([`server::Accepting`], [`http::Site`]):
//! every connection accepted from then on uses them, while connections already open keep
//! the ones they were accepted with. So streams that run keep their settings until they end,
//! whether their application changed or not; nothing shared (the hub, the clients, HLS,
//! recordings, relays, exec children) is rebuilt. Listeners of addresses that stay are kept
//! (no socket is closed); new addresses are bound before anything changes, so a reload that
//! cannot bind changes nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clients::{Filter, Kind, Method};
use crate::config::{AppConf, Config};
use crate::http::{self, HttpState, LiveContent, Site};
use crate::hub::Hub;
use crate::modules::{Module, Modules, StartCtx};
use crate::relay::pull::{ServerApps, Setup};
use crate::server::{self, Accepting, ServerCtx};
use crate::streams::Streams;

/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often a graceful stop looks whether the clients have left.
const QUIT_POLL: Duration = Duration::from_millis(200);

/// What the process asks of the running server.
pub struct Control {
    /// Cancelled for a fast stop (SIGTERM, SIGINT, `sluice -s stop`): connections close now.
    pub stop: CancellationToken,
    /// Cancelled for a graceful stop (SIGQUIT, `sluice -s quit`): no new connections; the
    /// clients connected may stay up to `worker_shutdown_timeout`.
    pub quit: CancellationToken,
    /// Each configuration received is applied as a reload (SIGHUP, `sluice -s reload`).
    pub reload: Option<mpsc::Receiver<Config>>,
}

impl Control {
    /// Only a fast stop, on `stop`.
    pub fn stop_only(stop: CancellationToken) -> Self {
        Control { stop, quit: CancellationToken::new(), reload: None }
    }
}

/// Run until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_controlled(config, Control::stop_only(shutdown), Vec::new()).await
}

/// [`run`] with `extra` output modules after the registered ones (tests add theirs here).
pub async fn run_with_modules(
    config: Config,
    shutdown: CancellationToken,
    extra: Vec<Arc<dyn Module>>,
) -> anyhow::Result<()> {
    run_controlled(config, Control::stop_only(shutdown), extra).await
}

/// Run as `control` says: until a stop, applying reloads on the way.
pub async fn run_controlled(config: Config, mut control: Control, extra: Vec<Arc<dyn Module>>) -> anyhow::Result<()> {
    let shutdown = control.stop.clone();
    let mut server = Server::start(config, shutdown.clone(), extra).await?;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = control.quit.cancelled() => {
                server.quit().await;
                break;
            }
            Some(config) = next_reload(&mut control.reload) => {
                if let Err(e) = server.apply(config).await {
                    tracing::error!("reload failed, still running the previous configuration: {e:#}");
                }
            }
        }
    }
    server.finish().await;
    Ok(())
}

async fn next_reload(reload: &mut Option<mpsc::Receiver<Config>>) -> Option<Config> {
    match reload {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A listening address and what it hands new connections (an RTMP [`Accepting`], an HTTP
/// [`Site`]).
struct Listening<T> {
    /// Closes it (a reload that removes the address).
    stop: CancellationToken,
    /// What it hands new connections; a reload replaces it.
    current: watch::Sender<Arc<T>>,
    /// The address bound (port 0 resolved).
    local: SocketAddr,
}

/// The running server: what lives as long as the process (the shared registries, the
/// listeners) and what the configuration in force built (contexts, sites).
struct Server {
    shared: Arc<server::Shared>,
    hls: Arc<crate::hls::HlsStore>,
    live: Vec<Arc<dyn LiveContent>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Cancelled by a graceful stop: every listener closes.
    accepting: CancellationToken,
    started: Instant,
    started_at: SystemTime,
    meters: Arc<crate::stats::Meters>,
    /// The configuration in force (`None` before the first).
    config: Option<Arc<Config>>,
    /// The server blocks' contexts in force (for the `on_record_done` listener too).
    servers_tx: watch::Sender<Vec<Arc<ServerCtx>>>,
    rtmp: HashMap<SocketAddr, Listening<Accepting>>,
    http: HashMap<SocketAddr, Listening<Site>>,
    /// Ends each module's server task (`exec_static`, ...), by module.
    module_tasks: Vec<CancellationToken>,
}

/// Addresses bound for a configuration, not yet serving.
#[derive(Default)]
struct Bound {
    rtmp: Vec<(SocketAddr, tokio::net::TcpListener)>,
    http: Vec<(SocketAddr, tokio::net::TcpListener)>,
}

impl Server {
    /// Makes the shared registries and modules, then applies `config` as the first
    /// configuration and says where to publish and play.
    async fn start(config: Config, shutdown: CancellationToken, extra: Vec<Arc<dyn Module>>) -> anyhow::Result<Self> {
        let (started, started_at) = (Instant::now(), SystemTime::now());
        crate::metrics::install();
        let hub = Hub::new();
        let hls = crate::hls::HlsStore::new(shutdown.clone());
        let dash = crate::dash::DashStore::new(shutdown.clone());
        let tracker = TaskTracker::new();
        let directory = crate::cluster::Directory::new(&config.cluster, &config.servers)?;
        let mut shared = server::Shared {
            hub: hub.clone(),
            hls: hls.clone(),
            dash: dash.clone(),
            notices: Default::default(),
            records: crate::record::Recorders::new(config.servers.len()),
            access: Default::default(),
            notifier: Default::default(),
            // A context without modules, replaced below: the modules are made from `shared`.
            streams: Streams::new(hub.clone(), Arc::new([]), Setup::default()),
            clients: Default::default(),
            directory: directory.clone(),
        };
        let modules: Modules = crate::modules::registered(&shared).into_iter().chain(extra).collect();
        // Relay pulls: on demand from `Streams::play`, `static` ones once the listeners run.
        let pulls = Setup {
            clients: shared.clients.clone(),
            servers: server_apps(&config).into(),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            directory,
        };
        shared.streams = Streams::new(hub.clone(), modules, pulls);
        let shared = Arc::new(shared);
        crate::record::repair_on_start(&config);
        crate::hls::repair_on_start(&config);
        let (servers_tx, servers_rx) = watch::channel(Vec::new());
        let mut server = Server {
            shared,
            hls: hls.clone(),
            // Live HLS playlists and segments, DASH MPDs and fragments, are served from memory
            // before the disk.
            live: vec![hls, dash],
            tracker,
            accepting: shutdown.child_token(),
            shutdown,
            started,
            started_at,
            meters: Arc::new(crate::stats::Meters::new(Vec::new())),
            config: None,
            servers_tx,
            rtmp: HashMap::new(),
            http: HashMap::new(),
            module_tasks: Vec::new(),
        };
        server.apply(config).await?;
        server.tracker.spawn(crate::notify::record_done_listener(servers_rx));
        server.shared.streams.start_static_pulls();
        if let Some(config) = &server.config {
            announce(config, &server.rtmp_addrs(), &server.http_addrs());
        }
        Ok(server)
    }

    /// Applies `config`: the first one, or a reload. Binds the new addresses first; when one
    /// cannot be bound (or a certificate read), nothing changes.
    async fn apply(&mut self, config: Config) -> anyhow::Result<()> {
        let old = self.config.clone();
        let tls = config.servers.iter().map(server::tls_acceptor).collect::<anyhow::Result<Vec<_>>>()?;
        let bound = self.bind_new(&config).await?;
        let config = Arc::new(config);
        let previous = self.servers_tx.borrow().clone();
        let servers: Vec<Arc<ServerCtx>> = config
            .servers
            .iter()
            .enumerate()
            .map(|(index, conf)| {
                Arc::new(match previous.get(index) {
                    Some(old) => old.reconfigured(conf.clone(), &self.shared),
                    None => ServerCtx::new(conf.clone(), index, &self.shared, self.shutdown.clone()),
                })
            })
            .collect();
        self.switch_rtmp(&config, &servers, &tls, bound.rtmp);
        let running = Arc::new(server::Running {
            shared: self.shared.clone(),
            servers: servers.clone(),
            config: config.clone(),
            started: self.started,
            started_at: self.started_at,
            meters: self.meters.clone(),
        });
        self.switch_http(&config, &running, bound.http);
        self.meters.set_listen(crate::stats::listen_infos(&self.listen_infos(&config)));
        self.shared.records.set_servers(config.servers.len());
        if let Some(old) = &old {
            self.shared.streams.pulls().reconfigure(&self.shared.streams, server_apps(&config));
            if old.cluster != config.cluster {
                tracing::warn!("reload: \"cluster_redis\" and \"cluster_ttl\" changes take effect at the next start");
            }
        }
        if let Some(directory) = &self.shared.directory {
            directory.set_servers(&config.servers);
        }
        self.restart_module_tasks(old.as_deref(), &config);
        self.servers_tx.send_replace(servers);
        if let Some(old) = &old {
            end_removed(old, &config, &self.shared.clients);
            log_changes(old, &config);
            tracing::info!("reload: configuration applied");
        }
        self.config = Some(config);
        Ok(())
    }

    /// Binds the addresses `config` has and no listener has yet.
    async fn bind_new(&self, config: &Config) -> anyhow::Result<Bound> {
        let mut bound = Bound::default();
        for addr in config.servers.iter().flat_map(|s| &s.listen) {
            if !self.rtmp.contains_key(addr) && !bound.rtmp.iter().any(|(a, _)| a == addr) {
                bound.rtmp.push((*addr, server::bind_addr(*addr).await?));
            }
        }
        for site in config.http.servers() {
            for addr in &site.listen {
                if !self.http.contains_key(addr) && !bound.http.iter().any(|(a, _)| a == addr) {
                    let l = bind_http(*addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr} (http): {e}"))?;
                    bound.http.push((*addr, l));
                }
            }
        }
        Ok(bound)
    }

    /// Every RTMP address of `config` serves its block's new context; those it no longer
    /// has close (their connections go on).
    fn switch_rtmp(
        &mut self,
        config: &Config,
        servers: &[Arc<ServerCtx>],
        tls: &[Option<tokio_rustls::TlsAcceptor>],
        bound: Vec<(SocketAddr, tokio::net::TcpListener)>,
    ) {
        let mut wanted = HashMap::new();
        for (index, conf) in config.servers.iter().enumerate() {
            for addr in &conf.listen {
                let tls = tls[index].clone().filter(|_| conf.ssl_listen.contains(addr));
                let proxy = conf.proxy_listen.contains(addr);
                wanted.insert(*addr, Arc::new(Accepting { ctx: servers[index].clone(), tls, proxy }));
            }
        }
        let tracker = self.tracker.clone();
        let serve = |tcp, current, stop| {
            tracker.spawn(server::serve_current(tcp, current, stop, tracker.clone()));
        };
        let reload = self.config.is_some();
        switch(&mut self.rtmp, wanted, bound, &self.accepting, "rtmp", serve, reload);
    }

    /// Every HTTP address of `config` serves its site, built anew; those it no longer has
    /// close (their connections finish).
    fn switch_http(
        &mut self,
        config: &Config,
        running: &Arc<server::Running>,
        bound: Vec<(SocketAddr, tokio::net::TcpListener)>,
    ) {
        let mut wanted: HashMap<SocketAddr, Arc<Site>> = HashMap::new();
        for conf in config.http.servers() {
            let max = conf.limits.max_connections;
            let mut state =
                HttpState::for_site(self.shared.hub.clone(), self.live.clone(), conf, self.shared.records.clone())
                    .with_running(running.clone());
            // A site that was already serving keeps counting its open connections.
            if let Some(old) = state.site.listen.iter().find_map(|a| self.http.get(a)) {
                state.connections = Arc::new(old.current.borrow().connections.with_max(Some(max)));
            }
            let listen = state.site.listen.clone();
            let site = Arc::new(http::site(state));
            for addr in listen {
                wanted.entry(addr).or_insert_with(|| site.clone());
            }
        }
        let (tracker, shutdown) = (self.tracker.clone(), self.shutdown.clone());
        let serve = |tcp, current, stop| {
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                if let Err(e) = http::serve_current(tcp, current, stop, shutdown).await {
                    tracing::error!("http server failed: {e}");
                }
            });
        };
        let reload = self.config.is_some();
        switch(&mut self.http, wanted, bound, &self.accepting, "http", serve, reload);
    }

    /// The modules' server tasks (`exec_static`, ...) start with the first configuration;
    /// a reload restarts those whose module says the change concerns them.
    fn restart_module_tasks(&mut self, old: Option<&Config>, config: &Config) {
        let modules = self.shared.streams.modules.clone();
        self.module_tasks.resize_with(modules.len(), CancellationToken::new);
        for (module, token) in modules.iter().zip(self.module_tasks.iter_mut()) {
            if old.is_some_and(|old| !module.start_changed(old, config)) {
                continue;
            }
            let previous = std::mem::replace(token, self.shutdown.child_token());
            let start = StartCtx { config, notices: &self.shared.notices, shutdown: token.clone() };
            if let Some(task) = module.on_start(&start) {
                self.tracker.spawn(task);
            }
            previous.cancel();
        }
    }

    fn rtmp_addrs(&self) -> Vec<(SocketAddr, &'static str)> {
        let mut addrs: Vec<_> = self.rtmp.values().map(|l| (l.local, scheme(&l.current.borrow()))).collect();
        addrs.sort();
        addrs
    }

    fn http_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<_> = self.http.values().map(|l| l.local).collect();
        addrs.sort();
        addrs
    }

    /// Each RTMP listener with its server block, for stats.
    fn listen_infos(&self, config: &Config) -> Vec<(usize, SocketAddr, &'static str)> {
        let mut infos = Vec::new();
        for (index, conf) in config.servers.iter().enumerate() {
            for addr in &conf.listen {
                if let Some(l) = self.rtmp.get(addr) {
                    infos.push((index, l.local, scheme(&l.current.borrow())));
                }
            }
        }
        infos
    }

    /// A graceful stop: close every listener, then wait for the clients to leave, up to
    /// `worker_shutdown_timeout` (or a fast stop).
    async fn quit(&mut self) {
        self.accepting.cancel();
        let timeout =
            self.config.as_ref().map_or(crate::config::DEFAULT_SHUTDOWN_TIMEOUT, |c| c.process.shutdown_timeout);
        let clients = self.shared.clients.clone();
        let connected = || clients.list().iter().filter(|c| c.kind != Kind::Relay).count();
        tracing::info!(
            clients = connected(),
            "graceful stop: no new connections; waiting up to {timeout:?} for the clients to leave"
        );
        let deadline = tokio::time::Instant::now() + timeout;
        while connected() > 0 && tokio::time::Instant::now() < deadline && !self.shutdown.is_cancelled() {
            tokio::time::sleep(QUIT_POLL).await;
        }
        let left = connected();
        if left > 0 {
            tracing::warn!(clients = left, "graceful stop: {timeout:?} passed; closing the clients still connected");
        }
        self.shutdown.cancel();
    }

    /// Shutdown: connections close, outputs finish their files.
    async fn finish(self) {
        self.shutdown.cancel();
        tracing::info!("shutting down");
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait()).await.is_err() {
            tracing::warn!("some connections did not close within {SHUTDOWN_GRACE:?}");
        }
        self.hls.drain(SHUTDOWN_GRACE).await;
        self.shared.dash.drain(SHUTDOWN_GRACE).await;
        self.shared.records.drain(SHUTDOWN_GRACE).await;
    }
}

/// Hands every address in `wanted` its new state: a listener that stays gets it, a new address
/// (bound in `bound`) starts serving it through `serve`; listeners of addresses not wanted close.
fn switch<T>(
    listeners: &mut HashMap<SocketAddr, Listening<T>>,
    wanted: HashMap<SocketAddr, Arc<T>>,
    mut bound: Vec<(SocketAddr, tokio::net::TcpListener)>,
    accepting: &CancellationToken,
    kind: &str,
    serve: impl Fn(tokio::net::TcpListener, watch::Receiver<Arc<T>>, CancellationToken),
    reload: bool,
) {
    listeners.retain(|addr, l| {
        let keep = wanted.contains_key(addr);
        if !keep {
            tracing::info!(%addr, "reload: no longer listening ({kind}); connections accepted on it go on");
            l.stop.cancel();
        }
        keep
    });
    for (addr, state) in wanted {
        if let Some(l) = listeners.get(&addr) {
            l.current.send_replace(state);
            continue;
        }
        let Some(i) = bound.iter().position(|(a, _)| *a == addr) else { continue };
        let (_, tcp) = bound.swap_remove(i);
        let Ok(local) = tcp.local_addr() else { continue };
        let stop = accepting.child_token();
        let (current, rx) = watch::channel(state);
        serve(tcp, rx, stop.clone());
        if reload {
            tracing::info!("reload: {kind} listening on {local}");
        }
        listeners.insert(addr, Listening { stop, current, local });
    }
}

fn scheme(accepting: &Accepting) -> &'static str {
    if accepting.tls.is_some() {
        "rtmps"
    } else {
        "rtmp"
    }
}

/// The server blocks as the relay pulls see them.
fn server_apps(config: &Config) -> Vec<ServerApps> {
    config
        .servers
        .iter()
        .map(|conf| ServerApps {
            apps: conf.apps.iter().cloned().map(Arc::new).collect(),
            out_queue: conf.core.out_queue,
            max_message: conf.core.max_message,
        })
        .collect()
}

fn app_of<'a>(config: &'a Config, srv: usize, name: &str) -> Option<&'a AppConf> {
    config.servers.get(srv)?.apps.iter().find(|a| a.name == name)
}

/// Applications (and server blocks) a reload removed: their publishers and players are
/// dropped, so their streams end as when a publisher leaves (playlists end, recordings close,
/// relays stop).
fn end_removed(old: &Config, new: &Config, clients: &crate::clients::Clients) {
    for (srv, server) in old.servers.iter().enumerate() {
        for app in server.apps.iter().filter(|a| app_of(new, srv, &a.name).is_none()) {
            let filter = Filter { srv, app: Some(app.name.clone()), ..Filter::new(Method::Client) };
            let dropped = clients.drop_where(&filter);
            tracing::info!(app = %app.name, srv, clients = dropped, "reload: application removed; its streams end");
        }
    }
}

/// Says what a reload changed, application by application.
fn log_changes(old: &Config, new: &Config) {
    for (srv, server) in new.servers.iter().enumerate() {
        for app in &server.apps {
            match app_of(old, srv, &app.name) {
                None => tracing::info!(app = %app.name, srv, "reload: application added"),
                Some(before) if before != app => tracing::info!(
                    app = %app.name,
                    srv,
                    "reload: application changed; new streams use the new settings, running streams keep theirs until they end"
                ),
                Some(_) => {}
            }
        }
    }
}

/// nginx's listen backlog.
const HTTP_BACKLOG: u32 = 511;

/// Binds like nginx: `SO_REUSEADDR`, and IPv6 wildcard sockets `IPV6_V6ONLY` so that `listen
/// 80; listen [::]:80;` can both bind.
fn bind_http(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv6() { tokio::net::TcpSocket::new_v6()? } else { tokio::net::TcpSocket::new_v4()? };
    socket.set_reuseaddr(true)?;
    if addr.is_ipv6() {
        set_v6only(&socket)?;
    }
    socket.bind(addr)?;
    socket.listen(HTTP_BACKLOG)
}

fn set_v6only(socket: &tokio::net::TcpSocket) -> std::io::Result<()> {
    crate::server::set_int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)
}

/// The built-in server's own pages (an `http {}` block names its own locations).
fn announce_builtin_pages(config: &Config, base: &str) {
    if config.http.block.is_some() {
        return;
    }
    if let Some(app) = config.servers.first().and_then(|s| s.apps.first()) {
        eprintln!("  flv:     {base}/{}/STREAM.flv (HTTP-FLV; ws:// for WebSocket-FLV)", app.name);
    }
    let mut apps = config.servers.iter().flat_map(|s| &s.apps);
    if let Some(app) = apps.find(|a| a.record.path.is_some()) {
        eprintln!("  recordings: {base}/vod/{}/FILE/index.m3u8 (HLS of a recorded file)", app.name);
    }
    let builtin = &config.http.builtin;
    let who = if builtin.public { "" } else { " (from this machine; http_stats_public on opens them)" };
    if builtin.dashboard {
        eprintln!("  dashboard: {base}/{who}");
    }
    eprintln!("  stats:   {base}/stat  {base}/api/v1/streams  {base}/metrics");
}

/// Print where to publish and play, as a newcomer needs it.
fn announce(config: &Config, rtmp: &[(SocketAddr, &str)], http: &[SocketAddr]) {
    for (addr, scheme) in rtmp {
        tracing::info!("{scheme} listening on {addr}");
    }
    for addr in http {
        tracing::info!("http listening on {addr}");
    }
    let host = |a: &SocketAddr| if a.ip().is_unspecified() { "localhost".to_string() } else { a.ip().to_string() };
    // A plain listener for the hint when there is one (ffplay of Debian checks no certificate,
    // but a plain URL is what a newcomer tries first).
    let hint = rtmp.iter().find(|(_, s)| *s == "rtmp").or(rtmp.first());
    if let (Some((addr, scheme)), Some(app)) = (hint, config.servers.first().and_then(|s| s.apps.first())) {
        let default_port = if *scheme == "rtmps" { 443 } else { 1935 };
        let port = if addr.port() == default_port { String::new() } else { format!(":{}", addr.port()) };
        let url = format!("{scheme}://{}{}/{}/STREAM", host(addr), port, app.name);
        eprintln!("sluice is ready.\n  publish: ffmpeg -re -i input.mp4 -c copy -f flv {url}\n  play:    ffplay {url}");
    }
    if let Some(addr) = http.first() {
        let apps = config.servers.iter().flat_map(|s| &s.apps);
        if let Some((app, path)) = apps.filter_map(|a| Some((a, a.hls_url_path("STREAM")?))).next() {
            eprintln!(
                "  hls:     http://{}:{}{path} (publish to application \"{}\")",
                host(addr),
                addr.port(),
                app.name
            );
        }
        let mut apps = config.servers.iter().flat_map(|s| &s.apps);
        if let Some((app, path)) = apps.find_map(|a| Some((a, a.dash_url_path("STREAM")?))) {
            eprintln!(
                "  dash:    http://{}:{}{path} (publish to application \"{}\")",
                host(addr),
                addr.port(),
                app.name
            );
        }
        let mut apps = config.servers.iter().flat_map(|s| &s.apps);
        if let Some((app, path)) = apps.find_map(|a| Some((a, a.ladder_url_path("STREAM")?))) {
            eprintln!(
                "  abr:     http://{}:{}{path} (transcode ladder master of application \"{}\")",
                host(addr),
                addr.port(),
                app.name
            );
        }
        eprintln!("  health:  http://{}:{}/healthz", host(addr), addr.port());
        announce_builtin_pages(config, &format!("http://{}:{}", host(addr), addr.port()));
    }
}

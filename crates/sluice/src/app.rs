//! Starting and stopping the whole server from a [`Config`]: binds every listener, runs until
//! SIGTERM/SIGINT, then shuts down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::http::{self, HttpState, LiveContent};
use crate::hub::Hub;
use crate::modules::{Module, Modules, StartCtx};
use crate::relay::pull::{ServerApps, Setup};
use crate::server::{self, ServerCtx};
use crate::streams::Streams;

/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Run until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with_modules(config, shutdown, Vec::new()).await
}

/// [`run`] with `extra` output modules after the registered ones (tests add theirs here).
pub async fn run_with_modules(
    config: Config,
    shutdown: CancellationToken,
    extra: Vec<Arc<dyn Module>>,
) -> anyhow::Result<()> {
    let (started, started_at) = (std::time::Instant::now(), std::time::SystemTime::now());
    crate::metrics::install();
    let hub = Hub::new();
    let hls = crate::hls::HlsStore::new(shutdown.clone());
    let tracker = TaskTracker::new();
    let mut shared = server::Shared {
        hub: hub.clone(),
        hls: hls.clone(),
        notices: Default::default(),
        records: crate::record::Recorders::new(config.servers.len()),
        access: Default::default(),
        notifier: Default::default(),
        // A context without modules, replaced below: the modules are made from `shared`.
        streams: Streams::new(hub.clone(), Arc::new([]), Setup::default()),
        clients: Default::default(),
    };
    let modules: Modules = crate::modules::registered(&shared).into_iter().chain(extra).collect();
    // Relay pulls: on demand from `Streams::play`, `static` ones once the listeners run.
    let pulls = Setup {
        clients: shared.clients.clone(),
        servers: config
            .servers
            .iter()
            .map(|conf| ServerApps {
                apps: conf.apps.iter().cloned().map(Arc::new).collect(),
                out_queue: conf.core.out_queue,
                max_message: conf.core.max_message,
            })
            .collect(),
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
    };
    shared.streams = Streams::new(hub.clone(), modules, pulls);
    let shared = Arc::new(shared);
    crate::record::repair_on_start(&config);
    crate::hls::repair_on_start(&config);
    let start = StartCtx { config: &config, notices: &shared.notices, shutdown: shutdown.clone() };
    for module in shared.streams.modules.iter() {
        if let Some(task) = module.on_start(&start) {
            tracker.spawn(task);
        }
    }
    let mut rtmp_addrs = Vec::new();
    let mut bound_addrs = Vec::new();
    let mut bound = Vec::new();
    for (index, conf) in config.servers.iter().enumerate() {
        let listeners = server::bind(conf).await?;
        let addrs = server::local_addrs(&listeners);
        bound_addrs.extend(addrs.iter().map(|&(addr, scheme)| (index, addr, scheme)));
        rtmp_addrs.extend(addrs);
        let ctx = Arc::new(ServerCtx::new(conf.clone(), index, &shared, shutdown.clone()));
        bound.push((listeners, ctx));
    }
    let running = Arc::new(server::Running {
        shared: shared.clone(),
        servers: bound.iter().map(|(_, ctx)| ctx.clone()).collect(),
        config: Arc::new(config.clone()),
        started,
        started_at,
        meters: crate::stats::Meters::new(crate::stats::listen_infos(&bound_addrs)),
    });
    for (listeners, ctx) in bound {
        tracker.spawn(crate::notify::record_done_listener(ctx.clone()));
        for l in listeners {
            tracker.spawn(server::serve(l, ctx.clone(), tracker.clone()));
        }
    }
    shared.streams.start_static_pulls();
    // Live HLS playlists and segments are served from memory before the disk.
    let live: Vec<Arc<dyn LiveContent>> = vec![hls.clone()];
    let http_addrs = start_http(&config, &hub, &live, &running, &shutdown, &tracker)?;
    announce(&config, &rtmp_addrs, &http_addrs);
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("some connections did not close within {SHUTDOWN_GRACE:?}");
    }
    hls.drain(SHUTDOWN_GRACE).await;
    shared.records.drain(SHUTDOWN_GRACE).await;
    Ok(())
}

/// Binds every HTTP server's addresses and serves them; returns the bound addresses.
fn start_http(
    config: &Config,
    hub: &Arc<Hub>,
    live: &[Arc<dyn LiveContent>],
    running: &Arc<server::Running>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<Vec<SocketAddr>> {
    let mut addrs = Vec::new();
    for site in config.http.servers() {
        let state = HttpState::for_site(hub.clone(), live.to_vec(), site, running.shared.records.clone())
            .with_running(running.clone());
        for addr in &state.site.listen {
            let l = bind_http(*addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr} (http): {e}"))?;
            addrs.push(l.local_addr()?);
            let (state, token) = (state.clone(), shutdown.clone());
            tracker.spawn(async move {
                if let Err(e) = http::serve(l, state, token).await {
                    tracing::error!("http server failed: {e}");
                }
            });
        }
    }
    Ok(addrs)
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

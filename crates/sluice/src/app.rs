//! Starting and stopping the whole server from a [`Config`]: binds every listener, runs until
//! SIGTERM/SIGINT, then shuts down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::http::{self, HttpState};
use crate::hub::Hub;
use crate::server::{self, ServerCtx};

/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Run until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let hub = Hub::new();
    let tracker = TaskTracker::new();
    let mut rtmp_addrs = Vec::new();
    for conf in &config.servers {
        let listeners = server::bind(conf).await?;
        rtmp_addrs.extend(server::local_addrs(&listeners));
        let ctx = Arc::new(ServerCtx::new(conf.clone(), hub.clone(), shutdown.clone()));
        for l in listeners {
            tracker.spawn(server::serve(l, ctx.clone(), tracker.clone()));
        }
    }
    let mut http_addrs = Vec::new();
    if let Some(http_conf) = &config.http {
        for addr in &http_conf.listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (http): {e}"))?;
            http_addrs.push(l.local_addr()?);
            let state = HttpState { hub: hub.clone() };
            let token = shutdown.clone();
            tracker.spawn(async move {
                if let Err(e) = http::serve(l, state, token).await {
                    tracing::error!("http server failed: {e}");
                }
            });
        }
    }
    announce(&config, &rtmp_addrs, &http_addrs);
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("some connections did not close within {SHUTDOWN_GRACE:?}");
    }
    Ok(())
}

/// Print where to publish and play, as a newcomer needs it.
fn announce(config: &Config, rtmp: &[SocketAddr], http: &[SocketAddr]) {
    for addr in rtmp {
        tracing::info!("rtmp listening on {addr}");
    }
    for addr in http {
        tracing::info!("http listening on {addr}");
    }
    let host = |a: &SocketAddr| if a.ip().is_unspecified() { "localhost".to_string() } else { a.ip().to_string() };
    if let (Some(addr), Some(app)) = (rtmp.first(), config.servers.first().and_then(|s| s.apps.first())) {
        let port = if addr.port() == 1935 { String::new() } else { format!(":{}", addr.port()) };
        let url = format!("rtmp://{}{}/{}/STREAM", host(addr), port, app.name);
        eprintln!("sluice is ready.\n  publish: ffmpeg -re -i input.mp4 -c copy -f flv {url}\n  play:    ffplay {url}");
    }
    if let Some(addr) = http.first() {
        eprintln!("  health:  http://{}:{}/healthz", host(addr), addr.port());
    }
}

//! The built-in HTTP server (`http { server { listen ...; } }`): `/healthz` now; HLS, stats,
//! the JSON API and the dashboard plug in here in later issues.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

/// Shared state of HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    /// The stream registry.
    pub hub: Arc<Hub>,
}

/// The routes.
pub fn router(state: HttpState) -> Router {
    Router::new().route("/healthz", get(healthz)).with_state(state)
}

async fn healthz(axum::extract::State(state): axum::extract::State<HttpState>) -> String {
    format!("ok\nstreams {}\n", state.hub.streams().len())
}

/// Serve HTTP on `listener` until shutdown.
pub async fn serve(listener: TcpListener, state: HttpState, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

//! HTTP-FLV and WebSocket-FLV players: `/APP/NAME.flv` on the built-in server and in
//! `flv_live on` locations, and the winshining fork's `?app=A&stream=S[&port=P]` form, joining
//! streams through the same play path as RTMP players.
//!
//! A request is a connect and a play, as nginx-http-flv-module makes it: it registers in the
//! clients registry (`http-flv` or `ws-flv`), takes a place under the server block's
//! `max_connections`, and goes through [`crate::policy`] (the application, `on_connect`, the
//! name check, `allow`/`deny play`, signed keys, `on_play`), then [`Streams::play`] (or
//! [`Streams::play_pulled`] for an `on_play` `rtmp://` redirect), exactly as the RTMP
//! connection does. A refusal is `403` (a bad name `400`), no such application or stream `404`,
//! a full server `503`. `on_update` is asked every `notify_update_timeout` while it plays; when
//! the player goes, `on_play_done`, `on_done` and `on_disconnect` are reported.
//!
//! The response is `200 video/x-flv` (WebSocket: `101`, then binary messages); its bytes are
//! made by [`player::FlvPlayer`]: the FLV header, metadata, sequence headers, the GOP cache,
//! then live frames, timestamps from 0 ([`flv::LiveMuxer`]). On plain HTTP the response is
//! close-delimited `HTTP/1.0` and the player writes its tags to the socket itself, or a fan-out
//! shard does while it keeps up ([`direct`]); a WebSocket's messages are pulled by hyper as the
//! socket takes them. Either way a player that reads slowly falls behind in the stream's ring
//! and skips to a keyframe as a slow RTMP player does (counted as dropped); one that reads
//! nothing is cut by `send_timeout`. The response ends when the publisher leaves (as
//! nginx-http-flv ends it; a player that came before the publisher waits for it under
//! `idle_streams on`), when control drops the player, and at shutdown.
//!
//! | Spec | Where |
//! | --- | --- |
//! | nginx-http-flv-module `ngx_http_flv_live_module.c` (`flv_live`, `app`, `stream`, `port`) | [`target`] |
//! | RFC 9112, 6.3 item 8 (a body delimited by the connection's close) | [`direct`], hyper |
//! | RFC 6455 (WebSocket: handshake, framing, ping/pong, close) | [`ws`] |

mod body;
mod direct;
mod player;
pub mod target;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::header::{self, HeaderValue};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::access::ConnectionPermit;
use crate::clients::{ClientHandle, ConnectMeta, Kind, Role};
use crate::config::{AppConf, Location};
use crate::events::ClientInfo;
use crate::http::conn::ConnInfo;
use crate::http::{status_response, HttpState};
use crate::hub::{StartPack, StreamOptions, Subscriber};
use crate::policy::{self, Admit, Ask, Ended, PlayArgs, Policy};
use crate::server::ServerCtx;
use crate::streams;
use crate::untrusted::{self, for_log, redact_query};

pub use self::target::Target;

/// What a request's HTTP connection lends a WebSocket player (in the request's extensions): its
/// place under the http server's `max_connections`, so the upgraded connection still counts, and
/// the server's connection tracker, so shutdown waits for the player to close.
#[derive(Clone)]
pub struct Upgrades {
    /// The connection's place.
    pub permit: Arc<ConnectionPermit>,
    /// The http server's connection tasks.
    pub tracker: tokio_util::task::TaskTracker,
}

/// What nginx-http-flv-module reports as the player's `flashver` when the request has no
/// `User-Agent`.
const FLASHVER: &str = "flv_live 1.1";

/// Answer a request to a location this module handles.
pub async fn respond(state: &HttpState, loc: &Location, path: &str, req: Request) -> Response {
    let _ = loc;
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut res = status_response(StatusCode::METHOD_NOT_ALLOWED);
            res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
    };
    let Some(running) = &state.running else { return status_response(StatusCode::SERVICE_UNAVAILABLE) };
    let target = match Target::parse(path, req.uri().query().unwrap_or("")) {
        Ok(t) => t,
        Err(e) => return text_response(e.status(), &e.to_string()),
    };
    let Some(ctx) = target.server(&running.servers) else {
        return text_response(StatusCode::NOT_FOUND, "no rtmp server listens on that port");
    };
    let Some(conn) = req.extensions().get::<ConnInfo>() else {
        return status_response(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let (peer, head_watch, lent) = (conn.peer, conn.head.clone(), conn.upgrades.clone());
    let upgrade = match ws::handshake(&req) {
        Ok(u) => u,
        Err(refused) => return refused.into_response(),
    };
    let kind = if upgrade.is_some() { Kind::WsFlv } else { Kind::HttpFlv };
    let request = Requested { peer, meta: connect_meta(req.headers(), req.uri()), kind };
    let player = match admit(ctx, &target, request).await {
        Ok(p) => p,
        Err((status, text)) => return text_response(status, &text),
    };
    if head {
        return flv_headers(StatusCode::OK, axum::body::Body::empty());
    }
    if let Some(accept) = upgrade {
        return ws::upgrade(req, accept, player, lent);
    }
    match head_watch.arm() {
        Ok(fd) => direct_response(body::FlvBody::direct(direct::run(player, head_watch, fd))),
        Err(e) => {
            tracing::warn!(client = %peer, error = %e, "http-flv: socket not duplicated; served through hyper");
            flv_headers(StatusCode::OK, axum::body::Body::new(body::FlvBody::new(player)))
        }
    }
}

/// The head of a response whose body the player writes itself: `HTTP/1.0` with no length, so
/// hyper frames nothing (the body is every byte until the server closes), and `Connection:
/// close` for clients that speak HTTP/1.1.
fn direct_response(body: body::FlvBody) -> Response {
    let mut res = flv_headers(StatusCode::OK, axum::body::Body::new(body));
    *res.version_mut() = axum::http::Version::HTTP_10;
    res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// The response's head: FLV, never cached.
fn flv_headers(status: StatusCode, body: axum::body::Body) -> Response {
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/x-flv"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// A short plain-text refusal.
fn text_response(status: StatusCode, text: &str) -> Response {
    let ct = HeaderValue::from_static("text/plain; charset=utf-8");
    (status, [(header::CONTENT_TYPE, ct)], format!("{} {}\n", status.as_str(), text)).into_response()
}

/// Who asks, as the request tells it.
struct Requested {
    peer: SocketAddr,
    meta: ConnectMeta,
    kind: Kind,
}

/// What the request says about the client, for stats and callbacks: `User-Agent` as the
/// flashver, `Referer` as the page URL, the URL (without its query, which may carry keys) as
/// the tcUrl.
fn connect_meta(headers: &HeaderMap, uri: &axum::http::Uri) -> ConnectMeta {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let agent = text(header::USER_AGENT);
    ConnectMeta {
        flashver: if agent.is_empty() { FLASHVER.to_owned() } else { agent },
        swfurl: String::new(),
        pageurl: text(header::REFERER),
        tcurl: format!("http://{host}{}", uri.path()),
    }
}

/// A player's place in the server, from connect to its end: the registry entry, the place
/// under `max_connections`, and what the policy knows about it. Dropping it reports the end
/// (`on_play_done`, `on_done`, `on_disconnect`) as the RTMP connection does.
struct Session {
    ctx: Arc<ServerCtx>,
    handle: ClientHandle,
    kind: Kind,
    _permit: ConnectionPermit,
    client: ClientInfo,
    /// The application named (even if `on_connect` refused): `on_disconnect` reports it.
    app: Option<Arc<AppConf>>,
    /// The stream as asked, once it plays: `on_play_done` reports it.
    asked: Option<(String, String)>,
}

impl Drop for Session {
    fn drop(&mut self) {
        let Some(app) = &self.app else { return };
        let mut ended = Vec::with_capacity(2);
        if let Some((name, args)) = &self.asked {
            self.handle.clear_stream(Role::Player);
            tracing::info!(client = %self.client.addr, app = %app.name, stream = %name, protocol = %self.kind.protocol(), "play done");
            ended.push(Ended::Play { name, args });
        }
        ended.push(Ended::Disconnect { app_args: "" });
        policy::done(&Policy::of(&self.ctx), &self.client, app, &ended);
    }
}

/// A refusal: the status and the text the client gets.
type Refusal = (StatusCode, String);

/// Connect and play `target` as nginx-http-flv-module does: the registry, `max_connections`,
/// the application and `on_connect`, then the play decision and the stream.
async fn admit(ctx: &Arc<ServerCtx>, target: &Target, req: Requested) -> Result<player::FlvPlayer, Refusal> {
    let unavailable = || (StatusCode::SERVICE_UNAVAILABLE, "too many clients".to_owned());
    // The registry logs its bound once.
    let handle = ctx.clients.register(req.peer, req.kind, ctx.index).ok_or_else(unavailable)?;
    handle.set_connect_meta(req.meta.clone());
    let policy = Policy::of(ctx);
    let Some(permit) = ctx.limit.try_acquire() else {
        let max = ctx.limit.max().unwrap_or_default();
        let refused = policy::too_many(&policy, req.peer, &target.app, max);
        return Err((StatusCode::SERVICE_UNAVAILABLE, refused.text));
    };
    let client = ClientInfo {
        id: handle.id(),
        addr: req.peer,
        app: target.app.clone(),
        flash_ver: req.meta.flashver,
        swf_url: String::new(),
        tc_url: req.meta.tcurl,
        page_url: req.meta.pageurl,
    };
    let app = policy::application(&policy, &ctx.apps, &client).map_err(|r| (StatusCode::NOT_FOUND, r.text))?;
    let mut session = Session {
        ctx: ctx.clone(),
        handle,
        kind: req.kind,
        _permit: permit,
        client: client.clone(),
        app: Some(app.clone()),
        asked: None,
    };
    let epoch =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u32;
    let ok = policy::connect(&policy, &ctx.apps, app, client, "", epoch).await.map_err(forbidden)?;
    session.handle.set_app(&ok.app.name);
    session.app = Some(ok.app.clone());
    session.client = ok.client.clone();
    let (app, client) = (ok.app, ok.client);
    let ask = Ask { client: &client, app: &app, app_args: "", name: &target.name, args: &target.args };
    let play = PlayArgs { start: 0.0, duration: 0.0, reset: false };
    let admitted = policy::play(&policy, &ask, play).await.map_err(forbidden)?;
    let (name, pull_from) = match admitted {
        Admit::Local { name } => (name, None),
        Admit::Relay { url, local_name } => (local_name, Some(url)),
    };
    // Again here: `on_play` may have renamed the stream.
    if let Err(e) = untrusted::stream_name(&name) {
        tracing::info!(client = %req.peer, app = %app.name, stream = %for_log(&name), "play refused: {e}");
        return Err((StatusCode::BAD_REQUEST, format!("bad stream name: {e}")));
    }
    let (pack, sub) = subscribe(ctx, &app, &client, &name, &target.args, pull_from.as_deref())?;
    tracing::info!(client = %req.peer, app = %app.name, stream = %name, args = %redact_query(&target.args), clientid = session.handle.id(), protocol = %req.kind.protocol(), "play");
    session.handle.set_stream(&name, Role::Player);
    session.handle.set_args(&target.args);
    session.asked = Some((target.name.clone(), target.args.clone()));
    Ok(player::FlvPlayer::new(session, app, name, pack, sub))
}

/// A policy refusal as the HTTP client is told it: a bad name (no counted reason) is the
/// request's fault, the rest are refusals.
fn forbidden(refused: policy::Refused) -> Refusal {
    let status = if refused.reason.is_some() { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
    (status, refused.text)
}

/// Join the stream (or its pull) as the RTMP connection's `start_play` does; `404` when there
/// is nothing to play and nothing to wait for.
fn subscribe(
    ctx: &Arc<ServerCtx>,
    app: &Arc<AppConf>,
    client: &ClientInfo,
    name: &str,
    args: &str,
    pull_from: Option<&str>,
) -> Result<(StartPack, Subscriber), Refusal> {
    let player = streams::Player { app, name, args, client: Some(client), srv: ctx.index };
    let opts = StreamOptions { ring_len: ctx.conf.core.out_queue, gop_cache: app.live.gop_cache };
    let found = match pull_from {
        None => ctx.streams.play(&player, opts),
        Some(url) => match ctx.streams.play_pulled(&player, url, opts) {
            Ok(found) => Some(found),
            Err(e) => {
                tracing::info!(client = %client.addr, app = %app.name, stream = %name, url = %crate::notify::log_url(url), "play refused: on_play's relay: {e}");
                return Err((StatusCode::BAD_GATEWAY, format!("on_play relay: {e}")));
            }
        },
    };
    let unserved = app.unserved_play();
    match found {
        Some((pack, sub)) if pack.live || (app.live.idle_streams && unserved.is_none()) => Ok((pack, sub)),
        other => {
            drop(other);
            let why = unserved.map_or_else(
                || format!("No such stream: {name}"),
                |why| format!("Stream {name} is not published here, and {why}"),
            );
            tracing::info!(client = %client.addr, app = %app.name, stream = %name, "play refused: {why}");
            Err((StatusCode::NOT_FOUND, why))
        }
    }
}

//! The HTTP server: `/healthz`, content sluice produces itself ([`LiveContent`]: live HLS
//! playlists and segments, tried first), and static files from the configured locations
//! (`http { server { location { root|alias } } }` and the implicit `hls_path` locations).
//!
//! | Spec | Where |
//! | --- | --- |
//! | RFC 9110, 9.3.1–9.3.2 (GET, HEAD), 15.5.6 (405 and `Allow`) | [`router`] |
//! | RFC 9110, 14 (Range requests: `Range`, `Content-Range`, `If-Range`, 206, 416) | `range`, `files` |
//! | RFC 9110, 13.1.2 and 13.1.3 (`If-None-Match`, `If-Modified-Since`, 304), 8.8 (`ETag`, `Last-Modified`) | `files` |
//! | RFC 9110, 5.6.7 (IMF-fixdate) | `date` |
//! | RFC 3986, 2.1 (percent-encoding) | `path` |
//! | Fetch standard, CORS protocol (`Access-Control-*`, preflight) | [`router`] |
//! | nginx `ngx_http_core_module` (location matching, `root`/`alias`, `index`, `types`), `ngx_http_headers_module` (`add_header`) | `config::http`, `files`, [`router`] |
//! | nginx-rtmp `ngx_rtmp_control_module` (`rtmp_control`: `/control/record/start\|stop`, `/control/drop/...`) | `record::control` |
//!
//! Every response carries `Access-Control-Allow-Origin: *` unless `add_header` sets it, so
//! browser players on other origins can fetch playlists and segments; responses of control
//! locations (`rtmp_control`) do not, and the control API refuses cross-site browser
//! requests (`Sec-Fetch-Site`), since its GETs change state, unless the location sets
//! `Access-Control-Allow-Origin` with `add_header`.
//!
//! Each location's `allow`/`deny` rules (nginx's `ngx_http_access_module`) are checked first:
//! a denied client gets `403`. Connections are served by hyper with `client_header_timeout`,
//! `keepalive_timeout` and `send_timeout`, at most `max_connections` at once per server (more
//! are closed as soon as they are accepted).

pub(crate) mod conn;
mod date;
mod files;
mod mime;
mod path;
mod range;

pub(crate) use conn::HeadWatch;
pub use conn::Site;
pub(crate) use date::http_date;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::ConnectionLimit;
use crate::config::{Handler, HttpServerConf, Location};
use crate::hub::Hub;
use crate::untrusted::for_log;

/// What `OPTIONS` preflight answers allow.
const ALLOW_METHODS: &str = "GET, HEAD, OPTIONS";
/// Request headers preflight allows (players ask for byte ranges).
const ALLOW_HEADERS: &str = "Range";
/// How long browsers may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "86400";
/// `Cache-Control` of playlists, keys and errors in implicit hls locations.
const NO_CACHE: &str = "no-cache";
/// `Cache-Control` of segments in implicit hls locations: their names are never reused while
/// they are listed.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Segment extensions that get [`IMMUTABLE`].
const SEGMENT_EXTENSIONS: &[&str] = &["ts", "m4s", "mp4", "m4a", "aac"];
/// Extensions that get [`NO_CACHE`]: playlists change, keys rotate.
const FRESH_EXTENSIONS: &[&str] = &["m3u8", "key"];
/// Statuses nginx adds `add_header` headers to without `always`.
const ADD_HEADER_STATUSES: &[u16] = &[200, 201, 204, 206, 301, 302, 303, 304, 307, 308];

/// Content produced by sluice itself (live HLS playlists and segments), tried before files.
pub trait LiveContent: Send + Sync + 'static {
    /// `file` is the file the request's location maps the URL to (root or alias + path), so live
    /// content is found under whatever URL serves its directory; `query` is the raw query
    /// string. `None` falls through to the file on disk.
    fn get<'a>(
        &'a self,
        file: &'a Path,
        query: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = Option<Response>> + Send + 'a>>;
}

/// Shared state of HTTP handlers (one per server: each has its own locations).
#[derive(Clone)]
pub struct HttpState {
    /// The stream registry.
    pub hub: Arc<Hub>,
    /// Live content providers, asked in order before the locations (GET and HEAD only).
    pub live: Vec<Arc<dyn LiveContent>>,
    /// The server's locations.
    pub site: Arc<HttpServerConf>,
    /// The recorder registry, for `rtmp_control` locations.
    pub records: Arc<crate::record::Recorders>,
    /// The server's open connections, against its `max_connections` (shared by its addresses).
    pub connections: Arc<ConnectionLimit>,
    /// The clients registry, for `rtmp_control` locations' `drop`.
    pub clients: Arc<crate::clients::Clients>,
    /// The running server, for sluice's own pages and HTTP players ([`Handler`]); `None` in
    /// states made for files alone, where those locations answer `503`.
    pub running: Option<Arc<crate::server::Running>>,
}

impl HttpState {
    /// A state serving `/healthz` only: no live content, no locations.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self::for_site(hub, Vec::new(), HttpServerConf::default(), Default::default())
    }

    /// The state of one server, with its connection count.
    pub fn for_site(
        hub: Arc<Hub>,
        live: Vec<Arc<dyn LiveContent>>,
        site: HttpServerConf,
        records: Arc<crate::record::Recorders>,
    ) -> Self {
        let connections = Arc::new(ConnectionLimit::new(Some(site.limits.max_connections)));
        HttpState { hub, live, site: Arc::new(site), records, connections, clients: Default::default(), running: None }
    }

    /// The same state acting on this clients registry (the running server's).
    pub fn with_clients(mut self, clients: Arc<crate::clients::Clients>) -> Self {
        self.clients = clients;
        self
    }

    /// The same state serving the running server's pages and players.
    pub fn with_running(mut self, running: Arc<crate::server::Running>) -> Self {
        self.clients = running.shared.clients.clone();
        self.running = Some(running);
        self
    }
}

/// Marks a response that must not get `Access-Control-Allow-Origin: *`.
#[derive(Debug, Clone, Copy)]
struct NoCors;

/// The routes: `/healthz`, `/utc` (the clock, for low-latency DASH), then live content and files for
/// everything else.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz).options(|| async { preflight() }))
        .route(dash::mpd::UTC_TIMING_URL, get(utc).options(|| async { preflight() }))
        .fallback(handle)
        .layer(axum::middleware::map_response(allow_any_origin))
        // Behind one `Arc`: axum clones the state for every request.
        .with_state(Arc::new(state))
}

/// Serve HTTP on `listener` until shutdown, then let open connections finish their request.
/// On a `listen ... proxy_protocol` address each connection's PROXY protocol header is read
/// first, within `client_header_timeout`, and names the client.
pub async fn serve(listener: TcpListener, state: HttpState, shutdown: CancellationToken) -> std::io::Result<()> {
    let (_keep, current) = tokio::sync::watch::channel(Arc::new(site(state)));
    serve_current(listener, current, shutdown.clone(), shutdown).await
}

/// A server's state ready to serve.
pub fn site(state: HttpState) -> Site {
    Site {
        limits: state.site.limits,
        connections: state.connections.clone(),
        proxy_listen: state.site.proxy_listen.clone(),
        router: router(state),
    }
}

/// Serve HTTP on `listener` with the [`Site`] current at each connection, until `stop` (the
/// address is closed; open connections go on) or `shutdown` (they finish their request).
pub async fn serve_current(
    listener: TcpListener,
    current: tokio::sync::watch::Receiver<Arc<Site>>,
    stop: CancellationToken,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    conn::accept_loop(listener, local, current, stop, shutdown).await;
    Ok(())
}

/// Whether the bound address `local` is one written with `proxy_protocol` (a port written as
/// 0 matches the port the system chose).
fn is_proxy_listen(proxy_listen: &[SocketAddr], local: SocketAddr) -> bool {
    proxy_listen.iter().any(|a| a.ip() == local.ip() && (a.port() == local.port() || a.port() == 0))
}

async fn healthz(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    if let Some(res) = check_access(state.site.location("/healthz"), &req, "/healthz") {
        return res;
    }
    format!("ok\nstreams {}\n", state.hub.len()).into_response()
}

/// The wall clock (ISO 8601, ms), for low-latency DASH players (the MPD's `UTCTiming`): it says
/// nothing a `Date` header does not, so every client gets it.
async fn utc() -> Response {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let mut res = hls::playlist::iso8601_utc(ms as u64).into_response();
    res.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    res
}

/// Everything but `/healthz`: the location's access rules, then the method decides, then
/// live content, then files.
async fn handle(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let path = match path::normalize(req.uri().path()) {
        Ok(p) => p,
        Err(e) => {
            return match *req.method() {
                Method::GET | Method::HEAD => status_response(e.status()),
                Method::OPTIONS => preflight(),
                _ => method_not_allowed(),
            }
        }
    };
    let loc = state.site.location(&path);
    let res = match check_access(loc, &req, &path) {
        // The API answers in JSON, and its refusals are no one else's to read.
        Some(_) if matches!(loc.handler, Some(Handler::Api { .. })) => {
            private(crate::api::error(StatusCode::FORBIDDEN, "not allowed from this address"))
        }
        Some(refused) => refused,
        None => respond(&state, loc, &path, req).await,
    };
    if loc.rtmp_control.any() || loc.no_cors {
        private(res)
    } else {
        res
    }
}

/// `403` when the location's rules deny the client, or when a browser sends a cross-site
/// request to the control API (an `<img>` on any page could otherwise stop recordings of a
/// server that only the browser's machine may reach).
fn check_access(loc: &Location, req: &Request, path: &str) -> Option<Response> {
    let forbidden = || Some(decorate(loc, path, status_response(StatusCode::FORBIDDEN)));
    if !loc.access.is_empty() {
        let Some(ip) = peer_ip(req) else {
            tracing::warn!(path = %for_log(path), "http access: no client address to check the rules against");
            return forbidden();
        };
        if let Some(rule) = loc.denied_by(ip) {
            tracing::info!(client = %ip, path = %for_log(path), rule = %rule.text, "http access forbidden by rule");
            return forbidden();
        }
    }
    if loc.rtmp_control.any() && is_cross_site(req) && !opts_into_cors(loc) {
        let client = peer_ip(req).map(|ip| ip.to_string()).unwrap_or_default();
        tracing::info!(%client, path = %for_log(path), "control request from a cross-site browser context refused");
        return forbidden();
    }
    None
}

/// Whether the location names, with `add_header`, origins that may read its answers: the
/// operator's choice to let another site's page (a dashboard) use the control API.
pub(crate) fn opts_into_cors(loc: &Location) -> bool {
    loc.headers.iter().any(|h| h.name.eq_ignore_ascii_case(header::ACCESS_CONTROL_ALLOW_ORIGIN.as_str()))
}

/// A browser request made by a page of another site (`Sec-Fetch-Site`, sent by every current
/// browser; clients such as curl send none).
pub(crate) fn is_cross_site(req: &Request) -> bool {
    req.headers().get("sec-fetch-site").is_some_and(|v| {
        v.as_bytes().eq_ignore_ascii_case(b"cross-site") || v.as_bytes().eq_ignore_ascii_case(b"same-site")
    })
}

/// The client's address and port, as the connection reported it.
pub(crate) fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions().get::<conn::ConnInfo>().map(|c| c.peer)
}

/// The client's address, as the connection reported it.
pub(crate) fn peer_ip(req: &Request) -> Option<IpAddr> {
    peer(req).map(|p| p.ip())
}

/// A response other origins may not read (no `Access-Control-Allow-Origin: *`).
pub(crate) fn private(mut res: Response) -> Response {
    res.extensions_mut().insert(NoCors);
    res
}

fn method_not_allowed() -> Response {
    let mut res = status_response(StatusCode::METHOD_NOT_ALLOWED);
    res.headers_mut().insert(header::ALLOW, HeaderValue::from_static(ALLOW_METHODS));
    res
}

/// The answer of an allowed request: the location's handler when it has one; else the method
/// decides, then the control API, live content and files.
async fn respond(state: &HttpState, loc: &Location, path: &str, req: Request) -> Response {
    if let Some(handler) = &loc.handler {
        return decorate(loc, path, handle_with(handler, state, loc, path, req).await);
    }
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        // Control locations answer no CORS preflight: their GETs change state.
        Method::OPTIONS if loc.rtmp_control.any() => {
            let mut res = StatusCode::NO_CONTENT.into_response();
            res.headers_mut().insert(header::ALLOW, HeaderValue::from_static(ALLOW_METHODS));
            return decorate(loc, path, res);
        }
        Method::OPTIONS => return decorate(loc, path, preflight()),
        _ => return method_not_allowed(),
    };
    if loc.rtmp_control.any() {
        if let Some(refused) = crate::api::token_refused(loc, &req, path) {
            return decorate(loc, path, refused);
        }
    }
    let query = req.uri().query();
    if loc.rtmp_control.any() && !head {
        if let Some(res) =
            crate::record::control::respond(&state.records, &state.clients, loc.rtmp_control, path, query).await
        {
            return decorate(loc, path, res);
        }
    }
    if let Ok(Some(file)) = path::file_path(loc, path) {
        let client = peer(&req);
        if let Some(refused) = hls_viewer(state, &file, client).await {
            return decorate(loc, path, refused);
        }
        for live in &state.live {
            if let Some(res) = live.get(&file, query).await {
                let res = decorate(loc, path, live_answer(req.headers(), res).await);
                return if head { strip_body(res) } else { res };
            }
        }
    }
    let res = files::serve(loc, path, req.uri(), req.headers(), head).await;
    decorate(loc, path, res)
}

/// An HLS or DASH request on an edge may start the on-demand pull of its stream, and its first
/// playlist (MPD) request waits for it ([`crate::hls::viewers`]): the refusal, if any.
async fn hls_viewer(state: &HttpState, file: &Path, client: Option<SocketAddr>) -> Option<Response> {
    let (running, client) = (state.running.as_ref()?, client?);
    match running.shared.hls.admit_viewer(&running.servers, &running.shared.dash, file, client).await {
        crate::hls::viewers::Admission::Serve => None,
        crate::hls::viewers::Admission::NotFound => Some(status_response(StatusCode::NOT_FOUND)),
        crate::hls::viewers::Admission::Busy => Some(status_response(StatusCode::SERVICE_UNAVAILABLE)),
    }
}

/// The one place sluice's own pages and players are registered: each [`Handler`] and the
/// module answering it.
async fn handle_with(handler: &Handler, state: &HttpState, loc: &Location, path: &str, req: Request) -> Response {
    if state.running.is_none() {
        return status_response(StatusCode::SERVICE_UNAVAILABLE);
    }
    match handler {
        Handler::Stat(_) => crate::rtmp_stat::respond(state, loc, path, req).await,
        Handler::Api { .. } => crate::api::respond(state, loc, path, req).await,
        Handler::Metrics => crate::metrics::respond(state, loc, path, req).await,
        Handler::Dashboard => crate::dashboard::respond(state, loc, path, req).await,
        Handler::FlvLive => crate::httpflv::respond(state, loc, path, req).await,
        Handler::Recordings { flv_fallback } => crate::recordings::respond(state, loc, path, req, *flv_fallback).await,
    }
}

/// A live answer for this request: `304` when the client's validators still match it,
/// else the whole answer or the range asked for.
async fn live_answer(headers: &axum::http::HeaderMap, res: Response) -> Response {
    if res.status() == StatusCode::OK {
        if let Some(etag) = res.headers().get(header::ETAG).and_then(|v| v.to_str().ok()) {
            let last_modified = res.headers().get(header::LAST_MODIFIED).and_then(|v| v.to_str().ok());
            if files::not_modified(headers, etag, last_modified) {
                return not_modified(res);
            }
        }
    }
    live_range(headers, res).await
}

/// `304 Not Modified` for `res`: its validators and `Cache-Control` (RFC 9110 §15.4.5), no body.
fn not_modified(res: Response) -> Response {
    let mut out = StatusCode::NOT_MODIFIED.into_response();
    for name in [header::ETAG, header::LAST_MODIFIED, header::CACHE_CONTROL] {
        if let Some(v) = res.headers().get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// Live content is whole in memory: a `Range` request gets its slice (206) or 416.
async fn live_range(headers: &axum::http::HeaderMap, res: Response) -> Response {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return res };
    if res.status() != StatusCode::OK {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return status_response(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let len = bytes.len() as u64;
    parts.headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    match range::parse(value, len) {
        range::RangeRequest::Full => Response::from_parts(parts, Body::from(bytes)),
        range::RangeRequest::Part { start, end } => {
            parts.status = StatusCode::PARTIAL_CONTENT;
            let content_range = format!("bytes {start}-{end}/{len}");
            parts.headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&content_range).expect("ASCII"));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(bytes.slice(start as usize..=end as usize)))
        }
        range::RangeRequest::Unsatisfiable => {
            let mut res = status_response(StatusCode::RANGE_NOT_SATISFIABLE);
            let content_range = format!("bytes */{len}");
            res.headers_mut().insert(header::CONTENT_RANGE, HeaderValue::from_str(&content_range).expect("ASCII"));
            res
        }
    }
}

/// The CORS preflight answer (RFC-less, per the Fetch standard).
fn preflight() -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(PREFLIGHT_MAX_AGE));
    res
}

/// Every response may be read by any origin, unless `add_header` said otherwise or it is the
/// control API's.
async fn allow_any_origin(mut res: Response) -> Response {
    if res.extensions().get::<NoCors>().is_none() {
        res.headers_mut().entry(header::ACCESS_CONTROL_ALLOW_ORIGIN).or_insert(HeaderValue::from_static("*"));
    }
    res
}

/// A HEAD answer from a GET one: same headers (with the length the body would have had), no body.
fn strip_body(res: Response) -> Response {
    let (mut parts, body) = res.into_parts();
    if let Some(len) = body.size_hint().exact() {
        parts.headers.entry(header::CONTENT_LENGTH).or_insert_with(|| HeaderValue::from(len));
    }
    Response::from_parts(parts, Body::empty())
}

/// A short plain-text answer for errors and redirects: `404 Not Found`.
pub(crate) fn status_response(status: StatusCode) -> Response {
    let text = format!("{} {}\n", status.as_str(), status.canonical_reason().unwrap_or_default());
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], text).into_response()
}

/// Adds the location's headers: sluice's caching rules in implicit hls locations (unless the
/// answer came from memory with its own), then `add_header` lines (the first line of a name
/// replaces what sluice set, later ones add).
fn decorate(loc: &Location, path: &str, mut res: Response) -> Response {
    if loc.hls {
        if let Some(value) = hls_cache_control(path, res.status()) {
            res.headers_mut().entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static(value));
        }
    }
    if loc.dash {
        let value = if res.status().is_success() || res.status() == StatusCode::NOT_MODIFIED {
            crate::dash::cache::control(Path::new(path))
        } else {
            crate::dash::cache::NO_CACHE
        };
        res.headers_mut().entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static(value));
    }
    let status = res.status().as_u16();
    let mut added: Vec<&str> = Vec::new();
    for h in loc.headers.iter().filter(|h| !h.value.is_empty() && (h.always || ADD_HEADER_STATUSES.contains(&status))) {
        // Config parsing checked both; a failure here would be a bug, so skip rather than fail.
        let (Ok(name), Ok(value)) = (HeaderName::try_from(h.name.as_str()), HeaderValue::try_from(h.value.as_str()))
        else {
            continue;
        };
        if added.iter().any(|a| a.eq_ignore_ascii_case(&h.name)) {
            res.headers_mut().append(name, value);
        } else {
            res.headers_mut().insert(name, value);
            added.push(&h.name);
        }
    }
    res
}

/// `Cache-Control` for a file of an implicit hls location: errors and playlists are never
/// cached, segments forever.
fn hls_cache_control(path: &str, status: StatusCode) -> Option<&'static str> {
    if status.is_client_error() || status.is_server_error() {
        return Some(NO_CACHE);
    }
    let ext = mime::extension(path)?;
    if FRESH_EXTENSIONS.contains(&ext.as_str()) {
        Some(NO_CACHE)
    } else if SEGMENT_EXTENSIONS.contains(&ext.as_str()) {
        Some(IMMUTABLE)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AddHeader;

    #[test]
    fn proxy_listen_matches_the_bound_address() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let written = [a("127.0.0.1:8081"), a("0.0.0.0:0")];
        assert!(is_proxy_listen(&written, a("127.0.0.1:8081")));
        assert!(!is_proxy_listen(&written, a("127.0.0.1:8082")));
        assert!(is_proxy_listen(&written, a("0.0.0.0:40000")), "port 0: whatever the system chose");
        assert!(!is_proxy_listen(&[], a("127.0.0.1:8081")));
    }

    #[test]
    fn hls_cache_rules() {
        assert_eq!(hls_cache_control("/hls/a.m3u8", StatusCode::OK), Some(NO_CACHE));
        assert_eq!(hls_cache_control("/hls/a.KEY", StatusCode::OK), Some(NO_CACHE));
        for seg in ["/hls/1.ts", "/hls/s/2.m4s", "/hls/init.mp4", "/hls/a.m4a", "/hls/a.aac"] {
            assert_eq!(hls_cache_control(seg, StatusCode::PARTIAL_CONTENT), Some(IMMUTABLE), "{seg}");
        }
        assert_eq!(hls_cache_control("/hls/1.ts", StatusCode::NOT_FOUND), Some(NO_CACHE), "a 404 is not forever");
        assert_eq!(hls_cache_control("/hls/readme", StatusCode::OK), None);
    }

    fn location(headers: &[(&str, &str, bool)]) -> Location {
        let mut loc = HttpServerConf::default().fallback;
        loc.headers = headers
            .iter()
            .map(|&(name, value, always)| AddHeader { name: name.into(), value: value.into(), always })
            .collect();
        loc
    }

    #[test]
    fn add_header_follows_nginx_status_rule() {
        let loc = location(&[("X-A", "1", false), ("X-B", "2", true), ("X-A", "3", false), ("X-Empty", "", true)]);
        let ok = decorate(&loc, "/x", StatusCode::OK.into_response());
        let values: Vec<_> = ok.headers().get_all("x-a").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        assert_eq!(values, ["1", "3"], "repeated names add");
        assert_eq!(ok.headers()["x-b"], "2");
        assert!(ok.headers().get("x-empty").is_none(), "an empty value adds nothing");
        let missing = decorate(&loc, "/x", StatusCode::NOT_FOUND.into_response());
        assert!(missing.headers().get("x-a").is_none(), "only 2xx/3xx without always");
        assert_eq!(missing.headers()["x-b"], "2");
    }

    #[test]
    fn add_header_replaces_what_sluice_set() {
        let loc = location(&[("Content-Type", "text/x-test", false)]);
        let res = decorate(&loc, "/x", status_response(StatusCode::OK));
        let values: Vec<_> = res.headers().get_all(header::CONTENT_TYPE).iter().collect();
        assert_eq!(values, ["text/x-test"]);
    }

    #[test]
    fn head_keeps_the_length_of_the_body_it_drops() {
        let res = strip_body(Response::new(Body::from("hello")));
        assert_eq!(res.headers()[header::CONTENT_LENGTH], "5");
        assert_eq!(res.body().size_hint().exact(), Some(0));
    }
}

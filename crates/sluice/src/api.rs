//! The JSON API under `/api/v1/` (a location with `api on`): server, streams and clients from
//! a [`crate::stats::Snapshot`], and actions through the clients registry and the recorders.
//!
//! | Spec | Where |
//! | --- | --- |
//! | RFC 9110, 15.5.6 (405 and `Allow`), 15.5.2 (401 and `WWW-Authenticate`) | [`respond`] |
//! | RFC 6750, 2.1 (`Authorization: Bearer`) | [`bearer_ok`] |
//! | OpenAPI 3.1 | `api/openapi.json`, served at `v1/openapi.json` |
//!
//! Security, all decided here before a route is looked at (the location's `allow`/`deny` were
//! checked by `http` already, for reads and actions alike):
//! - with `api_token`, every request but a CORS preflight must carry `Authorization: Bearer
//!   TOKEN` (compared in constant time, never logged), else `401`;
//! - an action (any method but GET, HEAD and OPTIONS) must also pass the location's
//!   `action_access` rules (the built-in server's: loopback only) and must not come from a
//!   cross-site browser context unless the location opted into CORS with `add_header`, else
//!   `403`; its answer is never readable by other origins ([`http::private`]).

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::config::{Handler, HttpAccessRule, Location};
use crate::http::{self, HttpState};
use crate::record::control::{start_or_stop, Args, RecordOutcome};
use crate::stats::{self, Snapshot};
use crate::untrusted::{self, for_log};

/// The OpenAPI description of [`ROUTES`] and of the JSON they answer.
const OPENAPI: &str = include_str!("api/openapi.json");

/// Most items one list answer holds (`?count=`), whatever was asked.
pub const MAX_PAGE: usize = 10_000;

/// The API's paths after the location's URI, and the methods each answers besides HEAD (for
/// GET) and OPTIONS; `{x}` is one path segment. The router answers these and nothing else, and
/// the OpenAPI document lists exactly these (a test checks both ways).
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/v1/server", &["GET"]),
    ("/v1/cluster", &["GET"]),
    ("/v1/streams", &["GET"]),
    ("/v1/streams/{app}/{name}", &["GET"]),
    ("/v1/streams/{app}/{name}/record/start", &["POST"]),
    ("/v1/streams/{app}/{name}/record/stop", &["POST"]),
    ("/v1/clients", &["GET"]),
    ("/v1/clients/{id}", &["GET", "DELETE"]),
    ("/v1/recordings", &["GET"]),
    ("/v1/openapi.json", &["GET"]),
];

/// A request the router understood, its path segments checked.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Server,
    Cluster,
    Streams,
    Stream { app: &'a str, name: &'a str },
    Record { app: &'a str, name: &'a str, start: bool },
    Clients,
    Client(u64),
    Recordings,
    OpenApi,
}

/// Answer a request to a location this module handles.
pub async fn respond(state: &HttpState, loc: &Location, path: &str, req: Request) -> Response {
    let method = req.method().clone();
    let changes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let res = match refuse(loc, &req, path) {
        Some(refused) => refused,
        None => {
            let client = http::peer_ip(&req);
            // The body is never read: no route takes one.
            let (parts, _body) = req.into_parts();
            answer(state, loc, path, &parts, client).await
        }
    };
    // Preflights and actions: other origins read them only where `add_header` names them.
    if changes || method == Method::OPTIONS {
        http::private(res)
    } else {
        res
    }
}

/// The answer of a request [`refuse`] let in; `client` is its address.
async fn answer(state: &HttpState, loc: &Location, path: &str, req: &Parts, client: Option<IpAddr>) -> Response {
    let method = &req.method;
    let rest = path.strip_prefix(loc.uri.trim_end_matches('/')).unwrap_or_default();
    let Some((pattern, params)) = match_route(rest) else {
        return error(StatusCode::NOT_FOUND, "no such API path");
    };
    let methods = ROUTES.iter().find(|(p, _)| *p == pattern).map_or(&[][..], |(_, m)| m);
    if *method == Method::OPTIONS {
        return options(loc, methods);
    }
    let get = *method == Method::GET || *method == Method::HEAD;
    let allowed = methods.iter().any(|m| *m == method.as_str() || (get && *m == "GET"));
    if !allowed {
        let mut res = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here");
        res.headers_mut().insert(header::ALLOW, allow_header(methods));
        return res;
    }
    let route = match route(pattern, &params) {
        Ok(r) => r,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let Some(running) = state.running.as_deref() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the server is not running");
    };
    let query = req.uri.query();
    match (route, get) {
        (Route::Server, _) => json(StatusCode::OK, &stats::collect(running).server),
        (Route::Cluster, _) => json(StatusCode::OK, &cluster_view(running)),
        (Route::Streams, _) => list(stats::collect(running), query, |s| ("streams", s.streams)),
        (Route::Stream { app, name }, _) => {
            let snapshot = stats::collect(running);
            match snapshot.streams.iter().find(|s| s.app == app && s.name == name) {
                Some(s) => json(StatusCode::OK, s),
                None => error(StatusCode::NOT_FOUND, "no such stream"),
            }
        }
        (Route::Clients, _) => list(stats::collect(running), query, |s| ("clients", s.clients)),
        (Route::Client(id), true) => match stats::collect(running).clients.iter().find(|c| c.id == id) {
            Some(c) => json(StatusCode::OK, c),
            None => error(StatusCode::NOT_FOUND, "no such client"),
        },
        (Route::Client(id), false) => drop_client(state, client, id),
        (Route::Record { app, name, start }, _) => record(state, query, client, app, name, start).await,
        (Route::Recordings, _) => page("recordings", crate::recordings::list(state).await, query),
        (Route::OpenApi, _) => json(StatusCode::OK, &openapi_for(loc)),
    }
}

/// `401` or `403` before any route is looked at (see the module's comment); `None` lets the
/// request in.
fn refuse(loc: &Location, req: &Request, path: &str) -> Option<Response> {
    let client = http::peer_ip(req);
    let client_text = client.map(|ip| ip.to_string()).unwrap_or_default();
    if let Some(refused) = token_refused(loc, req, path) {
        return Some(refused);
    }
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let rules = match &loc.handler {
        Some(Handler::Api { action_access }) => action_access.as_slice(),
        _ => &[],
    };
    if let Some(rule) = action_denied(rules, client) {
        tracing::info!(client = %client_text, path = %for_log(path), rule = %rule, "api: action refused by rule");
        return Some(error(StatusCode::FORBIDDEN, "actions are not allowed from this address"));
    }
    if http::is_cross_site(req) && !http::opts_into_cors(loc) {
        tracing::info!(client = %client_text, path = %for_log(path), "api: action from a cross-site browser context refused");
        return Some(error(StatusCode::FORBIDDEN, "actions are not allowed from other sites' pages"));
    }
    None
}

/// `401` when the location has an `api_token` and the request does not carry it (a CORS
/// preflight needs none): the one bearer check of the API, `/metrics` and `/control/`.
pub(crate) fn token_refused(loc: &Location, req: &Request, path: &str) -> Option<Response> {
    let token = loc.api_token.as_ref()?;
    if *req.method() == Method::OPTIONS || bearer_ok(req.headers(), token) {
        return None;
    }
    let client = http::peer_ip(req).map(|ip| ip.to_string()).unwrap_or_default();
    tracing::info!(%client, path = %for_log(path), "request without the right bearer token refused");
    let mut res = error(StatusCode::UNAUTHORIZED, "this location needs Authorization: Bearer TOKEN");
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(res)
}

/// The rule (as written) refusing an action from `client`: the first of `rules` matching it,
/// when that is a `deny` (nginx's access module); no rules allow everyone, but rules with no
/// client address to check refuse.
pub fn action_denied(rules: &[HttpAccessRule], client: Option<IpAddr>) -> Option<&str> {
    if rules.is_empty() {
        return None;
    }
    let Some(ip) = client else { return Some("no client address") };
    rules.iter().find(|r| r.addr.contains(ip)).filter(|r| !r.allow).map(|r| r.text.as_str())
}

/// Whether `Authorization` carries `Bearer TOKEN` (RFC 6750; the scheme is case-insensitive).
fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return false };
    let value = value.as_bytes();
    let Some((scheme, given)) = value.split_at_checked(7) else { return false };
    scheme.eq_ignore_ascii_case(b"Bearer ") && crate::auth::ct_eq(given.trim_ascii(), token.as_bytes())
}

/// The route pattern `rest` (the path after the location's URI) matches, and its `{x}` segments.
fn match_route(rest: &str) -> Option<(&'static str, Vec<&str>)> {
    let segments: Vec<&str> = rest.split('/').collect();
    ROUTES.iter().find_map(|(pattern, _)| {
        let parts: Vec<&str> = pattern.split('/').collect();
        if parts.len() != segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (part, seg) in parts.iter().zip(&segments) {
            if part.starts_with('{') && !seg.is_empty() {
                params.push(*seg);
            } else if part != seg {
                return None;
            }
        }
        Some((*pattern, params))
    })
}

/// The [`Route`] of a matched pattern, its segments checked: ids are numbers, applications
/// and names pass [`untrusted::stream_name`]; else why not (a `400`).
fn route<'a>(pattern: &str, params: &[&'a str]) -> Result<Route<'a>, String> {
    let stream = || -> Result<(&'a str, &'a str), String> {
        let app = untrusted::stream_name(params[0]).map_err(|e| format!("invalid application: {e}"))?;
        let name = untrusted::stream_name(params[1]).map_err(|e| format!("invalid stream name: {e}"))?;
        Ok((app, name))
    };
    Ok(match pattern {
        "/v1/server" => Route::Server,
        "/v1/cluster" => Route::Cluster,
        "/v1/streams" => Route::Streams,
        "/v1/streams/{app}/{name}" => {
            let (app, name) = stream()?;
            Route::Stream { app, name }
        }
        "/v1/streams/{app}/{name}/record/start" | "/v1/streams/{app}/{name}/record/stop" => {
            let (app, name) = stream()?;
            Route::Record { app, name, start: pattern.ends_with("/start") }
        }
        "/v1/clients" => Route::Clients,
        "/v1/clients/{id}" => Route::Client(params[0].parse().map_err(|_| "invalid client id: not a number")?),
        "/v1/recordings" => Route::Recordings,
        "/v1/openapi.json" => Route::OpenApi,
        other => return Err(format!("route {other} has no handler")),
    })
}

/// The cluster's stream directory as this node sees it.
pub(crate) fn cluster_view(running: &crate::server::Running) -> crate::cluster::ClusterView {
    running.shared.directory.as_ref().map_or_else(crate::cluster::ClusterView::disabled, |d| d.view())
}

/// `{"KEY": [...], "total": N}` with the page `?start=&count=` asks for (all, up to
/// [`MAX_PAGE`], by default).
fn list<T: Serialize>(
    snapshot: Snapshot,
    query: Option<&str>,
    pick: impl FnOnce(Snapshot) -> (&'static str, Vec<T>),
) -> Response {
    let (key, items) = pick(snapshot);
    page(key, items, query)
}

/// [`list`]'s answer for `items`.
fn page<T: Serialize>(key: &'static str, items: Vec<T>, query: Option<&str>) -> Response {
    let args = Args::parse(query);
    let number = |key: &str, default: usize| args.get(key).map_or(Ok(default), |v| v.parse::<usize>());
    let (Ok(start), Ok(count)) = (number("start", 0), number("count", MAX_PAGE)) else {
        return error(StatusCode::BAD_REQUEST, "start and count are numbers");
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(count.min(MAX_PAGE)).collect();
    match serde_json::to_value(page) {
        Ok(items) => json(StatusCode::OK, &serde_json::json!({ key: items, "total": total })),
        Err(e) => {
            tracing::error!("api: {key} not serialisable: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "the list could not be written")
        }
    }
}

/// `DELETE /v1/clients/{id}`: the client is told to close through the clients registry.
fn drop_client(state: &HttpState, client: Option<IpAddr>, id: u64) -> Response {
    let client = client.map(|ip| ip.to_string()).unwrap_or_default();
    if state.clients.drop_id(id) {
        tracing::info!(%client, id, "api: client dropped");
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "no such client")
    }
}

/// `POST /v1/streams/{app}/{name}/record/start|stop?rec=NAME`: the control API's start and
/// stop (`record::control`), for one stream.
async fn record(
    state: &HttpState,
    query: Option<&str>,
    client: Option<IpAddr>,
    app: &str,
    name: &str,
    start: bool,
) -> Response {
    let args = Args::parse(query);
    let recorder = args.get("rec").unwrap_or_default();
    let client = client.map(|ip| ip.to_string()).unwrap_or_default();
    let action = if start { "start" } else { "stop" };
    let res = match start_or_stop(&state.records, app, name, recorder, start).await {
        RecordOutcome::Done(file) => json(StatusCode::OK, &serde_json::json!({ "file": display(&file) })),
        RecordOutcome::Unchanged => StatusCode::NO_CONTENT.into_response(),
        RecordOutcome::NotPublished(e) | RecordOutcome::UnknownRecorder(e) => {
            error(StatusCode::NOT_FOUND, &e.to_string())
        }
        RecordOutcome::Failed(e) => {
            tracing::warn!(app = %for_log(app), stream = %for_log(name), recorder = %for_log(recorder), "api: record {action} failed: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    };
    let status = res.status().as_u16();
    tracing::info!(%client, app = %for_log(app), stream = %for_log(name), recorder = %for_log(recorder), action, status, "api: record");
    res
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// The OpenAPI document, its server URL this location's.
fn openapi_for(loc: &Location) -> serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    let mut doc = DOC.get_or_init(|| serde_json::from_str(OPENAPI).expect("api/openapi.json is JSON")).clone();
    doc["servers"] = serde_json::json!([{ "url": loc.uri.trim_end_matches('/') }]);
    doc
}

/// `204` with the methods of a path; with the CORS headers a browser needs when the location
/// opted into CORS (`add_header Access-Control-Allow-Origin ...`).
fn options(loc: &Location, methods: &[&str]) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    let allow = allow_header(methods);
    if http::opts_into_cors(loc) {
        res.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_METHODS, allow.clone());
        res.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization"));
    }
    res.headers_mut().insert(header::ALLOW, allow);
    res
}

/// `Allow`: the route's methods, HEAD with GET, and OPTIONS.
fn allow_header(methods: &[&str]) -> HeaderValue {
    let mut all: Vec<&str> = methods.to_vec();
    if all.contains(&"GET") {
        all.push("HEAD");
    }
    all.push("OPTIONS");
    HeaderValue::from_str(&all.join(", ")).expect("method names are ASCII")
}

/// A JSON answer, never cached (the figures change every second).
fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("api: answer not serialisable: {e}");
            http::status_response(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// `{"error": "..."}` with `status`.
pub(crate) fn error(status: StatusCode, text: &str) -> Response {
    json(status, &serde_json::json!({ "error": text }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn route_of(rest: &str) -> Option<Result<Route<'_>, StatusCode>> {
        match_route(rest).map(|(p, params)| route(p, &params).map_err(|_| StatusCode::BAD_REQUEST))
    }

    #[test]
    fn routes_match_and_check_their_segments() {
        assert_eq!(route_of("/v1/server"), Some(Ok(Route::Server)));
        assert_eq!(route_of("/v1/streams/live/cam 1"), Some(Ok(Route::Stream { app: "live", name: "cam 1" })));
        assert_eq!(
            route_of("/v1/streams/live/cam/record/stop"),
            Some(Ok(Route::Record { app: "live", name: "cam", start: false }))
        );
        assert_eq!(route_of("/v1/clients/42"), Some(Ok(Route::Client(42))));
        assert_eq!(route_of("/v1/clients/x"), Some(Err(StatusCode::BAD_REQUEST)));
        assert_eq!(route_of("/v1/clients/99999999999999999999999"), Some(Err(StatusCode::BAD_REQUEST)));
        assert_eq!(route_of("/v1/streams/live/.."), Some(Err(StatusCode::BAD_REQUEST)));
        let long = format!("/v1/streams/live/{}", "n".repeat(200));
        assert_eq!(route_of(&long), Some(Err(StatusCode::BAD_REQUEST)));
        for (pattern, _) in ROUTES {
            let params = if pattern.contains("{id}") { vec!["1"] } else { vec!["live", "x"] };
            assert!(route(pattern, &params).is_ok(), "{pattern} has a handler");
        }
        for none in ["", "/", "/v1", "/v1/", "/v1/streams/", "/v1/streams/live", "/v1/streams//x", "/v2/server"] {
            assert_eq!(route_of(none), None, "{none:?}");
        }
    }

    #[test]
    fn builtin_actions_are_loopback_only() {
        let c = Config::parse("rtmp { server { } }", "test.conf").unwrap();
        let loc = c.http.servers()[0].location("/api/v1/clients/1").clone();
        let Some(Handler::Api { action_access }) = &loc.handler else { panic!("{loc:?}") };
        for local in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(action_denied(action_access, Some(local.parse().unwrap())), None, "{local}");
        }
        for remote in ["192.0.2.1", "10.0.0.1", "2001:db8::1"] {
            assert_eq!(action_denied(action_access, Some(remote.parse().unwrap())), Some("deny all"), "{remote}");
        }
        assert_eq!(action_denied(action_access, None), Some("no client address"));
        assert_eq!(action_denied(&[], None), None, "no rules: the location's allow/deny decided");
    }

    #[test]
    fn bearer_tokens() {
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            bearer_ok(&h, "s3cret")
        };
        assert!(with("Bearer s3cret"));
        assert!(with("bearer  s3cret "));
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "s3cret", "Bearer", ""] {
            assert!(!with(wrong), "{wrong:?}");
        }
        assert!(!bearer_ok(&HeaderMap::new(), "s3cret"));
    }

    /// Every route is in the OpenAPI document with exactly its methods, and the document has
    /// no other path.
    #[test]
    fn openapi_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let verbs = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];
        for (pattern, methods) in ROUTES {
            let item = paths.get(*pattern).unwrap_or_else(|| panic!("{pattern} is not documented"));
            let mut documented: Vec<String> =
                item.as_object().unwrap().keys().filter(|k| verbs.contains(&k.as_str())).cloned().collect();
            documented.sort();
            let mut served: Vec<String> = methods.iter().map(|m| m.to_ascii_lowercase()).collect();
            served.sort();
            assert_eq!(documented, served, "{pattern}");
        }
        for path in paths.keys() {
            assert!(ROUTES.iter().any(|(p, _)| p == path), "{path} is documented but not served");
        }
    }
}

//! The web dashboard (`/` on the built-in server, `dashboard on` in a location): one page with
//! its script, style and players embedded in the binary.
//!
//! The page is served at the location's URI itself (`/`, or `/ui/` for
//! `location /ui/ { dashboard on; }`); it loads its files relative to itself
//! (`dashboard/app.js`), and they are found by their last path segment anywhere under the
//! location (the built-in server routes `/dashboard/` here too). The page reads the JSON API at
//! `/api/v1` on the same origin and plays streams with the vendored hls.js and mpegts.js
//! (`assets/dashboard/vendor/README` says which releases). Nothing is fetched from elsewhere:
//! the Content-Security-Policy says so to the browser.
//!
//! Caching: the page, `app.js` and `app.css` are `no-cache` (revalidated by `ETag`, so an
//! upgraded server is seen at once); the players may be cached for a day.

use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::config::Location;
use crate::http::{status_response, HttpState};

/// One file the dashboard serves.
struct Asset {
    /// Its name: the last path segment it is requested by (empty for the page).
    name: &'static str,
    content_type: &'static str,
    cache_control: &'static str,
    body: &'static [u8],
}

/// `Cache-Control` of the page and its own files.
const REVALIDATE: &str = "no-cache";
/// `Cache-Control` of the vendored players (their names change with their version only when
/// the vendor README says so; a day is short enough for an upgrade).
const VENDOR: &str = "public, max-age=86400";
const JS: &str = "text/javascript; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// What the page may load: itself and this origin only (the API, HLS, HTTP-FLV over HTTP or
/// WebSocket); players feed media from `blob:` URLs and run workers from them.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; media-src 'self' blob:; worker-src 'self' blob:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const PAGE: usize = 0;
const ASSETS: &[Asset] = &[
    Asset {
        name: "",
        content_type: "text/html; charset=utf-8",
        cache_control: REVALIDATE,
        body: include_bytes!("../assets/dashboard/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        cache_control: REVALIDATE,
        body: include_bytes!("../assets/dashboard/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        cache_control: REVALIDATE,
        body: include_bytes!("../assets/dashboard/app.css"),
    },
    Asset {
        name: "hls.min.js",
        content_type: JS,
        cache_control: VENDOR,
        body: include_bytes!("../assets/dashboard/vendor/hls.min.js"),
    },
    Asset {
        name: "mpegts.js",
        content_type: JS,
        cache_control: VENDOR,
        body: include_bytes!("../assets/dashboard/vendor/mpegts.js"),
    },
    Asset {
        name: "hls.js.LICENSE",
        content_type: TEXT,
        cache_control: VENDOR,
        body: include_bytes!("../assets/dashboard/vendor/hls.js.LICENSE"),
    },
    Asset {
        name: "mpegts.js.LICENSE",
        content_type: TEXT,
        cache_control: VENDOR,
        body: include_bytes!("../assets/dashboard/vendor/mpegts.js.LICENSE"),
    },
    Asset {
        name: "mpegts.js.THIRD-PARTY.txt",
        content_type: TEXT,
        cache_control: VENDOR,
        body: include_bytes!("../assets/dashboard/vendor/mpegts.js.THIRD-PARTY.txt"),
    },
    Asset {
        name: "README",
        content_type: TEXT,
        cache_control: REVALIDATE,
        body: include_bytes!("../assets/dashboard/vendor/README"),
    },
];

/// Each asset's `ETag` (a digest of its bytes), in [`ASSETS`] order, computed once.
static ETAGS: LazyLock<Vec<String>> =
    LazyLock::new(|| ASSETS.iter().map(|a| format!("\"{}\"", hex16(&Sha256::digest(a.body)))).collect());

fn hex16(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Answer a request to a location this module handles.
pub async fn respond(_state: &HttpState, loc: &Location, path: &str, req: Request) -> Response {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return method_not_allowed(),
    };
    match route(loc, path) {
        Route::Asset(i) => serve(i, req.headers(), head),
        Route::AddSlash => add_slash(path, req.uri().query()),
        Route::NotFound => status_response(StatusCode::NOT_FOUND),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// The index into [`ASSETS`].
    Asset(usize),
    /// The location's URI without its slash: the page's relative links need it.
    AddSlash,
    NotFound,
}

/// The page at the location's URI, its files by their last path segment below it.
fn route(loc: &Location, path: &str) -> Route {
    let slashed = loc.exact || loc.uri.ends_with('/');
    if path == loc.uri {
        return if slashed { Route::Asset(PAGE) } else { Route::AddSlash };
    }
    if !slashed && path.strip_prefix(loc.uri.as_str()) == Some("/") {
        return Route::Asset(PAGE);
    }
    let name = path.rsplit('/').next().unwrap_or_default();
    match ASSETS.iter().position(|a| !a.name.is_empty() && a.name == name) {
        Some(i) => Route::Asset(i),
        None => Route::NotFound,
    }
}

fn serve(i: usize, request: &HeaderMap, head: bool) -> Response {
    let asset = &ASSETS[i];
    let etag = &ETAGS[i];
    let mut res = if not_modified(request, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut res = Response::new(if head { Body::empty() } else { Body::from(asset.body) });
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(asset.body.len()));
        res
    };
    let h = res.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(etag).expect("hex"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(asset.cache_control));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if i == PAGE {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    res
}

/// `If-None-Match` names the asset's current tag (RFC 9110, 13.1.2: weak comparison).
fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// `301` to the location's URI with a slash, so that `dashboard/app.js` resolves inside it.
fn add_slash(path: &str, query: Option<&str>) -> Response {
    let target = match query {
        Some(q) => format!("{path}/?{q}"),
        None => format!("{path}/"),
    };
    match HeaderValue::from_str(&target) {
        Ok(location) => {
            let mut res = status_response(StatusCode::MOVED_PERMANENTLY);
            res.headers_mut().insert(header::LOCATION, location);
            res
        }
        Err(_) => status_response(StatusCode::NOT_FOUND),
    }
}

fn method_not_allowed() -> Response {
    let mut res = status_response(StatusCode::METHOD_NOT_ALLOWED);
    res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpServerConf;

    fn location(uri: &str, exact: bool) -> Location {
        let mut loc = HttpServerConf::default().fallback;
        loc.uri = uri.into();
        loc.exact = exact;
        loc
    }

    fn name(route: Route) -> Option<&'static str> {
        match route {
            Route::Asset(i) => Some(ASSETS[i].name),
            _ => None,
        }
    }

    #[test]
    fn page_at_the_location_files_by_last_segment() {
        let root = location("/", true);
        assert_eq!(route(&root, "/"), Route::Asset(PAGE));
        let files = location("/dashboard/", false);
        assert_eq!(name(route(&files, "/dashboard/app.js")), Some("app.js"));
        assert_eq!(name(route(&files, "/dashboard/hls.min.js")), Some("hls.min.js"));
        assert_eq!(route(&files, "/dashboard/nope.js"), Route::NotFound);
        assert_eq!(route(&files, "/dashboard/app.js/"), Route::NotFound);
        let ui = location("/ui/", false);
        assert_eq!(route(&ui, "/ui/"), Route::Asset(PAGE));
        assert_eq!(name(route(&ui, "/ui/dashboard/mpegts.js")), Some("mpegts.js"));
        assert_eq!(route(&ui, "/ui/other"), Route::NotFound);
        let bare = location("/panel", false);
        assert_eq!(route(&bare, "/panel"), Route::AddSlash);
        assert_eq!(route(&bare, "/panel/"), Route::Asset(PAGE));
        assert_eq!(name(route(&bare, "/panel/dashboard/app.css")), Some("app.css"));
    }

    #[test]
    fn etags_revalidate() {
        let tag = &ETAGS[1];
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&format!("\"x\", W/{tag}")).unwrap());
        assert!(not_modified(&h, tag));
        assert_eq!(serve(1, &h, false).status(), StatusCode::NOT_MODIFIED);
        assert_ne!(ETAGS[0], ETAGS[1]);
    }

    #[test]
    fn head_has_the_length_and_no_body() {
        let res = serve(PAGE, &HeaderMap::new(), true);
        assert_eq!(res.headers()[header::CONTENT_LENGTH], ASSETS[PAGE].body.len().to_string().as_str());
        assert!(res.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        assert_eq!(axum::body::HttpBody::size_hint(res.body()).exact(), Some(0));
    }
}

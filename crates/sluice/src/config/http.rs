//! The HTTP side of the configuration: the subset of nginx's `http { }` block sluice serves
//! (static files, for HLS first), and the built-in HTTP server that runs without one.
//!
//! | directive | context | meaning |
//! |---|---|---|
//! | `http_listen ADDR\|off` | rtmp | sluice extension: the built-in server's address when the file has no `http { }` block (`8080`); `--http-listen` overrides it |
//! | `server { }` | http | one virtual server (`server_name` is not read: one server per address) |
//! | `listen ADDR [flags]` | server | address to serve (`80` when a server has none); `proxy_protocol`: connections start with a PROXY protocol header naming the client; other flags are accepted and ignored, `ssl`/`quic` addresses are skipped |
//! | `location [=\|^~] URI { }` | server, location | prefix (longest wins) or exact (`=`) match; regex (`~`, `~*`) is an error |
//! | `root PATH` | http, server, location | file = root + URI |
//! | `alias PATH` | location | file = alias + URI without the location's prefix |
//! | `types { MIME EXT...; }` | http, server, location | extension → Content-Type; the built-in map answers what it lacks, `types { }` (empty) turns that off |
//! | `default_type MIME` | http, server, location | Content-Type of unknown extensions (`text/plain`) |
//! | `add_header NAME VALUE [always]` | http, server, location | extra response header (2xx/3xx only unless `always`) |
//! | `index FILE...` | http, server, location | files tried for a URI ending in `/` (`index.html`) |
//! | `recordings on\|off` | location | sluice extension: recordings of `record_path` as HLS VOD, `APP/FILE/index.m3u8` under the location |
//! | `rtmp_control all\|record\|drop\|redirect...` | http, server, location | nginx-rtmp's control API in this location (`.../record/start?app=&name=&rec=`) |
//! | `allow ADDR\|CIDR\|all`, `deny ...` | http, server, location | nginx's access module: the first matching rule decides, a denied client gets `403`; a level without rules inherits the enclosing level's |
//! | `client_header_timeout T` | http, server | time to receive a request head, from the connection's start or the end of the previous response (`10s`) |
//! | `keepalive_timeout T [T]` | http, server, location | `0` turns keep-alive off; a shorter time than `client_header_timeout` closes idle connections sooner (`75s`; the second value and location-level lines are ignored) |
//! | `send_timeout T` | http, server | a client that reads nothing of a response for T is disconnected (`60s`) |
//! | `max_connections N` | http, server | sluice extension: HTTP connections open at once per server; more are closed at once (`1024`) |
//!
//! Inheritance is nginx's: `root`/`alias`, `types`, `default_type` and `index` inherit
//! http → server → location → nested location; `add_header` lists inherit only into a level
//! that has none. Directives common in stock nginx.conf files that mean nothing to sluice
//! (`sendfile`, `gzip`, `access_log`, ...) are accepted with a warning; anything
//! else is an error naming the file, line and column.
//!
//! Besides what the file says, sluice serves each application's `hls_path` directory at
//! `/<last path component>/` (the "implicit hls locations"), on the built-in server and on
//! every `http { server { } }` that has no location of that prefix itself (they take the
//! server's `allow`/`deny` rules). The built-in server also answers the control API at
//! `/control/` (`rtmp_control all`), to loopback clients only, and recordings as HLS VOD at
//! `/vod/` (`recordings on`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nginx_conf::{Arg, Directive, Span};

use super::access::{parse_addr as addr_match, ADDR_MUST};
use super::core::parse_addr;
use super::value::{
    check_shape, ctx, edit_distance, first, flag, invalid, number_in, put, spec, time, Args, DirectiveSpec, Fail, Kind,
};
use super::{AddrMatch, HlsCors, ServerConf};

/// The built-in HTTP server's port when `http_listen` is not set.
pub const DEFAULT_HTTP_PORT: u16 = 8080;

/// nginx's port for an `http { server { } }` without `listen` (when started as root).
const NGINX_DEFAULT_PORT: u16 = 80;

/// nginx's `default_type` when none is set.
const DEFAULT_TYPE: &str = "text/plain";

/// nginx's `index` when none is set.
const DEFAULT_INDEX: &str = "index.html";

/// `client_header_timeout` when none is set (nginx's is 60s: shorter, so that slow clients
/// cannot hold connections long).
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// nginx's `keepalive_timeout` when none is set.
const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);

/// nginx's `send_timeout` when none is set.
const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// `max_connections` of an http server when none is set.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: u32 = 1024;

/// Directives of this module that live inside `rtmp { }` (added to the rtmp tables).
pub(crate) const RTMP_DIRECTIVES: &[DirectiveSpec] = &[
    spec("http_listen", ctx::RTMP, Args::Exactly(1), Kind::Listen, "8080"),
    spec("http_stats_public", ctx::RTMP, ONE, Kind::Flag, "off"),
    spec("dashboard", ctx::RTMP, ONE, Kind::Flag, "on"),
    spec("recordings", ctx::RTMP, ONE, Kind::Flag, "on"),
    spec("api_token", ctx::RTMP, ONE, Kind::Text, ""),
];

/// Where a directive may appear inside `http { }` (bits of [`DirectiveSpec::contexts`] in
/// [`DIRECTIVES`], a table of its own, separate from the rtmp contexts).
mod hctx {
    /// Directly inside `http { }`.
    pub(super) const MAIN: u8 = 1;
    /// Inside `http { server { } }`.
    pub(super) const SRV: u8 = 2;
    /// Inside `location { }`.
    pub(super) const LOC: u8 = 4;
    /// Anywhere in the http block.
    pub(super) const ANY: u8 = MAIN | SRV | LOC;
}

const ONE: Args = Args::Exactly(1);

/// The `http { }` directives sluice implements.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    spec("server", hctx::MAIN, Args::Exactly(0), Kind::Block, ""),
    spec("listen", hctx::SRV, Args::AtLeast(1), Kind::Listen, "80"),
    spec("location", hctx::SRV | hctx::LOC, Args::Between(1, 2), Kind::Block, ""),
    spec("root", hctx::ANY, ONE, Kind::Text, ""),
    spec("alias", hctx::LOC, ONE, Kind::Text, ""),
    spec("types", hctx::ANY, Args::Exactly(0), Kind::Block, ""),
    spec("default_type", hctx::ANY, ONE, Kind::Text, DEFAULT_TYPE),
    spec("add_header", hctx::ANY, Args::Between(2, 3), Kind::Text, ""),
    spec("index", hctx::ANY, Args::AtLeast(1), Kind::Text, DEFAULT_INDEX),
    spec("rtmp_stat", hctx::LOC, Args::AtLeast(1), Kind::SomeOf(STAT_SECTIONS), ""),
    spec("rtmp_stat_stylesheet", hctx::LOC, ONE, Kind::Text, ""),
    spec("rtmp_stat_format", hctx::LOC, ONE, Kind::OneOf(&["xml", "json"]), "xml"),
    spec("flv_live", hctx::LOC, ONE, Kind::Flag, "off"),
    spec("recordings", hctx::LOC, ONE, Kind::Flag, "off"),
    spec("api", hctx::LOC, ONE, Kind::Flag, "off"),
    spec("metrics", hctx::LOC, ONE, Kind::Flag, "off"),
    spec("dashboard", hctx::LOC, ONE, Kind::Flag, "off"),
    spec("api_token", hctx::ANY, ONE, Kind::Text, ""),
    spec("rtmp_control", hctx::ANY, Args::AtLeast(1), Kind::SomeOf(CONTROL_SECTIONS), ""),
    spec("allow", hctx::ANY, ONE, Kind::Text, ""),
    spec("deny", hctx::ANY, ONE, Kind::Text, ""),
    spec("client_header_timeout", hctx::MAIN | hctx::SRV, ONE, Kind::Time, "10s"),
    spec("keepalive_timeout", hctx::ANY, Args::Between(1, 2), Kind::Time, "75s"),
    spec("send_timeout", hctx::MAIN | hctx::SRV, ONE, Kind::Time, "60s"),
    spec("max_connections", hctx::MAIN | hctx::SRV, ONE, Kind::Number, "1024"),
];

/// `rtmp_stat` values.
const STAT_SECTIONS: &[&str] = &["all", "global", "live", "clients"];

/// `rtmp_control` values.
const CONTROL_SECTIONS: &[&str] = &["all", "record", "drop", "redirect"];

/// Where the built-in server answers the control API.
const BUILTIN_CONTROL_URI: &str = "/control/";

/// Who may use the built-in server's control API: loopback clients only (IPv4-mapped
/// loopback peers match the IPv4 rule, see [`AddrMatch::contains`]).
const BUILTIN_CONTROL_RULES: &[&str] = &["allow 127.0.0.0/8", "allow ::1", "deny all"];

/// Directives of stock nginx.conf files that mean nothing to sluice: accepted anywhere in
/// `http { }` with any arguments, and logged as ignored. Names starting with `gzip` or `ssl_`
/// are ignored too (see [`is_ignored`]).
const IGNORED: &[&str] = &[
    "sendfile",
    "tcp_nopush",
    "tcp_nodelay",
    "keepalive_requests",
    "server_name",
    "server_name_in_redirect",
    "server_names_hash_bucket_size",
    "server_names_hash_max_size",
    "access_log",
    "error_log",
    "charset",
    "gzip",
    "error_page",
    "client_max_body_size",
    "expires",
    "autoindex",
    "log_format",
    "types_hash_max_size",
    "types_hash_bucket_size",
    "server_tokens",
    "try_files",
    "if",
];

/// Prefixes of ignored directive families.
const IGNORED_PREFIXES: &[&str] = &["gzip_", "ssl_"];

/// `listen` flags nginx's http module accepts; sluice acts on `proxy_protocol` and ignores the
/// others (`ssl` and `quic` make it skip the address, see [`UNSERVED_FLAGS`]).
const LISTEN_FLAGS: &[&str] = &[
    "default_server",
    "default",
    "ssl",
    "http2",
    "quic",
    "proxy_protocol",
    "setfib",
    "fastopen",
    "backlog",
    "rcvbuf",
    "sndbuf",
    "accept_filter",
    "deferred",
    "bind",
    "ipv6only",
    "reuseport",
    "so_keepalive",
];

/// `listen` flags that ask for something sluice cannot speak on that address (TLS, QUIC).
const UNSERVED_FLAGS: &[&str] = &["ssl", "quic"];

/// What sluice serves over HTTP: the `http { }` block's servers, or the built-in server, plus
/// the implicit hls locations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConf {
    /// `http_listen` (rtmp level; `--http-listen` overrides it): where the built-in server
    /// listens when the file has no `http { }` block. `None` is `off`.
    pub builtin_listen: Option<SocketAddr>,
    /// The built-in server's rtmp-level switches (`http_stats_public`, `dashboard`,
    /// `api_token`).
    pub builtin: BuiltinHttp,
    /// The servers of the `http { }` block, in file order; `None` when the file has no block.
    pub block: Option<Vec<HttpServerConf>>,
    /// One location per distinct `hls_path` directory of applications with `hls on`.
    pub hls: Vec<Location>,
}

impl HttpConf {
    /// The servers to run: the block's servers, each with the implicit hls locations it does
    /// not shadow, or (without a block) the built-in server at `builtin_listen`.
    pub fn servers(&self) -> Vec<HttpServerConf> {
        match &self.block {
            Some(servers) => servers.iter().map(|s| self.with_hls(s.clone())).collect(),
            None => self
                .builtin_listen
                .map(|addr| {
                    let mut server = self.with_hls(HttpServerConf::builtin(addr));
                    let mut control = HttpLayer::default().build(BUILTIN_CONTROL_URI, false);
                    control.rtmp_control = RtmpControl::ALL;
                    control.access = builtin_control_rules();
                    server.control = Some(control);
                    self.builtin.add_locations(&mut server);
                    server
                })
                .into_iter()
                .collect(),
        }
    }

    /// Adds the implicit hls locations the server has no location of its own for; they take
    /// the server's `allow`/`deny` rules, as a location written there would.
    fn with_hls(&self, mut server: HttpServerConf) -> HttpServerConf {
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        for loc in &self.hls {
            if !server.locations.iter().any(|l| !l.exact && same(&l.uri, &loc.uri)) {
                let mut loc = loc.clone();
                loc.access = server.fallback.access.clone();
                server.locations.push(loc);
            }
        }
        server
    }
}

/// The built-in server's switches, written at the rtmp level (it has no block of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinHttp {
    /// `http_stats_public on`: `/`, `/stat`, the API's reads and `/metrics` answer every
    /// address, not only loopback ones. The API's actions and `/control/` stay loopback-only.
    pub public: bool,
    /// `dashboard off` turns the page at `/` off.
    pub dashboard: bool,
    /// `recordings off` turns the recordings at `/vod/` off.
    pub recordings: bool,
    /// `api_token`: the bearer token the API asks for.
    pub api_token: Option<String>,
}

impl Default for BuiltinHttp {
    fn default() -> Self {
        BuiltinHttp { public: false, dashboard: true, recordings: true, api_token: None }
    }
}

impl BuiltinHttp {
    /// The built-in server's own locations: the dashboard at `/`, `/stat`, `/api/`,
    /// `/metrics`, recordings at `/vod/` (public, as HLS), and HTTP-FLV (`/APP/NAME.flv`)
    /// everywhere else. Loopback-only unless
    /// `http_stats_public on`; API actions loopback-only always.
    fn add_locations(&self, server: &mut HttpServerConf) {
        let reads = if self.public { Vec::new() } else { builtin_control_rules() };
        let mut add = |uri: &str, exact: bool, handler: Handler| {
            // An `hls_path` directory of that name keeps its URL: the page is not served.
            if server.locations.iter().any(|l| l.hls && l.uri == uri) {
                tracing::warn!(uri, "an hls_path directory is served at {uri}: the built-in page there is off");
                return;
            }
            let mut loc = HttpLayer::default().build(uri, exact);
            loc.handler = Some(handler);
            loc.access = reads.clone();
            loc.api_token = self.api_token.clone();
            server.locations.push(loc);
        };
        if self.dashboard {
            add("/", true, Handler::Dashboard);
            add(BUILTIN_DASHBOARD_URI, false, Handler::Dashboard);
        }
        // Exact: `/station/cam.flv` is a stream of application "station".
        add("/stat", true, Handler::Stat(StatConf::default()));
        add("/api/", false, Handler::Api { action_access: builtin_control_rules() });
        add("/metrics", true, Handler::Metrics);
        // Recordings are content, as HLS and HTTP-FLV are: no loopback rule (the
        // applications' play rules apply, see `crate::recordings`).
        let hls_there = server.locations.iter().any(|l| l.hls && l.uri == BUILTIN_RECORDINGS_URI);
        if self.recordings && hls_there {
            tracing::warn!("an hls_path directory is served at {BUILTIN_RECORDINGS_URI}: recordings are not");
        } else if self.recordings {
            let mut loc = HttpLayer::default().build(BUILTIN_RECORDINGS_URI, false);
            loc.handler = Some(Handler::Recordings { flv_fallback: true });
            loc.access = server.fallback.access.clone();
            server.locations.push(loc);
        }
        if let Some(control) = &mut server.control {
            control.api_token = self.api_token.clone();
        }
        server.fallback.handler = Some(Handler::FlvLive);
    }
}

/// Where the built-in server serves recordings as HLS VOD (`/vod/APP/FILE/index.m3u8`).
pub const BUILTIN_RECORDINGS_URI: &str = "/vod/";

/// Where the built-in server serves the dashboard's files (the page at `/` loads them
/// relative to itself: `dashboard/app.js`).
pub const BUILTIN_DASHBOARD_URI: &str = "/dashboard/";

/// What answers a location's requests besides files: sluice's own pages and APIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// `rtmp_stat`: nginx-rtmp's statistics page.
    Stat(StatConf),
    /// `api on`: the JSON API (`.../v1/...` under the location).
    Api {
        /// Rules for the API's actions (changing requests) on top of the location's: the
        /// built-in server's are loopback-only; `http { }` locations have none (their
        /// `allow`/`deny` cover reads and actions alike).
        action_access: Vec<HttpAccessRule>,
    },
    /// `metrics on`: Prometheus metrics.
    Metrics,
    /// `dashboard on`: the web dashboard.
    Dashboard,
    /// `flv_live on`: HTTP-FLV and WebSocket-FLV players (`?app=A&stream=S` as the
    /// winshining fork, or `/APP/NAME.flv` under the location).
    FlvLive,
    /// `recordings on`: recordings as HLS VOD (`APP/FILE/index.m3u8` under the location,
    /// [`crate::recordings`]).
    Recordings {
        /// The built-in `/vod/`: paths ending in `.flv` are HTTP-FLV (an application named
        /// `vod` keeps `/vod/NAME.flv`).
        flv_fallback: bool,
    },
}

/// `rtmp_stat`, `rtmp_stat_stylesheet`, `rtmp_stat_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatConf {
    /// `global`: the server-wide header (uptime, bytes, bandwidth).
    pub global: bool,
    /// `live`: live streams and their publishers.
    pub live: bool,
    /// `clients`: the clients of each stream.
    pub clients: bool,
    /// Only `all` lists `<play>` (VOD) sections.
    pub play: bool,
    /// `rtmp_stat_stylesheet`: the `<?xml-stylesheet?>` the page names.
    pub stylesheet: Option<String>,
    /// `rtmp_stat_format json` (the winshining fork's JSON).
    pub json: bool,
}

impl Default for StatConf {
    /// `rtmp_stat all`, XML, no stylesheet.
    fn default() -> Self {
        StatConf { global: true, live: true, clients: true, play: true, stylesheet: None, json: false }
    }
}

/// One HTTP server: where it listens and what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpServerConf {
    /// The addresses this server answers on. An address several servers list belongs to the
    /// one marked `default_server`, else the first (sluice does not read `server_name`).
    pub listen: Vec<SocketAddr>,
    /// Those of `listen` written with `proxy_protocol` (by any server listing the address):
    /// each connection starts with a PROXY protocol header naming the client, read within
    /// `client_header_timeout` ([`crate::proxy_protocol`]).
    pub proxy_listen: Vec<SocketAddr>,
    /// Its locations (nested ones flattened, each with its inherited settings).
    pub locations: Vec<Location>,
    /// The server-level settings, used for URIs no location matches.
    pub fallback: Location,
    /// The built-in server's `/control/` location (`rtmp_control all`, loopback only), matched
    /// like the others; `None` in `http { }` servers, which say where the control API is
    /// themselves.
    pub control: Option<Location>,
    /// Timeouts and the connection limit.
    pub limits: HttpLimits,
}

/// How long an HTTP client may take, and how many may be connected at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// `client_header_timeout`: a request head must arrive within this time of the connection's
    /// start or of the end of the previous response.
    pub header_timeout: Duration,
    /// `keepalive_timeout`: `None` is `0` (keep-alive off).
    pub keepalive_timeout: Option<Duration>,
    /// `send_timeout`: the longest a response may wait for the client to read.
    pub send_timeout: Duration,
    /// `max_connections`: connections open at once; more are closed when accepted.
    pub max_connections: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            keepalive_timeout: Some(DEFAULT_KEEPALIVE_TIMEOUT),
            send_timeout: DEFAULT_SEND_TIMEOUT,
            max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
        }
    }
}

impl HttpLimits {
    /// How long hyper waits for a request head: the header timeout, shortened by a shorter
    /// `keepalive_timeout` (hyper counts the wait for the next request in the head's time).
    pub fn head_timeout(&self) -> Duration {
        self.keepalive_timeout.map_or(self.header_timeout, |k| k.min(self.header_timeout))
    }
}

/// One `allow`/`deny` line of an http level (nginx's `ngx_http_access_module`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAccessRule {
    /// `allow` (true) or `deny`.
    pub allow: bool,
    /// The addresses covered.
    pub addr: AddrMatch,
    /// The line as written (`deny all`), for logs.
    pub text: String,
}

impl Default for HttpServerConf {
    /// A server with no addresses and no locations: nothing but `/healthz` and live content.
    fn default() -> Self {
        HttpServerConf {
            listen: Vec::new(),
            proxy_listen: Vec::new(),
            locations: Vec::new(),
            fallback: HttpLayer::default().build("", false),
            control: None,
            limits: HttpLimits::default(),
        }
    }
}

impl HttpServerConf {
    /// The built-in server: no locations of its own, nothing served outside them.
    pub fn builtin(addr: SocketAddr) -> Self {
        HttpServerConf { listen: vec![addr], ..Default::default() }
    }

    /// The location serving `path` (percent-decoded, normalised), as nginx chooses it: an
    /// exact (`=`) match, else the longest matching prefix, else the server's own settings.
    pub fn location(&self, path: &str) -> &Location {
        if let Some(exact) = self.locations.iter().find(|l| l.exact && l.uri == path) {
            return exact;
        }
        self.locations
            .iter()
            .chain(&self.control)
            .filter(|l| !l.exact && path.starts_with(l.uri.as_str()))
            .max_by_key(|l| l.uri.len())
            .unwrap_or(&self.fallback)
    }
}

/// Where a location's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Files {
    /// `root DIR`: the file is DIR + the whole URI.
    Root(PathBuf),
    /// `alias DIR` set in the location `prefix`: the file is DIR + the URI after `prefix`.
    Alias {
        /// The directory.
        dir: PathBuf,
        /// The URI of the location that set it (nested locations inherit both).
        prefix: String,
    },
}

/// One `add_header NAME VALUE [always];`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddHeader {
    /// The header name.
    pub name: String,
    /// Its value (an empty value adds nothing, as in nginx).
    pub value: String,
    /// `always`: on every response, not only 2xx/3xx ones.
    pub always: bool,
}

/// Which sections of nginx-rtmp's control API (`rtmp_control`) a location answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtmpControl {
    /// `record`: start and stop recorders.
    pub record: bool,
    /// `drop`: disconnect publishers and players.
    pub drop: bool,
    /// `redirect`: move clients to another stream (not implemented yet: `501`).
    pub redirect: bool,
}

impl RtmpControl {
    /// `rtmp_control all`.
    pub const ALL: RtmpControl = RtmpControl { record: true, drop: true, redirect: true };

    /// Whether any section is on.
    pub fn any(&self) -> bool {
        self.record || self.drop || self.redirect
    }
}

/// A `location` with every setting resolved (inherited ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The URI prefix, or the exact URI when `exact`.
    pub uri: String,
    /// `location = URI`: matches that URI only.
    pub exact: bool,
    /// `root` or `alias` (None: nothing to serve, every file is 404).
    pub files: Option<Files>,
    /// `types { }` in effect: lower-case extension → MIME type. `None`: the built-in map only.
    pub types: Option<BTreeMap<String, String>>,
    /// `default_type`: the type of extensions neither map knows.
    pub default_type: String,
    /// `add_header` lines in effect.
    pub headers: Vec<AddHeader>,
    /// `index` file names, tried in order for URIs ending in `/`.
    pub index: Vec<String>,
    /// An implicit hls location: sluice sets `Cache-Control` per file type (playlists and keys
    /// `no-cache`, segments cached for a year).
    pub hls: bool,
    /// An implicit dash location: sluice sets `Cache-Control` per file type
    /// (`crate::dash::cache`).
    pub dash: bool,
    /// `rtmp_control`: the control API sections answered here (none by default).
    pub rtmp_control: RtmpControl,
    /// `allow`/`deny` rules in effect, in order (none: everyone is allowed).
    pub access: Vec<HttpAccessRule>,
    /// What answers here besides files (`rtmp_stat`, `api`, `metrics`, `dashboard`,
    /// `flv_live`); `None`: files and live HLS only.
    pub handler: Option<Handler>,
    /// `api_token`: requests to the API must carry `Authorization: Bearer TOKEN`.
    pub api_token: Option<String>,
    /// No `Access-Control-Allow-Origin: *` on answers (`hls_cors off` in an implicit hls
    /// location).
    pub no_cors: bool,
}

impl Location {
    /// The rule that refuses `ip`, when the first rule matching it is a `deny` (nginx's
    /// access module: no matching rule allows).
    pub fn denied_by(&self, ip: IpAddr) -> Option<&HttpAccessRule> {
        self.access.iter().find(|r| r.addr.contains(ip)).filter(|r| !r.allow)
    }
}

/// Settings written at one level of the http block; `None` means "not set here".
#[derive(Debug, Clone, Default)]
struct HttpLayer {
    files: Option<Files>,
    types: Option<BTreeMap<String, String>>,
    default_type: Option<String>,
    headers: Option<Vec<AddHeader>>,
    index: Option<Vec<String>>,
    rtmp_control: Option<RtmpControl>,
    access: Option<Vec<HttpAccessRule>>,
    stat: Option<StatConf>,
    stat_stylesheet: Option<String>,
    stat_json: Option<bool>,
    flv_live: Option<bool>,
    recordings: Option<bool>,
    api: Option<bool>,
    metrics: Option<bool>,
    dashboard: Option<bool>,
    api_token: Option<String>,
    header_timeout: Option<Duration>,
    keepalive_timeout: Option<Option<Duration>>,
    send_timeout: Option<Duration>,
    max_connections: Option<u32>,
}

impl HttpLayer {
    /// This level's settings with unset ones taken from `outer` (nginx's merge).
    fn inherit(&self, outer: &HttpLayer) -> HttpLayer {
        HttpLayer {
            files: self.files.clone().or_else(|| outer.files.clone()),
            types: self.types.clone().or_else(|| outer.types.clone()),
            default_type: self.default_type.clone().or_else(|| outer.default_type.clone()),
            headers: self.headers.clone().or_else(|| outer.headers.clone()),
            index: self.index.clone().or_else(|| outer.index.clone()),
            rtmp_control: self.rtmp_control.or(outer.rtmp_control),
            access: self.access.clone().or_else(|| outer.access.clone()),
            stat: self.stat.clone().or_else(|| outer.stat.clone()),
            stat_stylesheet: self.stat_stylesheet.clone().or_else(|| outer.stat_stylesheet.clone()),
            stat_json: self.stat_json.or(outer.stat_json),
            flv_live: self.flv_live.or(outer.flv_live),
            recordings: self.recordings.or(outer.recordings),
            api: self.api.or(outer.api),
            metrics: self.metrics.or(outer.metrics),
            dashboard: self.dashboard.or(outer.dashboard),
            api_token: self.api_token.clone().or_else(|| outer.api_token.clone()),
            header_timeout: self.header_timeout.or(outer.header_timeout),
            keepalive_timeout: self.keepalive_timeout.or(outer.keepalive_timeout),
            send_timeout: self.send_timeout.or(outer.send_timeout),
            max_connections: self.max_connections.or(outer.max_connections),
        }
    }

    /// The server-level limits, with defaults.
    fn limits(&self) -> HttpLimits {
        let d = HttpLimits::default();
        HttpLimits {
            header_timeout: self.header_timeout.unwrap_or(d.header_timeout),
            keepalive_timeout: self.keepalive_timeout.unwrap_or(d.keepalive_timeout),
            send_timeout: self.send_timeout.unwrap_or(d.send_timeout),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
        }
    }

    /// Applies the defaults.
    fn build(&self, uri: &str, exact: bool) -> Location {
        Location {
            uri: uri.to_owned(),
            exact,
            files: self.files.clone(),
            types: self.types.clone(),
            default_type: self.default_type.clone().unwrap_or_else(|| DEFAULT_TYPE.to_owned()),
            headers: self.headers.clone().unwrap_or_default(),
            index: self.index.clone().unwrap_or_else(|| vec![DEFAULT_INDEX.to_owned()]),
            hls: false,
            dash: false,
            rtmp_control: self.rtmp_control.unwrap_or_default(),
            access: self.access.clone().unwrap_or_default(),
            handler: self.handler(),
            api_token: self.api_token.clone(),
            no_cors: false,
        }
    }

    /// The handler the location's switches name (one at most: [`HttpLayer::check_handlers`]).
    fn handler(&self) -> Option<Handler> {
        if let Some(stat) = &self.stat {
            let stylesheet = self.stat_stylesheet.clone();
            return Some(Handler::Stat(StatConf { stylesheet, json: self.stat_json.unwrap_or(false), ..stat.clone() }));
        }
        let on = |f: Option<bool>| f == Some(true);
        if on(self.api) {
            Some(Handler::Api { action_access: Vec::new() })
        } else if on(self.metrics) {
            Some(Handler::Metrics)
        } else if on(self.dashboard) {
            Some(Handler::Dashboard)
        } else if on(self.flv_live) {
            Some(Handler::FlvLive)
        } else if on(self.recordings) {
            Some(Handler::Recordings { flv_fallback: false })
        } else {
            None
        }
    }

    /// nginx gives a location one content handler: two of `rtmp_stat`, `api`, `metrics`,
    /// `dashboard`, `flv_live` and `recordings` in one location is an error at the second.
    fn check_handlers(&self, d: &Directive) -> Result<(), Fail> {
        let on = |f: Option<bool>| usize::from(f == Some(true));
        let count = usize::from(self.stat.is_some())
            + on(self.api)
            + on(self.metrics)
            + on(self.dashboard)
            + on(self.flv_live)
            + on(self.recordings);
        if count > 1 {
            let msg = "only one of \"rtmp_stat\", \"api\", \"metrics\", \"dashboard\", \"flv_live\" and \"recordings\" per location";
            return Err(Fail::new(d.span, msg));
        }
        Ok(())
    }

    /// Applies `root`, `alias`, `types`, `default_type`, `add_header` or `index`; `location`
    /// is the enclosing location's URI (for `alias`).
    fn set(&mut self, d: &Directive, location: Option<&str>) -> Result<(), Fail> {
        match d.name.as_str() {
            "root" => {
                self.set_files(d, Files::Root(PathBuf::from(non_empty(d)?)))?;
            }
            "alias" => {
                let prefix = location.unwrap_or_default().to_owned();
                self.set_files(d, Files::Alias { dir: PathBuf::from(non_empty(d)?), prefix })?;
            }
            "types" => read_types(d, self.types.get_or_insert_with(BTreeMap::new))?,
            "default_type" => put(&mut self.default_type, non_empty(d)?, d)?,
            "add_header" => self.headers.get_or_insert_with(Vec::new).push(add_header(d)?),
            "index" => self.index.get_or_insert_with(Vec::new).extend(index(d)?),
            "rtmp_control" => put(&mut self.rtmp_control, rtmp_control(d)?, d)?,
            "rtmp_stat" => put(&mut self.stat, rtmp_stat(d)?, d)?,
            "rtmp_stat_stylesheet" => put(&mut self.stat_stylesheet, non_empty(d)?, d)?,
            "rtmp_stat_format" => put(&mut self.stat_json, first(d)?.value == "json", d)?,
            "flv_live" => put(&mut self.flv_live, flag(d)?, d)?,
            "recordings" => put(&mut self.recordings, flag(d)?, d)?,
            "api" => put(&mut self.api, flag(d)?, d)?,
            "metrics" => put(&mut self.metrics, flag(d)?, d)?,
            "dashboard" => put(&mut self.dashboard, flag(d)?, d)?,
            "api_token" => put(&mut self.api_token, non_empty(d)?, d)?,
            "allow" | "deny" => self.access.get_or_insert_with(Vec::new).push(access_rule(d)?),
            "client_header_timeout" => put(&mut self.header_timeout, positive_time(d)?, d)?,
            "keepalive_timeout" => {
                let t = time(d)?;
                put(&mut self.keepalive_timeout, (!t.is_zero()).then_some(t), d)?;
            }
            "send_timeout" => put(&mut self.send_timeout, positive_time(d)?, d)?,
            "max_connections" => put(&mut self.max_connections, number_in(d, 1, u64::from(u32::MAX))?, d)?,
            other => return Err(Fail::new(d.span, format!("directive \"{other}\" is not handled by http"))),
        }
        self.check_handlers(d)
    }

    /// `root` and `alias` share one slot, as in nginx.
    fn set_files(&mut self, d: &Directive, files: Files) -> Result<(), Fail> {
        match &self.files {
            None => {
                self.files = Some(files);
                Ok(())
            }
            Some(previous) => {
                let earlier = match previous {
                    Files::Root(_) => "root",
                    Files::Alias { .. } => "alias",
                };
                let msg = if earlier == d.name {
                    format!("\"{}\" directive is duplicate", d.name)
                } else {
                    format!("\"{}\" directive is duplicate, \"{earlier}\" directive was specified earlier", d.name)
                };
                Err(Fail::new(d.span, msg))
            }
        }
    }
}

/// A `server { }` of the http block as written.
struct RawServer {
    layer: HttpLayer,
    /// Address, `default_server`, where.
    listen: Vec<(SocketAddr, bool, Span)>,
    /// The `listen ... proxy_protocol` addresses.
    proxy: Vec<SocketAddr>,
    locations: Vec<RawLocation>,
    span: Span,
}

/// A `location { }` as written.
struct RawLocation {
    uri: String,
    exact: bool,
    layer: HttpLayer,
    nested: Vec<RawLocation>,
}

/// Reads `http_listen ADDR|off;` (already checked for context and shape).
pub(crate) fn http_listen(d: &Directive) -> Result<Option<SocketAddr>, Fail> {
    let arg = first(d)?;
    parse_http_listen(&arg.value)
        .ok_or_else(|| invalid(d, arg, "\"off\" or an address like 8080, 127.0.0.1:8080 or [::1]:8080"))
}

/// `off` → `Some(None)`; an address (port alone: every interface) → `Some(Some(addr))`;
/// anything else → `None`. For `http_listen` and `--http-listen`.
pub fn parse_http_listen(s: &str) -> Option<Option<SocketAddr>> {
    if s == "off" {
        return Some(None);
    }
    parse_addr(s, DEFAULT_HTTP_PORT).map(Some)
}

/// Reads an `http { }` block into its servers.
pub(crate) fn read_http(d: &Directive) -> Result<Vec<HttpServerConf>, Fail> {
    if !d.args.is_empty() {
        return Err(Fail::new(d.span, "invalid number of arguments in \"http\" directive"));
    }
    let children = d.block.as_deref().ok_or_else(|| Fail::new(d.span, "directive \"http\" has no opening \"{\""))?;
    let mut main = HttpLayer::default();
    let mut servers = Vec::new();
    for c in children {
        if !accept(c, hctx::MAIN)? {
            continue;
        }
        match c.name.as_str() {
            "server" => servers.push(read_server(c)?),
            _ => main.set(c, None)?,
        }
    }
    let owners = assign_listens(&servers)?;
    // A socket option: it holds for the address, whichever server wrote it.
    let proxy: Vec<SocketAddr> = servers.iter().flat_map(|s| s.proxy.iter().copied()).collect();
    Ok(servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let merged = s.layer.inherit(&main);
            let mut locations = Vec::new();
            for loc in &s.locations {
                flatten(loc, &merged, &mut locations);
            }
            let listen: Vec<SocketAddr> =
                owners.iter().filter(|(_, owner)| *owner == i).map(|(addr, _)| *addr).collect();
            HttpServerConf {
                proxy_listen: listen.iter().copied().filter(|a| proxy.contains(a)).collect(),
                listen,
                locations,
                fallback: merged.build("", false),
                control: None,
                limits: merged.limits(),
            }
        })
        .collect())
}

/// Checks a directive inside `http { }` at `context`: `Ok(true)` when the caller handles it,
/// `Ok(false)` when it is accepted and ignored (already logged), an error when unknown,
/// misplaced or of the wrong shape.
fn accept(d: &Directive, context: u8) -> Result<bool, Fail> {
    if is_ignored(&d.name) {
        warn_ignored(d);
        return Ok(false);
    }
    let Some(spec) = DIRECTIVES.iter().find(|s| s.name == d.name) else {
        return Err(unknown(d));
    };
    if spec.contexts & context == 0 {
        return Err(Fail::new(d.span, format!("\"{}\" directive is not allowed here", d.name)));
    }
    check_shape(spec, d)?;
    if spec.kind == Kind::Raw {
        tracing::warn!(directive = %d.name, line = d.span.line, "accepted but not implemented yet; ignored");
        return Ok(false);
    }
    Ok(true)
}

fn is_ignored(name: &str) -> bool {
    IGNORED.contains(&name) || IGNORED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// One warning line per ignored directive, saying why where it matters.
fn warn_ignored(d: &Directive) {
    let line = d.span.line;
    let name = d.name.as_str();
    if name.starts_with("ssl_") {
        tracing::warn!(line, directive = name, "ignored: TLS is not supported yet");
    } else if name == "if" {
        tracing::warn!(line, "\"if\" block ignored (sluice answers CORS preflight requests itself)");
    } else {
        tracing::warn!(line, directive = name, "ignored: it means nothing to sluice");
    }
}

/// `unknown directive "x"`, with the closest http directive when it looks like a typo.
fn unknown(d: &Directive) -> Fail {
    let names = DIRECTIVES.iter().map(|s| s.name).chain(IGNORED.iter().copied());
    let best = names.map(|name| (edit_distance(&d.name, name), name)).min();
    let limit = if d.name.chars().count() <= 4 { 1 } else { 2 };
    let hint = match best {
        Some((dist, name)) if dist <= limit => format!(" (did you mean \"{name}\"?)"),
        _ => String::new(),
    };
    Fail::new(d.name_span, format!("unknown directive \"{}\"{hint}", d.name))
}

fn read_server(d: &Directive) -> Result<RawServer, Fail> {
    let mut s = RawServer {
        layer: HttpLayer::default(),
        listen: Vec::new(),
        proxy: Vec::new(),
        locations: Vec::new(),
        span: d.span,
    };
    for c in d.block.as_deref().unwrap_or_default() {
        if !accept(c, hctx::SRV)? {
            continue;
        }
        match c.name.as_str() {
            "listen" => {
                if let Some((addr, default, proxy)) = listen(c)? {
                    if s.listen.iter().any(|(a, _, _)| *a == addr) {
                        return Err(Fail::new(c.span, format!("duplicate \"{addr}\" address and port pair")));
                    }
                    s.listen.push((addr, default, c.span));
                    if proxy {
                        s.proxy.push(addr);
                    }
                }
            }
            "location" => {
                if let Some(loc) = read_location(c, None)? {
                    push_location(&mut s.locations, loc, c.span)?;
                }
            }
            _ => s.layer.set(c, None)?,
        }
    }
    if s.listen.is_empty() && !d.block.as_deref().unwrap_or_default().iter().any(|c| c.name == "listen") {
        tracing::debug!(line = d.span.line, "http server without listen: port 80, as in nginx");
        s.listen.push((SocketAddr::from(([0, 0, 0, 0], NGINX_DEFAULT_PORT)), false, d.span));
    }
    Ok(s)
}

/// `listen ADDR [flags];` in an http server: the address, whether it is `default_server` and
/// whether it has `proxy_protocol`, or `None` for an address sluice cannot serve (TLS, QUIC),
/// with a warning.
fn listen(d: &Directive) -> Result<Option<(SocketAddr, bool, bool)>, Fail> {
    let arg = first(d)?;
    if arg.value.starts_with("unix:") {
        return Err(Fail::new(arg.span, "unix sockets are not supported in \"listen\""));
    }
    let addr = parse_addr(&arg.value, NGINX_DEFAULT_PORT)
        .ok_or_else(|| invalid(d, arg, "a port or address like 8080, 127.0.0.1:8080 or [::1]:8080"))?;
    let mut default = false;
    for opt in &d.args[1..] {
        let key = opt.value.split('=').next().unwrap_or_default();
        if !LISTEN_FLAGS.contains(&key) {
            let msg = format!("invalid parameter \"{}\" in \"listen\" directive", opt.value);
            return Err(Fail::new(opt.span, msg));
        }
        if UNSERVED_FLAGS.contains(&key) {
            tracing::warn!(line = d.span.line, %addr, "listen ... {key}: TLS and QUIC are not supported yet; address ignored");
            return Ok(None);
        }
        default |= key == "default_server" || key == "default";
    }
    let proxy = d.args[1..].iter().any(|opt| opt.value == "proxy_protocol");
    Ok(Some((addr, default, proxy)))
}

/// Reads `location [MODIFIER] URI { }`; `parent` is the enclosing location (URI, exact).
/// `None` for a named location (`@name`), which sluice ignores with `try_files` and
/// `error_page`.
fn read_location(d: &Directive, parent: Option<(&str, bool)>) -> Result<Option<RawLocation>, Fail> {
    let Some((uri, exact)) = location_uri(d)? else {
        return Ok(None);
    };
    if let Some((outer, outer_exact)) = parent {
        if outer_exact {
            let msg = format!("location \"{uri}\" cannot be inside the exact location \"{outer}\"");
            return Err(Fail::new(d.span, msg));
        }
        if !uri.starts_with(outer) {
            return Err(Fail::new(d.span, format!("location \"{uri}\" is outside location \"{outer}\"")));
        }
    }
    let mut loc = RawLocation { uri, exact, layer: HttpLayer::default(), nested: Vec::new() };
    for c in d.block.as_deref().unwrap_or_default() {
        if !accept(c, hctx::LOC)? {
            continue;
        }
        match c.name.as_str() {
            "location" => {
                if let Some(inner) = read_location(c, Some((&loc.uri, loc.exact)))? {
                    push_location(&mut loc.nested, inner, c.span)?;
                }
            }
            "keepalive_timeout" => {
                time(c)?;
                tracing::warn!(
                    line = c.span.line,
                    "\"keepalive_timeout\" in a location ignored: sluice reads it in http and server"
                );
            }
            _ => loc.layer.set(c, Some(&loc.uri))?,
        }
    }
    Ok(Some(loc))
}

/// The URI and exactness of a location; `None` for a named one. Regex locations are errors.
fn location_uri(d: &Directive) -> Result<Option<(String, bool)>, Fail> {
    let regex = |arg: &Arg| {
        let words: Vec<&str> = d.args.iter().map(|a| a.value.as_str()).collect();
        let msg = format!(
            "regex locations are not supported: \"location {}\"; use a prefix location such as \"location /hls\"",
            words.join(" ")
        );
        Fail::new(arg.span, msg)
    };
    let (modifier, uri) = match d.args.as_slice() {
        [one] => match one.value.as_str() {
            v if v.starts_with('~') => return Err(regex(one)),
            v if v.starts_with('@') => {
                tracing::warn!(line = d.span.line, "named location \"{v}\" ignored");
                return Ok(None);
            }
            v if v.len() > 2 && v.starts_with("^~") => ("^~", &v[2..]),
            v if v.len() > 1 && v.starts_with('=') => ("=", &v[1..]),
            "=" | "^~" => return Err(Fail::new(d.span, "invalid number of arguments in \"location\" directive")),
            v => ("", v),
        },
        [m, uri] => match m.value.as_str() {
            "~" | "~*" => return Err(regex(m)),
            "=" | "^~" => (m.value.as_str(), uri.value.as_str()),
            other => return Err(Fail::new(m.span, format!("invalid location modifier \"{other}\""))),
        },
        _ => return Err(Fail::new(d.span, "invalid number of arguments in \"location\" directive")),
    };
    Ok(Some((uri.to_owned(), modifier == "=")))
}

/// Adds a location, refusing a second one with the same URI and kind (as nginx does).
fn push_location(list: &mut Vec<RawLocation>, loc: RawLocation, span: Span) -> Result<(), Fail> {
    if list.iter().any(|l| l.uri == loc.uri && l.exact == loc.exact) {
        return Err(Fail::new(span, format!("duplicate location \"{}\"", loc.uri)));
    }
    list.push(loc);
    Ok(())
}

/// Resolves a location and its nested ones into `out`, inner ones inheriting from outer.
fn flatten(loc: &RawLocation, outer: &HttpLayer, out: &mut Vec<Location>) {
    let merged = loc.layer.inherit(outer);
    out.push(merged.build(&loc.uri, loc.exact));
    for inner in &loc.nested {
        flatten(inner, &merged, out);
    }
}

/// Gives every listen address to one server: the one marked `default_server`, else the first
/// that lists it. sluice does not read `server_name`, so the others never see requests there.
fn assign_listens(servers: &[RawServer]) -> Result<Vec<(SocketAddr, usize)>, Fail> {
    let mut owners: Vec<(SocketAddr, usize, bool)> = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        for &(addr, default, span) in &s.listen {
            match owners.iter_mut().find(|(a, _, _)| *a == addr) {
                None => owners.push((addr, i, default)),
                Some((_, _, true)) if default => {
                    return Err(Fail::new(span, format!("a duplicate default server for {addr}")));
                }
                Some(owner) => {
                    if default {
                        *owner = (addr, i, true);
                    }
                }
            }
        }
    }
    for (i, s) in servers.iter().enumerate() {
        for (addr, _, _) in s.listen.iter().filter(|(a, _, _)| owners.iter().any(|o| o.0 == *a && o.1 != i)) {
            tracing::warn!(
                line = s.span.line,
                %addr,
                "another server answers on this address (sluice does not read server_name); this server gets none of its requests"
            );
        }
    }
    Ok(owners.into_iter().map(|(addr, i, _)| (addr, i)).collect())
}

/// `types { MIME EXT...; }`: each line maps its extensions to its MIME type.
fn read_types(d: &Directive, map: &mut BTreeMap<String, String>) -> Result<(), Fail> {
    for line in d.block.as_deref().unwrap_or_default() {
        if line.block.is_some() || line.args.is_empty() {
            let msg = format!("invalid \"types\" line \"{}\", it must be like \"video/mp2t ts;\"", line.name);
            return Err(Fail::new(line.span, msg));
        }
        for ext in &line.args {
            let ext = ext.value.to_ascii_lowercase();
            if let Some(previous) = map.insert(ext.clone(), line.name.clone()) {
                if previous != line.name {
                    tracing::warn!(
                        line = line.span.line,
                        "duplicate extension \"{ext}\": \"{}\" replaces \"{previous}\"",
                        line.name
                    );
                }
            }
        }
    }
    Ok(())
}

/// `add_header NAME VALUE [always];`, with the name and value checked now rather than at the
/// first response.
fn add_header(d: &Directive) -> Result<AddHeader, Fail> {
    let (name, value) = (&d.args[0], &d.args[1]);
    if !is_token(&name.value) {
        return Err(invalid(d, name, "a header name (letters, digits and - _ . ! # $ % & ' * + ^ ` | ~)"));
    }
    if value.value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(invalid(d, value, "a header value without control characters"));
    }
    let always = match d.args.get(2) {
        None => false,
        Some(a) if a.value == "always" => true,
        Some(a) => {
            return Err(Fail::new(a.span, format!("invalid parameter \"{}\" in \"add_header\" directive", a.value)))
        }
    };
    Ok(AddHeader { name: name.value.clone(), value: value.value.clone(), always })
}

/// An HTTP token (RFC 9110, 5.6.2): what a header name may be made of.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `index FILE...;`: plain file names (nginx's other forms, absolute paths and variables, are
/// refused rather than misread).
fn index(d: &Directive) -> Result<Vec<String>, Fail> {
    d.args
        .iter()
        .map(|a| {
            if a.value.is_empty() || a.value.contains('/') || a.value.contains('$') || a.value == ".." {
                Err(invalid(d, a, "a file name such as index.html"))
            } else {
                Ok(a.value.clone())
            }
        })
        .collect()
}

/// `rtmp_stat all|global|live|clients...`: the sections add up; only `all` shows `<play>`.
fn rtmp_stat(d: &Directive) -> Result<StatConf, Fail> {
    let mut c = StatConf { global: false, live: false, clients: false, play: false, ..StatConf::default() };
    for arg in &d.args {
        match arg.value.as_str() {
            "all" => c = StatConf::default(),
            "global" => c.global = true,
            "live" => c.live = true,
            "clients" => c.clients = true,
            _ => return Err(invalid(d, arg, "\"all\", \"global\", \"live\" or \"clients\"")),
        }
    }
    Ok(c)
}

/// `rtmp_control all|record|drop|redirect...`: the sections add up.
fn rtmp_control(d: &Directive) -> Result<RtmpControl, Fail> {
    let mut c = RtmpControl::default();
    for arg in &d.args {
        match arg.value.as_str() {
            "all" => c = RtmpControl::ALL,
            "record" => c.record = true,
            "drop" => c.drop = true,
            "redirect" => c.redirect = true,
            _ => return Err(invalid(d, arg, "\"all\", \"record\", \"drop\" or \"redirect\"")),
        }
    }
    Ok(c)
}

/// `allow|deny ADDR|CIDR|all;` in an http level.
fn access_rule(d: &Directive) -> Result<HttpAccessRule, Fail> {
    let arg = first(d)?;
    let addr = addr_match(&arg.value).ok_or_else(|| invalid(d, arg, ADDR_MUST))?;
    Ok(HttpAccessRule { allow: d.name == "allow", addr, text: format!("{} {}", d.name, arg.value) })
}

/// The built-in `/control/` location's rules.
fn builtin_control_rules() -> Vec<HttpAccessRule> {
    BUILTIN_CONTROL_RULES
        .iter()
        .map(|line| {
            let (verb, target) = line.split_once(' ').expect("a verb and an address");
            let addr = addr_match(target).expect("the built-in rules parse");
            HttpAccessRule { allow: verb == "allow", addr, text: (*line).to_owned() }
        })
        .collect()
}

/// A time that is not zero (a zero timeout would close every connection at once).
fn positive_time(d: &Directive) -> Result<Duration, Fail> {
    let t = time(d)?;
    if t.is_zero() {
        return Err(invalid(d, first(d)?, "a time longer than 0, like 10s"));
    }
    Ok(t)
}

/// The first argument, which must not be empty.
fn non_empty(d: &Directive) -> Result<String, Fail> {
    let arg = first(d)?;
    if arg.value.is_empty() {
        return Err(invalid(d, arg, "not empty"));
    }
    Ok(arg.value.clone())
}

/// The implicit locations serving each `hls_path` and `dash_path` directory at `/<last component>/`. Two
/// applications whose different directories share a last component would fight over one
/// URL: an error at the second one's `application` line (found in `rtmp`).
pub(crate) fn hls_locations(servers: &[ServerConf], rtmp: Option<&Directive>) -> Result<Vec<Location>, Fail> {
    let mut seen: Vec<(String, &Path, &str, &str)> = Vec::new();
    // The `hls_cors` each served `hls_path` or `dash_path` got, so applications sharing one agree.
    let mut cors_of: Vec<(&Path, &HlsCors, &str)> = Vec::new();
    let mut out = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        // The directories sluice writes live content into: `hls_path`, `dash_path`.
        let written = server.apps.iter().flat_map(|a| {
            let hls = a.hls.path.as_deref().filter(|_| a.hls.enabled).map(|p| (a, p, "hls_path", true));
            let dash = a.dash.path.as_deref().filter(|_| a.dash.enabled).map(|p| (a, p, "dash_path", false));
            hls.into_iter().chain(dash)
        });
        for (app, path, directive, is_hls) in written {
            let Some(name) = served_name(path) else {
                tracing::warn!(app = %app.name, "{directive} \"{}\" has no directory name to serve it under; not served over HTTP", path.display());
                continue;
            };
            // `hls_cors` is the application's: its dash_path location gets it too.
            if let Some((_, _, other_app)) = cors_of.iter().find(|(p, c, _)| *p == path && **c != app.hls.cors) {
                let msg = format!(
                    "applications \"{other_app}\" and \"{}\" share {directive} {} with different hls_cors",
                    app.name,
                    path.display()
                );
                return Err(Fail::new(app_span(rtmp, i, &app.name), msg));
            }
            cors_of.push((path, &app.hls.cors, &app.name));
            let uri = format!("/{name}/");
            match seen.iter().find(|(u, _, _, _)| *u == uri) {
                Some((_, other_path, _, _)) if *other_path == path => continue,
                Some((_, other_path, other_app, other)) => {
                    let dirs =
                        if *other == directive { format!("{directive} directories") } else { "directories".into() };
                    let msg = format!(
                        "applications \"{other_app}\" ({other} {}) and \"{}\" ({directive} {}) would both be served at \"{uri}\"; give their {dirs} different names",
                        other_path.display(),
                        app.name,
                        path.display()
                    );
                    return Err(Fail::new(app_span(rtmp, i, &app.name), msg));
                }
                None => {}
            }
            seen.push((uri.clone(), path, &app.name, directive));
            let mut loc = HttpLayer::default().build(&uri, false);
            loc.files = Some(Files::Alias { dir: path.to_path_buf(), prefix: uri });
            // HLS segment names are unique per publish (immutable); DASH's, as nginx-rtmp's, are not.
            loc.hls = is_hls;
            loc.dash = !is_hls;
            apply_cors(&mut loc, &app.hls.cors);
            out.push(loc);
        }
    }
    Ok(out)
}

/// `hls_cors` on the implicit location of its `hls_path`.
fn apply_cors(loc: &mut Location, cors: &HlsCors) {
    match cors {
        HlsCors::Any => {}
        HlsCors::Off => loc.no_cors = true,
        HlsCors::Origin(origin) => loc.headers.push(AddHeader {
            name: "Access-Control-Allow-Origin".into(),
            value: origin.clone(),
            always: true,
        }),
    }
}

/// The last component of an `hls_path`, when it is a plain, URL-safe name.
pub(crate) fn served_name(path: &Path) -> Option<&str> {
    match path.components().next_back()? {
        Component::Normal(name) => name.to_str().filter(|n| !n.contains(['%', '?', '#'])),
        _ => None,
    }
}

/// Where `application NAME` of the `server`-th rtmp server block is written.
fn app_span(rtmp: Option<&Directive>, server: usize, name: &str) -> Span {
    let Some(rtmp) = rtmp else { return Span::default() };
    let server_block = rtmp.block.as_deref().unwrap_or_default().iter().filter(|d| d.name == "server").nth(server);
    server_block
        .and_then(|s| s.block.as_deref())
        .and_then(|apps| {
            apps.iter().find(|a| a.name == "application" && a.args.first().is_some_and(|n| n.value == name))
        })
        .map_or(rtmp.span, |a| a.span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn servers(text: &str) -> Vec<HttpServerConf> {
        Config::parse(text, "t.conf").unwrap().http.servers()
    }

    fn error(text: &str) -> String {
        Config::parse(text, "t.conf").unwrap_err().to_string()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The rule that denies `addr` in the location serving `path`, as written.
    fn denied(s: &HttpServerConf, path: &str, addr: &str) -> Option<String> {
        s.location(path).denied_by(ip(addr)).map(|r| r.text.clone())
    }

    #[test]
    fn builtin_control_is_loopback_only() {
        let s = servers("rtmp { server { application live { live on; } } }").remove(0);
        for allowed in ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(denied(&s, "/control/record/start", allowed), None, "{allowed}");
        }
        for refused in ["10.0.0.1", "192.168.1.2", "::2", "2001:db8::1", "::ffff:10.0.0.1"] {
            assert_eq!(denied(&s, "/control/record/start", refused).as_deref(), Some("deny all"), "{refused}");
        }
        assert_eq!(denied(&s, "/healthz", "10.0.0.1"), None, "only /control/ is restricted");
        assert_eq!(s.limits, HttpLimits::default());
    }

    #[test]
    fn rules_inherit_like_nginx_access_module() {
        let s = servers(
            "http { allow 10.0.0.0/8; deny all; server { listen 8081; deny 192.0.2.1;
                location /a { } location /b { allow all; location /b/c { } } location /d { } }
                server { listen 8082; location /e { } } }",
        );
        assert_eq!(denied(&s[0], "/a/x", "192.0.2.1").as_deref(), Some("deny 192.0.2.1"));
        assert_eq!(denied(&s[0], "/a/x", "10.1.1.1"), None, "the server's rules replace the http block's");
        assert_eq!(denied(&s[0], "/b/c/x", "192.0.2.1"), None, "a location's own rules replace the server's");
        assert_eq!(denied(&s[0], "/elsewhere", "192.0.2.1").as_deref(), Some("deny 192.0.2.1"));
        assert_eq!(denied(&s[1], "/e", "192.0.2.1").as_deref(), Some("deny all"));
        assert_eq!(denied(&s[1], "/e", "10.2.3.4"), None, "first match wins");
    }

    #[test]
    fn implicit_hls_locations_take_the_servers_rules() {
        let s = servers(
            "rtmp { server { application a { hls on; hls_path /tmp/hls; } } }
             http { server { listen 8081; allow 127.0.0.1; deny all; } }",
        );
        assert_eq!(denied(&s[0], "/hls/a.m3u8", "10.0.0.1").as_deref(), Some("deny all"));
        assert_eq!(denied(&s[0], "/hls/a.m3u8", "127.0.0.1"), None);
    }

    #[test]
    fn addresses_networks_and_mapped_ipv4() {
        assert_eq!(addr_match("all"), Some(AddrMatch::All));
        assert_eq!(addr_match("10.1.2.3/8"), Some(AddrMatch::V4 { addr: 0x0A00_0000, mask: 0xFF00_0000 }));
        assert_eq!(addr_match("::ffff:10.0.0.0/104"), addr_match("10.0.0.0/8"), "mapped networks are IPv4");
        assert_eq!(addr_match("::ffff:127.0.0.1"), addr_match("127.0.0.1"));
        assert_eq!(addr_match("0.0.0.0/0"), Some(AddrMatch::V4 { addr: 0, mask: 0 }));
        assert!(addr_match("2001:db8::/32").unwrap().contains(ip("2001:db8:1::1")));
        for bad in ["10.0.0.0/33", "::1/129", "10.0.0/8", "nothing", "10.0.0.0/+8", "10.0.0.0/", "unix:", ""] {
            assert_eq!(addr_match(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_rules_are_config_errors() {
        let e = error("http { server {\n  location /c { allow 10.0.0.0/33; } } }");
        assert!(e.starts_with("t.conf:2:23: invalid value \"10.0.0.0/33\" in \"allow\" directive"), "{e}");
        let e = error("http { server { deny publish all; } }");
        assert!(e.contains("invalid number of arguments in \"deny\" directive"), "{e}");
        let e = error("http { server { allow; } }");
        assert!(e.contains("invalid number of arguments in \"allow\" directive"), "{e}");
    }

    #[test]
    fn timeouts_and_connection_limit() {
        let s = servers(
            "http { client_header_timeout 2s; server { listen 8081; keepalive_timeout 1s 1s; send_timeout 3s;
                max_connections 4; location /x { keepalive_timeout 9s; } } server { listen 8082; keepalive_timeout 0; } }",
        );
        let want = HttpLimits {
            header_timeout: Duration::from_secs(2),
            keepalive_timeout: Some(Duration::from_secs(1)),
            send_timeout: Duration::from_secs(3),
            max_connections: 4,
        };
        assert_eq!(s[0].limits, want);
        assert_eq!(s[0].limits.head_timeout(), Duration::from_secs(1), "a shorter keep-alive shortens the wait");
        assert_eq!(s[1].limits.keepalive_timeout, None, "0 turns keep-alive off");
        assert_eq!(s[1].limits.head_timeout(), Duration::from_secs(2));
        assert!(error("http { client_header_timeout 0; }").contains("a time longer than 0"));
        assert!(error("http { server { max_connections 0; } }").contains("between 1 and"));
        assert!(error("http { server { location / { max_connections 3; } } }").contains("not allowed here"));
        assert!(error("http { server { send_timeout soon; } }").contains("invalid value \"soon\""));
    }

    #[test]
    fn hls_cors_sets_the_hls_locations_origin() {
        let s = &servers(
            "rtmp { server { hls on; \
               application a { hls_path /tmp/a; hls_cors off; } \
               application b { hls_path /tmp/b; hls_cors https://player.example:8443; } \
               application c { hls_path /tmp/c; } } }",
        )[0];
        assert!(s.location("/a/x.m3u8").no_cors);
        let b = s.location("/b/x.m3u8");
        assert!(!b.no_cors);
        assert_eq!(
            b.headers,
            [AddHeader {
                name: "Access-Control-Allow-Origin".into(),
                value: "https://player.example:8443".into(),
                always: true
            }]
        );
        let c = s.location("/c/x.m3u8");
        assert!(!c.no_cors && c.headers.is_empty(), "* by default");
        for bad in ["player.example", "https://a.example/path", "https://a b", "https://"] {
            let text =
                format!("rtmp {{ server {{ application a {{ hls on; hls_path /tmp/a; hls_cors \"{bad}\"; }} }} }}");
            assert!(error(&text).contains("an origin like"), "{bad}");
        }
        let shared =
            error("rtmp { server { hls on; hls_path /tmp/a; application a { hls_cors off; } application b { } } }");
        assert!(shared.contains("different hls_cors"), "{shared}");
    }
}

#[cfg(test)]
mod recordings_tests {
    use super::*;
    use crate::config::Config;

    fn servers(text: &str) -> Vec<HttpServerConf> {
        Config::parse(text, "t.conf").unwrap().http.servers()
    }

    #[test]
    fn the_builtin_server_serves_recordings_at_vod_to_everyone() {
        let s = &servers("rtmp { server { application live { live on; } } }")[0];
        let loc = s.location("/vod/live/cam.flv/index.m3u8");
        assert_eq!(loc.handler, Some(Handler::Recordings { flv_fallback: true }));
        assert!(loc.denied_by("192.0.2.1".parse().unwrap()).is_none(), "content, not stats: no loopback rule");
        assert_eq!(s.location("/vodka/cam.flv").handler, Some(Handler::FlvLive));
        // An hls_path directory named vod keeps its URL.
        let hls = &servers("rtmp { server { application a { hls on; hls_path /tmp/vod; } } }")[0];
        assert_eq!(hls.location("/vod/cam.m3u8").handler, None);
        assert!(hls.location("/vod/cam.m3u8").hls);
    }

    #[test]
    fn recordings_on_names_the_handler_of_an_http_location() {
        let s = &servers(
            "rtmp { server { } } http { server { listen 8081; location /rec/ { recordings on; deny 10.0.0.0/8; } } }",
        )[0];
        let loc = s.location("/rec/live/cam.mp4/init.mp4");
        assert_eq!(loc.handler, Some(Handler::Recordings { flv_fallback: false }));
        assert!(loc.denied_by("10.1.2.3".parse().unwrap()).is_some());
        assert_eq!(s.location("/vod/live/cam.mp4/init.mp4").handler, None, "no built-in /vod/ in a block");
        let err = Config::parse("http { server { location /x { recordings on; flv_live on; } } }", "t.conf")
            .unwrap_err()
            .to_string();
        assert!(err.contains("only one of"), "{err}");
    }
}

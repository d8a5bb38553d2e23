//! The configuration model: nginx-style text (parsed by the `nginx-conf` crate) turned into typed,
//! validated, merged settings (rtmp → server → application, as nginx-rtmp merges them).
//!
//! Each capability keeps its directive table in its own module (`core`, `live`, `record`, `hls`,
//! and `later` for accepted-but-unimplemented ones); this module walks the syntax tree, checks
//! each directive against the table that owns it, and reports `FILE:LINE:COL: message` errors.
//!
//! Strictness follows where the text came from: inside `rtmp { }` every directive must be known
//! and valid, because sluice owns that block; so must those inside `http { }`, which sluice
//! serves (see `http`: what stock nginx.conf files carry and sluice has no use for is accepted
//! with a warning). Outside both (`events`, `user`, ...) unknown content is skipped with a debug
//! log, because it belongs to nginx and is none of our business; `error_log` there is read
//! (`log`).

mod access;
mod cluster;
mod core;
mod dash;
mod docs;
mod effective;
mod exec;
mod hls;
mod http;
mod include;
mod later;
mod live;
mod log;
mod notify;
mod play;
mod process;
mod record;
mod relay;
mod transcode;
mod value;

use std::net::SocketAddr;
use std::path::Path;

use nginx_conf::{Directive, Loader, Source, Span};

pub use self::access::{AccessConf, AccessRule, Action, AddrMatch, AuthScope};
pub use self::cluster::{ClusterConf, RedisUrl};
pub use self::core::{parse_addr, CoreConf, TlsConf, DEFAULT_PORT};
pub use self::dash::DashConf;
pub use self::exec::{found as program_found, ExecConf, ExecGlobal, ExecLine, Trigger};
pub(crate) use self::hls::shares_cmaf;
pub use self::hls::{HlsConf, HlsCors, HlsFragmentType, HlsNaming, HlsSlicing, HlsType, HlsVariant};
pub use self::http::{
    parse_http_listen, AddHeader, BuiltinHttp, Files, Handler, HttpAccessRule, HttpConf, HttpLimits, HttpServerConf,
    Location, RtmpControl, StatConf, BUILTIN_DASHBOARD_URI, DEFAULT_HTTP_PORT,
};
pub use self::live::{LiveConf, MetaMode};
pub use self::log::{AccessLog, ErrorLevel, ErrorLogConf, LogConf, LogFormat, Op as LogOp, Var as LogVar, COMBINED};
pub use self::notify::{NotifyConf, NotifyMethod};
pub use self::play::{PlayConf, PlayLocation};
pub use self::process::{ProcessConf, DEFAULT_SHUTDOWN_TIMEOUT};
pub use self::record::{RecordConf, RecordFormat, RecordMode, Recorder};
pub use self::relay::{RelayConf, RelayTarget};
pub use self::transcode::{Rendition, TranscodeConf};
pub use self::value::{ctx, parse_number, parse_size, parse_time, Args, DirectiveSpec, Kind};

use self::access::AccessLayer;
use self::cluster::ClusterLayer;
use self::core::CoreLayer;
use self::dash::DashLayer;
use self::exec::ExecLayer;
use self::hls::HlsLayer;
use self::live::LiveLayer;
use self::log::LogLayer;
use self::notify::NotifyLayer;
use self::play::PlayLayer;
use self::record::RecordLayer;
use self::relay::RelayLayer;
use self::transcode::TranscodeLayer;
use self::value::{check_shape, edit_distance, Fail};

pub use self::later::Inert;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `rtmp { server { ... } }` blocks, one per listening server.
    pub servers: Vec<ServerConf>,
    /// The HTTP side: `http { }` servers or the built-in server (`http_listen`), and the
    /// `hls_path` directories they serve.
    pub http: HttpConf,
    /// Every accepted directive that has no effect yet, in file order (see [`Config::inert_report`]).
    pub inert: Vec<Inert>,
    /// What the exec module sets for the whole process: `exec_static`, `respawn_timeout`,
    /// `exec_kill_signal`.
    pub exec: ExecGlobal,
    /// The process's own settings (main context): `pid`, `worker_shutdown_timeout`.
    pub process: ProcessConf,
    /// `error_log` (top level), when written.
    pub error_log: Option<ErrorLogConf>,
    /// The stream directory (`cluster_redis`, `cluster_ttl`): [`crate::cluster`].
    pub cluster: ClusterConf,
}

/// One `rtmp { server { } }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConf {
    /// Where to accept RTMP connections (0.0.0.0:1935 when the block has no `listen`).
    pub listen: Vec<SocketAddr>,
    /// Those of `listen` written with `ssl`: they speak RTMPS, presenting `tls`.
    pub ssl_listen: Vec<SocketAddr>,
    /// Those of `listen` written with `proxy_protocol`: each connection starts with a PROXY
    /// protocol header naming the client ([`crate::proxy_protocol`]).
    pub proxy_listen: Vec<SocketAddr>,
    /// `ssl_certificate` and `ssl_certificate_key`, read and checked (set whenever `ssl_listen`
    /// is not empty).
    pub tls: Option<TlsConf>,
    /// Connection-level settings, merged from rtmp and server level.
    pub core: CoreConf,
    /// `max_connections`: most clients connected to this server block at once (none: no limit).
    pub max_connections: Option<u32>,
    /// The server's applications, in file order.
    pub apps: Vec<AppConf>,
    /// Access logs of sessions that connect to no application here (merged rtmp → server).
    pub log: LogConf,
    /// Not yet implemented directives set at rtmp and server level (rtmp first), raw.
    pub extra: Vec<(String, Vec<String>)>,
    /// `cluster_address` (merged rtmp → server): where other nodes pull this server's streams
    /// from (`rtmp://HOST:PORT`).
    pub cluster_address: Option<String>,
}

/// One `application NAME { }` block, with everything inherited from rtmp and server merged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConf {
    /// The application name (the path segment clients connect to).
    pub name: String,
    /// Live streaming settings.
    pub live: LiveConf,
    /// Recording settings (and named recorders).
    pub record: RecordConf,
    /// HLS settings.
    pub hls: HlsConf,
    /// DASH settings.
    pub dash: DashConf,
    /// Who may publish and play: IP rules, signed stream keys, publish keys.
    pub access: AccessConf,
    /// HTTP callbacks (`on_publish`, ...), with the server's `on_connect`/`on_disconnect`.
    pub notify: NotifyConf,
    /// Relays: `push` and `pull` targets and their settings.
    pub relay: RelayConf,
    /// Programs run on stream events (`exec_*`).
    pub exec: ExecConf,
    /// The built-in transcode ladder (`transcode ...`).
    pub transcode: TranscodeConf,
    /// Access logs (`access_log`, with the `log_format` each names).
    pub log: LogConf,
    /// Video on demand: `play` locations and where fetched files go.
    pub play: PlayConf,
    /// `cluster` (on): the application's streams take part in the stream directory (when
    /// `cluster_redis` is set).
    pub cluster: bool,
    /// Not yet implemented directives (DASH, ...) as raw words:
    /// rtmp level first, then server, then application, each in file order. The feature that
    /// implements one decides how levels combine.
    pub extra: Vec<(String, Vec<String>)>,
}

impl AppConf {
    /// Why a player of a stream that nobody publishes here is refused instead of waiting: a
    /// feature configured for this application would have served it, and is not implemented
    /// yet. `None` when no such feature is configured (none is, today: VOD `play` serves its
    /// players itself, see [`crate::vod`]).
    pub fn unserved_play(&self) -> Option<&'static str> {
        let configured = |name: &str| self.extra.iter().any(|(n, _)| n == name);
        later::PLAY_SOURCES.iter().find(|(name, _)| configured(name)).map(|(_, why)| *why)
    }

    /// The HTTP path of stream `name`'s HLS playlist (`/hls/NAME.m3u8`, `/hls/NAME/index.m3u8`
    /// with `hls_nested`), when this application writes HLS that sluice serves.
    pub fn hls_url_path(&self, name: &str) -> Option<String> {
        let dir = http::served_name(self.hls.path.as_deref().filter(|_| self.hls.enabled)?)?;
        Some(format!("/{dir}/{}", ::hls::segmenter::playlist_file(name, self.hls.nested)))
    }
}

/// A configuration that cannot be used. `Display` is `FILE:LINE:COL: message`, or
/// `FILE: cannot read: ERROR` when the file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid.
    #[error("{file}:{line}:{col}: {message}")]
    Invalid {
        /// The file name as given.
        file: String,
        /// 1-based line.
        line: u32,
        /// 1-based column.
        col: u32,
        /// nginx-style description.
        message: String,
    },
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file name as given.
        file: String,
        /// Why.
        source: std::io::Error,
    },
}

impl ConfigError {
    fn invalid(file: &str, span: Span, message: String) -> Self {
        ConfigError::Invalid { file: file.to_owned(), line: span.line, col: span.col, message }
    }
}

const DEFAULT_TEXT: &str = include_str!("default.conf");

/// Application `live` of a one-server configuration with `body` as its directives, for the
/// server's unit tests.
#[cfg(test)]
pub(crate) fn test_app(body: &str) -> std::sync::Arc<AppConf> {
    let text = format!("rtmp {{ server {{ application live {{ {body} }} }} }}");
    let mut config = Config::parse(&text, "test.conf").unwrap_or_else(|e| panic!("{e}"));
    std::sync::Arc::new(config.servers.remove(0).apps.remove(0))
}

impl Config {
    /// Parses and validates config text; `file` names it in error messages. Not being a file,
    /// it includes nothing: `include` directives are skipped with a warning. Relative
    /// `ssl_certificate` paths are relative to the current directory.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let main = Source { name: file.to_owned(), key: file.to_owned(), text: text.to_owned() };
        Config::from_files(main, &mut include::NoFiles, Path::new(""))
    }

    /// Reads and parses a config file and the files it includes (relative `include` paths
    /// resolve against the file's directory, as nginx's conf prefix for `nginx -c FILE`; so do
    /// relative `ssl_certificate` and `ssl_certificate_key` paths, wherever they are written).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        let key = std::fs::canonicalize(path).map_or_else(|_| file.clone(), |p| p.display().to_string());
        let base = path.parent().unwrap_or(Path::new(""));
        Config::from_files(Source { name: file, key, text }, &mut include::FsLoader::for_main(path), base)
    }

    /// `base`: where relative certificate paths start (the main file's directory).
    fn from_files(main: Source, loader: &mut dyn Loader, base: &Path) -> Result<Config, ConfigError> {
        Config::from_tree(&syntax_tree(main, loader)?, base)
    }

    /// The configuration a parsed file (with its includes) says.
    fn from_tree(parsed: &nginx_conf::Parsed, base: &Path) -> Result<Config, ConfigError> {
        let file_of = |span: Span| parsed.files.get(span.file as usize).cloned().unwrap_or_default();
        let mut config =
            build(&parsed.directives, base).map_err(|f| ConfigError::invalid(&file_of(f.span), f.span, f.message))?;
        config.inert = later::find_inert(&parsed.directives, &parsed.files);
        exec::name_global_files(&mut config.exec, &parsed.files);
        for app in config.servers.iter_mut().flat_map(|s| &mut s.apps) {
            exec::name_files(&mut app.exec, &parsed.files);
        }
        Ok(config)
    }

    /// What `-t` and start-up print: warnings about exec lines (a program not found on
    /// `PATH` now, a variable the directive does not have), then one line per directive that
    /// has no effect yet (`FILE:LINE`) and a summary line naming them all; nothing when all
    /// is well.
    pub fn inert_report(&self) -> Vec<String> {
        let apps: Vec<&ExecConf> = self.servers.iter().flat_map(|s| &s.apps).map(|a| &a.exec).collect();
        let mut lines = exec::report(&apps, &self.exec);
        let ladders: Vec<&TranscodeConf> = self.servers.iter().flat_map(|s| &s.apps).map(|a| &a.transcode).collect();
        lines.extend(transcode::report(&ladders));
        let all: Vec<&AppConf> = self.servers.iter().flat_map(|s| &s.apps).collect();
        lines.extend(hls::shared_report(&all));
        lines.extend(self.cluster.report());
        lines.extend(later::report(&self.inert));
        lines
    }

    /// `sluice -T` for config text: checks it as [`Config::parse`] does, then writes it out as
    /// sluice uses it, every inherited value and default filled in (see `effective`).
    pub fn effective_text(text: &str, file: &str) -> Result<String, ConfigError> {
        let main = Source { name: file.to_owned(), key: file.to_owned(), text: text.to_owned() };
        let parsed = syntax_tree(main, &mut include::NoFiles)?;
        Config::from_tree(&parsed, Path::new(""))?;
        Ok(effective::render(&parsed.directives, file))
    }

    /// [`Config::effective_text`] for a file and the files it includes (as [`Config::load`]).
    pub fn load_effective_text(path: &Path) -> Result<String, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        let key = std::fs::canonicalize(path).map_or_else(|_| file.clone(), |p| p.display().to_string());
        let parsed = syntax_tree(Source { name: file.clone(), key, text }, &mut include::FsLoader::for_main(path))?;
        Config::from_tree(&parsed, path.parent().unwrap_or(Path::new("")))?;
        Ok(effective::render(&parsed.directives, &file))
    }

    /// The built-in configuration used when no file is given (nginx syntax, with comments).
    pub fn default_text() -> &'static str {
        DEFAULT_TEXT
    }

    /// [`Config::default_text`], parsed.
    pub fn default_config() -> Config {
        Config::parse(DEFAULT_TEXT, "<built-in>").expect("the built-in config is valid")
    }
}

/// Every directive sluice knows inside `rtmp { }`, with the name of the table (module) that
/// owns it: for documentation and `--help`-style listings.
pub fn directives() -> impl Iterator<Item = (&'static str, &'static DirectiveSpec)> {
    TABLES.iter().flat_map(|(group, table)| table.iter().map(move |s| (group.name(), s)))
}

/// docs/directives.md: every directive's contexts, arguments, default, meaning and nginx-rtmp
/// compatibility, from the directive tables and config/docs.rs (a test keeps the file equal).
pub fn directives_markdown() -> String {
    docs::markdown()
}

/// Which module owns a directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Core,
    Live,
    Record,
    Hls,
    Dash,
    Http,
    Access,
    Notify,
    Relay,
    Exec,
    Transcode,
    Process,
    Log,
    Play,
    Cluster,
    Later,
}

impl Group {
    fn name(self) -> &'static str {
        match self {
            Group::Core => "core",
            Group::Live => "live",
            Group::Record => "record",
            Group::Hls => "hls",
            Group::Dash => "dash",
            Group::Http => "http",
            Group::Access => "access",
            Group::Notify => "notify",
            Group::Relay => "relay",
            Group::Exec => "exec",
            Group::Transcode => "transcode",
            Group::Process => "process",
            Group::Log => "log",
            Group::Play => "play",
            Group::Cluster => "cluster",
            Group::Later => "later",
        }
    }
}

const TABLES: &[(Group, &[DirectiveSpec])] = &[
    (Group::Core, self::core::DIRECTIVES),
    (Group::Live, live::DIRECTIVES),
    (Group::Record, record::DIRECTIVES),
    (Group::Hls, hls::DIRECTIVES),
    (Group::Dash, dash::DIRECTIVES),
    (Group::Http, http::RTMP_DIRECTIVES),
    (Group::Access, access::DIRECTIVES),
    (Group::Notify, notify::DIRECTIVES),
    (Group::Relay, relay::DIRECTIVES),
    (Group::Exec, exec::DIRECTIVES),
    (Group::Transcode, transcode::DIRECTIVES),
    (Group::Process, process::DIRECTIVES),
    (Group::Log, log::DIRECTIVES),
    (Group::Play, play::DIRECTIVES),
    (Group::Cluster, cluster::DIRECTIVES),
    (Group::Later, later::DIRECTIVES),
];

fn lookup(name: &str) -> Option<(Group, &'static DirectiveSpec)> {
    directives_with_group().find(|(_, s)| s.name == name)
}

fn directives_with_group() -> impl Iterator<Item = (Group, &'static DirectiveSpec)> {
    TABLES.iter().flat_map(|(group, table)| table.iter().map(move |s| (*group, s)))
}

/// Finds a directive's table row and checks that it may appear in `context` with this shape.
fn check(d: &Directive, context: u8) -> Result<Group, Fail> {
    let Some((group, spec)) = lookup(&d.name) else {
        return Err(unknown(d));
    };
    if spec.contexts & context == 0 {
        return Err(Fail::new(d.span, format!("\"{}\" directive is not allowed here", d.name)));
    }
    check_shape(spec, d)?;
    Ok(group)
}

/// `unknown directive "x"`, with the closest known name when one is close enough to be a typo.
fn unknown(d: &Directive) -> Fail {
    let rtmp = ctx::RSAR;
    let best = directives_with_group()
        .filter(|(_, s)| s.contexts & rtmp != 0)
        .map(|(_, s)| (edit_distance(&d.name, s.name), s.name))
        .min();
    let limit = if d.name.chars().count() <= 4 { 1 } else { 2 };
    let in_http = http::DIRECTIVES.iter().any(|s| s.name == d.name);
    let hint = match best {
        Some((dist, name)) if dist <= limit => format!(" (did you mean \"{name}\"?)"),
        _ if in_http => " in rtmp { } (it belongs in an http { } block)".to_owned(),
        _ => String::new(),
    };
    Fail::new(d.name_span, format!("unknown directive \"{}\"{hint}", d.name))
}

/// The settings written at one level (rtmp, server, application), before merging.
#[derive(Debug, Clone, Default)]
struct Layer {
    core: CoreLayer,
    live: LiveLayer,
    record: RecordLayer,
    hls: HlsLayer,
    dash: DashLayer,
    access: AccessLayer,
    notify: NotifyLayer,
    relay: RelayLayer,
    exec: ExecLayer,
    transcode: TranscodeLayer,
    log: LogLayer,
    play: PlayLayer,
    cluster: ClusterLayer,
    extra: Vec<(String, Vec<String>)>,
}

impl Layer {
    fn set(&mut self, group: Group, d: &Directive) -> Result<(), Fail> {
        match group {
            Group::Core => self.core.set(d),
            Group::Live => self.live.set(d),
            Group::Record => self.record.set(d),
            Group::Hls => self.hls.set(d),
            Group::Dash => self.dash.set(d),
            Group::Access => self.access.set(d),
            Group::Notify => self.notify.set(d),
            Group::Relay => self.relay.set(d),
            Group::Exec => self.exec.set(d),
            Group::Transcode => self.transcode.set(d),
            Group::Log => self.log.set(d),
            Group::Play => self.play.set(d),
            Group::Cluster => self.cluster.set(d),
            // `http_listen`, read by `read_rtmp` itself, and the main context's: they set no
            // application.
            Group::Http | Group::Process => {
                Err(Fail::new(d.span, format!("directive \"{}\" is not handled here", d.name)))
            }
            Group::Later => {
                self.extra.push(later::accept(d));
                Ok(())
            }
        }
    }

    /// This level's settings with unset ones taken from `outer`; extras accumulate outer first.
    fn inherit(&self, outer: &Layer) -> Layer {
        Layer {
            core: self.core.inherit(&outer.core),
            live: self.live.inherit(&outer.live),
            record: self.record.inherit(&outer.record),
            hls: self.hls.inherit(&outer.hls),
            dash: self.dash.inherit(&outer.dash),
            access: self.access.inherit(&outer.access),
            notify: self.notify.inherit(&outer.notify),
            relay: self.relay.inherit(&outer.relay),
            exec: self.exec.inherit(&outer.exec),
            transcode: self.transcode.inherit(&outer.transcode),
            log: self.log.inherit(&outer.log),
            play: self.play.inherit(&outer.play),
            cluster: self.cluster.inherit(&outer.cluster),
            extra: outer.extra.iter().chain(&self.extra).cloned().collect(),
        }
    }
}

/// A `server { }` block as written.
struct RawServer {
    layer: Layer,
    listen: Vec<(SocketAddr, Span)>,
    /// The `listen ... ssl` ones.
    ssl: Vec<(SocketAddr, Span)>,
    /// The `listen ... proxy_protocol` ones.
    proxy: Vec<SocketAddr>,
    apps: Vec<RawApp>,
}

/// An `application NAME { }` block as written.
struct RawApp {
    name: String,
    /// Where the `application` directive is, for errors about the merged result.
    span: Span,
    layer: Layer,
    recorders: Vec<RawRecorder>,
}

/// A `recorder NAME { }` block as written.
struct RawRecorder {
    name: String,
    record: RecordLayer,
    /// The recorder's own `on_record_done`.
    notify: NotifyLayer,
    /// The recorder's own `exec_record_done`.
    exec: ExecLayer,
    extra: Vec<(String, Vec<String>)>,
}

/// The syntax tree of `main` and the files it includes.
fn syntax_tree(main: Source, loader: &mut dyn Loader) -> Result<nginx_conf::Parsed, ConfigError> {
    nginx_conf::parse_files(main, loader)
        .map_err(|e| ConfigError::invalid(&e.file, e.error.span, e.error.kind.to_string()))
}

fn build(tree: &[Directive], base: &Path) -> Result<Config, Fail> {
    let mut rtmp: Option<&Directive> = None;
    let mut http_block: Option<&Directive> = None;
    let mut process = process::ProcessLayer::default();
    let mut error_log = None;
    for d in tree {
        if process.set(d, base)? {
            continue;
        }
        match d.name.as_str() {
            "error_log" => {
                check(d, ctx::TOP)?;
                value::put(&mut error_log, log::error_log(d, base)?, d)?;
            }
            "rtmp" => {
                if rtmp.is_some() {
                    return Err(Fail::new(d.span, "\"rtmp\" directive is duplicate"));
                }
                rtmp = Some(d);
            }
            "http" => {
                if http_block.is_some() {
                    return Err(Fail::new(d.span, "\"http\" directive is duplicate"));
                }
                http_block = Some(d);
            }
            other => tracing::debug!(directive = other, line = d.span.line, "ignored (not rtmp)"),
        }
    }
    let (servers, (http_listen, builtin), exec, cluster) = match rtmp {
        Some(d) => read_rtmp(d, base)?,
        None => {
            tracing::warn!("the configuration has no \"rtmp\" block: no RTMP server will listen");
            (Vec::new(), (None, http::BuiltinHttp::default()), ExecGlobal::default(), ClusterConf::default())
        }
    };
    let block = http_block.map(http::read_http).transpose()?;
    if let (Some(span), Some(_)) = (http_listen.map(|(_, span)| span), &block) {
        tracing::warn!(line = span.line, "\"http_listen\" has no effect: the \"http\" block's servers listen instead");
    }
    let default_listen = Some(SocketAddr::from(([0, 0, 0, 0], DEFAULT_HTTP_PORT)));
    let http = HttpConf {
        builtin_listen: http_listen.map_or(default_listen, |(addr, _)| addr),
        builtin,
        block,
        hls: http::hls_locations(&servers, rtmp)?,
    };
    Ok(Config { servers, http, inert: Vec::new(), exec, process: process.finish(), error_log, cluster })
}

/// The children of a block directive; nginx's wording when it has none.
fn block(d: &Directive) -> Result<&[Directive], Fail> {
    d.block.as_deref().ok_or_else(|| Fail::new(d.span, format!("directive \"{}\" has no opening \"{{\"", d.name)))
}

/// The rtmp block's servers, `http_listen` with where it is written when set, the exec
/// module's global settings and the cluster's.
type RtmpBlock = (Vec<ServerConf>, (Option<(Option<SocketAddr>, Span)>, http::BuiltinHttp), ExecGlobal, ClusterConf);

fn read_rtmp(d: &Directive, base: &Path) -> Result<RtmpBlock, Fail> {
    if !d.args.is_empty() {
        return Err(Fail::new(d.span, "invalid number of arguments in \"rtmp\" directive"));
    }
    let mut top = Layer::default();
    let mut servers = Vec::new();
    let mut http_listen = None;
    let mut builtin = http::BuiltinHttp::default();
    let (mut public, mut dashboard, mut recordings, mut token) = (None, None, None, None);
    for c in block(d)? {
        let group = check(c, ctx::RTMP)?;
        match c.name.as_str() {
            "server" => servers.push(read_server(c)?),
            "http_listen" => value::put(&mut http_listen, (http::http_listen(c)?, c.span), c)?,
            "http_stats_public" => value::put(&mut public, value::flag(c)?, c)?,
            "dashboard" => value::put(&mut dashboard, value::flag(c)?, c)?,
            "recordings" => value::put(&mut recordings, value::flag(c)?, c)?,
            "api_token" => value::put(&mut token, value::first(c)?.value.clone(), c)?,
            _ => top.set(group, c)?,
        }
    }
    check_listen_unique(&servers)?;
    let levels = servers.iter().flat_map(|s| std::iter::once(&s.layer).chain(s.apps.iter().map(|a| &a.layer)));
    let mut cluster = top.cluster.global();
    if cluster.redis.is_none() {
        cluster.inert_on = std::iter::once(&top).chain(levels.clone()).find_map(|l| l.cluster.explicit_on());
    }
    check_cluster_addresses(&servers, &top, &cluster)?;
    let exec = exec::globals(std::iter::once(&top).chain(levels.clone()).map(|l| &l.exec))?;
    let formats = log::formats(std::iter::once(&top).chain(levels).map(|l| &l.log))?;
    let mut servers: Vec<ServerConf> =
        servers.iter().map(|s| resolve_server(s, &top, base)).collect::<Result<_, _>>()?;
    for app in servers.iter_mut().flat_map(|s| &mut s.apps) {
        exec::apply_globals(&mut app.exec, &exec);
    }
    for s in &mut servers {
        log::resolve(&mut s.log, &formats, base);
        for app in &mut s.apps {
            log::resolve(&mut app.log, &formats, base);
        }
    }
    builtin.public = public.unwrap_or(builtin.public);
    builtin.dashboard = dashboard.unwrap_or(builtin.dashboard);
    builtin.recordings = recordings.unwrap_or(builtin.recordings);
    builtin.api_token = token.filter(|t: &String| !t.is_empty());
    Ok((servers, (http_listen, builtin), exec, cluster))
}

/// With a stream directory, a server whose live applications take part in it must say where
/// other nodes pull its streams from.
fn check_cluster_addresses(servers: &[RawServer], top: &Layer, cluster: &ClusterConf) -> Result<(), Fail> {
    if cluster.redis.is_none() {
        return Ok(());
    }
    for s in servers {
        let merged = s.layer.inherit(top);
        if merged.cluster.address().is_some() {
            continue;
        }
        for a in &s.apps {
            let app = a.layer.inherit(&merged);
            if app.cluster.enabled() && app.live.build().live {
                let msg = format!(
                    "application \"{}\" takes part in the cluster (\"cluster_redis\" is set, \"cluster\" is on) but its server has no \"cluster_address\" (rtmp://HOST:PORT, where other nodes pull its streams from); write one, or \"cluster off;\"",
                    a.name
                );
                return Err(Fail::new(a.span, msg));
            }
        }
    }
    Ok(())
}

fn read_server(d: &Directive) -> Result<RawServer, Fail> {
    let mut s =
        RawServer { layer: Layer::default(), listen: Vec::new(), ssl: Vec::new(), proxy: Vec::new(), apps: Vec::new() };
    for c in block(d)? {
        let group = check(c, ctx::SERVER)?;
        match c.name.as_str() {
            "listen" => {
                let l = self::core::listen(c)?;
                s.listen.push((l.addr, c.span));
                if l.ssl {
                    s.ssl.push((l.addr, c.span));
                }
                if l.proxy {
                    s.proxy.push(l.addr);
                }
            }
            "application" => {
                let app = read_app(c, &mut s.layer.core)?;
                if s.apps.iter().any(|a| a.name == app.name) {
                    return Err(Fail::new(c.span, format!("duplicate application \"{}\"", app.name)));
                }
                s.apps.push(app);
            }
            _ => s.layer.set(group, c)?,
        }
    }
    if s.listen.is_empty() {
        s.listen.push((SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)), d.span));
    }
    Ok(s)
}

/// Reads an application. `server_core` receives the core directives nginx-rtmp allows in an
/// application (`play_time_fix`, `publish_time_fix`), which there set the whole server.
fn read_app(d: &Directive, server_core: &mut CoreLayer) -> Result<RawApp, Fail> {
    let name = d.args[0].value.clone();
    let mut app = RawApp { name, span: d.span, layer: Layer::default(), recorders: Vec::new() };
    for c in block(d)? {
        let group = check(c, ctx::APP)?;
        match (group, c.name.as_str()) {
            (_, "recorder") => {
                let rec = read_recorder(c)?;
                if app.recorders.iter().any(|r| r.name == rec.name) {
                    return Err(Fail::new(c.span, format!("duplicate recorder \"{}\"", rec.name)));
                }
                app.recorders.push(rec);
            }
            (Group::Core, _) => server_core.set(c)?,
            _ => app.layer.set(group, c)?,
        }
    }
    Ok(app)
}

fn read_recorder(d: &Directive) -> Result<RawRecorder, Fail> {
    let name = d.args[0].value.clone();
    let mut layer = Layer::default();
    for c in block(d)? {
        let group = check(c, ctx::RECORDER)?;
        layer.set(group, c)?;
    }
    Ok(RawRecorder { name, record: layer.record, notify: layer.notify, exec: layer.exec, extra: layer.extra })
}

/// Two servers (or two `listen`s) on one address would fail at bind time; say so now.
fn check_listen_unique(servers: &[RawServer]) -> Result<(), Fail> {
    let mut seen: Vec<SocketAddr> = Vec::new();
    for (addr, span) in servers.iter().flat_map(|s| &s.listen) {
        if seen.contains(addr) {
            return Err(Fail::new(*span, format!("duplicate \"{addr}\" address and port pair")));
        }
        seen.push(*addr);
    }
    Ok(())
}

fn resolve_server(s: &RawServer, top: &Layer, base: &Path) -> Result<ServerConf, Fail> {
    let merged = s.layer.inherit(top);
    Ok(ServerConf {
        listen: s.listen.iter().map(|(a, _)| *a).collect(),
        ssl_listen: s.ssl.iter().map(|(a, _)| *a).collect(),
        proxy_listen: s.proxy.clone(),
        tls: merged.core.tls(s.ssl.first().map(|(_, span)| *span), base)?,
        core: merged.core.build(),
        max_connections: merged.access.max_connections(),
        apps: s.apps.iter().map(|a| resolve_app(a, &merged)).collect::<Result<_, _>>()?,
        log: merged.log.build(),
        extra: merged.extra,
        cluster_address: merged.cluster.address(),
    })
}

fn resolve_app(a: &RawApp, server: &Layer) -> Result<AppConf, Fail> {
    let merged = a.layer.inherit(server);
    let mut record = merged.record.build();
    record.recorders = a
        .recorders
        .iter()
        .map(|r| Recorder {
            name: r.name.clone(),
            conf: r.record.inherit(&merged.record).build(),
            extra: merged.extra.iter().chain(&r.extra).cloned().collect(),
        })
        .collect();
    check_record_path(&record, a)?;
    let hls = merged.hls.build();
    hls.check().map_err(|why| Fail::new(a.span, format!("application \"{}\": {why}", a.name)))?;
    let dash = merged.dash.build();
    dash.check().map_err(|why| Fail::new(a.span, format!("application \"{}\": {why}", a.name)))?;
    merged.access.check().map_err(|why| Fail::new(a.span, format!("application \"{}\": {why}", a.name)))?;
    let access = merged.access.build();
    let mut notify = merged.notify.build();
    notify.recorder_record_done =
        a.recorders.iter().filter_map(|r| Some((r.name.clone(), r.notify.on_record_done()?.to_owned()))).collect();
    let (live, relay) = (merged.live.build(), merged.relay.build());
    let mut exec = merged.exec.build();
    exec.recorder_record_done = a.recorders.iter().map(|r| (r.name.clone(), r.exec.record_done())).collect();
    let transcode = merged.transcode.build();
    let log = merged.log.build();
    let play = merged.play.build();
    let cluster = merged.cluster.enabled();
    Ok(AppConf {
        name: a.name.clone(),
        live,
        record,
        hls,
        dash,
        access,
        notify,
        relay,
        exec,
        transcode,
        log,
        play,
        cluster,
        extra: merged.extra,
    })
}

/// Recording without `record_path` could only fail at the first publish: refuse it now.
fn check_record_path(record: &RecordConf, a: &RawApp) -> Result<(), Fail> {
    let needs = |conf: &RecordConf| !conf.mode.is_off() && conf.path.is_none();
    if needs(record) {
        let msg = format!("application \"{}\": \"record\" records but \"record_path\" is not set", a.name);
        return Err(Fail::new(a.span, msg));
    }
    match record.recorders.iter().find(|r| needs(&r.conf)) {
        Some(r) => {
            let msg =
                format!("application \"{}\": recorder \"{}\" records but \"record_path\" is not set", a.name, r.name);
            Err(Fail::new(a.span, msg))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;

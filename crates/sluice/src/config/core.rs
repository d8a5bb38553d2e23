//! nginx-rtmp's core module: servers, listening addresses and per-connection protocol settings
//! (`ngx_rtmp_core_module.c`). These live at rtmp/server level only; applications do not have
//! their own (except the two time fixes, which nginx-rtmp lets an application set for its
//! whole server).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nginx_conf::{Directive, Span};

use super::value::{
    ctx::{APP, RS, RTMP, SERVER},
    first, flag, invalid, number_in, put, size_in, spec, text, time, Args, DirectiveSpec, Fail, Kind,
};

const ONE: Args = Args::Exactly(1);

/// The core directive table.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    spec("server", RTMP, Args::Exactly(0), Kind::Block, ""),
    spec("listen", SERVER, Args::AtLeast(1), Kind::Listen, "1935"),
    spec("application", SERVER, ONE, Kind::Block, ""),
    spec("timeout", RS, ONE, Kind::Time, "60s"),
    spec("ping", RS, ONE, Kind::Time, "60s"),
    spec("ping_timeout", RS, ONE, Kind::Time, "30s"),
    spec("max_streams", RS, ONE, Kind::Number, "32"),
    spec("ack_window", RS, ONE, Kind::Number, "5000000"),
    spec("chunk_size", RS, ONE, Kind::Number, "4096"),
    spec("max_message", RS, ONE, Kind::Size, "1m"),
    spec("out_queue", RS, ONE, Kind::Size, "256"),
    spec("out_cork", RS, ONE, Kind::Size, "32"),
    spec("buflen", RS, ONE, Kind::Time, "1000ms"),
    spec("busy", RS, ONE, Kind::Flag, "off"),
    spec("play_time_fix", RS | APP, ONE, Kind::Flag, "on"),
    spec("publish_time_fix", RS | APP, ONE, Kind::Flag, "on"),
    spec("so_keepalive", RS, ONE, Kind::Flag, "off"),
    spec("tcp_nodelay", RS, ONE, Kind::Flag, "off"),
    spec("ssl_certificate", RS, ONE, Kind::Text, ""),
    spec("ssl_certificate_key", RS, ONE, Kind::Text, ""),
];

/// The RTMP port when `listen` gives none, or a server has no `listen` at all.
pub const DEFAULT_PORT: u16 = 1935;

/// RTMP's smallest chunk size (RTMP 1.0, 5.4.1); smaller values break clients.
const MIN_CHUNK_SIZE: u64 = 128;
/// RTMP message lengths are 24-bit, so a chunk larger than that can never fill.
const MAX_CHUNK_SIZE: u64 = 0xFF_FFFF;

/// Connection-level settings (nginx-rtmp's core module); rtmp/server level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConf {
    /// `timeout`: drop a connection silent for this long (60s).
    pub timeout: Duration,
    /// `ping`: interval between pings (60s; zero means no pings).
    pub ping: Duration,
    /// `ping_timeout`: drop the client when a ping goes unanswered this long (30s).
    pub ping_timeout: Duration,
    /// `max_streams`: most message streams per connection (32).
    pub max_streams: u32,
    /// `ack_window`: acknowledgement window announced to peers (5000000).
    pub ack_window: u32,
    /// `chunk_size`: outgoing chunk size (4096).
    pub chunk_size: u32,
    /// `max_message`: largest incoming message accepted (1M).
    pub max_message: u32,
    /// `out_queue`: messages queued per player before dropping (256).
    pub out_queue: usize,
    /// `out_cork`: messages to gather before a write (out_queue / 8).
    pub out_cork: usize,
    /// `buflen`: client buffer length announced (1000ms).
    pub buflen: Duration,
    /// `busy`: mark busy connections in the process title (off; no effect in sluice).
    pub busy: bool,
    /// `play_time_fix`: make played timestamps start at zero (on).
    pub play_time_fix: bool,
    /// `publish_time_fix`: make published timestamps start at zero (on).
    pub publish_time_fix: bool,
    /// `so_keepalive`: TCP keepalive on accepted sockets (off).
    pub so_keepalive: bool,
    /// `tcp_nodelay` (sluice extension, nginx's http name): send every write at once instead
    /// of letting Nagle's algorithm merge small writes while data is unacknowledged (off, as
    /// nginx-rtmp: fewer, fuller packets to players at the cost of up to one round trip).
    pub tcp_nodelay: bool,
}

/// Core settings as written at one level; `None` means "not set here".
#[derive(Debug, Clone, Default)]
pub(crate) struct CoreLayer {
    timeout: Option<Duration>,
    ping: Option<Duration>,
    ping_timeout: Option<Duration>,
    max_streams: Option<u32>,
    ack_window: Option<u32>,
    chunk_size: Option<u32>,
    max_message: Option<u32>,
    out_queue: Option<usize>,
    out_cork: Option<usize>,
    buflen: Option<Duration>,
    busy: Option<bool>,
    play_time_fix: Option<bool>,
    publish_time_fix: Option<bool>,
    so_keepalive: Option<bool>,
    tcp_nodelay: Option<bool>,
    /// `ssl_certificate` as written, and where (`-t` names the line of a file it cannot use).
    ssl_certificate: Option<(String, Span)>,
    ssl_certificate_key: Option<(String, Span)>,
}

impl CoreLayer {
    /// Applies one directive from [`DIRECTIVES`] (already checked for context and shape).
    pub(crate) fn set(&mut self, d: &Directive) -> Result<(), Fail> {
        let u32_max = u64::from(u32::MAX);
        match d.name.as_str() {
            "timeout" => put(&mut self.timeout, time(d)?, d),
            "ping" => put(&mut self.ping, time(d)?, d),
            "ping_timeout" => put(&mut self.ping_timeout, time(d)?, d),
            "max_streams" => put(&mut self.max_streams, number_in(d, 1, 0xFFFF)?, d),
            "ack_window" => put(&mut self.ack_window, number_in(d, 1, u32_max)?, d),
            "chunk_size" => put(&mut self.chunk_size, number_in(d, MIN_CHUNK_SIZE, MAX_CHUNK_SIZE)?, d),
            "max_message" => put(&mut self.max_message, size_in(d, 1, u32_max)?, d),
            "out_queue" => put(&mut self.out_queue, queue_len(d, 1)?, d),
            "out_cork" => put(&mut self.out_cork, queue_len(d, 0)?, d),
            "buflen" => put(&mut self.buflen, time(d)?, d),
            "busy" => put(&mut self.busy, flag(d)?, d),
            "play_time_fix" => put(&mut self.play_time_fix, flag(d)?, d),
            "publish_time_fix" => put(&mut self.publish_time_fix, flag(d)?, d),
            "so_keepalive" => put(&mut self.so_keepalive, flag(d)?, d),
            "tcp_nodelay" => put(&mut self.tcp_nodelay, flag(d)?, d),
            "ssl_certificate" => put(&mut self.ssl_certificate, (text(d)?, d.span), d),
            "ssl_certificate_key" => put(&mut self.ssl_certificate_key, (text(d)?, d.span), d),
            other => Err(Fail::new(d.span, format!("directive \"{other}\" is not handled by core"))),
        }
    }

    /// Fills what this level leaves unset from the enclosing level (nginx's merge).
    pub(crate) fn inherit(&self, outer: &Self) -> Self {
        CoreLayer {
            timeout: self.timeout.or(outer.timeout),
            ping: self.ping.or(outer.ping),
            ping_timeout: self.ping_timeout.or(outer.ping_timeout),
            max_streams: self.max_streams.or(outer.max_streams),
            ack_window: self.ack_window.or(outer.ack_window),
            chunk_size: self.chunk_size.or(outer.chunk_size),
            max_message: self.max_message.or(outer.max_message),
            out_queue: self.out_queue.or(outer.out_queue),
            out_cork: self.out_cork.or(outer.out_cork),
            buflen: self.buflen.or(outer.buflen),
            busy: self.busy.or(outer.busy),
            play_time_fix: self.play_time_fix.or(outer.play_time_fix),
            publish_time_fix: self.publish_time_fix.or(outer.publish_time_fix),
            so_keepalive: self.so_keepalive.or(outer.so_keepalive),
            tcp_nodelay: self.tcp_nodelay.or(outer.tcp_nodelay),
            ssl_certificate: self.ssl_certificate.clone().or_else(|| outer.ssl_certificate.clone()),
            ssl_certificate_key: self.ssl_certificate_key.clone().or_else(|| outer.ssl_certificate_key.clone()),
        }
    }

    /// Applies the defaults (nginx-rtmp's `ngx_rtmp_core_merge_srv_conf`).
    pub(crate) fn build(&self) -> CoreConf {
        let out_queue = self.out_queue.unwrap_or(256);
        CoreConf {
            timeout: self.timeout.unwrap_or(Duration::from_secs(60)),
            ping: self.ping.unwrap_or(Duration::from_secs(60)),
            ping_timeout: self.ping_timeout.unwrap_or(Duration::from_secs(30)),
            max_streams: self.max_streams.unwrap_or(32),
            ack_window: self.ack_window.unwrap_or(5_000_000),
            chunk_size: self.chunk_size.unwrap_or(4096),
            max_message: self.max_message.unwrap_or(1024 * 1024),
            out_queue,
            out_cork: self.out_cork.unwrap_or(out_queue / 8),
            buflen: self.buflen.unwrap_or(Duration::from_millis(1000)),
            busy: self.busy.unwrap_or(false),
            play_time_fix: self.play_time_fix.unwrap_or(true),
            publish_time_fix: self.publish_time_fix.unwrap_or(true),
            so_keepalive: self.so_keepalive.unwrap_or(false),
            tcp_nodelay: self.tcp_nodelay.unwrap_or(false),
        }
    }
}

/// `ssl_certificate` and `ssl_certificate_key` (nginx's names and meaning): what a server's
/// `listen ... ssl` addresses (RTMPS) present to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConf {
    /// PEM certificate chain, the server's certificate first.
    pub certificate: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1); may be the certificate's file.
    pub certificate_key: PathBuf,
}

impl CoreLayer {
    /// The certificate and key of a server whose first `listen ... ssl` is at `ssl_at`,
    /// checked as nginx checks them: the listen needs a certificate, the certificate a key;
    /// both are read and must go together. Relative paths resolve against `base`, the main
    /// configuration file's directory (nginx's conf prefix with `-c FILE`). `None` for a
    /// server without `ssl`, whose certificate, if any, nothing would use.
    pub(crate) fn tls(&self, ssl_at: Option<Span>, base: &Path) -> Result<Option<TlsConf>, Fail> {
        let Some(ssl_at) = ssl_at else { return Ok(None) };
        let Some((cert, cert_at)) = &self.ssl_certificate else {
            let msg = "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive";
            return Err(Fail::new(ssl_at, msg));
        };
        let Some((key, key_at)) = &self.ssl_certificate_key else {
            return Err(Fail::new(
                *cert_at,
                format!("no \"ssl_certificate_key\" is defined for certificate \"{cert}\""),
            ));
        };
        let conf = TlsConf { certificate: base.join(cert), certificate_key: base.join(key) };
        match crate::tls::load(&conf) {
            Ok(_) => Ok(Some(conf)),
            Err(e) => Err(Fail::new(if e.is_key() { *key_at } else { *cert_at }, e.to_string())),
        }
    }
}

impl Default for CoreConf {
    fn default() -> Self {
        CoreLayer::default().build()
    }
}

/// A queue length (`out_queue`, `out_cork`): a size, bounded so a typo cannot reserve gigabytes.
fn queue_len(d: &Directive, min: u64) -> Result<usize, Fail> {
    let n = size_in(d, min, 1 << 20)?;
    Ok(n as usize)
}

/// Listen flags nginx accepts after the address. `ssl` makes the address speak RTMPS,
/// `proxy_protocol` makes its connections start with a PROXY protocol header; sluice uses
/// none of the others yet (`later::INERT_LISTEN_OPTIONS` says why for each; `bind` needs
/// nothing: every address is bound on its own anyway).
const LISTEN_OPTIONS: &[&str] = &[
    "ssl",
    "bind",
    "reuseport",
    "proxy_protocol",
    "deferred",
    "ipv6only",
    "so_keepalive",
    "backlog",
    "rcvbuf",
    "sndbuf",
];

/// A `listen` line of an rtmp server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listen {
    pub(crate) addr: SocketAddr,
    /// `ssl`: RTMPS.
    pub(crate) ssl: bool,
    /// `proxy_protocol`: a PROXY protocol header first (before TLS with `ssl`).
    pub(crate) proxy: bool,
}

/// `listen ADDR [options];` inside `rtmp { server { } }`.
pub(crate) fn listen(d: &Directive) -> Result<Listen, Fail> {
    let arg = first(d)?;
    let addr = parse_addr(&arg.value, DEFAULT_PORT)
        .ok_or_else(|| invalid(d, arg, "a port or address like 1935, 127.0.0.1:1935 or [::1]:1935"))?;
    for opt in &d.args[1..] {
        let key = opt.value.split('=').next().unwrap_or_default();
        if !LISTEN_OPTIONS.contains(&key) {
            let msg = format!("invalid parameter \"{}\" in \"listen\" directive", opt.value);
            return Err(Fail::new(opt.span, msg));
        }
    }
    let has = |flag: &str| d.args[1..].iter().any(|opt| opt.value == flag);
    Ok(Listen { addr, ssl: has("ssl"), proxy: has("proxy_protocol") })
}

/// Parses nginx listen addresses: `1935`, `*:1935`, `127.0.0.1:1935`, `[::1]:1935`,
/// `localhost:1935`, or an address alone (then `default_port`). Host names other than
/// `localhost` are not resolved: config parsing does no I/O.
pub fn parse_addr(s: &str, default_port: u16) -> Option<SocketAddr> {
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    if let Ok(port) = s.parse::<u16>() {
        return Some(SocketAddr::new(any, port));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(addr);
    }
    let (host, port) = split_host_port(s)?;
    let port = match port {
        Some(p) => p.parse::<u16>().ok()?,
        None => default_port,
    };
    let ip = match host {
        "*" => any,
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.trim_start_matches('[').trim_end_matches(']').parse().ok()?,
    };
    Some(SocketAddr::new(ip, port))
}

/// Splits `host[:port]`, where an IPv6 host is bracketed.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if s.starts_with('[') {
        let end = s.find(']')?;
        let rest = &s[end + 1..];
        return match rest.strip_prefix(':') {
            Some(port) => Some((&s[..=end], Some(port))),
            None if rest.is_empty() => Some((s, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((s, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ssl` marks its own listen; the certificate may come from `rtmp` level and is read only
    /// by a server that has an `ssl` listen.
    #[test]
    fn tls_ssl_listens_take_the_inherited_certificate() {
        let dir = std::env::temp_dir().join(format!("sluice-core-ssl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(dir.join("cert.pem"), c.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), c.signing_key.serialize_pem()).unwrap();
        let text = format!(
            "rtmp {{ ssl_certificate {0}/cert.pem; ssl_certificate_key {0}/key.pem;
                server {{ listen 1935; listen 1936 ssl; }}
                server {{ listen 1937; ssl_certificate_key /nonexistent.pem; }} }}",
            dir.display()
        );
        let parsed = super::super::Config::parse(&text, "t");
        std::fs::remove_dir_all(&dir).unwrap();
        let servers = parsed.unwrap().servers;
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(servers[0].listen, [addr("0.0.0.0:1935"), addr("0.0.0.0:1936")]);
        assert_eq!(servers[0].ssl_listen, [addr("0.0.0.0:1936")]);
        let tls = servers[0].tls.as_ref().expect("inherited from rtmp level");
        assert_eq!(tls.certificate, dir.join("cert.pem"));
        assert_eq!((servers[1].ssl_listen.len(), &servers[1].tls), (0, &None), "no ssl: the files are not read");
    }

    #[test]
    fn listen_addresses() {
        let a = |s: &str| parse_addr(s, 1935).map(|a| a.to_string());
        assert_eq!(a("1935").as_deref(), Some("0.0.0.0:1935"));
        assert_eq!(a("*:1936").as_deref(), Some("0.0.0.0:1936"));
        assert_eq!(a("127.0.0.1:1935").as_deref(), Some("127.0.0.1:1935"));
        assert_eq!(a("127.0.0.1").as_deref(), Some("127.0.0.1:1935"));
        assert_eq!(a("[::1]:1935").as_deref(), Some("[::1]:1935"));
        assert_eq!(a("[::]").as_deref(), Some("[::]:1935"));
        assert_eq!(a("localhost:8080").as_deref(), Some("127.0.0.1:8080"));
        for bad in ["", "65536", "example.com:1935", "1.2.3.4:x", "[::1", "[::1]x", "unix:/tmp/s"] {
            assert_eq!(a(bad), None, "{bad:?}");
        }
    }
}

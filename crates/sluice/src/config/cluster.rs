//! sluice's cluster directives: the stream directory in Redis (`cluster_redis`, `cluster_ttl`),
//! the address other nodes pull a server's streams from (`cluster_address`), and which
//! applications take part (`cluster`). See [`crate::cluster`] for what they do.

use std::fmt;
use std::time::Duration;

use nginx_conf::{Directive, Span};

use super::value::{
    ctx::{RS, RSA, RTMP},
    first, flag, put, spec, time, Args, DirectiveSpec, Fail, Kind,
};

const ONE: Args = Args::Exactly(1);

/// The cluster directive table.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    spec("cluster_redis", RTMP, ONE, Kind::Text, ""),
    spec("cluster_ttl", RTMP, ONE, Kind::Time, "5s"),
    spec("cluster_address", RS, ONE, Kind::Text, ""),
    // On by default; the table says "" so that `sluice -T` writes no `cluster on` line, which
    // would be warned about without `cluster_redis` (the docs say "on").
    spec("cluster", RSA, ONE, Kind::Flag, ""),
];

/// A registration's expiry when `cluster_ttl` is not written.
const TTL: Duration = Duration::from_secs(5);
/// The shortest `cluster_ttl`: the heartbeat runs every third of it.
const MIN_TTL: Duration = Duration::from_secs(1);

/// `cluster_redis redis://[:PASSWORD@]HOST[:PORT][/DB]`. Its `Debug` and [`RedisUrl::shown`]
/// never show the password; only [`RedisUrl::secret_url`] (for the client) has it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// As written.
    text: String,
    /// The host.
    pub host: String,
    /// The port (6379 when not written).
    pub port: u16,
    /// The database number (0 when not written).
    pub db: u32,
    /// Whether a password is given.
    pub has_password: bool,
}

impl RedisUrl {
    /// Parses `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`; `Err` says what is wrong (without
    /// the password).
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let Some(rest) = text.strip_prefix("redis://") else {
            let scheme = text.split_once("://").map_or("(none)", |(s, _)| s);
            return Err(format!("the URL must start with \"redis://\" (scheme {scheme:?}; TLS \"rediss://\" and sockets are not supported)"));
        };
        let (userinfo, hostpart) = match rest.rsplit_once('@') {
            Some((user, host)) => (Some(user), host),
            None => (None, rest),
        };
        if let Some(user) = userinfo {
            if !user.contains(':') || user.ends_with(':') {
                return Err("the part before \"@\" must be \":PASSWORD\" (or \"USER:PASSWORD\")".into());
            }
        }
        let (hostport, db) = match hostpart.split_once('/') {
            Some((hp, "")) => (hp, 0),
            Some((hp, db)) => (hp, db.parse::<u32>().map_err(|_| format!("the database {db:?} is not a number"))?),
            None => (hostpart, 0),
        };
        if hostport.contains(['?', '#']) {
            return Err("the URL takes no query or fragment".into());
        }
        let (host, port) = split_host_port(hostport, 6379)?;
        Ok(RedisUrl { text: text.to_owned(), host, port, db, has_password: userinfo.is_some() })
    }

    /// The URL with its password masked: for logs, the API, `/metrics`.
    pub fn shown(&self) -> String {
        let auth = if self.has_password { ":***@" } else { "" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("redis://{auth}{host}:{}/{}", self.port, self.db)
    }

    /// The URL as written, password included: only for the Redis client.
    pub fn secret_url(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

/// `HOST[:PORT]` (`[V6]:PORT` too) as relay URLs take it; `default` when no port is written.
fn split_host_port(text: &str, default: u16) -> Result<(String, u16), String> {
    let (host, port) = crate::relay::url::split_host_port(text, default).map_err(|e| e.to_string())?;
    if host.contains(['/', '@', ' ']) {
        return Err(format!("the host {host:?} is not valid"));
    }
    Ok((host, port))
}

/// `cluster_address rtmp://HOST:PORT`: checked and written back as `rtmp://HOST:PORT`.
pub fn parse_address(text: &str) -> Result<String, String> {
    let Some(rest) = text.strip_prefix("rtmp://") else {
        return Err("the address must be \"rtmp://HOST:PORT\"".into());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err("the address is \"rtmp://HOST:PORT\", without application, stream or query".into());
    }
    let has_port = if rest.starts_with('[') { rest.contains("]:") } else { rest.contains(':') };
    if !has_port {
        return Err("the address needs its port (\"rtmp://HOST:PORT\")".into());
    }
    let (host, port) = split_host_port(rest, 0)?;
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    Ok(format!("rtmp://{host}:{port}"))
}

/// The process-wide cluster settings (rtmp level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConf {
    /// `cluster_redis`: the stream directory; `None`: no directory.
    pub redis: Option<RedisUrl>,
    /// `cluster_ttl` (5s): a registration's expiry; the heartbeat runs every third of it.
    pub ttl: Duration,
    /// Where `cluster on` is written explicitly while `cluster_redis` is not (a warning).
    pub inert_on: Option<u32>,
}

impl Default for ClusterConf {
    fn default() -> Self {
        ClusterConf { redis: None, ttl: TTL, inert_on: None }
    }
}

impl ClusterConf {
    /// What `-t` and start-up warn about: `cluster on` without a directory does nothing.
    pub fn report(&self) -> Vec<String> {
        match (self.inert_on, &self.redis) {
            (Some(line), None) => vec![format!(
                "sluice: [warn] \"cluster on\" has no effect: \"cluster_redis\" is not set, so there is no stream directory, at line {line}"
            )],
            _ => Vec::new(),
        }
    }
}

/// Cluster settings as written at one level.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterLayer {
    redis: Option<RedisUrl>,
    ttl: Option<Duration>,
    address: Option<String>,
    cluster: Option<(bool, Span)>,
}

impl ClusterLayer {
    /// Applies one directive from [`DIRECTIVES`] (already checked for context and shape).
    pub(crate) fn set(&mut self, d: &Directive) -> Result<(), Fail> {
        match d.name.as_str() {
            "cluster_redis" => {
                let arg = first(d)?;
                let url = RedisUrl::parse(&arg.value)
                    .map_err(|why| Fail::new(arg.span, format!("invalid \"cluster_redis\": {why}")))?;
                put(&mut self.redis, url, d)
            }
            "cluster_ttl" => {
                let ttl = time(d)?;
                if ttl < MIN_TTL {
                    return Err(Fail::new(d.span, "\"cluster_ttl\" must be at least 1s"));
                }
                put(&mut self.ttl, ttl, d)
            }
            "cluster_address" => {
                let arg = first(d)?;
                let address = parse_address(&arg.value)
                    .map_err(|why| Fail::new(arg.span, format!("invalid \"cluster_address\": {why}")))?;
                put(&mut self.address, address, d)
            }
            "cluster" => put(&mut self.cluster, (flag(d)?, d.span), d),
            other => Err(Fail::new(d.span, format!("directive \"{other}\" is not handled by cluster"))),
        }
    }

    /// Fills what this level leaves unset from the enclosing level.
    pub(crate) fn inherit(&self, outer: &Self) -> Self {
        ClusterLayer {
            redis: self.redis.clone().or_else(|| outer.redis.clone()),
            ttl: self.ttl.or(outer.ttl),
            address: self.address.clone().or_else(|| outer.address.clone()),
            cluster: self.cluster.or(outer.cluster),
        }
    }

    /// `cluster_address` as merged.
    pub(crate) fn address(&self) -> Option<String> {
        self.address.clone()
    }

    /// `cluster` as merged (on by default).
    pub(crate) fn enabled(&self) -> bool {
        self.cluster.is_none_or(|(on, _)| on)
    }

    /// The line of a `cluster on` written at this level itself.
    pub(crate) fn explicit_on(&self) -> Option<u32> {
        self.cluster.filter(|(on, _)| *on).map(|(_, span)| span.line)
    }

    /// The rtmp-level settings (this is the rtmp level's layer).
    pub(crate) fn global(&self) -> ClusterConf {
        ClusterConf { redis: self.redis.clone(), ttl: self.ttl.unwrap_or(TTL), inert_on: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_parse_and_never_show_the_password() {
        let u = RedisUrl::parse("redis://:s3cret@10.0.0.5:6380/2").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db, u.has_password), ("10.0.0.5", 6380, 2, true));
        assert_eq!(u.shown(), "redis://:***@10.0.0.5:6380/2");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(u.secret_url(), "redis://:s3cret@10.0.0.5:6380/2");
        let u = RedisUrl::parse("redis://cache").unwrap();
        assert_eq!((u.port, u.db, u.shown().as_str()), (6379, 0, "redis://cache:6379/0"));
        assert_eq!(RedisUrl::parse("redis://[::1]:7000/").unwrap().shown(), "redis://[::1]:7000/0");
        assert!(RedisUrl::parse("redis://user:pw@h").unwrap().has_password);
    }

    #[test]
    fn bad_redis_urls_say_what_is_wrong() {
        for (text, says) in [
            ("http://h:6379", "must start with \"redis://\""),
            ("rediss://h", "must start with \"redis://\""),
            ("redis://", "has no host"),
            ("redis://::1", "brackets"),
            ("redis://h:0", "port"),
            ("redis://h:99999", "port"),
            ("redis://h/x", "database"),
            ("redis://pw@h", "\":PASSWORD\""),
            ("redis://h/0?x=1", "database"),
        ] {
            let e = RedisUrl::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        // The password is not repeated in an error.
        let e = RedisUrl::parse("redis://:topsecret@h:port").unwrap_err();
        assert!(!e.contains("topsecret"), "{e}");
    }

    #[test]
    fn addresses_need_scheme_host_and_port_only() {
        assert_eq!(parse_address("rtmp://10.0.0.1:1935").unwrap(), "rtmp://10.0.0.1:1935");
        assert_eq!(parse_address("rtmp://origin-a.example:1935/").unwrap(), "rtmp://origin-a.example:1935");
        assert_eq!(parse_address("rtmp://[::1]:1935").unwrap(), "rtmp://[::1]:1935");
        for bad in ["10.0.0.1:1935", "rtmp://h", "rtmp://h:1935/live", "rtmps://h:443", "rtmp://:1935"] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    fn parse(rtmp: &str) -> Result<crate::config::Config, String> {
        crate::config::Config::parse(&format!("rtmp {{ {rtmp} }}"), "t.conf").map_err(|e| e.to_string())
    }

    #[test]
    fn directives_merge_and_default() {
        let c = parse(
            "cluster_redis redis://:pw@127.0.0.1:6379/1; cluster_ttl 2s; cluster_address rtmp://10.0.0.1:1935; \
             server { application live { live on; } application local { live on; cluster off; } } \
             server { listen 1936; cluster_address rtmp://10.0.0.1:1936; application live { live on; } }",
        )
        .unwrap();
        assert_eq!(c.cluster.ttl, Duration::from_secs(2));
        assert_eq!(c.cluster.redis.as_ref().map(RedisUrl::shown).as_deref(), Some("redis://:***@127.0.0.1:6379/1"));
        assert_eq!(c.servers[0].cluster_address.as_deref(), Some("rtmp://10.0.0.1:1935"));
        assert_eq!(c.servers[1].cluster_address.as_deref(), Some("rtmp://10.0.0.1:1936"));
        assert!(c.servers[0].apps[0].cluster && !c.servers[0].apps[1].cluster);
        assert!(c.inert_report().is_empty(), "{:?}", c.inert_report());
        assert!(!format!("{c:?}").contains("pw@"), "the password is not in the config's Debug");
        let c = parse("server { application live { live on; } }").unwrap();
        assert_eq!((c.cluster.redis.as_ref(), c.cluster.ttl), (None, TTL));
    }

    #[test]
    fn config_errors_name_what_is_wrong() {
        let e = parse("cluster_redis http://h:6379; server { }").unwrap_err();
        assert!(
            e.starts_with("t.conf:1:") && e.contains("invalid \"cluster_redis\": the URL must start with \"redis://\""),
            "{e}"
        );
        let e = parse("cluster_redis redis://:pw@h:x; server { }").unwrap_err();
        assert!(e.contains("port") && !e.contains("pw"), "{e}");
        let e = parse("cluster_ttl 500ms; server { }").unwrap_err();
        assert!(e.contains("at least 1s"), "{e}");
        let e = parse("server { cluster_redis redis://h; }").unwrap_err();
        assert!(e.contains("not allowed here"), "{e}");
        let e = parse("server { cluster_address 10.0.0.1:1935; }").unwrap_err();
        assert!(e.contains("invalid \"cluster_address\""), "{e}");
        // A live application in the cluster needs its server's address...
        let e = parse("cluster_redis redis://h; server { application live { live on; } }").unwrap_err();
        assert!(e.contains("application \"live\"") && e.contains("no \"cluster_address\""), "{e}");
        // ... unless it takes no part.
        assert!(parse("cluster_redis redis://h; server { application live { live on; cluster off; } }").is_ok());
        assert!(parse("cluster_redis redis://h; server { application vod { } }").is_ok());
    }

    #[test]
    fn cluster_on_without_a_directory_warns() {
        let c = parse("server { application live { live on; cluster on; } }").unwrap();
        let report = c.inert_report();
        assert!(
            report
                .iter()
                .any(|l| l.starts_with("sluice: [warn] \"cluster on\" has no effect") && l.ends_with("line 1")),
            "{report:?}"
        );
        // The default (not written) says nothing, nor does `cluster off`.
        assert!(parse("server { application live { live on; cluster off; } }").unwrap().inert_report().is_empty());
        assert!(parse("server { application live { live on; } }").unwrap().inert_report().is_empty());
    }
}

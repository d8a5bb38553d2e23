//! Who may publish and play: nginx-rtmp's access module (`ngx_rtmp_access_module.c`: `allow`,
//! `deny`), its limit module (`max_connections`), and sluice's signed stream keys (`auth_secret`,
//! `auth`, `publish_key`), which need no callback backend.
//!
//! Rules are kept in file order and the first match wins. An application with no rule of its
//! own takes the server's (and a server with none takes the `rtmp` block's), as nginx-rtmp's
//! merge does; an application with any rule uses only its own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nginx_conf::{Arg, Directive};

use super::value::{
    ctx::{RS, RSA},
    first, invalid, number_in, one_of, put, spec, text, Args, DirectiveSpec, Fail, Kind,
};

const ONE: Args = Args::Exactly(1);
const SCOPES: &[&str] = &["off", "publish", "play", "both"];

/// The access directive table.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    spec("allow", RSA, Args::Between(1, 2), Kind::Text, ""),
    spec("deny", RSA, Args::Between(1, 2), Kind::Text, ""),
    // nginx-rtmp's limit module; sluice counts per `server` block.
    spec("max_connections", RS, ONE, Kind::Number, ""),
    // sluice extensions: signed stream keys and static publish keys.
    spec("auth_secret", RSA, ONE, Kind::Text, ""),
    spec("auth", RSA, ONE, Kind::OneOf(SCOPES), "publish"),
    spec("publish_key", RSA, Args::Exactly(2), Kind::Text, ""),
];

/// What a rule or a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Publishing a stream.
    Publish,
    /// Playing a stream.
    Play,
}

impl Action {
    /// `publish` or `play`, as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Play => "play",
        }
    }
}

/// Which addresses a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrMatch {
    /// `all`: every address, IPv4 and IPv6.
    All,
    /// An IPv4 network: address bits under the mask.
    V4 {
        /// The network address (host bits cleared).
        addr: u32,
        /// The netmask.
        mask: u32,
    },
    /// An IPv6 network.
    V6 {
        /// The network address (host bits cleared).
        addr: u128,
        /// The netmask.
        mask: u128,
    },
}

impl AddrMatch {
    /// True when `ip` is inside. IPv4-mapped IPv6 peers (`::ffff:10.0.0.1`, what a dual-stack
    /// listener reports) are matched as IPv4, as nginx-rtmp does; rules written that way were
    /// made IPv4 rules when the config was read (see [`addr_match`]).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip.to_canonical()) {
            (AddrMatch::All, _) => true,
            (AddrMatch::V4 { addr, mask }, IpAddr::V4(ip)) => u32::from(ip) & mask == addr,
            (AddrMatch::V6 { addr, mask }, IpAddr::V6(ip)) => u128::from(ip) & mask == addr,
            _ => false,
        }
    }
}

/// One `allow`/`deny` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    /// `allow` (true) or `deny` (false).
    pub allow: bool,
    /// Applies to publishing.
    pub publish: bool,
    /// Applies to playing.
    pub play: bool,
    /// The addresses covered.
    pub addr: AddrMatch,
    /// The line as written (`deny publish all`), for logs.
    pub text: String,
    /// Its line in the config file, for logs.
    pub line: u32,
}

impl AccessRule {
    /// True when this rule decides `action` for `ip`.
    pub fn matches(&self, action: Action, ip: IpAddr) -> bool {
        let covers = match action {
            Action::Publish => self.publish,
            Action::Play => self.play,
        };
        covers && self.addr.contains(ip)
    }
}

/// Which actions need a signed token (`auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScope {
    /// No token needed.
    Off,
    /// Publishing needs a token (the default once `auth_secret` is set).
    Publish,
    /// Playing needs a token.
    Play,
    /// Both need one.
    Both,
}

impl AuthScope {
    /// True when `action` needs a token.
    pub fn covers(self, action: Action) -> bool {
        matches!(
            (self, action),
            (AuthScope::Both, _) | (AuthScope::Publish, Action::Publish) | (AuthScope::Play, Action::Play)
        )
    }
}

/// Access settings of one application, merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessConf {
    /// `allow`/`deny` rules in order (the application's own, else the server's, else rtmp's).
    pub rules: Vec<AccessRule>,
    /// `auth_secret`: the HMAC key of signed stream keys (none: no tokens).
    pub auth_secret: Option<String>,
    /// `auth`: which actions need a token when `auth_secret` is set (publish).
    pub auth: AuthScope,
    /// `publish_key STREAM SECRET` lines: a listed stream is published with `?key=SECRET`.
    pub publish_keys: Vec<(String, String)>,
}

impl Default for AccessConf {
    fn default() -> Self {
        AccessLayer::default().build()
    }
}

/// Access settings as written at one level; `None` means "not set here".
#[derive(Debug, Clone, Default)]
pub(crate) struct AccessLayer {
    rules: Option<Vec<AccessRule>>,
    max_connections: Option<u32>,
    auth_secret: Option<String>,
    auth: Option<AuthScope>,
    publish_keys: Option<Vec<(String, String)>>,
}

impl AccessLayer {
    /// Applies one directive from [`DIRECTIVES`] (already checked for context and shape).
    pub(crate) fn set(&mut self, d: &Directive) -> Result<(), Fail> {
        match d.name.as_str() {
            "allow" | "deny" => {
                self.rules.get_or_insert_with(Vec::new).push(rule(d)?);
                Ok(())
            }
            "max_connections" => put(&mut self.max_connections, number_in(d, 1, u64::from(u32::MAX))?, d),
            "auth_secret" => put(&mut self.auth_secret, secret(d)?, d),
            "auth" => put(&mut self.auth, scope(d)?, d),
            "publish_key" => {
                let (stream, key) = (&d.args[0], &d.args[1]);
                if stream.value.is_empty() || stream.value.contains(['?', '/']) {
                    return Err(invalid(d, stream, "a stream name without \"?\" or \"/\""));
                }
                if key.value.is_empty() {
                    return Err(invalid(d, key, "a non-empty key"));
                }
                let keys = self.publish_keys.get_or_insert_with(Vec::new);
                if keys.iter().any(|(s, _)| *s == stream.value) {
                    return Err(Fail::new(
                        d.span,
                        format!("duplicate \"publish_key\" for stream \"{}\"", stream.value),
                    ));
                }
                keys.push((stream.value.clone(), key.value.clone()));
                Ok(())
            }
            other => Err(Fail::new(d.span, format!("directive \"{other}\" is not handled by access"))),
        }
    }

    /// Fills what this level leaves unset from the enclosing level. Rule lists and key lists
    /// are taken whole: a level with any rule of its own ignores the outer rules.
    pub(crate) fn inherit(&self, outer: &Self) -> Self {
        AccessLayer {
            rules: self.rules.clone().or_else(|| outer.rules.clone()),
            max_connections: self.max_connections.or(outer.max_connections),
            auth_secret: self.auth_secret.clone().or_else(|| outer.auth_secret.clone()),
            auth: self.auth.or(outer.auth),
            publish_keys: self.publish_keys.clone().or_else(|| outer.publish_keys.clone()),
        }
    }

    /// `max_connections` (none: no limit).
    pub(crate) fn max_connections(&self) -> Option<u32> {
        self.max_connections
    }

    /// Settings that cannot work together, once merged for an application.
    pub(crate) fn check(&self) -> Result<(), String> {
        // `auth publish` is the default, so writing it alone changes nothing.
        if matches!(self.auth, Some(AuthScope::Play | AuthScope::Both)) && self.auth_secret.is_none() {
            return Err("\"auth\" needs \"auth_secret\"".into());
        }
        Ok(())
    }

    /// Applies the defaults.
    pub(crate) fn build(&self) -> AccessConf {
        AccessConf {
            rules: self.rules.clone().unwrap_or_default(),
            auth_secret: self.auth_secret.clone(),
            auth: self.auth.unwrap_or(AuthScope::Publish),
            publish_keys: self.publish_keys.clone().unwrap_or_default(),
        }
    }
}

/// `allow|deny [publish|play] ADDR|CIDR|all`.
fn rule(d: &Directive) -> Result<AccessRule, Fail> {
    let (publish, play, target) = match d.args.as_slice() {
        [target] => (true, true, target),
        [what, target] => {
            let action = one_of(d, what, &[("publish", Action::Publish), ("play", Action::Play)])?;
            (action == Action::Publish, action == Action::Play, target)
        }
        _ => return Err(Fail::new(d.span, format!("invalid number of arguments in \"{}\" directive", d.name))),
    };
    let addr = addr_match(d, target)?;
    let text = std::iter::once(d.name.as_str()).chain(d.args.iter().map(|a| a.value.as_str())).collect::<Vec<_>>();
    Ok(AccessRule { allow: d.name == "allow", publish, play, addr, text: text.join(" "), line: d.span.line })
}

/// What an `allow`/`deny` address must be, for the error of one that is not (rtmp and http).
pub(crate) const ADDR_MUST: &str = "\"all\", an IPv4 or IPv6 address, or a network like 10.0.0.0/8 or 2001:db8::/32";

/// `all`, an address, or an address with a prefix length ([`parse_addr`]), with a warning when
/// host bits under the prefix were set (nginx warns that they are meaningless; so do we).
fn addr_match(d: &Directive, arg: &Arg) -> Result<AddrMatch, Fail> {
    let m = parse_addr(&arg.value).ok_or_else(|| invalid(d, arg, ADDR_MUST))?;
    let host = arg.value.split_once('/').and_then(|(ip, _)| parse_addr(ip));
    let cleared = match (m, host) {
        (AddrMatch::V4 { addr, .. }, Some(AddrMatch::V4 { addr: full, .. })) => addr != full,
        (AddrMatch::V6 { addr, .. }, Some(AddrMatch::V6 { addr: full, .. })) => addr != full,
        _ => false,
    };
    if cleared {
        let net = match m {
            AddrMatch::V4 { addr, .. } => IpAddr::V4(Ipv4Addr::from(addr)).to_string(),
            AddrMatch::V6 { addr, .. } => IpAddr::V6(Ipv6Addr::from(addr)).to_string(),
            AddrMatch::All => String::new(),
        };
        tracing::warn!(line = arg.span.line, "low address bits of {} are meaningless (network {net})", arg.value);
    }
    Ok(m)
}

/// `all`, `ADDR` or `ADDR/BITS`, with host bits cleared as nginx does: the one parser of
/// `allow`/`deny` addresses, for rtmp and http alike. An IPv4-mapped IPv6
/// network (`::ffff:10.0.0.0/104`) becomes the IPv4 one: peers are matched in that form.
pub(crate) fn parse_addr(s: &str) -> Option<AddrMatch> {
    if s == "all" {
        return Some(AddrMatch::All);
    }
    let (ip, bits) = match s.split_once('/') {
        Some((ip, bits)) if !bits.starts_with('+') => (ip.parse::<IpAddr>().ok()?, Some(bits.parse::<u32>().ok()?)),
        Some(_) => return None,
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let (ip, bits) = match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && bits.is_none_or(|b| (96..=128).contains(&b)) => {
            (IpAddr::V4(v6.to_ipv4_mapped()?), bits.map(|b| b - 96))
        }
        ip => (ip, bits),
    };
    Some(match ip {
        IpAddr::V4(v4) => {
            let bits = bits.unwrap_or(32);
            let mask = u32::MAX.checked_shl(32u32.checked_sub(bits)?).unwrap_or(0);
            AddrMatch::V4 { addr: u32::from(v4) & mask, mask }
        }
        IpAddr::V6(v6) => {
            let bits = bits.unwrap_or(128);
            let mask = u128::MAX.checked_shl(128u32.checked_sub(bits)?).unwrap_or(0);
            AddrMatch::V6 { addr: u128::from(v6) & mask, mask }
        }
    })
}

fn secret(d: &Directive) -> Result<String, Fail> {
    let s = text(d)?;
    if s.is_empty() {
        return Err(invalid(d, first(d)?, "a non-empty secret"));
    }
    Ok(s)
}

fn scope(d: &Directive) -> Result<AuthScope, Fail> {
    let options = [
        ("off", AuthScope::Off),
        ("publish", AuthScope::Publish),
        ("play", AuthScope::Play),
        ("both", AuthScope::Both),
    ];
    one_of(d, first(d)?, &options)
}

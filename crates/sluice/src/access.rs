//! Access decisions that need no I/O: nginx-rtmp's `allow`/`deny` rules and `max_connections`,
//! and the counters of every decision (accepted, refused by reason) for logs and stats.
//!
//! | directive | where | what |
//! |---|---|---|
//! | `allow [publish\|play] ADDR\|CIDR\|all` | rtmp, server, application | allow; first matching rule wins |
//! | `deny [publish\|play] ADDR\|CIDR\|all` | rtmp, server, application | refuse with `NetStream.Publish.BadName` / `NetStream.Play.Failed` |
//! | `max_connections N` | rtmp, server | more clients than N at once get `NetConnection.Connect.Rejected` |
//!
//! With no rule matching, the client is allowed (as in nginx-rtmp), so a rule list meant to
//! restrict ends with `deny ... all`. Signed keys are in [`crate::auth`], callbacks in
//! [`crate::notify`], and [`crate::policy`] applies them in order and counts each decision;
//! the config side is `config/access.rs`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::{AccessRule, Action};

/// What the rules say about one client and action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleVerdict<'a> {
    /// No rule matched: allowed.
    NoMatch,
    /// An `allow` rule matched.
    Allowed(&'a AccessRule),
    /// A `deny` rule matched.
    Denied(&'a AccessRule),
}

/// Why a request that carries no play arguments (an HTTP GET of a recording, an RTMP
/// `getStreamLength`) may not learn about the application's content, if so: its players are
/// checked by callbacks or signed keys such a request cannot carry, or its play rules deny
/// `client`.
pub fn plain_request_refusal(app: &crate::config::AppConf, client: Option<IpAddr>) -> Option<&'static str> {
    if app.notify.on_play.is_some() || app.notify.on_connect.is_some() {
        return Some("the application's players are checked by on_connect/on_play");
    }
    if app.access.auth_secret.is_some() && app.access.auth.covers(Action::Play) {
        return Some("the application's players need a signed key");
    }
    let Some(ip) = client else { return Some("no client address to check the play rules against") };
    match check_rules(&app.access.rules, Action::Play, ip) {
        RuleVerdict::Denied(_) => Some("denied by the application's play rules"),
        _ => None,
    }
}

/// The first rule covering `action` for `ip` decides.
pub fn check_rules(rules: &[AccessRule], action: Action, ip: IpAddr) -> RuleVerdict<'_> {
    match rules.iter().find(|r| r.matches(action, ip)) {
        None => RuleVerdict::NoMatch,
        Some(r) if r.allow => RuleVerdict::Allowed(r),
        Some(r) => RuleVerdict::Denied(r),
    }
}

/// Counts the clients of one `server` block against `max_connections`.
#[derive(Debug)]
pub struct ConnectionLimit {
    max: Option<usize>,
    current: Arc<AtomicUsize>,
}

/// One counted connection; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionPermit {
    current: Arc<AtomicUsize>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.current.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionLimit {
    /// A limit of `max` connections (none: unlimited, but still counted).
    pub fn new(max: Option<u32>) -> Self {
        ConnectionLimit { max: max.map(|m| m as usize), current: Arc::new(AtomicUsize::new(0)) }
    }

    /// The same count under a new `max` (a reload's `max_connections`).
    pub fn with_max(&self, max: Option<u32>) -> Self {
        ConnectionLimit { max: max.map(|m| m as usize), current: self.current.clone() }
    }

    /// A place for one more connection, or `None` when `max_connections` are connected.
    pub fn try_acquire(&self) -> Option<ConnectionPermit> {
        let max = self.max.unwrap_or(usize::MAX);
        let taken = self.current.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        taken.ok().map(|_| ConnectionPermit { current: self.current.clone() })
    }

    /// Connections counted now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Acquire)
    }

    /// The configured limit.
    pub fn max(&self) -> Option<usize> {
        self.max
    }
}

/// What a client asked for when a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `connect`.
    Connect,
    /// `publish`.
    Publish,
    /// `play`.
    Play,
    /// A periodic `on_update` while publishing or playing.
    Update,
}

impl Stage {
    const ALL: [Stage; 4] = [Stage::Connect, Stage::Publish, Stage::Play, Stage::Update];

    /// The stage's name in logs and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Publish => "publish",
            Stage::Play => "play",
            Stage::Update => "update",
        }
    }
}

impl From<Action> for Stage {
    fn from(a: Action) -> Self {
        match a {
            Action::Publish => Stage::Publish,
            Action::Play => Stage::Play,
        }
    }
}

/// Why a client was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A `deny` rule matched.
    Rule,
    /// `max_connections` clients were connected.
    MaxConnections,
    /// No valid signed token (missing, malformed, wrong or expired).
    Token,
    /// A `publish_key` stream without its key.
    PublishKey,
    /// The callback answered with a refusing status.
    CallbackStatus,
    /// The callback did not answer within `notify_timeout`.
    CallbackTimeout,
    /// The callback server could not be reached (or TLS failed).
    CallbackUnreachable,
    /// The callback redirected to an `rtmp://` URL and the source cannot relay
    /// ([`crate::policy::Policy::relays`]).
    CallbackRelay,
    /// The callback redirected to something that cannot be used (no such application).
    CallbackRedirect,
}

impl Refusal {
    const ALL: [Refusal; 9] = [
        Refusal::Rule,
        Refusal::MaxConnections,
        Refusal::Token,
        Refusal::PublishKey,
        Refusal::CallbackStatus,
        Refusal::CallbackTimeout,
        Refusal::CallbackUnreachable,
        Refusal::CallbackRelay,
        Refusal::CallbackRedirect,
    ];

    /// The reason's name in logs and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Rule => "rule",
            Refusal::MaxConnections => "max_connections",
            Refusal::Token => "token",
            Refusal::PublishKey => "publish_key",
            Refusal::CallbackStatus => "callback_status",
            Refusal::CallbackTimeout => "callback_timeout",
            Refusal::CallbackUnreachable => "callback_unreachable",
            Refusal::CallbackRelay => "callback_relay",
            Refusal::CallbackRedirect => "callback_redirect",
        }
    }
}

/// Accepted and refused clients since start, server-wide (the stats module exports them).
#[derive(Debug, Default)]
pub struct Counters {
    accepted: [AtomicU64; Stage::ALL.len()],
    refused: [AtomicU64; Refusal::ALL.len()],
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CountersSnapshot {
    /// Accepted decisions per stage, e.g. `("publish", 3)`.
    pub accepted: Vec<(&'static str, u64)>,
    /// Refusals per reason, e.g. `("rule", 1)`.
    pub refused: Vec<(&'static str, u64)>,
}

impl CountersSnapshot {
    /// Accepted decisions of one stage.
    pub fn accepted(&self, stage: Stage) -> u64 {
        self.accepted.iter().find(|(n, _)| *n == stage.as_str()).map_or(0, |(_, v)| *v)
    }

    /// Refusals for one reason.
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refused.iter().find(|(n, _)| *n == reason.as_str()).map_or(0, |(_, v)| *v)
    }
}

impl Counters {
    /// Count an accepted connect, publish, play or update.
    pub fn accept(&self, stage: Stage) {
        self.accepted[stage as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Count a refusal.
    pub fn refuse(&self, reason: Refusal) {
        self.refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> CountersSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CountersSnapshot {
            accepted: Stage::ALL.iter().map(|s| (s.as_str(), load(&self.accepted[*s as usize]))).collect(),
            refused: Refusal::ALL.iter().map(|r| (r.as_str(), load(&self.refused[*r as usize]))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The merged access rules of application `app` in `conf`.
    fn rules(conf: &str, app: &str) -> Vec<AccessRule> {
        let c = Config::parse(conf, "test.conf").unwrap();
        c.servers[0].apps.iter().find(|a| a.name == app).unwrap().access.rules.clone()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn verdict(rules: &[AccessRule], action: Action, addr: &str) -> Option<(bool, String)> {
        match check_rules(rules, action, ip(addr)) {
            RuleVerdict::NoMatch => None,
            RuleVerdict::Allowed(r) => Some((true, r.text.clone())),
            RuleVerdict::Denied(r) => Some((false, r.text.clone())),
        }
    }

    const BASIC: &str = "rtmp { server { listen 1935; application live {
        allow publish 127.0.0.1;
        allow publish 10.1.0.0/16;
        deny publish all;
        allow play 192.168.0.0/24;
        allow play 2001:db8::/32;
        deny play 192.168.1.0/24;
        deny play ::1;
    } } }";

    #[test]
    fn first_matching_rule_wins() {
        let r = rules(BASIC, "live");
        assert_eq!(verdict(&r, Action::Publish, "127.0.0.1"), Some((true, "allow publish 127.0.0.1".into())));
        assert_eq!(verdict(&r, Action::Publish, "127.0.0.2"), Some((false, "deny publish all".into())));
        assert_eq!(verdict(&r, Action::Publish, "10.1.200.3"), Some((true, "allow publish 10.1.0.0/16".into())));
        assert_eq!(verdict(&r, Action::Publish, "10.2.0.1"), Some((false, "deny publish all".into())));
        // `deny publish all` says nothing about playing.
        assert_eq!(verdict(&r, Action::Play, "10.2.0.1"), None);
        assert_eq!(verdict(&r, Action::Play, "192.168.0.77"), Some((true, "allow play 192.168.0.0/24".into())));
        assert_eq!(verdict(&r, Action::Play, "192.168.1.77"), Some((false, "deny play 192.168.1.0/24".into())));
    }

    #[test]
    fn ipv6_rules_and_mapped_ipv4() {
        let r = rules(BASIC, "live");
        assert_eq!(verdict(&r, Action::Play, "2001:db8:1::5"), Some((true, "allow play 2001:db8::/32".into())));
        assert_eq!(verdict(&r, Action::Play, "2001:db9::5"), None);
        assert_eq!(verdict(&r, Action::Play, "::1"), Some((false, "deny play ::1".into())));
        // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d: matched as IPv4.
        assert_eq!(verdict(&r, Action::Publish, "::ffff:127.0.0.1"), Some((true, "allow publish 127.0.0.1".into())));
        assert_eq!(verdict(&r, Action::Publish, "::ffff:8.8.8.8"), Some((false, "deny publish all".into())));
        // IPv4 rules never match real IPv6 peers, but `all` does.
        assert_eq!(verdict(&r, Action::Publish, "2001:db8::1"), Some((false, "deny publish all".into())));
    }

    /// Issue #9, defect 13: a rule written IPv4-mapped (`::ffff:10.0.0.0/104`) never matched,
    /// because peers are compared as IPv4.
    #[test]
    fn ipv4_mapped_rules_match_ipv4_peers_either_way() {
        let r = rules(
            "rtmp { server { application a {
                allow publish ::ffff:127.0.0.1;
                allow publish ::ffff:10.0.0.0/104;
                deny publish ::ffff:0:0/96;
                allow play ::/0;
                deny play all;
            } } }",
            "a",
        );
        assert_eq!(r[0].addr, crate::config::AddrMatch::V4 { addr: 0x7F00_0001, mask: u32::MAX });
        assert_eq!(r[1].addr, crate::config::AddrMatch::V4 { addr: 0x0A00_0000, mask: 0xFF00_0000 });
        assert_eq!(r[2].addr, crate::config::AddrMatch::V4 { addr: 0, mask: 0 });
        for peer in ["127.0.0.1", "::ffff:127.0.0.1"] {
            assert_eq!(verdict(&r, Action::Publish, peer).map(|v| v.0), Some(true), "{peer}");
        }
        for peer in ["10.20.30.40", "::ffff:10.20.30.40"] {
            assert_eq!(verdict(&r, Action::Publish, peer), Some((true, "allow publish ::ffff:10.0.0.0/104".into())));
        }
        for peer in ["192.0.2.1", "::ffff:192.0.2.1"] {
            assert_eq!(verdict(&r, Action::Publish, peer), Some((false, "deny publish ::ffff:0:0/96".into())));
        }
        // A real IPv6 peer is not covered by the mapped range.
        assert_eq!(verdict(&r, Action::Publish, "2001:db8::1"), None);
        // `::/0` is an IPv6 rule: IPv4 peers (mapped or not) fall through to `deny play all`.
        assert_eq!(verdict(&r, Action::Play, "2001:db8::1").map(|v| v.0), Some(true));
        assert_eq!(verdict(&r, Action::Play, "::ffff:192.0.2.1").map(|v| v.0), Some(false));
        assert_eq!(verdict(&r, Action::Play, "192.0.2.1").map(|v| v.0), Some(false));
    }

    #[test]
    fn rule_without_action_covers_both() {
        let r = rules("rtmp { server { application a { deny 10.0.0.0/8; } } }", "a");
        assert_eq!(verdict(&r, Action::Publish, "10.9.9.9").map(|v| v.0), Some(false));
        assert_eq!(verdict(&r, Action::Play, "10.9.9.9").map(|v| v.0), Some(false));
        assert_eq!(verdict(&r, Action::Play, "11.0.0.1"), None);
    }

    #[test]
    fn host_bits_are_cleared_and_prefixes_checked() {
        let r = rules("rtmp { server { application a { allow play 10.1.2.3/8; allow play 0.0.0.0/0; } } }", "a");
        assert_eq!(r[0].addr, crate::config::AddrMatch::V4 { addr: 0x0A00_0000, mask: 0xFF00_0000 });
        assert_eq!(r[1].addr, crate::config::AddrMatch::V4 { addr: 0, mask: 0 });
        assert!(r[1].addr.contains(ip("203.0.113.9")));
        for bad in ["10.0.0.0/33", "10.0.0/8", "::1/129", "nothing", "10.0.0.0/-1", "10.0.0.0/+8"] {
            let text = format!("rtmp {{ server {{ application a {{ allow play {bad}; }} }} }}");
            let err = Config::parse(&text, "t.conf").unwrap_err().to_string();
            assert!(err.starts_with("t.conf:1:") && err.contains(bad), "{bad}: {err}");
        }
        let err = Config::parse("rtmp { server { application a {\n deny watch all; } } }", "t.conf").unwrap_err();
        assert!(err.to_string().starts_with("t.conf:2:7:"), "{err}");
    }

    #[test]
    fn applications_inherit_rules_unless_they_have_their_own() {
        let conf = "rtmp { deny play 10.0.0.0/8; server {
            allow publish 127.0.0.1; deny publish all;
            application inherits { live on; }
            application own { allow publish 10.0.0.1; }
        } server { listen 1936; application top { } } }";
        let inherited = rules(conf, "inherits");
        assert_eq!(
            inherited.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
            ["allow publish 127.0.0.1", "deny publish all"]
        );
        let own = rules(conf, "own");
        assert_eq!(own.len(), 1);
        assert_eq!(verdict(&own, Action::Publish, "127.0.0.1"), None, "the server's rules are not used");
        let c = Config::parse(conf, "t").unwrap();
        assert_eq!(c.servers[1].apps[0].access.rules[0].text, "deny play 10.0.0.0/8");
    }

    #[test]
    fn connection_limit_counts_and_frees() {
        let limit = ConnectionLimit::new(Some(2));
        let a = limit.try_acquire().unwrap();
        let _b = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.current(), 2);
        drop(a);
        assert!(limit.try_acquire().is_some());
        let unlimited = ConnectionLimit::new(None);
        let held: Vec<_> = (0..100).map(|_| unlimited.try_acquire().unwrap()).collect();
        assert_eq!(unlimited.current(), held.len());
    }

    #[test]
    fn max_connections_is_server_level() {
        let c = Config::parse("rtmp { max_connections 5; server { } server { listen 1936; max_connections 2; } }", "t")
            .unwrap();
        assert_eq!(c.servers[0].max_connections, Some(5));
        assert_eq!(c.servers[1].max_connections, Some(2));
        let err = Config::parse("rtmp { server { application a { max_connections 1; } } }", "t").unwrap_err();
        assert!(err.to_string().contains("not allowed here"), "{err}");
    }

    #[test]
    fn counters_count_by_stage_and_reason() {
        let c = Counters::default();
        c.accept(Stage::Publish);
        c.accept(Stage::Publish);
        c.refuse(Refusal::Rule);
        c.refuse(Refusal::CallbackTimeout);
        let s = c.snapshot();
        assert_eq!(s.accepted(Stage::Publish), 2);
        assert_eq!(s.accepted(Stage::Play), 0);
        assert_eq!(s.refused(Refusal::Rule), 1);
        assert_eq!(s.refused(Refusal::CallbackTimeout), 1);
        assert_eq!(s.refused.len(), Refusal::ALL.len());
    }
}

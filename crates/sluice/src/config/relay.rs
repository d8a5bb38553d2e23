//! nginx-rtmp's relay module (`ngx_rtmp_relay_module.c`): `push` and `pull` targets with their
//! parameters, the reconnect delays, `relay_buffer`, `session_relay`, plus sluice's
//! `relay_tls_verify` for `rtmps://` targets. URLs are checked here (see `crate::relay::url`),
//! so a bad target is a config error, not a log line at the first publish.

use std::time::Duration;

use nginx_conf::Directive;

use super::value::{
    ctx::{APP, RS, RSA},
    flag, put, spec, time, Args, DirectiveSpec, Fail, Kind,
};
use crate::relay::url;

const ONE: Args = Args::Exactly(1);
const ONE_UP: Args = Args::AtLeast(1);

/// The relay directive table.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    spec("push", APP, ONE_UP, Kind::Text, ""),
    spec("pull", APP, ONE_UP, Kind::Text, ""),
    spec("push_reconnect", RSA, ONE, Kind::Time, "3s"),
    spec("pull_reconnect", RSA, ONE, Kind::Time, "3s"),
    // nginx-rtmp: rtmp and server level only.
    spec("relay_buffer", RS, ONE, Kind::Time, "5s"),
    spec("session_relay", RSA, ONE, Kind::Flag, "off"),
    // sluice extension: how long an on-demand pull outlives its last player.
    spec("pull_linger", RSA, ONE, Kind::Time, "5s"),
    // sluice extension: check `rtmps://` targets' certificates against the system's roots.
    spec("relay_tls_verify", RSA, ONE, Kind::Flag, "on"),
];

const RECONNECT: Duration = Duration::from_secs(3);
const BUFFER: Duration = Duration::from_secs(5);
/// A player that reconnects (a page reload, ffmpeg or OBS retrying, a quality switch) is
/// usually back within a couple of seconds; holding an upstream for nobody costs 5 s of one
/// stream's bandwidth at most.
const LINGER: Duration = Duration::from_secs(5);

/// One `push` or `pull` line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayTarget {
    /// The URL as written (may hold `$name`, `$app`, `$args` after the host).
    pub url: String,
    /// `app=`: the remote application (default: the URL's).
    pub app: Option<String>,
    /// `name=`: relay only the local stream of this exact name (default: every stream).
    pub name: Option<String>,
    /// `tcUrl=`.
    pub tc_url: Option<String>,
    /// `pageUrl=`.
    pub page_url: Option<String>,
    /// `swfUrl=`.
    pub swf_url: Option<String>,
    /// `flashVer=`.
    pub flash_ver: Option<String>,
    /// `playPath=`: the remote stream name.
    pub play_path: Option<String>,
    /// `live=`.
    pub live: Option<i64>,
    /// `start=` (ms).
    pub start: Option<i64>,
    /// `stop=` (ms).
    pub stop: Option<i64>,
    /// `static`: a pull started at start-up that reconnects for ever.
    pub is_static: bool,
    /// sluice extension: more `rtmp://` URLs after the first on a `pull` line, the origins
    /// tried in order after `url` (failover). Empty for nginx-rtmp's one-URL lines.
    pub fallbacks: Vec<String>,
}

impl RelayTarget {
    /// Whether this target relays the local stream `name` (`name=` filter).
    pub fn matches(&self, name: &str) -> bool {
        self.name.as_deref().is_none_or(|n| n == name)
    }

    /// Every origin of a pull, in the order they are tried: `url`, then the fallbacks.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.url.as_str()).chain(self.fallbacks.iter().map(String::as_str))
    }
}

/// The relay settings of one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConf {
    /// `push` targets, in file order.
    pub push: Vec<RelayTarget>,
    /// `pull` targets, in file order.
    pub pull: Vec<RelayTarget>,
    /// `push_reconnect` (3s).
    pub push_reconnect: Duration,
    /// `pull_reconnect` (3s).
    pub pull_reconnect: Duration,
    /// `relay_buffer` (5s): the buffer length a pull announces after `play`.
    pub buffer: Duration,
    /// `session_relay` (off).
    pub session_relay: bool,
    /// `relay_tls_verify` (on).
    pub tls_verify: bool,
    /// `pull_linger` (5s): how long an on-demand pull keeps its upstream after its last
    /// player left.
    pub linger: Duration,
}

impl Default for RelayConf {
    fn default() -> Self {
        RelayLayer::default().build()
    }
}

/// Relay settings as written at one level; `None` means "not set here".
#[derive(Debug, Clone, Default)]
pub(crate) struct RelayLayer {
    push: Vec<RelayTarget>,
    pull: Vec<RelayTarget>,
    push_reconnect: Option<Duration>,
    pull_reconnect: Option<Duration>,
    buffer: Option<Duration>,
    session_relay: Option<bool>,
    tls_verify: Option<bool>,
    linger: Option<Duration>,
}

impl RelayLayer {
    /// Applies one directive from [`DIRECTIVES`] (already checked for context and shape).
    pub(crate) fn set(&mut self, d: &Directive) -> Result<(), Fail> {
        match d.name.as_str() {
            "push" => {
                let t = target(d)?;
                if t.is_static {
                    return Err(Fail::new(d.span, "static push is not allowed"));
                }
                if !t.fallbacks.is_empty() {
                    return Err(Fail::new(d.span, "\"push\" takes one URL; write one \"push\" line per remote"));
                }
                self.push.push(t);
                Ok(())
            }
            "pull" => {
                let t = target(d)?;
                if t.is_static && t.name.is_none() {
                    return Err(Fail::new(d.span, "static pull needs \"name=\""));
                }
                if t.is_static && !t.fallbacks.is_empty() {
                    return Err(Fail::new(d.span, "a static pull takes one URL"));
                }
                self.pull.push(t);
                Ok(())
            }
            "push_reconnect" => put(&mut self.push_reconnect, time(d)?, d),
            "pull_reconnect" => put(&mut self.pull_reconnect, time(d)?, d),
            "relay_buffer" => put(&mut self.buffer, time(d)?, d),
            "session_relay" => put(&mut self.session_relay, flag(d)?, d),
            "relay_tls_verify" => put(&mut self.tls_verify, flag(d)?, d),
            "pull_linger" => put(&mut self.linger, time(d)?, d),
            other => Err(Fail::new(d.span, format!("directive \"{other}\" is not handled by relay"))),
        }
    }

    /// Fills what this level leaves unset from the enclosing level (nginx's merge). Targets
    /// are written in applications only, so they are this level's.
    pub(crate) fn inherit(&self, outer: &Self) -> Self {
        RelayLayer {
            push: self.push.clone(),
            pull: self.pull.clone(),
            push_reconnect: self.push_reconnect.or(outer.push_reconnect),
            pull_reconnect: self.pull_reconnect.or(outer.pull_reconnect),
            buffer: self.buffer.or(outer.buffer),
            session_relay: self.session_relay.or(outer.session_relay),
            tls_verify: self.tls_verify.or(outer.tls_verify),
            linger: self.linger.or(outer.linger),
        }
    }

    /// Applies the defaults.
    pub(crate) fn build(&self) -> RelayConf {
        RelayConf {
            push: self.push.clone(),
            pull: self.pull.clone(),
            push_reconnect: self.push_reconnect.unwrap_or(RECONNECT),
            pull_reconnect: self.pull_reconnect.unwrap_or(RECONNECT),
            buffer: self.buffer.unwrap_or(BUFFER),
            session_relay: self.session_relay.unwrap_or(false),
            tls_verify: self.tls_verify.unwrap_or(true),
            linger: self.linger.unwrap_or(LINGER),
        }
    }
}

/// `URL [URL ...] [k=v ...]`, parameters as nginx-rtmp's `ngx_rtmp_relay_push_pull`: names
/// case-insensitive, a bare word means `=1`. More `rtmp://`/`rtmps://` words after the first
/// URL are sluice's failover origins (nginx-rtmp refuses them as unsupported parameters, so no
/// nginx-rtmp configuration reads differently).
fn target(d: &Directive) -> Result<RelayTarget, Fail> {
    let url_arg = &d.args[0];
    let mut t = RelayTarget { url: url_arg.value.clone(), ..RelayTarget::default() };
    for arg in &d.args[1..] {
        if is_url(&arg.value) {
            url::check_template(&arg.value).map_err(|e| {
                Fail::new(arg.span, format!("invalid URL \"{}\" in \"{}\" directive: {e}", arg.value, d.name))
            })?;
            t.fallbacks.push(arg.value.clone());
            continue;
        }
        let (key, value) = arg.value.split_once('=').unwrap_or((arg.value.as_str(), "1"));
        let bad = |why: &str| Fail::new(arg.span, format!("{why} \"{}\" in \"{}\" directive", arg.value, d.name));
        let slot = match key.to_ascii_lowercase().as_str() {
            "app" => &mut t.app,
            "name" => &mut t.name,
            "tcurl" => &mut t.tc_url,
            "pageurl" => &mut t.page_url,
            "swfurl" => &mut t.swf_url,
            "flashver" => &mut t.flash_ver,
            "playpath" => &mut t.play_path,
            "live" | "start" | "stop" | "static" => {
                let n: i64 = value.parse().map_err(|_| bad("invalid number in parameter"))?;
                match key.to_ascii_lowercase().as_str() {
                    "live" => t.live = Some(n),
                    "start" => t.start = Some(n),
                    "stop" => t.stop = Some(n),
                    _ => t.is_static = n != 0,
                }
                continue;
            }
            _ => return Err(bad("unsupported parameter")),
        };
        if value.len() > url::MAX_URL || value.chars().any(char::is_control) {
            return Err(bad("invalid parameter"));
        }
        *slot = Some(value.to_owned());
    }
    let urls = t.origins().any(url::has_variables);
    let strings = [&t.app, &t.tc_url, &t.page_url, &t.swf_url, &t.flash_ver, &t.play_path, &t.name];
    if t.is_static && (urls || strings.iter().any(|s| s.as_deref().is_some_and(url::has_variables))) {
        return Err(Fail::new(d.span, format!("variable is not allowed with \"static\" in \"{}\" directive", d.name)));
    }
    url::check_template(&t.url).map_err(|e| {
        Fail::new(url_arg.span, format!("invalid URL \"{}\" in \"{}\" directive: {e}", url_arg.value, d.name))
    })?;
    Ok(t)
}

/// Whether a `push`/`pull` word is a URL rather than a `k=v` parameter.
fn is_url(word: &str) -> bool {
    let lower = word.get(..8).unwrap_or(word).to_ascii_lowercase();
    lower.starts_with("rtmp://") || lower.starts_with("rtmps://")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn app(body: &str) -> Result<RelayConf, String> {
        let text = format!("rtmp {{ server {{ application live {{ {body} }} }} }}");
        Config::parse(&text, "t.conf").map(|mut c| c.servers.remove(0).apps.remove(0).relay).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let r = app("live on;").unwrap();
        assert_eq!(r, RelayConf::default());
        assert!(r.push.is_empty() && r.pull.is_empty());
        assert_eq!((r.push_reconnect, r.pull_reconnect, r.buffer), (RECONNECT, RECONNECT, BUFFER));
        assert!(!r.session_relay && r.tls_verify);
    }

    #[test]
    fn push_and_pull_with_parameters() {
        let r = app(
            "push rtmp://a/live; push rtmps://b/app/key NAME=cam App=x tcUrl=rtmp://t/x pageUrl=p swfUrl=s flashVer=f playpath=pp;
             pull rtmp://o/live live=1 start=10 stop=20; pull rtmp://o/live/cam name=cam static;",
        )
        .unwrap();
        assert_eq!(r.push.len(), 2);
        assert_eq!(r.push[0], RelayTarget { url: "rtmp://a/live".into(), ..RelayTarget::default() });
        let p = &r.push[1];
        assert_eq!(p.name.as_deref(), Some("cam"));
        assert_eq!(p.app.as_deref(), Some("x"));
        assert_eq!(p.tc_url.as_deref(), Some("rtmp://t/x"));
        assert_eq!((p.page_url.as_deref(), p.swf_url.as_deref()), (Some("p"), Some("s")));
        assert_eq!((p.flash_ver.as_deref(), p.play_path.as_deref()), (Some("f"), Some("pp")));
        assert!(p.matches("cam") && !p.matches("other"));
        assert!(r.push[0].matches("anything"));
        assert_eq!((r.pull[0].live, r.pull[0].start, r.pull[0].stop), (Some(1), Some(10), Some(20)));
        assert!(!r.pull[0].is_static && r.pull[1].is_static);
        // A bare word is `=1`; static=0 is not static.
        let r = app("pull rtmp://o/live live static=0 name=x;").unwrap();
        assert_eq!((r.pull[0].live, r.pull[0].is_static), (Some(1), false));
        let r = app("pull rtmp://o/live name=x STATIC;").unwrap();
        assert!(r.pull[0].is_static);
    }

    #[test]
    fn parameter_errors_name_the_parameter_and_line() {
        let e = app("push rtmp://a/live bogus=1;").unwrap_err();
        assert!(e.starts_with("t.conf:1:") && e.contains("unsupported parameter \"bogus=1\" in \"push\""), "{e}");
        let e = app("pull rtmp://a/live start=x;").unwrap_err();
        assert!(e.contains("invalid number in parameter \"start=x\""), "{e}");
        let e = app("push rtmp://a/live static;").unwrap_err();
        assert!(e.contains("static push is not allowed"), "{e}");
        let e = app("pull rtmp://a/live static;").unwrap_err();
        assert!(e.contains("static pull needs \"name=\""), "{e}");
        let e = app("pull rtmp://a/live/$name name=x static;").unwrap_err();
        assert!(e.contains("variable is not allowed"), "{e}");
        let e = app("pull rtmp://a/live playPath=$name name=x static;").unwrap_err();
        assert!(e.contains("variable is not allowed"), "{e}");
        let e = app("push http://a/live;").unwrap_err();
        assert!(
            e.contains("invalid URL \"http://a/live\" in \"push\" directive: the URL does not start with rtmp://"),
            "{e}"
        );
        let e = app("push rtmp://$name/live;").unwrap_err();
        assert!(e.contains("host contains a variable"), "{e}");
        let e = app("push rtmp://h/live/$nam;").unwrap_err();
        assert!(e.contains("unknown variable \"$nam\""), "{e}");
        assert!(app("push rtmp://h/live/$name?$args;").is_ok());
    }

    #[test]
    fn contexts_and_merge() {
        let text = "rtmp { push_reconnect 1s; relay_buffer 2s; relay_tls_verify off;
            server { pull_reconnect 4s; session_relay on;
                application a { push_reconnect 500ms; }
                application b { }
            } }";
        let c = Config::parse(text, "t.conf").unwrap();
        let (a, b) = (&c.servers[0].apps[0].relay, &c.servers[0].apps[1].relay);
        assert_eq!(a.push_reconnect, Duration::from_millis(500));
        assert_eq!(b.push_reconnect, Duration::from_secs(1));
        for r in [a, b] {
            assert_eq!((r.pull_reconnect, r.buffer), (Duration::from_secs(4), Duration::from_secs(2)));
            assert!(r.session_relay && !r.tls_verify);
        }
        let e = app("relay_buffer 1s;").unwrap_err();
        assert!(e.contains("\"relay_buffer\" directive is not allowed here"), "{e}");
        let e = Config::parse("rtmp { server { push rtmp://h/live; } }", "t.conf").unwrap_err().to_string();
        assert!(e.contains("\"push\" directive is not allowed here"), "{e}");
        let e = app("push_reconnect 1s; push_reconnect 2s;").unwrap_err();
        assert!(e.contains("duplicate"), "{e}");
    }

    #[test]
    fn a_pull_lists_failover_origins_and_lingers() {
        let r = app("pull rtmp://o1/live RTMPS://o2:443/live name=cam rtmp://o3/live;").unwrap();
        let p = &r.pull[0];
        assert_eq!(p.origins().collect::<Vec<_>>(), ["rtmp://o1/live", "RTMPS://o2:443/live", "rtmp://o3/live"]);
        assert_eq!(p.name.as_deref(), Some("cam"));
        // nginx-rtmp's one-URL lines read as before.
        assert!(app("pull rtmp://o/live live=1;").unwrap().pull[0].fallbacks.is_empty());
        let e = app("pull rtmp://o1/live rtmp://o2/live name=cam static;").unwrap_err();
        assert!(e.contains("a static pull takes one URL"), "{e}");
        let e = app("push rtmp://o1/live rtmp://o2/live;").unwrap_err();
        assert!(e.contains("\"push\" takes one URL"), "{e}");
        let e = app("pull rtmp://o1/live rtmp://$name/live;").unwrap_err();
        assert!(e.contains("invalid URL \"rtmp://$name/live\""), "{e}");
        assert_eq!(app("live on;").unwrap().linger, LINGER);
        let c = Config::parse(
            "rtmp { pull_linger 2s; server { application a { } application b { pull_linger 0s; } } }",
            "t",
        )
        .unwrap();
        assert_eq!(c.servers[0].apps[0].relay.linger, Duration::from_secs(2));
        assert_eq!(c.servers[0].apps[1].relay.linger, Duration::ZERO);
    }

    #[test]
    fn session_relay_on_has_no_effect_and_says_so() {
        let text = "rtmp { session_relay off; server { application a { session_relay on; } } }";
        let c = Config::parse(text, "t.conf").unwrap();
        let names: Vec<_> = c.inert.iter().map(|i| (i.directive.as_str(), i.line)).collect();
        assert_eq!(names, [("session_relay on", 1)]);
    }
}

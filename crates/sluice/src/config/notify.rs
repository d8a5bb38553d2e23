//! nginx-rtmp's notify module (`ngx_rtmp_notify_module.c`): HTTP callbacks on connect, publish,
//! play, their ends, recordings and periodic updates, plus sluice's `notify_timeout` and
//! `notify_tls_verify`. URLs are checked when the config is read: `http://` or `https://`
//! (sluice extension), or no scheme at all, which nginx-rtmp reads as `http://`.

use std::time::Duration;

use nginx_conf::Directive;

use super::value::{
    ctx::{RS, RSA, RSAR},
    first, flag, invalid, one_of, put, spec, time, Args, DirectiveSpec, Fail, Kind,
};

const ONE: Args = Args::Exactly(1);
const METHODS: &[&str] = &["get", "post"];

/// The notify directive table.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    spec("on_connect", RS, ONE, Kind::Text, ""),
    spec("on_disconnect", RS, ONE, Kind::Text, ""),
    spec("on_publish", RSA, ONE, Kind::Text, ""),
    spec("on_play", RSA, ONE, Kind::Text, ""),
    spec("on_publish_done", RSA, ONE, Kind::Text, ""),
    spec("on_play_done", RSA, ONE, Kind::Text, ""),
    spec("on_done", RSA, ONE, Kind::Text, ""),
    spec("on_record_done", RSAR, ONE, Kind::Text, ""),
    spec("on_update", RSA, ONE, Kind::Text, ""),
    spec("notify_method", RSA, ONE, Kind::OneOf(METHODS), "post"),
    spec("notify_update_timeout", RSA, ONE, Kind::Time, "30s"),
    spec("notify_update_strict", RSA, ONE, Kind::Flag, "off"),
    // Names the local stream of an `rtmp://` redirect by the MD5 of the URL (policy.rs).
    spec("notify_relay_redirect", RSA, ONE, Kind::Flag, "off"),
    // sluice extensions
    spec("notify_timeout", RSA, ONE, Kind::Time, "5s"),
    spec("notify_tls_verify", RSA, ONE, Kind::Flag, "on"),
];

/// The default `notify_update_timeout`.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(30);
/// The default `notify_timeout`: a callback slower than this denies.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// How callbacks send their fields (`notify_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyMethod {
    /// Fields in the query string.
    Get,
    /// Fields as an `application/x-www-form-urlencoded` body (nginx-rtmp's default).
    Post,
}

/// nginx-rtmp's notify settings, merged for one application. `on_connect` and
/// `on_disconnect` are server-level settings, carried here with the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConf {
    /// `on_connect` URL.
    pub on_connect: Option<String>,
    /// `on_disconnect` URL.
    pub on_disconnect: Option<String>,
    /// `on_publish` URL.
    pub on_publish: Option<String>,
    /// `on_play` URL.
    pub on_play: Option<String>,
    /// `on_publish_done` URL.
    pub on_publish_done: Option<String>,
    /// `on_play_done` URL.
    pub on_play_done: Option<String>,
    /// `on_done` URL (after both publish and play).
    pub on_done: Option<String>,
    /// `on_record_done` URL for the application's default recorder.
    pub on_record_done: Option<String>,
    /// `on_record_done` set inside `recorder NAME { }` blocks: (recorder, URL).
    pub recorder_record_done: Vec<(String, String)>,
    /// `on_update` URL.
    pub on_update: Option<String>,
    /// `notify_method` (post).
    pub method: NotifyMethod,
    /// `notify_update_timeout`: interval of `on_update` calls (30s; 0: none).
    pub update_timeout: Duration,
    /// `notify_update_strict`: a failed `on_update` call of any kind drops the client (off).
    pub update_strict: bool,
    /// `notify_relay_redirect`: an `rtmp://` redirect's local stream is named by the MD5 of
    /// the location, not the asked name (off; [`crate::policy::relay_local_name`]).
    pub relay_redirect: bool,
    /// `notify_timeout`: a callback without a reply this soon denies (5s; sluice extension).
    pub timeout: Duration,
    /// `notify_tls_verify`: check `https://` callback certificates against the system's
    /// roots (on; sluice extension).
    pub tls_verify: bool,
}

impl NotifyConf {
    /// The `on_record_done` URL of `recorder` (`""`: the application's default recorder):
    /// the recorder's own, else the application's.
    pub fn record_done_url(&self, recorder: &str) -> Option<&str> {
        let own = self.recorder_record_done.iter().find(|(name, _)| name == recorder).map(|(_, url)| url.as_str());
        own.or(self.on_record_done.as_deref())
    }
}

impl Default for NotifyConf {
    fn default() -> Self {
        NotifyLayer::default().build()
    }
}

/// Notify settings as written at one level; `None` means "not set here".
#[derive(Debug, Clone, Default)]
pub(crate) struct NotifyLayer {
    on_connect: Option<String>,
    on_disconnect: Option<String>,
    on_publish: Option<String>,
    on_play: Option<String>,
    on_publish_done: Option<String>,
    on_play_done: Option<String>,
    on_done: Option<String>,
    on_record_done: Option<String>,
    on_update: Option<String>,
    method: Option<NotifyMethod>,
    update_timeout: Option<Duration>,
    update_strict: Option<bool>,
    relay_redirect: Option<bool>,
    timeout: Option<Duration>,
    tls_verify: Option<bool>,
}

impl NotifyLayer {
    /// Applies one directive from [`DIRECTIVES`] (already checked for context and shape).
    pub(crate) fn set(&mut self, d: &Directive) -> Result<(), Fail> {
        match d.name.as_str() {
            "on_connect" => put(&mut self.on_connect, url(d)?, d),
            "on_disconnect" => put(&mut self.on_disconnect, url(d)?, d),
            "on_publish" => put(&mut self.on_publish, url(d)?, d),
            "on_play" => put(&mut self.on_play, url(d)?, d),
            "on_publish_done" => put(&mut self.on_publish_done, url(d)?, d),
            "on_play_done" => put(&mut self.on_play_done, url(d)?, d),
            "on_done" => put(&mut self.on_done, url(d)?, d),
            "on_record_done" => put(&mut self.on_record_done, url(d)?, d),
            "on_update" => put(&mut self.on_update, url(d)?, d),
            "notify_method" => put(&mut self.method, method(d)?, d),
            "notify_update_timeout" => put(&mut self.update_timeout, time(d)?, d),
            "notify_update_strict" => put(&mut self.update_strict, flag(d)?, d),
            "notify_relay_redirect" => put(&mut self.relay_redirect, flag(d)?, d),
            "notify_timeout" => put(&mut self.timeout, notify_timeout(d)?, d),
            "notify_tls_verify" => put(&mut self.tls_verify, flag(d)?, d),
            other => Err(Fail::new(d.span, format!("directive \"{other}\" is not handled by notify"))),
        }
    }

    /// Fills what this level leaves unset from the enclosing level (nginx's merge).
    pub(crate) fn inherit(&self, outer: &Self) -> Self {
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        NotifyLayer {
            on_connect: pick(&self.on_connect, &outer.on_connect),
            on_disconnect: pick(&self.on_disconnect, &outer.on_disconnect),
            on_publish: pick(&self.on_publish, &outer.on_publish),
            on_play: pick(&self.on_play, &outer.on_play),
            on_publish_done: pick(&self.on_publish_done, &outer.on_publish_done),
            on_play_done: pick(&self.on_play_done, &outer.on_play_done),
            on_done: pick(&self.on_done, &outer.on_done),
            on_record_done: pick(&self.on_record_done, &outer.on_record_done),
            on_update: pick(&self.on_update, &outer.on_update),
            method: self.method.or(outer.method),
            update_timeout: self.update_timeout.or(outer.update_timeout),
            update_strict: self.update_strict.or(outer.update_strict),
            relay_redirect: self.relay_redirect.or(outer.relay_redirect),
            timeout: self.timeout.or(outer.timeout),
            tls_verify: self.tls_verify.or(outer.tls_verify),
        }
    }

    /// The `on_record_done` URL written at this level (a recorder block's own).
    pub(crate) fn on_record_done(&self) -> Option<&str> {
        self.on_record_done.as_deref()
    }

    /// Applies the defaults (nginx-rtmp's `ngx_rtmp_notify_merge_app_conf`).
    pub(crate) fn build(&self) -> NotifyConf {
        NotifyConf {
            on_connect: self.on_connect.clone(),
            on_disconnect: self.on_disconnect.clone(),
            on_publish: self.on_publish.clone(),
            on_play: self.on_play.clone(),
            on_publish_done: self.on_publish_done.clone(),
            on_play_done: self.on_play_done.clone(),
            on_done: self.on_done.clone(),
            on_record_done: self.on_record_done.clone(),
            recorder_record_done: Vec::new(),
            on_update: self.on_update.clone(),
            method: self.method.unwrap_or(NotifyMethod::Post),
            update_timeout: self.update_timeout.unwrap_or(UPDATE_TIMEOUT),
            update_strict: self.update_strict.unwrap_or(false),
            relay_redirect: self.relay_redirect.unwrap_or(false),
            timeout: self.timeout.unwrap_or(NOTIFY_TIMEOUT),
            tls_verify: self.tls_verify.unwrap_or(true),
        }
    }
}

/// A callback URL: `http://` or `https://` with a host; no scheme means `http://`, as in
/// nginx-rtmp (`on_publish localhost:8080/auth;`). Returned with its scheme.
fn url(d: &Directive) -> Result<String, Fail> {
    const MUST: &str = "an http:// or https:// URL with a host, like http://127.0.0.1:8080/auth";
    let arg = first(d)?;
    let raw = arg.value.as_str();
    let lower = raw.to_ascii_lowercase();
    let full = if lower.starts_with("http://") || lower.starts_with("https://") {
        raw.to_string()
    } else if raw.contains("://") {
        return Err(invalid(d, arg, MUST));
    } else {
        format!("http://{raw}")
    };
    match reqwest::Url::parse(&full) {
        Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) && u.fragment().is_none() => Ok(full),
        _ => Err(invalid(d, arg, MUST)),
    }
}

fn method(d: &Directive) -> Result<NotifyMethod, Fail> {
    one_of(d, first(d)?, &[("get", NotifyMethod::Get), ("post", NotifyMethod::Post)])
}

/// A zero timeout would deny every client; a very long one holds clients for nothing.
fn notify_timeout(d: &Directive) -> Result<Duration, Fail> {
    let t = time(d)?;
    if t.is_zero() || t > Duration::from_secs(600) {
        return Err(invalid(d, first(d)?, "a time above 0 and at most 10m"));
    }
    Ok(t)
}

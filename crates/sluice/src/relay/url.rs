//! Relay targets as nginx-rtmp reads them (`ngx_rtmp_relay_module.c`), without I/O: the
//! `rtmp://` / `rtmps://` URL, `$name` `$app` `$args` substitution (the winshining fork's
//! variables), the remote stream name and the `connect` command's fields.
//!
//! URLs can come from clients (a publisher's `$args`, a callback's `Location`), so every
//! input is bounded ([`MAX_URL`]) and checked here; a local stream name put into a URL has
//! already passed [`crate::untrusted::stream_name`].

use crate::config::RelayTarget;

/// Longest relay URL, before and after substitution, in bytes.
pub const MAX_URL: usize = 2048;
/// Default port of `rtmp://`.
pub const RTMP_PORT: u16 = 1935;
/// Default port of `rtmps://`.
pub const RTMPS_PORT: u16 = 443;
/// nginx-rtmp's relay `flashVer`.
pub const DEFAULT_FLASH_VER: &str = "LNX.11,1,102,55";

/// Why a relay URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the URL does not start with rtmp:// or rtmps://")]
    Scheme,
    #[error("the URL is longer than {MAX_URL} bytes")]
    TooLong,
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL's port is not a number from 1 to 65535")]
    Port,
    #[error("the URL has an unterminated \"[\" IPv6 address")]
    Bracket,
    #[error("the URL's IPv6 address must be written in brackets: [ADDRESS]:PORT")]
    Unbracketed,
    #[error("the URL contains a space or a control character")]
    BadChar,
    #[error("the URL's host contains a variable: a client must not choose where sluice connects")]
    VariableInHost,
    #[error("unknown variable \"${0}\" (known: $name, $app, $args)")]
    UnknownVariable(String),
    #[error("the relay has no remote stream name")]
    NoName,
}

/// A parsed `rtmp://` or `rtmps://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl {
    /// `rtmps://`: TLS to the remote.
    pub tls: bool,
    /// The host as written, IPv6 addresses without their brackets.
    pub host: String,
    /// The port (1935 for `rtmp://`, 443 for `rtmps://` when not written).
    pub port: u16,
    /// The first path segment (may be empty).
    pub app: String,
    /// The rest of the path after the app, with any `?query` (may be empty).
    pub play_path: String,
}

impl RelayUrl {
    /// `host` with brackets around an IPv6 address (for `tcUrl` and logs).
    pub fn host_for_url(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        }
    }

    /// The scheme, as sluice writes it.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "rtmps"
        } else {
            "rtmp"
        }
    }
}

/// Parses `rtmp://host[:port][/app[/playpath]]` (scheme case-insensitive; `[v6]` hosts).
pub fn parse(url: &str) -> Result<RelayUrl, UrlError> {
    if url.len() > MAX_URL {
        return Err(UrlError::TooLong);
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(UrlError::BadChar);
    }
    let (tls, rest) = strip_scheme(url).ok_or(UrlError::Scheme)?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = split_host_port(authority, if tls { RTMPS_PORT } else { RTMP_PORT })?;
    let (app, play_path) = path.split_once('/').unwrap_or((path, ""));
    // `rtmp://h/live?x` has no play path: the query belongs to the app (nginx-rtmp does the same).
    Ok(RelayUrl { tls, host, port, app: app.to_owned(), play_path: play_path.to_owned() })
}

/// `(tls, rest)` once the scheme is off.
fn strip_scheme(url: &str) -> Option<(bool, &str)> {
    for (scheme, tls) in [("rtmp://", false), ("rtmps://", true)] {
        if url.len() >= scheme.len() && url.is_char_boundary(scheme.len()) {
            let (head, rest) = url.split_at(scheme.len());
            if head.eq_ignore_ascii_case(scheme) {
                return Some((tls, rest));
            }
        }
    }
    None
}

/// `HOST[:PORT]` or `[V6][:PORT]`: the host (an IPv6 address without its brackets) and the port,
/// `default_port` when none is written. The one splitter of every URL sluice is told to
/// connect to: relays, `cluster_redis`, `cluster_address`.
pub(crate) fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), UrlError> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or(UrlError::Bracket)?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or(UrlError::Port)?)),
            }
        }
        None if authority.matches(':').count() > 1 => return Err(UrlError::Unbracketed),
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or(UrlError::Port)?,
    };
    Ok((host.to_owned(), port))
}

/// The values of the variables a relay URL may hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vars<'a> {
    /// `$name`: the local stream name (without its query).
    pub name: &'a str,
    /// `$app`: the local application.
    pub app: &'a str,
    /// `$args`: the local stream's query string (without `?`).
    pub args: &'a str,
}

/// Whether `text` uses any `$variable`.
pub fn has_variables(text: &str) -> bool {
    text.contains('$')
}

/// `text` with `$name`, `${name}`, `$app`, `$args` replaced. An unknown variable is an error
/// (a typo would otherwise reach the remote); so is a result longer than [`MAX_URL`].
pub fn substitute(text: &str, vars: &Vars<'_>) -> Result<String, UrlError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (var, len) = match after.strip_prefix('{') {
            Some(inner) => {
                let end = inner.find('}').ok_or_else(|| UrlError::UnknownVariable(inner.to_owned()))?;
                (&inner[..end], end + 2)
            }
            None => {
                let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = match var {
            "name" => vars.name,
            "app" => vars.app,
            "args" => vars.args,
            other => return Err(UrlError::UnknownVariable(other.chars().take(32).collect())),
        };
        out.push_str(value);
        if out.len() > MAX_URL {
            return Err(UrlError::TooLong);
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    if out.len() > MAX_URL {
        return Err(UrlError::TooLong);
    }
    Ok(out)
}

/// Checks a configured URL: variables known and only after the host, and the URL valid
/// once they are filled in.
pub fn check_template(url: &str) -> Result<(), UrlError> {
    let authority = strip_scheme(url).map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    if authority.contains('$') {
        return Err(UrlError::VariableInHost);
    }
    let sample = Vars { name: "name", app: "app", args: "" };
    parse(&substitute(url, &sample)?).map(|_| ())
}

/// The `connect` command's fields of a relay (nginx-rtmp's `ngx_rtmp_relay_send_connect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFields {
    /// `app`.
    pub app: String,
    /// `tcUrl`.
    pub tc_url: String,
    /// `flashVer`.
    pub flash_ver: String,
    /// `pageUrl` (empty: not sent).
    pub page_url: String,
    /// `swfUrl` (empty: not sent).
    pub swf_url: String,
}

/// Everything a relay leg needs to connect: where, what to say, and which name to use.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The URL with variables filled in.
    pub url: RelayUrl,
    /// The URL as text with variables filled in (log it through `redact_query`).
    pub text: String,
    /// The `connect` fields.
    pub connect: ConnectFields,
    /// The stream name to publish or play on the remote (may carry `?args`).
    pub remote_name: String,
    /// `play` start (ms): -1000 when `live`, else `start` or -2000 (nginx-rtmp's).
    pub play_start: f64,
    /// `play` duration (ms): -1000 when `live` or no `stop`, else `stop - start`.
    pub play_duration: f64,
}

/// Resolves `target` for the local stream `vars.name` of application `vars.app`.
pub fn plan(target: &RelayTarget, vars: &Vars<'_>) -> Result<Plan, UrlError> {
    let text = substitute(&target.url, vars)?;
    let url = parse(&text)?;
    let fill = |v: &Option<String>| v.as_deref().map(|v| substitute(v, vars)).transpose();
    let app = fill(&target.app)?.unwrap_or_else(|| url.app.clone());
    // nginx-rtmp's tcUrl uses the given or URL app, possibly empty; `connect` falls back to
    // the local application when both are empty.
    let tc_url = match fill(&target.tc_url)? {
        Some(tc) => tc,
        None => format!("{}://{}/{app}", url.scheme(), url.host_for_url()),
    };
    let connect = ConnectFields {
        app: if app.is_empty() { vars.app.to_owned() } else { app },
        tc_url,
        flash_ver: fill(&target.flash_ver)?.unwrap_or_else(|| DEFAULT_FLASH_VER.to_owned()),
        page_url: fill(&target.page_url)?.unwrap_or_default(),
        swf_url: fill(&target.swf_url)?.unwrap_or_default(),
    };
    let remote_name = remote_name(&url, vars.name, fill(&target.play_path)?)?;
    let (play_start, play_duration) = play_range(target);
    Ok(Plan { url, text, connect, remote_name, play_start, play_duration })
}

/// `playPath=`, else the URL's path after the app, else the local name (its args dropped).
fn remote_name(url: &RelayUrl, local: &str, play_path: Option<String>) -> Result<String, UrlError> {
    let name = match play_path.filter(|p| !p.is_empty()) {
        Some(p) => p,
        None if !url.play_path.is_empty() => url.play_path.clone(),
        None => local.split_once('?').map_or(local, |(n, _)| n).to_owned(),
    };
    if name.is_empty() {
        return Err(UrlError::NoName);
    }
    if name.len() > MAX_URL {
        return Err(UrlError::TooLong);
    }
    Ok(name)
}

/// nginx-rtmp's `play` arguments of a pull.
fn play_range(target: &RelayTarget) -> (f64, f64) {
    if target.live.unwrap_or(0) != 0 {
        return (-1000.0, -1000.0);
    }
    let start = target.start.filter(|s| *s != 0);
    let stop = target.stop.filter(|s| *s != 0);
    let duration = stop.map_or(-1000.0, |stop| (stop - start.unwrap_or(0)) as f64);
    (start.map_or(-2000.0, |s| s as f64), duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> RelayTarget {
        RelayTarget { url: url.to_owned(), ..RelayTarget::default() }
    }

    fn vars<'a>(name: &'a str, args: &'a str) -> Vars<'a> {
        Vars { name, app: "src", args }
    }

    #[test]
    fn parses_hosts_ports_and_paths() {
        let u = parse("rtmp://example.com/live").unwrap();
        assert_eq!(
            u,
            RelayUrl { tls: false, host: "example.com".into(), port: 1935, app: "live".into(), play_path: "".into() }
        );
        let u = parse("RTMPS://a.rtmp.youtube.com/live2/abcd-efgh?x=1").unwrap();
        assert_eq!((u.tls, u.port, u.app.as_str(), u.play_path.as_str()), (true, 443, "live2", "abcd-efgh?x=1"));
        let u = parse("rtmp://h:1936/app/a/b/c").unwrap();
        assert_eq!((u.port, u.app.as_str(), u.play_path.as_str()), (1936, "app", "a/b/c"));
        let u = parse("rtmp://[::1]:19350/live/x").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.host_for_url()), ("::1", 19350, "[::1]".to_string()));
        let u = parse("rtmps://[2001:db8::1]/live").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("2001:db8::1", 443));
        let u = parse("rtmp://h").unwrap();
        assert_eq!((u.app.as_str(), u.play_path.as_str()), ("", ""));
        let u = parse("rtmp://live-api-s.facebook.com:443/rtmp/KEY").unwrap();
        assert_eq!((u.tls, u.port, u.app.as_str(), u.play_path.as_str()), (false, 443, "rtmp", "KEY"));
    }

    #[test]
    fn refuses_bad_urls() {
        assert_eq!(parse("http://h/live"), Err(UrlError::Scheme));
        assert_eq!(parse("rtmp:/h/live"), Err(UrlError::Scheme));
        assert_eq!(parse(""), Err(UrlError::Scheme));
        assert_eq!(parse("rtmp://"), Err(UrlError::NoHost));
        assert_eq!(parse("rtmp:///live"), Err(UrlError::NoHost));
        assert_eq!(parse("rtmp://h:/live"), Err(UrlError::Port));
        assert_eq!(parse("rtmp://h:0/live"), Err(UrlError::Port));
        assert_eq!(parse("rtmp://h:65536/live"), Err(UrlError::Port));
        assert_eq!(parse("rtmp://h:x/live"), Err(UrlError::Port));
        assert_eq!(parse("rtmp://[::1/live"), Err(UrlError::Bracket));
        assert_eq!(parse("rtmp://::1/live"), Err(UrlError::Unbracketed));
        assert_eq!(parse("rtmp://fe80::1:1935/live"), Err(UrlError::Unbracketed));
        assert_eq!(parse("rtmp://[::1]x/live"), Err(UrlError::Port));
        assert_eq!(parse("rtmp://[]/live"), Err(UrlError::NoHost));
        assert_eq!(parse("rtmp://h/live/a b"), Err(UrlError::BadChar));
        assert_eq!(parse("rtmp://h/live/a\nb"), Err(UrlError::BadChar));
        assert_eq!(parse(&format!("rtmp://h/live/{}", "k".repeat(MAX_URL))), Err(UrlError::TooLong));
        // Multi-byte text where the scheme would end does not panic.
        assert_eq!(parse("rtmé://h"), Err(UrlError::Scheme));
        assert_eq!(parse("rtmpsé/h"), Err(UrlError::Scheme));
    }

    #[test]
    fn substitutes_variables() {
        let v = vars("cam", "k=v");
        assert_eq!(substitute("rtmp://h/$app/$name?$args", &v).unwrap(), "rtmp://h/src/cam?k=v");
        assert_eq!(substitute("rtmp://h/live/${name}_hi", &v).unwrap(), "rtmp://h/live/cam_hi");
        assert_eq!(substitute("rtmp://h/live/$name_hi", &v), Err(UrlError::UnknownVariable("name_hi".into())));
        assert_eq!(substitute("rtmp://h/live/$nope", &v), Err(UrlError::UnknownVariable("nope".into())));
        assert_eq!(substitute("rtmp://h/live/${name", &v), Err(UrlError::UnknownVariable("name".into())));
        assert_eq!(substitute("no variables", &v).unwrap(), "no variables");
        let long = "a".repeat(MAX_URL);
        assert_eq!(substitute("rtmp://h/live?$args", &vars("cam", &long)), Err(UrlError::TooLong));
        assert_eq!(substitute(&format!("rtmp://h/{}$args", "x".repeat(MAX_URL)), &v), Err(UrlError::TooLong));
    }

    #[test]
    fn templates_are_checked_at_config_time() {
        assert_eq!(check_template("rtmp://h/live/$name"), Ok(()));
        assert_eq!(check_template("rtmp://$name/live"), Err(UrlError::VariableInHost));
        assert_eq!(check_template("rtmp://h:$args/live"), Err(UrlError::VariableInHost));
        assert_eq!(check_template("rtmp://h/live/$bogus"), Err(UrlError::UnknownVariable("bogus".into())));
        assert_eq!(check_template("rtmpx://h/live"), Err(UrlError::Scheme));
    }

    #[test]
    fn remote_name_rules() {
        // `push rtmp://h/live` publishes live/<name>, the args dropped.
        let p = plan(&target("rtmp://h/live"), &vars("cam", "token=1")).unwrap();
        assert_eq!((p.connect.app.as_str(), p.remote_name.as_str()), ("live", "cam"));
        let p = plan(&target("rtmp://h/live"), &vars("cam?token=1", "")).unwrap();
        assert_eq!(p.remote_name, "cam", "a local name never carries its args to the remote");
        // `push rtmp://h/live/key` always publishes key.
        let p = plan(&target("rtmp://h/live/key"), &vars("cam", "")).unwrap();
        assert_eq!((p.connect.app.as_str(), p.remote_name.as_str()), ("live", "key"));
        let p = plan(&target("rtmp://h/live/$name?$args"), &vars("cam", "a=b")).unwrap();
        assert_eq!(p.remote_name, "cam?a=b");
        // playPath= wins over both.
        let t = RelayTarget { play_path: Some("pp".into()), ..target("rtmp://h/live/key") };
        assert_eq!(plan(&t, &vars("cam", "")).unwrap().remote_name, "pp");
        // No app anywhere: the local application.
        let p = plan(&target("rtmp://h"), &vars("cam", "")).unwrap();
        assert_eq!(
            (p.connect.app.as_str(), p.connect.tc_url.as_str(), p.remote_name.as_str()),
            ("src", "rtmp://h/", "cam")
        );
    }

    #[test]
    fn connect_fields() {
        let p = plan(&target("rtmp://origin:1940/live/x"), &vars("cam", "")).unwrap();
        let want = ConnectFields {
            app: "live".into(),
            tc_url: "rtmp://origin/live".into(),
            flash_ver: DEFAULT_FLASH_VER.into(),
            page_url: "".into(),
            swf_url: "".into(),
        };
        assert_eq!(p.connect, want);
        assert_eq!((p.url.host.as_str(), p.url.port), ("origin", 1940));
        let t = RelayTarget {
            app: Some("other".into()),
            tc_url: Some("rtmp://x/y".into()),
            flash_ver: Some("FMLE/3.0".into()),
            page_url: Some("http://p".into()),
            swf_url: Some("http://s".into()),
            ..target("rtmps://[::1]/live")
        };
        let p = plan(&t, &vars("cam", "")).unwrap();
        assert_eq!(
            p.connect,
            ConnectFields {
                app: "other".into(),
                tc_url: "rtmp://x/y".into(),
                flash_ver: "FMLE/3.0".into(),
                page_url: "http://p".into(),
                swf_url: "http://s".into()
            }
        );
        let p = plan(&target("rtmps://[::1]/live"), &vars("cam", "")).unwrap();
        assert_eq!(p.connect.tc_url, "rtmps://[::1]/live");
        let t = RelayTarget { app: Some("a2".into()), ..target("rtmp://h/live") };
        assert_eq!(plan(&t, &vars("cam", "")).unwrap().connect.tc_url, "rtmp://h/a2");
    }

    #[test]
    fn play_arguments() {
        let range = |live, start, stop| play_range(&RelayTarget { live, start, stop, ..RelayTarget::default() });
        assert_eq!(range(None, None, None), (-2000.0, -1000.0));
        assert_eq!(range(Some(1), Some(5), Some(9)), (-1000.0, -1000.0));
        assert_eq!(range(None, Some(1000), Some(5000)), (1000.0, 4000.0));
        assert_eq!(range(None, None, Some(5000)), (-2000.0, 5000.0));
        assert_eq!(range(None, Some(1000), None), (1000.0, -1000.0));
    }

    #[test]
    fn hostile_input_never_panics() {
        for s in [
            "rtmp://[",
            "rtmp://[]:",
            "rtmp://:",
            "rtmps://:1",
            "rtmp://h/$",
            "rtmp://h/${",
            "rtmp://h/${}",
            "rtmp://h/é/ü?ß",
        ] {
            let _ = parse(s);
            let _ = substitute(s, &vars("n", "a"));
            let _ = check_template(s);
        }
        assert_eq!(substitute("rtmp://h/$", &vars("n", "")), Err(UrlError::UnknownVariable("".into())));
    }
}

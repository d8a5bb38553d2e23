//! nginx-rtmp's log module (`ngx_rtmp_log_module.c`): `access_log` and `log_format`; and
//! nginx's own `error_log` (top level, outside `rtmp { }`).
//!
//! As in nginx-rtmp, `log_format` names are global to the `rtmp { }` block wherever they are
//! written (`combined` is predefined), `access_log` lines at one level replace the enclosing
//! level's (several at one level all write), and `access_log off` turns logging off for the
//! level and those inside it that set nothing. Unlike nginx-rtmp, nothing is logged where no
//! `access_log` is written (nginx-rtmp writes `logs/access.log`), and a format may be defined
//! after the `access_log` that names it.

use std::path::{Path, PathBuf};

use nginx_conf::{Directive, Span};

use super::value::{
    ctx::{RSA, TOP},
    first, invalid, spec, Args, DirectiveSpec, Fail, Kind,
};

/// nginx-rtmp's predefined format.
pub const COMBINED: &str = "$remote_addr [$time_local] $command \"$app\" \"$name\" \"$args\" - \
                            $bytes_received $bytes_sent \"$pageurl\" \"$flashver\" ($session_readable_time)";

/// The log directive table.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    spec("access_log", RSA, Args::Between(1, 2), Kind::Text, "off"),
    spec("log_format", RSA, Args::AtLeast(2), Kind::Text, ""),
    spec("error_log", TOP, Args::Between(1, 2), Kind::Text, ""),
];

/// One variable of an access log format (nginx-rtmp's `ngx_rtmp_log_vars`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// `$connection`: the client id (nginx-rtmp's connection number, the callbacks' `clientid`).
    Connection,
    /// `$remote_addr`: the client's IP address.
    RemoteAddr,
    /// `$app`: the application connected to.
    App,
    /// `$name`: the last stream published or played.
    Name,
    /// `$args`: that publish's or play's query string, secrets redacted.
    Args,
    /// `$flashver`: `flashVer` of `connect` (HTTP: the User-Agent).
    Flashver,
    /// `$swfurl`: `swfUrl` of `connect`.
    Swfurl,
    /// `$tcurl`: `tcUrl` of `connect` (HTTP: the request URL).
    Tcurl,
    /// `$pageurl`: `pageUrl` of `connect` (HTTP: the Referer).
    Pageurl,
    /// `$command`: `PUBLISH`, `PLAY`, `PLAY+PUBLISH` or `NONE`.
    Command,
    /// `$bytes_sent`: bytes written to the client.
    BytesSent,
    /// `$bytes_received`: bytes read from the client.
    BytesReceived,
    /// `$time_local`: when the line is written, `06/Dec/2026:16:00:45 +0000`.
    TimeLocal,
    /// `$session_time`: seconds connected.
    SessionTime,
    /// `$session_readable_time`: the same as `1d 2h 3m 4s` (leading zero units left out).
    SessionReadableTime,
}

/// Every variable by name.
pub const VARIABLES: &[(&str, Var)] = &[
    ("connection", Var::Connection),
    ("remote_addr", Var::RemoteAddr),
    ("app", Var::App),
    ("name", Var::Name),
    ("args", Var::Args),
    ("flashver", Var::Flashver),
    ("swfurl", Var::Swfurl),
    ("tcurl", Var::Tcurl),
    ("pageurl", Var::Pageurl),
    ("command", Var::Command),
    ("bytes_sent", Var::BytesSent),
    ("bytes_received", Var::BytesReceived),
    ("time_local", Var::TimeLocal),
    ("session_time", Var::SessionTime),
    ("session_readable_time", Var::SessionReadableTime),
];

/// A piece of a compiled format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Text written as is.
    Text(String),
    /// A variable's value.
    Var(Var),
}

/// A compiled `log_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    /// Its name (`combined` for the predefined one).
    pub name: String,
    /// Its pieces, in order.
    pub ops: Vec<Op>,
}

/// One `access_log PATH [FORMAT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    /// The file (relative paths resolved against the main configuration file's directory).
    pub path: PathBuf,
    /// The format its lines follow.
    pub format: LogFormat,
}

/// The access logs of a server block or application, merged rtmp → server → application.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogConf {
    /// Where each session's line goes; empty when `access_log` is `off` or not written.
    pub access: Vec<AccessLog>,
}

/// `access_log` as written at one level: the path, the format's name, where.
#[derive(Debug, Clone)]
struct Written {
    path: String,
    format: (String, Span),
}

/// Log settings as written at one level.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogLayer {
    off: bool,
    logs: Vec<Written>,
    /// `log_format` lines at this level (formats are global: see [`formats`]).
    formats: Vec<(String, Vec<String>, Span)>,
}

impl LogLayer {
    /// Applies one directive from [`DIRECTIVES`] (already checked for context and shape).
    pub(crate) fn set(&mut self, d: &Directive) -> Result<(), Fail> {
        let words: Vec<String> = d.args.iter().map(|a| a.value.clone()).collect();
        match d.name.as_str() {
            "access_log" if words[0] == "off" => {
                self.off = true;
                Ok(())
            }
            "access_log" => {
                let format = match d.args.get(1) {
                    Some(f) => (f.value.clone(), f.span),
                    None => ("combined".to_owned(), d.span),
                };
                self.logs.push(Written { path: words[0].clone(), format });
                Ok(())
            }
            "log_format" => {
                self.formats.push((words[0].clone(), words[1..].to_vec(), d.span));
                Ok(())
            }
            other => Err(Fail::new(d.span, format!("directive \"{other}\" is not handled by log"))),
        }
    }

    /// nginx-rtmp's merge: a level that writes `access_log` (a path or `off`) keeps its own,
    /// one that writes none takes the enclosing level's.
    pub(crate) fn inherit(&self, outer: &Self) -> Self {
        let own = self.off || !self.logs.is_empty();
        let (off, logs) = if own { (self.off, self.logs.clone()) } else { (outer.off, outer.logs.clone()) };
        LogLayer { off, logs, formats: self.formats.clone() }
    }

    /// The merged result, before [`resolve`] fills in the formats.
    pub(crate) fn build(&self) -> LogConf {
        let access = match self.off {
            true => Vec::new(),
            false => self
                .logs
                .iter()
                .map(|w| AccessLog {
                    path: PathBuf::from(&w.path),
                    format: LogFormat { name: w.format.0.clone(), ops: Vec::new() },
                })
                .collect(),
        };
        LogConf { access }
    }
}

/// Every format of the `rtmp { }` block (`combined` first), from the `log_format` lines of all
/// its levels; fails on a duplicate name, a bad format, or an `access_log` naming a format
/// that does not exist.
pub(crate) fn formats<'a>(levels: impl Iterator<Item = &'a LogLayer> + Clone) -> Result<Vec<LogFormat>, Fail> {
    let combined = compile("combined", &[COMBINED.to_owned()], Span::default())?;
    let mut all = vec![combined];
    for (name, words, span) in levels.clone().flat_map(|l| &l.formats) {
        if all.iter().any(|f| f.name == *name) {
            return Err(Fail::new(*span, format!("duplicate \"log_format\" name \"{name}\"")));
        }
        all.push(compile(name, words, *span)?);
    }
    for w in levels.flat_map(|l| &l.logs) {
        let (name, span) = &w.format;
        if !all.iter().any(|f| f.name == *name) {
            return Err(Fail::new(*span, format!("unknown log format \"{name}\"")));
        }
    }
    Ok(all)
}

/// Fills `conf`'s formats from `formats` (checked by [`formats`]) and resolves relative paths
/// against `base`.
pub(crate) fn resolve(conf: &mut LogConf, formats: &[LogFormat], base: &Path) {
    for log in &mut conf.access {
        log.path = base.join(&log.path);
        if let Some(f) = formats.iter().find(|f| f.name == log.format.name) {
            log.format = f.clone();
        }
    }
}

/// nginx-rtmp's `ngx_rtmp_log_compile_format`: the words joined, `$var` and `${var}`
/// replaced by variables.
fn compile(name: &str, words: &[String], span: Span) -> Result<LogFormat, Fail> {
    let text: String = words.concat();
    let mut ops = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let Some(after) = rest.strip_prefix('$') else {
            let end = rest.find('$').unwrap_or(rest.len());
            ops.push(Op::Text(rest[..end].to_owned()));
            rest = &rest[end..];
            continue;
        };
        let (braced, body) = match after.strip_prefix('{') {
            Some(b) => (true, b),
            None => (false, after),
        };
        let len = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(body.len());
        let var = &body[..len];
        let mut tail = &body[len..];
        if braced {
            tail = tail.strip_prefix('}').ok_or_else(|| {
                Fail::new(span, format!("missing closing bracket in \"{var}\" of \"log_format\" \"{name}\""))
            })?;
        }
        if var.is_empty() {
            return Err(Fail::new(span, format!("invalid parameter \"{rest}\" in \"log_format\" \"{name}\"")));
        }
        let Some((_, v)) = VARIABLES.iter().find(|(n, _)| *n == var) else {
            return Err(Fail::new(span, format!("unknown variable \"{var}\" in \"log_format\" \"{name}\"")));
        };
        ops.push(Op::Var(*v));
        rest = tail;
    }
    Ok(LogFormat { name: name.to_owned(), ops })
}

/// nginx's `error_log` severities, most verbose first.
const LEVELS: &[(&str, ErrorLevel)] = &[
    ("debug", ErrorLevel::Debug),
    ("info", ErrorLevel::Info),
    ("notice", ErrorLevel::Info),
    ("warn", ErrorLevel::Warn),
    ("error", ErrorLevel::Error),
    ("crit", ErrorLevel::Error),
    ("alert", ErrorLevel::Error),
    ("emerg", ErrorLevel::Error),
];

/// The least severe events `error_log` writes (nginx's levels mapped to tracing's: `notice`
/// is `info`; `crit`, `alert` and `emerg` are `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorLevel {
    /// debug and above.
    Debug,
    /// info and above.
    Info,
    /// warn and above.
    Warn,
    /// error only.
    Error,
}

impl ErrorLevel {
    /// The tracing filter directive (`RUST_LOG` syntax).
    pub fn filter(self) -> &'static str {
        match self {
            ErrorLevel::Debug => "debug",
            ErrorLevel::Info => "info",
            ErrorLevel::Warn => "warn",
            ErrorLevel::Error => "error",
        }
    }
}

/// `error_log FILE [LEVEL];` (top level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLogConf {
    /// The file, or `None` for `stderr`.
    pub file: Option<PathBuf>,
    /// The least severe level written (`error` when not given, as nginx).
    pub level: ErrorLevel,
}

/// Reads `error_log` (a relative FILE resolves against `base`, the main file's directory).
pub(crate) fn error_log(d: &Directive, base: &Path) -> Result<ErrorLogConf, Fail> {
    let target = first(d)?;
    let file = match target.value.as_str() {
        "stderr" => None,
        v if v.starts_with("syslog:") || v.starts_with("memory:") => {
            return Err(invalid(d, target, "a file or \"stderr\" (sluice writes no syslog or memory log)"));
        }
        v => Some(base.join(v)),
    };
    let level = match d.args.get(1) {
        None => ErrorLevel::Error,
        Some(arg) => LEVELS
            .iter()
            .find(|(n, _)| *n == arg.value)
            .map(|(_, l)| *l)
            .ok_or_else(|| invalid(d, arg, "one of debug, info, notice, warn, error, crit, alert, emerg"))?,
    };
    Ok(ErrorLogConf { file, level })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, "t.conf").map_err(|e| e.to_string())
    }

    fn paths(conf: &LogConf) -> Vec<(String, String)> {
        conf.access.iter().map(|l| (l.path.display().to_string(), l.format.name.clone())).collect()
    }

    /// nginx-rtmp's merge: a level with its own `access_log` (or `off`) replaces the enclosing
    /// one; formats are global to the rtmp block, wherever written.
    #[test]
    fn access_logs_merge_rtmp_server_application() {
        let c = parse(
            "rtmp { access_log /a.log;
                server { application inherits { } application off { access_log off; }
                    application own { access_log /b.log short; access_log /c.log; log_format short $app; } }
                server { listen 1936; access_log off; application on { access_log /d.log; } application none { } } }",
        )
        .unwrap();
        let (s0, s1) = (&c.servers[0], &c.servers[1]);
        let combined = ("/a.log".to_string(), "combined".to_string());
        assert_eq!(paths(&s0.log), std::slice::from_ref(&combined), "sessions with no application");
        assert_eq!(paths(&s0.apps[0].log), [combined]);
        assert_eq!(paths(&s0.apps[1].log), []);
        assert_eq!(paths(&s0.apps[2].log), [("/b.log".into(), "short".into()), ("/c.log".into(), "combined".into())]);
        assert_eq!(s0.apps[2].log.access[0].format.ops, [Op::Var(Var::App)]);
        assert_eq!(
            s0.apps[2].log.access[1].format.ops.len(),
            compile("c", &[COMBINED.into()], Span::default()).unwrap().ops.len()
        );
        assert_eq!(paths(&s1.log), []);
        assert_eq!(paths(&s1.apps[0].log), [("/d.log".into(), "combined".into())]);
        assert_eq!(paths(&s1.apps[1].log), []);
        let none = parse("rtmp { server { application a { } } }").unwrap();
        assert_eq!(none.servers[0].apps[0].log, LogConf::default(), "no access_log: nothing is written");
    }

    #[test]
    fn bad_formats_are_config_errors() {
        let err = |text: &str| parse(text).unwrap_err();
        assert_eq!(err("rtmp {\n server { access_log /a.log nope; } }"), "t.conf:2:29: unknown log format \"nope\"");
        assert_eq!(
            err("rtmp { log_format f $app; server { log_format f $name; } }"),
            "t.conf:1:36: duplicate \"log_format\" name \"f\""
        );
        assert!(err("rtmp { log_format combined $app; }").contains("duplicate"));
        assert!(err("rtmp { log_format f $app $nope; }").contains("unknown variable \"nope\""));
        assert!(err("rtmp { log_format f; }").contains("invalid number of arguments"));
        assert!(err("rtmp { server { application a { recorder r { access_log /x; } } } }").contains("not allowed here"));
    }

    #[test]
    fn error_log_is_read_at_top_level() {
        let c = parse("error_log logs/e.log warn; rtmp { }").unwrap();
        assert_eq!(c.error_log, Some(ErrorLogConf { file: Some("logs/e.log".into()), level: ErrorLevel::Warn }));
        let c = parse("error_log stderr;").unwrap();
        assert_eq!(c.error_log, Some(ErrorLogConf { file: None, level: ErrorLevel::Error }), "nginx's default level");
        assert_eq!(parse("events { }").unwrap().error_log, None);
        for (level, want) in [("debug", ErrorLevel::Debug), ("notice", ErrorLevel::Info), ("crit", ErrorLevel::Error)] {
            assert_eq!(parse(&format!("error_log stderr {level};")).unwrap().error_log.unwrap().level, want);
        }
        let err = |text: &str| parse(text).unwrap_err();
        assert!(err("error_log stderr loud;").contains("invalid value \"loud\""), "{}", err("error_log stderr loud;"));
        assert!(err("error_log syslog:server=x;").contains("no syslog"));
        assert!(err("error_log a; error_log b;").contains("duplicate"));
        assert!(err("rtmp { error_log a; }").contains("not allowed here"));
    }

    /// The log directives act now: `-t` no longer lists them as having no effect.
    #[test]
    fn log_directives_are_not_inert() {
        let c = parse("error_log stderr; rtmp { log_format f $app; access_log /a.log f; server { } }").unwrap();
        assert_eq!(c.inert_report(), Vec::<String>::new());
    }

    fn compiled(text: &str) -> Result<Vec<Op>, String> {
        compile("f", &[text.to_owned()], Span::default()).map(|f| f.ops).map_err(|f| f.message)
    }

    #[test]
    fn formats_compile_variables_and_text() {
        use Op::{Text, Var as V};
        assert_eq!(
            compiled("$app/${name}x [$bytes_sent]").unwrap(),
            [V(Var::App), Text("/".into()), V(Var::Name), Text("x [".into()), V(Var::BytesSent), Text("]".into())]
        );
        assert!(compiled(COMBINED).is_ok());
        assert_eq!(compiled("$nope").unwrap_err(), "unknown variable \"nope\" in \"log_format\" \"f\"");
        assert!(compiled("${app").unwrap_err().starts_with("missing closing bracket"));
        assert!(compiled("a $").unwrap_err().starts_with("invalid parameter"));
        let joined = compile("f", &["$app ".into(), "$name".into()], Span::default()).unwrap();
        assert_eq!(joined.ops.len(), 3, "words are joined as written: {joined:?}");
    }
}

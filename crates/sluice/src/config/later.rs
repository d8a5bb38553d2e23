//! Directives of nginx-rtmp features sluice does not implement yet (DASH forks' extras,
//! periodic access log lines, and a notify fork's `notify_send_redirect`). They are accepted, so existing
//! configs keep loading, kept as raw words in `extra` (on `ServerConf`, `AppConf` and `Recorder`) for the feature
//! that implements them later. Argument counts are checked loosely (nginx-rtmp's own counts,
//! widened where forks add arguments).
//!
//! This module is also the registry of everything accepted that has no effect (the "inert"
//! directives): every row of [`DIRECTIVES`], plus the rows of [`INERT`] (directives parsed into
//! typed fields that nothing reads yet) and the `listen` options in [`INERT_LISTEN_OPTIONS`].
//! `-t` and start-up warn about each occurrence ([`find_inert`], [`report`]); a player whose
//! stream a missing feature would have served is told so ([`PLAY_SOURCES`]).
//!
//! When a feature is implemented, move its rows to its own module with a typed field (and
//! drop its [`PLAY_SOURCES`] row); when a typed directive starts acting, delete its [`INERT`] row.

use nginx_conf::Directive;

use super::value::{
    ctx::{HTTP, RSA, RSAR, TOP},
    spec, Args, DirectiveSpec, Kind,
};

const ONE: Args = Args::Exactly(1);

/// Not yet implemented directives, accepted and carried in `extra`.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    // notify (a fork's directive: answer redirects to the client instead of following them)
    spec("notify_send_redirect", RSA, ONE, Kind::Raw, "off"),
    // a DASH fork's extras (nginx-rtmp has the other dash_* directives: config/dash.rs)
    spec("dash_repetition", RSA, ONE, Kind::Raw, "off"),
    spec("dash_clock_compensation", RSA, ONE, Kind::Raw, "off"),
    spec("dash_clock_helper_uri", RSA, ONE, Kind::Raw, ""),
    // a fork's periodic access log lines; netcall
    spec("log_interval", RSA, ONE, Kind::Raw, ""),
    spec("log_size", RSA, ONE, Kind::Raw, ""),
    spec("netcall_timeout", RSA, ONE, Kind::Raw, "7s"),
    spec("netcall_buffer", RSA, ONE, Kind::Raw, "1k"),
    // Valid only in `http { location { } }`: listed so that using them inside `rtmp` says so.
    spec("rtmp_stat", HTTP, ONE, Kind::Raw, ""),
    spec("rtmp_stat_stylesheet", HTTP, ONE, Kind::Raw, ""),
    spec("rtmp_stat_format", HTTP, ONE, Kind::Raw, ""),
    spec("rtmp_control", HTTP, ONE, Kind::Raw, ""),
    spec("flv_live", HTTP, ONE, Kind::Raw, ""),
    // Valid only at the top level (outside `rtmp`), where sluice ignores them.
    spec("rtmp_auto_push", TOP, ONE, Kind::Raw, ""),
    spec("rtmp_auto_push_reconnect", TOP, ONE, Kind::Raw, ""),
    spec("rtmp_socket_dir", TOP, ONE, Kind::Raw, ""),
];

/// Records a not-yet-implemented directive's raw words for later (the warning comes from
/// [`find_inert`], with the file it is in).
pub(crate) fn accept(d: &Directive) -> (String, Vec<String>) {
    (d.name.clone(), d.args.iter().map(|a| a.value.clone()).collect())
}

/// Directives inside `rtmp { }` that other modules parse into typed settings nothing acts on
/// yet, and why. One row each: delete a row when its directive starts acting, add one when a
/// directive is accepted but ignored.
const INERT: &[(&str, &str)] = &[
    ("out_cork", "sluice batches its writes by itself"),
    ("busy", "sluice sets no process title"),
    ("buflen", "sluice keeps no per-player buffer to size"),
    ("sync", "sluice forwards timestamps unchanged, so players have nothing to resync"),
    ("stream_buckets", "sluice's stream table needs no bucket count"),
    ("buffer", "it is deprecated (nginx-rtmp ignores it too)"),
];

/// Flags sluice always acts on as nginx-rtmp's default `on`: written `off`, they have no effect.
const INERT_WHEN_OFF: &[(&str, &str)] = &[
    ("play_time_fix", "sluice always repeats extended timestamps in continuation chunks it sends (\"on\")"),
    ("publish_time_fix", "sluice always reads extended timestamps in continuation chunks it receives (\"on\")"),
];

/// Flags sluice always acts on as their default `off`: written `on`, they have no effect.
const INERT_WHEN_ON: &[(&str, &str)] =
    &[("session_relay", "sluice ends a stream's relays when its publisher stops, by closeStream or disconnect alike")];

/// `listen` options (nginx's) that sluice accepts and does not apply, and why.
const INERT_LISTEN_OPTIONS: &[(&str, &str)] = &[
    ("reuseport", "sluice runs one process and binds each address once"),
    ("deferred", "sluice does not set TCP_DEFER_ACCEPT"),
    ("ipv6only", "sluice binds IPv6 addresses with the system's default"),
    ("so_keepalive", "use the \"so_keepalive\" directive of the server block"),
    ("backlog", "sluice uses the system's default backlog"),
    ("rcvbuf", "sluice uses the system's default buffer sizes"),
    ("sndbuf", "sluice uses the system's default buffer sizes"),
];

/// Features whose directives would serve a player a stream that nobody publishes here (in
/// `extra` of its application), and what to tell that player: refused at once rather than
/// left waiting for a publisher that will not come.
pub(crate) const PLAY_SOURCES: &[(&str, &str)] = &[];

/// Why a [`DIRECTIVES`] row has no effect.
fn why_later(name: &str) -> &'static str {
    match name {
        n if n.starts_with("dash") => "this DASH fork's extension is not implemented",
        "log_interval" | "log_size" => "sluice writes one access log line per session, when it ends",
        "netcall_timeout" | "netcall_buffer" => "callbacks use notify_timeout and sluice's own limits",
        "notify_send_redirect" => "sending callback redirects to the client is not implemented yet",
        n if n.starts_with("rtmp_auto_push") || n == "rtmp_socket_dir" => {
            "sluice runs one process: there are no workers to push streams between"
        }
        _ => "it is not implemented yet",
    }
}

/// Everything accepted that has no effect, and why, for docs/directives.md (`config::docs`):
/// each not implemented directive (`dash`), each typed one nothing reads (`busy`), the flags
/// inert in one state (`session_relay on`) and the `listen` options (`listen reuseport`).
pub(crate) fn inert_rows() -> Vec<(String, &'static str)> {
    let later =
        DIRECTIVES.iter().filter(|s| s.contexts & (RSAR | TOP) != 0).map(|s| (s.name.to_owned(), why_later(s.name)));
    let typed = INERT.iter().map(|(n, why)| (n.to_string(), *why));
    let off = INERT_WHEN_OFF.iter().map(|(n, why)| (format!("{n} off"), *why));
    let on = INERT_WHEN_ON.iter().map(|(n, why)| (format!("{n} on"), *why));
    let listen = INERT_LISTEN_OPTIONS.iter().map(|(n, why)| (format!("listen {n}"), *why));
    later.chain(typed).chain(off).chain(on).chain(listen).collect()
}

/// One occurrence of a directive that is accepted and has no effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inert {
    /// The directive (`push`), or `listen OPTION` for a `listen` option.
    pub directive: String,
    /// The file it is written in.
    pub file: String,
    /// Whether that is the main configuration file (the summary then says just the line).
    pub main_file: bool,
    /// Its line.
    pub line: u32,
    /// Why it has no effect.
    pub why: &'static str,
}

/// Which part of the configuration a directive is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Top,
    Rtmp,
    Http,
    /// Blocks that belong to nginx (`events`, ...): none of sluice's business.
    Other,
}

/// Every inert directive in `tree` (a configuration [`super::build`] accepted), in file order.
pub(crate) fn find_inert(tree: &[Directive], files: &[String]) -> Vec<Inert> {
    let mut found = Vec::new();
    // Iterative, as the parser: a deeply nested file cannot overflow the stack.
    let mut todo: Vec<(&Directive, Part)> = tree.iter().rev().map(|d| (d, Part::Top)).collect();
    while let Some((d, part)) = todo.pop() {
        let mut note = |directive: String, at: nginx_conf::Span, why| {
            let file = files.get(at.file as usize).cloned().unwrap_or_default();
            found.push(Inert { directive, file, main_file: at.file == 0, line: at.line, why });
        };
        match part {
            Part::Rtmp if d.name == "listen" => {
                for opt in d.args.iter().skip(1) {
                    let key = opt.value.split('=').next().unwrap_or_default();
                    if let Some((_, why)) = INERT_LISTEN_OPTIONS.iter().find(|(k, _)| *k == key) {
                        note(format!("listen {key}"), opt.span, why);
                    }
                }
            }
            Part::Rtmp if d.args.first().is_some_and(|a| a.value == "off") && inert_when_off(&d.name).is_some() => {
                note(format!("{} off", d.name), d.span, inert_when_off(&d.name).unwrap_or_default());
            }
            Part::Rtmp
                if d.args.first().is_some_and(|a| a.value == "on") && inert_when(INERT_WHEN_ON, &d.name).is_some() =>
            {
                note(format!("{} on", d.name), d.span, inert_when(INERT_WHEN_ON, &d.name).unwrap_or_default());
            }
            Part::Rtmp | Part::Top | Part::Http => {
                if let Some(why) = inert_why(part, &d.name) {
                    note(d.name.clone(), d.span, why);
                }
            }
            Part::Other => {}
        }
        let inner = match (part, d.name.as_str()) {
            (Part::Top, "rtmp") => Part::Rtmp,
            (Part::Top, "http") => Part::Http,
            (Part::Top, _) => Part::Other,
            (other, _) => other,
        };
        for c in d.block.iter().flatten().rev() {
            todo.push((c, inner));
        }
    }
    found
}

/// Why flag `name` listed in `table` has no effect, if it is listed.
fn inert_when(table: &[(&str, &'static str)], name: &str) -> Option<&'static str> {
    table.iter().find(|(n, _)| *n == name).map(|(_, why)| *why)
}

/// Why flag `name` has no effect when it is `off`, if that is so.
fn inert_when_off(name: &str) -> Option<&'static str> {
    INERT_WHEN_OFF.iter().find(|(n, _)| *n == name).map(|(_, why)| *why)
}

/// Why directive `name` written in `part` has no effect, when it has none.
fn inert_why(part: Part, name: &str) -> Option<&'static str> {
    let later = DIRECTIVES.iter().find(|s| s.name == name);
    match part {
        Part::Rtmp => {
            let typed = INERT.iter().find(|(n, _)| *n == name).map(|(_, why)| *why);
            typed.or_else(|| later.filter(|s| s.contexts & RSAR != 0).map(|s| why_later(s.name)))
        }
        Part::Top => later.filter(|s| s.contexts & TOP != 0).map(|s| why_later(s.name)),
        Part::Http => None,
        Part::Other => None,
    }
}

/// The lines `-t` and start-up print for `inert` (see [`super::Config::inert_report`]).
pub(crate) fn report(inert: &[Inert]) -> Vec<String> {
    if inert.is_empty() {
        return Vec::new();
    }
    let mut lines: Vec<String> = inert
        .iter()
        .map(|i| format!("sluice: [warn] \"{}\" has no effect: {}, in {}:{}", i.directive, i.why, i.file, i.line))
        .collect();
    let names: Vec<String> = inert
        .iter()
        .map(|i| match i.main_file {
            true => format!("{} (line {})", i.directive, i.line),
            false => format!("{} ({}:{})", i.directive, i.file, i.line),
        })
        .collect();
    let count = match inert.len() {
        1 => "1 directive has".to_string(),
        n => format!("{n} directives have"),
    };
    lines.push(format!("sluice: {count} no effect yet: {}", names.join(", ")));
    lines
}

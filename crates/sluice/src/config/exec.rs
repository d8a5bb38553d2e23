//! nginx-rtmp's exec module (`ngx_rtmp_exec_module.c`): programs run on stream events. The
//! lines are parsed here into [`ExecLine`]s (command lines checked by
//! [`crate::exec::command`]); [`crate::exec`] runs them.
//!
//! | directive | contexts | default | nginx-rtmp behaviour kept |
//! |---|---|---|---|
//! | `exec`, `exec_push CMD ...` | rtmp, server, app | — | run on publish, managed |
//! | `exec_pull CMD ...` | rtmp, server, app | — | first player of a name, managed |
//! | `exec_static CMD ...` | rtmp, server, app | — | at start, global, no variables, always respawned |
//! | `exec_publish`, `exec_publish_done`, `exec_play`, `exec_play_done` | rtmp, server, app | — | unmanaged |
//! | `exec_record_done CMD ...` | rtmp, server, app, recorder | — | unmanaged, per closed file |
//! | `exec_options on\|off` | rtmp, server, app | `off` | `on`: a trailing `name=X` word of the exec lines written after it, at the same level, filters by stream name (only the first `name=` counts) |
//! | `exec_kill_signal SIG` | rtmp, server, app | `KILL` | global: a number or a name (HUP INT QUIT ... TTOU) |
//! | `respawn on\|off` | rtmp, server, app | `on` | respawn managed children that die |
//! | `respawn_timeout T` | rtmp, server, app | `5s` | global (a second one anywhere is an error); `0`: at once |
//!
//! Lines accumulate across levels: an application runs its own lines, then its server's,
//! then the rtmp block's (nginx-rtmp's merge order).

use std::path::Path;
use std::time::Duration;

use nginx_conf::{Directive, Span};

use super::value::{
    ctx::{RSA, RSAR},
    first, flag, put, spec, time, Args, DirectiveSpec, Fail, Kind,
};
use crate::exec::command::Template;

const ONE: Args = Args::Exactly(1);
const ONE_UP: Args = Args::AtLeast(1);

/// The exec directive table.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    spec("exec", RSA, ONE_UP, Kind::Text, ""),
    spec("exec_push", RSA, ONE_UP, Kind::Text, ""),
    spec("exec_pull", RSA, ONE_UP, Kind::Text, ""),
    spec("exec_static", RSA, ONE_UP, Kind::Text, ""),
    spec("exec_publish", RSA, ONE_UP, Kind::Text, ""),
    spec("exec_publish_done", RSA, ONE_UP, Kind::Text, ""),
    spec("exec_play", RSA, ONE_UP, Kind::Text, ""),
    spec("exec_play_done", RSA, ONE_UP, Kind::Text, ""),
    spec("exec_record_done", RSAR, ONE_UP, Kind::Text, ""),
    spec("exec_options", RSA, ONE, Kind::Flag, "off"),
    spec("exec_kill_signal", RSA, ONE, Kind::Text, "KILL"),
    spec("respawn", RSA, ONE, Kind::Flag, "on"),
    spec("respawn_timeout", RSA, ONE, Kind::Time, "5s"),
];

/// `respawn_timeout`'s default.
pub const RESPAWN_TIMEOUT: Duration = Duration::from_secs(5);

/// When a line runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `exec`, `exec_push`: while a stream is published.
    Push,
    /// `exec_pull`: while a stream has players.
    Pull,
    /// `exec_static`: while sluice runs.
    Static,
    /// `exec_publish`.
    Publish,
    /// `exec_publish_done`.
    PublishDone,
    /// `exec_play`.
    Play,
    /// `exec_play_done`.
    PlayDone,
    /// `exec_record_done`.
    RecordDone,
}

/// The session variables (the publishing or playing client's).
const SESSION: &[&str] = &["app", "flashver", "swfurl", "tcurl", "pageurl", "addr"];

impl Trigger {
    fn of(directive: &str) -> Option<Trigger> {
        Some(match directive {
            "exec" | "exec_push" => Trigger::Push,
            "exec_pull" => Trigger::Pull,
            "exec_static" => Trigger::Static,
            "exec_publish" => Trigger::Publish,
            "exec_publish_done" => Trigger::PublishDone,
            "exec_play" => Trigger::Play,
            "exec_play_done" => Trigger::PlayDone,
            "exec_record_done" => Trigger::RecordDone,
            _ => return None,
        })
    }

    /// Whether sluice keeps its processes running (respawn) and kills them when the trigger
    /// ends; the others run once and are left alone.
    pub fn managed(self) -> bool {
        matches!(self, Trigger::Push | Trigger::Pull | Trigger::Static)
    }

    /// Whether `var` is one this trigger substitutes (nginx-rtmp's eval tables).
    pub fn has_variable(self, var: &str) -> bool {
        let session = SESSION.contains(&var);
        match self {
            Trigger::Static => false,
            Trigger::Pull => var == "name" || var == "app",
            Trigger::Push => session || var == "name" || var == "args",
            Trigger::Publish | Trigger::PublishDone | Trigger::Play | Trigger::PlayDone => {
                session || ["name", "args", "path", "recorder"].contains(&var)
            }
            Trigger::RecordDone => {
                session || ["name", "args", "path", "recorder", "filename", "basename", "dirname"].contains(&var)
            }
        }
    }
}

/// One exec line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecLine {
    /// The directive as written (`exec`, `exec_push`, ...), for logs.
    pub directive: String,
    /// When it runs.
    pub trigger: Trigger,
    /// The command line.
    pub command: Template,
    /// `name=` words (with `exec_options on`): the stream names it runs for.
    pub names: Vec<String>,
    /// The file it is written in (set once the files are known).
    pub file: String,
    /// Its line.
    pub line: u32,
    span: Span,
}

impl ExecLine {
    /// Whether it runs for stream `name`. Like nginx-rtmp, only the first `name=` is compared.
    pub fn matches(&self, name: &str) -> bool {
        self.names.first().is_none_or(|n| n == name)
    }

    /// `exec_push (/etc/sluice.conf:12)`: what log lines about it say.
    pub fn origin(&self) -> String {
        format!("{} ({}:{})", self.directive, self.file, self.line)
    }
}

/// The exec settings of one application, merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConf {
    /// `exec`/`exec_push` lines.
    pub push: Vec<ExecLine>,
    /// `exec_pull` lines.
    pub pull: Vec<ExecLine>,
    /// `exec_publish` lines.
    pub publish: Vec<ExecLine>,
    /// `exec_publish_done` lines.
    pub publish_done: Vec<ExecLine>,
    /// `exec_play` lines.
    pub play: Vec<ExecLine>,
    /// `exec_play_done` lines.
    pub play_done: Vec<ExecLine>,
    /// `exec_record_done` lines of the application (every recorder runs them).
    pub record_done: Vec<ExecLine>,
    /// `exec_record_done` lines written inside `recorder NAME { }`: (recorder, lines).
    pub recorder_record_done: Vec<(String, Vec<ExecLine>)>,
    /// `respawn` (on).
    pub respawn: bool,
    /// `respawn_timeout` (5s; global).
    pub respawn_timeout: Duration,
    /// `exec_kill_signal` (SIGKILL; global).
    pub kill_signal: i32,
}

impl Default for ExecConf {
    fn default() -> Self {
        ExecLayer::default().build()
    }
}

impl ExecConf {
    /// The `exec_record_done` lines for a file of `recorder` (`""`: the application's
    /// default recorder): the recorder's own, then the application's.
    pub fn record_done_for<'a>(&'a self, recorder: &'a str) -> impl Iterator<Item = &'a ExecLine> {
        let own = self.recorder_record_done.iter().filter(move |(r, _)| !recorder.is_empty() && r == recorder);
        own.flat_map(|(_, lines)| lines).chain(&self.record_done)
    }

    /// Every line, for checks.
    fn lines(&self) -> impl Iterator<Item = &ExecLine> {
        let recorders = self.recorder_record_done.iter().flat_map(|(_, l)| l);
        [&self.push, &self.pull, &self.publish, &self.publish_done, &self.play, &self.play_done, &self.record_done]
            .into_iter()
            .flatten()
            .chain(recorders)
    }

    fn lines_mut(&mut self) -> impl Iterator<Item = &mut ExecLine> {
        let recorders = self.recorder_record_done.iter_mut().flat_map(|(_, l)| l);
        [
            &mut self.push,
            &mut self.pull,
            &mut self.publish,
            &mut self.publish_done,
            &mut self.play,
            &mut self.play_done,
            &mut self.record_done,
        ]
        .into_iter()
        .flatten()
        .chain(recorders)
    }
}

/// What the exec module sets for the whole process (nginx-rtmp's main conf), wherever written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecGlobal {
    /// `exec_static` lines, rtmp block first, then each server and its applications.
    pub statics: Vec<ExecLine>,
    /// `respawn_timeout` (5s).
    pub respawn_timeout: Duration,
    /// `exec_kill_signal` (SIGKILL).
    pub kill_signal: i32,
}

impl Default for ExecGlobal {
    fn default() -> Self {
        ExecGlobal { statics: Vec::new(), respawn_timeout: RESPAWN_TIMEOUT, kill_signal: libc::SIGKILL }
    }
}

/// Exec settings as written at one level.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExecLayer {
    lines: Vec<ExecLine>,
    statics: Vec<ExecLine>,
    /// Not inherited: nginx-rtmp reads it while parsing the lines of its own level.
    options: Option<bool>,
    respawn: Option<bool>,
    respawn_timeout: Option<(Duration, Span)>,
    kill_signal: Option<i32>,
}

impl ExecLayer {
    /// Applies one directive from [`DIRECTIVES`] (already checked for context and shape).
    pub(crate) fn set(&mut self, d: &Directive) -> Result<(), Fail> {
        match d.name.as_str() {
            "exec_options" => put(&mut self.options, flag(d)?, d),
            "respawn" => put(&mut self.respawn, flag(d)?, d),
            "respawn_timeout" => put(&mut self.respawn_timeout, (time(d)?, d.span), d),
            "exec_kill_signal" => {
                // nginx-rtmp sets it without a duplicate check: the last one wins.
                self.kill_signal = Some(signal(d)?);
                Ok(())
            }
            name => match Trigger::of(name) {
                Some(Trigger::Static) => {
                    self.statics.push(line(d, Trigger::Static, self.options == Some(true))?);
                    Ok(())
                }
                Some(trigger) => {
                    self.lines.push(line(d, trigger, self.options == Some(true))?);
                    Ok(())
                }
                None => Err(Fail::new(d.span, format!("directive \"{name}\" is not handled by exec"))),
            },
        }
    }

    /// This level's lines, then the enclosing level's (nginx-rtmp's merge order); `respawn`
    /// inherited. The global settings are gathered by [`globals`] instead.
    pub(crate) fn inherit(&self, outer: &Self) -> Self {
        ExecLayer {
            lines: self.lines.iter().chain(&outer.lines).cloned().collect(),
            statics: self.statics.clone(),
            options: self.options,
            respawn: self.respawn.or(outer.respawn),
            respawn_timeout: self.respawn_timeout,
            kill_signal: self.kill_signal,
        }
    }

    /// The `exec_record_done` lines written at this level (a recorder's).
    pub(crate) fn record_done(&self) -> Vec<ExecLine> {
        self.lines.iter().filter(|l| l.trigger == Trigger::RecordDone).cloned().collect()
    }

    /// Applies the defaults; the global settings are the defaults until [`apply_globals`].
    pub(crate) fn build(&self) -> ExecConf {
        let of = |t: Trigger| self.lines.iter().filter(|l| l.trigger == t).cloned().collect();
        let global = ExecGlobal::default();
        ExecConf {
            push: of(Trigger::Push),
            pull: of(Trigger::Pull),
            publish: of(Trigger::Publish),
            publish_done: of(Trigger::PublishDone),
            play: of(Trigger::Play),
            play_done: of(Trigger::PlayDone),
            record_done: of(Trigger::RecordDone),
            recorder_record_done: Vec::new(),
            respawn: self.respawn.unwrap_or(true),
            respawn_timeout: global.respawn_timeout,
            kill_signal: global.kill_signal,
        }
    }
}

/// The global settings from every level's layer, in walk order (rtmp, then each server and
/// its applications).
pub(crate) fn globals<'a>(layers: impl IntoIterator<Item = &'a ExecLayer>) -> Result<ExecGlobal, Fail> {
    let mut g = ExecGlobal::default();
    let mut timeout: Option<Duration> = None;
    for layer in layers {
        g.statics.extend(layer.statics.iter().cloned());
        if let Some((t, span)) = layer.respawn_timeout {
            if timeout.is_some() {
                return Err(Fail::new(span, "\"respawn_timeout\" directive is duplicate"));
            }
            timeout = Some(t);
        }
        if let Some(sig) = layer.kill_signal {
            g.kill_signal = sig;
        }
    }
    g.respawn_timeout = timeout.unwrap_or(RESPAWN_TIMEOUT);
    Ok(g)
}

/// Copies the global settings into an application's.
pub(crate) fn apply_globals(conf: &mut ExecConf, g: &ExecGlobal) {
    conf.respawn_timeout = g.respawn_timeout;
    conf.kill_signal = g.kill_signal;
}

/// Names the file of every line (spans only carry the file's index).
pub(crate) fn name_files(conf: &mut ExecConf, files: &[String]) {
    for l in conf.lines_mut() {
        name_file(l, files);
    }
}

/// [`name_files`] for the global lines.
pub(crate) fn name_global_files(g: &mut ExecGlobal, files: &[String]) {
    for l in &mut g.statics {
        name_file(l, files);
    }
}

fn name_file(l: &mut ExecLine, files: &[String]) {
    l.file = files.get(l.span.file as usize).cloned().unwrap_or_default();
}

fn line(d: &Directive, trigger: Trigger, options: bool) -> Result<ExecLine, Fail> {
    let mut words = vec![d.args[0].value.clone()];
    let mut names = Vec::new();
    for a in &d.args[1..] {
        match a.value.strip_prefix("name=") {
            Some(n) if options => names.push(n.to_owned()),
            _ => words.push(a.value.clone()),
        }
    }
    let command = Template::parse(&words)
        .map_err(|e| Fail::new(d.span, format!("invalid command in \"{}\" directive: {e}", d.name)))?;
    Ok(ExecLine {
        directive: d.name.clone(),
        trigger,
        command,
        names,
        file: String::new(),
        line: d.span.line,
        span: d.span,
    })
}

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("ABRT", libc::SIGABRT),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("SEGV", libc::SIGSEGV),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
];

/// `exec_kill_signal`: a number (1-64; nginx-rtmp's 0 would never kill) or a name,
/// case-insensitive, without `SIG`.
fn signal(d: &Directive) -> Result<i32, Fail> {
    let arg = first(d)?;
    if let Ok(n) = arg.value.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    SIGNALS.iter().find(|(name, _)| name.eq_ignore_ascii_case(&arg.value)).map(|(_, s)| *s).ok_or_else(|| {
        Fail::new(arg.span, format!("unknown signal \"{}\" in \"exec_kill_signal\" directive", arg.value))
    })
}

/// What `-t` and start-up say about exec lines: programs not found on `PATH` now (it may
/// differ when they run, hence a warning), variables the directive does not substitute.
pub(crate) fn report(apps: &[&ExecConf], global: &ExecGlobal) -> Vec<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    let all = apps.iter().flat_map(|a| a.lines()).chain(&global.statics);
    let mut out = Vec::new();
    for l in all {
        if !seen.insert((l.file.clone(), l.line)) {
            continue;
        }
        let at = format!("in {}:{}", l.file, l.line);
        let program = l.command.program();
        if !found(program, &path) {
            let where_ = if program.contains('/') { String::new() } else { format!(" on PATH ({path})") };
            out.push(format!(
                "sluice: [warn] \"{}\" program \"{program}\" is not found{where_} now, {at}",
                l.directive
            ));
        }
        for var in l.command.variables() {
            if l.trigger == Trigger::Static {
                out.push(format!(
                    "sluice: [warn] \"exec_static\" does not substitute variables: \"${var}\" is passed as written, {at}"
                ));
            } else if var.is_empty() {
                out.push(format!(
                    "sluice: [warn] \"{}\": a \"$\" not followed by a letter expands to nothing (write \"\\$\" for a \"$\"), {at}",
                    l.directive
                ));
            } else if !l.trigger.has_variable(var) {
                out.push(format!(
                    "sluice: [warn] \"{}\" has no variable \"${var}\" (it expands to nothing; a variable name ends at the first character that is not a letter), {at}",
                    l.directive
                ));
            }
        }
    }
    out
}

/// Whether `program` is an executable file: as a path when it holds a `/`, else in one of
/// `path`'s directories (as `execvp` searches).
pub fn found(program: &str, path: &str) -> bool {
    if program.contains('/') {
        return executable(Path::new(program));
    }
    path.split(':')
        .map(|dir| if dir.is_empty() { "." } else { dir })
        .any(|dir| executable(&Path::new(dir).join(program)))
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::exec::command::Values;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, "t.conf").map_err(|e| e.to_string())
    }

    fn app(body: &str) -> Result<ExecConf, String> {
        parse(&format!("rtmp {{ server {{ application live {{ {body} }} }} }}"))
            .map(|mut c| c.servers.remove(0).apps.remove(0).exec)
    }

    fn args(l: &ExecLine) -> Vec<String> {
        let v = Values::new().with("name", "cam");
        l.command.resolve(Some(&v)).unwrap().args
    }

    #[test]
    fn defaults() {
        let e = app("live on;").unwrap();
        assert_eq!(e, ExecConf::default());
        assert!(e.respawn);
        assert_eq!((e.respawn_timeout, e.kill_signal), (Duration::from_secs(5), libc::SIGKILL));
        let c = parse("rtmp { server { } }").unwrap();
        assert_eq!(c.exec, ExecGlobal::default());
    }

    #[test]
    fn every_directive_lands_in_its_list() {
        let e = app("exec a; exec_push b $name; exec_pull c; exec_publish d; exec_publish_done e;
             exec_play f; exec_play_done g; exec_record_done h;")
        .unwrap();
        let programs = |l: &[ExecLine]| l.iter().map(|l| l.command.program().to_owned()).collect::<Vec<_>>();
        assert_eq!(programs(&e.push), ["a", "b"]);
        assert_eq!(e.push[0].directive, "exec");
        assert_eq!((e.push[1].file.as_str(), e.push[1].line), ("t.conf", 1));
        assert_eq!(e.push[1].origin(), "exec_push (t.conf:1)");
        assert_eq!(args(&e.push[1]), ["cam"]);
        for (list, p) in [(&e.pull, "c"), (&e.publish, "d"), (&e.publish_done, "e"), (&e.play, "f")] {
            assert_eq!(programs(list), [p]);
        }
        assert_eq!((programs(&e.play_done), programs(&e.record_done)), (vec!["g".into()], vec!["h".into()]));
        assert!(e.push[0].trigger.managed() && !e.publish[0].trigger.managed());
    }

    #[test]
    fn lines_accumulate_own_level_first() {
        let text = "rtmp { exec r; server { exec s; application a { exec a; } application b { } } }";
        let c = parse(text).unwrap();
        let programs =
            |i: usize| c.servers[0].apps[i].exec.push.iter().map(|l| l.command.program()).collect::<Vec<_>>();
        assert_eq!(programs(0), ["a", "s", "r"]);
        assert_eq!(programs(1), ["s", "r"]);
    }

    #[test]
    fn exec_options_applies_to_later_lines_of_its_level() {
        let e =
            app("exec a name=x; exec_options on; exec b name=cam name=other x=1; exec_publish c name=cam;").unwrap();
        assert_eq!(args(&e.push[0]), ["name=x"], "before exec_options, name= is an argument");
        assert!(e.push[0].names.is_empty() && e.push[0].matches("anything"));
        assert_eq!(
            (args(&e.push[1]), &e.push[1].names),
            (vec!["x=1".to_string()], &vec!["cam".into(), "other".into()])
        );
        assert!(e.push[1].matches("cam"));
        assert!(!e.push[1].matches("other"), "nginx-rtmp compares the first name= only");
        assert!(e.publish[0].matches("cam") && !e.publish[0].matches("x"));
        // The rtmp block's exec_options does not reach an application's lines.
        let c = parse("rtmp { exec_options on; server { application a { exec p name=x; } } }").unwrap();
        assert_eq!(args(&c.servers[0].apps[0].exec.push[0]), ["name=x"]);
    }

    #[test]
    fn globals_are_global() {
        let text = "rtmp { exec_static s1; server { exec_kill_signal term; application a { respawn_timeout 2s;
            exec_static s2 $name; respawn off; } application b { exec_kill_signal 10; } } }";
        let c = parse(text).unwrap();
        let statics: Vec<_> = c.exec.statics.iter().map(|l| l.command.program()).collect();
        assert_eq!(statics, ["s1", "s2"]);
        assert_eq!(c.exec.statics[1].command.resolve(None).unwrap().args, ["$name"]);
        assert_eq!((c.exec.respawn_timeout, c.exec.kill_signal), (Duration::from_secs(2), libc::SIGUSR1));
        for a in &c.servers[0].apps {
            assert_eq!((a.exec.respawn_timeout, a.exec.kill_signal), (Duration::from_secs(2), libc::SIGUSR1));
        }
        assert!(!c.servers[0].apps[0].exec.respawn && c.servers[0].apps[1].exec.respawn);
        let e = parse("rtmp { respawn_timeout 1s; server { application a { respawn_timeout 0; } } }").unwrap_err();
        assert!(e.contains("\"respawn_timeout\" directive is duplicate"), "{e}");
        assert_eq!(parse("rtmp { respawn_timeout 0; }").unwrap().exec.respawn_timeout, Duration::ZERO);
    }

    #[test]
    fn kill_signals() {
        for (text, sig) in [("KILL", 9), ("term", 15), ("Hup", 1), ("9", 9), ("64", 64), ("ttou", libc::SIGTTOU)] {
            let c = parse(&format!("rtmp {{ exec_kill_signal {text}; }}")).unwrap();
            assert_eq!(c.exec.kill_signal, sig, "{text}");
        }
        for bad in ["0", "65", "SIGTERM", "nope", "-1"] {
            let e = parse(&format!("rtmp {{ exec_kill_signal {bad}; }}")).unwrap_err();
            assert!(e.contains(&format!("unknown signal \"{bad}\"")), "{e}");
        }
    }

    #[test]
    fn record_done_in_recorders() {
        let e =
            app("exec_record_done all $path; recorder r { record all; record_path /rec; exec_record_done own $path; }
             recorder q { record all; record_path /rec; }")
            .unwrap();
        let programs = |rec: &str| e.record_done_for(rec).map(|l| l.command.program().to_owned()).collect::<Vec<_>>();
        assert_eq!(programs("r"), ["own", "all"]);
        assert_eq!(programs("q"), ["all"]);
        assert_eq!(programs(""), ["all"]);
        let err = app("recorder r { exec_push x; }").unwrap_err();
        assert!(err.contains("\"exec_push\" directive is not allowed here"), "{err}");
    }

    #[test]
    fn command_errors_name_the_line() {
        let e = app("live on;\nexec ffmpeg -i x > /tmp/log;").unwrap_err();
        assert!(
            e.starts_with("t.conf:2:") && e.contains("invalid command in \"exec\" directive: redirect \">\""),
            "{e}"
        );
        let e = app("exec_publish x 3>/tmp/y;").unwrap_err();
        assert!(e.contains("fds 0, 1 and 2"), "{e}");
        let e = app("exec_options maybe;").unwrap_err();
        assert!(e.contains("exec_options"), "{e}");
    }

    #[test]
    fn exec_is_no_longer_inert() {
        let c = parse("rtmp { server { application a { exec x; exec_static y; respawn off; } } }").unwrap();
        assert!(c.inert.iter().all(|i| !i.directive.starts_with("exec") && i.directive != "respawn"), "{:?}", c.inert);
    }

    #[test]
    fn report_warns_about_missing_programs_and_unknown_variables() {
        let c = parse(
            "rtmp { exec_static sh -c $name; server { application a {\n exec no-such-program-sluice $namelow $name_low;\n exec_pull sh $args $app; exec_record_done sh $basename; } } }",
        )
        .unwrap();
        let lines = c.inert_report();
        let has = |s: &str| lines.iter().any(|l| l.contains(s));
        assert!(has("\"exec\" program \"no-such-program-sluice\" is not found on PATH ("), "{lines:?}");
        assert!(has("in t.conf:2"), "{lines:?}");
        assert!(has("\"exec\" has no variable \"$namelow\""), "{lines:?}");
        assert!(has("\"exec_pull\" has no variable \"$args\""), "{lines:?}");
        assert!(!has("\"$app\"") && !has("$basename") && !has("\"$name\" (it"), "{lines:?}");
        assert!(has("\"exec_static\" does not substitute variables: \"$name\""), "{lines:?}");
        assert!(!has("program \"sh\""), "sh is on PATH: {lines:?}");
    }

    #[test]
    fn path_search() {
        assert!(found("sh", "/nonexistent:/bin:/usr/bin"));
        assert!(!found("sh", "/nonexistent"));
        assert!(found("/bin/sh", ""));
        assert!(!found("/etc/passwd", "/usr/bin"), "not executable");
        assert!(!found("/bin", "/usr/bin"), "a directory");
    }
}

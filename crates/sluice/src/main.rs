//! `sluice [-c FILE] [-t] [-s SIGNAL] [--http-listen ADDR|off]`: the command line, like
//! nginx's; the signals the running process answers (as nginx's master: HUP reloads, QUIT
//! stops gracefully, TERM/INT stop fast, USR1 reopens log files); and `sluice token ...`,
//! which prints a signed publish or play URL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use sluice::app::Control;
use sluice::config::{parse_http_listen, parse_time, Action, Config};
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

const USAGE: &str = "\
Usage: sluice [-c FILE] [-t|-T] [-s SIGNAL] [--http-listen ADDR|off] [-h] [-V]
              [--print-default-config]
       sluice token --secret S --app APP --name STREAM [--publish|--play] [--ttl T]
                    [--url rtmp://HOST[:PORT]]

Options:
  -c FILE                  read the nginx-style configuration from FILE
                           (default: the embedded configuration: RTMP on 1935, HTTP on 8080)
  -t                       check the configuration and exit (0 when valid)
  -T                       check the configuration, then print it as sluice uses it
                           (includes expanded, inherited values and defaults filled in)
  -s SIGNAL                send SIGNAL to the running sluice (its pid read from the file
                           the configuration's pid directive names): reload (re-read the configuration; clients stay
                           connected), quit (graceful stop: no new clients, the connected
                           ones may stay up to worker_shutdown_timeout), stop (fast stop),
                           reopen (reopen log files, after logrotate)
  --http-listen ADDR|off   the built-in HTTP server's address (8080, 127.0.0.1:8080,
                           [::1]:8080), or off; overrides http_listen. Unused when the
                           configuration has an http {} block
  --print-default-config   print the embedded default configuration and exit
  -V, --version            print the version and exit
  -h, --help               print this help and exit

sluice token prints a URL signed for an application with auth_secret S, valid for T
(nginx time: 30m, 1h, 7d; a bare number is seconds; default 1h), on rtmp://localhost
unless --url says otherwise. The URL publishes (--publish, the default) or plays (--play),
never both.

Signals, as nginx: SIGHUP reload, SIGQUIT graceful stop, SIGTERM and SIGINT fast stop,
SIGUSR1 reopen log files.

Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more detail.";

struct Args {
    config: Option<PathBuf>,
    test: bool,
    /// `-s SIGNAL`.
    signal: Option<Signal>,
    /// `-T`: print the effective configuration after the test.
    dump: bool,
    /// `--http-listen`: `Some(None)` is `off`.
    http_listen: Option<Option<SocketAddr>>,
}

/// What `-s` sends, by nginx's names.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Reload,
    Quit,
    Stop,
    Reopen,
}

impl Signal {
    const NAMES: &'static [(&'static str, Signal)] =
        &[("reload", Signal::Reload), ("quit", Signal::Quit), ("stop", Signal::Stop), ("reopen", Signal::Reopen)];

    fn number(self) -> libc::c_int {
        match self {
            Signal::Reload => libc::SIGHUP,
            Signal::Quit => libc::SIGQUIT,
            Signal::Stop => libc::SIGTERM,
            Signal::Reopen => libc::SIGUSR1,
        }
    }
}

enum Cli {
    Run(Args),
    Exit(ExitCode),
}

fn parse_args() -> Cli {
    let mut args = Args { config: None, test: false, dump: false, signal: None, http_listen: None };
    let mut it = std::env::args().skip(1).peekable();
    if it.peek().map(String::as_str) == Some("token") {
        it.next();
        return token(it);
    }
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" => match it.next() {
                Some(f) => args.config = Some(f.into()),
                None => return usage_error("option \"-c\" requires a file name"),
            },
            "-t" => args.test = true,
            "-T" => (args.test, args.dump) = (true, true),
            "-s" => {
                let Some(v) = it.next() else {
                    return usage_error("option \"-s\" requires parameter");
                };
                match Signal::NAMES.iter().find(|(name, _)| *name == v) {
                    Some(&(_, signal)) => args.signal = Some(signal),
                    None => return usage_error(&format!("invalid option: \"-s {v}\" (reload, quit, stop or reopen)")),
                }
            }
            "--http-listen" => {
                let Some(v) = it.next() else {
                    return usage_error("option \"--http-listen\" requires an address");
                };
                match parse_http_listen(&v) {
                    Some(addr) => args.http_listen = Some(addr),
                    None => return usage_error(&format!(
                        "invalid value \"{v}\" for \"--http-listen\", it must be \"off\" or an address like 8080, 127.0.0.1:8080 or [::1]:8080"
                    )),
                }
            }
            "-h" | "--help" | "-?" => {
                println!("{USAGE}");
                return Cli::Exit(ExitCode::SUCCESS);
            }
            "-V" | "-v" | "--version" => {
                println!("sluice {}", env!("CARGO_PKG_VERSION"));
                return Cli::Exit(ExitCode::SUCCESS);
            }
            "--print-default-config" => {
                print!("{}", Config::default_text());
                return Cli::Exit(ExitCode::SUCCESS);
            }
            other => return usage_error(&format!("invalid option: \"{other}\"")),
        }
    }
    Cli::Run(args)
}

/// The default lifetime of `sluice token` URLs.
const TOKEN_TTL_SECS: u64 = 3600;

/// `sluice token`: print `URL/APP/NAME?expires=..&token=..` for publishing (the default, as
/// `auth`'s default scope is publishing) or playing.
fn token(mut it: impl Iterator<Item = String>) -> Cli {
    let (mut secret, mut app, mut name, mut ttl, mut url) =
        (None, None, None, TOKEN_TTL_SECS, "rtmp://localhost".to_string());
    let mut action = None;
    while let Some(a) = it.next() {
        let flag = match a.as_str() {
            "--publish" => Some(Action::Publish),
            "--play" => Some(Action::Play),
            _ => None,
        };
        if let Some(asked) = flag {
            if action.is_some_and(|had| had != asked) {
                return usage_error("\"token\" takes --publish or --play, not both");
            }
            action = Some(asked);
            continue;
        }
        let Some(value) = it.next() else {
            return usage_error(&format!("option \"{a}\" of \"token\" requires a value"));
        };
        match a.as_str() {
            "--secret" => secret = Some(value),
            "--app" => app = Some(value),
            "--name" => name = Some(value),
            "--url" => url = value.trim_end_matches('/').to_string(),
            "--ttl" => match parse_time(&value) {
                Some(t) if t.as_secs() > 0 => ttl = t.as_secs(),
                _ => {
                    return usage_error(&format!(
                        "invalid value \"{value}\" for \"--ttl\", it must be a time like 30m, 1h or 7d"
                    ))
                }
            },
            other => return usage_error(&format!("invalid option of \"token\": \"{other}\"")),
        }
    }
    let (Some(secret), Some(app), Some(name)) = (secret, app, name) else {
        return usage_error("\"token\" needs --secret, --app and --name");
    };
    let action = action.unwrap_or(Action::Publish);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    println!("{url}/{app}/{name}?{}", sluice::auth::token_query(&secret, action, &app, &name, now + ttl));
    Cli::Exit(ExitCode::SUCCESS)
}

fn usage_error(msg: &str) -> Cli {
    eprintln!("sluice: {msg}\n\n{USAGE}");
    Cli::Exit(ExitCode::from(2))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Cli::Run(a) => a,
        Cli::Exit(code) => return code,
    };
    init_logging();
    let source = Source { path: args.config.clone(), http_listen: args.http_listen };
    let config = match source.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice: {e}");
            if args.test {
                eprintln!("sluice: configuration file {} test failed", source.name());
            }
            return ExitCode::FAILURE;
        }
    };
    if let Some(signal) = args.signal {
        return send_signal(&config, &source, signal);
    }
    if args.http_listen.is_some() && config.http.block.is_some() {
        tracing::warn!("--http-listen has no effect: the configuration's \"http\" block says where to listen");
    }
    // As nginx's `[warn]` lines: on stderr whatever RUST_LOG says, with `-t` and at start-up.
    for line in config.inert_report() {
        eprintln!("{line}");
    }
    if let Err(e) = sluice::logs::init(&config) {
        eprintln!("sluice: {e:#}");
        if args.test {
            eprintln!("sluice: configuration file {} test failed", source.name());
        }
        return ExitCode::FAILURE;
    }
    if args.test {
        let name = source.name();
        eprintln!(
            "sluice: the configuration file {name} syntax is ok\nsluice: configuration file {name} test is successful"
        );
        return if args.dump { print_effective(args.config.as_deref()) } else { ExitCode::SUCCESS };
    }
    match run(config, source) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where the configuration comes from, to read it again on reload.
#[derive(Clone)]
struct Source {
    path: Option<PathBuf>,
    /// `--http-listen`, applied over every configuration read.
    http_listen: Option<Option<SocketAddr>>,
}

impl Source {
    fn name(&self) -> String {
        self.path.as_ref().map_or_else(|| "embedded default configuration".to_string(), |p| p.display().to_string())
    }

    fn load(&self) -> Result<Config, sluice::config::ConfigError> {
        let mut config = match &self.path {
            Some(path) => Config::load(path)?,
            None => Config::default_config(),
        };
        if let Some(addr) = self.http_listen {
            config.http.builtin_listen = addr;
        }
        Ok(config)
    }
}

/// `sluice -s SIGNAL`: signal the process whose id the configuration's pid file holds.
fn send_signal(config: &Config, source: &Source, signal: Signal) -> ExitCode {
    let Some(path) = &config.process.pid else {
        eprintln!(
            "sluice: {} has no \"pid\" directive: there is no pid file to find the running sluice by (add \"pid /run/sluice.pid;\" at the top level, or signal the process with kill)",
            source.name()
        );
        return ExitCode::FAILURE;
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sluice: cannot read the pid file {}: {e} (is sluice running?)", path.display());
            return ExitCode::FAILURE;
        }
    };
    let pid = match text.trim().parse::<libc::pid_t>() {
        Ok(pid) if pid > 0 => pid,
        _ => {
            eprintln!("sluice: invalid PID number \"{}\" in {}", text.trim(), path.display());
            return ExitCode::FAILURE;
        }
    };
    // SAFETY: kill(2) with a positive pid and a valid signal number.
    if unsafe { libc::kill(pid, signal.number()) } != 0 {
        let e = std::io::Error::last_os_error();
        eprintln!("sluice: kill({pid}, {signal:?}) failed: {e} (pid from {})", path.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `-T`: the configuration as sluice uses it, on stdout.
fn print_effective(path: Option<&std::path::Path>) -> ExitCode {
    let text = match path {
        Some(path) => Config::load_effective_text(path),
        None => Config::effective_text(Config::default_text(), "<built-in>"),
    };
    match text {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Events go to stderr until the configuration's `error_log` applies (`sluice::logs::init`).
fn init_logging() {
    sluice::logs::install();
}

/// Raise the open-files limit to the hard limit: every player is a socket, and the usual soft
/// limit of 1024 would cap a server far below what it can carry (nginx sets
/// `worker_rlimit_nofile` for the same reason).
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0
        }
    };
    if raised {
        tracing::debug!(limit = lim.rlim_cur, "open files limit");
    } else {
        tracing::warn!("could not raise the open files limit");
    }
}

fn run(config: Config, source: Source) -> anyhow::Result<()> {
    raise_fd_limit();
    let pid_file = PidFile::write(config.process.pid.clone())?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let control = Control { stop: CancellationToken::new(), quit: CancellationToken::new(), reload: Some(rx) };
        tokio::spawn(answer_signals(control.stop.clone(), control.quit.clone(), tx, source));
        sluice::app::run_controlled(config, control, Vec::new()).await
    });
    drop(pid_file);
    result
}

/// The `pid` file: written at start-up, removed at exit (when it still names this process).
struct PidFile(Option<PathBuf>);

impl PidFile {
    fn write(path: Option<PathBuf>) -> anyhow::Result<Self> {
        if let Some(path) = &path {
            std::fs::write(path, format!("{}\n", std::process::id()))
                .map_err(|e| anyhow::anyhow!("cannot write the pid file {}: {e}", path.display()))?;
        }
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let Some(path) = &self.0 else { return };
        let ours = std::fs::read_to_string(path).is_ok_and(|t| t.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// SIGUSR1, what logrotate sends: every log file is opened again under its name.
fn reopen_logs() {
    match sluice::logs::reopen() {
        Ok(()) => tracing::info!(signal = "SIGUSR1", "log files reopened"),
        Err(e) => tracing::error!(signal = "SIGUSR1", "{e:#}"),
    }
}

/// Answers the signals nginx's users send, until a stop: SIGHUP reloads (a configuration that
/// does not load is logged and the running one stays), SIGQUIT stops gracefully, SIGTERM and
/// SIGINT stop fast (also during a graceful stop), SIGUSR1 reopens log files; SIGUSR2 (binary
/// upgrade) is logged, where the default action would kill the process with nothing
/// finalised.
///
/// The handlers are installed before this returns its future (not when a task first polls
/// it): a signal sent as soon as the listeners answer must not meet the default action, which
/// for SIGHUP, SIGUSR1 and SIGQUIT ends the process.
fn answer_signals(
    stop: CancellationToken,
    quit: CancellationToken,
    reload: Sender<Config>,
    source: Source,
) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let install = |kind: SignalKind| signal(kind).expect("installing a signal handler cannot fail at start-up");
    let mut int = install(SignalKind::interrupt());
    let mut term = install(SignalKind::terminate());
    let mut quit_signal = install(SignalKind::quit());
    let mut hup = install(SignalKind::hangup());
    let mut usr1 = install(SignalKind::user_defined1());
    let mut usr2 = install(SignalKind::user_defined2());
    async move {
        loop {
            tokio::select! {
                _ = int.recv() => {
                    tracing::info!(signal = "SIGINT", "fast shutdown");
                    return stop.cancel();
                }
                _ = term.recv() => {
                    tracing::info!(signal = "SIGTERM", "fast shutdown");
                    return stop.cancel();
                }
                _ = quit_signal.recv() => {
                    tracing::info!(signal = "SIGQUIT", "graceful shutdown");
                    quit.cancel();
                }
                _ = hup.recv() => {
                    tracing::info!(signal = "SIGHUP", "reconfiguring: reading {}", source.name());
                    let source = source.clone();
                    match tokio::task::spawn_blocking(move || source.load()).await {
                        Ok(Ok(config)) => {
                            for line in config.inert_report() {
                                tracing::warn!("{line}");
                            }
                            // The log files first: one that cannot be opened refuses the reload.
                            if let Err(e) = sluice::logs::apply(&config) {
                                tracing::error!("reload refused, still running the previous configuration: {e:#}");
                                continue;
                            }
                            if reload.send(config).await.is_err() {
                                return;
                            }
                        }
                        Ok(Err(e)) => tracing::error!("reload refused, still running the previous configuration: {e}"),
                        Err(e) => tracing::error!("reload failed: {e}"),
                    }
                }
                _ = usr1.recv() => {
                    reopen_logs();
                }
                _ = usr2.recv() => {
                    tracing::warn!(signal = "SIGUSR2", "binary upgrade is not supported; still running")
                }
            }
        }
    }
}

//! `sluice [-c FILE] [-t] [--http-listen ADDR|off]`: the command line, like nginx's; and
//! `sluice token ...`, which prints a signed publish or play URL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use sluice::config::{parse_http_listen, parse_time, Action, Config};
use tokio_util::sync::CancellationToken;

const USAGE: &str = "\
Usage: sluice [-c FILE] [-t] [--http-listen ADDR|off] [-h] [-V] [--print-default-config]
       sluice token --secret S --app APP --name STREAM [--publish|--play] [--ttl T]
                    [--url rtmp://HOST[:PORT]]

Options:
  -c FILE                  read the nginx-style configuration from FILE
                           (default: the embedded configuration: RTMP on 1935, HTTP on 8080)
  -t                       check the configuration and exit (0 when valid)
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

Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more detail.";

struct Args {
    config: Option<PathBuf>,
    test: bool,
    /// `--http-listen`: `Some(None)` is `off`.
    http_listen: Option<Option<SocketAddr>>,
}

enum Cli {
    Run(Args),
    Exit(ExitCode),
}

fn parse_args() -> Cli {
    let mut args = Args { config: None, test: false, http_listen: None };
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
    let (config, name) = match &args.config {
        Some(path) => (Config::load(path), path.display().to_string()),
        None => (Ok(Config::default_config()), "embedded default configuration".to_string()),
    };
    let mut config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice: {e}");
            if args.test {
                eprintln!("sluice: configuration file {name} test failed");
            }
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = args.http_listen {
        if config.http.block.is_some() {
            tracing::warn!("--http-listen has no effect: the configuration's \"http\" block says where to listen");
        }
        config.http.builtin_listen = addr;
    }
    // As nginx's `[warn]` lines: on stderr whatever RUST_LOG says, with `-t` and at start-up.
    for line in config.inert_report() {
        eprintln!("{line}");
    }
    if let Err(e) = sluice::logs::init(&config) {
        eprintln!("sluice: {e:#}");
        if args.test {
            eprintln!("sluice: configuration file {name} test failed");
        }
        return ExitCode::FAILURE;
    }
    if args.test {
        eprintln!(
            "sluice: the configuration file {name} syntax is ok\nsluice: configuration file {name} test is successful"
        );
        return ExitCode::SUCCESS;
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
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

fn run(config: Config) -> anyhow::Result<()> {
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            token.cancel();
        });
        sluice::app::run(config, shutdown).await
    })
}

/// Waits for a signal that ends the process (SIGTERM, SIGINT, SIGQUIT: a graceful shutdown),
/// answering the others nginx's users send on the way: SIGHUP (reload), SIGUSR1 (reopen log
/// files, what logrotate sends) and SIGUSR2 (binary upgrade) are logged and the server keeps
/// running, where the default action would kill it with nothing finalised.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let install = |kind: SignalKind| signal(kind).expect("installing a signal handler cannot fail at start-up");
    let mut int = install(SignalKind::interrupt());
    let mut term = install(SignalKind::terminate());
    let mut quit = install(SignalKind::quit());
    let mut hup = install(SignalKind::hangup());
    let mut usr1 = install(SignalKind::user_defined1());
    let mut usr2 = install(SignalKind::user_defined2());
    loop {
        tokio::select! {
            _ = int.recv() => return tracing::info!(signal = "SIGINT", "shutting down gracefully"),
            _ = term.recv() => return tracing::info!(signal = "SIGTERM", "shutting down gracefully"),
            _ = quit.recv() => return tracing::info!(signal = "SIGQUIT", "shutting down gracefully"),
            _ = hup.recv() => {
                tracing::warn!(signal = "SIGHUP", "configuration reload is not supported yet; still running with the configuration read at start")
            }
            _ = usr1.recv() => {
                match sluice::logs::reopen() { Ok(()) => tracing::info!(signal = "SIGUSR1", "log files reopened"), Err(e) => tracing::error!(signal = "SIGUSR1", "{e:#}") }
            }
            _ = usr2.recv() => {
                tracing::warn!(signal = "SIGUSR2", "binary upgrade is not supported; still running")
            }
        }
    }
}

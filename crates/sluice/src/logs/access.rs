//! Access logs: nginx-rtmp's one line per session, written when the session ends.
//!
//! A client takes the [`Table`] in force when it registers ([`current`]); when it leaves, its
//! line is formatted on the spot ([`Table::session_ended`]) and queued for the writer thread.
//! The queue holds at most [`QUEUE`] lines: past that a line is dropped, counted and reported
//! at most every 10 s, so a stuck disk costs log lines, never a runtime thread.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::{lock, open_error, LogFile};
use crate::clients::ConnectMeta;
use crate::config::{Config, LogConf, LogFormat, LogOp, LogVar};
use crate::notify::log_url;
use crate::server::LogEvery;
use crate::untrusted::{for_log, redact_query};

/// Most lines waiting for the writer thread.
const QUEUE: usize = 4096;

/// How long the process waits at exit for queued lines to be written.
const EXIT_FLUSH: Duration = Duration::from_secs(2);

/// One file and the format of its lines.
#[derive(Debug)]
struct Target {
    file: Arc<LogFile>,
    format: LogFormat,
}

/// The access logs of one `rtmp { server { } }` block.
#[derive(Debug, Default)]
struct ServerLogs {
    /// For sessions that connected to no application.
    server: Vec<Arc<Target>>,
    apps: HashMap<String, Vec<Arc<Target>>>,
}

/// Every access log of a configuration, by server block and application.
#[derive(Debug, Default)]
pub struct Table {
    servers: Vec<ServerLogs>,
}

impl Table {
    /// Opens the files `config`'s `access_log`s name (sharing those already open); fails,
    /// naming the file, when one cannot be opened.
    pub(super) fn build(config: &Config) -> anyhow::Result<Table> {
        let mut targets: Vec<Arc<Target>> = Vec::new();
        let mut target = |conf: &LogConf| -> anyhow::Result<Vec<Arc<Target>>> {
            let mut out = Vec::new();
            for log in &conf.access {
                let same = |t: &&Arc<Target>| t.file.path == log.path && t.format == log.format;
                let t = match targets.iter().find(same) {
                    Some(t) => t.clone(),
                    None => {
                        let file = LogFile::shared(&log.path).map_err(|e| open_error("access_log", &log.path, e))?;
                        let t = Arc::new(Target { file, format: log.format.clone() });
                        targets.push(t.clone());
                        t
                    }
                };
                out.push(t);
            }
            Ok(out)
        };
        let mut servers = Vec::new();
        for s in &config.servers {
            let mut logs = ServerLogs { server: target(&s.log)?, apps: HashMap::new() };
            for app in &s.apps {
                logs.apps.insert(app.name.clone(), target(&app.log)?);
            }
            servers.push(logs);
        }
        Ok(Table { servers })
    }

    /// Where sessions of application `app` (none yet: empty) of server block `srv` log.
    fn targets(&self, srv: usize, app: &str) -> &[Arc<Target>] {
        let Some(s) = self.servers.get(srv) else { return &[] };
        s.apps.get(app).unwrap_or(&s.server)
    }

    /// Whether any session of server block `srv` is logged (to skip gathering a line's data).
    pub fn logs_server(&self, srv: usize) -> bool {
        self.servers.get(srv).is_some_and(|s| !s.server.is_empty() || s.apps.values().any(|t| !t.is_empty()))
    }

    /// Formats `session`'s line for each access log of its server block and application and
    /// queues it for writing.
    pub fn session_ended(&self, srv: usize, session: &Session<'_>) {
        let targets = self.targets(srv, session.app);
        if targets.is_empty() {
            return;
        }
        let needs_time = targets.iter().any(|t| t.format.ops.contains(&LogOp::Var(LogVar::TimeLocal)));
        let time = if needs_time { time_local(SystemTime::now()) } else { String::new() };
        for t in targets {
            let mut line = render(&t.format, session, &time);
            line.push('\n');
            enqueue(t.file.clone(), line);
        }
    }
}

static CURRENT: LazyLock<RwLock<Arc<Table>>> = LazyLock::new(Default::default);

/// The access logs in force: what a session that starts now logs to when it ends.
pub fn current() -> Arc<Table> {
    CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone()
}

pub(super) fn set(table: Table) {
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
}

/// What an access log line is made of: one client session, as it ended.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    /// The client id (`$connection`).
    pub id: u64,
    /// The client's address.
    pub addr: IpAddr,
    /// The application (empty when it connected to none).
    pub app: &'a str,
    /// The last stream it published or played.
    pub name: &'a str,
    /// That publish's or play's query string, as the client sent it (redacted here).
    pub args: &'a str,
    /// What it said about itself.
    pub connect: &'a ConnectMeta,
    /// Whether it played.
    pub played: bool,
    /// Whether it published.
    pub published: bool,
    /// Bytes read from it.
    pub bytes_in: u64,
    /// Bytes written to it.
    pub bytes_out: u64,
    /// How long it was connected.
    pub duration: Duration,
}

/// `session`'s line in `format` (without the newline); `time` is `$time_local`. Client text
/// goes through `untrusted::for_log` (no control characters: one line stays one line), the
/// query string through `untrusted::redact_query` and URLs through `notify::log_url` (their
/// queries redacted: no secrets).
pub fn render(format: &LogFormat, s: &Session<'_>, time: &str) -> String {
    let mut out = String::with_capacity(256);
    for op in &format.ops {
        let var = match op {
            LogOp::Text(text) => {
                out.push_str(text);
                continue;
            }
            LogOp::Var(v) => *v,
        };
        let _ = match var {
            LogVar::Connection => write!(out, "{}", s.id),
            LogVar::RemoteAddr => write!(out, "{}", s.addr),
            LogVar::App => write!(out, "{}", for_log(s.app)),
            LogVar::Name => write!(out, "{}", for_log(s.name)),
            LogVar::Args => write!(out, "{}", if s.args.is_empty() { String::new() } else { redact_query(s.args) }),
            LogVar::Flashver => write!(out, "{}", for_log(&s.connect.flashver)),
            LogVar::Swfurl => write!(out, "{}", log_url(&s.connect.swfurl)),
            LogVar::Tcurl => write!(out, "{}", log_url(&s.connect.tcurl)),
            LogVar::Pageurl => write!(out, "{}", log_url(&s.connect.pageurl)),
            LogVar::Command => write!(out, "{}", command(s)),
            LogVar::BytesSent => write!(out, "{}", s.bytes_out),
            LogVar::BytesReceived => write!(out, "{}", s.bytes_in),
            LogVar::TimeLocal => write!(out, "{time}"),
            LogVar::SessionTime => write!(out, "{}", s.duration.as_secs()),
            LogVar::SessionReadableTime => write!(out, "{}", readable(s.duration.as_secs())),
        };
    }
    out
}

fn command(s: &Session<'_>) -> &'static str {
    match (s.played, s.published) {
        (false, false) => "NONE",
        (true, false) => "PLAY",
        (false, true) => "PUBLISH",
        (true, true) => "PLAY+PUBLISH",
    }
}

/// nginx-rtmp's `$session_readable_time`: `1d 2h 3m 4s`, leading zero units left out.
fn readable(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if d > 0 {
        let _ = write!(out, "{d}d ");
    }
    if d > 0 || h > 0 {
        let _ = write!(out, "{h}h ");
    }
    if d > 0 || h > 0 || m > 0 {
        let _ = write!(out, "{m}m ");
    }
    let _ = write!(out, "{s}s");
    out
}

/// nginx's `$time_local` for `at`: `06/Dec/2026:16:00:45 +0000`, in the local time zone.
pub fn time_local(at: SystemTime) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs() as libc::time_t;
    // SAFETY: localtime_r writes only into the zeroed `tm` we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return String::from("-");
    }
    let off = tm.tm_gmtoff / 60;
    let sign = if off < 0 { '-' } else { '+' };
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} {sign}{:02}{:02}",
        tm.tm_mday,
        MONTHS.get(tm.tm_mon as usize).unwrap_or(&"???"),
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        off.abs() / 60,
        off.abs() % 60
    )
}

/// Lines queued or being written.
static PENDING: AtomicUsize = AtomicUsize::new(0);
static FULL: Mutex<LogEvery> = Mutex::new(LogEvery::new(Duration::from_secs(10)));

type Line = (Arc<LogFile>, String);

/// The writer thread's queue, started with the first line.
fn queue() -> &'static SyncSender<Line> {
    static QUEUE_TX: OnceLock<SyncSender<Line>> = OnceLock::new();
    QUEUE_TX.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        let started = std::thread::Builder::new().name("sluice-access-log".into()).spawn(move || write_lines(rx));
        if let Err(e) = started {
            tracing::error!("cannot start the access log writer: {e}");
        }
        tx
    })
}

fn enqueue(file: Arc<LogFile>, line: String) {
    offer(queue(), (file, line));
}

/// Queues `line` without waiting; false when it was dropped (counted, and reported at most
/// every 10 s).
fn offer(queue: &SyncSender<Line>, line: Line) -> bool {
    PENDING.fetch_add(1, Ordering::SeqCst);
    let Err(e) = queue.try_send(line) else { return true };
    PENDING.fetch_sub(1, Ordering::SeqCst);
    let why = match e {
        TrySendError::Full(_) => "the queue is full (the disk is too slow)",
        TrySendError::Disconnected(_) => "the writer is gone",
    };
    if let Some(dropped) = lock(&FULL).hit() {
        tracing::warn!(dropped, "access log lines dropped: {why}");
    }
    false
}

/// The writer thread: writes each line to its file; a failing file is reported at most once a
/// minute (nginx-rtmp's pace).
fn write_lines(rx: Receiver<Line>) {
    let mut failing = LogEvery::new(Duration::from_secs(60));
    for (file, line) in rx {
        if let Err(e) = file.write(line.as_bytes()) {
            if let Some(failed) = failing.hit() {
                tracing::error!(file = %file.path.display(), failed, "cannot write the access log: {e}");
            }
        }
        PENDING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits (up to `limit`) until every queued line is written.
pub fn flush(limit: Duration) {
    let deadline = Instant::now() + limit;
    while PENDING.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Makes the process's exit wait for queued lines: the sessions that end at shutdown are
/// logged too.
pub(super) fn flush_at_exit() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        extern "C" fn at_exit() {
            flush(EXIT_FLUSH);
        }
        // SAFETY: registering a plain function with no arguments; it only sleeps and reads
        // an atomic.
        unsafe { libc::atexit(at_exit) };
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(text: &str) -> LogFormat {
        let conf = format!("rtmp {{ log_format f '{text}'; access_log /dev/null f; server {{ }} }}");
        let config = Config::parse(&conf, "t").unwrap();
        config.servers[0].log.access[0].format.clone()
    }

    fn session(connect: &ConnectMeta) -> Session<'_> {
        Session {
            id: 7,
            addr: "10.0.0.1".parse().unwrap(),
            app: "live",
            name: "cam",
            args: "token=s3cret&x=1",
            connect,
            played: false,
            published: true,
            bytes_in: 1234,
            bytes_out: 56,
            duration: Duration::from_secs(3725),
        }
    }

    #[test]
    fn combined_is_nginx_rtmps_line() {
        let connect = ConnectMeta { flashver: "FMLE/3.0".into(), pageurl: "http://p".into(), ..Default::default() };
        let line = render(&format(crate::config::COMBINED), &session(&connect), "06/Dec/2026:16:00:45 +0000");
        assert_eq!(
            line,
            "10.0.0.1 [06/Dec/2026:16:00:45 +0000] PUBLISH \"live\" \"cam\" \"token=***&x=1\" - 1234 56 \"http://p\" \"FMLE/3.0\" (1h 2m 5s)"
        );
    }

    /// Client text cannot break a line (or the format) and secrets never show.
    #[test]
    fn client_text_is_escaped_and_args_redacted() {
        let connect = ConnectMeta {
            flashver: "evil\n10.0.0.9 fake".into(),
            tcurl: "rtmp://h/live?token=abc&x=1".into(),
            ..Default::default()
        };
        let mut s = session(&connect);
        s.args = "key=abc\npass=1";
        s.played = true;
        let line = render(&format("$flashver|$args|$command|$session_time|$connection|$tcurl"), &s, "");
        assert_eq!(line, "evil\\n10.0.0.9 fake|key=***|PLAY+PUBLISH|3725|7|rtmp://h/live?token=***&x=1");
    }

    /// A full queue drops the line at once instead of waiting for the writer.
    #[test]
    fn a_full_queue_drops_lines_without_waiting() {
        let (tx, _rx) = sync_channel(1);
        let file =
            Arc::new(LogFile { path: "/dev/null".into(), file: Mutex::new(std::fs::File::open("/dev/null").unwrap()) });
        assert!(offer(&tx, (file.clone(), "one\n".into())));
        assert!(!offer(&tx, (file, "two\n".into())), "dropped: the writer has not taken the first");
        PENDING.fetch_sub(1, Ordering::SeqCst); // the first, which no writer will take
    }

    #[test]
    fn readable_time_leaves_out_leading_zero_units() {
        assert_eq!(readable(0), "0s");
        assert_eq!(readable(61), "1m 1s");
        assert_eq!(readable(3600), "1h 0m 0s");
        assert_eq!(readable(90_061), "1d 1h 1m 1s");
    }

    #[test]
    fn time_local_has_nginx_shape() {
        let t = time_local(SystemTime::UNIX_EPOCH + Duration::from_secs(1_765_000_000));
        let (date, zone) = t.split_once(' ').unwrap();
        assert_eq!(date.len(), "06/Dec/2026:16:00:45".len(), "{t}");
        assert!(zone.len() == 5 && (zone.starts_with('+') || zone.starts_with('-')), "{t}");
    }
}

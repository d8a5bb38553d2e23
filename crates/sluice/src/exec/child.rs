//! Running one program: spawning it (stdio, redirects, death signal), reading its stderr
//! into the log, and for managed children the start–kill–respawn loop.
//!
//! Rules (documented in README's exec section):
//! - stdin and stdout are `/dev/null`, stderr a pipe read line by line into sluice's log,
//!   prefixed with the directive and stream, at most [`LOG_LINES_PER_SEC`] lines a second per
//!   child (then one `... suppressed N lines` line); redirects apply after that, in order.
//! - Each child leads its own process group; killing it signals the group, so what a
//!   `sh -c` script started goes too.
//! - A managed child gets `PR_SET_PDEATHSIG(SIGKILL)`: it dies with sluice, even when sluice
//!   is killed with SIGKILL. (Linux sends it when the spawning *thread* ends: children are
//!   spawned from runtime worker threads, which live as long as sluice.) It is also killed
//!   when dropped (`kill_on_drop`), so a runtime that shuts down leaves none behind.
//! - Stopping a managed child: `exec_kill_signal` to its group, then SIGKILL after
//!   [`KILL_GRACE`] if it is still there.
//! - A managed child that dies is started again after `respawn_timeout`; each further death
//!   within [`STABLE_RUN`] of its start doubles the wait (from at least [`MIN_BACKOFF`]), up
//!   to [`MAX_BACKOFF`] (or `respawn_timeout` when larger).

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio_util::sync::CancellationToken;

use super::command::{Resolved, Target};
use super::limits::Limits;
use crate::untrusted;

/// How long a managed child has to exit after `exec_kill_signal` before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// A child that ran this long before dying starts the backoff over.
pub const STABLE_RUN: Duration = Duration::from_secs(10);
/// The smallest wait once the backoff doubles (so `respawn_timeout 0` cannot spin).
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between respawns (unless `respawn_timeout` is longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// stderr lines logged per second per child.
pub const LOG_LINES_PER_SEC: u32 = 20;
/// Longest stderr line logged, in bytes (the rest of the line is dropped).
pub const MAX_LINE: usize = 1024;

/// Who a child is, for logs and limits.
#[derive(Debug, Clone)]
pub struct Label {
    /// `exec_push (FILE:LINE)`.
    pub origin: String,
    /// The directive as written.
    pub directive: String,
    /// The application, when the line belongs to one (not `exec_static`).
    pub app: Option<String>,
    /// The stream, when a stream triggered it.
    pub stream: Option<String>,
}

impl Label {
    /// `exec_push app=live stream=cam`: what starts each of its log lines.
    pub fn prefix(&self) -> String {
        let mut out = self.directive.clone();
        if let Some(app) = &self.app {
            out.push_str(&format!(" app={app}"));
        }
        if let Some(stream) = &self.stream {
            out.push_str(&format!(" stream={}", untrusted::for_log(stream)));
        }
        out
    }
}

/// Why a program did not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The program is not there (or not executable).
    #[error("cannot run \"{program}\": {why}")]
    Program { program: String, why: String },
    /// A redirect's file could not be opened.
    #[error("cannot open \"{path}\" for a redirect: {error}")]
    Redirect { path: String, error: io::Error },
    /// Anything else (fork failed, ...).
    #[error("cannot start \"{program}\": {error}")]
    Other { program: String, error: io::Error },
}

/// Most fds [`Pipes`] may give a child.
pub const MAX_PIPES: usize = 16;

/// Fds that sluice gives a managed child at each start, for a child sluice feeds and reads
/// itself (the transcode module: its stdin and one pipe per rendition).
pub trait Pipes: Send + Sync {
    /// Called before each start: the child's ends, as (fd number in the child, fd), at most
    /// [`MAX_PIPES`]. The parent's ends are the implementor's; they see EOF or EPIPE when the
    /// child is gone.
    fn open(&self) -> io::Result<Vec<(i32, OwnedFd)>>;
}

/// No extra fds: what exec's lines get.
struct NoPipes;

impl Pipes for NoPipes {
    fn open(&self) -> io::Result<Vec<(i32, OwnedFd)>> {
        Ok(Vec::new())
    }
}

/// Starts `cmd`. `managed`: dies with sluice and when dropped.
pub fn spawn(cmd: &Resolved, managed: bool) -> Result<Child, SpawnError> {
    spawn_with(cmd, managed, Vec::new())
}

/// [`spawn`], with `fds` put in place in the child (fd number, fd) before the redirects; the
/// parent's copies are closed once the child runs.
pub fn spawn_with(cmd: &Resolved, managed: bool, fds: Vec<(i32, OwnedFd)>) -> Result<Child, SpawnError> {
    if fds.len() > MAX_PIPES {
        let error = io::Error::new(io::ErrorKind::InvalidInput, "too many fds for a child");
        return Err(SpawnError::Other { program: cmd.program.clone(), error });
    }
    let mut given = [(-1, -1); MAX_PIPES];
    for (slot, (dst, fd)) in given.iter_mut().zip(&fds) {
        *slot = (*dst, fd.as_raw_fd());
    }
    // Sources are first copied above every target, so that placing one never overwrites
    // another's source.
    let floor = fds.iter().map(|(dst, _)| *dst).max().unwrap_or(0) + 1;
    let mut c = Command::new(&cmd.program);
    c.args(&cmd.args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    c.process_group(0).kill_on_drop(managed);
    // Files are opened here (close-on-exec) and put in place in the child, in order.
    let mut files: Vec<OwnedFd> = Vec::new();
    let mut plan: Vec<(i32, i32)> = Vec::new();
    for (fd, target) in &cmd.redirects {
        let src = match target {
            Target::Dup(m) => *m,
            Target::Write(p) | Target::Append(p) | Target::Read(p) => {
                let mut o = std::fs::OpenOptions::new();
                match target {
                    Target::Write(_) => o.write(true).create(true).truncate(true),
                    Target::Append(_) => o.append(true).create(true),
                    _ => o.read(true),
                };
                let file = o
                    .mode(0o644)
                    .open(p)
                    .map_err(|error| SpawnError::Redirect { path: p.display().to_string(), error })?;
                let raw = file.as_raw_fd();
                files.push(file.into());
                raw
            }
        };
        plan.push((*fd, src));
    }
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-
    // safe functions (prctl, getppid, _exit, dup2, fcntl) on plans allocated before the fork.
    unsafe {
        c.pre_exec(move || {
            if managed {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(io::Error::last_os_error());
                }
                // sluice died between fork and prctl: the signal will never come.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
            }
            let mut moved = given;
            for (_, src) in moved.iter_mut().filter(|(d, _)| *d >= 0) {
                *src = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, floor);
                if *src == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            for &(dst, src) in moved.iter().filter(|(d, _)| *d >= 0) {
                if libc::dup2(src, dst) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            for &(dst, src) in &plan {
                let done = if src == dst { libc::fcntl(dst, libc::F_SETFD, 0) } else { libc::dup2(src, dst) };
                if done == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = c.spawn().map_err(|error| program_error(&cmd.program, error))?;
    drop(files);
    drop(fds);
    Ok(child)
}

fn program_error(program: &str, error: io::Error) -> SpawnError {
    let why = match error.kind() {
        io::ErrorKind::NotFound if program.contains('/') => "no such file".to_string(),
        io::ErrorKind::NotFound => {
            format!("not found on PATH ({})", std::env::var("PATH").unwrap_or_default())
        }
        io::ErrorKind::PermissionDenied => "not executable (permission denied)".to_string(),
        _ => return SpawnError::Other { program: program.to_owned(), error },
    };
    SpawnError::Program { program: program.to_owned(), why }
}

/// Runs `cmd` once and leaves it alone (exec_publish, exec_record_done, ...): its stderr is
/// logged, it is reaped when it exits; the permit is held until then.
pub fn run_unmanaged(label: &Label, cmd: &Resolved, limits: &Arc<Limits>) {
    let Some(permit) = limits.acquire(label.app.as_deref(), &label.origin) else { return };
    let prefix = label.prefix();
    match spawn(cmd, false) {
        Err(e) => tracing::error!("{prefix}: {}: {e}", label.origin),
        Ok(mut child) => {
            tracing::info!(pid = child.id(), "{prefix}: started {}", label.origin);
            let running = crate::metrics::child_started(&label.directive);
            let stderr = child.stderr.take();
            tokio::spawn(async move {
                let pump = pump_stderr(stderr, prefix.clone());
                let (status, ()) = tokio::join!(child.wait(), pump);
                log_exit(&prefix, status);
                drop((permit, running));
            });
        }
    }
}

/// A managed child: started now, restarted when it dies (if `respawn` is set), stopped when
/// `stop` is cancelled.
pub struct Managed {
    /// Who it is.
    pub label: Label,
    /// What to run.
    pub cmd: Resolved,
    /// `respawn_timeout`, or `None` with `respawn off`.
    pub respawn: Option<Duration>,
    /// `exec_kill_signal`.
    pub kill_signal: i32,
    /// The bound on children.
    pub limits: Arc<Limits>,
}

enum Outcome {
    Stopped,
    Exited,
    NotStarted,
}

impl Managed {
    /// Runs until `stop` is cancelled (and the child is gone) or it dies without respawn.
    pub async fn run(self, stop: CancellationToken) {
        self.run_with(stop, &NoPipes).await;
    }

    /// [`Managed::run`], giving the child `pipes`' fds at each start.
    pub async fn run_with(self, stop: CancellationToken, pipes: &dyn Pipes) {
        let mut quick_deaths = 0;
        loop {
            let started = Instant::now();
            if let Outcome::Stopped = self.once(&stop, pipes).await {
                return;
            }
            let Some(base) = self.respawn else {
                tracing::info!("{}: not respawned (respawn off)", self.label.prefix());
                return;
            };
            quick_deaths = if started.elapsed() >= STABLE_RUN { 1 } else { quick_deaths + 1 };
            let wait = backoff(base, quick_deaths);
            tracing::info!("{}: respawning in {wait:?}", self.label.prefix());
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    async fn once(&self, stop: &CancellationToken, pipes: &dyn Pipes) -> Outcome {
        if stop.is_cancelled() {
            return Outcome::Stopped;
        }
        let prefix = self.label.prefix();
        let Some(permit) = self.limits.acquire(self.label.app.as_deref(), &self.label.origin) else {
            return Outcome::NotStarted;
        };
        let fds = match pipes.open() {
            Ok(fds) => fds,
            Err(e) => {
                tracing::error!("{prefix}: {}: cannot make its pipes: {e}", self.label.origin);
                return Outcome::NotStarted;
            }
        };
        let mut child = match spawn_with(&self.cmd, true, fds) {
            Ok(child) => child,
            Err(e) => {
                tracing::error!("{prefix}: {}: {e}", self.label.origin);
                return Outcome::NotStarted;
            }
        };
        tracing::info!(pid = child.id(), "{prefix}: started {}", self.label.origin);
        let _running = crate::metrics::child_started(&self.label.directive);
        let pump = tokio::spawn(pump_stderr(child.stderr.take(), prefix.clone()));
        let outcome = tokio::select! {
            status = child.wait() => {
                log_exit(&prefix, status);
                Outcome::Exited
            }
            () = stop.cancelled() => {
                terminate(&mut child, self.kill_signal).await;
                tracing::info!("{prefix}: stopped");
                Outcome::Stopped
            }
        };
        // The last lines it wrote, unless a grandchild keeps the pipe open.
        let _ = tokio::time::timeout(Duration::from_millis(200), pump).await;
        drop(permit);
        outcome
    }
}

/// The wait before respawn number `quick_deaths` (1 = the first after a stable run).
pub fn backoff(base: Duration, quick_deaths: u32) -> Duration {
    if quick_deaths <= 1 {
        return base;
    }
    let doubled = base.max(MIN_BACKOFF).saturating_mul(1 << (quick_deaths - 1).min(16));
    doubled.min(MAX_BACKOFF.max(base))
}

/// `signal` to the child's process group, SIGKILL after [`KILL_GRACE`], and reaped.
async fn terminate(child: &mut Child, signal: i32) {
    let Some(pid) = child.id() else { return };
    let group = -(pid as libc::pid_t);
    // SAFETY: kill(2) on the group this child leads; it is not reaped yet, so the id is ours.
    unsafe { libc::kill(group, signal) };
    if signal != libc::SIGKILL && tokio::time::timeout(KILL_GRACE, child.wait()).await.is_ok() {
        // What it started and left behind goes too.
        unsafe { libc::kill(group, libc::SIGKILL) };
        return;
    }
    unsafe { libc::kill(group, libc::SIGKILL) };
    let _ = child.wait().await;
}

fn log_exit(prefix: &str, status: io::Result<ExitStatus>) {
    match status {
        Ok(s) => tracing::info!("{prefix}: exited ({s})"),
        Err(e) => tracing::warn!("{prefix}: cannot wait for the child: {e}"),
    }
}

/// Logs a child's stderr until it closes.
async fn pump_stderr(stderr: Option<ChildStderr>, prefix: String) {
    let Some(stderr) = stderr else { return };
    let mut reader = BufReader::new(stderr);
    let mut limit = RateLimit::new(LOG_LINES_PER_SEC);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line(&mut reader, &mut line).await {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Some(suppressed) = limit.admit(Instant::now()) {
            if suppressed > 0 {
                tracing::info!("{prefix}: ... suppressed {suppressed} lines");
            }
            let text = String::from_utf8_lossy(&line);
            tracing::info!("{prefix}: {}", untrusted::for_log(text.trim_end()));
        }
    }
    let suppressed = limit.take_suppressed();
    if suppressed > 0 {
        tracing::info!("{prefix}: ... suppressed {suppressed} lines");
    }
}

/// One line (ended by `\n` or `\r`, as ffmpeg's progress lines are) into `out`, at most
/// [`MAX_LINE`] bytes of it; `false` at the end of the stream.
async fn read_line(r: &mut BufReader<ChildStderr>, out: &mut Vec<u8>) -> io::Result<bool> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(!out.is_empty());
        }
        let end = buf.iter().position(|&b| b == b'\n' || b == b'\r');
        let chunk = &buf[..end.unwrap_or(buf.len())];
        let room = MAX_LINE.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = end.map_or(buf.len(), |i| i + 1);
        r.consume(used);
        if end.is_some() {
            return Ok(true);
        }
    }
}

/// At most `per_sec` lines in each one-second window; counts the rest (sans-IO: time is
/// passed in).
#[derive(Debug)]
pub struct RateLimit {
    per_sec: u32,
    window: Option<Instant>,
    count: u32,
    suppressed: u64,
}

impl RateLimit {
    /// A limiter of `per_sec` lines a second.
    pub fn new(per_sec: u32) -> Self {
        RateLimit { per_sec, window: None, count: 0, suppressed: 0 }
    }

    /// Whether a line seen at `now` is logged: `Some(n)` with the number of lines suppressed
    /// since the last logged one (to report first), `None` to drop it.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.window.is_none_or(|w| now.saturating_duration_since(w) >= Duration::from_secs(1)) {
            self.window = Some(now);
            self.count = 0;
        }
        if self.count >= self.per_sec {
            self.suppressed += 1;
            return None;
        }
        self.count += 1;
        Some(std::mem::take(&mut self.suppressed))
    }

    /// Lines suppressed and not reported yet.
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_counts_what_it_drops() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(3);
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!([r.admit(at(0)), r.admit(at(10)), r.admit(at(20))], [Some(0); 3]);
        assert_eq!(r.admit(at(30)), None);
        assert_eq!(r.admit(at(999)), None);
        assert_eq!(r.admit(at(1000)), Some(2), "a new window reports what the last one dropped");
        assert_eq!(r.admit(at(1001)), Some(0));
        r.admit(at(1002));
        assert_eq!(r.admit(at(1003)), None);
        assert_eq!(r.take_suppressed(), 1);
        assert_eq!(r.take_suppressed(), 0);
    }

    #[test]
    fn backoff_doubles_from_the_timeout_and_is_capped() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(5), 1), s(5));
        assert_eq!(backoff(s(5), 2), s(10));
        assert_eq!(backoff(s(5), 3), s(20));
        assert_eq!(backoff(s(5), 10), MAX_BACKOFF);
        assert_eq!(backoff(Duration::ZERO, 1), Duration::ZERO, "respawn_timeout 0: at once, the first time");
        assert_eq!(backoff(Duration::ZERO, 2), s(2), "then no faster than the minimum backoff");
        assert_eq!(backoff(s(300), 5), s(300), "a timeout above the cap is kept");
        assert_eq!(backoff(s(1), 100), MAX_BACKOFF);
    }

    fn resolved(program: &str) -> Resolved {
        Resolved { program: program.into(), args: vec![], redirects: vec![] }
    }

    #[tokio::test]
    async fn a_program_that_cannot_run_says_why() {
        let e = spawn(&resolved("no-such-program-sluice"), true).unwrap_err().to_string();
        assert!(e.starts_with("cannot run \"no-such-program-sluice\": not found on PATH ("), "{e}");
        let e = spawn(&resolved("/no/such/program"), true).unwrap_err().to_string();
        assert_eq!(e, "cannot run \"/no/such/program\": no such file");
        let plain = std::env::temp_dir().join(format!("sluice-exec-plain-{}", std::process::id()));
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        let e = spawn(&resolved(&plain.display().to_string()), false).unwrap_err().to_string();
        let _ = std::fs::remove_file(&plain);
        assert_eq!(e, format!("cannot run \"{}\": not executable (permission denied)", plain.display()));
        let mut cmd = resolved("true");
        cmd.redirects.push((1, Target::Write("/no/such/dir/out".into())));
        let e = spawn(&cmd, false).unwrap_err().to_string();
        assert!(e.starts_with("cannot open \"/no/such/dir/out\" for a redirect"), "{e}");
    }

    /// A pipe: (read end, write end).
    fn pipe_pair() -> (OwnedFd, OwnedFd) {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills both on success; each is owned once, here.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    #[tokio::test]
    async fn given_fds_replace_stdin_and_add_outputs() {
        use std::io::{Read, Write};
        let (in_r, in_w) = pipe_pair();
        let (out3_r, out3_w) = pipe_pair();
        let (out4_r, out4_w) = pipe_pair();
        let cmd = Resolved {
            program: "sh".into(),
            args: vec!["-c".into(), "read x; echo \"$x three\" >&3; echo \"$x four\" >&4".into()],
            redirects: Vec::new(),
        };
        let fds = vec![(0, in_r), (3, out3_w), (4, out4_w)];
        let mut child = spawn_with(&cmd, true, fds).unwrap();
        std::fs::File::from(in_w).write_all(b"hi\n").unwrap();
        assert!(child.wait().await.unwrap().success());
        let read = |fd: OwnedFd| {
            let mut s = String::new();
            std::fs::File::from(fd).read_to_string(&mut s).unwrap();
            s
        };
        // EOF comes: the parent kept no copy of the child's ends.
        assert_eq!((read(out3_r), read(out4_r)), ("hi three\n".to_owned(), "hi four\n".to_owned()));
    }

    #[tokio::test]
    async fn redirects_are_applied_in_order() {
        let dir = std::env::temp_dir().join(format!("sluice-exec-redirect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (out, input) = (dir.join("out"), dir.join("in"));
        std::fs::write(&input, "from stdin\n").unwrap();
        let cmd = Resolved {
            program: "sh".into(),
            args: vec!["-c".into(), "cat; echo to stderr >&2".into()],
            redirects: vec![(0, Target::Read(input)), (1, Target::Write(out.clone())), (2, Target::Dup(1))],
        };
        let status = spawn(&cmd, true).unwrap().wait().await.unwrap();
        assert!(status.success());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "from stdin\nto stderr\n");
        let append = Resolved { redirects: vec![(1, Target::Append(out.clone()))], ..resolved("echo") };
        spawn(&append, false).unwrap().wait().await.unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "from stdin\nto stderr\n\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn labels_prefix_log_lines() {
        let l = Label {
            origin: "exec_push (a.conf:3)".into(),
            directive: "exec_push".into(),
            app: Some("live".into()),
            stream: Some("x\ny".into()),
        };
        assert_eq!(l.prefix(), "exec_push app=live stream=x\\ny");
        let s =
            Label { origin: "exec_static (a.conf:1)".into(), directive: "exec_static".into(), app: None, stream: None };
        assert_eq!(s.prefix(), "exec_static");
    }
}

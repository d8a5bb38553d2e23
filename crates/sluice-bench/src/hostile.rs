//! `sluice-bench hostile`: starts the sluice binary on free loopback ports with HLS, recording
//! and the built-in HTTP server on, keeps one legitimate publisher and player streaming, and
//! meanwhile attacks it the ways issue #9 lists: AMF reference and array bombs before `connect`,
//! stream names that are paths, frozen and jumping timestamps, thousands of `play`s on one
//! connection, the control API, slowloris, path traversal, garbage, truncated handshakes and
//! signals. Each defect class has a named check; the run fails when any check fails.
//!
//! Everything is bounded: counts and bytes come from [`Scale`], every wait has a deadline, only
//! 127.0.0.1 is used, and a watchdog kills the server if its memory passes [`HARD_RSS_CAP_KIB`]
//! (an unfixed server would otherwise take the machine with it). Escapes are made to land
//! inside the run's own temporary directory (`ROOT`; the server's directories are `ROOT/srv/...`),
//! so `../../x` shows up as `ROOT/x.m3u8` and is found without touching anything else; only the
//! empty name in the `hls_nested` application would write to `/`, so that one sends no media
//! and is judged by its refusal alone.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amf0::Value;
use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use rand::RngCore;
use rtmp::chunk::encode_message;
use rtmp::handshake::{ClientHandshake, HandshakeStatus};
use rtmp::{ClientEvent, MediaKind, Role};
use sluice::client::RtmpClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::players::{self, PublishStats, Target};
use crate::source::{Source, SyntheticSource};

/// The watchdog kills the server above this resident size: the check has failed long before,
/// and a defect must not take the shared machine down with it.
pub const HARD_RSS_CAP_KIB: u64 = 2 << 20;
/// Address space the server may reserve (`RLIMIT_AS`), a second guard behind the watchdog.
const SERVER_ADDRESS_SPACE: u64 = 8 << 30;
/// The server's open-files limit (soft and hard), as in the report behind issue #9: 2100
/// slowloris connections at this limit blocked every new RTMP player and `/healthz`.
pub const SERVER_NOFILE: u64 = 2048;
/// The legitimate player may go this long without a video frame.
const MAX_PLAYER_GAP: Duration = Duration::from_secs(3);
/// Longest log line accepted: client text is escaped and cut (`untrusted::for_log`).
const MAX_LOG_LINE: usize = 8 * 1024;
/// How long a refused publisher may take to hear `BadName` (or be disconnected).
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// How hard each form attacks.
#[derive(Debug, Clone)]
pub struct Scale {
    /// AMF3 values per reference-bomb command (each expands ~6 KB to ~2M decoded values).
    pub amf3_values: usize,
    /// Reference-bomb commands sent (one connection each, one after the other).
    pub amf3_rounds: usize,
    /// Bytes of the AMF0 strict-array command (one null per byte).
    pub strict_array_bytes: usize,
    /// `play` commands on one connection.
    pub play_flood: usize,
    /// Bytes a frozen-timestamp publisher sends; as much again as audio without a keyframe.
    pub frozen_bytes: usize,
    /// Bytes per second each buffer attacker sends at most.
    pub attack_rate: usize,
    /// Slowloris connections held (the server's fd limit is [`SERVER_NOFILE`]).
    pub slowloris: usize,
    /// How long slowloris connections are held before a new player must still get in.
    pub slowloris_hold: Duration,
    /// Slowloris connections must all have been closed by the server within this (long form
    /// only: a header timeout is normally tens of seconds).
    pub slowloris_closed_within: Option<Duration>,
    /// Bound on the server's peak resident size (VmHWM), KiB.
    pub rss_bound_kib: u64,
    /// Times the protocol and media phases are repeated.
    pub rounds: usize,
}

impl Scale {
    /// The ~25 s form `cargo test` runs.
    pub fn short() -> Self {
        Scale {
            amf3_values: 6,
            amf3_rounds: 3,
            strict_array_bytes: 1_000_000,
            play_flood: 3000,
            frozen_bytes: 96 << 20,
            attack_rate: 24 << 20,
            slowloris: 2100,
            slowloris_hold: Duration::from_secs(3),
            slowloris_closed_within: None,
            rss_bound_kib: 300 << 10,
            rounds: 1,
        }
    }

    /// The long form `scripts/hostile` runs against the release build.
    pub fn long(rounds: usize) -> Self {
        Scale {
            amf3_values: 50,
            amf3_rounds: 5,
            strict_array_bytes: 1_040_000,
            play_flood: 20_000,
            frozen_bytes: 400 << 20,
            attack_rate: 64 << 20,
            slowloris: 2100,
            slowloris_hold: Duration::from_secs(15),
            slowloris_closed_within: Some(Duration::from_secs(90)),
            rss_bound_kib: 400 << 10,
            rounds: rounds.max(1),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct HostileOptions {
    /// The sluice binary.
    pub sluice: PathBuf,
    /// Attack sizes.
    pub scale: Scale,
    /// Keep the temporary directory (config, log, outputs) for inspection.
    pub keep: bool,
    /// Phases left out (`protocol`, `media`, `slowloris`, `signals`), to measure one alone.
    pub skip: Vec<String>,
}

impl HostileOptions {
    fn runs(&self, phase: &str) -> bool {
        !self.skip.iter().any(|s| s == phase)
    }
}

/// One named check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    /// Short name, stable across runs.
    pub name: &'static str,
    /// Whether it held.
    pub passed: bool,
    /// What was measured.
    pub detail: String,
}

#[derive(Default)]
struct Checks(Mutex<Vec<Check>>);

impl Checks {
    /// Record a result; a check made again (every round of the long form) keeps its first
    /// failure, or else the latest pass.
    fn add(&self, name: &'static str, passed: bool, detail: impl Into<String>) {
        let detail = detail.into();
        eprintln!("hostile: {name}: {} ({detail})", if passed { "pass" } else { "FAIL" });
        let mut checks = self.0.lock().unwrap();
        match checks.iter_mut().find(|c| c.name == name) {
            Some(old) if old.passed => *old = Check { name, passed, detail },
            Some(_) => {}
            None => checks.push(Check { name, passed, detail }),
        }
    }
}

/// The checks as a table.
pub fn table(checks: &[Check]) -> String {
    let mut out = format!("{:<24} {:<6} detail\n", "check", "result");
    for c in checks {
        out += &format!("{:<24} {:<6} {}\n", c.name, if c.passed { "pass" } else { "FAIL" }, c.detail);
    }
    let failed = checks.iter().filter(|c| !c.passed).count();
    out += &format!("{} checks, {failed} failed\n", checks.len());
    out
}

/// Run every attack and check; returns the checks (the caller prints them and sets the exit code).
pub fn run(o: &HostileOptions) -> anyhow::Result<Vec<Check>> {
    anyhow::ensure!(
        o.sluice.is_file(),
        "no sluice binary at {} (build it: cargo build -p sluice, or pass --sluice PATH)",
        o.sluice.display()
    );
    let sandbox = Sandbox::new(o.keep)?;
    let root_before = top_level_names(Path::new("/"));
    let server = Server::start(&o.sluice, &sandbox)?;
    let watchdog = Watchdog::start(server.pid);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let checks = Checks::default();
    let started = Instant::now();
    let result = rt.block_on(attack(o, &sandbox, &server, &watchdog, &checks));
    watchdog.stop();
    let alive = server.alive();
    if let Err(e) = &result {
        eprintln!("hostile: run stopped early: {e:#}");
    }
    checks.add(
        "server-alive",
        alive && !watchdog.killed(),
        if watchdog.killed() {
            format!("killed by the watchdog at {} MiB resident", HARD_RSS_CAP_KIB >> 10)
        } else if alive {
            "running at the end".to_string()
        } else {
            format!("exited: {}; log tail: {}", server.exit_status(), tail(&server.log_text(), 3))
        },
    );
    let hwm = watchdog.peak_kib().max(read_status_kib(server.pid, "VmHWM:").unwrap_or(0));
    checks.add(
        "rss-bound",
        hwm <= o.scale.rss_bound_kib,
        format!("peak {} MiB (bound {} MiB); {}", hwm >> 10, o.scale.rss_bound_kib >> 10, watchdog.phases()),
    );
    escape_checks(&checks, &sandbox, &root_before);
    log_checks(&checks, &server.log_text(), &sandbox.mark);
    if let Err(e) = &result {
        checks.add("run-completed", false, format!("{e:#}"));
    }
    server.stop();
    rt.shutdown_timeout(Duration::from_secs(1));
    eprintln!(
        "hostile: {:.1} s; CPU: server {:.1} s, this tool {:.1} s",
        started.elapsed().as_secs_f64(),
        watchdog.cpu_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        crate::procstat::cpu_seconds("self").unwrap_or(0.0),
    );
    if o.keep {
        eprintln!("hostile: configuration, server log and outputs kept in {}", sandbox.root.display());
    }
    Ok(checks.0.into_inner().unwrap())
}

// ---------------------------------------------------------------------------------------------
// The sandbox, the server process and its memory
// ---------------------------------------------------------------------------------------------

/// `ROOT` (a fresh temporary directory) with the server's directories under `ROOT/srv`.
struct Sandbox {
    root: PathBuf,
    srv: PathBuf,
    /// Unique text in every name the attacks use, so escaped files can be found anywhere.
    mark: String,
    keep: bool,
}

/// Directories (under `ROOT/srv`) the configuration lets the server write.
const ALLOWED_DIRS: &[&str] = &["hls", "hls-nested", "hls-buf", "rec", "rec-buf"];
/// Files the tool itself puts in `ROOT/srv`.
const OWN_FILES: &[&str] = &["sluice.conf", "sluice.log"];

impl Sandbox {
    fn new(keep: bool) -> anyhow::Result<Self> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        let mark = format!("hx{}n{}", std::process::id(), nanos % 100_000);
        let root = std::env::temp_dir().join(format!("sluice-hostile-{mark}"));
        let srv = root.join("srv");
        std::fs::create_dir_all(&srv).with_context(|| format!("creating {}", srv.display()))?;
        Ok(Sandbox { root, srv, mark, keep })
    }

    fn config(&self, rtmp: u16, http: u16) -> String {
        let srv = self.srv.display();
        format!(
            "# sluice-bench hostile {mark}\n\
             rtmp {{\n\
             \x20   http_listen 127.0.0.1:{http};\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{rtmp};\n\
             \x20       application live {{\n\
             \x20           live on;\n\
             \x20           hls on; hls_path {srv}/hls; hls_fragment 1s; hls_playlist_length 3s; hls_cleanup on;\n\
             \x20           record all; record_path {srv}/rec;\n\
             \x20       }}\n\
             \x20       application nested {{\n\
             \x20           live on;\n\
             \x20           hls on; hls_path {srv}/hls-nested; hls_nested on; hls_fragment 1s; hls_playlist_length 3s; hls_cleanup on;\n\
             \x20       }}\n\
             \x20       application buffers {{\n\
             \x20           live on;\n\
             \x20           hls on; hls_path {srv}/hls-buf; hls_fragment 1s; hls_playlist_length 3s; hls_cleanup on;\n\
             \x20           record_path {srv}/rec-buf;\n\
             \x20           recorder mp4 {{ record all; record_format mp4; }}\n\
             \x20       }}\n\
             \x20   }}\n\
             }}\n",
            mark = self.mark
        )
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The sluice process under attack; killed when dropped.
struct Server {
    child: Mutex<Child>,
    pid: i32,
    rtmp: SocketAddr,
    http: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn start(bin: &Path, sandbox: &Sandbox) -> anyhow::Result<Self> {
        let (rtmp, http) = (free_port()?, free_port()?);
        let conf = sandbox.srv.join("sluice.conf");
        std::fs::File::create(&conf)?.write_all(sandbox.config(rtmp, http).as_bytes())?;
        let log = sandbox.srv.join("sluice.log");
        let mut cmd = Command::new(bin);
        cmd.arg("-c").arg(&conf).env("RUST_LOG", "info").stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(std::fs::File::create(&log)?);
        // SAFETY: only async-signal-safe calls (setrlimit, prctl) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let nofile = libc::rlimit { rlim_cur: SERVER_NOFILE, rlim_max: SERVER_NOFILE };
                let space = libc::rlimit { rlim_cur: SERVER_ADDRESS_SPACE, rlim_max: SERVER_ADDRESS_SPACE };
                libc::setrlimit(libc::RLIMIT_NOFILE, &nofile);
                libc::setrlimit(libc::RLIMIT_AS, &space);
                // The server must not outlive the tool (a killed test run).
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let server = Server {
            pid: child.id() as i32,
            child: Mutex::new(child),
            rtmp: ([127, 0, 0, 1], rtmp).into(),
            http: ([127, 0, 0, 1], http).into(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let up =
                std::net::TcpStream::connect(server.rtmp).is_ok() && std::net::TcpStream::connect(server.http).is_ok();
            if up {
                return Ok(server);
            }
            if !server.alive() || Instant::now() > deadline {
                bail!("sluice did not start listening; log:\n{}", tail(&server.log_text(), 20));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn alive(&self) -> bool {
        matches!(self.child.lock().unwrap().try_wait(), Ok(None))
    }

    fn exit_status(&self) -> String {
        match self.child.lock().unwrap().try_wait() {
            Ok(Some(s)) => s.to_string(),
            _ => "unknown".into(),
        }
    }

    fn signal(&self, sig: libc::c_int) {
        if self.alive() {
            // SAFETY: kill(2) on our own child's pid, which try_wait says is not reaped yet.
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    fn log_text(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// SIGTERM, then SIGKILL if it is still there after 5 s.
    fn stop(&self) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    fn target(&self, app: &str, stream: &str) -> Target {
        Target { addr: self.rtmp, app: app.into(), stream: stream.into() }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A `/proc/PID/status` field in KiB (`VmRSS:`, `VmHWM:`).
fn read_status_kib(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

/// Samples the server's memory every 50 ms, remembers the peak (per phase too) and kills the
/// server above [`HARD_RSS_CAP_KIB`].
struct Watchdog {
    pid: i32,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    killed: Arc<AtomicBool>,
    /// The server's CPU time so far, milliseconds.
    cpu_ms: Arc<AtomicU64>,
    marks: Mutex<Vec<(String, u64)>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Watchdog {
    fn start(pid: i32) -> Self {
        let (stop, peak, killed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::default());
        let (s, p, k): (Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicBool>) =
            (stop.clone(), peak.clone(), Arc::clone(&killed));
        let cpu_ms = Arc::new(AtomicU64::new(0));
        let c = cpu_ms.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Some(rss) = read_status_kib(pid, "VmRSS:") else { break };
                let hwm = read_status_kib(pid, "VmHWM:").unwrap_or(rss);
                p.fetch_max(rss.max(hwm), Ordering::Relaxed);
                if let Some(secs) = crate::procstat::cpu_seconds(&pid.to_string()) {
                    c.store((secs * 1000.0) as u64, Ordering::Relaxed);
                }
                if rss > HARD_RSS_CAP_KIB && !k.swap(true, Ordering::Relaxed) {
                    eprintln!("hostile: server resident {} MiB: killing it", rss >> 10);
                    // SAFETY: kill(2) on the child's pid while /proc still shows it running.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Watchdog { pid, stop, peak, killed, cpu_ms, marks: Mutex::default(), thread: Mutex::new(Some(thread)) }
    }

    fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed).max(read_status_kib(self.pid, "VmHWM:").unwrap_or(0))
    }

    fn killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    /// Note the peak so far at the end of a phase, for the report.
    fn mark(&self, phase: &str) {
        let peak = self.peak_kib();
        eprintln!("hostile: after {phase}: peak {} MiB", peak >> 10);
        self.marks.lock().unwrap().push((phase.to_string(), peak));
    }

    fn phases(&self) -> String {
        let marks = self.marks.lock().unwrap();
        let parts: Vec<String> = marks.iter().map(|(p, k)| format!("{p} {}", k >> 10)).collect();
        format!("peak MiB after: {}", parts.join(", "))
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run: legitimate clients throughout, attacks in phases
// ---------------------------------------------------------------------------------------------

/// What the legitimate player saw.
#[derive(Default)]
struct PlayerLog {
    frames: u64,
    last: Option<Instant>,
    max_gap: Duration,
    error: Option<String>,
}

async fn attack(
    o: &HostileOptions,
    sandbox: &Sandbox,
    server: &Server,
    watchdog: &Watchdog,
    checks: &Checks,
) -> anyhow::Result<()> {
    let mark = sandbox.mark.as_str();
    let stop = Arc::new(AtomicBool::new(false));
    let pub_stats = Arc::new(PublishStats::default());
    let source = Box::new(SyntheticSource::new(300_000, 25, 25));
    tokio::spawn(players::publisher(server.target("live", "legit"), source, pub_stats.clone(), stop.clone(), false));
    wait_for(Duration::from_secs(10), || pub_stats.live.load(Ordering::Relaxed))
        .await
        .with_context(|| format!("the legitimate publisher did not start: {:?}", pub_stats.error.lock().unwrap()))?;
    let player = Arc::new(Mutex::new(PlayerLog::default()));
    tokio::spawn(legit_player(server.target("live", "legit"), player.clone(), stop.clone()));
    wait_for(Duration::from_secs(10), || player.lock().unwrap().frames > 0)
        .await
        .with_context(|| format!("the legitimate player got no frames: {:?}", player.lock().unwrap().error))?;
    let baseline_streams = healthz_streams(server.http).await.unwrap_or(0);
    watchdog.mark("start");

    for round in 0..o.scale.rounds {
        if o.runs("protocol") {
            protocol_phase(o, server, watchdog, mark, checks).await;
            watchdog.mark("protocol");
        }
        if o.runs("media") {
            media_phase(o, sandbox, server, checks, round).await;
            watchdog.mark("media");
        }
    }
    if o.runs("slowloris") {
        slowloris_phase(o, server, checks).await;
        watchdog.mark("slowloris");
    }
    if o.runs("signals") {
        signal_phase(server, checks).await;
    }

    // The end: the server still serves, and the legitimate pair is still going.
    let health = http_get(server.http, "/healthz", Duration::from_secs(5)).await;
    let ok = matches!(&health, Ok(r) if r.status == 200 && r.body.starts_with(b"ok"));
    checks.add(
        "healthz",
        ok,
        match &health {
            Ok(r) => format!("{} {:?}", r.status, String::from_utf8_lossy(&r.body[..r.body.len().min(40)])),
            Err(e) => format!("{e:#}"),
        },
    );
    let mut streams = healthz_streams(server.http).await;
    // An HLS stream whose publisher left is kept for `hls_playlist_length` (3 s here), waiting
    // for the publisher to come back.
    let deadline = Instant::now() + Duration::from_secs(8);
    while streams.is_some_and(|n| n > baseline_streams) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        streams = healthz_streams(server.http).await;
    }
    checks.add(
        "streams-released",
        streams.is_some_and(|n| n <= baseline_streams),
        format!("{streams:?} streams at the end, {baseline_streams} before the attacks"),
    );
    {
        let p = player.lock().unwrap();
        let since_last = p.last.map_or(Duration::MAX, |t| t.elapsed());
        let gap = p.max_gap.max(since_last);
        checks.add(
            "player-frames",
            p.error.is_none() && gap <= MAX_PLAYER_GAP,
            format!(
                "{} video frames, longest gap {:.1} s (bound {} s){}",
                p.frames,
                gap.as_secs_f64().min(9999.0),
                MAX_PLAYER_GAP.as_secs(),
                p.error.as_ref().map(|e| format!("; {e}")).unwrap_or_default()
            ),
        );
    }
    let err = pub_stats.error.lock().unwrap().clone();
    checks.add(
        "publisher-connected",
        pub_stats.live.load(Ordering::Relaxed) && err.is_none(),
        format!(
            "{} frames sent{}",
            pub_stats.frames.load(Ordering::Relaxed),
            err.map(|e| format!("; {e}")).unwrap_or_default()
        ),
    );
    stop.store(true, Ordering::Relaxed);
    Ok(())
}

async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            bail!("not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn legit_player(target: Target, log: Arc<Mutex<PlayerLog>>, stop: Arc<AtomicBool>) {
    let result = async {
        let mut c = RtmpClient::connect(target.addr, &target.app, Role::Play(target.stream.clone())).await?;
        while !stop.load(Ordering::Relaxed) {
            let ev = match tokio::time::timeout(Duration::from_millis(250), c.next_event()).await {
                Ok(ev) => ev?,
                Err(_) => continue,
            };
            if let ClientEvent::Media { kind: MediaKind::Video, .. } = ev {
                let now = Instant::now();
                let mut p = log.lock().unwrap();
                if let Some(last) = p.last {
                    p.max_gap = p.max_gap.max(now - last);
                }
                p.last = Some(now);
                p.frames += 1;
            }
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        log.lock().unwrap().error = Some(format!("{e:#}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 1: protocol attacks (AMF bombs, names, long fields, garbage, HTTP)
// ---------------------------------------------------------------------------------------------

async fn protocol_phase(o: &HostileOptions, server: &Server, watchdog: &Watchdog, mark: &str, checks: &Checks) {
    let addr = server.rtmp;
    let amf = async {
        // One bomb at a time, and none after the bound is passed: the check has failed already.
        for _ in 0..o.scale.amf3_rounds {
            if watchdog.peak_kib() > o.scale.rss_bound_kib || !server.alive() {
                break;
            }
            let _ = send_before_connect(addr, &amf3_reference_bomb(o.scale.amf3_values)).await;
        }
        for body in [strict_array_bomb(o.scale.strict_array_bytes), strict_array_huge_count()] {
            if watchdog.peak_kib() > o.scale.rss_bound_kib || !server.alive() {
                break;
            }
            let _ = send_before_connect(addr, &body).await;
        }
    };
    let names = bad_names(server, mark);
    let long_fields = async {
        for _ in 0..2 {
            let _ = long_flash_ver(addr, mark).await;
        }
        let _ = secret_play(addr, mark).await;
    };
    let garbage = garbage(addr);
    let http = http_attacks(server.http, mark);
    let ((), refused, (), (), (cors, traversal)) = tokio::join!(amf, names, long_fields, garbage, http);
    checks.add("names-refused", refused.is_empty(), names_detail(&refused));
    checks.add("control-no-cors", cors.0, cors.1);
    checks.add("http-traversal", traversal.0, traversal.1);
}

fn u29(out: &mut Vec<u8>, n: u32) {
    match n {
        0..=0x7F => out.push(n as u8),
        0x80..=0x3FFF => out.extend([(n >> 7) as u8 | 0x80, n as u8 & 0x7F]),
        0x4000..=0x1F_FFFF => out.extend([(n >> 14) as u8 | 0x80, (n >> 7) as u8 | 0x80, n as u8 & 0x7F]),
        _ => out.extend([(n >> 22) as u8 | 0x80, (n >> 15) as u8 | 0x80, (n >> 8) as u8 | 0x80, n as u8]),
    }
}

/// A command body with `values` AMF3 values (marker 0x11), each a dense array holding one
/// array of 1000 integers and 2000 references to it: ~6 KB that decode to ~2M values.
pub fn amf3_reference_bomb(values: usize) -> Vec<u8> {
    const INNER: u32 = 1000;
    const REFS: u32 = 2000;
    let mut one = vec![amf0::amf3::marker::ARRAY];
    u29(&mut one, ((REFS + 1) << 1) | 1);
    one.push(0x01); // no associative part
    one.push(amf0::amf3::marker::ARRAY);
    u29(&mut one, (INNER << 1) | 1);
    one.push(0x01);
    for _ in 0..INNER {
        one.extend([amf0::amf3::marker::INTEGER, 0]);
    }
    for _ in 0..REFS {
        // Object reference 1: the inner array (the outer one is reference 0).
        one.extend([amf0::amf3::marker::ARRAY, 0x02]);
    }
    let mut body = amf0::encode_all(&[Value::String("connect".into()), Value::Number(1.0)]);
    for _ in 0..values {
        body.push(0x11);
        body.extend_from_slice(&one);
    }
    body
}

/// A command body whose AMF0 strict array holds one null per byte (~50x when decoded).
pub fn strict_array_bomb(bytes: usize) -> Vec<u8> {
    let mut body = amf0::encode_all(&[Value::String("connect".into()), Value::Number(1.0)]);
    let n = bytes.saturating_sub(body.len() + 5);
    body.push(amf0::marker::STRICT_ARRAY);
    body.extend((n as u32).to_be_bytes());
    body.resize(body.len() + n, amf0::marker::NULL);
    body
}

/// A strict array that claims 4 billion elements and has three.
fn strict_array_huge_count() -> Vec<u8> {
    let mut body = amf0::encode_all(&[Value::String("connect".into()), Value::Number(1.0)]);
    body.push(amf0::marker::STRICT_ARRAY);
    body.extend(u32::MAX.to_be_bytes());
    body.extend([amf0::marker::NULL; 3]);
    body
}

/// A raw RTMP connection after a real (simple) handshake.
struct Raw {
    sock: TcpStream,
    chunk_size: u32,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Raw> {
        let mut sock = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await??;
        let mut hs = ClientHandshake::new(false, 0, &mut rand::thread_rng());
        let mut out = Vec::new();
        hs.start(&mut out);
        sock.write_all(&out).await?;
        let mut buf = BytesMut::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            out.clear();
            if hs.feed(&mut buf, &mut out)? == HandshakeStatus::Done {
                sock.write_all(&out).await?;
                return Ok(Raw { sock, chunk_size: 128 });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, sock.read_buf(&mut buf)).await?? == 0 {
                bail!("closed during the handshake");
            }
        }
    }

    async fn set_chunk_size(&mut self, size: u32) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        rtmp::message::set_chunk_size(&mut out, size);
        self.sock.write_all(&out).await?;
        self.chunk_size = size;
        Ok(())
    }

    async fn command_body(&mut self, stream_id: u32, body: &[u8]) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        encode_message(&mut out, self.chunk_size, 3, 0, rtmp::message::type_id::COMMAND_AMF0, stream_id, body);
        self.sock.write_all(&out).await?;
        Ok(())
    }

    /// Read and discard until the server closes (true) or `limit` passes (false).
    async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut scratch = vec![0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.sock.read(&mut scratch)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

/// Handshake, then one command message before `connect`; wait until the server has dealt
/// with it (closed the connection) so bombs do not pile up.
async fn send_before_connect(addr: SocketAddr, body: &[u8]) -> anyhow::Result<()> {
    let mut raw = Raw::connect(addr).await?;
    raw.set_chunk_size(4096).await?;
    raw.command_body(0, body).await?;
    raw.closed_within(Duration::from_secs(15)).await;
    Ok(())
}

/// `connect` with a 1 MB `flashVer` whose first line forges a log line.
async fn long_flash_ver(addr: SocketAddr, mark: &str) -> anyhow::Result<()> {
    let mut raw = Raw::connect(addr).await?;
    raw.set_chunk_size(4096).await?;
    let flash_ver = format!("FMLE/3.0\n{mark}-FORGED flashVer {}", "A".repeat(1_000_000));
    let object = Value::Object(vec![
        ("app".into(), Value::String("live".into())),
        ("flashVer".into(), Value::String(flash_ver)),
        ("tcUrl".into(), Value::String("rtmp://127.0.0.1/live".into())),
    ]);
    let body = amf0::encode_all(&[Value::String("connect".into()), Value::Number(1.0), object]);
    raw.command_body(0, &body).await?;
    raw.closed_within(Duration::from_secs(2)).await;
    Ok(())
}

/// A player whose name carries secrets, which must never reach the log.
async fn secret_play(addr: SocketAddr, mark: &str) -> anyhow::Result<()> {
    let name = format!("{mark}-secret?key={mark}SECRETKEY&token={mark}SECRETTOKEN");
    let mut c = tokio::time::timeout(STATUS_TIMEOUT, RtmpClient::connect(addr, "live", Role::Play(name))).await??;
    let _ = tokio::time::timeout(Duration::from_secs(2), c.next_status()).await;
    Ok(())
}

/// Publishes under names that are paths or carry control characters; returns the names that
/// were accepted (`NetStream.Publish.Start`). Accepted ones publish three seconds of media
/// quickly so that HLS and the recorder write whatever files they would; except the empty name
/// in the nested application, which would write at the filesystem root.
async fn bad_names(server: &Server, mark: &str) -> Vec<String> {
    let abs = std::env::temp_dir().join(format!("sluice-hostile-{mark}")).join("abs").join(format!("{mark}-abs"));
    let cases: Vec<(&str, String, bool)> = vec![
        ("live", format!("../../{mark}-esc"), true),
        ("live", abs.display().to_string(), true),
        ("live", "./legit".into(), true),
        ("live", format!("{mark}\\back"), true),
        ("live", format!("{mark}-nl\n{mark}-FORGED name"), true),
        ("live", format!("{mark}-{}", "n".repeat(300)), true),
        ("nested", "..".into(), true),
        ("nested", String::new(), false),
    ];
    let tasks = cases.into_iter().map(|(app, name, media)| {
        let target = server.target(app, &name);
        async move {
            match publish_status(&target).await {
                Ok((code, mut c)) if code == "NetStream.Publish.Start" => {
                    if media {
                        let _ = send_fast_media(&mut c, 3000).await;
                    }
                    Some(format!("{app}/{name:?}"))
                }
                _ => None,
            }
        }
    });
    futures_join_all(tasks).await.into_iter().flatten().collect()
}

fn names_detail(accepted: &[String]) -> String {
    if accepted.is_empty() {
        "every path-like, empty, over-long and control-character name refused".into()
    } else {
        let shown: Vec<String> = accepted.iter().map(|n| n.chars().take(60).collect()).collect();
        format!("accepted: {}", shown.join(", "))
    }
}

/// Run futures concurrently (a tiny `join_all`, to avoid a dependency).
async fn futures_join_all<F: std::future::Future + Send + 'static>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

/// Connect and publish; the first status (or a connect error) and the client.
async fn publish_status(target: &Target) -> anyhow::Result<(String, RtmpClient)> {
    let mut c = tokio::time::timeout(
        STATUS_TIMEOUT,
        RtmpClient::connect(target.addr, &target.app, Role::Publish(target.stream.clone())),
    )
    .await??;
    let code = tokio::time::timeout(STATUS_TIMEOUT, c.next_status()).await??;
    Ok((code, c))
}

/// Headers, then `media_ms` of a small synthetic stream at five times real time.
async fn send_fast_media(c: &mut RtmpClient, media_ms: u32) -> anyhow::Result<()> {
    let mut src = SyntheticSource::new(200_000, 25, 25);
    for h in src.headers() {
        c.send_media(h.kind, h.timestamp, &h.payload).await?;
    }
    let start = tokio::time::Instant::now();
    loop {
        let f = src.next_frame();
        if f.timestamp > media_ms {
            return Ok(());
        }
        tokio::time::sleep_until(start + Duration::from_millis(u64::from(f.timestamp) / 5)).await;
        c.send_media(f.kind, f.timestamp, &f.payload).await?;
    }
}

/// Random bytes instead of a handshake, truncated handshakes, and garbage after a good one.
async fn garbage(addr: SocketAddr) {
    let mut rng = rand::thread_rng();
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    for len in [1usize, 7, 1536, 3073, 65_536] {
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut b);
        blobs.push(b);
    }
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 700));
    blobs.push(vec![3]);
    blobs.push(c0c1);
    blobs.push(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
    blobs.push([6u8].into_iter().chain(std::iter::repeat_n(1, 1536)).collect());
    let raw = blobs.into_iter().map(|b| async move {
        if let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
            let _ = s.write_all(&b).await;
            let mut scratch = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_millis(500), s.read(&mut scratch)).await;
        }
    });
    let after_handshake = async {
        for _ in 0..5 {
            let mut junk = vec![0u8; 16 * 1024];
            rand::thread_rng().fill_bytes(&mut junk);
            if let Ok(mut r) = Raw::connect(addr).await {
                let _ = r.sock.write_all(&junk).await;
                r.closed_within(Duration::from_millis(500)).await;
            }
        }
    };
    let (_, ()) = tokio::join!(futures_join_all(raw), after_handshake);
}

/// `/control/` without permissive CORS, and traversal that must never reach a file.
async fn http_attacks(http: SocketAddr, mark: &str) -> ((bool, String), (bool, String)) {
    let control = http_get(http, "/control/record/stop?app=live&name=legit", Duration::from_secs(5)).await;
    let cors = match &control {
        Ok(r) => {
            // `*`, or the foreign Origin the request carried echoed back, lets any page read it.
            let allowed = r.header("access-control-allow-origin").map(str::trim).unwrap_or_default();
            let permissive = allowed == "*" || allowed.contains(FOREIGN_ORIGIN);
            let shown =
                if allowed.is_empty() { String::new() } else { format!(", Access-Control-Allow-Origin: {allowed}") };
            (!permissive, format!("GET /control/record/stop from Origin {FOREIGN_ORIGIN} -> {}{shown}", r.status))
        }
        // A closed connection or refusal is not permissive.
        Err(e) => (true, format!("GET /control/record/stop -> {e:#}")),
    };
    let paths = [
        "/hls/../sluice.conf",
        "/hls/%2e%2e/sluice.conf",
        "/hls/..%2fsluice.conf",
        "/hls/%2e%2e%2fsluice.conf",
        "/hls/..%5csluice.conf",
        "/hls/....//sluice.conf",
        "/hls-nested/../../../../../../etc/passwd",
        "/hls/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "//etc/passwd",
        "/hls//etc/passwd",
    ];
    let mut leaked = Vec::new();
    for p in paths {
        if let Ok(r) = http_get(http, p, Duration::from_secs(5)).await {
            let body = String::from_utf8_lossy(&r.body);
            if body.contains(mark) || body.contains("root:x:0:0") {
                leaked.push(format!("{p} -> {}", r.status));
            }
        }
    }
    let traversal = if leaked.is_empty() {
        (true, format!("{} traversal URLs, none served a file outside the locations", paths.len()))
    } else {
        (false, format!("served: {}", leaked.join(", ")))
    };
    (cors, traversal)
}

/// The `Origin` every request of the tool carries: a web page on another site.
const FOREIGN_ORIGIN: &str = "http://evil.example";

/// An HTTP answer.
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v)
        })
    }
}

/// A raw HTTP/1.1 GET (the path is sent exactly as given), at most 1 MiB read.
async fn http_get(addr: SocketAddr, path: &str, limit: Duration) -> anyhow::Result<Reply> {
    tokio::time::timeout(limit, async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {FOREIGN_ORIGIN}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.take(1 << 20).read_to_end(&mut buf).await?;
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").context("no header end")?;
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no status")?;
        Ok(Reply { status, head, body: buf[split + 4..].to_vec() })
    })
    .await
    .with_context(|| format!("GET {path}: no answer within {limit:?}"))?
}

/// The `streams N` line of `/healthz`.
async fn healthz_streams(http: SocketAddr) -> Option<u64> {
    let r = http_get(http, "/healthz", Duration::from_secs(5)).await.ok()?;
    let body = String::from_utf8_lossy(&r.body).into_owned();
    body.lines().find_map(|l| l.strip_prefix("streams ")?.trim().parse().ok())
}

// ---------------------------------------------------------------------------------------------
// Phase 2: media attacks (buffers, timestamps, play flood) and signals
// ---------------------------------------------------------------------------------------------

async fn media_phase(o: &HostileOptions, sandbox: &Sandbox, server: &Server, checks: &Checks, round: usize) {
    let mark = sandbox.mark.as_str();
    let frozen = async {
        if let Ok((code, mut c)) = publish_status(&server.target("buffers", &format!("{mark}-frozen"))).await {
            if code == "NetStream.Publish.Start" {
                let _ = frozen_timestamps(&mut c, o.scale.frozen_bytes, o.scale.attack_rate).await;
            }
        }
    };
    let audio = async {
        if let Ok((code, mut c)) = publish_status(&server.target("buffers", &format!("{mark}-audio"))).await {
            if code == "NetStream.Publish.Start" {
                let _ = audio_without_keyframe(&mut c, o.scale.frozen_bytes / 2, o.scale.attack_rate / 2).await;
            }
        }
    };
    // A stream of its own each round: `hls_continuous` would carry the last one's playlist on.
    let jumps_name = format!("{mark}-jumps{round}");
    let jumps = timestamp_jumps(server, &sandbox.srv, &jumps_name);
    let flood = play_flood(server, mark, o.scale.play_flood);
    let ((), (), hls, flood) = tokio::join!(frozen, audio, jumps, flood);
    checks.add("hls-timestamps", hls.0, hls.1);
    checks.add("idle-streams", flood.0, flood.1);
}

/// What logrotate and habit send to a server: it must keep running. Last, so that a server
/// that dies of it still shows every other defect.
async fn signal_phase(server: &Server, checks: &Checks) {
    for (sig, check, name) in [(libc::SIGHUP, "signal-hup", "SIGHUP"), (libc::SIGUSR1, "signal-usr1", "SIGUSR1")] {
        let was_alive = server.alive();
        server.signal(sig);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let alive = server.alive();
        let detail = match (was_alive, alive) {
            (false, _) => "the server was gone before".to_string(),
            (true, true) => format!("running 1 s after {name}"),
            (true, false) => format!("{name} ended the server ({})", server.exit_status()),
        };
        checks.add(check, was_alive && alive, detail);
    }
}

fn video_frame(keyframe: bool, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_slice(&[if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0]);
    b.put_u32((size - 9) as u32);
    b.put_u8(if keyframe { 0x65 } else { 0x41 });
    b.resize(size, 0x5A);
    b.freeze()
}

/// Send at most `rate` bytes per second: sleep after each chunk as needed.
struct Pacer {
    start: tokio::time::Instant,
    sent: usize,
    rate: usize,
}

impl Pacer {
    fn new(rate: usize) -> Self {
        Pacer { start: tokio::time::Instant::now(), sent: 0, rate: rate.max(1) }
    }

    async fn add(&mut self, bytes: usize) {
        self.sent += bytes;
        let due = Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
        tokio::time::sleep_until(self.start + due).await;
    }
}

/// A keyframe, then video and audio all stamped with the same time: nothing ever closes the
/// open HLS segment or the MP4 fragment.
async fn frozen_timestamps(c: &mut RtmpClient, total: usize, rate: usize) -> anyhow::Result<()> {
    let src = SyntheticSource::new(200_000, 25, 25);
    for h in src.headers() {
        c.send_media(h.kind, h.timestamp, &h.payload).await?;
    }
    let key = video_frame(true, 64 * 1024);
    let inter = video_frame(false, 64 * 1024);
    let mut audio = vec![0xAF, 0x01];
    audio.resize(4096, 0x21);
    c.send_media(MediaKind::Video, 1000, &key).await?;
    let mut pacer = Pacer::new(rate);
    while pacer.sent < total {
        c.send_media(MediaKind::Video, 1000, &inter).await?;
        c.send_media(MediaKind::Audio, 1000, &audio).await?;
        pacer.add(inter.len() + audio.len()).await;
    }
    Ok(())
}

/// Sequence headers for audio and video, then only audio: there is never a keyframe to start
/// a segment at, so audio waits.
async fn audio_without_keyframe(c: &mut RtmpClient, total: usize, rate: usize) -> anyhow::Result<()> {
    let src = SyntheticSource::new(200_000, 25, 25);
    for h in src.headers() {
        c.send_media(h.kind, h.timestamp, &h.payload).await?;
    }
    let mut audio = vec![0xAF, 0x01];
    audio.resize(16 * 1024, 0x21);
    let mut pacer = Pacer::new(rate);
    let mut ts = 0u32;
    while pacer.sent < total {
        c.send_media(MediaKind::Audio, ts, &audio).await?;
        ts += 23;
        pacer.add(audio.len()).await;
    }
    Ok(())
}

/// Three seconds of media, then the same stamped 10 hours later, then back at 0; the HLS
/// playlist must keep a sane target duration and no zero-length segment.
async fn timestamp_jumps(server: &Server, srv: &Path, name: &str) -> (bool, String) {
    let Ok((code, mut c)) = publish_status(&server.target("live", name)).await else {
        return (false, "the publisher could not connect".into());
    };
    if code != "NetStream.Publish.Start" {
        return (false, format!("publish refused: {code}"));
    }
    let mut src = SyntheticSource::new(200_000, 25, 25);
    let sent = async {
        for h in src.headers() {
            c.send_media(h.kind, h.timestamp, &h.payload).await?;
        }
        let start = tokio::time::Instant::now();
        loop {
            let f = src.next_frame();
            if f.timestamp > 10_000 {
                break;
            }
            let ts = match f.timestamp {
                t if t < 3000 => t,
                t if t < 6000 => t + 36_000_000,
                t => t - 6000,
            };
            tokio::time::sleep_until(start + Duration::from_millis(u64::from(f.timestamp) / 4)).await;
            c.send_media(f.kind, ts, &f.payload).await?;
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = sent {
        return (false, format!("publishing failed: {e:#}"));
    }
    let path = srv.join("hls").join(format!("{name}.m3u8"));
    let mut playlist = String::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        playlist = std::fs::read_to_string(&path).unwrap_or_default();
        if playlist.matches("#EXTINF").count() >= 6 {
            break;
        }
    }
    drop(c);
    judge_playlist(&playlist)
}

/// Target duration at most 11 s (`hls_fragment 1s`, so `hls_max_fragment` 10 s) and every
/// segment longer than zero.
pub fn judge_playlist(playlist: &str) -> (bool, String) {
    let target: Option<u64> =
        playlist.lines().find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:")?.trim().parse().ok());
    let durations: Vec<f64> =
        playlist.lines().filter_map(|l| l.strip_prefix("#EXTINF:")?.split(',').next()?.trim().parse().ok()).collect();
    let zero = durations.iter().filter(|&&d| d < 0.001).count();
    let detail = format!("{} segments, target duration {target:?}, {zero} of zero length", durations.len());
    match target {
        Some(t) if durations.len() >= 2 => (t <= 11 && zero == 0, detail),
        _ => (false, format!("no usable playlist ({detail})")),
    }
}

/// One connection plays `name-1`, `name-2`, ... on its stream: the server must keep at most
/// a few of those streams, and none once the connection is gone.
async fn play_flood(server: &Server, mark: &str, n: usize) -> (bool, String) {
    let before = healthz_streams(server.http).await.unwrap_or(0);
    let result = async {
        let mut c = tokio::time::timeout(
            STATUS_TIMEOUT,
            RtmpClient::connect(server.rtmp, "live", Role::Play(format!("{mark}-p0"))),
        )
        .await??;
        tokio::time::timeout(STATUS_TIMEOUT, async {
            loop {
                if let ClientEvent::StreamCreated(_) = c.next_event().await? {
                    return anyhow::Ok(());
                }
            }
        })
        .await??;
        let (socket, session, _) = c.into_parts();
        let id = session.stream_id().unwrap_or(1);
        let (mut rd, mut wr) = socket.into_split();
        let drain = tokio::spawn(async move {
            let mut scratch = vec![0u8; 64 * 1024];
            while matches!(rd.read(&mut scratch).await, Ok(n) if n > 0) {}
        });
        let mut out = BytesMut::new();
        for i in 1..n {
            let cmd = rtmp::command::Command {
                name: "play".into(),
                transaction_id: 0.0,
                object: Value::Null,
                args: vec![Value::String(format!("{mark}-p{i}")), Value::Number(-2.0)],
            };
            encode_message(&mut out, 4096, 8, 0, rtmp::message::type_id::COMMAND_AMF0, id, &cmd.encode());
            if i % 200 == 0 || i + 1 == n {
                if wr.write_all(&out.split()).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let during = healthz_streams(server.http).await;
        drop(wr);
        drain.abort();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut after = healthz_streams(server.http).await;
        while after.is_some_and(|a| a > before + 3) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            after = healthz_streams(server.http).await;
        }
        anyhow::Ok((during, after))
    }
    .await;
    match result {
        Ok((during, after)) => {
            // The buffer and timestamp publishers of this phase come and go meanwhile: 3 more.
            let held = during.map(|d| d.saturating_sub(before));
            let ok = held.is_some_and(|h| h <= 16) && after.is_some_and(|a| a <= before + 3);
            (ok, format!("{n} plays on one stream: {held:?} extra streams held, {after:?} streams after close ({before} before)"))
        }
        Err(e) => (false, format!("{e:#}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 3: slowloris
// ---------------------------------------------------------------------------------------------

async fn slowloris_phase(o: &HostileOptions, server: &Server, checks: &Checks) {
    let stop = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..o.scale.slowloris {
        let (stop, closed, opened, http) = (stop.clone(), closed.clone(), opened.clone(), server.http);
        tasks.push(tokio::spawn(async move {
            let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(http)).await else {
                return;
            };
            opened.fetch_add(1, Ordering::Relaxed);
            let mut ok = s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").await.is_ok();
            // A header byte every five seconds, staggered; reading notices a close.
            tokio::time::sleep(Duration::from_millis((i % 50) as u64 * 100)).await;
            let mut scratch = [0u8; 512];
            while ok && !stop.load(Ordering::Relaxed) {
                tokio::select! {
                    r = s.read(&mut scratch) => ok = matches!(r, Ok(n) if n > 0),
                    _ = tokio::time::sleep(Duration::from_secs(5)) => ok = s.write_all(b"a").await.is_ok(),
                }
            }
            if !ok {
                closed.fetch_add(1, Ordering::Relaxed);
            }
        }));
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tokio::time::sleep(o.scale.slowloris_hold).await;
    // A new player must still get in while the slowloris connections are held.
    let probe = tokio::time::timeout(Duration::from_secs(6), async {
        let mut c = RtmpClient::connect(server.rtmp, "live", Role::Play("legit".into())).await?;
        loop {
            if let ClientEvent::Media { kind: MediaKind::Video, .. } = c.next_event().await? {
                return anyhow::Ok(());
            }
        }
    })
    .await;
    let (open, gone) = (opened.load(Ordering::Relaxed), closed.load(Ordering::Relaxed));
    checks.add(
        "slowloris-rtmp",
        matches!(probe, Ok(Ok(()))),
        format!(
            "{open} slowloris connections opened ({gone} closed by the server), server fd limit {SERVER_NOFILE}: new player {}",
            match &probe {
                Ok(Ok(())) => "got video".to_string(),
                Ok(Err(e)) => format!("failed: {e:#}"),
                Err(_) => "got no video within 6 s".to_string(),
            }
        ),
    );
    if let Some(limit) = o.scale.slowloris_closed_within {
        let start = Instant::now();
        while closed.load(Ordering::Relaxed) < opened.load(Ordering::Relaxed) && start.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (open, gone) = (opened.load(Ordering::Relaxed), closed.load(Ordering::Relaxed));
        checks.add(
            "slowloris-closed",
            gone >= open && server.alive(),
            format!("{gone} of {open} closed by the server within {:.0} s", start.elapsed().as_secs_f64()),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    // Let the server see the closes before the final checks.
    tokio::time::sleep(Duration::from_secs(1)).await;
}

// ---------------------------------------------------------------------------------------------
// Final checks on disk and in the log
// ---------------------------------------------------------------------------------------------

fn top_level_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Everything under `dir`, at most `limit` entries.
fn walk(dir: &Path, limit: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.filter_map(|e| e.ok()) {
        if out.len() >= limit {
            return;
        }
        let p = e.path();
        out.push(p.clone());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&p, limit, out);
        }
    }
}

fn escape_checks(checks: &Checks, sandbox: &Sandbox, root_before: &BTreeSet<String>) {
    let mut entries = Vec::new();
    walk(&sandbox.root, 100_000, &mut entries);
    let allowed = |p: &Path| {
        let Ok(rel) = p.strip_prefix(&sandbox.srv) else { return false };
        let Some(first) = rel.components().next() else { return true };
        let first = first.as_os_str().to_string_lossy();
        ALLOWED_DIRS.contains(&first.as_ref()) || OWN_FILES.contains(&first.as_ref())
    };
    let mut outside: Vec<String> = entries
        .iter()
        .filter(|p| !allowed(p))
        .map(|p| p.strip_prefix(&sandbox.root).map_or(p.display().to_string(), |r| format!("ROOT/{}", r.display())))
        .collect();
    // Outside the sandbox: new entries at the filesystem root and marked names in the temp dir.
    let root_after = top_level_names(Path::new("/"));
    let new_at_root: Vec<&String> = root_after.difference(root_before).collect();
    remove_hls_litter_at_root(&new_at_root);
    // The worst first: the filesystem root.
    outside.splice(0..0, new_at_root.iter().map(|n| format!("/{n}")));
    let tmp = std::env::temp_dir();
    let own = sandbox.root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    outside.extend(
        top_level_names(&tmp)
            .into_iter()
            .filter(|n| n.contains(&sandbox.mark) && *n != own)
            .map(|n| tmp.join(n).display().to_string()),
    );
    let detail = if outside.is_empty() {
        format!("{} entries, all in {}", entries.len(), ALLOWED_DIRS.join(", "))
    } else {
        let shown: Vec<&str> = outside.iter().take(8).map(String::as_str).collect();
        format!("{} outside (ROOT = {}): {}", outside.len(), sandbox.root.display(), shown.join(", "))
    };
    checks.add("no-escape", outside.is_empty(), detail);
}

/// An unfixed server writes the empty name's nested playlist and segments at `/`: remove what
/// appeared there during the run and looks like HLS output (regular files only).
fn remove_hls_litter_at_root(new: &[&String]) {
    const EXTENSIONS: &[&str] = &[".m3u8", ".ts", ".m4s", ".key", ".mp4", ".tmp"];
    for name in new.iter().filter(|n| EXTENSIONS.iter().any(|e| n.ends_with(e))) {
        let path = Path::new("/").join(name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            match std::fs::remove_file(&path) {
                Ok(()) => eprintln!("hostile: removed {} (written by the server during this run)", path.display()),
                Err(e) => eprintln!("hostile: could not remove {}: {e}", path.display()),
            }
        }
    }
}

fn log_checks(checks: &Checks, log: &str, mark: &str) {
    let forged = format!("{mark}-FORGED");
    let injected = log.lines().filter(|l| l.starts_with(&forged)).count();
    checks.add(
        "log-injection",
        injected == 0,
        format!("{injected} log lines start with client text (names and flashVer with newlines)"),
    );
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    checks.add(
        "log-line-length",
        longest <= MAX_LOG_LINE,
        format!("longest line {longest} bytes (bound {MAX_LOG_LINE})"),
    );
    let leaked = log.matches(&format!("{mark}SECRET")).count();
    checks.add("log-secrets", leaked == 0, format!("{leaked} occurrences of key=/token= values in the log"));
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].iter().map(|l| &l[..l.len().min(300)]).collect::<Vec<_>>().join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_bomb_decodes_to_millions_of_values_per_value() {
        let body = amf3_reference_bomb(1);
        assert!(body.len() < 8 * 1024, "{} bytes", body.len());
        // An unbounded decoder expands it (the point of the attack); a bounded one refuses it.
        match amf0::decode_all(&body) {
            Ok(values) => {
                let Value::StrictArray(outer) = &values[2] else { panic!("{:?}", values[2]) };
                assert_eq!(outer.len(), 2001);
                assert!(matches!(&outer[2000], Value::StrictArray(inner) if inner.len() == 1000));
            }
            // A decoding budget may refuse it, but it must not be malformed.
            Err(e) => assert!(
                !matches!(
                    e,
                    amf0::Amf0Error::UnexpectedEof { .. }
                        | amf0::Amf0Error::BadAmf3Reference { .. }
                        | amf0::Amf0Error::UnsupportedAmf3Marker(_)
                ),
                "{e}"
            ),
        }
    }

    #[test]
    fn u29_round_trips_through_the_decoder() {
        for n in [0u32, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 0x1F_FFFF, 0x20_0000, 0x0FFF_FFFF] {
            let mut b = vec![amf0::amf3::marker::INTEGER];
            u29(&mut b, n);
            let v = amf0::amf3::decode(&mut &b[..]).unwrap();
            let signed = ((n << 3) as i32 >> 3) as f64;
            assert_eq!(v, Value::Number(signed), "{n:#x}");
        }
    }

    #[test]
    fn strict_array_bomb_has_the_asked_size() {
        let body = strict_array_bomb(10_000);
        assert_eq!(body.len(), 10_000);
        let values = amf0::decode_all(&body).unwrap();
        assert!(matches!(&values[2], Value::StrictArray(v) if v.len() == 10_000 - 24));
    }

    #[test]
    fn playlists_are_judged() {
        let good = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.000,\na-0.ts\n#EXTINF:1.480,\na-1.ts\n";
        assert!(judge_playlist(good).0);
        let jump = good.replace("TARGETDURATION:2", "TARGETDURATION:36001");
        assert!(!judge_playlist(&jump).0);
        let zero = good.replace("1.480", "0.000");
        assert!(!judge_playlist(&zero).0);
        assert!(!judge_playlist("").0);
    }

    #[test]
    fn table_counts_failures() {
        let checks = vec![
            Check { name: "a", passed: true, detail: "x".into() },
            Check { name: "b", passed: false, detail: "y".into() },
        ];
        let t = table(&checks);
        assert!(t.contains("b                        FAIL   y"), "{t}");
        assert!(t.ends_with("2 checks, 1 failed\n"));
    }
}

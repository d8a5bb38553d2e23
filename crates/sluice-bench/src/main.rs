//! `sluice-bench [OPTIONS] URL` and `sluice-bench hostile [OPTIONS]`: see `--help`.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sluice_bench::httpflv::{self, HttpTarget};
use sluice_bench::players::{self, state, PlayerStats, ProbeResult, PublishStats, Target};
use sluice_bench::procstat::{rss_kib, CpuMeter};
use sluice_bench::report::{self, Latency, Report, Step, Ttff};
use sluice_bench::source::{FlvSource, Source, SyntheticSource};
use sluice_bench::{hls, hostile};

const USAGE: &str = "\
Usage: sluice-bench [OPTIONS] rtmp://HOST[:PORT]/APP/STREAM
       sluice-bench hostile [--short] [--sluice PATH] [--rounds N] [--keep] [--skip LIST]
       sluice-bench lag [--secs S] rtmp://HOST[:PORT]/APP/REFERENCE rtmp://HOST[:PORT]/APP/OTHER

Publishes a stream to URL and plays it with many players; reports how many kept up.

Options:
  --flv FILE             replay this FLV in real time, looping (default: synthetic stream)
  --bitrate BPS          synthetic stream bitrate, e.g. 2500k (default 2500k)
  --fps N                synthetic frame rate (default 30)
  --gop SECS             synthetic keyframe interval (default 2)
  --players N            one step with N players (default 100)
  --ramp START,STEP,MAX  add STEP players per step from START until a step fails or MAX
  --step-secs S          seconds each step is measured after its players joined (default 20)
  --join-secs S          seconds over which a step's new players connect (default 5)
  --probes N             fully parsing probe players per step (default 20)
  --spread-probes        the probes join evenly among each step's players and keep playing (a step
                         measures all so far: 20 per step) instead of joining after them: the
                         latency of every position in the server's fan-out order, not only the
                         newest players' (latency is always reported per kind: video from SEI
                         stamps, audio from send times kept by the publisher in this process)
  --server-pid PID       report the server's CPU % and RSS from /proc/PID
  --label NAME           name in the report (default: the URL)
  --json FILE            also write the report as JSON
  --http-flv URL         players and probes play http://HOST:PORT/APP/STREAM.flv (HTTP-FLV) instead
                         of the RTMP URL, which is still published to
  --hls URL              instead of RTMP players: HLS viewers of the media playlist
                         http://HOST:PORT/PATH.m3u8 (the stream is still published over RTMP to the URL
                         at the end), each one keep-alive HTTP/1.1 connection behaving as hls.js:
                         starts at the live edge, fetches every new segment whole, reloads the
                         playlist every target duration (half when unchanged); kept up = >= 97% of the
                         bytes of the step's segments and never over one segment behind the edge
  --ll-hls               with --hls: fetch the low-latency parts and reload with blocking requests
                         (_HLS_msn/_HLS_part); reports the answer delay after each part's end
  --hls-reload-only      with --hls: viewers only reload the playlist (blocking reloads with --ll-hls)
                         and fetch no media: what holding many waiting viewers costs; kept up = no
                         failed reload and never over one segment behind
  --play URL             players and probes play rtmp://HOST[:PORT]/APP/STREAM instead of the URL
                         published to, e.g. an edge that pulls it from the origin published to;
                         repeat it to spread them round-robin over several servers (latency is
                         still measured from the publisher's stamps)
  --no-publish           only play; someone else publishes at --bitrate (keep-up is then judged
                         against the probes)
  --publishers N         instead of players: N synthetic publishers on STREAM-0..N-1, each at --bitrate;
                         reports how many kept real time (never over 1 s behind schedule)
  --gop-metrics URL      with --publishers: read sluice_gop_cache_bytes from this Prometheus page
                         (http://HOST:PORT/metrics) every second of the step and report the RSS
                         growth per publisher against the mean GOP cache per publisher
  --idle N               instead of players: N connections that play STREAM while nobody publishes
                         it, held for --step-secs; reports how many stayed and the server's RSS per
                         connection (with --server-pid)
  -h, --help             this help

sluice-bench hostile starts a sluice binary (default: the `sluice` next to this program) on free
127.0.0.1 ports with HLS, recording and HTTP on, keeps a legitimate publisher and player going and
attacks the server the ways issue #9 lists; prints a pass/FAIL table and exits 1 if a check fails.
  --short                the ~25 s form the tests run
  --sluice PATH          the server binary to attack
  --rounds N             repeat the protocol and media attacks N times (long form; default 3)
  --keep                 keep the temporary directory (config, log, outputs)
  --skip LIST            leave out phases: protocol,media,slowloris,signals (to measure one alone)

sluice-bench lag plays both streams for S seconds (default 20) and prints how much later OTHER
delivers each video timestamp than REFERENCE (p50, p99, max): e.g. what sluice's transcode
ladder adds to a rendition (NAME_480p) over its source (NAME), whose timestamps it keeps.";

struct Options {
    target: Target,
    url: String,
    flv: Option<PathBuf>,
    bitrate: u64,
    fps: u32,
    gop_secs: f64,
    steps: Vec<usize>,
    step_secs: u64,
    join_secs: f64,
    probes: usize,
    server_pid: Option<String>,
    label: Option<String>,
    json: Option<PathBuf>,
    publish: bool,
    publishers: Option<usize>,
    /// `--gop-metrics`: a sluice metrics page (address, path) read for the GOP caches' size.
    gop_metrics: Option<(String, String)>,
    idle: Option<usize>,
    /// Bulk players' socket low-water mark, from the stream's rate.
    rcvlowat: u32,
    /// `--http-flv`: players and probes play this over HTTP-FLV.
    http_flv: Option<HttpTarget>,
    /// `--play`: players and probes play these round-robin instead of `target`.
    play: Vec<Target>,
    /// `--spread-probes`: probes join among each step's players and stay (see [`join_players`]).
    spread_probes: bool,
    /// `--hls`: HLS viewers of this playlist instead of players.
    hls: Option<HttpTarget>,
    /// `--ll-hls`.
    ll_hls: bool,
    /// `--hls-reload-only`.
    hls_reload_only: bool,
}

impl Options {
    /// Where the `i`th player (or probe) plays: round-robin over `--play`, else the published URL.
    fn play_target(&self, i: usize) -> Target {
        if self.play.is_empty() {
            self.target.clone()
        } else {
            self.play[i % self.play.len()].clone()
        }
    }
}

fn parse_rate(s: &str) -> anyhow::Result<u64> {
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1_000),
        Some('m' | 'M') => (&s[..s.len() - 1], 1_000_000),
        _ => (s, 1),
    };
    Ok(num.parse::<f64>().with_context(|| format!("bad rate \"{s}\""))? as u64 * mult)
}

fn parse_url(url: &str) -> anyhow::Result<Target> {
    let rest = url.strip_prefix("rtmp://").with_context(|| format!("URL must start with rtmp://: {url}"))?;
    let mut parts = rest.splitn(3, '/');
    let host = parts.next().unwrap_or_default();
    let app = parts.next().filter(|a| !a.is_empty()).with_context(|| format!("URL has no application: {url}"))?;
    let stream = parts.next().filter(|s| !s.is_empty()).with_context(|| format!("URL has no stream name: {url}"))?;
    let host = if host.contains(':') && !host.ends_with(']') { host.to_string() } else { format!("{host}:1935") };
    let addr = host.to_socket_addrs()?.next().with_context(|| format!("cannot resolve {host}"))?;
    Ok(Target { addr, app: app.into(), stream: stream.into() })
}

/// `http://HOST:PORT/PATH` as (`HOST:PORT`, `/PATH`).
fn parse_http(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url.strip_prefix("http://").with_context(|| format!("not an http:// URL: {url}"))?;
    let (addr, path) = rest.split_once('/').unwrap_or((rest, "metrics"));
    Ok((addr.to_string(), format!("/{path}")))
}

/// The value of `sluice_gop_cache_bytes` on a sluice metrics page.
async fn gop_cache_bytes((addr, path): &(String, String)) -> anyhow::Result<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr.as_str()).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
    let mut page = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut page)).await??;
    let page = String::from_utf8_lossy(&page);
    let line = page.lines().find_map(|l| l.strip_prefix("sluice_gop_cache_bytes "));
    Ok(line.context("no sluice_gop_cache_bytes on the metrics page")?.trim().parse()?)
}

fn parse_ramp(s: &str) -> anyhow::Result<Vec<usize>> {
    let v: Vec<usize> = s.split(',').map(str::parse).collect::<Result<_, _>>().context("--ramp START,STEP,MAX")?;
    let [start, step, max] = v[..] else { bail!("--ramp takes START,STEP,MAX") };
    if start == 0 || step == 0 || max < start {
        bail!("--ramp needs START > 0, STEP > 0, MAX >= START");
    }
    Ok((0..).map(|i| start + i * step).take_while(|&n| n <= max).collect())
}

fn parse_args() -> anyhow::Result<Option<Options>> {
    let mut args = std::env::args().skip(1);
    let mut url = None;
    let mut o = Options {
        target: Target { addr: ([127, 0, 0, 1], 1935).into(), app: String::new(), stream: String::new() },
        url: String::new(),
        flv: None,
        bitrate: 2_500_000,
        fps: 30,
        gop_secs: 2.0,
        steps: vec![100],
        step_secs: 20,
        join_secs: 5.0,
        probes: 20,
        server_pid: None,
        label: None,
        json: None,
        publish: true,
        publishers: None,
        gop_metrics: None,
        idle: None,
        rcvlowat: 0,
        http_flv: None,
        play: Vec::new(),
        spread_probes: false,
        hls: None,
        ll_hls: false,
        hls_reload_only: false,
    };
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--flv" => o.flv = Some(value()?.into()),
            "--bitrate" => o.bitrate = parse_rate(&value()?)?,
            "--fps" => o.fps = value()?.parse()?,
            "--gop" => o.gop_secs = value()?.parse()?,
            "--players" => o.steps = vec![value()?.parse()?],
            "--ramp" => o.steps = parse_ramp(&value()?)?,
            "--step-secs" => o.step_secs = value()?.parse()?,
            "--join-secs" => o.join_secs = value()?.parse()?,
            "--probes" => o.probes = value()?.parse()?,
            "--server-pid" => o.server_pid = Some(value()?),
            "--label" => o.label = Some(value()?),
            "--json" => o.json = Some(value()?.into()),
            "--no-publish" => o.publish = false,
            "--publishers" => o.publishers = Some(value()?.parse()?),
            "--gop-metrics" => o.gop_metrics = Some(parse_http(&value()?)?),
            "--idle" => o.idle = Some(value()?.parse()?),
            "--http-flv" => o.http_flv = Some(HttpTarget::parse(&value()?)?),
            "--play" => o.play.push(parse_url(&value()?)?),
            "--spread-probes" => o.spread_probes = true,
            "--hls" => o.hls = Some(HttpTarget::parse(&value()?)?),
            "--ll-hls" => o.ll_hls = true,
            "--hls-reload-only" => o.hls_reload_only = true,
            other if other.starts_with("rtmp://") => url = Some(other.to_string()),
            other => bail!("unknown option \"{other}\"\n\n{USAGE}"),
        }
    }
    let url = url.with_context(|| format!("no URL given\n\n{USAGE}"))?;
    o.target = parse_url(&url)?;
    o.url = url;
    if !o.play.is_empty() && o.http_flv.is_some() {
        bail!("--play and --http-flv cannot be combined");
    }
    if (o.ll_hls || o.hls_reload_only) && o.hls.is_none() {
        bail!("--ll-hls and --hls-reload-only need --hls URL");
    }
    Ok(Some(o))
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("hostile") => std::process::exit(hostile_main()),
        Some("lag") => std::process::exit(lag_main()),
        _ => {}
    }
    match parse_args() {
        Ok(Some(o)) => {
            if let Err(e) = run(o) {
                eprintln!("sluice-bench: {e:#}");
                std::process::exit(1);
            }
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("sluice-bench: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Allow as many sockets as the hard limit permits.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Print the report, and write it as JSON with `--json`.
fn output(o: &Options, report: &Report) -> anyhow::Result<()> {
    print!("{}", report::table(report));
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn run(mut o: Options) -> anyhow::Result<()> {
    raise_fd_limit();
    if let Some(n) = o.publishers {
        return run_publishers(&o, n);
    }
    if let Some(n) = o.idle {
        o.rcvlowat = players::rcvlowat_for(0);
        return run_idle(&o, n);
    }
    let source: Box<dyn Source + Send> = match &o.flv {
        Some(path) => Box::new(FlvSource::open(path)?),
        None => Box::new(SyntheticSource::new(o.bitrate, o.fps, (o.gop_secs * o.fps as f64).round().max(1.0) as u32)),
    };
    // Without our publisher, --bitrate says what rate to expect.
    let rate = if o.publish { source.bytes_per_second() } else { o.bitrate / 8 };
    o.rcvlowat = players::rcvlowat_for(rate);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let pub_stats = Arc::new(PublishStats::default());
    let publisher =
        o.publish.then(|| players::spawn_publisher(o.target.clone(), source, pub_stats.clone(), stop.clone()));
    let report = match &o.hls {
        Some(target) => rt.block_on(hls_ramp(&o, target, &pub_stats)),
        None => rt.block_on(ramp(&o, &pub_stats)),
    };
    stop.store(true, Ordering::Relaxed);
    if let Some(p) = publisher {
        let _ = p.join();
    }
    let report = report?;
    output(&o, &report)?;
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// A publisher that never fell further behind its schedule than this kept real time.
const PUBLISHER_MAX_LAG: Duration = Duration::from_secs(1);

fn run_publishers(o: &Options, n: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let gop = (o.gop_secs * o.fps as f64).round().max(1.0) as u32;
    let stats: Vec<Arc<PublishStats>> = (0..n).map(|_| Arc::default()).collect();
    let report = rt.block_on(async {
        let rss_before = o.server_pid.as_deref().and_then(rss_kib);
        let join_start = Instant::now();
        for (i, s) in stats.iter().enumerate() {
            let target = Target { stream: format!("{}-{i}", o.target.stream), ..o.target.clone() };
            let source = Box::new(SyntheticSource::new(o.bitrate, o.fps, gop));
            tokio::spawn(players::publisher(target, source, s.clone(), stop.clone(), false));
            tokio::time::sleep_until(
                (join_start + Duration::from_secs_f64(o.join_secs * (i + 1) as f64 / n as f64)).into(),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Only lag from here on counts: connecting hundreds of publishers is not streaming.
        for s in &stats {
            s.max_lag_us.store(0, Ordering::Relaxed);
        }
        let mut server_cpu = o.server_pid.as_deref().map(CpuMeter::new);
        let mut tool_cpu = CpuMeter::new("self");
        let bytes0: u64 = stats.iter().map(|s| s.bytes.load(Ordering::Relaxed)).sum();
        // The GOP caches swing between a keyframe and a whole GOP: their mean over the step.
        let step_end = Instant::now() + Duration::from_secs(o.step_secs);
        let mut gop_samples = Vec::new();
        while Instant::now() < step_end {
            tokio::time::sleep(Duration::from_secs(1).min(step_end - Instant::now())).await;
            if let Some(page) = &o.gop_metrics {
                match gop_cache_bytes(page).await {
                    Ok(b) => gop_samples.push(b),
                    Err(e) => eprintln!("  --gop-metrics: {e:#}"),
                }
            }
        }
        let bytes1: u64 = stats.iter().map(|s| s.bytes.load(Ordering::Relaxed)).sum();
        let live = stats.iter().filter(|s| s.live.load(Ordering::Relaxed)).count();
        let max_lag = PUBLISHER_MAX_LAG.as_micros() as u64;
        let kept_up = stats
            .iter()
            .filter(|s| s.live.load(Ordering::Relaxed) && s.max_lag_us.load(Ordering::Relaxed) <= max_lag)
            .count();
        for e in stats.iter().filter_map(|s| s.error.lock().unwrap().clone()).take(3) {
            eprintln!("  publisher failed: {e}");
        }
        let rss = o.server_pid.as_deref().and_then(rss_kib);
        let gop = (!gop_samples.is_empty()).then(|| gop_samples.iter().sum::<u64>() / gop_samples.len() as u64);
        let mut publishers = report::Publishers {
            publishers: n,
            live,
            kept_up,
            total_mbps: (bytes1 - bytes0) as f64 * 8.0 / o.step_secs.max(1) as f64 / 1e6,
            ..Default::default()
        };
        publishers.memory(rss_before, rss, gop);
        let step = Step {
            passed: kept_up == n,
            server_cpu_pct: server_cpu.as_mut().and_then(CpuMeter::lap),
            server_rss_kb: rss,
            tool_cpu_pct: tool_cpu.lap(),
            publishers: Some(publishers),
            ..Step::default()
        };
        Report { label: o.label.clone().unwrap_or_else(|| o.url.clone()), max_passed: 0, steps: vec![step] }
    });
    stop.store(true, Ordering::Relaxed);
    output(o, &report)?;
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Hold `n` players of a stream nobody publishes: what an idle connection costs the server.
fn run_idle(o: &Options, n: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = rt.block_on(async {
        let rss_before = o.server_pid.as_deref().and_then(rss_kib);
        let mut players = Vec::new();
        join_players(o, &mut players, n, &mut Spread::default()).await;
        let mut server_cpu = o.server_pid.as_deref().map(CpuMeter::new);
        let mut tool_cpu = CpuMeter::new("self");
        for sec in (5..=o.step_secs).step_by(5) {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let held = players.iter().filter(|p| p.state.load(Ordering::Relaxed) == state::PLAYING).count();
            eprintln!("  {sec}s: {held}/{n} held");
        }
        let held = players.iter().filter(|p| p.state.load(Ordering::Relaxed) == state::PLAYING).count();
        let failed = players.iter().filter(|p| p.state.load(Ordering::Relaxed) == state::FAILED).count();
        let rss = o.server_pid.as_deref().and_then(rss_kib);
        let per = match (rss, rss_before) {
            (Some(after), Some(before)) if held > 0 => Some(after.saturating_sub(before) as f64 / held as f64),
            _ => None,
        };
        let idle =
            report::Idle { connections: n, held, failed, server_rss_before_kb: rss_before, rss_per_connection_kb: per };
        let step = Step {
            players: n,
            connected: held,
            failed,
            passed: held == n,
            server_cpu_pct: server_cpu.as_mut().and_then(CpuMeter::lap),
            server_rss_kb: rss,
            tool_cpu_pct: tool_cpu.lap(),
            idle: Some(idle),
            ..Step::default()
        };
        Report { label: o.label.clone().unwrap_or_else(|| o.url.clone()), max_passed: 0, steps: vec![step] }
    });
    output(o, &report)?;
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

async fn ramp(o: &Options, pub_stats: &Arc<PublishStats>) -> anyhow::Result<Report> {
    if o.publish {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pub_stats.live.load(Ordering::Relaxed) {
            if let Some(e) = pub_stats.error.lock().unwrap().clone() {
                bail!("publisher: {e}");
            }
            if Instant::now() > deadline {
                bail!("publisher did not start within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let the GOP cache fill so players can start at once.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut report = Report { label: o.label.clone().unwrap_or_else(|| o.url.clone()), ..Report::default() };
    let mut players: Vec<Arc<PlayerStats>> = Vec::new();
    let mut spread = Spread::default();
    for &n in &o.steps {
        let first_new = players.len();
        let join_start = Instant::now();
        join_players(o, &mut players, n, &mut spread).await;
        let mut step = measure(o, &players, pub_stats, &spread).await?;
        step.join = join_stats(&players[first_new..], o.join_secs, join_start.elapsed());
        if !report.record_step(n, "connected", step) {
            break;
        }
    }
    Ok(report)
}

/// `--hls`: a ramp of HLS viewers (see [`hls`]) once the publisher is live.
async fn hls_ramp(o: &Options, target: &HttpTarget, pub_stats: &PublishStats) -> anyhow::Result<Report> {
    let ramp = hls::RampOptions {
        target: target.clone(),
        low_latency: o.ll_hls,
        reload_only: o.hls_reload_only,
        steps: o.steps.clone(),
        step_secs: o.step_secs,
        join_secs: o.join_secs,
        server_pid: o.server_pid.clone(),
        label: o.label.clone().unwrap_or_else(|| o.url.clone()),
    };
    hls::ramp(&ramp, || pub_stats_error(pub_stats), || pub_stats.bytes.load(Ordering::Relaxed)).await
}

/// `--spread-probes`: the probes that joined among the players so far, playing till the run ends.
#[derive(Default)]
struct Spread {
    probes: Vec<Arc<Mutex<ProbeResult>>>,
    stop: Arc<AtomicBool>,
}

impl Spread {
    fn spawn(&mut self, o: &Options) {
        let p: Arc<Mutex<ProbeResult>> = Arc::default();
        let i = self.probes.len();
        match &o.http_flv {
            Some(http) => tokio::spawn(httpflv::probe_player(http.clone(), p.clone(), self.stop.clone())),
            None => tokio::spawn(players::probe_player(o.play_target(i), p.clone(), self.stop.clone())),
        };
        self.probes.push(p);
    }
}

impl Drop for Spread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Whether a probe joins just before the `i`th of `new` players, for `probes` probes spread evenly
/// (each in the middle of its share of the players; all of them when there are fewer players).
fn probe_before(i: usize, new: usize, probes: usize) -> bool {
    if probes == 0 {
        return false;
    }
    let every = (new / probes).max(1);
    i % every == every / 2 && i / every < probes
}

/// Join players up to `n`. With `--spread-probes`, `--probes` more probes join evenly among
/// this step's new players and keep playing: a server serves its players in some order each
/// round (nginx-rtmp the newest first, sluice the oldest first), so probes that all join after
/// the players measure only one end of that order; spread, they measure every position.
async fn join_players(o: &Options, players: &mut Vec<Arc<PlayerStats>>, n: usize, spread: &mut Spread) {
    let new = n.saturating_sub(players.len());
    if new == 0 {
        return;
    }
    let gap = Duration::from_secs_f64(o.join_secs / new as f64);
    let start = Instant::now();
    let probes = if o.spread_probes { o.probes } else { 0 };
    for i in 0..new {
        if probe_before(i, new, probes) {
            spread.spawn(o);
        }
        let stats = Arc::new(PlayerStats::default());
        match &o.http_flv {
            Some(http) => tokio::spawn(httpflv::bulk_player(http.clone(), stats.clone(), o.rcvlowat)),
            None => tokio::spawn(players::bulk_player(o.play_target(players.len()), stats.clone(), o.rcvlowat)),
        };
        players.push(stats);
        tokio::time::sleep_until((start + gap * (i as u32 + 1)).into()).await;
    }
    eprintln!("joined {new} players ({} in all) in {:.1} s", players.len(), start.elapsed().as_secs_f64());
    // Give the last ones time to start playing.
    tokio::time::sleep(Duration::from_secs(2)).await;
}

async fn measure(
    o: &Options,
    players: &[Arc<PlayerStats>],
    pub_stats: &PublishStats,
    spread: &Spread,
) -> anyhow::Result<Step> {
    let stop = Arc::new(AtomicBool::new(false));
    let probes: Vec<Arc<Mutex<ProbeResult>>> = if o.spread_probes {
        // Only this step's latencies count.
        for p in &spread.probes {
            let mut r = p.lock().unwrap();
            r.latencies_us.clear();
            r.audio_latencies_us.clear();
        }
        spread.probes.clone()
    } else {
        (0..o.probes).map(|_| Arc::default()).collect()
    };
    for (i, p) in probes.iter().enumerate().filter(|_| !o.spread_probes) {
        match &o.http_flv {
            Some(http) => tokio::spawn(httpflv::probe_player(http.clone(), p.clone(), stop.clone())),
            None => tokio::spawn(players::probe_player(o.play_target(i), p.clone(), stop.clone())),
        };
    }
    let mut server_cpu = o.server_pid.as_deref().map(CpuMeter::new);
    let mut tool_cpu = CpuMeter::new("self");
    let mut published = Vec::new();
    let mut received: Vec<Vec<u64>> = vec![Vec::new(); players.len()];
    let mut probe_bytes = Vec::new();
    let start = Instant::now();
    for sec in 0..=o.step_secs {
        tokio::time::sleep_until((start + Duration::from_secs(sec)).into()).await;
        published.push(pub_stats.bytes.load(Ordering::Relaxed));
        probe_bytes.push(probes.first().map_or(0, |p| p.lock().unwrap().bytes));
        for (r, p) in received.iter_mut().zip(players) {
            r.push(p.received());
        }
        if sec > 0 && sec % 5 == 0 {
            let playing = players.iter().filter(|p| p.state.load(Ordering::Relaxed) == state::PLAYING).count();
            eprintln!("  {}s: {playing}/{} playing", sec, players.len());
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reference = if o.publish { &published } else { &probe_bytes };
    let failed = players.iter().filter(|p| p.state.load(Ordering::Relaxed) == state::FAILED).count();
    let connected = players.iter().filter(|p| p.state.load(Ordering::Relaxed) == state::PLAYING).count();
    let kept_up = received.iter().filter(|r| report::kept_up(r, reference)).count();
    let secs = o.step_secs.max(1) as f64;
    let delta = |v: &[u64]| v.last().copied().unwrap_or(0).saturating_sub(v.first().copied().unwrap_or(0));
    let publish_mbps = delta(reference) as f64 * 8.0 / secs / 1e6;
    let player_mbps = if received.is_empty() {
        0.0
    } else {
        received.iter().map(|r| delta(r)).sum::<u64>() as f64 * 8.0 / secs / 1e6 / received.len() as f64
    };
    let mut step = Step {
        players: players.len(),
        connected,
        failed,
        kept_up,
        publish_mbps,
        player_mbps,
        server_cpu_pct: server_cpu.as_mut().and_then(CpuMeter::lap),
        server_rss_kb: o.server_pid.as_deref().and_then(rss_kib),
        tool_cpu_pct: tool_cpu.lap(),
        ..Step::default()
    };
    summarize_probes(&mut step, &probes);
    if let Some(e) = pub_stats_error(pub_stats) {
        bail!("publisher: {e}");
    }
    step.passed = kept_up as f64 >= players.len() as f64 * report::PASS_SHARE
        && step.latency_ms.p99 <= report::PASS_P99_MS
        && step.probes_headers_first > 0;
    Ok(step)
}

/// Start times of the players that joined in a step; players that never started count with the
/// whole time waited.
fn join_stats(new: &[Arc<PlayerStats>], secs: f64, waited: Duration) -> report::Join {
    let waited_ms = waited.as_secs_f64() * 1000.0;
    let mut starts: Vec<f64> = new
        .iter()
        .map(|p| match p.start_us.load(Ordering::Relaxed) {
            0 => waited_ms,
            us => us as f64 / 1000.0,
        })
        .collect();
    starts.sort_by(f64::total_cmp);
    report::Join {
        players: new.len(),
        secs,
        start_p50: report::quantile(&starts, 0.5),
        start_p99: report::quantile(&starts, 0.99),
        start_max: starts.last().copied().unwrap_or(0.0),
        within_1s: starts.iter().filter(|&&ms| ms <= 1000.0).count(),
    }
}

fn pub_stats_error(s: &PublishStats) -> Option<String> {
    s.error.lock().unwrap().clone()
}

fn summarize_probes(step: &mut Step, probes: &[Arc<Mutex<ProbeResult>>]) {
    let results: Vec<ProbeResult> = probes.iter().map(|p| p.lock().unwrap().clone()).collect();
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    let mut lat: Vec<f64> = results.iter().flat_map(|r| r.latencies_us.iter().map(|&u| u as f64 / 1000.0)).collect();
    let mut audio: Vec<f64> =
        results.iter().flat_map(|r| r.audio_latencies_us.iter().map(|&u| u as f64 / 1000.0)).collect();
    let mut video: Vec<f64> = results.iter().filter_map(|r| ms(r.first_video)).collect();
    let mut key: Vec<f64> = results.iter().filter_map(|r| ms(r.first_key)).collect();
    for v in [&mut lat, &mut audio, &mut video, &mut key] {
        v.sort_by(f64::total_cmp);
    }
    step.latency_ms = Latency::of(&lat);
    step.audio_latency_ms = Latency::of(&audio);
    step.ttff_ms = Ttff {
        video_p50: report::quantile(&video, 0.5),
        video_p99: report::quantile(&video, 0.99),
        key_p50: report::quantile(&key, 0.5),
        key_p99: report::quantile(&key, 0.99),
    };
    step.probes = results.len();
    step.probes_headers_first = results.iter().filter(|r| r.headers_first && r.error.is_none()).count();
    step.stalls = results.iter().map(|r| r.stalls).sum();
    for r in results.iter().filter_map(|r| r.error.as_ref()) {
        eprintln!("  probe failed: {r}");
    }
}

/// `sluice-bench hostile ...`: the exit code (0 all checks passed, 1 one failed, 2 usage).
fn lag_main() -> i32 {
    let run = || -> anyhow::Result<()> {
        let mut args = std::env::args().skip(2);
        let (mut secs, mut urls) = (20, Vec::new());
        while let Some(a) = args.next() {
            match a.as_str() {
                "--secs" => secs = args.next().context("--secs needs a number")?.parse()?,
                url if url.starts_with("rtmp://") => urls.push(parse_url(url)?),
                other => bail!("unknown argument \"{other}\"\n\n{USAGE}"),
            }
        }
        let [reference, other] =
            <[Target; 2]>::try_from(urls).map_err(|_| anyhow::anyhow!("two URLs needed\n\n{USAGE}"))?;
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        rt.block_on(sluice_bench::lag::run(reference, other, secs))
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sluice-bench lag: {e:#}");
            2
        }
    }
}

fn hostile_main() -> i32 {
    // 2100 slowloris connections and the rest need more than the usual 1024.
    raise_fd_limit();
    match parse_hostile_args().and_then(|o| Ok((hostile::run(&o)?, o))) {
        Ok((checks, _)) => {
            print!("{}", hostile::table(&checks));
            i32::from(checks.iter().any(|c| !c.passed))
        }
        Err(e) => {
            eprintln!("sluice-bench hostile: {e:#}");
            2
        }
    }
}

fn parse_hostile_args() -> anyhow::Result<hostile::HostileOptions> {
    let mut args = std::env::args().skip(2);
    let (mut short, mut sluice, mut rounds, mut keep, mut skip) = (false, None, 3, false, Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--short" => short = true,
            "--sluice" => sluice = Some(PathBuf::from(args.next().context("--sluice needs a path")?)),
            "--rounds" => rounds = args.next().context("--rounds needs a number")?.parse()?,
            "--keep" => keep = true,
            "--skip" => skip = args.next().context("--skip needs a list")?.split(',').map(String::from).collect(),
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown option \"{other}\" of hostile\n\n{USAGE}"),
        }
    }
    let sluice = match sluice {
        Some(p) => p,
        None => std::env::current_exe()?.parent().context("no directory for this program")?.join("sluice"),
    };
    let scale = if short { hostile::Scale::short() } else { hostile::Scale::long(rounds) };
    Ok(hostile::HostileOptions { sluice, scale, keep, skip })
}

#[cfg(test)]
mod tests {
    use super::probe_before;

    fn positions(new: usize, probes: usize) -> Vec<usize> {
        (0..new).filter(|&i| probe_before(i, new, probes)).collect()
    }

    #[test]
    fn spread_probes_join_evenly_among_the_players() {
        assert_eq!(positions(1000, 20).len(), 20);
        assert_eq!(positions(1000, 20)[..3], [25, 75, 125]);
        assert_eq!(*positions(1000, 20).last().unwrap(), 975);
        assert_eq!(positions(1010, 20).len(), 20, "a remainder adds no probe");
        assert_eq!(positions(5, 20), [0, 1, 2, 3, 4], "fewer players than probes: one before each");
        assert!(positions(1000, 0).is_empty());
    }
}

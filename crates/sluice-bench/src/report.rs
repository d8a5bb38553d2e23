//! Turning samples into a per-step verdict and a report (table and JSON).

use serde::Serialize;

/// A player kept up when it received at least this share of what was published over the step...
pub const KEEP_UP_TOTAL: f64 = 0.97;
/// ...and at least this share in its worst window of [`WINDOW_SECS`].
pub const KEEP_UP_WINDOW: f64 = 0.90;
/// Window length for the worst-window check, in samples (one a second).
pub const WINDOW_SECS: usize = 5;
/// A step passes when at least this share of players kept up...
pub const PASS_SHARE: f64 = 0.99;
/// ...and probe latency p99 stays under this many milliseconds.
pub const PASS_P99_MS: f64 = 1000.0;

/// Percentiles in milliseconds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl Latency {
    /// The percentiles of `sorted` milliseconds (zeros when empty).
    pub fn of(sorted: &[f64]) -> Self {
        Latency {
            p50: quantile(sorted, 0.5),
            p95: quantile(sorted, 0.95),
            p99: quantile(sorted, 0.99),
            max: sorted.last().copied().unwrap_or(0.0),
        }
    }
}

/// Time to first frame in milliseconds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Ttff {
    /// Connect → first video message, median.
    pub video_p50: f64,
    /// Connect → first video message, 99th percentile.
    pub video_p99: f64,
    /// Connect → first keyframe, median.
    pub key_p50: f64,
    /// Connect → first keyframe, 99th percentile.
    pub key_p99: f64,
}

/// How the players that joined in a step started: connect → first media bytes, milliseconds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Join {
    /// Players that joined in this step.
    pub players: usize,
    /// Seconds over which they connected.
    pub secs: f64,
    /// Median start time.
    pub start_p50: f64,
    /// 99th percentile start time.
    pub start_p99: f64,
    /// Slowest start (or the time waited, for players that never started).
    pub start_max: f64,
    /// Players that started within one second of connecting.
    pub within_1s: usize,
}

/// Publishers in `--publishers` mode.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Publishers {
    /// Publishers asked for.
    pub publishers: usize,
    /// Publishers that got `NetStream.Publish.Start` and are still sending.
    pub live: usize,
    /// Publishers that never fell more than a second behind their real-time schedule.
    pub kept_up: usize,
    /// Total publish rate, Mbit/s.
    pub total_mbps: f64,
    /// Server RSS before the publishers connected, KiB.
    pub server_rss_before_kb: Option<u64>,
    /// Server RSS growth per live publisher, KiB.
    pub rss_per_publisher_kb: Option<f64>,
    /// The server's GOP caches per live publisher, mean over the step (`--gop-metrics`), KiB.
    pub gop_cache_per_publisher_kb: Option<f64>,
    /// RSS growth per publisher over GOP cache per publisher.
    pub rss_per_gop: Option<f64>,
}

impl Publishers {
    /// Fill in the memory figures from RSS before and after (KiB) and the GOP caches' bytes.
    pub fn memory(&mut self, rss_before: Option<u64>, rss: Option<u64>, gop_bytes: Option<u64>) {
        let live = self.live.max(1) as f64;
        self.server_rss_before_kb = rss_before;
        self.rss_per_publisher_kb = rss.zip(rss_before).map(|(a, b)| a.saturating_sub(b) as f64 / live);
        self.gop_cache_per_publisher_kb = gop_bytes.map(|g| g as f64 / 1024.0 / live);
        self.rss_per_gop = self.rss_per_publisher_kb.zip(self.gop_cache_per_publisher_kb).map(|(r, g)| r / g);
    }
}

/// Idle connections in `--idle` mode: players of a stream nobody publishes.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Idle {
    /// Connections asked for.
    pub connections: usize,
    /// Connections that got `NetStream.Play.Start` and were still open at the end.
    pub held: usize,
    /// Connections refused or closed.
    pub failed: usize,
    /// Server RSS before the connections were made, KiB.
    pub server_rss_before_kb: Option<u64>,
    /// Server RSS growth per held connection, KiB.
    pub rss_per_connection_kb: Option<f64>,
}

/// One step of a ramp.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Step {
    /// Players asked for.
    pub players: usize,
    /// Players playing at the end of the step.
    pub connected: usize,
    /// Players that failed to start or were disconnected.
    pub failed: usize,
    /// Players that kept up.
    pub kept_up: usize,
    /// The verdict.
    pub passed: bool,
    /// Publish-to-play latency of video messages seen by the probes.
    pub latency_ms: Latency,
    /// Publish-to-play latency of audio messages seen by the probes (zeros with no publisher in
    /// this process).
    pub audio_latency_ms: Latency,
    /// Time to first frame seen by the probes.
    pub ttff_ms: Ttff,
    /// Probes whose first video was the sequence header followed by a keyframe.
    pub probes_headers_first: usize,
    /// Probes that ran.
    pub probes: usize,
    /// Stalls (video gaps > 500 ms) seen by the probes.
    pub stalls: u32,
    /// Published rate over the step, Mbit/s.
    pub publish_mbps: f64,
    /// Mean received rate per player, Mbit/s.
    pub player_mbps: f64,
    /// How this step's new players started.
    pub join: Join,
    /// Publisher counts, in `--publishers` mode.
    pub publishers: Option<Publishers>,
    /// Idle connection counts, in `--idle` mode.
    pub idle: Option<Idle>,
    /// HLS figures, in `--hls` mode.
    pub hls: Option<crate::hls::HlsStep>,
    /// Server CPU, % of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server resident memory, KiB.
    pub server_rss_kb: Option<u64>,
    /// This tool's CPU, % of one core.
    pub tool_cpu_pct: Option<f64>,
}

/// The whole run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// Name given with `--label`.
    pub label: String,
    /// Largest player count of a passed step (0 if none passed).
    pub max_passed: usize,
    /// Steps in order.
    pub steps: Vec<Step>,
}

impl Report {
    /// Add a ramp step's result, with its one-line verdict on stderr (`joined`: the word for
    /// players that are in: "connected", "playing"); whether the ramp goes on.
    pub fn record_step(&mut self, n: usize, joined: &str, step: Step) -> bool {
        eprintln!(
            "step {n}: {joined} {} failed {} kept up {} -> {}",
            step.connected,
            step.failed,
            step.kept_up,
            if step.passed { "pass" } else { "FAIL" }
        );
        let passed = step.passed;
        if passed {
            self.max_passed = n;
        }
        self.steps.push(step);
        passed
    }
}

/// Did one player keep up? `player` and `published` are cumulative byte counts sampled once a
/// second over the step. A player is compared with what was published over the same window or the
/// window one sample earlier, whichever it matches better: a keyframe published just before a
/// sample is still in flight at that instant, and must not count as falling behind.
pub fn kept_up(player: &[u64], published: &[u64]) -> bool {
    let n = player.len().min(published.len());
    if n < 2 {
        return false;
    }
    let share = |a: usize, b: usize| {
        let got = player[b].saturating_sub(player[a]) as f64;
        let lags = if a >= 1 { &[0, 1][..] } else { &[0][..] };
        lags.iter()
            .map(|&lag| {
                let p = published[b - lag].saturating_sub(published[a - lag]) as f64;
                if p == 0.0 {
                    1.0
                } else {
                    got / p
                }
            })
            .fold(0.0, f64::max)
    };
    // The first sample is the reference point: windows start at 1 so the lagged comparison exists.
    let first = if n > 2 { 1 } else { 0 };
    if share(first, n - 1) < KEEP_UP_TOTAL {
        return false;
    }
    let w = WINDOW_SECS.min(n - 1 - first);
    (first..n - w).all(|i| share(i, i + w) >= KEEP_UP_WINDOW)
}

/// The `q` quantile (0..=1) of sorted values; 0 when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Render the report as a text table.
pub fn table(report: &Report) -> String {
    let mut out = format!("sluice-bench report: {}\n", report.label);
    out += "players  connected  failed  kept_up  pass  lat_p50  lat_p99  lat_max  alat_p50  alat_p99  ttff_v50  ttff_k50  ttff_k99  srv_cpu%  srv_rss_MiB  tool_cpu%  Mbit/s/player\n";
    for s in &report.steps {
        let cpu = s.server_cpu_pct.map_or("-".into(), |c| format!("{c:.0}"));
        let rss = s.server_rss_kb.map_or("-".into(), |r| format!("{:.1}", r as f64 / 1024.0));
        let tool = s.tool_cpu_pct.map_or("-".into(), |c| format!("{c:.0}"));
        out += &format!(
            "{:>7}  {:>9}  {:>6}  {:>7}  {:>4}  {:>7.1}  {:>7.1}  {:>7.1}  {:>8.1}  {:>8.1}  {:>8.1}  {:>8.1}  {:>8.1}  {:>8}  {:>11}  {:>9}  {:>13.2}\n",
            s.players,
            s.connected,
            s.failed,
            s.kept_up,
            if s.passed { "yes" } else { "NO" },
            s.latency_ms.p50,
            s.latency_ms.p99,
            s.latency_ms.max,
            s.audio_latency_ms.p50,
            s.audio_latency_ms.p99,
            s.ttff_ms.video_p50,
            s.ttff_ms.key_p50,
            s.ttff_ms.key_p99,
            cpu,
            rss,
            tool,
            s.player_mbps,
        );
    }
    for s in report.steps.iter().filter(|s| s.join.players > 0) {
        let j = &s.join;
        out += &format!(
            "join at {}: {} players in {:.1} s started p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} within 1 s\n",
            s.players, j.players, j.secs, j.start_p50, j.start_p99, j.start_max, j.within_1s
        );
    }
    for p in report.steps.iter().filter_map(|s| s.publishers.as_ref()) {
        out += &format!(
            "publishers: {} asked, {} live, {} kept real time, {:.1} Mbit/s in all\n",
            p.publishers, p.live, p.kept_up, p.total_mbps
        );
        let kib = |v: Option<f64>| v.map_or("-".into(), |k| format!("{k:.1} KiB"));
        if p.rss_per_publisher_kb.is_some() {
            let ratio = p.rss_per_gop.map_or("-".into(), |r| format!("{r:.2}"));
            out += &format!(
                "publishers' memory: server RSS growth per publisher {}, GOP cache per publisher {}, ratio {ratio}\n",
                kib(p.rss_per_publisher_kb),
                kib(p.gop_cache_per_publisher_kb)
            );
        }
    }
    for i in report.steps.iter().filter_map(|s| s.idle.as_ref()) {
        let per = i.rss_per_connection_kb.map_or("-".into(), |k| format!("{k:.1} KiB"));
        out += &format!(
            "idle connections: {} asked, {} held, {} failed; server RSS per connection {per}\n",
            i.connections, i.held, i.failed
        );
    }
    for (s, h) in report.steps.iter().filter_map(|s| Some((s, s.hls.as_ref()?))) {
        let threads = h.server_threads.map_or("-".into(), |t| t.to_string());
        out += &format!(
            "hls at {}: {} segments judged ({:.1} s of media in {:.1} s, {:.1} MB, {:.2} Mbit/s against {:.2} published), {:.0} requests/s, {} errors, {} fell behind, server threads {threads}",
            s.players,
            h.segments,
            h.media_secs,
            h.judged_secs,
            h.segment_bytes as f64 / 1e6,
            h.media_mbps,
            s.publish_mbps,
            h.requests_per_sec,
            h.errors,
            h.fell_behind
        );
        if h.reload_only {
            out += "; playlist reloads only";
        }
        if h.low_latency {
            let d = &h.answer_delay_ms;
            out += &format!(
                "; blocking reloads {} answered, delay after the part's end p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
                h.answers, d.p50, d.p99, d.max
            );
        }
        out += "\n";
    }
    out += &format!("max players kept up: {}\n", report.max_passed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_up_needs_total_and_every_window() {
        let published: Vec<u64> = (0..=20).map(|i| i * 1000).collect();
        assert!(kept_up(&published, &published));
        let behind: Vec<u64> = published.iter().map(|b| b * 95 / 100).collect();
        assert!(!kept_up(&behind, &published), "95% total is not enough");
        // All bytes in the end, but nothing for 6 s in the middle: a stall.
        let mut stalled = published.clone();
        for s in stalled.iter_mut().take(14).skip(6) {
            *s = 5000;
        }
        *stalled.last_mut().unwrap() = 20_000;
        assert!(!kept_up(&stalled, &published));
    }

    #[test]
    fn keyframe_in_flight_at_a_sample_is_not_falling_behind() {
        // 100 KB a second, with a 300 KB keyframe published just before sample 10 that the
        // player receives just after it.
        let mut published = vec![0u64];
        let mut player = vec![0u64];
        for i in 1..=20u64 {
            let burst = if i >= 10 { 300_000 } else { 0 };
            published.push(i * 100_000 + burst);
            player.push(i * 100_000 + if i >= 11 { 300_000 } else { 0 });
        }
        assert!(kept_up(&player, &published));
        // A player that never gets the keyframe does fall behind.
        let lost: Vec<u64> = (0..=20u64).map(|i| i * 100_000).collect();
        assert!(!kept_up(&lost, &published));
    }

    #[test]
    fn publishers_memory_is_rss_growth_against_the_gop_cache() {
        let mut p = Publishers { publishers: 500, live: 500, ..Default::default() };
        p.memory(Some(10 * 1024), Some(10 * 1024 + 500 * 400), Some(500 * 350 * 1024));
        assert_eq!((p.rss_per_publisher_kb, p.gop_cache_per_publisher_kb), (Some(400.0), Some(350.0)));
        assert!((p.rss_per_gop.unwrap() - 400.0 / 350.0).abs() < 1e-9);
        let text =
            table(&Report { steps: vec![Step { publishers: Some(p), ..Step::default() }], ..Default::default() });
        assert!(
            text.contains("RSS growth per publisher 400.0 KiB, GOP cache per publisher 350.0 KiB, ratio 1.14"),
            "{text}"
        );
        // nginx-rtmp has no GOP cache to read.
        let mut p = Publishers { publishers: 500, live: 500, ..Default::default() };
        p.memory(Some(0), Some(500 * 100), None);
        assert_eq!((p.rss_per_publisher_kb, p.rss_per_gop), (Some(100.0), None));
    }

    #[test]
    fn quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 51.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}

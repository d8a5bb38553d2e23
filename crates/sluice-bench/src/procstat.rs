//! CPU and memory of a process, read from `/proc` (Linux).

use std::time::Instant;

/// Cumulative CPU time (user + system) of `pid` in seconds, or `None` if unreadable.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields after it are space separated.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Measures a process's CPU % between two points in time.
pub struct CpuMeter {
    pid: String,
    start: Option<(Instant, f64)>,
}

impl CpuMeter {
    /// Start measuring `pid` ("self" for this process).
    pub fn new(pid: &str) -> Self {
        Self { pid: pid.to_string(), start: cpu_seconds(pid).map(|c| (Instant::now(), c)) }
    }

    /// CPU % (100 = one core) since creation or the last call, restarting the measurement.
    pub fn lap(&mut self) -> Option<f64> {
        let (t0, c0) = self.start?;
        let c1 = cpu_seconds(&self.pid)?;
        let t1 = Instant::now();
        self.start = Some((t1, c1));
        let wall = t1.duration_since(t0).as_secs_f64();
        (wall > 0.0).then(|| (c1 - c0) / wall * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        assert!(cpu_seconds("self").is_some());
        assert!(rss_kib("self").unwrap() > 0);
        let mut m = CpuMeter::new("self");
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(m.lap().unwrap() >= 0.0);
    }
}

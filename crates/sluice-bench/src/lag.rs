//! `sluice-bench lag REFERENCE OTHER`: how much later a second stream delivers the same frames as
//! a first one, measured at the player. Both are played at once; every video frame is keyed by
//! its timestamp, and for each timestamp both streams deliver, the arrival time on OTHER minus
//! the arrival time on REFERENCE is one sample. With sluice's transcode ladder (renditions keep
//! the source's timestamps) REFERENCE is the source and OTHER a rendition: the samples are what
//! the ladder adds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rtmp::{ClientEvent, MediaKind, Role};
use sluice::client::RtmpClient;

use crate::players::Target;

/// Most frames remembered per stream (a bound on what a long run keeps).
const MAX_FRAMES: usize = 100_000;

/// Arrival time of each video timestamp of `target`, for `secs` seconds.
async fn arrivals(target: Target, secs: u64) -> anyhow::Result<HashMap<u32, Instant>> {
    let role = Role::Play(target.stream.clone());
    let mut client = RtmpClient::connect(target.addr, &target.app, role)
        .await
        .with_context(|| format!("playing {}/{}", target.app, target.stream))?;
    let mut seen = HashMap::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(event) = tokio::time::timeout_at(end, client.next_event()).await {
        if let ClientEvent::Media { kind: MediaKind::Video, timestamp, .. } = event? {
            if seen.len() < MAX_FRAMES {
                seen.entry(timestamp).or_insert_with(Instant::now);
            }
        }
    }
    Ok(seen)
}

/// The p50, p99 and max of `samples` (ms), sorted in place.
fn summary(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), samples[samples.len() - 1])
}

/// Play both for `secs` and print the lag of `other` behind `reference`.
pub async fn run(reference: Target, other: Target, secs: u64) -> anyhow::Result<()> {
    let label = format!("{}/{} behind {}/{}", other.app, other.stream, reference.app, reference.stream);
    let (a, b) = tokio::join!(arrivals(reference, secs), arrivals(other, secs));
    let (a, b) = (a?, b?);
    let mut samples: Vec<f64> = b
        .iter()
        .filter_map(|(ts, at)| Some(at.checked_duration_since(*a.get(ts)?).unwrap_or_default().as_secs_f64() * 1000.0))
        .collect();
    anyhow::ensure!(
        !samples.is_empty(),
        "no video timestamp arrived on both streams ({} and {} frames)",
        a.len(),
        b.len()
    );
    let n = samples.len();
    let (p50, p99, max) = summary(&mut samples);
    println!("{label}: {n} frames matched, lag p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_quantiles_of_the_sorted_samples() {
        let mut s: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(summary(&mut s), (51.0, 99.0, 100.0));
        assert_eq!(summary(&mut [7.0]), (7.0, 7.0, 7.0));
    }
}

//! Prometheus metrics (a location with `metrics on`, `/metrics` on the built-in server), in
//! the text exposition format 0.0.4.
//!
//! Two sources, one page:
//! - **Gauges and totals of the running server** (connections, streams, players, bytes, dropped
//!   frames, access decisions, build info) are read at scrape time from [`crate::stats::collect`]
//!   and the access counters, so the fan-out path pays nothing for them.
//! - **Events** (callback outcomes, HLS segments and their write time, recorder errors, relay
//!   reconnects, exec/transcode children) are counted where they happen through the `metrics`
//!   facade, with the functions below (one line at each place). The process has one recorder
//!   (metrics-exporter-prometheus, without its HTTP listener), installed by [`install`] when a
//!   server starts; several servers in one process (tests) share it.
//!
//! Labels are bounded: applications and directives come from the configuration, the other
//! label values from fixed lists. Nothing is labelled by stream name or client address.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::formatting::{sanitize_label_value, write_help_line, write_type_line};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::Location;
use crate::http::{private, status_response, HttpState};
use crate::notify::{CallError, Reply};
use crate::server::Running;
use crate::stats::Snapshot;

/// The exposition format's media type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histogram samples are folded into their buckets when nobody scrapes (the recorder
/// keeps raw samples until then: without this they would pile up).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Buckets of the HLS segment write time, in seconds: a local disk takes a millisecond, a slow
/// or network one up to seconds (a segment lasts a few).
const WRITE_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

const CALLBACKS: &str = "sluice_callbacks_total";
const HLS_SEGMENTS: &str = "sluice_hls_segments_total";
const HLS_WRITE: &str = "sluice_hls_segment_write_seconds";
const RECORDER_ERRORS: &str = "sluice_recorder_errors_total";
const RELAY_RECONNECTS: &str = "sluice_relay_reconnects_total";
const CHILDREN: &str = "sluice_exec_children";
const CHILDREN_STARTED: &str = "sluice_exec_children_started_total";
const CHILDREN_EXITED: &str = "sluice_exec_children_exited_total";

/// The process's event recorder; `None` when another recorder was installed first (an
/// embedding program's): events then go there and the page has the scrape-time figures only.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's event recorder, once; later calls return the same handle.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE.get_or_init(build).as_ref()
}

fn build() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HLS_WRITE.into()), &WRITE_BUCKETS)
        .expect("buckets are not empty");
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if let Err(e) = metrics::set_global_recorder(recorder) {
        tracing::warn!("metrics: another recorder is installed ({e}); /metrics shows the server's figures only");
        return None;
    }
    describe();
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
        std::thread::sleep(UPKEEP_EVERY);
        upkeep.run_upkeep();
    });
    if let Err(e) = spawned {
        // Scrapes fold the samples too; only an unscraped server would keep them.
        tracing::warn!("metrics: cannot start the upkeep thread: {e}");
    }
    Some(handle)
}

/// HELP lines of the event metrics.
fn describe() {
    describe_counter!(
        CALLBACKS,
        Unit::Count,
        "Callbacks (notify) made, by call and result (ok, refused, error, timeout)"
    );
    describe_counter!(HLS_SEGMENTS, Unit::Count, "HLS segments written, by application");
    describe_histogram!(HLS_WRITE, Unit::Seconds, "Time to write one HLS segment to hls_path, by application");
    describe_counter!(RECORDER_ERRORS, Unit::Count, "Recorder failures (open, write, finish), by application");
    describe_counter!(
        RELAY_RECONNECTS,
        Unit::Count,
        "Relay legs started again after a failure, by application and direction"
    );
    describe_gauge!(
        CHILDREN,
        Unit::Count,
        "Child processes running now, by directive (transcode's ffmpeg: directive=\"transcode\")"
    );
    describe_counter!(CHILDREN_STARTED, Unit::Count, "Child processes started, by directive");
    describe_counter!(CHILDREN_EXITED, Unit::Count, "Child processes that ended (exited or stopped), by directive");
}

/// Counts the outcome of a callback a client waits for; returns it unchanged.
pub fn callback(call: &'static str, result: Result<Reply, CallError>) -> Result<Reply, CallError> {
    count_callback(call, callback_result(&result));
    result
}

/// Counts the outcome of a fire-and-forget callback (`Err`: `notify_timeout` passed).
pub fn callback_timed<E>(call: &'static str, outcome: &Result<Result<Reply, CallError>, E>) {
    count_callback(call, outcome.as_ref().map_or("timeout", callback_result));
}

fn count_callback(call: &'static str, result: &'static str) {
    counter!(CALLBACKS, "call" => call, "result" => result).increment(1);
}

/// `ok` (go on, redirect or relay), `refused` (a refusing status), `timeout` or `error` (no
/// reply).
pub fn callback_result(result: &Result<Reply, CallError>) -> &'static str {
    match result {
        Ok(Reply::Refuse(_)) => "refused",
        Ok(_) => "ok",
        Err(CallError::Timeout(_)) => "timeout",
        Err(CallError::Unreachable(_)) => "error",
    }
}

/// An HLS segment of `app` was written (or its write failed) after `started`.
pub fn hls_segment_written(app: &str, started: Instant) {
    let app = app.to_owned();
    histogram!(HLS_WRITE, "app" => app.clone()).record(started.elapsed().as_secs_f64());
    counter!(HLS_SEGMENTS, "app" => app).increment(1);
}

/// A recorder of `app` failed: `open`, `write` or `finish`.
pub fn recorder_error(app: &str, kind: &'static str) {
    counter!(RECORDER_ERRORS, "app" => app.to_owned(), "kind" => kind).increment(1);
}

/// A relay leg of `app` tries again: `push` or `pull`.
pub fn relay_reconnect(app: &str, direction: &'static str) {
    counter!(RELAY_RECONNECTS, "app" => app.to_owned(), "direction" => direction).increment(1);
}

/// A child process of `directive` (`exec_push`, `transcode`, ...) started; dropping the guard
/// says it ended.
#[must_use = "the child counts as running until the guard is dropped"]
pub fn child_started(directive: &str) -> ChildRunning {
    let directive = directive.to_owned();
    counter!(CHILDREN_STARTED, "directive" => directive.clone()).increment(1);
    gauge!(CHILDREN, "directive" => directive.clone()).increment(1.0);
    ChildRunning { directive }
}

/// One running child (see [`child_started`]).
#[derive(Debug)]
pub struct ChildRunning {
    directive: String,
}

impl Drop for ChildRunning {
    fn drop(&mut self) {
        let directive = std::mem::take(&mut self.directive);
        counter!(CHILDREN_EXITED, "directive" => directive.clone()).increment(1);
        gauge!(CHILDREN, "directive" => directive).decrement(1.0);
    }
}

/// Answer a request to a location this module handles.
pub async fn respond(state: &HttpState, loc: &Location, path: &str, req: Request) -> Response {
    if let Some(refused) = crate::api::token_refused(loc, &req, path) {
        return private(refused);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut res = status_response(StatusCode::METHOD_NOT_ALLOWED);
        res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    let Some(running) = &state.running else { return status_response(StatusCode::SERVICE_UNAVAILABLE) };
    let text = render(running);
    private((StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))], text).into_response())
}

/// The whole page: the running server's figures, then the events.
pub fn render(running: &Running) -> String {
    let mut page = render_snapshot(&crate::stats::collect(running), &running.shared.access.snapshot());
    page.push_str(&render_gop_caches(&running.shared.hub));
    if let Some(directory) = &running.shared.directory {
        page.push_str(&render_cluster(&directory.view()));
    }
    if let Some(handle) = install() {
        page.push_str(&handle.render());
    }
    page
}

/// What the GOP caches hold, summed over streams: ingest memory is judged against it.
fn render_gop_caches(hub: &crate::hub::Hub) -> String {
    let bytes: usize = hub.streams().iter().map(|s| s.gop_cache_bytes()).sum();
    let mut out = Page::default();
    out.family(
        "sluice_gop_cache_bytes",
        "gauge",
        "Media payload bytes held by the GOP caches of all streams now",
        [(vec![], bytes as u64)],
    );
    out.text
}

/// The scrape-time families.
pub fn render_snapshot(snap: &Snapshot, access: &crate::access::CountersSnapshot) -> String {
    let mut out = Page::default();
    let s = &snap.server;
    out.family("sluice_build_info", "gauge", "sluice's version (always 1)", [(vec![("version", s.version)], 1)]);
    out.family(
        "sluice_start_time_seconds",
        "gauge",
        "When the server started, in seconds since the Unix epoch",
        [(vec![], s.started_unix)],
    );

    let mut connections: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for c in &snap.clients {
        *connections.entry((c.app.as_str(), c.protocol)).or_default() += 1;
    }
    out.family(
        "sluice_connections",
        "gauge",
        "Clients connected now, by application (empty before connect) and protocol",
        connections.into_iter().map(|((app, protocol), n)| (vec![("app", app), ("protocol", protocol)], n)),
    );
    out.family(
        "sluice_connections_accepted_total",
        "counter",
        "Connections accepted since start",
        [(vec![], s.naccepted)],
    );

    let mut streams: BTreeMap<&str, u64> = BTreeMap::new();
    let mut pulled: BTreeMap<&str, u64> = BTreeMap::new();
    let mut players: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut fanout: BTreeMap<&str, u64> = BTreeMap::new();
    for st in &snap.streams {
        let app = st.app.as_str();
        *streams.entry(app).or_default() += u64::from(st.live);
        *pulled.entry(app).or_default() += u64::from(st.origin != "local" && !st.origin.is_empty());
        let p = &st.players;
        *fanout.entry(app).or_default() += p.fanout;
        for (protocol, n) in [("rtmp", p.rtmp), ("http-flv", p.http_flv), ("ws-flv", p.ws_flv), ("relay", p.relay)] {
            *players.entry((app, protocol)).or_default() += n;
        }
    }
    // A file's players (`play`) are RTMP players of the application too.
    for f in &snap.files {
        *players.entry((f.app.as_str(), "rtmp")).or_default() += f.players.len() as u64;
    }
    out.family(
        "sluice_streams",
        "gauge",
        "Streams with a live publisher, by application",
        streams.into_iter().map(|(app, n)| (vec![("app", app)], n)),
    );
    out.family(
        "sluice_pulled_streams",
        "gauge",
        "Streams played from another server now (relay pulls: an edge's upstream connections), by application",
        pulled.into_iter().map(|(app, n)| (vec![("app", app)], n)),
    );
    out.family(
        "sluice_players",
        "gauge",
        "Players connected now, by application and protocol (relay: push legs)",
        players.into_iter().map(|((app, protocol), n)| (vec![("app", app), ("protocol", protocol)], n)),
    );
    out.family(
        "sluice_fanout_players",
        "gauge",
        "RTMP and HTTP-FLV players written by fan-out shards now (keeping up, on plain TCP), by application",
        fanout.into_iter().map(|(app, n)| (vec![("app", app)], n)),
    );
    out.family(
        "sluice_player_dropped_frames_total",
        "counter",
        "Frames skipped for players that fell behind since start, by application",
        s.dropped_frames.iter().map(|(app, n)| (vec![("app", app.as_str())], *n)),
    );
    out.family("sluice_received_bytes_total", "counter", "Bytes read from clients since start", [(vec![], s.bytes_in)]);
    out.family("sluice_sent_bytes_total", "counter", "Bytes written to clients since start", [(vec![], s.bytes_out)]);

    out.family(
        "sluice_access_accepted_total",
        "counter",
        "Access decisions that let a client go on, by stage (connect, publish, play, update)",
        access.accepted.iter().map(|(stage, n)| (vec![("stage", *stage)], *n)),
    );
    out.family(
        "sluice_access_refused_total",
        "counter",
        "Clients refused, by reason (rule, max_connections, token, publish_key, callback_*)",
        access.refused.iter().map(|(reason, n)| (vec![("reason", *reason)], *n)),
    );
    out.text
}

/// The cluster's stream directory (only with `cluster_redis`), read at scrape time.
pub fn render_cluster(view: &crate::cluster::ClusterView) -> String {
    let mut out = Page::default();
    out.family(
        "sluice_cluster_directory_up",
        "gauge",
        "Whether the stream directory (cluster_redis) answered the last command",
        [(vec![], u64::from(view.up))],
    );
    out.family(
        "sluice_cluster_registered_streams",
        "gauge",
        "Streams this node has registered in the stream directory",
        [(vec![], view.registered as u64)],
    );
    let l = &view.lookups;
    out.family(
        "sluice_cluster_lookups_total",
        "counter",
        "Stream directory lookups by result (found, not_found, failed)",
        [
            (vec![("result", "found")], l.found),
            (vec![("result", "not_found")], l.not_found),
            (vec![("result", "failed")], l.failed),
        ],
    );
    out.family(
        "sluice_cluster_publish_refused_total",
        "counter",
        "Publishes refused because another node publishes the stream",
        [(vec![], view.publishes_refused)],
    );
    out.text
}

/// A page being written.
#[derive(Default)]
struct Page {
    text: String,
}

impl Page {
    /// One family: HELP, TYPE, then a line per label set.
    fn family<'a>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, u64)>,
    ) {
        write_help_line(&mut self.text, name, None, None, help);
        write_type_line(&mut self.text, name, None, None, kind);
        for (labels, value) in samples {
            self.text.push_str(name);
            if !labels.is_empty() {
                self.text.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    let _ = write!(self.text, "{sep}{k}=\"{}\"", sanitize_label_value(v));
                }
                self.text.push('}');
            }
            let _ = writeln!(self.text, " {value}");
        }
        self.text.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{PlayerCounts, ServerStats, StreamStats};

    #[test]
    fn gop_cache_bytes_sum_over_streams() {
        use crate::hub::{Frame, Hub, StreamKey, StreamOptions};
        let hub = Hub::new();
        let opts = StreamOptions { ring_len: 16, gop_cache: true };
        let frame = |key: bool, len: usize| {
            let mut p = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
            p.resize(len, 0);
            Frame::video(0, bytes::Bytes::from(p)).unwrap()
        };
        let a = hub.publish(StreamKey { app: "live".into(), name: "a".into() }, opts).unwrap();
        let b = hub.publish(StreamKey { app: "live".into(), name: "b".into() }, opts).unwrap();
        a.stream().push(frame(true, 1000));
        a.stream().push(frame(false, 100));
        b.stream().push(frame(true, 500));
        assert!(
            render_gop_caches(&hub).lines().any(|l| l == "sluice_gop_cache_bytes 1600"),
            "{}",
            render_gop_caches(&hub)
        );
        // A keyframe starts the cache over.
        a.stream().push(frame(true, 10));
        assert!(render_gop_caches(&hub).lines().any(|l| l == "sluice_gop_cache_bytes 510"));
    }

    fn server() -> ServerStats {
        ServerStats {
            version: "1.2.3",
            pid: 1,
            uptime_s: 5,
            started_unix: 1_700_000_000,
            connections: 0,
            naccepted: 7,
            bytes_in: 1000,
            bytes_out: 2000,
            bw_in: 0,
            bw_out: 0,
            cpu_percent: 0.0,
            memory_bytes: 0,
            streams: 1,
            dropped_frames: [("live".to_owned(), 7)].into(),
            rtmp: Vec::new(),
        }
    }

    fn stream(app: &str, name: &str, live: bool, rtmp: u64, dropped: u64) -> StreamStats {
        StreamStats {
            app: app.into(),
            name: name.into(),
            live,
            dropped_frames: dropped,
            players: PlayerCounts { rtmp, total: rtmp, ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn streams_are_summed_per_application_and_never_named() {
        let snap = Snapshot {
            server: server(),
            streams: vec![
                stream("live", "a", true, 2, 3),
                stream("live", "b", false, 1, 4),
                StreamStats { origin: "rtmp://10.0.0.1:1935/tv/c".into(), ..stream("tv", "c", true, 0, 0) },
            ],
            clients: Vec::new(),
            // Two players of one file (`play`), counted as the application's RTMP players.
            files: vec![crate::stats::FileStats {
                app: "vod".into(),
                name: "film".into(),
                srv: 0,
                players: vec![9, 8],
                bytes_out: 0,
            }],
        };
        let page = render_snapshot(&snap, &Default::default());
        for line in [
            "sluice_build_info{version=\"1.2.3\"} 1",
            "sluice_streams{app=\"live\"} 1",
            "sluice_streams{app=\"tv\"} 1",
            "sluice_pulled_streams{app=\"live\"} 0",
            "sluice_pulled_streams{app=\"tv\"} 1",
            "sluice_players{app=\"live\",protocol=\"rtmp\"} 3",
            "sluice_players{app=\"tv\",protocol=\"http-flv\"} 0",
            "sluice_players{app=\"vod\",protocol=\"rtmp\"} 2",
            "sluice_player_dropped_frames_total{app=\"live\"} 7",
            "sluice_received_bytes_total 1000",
            "sluice_sent_bytes_total 2000",
            "sluice_connections_accepted_total 7",
            "# TYPE sluice_sent_bytes_total counter",
        ] {
            assert!(page.lines().any(|l| l == line), "{line} missing from:\n{page}");
        }
        assert!(["\"a\"", "\"b\"", "\"film\""].iter().all(|n| !page.contains(n)), "no stream names:\n{page}");
    }

    #[test]
    fn label_values_are_escaped() {
        let snap = Snapshot {
            server: server(),
            streams: vec![stream("a\"b\\c\nd", "x", true, 0, 0)],
            clients: Vec::new(),
            files: Vec::new(),
        };
        let page = render_snapshot(&snap, &Default::default());
        assert!(page.contains("sluice_streams{app=\"a\\\"b\\\\c\\nd\"} 1"), "{page}");
    }

    #[test]
    fn callback_results_are_named_by_outcome() {
        assert_eq!(callback_result(&Ok(Reply::Allow)), "ok");
        assert_eq!(callback_result(&Ok(Reply::Redirect("x".into()))), "ok");
        assert_eq!(callback_result(&Ok(Reply::Refuse(403))), "refused");
        assert_eq!(callback_result(&Err(CallError::Timeout(Duration::from_secs(1)))), "timeout");
        assert_eq!(callback_result(&Err(CallError::Unreachable("x".into()))), "error");
    }

    /// Events recorded in this process show on every render, and the recorder survives being
    /// installed again (several servers in one process).
    #[test]
    fn events_are_rendered_from_the_one_recorder() {
        let first = install().expect("no other recorder in the tests");
        assert!(std::ptr::eq(first, install().unwrap()));
        relay_reconnect("unit-test-app", "push");
        hls_segment_written("unit-test-app", Instant::now());
        drop(child_started("unit-test-directive"));
        let page = first.render();
        for line in [
            "sluice_relay_reconnects_total{app=\"unit-test-app\",direction=\"push\"} ",
            "sluice_hls_segments_total{app=\"unit-test-app\"} ",
            "sluice_hls_segment_write_seconds_count{app=\"unit-test-app\"} ",
            "sluice_hls_segment_write_seconds_bucket{app=\"unit-test-app\",le=\"+Inf\"} ",
            "sluice_exec_children_started_total{directive=\"unit-test-directive\"} ",
            "sluice_exec_children{directive=\"unit-test-directive\"} 0",
        ] {
            assert!(page.lines().any(|l| l.starts_with(line)), "{line} missing from:\n{page}");
        }
    }
}

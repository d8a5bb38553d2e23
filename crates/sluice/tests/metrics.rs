//! `/metrics` on the built-in HTTP server, scraped while real clients use the server: ffmpeg
//! publishes (lavfi) to an application with `hls on`, ffmpeg plays it, and a publish to an
//! application whose `on_publish` answers 403 is refused. The page must be valid Prometheus
//! text exposition and count all of that.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::*;

/// One sample line.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses a text exposition (format 0.0.4), asserting what Prometheus's parser requires:
/// valid names, `# TYPE` once per family and before its samples, a family's lines together,
/// label values quoted with only `\\`, `\"` and `\n` escapes, values that are numbers.
fn parse(text: &str) -> Vec<Sample> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    let mut enter = |family: &str, current: &mut Option<String>| {
        if current.as_deref() != Some(family) {
            assert!(!finished.iter().any(|f| f == family), "family {family} is split:\n{text}");
            if let Some(prev) = current.replace(family.to_owned()) {
                finished.push(prev);
            }
        }
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(valid_name(name), "bad HELP line {line:?}");
            enter(name, &mut current);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
            assert!(valid_name(name), "bad TYPE line {line:?}");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "bad type: {line:?}");
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none(), "TYPE twice for {name}");
            enter(name, &mut current);
        } else if line.starts_with('#') {
            continue;
        } else {
            let sample = parse_sample(line);
            let family = family_of(&sample.name, &types);
            assert!(types.contains_key(&family), "{} has no TYPE line before it:\n{text}", sample.name);
            enter(&family, &mut current);
            samples.push(sample);
        }
    }
    samples
}

/// The family a sample belongs to (a histogram's `_bucket`, `_sum`, `_count`).
fn family_of(name: &str, types: &BTreeMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).is_some_and(|t| t == "histogram" || t == "summary") {
                return base.to_owned();
            }
        }
    }
    name.to_owned()
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Sample {
    let end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line:?}"));
    let name = &line[..end];
    assert!(valid_name(name), "bad metric name in {line:?}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        loop {
            let (start, c) = chars.next().unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
            if c == '}' {
                rest = &body[start + 1..];
                break;
            }
            let key_start = if c == ',' { chars.next().unwrap().0 } else { start };
            let eq = body[key_start..].find('=').unwrap_or_else(|| panic!("label without '=': {line:?}")) + key_start;
            let key = &body[key_start..eq];
            assert!(valid_name(key) && !key.contains(':'), "bad label name {key:?} in {line:?}");
            while chars.next().is_some_and(|(i, _)| i < eq) {}
            assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "unquoted label value: {line:?}");
            let mut value = String::new();
            loop {
                match chars.next().unwrap_or_else(|| panic!("unterminated value: {line:?}")).1 {
                    '"' => break,
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    '\n' => panic!("raw newline in {line:?}"),
                    c => value.push(c),
                }
            }
            assert!(labels.insert(key.to_owned(), value).is_none(), "label {key} twice: {line:?}");
        }
    }
    let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no space before the value: {line:?}"));
    let value = match value.trim() {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value {v:?} in {line:?}")),
    };
    Sample { name: name.to_owned(), labels, value }
}

/// The value of `name` with exactly `labels` (histogram buckets: with `le`).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    samples.iter().find(|s| s.name == name && s.labels == want).map(|s| s.value)
}

/// `GET url`: (status, Content-Type, body).
fn scrape(url: &str) -> (u16, String, String) {
    let out = run_timeout(
        Command::new("curl").args(["-s", "-S", "--max-time", "20", "-w", "\n%{http_code}\n%{content_type}"]).arg(url),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rest, content_type) = text.rsplit_once('\n').unwrap_or_default();
    let (body, code) = rest.rsplit_once('\n').unwrap_or_default();
    (code.parse().unwrap_or(0), content_type.to_owned(), body.to_owned())
}

/// A callback server answering every request `403 Forbidden`; its port.
fn refusing_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            let mut request = [0u8; 8192];
            let _ = s.read(&mut request);
            let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    port
}

/// This machine's address on its default route, when it has one (no packet is sent).
fn non_loopback_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

#[test]
fn metrics_count_streams_players_bytes_hls_and_refusals() {
    let hls = TempDir::new("metrics-hls");
    let deny = refusing_backend();
    // Events: a recorder that cannot open its file (its directory is under a regular file), a
    // push whose target refuses connections, an exec_push child.
    let not_a_dir = hls.path("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let dead = free_port();
    let conf = format!(
        "rtmp {{
            http_listen 0.0.0.0:{{http}};
            server {{
                listen 127.0.0.1:{{rtmp}};
                application live {{
                    live on; hls on; hls_path {}; hls_fragment 1s; hls_playlist_length 4s;
                    record all; record_path {}/rec;
                    push rtmp://127.0.0.1:{dead}/x; push_reconnect 200ms;
                    exec_push sleep 30;
                }}
                application gated {{ live on; on_publish http://127.0.0.1:{deny}/auth; }}
            }}
        }}",
        hls.0.display(),
        not_a_dir.display()
    );
    let server = Server::start_conf(&conf);
    let metrics_url = format!("http://127.0.0.1:{}/metrics", server.http_port);
    let rtmp = |app: &str, name: &str| format!("rtmp://127.0.0.1:{}/{app}/{name}", server.port);

    // Refused by on_publish (403): ffmpeg gives up.
    let mut refused = ffmpeg_publish(&rtmp("gated", "nope"), 5, 25);
    wait_timeout(&mut refused.0, Duration::from_secs(20));

    let _publisher = ffmpeg_publish(&rtmp("live", "cam"), 40, 25);
    wait_published(&server, "cam");
    let _player = ffmpeg_play(&rtmp("live", "cam"));

    // Poll until the player, a written HLS segment and the other events show.
    let samples = wait_for("players, HLS segments and events in /metrics", Duration::from_secs(30), || {
        let (status, _, body) = scrape(&metrics_url);
        let samples = parse(&body);
        let at_least_one =
            |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels).is_some_and(|v| v >= 1.0);
        let player = value(&samples, "sluice_players", &[("app", "live"), ("protocol", "rtmp")]) == Some(1.0);
        let events = at_least_one("sluice_hls_segments_total", &[("app", "live")])
            && at_least_one("sluice_relay_reconnects_total", &[("app", "live"), ("direction", "push")])
            && at_least_one("sluice_recorder_errors_total", &[("app", "live"), ("kind", "open")])
            && at_least_one("sluice_exec_children", &[("directive", "exec_push")]);
        (status == 200 && player && events).then_some(samples)
    });
    let (status, content_type, body) = scrape(&metrics_url);
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(body.contains("# HELP sluice_connections ") && body.contains("# TYPE sluice_connections gauge"), "{body}");
    parse(&body);

    let get = |name: &str, labels: &[(&str, &str)]| {
        value(&samples, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{body}"))
    };
    assert_eq!(get("sluice_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert_eq!(get("sluice_streams", &[("app", "live")]), 1.0);
    assert_eq!(get("sluice_connections", &[("app", "live"), ("protocol", "rtmp")]), 2.0, "publisher and player");
    assert_eq!(get("sluice_players", &[("app", "live"), ("protocol", "http-flv")]), 0.0);
    assert!(get("sluice_received_bytes_total", &[]) > 0.0);
    assert!(get("sluice_sent_bytes_total", &[]) > 0.0);
    let written = get("sluice_hls_segment_write_seconds_count", &[("app", "live")]);
    assert!(written >= 1.0);
    assert_eq!(get("sluice_hls_segment_write_seconds_bucket", &[("app", "live"), ("le", "+Inf")]), written);
    assert!(get("sluice_hls_segment_write_seconds_sum", &[("app", "live")]) >= 0.0);
    assert_eq!(get("sluice_access_refused_total", &[("reason", "callback_status")]), 1.0);
    assert_eq!(get("sluice_access_refused_total", &[("reason", "rule")]), 0.0);
    assert_eq!(get("sluice_callbacks_total", &[("call", "publish"), ("result", "refused")]), 1.0);
    assert!(get("sluice_access_accepted_total", &[("stage", "publish")]) >= 1.0);
    assert_eq!(get("sluice_exec_children", &[("directive", "exec_push")]), 1.0);
    assert_eq!(get("sluice_exec_children_started_total", &[("directive", "exec_push")]), 1.0);
    // Nothing is labelled by stream name or client address.
    assert!(samples.iter().all(|s| s.labels.values().all(|v| v != "cam" && v != "nope" && !v.contains("127.0.0.1"))));

    // Loopback-only by default (`http_stats_public off`): another address of this machine is refused.
    if let Some(ip) = non_loopback_ip() {
        let (status, _, _) = scrape(&format!("http://{}/metrics", std::net::SocketAddr::new(ip, server.http_port)));
        assert_eq!(status, 403, "/metrics from {ip}");
    }
}

/// In an `http {}` block, `metrics on;` serves the page in its location, behind the location's
/// `allow`/`deny`; other methods than GET and HEAD get 405.
#[test]
fn metrics_on_serves_a_location_of_an_http_block() {
    let server = Server::start_conf(
        "rtmp { server { listen 127.0.0.1:{rtmp}; application live { live on; } } }
         http { server { listen 127.0.0.1:{http};
             location = /prometheus { metrics on; allow 127.0.0.1; deny all; }
             location = /hidden { metrics on; deny all; }
         } }",
    );
    let base = format!("http://127.0.0.1:{}", server.http_port);
    let (status, content_type, body) = scrape(&format!("{base}/prometheus"));
    assert_eq!((status, content_type.as_str()), (200, "text/plain; version=0.0.4; charset=utf-8"), "{body}");
    let samples = parse(&body);
    assert_eq!(value(&samples, "sluice_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
    assert_eq!(value(&samples, "sluice_access_refused_total", &[("reason", "rule")]), Some(0.0));
    assert_eq!(scrape(&format!("{base}/hidden")).0, 403);
    let post = run_timeout(
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .arg(format!("{base}/prometheus")),
        Duration::from_secs(30),
    );
    assert_eq!(String::from_utf8_lossy(&post.stdout), "405");
}

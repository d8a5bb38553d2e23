//! The 20-second smoke run of the load tool against an in-process sluice: 200 players must all
//! get the stream. It checks the tool and the fan-out for correctness, not speed.

use std::process::Command;
use std::time::Duration;

use sluice::config::Config;
use tokio_util::sync::CancellationToken;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A report of `sluice-bench ARGS... rtmp://127.0.0.1:PORT/live/smoke` against an in-process
/// sluice run from `conf`, with the tool's stdout and stderr for messages.
fn bench(conf: &str, port: u16, label: &str, args: &[&str]) -> (serde_json::Value, String) {
    let config = Config::parse(conf, "smoke.conf").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shutdown = CancellationToken::new();
    let server = rt.spawn(sluice::app::run(config, shutdown.clone()));
    std::thread::sleep(Duration::from_millis(300));

    let json = std::env::temp_dir().join(format!("sluice-bench-{label}-{port}.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args(["--step-secs", "10", "--join-secs", "3", "--probes", "5", "--bitrate", "800k"])
        .args(args)
        .args(["--label", label, "--json"])
        .arg(&json)
        .arg(format!("rtmp://127.0.0.1:{port}/live/smoke"))
        .output()
        .unwrap();
    shutdown.cancel();
    let _ = rt.block_on(server);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = format!("{stdout}\n{stderr}");
    assert!(out.status.success(), "sluice-bench failed:\n{text}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    (report, text)
}

#[test]
fn two_hundred_players_all_keep_up() {
    let port = free_port();
    let conf =
        format!("rtmp {{ http_listen off; server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}");
    let (report, out) = bench(&conf, port, "smoke", &["--players", "200"]);
    let step = &report["steps"][0];
    assert_eq!(step["players"], 200, "{out}");
    assert_eq!(step["failed"], 0, "{out}");
    assert_eq!(step["kept_up"], 200, "every player got the whole stream:\n{out}");
    assert_eq!(step["probes_headers_first"], 5, "probes start with sequence header + keyframe:\n{out}");
    assert!(step["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "SEI latency stamps were read:\n{out}");
    assert!(step["publish_mbps"].as_f64().unwrap() > 0.6, "{out}");
    assert_eq!(report["max_passed"], 200);
}

/// The same over HTTP-FLV (`--http-flv`): 100 players of the built-in HTTP server's
/// `/live/NAME.flv`, and probes that decode the chunked FLV body.
#[test]
fn a_hundred_http_flv_players_all_keep_up() {
    let (port, http) = (free_port(), free_port());
    let conf = format!(
        "rtmp {{ http_listen 127.0.0.1:{http}; server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}"
    );
    let url = format!("http://127.0.0.1:{http}/live/smoke.flv");
    let (report, out) = bench(&conf, port, "smoke-flv", &["--players", "100", "--http-flv", &url]);
    let step = &report["steps"][0];
    assert_eq!(step["failed"], 0, "{out}");
    assert_eq!(step["kept_up"], 100, "every HTTP-FLV player got the whole stream:\n{out}");
    assert_eq!(step["probes_headers_first"], 5, "probes start with sequence header + keyframe:\n{out}");
    assert!(step["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "SEI latency stamps were read:\n{out}");
    assert!(
        step["audio_latency_ms"]["p50"].as_f64().unwrap() > 0.0,
        "audio lined up with the publisher's timestamps though HTTP-FLV starts at 0:\n{out}"
    );
}

/// `--play`: published to one application, played from another that pulls it (an edge; here the
/// same sluice pulling from itself): every player gets the stream and the probes still read the
/// publisher's SEI stamps through the hop.
#[test]
fn players_on_an_edge_get_the_stream_published_to_its_origin() {
    let port = free_port();
    let conf = format!(
        "rtmp {{ http_listen off; server {{ listen 127.0.0.1:{port}; application live {{ live on; }} \
         application edge {{ live on; pull rtmp://127.0.0.1:{port}/live; }} }} }}"
    );
    let edge = format!("rtmp://127.0.0.1:{port}/edge/smoke");
    let (report, out) = bench(&conf, port, "smoke-edge", &["--players", "50", "--play", &edge]);
    let step = &report["steps"][0];
    assert_eq!(step["failed"], 0, "{out}");
    assert_eq!(step["kept_up"], 50, "every player on the edge got the whole stream:\n{out}");
    assert_eq!(step["probes_headers_first"], 5, "probes start with sequence header + keyframe:\n{out}");
    assert!(step["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "SEI latency stamps crossed the hop:\n{out}");
}

/// `--hls` and `--hls --ll-hls`: 5 HLS viewers of sluice's in-memory playlist fetch the step's
/// segments (or their parts, with blocking reloads answered) and keep up.
#[test]
fn hls_viewers_fetch_every_segment_and_keep_up() {
    for ll in [false, true] {
        let (port, http) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("sluice-bench-hls-{port}"));
        let low = if ll { "hls_low_latency on;" } else { "" };
        let conf = format!(
            "rtmp {{ http_listen 127.0.0.1:{http}; server {{ listen 127.0.0.1:{port}; application live {{ live on; \
             hls on; hls_path {}; hls_fragment 1s; {low} }} }} }}",
            dir.display()
        );
        let url = format!("http://127.0.0.1:{http}/{}/smoke.m3u8", dir.file_name().unwrap().to_string_lossy());
        let mut args = vec!["--players", "5", "--step-secs", "8", "--hls", &url];
        if ll {
            args.push("--ll-hls");
        }
        let (report, out) = bench(&conf, port, if ll { "smoke-llhls" } else { "smoke-hls" }, &args);
        let _ = std::fs::remove_dir_all(&dir);
        let step = &report["steps"][0];
        let hls = &step["hls"];
        assert_eq!(step["failed"], 0, "{out}");
        assert!(hls["segments"].as_u64().unwrap() >= 2, "segments appeared during the step:\n{out}");
        assert!(hls["segment_bytes"].as_u64().unwrap() > 0, "{out}");
        assert_eq!(hls["errors"], 0, "{out}");
        assert_eq!(step["kept_up"], 5, "every viewer fetched the step's segments:\n{out}");
        if ll {
            assert!(hls["answers"].as_u64().unwrap() > 0, "blocking reloads were answered:\n{out}");
        }
    }
}

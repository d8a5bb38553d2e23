//! nginx-rtmp's control API `drop` against real clients: ffmpeg publishers and players,
//! curl for the API.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CONF: &str = "rtmp { server { listen 127.0.0.1:{rtmp}; application live { live on; } } }
http { server { listen 127.0.0.1:{http}; location /control { rtmp_control drop redirect; } } }
";

/// `GET path` on the server's http port: (status, body).
fn get(s: &Server, path: &str) -> (u16, String) {
    let url = format!("http://127.0.0.1:{}{path}", s.http_port);
    let out = run_timeout(
        Command::new("curl").args(["-s", "-S", "--max-time", "10", "-w", "\n%{http_code}"]).arg(&url),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

/// `ffmpeg -i URL -f null -`: a real player.
fn ffmpeg_play(url: &str) -> Proc {
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i", url, "-f", "null", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg is installed");
    Proc(child)
}

/// Waits until the log shows a player of `name`.
fn wait_playing(s: &Server, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if s.log().lines().any(|l| l.contains(": play ") && l.contains(&format!("stream={name} "))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{name} was never played; log:\n{}", s.log());
}

/// True once the process exited (within `limit`).
fn exits_within(p: &mut Proc, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = p.0.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn drop_subscriber_then_publisher() {
    let s = Server::start_conf(CONF);
    let mut publisher = ffmpeg_publish(&s.url("x"), 60, 25);
    wait_published(&s, "x");
    let mut player = ffmpeg_play(&s.url("x"));
    wait_playing(&s, "x");

    // Filters that match no one drop no one.
    for q in [
        "subscriber?app=live&name=y",
        "subscriber?app=other&name=x",
        "client?addr=10.9.9.9",
        "client?clientid=999999",
        "publisher?srv=0&name=X",
    ] {
        assert_eq!(get(&s, &format!("/control/drop/{q}")), (200, "0".to_owned()), "{q}");
    }
    assert_eq!(get(&s, "/control/drop/client?srv=1").0, 500, "server index out of range");
    assert_eq!(get(&s, "/control/drop/player").0, 500, "undefined filter");
    let (code, body) = get(&s, "/control/redirect/publisher?app=live&name=x");
    assert_eq!(code, 501);
    assert!(body.contains("redirect is not implemented yet"), "{body}");
    assert!(!exits_within(&mut player, Duration::from_millis(500)), "the player still plays");

    assert_eq!(get(&s, "/control/drop/subscriber?app=live&name=x"), (200, "1".to_owned()));
    assert!(exits_within(&mut player, Duration::from_secs(20)), "the dropped player's ffmpeg exits");
    assert!(!exits_within(&mut publisher, Duration::from_secs(1)), "the publisher goes on");

    assert_eq!(get(&s, "/control/drop/publisher?app=live&name=x&addr=127.0.0.1"), (200, "1".to_owned()));
    assert!(exits_within(&mut publisher, Duration::from_secs(20)), "the dropped publisher's ffmpeg exits");
    assert!(s.log().contains("dropped by control"), "{}", s.log());
    assert_eq!(get(&s, "/control/drop/client").1, "0", "no one is left");
}

#[test]
fn drop_needs_its_rtmp_control_section() {
    let s = Server::start_conf(&CONF.replace("rtmp_control drop redirect", "rtmp_control record"));
    assert_eq!(get(&s, "/control/drop/client").0, 404, "drop is not enabled here: {}", s.log());
}

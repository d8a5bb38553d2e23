//! nginx-rtmp's control API `drop` and `redirect` against real clients: ffmpeg publishers and
//! players, curl for the API, an in-process backend for `on_publish` callbacks.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const CONF: &str = "rtmp { server { listen 127.0.0.1:{rtmp}; application live { live on; } } }
http { server { listen 127.0.0.1:{http}; location /control { rtmp_control drop redirect; } } }
";

/// `GET path` on the server's http port: (status, body); the server must answer.
fn get(s: &Server, path: &str) -> (u16, String) {
    let (code, body) = http_get(s.http_port, path);
    assert_ne!(code, 0, "no answer to GET {path}: {body}");
    (code, body)
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

/// `ffmpeg -i URL -f null -` writing its progress (`frame=N` lines) to `progress`.
fn ffmpeg_play_progress(url: &str, progress: &Path) -> Proc {
    spawn_quiet(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-stats_period", "0.2", "-progress"])
            .arg(progress)
            .args(["-i", url, "-f", "null", "-"]),
        "ffmpeg is installed",
    )
}

/// The last `frame=N` ffmpeg reported in its progress file (0 before the first).
fn frames_played(progress: &Path) -> u64 {
    let text = std::fs::read_to_string(progress).unwrap_or_default();
    text.lines().filter_map(|l| l.strip_prefix("frame=")?.trim().parse().ok()).next_back().unwrap_or(0)
}

/// Waits until the played frame count passes `n`.
fn wait_frames_over(progress: &Path, n: u64, what: &str, s: &Server) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = frames_played(progress);
        if got > n {
            return got;
        }
        assert!(Instant::now() < deadline, "{what}: still {got} frames, not over {n}; log:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the log has a line containing every one of `parts`.
fn wait_log(s: &Server, parts: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if s.log().lines().any(|l| parts.iter().all(|p| l.contains(p))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no log line with {parts:?}; log:\n{}", s.log());
}

/// A real player takes `frames` video frames of `url` and exits cleanly.
fn plays_frames(url: &str, frames: u32) -> bool {
    let out = run_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-rw_timeout", "15000000", "-i", url])
            .args(["-frames:v", &frames.to_string(), "-f", "null", "-"]),
        Duration::from_secs(30),
    );
    out.status.success()
}

/// An `on_publish`/`on_play` (and their `_done`) backend: records each form, refuses (403) the stream
/// named `banned`.
struct Backend {
    port: u16,
    forms: Arc<Mutex<Vec<String>>>,
}

impl Backend {
    fn start() -> Self {
        let forms: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let state = forms.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap().port()).unwrap();
                let app = axum::Router::new().fallback(hook).with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        Backend { port: rx.recv().unwrap(), forms }
    }

    /// Waits for a form with every one of `fields` (`key=value`).
    fn wait_form(&self, fields: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let forms = self.forms.lock().unwrap().clone();
            if let Some(f) = forms.iter().find(|f| fields.iter().all(|kv| f.split('&').any(|x| x == *kv))) {
                return f.clone();
            }
            assert!(Instant::now() < deadline, "no callback with {fields:?}: {forms:#?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn hook(
    axum::extract::State(forms): axum::extract::State<Arc<Mutex<Vec<String>>>>,
    body: String,
) -> axum::http::StatusCode {
    let refuse = body.split('&').any(|kv| kv == "name=banned");
    forms.lock().unwrap().push(body);
    if refuse {
        axum::http::StatusCode::FORBIDDEN
    } else {
        axum::http::StatusCode::OK
    }
}

/// A redirected publisher goes on publishing under the new name: its data lands there (with
/// its sequence headers, so a new player decodes at once), the old name is gone, and the
/// publish chain ran again: `on_publish_done` for the old name, `on_publish` for the new one
/// with the arguments of `newname`, and a new name `on_publish` refuses closes the publisher
/// as its own publish would.
#[test]
fn redirect_publisher_moves_its_stream() {
    let backend = Backend::start();
    let hook = format!("http://127.0.0.1:{}/hook", backend.port);
    let conf = CONF.replace(
        "application live { live on; }",
        &format!("application live {{ live on; on_publish {hook}; on_publish_done {hook}; }}"),
    );
    let s = Server::start_conf(&conf);
    let mut publisher = ffmpeg_publish(&s.url("x"), 60, 25);
    wait_published(&s, "x");

    for q in ["publisher?name=nope&newname=y", "subscriber?name=x&newname=y", "publisher?app=tv&newname=y"] {
        assert_eq!(get(&s, &format!("/control/redirect/{q}")), (200, "0".to_owned()), "{q}");
    }
    assert_eq!(get(&s, "/control/redirect/publisher?app=live&name=x&newname=y%3Fk%3Dv"), (200, "1".to_owned()));
    wait_published(&s, "y");
    backend.wait_form(&["call=publish_done", "name=x"]);
    backend.wait_form(&["call=publish", "name=y", "type=", "k=v"]);
    assert!(s.log().contains("publish redirected by control"), "{}", s.log());

    assert!(plays_frames(&s.url("y"), 30), "a player of the new name gets frames; log:\n{}", s.log());
    assert!(ffprobe_streams(&s.url("y")).contains(&"h264,640,360".to_owned()), "sequence headers came along");
    assert_eq!(get(&s, "/control/redirect/publisher?name=x&newname=z"), (200, "0".to_owned()), "x is gone");
    assert!(!exits_within(&mut publisher, Duration::from_millis(500)), "the publisher goes on");

    // The new name goes through on_publish like any: refused, the publisher is closed.
    assert_eq!(get(&s, "/control/redirect/publisher?name=y&newname=banned"), (200, "1".to_owned()));
    backend.wait_form(&["call=publish", "name=banned"]);
    assert!(exits_within(&mut publisher, Duration::from_secs(20)), "refused by on_publish: closed");
    assert_eq!(get(&s, "/control/drop/client").1, "0", "no one is left");
}

/// A redirected player plays the other stream on the same connection: ffmpeg gets the old
/// stream's Stream EOF, then Stream Begin and Play.Start of the new one, and goes on decoding
/// its frames (it reads on after Stream EOF, as with nginx-rtmp's defaults, `play_restart` and
/// `publish_notify` off; checked against nginx-rtmp 1.2 by hand), after the old stream's
/// publisher is gone too. `on_play_done` reports the old name, `on_play` the new one.
#[test]
fn redirect_subscriber_plays_the_other_stream() {
    let backend = Backend::start();
    let hook = format!("http://127.0.0.1:{}/hook", backend.port);
    let conf = CONF.replace(
        "application live { live on; }",
        &format!("application live {{ live on; on_play {hook}; on_play_done {hook}; }}"),
    );
    let s = Server::start_conf(&conf);
    let mut a = ffmpeg_publish(&s.url("a"), 60, 25);
    let mut b = ffmpeg_publish(&s.url("b"), 60, 25);
    wait_published(&s, "a");
    wait_published(&s, "b");
    let dir = TempDir::new("redirect-sub");
    let progress = dir.path("progress");
    let mut player = ffmpeg_play_progress(&s.url("a"), &progress);
    wait_playing(&s, "a");
    wait_frames_over(&progress, 10, "the player plays a", &s);

    assert_eq!(get(&s, "/control/redirect/subscriber?app=live&name=a&newname=b"), (200, "1".to_owned()));
    wait_log(&s, &["play redirected by control", "stream=a", "to=b"]);
    wait_log(&s, &[": play ", "stream=b "]);
    backend.wait_form(&["call=play_done", "name=a"]);
    backend.wait_form(&["call=play", "name=b", "start=0", "duration=0", "reset=0"]);
    let before = frames_played(&progress);
    a.0.kill().unwrap();
    let _ = a.0.wait();
    wait_frames_over(&progress, before + 50, "the redirected player decodes b's frames", &s);
    assert!(!exits_within(&mut player, Duration::from_millis(200)), "the player goes on");
    assert!(!exits_within(&mut b, Duration::from_millis(10)), "b's publisher is untouched");

    // The registry has the player on b now.
    assert_eq!(get(&s, "/control/drop/subscriber?name=a"), (200, "0".to_owned()));
    assert_eq!(get(&s, "/control/drop/subscriber?name=b"), (200, "1".to_owned()));
    assert!(exits_within(&mut player, Duration::from_secs(20)));
}

/// Bad requests are refused with 500 naming why and touch no client; filters narrow like
/// drop's; `client` moves publishers and players alike.
#[test]
fn redirect_refuses_bad_requests_and_filters_like_drop() {
    let s = Server::start_conf(CONF);
    let mut publisher = ffmpeg_publish(&s.url("x"), 60, 25);
    wait_published(&s, "x");
    let mut player = ffmpeg_play(&s.url("x"));
    wait_playing(&s, "x");

    let long = "a".repeat(129);
    let refused = [
        ("publisher?name=x", "newname not specified"),
        ("client?newname=", "Bad newname: "),
        ("client?newname=../x", "Bad newname: "),
        ("client?newname=..%2Fx", "Bad newname: "),
        ("client?newname=a%0Ab", "Bad newname: "),
        (&format!("client?newname={long}") as &str, "longer than 128 bytes"),
        ("player?newname=y", "Undefined filter"),
        ("client?srv=1&newname=y", "Server index out of range"),
    ];
    for (q, why) in refused {
        let (code, body) = get(&s, &format!("/control/redirect/{q}"));
        assert_eq!(code, 500, "{q}: {body}");
        assert!(body.contains(why), "{q}: {body}");
    }
    for q in [
        "client?app=other&newname=y",
        "client?name=y&newname=z",
        "client?addr=10.9.9.9&newname=y",
        "client?clientid=999999&newname=y",
        "client?clientid=abc&newname=y",
    ] {
        assert_eq!(get(&s, &format!("/control/redirect/{q}")), (200, "0".to_owned()), "{q}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!s.log().contains("redirected by control"), "no client was touched: {}", s.log());
    assert!(
        !exits_within(&mut player, Duration::from_millis(10))
            && !exits_within(&mut publisher, Duration::from_millis(10))
    );

    // Both, by address: the player waits on x2 (idle_streams) until the publisher lands there.
    assert_eq!(get(&s, "/control/redirect/client?app=live&name=x&addr=127.0.0.1&newname=x2"), (200, "2".to_owned()));
    wait_published(&s, "x2");
    wait_log(&s, &[": play ", "stream=x2 "]);
    assert_eq!(get(&s, "/control/drop/publisher?name=x2"), (200, "1".to_owned()));
    assert_eq!(get(&s, "/control/drop/subscriber?name=x2"), (200, "1".to_owned()));
}

//! Relay push against real servers: a second sluice and nginx-rtmp receive what ffmpeg
//! publishes to sluice; the remote name rules; a target killed and restarted; dead and stalled
//! targets that must not slow the local player or the other targets.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ffmpeg_publish, redirecting_backend, run_timeout, wait_published, Proc, Server, TempDir};

/// A sluice on a given port (so it can be restarted on the same one), killed on drop.
struct Target {
    child: Child,
    port: u16,
    dir: TempDir,
    conf: std::path::PathBuf,
}

impl Target {
    fn start(port: u16, apps: &str) -> Target {
        let dir = TempDir::new("relay-target");
        let conf = dir.path("sluice.conf");
        let text = format!("rtmp {{ http_listen off; server {{ listen 127.0.0.1:{port}; {apps} }} }}\n");
        std::fs::File::create(&conf).unwrap().write_all(text.as_bytes()).unwrap();
        let child = spawn_sluice(&conf, &dir.path("sluice.log"));
        let target = Target { child, port, dir, conf };
        wait_listening(port);
        target
    }

    /// Kill it (SIGKILL: the remote vanishes without a goodbye).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again on the same port and configuration, appending to the same log.
    fn restart(&mut self) {
        self.child = spawn_sluice(&self.conf, &self.dir.path("sluice2.log"));
        wait_listening(self.port);
    }

    fn log(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path(n)).unwrap_or_default();
        read("sluice.log") + &read("sluice2.log")
    }

    fn url(&self, app: &str, name: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{app}/{name}", self.port)
    }

    /// Whether the log shows a publish of `app`/`name` (after `skip` bytes of log).
    fn published(&self, app: &str, name: &str, skip: usize) -> bool {
        published_in(&self.log()[skip.min(self.log().len())..], app, name)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.kill();
    }
}

fn published_in(log: &str, app: &str, name: &str) -> bool {
    log.lines().any(|l| {
        l.contains(": publish ") && l.contains(&format!("app={app} ")) && l.contains(&format!("stream={name} "))
    })
}

fn spawn_sluice(conf: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(common::sluice_bin())
        .arg("-c")
        .arg(conf)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start sluice")
}

fn wait_listening(port: u16) {
    poll(&format!("listening on {port}"), Duration::from_secs(15), || TcpStream::connect(("127.0.0.1", port)).is_ok());
}

fn poll(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// nginx with the RTMP module, private prefix, one `live` application.
struct Nginx {
    _proc: Proc,
    port: u16,
    dir: TempDir,
}

impl Nginx {
    fn start() -> Nginx {
        let port = common::free_port();
        let dir = TempDir::new("relay-nginx");
        std::fs::create_dir_all(dir.path("logs")).unwrap();
        let conf = dir.path("nginx.conf");
        let text = format!(
            "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n\
             daemon off;\nmaster_process off;\nworker_processes 1;\n\
             error_log {log} info;\npid {pid};\n\
             events {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}\n",
            log = dir.path("logs/error.log").display(),
            pid = dir.path("nginx.pid").display(),
        );
        std::fs::write(&conf, text).unwrap();
        let prefix = format!("{}/", dir.0.display());
        let child = Command::new("nginx")
            .args(["-e", &dir.path("logs/error.log").display().to_string(), "-p", &prefix, "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (scripts/test installs it)");
        let nginx = Nginx { _proc: Proc(child), port, dir };
        wait_listening(port);
        nginx
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("logs/error.log")).unwrap_or_default()
    }
}

/// Video frames ffprobe reads from `url` in `secs` seconds of stream time.
fn count_video_frames(url: &str, secs: u32) -> u64 {
    let out = run_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rw_timeout",
            "15000000",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-read_intervals",
            &format!("%+{secs}"),
            "-show_entries",
            "stream=codec_name,nb_read_packets",
            "-of",
            "csv=p=0",
            url,
        ]),
        Duration::from_secs(40),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ffprobe {url}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("h264,"), "{url}: {text}");
    text.trim().rsplit(',').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// A local ffmpeg player decoding `url`, noting when each frame arrives.
struct Player {
    _proc: Proc,
    frames: Arc<Mutex<Vec<Instant>>>,
}

impl Player {
    fn start(url: &str) -> Player {
        let mut child = Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "info",
                "-i",
                url,
                "-map",
                "0:v",
                "-vf",
                "showinfo",
                "-f",
                "null",
                "-",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ffmpeg");
        let stderr = child.stderr.take().unwrap();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let seen = frames.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("pts_time:") {
                    seen.lock().unwrap().push(Instant::now());
                }
            }
        });
        Player { _proc: Proc(child), frames }
    }

    fn count(&self) -> usize {
        self.frames.lock().unwrap().len()
    }

    /// The longest time between two frames decoded after `since`.
    fn longest_gap_since(&self, since: Instant) -> Duration {
        let frames = self.frames.lock().unwrap();
        let after: Vec<&Instant> = frames.iter().filter(|t| **t >= since).collect();
        after.windows(2).map(|w| w[1].duration_since(*w[0])).max().unwrap_or(Duration::MAX)
    }
}

/// One ffmpeg publish to sluice reaches a second sluice and nginx-rtmp (`push rtmp://h/live`
/// publishes `live/<name>`), and both serve it to ffprobe. Before: push did nothing.
#[test]
fn push_reaches_a_second_sluice_and_nginx_rtmp() {
    let nginx = Nginx::start();
    let target = Target::start(common::free_port(), "application live { live on; }");
    let origin = Server::start(&format!(
        "push rtmp://127.0.0.1:{}/live; push rtmp://127.0.0.1:{}/live;",
        target.port, nginx.port
    ));
    let _publisher = ffmpeg_publish(&origin.url("cam"), 40, 25);
    wait_published(&origin, "cam");
    poll("the sluice target's publish", Duration::from_secs(20), || target.published("live", "cam", 0));
    let frames = count_video_frames(&target.url("live", "cam"), 3);
    assert!(frames >= 25, "sluice target: {frames} frames in 3 s; origin log:\n{}", origin.log());
    let frames = count_video_frames(&format!("rtmp://127.0.0.1:{}/live/cam", nginx.port), 3);
    assert!(frames >= 25, "nginx target: {frames} frames; nginx log:\n{}\norigin log:\n{}", nginx.log(), origin.log());
    assert!(origin.log().contains("relay push: publishing"), "{}", origin.log());
}

/// `push rtmp://h/live` publishes live/<name>, `push rtmp://h/app/key` publishes key,
/// `$name`/`${name}` and `$args` are filled in, `name=` limits a target to one stream.
#[test]
fn remote_names_follow_nginx_rtmp() {
    let target = Target::start(
        common::free_port(),
        "application live { live on; } application keyed { live on; } application vars { live on; }",
    );
    let p = target.port;
    let origin = Server::start(&format!(
        "push rtmp://127.0.0.1:{p}/live; push rtmp://127.0.0.1:{p}/keyed/thekey;
         push rtmp://127.0.0.1:{p}/vars/${{name}}_v?$args; push rtmp://127.0.0.1:{p}/vars/only name=other;"
    ));
    let _publisher = ffmpeg_publish(&format!("{}?tag=1", origin.url("cam")), 30, 25);
    wait_published(&origin, "cam");
    poll("live/cam, keyed/thekey and vars/cam_v on the target", Duration::from_secs(20), || {
        target.published("live", "cam", 0)
            && target.published("keyed", "thekey", 0)
            && target.published("vars", "cam_v", 0)
    });
    let log = target.log();
    let line = log.lines().find(|l| l.contains(": publish ") && l.contains("stream=cam_v ")).unwrap();
    assert!(line.contains("args=tag=1 "), "$args reached the remote: {line}");
    assert!(count_video_frames(&target.url("keyed", "thekey"), 2) >= 15);
    assert!(!target.published("vars", "only", 0), "name=other does not push cam:\n{log}");
}

/// The target dies and comes back on the same port: the leg publishes again within
/// push_reconnect + 2 s, and a local player never notices (no gap over 1 s).
#[test]
fn a_restarted_target_gets_the_stream_back_and_local_players_never_notice() {
    let mut target = Target::start(common::free_port(), "application live { live on; }");
    let origin = Server::start(&format!("push rtmp://127.0.0.1:{}/live; push_reconnect 1s;", target.port));
    let _publisher = ffmpeg_publish(&origin.url("cam"), 60, 25);
    wait_published(&origin, "cam");
    poll("the first push", Duration::from_secs(20), || target.published("live", "cam", 0));
    let player = Player::start(&origin.url("cam"));
    poll("the local player decoding", Duration::from_secs(20), || player.count() > 25);
    let watched = Instant::now();

    target.kill();
    std::thread::sleep(Duration::from_secs(3));
    target.restart();
    let back = Instant::now();
    let second_log = || std::fs::read_to_string(target.dir.path("sluice2.log")).unwrap_or_default();
    poll("the push to resume", Duration::from_secs(10), || published_in(&second_log(), "live", "cam"));
    let resumed = back.elapsed();
    assert!(
        resumed <= Duration::from_secs(3),
        "resumed {resumed:?} after the target came back (push_reconnect 1s + 2s)"
    );
    assert!(count_video_frames(&target.url("live", "cam"), 2) >= 15, "the restarted target serves the stream");
    let gap = player.longest_gap_since(watched);
    assert!(gap < Duration::from_millis(1200), "the local player stalled {gap:?} while the target was away");
    let log = origin.log();
    let failures = log.lines().filter(|l| l.contains("relay push: failed")).count();
    assert!((1..=8).contains(&failures), "one line per attempt, not a storm: {failures}\n{log}");
}

/// A target that accepts TCP and never answers, and one that stops reading (SIGSTOP) while it
/// receives, slow neither the local player nor the healthy target.
#[test]
fn dead_and_stalled_targets_slow_neither_players_nor_other_targets() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let stalled = Target::start(common::free_port(), "application live { live on; }");
    let healthy = Target::start(common::free_port(), "application live { live on; }");
    let origin = Server::start(&format!(
        "push rtmp://127.0.0.1:{silent_port}/live; push rtmp://127.0.0.1:{}/live; push rtmp://127.0.0.1:{}/live;",
        stalled.port, healthy.port
    ));
    let _publisher = ffmpeg_publish(&origin.url("cam"), 60, 25);
    wait_published(&origin, "cam");
    poll("both real targets publishing", Duration::from_secs(20), || {
        stalled.published("live", "cam", 0) && healthy.published("live", "cam", 0)
    });
    let player = Player::start(&origin.url("cam"));
    poll("the local player decoding", Duration::from_secs(20), || player.count() > 25);
    let _accepted = silent.accept().unwrap();

    let _ = Command::new("kill").args(["-STOP", &stalled.child.id().to_string()]).status();
    let watched = Instant::now();
    // Long enough for the stalled target's socket buffers to fill and the leg's writes to block.
    std::thread::sleep(Duration::from_secs(8));
    let frames = count_video_frames(&healthy.url("live", "cam"), 3);
    assert!(frames >= 25, "the healthy target: {frames} frames in 3 s while another target stalls");
    let gap = player.longest_gap_since(watched);
    assert!(gap < Duration::from_millis(1200), "the local player stalled {gap:?}");
    assert!(player.count() > 200, "the player kept decoding: {}", player.count());
    let _ = Command::new("kill").args(["-CONT", &stalled.child.id().to_string()]).status();
}

/// `GET path` on the server's http port: the body; the server must answer.
fn get_body(s: &Server, path: &str) -> String {
    let (code, body) = common::http_get(s.http_port, path);
    assert_ne!(code, 0, "no answer to GET {path}: {body}");
    body
}

fn count_lines(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

/// A publisher that leaves and comes back while a player keeps the stream alive gets one leg
/// per target again, none left behind; the leg is in the clients registry, so control drops
/// it like a subscriber, and it reconnects after push_reconnect.
#[test]
fn each_publish_gets_one_leg_and_control_drops_it() {
    let target = Target::start(common::free_port(), "application live { live on; }");
    let origin = Server::start_conf(&format!(
        "rtmp {{ server {{ listen 127.0.0.1:{{rtmp}};
            application live {{ live on; push rtmp://127.0.0.1:{}/live; push_reconnect 1s; }} }} }}
         http {{ server {{ listen 127.0.0.1:{{http}}; location /control {{ rtmp_control drop; }} }} }}",
        target.port
    ));
    let first = ffmpeg_publish(&origin.url("cam"), 4, 25);
    wait_published(&origin, "cam");
    let player = Player::start(&origin.url("cam"));
    poll("the first push", Duration::from_secs(20), || target.published("live", "cam", 0));
    poll("the first publisher's end", Duration::from_secs(20), || {
        count_lines(&origin.log(), "relay push: stopped, the publisher left") == 1
    });
    drop(first);
    let _second = ffmpeg_publish(&origin.url("cam"), 60, 25);
    let target = &target;
    let pushes = |n| move || count_lines(&target.log(), ": publish ") == n;
    poll("the second publish pushed", Duration::from_secs(20), pushes(2));
    poll("the player decoding the second publisher", Duration::from_secs(20), || player.count() > 50);
    std::thread::sleep(Duration::from_secs(2));
    let log = target.log();
    assert_eq!(count_lines(&log, "publish refused"), 0, "a leftover leg competed with the new one:\n{log}");

    // The local player and exactly one leg are subscribers of live/cam.
    assert_eq!(get_body(&origin, "/control/drop/subscriber?app=live&name=cam"), "2");
    poll("the dropped leg publishing again", Duration::from_secs(3 + 2), pushes(3));
    let log = origin.log();
    assert!(log.contains("error=dropped by control"), "{log}");
}

/// nginx-rtmp's `on_publish` answering 3xx with an `rtmp://` location: the stream is published
/// locally (with `notify_relay_redirect on`, under the MD5 of the location) and pushed there.
/// Before: the publish was refused ("relays are not implemented").
#[test]
fn on_publish_redirect_to_rtmp_pushes_there() {
    use md5::Digest;
    let target = Target::start(common::free_port(), "application live { live on; }");
    let location = target.url("live", "fromcb");
    let backend = redirecting_backend(location.clone());
    let origin = Server::start(&format!("on_publish http://127.0.0.1:{backend}/publish; notify_relay_redirect on;"));
    let _publisher = ffmpeg_publish(&origin.url("cam"), 30, 25);
    let local: String = md5::Md5::digest(location.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    wait_published(&origin, &local);
    poll("the redirect's push on the target", Duration::from_secs(20), || target.published("live", "fromcb", 0));
    assert!(count_video_frames(&target.url("live", "fromcb"), 2) >= 15, "origin log:\n{}", origin.log());
    assert!(count_video_frames(&origin.url(&local), 2) >= 15, "the local stream is named by the MD5");
}

/// A push to an `rtmps://` target: sluice's own `listen ... ssl` with a self-signed
/// certificate (`relay_tls_verify off`) gets the stream; with verification on, the untrusted
/// certificate is refused and nothing is published there.
#[test]
fn push_over_rtmps_reaches_an_ssl_listener() {
    let certs = TempDir::new("relay-rtmps-cert");
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    std::fs::write(certs.path("cert.pem"), c.cert.pem()).unwrap();
    std::fs::write(certs.path("key.pem"), c.signing_key.serialize_pem()).unwrap();
    let (plain, tls) = (common::free_port(), common::free_port());
    let target = Target::start(
        plain,
        &format!(
            "listen 127.0.0.1:{tls} ssl; ssl_certificate {}; ssl_certificate_key {}; application live {{ live on; }} application strict {{ live on; }}",
            certs.path("cert.pem").display(),
            certs.path("key.pem").display()
        ),
    );
    let origin = Server::start_with(
        "",
        &format!(
            "application live {{ live on; push rtmps://127.0.0.1:{tls}/live; relay_tls_verify off; }}
             application checked {{ live on; push rtmps://127.0.0.1:{tls}/strict; }}"
        ),
    );
    let _publisher = ffmpeg_publish(&origin.url("cam"), 30, 25);
    let _checked = ffmpeg_publish(&format!("rtmp://{}/checked/cam", origin.addr()), 30, 25);
    wait_published(&origin, "cam");
    poll("the push over rtmps", Duration::from_secs(20), || target.published("live", "cam", 0));
    assert!(count_video_frames(&target.url("live", "cam"), 2) >= 15, "origin log:\n{}", origin.log());
    poll("the verified leg's certificate error", Duration::from_secs(20), || {
        origin
            .log()
            .lines()
            .any(|l| l.contains("relay push") && l.contains("app=checked") && l.to_lowercase().contains("certificate"))
    });
    assert!(!target.published("strict", "cam", 0), "an untrusted certificate must not be accepted:\n{}", target.log());
}

//! Log files with real clients: `access_log` lines (nginx-rtmp's formats) for ffmpeg
//! publishers and ffprobe players, `error_log` to a file at a level, and both reopened on
//! SIGUSR1 the way logrotate does it.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(30);

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The file's lines once `ok` holds for them (panics with the file after [`WAIT`]).
fn lines_when(path: &Path, ok: impl Fn(&[&str]) -> bool) -> Vec<String> {
    let text = wait_for(&format!("{} to fill", path.display()), WAIT, || {
        let text = read(path);
        ok(&text.lines().collect::<Vec<_>>()).then_some(text)
    });
    text.lines().map(str::to_owned).collect()
}

/// Publishes `name` (with `query`) to `app` for 3 s with ffmpeg, plays it once with ffprobe
/// (and with curl over HTTP-FLV, with `flv_query`, when given), and waits for the publisher
/// to finish.
fn publish_and_probe(server: &Server, app: &str, name: &str, query: &str, flv_query: Option<&str>) {
    let url = format!("rtmp://127.0.0.1:{}/{app}/{name}", server.port);
    let mut publisher = ffmpeg_publish(&format!("{url}{query}"), 3, 25);
    wait_published(server, name);
    assert!(!ffprobe_streams(&url).is_empty(), "ffprobe saw the stream");
    if let Some(q) = flv_query {
        let flv = format!("http://127.0.0.1:{}/{app}/{name}.flv{q}", server.http_port);
        let _ = run_timeout(Command::new("curl").args(["-s", "-o", "/dev/null", "--max-time", "1", &flv]), WAIT);
    }
    wait_timeout(&mut publisher.0, WAIT).expect("the publisher finishes");
}

/// A number field of a line split on spaces.
fn number(line: &str, field: usize) -> u64 {
    let words: Vec<&str> = line.split(' ').collect();
    words[field].parse().unwrap_or_else(|_| panic!("field {field} of {line:?} is not a number"))
}

/// ffmpeg publishes, ffprobe plays and curl plays over HTTP-FLV: each session ends with one
/// line in each of its application's access logs: nginx-rtmp's `combined` and a custom format
/// with the other variables. Secrets in `$args` are redacted; an application with `access_log
/// off` writes nothing; a server-level `access_log` is replaced by the application's own.
#[test]
fn access_log_lines_for_ffmpeg_publish_and_play() {
    let dir = TempDir::new("access-log");
    let (combined, custom, server_log) = (dir.path("access.log"), dir.path("custom.log"), dir.path("server.log"));
    let server = Server::start_conf(&format!(
        "rtmp {{ server {{ listen 127.0.0.1:{{rtmp}}; access_log {};
            log_format custom '$connection|$remote_addr|$app|$name|$args|$command|' \
                              '$bytes_received|$bytes_sent|$tcurl|$swfurl|$session_time|$time_local';
            application live {{ live on; access_log {}; access_log {} custom; }}
            application quiet {{ live on; access_log off; }} }} }}
        http {{ server {{ listen 127.0.0.1:{{http}}; location / {{ flv_live on; }} }} }}",
        server_log.display(),
        combined.display(),
        custom.display()
    ));
    publish_and_probe(&server, "quiet", "hush", "", None);
    publish_and_probe(&server, "live", "cam", "?token=s3cret&x=1", Some("?pass=hunter2&y=2"));

    let all_three = |l: &[&str]| {
        l.iter().any(|l| l.contains(" PUBLISH "))
            && l.iter().any(|l| l.contains(" PLAY ") && l.contains("LNX"))
            && l.iter().any(|l| l.contains(" PLAY ") && l.contains("curl/"))
    };
    let lines = lines_when(&combined, all_three);
    assert_eq!(lines.len(), 3, "one line per session: {lines:?}");
    let publish = lines.iter().find(|l| l.contains(" PUBLISH ")).unwrap();
    let play = lines.iter().find(|l| l.contains(" PLAY ") && l.contains("LNX")).unwrap();
    let flv = lines.iter().find(|l| l.contains("curl/")).unwrap();
    assert!(flv.contains("] PLAY \"live\" \"cam\" \"pass=***&y=2\" - "), "HTTP-FLV, the User-Agent as flashver: {flv}");
    // $remote_addr [$time_local] $command "$app" "$name" "$args" - $bytes_received $bytes_sent
    // "$pageurl" "$flashver" ($session_readable_time)
    assert!(publish.starts_with("127.0.0.1 ["), "{publish}");
    assert!(publish.contains("] PUBLISH \"live\" \"cam\" \"token=***&x=1\" - "), "{publish}");
    assert!(publish.contains("\"FMLE/3.0 (compatible; Lavf"), "ffmpeg's flashver: {publish}");
    assert!(publish.ends_with("s)"), "{publish}");
    let after_dash = |l: &str| l.split(" - ").nth(1).unwrap().to_owned();
    assert!(number(&after_dash(publish), 0) > 50_000, "the publisher sent 3 s of video: {publish}");
    assert!(play.contains("] PLAY \"live\" \"cam\" \"\" - "), "{play}");
    assert!(number(&after_dash(play), 1) > 1000, "the player was sent media: {play}");

    let custom = lines_when(&custom, |l| l.len() == 3);
    let publish = custom.iter().find(|l| l.contains("|PUBLISH|")).expect("a publish line");
    let f: Vec<&str> = publish.split('|').collect();
    assert_eq!(f.len(), 12, "{publish}");
    assert!(f[0].parse::<u64>().unwrap() > 0, "$connection: {publish}");
    assert_eq!(&f[1..6], ["127.0.0.1", "live", "cam", "token=***&x=1", "PUBLISH"], "{publish}");
    assert!(f[6].parse::<u64>().unwrap() > 50_000 && f[7].parse::<u64>().unwrap() > 0, "{publish}");
    assert_eq!(f[8], format!("rtmp://127.0.0.1:{}/live", server.port), "$tcurl: {publish}");
    assert!((2..30).contains(&f[10].parse::<u64>().unwrap()), "$session_time of a 3 s publish: {publish}");
    assert!(f[11].contains('/') && f[11].contains(':'), "$time_local: {publish}");

    let all = [read(&dir.path("access.log")), read(&dir.path("custom.log")), read(&server_log)].concat();
    assert!(!all.contains("s3cret") && !all.contains("hunter2"), "no secret in any access log:\n{all}");
    assert!(!all.contains("hush") && !all.contains("quiet"), "access_log off writes nothing:\n{all}");
    // The harness's probes for the listening port connect to no application: the server
    // level's access_log has them (command NONE), and only them.
    let probes = read(&server_log);
    assert!(probes.lines().all(|l| l.contains("] NONE \"\" \"\" \"\" - ")), "{probes}");
}

/// `sluice -c FILE` with RUST_LOG as given (unset: `error_log`'s level decides).
fn spawn(conf: &Path, rust_log: Option<&str>) -> Child {
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("-c").arg(conf).env_remove("RUST_LOG");
    if let Some(level) = rust_log {
        cmd.env("RUST_LOG", level);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start sluice")
}

/// sluice with `error_log`, one `live` application with `app` in it, and RUST_LOG unset.
fn start_own(dir: &TempDir, error_log: &str, app: &str) -> Server {
    start_own_env(dir, error_log, app, None)
}

fn start_own_env(dir: &TempDir, error_log: &str, app: &str, rust_log: Option<&str>) -> Server {
    let port = free_port();
    let conf = dir.path("sluice.conf");
    let text = format!(
        "error_log {error_log};\nrtmp {{ http_listen off; server {{ listen 127.0.0.1:{port}; application live {{ live on; {app} }} }} }}\n"
    );
    std::fs::write(&conf, text).unwrap();
    let child = spawn(&conf, rust_log);
    let server = Server { child, port, http_port: 0, dir: TempDir::new("own") };
    wait_for("sluice to listen", WAIT, || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    server
}

/// Waits until the error log shows `name` published (what `wait_published` does with stderr).
fn wait_published_in(log: &Path, name: &str) {
    let needle = format!("stream={name} ");
    wait_for(&format!("{name} published"), WAIT, || {
        read(log).lines().any(|l| l.contains(": publish ") && l.contains(&needle)).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
}

fn publish_once(server: &Server, log: &Path, name: &str) {
    let mut publisher = ffmpeg_publish(&server.url(name), 2, 25);
    wait_published_in(log, name);
    wait_timeout(&mut publisher.0, WAIT).expect("the publisher finishes");
}

/// `error_log FILE info` sends events there (nothing to stderr); `warn` leaves info out.
#[test]
fn error_log_goes_to_its_file_at_its_level() {
    let dir = TempDir::new("error-log");
    let info = dir.path("info.log");
    let own = start_own(&dir, &format!("{} info", info.display()), "");
    publish_once(&own, &info, "cam");
    let text = read(&info);
    assert!(text.contains(" INFO ") && text.contains("listening on"), "{text}");

    let quiet_dir = TempDir::new("error-log-warn");
    let warn = quiet_dir.path("warn.log");
    let own = start_own(&quiet_dir, &format!("{} warn", warn.display()), "");
    let mut publisher = ffmpeg_publish(&own.url("cam"), 2, 25);
    wait_timeout(&mut publisher.0, WAIT).expect("the publisher finishes");
    assert!(warn.exists(), "the file is created at start");
    let text = read(&warn);
    assert!(!text.contains(" INFO "), "warn level: no info lines:\n{text}");

    let env_dir = TempDir::new("error-log-env");
    let debug = env_dir.path("debug.log");
    let _own = start_own_env(&env_dir, &format!("{} error", debug.display()), "", Some("debug"));
    let debug_lines = || {
        let text = read(&debug);
        (text.contains(" DEBUG ") && text.contains("listening on")).then_some(())
    };
    wait_for("RUST_LOG to decide over error_log (debug lines in the file)", WAIT, debug_lines);
}

/// logrotate's way: rename the files, send SIGUSR1; sluice creates the files again under their
/// names and writes there, and nothing more goes to the renamed ones.
#[test]
fn sigusr1_reopens_error_and_access_logs() {
    let dir = TempDir::new("reopen");
    let (error, access) = (dir.path("error.log"), dir.path("access.log"));
    let own = start_own(&dir, &format!("{} info", error.display()), &format!("access_log {};", access.display()));
    publish_once(&own, &error, "one");
    lines_when(&access, |l| l.iter().any(|l| l.contains("\"one\"")));

    let (error_old, access_old) = (dir.path("error.log.1"), dir.path("access.log.1"));
    std::fs::rename(&error, &error_old).unwrap();
    std::fs::rename(&access, &access_old).unwrap();
    let kill = Command::new("kill").args(["-USR1", &own.child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    wait_for("the error log reopened", WAIT, || read(&error).contains("log files reopened").then_some(()));
    assert!(access.exists(), "the access log is created again at once");

    publish_once(&own, &error, "two");
    lines_when(&access, |l| l.iter().any(|l| l.contains("\"two\"")));
    assert!(!read(&access).contains("\"one\""), "the new access log starts empty");
    assert!(!read(&access_old).contains("\"two\""), "nothing more in the renamed access log");
    assert!(read(&error_old).contains("stream=one "), "{}", read(&error_old));
    assert!(!read(&error_old).contains("stream=two "), "nothing more in the renamed error log");
}

/// A log file that cannot be opened fails `-t` and start-up, naming the file.
#[test]
fn unopenable_log_files_fail_the_test_naming_them() {
    let dir = TempDir::new("log-open");
    for conf in [
        "error_log /nonexistent-dir/error.log;\nrtmp { server { listen 127.0.0.1:1; } }\n",
        "rtmp { server { listen 127.0.0.1:1; access_log /nonexistent-dir/error.log; } }\n",
    ] {
        let path = dir.path("sluice.conf");
        std::fs::write(&path, conf).unwrap();
        let out = run_timeout(Command::new(sluice_bin()).arg("-t").arg("-c").arg(&path), WAIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{conf}: {stderr}");
        assert!(stderr.contains("\"/nonexistent-dir/error.log\": cannot open"), "{conf}: {stderr}");
        assert!(stderr.contains("test failed"), "{stderr}");
    }
}

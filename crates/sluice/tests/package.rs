//! The Debian package (`scripts/package`) installed on this machine with `dpkg -i`, its unit's
//! commands run by hand as the `sluice` user, and purged; and the Dockerfile's image, built and
//! run when a container engine answers.
//!
//! The package test changes the machine (a package, a system user, /var/lib/sluice): it runs
//! as root with dpkg only (CI), and is skipped with a message otherwise; as root with dpkg under
//! `CI=true` a missing tool is a failure, not a skip. It purges a `sluice` package a previous run left installed, and purges
//! what it installed even when it fails.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const UNIT: &str = "/lib/systemd/system/sluice.service";
const CONF: &str = "/etc/sluice/sluice.conf";
const STREAM: &str = "pkgtest";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn on_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this machine can run the package test: root with dpkg. Without them it is skipped
/// with a message; with them the other tools it needs must be there on CI (scripts/test
/// installs them), and missing ones skip it, with a message, elsewhere only.
fn can_run_package_test() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !have("dpkg") || !have("dpkg-deb") {
        eprintln!("skipped: the package test needs root and dpkg (it installs the package with dpkg -i)");
        return false;
    }
    let missing: Vec<&str> =
        ["setpriv", "systemd-analyze", "ffmpeg", "ffprobe", "curl"].into_iter().filter(|p| !have(p)).collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("the package test needs {} (scripts/test installs them)", missing.join(", "));
    assert!(!on_ci(), "{why}");
    eprintln!("skipped: {why}");
    false
}

/// Runs `cmd` (at most 2 minutes); panics with its output unless it succeeds. Its stdout and stderr.
fn run_ok(cmd: &mut Command) -> (String, String) {
    let out = run_timeout(cmd, Duration::from_secs(120));
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{stdout}\n{stderr}", out.status);
    (stdout, stderr)
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", "sluice"])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"installed")
}

fn purge() {
    let _ = run_timeout(Command::new("dpkg").args(["--purge", "sluice"]), Duration::from_secs(120));
}

/// Purges the package when dropped, so a failing test leaves the machine as it found it.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        purge();
    }
}

/// `sluice`'s (uid, gid, home, shell) from the passwd database.
fn sluice_user() -> Option<(u32, u32, String, String)> {
    let out = Command::new("getent").args(["passwd", "sluice"]).output().ok()?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let f: Vec<&str> = line.split(':').collect();
    (out.status.success() && f.len() == 7)
        .then(|| (f[2].parse().unwrap(), f[3].parse().unwrap(), f[5].to_owned(), f[6].to_owned()))
}

/// The value of `key=` in the unit file (the first one).
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key}= in {UNIT}:\n{unit}"))
        .to_owned()
}

/// A command line of the unit (no quoting in ours) run as the unit's `User=`/`Group=`, as
/// systemd would (setpriv execs: the child is sluice itself, and signals reach it).
fn as_sluice(command_line: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=sluice", "--regid=sluice", "--init-groups", "--"]).args(command_line.split_whitespace());
    cmd
}

fn owner_uid(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).uid()
}

#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Commands(&'a [String]),
    Signal(libc::c_int),
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill with a pid of our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0, "kill({pid}, {sig})");
}

#[test]
fn deb_installs_runs_as_its_user_and_purges_cleanly() {
    let started = Instant::now();
    if !can_run_package_test() {
        return;
    }
    // A previous run's package, and its user: postinst must make the user again.
    if installed() {
        purge();
    }
    if sluice_user().is_some_and(|(_, _, home, _)| home == "/var/lib/sluice") {
        run_ok(Command::new("deluser").args(["--system", "--quiet", "sluice"]));
        // deluser may have taken the group with the user.
        let _ = Command::new("delgroup").args(["--system", "--quiet", "sluice"]).output();
    }

    let tmp = TempDir::new("package");
    // The debug binary this test binary was built with: no release build for the test.
    let (stdout, _) = run_ok(
        Command::new(workspace().join("scripts/package"))
            .args(["--binary", sluice_bin(), "--compress", "gzip", "--out-dir"])
            .arg(&tmp.0),
    );
    let deb = PathBuf::from(stdout.lines().last().expect("scripts/package prints the .deb").trim());
    let (arch, _) = run_ok(Command::new("dpkg").arg("--print-architecture"));
    let name = format!("sluice_{}_{}.deb", env!("CARGO_PKG_VERSION"), arch.trim());
    assert_eq!(deb.file_name().unwrap().to_string_lossy(), name, "{deb:?}");

    let guard = Installed;
    run_ok(Command::new("dpkg").arg("-i").arg(&deb));
    check_installed_files();
    let (uid, gid) = check_user_and_dirs();
    check_unit();
    check_logrotate();
    check_reinstall_keeps_changes(&deb, uid);
    serve_as_the_unit_would(&tmp, uid, gid);

    drop(guard);
    check_purged();
    eprintln!("package test took {:?}", started.elapsed());
}

fn check_installed_files() {
    for (path, mode) in [
        ("/usr/bin/sluice", 0o755),
        (CONF, 0o644),
        (UNIT, 0o644),
        ("/etc/logrotate.d/sluice", 0o644),
        ("/usr/share/man/man8/sluice.8.gz", 0o644),
        ("/usr/share/doc/sluice/copyright", 0o644),
        ("/usr/share/doc/sluice/changelog.Debian.gz", 0o644),
    ] {
        let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!((meta.permissions().mode() & 0o7777, meta.uid()), (mode, 0), "{path}'s mode and owner");
    }
    let seed = std::fs::read_to_string(workspace().join("packaging/sluice.conf")).unwrap();
    assert_eq!(std::fs::read_to_string(CONF).unwrap(), seed, "the seed configuration");
    let (conffiles, _) = run_ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "sluice"]));
    assert!(conffiles.contains(CONF), "{CONF} is a conffile: {conffiles}");
    let (page, _) = run_ok(Command::new("zcat").arg("/usr/share/man/man8/sluice.8.gz"));
    assert!(page.contains(&format!("\"sluice {}\"", env!("CARGO_PKG_VERSION"))), "the man page's version");
    if have("man") {
        let (text, warnings) =
            run_ok(Command::new("man").args(["--warnings", "-l", "/usr/share/man/man8/sluice.8.gz"]));
        assert!(text.contains("SIGQUIT") && warnings.is_empty(), "man sluice: {warnings}");
    }
    let (version, _) = run_ok(Command::new("/usr/bin/sluice").arg("-V"));
    assert_eq!(version.trim(), format!("sluice {}", env!("CARGO_PKG_VERSION")));
}

/// The system user postinst made, and the directories it owns; (uid, gid).
fn check_user_and_dirs() -> (u32, u32) {
    let (uid, gid, home, shell) = sluice_user().expect("postinst creates the sluice user");
    assert!(uid < 1000, "a system user: uid {uid}");
    assert_eq!((home.as_str(), shell.as_str()), ("/var/lib/sluice", "/usr/sbin/nologin"));
    for dir in ["/var/lib/sluice", "/var/lib/sluice/hls", "/var/lib/sluice/recordings", "/var/log/sluice"] {
        let meta = std::fs::metadata(dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert!(meta.is_dir(), "{dir}");
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{dir} belongs to sluice");
    }
    (uid, gid)
}

fn check_unit() {
    // verify runs `man sluice(8)` for Documentation= (the page must be installed) where man is.
    let mut verify = Command::new("systemd-analyze");
    if !have("man") {
        eprintln!("man is not installed: systemd-analyze verify --man=no");
        verify.arg("--man=no");
    }
    let (_, stderr) = run_ok(verify.args(["verify", UNIT]));
    // Unknown keys and bad values are warnings (exit 0): none may name the unit.
    assert!(!stderr.contains("sluice.service"), "systemd-analyze verify {UNIT}:\n{stderr}");
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for line in [
        "User=sluice",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGQUIT",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/sluice /var/log/sluice",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} in {UNIT}");
    }
    // deb-systemd-helper enabled it, as Debian packages do.
    assert!(Path::new("/etc/systemd/system/multi-user.target.wants/sluice.service").exists(), "the unit is enabled");
}

/// Installing again (an upgrade runs the same scripts) keeps the user, the data and an
/// administrator's change to the conffile.
fn check_reinstall_keeps_changes(deb: &Path, uid: u32) {
    let seed = std::fs::read_to_string(CONF).unwrap();
    let changed = seed.replace("hls_fragment 3s;", "hls_fragment 2s;");
    assert_ne!(changed, seed, "the seed sets hls_fragment");
    std::fs::write(CONF, &changed).unwrap();
    std::fs::write("/var/lib/sluice/recordings/kept.flv", "data").unwrap();
    run_ok(Command::new("dpkg").arg("-i").arg(deb));
    assert_eq!(std::fs::read_to_string(CONF).unwrap(), changed, "the changed conffile is kept");
    assert_eq!(sluice_user().map(|u| u.0), Some(uid), "the same sluice user");
    assert!(Path::new("/var/lib/sluice/recordings/kept.flv").exists(), "recordings are kept");
    std::fs::remove_file("/var/lib/sluice/recordings/kept.flv").unwrap();
    std::fs::write(CONF, seed).unwrap();
}

/// logrotate accepts the file and rotates a log, when logrotate is installed (the package only
/// recommends it); the postrotate's `systemctl kill` finds no systemd here and stays quiet.
fn check_logrotate() {
    if !have("logrotate") {
        assert!(!on_ci(), "scripts/test installs logrotate");
        eprintln!("skipped: /etc/logrotate.d/sluice not tried, logrotate is not installed");
        return;
    }
    std::fs::write("/var/log/sluice/test.log", "a line\n").unwrap();
    let state = TempDir::new("logrotate-state");
    let (_, stderr) = run_ok(
        Command::new("logrotate").args(["--force", "--state"]).arg(state.path("status")).arg("/etc/logrotate.d/sluice"),
    );
    assert!(stderr.is_empty(), "logrotate: {stderr}");
    assert!(Path::new("/var/log/sluice/test.log.1").exists(), "rotated (delaycompress: .1 stays plain)");
}

/// The unit's ExecStartPre and ExecStart as the `sluice` user; publish, play over RTMP and
/// HLS; the signals systemd and logrotate send.
fn serve_as_the_unit_would(tmp: &TempDir, uid: u32, gid: u32) {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let (_, stderr) = run_ok(&mut as_sluice(&unit_value(&unit, "ExecStartPre")));
    assert!(stderr.contains("test is successful") && !stderr.contains("warn"), "sluice -t on the seed: {stderr}");

    // The installed configuration, on ports this test picked (tests never use fixed ports:
    // 1935 and 8080 may be taken here, and tests run in parallel), copied where the sluice
    // user can read it; everything else (hls_path, record_path in /var/lib/sluice) as installed.
    let (rtmp_port, http_port) = (free_port(), free_port());
    let installed = std::fs::read_to_string(CONF).unwrap();
    let conf = installed
        .replace("listen 1935;", &format!("listen 127.0.0.1:{rtmp_port};"))
        .replace("http_listen 8080;", &format!("http_listen 127.0.0.1:{http_port};"));
    assert_eq!(conf.matches(&format!(":{rtmp_port};")).count() + conf.matches(&format!(":{http_port};")).count(), 2);
    let conf_path = tmp.path("sluice.conf");
    std::fs::write(&conf_path, conf).unwrap();
    std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&conf_path, std::fs::Permissions::from_mode(0o644)).unwrap();

    let start = unit_value(&unit, "ExecStart").replace(CONF, &conf_path.to_string_lossy());
    let log_path = tmp.path("sluice.log");
    let mut server = Proc(
        as_sluice(&start)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("start sluice as the unit does"),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let pid = server.0.id();
    for port in [rtmp_port, http_port] {
        wait_for(&format!("sluice listening on {port}"), Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }
    assert_eq!(std::fs::metadata(format!("/proc/{pid}")).unwrap().uid(), uid, "sluice runs as the sluice user");

    let url = format!("rtmp://127.0.0.1:{rtmp_port}/live/{STREAM}");
    let publisher = ffmpeg_publish_pattern(&url, "320x240", 60, 25);
    wait_for("the publisher", Duration::from_secs(20), || {
        log().lines().any(|l| l.contains(": publish ") && l.contains(&format!("stream={STREAM} "))).then_some(())
    });
    assert_eq!(ffprobe_streams(&url), ["aac", "h264,320,240"], "played over RTMP; log:\n{}", log());
    let segment = wait_for("an HLS playlist with a segment", Duration::from_secs(30), || {
        let (status, body) = http_get(http_port, &format!("/hls/{STREAM}.m3u8"));
        if status != 200 {
            return None;
        }
        body.lines().find(|l| l.ends_with(".ts")).map(str::to_owned)
    });
    let ts = tmp.path("segment.ts");
    let (code, _) = run_ok(Command::new("curl").args(["-s", "-o"]).arg(&ts).args([
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{http_port}/hls/{segment}"),
    ]));
    let bytes = std::fs::read(&ts).unwrap();
    assert_eq!(code, "200");
    assert!(bytes.len() > 188 && bytes[0] == 0x47, "an MPEG-TS segment over HTTP: {} bytes", bytes.len());

    let data = Path::new("/var/lib/sluice");
    for path in [data.join(format!("hls/{STREAM}.m3u8")), data.join(format!("hls/{segment}"))] {
        assert_eq!((owner_uid(&path), std::fs::metadata(&path).unwrap().gid()), (uid, gid), "{}", path.display());
    }
    let recording = wait_for("a recording", Duration::from_secs(10), || {
        std::fs::read_dir(data.join("recordings"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{STREAM}-")))
    });
    assert!(file_exists_nonempty(&recording) && owner_uid(&recording) == uid, "{}", recording.display());

    // systemctl reload runs the unit's ExecReload lines (`sluice -t`, then SIGHUP to $MAINPID);
    // logrotate's postrotate sends SIGUSR1. sluice keeps running and serving after each.
    let conf_arg = conf_path.to_string_lossy();
    let reload: Vec<String> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ExecReload="))
        .map(|l| l.replace(CONF, &conf_arg).replace("$MAINPID", &pid.to_string()))
        .collect();
    assert_eq!(reload.len(), 2, "ExecReload: sluice -t, then kill -HUP: {reload:?}");
    for step in [Step::Commands(&reload), Step::Signal(libc::SIGUSR1)] {
        let before = log().len();
        match step {
            Step::Commands(lines) => lines.iter().for_each(|line| drop(run_ok(&mut as_sluice(line)))),
            Step::Signal(sig) => signal(pid, sig),
        }
        // Whatever the server logs about it, give it the time to (not) die.
        let deadline = Instant::now() + Duration::from_secs(2);
        while log().len() == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(server.0.try_wait().unwrap().is_none(), "sluice survives {step:?}; log:\n{}", log());
        assert!(std::net::TcpStream::connect(("127.0.0.1", rtmp_port)).is_ok(), "still listening after {step:?}");
    }
    let log_text = log();
    assert!(log_text.contains("reload: configuration applied"), "systemctl reload reloads; log:\n{log_text}");
    assert!(log_text.contains("log files reopened"), "SIGUSR1 reopens the logs; log:\n{log_text}");

    // systemctl stop (SIGQUIT, KillSignal=): a clean exit, the recording closed.
    drop(publisher);
    signal(pid, libc::SIGQUIT);
    let status = wait_timeout(&mut server.0, Duration::from_secs(30)).expect("sluice exits on SIGQUIT");
    assert!(status.success(), "exit status {status} after SIGQUIT; log:\n{}", log());
    // The seed configuration's access log got the publisher's session.
    let access = std::fs::read_to_string("/var/log/sluice/access.log").unwrap_or_default();
    assert!(access.contains("] PUBLISH \"live\""), "the publisher's line in /var/log/sluice/access.log: {access:?}");
}

fn check_purged() {
    assert!(!installed(), "dpkg --purge sluice removed the package");
    for path in [
        "/usr/bin/sluice",
        "/etc/sluice",
        UNIT,
        "/etc/logrotate.d/sluice",
        "/usr/share/man/man8/sluice.8.gz",
        "/usr/share/doc/sluice",
        "/var/lib/sluice",
        "/var/log/sluice",
        "/etc/systemd/system/multi-user.target.wants/sluice.service",
        "/etc/systemd/system/sluice.service",
    ] {
        assert!(std::fs::symlink_metadata(path).is_err(), "{path} is gone after the purge");
    }
    // Debian custom (see packaging/debian/postrm): the system user stays.
    assert!(sluice_user().is_some(), "the sluice user stays after the purge");
}

/// `docker` or `podman`, whichever answers (its daemon running, for docker).
fn container_engine() -> Option<&'static str> {
    ["docker", "podman"].into_iter().find(|engine| {
        Command::new(engine).arg("info").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    })
}

/// Removes the test's container and image when dropped.
struct Image<'a> {
    engine: &'a str,
    tag: String,
    container: String,
}

impl Drop for Image<'_> {
    fn drop(&mut self) {
        let _ = Command::new(self.engine).args(["rm", "-f", &self.container]).output();
        let _ = Command::new(self.engine).args(["rmi", "-f", &self.tag]).output();
    }
}

/// The Dockerfile builds an image that runs as a non-root user, serves RTMP and HLS on the
/// ports it exposes and stops cleanly on `docker stop`. The image build compiles sluice in
/// release mode: minutes.
#[test]
fn docker_image_builds_and_serves() {
    let Some(engine) = container_engine() else {
        eprintln!("skipped: the Dockerfile test needs docker (with its daemon running) or podman");
        return;
    };
    let tag = format!("sluice-test:{}", std::process::id());
    let image = Image { engine, container: format!("sluice-test-{}", std::process::id()), tag: tag.clone() };
    let out = run_timeout(Command::new(engine).args(["build", "-t", &tag]).arg(workspace()), Duration::from_secs(3600));
    assert!(out.status.success(), "{engine} build: {}", String::from_utf8_lossy(&out.stderr));

    let (rtmp_port, http_port) = (free_port(), free_port());
    run_ok(Command::new(engine).args([
        "run",
        "-d",
        "--name",
        &image.container,
        "-p",
        &format!("127.0.0.1:{rtmp_port}:1935"),
        "-p",
        &format!("127.0.0.1:{http_port}:8080"),
        &tag,
    ]));
    let (user, _) = run_ok(Command::new(engine).args(["exec", &image.container, "id", "-u"]));
    assert_ne!(user.trim(), "0", "the image runs sluice as a non-root user");

    wait_for("the container's HTTP server", Duration::from_secs(30), || {
        (http_get(http_port, "/healthz").0 == 200).then_some(())
    });
    let url = format!("rtmp://127.0.0.1:{rtmp_port}/live/{STREAM}");
    let _publisher = ffmpeg_publish_pattern(&url, "320x240", 60, 25);
    wait_for("an HLS playlist from the container", Duration::from_secs(40), || {
        let (status, body) = http_get(http_port, &format!("/hls/{STREAM}.m3u8"));
        (status == 200 && body.contains(".ts")).then_some(())
    });
    assert_eq!(ffprobe_streams(&url), ["aac", "h264,320,240"]);

    // docker stop sends the image's STOPSIGNAL (SIGQUIT): a clean exit, not a kill.
    run_ok(Command::new(engine).args(["stop", "-t", "30", &image.container]));
    let (code, _) = run_ok(Command::new(engine).args(["inspect", "-f", "{{.State.ExitCode}}", &image.container]));
    assert_eq!(code.trim(), "0", "exit code after {engine} stop");
}

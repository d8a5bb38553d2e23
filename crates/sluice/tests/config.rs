//! The configuration as the user meets it: `sluice -t` on a Debian-style layout with includes,
//! the warnings about directives that have no effect, the start banner, and players of
//! features that are configured but not implemented.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use rtmp::{ClientEvent, Role};
use sluice::client::RtmpClient;

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let path = dir.path(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `sluice -t -c FILE`: exit code and stderr.
fn check(path: &str) -> (i32, String) {
    // RUST_LOG=error: the inert report must not depend on the log level.
    let out = run_timeout(
        Command::new(sluice_bin()).args(["-t", "-c", path]).env("RUST_LOG", "error"),
        Duration::from_secs(10),
    );
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn sluice_t_follows_includes_and_names_inert_directives() {
    let dir = TempDir::new("conf-t");
    write(&dir, "modules-enabled/50-mod-rtmp.conf", "load_module modules/ngx_rtmp_module.so;\n");
    let rtmp = write(
        &dir,
        "rtmp.conf",
        "rtmp {\n    server {\n        listen 1935;\n        include rtmp.d/*.conf;\n    }\n}\n",
    );
    let apps = write(
        &dir,
        "rtmp.d/live.conf",
        "application live {\n    live on;\n    dash_repetition on;\n    play /tmp/vod;\n    hls on;\n    hls_path /tmp/hls;\n    hls_variant _hi BANDWIDTH=1000;\n}\n",
    );
    let main = write(
        &dir,
        "nginx.conf",
        "user www-data;\ninclude modules-enabled/*.conf;\nevents { }\ninclude rtmp.conf;\nrtmp_auto_push on;\n",
    );
    let (code, stderr) = check(&main);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    // `play` acts (VOD): no warning for it.
    assert!(!stderr.contains("\"play\" has no effect"), "{stderr}");
    let warning = "sluice: [warn] \"dash_repetition\" has no effect: ";
    let found = lines.iter().find(|l| l.starts_with(warning)).unwrap_or_else(|| panic!("dash_repetition: {stderr}"));
    assert!(found.ends_with(&format!(" in {apps}:3")), "{found}");
    let summary =
        format!("sluice: 2 directives have no effect yet: dash_repetition ({apps}:3), rtmp_auto_push (line 5)");
    assert!(lines.contains(&summary.as_str()), "{stderr}");
    assert_eq!(lines.last(), Some(&format!("sluice: configuration file {main} test is successful").as_str()));

    // Errors in included files name the file and line.
    write(&dir, "rtmp.d/live.conf", "application live {\n    live on;\n    record all;\n}\n");
    let (code, stderr) = check(&main);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr
            .contains(&format!("{apps}:1:1: application \"live\": \"record\" records but \"record_path\" is not set")),
        "recording without record_path is a -t error: {stderr}"
    );
    assert!(stderr.contains("test failed"), "{stderr}");

    // Relative paths resolve against the main file's directory, as nginx's conf prefix.
    write(&dir, "rtmp.d/live.conf", "include rtmp.conf;\n");
    let (code, stderr) = check(&main);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("{apps}:1:1: include cycle: \"{rtmp}\" is already being read")), "{stderr}");
}

/// The log once it contains `text` (sluice prints its banner just after it listens).
fn wait_for_log(server: &Server, text: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let log = server.log();
        if log.contains(text) {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no {text:?} in the log:\n{}", server.log());
}

/// The first status a client gets: code and description.
async fn first_status(server: &Server, app: &str, role: Role) -> (String, String) {
    let mut c = RtmpClient::connect(server.addr(), app, role).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(15), c.next_event()).await {
            Err(_) => panic!("no status within 15 s (the player waits); log:\n{}", server.log()),
            Ok(Ok(ClientEvent::Status { code, description, .. })) => return (code, description),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("connection ended without a status: {e}; log:\n{}", server.log()),
        }
    }
}

/// sluice with an HLS application and a VOD application.
fn server_with_missing_features(hls_dir: &TempDir) -> Server {
    let apps = format!(
        "application live {{ live on; hls on; hls_path {}; }}
         application vod {{ play /var/videos; }}",
        hls_dir.path("hls").display()
    );
    Server::start_with("", &apps)
}

#[test]
fn start_up_warns_about_inert_directives_and_prints_the_hls_url() {
    let hls_dir = TempDir::new("conf-hls");
    let server = server_with_missing_features(&hls_dir);
    let log = wait_for_log(&server, "health:");
    // `play` acts (VOD): nothing to warn about.
    assert!(!log.contains("has no effect"), "{log}");
    let hls = format!("  hls:     http://127.0.0.1:{}/hls/STREAM.m3u8", server.http_port);
    assert!(log.contains(&hls), "the banner gives the HLS URL: {log}");
}

#[tokio::test]
async fn players_of_missing_features_are_told() {
    let hls_dir = TempDir::new("conf-hls");
    let server = server_with_missing_features(&hls_dir);
    // A file no `play` location has (VOD, `vod.rs` has the rest).
    let (code, description) = first_status(&server, "vod", Role::Play("movie.mp4".into())).await;
    assert_eq!(code, "NetStream.Play.StreamNotFound");
    assert_eq!(description, "Video on demand stream not found");
}

/// `sluice -T -c FILE`: exit code, stdout and stderr.
fn dump(path: &str) -> (i32, String, String) {
    let out = run_timeout(
        Command::new(sluice_bin()).args(["-T", "-c", path]).env("RUST_LOG", "error"),
        Duration::from_secs(10),
    );
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn sluice_capital_t_prints_the_effective_configuration() {
    let dir = TempDir::new("conf-T");
    write(&dir, "apps.conf", "application live {\n    live on;\n    hls_fragment 2s;\n}\n");
    let main = write(
        &dir,
        "sluice.conf",
        "events { }\nrtmp {\n    chunk_size 8192;\n    server {\n        listen 1935;\n        include apps.conf;\n    }\n}\n",
    );
    let (code, stdout, stderr) = dump(&main);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("configuration file {main} test is successful")), "{stderr}");
    assert!(stdout.contains("        chunk_size 8192;  # inherited\n"), "{stdout}");
    assert!(stdout.contains("        application live {\n            live on;\n"), "the include is expanded: {stdout}");
    assert!(
        stdout.contains("            hls_fragment 2s;\n            # hls_max_fragment: 10 × hls_fragment (default)\n")
    );
    // What it prints is a configuration that passes -t.
    let effective = write(&dir, "effective.conf", &stdout);
    let (code, stderr) = check(&effective);
    assert_eq!(code, 0, "{stderr}");

    write(&dir, "apps.conf", "application live {\n    live maybe;\n}\n");
    let (code, stdout, stderr) = dump(&main);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "", "nothing printed for an invalid file");
    let apps = dir.path("apps.conf").display().to_string();
    assert!(
        stderr.contains(&format!("{apps}:2:10: invalid value \"maybe\" in \"live\" directive")),
        "the error names file, line and column: {stderr}"
    );
    assert!(stderr.contains("test failed"), "{stderr}");
}

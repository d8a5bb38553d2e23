//! Reload and process control against the real binary: SIGHUP and `sluice -s reload` re-read
//! the configuration while publishers and players (ffmpeg) stay connected; an invalid file
//! is refused with its position; added applications and addresses work at once; a changed
//! setting applies to the next stream; removed applications end their streams; `pid`,
//! `-s quit` (graceful) and `-s stop` (fast).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{curl, ffmpeg_publish_pattern, free_port, run_timeout, sluice_bin, wait_for, wait_timeout, Proc, Server};
use serde_json::Value;

/// The configuration file of `server`, rewritten from `template` (`{rtmp}`, `{http}` as at
/// start, `{dir}` its directory, `{rtmp2}` a second port).
fn rewrite(server: &Server, template: &str, rtmp2: u16) {
    let text = template
        .replace("{rtmp}", &server.port.to_string())
        .replace("{http}", &server.http_port.to_string())
        .replace("{rtmp2}", &rtmp2.to_string())
        .replace("{dir}", &server.dir.0.display().to_string());
    std::fs::write(server.dir.path("sluice.conf"), text).unwrap();
}

fn hup(server: &Server) {
    // SAFETY: kill(2) on our child's pid.
    assert_eq!(unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) }, 0);
}

/// How many times the log says `needle`.
fn count(server: &Server, needle: &str) -> usize {
    server.log().matches(needle).count()
}

fn wait_log(server: &Server, needle: &str, times: usize) {
    wait_for(&format!("{times}x {needle:?} in the log"), Duration::from_secs(20), || {
        (count(server, needle) >= times).then_some(())
    });
}

/// `GET /api/v1/clients` of the built-in server: id → the client's JSON.
fn clients(server: &Server) -> BTreeMap<u64, Value> {
    let (status, body) = curl(&format!("http://127.0.0.1:{}/api/v1/clients", server.http_port));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let list = v["clients"].as_array().cloned().unwrap_or_default();
    list.into_iter().map(|c| (c["id"].as_u64().unwrap(), c)).collect()
}

/// A player that copies the stream without decoding it (cheap enough for fifty).
fn copy_player(url: &str) -> Proc {
    common::ffmpeg_quiet(&["-i", url, "-c", "copy", "-f", "null", "-"])
}

const BASE: &str = "rtmp {
  http_listen 127.0.0.1:{http};
  server {
    listen 127.0.0.1:{rtmp};
    application live { live on; }
  }
}
";

#[test]
fn fifty_players_and_two_publishers_stay_through_ten_reloads() {
    // The streams also write HLS and recordings, which must go on untouched.
    let out = common::TempDir::new("reloadout");
    let outputs = format!(
        "live on; hls on; hls_path {0}/hls; hls_fragment 1s; record all; record_path {0}/rec;",
        out.0.display()
    );
    let base = BASE.replace("live on;", &outputs);
    let server = Server::start_conf(&base);
    let _publishers: Vec<Proc> =
        ["a", "b"].iter().map(|n| ffmpeg_publish_pattern(&server.url(n), "160x120", 90, 25)).collect();
    common::wait_published(&server, "a");
    common::wait_published(&server, "b");
    let mut players: Vec<Proc> =
        (0..50).map(|i| copy_player(&server.url(if i % 2 == 0 { "a" } else { "b" }))).collect();
    let playing = |c: &Value| c["role"] == "player" && c["bytes_out"].as_u64().unwrap_or(0) > 0;
    let before = wait_for("52 clients, 50 of them receiving", Duration::from_secs(60), || {
        let list = clients(&server);
        (list.len() == 52 && list.values().filter(|c| playing(c)).count() == 50).then_some(list)
    });
    let ids: BTreeSet<u64> = before.keys().copied().collect();
    for i in 1..=10 {
        // Each reload changes something: a new application, an HLS setting of `live` itself.
        let extra = format!("application extra{i} {{ live on; }}");
        let text = base.replace(
            &format!("application live {{ {outputs} }}"),
            &format!("application live {{ {outputs} sync {i}0ms; }}\n    {extra}"),
        );
        assert_ne!(text, base);
        rewrite(&server, &text, 0);
        hup(&server);
        wait_log(&server, "reload: configuration applied", i);
        std::thread::sleep(Duration::from_millis(300));
    }
    let after = clients(&server);
    assert_eq!(after.keys().copied().collect::<BTreeSet<_>>(), ids, "every client stayed connected");
    // Every player kept receiving: more bytes and a later timestamp than before the reloads.
    let later = wait_for("every player to receive more", Duration::from_secs(20), || {
        let now = clients(&server);
        ids.iter()
            .filter(|id| before[id]["role"] == "player")
            .all(|id| {
                now[id]["bytes_out"].as_u64() > before[id]["bytes_out"].as_u64()
                    && now[id]["timestamp"].as_u64() > before[id]["timestamp"].as_u64()
            })
            .then_some(now)
    });
    assert_eq!(later.len(), 52);
    for p in &mut players {
        assert!(p.0.try_wait().unwrap().is_none(), "an ffmpeg player exited");
    }
    // One recording per stream (a reload that restarted the recorder would have opened a
    // second file), and playlists that never broke.
    let recordings = std::fs::read_dir(out.path("rec")).unwrap().count();
    assert_eq!(recordings, 2, "one recording per stream");
    for name in ["a", "b"] {
        let playlist = std::fs::read_to_string(out.path(&format!("hls/{name}.m3u8"))).unwrap();
        assert!(playlist.contains("#EXTINF") && !playlist.contains("DISCONTINUITY"), "{playlist}");
    }
}

#[test]
fn invalid_configuration_is_refused_with_its_position_and_the_old_one_keeps_serving() {
    let server = Server::start_conf(BASE);
    rewrite(&server, &BASE.replace("live on;", "live on;\n    bogus_directive on;"), 0);
    hup(&server);
    wait_log(&server, "reload refused", 1);
    let log = server.log();
    let line = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(line.contains("sluice.conf:6:5:"), "file:line:col named: {line}");
    assert!(line.contains("unknown directive \"bogus_directive\""), "{line}");
    // Still serving with the old configuration.
    let _p = ffmpeg_publish_pattern(&server.url("still"), "160x120", 10, 25);
    common::wait_published(&server, "still");
}

#[test]
fn reload_adds_applications_and_addresses_and_applies_changes_to_new_streams_only() {
    let hls_conf = |fragment: &str, apps: &str| {
        format!(
            "rtmp {{\n  http_listen 127.0.0.1:{{http}};\n  server {{\n    listen 127.0.0.1:{{rtmp}};\n    {{listen2}}\n    application live {{ live on; hls on; hls_path {{dir}}/hls; hls_fragment {fragment}; hls_playlist_length 5s; }}\n    {apps}\n  }}\n}}\n"
        )
    };
    let hls = common::TempDir::new("reloadhls");
    let hls_conf = |fragment: &str, apps: &str| hls_conf(fragment, apps).replace("{dir}", &hls.0.display().to_string());
    let server = Server::start_conf(&hls_conf("1s", "").replace("{listen2}", ""));
    let rtmp2 = free_port();
    let _old = ffmpeg_publish_pattern(&server.url("old"), "160x120", 60, 25);
    let playlist = |name: &str| std::fs::read_to_string(hls.path(&format!("hls/{name}.m3u8"))).ok();
    let target = |text: &str| -> u64 {
        let line = text.lines().find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:")).unwrap();
        line.trim().parse().unwrap()
    };
    wait_for("the old stream's playlist", Duration::from_secs(30), || playlist("old").filter(|p| p.contains(".ts")));

    // New settings for `live`, a new application and a second address.
    let conf =
        hls_conf("4s", "application fresh { live on; }").replace("{listen2}", &format!("listen 127.0.0.1:{rtmp2};"));
    rewrite(&server, &conf, rtmp2);
    hup(&server);
    wait_log(&server, "reload: configuration applied", 1);
    assert!(server.log().contains("application changed"), "{}", server.log());
    let fresh = format!("rtmp://127.0.0.1:{rtmp2}/fresh/f");
    let _f = ffmpeg_publish_pattern(&fresh, "160x120", 30, 25);
    wait_log(&server, "app=fresh stream=f", 1);
    let probe = common::ffprobe_streams(&fresh);
    assert!(probe.iter().any(|s| s.starts_with("h264")) && probe.iter().any(|s| s.starts_with("aac")), "{probe:?}");
    let _new = ffmpeg_publish_pattern(&server.url("new"), "160x120", 60, 25);
    let new = wait_for("two segments of the new stream", Duration::from_secs(40), || {
        playlist("new").filter(|p| p.matches(".ts").count() >= 2)
    });
    assert!(target(&new) >= 4, "hls_fragment 4s applies to the stream published after the reload:\n{new}");
    let old = playlist("old").unwrap();
    assert!(target(&old) <= 2, "the running stream keeps hls_fragment 1s:\n{old}");

    // Removing `live` ends its streams: their playlists end, their publishers are dropped.
    let conf = hls_conf("4s", "").replace("application live", "application other").replace("{listen2}", "");
    rewrite(&server, &conf, rtmp2);
    hup(&server);
    wait_log(&server, "reload: configuration applied", 2);
    assert!(server.log().contains("application removed; its streams end"), "{}", server.log());
    // As when a publisher leaves: the playlist ends once hls_playlist_length passes without it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(playlist("old").unwrap_or_default().contains("#EXT-X-ENDLIST")
        && playlist("new").unwrap_or_default().contains("#EXT-X-ENDLIST"))
    {
        assert!(Instant::now() < deadline, "the removed application's playlists end:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The address removed from the configuration is closed.
    wait_for("the second address to close", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", rtmp2)).is_err().then_some(())
    });
}

fn signal(conf: &std::path::Path, what: &str) -> std::process::Output {
    run_timeout(Command::new(sluice_bin()).args(["-s", what, "-c"]).arg(conf), Duration::from_secs(10))
}

#[test]
fn pid_file_and_dash_s_reload_reopen_quit() {
    let template = "pid {dir}/sluice.pid;\nworker_shutdown_timeout 2s;\n".to_string() + BASE;
    let dir = common::TempDir::new("pidconf");
    // The pid path must exist before start: write it into the template for this server.
    let template = template.replace("{dir}", &dir.0.display().to_string());
    let mut server = Server::start_conf(&template);
    let conf = server.dir.path("sluice.conf");
    let pid_path = dir.path("sluice.pid");
    let pid = wait_for("the pid file", Duration::from_secs(10), || std::fs::read_to_string(&pid_path).ok());
    assert_eq!(pid.trim(), server.child.id().to_string());

    let out = signal(&conf, "reload");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_log(&server, "reload: configuration applied", 1);
    let out = signal(&conf, "reopen");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_log(&server, "SIGUSR1", 1);

    // quit: no new connections at once; a connected publisher may stay up to 2s, then goes.
    let _p = ffmpeg_publish_pattern(&server.url("q"), "160x120", 60, 25);
    common::wait_published(&server, "q");
    let asked = Instant::now();
    let out = signal(&conf, "quit");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_log(&server, "graceful stop: no new connections", 1);
    wait_for("the listener to close", Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err().then_some(())
    });
    let status = wait_timeout(&mut server.child, Duration::from_secs(20)).expect("sluice exits after quit");
    assert!(status.success(), "{status:?}");
    assert!(asked.elapsed() >= Duration::from_secs(2), "the publisher was given worker_shutdown_timeout");
    assert!(server.log().contains("closing the clients still connected"), "{}", server.log());
    assert!(!pid_path.exists(), "the pid file is removed at exit");

    // Nothing runs now: -s says so.
    let out = signal(&conf, "stop");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pid file"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn dash_s_stop_is_fast_and_dash_s_needs_a_pid_directive() {
    let dir = common::TempDir::new("pidstop");
    let template = format!("pid {}/s.pid;\nworker_shutdown_timeout 60s;\n{BASE}", dir.0.display());
    let mut server = Server::start_conf(&template);
    let conf = server.dir.path("sluice.conf");
    let _p = ffmpeg_publish_pattern(&server.url("s"), "160x120", 60, 25);
    common::wait_published(&server, "s");
    wait_for("the pid file", Duration::from_secs(10), || dir.path("s.pid").exists().then_some(()));
    let asked = Instant::now();
    let out = signal(&conf, "stop");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = wait_timeout(&mut server.child, Duration::from_secs(20)).expect("sluice exits after stop");
    assert!(status.success(), "{status:?}");
    assert!(asked.elapsed() < Duration::from_secs(10), "a fast stop does not wait for the publisher");
    assert!(server.log().contains("fast shutdown"), "{}", server.log());

    rewrite(&server, BASE, 0);
    let out = signal(&conf, "reload");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no \"pid\" directive"), "{err}");
}

#[test]
fn exec_static_runs_on_through_reloads_that_do_not_change_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = common::TempDir::new("reloadexec");
    let script = dir.path("static.sh");
    std::fs::write(&script, format!("#!/bin/sh\necho $$ >> {}\nexec sleep 600\n", dir.path("pids").display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let with_exec = |line: &str| BASE.replace("  server {", &format!("  {line}\n  server {{"));
    let line = format!("exec_static {};", script.display());
    let server = Server::start_conf(&with_exec(&line));
    let pids = || std::fs::read_to_string(dir.path("pids")).unwrap_or_default().lines().count();
    wait_for("exec_static to start", Duration::from_secs(10), || (pids() == 1).then_some(()));
    // A reload that changes an application but not exec_static: the same child runs on.
    rewrite(&server, &with_exec(&line).replace("live on;", "live on; idle_streams off;"), 0);
    hup(&server);
    wait_log(&server, "reload: configuration applied", 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pids(), 1, "exec_static was not restarted:\n{}", server.log());
    // A reload that changes exec_static's line restarts it.
    rewrite(&server, &with_exec(&format!("exec_static {} restarted;", script.display())), 0);
    hup(&server);
    wait_log(&server, "reload: configuration applied", 2);
    wait_for("exec_static to restart", Duration::from_secs(10), || (pids() == 2).then_some(()));
}

/// A callback backend that answers `200` after `delay`; its port and a count of requests.
fn slow_backend(delay: Duration) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = asked.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = s.read(&mut [0u8; 8192]);
                std::thread::sleep(delay);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            });
        }
    });
    (port, asked)
}

#[test]
fn a_client_connected_before_its_application_was_removed_cannot_publish_there() {
    // `on_connect` holds the client's connect while the reload removes its application.
    let (port, asked) = slow_backend(Duration::from_secs(3));
    let conf = BASE.replace(
        "listen 127.0.0.1:{rtmp};",
        &format!("listen 127.0.0.1:{{rtmp}};\n    on_connect http://127.0.0.1:{port}/connect;"),
    );
    let server = Server::start_conf(&conf);
    let mut publisher = ffmpeg_publish_pattern(&server.url("gone"), "160x120", 20, 25);
    wait_for("the connect callback", Duration::from_secs(10), || {
        (asked.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    });
    rewrite(&server, &conf.replace("application live", "application other"), 0);
    hup(&server);
    wait_log(&server, "reload: configuration applied", 1);
    wait_log(&server, "the application was removed by a reload", 1);
    let status = wait_timeout(&mut publisher.0, Duration::from_secs(15)).expect("ffmpeg gives up");
    assert!(!status.success(), "the publish was refused");
    assert!(!server.log().contains("publish client="), "nothing was published:\n{}", server.log());
}

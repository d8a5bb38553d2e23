//! exec against real processes: shell scripts that note their pid and arguments in a temp
//! directory, ffmpeg publishing, sluice started and killed as a binary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{alive, ffmpeg_publish, run_timeout, sluice_bin, wait_for, wait_timeout, Server, TempDir};

/// A script that appends `PID [arg1][arg2]...` to `out`, then (with `stay`) sleeps as the
/// same process, so the noted pid is the child sluice manages.
fn script(dir: &TempDir, name: &str, out: &Path, stay: bool) -> PathBuf {
    let path = dir.path(name);
    let tail = if stay { "exec sleep 1000" } else { "" };
    let text = format!(
        "#!/bin/sh\nline=\"$$\"\nfor a in \"$@\"; do line=\"$line [$a]\"; done\necho \"$line\" >> {}\n{tail}\n",
        out.display()
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The lines the script wrote so far: (pid, "[a] [b]").
fn noted(out: &Path) -> Vec<(i32, String)> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines()
        .map(|l| {
            let (pid, args) = l.split_once(' ').unwrap_or((l, ""));
            (pid.parse().unwrap(), args.to_string())
        })
        .collect()
}

fn kill(pid: i32, sig: &str) {
    Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
}

fn url(server: &Server, app: &str, name: &str) -> String {
    format!("rtmp://127.0.0.1:{}/{app}/{name}", server.port)
}

#[test]
fn a_managed_child_runs_while_its_stream_is_published() {
    let dir = TempDir::new("exec-push");
    let out = dir.path("push.log");
    let prog = script(&dir, "push.sh", &out, true);
    let server = Server::start(&format!(
        "exec_push {} $name $name_low ${{name}}x $app $args $tcurl $flashver $nosuch;",
        prog.display()
    ));
    let mut ffmpeg = ffmpeg_publish(&url(&server, "live", "cam?k=v"), 4, 25);
    let (pid, args) = wait_for("the exec_push child", Duration::from_secs(20), || noted(&out).pop());
    assert!(alive(pid));
    let tcurl = format!("rtmp://127.0.0.1:{}/live", server.port);
    assert!(
        args.starts_with(&format!("[cam] [cam_low] [camx] [live] [k=v] [{tcurl}] [")),
        "variables substituted: {args}"
    );
    assert!(args.ends_with("] []"), "an unknown variable is an empty argument: {args}");
    wait_timeout(&mut ffmpeg.0, Duration::from_secs(30)).expect("ffmpeg ends");
    wait_for("the unpublish", Duration::from_secs(10), || server.log().contains("unpublish").then_some(()));
    let unpublished = Instant::now();
    wait_for("the child to be gone", Duration::from_secs(1), || (!alive(pid)).then_some(()));
    assert!(unpublished.elapsed() < Duration::from_secs(1));
    assert_eq!(noted(&out).len(), 1, "started once");
    let log = server.log();
    assert!(log.contains("exec_push app=live stream=cam: started"), "{log}");
}

#[test]
fn a_killed_child_respawns_after_respawn_timeout() {
    let dir = TempDir::new("exec-respawn");
    let out = dir.path("push.log");
    let prog = script(&dir, "push.sh", &out, true);
    let server = Server::start_with(
        "respawn_timeout 2s;",
        &format!("application live {{ live on; exec {} $name; }}", prog.display()),
    );
    let _ffmpeg = ffmpeg_publish(&url(&server, "live", "cam"), 30, 25);
    let (first, _) = wait_for("the first child", Duration::from_secs(20), || noted(&out).pop());
    kill(first, "KILL");
    let killed = Instant::now();
    let (second, args) = wait_for("the respawned child", Duration::from_secs(15), || noted(&out).into_iter().nth(1));
    let after = killed.elapsed();
    assert!(after >= Duration::from_millis(1800), "respawned after {after:?}, before respawn_timeout");
    assert!(after < Duration::from_secs(10), "respawned after {after:?}");
    assert_ne!(first, second);
    assert_eq!(args, "[cam]");
    assert!(alive(second));
}

#[test]
fn no_child_survives_sigkill_of_sluice() {
    let dir = TempDir::new("exec-static");
    let (static_out, push_out) = (dir.path("static.log"), dir.path("push.log"));
    let static_prog = script(&dir, "static.sh", &static_out, true);
    let push_prog = script(&dir, "push.sh", &push_out, true);
    let mut server = Server::start_conf(&format!(
        "rtmp {{ exec_static {} static $name \\x; server {{ listen 127.0.0.1:{{rtmp}}; application live {{ live on; exec_push {} $name; }} }} }}\nhttp {{ server {{ listen 127.0.0.1:{{http}}; }} }}\n",
        static_prog.display(),
        push_prog.display()
    ));
    let (static_pid, args) = wait_for("exec_static at start", Duration::from_secs(10), || noted(&static_out).pop());
    assert_eq!(args, "[static] [$name] [\\x]", "exec_static substitutes nothing");
    let _ffmpeg = ffmpeg_publish(&url(&server, "live", "cam"), 30, 25);
    let (push_pid, _) = wait_for("the exec_push child", Duration::from_secs(20), || noted(&push_out).pop());
    assert!(alive(static_pid) && alive(push_pid));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    wait_for("the children to die with sluice", Duration::from_secs(3), || {
        (!alive(static_pid) && !alive(push_pid)).then_some(())
    });
}

#[test]
fn static_children_stop_on_graceful_shutdown() {
    let dir = TempDir::new("exec-static-term");
    let out = dir.path("static.log");
    let prog = script(&dir, "static.sh", &out, true);
    let mut server = Server::start_with(&format!("exec_static {};", prog.display()), "application live { live on; }");
    let (pid, _) = wait_for("exec_static at start", Duration::from_secs(10), || noted(&out).pop());
    assert!(server.terminate().success());
    assert!(!alive(pid), "stopped before sluice exited");
}

#[test]
fn record_done_gets_the_file_variables() {
    let dir = TempDir::new("exec-record");
    let out = dir.path("done.log");
    let prog = script(&dir, "done.sh", &out, false);
    let rec = dir.path("rec");
    std::fs::create_dir_all(&rec).unwrap();
    let server = Server::start(&format!(
        "record all; record_path {rec}; exec_record_done {p} $path $filename $basename $dirname [$recorder] $name $app;
         recorder audio {{ record audio; record_suffix .a.flv; exec_record_done {p} audio $recorder $filename; }}",
        rec = rec.display(),
        p = prog.display()
    ));
    let mut ffmpeg = ffmpeg_publish(&url(&server, "live", "cam"), 2, 25);
    wait_timeout(&mut ffmpeg.0, Duration::from_secs(30)).expect("ffmpeg ends");
    let lines = wait_for("three exec_record_done runs", Duration::from_secs(15), || {
        let l = noted(&out);
        (l.len() >= 3).then_some(l)
    });
    let mut args: Vec<String> = lines.into_iter().map(|(_, a)| a).collect();
    args.sort();
    let r = rec.display();
    let mut expected = [
        "[audio] [audio] [cam.a.flv]".to_string(),
        format!("[{r}/cam.a.flv] [cam.a.flv] [cam.a] [{r}] [[audio]] [cam] [live]"),
        format!("[{r}/cam.flv] [cam.flv] [cam] [{r}] [[]] [cam] [live]"),
    ];
    expected.sort();
    assert_eq!(args, expected, "the recorder's own line, then the application's for each file");
}

#[test]
fn hostile_names_and_args_stay_single_arguments() {
    let dir = TempDir::new("exec-hostile");
    let out = dir.path("pub.log");
    let prog = script(&dir, "pub.sh", &out, false);
    let server = Server::start(&format!(
        "exec_publish {p} $name x$args; exec_publish {p} $args; exec_publish_done {p} done >{d}/$args;",
        p = prog.display(),
        d = dir.0.display()
    ));
    // The stream name looks like a redirect, the query like an option and a subshell.
    let mut ffmpeg = ffmpeg_publish(&url(&server, "live", ">pwned?-o$(id)"), 1, 25);
    wait_timeout(&mut ffmpeg.0, Duration::from_secs(30)).expect("ffmpeg ends");
    let lines = wait_for("exec_publish and exec_publish_done", Duration::from_secs(20), || {
        let l = noted(&out);
        (l.len() >= 2).then_some(l)
    });
    assert_eq!(lines[0].1, "[>pwned] [x-o$(id)]", "each value one argument, no redirect, no shell");
    assert_eq!(lines[1].1, "[done]");
    assert!(dir.path("-o$(id)").exists(), "a plain file name from $args stays in the directory written");
    let log = server.log();
    assert!(log.contains("exec_publish app=live stream=>pwned: not run ("), "{log}");
    assert!(log.contains("$args would start an argument with \"-\""), "{log}");
    // A query that would leave the directory.
    let mut ffmpeg = ffmpeg_publish(&url(&server, "live", "cam?.."), 1, 25);
    wait_timeout(&mut ffmpeg.0, Duration::from_secs(30)).expect("ffmpeg ends");
    let log = wait_for("the refusal", Duration::from_secs(10), || {
        let log = server.log();
        log.contains("exec_publish_done app=live stream=cam: not run").then_some(log)
    });
    assert!(log.contains("$args is not a plain file name"), "{log}");
    let mut args: Vec<String> = noted(&out).into_iter().skip(2).map(|(_, a)| a).collect();
    // The two exec_publish children run at once: either may note itself first.
    args.sort();
    assert_eq!(args, ["[..]", "[cam] [x..]"], "the refused line ran nothing");
    assert!(!Path::new("pwned").exists() && !Path::new(">pwned").exists());
}

#[test]
fn redirects_apply_to_the_child() {
    let dir = TempDir::new("exec-redirect");
    let server = Server::start(&format!(
        "exec_publish sh -c \"echo out:\\$1; echo err:\\$1 >&2\" sh $name >{d}/$name.out 2>>{d}/err.log;",
        d = dir.0.display()
    ));
    let mut ffmpeg = ffmpeg_publish(&url(&server, "live", "cam"), 1, 25);
    wait_timeout(&mut ffmpeg.0, Duration::from_secs(30)).expect("ffmpeg ends");
    let read = |n: &str| std::fs::read_to_string(dir.path(n)).unwrap_or_default();
    wait_for("the redirected output", Duration::from_secs(10), || {
        (read("cam.out") == "out:cam\n" && read("err.log") == "err:cam\n").then_some(())
    });
}

#[test]
fn stderr_is_logged_with_a_prefix_and_rate_limited() {
    let dir = TempDir::new("exec-stderr");
    let prog = dir.path("noisy.sh");
    let text = "#!/bin/sh\ni=0\nwhile [ $i -lt 100 ]; do echo \"line $i\" >&2; i=$((i+1)); done\nexec sleep 1000\n";
    std::fs::write(&prog, text).unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start(&format!("exec_push {};", prog.display()));
    let mut ffmpeg = ffmpeg_publish(&url(&server, "live", "cam"), 2, 25);
    wait_timeout(&mut ffmpeg.0, Duration::from_secs(30)).expect("ffmpeg ends");
    let log = wait_for("the suppressed count", Duration::from_secs(10), || {
        let log = server.log();
        log.contains("exec_push app=live stream=cam: ... suppressed").then_some(log)
    });
    assert!(log.contains("exec_push app=live stream=cam: line 0\n"), "{log}");
    let logged = (0..100).filter(|i| log.contains(&format!("stream=cam: line {i}\n"))).count();
    let suppressed: usize = log
        .lines()
        .filter_map(|l| l.split("... suppressed ").nth(1))
        .map(|n| n.trim_end_matches(" lines").parse::<usize>().unwrap())
        .sum();
    assert!(logged <= 40, "rate-limited: {logged} lines logged");
    assert_eq!(logged + suppressed, 100, "every line logged or counted");
}

#[test]
fn a_missing_program_is_reported() {
    let dir = TempDir::new("exec-missing");
    let conf = dir.path("sluice.conf");
    let port = common::free_port();
    std::fs::write(
        &conf,
        format!(
            "rtmp {{\n  server {{\n    listen 127.0.0.1:{port};\n    application live {{\n      live on;\n      exec_push no-such-program-sluice -i $name;\n    }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let checked = run_timeout(Command::new(sluice_bin()).args(["-t", "-c"]).arg(&conf), Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "a warning, not an error: {stderr}");
    assert!(
        stderr.contains("[warn] \"exec_push\" program \"no-such-program-sluice\" is not found on PATH (")
            && stderr.contains(&format!("in {}:6", conf.display())),
        "{stderr}"
    );
    let server = Server::start("exec_push no-such-program-sluice -i $name;");
    let _ffmpeg = ffmpeg_publish(&url(&server, "live", "cam"), 3, 25);
    let log = wait_for("the error", Duration::from_secs(20), || {
        let log = server.log();
        log.contains("cannot run").then_some(log)
    });
    let conf = server.dir.path("sluice.conf");
    let line = log.lines().find(|l| l.contains("cannot run")).unwrap();
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains(&format!(
            "exec_push app=live stream=cam: {}:5: cannot run \"no-such-program-sluice\": not found on PATH (",
            conf.display()
        )),
        "{line}"
    );
}

/// `exec_pull`: the first player of a name starts the child, which publishes the stream the
/// player gets; the last player leaving stops it. `exec_play`/`exec_play_done` run per player.
#[test]
fn exec_pull_serves_players_and_stops_after_the_last() {
    let dir = TempDir::new("exec-pull");
    let (pids, plays) = (dir.path("pull.pids"), dir.path("plays.log"));
    let pull = dir.path("pull.sh");
    let text = format!(
        "#!/bin/sh\necho $$ >> {}\nexec ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc=size=320x240:rate=25 -t 60 -c:v libx264 -preset ultrafast -g 25 -f flv \"$1\"\n",
        pids.display()
    );
    std::fs::write(&pull, text).unwrap();
    std::fs::set_permissions(&pull, std::fs::Permissions::from_mode(0o755)).unwrap();
    let note = script(&dir, "note.sh", &plays, false);
    let server = Server::start_conf(&format!(
        "rtmp {{ server {{ listen 127.0.0.1:{{rtmp}}; application live {{ live on; idle_streams off;
            exec_pull {p} rtmp://127.0.0.1:{{rtmp}}/$app/$name; exec_play {n} play $name $app; exec_play_done {n} done $name; }} }} }}
         http {{ server {{ listen 127.0.0.1:{{http}}; }} }}\n",
        p = pull.display(),
        n = note.display()
    ));
    let streams = common::ffprobe_streams(&url(&server, "live", "cam"));
    assert_eq!(streams, ["h264,320,240"], "the player got what the exec_pull child published");
    let pid: i32 = wait_for("the exec_pull pid", Duration::from_secs(5), || {
        std::fs::read_to_string(&pids).ok()?.lines().next()?.parse().ok()
    });
    wait_for("the exec_pull child to stop after the last player", Duration::from_secs(5), || {
        (!alive(pid)).then_some(())
    });
    let noted: Vec<String> = wait_for("exec_play and exec_play_done", Duration::from_secs(10), || {
        let n = noted(&plays);
        (n.len() >= 2).then_some(n)
    })
    .into_iter()
    .map(|(_, a)| a)
    .collect();
    assert_eq!(noted, ["[play] [cam] [live]", "[done] [cam]"]);
    assert_eq!(std::fs::read_to_string(&pids).unwrap().lines().count(), 1, "one child for one player");
}

/// `exec_play`/`exec_play_done` of an RTMP player get its query string (`$args`) and its
/// session variables (`$addr`, `$tcurl`), as nginx-rtmp gives them.
#[test]
fn exec_play_gets_the_players_args_and_client() {
    let dir = TempDir::new("exec-play-vars");
    let plays = dir.path("plays.log");
    let note = script(&dir, "note.sh", &plays, false);
    let server = Server::start(&format!(
        "exec_play {n} play $name $app $args $addr $tcurl; exec_play_done {n} done $name $args $addr;",
        n = note.display()
    ));
    let _ffmpeg = ffmpeg_publish(&url(&server, "live", "cam"), 30, 25);
    common::wait_published(&server, "cam");
    let streams = common::ffprobe_streams(&url(&server, "live", "cam?k=v"));
    assert!(streams.iter().any(|s| s.starts_with("h264")), "{streams:?}");
    let noted: Vec<String> = wait_for("exec_play and exec_play_done", Duration::from_secs(10), || {
        let n = noted(&plays);
        (n.len() >= 2).then_some(n)
    })
    .into_iter()
    .map(|(_, a)| a)
    .collect();
    let tcurl = format!("rtmp://127.0.0.1:{}/live", server.port);
    assert_eq!(
        noted,
        [format!("[play] [cam] [live] [k=v] [127.0.0.1] [{tcurl}]"), "[done] [cam] [k=v] [127.0.0.1]".to_owned()]
    );
}

/// The nginx-rtmp wiki's ABR recipe, verbatim but for `-c:a aac` (Debian's ffmpeg has no
/// libfdk_aac), the port and `hls_path`: one ffmpeg per published stream reads it back and
/// publishes three renditions into the `hls` application, whose `hls_variant` lines make the
/// master playlist `mystream.m3u8` listing the three with their parameters.
#[test]
fn the_wiki_abr_recipe_publishes_three_renditions_and_a_master_playlist() {
    let dir = TempDir::new("exec-abr");
    let hls = dir.path("hls");
    let server = Server::start_with("", &common::wiki_abr_recipe(&hls));
    let _ffmpeg = ffmpeg_publish(&url(&server, "src", "mystream"), 40, 25);
    for suffix in ["_low", "_mid", "_hi"] {
        let name = format!("mystream{suffix}");
        wait_for(&format!("{name} to be published"), Duration::from_secs(40), || {
            let log = server.log();
            log.lines().any(|l| l.contains(": publish ") && l.contains(&format!("stream={name} "))).then_some(())
        });
        let streams = common::ffprobe_streams(&url(&server, "hls", &name));
        assert_eq!(streams, ["aac", "h264,640,360"], "{name}");
    }
    assert!(server.log().contains("exec app=src stream=mystream: started"), "{}", server.log());
    let master = wait_for("a master listing three variants", Duration::from_secs(40), || {
        let text = std::fs::read_to_string(hls.join("mystream.m3u8")).ok()?;
        (text.matches("#EXT-X-STREAM-INF").count() == 3).then_some(text)
    });
    let mut uris = Vec::new();
    for (suffix, bandwidth) in [("_low", "160000"), ("_mid", "320000"), ("_hi", "640000")] {
        let uri = format!("mystream{suffix}/index.m3u8");
        let inf = master.lines().take_while(|l| *l != uri).last().unwrap_or_default();
        assert!(inf.contains(&format!("BANDWIDTH={bandwidth}")) && inf.contains("RESOLUTION=640x360"), "{master}");
        uris.push(uri);
    }
    for uri in uris {
        let url = format!("http://127.0.0.1:{}/hls/{uri}", server.http_port);
        // ffprobe lists an HLS playlist's streams once more under its program.
        let mut streams = common::ffprobe_streams(&url);
        streams.dedup();
        assert_eq!(streams, ["aac", "h264,640,360"], "{url}");
    }
}

/// `exec_kill_signal TERM`: a child that ignores it is killed (SIGKILL) after the grace period;
/// one that obeys it is gone at once.
#[test]
fn exec_kill_signal_then_sigkill_after_the_grace_period() {
    let dir = TempDir::new("exec-kill-signal");
    let (stubborn_out, obedient_out) = (dir.path("stubborn.pid"), dir.path("obedient.pid"));
    let stubborn = dir.path("stubborn.sh");
    let text = format!("#!/bin/sh\ntrap '' TERM\necho $$ >> {}\nexec sleep 1000\n", stubborn_out.display());
    std::fs::write(&stubborn, text).unwrap();
    std::fs::set_permissions(&stubborn, std::fs::Permissions::from_mode(0o755)).unwrap();
    let obedient = script(&dir, "obedient.sh", &obedient_out, true);
    let server = Server::start_with(
        "exec_kill_signal term;",
        &format!("application live {{ live on; exec_push {}; exec_push {}; }}", stubborn.display(), obedient.display()),
    );
    let mut ffmpeg = ffmpeg_publish(&url(&server, "live", "cam"), 3, 25);
    let pid = |out: &Path| noted(out).first().map(|(p, _)| *p);
    let (stubborn_pid, obedient_pid) =
        wait_for("both children", Duration::from_secs(20), || Some((pid(&stubborn_out)?, pid(&obedient_out)?)));
    wait_timeout(&mut ffmpeg.0, Duration::from_secs(30)).expect("ffmpeg ends");
    wait_for("the unpublish", Duration::from_secs(10), || server.log().contains("unpublish").then_some(()));
    let unpublished = Instant::now();
    wait_for("the obedient child to go", Duration::from_secs(1), || (!alive(obedient_pid)).then_some(()));
    std::thread::sleep(Duration::from_secs(2));
    assert!(alive(stubborn_pid), "SIGTERM ignored: still there within the grace period");
    wait_for("SIGKILL after the grace period", Duration::from_secs(8), || (!alive(stubborn_pid)).then_some(()));
    let gone = unpublished.elapsed();
    assert!(gone >= Duration::from_secs(4), "killed after {gone:?}, before the 5 s grace");
}

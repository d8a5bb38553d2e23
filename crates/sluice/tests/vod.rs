//! Video on demand (`play`): files made with ffmpeg at test time, played over RTMP by ffprobe,
//! ffmpeg and rtmpdump.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{run_timeout, wait_for, Server, TempDir};

/// Seconds of media in the test files.
const SECS: f64 = 8.0;

/// Make `path` (its container from the extension, `movflags` for MP4): `secs` of a 320x240
/// H.264 test pattern (a keyframe a second, no B-frames) with 44.1 kHz AAC.
fn make(path: &Path, secs: f64, movflags: Option<&str>) {
    let flags = movflags.map(|f| vec!["-movflags", f]).unwrap_or_default();
    make_with(path, secs, &flags);
}

/// [`make`] with `extra` output options.
fn make_with(path: &Path, secs: f64, extra: &[&str]) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &secs.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25"])
        .args(["-c:a", "aac", "-b:a", "64k"]);
    cmd.args(extra).arg(path);
    let out = run_timeout(&mut cmd, Duration::from_secs(60));
    assert!(out.status.success(), "ffmpeg {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
}

/// A server whose application `vod` has `play` with `locations` (and `extra` directives).
fn server(locations: &str, extra: &str) -> Server {
    Server::start_with("", &format!("application vod {{ play {locations}; {extra} }}"))
}

fn url(server: &Server, name: &str) -> String {
    format!("rtmp://127.0.0.1:{}/vod/{name}", server.port)
}

/// What ffprobe reads over RTMP: the streams' codec names (sorted) and the duration.
fn probe(input: &str) -> (Vec<String>, f64) {
    let text = common::ffprobe(input, "format=duration:stream=codec_name", "default=nw=1");
    let mut codecs: Vec<String> =
        text.lines().filter_map(|l| l.strip_prefix("codec_name=")).map(str::to_owned).collect();
    codecs.sort();
    let duration = text
        .lines()
        .find_map(|l| l.strip_prefix("duration="))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no duration from {input}: {text}"));
    (codecs, duration)
}

fn assert_plays(server: &Server, name: &str, secs: f64) {
    let (codecs, duration) = probe(&url(server, name));
    assert_eq!(codecs, ["aac", "h264"], "{name}");
    assert!((duration - secs).abs() <= 0.3, "{name}: duration {duration}, not {secs}");
}

/// FLV, progressive MP4 with `moov` first and at the end, and fragmented MP4: ffprobe sees
/// H.264 and AAC and the duration, through nginx-rtmp's name mapping (`NAME` → NAME.flv,
/// `NAME.mp4` and `mp4:NAME` → NAME.mp4).
#[test]
fn flv_and_mp4_files_play_with_their_codecs_and_duration() {
    let dir = TempDir::new("vod-files");
    make(&dir.path("film.flv"), SECS, None);
    make(&dir.path("fast.mp4"), SECS, Some("+faststart"));
    make(&dir.path("late.mp4"), SECS, None);
    make(&dir.path("frag.mp4"), SECS, Some("frag_keyframe+empty_moov+default_base_moof"));
    let server = server(&dir.0.display().to_string(), "");
    assert_plays(&server, "film", SECS);
    assert_plays(&server, "fast.mp4", SECS);
    assert_plays(&server, "mp4:late", SECS);
    assert_plays(&server, "frag.mp4", SECS);
    assert!(server.log().contains("play file"), "{}", server.log());
}

/// ffmpeg and rtmpdump play a file to its end, in about real time (paced, not dumped).
#[test]
fn ffmpeg_and_rtmpdump_play_a_file_to_the_end_in_real_time() {
    let dir = TempDir::new("vod-whole");
    make(&dir.path("clip.mp4"), 6.0, Some("+faststart"));
    let server = server(&dir.0.display().to_string(), "");
    let copy = dir.path("copy.flv");
    let started = Instant::now();
    let out =
        run_timeout(
            Command::new("ffmpeg")
                .args(["-nostdin", "-loglevel", "error", "-y", "-i", &url(&server, "clip.mp4")])
                .args(["-c", "copy", "-f", "flv", copy.to_str().unwrap()]),
            Duration::from_secs(60),
        );
    let took = started.elapsed();
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    let (codecs, duration) = probe(copy.to_str().unwrap());
    assert_eq!(codecs, ["aac", "h264"]);
    assert!((duration - 6.0).abs() <= 0.3, "copied {duration} s");
    // Sent ahead by the client's buffer (ffmpeg asks for 3 s), never all at once.
    assert!(took >= Duration::from_millis(2500), "played in {took:?}: not paced");

    let dumped = dir.path("dump.flv");
    let out = run_timeout(
        Command::new("rtmpdump").args(["-q", "-r", &url(&server, "mp4:clip"), "-o", dumped.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "rtmpdump: {}", String::from_utf8_lossy(&out.stderr));
    let (codecs, duration) = probe(dumped.to_str().unwrap());
    assert_eq!(codecs, ["aac", "h264"]);
    assert!((duration - 6.0).abs() <= 0.3, "rtmpdump got {duration} s");
}

/// `ffmpeg -ss 5 -i rtmp://...` seeks (RTMP `seek`): the first frame is the keyframe at 5 s,
/// and the rest (3 s, within ffmpeg's 3 s buffer) comes at once rather than after five
/// seconds of playing.
#[test]
fn ffmpeg_seeks_to_the_keyframe_before_the_time() {
    let dir = TempDir::new("vod-seek");
    make(&dir.path("film.mp4"), SECS, Some("+faststart"));
    let server = server(&dir.0.display().to_string(), "");
    let out_path = dir.path("from5.flv");
    let started = Instant::now();
    let out = run_timeout(
        Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-ss", "5", "-i", &url(&server, "film.mp4")])
            .args(["-copyts", "-c", "copy", "-f", "flv", out_path.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}: did not seek", started.elapsed());
    let first = first_video_pts(&out_path);
    assert!((4.9..=5.2).contains(&first), "first video frame at {first} s");
}

fn first_video_pts(path: &Path) -> f64 {
    let out = run_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
            path.to_str().unwrap(),
        ]),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .next()
        .and_then(|l| l.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no packets: {text}"))
}

/// ffmpeg's error output when playing `name` (sent as it is: ffmpeg would take a `/` for
/// part of the application name).
fn play_error(server: &Server, name: &str) -> String {
    let out = run_timeout(
        Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-rtmp_app", "vod", "-rtmp_playpath", name])
            .args(["-i", &format!("rtmp://127.0.0.1:{}/vod/x", server.port), "-f", "null", "-"]),
        Duration::from_secs(30),
    );
    assert!(!out.status.success(), "{name} played");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A missing file gets `NetStream.Play.StreamNotFound`; a name with `..` is refused and
/// nothing outside the directory is opened.
#[test]
fn missing_files_and_names_that_leave_the_directory_are_refused() {
    let top = TempDir::new("vod-escape");
    let dir = top.path("files");
    std::fs::create_dir_all(&dir).unwrap();
    make(&top.path("secret.flv"), 1.0, None);
    let server = server(&dir.display().to_string(), "");
    let err = play_error(&server, "nothing");
    assert!(err.contains("Video on demand stream not found"), "{err}");
    wait_for("the refusal logged", Duration::from_secs(10), || {
        server.log().contains("play refused: Video on demand stream not found").then_some(())
    });
    for name in ["../secret", "sub/../../secret", "mp4:../secret"] {
        let err = play_error(&server, name);
        assert!(!err.is_empty(), "{name}: no error");
    }
    let log = server.log();
    assert_eq!(log.matches("play refused: stream name \".\" or \"..\"").count(), 2, "{log}");
    assert!(log.contains("play refused: bad file name: stream name \".\" or \"..\""), "mp4:../secret: {log}");
    assert!(!log.contains("play file "), "a file was played: {log}");
}

/// Several locations are tried in order; a later `play` line adds locations after the first
/// line's.
#[test]
fn locations_are_tried_in_order() {
    let (empty, a, b) = (TempDir::new("vod-empty"), TempDir::new("vod-a"), TempDir::new("vod-b"));
    make(&a.path("both.flv"), 3.0, None);
    make(&b.path("both.flv"), 6.0, None);
    make(&b.path("only_b.flv"), 2.0, None);
    let locations = format!("{} {}; play {}", empty.0.display(), a.0.display(), b.0.display());
    let server = server(&locations, "");
    assert_plays(&server, "both", 3.0);
    assert_plays(&server, "only_b", 2.0);
}

/// A tiny HTTP server for `dir`'s files; the request lines it got.
fn file_server(dir: &Path) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (dir, log) = (dir.to_path_buf(), seen.clone());
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let line = request.lines().next().unwrap_or_default().to_owned();
            log.lock().unwrap().push(line.clone());
            let path = line.split(' ').nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_owned();
            let file = path.strip_prefix("/files/").and_then(|f| std::fs::read(dir.join(f)).ok());
            let reply = match file {
                Some(body) => {
                    let mut r =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                            .into_bytes();
                    r.extend(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
            };
            let _ = s.write_all(&reply);
        }
    });
    (port, seen)
}

/// An `http://` location: the file is fetched (`?addr=` the client) into `play_temp_path`,
/// played, and deleted after; a file the server does not have tries the next location.
#[test]
fn http_locations_are_fetched_into_the_temp_path() {
    let (remote, temp, local) = (TempDir::new("vod-remote"), TempDir::new("vod-temp"), TempDir::new("vod-local"));
    make(&remote.path("web.mp4"), SECS, Some("+faststart"));
    make(&local.path("disk.flv"), 2.0, None);
    let (port, seen) = file_server(&remote.0);
    let locations = format!("http://127.0.0.1:{port}/files {}", local.0.display());
    let server = server(&locations, &format!("play_temp_path {};", temp.0.display()));
    assert_plays(&server, "web.mp4", SECS);
    let requests = seen.lock().unwrap().clone();
    assert!(requests.iter().any(|r| r.starts_with("GET /files/web.mp4?addr=127.0.0.1 ")), "{requests:?}");
    wait_for("the temp file deleted", Duration::from_secs(10), || {
        (std::fs::read_dir(&temp.0).unwrap().count() == 0).then_some(())
    });
    assert_plays(&server, "disk", 2.0);
    assert!(seen.lock().unwrap().iter().any(|r| r.starts_with("GET /files/disk.flv?")), "tried the URL first");
}

/// sluice's own MP4 recording (fragmented MP4, as `record_format mp4` writes it while the
/// stream goes) plays back over RTMP from an application whose `play` is the `record_path`.
#[test]
fn a_sluice_mp4_recording_plays_back() {
    let dir = TempDir::new("vod-rec");
    let server = Server::start_with(
        "",
        &format!(
            "application live {{ live on; record all; record_path {0}; record_format mp4; }}
             application vod {{ play {0}; }}",
            dir.0.display()
        ),
    );
    let publisher = common::ffmpeg_publish(&server.url("rec"), 4, 25);
    let mut child = publisher;
    let status = common::wait_timeout(&mut child.0, Duration::from_secs(40)).expect("ffmpeg finishes");
    assert!(status.success());
    wait_for("the recording closed", Duration::from_secs(15), || server.log().contains("record: done").then_some(()));
    let (codecs, duration) = probe(&url(&server, "rec.mp4"));
    assert_eq!(codecs, ["aac", "h264"]);
    assert!((duration - 4.0).abs() <= 0.3, "recording plays {duration} s");
}

/// `video` in MP4 (made with `codec_args`) plays as Enhanced RTMP, which an Enhanced-RTMP
/// ffmpeg reads back with that codec and AAC.
fn enhanced_plays(codec_args: &[&str], video: &str) {
    let dir = TempDir::new(&format!("vod-{video}"));
    let ffmpeg = common::enhanced_ffmpeg();
    let path = dir.path("clip.mp4");
    let out = run_timeout(
        Command::new(&ffmpeg)
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "3"])
            .args(codec_args)
            .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart"])
            .arg(&path),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let server = server(&dir.0.display().to_string(), "");
    let out = run_timeout(
        Command::new(&ffmpeg)
            .args(["-nostdin", "-hide_banner", "-i", &url(&server, "clip.mp4")])
            .args(["-c", "copy", "-f", "null", "-"]),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("Video: {video}")) && text.contains("Audio: aac"), "{text}");
}

/// HEVC in MP4 plays as Enhanced RTMP (`hvc1`).
#[test]
fn hevc_mp4_plays_as_enhanced_rtmp() {
    enhanced_plays(
        &["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=25", "-tag:v", "hvc1"],
        "hevc",
    );
}

/// AV1 in MP4 plays as Enhanced RTMP (`av01`).
#[test]
fn av1_mp4_plays_as_enhanced_rtmp() {
    enhanced_plays(&["-c:v", "libsvtav1", "-preset", "12", "-g", "25"], "av1");
}

/// Access rules apply to files as to live streams: `deny play` refuses before any file is
/// looked for.
#[test]
fn access_rules_apply_to_files() {
    let dir = TempDir::new("vod-deny");
    make(&dir.path("film.flv"), 1.0, None);
    let server = server(&dir.0.display().to_string(), "deny play 127.0.0.1;");
    let err = play_error(&server, "film");
    assert!(err.contains("denied"), "{err}");
    assert!(!server.log().contains("play file "), "{}", server.log());
}

/// With `live on` too, a name no location has plays the live stream of that name (as
/// nginx-rtmp's live module takes the play); a file name plays the file.
#[test]
fn live_streams_play_where_no_file_is_found() {
    let dir = TempDir::new("vod-live");
    make(&dir.path("film.flv"), 2.0, None);
    let server = server(&dir.0.display().to_string(), "live on;");
    let _publisher = common::ffmpeg_publish(&url(&server, "cam"), 20, 25);
    common::wait_published(&server, "cam");
    let streams = common::ffprobe_streams(&url(&server, "cam"));
    assert_eq!(streams, ["aac", "h264,640,360"], "the live stream");
    assert_plays(&server, "film", 2.0);
}

/// Control's `/control/redirect/subscriber` moves a file's player to another file (Stream EOF
/// and Play.Stop for the old one, then a play of the new name).
#[test]
fn control_redirects_a_file_player() {
    let dir = TempDir::new("vod-redirect");
    make(&dir.path("a.flv"), SECS, None);
    make(&dir.path("b.flv"), 2.0, None);
    let server = Server::start_conf(&format!(
        "rtmp {{ server {{ listen 127.0.0.1:{{rtmp}}; application vod {{ play {}; }} }} }}
         http {{ server {{ listen 127.0.0.1:{{http}}; location /control {{ rtmp_control redirect; }} }} }}",
        dir.0.display()
    ));
    let _player = common::ffmpeg_play(&url(&server, "a"));
    wait_for("a played", Duration::from_secs(20), || server.log().contains("stream=a args= duration_ms").then_some(()));
    let (code, body) = common::http_get(server.http_port, "/control/redirect/subscriber?app=vod&name=a&newname=b");
    assert_eq!((code, body.as_str()), (200, "1"));
    wait_for("b played", Duration::from_secs(20), || {
        let log = server.log();
        (log.contains("play file redirected by control") && log.contains("stream=b args= duration_ms")).then_some(())
    });
}

/// `play_local_path`: a downloaded file is kept there (under its name) instead of deleted, so
/// a `play` location naming that directory before the URL serves it next time.
#[test]
fn play_local_path_keeps_downloads() {
    let (remote, temp, keep) = (TempDir::new("vod-remote2"), TempDir::new("vod-temp2"), TempDir::new("vod-keep"));
    make(&remote.path("kept.flv"), 2.0, None);
    let (port, seen) = file_server(&remote.0);
    let locations = format!("{} http://127.0.0.1:{port}/files", keep.0.display());
    let extra = format!("play_temp_path {}; play_local_path {};", temp.0.display(), keep.0.display());
    let server = server(&locations, &extra);
    assert_plays(&server, "kept", 2.0);
    assert!(keep.path("kept.flv").exists(), "kept");
    assert_plays(&server, "kept", 2.0);
    let fetched = seen.lock().unwrap().iter().filter(|r| r.starts_with("GET /files/kept.flv?")).count();
    assert_eq!(fetched, 1, "the second play is served from play_local_path");
}

/// A file's player is a player everywhere: `exec_play`/`exec_play_done` run for it (with
/// `$name` and `$addr`), `/stat` lists it in the application's `<play>` section, and the JSON
/// API and `/metrics` count it as a player of the name it asked for.
#[test]
fn a_file_player_is_a_player_everywhere() {
    let dir = TempDir::new("vod-everywhere");
    make(&dir.path("film.flv"), SECS, None);
    let server = Server::start_conf(&format!(
        "rtmp {{ http_listen 127.0.0.1:{{http}}; server {{ listen 127.0.0.1:{{rtmp}};
            application vod {{ play {0}; exec_play touch {0}/play-$name-$addr; exec_play_done touch {0}/done-$name; }} }} }}",
        dir.0.display()
    ));
    let player = common::ffmpeg_play(&url(&server, "film"));
    wait_for("exec_play", Duration::from_secs(20), || dir.path("play-film-127.0.0.1").exists().then_some(()));
    let stat = wait_for("the player in /stat", Duration::from_secs(10), || {
        let (_, body) = common::http_get(server.http_port, "/stat");
        body.contains("<play>").then_some(body)
    });
    let play = stat.split("<play>").nth(1).unwrap_or_default();
    assert!(play.contains("<name>film</name>") && play.contains("<nclients>1</nclients>"), "{stat}");
    assert!(play.contains("<address>127.0.0.1</address>"), "{stat}");
    let (_, clients) = common::http_get(server.http_port, "/api/v1/clients");
    let clients: serde_json::Value = serde_json::from_str(&clients).unwrap();
    let players: Vec<_> = clients["clients"].as_array().unwrap().iter().filter(|c| c["role"] == "player").collect();
    assert_eq!(players.len(), 1, "{clients}");
    assert_eq!((players[0]["app"].as_str(), players[0]["name"].as_str()), (Some("vod"), Some("film")));
    let (_, metrics) = common::http_get(server.http_port, "/metrics");
    assert!(metrics.lines().any(|l| l == "sluice_players{app=\"vod\",protocol=\"rtmp\"} 1"), "{metrics}");
    drop(player);
    wait_for("exec_play_done", Duration::from_secs(20), || dir.path("done-film").exists().then_some(()));
    let (_, stat) = common::http_get(server.http_port, "/stat");
    assert!(stat.contains("<play>\r\n<nclients>0</nclients>\r\n</play>"), "{stat}");
}

/// A bare RTMP client (simple handshake, `connect` to `vod`) that asks `getStreamLength` for
/// `name` and returns the number it gets back.
fn stream_length(server: &Server, name: &str) -> f64 {
    use bytes::BytesMut;
    let mut sock = std::net::TcpStream::connect(server.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut c0c1 = vec![3u8];
    c0c1.resize(1 + 1536, 0);
    sock.write_all(&c0c1).unwrap();
    let mut s0s1s2 = vec![0u8; 1 + 1536 * 2];
    sock.read_exact(&mut s0s1s2).unwrap();
    sock.write_all(&s0s1s2[1..1537]).unwrap();
    let command = |name: &str, txn: f64, object: amf0::Value, args: Vec<amf0::Value>| {
        let cmd = rtmp::command::Command { name: name.into(), transaction_id: txn, object, args };
        let mut out = BytesMut::new();
        rtmp::chunk::encode_message(&mut out, 128, 3, 0, rtmp::message::type_id::COMMAND_AMF0, 0, &cmd.encode());
        out
    };
    let tc_url = format!("rtmp://127.0.0.1:{}/vod", server.port);
    let connect = amf0::Value::object([("app", "vod".into()), ("tcUrl", tc_url.as_str().into())]);
    sock.write_all(&command("connect", 1.0, connect, vec![])).unwrap();
    sock.write_all(&command("getStreamLength", 2.0, amf0::Value::Null, vec![name.into()])).unwrap();
    let mut decoder = rtmp::ChunkDecoder::new(1 << 20, 32);
    let mut buf = BytesMut::new();
    loop {
        while let Some(msg) = decoder.read(&mut buf).unwrap() {
            match msg.type_id {
                rtmp::message::type_id::SET_CHUNK_SIZE => {
                    decoder.set_chunk_size(rtmp::message::parse_u32(&msg.payload).unwrap()).unwrap()
                }
                rtmp::message::type_id::COMMAND_AMF0 => {
                    let cmd = rtmp::command::Command::parse(msg.type_id, &msg.payload).unwrap();
                    if cmd.transaction_id == 2.0 {
                        assert_eq!(cmd.name, "_result");
                        return cmd.arg(0).and_then(amf0::Value::as_f64).expect("a number");
                    }
                }
                _ => {}
            }
        }
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the answer");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `getStreamLength` (ffmpeg asks it before `play`) answers a file's duration in seconds, by
/// nginx-rtmp's name mapping; 0 for a name no directory has.
#[test]
fn get_stream_length_answers_the_files_duration() {
    let dir = TempDir::new("vod-length");
    make(&dir.path("film.mp4"), SECS, Some("+faststart"));
    let server = server(&dir.0.display().to_string(), "");
    for name in ["film.mp4", "mp4:film"] {
        let secs = stream_length(&server, name);
        assert!((secs - SECS).abs() <= 0.3, "{name}: {secs} s, not {SECS}");
    }
    assert_eq!(stream_length(&server, "nothing"), 0.0);
    // And ffmpeg, which asks it too, plays on.
    assert_plays(&server, "film.mp4", SECS);
    // A client `deny play` refuses learns nothing.
    let denied = self::server(&dir.0.display().to_string(), "deny play 127.0.0.1;");
    assert_eq!(stream_length(&denied, "film.mp4"), 0.0);
    // Nor one whose plays need a callback or a signed key it has not shown yet.
    let checked = self::server(&dir.0.display().to_string(), "on_play http://127.0.0.1:9/;");
    assert_eq!(stream_length(&checked, "film.mp4"), 0.0);
    let keyed = self::server(&dir.0.display().to_string(), "auth_secret s3cret; auth play;");
    assert_eq!(stream_length(&keyed, "film.mp4"), 0.0);
}

/// MP3 in MP4 plays as FLV MP3: ffprobe reads `mp3` and H.264, and the duration.
#[test]
fn mp3_in_mp4_plays_as_flv_mp3() {
    let dir = TempDir::new("vod-mp3");
    make_with(&dir.path("clip.mp4"), SECS, &["-c:a", "libmp3lame", "-b:a", "64k", "-movflags", "+faststart"]);
    let server = server(&dir.0.display().to_string(), "");
    let (codecs, duration) = probe(&url(&server, "clip.mp4"));
    assert_eq!(codecs, ["h264", "mp3"]);
    assert!((duration - SECS).abs() <= 0.3, "duration {duration}, not {SECS}");
}

/// Opus in MP4 plays as Enhanced RTMP Opus, which an Enhanced-RTMP ffmpeg reads back as `opus`
/// with H.264, for the file's duration.
#[test]
fn opus_in_mp4_plays_as_enhanced_rtmp() {
    let dir = TempDir::new("vod-opus");
    make_with(&dir.path("clip.mp4"), SECS, &["-c:a", "libopus", "-b:a", "64k", "-movflags", "+faststart"]);
    let server = server(&dir.0.display().to_string(), "");
    let copy = dir.path("copy.mkv");
    let out = run_timeout(
        Command::new(common::enhanced_ffmpeg())
            .args(["-nostdin", "-hide_banner", "-y", "-i", &url(&server, "clip.mp4")])
            .args(["-c", "copy", copy.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Video: h264") && text.contains("Audio: opus"), "{text}");
    let (codecs, duration) = probe(copy.to_str().unwrap());
    assert_eq!(codecs, ["h264", "opus"]);
    assert!((duration - SECS).abs() <= 0.3, "duration {duration}, not {SECS}");
}

/// The first video and audio presentation times of `input` (seconds), from its first packets.
fn first_pts(input: &str) -> (f64, f64) {
    let out = run_timeout(
        Command::new("ffprobe")
            .args(["-v", "error", "-read_intervals", "%+#40", "-show_entries", "packet=codec_type,pts_time"])
            .args(["-of", "csv=p=0", input]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "ffprobe {input}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let first = |kind: &str| {
        text.lines()
            .filter_map(|l| l.split_once(','))
            .find(|(k, _)| *k == kind)
            .and_then(|(_, t)| t.trim_end_matches(',').parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {kind} packet: {text}"))
    };
    (first("video"), first("audio"))
}

/// MP4 edit lists (`elst`): ffmpeg starts B-frame video two frames into its media and AAC
/// after its priming; with the edits applied, the first video and audio presentation times
/// over RTMP agree within a frame (without them video comes 80 ms late).
#[test]
fn edit_lists_keep_audio_and_video_in_sync() {
    let dir = TempDir::new("vod-elst");
    make_with(&dir.path("bf.mp4"), SECS, &["-bf", "2", "-movflags", "+faststart"]);
    let server = server(&dir.0.display().to_string(), "");
    let (video, audio) = first_pts(&url(&server, "bf.mp4"));
    assert!((video - audio).abs() < 0.040, "first video at {video} s, audio at {audio} s");
    assert!(video.min(audio) < 0.1, "starts near 0: {video}, {audio}");
    let (codecs, duration) = probe(&url(&server, "bf.mp4"));
    assert_eq!(codecs, ["aac", "h264"]);
    assert!((duration - SECS).abs() <= 0.3, "duration {duration}, not {SECS}");
}

/// `?aindex=N&vindex=N` (nginx-rtmp's MP4 track choice, 0-based): an MP4 with two video tracks
/// (320x240, 160x120) and two audio tracks (44.1 kHz, 22.05 kHz) plays the first of each by
/// default and the ones named otherwise.
#[test]
fn aindex_and_vindex_choose_the_tracks_of_an_mp4() {
    let dir = TempDir::new("vod-tracks");
    let path = dir.path("two.mp4");
    let out = run_timeout(
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
            .args(["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-f", "lavfi", "-i", "sine=frequency=880:sample_rate=22050"])
            .args(["-map", "0:v", "-map", "1:v", "-map", "2:a", "-map", "3:a", "-t", "4"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25"])
            .args(["-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart"])
            .arg(&path),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let server = server(&dir.0.display().to_string(), "");
    let streams = |query: &str| {
        let text = common::ffprobe(&url(&server, &format!("two.mp4{query}")), "stream=width,sample_rate", "csv=p=0");
        let mut lines: Vec<String> = text.lines().map(|l| l.trim_matches(',').to_owned()).collect();
        lines.sort();
        lines
    };
    // Sorted as text: the video's width and the audio's rate.
    assert_eq!(streams(""), ["320", "44100"]);
    assert_eq!(streams("?aindex=1"), ["22050", "320"]);
    assert_eq!(streams("?vindex=1&aindex=0"), ["160", "44100"]);
}

//! DASH end to end: ffmpeg publishes over RTMP, sluice writes `dash_path` and serves it over
//! HTTP, and ffmpeg/ffprobe, GStreamer's dashdemux and dash.js (headless Chromium) read it back.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// `extra` may set `dash_fragment` (1s otherwise).
fn dash_server(dir: &TempDir, extra: &str) -> (Server, PathBuf) {
    let dash = dir.path("dash");
    let fragment = if extra.contains("dash_fragment") { "" } else { "dash_fragment 1s;" };
    let server = Server::start(&format!("dash on; dash_path {}; {fragment} {extra}", dash.display()));
    (server, dash)
}

/// ffprobe's streams of an MPD (it lists each stream of the DASH program twice: once for the
/// program, once on its own).
fn dash_streams(url: &str) -> Vec<String> {
    let mut streams = ffprobe_streams(url);
    streams.dedup();
    streams
}

/// The MPD over HTTP once it lists `min` video fragments.
fn mpd_with(server: &Server, path: &str, min: usize) -> String {
    wait_for(&format!("{min} fragments in {path}"), Duration::from_secs(40), || {
        let (status, text) = http_get(server.http_port, path);
        (status == 200 && video_timeline(&text).len() >= min).then_some(text)
    })
}

fn video_timeline(mpd: &str) -> Vec<(u64, u64)> {
    timeline(mpd, "m4v")
}

fn gone(files: &[PathBuf]) -> bool {
    files.iter().all(|f| !f.exists())
}

/// ffmpeg reads the live MPD over HTTP from its first fragments to the end of the stream, and
/// ffprobe sees H.264 and AAC; files are named as nginx-rtmp names them; when the publisher
/// stops the MPD turns static, and `dash_cleanup` removes everything `dash_playlist_length` later.
#[test]
fn ffmpeg_reads_live_dash_for_the_whole_stream_then_it_turns_static_and_is_cleaned_up() {
    let dir = TempDir::new("dash-flat");
    let (server, dash) = dash_server(&dir, "dash_playlist_length 4s;");
    let mut publisher = ffmpeg_publish(&server.url("cam"), 12, 25);
    let mpd = mpd_with(&server, "/dash/cam.mpd", 1);
    assert_eq!(attr(&mpd, "MPD", "type"), Some("dynamic"), "{mpd}");
    let out = dir.path("read.ts");
    let mpd_url = format!("http://127.0.0.1:{}/dash/cam.mpd", server.http_port);
    let mut reader =
        ffmpeg_quiet(&["-i", &mpd_url, "-map", "0", "-c", "copy", "-f", "mpegts", "-y", out.to_str().unwrap()]);
    assert_eq!(dash_streams(&mpd_url), ["aac", "h264,640,360"]);
    // nginx-rtmp's names: NAME.mpd, NAME-init.m4v/.m4a, NAME-T.m4v/.m4a.
    let mpd = mpd_with(&server, "/dash/cam.mpd", 3);
    for f in ["cam.mpd", "cam-init.m4v", "cam-init.m4a"] {
        assert!(file_exists_nonempty(&dash.join(f)), "{f}");
    }
    let (t, _) = video_timeline(&mpd)[0];
    assert!(file_exists_nonempty(&dash.join(format!("cam-{t}.m4v"))), "{mpd}");
    let (t, _) = timeline(&mpd, "m4a")[0];
    assert!(file_exists_nonempty(&dash.join(format!("cam-{t}.m4a"))), "{mpd}");
    assert!(wait_timeout(&mut publisher.0, Duration::from_secs(40)).is_some_and(|s| s.success()), "publisher");
    let static_mpd = wait_for("a static MPD", Duration::from_secs(10), || {
        let (status, text) = http_get(server.http_port, "/dash/cam.mpd");
        (status == 200 && text.contains("type=\"static\"")).then_some(text)
    });
    assert!(attr(&static_mpd, "MPD", "mediaPresentationDuration").is_some(), "{static_mpd}");
    assert_eq!(std::fs::read_to_string(dash.join("cam.mpd")).unwrap(), static_mpd, "the file says the same");
    // What is left to clean up: the MPD, the inits, the window's fragments.
    let listed: Vec<PathBuf> = std::fs::read_dir(&dash).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(listed.len() >= 3 + 4, "{listed:?}");
    // ffmpeg's DASH reader does not notice the end (it keeps asking for what would follow).
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill").arg("-INT").arg(reader.0.id().to_string()).status();
    wait_timeout(&mut reader.0, Duration::from_secs(10));
    let seconds = media_seconds(&out);
    assert!(seconds >= 9.0, "ffmpeg read {seconds} s of 12 s");
    wait_for("dash_cleanup", Duration::from_secs(15), || gone(&listed).then_some(()));
    assert_eq!(http_get(server.http_port, "/dash/cam.mpd").0, 404);
}

/// What ffprobe says a media file lasts.
fn media_seconds(file: &Path) -> f64 {
    let out = run_timeout(
        Command::new("ffprobe").args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"]).arg(file),
        Duration::from_secs(30),
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0.0)
}

/// `dash_nested`: NAME/index.mpd, NAME/init.m4v, NAME/T.m4v; ffprobe reads it over HTTP; with
/// `dash_cleanup off` the files stay after the stream ends.
#[test]
fn nested_names_and_files_kept_without_cleanup() {
    let dir = TempDir::new("dash-nested");
    let (server, dash) = dash_server(&dir, "dash_nested on; dash_cleanup off; dash_playlist_length 2s;");
    let mut publisher = ffmpeg_publish(&server.url("cam"), 6, 25);
    let mpd = mpd_with(&server, "/dash/cam/index.mpd", 2);
    assert!(mpd.contains("media=\"$Time$.m4v\" initialization=\"init.m4v\""), "{mpd}");
    for f in ["cam/index.mpd", "cam/init.m4v", "cam/init.m4a"] {
        assert!(file_exists_nonempty(&dash.join(f)), "{f}");
    }
    let (t, _) = video_timeline(&mpd)[0];
    assert!(file_exists_nonempty(&dash.join(format!("cam/{t}.m4v"))));
    let url = format!("http://127.0.0.1:{}/dash/cam/index.mpd", server.http_port);
    assert_eq!(dash_streams(&url), ["aac", "h264,640,360"]);
    assert!(wait_timeout(&mut publisher.0, Duration::from_secs(30)).is_some());
    wait_for("a static MPD", Duration::from_secs(10), || {
        std::fs::read_to_string(dash.join("cam/index.mpd")).ok().filter(|t| t.contains("type=\"static\""))
    });
    // Past the window and the linger: still there.
    std::thread::sleep(Duration::from_secs(4));
    assert!(file_exists_nonempty(&dash.join("cam/index.mpd")) && file_exists_nonempty(&dash.join("cam/init.m4v")));
    let fragments = std::fs::read_dir(dash.join("cam")).unwrap().count();
    assert!(fragments > 6, "every fragment stays: {fragments} files");
}

/// The checks DASH-IF's conformance tool makes that can be run here (no network): the MPD
/// validates against MPEG's XSD when it is given (`validate_against_the_xsd`); the
/// MPD is well-formed XML (Python's parser), has the attributes the live profile requires, its
/// timelines are contiguous, every listed segment and init segment is served, each media
/// segment's `tfdt` is its `S@t`, video segments start with a sync sample (`startWithSAP="1"`),
/// and the timeline agrees with the wall clock (`availabilityStartTime` + the end of the last
/// segment is `publishTime` within a fragment: players find the live edge where it is).
#[test]
fn the_live_mpd_passes_the_conformance_checks_that_run_offline() {
    let dir = TempDir::new("dash-conf");
    let (server, _dash) = dash_server(&dir, "");
    let _publisher = ffmpeg_publish(&server.url("cam"), 15, 25);
    let mpd = mpd_with(&server, "/dash/cam.mpd", 4);
    let xml = dir.path("cam.mpd");
    std::fs::write(&xml, &mpd).unwrap();
    let parsed = run_timeout(
        Command::new("python3").args(["-c", "import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); print(d.documentElement.tagName, d.documentElement.namespaceURI)"]).arg(&xml),
        Duration::from_secs(30),
    );
    assert!(parsed.status.success(), "not well-formed: {}\n{mpd}", String::from_utf8_lossy(&parsed.stderr));
    assert_eq!(String::from_utf8_lossy(&parsed.stdout).trim(), "MPD urn:mpeg:dash:schema:mpd:2011");
    validate_against_the_xsd(&xml);
    for a in ["availabilityStartTime", "publishTime", "minimumUpdatePeriod", "minBufferTime", "timeShiftBufferDepth"] {
        assert!(attr(&mpd, "MPD", a).is_some(), "MPD@{a}: {mpd}");
    }
    assert!(attr(&mpd, "MPD", "profiles").unwrap().contains("urn:mpeg:dash:profile:isoff-live:2011"));
    let publish = attr(&mpd, "MPD", "publishTime").unwrap().to_string();
    let start = attr(&mpd, "MPD", "availabilityStartTime").unwrap().to_string();
    let elapsed_ms = iso_ms(&publish) - iso_ms(&start);
    for (ext, timescale) in [("m4v", 1000u64), ("m4a", 44_100)] {
        let line = timeline(&mpd, ext);
        assert!(line.len() >= 4, "{ext}: {mpd}");
        for w in line.windows(2) {
            assert_eq!(w[0].0 + w[0].1, w[1].0, "{ext} timeline is contiguous: {line:?}");
        }
        let (init_status, _) = http_get(server.http_port, &format!("/dash/cam-init.{ext}"));
        assert_eq!(init_status, 200);
        let (t, d) = line[line.len() - 1];
        let end = (t + d) as i64;
        assert!(
            (end - elapsed_ms).abs() <= 1000,
            "{ext} ends at {end} ms, {elapsed_ms} ms after availabilityStartTime"
        );
        for &(t, _) in &line {
            let body = fetch(server.http_port, &format!("/dash/cam-{t}.{ext}"));
            let moof = fmp4::find(&body, b"moof").expect("a moof");
            let runs = fmp4::parse_moof(&body[moof.offset..moof.end()]).unwrap();
            let tfdt = runs[0].base_decode_time.unwrap();
            assert!((tfdt * 1000 / timescale).abs_diff(t) <= 1, "{ext} {t}: tfdt {tfdt}");
            if ext == "m4v" {
                assert!(runs[0].samples[0].is_sync(), "video segment {t} starts with a SAP");
            }
        }
    }
}

/// With `SLUICE_DASH_XSD` set (the path of MPEG's DASH-MPD.xsd, from github.com/MPEGGroup/DASHSchema,
/// with its xlink.xsd import resolvable offline) and a Python with lxml (`SLUICE_XSD_PYTHON`,
/// default `python3`): the MPD validates against the schema. Without them this step is skipped
/// (the schema is not fetchable here: no network beyond package registries).
fn validate_against_the_xsd(mpd: &Path) {
    let Some(xsd) = std::env::var_os("SLUICE_DASH_XSD") else {
        eprintln!("XSD validation skipped: SLUICE_DASH_XSD is not set");
        return;
    };
    let python = std::env::var_os("SLUICE_XSD_PYTHON").unwrap_or_else(|| "python3".into());
    let script = "import sys\nfrom lxml import etree\ns = etree.XMLSchema(etree.parse(sys.argv[1]))\nok = s.validate(etree.parse(sys.argv[2]))\nprint(s.error_log)\nsys.exit(0 if ok else 1)";
    let out = run_timeout(Command::new(python).args(["-c", script]).arg(xsd).arg(mpd), Duration::from_secs(60));
    assert!(
        out.status.success(),
        "the MPD does not validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` as Unix ms.
fn iso_ms(s: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000 + n(20..23)
}

/// A body over HTTP, bytes as they are.
fn fetch(port: u16, path: &str) -> Vec<u8> {
    let out = run_timeout(
        Command::new("curl").args(["-s", "-f", "--max-time", "20"]).arg(format!("http://127.0.0.1:{port}{path}")),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "GET {path}");
    out.stdout
}

/// GStreamer's `dashdemux` (through playbin) plays the live stream for 8 s without an error.
#[test]
fn gstreamer_dashdemux_plays_live_dash() {
    let has = Command::new("gst-inspect-1.0").arg("dashdemux").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !has.is_ok_and(|s| s.success()) {
        eprintln!("skipped: GStreamer's dashdemux is not installed");
        return;
    }
    let dir = TempDir::new("dash-gst");
    let (server, _dash) = dash_server(&dir, "");
    let _publisher = ffmpeg_publish(&server.url("cam"), 25, 25);
    mpd_with(&server, "/dash/cam.mpd", 2);
    let uri = format!("http://127.0.0.1:{}/dash/cam.mpd", server.http_port);
    let mut gst = Command::new("gst-launch-1.0")
        .args([
            "-q",
            "playbin",
            &format!("uri={uri}"),
            "video-sink=fakesink sync=true",
            "audio-sink=fakesink sync=true",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gst-launch-1.0");
    let early = wait_timeout(&mut gst, Duration::from_secs(8));
    let _ = gst.kill();
    let out = gst.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(early.is_none(), "gst-launch stopped early ({early:?}): {text}\nlog:\n{}", server.log());
    assert!(!text.contains("ERROR"), "{text}");
}

fn browser_modules() -> PathBuf {
    let dir = std::env::var_os("SLUICE_BROWSER_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser/node_modules"));
    assert!(
        dir.join(DASHJS).exists() && dir.join("playwright-core").exists(),
        "dashjs and playwright-core are not in {}: run scripts/test, which installs them with Chromium",
        dir.display()
    );
    dir
}

const DASHJS: &str = "dashjs/dist/dash.all.min.js";

/// dash.js (npm `dashjs@4`) in headless Chromium plays the live MPD for 30 s of media without
/// stalling, video and audio.
#[test]
fn dashjs_plays_live_dash_in_chromium_for_30_seconds() {
    let modules = browser_modules();
    let dir = TempDir::new("dash-js");
    let (server, dash) = dash_server(&dir, "dash_fragment 2s; dash_playlist_length 10s;");
    let _publisher = ffmpeg_publish(&server.url("cam"), 60, 25);
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    std::fs::create_dir_all(&dash).unwrap();
    // Same origin: the page and the library are served from dash_path.
    std::fs::copy(here.join("dashjs.html"), dash.join("dashjs.html")).unwrap();
    std::fs::copy(modules.join(DASHJS), dash.join("dash.all.min.js")).unwrap();
    mpd_with(&server, "/dash/cam.mpd", 2);
    let verdict = play_dashjs(&server, &modules, "cam.mpd", 30, true);
    assert!(verdict.contains("\"width\":640") && verdict.contains("\"dynamic\":true"), "{verdict}");
    assert!(verdict.contains("\"audioTracks\":1"), "{verdict}");
}

/// dash.js plays `mpd` (in dash_path, next to the page) for `secs` s of media; its verdict.
/// `strict`: without a stall (else: without an error).
fn play_dashjs(server: &Server, modules: &Path, mpd: &str, secs: u32, strict: bool) -> String {
    let url = format!("http://127.0.0.1:{}/dash/dashjs.html?src={mpd}&secs={secs}", server.http_port);
    let (verdicts, console) = chromium_verdicts(modules, &[url], Duration::from_secs(u64::from(secs) + 45));
    let verdict = verdicts.join("\n");
    let played = if strict {
        verdict.contains("\"ok\":true")
    } else {
        !verdict.contains("\"error\"") && verdict.contains("\"advanced\"")
    };
    assert!(played, "dash.js did not play: {verdict}\nconsole:\n{console}\nlog:\n{}", server.log());
    verdict
}

/// Variants (`hls_variant` groups, transcode ladders) are Representations of one AdaptationSet
/// in `BASE_abr.mpd`: ffprobe sees both sizes, dash.js plays 10 s of it (switching between them
/// by bandwidth), and a variant that stops leaves it.
#[test]
fn variants_are_representations_of_one_variant_mpd() {
    let modules = browser_modules();
    let dir = TempDir::new("dash-variants");
    let (server, dash) =
        dash_server(&dir, "dash_fragment 2s; hls_variant _hi BANDWIDTH=800000; hls_variant _lo BANDWIDTH=300000;");
    let mut hi = ffmpeg_publish_pattern(&server.url("cam_hi"), "640x360", 40, 50);
    let _lo = ffmpeg_publish_pattern(&server.url("cam_lo"), "320x180", 60, 50);
    let mpd = wait_for("both variants in the variant MPD", Duration::from_secs(40), || {
        let (status, text) = http_get(server.http_port, "/dash/cam_abr.mpd");
        (status == 200 && text.matches("<Representation").count() == 4).then_some(text)
    });
    assert_eq!(mpd.matches("<AdaptationSet").count(), 2, "{mpd}");
    assert!(mpd.contains("id=\"cam_hi_H264\"") && mpd.contains("id=\"cam_lo_H264\""), "{mpd}");
    assert!(mpd.contains("media=\"cam_lo-$Time$.m4v\""), "{mpd}");
    let xml = dir.path("cam_abr.mpd");
    std::fs::write(&xml, &mpd).unwrap();
    validate_against_the_xsd(&xml);
    let url = format!("http://127.0.0.1:{}/dash/cam_abr.mpd", server.http_port);
    let streams = dash_streams(&url);
    assert!(
        streams.contains(&"h264,640,360".to_string()) && streams.contains(&"h264,320,180".to_string()),
        "{streams:?}"
    );
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    std::fs::copy(here.join("dashjs.html"), dash.join("dashjs.html")).unwrap();
    std::fs::copy(modules.join(DASHJS), dash.join("dash.all.min.js")).unwrap();
    // Variants are cut at their own keyframes (segments not aligned): switching may stall a moment.
    play_dashjs(&server, &modules, "cam_abr.mpd", 10, false);
    let _ = hi.0.kill();
    wait_for("the stopped variant leaves", Duration::from_secs(20), || {
        let (_, text) = http_get(server.http_port, "/dash/cam_abr.mpd");
        (text.matches("<Representation").count() == 2 && !text.contains("cam_hi")).then_some(())
    });
}

/// `ffmpeg ARGS... -f flv URL` with the Enhanced RTMP ffmpeg (HEVC, AV1, Opus in FLV).
fn publish_enhanced(url: &str, args: &[&str], secs: u32) -> Proc {
    spawn_quiet(
        Command::new(enhanced_ffmpeg())
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", &secs.to_string()])
            .args(args)
            .args(["-f", "flv", url]),
        "the Enhanced RTMP ffmpeg runs",
    )
}

/// Beyond nginx-rtmp: HEVC with Opus, and AV1 with AAC, from Enhanced RTMP, are packaged with
/// their sample entries (`hvc1`, `av01`, `Opus`) and RFC 6381 codec strings, and read back.
#[test]
fn hevc_opus_and_av1_are_packaged_with_their_codec_strings() {
    let dir = TempDir::new("dash-codecs");
    let (server, _dash) = dash_server(&dir, "");
    let hevc_opus = [
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error:keyint=25",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "libopus",
        "-b:a",
        "64k",
    ];
    let av1_aac =
        ["-c:v", "libsvtav1", "-preset", "12", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k"];
    let _a = publish_enhanced(&server.url("hevc"), &hevc_opus, 10);
    let _b = publish_enhanced(&server.url("av1"), &av1_aac, 10);
    let cases = [
        (
            "hevc",
            "id=\"hevc_H265\" codecs=\"hvc1.",
            "id=\"hevc_OPUS\" codecs=\"opus\"",
            ["hevc,hvc1,640,360", "opus,Opus"],
        ),
        (
            "av1",
            "id=\"av1_AV1\" codecs=\"av01.0.",
            "id=\"av1_AAC\" codecs=\"mp4a.40.2\"",
            ["aac,mp4a", "av1,av01,640,360"],
        ),
    ];
    for (name, video, audio, probed) in cases {
        let mpd = mpd_with(&server, &format!("/dash/{name}.mpd"), 2);
        assert!(mpd.contains(video) && mpd.contains(audio), "{mpd}");
        let out = run_timeout(
            Command::new("ffprobe")
                .args(["-v", "error", "-show_entries", "stream=codec_name,codec_tag_string,width,height"])
                .args(["-of", "csv=p=0", &format!("http://127.0.0.1:{}/dash/{name}.mpd", server.http_port)]),
            Duration::from_secs(30),
        );
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end_matches(',').to_string())
            .filter(|l| !l.is_empty())
            .collect();
        lines.sort();
        lines.dedup();
        assert_eq!(lines, probed, "{name}");
    }
}

/// A name published again while the earlier publish's files linger: the new timeline starts
/// after the old one (no fragment name is reused), the old task's cleanup leaves the new
/// publish's MPD and init segments alone, and both publishes' files go once the last one ends.
#[test]
fn a_name_published_again_continues_after_the_earlier_timeline() {
    let dir = TempDir::new("dash-again");
    let (server, dash) = dash_server(&dir, "dash_playlist_length 3s;");
    let mut first = ffmpeg_publish(&server.url("cam"), 4, 25);
    mpd_with(&server, "/dash/cam.mpd", 2);
    assert!(wait_timeout(&mut first.0, Duration::from_secs(30)).is_some());
    let old = wait_for("the first MPD static", Duration::from_secs(10), || {
        let (status, text) = http_get(server.http_port, "/dash/cam.mpd");
        (status == 200 && text.contains("type=\"static\"")).then_some(text)
    });
    let old_end = video_timeline(&old).last().map(|(t, d)| t + d).unwrap();
    let mut second = ffmpeg_publish(&server.url("cam"), 8, 25);
    let new = wait_for("the second publish's MPD", Duration::from_secs(30), || {
        let (status, text) = http_get(server.http_port, "/dash/cam.mpd");
        (status == 200 && text.contains("type=\"dynamic\"") && video_timeline(&text).len() >= 2).then_some(text)
    });
    let new_start = video_timeline(&new)[0].0;
    assert!(new_start > old_end, "the new timeline ({new_start}) starts after the old one ({old_end})");
    // Past the first publish's linger: its cleanup ran, the second's files are whole.
    std::thread::sleep(Duration::from_secs(4));
    assert!(file_exists_nonempty(&dash.join("cam-init.m4v")) && file_exists_nonempty(&dash.join("cam.mpd")));
    let url = format!("http://127.0.0.1:{}/dash/cam.mpd", server.http_port);
    assert_eq!(dash_streams(&url), ["aac", "h264,640,360"]);
    assert!(wait_timeout(&mut second.0, Duration::from_secs(30)).is_some());
    wait_for("everything cleaned up", Duration::from_secs(20), || {
        std::fs::read_dir(&dash).unwrap().next().is_none().then_some(())
    });
}

/// A shutdown writes the static MPD and leaves the files (as HLS does).
#[test]
fn shutdown_leaves_a_static_mpd() {
    let dir = TempDir::new("dash-stop");
    let (mut server, dash) = dash_server(&dir, "");
    let _publisher = ffmpeg_publish(&server.url("cam"), 30, 25);
    mpd_with(&server, "/dash/cam.mpd", 2);
    assert!(server.terminate().success(), "log:\n{}", server.log());
    let text = std::fs::read_to_string(dash.join("cam.mpd")).unwrap();
    assert!(text.contains("type=\"static\""), "{text}");
    for (t, _) in video_timeline(&text) {
        assert!(file_exists_nonempty(&dash.join(format!("cam-{t}.m4v"))), "{t}");
    }
}

/// The server for the low-latency tests: 4 s fragments in 200 ms chunks.
fn low_latency_server(dir: &TempDir) -> (Server, PathBuf) {
    dash_server(dir, "dash_fragment 4s; dash_playlist_length 20s; dash_low_latency on; dash_part_duration 200ms;")
}

/// The start of a video fragment that has just begun being written: the last `<S>` of the MPD
/// (listed at the nominal length before it is complete) the moment a new one appears, so the
/// test has most of a fragment's length before it completes.
fn fragment_in_progress(server: &Server, dash: &Path) -> u64 {
    let mut seen = None;
    wait_for("a video fragment beginning", Duration::from_secs(40), || {
        let (status, mpd) = http_get(server.http_port, "/dash/cam.mpd");
        let timeline = video_timeline(&mpd);
        let (t, _) = *timeline.last().filter(|_| status == 200 && timeline.len() >= 2)?;
        let new = seen.is_some_and(|s| s != t);
        seen = Some(t);
        (new && !dash.join(format!("cam-{t}.m4v")).exists()).then_some(t)
    })
}

/// Low-latency DASH (`dash_low_latency`): the MPD says `availabilityTimeOffset` (fragment − part),
/// `availabilityTimeComplete="false"`, a latency target and the server's clock (`/utc`, which
/// answers); a GET of the fragment being written is answered at once, chunked: its first chunks
/// (`styp`, `moof`, `mdat`) arrive while the fragment is not complete (not on disk, nothing after
/// it listed), the rest as they are written, and the whole answer is the file written at the end.
/// A fragment two ahead is 404 at once; ffprobe reads the MPD.
#[test]
fn low_latency_dash_serves_the_fragment_being_written_chunk_by_chunk() {
    use std::io::Read;
    let dir = TempDir::new("dash-ll");
    let (server, dash) = low_latency_server(&dir);
    let _publisher = ffmpeg_publish(&server.url("cam"), 40, 50);
    let mpd = mpd_with(&server, "/dash/cam.mpd", 2);
    for want in [
        "availabilityTimeOffset=\"3.800\" availabilityTimeComplete=\"false\"",
        "<Latency target=\"1500\"",
        "<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=\"/utc\"/>",
        "minimumUpdatePeriod=\"PT0.500S\"",
    ] {
        assert!(mpd.contains(want), "{want} missing: {mpd}");
    }
    let xml = dir.path("ll.mpd");
    std::fs::write(&xml, &mpd).unwrap();
    validate_against_the_xsd(&xml);
    let (status, utc) = http_get(server.http_port, "/utc");
    assert!(status == 200 && utc.len() == 24 && utc.ends_with('Z') && utc.contains('T'), "{status} {utc}");
    let mpd_url = format!("http://127.0.0.1:{}/dash/cam.mpd", server.http_port);
    assert_eq!(dash_streams(&mpd_url), ["aac", "h264,640,360"]);

    let t = fragment_in_progress(&server, &dash);
    let file = dash.join(format!("cam-{t}.m4v"));
    // The header block and the first chunk of the body.
    let (mut conn, mut raw, head) = get_first_bytes(server.http_port, &format!("/dash/cam-{t}.m4v"));
    let complete_now = file.exists();
    let (_, mpd_now) = http_get(server.http_port, "/dash/cam.mpd");
    let headers = String::from_utf8_lossy(&raw[..head]).to_lowercase();
    assert!(headers.starts_with("http/1.1 200"), "{headers}");
    assert!(headers.contains("transfer-encoding: chunked") && headers.contains("content-type: video/mp4"), "{headers}");
    assert!(!complete_now, "bytes came before the fragment was complete");
    assert!(video_timeline(&mpd_now).iter().all(|(s, _)| *s <= t), "nothing after it yet: {mpd_now}");
    let first = dechunk_prefix(&raw[head + 4..]);
    assert_eq!(&first[4..8], b"styp", "the fragment starts with its styp");
    // Two ahead: not waited for.
    let started = std::time::Instant::now();
    assert_eq!(http_get(server.http_port, &format!("/dash/cam-{}.m4v", t + 8000)).0, 404);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    // The rest, until the fragment is complete: exactly the file written then.
    conn.read_to_end(&mut raw).unwrap();
    let body = dechunk(&raw[head + 4..]).expect("a complete chunked body");
    wait_for("the complete fragment on disk", Duration::from_secs(10), || file.exists().then_some(()));
    assert_eq!(body, std::fs::read(&file).unwrap(), "the chunks are the fragment");
    let kinds = mp4_boxes(&body);
    assert!(kinds.len() > 3 && kinds.iter().filter(|k| *k == "moof").count() > 1, "chunks: {kinds:?}");
}

/// The top-level box types of an MP4 byte string.
fn mp4_boxes(mut data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while data.len() >= 8 {
        let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&data[4..8]).into_owned());
        if size < 8 || size > data.len() {
            break;
        }
        data = &data[size..];
    }
    out
}

/// A number field of the page's JSON verdict.
fn verdict_number(verdict: &str, field: &str) -> Option<f64> {
    let at = verdict.find(&format!("\"{field}\":"))? + field.len() + 3;
    let rest = &verdict[at..];
    rest[..rest.find([',', '}'])?].parse().ok()
}

/// dash.js (4.7, in headless Chromium) turns its low-latency mode on for the low-latency MPD
/// (`availabilityTimeComplete="false"`), follows its `ServiceDescription` and plays 20 s of media
/// with a live latency it reports below 3 s on average and 3.5 s at worst over the last 10 s. The
/// fragments are 4 s long: a player that gets each fragment only once it is complete cannot play less than
/// a fragment behind the live edge (the start of a fragment is shown at the earliest when its end
/// has been written), so this holds only with chunked delivery.
#[test]
fn dashjs_plays_low_latency_dash_less_than_a_fragment_behind_live() {
    let modules = browser_modules();
    let dir = TempDir::new("dash-ll-js");
    let (server, dash) = low_latency_server(&dir);
    let _publisher = ffmpeg_publish(&server.url("cam"), 120, 50);
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    std::fs::create_dir_all(&dash).unwrap();
    std::fs::copy(here.join("dashjs.html"), dash.join("dashjs.html")).unwrap();
    std::fs::copy(modules.join(DASHJS), dash.join("dash.all.min.js")).unwrap();
    mpd_with(&server, "/dash/cam.mpd", 2);
    let verdict = play_dashjs(&server, &modules, "cam.mpd", 20, false);
    eprintln!("dash.js low latency: {verdict}");
    let mean = verdict_number(&verdict, "latencyMean").unwrap_or(f64::MAX);
    let worst = verdict_number(&verdict, "latencyMax").unwrap_or(f64::MAX);
    // 1.5 s is the target; dash.js seeks back to it past the MPD's maximum, 3 s.
    assert!(mean < 3.0 && worst < 3.5, "latency mean {mean} s, worst {worst} s (fragments: 4 s): {verdict}");
    assert!(verdict.contains("\"width\":640") && verdict.contains("\"dynamic\":true"), "{verdict}");
}

/// A transcode ladder's variant MPD (`NAME_abr.mpd`): the source and its renditions are
/// Representations of one video AdaptationSet; dash.js plays it from its first seconds (the
/// renditions start later than the source: fragments from before the presentation's start are
/// not listed, else the player stalled there), and ffprobe over HTTP sees every one at its size.
#[test]
fn a_transcode_ladders_variant_mpd_lists_the_source_and_every_rendition() {
    let modules = browser_modules();
    let dir = TempDir::new("dash-ladder");
    let (server, dash) = dash_server(&dir, "dash_fragment 2s; transcode 240p 300k; transcode 180p 200k;");
    let _publisher = ffmpeg_publish_pattern(&server.url("cam"), "640x360", 90, 50);
    let ids = ["cam_H264", "cam_240p_H264", "cam_180p_H264"];
    let mpd = wait_for("the ladder in the variant MPD", Duration::from_secs(90), || {
        let (status, text) = http_get(server.http_port, "/dash/cam_abr.mpd");
        let all = ids.iter().all(|id| text.contains(&format!("id=\"{id}\"")));
        // Each listed, the MPD younger than dash.js's live delay (4 fragments): the player
        // starts at the presentation's start, where the members' first fragments are.
        (status == 200 && all && timeline(&text, "m4v").len() >= 2).then_some(text)
    });
    assert_eq!(mpd.matches("<AdaptationSet").count(), 2, "{mpd}");
    assert!(mpd.contains("media=\"cam_240p-$Time$.m4v\"") && mpd.contains("media=\"cam-$Time$.m4v\""), "{mpd}");
    let xml = dir.path("cam_abr.mpd");
    std::fs::write(&xml, &mpd).unwrap();
    validate_against_the_xsd(&xml);
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    std::fs::copy(here.join("dashjs.html"), dash.join("dashjs.html")).unwrap();
    std::fs::copy(modules.join(DASHJS), dash.join("dash.all.min.js")).unwrap();
    // Renditions are cut at their own keyframes (not aligned): a switch may stall a moment.
    play_dashjs(&server, &modules, "cam_abr.mpd", 8, false);
    // ffmpeg's DASH reader on the MPD, older by now.
    let url = format!("http://127.0.0.1:{}/dash/cam_abr.mpd", server.http_port);
    let streams = dash_streams(&url);
    for size in ["640,360", ",240", ",180"] {
        assert!(streams.iter().any(|s| s.starts_with("h264,") && s.contains(size)), "{size} in {streams:?}");
    }
}

//! One set of CMAF segments for HLS and DASH: with `hls_fragment_type fmp4` and `dash on`, the
//! HLS writer splits video and audio into separate fMP4 tracks, `NAME.m3u8` becomes a master
//! playlist, and the MPD lists the same files (hard links under `dash_path`). ffprobe reads both
//! over HTTP, hls.js and dash.js play them in headless Chromium.

mod cmaf_util;
mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cmaf_util::*;
use common::*;

/// HLS: `NAME.m3u8` is a master playlist with the video playlist and an audio rendition, each
/// listing single-track fMP4 segments; ffprobe reads video and audio from it. DASH: the MPD lists
/// the same segments (no DASH packager runs: one log line says so), ffprobe reads both tracks
/// from it; every segment under `dash_path` is the same file (inode) as one under `hls_path`,
/// written once. When the publisher stops, the MPD turns static and the playlists end.
#[test]
fn hls_and_dash_serve_one_set_of_cmaf_segments() {
    let dir = TempDir::new("cmaf");
    let (server, hls, dash) = shared_server(&dir, "dash_playlist_length 20s;");
    let mut publisher = ffmpeg_publish(&server.url("cam"), 14, 25);
    let mpd = mpd_with(&server, "/dash/cam.mpd", 3);
    assert_eq!(attr(&mpd, "MPD", "type"), Some("dynamic"), "{mpd}");
    let log = server.log();
    assert!(log.contains("dash: the MPD lists the HLS segments"), "{log}");
    assert!(!log.contains("dash: start"), "no DASH packager of its own: {log}");

    // HLS: a master playlist tying the video playlist to an audio rendition.
    let (status, master) = http_get(server.http_port, "/hls/cam.m3u8");
    assert_eq!(status, 200);
    assert!(master.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\""), "{master}");
    assert!(master.contains("URI=\"cam-audio.m3u8\""), "{master}");
    assert!(master.contains("AUDIO=\"audio\"\ncam-video.m3u8\n"), "{master}");
    let (_, video) = http_get(server.http_port, "/hls/cam-video.m3u8");
    let (_, audio) = http_get(server.http_port, "/hls/cam-audio.m3u8");
    assert!(video.contains("#EXT-X-MAP:URI=\"cam-") && video.contains("-init.mp4\""), "{video}");
    assert!(audio.contains("-init.a.mp4\"") && audio.contains(".a.m4s\n"), "{audio}");
    let hls_url = format!("http://127.0.0.1:{}/hls/cam.m3u8", server.http_port);
    assert_eq!(streams(&hls_url), ["aac", "h264,640,360"], "ffprobe reads both tracks from the master");

    // DASH: the MPD's segments are the HLS files.
    let mpd_url = format!("http://127.0.0.1:{}/dash/cam.mpd", server.http_port);
    assert_eq!(streams(&mpd_url), ["aac", "h264,640,360"], "ffprobe reads both tracks from the MPD");
    let mpd = mpd_with(&server, "/dash/cam.mpd", 3);
    for (ext, hls_ext) in [("m4v", ".m4s"), ("m4a", ".a.m4s")] {
        let prefix = media_prefix(&mpd, ext);
        assert!(prefix.starts_with("cam-") && prefix.len() > "cam-".len() + 1, "session in the names: {prefix}");
        let init = dash.join(format!("{prefix}init.{ext}"));
        let hls_init = same_file_in(&hls, &init).unwrap_or_else(|| panic!("{} is not an HLS file", init.display()));
        assert!(hls_init.to_str().unwrap().ends_with(if ext == "m4v" { "-init.mp4" } else { "-init.a.mp4" }));
        for (t, _) in timeline(&mpd, ext).into_iter().take(3) {
            let seg = dash.join(format!("{prefix}{t}.{ext}"));
            let meta = std::fs::metadata(&seg).unwrap_or_else(|e| panic!("{}: {e}", seg.display()));
            let twin = same_file_in(&hls, &seg).unwrap_or_else(|| panic!("{} has no HLS twin", seg.display()));
            assert!(twin.to_str().unwrap().ends_with(hls_ext), "{}", twin.display());
            assert_eq!(meta.nlink(), 2, "one file, two names: {}", seg.display());
            // Served from memory or disk, the bytes over HTTP are the file's.
            let name = seg.file_name().unwrap().to_str().unwrap();
            let body = fetch(server.http_port, &format!("/dash/{name}"));
            assert_eq!(body, std::fs::read(&seg).unwrap());
        }
    }
    // DASH-IF's offline checks, as tests/dash.rs makes them: contiguous timelines ending near
    // publishTime, each segment's tfdt its S@t, video segments starting with a sync sample.
    let mpd = mpd_with(&server, "/dash/cam.mpd", 4);
    let elapsed_ms =
        iso_ms(attr(&mpd, "MPD", "publishTime").unwrap()) - iso_ms(attr(&mpd, "MPD", "availabilityStartTime").unwrap());
    for (ext, timescale) in [("m4v", 90_000u64), ("m4a", 44_100)] {
        let line = timeline(&mpd, ext);
        assert!(line.len() >= 4, "{ext}: {mpd}");
        for w in line.windows(2) {
            assert_eq!(w[0].0 + w[0].1, w[1].0, "{ext} timeline is contiguous: {line:?}");
        }
        let (t, d) = line[line.len() - 1];
        assert!(((t + d) as i64 - elapsed_ms).abs() <= 1500, "{ext} ends at {} ms, {elapsed_ms} ms after AST", t + d);
        let prefix = media_prefix(&mpd, ext);
        for &(t, _) in &line {
            let body = fetch(server.http_port, &format!("/dash/{prefix}{t}.{ext}"));
            let moof = fmp4::find(&body, b"moof").expect("a moof");
            let runs = fmp4::parse_moof(&body[moof.offset..moof.end()]).unwrap();
            assert_eq!(runs.len(), 1, "one track a file");
            let tfdt = runs[0].base_decode_time.unwrap();
            assert_eq!(tfdt * 1000 / timescale, t, "{ext} {t}: tfdt {tfdt}");
            if ext == "m4v" {
                assert!(runs[0].samples[0].is_sync(), "video segment {t} starts with a SAP");
            }
        }
    }
    let ok = wait_timeout(&mut publisher.0, Duration::from_secs(40)).is_some_and(|s| s.success());
    assert!(ok, "publisher");
    // The publisher gone: the MPD turns static (the playlist waits hls_playlist_length for it).
    let ended = wait_for("a static MPD", Duration::from_secs(15), || {
        let (status, text) = http_get(server.http_port, "/dash/cam.mpd");
        (status == 200 && text.contains("type=\"static\"")).then_some(text)
    });
    assert!(timeline(&ended, "m4v").len() >= 10, "{ended}");
}

/// Nested names (`hls_nested`, `dash_nested`): the master `NAME/index.m3u8` points at
/// `video.m3u8` and `audio.m3u8` next to it, the MPD `NAME/index.mpd` at hard links in
/// `dash_path/NAME/`; after the stream ends both cleanups remove every file.
#[test]
fn nested_names_share_segments_and_both_cleanups_remove_them() {
    let dir = TempDir::new("cmaf-nested");
    let lengths = "hls_playlist_length 3s; dash_playlist_length 3s;";
    let (server, hls, dash) = shared_server(&dir, &format!("hls_nested on; dash_nested on; {lengths}"));
    let mut publisher = ffmpeg_publish(&server.url("n"), 7, 25);
    let mpd = mpd_with(&server, "/dash/n/index.mpd", 2);
    let (_, master) = http_get(server.http_port, "/hls/n/index.m3u8");
    assert!(master.contains("URI=\"audio.m3u8\"") && master.contains("AUDIO=\"audio\"\nvideo.m3u8\n"), "{master}");
    let (_, audio) = http_get(server.http_port, "/hls/n/audio.m3u8");
    assert!(audio.contains(".a.m4s\n"), "{audio}");
    let prefix = media_prefix(&mpd, "m4a");
    let (t, _) = timeline(&mpd, "m4a")[0];
    let seg = dash.join("n").join(format!("{prefix}{t}.m4a"));
    let twin = same_file_in(&hls.join("n"), &seg).unwrap_or_else(|| panic!("{} has no HLS twin", seg.display()));
    assert!(twin.to_str().unwrap().ends_with(".a.m4s"), "{}", twin.display());
    assert!(wait_timeout(&mut publisher.0, Duration::from_secs(30)).is_some_and(|s| s.success()), "publisher");
    let media = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d).map_or(Vec::new(), |r| r.flatten().map(|e| e.path()).collect())
    };
    wait_for("both cleanups", Duration::from_secs(30), || {
        (media(&hls.join("n")).is_empty() && media(&dash.join("n")).is_empty()).then_some(())
    });
}

/// Low-latency HLS in shared mode: the video and audio playlists list parts of their own files,
/// with the same sequence numbers; a part is fetchable; ffprobe reads both tracks from the master.
#[test]
fn low_latency_parts_are_split_too() {
    let dir = TempDir::new("cmaf-ll");
    let (server, _hls, _dash) = shared_server(&dir, "hls_low_latency on; hls_part_duration 200ms;");
    let _publisher = ffmpeg_publish(&server.url("ll"), 20, 25);
    mpd_with(&server, "/dash/ll.mpd", 2);
    let (_, video) = http_get(server.http_port, "/hls/ll-video.m3u8");
    let (_, audio) = http_get(server.http_port, "/hls/ll-audio.m3u8");
    let parts = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
            .filter_map(|a| a.split("URI=\"").nth(1)?.split('"').next().map(str::to_string))
            .collect()
    };
    let (vp, ap) = (parts(&video), parts(&audio));
    assert!(vp.len() > 3, "{video}");
    assert!(ap.iter().all(|p| p.ends_with(".a.m4s")), "{audio}");
    let renamed: Vec<String> = ap.iter().map(|p| p.replace(".a.m4s", ".m4s")).collect();
    let common = renamed.iter().filter(|p| vp.contains(p)).count();
    assert!(common + 2 >= vp.len().min(renamed.len()), "the same parts:\n{video}\n{audio}");
    let part = fetch(server.http_port, &format!("/hls/{}", ap[0]));
    assert!(part.windows(4).any(|w| w == b"moof"), "an audio part is a CMAF chunk");
    let master_url = format!("http://127.0.0.1:{}/hls/ll.m3u8", server.http_port);
    assert_eq!(streams(&master_url), ["aac", "h264,640,360"]);
}

/// Low-latency DASH on the shared segments (`dash_low_latency` with `hls_low_latency`): the MPD
/// says `availabilityTimeOffset` (`hls_fragment` − `hls_part_duration`), a latency target and the
/// server's clock; a GET of the video segment being written is answered at once, chunked, from
/// its LL-HLS parts: its first chunks (`styp`, `moof`, `mdat`) arrive while the segment is not
/// complete (not under `dash_path` yet), the rest as they are written, and the whole answer is
/// the file written at the end, the same file (inode) as the HLS segment. ffprobe reads the MPD.
#[test]
fn low_latency_dash_serves_the_shared_segment_being_written_chunk_by_chunk() {
    use std::io::Read;
    let dir = TempDir::new("cmaf-lldash");
    let (server, hls, dash) = shared_server(&dir, LOW_LATENCY);
    let _publisher = ffmpeg_publish(&server.url("cam"), 40, 50);
    let mpd = mpd_with(&server, "/dash/cam.mpd", 2);
    for want in [
        "availabilityTimeOffset=\"3.800\" availabilityTimeComplete=\"false\"",
        "<Latency target=\"1500\"",
        "<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=\"/utc\"/>",
    ] {
        assert!(mpd.contains(want), "{want} missing: {mpd}");
    }
    let mpd_url = format!("http://127.0.0.1:{}/dash/cam.mpd", server.http_port);
    assert_eq!(streams(&mpd_url), ["aac", "h264,640,360"]);

    let (prefix, t) = segment_in_progress(&server, &dash, "/dash/cam.mpd");
    let file = dash.join(format!("{prefix}{t}.m4v"));
    // The header block and the first chunk of the body.
    let (mut conn, mut raw, head) = get_first_bytes(server.http_port, &format!("/dash/{prefix}{t}.m4v"));
    let complete_now = file.exists();
    let headers = String::from_utf8_lossy(&raw[..head]).to_lowercase();
    assert!(headers.starts_with("http/1.1 200"), "{headers}");
    assert!(headers.contains("transfer-encoding: chunked") && headers.contains("content-type: video/mp4"), "{headers}");
    assert!(!complete_now, "bytes came before the segment was complete");
    let first = dechunk_prefix(&raw[head + 4..]);
    assert_eq!(&first[4..8], b"styp", "the segment starts with its styp");
    conn.read_to_end(&mut raw).unwrap();
    let body = dechunk(&raw[head + 4..]).expect("a complete chunked body");
    wait_for("the complete segment on disk", Duration::from_secs(10), || file.exists().then_some(()));
    assert_eq!(body, std::fs::read(&file).unwrap(), "the chunks are the segment");
    assert!(same_file_in(&hls, &file).is_some(), "one file for HLS and DASH");
    let kinds = mp4_boxes(&body);
    assert!(kinds.len() > 3 && kinds.iter().filter(|k| *k == "moof").count() > 1, "chunks: {kinds:?}");
}

/// `dash_low_latency` without `hls_low_latency` where the segments are shared has no parts to
/// send: said at publish, and the MPD is not low-latency.
#[test]
fn shared_low_latency_dash_without_ll_hls_parts_says_so() {
    let dir = TempDir::new("cmaf-lldash-off");
    let (server, _hls, _dash) = shared_server(&dir, "dash_low_latency on;");
    let _publisher = ffmpeg_publish(&server.url("cam"), 10, 25);
    let mpd = mpd_with(&server, "/dash/cam.mpd", 2);
    assert!(!mpd.contains("availabilityTimeOffset"), "{mpd}");
    let log = server.log();
    assert!(log.contains("dash_low_latency needs hls_low_latency here"), "{log}");
}

/// A stream named like another's split playlist (`cam-video` next to `cam`) gets no HLS (an
/// error at its publish), published first or not; `cam-video.m3u8` stays `cam`'s video playlist,
/// and DASH packages `cam-video` itself (its own MPD).
#[test]
fn a_stream_named_like_another_streams_split_playlist_gets_no_hls() {
    let dir = TempDir::new("cmaf-collide");
    let (server, _hls, _dash) = shared_server(&dir, "");
    let _shadow = ffmpeg_publish(&server.url("cam-video"), 20, 25);
    let own = wait_for("cam-video's own MPD", Duration::from_secs(40), || {
        let (status, text) = http_get(server.http_port, "/dash/cam-video.mpd");
        (status == 200 && text.contains("cam-video-$Time$.m4v")).then_some(text)
    });
    assert!(own.contains("type=\"dynamic\""), "{own}");
    let _cam = ffmpeg_publish(&server.url("cam"), 20, 25);
    mpd_with(&server, "/dash/cam.mpd", 2);
    let log = server.log();
    assert!(
        log.contains("hls: this stream's playlist would be at the path of another stream's video or audio playlist"),
        "{log}"
    );
    let (status, video) = http_get(server.http_port, "/hls/cam-video.m3u8");
    assert_eq!(status, 200);
    let uris: Vec<&str> = video.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert!(
        !uris.is_empty() && uris.iter().all(|u| u.starts_with("cam-") && !u.starts_with("cam-video")),
        "cam's: {video}"
    );
}

/// `/metrics` counts segments, not files: a split segment (a video file and an audio file)
/// is one in `sluice_hls_segments_total` and one write in `sluice_hls_segment_write_seconds`.
#[test]
fn metrics_count_a_split_segment_once() {
    let dir = TempDir::new("cmaf-metrics");
    let (hls, dash) = (dir.path("hls"), dir.path("dash"));
    let server = Server::start_conf(&format!(
        "rtmp {{ server {{ listen 127.0.0.1:{{rtmp}}; application live {{ live on; hls on; hls_path {}; \
         hls_fragment 1s; hls_playlist_length 60s; hls_fragment_type fmp4; dash on; dash_path {}; }} }} }}\n\
         http {{ server {{ listen 127.0.0.1:{{http}}; location /metrics {{ metrics on; }} }} }}\n",
        hls.display(),
        dash.display()
    ));
    let mut publisher = ffmpeg_publish(&server.url("m"), 6, 25);
    assert!(wait_timeout(&mut publisher.0, Duration::from_secs(30)).is_some_and(|s| s.success()), "publisher");
    // The MPD turns static when the last segment is written.
    wait_for("a static MPD", Duration::from_secs(20), || {
        let (status, text) = http_get(server.http_port, "/dash/m.mpd");
        (status == 200 && text.contains("type=\"static\"")).then_some(())
    });
    let (_, video) = http_get(server.http_port, "/hls/m-video.m3u8");
    let segments = video.matches("#EXTINF:").count();
    let (_, audio) = http_get(server.http_port, "/hls/m-audio.m3u8");
    assert!(segments >= 4 && audio.matches("#EXTINF:").count() == segments, "{video}\n{audio}");
    let (_, metrics) = http_get(server.http_port, "/metrics");
    let value = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(&format!("{name}{{")) && l.contains("app=\"live\""));
        line.and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(-1.0)
    };
    assert_eq!(value("sluice_hls_segments_total"), segments as f64, "{video}\n{metrics}");
    assert_eq!(value("sluice_hls_segment_write_seconds_count"), segments as f64, "{metrics}");
}

/// A publisher whose audio stops for 3.5 s: the split segments of that time have no audio file
/// (not on disk, not served); the audio playlist marks them `#EXT-X-GAP`, the video playlist has
/// no gap, every audio file listed without one exists, and the MPD's audio timeline jumps over
/// them (an `<S t=...>` after a hole of over a second).
#[test]
fn segments_without_audio_are_gaps_in_the_audio_playlist_and_the_mpd() {
    let dir = TempDir::new("cmaf-gap");
    let (server, hls, _dash) = shared_server(&dir, "hls_playlist_length 60s; dash_playlist_length 60s;");
    let url = server.url("g");
    let mut publisher = publish_with_audio_gap(&url, 12, (4.0, 7.5));
    assert!(wait_timeout(&mut publisher.0, Duration::from_secs(40)).is_some_and(|s| s.success()), "publisher");
    let mpd = wait_for("a static MPD", Duration::from_secs(20), || {
        let (status, text) = http_get(server.http_port, "/dash/g.mpd");
        (status == 200 && text.contains("type=\"static\"")).then_some(text)
    });
    let (_, audio) = http_get(server.http_port, "/hls/g-audio.m3u8");
    let (_, video) = http_get(server.http_port, "/hls/g-video.m3u8");
    assert!(!video.contains("GAP"), "{video}");
    let mut gaps = 0;
    let mut gap = false;
    for line in audio.lines() {
        if line == "#EXT-X-GAP" {
            gap = true;
        } else if !line.starts_with('#') && !line.is_empty() {
            assert_eq!(hls.join(line).exists(), !gap, "{line}: {audio}");
            if gap {
                gaps += 1;
                assert_eq!(http_get(server.http_port, &format!("/hls/{line}")).0, 404, "{line}");
            }
            gap = false;
        }
    }
    assert!(gaps >= 2, "3.5 s without audio at 1 s segments: {audio}");
    let line = timeline(&mpd, "m4a");
    let holes = line.windows(2).filter(|w| w[1].0 > w[0].0 + w[0].1 + 1000).count();
    assert_eq!(holes, 1, "{line:?}\n{mpd}");
}

/// Without DASH, fMP4 HLS stays one muxed playlist (video and audio in one moof).
#[test]
fn without_dash_fmp4_hls_stays_muxed() {
    let dir = TempDir::new("cmaf-muxed");
    let hls = dir.path("hls");
    let server =
        Server::start(&format!("hls on; hls_path {}; hls_fragment 1s; hls_fragment_type fmp4;", hls.display()));
    let _publisher = ffmpeg_publish(&server.url("m"), 8, 25);
    let playlist = wait_for("a segment", Duration::from_secs(30), || {
        let (status, text) = http_get(server.http_port, "/hls/m.m3u8");
        (status == 200 && text.contains("#EXTINF")).then_some(text)
    });
    assert!(!playlist.contains("#EXT-X-STREAM-INF") && !playlist.contains(".a.m4s"), "{playlist}");
    assert!(!hls.join("m-video.m3u8").exists());
}

/// A publisher that comes back within `hls_playlist_length`: the HLS playlists (video and audio)
/// go on after a discontinuity, the MPD turned static when it left and starts a new timeline
/// with the new publish's names.
#[test]
fn a_publisher_coming_back_continues_hls_and_starts_a_new_mpd() {
    let dir = TempDir::new("cmaf-again");
    let (server, _hls, _dash) = shared_server(&dir, "hls_playlist_length 20s;");
    let mut first = ffmpeg_publish(&server.url("r"), 5, 25);
    let mpd = mpd_with(&server, "/dash/r.mpd", 2);
    let old = media_prefix(&mpd, "m4v");
    assert!(wait_timeout(&mut first.0, Duration::from_secs(30)).is_some_and(|s| s.success()), "first publisher");
    wait_for("a static MPD", Duration::from_secs(15), || {
        let (status, text) = http_get(server.http_port, "/dash/r.mpd");
        (status == 200 && text.contains("type=\"static\"")).then_some(())
    });
    let _second = ffmpeg_publish(&server.url("r"), 20, 25);
    let mpd = wait_for("the new publish's MPD", Duration::from_secs(40), || {
        let (status, text) = http_get(server.http_port, "/dash/r.mpd");
        let fresh = status == 200 && text.contains("type=\"dynamic\"") && media_prefix(&text, "m4v") != old;
        (fresh && timeline(&text, "m4v").len() >= 2).then_some(text)
    });
    assert!(!mpd.contains(&old), "only the new publish is listed: {mpd}");
    for playlist in ["/hls/r-video.m3u8", "/hls/r-audio.m3u8"] {
        let text = wait_for("a discontinuity", Duration::from_secs(20), || {
            let (_, text) = http_get(server.http_port, playlist);
            text.contains("#EXT-X-DISCONTINUITY\n").then_some(text)
        });
        assert_eq!(text.matches("#EXT-X-MAP:").count(), 2, "each publish's init: {text}");
    }
    let mpd_url = format!("http://127.0.0.1:{}/dash/r.mpd", server.http_port);
    assert_eq!(streams(&mpd_url), ["aac", "h264,640,360"]);
}

/// Unix ms of an MPD date-time (`2026-12-06T19:30:00.123Z`).
fn iso_ms(s: &str) -> i64 {
    let n = |a: usize, b: usize| -> i64 { s[a..b].parse().unwrap() };
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19);
    secs * 1000 + n(20, 23)
}

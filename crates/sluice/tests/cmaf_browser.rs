//! One set of CMAF segments for HLS and DASH, played in headless Chromium: hls.js (also in
//! low-latency mode, and across an audio gap) on the split master playlist and dash.js (also in
//! low-latency mode) on the MPD made of the same files.
//! A binary of its own so that `scripts/run-tests` runs it in its Chromium lane.

mod cmaf_util;
mod common;

use cmaf_util::*;
use common::{ffmpeg_publish, TempDir};

/// dash.js plays the MPD made of the HLS segments (video and audio) and hls.js plays the master
/// playlist, at the same time, from one set of files.
#[test]
fn dashjs_and_hlsjs_play_the_shared_segments_in_chromium() {
    let modules = browser_modules();
    let dir = TempDir::new("cmaf-browser");
    let (server, hls, dash) =
        shared_server(&dir, "hls_fragment 2s; hls_playlist_length 12s; dash_playlist_length 12s;");
    let _publisher = ffmpeg_publish(&server.url("cam"), 60, 25);
    mpd_with(&server, "/dash/cam.mpd", 2);
    let dash_verdict = std::thread::scope(|s| {
        let d = s.spawn(|| play(&server, &modules, &dash, "dash", "dashjs.html", "src=cam.mpd", 20));
        let h = play(&server, &modules, &hls, "hls", "player.html", "src=cam.m3u8", 20);
        assert!(h.contains("\"width\":640"), "hls.js: {h}");
        d.join().unwrap()
    });
    assert!(dash_verdict.contains("\"width\":640") && dash_verdict.contains("\"audioTracks\":1"), "{dash_verdict}");
}

/// hls.js in low-latency mode plays the split low-latency master (video parts and audio parts
/// from two playlists, blocking reloads on both).
#[test]
fn hlsjs_low_latency_mode_plays_the_split_master() {
    let modules = browser_modules();
    let dir = TempDir::new("cmaf-ll-browser");
    let (server, hls, _dash) = shared_server(&dir, "hls_low_latency on; hls_part_duration 200ms;");
    let _publisher = ffmpeg_publish(&server.url("ll"), 40, 25);
    mpd_with(&server, "/dash/ll.mpd", 2);
    let verdict = play(&server, &modules, &hls, "hls", "player.html", "src=ll.m3u8&ll=1", 10);
    assert!(verdict.contains("\"lowLatency\":true") && verdict.contains("\"width\":640"), "{verdict}");
    eprintln!("hls.js low-latency, split: {verdict}");
}

/// dash.js (in headless Chromium) turns its low-latency mode on for the shared low-latency MPD
/// (`dash_low_latency` with `hls_low_latency`), follows its `ServiceDescription` and plays 20 s
/// with a live latency it reports below 3 s on average and 3.5 s at worst over the last 10 s (the
/// bounds of tests/dash.rs). Segments are 4 s long: a player that gets each segment only once it
/// is complete cannot play less than a segment behind the live edge, so this holds only with the
/// LL-HLS parts sent as chunks of the segment being written.
#[test]
fn dashjs_plays_the_shared_low_latency_mpd_less_than_a_segment_behind_live() {
    let modules = browser_modules();
    let dir = TempDir::new("cmaf-lldash-js");
    let (server, _hls, dash) = shared_server(&dir, LOW_LATENCY);
    let _publisher = ffmpeg_publish(&server.url("cam"), 120, 50);
    mpd_with(&server, "/dash/cam.mpd", 2);
    let verdict = play_as(&server, &modules, (&dash, "dash"), "dashjs.html", "src=cam.mpd", 20, false);
    eprintln!("dash.js low latency, shared segments: {verdict}");
    let mean = verdict_number(&verdict, "latencyMean").unwrap_or(f64::MAX);
    let worst = verdict_number(&verdict, "latencyMax").unwrap_or(f64::MAX);
    assert!(mean < 3.0 && worst < 3.5, "latency mean {mean} s, worst {worst} s (segments: 4 s): {verdict}");
    assert!(verdict.contains("\"width\":640") && verdict.contains("\"dynamic\":true"), "{verdict}");
}

/// hls.js plays the split master through an audio dropout: the audio playlist's `#EXT-X-GAP`
/// segments are not loaded (they have no file), and playback goes on past them.
#[test]
fn hlsjs_plays_through_an_audio_gap() {
    let modules = browser_modules();
    let dir = TempDir::new("cmaf-gap-browser");
    let (server, hls, _dash) = shared_server(&dir, "hls_playlist_length 30s;");
    let url = server.url("g");
    let _publisher = publish_with_audio_gap(&url, 60, (14.0, 17.0));
    common::wait_for("two segments", std::time::Duration::from_secs(40), || {
        let (status, text) = common::http_get(server.http_port, "/hls/g-video.m3u8");
        (status == 200 && text.matches("#EXTINF").count() >= 2).then_some(())
    });
    // From about 4 s to 26 s of the stream: across the gap at 14-17 s.
    let verdict = play_as(&server, &modules, (&hls, "hls"), "player.html", "src=g.m3u8", 18, false);
    eprintln!("hls.js across an audio gap: {verdict}");
    let (_, audio) = common::http_get(server.http_port, "/hls/g-audio.m3u8");
    assert!(audio.contains("#EXT-X-GAP"), "{audio}");
    assert!(verdict.contains("\"width\":640"), "{verdict}");
}

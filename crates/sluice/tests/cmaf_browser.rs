//! One set of CMAF segments for HLS and DASH, played in headless Chromium: hls.js (also in
//! low-latency mode) on the split master playlist and dash.js on the MPD made of the same files.
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

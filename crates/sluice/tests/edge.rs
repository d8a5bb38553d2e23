//! The edge: an application that pulls on demand from a list of origins
//! (`pull rtmp://o1/live rtmp://o2/live;`), with several sluice processes on loopback. The
//! origins run `idle_streams off`, so an origin without the stream refuses the play at once;
//! ffmpeg publishes, ffmpeg players on the edge decode, and the origins' API and logs count the
//! upstream connections.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// An origin: API on the built-in HTTP server, players of a stream nobody publishes refused.
fn origin_on(port: u16) -> Server {
    Server::start_conf_on(
        port,
        "rtmp { http_listen 127.0.0.1:{http};
  server { listen 127.0.0.1:{rtmp}; application live { live on; idle_streams off; } } }",
    )
}

/// An edge whose application `live` pulls on demand from `origins` in that order, plus
/// `extra` in the application.
fn edge(origins: &[u16], extra: &str) -> Server {
    let urls: Vec<String> = origins.iter().map(|p| format!("rtmp://127.0.0.1:{p}/live")).collect();
    Server::start_conf(&format!(
        "rtmp {{ http_listen 127.0.0.1:{{http}};
  server {{ listen 127.0.0.1:{{rtmp}}; application live {{ live on; pull {}; {extra} }} }} }}",
        urls.join(" ")
    ))
}

/// Players of `live/cam` connected to `s` now, from its API (an edge's pull is one of them).
fn players_now(s: &Server) -> usize {
    let Some(clients) = get_json(s, "/api/v1/clients") else { return 0 };
    let list = clients["clients"].as_array().cloned().unwrap_or_default();
    list.iter().filter(|c| c["role"] == "player" && c["app"] == "live" && c["name"] == "cam").count()
}

/// Plays of `cam` an origin accepted so far, from its log.
fn plays_served(origin: &Server) -> usize {
    origin.log().lines().filter(|l| l.contains(" play ") && l.contains("stream=cam")).count()
}

/// The edge's pull leg of `live/cam`, from its API.
fn pull_leg(edge: &Server) -> Option<Value> {
    let stream = get_json(edge, "/api/v1/streams/live/cam")?;
    stream["relays"].as_array()?.iter().find(|r| r["direction"] == "pull").cloned()
}

fn decoded(log: &Path, size: &str) -> usize {
    showinfo_sizes(log).get(size).copied().unwrap_or(0)
}

/// The stream is only on the second origin: the first refuses it, the edge moves on, and five
/// players share one upstream connection, which the API shows with the origin it is on.
#[test]
fn five_players_get_the_stream_from_the_second_origin_over_one_upstream() {
    let (o1, o2) = (origin_on(free_port()), origin_on(free_port()));
    let _publisher = ffmpeg_publish_pattern(&o2.url("cam"), "320x240", 120, 25);
    wait_published(&o2, "cam");
    let edge = edge(&[o1.port, o2.port], "");
    let dir = TempDir::new("edge-five");
    let log = dir.path("player.log");
    let _watching = showinfo_player(&edge.url("cam"), &log);
    poll("the first player decoding", Duration::from_secs(60), || decoded(&log, "320x240") >= 25);
    let _others: Vec<Proc> = (0..4).map(|_| ffmpeg_play(&edge.url("cam"))).collect();
    poll("five players on the edge", Duration::from_secs(30), || players_now(&edge) == 5);
    assert_eq!(players_now(&o2), 1, "one upstream connection for five players; edge log:\n{}", edge.log());
    assert_eq!(plays_served(&o2), 1, "one play reached the origin:\n{}", o2.log());
    assert!(o1.log().contains("play refused"), "the first origin was asked and refused:\n{}", o1.log());
    let leg = pull_leg(&edge).expect("the pull leg in the API");
    assert_eq!(leg["url"], format!("rtmp://127.0.0.1:{}/live", o2.port), "{leg}");
    assert_eq!((leg["connected"].as_bool(), leg["reconnects"].as_u64()), (Some(true), Some(1)), "{leg}");
}

/// The origin the edge plays from dies, and the publisher starts again on the other origin:
/// the edge fails over without its player reconnecting; the same ffmpeg process decodes both.
#[test]
fn the_edge_fails_over_when_its_origin_dies_and_its_player_keeps_playing() {
    let (o1, o2) = (origin_on(free_port()), origin_on(free_port()));
    let first = ffmpeg_publish_pattern(&o1.url("cam"), "320x240", 120, 25);
    wait_published(&o1, "cam");
    let edge = edge(&[o1.port, o2.port], "pull_reconnect 500ms;");
    let dir = TempDir::new("edge-failover");
    let log = dir.path("player.log");
    let mut player = showinfo_player(&edge.url("cam"), &log);
    poll("the player decoding the first origin", Duration::from_secs(60), || decoded(&log, "320x240") >= 25);

    drop((o1, first));
    poll("the edge to notice", Duration::from_secs(20), || edge.log().contains("upstream lost"));
    let _second = ffmpeg_publish_pattern(&o2.url("cam"), "160x120", 120, 25);
    poll("the player decoding the second origin", Duration::from_secs(60), || decoded(&log, "160x120") >= 25);
    assert!(player.0.try_wait().unwrap().is_none(), "the player never left");
    assert_eq!(players_now(&o2), 1, "{}", edge.log());
    let leg = pull_leg(&edge).expect("the pull leg in the API");
    assert_eq!(leg["url"], format!("rtmp://127.0.0.1:{}/live", o2.port), "{leg}");
    assert!(leg["reconnects"].as_u64().unwrap() >= 2, "{leg}");
}

/// A player leaves and another comes within `pull_linger`: both are served by one upstream
/// connection, which closes once the linger is over.
#[test]
fn a_player_back_within_the_linger_reuses_the_upstream() {
    let o1 = origin_on(free_port());
    let _publisher = ffmpeg_publish_pattern(&o1.url("cam"), "320x240", 120, 25);
    wait_published(&o1, "cam");
    let edge = edge(&[o1.port], "pull_linger 10s;");
    let play_for = |secs: &str| {
        let url = edge.url("cam");
        run_timeout(
            Command::new("ffmpeg").args(["-nostdin", "-loglevel", "error", "-i", &url, "-t", secs, "-f", "null", "-"]),
            Duration::from_secs(60),
        )
    };
    assert!(play_for("2").status.success(), "{}", edge.log());
    let left = Instant::now();
    assert!(play_for("2").status.success(), "{}", edge.log());
    assert_eq!(plays_served(&o1), 1, "one upstream connection for both players:\n{}", edge.log());
    poll("the upstream to close after the linger", Duration::from_secs(40), || {
        edge.log().contains("pull stopped: no players left")
    });
    assert!(left.elapsed() >= Duration::from_secs(10), "not before the linger ran out");
    poll("the origin to lose its player", Duration::from_secs(20), || players_now(&o1) == 0);
}

/// HLS on an edge: an edge application with `pull` and `hls on` writes and serves the HLS of
/// the stream it pulls, while an RTMP player keeps the on-demand pull alive, and so does a
/// `static` pull with no player at all (the second edge). ffprobe reads both edges' playlists
/// over HTTP.
#[test]
fn edges_serve_hls_of_the_streams_they_pull() {
    let o1 = origin_on(free_port());
    let _publisher = ffmpeg_publish_pattern(&o1.url("cam"), "320x240", 120, 25);
    wait_published(&o1, "cam");
    let dir = TempDir::new("edge-hls");
    let hls = |name: &str| format!("hls on; hls_path {}; hls_fragment 1s;", dir.path(name).display());
    let on_demand = edge(&[o1.port], &hls("hls"));
    let static_pull = Server::start_conf(&format!(
        "rtmp {{ http_listen 127.0.0.1:{{http}};
  server {{ listen 127.0.0.1:{{rtmp}}; application live {{ live on;
    pull rtmp://127.0.0.1:{}/live/cam name=cam static; {} }} }} }}",
        o1.port,
        hls("hls")
    ));
    let playlist = |s: &Server| format!("http://127.0.0.1:{}/hls/cam.m3u8", s.http_port);
    let probe = |s: &Server| {
        wait_for("two segments in the edge's playlist", Duration::from_secs(60), || {
            let r = curl_reply(&[], &playlist(s));
            (r.status == 200 && r.text().matches("#EXTINF").count() >= 2).then_some(())
        });
        ffprobe_streams(&playlist(s))
    };

    let _player = ffmpeg_play(&on_demand.url("cam"));
    assert!(probe(&on_demand).iter().any(|s| s == "h264,320,240"), "{}", on_demand.log());
    assert!(probe(&static_pull).iter().any(|s| s == "h264,320,240"), "{}", static_pull.log());
    assert_eq!(plays_served(&o1), 2, "one upstream per edge:\n{}", o1.log());
}

/// An HLS request alone starts the edge's on-demand pull: the first playlist request waits for
/// the playlist and gets it, ffprobe plays the edge's HLS, the requests keep one upstream past
/// `hls_playlist_length + pull_linger`, and once they stop the pull ends after both.
#[test]
fn an_hls_request_alone_starts_and_keeps_the_edges_pull() {
    let o1 = origin_on(free_port());
    let _publisher = ffmpeg_publish_pattern(&o1.url("cam"), "320x240", 120, 25);
    wait_published(&o1, "cam");
    let dir = TempDir::new("edge-hls-viewer");
    let hls = dir.path("hls");
    let edge = edge(
        &[o1.port],
        &format!("hls on; hls_path {}; hls_fragment 1s; hls_playlist_length 4s; pull_linger 2s;", hls.display()),
    );
    let url = format!("http://127.0.0.1:{}/hls/cam.m3u8", edge.http_port);

    let first = curl_reply(&[], &url);
    assert_eq!(first.status, 200, "the first request waits for the playlist; edge log:\n{}", edge.log());
    assert!(first.text().contains("#EXTINF"), "{}", first.text());
    assert!(edge.log().contains("hls: pull started for an HLS viewer"), "{}", edge.log());
    assert!(ffprobe_streams(&url).iter().any(|s| s == "h264,320,240"), "{}", edge.log());

    // Requests every second for longer than the hold and the linger together keep the pull.
    let keep_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < keep_until {
        assert_eq!(curl_reply(&[], &url).status, 200, "{}", edge.log());
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(plays_served(&o1), 1, "one upstream connection for every request:\n{}", o1.log());
    assert!(pull_leg(&edge).is_some(), "the edge's API shows the pull leg");

    let stopped = Instant::now();
    poll("the pull to end after the last request", Duration::from_secs(4 + 2 + 20), || pull_leg(&edge).is_none());
    assert!(stopped.elapsed() >= Duration::from_secs(4), "not before hls_playlist_length");
    assert!(edge.log().contains("hls: pull released"), "{}", edge.log());
    poll("the origin to lose its player", Duration::from_secs(20), || players_now(&o1) == 0);
}

/// DASH on an edge the same way: the first MPD request starts the pull, waits for an MPD that
/// lists a fragment, and ffprobe plays it.
#[test]
fn a_dash_request_alone_starts_the_edges_pull() {
    let o1 = origin_on(free_port());
    let _publisher = ffmpeg_publish_pattern(&o1.url("cam"), "320x240", 120, 25);
    wait_published(&o1, "cam");
    let dir = TempDir::new("edge-dash-viewer");
    let edge = edge(
        &[o1.port],
        &format!("dash on; dash_path {}; dash_fragment 1s; dash_playlist_length 4s;", dir.path("dash").display()),
    );
    let url = format!("http://127.0.0.1:{}/dash/cam.mpd", edge.http_port);
    let first = curl_reply(&[], &url);
    assert_eq!(first.status, 200, "the first request waits for the MPD; edge log:\n{}", edge.log());
    assert!(first.text().contains("<S "), "{}", first.text());
    assert!(edge.log().contains("hls: pull started for an HLS viewer"), "{}", edge.log());
    assert!(ffprobe_streams(&url).iter().any(|s| s == "h264,320,240"), "{}", edge.log());
    assert_eq!(plays_served(&o1), 1, "{}", o1.log());
}

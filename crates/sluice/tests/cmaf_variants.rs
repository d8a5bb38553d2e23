//! Variants share CMAF segments too: with `hls_fragment_type fmp4`, `dash on` and `hls_variant`
//! lines, each variant stream writes split video and audio tracks once; the variant master
//! `BASE.m3u8` lists each variant's video playlist with an audio group of its own, and the
//! variant MPD `BASE_abr.mpd` lists the same files (the hard links its own MPD names) as
//! Representations of one video and one audio AdaptationSet.

mod cmaf_util;
mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use cmaf_util::*;
use common::*;

/// A Representation: id, media prefix, extension, timeline.
type Rep = (String, String, String, Vec<(u64, u64)>);

/// Every Representation of an MPD.
fn representations(mpd: &str) -> Vec<Rep> {
    mpd.split("<Representation ")
        .skip(1)
        .map(|r| {
            let r = format!("<Representation {r}");
            let id = attr(&r, "Representation", "id").unwrap().to_string();
            let media = attr(&r, "SegmentTemplate", "media").unwrap();
            let (prefix, ext) = media.split_once("$Time$.").unwrap();
            // `timeline` reads the AdaptationSet naming `ext`: this Representation alone.
            let line = timeline(&format!("<AdaptationSet{r}"), ext);
            (id, prefix.to_string(), ext.to_string(), line)
        })
        .collect()
}

/// The `(attributes, uri)` of each `#EXT-X-STREAM-INF` entry.
fn entries(master: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = master.lines().collect();
    let at =
        |(i, l): (usize, &&str)| Some((l.strip_prefix("#EXT-X-STREAM-INF:")?.to_string(), lines[i + 1].to_string()));
    lines.iter().enumerate().filter_map(at).collect()
}

/// Two `hls_variant` streams (`x_lo` 320x180, `x_hi` 640x360). HLS: the master lists each one's
/// video playlist, its BANDWIDTH, RESOLUTION and both codecs, with an audio group naming its
/// audio playlist; ffprobe reads every level and the audio from it. DASH: no packager runs;
/// `x_abr.mpd` has one video and one audio AdaptationSet with both variants' Representations,
/// naming the files the variants' own MPDs name, each a hard link of an HLS file (one write);
/// ffprobe reads every Representation from it.
#[test]
fn variants_share_one_set_of_cmaf_segments_between_the_master_and_the_variant_mpd() {
    let dir = TempDir::new("cmaf-variants");
    let variants = "hls_variant _lo BANDWIDTH=400000; hls_variant _hi BANDWIDTH=900000; dash_playlist_length 20s;";
    let (server, hls, dash) = shared_server(&dir, variants);
    let mut hi = ffmpeg_publish_pattern(&server.url("x_hi"), "640x360", 30, 25);
    let _lo = ffmpeg_publish_pattern(&server.url("x_lo"), "320x180", 30, 25);

    // HLS: the variant master.
    let master = wait_for("both variants in the master", Duration::from_secs(40), || {
        let (status, text) = http_get(server.http_port, "/hls/x.m3u8");
        (status == 200 && entries(&text).len() == 2).then_some(text)
    });
    let listed = entries(&master);
    assert_eq!(listed[0].1, "x_lo-video.m3u8", "{master}");
    assert_eq!(listed[1].1, "x_hi-video.m3u8", "{master}");
    for ((attrs, _), (group, size, audio)) in
        listed.iter().zip([("audio0", "320x180", "x_lo-audio.m3u8"), ("audio1", "640x360", "x_hi-audio.m3u8")])
    {
        assert!(attrs.contains(&format!("RESOLUTION={size}")), "{master}");
        assert!(attrs.contains("CODECS=\"avc1.") && attrs.contains(",mp4a.40.2\""), "{master}");
        assert!(attrs.contains(&format!("AUDIO=\"{group}\"")), "{master}");
        let media = format!("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{group}\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"1\",URI=\"{audio}\"");
        assert!(master.contains(&media), "{master}");
    }
    assert!(listed[0].0.contains("BANDWIDTH=400000") && listed[1].0.contains("BANDWIDTH=900000"), "{master}");
    let (_, audio) = http_get(server.http_port, "/hls/x_lo-audio.m3u8");
    assert!(audio.contains(".a.m4s\n"), "{audio}");
    let master_url = format!("http://127.0.0.1:{}/hls/x.m3u8", server.http_port);
    assert_eq!(streams(&master_url), ["aac", "h264,320,180", "h264,640,360"], "every level and the audio");

    // DASH: the variant MPD lists the variants' shared segments.
    let mpd = wait_for("both variants in the variant MPD", Duration::from_secs(40), || {
        let (status, text) = http_get(server.http_port, "/dash/x_abr.mpd");
        let reps = representations(&text);
        (status == 200 && reps.len() == 4 && reps.iter().all(|r| r.3.len() >= 2)).then_some(text)
    });
    let log = server.log();
    assert!(!log.contains("dash: start"), "no DASH packager of its own: {log}");
    assert_eq!(mpd.matches("<AdaptationSet").count(), 2, "{mpd}");
    let reps = representations(&mpd);
    let ids: Vec<&str> = reps.iter().map(|r| r.0.as_str()).collect();
    for id in ["x_hi_video", "x_lo_video", "x_hi_audio", "x_lo_audio"] {
        assert!(ids.contains(&id), "{id}: {mpd}");
    }
    for (id, prefix, ext, line) in &reps {
        let name = id.rsplit_once('_').unwrap().0;
        let own = mpd_with(&server, &format!("/dash/{name}.mpd"), 2);
        assert_eq!(&media_prefix(&own, ext), prefix, "{id} names the files its own MPD names");
        assert!(prefix.starts_with(&format!("{name}-")), "{prefix}");
        for (t, _) in line.iter().take(2) {
            let seg = dash.join(format!("{prefix}{t}.{ext}"));
            let meta = std::fs::metadata(&seg).unwrap_or_else(|e| panic!("{}: {e}", seg.display()));
            assert_eq!(meta.nlink(), 2, "one file, two names: {}", seg.display());
            let twin = same_file_in(&hls, &seg).unwrap_or_else(|| panic!("{} has no HLS twin", seg.display()));
            let hls_ext = if ext == "m4a" { ".a.m4s" } else { ".m4s" };
            assert!(twin.to_str().unwrap().ends_with(hls_ext), "{}", twin.display());
        }
    }
    let mpd_url = format!("http://127.0.0.1:{}/dash/x_abr.mpd", server.http_port);
    assert_eq!(streams(&mpd_url), ["aac", "h264,320,180", "h264,640,360"], "every Representation");

    // A variant that stops leaves both at once.
    let _ = hi.0.kill();
    wait_for("x_hi leaves the master and the variant MPD", Duration::from_secs(30), || {
        let (_, master) = http_get(server.http_port, "/hls/x.m3u8");
        let (_, mpd) = http_get(server.http_port, "/dash/x_abr.mpd");
        let mpd_left = representations(&mpd).iter().all(|r| r.0.starts_with("x_lo_")) && mpd.contains("x_lo_video");
        (entries(&master).len() == 1 && !master.contains("x_hi") && mpd_left).then_some(())
    });
}

/// In headless Chromium, at the same time: hls.js plays the variant master, switched through
/// every level (each with its own audio group: the audio follows the video's variant), and
/// dash.js plays the variant MPD, both from the one set of files.
#[test]
fn hlsjs_and_dashjs_play_shared_variants_in_chromium() {
    let modules = browser_modules();
    let dir = TempDir::new("cmaf-variants-browser");
    let conf = "hls_fragment 2s; hls_playlist_length 12s; dash_playlist_length 12s; \
                hls_variant _lo BANDWIDTH=400000; hls_variant _hi BANDWIDTH=900000;";
    let (server, hls, dash) = shared_server(&dir, conf);
    let _hi = ffmpeg_publish_pattern(&server.url("x_hi"), "640x360", 70, 50);
    let _lo = ffmpeg_publish_pattern(&server.url("x_lo"), "320x180", 70, 50);
    wait_for("both variants in the variant MPD", Duration::from_secs(40), || {
        let (status, text) = http_get(server.http_port, "/dash/x_abr.mpd");
        let reps = representations(&text);
        (status == 200 && reps.len() == 4 && reps.iter().all(|r| r.3.len() >= 2)).then_some(())
    });
    let dash_verdict = std::thread::scope(|s| {
        let d = s.spawn(|| play(&server, &modules, &dash, "dash", "dashjs.html", "src=x_abr.mpd", 15));
        let h = play(&server, &modules, &hls, "hls", "player.html", "src=x.m3u8&cycle=1", 15);
        assert!(h.contains("\"levels\":2") && h.contains("\"switched\":["), "hls.js: {h}");
        let switched = h.split("\"switched\":[").nth(1).and_then(|r| r.split(']').next()).unwrap_or_default();
        assert_eq!(switched.split(',').count(), 2, "hls.js played both levels: {h}");
        d.join().unwrap()
    });
    assert!(dash_verdict.contains("\"audioTracks\":1"), "dash.js: {dash_verdict}");
}

/// A nested transcode ladder (the source `cam` and `cam_180p`) in shared mode: the master
/// `cam.m3u8` lists `cam_180p/video.m3u8` and `cam/video.m3u8` with their audio groups, the
/// variant MPD `cam.mpd` both members' shared segments (`cam_180p/...`, the files their own
/// MPDs name, hard links of the HLS ones); ffprobe reads every level from each.
#[test]
fn a_nested_transcode_ladder_shares_its_segments() {
    let dir = TempDir::new("cmaf-ladder");
    let conf = "hls_nested on; dash_nested on; dash_playlist_length 20s; transcode 180p 200k;";
    let (server, hls, dash) = shared_server(&dir, conf);
    let _source = ffmpeg_publish_pattern(&server.url("cam"), "640x360", 40, 25);
    let master = wait_for("the ladder in the master", Duration::from_secs(60), || {
        let (status, text) = http_get(server.http_port, "/hls/cam.m3u8");
        (status == 200 && entries(&text).len() == 2).then_some(text)
    });
    // By BANDWIDTH: the rendition's floor (its configured rates) may be above the source's.
    let listed = entries(&master);
    let entry = |uri: &str| listed.iter().find(|e| e.1 == uri).unwrap_or_else(|| panic!("{uri}: {master}")).0.clone();
    assert!(
        entry("cam/video.m3u8").contains("RESOLUTION=640x360,") && entry("cam/video.m3u8").contains("AUDIO=\"audio0\"")
    );
    assert!(entry("cam_180p/video.m3u8").contains("AUDIO=\"audio1\""), "{master}");
    assert!(master.contains("GROUP-ID=\"audio1\"") && master.contains("URI=\"cam_180p/audio.m3u8\""), "{master}");
    assert!(master.contains("GROUP-ID=\"audio0\"") && master.contains("URI=\"cam/audio.m3u8\""), "{master}");
    let master_url = format!("http://127.0.0.1:{}/hls/cam.m3u8", server.http_port);
    assert_eq!(streams(&master_url), ["aac", "h264,320,180", "h264,640,360"], "every level and the audio");

    let mpd = wait_for("the ladder in the variant MPD", Duration::from_secs(60), || {
        let (status, text) = http_get(server.http_port, "/dash/cam.mpd");
        let reps = representations(&text);
        (status == 200 && reps.len() == 4 && reps.iter().all(|r| r.3.len() >= 2)).then_some(text)
    });
    for (id, prefix, ext, line) in representations(&mpd) {
        let name = id.rsplit_once('_').unwrap().0;
        let own = mpd_with(&server, &format!("/dash/{name}/index.mpd"), 2);
        // The renderer percent-encodes the `/` of a name down in the member's directory.
        assert_eq!(prefix, format!("{name}%2F{}", media_prefix(&own, &ext)), "{id} names its own MPD's files");
        let (t, _) = line[0];
        let seg = dash.join(name).join(format!("{}{t}.{ext}", media_prefix(&own, &ext)));
        let meta = std::fs::metadata(&seg).unwrap_or_else(|e| panic!("{}: {e}", seg.display()));
        assert_eq!(meta.nlink(), 2, "one file, two names: {}", seg.display());
        assert!(same_file_in(&hls.join(name), &seg).is_some(), "{} has no HLS twin", seg.display());
    }
    let mpd_url = format!("http://127.0.0.1:{}/dash/cam.mpd", server.http_port);
    assert_eq!(streams(&mpd_url), ["aac", "h264,320,180", "h264,640,360"], "every Representation");
}

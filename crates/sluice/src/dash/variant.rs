//! Variant MPDs: the streams of one `hls_variant` group (`NAME_hi`, `NAME_lo`, ...) or of one
//! transcode ladder (`NAME` and its renditions `NAME_<h>p`) are listed as Representations of one
//! video and one audio AdaptationSet in `NAME_abr.mpd` (nested: `NAME.mpd`, next to the
//! streams' directories), so a DASH player switches between them by bandwidth.
//!
//! Each member's task updates its Representations after every fragment; the MPD is rendered
//! from every live member under the registry lock and written by one writer at a time (the
//! newest text last). Members started at different moments: the MPD's `availabilityStartTime`
//! is the latest member's, each Representation's `presentationTimeOffset` says where its own
//! timeline is then. A member that ends leaves it; the last one removes it.
//!
//! A member whose segments HLS and DASH share (`shared::Sink`) is listed from its own MPD's
//! Representations ([`update_shared`]): the variant MPD names the same files (the hard links
//! under `dash_path` its own MPD names), so an ABR ladder is one set of CMAF segments too.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use dash::mpd::{AudioRep, Manifest, VideoRep};

use crate::config::AppConf;
use crate::untrusted;

use super::DashStore;

/// Where a stream is listed: its variant MPD and its place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Place {
    /// The variant MPD's path.
    pub master: PathBuf,
    /// Sort key: the `hls_variant` line or ladder rung, then the name.
    key: (usize, String),
    /// What the member's file names start with, relative to the variant MPD.
    prefix: String,
    /// Where the member's own MPD is, relative to the variant MPD (nested: `NAME/`).
    dir: String,
}

/// What a variant MPD takes from the application's settings.
pub(super) struct MpdSettings {
    /// `dash_fragment` (ms).
    pub fragment_ms: u64,
    /// `dash_playlist_length` (ms).
    pub window_ms: u64,
    /// `dash_low_latency`.
    pub low_latency: Option<dash::mpd::LowLatency>,
}

/// What a member last said.
#[derive(Clone)]
struct Member {
    anchor_ms: u64,
    video: Option<VideoRep>,
    audio: Option<AudioRep>,
}

/// One variant MPD's live members, in order.
type Members = BTreeMap<(usize, String), Member>;

/// The live members of every variant MPD, by its path.
#[derive(Default)]
pub(super) struct Registry {
    masters: Mutex<HashMap<PathBuf, Members>>,
    /// One variant MPD written at a time, so the newest text is the last on disk.
    writing: tokio::sync::Mutex<()>,
}

/// The variant MPD stream `name` of `app` belongs to, if any: with `hls_variant` lines, its
/// name ends with a line's suffix (the first such line, as HLS); else with `transcode` lines,
/// it is the source or a rendition of a ladder.
pub(super) fn place(app: &AppConf, dir: &Path, name: &str) -> Option<Place> {
    let line =
        app.hls.variants.iter().enumerate().find(|(_, v)| name.len() > v.suffix.len() && name.ends_with(&v.suffix));
    let (base, order) = match line {
        Some((order, v)) => (&name[..name.len() - v.suffix.len()], order),
        None if app.transcode.renditions.is_empty() => return None,
        None => match app.transcode.rendition_of(name) {
            Some((r, base)) => (base, 1 + app.transcode.renditions.iter().position(|o| o == r).unwrap_or(0)),
            None => (name, 0),
        },
    };
    let base = untrusted::stream_name(base).ok()?;
    let (file, prefix, own_dir) = if app.dash.nested {
        (format!("{base}.mpd"), format!("{name}/"), format!("{name}/"))
    } else {
        (format!("{base}_abr.mpd"), format!("{name}-"), String::new())
    };
    Some(Place { master: dir.join(file), key: (order, name.to_string()), prefix, dir: own_dir })
}

/// Whether stream `name`'s own MPD would be at a path `app`'s variant MPDs use: flat, stream
/// `X_abr` writes `X_abr.mpd`, stream `X`'s variant MPD; nested, stream `X.mpd` has a directory
/// named as stream `X`'s variant MPD file. Only in an application that has variant MPDs
/// (`hls_variant` or `transcode` lines): such a stream gets no DASH, so neither file is ever the
/// other's (decided by the name, not by which was published first).
pub(super) fn shadows_variant(app: &AppConf, name: &str) -> bool {
    let has_variants = !app.hls.variants.is_empty() || !app.transcode.renditions.is_empty();
    let suffix = if app.dash.nested { ".mpd" } else { "_abr" };
    has_variants && name.len() > suffix.len() && name.ends_with(suffix)
}

/// Lists (or updates) a member and writes the variant MPD.
pub(super) async fn update(
    store: &DashStore,
    place: &Place,
    packager: &dash::Packager,
    settings: MpdSettings,
    now_ms: u64,
) {
    let Some(anchor_ms) = packager.anchor_ms() else { return };
    let (video, audio) = packager.representations(&place.prefix, 0);
    list(store, place, Member { anchor_ms, video, audio }, settings, now_ms).await;
}

/// Lists (or updates) a member whose segments HLS and DASH share, from `own`, its own MPD's
/// manifest: the same Representations, their names relative to the variant MPD.
pub(super) async fn update_shared(store: &DashStore, place: &Place, own: &Manifest, now_ms: u64) {
    if own.video.is_empty() && own.audio.is_empty() {
        return;
    }
    let prefix = |p: &str| format!("{}{p}", place.dir);
    let video = own.video.first().map(|v| VideoRep { prefix: prefix(&v.prefix), ..v.clone() });
    let audio = own.audio.first().map(|a| AudioRep { prefix: prefix(&a.prefix), ..a.clone() });
    let member = Member { anchor_ms: own.availability_start_ms, video, audio };
    list(store, place, member, settings_of(own), now_ms).await;
}

/// A member whose segments HLS and DASH share left (`own`: its own MPD's manifest).
pub(super) async fn withdraw_shared(store: &DashStore, place: &Place, own: &Manifest, now_ms: u64) {
    withdraw(store, place, settings_of(own), now_ms).await;
}

fn settings_of(own: &Manifest) -> MpdSettings {
    MpdSettings { fragment_ms: own.fragment_ms, window_ms: own.window_ms, low_latency: own.low_latency.clone() }
}

async fn list(store: &DashStore, place: &Place, member: Member, settings: MpdSettings, now_ms: u64) {
    let _writing = store.variants.writing.lock().await;
    let text = {
        let mut masters = store.variants.masters.lock().unwrap_or_else(|e| e.into_inner());
        let members = masters.entry(place.master.clone()).or_default();
        members.insert(place.key.clone(), member);
        render(members, &settings, now_ms)
    };
    let text = Bytes::from(text);
    store.files().insert(place.master.clone(), text.clone());
    if let Err(e) = crate::atomic_file::write_atomically(&place.master, &text).await {
        tracing::debug!(path = %place.master.display(), "dash: cannot write the variant MPD: {e}");
    }
}

/// A member left: the variant MPD without it, or gone with the last one.
pub(super) async fn withdraw(store: &DashStore, place: &Place, settings: MpdSettings, now_ms: u64) {
    let _writing = store.variants.writing.lock().await;
    let text = {
        let mut masters = store.variants.masters.lock().unwrap_or_else(|e| e.into_inner());
        let Some(members) = masters.get_mut(&place.master) else { return };
        members.remove(&place.key);
        if members.is_empty() {
            masters.remove(&place.master);
            None
        } else {
            Some(render(members, &settings, now_ms))
        }
    };
    match text {
        Some(text) => {
            let text = Bytes::from(text);
            store.files().insert(place.master.clone(), text.clone());
            let _ = crate::atomic_file::write_atomically(&place.master, &text).await;
        }
        None => {
            store.files().remove(&place.master);
            let _ = tokio::fs::remove_file(&place.master).await;
        }
    }
}

fn render(members: &Members, settings: &MpdSettings, now_ms: u64) -> String {
    let start = members.values().map(|m| m.anchor_ms).max().unwrap_or(0);
    let mut video = Vec::new();
    let mut audio = Vec::new();
    for m in members.values() {
        let offset = start - m.anchor_ms;
        // Fragments that start before the presentation does are left out: a player starting
        // at 0 (a variant MPD younger than its live delay) would get one straddling 0, whose
        // frames before 0 the browser drops (MSE's append window), its keyframe first, so
        // nothing of it plays and the player stalls (seen with dash.js). A member with nothing
        // left waits for its next fragment.
        let after = |t: &dash::mpd::Timeline| t.iter().copied().filter(|(s, _)| *s >= offset).collect::<Vec<_>>();
        let v = m.video.clone().map(|v| VideoRep { offset, timeline: after(&v.timeline), ..v });
        let a = m.audio.clone().map(|a| AudioRep { offset, timeline: after(&a.timeline), ..a });
        video.extend(v.filter(|v| !v.timeline.is_empty()));
        audio.extend(a.filter(|a| !a.timeline.is_empty()));
    }
    // Highest bandwidth first, as players list them.
    video.sort_by_key(|v| std::cmp::Reverse(v.bandwidth));
    audio.sort_by_key(|a| std::cmp::Reverse(a.bandwidth));
    dash::mpd::render(&dash::mpd::Manifest {
        dynamic: true,
        availability_start_ms: start,
        publish_ms: now_ms,
        fragment_ms: settings.fragment_ms,
        window_ms: settings.window_ms,
        video,
        audio,
        low_latency: settings.low_latency.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(body: &str) -> AppConf {
        let text = format!("rtmp {{ server {{ application a {{ dash on; dash_path /d; {body} }} }} }}");
        crate::config::Config::parse(&text, "t").unwrap().servers[0].apps[0].clone()
    }

    fn settings() -> MpdSettings {
        MpdSettings { fragment_ms: 1000, window_ms: 5000, low_latency: None }
    }

    #[test]
    fn variants_are_placed_by_hls_variant_suffix_or_transcode_ladder() {
        let dir = Path::new("/d");
        let v = app("hls_variant _hi BANDWIDTH=1; hls_variant _lo BANDWIDTH=2;");
        let hi = place(&v, dir, "cam_hi").unwrap();
        assert_eq!((hi.master.as_path(), hi.prefix.as_str()), (Path::new("/d/cam_abr.mpd"), "cam_hi-"));
        assert!(place(&v, dir, "cam_lo").unwrap().key > hi.key);
        assert_eq!(place(&v, dir, "cam"), None);
        assert_eq!(place(&v, dir, "_hi"), None, "longer than the suffix");
        let nested = app("dash_nested on; transcode 480p 800k;");
        let r = place(&nested, dir, "cam_480p").unwrap();
        assert_eq!((r.master.as_path(), r.prefix.as_str()), (Path::new("/d/cam.mpd"), "cam_480p/"));
        assert_eq!(place(&nested, dir, "cam").unwrap().master, Path::new("/d/cam.mpd"), "the source too");
        assert_eq!(place(&app(""), dir, "cam"), None);
    }

    #[test]
    fn a_stream_named_as_a_variant_mpd_is_refused_only_where_variant_mpds_exist() {
        let flat = app("transcode 480p 800k;");
        assert!(shadows_variant(&flat, "cam_abr"), "cam_abr.mpd is cam's variant MPD");
        assert!(
            !shadows_variant(&flat, "cam") && !shadows_variant(&flat, "_abr") && !shadows_variant(&flat, "cam.mpd")
        );
        let nested = app("dash_nested on; hls_variant _hi BANDWIDTH=1;");
        assert!(shadows_variant(&nested, "cam.mpd"), "its directory cam.mpd/ is cam's variant MPD file");
        assert!(!shadows_variant(&nested, "cam_abr"));
        assert!(!shadows_variant(&app(""), "cam_abr"), "no variant MPDs: nginx-rtmp's names as they are");
    }

    /// Where HLS fMP4 and DASH share segments, variant members share them too; a stream whose
    /// MPD would be a variant MPD does not (the DASH module refuses it DASH, and its sink would
    /// write that MPD).
    #[test]
    fn variant_members_share_segments_and_a_stream_named_as_a_variant_mpd_does_not() {
        let shared = app("hls on; hls_path /h; hls_fragment_type fmp4; transcode 480p 800k; hls_variant _hi;");
        assert!(super::super::shared::applies(&shared, "cam_hi") && super::super::shared::applies(&shared, "cam"));
        let ladder = app("hls on; hls_path /h; hls_fragment_type fmp4; transcode 480p 800k;");
        assert!(super::super::shared::applies(&ladder, "cam_480p"));
        assert!(!super::super::shared::applies(&ladder, "cam_abr"));
    }

    #[tokio::test]
    async fn members_come_and_go_and_the_last_removes_the_mpd() {
        let dir = std::env::temp_dir().join(format!("sluice-dash-variant-{}", std::process::id()));
        let store = DashStore::new(Default::default());
        let v = app("hls_variant _hi BANDWIDTH=1; hls_variant _lo BANDWIDTH=2;");
        let mut packagers = Vec::new();
        for (name, started_ms) in [("cam_hi", 1_000_000), ("cam_lo", 1_000_500)] {
            let s = dash::Settings {
                fragment: std::time::Duration::from_secs(1),
                playlist_length: std::time::Duration::from_secs(5),
                ..Default::default()
            };
            let mut p = dash::Packager::new(s, name);
            let header = crate::hub::Frame::video(0, Bytes::from_static(AVC_HEADER)).unwrap();
            p.push_video(0, header.video_header(), &header.payload, started_ms);
            for i in 0..60u32 {
                let key = i % 25 == 0;
                let mut b = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 0, 0, 0, 3];
                b.extend_from_slice(&[0x65, 0x88, 0x84]);
                let f = crate::hub::Frame::video(i * 40, Bytes::from(b)).unwrap();
                p.push_video(f.timestamp, f.video_header(), &f.payload, started_ms + u64::from(i) * 40);
            }
            packagers.push((place(&v, &dir, name).unwrap(), p));
        }
        for (place, p) in &packagers {
            update(&store, place, p, settings(), 1_003_000).await;
        }
        let master = dir.join("cam_abr.mpd");
        let text = std::fs::read_to_string(&master).unwrap();
        assert_eq!(text.matches("<Representation").count(), 2, "{text}");
        assert!(text.contains("availabilityStartTime=\"1970-01-01T00:16:40.500Z\""), "the latest member's: {text}");
        assert!(text.contains("presentationTimeOffset=\"500\" media=\"cam_hi-$Time$.m4v\""), "{text}");
        // cam_hi's first fragment starts 500 ms before the MPD's presentation: left out.
        let hi = text.split("<Representation").find(|r| r.contains("cam_hi_H264")).unwrap();
        assert!(hi.contains("<S t=\"1000\" d=\"1000\"/>") && !hi.contains("<S t=\"0\""), "{text}");
        // Low latency: the variant MPD says it as the streams' own do.
        let ll = MpdSettings { low_latency: Some(dash::mpd::LowLatency::new(1000, 200)), ..settings() };
        let text = {
            let masters = store.variants.masters.lock().unwrap();
            render(&masters[&master], &ll, 1_003_000)
        };
        assert_eq!(text.matches("availabilityTimeOffset=\"0.800\" availabilityTimeComplete=\"false\"").count(), 2);
        assert!(text.contains("<ServiceDescription") && text.contains("<UTCTiming"), "{text}");
        withdraw(&store, &packagers[0].0, settings(), 1_004_000).await;
        let text = String::from_utf8(store.files().get(&master).unwrap().to_vec()).unwrap();
        assert_eq!(text.matches("<Representation").count(), 1, "{text}");
        withdraw(&store, &packagers[1].0, settings(), 1_004_000).await;
        assert!(!master.exists() && store.files().get(&master).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Shared members (`shared::Sink`) are listed with their own MPDs' Representations, named
    /// from the variant MPD (nested: down in the member's directory), as one video and one audio
    /// AdaptationSet; fragments before the presentation's start are left out as for the others.
    #[tokio::test]
    async fn shared_members_are_listed_with_their_own_mpds_representations() {
        let dir = std::env::temp_dir().join(format!("sluice-dash-variant-shared-{}", std::process::id()));
        let store = DashStore::new(Default::default());
        let v = app("dash_nested on; hls_variant _hi BANDWIDTH=1; hls_variant _lo BANDWIDTH=2;");
        let own = |name: &str, anchor_ms: u64, bandwidth: u64| Manifest {
            dynamic: true,
            availability_start_ms: anchor_ms,
            publish_ms: 1_010_000,
            fragment_ms: 2000,
            window_ms: 10_000,
            video: vec![VideoRep {
                prefix: "77-".into(),
                offset: 0,
                id: format!("{name}_video"),
                codecs: "avc1.64001e".into(),
                width: 640,
                height: 360,
                bandwidth,
                timeline: vec![(0, 2000), (2000, 2000), (4000, 2000)],
            }],
            audio: vec![AudioRep {
                prefix: "77-".into(),
                offset: 0,
                id: format!("{name}_audio"),
                codecs: "mp4a.40.2".into(),
                sample_rate: 44_100,
                channels: 2,
                bandwidth: 64_000,
                timeline: vec![(0, 2000), (2000, 2000), (4000, 2000)],
            }],
            low_latency: None,
        };
        let hi = place(&v, &dir, "cam_hi").unwrap();
        let lo = place(&v, &dir, "cam_lo").unwrap();
        let empty = Manifest { video: Vec::new(), audio: Vec::new(), ..own("cam_lo", 1_000_000, 1) };
        update_shared(&store, &lo, &empty, 1_010_000).await;
        assert!(store.files().get(&hi.master).is_none(), "nothing listed yet: no member");
        update_shared(&store, &hi, &own("cam_hi", 1_000_000, 900_000), 1_010_000).await;
        update_shared(&store, &lo, &own("cam_lo", 1_002_000, 300_000), 1_010_000).await;
        let text = String::from_utf8(store.files().get(&hi.master).unwrap().to_vec()).unwrap();
        assert_eq!(text.matches("<AdaptationSet").count(), 2, "{text}");
        assert_eq!(text.matches("<Representation").count(), 4, "{text}");
        // The renderer percent-encodes the `/` of a nested name, as for the packagers' members.
        assert!(text.contains("media=\"cam_lo%2F77-$Time$.m4v\" initialization=\"cam_lo%2F77-init.m4v\""), "{text}");
        assert!(text.contains("presentationTimeOffset=\"2000\" media=\"cam_hi%2F77-$Time$.m4a\""), "{text}");
        let hi_video = text.split("<Representation").find(|r| r.contains("cam_hi_video")).unwrap();
        assert!(hi_video.contains("<S t=\"2000\" d=\"2000\"") && !hi_video.contains("t=\"0\""), "{text}");
        withdraw_shared(&store, &hi, &own("cam_hi", 1_000_000, 1), 1_011_000).await;
        withdraw_shared(&store, &lo, &own("cam_lo", 1_000_000, 1), 1_011_000).await;
        assert!(store.files().get(&hi.master).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    const AVC_HEADER: &[u8] =
        &[0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x0A, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x0A, 1, 0, 2, 0x68, 0xCE];
}

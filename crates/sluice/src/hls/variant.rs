//! `hls_variant`: the master playlist `<hls_path>/<base>.m3u8` of the streams `<base><suffix>`
//! of one application, as nginx-rtmp writes it (`ngx_rtmp_hls_write_variant_playlist`), listing
//! only the variants that are live, with what each variant's stream showed (`hls::master`).
//!
//! Every stream's HLS task writes its own media playlist; the master is shared. So the tasks do
//! not write it: each reports its variant to the [`Registry`] (after a media playlist write
//! that added a segment) and withdraws it when its publisher leaves or its playlist ends. The
//! registry renders the master under its lock from the variants it holds, puts it in
//! `HlsStore` memory at once, and hands the text to the master's one writer task, which puts
//! the newest text on disk atomically (a `watch`: texts a slow disk did not take yet are
//! skipped, never written after a newer one). When no variant is left the master leaves memory
//! and, with `hls_cleanup` (the default), the disk; with `hls_cleanup off` its last text stays.
//!
//! The transcode ladder (`transcode` lines, no `hls_variant` lines) lists its streams the same
//! way: the source `NAME` and each rendition `NAME_<h>p` are variants of the master
//! `NAME.m3u8` (`hls_nested on`) or `NAME_abr.m3u8` (flat: `NAME.m3u8` is the source's media
//! playlist), see [`place`]. A rendition's `BANDWIDTH` is at least its configured bit rates
//! plus [`LADDER_HEADROOM_PERCENT`]; the source's is measured.
//!
//! Bounds: one registry entry per master path, created only by a live HLS task and removed by
//! its writer once no variant is left (so at most one per HLS task, and never more than
//! [`MAX_MASTERS`]); per master one variant per `hls_variant` line (ladder: the source and
//! one per `transcode` line).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hls::master::Variant;
use tokio::sync::watch;

use super::{HlsStore, LivePlaylist, PlaylistState};
use crate::config::AppConf;
use crate::untrusted;

/// Most master playlists at once (as many as the hub holds streams).
pub const MAX_MASTERS: usize = crate::hub::MAX_STREAMS;
/// A ladder rendition's `BANDWIDTH` is at least its configured video + audio bit rate plus
/// this: an encoder's rate control overshoots its target per segment (RFC 8216 wants the
/// peak), and the container adds its overhead.
pub const LADDER_HEADROOM_PERCENT: u64 = 10;

/// The live variants of every master playlist, by the master's path.
#[derive(Default)]
pub struct Registry {
    masters: Mutex<HashMap<PathBuf, Master>>,
}

/// One master playlist.
struct Master {
    /// The application whose variants it lists: only ever one.
    app: Arc<AppConf>,
    /// The live variants, one per `hls_variant` line at most.
    variants: Vec<Listed>,
    /// Its text as served from memory, while it has variants.
    live: Option<Arc<LivePlaylist>>,
    /// The last text rendered.
    text: Option<String>,
    /// What its writer task is to put on disk.
    disk: watch::Sender<Disk>,
    /// A text was handed to the writer: the file on disk is this master's.
    wrote: bool,
}

#[derive(Clone)]
enum Disk {
    /// Nothing yet.
    Idle,
    /// Write this text.
    Write(Arc<str>),
    /// No variant left: remove the file (`hls_cleanup`).
    Remove,
    /// No variant left: leave the file as it is (`hls_cleanup off`).
    Leave,
}

struct Listed {
    member: u64,
    order: usize,
    variant: Variant,
    /// `#EXT-X-VERSION` of its media playlist.
    media_version: u8,
    /// Its URI as the other variants' rendition reports name it.
    report_uri: String,
    /// How far its playlist has come (low-latency HLS: for the others' rendition reports).
    position: Option<hls::Position>,
}

/// A stream that is a variant: which master it belongs to and how it is listed there. Dropped
/// (its task ended, however), it leaves the master.
pub struct Member {
    store: Arc<HlsStore>,
    id: u64,
    app: Arc<AppConf>,
    master: PathBuf,
    /// Its slot in the master: the index of its `hls_variant` line (ladder: 0 for the
    /// source, 1 + the index of its `transcode` line).
    order: usize,
    params: Vec<String>,
    /// The least `BANDWIDTH` (a ladder rendition's configured bit rates with headroom).
    floor: Option<u64>,
    uri: String,
    /// The URI relative to the other variants' media playlists.
    report_uri: String,
    /// Split (CMAF shared with DASH): the video and audio playlists' URIs, and the video one's
    /// relative to the other variants' media playlists.
    split: (String, String, String),
}

/// Where a stream is listed, from the configuration and its name alone.
#[derive(Debug, PartialEq, Eq)]
struct Place {
    /// The master playlist's file name in `hls_path`.
    master_file: String,
    /// See [`Member::order`].
    order: usize,
    /// Configured `#EXT-X-STREAM-INF` parameters, verbatim.
    params: Vec<String>,
    /// See [`Member::floor`].
    floor: Option<u64>,
}

/// The master playlist stream `name` of `app` is a variant of, if any. With `hls_variant`
/// lines: its name ends with a variant's suffix and is longer than it (the first such line
/// wins, as in nginx-rtmp); the master is `<base>.m3u8`. Else, with a transcode ladder writing
/// HLS: a rendition `NAME_<h>p` is a variant of `NAME`'s master, any other stream is the source
/// of its own ([`AppConf::ladder_master_file`]).
fn place(app: &AppConf, name: &str) -> Option<Place> {
    if let Some((order, v)) =
        app.hls.variants.iter().enumerate().find(|(_, v)| name.len() > v.suffix.len() && name.ends_with(&v.suffix))
    {
        let base = untrusted::stream_name(&name[..name.len() - v.suffix.len()]).ok()?;
        return Some(Place { master_file: format!("{base}.m3u8"), order, params: v.params.clone(), floor: None });
    }
    let transcode = &app.transcode;
    let (base, order, floor) = match transcode.rendition_of(name) {
        Some((r, base)) => {
            let order = 1 + transcode.renditions.iter().position(|o| o == r).unwrap_or(0);
            let audio = r.audio_bitrate.unwrap_or(transcode.audio_bitrate);
            (base, order, Some(ladder_bandwidth(r.video_bitrate + audio)))
        }
        None => (name, 0, None),
    };
    let base = untrusted::stream_name(base).ok()?;
    Some(Place { master_file: app.ladder_master_file(base)?, order, params: Vec::new(), floor })
}

/// A ladder rendition's least `BANDWIDTH` for its configured bit rate.
fn ladder_bandwidth(configured: u64) -> u64 {
    configured.saturating_mul(100 + LADDER_HEADROOM_PERCENT) / 100
}

impl Member {
    /// The variant stream `name` of `app` is, if any ([`place`]).
    pub fn new(store: &Arc<HlsStore>, app: &Arc<AppConf>, dir: &Path, name: &str) -> Option<Self> {
        static IDS: AtomicU64 = AtomicU64::new(0);
        let place = place(app, name)?;
        let file = hls::segmenter::playlist_file(name, app.hls.nested);
        // Nested playlists sit one directory down, next to each other's directories.
        let report = |file: &str| match (app.hls.base_url.is_empty(), app.hls.nested) {
            (false, _) => format!("{}{file}", app.hls.base_url),
            (true, true) => format!("../{file}"),
            (true, false) => file.to_string(),
        };
        let report_uri = report(&file);
        let (video, audio) = hls::segmenter::split_playlist_files(name, app.hls.nested);
        let base = &app.hls.base_url;
        let split = (format!("{base}{video}"), format!("{base}{audio}"), report(&video));
        Some(Member {
            store: store.clone(),
            id: IDS.fetch_add(1, Ordering::Relaxed),
            app: app.clone(),
            master: dir.join(place.master_file),
            order: place.order,
            params: place.params,
            floor: place.floor,
            uri: format!("{}{file}", app.hls.base_url),
            report_uri,
            split,
        })
    }

    /// The master playlist's path.
    pub fn master(&self) -> &Path {
        &self.master
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        withdraw(&self.store.clone(), self);
    }
}

impl Registry {
    fn masters(&self) -> MutexGuard<'_, HashMap<PathBuf, Master>> {
        self.masters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a master playlist is kept at `path`.
    pub(super) fn has_master(&self, path: &Path) -> bool {
        self.masters().contains_key(path)
    }
}

/// Lists (or updates) `member`'s variant with what its stream showed; `Err` says why it cannot
/// be listed (for the caller to log once). A split stream (`measured.audio` set: CMAF shared
/// with DASH) is listed by its video playlist, its audio playlist in an audio group of its own.
pub fn update(
    store: &Arc<HlsStore>,
    member: &Member,
    measured: Variant,
    media_version: u8,
) -> Result<(), &'static str> {
    let mut masters = store.variants.masters();
    if !masters.contains_key(&member.master) {
        if masters.len() >= MAX_MASTERS {
            return Err("too many master playlists");
        }
        let (disk, rx) = watch::channel(Disk::Idle);
        store.tasks.spawn(writer(store.clone(), member.master.clone(), rx));
        let master =
            Master { app: member.app.clone(), variants: Vec::new(), live: None, text: None, disk, wrote: false };
        masters.insert(member.master.clone(), master);
    }
    let Some(m) = masters.get_mut(&member.master) else { return Ok(()) };
    if !Arc::ptr_eq(&m.app, &member.app) {
        return Err("another application writes this master playlist (same hls_path and base name)");
    }
    let (uri, report_uri, audio) = match measured.audio {
        Some(a) => {
            let (video, audio, report) = member.split.clone();
            let group = format!("audio{}", member.order);
            (video, report, Some(hls::master::AudioRendition { group, uri: audio, ..a }))
        }
        None => (member.uri.clone(), member.report_uri.clone(), None),
    };
    let listed = Listed {
        member: member.id,
        order: member.order,
        variant: Variant {
            params: member.params.clone(),
            uri,
            // RFC 8216 wants the peak: the configured rate unless more was measured.
            peak_bandwidth: measured.peak_bandwidth.max(member.floor),
            audio,
            ..measured
        },
        media_version,
        report_uri,
        position: None,
    };
    // A later publish of the same name replaces its earlier task's entry.
    match m.variants.iter_mut().find(|l| l.order == member.order) {
        Some(l) => *l = Listed { position: l.position.filter(|_| l.member == member.id), ..listed },
        None => {
            m.variants.push(listed);
            m.variants.sort_by_key(|l| l.order);
        }
    }
    render(store, &member.master, m)
}

/// How far `member`'s playlist has come, for the other variants' rendition reports (nothing
/// while it is not listed).
pub fn set_position(store: &HlsStore, member: &Member, position: hls::Position) {
    let mut masters = store.variants.masters();
    let listed = masters.get_mut(&member.master).and_then(|m| m.variants.iter_mut().find(|l| l.member == member.id));
    if let Some(l) = listed {
        l.position = Some(position);
    }
}

/// `#EXT-X-RENDITION-REPORT` lines for the other live variants of `member`'s master (RFC
/// 8216bis §4.4.5.4: a low-latency media playlist reports every rendition of its master).
pub fn rendition_reports(store: &HlsStore, member: &Member) -> String {
    let masters = store.variants.masters();
    let Some(m) = masters.get(&member.master) else { return String::new() };
    let others = m.variants.iter().filter(|l| l.member != member.id);
    others.filter_map(|l| hls::master::rendition_report(&l.report_uri, l.position.as_ref()?)).collect()
}

/// `member`'s variant leaves its master (its publisher left, or its playlist ended).
pub fn withdraw(store: &Arc<HlsStore>, member: &Member) {
    let mut masters = store.variants.masters();
    let Some(m) = masters.get_mut(&member.master) else { return };
    let before = m.variants.len();
    m.variants.retain(|l| l.member != member.id);
    if m.variants.len() != before {
        let _ = render(store, &member.master, m);
    }
}

/// Renders `m` into memory and hands it to its writer; with no variant left, the master leaves
/// memory and (with `hls_cleanup`) the disk.
fn render(store: &HlsStore, path: &Path, m: &mut Master) -> Result<(), &'static str> {
    if m.variants.is_empty() {
        m.text = None;
        if let Some(live) = m.live.take() {
            let mut playlists = store.playlists();
            if playlists.get(path).is_some_and(|p| Arc::ptr_eq(p, &live)) {
                playlists.remove(path);
            }
        }
        let remove = m.app.hls.cleanup && std::mem::take(&mut m.wrote);
        m.disk.send_replace(if remove { Disk::Remove } else { Disk::Leave });
        return Ok(());
    }
    let version = m.variants.iter().map(|l| l.media_version).max().unwrap_or(3);
    let variants: Vec<Variant> = m.variants.iter().map(|l| l.variant.clone()).collect();
    let text = hls::master::render(&variants, version);
    if m.text.as_ref() == Some(&text) {
        return Ok(());
    }
    let mut playlists = store.playlists();
    let taken = playlists.get(path).is_some_and(|p| !m.live.as_ref().is_some_and(|l| Arc::ptr_eq(l, p)));
    if taken {
        // A stream named like the base writes its media playlist there: the file is its own.
        (m.live, m.text, m.wrote) = (None, None, false);
        return Err("a media playlist has the master playlist's name");
    }
    let live = match &m.live {
        Some(live) => live.clone(),
        None => {
            let live = Arc::new(LivePlaylist {
                state: Mutex::new(PlaylistState { live: true, ..PlaylistState::default() }),
                changed: watch::channel(0).0,
            });
            playlists.insert(path.to_path_buf(), live.clone());
            m.live = Some(live.clone());
            live
        }
    };
    drop(playlists);
    live.update(text.clone(), hls::Position::default(), true);
    m.disk.send_replace(Disk::Write(Arc::from(text.as_str())));
    m.wrote = true;
    m.text = Some(text);
    Ok(())
}

/// A master's one writer: puts the newest text on disk (temp file + rename), or removes the
/// file, and ends (taking the master out of the registry) once no variant is left and nothing
/// newer came. At shutdown the file stays as it is, like the media playlists.
async fn writer(store: Arc<HlsStore>, path: PathBuf, mut rx: watch::Receiver<Disk>) {
    let mut logged = false;
    loop {
        tokio::select! {
            biased;
            _ = store.shutdown.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
        if store.shutdown.is_cancelled() {
            return;
        }
        let next = rx.borrow_and_update().clone();
        let result = match next {
            Disk::Write(text) => crate::atomic_file::write_atomically(&path, text.as_bytes()).await,
            Disk::Remove => match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Disk::Idle | Disk::Leave => Ok(()),
        };
        if let Err(e) = result {
            if !std::mem::replace(&mut logged, true) {
                tracing::error!(path = %path.display(), "hls: cannot write the master playlist: {e} (further errors are not logged)");
            }
        }
        let mut masters = store.variants.masters();
        let done = masters.get(&path).is_some_and(|m| m.variants.is_empty());
        if done && !rx.has_changed().unwrap_or(false) {
            masters.remove(&path);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    fn measured(peak: u64) -> Variant {
        Variant {
            params: Vec::new(),
            uri: String::new(),
            media: hls::master::MediaInfo { codecs: vec!["avc1.42c01e".into()], resolution: Some((320, 180)) },
            frame_rate: Some(25.0),
            peak_bandwidth: Some(peak),
            average_bandwidth: Some(peak / 2),
            audio: None,
        }
    }

    /// Members whose video and audio are split (CMAF shared with DASH) are listed by their video
    /// playlists, each with an audio group of its own naming its audio playlist; a muxed member
    /// of the same master by its media playlist, as before.
    #[tokio::test]
    async fn split_members_list_their_video_playlist_and_their_own_audio_group() {
        let dir = std::env::temp_dir().join(format!("sluice-variant-split-{}", std::process::id()));
        let conf = format!(
            "live on; hls on; hls_path {}; hls_nested on; hls_variant _lo BANDWIDTH=300000; hls_variant _hi BANDWIDTH=900000;",
            dir.display()
        );
        let app = crate::config::test_app(&conf);
        let store = HlsStore::new(CancellationToken::new());
        let hi = Member::new(&store, &app, &dir, "x_hi").unwrap();
        let lo = Member::new(&store, &app, &dir, "x_lo").unwrap();
        let split = |peak| Variant {
            audio: Some(hls::master::AudioRendition { channels: 2, ..Default::default() }),
            ..measured(peak)
        };
        update(&store, &hi, split(900_000), 7).unwrap();
        update(&store, &lo, measured(300_000), 7).unwrap();
        let master = dir.join("x.m3u8");
        let text = String::from_utf8_lossy(&store.get(&master, None).await.unwrap().body).into_owned();
        assert!(
            text.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio1\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"x_hi/audio.m3u8\"\n"),
            "{text}"
        );
        assert!(text.contains(",AUDIO=\"audio1\"\nx_hi/video.m3u8\n"), "{text}");
        assert!(text.contains("BANDWIDTH=300000,AVERAGE-BANDWIDTH=150000,RESOLUTION=320x180,CODECS=\"avc1.42c01e\",FRAME-RATE=25.000\nx_lo/index.m3u8\n"), "{text}");
        assert_eq!(text.matches("#EXT-X-MEDIA").count(), 1, "{text}");
        set_position(&store, &hi, hls::Position { last_complete: Some(4), ..Default::default() });
        assert_eq!(rendition_reports(&store, &lo), "#EXT-X-RENDITION-REPORT:URI=\"../x_hi/video.m3u8\",LAST-MSN=4\n");
        drop((hi, lo));
        until("the master removed", || !master.exists()).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn variants_join_and_leave_one_master_per_application() {
        let dir = std::env::temp_dir().join(format!("sluice-variant-{}", std::process::id()));
        let conf = format!(
            "live on; hls on; hls_path {}; hls_nested on; hls_variant _low BANDWIDTH=160000; hls_variant _hi BANDWIDTH=640000;",
            dir.display()
        );
        let app = crate::config::test_app(&conf);
        let other = crate::config::test_app(&conf);
        let store = HlsStore::new(CancellationToken::new());
        assert!(Member::new(&store, &app, &dir, "_low").is_none(), "longer than the suffix");
        assert!(Member::new(&store, &app, &dir, "x_mid").is_none());
        let hi = Member::new(&store, &app, &dir, "x_hi").unwrap();
        let low = Member::new(&store, &app, &dir, "x_low").unwrap();
        let master = dir.join("x.m3u8");
        assert_eq!(hi.master(), master);

        update(&store, &hi, measured(700_000), 3).unwrap();
        update(&store, &low, measured(200_000), 3).unwrap();
        let text = store.get(&master, None).await.expect("served from memory").body;
        let text = String::from_utf8_lossy(&text).into_owned();
        let low_at = text.find("x_low/index.m3u8").unwrap();
        assert!(low_at < text.find("x_hi/index.m3u8").unwrap(), "by bandwidth: {text}");
        assert!(text.contains("BANDWIDTH=160000,AVERAGE-BANDWIDTH=100000,RESOLUTION=320x180"), "{text}");
        until("the master on disk", || std::fs::read_to_string(&master).is_ok_and(|t| t == text)).await;

        let stranger = Member::new(&store, &other, &dir, "x_low").unwrap();
        assert!(update(&store, &stranger, measured(1), 3).is_err(), "one application per master");

        withdraw(&store, &low);
        let text = String::from_utf8_lossy(&store.get(&master, None).await.unwrap().body).into_owned();
        assert!(!text.contains("x_low") && text.contains("x_hi/index.m3u8"), "{text}");
        withdraw(&store, &hi);
        assert!(store.get(&master, None).await.is_none(), "no variant left: out of memory");
        until("the master removed", || !master.exists()).await;
        until("the registry empty", || store.variants.masters().is_empty()).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ladder_streams_are_placed_in_their_sources_master() {
        let app = |body: &str| crate::config::test_app(&format!("live on; hls on; hls_path /tmp/h; {body}"));
        let nested = app("hls_nested on; transcode 480p 800k; transcode 240p 300k audio=64k;");
        let at = |app: &AppConf, name: &str| place(app, name).map(|p| (p.master_file, p.order, p.floor));
        assert_eq!(at(&nested, "cam"), Some(("cam.m3u8".into(), 0, None)));
        // (800k + 128k) and (300k + 64k), plus 10 %.
        assert_eq!(at(&nested, "cam_480p"), Some(("cam.m3u8".into(), 1, Some(1_020_800))));
        assert_eq!(at(&nested, "cam_240p"), Some(("cam.m3u8".into(), 2, Some(400_400))));
        assert_eq!(at(&nested, "cam_360p"), Some(("cam_360p.m3u8".into(), 0, None)), "not a rendition: a source");
        assert_eq!(at(&nested, "_480p"), None, "no source name");
        let flat = app("transcode 480p 800k;");
        assert_eq!(at(&flat, "cam"), Some(("cam_abr.m3u8".into(), 0, None)));
        assert_eq!(at(&flat, "cam_480p").map(|p| p.0), Some("cam_abr.m3u8".into()));
        // hls_variant lines are used as given: the source is no variant, no floor.
        let both = app("transcode 480p 800k; hls_variant _480p BANDWIDTH=1;");
        assert_eq!(at(&both, "cam"), None);
        assert_eq!(at(&both, "cam_480p"), Some(("cam.m3u8".into(), 0, None)));
        assert_eq!(at(&app("hls_variant _hi;"), "cam"), None);
        assert_eq!(at(&app(""), "cam"), None);
    }

    /// A ladder master lists the source with its measured peak and a rendition with its
    /// configured rate plus headroom, or its measured peak when that is higher.
    #[tokio::test]
    async fn ladder_renditions_take_the_larger_of_configured_and_measured_bandwidth() {
        let dir = std::env::temp_dir().join(format!("sluice-variant-ladder-{}", std::process::id()));
        let conf = format!("live on; hls on; hls_path {}; hls_nested on; transcode 480p 800k;", dir.display());
        let app = crate::config::test_app(&conf);
        let store = HlsStore::new(CancellationToken::new());
        let source = Member::new(&store, &app, &dir, "cam").unwrap();
        let rendition = Member::new(&store, &app, &dir, "cam_480p").unwrap();
        let master = dir.join("cam.m3u8");
        assert_eq!(source.master(), master);
        update(&store, &source, measured(3_000_000), 3).unwrap();
        update(&store, &rendition, measured(700_000), 3).unwrap();
        let text = String::from_utf8_lossy(&store.get(&master, None).await.unwrap().body).into_owned();
        let rendition_at = text.find("BANDWIDTH=1020800,AVERAGE-BANDWIDTH=350000").expect(&text);
        assert!(rendition_at < text.find("BANDWIDTH=3000000").expect(&text), "by bandwidth: {text}");
        assert!(text.find("cam_480p/index.m3u8").unwrap() < text.find("cam/index.m3u8").unwrap(), "{text}");
        update(&store, &rendition, measured(1_500_000), 3).unwrap();
        let text = String::from_utf8_lossy(&store.get(&master, None).await.unwrap().body).into_owned();
        assert!(text.contains("BANDWIDTH=1500000,"), "measured above configured: {text}");
        drop((source, rendition));
        until("the master removed", || !master.exists()).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A task that ends without withdrawing (a panic) still leaves; with `hls_cleanup off` the
    /// master's last text stays on disk when no variant is left.
    #[tokio::test]
    async fn dropped_members_leave_and_cleanup_off_keeps_the_file() {
        let dir = std::env::temp_dir().join(format!("sluice-variant-keep-{}", std::process::id()));
        let conf = format!("live on; hls on; hls_path {}; hls_cleanup off; hls_variant _a;", dir.display());
        let app = crate::config::test_app(&conf);
        let store = HlsStore::new(CancellationToken::new());
        let master = dir.join("x.m3u8");
        let member = Member::new(&store, &app, &dir, "x_a").unwrap();
        update(&store, &member, measured(1000), 3).unwrap();
        until("the master on disk", || master.exists()).await;
        drop(member);
        assert!(store.get(&master, None).await.is_none(), "out of memory");
        until("the registry empty", || store.variants.masters().is_empty()).await;
        assert!(std::fs::read_to_string(&master).unwrap().contains("x_a.m3u8"), "kept on disk");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Variant tasks race (joining, updating, leaving, on several threads): memory always
    /// holds the text of the variants listed, and the disk ends with the newest text.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_variants_leave_neither_a_torn_nor_a_stale_master() {
        let dir = std::env::temp_dir().join(format!("sluice-variant-race-{}", std::process::id()));
        let conf = format!(
            "live on; hls on; hls_path {}; hls_variant _a; hls_variant _b; hls_variant _c; hls_variant _d;",
            dir.display()
        );
        let app = crate::config::test_app(&conf);
        let store = HlsStore::new(CancellationToken::new());
        let master = dir.join("x.m3u8");
        let tasks: Vec<_> = ["x_a", "x_b", "x_c", "x_d"]
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let (store, member) = (store.clone(), Member::new(&store, &app, &dir, name).unwrap());
                tokio::spawn(async move {
                    for round in 0..200u64 {
                        update(&store, &member, measured(100_000 * (i as u64 + 1) + round), 3).unwrap();
                        if round % 7 == i as u64 && round < 199 {
                            withdraw(&store, &member);
                        }
                        tokio::task::yield_now().await;
                    }
                    // The last three stay listed (while their members live); `x_a` leaves.
                    if i == 0 {
                        withdraw(&store, &member);
                    }
                    member
                })
            })
            .collect();
        let mut members = Vec::new();
        for t in tasks {
            members.push(t.await.unwrap());
        }
        let text = String::from_utf8_lossy(&store.get(&master, None).await.unwrap().body).into_owned();
        assert_eq!(text.matches("#EXT-X-STREAM-INF").count(), 3, "{text}");
        assert!(!text.contains("x_a.m3u8") && text.contains("BANDWIDTH=400199"), "the newest: {text}");
        until("the newest text on disk", || std::fs::read_to_string(&master).is_ok_and(|t| t == text)).await;
        drop(members);
        until("the master removed", || !master.exists()).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

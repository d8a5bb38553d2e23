//! One set of CMAF segments for HLS and DASH. When an application has HLS with
//! `hls_fragment_type fmp4` and `dash on` (and no `hls_keys`: encrypted segments cannot serve
//! DASH), the DASH module runs no packager of its own for a stream: the HLS task writes video
//! and audio as separate CMAF tracks (`hls::Settings::demux`) and hands every init segment and
//! segment to this [`Sink`], which lists them in an MPD (`dash::mpd::render`, `SegmentTemplate`
//! + `SegmentTimeline` on each track's own media time).
//!
//! One write: each segment's bytes are made once (one `Bytes`) and written once, under
//! `hls_path`; the names the MPD uses under `dash_path` are hard links to those files, so any
//! `root` location (nginx's or the built-in server's) serves them. Where a hard link cannot be
//! made (another file system), the bytes are written again and that is logged once.
//! One memory copy: the DASH store holds clones of the same `Bytes` the HLS store holds.
//!
//! Segments are cut by `hls_fragment`; `dash_fragment` is not used. `dash_playlist_length` and
//! `dash_cleanup` keep their meaning for the MPD's window and the files under `dash_path` (a hard
//! link outlives the HLS name it came from). Names carry the HLS publish's session
//! (`NAME-SESSION-T.m4v`, nested `NAME/SESSION-T.m4v`): a later publish never reuses a URL.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dash::mpd::{AudioRep, LowLatency, Manifest, VideoRep};
use hls::Tracks;
use tokio::sync::watch;

use super::{manifest_path, DashStore, Removals, MAX_WAIT};
use crate::atomic_file::write_atomically;
use crate::config::AppConf;

/// Segments per track held in the DASH store (the HLS store holds the same ones).
const MEMORY_SEGMENTS: usize = 3;

/// Whether stream `name` of `app` is served to DASH from its HLS segments.
pub(crate) fn applies(app: &AppConf, name: &str) -> bool {
    crate::config::shares_cmaf(app)
        // It gets no HLS (see `shadows_split`): DASH packages it itself.
        && !shadows_split(app, name)
        // A stream whose MPD would be another's variant MPD gets no DASH (`variant::shadows_variant`).
        && !super::variant::shadows_variant(app, name)
}

/// Whether stream `name`'s own playlist would be at the path of another stream's split
/// playlist: flat, where the segments are shared, `X-video.m3u8` and `X-audio.m3u8` are stream
/// `X`'s video and audio playlists, so a stream named `X-video` or `X-audio` (X not empty) gets no
/// HLS, whichever was published first and whether `X` is published or not (the rule goes by the
/// name alone, so the outcome never depends on the order). Nested names cannot collide
/// (`X/video.m3u8`: stream names have no `/`).
pub(crate) fn shadows_split(app: &AppConf, name: &str) -> bool {
    let base = name.strip_suffix("-video").or_else(|| name.strip_suffix("-audio"));
    crate::config::shares_cmaf(app) && !app.hls.nested && base.is_some_and(|b| !b.is_empty())
}

/// What the MPD says about the tracks, from the HLS segmenter.
#[derive(Debug, Clone, Default)]
pub(crate) struct Media {
    /// RFC 6381 codec string, width, height.
    pub video: Option<(String, u16, u16)>,
    /// RFC 6381 codec string, sample rate, channels.
    pub audio: Option<(String, u32, u16)>,
}

/// One track's listed segments.
#[derive(Default)]
struct Line {
    /// (start ms, duration ms, bytes, path under `dash_path`).
    listed: VecDeque<(u64, u64, usize, PathBuf)>,
    init: Option<PathBuf>,
}

impl Line {
    fn timeline(&self) -> Vec<(u64, u64)> {
        self.listed.iter().map(|(t, d, _, _)| (*t, *d)).collect()
    }

    fn bandwidth(&self) -> u64 {
        let (ms, bytes) = self.listed.iter().fold((0, 0), |(ms, b), (_, d, n, _)| (ms + d, b + *n as u64));
        (bytes * 8 * 1000).checked_div(ms).unwrap_or(0).max(1)
    }

    fn end(&self) -> Option<u64> {
        self.listed.back().map(|(t, d, _, _)| t + d)
    }
}

/// The DASH side of one stream whose HLS segments it shares.
pub(crate) struct Sink {
    store: Arc<DashStore>,
    app: Arc<AppConf>,
    name: String,
    mpd: PathBuf,
    /// The HLS publish whose segments are listed (each publish starts a new timeline).
    session: Option<u64>,
    /// Wall clock (Unix ms) at media time 0: `availabilityStartTime`.
    anchor_ms: Option<u64>,
    video: Line,
    audio: Line,
    live: bool,
    /// The tracks as last described (the segmenter forgets them when its publisher leaves).
    media: Media,
    /// Segments in the DASH store, oldest first.
    in_memory: VecDeque<PathBuf>,
    /// Files that left the window, with when they may go (`dash_cleanup`).
    expired: Removals,
    logged: Vec<&'static str>,
    /// Bumped after every write: requests waiting for the next segment look again.
    written: Arc<watch::Sender<u64>>,
    next: Vec<PathBuf>,
    /// The variant MPD (`hls_variant`, transcode ladder) that lists this stream too.
    variant: Option<super::variant::Place>,
    /// Low latency: the MPD's settings; `None` without parts (see [`low_latency`]).
    low_latency: Option<LowLatency>,
    /// Low latency: each track's segment being written (video, audio).
    open: [Option<Open>; 2],
}

/// A segment being written, served chunk by chunk from its LL-HLS parts (`DashStore`'s chunked
/// answers, as DASH's own low-latency fragments).
struct Open {
    /// The HLS segment it is.
    msn: u64,
    /// Its start on the track's clock and DASH name, once known (a part without samples of
    /// the track does not say it).
    path: Option<(u64, PathBuf)>,
    /// Its parts before that: at most a segment's bytes, which the segmenter holds anyway.
    held: Vec<Bytes>,
}

/// The low-latency MPD settings for an application whose segments DASH shares: with
/// `dash_low_latency on`, made of the LL-HLS parts (`hls_low_latency on`), so the part duration
/// is `hls_part_duration` and the fragment `hls_fragment`. `dash_low_latency` without
/// `hls_low_latency` has no parts to send: warned (`config::hls::shared_report` at -t, and at publish).
pub(crate) fn low_latency(app: &AppConf) -> Option<LowLatency> {
    let parts = app.dash.low_latency && app.hls.low_latency;
    let fragment_ms = (app.hls.fragment.as_millis() as u64).max(1);
    parts.then(|| LowLatency::new(fragment_ms, app.hls.part_duration.as_millis() as u64))
}

impl Sink {
    /// The sink for stream `name`; `None` (logged) when the name cannot be a path.
    pub(crate) fn new(store: Arc<DashStore>, app: Arc<AppConf>, name: &str) -> Option<Self> {
        let dir = app.dash.path.clone()?;
        let mpd = match manifest_path(&dir, name, app.dash.nested) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(app = %app.name, stream = %crate::untrusted::for_log(name), "dash: {e}; no DASH for this stream");
                return None;
            }
        };
        tracing::info!(app = %app.name, stream = %name, path = %mpd.display(), "dash: the MPD lists the HLS segments (one set of CMAF segments; hls_fragment cuts them, dash_fragment is not used)");
        if app.dash.low_latency && !app.hls.low_latency {
            tracing::warn!(app = %app.name, stream = %name, "dash: dash_low_latency needs hls_low_latency here (DASH sends the shared segments' LL-HLS parts as chunks); this MPD is not low-latency");
        }
        let low_latency = low_latency(&app);
        Some(Sink {
            store,
            name: name.to_string(),
            mpd,
            session: None,
            anchor_ms: None,
            video: Line::default(),
            audio: Line::default(),
            live: true,
            media: Media::default(),
            in_memory: VecDeque::new(),
            expired: Removals::default(),
            logged: Vec::new(),
            written: Arc::new(watch::channel(0).0),
            next: Vec::new(),
            low_latency,
            open: [None, None],
            variant: super::variant::place(&app, &dir, name),
            app,
        })
    }

    /// What file names start with, relative to the MPD: `NAME-SESSION-`, nested `SESSION-`.
    fn prefix(&self) -> String {
        let session = self.session.map_or_else(String::new, |s| format!("{s}-"));
        if self.app.dash.nested {
            session
        } else {
            format!("{}-{session}", self.name)
        }
    }

    fn file(&self, stem: &str, audio: bool) -> PathBuf {
        let dir = self.mpd.parent().unwrap_or(Path::new("."));
        dir.join(format!("{}{stem}.{}", self.prefix(), if audio { "m4a" } else { "m4v" }))
    }

    /// An init segment the HLS task wrote at `hls_file`. A new session (the publisher came back)
    /// starts a new timeline: what the previous one listed leaves the MPD.
    pub(crate) async fn init(&mut self, tracks: Tracks, hls_file: &Path, data: &Bytes, session: Option<u64>) {
        if session != self.session || !self.live {
            self.restart(session).await;
        }
        let audio = match tracks {
            Tracks::Video => false,
            Tracks::Audio => true,
            Tracks::Both => return,
        };
        let path = self.file("init", audio);
        self.link(hls_file, &path, data).await;
        self.store.files().insert(path.clone(), data.clone());
        self.line(audio).init = Some(path);
    }

    /// Low latency: a part of segment `msn` of a track (HLS's `Event::Part`), a chunk of the
    /// DASH segment being written. A GET of it is answered with the chunks so far, then each
    /// one as it comes (`DashStore::get`); [`Sink::segment`] completes it.
    /// Once its first chunk is out, the segment is listed in the MPD at the nominal
    /// `hls_fragment` duration (as DASH's own low-latency fragments): players read the timeline
    /// for what to fetch; the next MPD has its real duration.
    pub(crate) async fn part(
        &mut self,
        tracks: Tracks,
        msn: u64,
        data: &Bytes,
        media_start_ms: Option<u64>,
        now_ms: u64,
    ) {
        let Some(audio) = track_index(tracks).filter(|_| self.low_latency.is_some()) else { return };
        if self.open[audio].as_ref().is_some_and(|o| o.msn != msn) {
            self.abandon(audio);
        }
        let open = self.open[audio].get_or_insert_with(|| Open { msn, path: None, held: Vec::new() });
        if !data.is_empty() {
            open.held.push(data.clone());
        }
        if open.path.is_none() {
            // A track's timeline only goes forward: a segment starting before the listed ones
            // end is not listed (`segment`), so not served as chunks either.
            let end = if audio == 1 { self.audio.end() } else { self.video.end() };
            let Some(start) = media_start_ms.filter(|s| end.is_none_or(|e| *s >= e)) else { return };
            let path = self.file(&start.to_string(), audio == 1);
            if let Some(open) = &mut self.open[audio] {
                open.path = Some((start, path));
            }
        }
        let Some(open) = &mut self.open[audio] else { return };
        let Some((_, path)) = open.path.clone() else { return };
        let mut opened = false;
        for chunk in open.held.drain(..) {
            opened |= self.store.append_part(&path, chunk);
        }
        if opened {
            // Listed now; requests waiting for this segment (`expect_next`) are answered.
            self.write_mpd(now_ms).await;
            self.written.send_modify(|n| *n += 1);
        }
    }

    /// A track's segment being written will not complete under its name: chunked answers of it
    /// break off (the player sees a truncated body, not a short segment).
    fn abandon(&mut self, track: usize) {
        if let Some((_, path)) = self.open[track].take().and_then(|o| o.path) {
            self.store.partial().remove(&path);
        }
    }

    /// A segment the HLS task wrote at `hls_file`, covering `media_ms` of its track's clock.
    pub(crate) async fn segment(
        &mut self,
        tracks: Tracks,
        hls_file: &Path,
        data: &Bytes,
        media_ms: Option<(u64, u64)>,
        now_ms: u64,
    ) {
        let Some(track) = track_index(tracks) else { return };
        let audio = track == 1;
        let open = self.open[track].take();
        let Some((start, end)) = media_ms.filter(|(s, e)| e > s) else {
            self.open[track] = open;
            return self.abandon(track);
        };
        let path = self.file(&start.to_string(), audio);
        let chunked = open.and_then(|o| o.path).map(|(_, p)| p);
        if let Some(other) = chunked.as_ref().filter(|p| **p != path) {
            self.store.partial().remove(other);
        }
        // A track's timeline only goes forward (a segment without samples of it has no span).
        if self.line(audio).end().is_some_and(|e| start < e) {
            self.store.partial().remove(&path);
            return;
        }
        self.anchor_ms.get_or_insert(now_ms.saturating_sub(end));
        self.link(hls_file, &path, data).await;
        self.store.files().insert(path.clone(), data.clone());
        // The chunked answers end: the file is complete (the same bytes as its parts).
        self.store.complete_part(&path);
        self.in_memory.push_back(path.clone());
        while self.in_memory.len() > 2 * MEMORY_SEGMENTS {
            if let Some(old) = self.in_memory.pop_front() {
                self.store.files().remove(&old);
            }
        }
        self.line(audio).listed.push_back((start, end - start, data.len(), path));
        self.trim_window(audio).await;
        self.remove_expired(false).await;
    }

    /// Every segment being written is abandoned (the publish ended or restarted).
    fn abandon_all(&mut self) {
        for track in 0..2 {
            self.abandon(track);
        }
    }

    fn line(&mut self, audio: bool) -> &mut Line {
        if audio {
            &mut self.audio
        } else {
            &mut self.video
        }
    }

    /// Segments older than `dash_playlist_length` leave the MPD (and, with `dash_cleanup`, the
    /// disk after that long again).
    async fn trim_window(&mut self, audio: bool) {
        let window = self.app.dash.playlist_length.as_millis() as u64;
        let mut gone = Vec::new();
        {
            let line = self.line(audio);
            let mut total: u64 = line.listed.iter().map(|s| s.1).sum();
            while line.listed.len() > 1 && total - line.listed[0].1 >= window {
                let Some((_, d, _, path)) = line.listed.pop_front() else { break };
                total -= d;
                gone.push(path);
            }
        }
        for path in gone {
            self.store.files().remove(&path);
            self.in_memory.retain(|p| *p != path);
            self.schedule_removal(path).await;
        }
    }

    async fn schedule_removal(&mut self, path: PathBuf) {
        if !self.app.dash.cleanup {
            return;
        }
        self.expired.schedule(path, self.app.dash.playlist_length).await;
    }

    async fn remove_expired(&mut self, all: bool) {
        self.expired.remove_due(all).await;
    }

    /// A new timeline (a new HLS publish): the listed segments leave the MPD.
    async fn restart(&mut self, session: Option<u64>) {
        self.abandon_all();
        let old: Vec<PathBuf> = [&mut self.video, &mut self.audio]
            .into_iter()
            .flat_map(|l| l.listed.drain(..).map(|s| s.3).chain(l.init.take()))
            .collect();
        for path in old {
            self.store.files().remove(&path);
            self.schedule_removal(path).await;
        }
        self.in_memory.clear();
        self.session = session;
        self.anchor_ms = None;
        self.live = true;
    }

    /// The MPD changed (a segment came): render, store and write it.
    pub(crate) async fn publish(&mut self, media: &Media, now_ms: u64) {
        if media.video.is_some() || media.audio.is_some() {
            self.media = media.clone();
        }
        self.write_mpd(now_ms).await;
        if let Some(place) = self.variant.as_ref().filter(|_| self.live) {
            super::variant::update_shared(&self.store, place, &self.manifest(&self.media, now_ms), now_ms).await;
        }
    }

    async fn write_mpd(&mut self, now_ms: u64) {
        if self.video.listed.is_empty() && self.audio.listed.is_empty() {
            return;
        }
        let text = Bytes::from(dash::mpd::render(&self.manifest(&self.media, now_ms)));
        self.store.files().insert(self.mpd.clone(), text.clone());
        if let Err(e) = write_atomically(&self.mpd, &text).await {
            let what = format!("cannot write {}: {e}", self.mpd.display());
            self.log_once("mpd", what);
        }
        self.expect_next();
    }

    /// The stream ended (or its publisher left): the MPD is static.
    pub(crate) async fn finish(&mut self, now_ms: u64) {
        if !self.live {
            return;
        }
        self.live = false;
        if let Some(place) = &self.variant {
            // Players must not be sent to a variant that stopped.
            super::variant::withdraw_shared(&self.store, place, &self.manifest(&self.media, now_ms), now_ms).await;
        }
        self.abandon_all();
        self.write_mpd(now_ms).await;
        self.expect_next();
    }

    /// After the stream's linger: its segments leave memory and, with `dash_cleanup`, the disk.
    /// `replaced`: a later publish of the name writes the MPD now (its segments have other
    /// names), so the MPD stays.
    pub(crate) async fn cleanup(&mut self, replaced: bool) {
        self.live = false;
        self.abandon_all();
        self.expect_next();
        let mut mine: Vec<PathBuf> = [&self.video, &self.audio]
            .into_iter()
            .flat_map(|l| l.listed.iter().map(|s| s.3.clone()).chain(l.init.clone()))
            .collect();
        if !replaced {
            mine.push(self.mpd.clone());
        }
        {
            let mut files = self.store.files();
            for p in mine.iter().chain(&self.in_memory) {
                files.remove(p);
            }
        }
        self.in_memory.clear();
        if self.app.dash.cleanup && !replaced {
            self.remove_expired(true).await;
            for p in mine {
                let _ = tokio::fs::remove_file(&p).await;
            }
            tracing::info!(app = %self.app.name, stream = %self.name, "dash: cleaned up");
        }
    }

    /// A track's timeline in the MPD: its listed segments and, low-latency and live, the one
    /// being written at the nominal `hls_fragment` duration.
    fn timeline(&self, audio: bool) -> Vec<(u64, u64)> {
        let line = if audio { &self.audio } else { &self.video };
        let mut t = line.timeline();
        let open = self.open[usize::from(audio)].as_ref().and_then(|o| o.path.as_ref());
        if let Some((start, _)) = open.filter(|_| self.live && self.low_latency.is_some()) {
            t.push((*start, (self.app.hls.fragment.as_millis() as u64).max(1)));
        }
        t
    }

    fn manifest(&self, media: &Media, now_ms: u64) -> Manifest {
        let prefix = self.prefix();
        let video = media.video.as_ref().filter(|_| !self.video.listed.is_empty()).map(|(codecs, w, h)| VideoRep {
            prefix: prefix.clone(),
            offset: 0,
            id: format!("{}_video", self.name),
            codecs: codecs.clone(),
            width: *w,
            height: *h,
            bandwidth: self.video.bandwidth(),
            timeline: self.timeline(false),
        });
        let audio = media.audio.as_ref().filter(|_| !self.audio.listed.is_empty()).map(|(codecs, rate, ch)| AudioRep {
            prefix: prefix.clone(),
            offset: 0,
            id: format!("{}_audio", self.name),
            codecs: codecs.clone(),
            sample_rate: *rate,
            channels: *ch,
            bandwidth: self.audio.bandwidth(),
            timeline: self.timeline(true),
        });
        Manifest {
            dynamic: self.live,
            availability_start_ms: self.anchor_ms.unwrap_or(now_ms),
            publish_ms: now_ms,
            fragment_ms: (self.app.hls.fragment.as_millis() as u64).max(1),
            window_ms: self.app.dash.playlist_length.as_millis() as u64,
            video: video.into_iter().collect(),
            audio: audio.into_iter().collect(),
            low_latency: self.low_latency.clone().filter(|_| self.live),
        }
    }

    /// Registers each track's next segment (it starts where the last listed one ends), so a
    /// player that reads the timeline ahead waits for it instead of getting a 404.
    fn expect_next(&mut self) {
        let wait = (self.app.hls.fragment * 2).clamp(Duration::from_secs(1), MAX_WAIT);
        let mut next = Vec::new();
        if self.live {
            for audio in [false, true] {
                let end = if audio { self.audio.end() } else { self.video.end() };
                if let Some(end) = end {
                    next.push(self.file(&end.to_string(), audio));
                }
            }
        }
        self.store.expect(&mut self.next, next, &self.written, wait);
    }

    /// `dash` names `hls` (one file on disk, two names); the bytes written again where a link
    /// cannot be made.
    async fn link(&mut self, hls: &Path, dash: &Path, data: &Bytes) {
        if let Some(dir) = dash.parent() {
            let _ = tokio::fs::create_dir_all(dir).await;
        }
        if let Err(e) = hard_link_over(hls, dash).await {
            self.log_once(
                "link",
                format!(
                    "cannot hard-link {} to {}: {e}; DASH segments are written again under dash_path",
                    hls.display(),
                    dash.display()
                ),
            );
            if let Err(e) = write_atomically(dash, data).await {
                self.log_once("write", format!("cannot write {}: {e}", dash.display()));
            }
        }
    }

    fn log_once(&mut self, kind: &'static str, what: String) {
        if !self.logged.contains(&kind) {
            self.logged.push(kind);
            tracing::warn!(app = %self.app.name, stream = %self.name, "dash: {what} (said once)");
        }
    }
}

/// The index of a split track in [`Sink::open`]: video 0, audio 1; `None` for muxed.
fn track_index(tracks: Tracks) -> Option<usize> {
    match tracks {
        Tracks::Video => Some(0),
        Tracks::Audio => Some(1),
        Tracks::Both => None,
    }
}

/// A hard link at `to` for `from`, replacing what `to` was (atomically: linked under a temporary
/// name, then renamed over).
async fn hard_link_over(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".link");
    let tmp = PathBuf::from(tmp);
    let _ = tokio::fs::remove_file(&tmp).await;
    tokio::fs::hard_link(from, &tmp).await?;
    if let Err(e) = tokio::fs::rename(&tmp, to).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    Ok(())
}

/// What the DASH store holds now (for tests elsewhere in the crate).
#[cfg(test)]
pub(crate) fn stored(store: &DashStore) -> Vec<(PathBuf, Bytes)> {
    store.files().iter().map(|(p, b)| (p.clone(), b.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    #[test]
    fn names_of_another_streams_split_playlists_get_no_hls_by_name_alone() {
        let app = |extra: &str| {
            crate::config::test_app(&format!(
                "hls on; hls_path /tmp/h; hls_fragment_type fmp4; dash on; dash_path /tmp/d; {extra}"
            ))
        };
        let flat = app("");
        for name in ["cam-video", "cam-audio", "a-b-video"] {
            assert!(shadows_split(&flat, name) && !applies(&flat, name), "{name}");
        }
        for name in ["cam", "-video", "video", "cam-videos", "cam_video"] {
            assert!(!shadows_split(&flat, name), "{name}");
        }
        assert!(applies(&flat, "cam"));
        assert!(!shadows_split(&app("hls_nested on;"), "cam-video"), "nested: cam/video.m3u8");
        let ts = crate::config::test_app("hls on; hls_path /tmp/h; dash on; dash_path /tmp/d;");
        assert!(!shadows_split(&ts, "cam-video"), "not split: no collision");
    }

    #[tokio::test]
    async fn links_copies_where_it_cannot_keeps_its_window_and_expects_the_next_segment() {
        let dir = std::env::temp_dir().join(format!("sluice-dash-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("hls")).unwrap();
        let conf = format!(
            "live on; hls on; hls_path {0}/hls; hls_fragment 1s; hls_fragment_type fmp4; \
             dash on; dash_path {0}/dash; dash_playlist_length 2s;",
            dir.display()
        );
        let app = crate::config::test_app(&conf);
        let store = DashStore::new(CancellationToken::new());
        let mut sink = Sink::new(store.clone(), app, "s").unwrap();
        let init = Bytes::from_static(b"init");
        let hls_init = dir.join("hls/s-5-init.mp4");
        std::fs::write(&hls_init, &init).unwrap();
        sink.init(Tracks::Video, &hls_init, &init, Some(5)).await;
        let dash_init = dir.join("dash/s-5-init.m4v");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&dash_init).unwrap().ino(), std::fs::metadata(&hls_init).unwrap().ino());
        // No HLS file to link to (a failed write, another file system): the bytes are written.
        for i in 0..4u64 {
            let data = Bytes::from(format!("segment {i}"));
            let missing = dir.join(format!("hls/s-5-{i}.m4s"));
            sink.segment(Tracks::Video, &missing, &data, Some((i * 1000, i * 1000 + 1000)), 10_000).await;
        }
        assert_eq!(std::fs::read(dir.join("dash/s-5-3000.m4v")).unwrap(), b"segment 3");
        assert_eq!(sink.logged, ["link"], "said once");
        let media = Media { video: Some(("avc1.64001f".into(), 640, 360)), audio: None };
        sink.publish(&media, 10_000).await;
        let mpd = String::from_utf8(store.files().get(&dir.join("dash/s.mpd")).unwrap().to_vec()).unwrap();
        assert!(mpd.contains("media=\"s-5-$Time$.m4v\" initialization=\"s-5-init.m4v\""), "{mpd}");
        assert!(
            mpd.contains("<S t=\"2000\" d=\"1000\"/>\n            <S d=\"1000\"/>\n          </SegmentTimeline>"),
            "{mpd}"
        );
        assert!(!store.files().contains_key(&dir.join("dash/s-5-1000.m4v")), "left the window and memory");
        assert!(store.expected().contains_key(&dir.join("dash/s-5-4000.m4v")), "the next one is expected");
        sink.finish(11_000).await;
        assert!(store.expected().is_empty(), "nothing comes after the end");
        let mpd = String::from_utf8(std::fs::read(dir.join("dash/s.mpd")).unwrap()).unwrap();
        assert!(mpd.contains("type=\"static\""), "{mpd}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Low latency: the parts of a segment being written answer a GET of its DASH name chunk by
    /// chunk (the first part, without samples of the track, waits for one that says where the
    /// segment starts), the segment completes the answer, and the MPD says it is low-latency.
    #[tokio::test]
    async fn parts_are_chunks_of_the_segment_being_written_and_the_mpd_is_low_latency() {
        use axum::body::HttpBody;
        async fn frame(body: &mut axum::body::Body) -> Option<Bytes> {
            let f = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await?;
            Some(f.unwrap().into_data().unwrap())
        }
        let dir = std::env::temp_dir().join(format!("sluice-dash-shared-ll-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("hls")).unwrap();
        let conf = format!(
            "live on; hls on; hls_path {0}/hls; hls_fragment 2s; hls_fragment_type fmp4; hls_low_latency on; \
             hls_part_duration 500ms; dash on; dash_path {0}/dash; dash_low_latency on;",
            dir.display()
        );
        let store = DashStore::new(CancellationToken::new());
        let mut sink = Sink::new(store.clone(), crate::config::test_app(&conf), "s").unwrap();
        let init = Bytes::from_static(b"init");
        let hls_init = dir.join("hls/s-5-init.a.mp4");
        std::fs::write(&hls_init, &init).unwrap();
        sink.init(Tracks::Audio, &hls_init, &init, Some(5)).await;
        let path = dir.join("dash/s-5-2000.m4a");
        sink.part(Tracks::Audio, 1, &Bytes::from_static(b"styp"), None, 9_000).await;
        assert!(store.get(&path).await.is_none(), "no start yet: not served");
        sink.part(Tracks::Audio, 1, &Bytes::from_static(b"A"), Some(2000), 9_000).await;
        let mut body = store.get(&path).await.unwrap().into_body();
        assert_eq!(frame(&mut body).await.unwrap(), "styp");
        assert_eq!(frame(&mut body).await.unwrap(), "A");
        sink.part(Tracks::Audio, 1, &Bytes::from_static(b"B"), Some(2000), 9_000).await;
        assert_eq!(frame(&mut body).await.unwrap(), "B");
        let data = Bytes::from_static(b"stypAB");
        let hls_file = dir.join("hls/s-5-1.a.m4s");
        std::fs::write(&hls_file, &data).unwrap();
        sink.segment(Tracks::Audio, &hls_file, &data, Some((2000, 4000)), 10_000).await;
        assert!(frame(&mut body).await.is_none(), "complete: the answer ends");
        assert!(store.partial().is_empty());
        let media = Media { video: None, audio: Some(("mp4a.40.2".into(), 44100, 2)) };
        sink.publish(&media, 10_000).await;
        let mpd = String::from_utf8(store.files().get(&dir.join("dash/s.mpd")).unwrap().to_vec()).unwrap();
        assert!(mpd.contains("availabilityTimeOffset=\"1.500\""), "hls_fragment - hls_part_duration: {mpd}");
        // The next segment's parts, then the publisher leaves: its chunked answer breaks off.
        sink.part(Tracks::Audio, 2, &Bytes::from_static(b"styp"), Some(4000), 10_500).await;
        let mpd = String::from_utf8(store.files().get(&dir.join("dash/s.mpd")).unwrap().to_vec()).unwrap();
        assert!(mpd.contains("<S t=\"2000\" d=\"2000\"/>\n            <S d=\"2000\"/>"), "listed once begun: {mpd}");
        let mut body = store.get(&dir.join("dash/s-5-4000.m4a")).await.unwrap().into_body();
        assert_eq!(frame(&mut body).await.unwrap(), "styp");
        sink.finish(11_000).await;
        let end = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        assert!(matches!(end, Some(Err(_))), "abandoned, not a short segment");
        let mpd = String::from_utf8(store.files().get(&dir.join("dash/s.mpd")).unwrap().to_vec()).unwrap();
        assert!(!mpd.contains("availabilityTimeOffset"), "static: {mpd}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

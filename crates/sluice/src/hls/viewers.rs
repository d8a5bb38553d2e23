//! HLS viewers on an edge: a request for the live playlist (or DASH manifest) of a stream that
//! an application pulls on demand (a non-`static` `pull`, or the cluster directory) starts that
//! pull, as an RTMP player would, and the stream's HLS (DASH) requests keep it.
//!
//! The viewers of a stream are one player, the *hold*: a subscriber taken through
//! [`Streams::play`] with no client (the pull counts it as any player). Every playlist or
//! segment request of the stream refreshes it; one task sweeps the holds and drops those not
//! asked for in `hls_playlist_length` (DASH: `dash_playlist_length`; then the pull's own
//! `pull_linger` runs) and those whose pull ended. A playlist request that started (or found) a hold while the playlist is not
//! written yet waits for it, up to `2 × hls_fragment + 10 s`, and gets `404` when the pull
//! fails first. Holds are at most [`MAX_HOLDS`], waiting requests [`MAX_WAITING`] server-wide;
//! past either the request gets `503` (logged once until it is under the bound again).
//!
//! Streams published here, `static` pulls and applications without on-demand pulls are left
//! alone: the request is answered as before.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::AppConf;
use crate::hub::{StreamKey, StreamOptions, Subscriber};
use crate::server::ServerCtx;
use crate::streams::{Player, Streams};
use crate::untrusted;

/// Most streams held for HLS viewers at once (each holds one relay pull).
pub const MAX_HOLDS: usize = 4096;
/// Most playlist requests waiting for a starting pull's first playlist, server-wide.
pub const MAX_WAITING: usize = 1024;
/// A first request waits this much beyond two fragments (the pull connects, the first
/// segment is cut).
const START_MARGIN: Duration = Duration::from_secs(10);
/// How often a waiting request looks for its playlist.
const POLL: Duration = Duration::from_millis(100);
/// How often the holds are swept.
const SWEEP: Duration = Duration::from_millis(500);

/// What the HTTP layer does with an HLS request after the viewers saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Answer it as usual (from memory, else from disk).
    Serve,
    /// The pull it started failed: `404`.
    NotFound,
    /// Too many holds or waiting requests: `503`.
    Busy,
}

/// The HLS viewers' holds, server-wide.
#[derive(Default)]
pub struct Viewers {
    holds: Mutex<HashMap<StreamKey, Hold>>,
    waiting: AtomicUsize,
    holds_full_logged: AtomicBool,
    waiting_full_logged: AtomicBool,
    sweeping: AtomicBool,
}

/// One stream's HLS viewers, as one player of its pull.
struct Hold {
    /// The player: dropping it counts the viewers out of the pull.
    _sub: Subscriber,
    /// The pull session joined: when another one runs, this hold is stale.
    session: u64,
    /// The last request of the stream's HLS.
    last: Instant,
    /// `hls_playlist_length`: how long after the last request the hold goes.
    keep: Duration,
    /// The client of the last request (for the log).
    client: SocketAddr,
}

/// A request's stream, found from the file its URL maps to.
struct Asked {
    ctx: Arc<ServerCtx>,
    app: Arc<AppConf>,
    /// The stream a playlist names (`NAME.m3u8`, `NAME/index.m3u8`); `None` for other files.
    playlist_of: Option<String>,
    /// Every stream the file may belong to (a segment `NAME-SESSION-ID.ts`: each prefix
    /// before a `-`), to refresh a hold with.
    candidates: Vec<String>,
    /// `hls_fragment` (`dash_fragment`): how long the first segment takes.
    fragment: Duration,
    /// `hls_playlist_length` (`dash_playlist_length`): how long a hold outlives its last request.
    keep: Duration,
}

/// Where a hold's player plays: its server block, its stream options, how long it is kept.
struct Place {
    srv: usize,
    opts: StreamOptions,
    keep: Duration,
}

/// Where the answers are: a request waits until its playlist (or MPD) is in memory.
pub struct Ready<'a> {
    /// Live HLS.
    pub hls: &'a super::HlsStore,
    /// Live DASH.
    pub dash: &'a crate::dash::DashStore,
    /// The server's shutdown: waiting ends.
    pub shutdown: &'a CancellationToken,
}

impl Ready<'_> {
    /// Whether the playlist or MPD at `file` is in memory, listing a segment.
    fn at(&self, file: &Path) -> bool {
        self.hls.has_playlist(file) || self.dash.has_file(file)
    }
}

impl Viewers {
    /// See the module's doc: `file` is what the URL maps to, `client` who asks.
    pub async fn admit(
        self: &Arc<Self>,
        store: &Ready<'_>,
        servers: &[Arc<ServerCtx>],
        file: &Path,
        client: SocketAddr,
    ) -> Admission {
        let Some(asked) = locate(servers, file) else { return Admission::Serve };
        let streams = &asked.ctx.streams;
        let held = self.refresh(streams, &asked, client);
        let Some(name) = asked.playlist_of.as_deref().filter(|_| !store.hls.is_master(file)) else {
            return Admission::Serve;
        };
        let key = match held {
            Some(key) => key,
            None => match self.start(streams, &asked, name, client, store.shutdown) {
                Ok(Some(key)) => key,
                Ok(None) => return Admission::Serve,
                Err(busy) => return busy,
            },
        };
        if store.at(file) {
            return Admission::Serve;
        }
        let limit = 2 * asked.fragment + START_MARGIN;
        self.wait(store, streams, &key, file, limit).await
    }

    fn holds(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, Hold>> {
        self.holds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refresh the hold of the stream `asked` names, if one is held and its pull still runs;
    /// its key.
    fn refresh(&self, streams: &Streams, asked: &Asked, client: SocketAddr) -> Option<StreamKey> {
        let names = asked.playlist_of.iter().chain(&asked.candidates);
        for name in names {
            let key = StreamKey { app: asked.app.name.clone(), name: name.clone() };
            if self.touch(streams, &key) {
                if let Some(hold) = self.holds().get_mut(&key) {
                    hold.client = client;
                }
                return Some(key);
            }
        }
        None
    }

    /// Refresh `key`'s hold if it is held and its pull still runs: whether it was.
    fn touch(&self, streams: &Streams, key: &StreamKey) -> bool {
        if !self.holds_pull(streams, key) {
            return false;
        }
        self.holds().get_mut(key).map(|hold| hold.last = Instant::now()).is_some()
    }

    /// Whether `key` is held and its pull is the session the hold joined (a stale hold is
    /// dropped).
    fn holds_pull(&self, streams: &Streams, key: &StreamKey) -> bool {
        let session = streams.pulls().on_demand_session(&key.app, &key.name);
        let mut holds = self.holds();
        let Some(hold) = holds.get(key) else { return false };
        if Some(hold.session) == session {
            return true;
        }
        let stale = holds.remove(key);
        drop(holds);
        tracing::debug!(app = %key.app, stream = %key.name, "hls: the pull held for HLS viewers ended");
        drop(stale);
        false
    }

    /// Hold `name`'s pull for HLS viewers (starting it when nobody publishes the stream):
    /// `Ok(None)` when it is not pulled on demand here after all (published here, or no
    /// room for the pull).
    fn start(
        self: &Arc<Self>,
        streams: &Arc<Streams>,
        asked: &Asked,
        name: &str,
        client: SocketAddr,
        shutdown: &CancellationToken,
    ) -> Result<Option<StreamKey>, Admission> {
        let (app, ctx) = (&asked.app, &asked.ctx);
        let opts = StreamOptions { ring_len: ctx.conf.core.out_queue, gop_cache: app.live.gop_cache };
        let place = Place { srv: ctx.index, opts, keep: asked.keep };
        self.hold(streams, app, &place, name, client, shutdown)
    }

    /// [`Viewers::start`] where `place` says.
    fn hold(
        self: &Arc<Self>,
        streams: &Arc<Streams>,
        app: &Arc<AppConf>,
        place: &Place,
        name: &str,
        client: SocketAddr,
        shutdown: &CancellationToken,
    ) -> Result<Option<StreamKey>, Admission> {
        let key = StreamKey { app: app.name.clone(), name: name.to_owned() };
        let pulls = streams.pulls();
        // Published here: by a client, or a `static` pull.
        if pulls.on_demand_session(&app.name, name).is_none() && streams.hub.is_live(&key) {
            return Ok(None);
        }
        if self.holds().len() >= MAX_HOLDS {
            if !self.holds_full_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(%client, app = %app.name, stream = %name, max = MAX_HOLDS, "hls: too many streams held for HLS viewers; requests of new ones get 503");
            }
            return Err(Admission::Busy);
        }
        let player = Player { app, name, args: "", client: None, srv: place.srv };
        let Some((_, sub)) = streams.play(&player, place.opts) else { return Ok(None) };
        let Some(session) = pulls.on_demand_session(&app.name, name) else { return Ok(None) };
        let hold = Hold { _sub: sub, session, last: Instant::now(), keep: place.keep, client };
        let mut holds = self.holds();
        if holds.contains_key(&key) {
            // Another request held it meanwhile: this player leaves again.
            drop(holds);
            drop(hold);
            return Ok(Some(key));
        }
        holds.insert(key.clone(), hold);
        drop(holds);
        tracing::info!(%client, app = %app.name, stream = %name, "hls: pull started for an HLS viewer");
        self.sweep_from_now(streams.clone(), shutdown.clone());
        Ok(Some(key))
    }

    /// Wait (at most `limit`) for `file`, the playlist of held `key`: served when it comes or
    /// the wait ends, `404` when the pull ends first.
    async fn wait(
        &self,
        store: &Ready<'_>,
        streams: &Streams,
        key: &StreamKey,
        file: &Path,
        limit: Duration,
    ) -> Admission {
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            if !self.waiting_full_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(app = %key.app, stream = %key.name, max = MAX_WAITING, "hls: too many requests waiting for a pull's first playlist; more get 503");
            }
            return Admission::Busy;
        }
        let _waiting = Waiting(self);
        let deadline = Instant::now() + limit;
        loop {
            if store.at(file) || store.shutdown.is_cancelled() || Instant::now() >= deadline {
                return Admission::Serve;
            }
            // A waiting request is a request: the hold must not lapse under it.
            if !self.touch(streams, key) {
                tracing::info!(app = %key.app, stream = %key.name, "hls: the pull for an HLS viewer failed");
                return Admission::NotFound;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Start the one sweeping task, if it is not running yet; it ends with the server.
    fn sweep_from_now(self: &Arc<Self>, streams: Arc<Streams>, shutdown: CancellationToken) {
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let viewers = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => viewers.sweep(&streams, Instant::now()),
                }
            }
            let all: Vec<Hold> = viewers.holds().drain().map(|(_, h)| h).collect();
            drop(all);
        });
    }

    /// Drop the holds not asked for in their `hls_playlist_length`, and those whose pull ended.
    fn sweep(&self, streams: &Streams, now: Instant) {
        let mut holds = self.holds();
        let lapsed: Vec<(StreamKey, bool)> = holds
            .iter()
            .filter_map(|(key, hold)| {
                let ended = streams.pulls().on_demand_session(&key.app, &key.name) != Some(hold.session);
                let idle = now.saturating_duration_since(hold.last) >= hold.keep;
                (ended || idle).then(|| (key.clone(), ended))
            })
            .collect();
        let gone: Vec<(StreamKey, Hold, bool)> =
            lapsed.into_iter().filter_map(|(key, ended)| holds.remove(&key).map(|h| (key, h, ended))).collect();
        if holds.len() < MAX_HOLDS {
            self.holds_full_logged.store(false, Ordering::Relaxed);
        }
        drop(holds);
        // The players leave the pulls here, outside the lock.
        for (key, hold, ended) in gone {
            if ended {
                tracing::debug!(app = %key.app, stream = %key.name, "hls: the pull held for HLS viewers ended");
            } else {
                tracing::info!(client = %hold.client, app = %key.app, stream = %key.name, after = ?hold.keep, "hls: pull released: no HLS request within the playlist length");
            }
        }
    }
}

/// Counts a waiting request out.
struct Waiting<'a>(&'a Viewers);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.0.waiting.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.waiting_full_logged.store(false, Ordering::Relaxed);
        }
    }
}

/// The application and stream of `file`, when it lies in the `hls_path` (or `dash_path`) of an
/// application that pulls that stream on demand.
fn locate(servers: &[Arc<ServerCtx>], file: &Path) -> Option<Asked> {
    for ctx in servers {
        for app in ctx.apps.iter().filter(|a| a.live.live) {
            let (hls, dash) = (&app.hls, &app.dash);
            let sites = [
                (hls.enabled, hls.path.as_deref(), hls.nested, "m3u8", hls.fragment, hls.playlist_length),
                (dash.enabled, dash.path.as_deref(), dash.nested, "mpd", dash.fragment, dash.playlist_length),
            ];
            for (enabled, dir, nested, ext, fragment, keep) in sites {
                let Some(rel) = dir.filter(|_| enabled).and_then(|d| file.strip_prefix(d).ok()) else { continue };
                let Some((playlist_of, candidates)) = names_of(rel, nested, ext) else { continue };
                let pulled = |n: &String| ctx.streams.pulls_on_play(app, n);
                let playlist_of = playlist_of.filter(pulled);
                let candidates: Vec<String> = candidates.into_iter().filter(pulled).collect();
                if playlist_of.is_some() || !candidates.is_empty() {
                    let (ctx, app) = (ctx.clone(), app.clone());
                    return Some(Asked { ctx, app, playlist_of, candidates, fragment, keep });
                }
            }
        }
    }
    None
}

/// The stream a playlist (`ext`: `m3u8`, or `mpd`) path relative to its directory names, and
/// the streams any of its files may belong to; every name is checked by
/// [`untrusted::stream_name`].
fn names_of(rel: &Path, nested: bool, ext: &str) -> Option<(Option<String>, Vec<String>)> {
    let parts: Vec<&str> = rel
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let valid = |n: &str| untrusted::stream_name(n).ok().map(str::to_owned);
    match (nested, parts.as_slice()) {
        // `NAME/index.m3u8`, and its other playlists and segments in `NAME/`.
        (true, [dir, file]) => {
            let name = valid(dir)?;
            let playlist = file.strip_prefix("index.").is_some_and(|e| e == ext).then(|| name.clone());
            Some((playlist, vec![name]))
        }
        // `NAME.m3u8`; `NAME-SESSION-ID.ts`, `NAME-video.m3u8`: each prefix before a `-`.
        (false, [file]) => {
            let playlist = file.strip_suffix(ext).and_then(|f| f.strip_suffix('.')).and_then(valid);
            let candidates = file.match_indices('-').filter_map(|(at, _)| valid(&file[..at])).collect();
            Some((playlist, candidates))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_playlists_and_segments() {
        let p = |s: &str, nested| names_of(Path::new(s), nested, "m3u8");
        assert_eq!(p("cam.m3u8", false), Some((Some("cam".into()), vec![])));
        assert_eq!(p("a-b.m3u8", false), Some((Some("a-b".into()), vec!["a".into()])));
        assert_eq!(
            p("cam-1700-3.ts", false),
            Some((None, vec!["cam".into(), "cam-1700".into()])),
            "a segment refreshes its stream's hold"
        );
        assert_eq!(p("cam/index.m3u8", true), Some((Some("cam".into()), vec!["cam".into()])));
        assert_eq!(p("cam/1700-3.ts", true), Some((None, vec!["cam".into()])));
        assert_eq!(p("cam/index.m3u8", false), None, "not a file of a flat hls_path");
        assert_eq!(p("../x.m3u8", false), None);
        assert_eq!(p("..m3u8", false).unwrap().0, None, "`.` is no stream name");
        assert_eq!(names_of(Path::new("cam.mpd"), false, "mpd"), Some((Some("cam".into()), vec![])));
        assert_eq!(names_of(Path::new("cam/index.mpd"), true, "mpd").unwrap().0, Some("cam".into()));
        assert_eq!(names_of(Path::new("cam.mpd"), false, "m3u8").unwrap().0, None);
    }

    const OPTS: StreamOptions = StreamOptions { ring_len: 16, gop_cache: true };
    const PLACE: Place = Place { srv: 0, opts: OPTS, keep: Duration::from_secs(3600) };

    fn client() -> SocketAddr {
        ([192, 0, 2, 7], 4000).into()
    }

    /// An application pulling on demand from `port`.
    fn edge_app(port: u16) -> Arc<AppConf> {
        crate::config::test_app(&format!("live on; pull rtmp://127.0.0.1:{port}/live;"))
    }

    fn streams() -> Arc<Streams> {
        Streams::new(crate::hub::Hub::new(), Vec::new().into(), crate::relay::pull::Setup::default())
    }

    /// The HLS viewers of a stream are one player of its pull however often they ask, kept
    /// until `hls_playlist_length` passed without a request; then the pull has no player.
    #[tokio::test]
    async fn a_hold_is_one_player_of_the_pull_until_it_lapses() {
        // Accepts connections and never answers: the pull stays connecting.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let app = edge_app(silent.local_addr().unwrap().port());
        let (streams, viewers, shutdown) = (streams(), Arc::new(Viewers::default()), CancellationToken::new());
        let key = viewers.hold(&streams, &app, &PLACE, "cam", client(), &shutdown).unwrap().expect("held");
        assert_eq!(streams.pulls().players("live", "cam"), 1);
        assert!(viewers.touch(&streams, &key), "a request refreshes it");
        viewers.sweep(&streams, Instant::now());
        assert_eq!((viewers.holds().len(), streams.pulls().players("live", "cam")), (1, 1));
        viewers.sweep(&streams, Instant::now() + Duration::from_secs(7200));
        assert_eq!((viewers.holds().len(), streams.pulls().players("live", "cam")), (0, 0), "lapsed");
        assert!(!viewers.touch(&streams, &key));
        shutdown.cancel();
    }

    /// A stream published here is served as it is: no hold, no pull.
    #[tokio::test]
    async fn a_stream_published_here_is_not_held() {
        let app = edge_app(1);
        let (streams, viewers, shutdown) = (streams(), Arc::new(Viewers::default()), CancellationToken::new());
        let source = crate::streams::Source { app: &app, name: "cam", args: "", client: None, push_to: None, srv: 0 };
        let _published = streams.publish(&source, OPTS).expect("published");
        assert_eq!(viewers.hold(&streams, &app, &PLACE, "cam", client(), &shutdown).unwrap(), None);
        assert!(streams.pulls().is_empty() && viewers.holds().is_empty());
    }

    /// A request waiting for the playlist of a pull that fails gets `404`; past the bound on
    /// waiting requests, `503`.
    #[tokio::test]
    async fn a_waiting_request_gets_404_when_the_pull_fails_and_503_past_the_bound() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let app = edge_app(closed.local_addr().unwrap().port());
        drop(closed);
        let (streams, viewers, shutdown) = (streams(), Arc::new(Viewers::default()), CancellationToken::new());
        let (hls, dash) =
            (super::super::HlsStore::new(shutdown.clone()), crate::dash::DashStore::new(shutdown.clone()));
        let store = Ready { hls: &hls, dash: &dash, shutdown: &shutdown };
        let key = viewers.hold(&streams, &app, &PLACE, "cam", client(), &shutdown).unwrap().expect("held");
        let file = Path::new("/nowhere/cam.m3u8");
        viewers.waiting.store(MAX_WAITING, Ordering::Relaxed);
        assert_eq!(viewers.wait(&store, &streams, &key, file, Duration::from_secs(600)).await, Admission::Busy);
        viewers.waiting.store(0, Ordering::Relaxed);
        let waited = viewers.wait(&store, &streams, &key, file, Duration::from_secs(600)).await;
        assert_eq!(waited, Admission::NotFound, "nobody listens on the origin's port");
        assert_eq!(viewers.waiting.load(Ordering::Relaxed), 0);
        shutdown.cancel();
    }
}

//! nginx-rtmp's `pull` (`ngx_rtmp_relay_module.c`): a stream nobody publishes here is played
//! from another server and published locally. A pull is a source like an RTMP publisher: each
//! remote message goes through [`live::ingest`], and the stream is published through
//! [`Streams::publish`], so every output module (HLS, record, push) runs on it.
//!
//! The registry ([`Pulls`]) is a field of the [`Streams`] context; the context passes itself
//! to the calls that may start a pull, so the registry holds no reference back to it.
//!
//! - **On demand:** the first player ([`Streams::play`]) of a stream nobody publishes, in an
//!   application with a matching non-`static` `pull` (the first one whose `name=` matches),
//!   starts ONE remote session for the stream; later players join it. When the last player
//!   leaves, the session ends after `pull_linger` unless a player came back. Module subscribers
//!   (HLS, record, push) are not players: they subscribe to the hub directly, not through
//!   [`Streams::play`], so they are not counted. A one-URL session that fails to start, dies,
//!   or is dropped by control drops its players (as nginx-rtmp) and is not retried; the next
//!   player starts a new one.
//! - **Several origins** (more URLs on the line, the edge): the task tries them in order,
//!   skipping one that fails, refuses the play or sends no audio/video within
//!   `MEDIA_TIMEOUT`; a lost upstream (closed, or Stream EOF: the origin's publisher left)
//!   starts again from the first origin with its players kept
//!   subscribed (the local stream unpublished meanwhile, like a static pull's), for at most
//!   `FAILOVER_ROUNDS` rounds `pull_reconnect` apart; one round without the stream at the start
//!   ends it as a failed one-URL pull.
//! - **`static`:** started with the server ([`Pulls::start_static`]), reconnecting every
//!   `pull_reconnect` for ever with one log line per change of outcome. Its players stay
//!   subscribed across the origin's death (with `idle_streams on`) and get the stream back.
//!
//! Counting is race-free: joining, leaving and the decision to stop are taken under one lock,
//! and a stopping session drops its local publisher under it. A player that arrives before
//! the decision keeps the session running; one that arrives after it finds no pull and starts
//! a new one.
//!
//! Each pull is a row of the clients registry (kind relay, role publisher, the URL of the origin
//! it is on with its query redacted, bytes in, reconnects including failovers, last error), so
//! `/control/drop` can drop it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rtmp::{ClientEvent, MediaKind};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conn::{ConnError, Direction, Options, RelayConn};
use super::url::{self, Plan, UrlError, Vars};
use crate::clients::{ClientHandle, Clients, Filter, Kind, Method, Role};
use crate::config::{AppConf, RelayTarget};
use crate::events::ClientInfo;
use crate::hub::{PublishError, Publisher, StartPack, Stream, StreamKey, StreamOptions, Subscriber, MAX_STREAMS};
use crate::live;
use crate::streams::{Player, Published, Source, Streams};
use crate::untrusted::{self, for_log, redact_query, NameError};

/// One `rtmp { server {} }` block as the pulls see it.
#[derive(Clone)]
pub struct ServerApps {
    /// Its applications (those with a `static` pull matter).
    pub apps: Vec<Arc<AppConf>>,
    /// Its `out_queue` (ring length of the streams a static pull creates).
    pub out_queue: usize,
    /// Its `max_message`: the largest message a pull takes from its remote.
    pub max_message: u32,
}

/// What the pulls share with the rest of the server (the default: no server blocks, as in
/// unit tests).
#[derive(Default)]
pub struct Setup {
    /// The clients registry a pull registers in.
    pub clients: Arc<Clients>,
    /// Every server block, by index (the registry's `srv`); a reload replaces them
    /// ([`Pulls::reconfigure`]).
    pub servers: std::sync::RwLock<Vec<ServerApps>>,
    /// Cancelled on SIGTERM/SIGINT.
    pub shutdown: CancellationToken,
    /// Where pull tasks run, so that shutdown waits for them.
    pub tracker: TaskTracker,
    /// The cluster's stream directory: where a cluster application's pulls find their origin.
    pub directory: Option<Arc<crate::cluster::Directory>>,
}

/// Why [`start_for_url`] could not start a pull.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The local name is not a valid stream name.
    #[error("bad stream name: {0}")]
    Name(#[from] NameError),
    /// The URL cannot be used.
    #[error("bad relay URL: {0}")]
    Url(#[from] UrlError),
    /// A URL from a callback is taken literally: `$` would be read as a variable.
    #[error("bad relay URL: it contains \"$\"")]
    Variable,
    /// The application does not play live streams (`live off`).
    #[error("the application does not play live streams")]
    NotLive,
    /// The pull or stream registry is full.
    #[error("too many streams")]
    Full,
}

/// One pulled stream, in the registry.
struct Slot {
    /// Which session owns the slot (a stopped one's players must not count for the next).
    id: u64,
    /// Players attached (on demand only; static pulls ignore it).
    players: usize,
    is_static: bool,
    /// The session has published locally at least once.
    published: bool,
    /// Wakes the session when its last player left; it decides under the lock.
    stop: Arc<Notify>,
    /// The stream its first player subscribed to (to end it for waiting players on failure).
    stream: Option<Arc<Stream>>,
}

/// The pull registry: at most one session per stream, bounded like the hub.
pub struct Pulls {
    setup: Setup,
    max: usize,
    slots: Mutex<HashMap<StreamKey, Slot>>,
    full_logged: AtomicBool,
    next_id: AtomicU64,
}

impl Pulls {
    /// An empty pull registry (for [`Streams::new`]); at most [`MAX_STREAMS`] pulls.
    pub(crate) fn new(setup: Setup) -> Arc<Pulls> {
        Arc::new(Pulls {
            setup,
            max: MAX_STREAMS,
            slots: Mutex::default(),
            full_logged: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        })
    }

    /// Pulls running or starting now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no pull runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cluster's stream directory, if any.
    pub fn directory(&self) -> Option<&Arc<crate::cluster::Directory>> {
        self.setup.directory.as_ref()
    }

    /// Players counted for `app`/`name`'s pull (0 when there is none).
    pub fn players(&self, app: &str, name: &str) -> usize {
        let key = StreamKey { app: app.to_owned(), name: name.to_owned() };
        self.lock().get(&key).map_or(0, |s| s.players)
    }

    /// The id of `app`/`name`'s on-demand pull session while it runs or lingers (an HLS
    /// viewer's hold checks that the session it joined is still the one running).
    pub fn on_demand_session(&self, app: &str, name: &str) -> Option<u64> {
        let key = StreamKey { app: app.to_owned(), name: name.to_owned() };
        self.lock().get(&key).filter(|s| !s.is_static).map(|s| s.id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start every `pull ... static` of every server block (at start-up), publishing through
    /// `streams` (whose registry this is).
    pub(crate) fn start_static(self: &Arc<Self>, streams: &Arc<Streams>) {
        for (srv, app, target, key) in self.static_targets() {
            let opts = self.stream_options(srv, &app);
            let Some(slot) = self.new_slot(&mut self.lock(), &key, true, None) else { continue };
            let leg = self.leg(streams, app, srv, key, slot, Some(target), opts);
            self.setup.tracker.spawn(leg.run_static());
        }
    }

    /// A reload: pulls read `servers` from now on. Static pulls the new configuration no
    /// longer has become on-demand ones (they end with their last player, at once when they
    /// have none); new ones start; those it still has run on untouched.
    pub(crate) fn reconfigure(self: &Arc<Self>, streams: &Arc<Streams>, servers: Vec<ServerApps>) {
        *self.setup.servers.write().unwrap_or_else(|e| e.into_inner()) = servers;
        let targets = self.static_targets();
        let mut slots = self.lock();
        for (key, slot) in slots.iter_mut().filter(|(_, s)| s.is_static) {
            if !targets.iter().any(|(_, _, _, k)| k == key) {
                tracing::info!(app = %key.app, stream = %key.name, "reload: this static pull is gone from the configuration; it ends with its last player");
                slot.is_static = false;
                slot.stop.notify_one();
            }
        }
        for (srv, app, target, key) in targets {
            if slots.contains_key(&key) {
                continue;
            }
            let opts = self.stream_options(srv, &app);
            let Some(slot) = self.new_slot(&mut slots, &key, true, None) else { continue };
            let leg = self.leg(streams, app, srv, key, slot, Some(target), opts);
            self.setup.tracker.spawn(leg.run_static());
        }
    }

    /// Every `pull ... static` of every server block, with valid names.
    fn static_targets(&self) -> Vec<(usize, Arc<AppConf>, RelayTarget, StreamKey)> {
        let servers = self.setup.servers.read().unwrap_or_else(|e| e.into_inner());
        let mut found = Vec::new();
        for (srv, server) in servers.iter().enumerate() {
            for app in &server.apps {
                for target in app.relay.pull.iter().filter(|t| t.is_static) {
                    // `static` requires `name=` (checked with the configuration).
                    let Some(name) = target.name.as_deref() else { continue };
                    if let Err(e) = untrusted::stream_name(name) {
                        tracing::error!(app = %app.name, stream = %for_log(name), "static pull not started: {e}");
                        continue;
                    }
                    let key = StreamKey { app: app.name.clone(), name: name.to_owned() };
                    found.push((srv, app.clone(), target.clone(), key));
                }
            }
        }
        found
    }

    fn stream_options(&self, srv: usize, app: &AppConf) -> StreamOptions {
        let servers = self.setup.servers.read().unwrap_or_else(|e| e.into_inner());
        let ring_len = servers.get(srv).map_or(crate::config::CoreConf::default().out_queue, |s| s.out_queue);
        StreamOptions { ring_len, gop_cache: app.live.gop_cache }
    }

    fn server_count(&self) -> usize {
        self.setup.servers.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn max_message(&self, srv: usize) -> u32 {
        let servers = self.setup.servers.read().unwrap_or_else(|e| e.into_inner());
        servers.get(srv).map_or(1 << 20, |s| s.max_message)
    }

    /// `player`, whose first matching on-demand pull target is `target` (`None`: the stream
    /// directory names the origin, [`crate::cluster`]): joins the stream's pull, or starts one
    /// (publishing through `streams`, whose registry this is) if nobody publishes the stream.
    /// `None` when the player cannot be served (registries full).
    pub(crate) fn play(
        self: &Arc<Self>,
        streams: &Arc<Streams>,
        player: &Player<'_>,
        target: Option<&RelayTarget>,
        opts: StreamOptions,
    ) -> Option<(StartPack, Subscriber)> {
        let (app, name) = (player.app, player.name);
        let key = StreamKey { app: app.name.clone(), name: name.to_owned() };
        let mut slots = self.lock();
        // Under the lock: a stopping session drops its publisher under it too, so "live" here
        // is never a pull that is going away.
        let (mut pack, mut sub) = streams.hub.subscribe(&key, Some(opts))?;
        let id = match slots.get(&key) {
            Some(slot) => slot.id,
            // A local publisher has the stream: no pull (nginx-rtmp's relay only pulls
            // streams nobody publishes).
            None if pack.live => return Some((pack, sub)),
            None => {
                let Some(slot) = self.new_slot(&mut slots, &key, false, Some(sub.stream().clone())) else {
                    drop(slots);
                    return app.live.idle_streams.then_some((pack, sub));
                };
                let id = slot.0;
                let leg = self.leg(streams, app.clone(), player.srv, key.clone(), slot, target.cloned(), opts);
                self.setup.tracker.spawn(leg.run_on_demand());
                id
            }
        };
        let Some(entry) = slots.get_mut(&key) else { return Some((pack, sub)) };
        entry.players += 1;
        // The connection takes `live` as "accept the player now": with `idle_streams off`
        // a player of a pull still starting must wait for it rather than be refused.
        let starting = !entry.published && !entry.is_static;
        drop(slots);
        if starting && !app.live.idle_streams {
            pack.live = true;
        }
        sub.hold(Box::new(PlayerGuard { pulls: self.clone(), key, id }));
        Some((pack, sub))
    }

    /// A new slot for `key` (which has none), unless the registry is full.
    fn new_slot(
        &self,
        slots: &mut HashMap<StreamKey, Slot>,
        key: &StreamKey,
        is_static: bool,
        stream: Option<Arc<Stream>>,
    ) -> Option<(u64, Arc<Notify>)> {
        if slots.contains_key(key) {
            tracing::warn!(app = %key.app, stream = %key.name, "a second static pull of this stream is not started");
            return None;
        }
        if slots.len() >= self.max {
            if !self.full_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(app = %key.app, stream = %key.name, max = self.max, "pull refused: too many pulls");
            }
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stop = Arc::new(Notify::new());
        slots.insert(key.clone(), Slot { id, players: 0, is_static, published: false, stop: stop.clone(), stream });
        Some((id, stop))
    }

    #[allow(clippy::too_many_arguments)]
    fn leg(
        self: &Arc<Self>,
        streams: &Arc<Streams>,
        app: Arc<AppConf>,
        srv: usize,
        key: StreamKey,
        (id, stop): (u64, Arc<Notify>),
        target: Option<RelayTarget>,
        opts: StreamOptions,
    ) -> Leg {
        let directory = target.is_none();
        let target = target.unwrap_or_default();
        Leg { pulls: self.clone(), streams: streams.clone(), app, srv, key, id, stop, target, directory, opts }
    }

    /// Whether `key`'s stream has a publisher while session `id` publishes nothing (between
    /// its sessions): a local publisher took it.
    fn published_by_other(&self, key: &StreamKey, id: u64) -> bool {
        let slots = self.lock();
        let Some(slot) = slots.get(key).filter(|s| s.id == id) else { return false };
        !slot.published && slot.stream.as_ref().is_some_and(|s| s.is_live())
    }

    /// A player left: the last one wakes an on-demand session to stop.
    fn leave(&self, key: &StreamKey, id: u64) {
        let mut slots = self.lock();
        let Some(slot) = slots.get_mut(key).filter(|s| s.id == id) else { return };
        slot.players = slot.players.saturating_sub(1);
        if slot.players == 0 && !slot.is_static {
            slot.stop.notify_one();
        }
    }

    /// Whether session `id` must stop now: no player is left. Then its slot goes and its
    /// publisher is dropped, under the lock (see the module's doc).
    fn stop_if_unwatched(&self, key: &StreamKey, id: u64, publisher: &mut Option<Publisher>) -> bool {
        let mut slots = self.lock();
        let Some(slot) = slots.get(key).filter(|s| s.id == id) else { return true };
        if slot.players > 0 || slot.is_static {
            return false;
        }
        slots.remove(key);
        drop(publisher.take());
        true
    }

    /// Whether session `id` has its stream published here (`false` again while it fails
    /// over: new players then wait for it as for a starting pull).
    fn mark_published(&self, key: &StreamKey, id: u64, published: bool) {
        if let Some(slot) = self.lock().get_mut(key).filter(|s| s.id == id) {
            slot.published = published;
        }
    }

    /// Session `id` is over for good: its slot goes. With `drop_players`, its players are
    /// dropped as nginx-rtmp drops them, under the lock so that a player of the next session
    /// cannot be taken for one of this one: through the clients registry, and those not yet
    /// registered under the stream's name read the end of the stream (closed with
    /// `idle_streams off`, waiting with `on`).
    fn end(&self, key: &StreamKey, id: u64, drop_players: bool) {
        let mut slots = self.lock();
        if slots.get(key).is_none_or(|s| s.id != id) {
            return;
        }
        let Some(slot) = slots.remove(key) else { return };
        if slots.len() < self.max {
            self.full_logged.store(false, Ordering::Relaxed);
        }
        if !drop_players {
            return;
        }
        if let Some(stream) = &slot.stream {
            stream.end_waiting();
        }
        let mut dropped = 0;
        for srv in 0..self.server_count().max(1) {
            let filter = Filter {
                srv,
                app: Some(key.app.clone()),
                name: Some(key.name.clone()),
                ..Filter::new(Method::Subscriber)
            };
            dropped += self.setup.clients.drop_where(&filter);
        }
        drop(slots);
        if dropped > 0 {
            tracing::info!(app = %key.app, stream = %key.name, players = dropped, "pull ended: its players are dropped");
        }
    }
}

/// Held by each player's subscriber: counts it out of its pull when it leaves.
struct PlayerGuard {
    pulls: Arc<Pulls>,
    key: StreamKey,
    id: u64,
}

impl Drop for PlayerGuard {
    fn drop(&mut self) {
        self.pulls.leave(&self.key, self.id);
    }
}

/// The first on-demand (not `static`) `pull` of `app` that relays stream `name`, as
/// nginx-rtmp picks it.
pub fn on_demand_target<'a>(app: &'a AppConf, name: &str) -> Option<&'a RelayTarget> {
    app.relay.pull.iter().filter(|t| !t.is_static).find(|t| t.matches(name))
}

/// Start (or join) an on-demand pull of `url` published locally as `local_name` in `app`,
/// and subscribe a player to it, as an `on_play` callback's `rtmp://` redirect does in
/// nginx-rtmp. App and play path come from the URL; the text is taken literally (no `$`
/// variables). The caller plays what it returns exactly as [`Streams::play`]'s result; the
/// pull stops when its last player leaves. A stream already published or pulled here is
/// joined as it is.
pub(crate) fn start_for_url(
    streams: &Arc<Streams>,
    player: &Player<'_>,
    url: &str,
    opts: StreamOptions,
) -> Result<(StartPack, Subscriber), PullError> {
    let (app, local_name) = (player.app, player.name);
    untrusted::stream_name(local_name)?;
    if url::has_variables(url) {
        return Err(PullError::Variable);
    }
    let target = RelayTarget { url: url.to_owned(), ..RelayTarget::default() };
    url::plan(&target, &Vars { name: local_name, app: &app.name, args: "" })?;
    if !app.live.live {
        return Err(PullError::NotLive);
    }
    streams.pulls().play(streams, player, Some(&target), opts).ok_or(PullError::Full)
}

/// How a session ended.
#[derive(Debug)]
enum End {
    /// On demand: the last player left (the slot is gone, the publisher dropped).
    NoPlayers,
    /// A local publisher had the stream first; its players watch that one.
    LocalPublisher,
    /// `/control/drop` dropped the pull.
    Dropped,
    /// The server shuts down.
    Shutdown,
    /// The remote could not be played.
    Failed(String),
    /// The remote played, then went away.
    Lost(String),
}

/// One pull: its settings and the slot it owns.
struct Leg {
    pulls: Arc<Pulls>,
    /// What it publishes through; held while the pull runs (the registry holds no legs).
    streams: Arc<Streams>,
    app: Arc<AppConf>,
    srv: usize,
    key: StreamKey,
    id: u64,
    stop: Arc<Notify>,
    target: RelayTarget,
    /// The origin is looked up in the stream directory each round (`target` is unused).
    directory: bool,
    opts: StreamOptions,
}

impl Leg {
    /// The URL as logs and the registry show it: its query through `redact_query`.
    fn shown_url(plan: &Plan) -> String {
        match plan.text.split_once('?') {
            Some((base, query)) => format!("{}?{}", for_log(base), redact_query(query)),
            None => for_log(&plan.text).into_owned(),
        }
    }

    fn plan(&self) -> Result<Plan, UrlError> {
        url::plan(&self.target, &Vars { name: &self.key.name, app: &self.app.name, args: "" })
    }

    /// A registry row for this pull.
    fn register(&self, plan: &Plan) -> Option<ClientHandle> {
        let ip = plan.url.host.parse::<IpAddr>().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let handle = self.pulls.setup.clients.register(SocketAddr::new(ip, plan.url.port), Kind::Relay, self.srv)?;
        handle.set_app(&self.app.name);
        handle.set_stream(&self.key.name, Role::Publisher);
        let url = Self::shown_url(plan);
        handle.update_relay(|r| r.url = url);
        Some(handle)
    }

    /// Every origin of the pull, planned (one for nginx-rtmp's one-URL lines).
    fn plans(&self) -> Result<Vec<Plan>, UrlError> {
        let vars = Vars { name: &self.key.name, app: &self.app.name, args: "" };
        self.target
            .origins()
            .map(|origin| url::plan(&RelayTarget { url: origin.to_owned(), ..self.target.clone() }, &vars))
            .collect()
    }

    /// An on-demand pull: the origins are tried in order until one plays the stream. A pull
    /// whose upstream is lost mid-stream starts again from the first origin (failover, and
    /// back) when it has several, keeping its players waiting, for at most
    /// `FAILOVER_ROUNDS` rounds `pull_reconnect` apart; one round that finds the stream
    /// nowhere ends it (its players dropped, as nginx-rtmp's failed pull).
    async fn run_on_demand(self) {
        if self.directory {
            return self.run_directory().await;
        }
        let (app, name) = (&self.app.name, &self.key.name);
        let plans = match self.plans() {
            Ok(plans) => plans,
            Err(e) => {
                tracing::warn!(app = %app, stream = %name, "pull not started: {e}");
                return self.pulls.end(&self.key, self.id, true);
            }
        };
        let Some(handle) = self.register(&plans[0]) else { return self.pulls.end(&self.key, self.id, true) };
        let failover = plans.len() > 1;
        let mut attempts = 0u64;
        let mut rounds_left = 1;
        let end = 'pull: loop {
            // How long the session that lost its upstream had played.
            let mut lost = None;
            for plan in &plans {
                let url = Self::shown_url(plan);
                // The last player may have left while the previous session lingered: its
                // wake-up is spent, so nobody would stop the next one.
                if self.pulls.stop_if_unwatched(&self.key, self.id, &mut None) {
                    break 'pull (End::NoPlayers, url);
                }
                if attempts > 0 {
                    crate::metrics::relay_reconnect(app, "pull");
                }
                handle.update_relay(|r| {
                    r.url = url.clone();
                    r.reconnects = attempts;
                });
                attempts += 1;
                tracing::info!(app = %app, stream = %name, url = %url, "pull: playing the remote for a player");
                let began = tokio::time::Instant::now();
                let why = match self.session(plan, &handle, failover).await {
                    End::Failed(e) if failover => {
                        tracing::warn!(app = %app, stream = %name, url = %url, "pull: origin skipped: {e}");
                        e
                    }
                    End::Lost(e) if failover => {
                        tracing::warn!(app = %app, stream = %name, url = %url, "pull: upstream lost: {e}; failing over from the first origin, players kept");
                        lost = Some(began.elapsed());
                        self.pulls.mark_published(&self.key, self.id, false);
                        e
                    }
                    end => break 'pull (end, url),
                };
                handle.update_relay(|r| {
                    r.connected = false;
                    r.last_error = Some(why);
                });
                if lost.is_some() {
                    break;
                }
            }
            // A lost upstream starts the rounds again from the first origin: at once after a
            // session that played a while, after `pull_reconnect` after a short one (an origin
            // that drops each session at once is not hammered).
            if let Some(played) = lost {
                rounds_left = FAILOVER_ROUNDS;
                if played < HEALTHY {
                    if let Some(end) = self.pause(Some(&handle)).await {
                        break (end, Self::shown_url(&plans[0]));
                    }
                }
                continue;
            }
            // A round in which no origin played the stream counts against the bound.
            rounds_left -= 1;
            if rounds_left == 0 {
                let why = "no origin plays the stream".to_owned();
                break (End::Failed(why), Self::shown_url(&plans[0]));
            }
            if let Some(end) = self.pause(Some(&handle)).await {
                break (end, Self::shown_url(&plans[0]));
            }
        };
        self.finish(end);
    }

    /// A pull whose origin the stream directory names ([`crate::cluster`]), looked up at the
    /// start of each round (a key naming this node counts as absent). The first round that
    /// finds no origin ends it (its players dropped: "not in the stream directory"); a lost
    /// upstream (the origin died, or its publisher left) looks the stream up again, its players
    /// kept subscribed, for [`directory_rounds`] rounds `pull_reconnect` apart: long enough
    /// for the dead origin's key to expire and its publisher to come back on another node.
    async fn run_directory(self) {
        let Some(directory) = self.streams.directory().cloned() else {
            return self.pulls.end(&self.key, self.id, true);
        };
        let (app, name) = (self.app.name.clone(), self.key.name.clone());
        let rounds = directory_rounds(directory.ttl(), self.app.relay.pull_reconnect);
        let mut handle: Option<ClientHandle> = None;
        let (mut attempts, mut rounds_left) = (0u64, 1);
        let mut shown = "(stream directory)".to_owned();
        let end = loop {
            if self.pulls.stop_if_unwatched(&self.key, self.id, &mut None) {
                break End::NoPlayers;
            }
            // The publisher came back here (the stream's origin is now this node): its
            // players watch that one.
            if self.pulls.published_by_other(&self.key, self.id) {
                break End::LocalPublisher;
            }
            let why = match self.find_origin(&directory).await {
                Err(end) => break end,
                Ok(Found::Nowhere) => "not in the stream directory".to_owned(),
                Ok(Found::Unreachable(e)) => format!("the stream directory is unreachable: {e}"),
                Ok(Found::Origin(plan)) => {
                    shown = Self::shown_url(&plan);
                    if handle.is_none() {
                        handle = self.register(&plan);
                    }
                    let Some(h) = &handle else { break End::Failed("too many clients".to_owned()) };
                    if attempts > 0 {
                        crate::metrics::relay_reconnect(&app, "pull");
                    }
                    h.update_relay(|r| {
                        r.url = shown.clone();
                        r.reconnects = attempts;
                    });
                    attempts += 1;
                    tracing::info!(app = %app, stream = %name, url = %shown, "pull: playing the origin the stream directory names, for a player");
                    let began = tokio::time::Instant::now();
                    match self.session(&plan, h, true).await {
                        End::Lost(e) => {
                            tracing::warn!(app = %app, stream = %name, url = %shown, "pull: upstream lost: {e}; looking the stream up again, players kept");
                            self.pulls.mark_published(&self.key, self.id, false);
                            h.update_relay(|r| {
                                r.connected = false;
                                r.last_error = Some(e);
                            });
                            rounds_left = rounds;
                            if began.elapsed() < HEALTHY {
                                if let Some(end) = self.pause(Some(h)).await {
                                    break end;
                                }
                            }
                            continue;
                        }
                        End::Failed(e) => e,
                        end => break end,
                    }
                }
            };
            if let Some(h) = &handle {
                h.update_relay(|r| {
                    r.connected = false;
                    r.last_error = Some(why.clone());
                });
            }
            rounds_left -= 1;
            if rounds_left == 0 {
                break End::Failed(why);
            }
            tracing::info!(app = %app, stream = %name, "pull: {why}; looking again in {:?} ({rounds_left} rounds left)", self.app.relay.pull_reconnect);
            if let Some(end) = self.pause(handle.as_ref()).await {
                break end;
            }
        };
        self.finish((end, shown));
    }

    /// The origin the directory names now, as a plan. Redis unreachable: tried again
    /// [`LOOKUP_TRIES`] times a second apart. `Err` when the pull ends meanwhile.
    async fn find_origin(&self, directory: &crate::cluster::Directory) -> Result<Found, End> {
        let (app, name) = (&self.app.name, &self.key.name);
        let mut tries = 0;
        loop {
            tries += 1;
            match directory.lookup(app, name).await {
                Ok(None) => return Ok(Found::Nowhere),
                Ok(Some(address)) => {
                    let url = crate::cluster::pull_url(&address, app, name);
                    let target = RelayTarget { url, ..RelayTarget::default() };
                    return match url::plan(&target, &Vars { name, app, args: "" }) {
                        Ok(plan) => Ok(Found::Origin(Box::new(plan))),
                        Err(e) => Ok(Found::Unreachable(format!("the directory's address is not usable: {e}"))),
                    };
                }
                Err(e) if tries >= LOOKUP_TRIES => return Ok(Found::Unreachable(e)),
                Err(_) => {}
            }
            tokio::select! {
                () = tokio::time::sleep(crate::cluster::COMMAND_TIMEOUT) => {}
                () = self.pulls.setup.shutdown.cancelled() => return Err(End::Shutdown),
            }
        }
    }

    /// Log how an on-demand pull ended and free its slot.
    fn finish(&self, (end, url): (End, String)) {
        let (app, name) = (&self.app.name, &self.key.name);
        match &end {
            End::NoPlayers => tracing::info!(app = %app, stream = %name, url = %url, "pull stopped: no players left"),
            End::LocalPublisher => {
                tracing::info!(app = %app, stream = %name, url = %url, "pull stopped: the stream is published here")
            }
            End::Shutdown => {}
            End::Dropped => tracing::info!(app = %app, stream = %name, url = %url, "pull dropped by control"),
            End::Failed(e) => tracing::warn!(app = %app, stream = %name, url = %url, "pull failed: {e}"),
            End::Lost(e) => tracing::warn!(app = %app, stream = %name, url = %url, "pull ended: {e}"),
        }
        let drop_players = matches!(end, End::Dropped | End::Failed(_) | End::Lost(_));
        self.pulls.end(&self.key, self.id, drop_players);
    }

    /// `pull_reconnect` between failover rounds; `Some` when the pull ends meanwhile.
    async fn pause(&self, handle: Option<&ClientHandle>) -> Option<End> {
        let mut none = None;
        let sleep = tokio::time::sleep(self.app.relay.pull_reconnect);
        tokio::pin!(sleep);
        let dropped = async {
            match handle {
                Some(h) => h.dropped().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(dropped);
        loop {
            tokio::select! {
                () = &mut sleep => return None,
                () = self.stop.notified() => {
                    if self.pulls.stop_if_unwatched(&self.key, self.id, &mut none) {
                        return Some(End::NoPlayers);
                    }
                }
                () = &mut dropped => return Some(End::Dropped),
                () = self.pulls.setup.shutdown.cancelled() => return Some(End::Shutdown),
            }
        }
    }

    async fn run_static(self) {
        let (app, name) = (&self.app.name, &self.key.name);
        let every = self.app.relay.pull_reconnect;
        let plan = match self.plan() {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(app = %app, stream = %name, "static pull not started: {e}");
                return self.pulls.end(&self.key, self.id, false);
            }
        };
        let url = Self::shown_url(&plan);
        let shutdown = self.pulls.setup.shutdown.clone();
        let mut handle: Option<ClientHandle> = None;
        let mut reconnects = 0u64;
        // The last failure logged: the same one again is not logged (no retry storm).
        let mut last_logged: Option<String> = None;
        loop {
            if handle.is_none() {
                handle = self.register(&plan);
            }
            let Some(h) = &handle else {
                // The registry is full (it logs that): try again later.
                if wait_or_shutdown(&shutdown, every).await {
                    break;
                }
                continue;
            };
            h.update_relay(|r| r.reconnects = reconnects);
            let end = self.session(&plan, h, false).await;
            let why = match end {
                End::Shutdown => break,
                // A static pull that a reload removed, once it has no players left.
                End::NoPlayers => break,
                End::Dropped => {
                    // A dropped handle stays dropped: the next attempt registers anew.
                    handle = None;
                    tracing::info!(app = %app, stream = %name, url = %url, "static pull dropped by control; reconnecting in {every:?}");
                    last_logged = Some("dropped by control".to_owned());
                    "dropped by control".to_owned()
                }
                End::LocalPublisher => "the stream is published here".to_owned(),
                End::Lost(e) => {
                    tracing::warn!(app = %app, stream = %name, url = %url, "static pull ended: {e}; reconnecting every {every:?}");
                    last_logged = Some(e.clone());
                    e
                }
                End::Failed(e) => e,
            };
            if last_logged.as_deref() != Some(why.as_str()) {
                tracing::warn!(app = %app, stream = %name, url = %url, "static pull failed: {why}; retrying every {every:?} (logged again when this changes)");
                last_logged = Some(why.clone());
            } else {
                tracing::debug!(app = %app, stream = %name, "static pull failed again: {why}");
            }
            if let Some(h) = &handle {
                h.update_relay(|r| {
                    r.connected = false;
                    r.last_error = Some(why.clone());
                });
            }
            if wait_or_shutdown(&shutdown, every).await {
                break;
            }
            reconnects += 1;
            crate::metrics::relay_reconnect(app, "pull");
        }
        self.pulls.end(&self.key, self.id, false);
    }

    /// One remote session: connect, play, publish locally, forward until it ends. With
    /// `failover` (several origins), an origin that accepts `play` but sends no media within
    /// `MEDIA_TIMEOUT` (an origin with `idle_streams on` that lacks the stream) fails.
    async fn session(&self, plan: &Plan, handle: &ClientHandle, failover: bool) -> End {
        let shutdown = self.pulls.setup.shutdown.clone();
        let max_message = self.pulls.max_message(self.srv);
        let opts = Options { tls_verify: self.app.relay.tls_verify, buffer: self.app.relay.buffer, max_message };
        let start = async {
            let mut conn = RelayConn::connect(plan, Direction::Play, &opts).await?;
            conn.wait_started().await?;
            Ok::<_, ConnError>(conn)
        };
        tokio::pin!(start);
        // Built once: a fresh future per remote read would register a waiter each time.
        let (dropped, cancelled) = (handle.dropped(), shutdown.cancelled());
        tokio::pin!(dropped, cancelled);
        let mut no_publisher = None;
        let mut linger = Linger::new(self.app.relay.linger);
        let mut conn = loop {
            tokio::select! {
                r = &mut start => match r {
                    Ok(conn) => break conn,
                    Err(e) => return End::Failed(e.to_string()),
                },
                () = self.stop.notified() => linger.start(),
                () = linger.expired() => {
                    if self.pulls.stop_if_unwatched(&self.key, self.id, &mut no_publisher) {
                        return End::NoPlayers;
                    }
                }
                () = &mut dropped => return End::Dropped,
                () = &mut cancelled => return End::Shutdown,
            }
        };
        let (mut counted_in, mut counted_out) = (0, 0);
        let mut count = |conn: &RelayConn| {
            handle.add_in((conn.bytes_in() - counted_in) as usize);
            handle.add_out((conn.bytes_out() - counted_out) as usize);
            (counted_in, counted_out) = (conn.bytes_in(), conn.bytes_out());
        };
        count(&conn);
        let Published { publisher, mut status } = match self.publish(plan, handle) {
            Ok(published) => published,
            Err(e) => {
                conn.close().await;
                return match e {
                    PublishError::AlreadyPublishing(_) => End::LocalPublisher,
                    e => End::Failed(e.to_string()),
                };
            }
        };
        self.pulls.mark_published(&self.key, self.id, true);
        handle.update_relay(|r| {
            r.connected = true;
            r.last_error = None;
        });
        tracing::info!(app = %self.app.name, stream = %self.key.name, url = %Leg::shown_url(plan), "pull started");
        let mut publisher = Some(publisher);
        let mut status_open = true;
        let no_media = tokio::time::sleep(MEDIA_TIMEOUT);
        tokio::pin!(no_media);
        let mut media = false;
        let end = loop {
            tokio::select! {
                events = conn.next_events() => {
                    let events = match events {
                        Ok(events) => events,
                        Err(e) => break End::Lost(e.to_string()),
                    };
                    // With several origins, the origin's publisher leaving (Stream EOF after
                    // media; an origin with `idle_streams on` keeps the connection) fails over:
                    // the publisher may come back on another origin.
                    let mut ended = false;
                    for event in events {
                        ended |= failover && media && is_stream_eof(&event);
                        media |= self.on_event(event, publisher.as_ref());
                    }
                    if ended {
                        break End::Lost("the origin's stream ended (Stream EOF)".to_owned());
                    }
                    if let Err(e) = conn.flush().await {
                        break End::Lost(e.to_string());
                    }
                    count(&conn);
                }
                // Modules' statuses are for a publishing client; a pull has none to tell.
                st = status.recv(), if status_open => status_open = st.is_some(),
                () = &mut no_media, if failover && !media => {
                    break End::Failed(format!("no media {MEDIA_TIMEOUT:?} after play"));
                }
                () = self.stop.notified() => linger.start(),
                () = linger.expired() => {
                    if self.pulls.stop_if_unwatched(&self.key, self.id, &mut publisher) {
                        break End::NoPlayers;
                    }
                }
                () = &mut dropped => break End::Dropped,
                () = &mut cancelled => break End::Shutdown,
            }
        };
        drop(publisher);
        conn.close().await;
        end
    }

    /// Publish the pulled stream here, with the relay session as its client (recordings and
    /// their callbacks name the remote, as nginx-rtmp's relay session).
    fn publish(&self, plan: &Plan, handle: &ClientHandle) -> Result<Published, PublishError> {
        let ip = plan.url.host.parse::<IpAddr>().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let client = ClientInfo {
            id: handle.id(),
            addr: SocketAddr::new(ip, plan.url.port),
            app: self.app.name.clone(),
            flash_ver: plan.connect.flash_ver.clone(),
            swf_url: plan.connect.swf_url.clone(),
            tc_url: plan.connect.tc_url.clone(),
            page_url: plan.connect.page_url.clone(),
        };
        let source = Source {
            app: &self.app,
            name: &self.key.name,
            args: "",
            client: Some(&client),
            push_to: None,
            srv: self.srv,
        };
        self.streams.publish_pulled(&source, self.opts)
    }

    /// One message from the remote: media goes through `live::ingest` like an RTMP
    /// publisher's; the rest (statuses, stream begin/EOF) changes nothing here. True for audio
    /// or video (a server sends `|RtmpSampleAccess` data with its play answer, stream or not).
    fn on_event(&self, event: ClientEvent, publisher: Option<&Publisher>) -> bool {
        let ClientEvent::Media { kind, timestamp, payload } = event else {
            if let ClientEvent::Status { code, .. } = &event {
                tracing::debug!(app = %self.app.name, stream = %self.key.name, code = %for_log(code), "pull: remote status");
            }
            return false;
        };
        let audio_video = kind != MediaKind::Data;
        let (Some(publisher), Some(frame)) = (publisher, live::ingest(&self.app.live, kind, timestamp, payload)) else {
            return audio_video;
        };
        if frame.sequence_header {
            match live::describe_sequence_header(&frame) {
                Ok(Some(desc)) => {
                    tracing::info!(app = %self.app.name, stream = %self.key.name, "pull: {desc}");
                    publisher.stream().set_codec_info(frame.kind, desc);
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(stream = %self.key.name, "pull: sequence header not parsed: {e}"),
            }
        }
        publisher.stream().push(frame);
        audio_video
    }
}

fn is_stream_eof(event: &ClientEvent) -> bool {
    matches!(event, ClientEvent::StreamControl(rtmp::message::user_control::STREAM_EOF, _))
}

/// Rounds through the origins a pull with several makes after losing its upstream, before it
/// gives up (a publisher reconnecting to any origin within them is found again).
const FAILOVER_ROUNDS: u32 = 5;

/// How often a directory lookup is tried while Redis does not answer, a second apart.
const LOOKUP_TRIES: u32 = 3;

/// How long after its origin died a publisher may take to publish again on another node (OBS
/// and ffmpeg retry within seconds), on top of the dead registration's expiry (`cluster_ttl`).
const REPUBLISH_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The rounds a directory pull makes after losing its upstream: at least `FAILOVER_ROUNDS`,
/// and enough `pull_reconnect`s to cover `ttl` (the dead origin's key expiring) plus
/// [`REPUBLISH_WITHIN`].
fn directory_rounds(ttl: std::time::Duration, every: std::time::Duration) -> u32 {
    let need = (ttl + REPUBLISH_WITHIN).as_millis().div_ceil(every.as_millis().max(1)) + 1;
    FAILOVER_ROUNDS.max(u32::try_from(need).unwrap_or(u32::MAX))
}

/// What a directory lookup found.
enum Found {
    /// The origin to play, planned.
    Origin(Box<Plan>),
    /// No node (but this one) has the stream.
    Nowhere,
    /// Redis did not answer (after [`LOOKUP_TRIES`]).
    Unreachable(String),
}

/// A session that played this long was healthy: losing it fails over at once.
const HEALTHY: std::time::Duration = std::time::Duration::from_secs(5);

/// With several origins: an origin that accepts `play` but sends nothing this long is skipped.
const MEDIA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `pull_linger`: when an on-demand session whose last player left stops.
struct Linger {
    after: std::time::Duration,
    at: Option<tokio::time::Instant>,
}

impl Linger {
    fn new(after: std::time::Duration) -> Self {
        Linger { after, at: None }
    }

    /// The last player left (maybe again): the session stops `after` from now unless one
    /// comes back.
    fn start(&mut self) {
        self.at = Some(tokio::time::Instant::now() + self.after);
    }

    /// Fires once when the linger ran out (never when none runs); the caller decides under
    /// the registry's lock whether to stop.
    async fn expired(&mut self) {
        match self.at {
            Some(at) => {
                tokio::time::sleep_until(at).await;
                self.at = None;
            }
            None => std::future::pending().await,
        }
    }
}

/// Sleep `every`; true when the server shuts down meanwhile.
async fn wait_or_shutdown(shutdown: &CancellationToken, every: std::time::Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(every) => false,
        () = shutdown.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rtmp::MediaKind;

    use super::*;
    use crate::config::test_app;
    use crate::hub::Entry;

    const OPTS: StreamOptions = StreamOptions { ring_len: 64, gop_cache: true };
    const AVC_SEQ: &[u8] = &[
        0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02,
        0x68, 0xee,
    ];

    /// A context with pulls and no output modules, and its pull registry.
    fn edge() -> (Arc<Streams>, Arc<Pulls>, Arc<Clients>, CancellationToken) {
        let clients = Arc::new(Clients::default());
        let shutdown = CancellationToken::new();
        let setup = Setup {
            clients: clients.clone(),
            servers: Default::default(),
            shutdown: shutdown.clone(),
            tracker: TaskTracker::new(),
            directory: None,
        };
        let streams = Streams::new(crate::hub::Hub::new(), Arc::new([]), setup);
        let pulls = streams.pulls().clone();
        (streams, pulls, clients, shutdown)
    }

    /// A player of `name` in `app` with no client.
    fn player<'a>(app: &'a Arc<AppConf>, name: &'a str) -> crate::streams::Player<'a> {
        Player { app, name, args: "", client: None, srv: 0 }
    }

    /// A port that accepts TCP and then never answers: a pull to it stays "starting".
    async fn silent_origin() -> (u16, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        (port, task)
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// An in-process sluice with `cam` published by our own client, which sends a keyframe
    /// every 100 ms.
    async fn origin() -> (u16, CancellationToken, tokio::task::JoinHandle<()>) {
        let (port, shutdown) = sluice_with("").await;
        (port, shutdown, feed(port).await)
    }

    /// An in-process sluice whose application `live` has `extra`; nobody publishes there yet.
    async fn sluice_with(extra: &str) -> (u16, CancellationToken) {
        let port = free_port();
        let text = format!(
            "rtmp {{ http_listen off; server {{ listen 127.0.0.1:{port}; application live {{ live on; {extra} }} }} }}"
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(crate::app::run(crate::config::Config::parse(&text, "t").unwrap(), shutdown.clone()));
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (port, shutdown)
    }

    /// Publishes `cam` on the sluice at `port` from our own client: a keyframe every 100 ms.
    async fn feed(port: u16) -> tokio::task::JoinHandle<()> {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut publisher = loop {
            match crate::client::RtmpClient::connect(addr, "live", rtmp::Role::Publish("cam".into())).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        assert_eq!(publisher.next_status().await.unwrap(), "NetStream.Publish.Start");
        tokio::spawn(async move {
            publisher.send_media(MediaKind::Video, 0, AVC_SEQ).await.unwrap();
            for i in 0u32.. {
                let mut key = vec![0x17, 0x01, 0, 0, 0];
                key.resize(200, 0xAB);
                if publisher.send_media(MediaKind::Video, i * 100, &key).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    /// Entries until a video keyframe arrives.
    async fn until_keyframe(sub: &mut Subscriber) -> Vec<String> {
        let mut seen = Vec::new();
        let read = async {
            loop {
                for e in sub.next_batch(16).await.entries {
                    match e {
                        Entry::Published => seen.push("published".to_owned()),
                        Entry::Unpublished => seen.push("unpublished".to_owned()),
                        Entry::Frame(f) if f.keyframe => {
                            seen.push("key".to_owned());
                            return;
                        }
                        Entry::Frame(_) => seen.push("frame".to_owned()),
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read).await.unwrap_or_else(|_| panic!("no keyframe: {seen:?}"));
        seen
    }

    #[tokio::test]
    async fn start_for_url_pulls_a_remote_stream_until_its_last_player_leaves() {
        let (port, origin_shutdown, _feeding) = origin().await;
        let (streams, pulls, clients, _shutdown) = edge();
        let app = test_app("live on;");
        let url = format!("rtmp://127.0.0.1:{port}/live/cam?token=s3cret");
        let (_, mut first) = streams.play_pulled(&player(&app, "local"), &url, OPTS).expect("started");
        let (_, mut second) = streams.play_pulled(&player(&app, "local"), &url, OPTS).expect("joined");
        assert_eq!((pulls.len(), pulls.players("live", "local")), (1, 2), "one pull, two players");
        let seen = until_keyframe(&mut first).await;
        assert!(seen.starts_with(&["published".to_owned()]), "{seen:?}");
        until_keyframe(&mut second).await;
        // The pull is a relay publisher in the registry, its secret masked.
        let rows = clients.list();
        assert_eq!(rows.len(), 1, "{rows:?}");
        let row = &rows[0];
        assert_eq!(
            (row.kind, row.role, row.app.as_str(), row.name.as_str()),
            (Kind::Relay, Role::Publisher, "live", "local")
        );
        let relay = row.relay.clone().unwrap();
        assert_eq!(relay.url, format!("rtmp://127.0.0.1:{port}/live/cam?token=***"));
        assert!(relay.connected && row.bytes_in > 0);
        // A module-like subscriber is not a player: it does not keep the pull.
        let (_, module_sub) = first.stream().subscribe();
        drop((first, second));
        eventually("the pull to stop", || pulls.is_empty()).await;
        eventually("its registry row to go", || clients.is_empty()).await;
        drop(module_sub);
        origin_shutdown.cancel();
    }

    /// nginx-rtmp: a pull whose remote dies ends its players' stream and is not retried.
    #[tokio::test]
    async fn an_on_demand_pull_whose_remote_dies_ends_and_is_not_retried() {
        let (port, origin_shutdown, _feeding) = origin().await;
        let (streams, pulls, _, _) = edge();
        let app = test_app("live on;");
        let url = format!("rtmp://127.0.0.1:{port}/live/cam");
        let (_, mut sub) = streams.play_pulled(&player(&app, "cam"), &url, OPTS).unwrap();
        until_keyframe(&mut sub).await;
        origin_shutdown.cancel();
        let ended = async {
            loop {
                if sub.next_batch(16).await.entries.iter().any(|e| matches!(e, Entry::Unpublished)) {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), ended).await.expect("the pulled stream ends");
        eventually("the pull to go", || pulls.is_empty()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(pulls.is_empty(), "not retried");
    }

    #[tokio::test]
    async fn start_for_url_refuses_what_it_cannot_pull() {
        let (streams, _pulls, _, _) = edge();
        let app = test_app("live on;");
        let err =
            |url: &str, name: &str| streams.play_pulled(&player(&app, name), url, OPTS).err().map(|e| e.to_string());
        assert!(err("rtmp://h/live/x", "../x").unwrap().contains("bad stream name"));
        assert!(err("http://h/live/x", "x").unwrap().contains("rtmp://"));
        assert!(err("rtmp://h/live/$name", "x").unwrap().contains("\"$\""));
        let off = test_app("live off;");
        assert!(matches!(streams.play_pulled(&player(&off, "x"), "rtmp://h/live/x", OPTS), Err(PullError::NotLive)));
    }

    #[tokio::test]
    async fn players_are_counted_and_a_player_of_a_starting_pull_waits_even_with_idle_streams_off() {
        let (port, _origin) = silent_origin().await;
        let (streams, pulls, _, _) = edge();
        let app = test_app(&format!("live on; idle_streams off; pull rtmp://127.0.0.1:{port}/live;"));
        let (pack, a) = streams.play(&player(&app, "cam"), OPTS).expect("a player of a starting pull");
        assert!(pack.live, "accepted now although nobody publishes yet");
        let (_, b) = streams.play(&player(&app, "cam"), OPTS).expect("a second player");
        assert_eq!((pulls.len(), pulls.players("live", "cam")), (1, 2));
        // Streams without a matching pull are unchanged: no idle stream with idle_streams off.
        let other = test_app(&format!("live on; idle_streams off; pull rtmp://127.0.0.1:{port}/live name=x;"));
        assert!(streams.play(&player(&other, "cam2"), OPTS).is_none());
        drop(a);
        assert_eq!(pulls.players("live", "cam"), 1);
        drop(b);
        eventually("the pull to stop with its last player", || pulls.is_empty()).await;
        assert!(streams.hub.is_empty(), "nothing left in the hub");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_player_arriving_while_the_pull_stops_is_not_lost() {
        let (port, _origin) = silent_origin().await;
        let (streams, pulls, _, _) = edge();
        let app = test_app(&format!("live on; pull rtmp://127.0.0.1:{port}/live;"));
        for i in 0..300 {
            let (_, a) = streams.play(&player(&app, "cam"), OPTS).unwrap();
            drop(a);
            // Sometimes the stopping session runs first, sometimes the new player comes first.
            for _ in 0..i % 3 {
                tokio::task::yield_now().await;
            }
            // Either the old pull is still running and counts this player, or a new one is.
            let (_, b) = streams.play(&player(&app, "cam"), OPTS).unwrap();
            tokio::task::yield_now().await;
            assert_eq!((pulls.len(), pulls.players("live", "cam")), (1, 1));
            drop(b);
        }
        eventually("every pull to stop", || pulls.is_empty()).await;
    }

    #[tokio::test]
    async fn a_pull_that_fails_ends_the_stream_for_its_waiting_players() {
        let (streams, pulls, _, _) = edge();
        let app = test_app(&format!("live on; pull rtmp://127.0.0.1:{}/live;", free_port()));
        let (pack, mut sub) = streams.play(&player(&app, "cam"), OPTS).unwrap();
        assert!(!pack.live, "with idle_streams on the player waits as on any idle stream");
        let ended = async {
            loop {
                if sub.next_batch(16).await.entries.iter().any(|e| matches!(e, Entry::Unpublished)) {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), ended).await.expect("the end of the stream");
        assert!(pulls.is_empty());
    }

    #[tokio::test]
    async fn a_stream_published_here_is_not_pulled() {
        let (streams, pulls, _, _) = edge();
        let app = test_app("live on; pull rtmp://127.0.0.1:1/live;");
        let source = Source { app: &app, name: "cam", args: "", client: None, push_to: None, srv: 0 };
        let _published = streams.publish(&source, OPTS).unwrap();
        let (pack, _sub) = streams.play(&player(&app, "cam"), OPTS).unwrap();
        assert!(pack.live);
        assert!(pulls.is_empty());
    }

    /// Several origins: one that cannot be reached and one that accepts `play` but has no
    /// media are skipped; the third plays, and the registry row names it.
    #[tokio::test]
    async fn a_pull_skips_origins_that_are_down_or_lack_the_stream() {
        // Nobody publishes there and players wait (`idle_streams on`): it accepts `play` and
        // sends no media.
        let (empty, _empty_shutdown) = sluice_with("").await;
        let (port, origin_shutdown, _feeding) = origin().await;
        let (streams, pulls, clients, _) = edge();
        let app = test_app(&format!(
            "live on; pull rtmp://127.0.0.1:{}/live rtmp://127.0.0.1:{empty}/live rtmp://127.0.0.1:{port}/live;",
            free_port()
        ));
        let (_, mut sub) = streams.play(&player(&app, "cam"), OPTS).unwrap();
        until_keyframe(&mut sub).await;
        assert_eq!(pulls.len(), 1);
        let relay = clients.list()[0].relay.clone().unwrap();
        assert_eq!(relay.url, format!("rtmp://127.0.0.1:{port}/live"));
        assert_eq!((relay.connected, relay.reconnects), (true, 2));
        drop(sub);
        origin_shutdown.cancel();
    }

    /// "And back": an upstream lost mid-stream is looked for from the first origin again, not
    /// from the next one in the list; the players stay subscribed across the failover.
    #[tokio::test]
    async fn a_lost_upstream_fails_over_starting_from_the_first_origin() {
        let (first, _first_shutdown) = sluice_with("idle_streams off;").await;
        let (second, second_shutdown, _second_feed) = origin().await;
        let (third, _third_shutdown, _third_feed) = origin().await;
        let (streams, _pulls, clients, _) = edge();
        let app = test_app(&format!(
            "live on; pull_reconnect 100ms; pull rtmp://127.0.0.1:{first}/live rtmp://127.0.0.1:{second}/live rtmp://127.0.0.1:{third}/live;"
        ));
        let (_, mut sub) = streams.play(&player(&app, "cam"), OPTS).unwrap();
        until_keyframe(&mut sub).await;
        let relay = || clients.list()[0].relay.clone().unwrap();
        assert_eq!(relay().url, format!("rtmp://127.0.0.1:{second}/live"), "the first refused it");
        // The stream appears on the first origin; the second dies.
        let _first_feed = feed(first).await;
        second_shutdown.cancel();
        // Frames of the second origin may come first; then the stream ends and comes back.
        while !until_keyframe(&mut sub).await.contains(&"unpublished".to_owned()) {}
        eventually("the pull on the first origin", || relay().connected).await;
        assert_eq!(relay().url, format!("rtmp://127.0.0.1:{first}/live"), "back to the first, not on to the third");
        assert_eq!(relay().reconnects, 2);
    }

    /// An origin that keeps the edge's connection when its publisher leaves (`idle_streams
    /// on`) still fails the pull over: its Stream EOF ends the session, and the next round
    /// skips it (no media) for the origin that has the stream.
    #[tokio::test]
    async fn the_origins_publisher_leaving_fails_over() {
        let (first, _first_shutdown, first_feed) = origin().await;
        let (second, _second_shutdown, _second_feed) = origin().await;
        let (streams, _pulls, clients, _) = edge();
        let app = test_app(&format!(
            "live on; pull_reconnect 100ms; pull rtmp://127.0.0.1:{first}/live rtmp://127.0.0.1:{second}/live;"
        ));
        let (_, mut sub) = streams.play(&player(&app, "cam"), OPTS).unwrap();
        until_keyframe(&mut sub).await;
        let relay = || clients.list()[0].relay.clone().unwrap();
        assert_eq!(relay().url, format!("rtmp://127.0.0.1:{first}/live"));
        first_feed.abort();
        while !until_keyframe(&mut sub).await.contains(&"unpublished".to_owned()) {}
        assert_eq!(relay().url, format!("rtmp://127.0.0.1:{second}/live"));
        // The first origin again (it has no media now), then the second.
        assert_eq!(relay().reconnects, 2, "{:?}", relay());
    }

    /// The upstream is lost while the pull lingers with no player: it stops rather than fail
    /// over to an origin for nobody.
    #[tokio::test]
    async fn a_lingering_pull_that_loses_its_upstream_stops() {
        let (first, first_shutdown, _first_feed) = origin().await;
        let (second, _second_shutdown, _second_feed) = origin().await;
        let (streams, pulls, _, _) = edge();
        let app = test_app(&format!(
            "live on; pull_linger 1h; pull rtmp://127.0.0.1:{first}/live rtmp://127.0.0.1:{second}/live;"
        ));
        let (_, mut sub) = streams.play(&player(&app, "cam"), OPTS).unwrap();
        until_keyframe(&mut sub).await;
        drop(sub);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(pulls.len(), 1, "lingering");
        first_shutdown.cancel();
        eventually("the pull to stop", || pulls.is_empty()).await;
    }

    /// A stream no origin has: one round, then its players' stream ends (no endless retries).
    #[tokio::test]
    async fn a_pull_no_origin_plays_gives_up_after_one_round() {
        let (streams, pulls, _, _) = edge();
        let app = test_app(&format!(
            "live on; pull rtmp://127.0.0.1:{}/live rtmp://127.0.0.1:{}/live;",
            free_port(),
            free_port()
        ));
        let (_, mut sub) = streams.play(&player(&app, "cam"), OPTS).unwrap();
        let ended = async {
            loop {
                if sub.next_batch(16).await.entries.iter().any(|e| matches!(e, Entry::Unpublished)) {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), ended).await.expect("the end of the stream");
        assert!(pulls.is_empty());
    }

    /// A directory pull that lost its origin keeps looking long enough for the dead origin's
    /// key to expire (`cluster_ttl`) and its publisher to come back elsewhere.
    #[test]
    fn directory_rounds_cover_the_ttl_and_a_republish() {
        let s = Duration::from_secs;
        for (ttl, every) in [(s(5), s(3)), (s(2), Duration::from_millis(500)), (s(60), s(3)), (s(1), s(30))] {
            let rounds = directory_rounds(ttl, every);
            assert!(rounds >= FAILOVER_ROUNDS, "{ttl:?} {every:?}");
            assert!(every * (rounds - 1) >= ttl + REPUBLISH_WITHIN, "{ttl:?} {every:?}: {rounds}");
        }
        // The defaults: 6 rounds 3 s apart (5 s ttl + 10 s).
        assert_eq!(directory_rounds(s(5), s(3)), 6);
    }

    #[test]
    fn the_first_matching_on_demand_target_is_used() {
        let app = test_app(
            "live on; pull rtmp://a/live name=x static; pull rtmp://b/live name=y; pull rtmp://c/live; pull rtmp://d/live;",
        );
        assert_eq!(on_demand_target(&app, "x").map(|t| t.url.as_str()), Some("rtmp://c/live"));
        assert_eq!(on_demand_target(&app, "y").map(|t| t.url.as_str()), Some("rtmp://b/live"));
        assert!(on_demand_target(&test_app("live on;"), "y").is_none());
    }
}

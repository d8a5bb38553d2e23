//! The one publish and the one play entry that every source calls: the RTMP connection, a
//! relay pull, an exec'd process (through RTMP), HTTP-FLV later. Both are methods of
//! [`Streams`], the context built once at start-up ([`crate::app`]) and held in
//! [`crate::server::Shared`]: [`Streams::publish`] claims the stream in the hub and runs every
//! registered output module's [`Module::on_publish`] ([`crate::modules`]);
//! [`Streams::play`] subscribes a player, joins or starts its relay pull, and runs every
//! module's [`Module::on_play`]. Access policy and callbacks are decided before, by the source.
//! A file played on demand is a source of its own per player: [`Streams::play_file`] finds
//! and opens it ([`crate::vod`]) and starts its paced playback.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::AppConf;
use crate::events::ClientInfo;
use crate::hub::{Hub, PublishError, Publisher, StartPack, StreamKey, StreamOptions, Subscriber};
use crate::modules::{Modules, PlayCtx, PlayGuard, PublishCtx, StatusReceiver};
use crate::relay::pull::{self, PullError, Pulls, Setup};

/// Who publishes what.
pub struct Source<'a> {
    /// The application published to.
    pub app: &'a Arc<AppConf>,
    /// The stream name, already checked by [`crate::untrusted::stream_name`].
    pub name: &'a str,
    /// The publish query string.
    pub args: &'a str,
    /// The publishing client, if a client publishes.
    pub client: Option<&'a ClientInfo>,
    /// One more push target, besides the application's `push` lines: the `rtmp://` location
    /// an `on_publish` callback redirected to (nginx-rtmp pushes the stream there).
    pub push_to: Option<&'a str>,
    /// The index of the `server {}` block the stream is published in (control's `srv`).
    pub srv: usize,
}

/// Who plays what.
pub struct Player<'a> {
    /// The application played from.
    pub app: &'a Arc<AppConf>,
    /// The stream name, already checked by [`crate::untrusted::stream_name`].
    pub name: &'a str,
    /// The play query string (`exec_play`'s `$args`).
    pub args: &'a str,
    /// The playing client, if a client plays (`exec_play`'s `$addr`, `$tcurl`, ...).
    pub client: Option<&'a ClientInfo>,
    /// The index of the `server {}` block played in (where a relay pull it starts registers).
    pub srv: usize,
}

/// A publish that succeeded.
pub struct Published {
    /// Proof of being the publisher: push frames to its stream; unpublishes when dropped.
    pub publisher: Publisher,
    /// Statuses the modules have for the publisher (`record_notify`); ends when no module has
    /// any more to say.
    pub status: StatusReceiver,
}

/// What every source publishes and plays through: the stream registry, the output modules and
/// the relay pulls.
///
/// The pulls are a source that this context starts (for a player) and that publishes through
/// it: they hold no reference to it, which would be a cycle; a call that may start a pull
/// passes the context (`self: &Arc<Self>`), and a running pull's task keeps it until it ends.
pub struct Streams {
    /// The stream registry.
    pub hub: Arc<Hub>,
    /// The output modules ([`crate::modules::registered`]).
    pub modules: Modules,
    /// The relay pull registry.
    pulls: Arc<Pulls>,
    /// Files played on demand, shared by their players.
    vod: crate::vod::Library,
}

impl Streams {
    /// The context over `hub`, running `modules` for every publisher and player, with relay
    /// pulls as `pulls` says (`Setup::default()`: no server blocks, no static pulls).
    pub fn new(hub: Arc<Hub>, modules: Modules, pulls: Setup) -> Arc<Self> {
        Arc::new(Streams { hub, modules, pulls: Pulls::new(pulls), vod: crate::vod::Library::default() })
    }

    /// The relay pull registry.
    pub fn pulls(&self) -> &Arc<Pulls> {
        &self.pulls
    }

    /// Start every `pull ... static` of every server block (once, at start-up).
    pub fn start_static_pulls(self: &Arc<Self>) {
        self.pulls.start_static(self);
    }

    /// The cluster's stream directory, when `cluster_redis` is set ([`crate::cluster`]).
    pub fn directory(&self) -> Option<&Arc<crate::cluster::Directory>> {
        self.pulls.directory()
    }

    /// Whether plays of streams nobody publishes here in `app` are looked up in the stream
    /// directory (and pulled from the node that has them).
    fn clustered(&self, app: &AppConf) -> bool {
        app.cluster && self.directory().is_some()
    }

    /// Whether a player of `name` in `app` would start an on-demand relay pull when nobody
    /// publishes it here: a matching non-`static` `pull`, or the cluster's directory (what
    /// [`Streams::play`] decides). HLS viewers start pulls only then ([`crate::hls`]).
    pub fn pulls_on_play(&self, app: &AppConf, name: &str) -> bool {
        app.live.live && (pull::on_demand_target(app, name).is_some() || self.clustered(app))
    }

    /// Claim `source`'s stream in the hub and start every module on it, before the first frame.
    pub fn publish(self: &Arc<Self>, source: &Source<'_>, opts: StreamOptions) -> Result<Published, PublishError> {
        self.publish_as(source, opts, false)
    }

    /// [`Streams::publish`] for a relay pull: the stream is a copy of another server's
    /// (modules that must not treat it as an origin's, the cluster's registration, see
    /// [`PublishCtx::pulled`]).
    pub fn publish_pulled(
        self: &Arc<Self>,
        source: &Source<'_>,
        opts: StreamOptions,
    ) -> Result<Published, PublishError> {
        self.publish_as(source, opts, true)
    }

    fn publish_as(
        self: &Arc<Self>,
        source: &Source<'_>,
        opts: StreamOptions,
        pulled: bool,
    ) -> Result<Published, PublishError> {
        let key = StreamKey { app: source.app.name.clone(), name: source.name.to_owned() };
        let publisher = self.hub.publish(key, opts)?;
        let (tx, status) = mpsc::unbounded_channel();
        let ctx = PublishCtx { source, stream: publisher.stream(), streams: self, status: &tx, pulled };
        for module in self.modules.iter() {
            tracing::trace!(app = %source.app.name, stream = %source.name, module = module.name(), "on_publish");
            module.on_publish(&ctx);
        }
        Ok(Published { publisher, status })
    }

    /// Subscribe `player` to its stream. With `idle_streams on` a stream nobody publishes yet
    /// is created for the player to wait on; `None` when the application does not play live or
    /// there is no such stream (or no room for one).
    ///
    /// Every player source calls this (or [`Streams::play_pulled`]), and nothing else does
    /// (output modules subscribe to the hub directly), so it is where players are counted: in
    /// an application with a matching `pull`, the player joins the stream's relay pull, or
    /// starts one when nobody publishes the stream ([`crate::relay::pull`]), and the pull stops
    /// when its last player leaves. Then every module's [`crate::modules::Module::on_play`]
    /// runs, and the player holds what they return until it leaves. A player of a pull still
    /// starting, or of a name a module publishes on play (`exec_pull`), waits for it even with
    /// `idle_streams off` (its `StartPack::live` is set: the source accepts it now).
    pub fn play(self: &Arc<Self>, player: &Player<'_>, opts: StreamOptions) -> Option<(StartPack, Subscriber)> {
        let (app, name) = (player.app, player.name);
        if !app.live.live {
            return None;
        }
        let on_play = self.modules.iter().any(|m| m.publishes_on_play(app, name));
        let found = match pull::on_demand_target(app, name) {
            Some(target) => self.pulls.play(self, player, Some(target), opts),
            // A cluster application: the stream directory says where to pull it from.
            None if self.clustered(app) => self.pulls.play(self, player, None, opts),
            None => {
                let key = StreamKey { app: app.name.clone(), name: name.to_owned() };
                self.hub.subscribe(&key, (app.live.idle_streams || on_play).then_some(opts))
            }
        };
        let (mut pack, sub) = found?;
        // As a relay pull still starting: the source takes `live` as "accept the player now".
        pack.live |= on_play && !app.live.idle_streams;
        Some((pack, self.run_on_play(player, sub)))
    }

    /// Subscribe `player` to its stream, pulled from `url` (started, or joined when it runs):
    /// an `on_play` callback's `rtmp://` redirect, which nginx-rtmp answers with a pull. The
    /// modules' `on_play` run as for [`Streams::play`].
    pub fn play_pulled(
        self: &Arc<Self>,
        player: &Player<'_>,
        url: &str,
        opts: StreamOptions,
    ) -> Result<(StartPack, Subscriber), PullError> {
        let (pack, sub) = pull::start_for_url(self, player, url, opts)?;
        Ok((pack, self.run_on_play(player, sub)))
    }

    /// Play `player`'s name from the application's `play` locations (tried in order), from
    /// `start_ms` for `duration_ms` (0: to the end): the file is opened and indexed once for all
    /// its players, and this player's paced [`Playback`](crate::vod::Playback) starts.
    pub async fn play_file(
        &self,
        player: &Player<'_>,
        addr: std::net::IpAddr,
        start_ms: u64,
        duration_ms: u64,
    ) -> Result<crate::vod::Playback, crate::vod::PlayError> {
        let asker = crate::vod::Asker { addr, args: player.args };
        let opened = self.vod.find(&player.app.play, player.name, &asker).await?;
        let mut playback = crate::vod::Playback::start(opened, start_ms, duration_ms);
        // A file's player is a player like any (nginx-rtmp's exec module runs `exec_play` for
        // every play): the modules' guards go with its playback.
        for guard in self.on_play_guards(&PlayCtx { player, stream: None }) {
            playback.hold(guard);
        }
        Ok(playback)
    }

    /// The file `name` plays in `app` from its `play` directories, opened and indexed (kept
    /// while the caller holds it, so the play that follows finds it indexed); `None` when no
    /// directory has it. No module runs: nobody plays it yet.
    pub async fn find_local_file(&self, app: &AppConf, name: &str) -> Option<Arc<crate::vod::Opened>> {
        self.vod.find_local(&app.play, name).await
    }

    /// Every module's `on_play` for `player`, whose subscription `sub` keeps their guards.
    fn run_on_play(&self, player: &Player<'_>, mut sub: Subscriber) -> Subscriber {
        let stream = sub.stream().clone();
        for guard in self.on_play_guards(&PlayCtx { player, stream: Some(&stream) }) {
            sub.hold(guard);
        }
        sub
    }

    /// What every module's `on_play` returns for the player in `ctx`.
    fn on_play_guards(&self, ctx: &PlayCtx<'_>) -> Vec<PlayGuard> {
        let player = ctx.player;
        let mut guards = Vec::new();
        for module in self.modules.iter() {
            if let Some(guard) = module.on_play(ctx) {
                tracing::trace!(app = %player.app.name, stream = %player.name, module = module.name(), "on_play");
                guards.push(guard);
            }
        }
        guards
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::time::Duration;

    use rtmp::{ClientEvent, Role};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config::test_app as app;
    use crate::modules::{Module, Status};

    const OPTS: StreamOptions = StreamOptions { ring_len: 16, gop_cache: true };

    /// What the dummy module saw of a publish: app, name, args, client address.
    type Seen = (String, String, String, Option<SocketAddr>);

    /// A module that notes who published and greets the publisher, and notes who played,
    /// counting them out when they leave.
    #[derive(Default)]
    struct Dummy {
        seen: Mutex<Vec<Seen>>,
        players: Arc<Mutex<Vec<Seen>>>,
    }

    /// What a player holds for [`Dummy`].
    struct Leaves(Arc<Mutex<Vec<Seen>>>, Seen);

    impl Drop for Leaves {
        fn drop(&mut self) {
            let mut players = self.0.lock().unwrap();
            let at = players.iter().position(|p| *p == self.1).expect("counted in");
            players.remove(at);
        }
    }

    impl Module for Dummy {
        fn name(&self) -> &'static str {
            "dummy"
        }

        fn on_publish(&self, ctx: &PublishCtx<'_>) {
            assert!(ctx.stream.is_live(), "called once the stream is claimed");
            let seen = (
                ctx.source.app.name.clone(),
                ctx.source.name.to_owned(),
                ctx.source.args.to_owned(),
                ctx.source.client.map(|c| c.addr),
            );
            self.seen.lock().unwrap().push(seen);
            let hello =
                Status { level: "status", code: "NetStream.Dummy.Hello", description: ctx.source.name.to_owned() };
            let _ = ctx.status.send(hello);
        }

        fn on_play(&self, ctx: &PlayCtx<'_>) -> Option<PlayGuard> {
            let seen = (
                ctx.player.app.name.clone(),
                ctx.player.name.to_owned(),
                ctx.player.args.to_owned(),
                ctx.player.client.map(|c| c.addr),
            );
            self.players.lock().unwrap().push(seen.clone());
            Some(Box::new(Leaves(self.players.clone(), seen)))
        }
    }

    /// A context with `modules` and no relay pulls.
    fn streams(modules: Vec<Arc<dyn Module>>) -> Arc<Streams> {
        Streams::new(Hub::new(), modules.into(), Setup::default())
    }

    fn player<'a>(app: &'a Arc<AppConf>, name: &'a str) -> Player<'a> {
        Player { app, name, args: "", client: None, srv: 0 }
    }

    #[tokio::test]
    async fn publish_claims_the_stream_and_runs_every_module() {
        let (a, b) = (Arc::new(Dummy::default()), Arc::new(Dummy::default()));
        let streams = streams(vec![a.clone(), b.clone()]);
        let app = app("live on;");
        let source = Source { app: &app, name: "cam", args: "k=v", client: None, push_to: None, srv: 0 };
        let mut published = streams.publish(&source, OPTS).expect("published");
        assert!(published.publisher.stream().is_live());
        for m in [&a, &b] {
            assert_eq!(*m.seen.lock().unwrap(), [("live".into(), "cam".into(), "k=v".into(), None)]);
        }
        assert_eq!(published.status.recv().await.unwrap().code, "NetStream.Dummy.Hello");
        assert!(matches!(streams.publish(&source, OPTS), Err(PublishError::AlreadyPublishing(_))));
        assert_eq!(a.seen.lock().unwrap().len(), 1, "a refused publish starts no module");
    }

    #[test]
    fn play_creates_an_idle_stream_only_with_idle_streams() {
        let streams = streams(Vec::new());
        assert!(streams.play(&player(&app("live on; idle_streams off;"), "x"), OPTS).is_none());
        let sub = streams.play(&player(&app("live on;"), "x"), OPTS).expect("an idle stream to wait on");
        assert_eq!(streams.hub.len(), 1);
        drop(sub);
        assert!(streams.hub.is_empty());
        assert!(streams.play(&player(&app("live off;"), "x"), OPTS).is_none());
    }

    /// Every module's `on_play` sees the player (its args and client), and what it returns is
    /// held until the player leaves; a player that is not served runs none.
    #[test]
    fn play_runs_every_module_and_the_player_holds_their_guards() {
        let (a, b) = (Arc::new(Dummy::default()), Arc::new(Dummy::default()));
        let streams = streams(vec![a.clone(), b.clone()]);
        let app = app("live on;");
        let client = ClientInfo {
            id: 1,
            addr: ([192, 0, 2, 7], 4000).into(),
            app: "live".into(),
            flash_ver: String::new(),
            swf_url: String::new(),
            tc_url: String::new(),
            page_url: String::new(),
        };
        let p = Player { app: &app, name: "cam", args: "k=v", client: Some(&client), srv: 0 };
        let first = streams.play(&p, OPTS).expect("played");
        let second = streams.play(&player(&app, "cam"), OPTS).expect("played");
        let seen: Seen = ("live".into(), "cam".into(), "k=v".into(), Some(client.addr));
        let anon: Seen = ("live".into(), "cam".into(), "".into(), None);
        for m in [&a, &b] {
            assert_eq!(*m.players.lock().unwrap(), [seen.clone(), anon.clone()]);
        }
        drop(first);
        for m in [&a, &b] {
            assert_eq!(*m.players.lock().unwrap(), std::slice::from_ref(&anon), "the first player's guards dropped");
        }
        drop(second);
        let off = crate::config::test_app("live on; idle_streams off;");
        assert!(streams.play(&player(&off, "cam"), OPTS).is_none());
        assert!(a.players.lock().unwrap().is_empty() && b.players.lock().unwrap().is_empty());
    }

    /// A player an `on_play` callback redirected to an `rtmp://` pull is a player like any:
    /// the modules' `on_play` run for it.
    #[tokio::test]
    async fn play_pulled_runs_every_module() {
        let dummy = Arc::new(Dummy::default());
        let streams = streams(vec![dummy.clone()]);
        let app = app("live on;");
        let url = format!("rtmp://127.0.0.1:{}/live/cam", free_port());
        let p = Player { app: &app, name: "local", args: "k=v", client: None, srv: 0 };
        let played = streams.play_pulled(&p, &url, OPTS).expect("a pull started");
        assert_eq!(*dummy.players.lock().unwrap(), [("live".into(), "local".into(), "k=v".into(), None)]);
        drop(played);
        assert!(dummy.players.lock().unwrap().is_empty());
    }

    /// A port nobody listens on now.
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    /// A module added through the registration list is started for an RTMP publisher, sees
    /// its client, and what it sends on the status channel reaches the publisher.
    #[tokio::test]
    async fn a_registered_module_runs_for_an_rtmp_publisher() {
        let port = free_port();
        let text = format!(
            "rtmp {{ http_listen off; server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}"
        );
        let config = crate::config::Config::parse(&text, "t").unwrap();
        let dummy = Arc::new(Dummy::default());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(crate::app::run_with_modules(config, shutdown.clone(), vec![dummy.clone()]));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut client = loop {
            match crate::client::RtmpClient::connect(addr, "live", Role::Publish("cam?k=v".into())).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let mut codes = Vec::new();
        let statuses = async {
            while codes.len() < 2 {
                if let ClientEvent::Status { code, .. } = client.next_event().await.unwrap() {
                    codes.push(code);
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), statuses).await.expect("two statuses in time");
        assert_eq!(codes, ["NetStream.Publish.Start", "NetStream.Dummy.Hello"]);
        let seen = dummy.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let (app, name, args, client_addr) = &seen[0];
        assert_eq!((app.as_str(), name.as_str(), args.as_str()), ("live", "cam", "k=v"));
        assert_eq!(client_addr.map(|a| a.ip()), Some(addr.ip()));
        drop(client);
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }

    /// The same module is started for a stream that a relay pull publishes: the pull is a
    /// source like an RTMP publisher, its client the relay session (the origin's address).
    #[tokio::test]
    async fn a_registered_module_runs_for_a_relay_pulled_publisher() {
        let (origin_port, edge_port) = (free_port(), free_port());
        let conf = |port: u16, app: &str| {
            let text = format!("rtmp {{ http_listen off; server {{ listen 127.0.0.1:{port}; application live {{ live on; {app} }} }} }}");
            crate::config::Config::parse(&text, "t").unwrap()
        };
        let shutdown = CancellationToken::new();
        let origin = tokio::spawn(crate::app::run(conf(origin_port, ""), shutdown.clone()));
        let dummy = Arc::new(Dummy::default());
        let pull = format!("pull rtmp://127.0.0.1:{origin_port}/live;");
        let edge =
            tokio::spawn(crate::app::run_with_modules(conf(edge_port, &pull), shutdown.clone(), vec![dummy.clone()]));
        let connect = |port: u16, role: Role| async move {
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            loop {
                match crate::client::RtmpClient::connect(addr, "live", role.clone()).await {
                    Ok(c) => break c,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        };
        let mut publisher = connect(origin_port, Role::Publish("cam".into())).await;
        assert_eq!(publisher.next_status().await.unwrap(), "NetStream.Publish.Start");
        let mut player = connect(edge_port, Role::Play("cam".into())).await;
        let media = async {
            loop {
                publisher.send_media(rtmp::MediaKind::Video, 0, &[0x17, 0x01, 0, 0, 0, 1, 2, 3]).await.unwrap();
                let got = tokio::time::timeout(Duration::from_millis(200), player.next_event()).await;
                if let Ok(Ok(ClientEvent::Media { kind: rtmp::MediaKind::Video, .. })) = got {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), media).await.expect("the pulled stream's media");
        let seen = dummy.seen.lock().unwrap().clone();
        let origin_addr: SocketAddr = ([127, 0, 0, 1], origin_port).into();
        assert_eq!(seen, [("live".into(), "cam".into(), "".into(), Some(origin_addr))]);
        drop((player, publisher));
        shutdown.cancel();
        origin.await.unwrap().unwrap();
        edge.await.unwrap().unwrap();
    }
}

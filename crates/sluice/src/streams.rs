//! The one publish and the one play entry that every source calls: the RTMP connection today,
//! a relay pull, HTTP-FLV and exec later. [`publish`] claims the stream in the hub and starts
//! every registered output module ([`crate::modules`]) on it; [`play`] subscribes a player.
//! Access policy and callbacks are decided before, by the source.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::AppConf;
use crate::events::ClientInfo;
use crate::hub::{Hub, PublishError, Publisher, StartPack, StreamKey, StreamOptions, Subscriber};
use crate::modules::{Module, PublishCtx, StatusReceiver};
use crate::relay::pull::{self, Pulls};

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

/// A publish that succeeded.
pub struct Published {
    /// Proof of being the publisher: push frames to its stream; unpublishes when dropped.
    pub publisher: Publisher,
    /// Statuses the modules have for the publisher (`record_notify`); ends when no module has
    /// any more to say.
    pub status: StatusReceiver,
}

/// Claim `source`'s stream in the hub and start every module on it, before the first frame.
pub fn publish(
    hub: &Arc<Hub>,
    modules: &[Arc<dyn Module>],
    source: &Source<'_>,
    opts: StreamOptions,
) -> Result<Published, PublishError> {
    let key = StreamKey { app: source.app.name.clone(), name: source.name.to_owned() };
    let publisher = hub.publish(key, opts)?;
    let (tx, status) = mpsc::unbounded_channel();
    let ctx = PublishCtx {
        app: source.app,
        stream: publisher.stream(),
        name: source.name,
        args: source.args,
        client: source.client,
        push_to: source.push_to,
        srv: source.srv,
        status: &tx,
    };
    for module in modules {
        tracing::trace!(app = %source.app.name, stream = %source.name, module = module.name(), "on_publish");
        module.on_publish(&ctx);
    }
    Ok(Published { publisher, status })
}

/// Subscribe a player to `name` in `app`. With `idle_streams on` a stream nobody publishes yet
/// is created for the player to wait on; `None` when the application does not play live or
/// there is no such stream (or no room for one).
///
/// Every player source calls this, and nothing else does (output modules subscribe to the hub
/// directly), so it is where players are counted: in an application with a matching `pull`,
/// the player joins the stream's relay pull, or starts one when nobody publishes the stream
/// ([`crate::relay::pull`]), and the pull stops when its last player leaves. A player of a
/// pull still starting waits for it even with `idle_streams off` (its `StartPack::live` is
/// set: the source accepts it now).
pub fn play(hub: &Arc<Hub>, app: &AppConf, name: &str, opts: StreamOptions) -> Option<(StartPack, Subscriber)> {
    play_as(hub, app, name, "", None, opts)
}

/// [`play`] for a player whose query string and client are known: `exec_play` and
/// `exec_play_done` substitute them (`$args`, `$addr`, ...); also counts the player for
/// `exec_pull` ([`crate::exec::on_play`]).
pub fn play_as(
    hub: &Arc<Hub>,
    app: &AppConf,
    name: &str,
    args: &str,
    client: Option<&ClientInfo>,
    opts: StreamOptions,
) -> Option<(StartPack, Subscriber)> {
    if !app.live.live {
        return None;
    }
    // A player of a name an `exec_pull` serves waits for it even with `idle_streams off`.
    let exec_pull = app.exec.pull.iter().any(|l| l.matches(name));
    let found = match (pull::on_demand_target(app, name), Pulls::of(hub)) {
        (Some(target), Some(pulls)) => pulls.play(hub, app, target, name, opts),
        _ => {
            let key = StreamKey { app: app.name.clone(), name: name.to_owned() };
            hub.subscribe(&key, (app.live.idle_streams || exec_pull).then_some(opts))
        }
    };
    found.map(|(mut pack, mut sub)| {
        crate::exec::on_play(hub, app, name, args, client, &mut sub);
        // As a relay pull still starting: the source takes `live` as "accept the player now".
        pack.live |= exec_pull && !app.live.idle_streams;
        (pack, sub)
    })
}

/// Subscribe a player to `name` in `app`, pulled from `url` (started, or joined when it runs):
/// an `on_play` callback's `rtmp://` redirect, which nginx-rtmp answers with a pull.
pub fn play_pulled(
    hub: &Arc<Hub>,
    app: &AppConf,
    url: &str,
    name: &str,
    opts: StreamOptions,
) -> Result<(StartPack, Subscriber), pull::PullError> {
    pull::start_for_url(hub, app, url, name, opts)
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
    use crate::modules::Status;

    const OPTS: StreamOptions = StreamOptions { ring_len: 16, gop_cache: true };

    /// What the dummy module saw of a publish: app, name, args, client address.
    type Seen = (String, String, String, Option<SocketAddr>);

    /// A module that notes who published and greets the publisher.
    #[derive(Default)]
    struct Dummy {
        seen: Mutex<Vec<Seen>>,
    }

    impl Module for Dummy {
        fn name(&self) -> &'static str {
            "dummy"
        }

        fn on_publish(&self, ctx: &PublishCtx<'_>) {
            assert!(ctx.stream.is_live(), "called once the stream is claimed");
            let seen = (ctx.app.name.clone(), ctx.name.to_owned(), ctx.args.to_owned(), ctx.client.map(|c| c.addr));
            self.seen.lock().unwrap().push(seen);
            let hello = Status { level: "status", code: "NetStream.Dummy.Hello", description: ctx.name.to_owned() };
            let _ = ctx.status.send(hello);
        }
    }

    #[tokio::test]
    async fn publish_claims_the_stream_and_runs_every_module() {
        let hub = Hub::new();
        let (a, b) = (Arc::new(Dummy::default()), Arc::new(Dummy::default()));
        let modules: Vec<Arc<dyn Module>> = vec![a.clone(), b.clone()];
        let app = app("live on;");
        let source = Source { app: &app, name: "cam", args: "k=v", client: None, push_to: None, srv: 0 };
        let mut published = publish(&hub, &modules, &source, OPTS).expect("published");
        assert!(published.publisher.stream().is_live());
        for m in [&a, &b] {
            assert_eq!(*m.seen.lock().unwrap(), [("live".into(), "cam".into(), "k=v".into(), None)]);
        }
        assert_eq!(published.status.recv().await.unwrap().code, "NetStream.Dummy.Hello");
        assert!(matches!(publish(&hub, &modules, &source, OPTS), Err(PublishError::AlreadyPublishing(_))));
        assert_eq!(a.seen.lock().unwrap().len(), 1, "a refused publish starts no module");
    }

    #[test]
    fn play_creates_an_idle_stream_only_with_idle_streams() {
        let hub = Hub::new();
        assert!(play(&hub, &app("live on; idle_streams off;"), "x", OPTS).is_none());
        let sub = play(&hub, &app("live on;"), "x", OPTS).expect("an idle stream to wait on");
        assert_eq!(hub.len(), 1);
        drop(sub);
        assert!(hub.is_empty());
        assert!(play(&hub, &app("live off;"), "x", OPTS).is_none());
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

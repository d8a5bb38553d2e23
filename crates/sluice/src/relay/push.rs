//! `push`: every stream published to an application is sent to each of its matching `push`
//! targets, as nginx-rtmp's relay does. An output [`Module`]: on publish, each target gets a
//! leg task that subscribes to the stream in the hub like a player (so a dead or slow remote
//! never slows the publisher, the players or the other legs: a leg that falls behind skips to
//! the next keyframe), connects, publishes the remote name and sends. When the remote fails
//! the leg logs one line and tries again after `push_reconnect`, for as long as the stream is
//! published; it stops when the publisher leaves.
//!
//! Each leg is in the clients registry ([`Kind::Relay`], role player of the local stream) with
//! its [`RelayState`], so `/control/drop/subscriber` drops it too: the connection closes and the
//! leg reconnects after `push_reconnect`, as nginx-rtmp re-pushes a closed relay.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::conn::{ConnError, Direction, Options, RelayConn};
use super::url::{self, Plan, Vars};
use crate::clients::{ClientHandle, Clients, Kind, RelayState, Role};
use crate::config::{AppConf, LiveConf, RelayTarget};
use crate::hub::{Entry, StreamKey, Subscriber};
use crate::live::PlayerGate;
use crate::modules::{Module, PublishCtx};
use crate::untrusted;

/// The largest message a push target may send us: it only answers commands.
const REPLY_MAX_MESSAGE: u32 = 64 * 1024;
/// Most hub entries a leg takes at a time.
const BATCH: usize = 64;
/// Longest a leg waits for DNS when it registers (the registry shows the remote's address).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The relay push output module (one per server process).
pub struct Push {
    clients: Arc<Clients>,
    /// The legs of each published stream, by stream: a new publish of the same stream stops
    /// the previous publish's legs even if they missed its end in the ring.
    publishes: Arc<Mutex<HashMap<StreamKey, Arc<Publish>>>>,
}

/// The legs started by one publish.
struct Publish {
    stop: CancellationToken,
}

impl Push {
    /// The module; legs register in `clients`.
    pub fn new(clients: Arc<Clients>) -> Self {
        Push { clients, publishes: Arc::default() }
    }
}

impl Module for Push {
    fn name(&self) -> &'static str {
        "relay push"
    }

    fn on_publish(&self, ctx: &PublishCtx<'_>) {
        let redirect = ctx.source.push_to.map(|url| RelayTarget { url: url.to_owned(), ..RelayTarget::default() });
        let targets: Vec<_> =
            ctx.source.app.relay.push.iter().filter(|t| t.matches(ctx.source.name)).chain(redirect.as_ref()).collect();
        if targets.is_empty() {
            return;
        }
        let vars = Vars { name: ctx.source.name, app: &ctx.source.app.name, args: ctx.source.args };
        let mut legs = Vec::new();
        for target in targets {
            match url::plan(target, &vars) {
                Ok(plan) => legs.push(plan),
                // A `$args` that makes the URL too long or invalid: this target is skipped.
                Err(e) => tracing::warn!(
                    app = %ctx.source.app.name,
                    stream = %untrusted::for_log(ctx.source.name),
                    url = %url::parse(&target.url).map_or_else(|_| "(as configured)".into(), |u| log_url(&u)),
                    "relay push: target skipped: {e}"
                ),
            }
        }
        let publish = Arc::new(Publish { stop: CancellationToken::new() });
        // Legs of an earlier publish of this stream stop, whether or not this one has any.
        let old = match legs.is_empty() {
            true => lock(&self.publishes).remove(&ctx.stream.key),
            false => lock(&self.publishes).insert(ctx.stream.key.clone(), publish.clone()),
        };
        if let Some(old) = old {
            old.stop.cancel();
        }
        let remaining = Arc::new(std::sync::atomic::AtomicUsize::new(legs.len()));
        for plan in legs {
            // Subscribed now, before the first frame of this publish.
            let (_, sub) = ctx.stream.subscribe();
            let leg = Leg {
                app: ctx.source.app.clone(),
                name: ctx.source.name.to_owned(),
                plan,
                clients: self.clients.clone(),
                stop: publish.stop.clone(),
                state: RelayState::default(),
                srv: ctx.source.srv,
            };
            let (publishes, publish, remaining) = (self.publishes.clone(), publish.clone(), remaining.clone());
            tokio::spawn(async move {
                let key = sub.stream().key.clone();
                leg.run(sub).await;
                // The last leg of this publish forgets it, unless a newer publish replaced it.
                if remaining.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
                    let mut map = lock(&publishes);
                    if map.get(&key).is_some_and(|p| Arc::ptr_eq(p, &publish)) {
                        map.remove(&key);
                    }
                }
            });
        }
    }
}

/// How one connection of a leg ended.
enum End {
    /// The publisher left (or a newer publish took over): the leg stops.
    Unpublished,
    /// The remote failed or control dropped the leg: try again later.
    Failed(String),
}

/// One push target of one published stream.
struct Leg {
    app: Arc<AppConf>,
    name: String,
    plan: Plan,
    clients: Arc<Clients>,
    stop: CancellationToken,
    state: RelayState,
    /// The `server {}` block of the publish (control's `srv`).
    srv: usize,
}

impl Leg {
    async fn run(mut self, mut sub: Subscriber) {
        self.state.url = log_url(&self.plan.url);
        let addr = self.resolve().await;
        let opts = Options {
            tls_verify: self.app.relay.tls_verify,
            buffer: self.app.relay.buffer,
            max_message: REPLY_MAX_MESSAGE,
        };
        let mut registered: Option<ClientHandle> = None;
        loop {
            // One registry entry for the leg's life; a new one after control dropped it.
            if registered.as_ref().is_none_or(ClientHandle::is_dropped) {
                drop(registered.take());
                registered = self.register(addr);
            }
            let Some(handle) = &registered else {
                // The registry is full (it logged so): the leg waits like after a failure.
                if self.pause(&mut sub).await {
                    return;
                }
                continue;
            };
            let end = self.attempt(&mut sub, handle, &opts).await;
            match end {
                End::Unpublished => {
                    tracing::info!(
                        app = %self.app.name,
                        stream = %untrusted::for_log(&self.name),
                        url = %self.state.url,
                        "relay push: stopped, the publisher left"
                    );
                    return;
                }
                End::Failed(error) => {
                    tracing::warn!(
                        app = %self.app.name,
                        stream = %untrusted::for_log(&self.name),
                        url = %self.state.url,
                        error = %error,
                        retry_in = ?self.app.relay.push_reconnect,
                        "relay push: failed"
                    );
                    self.state.connected = false;
                    self.state.last_error = Some(error);
                    let state = self.state.clone();
                    handle.update_relay(|s| *s = state);
                }
            }
            if self.pause(&mut sub).await {
                return;
            }
            self.state.reconnects += 1;
            crate::metrics::relay_reconnect(&self.app.name, "push");
        }
    }

    /// The remote's address for the registry (unspecified when DNS does not answer now).
    async fn resolve(&self) -> SocketAddr {
        let (host, port) = (self.plan.url.host.as_str(), self.plan.url.port);
        let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await;
        found.ok().and_then(Result::ok).and_then(|mut addrs| addrs.next()).unwrap_or(([0, 0, 0, 0], port).into())
    }

    fn register(&self, addr: SocketAddr) -> Option<ClientHandle> {
        let handle = self.clients.register(addr, Kind::Relay, self.srv)?;
        handle.set_app(&self.app.name);
        handle.set_stream(&self.name, Role::Player);
        let state = self.state.clone();
        handle.update_relay(|s| *s = state);
        Some(handle)
    }

    /// Waits `push_reconnect`, watching for the end of the publish; `true` when it ended.
    async fn pause(&self, sub: &mut Subscriber) -> bool {
        let wait = tokio::time::sleep(self.app.relay.push_reconnect);
        tokio::select! {
            () = wait => false,
            _ = until_unpublished(sub, &self.stop) => true,
        }
    }

    /// One connection: connect and publish (watching for the end of the publish), then send.
    async fn attempt(&mut self, sub: &mut Subscriber, handle: &ClientHandle, opts: &Options) -> End {
        let connecting = async {
            let mut conn = RelayConn::connect(&self.plan, Direction::Publish, opts).await?;
            conn.wait_started().await?;
            Ok::<_, ConnError>(conn)
        };
        let mut conn = tokio::select! {
            conn = connecting => match conn {
                Ok(conn) => conn,
                Err(e) => return End::Failed(e.to_string()),
            },
            end = until_unpublished(sub, &self.stop) => return end,
            () = handle.dropped() => return End::Failed("dropped by control".into()),
        };
        tracing::info!(
            app = %self.app.name,
            stream = %untrusted::for_log(&self.name),
            url = %self.state.url,
            remote_name = %untrusted::for_log(&mask_key(&self.plan.remote_name)),
            reconnects = self.state.reconnects,
            "relay push: publishing"
        );
        self.state.connected = true;
        handle.update_relay(|s| {
            s.connected = true;
            s.reconnects = self.state.reconnects;
        });
        handle.add_out(conn.bytes_out() as usize);
        let end = self.send(&mut conn, sub, handle).await;
        if matches!(end, End::Unpublished) {
            conn.close().await;
        }
        end
    }

    /// Sends the stream until the publish ends or the remote fails.
    async fn send(&self, conn: &mut RelayConn, sub: &mut Subscriber, handle: &ClientHandle) -> End {
        let mut gate = PlayerGate::new(&LiveConf { wait_key: true, wait_video: false, ..self.app.live.clone() });
        // What a new player gets first: metadata, sequence headers, the GOP so far. Frames
        // queued in the ring meanwhile (while connecting) are passed over.
        loop {
            let batch = sub.try_batch(BATCH);
            if batch.entries.iter().any(|e| matches!(e, Entry::Unpublished)) {
                return End::Unpublished;
            }
            if batch.entries.is_empty() {
                break;
            }
        }
        let start = sub.stream().start_pack();
        let has_video = sub.stream().has_video();
        for frame in start.metadata.iter().chain(&start.video_header).chain(&start.audio_header).chain(&start.gop) {
            if gate.admit(frame, has_video) {
                conn.send_frame(frame);
            }
        }
        let (mut reported_in, mut lagged) = (0, false);
        loop {
            match conn.flush().await {
                Ok(n) => handle.add_out(n),
                Err(e) => return End::Failed(e.to_string()),
            }
            handle.add_in(conn_delta_in(conn, reported_in));
            reported_in = conn.bytes_in();
            tokio::select! {
                batch = sub.next_batch(BATCH) => {
                    if batch.skipped > 0 {
                        gate.restart();
                        if !lagged {
                            lagged = true;
                            tracing::warn!(
                                app = %self.app.name,
                                stream = %untrusted::for_log(&self.name),
                                url = %self.state.url,
                                skipped = batch.skipped,
                                "relay push: the remote is too slow, frames skipped to the next keyframe"
                            );
                        }
                    }
                    let has_video = sub.stream().has_video();
                    for entry in batch.entries {
                        match entry {
                            Entry::Frame(frame) => {
                                if gate.admit(&frame, has_video) {
                                    conn.send_frame(&frame);
                                }
                            }
                            Entry::Unpublished => return End::Unpublished,
                            Entry::Published => {}
                        }
                    }
                }
                events = conn.next_events() => match events {
                    Ok(events) => {
                        if let Some(refused) = events.iter().find_map(refusal) {
                            return End::Failed(refused);
                        }
                    }
                    Err(e) => return End::Failed(e.to_string()),
                },
                () = self.stop.cancelled() => return End::Unpublished,
                () = handle.dropped() => return End::Failed("dropped by control".into()),
            }
        }
    }
}

/// Bytes read from the remote since `reported`.
fn conn_delta_in(conn: &RelayConn, reported: u64) -> usize {
    conn.bytes_in().saturating_sub(reported) as usize
}

/// An error status from the remote after the publish started.
fn refusal(event: &rtmp::ClientEvent) -> Option<String> {
    match event {
        rtmp::ClientEvent::Status { level, code, description } if level == "error" => {
            Some(format!("remote error: {} {}", untrusted::for_log(code), untrusted::for_log(description)))
        }
        _ => None,
    }
}

/// Reads the subscriber (discarding media) until the publish ends.
async fn until_unpublished(sub: &mut Subscriber, stop: &CancellationToken) -> End {
    loop {
        tokio::select! {
            batch = sub.next_batch(BATCH) => {
                if batch.entries.iter().any(|e| matches!(e, Entry::Unpublished)) {
                    return End::Unpublished;
                }
            }
            () = stop.cancelled() => return End::Unpublished,
        }
    }
}

/// The target as logged: scheme, host, port, app, and the remote name with a stream key
/// masked and secrets in its query redacted.
pub fn log_url(u: &url::RelayUrl) -> String {
    let (path, query) = u.play_path.split_once('?').unwrap_or((&u.play_path, ""));
    let mut out = format!("{}://{}:{}/{}", u.scheme(), u.host_for_url(), u.port, u.app);
    if !path.is_empty() {
        out.push('/');
        out.push_str(&mask_key(path));
    }
    if !query.is_empty() {
        out.push('?');
        out.push_str(&untrusted::redact_query(query));
    }
    untrusted::for_log(&out).into_owned()
}

/// A stream key as logged: names up to 8 bytes whole, longer ones cut to 4 and `***` (keys
/// of YouTube, Twitch and Facebook are long; local stream names are mostly short).
fn mask_key(name: &str) -> String {
    let (name, query) = name.split_once('?').unwrap_or((name, ""));
    let mut out = match name.len() {
        0..=8 => name.to_owned(),
        _ => format!("{}***", name.chars().take(4).collect::<String>()),
    };
    if !query.is_empty() {
        out.push('?');
        out.push_str(&untrusted::redact_query(query));
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_of(text: &str) -> url::RelayUrl {
        url::parse(text).unwrap()
    }

    async fn until(clients: &Clients, ok: impl Fn(&[crate::clients::ClientSnapshot]) -> bool) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if ok(&clients.list()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// A leg whose target refuses shows in the registry, retries every push_reconnect, and
    /// leaves when the publisher does.
    #[tokio::test]
    async fn a_failing_leg_is_registered_retries_and_stops_with_its_publisher() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let app = crate::config::test_app(&format!(
            "live on; push rtmp://127.0.0.1:{port}/live; push rtmp://127.0.0.1:{port}/other name=else; push_reconnect 50ms;"
        ));
        let clients = Arc::new(Clients::default());
        let modules: Vec<Arc<dyn Module>> = vec![Arc::new(Push::new(clients.clone()))];
        let streams = crate::streams::Streams::new(crate::hub::Hub::new(), modules.into(), Default::default());
        let source = crate::streams::Source { app: &app, name: "cam", args: "", client: None, push_to: None, srv: 0 };
        let opts = crate::hub::StreamOptions { ring_len: 16, gop_cache: true };
        let published = streams.publish(&source, opts).unwrap();
        let retried = |l: &[crate::clients::ClientSnapshot]| {
            l.iter().any(|c| c.relay.as_ref().is_some_and(|r| r.reconnects >= 2 && r.last_error.is_some()))
        };
        assert!(until(&clients, retried).await, "{:?}", clients.list());
        let list = clients.list();
        assert_eq!(list.len(), 1, "name=else does not match cam: {list:?}");
        let c = &list[0];
        assert_eq!((c.kind, c.role, c.app.as_str(), c.name.as_str()), (Kind::Relay, Role::Player, "live", "cam"));
        assert_eq!(c.addr, SocketAddr::from(([127, 0, 0, 1], port)));
        let relay = c.relay.clone().unwrap();
        assert!(!relay.connected);
        assert_eq!(relay.url, format!("rtmp://127.0.0.1:{port}/live"));
        assert!(relay.last_error.unwrap().contains("refused"));
        drop(published);
        assert!(until(&clients, |l| l.is_empty()).await, "the leg left with its publisher: {:?}", clients.list());
        assert!(streams.hub.is_empty(), "and released the stream");
    }

    #[test]
    fn logged_urls_hide_keys_and_secrets() {
        assert_eq!(log_url(&url_of("rtmp://h/live")), "rtmp://h:1935/live");
        assert_eq!(log_url(&url_of("rtmp://h/live/cam")), "rtmp://h:1935/live/cam");
        assert_eq!(
            log_url(&url_of("rtmps://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop")),
            "rtmps://a.rtmp.youtube.com:443/live2/abcd***"
        );
        assert_eq!(
            log_url(&url_of("rtmp://[::1]:1940/app/cam?token=s3cret&x=1")),
            "rtmp://[::1]:1940/app/cam?token=***&x=1"
        );
        assert_eq!(mask_key("live_123456789?key=k"), "live***?key=***");
    }
}

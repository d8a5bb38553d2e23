//! Who may connect, publish and play: the one access policy of every source (the RTMP
//! connection; later relay pulls, HTTP-FLV and exec players, which have no RTMP connection).
//!
//! Each decision is an async function over plain data ([`Ask`]: who, which application, which
//! name, which query), in nginx-rtmp's order: the stream name's check
//! ([`untrusted::stream_name`]), `allow`/`deny` rules ([`crate::access`]), signed keys and
//! publish keys ([`crate::auth`]), then the callback ([`crate::notify`], with nginx-rtmp's
//! reply rules). Every decision is counted and logged here, once; a [`Refused`] carries the
//! reason, the text for the client and the detail for the log, and the caller only tells its
//! client. A caller that must keep serving while a callback decides (the RTMP connection)
//! holds the future and polls it among its other work.
//!
//! | call | when | may refuse |
//! |---|---|---|
//! | [`connect`] | an RTMP `connect` (`on_connect`) | yes; a 3xx names another application |
//! | [`publish`] | before a stream is claimed (rules, keys, `on_publish`) | yes; 3xx renames, 3xx `rtmp://` is [`Admit::Relay`] |
//! | [`play`] | before a stream is played (rules, keys, `on_play`) | yes; 3xx renames, 3xx `rtmp://` is [`Admit::Relay`] |
//! | [`update`] | every `notify_update_timeout` while publishing or playing (`on_update`) | 4xx/5xx; any failure with `notify_update_strict on` |
//! | [`done`] | a stream ended, a client left (`on_publish_done`, `on_play_done`, `on_done`, `on_disconnect`) | no: fire-and-forget |

use std::net::SocketAddr;
use std::sync::Arc;

use md5::{Digest, Md5};

use crate::access::{self, Counters, Refusal, RuleVerdict, Stage};
use crate::auth::{self, AuthOk};
use crate::cluster::Claim;
use crate::config::{Action, AppConf, NotifyConf};
use crate::events::ClientInfo;
use crate::notify::{self, Call, CallError, Notifier, Reply};
use crate::server::ServerCtx;
use crate::untrusted::{self, for_log};

/// What decisions need from the server: the callback client and the decision counters.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Makes the callbacks.
    pub notifier: &'a Arc<Notifier>,
    /// Counts every decision.
    pub counters: &'a Counters,
    /// Whether the caller can start a relay when `on_publish`/`on_play` answers with an
    /// `rtmp://` location ([`Admit::Relay`]); when it cannot, such an answer refuses.
    pub relays: bool,
    /// The server block's applications now (a reload may have removed the client's).
    pub apps_now: Option<&'a crate::server::AppsNow>,
    /// The cluster's stream directory: a publish is refused when another node has the stream.
    pub directory: Option<&'a Arc<crate::cluster::Directory>>,
    /// The server block's index (whose `cluster_address` a claim registers).
    pub srv: usize,
}

impl<'a> Policy<'a> {
    /// The policy of one `server {}` block.
    pub fn of(ctx: &'a ServerCtx) -> Self {
        Policy {
            notifier: &ctx.notifier,
            counters: &ctx.access,
            relays: true,
            apps_now: Some(&ctx.apps_now),
            directory: ctx.streams.directory(),
            srv: ctx.index,
        }
    }
}

/// A refusal, already counted and logged: tell the client `text` and close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// What was refused.
    pub stage: Stage,
    /// Why, as counted; `None` for refusals no counter covers (no such application, a bad
    /// stream name).
    pub reason: Option<Refusal>,
    /// What the client is told (never the callback's URL).
    pub text: String,
    /// What the log said.
    pub detail: String,
}

/// An accepted `connect`.
#[derive(Debug, Clone)]
pub struct ConnectOk {
    /// The application the client is in (`on_connect` may have named another one).
    pub app: Arc<AppConf>,
    /// The client, with `app` set to that application.
    pub client: ClientInfo,
}

/// An accepted publish or play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Publish or play the local stream `name`: the asked one, or the one a callback's 3xx
    /// `Location` named (checked like an asked one).
    Local {
        /// The stream name to use.
        name: String,
    },
    /// The callback answered 3xx with `Location: rtmp://...`: nginx-rtmp pushes the published
    /// stream there (`on_publish`) or pulls the played one from there (`on_play`). Only
    /// returned when [`Policy::relays`] is set.
    Relay {
        /// The `Location`, as the callback sent it.
        url: String,
        /// The local stream: the asked name, or with `notify_relay_redirect on` the 32 hex
        /// digits of the location's MD5 ([`relay_local_name`]).
        local_name: String,
    },
}

/// A publish, play or update asked for.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// Who asks.
    pub client: &'a ClientInfo,
    /// In which application.
    pub app: &'a AppConf,
    /// The query that came with the application at connect (may carry keys).
    pub app_args: &'a str,
    /// The stream name as asked, without its query.
    pub name: &'a str,
    /// The stream name's query.
    pub args: &'a str,
}

/// What `play` asked besides the name, as nginx-rtmp's `on_play` reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayArgs {
    /// Start (ms); 0 when not given.
    pub start: f64,
    /// Duration (ms); 0 when not given.
    pub duration: f64,
    /// The `reset` flag.
    pub reset: bool,
}

/// Something that ended, for [`done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended<'a> {
    /// A publish ended: `on_publish_done`, then `on_done`. The name and query as asked.
    Publish {
        /// The stream name as asked.
        name: &'a str,
        /// Its query.
        args: &'a str,
    },
    /// A play ended: `on_play_done`, then `on_done`.
    Play {
        /// The stream name as asked.
        name: &'a str,
        /// Its query.
        args: &'a str,
    },
    /// The client left (`on_disconnect`, for every client that got as far as `connect`).
    Disconnect {
        /// The query that came with the application at connect.
        app_args: &'a str,
    },
}

/// `max_connections` clients are connected: refuse a `connect` of `app` from `addr`.
pub fn too_many(p: &Policy<'_>, addr: SocketAddr, app: &str, max: usize) -> Refused {
    let detail = format!("{max} clients connected (max_connections)");
    let by = By { addr, app, stream: "", stage: Stage::Connect };
    refuse(p, &by, Some(Refusal::MaxConnections), "Too many connections.".into(), detail)
}

/// The application `client` connects to, or a refusal when the server has none of that name.
pub fn application(p: &Policy<'_>, apps: &[Arc<AppConf>], client: &ClientInfo) -> Result<Arc<AppConf>, Refused> {
    if let Some(app) = apps.iter().find(|a| a.name == client.app) {
        return Ok(app.clone());
    }
    let by = By { addr: client.addr, app: &client.app, stream: "", stage: Stage::Connect };
    let text = format!("application \"{}\" not found", for_log(&client.app));
    Err(refuse(p, &by, None, text, "no such application".into()))
}

/// `connect` to `app` (found by [`application`]): `on_connect`, whose 3xx `Location` names
/// another of `apps`. `epoch` is the session's (ms), `app_args` the application's query.
pub async fn connect(
    p: &Policy<'_>,
    apps: &[Arc<AppConf>],
    app: Arc<AppConf>,
    mut client: ClientInfo,
    app_args: &str,
    epoch: u32,
) -> Result<ConnectOk, Refused> {
    let Some(url) = &app.notify.on_connect else { return Ok(connected(p, app, client)) };
    let form = notify::connect_form(&client, epoch, app_args);
    let call = Call::new(&app.notify, "connect", url, form);
    let reply = callback(p, client.addr, &app.name, call).await;
    let url = notify::log_url(url);
    let redirect = match &reply {
        Ok(Reply::Redirect(to)) => apps.iter().find(|a| &a.name == to).cloned(),
        _ => None,
    };
    match (reply, redirect) {
        (Ok(Reply::Allow), _) => {
            tracing::info!(client = %client.addr, app = %app.name, url = %url, "connect allowed by on_connect");
            Ok(connected(p, app, client))
        }
        // nginx-rtmp: a redirected connect goes to the application `Location` names.
        (Ok(Reply::Redirect(to)), Some(target)) => {
            tracing::info!(client = %client.addr, app = %app.name, url = %url, "connect redirected by on_connect to application \"{to}\"");
            client.app = to;
            Ok(connected(p, target, client))
        }
        (other, _) => {
            let by = By { addr: client.addr, app: &app.name, stream: "", stage: Stage::Connect };
            Err(refuse_by_callback(p, &by, &url, other))
        }
    }
}

/// Publish `ask` (of `kind`: `live`, `record`, `append`): the name, rules, keys, then
/// `on_publish`, then (in a cluster application) the stream directory's claim of the final name.
pub async fn publish(p: &Policy<'_>, ask: &Ask<'_>, kind: &str) -> Result<Admit, Refused> {
    let stage = Stage::Publish;
    check_app_now(p, ask, stage)?;
    check_name(p, ask, stage, ask.name)?;
    check_access(p, ask, Action::Publish)?;
    let admit = match &ask.app.notify.on_publish {
        None => Admit::Local { name: ask.name.to_owned() },
        Some(url) => {
            let form = notify::publish_form(ask.client, ask.name, kind, ask.args);
            let reply = callback(p, ask.client.addr, &ask.app.name, Call::new(&ask.app.notify, "publish", url, form));
            stream_reply(p, ask, stage, url, reply.await)?
        }
    };
    let name = match &admit {
        Admit::Local { name } => name,
        Admit::Relay { local_name, .. } => local_name,
    };
    check_cluster(p, ask, name).await?;
    p.counters.accept(stage);
    Ok(admit)
}

/// Cluster-wide unique publish: the stream directory's key for `name` is taken for this node
/// before the stream is claimed here, unless another node has it (refused like a local
/// duplicate). Redis unreachable: allowed with a warning (availability first; the heartbeat
/// registers the stream when Redis is back).
async fn check_cluster(p: &Policy<'_>, ask: &Ask<'_>, name: &str) -> Result<(), Refused> {
    let Some(directory) = p.directory.filter(|_| ask.app.cluster) else { return Ok(()) };
    match directory.claim(&ask.app.name, name, p.srv).await {
        Claim::Ours | Claim::NotInCluster => Ok(()),
        Claim::Taken(origin) => {
            let by = By { addr: ask.client.addr, app: &ask.app.name, stream: name, stage: Stage::Publish };
            let text = format!("Stream {name} is already live on another origin: {origin}");
            Err(refuse(p, &by, None, text, format!("cluster: the stream is live on another origin ({origin})")))
        }
        Claim::Unreachable(e) => {
            tracing::warn!(client = %ask.client.addr, app = %ask.app.name, stream = %name, "cluster: the stream directory is unreachable ({e}): publish allowed, registered when it is back");
            Ok(())
        }
    }
}

/// Play `ask`: the name, rules, keys, then `on_play`.
pub async fn play(p: &Policy<'_>, ask: &Ask<'_>, args: PlayArgs) -> Result<Admit, Refused> {
    let stage = Stage::Play;
    check_app_now(p, ask, stage)?;
    check_name(p, ask, stage, ask.name)?;
    check_access(p, ask, Action::Play)?;
    let admit = match &ask.app.notify.on_play {
        None => Admit::Local { name: ask.name.to_owned() },
        Some(url) => {
            let PlayArgs { start, duration, reset } = args;
            let form = notify::play_form(ask.client, ask.name, start, duration, reset, ask.args);
            let reply = callback(p, ask.client.addr, &ask.app.name, Call::new(&ask.app.notify, "play", url, form));
            stream_reply(p, ask, stage, url, reply.await)?
        }
    };
    p.counters.accept(stage);
    Ok(admit)
}

/// One `on_update` call for `ask` (the stream as asked): `time` seconds since it started,
/// `timestamp` the last media timestamp (ms). `Err` means drop the client: nginx-rtmp's rule
/// is a 4xx/5xx answer, and with `notify_update_strict on` any other failure (3xx, timeout,
/// no connection). Without `on_update` it allows.
pub async fn update(p: &Policy<'_>, ask: &Ask<'_>, publishing: bool, time: u64, timestamp: u32) -> Result<(), Refused> {
    let Some(url) = &ask.app.notify.on_update else { return Ok(()) };
    let n = &ask.app.notify;
    let form = notify::update_form(ask.client, publishing, time, timestamp, ask.name, ask.args);
    let call = Call::new(n, "update", url, form);
    let url = notify::log_url(url);
    tracing::debug!(client = %ask.client.addr, app = %ask.app.name, stream = %ask.name, url = %url, "notify update");
    let reply = p.notifier.call(&call).await;
    let strict = n.update_strict;
    let failure = match &reply {
        Ok(Reply::Allow) => None,
        Ok(Reply::Refuse(status)) => Some((Refusal::CallbackStatus, format!("answered {status}"), true)),
        Ok(other) => Some((Refusal::CallbackStatus, format!("answered a redirect ({other:?})"), strict)),
        Err(e @ CallError::Timeout(_)) => Some((Refusal::CallbackTimeout, e.to_string(), strict)),
        Err(e @ CallError::Unreachable(_)) => Some((Refusal::CallbackUnreachable, e.to_string(), strict)),
    };
    match failure {
        None => {
            p.counters.accept(Stage::Update);
            Ok(())
        }
        Some((reason, why, true)) => {
            let by = By { addr: ask.client.addr, app: &ask.app.name, stream: ask.name, stage: Stage::Update };
            Err(refuse(p, &by, Some(reason), why.clone(), format!("on_update {url} {why}")))
        }
        Some((_, why, false)) => {
            tracing::warn!(client = %ask.client.addr, app = %ask.app.name, stream = %ask.name, "on_update {url} failed: {why}; keeping the client (notify_update_strict off)");
            Ok(())
        }
    }
}

/// Report what ended (`on_publish_done`/`on_play_done`, `on_done`, `on_disconnect`) without
/// waiting: the calls go in the background, in the order given.
pub fn done(p: &Policy<'_>, client: &ClientInfo, app: &AppConf, ended: &[Ended<'_>]) {
    let calls = done_calls(&app.notify, client, ended);
    if !calls.is_empty() {
        p.notifier.spawn_all(calls, client.addr.to_string());
    }
}

/// The calls that report `ended`, in order.
fn done_calls(n: &NotifyConf, client: &ClientInfo, ended: &[Ended<'_>]) -> Vec<Call> {
    let mut calls = Vec::new();
    for e in ended {
        let (first, name, args) = match *e {
            Ended::Publish { name, args } => (("publish_done", &n.on_publish_done), name, args),
            Ended::Play { name, args } => (("play_done", &n.on_play_done), name, args),
            Ended::Disconnect { app_args } => {
                if let Some(url) = &n.on_disconnect {
                    let form = notify::disconnect_form(client, app_args);
                    calls.push(Call::new(n, "disconnect", url, form));
                }
                continue;
            }
        };
        for (call, url) in [first, ("done", &n.on_done)] {
            if let Some(url) = url {
                calls.push(Call::new(n, call, url, notify::done_form(client, call, name, args)));
            }
        }
    }
    calls
}

/// The local name of a stream relayed to or from `location` (nginx-rtmp's
/// `ngx_rtmp_notify_set_name`): with `notify_relay_redirect on`, the lower-case hex MD5 of the
/// location; off, the name asked for.
pub fn relay_local_name(conf: &NotifyConf, location: &str, asked: &str) -> String {
    if !conf.relay_redirect {
        return asked.to_owned();
    }
    Md5::digest(location.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A redirect's `Location` as a stream name: a query it carries is not part of the name.
fn redirect_name(location: &str) -> String {
    location.split_once('?').map_or(location, |(name, _)| name).to_owned()
}

/// Who a decision is about, for its log line.
struct By<'a> {
    addr: SocketAddr,
    app: &'a str,
    stream: &'a str,
    stage: Stage,
}

/// The one place a refusal is counted and logged.
fn refuse(p: &Policy<'_>, by: &By<'_>, reason: Option<Refusal>, text: String, detail: String) -> Refused {
    let (app, stream, stage) = (for_log(by.app), for_log(by.stream), by.stage.as_str());
    match reason {
        Some(r) => {
            p.counters.refuse(r);
            tracing::info!(client = %by.addr, app = %app, stream = %stream, reason = %r.as_str(), "{stage} refused: {detail}");
        }
        None => tracing::info!(client = %by.addr, app = %app, stream = %stream, "{stage} refused: {detail}"),
    }
    Refused { stage: by.stage, reason, text, detail }
}

/// The one check of a stream name before it is used (hub key, file names of outputs). A play
/// in an application with `play` may name a file in a subdirectory ([`untrusted::vod_name`]);
/// should no file be found, the live path checks the name again as a stream name.
fn check_name(p: &Policy<'_>, ask: &Ask<'_>, stage: Stage, name: &str) -> Result<(), Refused> {
    let checked = match stage {
        Stage::Play if ask.app.play.enabled() => untrusted::vod_name(name).map(|_| ()),
        _ => untrusted::stream_name(name).map(|_| ()),
    };
    let Err(e) = checked else { return Ok(()) };
    let by = By { addr: ask.client.addr, app: &ask.app.name, stream: name, stage };
    Err(refuse(p, &by, None, format!("Bad stream name: {e}."), e.to_string()))
}

/// The client's application is still configured: a reload may have removed it since the
/// client connected.
fn check_app_now(p: &Policy<'_>, ask: &Ask<'_>, stage: Stage) -> Result<(), Refused> {
    if p.apps_now.is_none_or(|apps| apps.contains(&ask.app.name)) {
        return Ok(());
    }
    let by = By { addr: ask.client.addr, app: &ask.app.name, stream: ask.name, stage };
    let text = format!("application \"{}\" not found", for_log(&ask.app.name));
    Err(refuse(p, &by, None, text, "the application was removed by a reload".into()))
}

/// `allow`/`deny` rules, then signed keys and publish keys.
fn check_access(p: &Policy<'_>, ask: &Ask<'_>, action: Action) -> Result<(), Refused> {
    let (addr, app, name) = (ask.client.addr, &ask.app.name, ask.name);
    let by = By { addr, app, stream: name, stage: action.into() };
    match access::check_rules(&ask.app.access.rules, action, addr.ip()) {
        RuleVerdict::Denied(rule) => {
            let why = format!("denied by rule \"{}\" (line {})", rule.text, rule.line);
            return Err(refuse(p, &by, Some(Refusal::Rule), why.clone(), why));
        }
        RuleVerdict::Allowed(rule) => {
            tracing::info!(client = %addr, app = %app, stream = %name, rule = %rule.text, line = rule.line, "{} allowed by rule", action.as_str());
        }
        RuleVerdict::NoMatch => {}
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    match auth::authorize(&ask.app.access, action, app, name, ask.args, ask.app_args, now) {
        Ok(AuthOk::NotRequired) => Ok(()),
        Ok(how) => {
            let by = if how == AuthOk::Token { "signed token" } else { "publish key" };
            tracing::info!(client = %addr, app = %app, stream = %name, "{} allowed by {by}", action.as_str());
            Ok(())
        }
        Err(e) => {
            let reason = if e.is_token() { Refusal::Token } else { Refusal::PublishKey };
            Err(refuse(p, &by, Some(reason), e.to_string(), e.to_string()))
        }
    }
}

/// Make a callback the decision waits for.
async fn callback(p: &Policy<'_>, addr: SocketAddr, app: &str, call: Call) -> Result<Reply, CallError> {
    tracing::debug!(client = %addr, app = %app, url = %notify::log_url(&call.url), "notify {}: waiting", call.call);
    p.notifier.call(&call).await
}

/// `on_publish`/`on_play`'s answer: allow, rename, relay or refuse.
fn stream_reply(
    p: &Policy<'_>,
    ask: &Ask<'_>,
    stage: Stage,
    url: &str,
    reply: Result<Reply, CallError>,
) -> Result<Admit, Refused> {
    let (addr, app, name, what) = (ask.client.addr, &ask.app.name, ask.name, stage.as_str());
    let url = notify::log_url(url);
    match reply {
        Ok(Reply::Allow) => {
            tracing::info!(client = %addr, app = %app, stream = %name, url = %url, "{what} allowed by on_{what}");
            Ok(Admit::Local { name: name.to_owned() })
        }
        Ok(Reply::Redirect(to)) => {
            let to = redirect_name(&to);
            let how = if stage == Stage::Publish { "renamed" } else { "redirected" };
            tracing::info!(client = %addr, app = %app, stream = %name, url = %url, "{what} {how} by on_{what} to \"{}\"", for_log(&to));
            check_name(p, ask, stage, &to)?;
            Ok(Admit::Local { name: to })
        }
        Ok(Reply::Relay(to)) if p.relays => {
            let local_name = relay_local_name(&ask.app.notify, &to, name);
            tracing::info!(client = %addr, app = %app, stream = %name, url = %url, "{what} relayed by on_{what} to {} as \"{local_name}\"", notify::log_url(&to));
            Ok(Admit::Relay { url: to, local_name })
        }
        other => Err(refuse_by_callback(p, &By { addr, app, stream: name, stage }, &url, other)),
    }
}

/// Refuse because the callback said no or could not be asked.
fn refuse_by_callback(p: &Policy<'_>, by: &By<'_>, url: &str, reply: Result<Reply, CallError>) -> Refused {
    let call = format!("on_{}", by.stage.as_str());
    // What went wrong, without the callback's URL (the log has it; clients need not).
    let (reason, what) = match &reply {
        Ok(Reply::Refuse(status)) => (Refusal::CallbackStatus, format!("answered {status}")),
        Ok(Reply::Relay(to)) => {
            (Refusal::CallbackRelay, format!("redirected to {to}: relays (pull/push) are not implemented yet"))
        }
        Ok(Reply::Redirect(to)) => (Refusal::CallbackRedirect, format!("redirected to unknown \"{to}\"")),
        Ok(Reply::Allow) => (Refusal::CallbackStatus, "unexpected reply".to_owned()),
        Err(CallError::Timeout(t)) => (Refusal::CallbackTimeout, format!("no reply within {t:?} (notify_timeout)")),
        Err(CallError::Unreachable(_)) => (Refusal::CallbackUnreachable, "callback server unreachable".to_owned()),
    };
    let detail = match &reply {
        Err(e @ CallError::Unreachable(_)) => e.to_string(),
        _ => what.clone(),
    };
    // Before the connect is accepted the client still reads 128-byte chunks while the session
    // writes `chunk_size` ones: the reply must fit one small chunk.
    let text = if by.stage == Stage::Connect { "Rejected by on_connect.".to_owned() } else { format!("{call} {what}") };
    refuse(p, by, Some(reason), text, format!("{call} {url} {detail}"))
}

/// An accepted `connect`: counted and logged.
fn connected(p: &Policy<'_>, app: Arc<AppConf>, client: ClientInfo) -> ConnectOk {
    tracing::info!(client = %client.addr, app = %app.name, tc_url = %for_log(&client.tc_url), flash_ver = %for_log(&client.flash_ver), "connect");
    p.counters.accept(Stage::Connect);
    ConnectOk { app, client }
}

#[cfg(test)]
mod tests {
    //! The policy driven with no connection at all: plain data in, decisions out, callbacks
    //! answered by a small HTTP server.

    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::config::{test_app, Config};

    fn client() -> ClientInfo {
        ClientInfo {
            id: 7,
            addr: "127.0.0.1:50000".parse().unwrap(),
            app: "live".into(),
            flash_ver: "FMLE/3.0".into(),
            swf_url: String::new(),
            tc_url: "rtmp://127.0.0.1/live".into(),
            page_url: String::new(),
        }
    }

    /// The server's shared parts a policy borrows.
    struct Server {
        notifier: Arc<Notifier>,
        counters: Counters,
    }

    impl Server {
        fn new() -> Self {
            Server { notifier: Arc::new(Notifier::default()), counters: Counters::default() }
        }

        fn policy(&self, relays: bool) -> Policy<'_> {
            Policy {
                notifier: &self.notifier,
                counters: &self.counters,
                relays,
                apps_now: None,
                directory: None,
                srv: 0,
            }
        }
    }

    /// A callback server answering every request with `status` (and `Location: location`);
    /// it keeps each request's text.
    struct Backend {
        url: String,
        requests: Arc<Mutex<Vec<String>>>,
    }

    impl Backend {
        async fn start(status: u16, location: Option<&str>) -> Backend {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/cb", listener.local_addr().unwrap());
            let requests = Arc::new(Mutex::new(Vec::new()));
            let seen = requests.clone();
            let location = location.map_or(String::new(), |l| format!("Location: {l}\r\n"));
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let text = read_request(&mut socket).await;
                    seen.lock().unwrap().push(text);
                    let reply =
                        format!("HTTP/1.1 {status} X\r\n{location}Content-Length: 0\r\nConnection: close\r\n\r\n");
                    let _ = socket.write_all(reply.as_bytes()).await;
                }
            });
            Backend { url, requests }
        }

        fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }
    }

    /// Head and body of one request (the body by its `Content-Length`).
    async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = socket.read(&mut chunk).await {
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    return text;
                }
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// The applications (`live`, `other`) of a one-server configuration with `server` as its
    /// server-level directives (`on_connect`, `on_disconnect`).
    fn apps(server: &str) -> Vec<Arc<AppConf>> {
        let text = format!("rtmp {{ server {{ {server} application live {{ live on; }} application other {{ }} }} }}");
        Config::parse(&text, "t").unwrap().servers.remove(0).apps.into_iter().map(Arc::new).collect()
    }

    fn ask<'a>(client: &'a ClientInfo, app: &'a AppConf, name: &'a str, args: &'a str) -> Ask<'a> {
        Ask { client, app, app_args: "", name, args }
    }

    const PLAY: PlayArgs = PlayArgs { start: 0.0, duration: 0.0, reset: false };

    #[tokio::test(flavor = "current_thread")]
    async fn rules_refuse_before_keys_and_callbacks() {
        let backend = Backend::start(200, None).await;
        let app = test_app(&format!("live on; deny publish all; auth_secret s3cret; on_publish {};", backend.url));
        let s = Server::new();
        let c = client();
        let refused = publish(&s.policy(false), &ask(&c, &app, "cam", ""), "live").await.unwrap_err();
        assert_eq!(refused.stage, Stage::Publish);
        assert_eq!(refused.reason, Some(Refusal::Rule));
        assert!(refused.text.starts_with("denied by rule \"deny publish all\""), "{}", refused.text);
        assert_eq!(s.counters.snapshot().refused(Refusal::Rule), 1);
        assert_eq!(s.counters.snapshot().accepted(Stage::Publish), 0);
        assert!(backend.requests().is_empty(), "the callback is not asked after a rule refused");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_signed_key_allows_and_its_absence_refuses() {
        let app = test_app("live on; auth_secret s3cret;");
        let s = Server::new();
        let c = client();
        let p = s.policy(false);
        let refused = publish(&p, &ask(&c, &app, "cam", ""), "live").await.unwrap_err();
        assert_eq!(refused.reason, Some(Refusal::Token));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let token = auth::token_query("s3cret", Action::Publish, "live", "cam", now + 60);
        let admit = publish(&p, &ask(&c, &app, "cam", &token), "live").await.unwrap();
        assert_eq!(admit, Admit::Local { name: "cam".into() });
        // Playing is not covered by `auth publish` (the default).
        assert_eq!(play(&p, &ask(&c, &app, "cam", ""), PLAY).await.unwrap(), Admit::Local { name: "cam".into() });
        let counts = s.counters.snapshot();
        assert_eq!(
            (counts.accepted(Stage::Publish), counts.accepted(Stage::Play), counts.refused(Refusal::Token)),
            (1, 1, 1)
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bad_names_are_refused_before_anything_else() {
        let app = test_app("live on; deny publish all;");
        let s = Server::new();
        let c = client();
        let refused = publish(&s.policy(false), &ask(&c, &app, "../etc", ""), "live").await.unwrap_err();
        assert_eq!(refused.reason, None);
        assert!(refused.text.starts_with("Bad stream name: "), "{}", refused.text);
        assert_eq!(s.counters.snapshot().refused(Refusal::Rule), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_publish_renames_and_callbacks_see_the_asked_name() {
        let backend = Backend::start(302, Some("renamed?ignored=1")).await;
        let app = test_app(&format!("live on; on_publish {};", backend.url));
        let s = Server::new();
        let c = client();
        let admit = publish(&s.policy(false), &ask(&c, &app, "orig", "k=v"), "live").await.unwrap();
        assert_eq!(admit, Admit::Local { name: "renamed".into() });
        let requests = backend.requests();
        assert_eq!(requests.len(), 1);
        assert!(requests[0].contains("call=publish&name=orig&type=live&k=v"), "{}", requests[0]);
        // A rename to a name that would become a path outside a directory is refused.
        let backend = Backend::start(302, Some("../x")).await;
        let app = test_app(&format!("live on; on_publish {};", backend.url));
        let refused = publish(&s.policy(false), &ask(&c, &app, "orig", ""), "live").await.unwrap_err();
        assert_eq!((refused.stage, refused.reason), (Stage::Publish, None));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_play_redirect_to_rtmp_is_a_relay_named_by_md5() {
        let location = "rtmp://origin.example/live/x";
        let backend = Backend::start(302, Some(location)).await;
        let s = Server::new();
        let c = client();
        // `notify_relay_redirect on`: the local stream is named by the location's MD5 (computed
        // with `printf %s rtmp://origin.example/live/x | md5sum`).
        let app = test_app(&format!("live on; on_play {}; notify_relay_redirect on;", backend.url));
        let admit = play(&s.policy(true), &ask(&c, &app, "x", ""), PLAY).await.unwrap();
        let md5 = "b2af26389bf3b414b81d4ae4f7743976";
        assert_eq!(admit, Admit::Relay { url: location.into(), local_name: md5.into() });
        // Off (the default): the asked name.
        let app = test_app(&format!("live on; on_play {};", backend.url));
        let admit = play(&s.policy(true), &ask(&c, &app, "x", ""), PLAY).await.unwrap();
        assert_eq!(admit, Admit::Relay { url: location.into(), local_name: "x".into() });
        assert_eq!(s.counters.snapshot().accepted(Stage::Play), 2);
        // A caller that cannot relay gets the refusal nginx-rtmp users saw so far.
        let refused = play(&s.policy(false), &ask(&c, &app, "x", ""), PLAY).await.unwrap_err();
        assert_eq!(refused.reason, Some(Refusal::CallbackRelay));
        assert_eq!(
            refused.text,
            format!("on_play redirected to {location}: relays (pull/push) are not implemented yet")
        );
        assert!(!refused.text.contains(&backend.url) && refused.detail.contains(&backend.url));
    }

    #[test]
    fn relay_names_are_the_md5_of_the_location_as_nginx_rtmp_names_them() {
        let on = NotifyConf { relay_redirect: true, ..Default::default() };
        // `printf %s 'rtmp://127.0.0.1/live/cam?k=1' | md5sum`: the whole location, query too.
        assert_eq!(relay_local_name(&on, "rtmp://127.0.0.1/live/cam?k=1", "cam"), "e2678bdb08f1d8d7b0ce7dddb5f04c37");
        assert_eq!(relay_local_name(&NotifyConf::default(), "rtmp://127.0.0.1/live/cam?k=1", "cam"), "cam");
        let name = relay_local_name(&on, "rtmp://h/a", "cam");
        assert!(name.len() == 32 && untrusted::stream_name(&name).is_ok(), "{name}");
    }

    #[test]
    fn notify_relay_redirect_is_parsed_and_not_reported_inert() {
        let text = "rtmp { notify_relay_redirect on; server { application a { } application b { notify_relay_redirect off; } } }";
        let c = Config::parse(text, "t").unwrap();
        let apps = &c.servers[0].apps;
        assert!(apps[0].notify.relay_redirect && !apps[1].notify.relay_redirect);
        assert!(c.inert.iter().all(|i| i.directive != "notify_relay_redirect"), "{:?}", c.inert);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn callbacks_refuse_with_nginx_rtmp_texts() {
        let backend = Backend::start(403, None).await;
        let app = test_app(&format!("live on; on_publish {};", backend.url));
        let s = Server::new();
        let c = client();
        let refused = publish(&s.policy(false), &ask(&c, &app, "cam", ""), "live").await.unwrap_err();
        assert_eq!(refused.reason, Some(Refusal::CallbackStatus));
        assert_eq!(refused.text, "on_publish answered 403");
        // Connect: a redirect to an application the server does not have refuses, and the client
        // is told only what fits one small chunk.
        let backend = Backend::start(302, Some("nowhere")).await;
        let apps = apps(&format!("on_connect {};", backend.url));
        let refused = connect(&s.policy(false), &apps, apps[0].clone(), c.clone(), "", 0).await.unwrap_err();
        assert_eq!(
            (refused.reason, refused.text.as_str()),
            (Some(Refusal::CallbackRedirect), "Rejected by on_connect.")
        );
        assert!(backend.requests()[0].contains("epoch=0&call=connect"), "{:?}", backend.requests());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_connect_moves_the_client_to_the_application_it_names() {
        let backend = Backend::start(302, Some("other")).await;
        let apps = apps(&format!("on_connect {};", backend.url));
        let s = Server::new();
        let p = s.policy(false);
        let app = application(&p, &apps, &client()).unwrap();
        let ok = connect(&p, &apps, app, client(), "", 0).await.unwrap();
        assert_eq!((ok.app.name.as_str(), ok.client.app.as_str()), ("other", "other"));
        let mut lost = client();
        lost.app = "nope".into();
        assert_eq!(application(&p, &apps, &lost).unwrap_err().text, "application \"nope\" not found");
        assert_eq!(s.counters.snapshot().accepted(Stage::Connect), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_update_drops_on_4xx_and_on_any_failure_only_when_strict() {
        let s = Server::new();
        let c = client();
        let refusing = Backend::start(403, None).await;
        let app = test_app(&format!("live on; on_update {};", refusing.url));
        let refused = update(&s.policy(false), &ask(&c, &app, "cam", ""), true, 30, 1000).await.unwrap_err();
        assert_eq!((refused.stage, refused.text.as_str()), (Stage::Update, "answered 403"));
        assert!(refusing.requests()[0].contains("call=update_publish&time=30&timestamp=1000&name=cam"));
        let redirecting = Backend::start(302, Some("x")).await;
        let app = test_app(&format!("live on; on_update {};", redirecting.url));
        assert!(update(&s.policy(false), &ask(&c, &app, "cam", ""), false, 30, 0).await.is_ok());
        let app = test_app(&format!("live on; on_update {}; notify_update_strict on;", redirecting.url));
        assert!(update(&s.policy(false), &ask(&c, &app, "cam", ""), false, 30, 0).await.is_err());
    }

    #[test]
    fn done_calls_follow_nginx_rtmp_order() {
        let apps = apps(
            "on_publish_done http://h/pd; on_play_done http://h/yd; on_done http://h/d; on_disconnect http://h/x;",
        );
        let app = &apps[0];
        let ended = [
            Ended::Publish { name: "cam", args: "a=1" },
            Ended::Play { name: "other", args: "" },
            Ended::Disconnect { app_args: "k=2" },
        ];
        let calls = done_calls(&app.notify, &client(), &ended);
        let names: Vec<_> = calls.iter().map(|c| c.call).collect();
        assert_eq!(names, ["publish_done", "done", "play_done", "done", "disconnect"]);
        assert!(calls[1].form.ends_with("call=done&name=cam&a=1"), "{}", calls[1].form);
        assert!(calls[4].form.ends_with("call=disconnect&app=live&k=2"), "{}", calls[4].form);
        assert!(done_calls(&test_app("live on;").notify, &client(), &ended).is_empty());
    }
}

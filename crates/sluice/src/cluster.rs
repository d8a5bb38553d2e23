//! The cluster's stream directory in Redis (`cluster_redis`): which node publishes which stream.
//!
//! - **Key and value:** `sluice:stream:APP/NAME` = `ADDRESS NODE`: the server's
//!   `cluster_address` (`rtmp://HOST:PORT`) and this process's random node id (a restarted node
//!   is another owner), with an expiry of `cluster_ttl`.
//! - **Claim** ([`Directory::claim`], from [`crate::policy::publish`]): before a publish is taken
//!   here, the key is set if absent (or refreshed if ours); another node's value refuses the
//!   publish. Redis unreachable: allowed, with one warning (availability first).
//! - **Registration** ([`Registrar`], an output module): every stream published here in a
//!   cluster application (RTMP publishers, exec's, transcode renditions; never a relay pull's
//!   copy) is registered and refreshed every ttl/3 by ONE heartbeat task for the node (a
//!   compare-and-refresh script: ours → refreshed, absent → set again, another node's → an error
//!   line naming both), and removed (compare-and-delete) when it ends and at shutdown.
//! - **Lookup** ([`Directory::lookup`], from [`crate::relay::pull`]): a stream played here that
//!   nobody publishes is pulled from `ADDRESS/APP/NAME`; a key naming this node counts as absent.
//!
//! Every command runs under [`COMMAND_TIMEOUT`]; the connection manager reconnects by itself.
//! Nothing here is on the media path: the heartbeat and the unregistrations run in their own
//! tasks, the claim and lookups in the publisher's decision and the pull's task. Directory
//! health changes are logged once per change. The password is never logged or shown
//! ([`crate::config::RedisUrl::shown`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{ClusterConf, ServerConf};
use crate::hub::{Entry, StreamKey, MAX_STREAMS};
use crate::modules::{Module, PublishCtx, ServerTask, StartCtx};

/// Longest wait for one Redis command (connecting included).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// Register-or-refresh: ours → refresh the expiry (1); absent → set it (2); another node's →
/// its value.
const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return v
";

/// Compare-and-delete: only our own value goes.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The directory key of a stream.
pub fn key(app: &str, name: &str) -> String {
    format!("sluice:stream:{app}/{name}")
}

/// A directory value: `ADDRESS NODE`.
pub fn value(address: &str, node: &str) -> String {
    format!("{address} {node}")
}

/// A directory value's address and node; `None` for what sluice did not write.
pub fn parse_value(value: &str) -> Option<(&str, &str)> {
    let (address, node) = value.split_once(' ')?;
    (address.starts_with("rtmp://") && !node.is_empty() && !node.contains(' ')).then_some((address, node))
}

/// The URL a stream registered at `address` is pulled from.
pub fn pull_url(address: &str, app: &str, name: &str) -> String {
    format!("{address}/{app}/{name}")
}

/// What [`Directory::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours now (set, or it was already).
    Ours,
    /// Another node publishes the stream: its address.
    Taken(String),
    /// Redis did not answer: allowed (availability first); the heartbeat registers it later.
    Unreachable(String),
    /// This server takes no part (no `cluster_address`): nothing claimed.
    NotInCluster,
}

/// One stream registered by this node.
struct Reg {
    /// Which publish of the stream (a republish replaces it).
    generation: u64,
    value: String,
    /// Not yet confirmed in Redis: the heartbeat sets it at its next wake-up.
    pending: bool,
    /// The other node's value last reported as holding the key (logged once per owner).
    conflict: Option<String>,
}

/// The directory's health as last seen.
#[derive(Default)]
struct Health {
    up: Option<bool>,
    last_error: Option<String>,
}

/// `GET /api/v1/cluster`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClusterView {
    /// Whether a directory is configured.
    pub enabled: bool,
    /// `cluster_redis` without its password.
    pub directory: Option<String>,
    /// Whether the last command got an answer.
    pub up: bool,
    /// Why the last failed command failed (kept after recovery until the next failure).
    pub last_error: Option<String>,
    /// Each server block's `cluster_address` (first one set).
    pub address: Option<String>,
    /// This process's node id.
    pub node: Option<String>,
    /// Streams registered by this node now.
    pub registered: usize,
    /// Lookups by result.
    pub lookups: Lookups,
    /// Publishes refused because another node publishes the stream.
    pub publishes_refused: u64,
}

/// Lookup counts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Lookups {
    /// Found on another node.
    pub found: u64,
    /// Not in the directory (or naming this node).
    pub not_found: u64,
    /// Redis did not answer.
    pub failed: u64,
}

impl ClusterView {
    /// The view of a node without a directory.
    pub fn disabled() -> Self {
        ClusterView {
            enabled: false,
            directory: None,
            up: false,
            last_error: None,
            address: None,
            node: None,
            registered: 0,
            lookups: Lookups::default(),
            publishes_refused: 0,
        }
    }
}

/// The node's handle on the stream directory (one per process, in [`crate::server::Shared`]).
pub struct Directory {
    shown: String,
    /// The URL with its password, to scrub from error texts.
    secret: String,
    ttl: Duration,
    node: String,
    conn: ConnectionManager,
    /// Each server block's `cluster_address`, by index (a reload replaces them).
    addresses: RwLock<Vec<Option<String>>>,
    regs: Mutex<HashMap<StreamKey, Reg>>,
    next_generation: AtomicU64,
    full_logged: AtomicBool,
    wake: Notify,
    health: Mutex<Health>,
    found: AtomicU64,
    not_found: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    claim: redis::Script,
    release: redis::Script,
    /// The streams' watchers (their unregistration): shutdown waits for those under way.
    watchers: tokio_util::task::TaskTracker,
}

impl Directory {
    /// The directory `conf` names (none without `cluster_redis`), for `servers`. Connects
    /// lazily: Redis down at start-up is a directory down, not a failed start.
    pub fn new(conf: &ClusterConf, servers: &[ServerConf]) -> anyhow::Result<Option<Arc<Directory>>> {
        let Some(url) = &conf.redis else { return Ok(None) };
        let client = redis::Client::open(url.secret_url()).map_err(|e| {
            anyhow::anyhow!("cluster_redis {}: {}", url.shown(), scrub(&e.to_string(), url.secret_url(), &url.shown()))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| anyhow::anyhow!("cluster_redis {}: {e}", url.shown()))?;
        let node = format!("{:016x}", rand::random::<u64>());
        let directory = Directory {
            shown: url.shown(),
            secret: url.secret_url().to_owned(),
            ttl: conf.ttl,
            node,
            conn,
            addresses: RwLock::new(Vec::new()),
            regs: Mutex::default(),
            next_generation: AtomicU64::new(1),
            full_logged: AtomicBool::new(false),
            wake: Notify::new(),
            health: Mutex::default(),
            found: AtomicU64::new(0),
            not_found: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            claim: redis::Script::new(CLAIM),
            release: redis::Script::new(RELEASE),
            watchers: tokio_util::task::TaskTracker::new(),
        };
        directory.set_servers(servers);
        tracing::info!(directory = %directory.shown, node = %directory.node, ttl = ?conf.ttl, "cluster: stream directory");
        Ok(Some(Arc::new(directory)))
    }

    /// A reload: the servers' addresses from now on (registrations made keep their value).
    pub fn set_servers(&self, servers: &[ServerConf]) {
        *self.addresses.write().unwrap_or_else(|e| e.into_inner()) =
            servers.iter().map(|s| s.cluster_address.clone()).collect();
    }

    /// `cluster_ttl`.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// This process's node id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Our value for a stream of server block `srv`; `None` when it has no `cluster_address`.
    fn our_value(&self, srv: usize) -> Option<String> {
        let addresses = self.addresses.read().unwrap_or_else(|e| e.into_inner());
        Some(value(addresses.get(srv)?.as_deref()?, &self.node))
    }

    /// Whether `address` is one of this node's own.
    fn is_own_address(&self, address: &str) -> bool {
        self.addresses.read().unwrap_or_else(|e| e.into_inner()).iter().flatten().any(|a| a == address)
    }

    /// Run one command under [`COMMAND_TIMEOUT`], noting the directory's health.
    async fn run<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        let result = match tokio::time::timeout(COMMAND_TIMEOUT, cmd).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(scrub(&e.to_string(), &self.secret, &self.shown)),
            Err(_) => Err(format!("no answer within {COMMAND_TIMEOUT:?}")),
        };
        self.note(what, result.as_ref().err());
        result
    }

    /// One line per change of the directory's health.
    fn note(&self, what: &str, error: Option<&String>) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let up = error.is_none();
        let changed = health.up != Some(up);
        health.up = Some(up);
        if let Some(e) = error {
            health.last_error = Some(e.clone());
        }
        drop(health);
        match (changed, error) {
            (true, Some(e)) => tracing::warn!(directory = %self.shown, "cluster: stream directory down ({what}): {e}"),
            (true, None) => tracing::info!(directory = %self.shown, "cluster: stream directory up"),
            _ => {}
        }
    }

    /// The claim script for `key` and `value`: `Ok(true)` set now, `Ok(false)` refreshed
    /// (it was ours), `Err` the other node's value.
    async fn claim_key(&self, key: &str, value: &str) -> Result<Result<bool, String>, String> {
        let ttl_ms = self.ttl.as_millis() as u64;
        let mut conn = self.conn.clone();
        let mut invocation = self.claim.key(key);
        invocation.arg(value).arg(ttl_ms);
        let answer: redis::Value = self.run("claim", invocation.invoke_async(&mut conn)).await?;
        Ok(match answer {
            redis::Value::Int(n) => Ok(n == 2),
            redis::Value::BulkString(bytes) => Err(String::from_utf8_lossy(&bytes).into_owned()),
            redis::Value::SimpleString(s) => Err(s),
            other => Err(format!("{other:?}")),
        })
    }

    /// Before a publish of `app`/`name` in server block `srv` is taken here: take the key, or
    /// find who has it. Counted when refused.
    pub async fn claim(&self, app: &str, name: &str, srv: usize) -> Claim {
        let Some(ours) = self.our_value(srv) else { return Claim::NotInCluster };
        match self.claim_key(&key(app, name), &ours).await {
            Ok(Ok(_)) => Claim::Ours,
            // This node, under another server block's address: the hub decides, as for any
            // local duplicate.
            Ok(Err(theirs)) if parse_value(&theirs).is_some_and(|(_, node)| node == self.node) => Claim::Ours,
            Ok(Err(theirs)) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                let address = parse_value(&theirs).map_or(theirs.as_str(), |(a, _)| a);
                Claim::Taken(crate::untrusted::for_log(address).into_owned())
            }
            Err(e) => Claim::Unreachable(e),
        }
    }

    /// Where `app`/`name` is published in the cluster: `Ok(None)` when nowhere (or here).
    pub async fn lookup(&self, app: &str, name: &str) -> Result<Option<String>, String> {
        let mut conn = self.conn.clone();
        let key = key(app, name);
        let found: Option<String> = match self.run("lookup", redis::cmd("GET").arg(&key).query_async(&mut conn)).await {
            Ok(v) => v,
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                // The directory's state change is logged once and a failed pull once: a
                // line per try would repeat them.
                tracing::debug!(app = %app, stream = %name, "cluster: lookup failed: {e}");
                return Err(e);
            }
        };
        let address = found
            .as_deref()
            .and_then(parse_value)
            .filter(|(address, node)| *node != self.node && !self.is_own_address(address));
        match address {
            Some((address, _)) => {
                self.found.fetch_add(1, Ordering::Relaxed);
                tracing::info!(app = %app, stream = %name, origin = %crate::untrusted::for_log(address), "cluster: lookup: found");
                Ok(Some(address.to_owned()))
            }
            None => {
                self.not_found.fetch_add(1, Ordering::Relaxed);
                tracing::info!(app = %app, stream = %name, "cluster: lookup: not in the stream directory");
                Ok(None)
            }
        }
    }

    /// A stream of server block `srv` is published here: registered by the heartbeat task
    /// at once, then refreshed until [`Directory::unregister`]. `None` when the server has no
    /// address or the map is full.
    fn register(&self, key: StreamKey, srv: usize) -> Option<u64> {
        let value = self.our_value(srv)?;
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let mut regs = self.regs.lock().unwrap_or_else(|e| e.into_inner());
        if regs.len() >= MAX_STREAMS && !regs.contains_key(&key) {
            if !self.full_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(app = %key.app, stream = %key.name, max = MAX_STREAMS, "cluster: stream not registered: too many streams");
            }
            return None;
        }
        regs.insert(key, Reg { generation, value, pending: true, conflict: None });
        drop(regs);
        self.wake.notify_one();
        Some(generation)
    }

    /// The publish `generation` of `key` ended: its key is deleted if it is still ours.
    async fn unregister(&self, key: &StreamKey, generation: u64) {
        let reg = {
            let mut regs = self.regs.lock().unwrap_or_else(|e| e.into_inner());
            match regs.get(key) {
                Some(r) if r.generation == generation => regs.remove(key),
                _ => None,
            }
        };
        let Some(reg) = reg else { return };
        if regs_len_below(&self.regs, MAX_STREAMS) {
            self.full_logged.store(false, Ordering::Relaxed);
        }
        self.release_key(key, &reg.value).await;
    }

    /// Compare-and-delete `key`'s registration.
    async fn release_key(&self, key: &StreamKey, value: &str) {
        let mut conn = self.conn.clone();
        let mut invocation = self.release.key(self::key(&key.app, &key.name));
        invocation.arg(value);
        match self.run("unregister", invocation.invoke_async::<i64>(&mut conn)).await {
            Ok(1) => tracing::info!(app = %key.app, stream = %key.name, "cluster: unregistered"),
            // Expired meanwhile (Redis was unreachable for a while) or taken by another node.
            Ok(_) => tracing::info!(app = %key.app, stream = %key.name, "cluster: registration already gone"),
            Err(e) => {
                tracing::warn!(app = %key.app, stream = %key.name, "cluster: not unregistered (it expires within cluster_ttl): {e}")
            }
        }
    }

    /// The heartbeat: registers new streams at once, refreshes all every ttl/3, and at
    /// shutdown removes them.
    pub async fn heartbeat(self: Arc<Self>, shutdown: CancellationToken) {
        let every = self.ttl / 3;
        let mut next = tokio::time::Instant::now() + every;
        loop {
            let all = tokio::select! {
                () = tokio::time::sleep_until(next) => true,
                () = self.wake.notified() => false,
                () = shutdown.cancelled() => break,
            };
            if all {
                next = tokio::time::Instant::now() + every;
            }
            self.beat(all).await;
        }
        let regs: Vec<(StreamKey, String)> = {
            let mut regs = self.regs.lock().unwrap_or_else(|e| e.into_inner());
            regs.drain().map(|(k, r)| (k, r.value)).collect()
        };
        for (key, value) in regs {
            self.release_key(&key, &value).await;
        }
        // Unregistrations already under way (their streams ended with the shutdown).
        self.watchers.close();
        let _ = tokio::time::timeout(2 * COMMAND_TIMEOUT, self.watchers.wait()).await;
    }

    /// One heartbeat: every registration (`all`) or the new ones. A failure ends the round
    /// (Redis down: the next one tries again).
    async fn beat(&self, all: bool) {
        let due: Vec<(StreamKey, u64, String)> = {
            let regs = self.regs.lock().unwrap_or_else(|e| e.into_inner());
            regs.iter()
                .filter(|(_, r)| all || r.pending)
                .map(|(k, r)| (k.clone(), r.generation, r.value.clone()))
                .collect()
        };
        // A node with nothing registered (an edge) still watches the directory's health.
        if all && due.is_empty() {
            let mut conn = self.conn.clone();
            let _ = self.run::<String>("ping", redis::cmd("PING").query_async(&mut conn)).await;
            return;
        }
        for (key, generation, value) in due {
            let answer = match self.claim_key(&self::key(&key.app, &key.name), &value).await {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::debug!(app = %key.app, stream = %key.name, "cluster: heartbeat failed: {e}");
                    return;
                }
            };
            let mut regs = self.regs.lock().unwrap_or_else(|e| e.into_inner());
            let Some(reg) = regs.get_mut(&key).filter(|r| r.generation == generation) else { continue };
            match answer {
                Ok(set) => {
                    if reg.pending || reg.conflict.is_some() {
                        tracing::info!(app = %key.app, stream = %key.name, value = %value, "cluster: registered");
                    } else if set {
                        tracing::info!(app = %key.app, stream = %key.name, value = %value, "cluster: registered again (the directory had lost it: restarted, or unreachable past cluster_ttl)");
                    }
                    reg.pending = false;
                    reg.conflict = None;
                }
                Err(theirs) => {
                    if reg.conflict.as_deref() != Some(theirs.as_str()) {
                        tracing::error!(app = %key.app, stream = %key.name, ours = %value, theirs = %crate::untrusted::for_log(&theirs), "cluster: conflict: the stream is registered by another node too; it stays published here");
                    }
                    reg.pending = false;
                    reg.conflict = Some(theirs);
                }
            }
        }
    }

    /// What `GET /api/v1/cluster` answers.
    pub fn view(&self) -> ClusterView {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let address = self.addresses.read().unwrap_or_else(|e| e.into_inner()).iter().flatten().next().cloned();
        let regs = self.regs.lock().unwrap_or_else(|e| e.into_inner());
        ClusterView {
            enabled: true,
            directory: Some(self.shown.clone()),
            up: health.up == Some(true),
            last_error: health.last_error.clone(),
            address,
            node: Some(self.node.clone()),
            registered: regs.values().filter(|r| !r.pending && r.conflict.is_none()).count(),
            lookups: Lookups {
                found: self.found.load(Ordering::Relaxed),
                not_found: self.not_found.load(Ordering::Relaxed),
                failed: self.failed.load(Ordering::Relaxed),
            },
            publishes_refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").field("directory", &self.shown).field("node", &self.node).finish_non_exhaustive()
    }
}

fn regs_len_below(regs: &Mutex<HashMap<StreamKey, Reg>>, max: usize) -> bool {
    regs.lock().unwrap_or_else(|e| e.into_inner()).len() < max
}

/// `text` without the URL's password.
fn scrub(text: &str, secret: &str, shown: &str) -> String {
    text.replace(secret, shown)
}

/// The output module that registers every stream published here in a cluster application,
/// for as long as it is published; and runs the node's heartbeat.
pub struct Registrar {
    directory: Option<Arc<Directory>>,
}

impl Registrar {
    /// The module over `directory` (none: it does nothing).
    pub fn new(directory: Option<Arc<Directory>>) -> Self {
        Registrar { directory }
    }
}

impl Module for Registrar {
    fn name(&self) -> &'static str {
        "cluster"
    }

    fn on_publish(&self, ctx: &PublishCtx<'_>) {
        let Some(directory) = &self.directory else { return };
        // A pulled stream is a copy: its origin registered it.
        if ctx.pulled || !ctx.source.app.cluster {
            return;
        }
        let Some(publish_id) = ctx.stream.publish_info().map(|p| p.id) else { return };
        let key = ctx.stream.key.clone();
        let Some(generation) = directory.register(key.clone(), ctx.source.srv) else { return };
        // Subscribed now: the stream's end is an `Unpublished` entry (or another publish id).
        let (_, mut sub) = ctx.stream.subscribe();
        let directory = directory.clone();
        directory.clone().watchers.spawn(async move {
            loop {
                let batch = sub.next_batch(256).await;
                let ended = batch.entries.iter().any(|e| matches!(e, Entry::Unpublished));
                if ended || sub.stream().publish_info().map(|p| p.id) != Some(publish_id) {
                    break;
                }
            }
            drop(sub);
            directory.unregister(&key, generation).await;
        });
    }

    fn on_start(&self, ctx: &StartCtx<'_>) -> Option<ServerTask> {
        let directory = self.directory.clone()?;
        Some(Box::pin(directory.heartbeat(ctx.shutdown.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_address_and_node() {
        let v = value("rtmp://10.0.0.1:1935", "00ff00ff00ff00ff");
        assert_eq!(v, "rtmp://10.0.0.1:1935 00ff00ff00ff00ff");
        assert_eq!(parse_value(&v), Some(("rtmp://10.0.0.1:1935", "00ff00ff00ff00ff")));
        for bad in ["", "rtmp://h:1", "http://h:1 n", "rtmp://h:1 a b", "rtmp://h:1 "] {
            assert_eq!(parse_value(bad), None, "{bad:?}");
        }
        assert_eq!(key("live", "cam"), "sluice:stream:live/cam");
        assert_eq!(pull_url("rtmp://10.0.0.1:1935", "live", "cam"), "rtmp://10.0.0.1:1935/live/cam");
    }

    #[test]
    fn errors_never_carry_the_password() {
        let secret = "redis://:hunter2@h:6379/0";
        let text = format!("cannot connect to {secret}: refused");
        assert_eq!(scrub(&text, secret, "redis://:***@h:6379/0"), "cannot connect to redis://:***@h:6379/0: refused");
    }

    #[tokio::test]
    async fn a_directory_without_redis_is_down_and_claims_are_unreachable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let text = format!(
            "rtmp {{ cluster_redis redis://:pw@127.0.0.1:{port}; server {{ listen 127.0.0.1:1; cluster_address rtmp://127.0.0.1:1; application live {{ live on; }} }} }}"
        );
        let config = crate::config::Config::parse(&text, "t").unwrap();
        let directory = Directory::new(&config.cluster, &config.servers).unwrap().unwrap();
        assert!(matches!(directory.claim("live", "cam", 0).await, Claim::Unreachable(_)));
        assert!(directory.lookup("live", "cam").await.is_err());
        let view = directory.view();
        assert!(!view.up && view.last_error.is_some() && view.lookups.failed == 1, "{view:?}");
        assert!(!format!("{view:?}").contains("pw@"), "{view:?}");
        assert_eq!(directory.claim("live", "cam", 1).await, Claim::NotInCluster);
    }
}

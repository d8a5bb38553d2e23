//! The clients registry: every client (RTMP now; relay legs and HTTP players later) with its
//! id, address, application, stream, role, byte counts, start time and a handle to drop it.
//! The control API (`/control/drop/...`, `/control/redirect/...`), stats and reload read it
//! through [`Clients`], which lives in [`crate::server::Shared`].
//!
//! A client registers when it is accepted and gets a [`ClientHandle`]; dropping the handle
//! unregisters it. The hot path (bytes read and written) only touches two relaxed atomics
//! per read or write batch; the map's lock is taken at register, unregister, on the rare
//! app/stream changes, and by readers of the registry.
//!
//! Bounded: at most [`DEFAULT_MAX`] clients (or the count given to [`Clients::new`]) at once,
//! whatever `max_connections` says (it may be unset); a client over the bound is not
//! registered and its connection is closed at once, logged at most every 10 s. Each client
//! has one redirect slot: a redirect that arrives before the connection took the last one
//! replaces it, so control cannot queue work on a connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::server::LogEvery;

/// Most clients registered at once by default: far above what one process serves, but a
/// bound all the same.
pub const DEFAULT_MAX: usize = 1 << 16;

/// How a client reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An RTMP connection accepted by a listener.
    Rtmp,
    /// An RTMPS connection (`listen ... ssl`).
    Rtmps,
    /// An outgoing relay leg (push or pull).
    Relay,
    /// An HTTP-FLV player.
    HttpFlv,
    /// A WebSocket-FLV player.
    WsFlv,
}

impl Kind {
    /// The protocol's name in stats, the API and metrics labels.
    pub fn protocol(self) -> &'static str {
        match self {
            Kind::Rtmp => "rtmp",
            Kind::Rtmps => "rtmps",
            Kind::Relay => "relay",
            Kind::HttpFlv => "http-flv",
            Kind::WsFlv => "ws-flv",
        }
    }
}

/// What a client does with its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Connected, neither publishing nor playing.
    #[default]
    None,
    /// Publishing `name`.
    Publisher,
    /// Playing `name` (nginx-rtmp's "subscriber").
    Player,
}

/// What changes seldom: behind a lock taken only at connect, publish, play and stop.
#[derive(Debug, Clone, Default)]
struct Meta {
    app: String,
    name: String,
    role: Role,
    /// Whether `name` is a file played on demand (`play`), not a stream in the hub.
    file: bool,
    connect: ConnectMeta,
    /// For the access log, which outlives stops: the last stream published or played, its
    /// query string, and whether the client ever played or published.
    last_name: String,
    last_args: String,
    played: bool,
    published: bool,
}

/// What the client said about itself in `connect` (RTMP) or its request (HTTP), for stats:
/// nginx-rtmp's `flashver`, `swfurl`, `pageurl` and `tcurl`. Client text: shown escaped by
/// whoever displays it, never trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectMeta {
    /// `flashVer` (RTMP) or the `User-Agent` (HTTP).
    pub flashver: String,
    /// `swfUrl`.
    pub swfurl: String,
    /// `pageUrl` (RTMP) or the `Referer` (HTTP).
    pub pageurl: String,
    /// `tcUrl` (RTMP) or the request URL (HTTP).
    pub tcurl: String,
}

struct Entry {
    id: u64,
    addr: SocketAddr,
    kind: Kind,
    srv: usize,
    started: SystemTime,
    since: Instant,
    meta: Mutex<Meta>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Frames this player skipped because it fell behind.
    dropped: AtomicU64,
    /// The timestamp (ms) of the last media message sent or received.
    timestamp: AtomicU64,
    drop: CancellationToken,
    /// The last redirect control asked for; the connection's handle watches it.
    redirect: watch::Sender<Option<Redirect>>,
    relay: Mutex<Option<RelayState>>,
    /// The access logs in force when it registered: where its line goes when it leaves.
    access_logs: Arc<crate::logs::Table>,
}

impl Entry {
    fn add_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn set_timestamp(&self, ms: u32) {
        self.timestamp.store(u64::from(ms), Ordering::Relaxed);
    }

    fn snapshot(&self) -> ClientSnapshot {
        let meta = lock(&self.meta).clone();
        ClientSnapshot {
            id: self.id,
            addr: self.addr,
            kind: self.kind,
            app: meta.app,
            name: meta.name,
            role: meta.role,
            file: meta.file,
            started: self.started,
            uptime: self.since.elapsed(),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            timestamp: self.timestamp.load(Ordering::Relaxed) as u32,
            srv: self.srv,
            connect: meta.connect,
            relay: lock(&self.relay).clone(),
        }
    }
}

/// One client as it was when [`Clients::list`] or [`Clients::get`] looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSnapshot {
    /// nginx-rtmp's `clientid`: the same number the callbacks report.
    pub id: u64,
    /// The peer address.
    pub addr: SocketAddr,
    /// How the client reached us.
    pub kind: Kind,
    /// The application connected to; empty before `connect` is accepted.
    pub app: String,
    /// The stream published or played; empty with [`Role::None`].
    pub name: String,
    /// What it does with `name`.
    pub role: Role,
    /// Whether it plays `name` from a file (`play`) rather than from the hub.
    pub file: bool,
    /// When it was accepted (wall clock, for display).
    pub started: SystemTime,
    /// How long it has been connected.
    pub uptime: Duration,
    /// Bytes read from it.
    pub bytes_in: u64,
    /// Bytes written to it.
    pub bytes_out: u64,
    /// Frames skipped because it fell behind (players).
    pub dropped: u64,
    /// The timestamp (ms) of the last media message it sent or was sent.
    pub timestamp: u32,
    /// The index of the `rtmp { server {} }` block it belongs to.
    pub srv: usize,
    /// What it said about itself when it connected.
    pub connect: ConnectMeta,
    /// A relay leg's state ([`Kind::Relay`] only).
    pub relay: Option<RelayState>,
}

/// What a relay leg reports about its remote (a sluice extension).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayState {
    /// The remote, as the relay logs it (stream key and secrets in the query masked).
    pub url: String,
    /// Whether the remote accepted the publish (or play) and media flows.
    pub connected: bool,
    /// Attempts after the first.
    pub reconnects: u64,
    /// Why the last attempt ended, if one did.
    pub last_error: Option<String>,
}

/// What control's `/control/redirect` asks a client to do: end the publish or play it had when
/// it matched (`role`) and start it again as `name` (already checked by
/// `untrusted::stream_name`) with `args` (the part of `newname` after `?`, as nginx-rtmp splits
/// it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// [`Role::Publisher`] or [`Role::Player`]: which of the client's streams moves.
    pub role: Role,
    /// The new stream name.
    pub name: String,
    /// The new stream's query string (for access checks and callbacks).
    pub args: String,
}

/// Which sessions nginx-rtmp's control `drop`/`redirect` method addresses: the path's last
/// segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `/control/drop/publisher`.
    Publisher,
    /// `/control/drop/subscriber`.
    Subscriber,
    /// `/control/drop/client`: publishers and subscribers alike.
    Client,
}

/// nginx-rtmp's control filters (`?app=&name=&addr=&clientid=`), each an exact match when
/// given. As in nginx-rtmp only clients in a live stream (publishing or playing) match:
/// a client that is only connected is never dropped by control, and only clients of one
/// `rtmp { server {} }` block (`srv=`, the first by default) are walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// publisher, subscriber or client.
    pub method: Method,
    /// `srv=`: the index of the server block the client connected to.
    pub srv: usize,
    /// `app=`: the application name.
    pub app: Option<String>,
    /// `name=`: the stream name.
    pub name: Option<String>,
    /// `addr=`: the client's IP address as text (nginx's `addr_text`, no port).
    pub addr: Option<String>,
    /// `clientid=`: the client's id.
    pub clientid: Option<u64>,
}

impl Filter {
    /// Every client of `method`, before any `app=`/`name=`/... narrows it.
    pub fn new(method: Method) -> Self {
        Filter { method, srv: 0, app: None, name: None, addr: None, clientid: None }
    }

    /// The role the client has now when it matches.
    fn matching_role(&self, e: &Entry) -> Option<Role> {
        let meta = lock(&e.meta);
        let role_ok = match self.method {
            Method::Publisher => meta.role == Role::Publisher,
            Method::Subscriber => meta.role == Role::Player,
            Method::Client => meta.role != Role::None,
        };
        let ok = role_ok
            && self.srv == e.srv
            && self.app.as_ref().is_none_or(|a| *a == meta.app)
            && self.name.as_ref().is_none_or(|n| *n == meta.name)
            && self.addr.as_ref().is_none_or(|a| *a == e.addr.ip().to_string())
            && self.clientid.is_none_or(|id| id == e.id);
        ok.then_some(meta.role)
    }
}

/// The registry of connected clients, shared by every server block.
pub struct Clients {
    max: usize,
    map: Mutex<HashMap<u64, Arc<Entry>>>,
    full: Mutex<LogEvery>,
    /// Connections accepted since start (relay legs, which we open, are not counted).
    accepted: AtomicU64,
    /// Bytes read from the clients that left, added as each unregisters (under the map's
    /// lock, so that [`Clients::totals`] counts each byte once).
    gone_in: AtomicU64,
    /// Bytes written to the clients that left.
    gone_out: AtomicU64,
}

/// Bytes read from and written to clients.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Read from clients.
    pub bytes_in: u64,
    /// Written to clients.
    pub bytes_out: u64,
}

impl Default for Clients {
    fn default() -> Self {
        Self::new(DEFAULT_MAX)
    }
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").field("max", &self.max).field("len", &self.len()).finish()
    }
}

impl Clients {
    /// A registry holding at most `max` clients at once.
    pub fn new(max: usize) -> Self {
        Clients {
            max,
            map: Mutex::new(HashMap::new()),
            full: Mutex::new(LogEvery::new(Duration::from_secs(10))),
            accepted: AtomicU64::new(0),
            gone_in: AtomicU64::new(0),
            gone_out: AtomicU64::new(0),
        }
    }

    /// Register a new client of the server block with index `srv`; `None` when the registry
    /// is full (the caller closes it).
    pub fn register(self: &Arc<Self>, addr: SocketAddr, kind: Kind, srv: usize) -> Option<ClientHandle> {
        if kind != Kind::Relay {
            self.accepted.fetch_add(1, Ordering::Relaxed);
        }
        let entry = Arc::new(Entry {
            id: crate::events::next_client_id(),
            addr,
            kind,
            srv,
            started: SystemTime::now(),
            since: Instant::now(),
            meta: Mutex::new(Meta::default()),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            timestamp: AtomicU64::new(0),
            drop: CancellationToken::new(),
            redirect: watch::Sender::new(None),
            relay: Mutex::new(None),
            access_logs: crate::logs::current(),
        });
        {
            let mut map = lock(&self.map);
            if map.len() >= self.max {
                drop(map);
                if let Some(refused) = lock(&self.full).hit() {
                    tracing::warn!(client = %addr, max = self.max, refused, "client refused: the clients registry is full");
                }
                return None;
            }
            map.insert(entry.id, entry.clone());
        }
        let redirect = entry.redirect.subscribe();
        Some(ClientHandle { clients: self.clone(), entry, redirect })
    }

    /// Every registered client, in no particular order.
    pub fn list(&self) -> Vec<ClientSnapshot> {
        let entries: Vec<Arc<Entry>> = lock(&self.map).values().cloned().collect();
        entries.iter().map(|e| e.snapshot()).collect()
    }

    /// The client with this id, if it is still connected.
    pub fn get(&self, id: u64) -> Option<ClientSnapshot> {
        let entry = lock(&self.map).get(&id).cloned();
        entry.map(|e| e.snapshot())
    }

    /// Tell every client `filter` matches to close; returns how many (nginx-rtmp's
    /// `/control/drop` reply). They close on their own tasks, soon after.
    pub fn drop_where(&self, filter: &Filter) -> usize {
        let entries: Vec<Arc<Entry>> = lock(&self.map).values().cloned().collect();
        let mut count = 0;
        for e in entries.iter().filter(|e| filter.matching_role(e).is_some()) {
            e.drop.cancel();
            count += 1;
        }
        count
    }

    /// Ask every client `filter` matches to move its publish or play to `name` with `args`
    /// (nginx-rtmp's `/control/redirect`); returns how many. Each does it on its own task,
    /// soon after; one that has not yet taken an earlier redirect takes this one instead.
    pub fn redirect_where(&self, filter: &Filter, name: &str, args: &str) -> usize {
        let entries: Vec<Arc<Entry>> = lock(&self.map).values().cloned().collect();
        let mut count = 0;
        for e in &entries {
            let Some(role) = filter.matching_role(e) else { continue };
            e.redirect.send_replace(Some(Redirect { role, name: name.to_owned(), args: args.to_owned() }));
            count += 1;
        }
        count
    }

    /// Ask the client with this id to close (the API's drop action); false when it is gone.
    pub fn drop_id(&self, id: u64) -> bool {
        let entry = lock(&self.map).get(&id).cloned();
        entry.inspect(|e| e.drop.cancel()).is_some()
    }

    /// Connections accepted since start (nginx-rtmp's `naccepted`): every client that asked
    /// to register, refused ones included; relay legs, which sluice opens, are not.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Bytes read from and written to every client since start, connected or gone.
    pub fn totals(&self) -> Totals {
        let map = lock(&self.map);
        let mut t =
            Totals { bytes_in: self.gone_in.load(Ordering::Relaxed), bytes_out: self.gone_out.load(Ordering::Relaxed) };
        for e in map.values() {
            t.bytes_in += e.bytes_in.load(Ordering::Relaxed);
            t.bytes_out += e.bytes_out.load(Ordering::Relaxed);
        }
        t
    }

    /// Clients registered now.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// True when no client is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A client's place in the registry, held by its connection; unregisters it when dropped.
pub struct ClientHandle {
    clients: Arc<Clients>,
    entry: Arc<Entry>,
    redirect: watch::Receiver<Option<Redirect>>,
}

/// A client's output counters (see [`ClientHandle::counters`]).
#[derive(Clone)]
pub struct Counters(Arc<Entry>);

impl Counters {
    /// Count bytes sent to the client.
    pub fn add_out(&self, n: usize) {
        self.0.add_out(n);
    }

    /// The timestamp of the last media message sent.
    pub fn set_timestamp(&self, ms: u32) {
        self.0.set_timestamp(ms);
    }
}

impl std::fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandle").field("id", &self.entry.id).finish()
    }
}

impl ClientHandle {
    /// The client's id (nginx-rtmp's `clientid`).
    pub fn id(&self) -> u64 {
        self.entry.id
    }

    /// The application, once `connect` is accepted.
    pub fn set_app(&self, app: &str) {
        lock(&self.entry.meta).app = app.to_owned();
    }

    /// The stream published or played (a name already checked by `untrusted::stream_name`).
    pub fn set_stream(&self, name: &str, role: Role) {
        let mut meta = lock(&self.entry.meta);
        meta.name = name.to_owned();
        meta.role = role;
        meta.file = false;
        meta.last_name = name.to_owned();
        meta.played |= role == Role::Player;
        meta.published |= role == Role::Publisher;
    }

    /// The client plays the file `name` asks for (`play`): a player, of no stream in the hub.
    pub fn set_file(&self, name: &str) {
        self.set_stream(name, Role::Player);
        lock(&self.entry.meta).file = true;
    }

    /// The query string of the publish or play just started (the access log's `$args`).
    pub fn set_args(&self, args: &str) {
        lock(&self.entry.meta).last_args = args.to_owned();
    }

    /// The client stopped being `role` (unpublish, play done); a no-op if it is not.
    pub fn clear_stream(&self, role: Role) {
        let mut meta = lock(&self.entry.meta);
        if meta.role == role {
            meta.name.clear();
            meta.role = Role::None;
            meta.file = false;
        }
    }

    /// Count bytes read from the client (once per read).
    pub fn add_in(&self, n: usize) {
        self.entry.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Count bytes written to the client (once per write batch).
    pub fn add_out(&self, n: usize) {
        self.entry.add_out(n);
    }

    /// The byte and timestamp counters, for whoever writes to this client on its behalf
    /// ([`crate::fanout`]).
    pub fn counters(&self) -> Counters {
        Counters(Arc::clone(&self.entry))
    }

    /// Count frames skipped because the player fell behind.
    pub fn add_dropped(&self, n: u64) {
        self.entry.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// The timestamp of the last media message sent or received (once per batch).
    pub fn set_timestamp(&self, ms: u32) {
        self.entry.set_timestamp(ms);
    }

    /// What the client said about itself (RTMP `connect`, HTTP request headers).
    pub fn set_connect_meta(&self, connect: ConnectMeta) {
        lock(&self.entry.meta).connect = connect;
    }

    /// Resolves when control asked to drop this client; the connection then closes.
    pub fn dropped(&self) -> WaitForCancellationFutureOwned {
        self.entry.drop.clone().cancelled_owned()
    }

    /// True once control asked to drop this client.
    pub fn is_dropped(&self) -> bool {
        self.entry.drop.is_cancelled()
    }

    /// Resolves with the next redirect control asks for (cancel-safe: one that is not taken
    /// stays in the slot).
    pub async fn redirected(&mut self) -> Redirect {
        loop {
            self.redirect_signal().await;
            if let Some(r) = self.take_redirect() {
                return r;
            }
        }
    }

    /// Resolves when control may have asked for a redirect since this handle last looked
    /// ([`ClientHandle::take_redirect`]). Owned, so a loop can keep one waiting across its
    /// turns instead of registering a waiter on every turn.
    pub fn redirect_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        // A clone starts from what this handle has seen: nothing sent since is missed.
        let mut rx = self.redirect.clone();
        async move {
            // The sender lives in our own entry, so the channel never closes.
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The redirect waiting in the slot, if control sent one this handle has not taken.
    pub fn take_redirect(&mut self) -> Option<Redirect> {
        if !self.redirect.has_changed().unwrap_or(false) {
            return None;
        }
        self.redirect.borrow_and_update().clone()
    }

    /// Update a relay leg's state (see [`RelayState`]).
    pub fn update_relay(&self, update: impl FnOnce(&mut RelayState)) {
        update(lock(&self.entry.relay).get_or_insert_with(RelayState::default));
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        {
            let mut map = lock(&self.clients.map);
            let e = &self.entry;
            self.clients.gone_in.fetch_add(e.bytes_in.load(Ordering::Relaxed), Ordering::Relaxed);
            self.clients.gone_out.fetch_add(e.bytes_out.load(Ordering::Relaxed), Ordering::Relaxed);
            map.remove(&e.id);
        }
        self.log_access();
    }
}

impl ClientHandle {
    /// The session's access log line (every session ends here). Relay legs are not logged,
    /// as in nginx-rtmp.
    fn log_access(&self) {
        let e = &self.entry;
        if e.kind == Kind::Relay || !e.access_logs.logs_server(e.srv) {
            return;
        }
        let meta = lock(&e.meta);
        let session = crate::logs::Session {
            id: e.id,
            addr: e.addr.ip(),
            app: &meta.app,
            name: &meta.last_name,
            args: &meta.last_args,
            connect: &meta.connect,
            played: meta.played,
            published: meta.published,
            bytes_in: e.bytes_in.load(Ordering::Relaxed),
            bytes_out: e.bytes_out.load(Ordering::Relaxed),
            duration: e.since.elapsed(),
        };
        e.access_logs.session_ended(e.srv, &session);
    }
}

/// The registry's locks guard plain data that no panic leaves half-written: a poisoned lock
/// is still good to use.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8, port: u16) -> SocketAddr {
        ([10, 0, 0, last], port).into()
    }

    #[test]
    fn register_lists_and_unregisters_on_drop() {
        let clients = Arc::new(Clients::new(8));
        let a = clients.register(addr(1, 1000), Kind::Rtmp, 0).unwrap();
        let b = clients.register(addr(2, 1000), Kind::Rtmp, 0).unwrap();
        assert_ne!(a.id(), b.id());
        a.set_app("live");
        a.set_stream("cam", Role::Publisher);
        a.add_in(100);
        a.add_in(23);
        a.add_out(7);
        let got = clients.get(a.id()).unwrap();
        assert_eq!((got.app.as_str(), got.name.as_str(), got.role), ("live", "cam", Role::Publisher));
        assert_eq!((got.bytes_in, got.bytes_out, got.addr, got.kind), (123, 7, addr(1, 1000), Kind::Rtmp));
        assert_eq!(clients.list().len(), 2);
        a.clear_stream(Role::Player);
        assert_eq!(clients.get(a.id()).unwrap().role, Role::Publisher, "clearing another role keeps this one");
        a.clear_stream(Role::Publisher);
        let got = clients.get(a.id()).unwrap();
        assert_eq!((got.name.as_str(), got.role), ("", Role::None));
        let id = a.id();
        drop(a);
        assert!(clients.get(id).is_none());
        assert_eq!(clients.list().into_iter().map(|c| c.id).collect::<Vec<_>>(), [b.id()]);
        drop(b);
        assert!(clients.is_empty());
    }

    #[test]
    fn the_registry_is_bounded() {
        let clients = Arc::new(Clients::new(2));
        let a = clients.register(addr(1, 1), Kind::Rtmp, 0).unwrap();
        let _b = clients.register(addr(1, 2), Kind::Rtmp, 0).unwrap();
        assert!(clients.register(addr(1, 3), Kind::Rtmp, 0).is_none(), "full");
        assert_eq!(clients.len(), 2);
        drop(a);
        assert!(clients.register(addr(1, 4), Kind::Rtmp, 0).is_some(), "room again once one left");
    }

    #[test]
    fn totals_keep_the_bytes_of_clients_that_left_and_count_accepted() {
        let clients = Arc::new(Clients::new(2));
        let a = clients.register(addr(1, 1), Kind::Rtmp, 0).unwrap();
        let b = clients.register(addr(1, 2), Kind::HttpFlv, 0).unwrap();
        assert!(clients.register(addr(1, 3), Kind::Relay, 0).is_none(), "full");
        assert!(clients.register(addr(1, 4), Kind::Rtmp, 0).is_none(), "full");
        a.add_in(10);
        a.add_out(20);
        b.add_out(5);
        assert_eq!(clients.totals(), Totals { bytes_in: 10, bytes_out: 25 });
        drop(a);
        assert_eq!(clients.totals(), Totals { bytes_in: 10, bytes_out: 25 }, "a's bytes stay counted");
        b.add_in(1);
        drop(b);
        assert_eq!(clients.totals(), Totals { bytes_in: 11, bytes_out: 25 });
        assert_eq!(clients.accepted(), 3, "refused connections count; relay legs (ours) do not");
    }

    #[test]
    fn drop_where_signals_only_the_matching_clients() {
        let clients = Arc::new(Clients::new(16));
        let publisher = clients.register(addr(1, 1), Kind::Rtmp, 0).unwrap();
        publisher.set_app("live");
        publisher.set_stream("cam", Role::Publisher);
        let player = clients.register(addr(2, 1), Kind::Rtmp, 0).unwrap();
        player.set_app("live");
        player.set_stream("cam", Role::Player);
        let other = clients.register(addr(2, 2), Kind::Rtmp, 0).unwrap();
        other.set_app("tv");
        other.set_stream("news", Role::Player);
        let idle = clients.register(addr(1, 2), Kind::Rtmp, 0).unwrap();
        idle.set_app("live");
        let all = [&publisher, &player, &other, &idle];
        let dropped = |hs: &[&ClientHandle]| hs.iter().map(|h| h.is_dropped()).collect::<Vec<_>>();

        let f = |m| Filter::new(m);
        assert_eq!(clients.drop_where(&Filter { name: Some("nope".into()), ..f(Method::Client) }), 0);
        assert_eq!(clients.drop_where(&Filter { addr: Some("10.0.0.9".into()), ..f(Method::Client) }), 0);
        assert_eq!(dropped(&all), [false; 4]);

        assert_eq!(clients.drop_where(&Filter { app: Some("live".into()), ..f(Method::Subscriber) }), 1);
        assert_eq!(dropped(&all), [false, true, false, false]);
        assert_eq!(clients.drop_where(&Filter { addr: Some("10.0.0.1".into()), ..f(Method::Publisher) }), 1);
        assert_eq!(dropped(&all), [true, true, false, false]);
        assert_eq!(clients.drop_where(&Filter { clientid: Some(other.id()), ..f(Method::Client) }), 1);
        assert_eq!(dropped(&all), [true, true, true, false], "a client in no stream is never matched");
        assert_eq!(clients.drop_where(&Filter { srv: 1, ..f(Method::Client) }), 0, "another server block's");
        assert_eq!(clients.drop_where(&f(Method::Client)), 3, "drop counts whom it told, again");
        assert!(!idle.is_dropped());
        let second = clients.register(addr(3, 1), Kind::Rtmp, 1).unwrap();
        second.set_stream("cam", Role::Player);
        assert_eq!(clients.drop_where(&Filter { srv: 1, ..f(Method::Subscriber) }), 1);
        assert!(second.is_dropped());
    }

    #[tokio::test]
    async fn dropped_resolves_once_drop_where_matched() {
        let clients = Arc::new(Clients::new(4));
        let h = clients.register(addr(1, 1), Kind::Rtmp, 0).unwrap();
        h.set_stream("cam", Role::Publisher);
        let wait = h.dropped();
        assert_eq!(clients.drop_where(&Filter::new(Method::Publisher)), 1);
        tokio::time::timeout(Duration::from_secs(5), wait).await.expect("dropped resolves");
    }

    /// Redirect tells only the matching clients, with the role each had when it matched; a
    /// second redirect before the first was taken replaces it (one slot, nothing queues).
    #[tokio::test]
    async fn redirect_where_fills_one_slot_per_matching_client() {
        let clients = Arc::new(Clients::new(8));
        let mut publisher = clients.register(addr(1, 1), Kind::Rtmp, 0).unwrap();
        publisher.set_app("live");
        publisher.set_stream("cam", Role::Publisher);
        let mut player = clients.register(addr(2, 1), Kind::Rtmp, 0).unwrap();
        player.set_app("live");
        player.set_stream("cam", Role::Player);
        let mut idle = clients.register(addr(3, 1), Kind::Rtmp, 0).unwrap();
        idle.set_app("live");
        let soon = Duration::from_millis(50);
        let f = |m| Filter { app: Some("live".into()), ..Filter::new(m) };

        assert_eq!(clients.redirect_where(&Filter { name: Some("other".into()), ..f(Method::Client) }, "x", ""), 0);
        assert_eq!(clients.redirect_where(&f(Method::Subscriber), "first", ""), 1);
        assert_eq!(clients.redirect_where(&f(Method::Subscriber), "second", "k=1"), 1);
        let got = tokio::time::timeout(Duration::from_secs(5), player.redirected()).await.unwrap();
        assert_eq!(
            got,
            Redirect { role: Role::Player, name: "second".into(), args: "k=1".into() },
            "the last one wins"
        );
        assert!(tokio::time::timeout(soon, player.redirected()).await.is_err(), "taken: nothing left");
        assert!(tokio::time::timeout(soon, publisher.redirected()).await.is_err(), "not a subscriber");

        assert_eq!(clients.redirect_where(&f(Method::Client), "all", ""), 2, "a client in no stream is not counted");
        let got = tokio::time::timeout(Duration::from_secs(5), publisher.redirected()).await.unwrap();
        assert_eq!((got.role, got.name.as_str()), (Role::Publisher, "all"));
        assert_eq!(tokio::time::timeout(soon, player.redirected()).await.unwrap().name, "all");
        assert!(tokio::time::timeout(soon, idle.redirected()).await.is_err());
        assert!(!publisher.is_dropped() && !player.is_dropped(), "a redirect drops no one");
    }

    /// Polls the registry until `ok` holds for its list; the list it saw last otherwise.
    async fn until(clients: &Clients, ok: impl Fn(&[ClientSnapshot]) -> bool) -> Vec<ClientSnapshot> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let list = clients.list();
            if ok(&list) || Instant::now() > deadline {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn find(list: &[ClientSnapshot], role: Role) -> Option<&ClientSnapshot> {
        list.iter().find(|c| c.role == role)
    }

    /// A real RTMP publisher and player (sluice's own client) show in the registry with their
    /// app, stream and role and growing byte counts; dropping the publisher closes it.
    #[tokio::test]
    async fn rtmp_clients_are_listed_counted_and_dropped() {
        use crate::client::RtmpClient;
        use rtmp::{MediaKind, Role as RtmpRole};

        let (addr, clients, stop) = start_server().await;
        let mut publisher = RtmpClient::connect(addr, "live", RtmpRole::Publish("cam".into())).await.unwrap();
        assert_eq!(publisher.next_status().await.unwrap(), "NetStream.Publish.Start");
        publisher.send_media(MediaKind::Video, 0, AVC_SEQ).await.unwrap();
        let mut player = RtmpClient::connect(addr, "live", RtmpRole::Play("cam".into())).await.unwrap();
        assert_eq!(player.next_status().await.unwrap(), "NetStream.Play.Start");

        let both = |l: &[ClientSnapshot]| find(l, Role::Publisher).is_some() && find(l, Role::Player).is_some();
        let list = until(&clients, both).await;
        assert_eq!(list.len(), 2, "{list:?}");
        let (p, s) = (find(&list, Role::Publisher).unwrap().clone(), find(&list, Role::Player).unwrap().clone());
        for c in [&p, &s] {
            assert_eq!((c.app.as_str(), c.name.as_str(), c.kind), ("live", "cam", Kind::Rtmp), "{c:?}");
            assert_eq!(c.addr.ip(), addr.ip());
            assert!(c.bytes_in > 0 && c.bytes_out > 0, "handshake and commands counted: {c:?}");
        }

        // Media in from the publisher, out to the player.
        for i in 0..20u32 {
            let mut frame = vec![if i == 0 { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
            frame.resize(2000, 0xAB);
            publisher.send_media(MediaKind::Video, i * 40, &frame).await.unwrap();
        }
        let grown = |l: &[ClientSnapshot]| {
            l.iter().find(|c| c.id == p.id).is_some_and(|c| c.bytes_in >= p.bytes_in + 20 * 2000)
                && l.iter().find(|c| c.id == s.id).is_some_and(|c| c.bytes_out >= s.bytes_out + 19 * 2000)
        };
        let list = until(&clients, grown).await;
        assert!(grown(&list), "bytes grew: before {p:?} {s:?}, now {list:?}");
        // What each said at connect, and the last media timestamp each sent or was sent.
        let publisher_now = list.iter().find(|c| c.id == p.id).unwrap();
        assert_eq!(publisher_now.connect.flashver, "FMLE/3.0 (compatible; sluice)");
        assert_eq!(publisher_now.connect.tcurl, format!("rtmp://{addr}/live"));
        assert_eq!(publisher_now.timestamp, 19 * 40);
        let caught_up = |l: &[ClientSnapshot]| l.iter().find(|c| c.id == s.id).is_some_and(|c| c.timestamp == 19 * 40);
        let list = until(&clients, caught_up).await;
        assert!(caught_up(&list), "the player's timestamp: {list:?}");

        let filter = Filter { app: Some("live".into()), name: Some("cam".into()), ..Filter::new(Method::Publisher) };
        assert_eq!(clients.drop_where(&filter), 1);
        let closed = async { while publisher.next_event().await.is_ok() {} };
        tokio::time::timeout(Duration::from_secs(20), closed).await.expect("the dropped publisher's connection closes");
        let list = until(&clients, |l| l.len() == 1).await;
        assert_eq!(list.iter().map(|c| c.id).collect::<Vec<_>>(), [s.id], "only the player is left");

        drop(player);
        stop.await;
        assert!(clients.is_empty());
    }

    /// An H.264 sequence header (FLV video tag body).
    const AVC_SEQ: &[u8] = &[
        0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02,
        0x68, 0xee,
    ];

    /// A server with `application live { live on; }` on a free port: its address, its clients
    /// registry and a future that stops it.
    async fn start_server() -> (SocketAddr, Arc<Clients>, impl std::future::Future<Output = ()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = crate::config::Config::parse("rtmp { server { application live { live on; } } }", "t").unwrap();
        let shutdown = CancellationToken::new();
        let hub = crate::hub::Hub::new();
        let shared = crate::server::Shared {
            hub: hub.clone(),
            hls: crate::hls::HlsStore::new(shutdown.clone()),
            dash: crate::dash::DashStore::new(shutdown.clone()),
            notices: Default::default(),
            records: crate::record::Recorders::new(1),
            access: Default::default(),
            notifier: Default::default(),
            streams: crate::streams::Streams::new(hub, Arc::new([]), Default::default()),
            clients: Default::default(),
            directory: None,
        };
        let clients = shared.clients.clone();
        let ctx = Arc::new(crate::server::ServerCtx::new(config.servers[0].clone(), 0, &shared, shutdown.clone()));
        let tracker = tokio_util::task::TaskTracker::new();
        tracker.spawn(crate::server::serve(listener, ctx, tracker.clone()));
        let stop = async move {
            shutdown.cancel();
            tracker.close();
            tokio::time::timeout(Duration::from_secs(20), tracker.wait()).await.expect("server stops");
        };
        (addr, clients, stop)
    }

    /// The events up to and including the next `onStatus` with `code`, media left out.
    async fn events_until(c: &mut crate::client::RtmpClient, code: &str) -> Vec<rtmp::ClientEvent> {
        let mut seen = Vec::new();
        let wait = async {
            loop {
                let ev = c.next_event().await.expect("connection open");
                let done = matches!(&ev, rtmp::ClientEvent::Status { code: c, .. } if c == code);
                if !matches!(ev, rtmp::ClientEvent::Media { .. }) {
                    seen.push(ev);
                }
                if done {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait).await.unwrap_or_else(|_| panic!("no {code}"));
        seen
    }

    /// The next video payload the client gets.
    async fn next_video(c: &mut crate::client::RtmpClient) -> bytes::Bytes {
        let wait = async {
            loop {
                if let rtmp::ClientEvent::Media { kind: rtmp::MediaKind::Video, payload, .. } =
                    c.next_event().await.expect("connection open")
                {
                    return payload;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait).await.expect("a video message")
    }

    /// What nginx-rtmp's redirect puts on the wire, with sluice's own client: a player gets the
    /// old stream's Stream EOF, then the new play's Stream Begin and Play.Start and the new
    /// stream's sequence header and frames; a publisher gets Unpublish.Success then
    /// Publish.Start, and its sequence header and next frames land in the new stream.
    #[tokio::test]
    async fn redirect_on_the_wire() {
        use crate::client::RtmpClient;
        use rtmp::message::user_control::{STREAM_BEGIN, STREAM_EOF};
        use rtmp::{ClientEvent, MediaKind, Role as RtmpRole};

        let (addr, clients, stop) = start_server().await;
        let mut cam = RtmpClient::connect(addr, "live", RtmpRole::Publish("cam".into())).await.unwrap();
        assert_eq!(cam.next_status().await.unwrap(), "NetStream.Publish.Start");
        cam.send_media(MediaKind::Video, 0, AVC_SEQ).await.unwrap();
        let mut news = RtmpClient::connect(addr, "live", RtmpRole::Publish("news".into())).await.unwrap();
        assert_eq!(news.next_status().await.unwrap(), "NetStream.Publish.Start");
        let news_seq = [AVC_SEQ, &[0xAA]].concat();
        news.send_media(MediaKind::Video, 0, &news_seq).await.unwrap();
        let mut player = RtmpClient::connect(addr, "live", RtmpRole::Play("cam".into())).await.unwrap();
        assert_eq!(player.next_status().await.unwrap(), "NetStream.Play.Start");
        let playing = |l: &[ClientSnapshot]| l.iter().any(|c| c.role == Role::Player);
        assert!(playing(&until(&clients, playing).await));

        let subscriber = Filter { name: Some("cam".into()), ..Filter::new(Method::Subscriber) };
        assert_eq!(clients.redirect_where(&subscriber, "news", ""), 1);
        let seen = events_until(&mut player, "NetStream.Play.Start").await;
        let sid = 1;
        let status = |code: &str, description: &str| ClientEvent::Status {
            level: "status".into(),
            code: code.into(),
            description: description.into(),
        };
        assert_eq!(
            seen,
            [
                ClientEvent::StreamControl(STREAM_EOF, sid),
                ClientEvent::StreamControl(STREAM_BEGIN, sid),
                status("NetStream.Play.Start", "Started playing news.")
            ]
        );
        assert_eq!(next_video(&mut player).await, news_seq, "news' sequence header first");
        let frame = [&[0x17u8, 0x01, 0, 0, 0][..], &[0xBB; 100]].concat();
        news.send_media(MediaKind::Video, 40, &frame).await.unwrap();
        assert_eq!(next_video(&mut player).await, frame, "then news' frames");

        let publisher = Filter { name: Some("cam".into()), ..Filter::new(Method::Publisher) };
        assert_eq!(clients.redirect_where(&publisher, "cam2", ""), 1);
        let seen = events_until(&mut cam, "NetStream.Publish.Start").await;
        let codes: Vec<&str> = seen
            .iter()
            .filter_map(|e| if let ClientEvent::Status { code, .. } = e { Some(code.as_str()) } else { None })
            .collect();
        assert_eq!(codes, ["NetStream.Unpublish.Success", "NetStream.Publish.Start"]);
        let mut viewer = RtmpClient::connect(addr, "live", RtmpRole::Play("cam2".into())).await.unwrap();
        assert_eq!(viewer.next_status().await.unwrap(), "NetStream.Play.Start");
        assert_eq!(next_video(&mut viewer).await, AVC_SEQ, "cam's sequence header came along");
        cam.send_media(MediaKind::Video, 40, &frame).await.unwrap();
        assert_eq!(next_video(&mut viewer).await, frame, "cam's frames land in cam2");
        assert!(clients.list().iter().all(|c| c.name != "cam"), "cam is gone");

        drop((cam, news, player, viewer));
        stop.await;
    }
}

//! nginx-rtmp's HTTP callbacks (`ngx_rtmp_notify_module.c`), so auth backends written for
//! nginx-rtmp work unchanged, plus HTTPS.
//!
//! | directive | where | called | may refuse |
//! |---|---|---|---|
//! | `on_connect URL` | rtmp, server | on `connect` (`call=connect`) | yes: `NetConnection.Connect.Rejected`; a 3xx `Location` names another application |
//! | `on_play URL` | rtmp, server, application | on `play` (`call=play`) | yes: `NetStream.Play.Failed`; 3xx plays the stream `Location` names |
//! | `on_publish URL` | rtmp, server, application | on `publish` (`call=publish`) | yes: `NetStream.Publish.BadName`; 3xx publishes under the name `Location` gives |
//! | `on_play_done URL` | rtmp, server, application | when playing stops (`call=play_done`) | no |
//! | `on_publish_done URL` | rtmp, server, application | when publishing stops (`call=publish_done`) | no |
//! | `on_done URL` | rtmp, server, application | after either (`call=done`) | no |
//! | `on_record_done URL` | rtmp, server, application, recorder | a recording file is closed (`call=record_done`) | no |
//! | `on_update URL` | rtmp, server, application | every `notify_update_timeout` while publishing/playing (`call=update_publish`, `update_play`) | a 4xx/5xx drops the client; with `notify_update_strict on` any failure does |
//! | `on_disconnect URL` | rtmp, server | when the connection ends (`call=disconnect`) | no |
//! | `notify_method get\|post` | rtmp, server, application | fields in the query or as a form body (post) | |
//! | `notify_update_timeout T` | rtmp, server, application | `on_update` interval (30s) | |
//! | `notify_update_strict on\|off` | rtmp, server, application | see `on_update` (off) | |
//! | `notify_relay_redirect on\|off` | rtmp, server, application | an `rtmp://` 3xx names the local stream by the location's MD5 (off) | |
//! | `notify_timeout T` | rtmp, server, application | sluice: a callback without a reply this soon refuses (5s) | |
//! | `notify_tls_verify on\|off` | rtmp, server, application | sluice: check `https://` certificates against the system's roots (on) | |
//!
//! Fields are sent exactly as Debian's nginx-rtmp 1.2.2 sends them (observed side by side
//! with the same backend; `tests/access.rs` keeps what was seen): first the session's `app,
//! flashver, swfurl, tcurl, pageurl, addr, clientid` (connect sends `epoch` instead of
//! `clientid`), then `call` and the call's own fields, then the stream name's query string as
//! it came (`stream?key=abc` adds `key=abc`, not re-encoded). Values are escaped as nginx's
//! `ngx_escape_uri(NGX_ESCAPE_ARGS)` does. One deliberate difference: with `notify_method get`
//! and a URL that has a query already, fields are joined with `&` (nginx-rtmp adds a second `?`).
//!
//! Reply rules ([`interpret`]): 2xx allows; 3xx with `Location` renames/redirects, an `rtmp://`
//! location is a relay ([`Reply::Relay`]); anything else, no reply within `notify_timeout` or no
//! connection refuses (fail closed). What each answer means for a client is decided in
//! [`crate::policy`]. Calls run on the caller's task without blocking anything else, on pooled
//! keep-alive connections.
//!
//! One backend (`host:port`) cannot starve another, and calls nobody waits for cannot starve
//! calls a client waits for: each backend has its own bound on blocking calls in flight
//! ([`MAX_BLOCKING_PER_BACKEND`]: connect, publish, play, update) and its own bounded queue of
//! fire-and-forget calls (`*_done`, `disconnect`, `record_done`; [`BACKGROUND_QUEUE`] batches,
//! [`BACKGROUND_PER_BACKEND`] in flight), which never waits: when full, calls are dropped with
//! one log line. URLs reach logs through [`log_url`] (secret query values masked), and
//! reqwest's errors without their URL (a GET's carries the client's `key=`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use crate::config::{NotifyConf, NotifyMethod};
use crate::events::{ClientInfo, Notice};
use crate::server::ServerCtx;
use crate::untrusted::{for_log, redact_query};

/// Most calls a client waits for (connect, publish, play, update) in flight at once to one
/// backend; more wait for a slot (within their timeout).
pub const MAX_BLOCKING_PER_BACKEND: usize = 64;
/// Most fire-and-forget batches (one connection's `*_done`, `disconnect`, `record_done`) in
/// flight at once to one backend.
pub const BACKGROUND_PER_BACKEND: usize = 32;
/// Fire-and-forget batches waiting per backend; more are dropped (and logged).
pub const BACKGROUND_QUEUE: usize = 1024;
/// Most callback backends (`host:port`) with bounds of their own; a config naming more shares
/// one set of bounds among the rest.
pub const MAX_BACKENDS: usize = 256;
/// Idle keep-alive connections kept per callback host.
const MAX_IDLE_PER_HOST: usize = 16;
/// How long an idle callback connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most reply body read (and thrown away) so the connection can be reused.
const MAX_BODY: usize = 64 * 1024;
/// After shutdown starts, recordings still closing get this long to be reported.
const RECORD_DONE_GRACE: Duration = Duration::from_secs(3);

/// What a callback's reply means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 2xx, or 3xx without a usable `Location`: go on.
    Allow,
    /// 3xx with `Location: NAME`: use that name instead.
    Redirect(String),
    /// 3xx with `Location: rtmp://...`: relay (push for `on_publish`, pull for `on_play`).
    Relay(String),
    /// Any other status: refused.
    Refuse(u16),
}

/// Why a callback got no reply: both refuse (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No reply within `notify_timeout`.
    #[error("no reply within {0:?} (notify_timeout)")]
    Timeout(Duration),
    /// Could not connect, TLS failed, or the reply was not HTTP.
    #[error("callback server unreachable: {0}")]
    Unreachable(String),
}

/// Interpret a reply as nginx-rtmp does (`ngx_rtmp_notify_parse_http_retcode` and the
/// `Location` handling of the publish/play handlers).
pub fn interpret(status: u16, location: Option<&str>) -> Reply {
    match status / 100 {
        2 => Reply::Allow,
        3 => match location.map(str::trim).filter(|l| !l.is_empty()) {
            None => Reply::Allow,
            Some(l) if l.len() >= 7 && l[..7].eq_ignore_ascii_case("rtmp://") => Reply::Relay(l.to_owned()),
            Some(l) => Reply::Redirect(l.to_owned()),
        },
        _ => Reply::Refuse(status),
    }
}

/// nginx's `ngx_escape_uri(..., NGX_ESCAPE_ARGS)`, as Debian's nginx 1.22 escapes callback
/// values: controls, space, non-ASCII and `"#%&+;<>?\^`{|}` become `%XX` (upper-case hex);
/// everything else (`/`, `:`, `=`, `,`, `(`, `@`, ...) stays.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        let escaped = b <= 0x20
            || b >= 0x7f
            || matches!(b, b'"' | b'#' | b'%' | b'&' | b'+' | b';' | b'<' | b'>' | b'?' | b'\\' | b'^' | b'`')
            || matches!(b, b'{' | b'|' | b'}');
        if escaped {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// A form being built, field by field in nginx-rtmp's order.
#[derive(Debug, Clone, Default)]
pub struct Form(String);

impl Form {
    /// `key=value`, the value escaped.
    pub fn field(mut self, key: &str, value: &str) -> Self {
        self.sep();
        self.0.push_str(key);
        self.0.push('=');
        self.0.push_str(&escape(value));
        self
    }

    /// `key=N`.
    pub fn number(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.sep();
        self.0.push_str(&format!("{key}={value}"));
        self
    }

    /// A query string appended as it came (nginx-rtmp does not re-encode it).
    pub fn raw(mut self, query: &str) -> Self {
        if !query.is_empty() {
            self.sep();
            self.0.push_str(query);
        }
        self
    }

    fn sep(&mut self) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
    }

    /// The encoded form.
    pub fn finish(self) -> String {
        self.0
    }
}

/// nginx-rtmp keeps `flashVer` in a 32-byte buffer, so backends see at most 31 bytes of it
/// (`FMLE/3.0 (compatible; Lavf59.27` for ffmpeg's `...Lavf59.27.100)`).
const FLASHVER_MAX: usize = 31;

/// `flashVer` cut as nginx-rtmp cuts it (at a character boundary).
fn flashver(s: &str) -> &str {
    if s.len() <= FLASHVER_MAX {
        return s;
    }
    let mut end = FLASHVER_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The peer address as nginx-rtmp writes `addr`. An IPv4 client of a dual-stack listener
/// (`::ffff:10.0.0.1`) is written as IPv4 (`10.0.0.1`), as nginx's IPv4 listener reports it,
/// so backends checking addresses see one form.
fn addr_text(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

/// The client's fields, in nginx-rtmp's order.
fn client_fields(c: &ClientInfo) -> Form {
    Form::default()
        .field("app", &c.app)
        .field("flashver", flashver(&c.flash_ver))
        .field("swfurl", &c.swf_url)
        .field("tcurl", &c.tc_url)
        .field("pageurl", &c.page_url)
        .field("addr", &addr_text(c.addr.ip()))
}

/// The fields every call after connect starts with.
pub fn session_form(c: &ClientInfo) -> Form {
    client_fields(c).number("clientid", c.id)
}

/// `on_connect`: the session is not set up yet, so nginx-rtmp sends `epoch` (the session's
/// start in ms) instead of `clientid`, and the application's query string last.
pub fn connect_form(c: &ClientInfo, epoch: u32, app_args: &str) -> String {
    client_fields(c).number("epoch", epoch).field("call", "connect").raw(app_args).finish()
}

/// `on_publish`.
pub fn publish_form(c: &ClientInfo, name: &str, kind: &str, args: &str) -> String {
    session_form(c).field("call", "publish").field("name", name).field("type", kind).raw(args).finish()
}

/// `on_play`. `start` and `duration` are the `play` command's (ms; negative ones wrap to
/// unsigned 32-bit, as nginx-rtmp prints them: -2000 is 4294965296).
pub fn play_form(c: &ClientInfo, name: &str, start: f64, duration: f64, reset: bool, args: &str) -> String {
    let u32_of = |v: f64| (v as i64) as u32;
    session_form(c)
        .field("call", "play")
        .field("name", name)
        .number("start", u32_of(start))
        .number("duration", u32_of(duration))
        .number("reset", u8::from(reset))
        .raw(args)
        .finish()
}

/// `on_publish_done` (`call=publish_done`), `on_play_done` (`play_done`), `on_done` (`done`).
pub fn done_form(c: &ClientInfo, call: &str, name: &str, args: &str) -> String {
    session_form(c).field("call", call).field("name", name).raw(args).finish()
}

/// `on_update`: `call=update_publish` or `update_play`, seconds since the stream started and
/// the last media timestamp (ms).
pub fn update_form(c: &ClientInfo, publishing: bool, time: u64, timestamp: u32, name: &str, args: &str) -> String {
    let call = if publishing { "update_publish" } else { "update_play" };
    session_form(c)
        .field("call", call)
        .number("time", time)
        .number("timestamp", timestamp)
        .field("name", name)
        .raw(args)
        .finish()
}

/// `on_record_done`.
pub fn record_done_form(c: &ClientInfo, recorder: &str, name: &str, path: &str, args: &str) -> String {
    session_form(c)
        .field("call", "record_done")
        .field("recorder", recorder)
        .field("name", name)
        .field("path", path)
        .raw(args)
        .finish()
}

/// `on_disconnect`: nginx-rtmp repeats `app` and adds the application's query string.
pub fn disconnect_form(c: &ClientInfo, app_args: &str) -> String {
    session_form(c).field("call", "disconnect").field("app", &c.app).raw(app_args).finish()
}

/// One callback to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// What it is about (`publish`, `play_done`, ...), for logs.
    pub call: &'static str,
    /// Where to send it.
    pub url: String,
    /// GET or POST.
    pub method: NotifyMethod,
    /// The encoded fields.
    pub form: String,
    /// `notify_timeout`.
    pub timeout: Duration,
    /// `notify_tls_verify`.
    pub tls_verify: bool,
}

impl Call {
    /// A call to `url` with the application's method, timeout and TLS settings.
    pub fn new(conf: &NotifyConf, call: &'static str, url: &str, form: String) -> Self {
        Call {
            call,
            url: url.to_owned(),
            method: conf.method,
            form,
            timeout: conf.timeout,
            tls_verify: conf.tls_verify,
        }
    }

    /// The URL a GET goes to: fields after `?`, or after `&` when the URL has a query.
    pub fn get_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}{}", self.url, self.form)
    }
}

/// The pooled HTTP(S) clients, one per `notify_tls_verify` setting, built on first use (so a
/// server without callbacks never loads the system's certificates).
#[derive(Default)]
struct Clients {
    verified: OnceLock<Result<reqwest::Client, String>>,
    unverified: OnceLock<Result<reqwest::Client, String>>,
}

impl Clients {
    fn client(&self, tls_verify: bool) -> Result<reqwest::Client, CallError> {
        let cell = if tls_verify { &self.verified } else { &self.unverified };
        let built = cell.get_or_init(|| build_client(tls_verify).map_err(|e| error_chain(&e)));
        built.clone().map_err(|e| CallError::Unreachable(format!("HTTP client setup failed: {e}")))
    }

    /// Send the request and interpret the reply (no timeout here: callers set it).
    async fn exchange(&self, call: &Call) -> Result<Reply, CallError> {
        let client = self.client(call.tls_verify)?;
        let request = match call.method {
            NotifyMethod::Get => client.get(call.get_url()),
            NotifyMethod::Post => client
                .post(&call.url)
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(call.form.clone()),
        };
        // reqwest's errors name the URL, which with GET carries the client's query (`key=`):
        // never let it reach a log.
        let mut response = request.send().await.map_err(|e| CallError::Unreachable(error_chain(&e.without_url())))?;
        let status = response.status().as_u16();
        let location = response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok());
        let reply = interpret(status, location);
        // Read a small body to the end so the connection goes back to the pool.
        let mut read = 0;
        while let Ok(Some(chunk)) = response.chunk().await {
            read += chunk.len();
            if read > MAX_BODY {
                break;
            }
        }
        Ok(reply)
    }

    /// One fire-and-forget call with its own `notify_timeout`; the outcome is only logged.
    async fn report(&self, call: &Call, client: &str) {
        let url = log_url(&call.url);
        let outcome = tokio::time::timeout(call.timeout, self.exchange(call)).await;
        crate::metrics::callback_timed(call.call, &outcome);
        match outcome {
            Ok(Ok(reply)) => tracing::debug!(client = %client, url = %url, "notify {}: {reply:?}", call.call),
            Ok(Err(e)) => tracing::warn!(client = %client, url = %url, "notify {} failed: {e}", call.call),
            Err(_) => {
                let e = CallError::Timeout(call.timeout);
                tracing::warn!(client = %client, url = %url, "notify {} failed: {e}", call.call)
            }
        }
    }
}

/// Fire-and-forget calls of one connection for one backend, made in order.
struct Batch {
    calls: Vec<Call>,
    client: String,
}

/// One callback server (`host:port`): its own bound on blocking calls, and its own queue and
/// bound for fire-and-forget calls, so a hung backend holds only its own clients.
struct Backend {
    /// `host:port`, for logs.
    name: String,
    /// Blocking calls (connect, publish, play, update) in flight to this backend.
    blocking: Semaphore,
    /// Fire-and-forget batches waiting; the worker draining it starts on first use.
    queue: OnceLock<mpsc::Sender<Batch>>,
    /// Calls dropped since the queue was last found with room (0: not dropping now).
    dropped: AtomicU64,
}

impl Backend {
    fn new(name: String) -> Self {
        Backend {
            name,
            blocking: Semaphore::new(MAX_BLOCKING_PER_BACKEND),
            queue: OnceLock::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queue `batch` without waiting; when the queue is full it is dropped, with one log line
    /// per episode (when dropping starts, and when it stops with the count).
    fn enqueue(&self, batch: Batch, clients: &Arc<Clients>) {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(BACKGROUND_QUEUE);
            tokio::spawn(drain(clients.clone(), rx));
            tx
        });
        let calls = batch.calls.len() as u64;
        match queue.try_send(batch) {
            Ok(()) => {
                let dropped = self.dropped.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    tracing::warn!(backend = %self.name, "notify: queue has room again; {dropped} fire-and-forget calls were dropped");
                }
            }
            Err(mpsc::error::TrySendError::Full(batch)) => {
                if self.dropped.fetch_add(calls, Ordering::Relaxed) == 0 {
                    let what = batch.calls.iter().map(|c| c.call).collect::<Vec<_>>().join(",");
                    tracing::warn!(backend = %self.name, client = %batch.client, "notify: fire-and-forget queue full ({BACKGROUND_QUEUE} connections' calls wait for this backend); dropping {what} and more until it drains");
                }
            }
            // The worker is gone: the runtime is shutting down.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Makes one backend's fire-and-forget batches, at most [`BACKGROUND_PER_BACKEND`] at once.
async fn drain(clients: Arc<Clients>, mut queue: mpsc::Receiver<Batch>) {
    let slots = Arc::new(Semaphore::new(BACKGROUND_PER_BACKEND));
    while let Some(batch) = queue.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let clients = clients.clone();
        tokio::spawn(async move {
            for call in &batch.calls {
                clients.report(call, &batch.client).await;
            }
            drop(slot);
        });
    }
}

/// The backend a URL's calls count against: `host:port` (default port by scheme).
pub fn backend_key(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}:{}", u.host_str().unwrap_or(""), u.port_or_known_default().unwrap_or(0)),
        // Config URLs were parsed when the config was read; this is not reached.
        Err(_) => url.to_owned(),
    }
}

/// A callback URL as logs show it: values of secret query parameters (`?secret=..`) masked.
pub fn log_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, query)) => format!("{}?{}", for_log(base), redact_query(query)),
        None => for_log(url).into_owned(),
    }
}

/// Makes callbacks: pooled HTTP(S) clients, and per backend a bound on blocking calls in
/// flight and a bounded queue of fire-and-forget calls.
///
/// Backends are keyed by `host:port` of callback URLs, which come only from the config
/// (replies' `Location` is never followed), so the map holds at most one entry per distinct
/// backend in the config; [`MAX_BACKENDS`] caps it anyway, further backends sharing one entry.
#[derive(Default)]
pub struct Notifier {
    clients: Arc<Clients>,
    backends: Mutex<HashMap<String, Arc<Backend>>>,
    /// Shared by backends past [`MAX_BACKENDS`].
    overflow: OnceLock<Arc<Backend>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backends = self.backends.lock().map_or(0, |b| b.len());
        f.debug_struct("Notifier").field("backends", &backends).finish()
    }
}

impl Notifier {
    /// The backend of `url`, created on first use.
    fn backend(&self, url: &str) -> Arc<Backend> {
        let key = backend_key(url);
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = backends.get(&key) {
            return b.clone();
        }
        if backends.len() >= MAX_BACKENDS {
            return self
                .overflow
                .get_or_init(|| {
                    tracing::warn!(
                        "notify: more than {MAX_BACKENDS} callback backends; the rest share one set of bounds"
                    );
                    Arc::new(Backend::new("(others)".into()))
                })
                .clone();
        }
        backends.entry(key.clone()).or_insert_with(|| Arc::new(Backend::new(key))).clone()
    }

    /// Make a call a client waits for (connect, publish, play, update) and interpret the
    /// reply. Waiting for one of the backend's slots counts towards the timeout.
    pub async fn call(&self, call: &Call) -> Result<Reply, CallError> {
        let backend = self.backend(&call.url);
        let attempt = async {
            let _slot = backend.blocking.acquire().await.map_err(|_| CallError::Unreachable("shutting down".into()))?;
            self.clients.exchange(call).await
        };
        let result = match tokio::time::timeout(call.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout(call.timeout)),
        };
        crate::metrics::callback(call.call, result)
    }

    /// Make calls nobody waits for (`*_done`, `disconnect`, `record_done`) in the background:
    /// in order per backend, queued per backend (never waiting; dropped when the queue is
    /// full), so they can neither delay calls clients wait for nor other backends' calls.
    /// Outcomes are only logged.
    pub fn spawn_all(self: &Arc<Self>, calls: Vec<Call>, client: String) {
        let mut batches: Vec<(Arc<Backend>, Vec<Call>)> = Vec::new();
        for call in calls {
            let backend = self.backend(&call.url);
            match batches.iter_mut().find(|(b, _)| Arc::ptr_eq(b, &backend)) {
                Some((_, calls)) => calls.push(call),
                None => batches.push((backend, vec![call])),
            }
        }
        for (backend, calls) in batches {
            backend.enqueue(Batch { calls, client: client.clone() }, &self.clients);
        }
    }
}

fn build_client(tls_verify: bool) -> reqwest::Result<reqwest::Client> {
    // reqwest is built without a crypto provider of its own; ring is ours. Installing fails
    // harmlessly when one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
        .tls_danger_accept_invalid_certs(!tls_verify)
        .build()
}

/// An error and its causes on one line: reqwest's own message alone hides the reason.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Report finished recordings to `on_record_done` of every server block's applications (as
/// configured when the recording closes), until shutdown (and briefly after, while recorders
/// close their files).
pub async fn record_done_listener(servers: tokio::sync::watch::Receiver<Vec<Arc<ServerCtx>>>) {
    let Some(first) = servers.borrow().first().cloned() else { return };
    let mut notices = first.notices.subscribe();
    let shutdown = first.shutdown.clone();
    drop(first);
    let mut deadline = None;
    loop {
        let received = match deadline {
            None => tokio::select! {
                n = notices.recv() => n,
                _ = shutdown.cancelled() => {
                    if !servers.borrow().iter().any(|ctx| wants_record_done(ctx)) {
                        return;
                    }
                    deadline = Some(tokio::time::Instant::now() + RECORD_DONE_GRACE);
                    continue;
                }
            },
            Some(at) => match tokio::time::timeout_at(at, notices.recv()).await {
                Ok(n) => n,
                Err(_) => return,
            },
        };
        match received {
            Ok(notice) => {
                // The server blocks as configured now (a reload may have changed them).
                let current = servers.borrow().clone();
                for ctx in &current {
                    on_notice(ctx, notice.clone());
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("notify: {n} record_done notices missed (too many at once)")
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Whether an application of this server block calls `on_record_done`.
fn wants_record_done(ctx: &ServerCtx) -> bool {
    ctx.apps.iter().any(|a| a.notify.on_record_done.is_some() || !a.notify.recorder_record_done.is_empty())
}

fn on_notice(ctx: &ServerCtx, notice: Notice) {
    let Notice::RecordDone { client, name, args, recorder, path } = notice;
    let Some(app) = ctx.apps.iter().find(|a| a.name == client.app) else { return };
    let Some(url) = app.notify.record_done_url(&recorder) else { return };
    let path = path.to_string_lossy();
    tracing::info!(client = %client.addr, app = %app.name, stream = %name, recorder = %recorder, path = %path, "notify record_done {}", log_url(url));
    let form = record_done_form(&client, &recorder, &name, &path, &args);
    let call = Call::new(&app.notify, "record_done", url, form);
    ctx.notifier.spawn_all(vec![call], client.addr.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientInfo {
        ClientInfo {
            id: 7,
            addr: "127.0.0.1:50000".parse().unwrap(),
            app: "live".into(),
            flash_ver: "FMLE/3.0 (compatible; Lavf59.27".into(),
            swf_url: String::new(),
            tc_url: "rtmp://127.0.0.1:19350/live".into(),
            page_url: String::new(),
        }
    }

    const SESSION: &str = "app=live&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&clientid=7";

    #[test]
    fn escaping_matches_nginx_escape_args() {
        // Every printable ASCII character, a space, a non-ASCII letter and a tab, as Debian's
        // nginx-rtmp sent them back in `pageurl`.
        let all: String = (0x21u8..0x7f).map(char::from).chain(" é\t".chars()).collect();
        assert_eq!(
            escape(&all),
            "!%22%23$%25%26'()*%2B,-./0123456789:%3B%3C=%3E%3F@ABCDEFGHIJKLMNOPQRSTUVWXYZ[%5C]%5E_%60abcdefghijklmnopqrstuvwxyz%7B%7C%7D~%20%C3%A9%09"
        );
        assert_eq!(escape("a=b c"), "a=b%20c");
        assert_eq!(escape("we%20ird"), "we%2520ird");
    }

    #[test]
    fn forms_follow_nginx_rtmp_field_order() {
        let c = client();
        assert_eq!(
            publish_form(&c, "good", "live", "key=secret&x=a%20b"),
            format!("{SESSION}&call=publish&name=good&type=live&key=secret&x=a%20b")
        );
        assert_eq!(
            play_form(&c, "good", -2000.0, 0.0, false, "tok=1"),
            format!("{SESSION}&call=play&name=good&start=4294965296&duration=0&reset=0&tok=1")
        );
        assert_eq!(done_form(&c, "publish_done", "good", ""), format!("{SESSION}&call=publish_done&name=good"));
        assert_eq!(
            update_form(&c, true, 2, 1823, "good", "key=s"),
            format!("{SESSION}&call=update_publish&time=2&timestamp=1823&name=good&key=s")
        );
        assert_eq!(
            update_form(&c, false, 4, 0, "good", ""),
            format!("{SESSION}&call=update_play&time=4&timestamp=0&name=good")
        );
        assert_eq!(
            record_done_form(&c, "", "good", "/tmp/rec/good.flv", "key=s"),
            format!("{SESSION}&call=record_done&recorder=&name=good&path=/tmp/rec/good.flv&key=s")
        );
        assert_eq!(disconnect_form(&c, ""), format!("{SESSION}&call=disconnect&app=live"));
        assert_eq!(
            connect_form(&c, 5941406, "x=1"),
            "app=live&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&epoch=5941406&call=connect&x=1"
        );
    }

    #[test]
    fn ipv4_mapped_peers_are_reported_as_ipv4() {
        let mut c = client();
        c.addr = "[::ffff:10.1.2.3]:5000".parse().unwrap();
        assert!(session_form(&c).finish().contains("&addr=10.1.2.3&"));
        c.addr = "[2001:db8::1]:5000".parse().unwrap();
        assert!(session_form(&c).finish().contains("&addr=2001:db8::1&"));
    }

    #[test]
    fn urls_in_logs_hide_secrets() {
        assert_eq!(log_url("http://h/auth"), "http://h/auth");
        assert_eq!(log_url("http://h/auth?site=2&secret=abc&token=t"), "http://h/auth?site=2&secret=***&token=***");
        assert_eq!(log_url("http://h/a\nb?key=k"), "http://h/a\\nb?key=***");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn failed_calls_do_not_carry_the_clients_query_into_logs() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let conf = NotifyConf { method: NotifyMethod::Get, ..Default::default() };
        let call = Call::new(&conf, "publish", &format!("http://127.0.0.1:{port}/auth"), "key=s3cret".into());
        let Err(CallError::Unreachable(why)) = Notifier::default().call(&call).await else { panic!() };
        assert!(!why.contains("s3cret") && !why.contains("/auth"), "{why}");
    }

    #[test]
    fn backends_are_host_and_port() {
        assert_eq!(backend_key("http://auth.example:8080/on_publish?x=1"), "auth.example:8080");
        assert_eq!(backend_key("http://auth.example/p"), "auth.example:80");
        assert_eq!(backend_key("https://auth.example/p"), "auth.example:443");
        assert_eq!(backend_key("http://[::1]:9/p"), "[::1]:9");
        let n = Notifier::default();
        assert!(Arc::ptr_eq(&n.backend("http://a:1/x"), &n.backend("http://a:1/y?z")));
        assert!(!Arc::ptr_eq(&n.backend("http://a:1/x"), &n.backend("http://a:2/x")));
    }

    #[test]
    fn the_backend_map_is_bounded() {
        let n = Notifier::default();
        let first = n.backend("http://h0:1/");
        let last = (1..MAX_BACKENDS + 50).map(|i| n.backend(&format!("http://h{i}:1/"))).last().unwrap();
        assert_eq!(n.backends.lock().unwrap().len(), MAX_BACKENDS);
        assert_eq!(last.name, "(others)");
        assert!(Arc::ptr_eq(&first, &n.backend("http://h0:1/")), "known backends keep their own bounds");
    }

    /// Issue #9, defect 11: fire-and-forget calls to a hung backend queue up to a bound and are
    /// then dropped, and never take the slots of calls a client waits for.
    #[tokio::test(flavor = "current_thread")]
    async fn fire_and_forget_calls_are_queued_per_backend_and_dropped_when_full() {
        let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/done", hung.local_addr().unwrap());
        let n = Arc::new(Notifier::default());
        let conf = NotifyConf::default();
        let batch =
            || vec![Call::new(&conf, "done", &url, "a=1".into()), Call::new(&conf, "disconnect", &url, "b=2".into())];
        // The worker cannot run until this test yields, so exactly BACKGROUND_QUEUE fit.
        for i in 0..BACKGROUND_QUEUE + 10 {
            n.spawn_all(batch(), format!("127.0.0.1:{i}"));
        }
        let backend = n.backend(&url);
        assert_eq!(backend.dropped.load(Ordering::Relaxed), 20);
        assert_eq!(backend.blocking.available_permits(), MAX_BLOCKING_PER_BACKEND);
        assert_eq!(n.backends.lock().unwrap().len(), 1);
    }

    #[test]
    fn flashver_is_cut_like_nginx_rtmp_cuts_it() {
        let mut c = client();
        c.flash_ver = "FMLE/3.0 (compatible; Lavf59.27.100)".into();
        assert!(session_form(&c).finish().contains("&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&"));
        assert_eq!(flashver("ééééééééééééééééé"), "ééééééééééééééé");
        assert_eq!(flashver("LNX 9,0,124,2"), "LNX 9,0,124,2");
    }

    #[test]
    fn replies_are_read_as_nginx_rtmp_reads_them() {
        assert_eq!(interpret(200, None), Reply::Allow);
        assert_eq!(interpret(204, Some("ignored")), Reply::Allow);
        assert_eq!(interpret(302, Some("other")), Reply::Redirect("other".into()));
        assert_eq!(interpret(301, Some(" spaced ")), Reply::Redirect("spaced".into()));
        assert_eq!(interpret(302, None), Reply::Allow);
        assert_eq!(interpret(302, Some("")), Reply::Allow);
        assert_eq!(interpret(302, Some("RTMP://origin/live/x")), Reply::Relay("RTMP://origin/live/x".into()));
        assert_eq!(interpret(403, None), Reply::Refuse(403));
        assert_eq!(interpret(404, Some("x")), Reply::Refuse(404));
        assert_eq!(interpret(500, None), Reply::Refuse(500));
        assert_eq!(interpret(101, None), Reply::Refuse(101));
    }

    #[test]
    fn get_appends_fields_to_the_query() {
        let conf = NotifyConf::default();
        let call = Call::new(&conf, "publish", "http://h/auth", "a=1".into());
        assert_eq!(call.get_url(), "http://h/auth?a=1");
        let call = Call::new(&conf, "publish", "http://h/auth?site=2", "a=1".into());
        assert_eq!(call.get_url(), "http://h/auth?site=2&a=1");
        assert_eq!(call.timeout, Duration::from_secs(5));
        assert!(call.tls_verify);
    }

    #[test]
    fn notify_config_is_typed_and_checked() {
        use crate::config::Config;
        let c = Config::parse(
            "rtmp { notify_method get; server { on_connect 127.0.0.1:9/c; application live {
                on_publish https://auth.example/p?x=1; notify_timeout 2s; notify_tls_verify off;
                on_record_done http://h/all;
                recorder audio { on_record_done http://h/audio; }
            } } }",
            "t",
        )
        .unwrap();
        let n = &c.servers[0].apps[0].notify;
        assert_eq!(n.on_connect.as_deref(), Some("http://127.0.0.1:9/c"));
        assert_eq!(n.on_publish.as_deref(), Some("https://auth.example/p?x=1"));
        assert_eq!(n.method, NotifyMethod::Get);
        assert_eq!(n.timeout, Duration::from_secs(2));
        assert!(!n.tls_verify);
        assert_eq!(n.update_timeout, Duration::from_secs(30));
        assert_eq!(n.record_done_url("audio"), Some("http://h/audio"));
        assert_eq!(n.record_done_url(""), Some("http://h/all"));
        for (bad, col) in [("on_publish rtmp://x/y;", 12), ("on_play http://;", 9), ("notify_timeout 0;", 16)] {
            let text = format!("rtmp {{ server {{ application a {{\n{bad} }} }} }}");
            let err = Config::parse(&text, "f.conf").unwrap_err().to_string();
            assert!(err.starts_with(&format!("f.conf:2:{col}:")), "{bad}: {err}");
        }
        let err = Config::parse("rtmp { server { application a { on_connect http://h/; } } }", "t").unwrap_err();
        assert!(err.to_string().contains("not allowed here"), "{err}");
    }
}

//! Access control end to end: the real server, ffmpeg and our own client against an in-process
//! callback backend (HTTP and HTTPS): nginx-rtmp's callbacks with the fields nginx-rtmp sends,
//! allow/deny/redirect/timeout/unreachable, on_update, IP rules, max_connections, signed
//! tokens and publish keys.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::*;
use rtmp::{ClientEvent, Role};
use sluice::client::RtmpClient;

/// One request the backend received.
#[derive(Debug, Clone)]
struct Hit {
    method: String,
    path: String,
    /// The form: the body of a POST, the query of a GET.
    form: String,
}

impl Hit {
    fn field(&self, key: &str) -> Option<&str> {
        self.form.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }
}

type Hits = Arc<Mutex<Vec<Hit>>>;

/// A callback backend whose answers are spelled in the path:
/// `/ok/...` 200, `/status/CODE`, `/redirect/NAME` (302 Location: NAME), `/relay` (302 to an
/// rtmp:// URL), `/delay/MS` (200 after MS), `/delay-if/NAME/MS` (that delay only for stream
/// NAME).
struct Backend {
    addr: SocketAddr,
    hits: Hits,
    tls: bool,
}

impl Backend {
    fn start() -> Self {
        Self::start_inner(false)
    }

    /// The same backend over HTTPS with a self-signed certificate made now.
    fn start_tls() -> Self {
        Self::start_inner(true)
    }

    fn start_inner(tls: bool) -> Self {
        let hits: Hits = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let state = hits.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(answer).with_state(state);
                if tls {
                    serve_tls(listener, app).await;
                } else {
                    axum::serve(listener, app).await.unwrap();
                }
            });
        });
        Backend { addr: rx.recv().unwrap(), hits, tls }
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Wait until `pred` holds for the hits so far.
    fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let deadline = Instant::now() + limit;
        loop {
            let hits = self.hits();
            if pred(&hits) {
                return hits;
            }
            assert!(Instant::now() < deadline, "{what}: not seen within {limit:?}; hits: {hits:#?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn answer(State(hits): State<Hits>, method: Method, uri: Uri, body: String) -> Response {
    let form = if method == Method::GET { uri.query().unwrap_or("").to_string() } else { body };
    let hit = Hit { method: method.to_string(), path: uri.path().to_string(), form };
    hits.lock().unwrap().push(hit.clone());
    let parts: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["status", code, ..] => StatusCode::from_u16(code.parse().unwrap()).unwrap().into_response(),
        ["redirect", name, ..] => redirect(name),
        ["relay", ..] => redirect("rtmp://origin.example/live/x"),
        ["delay", ms, ..] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            StatusCode::OK.into_response()
        }
        ["delay-if", name, ms, ..] => {
            if hit.field("name") == Some(name) {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            }
            StatusCode::OK.into_response()
        }
        _ => StatusCode::OK.into_response(),
    }
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    r.headers_mut().insert("location", HeaderValue::from_str(to).unwrap());
    r
}

async fn serve_tls(listener: tokio::net::TcpListener, app: axum::Router) {
    use tokio_rustls::rustls;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = key.cert.der().clone();
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(vec![cert], private).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            // A client that refuses our certificate ends here; that is what one test checks.
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let io = hyper_util::rt::TokioIo::new(tls);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

/// sluice with `server_body` in its server block.
fn server(server_body: &str) -> Server {
    Server::start_conf(&format!(
        "rtmp {{\n server {{\n  listen 127.0.0.1:{{rtmp}};\n  {server_body}\n }}\n}}\nhttp {{ server {{ listen 127.0.0.1:{{http}}; }} }}\n"
    ))
}

/// Connect with our client and return the first status: code and description.
async fn first_status(server: &Server, app: &str, role: Role) -> (String, String) {
    let mut c = RtmpClient::connect(server.addr(), app, role).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(15), c.next_event()).await.expect("a status in time") {
            Ok(ClientEvent::Status { code, description, .. }) => return (code, description),
            Ok(_) => {}
            Err(e) => panic!("connection ended without a status: {e}; log:\n{}", server.log()),
        }
    }
}

fn publish(name: &str) -> Role {
    Role::Publish(name.into())
}

fn play(name: &str) -> Role {
    Role::Play(name.into())
}

/// Wait for a log line containing every one of `parts`.
fn wait_log(server: &Server, parts: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log();
        if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "no log line with {parts:?}; log:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Debian's nginx 1.22 + libnginx-mod-rtmp 1.2.2, observed with this backend: ffmpeg 5.1
/// published `rtmp://127.0.0.1:19350/live/good?key=secret&x=a%20b` for 6 s while another
/// ffmpeg played `.../live/good?tok=1` for 2 s (`notify_update_timeout 2s`, every `on_*` set,
/// `notify_method post`). Bodies as received, in order; they are compared once
/// `clientid`, `epoch`, `time`, `timestamp` and the port are normalized.
const NGINX_RTMP_BODIES: &[&str] = &[
    "app=live&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&epoch=5941406&call=connect",
    "app=live&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&clientid=1&call=publish&name=good&type=live&key=secret&x=a%20b",
    "app=live&flashver=LNX%209,0,124,2&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&epoch=5943208&call=connect",
    "app=live&flashver=LNX%209,0,124,2&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&clientid=4&call=play&name=good&start=4294965296&duration=0&reset=0&tok=1",
    "app=live&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&clientid=1&call=update_publish&time=2&timestamp=1823&name=good&key=secret&x=a%20b",
    "app=live&flashver=LNX%209,0,124,2&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&clientid=4&call=update_play&time=2&timestamp=3623&name=good&tok=1",
    "app=live&flashver=LNX%209,0,124,2&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&clientid=4&call=play_done&name=good&tok=1",
    "app=live&flashver=LNX%209,0,124,2&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&clientid=4&call=done&name=good&tok=1",
    "app=live&flashver=LNX%209,0,124,2&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&clientid=4&call=disconnect&app=live",
    "app=live&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&clientid=1&call=publish_done&name=good&key=secret&x=a%20b",
    "app=live&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&clientid=1&call=done&name=good&key=secret&x=a%20b",
    "app=live&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&clientid=1&call=disconnect&app=live",
];

/// Numbers that differ between runs become `N`, the server's port `PORT`.
fn normalize(body: &str, port: u16) -> String {
    let body = body.replace(&format!(":{port}/"), ":PORT/");
    let fields: Vec<String> = body
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k @ ("clientid" | "epoch" | "time" | "timestamp"), _)) => format!("{k}=N"),
            _ => kv.to_string(),
        })
        .collect();
    fields.join("&")
}

fn sorted_unique(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

#[test]
fn callbacks_send_the_fields_nginx_rtmp_sends() {
    let backend = Backend::start();
    let u = |p: &str| backend.url(p);
    let server = server(&format!(
        "on_connect {}; on_disconnect {};
         application live {{ live on;
            on_publish {}; on_play {}; on_done {}; on_play_done {}; on_publish_done {};
            on_update {}; notify_update_timeout 1s;
         }}",
        u("/connect"),
        u("/disconnect"),
        u("/publish"),
        u("/play"),
        u("/done"),
        u("/play_done"),
        u("/publish_done"),
        u("/update")
    ));
    let publisher_url = format!("rtmp://127.0.0.1:{}/live/good?key=secret&x=a%20b", server.port);
    let mut publisher = ffmpeg_publish(&publisher_url, 5, 25);
    wait_published(&server, "good");
    let player = run_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-i"])
            .arg(format!("rtmp://127.0.0.1:{}/live/good?tok=1", server.port))
            .args(["-t", "3", "-c", "copy", "-f", "null", "-"]),
        Duration::from_secs(20),
    );
    assert!(player.status.success(), "player: {}", String::from_utf8_lossy(&player.stderr));
    wait_timeout(&mut publisher.0, Duration::from_secs(20)).expect("publisher ends");
    let hits = backend.wait_for("publisher's disconnect", Duration::from_secs(10), |h| {
        h.iter().filter(|h| h.path == "/disconnect").count() == 2
    });
    assert!(hits.iter().all(|h| h.method == "POST"));
    let ours = sorted_unique(hits.iter().map(|h| normalize(&h.form, server.port)).collect());
    let nginx = sorted_unique(NGINX_RTMP_BODIES.iter().map(|b| normalize(b, 19350)).collect());
    assert_eq!(ours, nginx, "log:\n{}", server.log());
    // Each call went to its own URL, once (updates: at least once each).
    for (path, n) in
        [("/connect", 2), ("/publish", 1), ("/play", 1), ("/play_done", 1), ("/publish_done", 1), ("/done", 2)]
    {
        assert_eq!(hits.iter().filter(|h| h.path == path).count(), n, "{path}: {hits:#?}");
    }
    let update = hits.iter().find(|h| h.field("call") == Some("update_publish")).unwrap();
    assert!(update.field("timestamp").unwrap().parse::<u32>().unwrap() > 0, "{update:?}");
    let log = server.log();
    assert!(log.contains("publish allowed by on_publish") && log.contains("play allowed by on_play"), "{log}");
}

#[tokio::test]
async fn refusing_callbacks_refuse_with_nginx_rtmp_statuses() {
    let backend = Backend::start();
    let server = server(&format!(
        "application live {{ live on; on_publish {}; on_play {}; }}
",
        backend.url("/status/403"),
        backend.url("/status/500"),
    ));
    let (code, why) = first_status(&server, "live", publish("cam?key=nope")).await;
    assert_eq!(code, "NetStream.Publish.BadName");
    assert!(why.contains("answered 403"), "{why}");
    let (code, _) = first_status(&server, "live", play("cam")).await;
    assert_eq!(code, "NetStream.Play.Failed");
    wait_log(&server, &["publish refused", "on_publish", "answered 403", "reason=callback_status", "stream=cam"]);
    wait_log(&server, &["play refused", "answered 500"]);
    drop(server);
    let server = server_with_connect(&backend.url("/status/401"));
    let (code, _) = first_status(&server, "live", play("cam")).await;
    assert_eq!(code, "NetConnection.Connect.Rejected");
    wait_log(&server, &["connect refused", "answered 401"]);
}

fn server_with_connect(url: &str) -> Server {
    server(&format!("on_connect {url}; application live {{ live on; }} application other {{ live on; }}"))
}

#[tokio::test]
async fn connect_redirect_picks_another_application() {
    let backend = Backend::start();
    let server = server_with_connect(&backend.url("/redirect/other"));
    let (code, _) = first_status(&server, "live", publish("cam")).await;
    assert_eq!(code, "NetStream.Publish.Start");
    wait_log(&server, &["connect redirected by on_connect to application \"other\""]);
    wait_log(&server, &["publish", "app=other", "stream=cam"]);
}

#[test]
fn redirects_rename_publishers_and_send_players_elsewhere() {
    let backend = Backend::start();
    let server = server(&format!(
        "application live {{ live on; on_publish {}; on_play {}; }}",
        backend.url("/redirect/renamed"),
        backend.url("/redirect/renamed?ignored=1"),
    ));
    let _publisher = ffmpeg_publish(&server.url("orig"), 20, 25);
    wait_published(&server, "renamed");
    wait_log(&server, &["publish renamed by on_publish to \"renamed\"", "stream=orig"]);
    // Whatever a player asks for, on_play sends it to "renamed": the publisher is there.
    let streams = ffprobe_streams(&server.url("anything"));
    assert_eq!(streams, vec!["aac".to_string(), "h264,640,360".to_string()], "log:\n{}", server.log());
    wait_log(&server, &["play redirected by on_play to \"renamed\"", "stream=anything"]);
    // Callbacks keep reporting the name the client asked for, as nginx-rtmp does.
    let hits = backend.hits();
    assert!(hits.iter().any(|h| h.field("call") == Some("publish") && h.field("name") == Some("orig")));
}

#[tokio::test]
async fn an_rtmp_redirect_starts_a_pull_and_an_unreachable_origin_ends_the_player() {
    let backend = Backend::start();
    let server = server(&format!("application live {{ live on; on_play {}; }}", backend.url("/relay")));
    let mut c = RtmpClient::connect(server.addr(), "live", play("x")).await.unwrap();
    // The player waits for the pull (as for a stream not published yet); when the origin cannot
    // be reached the pull ends and so does the player, as nginx-rtmp drops a dead relay's players.
    let ended = tokio::time::timeout(Duration::from_secs(30), async { while c.next_event().await.is_ok() {} }).await;
    assert!(ended.is_ok(), "the player is closed when the pull fails; log:\n{}", server.log());
    wait_log(&server, &["play relayed by on_play", "rtmp://origin.example/live/x"]);
}

#[tokio::test]
async fn slow_or_unreachable_callbacks_fail_closed() {
    let backend = Backend::start();
    let nobody = format!("http://127.0.0.1:{}/auth", free_port());
    let server = server(&format!(
        "application live {{ live on; on_publish {}; notify_timeout 1s; on_play {nobody}; }}",
        backend.url("/delay/4000"),
    ));
    let started = Instant::now();
    let (code, why) = first_status(&server, "live", publish("cam")).await;
    assert_eq!(code, "NetStream.Publish.BadName");
    assert!(why.contains("no reply within 1s"), "{why}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(3), "{waited:?}");
    let (code, why) = first_status(&server, "live", play("cam")).await;
    assert_eq!(code, "NetStream.Play.Failed");
    assert!(why.contains("unreachable"), "{why}");
    wait_log(&server, &["publish refused", "reason=callback_timeout"]);
    wait_log(&server, &["play refused", "reason=callback_unreachable"]);
}

#[tokio::test]
async fn a_slow_callback_holds_only_its_own_client() {
    let backend = Backend::start();
    let server = server(&format!(
        "application live {{ live on; on_publish {}; notify_timeout 10s; }}",
        backend.url("/delay-if/slow/3000"),
    ));
    let slow = tokio::spawn({
        let addr = server.addr();
        async move {
            let started = Instant::now();
            let mut c = RtmpClient::connect(addr, "live", publish("slow")).await.unwrap();
            let code = c.next_status().await.unwrap();
            (code, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (code, _) = first_status(&server, "live", publish("fast")).await;
    assert_eq!(code, "NetStream.Publish.Start");
    assert!(started.elapsed() < Duration::from_secs(1), "the fast publisher waited {:?}", started.elapsed());
    let (code, waited) = slow.await.unwrap();
    assert_eq!(code, "NetStream.Publish.Start");
    assert!(waited >= Duration::from_millis(2900), "{waited:?}");
}

#[tokio::test]
async fn on_update_repeats_and_a_refusal_drops_the_client() {
    let backend = Backend::start();
    let server = server(&format!(
        "application live {{ live on; on_update {}; notify_update_timeout 1s; }}
         application strict {{ live on; on_update {}; notify_update_timeout 1s; }}",
        backend.url("/ok/update"),
        backend.url("/status/403"),
    ));
    let mut kept = RtmpClient::connect(server.addr(), "live", publish("kept")).await.unwrap();
    assert_eq!(kept.next_status().await.unwrap(), "NetStream.Publish.Start");
    let mut dropped = RtmpClient::connect(server.addr(), "strict", publish("dropped")).await.unwrap();
    assert_eq!(dropped.next_status().await.unwrap(), "NetStream.Publish.Start");
    // A 403 from on_update closes the connection after about notify_update_timeout.
    let started = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if dropped.next_event().await.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "not dropped; log:\n{}", server.log());
    assert!(started.elapsed() >= Duration::from_millis(500), "{:?}", started.elapsed());
    wait_log(&server, &["update refused", "answered 403", "stream=dropped"]);
    // The other keeps going and is asked about again and again (about once a second; allow
    // for a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut updates: Vec<Hit> = Vec::new();
    while updates.len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        updates = backend.hits().into_iter().filter(|h| h.path == "/ok/update").collect();
    }
    assert!(updates.len() >= 2, "{updates:#?}");
    assert!(updates.iter().all(|h| h.field("call") == Some("update_publish") && h.field("name") == Some("kept")));
    let times: Vec<u64> = updates.iter().map(|h| h.field("time").unwrap().parse().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]) && times[0] >= 1, "{times:?}");
    drop(kept);
}

#[tokio::test]
async fn done_callbacks_follow_the_disconnect() {
    let backend = Backend::start();
    let server = server(&format!(
        "on_disconnect {}; application live {{ live on; on_done {}; on_play_done {}; notify_method get; }}",
        backend.url("/bye?site=1"),
        backend.url("/done"),
        backend.url("/play_done"),
    ));
    let mut c = RtmpClient::connect(server.addr(), "live", play("show?viewer=7")).await.unwrap();
    assert_eq!(c.next_status().await.unwrap(), "NetStream.Play.Start");
    drop(c);
    let hits = backend.wait_for("done and disconnect", Duration::from_secs(5), |h| h.len() == 3);
    let calls: Vec<_> = hits.iter().map(|h| (h.method.as_str(), h.path.as_str(), h.field("call").unwrap())).collect();
    assert_eq!(calls, [("GET", "/play_done", "play_done"), ("GET", "/done", "done"), ("GET", "/bye", "disconnect")]);
    assert_eq!(hits[0].field("viewer"), Some("7"));
    assert_eq!(hits[0].field("name"), Some("show"));
    // With GET and a URL that has a query, the fields follow it after `&`.
    assert!(hits[2].form.starts_with("site=1&app=live&"), "{}", hits[2].form);
}

#[tokio::test]
async fn https_callbacks_with_and_without_certificate_checks() {
    let backend = Backend::start_tls();
    let server = server(&format!(
        "application lax {{ live on; on_publish {}; notify_tls_verify off; }}
         application strict {{ live on; on_publish {}; }}",
        backend.url("/ok/publish"),
        backend.url("/ok/publish"),
    ));
    let (code, _) = first_status(&server, "lax", publish("cam")).await;
    assert_eq!(code, "NetStream.Publish.Start", "log:\n{}", server.log());
    assert_eq!(backend.hits().len(), 1);
    assert_eq!(backend.hits()[0].field("call"), Some("publish"));
    // A self-signed certificate is not trusted by the system's roots: fail closed.
    let (code, why) = first_status(&server, "strict", publish("cam")).await;
    assert_eq!(code, "NetStream.Publish.BadName");
    assert!(why.contains("unreachable"), "{why}");
    assert_eq!(backend.hits().len(), 1);
}

#[test]
fn ip_rules_first_match_wins_and_the_log_names_the_rule() {
    let server = server(
        "allow publish 127.0.0.1; deny publish all;
         application live { live on; }
         application closed { live on; deny publish all; deny play 127.0.0.0/8; }",
    );
    let _publisher = ffmpeg_publish(&server.url("open"), 20, 25);
    wait_published(&server, "open");
    wait_log(&server, &["publish allowed by rule", "rule=allow publish 127.0.0.1"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (code, why) = rt.block_on(first_status(&server, "closed", publish("x")));
    assert_eq!(code, "NetStream.Publish.BadName");
    assert!(why.contains("deny publish all"), "{why}");
    let (code, _) = rt.block_on(first_status(&server, "closed", play("open")));
    assert_eq!(code, "NetStream.Play.Failed");
    wait_log(&server, &["publish refused: denied by rule \"deny publish all\" (line 6)", "app=closed", "reason=rule"]);
    wait_log(&server, &["play refused: denied by rule \"deny play 127.0.0.0/8\"", "client=127.0.0.1:"]);
    // The application with no rules inherits the server's, which let 127.0.0.1 in.
    assert_eq!(ffprobe_streams(&server.url("open")), vec!["aac".to_string(), "h264,640,360".to_string()]);
}

#[tokio::test]
async fn max_connections_rejects_the_one_too_many() {
    let server = server("max_connections 2; application live { live on; }");
    let mut a = RtmpClient::connect(server.addr(), "live", play("x")).await.unwrap();
    assert_eq!(a.next_status().await.unwrap(), "NetStream.Play.Start");
    let mut b = RtmpClient::connect(server.addr(), "live", play("x")).await.unwrap();
    assert_eq!(b.next_status().await.unwrap(), "NetStream.Play.Start");
    let (code, why) = first_status(&server, "live", play("x")).await;
    assert_eq!(code, "NetConnection.Connect.Rejected");
    assert!(why.contains("Too many connections"), "{why}");
    wait_log(&server, &["connect refused: 2 clients connected (max_connections)"]);
    drop(a);
    // The place is free again once the server noticed the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, _) = first_status(&server, "live", play("x")).await;
        if code == "NetStream.Play.Start" {
            break;
        }
        assert!(Instant::now() < deadline, "never admitted again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(b);
}

/// `sluice token` as a user runs it; `flags` picks the action (`--play`; none: publish).
fn token_url(server: &Server, secret: &str, name: &str, ttl: &str, flags: &[&str]) -> String {
    let out = run_timeout(
        Command::new(sluice_bin())
            .args(["token", "--secret", secret, "--app", "live", "--name", name, "--ttl", ttl])
            .args(flags)
            .args(["--url", &format!("rtmp://127.0.0.1:{}", server.port)]),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn signed_tokens_let_ffmpeg_in_and_keep_others_out() {
    let server = server("application live { live on; auth_secret s3cret; auth both; }");
    let url = token_url(&server, "s3cret", "cam", "1h", &[]);
    assert!(url.starts_with(&format!("rtmp://127.0.0.1:{}/live/cam?expires=", server.port)), "{url}");
    let _publisher = ffmpeg_publish(&url, 20, 25);
    wait_published(&server, "cam");
    wait_log(&server, &["publish allowed by signed token", "stream=cam"]);
    // Players need their own token too (auth both).
    let play_url = token_url(&server, "s3cret", "cam", "60", &["--play"]);
    assert_eq!(ffprobe_streams(&play_url), vec!["aac".to_string(), "h264,640,360".to_string()]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let publish_query = |secret: &str, expires: u64| {
        sluice::auth::token_query(secret, sluice::config::Action::Publish, "live", "cam2", expires)
    };
    let expired = format!("cam2?{}", publish_query("s3cret", now - 10));
    let wrong_secret = format!("cam2?{}", publish_query("guess", now + 60));
    let other_stream = format!("cam2?{}", url.split_once('?').unwrap().1);
    for (name, why) in [
        ("cam2".to_string(), "no token"),
        (expired, "token expired"),
        (wrong_secret, "wrong token"),
        (other_stream, "wrong token"),
    ] {
        let (code, description) = rt.block_on(first_status(&server, "live", publish(&name)));
        assert_eq!(code, "NetStream.Publish.BadName", "{name}");
        assert!(description.contains(why), "{name}: {description}");
    }
    let (code, _) = rt.block_on(first_status(&server, "live", play("cam")));
    assert_eq!(code, "NetStream.Play.Failed");
    wait_log(&server, &["publish refused: token expired", "reason=token"]);
}

/// Issue #9, defect 9: with `auth both`, a viewer's play token also published.
#[test]
fn a_play_token_does_not_publish_and_a_publish_token_does_not_play() {
    let server = server("application live { live on; auth_secret s3cret; auth both; }");
    let play_url = token_url(&server, "s3cret", "cam", "1h", &["--play"]);
    let publish_url = token_url(&server, "s3cret", "cam", "1h", &["--publish"]);
    assert_ne!(play_url, publish_url);
    // ffmpeg with the viewer's URL is refused and gives up.
    let out = run_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
            .args(["-t", "5", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-f", "flv", &play_url]),
        Duration::from_secs(30),
    );
    assert!(!out.status.success(), "ffmpeg published with a play token; log:\n{}", server.log());
    wait_log(&server, &["publish refused: token is for play, not publish", "reason=token", "stream=cam"]);
    assert!(!server.log().contains("publish allowed"), "{}", server.log());
    // The publisher's own URL publishes; ffprobe with it cannot play, with the viewer's it can.
    let _publisher = ffmpeg_publish(&publish_url, 20, 25);
    wait_published(&server, "cam");
    let probe = run_timeout(
        Command::new("ffprobe").args(["-v", "error", "-rw_timeout", "15000000", "-show_streams", &publish_url]),
        Duration::from_secs(30),
    );
    assert!(!probe.status.success(), "ffprobe played with a publish token");
    wait_log(&server, &["play refused: token is for publish, not play", "reason=token"]);
    assert_eq!(ffprobe_streams(&play_url), vec!["aac".to_string(), "h264,640,360".to_string()]);
    // `token` refuses to sign both at once.
    let both = run_timeout(
        Command::new(sluice_bin()).args(["token", "--secret", "s", "--app", "a", "--name", "n", "--publish", "--play"]),
        Duration::from_secs(10),
    );
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("--publish or --play, not both"));
}

#[test]
fn publish_keys_for_the_simplest_obs_setup() {
    let server = server("application live { live on; publish_key studio hunter2; }");
    // OBS: Server rtmp://host/live, Stream Key `studio?key=hunter2`.
    let _publisher = ffmpeg_publish(&format!("{}?key=hunter2", server.url("studio")), 20, 25);
    wait_published(&server, "studio");
    wait_log(&server, &["publish allowed by publish key", "stream=studio"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (code, why) = rt.block_on(first_status(&server, "live", publish("studio?key=hunter3")));
    assert_eq!(code, "NetStream.Publish.BadName");
    assert!(why.contains("wrong publish key"), "{why}");
    let (code, _) = rt.block_on(first_status(&server, "live", publish("studio")));
    assert_eq!(code, "NetStream.Publish.BadName");
    // Players and other streams need no key.
    let (code, _) = rt.block_on(first_status(&server, "live", publish("other")));
    assert_eq!(code, "NetStream.Publish.Start");
    assert_eq!(ffprobe_streams(&server.url("studio")), vec!["aac".to_string(), "h264,640,360".to_string()]);
    wait_log(&server, &["reason=publish_key", "no publish key"]);
}

#[test]
fn on_record_done_reports_each_closed_recording() {
    let backend = Backend::start();
    let dir = TempDir::new("rec");
    let server = server(&format!(
        "application live {{ live on; record all; record_path {}; on_record_done {}; }}",
        dir.0.display(),
        backend.url("/record_done"),
    ));
    let mut publisher = ffmpeg_publish(&format!("{}?key=k", server.url("taped")), 2, 25);
    wait_timeout(&mut publisher.0, Duration::from_secs(20)).expect("publisher ends");
    let hits = backend.wait_for("record_done", Duration::from_secs(10), |h| !h.is_empty());
    let hit = &hits[0];
    assert_eq!(hit.field("call"), Some("record_done"));
    assert_eq!(hit.field("recorder"), Some(""));
    assert_eq!(hit.field("name"), Some("taped"));
    assert_eq!(hit.field("key"), Some("k"));
    let path = hit.field("path").unwrap();
    assert!(path.starts_with(&dir.0.display().to_string()) && path.ends_with(".flv"), "{path}");
    assert!(file_exists_nonempty(std::path::Path::new(path)), "{path}");
    assert!(hit.form.starts_with("app=live&flashver="), "{}", hit.form);
}

/// A callback backend that accepts connections and never answers (hung), counting them.
struct HungBackend {
    addr: SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl HungBackend {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            // Held open, never read from or answered, until the test process ends.
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        HungBackend { addr, accepted }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Wait until `n` connections are held, i.e. that many calls hang in sluice.
    async fn wait_accepted(&self, n: usize, server: &Server) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.accepted.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} calls reached the hung backend; log:\n{}",
                self.accepted.load(std::sync::atomic::Ordering::SeqCst),
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Clients enough to fill the old server-wide pool of 64 callback slots.
const CROWD: usize = 80;

/// A publish to `live` whose `on_publish` backend is healthy: allowed, and without waiting for
/// the hung backend (the old shared pool made it wait for a slot until `notify_timeout`).
async fn publish_promptly(server: &Server, healthy: &Backend) {
    let started = Instant::now();
    let (code, why) = first_status(server, "live", publish("cam")).await;
    let waited = started.elapsed();
    assert_eq!(code, "NetStream.Publish.Start", "{why}; waited {waited:?}; log:\n{}", server.log());
    assert!(waited < Duration::from_secs(8), "the healthy callback waited {waited:?}");
    assert!(healthy.hits().iter().any(|h| h.field("call") == Some("publish") && h.field("name") == Some("cam")));
}

/// Issue #9, defect 11: with one application's backend hung, other applications' callbacks
/// took 3-5 s or were refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_backend_holds_only_its_own_applications_clients() {
    let hung = HungBackend::start();
    let healthy = Backend::start();
    let server = server(&format!(
        "application stuck {{ live on; on_publish {}; notify_timeout 60s; }}
         application live {{ live on; on_publish {}; notify_timeout 10s; }}",
        hung.url("/publish"),
        healthy.url("/ok/publish"),
    ));
    let mut waiting = Vec::new();
    for i in 0..CROWD {
        let addr = server.addr();
        waiting.push(tokio::spawn(async move {
            let mut c = RtmpClient::connect(addr, "stuck", publish(&format!("s{i}"))).await.unwrap();
            c.next_status().await
        }));
    }
    hung.wait_accepted(64, &server).await;
    publish_promptly(&server, &healthy).await;
    // The stuck ones are still waiting for their backend.
    assert!(waiting.iter().all(|t| !t.is_finished()));
    waiting.iter().for_each(|t| t.abort());
}

/// Issue #9, defect 11: a mass disconnect's fire-and-forget calls (`on_play_done`, `on_done`)
/// to a hung backend made new publishers time out and be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fire_and_forget_calls_to_a_hung_backend_do_not_delay_a_blocking_call() {
    let hung = HungBackend::start();
    let healthy = Backend::start();
    let server = server(&format!(
        "application busy {{ live on; on_play_done {}; on_done {}; notify_timeout 60s; }}
         application live {{ live on; on_publish {}; notify_timeout 10s; }}",
        hung.url("/play_done"),
        hung.url("/done"),
        healthy.url("/ok/publish"),
    ));
    let mut players = Vec::new();
    for _ in 0..CROWD {
        let mut c = RtmpClient::connect(server.addr(), "busy", play("nobody-yet")).await.unwrap();
        let code = tokio::time::timeout(Duration::from_secs(15), c.next_status()).await.expect("a status").unwrap();
        assert_eq!(code, "NetStream.Play.Start");
        players.push(c);
    }
    // All leave at once: CROWD play_done + done calls to the hung backend.
    drop(players);
    hung.wait_accepted(32, &server).await;
    // Let the rest of the burst reach whatever bound holds it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    publish_promptly(&server, &healthy).await;
}

/// Issue #9, defect 13: a refused GET callback logged reqwest's error, whose URL carried the
/// client's `key=`; callback URLs with secrets in their query were logged as written.
#[tokio::test]
async fn callback_logs_carry_no_secrets() {
    let backend = Backend::start();
    let nobody = format!("http://127.0.0.1:{}/auth?secret=hunter2", free_port());
    let server = server(&format!(
        "application live {{ live on; notify_method get; on_play {nobody}; on_publish {}; }}",
        backend.url("/status/403?secret=hunter2"),
    ));
    let (code, _) = first_status(&server, "live", play("cam?key=k3y")).await;
    assert_eq!(code, "NetStream.Play.Failed");
    let (code, _) = first_status(&server, "live", publish("cam?key=k3y")).await;
    assert_eq!(code, "NetStream.Publish.BadName");
    wait_log(&server, &["play refused", "reason=callback_unreachable", "secret=***"]);
    wait_log(&server, &["publish refused", "answered 403", "secret=***"]);
    let log = server.log();
    assert!(!log.contains("hunter2") && !log.contains("k3y"), "{log}");
}

//! The cluster's stream directory in Redis (`cluster_redis`): three sluice processes on
//! loopback and one real `redis-server`. Origins register what is published to them, edges
//! look up what they are asked for and pull it from the node that has it; a name live on one
//! node is refused on another; a dead node's streams expire and are found again where their
//! publisher comes back; Redis going away stops nothing that runs.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A registration's expiry in these tests (the heartbeat runs every second).
const TTL_SECS: u64 = 3;

/// A node of the cluster on `port`: API on the built-in HTTP server, `live` in the directory.
fn node_on(port: u16, redis: &RedisServer) -> Server {
    node_with(port, redis, "")
}

/// [`node_on`] with `extra` in the application.
fn node_with(port: u16, redis: &RedisServer, extra: &str) -> Server {
    Server::start_conf_on(
        port,
        &format!(
            "rtmp {{ http_listen 127.0.0.1:{{http}}; cluster_redis {}/0; cluster_ttl {TTL_SECS}s;
  server {{ listen 127.0.0.1:{{rtmp}}; cluster_address rtmp://127.0.0.1:{{rtmp}};
    application live {{ live on; pull_reconnect 500ms; pull_linger 1s; {extra} }} }} }}",
            redis.url()
        ),
    )
}

fn node(redis: &RedisServer) -> Server {
    node_on(free_port(), redis)
}

fn cluster(s: &Server) -> Value {
    get_json(s, "/api/v1/cluster").expect("GET /api/v1/cluster")
}

/// Players of `live/cam` connected to `s` now (an edge's pull is one of its origin's).
fn players_now(s: &Server, name: &str) -> usize {
    let Some(clients) = get_json(s, "/api/v1/clients") else { return 0 };
    let list = clients["clients"].as_array().cloned().unwrap_or_default();
    list.iter().filter(|c| c["role"] == "player" && c["app"] == "live" && c["name"] == name).count()
}

fn decoded(log: &Path, size: &str) -> usize {
    showinfo_sizes(log).get(size).copied().unwrap_or(0)
}

/// A node's value in the directory: `rtmp://127.0.0.1:PORT NODE`.
fn owner(redis: &RedisServer, name: &str) -> Option<String> {
    redis.get(&format!("sluice:stream:live/{name}"))
}

fn registered_by(redis: &RedisServer, name: &str, s: &Server) -> bool {
    owner(redis, name).is_some_and(|v| v.starts_with(&format!("rtmp://127.0.0.1:{} ", s.port)))
}

/// Publish a `size` pattern to `s` until one publish is taken (another node's registration
/// may take up to the TTL to expire); the publisher.
fn publish_until_taken(s: &Server, name: &str, size: &str, limit: Duration) -> Proc {
    let deadline = Instant::now() + limit;
    loop {
        let mut p = ffmpeg_publish_pattern(&s.url(name), size, 120, 25);
        // A refused publish ends ffmpeg within a second or two.
        std::thread::sleep(Duration::from_millis(2500));
        if p.0.try_wait().unwrap().is_none() {
            return p;
        }
        assert!(Instant::now() < deadline, "no publish of {name} taken; log:\n{}", s.log());
    }
}

/// Origin A, edges B and C: players on both edges get the stream over one upstream each; the
/// same name published to B is refused; an unpublish removes the key at once; A dies and the
/// publisher comes back on B, and C's player (the same ffmpeg process) decodes it again.
#[test]
fn edges_find_streams_in_the_directory_and_follow_their_publisher() {
    let redis = RedisServer::start();
    let mut a = node(&redis);
    let b = node(&redis);
    let c = node(&redis);
    let first = ffmpeg_publish_pattern(&a.url("cam"), "320x240", 120, 25);
    wait_published(&a, "cam");
    poll("A's registration", Duration::from_secs(10), || registered_by(&redis, "cam", &a));
    let view = cluster(&a);
    assert_eq!((view["enabled"].as_bool(), view["up"].as_bool()), (Some(true), Some(true)), "{view}");
    assert_eq!(view["registered"], 1, "{view}");
    assert_eq!(view["address"], format!("rtmp://127.0.0.1:{}", a.port), "{view}");
    assert_eq!(view["directory"], redis.url() + "/0", "{view}");

    // 1. Players on B (three) and C (one): one upstream per edge.
    let dir = TempDir::new("cluster");
    let (log_b, log_c) = (dir.path("b.log"), dir.path("c.log"));
    let _on_b = showinfo_player(&b.url("cam"), &log_b);
    let mut on_c = showinfo_player(&c.url("cam"), &log_c);
    poll("B's player decoding", Duration::from_secs(60), || decoded(&log_b, "320x240") >= 25);
    poll("C's player decoding", Duration::from_secs(60), || decoded(&log_c, "320x240") >= 25);
    let _more_on_b: Vec<Proc> = (0..2).map(|_| ffmpeg_play(&b.url("cam"))).collect();
    poll("three players on B", Duration::from_secs(30), || players_now(&b, "cam") == 3);
    assert_eq!(players_now(&a, "cam"), 2, "one upstream from each edge; B's log:\n{}", b.log());
    let stream = get_json(&b, "/api/v1/streams/live/cam").expect("the stream on B");
    let legs: Vec<&Value> = stream["relays"].as_array().unwrap().iter().filter(|r| r["direction"] == "pull").collect();
    assert_eq!(legs.len(), 1, "{stream}");
    let upstream = format!("rtmp://127.0.0.1:{}/live/cam", a.port);
    assert_eq!((&legs[0]["url"], &stream["origin"]), (&Value::from(upstream.clone()), &Value::from(upstream)));
    assert_eq!(get_json(&a, "/api/v1/streams/live/cam").unwrap()["origin"], "local");
    assert!(cluster(&b)["lookups"]["found"].as_u64().unwrap() >= 1);
    // The edges' pulled copies are not registered: the key stays the origin's.
    assert_eq!((cluster(&b)["registered"].as_u64(), cluster(&c)["registered"].as_u64()), (Some(0), Some(0)));
    assert!(registered_by(&redis, "cam", &a) && !b.log().contains("cluster: conflict"));

    // 2. The same name published to B while live on A: refused, and counted.
    let mut second = ffmpeg_publish_pattern(&b.url("cam"), "160x120", 120, 25);
    let status = wait_timeout(&mut second.0, Duration::from_secs(20)).expect("the refused ffmpeg exits");
    assert!(!status.success());
    assert!(
        b.log().contains("publish refused: cluster: the stream is live on another origin (rtmp://127.0.0.1:"),
        "{}",
        b.log()
    );
    assert_eq!(cluster(&b)["publishes_refused"], 1);
    let metrics = curl(&format!("http://127.0.0.1:{}/metrics", b.http_port)).1;
    assert!(metrics.contains("sluice_cluster_publish_refused_total 1"), "{metrics}");
    assert!(metrics.contains("sluice_cluster_directory_up 1"), "{metrics}");

    // 5. An unpublish removes its key at once (well before the TTL would).
    let other = ffmpeg_publish_pattern(&a.url("other"), "160x120", 120, 25);
    wait_published(&a, "other");
    poll("other's registration", Duration::from_secs(10), || registered_by(&redis, "other", &a));
    drop(other);
    poll("other's key removed", Duration::from_secs(TTL_SECS), || owner(&redis, "other").is_none());
    // Removed by the unpublish, not by expiry: the compare-and-delete found it ("unregistered"
    // is logged only when it deleted the key). Not timed: under a loaded test run the unpublish
    // itself can take over a second to be noticed.
    let unregistered = |l: &&str| l.contains("cluster: unregistered") && l.contains("stream=other");
    poll("other's unregistration", Duration::from_secs(5), || a.log().lines().any(|l| unregistered(&l)));

    // 3. A dies: its key expires, the publisher comes back on B, C's player resumes.
    let _ = a.child.kill();
    let _ = a.child.wait();
    drop(first);
    poll("C to notice", Duration::from_secs(20), || c.log().contains("upstream lost"));
    let _back = publish_until_taken(&b, "cam", "160x120", Duration::from_secs(TTL_SECS + 20));
    poll("B's registration", Duration::from_secs(10), || registered_by(&redis, "cam", &b));
    poll("C's player decoding B's stream", Duration::from_secs(60), || decoded(&log_c, "160x120") >= 25);
    assert!(on_c.0.try_wait().unwrap().is_none(), "C's player never left: it stayed subscribed during the lookups");
    let stream = get_json(&c, "/api/v1/streams/live/cam").expect("the stream on C");
    assert_eq!(stream["origin"], format!("rtmp://127.0.0.1:{}/live/cam", b.port), "{stream}");
    // B's own players now watch its local publisher.
    poll("B's player decoding the local publish", Duration::from_secs(30), || decoded(&log_b, "160x120") >= 25);
}

/// Redis stops: the running stream keeps flowing to the edge; a new play of a stream the edge
/// does not have fails clearly; the API says the directory is down; publishes are allowed (the
/// same name on two nodes, even). Redis comes back (empty): the origin registers its stream
/// again within a heartbeat or two, and of the two publishes of one name one registers and the
/// other node logs the conflict naming both.
#[test]
fn running_streams_survive_redis_and_registrations_come_back() {
    let mut redis = RedisServer::start();
    let a = node(&redis);
    let c = node(&redis);
    // A node that has registered and looked up nothing yet still watches the directory.
    poll("C to see the directory up", Duration::from_secs(10), || cluster(&c)["up"] == true);
    let _publisher = ffmpeg_publish_pattern(&a.url("cam"), "320x240", 120, 25);
    wait_published(&a, "cam");
    poll("A's registration", Duration::from_secs(10), || registered_by(&redis, "cam", &a));
    let dir = TempDir::new("cluster-redis");
    let log = dir.path("c.log");
    let _player = showinfo_player(&c.url("cam"), &log);
    poll("C's player decoding", Duration::from_secs(60), || decoded(&log, "320x240") >= 25);

    redis.stop();
    poll("A to see the directory down", Duration::from_secs(10), || cluster(&a)["up"] == false);
    let before = decoded(&log, "320x240");
    std::thread::sleep(Duration::from_secs(2 * TTL_SECS));
    assert!(decoded(&log, "320x240") >= before + 50, "the stream kept flowing with Redis down");

    // A new play of an unknown stream: refused (the pull fails after its lookups).
    let started = Instant::now();
    let out = run_timeout(
        Command::new("ffmpeg").args(["-nostdin", "-v", "error", "-i", &c.url("nosuch"), "-f", "null", "-"]),
        Duration::from_secs(30),
    );
    assert!(!out.status.success() && started.elapsed() < Duration::from_secs(25));
    assert!(c.log().contains("the stream directory is unreachable"), "{}", c.log());
    let view = cluster(&c);
    assert_eq!(view["up"], false, "{view}");
    assert!(view["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{view}");
    assert!(view["lookups"]["failed"].as_u64().unwrap() >= 1, "{view}");

    // Publishes go on with Redis down (availability first), on both nodes for the same name.
    let mut on_a = ffmpeg_publish_pattern(&a.url("dup"), "160x120", 120, 25);
    let mut on_c = ffmpeg_publish_pattern(&c.url("dup"), "160x120", 120, 25);
    wait_published(&a, "dup");
    wait_published(&c, "dup");
    assert!(on_a.0.try_wait().unwrap().is_none() && on_c.0.try_wait().unwrap().is_none());
    assert!(c.log().contains("the stream directory is unreachable"), "{}", c.log());

    redis.restart();
    poll("A's registration again", Duration::from_secs(2 * TTL_SECS), || registered_by(&redis, "cam", &a));
    // One of them registers "dup"; the other logs the conflict, naming both owners.
    poll("dup's registration", Duration::from_secs(2 * TTL_SECS), || owner(&redis, "dup").is_some());
    let a_won = registered_by(&redis, "dup", &a);
    let (winner, loser) = if a_won { (&a, &c) } else { (&c, &a) };
    assert!(registered_by(&redis, "dup", winner));
    poll("the conflict logged", Duration::from_secs(2 * TTL_SECS), || loser.log().contains("cluster: conflict"));
    let line = loser.log().lines().find(|l| l.contains("cluster: conflict")).unwrap().to_owned();
    let ports = [winner.port, loser.port].map(|p| format!("rtmp://127.0.0.1:{p} "));
    assert!(ports.iter().all(|p| line.contains(p.as_str())), "{line}");
    poll("A to see the directory up", Duration::from_secs(5), || cluster(&a)["up"] == true);
    assert!(a.log().contains("stream directory up"), "{}", a.log());
    assert!(a.log().contains("cluster: registered again"), "{}", a.log());
    let metrics = curl(&format!("http://127.0.0.1:{}/metrics", a.http_port)).1;
    let registered = format!("sluice_cluster_registered_streams {}", if a_won { 2 } else { 1 });
    assert!(metrics.contains(&registered), "{metrics}");
}

/// A graceful stop removes the node's registrations (SIGTERM), and the password of
/// `cluster_redis` is in no log line, API answer or metric.
#[test]
fn a_stopped_node_unregisters_and_the_password_never_shows() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cr3tpw"]);
    let url = format!("redis://:s3cr3tpw@127.0.0.1:{}/0", redis.port);
    let mut a = Server::start_conf(&format!(
        "rtmp {{ http_listen 127.0.0.1:{{http}}; cluster_redis {url}; cluster_ttl 30s;
  server {{ listen 127.0.0.1:{{rtmp}}; cluster_address rtmp://127.0.0.1:{{rtmp}}; application live {{ live on; }} }} }}"
    ));
    let _publisher = ffmpeg_publish_pattern(&a.url("cam"), "160x120", 120, 25);
    wait_published(&a, "cam");
    let key = "sluice:stream:live/cam";
    let get = || authed_get(&redis, key);
    poll("A's registration", Duration::from_secs(10), || get().is_some_and(|v| v.contains("127.0.0.1")));
    let view = cluster(&a);
    let metrics = curl(&format!("http://127.0.0.1:{}/metrics", a.http_port)).1;
    assert!(a.terminate().success());
    assert_eq!(get(), Some(String::new()), "the key is removed at shutdown (not left to its 30 s expiry)");
    for (what, text) in [("log", a.log()), ("api", view.to_string()), ("metrics", metrics)] {
        assert!(!text.contains("s3cr3tpw"), "the password shows in the {what}:\n{text}");
    }
    assert_eq!(view["directory"], format!("redis://:***@127.0.0.1:{}/0", redis.port));
}

/// `GET key` on a connection that authenticated first: `Some("")` when absent.
fn authed_get(redis: &RedisServer, key: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", redis.port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let req = format!("*2\r\n$4\r\nAUTH\r\n$8\r\ns3cr3tpw\r\n*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(rest) = text.strip_prefix("+OK\r\n") {
            if rest.starts_with("$-1\r\n") {
                return Some(String::new());
            }
            if let Some((head, value)) = rest.split_once("\r\n") {
                let len: usize = head.trim_start_matches('$').parse().ok()?;
                if value.len() >= len + 2 {
                    return Some(value[..len].to_owned());
                }
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An edge in the cluster application serves the HLS of a stream published on another node
/// from the first playlist request: the request starts the pull, the directory names the
/// origin, the request gets the playlist once it lists a segment. A name nobody publishes gets
/// `404`.
#[test]
fn an_edge_serves_hls_of_a_stream_on_another_node_from_the_first_request() {
    let redis = RedisServer::start();
    let a = node(&redis);
    let dir = TempDir::new("cluster-hls");
    let hls = format!("hls on; hls_path {}; hls_fragment 1s; hls_playlist_length 4s;", dir.path("hls").display());
    let b = node_with(free_port(), &redis, &hls);
    let _publisher = ffmpeg_publish_pattern(&a.url("cam"), "320x240", 120, 25);
    wait_published(&a, "cam");
    poll("A's registration", Duration::from_secs(10), || registered_by(&redis, "cam", &a));

    let url = format!("http://127.0.0.1:{}/hls/cam.m3u8", b.http_port);
    let first = curl_reply(&[], &url);
    assert_eq!(first.status, 200, "B's log:\n{}", b.log());
    assert!(first.text().contains("#EXTINF"), "{}", first.text());
    assert!(b.log().contains("hls: pull started for an HLS viewer"), "{}", b.log());
    assert!(ffprobe_streams(&url).iter().any(|s| s == "h264,320,240"), "{}", b.log());
    assert_eq!(players_now(&a, "cam"), 1, "one upstream from B");

    let missing = curl_reply(&[], &format!("http://127.0.0.1:{}/hls/nobody.m3u8", b.http_port));
    assert_eq!(missing.status, 404, "{}", b.log());
}

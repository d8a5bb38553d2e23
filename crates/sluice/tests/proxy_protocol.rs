//! `listen ... proxy_protocol` end to end: real ffmpeg, ffprobe and curl clients reach sluice
//! through a load balancer — a forwarder in this test that writes a hand-made PROXY header
//! (v1 or v2) naming a client it claims, then splices the bytes, and real HAProxy with
//! `send-proxy` and `send-proxy-v2` — and sluice's access rules, callbacks and API see the
//! address the header names, not the balancer's.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A v1 header claiming `client` (an IPv4 address and port).
fn v1(client: &str) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    format!("PROXY TCP4 {} 192.0.2.1 {} 1935\r\n", client.ip(), client.port()).into_bytes()
}

/// A v2 header (PROXY, AF_INET over STREAM) claiming `client`, with a NOOP TLV to skip.
fn v2(client: &str) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    let SocketAddr::V4(client) = client else { panic!("IPv4 only") };
    let mut block = client.ip().octets().to_vec();
    block.extend_from_slice(&[192, 0, 2, 1]);
    block.extend_from_slice(&client.port().to_be_bytes());
    block.extend_from_slice(&1935u16.to_be_bytes());
    block.extend_from_slice(&[0x04, 0x00, 0x03, 0, 0, 0]);
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    h.extend_from_slice(&(block.len() as u16).to_be_bytes());
    h.extend_from_slice(&block);
    h
}

/// A load balancer standing in: every connection to the returned port is forwarded to
/// `target`, `header` first.
fn forwarder(target: u16, header: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let header = header.clone();
            std::thread::spawn(move || {
                let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", target)) else { return };
                if upstream.write_all(&header).is_ok() {
                    splice(client, upstream);
                }
            });
        }
    });
    port
}

/// Copies both ways until both sides are done.
fn splice(a: TcpStream, b: TcpStream) {
    let (mut a_in, mut b_out) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a_in, &mut b_out);
        let _ = b_out.shutdown(Shutdown::Write);
    });
    let (mut a_out, mut b_in) = (a, b);
    let _ = std::io::copy(&mut b_in, &mut a_out);
    let _ = a_out.shutdown(Shutdown::Write);
    let _ = up.join();
}

/// A callback backend that answers 200 to everything and keeps the request bodies.
fn backend() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // The head, then as much body as Content-Length says.
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        kept.lock().unwrap().push(body.to_owned());
                        break;
                    }
                }
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, bodies)
}

/// The API's clients on `port` (`/api/` location): (addr, protocol, role) of each.
fn clients(port: u16) -> Vec<(String, String, String)> {
    let (status, body) = http_get(port, "/api/v1/clients");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let text = |c: &Value, k: &str| c[k].as_str().unwrap_or_default().to_owned();
    v["clients"].as_array().unwrap().iter().map(|c| (text(c, "addr"), text(c, "protocol"), text(c, "role"))).collect()
}

/// Wait for a log line containing every one of `parts`.
fn wait_log(server: &Server, parts: &[&str]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.log();
        if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no log line with {parts:?}; log:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether ffprobe gets the streams of `url` (within its own 15 s timeout).
fn probes(url: &str) -> bool {
    let out = run_timeout(
        Command::new("ffprobe").args(["-v", "error", "-rw_timeout", "15000000", "-show_streams", url]),
        Duration::from_secs(30),
    );
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("codec_name=h264")
}

/// RTMP: the header's client is who the access rules, the `on_publish` callback and the API
/// see, with v1 and v2 headers; a connection without a header is closed with a log line
/// naming the balancer.
#[test]
fn rtmp_clients_are_who_the_header_says() {
    let (hook, bodies) = backend();
    let server = Server::start_conf(&format!(
        "rtmp {{ server {{ listen 127.0.0.1:{{rtmp}} proxy_protocol;
            application live {{ live on; on_publish http://127.0.0.1:{hook}/publish; deny play 203.0.113.7; }} }} }}
         http {{ server {{ listen 127.0.0.1:{{http}}; location /api/ {{ api on; }} }} }}"
    ));
    let as_claimed = forwarder(server.port, v1("203.0.113.7:40001"));
    let as_other = forwarder(server.port, v2("198.51.100.9:40002"));

    let _publisher = ffmpeg_publish(&format!("rtmp://127.0.0.1:{as_claimed}/live/cam"), 60, 25);
    wait_published(&server, "cam");
    let body = wait_for("the on_publish callback", Duration::from_secs(15), || {
        bodies.lock().unwrap().iter().find(|b| b.contains("call=publish")).cloned()
    });
    assert!(body.contains("addr=203.0.113.7&"), "{body}");
    let publisher = ("203.0.113.7:40001".to_owned(), "rtmp".to_owned(), "publisher".to_owned());
    assert!(clients(server.http_port).contains(&publisher), "{:?}", clients(server.http_port));

    // Both players come from 127.0.0.1; the rule acts on the address their header names.
    assert!(!probes(&format!("rtmp://127.0.0.1:{as_claimed}/live/cam")), "203.0.113.7 is denied play");
    wait_log(&server, &["play refused: denied by rule \"deny play 203.0.113.7\"", "client=203.0.113.7:40001"]);
    assert!(probes(&format!("rtmp://127.0.0.1:{as_other}/live/cam")), "198.51.100.9 plays; log:\n{}", server.log());

    // Straight to the proxy_protocol address, without a header: closed, and the log says why.
    assert!(!probes(&server.url("cam")), "no header, no stream");
    let line =
        wait_log(&server, &["proxy_protocol: connection closed", "no PROXY protocol header", "balancer=127.0.0.1:"]);
    assert!(line.contains("scheme=\"rtmp\"") || line.contains("scheme=rtmp"), "{line}");
}

/// RTMPS: the header comes before the TLS ClientHello; the publisher through the balancer is
/// the header's client, and a player through it plays over TLS.
#[test]
fn rtmps_header_comes_before_tls() {
    let certs = TempDir::new("pp-certs");
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (certs.path("cert.pem"), certs.path("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    let server = Server::start_conf(&format!(
        "rtmp {{ server {{ listen 127.0.0.1:{{rtmp}} ssl proxy_protocol;
            ssl_certificate {}; ssl_certificate_key {};
            application live {{ live on; }} }} }}
         http {{ server {{ listen 127.0.0.1:{{http}}; location /api/ {{ api on; }} }} }}",
        cert.display(),
        key.display()
    ));
    let balancer = forwarder(server.port, v2("203.0.113.7:40005"));
    let _publisher = ffmpeg_publish(&format!("rtmps://127.0.0.1:{balancer}/live/cam"), 60, 25);
    wait_published(&server, "cam");
    let publisher = ("203.0.113.7:40005".to_owned(), "rtmps".to_owned(), "publisher".to_owned());
    assert!(clients(server.http_port).contains(&publisher), "{:?}", clients(server.http_port));
    assert!(probes(&format!("rtmps://127.0.0.1:{balancer}/live/cam")), "log:\n{}", server.log());
}

/// HTTP: an `http {}` listen with `proxy_protocol` takes the client from the header for its
/// `allow`/`deny` rules and for HTTP-FLV players in the API; without a header, no answer.
#[test]
fn http_clients_are_who_the_header_says() {
    let proxied = free_port();
    let server = Server::start_conf(&format!(
        "rtmp {{ server {{ listen 127.0.0.1:{{rtmp}}; application live {{ live on; }} }} }}
         http {{ server {{ listen 127.0.0.1:{{http}}; location /api/ {{ api on; }} }}
                 server {{ listen 127.0.0.1:{proxied} proxy_protocol;
                     location /api/ {{ api on; deny 203.0.113.7; }} location /live {{ flv_live on; }} }} }}"
    ));
    wait_for("the proxy_protocol address", Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", proxied)).ok());
    let as_denied = forwarder(proxied, v1("203.0.113.7:40003"));
    let as_player = forwarder(proxied, v2("198.51.100.9:40004"));
    assert_eq!(http_get(as_denied, "/api/v1/server").0, 403, "203.0.113.7 is denied");
    assert_eq!(http_get(as_player, "/api/v1/server").0, 200, "198.51.100.9 is not");
    assert_eq!(http_get(proxied, "/api/v1/server").0, 0, "no header, no answer");
    wait_log(
        &server,
        &["proxy_protocol: connection closed", "no PROXY protocol header", "received \"GET /api/v1/server"],
    );

    let _publisher = ffmpeg_publish(&server.url("cam"), 60, 25);
    wait_published(&server, "cam");
    let mut player = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "30", &format!("http://127.0.0.1:{as_player}/live/cam.flv")])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let found = wait_for("the HTTP-FLV player in the API", Duration::from_secs(20), || {
        clients(server.http_port).into_iter().find(|(_, protocol, _)| protocol != "rtmp")
    });
    let _ = player.kill();
    let _ = player.wait();
    assert_eq!(found.0, "198.51.100.9:40004", "{found:?}");
}

/// HAProxy 2.x in TCP mode with `send-proxy` and `send-proxy-v2`, connecting to sluice from
/// 127.0.0.2: the rules deny 127.0.0.2, so only a server that reads the header (and sees the
/// client, 127.0.0.1) lets ffmpeg publish and ffprobe play; the API shows 127.0.0.1.
#[test]
fn haproxy_send_proxy_v1_and_v2() {
    if Command::new("haproxy").arg("-v").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "haproxy is missing in CI (scripts/test installs it)");
        eprintln!("SKIPPED: haproxy is not installed (apt-get install haproxy)");
        return;
    }
    let server = Server::start_conf(
        "rtmp { server { listen 127.0.0.1:{rtmp} proxy_protocol;
            deny publish 127.0.0.2; deny play 127.0.0.2; allow publish all; allow play all;
            application live { live on; } } }
         http { server { listen 127.0.0.1:{http}; location /api/ { api on; } } }",
    );
    let (v1_port, v2_port) = (free_port(), free_port());
    let conf = format!(
        "defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend v1
    bind 127.0.0.1:{v1_port}
    default_backend sluice_v1
frontend v2
    bind 127.0.0.1:{v2_port}
    default_backend sluice_v2
backend sluice_v1
    server s 127.0.0.1:{rtmp} send-proxy source 127.0.0.2
backend sluice_v2
    server s 127.0.0.1:{rtmp} send-proxy-v2 source 127.0.0.2
",
        rtmp = server.port
    );
    let path = server.dir.path("haproxy.cfg");
    std::fs::write(&path, conf).unwrap();
    let haproxy = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(server.dir.path("haproxy.log")).unwrap()))
        .spawn()
        .unwrap();
    let _haproxy = Proc(haproxy);
    for port in [v1_port, v2_port] {
        wait_for("haproxy listening", Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", port)).ok());
    }

    let _publisher = ffmpeg_publish(&format!("rtmp://127.0.0.1:{v1_port}/live/cam"), 60, 25);
    wait_published(&server, "cam");
    let addrs: Vec<String> = clients(server.http_port).into_iter().map(|(addr, ..)| addr).collect();
    assert!(addrs.iter().all(|a| a.starts_with("127.0.0.1:")), "the client's address, not HAProxy's: {addrs:?}");
    assert!(
        probes(&format!("rtmp://127.0.0.1:{v2_port}/live/cam")),
        "plays through send-proxy-v2; log:\n{}",
        server.log()
    );
    assert!(
        server.log().contains("proxy_protocol: the header names the client"),
        "both connections came with headers; log:\n{}",
        server.log()
    );
    let log = server.log();
    assert!(log.contains("balancer=127.0.0.2:"), "HAProxy connects from 127.0.0.2; log:\n{log}");
    assert!(!log.contains("refused"), "127.0.0.2 is never what the rules see; log:\n{log}");
}

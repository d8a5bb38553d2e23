//! RTMPS ingest (`listen ... ssl`): real ffmpeg clients publish and play over TLS with a
//! self-signed certificate made at test time (Debian's ffmpeg does not verify certificates
//! unless asked), beside a plain listener of the same server; bad clients and bad
//! configurations are refused.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A self-signed certificate for localhost and its key, written as PEM into `dir`.
fn write_cert(dir: &TempDir) -> (PathBuf, PathBuf) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// A server with a plain listener (`{rtmp}`) and an `ssl` one on `ssl_port`, plus `extra`.
fn start_rtmps(certs: &TempDir, ssl_port: u16, extra: &str) -> Server {
    let (cert, key) = write_cert(certs);
    Server::start_conf(&format!(
        "rtmp {{ server {{
            listen 127.0.0.1:{{rtmp}};
            listen 127.0.0.1:{ssl_port} ssl;
            ssl_certificate {};
            ssl_certificate_key {};
            {extra}
            application live {{ live on; }}
        }} }}
        http {{ server {{ listen 127.0.0.1:{{http}}; }} }}",
        cert.display(),
        key.display()
    ))
}

fn rtmps_url(port: u16, name: &str) -> String {
    format!("rtmps://127.0.0.1:{port}/live/{name}")
}

/// ffmpeg reading `url` until it decoded `frames` video frames; how many it decoded.
fn decoded_frames(url: &str, frames: u32) -> usize {
    let out = run_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-rw_timeout", "15000000", "-i", url])
            .args(["-map", "0:v:0", "-frames:v", &frames.to_string(), "-f", "framemd5", "-"]),
        Duration::from_secs(90),
    );
    assert!(out.status.success(), "ffmpeg reading {url} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count()
}

/// Wait until the server's log has a line with all of `words`.
fn wait_log(server: &Server, words: &[&str], limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(line) = server.log().lines().find(|l| words.iter().all(|w| l.contains(w))) {
            return line.to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no log line with {words:?}; log:\n{}", server.log());
}

#[test]
fn ffmpeg_publishes_over_rtmps_and_plays_from_both_listeners() {
    let certs = TempDir::new("rtmps-certs");
    let ssl_port = free_port();
    let server = start_rtmps(&certs, ssl_port, "");
    let _publisher = ffmpeg_publish(&rtmps_url(ssl_port, "x"), 60, 25);
    wait_published(&server, "x");
    assert_eq!(decoded_frames(&rtmps_url(ssl_port, "x"), 50), 50, "player over rtmps");
    assert_eq!(decoded_frames(&server.url("x"), 50), 50, "player on the plain listener");
    assert!(ffprobe_streams(&rtmps_url(ssl_port, "x")).contains(&"h264,640,360".to_string()));
}

#[test]
fn a_plain_rtmp_client_on_the_ssl_port_fails_alone() {
    let certs = TempDir::new("rtmps-plain");
    let ssl_port = free_port();
    let server = start_rtmps(&certs, ssl_port, "");
    let _publisher = ffmpeg_publish(&server.url("x"), 60, 25);
    wait_published(&server, "x");
    // A TLS player that must see every one of its frames while plain clients knock on its port.
    let player = std::thread::spawn(move || decoded_frames(&rtmps_url(ssl_port, "x"), 200));
    wait_log(&server, &["play", "stream=x"], Duration::from_secs(30));
    for _ in 0..3 {
        let out = run_timeout(
            Command::new("ffmpeg").args(["-hide_banner", "-loglevel", "error", "-rw_timeout", "5000000"]).args([
                "-i",
                &format!("rtmp://127.0.0.1:{ssl_port}/live/x"),
                "-frames:v",
                "1",
                "-f",
                "null",
                "-",
            ]),
            Duration::from_secs(30),
        );
        assert!(!out.status.success(), "plain rtmp on the ssl port must fail");
    }
    assert_eq!(player.join().unwrap(), 200, "the TLS player kept receiving");
    let failed: Vec<_> =
        server.log().lines().filter(|l| l.contains("tls handshake failed")).map(String::from).collect();
    assert_eq!(failed.len(), 3, "one line per refused client:\n{}", server.log());
    assert!(failed.iter().all(|l| l.contains("client=127.0.0.1:") && l.contains("error=")), "{failed:?}");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn a_silent_peer_on_the_ssl_port_is_closed_after_timeout() {
    let certs = TempDir::new("rtmps-silent");
    let ssl_port = free_port();
    let server = start_rtmps(&certs, ssl_port, "timeout 1s;");
    let mut peer = TcpStream::connect(("127.0.0.1", ssl_port)).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    // The server closes without a byte: the read sees the end, not our 20 s limit.
    assert_eq!(peer.read(&mut [0u8; 64]).unwrap(), 0);
    assert!(started.elapsed() < Duration::from_secs(15), "closed after {:?}", started.elapsed());
    let line = wait_log(&server, &["tls handshake failed"], Duration::from_secs(5));
    assert!(line.contains("timeout"), "{line}");
}

/// A TLS connection to the `ssl` port that trusts only the test's certificate (so it also
/// checks that the server presents it), with a small receive buffer.
async fn tls_connect(certs: &TempDir, port: u16) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(certs.path("cert.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("handshake with our certificate")
}

/// Play `name` over `tls` with the rtmp crate's client, until `NetStream.Play.Start`.
async fn play_until_started(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>, port: u16, name: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = rtmp::ClientConfig {
        app: "live".into(),
        tc_url: format!("rtmps://127.0.0.1:{port}/live"),
        role: rtmp::Role::Play(name.into()),
        complex_handshake: true,
        chunk_size: 4096,
        buffer_ms: 1000,
        relay: None,
    };
    let mut session = rtmp::ClientSession::new(config, 0, &mut rand::thread_rng());
    session.start();
    let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
    loop {
        let out = session.take_output();
        if !out.is_empty() {
            tls.write_all(&out).await.unwrap();
            tls.flush().await.unwrap();
        }
        assert!(tls.read_buf(&mut buf).await.unwrap() > 0, "closed before Play.Start");
        let mut events = Vec::new();
        session.feed(&mut buf, &mut events).unwrap();
        let started = |e: &rtmp::ClientEvent| matches!(e, rtmp::ClientEvent::Status { code, .. } if code == "NetStream.Play.Start");
        if events.iter().any(started) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_player_that_reads_nothing_does_not_hold_shutdown() {
    let certs = TempDir::new("rtmps-stuck");
    let ssl_port = free_port();
    let mut server = start_rtmps(&certs, ssl_port, "timeout 60s;");
    let _publisher = ffmpeg_publish(&server.url("x"), 60, 25);
    tokio::task::block_in_place(|| wait_published(&server, "x"));
    let mut tls = tls_connect(&certs, ssl_port).await;
    play_until_started(&mut tls, ssl_port, "x").await;
    // It reads nothing more, and sends commands whose replies it never reads: once the socket's
    // buffers and rustls's are full, the server's write to it waits (for up to `timeout`), and
    // so would its TLS close_notify.
    let mut payload = Vec::new();
    for v in [
        amf0::Value::String("FCPublish".into()),
        amf0::Value::Number(5.0),
        amf0::Value::Null,
        amf0::Value::String("x".into()),
    ] {
        amf0::encode(&v, &mut payload);
    }
    let mut out = bytes::BytesMut::new();
    for _ in 0..20_000 {
        rtmp::chunk::encode_message(&mut out, 4096, 3, 0, 20, 0, &payload);
    }
    let flood = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for _ in 0..10 {
            if tls.write_all(&out).await.is_err() || tls.flush().await.is_err() {
                break;
            }
        }
        tls
    });
    // Until the server stops reading (its writes are blocked).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    let status = tokio::task::block_in_place(|| server.terminate());
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    let log = server.log();
    assert!(!log.contains("did not close within"), "a blocked TLS player held shutdown:\n{log}");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    flood.abort();
}

/// `sluice -t -c CONF` with `conf` written next to a fresh certificate; (success, stderr).
fn check_config(dir: &TempDir, conf: &str) -> (bool, String) {
    let path = dir.path("sluice.conf");
    std::fs::write(&path, conf).unwrap();
    let out = run_timeout(Command::new(sluice_bin()).arg("-t").arg("-c").arg(&path), Duration::from_secs(30));
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn sluice_t_checks_ssl_certificates_naming_file_and_line() {
    let dir = TempDir::new("rtmps-t");
    write_cert(&dir);
    let other = TempDir::new("rtmps-t-other");
    let (_, other_key) = write_cert(&other);
    let conf = |cert: &str, key: &str| {
        format!("rtmp {{\n  server {{\n    listen 1935;\n    listen 1936 ssl;\n{cert}{key}    application live {{ live on; }}\n  }}\n}}\n")
    };
    let at = |line: u32| format!("{}:{line}:", dir.path("sluice.conf").display());

    // Relative paths are the configuration file's directory's, as nginx's with -c.
    let good = conf("    ssl_certificate cert.pem;\n", "    ssl_certificate_key key.pem;\n");
    let (ok, err) = check_config(&dir, &good);
    assert!(ok, "{err}");

    let (ok, err) = check_config(&dir, &conf("", ""));
    assert!(!ok && err.contains(&at(4)) && err.contains("no \"ssl_certificate\" is defined"), "{err}");

    let (ok, err) = check_config(&dir, &conf("    ssl_certificate cert.pem;\n", ""));
    assert!(!ok && err.contains(&at(5)) && err.contains("no \"ssl_certificate_key\""), "{err}");

    let missing = conf("    ssl_certificate missing.pem;\n", "    ssl_certificate_key key.pem;\n");
    let (ok, err) = check_config(&dir, &missing);
    assert!(!ok && err.contains(&at(5)) && err.contains("missing.pem"), "{err}");

    // A file that exists and cannot be read (a directory here: permission bits do not stop root).
    let unreadable =
        conf("    ssl_certificate cert.pem;\n", &format!("    ssl_certificate_key {};\n", other.0.display()));
    let (ok, err) = check_config(&dir, &unreadable);
    assert!(!ok && err.contains(&at(6)) && err.contains("cannot load certificate key"), "{err}");

    let mismatched =
        conf("    ssl_certificate cert.pem;\n", &format!("    ssl_certificate_key {};\n", other_key.display()));
    let (ok, err) = check_config(&dir, &mismatched);
    assert!(!ok && err.contains(&at(6)) && err.contains("cannot use certificate key"), "{err}");
}

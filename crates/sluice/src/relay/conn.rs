//! One outgoing relay connection, for push and pull alike: TCP or TLS (`rtmps://`) to the
//! remote, then `rtmp::ClientSession` drives connect → createStream → publish or play as
//! nginx-rtmp's relay does. The session's own timers (`poll_timeout`/`handle_timeout`) drop a
//! remote that never answers `connect` or stops answering pings; writes have a deadline; reads
//! take at most [`READ_BUDGET`] bytes at a time.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtmp::{ClientConfig, ClientEvent, ClientSession, MediaKind, RelayFields, Role, SessionError, Timeouts};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::url::Plan;
use crate::hub::Frame;

/// Longest a remote may take to accept TCP (and TLS), then again to accept `connect`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest from `connect` accepted to `NetStream.Publish.Start` / `NetStream.Play.Start`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Ping a remote silent this long...
pub const PING: Duration = Duration::from_secs(30);
/// ...and give up when nothing arrives this long after the ping.
pub const PING_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest one write may block: a remote that reads nothing for this long is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes read from the remote at a time.
pub const READ_BUDGET: usize = 64 * 1024;
/// Chunk size a relay sends with (nginx-rtmp's relay announces its server's, 4096 by default).
const CHUNK_SIZE: u32 = 4096;

/// Why a relay connection failed. `Display` is one short phrase for the leg's log line.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// TCP or TLS could not be set up.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The TLS configuration could not be built (no system roots, ...).
    #[error("TLS: {0}")]
    Tls(String),
    /// Something took too long.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The remote closed the connection.
    #[error("closed by the remote")]
    Closed,
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The remote broke the protocol, or a session timer fired.
    #[error("{0}")]
    Session(#[from] SessionError),
    /// The remote refused `connect`, `publish` or `play`.
    #[error("refused: {code} {description}")]
    Refused {
        /// The `onStatus`/`_error` code, such as `NetStream.Publish.BadName`.
        code: String,
        /// Its description (the remote's text, already made safe for logs).
        description: String,
    },
}

/// What the relay does on the remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Publish the local stream there (push).
    Publish,
    /// Play the remote stream (pull).
    Play,
}

/// Settings of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Check `rtmps://` certificates (`relay_tls_verify`).
    pub tls_verify: bool,
    /// The buffer length announced after `play` (`relay_buffer`).
    pub buffer: Duration,
    /// The largest message taken from the remote (the server's `max_message` for a pull).
    pub max_message: u32,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connected relay session.
pub struct RelayConn {
    io: Box<dyn Io>,
    session: ClientSession,
    input: BytesMut,
    events: VecDeque<ClientEvent>,
    started: Instant,
    bytes_in: u64,
    bytes_out: u64,
}

impl std::fmt::Debug for RelayConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConn").field("bytes_in", &self.bytes_in).field("bytes_out", &self.bytes_out).finish()
    }
}

impl RelayConn {
    /// Connects to `plan`'s remote and sends the handshake; `connect` and the rest follow as
    /// the remote answers (see [`RelayConn::wait_started`]).
    pub async fn connect(plan: &Plan, direction: Direction, opts: &Options) -> Result<RelayConn, ConnError> {
        let started = Instant::now();
        let io = tokio::time::timeout(CONNECT_TIMEOUT, open(plan, opts.tls_verify))
            .await
            .map_err(|_| ConnError::Timeout("TCP/TLS connect"))??;
        let role = match direction {
            Direction::Publish => Role::Publish(plan.remote_name.clone()),
            Direction::Play => Role::Play(plan.remote_name.clone()),
        };
        let config = ClientConfig {
            app: plan.connect.app.clone(),
            tc_url: plan.connect.tc_url.clone(),
            role,
            complex_handshake: false,
            chunk_size: CHUNK_SIZE,
            buffer_ms: u32::try_from(opts.buffer.as_millis()).unwrap_or(u32::MAX),
            relay: Some(RelayFields {
                flash_ver: plan.connect.flash_ver.clone(),
                page_url: plan.connect.page_url.clone(),
                swf_url: plan.connect.swf_url.clone(),
                play_start: plan.play_start,
                play_duration: plan.play_duration,
            }),
        };
        let mut session = ClientSession::new(config, 0, &mut rand::thread_rng());
        session.set_max_message(opts.max_message);
        session.set_timeouts(Timeouts { connect: Some(CONNECT_TIMEOUT), ping: Some(PING), ping_timeout: PING_TIMEOUT });
        session.start();
        let mut conn = RelayConn {
            io,
            session,
            input: BytesMut::with_capacity(READ_BUDGET),
            events: VecDeque::new(),
            started,
            bytes_in: 0,
            bytes_out: 0,
        };
        conn.flush().await?;
        Ok(conn)
    }

    /// Waits until the remote accepted `publish` or `play` (bounded by the session's connect
    /// timer and [`START_TIMEOUT`]). Events that arrive meanwhile other than statuses (stream
    /// begin, early media of a pull) stay queued for [`RelayConn::next_events`].
    pub async fn wait_started(&mut self) -> Result<(), ConnError> {
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT + START_TIMEOUT;
        let mut kept = VecDeque::new();
        let result = loop {
            let events = match tokio::time::timeout_at(deadline, self.next_events()).await {
                Ok(events) => events,
                Err(_) => break Err(ConnError::Timeout("no publish/play answer")),
            };
            let events = match events {
                Ok(events) => events,
                Err(e) => break Err(e),
            };
            if let Err(e) = self.flush().await {
                break Err(e);
            }
            let mut done = None;
            for event in events {
                match status_outcome(&event) {
                    Some(outcome) if done.is_none() => done = Some(outcome),
                    _ => kept.push_back(event),
                }
            }
            if let Some(outcome) = done {
                break outcome;
            }
        };
        kept.append(&mut self.events);
        self.events = kept;
        result
    }

    /// The next events from the remote: waits for input or the session's next timer (a ping to
    /// send, or a dead remote). Cancel-safe: the only waits are a socket read and a sleep, so it
    /// can sit in a `select!` with a hub subscriber. Call [`RelayConn::flush`] afterwards: the
    /// session may have answered (acknowledgements, pongs, pings).
    pub async fn next_events(&mut self) -> Result<Vec<ClientEvent>, ConnError> {
        if !self.events.is_empty() {
            return Ok(self.events.drain(..).collect());
        }
        let timer = self.session.poll_timeout().map(|at| tokio::time::Instant::from_std(self.started + at));
        let sleep = async {
            match timer {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let mut events = Vec::new();
        let mut limited = (&mut self.io).take(READ_BUDGET as u64);
        tokio::select! {
            read = limited.read_buf(&mut self.input) => {
                let n = read?;
                if n == 0 {
                    return Err(ConnError::Closed);
                }
                self.bytes_in += n as u64;
                self.session.handle_input(&mut self.input, &mut events, self.started.elapsed())?;
            }
            () = sleep => self.session.handle_timeout(self.started.elapsed())?,
        }
        Ok(events)
    }

    /// Queues one hub frame for the remote (a push).
    pub fn send_frame(&mut self, frame: &Frame) {
        self.session.send_media(frame.kind, frame.timestamp, &frame.payload);
    }

    /// Queues a media message (a pull's own use, tests).
    pub fn send_media(&mut self, kind: MediaKind, timestamp: u32, payload: &[u8]) {
        self.session.send_media(kind, timestamp, payload);
    }

    /// Writes what is queued, within [`WRITE_TIMEOUT`]; returns the bytes written.
    pub async fn flush(&mut self) -> Result<usize, ConnError> {
        let out = self.session.take_output();
        if out.is_empty() {
            return Ok(0);
        }
        tokio::time::timeout(WRITE_TIMEOUT, self.io.write_all(&out))
            .await
            .map_err(|_| ConnError::Timeout("the remote does not read"))??;
        self.bytes_out += out.len() as u64;
        Ok(out.len())
    }

    /// Ends a publish politely (FCUnpublish, deleteStream) and closes, without waiting long.
    pub async fn close(mut self) {
        self.session.close_stream();
        let out = self.session.take_output();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.io.write_all(&out).await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }

    /// Bytes read from the remote so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// Bytes written to the remote so far.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }
}

/// `Some(Ok)` for the status that starts the relay, `Some(Err)` for a refusal; `None` for
/// anything else.
fn status_outcome(event: &ClientEvent) -> Option<Result<(), ConnError>> {
    let ClientEvent::Status { level, code, description } = event else { return None };
    match code.as_str() {
        "NetStream.Publish.Start" | "NetStream.Play.Start" => Some(Ok(())),
        _ if level == "error" || code.ends_with(".Failed") || code.contains("Rejected") || code.contains("BadName") => {
            Some(Err(ConnError::Refused {
                code: crate::untrusted::for_log(code).into_owned(),
                description: crate::untrusted::for_log(description).into_owned(),
            }))
        }
        _ => None,
    }
}

/// TCP to the remote, wrapped in TLS for `rtmps://`.
async fn open(plan: &Plan, tls_verify: bool) -> Result<Box<dyn Io>, ConnError> {
    let url = &plan.url;
    let tcp = TcpStream::connect((url.host.as_str(), url.port)).await.map_err(ConnError::Connect)?;
    tcp.set_nodelay(true).map_err(ConnError::Connect)?;
    if !url.tls {
        return Ok(Box::new(tcp));
    }
    let name = rustls::pki_types::ServerName::try_from(url.host.clone())
        .map_err(|e| ConnError::Tls(format!("bad server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(tls_config(tls_verify)?);
    let tls = connector.connect(name, tcp).await.map_err(ConnError::Connect)?;
    Ok(Box::new(tls))
}

/// The TLS client configuration, built once per verify setting: rustls with ring, the system's
/// roots through the platform verifier, or no check at all with `relay_tls_verify off`.
fn tls_config(verify: bool) -> Result<Arc<rustls::ClientConfig>, ConnError> {
    static VERIFYING: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    static TRUSTING: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let slot = if verify { &VERIFYING } else { &TRUSTING };
    slot.get_or_init(|| build_tls_config(verify).map(Arc::new).map_err(|e| e.to_string()))
        .clone()
        .map_err(ConnError::Tls)
}

fn build_tls_config(verify: bool) -> Result<rustls::ClientConfig, rustls::Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let config = match verify {
        true => builder.with_platform_verifier()?.with_no_client_auth(),
        false => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// `relay_tls_verify off`: any certificate is accepted (signatures are still checked, so the
/// handshake itself stays sound). For tests and private networks.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RelayTarget;
    use crate::relay::url::{plan, Vars};

    fn plan_for(url: &str) -> Plan {
        let target = RelayTarget { url: url.to_owned(), ..RelayTarget::default() };
        plan(&target, &Vars { name: "cam", app: "live", args: "" }).unwrap()
    }

    const OPTS: Options = Options { tls_verify: true, buffer: Duration::from_secs(5), max_message: 1 << 20 };

    /// A sluice server on a free port; its port and the token that stops it.
    async fn sluice() -> (u16, tokio_util::sync::CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let text = format!(
            "rtmp {{ http_listen off; server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}"
        );
        let config = crate::config::Config::parse(&text, "t").unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(crate::app::run(config, shutdown.clone()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (port, shutdown, server)
    }

    /// Publishes through `url` and sees the remote accept it and count bytes.
    async fn publish_through(url: &str, opts: &Options) -> Result<(), ConnError> {
        let mut conn = RelayConn::connect(&plan_for(url), Direction::Publish, opts).await?;
        tokio::time::timeout(Duration::from_secs(20), conn.wait_started()).await.expect("an answer in time")?;
        conn.send_media(MediaKind::Video, 0, &[0x17, 0x00, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 0]);
        assert!(conn.flush().await? > 0);
        assert!(conn.bytes_in() > 0 && conn.bytes_out() > 0);
        conn.close().await;
        Ok(())
    }

    #[tokio::test]
    async fn publishes_to_a_sluice_server() {
        let (port, shutdown, server) = sluice().await;
        publish_through(&format!("rtmp://127.0.0.1:{port}/live"), &OPTS).await.expect("publishing");
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }

    /// TLS in front of `to` with a self-signed certificate for 127.0.0.1; returns its port.
    async fn tls_proxy(to: u16) -> u16 {
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let cert = key.cert.der().clone();
        let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], private)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Ok(mut plain) = TcpStream::connect(("127.0.0.1", to)).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        port
    }

    /// `rtmps://` carries the relay over TLS; with `relay_tls_verify on` a self-signed
    /// certificate is refused.
    #[tokio::test]
    async fn publishes_over_rtmps() {
        let (port, shutdown, server) = sluice().await;
        let tls = tls_proxy(port).await;
        let url = format!("rtmps://127.0.0.1:{tls}/live");
        publish_through(&url, &Options { tls_verify: false, ..OPTS }).await.expect("publishing over TLS");
        match publish_through(&url, &OPTS).await {
            Err(ConnError::Connect(e)) => assert!(e.to_string().to_lowercase().contains("certificate"), "{e}"),
            other => panic!("a self-signed certificate must be refused: {other:?}"),
        }
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn refused_connections_say_so() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = RelayConn::connect(&plan_for(&format!("rtmp://127.0.0.1:{port}/live")), Direction::Publish, &OPTS)
            .await
            .unwrap_err();
        assert!(matches!(err, ConnError::Connect(_)), "{err}");
    }

    #[test]
    fn refusals_are_recognised() {
        let status = |level: &str, code: &str| ClientEvent::Status {
            level: level.into(),
            code: code.into(),
            description: "d\nx".into(),
        };
        assert!(matches!(status_outcome(&status("status", "NetStream.Publish.Start")), Some(Ok(()))));
        assert!(status_outcome(&status("status", "NetStream.Play.Reset")).is_none());
        match status_outcome(&status("error", "NetStream.Publish.BadName")) {
            Some(Err(ConnError::Refused { code, description })) => {
                assert_eq!((code.as_str(), description.as_str()), ("NetStream.Publish.BadName", "d\\nx"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(status_outcome(&status("error", "NetConnection.Connect.Rejected")), Some(Err(_))));
        assert!(status_outcome(&ClientEvent::Connected).is_none());
    }

    #[test]
    fn tls_configs_build() {
        assert!(tls_config(false).is_ok());
        // The verifying one needs the system's roots; building it must not panic either way.
        let _ = tls_config(true);
    }
}

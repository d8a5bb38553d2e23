//! A tokio RTMP client around `rtmp::ClientSession`: used by the integration tests and the
//! load tool (and later by relays).

use std::collections::VecDeque;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::BytesMut;
use rtmp::{ClientConfig, ClientEvent, ClientSession, MediaKind, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An RTMP client connection.
pub struct RtmpClient {
    socket: TcpStream,
    session: ClientSession,
    buf: BytesMut,
    events: VecDeque<ClientEvent>,
}

impl RtmpClient {
    /// Connect to `addr`, handshake and start `role` on application `app`. Returns once the
    /// connection is set up; call [`RtmpClient::next_event`] for the statuses.
    pub async fn connect(addr: SocketAddr, app: &str, role: Role) -> anyhow::Result<Self> {
        Self::connect_with(addr, app, role, None).await
    }

    /// [`RtmpClient::connect`] with a given socket receive buffer size (a small one makes a slow
    /// reader, for tests and the load tool).
    pub async fn connect_with(
        addr: SocketAddr,
        app: &str,
        role: Role,
        recv_buffer: Option<u32>,
    ) -> anyhow::Result<Self> {
        let config = ClientConfig {
            app: app.into(),
            tc_url: format!("rtmp://{addr}/{app}"),
            role,
            complex_handshake: true,
            chunk_size: 4096,
            buffer_ms: 1000,
            relay: None,
        };
        let sock = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        if let Some(size) = recv_buffer {
            sock.set_recv_buffer_size(size)?;
        }
        let socket = sock.connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        socket.set_nodelay(true)?;
        let mut session = ClientSession::new(config, 0, &mut rand::thread_rng());
        session.start();
        let mut client = Self { socket, session, buf: BytesMut::with_capacity(64 * 1024), events: VecDeque::new() };
        client.flush().await?;
        Ok(client)
    }

    /// Write what the session has queued.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        let out = self.session.take_output();
        if !out.is_empty() {
            self.socket.write_all(&out).await?;
        }
        Ok(())
    }

    /// The next event; errors when the server closes the connection.
    pub async fn next_event(&mut self) -> anyhow::Result<ClientEvent> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(e);
            }
            if self.socket.read_buf(&mut self.buf).await? == 0 {
                anyhow::bail!("connection closed by server");
            }
            let mut events = Vec::new();
            self.session.feed(&mut self.buf, &mut events)?;
            self.events.extend(events);
            self.flush().await?;
        }
    }

    /// Read events until an `onStatus` arrives; returns its code.
    pub async fn next_status(&mut self) -> anyhow::Result<String> {
        loop {
            if let ClientEvent::Status { code, .. } = self.next_event().await? {
                return Ok(code);
            }
        }
    }

    /// Send one media message.
    pub async fn send_media(&mut self, kind: MediaKind, timestamp: u32, payload: &[u8]) -> anyhow::Result<()> {
        self.session.send_media(kind, timestamp, payload);
        self.flush().await
    }

    /// Send `@setDataFrame onMetaData`.
    pub async fn send_metadata(&mut self, metadata: amf0::Value) -> anyhow::Result<()> {
        self.session.send_metadata(metadata);
        self.flush().await
    }

    /// Take the socket and session apart, e.g. to drain media without parsing it. Bytes already
    /// read but not yet parsed are counted as received; their number is returned too.
    pub fn into_parts(mut self) -> (TcpStream, ClientSession, usize) {
        let leftover = self.buf.len();
        self.session.skip_received(leftover);
        (self.socket, self.session, leftover)
    }

    /// The raw socket, e.g. to stop reading in a slow-player test.
    pub fn into_socket(self) -> TcpStream {
        self.socket
    }
}

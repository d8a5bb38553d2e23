//! Helpers shared by the rtmp integration tests.

use bytes::BytesMut;
use rtmp::{ServerConfig, ServerSession};

/// A server past the handshake with a hand-driven client, which can then pipeline commands.
pub fn handshaken_server() -> ServerSession {
    let mut rng = rand::thread_rng();
    let mut server = ServerSession::new(ServerConfig::default(), 0, &mut rng);
    let mut client = rtmp::handshake::ClientHandshake::new(false, 0, &mut rng);
    let mut c0c1 = Vec::new();
    client.start(&mut c0c1);
    let mut events = Vec::new();
    server.feed(&mut BytesMut::from(&c0c1[..]), &mut events).unwrap();
    let mut c2 = Vec::new();
    client.feed(&mut BytesMut::from(&server.take_output()[..]), &mut c2).unwrap();
    server.feed(&mut BytesMut::from(&c2[..]), &mut events).unwrap();
    assert!(events.is_empty());
    server
}

//! RTMP as state machines over bytes: no sockets, no tokio, no clock.
//!
//! | module | spec |
//! |---|---|
//! | [`handshake`] | Adobe RTMP 1.0 §5.2, plus the digest ("complex") handshake of Flash-era peers |
//! | [`chunk`] | §5.3 chunk stream: formats 0–3, extended timestamps, csid up to 65599 |
//! | [`message`] | §5.4 protocol control and §7.1.7 user control messages |
//! | [`command`] | §7.1.1/§7.2 AMF0/AMF3 command and data messages |
//! | [`server`] | the server side of a connection: connect, createStream, publish, play, ... |
//! | [`client`] | the client side, used by tests, the load tool and relays |
//! | [`timer`] | ping and timeouts, as a `poll_timeout`/`handle_timeout` pair with time passed in |
//!
//! The tokio glue lives in the `sluice` crate; this crate does no I/O and reads no clock
//! (time arrives as arguments), so every part is unit-tested and fuzzed alone.

pub mod chunk;
pub mod client;
pub mod command;
pub mod handshake;
pub mod message;
pub mod server;
pub mod timer;

pub use chunk::{ChunkDecoder, ChunkError, RawMessage};
pub use client::{ClientConfig, ClientEvent, ClientSession, RelayFields, Role};
pub use server::{ConnectInfo, MediaKind, ServerConfig, ServerEvent, ServerSession, SessionError};
pub use timer::{TimeoutError, Timeouts, Timers};

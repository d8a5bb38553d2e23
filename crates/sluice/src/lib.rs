//! sluice: a live video streaming server that reads nginx-rtmp's configuration.
//!
//! Media flows one way: ingest (`connection`, RTMP publish) → [`hub`] → outputs (`connection`,
//! RTMP play; later HLS, recording, relays). See ARCHITECTURE.md for the map.

pub mod access;
pub mod app;
pub mod auth;
pub mod client;
pub mod config;
pub mod connection;
pub mod events;
pub mod form;
pub mod hls;
pub mod http;
pub mod hub;
pub mod live;
pub mod notify;
pub mod record;
pub mod server;
pub mod untrusted;

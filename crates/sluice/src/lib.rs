//! sluice: a live video streaming server that reads nginx-rtmp's configuration.
//!
//! Media flows one way: sources (`connection`, RTMP publish) → [`streams`] (one publish and one
//! play entry for every source) → [`hub`] → outputs: players (`connection`, RTMP play) and the
//! output [`modules`] (HLS, recording, relay push, exec). See ARCHITECTURE.md for the map.

pub mod access;
pub mod api;
pub mod app;
mod atomic_file;
pub mod auth;
pub mod client;
pub mod clients;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod dash;
pub mod dashboard;
pub mod events;
pub mod exec;
pub mod fanout;
mod file_at;
pub mod form;
pub mod hls;
pub mod http;
pub mod httpflv;
pub mod hub;
pub mod live;
pub mod logs;
pub mod metrics;
pub mod modules;
pub mod notify;
pub mod policy;
pub mod proxy_protocol;
pub mod record;
pub mod recordings;
pub mod relay;
pub mod rtmp_stat;
pub mod server;
pub mod stats;
pub mod streams;
pub mod tls;
pub mod transcode;
pub mod transport;
pub mod untrusted;
mod uring;
pub mod vod;
pub mod wake_gate;

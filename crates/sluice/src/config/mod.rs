//! The configuration model: nginx-style text (parsed by the `nginx-conf` crate) turned into typed,
//! validated, merged settings (rtmp → server → application, as nginx-rtmp merges them).
//!
//! Each capability keeps its directive table in its own module (`core`, `live`, `record`, `hls`, ...);
//! this module walks the syntax tree, dispatches each directive to the table that owns it, and
//! reports `FILE:LINE:COL: message` errors.

use std::net::SocketAddr;
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// `rtmp { server { ... } }` blocks, one per listening server.
    pub servers: Vec<ServerConf>,
    /// `http { server { listen ...; } }`: where the built-in HTTP server listens (None: no HTTP).
    pub http: Option<HttpConf>,
}

#[derive(Debug, Clone)]
pub struct HttpConf {
    pub listen: Vec<SocketAddr>,
}

/// One `rtmp { server { } }` block.
#[derive(Debug, Clone)]
pub struct ServerConf {
    pub listen: Vec<SocketAddr>,
    pub core: CoreConf,
    pub apps: Vec<AppConf>,
}

/// Connection-level settings (nginx-rtmp's core module); rtmp/server level.
#[derive(Debug, Clone)]
pub struct CoreConf {
    pub timeout: Duration,      // 60s
    pub ping: Duration,         // 60s (0 = off)
    pub ping_timeout: Duration, // 30s
    pub max_streams: u32,       // 32
    pub ack_window: u32,        // 5000000
    pub chunk_size: u32,        // 4096
    pub max_message: u32,       // 1M
    pub out_queue: usize,       // 256
    pub buflen: Duration,       // 1000ms
}

/// One `application NAME { }` block, with everything inherited from rtmp and server merged in.
#[derive(Debug, Clone)]
pub struct AppConf {
    pub name: String,
    pub live: LiveConf,
    pub record: RecordConf,
    pub hls: HlsConf,
}

/// nginx-rtmp's live module.
#[derive(Debug, Clone)]
pub struct LiveConf {
    pub live: bool,                          // off
    pub meta: MetaMode,                      // on
    pub sync: Duration,                      // 300ms
    pub interleave: bool,                    // off
    pub wait_key: bool,                      // off
    pub wait_video: bool,                    // off
    pub publish_notify: bool,                // off
    pub play_restart: bool,                  // off
    pub idle_streams: bool,                  // on
    pub drop_idle_publisher: Option<Duration>, // off
    pub gop_cache: bool,                     // on (sluice extension)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaMode {
    On,
    Copy,
    Off,
}

/// nginx-rtmp's record module (carried; recording itself is a later issue).
#[derive(Debug, Clone, Default)]
pub struct RecordConf {
    // filled by the config helper
}

/// nginx-rtmp's hls module (carried; HLS itself is a later issue).
#[derive(Debug, Clone, Default)]
pub struct HlsConf {
    // filled by the config helper
}

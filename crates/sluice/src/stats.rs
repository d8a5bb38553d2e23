//! One snapshot of the running server for every reader: nginx-rtmp's `rtmp_stat` page
//! (`stat`), the JSON API (`api`), Prometheus metrics (`metrics`) and the dashboard. Each
//! reader formats [`Snapshot`]; none walks the hub or the clients registry itself, so the
//! figures agree everywhere and the cost of reading is paid once per request, off the
//! fan-out path (taking a snapshot reads atomics and takes each registry's lock briefly).
//!
//! Rates (`bw_*`) are bits per second over nginx-rtmp's window (`BANDWIDTH_WINDOW`): the
//! bytes counted in the last completed window, as `ngx_rtmp_update_bandwidth` computes them.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::clients::{ClientSnapshot, Role};
use crate::server::Running;

/// nginx-rtmp's bandwidth window.
pub const BANDWIDTH_WINDOW: Duration = Duration::from_secs(10);

/// What stats keep between snapshots (bandwidth windows, the previous CPU sample): held by
/// [`Running`].
#[derive(Debug, Default)]
pub struct Meters {}

/// The whole server at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Server-wide figures.
    pub server: ServerStats,
    /// Every stream in the hub (live or with players waiting), sorted by app then name.
    pub streams: Vec<StreamStats>,
    /// Every client, sorted by id.
    pub clients: Vec<ClientStats>,
}

/// Server-wide figures (`/api/v1/server`, the `rtmp_stat` header).
#[derive(Debug, Clone, Serialize)]
pub struct ServerStats {
    /// sluice's version.
    pub version: &'static str,
    /// The process id.
    pub pid: u32,
    /// Seconds since the server started.
    pub uptime_s: u64,
    /// When it started, in seconds since the Unix epoch.
    pub started_unix: u64,
    /// Clients connected now (RTMP, HTTP players, relay legs).
    pub connections: usize,
    /// Connections accepted since start (nginx-rtmp's `naccepted`).
    pub naccepted: u64,
    /// Bytes read from every client since start (of clients still connected and gone).
    pub bytes_in: u64,
    /// Bytes written to every client since start.
    pub bytes_out: u64,
    /// Bits per second read over the last window.
    pub bw_in: u64,
    /// Bits per second written over the last window.
    pub bw_out: u64,
    /// The process's CPU use since the previous snapshot, in percent of one core.
    pub cpu_percent: f64,
    /// Resident memory in bytes.
    pub memory_bytes: u64,
    /// Streams in the hub.
    pub streams: usize,
    /// Where RTMP listens (for the URLs the dashboard shows).
    pub rtmp: Vec<ListenInfo>,
}

/// One RTMP listen address.
#[derive(Debug, Clone, Serialize)]
pub struct ListenInfo {
    /// `rtmp` or `rtmps`.
    pub scheme: &'static str,
    /// The port.
    pub port: u16,
    /// The `rtmp { server {} }` block index.
    pub srv: usize,
}

/// One stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamStats {
    /// The application.
    pub app: String,
    /// The stream name.
    pub name: String,
    /// Whether a publisher is live.
    pub live: bool,
    /// Milliseconds since the current publisher started (0 when none).
    pub uptime_ms: u64,
    /// The publishing client, when one is live.
    pub publisher: Option<PublisherInfo>,
    /// What the video sequence header (and metadata) said.
    pub video: Option<VideoInfo>,
    /// What the audio sequence header said.
    pub audio: Option<AudioInfo>,
    /// Bytes of media published since the publisher started.
    pub bytes_in: u64,
    /// Bytes written to the stream's players (sum over players connected now).
    pub bytes_out: u64,
    /// Bits per second published over the last window.
    pub bw_in: u64,
    /// Bits per second written to players over the last window.
    pub bw_out: u64,
    /// Bits per second of audio published.
    pub bw_audio: u64,
    /// Bits per second of video published.
    pub bw_video: u64,
    /// Frames published since the publisher started.
    pub frames_in: u64,
    /// Frames skipped by players that fell behind.
    pub dropped_frames: u64,
    /// Players by protocol (relay push legs count as `relay`).
    pub players: PlayerCounts,
    /// Recorders writing this stream now.
    pub recordings: Vec<RecordingInfo>,
    /// The stream's live HLS, when the application has `hls on`.
    pub hls: Option<HlsInfo>,
    /// Relay legs of this stream (pushes out, the pull in).
    pub relays: Vec<RelayInfo>,
}

/// The client publishing a stream.
#[derive(Debug, Clone, Serialize)]
pub struct PublisherInfo {
    /// Its client id.
    pub id: u64,
    /// Its address.
    pub addr: SocketAddr,
    /// How it reached us (`rtmp`, `rtmps`, `relay`).
    pub protocol: &'static str,
}

/// Video parameters.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct VideoInfo {
    /// `H264`, `HEVC`, `AV1`, ...
    pub codec: String,
    /// `High`, `Main`, ... (empty when unknown).
    pub profile: String,
    /// nginx-rtmp's `compat` byte (H.264 constraint flags; 0 otherwise).
    pub compat: u8,
    /// `3.1`, ... (empty when unknown).
    pub level: String,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Frames per second: the metadata's `framerate`, else measured.
    pub frame_rate: f64,
}

/// Audio parameters.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct AudioInfo {
    /// `AAC`, `Opus`, `MP3`, ...
    pub codec: String,
    /// `LC`, `HE`, ... (empty when unknown).
    pub profile: String,
    /// Channels.
    pub channels: u32,
    /// Hz.
    pub sample_rate: u32,
}

/// Players of a stream by protocol.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct PlayerCounts {
    /// RTMP and RTMPS players.
    pub rtmp: u64,
    /// HTTP-FLV players.
    pub http_flv: u64,
    /// WebSocket-FLV players.
    pub ws_flv: u64,
    /// Relay push legs.
    pub relay: u64,
    /// All of them.
    pub total: u64,
}

/// A recorder writing a stream.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingInfo {
    /// The recorder's name (`""` for the application's own `record`).
    pub recorder: String,
    /// The file being written.
    pub file: String,
    /// Bytes written to it.
    pub size: u64,
    /// Milliseconds since it started.
    pub time_ms: u64,
}

/// A stream's live HLS.
#[derive(Debug, Clone, Serialize)]
pub struct HlsInfo {
    /// The playlist's URL path on the HTTP server (`/hls/NAME.m3u8`).
    pub playlist: String,
    /// Segments written so far.
    pub segments: u64,
}

/// A relay leg.
#[derive(Debug, Clone, Serialize)]
pub struct RelayInfo {
    /// Its client id.
    pub id: u64,
    /// `push` (a player of the local stream) or `pull` (its publisher).
    pub direction: &'static str,
    /// The remote, with secrets masked.
    pub url: String,
    /// Whether media flows now.
    pub connected: bool,
    /// Attempts after the first.
    pub reconnects: u64,
    /// Why the last attempt ended.
    pub last_error: Option<String>,
}

/// One client.
#[derive(Debug, Clone, Serialize)]
pub struct ClientStats {
    /// nginx-rtmp's `clientid`, the id the API's actions take.
    pub id: u64,
    /// Its address.
    pub addr: SocketAddr,
    /// `rtmp`, `rtmps`, `http-flv`, `ws-flv`, `relay`.
    pub protocol: &'static str,
    /// `publisher`, `player` or `idle`.
    pub role: &'static str,
    /// The application (empty before connect).
    pub app: String,
    /// The stream published or played.
    pub name: String,
    /// The `rtmp { server {} }` block index.
    pub srv: usize,
    /// Bytes read from it.
    pub bytes_in: u64,
    /// Bytes written to it.
    pub bytes_out: u64,
    /// Milliseconds connected.
    pub uptime_ms: u64,
    /// Frames it skipped because it fell behind.
    pub dropped: u64,
    /// The last media timestamp (ms).
    pub timestamp: u32,
    /// `flashVer` or `User-Agent` (client text).
    pub flashver: String,
    /// `swfUrl` (client text).
    pub swfurl: String,
    /// `pageUrl` or `Referer` (client text).
    pub pageurl: String,
}

impl From<&ClientSnapshot> for ClientStats {
    fn from(c: &ClientSnapshot) -> Self {
        ClientStats {
            id: c.id,
            addr: c.addr,
            protocol: c.kind.protocol(),
            role: role_name(c.role),
            app: c.app.clone(),
            name: c.name.clone(),
            srv: c.srv,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            uptime_ms: c.uptime.as_millis() as u64,
            dropped: c.dropped,
            timestamp: c.timestamp,
            flashver: c.connect.flashver.clone(),
            swfurl: c.connect.swfurl.clone(),
            pageurl: c.connect.pageurl.clone(),
        }
    }
}

/// The role's name in stats.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::None => "idle",
        Role::Publisher => "publisher",
        Role::Player => "player",
    }
}

/// Take a snapshot of the server.
pub fn collect(ctx: &Running) -> Snapshot {
    let mut clients: Vec<ClientStats> = ctx.shared.clients.list().iter().map(ClientStats::from).collect();
    clients.sort_by_key(|c| c.id);
    let mut streams: Vec<StreamStats> = ctx.shared.hub.streams().iter().map(|s| stream_stats(s, &clients)).collect();
    streams.sort_by(|a, b| (&a.app, &a.name).cmp(&(&b.app, &b.name)));
    let server = ServerStats {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        uptime_s: ctx.started.elapsed().as_secs(),
        started_unix: ctx.started_at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default(),
        connections: clients.len(),
        naccepted: 0,
        bytes_in: clients.iter().map(|c| c.bytes_in).sum(),
        bytes_out: clients.iter().map(|c| c.bytes_out).sum(),
        bw_in: 0,
        bw_out: 0,
        cpu_percent: 0.0,
        memory_bytes: 0,
        streams: streams.len(),
        rtmp: Vec::new(),
    };
    Snapshot { server, streams, clients }
}

fn stream_stats(stream: &crate::hub::Stream, clients: &[ClientStats]) -> StreamStats {
    let key = &stream.key;
    let of_stream = |c: &&ClientStats| c.app == key.app && c.name == key.name;
    let publisher = clients.iter().filter(of_stream).find(|c| c.role == "publisher").map(|c| PublisherInfo {
        id: c.id,
        addr: c.addr,
        protocol: c.protocol,
    });
    let mut players = PlayerCounts::default();
    let mut bytes_out = 0;
    for c in clients.iter().filter(of_stream).filter(|c| c.role == "player") {
        bytes_out += c.bytes_out;
        match c.protocol {
            "http-flv" => players.http_flv += 1,
            "ws-flv" => players.ws_flv += 1,
            "relay" => players.relay += 1,
            _ => players.rtmp += 1,
        }
        players.total += 1;
    }
    StreamStats {
        app: key.app.clone(),
        name: key.name.clone(),
        live: stream.is_live(),
        uptime_ms: 0,
        publisher,
        video: None,
        audio: None,
        bytes_in: 0,
        bytes_out,
        bw_in: 0,
        bw_out: 0,
        bw_audio: 0,
        bw_video: 0,
        frames_in: stream.frames_in.load(std::sync::atomic::Ordering::Relaxed),
        dropped_frames: stream.dropped.load(std::sync::atomic::Ordering::Relaxed),
        players,
        recordings: Vec::new(),
        hls: None,
        relays: Vec::new(),
    }
}

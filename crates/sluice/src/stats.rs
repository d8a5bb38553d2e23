//! One snapshot of the running server for every reader: nginx-rtmp's `rtmp_stat` page
//! (`stat`), the JSON API (`api`), Prometheus metrics (`metrics`) and the dashboard. Each
//! reader formats [`Snapshot`]; none walks the hub or the clients registry itself, so the
//! figures agree everywhere and the cost of reading is paid once per request, off the
//! fan-out path (taking a snapshot reads atomics and takes each registry's lock briefly).
//!
//! Rates (`bw_*`) are bits per second over nginx-rtmp's window (`BANDWIDTH_WINDOW`): the
//! bytes counted in the last completed window, as `ngx_rtmp_update_bandwidth` computes them.
//! Windows are closed lazily, when a snapshot is taken at least a window after the last one
//! closed (so with rare readers a window is longer than 10 s); before the first window of a
//! counter closes, its open window's rate is shown once it is a second long. Server totals
//! count from start, a stream's ingest counters from its publish; the totals include the
//! bytes of clients that have left. CPU is the process's (`/proc/self/stat`) since the
//! previous snapshot (at least 0.5 s before), memory its resident set (`/proc/self/statm`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::clients::{ClientSnapshot, Kind, Role};
use crate::config::AppConf;
use crate::hub::{Frame, PublishInfo, Stream, StreamKey};
use crate::server::Running;

/// nginx-rtmp's bandwidth window.
pub const BANDWIDTH_WINDOW: Duration = Duration::from_secs(10);

/// What stats keep between snapshots (bandwidth windows, the previous CPU sample) and what
/// they report as it was at start (the RTMP listen addresses): held by [`Running`]. Nothing
/// here is touched per frame: rates are worked out from running totals when a snapshot is
/// taken.
#[derive(Debug, Default)]
pub struct Meters {
    listen: Mutex<Vec<ListenInfo>>,
    state: Mutex<MeterState>,
}

impl Meters {
    /// Meters for a server whose RTMP listeners are `listen`.
    pub fn new(listen: Vec<ListenInfo>) -> Self {
        Meters { listen: Mutex::new(listen), state: Mutex::default() }
    }

    /// The RTMP listeners after a reload (the rates carry on).
    pub fn set_listen(&self, listen: Vec<ListenInfo>) {
        *self.listen.lock().unwrap_or_else(|e| e.into_inner()) = listen;
    }

    fn listen(&self) -> Vec<ListenInfo> {
        self.listen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MeterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Default)]
struct MeterState {
    bytes_in: Rate,
    bytes_out: Rate,
    /// By stream and publish (a new publisher starts new windows).
    streams: HashMap<(StreamKey, u64), StreamRates>,
    /// The previous CPU sample: when, and CPU time used by then.
    cpu: Option<(Instant, Duration)>,
    cpu_percent: f64,
}

#[derive(Debug, Default)]
struct StreamRates {
    bytes_in: Rate,
    audio: Rate,
    video: Rate,
    bytes_out: Rate,
    video_frames: Rate,
}

/// A counter's rate per second over nginx-rtmp's window, worked out lazily: a window opens
/// at the first look (or at a known start), and the rate of the last window that completed
/// (at least [`BANDWIDTH_WINDOW`] long) is reported until the next one completes. Before
/// any window completed, the open one's rate is reported once it is a second long.
#[derive(Debug, Default, Clone, Copy)]
struct Rate {
    /// When the open window started, and the counter then.
    open: Option<(Instant, u64)>,
    /// The last completed window's rate.
    last: Option<f64>,
}

impl Rate {
    /// A rate whose counter was `total` at `at`.
    fn starting(at: Instant, total: u64) -> Self {
        Rate { open: Some((at, total)), last: None }
    }

    /// The rate per second with the counter at `total` now.
    fn update(&mut self, now: Instant, total: u64) -> f64 {
        let Some((since, base)) = self.open else {
            self.open = Some((now, total));
            return 0.0;
        };
        let elapsed = now.saturating_duration_since(since);
        // A counter summed over clients drops when one leaves: count no negative bytes.
        let rate = || total.saturating_sub(base) as f64 / elapsed.as_secs_f64();
        if elapsed >= BANDWIDTH_WINDOW {
            let r = rate();
            self.last = Some(r);
            self.open = Some((now, total));
            r
        } else if let Some(r) = self.last {
            r
        } else if elapsed >= Duration::from_secs(1) {
            rate()
        } else {
            0.0
        }
    }

    /// The rate in bits per second of a byte counter.
    fn bits(&mut self, now: Instant, total_bytes: u64) -> u64 {
        (self.update(now, total_bytes) * 8.0).round() as u64
    }
}

/// The whole server at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Server-wide figures.
    pub server: ServerStats,
    /// Every stream in the hub (live or with players waiting), sorted by app then name.
    pub streams: Vec<StreamStats>,
    /// Every client, sorted by id.
    pub clients: Vec<ClientStats>,
    /// Files played on demand (`play`), sorted by server block, app and name.
    pub files: Vec<FileStats>,
}

impl Snapshot {
    /// Whether the client `id` plays a file (it is then a player of no stream in the hub).
    pub fn plays_file(&self, id: u64) -> bool {
        self.files.iter().any(|f| f.players.contains(&id))
    }
}

/// A file played on demand (`play`), under the name its players asked for.
#[derive(Debug, Clone, Serialize)]
pub struct FileStats {
    /// The application.
    pub app: String,
    /// The name played (`film`, `mp4:film`, ...).
    pub name: String,
    /// The `rtmp { server {} }` block index.
    pub srv: usize,
    /// Its players' client ids, newest first (nginx-rtmp's list order).
    pub players: Vec<u64>,
    /// Bytes written to them.
    pub bytes_out: u64,
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
    /// Frames skipped for players that fell behind since start, by application (streams gone
    /// included).
    pub dropped_frames: std::collections::BTreeMap<String, u64>,
    /// Where RTMP listens (for the URLs the dashboard shows).
    pub rtmp: Vec<ListenInfo>,
}

/// One RTMP listen address.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ListenInfo {
    /// `rtmp` or `rtmps`.
    pub scheme: &'static str,
    /// The port.
    pub port: u16,
    /// The `rtmp { server {} }` block index.
    pub srv: usize,
}

/// The listen infos of RTMP addresses bound: (server block index, address, scheme).
pub fn listen_infos(bound: &[(usize, SocketAddr, &'static str)]) -> Vec<ListenInfo> {
    bound.iter().map(|&(srv, addr, scheme)| ListenInfo { scheme, port: addr.port(), srv }).collect()
}

/// One stream.
#[derive(Debug, Clone, Default, Serialize)]
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
    /// Where the stream comes from: `local` (published here), or the URL its relay pull plays
    /// (an edge's upstream, found in `pull` or the cluster's stream directory).
    pub origin: String,
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
    /// Of the RTMP and HTTP-FLV players, those written by the stream's fan-out shards now (the
    /// ones keeping up on plain TCP; see `fanout`).
    pub fanout: u64,
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
    /// The last media timestamp (ms): received from a publisher; of the last frame taken from
    /// the stream for a player (the publisher's timeline, also for HTTP-FLV players).
    pub timestamp: u32,
    /// A player's distance behind its stream's publisher: the publisher's last timestamp minus
    /// the player's (ms); `None` for publishers, idle clients and players of an unpublished
    /// stream.
    pub lag_ms: Option<u64>,
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
            lag_ms: None,
            flashver: c.connect.flashver.clone(),
            swfurl: c.connect.swfurl.clone(),
            pageurl: c.connect.pageurl.clone(),
        }
    }
}

/// Each player's distance behind its stream's publisher, from the timestamps both last saw.
fn measure_lag(clients: &mut [ClientStats]) {
    let publishers: std::collections::HashMap<(&str, &str), u32> = clients
        .iter()
        .filter(|c| c.role == "publisher")
        .map(|c| ((c.app.as_str(), c.name.as_str()), c.timestamp))
        .collect();
    let lags: Vec<Option<u64>> = clients
        .iter()
        .map(|c| {
            let published = publishers.get(&(c.app.as_str(), c.name.as_str()))?;
            (c.role == "player").then(|| u64::from(published.saturating_sub(c.timestamp)))
        })
        .collect();
    for (c, lag) in clients.iter_mut().zip(lags) {
        c.lag_ms = lag;
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
    let now = Instant::now();
    let snapshots = ctx.shared.clients.list();
    let mut clients: Vec<ClientStats> = snapshots.iter().map(ClientStats::from).collect();
    clients.sort_by_key(|c| c.id);
    measure_lag(&mut clients);
    let files = files_played(&snapshots);
    let file_players: std::collections::HashSet<u64> = files.iter().flat_map(|f| f.players.iter().copied()).collect();
    for c in clients.iter_mut().filter(|c| file_players.contains(&c.id)) {
        // Behind no publisher: a file is its own timeline.
        c.lag_ms = None;
    }
    let recordings = ctx.shared.records.recordings();
    let mut meters = ctx.meters.state();
    let hub_streams = ctx.shared.hub.streams();
    let mut streams: Vec<StreamStats> = hub_streams
        .iter()
        .map(|s| {
            let app = find_app(ctx, &s.key.app);
            let parts = StreamParts {
                clients: &clients,
                file_players: &file_players,
                snapshots: &snapshots,
                recordings: &recordings,
                app,
            };
            stream_stats(ctx, s, &parts, &mut meters, now)
        })
        .collect();
    streams.sort_by(|a, b| (&a.app, &a.name).cmp(&(&b.app, &b.name)));
    // Windows of streams gone (or republished) are forgotten.
    let current: std::collections::HashSet<(StreamKey, u64)> =
        hub_streams.iter().filter_map(|s| Some((s.key.clone(), s.publish_info()?.id))).collect();
    meters.streams.retain(|k, _| current.contains(k));
    let totals = ctx.shared.clients.totals();
    if meters.bytes_in.open.is_none() {
        // Totals count from zero at start: the first window opens then.
        meters.bytes_in = Rate::starting(ctx.started, 0);
        meters.bytes_out = Rate::starting(ctx.started, 0);
    }
    let (cpu_percent, memory_bytes) = process_usage(&mut meters, ctx.started, now);
    let server = ServerStats {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        uptime_s: ctx.started.elapsed().as_secs(),
        started_unix: ctx.started_at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default(),
        connections: clients.len(),
        naccepted: ctx.shared.clients.accepted(),
        bytes_in: totals.bytes_in,
        bytes_out: totals.bytes_out,
        bw_in: meters.bytes_in.bits(now, totals.bytes_in),
        bw_out: meters.bytes_out.bits(now, totals.bytes_out),
        cpu_percent,
        memory_bytes,
        streams: streams.len(),
        dropped_frames: ctx.shared.hub.dropped_by_app(),
        rtmp: ctx.meters.listen(),
    };
    Snapshot { server, streams, clients, files }
}

/// The files being played, from the clients that play one.
fn files_played(snapshots: &[ClientSnapshot]) -> Vec<FileStats> {
    let mut files: std::collections::BTreeMap<(usize, &str, &str), FileStats> = Default::default();
    for c in snapshots.iter().filter(|c| c.file && c.role == Role::Player) {
        let f = files.entry((c.srv, &c.app, &c.name)).or_insert_with(|| FileStats {
            app: c.app.clone(),
            name: c.name.clone(),
            srv: c.srv,
            players: Vec::new(),
            bytes_out: 0,
        });
        f.players.push(c.id);
        f.bytes_out += c.bytes_out;
    }
    let mut files: Vec<FileStats> = files.into_values().collect();
    for f in &mut files {
        f.players.sort_by_key(|id| std::cmp::Reverse(*id));
    }
    files
}

/// The application a stream belongs to (the first server block's of that name).
fn find_app<'a>(ctx: &'a Running, name: &str) -> Option<&'a AppConf> {
    ctx.config.servers.iter().flat_map(|s| &s.apps).find(|a| a.name == name)
}

/// What a stream's figures are made from besides the stream itself.
struct StreamParts<'a> {
    clients: &'a [ClientStats],
    /// Clients that play a file of the same name, not this stream.
    file_players: &'a std::collections::HashSet<u64>,
    snapshots: &'a [ClientSnapshot],
    recordings: &'a [crate::record::Recording],
    app: Option<&'a AppConf>,
}

fn stream_stats(
    ctx: &Running,
    stream: &Arc<Stream>,
    parts: &StreamParts<'_>,
    meters: &mut MeterState,
    now: Instant,
) -> StreamStats {
    let key = &stream.key;
    let of_stream = |c: &&ClientStats| c.app == key.app && c.name == key.name && !parts.file_players.contains(&c.id);
    let publisher = parts.clients.iter().filter(of_stream).find(|c| c.role == "publisher").map(|c| PublisherInfo {
        id: c.id,
        addr: c.addr,
        protocol: c.protocol,
    });
    let mut players = PlayerCounts::default();
    let mut bytes_out = 0;
    for c in parts.clients.iter().filter(of_stream).filter(|c| c.role == "player") {
        bytes_out += c.bytes_out;
        match c.protocol {
            "http-flv" => players.http_flv += 1,
            "ws-flv" => players.ws_flv += 1,
            "relay" => players.relay += 1,
            _ => players.rtmp += 1,
        }
        players.total += 1;
    }
    players.fanout = stream.direct.members() as u64;
    let publish = stream.publish_info();
    let ingest = &stream.ingest;
    let (audio_bytes, video_bytes) =
        (ingest.audio_bytes.load(Ordering::Relaxed), ingest.video_bytes.load(Ordering::Relaxed));
    let bytes_in = ingest.bytes();
    let video_frames = ingest.video_frames.load(Ordering::Relaxed);
    let mut out = StreamStats {
        app: key.app.clone(),
        name: key.name.clone(),
        live: publish.is_some(),
        uptime_ms: 0,
        publisher,
        video: None,
        audio: None,
        bytes_in,
        bytes_out,
        bw_in: 0,
        bw_out: 0,
        bw_audio: 0,
        bw_video: 0,
        frames_in: stream.frames_in.load(Ordering::Relaxed),
        dropped_frames: stream.dropped.load(Ordering::Relaxed),
        players,
        recordings: recordings_of(key, parts.recordings, now),
        hls: parts.app.filter(|a| a.hls.enabled).map(|app| HlsInfo {
            playlist: app.hls_url_path(&key.name).unwrap_or_default(),
            segments: ctx.shared.hls.segments_written(app, &key.name).unwrap_or(0),
        }),
        relays: relays_of(key, parts.snapshots),
        origin: String::new(),
    };
    out.origin = origin_of(&out.relays);
    let Some(publish) = publish else { return out };
    let since = publish.since.unwrap_or(now);
    out.uptime_ms = now.saturating_duration_since(since).as_millis() as u64;
    let rates = meters.streams.entry((key.clone(), publish.id)).or_insert_with(|| StreamRates {
        // The ingest counters start at zero with the publish.
        bytes_in: Rate::starting(since, 0),
        audio: Rate::starting(since, 0),
        video: Rate::starting(since, 0),
        bytes_out: Rate::default(),
        video_frames: Rate::starting(since, 0),
    });
    out.bw_in = rates.bytes_in.bits(now, bytes_in);
    out.bw_audio = rates.audio.bits(now, audio_bytes);
    out.bw_video = rates.video.bits(now, video_bytes);
    out.bw_out = rates.bytes_out.bits(now, bytes_out);
    let measured_fps = rates.video_frames.update(now, video_frames);
    let meta = publish.metadata.as_deref().map(metadata_numbers).unwrap_or_default();
    out.video = video_info(&publish, &meta, measured_fps);
    out.audio = publish.audio_header.as_deref().and_then(audio_info);
    out
}

fn recordings_of(key: &StreamKey, all: &[crate::record::Recording], now: Instant) -> Vec<RecordingInfo> {
    all.iter()
        .filter(|r| r.stream == *key)
        .map(|r| RecordingInfo {
            recorder: r.recorder.clone(),
            file: r.file.display().to_string(),
            // The file is created with its first frame: 0 until then.
            size: std::fs::metadata(&r.file).map(|m| m.len()).unwrap_or(0),
            time_ms: now.saturating_duration_since(r.since).as_millis() as u64,
        })
        .collect()
}

/// `local`, or the URL of the stream's pull leg.
fn origin_of(relays: &[RelayInfo]) -> String {
    relays.iter().find(|r| r.direction == "pull").map_or_else(|| "local".to_owned(), |r| r.url.clone())
}

fn relays_of(key: &StreamKey, snapshots: &[ClientSnapshot]) -> Vec<RelayInfo> {
    let mut out: Vec<RelayInfo> = snapshots
        .iter()
        .filter(|c| c.kind == Kind::Relay && c.app == key.app && c.name == key.name)
        .filter_map(|c| {
            let direction = match c.role {
                Role::Publisher => "pull",
                Role::Player => "push",
                Role::None => return None,
            };
            let state = c.relay.clone().unwrap_or_default();
            Some(RelayInfo {
                id: c.id,
                direction,
                url: state.url,
                connected: state.connected,
                reconnects: state.reconnects,
                last_error: state.last_error,
            })
        })
        .collect();
    out.sort_by_key(|r| r.id);
    out
}

/// What `onMetaData` said that stats use.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct MetaNumbers {
    framerate: Option<f64>,
    width: Option<f64>,
    height: Option<f64>,
}

/// `framerate`, `width` and `height` of an `onMetaData` frame (client data: whatever does not
/// decode or is no positive finite number is ignored).
fn metadata_numbers(frame: &Frame) -> MetaNumbers {
    let Ok(values) = amf0::decode_all(&frame.payload) else { return MetaNumbers::default() };
    let num = |name: &str| {
        values.iter().find_map(|v| v.get(name)?.as_f64()).filter(|n| n.is_finite() && *n > 0.0 && *n < 1e9)
    };
    MetaNumbers { framerate: num("framerate"), width: num("width"), height: num("height") }
}

/// Video parameters from the sequence header, completed by the metadata; `None` when the
/// stream has neither a video sequence header nor a video size in its metadata.
fn video_info(publish: &PublishInfo, meta: &MetaNumbers, measured_fps: f64) -> Option<VideoInfo> {
    let header = publish.video_header.as_deref().and_then(|f| Some((f, *f.video_header()?)));
    if header.is_none() && meta.width.is_none() {
        return None;
    }
    let mut info = VideoInfo { frame_rate: meta.framerate.unwrap_or(measured_fps), ..VideoInfo::default() };
    if let Some((frame, h)) = header {
        info.codec = video_codec_name(h.codec).to_owned();
        if let Ok(Some(p)) = flv::codec::parse_video_config(h.codec, frame.codec_payload()) {
            info.profile = known(p.profile_name()).to_owned();
            info.level = p.level_name();
            info.width = p.width;
            info.height = p.height;
            // AVCDecoderConfigurationRecord's profile_compatibility byte.
            if h.codec == flv::VideoCodec::Avc {
                info.compat = frame.codec_payload().get(2).copied().unwrap_or(0);
            }
        }
    }
    if info.width == 0 || info.height == 0 {
        info.width = meta.width.unwrap_or(0.0) as u32;
        info.height = meta.height.unwrap_or(0.0) as u32;
    }
    Some(info)
}

fn audio_info(frame: &Frame) -> Option<AudioInfo> {
    let h = frame.audio_header()?;
    let mut info = AudioInfo {
        codec: known(h.codec.name()).to_owned(),
        profile: String::new(),
        channels: u32::from(h.channels),
        sample_rate: h.sound_rate,
    };
    if let Ok(Some(p)) = flv::codec::parse_audio_config(h.codec, frame.codec_payload()) {
        info.profile = aac_profile(p.object_type).to_owned();
        info.sample_rate = p.sample_rate;
        if p.channels > 0 {
            info.channels = u32::from(p.channels);
        }
    }
    Some(info)
}

/// The codec's name as stats show it (nginx-rtmp's `H264`; `HEVC` as its forks write it).
fn video_codec_name(codec: flv::VideoCodec) -> &'static str {
    match codec {
        flv::VideoCodec::Hevc => "HEVC",
        c => known(c.name()),
    }
}

/// nginx-rtmp's AAC profile names by audioObjectType.
fn aac_profile(object_type: u8) -> &'static str {
    match object_type {
        1 => "Main",
        2 => "LC",
        3 => "SSR",
        4 => "LTP",
        5 => "HE",
        29 => "HEv2",
        _ => "",
    }
}

/// "unknown" shows as nothing, as nginx-rtmp leaves out what it does not know.
fn known(name: &'static str) -> &'static str {
    if name == "unknown" {
        ""
    } else {
        name
    }
}

/// The process's CPU use since the previous snapshot (percent of one core) and its resident
/// memory, from `/proc/self`; zeros where `/proc` cannot be read.
fn process_usage(meters: &mut MeterState, started: Instant, now: Instant) -> (f64, u64) {
    let memory = std::fs::read_to_string("/proc/self/statm").ok().and_then(|t| rss_bytes(&t, page_size()));
    let Some(cpu) = std::fs::read_to_string("/proc/self/stat").ok().and_then(|t| cpu_time(&t, clock_ticks())) else {
        return (0.0, memory.unwrap_or(0));
    };
    let (since, before) = meters.cpu.unwrap_or((started, Duration::ZERO));
    let wall = now.saturating_duration_since(since);
    // Two snapshots moments apart (a page and its API call) keep the last figure.
    if wall >= Duration::from_millis(500) || meters.cpu.is_none() {
        if !wall.is_zero() {
            meters.cpu_percent = cpu.saturating_sub(before).as_secs_f64() / wall.as_secs_f64() * 100.0;
        }
        meters.cpu = Some((now, cpu));
    }
    (meters.cpu_percent, memory.unwrap_or(0))
}

/// `utime + stime` of a `/proc/PID/stat` line.
fn cpu_time(stat: &str, ticks_per_s: u64) -> Option<Duration> {
    // The command name (2nd field) may hold spaces and parentheses: fields restart after
    // the last ')'. utime and stime are fields 14 and 15, the 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    let ticks_per_s = ticks_per_s.max(1);
    Some(
        Duration::from_secs(ticks / ticks_per_s)
            + Duration::from_secs_f64((ticks % ticks_per_s) as f64 / ticks_per_s as f64),
    )
}

/// Resident bytes of a `/proc/PID/statm` line (its 2nd field, in pages).
fn rss_bytes(statm: &str, page: u64) -> Option<u64> {
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page)
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: u64, role: &'static str, name: &str, timestamp: u32) -> ClientStats {
        ClientStats {
            id,
            addr: ([127, 0, 0, 1], 1000).into(),
            protocol: "rtmp",
            role,
            app: "live".into(),
            name: name.into(),
            srv: 0,
            bytes_in: 0,
            bytes_out: 0,
            uptime_ms: 0,
            dropped: 0,
            timestamp,
            lag_ms: None,
            flashver: String::new(),
            swfurl: String::new(),
            pageurl: String::new(),
        }
    }

    #[test]
    fn players_lag_behind_their_publisher() {
        let mut clients = vec![
            client(1, "publisher", "cam", 10_000),
            client(2, "player", "cam", 9_200),
            client(3, "player", "cam", 10_400),
            client(4, "player", "other", 5_000),
            client(5, "idle", "", 0),
        ];
        measure_lag(&mut clients);
        let lags: Vec<Option<u64>> = clients.iter().map(|c| c.lag_ms).collect();
        assert_eq!(lags, [None, Some(800), Some(0), None, None], "ahead (a new publisher) is 0; unpublished: none");
    }

    #[test]
    fn rate_reports_the_last_completed_window() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut r = Rate::starting(t0, 0);
        assert_eq!(r.update(t0 + Duration::from_millis(500), 1000), 0.0, "too short to say");
        assert_eq!(r.update(at(2), 2000), 1000.0, "the open window's rate before any completed");
        assert_eq!(r.update(at(10), 20_000), 2000.0, "a window completed: 20000 bytes in 10 s");
        assert_eq!(r.update(at(15), 1_000_000), 2000.0, "the completed window's rate until the next");
        assert_eq!(r.update(at(20), 1_020_000), 100_000.0, "1000000 bytes from 10 s to 20 s");
        assert_eq!(r.bits(at(30), 1_020_000), 0, "nothing came in the last window");
    }

    #[test]
    fn rate_of_a_counter_that_drops_is_not_negative() {
        let t0 = Instant::now();
        let mut r = Rate::starting(t0, 5000);
        assert_eq!(r.update(t0 + Duration::from_secs(10), 100), 0.0);
        let mut fresh = Rate::default();
        assert_eq!(fresh.update(t0, 100), 0.0, "the first look opens the window");
        assert_eq!(fresh.update(t0 + Duration::from_secs(10), 1100), 100.0);
    }

    #[test]
    fn proc_parsing() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 123 456 789";
        assert_eq!(cpu_time(stat, 100), Some(Duration::from_secs(3)));
        assert_eq!(cpu_time("garbage", 100), None);
        assert_eq!(rss_bytes("1000 250 30 1 0 100 0", 4096), Some(250 * 4096));
        assert_eq!(rss_bytes("", 4096), None);
    }

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(cpu_time(&stat, clock_ticks()).is_some());
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        assert!(rss_bytes(&statm, page_size()).unwrap() > 0);
    }

    fn avc_sequence_header() -> Bytes {
        // FLV video tag: keyframe + AVC, packet type 0, composition time 0, then an
        // AVCDecoderConfigurationRecord with one SPS (Baseline 3.0, 320x240; compat 0xC0).
        let sps = [
            0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x05, 0x07, 0xEC, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0C,
            0x83, 0xC5, 0x8B, 0xA8,
        ];
        let mut v = vec![0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x42, 0xC0, 0x1E, 0xFF, 0xE1];
        v.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        v.extend_from_slice(&sps);
        v.extend_from_slice(&[0x01, 0x00, 0x04, 0x68, 0xCE, 0x3C, 0x80]);
        Bytes::from(v)
    }

    fn metadata(pairs: Vec<(&str, amf0::Value)>) -> Frame {
        let values = [amf0::Value::String("onMetaData".into()), amf0::Value::ecma_array(pairs)];
        Frame::data(0, Bytes::from(amf0::encode_all(&values)), true)
    }

    use bytes::Bytes;

    #[test]
    fn video_info_from_the_sequence_header_and_metadata() {
        let header = Arc::new(Frame::video(0, avc_sequence_header()).unwrap());
        let publish = PublishInfo { video_header: Some(header), ..PublishInfo::default() };
        let meta = metadata_numbers(&metadata(vec![("framerate", amf0::Value::Number(25.0))]));
        let v = video_info(&publish, &meta, 12.0).unwrap();
        assert_eq!((v.codec.as_str(), v.profile.as_str(), v.level.as_str()), ("H264", "Baseline", "3.0"));
        assert_eq!((v.width, v.height, v.compat), (320, 240, 0xC0));
        assert_eq!(v.frame_rate, 25.0, "the metadata's framerate");
        let v = video_info(&publish, &MetaNumbers::default(), 12.0).unwrap();
        assert_eq!(v.frame_rate, 12.0, "measured without one");
    }

    #[test]
    fn video_info_from_metadata_alone_and_none_without_either() {
        let meta = metadata_numbers(&metadata(vec![
            ("width", amf0::Value::Number(640.0)),
            ("height", amf0::Value::Number(360.0)),
            ("framerate", amf0::Value::String("lots".into())),
        ]));
        let v = video_info(&PublishInfo::default(), &meta, 0.0).unwrap();
        assert_eq!((v.width, v.height, v.codec.as_str(), v.frame_rate), (640, 360, "", 0.0));
        assert!(video_info(&PublishInfo::default(), &MetaNumbers::default(), 30.0).is_none());
        let junk = Frame::data(0, Bytes::from_static(b"\xff\x00junk"), true);
        assert_eq!(metadata_numbers(&junk), MetaNumbers::default());
    }

    /// A running server without listeners: what `collect` reads.
    fn running(conf: &str) -> Running {
        let config = crate::config::Config::parse(conf, "t").unwrap();
        let hub = crate::hub::Hub::new();
        let shared = crate::server::Shared {
            hub: hub.clone(),
            hls: crate::hls::HlsStore::new(Default::default()),
            dash: crate::dash::DashStore::new(Default::default()),
            notices: Default::default(),
            records: crate::record::Recorders::new(1),
            access: Default::default(),
            notifier: Default::default(),
            streams: crate::streams::Streams::new(hub, Arc::new([]), Default::default()),
            clients: Default::default(),
            directory: None,
        };
        let listen = listen_infos(&[(0, "127.0.0.1:1935".parse().unwrap(), "rtmp")]);
        Running {
            shared: Arc::new(shared),
            servers: Vec::new(),
            config: Arc::new(config),
            started: Instant::now(),
            started_at: SystemTime::now(),
            meters: Arc::new(Meters::new(listen)),
        }
    }

    #[test]
    fn collect_reports_every_part_of_a_stream() {
        let ctx = running("rtmp { server { application live { live on; hls on; hls_path /tmp/sluice-stats-test; } } }");
        let shared = &ctx.shared;
        let key = StreamKey { app: "live".into(), name: "cam".into() };
        let opts = crate::hub::StreamOptions { ring_len: 64, gop_cache: false };
        let publisher = shared.hub.publish(key.clone(), opts).unwrap();
        publisher.stream().push(Frame::video(0, avc_sequence_header()).unwrap());
        publisher.stream().push(Frame::audio(0, Bytes::from_static(&[0xAF, 0x00, 0x11, 0x90])));
        let source = shared.clients.register("10.0.0.1:5000".parse().unwrap(), Kind::Rtmp, 0).unwrap();
        source.set_app("live");
        source.set_stream("cam", Role::Publisher);
        source.add_in(1000);
        let push = shared.clients.register("10.0.0.2:1935".parse().unwrap(), Kind::Relay, 0).unwrap();
        push.set_app("live");
        push.set_stream("cam", Role::Player);
        push.add_out(300);
        push.update_relay(|r| {
            r.url = "rtmp://remote/live/cam".into();
            r.connected = true;
        });
        let gone = shared.clients.register("10.0.0.3:5000".parse().unwrap(), Kind::Rtmp, 0).unwrap();
        gone.add_in(50);
        drop(gone);
        shared.records.opened(std::path::Path::new("/tmp/sluice-stats-test/cam.flv"), "live", "cam", "");

        let snap = collect(&ctx);
        let s = &snap.server;
        assert_eq!(
            (s.naccepted, s.connections, s.bytes_in, s.bytes_out),
            (2, 2, 1050, 300),
            "the relay leg was not accepted"
        );
        assert_eq!(s.rtmp, [ListenInfo { scheme: "rtmp", port: 1935, srv: 0 }]);
        assert!(s.memory_bytes > 0);
        let st = &snap.streams[0];
        assert!(st.live);
        assert_eq!(st.bytes_in, avc_sequence_header().len() as u64 + 4);
        assert_eq!(st.frames_in, 2);
        assert_eq!(st.publisher.as_ref().map(|p| p.protocol), Some("rtmp"));
        assert_eq!(st.video.as_ref().map(|v| (v.width, v.height)), Some((320, 240)));
        assert_eq!(st.audio.as_ref().map(|a| a.codec.as_str()), Some("AAC"));
        assert_eq!((st.players.relay, st.players.total, st.bytes_out), (1, 1, 300));
        assert_eq!(st.relays.len(), 1);
        let relay = &st.relays[0];
        assert_eq!((relay.direction, relay.url.as_str(), relay.connected), ("push", "rtmp://remote/live/cam", true));
        let hls = st.hls.as_ref().expect("hls on");
        assert_eq!((hls.playlist.as_str(), hls.segments), ("/sluice-stats-test/cam.m3u8", 0));
        assert_eq!(st.recordings.len(), 1);
        assert_eq!(
            (st.recordings[0].recorder.as_str(), st.recordings[0].file.as_str()),
            ("", "/tmp/sluice-stats-test/cam.flv")
        );

        shared.records.closed(std::path::Path::new("/tmp/sluice-stats-test/cam.flv"));
        drop(publisher);
        let snap = collect(&ctx);
        let st = &snap.streams;
        assert!(st.is_empty() || (!st[0].live && st[0].video.is_none() && st[0].recordings.is_empty()), "{st:?}");
    }

    #[test]
    fn audio_info_from_the_aac_config() {
        // AAC sequence header: SoundFormat 10, 44 kHz, 16 bit, stereo; AudioSpecificConfig
        // LC (2), 48000 Hz (index 3), 2 channels.
        let frame = Frame::audio(0, Bytes::from_static(&[0xAF, 0x00, 0x11, 0x90]));
        let a = audio_info(&frame).unwrap();
        assert_eq!((a.codec.as_str(), a.profile.as_str(), a.sample_rate, a.channels), ("AAC", "LC", 48000, 2));
        assert_eq!(aac_profile(29), "HEv2");
    }
}

//! What each directive means and how it compares with nginx-rtmp: one row per directive of the
//! tables (`DIRECTIVES` of each module, which own names, contexts, arguments and defaults).
//! [`markdown`] joins both into docs/directives.md; a test fails when a table row has no doc
//! row (or a doc row no table row), and when docs/directives.md is not what [`markdown`]
//! writes: `SLUICE_BLESS=1 cargo test -p sluice --lib directives` rewrites it.
//!
//! Why a directive has no effect is not written here: `later` knows it (`later::inert_rows`),
//! and the generated text takes it from there.

use super::value::{ctx, Args, DirectiveSpec, Kind};
use super::{http, later, Group, TABLES};

/// How a directive compares with nginx-rtmp (for the `http {}` table: with nginx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compat {
    /// Same name, arguments and behaviour.
    Same,
    /// Same name; the text says what differs.
    Differs(&'static str),
    /// sluice's own directive; the text may say where the idea comes from.
    Sluice(&'static str),
}

/// One directive's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Doc {
    /// The directive, as in its table.
    pub name: &'static str,
    /// The arguments as the docs show them (`DIR`, `URL [PARAM=VALUE...]`); "" to derive them
    /// from the table's [`Args`] and [`Kind`].
    pub syntax: &'static str,
    /// A default that depends on other settings (`10 × hls_fragment`), shown instead of the
    /// table's; "" when the table's default holds. `sluice -T` writes such defaults as comments.
    pub default: &'static str,
    /// What it does, in a sentence or two (Markdown).
    pub meaning: &'static str,
    /// How it compares with nginx-rtmp.
    pub compat: Compat,
}

impl Doc {
    const fn syntax(self, syntax: &'static str) -> Doc {
        Doc { syntax, ..self }
    }

    const fn default_is(self, default: &'static str) -> Doc {
        Doc { default, ..self }
    }
}

const fn doc(name: &'static str, meaning: &'static str, compat: Compat) -> Doc {
    Doc { name, syntax: "", default: "", meaning, compat }
}

use Compat::{Differs, Same, Sluice};

const HTTPS_CALLBACK: Compat = Differs("same; `https://` URLs are a sluice extension");
const SLUICE: Compat = Sluice("");

/// The directives of the `rtmp {}` tables (and the top-level ones they list), by name.
pub(crate) const RTMP_DOCS: &[Doc] = &[
    // core
    doc("server", "One RTMP server: its listening addresses, connection settings and applications.", Same),
    doc(
        "listen",
        "Address to accept RTMP on (`1935`, `127.0.0.1:1935`, `[::1]:1935`); with `ssl`, RTMPS; with `proxy_protocol`, each connection starts with a PROXY protocol (v1 or v2) header naming the client, read within `timeout`. A server without `listen` listens on `0.0.0.0:1935`.",
        Differs("`ssl` (RTMPS) is a sluice extension; `proxy_protocol` as nginx's; nginx's other options are accepted and have no effect (see [Accepted, not active yet](#accepted-not-active-yet))"),
    )
    .syntax("ADDRESS [ssl] [proxy_protocol] [OPTION...]"),
    doc("application", "An application: the path segment clients connect to, with its own settings.", Same).syntax("NAME { }"),
    doc("timeout", "A client that accepts no data for this long is dropped; also bounds the TLS handshake.", Same),
    doc("ping", "Ping a client silent for this long (`0`: never).", Same),
    doc("ping_timeout", "Drop a client whose ping is not answered in this time.", Same),
    doc("max_streams", "Most chunk streams a client may use at once.", Same),
    doc("ack_window", "Window acknowledgement size announced to clients.", Same),
    doc("chunk_size", "Outgoing chunk size announced to every client (128 to 16777215).", Same),
    doc(
        "max_message",
        "Largest incoming message; a bigger one closes the connection.",
        Differs("sluice also closes connections at a command or shared-object message over 64 KiB and a data message over 1 MiB, whatever this says, and decoding one message may produce at most 1 MiB (commands) or 8 MiB (data) of AMF values"),
    ),
    doc(
        "out_queue",
        "Frames a player may fall behind before it skips to the next keyframe.",
        Differs("sluice's queue is one ring per stream that players read at their own position"),
    ),
    doc("out_cork", "Messages to gather before a write.", Same).default_is("`out_queue` / 8"),
    doc("buflen", "Client buffer length assumed for players.", Same),
    doc("busy", "Mark busy connections in the process title.", Same),
    doc("play_time_fix", "Repeat the extended timestamp in continuation (type 3) chunks sent to clients; written in an application, it sets its whole server.", Same),
    doc("publish_time_fix", "Expect the extended timestamp in continuation (type 3) chunks received; written in an application, it sets its whole server.", Same),
    doc("so_keepalive", "TCP keepalive (`SO_KEEPALIVE`) on accepted RTMP connections, so that peers that vanished are noticed.", Same),
    doc(
        "tcp_nodelay",
        "`on` sends every write at once; `off` leaves Nagle's algorithm on, so small writes to a player leave as fuller packets (less CPU with many players).",
        Sluice("nginx's http directive; nginx-rtmp behaves as `off`"),
    ),
    doc(
        "ssl_certificate",
        "PEM certificate chain of the server's `listen ... ssl` addresses, server certificate first; a relative path is relative to the main configuration file's directory.",
        Sluice("nginx's name and meaning; nginx-rtmp has no RTMPS"),
    )
    .syntax("FILE"),
    doc(
        "ssl_certificate_key",
        "PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1; may be the certificate's file).",
        Sluice("nginx's name and meaning; nginx-rtmp has no RTMPS"),
    )
    .syntax("FILE"),
    // live
    doc("live", "Serve live streams to RTMP players.", Same),
    doc("meta", "`on`: players get metadata rebuilt from known fields (size, codecs, rates); `copy`: the publisher's exact block; `off`: none.", Same),
    doc("sync", "Resynchronise audio and video drifting further apart than this.", Same),
    doc("interleave", "Send audio and video on one chunk stream.", Same),
    doc("wait_key", "A player's video starts at a keyframe (with the GOP cache, at once).", Same),
    doc("wait_video", "A player's audio waits for its first video frame.", Same),
    doc("publish_notify", "Players get `NetStream.Play.PublishNotify` when publishing starts and `NetStream.Play.UnpublishNotify` when it stops.", Same),
    doc("play_restart", "Players get `NetStream.Play.Start` when a publisher starts the stream, and `NetStream.Play.Stop` when it leaves.", Same),
    doc("idle_streams", "`off`: playing a stream nobody publishes fails with `NetStream.Play.StreamNotFound`, and players are disconnected when their publisher leaves; `on`: players wait for the (next) publisher.", Same),
    doc("drop_idle_publisher", "Disconnect a publisher that sent no media for this long (`0`: never).", Same),
    doc("gop_cache", "New players get metadata, sequence headers and the frames since the last keyframe at once.", Sluice("as nginx-rtmp forks' `gop_cache`")),
    doc("stream_buckets", "Size of the stream hash table.", Same),
    doc("buffer", "Deprecated.", Same),
    // record
    doc(
        "record",
        "What to record; words combine (`record audio keyframes;`): `all` is audio and video, `keyframes` only video keyframes, `manual` starts only through the control API.",
        Same,
    ),
    doc("record_path", "Where recordings go (created if missing); needed by any `record` other than `off`.", Same).syntax("DIR"),
    doc("record_suffix", "File name suffix; with a `%` it goes through strftime in local time (`-%d-%b-%y-%T.flv`).", Same)
        .syntax("SUFFIX")
        .default_is("`.flv` (`.mp4` with `record_format mp4`)"),
    doc("record_unique", "Add `-UNIXTIME` (when the file was opened) to the name.", Same),
    doc("record_append", "Continue an existing FLV file after its last whole tag.", Differs("same for FLV; MP4 files are replaced, with a warning")),
    doc("record_lock", "Hold an fcntl write lock on the file while it is written.", Same),
    doc("record_max_size", "Close the file once it is this big; the next keyframe opens the next one (without `record_unique`: the same name, replaced).", Same),
    doc("record_max_frames", "Close the file after this many frames (audio and video).", Same),
    doc("record_interval", "Every interval, at a keyframe, close the file and open the next (`0`: never; without `record_unique` the same file is replaced, so it ends up holding the last interval).", Same),
    doc("record_notify", "Send `NetStream.Record.Start`/`Stop`/`Failed` to the publisher.", Same),
    doc("record_format", "`mp4` writes fragmented MP4 instead of FLV: H.264, HEVC, AV1, AAC and Opus; other codecs are left out with a warning, and a stream with nothing MP4 carries leaves no file.", SLUICE),
    doc("record_mp4_faststart", "When an MP4 file is closed, rewrite it as a plain MP4 with `moov` first (through a temporary file renamed over it); `record_done` follows the rewrite. Files after the first of a publish are named `NAME-UNIXTIME[-N]SUFFIX`.", SLUICE),
    doc("recorder", "Another recorder of each stream, with its own `record*` settings on top of the application's.", Same).syntax("NAME { }"),
    // hls
    doc(
        "hls",
        "Write HLS (playlists and segments in `hls_path`) for the application's streams; sluice serves them over HTTP too.",
        Differs("segment names carry the publish's session (`stream-SESSION-0.ts`), so a republished stream never reuses a URL"),
    ),
    doc("hls_path", "Directory of playlists and segments (created if missing); served at `/<last component>/`.", Same).syntax("DIR"),
    doc("hls_fragment", "Target segment length: a segment is cut at the first keyframe after it (audio-only streams: on audio).", Same),
    doc("hls_max_fragment", "A segment this long is cut even without a keyframe (marked as a discontinuity); video then resumes at the next keyframe.", Same).default_is("10 × `hls_fragment`"),
    doc("hls_playlist_length", "How much the live playlist lists; also how long an ended stream's playlist waits for its publisher.", Same),
    doc("hls_muxdelay", "MPEG-TS timestamps run this far ahead of the PCR.", Same),
    doc("hls_sync", "MPEG-TS audio timestamps within this of the sample count are smoothed.", Same),
    doc("hls_continuous", "A stream published again after its playlist ended (or after a restart) continues the playlist and its numbering (after `#EXT-X-DISCONTINUITY`), from memory or from the playlist left on disk.", Same),
    doc("hls_nested", "One directory per stream, `index.m3u8` inside.", Same),
    doc("hls_fragment_naming", "Segment ids: sequence number, stream time (90 kHz) or wall clock (ms).", Same),
    doc("hls_fragment_naming_granularity", "Round segment ids down to a multiple of this.", Same),
    doc("hls_fragment_slicing", "`aligned`: cut at the first keyframe of each `hls_fragment` slot of the timeline, so encoders of one source cut alike.", Same),
    doc("hls_type", "`event`: segments are never dropped from the playlist (`#EXT-X-PLAYLIST-TYPE:EVENT`).", Same),
    doc("hls_max_audio_delay", "Buffered MPEG-TS audio is written at least this often.", Same),
    doc("hls_audio_buffer_size", "Most audio gathered into one MPEG-TS packet.", Same),
    doc("hls_cleanup", "Segments that left the playlist are deleted after `hls_playlist_length`; after the playlist ends, the playlist and its segments too, `hls_playlist_length` later (unless the stream is published again first).", Same),
    doc(
        "hls_variant",
        "Streams named BASE + SUFFIX are variants of the master playlist `BASE.m3u8`, with the PARAMs in their `#EXT-X-STREAM-INF`; an inner level with any line replaces the outer list.",
        Differs("sluice adds measured `RESOLUTION`, `CODECS`, `FRAME-RATE` and `AVERAGE-BANDWIDTH`, orders by `BANDWIDTH` and lists live variants only"),
    )
    .syntax("SUFFIX [PARAM...]"),
    doc("hls_base_url", "Prefix of segment URIs in the playlist (absolute URLs for a CDN).", Same).syntax("URL"),
    doc("hls_keys", "AES-128 encrypt segments (`#EXT-X-KEY`, IV = key id); keys are files `NAME-SESSION-ID.key`.", Same),
    doc("hls_key_path", "Where keys are written.", Same).syntax("DIR").default_is("`hls_path`"),
    doc("hls_key_url", "Prefix of key URIs in the playlist.", Same).syntax("URL"),
    doc("hls_fragments_per_key", "A new key every this many segments (`0`: one per publish).", Same),
    doc("hls_fragment_type", "`fmp4` writes CMAF segments (`.m4s`) with an init segment (`#EXT-X-MAP`). MPEG-TS carries H.264 and HEVC, AAC and MP3; fMP4 H.264, HEVC, AV1, AAC and Opus.", SLUICE),
    doc("hls_low_latency", "Low-latency HLS: segments are also cut into parts (`#EXT-X-PART`, served from memory), with `#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES`, `#EXT-X-PRELOAD-HINT` and `#EXT-X-PROGRAM-DATE-TIME`; requests with `_HLS_msn`/`_HLS_part` wait for that part (up to three target durations, then 503). Not with `hls_keys`.", SLUICE),
    doc("hls_part_duration", "The low-latency part target (50ms to 5s).", SLUICE),
    doc("hls_cors", "`Access-Control-Allow-Origin` of the `hls_path` and `dash_path` locations sluice serves for the application: `*` (any page), `off` (none: pages of other sites cannot read the stream) or one origin (`https://player.example`, with `always`: on errors too). Applications sharing an `hls_path` (or `dash_path`) must agree. In an `http {}` location of your own, `add_header Access-Control-Allow-Origin` does the same.", SLUICE),
    // dash
    doc(
        "dash",
        "Write MPEG-DASH (an MPD and fMP4 fragments in `dash_path`) for the application's streams; sluice serves them over HTTP too, the live MPD and recent fragments from memory. The streams of an `hls_variant` group or a transcode ladder are also Representations of one variant MPD, `BASE_abr.mpd` (nested: `BASE.mpd`).",
        Differs("H.264, HEVC and AV1 video, AAC and Opus audio (nginx-rtmp: H.264 and AAC only)"),
    ),
    doc("dash_path", "Directory of MPDs and fragments (created if missing); served at `/<last component>/`.", Same).syntax("DIR"),
    doc("dash_fragment", "Target fragment length: a fragment is cut at the first keyframe after it (audio-only streams: on audio); at twice this, or 10 MB in a track, it is cut anyway.", Same),
    doc("dash_playlist_length", "How much the live MPD lists (`dash_playlist_length / dash_fragment` fragments; its `timeShiftBufferDepth`); also how long an ended stream's files stay before `dash_cleanup` removes them.", Differs("`timeShiftBufferDepth` is this length (nginx-rtmp: 4 × `dash_fragment` + 1 s)")),
    doc("dash_nested", "One directory per stream: `NAME/index.mpd`, `NAME/init.m4v`, `NAME/T.m4v`, ...", Same),
    doc("dash_cleanup", "Fragments that left the MPD are deleted after `dash_playlist_length`; after the stream ends, its MPD (static by then), init segments and fragments too, `dash_playlist_length` later.", Same),
    doc("dash_low_latency", "Low-latency (chunked) DASH: each fragment is also served while it is written, as CMAF chunks of `dash_part_duration` over one chunked HTTP response; the MPD says `availabilityTimeOffset`, `availabilityTimeComplete=\"false\"`, a `ServiceDescription` latency target and `UTCTiming` (the server's `/utc`). Where HLS fMP4 and DASH share segments, the chunks are the LL-HLS parts: it then needs `hls_low_latency on` (`-t` warns otherwise).", SLUICE),
    doc("dash_part_duration", "The low-latency chunk duration (50ms to 5s, shorter than `dash_fragment`); where HLS fMP4 and DASH share segments, `hls_part_duration` is used instead.", SLUICE),
    // http (rtmp level)
    doc(
        "http_listen",
        "The built-in HTTP server's address when the file has no `http {}` block, or `off`; `--http-listen` overrides it.",
        SLUICE,
    )
    .syntax("ADDRESS|off"),
    doc("http_stats_public", "`on`: the built-in server's dashboard, `/stat`, the API's reads and `/metrics` answer every address, not only loopback.", SLUICE),
    doc("dashboard", "The built-in server's dashboard at `/`; `off`: `/` is not served.", SLUICE),
    doc("recordings", "The built-in server's recordings as HLS VOD at `/vod/APP/FILE/index.m3u8`; `off`: not served (`/vod/NAME.flv` stays HTTP-FLV).", SLUICE),
    doc("api_token", "The built-in server's API, `/metrics` and `/control/` need `Authorization: Bearer TOKEN`.", SLUICE).syntax("TOKEN"),
    // access
    doc(
        "allow",
        "Allow publishing, playing or both (no `publish`/`play`) from an address, network (IPv4 or IPv6) or `all`; the first matching rule decides, no match allows. A level with any rule uses only its own.",
        Differs("same; IPv4 clients of an IPv6 listener (`::ffff:10.0.0.1`) match IPv4 rules, and rules written IPv4-mapped (prefix 96 or more) are read as IPv4"),
    )
    .syntax("[publish|play] ADDRESS|CIDR|all"),
    doc("deny", "Refuse publishing, playing or both from an address, network or `all`.", Same).syntax("[publish|play] ADDRESS|CIDR|all"),
    doc("max_connections", "Clients connected to one `server` block at once; the next is rejected at `connect`.", Differs("nginx-rtmp's limit module counts per worker; sluice counts per `server` block")),
    doc("auth_secret", "The HMAC key of signed stream keys (`?expires=UNIX&token=T`; `sluice token` makes them).", SLUICE).syntax("SECRET"),
    doc("auth", "What needs a signed key once `auth_secret` is set.", SLUICE),
    doc("publish_key", "STREAM may only be published with `?key=SECRET`; repeatable; an inner level's list replaces the outer one.", SLUICE).syntax("STREAM SECRET"),
    // notify
    doc("on_connect", "HTTP callback on `connect`; may refuse, or redirect to another application.", HTTPS_CALLBACK).syntax("URL"),
    doc("on_disconnect", "HTTP callback when the connection ends.", HTTPS_CALLBACK).syntax("URL"),
    doc("on_publish", "HTTP callback before publishing; may refuse, rename (3xx `Location: NAME`) or push elsewhere (`rtmp://`).", HTTPS_CALLBACK).syntax("URL"),
    doc("on_play", "HTTP callback before playing; may refuse, rename or pull from elsewhere.", HTTPS_CALLBACK).syntax("URL"),
    doc("on_publish_done", "HTTP callback when publishing stops.", HTTPS_CALLBACK).syntax("URL"),
    doc("on_play_done", "HTTP callback when playing stops.", HTTPS_CALLBACK).syntax("URL"),
    doc("on_done", "HTTP callback when publishing or playing stops.", HTTPS_CALLBACK).syntax("URL"),
    doc("on_record_done", "HTTP callback when a recording file is closed.", HTTPS_CALLBACK).syntax("URL"),
    doc("on_update", "HTTP callback every `notify_update_timeout` while publishing or playing; a 4xx/5xx answer drops the client.", HTTPS_CALLBACK).syntax("URL"),
    doc("notify_method", "Callback fields as a form body (`post`) or in the query string (`get`).", Same),
    doc("notify_update_timeout", "The `on_update` interval.", Same),
    doc("notify_update_strict", "`on`: any failed `on_update` (3xx, timeout, unreachable) drops the client too.", Same),
    doc("notify_relay_redirect", "When `on_publish`/`on_play` answers 3xx with an `rtmp://` location, name the local stream by the 32 hex digits of the location's MD5 instead of the asked name. Either way such an answer starts a relay (a push, or a pull).", Same),
    doc("notify_timeout", "A callback with no reply this soon refuses.", SLUICE),
    doc("notify_tls_verify", "Check `https://` callbacks' certificates against the system's roots.", SLUICE),
    // relay
    doc(
        "push",
        "Publish every stream (or the one `name=` names) to URL as well; repeatable.",
        Differs("`rtmps://` targets are a sluice extension, `$name`, `$app` and `$args` the winshining fork's; pulled streams are pushed too"),
    )
    .syntax("URL [PARAM=VALUE...]"),
    doc(
        "pull",
        "Play streams from URL and publish them here: on demand for the first player, or always with `static`. On demand, more URLs are origins tried in order: one that refuses the stream (`StreamNotFound`), cannot be reached or sends no media is skipped, and a lost upstream fails over (back to the first) while players wait.",
        Differs("`rtmps://` URLs and several URLs (failover origins) are sluice extensions"),
    )
    .syntax("URL [URL...] [PARAM=VALUE...] [static]"),
    doc("push_reconnect", "Wait between a failed push attempt and the next.", Same),
    doc("pull_reconnect", "Wait between a failed `static` pull attempt and the next (and between an on-demand pull's failover rounds).", Same),
    doc("pull_linger", "How long an on-demand pull keeps its upstream after its last player left: a player back within it joins without a new upstream connection. `0s`: stop at once, as nginx-rtmp.", SLUICE),
    doc("relay_buffer", "The buffer length a pull announces after `play`.", Same),
    doc("session_relay", "`on`: end a stream's relays when its publisher's session ends rather than its stream.", Same),
    doc("relay_tls_verify", "Check `rtmps://` relay targets' certificates against the system's roots.", SLUICE),
    // cluster
    doc(
        "cluster_redis",
        "The cluster's stream directory: a Redis server where every node registers the streams published to it (`sluice:stream:APP/NAME`) and looks up the streams it is asked for and does not have. Only `redis://`; the password is never logged or shown. See README, \"Stream directory (Redis)\".",
        SLUICE,
    )
    .syntax("redis://[:PASSWORD@]HOST[:PORT][/DB]"),
    doc("cluster_ttl", "How long a registration lives without its heartbeat (every third of it): how soon a dead node's streams leave the directory. At least `1s`.", SLUICE),
    doc("cluster_address", "Where other nodes pull this server's streams from, registered with each stream. Required with `cluster_redis` for a server with a live application in the cluster.", SLUICE)
        .syntax("rtmp://HOST:PORT"),
    doc("cluster", "Whether the application's streams take part in the stream directory: registered when published here, refused when live on another node, pulled from their node when played here. Written `on` without `cluster_redis`: a warning.", SLUICE)
        .default_is("on"),
    // exec
    doc(
        "exec",
        "Run and supervise a program while a stream is published (as `exec_push`).",
        Differs("no shell runs; values from clients that could add options or leave a directory make sluice skip the command; `> FILE` with a space is an error"),
    )
    .syntax("PROGRAM [ARG...]"),
    doc("exec_push", "Run and supervise a program while a stream is published.", Same).syntax("PROGRAM [ARG...]"),
    doc("exec_pull", "Run and supervise a program while a stream has players: the first player starts it, the last one leaving stops it; its players wait for it even with `idle_streams off`.", Same).syntax("PROGRAM [ARG...]"),
    doc("exec_static", "Run and supervise a program from start-up to shutdown (global wherever written).", Same).syntax("PROGRAM [ARG...]"),
    doc("exec_publish", "Run a program when a stream is published.", Same).syntax("PROGRAM [ARG...]"),
    doc("exec_publish_done", "Run a program when a stream's publisher leaves.", Same).syntax("PROGRAM [ARG...]"),
    doc("exec_play", "Run a program when a player starts.", Same).syntax("PROGRAM [ARG...]"),
    doc("exec_play_done", "Run a program when a player leaves.", Same).syntax("PROGRAM [ARG...]"),
    doc("exec_record_done", "Run a program when a recording file is closed; in `recorder NAME {}`, for that recorder (its own lines, then the application's).", Same).syntax("PROGRAM [ARG...]"),
    doc("exec_options", "`on`: a trailing `name=X` word of the exec lines written after it, at the same level, runs the line for stream X only.", Same),
    doc("exec_kill_signal", "What stops a managed child: a number 1-64 or a name (`HUP INT QUIT ILL ABRT FPE KILL SEGV PIPE ALRM TERM USR1 USR2 CHLD CONT STOP TSTP TTIN TTOU`, any case); global.", Same).syntax("SIGNAL"),
    doc("respawn", "Respawn managed children that die.", Same),
    doc("respawn_timeout", "Wait before a respawn (`0`: at once; global: one per configuration).", Same),
    // transcode
    doc(
        "transcode",
        "One rendition of the ladder sluice runs with ffmpeg (at most 8 per application): stream `NAME_<HEIGHT>p`, an even height from 64p to 4320p, at the video bit rate (`2500k`, `2m`, `800000`: bits/s), optionally its AAC bit rate and a frame-rate cap (ffmpeg's `-fpsmax`).",
        SLUICE,
    )
    .syntax("HEIGHTp BITRATE [audio=BITRATE] [fps=N]"),
    doc("transcode_encoder", "ffmpeg's H.264 encoder: `libx264`, or `h264_nvenc`, `h264_qsv`, `h264_vaapi` (on `/dev/dri/renderD128`) when your ffmpeg and hardware have it.", SLUICE).syntax("NAME"),
    doc("transcode_preset", "The encoder's `-preset`.", SLUICE)
        .syntax("NAME")
        .default_is("`veryfast` for `libx264`/`libx265`, else the encoder's own"),
    doc("transcode_audio_bitrate", "AAC bit rate of renditions without `audio=`.", SLUICE),
    doc("transcode_max", "Most streams transcoded at once in the server.", SLUICE),
    doc("transcode_ffmpeg", "The ffmpeg program, searched on `PATH` unless it holds a `/`.", SLUICE).syntax("PATH"),
    // later
    doc("notify_send_redirect", "Send a callback's redirect to the client instead of following it.", Sluice("a fork's directive (not in nginx-rtmp 1.2)")),
    doc("play", "Play FLV and MP4 files (VOD) from these directories or `http://` locations, tried in order; several lines merge (innermost first). `https://` is a sluice extension.", Same).syntax("DIR|URL..."),
    doc("play_temp_path", "Where files played from URLs are downloaded.", Same),
    doc("play_local_path", "Where downloaded files are kept (empty: deleted after playing).", Same),
    doc("dash_repetition", "Compact the manifest's segment timeline with repetitions.", Same),
    doc("dash_clock_compensation", "How players synchronise their clock.", Same),
    doc("dash_clock_helper_uri", "The clock URI for `dash_clock_compensation`.", Same),
    doc(
        "access_log",
        "`access_log off|FILE [FORMAT];`: one line per client session (RTMP, RTMPS, HTTP-FLV, WebSocket-FLV) when it ends, in FORMAT (`combined` by default). Several at one level all write; a level that writes one replaces the enclosing level's. Reopened on SIGUSR1 / `sluice -s reopen`.",
        Differs("nginx-rtmp's; off unless written (nginx-rtmp writes logs/access.log by default), `$args` and URL queries redacted of secrets"),
    ),
    doc(
        "log_format",
        "`log_format NAME TEXT...;`: a named access-log format of nginx-rtmp's variables (`$remote_addr $app $name $args $flashver $swfurl $tcurl $pageurl $command $bytes_sent $bytes_received $time_local $session_time $session_readable_time $connection`); `combined` is predefined.",
        Same,
    ),
    doc(
        "error_log",
        "`error_log FILE|stderr [LEVEL];` (top level): where sluice's own log goes and from which level (debug, info, notice, warn, error, crit, alert, emerg; `error` when not given, as nginx). Not set: stderr at `info`. RUST_LOG, when set, overrides the level. Reopened on SIGUSR1.",
        Differs("nginx's; one `error_log` only, no `syslog:`"),
    ),
    doc("log_interval", "Write access log lines of long sessions this often.", Same),
    doc("log_size", "Buffer of the access log.", Same),
    doc("netcall_timeout", "Timeout of callback connections.", Same),
    doc("netcall_buffer", "Buffer of callback connections.", Same),
    doc("rtmp_auto_push", "Push streams between nginx worker processes.", Same),
    doc("rtmp_auto_push_reconnect", "Reconnect time of `rtmp_auto_push`.", Same),
    doc("rtmp_socket_dir", "Directory of the sockets between workers.", Same),
    // process
    doc(
        "pid",
        "File the process id is written to at start-up (removed at exit); `sluice -s reload|quit|stop|reopen` reads it. Relative to the configuration's directory.",
        Differs("nginx's; no pid file unless set (nginx has a compiled-in default)"),
    ),
    doc(
        "worker_shutdown_timeout",
        "How long a graceful stop (`sluice -s quit`, SIGQUIT) waits for connected clients to leave before closing them.",
        Differs("nginx's; nginx waits without limit by default, sluice 10s (a live publisher never leaves by itself)"),
    ),
];

/// The directives of the `http {}` block (compared with nginx, or the module they come from).
pub(crate) const HTTP_DOCS: &[Doc] = &[
    doc("server", "One virtual server; an address several servers list belongs to the `default_server` one, else the first.", Differs("`server_name` is not read: one server per address")),
    doc(
        "listen",
        "Address to serve (`8080`, `127.0.0.1:8080`, `[::]:8080`); with `proxy_protocol`, each connection starts with a PROXY protocol (v1 or v2) header naming the client, read within `client_header_timeout`.",
        Differs("`proxy_protocol` as nginx's; other flags are accepted; `ssl` and `quic` addresses are skipped with a warning (no TLS on HTTP yet)"),
    )
    .syntax("ADDRESS [FLAG...]"),
    doc("location", "Prefix match (longest wins) or exact (`=`); nested locations allowed.", Differs("regex locations (`~`, `~*`) are an error")).syntax("[=|^~] URI { }"),
    doc("root", "File = root + URI.", Same).syntax("PATH"),
    doc("alias", "File = alias + URI without the location's prefix.", Same).syntax("PATH"),
    doc("types", "Content-Type by extension (`MIME EXT...;` lines).", Differs("sluice's built-in map (m3u8, ts, m4s, mp4, m4a, key, flv, html, css, js, json, xml, png, jpg, svg, txt, ...) answers what it lacks; an empty `types {}` leaves only `default_type`")),
    doc("default_type", "Content-Type of other extensions.", Same).syntax("MIME"),
    doc("add_header", "Extra header on 2xx/3xx answers, on all with `always`; inherited only into a level that has none.", Same).syntax("NAME VALUE [always]"),
    doc("index", "Files tried for a URI ending in `/`.", Same).syntax("FILE..."),
    doc("rtmp_stat", "nginx-rtmp's statistics page in this location: `live` lists each application's streams, `live clients` their clients too, `all` is both.", Same),
    doc("rtmp_stat_stylesheet", "Adds `<?xml-stylesheet ... href=\"PATH\"?>` to the page.", Same).syntax("PATH"),
    doc("rtmp_stat_format", "`xml` (`text/xml`): nginx-rtmp's tree; `json` (`application/json`): nginx-http-flv-module's JSON.", Sluice("nginx-http-flv-module's (winshining)")),
    doc("flv_live", "Play live streams as HTTP-FLV and WebSocket-FLV in this location.", Sluice("nginx-http-flv-module's (winshining)")),
    doc("recordings", "Recordings (FLV, MP4) of `record_path` watched as HLS VOD, no transcode: `APP/FILE/index.m3u8` under this location; the built-in server has it at `/vod/`.", SLUICE),
    doc("api", "sluice's JSON API (`/api/v1/...`) under this location.", SLUICE),
    doc("metrics", "Prometheus metrics in this location.", SLUICE),
    doc("dashboard", "sluice's dashboard: the page at the location's URI (a prefix without its `/` is redirected to it), its files at `dashboard/NAME` below it.", SLUICE),
    doc("api_token", "The API, metrics and control API here need `Authorization: Bearer TOKEN`.", SLUICE).syntax("TOKEN"),
    doc("rtmp_control", "nginx-rtmp's control API in this location: `.../record/start|stop`, `.../drop/publisher|subscriber|client`, `.../redirect/publisher|subscriber|client`.", Same),
    doc("allow", "nginx's access module: the first `allow`/`deny` matching the client decides (none: allowed); a level without rules takes the enclosing level's. Applies to everything the location serves, `/healthz` included.", Same).syntax("ADDRESS|CIDR|all"),
    doc("deny", "A denied client gets 403 (logged with the rule).", Same).syntax("ADDRESS|CIDR|all"),
    doc("client_header_timeout", "The whole request head must arrive within this of the connection's start or the previous response's end.", Differs("nginx's default is 60s")),
    doc("keepalive_timeout", "Idle keep-alive connections close after this or `client_header_timeout`, whichever is shorter (`0`: no keep-alive).", Differs("the second value and location-level lines are accepted and ignored")),
    doc("send_timeout", "A client that reads nothing of a response for this long is disconnected.", Same),
    doc("max_connections", "HTTP connections a server keeps open at once (all its addresses together); more are closed as soon as they are accepted. RTMP's limits are separate.", SLUICE),
];

/// The bits of the `http {}` table's contexts (`http::hctx`, private to that module).
const HTTP_MAIN: u8 = 1;
const HTTP_SERVER: u8 = 2;
const HTTP_LOCATION: u8 = 4;

/// The doc row of `name` in `docs`.
pub(crate) fn find<'a>(docs: &'a [Doc], name: &str) -> Option<&'a Doc> {
    docs.iter().find(|d| d.name == name)
}

/// A table row of the rtmp tables that is documented with the `http {}` table instead (later's
/// rows that exist only to say "not here").
fn documented_in_http(spec: &DirectiveSpec) -> bool {
    spec.contexts == ctx::HTTP
}

/// What is wrong between the tables and the doc rows, one line each.
#[cfg(test)]
fn mismatches() -> Vec<String> {
    let mut out = Vec::new();
    for (group, spec) in rtmp_specs() {
        if find(RTMP_DOCS, spec.name).is_none() {
            out.push(format!(
                "directive \"{}\" (table of config/{}.rs) has no row in RTMP_DOCS of config/docs.rs: add one, doc(\"{}\", \"what it does\", Same)",
                spec.name,
                group.name(),
                spec.name
            ));
        }
    }
    for spec in http::DIRECTIVES {
        if find(HTTP_DOCS, spec.name).is_none() {
            out.push(format!(
                "http directive \"{}\" (config/http.rs) has no row in HTTP_DOCS of config/docs.rs: add one",
                spec.name
            ));
        }
    }
    for d in RTMP_DOCS {
        if !rtmp_specs().any(|(_, s)| s.name == d.name) {
            out.push(format!("RTMP_DOCS row \"{}\" names no directive of the rtmp tables: remove it", d.name));
        }
    }
    for d in HTTP_DOCS {
        if !http::DIRECTIVES.iter().any(|s| s.name == d.name) {
            out.push(format!("HTTP_DOCS row \"{}\" names no directive of config/http.rs: remove it", d.name));
        }
    }
    out
}

/// The rtmp tables' rows that docs/directives.md lists with their group.
fn rtmp_specs() -> impl Iterator<Item = (Group, &'static DirectiveSpec)> {
    TABLES
        .iter()
        .flat_map(|(group, table)| table.iter().map(move |s| (*group, s)))
        .filter(|(_, s)| !documented_in_http(s))
}

/// A section's title and what it says first.
fn section(group: Group) -> (&'static str, &'static str) {
    match group {
        Group::Core => ("Core: servers and connections", "nginx-rtmp's core module (`rtmp`, `server`)."),
        Group::Live => ("Live", "nginx-rtmp's live module."),
        Group::Record => ("Recording", "nginx-rtmp's record module; `recorder` blocks take the `record*` directives too."),
        Group::Hls => ("HLS", "nginx-rtmp's hls module, and sluice's fMP4 and low-latency HLS."),
        Group::Dash => ("DASH", "nginx-rtmp's dash module, with HEVC, AV1 and Opus too."),
        Group::Http => ("Built-in HTTP server", "Set inside `rtmp {}`; they apply when the file has no `http {}` block."),
        Group::Access => ("Access control", "nginx-rtmp's access and limit modules, and sluice's signed and publish keys."),
        Group::Notify => ("HTTP callbacks", "nginx-rtmp's notify module."),
        Group::Relay => ("Relays", "nginx-rtmp's relay module (`push`, `pull`)."),
        Group::Exec => ("Exec", "nginx-rtmp's exec module; exec lines accumulate across levels (application, then server, then rtmp)."),
        Group::Transcode => ("Transcode ladder", "sluice's own adaptive-bitrate ladder."),
        Group::Play => ("Video on demand", "nginx-rtmp's play module: FLV and MP4 files played over RTMP."),
        Group::Cluster => ("Cluster", "sluice's stream directory in Redis: origins register their streams, edges find them."),
        Group::Log => (
            "Logs",
            "nginx-rtmp's log module (access log) and nginx's `error_log`.",
        ),
        Group::Process => (
            "Process",
            "nginx's main-context directives that sluice acts on, written outside `rtmp {}` (the rest of an nginx.conf's main context is nginx's and skipped).",
        ),
        Group::Later => (
            "Not implemented yet",
            "Accepted so that nginx-rtmp configurations load, with no effect: `sluice -t` and start-up warn about each one written.",
        ),
    }
}

/// `rtmp, server, application`.
fn rtmp_contexts(bits: u8) -> String {
    let names = [
        (ctx::RTMP, "rtmp"),
        (ctx::SERVER, "server"),
        (ctx::APP, "application"),
        (ctx::RECORDER, "recorder"),
        (ctx::HTTP, "http"),
        (ctx::TOP, "top level"),
    ];
    names.iter().filter(|(bit, _)| bits & bit != 0).map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
}

fn http_contexts(bits: u8) -> String {
    let names = [(HTTP_MAIN, "http"), (HTTP_SERVER, "server"), (HTTP_LOCATION, "location")];
    names.iter().filter(|(bit, _)| bits & bit != 0).map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
}

/// The arguments a table row takes, as words: `on|off`, `TIME`, `VALUE...`.
fn derived_syntax(spec: &DirectiveSpec) -> String {
    let word = match spec.kind {
        Kind::Block => return block_syntax(spec.args),
        Kind::Flag => "on|off".to_owned(),
        Kind::Time => "TIME".to_owned(),
        Kind::Size => "SIZE".to_owned(),
        Kind::Number => "NUMBER".to_owned(),
        Kind::Text | Kind::Raw => "VALUE".to_owned(),
        Kind::OneOf(words) | Kind::SomeOf(words) => words.join("|"),
        Kind::Listen => "ADDRESS".to_owned(),
    };
    match spec.args {
        Args::Exactly(n) => vec![word; n].join(" "),
        Args::Between(lo, hi) => {
            let mut words = vec![word.clone(); lo];
            words.extend((lo..hi).map(|_| format!("[{word}]")));
            words.join(" ")
        }
        Args::AtLeast(n) => {
            let mut words = vec![word; n.max(1)];
            if let Some(last) = words.last_mut() {
                last.push_str("...");
            }
            words.join(" ")
        }
    }
}

fn block_syntax(args: Args) -> String {
    match args {
        Args::Exactly(0) => "{ }".to_owned(),
        _ => "NAME { }".to_owned(),
    }
}

/// `` `hls_fragment TIME` ``, with `|` escaped for a Markdown table.
fn syntax_cell(spec: &DirectiveSpec, doc: &Doc) -> String {
    let args = if doc.syntax.is_empty() { derived_syntax(spec) } else { doc.syntax.to_owned() };
    let text = if args.is_empty() { spec.name.to_owned() } else { format!("{} {args}", spec.name) };
    cell(&format!("`{text}`"))
}

fn default_cell(spec: &DirectiveSpec, doc: &Doc) -> String {
    match (doc.default, spec.default) {
        ("", "") => "—".to_owned(),
        ("", default) => cell(&format!("`{default}`")),
        (derived, _) => cell(derived),
    }
}

/// Why `name` has no effect: always (`Some((why, None))`) or in one state
/// (`Some((why, Some("off")))`).
fn inert(name: &str) -> Option<(&'static str, Option<&'static str>)> {
    let rows = later::inert_rows();
    for (what, why) in rows {
        if what == name {
            return Some((why, None));
        }
        for state in ["on", "off"] {
            if what == format!("{name} {state}") {
                return Some((why, Some(state)));
            }
        }
    }
    None
}

fn compat_cell(name: &str, compat: Compat, with_inert: bool) -> String {
    let mut text = match compat {
        Same => "same".to_owned(),
        Differs(how) => how.to_owned(),
        Sluice("") => "sluice extension".to_owned(),
        Sluice(origin) => format!("not in nginx-rtmp: {origin}"),
    };
    match inert(name).filter(|_| with_inert) {
        Some((why, None)) => text.push_str(&format!("; **no effect in sluice**: {why}")),
        Some((why, Some(state))) => text.push_str(&format!("; `{name} {state}` has no effect in sluice: {why}")),
        None => {}
    }
    cell(&text)
}

/// A table cell: `|` escaped, no line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

const HEADER: &str = "# Directives

<!-- Generated from the directive tables in crates/sluice/src/config/ and the rows of
     crates/sluice/src/config/docs.rs. Do not edit: change those, then run
     SLUICE_BLESS=1 cargo test -p sluice --lib directives -->

Every directive sluice reads, with where it may be written, its arguments, its default, what it
does and how it compares with nginx-rtmp (\"same\": same name, arguments and behaviour).
Inside `rtmp {}` directives inherit rtmp → server → application (→ recorder), as in nginx-rtmp:
a level that sets a directive replaces what it inherits. `sluice -T` prints a configuration
with every inherited value and default filled in.

Times are nginx times (`500ms`, `3s`, `1m30s`, `1h`; a bare number is seconds); sizes are
`4096`, `128k`, `1m`. Top-level nginx directives (`worker_processes`, `events`, `user`, ...)
that are not listed are ignored.
";

/// docs/directives.md.
pub(crate) fn markdown() -> String {
    let mut out = String::from(HEADER);
    let mut groups: Vec<Group> = Vec::new();
    for (group, _) in rtmp_specs() {
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    for group in groups {
        let (title, intro) = section(group);
        out.push_str(&format!("\n## {title}\n\n{intro}\n\n"));
        out.push_str("| directive | context | default | meaning | nginx-rtmp |\n|---|---|---|---|---|\n");
        for (_, spec) in rtmp_specs().filter(|(g, _)| *g == group) {
            let Some(doc) = find(RTMP_DOCS, spec.name) else { continue };
            out.push_str(&row(spec, doc, &rtmp_contexts(spec.contexts), group != Group::Later));
        }
    }
    out.push_str(
        "\n## HTTP block\n\nThe subset of nginx's `http {}` block sluice serves. Directives stock nginx.conf files carry \
         that mean nothing to sluice (`sendfile`, `gzip*`, `ssl_*`, `access_log`, ...) are accepted with a warning; \
         `root`, `types`, `default_type` and `index` inherit http → server → location.\n\n",
    );
    out.push_str("| directive | context | default | meaning | nginx |\n|---|---|---|---|---|\n");
    for spec in http::DIRECTIVES {
        let Some(doc) = find(HTTP_DOCS, spec.name) else { continue };
        out.push_str(&row(spec, doc, &http_contexts(spec.contexts), false));
    }
    out.push_str(&inert_section());
    out
}

fn row(spec: &DirectiveSpec, doc: &Doc, contexts: &str, with_inert: bool) -> String {
    format!(
        "| {} | {} | {} | {} | {} |\n",
        syntax_cell(spec, doc),
        contexts,
        default_cell(spec, doc),
        cell(doc.meaning),
        compat_cell(spec.name, doc.compat, with_inert)
    )
}

/// The list of everything accepted with no effect, from `later`, rows with the same reason
/// and contexts joined.
fn inert_section() -> String {
    let mut out = String::from(
        "\n## Accepted, not active yet\n\nAccepted, so that nginx-rtmp configurations load, and validated, but with no effect. \
         `sluice -t` and start-up print a warning for each one written (`sluice: [warn] \"dash_repetition\" has no effect: \
         this DASH fork's extension is not implemented, in /etc/nginx/rtmp.conf:12`) and a summary line naming them all.\n\n\
         | directive | where | why it has no effect |\n|---|---|---|\n",
    );
    let mut rows: Vec<(Vec<String>, String, &'static str)> = Vec::new();
    for (what, why) in later::inert_rows() {
        let name = what.split(' ').next().unwrap_or_default();
        let place = match what.strip_prefix("listen ") {
            Some(_) => "server (`listen` option)".to_owned(),
            None => {
                rtmp_specs().find(|(_, s)| s.name == name).map(|(_, s)| rtmp_contexts(s.contexts)).unwrap_or_default()
            }
        };
        match rows.iter_mut().find(|(_, p, w)| *p == place && *w == why) {
            Some((names, _, _)) => names.push(what),
            None => rows.push((vec![what], place, why)),
        }
    }
    for (names, place, why) in rows {
        let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        out.push_str(&format!("| {} | {} | {} |\n", cell(&names.join(", ")), place, cell(why)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/directives.md");

    /// Each table row has a doc row and each doc row a table row; the failure names them.
    #[test]
    fn directives_all_have_docs() {
        let wrong = mismatches();
        assert!(wrong.is_empty(), "config/docs.rs and the directive tables disagree:\n{}", wrong.join("\n"));
    }

    /// later's http-only rows are the http table's directives.
    #[test]
    fn directives_listed_for_http_are_http_directives() {
        let names = TABLES.iter().flat_map(|(_, t)| t.iter()).filter(|s| documented_in_http(s));
        for spec in names {
            assert!(http::DIRECTIVES.iter().any(|h| h.name == spec.name), "{}", spec.name);
        }
    }

    /// The http context bits this module names are the ones http.rs uses.
    #[test]
    fn directives_http_context_bits_match() {
        let bits = |name: &str| http::DIRECTIVES.iter().find(|s| s.name == name).map(|s| s.contexts);
        assert_eq!(bits("server"), Some(HTTP_MAIN));
        assert_eq!(bits("listen"), Some(HTTP_SERVER));
        assert_eq!(bits("alias"), Some(HTTP_LOCATION));
        assert_eq!(bits("root"), Some(HTTP_MAIN | HTTP_SERVER | HTTP_LOCATION));
    }

    /// docs/directives.md is what the tables say; `SLUICE_BLESS=1` rewrites it.
    #[test]
    fn directives_md_is_up_to_date() {
        let want = markdown();
        if std::env::var_os("SLUICE_BLESS").is_some_and(|v| v == "1") {
            std::fs::write(FILE, &want).expect("writing docs/directives.md");
            return;
        }
        let have = std::fs::read_to_string(FILE).unwrap_or_default();
        assert!(
            have == want,
            "docs/directives.md is out of date with the directive tables and config/docs.rs: run\n    \
             SLUICE_BLESS=1 cargo test -p sluice --lib directives\nand commit docs/directives.md"
        );
    }

    #[test]
    fn directives_syntax_is_derived_from_the_tables() {
        let spec = |name| super::super::directives().find(|(_, s)| s.name == name).map(|(_, s)| *s).unwrap();
        assert_eq!(derived_syntax(&spec("live")), "on|off");
        assert_eq!(derived_syntax(&spec("record")), "off|all|audio|video|keyframes|manual...");
        assert_eq!(derived_syntax(&spec("server")), "{ }");
        assert_eq!(derived_syntax(&spec("hls_fragment")), "TIME");
        assert!(markdown().contains("| `hls_max_fragment TIME` | rtmp, server, application | 10 × `hls_fragment` |"));
        assert!(markdown().contains("| `busy on\\|off` | rtmp, server | `off` |"));
    }
}

//! nginx-rtmp's live module (`ngx_rtmp_live_module.c`), plus `meta` from its codec module and
//! `gop_cache` from the forks: how published streams fan out to players.

use std::time::Duration;

use nginx_conf::Directive;

use super::value::{ctx::RSA, first, flag, number, one_of, put, spec, time, Args, DirectiveSpec, Fail, Kind};

const ONE: Args = Args::Exactly(1);
const META: &[&str] = &["on", "copy", "off"];

/// The live directive table.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    spec("live", RSA, ONE, Kind::Flag, "off"),
    spec("meta", RSA, ONE, Kind::OneOf(META), "on"),
    spec("sync", RSA, ONE, Kind::Time, "300ms"),
    spec("interleave", RSA, ONE, Kind::Flag, "off"),
    spec("wait_key", RSA, ONE, Kind::Flag, "on"),
    spec("wait_video", RSA, ONE, Kind::Flag, "off"),
    spec("publish_notify", RSA, ONE, Kind::Flag, "off"),
    spec("play_restart", RSA, ONE, Kind::Flag, "off"),
    spec("idle_streams", RSA, ONE, Kind::Flag, "on"),
    spec("drop_idle_publisher", RSA, ONE, Kind::Time, "0"),
    spec("gop_cache", RSA, ONE, Kind::Flag, "on"),
    // Accepted for compatibility; sluice's stream table needs no bucket count.
    spec("stream_buckets", RSA, ONE, Kind::Number, "1024"),
    // Deprecated in nginx-rtmp itself (no effect there either).
    spec("buffer", RSA, ONE, Kind::Time, "0"),
];

/// nginx-rtmp's live module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConf {
    /// `live`: serve live streams in this application (off).
    pub live: bool,
    /// `meta`: send players the publisher's metadata as is, rebuilt, or not at all (on).
    pub meta: MetaMode,
    /// `sync`: resync a player whose timestamps drift by more than this (300ms).
    pub sync: Duration,
    /// `interleave`: send audio and video on one chunk stream (off).
    pub interleave: bool,
    /// `wait_key`: start players on a keyframe (on, as nginx-rtmp's code defaults).
    pub wait_key: bool,
    /// `wait_video`: hold audio until the first video frame (off).
    pub wait_video: bool,
    /// `publish_notify`: send NetStream.Play.PublishNotify to players (off).
    pub publish_notify: bool,
    /// `play_restart`: send stream begin/end to players on every publish (off).
    pub play_restart: bool,
    /// `idle_streams`: let players wait on streams with no publisher (on).
    pub idle_streams: bool,
    /// `drop_idle_publisher`: drop a publisher silent this long (off).
    pub drop_idle_publisher: Option<Duration>,
    /// `gop_cache`: start new players from the last keyframe (on; a sluice extension).
    pub gop_cache: bool,
}

/// `meta on|copy|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaMode {
    /// Rebuild metadata from what sluice knows of the stream.
    On,
    /// Forward the publisher's metadata unchanged.
    Copy,
    /// Send no metadata.
    Off,
}

/// Live settings as written at one level; `None` means "not set here".
#[derive(Debug, Clone, Default)]
pub(crate) struct LiveLayer {
    live: Option<bool>,
    meta: Option<MetaMode>,
    sync: Option<Duration>,
    interleave: Option<bool>,
    wait_key: Option<bool>,
    wait_video: Option<bool>,
    publish_notify: Option<bool>,
    play_restart: Option<bool>,
    idle_streams: Option<bool>,
    drop_idle_publisher: Option<Duration>,
    gop_cache: Option<bool>,
    stream_buckets: Option<u64>,
    buffer: Option<Duration>,
}

impl LiveLayer {
    /// Applies one directive from [`DIRECTIVES`] (already checked for context and shape).
    pub(crate) fn set(&mut self, d: &Directive) -> Result<(), Fail> {
        match d.name.as_str() {
            "live" => put(&mut self.live, flag(d)?, d),
            "meta" => put(&mut self.meta, meta(d)?, d),
            "sync" => put(&mut self.sync, time(d)?, d),
            "interleave" => put(&mut self.interleave, flag(d)?, d),
            "wait_key" => put(&mut self.wait_key, flag(d)?, d),
            "wait_video" => put(&mut self.wait_video, flag(d)?, d),
            "publish_notify" => put(&mut self.publish_notify, flag(d)?, d),
            "play_restart" => put(&mut self.play_restart, flag(d)?, d),
            "idle_streams" => put(&mut self.idle_streams, flag(d)?, d),
            "drop_idle_publisher" => put(&mut self.drop_idle_publisher, time(d)?, d),
            "gop_cache" => put(&mut self.gop_cache, flag(d)?, d),
            "stream_buckets" => put(&mut self.stream_buckets, number(d)?, d),
            "buffer" => put(&mut self.buffer, time(d)?, d),
            other => Err(Fail::new(d.span, format!("directive \"{other}\" is not handled by live"))),
        }
    }

    /// Fills what this level leaves unset from the enclosing level (nginx's merge).
    pub(crate) fn inherit(&self, outer: &Self) -> Self {
        LiveLayer {
            live: self.live.or(outer.live),
            meta: self.meta.or(outer.meta),
            sync: self.sync.or(outer.sync),
            interleave: self.interleave.or(outer.interleave),
            wait_key: self.wait_key.or(outer.wait_key),
            wait_video: self.wait_video.or(outer.wait_video),
            publish_notify: self.publish_notify.or(outer.publish_notify),
            play_restart: self.play_restart.or(outer.play_restart),
            idle_streams: self.idle_streams.or(outer.idle_streams),
            drop_idle_publisher: self.drop_idle_publisher.or(outer.drop_idle_publisher),
            gop_cache: self.gop_cache.or(outer.gop_cache),
            stream_buckets: self.stream_buckets.or(outer.stream_buckets),
            buffer: self.buffer.or(outer.buffer),
        }
    }

    /// Applies the defaults (nginx-rtmp's `ngx_rtmp_live_merge_app_conf`).
    pub(crate) fn build(&self) -> LiveConf {
        LiveConf {
            live: self.live.unwrap_or(false),
            meta: self.meta.unwrap_or(MetaMode::On),
            sync: self.sync.unwrap_or(Duration::from_millis(300)),
            interleave: self.interleave.unwrap_or(false),
            wait_key: self.wait_key.unwrap_or(true),
            wait_video: self.wait_video.unwrap_or(false),
            publish_notify: self.publish_notify.unwrap_or(false),
            play_restart: self.play_restart.unwrap_or(false),
            idle_streams: self.idle_streams.unwrap_or(true),
            // nginx-rtmp uses 0 for "never drop".
            drop_idle_publisher: self.drop_idle_publisher.filter(|t| !t.is_zero()),
            gop_cache: self.gop_cache.unwrap_or(true),
        }
    }
}

impl Default for LiveConf {
    fn default() -> Self {
        LiveLayer::default().build()
    }
}

fn meta(d: &Directive) -> Result<MetaMode, Fail> {
    let options = [("on", MetaMode::On), ("copy", MetaMode::Copy), ("off", MetaMode::Off)];
    one_of(d, first(d)?, &options)
}

//! nginx-rtmp's record module (`ngx_rtmp_record_module.c`): writing streams to FLV files.
//! Settings made in an application form its default recorder; each `recorder NAME { }` block
//! adds another recorder that starts from the application's settings.
//!
//! | directive | default | meaning |
//! |---|---|---|
//! | `record off\|all\|audio\|video\|keyframes\|manual...` | `off` | what to record; words combine |
//! | `record_path DIR` | — | where files go |
//! | `record_suffix S` | `.flv` | file name suffix, strftime patterns allowed |
//! | `record_unique on\|off` | `off` | add `-UNIXTIME` to file names |
//! | `record_append on\|off` | `off` | continue an existing file instead of replacing it |
//! | `record_lock on\|off` | `off` | hold an fcntl write lock on the file while writing |
//! | `record_max_size SIZE` | `0` | close the file at this size (the next keyframe opens another) |
//! | `record_max_frames N` | `0` | close the file after this many frames |
//! | `record_interval T` | `0` | close and reopen the file every `T` |
//! | `record_notify on\|off` | `off` | `NetStream.Record.Start/Stop` to the publisher |
//! | `record_format flv\|mp4` | `flv` | sluice extension: FLV, or fragmented MP4 |
//! | `record_mp4_faststart on\|off` | `off` | sluice extension: rewrite MP4 files with `moov` first when closed |
//! | `recorder NAME { }` | — | another recorder of the application |

use std::path::PathBuf;
use std::time::Duration;

use nginx_conf::Directive;

use super::value::{
    ctx::{APP, RSAR},
    first, flag, one_of, put, size, spec, text, time, Args, DirectiveSpec, Fail, Kind,
};

const ONE: Args = Args::Exactly(1);
const MODES: &[&str] = &["off", "all", "audio", "video", "keyframes", "manual"];
const FORMATS: &[&str] = &["flv", "mp4"];

/// The record directive table.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    spec("record", RSAR, Args::AtLeast(1), Kind::SomeOf(MODES), "off"),
    spec("record_path", RSAR, ONE, Kind::Text, ""),
    spec("record_suffix", RSAR, ONE, Kind::Text, ".flv"),
    spec("record_unique", RSAR, ONE, Kind::Flag, "off"),
    spec("record_append", RSAR, ONE, Kind::Flag, "off"),
    spec("record_lock", RSAR, ONE, Kind::Flag, "off"),
    spec("record_max_size", RSAR, ONE, Kind::Size, "0"),
    spec("record_max_frames", RSAR, ONE, Kind::Size, "0"),
    spec("record_interval", RSAR, ONE, Kind::Time, "0"),
    spec("record_notify", RSAR, ONE, Kind::Flag, "off"),
    spec("record_format", RSAR, ONE, Kind::OneOf(FORMATS), "flv"),
    spec("record_mp4_faststart", RSAR, ONE, Kind::Flag, "off"),
    spec("recorder", APP, ONE, Kind::Block, ""),
];

/// What `record` captures; all false means off. `record audio keyframes;` sets two flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordMode {
    /// Audio frames (`audio`, `all`).
    pub audio: bool,
    /// All video frames (`video`, `all`).
    pub video: bool,
    /// Video keyframes only (`keyframes`).
    pub keyframes: bool,
    /// Record only when started through the control API (`manual`).
    pub manual: bool,
}

impl RecordMode {
    /// True when nothing is recorded.
    pub fn is_off(&self) -> bool {
        !(self.audio || self.video || self.keyframes)
    }
}

/// The container recordings are written in (`record_format`, a sluice extension).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordFormat {
    /// FLV, as nginx-rtmp writes (default).
    #[default]
    Flv,
    /// Fragmented MP4, one fragment per second at most, so a crash loses at most a second;
    /// carries H.264, HEVC, AV1, AAC and Opus.
    Mp4,
}

impl RecordFormat {
    /// The file name suffix `record_suffix` defaults to.
    pub fn default_suffix(self) -> &'static str {
        match self {
            RecordFormat::Flv => ".flv",
            RecordFormat::Mp4 => ".mp4",
        }
    }
}

/// nginx-rtmp's record module settings, merged for one application or recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordConf {
    /// `record`: what to record (off).
    pub mode: RecordMode,
    /// `record_path`: directory for recordings (none: recording cannot start).
    pub path: Option<PathBuf>,
    /// `record_suffix`: file name suffix, may hold strftime patterns (".flv"; ".mp4" with
    /// `record_format mp4`).
    pub suffix: String,
    /// `record_unique`: add a timestamp to file names (off).
    pub unique: bool,
    /// `record_append`: append to an existing file instead of truncating (off).
    pub append: bool,
    /// `record_lock`: lock the file while writing (off).
    pub lock: bool,
    /// `record_max_size`: start a new file after this many bytes (0: no limit).
    pub max_size: u64,
    /// `record_max_frames`: start a new file after this many video frames (0: no limit).
    pub max_frames: u64,
    /// `record_interval`: restart recording this often (none: never).
    pub interval: Option<Duration>,
    /// `record_notify`: send NetStream.Record.Start/Stop to the publisher (off).
    pub notify: bool,
    /// `record_format`: FLV or fragmented MP4 (flv; sluice extension).
    pub format: RecordFormat,
    /// `record_mp4_faststart`: rewrite closed MP4 files as progressive MP4 with `moov` first
    /// (off; sluice extension).
    pub mp4_faststart: bool,
    /// `recorder NAME { }` blocks of the application (always empty inside a recorder).
    pub recorders: Vec<Recorder>,
}

/// One `recorder NAME { }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorder {
    /// The recorder's name (the control API's `rec=`).
    pub name: String,
    /// Its settings, inherited from the application.
    pub conf: RecordConf,
    /// Directives of features not implemented yet, the application's first (none today
    /// inside a recorder: `on_record_done` and `exec_record_done` are typed).
    pub extra: Vec<(String, Vec<String>)>,
}

/// Record settings as written at one level; `None` means "not set here".
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordLayer {
    mode: Option<RecordMode>,
    path: Option<PathBuf>,
    suffix: Option<String>,
    unique: Option<bool>,
    append: Option<bool>,
    lock: Option<bool>,
    max_size: Option<u64>,
    max_frames: Option<u64>,
    interval: Option<Duration>,
    notify: Option<bool>,
    format: Option<RecordFormat>,
    mp4_faststart: Option<bool>,
}

impl RecordLayer {
    /// Applies one directive from [`DIRECTIVES`] (already checked for context and shape).
    /// `recorder` blocks are handled by the walker.
    pub(crate) fn set(&mut self, d: &Directive) -> Result<(), Fail> {
        match d.name.as_str() {
            // nginx keeps `record` as a bitmask that later lines extend rather than a
            // duplicate error; seed configs say `record off;` and then `record all;`, so the last
            // line at a level decides.
            "record" => {
                self.mode = Some(mode(d)?);
                Ok(())
            }
            "record_path" => put(&mut self.path, PathBuf::from(text(d)?), d),
            "record_suffix" => put(&mut self.suffix, text(d)?, d),
            "record_unique" => put(&mut self.unique, flag(d)?, d),
            "record_append" => put(&mut self.append, flag(d)?, d),
            "record_lock" => put(&mut self.lock, flag(d)?, d),
            "record_max_size" => put(&mut self.max_size, size(d)?, d),
            "record_max_frames" => put(&mut self.max_frames, size(d)?, d),
            "record_interval" => put(&mut self.interval, time(d)?, d),
            "record_notify" => put(&mut self.notify, flag(d)?, d),
            "record_format" => put(&mut self.format, format(d)?, d),
            "record_mp4_faststart" => put(&mut self.mp4_faststart, flag(d)?, d),
            other => Err(Fail::new(d.span, format!("directive \"{other}\" is not handled by record"))),
        }
    }

    /// Fills what this level leaves unset from the enclosing level (nginx's merge).
    pub(crate) fn inherit(&self, outer: &Self) -> Self {
        RecordLayer {
            mode: self.mode.or(outer.mode),
            path: self.path.clone().or_else(|| outer.path.clone()),
            suffix: self.suffix.clone().or_else(|| outer.suffix.clone()),
            unique: self.unique.or(outer.unique),
            append: self.append.or(outer.append),
            lock: self.lock.or(outer.lock),
            max_size: self.max_size.or(outer.max_size),
            max_frames: self.max_frames.or(outer.max_frames),
            interval: self.interval.or(outer.interval),
            notify: self.notify.or(outer.notify),
            format: self.format.or(outer.format),
            mp4_faststart: self.mp4_faststart.or(outer.mp4_faststart),
        }
    }

    /// Applies the defaults (nginx-rtmp's `ngx_rtmp_record_merge_app_conf`).
    pub(crate) fn build(&self) -> RecordConf {
        let format = self.format.unwrap_or_default();
        RecordConf {
            mode: self.mode.unwrap_or_default(),
            path: self.path.clone().filter(|p| !p.as_os_str().is_empty()),
            suffix: self.suffix.clone().unwrap_or_else(|| format.default_suffix().to_owned()),
            unique: self.unique.unwrap_or(false),
            append: self.append.unwrap_or(false),
            lock: self.lock.unwrap_or(false),
            max_size: self.max_size.unwrap_or(0),
            max_frames: self.max_frames.unwrap_or(0),
            // nginx-rtmp treats 0 as "no interval".
            interval: self.interval.filter(|t| !t.is_zero()),
            notify: self.notify.unwrap_or(false),
            format,
            mp4_faststart: self.mp4_faststart.unwrap_or(false),
            recorders: Vec::new(),
        }
    }
}

impl Default for RecordConf {
    fn default() -> Self {
        RecordLayer::default().build()
    }
}

fn format(d: &Directive) -> Result<RecordFormat, Fail> {
    one_of(d, first(d)?, &[("flv", RecordFormat::Flv), ("mp4", RecordFormat::Mp4)])
}

/// `record FLAG...`: flags add up; `off` anywhere wins, so `record off;` always disables.
fn mode(d: &Directive) -> Result<RecordMode, Fail> {
    #[derive(Clone, Copy)]
    enum Word {
        Off,
        All,
        Audio,
        Video,
        Keyframes,
        Manual,
    }
    let options = [
        ("off", Word::Off),
        ("all", Word::All),
        ("audio", Word::Audio),
        ("video", Word::Video),
        ("keyframes", Word::Keyframes),
        ("manual", Word::Manual),
    ];
    let mut m = RecordMode::default();
    let mut off = false;
    for arg in &d.args {
        match one_of(d, arg, &options)? {
            Word::Off => off = true,
            Word::All => (m.audio, m.video) = (true, true),
            Word::Audio => m.audio = true,
            Word::Video => m.video = true,
            Word::Keyframes => m.keyframes = true,
            Word::Manual => m.manual = true,
        }
    }
    Ok(if off { RecordMode::default() } else { m })
}

//! nginx-rtmp's HLS module (`hls/ngx_rtmp_hls_module.c`): all 22 `hls_*` directives and their
//! defaults from `ngx_rtmp_hls_merge_app_conf`. HLS is active when `hls on` and `hls_path` set.

use std::path::PathBuf;
use std::time::Duration;

use nginx_conf::Directive;

use super::value::{
    ctx::RSA, first, flag, invalid, number, one_of, put, size, spec, text, time, Args, DirectiveSpec, Fail, Kind,
};

const ONE: Args = Args::Exactly(1);

/// The HLS directive table.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    spec("hls", RSA, ONE, Kind::Flag, "off"),
    spec("hls_path", RSA, ONE, Kind::Text, ""),
    spec("hls_fragment", RSA, ONE, Kind::Time, "5s"),
    spec("hls_max_fragment", RSA, ONE, Kind::Time, "50s"),
    spec("hls_playlist_length", RSA, ONE, Kind::Time, "30s"),
    spec("hls_muxdelay", RSA, ONE, Kind::Time, "700ms"),
    spec("hls_sync", RSA, ONE, Kind::Time, "2ms"),
    spec("hls_continuous", RSA, ONE, Kind::Flag, "on"),
    spec("hls_nested", RSA, ONE, Kind::Flag, "off"),
    spec("hls_fragment_naming", RSA, ONE, Kind::OneOf(NAMING), "sequential"),
    spec("hls_fragment_naming_granularity", RSA, ONE, Kind::Number, "0"),
    spec("hls_fragment_slicing", RSA, ONE, Kind::OneOf(SLICING), "plain"),
    spec("hls_type", RSA, ONE, Kind::OneOf(TYPES), "live"),
    spec("hls_max_audio_delay", RSA, ONE, Kind::Time, "300ms"),
    spec("hls_audio_buffer_size", RSA, ONE, Kind::Size, "1m"),
    spec("hls_cleanup", RSA, ONE, Kind::Flag, "on"),
    spec("hls_variant", RSA, Args::AtLeast(1), Kind::Text, ""),
    spec("hls_base_url", RSA, ONE, Kind::Text, ""),
    spec("hls_keys", RSA, ONE, Kind::Flag, "off"),
    spec("hls_key_path", RSA, ONE, Kind::Text, ""),
    spec("hls_key_url", RSA, ONE, Kind::Text, ""),
    spec("hls_fragments_per_key", RSA, ONE, Kind::Number, "0"),
    // sluice extensions
    spec("hls_fragment_type", RSA, ONE, Kind::OneOf(FRAGMENT_TYPES), "mpegts"),
    spec("hls_low_latency", RSA, ONE, Kind::Flag, "off"),
    spec("hls_part_duration", RSA, ONE, Kind::Time, "200ms"),
    spec("hls_cors", RSA, ONE, Kind::Text, "*"),
];

const NAMING: &[&str] = &["sequential", "timestamp", "system"];
const SLICING: &[&str] = &["plain", "aligned"];
const TYPES: &[&str] = &["live", "event"];
const FRAGMENT_TYPES: &[&str] = &["mpegts", "fmp4"];

/// Segment container (`hls_fragment_type`, a sluice extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsFragmentType {
    /// MPEG-TS `.ts` segments, as nginx-rtmp writes.
    Mpegts,
    /// CMAF fMP4 `.m4s` segments with an init segment: carries HEVC and AV1 too.
    Fmp4,
}

/// How fragment files are named (`hls_fragment_naming`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsNaming {
    /// 1.ts, 2.ts, ...
    Sequential,
    /// The stream timestamp.
    Timestamp,
    /// The system clock.
    System,
}

/// Where fragments are cut (`hls_fragment_slicing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsSlicing {
    /// At the first keyframe after `hls_fragment`.
    Plain,
    /// On timestamp boundaries, so several encoders cut alike.
    Aligned,
}

/// The playlist's type (`hls_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsType {
    /// A sliding window.
    Live,
    /// `#EXT-X-PLAYLIST-TYPE: EVENT`: fragments are never removed from the playlist.
    Event,
}

/// Who may read the `hls_path` location's answers from another site's page (`hls_cors`, a
/// sluice extension): its `Access-Control-Allow-Origin`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HlsCors {
    /// `*`: any page.
    #[default]
    Any,
    /// `off`: no `Access-Control-Allow-Origin` (pages of this server's own origin only).
    Off,
    /// One origin, `https://player.example[:port]`.
    Origin(String),
}

/// One `hls_variant SUFFIX [PARAM...]` line of a master playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsVariant {
    /// The stream name suffix that selects this variant (`_hi`).
    pub suffix: String,
    /// `#EXT-X-STREAM-INF` parameters, e.g. `BANDWIDTH=640000`.
    pub params: Vec<String>,
}

/// nginx-rtmp's hls module settings, merged for one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsConf {
    /// `hls`: write HLS (off).
    pub enabled: bool,
    /// `hls_path`: directory for playlists and fragments (none: HLS cannot run).
    pub path: Option<PathBuf>,
    /// `hls_fragment`: target fragment length (5s).
    pub fragment: Duration,
    /// `hls_max_fragment`: force a cut after this long (10 × `hls_fragment`).
    pub max_fragment: Duration,
    /// `hls_playlist_length`: playlist window (30s).
    pub playlist_length: Duration,
    /// `hls_muxdelay`: MPEG-TS mux delay (700ms).
    pub muxdelay: Duration,
    /// `hls_sync`: timestamp jitter below this is smoothed (2ms).
    pub sync: Duration,
    /// `hls_continuous`: continue numbering from an existing playlist (on).
    pub continuous: bool,
    /// `hls_nested`: one directory per stream (off).
    pub nested: bool,
    /// `hls_fragment_naming` (sequential).
    pub fragment_naming: HlsNaming,
    /// `hls_fragment_naming_granularity`: round timestamp names to this many ms (0).
    pub fragment_naming_granularity: u64,
    /// `hls_fragment_slicing` (plain).
    pub fragment_slicing: HlsSlicing,
    /// `hls_type` (live).
    pub playlist_type: HlsType,
    /// `hls_max_audio_delay`: flush buffered audio after this long (300ms).
    pub max_audio_delay: Duration,
    /// `hls_audio_buffer_size`: audio buffered per fragment (1M).
    pub audio_buffer_size: u64,
    /// `hls_cleanup`: delete old fragments and playlists (on).
    pub cleanup: bool,
    /// `hls_variant` lines (none: no master playlist). Not merged per line: an inner level
    /// with any `hls_variant` replaces the outer list, as in nginx-rtmp.
    pub variants: Vec<HlsVariant>,
    /// `hls_base_url`: prefix for fragment URLs in playlists ("").
    pub base_url: String,
    /// `hls_keys`: AES-128 encrypt fragments (off).
    pub keys: bool,
    /// `hls_key_path`: directory for keys (none: `hls_path`).
    pub key_path: Option<PathBuf>,
    /// `hls_key_url`: prefix for key URLs in playlists ("").
    pub key_url: String,
    /// `hls_fragments_per_key`: rotate the key after this many fragments (0: never).
    pub fragments_per_key: u64,
    /// `hls_fragment_type` (mpegts; sluice extension).
    pub fragment_type: HlsFragmentType,
    /// `hls_low_latency`: low-latency HLS parts and blocking playlist reload (off; sluice
    /// extension).
    pub low_latency: bool,
    /// `hls_part_duration`: low-latency part target (200ms; sluice extension).
    pub part_duration: Duration,
    /// `hls_cors`: the `Access-Control-Allow-Origin` of the `hls_path` location (`*`; sluice
    /// extension).
    pub cors: HlsCors,
}

/// HLS settings as written at one level; `None` means "not set here".
#[derive(Debug, Clone, Default)]
pub(crate) struct HlsLayer {
    enabled: Option<bool>,
    path: Option<PathBuf>,
    fragment: Option<Duration>,
    max_fragment: Option<Duration>,
    playlist_length: Option<Duration>,
    muxdelay: Option<Duration>,
    sync: Option<Duration>,
    continuous: Option<bool>,
    nested: Option<bool>,
    fragment_naming: Option<HlsNaming>,
    fragment_naming_granularity: Option<u64>,
    fragment_slicing: Option<HlsSlicing>,
    playlist_type: Option<HlsType>,
    max_audio_delay: Option<Duration>,
    audio_buffer_size: Option<u64>,
    cleanup: Option<bool>,
    variants: Option<Vec<HlsVariant>>,
    base_url: Option<String>,
    keys: Option<bool>,
    key_path: Option<PathBuf>,
    key_url: Option<String>,
    fragments_per_key: Option<u64>,
    fragment_type: Option<HlsFragmentType>,
    low_latency: Option<bool>,
    part_duration: Option<Duration>,
    cors: Option<HlsCors>,
}

impl HlsLayer {
    /// Applies one directive from [`DIRECTIVES`] (already checked for context and shape).
    pub(crate) fn set(&mut self, d: &Directive) -> Result<(), Fail> {
        match d.name.as_str() {
            "hls" => put(&mut self.enabled, flag(d)?, d),
            "hls_path" => put(&mut self.path, PathBuf::from(text(d)?), d),
            "hls_fragment" => put(&mut self.fragment, time(d)?, d),
            "hls_max_fragment" => put(&mut self.max_fragment, time(d)?, d),
            "hls_playlist_length" => put(&mut self.playlist_length, time(d)?, d),
            "hls_muxdelay" => put(&mut self.muxdelay, time(d)?, d),
            "hls_sync" => put(&mut self.sync, time(d)?, d),
            "hls_continuous" => put(&mut self.continuous, flag(d)?, d),
            "hls_nested" => put(&mut self.nested, flag(d)?, d),
            "hls_fragment_naming" => put(&mut self.fragment_naming, naming(d)?, d),
            "hls_fragment_naming_granularity" => put(&mut self.fragment_naming_granularity, number(d)?, d),
            "hls_fragment_slicing" => put(&mut self.fragment_slicing, slicing(d)?, d),
            "hls_type" => put(&mut self.playlist_type, playlist_type(d)?, d),
            "hls_max_audio_delay" => put(&mut self.max_audio_delay, time(d)?, d),
            "hls_audio_buffer_size" => put(&mut self.audio_buffer_size, size(d)?, d),
            "hls_cleanup" => put(&mut self.cleanup, flag(d)?, d),
            "hls_variant" => {
                self.variants.get_or_insert_with(Vec::new).push(variant(d)?);
                Ok(())
            }
            "hls_base_url" => put(&mut self.base_url, text(d)?, d),
            "hls_keys" => put(&mut self.keys, flag(d)?, d),
            "hls_key_path" => put(&mut self.key_path, PathBuf::from(text(d)?), d),
            "hls_key_url" => put(&mut self.key_url, text(d)?, d),
            "hls_fragments_per_key" => put(&mut self.fragments_per_key, number(d)?, d),
            "hls_fragment_type" => put(&mut self.fragment_type, fragment_type(d)?, d),
            "hls_low_latency" => put(&mut self.low_latency, flag(d)?, d),
            "hls_part_duration" => put(&mut self.part_duration, part_duration(d)?, d),
            "hls_cors" => put(&mut self.cors, cors(d)?, d),
            other => Err(Fail::new(d.span, format!("directive \"{other}\" is not handled by hls"))),
        }
    }

    /// Fills what this level leaves unset from the enclosing level (nginx's merge).
    pub(crate) fn inherit(&self, outer: &Self) -> Self {
        HlsLayer {
            enabled: self.enabled.or(outer.enabled),
            path: self.path.clone().or_else(|| outer.path.clone()),
            fragment: self.fragment.or(outer.fragment),
            max_fragment: self.max_fragment.or(outer.max_fragment),
            playlist_length: self.playlist_length.or(outer.playlist_length),
            muxdelay: self.muxdelay.or(outer.muxdelay),
            sync: self.sync.or(outer.sync),
            continuous: self.continuous.or(outer.continuous),
            nested: self.nested.or(outer.nested),
            fragment_naming: self.fragment_naming.or(outer.fragment_naming),
            fragment_naming_granularity: self.fragment_naming_granularity.or(outer.fragment_naming_granularity),
            fragment_slicing: self.fragment_slicing.or(outer.fragment_slicing),
            playlist_type: self.playlist_type.or(outer.playlist_type),
            max_audio_delay: self.max_audio_delay.or(outer.max_audio_delay),
            audio_buffer_size: self.audio_buffer_size.or(outer.audio_buffer_size),
            cleanup: self.cleanup.or(outer.cleanup),
            variants: self.variants.clone().or_else(|| outer.variants.clone()),
            base_url: self.base_url.clone().or_else(|| outer.base_url.clone()),
            keys: self.keys.or(outer.keys),
            key_path: self.key_path.clone().or_else(|| outer.key_path.clone()),
            key_url: self.key_url.clone().or_else(|| outer.key_url.clone()),
            fragments_per_key: self.fragments_per_key.or(outer.fragments_per_key),
            fragment_type: self.fragment_type.or(outer.fragment_type),
            low_latency: self.low_latency.or(outer.low_latency),
            part_duration: self.part_duration.or(outer.part_duration),
            cors: self.cors.clone().or_else(|| outer.cors.clone()),
        }
    }

    /// Applies the defaults (nginx-rtmp's `ngx_rtmp_hls_merge_app_conf`).
    pub(crate) fn build(&self) -> HlsConf {
        let fragment = self.fragment.unwrap_or(Duration::from_secs(5));
        let non_empty = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        HlsConf {
            enabled: self.enabled.unwrap_or(false),
            path: non_empty(&self.path),
            fragment,
            max_fragment: self.max_fragment.unwrap_or(fragment * 10),
            playlist_length: self.playlist_length.unwrap_or(Duration::from_secs(30)),
            muxdelay: self.muxdelay.unwrap_or(Duration::from_millis(700)),
            sync: self.sync.unwrap_or(Duration::from_millis(2)),
            continuous: self.continuous.unwrap_or(true),
            nested: self.nested.unwrap_or(false),
            fragment_naming: self.fragment_naming.unwrap_or(HlsNaming::Sequential),
            fragment_naming_granularity: self.fragment_naming_granularity.unwrap_or(0),
            fragment_slicing: self.fragment_slicing.unwrap_or(HlsSlicing::Plain),
            playlist_type: self.playlist_type.unwrap_or(HlsType::Live),
            max_audio_delay: self.max_audio_delay.unwrap_or(Duration::from_millis(300)),
            audio_buffer_size: self.audio_buffer_size.unwrap_or(1024 * 1024),
            cleanup: self.cleanup.unwrap_or(true),
            variants: self.variants.clone().unwrap_or_default(),
            base_url: self.base_url.clone().unwrap_or_default(),
            keys: self.keys.unwrap_or(false),
            key_path: non_empty(&self.key_path),
            key_url: self.key_url.clone().unwrap_or_default(),
            fragments_per_key: self.fragments_per_key.unwrap_or(0),
            fragment_type: self.fragment_type.unwrap_or(HlsFragmentType::Mpegts),
            low_latency: self.low_latency.unwrap_or(false),
            part_duration: self.part_duration.unwrap_or(Duration::from_millis(200)),
            cors: self.cors.clone().unwrap_or_default(),
        }
    }
}

impl HlsConf {
    /// Settings that cannot work together, once merged for an application.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.path.is_none() {
            return Err("\"hls on\" needs \"hls_path\"".into());
        }
        if self.keys && self.low_latency {
            return Err("\"hls_keys\" cannot be combined with \"hls_low_latency\" (parts are not encrypted)".into());
        }
        if self.fragment.is_zero() {
            return Err("\"hls_fragment\" must be above zero".into());
        }
        Ok(())
    }
}

impl Default for HlsConf {
    fn default() -> Self {
        HlsLayer::default().build()
    }
}

fn naming(d: &Directive) -> Result<HlsNaming, Fail> {
    let options =
        [("sequential", HlsNaming::Sequential), ("timestamp", HlsNaming::Timestamp), ("system", HlsNaming::System)];
    one_of(d, first(d)?, &options)
}

fn slicing(d: &Directive) -> Result<HlsSlicing, Fail> {
    one_of(d, first(d)?, &[("plain", HlsSlicing::Plain), ("aligned", HlsSlicing::Aligned)])
}

fn playlist_type(d: &Directive) -> Result<HlsType, Fail> {
    one_of(d, first(d)?, &[("live", HlsType::Live), ("event", HlsType::Event)])
}

fn fragment_type(d: &Directive) -> Result<HlsFragmentType, Fail> {
    one_of(d, first(d)?, &[("mpegts", HlsFragmentType::Mpegts), ("fmp4", HlsFragmentType::Fmp4)])
}

/// `*`, `off`, or one origin: `http[s]://HOST[:PORT]`, nothing else (it becomes a header value).
fn cors(d: &Directive) -> Result<HlsCors, Fail> {
    let arg = first(d)?;
    match arg.value.as_str() {
        "*" => return Ok(HlsCors::Any),
        "off" => return Ok(HlsCors::Off),
        _ => {}
    }
    let host = arg.value.strip_prefix("https://").or_else(|| arg.value.strip_prefix("http://"));
    match host {
        Some(h) if !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c)) => {
            Ok(HlsCors::Origin(arg.value.clone()))
        }
        _ => Err(invalid(d, arg, "*, off, or an origin like https://player.example")),
    }
}

/// Parts shorter than a frame or longer than a typical segment make no sense.
fn part_duration(d: &Directive) -> Result<Duration, Fail> {
    let t = time(d)?;
    if !(Duration::from_millis(50)..=Duration::from_secs(5)).contains(&t) {
        let arg = first(d)?;
        return Err(invalid(d, arg, "a part duration from 50ms to 5s"));
    }
    Ok(t)
}

impl super::AppConf {
    /// The file name, in `hls_path`, of the transcode ladder's master playlist of source
    /// `name`, when this application writes one: `transcode` lines, `hls on`, and no
    /// `hls_variant` lines (those are used as given and the ladder adds no master). Nested
    /// media playlists are `NAME/index.m3u8`, so the master takes `NAME.m3u8`; flat ones take
    /// `NAME.m3u8` themselves, so the master is `NAME_abr.m3u8`.
    pub fn ladder_master_file(&self, name: &str) -> Option<String> {
        let writes = self.hls.enabled && self.hls.variants.is_empty() && !self.transcode.renditions.is_empty();
        let file = if self.hls.nested { format!("{name}.m3u8") } else { format!("{name}_abr.m3u8") };
        writes.then_some(file)
    }

    /// The HTTP path of the ladder's master playlist of source `name` (`/hls/NAME.m3u8`,
    /// `/hls/NAME_abr.m3u8`), when this application writes one that sluice serves.
    pub fn ladder_url_path(&self, name: &str) -> Option<String> {
        let dir = super::http::served_name(self.hls.path.as_deref()?)?;
        Some(format!("/{dir}/{}", self.ladder_master_file(name)?))
    }
}

/// An empty suffix would make every stream a variant of itself (its master playlist would be its
/// own media playlist).
fn variant(d: &Directive) -> Result<HlsVariant, Fail> {
    let arg = first(d)?;
    if arg.value.is_empty() {
        return Err(invalid(d, arg, "a non-empty stream name suffix"));
    }
    let suffix = arg.value.clone();
    let params = d.args[1..].iter().map(|a| a.value.clone()).collect();
    Ok(HlsVariant { suffix, params })
}

/// Whether `app` has HLS and DASH share one set of CMAF segments (`dash::shared`): HLS with
/// `hls_fragment_type fmp4` and no `hls_keys` (encrypted segments cannot serve DASH), and DASH,
/// both with a path. (Variant streams stay apart: `dash::shared::applies`.)
pub(crate) fn shares_cmaf(app: &super::AppConf) -> bool {
    let hls = &app.hls;
    hls.enabled
        && hls.path.is_some()
        && hls.fragment_type == HlsFragmentType::Fmp4
        && !hls.keys
        && app.dash.enabled
        && app.dash.path.is_some()
}

/// `-t` warnings where the segments are shared: a `dash_fragment` that differs from
/// `hls_fragment` (they are cut by `hls_fragment`); `dash_low_latency` without
/// `hls_low_latency` (DASH's chunks are the LL-HLS parts: without them the MPD is not
/// low-latency), and a `dash_part_duration` that differs from `hls_part_duration`.
pub(crate) fn shared_report(apps: &[&super::AppConf]) -> Vec<String> {
    let mut lines = Vec::new();
    for a in apps.iter().filter(|a| shares_cmaf(a)) {
        let (dash, hls) = (&a.dash, &a.hls);
        if dash.fragment != hls.fragment {
            lines.push(format!(
                "sluice: [warn] application \"{}\": \"dash_fragment\" {:?} is not used: HLS (fmp4) and DASH share one set of segments, cut by \"hls_fragment\" {:?}",
                a.name, dash.fragment, hls.fragment
            ));
        }
        if dash.low_latency && !hls.low_latency {
            lines.push(format!(
                "sluice: [warn] application \"{}\": \"dash_low_latency\" needs \"hls_low_latency on\" here: HLS (fmp4) and DASH share one set of segments, whose LL-HLS parts are DASH's chunks; the MPD is not low-latency",
                a.name
            ));
        } else if dash.low_latency && dash.part_duration != hls.part_duration {
            lines.push(format!(
                "sluice: [warn] application \"{}\": \"dash_part_duration\" {:?} is not used: DASH's chunks are the shared segments' LL-HLS parts, of \"hls_part_duration\" {:?}",
                a.name, dash.part_duration, hls.part_duration
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn shared_segments_warn_about_an_unused_dash_fragment() {
        let app = |body: &str| {
            crate::config::test_app(&format!("hls on; hls_path /tmp/h; dash on; dash_path /tmp/d; {body}"))
        };
        let shared = app("hls_fragment_type fmp4; hls_fragment 2s; dash_fragment 4s;");
        assert!(super::shares_cmaf(&shared));
        let lines = super::shared_report(&[&shared]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("\"dash_fragment\" 4s is not used") && lines[0].contains("\"hls_fragment\" 2s"),
            "{lines:?}"
        );
        let same = app("hls_fragment_type fmp4; hls_fragment 2s; dash_fragment 2s;");
        assert!(super::shared_report(&[&same]).is_empty());
        let ts = app("hls_fragment 2s; dash_fragment 4s;");
        let keys = app("hls_fragment_type fmp4; hls_keys on; dash_fragment 4s;");
        assert!(!super::shares_cmaf(&ts) && !super::shares_cmaf(&keys));
        assert!(super::shared_report(&[&ts, &keys]).is_empty(), "MPEG-TS or encrypted HLS: DASH packages itself");
    }

    #[test]
    fn shared_low_latency_dash_needs_ll_hls_parts_and_says_so() {
        let app = |body: &str| {
            crate::config::test_app(&format!(
                "hls on; hls_path /tmp/h; hls_fragment_type fmp4; dash on; dash_path /tmp/d; {body}"
            ))
        };
        let alone = app("dash_low_latency on;");
        let lines = super::shared_report(&[&alone]);
        assert!(
            lines.len() == 1 && lines[0].contains("\"dash_low_latency\" needs \"hls_low_latency on\""),
            "{lines:?}"
        );
        assert!(crate::dash::shared::low_latency(&alone).is_none());
        let both = app("hls_low_latency on; hls_part_duration 300ms; dash_low_latency on;");
        let lines = super::shared_report(&[&both]);
        assert!(lines.len() == 1 && lines[0].contains("\"dash_part_duration\" 200ms is not used"), "{lines:?}");
        let ll = crate::dash::shared::low_latency(&both).expect("low-latency from the parts");
        assert_eq!((ll.part_ms, ll.availability_offset_ms), (300, 4700), "hls_part_duration, hls_fragment 5s");
        let same = app("hls_low_latency on; dash_low_latency on;");
        assert!(super::shared_report(&[&same]).is_empty());
        assert!(crate::dash::shared::low_latency(&app("hls_low_latency on;")).is_none(), "DASH opts in");
    }

    #[test]
    fn hls_variant_needs_a_suffix() {
        let err =
            Config::parse("rtmp { server { application a { hls_variant \"\" BANDWIDTH=1; } } }", "t").unwrap_err();
        assert!(err.to_string().contains("a non-empty stream name suffix"), "{err}");
        assert!(Config::parse("rtmp { server { application a { hls_variant _hi BANDWIDTH=1; } } }", "t").is_ok());
    }

    #[test]
    fn the_ladder_master_is_named_apart_from_the_media_playlists() {
        let app = |body: &str| {
            let text = format!("rtmp {{ server {{ application a {{ hls_path /tmp/hls; {body} }} }} }}");
            Config::parse(&text, "t").unwrap().servers[0].apps[0].clone()
        };
        let nested = app("hls on; hls_nested on; transcode 480p 800k;");
        assert_eq!(nested.ladder_master_file("cam").as_deref(), Some("cam.m3u8"));
        assert_eq!(nested.ladder_url_path("cam").as_deref(), Some("/hls/cam.m3u8"));
        let flat = app("hls on; transcode 480p 800k;");
        assert_eq!(flat.ladder_url_path("cam").as_deref(), Some("/hls/cam_abr.m3u8"));
        // hls_variant lines win; no HLS or no ladder, no master.
        assert_eq!(app("hls on; transcode 480p 800k; hls_variant _480p;").ladder_master_file("cam"), None);
        assert_eq!(app("hls off; transcode 480p 800k;").ladder_master_file("cam"), None);
        assert_eq!(app("hls on;").ladder_master_file("cam"), None);
    }
}

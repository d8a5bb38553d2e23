//! sluice's built-in transcode ladder (no nginx-rtmp equivalent): each `transcode` line of an
//! application is one rendition that [`crate::transcode`] makes of every stream published
//! there, with one supervised ffmpeg per stream.
//!
//! | directive | contexts | default | meaning |
//! |---|---|---|---|
//! | `transcode HEIGHTp BITRATE [audio=BITRATE] [fps=N]` | app | — | one rendition, published as `NAME_HEIGHTp` |
//! | `transcode_encoder NAME` | rtmp, server, app | `libx264` | ffmpeg's video encoder (`h264_nvenc`, `h264_vaapi`, `h264_qsv`, ...) |
//! | `transcode_preset NAME` | rtmp, server, app | `veryfast` for libx264/libx265, else the encoder's own | the encoder's `-preset` |
//! | `transcode_audio_bitrate BITRATE` | rtmp, server, app | `128k` | AAC bitrate of renditions without `audio=` |
//! | `transcode_max N` | rtmp, server, app | `4` | most streams transcoded at once in the whole server; a stream past it is not transcoded (logged once) |
//! | `transcode_ffmpeg PATH` | rtmp, server, app | `ffmpeg` | the program (searched on `PATH` without a `/`); `sluice -t` warns when it is not found |
//!
//! Bitrates are bits per second with an optional `k` (1000) or `m` (1000000) suffix.
//! Heights are even (H.264 in 4:2:0 needs it), 64 to 4320; at most [`MAX_RENDITIONS`] lines.

use nginx_conf::{Arg, Directive};

use super::value::{
    ctx::{APP, RSA},
    first, invalid, put, spec, text, Args, DirectiveSpec, Fail, Kind,
};

const ONE: Args = Args::Exactly(1);

/// The transcode directive table.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    spec("transcode", APP, Args::Between(2, 4), Kind::Text, ""),
    spec("transcode_encoder", RSA, ONE, Kind::Text, "libx264"),
    spec("transcode_preset", RSA, ONE, Kind::Text, "veryfast"),
    spec("transcode_audio_bitrate", RSA, ONE, Kind::Size, "128k"),
    spec("transcode_max", RSA, ONE, Kind::Number, "4"),
    spec("transcode_ffmpeg", RSA, ONE, Kind::Text, "ffmpeg"),
];

/// Most `transcode` lines in one application (each is one encoder in the stream's ffmpeg and
/// one pipe to read).
pub const MAX_RENDITIONS: usize = 8;
/// `transcode_max`'s default.
pub const DEFAULT_MAX: u32 = 4;
const DEFAULT_AUDIO: u64 = 128_000;
const MIN_HEIGHT: u32 = 64;
const MAX_HEIGHT: u32 = 4320;
/// 100 kbit/s to 100 Mbit/s of video; 8 kbit/s to 512 kbit/s of audio.
const VIDEO_BITRATES: (u64, u64) = (10_000, 100_000_000);
const AUDIO_BITRATES: (u64, u64) = (8_000, 512_000);

/// One `transcode` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    /// The output height in pixels (the width keeps the aspect ratio, rounded to even).
    pub height: u32,
    /// Video bitrate, bits per second.
    pub video_bitrate: u64,
    /// `audio=`: audio bitrate, bits per second (else `transcode_audio_bitrate`).
    pub audio_bitrate: Option<u64>,
    /// `fps=`: the most frames per second (lower source rates are kept).
    pub fps: Option<u32>,
}

impl Rendition {
    /// `720p`: the suffix of the rendition's stream name (`NAME_720p`).
    pub fn label(&self) -> String {
        format!("{}p", self.height)
    }
}

/// The transcode settings of one application, merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscodeConf {
    /// The renditions, in file order (empty: no transcoding).
    pub renditions: Vec<Rendition>,
    /// `transcode_encoder`.
    pub encoder: String,
    /// `transcode_preset`; by default `veryfast` for libx264 and libx265, none (the encoder's
    /// own) for the others.
    pub preset: Option<String>,
    /// `transcode_audio_bitrate`, bits per second.
    pub audio_bitrate: u64,
    /// `transcode_max`.
    pub max: u32,
    /// `transcode_ffmpeg`.
    pub ffmpeg: String,
}

impl Default for TranscodeConf {
    fn default() -> Self {
        TranscodeLayer::default().build()
    }
}

impl TranscodeConf {
    /// Whether `name` is one of this application's rendition streams (`*_720p` for a
    /// `transcode 720p` line): those are never transcoded again.
    pub fn is_rendition_name(&self, name: &str) -> bool {
        self.rendition_of(name).is_some()
    }

    /// The rendition `name` is (`cam_480p`: the `transcode 480p` line) and its source's name
    /// (`cam`; empty for `_480p`).
    pub fn rendition_of<'a>(&self, name: &'a str) -> Option<(&Rendition, &'a str)> {
        self.renditions.iter().find_map(|r| Some((r, name.strip_suffix(&r.label())?.strip_suffix('_')?)))
    }
}

/// Transcode settings as written at one level; `None` means "not set here".
#[derive(Debug, Clone, Default)]
pub(crate) struct TranscodeLayer {
    renditions: Vec<Rendition>,
    encoder: Option<String>,
    preset: Option<String>,
    audio_bitrate: Option<u64>,
    max: Option<u32>,
    ffmpeg: Option<String>,
}

impl TranscodeLayer {
    /// Applies one directive from [`DIRECTIVES`] (already checked for context and shape).
    pub(crate) fn set(&mut self, d: &Directive) -> Result<(), Fail> {
        match d.name.as_str() {
            "transcode" => {
                let r = rendition(d)?;
                if self.renditions.iter().any(|o| o.height == r.height) {
                    return Err(Fail::new(d.span, format!("duplicate \"transcode {}\"", r.label())));
                }
                if self.renditions.len() >= MAX_RENDITIONS {
                    return Err(Fail::new(d.span, format!("at most {MAX_RENDITIONS} \"transcode\" lines")));
                }
                self.renditions.push(r);
                Ok(())
            }
            "transcode_encoder" => put(&mut self.encoder, word(d)?, d),
            "transcode_preset" => put(&mut self.preset, word(d)?, d),
            "transcode_audio_bitrate" => {
                let arg = first(d)?;
                put(&mut self.audio_bitrate, bitrate(d, arg, AUDIO_BITRATES)?, d)
            }
            "transcode_max" => {
                let n = super::value::number_in(d, 0, 100_000)?;
                put(&mut self.max, n, d)
            }
            "transcode_ffmpeg" => put(&mut self.ffmpeg, text(d)?, d),
            other => Err(Fail::new(d.span, format!("directive \"{other}\" is not handled by transcode"))),
        }
    }

    /// Fills what this level leaves unset from the enclosing level. Renditions are written in
    /// applications only, so they are this level's.
    pub(crate) fn inherit(&self, outer: &Self) -> Self {
        TranscodeLayer {
            renditions: self.renditions.clone(),
            encoder: self.encoder.clone().or_else(|| outer.encoder.clone()),
            preset: self.preset.clone().or_else(|| outer.preset.clone()),
            audio_bitrate: self.audio_bitrate.or(outer.audio_bitrate),
            max: self.max.or(outer.max),
            ffmpeg: self.ffmpeg.clone().or_else(|| outer.ffmpeg.clone()),
        }
    }

    /// Applies the defaults.
    pub(crate) fn build(&self) -> TranscodeConf {
        let encoder = self.encoder.clone().unwrap_or_else(|| "libx264".into());
        TranscodeConf {
            renditions: self.renditions.clone(),
            encoder: encoder.clone(),
            preset: self.preset.clone().or_else(|| default_preset(&encoder).map(str::to_owned)),
            audio_bitrate: self.audio_bitrate.unwrap_or(DEFAULT_AUDIO),
            max: self.max.unwrap_or(DEFAULT_MAX),
            ffmpeg: self.ffmpeg.clone().unwrap_or_else(|| "ffmpeg".into()),
        }
    }
}

/// `veryfast` for the x264/x265 software encoders (whose preset names those are); hardware
/// encoders keep their own default.
fn default_preset(encoder: &str) -> Option<&'static str> {
    matches!(encoder, "libx264" | "libx265").then_some("veryfast")
}

/// `HEIGHTp BITRATE [audio=BITRATE] [fps=N]`.
fn rendition(d: &Directive) -> Result<Rendition, Fail> {
    let h = &d.args[0];
    let height = h
        .value
        .strip_suffix('p')
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (MIN_HEIGHT..=MAX_HEIGHT).contains(n) && n % 2 == 0)
        .ok_or_else(|| invalid(d, h, &format!("an even height from {MIN_HEIGHT}p to {MAX_HEIGHT}p, like 720p")))?;
    let video_bitrate = bitrate(d, &d.args[1], VIDEO_BITRATES)?;
    let mut r = Rendition { height, video_bitrate, audio_bitrate: None, fps: None };
    for arg in &d.args[2..] {
        match arg.value.split_once('=') {
            Some(("audio", _)) if r.audio_bitrate.is_none() => {
                r.audio_bitrate = Some(bitrate(d, &value_of(arg), AUDIO_BITRATES)?);
            }
            Some(("fps", v)) if r.fps.is_none() => {
                let fps = v.parse::<u32>().ok().filter(|f| (1..=240).contains(f));
                r.fps = Some(fps.ok_or_else(|| invalid(d, arg, "fps=N with N from 1 to 240"))?);
            }
            _ => return Err(invalid(d, arg, "\"audio=BITRATE\" or \"fps=N\", each at most once")),
        }
    }
    Ok(r)
}

/// The value of a `key=value` argument, as an argument of its own (for error messages).
fn value_of(arg: &Arg) -> Arg {
    let value = arg.value.split_once('=').map_or("", |(_, v)| v).to_owned();
    Arg { value, span: arg.span }
}

/// `2500k`, `2m`, `800000`: bits per second within `lo..=hi`.
fn bitrate(d: &Directive, arg: &Arg, (lo, hi): (u64, u64)) -> Result<u64, Fail> {
    let v = arg.value.to_ascii_lowercase();
    let (digits, unit) = match v.as_bytes().last() {
        Some(b'k') => (&v[..v.len() - 1], 1_000),
        Some(b'm') => (&v[..v.len() - 1], 1_000_000),
        _ => (v.as_str(), 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| invalid(d, arg, &format!("a bitrate like 2500k or 2m, from {} to {}", lo / 1000 * 1000, hi)))
}

/// An encoder or preset name: letters, digits and `_` only, so it cannot be read as an
/// ffmpeg option.
fn word(d: &Directive) -> Result<String, Fail> {
    let arg = first(d)?;
    let ok = !arg.value.is_empty() && arg.value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(invalid(d, arg, "a name of letters, digits and \"_\""));
    }
    Ok(arg.value.clone())
}

/// What `-t` warns about: a `transcode_ffmpeg` program not found now, once per program.
pub(crate) fn report(confs: &[&TranscodeConf]) -> Vec<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for c in confs.iter().filter(|c| !c.renditions.is_empty()) {
        if !seen.insert(c.ffmpeg.clone()) || super::program_found(&c.ffmpeg, &path) {
            continue;
        }
        let where_ = if c.ffmpeg.contains('/') { String::new() } else { format!(" on PATH ({path})") };
        out.push(format!(
            "sluice: [warn] \"transcode_ffmpeg\" program \"{}\" is not found{where_} now: streams will not be transcoded",
            c.ffmpeg
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn app(body: &str) -> Result<TranscodeConf, String> {
        let c = Config::parse(&format!("rtmp {{ server {{ application live {{ {body} }} }} }}"), "t.conf")
            .map_err(|e| e.to_string())?;
        Ok(c.servers[0].apps[0].transcode.clone())
    }

    #[test]
    fn defaults_and_a_ladder() {
        let c = app("transcode 720p 2500k; transcode 480p 1m audio=96k fps=30;").unwrap();
        assert_eq!(
            c.renditions,
            [
                Rendition { height: 720, video_bitrate: 2_500_000, audio_bitrate: None, fps: None },
                Rendition { height: 480, video_bitrate: 1_000_000, audio_bitrate: Some(96_000), fps: Some(30) },
            ]
        );
        assert_eq!((c.encoder.as_str(), c.preset, c.ffmpeg.as_str()), ("libx264", Some("veryfast".into()), "ffmpeg"));
        assert_eq!((c.audio_bitrate, c.max), (128_000, 4));
        assert!(app("").unwrap().renditions.is_empty());
    }

    #[test]
    fn options_inherit_from_outer_levels() {
        let text = "rtmp { transcode_max 1; transcode_encoder h264_nvenc; server { transcode_preset p4; application a { transcode 360p 600k; transcode_audio_bitrate 64k; transcode_ffmpeg /opt/ff; } } }";
        let c = Config::parse(text, "t").unwrap().servers[0].apps[0].transcode.clone();
        assert_eq!((c.max, c.encoder.as_str(), c.preset.as_deref()), (1, "h264_nvenc", Some("p4")));
        assert_eq!((c.audio_bitrate, c.ffmpeg.as_str()), (64_000, "/opt/ff"));
    }

    #[test]
    fn bad_lines_are_config_errors() {
        for (body, want) in [
            ("transcode 721p 1m;", "an even height"),
            ("transcode 720 1m;", "an even height"),
            ("transcode 720p fast;", "a bitrate like"),
            ("transcode 720p 1k;", "a bitrate like"),
            ("transcode 720p 1m video=3;", "\"audio=BITRATE\" or \"fps=N\""),
            ("transcode 720p 1m fps=0;", "fps=N"),
            ("transcode 720p 1m; transcode 720p 2m;", "duplicate \"transcode 720p\""),
            ("transcode_encoder -y;", "letters, digits"),
            ("transcode_preset \"a b\";", "letters, digits"),
            ("transcode 720p;", "invalid number of arguments"),
        ] {
            let e = app(body).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
        let e = Config::parse("rtmp { server { transcode 720p 1m; } }", "t").unwrap_err().to_string();
        assert!(e.contains("not allowed here"), "{e}");
    }

    #[test]
    fn rendition_names_are_recognised() {
        let c = app("transcode 720p 2m; transcode 480p 1m;").unwrap();
        assert!(c.is_rendition_name("cam_720p") && c.is_rendition_name("a_b_480p"));
        assert!(!c.is_rendition_name("cam") && !c.is_rendition_name("cam720p") && !c.is_rendition_name("cam_360p"));
        assert!(!c.is_rendition_name("_720p_x"));
        assert_eq!(c.rendition_of("a_b_480p").map(|(r, base)| (r.height, base)), Some((480, "a_b")));
        assert_eq!(c.rendition_of("_720p").map(|(r, base)| (r.height, base)), Some((720, "")));
    }

    #[test]
    fn report_warns_about_a_missing_ffmpeg() {
        let c = app("transcode 360p 600k; transcode_ffmpeg no-such-ffmpeg-sluice;").unwrap();
        let lines = report(&[&c, &c]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("\"transcode_ffmpeg\" program \"no-such-ffmpeg-sluice\" is not found on PATH"));
        let unused = app("transcode_ffmpeg no-such-ffmpeg-sluice;").unwrap();
        assert!(report(&[&unused]).is_empty(), "no ladder, no warning");
    }
}

//! Master (multivariant) playlists for `hls_variant`: nginx-rtmp's `#EXT-X-STREAM-INF` lines
//! (`ngx_rtmp_hls_write_variant_playlist`), with what a player needs filled in from each
//! variant's real stream: RFC 6381 `CODECS`, `RESOLUTION`, `FRAME-RATE`, `AVERAGE-BANDWIDTH`
//! (RFC 8216 §4.3.4.2). A parameter the configuration gives wins and is never repeated. A
//! variant whose video and audio are split ([`AudioRendition`]) is listed by its video playlist
//! with an audio group of its own.
//!
//! [`Meter`] measures a variant's frame rate and segment bit rates; codec strings come from the
//! sequence headers the segmenter carries ([`crate::Segmenter::media_info`]). Nothing here reads a
//! clock or a file.

use std::collections::VecDeque;
use std::fmt::Write;

use flv::{AudioCodec, VideoCodec};

use crate::Container;

/// What a variant's stream is, as the segmenter carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaInfo {
    /// RFC 6381 codec strings, video first (`avc1.64001f`, `mp4a.40.2`).
    pub codecs: Vec<String>,
    /// Display size of the video, when there is video.
    pub resolution: Option<(u32, u32)>,
}

/// A variant whose video and audio are separate media playlists (split CMAF tracks, shared
/// with DASH): its audio playlist is an `#EXT-X-MEDIA` audio rendition in a group of its own,
/// which its `#EXT-X-STREAM-INF` names (`AUDIO=`). One group per variant, not one for all:
/// a variant's audio shares its video's timeline (one segmenter, the same sequence numbers),
/// while `hls_variant` streams are published apart; so audio has to switch with the video
/// (what hls.js 1.x does: its audio tracks are the active level's group's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudioRendition {
    /// `GROUP-ID`, unique in the master playlist.
    pub group: String,
    /// The audio media playlist's URI.
    pub uri: String,
    /// `CHANNELS`.
    pub channels: u16,
}

/// One `#EXT-X-STREAM-INF` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// The `hls_variant` parameters, verbatim (`BANDWIDTH=160000`).
    pub params: Vec<String>,
    /// The media playlist's URI (`hls_base_url` + `NAME_low/index.m3u8`).
    pub uri: String,
    /// What the stream showed so far.
    pub media: MediaInfo,
    /// Measured frame rate, frames a second.
    pub frame_rate: Option<f64>,
    /// Measured peak segment bit rate, bits a second.
    pub peak_bandwidth: Option<u64>,
    /// Measured average segment bit rate, bits a second.
    pub average_bandwidth: Option<u64>,
    /// Split: `uri` is the video playlist, this the audio one.
    pub audio: Option<AudioRendition>,
}

impl Variant {
    /// `BANDWIDTH`: the configured value, else the measured peak.
    pub fn bandwidth(&self) -> Option<u64> {
        match self.configured("BANDWIDTH") {
            Some(v) => v.trim_matches('"').parse().ok(),
            None => self.peak_bandwidth,
        }
    }

    /// The value of attribute `name` in the configured parameters.
    fn configured(&self, name: &str) -> Option<&str> {
        self.params.iter().flat_map(|p| attributes(p)).find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The attribute list: nginx-rtmp's (`PROGRAM-ID=1` while the version allows it, the
    /// parameters joined with `,`), then measured attributes the configuration left out.
    fn attributes(&self, version: u8) -> String {
        let mut out = String::new();
        let mut add = |attr: &str| {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(attr);
        };
        // RFC 8216 §7: PROGRAM-ID was removed in version 6.
        if version < 6 && self.configured("PROGRAM-ID").is_none() {
            add("PROGRAM-ID=1");
        }
        let given = |name: &str| self.configured(name).is_some();
        if !given("BANDWIDTH") {
            if let Some(b) = self.peak_bandwidth {
                add(&format!("BANDWIDTH={b}"));
            }
        }
        for p in &self.params {
            add(p);
        }
        // An average above the configured peak would contradict it (the configured value wins).
        let peak = self.bandwidth().unwrap_or(u64::MAX);
        if let Some(b) = self.average_bandwidth.filter(|b| !given("AVERAGE-BANDWIDTH") && *b <= peak) {
            add(&format!("AVERAGE-BANDWIDTH={b}"));
        }
        if let Some((w, h)) = self.media.resolution.filter(|_| !given("RESOLUTION")) {
            add(&format!("RESOLUTION={w}x{h}"));
        }
        if !self.media.codecs.is_empty() && !given("CODECS") {
            add(&format!("CODECS=\"{}\"", self.media.codecs.join(",")));
        }
        if let Some(f) = self.frame_rate.filter(|_| !given("FRAME-RATE") && self.media.resolution.is_some()) {
            add(&format!("FRAME-RATE={f:.3}"));
        }
        if let Some(a) = self.audio.as_ref().filter(|_| !given("AUDIO")) {
            add(&format!("AUDIO=\"{}\"", a.group));
        }
        out
    }

    /// The `#EXT-X-MEDIA` line of its audio rendition, when split.
    fn audio_media(&self) -> Option<String> {
        let a = self.audio.as_ref()?;
        Some(format!(
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{}\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"{}\",URI=\"{}\"\n",
            a.group,
            a.channels.max(1),
            a.uri
        ))
    }
}

/// `NAME=VALUE` pairs of an attribute list, commas inside quoted strings kept.
fn attributes(list: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut pieces = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in list.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                pieces.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&list[start..]);
    pieces.into_iter().map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (k.trim(), v.trim())
    })
}

/// Renders the master playlist: `version` is the highest `#EXT-X-VERSION` of the variants'
/// media playlists (a master never claims less than what it leads to), variants ordered by
/// `BANDWIDTH` (ties keep their order), split variants' audio renditions first. Segments start
/// at keyframes, hence `#EXT-X-INDEPENDENT-SEGMENTS`.
pub fn render(variants: &[Variant], version: u8) -> String {
    let version = version.max(3);
    let mut sorted: Vec<&Variant> = variants.iter().collect();
    sorted.sort_by_key(|v| v.bandwidth().unwrap_or(u64::MAX));
    let mut out = String::with_capacity(64 + variants.len() * 320);
    out.push_str("#EXTM3U\n");
    let _ = writeln!(out, "#EXT-X-VERSION:{version}");
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    out.extend(sorted.iter().filter_map(|v| v.audio_media()));
    for v in sorted {
        let _ = writeln!(out, "#EXT-X-STREAM-INF:{}\n{}", v.attributes(version), v.uri);
    }
    out
}

/// `#EXT-X-RENDITION-REPORT` (RFC 8216bis §4.4.5.4) for another variant of the same master at
/// `position`, for a low-latency media playlist: the last part it has (`LAST-MSN`,
/// `LAST-PART`), or its last complete segment; `None` before it has either.
pub fn rendition_report(uri: &str, position: &crate::Position) -> Option<String> {
    let last = match position.open {
        Some((msn, parts)) if parts > 0 => format!("LAST-MSN={msn},LAST-PART={}", parts - 1),
        _ => format!("LAST-MSN={}", position.last_complete?),
    };
    Some(format!("#EXT-X-RENDITION-REPORT:URI=\"{uri}\",{last}\n"))
}

/// The RFC 6381 string of a video track from its configuration record (the sequence header's
/// payload); `None` when the record is too short.
pub fn video_codec(codec: VideoCodec, config: &[u8], container: Container) -> Option<String> {
    match codec {
        VideoCodec::Avc => {
            let b = config.get(1..4)?;
            Some(format!("avc1.{:02x}{:02x}{:02x}", b[0], b[1], b[2]))
        }
        VideoCodec::Hevc => hevc_codec(config, container),
        VideoCodec::Av1 => av1_codec(config),
        _ => None,
    }
}

/// ISO/IEC 14496-15 Annex E.3: `hvc1.[A-C]PROFILE.COMPAT.{L,H}LEVEL[.CONSTRAINTS]`. fMP4 uses the
/// `hvc1` sample entry; MPEG-TS carries the parameter sets in band (`hev1`).
fn hevc_codec(config: &[u8], container: Container) -> Option<String> {
    let b = config.get(1..13)?;
    let entry = if container == Container::Fmp4 { "hvc1" } else { "hev1" };
    let space = ["", "A", "B", "C"][usize::from(b[0] >> 6)];
    let tier = if b[0] & 0x20 != 0 { 'H' } else { 'L' };
    let compat = u32::from_be_bytes([b[1], b[2], b[3], b[4]]).reverse_bits();
    let mut s = format!("{entry}.{space}{}.{compat:X}.{tier}{}", b[0] & 0x1F, b[11]);
    let constraints = &b[5..11];
    let used = constraints.iter().rposition(|c| *c != 0).map_or(0, |i| i + 1);
    for c in &constraints[..used] {
        let _ = write!(s, ".{c:X}");
    }
    Some(s)
}

/// AV1-ISOBMFF "Codecs Parameter String": `av01.P.LLT.DD` from the `av1C` record.
fn av1_codec(config: &[u8]) -> Option<String> {
    let b = config.get(1..3)?;
    let (profile, level) = (b[0] >> 5, b[0] & 0x1F);
    let tier = if b[1] & 0x80 != 0 { 'H' } else { 'M' };
    let depth = match (b[1] & 0x40 != 0, b[1] & 0x20 != 0) {
        (true, true) => 12,
        (true, false) => 10,
        _ => 8,
    };
    Some(format!("av01.{profile}.{level:02}{tier}.{depth:02}"))
}

/// The audioObjectType an AAC AudioSpecificConfig starts with (ISO/IEC 14496-3 1.6.2.1; 5 for
/// explicitly signalled HE-AAC, where the codec string names SBR, not the core).
pub fn aac_object_type(config: &[u8]) -> Option<u8> {
    let first = *config.first()? >> 3;
    if first != 31 {
        return Some(first);
    }
    let b = config.get(..2)?;
    Some(32 + (((b[0] & 0x07) << 3) | (b[1] >> 5)))
}

/// The RFC 6381 string of an audio track; `aac_object_type` from its AudioSpecificConfig.
pub fn audio_codec(codec: AudioCodec, aac_object_type: Option<u8>) -> Option<String> {
    match codec {
        AudioCodec::Aac => Some(format!("mp4a.40.{}", aac_object_type?)),
        // MPEG-1/2 Layer III as HLS players name it.
        AudioCodec::Mp3 => Some("mp4a.40.34".into()),
        AudioCodec::Opus => Some("opus".into()),
        _ => None,
    }
}

/// Video frames the frame rate is measured over.
const FRAME_WINDOW: usize = 256;
/// Segments the bit rates are measured over.
const SEGMENT_WINDOW: usize = 32;
/// A gap between video frames this long (ms) is a pause or a jump, not a frame interval.
const MAX_FRAME_GAP_MS: u32 = 1000;
/// Frame rates a measured one is taken to be when the timestamps' millisecond rounding cannot
/// tell them apart.
const COMMON_RATES: &[f64] = &[23.976, 24.0, 25.0, 29.97, 30.0, 48.0, 50.0, 59.94, 60.0, 100.0, 119.88, 120.0];

/// Measures a variant as it is published: frame rate from video timestamps, bit rates from the
/// segments written. Bounded: the last [`FRAME_WINDOW`] frames and [`SEGMENT_WINDOW`] segments.
#[derive(Debug, Default, Clone)]
pub struct Meter {
    frames: VecDeque<u32>,
    /// (media sequence number, bits, seconds).
    segments: VecDeque<(u64, u64, f64)>,
}

impl Meter {
    /// A coded video frame with this RTMP timestamp (ms) was published.
    pub fn video_frame(&mut self, timestamp: u32) {
        if let Some(&last) = self.frames.back() {
            if timestamp <= last || timestamp - last > MAX_FRAME_GAP_MS {
                self.frames.clear();
            }
        }
        if self.frames.len() == FRAME_WINDOW {
            self.frames.pop_front();
        }
        self.frames.push_back(timestamp);
    }

    /// Segment `msn`, `bytes` lasting `seconds`, was written. A split stream writes a file per
    /// track for one segment: they add up (its rate is what video and audio take together).
    pub fn segment(&mut self, msn: u64, bytes: usize, seconds: f64) {
        if seconds <= 0.0 {
            return;
        }
        let bits = bytes as u64 * 8;
        if let Some(last) = self.segments.back_mut().filter(|s| s.0 == msn) {
            last.1 += bits;
            return;
        }
        if self.segments.len() == SEGMENT_WINDOW {
            self.segments.pop_front();
        }
        self.segments.push_back((msn, bits, seconds));
    }

    /// A new publisher: what the previous one sent says nothing about it.
    pub fn reset(&mut self) {
        self.frames.clear();
        self.segments.clear();
    }

    /// Frames a second, rounded to a common rate when the measurement cannot tell them apart.
    pub fn frame_rate(&self) -> Option<f64> {
        let (first, last) = (*self.frames.front()?, *self.frames.back()?);
        let span = f64::from(last.checked_sub(first).filter(|s| *s > 0)?);
        let rate = (self.frames.len() - 1) as f64 * 1000.0 / span;
        // Each end of the span may be off by a millisecond.
        let tolerance = rate * 2.0 / span;
        let common = COMMON_RATES
            .iter()
            .filter(|r| (*r - rate).abs() <= tolerance)
            .min_by(|a, b| (*a - rate).abs().total_cmp(&(*b - rate).abs()));
        Some(common.copied().unwrap_or((rate * 1000.0).round() / 1000.0))
    }

    /// The highest segment bit rate (RFC 8216 `BANDWIDTH`).
    pub fn peak_bandwidth(&self) -> Option<u64> {
        self.segments.iter().map(|(_, bits, s)| (*bits as f64 / s).ceil() as u64).max()
    }

    /// The average bit rate over the segments (RFC 8216 `AVERAGE-BANDWIDTH`).
    pub fn average_bandwidth(&self) -> Option<u64> {
        let bits: u64 = self.segments.iter().map(|(_, b, _)| b).sum();
        let seconds: f64 = self.segments.iter().map(|(_, _, s)| s).sum();
        (seconds > 0.0).then(|| (bits as f64 / seconds).ceil() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(params: &[&str], uri: &str) -> Variant {
        Variant {
            params: params.iter().map(|p| p.to_string()).collect(),
            uri: uri.into(),
            media: MediaInfo::default(),
            frame_rate: None,
            peak_bandwidth: None,
            average_bandwidth: None,
            audio: None,
        }
    }

    /// Split variants (CMAF shared with DASH): each lists its video playlist with an audio group
    /// of its own, whose `#EXT-X-MEDIA` names its audio playlist; CODECS keeps both codecs (RFC
    /// 8216 §4.3.4.2: every format in the variant and its renditions). A muxed variant beside
    /// them is listed as before.
    #[test]
    fn split_variants_list_their_video_playlist_and_an_audio_group_each() {
        let split = |params: &[&str], name: &str, group: &str| {
            let mut v = variant(params, &format!("{name}-video.m3u8"));
            v.media =
                MediaInfo { codecs: vec!["avc1.64001e".into(), "mp4a.40.2".into()], resolution: Some((640, 360)) };
            v.audio = Some(AudioRendition { group: group.into(), uri: format!("{name}-audio.m3u8"), channels: 2 });
            v
        };
        let v = [
            split(&["BANDWIDTH=900000"], "x_hi", "audio0"),
            split(&["BANDWIDTH=300000"], "x_lo", "audio1"),
            variant(&["BANDWIDTH=100000"], "x_muxed.m3u8"),
        ];
        assert_eq!(
            render(&v, 7),
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio1\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"x_lo-audio.m3u8\"\n\
             #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio0\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"x_hi-audio.m3u8\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=100000\nx_muxed.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=640x360,CODECS=\"avc1.64001e,mp4a.40.2\",AUDIO=\"audio1\"\nx_lo-video.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=900000,RESOLUTION=640x360,CODECS=\"avc1.64001e,mp4a.40.2\",AUDIO=\"audio0\"\nx_hi-video.m3u8\n"
        );
    }

    #[test]
    fn nginx_rtmp_lines_when_nothing_is_measured() {
        let v = [variant(&["BANDWIDTH=160000"], "x_low/index.m3u8")];
        assert_eq!(
            render(&v, 3),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:PROGRAM-ID=1,BANDWIDTH=160000\nx_low/index.m3u8\n"
        );
    }

    #[test]
    fn measured_attributes_fill_in_what_the_config_leaves_out_and_variants_sort_by_bandwidth() {
        let measured = |mut v: Variant| {
            v.media =
                MediaInfo { codecs: vec!["avc1.64001f".into(), "mp4a.40.2".into()], resolution: Some((640, 360)) };
            v.frame_rate = Some(25.0);
            v.peak_bandwidth = Some(700_123);
            v.average_bandwidth = Some(150_000);
            v
        };
        let v = [
            measured(variant(&["BANDWIDTH=640000", "RESOLUTION=1280x720"], "hi.m3u8")),
            measured(variant(&["BANDWIDTH=160000", "CODECS=\"avc1.42c01e,mp4a.40.5\""], "low.m3u8")),
            measured(variant(&[], "auto.m3u8")),
        ];
        let text = render(&v, 3);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[3],
            "#EXT-X-STREAM-INF:PROGRAM-ID=1,BANDWIDTH=160000,CODECS=\"avc1.42c01e,mp4a.40.5\",AVERAGE-BANDWIDTH=150000,RESOLUTION=640x360,FRAME-RATE=25.000"
        );
        assert_eq!(lines[4], "low.m3u8");
        assert_eq!(
            lines[5],
            "#EXT-X-STREAM-INF:PROGRAM-ID=1,BANDWIDTH=640000,RESOLUTION=1280x720,AVERAGE-BANDWIDTH=150000,CODECS=\"avc1.64001f,mp4a.40.2\",FRAME-RATE=25.000"
        );
        assert_eq!(
            lines[7],
            "#EXT-X-STREAM-INF:PROGRAM-ID=1,BANDWIDTH=700123,AVERAGE-BANDWIDTH=150000,RESOLUTION=640x360,CODECS=\"avc1.64001f,mp4a.40.2\",FRAME-RATE=25.000"
        );
        assert_eq!(lines[8], "auto.m3u8");
        assert_eq!(text.matches("BANDWIDTH=").count(), 6, "never repeated: {text}");
        let mut low = measured(variant(&["BANDWIDTH=400000"], "low.m3u8"));
        assert!(low.attributes(3).contains("AVERAGE-BANDWIDTH=150000"));
        low.params = vec!["BANDWIDTH=100000".into()];
        assert!(!low.attributes(3).contains("AVERAGE"), "not above the configured BANDWIDTH");
    }

    #[test]
    fn version_6_drops_program_id() {
        let v = [variant(&["BANDWIDTH=1"], "a/index.m3u8")];
        let text = render(&v, 6);
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:6\n"), "{text}");
        assert!(text.contains("#EXT-X-STREAM-INF:BANDWIDTH=1\n"), "{text}");
        let v = [variant(&["PROGRAM-ID=2", "BANDWIDTH=1"], "a.m3u8")];
        assert!(render(&v, 3).contains(":PROGRAM-ID=2,BANDWIDTH=1\n"), "the configured one wins");
    }

    #[test]
    fn rendition_reports() {
        use crate::Position;
        let p = Position { open: Some((7, 3)), last_complete: Some(6), ..Position::default() };
        assert_eq!(
            rendition_report("../x_hi/index.m3u8", &p).as_deref(),
            Some("#EXT-X-RENDITION-REPORT:URI=\"../x_hi/index.m3u8\",LAST-MSN=7,LAST-PART=2\n")
        );
        let p = Position { open: Some((7, 0)), last_complete: Some(6), ..Position::default() };
        assert_eq!(
            rendition_report("x_hi.m3u8", &p).as_deref(),
            Some("#EXT-X-RENDITION-REPORT:URI=\"x_hi.m3u8\",LAST-MSN=6\n")
        );
        assert_eq!(rendition_report("x_hi.m3u8", &Position::default()), None);
    }

    #[test]
    fn codec_strings() {
        let avc = [1, 0x64, 0x00, 0x1F, 0xFF];
        assert_eq!(video_codec(VideoCodec::Avc, &avc, Container::Ts).as_deref(), Some("avc1.64001f"));
        assert_eq!(video_codec(VideoCodec::Avc, &[1, 0x42], Container::Ts), None);
        // Main profile, level 3.1 (93), progressive/interlaced source flags: hvc1.1.6.L93.B0
        let hevc = [1, 0x01, 0x60, 0, 0, 0, 0xB0, 0, 0, 0, 0, 0, 93, 0xF0];
        assert_eq!(video_codec(VideoCodec::Hevc, &hevc, Container::Fmp4).as_deref(), Some("hvc1.1.6.L93.B0"));
        assert_eq!(video_codec(VideoCodec::Hevc, &hevc, Container::Ts).as_deref(), Some("hev1.1.6.L93.B0"));
        // Main 10, high tier level 4 (120), no constraints.
        let hevc10 = [1, 0x22, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 120];
        assert_eq!(video_codec(VideoCodec::Hevc, &hevc10, Container::Fmp4).as_deref(), Some("hvc1.2.4.H120"));
        // Main profile, level 3.0 (idx 4), main tier, 8 bits.
        assert_eq!(
            video_codec(VideoCodec::Av1, &[0x81, 0x04, 0x0C], Container::Fmp4).as_deref(),
            Some("av01.0.04M.08")
        );
        assert_eq!(
            video_codec(VideoCodec::Av1, &[0x81, 0x28, 0x4C], Container::Fmp4).as_deref(),
            Some("av01.1.08M.10")
        );
        assert_eq!(aac_object_type(&[0x12, 0x10]), Some(2));
        assert_eq!(aac_object_type(&[0x2B, 0x92, 0x08, 0x00]), Some(5));
        assert_eq!(aac_object_type(&[0xF8, 0x20]), Some(33));
        assert_eq!(aac_object_type(&[]), None);
        assert_eq!(audio_codec(AudioCodec::Aac, Some(2)).as_deref(), Some("mp4a.40.2"));
        assert_eq!(audio_codec(AudioCodec::Aac, Some(5)).as_deref(), Some("mp4a.40.5"));
        assert_eq!(audio_codec(AudioCodec::Mp3, None).as_deref(), Some("mp4a.40.34"));
        assert_eq!(audio_codec(AudioCodec::Opus, None).as_deref(), Some("opus"));
    }

    #[test]
    fn frame_rates_from_millisecond_timestamps() {
        let rate = |fps: f64, frames: u32| {
            let mut m = Meter::default();
            for i in 0..frames {
                m.video_frame(1000 + (f64::from(i) * 1000.0 / fps).round() as u32);
            }
            m.frame_rate().unwrap()
        };
        assert_eq!(rate(25.0, 300), 25.0);
        assert_eq!(rate(30.0, 300), 30.0);
        assert_eq!(rate(30000.0 / 1001.0, 300), 29.97);
        assert_eq!(rate(60.0, 300), 60.0);
        assert_eq!(rate(12.5, 300), 12.5);
        assert_eq!(rate(30.0, 20), 30.0, "few frames still land on the common rate");
        let mut m = Meter::default();
        m.video_frame(5);
        assert_eq!(m.frame_rate(), None);
        for t in [40, 80, 120, 10_000, 10_040] {
            m.video_frame(t);
        }
        assert_eq!(m.frame_rate(), Some(25.0), "a jump starts the measurement again");
    }

    #[test]
    fn bandwidths_from_segments() {
        let mut m = Meter::default();
        assert_eq!((m.peak_bandwidth(), m.average_bandwidth()), (None, None));
        m.segment(0, 100_000, 2.0); // 400 kbit/s
        m.segment(1, 50_000, 2.0); // 200 kbit/s
        m.segment(2, 1, 0.0);
        assert_eq!((m.peak_bandwidth(), m.average_bandwidth()), (Some(400_000), Some(300_000)));
        // Split: segment 3's video and audio files are one segment of the stream.
        m.segment(3, 90_000, 2.0);
        m.segment(3, 10_000, 2.0);
        assert_eq!(
            (m.peak_bandwidth(), m.average_bandwidth()),
            (Some(400_000), Some(333_334)),
            "100 kB in 2 s: 400 kbit/s"
        );
        for msn in 4..4 + SEGMENT_WINDOW as u64 {
            m.segment(msn, 25_000, 1.0);
        }
        assert_eq!((m.peak_bandwidth(), m.average_bandwidth()), (Some(200_000), Some(200_000)), "a window");
        m.reset();
        assert_eq!(m.peak_bandwidth(), None);
    }

    #[test]
    fn quoted_commas_are_not_attribute_separators() {
        let pairs: Vec<_> = attributes("CODECS=\"a,b\",BANDWIDTH=5").collect();
        assert_eq!(pairs, [("CODECS", "\"a,b\""), ("BANDWIDTH", "5")]);
    }
}

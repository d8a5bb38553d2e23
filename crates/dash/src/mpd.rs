//! MPD rendering (ISO/IEC 23009-1 §5.3, the ISOBMFF live profile): one Period, a video and an
//! audio AdaptationSet with one Representation each (one per variant in a variant MPD), `SegmentTemplate` with `$Time$` and a
//! `SegmentTimeline`, as nginx-rtmp writes it.
//!
//! While live the MPD is `type="dynamic"`: `availabilityStartTime` is the wall clock at media
//! time 0, `minimumUpdatePeriod` and `minBufferTime` are `dash_fragment`, `timeShiftBufferDepth`
//! is `dash_playlist_length`. Once the stream ended it is `type="static"` with
//! `mediaPresentationDuration`, the window's first time as `presentationTimeOffset`.
//!
//! Low latency ([`LowLatency`]; DASH-IF's "Low-latency Modes for DASH", ISO/IEC 23009-1 4th
//! edition's `ServiceDescription`): the SegmentTemplates say `availabilityTimeOffset` = fragment −
//! part (a fragment may be fetched one part after it starts: it comes as chunks while it is
//! written) and `availabilityTimeComplete="false"`; a `ServiceDescription` gives the latency
//! target and playback rates players (dash.js) steer to; `UTCTiming` points at the server's
//! clock (`urn:mpeg:dash:utc:http-iso:2014`, [`UTC_TIMING_URL`]), which the latency depends on;
//! `minimumUpdatePeriod` is short, so a player learns of each new fragment soon after it starts.

use std::fmt::Write as _;

/// A track's listed fragments: (start, duration) in ms.
pub type Timeline = Vec<(u64, u64)>;

/// The video Representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoRep {
    /// What its file names start with relative to the MPD: `NAME-` flat, empty or `NAME/` nested.
    pub prefix: String,
    /// `presentationTimeOffset` (ms): where this Representation's timeline is at the MPD's
    /// `availabilityStartTime` (variants of one MPD started at different moments).
    pub offset: u64,
    /// `NAME_H264`.
    pub id: String,
    /// RFC 6381 codec string.
    pub codecs: String,
    /// Pixels; 0 when unknown (then not written).
    pub width: u16,
    /// Pixels.
    pub height: u16,
    /// Bits per second.
    pub bandwidth: u64,
    /// Fragments listed.
    pub timeline: Timeline,
}

/// The audio Representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioRep {
    /// As [`VideoRep::prefix`].
    pub prefix: String,
    /// As [`VideoRep::offset`].
    pub offset: u64,
    /// `NAME_AAC`.
    pub id: String,
    /// RFC 6381 codec string.
    pub codecs: String,
    /// Hz.
    pub sample_rate: u32,
    /// Channel count (ISO/IEC 23001-8 channel configuration for 1 to 6).
    pub channels: u16,
    /// Bits per second.
    pub bandwidth: u64,
    /// Fragments listed.
    pub timeline: Timeline,
}

/// Where the server answers the time (ISO 8601, ms) for `UTCTiming`: an absolute path,
/// resolved against the MPD's URL.
pub const UTC_TIMING_URL: &str = "/utc";

/// A low-latency MPD's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowLatency {
    /// The CMAF chunk duration (ms).
    pub part_ms: u64,
    /// `availabilityTimeOffset` (ms): fragment − part.
    pub availability_offset_ms: u64,
    /// `ServiceDescription/Latency@target` (ms).
    pub target_latency_ms: u64,
    /// `minimumUpdatePeriod` (ms).
    pub update_ms: u64,
}

impl LowLatency {
    /// The settings for fragments of `fragment_ms` sent as chunks of `part_ms`: a latency target
    /// of five parts and at least 1.5 s (a few chunks of buffer, plus the time a player needs to
    /// learn of a new fragment: an MPD update a part, at least every half second).
    pub fn new(fragment_ms: u64, part_ms: u64) -> Self {
        let part_ms = part_ms.clamp(1, fragment_ms.max(1));
        LowLatency {
            part_ms,
            availability_offset_ms: fragment_ms.saturating_sub(part_ms),
            target_latency_ms: (5 * part_ms).max(1500),
            update_ms: part_ms.max(500).min(fragment_ms.max(1)),
        }
    }
}

/// Everything an MPD says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// Live (`dynamic`) or ended (`static`).
    pub dynamic: bool,
    /// Wall clock (Unix ms) at media time 0.
    pub availability_start_ms: u64,
    /// Wall clock (Unix ms) now.
    pub publish_ms: u64,
    /// `dash_fragment` in ms.
    pub fragment_ms: u64,
    /// `dash_playlist_length` in ms.
    pub window_ms: u64,
    /// The video Representations (one per variant), in one AdaptationSet.
    pub video: Vec<VideoRep>,
    /// The audio Representations, in one AdaptationSet.
    pub audio: Vec<AudioRep>,
    /// Low latency (chunked fragments), while live.
    pub low_latency: Option<LowLatency>,
}

/// The MPD text.
pub fn render(m: &Manifest) -> String {
    let mut out = String::with_capacity(2048);
    let timelines = m.video.iter().map(|v| &v.timeline).chain(m.audio.iter().map(|a| &a.timeline));
    let first = timelines.clone().filter_map(|t| t.first().map(|s| s.0)).min().unwrap_or(0);
    let end = timelines.filter_map(|t| t.last().map(|(s, d)| s + d)).max().unwrap_or(first);
    let ll = m.low_latency.as_ref().filter(|_| m.dynamic);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"");
    out.push_str(" profiles=\"urn:mpeg:dash:profile:isoff-live:2011,urn:hbbtv:dash:profile:isoff-live:2012\"");
    if m.dynamic {
        let _ = write!(
            out,
            " type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" minimumUpdatePeriod=\"{}\" timeShiftBufferDepth=\"{}\"",
            hls::playlist::iso8601_utc(m.availability_start_ms),
            hls::playlist::iso8601_utc(m.publish_ms),
            duration(ll.map_or(m.fragment_ms, |l| l.update_ms)),
            duration(m.window_ms.max(m.fragment_ms)),
        );
    } else {
        let _ = write!(out, " type=\"static\" mediaPresentationDuration=\"{}\"", duration(end - first));
    }
    let _ = writeln!(out, " minBufferTime=\"{}\">", duration(m.fragment_ms));
    if let Some(l) = ll {
        service_description(&mut out, l);
    }
    out.push_str("  <Period id=\"dash\" start=\"PT0S\">\n");
    // A static presentation starts at its first listed fragment.
    let offset = if m.dynamic { 0 } else { first };
    if !m.video.is_empty() {
        let _ = write!(
            out,
            "    <AdaptationSet id=\"1\" contentType=\"video\" mimeType=\"video/mp4\" segmentAlignment=\"{}\" startWithSAP=\"1\"",
            aligned(m.video.len())
        );
        let (w, h) = m.video.iter().fold((0, 0), |(w, h), v| (w.max(v.width), h.max(v.height)));
        if w > 0 && h > 0 {
            let _ = write!(out, " maxWidth=\"{w}\" maxHeight=\"{h}\"");
        }
        out.push_str(">\n");
        for v in &m.video {
            let _ = write!(out, "      <Representation id=\"{}\" codecs=\"{}\"", rep_id(&v.id), xml(&v.codecs));
            if v.width > 0 && v.height > 0 {
                let _ = write!(out, " width=\"{}\" height=\"{}\" sar=\"1:1\"", v.width, v.height);
            }
            let _ = writeln!(out, " bandwidth=\"{}\">", v.bandwidth);
            template(&mut out, &v.prefix, "m4v", offset + v.offset, &v.timeline, ll);
            out.push_str("      </Representation>\n");
        }
        out.push_str("    </AdaptationSet>\n");
    }
    if !m.audio.is_empty() {
        let _ = writeln!(
            out,
            "    <AdaptationSet id=\"2\" contentType=\"audio\" mimeType=\"audio/mp4\" segmentAlignment=\"{}\" startWithSAP=\"1\">",
            aligned(m.audio.len())
        );
        let channels = m.audio.iter().map(|a| a.channels).max().unwrap_or(1);
        let _ = writeln!(
            out,
            "      <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{}\"/>",
            channels.max(1)
        );
        for a in &m.audio {
            let _ = writeln!(
                out,
                "      <Representation id=\"{}\" codecs=\"{}\" audioSamplingRate=\"{}\" bandwidth=\"{}\">",
                rep_id(&a.id),
                xml(&a.codecs),
                a.sample_rate,
                a.bandwidth
            );
            template(&mut out, &a.prefix, "m4a", offset + a.offset, &a.timeline, ll);
            out.push_str("      </Representation>\n");
        }
        out.push_str("    </AdaptationSet>\n");
    }
    out.push_str("  </Period>\n");
    if ll.is_some() {
        let _ =
            writeln!(out, "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=\"{UTC_TIMING_URL}\"/>");
    }
    out.push_str("</MPD>\n");
    out
}

/// The latency a player aims at (ms, from the wall clock to what it shows), with room on both
/// sides, and the playback rates it may use to get there (dash.js's low-latency catch-up).
fn service_description(out: &mut String, l: &LowLatency) {
    let target = l.target_latency_ms;
    let _ = writeln!(
        out,
        "  <ServiceDescription id=\"0\">\n    <Latency target=\"{target}\" min=\"{}\" max=\"{}\"/>\n    <PlaybackRate min=\"0.96\" max=\"1.04\"/>\n  </ServiceDescription>",
        (target / 2).max(l.part_ms),
        target * 2,
    );
}

/// Variants are cut at their own keyframes: only a lone Representation's segments are aligned
/// (ISO/IEC 23009-1 §5.3.3.2: `segmentAlignment` is about the Representations of a set).
fn aligned(representations: usize) -> bool {
    representations <= 1
}

fn template(out: &mut String, prefix: &str, ext: &str, offset: u64, timeline: &[(u64, u64)], ll: Option<&LowLatency>) {
    let p = template_url(prefix);
    let _ = write!(out, "        <SegmentTemplate timescale=\"1000\"");
    if offset > 0 {
        let _ = write!(out, " presentationTimeOffset=\"{offset}\"");
    }
    if let Some(l) = ll {
        let ato = l.availability_offset_ms;
        let _ = write!(
            out,
            " availabilityTimeOffset=\"{}.{:03}\" availabilityTimeComplete=\"false\"",
            ato / 1000,
            ato % 1000
        );
    }
    let _ = writeln!(out, " media=\"{p}$Time$.{ext}\" initialization=\"{p}init.{ext}\">");
    out.push_str("          <SegmentTimeline>\n");
    let mut next = None;
    for &(t, d) in timeline {
        // `t` only where the timeline does not simply continue (the first, after a gap).
        if next == Some(t) {
            let _ = writeln!(out, "            <S d=\"{d}\"/>");
        } else {
            let _ = writeln!(out, "            <S t=\"{t}\" d=\"{d}\"/>");
        }
        next = Some(t + d);
    }
    out.push_str("          </SegmentTimeline>\n        </SegmentTemplate>\n");
}

/// `PT5.000S`.
fn duration(ms: u64) -> String {
    format!("PT{}.{:03}S", ms / 1000, ms % 1000)
}

/// A file name prefix as a URL in a template attribute: percent-encoded except for what URLs
/// carry as is, `$` doubled (a template identifier starts with it), XML-safe.
fn template_url(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for b in prefix.bytes() {
        match b {
            b'$' => out.push_str("$$"),
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'!'
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'@' => out.push(b as char),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// A Representation id: no whitespace (ISO/IEC 23009-1 §5.3.5.2), XML-safe.
fn rep_id(id: &str) -> String {
    xml(&id.replace(char::is_whitespace, "_"))
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(dynamic: bool) -> Manifest {
        Manifest {
            dynamic,
            availability_start_ms: 1_765_000_000_000,
            publish_ms: 1_765_000_012_345,
            fragment_ms: 5000,
            window_ms: 30_000,
            video: vec![VideoRep {
                prefix: "cam-".into(),
                offset: 0,
                id: "cam_H264".into(),
                codecs: "avc1.64001f".into(),
                width: 1280,
                height: 720,
                bandwidth: 1_000_000,
                timeline: vec![(5000, 5000), (10_000, 4960), (16_000, 5000)],
            }],
            audio: vec![AudioRep {
                prefix: "cam-".into(),
                offset: 0,
                id: "cam_AAC".into(),
                codecs: "mp4a.40.2".into(),
                sample_rate: 44_100,
                channels: 2,
                bandwidth: 128_000,
                timeline: vec![(4990, 5015)],
            }],
            low_latency: None,
        }
    }

    #[test]
    fn a_live_mpd_is_dynamic_with_nginx_rtmps_names() {
        let text = render(&manifest(true));
        for want in [
            "type=\"dynamic\"",
            "availabilityStartTime=\"2025-12-06T05:46:40.000Z\"",
            "publishTime=\"2025-12-06T05:46:52.345Z\"",
            "minimumUpdatePeriod=\"PT5.000S\"",
            "timeShiftBufferDepth=\"PT30.000S\"",
            "minBufferTime=\"PT5.000S\"",
            "<Period id=\"dash\" start=\"PT0S\">",
            "<Representation id=\"cam_H264\" codecs=\"avc1.64001f\" width=\"1280\" height=\"720\" sar=\"1:1\" bandwidth=\"1000000\">",
            "media=\"cam-$Time$.m4v\" initialization=\"cam-init.m4v\"",
            "media=\"cam-$Time$.m4a\" initialization=\"cam-init.m4a\"",
            "<S t=\"5000\" d=\"5000\"/>\n            <S d=\"4960\"/>\n            <S t=\"16000\" d=\"5000\"/>",
            "value=\"2\"",
        ] {
            assert!(text.contains(want), "{want} missing:\n{text}");
        }
        assert!(!text.contains("presentationTimeOffset"));
    }

    #[test]
    fn an_ended_mpd_is_static_from_its_first_fragment() {
        let text = render(&manifest(false));
        assert!(text.contains("type=\"static\" mediaPresentationDuration=\"PT16.010S\""), "{text}");
        assert!(text.contains("presentationTimeOffset=\"4990\""), "{text}");
        assert!(!text.contains("minimumUpdatePeriod") && !text.contains("availabilityStartTime"), "{text}");
    }

    #[test]
    fn a_low_latency_mpd_says_when_chunks_are_there_what_latency_to_aim_at_and_whose_clock() {
        let mut m = manifest(true);
        m.low_latency = Some(LowLatency::new(5000, 200));
        let text = render(&m);
        for want in [
            "minimumUpdatePeriod=\"PT0.500S\"",
            "<ServiceDescription id=\"0\">\n    <Latency target=\"1500\" min=\"750\" max=\"3000\"/>\n    <PlaybackRate min=\"0.96\" max=\"1.04\"/>\n  </ServiceDescription>\n  <Period",
            "<SegmentTemplate timescale=\"1000\" availabilityTimeOffset=\"4.800\" availabilityTimeComplete=\"false\" media=\"cam-$Time$.m4v\"",
            "availabilityTimeOffset=\"4.800\" availabilityTimeComplete=\"false\" media=\"cam-$Time$.m4a\"",
            "</Period>\n  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=\"/utc\"/>\n</MPD>\n",
        ] {
            assert!(text.contains(want), "{want} missing:\n{text}");
        }
        assert_eq!(LowLatency::new(2000, 500).target_latency_ms, 2500);
        assert_eq!(LowLatency::new(2000, 3000).availability_offset_ms, 0, "a part is at most a fragment");
        // Once ended, nothing of it.
        m.dynamic = false;
        let text = render(&m);
        assert!(
            !text.contains("availabilityTime") && !text.contains("ServiceDescription") && !text.contains("UTCTiming")
        );
        assert_eq!(render(&Manifest { low_latency: None, ..manifest(true) }), render(&manifest(true)));
    }

    #[test]
    fn names_are_escaped_for_urls_templates_and_xml() {
        assert_eq!(template_url("a b$c&\"<é-"), "a%20b$$c%26%22%3C%C3%A9-");
        assert_eq!(rep_id("a b&c_H264"), "a_b&amp;c_H264");
        let mut m = manifest(true);
        m.video[0].prefix = String::new();
        let text = render(&m);
        assert!(text.contains("media=\"$Time$.m4v\" initialization=\"init.m4v\""), "{text}");
    }
}

#[cfg(test)]
mod variant_tests {
    use super::*;

    #[test]
    fn variants_are_representations_of_one_adaptation_set_each_with_its_own_offset() {
        let rep = |name: &str, w: u16, offset: u64| VideoRep {
            prefix: format!("{name}-"),
            offset,
            id: format!("{name}_H264"),
            codecs: "avc1.64001f".into(),
            width: w,
            height: w / 16 * 9,
            bandwidth: u64::from(w) * 1000,
            timeline: vec![(1000, 2000)],
        };
        let m = Manifest {
            dynamic: true,
            availability_start_ms: 0,
            publish_ms: 0,
            fragment_ms: 2000,
            window_ms: 10_000,
            video: vec![rep("cam_hi", 1280, 0), rep("cam_lo", 640, 350)],
            audio: Vec::new(),
            low_latency: None,
        };
        let text = render(&m);
        assert_eq!(text.matches("<AdaptationSet").count(), 1, "{text}");
        assert!(text.contains("segmentAlignment=\"false\""), "variants are not aligned: {text}");
        assert!(text.contains("maxWidth=\"1280\" maxHeight=\"720\""), "{text}");
        assert!(text.contains("<Representation id=\"cam_lo_H264\""), "{text}");
        assert!(text.contains("presentationTimeOffset=\"350\" media=\"cam_lo-$Time$.m4v\""), "{text}");
        assert!(text.contains("timescale=\"1000\" media=\"cam_hi-$Time$.m4v\""), "{text}");
    }
}

//! Media playlists: rendering what the segmenter holds as M3U8 text (RFC 8216, with the
//! low-latency tags of RFC 8216bis §4.4.3–4.4.5), and reading back a playlist sluice or nginx-rtmp
//! wrote, for `hls_continuous`.

use std::fmt::Write;

/// AES-128 key that applies to a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    /// Key URI as the playlist lists it.
    pub uri: String,
    /// Initialisation vector (nginx-rtmp uses the key's id).
    pub iv: u128,
}

/// A partial segment (low-latency HLS).
#[derive(Debug, Clone, PartialEq)]
pub struct PartEntry {
    /// Seconds.
    pub duration: f64,
    /// URI as the playlist lists it.
    pub uri: String,
    /// Starts with a keyframe (or carries audio only): a player may start here.
    pub independent: bool,
    /// Has no media of the playlist's track (`GAP=YES`: a player does not load it).
    pub gap: bool,
}

/// A segment as the playlist lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentEntry {
    /// Media sequence number.
    pub msn: u64,
    /// Seconds.
    pub duration: f64,
    /// URI as the playlist lists it.
    pub uri: String,
    /// Timestamps do not continue from the previous segment (`#EXT-X-DISCONTINUITY`).
    pub discontinuity: bool,
    /// Encryption key, when `hls_keys` is on.
    pub key: Option<KeyRef>,
    /// Wall-clock time of the segment's first frame, Unix milliseconds.
    pub program_date_time_ms: Option<u64>,
    /// Its partial segments (low-latency HLS; empty otherwise).
    pub parts: Vec<PartEntry>,
    /// Its fMP4 initialisation segment (`#EXT-X-MAP`), when not the playlist's current one (a
    /// segment of an earlier publish, kept by `hls_continuous`).
    pub map: Option<String>,
    /// Has no media of the playlist's track (`#EXT-X-GAP`: a player does not load it; a
    /// split segment a track had no samples in).
    pub gap: bool,
}

/// `#EXT-X-PLAYLIST-TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistType {
    /// A sliding window: no tag.
    Live,
    /// `EVENT`: segments are only ever added.
    Event,
}

/// Low-latency HLS state of a playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct LowLatency<'a> {
    /// `PART-TARGET`, seconds.
    pub part_target: f64,
    /// Parts of the segment being written, after the last complete segment.
    pub open_parts: &'a [PartEntry],
    /// URI of the next part, announced with `#EXT-X-PRELOAD-HINT`.
    pub preload_hint: Option<&'a str>,
}

/// Everything a media playlist shows.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist<'a> {
    /// Smallest `#EXT-X-TARGETDURATION` (nginx-rtmp: `hls_fragment` in whole seconds).
    pub min_target_duration: u64,
    /// Discontinuities that left the window (`#EXT-X-DISCONTINUITY-SEQUENCE`).
    pub discontinuity_sequence: u64,
    /// Live or event.
    pub playlist_type: PlaylistType,
    /// fMP4 initialisation segment (`#EXT-X-MAP`).
    pub map_uri: Option<&'a str>,
    /// Low-latency tags, when on.
    pub low_latency: Option<LowLatency<'a>>,
    /// Complete segments, oldest first.
    pub segments: &'a [SegmentEntry],
    /// The stream ended (`#EXT-X-ENDLIST`).
    pub ended: bool,
}

/// Parts are listed for segments this many target durations from the live edge (RFC 8216bis
/// §4.4.4.9: remove them once they are older than three target durations).
const PART_WINDOW_TARGETS: f64 = 3.0;
/// `PART-HOLD-BACK` in part targets (RFC 8216bis asks for at least two; three is Apple's advice).
const PART_HOLD_BACK_TARGETS: f64 = 3.0;

impl MediaPlaylist<'_> {
    /// `#EXT-X-TARGETDURATION`: at least every segment's duration rounded to whole seconds
    /// (RFC 8216 §4.3.3.1), and at least [`MediaPlaylist::min_target_duration`].
    pub fn target_duration(&self) -> u64 {
        let longest = self.segments.iter().map(|s| s.duration.round() as u64).max().unwrap_or(0);
        longest.max(self.min_target_duration).max(1)
    }

    /// `#EXT-X-VERSION`: 3 for decimal durations, 6 once `#EXT-X-MAP` is used without
    /// I-frames-only (RFC 8216 §7), 8 with gaps.
    pub fn version(&self) -> u8 {
        let gap = |s: &SegmentEntry| s.gap || s.parts.iter().any(|p| p.gap);
        if self.segments.iter().any(gap)
            || self.low_latency.as_ref().is_some_and(|l| l.open_parts.iter().any(|p| p.gap))
        {
            // `#EXT-X-GAP` and `GAP=YES` (RFC 8216bis §4.4.4.7, §4.4.4.9).
            8
        } else if self.map_uri.is_some() || self.segments.iter().any(|s| s.map.is_some()) {
            6
        } else {
            3
        }
    }

    /// The playlist text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(256 + self.segments.len() * 64);
        let target = self.target_duration();
        out.push_str("#EXTM3U\n");
        let _ = writeln!(out, "#EXT-X-VERSION:{}", self.version());
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
        if let Some(ll) = &self.low_latency {
            let hold_back = ll.part_target * PART_HOLD_BACK_TARGETS;
            let _ = writeln!(out, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={hold_back:.3}");
            let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={:.3}", ll.part_target);
        }
        let first = self.segments.first().map_or(0, |s| s.msn);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first}");
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", self.discontinuity_sequence);
        }
        if self.playlist_type == PlaylistType::Event {
            out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n");
        }
        // Each publish has its own init segment: a map applies until the next one (RFC 8216
        // §4.3.2.5).
        let mut map: Option<String> = None;
        let mut write_map = |out: &mut String, m: Option<&str>| {
            if let Some(m) = m.filter(|m| map.as_deref() != Some(*m)) {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{m}\"");
                map = Some(m.to_string());
            }
        };
        if self.segments.is_empty() {
            write_map(&mut out, self.map_uri);
        }
        let part_horizon = self.part_horizon(target);
        let mut key: Option<&KeyRef> = None;
        let mut elapsed = 0.0;
        for s in self.segments {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            write_map(&mut out, s.map.as_deref().or(self.map_uri));
            if s.key.as_ref() != key {
                if let Some(k) = &s.key {
                    let _ = writeln!(out, "#EXT-X-KEY:METHOD=AES-128,URI=\"{}\",IV=0x{:032X}", k.uri, k.iv);
                } else {
                    out.push_str("#EXT-X-KEY:METHOD=NONE\n");
                }
                key = s.key.as_ref();
            }
            if let Some(ms) = s.program_date_time_ms {
                let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601_utc(ms));
            }
            if elapsed >= part_horizon {
                write_parts(&mut out, &s.parts);
            }
            elapsed += s.duration;
            if s.gap {
                out.push_str("#EXT-X-GAP\n");
            }
            let _ = writeln!(out, "#EXTINF:{:.3},\n{}", s.duration, s.uri);
        }
        if let Some(ll) = &self.low_latency {
            // Only for parts to come: between publishers the next init segment does not exist.
            if !ll.open_parts.is_empty() || ll.preload_hint.is_some() {
                write_map(&mut out, self.map_uri);
            }
            write_parts(&mut out, ll.open_parts);
            if let Some(hint) = ll.preload_hint {
                let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{hint}\"");
            }
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }

    /// Playlist time (seconds from the first listed segment) from which segments list their parts.
    fn part_horizon(&self, target: u64) -> f64 {
        if self.low_latency.is_none() {
            return f64::INFINITY;
        }
        let total: f64 = self.segments.iter().map(|s| s.duration).sum();
        total - PART_WINDOW_TARGETS * target as f64
    }
}

fn write_parts(out: &mut String, parts: &[PartEntry]) {
    for p in parts {
        let _ = write!(out, "#EXT-X-PART:DURATION={:.3},URI=\"{}\"", p.duration, p.uri);
        if p.independent {
            out.push_str(",INDEPENDENT=YES");
        }
        if p.gap {
            out.push_str(",GAP=YES");
        }
        out.push('\n');
    }
}

/// `2026-11-27T16:05:16.123Z` from Unix milliseconds (proleptic Gregorian, UTC).
pub fn iso8601_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem / 60 % 60, rem % 60, unix_ms % 1000)
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// What an existing playlist says, for continuing it (`hls_continuous`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restored {
    /// `#EXT-X-DISCONTINUITY-SEQUENCE`.
    pub discontinuity_sequence: u64,
    /// Its segments, with sequence numbers.
    pub segments: Vec<SegmentEntry>,
    /// It had `#EXT-X-ENDLIST`.
    pub ended: bool,
}

impl Restored {
    /// The sequence number the next segment gets.
    pub fn next_msn(&self, media_sequence: u64) -> u64 {
        self.segments.last().map_or(media_sequence, |s| s.msn + 1)
    }
}

/// Reads a media playlist written by sluice or nginx-rtmp. Unknown tags are skipped; text that is
/// not a playlist gives `None`.
pub fn parse_media_playlist(text: &str) -> Option<Restored> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next()? != "#EXTM3U" {
        return None;
    }
    let mut r = Restored::default();
    let mut msn = 0u64;
    let mut duration: Option<f64> = None;
    let mut discontinuity = false;
    let mut key: Option<KeyRef> = None;
    let mut map: Option<String> = None;
    let mut gap = false;
    for line in lines {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            msn = v.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            r.discontinuity_sequence = v.trim().parse().ok()?;
        } else if line == "#EXT-X-DISCONTINUITY" {
            discontinuity = true;
        } else if line == "#EXT-X-GAP" {
            gap = true;
        } else if line == "#EXT-X-ENDLIST" {
            r.ended = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-KEY:") {
            key = parse_key(v);
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
            map = attribute(v, "URI").map(str::to_string);
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            duration = v.split(',').next().and_then(|d| d.trim().parse().ok());
        } else if !line.starts_with('#') {
            let d = duration.take()?;
            r.segments.push(SegmentEntry {
                msn,
                duration: d,
                uri: line.to_string(),
                discontinuity: std::mem::take(&mut discontinuity),
                key: key.clone(),
                program_date_time_ms: None,
                parts: Vec::new(),
                map: map.clone(),
                gap: std::mem::take(&mut gap),
            });
            msn += 1;
        }
    }
    Some(r)
}

/// An attribute's value from an attribute list (`A=1,URI="x"`), quotes taken off.
fn attribute<'t>(attrs: &'t str, name: &str) -> Option<&'t str> {
    let start = attrs.find(&format!("{name}="))? + name.len() + 1;
    let rest = &attrs[start..];
    Some(match rest.strip_prefix('"') {
        Some(q) => &q[..q.find('"')?],
        None => rest.split(',').next()?,
    })
}

fn parse_key(attrs: &str) -> Option<KeyRef> {
    let attr = |name: &str| attribute(attrs, name);
    if attr("METHOD")? != "AES-128" {
        return None;
    }
    let iv =
        attr("IV").and_then(|v| u128::from_str_radix(v.trim_start_matches("0x").trim_start_matches("0X"), 16).ok());
    Some(KeyRef { uri: attr("URI")?.to_string(), iv: iv.unwrap_or(0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(msn: u64, duration: f64) -> SegmentEntry {
        SegmentEntry {
            msn,
            duration,
            uri: format!("stream-{msn}.ts"),
            discontinuity: false,
            key: None,
            program_date_time_ms: None,
            parts: Vec::new(),
            map: None,
            gap: false,
        }
    }

    fn playlist(segments: &[SegmentEntry]) -> MediaPlaylist<'_> {
        MediaPlaylist {
            min_target_duration: 3,
            discontinuity_sequence: 0,
            playlist_type: PlaylistType::Live,
            map_uri: None,
            low_latency: None,
            segments,
            ended: false,
        }
    }

    #[test]
    fn live_playlist_as_nginx_rtmp_writes_it() {
        let segs = [seg(7, 3.0), seg(8, 3.52)];
        let text = playlist(&segs).render();
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:7\n\
             #EXTINF:3.000,\nstream-7.ts\n#EXTINF:3.520,\nstream-8.ts\n"
        );
    }

    #[test]
    fn target_duration_covers_every_rounded_extinf() {
        let segs = [seg(0, 2.4), seg(1, 6.6)];
        assert_eq!(playlist(&segs).target_duration(), 7);
        let short = [seg(0, 1.2)];
        assert_eq!(playlist(&short).target_duration(), 3, "never below hls_fragment");
    }

    #[test]
    fn endlist_discontinuity_event_and_map() {
        let mut segs = [seg(0, 3.0), seg(1, 3.0)];
        segs[1].discontinuity = true;
        let mut p = playlist(&segs);
        p.ended = true;
        p.playlist_type = PlaylistType::Event;
        p.map_uri = Some("stream-init.mp4");
        p.discontinuity_sequence = 2;
        let text = p.render();
        assert!(text.contains("#EXT-X-VERSION:6\n"));
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"));
        assert!(text.contains("#EXT-X-MAP:URI=\"stream-init.mp4\"\n"));
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"));
        assert!(text.contains("#EXT-X-DISCONTINUITY\n#EXTINF:3.000,\nstream-1.ts\n"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn keys_are_announced_when_they_change() {
        let mut segs = [seg(0, 3.0), seg(1, 3.0), seg(2, 3.0)];
        let k0 = KeyRef { uri: "stream-0.key".into(), iv: 0 };
        let k2 = KeyRef { uri: "stream-2.key".into(), iv: 2 };
        segs[0].key = Some(k0.clone());
        segs[1].key = Some(k0);
        segs[2].key = Some(k2);
        let text = playlist(&segs).render();
        assert_eq!(text.matches("#EXT-X-KEY").count(), 2);
        assert!(text.contains("#EXT-X-KEY:METHOD=AES-128,URI=\"stream-2.key\",IV=0x00000000000000000000000000000002\n"));
    }

    #[test]
    fn low_latency_tags() {
        let mut segs: Vec<SegmentEntry> = (0..6).map(|i| seg(i, 2.0)).collect();
        for s in &mut segs {
            s.parts = vec![PartEntry { duration: 1.0, uri: format!("p{}.0", s.msn), independent: true, gap: false }];
        }
        let open = [PartEntry { duration: 0.2, uri: "stream-6.0.ts".into(), independent: true, gap: false }];
        let mut p = playlist(&segs);
        p.low_latency = Some(LowLatency { part_target: 0.2, open_parts: &open, preload_hint: Some("stream-6.1.ts") });
        let text = p.render();
        assert!(text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600\n"));
        assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.200\n"));
        assert!(text.contains("#EXT-X-PART:DURATION=0.200,URI=\"stream-6.0.ts\",INDEPENDENT=YES\n"));
        assert!(text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"stream-6.1.ts\"\n"));
        // 12 s listed, target 3 s: parts only for the segments in the last 9 s.
        assert!(!text.contains("URI=\"p0.0\"") && !text.contains("URI=\"p1.0\""));
        assert!(text.contains("URI=\"p2.0\"") && text.contains("URI=\"p5.0\""));
    }

    #[test]
    fn program_date_time_format() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_utc(1_795_795_516_123), "2026-11-27T16:05:16.123Z");
        assert_eq!(iso8601_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn restores_what_it_wrote_and_nginx_rtmp_playlists() {
        let mut segs = [seg(4, 3.0), seg(5, 2.5)];
        segs[1].discontinuity = true;
        segs[1].key = Some(KeyRef { uri: "k.key".into(), iv: 5 });
        let r = parse_media_playlist(&playlist(&segs).render()).unwrap();
        assert_eq!(r.segments, segs);
        assert_eq!(r.next_msn(0), 6);
        let nginx = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:12\n#EXT-X-TARGETDURATION:5\n\
                     #EXT-X-PLAYLIST-TYPE: EVENT\n#EXTINF:5.005,\nlive-12.ts\n#EXT-X-ENDLIST\n";
        let r = parse_media_playlist(nginx).unwrap();
        assert_eq!((r.segments.len(), r.segments[0].msn, r.ended), (1, 12, true));
        assert_eq!(parse_media_playlist("not a playlist"), None);
        assert_eq!(parse_media_playlist("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:x\n"), None);
    }
}

//! A live FLV byte stream for one player (HTTP-FLV, WebSocket-FLV): the FLV header, then tags
//! whose timestamps start at 0 for this player, as nginx-http-flv-module sends them.
//!
//! Frames in, bytes out; no I/O, no clock. The first media frame after [`LiveMuxer::new`] or
//! [`LiveMuxer::rebase`] sets the base: its timestamp becomes the last one written (0 at the
//! start), so a player sees one timeline from 0 across a publisher that restarts its clock.
//! Configuration tags (`onMetaData`, sequence headers) carry the last timestamp written: when
//! they are sent again after a skip or a new publisher they do not jump back in time.
//! Timestamps are 32-bit milliseconds; a stream playing for more than 49 days wraps as RTMP does.
//!
//! [`LiveMuxer::gather`] makes the same tags for a gathered write ([`Gathered`]): the player's
//! own bytes (tag headers, PreviousTagSize) in one small buffer, the bodies shared with every
//! other player, never copied.

use bytes::Bytes;

use crate::writer::{file_header, previous_tag_size, write_tag, write_tag_header};
use crate::FlvError;

/// Tags to send in one gathered write: the per-player bytes in one buffer, the bodies as they
/// came (shared). [`Gathered::finish`] gives the pieces in wire order.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Tag headers and PreviousTagSizes, in order.
    heads: Vec<u8>,
    /// Each body, with where in `heads` it goes.
    bodies: Vec<(usize, Bytes)>,
    /// Bytes gathered so far.
    len: usize,
}

impl Gathered {
    /// Nothing gathered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no tag was gathered since the last [`Gathered::finish`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes gathered since the last [`Gathered::finish`].
    pub fn len(&self) -> usize {
        self.len
    }

    /// Append the 13-byte FLV header (it goes before any tag gathered after it).
    pub fn push_header(&mut self, has_audio: bool, has_video: bool) {
        self.heads.extend_from_slice(&file_header(has_audio, has_video));
        self.len += 13;
    }

    /// Move what was gathered to `out` as pieces in wire order (no empty piece), and start
    /// again empty.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        let heads = Bytes::from(std::mem::take(&mut self.heads));
        let mut from = 0;
        for (at, body) in self.bodies.drain(..) {
            if at > from {
                out.push(heads.slice(from..at));
            }
            if !body.is_empty() {
                out.push(body);
            }
            from = at;
        }
        if heads.len() > from {
            out.push(heads.slice(from..));
        }
        self.len = 0;
    }
}

/// One player's tag timeline.
#[derive(Debug, Clone, Default)]
pub struct LiveMuxer {
    /// Subtracted from the publisher's timestamps; `None` until the first media frame since
    /// the start or the last [`LiveMuxer::rebase`].
    base: Option<i64>,
    /// The last timestamp written.
    last: u32,
}

impl LiveMuxer {
    /// A player starting now.
    pub fn new() -> Self {
        Self::default()
    }

    /// The FLV header (with PreviousTagSize0): the first 13 bytes the player gets.
    pub fn header(has_audio: bool, has_video: bool) -> [u8; 13] {
        file_header(has_audio, has_video)
    }

    /// The publisher's clock may have restarted (a new publisher): the next media frame goes on
    /// from the last timestamp written.
    pub fn rebase(&mut self) {
        self.base = None;
    }

    /// The last timestamp written (ms, on the player's timeline).
    pub fn last_timestamp(&self) -> u32 {
        self.last
    }

    /// Append one tag of `tag_type` (8 audio, 9 video, 18 script) with `body`. `config` marks
    /// `onMetaData` and sequence headers: they are written at the last timestamp written;
    /// media frames at `timestamp` on the player's timeline (never before 0).
    pub fn write(
        &mut self,
        out: &mut Vec<u8>,
        tag_type: u8,
        timestamp: u32,
        body: &[u8],
        config: bool,
    ) -> Result<(), FlvError> {
        self.stamp(timestamp, config, |ts| write_tag(out, tag_type, ts, body))
    }

    /// [`LiveMuxer::write`] into a gathered write: the same tag, its `body` shared.
    pub fn gather(
        &mut self,
        out: &mut Gathered,
        tag_type: u8,
        timestamp: u32,
        body: &Bytes,
        config: bool,
    ) -> Result<(), FlvError> {
        self.stamp(timestamp, config, |ts| {
            write_tag_header(&mut out.heads, tag_type, ts, body.len())?;
            out.bodies.push((out.heads.len(), body.clone()));
            out.heads.extend_from_slice(&previous_tag_size(body.len()));
            out.len += 15 + body.len();
            Ok(())
        })
    }

    /// Place a tag on the player's timeline and `emit` it there; the clock moves only when
    /// `emit` takes the tag, so a refused tag (too large) changes nothing.
    fn stamp(
        &mut self,
        timestamp: u32,
        config: bool,
        emit: impl FnOnce(u32) -> Result<(), FlvError>,
    ) -> Result<(), FlvError> {
        let base = self.base;
        let ts = if config { self.last } else { self.place(timestamp) };
        match emit(ts) {
            Ok(()) => {
                self.last = ts;
                Ok(())
            }
            Err(e) => {
                self.base = base;
                Err(e)
            }
        }
    }

    /// A media frame's timestamp on the player's timeline.
    fn place(&mut self, timestamp: u32) -> u32 {
        let ts = i64::from(timestamp);
        let base = *self.base.get_or_insert(ts - i64::from(self.last));
        // An audio frame a little older than the keyframe that set the base: at 0, not before.
        (ts - base).clamp(0, i64::from(u32::MAX)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FlvReader, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};

    /// (type, timestamp) of every tag in `bytes` after the header.
    fn tags(bytes: &[u8]) -> Vec<(u8, u32)> {
        let r = FlvReader::new(bytes::Bytes::copy_from_slice(bytes)).expect("a header");
        r.map(|t| t.expect("a tag")).map(|t| (t.tag_type, t.timestamp)).collect()
    }

    #[test]
    fn a_player_starts_at_zero_and_config_tags_do_not_jump_back() {
        let mut m = LiveMuxer::new();
        let mut out = LiveMuxer::header(true, true).to_vec();
        assert_eq!(&out[..5], b"FLV\x01\x05");
        m.write(&mut out, TAG_SCRIPT, 0, b"meta", true).unwrap();
        m.write(&mut out, TAG_VIDEO, 0, b"avc-config", true).unwrap();
        m.write(&mut out, TAG_VIDEO, 5000, b"key", false).unwrap();
        m.write(&mut out, TAG_AUDIO, 4990, b"older audio", false).unwrap();
        m.write(&mut out, TAG_VIDEO, 5040, b"inter", false).unwrap();
        // A skip: the headers again, at the current time.
        m.write(&mut out, TAG_VIDEO, 0, b"avc-config", true).unwrap();
        m.write(&mut out, TAG_VIDEO, 9000, b"key", false).unwrap();
        let expected = [
            (TAG_SCRIPT, 0),
            (TAG_VIDEO, 0),
            (TAG_VIDEO, 0),
            (TAG_AUDIO, 0),
            (TAG_VIDEO, 40),
            (TAG_VIDEO, 40),
            (TAG_VIDEO, 4000),
        ];
        assert_eq!(tags(&out), expected);
    }

    #[test]
    fn a_new_publisher_goes_on_from_the_last_timestamp() {
        let mut m = LiveMuxer::new();
        let mut out = LiveMuxer::header(false, true).to_vec();
        m.write(&mut out, TAG_VIDEO, 100_000, b"key", false).unwrap();
        m.write(&mut out, TAG_VIDEO, 101_000, b"inter", false).unwrap();
        m.rebase();
        m.write(&mut out, TAG_VIDEO, 0, b"avc-config", true).unwrap();
        m.write(&mut out, TAG_VIDEO, 0, b"key", false).unwrap();
        m.write(&mut out, TAG_VIDEO, 40, b"inter", false).unwrap();
        assert_eq!(
            tags(&out),
            [(TAG_VIDEO, 0), (TAG_VIDEO, 1000), (TAG_VIDEO, 1000), (TAG_VIDEO, 1000), (TAG_VIDEO, 1040)]
        );
        assert_eq!(m.last_timestamp(), 1040);
    }

    /// Gathered tags are byte for byte the tags `write` makes, with the bodies not copied.
    #[test]
    fn gathered_tags_are_the_written_tags_with_shared_bodies() {
        let frames: [(u8, u32, &[u8], bool); 5] = [
            (TAG_SCRIPT, 0, b"meta", true),
            (TAG_VIDEO, 7000, b"key", false),
            (TAG_AUDIO, 7010, b"", false),
            (TAG_AUDIO, 7030, b"aac", false),
            (TAG_VIDEO, 7040, b"inter", false),
        ];
        let (mut a, mut b) = (LiveMuxer::new(), LiveMuxer::new());
        let mut written = LiveMuxer::header(true, true).to_vec();
        let mut g = Gathered::new();
        g.push_header(true, true);
        let bodies: Vec<Bytes> = frames.iter().map(|f| Bytes::from_static(f.2)).collect();
        for (f, body) in frames.iter().zip(&bodies) {
            a.write(&mut written, f.0, f.1, f.2, f.3).unwrap();
            b.gather(&mut g, f.0, f.1, body, f.3).unwrap();
        }
        assert_eq!(g.len(), written.len());
        let mut pieces = Vec::new();
        g.finish(&mut pieces);
        assert!(g.is_empty());
        assert!(pieces.iter().all(|p| !p.is_empty()), "no empty piece for a writer to choke on");
        assert_eq!(pieces.concat(), written);
        let shared = pieces.iter().filter(|p| bodies.iter().any(|b| !b.is_empty() && p.as_ptr() == b.as_ptr()));
        assert_eq!(shared.count(), 4, "every non-empty body is sent from where it is, not copied");
        assert_eq!(a.last_timestamp(), b.last_timestamp());
    }

    #[test]
    fn an_oversized_body_is_refused_by_gather_and_changes_nothing() {
        let mut m = LiveMuxer::new();
        let mut g = Gathered::new();
        m.gather(&mut g, TAG_VIDEO, 1000, &Bytes::from_static(b"key"), false).unwrap();
        let big = Bytes::from(vec![0; crate::writer::MAX_TAG_BODY + 1]);
        assert!(m.gather(&mut g, TAG_VIDEO, 9000, &big, false).is_err());
        assert_eq!(g.len(), 15 + 3);
        m.gather(&mut g, TAG_VIDEO, 1040, &Bytes::from_static(b"inter"), false).unwrap();
        let mut pieces = Vec::new();
        g.finish(&mut pieces);
        let mut flv = LiveMuxer::header(false, true).to_vec();
        flv.extend_from_slice(&pieces.concat());
        assert_eq!(tags(&flv), [(TAG_VIDEO, 0), (TAG_VIDEO, 40)], "the refused tag left no trace");
        assert_eq!(m.last_timestamp(), 40);
    }

    #[test]
    fn an_oversized_body_is_refused_and_changes_nothing() {
        let (mut m, mut g) = (LiveMuxer::new(), Gathered::new());
        let mut out = Vec::new();
        let big = vec![0; crate::writer::MAX_TAG_BODY + 1];
        // Refused as the first media frame: it must not set the player's base either.
        assert!(m.write(&mut out, TAG_VIDEO, 9000, &big, false).is_err());
        assert!(m.gather(&mut g, TAG_VIDEO, 9000, &Bytes::from(big), false).is_err());
        assert!(out.is_empty() && g.is_empty());
        m.write(&mut out, TAG_VIDEO, 1000, b"key", false).unwrap();
        m.write(&mut out, TAG_VIDEO, 1040, b"inter", false).unwrap();
        let mut flv = LiveMuxer::header(false, true).to_vec();
        flv.extend_from_slice(&out);
        assert_eq!(tags(&flv), [(TAG_VIDEO, 0), (TAG_VIDEO, 40)]);
    }
}

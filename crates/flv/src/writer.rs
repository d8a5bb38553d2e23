//! FLV file writing into a `Vec<u8>`. Defined by: FLV spec v10.1, E.2 (header) and E.3
//! (body: tags, each followed by PreviousTagSize).
//!
//! [`write_tag`] writes one tag. [`FileWriter`] writes a whole recording: the header, an
//! `onMetaData` with a reserved size (see [`crate::meta`]), then tags, and at the end says
//! which bytes to rewrite ([`Patch`]es) so the header and metadata describe the finished file.
//! Every tag is complete on its own, so a file cut after any tag plays up to there.

use crate::meta::{Keyframe, RecordingMeta};
use crate::FlvError;

/// `TagType` of audio tags.
pub const TAG_AUDIO: u8 = 8;
/// `TagType` of video tags.
pub const TAG_VIDEO: u8 = 9;
/// `TagType` of script data tags (`onMetaData`).
pub const TAG_SCRIPT: u8 = 18;

/// Size of the FLV header (`FLV`, version, flags, DataOffset).
pub const HEADER_SIZE: usize = 9;
/// Size of a tag header.
pub const TAG_HEADER_SIZE: usize = 11;
/// Largest tag body: DataSize is 24 bits.
pub const MAX_TAG_BODY: usize = 0xFF_FFFF;
/// Where the first tag starts: the header and PreviousTagSize0.
pub const FIRST_TAG_OFFSET: u64 = HEADER_SIZE as u64 + 4;
/// Offset of the header's TypeFlags byte (audio and video present).
pub const TYPE_FLAGS_OFFSET: u64 = 4;
/// Longest gap between two frames of one kind taken as that kind's frame interval; longer
/// gaps are pauses, not frame durations.
const MAX_FRAME_INTERVAL_MS: u32 = 1000;

/// TypeFlags: bit 2 audio, bit 0 video.
pub fn type_flags(has_audio: bool, has_video: bool) -> u8 {
    (u8::from(has_audio) << 2) | u8::from(has_video)
}

/// The FLV file header followed by PreviousTagSize0 (0): the first 13 bytes of every FLV file.
pub fn file_header(has_audio: bool, has_video: bool) -> [u8; 13] {
    let flags = type_flags(has_audio, has_video);
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, HEADER_SIZE as u8, 0, 0, 0, 0]
}

/// Appends one tag (header, `body`, PreviousTagSize) to `out`.
///
/// `timestamp_ms` is split into the 24-bit Timestamp and the TimestampExtended byte, so the
/// full 32 bits survive. StreamID is always 0. Fails only if `body` is longer than
/// [`MAX_TAG_BODY`] (which an RTMP message cannot be, its length being 24 bits too).
pub fn write_tag(out: &mut Vec<u8>, tag_type: u8, timestamp_ms: u32, body: &[u8]) -> Result<(), FlvError> {
    out.reserve(TAG_HEADER_SIZE + body.len() + 4);
    write_tag_header(out, tag_type, timestamp_ms, body.len())?;
    out.extend_from_slice(body);
    out.extend_from_slice(&previous_tag_size(body.len()));
    Ok(())
}

/// Appends only the 11-byte header of a tag whose body is `body_len` bytes long: the body and
/// its [`previous_tag_size`] are written by the caller (a live player's tags share the body).
/// Fails only if `body_len` is over [`MAX_TAG_BODY`].
pub fn write_tag_header(out: &mut Vec<u8>, tag_type: u8, timestamp_ms: u32, body_len: usize) -> Result<(), FlvError> {
    if body_len > MAX_TAG_BODY {
        return Err(FlvError::TagTooLarge(body_len));
    }
    let size = (body_len as u32).to_be_bytes();
    let ts = timestamp_ms.to_be_bytes();
    out.push(tag_type);
    out.extend_from_slice(&size[1..]);
    out.extend_from_slice(&[ts[1], ts[2], ts[3], ts[0]]);
    out.extend_from_slice(&[0, 0, 0]);
    Ok(())
}

/// The PreviousTagSize that follows a tag whose body is `body_len` bytes long.
pub fn previous_tag_size(body_len: usize) -> [u8; 4] {
    ((TAG_HEADER_SIZE + body_len) as u32).to_be_bytes()
}

/// Bytes to write over a file at `offset` (the file does not grow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    /// Where, from the start of the file.
    pub offset: u64,
    /// What.
    pub data: Vec<u8>,
}

/// Where a recording's `onMetaData` body lies, and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaSlot {
    /// Offset of the body in the file.
    pub offset: u64,
    /// Its reserved size.
    pub size: usize,
    /// Its content.
    pub meta: RecordingMeta,
}

/// Writes an FLV recording: header, reserved `onMetaData`, tags; tracks what the metadata
/// needs at the end (duration, size, keyframe positions, which tracks occurred).
#[derive(Debug, Clone)]
pub struct FileWriter {
    len: u64,
    slot: Option<MetaSlot>,
    has_audio: bool,
    has_video: bool,
    video: Track,
    audio: Track,
}

/// Timing of one kind of tag, for the duration.
#[derive(Debug, Clone, Copy, Default)]
struct Track {
    last: Option<u32>,
    interval: u32,
}

impl Track {
    fn note(&mut self, ts: u32) {
        if let Some(last) = self.last {
            let d = ts.saturating_sub(last);
            if d > 0 && d <= MAX_FRAME_INTERVAL_MS {
                self.interval = d;
            }
        }
        self.last = Some(self.last.map_or(ts, |l| l.max(ts)));
    }

    /// When this track's last frame ends.
    fn end(&self) -> u64 {
        self.last.map_or(0, |l| u64::from(l) + u64::from(self.interval))
    }
}

impl FileWriter {
    /// Starts a file: appends the header and `meta` with room for `keyframe_capacity` index
    /// entries to `out`. The header's TypeFlags say what `meta` says until [`Self::finish`]
    /// sets what was written.
    pub fn create(meta: RecordingMeta, keyframe_capacity: usize, out: &mut Vec<u8>) -> Result<Self, FlvError> {
        let size = meta.reserve(keyframe_capacity);
        let body = meta.encode(size)?;
        out.extend_from_slice(&file_header(meta.has_audio, meta.has_video));
        let offset = FIRST_TAG_OFFSET + TAG_HEADER_SIZE as u64;
        write_tag(out, TAG_SCRIPT, 0, &body)?;
        let len = FIRST_TAG_OFFSET + (TAG_HEADER_SIZE + body.len() + 4) as u64;
        let slot = MetaSlot { offset, size, meta };
        Ok(FileWriter { len, slot: Some(slot), ..Self::empty(0) })
    }

    /// Continues a file whose first `len` bytes are sound (a complete header and whole
    /// tags). `slot` is its recording metadata when it has one; without one the file is
    /// continued as it is. Tell it about the tags already there with [`Self::note`].
    pub fn resume(len: u64, slot: Option<MetaSlot>) -> Self {
        FileWriter { slot, ..Self::empty(len) }
    }

    fn empty(len: u64) -> Self {
        FileWriter {
            len,
            slot: None,
            has_audio: false,
            has_video: false,
            video: Track::default(),
            audio: Track::default(),
        }
    }

    /// Appends one tag to `out`; `keyframe` marks a video keyframe for the index.
    pub fn write(
        &mut self,
        out: &mut Vec<u8>,
        tag_type: u8,
        timestamp_ms: u32,
        body: &[u8],
        keyframe: bool,
    ) -> Result<(), FlvError> {
        write_tag(out, tag_type, timestamp_ms, body)?;
        let offset = self.len;
        self.len += (TAG_HEADER_SIZE + body.len() + 4) as u64;
        self.note(offset, tag_type, timestamp_ms, keyframe);
        Ok(())
    }

    /// Accounts for a tag at `offset` that is already in the file (when resuming).
    pub fn note(&mut self, offset: u64, tag_type: u8, timestamp_ms: u32, keyframe: bool) {
        match tag_type {
            TAG_VIDEO => {
                self.has_video = true;
                self.video.note(timestamp_ms);
                if keyframe {
                    if let Some(slot) = &mut self.slot {
                        slot.meta.keyframes.push(Keyframe { time_ms: timestamp_ms.into(), position: offset });
                    }
                }
            }
            TAG_AUDIO => {
                self.has_audio = true;
                self.audio.note(timestamp_ms);
            }
            _ => {}
        }
    }

    /// Where the first media tag goes: after the header and the recording metadata.
    pub fn header_len(&self) -> u64 {
        self.slot.as_ref().map_or(FIRST_TAG_OFFSET, |s| s.offset + s.size as u64 + 4)
    }

    /// The file's length so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True before the header is written (a resumed empty file).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The timestamp a tag written next should not go below: the latest written.
    pub fn last_timestamp(&self) -> u32 {
        self.video.last.max(self.audio.last).unwrap_or(0)
    }

    /// How long the recording is so far: up to the end of its last frame, in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.video.end().max(self.audio.end())
    }

    /// The recording metadata, as it stands.
    pub fn meta(&self) -> Option<&RecordingMeta> {
        self.slot.as_ref().map(|s| &s.meta)
    }

    /// Forgets everything from `len` on: the bytes written after it did not reach the file
    /// (a write failed and the file was cut back). Keyframes there leave the index; the
    /// duration keeps what it knew.
    pub fn rewind(&mut self, len: u64) {
        self.len = self.len.min(len);
        if let Some(slot) = &mut self.slot {
            slot.meta.keyframes.retain(|k| k.position < len);
        }
    }

    /// The metadata as it stands, still in progress (duration and size so far, the index so
    /// far), so a file cut short by a crash plays with about the right duration. `None`
    /// without recording metadata.
    pub fn progress(&mut self) -> Result<Option<Patch>, FlvError> {
        self.meta_patch(true)
    }

    /// The bytes to write so that the file describes itself: TypeFlags for the tracks
    /// written, and the final metadata (no longer in progress, duration, size, keyframe
    /// index). A file without recording metadata gets the flags only.
    pub fn finish(&mut self) -> Result<Vec<Patch>, FlvError> {
        let mut patches = Vec::new();
        if self.len >= FIRST_TAG_OFFSET && (self.has_audio || self.has_video) {
            let flags = type_flags(self.has_audio, self.has_video);
            patches.push(Patch { offset: TYPE_FLAGS_OFFSET, data: vec![flags] });
        }
        patches.extend(self.meta_patch(false)?);
        Ok(patches)
    }

    fn meta_patch(&mut self, in_progress: bool) -> Result<Option<Patch>, FlvError> {
        let (duration_ms, len, has_audio, has_video) = (self.duration_ms(), self.len, self.has_audio, self.has_video);
        let Some(slot) = &mut self.slot else { return Ok(None) };
        let m = &mut slot.meta;
        m.in_progress = in_progress;
        m.duration_ms = duration_ms;
        m.filesize = len;
        m.has_audio |= has_audio;
        m.has_video |= has_video;
        if !in_progress {
            (m.has_audio, m.has_video) = (has_audio, has_video);
        }
        Ok(Some(Patch { offset: slot.offset, data: m.encode(slot.size)? }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::{FlvReader, TagHeader};
    use bytes::Bytes;

    fn apply(file: &mut [u8], patches: &[Patch]) {
        for p in patches {
            let at = p.offset as usize;
            file[at..at + p.data.len()].copy_from_slice(&p.data);
        }
    }

    /// 25 fps video with a keyframe every 10 frames and audio every 23 ms, for `ms`.
    fn record(w: &mut FileWriter, out: &mut Vec<u8>, from: u32, ms: u32) {
        let (mut v, mut a) = (from, from);
        while v < from + ms {
            if a <= v {
                w.write(out, TAG_AUDIO, a, &[0xaf, 1, 0x21], false).unwrap();
                a += 23;
            } else {
                let key = (v - from).is_multiple_of(400);
                w.write(out, TAG_VIDEO, v, &[if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 9], key).unwrap();
                v += 40;
            }
        }
    }

    #[test]
    fn a_recording_describes_itself_when_finished() {
        let mut out = Vec::new();
        let meta = RecordingMeta::new(None, true, false);
        let mut w = FileWriter::create(meta, 100, &mut out).unwrap();
        assert_eq!(w.len(), out.len() as u64);
        assert_eq!(w.header_len(), out.len() as u64);
        assert_eq!(out[4], 4, "audio only until the video shows up");
        record(&mut w, &mut out, 0, 2000);
        assert_eq!(w.len(), out.len() as u64);
        assert_eq!(w.duration_ms(), 2000, "the last frame (1960) plus its 40 ms");
        let patches = w.finish().unwrap();
        apply(&mut out, &patches);
        assert_eq!(out[4], 5, "TypeFlags say what was written");

        let mut tags = FlvReader::new(Bytes::from(out.clone())).unwrap();
        let meta = RecordingMeta::decode(&tags.next().unwrap().unwrap().body).unwrap();
        assert!(!meta.in_progress);
        assert_eq!((meta.duration_ms, meta.filesize), (2000, out.len() as u64));
        assert_eq!(meta.keyframes.len(), 5);
        for k in &meta.keyframes {
            let h = TagHeader::parse(&out[k.position as usize..]).unwrap();
            assert_eq!((h.tag_type, h.timestamp as u64), (TAG_VIDEO, k.time_ms), "positions point at tag headers");
            assert_eq!(out[k.position as usize + TAG_HEADER_SIZE] >> 4, 1, "a keyframe");
        }
        assert_eq!(tags.filter(Result::is_ok).count(), 50 + 86);
    }

    #[test]
    fn resuming_continues_the_index_and_duration() {
        let mut out = Vec::new();
        let mut w = FileWriter::create(RecordingMeta::new(None, true, true), 100, &mut out).unwrap();
        record(&mut w, &mut out, 0, 1000);
        let slot = w.slot.clone();
        // A writer that finds the file on disk: its tags are noted, then it writes on.
        let mut r = FileWriter::resume(
            out.len() as u64,
            slot.map(|mut s| {
                s.meta.keyframes.clear();
                s
            }),
        );
        let mut pos = FIRST_TAG_OFFSET as usize;
        while pos < out.len() {
            let h = TagHeader::parse(&out[pos..]).unwrap();
            let key = h.tag_type == TAG_VIDEO && out[pos + TAG_HEADER_SIZE] >> 4 == 1;
            r.note(pos as u64, h.tag_type, h.timestamp, key);
            pos += h.tag_len() as usize;
        }
        assert_eq!(r.last_timestamp(), 960);
        record(&mut r, &mut out, 1000, 1000);
        apply(&mut out, &r.finish().unwrap());
        let meta = RecordingMeta::decode(&FlvReader::new(Bytes::from(out)).unwrap().next().unwrap().unwrap().body);
        let meta = meta.unwrap();
        assert_eq!(meta.duration_ms, 2000);
        assert_eq!(meta.keyframes.iter().map(|k| k.time_ms).collect::<Vec<_>>(), [0, 400, 800, 1000, 1400, 1800]);
    }

    #[test]
    fn progress_and_rewind() {
        let mut out = Vec::new();
        let mut w = FileWriter::create(RecordingMeta::new(None, false, true), 10, &mut out).unwrap();
        record(&mut w, &mut out, 0, 1000);
        let p = w.progress().unwrap().unwrap();
        apply(&mut out, &[p]);
        let read = |out: &[u8]| {
            let tag = FlvReader::new(Bytes::from(out.to_vec())).unwrap().next().unwrap().unwrap();
            RecordingMeta::decode(&tag.body).unwrap()
        };
        let m = read(&out);
        assert!(m.in_progress && m.has_audio && m.has_video);
        assert_eq!((m.duration_ms, m.filesize, m.keyframes.len()), (1000, out.len() as u64, 3));
        // The last 40 ms of tags never reached the disk.
        let cut = m.keyframes[2].position;
        w.rewind(cut);
        out.truncate(cut as usize);
        assert_eq!(w.len(), cut);
        apply(&mut out, &w.finish().unwrap());
        let m = read(&out);
        assert_eq!((m.in_progress, m.filesize, m.keyframes.len()), (false, cut, 2));
    }

    #[test]
    fn a_file_without_recording_metadata_gets_flags_only() {
        let mut out = file_header(false, false).to_vec();
        let mut w = FileWriter::resume(out.len() as u64, None);
        w.write(&mut out, TAG_AUDIO, 0, &[0xaf, 1], false).unwrap();
        assert_eq!(w.finish().unwrap(), [Patch { offset: 4, data: vec![4] }]);
        assert!(FileWriter::resume(0, None).finish().unwrap().is_empty());
    }
}

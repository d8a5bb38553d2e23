//! FLV file reading from a `Bytes` buffer; tag bodies are zero-copy slices of it.
//! Defined by: FLV spec v10.1, E.2 and E.3.

use bytes::Bytes;

use crate::writer::{HEADER_SIZE, TAG_HEADER_SIZE};
use crate::FlvError;

/// The FLV file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Version byte (1).
    pub version: u8,
    /// TypeFlagsAudio.
    pub has_audio: bool,
    /// TypeFlagsVideo.
    pub has_video: bool,
}

/// One FLV tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// TagType: 8 audio, 9 video, 18 script data (see [`crate::writer::TAG_AUDIO`] etc.).
    /// The Filter bit and reserved bits are masked off.
    pub tag_type: u8,
    /// Timestamp in milliseconds, with TimestampExtended as the high byte.
    pub timestamp: u32,
    /// StreamID (always 0 in valid files).
    pub stream_id: u32,
    /// The tag body: an RTMP message payload for audio, video and script tags.
    pub body: Bytes,
}

/// Iterates over the tags of an FLV file held in memory.
///
/// Yields `Err` once for a truncated tag and then stops. A file that ends right after a tag
/// body, without its final PreviousTagSize, is accepted.
#[derive(Debug, Clone)]
pub struct FlvReader {
    data: Bytes,
    pos: usize,
    header: FileHeader,
    failed: bool,
}

impl FlvReader {
    /// Checks the file header and positions the reader at the first tag.
    pub fn new(data: Bytes) -> Result<FlvReader, FlvError> {
        if data.len() < HEADER_SIZE {
            return Err(FlvError::Truncated("FLV header"));
        }
        if &data[..3] != b"FLV" {
            return Err(FlvError::BadSignature([data[0], data[1], data[2]]));
        }
        let header = FileHeader {
            version: data[3],
            has_audio: data[4] & 0x04 != 0,
            has_video: data[4] & 0x01 != 0,
        };
        let offset = u32::from_be_bytes([data[5], data[6], data[7], data[8]]);
        if (offset as usize) < HEADER_SIZE {
            return Err(FlvError::BadHeaderSize(offset));
        }
        // Skip the rest of the header and PreviousTagSize0.
        let pos = (offset as usize).saturating_add(4);
        Ok(FlvReader {
            data,
            pos,
            header,
            failed: false,
        })
    }

    /// The file header.
    pub fn header(&self) -> FileHeader {
        self.header
    }

    fn next_tag(&mut self) -> Result<Tag, FlvError> {
        let h = self
            .data
            .get(self.pos..self.pos + TAG_HEADER_SIZE)
            .ok_or(FlvError::Truncated("FLV tag header"))?;
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let tag = Tag {
            tag_type: h[0] & 0x1F,
            timestamp: u32::from_be_bytes([h[7], h[4], h[5], h[6]]),
            stream_id: u32::from_be_bytes([0, h[8], h[9], h[10]]),
            body: Bytes::new(),
        };
        let start = self.pos + TAG_HEADER_SIZE;
        let end = start + size;
        if end > self.data.len() {
            return Err(FlvError::Truncated("FLV tag body"));
        }
        self.pos = end.saturating_add(4).min(self.data.len());
        Ok(Tag {
            body: self.data.slice(start..end),
            ..tag
        })
    }
}

impl Iterator for FlvReader {
    type Item = Result<Tag, FlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let tag = self.next_tag();
        self.failed = tag.is_err();
        Some(tag)
    }
}

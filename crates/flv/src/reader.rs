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

/// A tag header: the 11 bytes before each tag body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagHeader {
    /// TagType, with the Filter and reserved bits masked off.
    pub tag_type: u8,
    /// DataSize: the body's length.
    pub size: u32,
    /// Timestamp in milliseconds, with TimestampExtended as the high byte.
    pub timestamp: u32,
    /// StreamID.
    pub stream_id: u32,
}

impl TagHeader {
    /// Parses the first [`TAG_HEADER_SIZE`] bytes of `data`.
    pub fn parse(data: &[u8]) -> Result<TagHeader, FlvError> {
        let h = data.get(..TAG_HEADER_SIZE).ok_or(FlvError::Truncated("FLV tag header"))?;
        Ok(TagHeader {
            tag_type: h[0] & 0x1F,
            size: u32::from_be_bytes([0, h[1], h[2], h[3]]),
            timestamp: u32::from_be_bytes([h[7], h[4], h[5], h[6]]),
            stream_id: u32::from_be_bytes([0, h[8], h[9], h[10]]),
        })
    }

    /// The whole tag's length in a file: header, body and the PreviousTagSize after it.
    pub fn tag_len(&self) -> u64 {
        TAG_HEADER_SIZE as u64 + u64::from(self.size) + 4
    }
}

/// Checks the 13 bytes an FLV file starts with (header and PreviousTagSize0) and returns the
/// header and where the first tag starts.
pub fn parse_file_header(data: &[u8]) -> Result<(FileHeader, u64), FlvError> {
    if data.len() < HEADER_SIZE {
        return Err(FlvError::Truncated("FLV header"));
    }
    if &data[..3] != b"FLV" {
        return Err(FlvError::BadSignature([data[0], data[1], data[2]]));
    }
    let header = FileHeader { version: data[3], has_audio: data[4] & 0x04 != 0, has_video: data[4] & 0x01 != 0 };
    let offset = u32::from_be_bytes([data[5], data[6], data[7], data[8]]);
    if (offset as usize) < HEADER_SIZE {
        return Err(FlvError::BadHeaderSize(offset));
    }
    Ok((header, u64::from(offset) + 4))
}

impl FlvReader {
    /// Checks the file header and positions the reader at the first tag.
    pub fn new(data: Bytes) -> Result<FlvReader, FlvError> {
        let (header, first_tag) = parse_file_header(&data)?;
        // Skip the rest of the header and PreviousTagSize0.
        let pos = usize::try_from(first_tag).unwrap_or(usize::MAX);
        Ok(FlvReader { data, pos, header, failed: false })
    }

    /// The file header.
    pub fn header(&self) -> FileHeader {
        self.header
    }

    fn next_tag(&mut self) -> Result<Tag, FlvError> {
        let h = TagHeader::parse(self.data.get(self.pos..).unwrap_or_default())?;
        let size = h.size as usize;
        let tag = Tag { tag_type: h.tag_type, timestamp: h.timestamp, stream_id: h.stream_id, body: Bytes::new() };
        let start = self.pos + TAG_HEADER_SIZE;
        let end = start + size;
        if end > self.data.len() {
            return Err(FlvError::Truncated("FLV tag body"));
        }
        self.pos = end.saturating_add(4).min(self.data.len());
        Ok(Tag { body: self.data.slice(start..end), ..tag })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::{file_header, write_tag, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};

    fn sample_file() -> Vec<u8> {
        let mut out = file_header(true, true).to_vec();
        write_tag(&mut out, TAG_SCRIPT, 0, b"\x02\x00\x0aonMetaData").unwrap();
        write_tag(&mut out, TAG_VIDEO, 0, &[0x17, 0, 0, 0, 0, 1]).unwrap();
        write_tag(&mut out, TAG_AUDIO, 23, &[0xaf, 1, 0x21]).unwrap();
        // Beyond 24 bits: uses TimestampExtended.
        write_tag(&mut out, TAG_VIDEO, 0x1234_5678, &[0x27, 1, 0, 0, 0]).unwrap();
        write_tag(&mut out, TAG_AUDIO, 7, &[]).unwrap();
        out
    }

    #[test]
    fn header_bytes() {
        assert_eq!(file_header(true, true), *b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
        assert_eq!(file_header(false, true)[4], 1);
        assert_eq!(file_header(true, false)[4], 4);
        let mut out = Vec::new();
        write_tag(&mut out, TAG_VIDEO, 0x0102_0304, &[0xaa]).unwrap();
        assert_eq!(out, [9, 0, 0, 1, 2, 3, 4, 1, 0, 0, 0, 0xaa, 0, 0, 0, 12]);
    }

    #[test]
    fn round_trip() {
        let data = Bytes::from(sample_file());
        let reader = FlvReader::new(data.clone()).unwrap();
        assert_eq!(reader.header(), FileHeader { version: 1, has_audio: true, has_video: true });
        let tags: Vec<Tag> = reader.collect::<Result<_, _>>().unwrap();
        let summary: Vec<(u8, u32, usize)> = tags.iter().map(|t| (t.tag_type, t.timestamp, t.body.len())).collect();
        assert_eq!(summary, [(18, 0, 13), (9, 0, 6), (8, 23, 3), (9, 0x1234_5678, 5), (8, 7, 0)]);
        assert_eq!(&tags[2].body[..], [0xaf, 1, 0x21]);
        // Zero copy: the body points into the original buffer.
        let start = data.as_ptr() as usize;
        let body = tags[1].body.as_ptr() as usize;
        assert!(body > start && body < start + data.len());
    }

    #[test]
    fn errors() {
        assert_eq!(
            FlvReader::new(Bytes::from_static(b"FLX\x01\x05\x00\x00\x00\x09")).unwrap_err(),
            FlvError::BadSignature(*b"FLX")
        );
        assert_eq!(FlvReader::new(Bytes::from_static(b"FLV\x01")).unwrap_err(), FlvError::Truncated("FLV header"));
        assert_eq!(
            FlvReader::new(Bytes::from_static(b"FLV\x01\x05\x00\x00\x00\x02")).unwrap_err(),
            FlvError::BadHeaderSize(2)
        );
        // Cut inside the last tag: the earlier tags come out, then one error, then nothing.
        let mut file = sample_file();
        file.truncate(file.len() - 21);
        let results: Vec<_> = FlvReader::new(Bytes::from(file)).unwrap().collect();
        assert_eq!(results.len(), 4);
        assert!(results[..3].iter().all(Result::is_ok));
        assert_eq!(results[3], Err(FlvError::Truncated("FLV tag body")));
        // Missing final PreviousTagSize is fine.
        let mut file = sample_file();
        file.truncate(file.len() - 4);
        assert_eq!(FlvReader::new(Bytes::from(file)).unwrap().filter(Result::is_ok).count(), 5);
    }

    #[test]
    fn too_large_tag() {
        let big = vec![0; crate::writer::MAX_TAG_BODY + 1];
        assert_eq!(write_tag(&mut Vec::new(), TAG_VIDEO, 0, &big), Err(FlvError::TagTooLarge(big.len())));
    }

    #[test]
    fn ffmpeg_style_file_parses_end_to_end() {
        // Parse every tag of a written file with the tag parsers.
        let mut out = file_header(true, true).to_vec();
        let seq: Vec<u8> = (0..crate::tag::tests::AVC_SEQUENCE_HEADER_TAG.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&crate::tag::tests::AVC_SEQUENCE_HEADER_TAG[i..i + 2], 16).unwrap())
            .collect();
        write_tag(&mut out, TAG_VIDEO, 0, &seq).unwrap();
        write_tag(&mut out, TAG_AUDIO, 0, &[0xaf, 0, 0x12, 0x10]).unwrap();
        let mut video = None;
        let mut audio = None;
        for tag in FlvReader::new(Bytes::from(out)).unwrap() {
            let tag = tag.unwrap();
            if tag.tag_type == TAG_VIDEO {
                let h = crate::parse_video(&tag.body).unwrap();
                video = crate::parse_video_config(h.codec, h.payload(&tag.body)).unwrap();
            } else {
                let h = crate::parse_audio(&tag.body).unwrap();
                audio = crate::parse_audio_config(h.codec, h.payload(&tag.body)).unwrap();
            }
        }
        assert_eq!(video.map(|v| (v.width, v.height)), Some((1280, 720)));
        assert_eq!(audio.map(|a| (a.sample_rate, a.channels)), Some((44100, 2)));
    }
}

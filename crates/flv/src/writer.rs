//! FLV file writing into a `Vec<u8>`. Defined by: FLV spec v10.1, E.2 (header) and E.3
//! (body: tags, each followed by PreviousTagSize).

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

/// The FLV file header followed by PreviousTagSize0 (0): the first 13 bytes of every FLV file.
pub fn file_header(has_audio: bool, has_video: bool) -> [u8; 13] {
    let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, HEADER_SIZE as u8, 0, 0, 0, 0]
}

/// Appends one tag (header, `body`, PreviousTagSize) to `out`.
///
/// `timestamp_ms` is split into the 24-bit Timestamp and the TimestampExtended byte, so the
/// full 32 bits survive. StreamID is always 0. Fails only if `body` is longer than
/// [`MAX_TAG_BODY`] (which an RTMP message cannot be, its length being 24 bits too).
pub fn write_tag(out: &mut Vec<u8>, tag_type: u8, timestamp_ms: u32, body: &[u8]) -> Result<(), FlvError> {
    if body.len() > MAX_TAG_BODY {
        return Err(FlvError::TagTooLarge(body.len()));
    }
    let size = (body.len() as u32).to_be_bytes();
    let ts = timestamp_ms.to_be_bytes();
    out.reserve(TAG_HEADER_SIZE + body.len() + 4);
    out.push(tag_type);
    out.extend_from_slice(&size[1..]);
    out.extend_from_slice(&[ts[1], ts[2], ts[3], ts[0]]);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(body);
    out.extend_from_slice(&((TAG_HEADER_SIZE + body.len()) as u32).to_be_bytes());
    Ok(())
}

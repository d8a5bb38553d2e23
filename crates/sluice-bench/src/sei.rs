//! End-to-end latency stamps carried in H.264 frames.
//!
//! The publisher adds one SEI NAL unit (ITU-T H.264 7.3.2.3) to every video frame, holding a
//! `user_data_unregistered` message (payload type 5, D.1.7): [`SEI_UUID`], then the send time
//! in microseconds since the Unix epoch and a mark, both big-endian `u64`. sluice-bench's
//! publisher marks each frame with its RTMP timestamp, so a player that gets the stream on its
//! own timeline (HTTP-FLV starts at 0) can map audio timestamps back to the publisher's. The NAL is
//! escaped with emulation prevention bytes (7.4.1), so it survives remuxing to Annex B (HLS,
//! MPEG-TS) and can be found there by [`read_annexb`] as well as in FLV/RTMP tags by
//! [`read_avc`].
//!
//! Nothing here panics on malformed input: readers return `None`.

use bytes::{BufMut, Bytes, BytesMut};

/// The `uuid_iso_iec_11578` that marks our `user_data_unregistered` SEI message.
pub const SEI_UUID: [u8; 16] = *b"sluice-bench-lat";

/// NAL unit type of SEI.
const NAL_SEI: u8 = 6;
/// SEI payload type `user_data_unregistered`.
const PAYLOAD_USER_DATA_UNREGISTERED: u8 = 5;
/// UUID + send time + mark.
const PAYLOAD_SIZE: usize = 16 + 8 + 8;
/// Legacy FLV `CodecID` of AVC.
const CODEC_AVC: u8 = 7;
/// Legacy `AVCPacketType` values.
const AVC_SEQUENCE_HEADER: u8 = 0;
const AVC_NALU: u8 = 1;
/// FrameType (1 key, 2 inter, 3 disposable, 4 generated key) + CodecID, AVCPacketType, CTS.
const AVC_TAG_HEADER: usize = 5;

/// Returns `tag_body` (a legacy FLV/RTMP AVC video tag body carrying NAL units) with our SEI
/// NAL unit added, or `None` for anything else: sequence headers, end of sequence, command
/// frames, Enhanced RTMP headers, other codecs, an unusable `nal_length_size`.
///
/// The SEI goes right before the first slice (VCL NAL unit) so that an access unit delimiter,
/// parameter sets and other SEI messages (buffering period SEI must come first) keep their
/// place, as H.264 7.4.1.2.3 requires; in a frame holding only a slice, as encoders usually
/// send, that makes it the first NAL unit. If the NAL units cannot be walked (bad lengths) it
/// goes first.
pub fn stamp_avc(tag_body: &[u8], nal_length_size: usize, send_time_us: u64, mark: u64) -> Option<Bytes> {
    let nalus = avc_nalus(tag_body)?;
    if !(1..=4).contains(&nal_length_size) {
        return None;
    }
    let sei = sei_nal(send_time_us, mark);
    // Fails only for nal_length_size 1 and an SEI over 255 bytes, which ours never is.
    let len = u32::try_from(sei.len()).ok().filter(|&l| nal_length_size == 4 || l >> (8 * nal_length_size) == 0)?;

    let at = first_vcl_offset(nalus, nal_length_size).unwrap_or(0);
    let mut out = BytesMut::with_capacity(tag_body.len() + nal_length_size + sei.len());
    out.put_slice(&tag_body[..AVC_TAG_HEADER]);
    out.put_slice(&nalus[..at]);
    out.put_slice(&len.to_be_bytes()[4 - nal_length_size..]);
    out.put_slice(&sei);
    out.put_slice(&nalus[at..]);
    Some(out.freeze())
}

/// Finds our stamp in a legacy FLV/RTMP AVC video tag body and returns
/// `(send_time_us, mark)`.
pub fn read_avc(tag_body: &[u8], nal_length_size: usize) -> Option<(u64, u64)> {
    let mut nalus = avc_nalus(tag_body)?;
    if !(1..=4).contains(&nal_length_size) {
        return None;
    }
    while nalus.len() >= nal_length_size {
        let (prefix, rest) = nalus.split_at(nal_length_size);
        let len = prefix.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let nal = rest.get(..len)?;
        if let Some(stamp) = read_sei_nal(nal) {
            return Some(stamp);
        }
        nalus = &rest[len..];
    }
    None
}

/// Finds our stamp in an H.264 Annex B byte stream (NAL units after `00 00 01` or
/// `00 00 00 01` start codes) and returns `(send_time_us, mark)`.
pub fn read_annexb(data: &[u8]) -> Option<(u64, u64)> {
    let mut pos = find_start_code(data, 0)?;
    loop {
        let next = find_start_code(data, pos);
        // A NAL unit ends where the next start code begins; its zero bytes (a 4-byte start
        // code's leading zero, trailing_zero_8bits) belong to the start code. Our parser
        // ignores what follows our message, so they need not be trimmed.
        let end = next.map_or(data.len(), |n| n - 3);
        if let Some(stamp) = read_sei_nal(&data[pos..end]) {
            return Some(stamp);
        }
        pos = next?;
    }
}

/// The NAL unit length size (`lengthSizeMinusOne + 1`, ISO/IEC 14496-15 5.3.3.1) from the
/// AVCDecoderConfigurationRecord of a legacy FLV/RTMP AVC sequence header tag body.
pub fn nal_length_size(avc_sequence_header_body: &[u8]) -> Option<usize> {
    let b = avc_sequence_header_body;
    if b.len() < AVC_TAG_HEADER + 5 || b[0] & 0x0F != CODEC_AVC || b[0] & 0x80 != 0 || b[1] != AVC_SEQUENCE_HEADER {
        return None;
    }
    let record = &b[AVC_TAG_HEADER..];
    // configurationVersion must be 1.
    if record[0] != 1 {
        return None;
    }
    Some(usize::from(record[4] & 0x03) + 1)
}

/// The NAL units (`lengthSize`-prefixed) of a legacy AVC coded-frame tag body.
fn avc_nalus(tag_body: &[u8]) -> Option<&[u8]> {
    let b = tag_body;
    let frame_type = b.first()? >> 4;
    // Frame types 1..=4 carry video; 5 is a command frame, the rest reserved. A set high bit
    // means an Enhanced RTMP header.
    let is_avc_nalu =
        b.len() >= AVC_TAG_HEADER && (1..=4).contains(&frame_type) && b[0] & 0x0F == CODEC_AVC && b[1] == AVC_NALU;
    is_avc_nalu.then(|| &b[AVC_TAG_HEADER..])
}

/// Offset in `nalus` of the first VCL NAL unit (types 1..=5), if the lengths can be walked.
fn first_vcl_offset(nalus: &[u8], nal_length_size: usize) -> Option<usize> {
    let mut pos = 0;
    while pos + nal_length_size < nalus.len() {
        let len = nalus[pos..pos + nal_length_size].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if (1..=5).contains(&(nalus[pos + nal_length_size] & 0x1F)) {
            return Some(pos);
        }
        pos = pos.checked_add(nal_length_size + len)?;
    }
    (pos == nalus.len()).then_some(pos)
}

/// Our SEI NAL unit, escaped: header, message, rbsp_trailing_bits.
fn sei_nal(send_time_us: u64, mark: u64) -> Vec<u8> {
    let mut rbsp = [0u8; 2 + PAYLOAD_SIZE + 1];
    rbsp[0] = PAYLOAD_USER_DATA_UNREGISTERED;
    rbsp[1] = PAYLOAD_SIZE as u8;
    rbsp[2..18].copy_from_slice(&SEI_UUID);
    rbsp[18..26].copy_from_slice(&send_time_us.to_be_bytes());
    rbsp[26..34].copy_from_slice(&mark.to_be_bytes());
    rbsp[34] = 0x80;

    // nal_ref_idc 0, nal_unit_type 6.
    let mut nal = Vec::with_capacity(1 + rbsp.len() + rbsp.len() / 2);
    nal.push(NAL_SEI);
    let mut zeros = 0;
    for &b in &rbsp {
        if zeros >= 2 && b <= 3 {
            nal.push(3);
            zeros = 0;
        }
        nal.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    nal
}

/// Our stamp, if `nal` (header byte first, escaped) is an SEI NAL unit holding it.
fn read_sei_nal(nal: &[u8]) -> Option<(u64, u64)> {
    let (&header, escaped) = nal.split_first()?;
    if header & 0x1F != NAL_SEI {
        return None;
    }
    let rbsp = unescape(escaped);
    let mut pos = 0;
    // sei_message()s until rbsp_trailing_bits.
    while pos < rbsp.len() && rbsp[pos] != 0x80 {
        let payload_type = read_ff_coded(&rbsp, &mut pos)?;
        let size = read_ff_coded(&rbsp, &mut pos)?;
        let payload = rbsp.get(pos..pos.checked_add(size)?)?;
        if payload_type == usize::from(PAYLOAD_USER_DATA_UNREGISTERED)
            && size >= PAYLOAD_SIZE
            && payload[..16] == SEI_UUID
        {
            let time = u64::from_be_bytes(payload[16..24].try_into().ok()?);
            let mark = u64::from_be_bytes(payload[24..32].try_into().ok()?);
            return Some((time, mark));
        }
        pos += size;
    }
    None
}

/// An SEI payload type or size: `0xFF` bytes each adding 255, then the last byte (7.3.2.3.1).
fn read_ff_coded(rbsp: &[u8], pos: &mut usize) -> Option<usize> {
    let mut value = 0usize;
    loop {
        let b = *rbsp.get(*pos)?;
        *pos += 1;
        value = value.checked_add(usize::from(b))?;
        if b != 0xFF {
            return Some(value);
        }
    }
}

/// Removes emulation prevention bytes: `00 00 03` → `00 00`.
fn unescape(escaped: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(escaped.len());
    let mut zeros = 0;
    for &b in escaped {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    out
}

/// The position right after the next `00 00 01` at or after `from`.
fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?.windows(3).position(|w| w == [0, 0, 1]).map(|i| from + i + 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An AVC coded-frame tag body holding `nalus`, each prefixed with `size` length bytes.
    fn avc_tag(key: bool, nalus: &[&[u8]], size: usize) -> Vec<u8> {
        let mut body = vec![if key { 0x17 } else { 0x27 }, AVC_NALU, 0, 0, 0];
        for n in nalus {
            body.extend_from_slice(&(n.len() as u32).to_be_bytes()[4 - size..]);
            body.extend_from_slice(n);
        }
        body
    }

    /// The NAL units of an AVCC tag body.
    fn split_nalus(body: &[u8], size: usize) -> Vec<&[u8]> {
        let mut rest = &body[AVC_TAG_HEADER..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let len = rest[..size].iter().fold(0usize, |a, &b| (a << 8) | usize::from(b));
            out.push(&rest[size..size + len]);
            rest = &rest[size + len..];
        }
        out
    }

    /// Annex B form of an AVCC tag body: start codes instead of length prefixes.
    fn to_annexb(body: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for n in split_nalus(body, size) {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(n);
        }
        out
    }

    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x21, 0xFF];
    const AWKWARD: [(u64, u64); 5] = [
        (0, 0x0000_0100_0000_0001),
        (0, 0),
        (0x0000_0300_0000_0000, 0x0000_0000_0000_0003),
        (u64::MAX, u64::MAX),
        (1_700_000_000_000_000, 42),
    ];

    #[test]
    fn round_trip_through_avcc_and_annexb() {
        for size in [1, 2, 4] {
            for (time, mark) in AWKWARD {
                let body = avc_tag(true, &[IDR], size);
                let stamped = stamp_avc(&body, size, time, mark).unwrap();
                assert_eq!(read_avc(&stamped, size), Some((time, mark)), "size {size} time {time:#x} mark {mark:#x}");
                assert_eq!(read_annexb(&to_annexb(&stamped, size)), Some((time, mark)));
                // The frame is untouched after the SEI.
                let nalus = split_nalus(&stamped, size);
                assert_eq!(nalus.len(), 2);
                assert_eq!(nalus[0][0], NAL_SEI);
                assert_eq!(nalus[1], IDR);
                assert_eq!(&stamped[..AVC_TAG_HEADER], &body[..AVC_TAG_HEADER]);
            }
        }
    }

    #[test]
    fn escaped_sei_has_no_start_code_emulation() {
        for (time, mark) in AWKWARD {
            let nal = sei_nal(time, mark);
            for w in nal.windows(3) {
                assert!(!(w[0] == 0 && w[1] == 0 && w[2] <= 2), "{nal:02x?}");
            }
            assert_eq!(*nal.last().unwrap(), 0x80);
        }
        // 00 00 01 in the mark is escaped.
        let nal = sei_nal(0, 0x0000_0100_0000_0001);
        assert!(nal.windows(4).any(|w| w == [0, 0, 3, 1]));
    }

    #[test]
    fn sei_goes_before_the_first_slice() {
        let aud: &[u8] = &[0x09, 0xF0];
        let sps: &[u8] = &[0x67, 0x64, 0x00, 0x1F];
        let pps: &[u8] = &[0x68, 0xEB, 0xE3];
        let body = avc_tag(true, &[aud, sps, pps, IDR], 4);
        let stamped = stamp_avc(&body, 4, 7, 8).unwrap();
        let nalus = split_nalus(&stamped, 4);
        assert_eq!(nalus[..3], [aud, sps, pps]);
        assert_eq!(nalus[3][0], NAL_SEI);
        assert_eq!(nalus[4], IDR);
        assert_eq!(read_avc(&stamped, 4), Some((7, 8)));

        // Unwalkable lengths: the SEI goes first and the rest is kept as is.
        let mut bad = avc_tag(false, &[&[0x41, 1, 2]], 4);
        bad[8] = 200;
        let stamped = stamp_avc(&bad, 4, 1, 2).unwrap();
        assert_eq!(read_avc(&stamped, 4), Some((1, 2)));
        assert!(stamped.ends_with(&bad[AVC_TAG_HEADER..]));
    }

    #[test]
    fn unstamped_and_other_tags() {
        let plain = avc_tag(false, &[&[0x41, 0x9A, 0x00, 0x00, 0x01]], 4);
        assert_eq!(read_avc(&plain, 4), None);
        assert_eq!(read_annexb(&to_annexb(&plain, 4)), None);
        // Another user_data_unregistered SEI (x264's version string has its own UUID).
        let mut other = vec![NAL_SEI, 5, 20];
        other.extend_from_slice(&[0xDC; 16]);
        other.extend_from_slice(b"x264");
        other.push(0x80);
        let body = avc_tag(true, &[&other, IDR], 4);
        assert_eq!(read_avc(&body, 4), None);
        // ... followed by ours in the same NAL unit.
        let mut both = other[..other.len() - 1].to_vec();
        both.extend_from_slice(&sei_nal(5, 6)[1..]);
        assert_eq!(read_avc(&avc_tag(true, &[&both, IDR], 4), 4), Some((5, 6)));

        let seq_header = [0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF, 0xE1];
        assert_eq!(stamp_avc(&seq_header, 4, 1, 1), None);
        assert_eq!(stamp_avc(&[0x17, 2, 0, 0, 0], 4, 1, 1), None, "end of sequence");
        assert_eq!(stamp_avc(&[0x52, 0, 0, 0, 0], 4, 1, 1), None, "command frame");
        assert_eq!(stamp_avc(&[0x22, 1, 0, 0, 0, 0], 4, 1, 1), None, "H.263");
        assert_eq!(stamp_avc(&[0x91, b'h', b'v', b'c', b'1', 0], 4, 1, 1), None, "enhanced");
        assert_eq!(stamp_avc(&plain, 0, 1, 1), None);
        assert_eq!(stamp_avc(&plain, 5, 1, 1), None);
        assert_eq!(stamp_avc(&[0x27, 1, 0], 4, 1, 1), None);
    }

    #[test]
    fn length_size_from_sequence_header() {
        // An ffmpeg/x264 1280x720 High profile sequence header.
        let mut body = vec![0x17, 0, 0, 0, 0, 0x01, 0x64, 0x00, 0x1F, 0xFF, 0xE1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1F];
        assert_eq!(nal_length_size(&body), Some(4));
        body[9] = 0xFC;
        assert_eq!(nal_length_size(&body), Some(1));
        body[9] = 0xFD;
        assert_eq!(nal_length_size(&body), Some(2));
        body[5] = 0;
        assert_eq!(nal_length_size(&body), None, "configurationVersion 0");
        assert_eq!(nal_length_size(&[0x17, 1, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF]), None, "not a sequence header");
        assert_eq!(nal_length_size(&[0x17, 0, 0, 0, 0, 1]), None, "truncated");
        assert_eq!(nal_length_size(&[]), None);
    }

    proptest! {
        #[test]
        fn round_trip_any_values(time: u64, mark: u64, size in prop::sample::select(vec![1usize, 2, 3, 4]),
                                 slice in prop::collection::vec(any::<u8>(), 1..64)) {
            let mut slice = slice;
            slice[0] = 0x41;
            let body = avc_tag(false, &[&slice], size);
            let stamped = stamp_avc(&body, size, time, mark).unwrap();
            prop_assert_eq!(read_avc(&stamped, size), Some((time, mark)));
            prop_assert_eq!(read_annexb(&to_annexb(&stamped, size)), Some((time, mark)));
        }

        #[test]
        fn never_panics(data in prop::collection::vec(any::<u8>(), 0..256), size in 0usize..6) {
            let _ = read_avc(&data, size);
            let _ = read_annexb(&data);
            let _ = nal_length_size(&data);
            if let Some(stamped) = stamp_avc(&data, size, 1, 2) {
                prop_assert_eq!(read_avc(&stamped, size), Some((1, 2)));
            }
            // Tag-shaped input reaches the NAL walker.
            let mut tag = vec![0x27, 1, 0, 0, 0];
            tag.extend_from_slice(&data);
            let _ = read_avc(&tag, size);
            let _ = stamp_avc(&tag, size, 1, 2);
        }
    }
}

//! Headers of FLV video and audio tag bodies, which are also RTMP video (9) and audio (8)
//! message payloads.
//!
//! Legacy headers are defined by: FLV spec v10.1, E.4.2.1 (`AudioTagHeader`) and E.4.3.1
//! (`VideoTagHeader`). Enhanced headers (`ExVideoTagHeader`, `ExAudioTagHeader`) are defined by:
//! Enhanced RTMP v2 (veovera), "Enhanced Video" and "Enhanced Audio".

use crate::FlvError;

/// A four-character code naming a codec in Enhanced RTMP, e.g. `*b"hvc1"`.
pub type FourCc = [u8; 4];

/// How many ModEx prefixes one header may carry before parsing gives up.
pub const MAX_MOD_EX: usize = 8;

/// Video frame type. Defined by: FLV spec v10.1, E.4.3.1 (`FrameType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// 1: keyframe (for AVC/HEVC a seekable frame; sequence headers are marked so too).
    Key,
    /// 2: inter frame.
    Inter,
    /// 3: disposable inter frame (H.263 only).
    DisposableInter,
    /// 4: generated keyframe (server use only).
    GeneratedKey,
    /// 5: video info/command frame; the body carries a one-byte command instead of video.
    Command,
    /// 0, 6, 7 (and 8..=15 in legacy headers): reserved.
    Reserved(u8),
}

impl FrameType {
    fn from_u8(v: u8) -> FrameType {
        match v {
            1 => FrameType::Key,
            2 => FrameType::Inter,
            3 => FrameType::DisposableInter,
            4 => FrameType::GeneratedKey,
            5 => FrameType::Command,
            other => FrameType::Reserved(other),
        }
    }
}

/// Video codec, from the legacy CodecID or the Enhanced RTMP FourCC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// H.264: legacy CodecID 7 or FourCC `avc1`.
    Avc,
    /// H.265: FourCC `hvc1`, or the non-standard legacy CodecID 12 some servers use.
    Hevc,
    /// FourCC `av01`.
    Av1,
    /// FourCC `vp09`.
    Vp9,
    /// FourCC `vp08`.
    Vp8,
    /// Any other legacy CodecID: 2 Sorenson H.263, 3 screen video, 4 VP6, 5 VP6 alpha,
    /// 6 screen video v2.
    Legacy(u8),
    /// A FourCC this crate does not know. `[0; 4]` when the header names no codec (Enhanced
    /// RTMP command frames).
    Unknown(FourCc),
}

impl VideoCodec {
    /// The codec named by an Enhanced RTMP video FourCC.
    pub fn from_fourcc(f: FourCc) -> VideoCodec {
        match &f {
            b"avc1" => VideoCodec::Avc,
            b"hvc1" => VideoCodec::Hevc,
            b"av01" => VideoCodec::Av1,
            b"vp09" => VideoCodec::Vp9,
            b"vp08" => VideoCodec::Vp8,
            _ => VideoCodec::Unknown(f),
        }
    }

    /// A short display name: "H264", "H265", "AV1", "VP9", "VP8", "H263", "VP6", ...
    pub fn name(&self) -> &'static str {
        match self {
            VideoCodec::Avc => "H264",
            VideoCodec::Hevc => "H265",
            VideoCodec::Av1 => "AV1",
            VideoCodec::Vp9 => "VP9",
            VideoCodec::Vp8 => "VP8",
            VideoCodec::Legacy(2) => "H263",
            VideoCodec::Legacy(3) => "ScreenVideo",
            VideoCodec::Legacy(4) => "VP6",
            VideoCodec::Legacy(5) => "VP6Alpha",
            VideoCodec::Legacy(6) => "ScreenVideo2",
            VideoCodec::Legacy(_) | VideoCodec::Unknown(_) => "unknown",
        }
    }
}

/// What a video tag carries. Defined by: FLV spec v10.1, E.4.3.1 (`AVCPacketType`) and
/// Enhanced RTMP v2 (`VideoPacketType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoPacket {
    /// Decoder configuration record (AVC/HEVC sequence header, av1C, vpcC).
    SequenceStart,
    /// Coded frames (`CodedFrames` and `CodedFramesX`; legacy non-AVC codecs always).
    Coded,
    /// End of sequence.
    SequenceEnd,
    /// Enhanced RTMP 4: AMF-encoded metadata such as HDR colour info.
    Metadata,
    /// Enhanced RTMP 5: MPEG-2 TS AV1 descriptor.
    Mpeg2TsSequenceStart,
    /// Any other packet type value.
    Other(u8),
}

/// Enhanced RTMP multitrack layout. Defined by: Enhanced RTMP v2, `AvMultitrackType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MultitrackKind {
    /// 0: one track, with a track id.
    OneTrack,
    /// 1: several tracks of one codec, each with a 24-bit size.
    ManyTracks,
    /// 2: several tracks, each with its own FourCC and size.
    ManyTracksManyCodecs,
    /// Reserved values.
    Other(u8),
}

impl MultitrackKind {
    fn from_u8(v: u8) -> MultitrackKind {
        match v {
            0 => MultitrackKind::OneTrack,
            1 => MultitrackKind::ManyTracks,
            2 => MultitrackKind::ManyTracksManyCodecs,
            other => MultitrackKind::Other(other),
        }
    }
}

/// The parsed header of a video tag body.
///
/// The codec payload (configuration record, NAL units in AVCC form, OBUs, ...) is
/// `body[payload_offset..payload_end]`; see [`VideoHeader::payload`]. For multitrack tags the
/// fields describe the first track; further tracks follow `payload_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoHeader {
    /// Frame type.
    pub frame_type: FrameType,
    /// Codec.
    pub codec: VideoCodec,
    /// Packet type.
    pub packet: VideoPacket,
    /// Composition time offset (PTS - DTS) in milliseconds; 0 where the header has none.
    pub composition_time: i32,
    /// True for an Enhanced RTMP `ExVideoTagHeader`.
    pub enhanced: bool,
    /// Multitrack layout, if the tag is an Enhanced RTMP multitrack tag.
    pub multitrack: Option<MultitrackKind>,
    /// Track id of the first track (0 without multitrack).
    pub track_id: u8,
    /// Where the codec payload starts in the body.
    pub payload_offset: usize,
    /// Where the codec payload ends in the body.
    pub payload_end: usize,
}

impl VideoHeader {
    /// True for keyframes ([`FrameType::Key`]). Sequence headers are marked as keyframes too;
    /// check [`VideoHeader::is_sequence_header`] to tell them apart.
    pub fn is_keyframe(&self) -> bool {
        self.frame_type == FrameType::Key
    }

    /// True for a decoder configuration record (AVC/HEVC sequence header, Enhanced
    /// `SequenceStart`), which players need before any frame.
    pub fn is_sequence_header(&self) -> bool {
        self.packet == VideoPacket::SequenceStart && self.frame_type != FrameType::Command
    }

    /// The codec payload of `body`, the same body this header was parsed from.
    pub fn payload<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        body.get(self.payload_offset..self.payload_end).unwrap_or_default()
    }
}

/// Cursor over a tag body that reports truncation as [`FlvError::Truncated`].
struct Cursor<'a> {
    body: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FlvError> {
        let end = self.pos.checked_add(n).ok_or(FlvError::Truncated(self.what))?;
        let s = self.body.get(self.pos..end).ok_or(FlvError::Truncated(self.what))?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, FlvError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FlvError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Result<u32, FlvError> {
        let b = self.take(3)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    /// `SI24`: signed 24-bit big endian.
    fn si24(&mut self) -> Result<i32, FlvError> {
        Ok(((self.u24()? << 8) as i32) >> 8)
    }

    fn fourcc(&mut self) -> Result<FourCc, FlvError> {
        let b = self.take(4)?;
        Ok([b[0], b[1], b[2], b[3]])
    }

    /// Skips ModEx prefixes while `packet_type` is ModEx (7) and returns the real packet type.
    /// Defined by: Enhanced RTMP v2, "ModEx".
    fn skip_mod_ex(&mut self, mut packet_type: u8) -> Result<u8, FlvError> {
        const MOD_EX: u8 = 7;
        let mut count = 0;
        while packet_type == MOD_EX {
            count += 1;
            if count > MAX_MOD_EX {
                return Err(FlvError::TooManyModEx);
            }
            let mut size = usize::from(self.u8()?) + 1;
            if size == 256 {
                size = usize::from(self.u16()?) + 1;
            }
            self.take(size)?;
            // High nibble: ModEx type (0 = nanosecond timestamp offset); low: next packet type.
            packet_type = self.u8()? & 0x0F;
        }
        Ok(packet_type)
    }

    /// Reads the multitrack prefix and the first track's FourCC, id and size.
    /// Returns (kind, packet type, fourcc, track id, payload end).
    fn multitrack(&mut self) -> Result<(MultitrackKind, u8, FourCc, u8, usize), FlvError> {
        let b = self.u8()?;
        let kind = MultitrackKind::from_u8(b >> 4);
        let packet_type = b & 0x0F;
        // The shared FourCC (one codec) and the first track's own FourCC (many codecs) sit at
        // the same place.
        let fourcc = self.fourcc()?;
        let track_id = self.u8()?;
        let end = if kind == MultitrackKind::OneTrack {
            self.body.len()
        } else {
            let size = self.u24()? as usize;
            let end = self.pos + size;
            if end > self.body.len() {
                return Err(FlvError::Truncated(self.what));
            }
            end
        };
        Ok((kind, packet_type, fourcc, track_id, end))
    }
}

/// Parses the header of a video tag body (an RTMP video message payload).
///
/// Handles legacy headers (AVC on CodecID 7 and HEVC on the non-standard CodecID 12 with
/// `AVCPacketType` and a 24-bit composition time; other codecs with just the first byte) and
/// Enhanced RTMP `ExVideoTagHeader`s, including ModEx prefixes and multitrack.
pub fn parse_video(body: &[u8]) -> Result<VideoHeader, FlvError> {
    let mut c = Cursor { body, pos: 0, what: "video tag header" };
    let b0 = c.u8()?;
    if b0 & 0x80 == 0 {
        return parse_legacy_video(b0, &mut c);
    }
    let frame_type = FrameType::from_u8((b0 >> 4) & 0x07);
    let mut packet_type = c.skip_mod_ex(b0 & 0x0F)?;
    let mut header = VideoHeader {
        frame_type,
        codec: VideoCodec::Unknown([0; 4]),
        packet: VideoPacket::Other(packet_type),
        composition_time: 0,
        enhanced: true,
        multitrack: None,
        track_id: 0,
        payload_offset: 0,
        payload_end: body.len(),
    };
    const METADATA: u8 = 4;
    const MULTITRACK: u8 = 6;
    if frame_type == FrameType::Command && packet_type != METADATA {
        // The body is a single VideoCommand byte and names no codec.
        c.take(1)?;
        header.payload_offset = c.pos - 1;
        return Ok(header);
    }
    if packet_type == MULTITRACK {
        let (kind, inner, fourcc, track_id, end) = c.multitrack()?;
        packet_type = inner;
        header.codec = VideoCodec::from_fourcc(fourcc);
        header.multitrack = Some(kind);
        header.track_id = track_id;
        header.payload_end = end;
    } else {
        header.codec = VideoCodec::from_fourcc(c.fourcc()?);
    }
    header.packet = match packet_type {
        0 => VideoPacket::SequenceStart,
        1 | 3 => VideoPacket::Coded,
        2 => VideoPacket::SequenceEnd,
        4 => VideoPacket::Metadata,
        5 => VideoPacket::Mpeg2TsSequenceStart,
        other => VideoPacket::Other(other),
    };
    // CodedFrames (1) carries a composition time for avc1 and hvc1; CodedFramesX (3) does not.
    if packet_type == 1 && matches!(header.codec, VideoCodec::Avc | VideoCodec::Hevc) {
        header.composition_time = c.si24()?;
    }
    if c.pos > header.payload_end {
        return Err(FlvError::Truncated("video track"));
    }
    header.payload_offset = c.pos;
    Ok(header)
}

fn parse_legacy_video(b0: u8, c: &mut Cursor<'_>) -> Result<VideoHeader, FlvError> {
    let frame_type = FrameType::from_u8(b0 >> 4);
    let codec_id = b0 & 0x0F;
    let mut header = VideoHeader {
        frame_type,
        codec: VideoCodec::Legacy(codec_id),
        packet: VideoPacket::Coded,
        composition_time: 0,
        enhanced: false,
        multitrack: None,
        track_id: 0,
        payload_offset: 1,
        payload_end: c.body.len(),
    };
    if codec_id == 7 || codec_id == 12 {
        header.codec = if codec_id == 7 { VideoCodec::Avc } else { VideoCodec::Hevc };
        header.packet = match c.u8()? {
            0 => VideoPacket::SequenceStart,
            1 => VideoPacket::Coded,
            2 => VideoPacket::SequenceEnd,
            other => VideoPacket::Other(other),
        };
        header.composition_time = c.si24()?;
        header.payload_offset = c.pos;
    }
    Ok(header)
}

/// Audio codec, from the legacy SoundFormat or the Enhanced RTMP FourCC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// SoundFormat 0: linear PCM, platform endian.
    Pcm,
    /// SoundFormat 1: ADPCM.
    Adpcm,
    /// SoundFormat 2 and 14 (8 kHz), or FourCC `.mp3`.
    Mp3,
    /// SoundFormat 3: linear PCM, little endian.
    PcmLe,
    /// SoundFormat 4, 5 and 6.
    Nellymoser,
    /// SoundFormat 7: G.711 A-law.
    G711A,
    /// SoundFormat 8: G.711 mu-law.
    G711U,
    /// SoundFormat 10 or FourCC `mp4a`.
    Aac,
    /// SoundFormat 11.
    Speex,
    /// FourCC `Opus`.
    Opus,
    /// FourCC `fLaC`.
    Flac,
    /// FourCC `ac-3`.
    Ac3,
    /// FourCC `ec-3`.
    Eac3,
    /// Other legacy SoundFormats (12, 13 reserved; 15 device specific).
    Legacy(u8),
    /// A FourCC this crate does not know.
    Unknown(FourCc),
}

impl AudioCodec {
    /// The codec named by an Enhanced RTMP audio FourCC.
    pub fn from_fourcc(f: FourCc) -> AudioCodec {
        match &f {
            b".mp3" => AudioCodec::Mp3,
            b"mp4a" => AudioCodec::Aac,
            b"Opus" => AudioCodec::Opus,
            b"fLaC" => AudioCodec::Flac,
            b"ac-3" => AudioCodec::Ac3,
            b"ec-3" => AudioCodec::Eac3,
            _ => AudioCodec::Unknown(f),
        }
    }

    fn from_sound_format(v: u8) -> AudioCodec {
        match v {
            0 => AudioCodec::Pcm,
            1 => AudioCodec::Adpcm,
            2 | 14 => AudioCodec::Mp3,
            3 => AudioCodec::PcmLe,
            4..=6 => AudioCodec::Nellymoser,
            7 => AudioCodec::G711A,
            8 => AudioCodec::G711U,
            10 => AudioCodec::Aac,
            11 => AudioCodec::Speex,
            other => AudioCodec::Legacy(other),
        }
    }

    /// A short display name: "AAC", "MP3", "Opus", ...
    pub fn name(&self) -> &'static str {
        match self {
            AudioCodec::Pcm | AudioCodec::PcmLe => "PCM",
            AudioCodec::Adpcm => "ADPCM",
            AudioCodec::Mp3 => "MP3",
            AudioCodec::Nellymoser => "Nellymoser",
            AudioCodec::G711A => "G711A",
            AudioCodec::G711U => "G711U",
            AudioCodec::Aac => "AAC",
            AudioCodec::Speex => "Speex",
            AudioCodec::Opus => "Opus",
            AudioCodec::Flac => "FLAC",
            AudioCodec::Ac3 => "AC3",
            AudioCodec::Eac3 => "EAC3",
            AudioCodec::Legacy(_) | AudioCodec::Unknown(_) => "unknown",
        }
    }
}

/// What an audio tag carries. Defined by: FLV spec v10.1, E.4.2.1 (`AACPacketType`) and
/// Enhanced RTMP v2 (`AudioPacketType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioPacket {
    /// Decoder configuration (AAC AudioSpecificConfig, OpusHead, ...).
    SequenceStart,
    /// Coded audio (legacy non-AAC formats always).
    Coded,
    /// Enhanced RTMP 2: end of sequence.
    SequenceEnd,
    /// Enhanced RTMP 4: channel layout.
    MultichannelConfig,
    /// Any other packet type value.
    Other(u8),
}

/// The parsed header of an audio tag body. The codec payload is
/// `body[payload_offset..payload_end]`; see [`AudioHeader::payload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioHeader {
    /// Codec.
    pub codec: AudioCodec,
    /// Packet type.
    pub packet: AudioPacket,
    /// Legacy SoundRate in Hz (5512, 11025, 22050 or 44100; AAC always says 44100 and the
    /// real rate is in the AudioSpecificConfig). 0 for enhanced headers.
    pub sound_rate: u32,
    /// Legacy SoundSize in bits (8 or 16). 0 for enhanced headers.
    pub sound_size: u8,
    /// Legacy SoundType as a channel count (1 or 2). 0 for enhanced headers.
    pub channels: u8,
    /// True for an Enhanced RTMP `ExAudioTagHeader`.
    pub enhanced: bool,
    /// Multitrack layout, if the tag is an Enhanced RTMP multitrack tag.
    pub multitrack: Option<MultitrackKind>,
    /// Track id of the first track (0 without multitrack).
    pub track_id: u8,
    /// Where the codec payload starts in the body.
    pub payload_offset: usize,
    /// Where the codec payload ends in the body.
    pub payload_end: usize,
}

impl AudioHeader {
    /// True for a decoder configuration (AAC packet type 0, Enhanced `SequenceStart`).
    pub fn is_sequence_header(&self) -> bool {
        self.packet == AudioPacket::SequenceStart
    }

    /// The codec payload of `body`, the same body this header was parsed from.
    pub fn payload<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        body.get(self.payload_offset..self.payload_end).unwrap_or_default()
    }
}

/// Parses the header of an audio tag body (an RTMP audio message payload).
///
/// Handles the legacy `AudioTagHeader` (with `AACPacketType` for AAC) and the Enhanced RTMP
/// `ExAudioTagHeader` (SoundFormat 9), including ModEx prefixes and multitrack.
pub fn parse_audio(body: &[u8]) -> Result<AudioHeader, FlvError> {
    let mut c = Cursor { body, pos: 0, what: "audio tag header" };
    let b0 = c.u8()?;
    let sound_format = b0 >> 4;
    const EX_HEADER: u8 = 9;
    if sound_format != EX_HEADER {
        let mut header = AudioHeader {
            codec: AudioCodec::from_sound_format(sound_format),
            packet: AudioPacket::Coded,
            sound_rate: [5512, 11025, 22050, 44100][usize::from((b0 >> 2) & 3)],
            sound_size: if b0 & 2 != 0 { 16 } else { 8 },
            channels: if b0 & 1 != 0 { 2 } else { 1 },
            enhanced: false,
            multitrack: None,
            track_id: 0,
            payload_offset: 1,
            payload_end: body.len(),
        };
        if header.codec == AudioCodec::Aac {
            header.packet = match c.u8()? {
                0 => AudioPacket::SequenceStart,
                1 => AudioPacket::Coded,
                other => AudioPacket::Other(other),
            };
            header.payload_offset = c.pos;
        }
        return Ok(header);
    }
    let mut packet_type = c.skip_mod_ex(b0 & 0x0F)?;
    let mut header = AudioHeader {
        codec: AudioCodec::Unknown([0; 4]),
        packet: AudioPacket::Other(packet_type),
        sound_rate: 0,
        sound_size: 0,
        channels: 0,
        enhanced: true,
        multitrack: None,
        track_id: 0,
        payload_offset: 0,
        payload_end: body.len(),
    };
    const MULTITRACK: u8 = 5;
    if packet_type == MULTITRACK {
        let (kind, inner, fourcc, track_id, end) = c.multitrack()?;
        packet_type = inner;
        header.codec = AudioCodec::from_fourcc(fourcc);
        header.multitrack = Some(kind);
        header.track_id = track_id;
        header.payload_end = end;
    } else {
        header.codec = AudioCodec::from_fourcc(c.fourcc()?);
    }
    header.packet = match packet_type {
        0 => AudioPacket::SequenceStart,
        1 => AudioPacket::Coded,
        2 => AudioPacket::SequenceEnd,
        4 => AudioPacket::MultichannelConfig,
        other => AudioPacket::Other(other),
    };
    header.payload_offset = c.pos;
    Ok(header)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// First video tag of `ffmpeg -f lavfi -i testsrc=size=1280x720 -c:v libx264 -f flv`.
    pub(crate) const AVC_SEQUENCE_HEADER_TAG: &str =
        "17000000000164001fffe1001a6764001facd9405005bb0110000003001000000303c0f183196001000668ebe3cb22c0fdf8f800";

    #[test]
    fn legacy_avc_sequence_header() {
        let body = hex(AVC_SEQUENCE_HEADER_TAG);
        let h = parse_video(&body).unwrap();
        assert_eq!(h.frame_type, FrameType::Key);
        assert_eq!(h.codec, VideoCodec::Avc);
        assert_eq!(h.packet, VideoPacket::SequenceStart);
        assert!(h.is_keyframe() && h.is_sequence_header());
        assert!(!h.enhanced);
        assert_eq!(h.payload_offset, 5);
        assert_eq!(h.payload(&body)[0], 1); // configurationVersion
    }

    #[test]
    fn legacy_avc_frames_with_composition_time() {
        let h = parse_video(&hex("1701000043000002ae")).unwrap();
        assert_eq!((h.packet, h.composition_time), (VideoPacket::Coded, 67));
        assert!(h.is_keyframe() && !h.is_sequence_header());
        let h = parse_video(&hex("27010000a6000003a5")).unwrap();
        assert_eq!(h.frame_type, FrameType::Inter);
        assert_eq!(h.composition_time, 166);
        // Negative composition time.
        let h = parse_video(&hex("2701ffffff00")).unwrap();
        assert_eq!(h.composition_time, -1);
        // End of sequence.
        assert_eq!(parse_video(&hex("1702000000")).unwrap().packet, VideoPacket::SequenceEnd);
    }

    #[test]
    fn legacy_hevc_codec_12() {
        let h = parse_video(&hex("1c00000000")).unwrap();
        assert_eq!(h.codec, VideoCodec::Hevc);
        assert!(h.is_sequence_header());
    }

    #[test]
    fn legacy_other_codecs() {
        let h = parse_video(&[0x22, 0xAA]).unwrap(); // Sorenson H.263 inter frame
        assert_eq!(h.codec, VideoCodec::Legacy(2));
        assert_eq!(h.codec.name(), "H263");
        assert_eq!((h.packet, h.payload_offset), (VideoPacket::Coded, 1));
        assert_eq!(parse_video(&[]), Err(FlvError::Truncated("video tag header")));
        assert_eq!(parse_video(&[0x17, 0x01]), Err(FlvError::Truncated("video tag header")));
    }

    #[test]
    fn enhanced_video() {
        // KeyFrame | SequenceStart, hvc1.
        let h = parse_video(b"\x90hvc1\x01\x02").unwrap();
        assert!(h.enhanced && h.is_sequence_header() && h.is_keyframe());
        assert_eq!((h.codec, h.payload_offset), (VideoCodec::Hevc, 5));
        // InterFrame | CodedFrames, hvc1: SI24 composition time follows.
        let h = parse_video(b"\xa1hvc1\xff\xff\xfe\x00").unwrap();
        assert_eq!(h.frame_type, FrameType::Inter);
        assert_eq!((h.packet, h.composition_time, h.payload_offset), (VideoPacket::Coded, -2, 8));
        // KeyFrame | CodedFramesX, avc1: no composition time.
        let h = parse_video(b"\x93avc1\x00").unwrap();
        assert_eq!((h.codec, h.packet, h.payload_offset), (VideoCodec::Avc, VideoPacket::Coded, 5));
        // AV1 CodedFrames has no composition time.
        let h = parse_video(b"\x91av01\x12\x00").unwrap();
        assert_eq!((h.codec, h.payload_offset), (VideoCodec::Av1, 5));
        let h = parse_video(b"\x92vp09").unwrap();
        assert_eq!((h.codec, h.packet), (VideoCodec::Vp9, VideoPacket::SequenceEnd));
        let h = parse_video(b"\x94av01\x02").unwrap();
        assert_eq!(h.packet, VideoPacket::Metadata);
        let h = parse_video(b"\x90xyz1").unwrap();
        assert_eq!(h.codec, VideoCodec::Unknown(*b"xyz1"));
        assert_eq!(parse_video(b"\x90hv"), Err(FlvError::Truncated("video tag header")));
    }

    #[test]
    fn enhanced_command_frame() {
        let h = parse_video(b"\xd0\x01").unwrap();
        assert_eq!(h.frame_type, FrameType::Command);
        assert_eq!(h.codec, VideoCodec::Unknown([0; 4]));
        assert!(!h.is_sequence_header());
        assert_eq!(h.payload(b"\xd0\x01"), b"\x01");
    }

    #[test]
    fn enhanced_mod_ex() {
        // ModEx with 3 bytes of nanosecond offset, then CodedFrames for hvc1.
        let body = b"\x97\x02\x00\x01\x00\x01hvc1\x00\x00\x05\xaa";
        let h = parse_video(body).unwrap();
        assert_eq!((h.codec, h.packet, h.composition_time), (VideoCodec::Hevc, VideoPacket::Coded, 5));
        assert_eq!(h.payload(body), b"\xaa");
        let mut bomb = vec![0x97];
        for _ in 0..20 {
            bomb.extend_from_slice(&[0x00, 0x00, 0x07]);
        }
        assert_eq!(parse_video(&bomb), Err(FlvError::TooManyModEx));
    }

    #[test]
    fn enhanced_multitrack() {
        // OneTrack, CodedFramesX, av01, track 3.
        let body = b"\x96\x03av01\x03\xbb";
        let h = parse_video(body).unwrap();
        assert_eq!(h.multitrack, Some(MultitrackKind::OneTrack));
        assert_eq!((h.codec, h.packet, h.track_id), (VideoCodec::Av1, VideoPacket::Coded, 3));
        assert_eq!(h.payload(body), b"\xbb");
        // ManyTracks, CodedFrames, avc1: track 0 of size 5 (cts 1 + 2 bytes), then track 1.
        let body = b"\x96\x11avc1\x00\x00\x00\x05\x00\x00\x01\xcc\xdd\x01\x00\x00\x04";
        let h = parse_video(body).unwrap();
        assert_eq!(h.multitrack, Some(MultitrackKind::ManyTracks));
        assert_eq!(h.composition_time, 1);
        assert_eq!(h.payload(body), b"\xcc\xdd");
        // ManyTracksManyCodecs, SequenceStart: first track hvc1.
        let body = b"\x96\x20hvc1\x07\x00\x00\x01\x01";
        let h = parse_video(body).unwrap();
        assert_eq!((h.codec, h.track_id), (VideoCodec::Hevc, 7));
        assert!(h.is_sequence_header());
        // Track size beyond the body.
        assert!(parse_video(b"\x96\x11avc1\x00\x00\x00\x09\x00").is_err());
    }

    #[test]
    fn legacy_audio() {
        let body = hex("af001210");
        let h = parse_audio(&body).unwrap();
        assert_eq!(h.codec, AudioCodec::Aac);
        assert!(h.is_sequence_header());
        assert_eq!((h.sound_rate, h.sound_size, h.channels), (44100, 16, 2));
        assert_eq!(h.payload(&body), [0x12, 0x10]);
        let h = parse_audio(&hex("af01de02")).unwrap();
        assert_eq!((h.packet, h.payload_offset), (AudioPacket::Coded, 2));
        let h = parse_audio(&[0x2e, 0xff]).unwrap(); // MP3 44 kHz 16-bit mono
        assert_eq!((h.codec, h.channels, h.payload_offset), (AudioCodec::Mp3, 1, 1));
        assert_eq!(parse_audio(&[0x72]).unwrap().codec, AudioCodec::G711A);
        assert_eq!(parse_audio(&[0x82]).unwrap().codec, AudioCodec::G711U);
        assert_eq!(parse_audio(&[0xb6]).unwrap().codec, AudioCodec::Speex);
        assert_eq!(parse_audio(&[0x66]).unwrap().codec, AudioCodec::Nellymoser);
        assert!(parse_audio(&[0xaf]).is_err());
    }

    #[test]
    fn enhanced_audio() {
        let h = parse_audio(b"\x90Opus\x01").unwrap();
        assert!(h.enhanced && h.is_sequence_header());
        assert_eq!((h.codec, h.payload_offset), (AudioCodec::Opus, 5));
        for (fourcc, codec) in [
            (b"mp4a", AudioCodec::Aac),
            (b"fLaC", AudioCodec::Flac),
            (b"ac-3", AudioCodec::Ac3),
            (b"ec-3", AudioCodec::Eac3),
            (b".mp3", AudioCodec::Mp3),
        ] {
            let mut body = vec![0x91];
            body.extend_from_slice(fourcc);
            let h = parse_audio(&body).unwrap();
            assert_eq!((h.codec, h.packet), (codec, AudioPacket::Coded));
        }
        let h = parse_audio(b"\x95\x11Opus\x02\x00\x00\x01\xaa\x03\x00\x00\x00").unwrap();
        assert_eq!(h.multitrack, Some(MultitrackKind::ManyTracks));
        assert_eq!((h.track_id, h.payload_offset, h.payload_end), (2, 10, 11));
        assert_eq!(parse_audio(b"\x94mp4a").unwrap().packet, AudioPacket::MultichannelConfig);
    }
}

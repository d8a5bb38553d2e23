//! The initialization segment: `ftyp` + `moov` describing the tracks, with empty sample tables
//! because every sample comes later in fragments.
//! Defined by: ISO/IEC 14496-12, 4.3 (`ftyp`), 8.2-8.8 (`moov` and its children), 12.1 and 12.2
//! (visual and audio sample entries); ISO/IEC 14496-15, 5.4.2 (`avc1`), 8.4.1 (`hvc1`);
//! AV1-ISOBMFF, 2.2-2.3 (`av01`, `av1C`); ISO/IEC 14496-14, 5.6 (`esds`) with ISO/IEC 14496-1,
//! 7.2.6 (descriptors); Opus in ISOBMFF, 4.3 (`Opus`, `dOps`); ISO/IEC 23000-19, 7.2 (CMAF
//! header brands).

use std::collections::HashSet;

use bytes::Bytes;

use crate::writer::BoxWriter;
use crate::{Fmp4Error, FourCc, MAX_CONFIG_SIZE};

/// Timescale of the movie header; it only times the (zero) movie duration.
const MOVIE_TIMESCALE: u32 = 1000;
/// The identity transformation matrix of `mvhd` and `tkhd` (16.16 and 2.30 fixed point).
const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];
/// ISO 639-2 "und" packed into three 5-bit letters, as `mdhd` wants it.
const LANGUAGE_UNDETERMINED: u16 = 0x55C4;
/// `tkhd` flags: `track_enabled | track_in_movie`.
const TRACK_ENABLED_IN_MOVIE: u32 = 0x000003;
/// `url ` flag: the media data is in this file.
const SELF_CONTAINED: u32 = 0x000001;
/// 72 dpi in 16.16 fixed point, the value every visual sample entry carries.
const DPI_72: u32 = 0x0048_0000;
/// `depth` of a visual sample entry: colour without alpha.
const DEPTH_COLOUR: u16 = 0x0018;
/// Output sample rate of every Opus decoder, which `Opus` sample entries must state.
const OPUS_RATE: u32 = 48_000;
/// `objectTypeIndication` for MPEG-4 Audio (ISO/IEC 14496-3).
const OTI_MPEG4_AUDIO: u8 = 0x40;
/// `streamType` 5 (audio) << 2, `upStream` 0, reserved bit 1.
const STREAM_TYPE_AUDIO: u8 = (0x05 << 2) | 1;
/// `SLConfigDescriptor` `predefined` 2: the value reserved for MP4 files.
const SL_PREDEFINED_MP4: u8 = 2;
/// Descriptor tags of ISO/IEC 14496-1, 7.2.2.1.
const ES_DESCRIPTOR_TAG: u8 = 0x03;
const DECODER_CONFIG_TAG: u8 = 0x04;
const DECODER_SPECIFIC_TAG: u8 = 0x05;
const SL_CONFIG_TAG: u8 = 0x06;

/// A track's codec and its decoder configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codec {
    /// H.264: an `avc1` sample entry carrying `avcc`, the `AVCDecoderConfigurationRecord` (the
    /// payload of an FLV/RTMP AVC sequence header), verbatim.
    Avc {
        /// The `AVCDecoderConfigurationRecord`.
        avcc: Bytes,
        /// Width in pixels.
        width: u16,
        /// Height in pixels.
        height: u16,
    },
    /// H.265: an `hvc1` sample entry carrying `hvcc`, the `HEVCDecoderConfigurationRecord`,
    /// verbatim. `hvc1` means the parameter sets are in the record.
    Hevc {
        /// The `HEVCDecoderConfigurationRecord`.
        hvcc: Bytes,
        /// Width in pixels.
        width: u16,
        /// Height in pixels.
        height: u16,
    },
    /// AV1: an `av01` sample entry carrying `av1c`, the `AV1CodecConfigurationRecord` (the
    /// Enhanced RTMP AV1 sequence start payload), verbatim.
    Av1 {
        /// The `AV1CodecConfigurationRecord`.
        av1c: Bytes,
        /// Width in pixels.
        width: u16,
        /// Height in pixels.
        height: u16,
    },
    /// AAC: an `mp4a` sample entry whose `esds` carries `asc`, the `AudioSpecificConfig`.
    Aac {
        /// The `AudioSpecificConfig`.
        asc: Bytes,
        /// Sample rate in Hz (informative; the `AudioSpecificConfig` rules).
        sample_rate: u32,
        /// Channel count (informative, as `sample_rate`).
        channels: u16,
    },
    /// Opus: an `Opus` sample entry with a `dOps` box for channel mapping family 0 (mono or
    /// stereo). The track's timescale should be 48000.
    Opus {
        /// Channel count, 1 or 2.
        channels: u16,
        /// Samples (at 48 kHz) to drop from the decoder output at the start.
        pre_skip: u16,
        /// The sample rate of the encoder's input, informative.
        input_sample_rate: u32,
    },
}

impl Codec {
    /// True for the video codecs.
    pub fn is_video(&self) -> bool {
        matches!(self, Codec::Avc { .. } | Codec::Hevc { .. } | Codec::Av1 { .. })
    }

    /// The sample entry type (`avc1`, `hvc1`, `av01`, `mp4a`, `Opus`).
    pub fn sample_entry(&self) -> FourCc {
        match self {
            Codec::Avc { .. } => *b"avc1",
            Codec::Hevc { .. } => *b"hvc1",
            Codec::Av1 { .. } => *b"av01",
            Codec::Aac { .. } => *b"mp4a",
            Codec::Opus { .. } => *b"Opus",
        }
    }

    /// The video configuration box type, its record and the picture size.
    fn video_config(&self) -> Option<(&FourCc, &Bytes, u16, u16)> {
        match self {
            Codec::Avc { avcc, width, height } => Some((b"avcC", avcc, *width, *height)),
            Codec::Hevc { hvcc, width, height } => Some((b"hvcC", hvcc, *width, *height)),
            Codec::Av1 { av1c, width, height } => Some((b"av1C", av1c, *width, *height)),
            _ => None,
        }
    }
}

/// One track of an initialization segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// Track id, not 0; fragments name the track by it ([`crate::TrackRun::track_id`]).
    pub id: u32,
    /// Ticks per second of every time in this track's fragments: 90000 or 1000 for video, the
    /// sample rate for audio (48000 for Opus).
    pub timescale: u32,
    /// Codec and decoder configuration.
    pub codec: Codec,
}

/// Builds the initialization segment: `ftyp` (major brand `iso6`; compatible `iso6`, `isom`,
/// `mp41`, plus `cmfc` for a single-track header as CMAF allows only one track per header, and
/// `av01` when a track is AV1) and `moov` (`mvhd`; per track a `trak` with
/// `tkhd`/`mdia`/`mdhd`/`hdlr`/`minf`/{`vmhd`|`smhd`}/`dinf`/`stbl` with the sample entry and
/// empty `stts`/`stsc`/`stsz`/`stco`; `mvex` with one `trex` per track).
///
/// Fails if a track id is 0 or repeated, a timescale is 0, a configuration record is
/// obviously not the record its codec needs or larger than [`MAX_CONFIG_SIZE`], or Opus has
/// other than 1 or 2 channels.
pub fn init_segment(tracks: &[TrackInfo]) -> Result<Vec<u8>, Fmp4Error> {
    validate(tracks)?;
    let capacity = 1024 + tracks.iter().map(|t| config_len(&t.codec) + 1024).sum::<usize>();
    let mut w = BoxWriter::with_capacity(capacity);
    write_ftyp(&mut w, tracks);
    w.boxed(b"moov", |w| {
        write_mvhd(w, tracks);
        for track in tracks {
            write_trak(w, track);
        }
        w.boxed(b"mvex", |w| {
            for track in tracks {
                write_trex(w, track.id);
            }
        });
    });
    Ok(w.into_inner())
}

fn config_len(codec: &Codec) -> usize {
    match codec {
        Codec::Avc { avcc: c, .. } | Codec::Hevc { hvcc: c, .. } | Codec::Av1 { av1c: c, .. } => c.len(),
        Codec::Aac { asc, .. } => asc.len(),
        Codec::Opus { .. } => 0,
    }
}

fn validate(tracks: &[TrackInfo]) -> Result<(), Fmp4Error> {
    let mut ids = HashSet::new();
    for track in tracks {
        if track.id == 0 {
            return Err(Fmp4Error::ZeroTrackId);
        }
        if !ids.insert(track.id) {
            return Err(Fmp4Error::DuplicateTrackId(track.id));
        }
        if track.timescale == 0 {
            return Err(Fmp4Error::ZeroTimescale { track_id: track.id });
        }
        validate_codec(track.id, &track.codec)?;
    }
    Ok(())
}

/// Catches a record of the wrong kind (Annex-B data, an `OpusHead`, an empty buffer) before it
/// lands in a file that no player would open; the record itself is not parsed.
fn validate_codec(track_id: u32, codec: &Codec) -> Result<(), Fmp4Error> {
    let bad = |record, reason| Fmp4Error::BadConfig { track_id, record, reason };
    let (record, data, min_len, first_byte, first_byte_reason) = match codec {
        // configurationVersion = 1; five fixed bytes, then the SPS and PPS counts.
        Codec::Avc { avcc, .. } => ("avcC", avcc, 7, 1, "configurationVersion is not 1"),
        // configurationVersion = 1; 22 fixed bytes, then numOfArrays.
        Codec::Hevc { hvcc, .. } => ("hvcC", hvcc, 23, 1, "configurationVersion is not 1"),
        // marker = 1, version = 1; four fixed bytes.
        Codec::Av1 { av1c, .. } => ("av1C", av1c, 4, 0x81, "marker and version are not 0x81"),
        Codec::Aac { asc, .. } => {
            if asc.len() < 2 {
                return Err(bad("AudioSpecificConfig", "shorter than 2 bytes"));
            }
            return check_size(track_id, "AudioSpecificConfig", asc.len());
        }
        Codec::Opus { channels, .. } => {
            if !(1..=2).contains(channels) {
                return Err(Fmp4Error::OpusChannels { track_id, channels: *channels });
            }
            return Ok(());
        }
    };
    if data.len() < min_len {
        return Err(bad(record, "too short"));
    }
    if data[0] != first_byte {
        return Err(bad(record, first_byte_reason));
    }
    check_size(track_id, record, data.len())
}

fn check_size(track_id: u32, record: &'static str, len: usize) -> Result<(), Fmp4Error> {
    if len > MAX_CONFIG_SIZE {
        return Err(Fmp4Error::ConfigTooLarge { track_id, record, len });
    }
    Ok(())
}

fn write_ftyp(w: &mut BoxWriter, tracks: &[TrackInfo]) {
    w.boxed(b"ftyp", |w| {
        w.bytes(b"iso6");
        w.u32(0);
        w.bytes(b"iso6");
        if tracks.len() == 1 {
            w.bytes(b"cmfc");
        }
        w.bytes(b"isom");
        w.bytes(b"mp41");
        if tracks.iter().any(|t| matches!(t.codec, Codec::Av1 { .. })) {
            w.bytes(b"av01");
        }
    });
}

fn write_matrix(w: &mut BoxWriter) {
    for v in UNITY_MATRIX {
        w.u32(v);
    }
}

fn write_mvhd(w: &mut BoxWriter, tracks: &[TrackInfo]) {
    let next_track_id = tracks.iter().map(|t| t.id).max().unwrap_or(0).saturating_add(1);
    w.full(b"mvhd", 0, 0, |w| {
        w.u32(0); // creation_time
        w.u32(0); // modification_time
        w.u32(MOVIE_TIMESCALE);
        w.u32(0); // duration: unknown, the fragments carry the samples
        w.u32(0x0001_0000); // rate 1.0
        w.u16(0x0100); // volume 1.0
        w.zeros(2 + 8); // reserved
        write_matrix(w);
        w.zeros(6 * 4); // pre_defined
        w.u32(next_track_id);
    });
}

fn write_trak(w: &mut BoxWriter, track: &TrackInfo) {
    w.boxed(b"trak", |w| {
        write_tkhd(w, track);
        w.boxed(b"mdia", |w| {
            write_mdhd(w, track.timescale);
            write_hdlr(w, track.codec.is_video());
            w.boxed(b"minf", |w| {
                if track.codec.is_video() {
                    w.full(b"vmhd", 0, 1, |w| w.zeros(2 + 3 * 2)); // graphicsmode, opcolor
                } else {
                    w.full(b"smhd", 0, 0, |w| w.zeros(2 + 2)); // balance, reserved
                }
                w.boxed(b"dinf", |w| {
                    w.full(b"dref", 0, 0, |w| {
                        w.u32(1);
                        w.full(b"url ", 0, SELF_CONTAINED, |_| {});
                    });
                });
                write_stbl(w, track);
            });
        });
    });
}

/// Sample defaults for fragments: every `trun` states its own durations, sizes and flags.
fn write_trex(w: &mut BoxWriter, track_id: u32) {
    w.full(b"trex", 0, 0, |w| {
        w.u32(track_id);
        w.u32(1); // default_sample_description_index
        w.u32(0); // default_sample_duration
        w.u32(0); // default_sample_size
        w.u32(0); // default_sample_flags
    });
}

fn write_tkhd(w: &mut BoxWriter, track: &TrackInfo) {
    let (width, height) = track.codec.video_config().map_or((0, 0), |(_, _, w, h)| (w, h));
    w.full(b"tkhd", 0, TRACK_ENABLED_IN_MOVIE, |w| {
        w.u32(0); // creation_time
        w.u32(0); // modification_time
        w.u32(track.id);
        w.u32(0); // reserved
        w.u32(0); // duration
        w.zeros(8); // reserved
        w.u16(0); // layer
        w.u16(0); // alternate_group
        w.u16(if track.codec.is_video() { 0 } else { 0x0100 }); // volume
        w.u16(0); // reserved
        write_matrix(w);
        w.u32(u32::from(width) << 16); // 16.16 fixed point
        w.u32(u32::from(height) << 16);
    });
}

fn write_mdhd(w: &mut BoxWriter, timescale: u32) {
    w.full(b"mdhd", 0, 0, |w| {
        w.u32(0); // creation_time
        w.u32(0); // modification_time
        w.u32(timescale);
        w.u32(0); // duration
        w.u16(LANGUAGE_UNDETERMINED);
        w.u16(0); // pre_defined
    });
}

fn write_hdlr(w: &mut BoxWriter, video: bool) {
    let (handler, name): (&FourCc, &[u8]) =
        if video { (b"vide", b"VideoHandler\0") } else { (b"soun", b"SoundHandler\0") };
    w.full(b"hdlr", 0, 0, |w| {
        w.u32(0); // pre_defined
        w.bytes(handler);
        w.zeros(3 * 4); // reserved
        w.bytes(name);
    });
}

fn write_stbl(w: &mut BoxWriter, track: &TrackInfo) {
    w.boxed(b"stbl", |w| {
        w.full(b"stsd", 0, 0, |w| {
            w.u32(1); // entry_count
            write_sample_entry(w, &track.codec);
        });
        // The sample tables stay empty: each holds just entry_count (sample_size and
        // sample_count for stsz) = 0.
        w.full(b"stts", 0, 0, |w| w.u32(0));
        w.full(b"stsc", 0, 0, |w| w.u32(0));
        w.full(b"stsz", 0, 0, |w| w.zeros(8));
        w.full(b"stco", 0, 0, |w| w.u32(0));
    });
}

fn write_sample_entry(w: &mut BoxWriter, codec: &Codec) {
    let kind = codec.sample_entry();
    w.boxed(&kind, |w| {
        w.zeros(6); // reserved
        w.u16(1); // data_reference_index
        if let Some((config_kind, config, width, height)) = codec.video_config() {
            write_visual_fields(w, width, height);
            w.boxed(config_kind, |w| w.bytes(config));
            return;
        }
        match codec {
            Codec::Aac { asc, sample_rate, channels } => {
                write_audio_fields(w, *channels, *sample_rate);
                w.full(b"esds", 0, 0, |w| w.bytes(&es_descriptor(asc)));
            }
            Codec::Opus { channels, pre_skip, input_sample_rate } => {
                write_audio_fields(w, *channels, OPUS_RATE);
                write_dops(w, *channels, *pre_skip, *input_sample_rate);
            }
            _ => {}
        }
    });
}

/// The `VisualSampleEntry` fields after `data_reference_index`.
fn write_visual_fields(w: &mut BoxWriter, width: u16, height: u16) {
    w.u16(0); // pre_defined
    w.u16(0); // reserved
    w.zeros(3 * 4); // pre_defined
    w.u16(width);
    w.u16(height);
    w.u32(DPI_72); // horizresolution
    w.u32(DPI_72); // vertresolution
    w.u32(0); // reserved
    w.u16(1); // frame_count
    w.zeros(32); // compressorname: empty Pascal string
    w.u16(DEPTH_COLOUR);
    w.u16(0xFFFF); // pre_defined = -1
}

/// The `AudioSampleEntry` fields after `data_reference_index`.
fn write_audio_fields(w: &mut BoxWriter, channels: u16, sample_rate: u32) {
    w.zeros(2 * 4); // reserved
    w.u16(channels);
    w.u16(16); // samplesize
    w.u16(0); // pre_defined
    w.u16(0); // reserved
              // 16.16 fixed point; rates above 65535 Hz do not fit, and 0 tells readers to trust the
              // decoder configuration instead.
    w.u32(if sample_rate <= 0xFFFF { sample_rate << 16 } else { 0 });
}

/// `OpusSpecificBox` for channel mapping family 0: like `OpusHead` but big-endian, version 0.
fn write_dops(w: &mut BoxWriter, channels: u16, pre_skip: u16, input_sample_rate: u32) {
    w.boxed(b"dOps", |w| {
        w.u8(0); // Version
        w.u8(u8::try_from(channels).unwrap_or(u8::MAX)); // OutputChannelCount, validated 1..=2
        w.u16(pre_skip);
        w.u32(input_sample_rate);
        w.u16(0); // OutputGain
        w.u8(0); // ChannelMappingFamily
    });
}

/// The `ES_Descriptor` of an `esds` box: a `DecoderConfigDescriptor` with the
/// `AudioSpecificConfig` as `DecoderSpecificInfo`, and the `SLConfigDescriptor` MP4 needs.
fn es_descriptor(asc: &[u8]) -> Vec<u8> {
    let mut config = vec![OTI_MPEG4_AUDIO, STREAM_TYPE_AUDIO];
    config.extend_from_slice(&[0, 0, 0]); // bufferSizeDB: unknown
    config.extend_from_slice(&0u32.to_be_bytes()); // maxBitrate: unknown
    config.extend_from_slice(&0u32.to_be_bytes()); // avgBitrate: unknown (variable)
    config.extend_from_slice(&descriptor(DECODER_SPECIFIC_TAG, asc));

    // ES_ID is 0 in files (ISO/IEC 14496-14, 3.1.2); no dependency, URL or OCR stream.
    let mut es = vec![0, 0, 0];
    es.extend_from_slice(&descriptor(DECODER_CONFIG_TAG, &config));
    es.extend_from_slice(&descriptor(SL_CONFIG_TAG, &[SL_PREDEFINED_MP4]));
    descriptor(ES_DESCRIPTOR_TAG, &es)
}

/// A descriptor: tag, the body length in 7-bit groups (high bit = more follow), body.
/// Callers keep bodies under 2^28 bytes, the most four length bytes can say
/// ([`MAX_CONFIG_SIZE`] is far below).
fn descriptor(tag: u8, body: &[u8]) -> Vec<u8> {
    let len = body.len();
    let mut out = vec![tag];
    let groups = (1..4).rev().filter(|&i| len >> (7 * i) != 0).max().map_or(1, |i| i + 1);
    for i in (0..groups).rev() {
        let more = if i == 0 { 0 } else { 0x80 };
        out.push(((len >> (7 * i)) & 0x7F) as u8 | more);
    }
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::{boxes, find, BoxRef};

    fn avc() -> TrackInfo {
        let avcc = Bytes::from_static(&[1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 4, 0x67, 0x64, 0, 0x1F, 1, 0, 2, 0x68, 0xEE]);
        TrackInfo { id: 1, timescale: 90_000, codec: Codec::Avc { avcc, width: 1280, height: 720 } }
    }

    fn aac() -> TrackInfo {
        let codec = Codec::Aac { asc: Bytes::from_static(&[0x12, 0x10]), sample_rate: 44_100, channels: 2 };
        TrackInfo { id: 2, timescale: 44_100, codec }
    }

    /// The payload of the box at `path` (each step a child of the previous), skipping `skip`
    /// bytes of fixed fields before the children of each step that needs it.
    fn at<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> &'a [u8] {
        let mut cur = data;
        for (i, kind) in path.iter().enumerate() {
            let b = find(cur, kind).unwrap_or_else(|| panic!("no {} box", String::from_utf8_lossy(*kind)));
            cur = b.payload(cur);
            if i + 1 < path.len() {
                cur = &cur[fixed_fields(kind).min(cur.len())..];
            }
        }
        cur
    }

    /// Bytes of fixed fields before the children of a box of type `kind`.
    fn fixed_fields(kind: &[u8; 4]) -> usize {
        match kind {
            b"stsd" | b"dref" => 8,
            b"avc1" | b"hvc1" | b"av01" => 78,
            b"mp4a" | b"Opus" => 28,
            _ => 0,
        }
    }

    /// Walks every box that has children and checks each child ends inside its parent.
    fn walk(data: &[u8]) -> usize {
        let mut count = 0;
        for b in boxes(data) {
            let b: BoxRef = b.expect("well-formed box");
            count += 1;
            let parent = matches!(
                &b.kind,
                b"moov" | b"trak" | b"mdia" | b"minf" | b"dinf" | b"stbl" | b"mvex" | b"stsd" | b"dref"
            ) || matches!(&b.kind, b"avc1" | b"hvc1" | b"av01" | b"mp4a" | b"Opus");
            if !parent {
                continue;
            }
            let skip = fixed_fields(&b.kind);
            let payload = b.payload(data);
            count += walk(&payload[skip..]);
        }
        count
    }

    #[test]
    fn box_tree_is_complete_and_nested() {
        let init = init_segment(&[avc(), aac()]).unwrap();
        let top: Vec<_> = boxes(&init).map(|b| b.unwrap()).collect();
        assert_eq!(top.iter().map(|b| &b.kind).collect::<Vec<_>>(), [b"ftyp", b"moov"]);
        assert_eq!(top[1].end(), init.len());
        // ftyp moov mvhd + 2 x (trak tkhd mdia mdhd hdlr minf {v,s}mhd dinf dref url stbl stsd
        // entry config stts stsc stsz stco) + mvex + 2 trex
        assert_eq!(walk(&init), 3 + 2 * 18 + 1 + 2);
        let moov = top[1].payload(&init);
        let kinds: Vec<_> = boxes(moov).map(|b| b.unwrap().kind).collect();
        assert_eq!(kinds, [*b"mvhd", *b"trak", *b"trak", *b"mvex"]);
        let trak_kinds: Vec<_> =
            boxes(at(moov, &[b"trak", b"mdia", b"minf", b"stbl"])).map(|b| b.unwrap().kind).collect();
        assert_eq!(trak_kinds, [*b"stsd", *b"stts", *b"stsc", *b"stsz", *b"stco"]);
    }

    #[test]
    fn ftyp_brands() {
        let two = init_segment(&[avc(), aac()]).unwrap();
        assert_eq!(at(&two, &[b"ftyp"]), b"iso6\0\0\0\0iso6isommp41");
        let one = init_segment(&[avc()]).unwrap();
        assert_eq!(at(&one, &[b"ftyp"]), b"iso6\0\0\0\0iso6cmfcisommp41");
        let av1 = TrackInfo {
            id: 1,
            timescale: 1000,
            codec: Codec::Av1 { av1c: Bytes::from_static(&[0x81, 0, 0x0C, 0]), width: 64, height: 64 },
        };
        let one = init_segment(&[av1]).unwrap();
        assert_eq!(at(&one, &[b"ftyp"]), b"iso6\0\0\0\0iso6cmfcisommp41av01");
    }

    #[test]
    fn headers_carry_ids_timescales_and_size() {
        let init = init_segment(&[avc(), aac()]).unwrap();
        let mvhd = at(&init, &[b"moov", b"mvhd"]);
        assert_eq!(mvhd.len(), 100);
        assert_eq!(&mvhd[96..], &3u32.to_be_bytes(), "next_track_ID");
        let tkhd = at(&init, &[b"moov", b"trak", b"tkhd"]);
        assert_eq!(tkhd.len(), 84);
        assert_eq!(&tkhd[12..16], &1u32.to_be_bytes());
        assert_eq!(&tkhd[76..80], &(1280u32 << 16).to_be_bytes());
        assert_eq!(&tkhd[80..84], &(720u32 << 16).to_be_bytes());
        let mdhd = at(&init, &[b"moov", b"trak", b"mdia", b"mdhd"]);
        assert_eq!(&mdhd[12..16], &90_000u32.to_be_bytes());
        let hdlr = at(&init, &[b"moov", b"trak", b"mdia", b"hdlr"]);
        assert_eq!(&hdlr[8..12], b"vide");
        let trex: Vec<_> = boxes(at(&init, &[b"moov", b"mvex"])).map(|b| b.unwrap()).collect();
        let mvex = at(&init, &[b"moov", b"mvex"]);
        assert_eq!(trex.len(), 2);
        assert_eq!(&trex[1].payload(mvex)[4..12], &[0, 0, 0, 2, 0, 0, 0, 1], "track_ID 2, description 1");
    }

    #[test]
    fn video_configs_are_copied_verbatim() {
        let avc = avc();
        let Codec::Avc { avcc, .. } = &avc.codec else { unreachable!() };
        let init = init_segment(std::slice::from_ref(&avc)).unwrap();
        let stsd = [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"];
        let entry = at(&init, &[&stsd[..], &[b"avc1"]].concat());
        assert_eq!(&entry[24..28], &[5, 0, 2, 0xD0], "width 1280, height 720");
        assert_eq!(at(&init, &[&stsd[..], &[b"avc1", b"avcC"]].concat()), &avcc[..]);

        let hvcc = Bytes::from((0..40u8).map(|i| if i == 0 { 1 } else { i }).collect::<Vec<_>>());
        let codec = Codec::Hevc { hvcc: hvcc.clone(), width: 3840, height: 2160 };
        let init = init_segment(&[TrackInfo { id: 7, timescale: 90_000, codec }]).unwrap();
        assert_eq!(at(&init, &[&stsd[..], &[b"hvc1", b"hvcC"]].concat()), &hvcc[..]);

        let av1c = Bytes::from_static(&[0x81, 0x08, 0x0C, 0x00, 0x0A, 0x0B, 0, 0, 0, 0x42, 0xAB]);
        let codec = Codec::Av1 { av1c: av1c.clone(), width: 640, height: 360 };
        let init = init_segment(&[TrackInfo { id: 1, timescale: 1000, codec }]).unwrap();
        let entry = at(&init, &[&stsd[..], &[b"av01"]].concat());
        assert_eq!(&entry[24..28], &[2, 0x80, 1, 0x68], "width 640, height 360");
        assert_eq!(at(&init, &[&stsd[..], &[b"av01", b"av1C"]].concat()), &av1c[..]);
    }

    /// Reads one descriptor: (tag, body, bytes after it).
    fn read_descriptor(data: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = data[0];
        let mut len = 0usize;
        let mut i = 1;
        loop {
            len = (len << 7) | usize::from(data[i] & 0x7F);
            i += 1;
            if data[i - 1] & 0x80 == 0 {
                break;
            }
        }
        (tag, &data[i..i + len], &data[i + len..])
    }

    #[test]
    fn esds_descriptor_lengths_nest() {
        let init = init_segment(&[aac()]).unwrap();
        let path = [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"mp4a"];
        let entry = at(&init, &path);
        assert_eq!(&entry[16..18], &2u16.to_be_bytes(), "channelcount");
        assert_eq!(&entry[24..28], &(44_100u32 << 16).to_be_bytes(), "samplerate");
        let esds = at(&init, &[&path[..], &[b"esds"]].concat());
        assert_eq!(&esds[..4], &[0, 0, 0, 0], "version and flags");
        let (tag, es, rest) = read_descriptor(&esds[4..]);
        assert_eq!((tag, rest.len()), (ES_DESCRIPTOR_TAG, 0));
        let (tag, config, rest) = read_descriptor(&es[3..]);
        assert_eq!(tag, DECODER_CONFIG_TAG);
        assert_eq!(read_descriptor(rest), (SL_CONFIG_TAG, &[2u8][..], &[][..]));
        assert_eq!(&config[..2], &[0x40, 0x15]);
        let (tag, asc, rest) = read_descriptor(&config[13..]);
        assert_eq!((tag, asc, rest.len()), (DECODER_SPECIFIC_TAG, &[0x12u8, 0x10][..], 0));
    }

    #[test]
    fn descriptor_length_uses_continuation_bytes() {
        assert_eq!(descriptor(5, &[9; 3]), [5, 3, 9, 9, 9]);
        assert_eq!(&descriptor(5, &[0; 127])[..2], &[5, 127]);
        assert_eq!(&descriptor(5, &[0; 128])[..3], &[5, 0x81, 0x00]);
        assert_eq!(&descriptor(5, &[0; 300])[..3], &[5, 0x82, 0x2C]);
        assert_eq!(&descriptor(5, &[0; 1 << 14])[..4], &[5, 0x81, 0x80, 0x00]);
        let long = descriptor(4, &[7; 20_000]);
        let (_, body, rest) = read_descriptor(&long);
        assert_eq!((body.len(), rest.len()), (20_000, 0));
    }

    #[test]
    fn opus_entry_and_dops() {
        let codec = Codec::Opus { channels: 2, pre_skip: 312, input_sample_rate: 44_100 };
        let init = init_segment(&[TrackInfo { id: 3, timescale: 48_000, codec }]).unwrap();
        let path = [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"Opus"];
        let entry = at(&init, &path);
        assert_eq!(&entry[24..28], &(48_000u32 << 16).to_be_bytes());
        let dops = at(&init, &[&path[..], &[b"dOps"]].concat());
        assert_eq!(dops, [0, 2, 0x01, 0x38, 0, 0, 0xAC, 0x44, 0, 0, 0]);
        assert_eq!(at(&init, &[b"moov", b"trak", b"mdia", b"hdlr"])[8..12], *b"soun");
    }

    #[test]
    fn high_sample_rates_leave_the_entry_rate_zero() {
        let codec = Codec::Aac { asc: Bytes::from_static(&[0x10, 0x08]), sample_rate: 96_000, channels: 1 };
        let init = init_segment(&[TrackInfo { id: 1, timescale: 96_000, codec }]).unwrap();
        let entry = at(&init, &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"mp4a"]);
        assert_eq!(&entry[24..28], &[0, 0, 0, 0]);
    }

    #[test]
    fn bad_tracks_are_named() {
        let mut t = avc();
        t.id = 0;
        assert_eq!(init_segment(&[t]), Err(Fmp4Error::ZeroTrackId));
        let mut t = aac();
        t.id = 1;
        assert_eq!(init_segment(&[avc(), t]), Err(Fmp4Error::DuplicateTrackId(1)));
        let mut t = avc();
        t.timescale = 0;
        assert_eq!(init_segment(&[t]), Err(Fmp4Error::ZeroTimescale { track_id: 1 }));
        let annex_b = Codec::Avc { avcc: Bytes::from_static(&[0, 0, 0, 1, 0x67, 0x64, 0, 0x1F]), width: 1, height: 1 };
        assert_eq!(
            init_segment(&[TrackInfo { id: 4, timescale: 1, codec: annex_b }]),
            Err(Fmp4Error::BadConfig { track_id: 4, record: "avcC", reason: "configurationVersion is not 1" })
        );
        let short = Codec::Hevc { hvcc: Bytes::from_static(&[1, 2, 3]), width: 1, height: 1 };
        assert_eq!(
            init_segment(&[TrackInfo { id: 4, timescale: 1, codec: short }]),
            Err(Fmp4Error::BadConfig { track_id: 4, record: "hvcC", reason: "too short" })
        );
        let empty = Codec::Aac { asc: Bytes::new(), sample_rate: 1, channels: 1 };
        assert!(matches!(
            init_segment(&[TrackInfo { id: 4, timescale: 1, codec: empty }]),
            Err(Fmp4Error::BadConfig { record: "AudioSpecificConfig", .. })
        ));
        let surround = Codec::Opus { channels: 6, pre_skip: 0, input_sample_rate: 48_000 };
        assert_eq!(
            init_segment(&[TrackInfo { id: 4, timescale: 48_000, codec: surround }]),
            Err(Fmp4Error::OpusChannels { track_id: 4, channels: 6 })
        );
        let huge = Codec::Av1 { av1c: Bytes::from(vec![0x81; MAX_CONFIG_SIZE + 1]), width: 1, height: 1 };
        assert_eq!(
            init_segment(&[TrackInfo { id: 4, timescale: 1, codec: huge }]),
            Err(Fmp4Error::ConfigTooLarge { track_id: 4, record: "av1C", len: MAX_CONFIG_SIZE + 1 })
        );
    }
}

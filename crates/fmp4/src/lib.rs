//! Fragmented MP4 (CMAF-style) writing for HLS fMP4 segments, low-latency HLS parts and MP4
//! recordings that survive a crash; and a box lister to read it back. No I/O.
//!
//! | Spec | Module |
//! | --- | --- |
//! | ISO/IEC 14496-12 (ISOBMFF): 4.2 box header, 4.3 `ftyp`, 8.2-8.7 `moov` tree, 8.8 `mvex`/`trex`, `moof`/`mfhd`/`traf`/`tfhd`/`trun`, 8.8.12 `tfdt`, 8.16.2 `styp`, 12.1-12.2 sample entries | [`init`], [`mod@fragment`], [`reader`] |
//! | ISO/IEC 14496-15: 5.3.3.1 `AVCDecoderConfigurationRecord`, 5.4.2 `avc1`; 8.3.3.1 `HEVCDecoderConfigurationRecord`, 8.4.1 `hvc1` | [`init`] |
//! | AV1 Codec ISO Media File Format Binding v1.2: 2.2 `av01`, 2.3 `av1C`, 2.4 samples | [`init`], [`mod@fragment`] |
//! | ISO/IEC 14496-14, 5.6 `esds`; ISO/IEC 14496-1, 7.2.6 `ES_Descriptor`, `DecoderConfigDescriptor` | [`init`] |
//! | Encapsulation of Opus in ISOBMFF v0.8: 4.3 `Opus` sample entry, `dOps` | [`init`] |
//! | ISO/IEC 23000-19 (CMAF): 7.2 header brands (`cmfc`), 7.3 fragments | [`init`], [`mod@fragment`] |
//! | Apple HLS Authoring Specification, fMP4: `tfdt` in every fragment, `hvc1` for HEVC | [`init`], [`mod@fragment`] |
//! | ISO/IEC 14496-12, 8.6.1-8.7.5 sample tables (`stts`, `ctts`, `stss`, `stsz`, `stsc`, `co64`); reading `moof`/`traf`/`trun` back | [`progressive`], [`reader`] |
//!
//! An output writes [`init_segment`] once, then one [`fragment()`] per segment or part (HLS may
//! open each segment with [`segment_type`]). Sample data goes in as RTMP carries it: AVC and
//! HEVC in length-prefixed (AVCC) form, AV1 as OBUs, AAC and Opus as raw frames. A recording
//! cut short is repaired by truncating it to [`complete_len`]; a finished one can be rewritten
//! as a progressive MP4 with `moov` first ([`progressive_head`] with tables gathered from the
//! `moof`s by a [`TableBuilder`]).
//!
//! ```
//! use bytes::Bytes;
//! use fmp4::{fragment, init_segment, Codec, Sample, TrackInfo, TrackRun};
//!
//! let asc = Bytes::from_static(&[0x12, 0x10]); // AAC-LC, 44.1 kHz, stereo
//! let codec = Codec::Aac { asc, sample_rate: 44_100, channels: 2 };
//! let mut file = init_segment(&[TrackInfo { id: 1, timescale: 44_100, codec }])?;
//! let frame = Sample { duration: 1024, keyframe: true, cts_offset: 0, data: Bytes::from_static(&[0x21, 0x10, 0x04]) };
//! let samples = [frame.clone(), frame];
//! file.extend(fragment(1, &[TrackRun { track_id: 1, base_decode_time: 0, samples: &samples }])?);
//! let first_fragment_end = file.len();
//! file.extend(fragment(2, &[TrackRun { track_id: 1, base_decode_time: 2048, samples: &samples }])?);
//! // A crash one byte short of the end loses the second fragment only.
//! assert_eq!(fmp4::complete_len(&file[..file.len() - 1]), first_fragment_end);
//! # Ok::<(), fmp4::Fmp4Error>(())
//! ```
#![deny(missing_docs, unsafe_code, unreachable_pub)]

mod error;
pub mod fragment;
pub mod init;
pub mod progressive;
pub mod reader;
mod writer;

pub use error::Fmp4Error;
pub use fragment::{fragment, segment_type, Sample, TrackRun};
pub use init::{init_segment, Codec, TrackInfo};
pub use progressive::{progressive_head, Chunk, TableBuilder, TrackTable};
pub use reader::{boxes, complete_len, find, parse_moof, BoxRef, Boxes, SampleInfo, TrackRunInfo};

/// A box type or brand: four bytes, usually ASCII.
pub type FourCc = [u8; 4];

/// Largest codec configuration record [`init_segment`] accepts. Real records are tens to
/// hundreds of bytes; the bound keeps every box within its 32-bit size.
pub const MAX_CONFIG_SIZE: usize = 1 << 20;

/// Largest fragment [`fragment()`] writes: `trun` data offsets are signed 32-bit numbers counted
/// from the start of the `moof`.
pub const MAX_FRAGMENT_SIZE: u64 = i32::MAX as u64;

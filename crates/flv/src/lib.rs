//! FLV and RTMP media payloads: I/O-free parsing of tag headers and codec configuration
//! records, and FLV file reading and writing.
//!
//! | Spec | Module |
//! | --- | --- |
//! | Adobe Flash Video File Format Specification v10.1, Annex E (FLV header, tags, `VideoTagHeader`, `AudioTagHeader`) | [`tag`], [`reader`], [`writer`] |
//! | FLV spec v10.1, E.2–E.3, live (timestamps from 0 per player, as nginx-http-flv-module) | [`live`] |
//! | FLV spec v10.1, E.5 (`onMetaData`); the yamdi/flvtool2 `keyframes` index | [`meta`] |
//! | Enhanced RTMP v1 and v2 (veovera): `ExVideoTagHeader`, `ExAudioTagHeader`, FourCCs, ModEx, multitrack | [`tag`] |
//! | ISO/IEC 14496-15: `AVCDecoderConfigurationRecord` (5.3.3.1), `HEVCDecoderConfigurationRecord` (8.3.3.1) | [`codec`] |
//! | ISO/IEC 14496-10, 7.3.2.1 (H.264 SPS); ITU-T H.265, 7.3.2.2 (H.265 SPS) | [`codec`] |
//! | ISO/IEC 14496-3, 1.6.2.1 (`AudioSpecificConfig`) | [`codec`] |
//! | AV1 Codec ISO Media File Format Binding, 2.3 (`av1C`); AV1 spec 5.5 (sequence header OBU) | [`codec`] |
//! | RFC 7845, 5.1 (`OpusHead`) | [`codec`] |
//!
//! The FLV tag body is exactly the RTMP audio/video message payload, so [`parse_video`] and
//! [`parse_audio`] serve both the live path and FLV files. Nothing here does I/O; no parser
//! panics on malformed input.
#![deny(missing_docs, unsafe_code, unreachable_pub)]

mod bits;
pub mod codec;
mod error;
pub mod live;
pub mod meta;
pub mod reader;
pub mod tag;
pub mod writer;

pub use codec::{
    parse_aac_config, parse_audio_config, parse_av1_config, parse_avc_config, parse_hevc_config, parse_video_config,
    AudioParams, VideoParams,
};
pub use error::FlvError;
pub use live::{Gathered, LiveMuxer};
pub use meta::{Keyframe, RecordingMeta};
pub use reader::{parse_file_header, FileHeader, FlvReader, Tag, TagHeader};
pub use tag::{
    parse_audio, parse_video, AudioCodec, AudioHeader, AudioPacket, FourCc, FrameType, MultitrackKind, VideoCodec,
    VideoHeader, VideoPacket,
};
pub use writer::{file_header, write_tag, FileWriter, MetaSlot, Patch, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_video(&data);
            let _ = parse_audio(&data);
            let _ = parse_avc_config(&data);
            let _ = parse_hevc_config(&data);
            let _ = parse_av1_config(&data);
            let _ = parse_aac_config(&data);
            let _ = codec::parse_opus_head(&data);
            let _ = codec::parse_avc_sps(&data);
            let _ = codec::parse_hevc_sps(&data);
            let _ = RecordingMeta::decode(&data);
            let _ = TagHeader::parse(&data);
            let _ = parse_file_header(&data);
            if let Ok(r) = FlvReader::new(bytes::Bytes::from(data.clone())) {
                for _ in r {}
            }
        }

        #[test]
        fn headers_stay_in_bounds(data in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(h) = parse_video(&data) {
                prop_assert!(h.payload_offset <= h.payload_end && h.payload_end <= data.len());
            }
            if let Ok(h) = parse_audio(&data) {
                prop_assert!(h.payload_offset <= h.payload_end && h.payload_end <= data.len());
            }
        }

        #[test]
        fn enhanced_headers_never_panic(
            b0 in 0x80u8..=0xFF,
            rest in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut v = vec![b0];
            v.extend_from_slice(&rest);
            let _ = parse_video(&v);
            v[0] = 0x90 | (b0 & 0x0F);
            let _ = parse_audio(&v);
        }

        #[test]
        fn config_records_never_panic(
            prefix in prop::sample::select(vec![
                &[0x01u8, 0x64, 0x00, 0x1f, 0xff, 0xe1][..],
                &[0x81, 0x01, 0x0c, 0x00][..],
            ]),
            rest in prop::collection::vec(any::<u8>(), 0..128),
        ) {
            let mut v = prefix.to_vec();
            v.extend_from_slice(&rest);
            let _ = parse_avc_config(&v);
            let _ = parse_av1_config(&v);
            let mut h = vec![0x01; 22];
            h.push(1);
            h.extend_from_slice(&rest);
            let _ = parse_hevc_config(&h);
        }
    }
}

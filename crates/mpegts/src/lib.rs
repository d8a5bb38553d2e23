//! MPEG-2 transport stream writing for HLS, I/O-free: a single-program muxer (PAT, PMT, PES in
//! 188-byte packets) and the conversions from FLV/RTMP payloads to the elementary streams it
//! carries (Annex B video, ADTS audio).
//!
//! | Spec | Module |
//! | --- | --- |
//! | ISO/IEC 13818-1 (H.222.0), 2.4.3 (transport packet, adaptation field, PES), 2.4.4 (PAT, PMT), Annex A (CRC) | [`mux`], [`psi`] |
//! | ITU-T H.222.0 Amd. 3: HEVC in MPEG-2 TS (stream_type 0x24) | [`mux`], [`psi`] |
//! | ISO/IEC 14496-15, 5.3.3.1 and 8.3.3.1 (AVC and HEVC decoder configuration records) | [`es`] |
//! | ISO/IEC 14496-10 and ITU-T H.265, Annex B (byte stream), access unit delimiters | [`es`] |
//! | ISO/IEC 13818-1, 2.4.3.6–2.4.3.7 (PES header timestamps, read back for checks) | [`read`] |
//! | ISO/IEC 14496-3, 1.6.2.1 (`AudioSpecificConfig`), 1.A.2.2 (ADTS) | [`es`] |
//!
//! PIDs and table layout follow nginx-rtmp's HLS module and ffmpeg's defaults, so segments look
//! like theirs to players. A typical segment:
//!
//! ```
//! use mpegts::{AudioType, Muxer, Pes, Track, VideoType};
//!
//! let mut mux = Muxer::new(Some(VideoType::H264), Some(AudioType::Aac));
//! let mut segment = Vec::new();
//! mux.write_tables(&mut segment);
//! let key = Pes { pts: 126_000, dts: Some(120_000), pcr: Some(114_000), random_access: true, data: b"..." };
//! mux.write_pes(Track::Video, &key, &mut segment).unwrap();
//! assert_eq!(segment.len() % mpegts::PACKET_SIZE, 0);
//! ```
#![deny(missing_docs, unsafe_code, unreachable_pub)]

mod crc;
mod error;
pub mod es;
pub mod mux;
pub mod psi;
pub mod read;

pub use error::{EsError, MuxError};
pub use es::{
    adts_header, avc_parameter_sets, hevc_parameter_sets, parse_audio_specific_config, to_annex_b, write_adts,
    AacConfig, ParameterSets,
};
pub use mux::{AudioType, Muxer, Pes, Track, VideoType};

/// PID of the program association table.
pub const PAT_PID: u16 = 0;
/// PID of the program map table (ffmpeg's default; nginx-rtmp uses 0x1001).
pub const PMT_PID: u16 = 0x1000;
/// PID of the video stream, as nginx-rtmp and ffmpeg use it.
pub const VIDEO_PID: u16 = 0x100;
/// PID of the audio stream, as nginx-rtmp uses it (and ffmpeg when there is video).
pub const AUDIO_PID: u16 = 0x101;
/// Size of a transport stream packet.
pub const PACKET_SIZE: usize = 188;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn es_parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..200), size in 0u8..8, key: bool) {
            let _ = avc_parameter_sets(&data);
            let _ = hevc_parameter_sets(&data);
            if let Ok(cfg) = parse_audio_specific_config(&data) {
                let _ = adts_header(&cfg, data.len());
            }
            let ps = ParameterSets { nal_length_size: size, nals: vec![bytes::Bytes::from_static(&[0x67])] };
            for codec in [VideoType::H264, VideoType::H265] {
                let mut out = Vec::new();
                if to_annex_b(codec, &ps, &data, key, &mut out).is_err() {
                    prop_assert!(out.is_empty());
                }
            }
        }

        #[test]
        fn config_records_never_panic(rest in prop::collection::vec(any::<u8>(), 0..128)) {
            let mut avc = vec![1u8, 0x64, 0, 0x1F, 0xFF, 0xE1];
            avc.extend_from_slice(&rest);
            let _ = avc_parameter_sets(&avc);
            let mut hevc = vec![1u8; 22];
            hevc.push(3);
            hevc.extend_from_slice(&rest);
            let _ = hevc_parameter_sets(&hevc);
        }
    }
}

//! Decoder configuration records (the payload of sequence-start tags), parsed for stream
//! statistics: codec, resolution, profile and level; sample rate and channels.

use crate::bits::{rbsp, BitReader};
use crate::tag::{AudioCodec, VideoCodec};
use crate::FlvError;

/// What a video sequence header says about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoParams {
    /// Codec.
    pub codec: VideoCodec,
    /// Display width in pixels (after cropping); 0 if the record carries no sequence header
    /// (possible only for AV1).
    pub width: u32,
    /// Display height in pixels (after cropping); 0 if unknown, as for `width`.
    pub height: u32,
    /// `profile_idc` (AVC), `general_profile_idc` (HEVC) or `seq_profile` (AV1).
    pub profile: u8,
    /// `level_idc` (AVC, level x 10), `general_level_idc` (HEVC, level x 30) or
    /// `seq_level_idx` (AV1).
    pub level: u8,
}

impl VideoParams {
    /// The profile's name, e.g. "High", "Main 10"; "unknown" for values without one.
    pub fn profile_name(&self) -> &'static str {
        match (self.codec, self.profile) {
            (VideoCodec::Avc, 66) => "Baseline",
            (VideoCodec::Avc, 77) => "Main",
            (VideoCodec::Avc, 88) => "Extended",
            (VideoCodec::Avc, 100) => "High",
            (VideoCodec::Avc, 110) => "High 10",
            (VideoCodec::Avc, 122) => "High 4:2:2",
            (VideoCodec::Avc, 244) => "High 4:4:4",
            (VideoCodec::Hevc, 1) => "Main",
            (VideoCodec::Hevc, 2) => "Main 10",
            (VideoCodec::Hevc, 3) => "Main Still Picture",
            (VideoCodec::Hevc, 4) => "Rext",
            (VideoCodec::Av1, 0) => "Main",
            (VideoCodec::Av1, 1) => "High",
            (VideoCodec::Av1, 2) => "Professional",
            _ => "unknown",
        }
    }

    /// The level as usually written, e.g. "3.1" (AVC `level_idc` 31, HEVC 93, AV1 idx 5).
    pub fn level_name(&self) -> String {
        match self.codec {
            VideoCodec::Avc => format!("{}.{}", self.level / 10, self.level % 10),
            VideoCodec::Hevc => {
                let tenths = u32::from(self.level) * 10 / 30;
                format!("{}.{}", tenths / 10, tenths % 10)
            }
            VideoCodec::Av1 => format!("{}.{}", 2 + self.level / 4, self.level % 4),
            _ => self.level.to_string(),
        }
    }
}

/// What an audio sequence header says about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioParams {
    /// Codec.
    pub codec: AudioCodec,
    /// Sample rate in Hz (for HE-AAC with explicit signalling, the SBR output rate).
    pub sample_rate: u32,
    /// Channel count; 0 if the config leaves it to the stream (AAC channelConfiguration 0).
    pub channels: u8,
    /// AAC audioObjectType (2 = LC, 5 = HE-AAC/SBR, 29 = HE-AAC v2/PS); 0 for other codecs.
    pub object_type: u8,
}

/// Parses the configuration record of a video sequence header for the codecs this crate knows
/// (AVC, HEVC, AV1). `Ok(None)` for other codecs.
pub fn parse_video_config(codec: VideoCodec, config: &[u8]) -> Result<Option<VideoParams>, FlvError> {
    match codec {
        VideoCodec::Avc => parse_avc_config(config).map(Some),
        VideoCodec::Hevc => parse_hevc_config(config).map(Some),
        VideoCodec::Av1 => parse_av1_config(config).map(Some),
        _ => Ok(None),
    }
}

/// Parses the configuration of an audio sequence header for the codecs this crate knows
/// (AAC AudioSpecificConfig, Opus `OpusHead`). `Ok(None)` for other codecs.
pub fn parse_audio_config(codec: AudioCodec, config: &[u8]) -> Result<Option<AudioParams>, FlvError> {
    match codec {
        AudioCodec::Aac => parse_aac_config(config).map(Some),
        AudioCodec::Opus => parse_opus_head(config).map(Some),
        _ => Ok(None),
    }
}

fn get<'a>(data: &'a [u8], start: usize, len: usize, what: &'static str) -> Result<&'a [u8], FlvError> {
    start.checked_add(len).and_then(|end| data.get(start..end)).ok_or(FlvError::Truncated(what))
}

fn to_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Parses an `AVCDecoderConfigurationRecord` and its first SPS.
/// Defined by: ISO/IEC 14496-15, 5.3.3.1.
pub fn parse_avc_config(data: &[u8]) -> Result<VideoParams, FlvError> {
    const WHAT: &str = "AVCDecoderConfigurationRecord";
    let head = get(data, 0, 6, WHAT)?;
    if head[0] != 1 {
        return Err(FlvError::Invalid("AVCDecoderConfigurationRecord version"));
    }
    if head[5] & 0x1F == 0 {
        return Err(FlvError::MissingParameterSet("SPS"));
    }
    let len = get(data, 6, 2, WHAT)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    parse_avc_sps(get(data, 8, len, WHAT)?)
}

/// Parses an H.264 SPS NAL unit (with its NAL header byte).
/// Defined by: ISO/IEC 14496-10, 7.3.2.1.1; cropping from 7.4.2.1.1.
pub fn parse_avc_sps(nal: &[u8]) -> Result<VideoParams, FlvError> {
    let data = rbsp(nal);
    if data.first().map(|b| b & 0x1F) != Some(7) {
        return Err(FlvError::Invalid("SPS NAL unit type"));
    }
    let mut r = BitReader::new(&data[1..], "SPS");
    let profile = r.bits(8)? as u8;
    r.skip(8)?; // constraint_set flags + reserved
    let level = r.bits(8)? as u8;
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(profile, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            // seq_scaling_matrix_present_flag
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            if cycle > 255 {
                return Err(FlvError::Invalid("num_ref_frames_in_pic_order_cnt_cycle"));
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.bit()?;
    if !frame_mbs_only {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
    if r.bit()? {
        crop_l = r.ue()?.into();
        crop_r = r.ue()?.into();
        crop_t = r.ue()?.into();
        crop_b = r.ue()?.into();
    }
    let field_factor: u64 = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
    let (crop_x, crop_y): (u64, u64) = match chroma_array_type {
        0 => (1, field_factor),
        1 => (2, 2 * field_factor),
        2 => (2, field_factor),
        _ => (1, field_factor),
    };
    let width = width_mbs.saturating_mul(16).saturating_sub(crop_x.saturating_mul(crop_l.saturating_add(crop_r)));
    let height = height_map_units
        .saturating_mul(16)
        .saturating_mul(field_factor)
        .saturating_sub(crop_y.saturating_mul(crop_t.saturating_add(crop_b)));
    Ok(VideoParams { codec: VideoCodec::Avc, width: to_u32(width), height: to_u32(height), profile, level })
}

/// `scaling_list()`. Defined by: ISO/IEC 14496-10, 7.3.2.1.1.1.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), FlvError> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            // A corrupt delta can be near the i32 range: add wide.
            next = (i64::from(last) + i64::from(delta)).rem_euclid(256) as i32;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Parses an `HEVCDecoderConfigurationRecord` and the first SPS in its arrays.
/// Defined by: ISO/IEC 14496-15, 8.3.3.1.
pub fn parse_hevc_config(data: &[u8]) -> Result<VideoParams, FlvError> {
    const WHAT: &str = "HEVCDecoderConfigurationRecord";
    const SPS_NUT: u8 = 33;
    let head = get(data, 0, 23, WHAT)?;
    if head[0] != 1 {
        return Err(FlvError::Invalid("HEVCDecoderConfigurationRecord version"));
    }
    let num_arrays = head[22];
    let mut pos = 23;
    for _ in 0..num_arrays {
        let a = get(data, pos, 3, WHAT)?;
        let nal_type = a[0] & 0x3F;
        let count = u16::from_be_bytes([a[1], a[2]]);
        pos += 3;
        for _ in 0..count {
            let l = get(data, pos, 2, WHAT)?;
            let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
            let nal = get(data, pos + 2, len, WHAT)?;
            if nal_type == SPS_NUT {
                return parse_hevc_sps(nal);
            }
            pos += 2 + len;
        }
    }
    Err(FlvError::MissingParameterSet("SPS"))
}

/// Parses an H.265 SPS NAL unit (with its 2-byte NAL header).
/// Defined by: ITU-T H.265, 7.3.2.2.1 and 7.3.3 (`profile_tier_level`).
pub fn parse_hevc_sps(nal: &[u8]) -> Result<VideoParams, FlvError> {
    let data = rbsp(nal);
    if data.len() < 2 || (data[0] >> 1) & 0x3F != 33 {
        return Err(FlvError::Invalid("SPS NAL unit type"));
    }
    let mut r = BitReader::new(&data[2..], "SPS");
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)? as usize;
    r.skip(1)?; // sps_temporal_id_nesting_flag
                // profile_tier_level(1, sps_max_sub_layers_minus1)
    r.skip(3)?; // general_profile_space, general_tier_flag
    let profile = r.bits(5)? as u8;
    r.skip(32 + 4 + 43 + 1)?;
    let level = r.bits(8)? as u8;
    let mut sub_layer_flags = [(false, false); 8];
    for flags in sub_layer_flags.iter_mut().take(max_sub_layers_minus1) {
        *flags = (r.bit()?, r.bit()?);
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(2 * (8 - max_sub_layers_minus1))?; // reserved_zero_2bits
    }
    for &(profile_present, level_present) in sub_layer_flags.iter().take(max_sub_layers_minus1) {
        if profile_present {
            r.skip(88)?;
        }
        if level_present {
            r.skip(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = r.ue()?;
    let mut separate_colour_plane = false;
    if chroma_format_idc == 3 {
        separate_colour_plane = r.bit()?;
    }
    let width = u64::from(r.ue()?);
    let height = u64::from(r.ue()?);
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
    if r.bit()? {
        crop_l = r.ue()?.into();
        crop_r = r.ue()?.into();
        crop_t = r.ue()?.into();
        crop_b = r.ue()?.into();
    }
    // SubWidthC / SubHeightC, Table 6-1.
    let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    Ok(VideoParams {
        codec: VideoCodec::Hevc,
        width: to_u32(width.saturating_sub(sub_w * (crop_l + crop_r))),
        height: to_u32(height.saturating_sub(sub_h * (crop_t + crop_b))),
        profile,
        level,
    })
}

/// Parses an `AV1CodecConfigurationRecord` (av1C) and, if its configOBUs hold one, the
/// sequence header OBU. Defined by: AV1 Codec ISO Media File Format Binding, 2.3.3; sequence
/// header from the AV1 spec, 5.5.
pub fn parse_av1_config(data: &[u8]) -> Result<VideoParams, FlvError> {
    const WHAT: &str = "AV1CodecConfigurationRecord";
    let head = get(data, 0, 4, WHAT)?;
    if head[0] != 0x81 {
        return Err(FlvError::Invalid("av1C marker/version"));
    }
    let mut params =
        VideoParams { codec: VideoCodec::Av1, width: 0, height: 0, profile: head[1] >> 5, level: head[1] & 0x1F };
    let mut obus = &data[4..];
    while let Some((&header, rest)) = obus.split_first() {
        let obu_type = (header >> 3) & 0x0F;
        let has_extension = header & 0x04 != 0;
        let has_size = header & 0x02 != 0;
        let mut rest = rest;
        if has_extension {
            rest = rest.get(1..).ok_or(FlvError::Truncated("OBU header"))?;
        }
        let size = if has_size {
            let (size, n) = leb128(rest)?;
            rest = &rest[n..];
            usize::try_from(size).unwrap_or(usize::MAX)
        } else {
            rest.len()
        };
        let payload = rest.get(..size).ok_or(FlvError::Truncated("OBU"))?;
        const OBU_SEQUENCE_HEADER: u8 = 1;
        if obu_type == OBU_SEQUENCE_HEADER {
            let (w, h) = parse_av1_sequence_header(payload)?;
            params.width = w;
            params.height = h;
            break;
        }
        obus = &rest[size..];
    }
    Ok(params)
}

/// `leb128()`: returns the value and the bytes it took. Defined by: AV1 spec, 4.10.5.
fn leb128(data: &[u8]) -> Result<(u64, usize), FlvError> {
    let mut value = 0u64;
    for i in 0..8 {
        let b = *data.get(i).ok_or(FlvError::Truncated("leb128"))?;
        value |= u64::from(b & 0x7F) << (i * 7);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(FlvError::Invalid("leb128 longer than 8 bytes"))
}

/// Returns `max_frame_width_minus_1 + 1` and `max_frame_height_minus_1 + 1`.
/// Defined by: AV1 spec, 5.5.1 (`sequence_header_obu`).
fn parse_av1_sequence_header(payload: &[u8]) -> Result<(u32, u32), FlvError> {
    let mut r = BitReader::new(payload, "sequence header OBU");
    r.skip(3)?; // seq_profile
    r.skip(1)?; // still_picture
    let reduced_still_picture_header = r.bit()?;
    if reduced_still_picture_header {
        r.skip(5)?; // seq_level_idx[0]
    } else {
        let timing_info_present = r.bit()?;
        let mut decoder_model_info_present = false;
        let mut buffer_delay_length = 0;
        if timing_info_present {
            r.skip(32 + 32)?; // num_units_in_display_tick, time_scale
            if r.bit()? {
                // equal_picture_interval
                r.uvlc()?; // num_ticks_per_picture_minus_1
            }
            decoder_model_info_present = r.bit()?;
            if decoder_model_info_present {
                buffer_delay_length = r.bits(5)? as usize + 1;
                r.skip(32 + 5 + 5)?;
            }
        }
        let initial_display_delay_present = r.bit()?;
        let operating_points = r.bits(5)? + 1;
        for _ in 0..operating_points {
            r.skip(12)?; // operating_point_idc
            let seq_level_idx = r.bits(5)?;
            if seq_level_idx > 7 {
                r.skip(1)?; // seq_tier
            }
            if decoder_model_info_present && r.bit()? {
                // operating_parameters_info()
                r.skip(2 * buffer_delay_length + 1)?;
            }
            if initial_display_delay_present && r.bit()? {
                r.skip(4)?; // initial_display_delay_minus_1
            }
        }
    }
    let width_bits = r.bits(4)? + 1;
    let height_bits = r.bits(4)? + 1;
    let width = r.bits(width_bits)? + 1;
    let height = r.bits(height_bits)? + 1;
    Ok((width, height))
}

/// Parses an AAC `AudioSpecificConfig`. Defined by: ISO/IEC 14496-3, 1.6.2.1.
pub fn parse_aac_config(data: &[u8]) -> Result<AudioParams, FlvError> {
    const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    let mut r = BitReader::new(data, "AudioSpecificConfig");
    let object_type = |r: &mut BitReader<'_>| -> Result<u8, FlvError> {
        let t = r.bits(5)?;
        Ok(if t == 31 { 32 + r.bits(6)? } else { t } as u8)
    };
    let rate = |r: &mut BitReader<'_>| -> Result<u32, FlvError> {
        match r.bits(4)? {
            0xF => r.bits(24),
            i => RATES.get(i as usize).copied().ok_or(FlvError::Invalid("samplingFrequencyIndex")),
        }
    };
    let aot = object_type(&mut r)?;
    let mut sample_rate = rate(&mut r)?;
    let channel_config = r.bits(4)? as u8;
    // Explicit SBR/PS signalling: the extension rate is what a decoder outputs.
    if aot == 5 || aot == 29 {
        sample_rate = rate(&mut r)?;
    }
    let channels = match channel_config {
        1 if aot == 29 => 2,
        7 => 8,
        c => c,
    };
    Ok(AudioParams { codec: AudioCodec::Aac, sample_rate, channels, object_type: aot })
}

/// Parses an Opus identification header (`OpusHead`), the Enhanced RTMP Opus sequence start.
/// Defined by: RFC 7845, 5.1. Reports 48 kHz, the rate Opus always decodes at.
pub fn parse_opus_head(data: &[u8]) -> Result<AudioParams, FlvError> {
    let head = get(data, 0, 19, "OpusHead")?;
    if &head[..8] != b"OpusHead" {
        return Err(FlvError::Invalid("OpusHead magic"));
    }
    Ok(AudioParams { codec: AudioCodec::Opus, sample_rate: 48000, channels: head[9], object_type: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// AVCDecoderConfigurationRecord from libx264, 1280x720 High@3.1.
    const AVC_720P: &str =
        "0164001fffe1001a6764001facd9405005bb0110000003001000000303c0f183196001000668ebe3cb22c0fdf8f800";
    /// Same encoder at 1278x718: coded as 1280x720 with frame cropping.
    const AVC_CROPPED: &str =
        "0164001fffe1001b6764001facd9405005beab0110000003001000000303c0f183196001000668ebe3cb22c0fdf8f800";
    /// HEVCDecoderConfigurationRecord from libx265 at 1278x718 (VPS, SPS, PPS; SEI dropped).
    const HEVC_CROPPED: &str = "0101600000009000000000005df000fcfdf8f800000f03200001001840010c01ffff01600000030090000003000003005d959809210001002c42010101600000030090000003000003005da00280802d1d565959a4932bc05a020000030002000003003c1022000100074401c172b46240";
    /// av1C from libaom at 640x360, with its sequence header OBU.
    const AV1_360P: &str = "81010c000a0b0000000cc4ff6736be4010";

    #[test]
    fn avc() {
        let p = parse_avc_config(&hex(AVC_720P)).unwrap();
        assert_eq!((p.codec, p.width, p.height), (VideoCodec::Avc, 1280, 720));
        assert_eq!((p.profile, p.level), (100, 31));
        assert_eq!((p.profile_name(), p.level_name().as_str()), ("High", "3.1"));
        let p = parse_avc_config(&hex(AVC_CROPPED)).unwrap();
        assert_eq!((p.width, p.height), (1278, 718));
        // The tag-level helper reaches the same result.
        let body = hex(crate::tag::tests::AVC_SEQUENCE_HEADER_TAG);
        let h = crate::parse_video(&body).unwrap();
        let p = parse_video_config(h.codec, h.payload(&body)).unwrap().unwrap();
        assert_eq!((p.width, p.height), (1280, 720));
    }

    #[test]
    fn corrupt_sps_fields_do_not_overflow() {
        // Found by `cargo fuzz run flv`: a scaling-list delta near i32::MAX.
        let body = [
            0x77, 0x10, 0x01, 0x7a, 0x17, 0x01, 0x52, 0x00, 0x18, 0x16, 0x1f, 0x00, 0x17, 0x07, 0x87, 0x07, 0xfe, 0xff,
            0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0xff, 0xff, 0xff, 0xf9, 0x00, 0x77, 0xff, 0xff, 0xff, 0xff, 0xb9,
            0xb9, 0xb9, 0x18, 0x00, 0x00, 0x00, 0xb9, 0xb9, 0x77, 0x10, 0x00, 0x90,
        ];
        if let Ok(h) = crate::parse_video(&body) {
            let _ = parse_video_config(h.codec, h.payload(&body));
        }
    }

    #[test]
    fn avc_errors() {
        let mut rec = hex(AVC_720P);
        rec[5] = 0xE0;
        assert_eq!(parse_avc_config(&rec), Err(FlvError::MissingParameterSet("SPS")));
        let rec = hex(AVC_720P);
        assert_eq!(parse_avc_config(&rec[..20]), Err(FlvError::Truncated("AVCDecoderConfigurationRecord")));
        assert_eq!(
            parse_avc_config(&[2, 0, 0, 0, 0, 0]),
            Err(FlvError::Invalid("AVCDecoderConfigurationRecord version"))
        );
    }

    #[test]
    fn avc_baseline_minimal_sps() {
        // Baseline 176x144 (11x9 macroblocks), level 1.0, POC type 2.
        // profile 66, flags 0, level 10; ue(0) sps id, ue(0) log2_max_frame_num,
        // ue(2) poc type, ue(1) refs, gaps 0, ue(10) width-1, ue(8) height-1, frame_mbs_only 1,
        // direct8x8 1, cropping 0, vui 0.
        let mut w = Vec::new();
        for bits in ["1", "1", "011", "010", "0", "0001011", "0001001", "1", "1", "0", "0"] {
            w.extend(bits.chars().map(|c| c == '1'));
        }
        while w.len() % 8 != 0 {
            w.push(false);
        }
        let mut nal = vec![0x67, 66, 0, 10];
        nal.extend(w.chunks(8).map(|c| c.iter().fold(0u8, |a, &b| (a << 1) | u8::from(b))));
        let p = parse_avc_sps(&nal).unwrap();
        assert_eq!((p.width, p.height, p.profile, p.level), (176, 144, 66, 10));
        assert_eq!(p.profile_name(), "Baseline");
    }

    #[test]
    fn hevc() {
        let p = parse_hevc_config(&hex(HEVC_CROPPED)).unwrap();
        assert_eq!((p.codec, p.width, p.height), (VideoCodec::Hevc, 1278, 718));
        assert_eq!((p.profile, p.level), (1, 93));
        assert_eq!((p.profile_name(), p.level_name().as_str()), ("Main", "3.1"));
        let mut no_sps = hex(HEVC_CROPPED);
        no_sps[22] = 1; // only the VPS array
        assert_eq!(parse_hevc_config(&no_sps), Err(FlvError::MissingParameterSet("SPS")));
    }

    #[test]
    fn av1() {
        let p = parse_av1_config(&hex(AV1_360P)).unwrap();
        assert_eq!((p.codec, p.width, p.height), (VideoCodec::Av1, 640, 360));
        assert_eq!((p.profile, p.level), (0, 1));
        assert_eq!((p.profile_name(), p.level_name().as_str()), ("Main", "2.1"));
        // Without configOBUs the resolution is unknown.
        let p = parse_av1_config(&hex("81010c00")).unwrap();
        assert_eq!((p.width, p.height), (0, 0));
        assert_eq!(parse_av1_config(&hex("01010c00")), Err(FlvError::Invalid("av1C marker/version")));
    }

    #[test]
    fn aac() {
        let p = parse_aac_config(&[0x12, 0x10]).unwrap();
        assert_eq!((p.codec, p.object_type, p.sample_rate, p.channels), (AudioCodec::Aac, 2, 44100, 2));
        // LC 48 kHz 6 channels.
        let p = parse_aac_config(&[0x11, 0xb0]).unwrap();
        assert_eq!((p.sample_rate, p.channels), (48000, 6));
        // HE-AAC explicit: AOT 5, core 24 kHz, stereo, extension 48 kHz, then AOT 2.
        // 00101 0110 0010 0011 00010 => 0x2b 0x11 0x88 (padded).
        let p = parse_aac_config(&[0x2b, 0x11, 0x88]).unwrap();
        assert_eq!((p.object_type, p.sample_rate, p.channels), (5, 48000, 2));
        assert_eq!(parse_aac_config(&[0x16, 0x80]), Err(FlvError::Invalid("samplingFrequencyIndex")));
        assert_eq!(parse_aac_config(&[0x12]), Err(FlvError::Truncated("AudioSpecificConfig")));
    }

    #[test]
    fn opus() {
        let mut head = b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00".to_vec();
        let p = parse_audio_config(AudioCodec::Opus, &head).unwrap().unwrap();
        assert_eq!((p.sample_rate, p.channels), (48000, 2));
        head[0] = b'X';
        assert!(parse_opus_head(&head).is_err());
        assert_eq!(parse_audio_config(AudioCodec::Mp3, &head), Ok(None));
    }
}

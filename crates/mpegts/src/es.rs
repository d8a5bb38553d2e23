//! FLV/RTMP payloads to the elementary streams MPEG-TS carries.
//!
//! RTMP carries H.264 and HEVC as NAL units with big-endian length prefixes, the parameter sets
//! apart in a decoder configuration record; MPEG-TS wants Annex B byte streams with the
//! parameter sets in band. RTMP carries AAC as raw access units with an `AudioSpecificConfig`
//! apart; MPEG-TS wants ADTS frames. MP3 needs no conversion.
//!
//! | Spec | Items |
//! | --- | --- |
//! | ISO/IEC 14496-15, 5.3.3.1 (`AVCDecoderConfigurationRecord`), 8.3.3.1 (`HEVCDecoderConfigurationRecord`) | [`avc_parameter_sets`], [`hevc_parameter_sets`] |
//! | ISO/IEC 14496-10, Annex B and 7.3.2.4 (AUD); ITU-T H.265, Annex B and 7.3.2.5 (AUD) | [`to_annex_b`] |
//! | ISO/IEC 14496-3, 1.6.2.1 (`AudioSpecificConfig`) and 1.A.2.2 (ADTS) | [`parse_audio_specific_config`], [`adts_header`] |

use bytes::Bytes;

use crate::error::EsError;
use crate::mux::VideoType;

/// The longest ADTS frame, header included: frame_length is 13 bits.
pub const MAX_ADTS_FRAME: usize = (1 << 13) - 1;
/// An ADTS header without CRC (protection_absent = 1).
pub const ADTS_HEADER_SIZE: usize = 7;
/// Sampling frequencies by samplingFrequencyIndex (ISO/IEC 14496-3, Table 1.18).
pub const SAMPLE_RATES: [u32; 13] =
    [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/// The Annex B start code we write before every NAL unit. The 4-byte form (with zero_byte) is
/// required before parameter sets and the first NAL of an access unit; using it everywhere
/// keeps the writer simple at one byte per NAL.
const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// H.264 access unit delimiter: NAL type 9, primary_pic_type 7 (any slice type), stop bit.
/// nginx-rtmp writes the same one.
const AVC_AUD: [u8; 2] = [0x09, 0xF0];
/// HEVC access unit delimiter: NAL type 35, layer 0, nuh_temporal_id_plus1 1, pic_type 2 (I, P
/// and B slices), stop bit. ffmpeg writes the same one.
const HEVC_AUD: [u8; 3] = [0x46, 0x01, 0x50];

const AVC_NAL_SPS: u8 = 7;
const AVC_NAL_AUD: u8 = 9;
const HEVC_NAL_VPS: u8 = 32;
const HEVC_NAL_SPS: u8 = 33;
const HEVC_NAL_PPS: u8 = 34;
const HEVC_NAL_AUD: u8 = 35;
/// Escape values in `AudioSpecificConfig`.
const AOT_ESCAPE: u8 = 31;
const SAMPLE_RATE_ESCAPE: u8 = 15;
/// Explicitly signalled SBR (HE-AAC) and PS (HE-AAC v2) object types.
const AOT_SBR: u8 = 5;
const AOT_PS: u8 = 29;

/// The parameter sets of a decoder configuration record and the NAL length size frames use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterSets {
    /// Bytes in each NAL unit length prefix (lengthSizeMinusOne + 1: 1, 2, 3 or 4).
    pub nal_length_size: u8,
    /// The parameter set NAL units, headers included, in decoding order: VPS (HEVC), SPS, PPS.
    pub nals: Vec<Bytes>,
}

/// Bounds-checked slice of `data`.
fn get<'a>(data: &'a [u8], start: usize, len: usize, what: &'static str) -> Result<&'a [u8], EsError> {
    start.checked_add(len).and_then(|end| data.get(start..end)).ok_or(EsError::Truncated(what))
}

/// Reads `count` NAL units each with a 16-bit length from `data` at `*pos`.
fn read_nal_list(data: &[u8], pos: &mut usize, count: usize, what: &'static str) -> Result<Vec<Bytes>, EsError> {
    let mut nals = Vec::with_capacity(count);
    for _ in 0..count {
        let len = get(data, *pos, 2, what)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let nal = get(data, *pos + 2, len, what)?;
        *pos += 2 + len;
        // An empty entry carries nothing a decoder could use.
        if !nal.is_empty() {
            nals.push(Bytes::copy_from_slice(nal));
        }
    }
    Ok(nals)
}

fn check_version(what: &'static str, version: u8) -> Result<(), EsError> {
    if version == 1 {
        Ok(())
    } else {
        Err(EsError::BadConfigVersion { what, version })
    }
}

/// Takes the SPS and PPS out of an `AVCDecoderConfigurationRecord` (the payload of an AVC
/// sequence header). Errors when the record is truncated, has another version than 1, or lacks
/// an SPS or a PPS. Defined by: ISO/IEC 14496-15, 5.3.3.1.
pub fn avc_parameter_sets(avcc: &[u8]) -> Result<ParameterSets, EsError> {
    const WHAT: &str = "AVCDecoderConfigurationRecord";
    let head = get(avcc, 0, 6, WHAT)?;
    check_version(WHAT, head[0])?;
    let nal_length_size = (head[4] & 0x03) + 1;
    let mut pos = 6;
    let sps = read_nal_list(avcc, &mut pos, usize::from(head[5] & 0x1F), WHAT)?;
    let pps_count = get(avcc, pos, 1, WHAT)?[0];
    pos += 1;
    let pps = read_nal_list(avcc, &mut pos, usize::from(pps_count), WHAT)?;
    if sps.is_empty() {
        return Err(EsError::MissingParameterSet("SPS"));
    }
    if pps.is_empty() {
        return Err(EsError::MissingParameterSet("PPS"));
    }
    // The high-profile extension (chroma format, SPS extensions) after the PPS is not needed.
    Ok(ParameterSets { nal_length_size, nals: sps.into_iter().chain(pps).collect() })
}

/// Takes the VPS, SPS and PPS out of an `HEVCDecoderConfigurationRecord` (the payload of an
/// HEVC sequence header), in that order whatever the order of the record's arrays. Other arrays
/// (SEI) are left out. Errors when the record is truncated, has another version than 1, or lacks
/// a VPS, SPS or PPS. Defined by: ISO/IEC 14496-15, 8.3.3.1.
pub fn hevc_parameter_sets(hvcc: &[u8]) -> Result<ParameterSets, EsError> {
    const WHAT: &str = "HEVCDecoderConfigurationRecord";
    let head = get(hvcc, 0, 23, WHAT)?;
    check_version(WHAT, head[0])?;
    let nal_length_size = (head[21] & 0x03) + 1;
    let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
    let mut pos = 23;
    for _ in 0..head[22] {
        let array = get(hvcc, pos, 3, WHAT)?;
        let nal_type = array[0] & 0x3F;
        let count = usize::from(u16::from_be_bytes([array[1], array[2]]));
        pos += 3;
        let nals = read_nal_list(hvcc, &mut pos, count, WHAT)?;
        match nal_type {
            HEVC_NAL_VPS => vps.extend(nals),
            HEVC_NAL_SPS => sps.extend(nals),
            HEVC_NAL_PPS => pps.extend(nals),
            _ => {}
        }
    }
    for (list, name) in [(&vps, "VPS"), (&sps, "SPS"), (&pps, "PPS")] {
        if list.is_empty() {
            return Err(EsError::MissingParameterSet(name));
        }
    }
    Ok(ParameterSets { nal_length_size, nals: vps.into_iter().chain(sps).chain(pps).collect() })
}

/// The NAL unit type from the first header byte.
fn nal_type(codec: VideoType, first: u8) -> u8 {
    match codec {
        VideoType::H264 => first & 0x1F,
        VideoType::H265 => (first >> 1) & 0x3F,
    }
}

fn is_vcl(codec: VideoType, t: u8) -> bool {
    match codec {
        VideoType::H264 => (1..=5).contains(&t),
        VideoType::H265 => t < 32,
    }
}

fn is_sps(codec: VideoType, t: u8) -> bool {
    match codec {
        VideoType::H264 => t == AVC_NAL_SPS,
        VideoType::H265 => t == HEVC_NAL_SPS,
    }
}

fn is_aud(codec: VideoType, t: u8) -> bool {
    match codec {
        VideoType::H264 => t == AVC_NAL_AUD,
        VideoType::H265 => t == HEVC_NAL_AUD,
    }
}

/// Iterates over the NAL units of a length-prefixed frame; yields one error and stops when a
/// length runs past the end.
struct NalUnits<'a> {
    data: &'a [u8],
    pos: usize,
    size: usize,
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = Result<&'a [u8], EsError>;

    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.pos;
        if offset >= self.data.len() {
            return None;
        }
        // Whatever happens below, this is the last item unless it succeeds.
        self.pos = self.data.len();
        let Some(prefix) = self.data.get(offset..offset + self.size) else {
            return Some(Err(EsError::NalLengthTruncated { offset, size: self.size as u8 }));
        };
        let len = prefix.iter().fold(0usize, |n, &b| n << 8 | usize::from(b));
        let start = offset + self.size;
        let Some(nal) = start.checked_add(len).and_then(|end| self.data.get(start..end)) else {
            return Some(Err(EsError::NalPastEnd { offset, len, total: self.data.len() }));
        };
        self.pos = start + len;
        Some(Ok(nal))
    }
}

fn nal_units(data: &[u8], nal_length_size: u8) -> NalUnits<'_> {
    // A record can only say 1 to 4; clamp so a hand-made ParameterSets cannot make us loop.
    NalUnits { data, pos: 0, size: usize::from(nal_length_size.clamp(1, 4)) }
}

/// Converts one frame of length-prefixed NAL units (the payload after the FLV video tag
/// header) to an Annex B access unit appended to `out`.
///
/// The access unit starts with an access unit delimiter, as nginx-rtmp writes one (AUDs in the
/// data are dropped so there is one, first). For a `keyframe` whose data carries no SPS, the
/// parameter sets of `ps` go before the first VCL NAL unit, so every segment decodes from its
/// first keyframe. Empty NAL units are skipped. On error (a NAL length running past the end,
/// the data ending inside a length prefix, or no NAL unit but AUDs: [`EsError::EmptyFrame`],
/// a frame to skip) `out` is left as it was.
pub fn to_annex_b(
    codec: VideoType,
    ps: &ParameterSets,
    data: &[u8],
    keyframe: bool,
    out: &mut Vec<u8>,
) -> Result<(), EsError> {
    // Validate before writing, and learn whether the parameter sets are in band.
    let (mut has_sps, mut has_content) = (false, false);
    for nal in nal_units(data, ps.nal_length_size) {
        if let Some(&first) = nal?.first() {
            let t = nal_type(codec, first);
            has_sps |= is_sps(codec, t);
            has_content |= !is_aud(codec, t);
        }
    }
    if !has_content {
        return Err(EsError::EmptyFrame);
    }
    out.reserve(data.len() + 64);
    out.extend_from_slice(&START_CODE);
    match codec {
        VideoType::H264 => out.extend_from_slice(&AVC_AUD),
        VideoType::H265 => out.extend_from_slice(&HEVC_AUD),
    }
    let mut need_ps = keyframe && !has_sps;
    for nal in nal_units(data, ps.nal_length_size).flatten() {
        let Some(&first) = nal.first() else { continue };
        let t = nal_type(codec, first);
        if is_aud(codec, t) {
            continue;
        }
        if need_ps && is_vcl(codec, t) {
            for p in &ps.nals {
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(p);
            }
            need_ps = false;
        }
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
    Ok(())
}

/// What an ADTS header needs from an AAC `AudioSpecificConfig`.
///
/// For explicitly signalled HE-AAC (object type 5 or 29) the fields describe the AAC core, which
/// is what ADTS carries; decoders find SBR and PS in the data (implicit signalling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// audioObjectType of the core (2 = AAC LC), escape resolved (32 and up).
    pub object_type: u8,
    /// samplingFrequencyIndex; 15 when the rate was explicit and is not in [`SAMPLE_RATES`].
    pub sample_rate_index: u8,
    /// Core sampling frequency in Hz.
    pub sample_rate: u32,
    /// channelConfiguration as coded: 1 to 6 are channel counts, 7 is 8 channels (7.1), 0 means
    /// a program_config_element describes them.
    pub channels: u8,
}

/// MSB-first bit reader that reports running out as [`EsError::Truncated`].
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Result<u32, EsError> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self.data.get(self.pos / 8).ok_or(EsError::Truncated("AudioSpecificConfig"))?;
            v = v << 1 | u32::from(byte >> (7 - self.pos % 8) & 1);
            self.pos += 1;
        }
        Ok(v)
    }

    /// `GetAudioObjectType()`.
    fn object_type(&mut self) -> Result<u8, EsError> {
        let t = self.read(5)? as u8;
        Ok(if t == AOT_ESCAPE { 32 + self.read(6)? as u8 } else { t })
    }

    /// samplingFrequencyIndex and, behind the escape, samplingFrequency.
    fn sample_rate(&mut self) -> Result<(u8, u32), EsError> {
        match self.read(4)? as u8 {
            SAMPLE_RATE_ESCAPE => {
                let rate = self.read(24)?;
                let index = SAMPLE_RATES.iter().position(|&r| r == rate).map_or(SAMPLE_RATE_ESCAPE, |i| i as u8);
                Ok((index, rate))
            }
            i => SAMPLE_RATES.get(usize::from(i)).map(|&r| (i, r)).ok_or(EsError::ReservedSampleRateIndex(i)),
        }
    }
}

/// Parses the start of an AAC `AudioSpecificConfig` (the payload of an AAC sequence header),
/// with the object type and sampling frequency escapes and explicit SBR/PS signalling.
/// Defined by: ISO/IEC 14496-3, 1.6.2.1.
pub fn parse_audio_specific_config(asc: &[u8]) -> Result<AacConfig, EsError> {
    let mut r = Bits { data: asc, pos: 0 };
    let mut object_type = r.object_type()?;
    if object_type == 0 {
        return Err(EsError::NullObjectType);
    }
    let (sample_rate_index, sample_rate) = r.sample_rate()?;
    let channels = r.read(4)? as u8;
    if object_type == AOT_SBR || object_type == AOT_PS {
        r.sample_rate()?; // extensionSamplingFrequency: the SBR output rate
        object_type = r.object_type()?;
        if object_type == 0 {
            return Err(EsError::NullObjectType);
        }
    }
    Ok(AacConfig { object_type, sample_rate_index, sample_rate, channels })
}

/// The 7-byte ADTS header (MPEG-4, no CRC, one raw data block, buffer fullness 0x7FF meaning
/// variable rate) for a raw AAC frame of `raw_len` bytes. Errors when the config cannot be said
/// in ADTS or the frame is longer than [`MAX_ADTS_FRAME`]. Defined by: ISO/IEC 14496-3, 1.A.2.2.
pub fn adts_header(cfg: &AacConfig, raw_len: usize) -> Result<[u8; ADTS_HEADER_SIZE], EsError> {
    if !(1..=4).contains(&cfg.object_type) {
        return Err(EsError::AdtsObjectType(cfg.object_type));
    }
    if usize::from(cfg.sample_rate_index) >= SAMPLE_RATES.len() {
        return Err(EsError::AdtsSampleRate(cfg.sample_rate));
    }
    if !(1..=7).contains(&cfg.channels) {
        return Err(EsError::AdtsChannels(cfg.channels));
    }
    let frame_len = raw_len.saturating_add(ADTS_HEADER_SIZE);
    if frame_len > MAX_ADTS_FRAME {
        return Err(EsError::AdtsFrameTooLarge(frame_len));
    }
    let profile = cfg.object_type - 1;
    let ch = cfg.channels;
    let len = frame_len as u16;
    Ok([
        0xFF,
        0xF1, // syncword end, ID 0 (MPEG-4), layer 0, protection_absent 1
        profile << 6 | cfg.sample_rate_index << 2 | ch >> 2,
        (ch & 0x03) << 6 | (len >> 11) as u8,
        (len >> 3) as u8,
        ((len & 0x07) as u8) << 5 | 0x1F, // buffer fullness 0x7FF, top 5 bits
        0xFC,                             // its low 6 bits, number_of_raw_data_blocks_in_frame 0
    ])
}

/// Appends one ADTS frame: [`adts_header`] then `raw`. On error `out` is left as it was.
pub fn write_adts(cfg: &AacConfig, raw: &[u8], out: &mut Vec<u8>) -> Result<(), EsError> {
    out.extend_from_slice(&adts_header(cfg, raw.len())?);
    out.extend_from_slice(raw);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1F, 0xAC];
    const PPS: &[u8] = &[0x68, 0xEE, 0x3C, 0x80];

    fn avcc(sps: &[&[u8]], pps: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![1, 0x64, 0x00, 0x1F, 0xFF, 0xE0 | sps.len() as u8];
        for s in sps {
            v.extend_from_slice(&(s.len() as u16).to_be_bytes());
            v.extend_from_slice(s);
        }
        v.push(pps.len() as u8);
        for p in pps {
            v.extend_from_slice(&(p.len() as u16).to_be_bytes());
            v.extend_from_slice(p);
        }
        v
    }

    fn prefixed(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter().flat_map(|n| (n.len() as u32).to_be_bytes().into_iter().chain(n.iter().copied())).collect()
    }

    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter().flat_map(|n| START_CODE.into_iter().chain(n.iter().copied())).collect()
    }

    #[test]
    fn avcc_parameter_sets() {
        let ps = avc_parameter_sets(&avcc(&[SPS], &[PPS])).unwrap();
        assert_eq!(ps.nal_length_size, 4);
        assert_eq!(ps.nals, vec![Bytes::from_static(SPS), Bytes::from_static(PPS)]);
        let mut two_byte = avcc(&[SPS], &[PPS]);
        two_byte[4] = 0xFD;
        assert_eq!(avc_parameter_sets(&two_byte).unwrap().nal_length_size, 2);
    }

    #[test]
    fn avcc_errors() {
        let good = avcc(&[SPS], &[PPS]);
        for cut in 0..good.len() {
            assert_eq!(avc_parameter_sets(&good[..cut]), Err(EsError::Truncated("AVCDecoderConfigurationRecord")));
        }
        let mut v0 = good.clone();
        v0[0] = 0;
        assert_eq!(
            avc_parameter_sets(&v0),
            Err(EsError::BadConfigVersion { what: "AVCDecoderConfigurationRecord", version: 0 })
        );
        assert_eq!(avc_parameter_sets(&avcc(&[], &[PPS])), Err(EsError::MissingParameterSet("SPS")));
        assert_eq!(avc_parameter_sets(&avcc(&[SPS], &[])), Err(EsError::MissingParameterSet("PPS")));
        assert_eq!(avc_parameter_sets(&avcc(&[SPS], &[&[]])), Err(EsError::MissingParameterSet("PPS")));
    }

    const VPS: &[u8] = &[0x40, 0x01, 0x0C];
    const HSPS: &[u8] = &[0x42, 0x01, 0x01];
    const HPPS: &[u8] = &[0x44, 0x01, 0xC1];
    const PREFIX_SEI: &[u8] = &[0x4E, 0x01, 0x05];

    fn hvcc(arrays: &[(u8, &[u8])]) -> Vec<u8> {
        let mut v =
            vec![1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x5D, 0xF0, 0, 0xFC, 0xFD, 0xF8, 0xF8, 0, 0, 0x0F];
        v.push(arrays.len() as u8);
        for (t, nal) in arrays {
            v.push(0x80 | t);
            v.extend_from_slice(&1u16.to_be_bytes());
            v.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            v.extend_from_slice(nal);
        }
        v
    }

    #[test]
    fn hvcc_parameter_sets_in_decoding_order() {
        // Arrays out of order and an SEI array: VPS, SPS, PPS come out, SEI does not.
        let rec = hvcc(&[(34, HPPS), (39, PREFIX_SEI), (33, HSPS), (32, VPS)]);
        let ps = hevc_parameter_sets(&rec).unwrap();
        assert_eq!(ps.nal_length_size, 4);
        assert_eq!(ps.nals, [VPS, HSPS, HPPS].map(Bytes::from_static).to_vec());
    }

    #[test]
    fn hvcc_errors() {
        let good = hvcc(&[(32, VPS), (33, HSPS), (34, HPPS)]);
        for cut in 0..good.len() {
            assert_eq!(hevc_parameter_sets(&good[..cut]), Err(EsError::Truncated("HEVCDecoderConfigurationRecord")));
        }
        let mut v2 = good.clone();
        v2[0] = 2;
        assert!(matches!(hevc_parameter_sets(&v2), Err(EsError::BadConfigVersion { version: 2, .. })));
        assert_eq!(hevc_parameter_sets(&hvcc(&[(33, HSPS), (34, HPPS)])), Err(EsError::MissingParameterSet("VPS")));
        assert_eq!(hevc_parameter_sets(&hvcc(&[(32, VPS), (34, HPPS)])), Err(EsError::MissingParameterSet("SPS")));
        assert_eq!(hevc_parameter_sets(&hvcc(&[(32, VPS), (33, HSPS)])), Err(EsError::MissingParameterSet("PPS")));
    }

    fn avc_ps() -> ParameterSets {
        avc_parameter_sets(&avcc(&[SPS], &[PPS])).unwrap()
    }

    const SEI: &[u8] = &[0x06, 0x05, 0x01, 0x80];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x21];
    const NON_IDR: &[u8] = &[0x41, 0x9A, 0x02];

    #[test]
    fn keyframe_gets_aud_and_parameter_sets_before_the_first_slice() {
        let mut out = vec![0xEE]; // appended, not overwritten
        to_annex_b(VideoType::H264, &avc_ps(), &prefixed(&[SEI, IDR, IDR]), true, &mut out).unwrap();
        let mut want = vec![0xEE];
        want.extend(annex_b(&[&AVC_AUD, SEI, SPS, PPS, IDR, IDR]));
        assert_eq!(out, want);
    }

    #[test]
    fn in_band_parameter_sets_are_not_repeated() {
        let other_pps: &[u8] = &[0x68, 0x01];
        let mut out = Vec::new();
        let data = prefixed(&[&AVC_AUD, SPS, other_pps, IDR]);
        to_annex_b(VideoType::H264, &avc_ps(), &data, true, &mut out).unwrap();
        // The frame's own AUD is dropped for ours, which comes first.
        assert_eq!(out, annex_b(&[&AVC_AUD, SPS, other_pps, IDR]));
    }

    #[test]
    fn inter_frame_gets_aud_only() {
        let mut out = Vec::new();
        to_annex_b(VideoType::H264, &avc_ps(), &prefixed(&[NON_IDR]), false, &mut out).unwrap();
        assert_eq!(out, annex_b(&[&AVC_AUD, NON_IDR]));
    }

    #[test]
    fn other_nal_length_sizes() {
        for size in [1u8, 2, 3] {
            let mut ps = avc_ps();
            ps.nal_length_size = size;
            let mut data = Vec::new();
            for nal in [SEI, NON_IDR] {
                data.extend_from_slice(&(nal.len() as u32).to_be_bytes()[4 - usize::from(size)..]);
                data.extend_from_slice(nal);
            }
            data.extend_from_slice(&vec![0; usize::from(size)]); // an empty NAL is skipped
            let mut out = Vec::new();
            to_annex_b(VideoType::H264, &ps, &data, false, &mut out).unwrap();
            assert_eq!(out, annex_b(&[&AVC_AUD, SEI, NON_IDR]), "size {size}");
        }
    }

    #[test]
    fn hevc_keyframe() {
        let ps = hevc_parameter_sets(&hvcc(&[(32, VPS), (33, HSPS), (34, HPPS)])).unwrap();
        let idr: &[u8] = &[0x26, 0x01, 0xAF]; // IDR_W_RADL (19)
        let trail: &[u8] = &[0x02, 0x01, 0xD0]; // TRAIL_R (1)
        let aud: &[u8] = &[0x46, 0x01, 0x10];
        let mut out = Vec::new();
        to_annex_b(VideoType::H265, &ps, &prefixed(&[aud, PREFIX_SEI, idr]), true, &mut out).unwrap();
        assert_eq!(out, annex_b(&[&HEVC_AUD, PREFIX_SEI, VPS, HSPS, HPPS, idr]));
        out.clear();
        to_annex_b(VideoType::H265, &ps, &prefixed(&[trail]), false, &mut out).unwrap();
        assert_eq!(out, annex_b(&[&HEVC_AUD, trail]));
        // HEVC SPS in band: nothing inserted.
        out.clear();
        to_annex_b(VideoType::H265, &ps, &prefixed(&[VPS, HSPS, HPPS, idr]), true, &mut out).unwrap();
        assert_eq!(out, annex_b(&[&HEVC_AUD, VPS, HSPS, HPPS, idr]));
    }

    #[test]
    fn malformed_frames_are_errors_and_write_nothing() {
        let ps = avc_ps();
        let mut out = vec![7];
        let mut data = prefixed(&[SEI, IDR]);
        data.pop();
        assert_eq!(
            to_annex_b(VideoType::H264, &ps, &data, true, &mut out),
            Err(EsError::NalPastEnd { offset: 8, len: IDR.len(), total: data.len() })
        );
        let mut data = prefixed(&[SEI]);
        data.extend_from_slice(&[0, 0]);
        assert_eq!(
            to_annex_b(VideoType::H264, &ps, &data, true, &mut out),
            Err(EsError::NalLengthTruncated { offset: 8, size: 4 })
        );
        let huge = [0xFF, 0xFF, 0xFF, 0xFF, 0x65];
        assert!(matches!(to_annex_b(VideoType::H264, &ps, &huge, true, &mut out), Err(EsError::NalPastEnd { .. })));
        // Nothing to decode: an empty frame (FLV end of sequence), empty NALs, AUDs alone.
        for empty in [vec![], prefixed(&[&[]]), prefixed(&[&AVC_AUD, &[]])] {
            assert_eq!(to_annex_b(VideoType::H264, &ps, &empty, true, &mut out), Err(EsError::EmptyFrame));
        }
        assert_eq!(
            to_annex_b(VideoType::H265, &ps, &prefixed(&[&HEVC_AUD]), false, &mut out),
            Err(EsError::EmptyFrame)
        );
        assert_eq!(out, [7]);
    }

    #[test]
    fn audio_specific_config() {
        // AAC LC, 44.1 kHz, stereo: what ffmpeg's aac encoder puts in FLV.
        let lc = parse_audio_specific_config(&[0x12, 0x10]).unwrap();
        assert_eq!(lc, AacConfig { object_type: 2, sample_rate_index: 4, sample_rate: 44100, channels: 2 });
        // 48 kHz mono.
        let mono = parse_audio_specific_config(&[0x11, 0x88]).unwrap();
        assert_eq!(mono, AacConfig { object_type: 2, sample_rate_index: 3, sample_rate: 48000, channels: 1 });
        // Explicit HE-AAC: object type 5, core 24 kHz, extension 48 kHz, core AAC LC.
        // 00101 0110 0010 0011 00010 -> 0x2B 0x11 0x88 ...
        let he = parse_audio_specific_config(&[0x2B, 0x11, 0x88, 0x00]).unwrap();
        assert_eq!(he, AacConfig { object_type: 2, sample_rate_index: 6, sample_rate: 24000, channels: 2 });
    }

    #[test]
    fn audio_specific_config_escapes() {
        // Object type escape 31 + 6 bits (5 -> type 37), index 3, channels 2.
        // 11111 000101 0011 0010 -> 1111_1000 1010_0110 010x_xxxx
        let ext = parse_audio_specific_config(&[0xF8, 0xA6, 0x40]).unwrap();
        assert_eq!(ext, AacConfig { object_type: 37, sample_rate_index: 3, sample_rate: 48000, channels: 2 });
        // Explicit rate 44100 (0x00AC44) maps back to index 4; 0x001F40 = 8000 to 11; 12345 stays 15.
        let explicit = |rate: u32| {
            // 00010 1111 <24 bits> 0010
            let bits: u64 = (0b00010 << 32) | (0b1111 << 28) | (u64::from(rate) << 4) | 0b0010;
            let b = (bits << 3).to_be_bytes(); // 37 bits left-aligned in 40
            parse_audio_specific_config(&b[3..8]).unwrap()
        };
        assert_eq!(
            explicit(44100),
            AacConfig { object_type: 2, sample_rate_index: 4, sample_rate: 44100, channels: 2 }
        );
        assert_eq!(explicit(8000).sample_rate_index, 11);
        assert_eq!(
            explicit(12345),
            AacConfig { object_type: 2, sample_rate_index: 15, sample_rate: 12345, channels: 2 }
        );
        let odd = explicit(12345);
        assert_eq!(adts_header(&odd, 10), Err(EsError::AdtsSampleRate(12345)));
    }

    #[test]
    fn audio_specific_config_errors() {
        assert_eq!(parse_audio_specific_config(&[]), Err(EsError::Truncated("AudioSpecificConfig")));
        assert_eq!(parse_audio_specific_config(&[0x12]), Err(EsError::Truncated("AudioSpecificConfig")));
        assert_eq!(parse_audio_specific_config(&[0x00, 0x10]), Err(EsError::NullObjectType));
        // Index 13 is reserved: 00010 1101 ...
        assert_eq!(parse_audio_specific_config(&[0x16, 0x90]), Err(EsError::ReservedSampleRateIndex(13)));
        // SBR with the core type missing.
        assert_eq!(parse_audio_specific_config(&[0x2B, 0x11]), Err(EsError::Truncated("AudioSpecificConfig")));
    }

    #[test]
    fn adts_header_bits() {
        let lc = AacConfig { object_type: 2, sample_rate_index: 4, sample_rate: 44100, channels: 2 };
        // 371 raw bytes -> frame_length 378 = 0b0_0001_0111_1010.
        let h = adts_header(&lc, 371).unwrap();
        assert_eq!(h, [0xFF, 0xF1, 0x50, 0x80, 0x2F, 0x5F, 0xFC]);
        // Read the fields back bit by bit.
        let bits = u64::from_be_bytes([0, h[0], h[1], h[2], h[3], h[4], h[5], h[6]]);
        let field = |start: u32, len: u32| (bits >> (56 - start - len)) & ((1 << len) - 1);
        assert_eq!(field(0, 12), 0xFFF); // syncword
        assert_eq!(field(12, 1), 0); // ID: MPEG-4
        assert_eq!(field(13, 2), 0); // layer
        assert_eq!(field(15, 1), 1); // protection_absent
        assert_eq!(field(16, 2), 1); // profile = object type - 1
        assert_eq!(field(18, 4), 4); // sampling_frequency_index
        assert_eq!(field(23, 3), 2); // channel_configuration
        assert_eq!(field(30, 13), 378); // frame_length
        assert_eq!(field(43, 11), 0x7FF); // buffer fullness
        assert_eq!(field(54, 2), 0); // one raw data block
                                     // Channel configuration 7 spans the byte boundary.
        let ch7 = adts_header(&AacConfig { channels: 7, ..lc }, 0).unwrap();
        assert_eq!((ch7[2] & 1, ch7[3] >> 6), (1, 3));
    }

    #[test]
    fn adts_limits() {
        let lc = AacConfig { object_type: 2, sample_rate_index: 4, sample_rate: 44100, channels: 2 };
        assert!(adts_header(&lc, MAX_ADTS_FRAME - ADTS_HEADER_SIZE).is_ok());
        assert_eq!(adts_header(&lc, MAX_ADTS_FRAME - 6), Err(EsError::AdtsFrameTooLarge(MAX_ADTS_FRAME + 1)));
        assert_eq!(adts_header(&lc, usize::MAX), Err(EsError::AdtsFrameTooLarge(usize::MAX)));
        assert_eq!(adts_header(&AacConfig { object_type: 5, ..lc }, 1), Err(EsError::AdtsObjectType(5)));
        assert_eq!(adts_header(&AacConfig { channels: 0, ..lc }, 1), Err(EsError::AdtsChannels(0)));
        assert_eq!(adts_header(&AacConfig { channels: 8, ..lc }, 1), Err(EsError::AdtsChannels(8)));
        let mut out = vec![1];
        assert_eq!(write_adts(&AacConfig { channels: 0, ..lc }, &[9; 4], &mut out), Err(EsError::AdtsChannels(0)));
        assert_eq!(out, [1]);
        write_adts(&lc, &[9; 4], &mut out).unwrap();
        assert_eq!(out.len(), 1 + 7 + 4);
    }
}

//! Program-specific information: the PAT and PMT sections sluice writes.
//! Defined by: ISO/IEC 13818-1, 2.4.4 (2.4.4.3 PAT, 2.4.4.8 PMT) and 2.6.8 (registration
//! descriptor).

use crate::crc::crc32_mpeg2;
use crate::mux::{AudioType, VideoType};
use crate::{AUDIO_PID, PMT_PID, VIDEO_PID};

/// transport_stream_id of the PAT; any value works for a single-program stream, 1 is ffmpeg's.
pub const TRANSPORT_STREAM_ID: u16 = 1;
/// program_number of the one program (ffmpeg's service_id default).
pub const PROGRAM_NUMBER: u16 = 1;
/// PCR_PID value meaning "this program has no PCR" (2.4.4.9).
pub const NO_PCR_PID: u16 = 0x1FFF;

const TABLE_ID_PAT: u8 = 0x00;
const TABLE_ID_PMT: u8 = 0x02;
/// registration_descriptor tag (2.6.8).
const REGISTRATION_DESCRIPTOR: u8 = 0x05;
/// version_number 0, current_next_indicator 1, with the two reserved bits set.
const VERSION_CURRENT: u8 = 0xC1;

/// Builds a long-form section: the 3-byte common header, the 5-byte table syntax header, `body`
/// and the CRC_32.
fn section(table_id: u8, id: u16, body: &[u8]) -> Vec<u8> {
    // section_length counts from after itself: 5 bytes of table syntax, the body and the CRC.
    let section_length = 5 + body.len() + 4;
    debug_assert!(section_length <= 1021, "PSI section too long");
    let mut s = Vec::with_capacity(3 + section_length);
    s.push(table_id);
    // section_syntax_indicator 1, '0', reserved '11', then the 12-bit length.
    s.extend_from_slice(&(0xB000 | section_length as u16).to_be_bytes());
    s.extend_from_slice(&id.to_be_bytes());
    s.extend_from_slice(&[VERSION_CURRENT, 0x00, 0x00]); // section_number, last_section_number
    s.extend_from_slice(body);
    let crc = crc32_mpeg2(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

/// A 13-bit PID with the three reserved bits above it set.
fn reserved_pid(pid: u16) -> [u8; 2] {
    (0xE000 | pid).to_be_bytes()
}

/// A 12-bit descriptor-loop length with the four reserved bits above it set.
fn reserved_len(len: usize) -> [u8; 2] {
    (0xF000 | len as u16).to_be_bytes()
}

/// The program association section: program [`PROGRAM_NUMBER`] on [`PMT_PID`].
pub fn pat_section() -> Vec<u8> {
    let mut body = Vec::with_capacity(4);
    body.extend_from_slice(&PROGRAM_NUMBER.to_be_bytes());
    body.extend_from_slice(&reserved_pid(PMT_PID));
    section(TABLE_ID_PAT, TRANSPORT_STREAM_ID, &body)
}

/// The PCR PID for a program: the video PID when there is video, else the audio PID.
pub fn pcr_pid(video: Option<VideoType>, audio: Option<AudioType>) -> u16 {
    match (video, audio) {
        (Some(_), _) => VIDEO_PID,
        (None, Some(_)) => AUDIO_PID,
        (None, None) => NO_PCR_PID,
    }
}

/// The program map section: video on [`VIDEO_PID`], then audio on [`AUDIO_PID`].
///
/// HEVC carries a registration descriptor with format_identifier `HEVC`, as ffmpeg writes: the
/// stream type alone suffices today, but demuxers older than stream type 0x24 look for it.
pub fn pmt_section(video: Option<VideoType>, audio: Option<AudioType>) -> Vec<u8> {
    let mut body = Vec::with_capacity(32);
    body.extend_from_slice(&reserved_pid(pcr_pid(video, audio)));
    body.extend_from_slice(&reserved_len(0)); // program_info_length
    if let Some(v) = video {
        let descriptors: &[u8] = match v {
            VideoType::H264 => &[],
            VideoType::H265 => &[REGISTRATION_DESCRIPTOR, 4, b'H', b'E', b'V', b'C'],
        };
        body.push(v.stream_type());
        body.extend_from_slice(&reserved_pid(VIDEO_PID));
        body.extend_from_slice(&reserved_len(descriptors.len()));
        body.extend_from_slice(descriptors);
    }
    if let Some(a) = audio {
        body.push(a.stream_type());
        body.extend_from_slice(&reserved_pid(AUDIO_PID));
        body.extend_from_slice(&reserved_len(0));
    }
    section(TABLE_ID_PMT, PROGRAM_NUMBER, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    // Reference sections are cut from .ts files ffmpeg 5.1 wrote (`-f mpegts`, default PIDs).

    #[test]
    fn pat_matches_ffmpeg() {
        assert_eq!(pat_section(), hex("00b00d0001c100000001f0002ab104b2"));
    }

    #[test]
    fn pmt_h264_aac_matches_ffmpeg() {
        let pmt = pmt_section(Some(VideoType::H264), Some(AudioType::Aac));
        assert_eq!(pmt, hex("02b0170001c10000e100f0001be100f0000fe101f0002f44b99b"));
    }

    #[test]
    fn pmt_h264_mp3_matches_ffmpeg() {
        let pmt = pmt_section(Some(VideoType::H264), Some(AudioType::Mp3));
        assert_eq!(pmt, hex("02b0170001c10000e100f0001be100f00003e101f0004e593d1e"));
    }

    #[test]
    fn pmt_video_only_matches_ffmpeg() {
        let pmt = pmt_section(Some(VideoType::H264), None);
        assert_eq!(pmt, hex("02b0120001c10000e100f0001be100f00015bd4d56"));
    }

    #[test]
    fn pmt_audio_only_matches_ffmpeg() {
        // ffmpeg with -mpegts_start_pid 0x101, so the audio PID and the PCR PID are ours.
        let pmt = pmt_section(None, Some(AudioType::Aac));
        assert_eq!(pmt, hex("02b0120001c10000e101f0000fe101f000ece2b094"));
    }

    #[test]
    fn pmt_hevc_mp3_matches_ffmpeg() {
        let pmt = pmt_section(Some(VideoType::H265), Some(AudioType::Mp3));
        assert_eq!(pmt, hex("02b01d0001c10000e100f00024e100f00605044845564303e101f0000d2a4b0f"));
    }

    #[test]
    fn pmt_without_streams_has_no_pcr() {
        let pmt = pmt_section(None, None);
        assert_eq!(&pmt[8..10], &[0xFF, 0xFF]); // reserved bits and PID 0x1FFF
        assert_eq!(crc32_mpeg2(&pmt), 0);
    }
}

//! The transport stream muxer: PAT/PMT and PES packetization into 188-byte packets.
//! Defined by: ISO/IEC 13818-1, 2.4.3.2 (packet header), 2.4.3.4 (adaptation field), 2.4.3.6
//! (PES packet), 2.4.4 (PSI); stream types from Table 2-34 and ITU-T H.222.0 Amd.3 (HEVC).

use crate::error::MuxError;
use crate::psi;
use crate::{AUDIO_PID, PACKET_SIZE, PAT_PID, PMT_PID, VIDEO_PID};

/// Timestamps (PTS, DTS, PCR base) are 33-bit counters of a 90 kHz clock.
pub const TIMESTAMP_MASK: u64 = (1 << 33) - 1;
/// The sync byte every packet starts with.
pub const SYNC_BYTE: u8 = 0x47;

/// Packet header size: sync byte, flags and PID, scrambling/adaptation/continuity byte.
const HEADER_SIZE: usize = 4;
/// Payload room of a packet without an adaptation field.
const BODY_SIZE: usize = PACKET_SIZE - HEADER_SIZE;
/// PES_packet_length is 16 bits; 0 means "unbounded", allowed for video only (2.4.3.7).
const MAX_PES_PACKET_LENGTH: usize = 0xFFFF;
/// The PES header up to and including PES_header_data_length.
const PES_FIXED_HEADER: usize = 9;
/// Largest PES header we write: fixed part plus PTS and DTS.
const MAX_PES_HEADER: usize = PES_FIXED_HEADER + 10;
/// The program_clock_reference field: 33-bit base, 6 reserved bits, 9-bit extension.
const PCR_SIZE: usize = 6;

/// stream_id for the first video and audio streams (Table 2-22).
const VIDEO_STREAM_ID: u8 = 0xE0;
const AUDIO_STREAM_ID: u8 = 0xC0;

/// The video codec of a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoType {
    /// H.264 / AVC, stream_type 0x1B.
    H264,
    /// H.265 / HEVC, stream_type 0x24.
    H265,
}

impl VideoType {
    /// The PMT stream_type.
    pub fn stream_type(self) -> u8 {
        match self {
            VideoType::H264 => 0x1B,
            VideoType::H265 => 0x24,
        }
    }
}

/// The audio codec of a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioType {
    /// AAC in ADTS frames, stream_type 0x0F.
    Aac,
    /// MPEG-1 audio (MP3), stream_type 0x03.
    Mp3,
}

impl AudioType {
    /// The PMT stream_type.
    pub fn stream_type(self) -> u8 {
        match self {
            AudioType::Aac => 0x0F,
            AudioType::Mp3 => 0x03,
        }
    }
}

/// Which elementary stream a PES belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    /// The video stream on [`VIDEO_PID`].
    Video,
    /// The audio stream on [`AUDIO_PID`].
    Audio,
}

impl Track {
    /// The PID the track's packets carry.
    pub fn pid(self) -> u16 {
        match self {
            Track::Video => VIDEO_PID,
            Track::Audio => AUDIO_PID,
        }
    }

    /// The PES stream_id.
    pub fn stream_id(self) -> u8 {
        match self {
            Track::Video => VIDEO_STREAM_ID,
            Track::Audio => AUDIO_STREAM_ID,
        }
    }
}

/// One PES packet to write: a whole video access unit (Annex B) or whole audio frames (ADTS or
/// MP3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pes<'a> {
    /// Presentation timestamp, 90 kHz; wrapped to 33 bits when written.
    pub pts: u64,
    /// Decoding timestamp, 90 kHz; written only when it differs from `pts` (after wrapping).
    pub dts: Option<u64>,
    /// Program clock reference for the first packet's adaptation field, in 90 kHz units (the
    /// 33-bit PCR base; the 27 MHz extension is written as 0). Only the PCR PID
    /// ([`Muxer::pcr_pid`]) should carry it; it must not run ahead of the DTS it precedes.
    pub pcr: Option<u64>,
    /// Sets random_access_indicator in the first packet: the PES starts a keyframe.
    pub random_access: bool,
    /// The elementary stream bytes.
    pub data: &'a [u8],
}

/// continuity_counter of each PID we write: 4 bits, counting packets with payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Continuity {
    pat: u8,
    pmt: u8,
    video: u8,
    audio: u8,
}

impl Continuity {
    /// Returns the counter for the next packet on `pid` and advances it.
    fn next(&mut self, pid: u16) -> u8 {
        let c = match pid {
            PAT_PID => &mut self.pat,
            PMT_PID => &mut self.pmt,
            VIDEO_PID => &mut self.video,
            _ => &mut self.audio,
        };
        let now = *c;
        *c = (now + 1) & 0x0F;
        now
    }
}

/// A single-program transport stream muxer. Keep one per published stream for its whole life:
/// continuity counters carry on across segments, as players expect when they join segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Muxer {
    video: Option<VideoType>,
    audio: Option<AudioType>,
    cc: Continuity,
}

impl Muxer {
    /// A muxer for a program with the given streams.
    pub fn new(video: Option<VideoType>, audio: Option<AudioType>) -> Muxer {
        Muxer { video, audio, cc: Continuity::default() }
    }

    /// The video codec the PMT announces.
    pub fn video(&self) -> Option<VideoType> {
        self.video
    }

    /// The audio codec the PMT announces.
    pub fn audio(&self) -> Option<AudioType> {
        self.audio
    }

    /// The PID that carries the PCR: [`VIDEO_PID`] when there is video, else [`AUDIO_PID`]
    /// (0x1FFF, "no PCR", for a program without streams).
    pub fn pcr_pid(&self) -> u16 {
        psi::pcr_pid(self.video, self.audio)
    }

    /// Appends a PAT packet and then a PMT packet (PCR PID = video PID when there is video,
    /// else audio PID). Call at the start of every segment, so each one decodes alone.
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        self.write_section(PAT_PID, &psi::pat_section(), out);
        self.write_section(PMT_PID, &psi::pmt_section(self.video, self.audio), out);
    }

    /// One section in one packet: pointer_field 0, the section, 0xFF to the end.
    fn write_section(&mut self, pid: u16, section: &[u8], out: &mut Vec<u8>) {
        // Our sections are under 40 bytes; a second packet is never needed.
        debug_assert!(section.len() < BODY_SIZE);
        let cc = self.cc.next(pid);
        let start = out.len();
        out.extend_from_slice(&packet_header(pid, true, false, cc));
        out.push(0); // pointer_field
        out.extend_from_slice(section);
        out.resize(start + PACKET_SIZE, 0xFF);
    }

    /// Appends one PES packet split into TS packets on the track's PID.
    ///
    /// The first packet carries payload_unit_start_indicator, and an adaptation field when
    /// `pes.random_access` or `pes.pcr` asks for one. The last packet is filled with
    /// adaptation-field stuffing, never PES padding. PES_packet_length is exact, except for video
    /// PES longer than it can say, which get 0 (unbounded).
    ///
    /// Errors: [`MuxError::NoSuchTrack`] for a track the muxer was not created with,
    /// [`MuxError::AudioPesTooLarge`] for audio PES over 65535 bytes. Nothing is written then.
    pub fn write_pes(&mut self, track: Track, pes: &Pes<'_>, out: &mut Vec<u8>) -> Result<(), MuxError> {
        let present = match track {
            Track::Video => self.video.is_some(),
            Track::Audio => self.audio.is_some(),
        };
        if !present {
            return Err(MuxError::NoSuchTrack(track));
        }
        let mut header = [0u8; MAX_PES_HEADER];
        let header_len = pes_header(track, pes, &mut header)?;
        let pid = track.pid();
        let first_af = AdaptationField { random_access: pes.random_access, pcr: pes.pcr };
        out.reserve((header_len + pes.data.len()) / BODY_SIZE * PACKET_SIZE + 2 * PACKET_SIZE);
        let cc = self.cc.next(pid);
        let mut rest = &pes.data[write_packet(out, pid, cc, Some(first_af), &header[..header_len], pes.data)..];
        while !rest.is_empty() {
            let cc = self.cc.next(pid);
            rest = &rest[write_packet(out, pid, cc, None, &[], rest)..];
        }
        Ok(())
    }
}

/// The 4-byte packet header. `adaptation` adds adaptation_field_control bit 1; every packet we
/// write has a payload.
fn packet_header(pid: u16, unit_start: bool, adaptation: bool, cc: u8) -> [u8; HEADER_SIZE] {
    let pusi = if unit_start { 0x40 } else { 0 };
    let afc = if adaptation { 0x30 } else { 0x10 };
    [SYNC_BYTE, pusi | (pid >> 8) as u8 & 0x1F, pid as u8, afc | (cc & 0x0F)]
}

/// What the first packet of a PES may carry in its adaptation field.
#[derive(Debug, Clone, Copy)]
struct AdaptationField {
    random_access: bool,
    pcr: Option<u64>,
}

impl AdaptationField {
    /// Bytes after adaptation_field_length: none when no flag is set, else the flags byte and
    /// the PCR if any.
    fn fields_len(&self) -> usize {
        match (self.random_access, self.pcr) {
            (false, None) => 0,
            (_, None) => 1,
            (_, Some(_)) => 1 + PCR_SIZE,
        }
    }

    fn flags(&self) -> u8 {
        let rai = if self.random_access { 0x40 } else { 0 };
        let pcr = if self.pcr.is_some() { 0x10 } else { 0 };
        rai | pcr
    }
}

/// Writes one packet: header, adaptation field, `head` (the PES header, first packet only), then
/// as much of `data` as fits. Returns how many bytes of `data` it took. A packet that `data` does
/// not fill gets adaptation-field stuffing, so every packet is exactly [`PACKET_SIZE`].
fn write_packet(out: &mut Vec<u8>, pid: u16, cc: u8, af: Option<AdaptationField>, head: &[u8], data: &[u8]) -> usize {
    let fields_len = af.map_or(0, |a| a.fields_len());
    // With fields, the adaptation field also takes its length byte.
    let af_base = if fields_len > 0 { 1 + fields_len } else { 0 };
    let room = BODY_SIZE - af_base - head.len();
    let take = room.min(data.len());
    let stuffing = room - take;
    // Stuffing alone costs the length byte (1) or length byte and flags byte (2 and more) and
    // fills the rest with 0xFF, so the adaptation field grows by exactly the stuffing.
    let af_total = af_base + stuffing;

    let start = out.len();
    out.extend_from_slice(&packet_header(pid, !head.is_empty(), af_total > 0, cc));
    if af_total > 0 {
        out.push((af_total - 1) as u8); // adaptation_field_length
        if af_total > 1 {
            let af = af.unwrap_or(AdaptationField { random_access: false, pcr: None });
            out.push(af.flags());
            if let Some(pcr) = af.pcr {
                out.extend_from_slice(&encode_pcr(pcr));
            }
            out.resize(start + HEADER_SIZE + af_total, 0xFF);
        }
    }
    out.extend_from_slice(head);
    out.extend_from_slice(&data[..take]);
    debug_assert_eq!(out.len() - start, PACKET_SIZE);
    take
}

/// program_clock_reference: 33-bit base, 6 reserved bits, 9-bit extension (0). Defined by:
/// ISO/IEC 13818-1, 2.4.3.4.
fn encode_pcr(pcr: u64) -> [u8; PCR_SIZE] {
    let base = pcr & TIMESTAMP_MASK;
    [(base >> 25) as u8, (base >> 17) as u8, (base >> 9) as u8, (base >> 1) as u8, ((base & 1) << 7) as u8 | 0x7E, 0]
}

/// A PTS or DTS field: 4-bit prefix, then 3 + 15 + 15 bits, each group closed by a marker bit.
/// Defined by: ISO/IEC 13818-1, 2.4.3.6.
fn encode_timestamp(prefix: u8, ts: u64) -> [u8; 5] {
    let ts = ts & TIMESTAMP_MASK;
    let mid = (((ts >> 15) & 0x7FFF) << 1 | 1) as u16;
    let low = ((ts & 0x7FFF) << 1 | 1) as u16;
    let [m0, m1] = mid.to_be_bytes();
    let [l0, l1] = low.to_be_bytes();
    [prefix << 4 | (((ts >> 30) & 0x07) as u8) << 1 | 1, m0, m1, l0, l1]
}

/// Writes the PES header into `buf` and returns its length.
fn pes_header(track: Track, pes: &Pes<'_>, buf: &mut [u8; MAX_PES_HEADER]) -> Result<usize, MuxError> {
    let pts = pes.pts & TIMESTAMP_MASK;
    let dts = pes.dts.map(|d| d & TIMESTAMP_MASK).filter(|&d| d != pts);
    let header_data_len = if dts.is_some() { 10 } else { 5 };
    let packet_length = 3 + header_data_len + pes.data.len();
    let packet_length = match (packet_length <= MAX_PES_PACKET_LENGTH, track) {
        (true, _) => packet_length as u16,
        (false, Track::Video) => 0,
        (false, Track::Audio) => return Err(MuxError::AudioPesTooLarge(pes.data.len())),
    };
    buf[..3].copy_from_slice(&[0x00, 0x00, 0x01]);
    buf[3] = track.stream_id();
    buf[4..6].copy_from_slice(&packet_length.to_be_bytes());
    buf[6] = 0x80; // '10', no scrambling, priority, alignment, copyright or original flags
    buf[7] = if dts.is_some() { 0xC0 } else { 0x80 }; // PTS_DTS_flags
    buf[8] = header_data_len as u8;
    match dts {
        Some(dts) => {
            buf[9..14].copy_from_slice(&encode_timestamp(0b0011, pts));
            buf[14..19].copy_from_slice(&encode_timestamp(0b0001, dts));
        }
        None => buf[9..14].copy_from_slice(&encode_timestamp(0b0010, pts)),
    }
    Ok(PES_FIXED_HEADER + header_data_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// A parsed packet: what the tests look at.
    #[derive(Debug)]
    struct Packet<'a> {
        pid: u16,
        unit_start: bool,
        cc: u8,
        /// The adaptation field after its length byte.
        af: Option<&'a [u8]>,
        payload: &'a [u8],
    }

    fn packets(ts: &[u8]) -> Vec<Packet<'_>> {
        assert_eq!(ts.len() % PACKET_SIZE, 0, "not whole packets");
        ts.chunks(PACKET_SIZE)
            .map(|p| {
                assert_eq!(p[0], SYNC_BYTE);
                let afc = p[3] >> 4 & 3;
                assert!(afc & 1 == 1, "every packet carries payload");
                let (af, body) = if afc & 2 != 0 {
                    let len = usize::from(p[4]);
                    (Some(&p[5..5 + len]), 5 + len)
                } else {
                    (None, 4)
                };
                Packet {
                    pid: u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]),
                    unit_start: p[1] & 0x40 != 0,
                    cc: p[3] & 0x0F,
                    af,
                    payload: &p[body..],
                }
            })
            .collect()
    }

    fn pes<'a>(pts: u64, dts: Option<u64>, data: &'a [u8]) -> Pes<'a> {
        Pes { pts, dts, pcr: None, random_access: false, data }
    }

    #[test]
    fn tables_match_ffmpeg_packets() {
        let mut m = Muxer::new(Some(VideoType::H264), Some(AudioType::Aac));
        let mut out = Vec::new();
        m.write_tables(&mut out);
        assert_eq!(out.len(), 2 * PACKET_SIZE);
        let mut pat = hex("474000100000b00d0001c100000001f0002ab104b2");
        pat.resize(PACKET_SIZE, 0xFF);
        let mut pmt = hex("475000100002b0170001c10000e100f0001be100f0000fe101f0002f44b99b");
        pmt.resize(PACKET_SIZE, 0xFF);
        assert_eq!(out[..PACKET_SIZE], pat[..]);
        assert_eq!(out[PACKET_SIZE..], pmt[..]);
    }

    #[test]
    fn pes_header_matches_ffmpeg() {
        // ffmpeg's first video PES: PTS 1.48 s, DTS 1.4 s, unbounded length.
        let mut buf = [0; MAX_PES_HEADER];
        let big = vec![0; 70_000];
        let n = pes_header(Track::Video, &pes(133_200, Some(126_000), &big), &mut buf).unwrap();
        assert_eq!(buf[..n], hex("000001e0000080c00a31000910a1110007d861")[..]);
    }

    #[test]
    fn pts_only_when_dts_equals_pts_or_is_absent() {
        let mut buf = [0; MAX_PES_HEADER];
        for dts in [None, Some(90_000)] {
            let n = pes_header(Track::Audio, &pes(90_000, dts, &[1, 2, 3]), &mut buf).unwrap();
            // Length 3 + 5 + 3 bytes; PTS 90000 = 0b1_0101111_10010000.
            assert_eq!(buf[..n], hex("000001c0000b808005210005bf21")[..]);
        }
    }

    #[test]
    fn timestamps_wrap_to_33_bits() {
        let mut buf = [0; MAX_PES_HEADER];
        let wrapped = pes((1 << 33) + 5, Some(1 << 33), &[]);
        pes_header(Track::Video, &wrapped, &mut buf).unwrap();
        assert_eq!(buf[9..14], encode_timestamp(0b0011, 5));
        assert_eq!(buf[14..19], encode_timestamp(0b0001, 0));
        // The highest value keeps every bit, and markers stay set.
        assert_eq!(encode_timestamp(0b0010, TIMESTAMP_MASK), [0x2F, 0xFF, 0xFF, 0xFF, 0xFF]);
        // A DTS equal to the PTS once both are wrapped is left out.
        let same = pes(7, Some((1 << 33) + 7), &[]);
        let n = pes_header(Track::Video, &same, &mut buf).unwrap();
        assert_eq!((n, buf[7]), (14, 0x80));
    }

    #[test]
    fn pcr_and_random_access_in_first_packet_only() {
        let mut m = Muxer::new(Some(VideoType::H264), None);
        let mut out = Vec::new();
        let data = vec![0xAB; 500];
        let p = Pes { pts: 3600, dts: None, pcr: Some(0x1_2345_6789), random_access: true, data: &data };
        m.write_pes(Track::Video, &p, &mut out).unwrap();
        let pk = packets(&out);
        assert_eq!(pk.len(), 3);
        let af = pk[0].af.unwrap();
        assert_eq!(af[0], 0x50); // random_access_indicator, PCR_flag
                                 // base 0x1_2345_6789 = bits 32..1 then bit 0, six reserved ones, extension 0.
        assert_eq!(af[1..7], [0x91, 0xA2, 0xB3, 0xC4, 0xFE, 0x00]);
        assert_eq!(af.len(), 7);
        assert!(pk[0].unit_start && !pk[1].unit_start && !pk[2].unit_start);
        assert!(pk[1].af.is_none());
        let body: Vec<u8> = pk.iter().flat_map(|p| p.payload.iter().copied()).collect();
        assert_eq!(body[14..], data[..]);
    }

    #[test]
    fn random_access_without_pcr() {
        let mut m = Muxer::new(None, Some(AudioType::Aac));
        let mut out = Vec::new();
        let p = Pes { pts: 0, dts: None, pcr: None, random_access: true, data: &[0; 300] };
        m.write_pes(Track::Audio, &p, &mut out).unwrap();
        let pk = packets(&out);
        assert_eq!(pk[0].af, Some(&[0x40][..]));
        assert_eq!(pk[0].pid, AUDIO_PID);
    }

    /// The adaptation field (after its length byte) of the last packet of a PES of `n` data
    /// bytes with a 14-byte header, `None` when that packet has none.
    fn stuffing_case(n: usize) -> Option<Vec<u8>> {
        let mut m = Muxer::new(Some(VideoType::H264), None);
        let mut out = Vec::new();
        let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
        m.write_pes(Track::Video, &pes(0, None, &data), &mut out).unwrap();
        let pk = packets(&out);
        let body: Vec<u8> = pk.iter().flat_map(|p| p.payload.iter().copied()).collect();
        assert_eq!(body[14..], data[..], "payload of {n} bytes reassembles");
        pk.last().unwrap().af.map(<[u8]>::to_vec)
    }

    #[test]
    fn stuffing_fills_the_last_packet_with_the_adaptation_field() {
        // 184 - 14 = 170 bytes fill the first packet exactly: no adaptation field.
        assert_eq!(stuffing_case(170), None);
        // One byte short: an adaptation field of length 0.
        assert_eq!(stuffing_case(169), Some(vec![]));
        // Two bytes short: length 1, flags byte 0.
        assert_eq!(stuffing_case(168), Some(vec![0x00]));
        // Ten bytes short: flags 0 and eight 0xFF.
        let mut want = vec![0x00];
        want.extend_from_slice(&[0xFF; 8]);
        assert_eq!(stuffing_case(160), Some(want));
        // A second packet with 184, 183, 182 and 1 bytes of payload.
        assert_eq!(stuffing_case(170 + 184), None);
        assert_eq!(stuffing_case(170 + 183), Some(vec![]));
        assert_eq!(stuffing_case(170 + 182), Some(vec![0x00]));
        assert_eq!(stuffing_case(171).map(|af| af.len()), Some(182));
        // Empty payload: the header alone, stuffed.
        assert_eq!(stuffing_case(0).map(|af| af.len()), Some(169));
    }

    #[test]
    fn stuffing_after_pcr_extends_the_same_adaptation_field() {
        let mut m = Muxer::new(Some(VideoType::H264), None);
        let mut out = Vec::new();
        let p = Pes { pts: 0, dts: None, pcr: Some(0), random_access: true, data: &[0x55; 10] };
        m.write_pes(Track::Video, &p, &mut out).unwrap();
        let pk = packets(&out);
        assert_eq!(pk.len(), 1);
        let af = pk[0].af.unwrap();
        assert_eq!(af[0], 0x50);
        assert_eq!(af.len(), 184 - 1 - 14 - 10);
        assert!(af[7..].iter().all(|&b| b == 0xFF));
        assert_eq!(pk[0].payload[14..], [0x55; 10]);
    }

    #[test]
    fn pes_packet_length() {
        let mut buf = [0; MAX_PES_HEADER];
        let exact = vec![0; MAX_PES_PACKET_LENGTH - 13];
        pes_header(Track::Video, &pes(0, Some(1), &exact), &mut buf).unwrap();
        assert_eq!(buf[4..6], [0xFF, 0xFF]);
        let over = vec![0; MAX_PES_PACKET_LENGTH - 12];
        pes_header(Track::Video, &pes(0, Some(1), &over), &mut buf).unwrap();
        assert_eq!(buf[4..6], [0, 0]);
        // Audio has a PTS only: 8 bytes of header count in the length.
        let fits = vec![0; MAX_PES_PACKET_LENGTH - 8];
        pes_header(Track::Audio, &pes(0, None, &fits), &mut buf).unwrap();
        assert_eq!(buf[4..6], [0xFF, 0xFF]);
        let over = vec![0; MAX_PES_PACKET_LENGTH - 7];
        let audio = pes(0, None, &over);
        assert_eq!(pes_header(Track::Audio, &audio, &mut buf), Err(MuxError::AudioPesTooLarge(over.len())));
        let mut m = Muxer::new(None, Some(AudioType::Aac));
        let mut out = Vec::new();
        assert_eq!(m.write_pes(Track::Audio, &audio, &mut out), Err(MuxError::AudioPesTooLarge(over.len())));
        assert!(out.is_empty());
    }

    #[test]
    fn missing_track_is_an_error() {
        let mut out = Vec::new();
        let mut m = Muxer::new(None, Some(AudioType::Mp3));
        assert_eq!(m.write_pes(Track::Video, &pes(0, None, &[1]), &mut out), Err(MuxError::NoSuchTrack(Track::Video)));
        let mut m = Muxer::new(Some(VideoType::H265), None);
        assert_eq!(m.write_pes(Track::Audio, &pes(0, None, &[1]), &mut out), Err(MuxError::NoSuchTrack(Track::Audio)));
        assert!(out.is_empty());
    }

    #[test]
    fn continuity_counters_continue_across_segments() {
        let mut m = Muxer::new(Some(VideoType::H264), Some(AudioType::Aac));
        let mut out = Vec::new();
        let video = vec![1; 1000]; // 6 packets
        for _segment in 0..5 {
            m.write_tables(&mut out);
            for _ in 0..3 {
                m.write_pes(Track::Video, &pes(0, None, &video), &mut out).unwrap();
                m.write_pes(Track::Audio, &pes(0, None, &[2; 10]), &mut out).unwrap();
            }
        }
        let mut last = std::collections::HashMap::new();
        let mut counts = std::collections::HashMap::new();
        for p in packets(&out) {
            if let Some(prev) = last.insert(p.pid, p.cc) {
                assert_eq!(p.cc, (prev + 1) % 16, "PID {:#x}", p.pid);
            } else {
                assert_eq!(p.cc, 0, "PID {:#x} starts at 0", p.pid);
            }
            *counts.entry(p.pid).or_insert(0) += 1;
        }
        assert_eq!(counts[&PAT_PID], 5);
        assert_eq!(counts[&PMT_PID], 5);
        assert_eq!(counts[&VIDEO_PID], 5 * 3 * 6);
        assert_eq!(counts[&AUDIO_PID], 5 * 3);
        // The second segment's tables continue at 1.
        let mut m2 = Muxer::new(None, Some(AudioType::Aac));
        let mut seg = Vec::new();
        m2.write_tables(&mut seg);
        seg.clear();
        m2.write_tables(&mut seg);
        assert_eq!(packets(&seg).iter().map(|p| p.cc).collect::<Vec<_>>(), [1, 1]);
    }

    #[test]
    fn pcr_pid_follows_video() {
        assert_eq!(Muxer::new(Some(VideoType::H264), Some(AudioType::Aac)).pcr_pid(), VIDEO_PID);
        assert_eq!(Muxer::new(None, Some(AudioType::Aac)).pcr_pid(), AUDIO_PID);
        assert_eq!(Muxer::new(None, None).pcr_pid(), psi::NO_PCR_PID);
    }
}

//! Reading back what [`crate::Muxer`] writes: the timestamps and random-access flags of each PES
//! start, so tests and fuzz targets can check a segment's timeline (monotonic DTS per track, a
//! keyframe first) without a full demuxer. Hostile input gives fewer entries, never a panic.

use crate::mux::SYNC_BYTE;
use crate::PACKET_SIZE;

/// The start of one PES packet, as found in a transport stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PesStart {
    /// The PID it was carried on.
    pub pid: u16,
    /// Presentation timestamp, 90 kHz, 33 bits.
    pub pts: Option<u64>,
    /// Decoding timestamp, 90 kHz, 33 bits; `pts` when the header has none.
    pub dts: Option<u64>,
    /// random_access_indicator of the packet's adaptation field.
    pub random_access: bool,
}

/// Every PES start in `data`, in order. Packets that are not 188 bytes with a sync byte end the
/// scan.
pub fn pes_starts(data: &[u8]) -> Vec<PesStart> {
    data.chunks_exact(PACKET_SIZE).map_while(packet).flatten().collect()
}

/// `None` stops the scan (not a TS packet); `Some(None)` is a packet without a PES start.
fn packet(p: &[u8]) -> Option<Option<PesStart>> {
    if p[0] != SYNC_BYTE {
        return None;
    }
    let unit_start = p[1] & 0x40 != 0;
    let pid = u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
    let has_adaptation = p[3] & 0x20 != 0;
    let mut at = 4;
    let mut random_access = false;
    if has_adaptation {
        let len = usize::from(p[4]);
        random_access = len > 0 && p[5] & 0x40 != 0;
        at += 1 + len;
    }
    let body = p.get(at..).unwrap_or_default();
    // PSI sections start with a pointer field, PES packets with 00 00 01.
    if !unit_start || body.len() < 9 || body[..3] != [0, 0, 1] {
        return Some(None);
    }
    let flags = body[7] >> 6;
    let pts = (flags & 2 != 0).then(|| body.get(9..14).map(timestamp)).flatten();
    let dts = if flags == 3 { body.get(14..19).map(timestamp) } else { pts };
    Some(Some(PesStart { pid, pts, dts, random_access }))
}

/// A 33-bit PES timestamp from its 5 bytes. Defined by: ISO/IEC 13818-1, 2.4.3.7.
fn timestamp(b: &[u8]) -> u64 {
    u64::from(b[0] >> 1 & 0x07) << 30
        | u64::from(b[1]) << 22
        | u64::from(b[2] >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4] >> 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AudioType, Muxer, Pes, Track, VideoType};

    #[test]
    fn reads_back_what_the_muxer_wrote() {
        let mut mux = Muxer::new(Some(VideoType::H264), Some(AudioType::Aac));
        let mut out = Vec::new();
        mux.write_tables(&mut out);
        let key = Pes { pts: 126_000, dts: Some(120_000), pcr: Some(114_000), random_access: true, data: &[1; 400] };
        mux.write_pes(Track::Video, &key, &mut out).unwrap();
        let audio = Pes { pts: (1 << 33) + 5, dts: None, pcr: None, random_access: false, data: &[2; 30] };
        mux.write_pes(Track::Audio, &audio, &mut out).unwrap();
        let starts = pes_starts(&out);
        assert_eq!(starts.len(), 2, "{starts:?}");
        assert_eq!(
            starts[0],
            PesStart { pid: Track::Video.pid(), pts: Some(126_000), dts: Some(120_000), random_access: true }
        );
        assert_eq!(starts[1], PesStart { pid: Track::Audio.pid(), pts: Some(5), dts: Some(5), random_access: false });
        assert!(pes_starts(&out[1..]).is_empty(), "not aligned: nothing");
    }
}

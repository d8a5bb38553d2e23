//! Media fragments (`moof` + `mdat`) and the segment type box.
//! Defined by: ISO/IEC 14496-12, 8.8.4-8.8.8 (`moof`, `mfhd`, `traf`, `tfhd`, `trun`), 8.8.12
//! (`tfdt`), 8.8.3.1 (sample flags), 8.1.1 (`mdat`), 8.16.2 (`styp`); ISO/IEC 23000-19, 7.3.2
//! (CMAF fragments: one `traf` per track, `tfdt`, `default-base-is-moof`).

use bytes::Bytes;

use crate::writer::BoxWriter;
use crate::{Fmp4Error, MAX_FRAGMENT_SIZE};

/// `tfhd` flag: data offsets count from the start of the `moof`.
const DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` flags: which optional fields are present.
const DATA_OFFSET_PRESENT: u32 = 0x000001;
const SAMPLE_DURATION_PRESENT: u32 = 0x000100;
const SAMPLE_SIZE_PRESENT: u32 = 0x000200;
const SAMPLE_FLAGS_PRESENT: u32 = 0x000400;
const SAMPLE_CTS_PRESENT: u32 = 0x000800;
/// `trun` version 1: composition offsets are signed.
const TRUN_SIGNED_CTS: u8 = 1;
/// `tfdt` version 1: a 64-bit base media decode time.
const TFDT_64_BIT: u8 = 1;
/// Sample flags of a sync sample: `sample_depends_on` = 2 (depends on no other sample),
/// `sample_is_non_sync_sample` = 0.
pub const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// Sample flags of any other sample: `sample_depends_on` = 1, `sample_is_non_sync_sample` = 1.
pub const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// Box sizes, for sizing a fragment before writing it.
const BOX_HEADER: u64 = 8;
const MFHD_SIZE: u64 = BOX_HEADER + 4 + 4;
const TFHD_SIZE: u64 = BOX_HEADER + 4 + 4;
const TFDT_SIZE: u64 = BOX_HEADER + 4 + 8;
/// `trun` without samples: header, version and flags, sample_count, data_offset.
const TRUN_FIXED_SIZE: u64 = BOX_HEADER + 4 + 4 + 4;

/// One access unit of one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Duration in the track's timescale: the time to the next sample's decode time.
    pub duration: u32,
    /// A sync sample (a video keyframe that starts a GOP). Set it for every audio sample:
    /// audio samples are all sync samples, and the fragment does not know the track's kind.
    pub keyframe: bool,
    /// Composition time minus decode time, in the track's timescale; may be negative.
    pub cts_offset: i32,
    /// The coded data as RTMP carries it: length-prefixed NAL units (AVC, HEVC), the OBUs of
    /// a temporal unit (AV1), raw AAC or Opus frames.
    pub data: Bytes,
}

impl Sample {
    /// The sample flags `trun` carries for this sample.
    pub fn flags(&self) -> u32 {
        if self.keyframe {
            SYNC_SAMPLE_FLAGS
        } else {
            NON_SYNC_SAMPLE_FLAGS
        }
    }
}

/// The samples one fragment carries for one track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackRun<'a> {
    /// The track, as in [`crate::TrackInfo::id`].
    pub track_id: u32,
    /// Decode time of the first sample in the track's timescale: the sum of the durations of
    /// every earlier sample of the track.
    pub base_decode_time: u64,
    /// The samples, in decode order.
    pub samples: &'a [Sample],
}

impl TrackRun<'_> {
    fn data_len(&self) -> u64 {
        self.samples.iter().map(|s| s.data.len() as u64).sum()
    }

    /// Composition offsets are written only when one is not 0 (always, in practice, for video
    /// with B-frames; never for audio).
    fn has_cts(&self) -> bool {
        self.samples.iter().any(|s| s.cts_offset != 0)
    }

    fn trun_size(&self) -> u64 {
        let entry = if self.has_cts() { 16 } else { 12 };
        TRUN_FIXED_SIZE + entry * self.samples.len() as u64
    }

    fn traf_size(&self) -> u64 {
        let trun = if self.samples.is_empty() { 0 } else { self.trun_size() };
        BOX_HEADER + TFHD_SIZE + TFDT_SIZE + trun
    }
}

/// Builds one fragment: a `moof` (`mfhd` with `sequence`; per run a `traf` with `tfhd`
/// (`default-base-is-moof`), `tfdt` (version 1) and, unless the run is empty, a `trun`
/// (version 1) with the data offset and per-sample duration, size, flags and, when any is not
/// 0, composition offset), followed by one `mdat` holding the samples in run order.
///
/// For HLS, CMAF and recordings `sequence` starts at 1 and grows by one per fragment. Fails
/// with [`Fmp4Error::ZeroTrackId`] for a run of track 0 and with
/// [`Fmp4Error::FragmentTooLarge`] above [`MAX_FRAGMENT_SIZE`].
pub fn fragment(sequence: u32, runs: &[TrackRun<'_>]) -> Result<Vec<u8>, Fmp4Error> {
    if runs.iter().any(|r| r.track_id == 0) {
        return Err(Fmp4Error::ZeroTrackId);
    }
    let moof_size = BOX_HEADER + MFHD_SIZE + runs.iter().map(TrackRun::traf_size).sum::<u64>();
    let data_size = runs.iter().map(TrackRun::data_len).sum::<u64>();
    let size = moof_size + BOX_HEADER + data_size;
    if size > MAX_FRAGMENT_SIZE {
        return Err(Fmp4Error::FragmentTooLarge { size });
    }
    // Both fit in u32 and usize now: MAX_FRAGMENT_SIZE is i32::MAX.
    let (size, moof_size) = (size as usize, moof_size as usize);

    let mut w = BoxWriter::with_capacity(size);
    let mut offset_fields = Vec::with_capacity(runs.len());
    w.boxed(b"moof", |w| {
        w.full(b"mfhd", 0, 0, |w| w.u32(sequence));
        for run in runs {
            offset_fields.push(write_traf(w, run));
        }
    });
    debug_assert_eq!(w.len(), moof_size);

    // Each run's data starts after the moof, the mdat header and the earlier runs' data.
    let mut data_offset = moof_size + BOX_HEADER as usize;
    for (run, field) in runs.iter().zip(offset_fields) {
        if let Some(pos) = field {
            w.patch_u32(pos, data_offset as u32);
        }
        data_offset += run.data_len() as usize;
    }

    w.boxed(b"mdat", |w| {
        for sample in runs.iter().flat_map(|r| r.samples) {
            w.bytes(&sample.data);
        }
    });
    debug_assert_eq!(w.len(), size);
    Ok(w.into_inner())
}

/// Writes one `traf`; returns where its `trun` data offset goes, if it has a `trun`.
fn write_traf(w: &mut BoxWriter, run: &TrackRun<'_>) -> Option<usize> {
    let mut offset_field = None;
    w.boxed(b"traf", |w| {
        w.full(b"tfhd", 0, DEFAULT_BASE_IS_MOOF, |w| w.u32(run.track_id));
        w.full(b"tfdt", TFDT_64_BIT, 0, |w| w.u64(run.base_decode_time));
        if !run.samples.is_empty() {
            offset_field = Some(write_trun(w, run));
        }
    });
    offset_field
}

/// Writes a `trun` with a placeholder data offset; returns where the offset is.
fn write_trun(w: &mut BoxWriter, run: &TrackRun<'_>) -> usize {
    let cts = run.has_cts();
    let mut flags = DATA_OFFSET_PRESENT | SAMPLE_DURATION_PRESENT | SAMPLE_SIZE_PRESENT | SAMPLE_FLAGS_PRESENT;
    if cts {
        flags |= SAMPLE_CTS_PRESENT;
    }
    let mut offset_field = 0;
    w.full(b"trun", TRUN_SIGNED_CTS, flags, |w| {
        // The fragment size check bounds the sample count far below u32::MAX.
        w.u32(run.samples.len() as u32);
        offset_field = w.len();
        w.u32(0);
        for s in run.samples {
            w.u32(s.duration);
            w.u32(s.data.len() as u32);
            w.u32(s.flags());
            if cts {
                w.i32(s.cts_offset);
            }
        }
    });
    offset_field
}

/// A `styp` box to open each HLS/CMAF media segment: major brand `msdh` (a media segment per
/// ISO/IEC 23009-1), compatible `msdh`.
pub fn segment_type() -> Vec<u8> {
    let mut w = BoxWriter::with_capacity(20);
    w.boxed(b"styp", |w| {
        w.bytes(b"msdh");
        w.u32(0);
        w.bytes(b"msdh");
    });
    w.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::{boxes, find, BoxRef};
    use proptest::prelude::*;

    fn sample(duration: u32, keyframe: bool, cts_offset: i32, data: &[u8]) -> Sample {
        Sample { duration, keyframe, cts_offset, data: Bytes::copy_from_slice(data) }
    }

    fn u32_at(data: &[u8], pos: usize) -> u32 {
        u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap())
    }

    /// A parsed `trun`: (version, flags, data_offset, entries of 3 or 4 fields).
    type Trun = (u8, u32, i32, Vec<Vec<u32>>);
    /// A parsed `traf`: track id, tfhd flags, tfdt (version, time), trun if any.
    type Traf = (u32, u32, (u8, u64), Option<Trun>);

    fn parse_trun(trun: &[u8]) -> Trun {
        let flags = u32_at(trun, 0) & 0xFF_FFFF;
        let count = u32_at(trun, 4) as usize;
        let offset = u32_at(trun, 8) as i32;
        let fields = 3 + usize::from(flags & SAMPLE_CTS_PRESENT != 0);
        let entries =
            (0..count).map(|i| (0..fields).map(|f| u32_at(trun, 12 + (i * fields + f) * 4)).collect()).collect();
        assert_eq!(trun.len(), 12 + count * fields * 4, "trun length");
        (trun[0], flags, offset, entries)
    }

    struct Parsed {
        moof: BoxRef,
        mdat: BoxRef,
        sequence: u32,
        trafs: Vec<Traf>,
    }

    fn parse(frag: &[u8]) -> Parsed {
        let top: Vec<_> = boxes(frag).map(|b| b.unwrap()).collect();
        assert_eq!(top.iter().map(|b| b.kind).collect::<Vec<_>>(), [*b"moof", *b"mdat"]);
        assert_eq!(top[1].end(), frag.len());
        let moof = top[0].payload(frag);
        let mfhd = find(moof, b"mfhd").unwrap().payload(moof);
        let mut trafs = Vec::new();
        for b in boxes(moof).map(|b| b.unwrap()).filter(|b| &b.kind == b"traf") {
            let traf = b.payload(moof);
            let kinds: Vec<_> = boxes(traf).map(|b| b.unwrap().kind).collect();
            assert!(kinds == [*b"tfhd", *b"tfdt", *b"trun"] || kinds == [*b"tfhd", *b"tfdt"], "{kinds:?}");
            let tfhd = find(traf, b"tfhd").unwrap().payload(traf);
            assert_eq!(tfhd.len(), 8);
            let tfdt = find(traf, b"tfdt").unwrap().payload(traf);
            assert_eq!(tfdt.len(), 12);
            let time = u64::from_be_bytes(tfdt[4..12].try_into().unwrap());
            let trun = find(traf, b"trun").map(|t| parse_trun(t.payload(traf)));
            trafs.push((u32_at(tfhd, 4), u32_at(tfhd, 0), (tfdt[0], time), trun));
        }
        Parsed { moof: top[0], mdat: top[1], sequence: u32_at(mfhd, 4), trafs }
    }

    #[test]
    fn one_video_run() {
        let samples =
            [sample(3000, true, 6000, b"key!"), sample(3000, false, -3000, b"p"), sample(3000, false, 0, b"bb")];
        let frag = fragment(7, &[TrackRun { track_id: 1, base_decode_time: 1 << 40, samples: &samples }]).unwrap();
        let p = parse(&frag);
        assert_eq!(p.sequence, 7);
        let (track, tfhd_flags, tfdt, trun) = p.trafs[0].clone();
        assert_eq!((track, tfhd_flags, tfdt), (1, DEFAULT_BASE_IS_MOOF, (1, 1 << 40)));
        let (version, flags, offset, entries) = trun.unwrap();
        assert_eq!((version, flags), (1, 0x000F01));
        assert_eq!(offset as usize, p.mdat.offset + 8, "data offset points at the first mdat byte");
        assert_eq!(&frag[offset as usize..][..4], b"key!");
        assert_eq!(
            entries,
            [
                vec![3000, 4, SYNC_SAMPLE_FLAGS, 6000],
                vec![3000, 1, NON_SYNC_SAMPLE_FLAGS, (-3000i32) as u32],
                vec![3000, 2, NON_SYNC_SAMPLE_FLAGS, 0],
            ]
        );
        assert_eq!(p.mdat.payload(&frag), b"key!pbb");
        assert_eq!(p.moof.offset, 0);
    }

    #[test]
    fn two_tracks_share_one_mdat_in_run_order() {
        let video = [sample(40, true, 80, &[1; 100]), sample(40, false, 0, &[2; 50])];
        let audio = [sample(1024, true, 0, &[3; 7]), sample(1024, true, 0, &[4; 9]), sample(1024, true, 0, &[5; 11])];
        let runs = [
            TrackRun { track_id: 1, base_decode_time: 2000, samples: &video },
            TrackRun { track_id: 2, base_decode_time: 88_200, samples: &audio },
        ];
        let frag = fragment(2, &runs).unwrap();
        let p = parse(&frag);
        assert_eq!(p.trafs.len(), 2);
        let (_, _, (_, t1), trun1) = p.trafs[0].clone();
        let (id2, _, (_, t2), trun2) = p.trafs[1].clone();
        assert_eq!((t1, id2, t2), (2000, 2, 88_200));
        let (_, _, off1, _) = trun1.unwrap();
        let (_, flags2, off2, entries2) = trun2.unwrap();
        assert_eq!(flags2 & SAMPLE_CTS_PRESENT, 0, "audio without offsets leaves them out");
        assert_eq!(entries2[1], [1024, 9, SYNC_SAMPLE_FLAGS]);
        assert_eq!(off1 as usize, p.mdat.offset + 8);
        assert_eq!(off2 as usize, p.mdat.offset + 8 + 150);
        assert_eq!(frag[off2 as usize..][..7], [3; 7]);
        assert_eq!(frag[frag.len() - 11..], [5; 11]);
        let expected_moof = 8 + 16 + (8 + 16 + 20 + 20 + 2 * 16) + (8 + 16 + 20 + 20 + 3 * 12);
        assert_eq!(p.moof.size, expected_moof);
    }

    #[test]
    fn empty_runs_keep_their_decode_time() {
        let audio = [sample(960, true, 0, b"op")];
        let runs = [
            TrackRun { track_id: 1, base_decode_time: 90_000, samples: &[] },
            TrackRun { track_id: 2, base_decode_time: 48_000, samples: &audio },
        ];
        let frag = fragment(1, &runs).unwrap();
        let p = parse(&frag);
        assert_eq!(p.trafs[0].2, (1, 90_000));
        assert!(p.trafs[0].3.is_none());
        let (_, _, off, _) = p.trafs[1].3.clone().unwrap();
        assert_eq!(&frag[off as usize..], b"op");

        let p = parse(&fragment(3, &[]).unwrap());
        assert_eq!((p.sequence, p.trafs.len(), p.mdat.size), (3, 0, 8));
    }

    #[test]
    fn bad_runs_are_refused() {
        let run = TrackRun { track_id: 0, base_decode_time: 0, samples: &[] };
        assert_eq!(fragment(1, &[run]), Err(Fmp4Error::ZeroTrackId));
        let big = Bytes::from(vec![0u8; 1 << 20]);
        let samples = vec![Sample { duration: 1, keyframe: true, cts_offset: 0, data: big }; 2048];
        let run = TrackRun { track_id: 1, base_decode_time: 0, samples: &samples };
        match fragment(1, &[run]) {
            Err(Fmp4Error::FragmentTooLarge { size }) => assert!(size > MAX_FRAGMENT_SIZE),
            other => panic!("expected FragmentTooLarge, got {:?}", other.map(|f| f.len())),
        }
    }

    #[test]
    fn styp_is_a_media_segment_brand() {
        assert_eq!(
            segment_type(),
            [0, 0, 0, 20, b's', b't', b'y', b'p', b'm', b's', b'd', b'h', 0, 0, 0, 0, b'm', b's', b'd', b'h']
        );
    }

    proptest! {
        #[test]
        fn offsets_and_sizes_match_the_samples(
            runs in prop::collection::vec(
                prop::collection::vec((any::<u32>(), any::<bool>(), any::<i32>(), prop::collection::vec(any::<u8>(), 0..20)), 0..6),
                0..4,
            ),
            sequence in any::<u32>(),
            base in any::<u64>(),
        ) {
            let samples: Vec<Vec<Sample>> = runs
                .iter()
                .map(|r| r.iter().map(|(d, k, c, data)| sample(*d, *k, *c, data)).collect())
                .collect();
            let track_runs: Vec<_> = samples
                .iter()
                .enumerate()
                .map(|(i, s)| TrackRun { track_id: i as u32 + 1, base_decode_time: base, samples: s })
                .collect();
            let frag = fragment(sequence, &track_runs).unwrap();
            let p = parse(&frag);
            prop_assert_eq!(p.sequence, sequence);
            for ((_, _, tfdt, trun), s) in p.trafs.iter().zip(&samples) {
                prop_assert_eq!(*tfdt, (1, base));
                let Some((_, _, off, entries)) = trun else {
                    prop_assert!(s.is_empty());
                    continue;
                };
                let mut pos = *off as usize;
                for (e, s) in entries.iter().zip(s) {
                    prop_assert_eq!(e[0], s.duration);
                    prop_assert_eq!(&frag[pos..pos + e[1] as usize], &s.data[..]);
                    prop_assert_eq!(e[2], s.flags());
                    prop_assert_eq!(e.get(3).map_or(0, |&c| c as i32), s.cts_offset);
                    pos += e[1] as usize;
                }
            }
        }
    }
}

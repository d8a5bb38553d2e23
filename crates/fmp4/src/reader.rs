//! Listing the boxes of a buffer, for tests and for cutting a crashed recording back to its last
//! complete fragment. Defined by: ISO/IEC 14496-12, 4.2 (box header: `size`, `type`,
//! `largesize`, `usertype`).

use crate::{Fmp4Error, FourCc};

/// Size of the plain box header: 32-bit size and type.
const HEADER_SIZE: usize = 8;
/// Size of the 64-bit `largesize` that follows the type when `size` is 1.
const LARGESIZE_SIZE: usize = 8;
/// Size of the `usertype` that follows the type of `uuid` boxes.
const USERTYPE_SIZE: usize = 16;

/// Where one box lies in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxRef {
    /// Box type (`moof`, `mdat`, ...).
    pub kind: FourCc,
    /// Offset of the box's first byte in the buffer that was listed.
    pub offset: usize,
    /// Size of the whole box, header included. A box whose size field is 0 ("to the end")
    /// gets the size left in the buffer.
    pub size: usize,
    /// Size of the header: 8, 16 with `largesize`, 16 more for a `uuid` box's `usertype`.
    pub header_size: usize,
}

impl BoxRef {
    /// Offset just past the box.
    pub fn end(&self) -> usize {
        self.offset + self.size
    }

    /// The box body (after the header) in `data`, the buffer that was listed; the children of a
    /// container box can be listed with [`boxes`] on it.
    pub fn payload<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        data.get(self.offset + self.header_size..self.end()).unwrap_or_default()
    }
}

/// Lists the boxes of `data` in order, without looking inside them.
///
/// Yields an error once, for a box header or body that does not fit in `data` or a size field
/// smaller than the header, and then stops: everything before it is sound.
pub fn boxes(data: &[u8]) -> Boxes<'_> {
    Boxes { data, pos: 0, failed: false }
}

/// The iterator [`boxes`] returns.
#[derive(Debug, Clone)]
pub struct Boxes<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

impl Boxes<'_> {
    fn read_box(&self) -> Result<BoxRef, Fmp4Error> {
        let offset = self.pos;
        let rest = &self.data[offset..];
        let truncated = Fmp4Error::TruncatedHeader { offset };
        let head = rest.get(..HEADER_SIZE).ok_or(truncated.clone())?;
        let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind: FourCc = [head[4], head[5], head[6], head[7]];
        let (size, mut header_size) = match size32 {
            0 => (rest.len() as u64, HEADER_SIZE),
            1 => {
                let large = rest.get(HEADER_SIZE..HEADER_SIZE + LARGESIZE_SIZE).ok_or(truncated.clone())?;
                let mut bytes = [0; 8];
                bytes.copy_from_slice(large);
                (u64::from_be_bytes(bytes), HEADER_SIZE + LARGESIZE_SIZE)
            }
            n => (u64::from(n), HEADER_SIZE),
        };
        if &kind == b"uuid" {
            header_size += USERTYPE_SIZE;
            if rest.len() < header_size {
                return Err(truncated);
            }
        }
        if size < header_size as u64 {
            return Err(Fmp4Error::BadBoxSize { kind, offset, size });
        }
        let available = rest.len() as u64;
        if size > available {
            return Err(Fmp4Error::TruncatedBox { kind, offset, size, available });
        }
        // size <= rest.len(), so it fits in usize.
        Ok(BoxRef { kind, offset, size: size as usize, header_size })
    }
}

impl Iterator for Boxes<'_> {
    type Item = Result<BoxRef, Fmp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        match self.read_box() {
            Ok(b) => {
                self.pos = b.end();
                Some(Ok(b))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// The first box of type `kind` among the boxes of `data` (not looking inside them), if any
/// comes before the first malformed one.
pub fn find(data: &[u8], kind: &FourCc) -> Option<BoxRef> {
    boxes(data).map_while(Result::ok).find(|b| &b.kind == kind)
}

/// How many leading bytes of a fragmented MP4 file are sound: the prefix up to the end of the
/// last complete `moof` + `mdat` pair, or of the last complete box that is neither (`ftyp`,
/// `moov`, `styp`, ...). A recording cut short by a crash is repaired by truncating it to
/// this length.
///
/// A `moof` counts only once the `mdat` right after it is complete, as its samples are useless
/// without their data. A box whose size field is 0 runs to the end of `data` by definition, so
/// a truncated one cannot be recognised; this crate's writer never writes one.
pub fn complete_len(data: &[u8]) -> usize {
    let mut sound = 0;
    let mut pending_moof = false;
    for b in boxes(data) {
        let Ok(b) = b else { break };
        match &b.kind {
            b"moof" => pending_moof = true,
            b"mdat" if pending_moof => {
                pending_moof = false;
                sound = b.end();
            }
            _ if pending_moof => break,
            _ => sound = b.end(),
        }
    }
    sound
}

/// `tfhd` flags (ISO/IEC 14496-12, 8.8.7.1).
const TFHD_BASE_DATA_OFFSET: u32 = 0x00_0001;
const TFHD_DESCRIPTION_INDEX: u32 = 0x00_0002;
const TFHD_DEFAULT_DURATION: u32 = 0x00_0008;
const TFHD_DEFAULT_SIZE: u32 = 0x00_0010;
const TFHD_DEFAULT_FLAGS: u32 = 0x00_0020;
/// `trun` flags (ISO/IEC 14496-12, 8.8.8.1).
const TRUN_DATA_OFFSET: u32 = 0x00_0001;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x00_0004;
const TRUN_DURATION: u32 = 0x00_0100;
const TRUN_SIZE: u32 = 0x00_0200;
const TRUN_FLAGS: u32 = 0x00_0400;
const TRUN_CTS: u32 = 0x00_0800;
/// `sample_is_non_sync_sample` in sample flags.
const NON_SYNC_BIT: u32 = 0x0001_0000;

/// One sample as a `trun` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleInfo {
    /// Duration in the track's timescale.
    pub duration: u32,
    /// Size in bytes.
    pub size: u32,
    /// Sample flags (ISO/IEC 14496-12, 8.8.3.1).
    pub flags: u32,
    /// Composition time minus decode time.
    pub cts_offset: i32,
}

impl SampleInfo {
    /// A sync sample (a keyframe, or any audio sample).
    pub fn is_sync(&self) -> bool {
        self.flags & NON_SYNC_BIT == 0
    }
}

/// One `trun` of a `moof`: samples of one track stored one after another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRunInfo {
    /// The track.
    pub track_id: u32,
    /// `tfdt` of the `traf`, for its first run; `None` for later runs of a `traf` (they
    /// continue the earlier ones) or a `traf` without `tfdt`.
    pub base_decode_time: Option<u64>,
    /// Where the first sample's data starts, counted from the first byte of the `moof`.
    pub data_offset: u64,
    /// The samples, in decode order.
    pub samples: Vec<SampleInfo>,
}

/// Reads the sample runs of a `moof` box (`moof` is the whole box, header included), as
/// written by [`crate::fragment()`] and by other writers that state every sample's size,
/// either per sample or as a default in `tfhd`.
///
/// Data offsets count from the start of the `moof` (`default-base-is-moof`, or no base at
/// all, which for the first `traf` is the same). Fails with [`Fmp4Error::Unsupported`] for
/// explicit base data offsets and for samples whose size or duration only the `moov`'s `trex`
/// knows, and with [`Fmp4Error::Malformed`] when a box is cut short.
pub fn parse_moof(moof: &[u8]) -> Result<Vec<TrackRunInfo>, Fmp4Error> {
    let top = boxes(moof).next().ok_or(Fmp4Error::Malformed { what: "moof" })??;
    if &top.kind != b"moof" {
        return Err(Fmp4Error::Malformed { what: "moof: not a moof box" });
    }
    let body = top.payload(moof);
    let mut runs = Vec::new();
    for b in boxes(body) {
        let b = b?;
        if &b.kind == b"traf" {
            parse_traf(b.payload(body), &mut runs)?;
        }
    }
    Ok(runs)
}

/// Defaults a `tfhd` gives the samples of its `traf`.
#[derive(Default)]
struct TrackDefaults {
    track_id: u32,
    duration: Option<u32>,
    size: Option<u32>,
    flags: Option<u32>,
}

fn parse_traf(traf: &[u8], runs: &mut Vec<TrackRunInfo>) -> Result<(), Fmp4Error> {
    let tfhd = find(traf, b"tfhd").ok_or(Fmp4Error::Malformed { what: "traf: no tfhd" })?;
    let defaults = parse_tfhd(tfhd.payload(traf))?;
    let mut base_decode_time = match find(traf, b"tfdt") {
        Some(t) => Some(parse_tfdt(t.payload(traf))?),
        None => None,
    };
    for b in boxes(traf) {
        let b = b?;
        if &b.kind == b"trun" {
            let (data_offset, samples) = parse_trun(b.payload(traf), &defaults)?;
            runs.push(TrackRunInfo { track_id: defaults.track_id, base_decode_time, data_offset, samples });
            base_decode_time = None;
        }
    }
    Ok(())
}

fn parse_tfhd(p: &[u8]) -> Result<TrackDefaults, Fmp4Error> {
    let mut c = Fields { data: p, pos: 0, what: "tfhd" };
    let flags = c.u32()? & 0x00FF_FFFF;
    let mut d = TrackDefaults { track_id: c.u32()?, ..TrackDefaults::default() };
    if flags & TFHD_BASE_DATA_OFFSET != 0 {
        return Err(Fmp4Error::Unsupported { what: "tfhd base-data-offset" });
    }
    if flags & TFHD_DESCRIPTION_INDEX != 0 {
        c.u32()?;
    }
    if flags & TFHD_DEFAULT_DURATION != 0 {
        d.duration = Some(c.u32()?);
    }
    if flags & TFHD_DEFAULT_SIZE != 0 {
        d.size = Some(c.u32()?);
    }
    if flags & TFHD_DEFAULT_FLAGS != 0 {
        d.flags = Some(c.u32()?);
    }
    Ok(d)
}

fn parse_tfdt(p: &[u8]) -> Result<u64, Fmp4Error> {
    let mut c = Fields { data: p, pos: 0, what: "tfdt" };
    let version = c.u32()? >> 24;
    if version == 1 {
        c.u64()
    } else {
        c.u32().map(u64::from)
    }
}

/// Most samples one `trun` may describe. A run whose samples all take their size and duration
/// from the defaults has no entries to count against the box's length, so without this a
/// hostile header could ask for billions of samples (a real fragment holds seconds of media:
/// a few thousand at most).
const MAX_TRUN_SAMPLES: usize = 1 << 20;

fn parse_trun(p: &[u8], d: &TrackDefaults) -> Result<(u64, Vec<SampleInfo>), Fmp4Error> {
    let mut c = Fields { data: p, pos: 0, what: "trun" };
    let head = c.u32()?;
    let (version, flags) = (head >> 24, head & 0x00FF_FFFF);
    let count = c.u32()? as usize;
    let offset = if flags & TRUN_DATA_OFFSET != 0 { c.u32()? as i32 } else { 0 };
    let data_offset =
        u64::try_from(offset).map_err(|_| Fmp4Error::Unsupported { what: "trun negative data offset" })?;
    let first_flags = if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 { Some(c.u32()?) } else { None };
    let per_sample = [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTS].iter().filter(|&&f| flags & f != 0).count();
    // Every entry has to be there: refuse counts the box cannot hold before allocating.
    if count.saturating_mul(per_sample * 4) > p.len().saturating_sub(c.pos) {
        return Err(Fmp4Error::Malformed { what: "trun: more samples than entries" });
    }
    if count > MAX_TRUN_SAMPLES {
        return Err(Fmp4Error::Unsupported { what: "trun: more samples than one fragment holds" });
    }
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let duration = if flags & TRUN_DURATION != 0 { Some(c.u32()?) } else { d.duration };
        let size = if flags & TRUN_SIZE != 0 { Some(c.u32()?) } else { d.size };
        let sample_flags =
            if flags & TRUN_FLAGS != 0 { c.u32()? } else { first_flags.filter(|_| i == 0).or(d.flags).unwrap_or(0) };
        let cts_offset = if flags & TRUN_CTS != 0 {
            let v = c.u32()?;
            // Version 0 offsets are unsigned; writers that need negative ones use version 1.
            if version == 0 {
                i32::try_from(v).unwrap_or(i32::MAX)
            } else {
                v as i32
            }
        } else {
            0
        };
        let (Some(duration), Some(size)) = (duration, size) else {
            return Err(Fmp4Error::Unsupported { what: "samples sized only by trex defaults" });
        };
        samples.push(SampleInfo { duration, size, flags: sample_flags, cts_offset });
    }
    Ok((data_offset, samples))
}

/// Big-endian fields of a box body, cut-short bodies reported as [`Fmp4Error::Malformed`].
struct Fields<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], Fmp4Error> {
        let end = self.pos + N;
        let bytes = self.data.get(self.pos..end).ok_or(Fmp4Error::Malformed { what: self.what })?;
        self.pos = end;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, Fmp4Error> {
        self.take().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, Fmp4Error> {
        self.take().map(u64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn a_trun_of_billions_of_default_sized_samples_is_refused_before_allocating() {
        // No per-sample fields: every sample would take the defaults, so nothing in the box
        // bounds the count.
        let body = [0u32.to_be_bytes(), u32::MAX.to_be_bytes()].concat();
        let defaults = TrackDefaults { track_id: 1, duration: Some(1024), size: Some(100), flags: None };
        assert!(matches!(parse_trun(&body, &defaults), Err(Fmp4Error::Unsupported { .. })));
        let few = [0u32.to_be_bytes(), 3u32.to_be_bytes()].concat();
        assert_eq!(parse_trun(&few, &defaults).unwrap().1.len(), 3);
    }

    #[test]
    fn lists_boxes_with_offsets() {
        let data = [bx(b"ftyp", b"iso6"), bx(b"moov", &[]), bx(b"free", &[1, 2, 3])].concat();
        let list: Vec<_> = boxes(&data).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            list,
            [
                BoxRef { kind: *b"ftyp", offset: 0, size: 12, header_size: 8 },
                BoxRef { kind: *b"moov", offset: 12, size: 8, header_size: 8 },
                BoxRef { kind: *b"free", offset: 20, size: 11, header_size: 8 },
            ]
        );
        assert_eq!(list[2].payload(&data), [1, 2, 3]);
        assert_eq!(find(&data, b"free"), Some(list[2]));
        assert_eq!(find(&data, b"mdat"), None);
    }

    #[test]
    fn largesize_zero_size_and_uuid() {
        let mut large = vec![0, 0, 0, 1];
        large.extend_from_slice(b"mdat");
        large.extend_from_slice(&19u64.to_be_bytes());
        large.extend_from_slice(&[7, 7, 7]);
        let b = boxes(&large).next().unwrap().unwrap();
        assert_eq!((b.size, b.header_size, b.payload(&large)), (19, 16, &[7u8, 7, 7][..]));

        let mut to_end = bx(b"ftyp", &[]);
        to_end.extend_from_slice(&[0, 0, 0, 0, b'm', b'd', b'a', b't', 1, 2]);
        let list: Vec<_> = boxes(&to_end).map(|b| b.unwrap()).collect();
        assert_eq!((list[1].offset, list[1].size), (8, 10));

        let uuid = bx(b"uuid", &[0xAA; 17]);
        let b = boxes(&uuid).next().unwrap().unwrap();
        assert_eq!((b.header_size, b.payload(&uuid)), (24, &[0xAA][..]));
    }

    #[test]
    fn errors_name_the_box_and_stop() {
        let mut data = bx(b"ftyp", b"iso6");
        data.extend_from_slice(&bx(b"mdat", &[0; 10])[..12]);
        let list: Vec<_> = boxes(&data).collect();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1], Err(Fmp4Error::TruncatedBox { kind: *b"mdat", offset: 12, size: 18, available: 12 }));

        let small = [0, 0, 0, 7, b'f', b'r', b'e', b'e', 0, 0, 0, 9];
        assert_eq!(
            boxes(&small).collect::<Vec<_>>(),
            [Err(Fmp4Error::BadBoxSize { kind: *b"free", offset: 0, size: 7 })]
        );
        assert_eq!(boxes(&[0, 0, 0]).collect::<Vec<_>>(), [Err(Fmp4Error::TruncatedHeader { offset: 0 })]);
        let large = [0, 0, 0, 1, b'm', b'd', b'a', b't', 0, 0];
        assert_eq!(boxes(&large).collect::<Vec<_>>(), [Err(Fmp4Error::TruncatedHeader { offset: 0 })]);
        let uuid = [0, 0, 0, 30, b'u', b'u', b'i', b'd', 0, 0];
        assert_eq!(boxes(&uuid).collect::<Vec<_>>(), [Err(Fmp4Error::TruncatedHeader { offset: 0 })]);
        assert!(Fmp4Error::BadBoxSize { kind: [b'a', 0, b'b', b'c'], offset: 3, size: 1 }
            .to_string()
            .contains("a\\x00bc"));
    }

    #[test]
    fn complete_len_cuts_at_the_last_whole_fragment() {
        let init = [bx(b"ftyp", b"iso6"), bx(b"moov", &[0; 20])].concat();
        let frag = [bx(b"moof", &[1; 30]), bx(b"mdat", &[2; 50])].concat();
        let whole = [init.clone(), frag.clone(), frag.clone()].concat();
        assert_eq!(complete_len(&whole), whole.len());
        let one = init.len() + frag.len();
        // Cut inside the second mdat, right after the second moof, inside the second moof.
        for cut in [whole.len() - 1, one + 38, one + 20, one + 3, one] {
            assert_eq!(complete_len(&whole[..cut]), one, "cut at {cut}");
        }
        assert_eq!(complete_len(&whole[..init.len() + 5]), init.len());
        assert_eq!(complete_len(&whole[..10]), 0);
        // A moof followed by something other than its mdat ends the sound part.
        let odd = [init.clone(), bx(b"moof", &[]), bx(b"free", &[]), frag.clone()].concat();
        assert_eq!(complete_len(&odd), init.len());
        // styp before a fragment is fine.
        let styp = [init.clone(), bx(b"styp", b"msdh"), frag].concat();
        assert_eq!(complete_len(&styp), styp.len());
    }

    #[test]
    fn moof_runs_read_back_what_fragment_wrote() {
        use crate::fragment::{fragment, Sample, TrackRun};
        use bytes::Bytes;
        let s = |duration, keyframe, cts_offset, n: usize| Sample {
            duration,
            keyframe,
            cts_offset,
            data: Bytes::from(vec![7; n]),
        };
        let video = [s(40, true, 80, 100), s(40, false, -40, 30)];
        let audio = [s(1024, true, 0, 9), s(1024, true, 0, 11)];
        let runs = [
            TrackRun { track_id: 1, base_decode_time: 4000, samples: &video },
            TrackRun { track_id: 2, base_decode_time: 88_200, samples: &audio },
        ];
        let frag = fragment(5, &runs).unwrap();
        let moof = boxes(&frag).next().unwrap().unwrap();
        let read = parse_moof(&frag[..moof.end()]).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].track_id, read[0].base_decode_time), (1, Some(4000)));
        assert_eq!(read[0].data_offset as usize, moof.end() + 8, "right after the mdat header");
        assert_eq!(read[1].data_offset as usize, moof.end() + 8 + 130);
        let v: Vec<_> = read[0].samples.iter().map(|x| (x.duration, x.size, x.is_sync(), x.cts_offset)).collect();
        assert_eq!(v, [(40, 100, true, 80), (40, 30, false, -40)]);
        assert!(read[1].samples.iter().all(SampleInfo::is_sync));
        assert_eq!(read[1].samples[1].size, 11);
        // Cut anywhere inside, it fails rather than inventing samples.
        for cut in 8..moof.end() {
            let mut broken = frag[..cut].to_vec();
            broken[..4].copy_from_slice(&(cut as u32).to_be_bytes());
            assert!(parse_moof(&broken).map_or(true, |r| r.iter().map(|t| t.samples.len()).sum::<usize>() < 4));
        }
    }

    proptest! {
        #[test]
        fn malformed_input_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut end = 0;
            for b in boxes(&data) {
                let Ok(b) = b else { break };
                prop_assert!(b.offset == end && b.header_size <= b.size && b.end() <= data.len());
                end = b.end();
                // Walk one level down too, as the tests do.
                for c in boxes(b.payload(&data)) {
                    let Ok(c) = c else { break };
                    prop_assert!(c.end() <= b.payload(&data).len());
                }
            }
            prop_assert!(complete_len(&data) <= data.len());
            let _ = parse_moof(&data);
        }

        #[test]
        fn box_like_input_never_panics(
            size in prop::sample::select(vec![0u32, 1, 7, 8, 9, 16, 24, 100, u32::MAX]),
            kind in prop::sample::select(vec![*b"moof", *b"mdat", *b"uuid", *b"moov"]),
            rest in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut data = size.to_be_bytes().to_vec();
            data.extend_from_slice(&kind);
            data.extend_from_slice(&rest);
            for b in boxes(&data) {
                let Ok(b) = b else { break };
                prop_assert!(b.end() <= data.len());
            }
            prop_assert!(complete_len(&data) <= data.len());
        }
    }
}

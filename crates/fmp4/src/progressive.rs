//! Progressive ("faststart") MP4 from a fragmented one: `ftyp`, a `moov` with full sample
//! tables, then one `mdat` holding every fragment's media data in order. The sample tables
//! come from the fragments' `moof`s ([`TableBuilder`]); everything else (sample entries with
//! their codec configuration, handlers, track headers) is taken from the initialization
//! segment, so a file written by [`crate::init_segment`] and [`crate::fragment()`] becomes a
//! plain MP4 that every player seeks in.
//!
//! Defined by: ISO/IEC 14496-12, 8.2.2 (`mvhd`), 8.3.2 (`tkhd`), 8.4.2 (`mdhd`), 8.6.1.2
//! (`stts`), 8.6.1.3 (`ctts`, version 1 for signed offsets), 8.6.2 (`stss`), 8.7.3 (`stsz`),
//! 8.7.4 (`stsc`), 8.7.5 (`co64`), 8.1.1 (`mdat` with `largesize`), 8.8.1 (`mvex`, dropped).

use crate::reader::{boxes, find, parse_moof, SampleInfo};
use crate::writer::BoxWriter;
use crate::{Fmp4Error, FourCc};

/// Size of an `mdat` header with `largesize`: the payload may exceed 4 GiB.
const MDAT_HEADER: u64 = 16;

/// A run of consecutive samples of one track stored together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Where its first byte is, counted from the start of the `mdat` payload.
    pub offset: u64,
    /// How many samples it holds.
    pub samples: u32,
}

/// Every sample of one track, and where they lie.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackTable {
    /// The track.
    pub track_id: u32,
    /// Its samples in decode order.
    pub samples: Vec<SampleInfo>,
    /// Its chunks in order; their sample counts add up to `samples.len()`.
    pub chunks: Vec<Chunk>,
}

impl TrackTable {
    /// The sum of the sample durations, in the track's timescale.
    pub fn duration(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.duration)).sum()
    }
}

/// Gathers the sample tables of a fragmented file, fragment by fragment, as if every
/// fragment's `mdat` payload were appended to one `mdat`.
#[derive(Debug, Clone, Default)]
pub struct TableBuilder {
    tracks: Vec<TrackTable>,
    payload_len: u64,
}

impl TableBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        TableBuilder::default()
    }

    /// Adds one fragment: `moof` is the whole `moof` box, `mdat_header` the size of the
    /// `mdat` header right after it (8, or 16 with `largesize`) and `mdat_payload` the size of
    /// that `mdat`'s payload. Its payload goes after those of the fragments added before.
    pub fn add_fragment(&mut self, moof: &[u8], mdat_header: u64, mdat_payload: u64) -> Result<(), Fmp4Error> {
        let payload_start = moof.len() as u64 + mdat_header;
        for run in parse_moof(moof)? {
            if run.samples.is_empty() {
                continue;
            }
            let size: u64 = run.samples.iter().map(|s| u64::from(s.size)).sum();
            let start = run.data_offset.checked_sub(payload_start);
            let start = start
                .filter(|s| s + size <= mdat_payload)
                .ok_or(Fmp4Error::Malformed { what: "trun: data outside the mdat that follows the moof" })?;
            let table = match self.tracks.iter_mut().position(|t| t.track_id == run.track_id) {
                Some(i) => &mut self.tracks[i],
                None => {
                    self.tracks.push(TrackTable { track_id: run.track_id, ..TrackTable::default() });
                    self.tracks.last_mut().expect("just pushed")
                }
            };
            let samples = u32::try_from(run.samples.len()).map_err(|_| Fmp4Error::Malformed { what: "trun" })?;
            table.chunks.push(Chunk { offset: self.payload_len + start, samples });
            table.samples.extend_from_slice(&run.samples);
        }
        self.payload_len += mdat_payload;
        Ok(())
    }

    /// The tables gathered, and the length of the combined `mdat` payload.
    pub fn finish(self) -> (Vec<TrackTable>, u64) {
        (self.tracks, self.payload_len)
    }
}

/// Builds the head of a progressive MP4: `ftyp`, `moov` (from `init`, the fragmented file's
/// initialization segment, with `tables` as sample tables, durations set and `mvex` left
/// out) and the header of an `mdat` of `payload_len` bytes. The media data follows it:
/// chunk offsets are shifted by the head's length.
///
/// Tracks of `init` without a table get empty tables. Fails when `init` lacks `moov` or one of
/// the boxes rewritten, or a table names a track `init` does not have.
pub fn progressive_head(init: &[u8], tables: &[TrackTable], payload_len: u64) -> Result<Vec<u8>, Fmp4Error> {
    let moov = find(init, b"moov").ok_or(Fmp4Error::Malformed { what: "initialization segment: no moov" })?;
    let moov = moov.payload(init);
    for t in tables {
        if track_ids(moov)?.iter().all(|&id| id != t.track_id) {
            return Err(Fmp4Error::UnknownTrack(t.track_id));
        }
    }
    let ftyp = ftyp(init);
    // co64 entries have a fixed size, so the head's length does not depend on the shift.
    let probe = build_moov(moov, tables, 0)?;
    let shift = (ftyp.len() + probe.len()) as u64 + MDAT_HEADER;
    let mut out = ftyp;
    out.extend_from_slice(&build_moov(moov, tables, shift)?);
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(b"mdat");
    out.extend_from_slice(&(MDAT_HEADER + payload_len).to_be_bytes());
    Ok(out)
}

/// `ftyp` of a plain ISO MP4; `av01` kept when the fragmented file had it.
fn ftyp(init: &[u8]) -> Vec<u8> {
    let av1 = find(init, b"ftyp").is_some_and(|b| b.payload(init).chunks(4).any(|c| c == b"av01"));
    let mut w = BoxWriter::with_capacity(32);
    w.boxed(b"ftyp", |w| {
        w.bytes(b"isom");
        w.u32(0x200);
        w.bytes(b"isom");
        w.bytes(b"iso2");
        w.bytes(b"mp41");
        if av1 {
            w.bytes(b"av01");
        }
    });
    w.into_inner()
}

fn track_ids(moov: &[u8]) -> Result<Vec<u32>, Fmp4Error> {
    let mut ids = Vec::new();
    for b in boxes(moov) {
        let b = b?;
        if &b.kind == b"trak" {
            let trak = b.payload(moov);
            let tkhd = find(trak, b"tkhd").ok_or(Fmp4Error::Malformed { what: "trak: no tkhd" })?;
            ids.push(TimedHeader::parse(tkhd.payload(trak), Timed::Tkhd)?.id_or_timescale);
        }
    }
    Ok(ids)
}

/// The `moov` with sample tables, chunk offsets shifted by `shift`.
fn build_moov(moov: &[u8], tables: &[TrackTable], shift: u64) -> Result<Vec<u8>, Fmp4Error> {
    let mvhd = find(moov, b"mvhd").ok_or(Fmp4Error::Malformed { what: "moov: no mvhd" })?;
    let mvhd = TimedHeader::parse(mvhd.payload(moov), Timed::Mvhd)?;
    let movie_timescale = u64::from(mvhd.id_or_timescale.max(1));
    let mut traks = Vec::new();
    let mut movie_duration = 0;
    for b in boxes(moov) {
        let b = b?;
        if &b.kind != b"trak" {
            continue;
        }
        let trak = b.payload(moov);
        let (bytes, duration) = build_trak(trak, tables, shift, movie_timescale)?;
        movie_duration = movie_duration.max(duration);
        traks.push(bytes);
    }
    let mut traks = traks.into_iter();
    let mut w = BoxWriter::with_capacity(moov.len() + 64 * tables.iter().map(|t| t.samples.len()).sum::<usize>());
    w.boxed(b"moov", |w| {
        for b in boxes(moov).map_while(Result::ok) {
            match &b.kind {
                b"mvhd" => mvhd.write(w, b"mvhd", movie_duration),
                b"trak" => {
                    if let Some(t) = traks.next() {
                        w.bytes(&t);
                    }
                }
                // Fragments are gone: nothing extends the movie any more.
                b"mvex" => {}
                _ => w.bytes(&moov[b.offset..b.end()]),
            }
        }
    });
    Ok(w.into_inner())
}

/// One `trak` with its sample tables; also returns its duration in the movie timescale.
fn build_trak(
    trak: &[u8],
    tables: &[TrackTable],
    shift: u64,
    movie_timescale: u64,
) -> Result<(Vec<u8>, u64), Fmp4Error> {
    let tkhd = find(trak, b"tkhd").ok_or(Fmp4Error::Malformed { what: "trak: no tkhd" })?;
    let tkhd = TimedHeader::parse(tkhd.payload(trak), Timed::Tkhd)?;
    let mdia = find(trak, b"mdia").ok_or(Fmp4Error::Malformed { what: "trak: no mdia" })?.payload(trak);
    let mdhd = find(mdia, b"mdhd").ok_or(Fmp4Error::Malformed { what: "mdia: no mdhd" })?;
    let mdhd = TimedHeader::parse(mdhd.payload(mdia), Timed::Mdhd)?;
    let minf = find(mdia, b"minf").ok_or(Fmp4Error::Malformed { what: "mdia: no minf" })?.payload(mdia);
    let stbl = find(minf, b"stbl").ok_or(Fmp4Error::Malformed { what: "minf: no stbl" })?.payload(minf);
    let stsd = find(stbl, b"stsd").ok_or(Fmp4Error::Malformed { what: "stbl: no stsd" })?;
    let stsd = &stbl[stsd.offset..stsd.end()];

    let empty = TrackTable::default();
    let table = tables.iter().find(|t| t.track_id == tkhd.id_or_timescale).unwrap_or(&empty);
    let media_duration = table.duration();
    let media_timescale = u64::from(mdhd.id_or_timescale.max(1));
    let movie_duration =
        (u128::from(media_duration) * u128::from(movie_timescale) / u128::from(media_timescale)) as u64;

    let mut w = BoxWriter::with_capacity(trak.len() + 32 * table.samples.len());
    w.boxed(b"trak", |w| {
        for b in boxes(trak).map_while(Result::ok) {
            match &b.kind {
                b"tkhd" => tkhd.write(w, b"tkhd", movie_duration),
                b"mdia" => w.boxed(b"mdia", |w| {
                    for c in boxes(mdia).map_while(Result::ok) {
                        match &c.kind {
                            b"mdhd" => mdhd.write(w, b"mdhd", media_duration),
                            b"minf" => w.boxed(b"minf", |w| {
                                for d in boxes(minf).map_while(Result::ok) {
                                    if &d.kind == b"stbl" {
                                        w.boxed(b"stbl", |w| {
                                            w.bytes(stsd);
                                            write_tables(w, table, shift);
                                        });
                                    } else {
                                        w.bytes(&minf[d.offset..d.end()]);
                                    }
                                }
                            }),
                            _ => w.bytes(&mdia[c.offset..c.end()]),
                        }
                    }
                }),
                _ => w.bytes(&trak[b.offset..b.end()]),
            }
        }
    });
    Ok((w.into_inner(), movie_duration))
}

/// `stts`, `ctts` (when any offset is not 0), `stss` (when not every sample is a sync
/// sample), `stsz`, `stsc` and `co64`.
fn write_tables(w: &mut BoxWriter, t: &TrackTable, shift: u64) {
    let runs = run_lengths(t.samples.iter().map(|s| s.duration));
    w.full(b"stts", 0, 0, |w| {
        w.u32(runs.len() as u32);
        for (count, duration) in &runs {
            w.u32(*count);
            w.u32(*duration);
        }
    });
    if t.samples.iter().any(|s| s.cts_offset != 0) {
        let runs = run_lengths(t.samples.iter().map(|s| s.cts_offset));
        w.full(b"ctts", 1, 0, |w| {
            w.u32(runs.len() as u32);
            for (count, offset) in &runs {
                w.u32(*count);
                w.i32(*offset);
            }
        });
    }
    if !t.samples.iter().all(SampleInfo::is_sync) {
        let sync: Vec<u32> = (1..).zip(&t.samples).filter(|(_, s)| s.is_sync()).map(|(i, _)| i).collect();
        w.full(b"stss", 0, 0, |w| {
            w.u32(sync.len() as u32);
            for n in &sync {
                w.u32(*n);
            }
        });
    }
    w.full(b"stsz", 0, 0, |w| {
        w.u32(0); // sample_size: each sample has its own
        w.u32(t.samples.len() as u32);
        for s in &t.samples {
            w.u32(s.size);
        }
    });
    let mut stsc: Vec<(u32, u32)> = Vec::new();
    for (n, c) in (1..).zip(&t.chunks) {
        if stsc.last().is_none_or(|(_, per)| *per != c.samples) {
            stsc.push((n, c.samples));
        }
    }
    w.full(b"stsc", 0, 0, |w| {
        w.u32(stsc.len() as u32);
        for (first, per) in &stsc {
            w.u32(*first);
            w.u32(*per);
            w.u32(1); // sample_description_index
        }
    });
    w.full(b"co64", 0, 0, |w| {
        w.u32(t.chunks.len() as u32);
        for c in &t.chunks {
            w.u64(shift + c.offset);
        }
    });
}

/// Consecutive equal values as (count, value).
fn run_lengths<T: PartialEq + Copy>(values: impl Iterator<Item = T>) -> Vec<(u32, T)> {
    let mut out: Vec<(u32, T)> = Vec::new();
    for v in values {
        match out.last_mut() {
            Some((n, last)) if *last == v => *n += 1,
            _ => out.push((1, v)),
        }
    }
    out
}

/// The headers whose duration is rewritten; they share a layout up to the duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timed {
    /// creation, modification, timescale, duration.
    Mvhd,
    /// creation, modification, track_ID, reserved, duration.
    Tkhd,
    /// as `mvhd`.
    Mdhd,
}

/// A `mvhd`, `tkhd` or `mdhd` taken apart around its duration.
#[derive(Debug, Clone)]
struct TimedHeader<'a> {
    flags: u32,
    creation: u64,
    modification: u64,
    /// The timescale (`mvhd`, `mdhd`) or the track id (`tkhd`).
    id_or_timescale: u32,
    kind: Timed,
    /// Everything after the duration.
    rest: &'a [u8],
}

impl<'a> TimedHeader<'a> {
    fn parse(p: &'a [u8], kind: Timed) -> Result<Self, Fmp4Error> {
        let what = match kind {
            Timed::Mvhd => "mvhd",
            Timed::Tkhd => "tkhd",
            Timed::Mdhd => "mdhd",
        };
        let bad = Fmp4Error::Malformed { what };
        let head = p.get(..4).ok_or(bad.clone())?;
        let (version, flags) = (head[0], u32::from_be_bytes([0, head[1], head[2], head[3]]));
        let wide = version == 1;
        let time_len = if wide { 8 } else { 4 };
        let read = |at: usize, len: usize| -> Result<u64, Fmp4Error> {
            let b = p.get(at..at + len).ok_or(bad.clone())?;
            Ok(b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x)))
        };
        let creation = read(4, time_len)?;
        let modification = read(4 + time_len, time_len)?;
        let id_at = 4 + 2 * time_len;
        let id_or_timescale = read(id_at, 4)? as u32;
        let duration_at = id_at + if kind == Timed::Tkhd { 8 } else { 4 };
        let rest = p.get(duration_at + time_len..).ok_or(bad)?;
        Ok(TimedHeader { flags, creation, modification, id_or_timescale, kind, rest })
    }

    /// Writes the header as version 1 (64-bit times) with `duration`.
    fn write(&self, w: &mut BoxWriter, kind: &FourCc, duration: u64) {
        w.full(kind, 1, self.flags, |w| {
            w.u64(self.creation);
            w.u64(self.modification);
            w.u32(self.id_or_timescale);
            if self.kind == Timed::Tkhd {
                w.u32(0); // reserved
            }
            w.u64(duration);
            w.bytes(self.rest);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::{fragment, Sample, TrackRun};
    use crate::init::{init_segment, Codec, TrackInfo};
    use bytes::Bytes;

    fn tracks() -> Vec<TrackInfo> {
        let avcc = Bytes::from_static(&[1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 4, 0x67, 0x64, 0, 0x1F, 1, 0, 2, 0x68, 0xEE]);
        vec![
            TrackInfo { id: 1, timescale: 1000, codec: Codec::Avc { avcc, width: 64, height: 48 } },
            TrackInfo {
                id: 2,
                timescale: 44_100,
                codec: Codec::Aac { asc: Bytes::from_static(&[0x12, 0x10]), sample_rate: 44_100, channels: 2 },
            },
        ]
    }

    /// A fragmented file: init, then `n` fragments of 2 video and 3 audio samples each, the
    /// sample bytes numbering them.
    fn fragmented(n: u32) -> Vec<u8> {
        let mut file = init_segment(&tracks()).unwrap();
        let mut k = 0u8;
        let mut next = |len: usize| {
            k += 1;
            Bytes::from(vec![k; len])
        };
        for f in 0..n {
            let video = [
                Sample { duration: 40, keyframe: true, cts_offset: 40, data: next(10) },
                Sample { duration: 40, keyframe: false, cts_offset: 0, data: next(5) },
            ];
            let audio: Vec<Sample> =
                (0..3).map(|_| Sample { duration: 1024, keyframe: true, cts_offset: 0, data: next(3) }).collect();
            let runs = [
                TrackRun { track_id: 1, base_decode_time: u64::from(f) * 80, samples: &video },
                TrackRun { track_id: 2, base_decode_time: u64::from(f) * 3072, samples: &audio },
            ];
            file.extend(fragment(f + 1, &runs).unwrap());
        }
        file
    }

    /// Converts the way a recorder does: tables from the moofs, payloads copied in order.
    fn convert(file: &[u8]) -> Vec<u8> {
        let mut b = TableBuilder::new();
        let mut payload = Vec::new();
        let mut init_end = 0;
        let list: Vec<_> = boxes(file).map(|b| b.unwrap()).collect();
        for (i, bx) in list.iter().enumerate() {
            match &bx.kind {
                b"moof" => {
                    let mdat = list[i + 1];
                    b.add_fragment(&file[bx.offset..bx.end()], 8, (mdat.size - 8) as u64).unwrap();
                    payload.extend_from_slice(mdat.payload(file));
                }
                b"ftyp" | b"moov" => init_end = bx.end(),
                _ => {}
            }
        }
        let (tables, len) = b.finish();
        let mut out = progressive_head(&file[..init_end], &tables, len).unwrap();
        out.extend_from_slice(&payload);
        out
    }

    fn at<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> &'a [u8] {
        let mut cur = data;
        for kind in path {
            cur = find(cur, kind).unwrap_or_else(|| panic!("no {}", String::from_utf8_lossy(*kind))).payload(cur);
        }
        cur
    }

    fn u32s(p: &[u8]) -> Vec<u32> {
        p.chunks(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect()
    }

    #[test]
    fn moov_comes_first_with_full_tables() {
        let out = convert(&fragmented(3));
        let kinds: Vec<_> = boxes(&out).map(|b| b.unwrap().kind).collect();
        assert_eq!(kinds, [*b"ftyp", *b"moov", *b"mdat"]);
        let moov = at(&out, &[b"moov"]);
        assert!(find(moov, b"mvex").is_none());
        let mvhd = at(&out, &[b"moov", b"mvhd"]);
        assert_eq!(mvhd[0], 1, "version 1");
        assert_eq!(u64::from_be_bytes(mvhd[24..32].try_into().unwrap()), 240, "3 x 80 ms");
        let stbl = at(moov, &[b"trak", b"mdia", b"minf", b"stbl"]);
        let kinds: Vec<_> = boxes(stbl).map(|b| b.unwrap().kind).collect();
        assert_eq!(kinds, [*b"stsd", *b"stts", *b"ctts", *b"stss", *b"stsz", *b"stsc", *b"co64"]);
        assert_eq!(u32s(at(stbl, &[b"stts"])), [0, 1, 6, 40]);
        assert_eq!(u32s(at(stbl, &[b"ctts"])), [1 << 24, 6, 1, 40, 1, 0, 1, 40, 1, 0, 1, 40, 1, 0]);
        assert_eq!(u32s(at(stbl, &[b"stss"])), [0, 3, 1, 3, 5]);
        assert_eq!(u32s(at(stbl, &[b"stsc"])), [0, 1, 1, 2, 1]);
        let mdhd = at(moov, &[b"trak", b"mdia", b"mdhd"]);
        assert_eq!(u64::from_be_bytes(mdhd[24..32].try_into().unwrap()), 240);
    }

    #[test]
    fn chunk_offsets_point_at_the_samples() {
        let out = convert(&fragmented(4));
        let moov = at(&out, &[b"moov"]);
        let mut seen = Vec::new();
        for trak in boxes(moov).map(|b| b.unwrap()).filter(|b| &b.kind == b"trak") {
            let stbl = at(trak.payload(moov), &[b"mdia", b"minf", b"stbl"]);
            let sizes = &u32s(at(stbl, &[b"stsz"]))[3..];
            let co64 = at(stbl, &[b"co64"]);
            let per_chunk = u32s(at(stbl, &[b"stsc"]))[3] as usize;
            let mut n = 0;
            for c in co64[8..].chunks(8) {
                let mut pos = u64::from_be_bytes(c.try_into().unwrap()) as usize;
                for size in &sizes[n..n + per_chunk] {
                    seen.push(out[pos]);
                    assert!(out[pos..pos + *size as usize].iter().all(|&b| b == out[pos]), "one sample");
                    pos += *size as usize;
                }
                n += per_chunk;
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=20).collect::<Vec<u8>>(), "every sample found exactly once");
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(
            progressive_head(b"", &[], 0),
            Err(Fmp4Error::Malformed { what: "initialization segment: no moov" })
        );
        let init = init_segment(&tracks()).unwrap();
        let t = TrackTable { track_id: 9, ..TrackTable::default() };
        assert_eq!(progressive_head(&init, &[t], 0), Err(Fmp4Error::UnknownTrack(9)));
        let file = fragmented(1);
        let moof = boxes(&file).map(|b| b.unwrap()).find(|b| &b.kind == b"moof").unwrap();
        let mut b = TableBuilder::new();
        assert!(b.add_fragment(&file[moof.offset..moof.end()], 8, 3).is_err(), "payload shorter than the samples");
    }
}

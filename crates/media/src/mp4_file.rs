//! MP4 files: the top-level boxes are walked by their headers; `moov` is read whole wherever it
//! is (start or end), each `moof` too. Sample tables (`stts`, `ctts`, `stss`, `stsz`/`stz2`,
//! `stsc`, `stco`/`co64`) and fragments (`tfhd`, `tfdt`, `trun`, with `trex` defaults) become
//! one [`Sample`] list in decode order. Codec configuration comes from the sample entry's
//! `avcC`, `hvcC`, `av1C`, `esds` (AAC; MP3 as object type 0x6B or 0x69, or a `.mp3` entry)
//! or `dOps` (Opus, made into the `OpusHead` Enhanced RTMP sends).
//! Defined by: ISO/IEC 14496-12 (8.2.2 mvhd, 8.4.2 mdhd, 8.4.3 hdlr, 8.5.2 stsd, 8.6.1.2
//! stts, 8.6.1.3 ctts, 8.6.2 stss, 8.7.3 stsz/stz2, 8.7.4 stsc, 8.7.5 stco/co64, 8.8.3 trex,
//! 8.8.4-8.8.8 moof/tfhd/trun, 8.8.12 tfdt), ISO/IEC 14496-14 (esds), ISO/IEC 14496-15 (avcC,
//! hvcC), AV1 ISOBMFF binding (av1C), Opus in ISOBMFF (dOps), RFC 7845 5.1 (OpusHead).

use fmp4::reader::{boxes, find, BoxRef};

use crate::{
    aac_header, metadata, mp3_tag_header, opus_header, read_exact, to_ms, video_header, Codec, Format, Kind, Media,
    MediaError, ReadAt, Sample, Tracks, MAX_BOX, MAX_HEADER, MAX_ITEMS, MAX_SAMPLES,
};

/// Whether `head` (the first 8+ bytes) starts like an MP4 file.
pub(crate) fn is_mp4(head: &[u8]) -> bool {
    matches!(&head[4..8], b"ftyp" | b"moov" | b"free" | b"mdat" | b"skip" | b"wide" | b"styp")
}

/// One track of `moov` as far as playing goes.
#[derive(Debug, Clone)]
struct Track {
    id: u32,
    kind: Kind,
    codec: Codec,
    timescale: u32,
    config: Vec<u8>,
    width: u16,
    height: u16,
    /// `trex` defaults: duration, size, flags.
    trex: (u32, u32, u32),
    /// Decode time where its next fragment's samples start, when `tfdt` is missing.
    next_dts: u64,
    /// What its edit list (`elst`) moves its times by, in milliseconds.
    shift_ms: i64,
}

/// A top-level box: where, how long, its header size.
struct Top {
    kind: [u8; 4],
    offset: u64,
    size: u64,
    header: u64,
}

pub(crate) fn open(r: &mut dyn ReadAt, chosen: Tracks) -> Result<Media, MediaError> {
    let tops = top_boxes(r)?;
    let moov_box = tops.iter().find(|b| &b.kind == b"moov").ok_or(MediaError::Malformed("no moov"))?;
    let moov = read_box(r, moov_box)?;
    let moov_body = body(&moov);
    let movie_timescale = find(moov_body, b"mvhd").map(|b| mvhd(b.payload(moov_body))).transpose()?;
    let mut tracks = Vec::new();
    let mut samples: Vec<(Sample, u64)> = Vec::new();
    // Audio and video tracks seen so far, by their handler.
    let mut seen = (0usize, 0usize);
    for b in boxes(moov_body) {
        let b = b.map_err(|_| MediaError::Malformed("moov"))?;
        if &b.kind == b"trak" {
            // The first video and the first audio track of a codec played play, or the ones
            // `chosen` names (nginx-rtmp's `aindex`, `vindex`); the others are left out.
            if !is_chosen(b.payload(moov_body), chosen, &mut seen) {
                continue;
            }
            let movie_scale = movie_timescale.map_or(1000, |(scale, _)| scale);
            let Some((track, table)) = trak(b.payload(moov_body), tracks.len() as u8, movie_scale)? else { continue };
            if tracks.iter().all(|t: &Track| t.kind != track.kind) {
                tracks.push(track);
                add(&mut samples, table)?;
            }
        }
    }
    if let Some(mvex) = find(moov_body, b"mvex") {
        trex(mvex.payload(moov_body), &mut tracks);
    }
    let mut fragmented = false;
    for top in tops.iter().filter(|b| &b.kind == b"moof") {
        fragmented = true;
        let moof = read_box(r, top)?;
        let found = moof_samples(&moof, top.offset, &mut tracks)?;
        add(&mut samples, found)?;
    }
    if tracks.is_empty() {
        return Err(MediaError::Unsupported("no H.264, HEVC, AV1, AAC, MP3 or Opus track"));
    }
    let start_ms = apply_edits(&mut samples, &tracks);
    // Decode order across tracks; a stable sort keeps each track's own order.
    samples.sort_by_key(|(s, _)| s.dts);
    let end = samples.iter().map(|(_, end)| *end).max().unwrap_or(0);
    let declared = movie_timescale.map_or(0, |(scale, duration)| u64::from(to_ms(duration, scale)));
    let duration_ms = if declared > 0 && !fragmented { declared } else { end };
    let headers = headers(&tracks, duration_ms);
    Ok(Media {
        format: if fragmented { Format::FragmentedMp4 } else { Format::Mp4 },
        duration_ms,
        start_ms,
        headers,
        codecs: tracks.iter().map(|t| (t.kind, t.codec)).collect(),
        samples: samples.into_iter().map(|(s, _)| s).collect(),
    })
}

/// Whether the `trak` (`p`) is the audio or video track `chosen` names, counting it in `seen`
/// (audio, video) by its handler; a kind `chosen` does not name takes any track.
fn is_chosen(p: &[u8], chosen: Tracks, seen: &mut (usize, usize)) -> bool {
    let handler = child(p, b"mdia").and_then(|m| child(m, b"hdlr")).and_then(|h| h.get(8..12));
    let (count, wanted) = match handler {
        Some(b"soun") => (&mut seen.0, chosen.audio),
        Some(b"vide") => (&mut seen.1, chosen.video),
        _ => return chosen == Tracks::default(),
    };
    let index = *count;
    *count += 1;
    wanted.is_none_or(|n| usize::from(n) == index)
}

/// Each track's edit list shift applied to its samples, then every time moved so the earliest
/// decode time is 0: B-frame video, whose edit starts it a frame or two into its media, would
/// otherwise start before 0, which RTMP timestamps cannot say. Tracks keep their distance, so
/// audio and video stay in sync (AAC priming, cut by its own edit, included). Returns where
/// the file's time 0 ends up ([`Media::start_ms`]).
fn apply_edits(samples: &mut [(Sample, u64)], tracks: &[Track]) -> u64 {
    let shift = |s: &Sample| tracks.get(usize::from(s.track)).map_or(0, |t| t.shift_ms);
    if tracks.iter().all(|t| t.shift_ms == 0) {
        return 0;
    }
    // Saturating: a hostile edit list may say anything.
    let earliest = samples.iter().map(|(s, _)| i64::from(s.dts).saturating_add(shift(s))).min().unwrap_or(0);
    let base = earliest.min(0);
    for (s, end) in samples.iter_mut() {
        let by = shift(s).saturating_sub(base);
        s.dts = i64::from(s.dts).saturating_add(by).clamp(0, i64::from(u32::MAX)) as u32;
        *end = u64::try_from((*end as i64).saturating_add(by)).unwrap_or(0);
    }
    base.unsigned_abs()
}

/// `edts`/`elst` of a `trak`: how far its edits move its media, in milliseconds. Empty edits
/// (media time -1) delay it by their duration (movie timescale); the first media edit's
/// `media_time` (media timescale) is where its presentation starts. Later edits are not played.
fn edit_shift(trak: &[u8], movie_scale: u32, media_scale: u32) -> Result<i64, MediaError> {
    let Some(elst) = child(trak, b"edts").and_then(|e| child(e, b"elst")) else { return Ok(0) };
    let ms = |v: i64, scale: u32| v.saturating_mul(1000) / i64::from(scale.max(1));
    let mut c = Cursor::new(elst, "elst");
    let version = c.u32()? >> 24;
    let count = c.count(if version == 1 { 20 } else { 12 })?;
    let mut delay = 0i64;
    for _ in 0..count {
        let (duration, media_time) = if version == 1 {
            (c.u64()?.min(i64::MAX as u64) as i64, c.u64()? as i64)
        } else {
            (i64::from(c.u32()?), i64::from(c.u32()? as i32))
        };
        c.skip(4)?;
        if media_time == -1 {
            delay = delay.saturating_add(ms(duration, movie_scale));
            continue;
        }
        return Ok(delay.saturating_sub(ms(media_time, media_scale)));
    }
    Ok(delay)
}

fn add(all: &mut Vec<(Sample, u64)>, more: Vec<(Sample, u64)>) -> Result<(), MediaError> {
    if all.len() + more.len() > MAX_SAMPLES {
        return Err(MediaError::TooLarge("samples"));
    }
    all.extend(more);
    Ok(())
}

/// `onMetaData` and the sequence headers.
fn headers(tracks: &[Track], duration_ms: u64) -> Vec<(Kind, bytes::Bytes)> {
    let mut props = vec![("duration", amf0::Value::Number(duration_ms as f64 / 1000.0))];
    if let Some(v) = tracks.iter().find(|t| t.kind == Kind::Video) {
        props.push(("width", amf0::Value::Number(f64::from(v.width))));
        props.push(("height", amf0::Value::Number(f64::from(v.height))));
        let id = match v.codec {
            Codec::Avc => 7.0,
            Codec::Hevc => f64::from(u32::from_be_bytes(*b"hvc1")),
            _ => f64::from(u32::from_be_bytes(*b"av01")),
        };
        props.push(("videocodecid", amf0::Value::Number(id)));
    }
    if let Some(a) = tracks.iter().find(|t| t.kind == Kind::Audio) {
        let id = match a.codec {
            Codec::Mp3 { .. } => 2.0,
            Codec::Opus => f64::from(u32::from_be_bytes(*b"Opus")),
            _ => 10.0,
        };
        props.push(("audiocodecid", amf0::Value::Number(id)));
    }
    let mut out = vec![(Kind::Data, metadata(props))];
    for t in tracks {
        let body = match (t.kind, t.codec) {
            (Kind::Video, _) => video_header(t.codec, &t.config),
            (_, Codec::Opus) => opus_header(&t.config),
            // MP3 has no sequence header: every frame says what it is.
            (_, Codec::Mp3 { .. }) => continue,
            _ => aac_header(&t.config),
        };
        out.push((t.kind, body));
    }
    out
}

/// The file's top-level boxes, by their headers only.
fn top_boxes(r: &mut dyn ReadAt) -> Result<Vec<Top>, MediaError> {
    let size = r.size();
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos + 8 <= size {
        if out.len() >= MAX_ITEMS {
            return Err(MediaError::TooLarge("top-level boxes"));
        }
        let h = read_exact(r, pos, 16.min((size - pos) as usize), "box header")?;
        let small = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
        let kind = [h[4], h[5], h[6], h[7]];
        let (len, header) = match small {
            0 => (size - pos, 8),
            1 if h.len() >= 16 => (u64::from_be_bytes(h[8..16].try_into().unwrap_or_default()), 16),
            1 => return Err(MediaError::Malformed("box header")),
            n => (n, 8),
        };
        if len < header {
            return Err(MediaError::Malformed("box size smaller than its header"));
        }
        // A box cut short by the end of the file (an interrupted recording) ends the walk; the
        // samples it would hold are not indexed.
        if len > size - pos {
            break;
        }
        out.push(Top { kind, offset: pos, size: len, header });
        pos += len;
    }
    Ok(out)
}

/// A whole box (header included), within [`MAX_BOX`].
fn read_box(r: &mut dyn ReadAt, b: &Top) -> Result<Vec<u8>, MediaError> {
    if b.size > MAX_BOX {
        return Err(MediaError::TooLarge("moov or moof box"));
    }
    let mut data = read_exact(r, b.offset, b.size as usize, "box")?;
    if b.header == 16 {
        // Rewrite a largesize header as a plain one: the box is under 4 GiB here.
        data.drain(8..16);
        let len = (b.size - 8) as u32;
        data[0..4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(data)
}

/// The body of a box held whole.
fn body(data: &[u8]) -> &[u8] {
    data.get(8..).unwrap_or_default()
}

/// Big-endian fields of a box body.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8], what: &'static str) -> Self {
        Cursor { data, pos: 0, what }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], MediaError> {
        let end = self.pos.checked_add(n).ok_or(MediaError::Malformed(self.what))?;
        let b = self.data.get(self.pos..end).ok_or(MediaError::Malformed(self.what))?;
        self.pos = end;
        Ok(b)
    }

    fn u8(&mut self) -> Result<u8, MediaError> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, MediaError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, MediaError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, MediaError> {
        let b = self.bytes(8)?;
        Ok(u64::from_be_bytes(b.try_into().unwrap_or_default()))
    }

    fn skip(&mut self, n: usize) -> Result<(), MediaError> {
        self.bytes(n).map(|_| ())
    }

    fn rest(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// A table's entry count, refused when the box cannot hold that many `entry`-byte entries.
    fn count(&mut self, entry: usize) -> Result<usize, MediaError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(entry) > self.rest() {
            return Err(MediaError::Malformed(self.what));
        }
        Ok(n)
    }
}

/// `mvhd`: timescale and duration.
fn mvhd(p: &[u8]) -> Result<(u32, u64), MediaError> {
    let mut c = Cursor::new(p, "mvhd");
    let version = c.u32()? >> 24;
    if version == 1 {
        c.skip(16)?;
        Ok((c.u32()?, c.u64()?))
    } else {
        c.skip(8)?;
        Ok((c.u32()?, u64::from(c.u32()?)))
    }
}

/// The child `kind` of `data`'s boxes, as a payload.
fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    find(data, kind).map(|b: BoxRef| b.payload(data))
}

/// A track we play, with its samples and where each ends (ms); `None` for other tracks.
type TrackTable = (Track, Vec<(Sample, u64)>);

fn trak(p: &[u8], index: u8, movie_scale: u32) -> Result<Option<TrackTable>, MediaError> {
    let tkhd = child(p, b"tkhd").ok_or(MediaError::Malformed("trak: no tkhd"))?;
    let mut c = Cursor::new(tkhd, "tkhd");
    let version = c.u32()? >> 24;
    c.skip(if version == 1 { 16 } else { 8 })?;
    let id = c.u32()?;
    let mdia = child(p, b"mdia").ok_or(MediaError::Malformed("trak: no mdia"))?;
    let mdhd = child(mdia, b"mdhd").ok_or(MediaError::Malformed("mdia: no mdhd"))?;
    let (timescale, _) = mvhd(mdhd)?;
    if timescale == 0 {
        return Err(MediaError::Malformed("mdhd: timescale 0"));
    }
    let stbl = child(mdia, b"minf").and_then(|m| child(m, b"stbl")).ok_or(MediaError::Malformed("no stbl"))?;
    let stsd = child(stbl, b"stsd").ok_or(MediaError::Malformed("stbl: no stsd"))?;
    let entry = match sample_entry(stsd) {
        Ok(Some(entry)) => entry,
        Ok(None) | Err(MediaError::Unsupported(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let (kind, codec, config, width, height) = entry;
    if index as usize >= u8::MAX as usize {
        return Err(MediaError::TooLarge("tracks"));
    }
    let shift_ms = edit_shift(p, movie_scale, timescale)?;
    let track = Track { id, kind, codec, timescale, config, width, height, trex: (0, 0, 0), next_dts: 0, shift_ms };
    let table = sample_table(stbl, &track, index)?;
    Ok(Some((track, table)))
}

/// The first sample entry of `stsd`: kind, codec, configuration record, video size.
type Entry = (Kind, Codec, Vec<u8>, u16, u16);

fn sample_entry(stsd: &[u8]) -> Result<Option<Entry>, MediaError> {
    let entries = stsd.get(8..).ok_or(MediaError::Malformed("stsd"))?;
    let Some(Ok(e)) = boxes(entries).next() else { return Err(MediaError::Malformed("stsd entry")) };
    let p = e.payload(entries);
    let video = |codec: Codec, record: &[u8; 4]| -> Result<Option<Entry>, MediaError> {
        // SampleEntry (8) + VisualSampleEntry fields (70), then child boxes.
        let mut c = Cursor::new(p, "visual sample entry");
        c.skip(24)?;
        let (w, h) = (c.u16()?, c.u16()?);
        let children = p.get(78..).ok_or(MediaError::Malformed("visual sample entry"))?;
        let config = child(children, record).ok_or(MediaError::Unsupported("video without its configuration"))?;
        check_header(config)?;
        Ok(Some((Kind::Video, codec, config.to_vec(), w, h)))
    };
    match &e.kind {
        b"avc1" | b"avc3" => video(Codec::Avc, b"avcC"),
        b"hvc1" | b"hev1" => video(Codec::Hevc, b"hvcC"),
        b"av01" => video(Codec::Av1, b"av1C"),
        b"mp4a" | b".mp3" | b"Opus" => audio_entry(&e.kind, p),
        _ => Ok(None),
    }
}

/// An audio sample entry (`p`, its payload) of type `kind`.
fn audio_entry(kind: &[u8; 4], p: &[u8]) -> Result<Option<Entry>, MediaError> {
    // SampleEntry (8), then version, revision, vendor, channels, sample size, compression id,
    // packet size and the 16.16 rate (QuickTime version 1 and 2 entries add fields after).
    let mut c = Cursor::new(p, "audio sample entry");
    c.skip(8)?;
    let version = c.u16()?;
    c.skip(6)?;
    let channels = c.u16()?;
    c.skip(6)?;
    let rate = c.u32()? >> 16;
    let skip = match version {
        0 => 28,
        1 => 28 + 16,
        2 => 28 + 36,
        _ => return Err(MediaError::Unsupported("audio sample entry version")),
    };
    let children = p.get(skip..).ok_or(MediaError::Malformed("audio sample entry"))?;
    let mp3 = || Ok(Some((Kind::Audio, Codec::Mp3 { header: mp3_tag_header(rate, channels) }, Vec::new(), 0, 0)));
    match kind {
        b".mp3" => mp3(),
        b"Opus" => {
            let dops = child(children, b"dOps").ok_or(MediaError::Unsupported("Opus without dOps"))?;
            Ok(Some((Kind::Audio, Codec::Opus, opus_head(dops)?, 0, 0)))
        }
        _ => {
            let esds = child(children, b"esds").ok_or(MediaError::Unsupported("mp4a without esds"))?;
            match esds_audio(esds)? {
                EsdsAudio::Aac(asc) => Ok(Some((Kind::Audio, Codec::Aac, asc, 0, 0))),
                EsdsAudio::Mp3 => mp3(),
                EsdsAudio::Other => Ok(None),
            }
        }
    }
}

/// `dOps` (OpusSpecificBox, big-endian) as the `OpusHead` identification header (RFC 7845
/// 5.1, little-endian) that Enhanced RTMP's Opus sequence start carries.
fn opus_head(dops: &[u8]) -> Result<Vec<u8>, MediaError> {
    let mut c = Cursor::new(dops, "dOps");
    if c.u8()? != 0 {
        return Err(MediaError::Unsupported("dOps version"));
    }
    let channels = c.u8()?;
    let pre_skip = c.u16()?;
    let rate = c.u32()?;
    let gain = c.u16()?;
    let family = c.u8()?;
    let mut head = b"OpusHead".to_vec();
    head.push(1);
    head.push(channels);
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&rate.to_le_bytes());
    head.extend_from_slice(&gain.to_le_bytes());
    head.push(family);
    if family != 0 {
        // Stream count, coupled count, then one mapping byte per channel: same order.
        let table = c.bytes(2 + usize::from(channels))?;
        head.extend_from_slice(table);
    }
    check_header(&head)?;
    Ok(head)
}

fn check_header(config: &[u8]) -> Result<(), MediaError> {
    if config.len() > MAX_HEADER {
        return Err(MediaError::TooLarge("codec configuration"));
    }
    Ok(())
}

/// What `esds` says its audio is.
enum EsdsAudio {
    /// AAC (object type 0x40) with its AudioSpecificConfig.
    Aac(Vec<u8>),
    /// MPEG-1 (0x6B) or MPEG-2 (0x69) audio: MP3.
    Mp3,
    /// Anything else.
    Other,
}

/// The audio `esds` describes (ES_Descriptor → DecoderConfigDescriptor → for AAC its
/// DecoderSpecificInfo).
fn esds_audio(esds: &[u8]) -> Result<EsdsAudio, MediaError> {
    let mut c = Cursor::new(esds, "esds");
    c.skip(4)?;
    let (tag, _) = descriptor(&mut c)?;
    if tag != 3 {
        return Err(MediaError::Malformed("esds: no ES_Descriptor"));
    }
    c.skip(2)?;
    let flags = c.u8()?;
    if flags & 0x80 != 0 {
        c.skip(2)?;
    }
    if flags & 0x40 != 0 {
        let n = c.u8()?;
        c.skip(n as usize)?;
    }
    if flags & 0x20 != 0 {
        c.skip(2)?;
    }
    let (tag, _) = descriptor(&mut c)?;
    if tag != 4 {
        return Err(MediaError::Malformed("esds: no DecoderConfigDescriptor"));
    }
    match c.u8()? {
        0x40 => {}
        0x6B | 0x69 => return Ok(EsdsAudio::Mp3),
        _ => return Ok(EsdsAudio::Other),
    }
    c.skip(12)?;
    let (tag, len) = descriptor(&mut c)?;
    if tag != 5 {
        return Err(MediaError::Malformed("esds: no DecoderSpecificInfo"));
    }
    let asc = c.bytes(len)?;
    check_header(asc)?;
    Ok(EsdsAudio::Aac(asc.to_vec()))
}

/// A descriptor's tag and length (up to four 7-bit length bytes).
fn descriptor(c: &mut Cursor<'_>) -> Result<(u8, usize), MediaError> {
    let tag = c.u8()?;
    let mut len = 0usize;
    for _ in 0..4 {
        let b = c.u8()?;
        len = len << 7 | usize::from(b & 0x7F);
        if b & 0x80 == 0 {
            break;
        }
    }
    Ok((tag, len))
}

/// Every sample of a `moov` track's tables (none for a fragmented file's empty tables).
fn sample_table(stbl: &[u8], t: &Track, track: u8) -> Result<Vec<(Sample, u64)>, MediaError> {
    let sizes = sample_sizes(stbl)?;
    if sizes.is_empty() {
        return Ok(Vec::new());
    }
    let n = sizes.len();
    let offsets = sample_offsets(stbl, &sizes)?;
    let durations = expand_pairs(child(stbl, b"stts").ok_or(MediaError::Malformed("no stts"))?, n, "stts")?;
    let cts = match child(stbl, b"ctts") {
        Some(ctts) => expand_pairs(ctts, n, "ctts")?,
        None => Vec::new(),
    };
    let sync = match child(stbl, b"stss") {
        Some(stss) => Some(sync_samples(stss, n)?),
        None => None,
    };
    let mut out = Vec::with_capacity(n);
    let mut dts = 0u64;
    for i in 0..n {
        let duration = u64::from(durations.get(i).copied().unwrap_or(0));
        // ctts version 1 offsets are signed; version 0 ones are too in practice (ffmpeg).
        let offset = cts.get(i).map_or(0, |&v| v as i32);
        let keyframe = t.kind == Kind::Video && sync.as_ref().is_none_or(|s| s[i]);
        let sample = Sample {
            offset: offsets[i],
            size: sizes[i],
            dts: to_ms(dts, t.timescale),
            cts: cts_ms(offset, t.timescale),
            keyframe,
            track,
        };
        dts = dts.saturating_add(duration);
        out.push((sample, u64::from(to_ms(dts, t.timescale))));
    }
    Ok(out)
}

fn cts_ms(offset: i32, timescale: u32) -> i32 {
    (i64::from(offset) * 1000 / i64::from(timescale.max(1))) as i32
}

/// `stsz` or `stz2`: every sample's size.
fn sample_sizes(stbl: &[u8]) -> Result<Vec<u32>, MediaError> {
    if let Some(stsz) = child(stbl, b"stsz") {
        let mut c = Cursor::new(stsz, "stsz");
        c.skip(4)?;
        let uniform = c.u32()?;
        let count = c.u32()? as usize;
        if count > MAX_SAMPLES {
            return Err(MediaError::TooLarge("samples"));
        }
        if uniform != 0 {
            return Ok(vec![uniform; count]);
        }
        if count.saturating_mul(4) > c.rest() {
            return Err(MediaError::Malformed("stsz"));
        }
        return (0..count).map(|_| c.u32()).collect();
    }
    let stz2 = child(stbl, b"stz2").ok_or(MediaError::Malformed("no stsz"))?;
    let mut c = Cursor::new(stz2, "stz2");
    c.skip(7)?;
    let field = c.u8()?;
    let count = c.u32()? as usize;
    if count > MAX_SAMPLES || count.saturating_mul(usize::from(field)) / 8 > c.rest() {
        return Err(MediaError::Malformed("stz2"));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        out.push(match field {
            4 => {
                let b = c.data.get(c.pos + i / 2).copied().ok_or(MediaError::Malformed("stz2"))?;
                u32::from(if i % 2 == 0 { b >> 4 } else { b & 0xF })
            }
            8 => u32::from(c.u8()?),
            16 => u32::from(c.u16()?),
            _ => return Err(MediaError::Malformed("stz2 field size")),
        });
    }
    Ok(out)
}

/// `stsc` + `stco`/`co64`: every sample's file offset (`sizes` gives their lengths).
fn sample_offsets(stbl: &[u8], sizes: &[u32]) -> Result<Vec<u64>, MediaError> {
    let n = sizes.len();
    let chunks: Vec<u64> = if let Some(stco) = child(stbl, b"stco") {
        let mut c = Cursor::new(stco, "stco");
        c.skip(4)?;
        let count = c.count(4)?;
        (0..count).map(|_| c.u32().map(u64::from)).collect::<Result<_, _>>()?
    } else {
        let co64 = child(stbl, b"co64").ok_or(MediaError::Malformed("no stco"))?;
        let mut c = Cursor::new(co64, "co64");
        c.skip(4)?;
        let count = c.count(8)?;
        (0..count).map(|_| c.u64()).collect::<Result<_, _>>()?
    };
    let stsc = child(stbl, b"stsc").ok_or(MediaError::Malformed("no stsc"))?;
    let mut c = Cursor::new(stsc, "stsc");
    c.skip(4)?;
    let count = c.count(12)?;
    let mut runs = Vec::with_capacity(count);
    for _ in 0..count {
        let (first, per_chunk) = (c.u32()?, c.u32()?);
        c.skip(4)?;
        runs.push((first.max(1) as usize - 1, per_chunk as usize));
    }
    let mut out = Vec::with_capacity(n);
    for (r, &(first, per_chunk)) in runs.iter().enumerate() {
        let last = runs.get(r + 1).map_or(chunks.len(), |&(next, _)| next.min(chunks.len()));
        for &chunk_offset in chunks.get(first..last).unwrap_or_default() {
            let mut offset = chunk_offset;
            for _ in 0..per_chunk {
                if out.len() == n {
                    return Ok(out);
                }
                out.push(offset);
                offset = offset.saturating_add(u64::from(sizes[out.len() - 1]));
            }
        }
    }
    if out.len() < n {
        return Err(MediaError::Malformed("stsc/stco: fewer sample places than samples"));
    }
    Ok(out)
}

/// `stts` or `ctts` (count, value) pairs expanded to one value per sample, at most `n`.
fn expand_pairs(p: &[u8], n: usize, what: &'static str) -> Result<Vec<u32>, MediaError> {
    let mut c = Cursor::new(p, what);
    c.skip(4)?;
    let count = c.count(8)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..count {
        let (times, value) = (c.u32()? as usize, c.u32()?);
        let take = times.min(n - out.len());
        out.extend(std::iter::repeat_n(value, take));
        if out.len() == n {
            break;
        }
    }
    Ok(out)
}

/// `stss`: which of `n` samples are sync samples.
fn sync_samples(p: &[u8], n: usize) -> Result<Vec<bool>, MediaError> {
    let mut c = Cursor::new(p, "stss");
    c.skip(4)?;
    let count = c.count(4)?;
    let mut out = vec![false; n];
    for _ in 0..count {
        let i = c.u32()? as usize;
        if let Some(s) = i.checked_sub(1).and_then(|i| out.get_mut(i)) {
            *s = true;
        }
    }
    Ok(out)
}

/// `mvex`'s `trex` boxes: each track's fragment defaults.
fn trex(mvex: &[u8], tracks: &mut [Track]) {
    for b in boxes(mvex).flatten() {
        if &b.kind != b"trex" {
            continue;
        }
        let mut c = Cursor::new(b.payload(mvex), "trex");
        let parsed = (|| Ok::<_, MediaError>((c.skip(4)?, c.u32()?, c.skip(4)?, c.u32()?, c.u32()?, c.u32()?)))();
        if let Ok(((), id, (), duration, size, flags)) = parsed {
            if let Some(t) = tracks.iter_mut().find(|t| t.id == id) {
                t.trex = (duration, size, flags);
            }
        }
    }
}

const TFHD_BASE_DATA_OFFSET: u32 = 0x01;
const TFHD_DESCRIPTION_INDEX: u32 = 0x02;
const TFHD_DEFAULT_DURATION: u32 = 0x08;
const TFHD_DEFAULT_SIZE: u32 = 0x10;
const TFHD_DEFAULT_FLAGS: u32 = 0x20;
const TRUN_DATA_OFFSET: u32 = 0x01;
const TRUN_FIRST_FLAGS: u32 = 0x04;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_CTS: u32 = 0x800;
/// `sample_is_non_sync_sample`.
const NON_SYNC: u32 = 0x0001_0000;

/// The samples of one `moof` (held whole, at `moof_offset` in the file).
fn moof_samples(moof: &[u8], moof_offset: u64, tracks: &mut [Track]) -> Result<Vec<(Sample, u64)>, MediaError> {
    let mut out = Vec::new();
    for traf in boxes(body(moof)).flatten().filter(|b| &b.kind == b"traf") {
        let traf = traf.payload(body(moof));
        let tfhd = child(traf, b"tfhd").ok_or(MediaError::Malformed("traf: no tfhd"))?;
        let mut c = Cursor::new(tfhd, "tfhd");
        let flags = c.u32()? & 0xFF_FFFF;
        let id = c.u32()?;
        let Some(index) = tracks.iter().position(|t| t.id == id) else { continue };
        let t = &mut tracks[index];
        let base = if flags & TFHD_BASE_DATA_OFFSET != 0 { c.u64()? } else { moof_offset };
        if flags & TFHD_DESCRIPTION_INDEX != 0 {
            c.skip(4)?;
        }
        let mut defaults = t.trex;
        if flags & TFHD_DEFAULT_DURATION != 0 {
            defaults.0 = c.u32()?;
        }
        if flags & TFHD_DEFAULT_SIZE != 0 {
            defaults.1 = c.u32()?;
        }
        if flags & TFHD_DEFAULT_FLAGS != 0 {
            defaults.2 = c.u32()?;
        }
        if let Some(tfdt) = child(traf, b"tfdt") {
            let mut c = Cursor::new(tfdt, "tfdt");
            let version = c.u32()? >> 24;
            t.next_dts = if version == 1 { c.u64()? } else { u64::from(c.u32()?) };
        }
        // Runs without a data offset continue right after the previous one.
        let mut data_pos = base;
        for run in boxes(traf).flatten().filter(|b| &b.kind == b"trun") {
            let mut c = Cursor::new(run.payload(traf), "trun");
            let head = c.u32()?;
            let (version, tflags) = (head >> 24, head & 0xFF_FFFF);
            let count = c.u32()? as usize;
            if out.len().saturating_add(count) > MAX_SAMPLES {
                return Err(MediaError::TooLarge("samples"));
            }
            if tflags & TRUN_DATA_OFFSET != 0 {
                let off = c.u32()? as i32;
                data_pos = base.checked_add_signed(i64::from(off)).ok_or(MediaError::Malformed("trun offset"))?;
            }
            let first_flags = if tflags & TRUN_FIRST_FLAGS != 0 { Some(c.u32()?) } else { None };
            let per = [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTS].iter().filter(|&&f| tflags & f != 0).count();
            if count.saturating_mul(per * 4) > c.rest() {
                return Err(MediaError::Malformed("trun: more samples than entries"));
            }
            for i in 0..count {
                let duration = if tflags & TRUN_DURATION != 0 { c.u32()? } else { defaults.0 };
                let size = if tflags & TRUN_SIZE != 0 { c.u32()? } else { defaults.1 };
                let sflags = if tflags & TRUN_FLAGS != 0 {
                    c.u32()?
                } else {
                    first_flags.filter(|_| i == 0).unwrap_or(defaults.2)
                };
                let cts = if tflags & TRUN_CTS != 0 {
                    let v = c.u32()?;
                    if version == 0 {
                        i32::try_from(v).unwrap_or(i32::MAX)
                    } else {
                        v as i32
                    }
                } else {
                    0
                };
                let sample = Sample {
                    offset: data_pos,
                    size,
                    dts: to_ms(t.next_dts, t.timescale),
                    cts: cts_ms(cts, t.timescale),
                    keyframe: t.kind == Kind::Video && sflags & NON_SYNC == 0,
                    track: index as u8,
                };
                data_pos = data_pos.saturating_add(u64::from(size));
                t.next_dts = t.next_dts.saturating_add(u64::from(duration));
                out.push((sample, u64::from(to_ms(t.next_dts, t.timescale))));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `trak` body holding only `edts` with an `elst` (version 0) of `entries`.
    fn trak_with_edits(entries: &[(u32, i32)]) -> Vec<u8> {
        let mut elst = vec![0, 0, 0, 0];
        elst.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for (duration, media_time) in entries {
            elst.extend_from_slice(&duration.to_be_bytes());
            elst.extend_from_slice(&media_time.to_be_bytes());
            elst.extend_from_slice(&[0, 1, 0, 0]);
        }
        let wrap = |kind: &[u8; 4], body: &[u8]| {
            let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
            b.extend_from_slice(kind);
            b.extend_from_slice(body);
            b
        };
        wrap(b"edts", &wrap(b"elst", &elst))
    }

    /// An empty edit delays the track; the first media edit's `media_time` moves it back;
    /// later edits and tracks without edits move nothing.
    #[test]
    fn edit_lists_shift_their_track() {
        assert_eq!(edit_shift(&trak_with_edits(&[(8000, 1024)]), 1000, 12800).unwrap(), -80);
        assert_eq!(edit_shift(&trak_with_edits(&[(500, -1), (8000, 1024), (10, 9999)]), 1000, 12800).unwrap(), 420);
        assert_eq!(edit_shift(&[], 1000, 12800).unwrap(), 0);
        let mut huge = trak_with_edits(&[(1, 0)]);
        huge[20] = 0xFF;
        assert!(edit_shift(&huge, 1000, 1000).is_err(), "a count the box cannot hold");
    }

    /// Edit lists that move tracks by the most they can say move nothing past the timeline's
    /// ends, and never overflow.
    #[test]
    fn extreme_edits_saturate() {
        let track = |shift_ms| Track {
            id: 1,
            kind: Kind::Audio,
            codec: Codec::Aac,
            timescale: 1000,
            config: Vec::new(),
            width: 0,
            height: 0,
            trex: (0, 0, 0),
            next_dts: 0,
            shift_ms,
        };
        let sample = |dts, track| Sample { offset: 0, size: 1, dts, cts: 0, keyframe: false, track };
        let mut samples = vec![(sample(u32::MAX, 0), u64::MAX), (sample(0, 1), 0)];
        let start = apply_edits(&mut samples, &[track(i64::MAX), track(i64::MIN)]);
        assert_eq!(start, i64::MIN.unsigned_abs());
        assert_eq!((samples[0].0.dts, samples[1].0.dts), (u32::MAX, 0));
    }
}

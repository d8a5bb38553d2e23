//! A recording as an HLS VOD presentation, pure logic: the [`media`] crate's sample index of
//! the file becomes fMP4 tracks, segments cut at video keyframes, a playlist, and on request
//! one segment's `moof` + `mdat` from the sample bytes the caller reads.
//!
//! Defined by: RFC 8216 (HLS) 4.3.2.1 `EXTINF`, 4.3.2.5 `EXT-X-MAP`, 4.3.3.1
//! `EXT-X-TARGETDURATION`, 4.3.3.5 `EXT-X-PLAYLIST-TYPE`; ISO/IEC 23000-19 (CMAF) fragments.

use bytes::Bytes;
use flv::{AudioCodec, AudioPacket, VideoCodec, VideoPacket};
use media::{Codec, Kind, Media, ReadAt};

/// Segments are cut at the first video keyframe about this long after the segment's start.
pub const TARGET_SEGMENT_MS: u32 = 4000;
/// How much sooner than [`TARGET_SEGMENT_MS`] a keyframe may come and still cut: decode times
/// run ahead of presentation times by a frame or two with B-frames, so a keyframe every 2 s
/// shows 3.96 s after the previous cut.
const CUT_SLACK_MS: u32 = 500;
/// A segment whose sample bytes reach this is cut at the next sample even without a keyframe
/// (a stream with very long GOPs): the bound on what one request holds in memory.
pub const MAX_SEGMENT_BYTES: u64 = 32 << 20;
/// Bytes read in one go when a segment's samples lie together in the file; samples spread
/// wider are read one by one.
const MAX_SPAN: u64 = 2 * MAX_SEGMENT_BYTES;
/// FLV video tags this short carry no frame: an end-of-sequence (`0x17 0x02` and a zero
/// composition time, or an Enhanced RTMP SequenceEnd with its FourCC). FLV marks them as
/// keyframes; kept, they would cut a segment of nothing at the end.
const FLV_VIDEO_NO_FRAME: u32 = 5;
/// The same for AAC tags: the two header bytes and no frame.
const FLV_AUDIO_NO_FRAME: u32 = 2;
/// fMP4 track ids.
const VIDEO_ID: u32 = 1;
const AUDIO_ID: u32 = 2;
/// Video times stay in the index's milliseconds.
const VIDEO_TIMESCALE: u32 = 1000;
/// Duration of a last video frame when nothing better is known (25 fps).
const DEFAULT_FRAME_MS: u32 = 40;
/// A file still being written lists a segment once the newest sample written is this far past
/// the segment's end: the tracks interleave in the file, so when one track's sample at time T
/// is written another's just before T may not be yet.
const GROWING_MARGIN_MS: u64 = 1000;
/// The playlist of a file being written that holds no track yet.
pub const EMPTY_GROWING_PLAYLIST: &str =
    "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:EVENT\n";

/// Why a file cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum VodError {
    /// The file could not be indexed.
    #[error(transparent)]
    Media(#[from] media::MediaError),
    /// Neither H.264/HEVC/AV1 video nor AAC audio: nothing fMP4 here can carry.
    #[error("no video or audio track fMP4 can carry (H.264, HEVC, AV1, AAC)")]
    NoTracks,
    /// Writing the init segment or a fragment failed.
    #[error("fmp4: {0}")]
    Fmp4(#[from] fmp4::Fmp4Error),
    /// Reading sample bytes failed.
    #[error("read: {0}")]
    Io(#[from] std::io::Error),
}

/// One sample of an output track.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u64,
    size: u32,
    /// Decode time in milliseconds (segment cutting).
    ms: u32,
    /// Decode time in the track's timescale.
    dts: u64,
    /// Until the track's next sample, in the track's timescale.
    duration: u32,
    /// Composition offset in the track's timescale (MP4 samples; FLV tags carry their own).
    cts: i32,
    keyframe: bool,
}

/// One fMP4 track of the presentation.
#[derive(Debug)]
struct Track {
    id: u32,
    video: bool,
    /// Sample bytes are FLV tag bodies (the tag header comes off when the segment is built).
    flv: bool,
    /// The codec, as FLV tags of this file name it (FLV samples of another codec are skipped).
    video_codec: Option<VideoCodec>,
    entries: Vec<Entry>,
}

/// One segment: its start, and per track (in [`Vod::tracks`] order) the entries it holds.
#[derive(Debug, Clone)]
struct Segment {
    start_ms: u64,
    ranges: Vec<std::ops::Range<usize>>,
}

/// A file ready to be served as HLS VOD.
#[derive(Debug)]
pub struct Vod {
    /// `ftyp` + `moov` for every segment.
    pub init: Bytes,
    /// Milliseconds from the start to the end of the last sample.
    pub duration_ms: u64,
    /// The file's codecs (`h264+aac`), for logs.
    pub codecs: String,
    tracks: Vec<Track>,
    segments: Vec<Segment>,
    /// Segments served: all of them, or for a file still being written the ones whose samples
    /// are all written and can no longer change.
    listed: usize,
    /// The file is still being written: the playlist is an `EVENT` one without an end.
    growing: bool,
}

impl Vod {
    /// Indexes the file `r` reads and cuts it into segments.
    pub fn open(r: &mut dyn ReadAt) -> Result<Vod, VodError> {
        Self::from_media(Media::open(r)?)
    }

    /// Indexes a file a recorder is still writing: samples the file does not hold whole yet
    /// (and every later one) are left out, and only the segments that can no longer change
    /// are listed. Cutting only looks backwards (a keyframe far enough from the segment's
    /// start), so a listed segment stays the same as the file grows and once it is closed.
    pub fn open_growing(r: &mut dyn ReadAt) -> Result<Vod, VodError> {
        let size = r.size();
        let mut media = Media::open(r)?;
        written_only(&mut media, size);
        let mut vod = Self::from_media(media)?;
        vod.growing = true;
        vod.listed = vod.settled_segments();
        Ok(vod)
    }

    /// Whether this is the index of a file still being written.
    pub fn growing(&self) -> bool {
        self.growing
    }

    /// How many segments end [`GROWING_MARGIN_MS`] before the newest sample (the last one,
    /// which the next keyframe has not closed yet, never does).
    fn settled_segments(&self) -> usize {
        let newest = self.tracks.iter().filter_map(|t| t.entries.last()).map(|e| u64::from(e.ms)).max().unwrap_or(0);
        self.segments.windows(2).take_while(|w| w[1].start_ms + GROWING_MARGIN_MS <= newest).count()
    }

    /// The presentation of an indexed file.
    pub fn from_media(media: Media) -> Result<Vod, VodError> {
        let mut infos = Vec::new();
        let mut tracks = Vec::new();
        let mut names = Vec::new();
        if let Some((info, track)) = video_track(&media) {
            names.push(video_name(&info.codec));
            infos.push(info);
            tracks.push(track);
        }
        if let Some((info, track, frame)) = audio_track(&media) {
            names.push("aac");
            let mut track = track;
            fill_audio(&media, &mut track, info.timescale, frame);
            infos.push(info);
            tracks.push(track);
        }
        if tracks.is_empty() {
            return Err(VodError::NoTracks);
        }
        if tracks[0].video {
            fill_video(&media, &mut tracks[0]);
        }
        let init = Bytes::from(fmp4::init_segment(&infos)?);
        let duration_ms = tracks
            .iter()
            .zip(&infos)
            .filter_map(|(t, i)| t.entries.last().map(|e| ticks_to_ms(e.dts + u64::from(e.duration), i.timescale)))
            .max()
            .unwrap_or(0);
        let segments = cut(&tracks, MAX_SEGMENT_BYTES);
        let listed = segments.len();
        Ok(Vod { init, duration_ms, codecs: names.join("+"), tracks, segments, listed, growing: false })
    }

    /// How many segments are served.
    pub fn segments(&self) -> usize {
        self.listed
    }

    /// Bytes this index holds (the cache's bound counts them).
    pub fn cost(&self) -> usize {
        let entries: usize = self.tracks.iter().map(|t| t.entries.len()).sum();
        entries * std::mem::size_of::<Entry>()
            + self.segments.len() * (std::mem::size_of::<Segment>() + 2 * 16)
            + self.init.len()
            + 256
    }

    /// Seconds of segment `k`: from its start to the next one's (the file's end for the last).
    pub fn segment_secs(&self, k: usize) -> f64 {
        let start = if k == 0 { 0 } else { self.segments[k].start_ms };
        let end = self.segments.get(k + 1).map_or(self.duration_ms, |s| s.start_ms).max(start);
        (end - start) as f64 / 1000.0
    }

    /// The HLS playlist; `query` (`?v=...`, or empty) is appended to every URI so that a
    /// player never mixes segments of two versions of a file. A file still being written gets
    /// an `EVENT` playlist without `EXT-X-ENDLIST`: players reload it and find the segments
    /// written since, then the end once the recording is closed.
    pub fn playlist(&self, query: &str) -> String {
        let secs: Vec<f64> = (0..self.listed).map(|k| self.segment_secs(k)).collect();
        // A growing file's segments to come are as long as its longest so far, or the target.
        let least = if self.growing { f64::from(TARGET_SEGMENT_MS) / 1000.0 } else { 1.0 };
        let target = secs.iter().fold(least, |m, s| m.max(*s)).ceil() as u64;
        let kind = if self.growing { "EVENT" } else { "VOD" };
        let mut out = String::with_capacity(64 + secs.len() * 32);
        out.push_str("#EXTM3U\n#EXT-X-VERSION:7\n");
        out.push_str(&format!("#EXT-X-TARGETDURATION:{target}\n"));
        out.push_str(&format!("#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:{kind}\n#EXT-X-INDEPENDENT-SEGMENTS\n"));
        out.push_str(&format!("#EXT-X-MAP:URI=\"init.mp4{query}\"\n"));
        for (k, s) in secs.iter().enumerate() {
            out.push_str(&format!("#EXTINF:{s:.3},\n{k}.m4s{query}\n"));
        }
        if !self.growing {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }

    /// Segment `k` (`moof` + `mdat`, sequence number `k + 1`), its samples read through `r`;
    /// `None` past the last segment, or when the file no longer holds any of its samples.
    pub fn segment(&self, k: usize, r: &mut dyn ReadAt) -> Result<Option<Vec<u8>>, VodError> {
        let Some(seg) = self.segments.get(k).filter(|_| k < self.listed) else { return Ok(None) };
        let mut runs: Vec<(u32, u64, Vec<fmp4::Sample>)> = Vec::with_capacity(self.tracks.len());
        for (track, range) in self.tracks.iter().zip(&seg.ranges) {
            let entries = &track.entries[range.clone()];
            let samples = read_samples(track, entries, r)?;
            if let Some((first, samples)) = samples {
                runs.push((track.id, first, samples));
            }
        }
        if runs.is_empty() {
            return Ok(None);
        }
        let runs: Vec<fmp4::TrackRun<'_>> = runs
            .iter()
            .map(|(id, base, samples)| fmp4::TrackRun { track_id: *id, base_decode_time: *base, samples })
            .collect();
        let sequence = u32::try_from(k + 1).unwrap_or(u32::MAX);
        Ok(Some(fmp4::fragment(sequence, &runs)?))
    }
}

/// Leaves out the samples a file of `size` bytes does not hold whole (a fragment whose `mdat`
/// is still being written), and every sample after the first such one: the index then stops
/// where the file stops being readable.
fn written_only(media: &mut Media, size: u64) {
    let whole = media.samples.iter().position(|s| s.offset + u64::from(s.size) > size);
    if let Some(first_missing) = whole {
        media.samples.truncate(first_missing);
    }
}

fn video_name(codec: &fmp4::Codec) -> &'static str {
    match codec {
        fmp4::Codec::Hevc { .. } => "hevc",
        fmp4::Codec::Av1 { .. } => "av1",
        _ => "h264",
    }
}

/// The index's track of `kind` (the first one) and how its samples are wrapped.
fn source_track(media: &Media, kind: Kind) -> Option<(u8, Codec)> {
    let i = media.codecs.iter().position(|(k, _)| *k == kind)?;
    Some((u8::try_from(i).ok()?, media.codecs[i].1))
}

/// The header of `kind` (an FLV tag body: sequence header).
fn header(media: &Media, kind: Kind) -> Option<&Bytes> {
    media.headers.iter().find(|(k, _)| *k == kind).map(|(_, b)| b)
}

fn video_track(media: &Media) -> Option<(fmp4::TrackInfo, Track)> {
    let (_, wrap) = source_track(media, Kind::Video)?;
    let body = header(media, Kind::Video)?;
    let h = flv::parse_video(body).ok()?;
    let config = Bytes::copy_from_slice(h.payload(body));
    let dims = flv::codec::parse_video_config(h.codec, &config).ok().flatten();
    let (width, height) = dims.map_or((0, 0), |p| (p.width as u16, p.height as u16));
    let codec = match h.codec {
        VideoCodec::Avc => fmp4::Codec::Avc { avcc: config, width, height },
        VideoCodec::Hevc => fmp4::Codec::Hevc { hvcc: config, width, height },
        VideoCodec::Av1 => fmp4::Codec::Av1 { av1c: config, width, height },
        _ => return None,
    };
    let track =
        Track { id: VIDEO_ID, video: true, flv: wrap == Codec::Tag, video_codec: Some(h.codec), entries: Vec::new() };
    Some((fmp4::TrackInfo { id: VIDEO_ID, timescale: VIDEO_TIMESCALE, codec }, track))
}

/// The AAC track, and its samples per frame.
fn audio_track(media: &Media) -> Option<(fmp4::TrackInfo, Track, u32)> {
    let (_, wrap) = source_track(media, Kind::Audio)?;
    let body = header(media, Kind::Audio)?;
    let h = flv::parse_audio(body).ok()?;
    if h.codec != AudioCodec::Aac {
        return None;
    }
    let asc = Bytes::copy_from_slice(h.payload(body));
    let p = flv::parse_aac_config(&asc).ok()?;
    if p.sample_rate == 0 {
        return None;
    }
    // HE-AAC signalled explicitly runs at the SBR rate: 2048 output samples a frame.
    let frame = if matches!(p.object_type, 5 | 29) { 2048 } else { 1024 };
    let codec = fmp4::Codec::Aac { asc, sample_rate: p.sample_rate, channels: u16::from(p.channels.max(1)) };
    let track = Track { id: AUDIO_ID, video: false, flv: wrap == Codec::Tag, video_codec: None, entries: Vec::new() };
    Some((fmp4::TrackInfo { id: AUDIO_ID, timescale: p.sample_rate, codec }, track, frame))
}

/// Video entries in decode order, each lasting until the next one.
fn fill_video(media: &Media, track: &mut Track) {
    let Some((index, _)) = source_track(media, Kind::Video) else { return };
    let min = if track.flv { FLV_VIDEO_NO_FRAME } else { 0 };
    let mut entries: Vec<Entry> = media
        .samples
        .iter()
        .filter(|s| s.track == index && s.size > min)
        .map(|s| Entry {
            offset: s.offset,
            size: s.size,
            ms: s.dts,
            dts: u64::from(s.dts),
            duration: 0,
            cts: s.cts,
            keyframe: s.keyframe,
        })
        .collect();
    entries.sort_by_key(|e| e.dts);
    let mut last = DEFAULT_FRAME_MS;
    for i in 0..entries.len() {
        let d = match entries.get(i + 1) {
            Some(next) => (next.dts - entries[i].dts) as u32,
            None => last,
        };
        if d > 0 {
            last = d;
        }
        entries[i].duration = d;
    }
    track.entries = entries;
}

/// Audio entries on a timeline of whole frames: the index's millisecond times drift by rounding,
/// so a sample within half a frame of where the previous one ends starts exactly there; a real
/// gap keeps its time.
fn fill_audio(media: &Media, track: &mut Track, rate: u32, frame: u32) {
    let Some((index, _)) = source_track(media, Kind::Audio) else { return };
    let min = if track.flv { FLV_AUDIO_NO_FRAME } else { 0 };
    let mut samples: Vec<&media::Sample> = media.samples.iter().filter(|s| s.track == index && s.size > min).collect();
    samples.sort_by_key(|s| s.dts);
    let frame64 = u64::from(frame);
    let mut entries: Vec<Entry> = Vec::with_capacity(samples.len());
    for s in samples {
        let actual = u64::from(s.dts) * u64::from(rate) / 1000;
        let dts = match entries.last() {
            Some(prev) => {
                let expected = prev.dts + frame64;
                if actual.abs_diff(expected) <= frame64 / 2 || actual < expected {
                    expected
                } else {
                    actual
                }
            }
            None => actual,
        };
        entries.push(Entry { offset: s.offset, size: s.size, ms: s.dts, dts, duration: frame, cts: 0, keyframe: true });
    }
    for i in 1..entries.len() {
        entries[i - 1].duration = u32::try_from(entries[i].dts - entries[i - 1].dts).unwrap_or(frame);
    }
    track.entries = entries;
}

/// Segment starts: the first track (video when there is one) is cut at the first keyframe
/// [`TARGET_SEGMENT_MS`] (less [`CUT_SLACK_MS`]) after the segment's start, or at any sample once the segment holds
/// `max_bytes` ([`MAX_SEGMENT_BYTES`]); the other tracks follow by time.
fn cut(tracks: &[Track], max_bytes: u64) -> Vec<Segment> {
    let lead = &tracks[0];
    let mut starts: Vec<(u64, usize)> = vec![(0, 0)];
    let mut bytes = 0u64;
    for (i, e) in lead.entries.iter().enumerate() {
        let since = u64::from(e.ms).saturating_sub(starts.last().map_or(0, |s| s.0));
        let at_key = (e.keyframe || !lead.video) && since >= u64::from(TARGET_SEGMENT_MS - CUT_SLACK_MS);
        if i > 0 && (at_key || bytes >= max_bytes) {
            starts.push((u64::from(e.ms), i));
            bytes = 0;
        }
        bytes += u64::from(e.size);
    }
    let mut segments = Vec::with_capacity(starts.len());
    for (k, &(start_ms, lead_start)) in starts.iter().enumerate() {
        let next = starts.get(k + 1).copied();
        let mut ranges = Vec::with_capacity(tracks.len());
        ranges.push(lead_start..next.map_or(lead.entries.len(), |n| n.1));
        for t in &tracks[1..] {
            let from = if k == 0 { 0 } else { t.entries.partition_point(|e| u64::from(e.ms) < start_ms) };
            let to = next.map_or(t.entries.len(), |n| t.entries.partition_point(|e| u64::from(e.ms) < n.0));
            ranges.push(from..to.max(from));
        }
        segments.push(Segment { start_ms, ranges });
    }
    segments
}

/// The fMP4 samples of `entries` and the decode time of the first: bytes read through `r`,
/// FLV tag headers taken off (tags that carry no frame, such as a repeated sequence header,
/// are dropped and their time given to the frame before).
fn read_samples(
    track: &Track,
    entries: &[Entry],
    r: &mut dyn ReadAt,
) -> Result<Option<(u64, Vec<fmp4::Sample>)>, VodError> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return Ok(None) };
    let lo = entries.iter().map(|e| e.offset).min().unwrap_or(first.offset);
    let hi = entries.iter().map(|e| e.offset + u64::from(e.size)).max().unwrap_or(last.offset);
    let span = (hi - lo <= MAX_SPAN).then(|| r.read_at(lo, (hi - lo) as usize)).transpose()?;
    let mut out: Vec<(u64, fmp4::Sample)> = Vec::with_capacity(entries.len());
    for e in entries {
        let data = match &span {
            Some(buf) => {
                let at = (e.offset - lo) as usize;
                buf.get(at..at + e.size as usize).map(<[u8]>::to_vec)
            }
            None => Some(r.read_at(e.offset, e.size as usize)?).filter(|d| d.len() == e.size as usize),
        };
        // A file cut short since it was indexed ends the segment.
        let Some(data) = data else { break };
        if let Some(sample) = to_sample(track, e, data) {
            out.push((e.dts, sample));
        }
    }
    if out.is_empty() {
        return Ok(None);
    }
    // The last frame lasts until the range's end (through any dropped tags).
    let range_end = last.dts + u64::from(last.duration);
    for i in 0..out.len() {
        let until = out.get(i + 1).map_or(range_end, |next| next.0);
        out[i].1.duration = u32::try_from(until.saturating_sub(out[i].0)).unwrap_or(u32::MAX);
    }
    let base = out[0].0;
    Ok(Some((base, out.into_iter().map(|(_, s)| s).collect())))
}

/// One sample as fMP4 carries it; `None` for FLV tags that are no coded frame of the track.
fn to_sample(track: &Track, e: &Entry, data: Vec<u8>) -> Option<fmp4::Sample> {
    if !track.flv {
        let data = Bytes::from(data);
        return Some(fmp4::Sample { duration: 0, keyframe: e.keyframe, cts_offset: e.cts, data });
    }
    let body = Bytes::from(data);
    if track.video {
        let h = flv::parse_video(&body).ok()?;
        if h.packet != VideoPacket::Coded || h.multitrack.is_some() || Some(h.codec) != track.video_codec {
            return None;
        }
        let (from, to) = (h.payload_offset, h.payload_end.min(body.len()));
        let data = body.slice(from.min(to)..to);
        Some(fmp4::Sample { duration: 0, keyframe: h.is_keyframe(), cts_offset: h.composition_time, data })
    } else {
        let h = flv::parse_audio(&body).ok()?;
        if h.packet != AudioPacket::Coded || h.codec != AudioCodec::Aac || h.multitrack.is_some() {
            return None;
        }
        let (from, to) = (h.payload_offset, h.payload_end.min(body.len()));
        Some(fmp4::Sample { duration: 0, keyframe: true, cts_offset: 0, data: body.slice(from.min(to)..to) })
    }
}

fn ticks_to_ms(ticks: u64, timescale: u32) -> u64 {
    ticks * 1000 / u64::from(timescale.max(1))
}

#[cfg(test)]
mod tests;

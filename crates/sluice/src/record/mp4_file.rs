//! MP4 recordings (`record_format mp4`): fragmented MP4 written as the stream goes, one
//! `moof` + `mdat` at least every second, so a file cut by a crash plays up to its last
//! fragment. Carries H.264, HEVC and AV1 (Enhanced RTMP) video and AAC and Opus audio.
//!
//! The file is `ftyp` + `moov` (the `fmp4` crate's initialization segment), a 24-byte `free`
//! box whose text says whether the file is still being written ([`MARK_RECORDING`],
//! [`MARK_RECORDING_FASTSTART`]) or finished ([`MARK_FINISHED`]), then the fragments.
//! Start-up repair looks for that mark.
//!
//! Pure logic, no I/O: hub frames in (with their parsed tag headers, at recording timestamps),
//! bytes out.

use bytes::Bytes;
use flv::{AudioCodec, AudioPacket, VideoCodec, VideoPacket};

use crate::hub::{Frame, Tag};

/// Text of the mark box while the file is written.
pub const MARK_RECORDING: &[u8; 16] = b"sluice recording";
/// The same, when the file is to be rewritten with `moov` first once finished.
pub const MARK_RECORDING_FASTSTART: &[u8; 16] = b"sluice rec+fast ";
/// Text of the mark box of a finished file.
pub const MARK_FINISHED: &[u8; 16] = b"sluice finished ";
/// Size of the mark box: header and text.
pub const MARK_BOX_SIZE: u64 = 24;
/// A fragment is written once its samples span this much.
const FRAGMENT_MS: u64 = 1000;
/// Track ids: video first.
const VIDEO_TRACK: u32 = 1;
const AUDIO_TRACK: u32 = 2;
/// Video times are RTMP's milliseconds.
const VIDEO_TIMESCALE: u32 = 1000;
/// A gap between two frames longer than this is not a frame duration (the timeline already
/// takes out jumps; this guards a stalled encoder).
const MAX_VIDEO_DURATION_MS: u64 = 60_000;
/// The same for audio, in seconds of the track's timescale.
const MAX_AUDIO_GAP_S: u64 = 60;
/// Most bytes of samples waiting for the next fragment. Fragments close by time; a publisher
/// whose timestamps stand still would otherwise grow them without limit, so at this bound the
/// fragment is cut early. Far above a second of any real stream (50 Mbit/s video: ~6 MiB).
pub const MAX_PENDING_BYTES: usize = 16 << 20;
/// Most samples waiting for the next fragment (a second of 240 fps video with 48 kHz AAC is
/// under 300).
pub const MAX_PENDING_SAMPLES: usize = 4096;
/// Duration of a video frame when nothing better is known (25 fps).
const DEFAULT_VIDEO_DURATION_MS: u32 = 40;
/// Opus: decoder delay the encoder leaves at the start (libopus's usual value; RTMP does not
/// carry it).
const OPUS_PRE_SKIP: u16 = 312;
/// Opus always decodes at 48 kHz.
const OPUS_RATE: u32 = 48_000;

/// One track's samples waiting for the next fragment.
#[derive(Debug, Default)]
struct Pending {
    /// Decode time (track timescale) of `samples[0]`, or of the held sample when empty.
    start: Option<u64>,
    samples: Vec<fmp4::Sample>,
    /// The newest sample, waiting for the next one to know its duration: (decode time,
    /// sample).
    held: Option<(u64, fmp4::Sample)>,
    /// Decode time right after the last sample given a duration.
    end: Option<u64>,
    /// Bytes of sample data in `samples`.
    bytes: usize,
}

impl Pending {
    /// Gives the held sample its duration and queues it; `d` is the next sample's decode
    /// time minus the held one's.
    fn settle(&mut self, duration: u32) {
        if let Some((dts, mut s)) = self.held.take() {
            s.duration = duration;
            if self.samples.is_empty() {
                self.start = Some(dts);
            }
            self.end = Some(dts.saturating_add(u64::from(duration)));
            self.bytes += s.data.len();
            self.samples.push(s);
        }
    }

    /// The samples queued for the next fragment; the held one stays.
    fn take(&mut self) -> Vec<fmp4::Sample> {
        self.bytes = 0;
        std::mem::take(&mut self.samples)
    }

    fn hold(&mut self, dts: u64, sample: fmp4::Sample) {
        if self.samples.is_empty() && self.held.is_none() {
            self.start = Some(dts);
        }
        self.held = Some((dts, sample));
    }
}

#[derive(Debug)]
struct Video {
    config: Bytes,
    codec: fmp4::Codec,
    pending: Pending,
    /// The last frame interval, for the last frame's duration.
    interval: u32,
}

#[derive(Debug)]
struct Audio {
    config: Bytes,
    codec: fmp4::Codec,
    timescale: u32,
    /// Samples per frame when fixed (AAC); 0 when durations come from timestamps (Opus).
    frame: u32,
    pending: Pending,
}

/// Writes one MP4 recording.
#[derive(Debug)]
pub struct Mp4Mux {
    video: Option<Video>,
    audio: Option<Audio>,
    faststart: bool,
    started: bool,
    sequence: u32,
    len: u64,
    mark_offset: u64,
    /// Newest decode time pushed, in milliseconds.
    newest_ms: u64,
    warnings: Vec<String>,
    /// A fragment was cut at [`MAX_PENDING_BYTES`] or [`MAX_PENDING_SAMPLES`] (said once).
    bounded: bool,
}

impl Mp4Mux {
    /// A recording of the tracks these sequence header frames describe; a codec MP4
    /// recording cannot carry is left out with a warning ([`Self::take_warnings`]).
    /// `faststart` is recorded in the mark, for repair after a crash.
    pub fn new(video_header: Option<&Frame>, audio_header: Option<&Frame>, faststart: bool) -> Self {
        let mut m = Mp4Mux {
            video: None,
            audio: None,
            faststart,
            started: false,
            sequence: 0,
            len: 0,
            mark_offset: 0,
            newest_ms: 0,
            warnings: Vec::new(),
            bounded: false,
        };
        if let Some((h, f)) = video_header.and_then(|f| Some((f.video_header()?, f))) {
            m.video = m.video_track(h.codec, f.codec_payload());
        }
        if let Some((h, f)) = audio_header.and_then(|f| Some((f.audio_header()?, f))) {
            m.audio = m.audio_track(h.codec, f.codec_payload());
        }
        m
    }

    fn warn(&mut self, what: String) {
        if !self.warnings.contains(&what) {
            self.warnings.push(what);
        }
    }

    /// Warnings since the last call, each said once.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Whether there is anything to record.
    pub fn has_tracks(&self) -> bool {
        self.video.is_some() || self.audio.is_some()
    }

    /// Bytes produced so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was produced yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How long the recording is so far, in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        let v = self.video.as_ref().and_then(|v| v.pending.end).unwrap_or(0);
        let a = self.audio.as_ref().and_then(|a| a.pending.end.map(|e| to_ms(e, a.timescale))).unwrap_or(0);
        v.max(a)
    }

    /// Samples and bytes waiting for the next fragment (at most [`MAX_PENDING_SAMPLES`] and
    /// about [`MAX_PENDING_BYTES`] plus one frame).
    pub fn pending(&self) -> (usize, usize) {
        let tracks = [self.video.as_ref().map(|v| &v.pending), self.audio.as_ref().map(|a| &a.pending)];
        tracks.into_iter().flatten().fold((0, 0), |(n, b), p| (n + p.samples.len(), b + p.bytes))
    }

    fn video_track(&mut self, codec: VideoCodec, config: &[u8]) -> Option<Video> {
        let config = Bytes::copy_from_slice(config);
        let dims = flv::codec::parse_video_config(codec, &config).ok().flatten();
        let (width, height) = dims.map_or((0, 0), |p| (p.width as u16, p.height as u16));
        let codec = match codec {
            VideoCodec::Avc => fmp4::Codec::Avc { avcc: config.clone(), width, height },
            VideoCodec::Hevc => fmp4::Codec::Hevc { hvcc: config.clone(), width, height },
            VideoCodec::Av1 => fmp4::Codec::Av1 { av1c: config.clone(), width, height },
            other => {
                self.warn(format!("video codec {} cannot be recorded in MP4; video left out", other.name()));
                return None;
            }
        };
        Some(Video { config, codec, pending: Pending::default(), interval: DEFAULT_VIDEO_DURATION_MS })
    }

    fn audio_track(&mut self, codec: AudioCodec, config: &[u8]) -> Option<Audio> {
        let config = Bytes::copy_from_slice(config);
        let (codec, timescale, frame) = match codec {
            AudioCodec::Aac => {
                let Ok(p) = flv::parse_aac_config(&config) else {
                    self.warn("the AAC sequence header could not be parsed; audio left out".into());
                    return None;
                };
                // HE-AAC signalled explicitly runs at the SBR rate: 2048 output samples a frame.
                let frame = if matches!(p.object_type, 5 | 29) { 2048 } else { 1024 };
                let channels = u16::from(p.channels.max(1));
                (fmp4::Codec::Aac { asc: config.clone(), sample_rate: p.sample_rate, channels }, p.sample_rate, frame)
            }
            AudioCodec::Opus => {
                let channels = flv::codec::parse_opus_head(&config).map_or(2, |p| u16::from(p.channels));
                let codec = fmp4::Codec::Opus { channels, pre_skip: OPUS_PRE_SKIP, input_sample_rate: OPUS_RATE };
                (codec, OPUS_RATE, 0)
            }
            other => {
                self.warn(format!("audio codec {} cannot be recorded in MP4; audio left out", other.name()));
                return None;
            }
        };
        if timescale == 0 {
            self.warn("the audio sequence header says 0 Hz; audio left out".into());
            return None;
        }
        Some(Audio { config, codec, timescale, frame, pending: Pending::default() })
    }

    /// Adds a frame at decode time `ms`; bytes to append go to `out`. Data frames, and audio
    /// whose tag header did not parse, are not recorded.
    pub fn push(&mut self, ms: u64, frame: &Frame, out: &mut Vec<u8>) {
        match frame.tag() {
            Tag::Video(h) => self.push_video(ms, h, frame.codec_payload(), out),
            Tag::Audio(h) => self.push_audio(ms, h, frame.codec_payload(), out),
            Tag::None => {}
        }
    }

    /// Adds a video frame (`payload`: its codec payload) at decode time `ms`.
    fn push_video(&mut self, ms: u64, h: &flv::VideoHeader, payload: &[u8], out: &mut Vec<u8>) {
        if h.is_sequence_header() {
            if self.video.as_ref().is_some_and(|v| v.config[..] != *payload) {
                self.warn(
                    "the video configuration changed mid-recording; MP4 players may not decode what follows".into(),
                );
            }
            return;
        }
        let Some(v) = &mut self.video else { return };
        if h.packet != VideoPacket::Coded {
            return;
        }
        if let Some((held, _)) = &v.pending.held {
            let d = ms.saturating_sub(*held);
            if d > 0 && d <= MAX_VIDEO_DURATION_MS {
                v.interval = d as u32;
            }
            // A frame with the same decode time as the one before still needs a duration.
            let d = if d == 0 || d > MAX_VIDEO_DURATION_MS { u64::from(v.interval) } else { d };
            v.pending.settle(d as u32);
        }
        // Decode times run on from the durations (the same unless one was clamped).
        let dts = v.pending.end.unwrap_or(ms);
        let data = Bytes::copy_from_slice(payload);
        let sample = fmp4::Sample { duration: 0, keyframe: h.is_keyframe(), cts_offset: h.composition_time, data };
        v.pending.hold(dts, sample);
        self.newest_ms = self.newest_ms.max(ms);
        self.ensure_started(out);
        self.maybe_fragment(out);
    }

    /// Adds an audio frame (`payload`: its codec payload) at decode time `ms`.
    fn push_audio(&mut self, ms: u64, h: &flv::AudioHeader, payload: &[u8], out: &mut Vec<u8>) {
        if h.is_sequence_header() {
            if self.audio.as_ref().is_some_and(|a| a.config[..] != *payload) {
                self.warn(
                    "the audio configuration changed mid-recording; MP4 players may not decode what follows".into(),
                );
            }
            return;
        }
        let Some(a) = &mut self.audio else { return };
        if h.packet != AudioPacket::Coded {
            return;
        }
        let actual = from_ms(ms, a.timescale);
        let mut dts = actual;
        if let Some((held, _)) = &a.pending.held {
            let held = *held;
            let frame = u64::from(a.frame);
            let max_gap = (MAX_AUDIO_GAP_S * u64::from(a.timescale)).min(u64::from(u32::MAX));
            // Fixed-size frames keep their exact duration while the timestamps (rounded to
            // milliseconds) stay within half a frame; a real gap or drift resynchronises. A
            // step back, or a gap no pause explains, is one frame.
            let d = match actual.checked_sub(held) {
                Some(gap) if frame > 0 && gap.abs_diff(frame) <= frame / 2 => frame,
                Some(gap) if gap > 0 && gap <= max_gap => gap,
                _ => frame.max(1),
            };
            a.pending.settle(d as u32);
            dts = held.saturating_add(d);
        }
        let data = Bytes::copy_from_slice(payload);
        let sample = fmp4::Sample { duration: 0, keyframe: true, cts_offset: 0, data };
        a.pending.hold(dts, sample);
        self.newest_ms = self.newest_ms.max(ms);
        self.ensure_started(out);
        self.maybe_fragment(out);
    }

    /// The initialization segment and the mark, before the first fragment.
    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        let mut tracks = Vec::new();
        if let Some(v) = &self.video {
            tracks.push(fmp4::TrackInfo { id: VIDEO_TRACK, timescale: VIDEO_TIMESCALE, codec: v.codec.clone() });
        }
        if let Some(a) = &self.audio {
            tracks.push(fmp4::TrackInfo { id: AUDIO_TRACK, timescale: a.timescale, codec: a.codec.clone() });
        }
        match fmp4::init_segment(&tracks) {
            Ok(init) => {
                self.started = true;
                self.len += init.len() as u64;
                out.extend_from_slice(&init);
                self.mark_offset = self.len + 8;
                let mark = if self.faststart { MARK_RECORDING_FASTSTART } else { MARK_RECORDING };
                out.extend_from_slice(&(MARK_BOX_SIZE as u32).to_be_bytes());
                out.extend_from_slice(b"free");
                out.extend_from_slice(mark);
                self.len += MARK_BOX_SIZE;
            }
            Err(e) => {
                self.warn(format!("the MP4 header could not be written: {e}; nothing recorded"));
                self.video = None;
                self.audio = None;
            }
        }
    }

    /// Writes a fragment once the oldest waiting sample is [`FRAGMENT_MS`] old.
    fn maybe_fragment(&mut self, out: &mut Vec<u8>) {
        let v = self.video.as_ref().and_then(|v| v.pending.samples.first().and(v.pending.start));
        let a = self
            .audio
            .as_ref()
            .and_then(|a| a.pending.samples.first().and(a.pending.start).map(|s| to_ms(s, a.timescale)));
        let oldest = match (v, a) {
            (Some(v), Some(a)) => v.min(a),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => return,
        };
        if self.newest_ms >= oldest.saturating_add(FRAGMENT_MS) {
            return self.flush(out);
        }
        let (samples, bytes) = self.pending();
        if samples >= MAX_PENDING_SAMPLES || bytes >= MAX_PENDING_BYTES {
            if !self.bounded {
                self.bounded = true;
                self.warn(format!(
                    "a fragment reached {samples} samples / {bytes} bytes without a second passing on the publisher's clock (timestamps standing still?); fragments are cut at {MAX_PENDING_SAMPLES} samples or {} MiB",
                    MAX_PENDING_BYTES >> 20
                ));
            }
            self.flush(out);
        }
    }

    /// Writes everything that has a duration as one fragment.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            return;
        }
        let video = self.video.as_mut().map(|v| (v.pending.take(), v.pending.start));
        let audio = self.audio.as_mut().map(|a| (a.pending.take(), a.pending.start));
        let mut runs = Vec::new();
        if let Some((samples, Some(start))) = &video {
            if !samples.is_empty() {
                runs.push(fmp4::TrackRun { track_id: VIDEO_TRACK, base_decode_time: *start, samples });
            }
        }
        if let Some((samples, Some(start))) = &audio {
            if !samples.is_empty() {
                runs.push(fmp4::TrackRun { track_id: AUDIO_TRACK, base_decode_time: *start, samples });
            }
        }
        // The held samples start the next fragment.
        for p in [self.video.as_mut().map(|v| &mut v.pending), self.audio.as_mut().map(|a| &mut a.pending)]
            .into_iter()
            .flatten()
        {
            p.start = p.held.as_ref().map(|(dts, _)| *dts);
        }
        if runs.is_empty() {
            return;
        }
        self.sequence += 1;
        match fmp4::fragment(self.sequence, &runs) {
            Ok(bytes) => {
                self.len += bytes.len() as u64;
                out.extend_from_slice(&bytes);
            }
            Err(e) => self.warn(format!("an MP4 fragment could not be written: {e}; its frames are lost")),
        }
    }

    /// Ends the file: the last samples (the held ones with the last known durations) go out
    /// in a final fragment; returns the mark patch (offset, bytes) to write over the mark, if
    /// the file was started.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Option<(u64, Vec<u8>)> {
        if let Some(v) = &mut self.video {
            v.pending.settle(v.interval);
        }
        if let Some(a) = &mut self.audio {
            let last = if a.frame > 0 { a.frame } else { a.timescale / 50 };
            a.pending.settle(last);
        }
        self.flush(out);
        self.started.then(|| (self.mark_offset, MARK_FINISHED.to_vec()))
    }

    /// Forgets bytes after `len` (a write failed and the file was cut back): the samples in
    /// them are lost; the next fragment continues the timeline. A file cut before its
    /// header gets the header again.
    pub fn rewind(&mut self, len: u64) {
        self.len = self.len.min(len);
        if self.len < self.mark_offset + MARK_BOX_SIZE - 8 {
            self.started = false;
            self.len = 0;
        }
    }
}

/// Track time in milliseconds.
fn to_ms(t: u64, timescale: u32) -> u64 {
    (u128::from(t) * 1000 / u128::from(timescale.max(1))).min(u128::from(u64::MAX)) as u64
}

/// Milliseconds in track time.
fn from_ms(ms: u64, timescale: u32) -> u64 {
    (u128::from(ms) * u128::from(timescale) / 1000).min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video_frame(body: Vec<u8>) -> Frame {
        Frame::video(0, Bytes::from(body)).expect("a video tag header")
    }

    /// AVC sequence header with a 64x48 SPS.
    fn avc_header() -> Frame {
        let sps = [
            0x67, 0x42, 0xC0, 0x0A, 0xD9, 0x07, 0x3C, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0C, 0x83,
            0xC4, 0x89, 0x92,
        ];
        let mut b = vec![0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x0A, 0xFF, 0xE1];
        b.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        b.extend_from_slice(&sps);
        b.extend_from_slice(&[1, 0, 4, 0x68, 0xCE, 0x3C, 0x80]);
        video_frame(b)
    }

    fn aac_header() -> Frame {
        Frame::audio(0, Bytes::from_static(&[0xAF, 0, 0x12, 0x10]))
    }

    fn video_body(key: bool, cts: u8) -> Vec<u8> {
        vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, cts, 0, 0, 0, 2, 0x65, 0x88]
    }

    fn video(key: bool, cts: u8) -> Frame {
        video_frame(video_body(key, cts))
    }

    fn audio() -> Frame {
        Frame::audio(0, Bytes::from_static(&[0xAF, 1, 0x21, 0x10, 0x04]))
    }

    /// (track, base decode time, durations) of every run in `file`'s fragments.
    fn runs(file: &[u8]) -> Vec<(u32, u64, Vec<u32>)> {
        let mut out = Vec::new();
        for b in fmp4::boxes(file).map(Result::unwrap).filter(|b| &b.kind == b"moof") {
            for r in fmp4::parse_moof(&file[b.offset..b.end()]).unwrap() {
                out.push((r.track_id, r.base_decode_time.unwrap(), r.samples.iter().map(|s| s.duration).collect()));
            }
        }
        out
    }

    /// 3 s of 25 fps video and AAC at 44.1 kHz with millisecond timestamps.
    fn record(m: &mut Mp4Mux) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut v, mut a) = (0u64, 0u64);
        let mut frames = 0u64;
        while v < 3000 {
            let a_ms = a * 1024 * 1000 / 44_100;
            if a_ms <= v {
                m.push(a_ms, &audio(), &mut out);
                a += 1;
            } else {
                m.push(v, &video(frames.is_multiple_of(25), 80), &mut out);
                frames += 1;
                v += 40;
            }
        }
        if let Some((at, mark)) = m.finish(&mut out) {
            out[at as usize..at as usize + 16].copy_from_slice(&mark);
        }
        out
    }

    #[test]
    fn fragments_every_second_with_continuous_decode_times() {
        let mut m = Mp4Mux::new(Some(&avc_header()), Some(&aac_header()), false);
        let file = record(&mut m);
        let kinds: Vec<_> = fmp4::boxes(&file).map(|b| b.unwrap().kind).collect();
        assert_eq!(&kinds[..3], [*b"ftyp", *b"moov", *b"free"]);
        assert!(file.windows(16).any(|w| w == MARK_FINISHED));
        let runs = runs(&file);
        let video: Vec<_> = runs.iter().filter(|r| r.0 == VIDEO_TRACK).collect();
        assert_eq!(video.len(), 3, "one fragment a second");
        let mut next = 0;
        for (_, base, durations) in &video {
            assert_eq!(*base, next, "no gap, no overlap");
            assert!(durations.iter().all(|&d| d == 40));
            next = base + durations.iter().map(|&d| u64::from(d)).sum::<u64>();
        }
        assert_eq!(next, 3000);
        let audio: Vec<_> = runs.iter().filter(|r| r.0 == AUDIO_TRACK).collect();
        let mut next = 0;
        for (_, base, durations) in &audio {
            assert_eq!(*base, next);
            assert!(durations.iter().all(|&d| d == 1024), "millisecond rounding does not leak in");
            next = base + durations.iter().map(|&d| u64::from(d)).sum::<u64>();
        }
        assert_eq!(m.duration_ms(), 3000, "the last video frame ends at 3000 ms");
        assert!(m.take_warnings().is_empty());
    }

    #[test]
    fn an_audio_gap_is_kept_not_squeezed() {
        let mut m = Mp4Mux::new(None, Some(&aac_header()), false);
        let mut out = Vec::new();
        for ms in [0, 23, 46, 500, 523] {
            m.push(ms, &audio(), &mut out);
        }
        m.finish(&mut out);
        let durations: Vec<u32> = runs(&out).into_iter().flat_map(|r| r.2).collect();
        assert_eq!(durations, [1024, 1024, 20_002, 1024, 1024]);
    }

    #[test]
    fn unsupported_codecs_are_left_out_with_a_warning() {
        let vp6 = video_frame(vec![0x14, 0, 1, 2]);
        let mp3 = Frame::audio(0, Bytes::from_static(&[0x2F, 0xFF]));
        let mut m = Mp4Mux::new(Some(&vp6), Some(&mp3), false);
        assert!(!m.has_tracks());
        let w = m.take_warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("VP6") && w[1].contains("MP3"), "{w:?}");
        let mut out = Vec::new();
        m.push(0, &video(true, 0), &mut out);
        assert!(out.is_empty());
    }

    /// Samples per fragment in `file`.
    fn fragment_sizes(file: &[u8]) -> Vec<usize> {
        fmp4::boxes(file)
            .map(Result::unwrap)
            .filter(|b| &b.kind == b"moof")
            .map(|b| fmp4::parse_moof(&file[b.offset..b.end()]).unwrap().iter().map(|r| r.samples.len()).sum())
            .collect()
    }

    /// Timestamps standing still: fragments close by time, so before the bound nothing was
    /// ever written and every frame stayed in memory. Video and audio, video alone, and audio
    /// alone in a recording that also has a video track (no keyframe ever comes).
    #[test]
    fn frozen_timestamps_cut_fragments_at_the_sample_bound() {
        for (has_video, push_video) in [(true, true), (true, false), (false, false)] {
            let vh = avc_header();
            let mut m = Mp4Mux::new(has_video.then_some(&vh), Some(&aac_header()), false);
            let mut out = Vec::new();
            let mut most = 0;
            for n in 0..3 * MAX_PENDING_SAMPLES {
                if push_video {
                    m.push(7000, &video(n % 50 == 0, 0), &mut out);
                }
                m.push(7000, &audio(), &mut out);
                most = most.max(m.pending().0);
            }
            assert!(most <= MAX_PENDING_SAMPLES, "{most} samples waiting");
            let sizes = fragment_sizes(&out);
            assert!(sizes.len() >= 2, "fragments cut without time passing: {sizes:?}");
            assert!(sizes.iter().all(|&n| n <= MAX_PENDING_SAMPLES), "{sizes:?}");
            let w = m.take_warnings();
            assert_eq!(w.len(), 1, "said once per recording: {w:?}");
            assert!(w[0].contains("standing still"), "{w:?}");
        }
    }

    #[test]
    fn frozen_timestamps_cut_fragments_at_the_byte_bound() {
        let mut m = Mp4Mux::new(Some(&avc_header()), None, false);
        let mut out = Vec::new();
        let frame_len = 256 * 1024;
        let mut body = video_body(true, 0);
        body.resize(9 + frame_len, 0x88);
        let body = video_frame(body);
        let (mut most, mut fragments) = (0, 0);
        for _ in 0..3 * (MAX_PENDING_BYTES / frame_len) {
            m.push(0, &body, &mut out);
            most = most.max(m.pending().1);
            fragments += fragment_sizes(&out).len();
            out.clear();
        }
        assert!(most <= MAX_PENDING_BYTES + frame_len, "{most} bytes waiting");
        assert!(fragments >= 2, "cut by size: {fragments} fragments");
        assert_eq!(m.take_warnings().len(), 1);
    }

    /// Timestamps from the far end of the range: no overflow, no panic, and the file goes on.
    #[test]
    fn huge_timestamps_do_not_overflow() {
        let mut m = Mp4Mux::new(Some(&avc_header()), Some(&aac_header()), true);
        let mut out = Vec::new();
        for ms in [0, u64::MAX, u64::MAX - 1, 3, u64::MAX / 44_100, u64::MAX, 0, u64::MAX] {
            m.push(ms, &video(true, 0), &mut out);
            m.push(ms, &audio(), &mut out);
        }
        m.flush(&mut out);
        let _ = m.duration_ms();
        assert!(m.finish(&mut out).is_some());
        assert!(!runs(&out).is_empty());
    }

    #[test]
    fn rewinding_before_the_header_writes_it_again() {
        let mut m = Mp4Mux::new(Some(&avc_header()), None, true);
        let mut out = Vec::new();
        m.push(0, &video(true, 0), &mut out);
        assert!(out.windows(16).any(|w| w == MARK_RECORDING_FASTSTART));
        m.rewind(0);
        let mut again = Vec::new();
        m.push(40, &video(false, 0), &mut again);
        assert_eq!(&again[4..8], b"ftyp");
        assert_eq!(m.len(), again.len() as u64);
    }
}

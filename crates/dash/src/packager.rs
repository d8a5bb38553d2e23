//! The packager: RTMP messages in, fragments and MPD changes out.
//!
//! Cutting follows nginx-rtmp (`ngx_rtmp_dash_update_fragments`): a stream with video is cut at
//! a keyframe once the fragment is `dash_fragment` long; a stream without video on audio. A
//! fragment is cut anyway at twice `dash_fragment`, at [`MAX_FRAGMENT_BYTES`] or at
//! [`MAX_FRAGMENT_SAMPLES`] (nginx-rtmp: 2 × fragment, 10 MB), so what one stream holds is
//! bounded whatever its publisher sends. Both tracks are cut at the same moment; each track
//! lists its own fragments' exact times (`SegmentTimeline`), so the MPD says what the media holds.
//!
//! Low latency ([`Settings::part`]): each fragment is also given out while it is being built, as
//! CMAF chunks ([`Event::Part`]: a `moof` + `mdat` every part duration, cut at any frame; the
//! first one starts with the `styp` and, for video, the keyframe), and the fragment being built is
//! listed in the MPD with the nominal `dash_fragment` duration once its first chunk is out. The
//! finished fragment ([`Event::Fragment`]) is exactly its chunks one after the other.
//!
//! Publishers' clocks are not trusted: a timestamp more than [`MAX_STEP_MS`] ahead of or
//! [`MAX_BACK_MS`] behind the previous one is a jump and is taken out of the timeline; each
//! track's decode times only go forward.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use flv::{AudioCodec, AudioHeader, AudioPacket, VideoCodec, VideoHeader, VideoPacket};

use crate::mpd::{self, AudioRep, Timeline, VideoRep};

/// Most sample bytes one track's fragment holds before it is cut (nginx-rtmp's 10 MB).
pub const MAX_FRAGMENT_BYTES: usize = 10 << 20;
/// Most samples one track's fragment holds before it is cut (a publisher sending tiny frames
/// with a frozen clock cannot grow the sample tables without end).
pub const MAX_FRAGMENT_SAMPLES: usize = 1 << 16;
/// A timestamp this far (ms) past the previous one is a jump, not a pause.
const MAX_STEP_MS: i64 = 10_000;
/// A timestamp this far (ms) before the previous one is a jump (audio and video interleave
/// with smaller differences).
const MAX_BACK_MS: i64 = 2_000;
/// Video decode times and the MPD count milliseconds, as RTMP does.
const MS: u32 = 1000;
/// AAC frames carry 1024 samples.
const AAC_FRAME_SAMPLES: u64 = 1024;
/// Opus at 48 kHz when a packet's TOC byte cannot be read.
const OPUS_DEFAULT_SAMPLES: u64 = 960;
/// An audio timestamp further than this many frames from the sample count restarts the count
/// (at the next fragment, so a fragment's run stays contiguous).
const AUDIO_RESYNC_FRAMES: u64 = 2;
const VIDEO_TRACK: u32 = 1;
const AUDIO_TRACK: u32 = 2;

/// What the packager needs from the application's `dash_*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `dash_fragment`.
    pub fragment: Duration,
    /// `dash_playlist_length`: the MPD lists `playlist_length / fragment` fragments.
    pub playlist_length: Duration,
    /// `dash_nested`.
    pub nested: bool,
    /// Low latency: the CMAF chunk duration (`dash_part_duration` with `dash_low_latency on`);
    /// `None`: each fragment is given out once, finished.
    pub part: Option<Duration>,
}

impl Default for Settings {
    /// nginx-rtmp's defaults (`dash_fragment 5s`, `dash_playlist_length 30s`), flat, not low
    /// latency.
    fn default() -> Self {
        Settings {
            fragment: Duration::from_secs(5),
            playlist_length: Duration::from_secs(30),
            nested: false,
            part: None,
        }
    }
}

/// What the caller has to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Write an init segment (file relative to `dash_path`), once per track.
    Init {
        /// `NAME-init.m4v`, nested `NAME/init.m4v`.
        file: String,
        /// `ftyp` + `moov`.
        data: Bytes,
    },
    /// Low latency: a CMAF chunk of the fragment `file` being built; append `data` to what the
    /// earlier parts of `file` gave (the first part starts with the `styp`). An
    /// [`Event::Fragment`] of the same `file`, the parts one after the other, follows.
    Part {
        /// As the [`Event::Fragment`] that follows.
        file: String,
        /// `moof` + `mdat` (the first: `styp` + `moof` + `mdat`).
        data: Bytes,
    },
    /// Write a media fragment.
    Fragment {
        /// `NAME-T.m4v`, nested `NAME/T.m4v` (`.m4a` for audio).
        file: String,
        /// `styp` + `moof` + `mdat`.
        data: Bytes,
    },
    /// A fragment left the MPD's window: its file may go (after players had time to fetch it).
    Expired {
        /// As it was given in [`Event::Fragment`].
        file: String,
    },
    /// The MPD changed: render [`Packager::mpd`] and write it.
    Manifest,
    /// Something was skipped; said once per kind.
    Warning(String),
}

struct VideoTrack {
    codec: VideoCodec,
    config: Bytes,
    width: u16,
    height: u16,
}

struct AudioTrack {
    codec: AudioCodec,
    config: Bytes,
    sample_rate: u32,
    channels: u16,
}

/// One track's open fragment and listed ones.
#[derive(Default)]
struct TrackState {
    /// Samples not in a chunk yet (all of the fragment's, without low latency).
    samples: Vec<fmp4::Sample>,
    /// Sample bytes of the open fragment, chunks written included.
    bytes: usize,
    /// Samples of the open fragment, chunks written included.
    count: usize,
    /// Decode time (track timescale) of the first sample in `samples`.
    base: Option<u64>,
    sequence: u32,
    /// The fragment being built, once its first chunk is encoded.
    open: Option<OpenFragment>,
    /// The fragments the MPD lists: (start ms, duration ms, bytes).
    listed: VecDeque<(u64, u64, usize)>,
}

/// A fragment with chunks encoded.
struct OpenFragment {
    /// Its start on the timeline (ms): its name.
    start: u64,
    /// Where its last chunk ends (track timescale).
    end: u64,
    /// `styp` and the chunks so far.
    data: Vec<u8>,
}

impl TrackState {
    fn push(&mut self, at: u64, sample: fmp4::Sample) {
        if self.samples.is_empty() {
            self.base = Some(at);
        }
        self.bytes += sample.data.len();
        self.count += 1;
        self.samples.push(sample);
    }

    fn full(&self) -> bool {
        self.bytes >= MAX_FRAGMENT_BYTES || self.count >= MAX_FRAGMENT_SAMPLES
    }

    /// Duration of the samples not in a chunk yet (track timescale).
    fn pending(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.duration)).sum()
    }

    fn timeline(&self) -> Timeline {
        self.listed.iter().map(|(t, d, _)| (*t, *d)).collect()
    }

    /// Bits per second over the listed fragments.
    fn bandwidth(&self) -> u64 {
        let (ms, bytes) = self.listed.iter().fold((0, 0), |(ms, b), (_, d, n)| (ms + d, b + *n as u64));
        (bytes * 8 * 1000).checked_div(ms).unwrap_or(0).max(1)
    }
}

/// One stream's DASH packager.
pub struct Packager {
    s: Settings,
    name: String,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    /// The tracks the MPD has, fixed by the first fragment (as nginx-rtmp).
    started: Option<(bool, bool)>,
    /// The publisher's clock: the last raw timestamp and where it is on our timeline (ms).
    last_raw: Option<u32>,
    now: u64,
    /// Wall clock (Unix ms) at timeline 0: `availabilityStartTime`.
    anchor_ms: u64,
    /// Where the open fragment starts on the timeline (ms).
    frag_start: u64,
    /// The last video frame, waiting for the next one to know its duration: (dts, sample).
    held: Option<(u64, fmp4::Sample)>,
    last_video_dts: Option<u64>,
    video_interval: u64,
    v: TrackState,
    a: TrackState,
    /// Decode time of the next audio sample: the previous one's plus its sample count.
    audio_next: Option<u64>,
    ended: bool,
    events: VecDeque<Event>,
    warned: Vec<&'static str>,
}

impl Packager {
    /// A packager for stream `name` (checked by the caller: it becomes file names).
    pub fn new(s: Settings, name: &str) -> Self {
        Packager {
            s,
            name: name.to_string(),
            video: None,
            audio: None,
            started: None,
            last_raw: None,
            now: 0,
            anchor_ms: 0,
            frag_start: 0,
            held: None,
            last_video_dts: None,
            video_interval: 40,
            v: TrackState::default(),
            a: TrackState::default(),
            audio_next: None,
            ended: false,
            events: VecDeque::new(),
            warned: Vec::new(),
        }
    }

    /// The next thing to do, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The stream ended ([`Packager::finish`]): the MPD is static.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether a fragment was written: before that there is no MPD to serve.
    pub fn has_fragments(&self) -> bool {
        !self.v.listed.is_empty() || !self.a.listed.is_empty()
    }

    /// Sample bytes held for the open fragment.
    pub fn held_bytes(&self) -> usize {
        self.v.bytes + self.a.bytes + self.held.as_ref().map_or(0, |(_, s)| s.data.len())
    }

    /// The MPD's file name relative to `dash_path`.
    pub fn manifest_file(&self) -> String {
        crate::manifest_file(&self.name, self.s.nested)
    }

    /// The init segments' file names (for cleanup).
    pub fn init_files(&self) -> Vec<String> {
        let (video, audio) = self.started.unwrap_or_default();
        [(video, "m4v"), (audio, "m4a")]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, ext)| self.file("init", ext))
            .collect()
    }

    /// The file names of the fragments the MPD lists (for cleanup).
    pub fn fragment_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (ext, track) in [("m4v", &self.v), ("m4a", &self.a)] {
            out.extend(track.listed.iter().map(|(t, _, _)| self.file(&t.to_string(), ext)));
        }
        out
    }

    /// Starts the timeline at `ms` instead of 0 (before the first message): a stream published
    /// again continues after the previous publish, so no fragment name is used twice.
    pub fn start_at(&mut self, ms: u64) {
        if self.last_raw.is_none() {
            self.now = ms;
        }
    }

    /// Where the listed fragments end on the timeline (ms); before any, where it starts.
    pub fn end(&self) -> u64 {
        let ends = [&self.v, &self.a].into_iter().filter_map(|t| t.listed.back().map(|(t, d, _)| t + d));
        ends.max().unwrap_or(self.now)
    }

    /// The files of the fragments that follow the listed ones, while live: a player reading the
    /// timeline ahead asks for these names before they exist (each track's timeline is
    /// contiguous, so the next start is the last one's end).
    pub fn next_files(&self) -> Vec<String> {
        let Some((video, audio)) = self.started.filter(|_| !self.ended) else { return Vec::new() };
        let mut out = Vec::new();
        for (on, ext, track) in [(video, "m4v", &self.v), (audio, "m4a", &self.a)] {
            if let Some((t, d, _)) = track.listed.back().filter(|_| on) {
                out.push(self.file(&(t + d).to_string(), ext));
            }
        }
        out
    }

    /// A video message: its parsed tag header and body.
    pub fn push_video(&mut self, timestamp: u32, header: Option<&VideoHeader>, body: &Bytes, now_ms: u64) {
        let Some(h) = header else { return };
        let Some(data) = payload(h.payload_offset, h.payload_end, body) else { return };
        if self.ended || h.multitrack.is_some() && h.track_id != 0 {
            return;
        }
        if h.is_sequence_header() {
            return self.set_video(h.codec, data);
        }
        if h.packet != VideoPacket::Coded || data.is_empty() {
            return;
        }
        let t = self.clock(timestamp);
        let key = h.is_keyframe();
        if self.started.is_none() {
            if self.video.is_none() || !key {
                return;
            }
            self.start(t, now_ms);
        }
        if self.started.is_some_and(|(video, _)| !video) || self.video.as_ref().is_none_or(|v| v.codec != h.codec) {
            return;
        }
        let dts = match self.last_video_dts {
            Some(last) if t <= last => last + 1,
            _ => t,
        };
        if let Some(last) = self.last_video_dts.filter(|l| (1..1000).contains(&(dts - l))) {
            self.video_interval = dts - last;
        }
        self.last_video_dts = Some(dts);
        self.finish_held(dts);
        let long = dts.saturating_sub(self.frag_start) >= self.fragment_ms();
        if key && long {
            self.cut(dts);
        } else if dts > self.frag_start && self.must_force(dts) {
            self.warn("forced", "a fragment reached its length or size limit without a keyframe; cut anyway");
            self.cut(dts);
        }
        let cts = h.composition_time.clamp(0, 10_000);
        let sample = fmp4::Sample { duration: 0, keyframe: key, cts_offset: cts, data };
        self.held = Some((dts, sample));
    }

    /// An audio message: its parsed tag header and body.
    pub fn push_audio(&mut self, timestamp: u32, header: Option<&AudioHeader>, body: &Bytes, now_ms: u64) {
        let Some(h) = header else { return };
        let Some(data) = payload(h.payload_offset, h.payload_end, body) else { return };
        if self.ended || h.multitrack.is_some() && h.track_id != 0 {
            return;
        }
        if h.is_sequence_header() {
            return self.set_audio(h.codec, data);
        }
        if h.packet != AudioPacket::Coded || data.is_empty() {
            return;
        }
        let t = self.clock(timestamp);
        if self.started.is_none() {
            // With video, fragments start at its first keyframe.
            if self.audio.is_none() || self.video.is_some() {
                return;
            }
            self.start(t, now_ms);
        }
        if self.started.is_some_and(|(_, audio)| !audio) || self.audio.as_ref().is_none_or(|a| a.codec != h.codec) {
            return;
        }
        let Some(a) = &self.audio else { return };
        let rate = u64::from(a.sample_rate.max(1));
        let samples = match a.codec {
            AudioCodec::Opus => hls::segmenter::opus_packet_samples(&data).unwrap_or(OPUS_DEFAULT_SAMPLES),
            _ => AAC_FRAME_SAMPLES,
        };
        let audio_only = self.started.is_some_and(|(video, _)| !video);
        if audio_only {
            if t.saturating_sub(self.frag_start) >= self.fragment_ms() && self.a.count > 0 {
                self.cut(t);
            } else if self.must_force(t) && self.a.count > 0 {
                self.warn("forced", "a fragment reached its size limit; cut anyway");
                self.cut(t);
            }
        } else if self.a.full() {
            return self.warn("audio full", "audio waits for a video keyframe past its fragment limit; audio dropped");
        }
        let at = t * rate / 1000;
        let next = match self.audio_next {
            Some(n) if self.a.count > 0 || n.abs_diff(at) <= AUDIO_RESYNC_FRAMES * samples => n,
            _ => at,
        };
        self.audio_next = Some(next + samples);
        let sample = fmp4::Sample { duration: samples as u32, keyframe: true, cts_offset: 0, data };
        self.a.push(next, sample);
        if self.part_due(false) {
            self.flush_chunk(false);
        }
    }

    /// The stream ended: the open fragment is written and the MPD turns static.
    pub fn finish(&mut self) {
        if self.ended {
            return;
        }
        if self.started.is_some() {
            let end = match &self.held {
                Some((dts, _)) => dts + self.video_interval,
                None => self.now.max(self.frag_start + 1),
            };
            self.finish_held(end);
            self.cut(end);
        }
        self.ended = true;
        self.events.push_back(Event::Manifest);
    }

    /// The MPD: dynamic while the stream is live, static once it ended. `now_ms`: the wall
    /// clock (Unix ms), for `publishTime`.
    pub fn mpd(&self, now_ms: u64) -> String {
        let prefix = if self.s.nested { String::new() } else { format!("{}-", self.name) };
        let (video, audio) = self.representations(&prefix, 0);
        mpd::render(&mpd::Manifest {
            dynamic: !self.ended,
            availability_start_ms: self.anchor_ms,
            publish_ms: now_ms,
            fragment_ms: self.fragment_ms(),
            window_ms: self.s.playlist_length.as_millis() as u64,
            video: video.into_iter().collect(),
            audio: audio.into_iter().collect(),
            low_latency: self.low_latency(),
        })
    }

    /// Wall clock (Unix ms) at this stream's timeline 0 (its MPD's `availabilityStartTime`);
    /// `None` before the first fragment opened.
    pub fn anchor_ms(&self) -> Option<u64> {
        self.started.map(|_| self.anchor_ms)
    }

    /// This stream's Representations, for its own MPD or a variant MPD that lists it: file
    /// names start with `prefix` there, and its timeline is at `offset` ms at that MPD's
    /// `availabilityStartTime`.
    pub fn representations(&self, prefix: &str, offset: u64) -> (Option<VideoRep>, Option<AudioRep>) {
        let (video_on, audio_on) = self.started.unwrap_or_default();
        let video = self.video.as_ref().filter(|_| video_on).map(|v| VideoRep {
            prefix: prefix.to_string(),
            offset,
            id: format!("{}_{}", self.name, video_name(v.codec)),
            codecs: hls::master::video_codec(v.codec, &v.config, hls::Container::Fmp4).unwrap_or_default(),
            width: v.width,
            height: v.height,
            bandwidth: self.v.bandwidth(),
            timeline: self.timeline(&self.v),
        });
        let audio = self.audio.as_ref().filter(|_| audio_on).map(|a| AudioRep {
            prefix: prefix.to_string(),
            offset,
            id: format!("{}_{}", self.name, audio_name(a.codec)),
            codecs: hls::master::audio_codec(a.codec, hls::master::aac_object_type(&a.config)).unwrap_or_default(),
            sample_rate: a.sample_rate,
            channels: a.channels,
            bandwidth: self.a.bandwidth(),
            timeline: self.timeline(&self.a),
        });
        (video, audio)
    }

    /// A track's timeline in the MPD: the listed fragments, and with low latency the one being
    /// built at its nominal duration (players fetch it while it grows; the next MPD has its
    /// real duration).
    fn timeline(&self, track: &TrackState) -> Timeline {
        let mut t = track.timeline();
        if let Some(open) = track.open.as_ref().filter(|_| self.s.part.is_some()) {
            t.push((open.start, self.fragment_ms()));
        }
        t
    }

    /// The low-latency settings of this stream's MPD, if it is low latency.
    pub fn low_latency(&self) -> Option<mpd::LowLatency> {
        self.s.part.map(|part| mpd::LowLatency::new(self.fragment_ms(), part.as_millis() as u64))
    }

    fn fragment_ms(&self) -> u64 {
        (self.s.fragment.as_millis() as u64).max(1)
    }

    /// Fragments the MPD lists: `playlist_length / fragment`, at least one (nginx-rtmp's
    /// `winfrags`).
    fn window(&self) -> usize {
        (self.s.playlist_length.as_millis() as u64 / self.fragment_ms()).max(1) as usize
    }

    fn must_force(&self, t: u64) -> bool {
        t.saturating_sub(self.frag_start) >= 2 * self.fragment_ms() || self.v.full() || self.a.full()
    }

    /// The publisher's timestamp on our timeline: steps within bounds are taken as they are,
    /// jumps are taken out (one frame interval passes instead).
    fn clock(&mut self, raw: u32) -> u64 {
        if let Some(last) = self.last_raw {
            let step = i64::from(raw.wrapping_sub(last) as i32);
            if (-MAX_BACK_MS..=MAX_STEP_MS).contains(&step) {
                self.now = self.now.saturating_add_signed(step);
            } else {
                // As if one frame interval passed.
                self.now = self.now.saturating_add(self.video_interval);
                self.warn("jump", "the publisher's timestamps jumped; the jump is taken out of the timeline");
            }
        }
        self.last_raw = Some(raw);
        self.now
    }

    /// The first fragment opens: the tracks are fixed and their init segments written.
    fn start(&mut self, t: u64, now_ms: u64) {
        let (video, audio) = (self.video.is_some(), self.audio.is_some());
        self.started = Some((video, audio));
        self.frag_start = t;
        self.anchor_ms = now_ms.saturating_sub(t);
        if let Some(v) = &self.video {
            let codec = match v.codec {
                VideoCodec::Hevc => fmp4::Codec::Hevc { hvcc: v.config.clone(), width: v.width, height: v.height },
                VideoCodec::Av1 => fmp4::Codec::Av1 { av1c: v.config.clone(), width: v.width, height: v.height },
                _ => fmp4::Codec::Avc { avcc: v.config.clone(), width: v.width, height: v.height },
            };
            self.init("m4v", fmp4::TrackInfo { id: VIDEO_TRACK, timescale: MS, codec });
        }
        if let Some(a) = &self.audio {
            let codec = match a.codec {
                AudioCodec::Opus => {
                    fmp4::Codec::Opus { channels: a.channels, pre_skip: 312, input_sample_rate: 48_000 }
                }
                _ => fmp4::Codec::Aac { asc: a.config.clone(), sample_rate: a.sample_rate, channels: a.channels },
            };
            self.init("m4a", fmp4::TrackInfo { id: AUDIO_TRACK, timescale: a.sample_rate.max(1), codec });
        }
    }

    fn init(&mut self, ext: &str, track: fmp4::TrackInfo) {
        match fmp4::init_segment(&[track]) {
            Ok(data) => self.events.push_back(Event::Init { file: self.file("init", ext), data: Bytes::from(data) }),
            Err(_) => self.warn("init", "an init segment could not be written (codec configuration too large)"),
        }
    }

    /// The held video frame lasts until `next_dts`; a pause over a second ends it one frame
    /// interval after it starts (the next fragment starts with a gap in the timeline).
    fn finish_held(&mut self, next_dts: u64) {
        if let Some((dts, mut s)) = self.held.take() {
            let d = next_dts.saturating_sub(dts);
            s.duration = if d == 0 || d > 1000 { self.video_interval as u32 } else { d as u32 };
            self.v.push(dts, s);
            if self.part_due(true) {
                self.flush_chunk(true);
            }
        }
    }

    /// Low latency: whether a track's samples not in a chunk yet make a part.
    fn part_due(&self, video: bool) -> bool {
        let Some(part) = self.s.part else { return false };
        let (track, rate) = if video { (&self.v, u64::from(MS)) } else { (&self.a, self.audio_rate()) };
        track.pending() * 1000 >= part.as_millis() as u64 * rate
    }

    fn audio_rate(&self) -> u64 {
        self.audio.as_ref().map_or(1, |a| u64::from(a.sample_rate.max(1)))
    }

    /// Closes the open fragment of each track at `at` (ms): its files, the window, the MPD.
    fn cut(&mut self, at: u64) {
        for video in [true, false] {
            self.flush_chunk(video);
            self.close_fragment(video);
        }
        self.v = TrackState { bytes: 0, count: 0, base: None, samples: Vec::new(), ..std::mem::take(&mut self.v) };
        self.a = TrackState { bytes: 0, count: 0, base: None, samples: Vec::new(), ..std::mem::take(&mut self.a) };
        self.frag_start = at;
        self.events.push_back(Event::Manifest);
    }

    /// Encodes a track's samples not in a chunk yet as one `moof` + `mdat`, appended to the open
    /// fragment (opened here, with its `styp`, by the first chunk); with low latency given out
    /// at once ([`Event::Part`]).
    fn flush_chunk(&mut self, video: bool) {
        let rate = if video { u64::from(MS) } else { self.audio_rate() };
        let state = if video { &mut self.v } else { &mut self.a };
        let Some(base) = state.base.filter(|_| !state.samples.is_empty()) else { return };
        let samples = std::mem::take(&mut state.samples);
        state.base = None;
        let end = base + samples.iter().map(|s| u64::from(s.duration)).sum::<u64>();
        let start = base * 1000 / rate;
        // A start already listed (a track whose clock stood still) would overwrite its file.
        if state.open.is_none() && state.listed.back().is_some_and(|(t, d, _)| start < t + d) {
            return self.warn("overlap", "a fragment overlapping the previous one was dropped");
        }
        let (track_id, ext) = if video { (VIDEO_TRACK, "m4v") } else { (AUDIO_TRACK, "m4a") };
        let run = fmp4::TrackRun { track_id, base_decode_time: base, samples: &samples };
        let Ok(chunk) = fmp4::fragment(state.sequence + 1, &[run]) else {
            return self.warn("fragment", "a fragment could not be written; skipped");
        };
        state.sequence += 1;
        let first = state.open.is_none();
        let open = state.open.get_or_insert_with(|| OpenFragment { start, end, data: fmp4::segment_type() });
        let from = if first { 0 } else { open.data.len() };
        open.data.extend_from_slice(&chunk);
        open.end = end;
        if self.s.part.is_some() {
            let data = Bytes::copy_from_slice(&open.data[from..]);
            let start = open.start;
            let file = self.file(&start.to_string(), ext);
            self.events.push_back(Event::Part { file, data });
            if first {
                // The MPD lists the fragment being built.
                self.events.push_back(Event::Manifest);
            }
        }
    }

    /// Lists a track's open fragment and gives it out whole; older ones leave the window.
    fn close_fragment(&mut self, video: bool) {
        let rate = if video { u64::from(MS) } else { self.audio_rate() };
        let ext = if video { "m4v" } else { "m4a" };
        let window = self.window();
        let state = if video { &mut self.v } else { &mut self.a };
        let Some(open) = state.open.take() else { return };
        let end = open.end * 1000 / rate;
        state.listed.push_back((open.start, end.saturating_sub(open.start).max(1), open.data.len()));
        let mut expired = Vec::new();
        while state.listed.len() > window {
            expired.extend(state.listed.pop_front().map(|(t, _, _)| t));
        }
        let file = self.file(&open.start.to_string(), ext);
        self.events.push_back(Event::Fragment { file, data: Bytes::from(open.data) });
        for t in expired {
            self.events.push_back(Event::Expired { file: self.file(&t.to_string(), ext) });
        }
    }

    fn file(&self, stem: &str, ext: &str) -> String {
        if self.s.nested {
            format!("{}/{stem}.{ext}", self.name)
        } else {
            format!("{}-{stem}.{ext}", self.name)
        }
    }

    fn set_video(&mut self, codec: VideoCodec, config: Bytes) {
        if !matches!(codec, VideoCodec::Avc | VideoCodec::Hevc | VideoCodec::Av1) {
            return self.warn("video codec", "this video codec cannot be carried in DASH here; video skipped");
        }
        if let (Some(_), Some(v)) = (self.started, &self.video) {
            if v.config != config {
                self.warn(
                    "video config",
                    "the video configuration changed mid-stream; the init segment keeps the first",
                );
            }
            return;
        }
        let dims = flv::codec::parse_video_config(codec, &config).ok().flatten();
        let (width, height) = dims.map_or((0, 0), |p| (p.width as u16, p.height as u16));
        self.video = Some(VideoTrack { codec, config, width, height });
    }

    fn set_audio(&mut self, codec: AudioCodec, config: Bytes) {
        if self.started.is_some() {
            return;
        }
        let (sample_rate, channels) = match codec {
            AudioCodec::Aac => match mpegts::es::parse_audio_specific_config(&config) {
                Ok(c) => (c.sample_rate, u16::from(c.channels)),
                Err(_) => return self.warn("aac", "the AAC sequence header could not be parsed; audio skipped"),
            },
            AudioCodec::Opus => (48_000, flv::codec::parse_opus_head(&config).map_or(2, |p| u16::from(p.channels))),
            _ => return self.warn("audio codec", "this audio codec cannot be carried in DASH here; audio skipped"),
        };
        self.audio = Some(AudioTrack { codec, config, sample_rate, channels });
    }

    fn warn(&mut self, kind: &'static str, what: &str) {
        if !self.warned.contains(&kind) {
            self.warned.push(kind);
            self.events.push_back(Event::Warning(what.to_string()));
        }
    }
}

/// The codec payload a caller-parsed header locates in `body`; `None` when the two do not
/// belong together, rather than a slice out of bounds.
fn payload(offset: usize, end: usize, body: &Bytes) -> Option<Bytes> {
    (offset <= end && end <= body.len()).then(|| body.slice(offset..end))
}

/// nginx-rtmp names Representations `NAME_H264` and `NAME_AAC`.
fn video_name(codec: VideoCodec) -> &'static str {
    match codec {
        VideoCodec::Hevc => "H265",
        VideoCodec::Av1 => "AV1",
        _ => "H264",
    }
}

fn audio_name(codec: AudioCodec) -> &'static str {
    match codec {
        AudioCodec::Opus => "OPUS",
        _ => "AAC",
    }
}

#[cfg(test)]
#[path = "packager_tests.rs"]
mod tests;

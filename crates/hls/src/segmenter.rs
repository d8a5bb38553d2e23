//! The segmenter: one publisher's RTMP messages in, segments, parts, keys and playlists out.
//!
//! Cutting follows nginx-rtmp (`ngx_rtmp_hls_update_fragment`): a stream with video is cut at a
//! keyframe once the segment is `hls_fragment` long (`plain`) or when the keyframe falls in the
//! next `hls_fragment` slot of the timeline (`aligned`); a stream without video is cut on audio;
//! a segment longer than `hls_max_fragment`, or larger than [`Segmenter::max_segment_bytes`],
//! forces a cut marked as a discontinuity, and video is then skipped up to the next keyframe, so a
//! segment never starts mid-GOP. Audio for MPEG-TS is gathered into one PES until
//! `hls_audio_buffer_size` fills or `hls_max_audio_delay` passes, and its timestamps are smoothed
//! by sample counting within `hls_sync`.
//!
//! Publishers' clocks are not trusted: jumps (an encoder restart, wall-clock stamps, garbage)
//! are taken out of the timeline (see `timeline`) and the next segment, cut at a keyframe, is
//! marked `#EXT-X-DISCONTINUITY`; each track's timestamps are made strictly increasing, so
//! segment durations stay near `hls_fragment` and DTS never goes back within a track.
//!
//! Call [`Segmenter::push_video`] or [`Segmenter::push_audio`] for every message, with its tag
//! header already parsed ([`flv::parse_video`], [`flv::parse_audio`]: sluice does it once per
//! message, for every output), then drain [`Segmenter::poll_event`]; the caller writes files,
//! serves them and renders [`Segmenter::playlist`] when told it changed.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use flv::{AudioCodec, VideoCodec};
use mpegts::es::{self, AacConfig, ParameterSets};
use mpegts::{AudioType, Muxer, Pes, Track, VideoType};

use crate::crypt;
use crate::playlist::{KeyRef, LowLatency, MediaPlaylist, PartEntry, PlaylistType, Restored, SegmentEntry};
use crate::timeline::{Timeline, TrackClock};

/// 90 kHz: MPEG-TS time and our internal timeline.
const HZ: u64 = 90_000;
/// The shortest segment cut anywhere but at the end of the stream (`#EXTINF` never says 0.000).
const MIN_SEGMENT: u64 = HZ / 100;
/// After a timestamp jump the next keyframe starts a segment, if the open one is this long.
const MIN_JUMP_SEGMENT: u64 = HZ / 2;
/// Largest composition time offset (PTS - DTS) taken from a publisher.
const MAX_CTS: i64 = 10 * HZ as i64;
/// Bytes a second a segment is allowed for [`Segmenter::max_segment_bytes`] (64 MiB/s is beyond
/// any RTMP ingest).
const MAX_SEGMENT_RATE: u64 = 8 << 20;
/// Bounds of [`Segmenter::max_segment_bytes`]: above the largest RTMP message (16 MiB) with
/// muxing overhead, below what a few hundred streams can hold at once.
const MIN_SEGMENT_BYTES: usize = 32 << 20;
const MAX_SEGMENT_BYTES: usize = 256 << 20;
/// AAC frames carry 1024 samples (960-sample AAC is not used by RTMP encoders).
const AAC_FRAME_SAMPLES: u64 = 1024;
/// MPEG-1 Layer III frames carry 1152 samples; MPEG-2/2.5 (below 32 kHz) 576.
const MP3_FRAME_SAMPLES: u64 = 1152;
/// Opus at 48 kHz when a packet's TOC byte cannot be read: 20 ms, what encoders send.
const OPUS_DEFAULT_SAMPLES: u64 = 960;
/// fMP4 audio decode times count samples; a publisher's timestamp further than this many frames
/// from the count is a real gap or jump, and the count starts again from it.
const AUDIO_RESYNC_FRAMES: u64 = 2;
/// 90 kHz ticks a millisecond: playlist times are whole milliseconds of the timeline.
const TICKS_PER_MS: u64 = HZ / 1000;
/// The largest single audio frame the TS audio buffer takes (an ADTS frame is at most 8191 bytes).
const MAX_ADTS_FRAME: usize = 8191;

/// Segment container (`hls_fragment_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// MPEG-TS `.ts` segments (H.264, HEVC; AAC, MP3).
    Ts,
    /// CMAF fMP4 `.m4s` segments with an init segment (H.264, HEVC, AV1; AAC, Opus).
    Fmp4,
}

/// Where segments are cut (`hls_fragment_slicing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slicing {
    /// At the first keyframe once the segment is long enough.
    Plain,
    /// At the first keyframe of each `hls_fragment` slot of the timeline.
    Aligned,
}

/// How segment files are named (`hls_fragment_naming`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// By media sequence number.
    Sequential,
    /// By the segment's first timestamp, in 90 kHz units, as nginx-rtmp.
    Timestamp,
    /// By the wall clock in milliseconds when the segment starts.
    System,
}

/// AES-128 encryption (`hls_keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySettings {
    /// A new key every this many segments; 0: one key for the whole publish.
    pub fragments_per_key: u64,
    /// Prefix of key URIs in the playlist (`hls_key_url`).
    pub key_url: String,
}

/// What the segmenter needs from the application's `hls_*` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `hls_fragment`.
    pub fragment: Duration,
    /// `hls_max_fragment`.
    pub max_fragment: Duration,
    /// `hls_playlist_length`.
    pub playlist_length: Duration,
    /// `hls_sync`.
    pub sync: Duration,
    /// `hls_muxdelay`: how far MPEG-TS timestamps run ahead of the PCR.
    pub muxdelay: Duration,
    /// `hls_fragment_slicing`.
    pub slicing: Slicing,
    /// `hls_fragment_naming`.
    pub naming: Naming,
    /// `hls_fragment_naming_granularity`: ids rounded down to a multiple of this (0: off).
    pub naming_granularity: u64,
    /// `hls_type`.
    pub playlist_type: PlaylistType,
    /// `hls_max_audio_delay`.
    pub max_audio_delay: Duration,
    /// `hls_audio_buffer_size`.
    pub audio_buffer_size: usize,
    /// `hls_base_url`.
    pub base_url: String,
    /// `hls_nested`.
    pub nested: bool,
    /// `hls_fragment_type`.
    pub container: Container,
    /// `hls_part_duration` when `hls_low_latency on`.
    pub part_target: Option<Duration>,
    /// `hls_keys` with its settings.
    pub keys: Option<KeySettings>,
    /// A number unique to this publish (sluice uses its start in Unix ms), put in every segment,
    /// part, init and key name (`NAME-SESSION-ID.ts`) so that a later publish of the same name
    /// never reuses a URL for other bytes. `None`: nginx-rtmp's names (`NAME-ID.ts`).
    pub session: Option<u64>,
    /// fMP4 only: a stream with both video and audio is written as two CMAF tracks, one file
    /// each (`NAME-ID.m4s` video, `NAME-ID.a.m4s` audio, each with its own init segment), cut at
    /// the same moments, with a media playlist each and a master playlist that ties them
    /// together ([`Segmenter::split`]): what DASH needs to serve the same files.
    pub demux: bool,
}

impl Default for Settings {
    /// nginx-rtmp's defaults.
    fn default() -> Self {
        Settings {
            fragment: Duration::from_secs(5),
            max_fragment: Duration::from_secs(50),
            playlist_length: Duration::from_secs(30),
            sync: Duration::from_millis(2),
            muxdelay: Duration::from_millis(700),
            slicing: Slicing::Plain,
            naming: Naming::Sequential,
            naming_granularity: 0,
            playlist_type: PlaylistType::Live,
            max_audio_delay: Duration::from_millis(300),
            audio_buffer_size: 1 << 20,
            base_url: String::new(),
            nested: false,
            container: Container::Ts,
            part_target: None,
            keys: None,
            session: None,
            demux: false,
        }
    }
}

/// Settings that cannot work together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// Low-latency parts are served in the clear; encrypted parts are not supported.
    #[error("hls_keys cannot be combined with hls_low_latency")]
    KeysWithLowLatency,
    /// A zero `hls_fragment` would cut at every keyframe of a zero-length slot.
    #[error("hls_fragment must be above zero")]
    ZeroFragment,
}

/// Which tracks a file carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracks {
    /// Video and audio muxed together (MPEG-TS, or fMP4 not split).
    Both,
    /// Video only: a video-only stream, or the video half of a split one.
    Video,
    /// Audio only.
    Audio,
}

/// What the segmenter produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The fMP4 initialisation segment; `file` is relative to `hls_path`.
    Init {
        /// File name.
        file: String,
        /// Its bytes.
        data: Bytes,
        /// What it initialises.
        tracks: Tracks,
    },
    /// A low-latency partial segment, served from memory only.
    Part {
        /// Segment it belongs to.
        msn: u64,
        /// Its index within the segment.
        index: u32,
        /// Name (relative to `hls_path`) it is requested by.
        file: String,
        /// Its bytes.
        data: Bytes,
        /// What it carries (split: one part per track, with the same `msn` and `index`).
        tracks: Tracks,
        /// fMP4: where its segment starts on its track's own clock (ms), as the segment's
        /// `media_ms` will say; `None` while the segment has no sample of the track yet.
        media_start_ms: Option<u64>,
    },
    /// A complete segment (encrypted when `hls_keys` is on).
    Segment {
        /// Media sequence number.
        msn: u64,
        /// File name relative to `hls_path`.
        file: String,
        /// Its bytes.
        data: Bytes,
        /// Seconds.
        duration: f64,
        /// What it carries.
        tracks: Tracks,
        /// fMP4: the decode times its samples cover, in ms of the track's own clock (start,
        /// end), consecutive segments of a track meeting exactly: a DASH `SegmentTimeline`.
        media_ms: Option<(u64, u64)>,
    },
    /// A new AES-128 key; `file` is relative to `hls_key_path`.
    Key {
        /// File name.
        file: String,
        /// The key.
        key: [u8; 16],
    },
    /// A segment left the playlist window; its file may be removed later (`hls_cleanup`).
    Expired {
        /// Its media sequence number: the window now starts after it.
        msn: u64,
        /// File name relative to `hls_path`.
        file: String,
    },
    /// The playlist changed: render [`Segmenter::playlist`].
    Playlist,
    /// Something in the stream that HLS cannot carry; said once per kind.
    Warning(String),
}

/// How far a playlist has come: which segments and parts exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// The segment being written and how many parts it has.
    pub open: Option<(u64, u32)>,
    /// The last complete segment.
    pub last_complete: Option<u64>,
    /// The stream ended.
    pub ended: bool,
    /// `#EXT-X-TARGETDURATION`, seconds.
    pub target_duration: u64,
}

impl Position {
    /// Whether the playlist already holds part `part` of segment `msn` (`_HLS_msn`/`_HLS_part`,
    /// RFC 8216bis §6.2.5.2): a later segment has started, or that segment has that many parts
    /// (without `part`: the segment is complete).
    pub fn has(&self, msn: u64, part: Option<u32>) -> bool {
        if self.ended {
            return true;
        }
        match self.open {
            Some((open, parts)) if msn == open => part.is_some_and(|p| p < parts),
            Some((open, _)) => msn < open,
            None => self.last_complete.is_some_and(|last| msn <= last),
        }
    }
}

/// A video track's setup.
#[derive(Debug, Clone)]
struct VideoTrack {
    codec: VideoCodec,
    config: Bytes,
    params: Option<ParameterSets>,
    width: u16,
    height: u16,
}

#[derive(Debug, Clone)]
struct AudioTrack {
    codec: AudioCodec,
    config: Bytes,
    aac: Option<AacConfig>,
    sample_rate: u32,
    channels: u16,
}

/// A segment being written.
#[derive(Debug)]
struct OpenSegment {
    msn: u64,
    id: u64,
    start: u64,
    discontinuity: bool,
    key: Option<(KeyRef, [u8; 16])>,
    /// Wall clock of `start` (Unix ms), from the stream's anchor.
    program_date_time_ms: u64,
    data: Vec<u8>,
    parts: Vec<PartEntry>,
    part_start: u64,
    part_offset: usize,
    part_independent: bool,
    /// Split fMP4: the audio track's file, cut with `data` (then the video's).
    audio_data: Vec<u8>,
    /// Split: which of its parts have no audio samples.
    audio_part_gaps: Vec<bool>,
    audio_part_offset: usize,
    /// fMP4: the decode times (track timescale) the fragments written cover, per track.
    video_span: Option<(u64, u64)>,
    audio_span: Option<(u64, u64)>,
}

/// A segment in the playlist window.
#[derive(Debug, Clone)]
struct Listed {
    /// As the (video) playlist lists it; split, its `gap` flags are the video track's.
    entry: SegmentEntry,
    file: String,
    /// Split: the audio track's gap flags, of the segment and of each part.
    audio_gaps: Gaps,
}

/// Which of a segment's (or the open one's) files carry no samples of a track: listed with
/// `#EXT-X-GAP` / `GAP=YES`, so players do not load them.
#[derive(Debug, Clone, Default)]
struct Gaps {
    segment: bool,
    parts: Vec<bool>,
}

/// MPEG-TS muxing state.
struct TsState {
    muxer: Muxer,
    /// ADTS/MP3 frames waiting to be written as one PES.
    audio: Vec<u8>,
    audio_pts: u64,
    audio_base: u64,
    audio_frames: u64,
    /// The last audio PES timestamp written: the next is later.
    last_audio_pts: Option<u64>,
}

/// fMP4 muxing state.
#[derive(Default)]
struct Fmp4State {
    init_written: bool,
    sequence: u32,
    video: Vec<fmp4::Sample>,
    video_base: Option<u64>,
    /// The last video frame, waiting for the next one to know its duration: (dts, sample).
    held_video: Option<(u64, fmp4::Sample)>,
    audio: Vec<fmp4::Sample>,
    /// Decode time (track timescale) of the first sample in `audio`.
    audio_base: Option<u64>,
    /// Decode time of the next audio sample: the previous one's plus its sample count.
    audio_next: Option<u64>,
}

impl Fmp4State {
    /// Sample bytes gathered and not yet written as a fragment.
    fn pending_bytes(&self) -> usize {
        let held = self.held_video.iter().map(|(_, s)| s.data.len());
        self.video.iter().chain(&self.audio).map(|s| s.data.len()).chain(held).sum()
    }
}

/// One stream's HLS segmenter.
pub struct Segmenter {
    s: Settings,
    name: String,
    clock: Timeline,
    video_clock: TrackClock,
    audio_clock: TrackClock,
    /// A jump was taken out of the timeline: the next cut is a discontinuity.
    jump_pending: bool,
    /// Video is skipped up to the next keyframe (a segment was cut without one).
    video_needs_key: bool,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    ts: Option<TsState>,
    mp4: Fmp4State,
    open: Option<OpenSegment>,
    window: VecDeque<Listed>,
    next_msn: u64,
    discontinuity_sequence: u64,
    /// The next segment opened starts a discontinuity (a resumed playlist).
    resume_discontinuity: bool,
    /// `#EXT-X-PROGRAM-DATE-TIME` anchor: (wall clock in Unix ms, timeline ms) of the first
    /// segment's start; later segments are dated by media time from it, so each date-time is the
    /// previous one plus the previous `#EXTINF` exactly. `None` re-anchors at the next segment
    /// (a discontinuity: timeline jump, resumed playlist, new publisher).
    pdt_anchor: Option<(u64, u64)>,
    /// Where the last closed segment ends in wall-clock time: a re-anchored date-time never goes
    /// back before it.
    pdt_end: Option<u64>,
    /// `#EXT-X-TARGETDURATION` so far: it never goes down (RFC 8216 §6.2.1: it must not change).
    target_duration: u64,
    /// The longest part so far, ms: `PART-TARGET` says at least this.
    longest_part_ms: u64,
    /// Timeline position the `aligned` slicing counts from, before the first segment opens.
    frag_ts: u64,
    /// The last media timestamp seen (90 kHz) and the last video frame interval.
    last_ts: u64,
    video_interval: u64,
    ended: bool,
    /// fMP4 video and audio are written as separate tracks ([`Settings::demux`], both present
    /// when the first init segment was written); kept across [`Segmenter::interrupt`], as the
    /// playlists that list the files are.
    split: bool,
    /// The highest bit rate of a complete segment (all its files), for the master playlist.
    peak_bps: u64,
    /// What this publish's init segment(s) carry, once written.
    carried: Option<Tracks>,
    key: Option<CurrentKey>,
    new_key: Box<dyn FnMut() -> [u8; 16] + Send>,
    events: VecDeque<Event>,
    warned: Vec<String>,
}

struct CurrentKey {
    id: u64,
    key: [u8; 16],
    uses_left: u64,
}

/// The codec payload a caller-parsed header locates in `body`; `None` when the two do not
/// belong together (a header from another body), rather than a slice out of bounds.
fn codec_payload(offset: usize, end: usize, body: &Bytes) -> Option<Bytes> {
    (offset <= end && end <= body.len()).then(|| body.slice(offset..end))
}

/// A split stream's audio file (or URI) for its video one: `.a` before the extension
/// (`NAME-ID.a.m4s`, `NAME-ID.K.a.m4s` for parts, `NAME-init.a.mp4`).
pub fn audio_name(video: &str) -> String {
    match video.rsplit_once('.') {
        Some((stem, ext)) if !ext.contains('/') => format!("{stem}.a.{ext}"),
        _ => format!("{video}.a"),
    }
}

/// A split stream's video and audio media playlists relative to `hls_path`: `NAME-video.m3u8`
/// and `NAME-audio.m3u8`, nested `NAME/video.m3u8` and `NAME/audio.m3u8` (the master playlist
/// takes [`playlist_file`]).
pub fn split_playlist_files(name: &str, nested: bool) -> (String, String) {
    if nested {
        (format!("{name}/video.m3u8"), format!("{name}/audio.m3u8"))
    } else {
        (format!("{name}-video.m3u8"), format!("{name}-audio.m3u8"))
    }
}

/// The media playlist's file name for stream `name`, relative to `hls_path`: `NAME.m3u8`, or
/// `NAME/index.m3u8` with `hls_nested`.
pub fn playlist_file(name: &str, nested: bool) -> String {
    if nested {
        format!("{name}/index.m3u8")
    } else {
        format!("{name}.m3u8")
    }
}

impl Segmenter {
    /// A segmenter for stream `name`. `new_key` makes AES keys (`hls_keys`): pass a source of
    /// cryptographic randomness.
    pub fn new(
        settings: Settings,
        name: &str,
        new_key: Box<dyn FnMut() -> [u8; 16] + Send>,
    ) -> Result<Self, SettingsError> {
        if settings.keys.is_some() && settings.part_target.is_some() {
            return Err(SettingsError::KeysWithLowLatency);
        }
        if settings.fragment.is_zero() {
            return Err(SettingsError::ZeroFragment);
        }
        Ok(Segmenter {
            target_duration: settings_target(&settings),
            s: settings,
            name: name.to_string(),
            clock: Timeline::default(),
            video_clock: TrackClock::default(),
            audio_clock: TrackClock::default(),
            jump_pending: false,
            video_needs_key: true,
            video: None,
            audio: None,
            ts: None,
            mp4: Fmp4State::default(),
            open: None,
            window: VecDeque::new(),
            next_msn: 0,
            discontinuity_sequence: 0,
            resume_discontinuity: false,
            pdt_anchor: None,
            pdt_end: None,
            longest_part_ms: 0,
            frag_ts: 0,
            last_ts: 0,
            video_interval: HZ / 30,
            ended: false,
            split: false,
            peak_bps: 0,
            carried: None,
            key: None,
            new_key,
            events: VecDeque::new(),
            warned: Vec::new(),
        })
    }

    /// Continue a playlist left by an earlier publish (`hls_continuous`): its segments stay
    /// listed, numbering goes on, and the first new segment is marked as a discontinuity.
    pub fn resume(&mut self, previous: Restored) {
        self.discontinuity_sequence = previous.discontinuity_sequence;
        self.next_msn = previous.next_msn(0);
        for entry in previous.segments {
            self.target_duration = self.target_duration.max(rounded_seconds(duration_ms(entry.duration)));
            let file = self.file_from_uri(&entry.uri);
            self.window.push_back(Listed { entry, file, audio_gaps: Gaps::default() });
        }
        self.resume_discontinuity = !self.window.is_empty();
        self.trim_window();
    }

    /// Split, after [`Segmenter::resume`] from the video playlist: the audio playlist of that
    /// publish says which of the segments were gaps of audio (they have no audio file).
    pub fn resume_audio_gaps(&mut self, audio: &Restored) {
        for l in &mut self.window {
            if audio.segments.iter().any(|s| s.msn == l.entry.msn && s.gap) {
                l.audio_gaps.segment = true;
            }
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether the stream ended ([`Segmenter::finish`] was called).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The playlist's file name relative to `hls_path`: `NAME.m3u8`, or `NAME/index.m3u8` nested.
    pub fn playlist_file(&self) -> String {
        playlist_file(&self.name, self.s.nested)
    }

    /// Whether part `part` of segment `msn` exists yet (for blocking playlist reload).
    pub fn has_part(&self, msn: u64, part: Option<u32>) -> bool {
        self.position().has(msn, part)
    }

    /// How far the playlist has come, as a copyable value for request handlers elsewhere.
    pub fn position(&self) -> Position {
        Position {
            open: self.open.as_ref().map(|o| (o.msn, o.parts.len() as u32)),
            last_complete: self.window.back().map(|l| l.entry.msn),
            ended: self.ended,
            target_duration: self.target_duration,
        }
    }

    /// Media bytes held for the open segment: written, and waiting to be written (buffered
    /// MPEG-TS audio, fMP4 samples). Stays below [`Segmenter::max_segment_bytes`] plus one frame,
    /// and below the audio buffer limit while no segment is open.
    pub fn held_bytes(&self) -> usize {
        let open = self.open.as_ref().map_or(0, |o| o.data.len() + o.audio_data.len());
        let audio = self.ts.as_ref().map_or(0, |t| t.audio.len());
        open + audio + self.mp4.pending_bytes()
    }

    /// A segment holding this many bytes is cut at the next frame, keyframe or not: twice
    /// `hls_fragment` at 64 MiB/s, within 32..256 MiB. Only timestamps that stop advancing,
    /// missing keyframes or a publisher sending faster than real time get there.
    pub fn max_segment_bytes(&self) -> usize {
        let bytes = (self.s.fragment.as_millis() as u64).saturating_mul(2 * MAX_SEGMENT_RATE) / 1000;
        (bytes.min(MAX_SEGMENT_BYTES as u64) as usize).max(MIN_SEGMENT_BYTES)
    }

    /// Audio held while no segment is open (`hls_audio_buffer_size`, at least one ADTS frame).
    fn audio_buffer_limit(&self) -> usize {
        self.s.audio_buffer_size.max(MAX_ADTS_FRAME)
    }

    /// One audio frame's duration, 90 kHz: what a frozen audio clock advances by.
    fn audio_interval(&self) -> u64 {
        let (rate, samples) = self
            .audio
            .as_ref()
            .map_or((44_100, AAC_FRAME_SAMPLES), |a| (u64::from(a.sample_rate.max(1)), audio_frame_samples(a)));
        (HZ * samples / rate).clamp(1, HZ / 4)
    }

    /// The media playlist text now (split: the video track's).
    pub fn playlist(&self) -> String {
        self.render_playlist(|uri| uri.to_string(), false)
    }

    /// Whether video and audio are written as separate tracks ([`Settings::demux`]): then
    /// [`Segmenter::playlist`] is the video playlist, [`Segmenter::audio_playlist`] lists the
    /// audio files and [`Segmenter::master_playlist`] belongs at [`Segmenter::playlist_file`].
    pub fn split(&self) -> bool {
        self.split
    }

    /// Split: the audio track's media playlist: the same segments, parts and sequence numbers
    /// as the video's, naming the audio files.
    pub fn audio_playlist(&self) -> Option<String> {
        self.split.then(|| self.render_playlist(audio_name, true))
    }

    /// Split: the master playlist tying the video playlist to the audio one as an
    /// `#EXT-X-MEDIA` audio rendition (RFC 8216 §4.3.4.1), so players that open `NAME.m3u8` get
    /// both.
    pub fn master_playlist(&self) -> Option<String> {
        if !self.split {
            return None;
        }
        let (video, audio) = split_playlist_files(&self.name, self.s.nested);
        let relative = |f: String| if self.s.nested { f.rsplit('/').next().unwrap_or(&f).to_string() } else { f };
        let info = self.media_info();
        let channels = self.audio.as_ref().map_or(2, |a| a.channels.max(1));
        let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        out += &format!(
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"{channels}\",URI=\"{}\"\n",
            relative(audio)
        );
        // Before the first segment is complete there is no measure: a floor of 1 bit/s.
        out += &format!("#EXT-X-STREAM-INF:BANDWIDTH={}", self.peak_bps.max(1));
        if !info.codecs.is_empty() {
            out += &format!(",CODECS=\"{}\"", info.codecs.join(","));
        }
        if let Some((w, h)) = info.resolution {
            out += &format!(",RESOLUTION={w}x{h}");
        }
        out += &format!(",AUDIO=\"audio\"\n{}\n", relative(video));
        Some(out)
    }

    /// Split: the video and audio media playlists' files relative to `hls_path`.
    pub fn split_playlist_files(&self) -> Option<(String, String)> {
        self.split.then(|| split_playlist_files(&self.name, self.s.nested))
    }

    /// The audio track's sample rate and channel count, once known.
    pub fn audio_format(&self) -> Option<(u32, u16)> {
        self.audio.as_ref().map(|a| (a.sample_rate, a.channels))
    }

    /// The publish's session number ([`Settings::session`]).
    pub fn session(&self) -> Option<u64> {
        self.s.session
    }

    /// The media playlist with every URI passed through `uri` (the audio playlist's names).
    /// A media playlist: the video one (or the only one), or with `audio` the split audio
    /// one (its names and gaps).
    fn render_playlist(&self, uri: impl Fn(&str) -> String, audio: bool) -> String {
        let audio_gap = |gaps: &Gaps, i: usize| gaps.parts.get(i).copied().unwrap_or(false);
        let segments: Vec<SegmentEntry> = self
            .window
            .iter()
            .map(|l| {
                let mut e = l.entry.clone();
                e.uri = uri(&e.uri);
                e.map = e.map.as_deref().map(&uri);
                if audio {
                    e.gap = l.audio_gaps.segment;
                }
                for (i, p) in e.parts.iter_mut().enumerate() {
                    p.uri = uri(&p.uri);
                    if audio {
                        p.gap = audio_gap(&l.audio_gaps, i);
                    }
                }
                e
            })
            .collect();
        let hint = self.preload_hint().map(|h| uri(&h));
        let mut open_parts: Vec<PartEntry> = Vec::new();
        if let Some(o) = &self.open {
            for (i, p) in o.parts.iter().enumerate() {
                let gap = if audio { o.audio_part_gaps.get(i).copied().unwrap_or(false) } else { p.gap };
                open_parts.push(PartEntry { uri: uri(&p.uri), gap, ..p.clone() });
            }
        }
        let open_parts = &open_parts[..];
        let map = self.map_uri().map(|m| uri(&m));
        let part_target_ms = self.s.part_target.map(|t| (t.as_millis() as u64).max(self.longest_part_ms));
        let p = MediaPlaylist {
            min_target_duration: self.target_duration,
            discontinuity_sequence: self.discontinuity_sequence,
            playlist_type: self.s.playlist_type,
            map_uri: map.as_deref(),
            low_latency: part_target_ms.map(|t| LowLatency {
                part_target: t as f64 / 1000.0,
                open_parts,
                preload_hint: hint.as_deref(),
            }),
            segments: &segments,
            ended: self.ended,
        };
        p.render()
    }

    /// Feed one video message whose tag header the caller parsed ([`flv::parse_video`]) from
    /// `body`, the FLV tag body; `None` when it did not parse (the message is skipped with a
    /// warning, its timestamp still counts). `timestamp` is the RTMP timestamp in milliseconds;
    /// `now_ms` the wall clock (Unix ms) for `hls_fragment_naming system` and program
    /// date-times.
    pub fn push_video(&mut self, timestamp: u32, header: Option<&flv::VideoHeader>, body: &Bytes, now_ms: u64) {
        let Some(ts) = self.arrive(true, timestamp) else { return };
        let payload = header.and_then(|h| Some((h, codec_payload(h.payload_offset, h.payload_end, body)?)));
        let Some((h, payload)) = payload else {
            return self.warn("a video message could not be parsed; skipped");
        };
        self.add_video(ts, h, payload, now_ms);
    }

    /// Feed one audio message whose tag header the caller parsed ([`flv::parse_audio`]); as
    /// [`Segmenter::push_video`].
    pub fn push_audio(&mut self, timestamp: u32, header: Option<&flv::AudioHeader>, body: &Bytes, now_ms: u64) {
        let Some(ts) = self.arrive(false, timestamp) else { return };
        let payload = header.and_then(|h| Some((h, codec_payload(h.payload_offset, h.payload_end, body)?)));
        let Some((h, payload)) = payload else {
            return self.warn("an audio message could not be parsed; skipped");
        };
        self.add_audio(ts, h, payload, now_ms);
    }

    /// A message's place on the timeline (90 kHz), or `None` once the playlist ended.
    fn arrive(&mut self, video: bool, timestamp: u32) -> Option<u64> {
        if self.ended {
            return None;
        }
        let resume_at = if video {
            self.video_clock.last().map(|t| (t + self.video_interval) / (HZ / 1000))
        } else {
            self.audio_clock.last().map(|t| (t + self.audio_interval()) / (HZ / 1000))
        };
        let (ms, jumped) = self.clock.map(timestamp, resume_at);
        if jumped {
            self.jump_pending = true;
        }
        Some(ms * (HZ / 1000))
    }

    /// The codecs and picture size of what the segments carry (tracks the container cannot carry
    /// are left out), for a master playlist.
    pub fn media_info(&self) -> crate::master::MediaInfo {
        let video = self.video.as_ref();
        let codecs = video
            .and_then(|v| crate::master::video_codec(v.codec, &v.config, self.s.container))
            .into_iter()
            .chain(
                self.audio
                    .as_ref()
                    .and_then(|a| crate::master::audio_codec(a.codec, crate::master::aac_object_type(&a.config))),
            )
            .collect();
        let resolution =
            video.filter(|v| v.width > 0 && v.height > 0).map(|v| (u32::from(v.width), u32::from(v.height)));
        crate::master::MediaInfo { codecs, resolution }
    }

    /// The RFC 6381 codec strings of the video and the audio track, each when it is carried.
    pub fn track_codecs(&self) -> (Option<String>, Option<String>) {
        let video = self.video.as_ref().and_then(|v| crate::master::video_codec(v.codec, &v.config, self.s.container));
        let audio = self
            .audio
            .as_ref()
            .and_then(|a| crate::master::audio_codec(a.codec, crate::master::aac_object_type(&a.config)));
        (video, audio)
    }

    /// The publisher left: close the open segment and end the playlist (`#EXT-X-ENDLIST`).
    pub fn finish(&mut self) {
        if self.ended {
            return;
        }
        let start = self.open.as_ref().map_or(0, |o| o.start);
        let end = (self.last_ts + self.video_interval).max(start + MIN_SEGMENT);
        self.finish_video_sample(end);
        self.close_segment(end);
        self.ended = true;
        self.events.push_back(Event::Playlist);
    }

    /// A video message; `data` is its codec payload.
    fn add_video(&mut self, ts: u64, h: &flv::VideoHeader, data: Bytes, now_ms: u64) {
        if h.is_sequence_header() {
            return self.set_video(h.codec, Bytes::copy_from_slice(&data));
        }
        if h.packet != flv::VideoPacket::Coded || self.video.is_none() {
            return;
        }
        let key = h.is_keyframe();
        let previous = self.video_clock.last();
        let ts = self.video_clock.next(ts, self.video_interval);
        if let Some(d) = previous.map(|p| ts - p).filter(|d| (HZ / 1000..HZ).contains(d)) {
            self.video_interval = d;
        }
        let cts = (i64::from(h.composition_time) * (HZ / 1000) as i64).clamp(0, MAX_CTS);
        let pts = ts + cts as u64;
        // The previous frame ends here, in the segment it belongs to.
        self.finish_video_sample(ts);
        self.update_segment(ts, key, 1, now_ms);
        self.update_part(ts, key);
        self.last_ts = self.last_ts.max(ts);
        if self.full() {
            // Video resumes at a keyframe: what follows would refer to this frame.
            self.video_needs_key = true;
        }
        if self.video_needs_key && !key {
            return;
        }
        if self.open.is_some() {
            self.video_needs_key = false;
            self.write_video(ts, pts, key, data);
        }
    }

    /// An audio message; `data` is its codec payload.
    fn add_audio(&mut self, ts: u64, h: &flv::AudioHeader, data: Bytes, now_ms: u64) {
        if h.is_sequence_header() {
            return self.set_audio(h.codec, Bytes::copy_from_slice(&data), h.sound_rate, h.channels);
        }
        if h.packet != flv::AudioPacket::Coded {
            return;
        }
        if self.audio.is_none() && h.codec == AudioCodec::Mp3 {
            self.set_audio(AudioCodec::Mp3, Bytes::new(), h.sound_rate, h.channels);
        }
        if self.audio.is_none() {
            return;
        }
        let ts = self.audio_clock.next(ts, self.audio_interval());
        let audio_only = self.video.is_none();
        self.update_segment(ts, audio_only, 2, now_ms);
        if audio_only {
            self.update_part(ts, true);
        }
        self.last_ts = self.last_ts.max(ts);
        if !self.full() {
            self.write_audio(ts, data);
        }
    }

    /// The open segment is at its size limit and could not be cut (frames stamped within
    /// `MIN_SEGMENT` of its start): this frame is dropped.
    fn full(&mut self) -> bool {
        let full = self.open.is_some() && self.held_bytes() >= self.max_segment_bytes();
        if full {
            self.warn("a segment at its size limit could not be cut (timestamps not advancing); frames dropped");
        }
        full
    }

    fn set_video(&mut self, codec: VideoCodec, config: Bytes) {
        let supported = matches!(
            (self.s.container, codec),
            (_, VideoCodec::Avc | VideoCodec::Hevc) | (Container::Fmp4, VideoCodec::Av1)
        );
        if !supported {
            let hint = if codec == VideoCodec::Av1 { " (use hls_fragment_type fmp4)" } else { "" };
            return self
                .warn(&format!("video codec {} cannot be carried in this HLS{hint}; video skipped", codec.name()));
        }
        let params = match codec {
            VideoCodec::Avc => es::avc_parameter_sets(&config).ok(),
            VideoCodec::Hevc => es::hevc_parameter_sets(&config).ok(),
            _ => None,
        };
        if self.s.container == Container::Ts && params.is_none() {
            return self.warn("the video sequence header could not be parsed; video skipped");
        }
        let dims = flv::codec::parse_video_config(codec, &config).ok().flatten();
        let (width, height) = dims.map_or((0, 0), |p| (p.width as u16, p.height as u16));
        if self.mp4.init_written && self.video.as_ref().is_some_and(|v| v.config != config) {
            self.warn("the video configuration changed mid-stream; fMP4 players may need to reload");
        }
        self.video = Some(VideoTrack { codec, config, params, width, height });
    }

    fn set_audio(&mut self, codec: AudioCodec, config: Bytes, sound_rate: u32, channels: u8) {
        let supported = matches!(
            (self.s.container, codec),
            (_, AudioCodec::Aac) | (Container::Ts, AudioCodec::Mp3) | (Container::Fmp4, AudioCodec::Opus)
        );
        if !supported {
            return self.warn(&format!("audio codec {} cannot be carried in this HLS; audio skipped", codec.name()));
        }
        let mut track = AudioTrack { codec, config, aac: None, sample_rate: sound_rate, channels: u16::from(channels) };
        match codec {
            AudioCodec::Aac => match es::parse_audio_specific_config(&track.config) {
                Ok(cfg) => {
                    track.sample_rate = cfg.sample_rate;
                    track.channels = u16::from(cfg.channels);
                    track.aac = Some(cfg);
                }
                Err(_) => return self.warn("the AAC sequence header could not be parsed; audio skipped"),
            },
            AudioCodec::Opus => {
                if let Ok(p) = flv::codec::parse_opus_head(&track.config) {
                    track.channels = u16::from(p.channels);
                }
                track.sample_rate = 48_000;
            }
            _ => {}
        }
        self.audio = Some(track);
    }

    /// nginx-rtmp's `ngx_rtmp_hls_update_fragment`: maybe close the segment and open the next.
    /// `boundary` says whether a segment may start at this frame (a keyframe, or any frame of an
    /// audio-only stream).
    fn update_segment(&mut self, ts: u64, mut boundary: bool, flush_rate: u64, now_ms: u64) {
        let mut force = false;
        let mut discontinuity = true;
        let mut duration = None;
        if let Some(o) = &self.open {
            let length = ts.saturating_sub(o.start);
            let too_long = length > duration_90k(self.s.max_fragment);
            // Checked before this frame is written: the frame goes into the next segment.
            let too_big = length >= MIN_SEGMENT && self.held_bytes() >= self.max_segment_bytes();
            if too_long || too_big {
                force = true;
                if too_big {
                    self.warn(
                        "a segment reached its size limit (timestamps not advancing, or no keyframes); cut early",
                    );
                }
            } else {
                duration = Some(length);
                discontinuity = false;
            }
        }
        let fraglen = duration_90k(self.s.fragment).max(1);
        let jump_cut = self.jump_pending && duration.is_some_and(|d| d >= fraglen.min(MIN_JUMP_SEGMENT));
        match self.s.slicing {
            Slicing::Plain => {
                if duration.is_some_and(|d| d < fraglen) && !jump_cut {
                    boundary = false;
                }
            }
            Slicing::Aligned => {
                let start = self.open.as_ref().map_or(self.frag_ts, |o| o.start);
                let same_slot = start / fraglen == ts / fraglen;
                if self.open.is_some() && same_slot && !jump_cut {
                    boundary = false;
                }
                if self.open.is_none() && (self.frag_ts == 0 || same_slot) {
                    self.frag_ts = ts;
                    boundary = false;
                }
            }
        }
        // Never a zero-length segment (a frame stamped before the open segment's start).
        if duration.is_some_and(|d| d < MIN_SEGMENT) {
            boundary = false;
        }
        if boundary || force {
            self.close_segment(ts);
            let jumped = std::mem::take(&mut self.jump_pending);
            if jumped {
                // The timeline took the jump out; the wall clock did not stop meanwhile.
                self.pdt_anchor = None;
            }
            self.open_segment(ts, discontinuity || jumped, now_ms);
            if !boundary && self.video.is_some() {
                self.video_needs_key = true;
            }
        }
        self.maybe_flush_ts_audio(ts, flush_rate);
    }

    /// Low-latency HLS: close the current part before a frame that would make it longer than
    /// `PART-TARGET`.
    fn update_part(&mut self, ts: u64, independent: bool) {
        let Some(target) = self.s.part_target.map(duration_90k) else { return };
        let interval = if self.video.is_some() { self.video_interval } else { self.audio_interval() };
        let Some(o) = &self.open else { return };
        if o.start == ts || ts.saturating_sub(o.part_start) + interval <= target {
            return;
        }
        self.close_part(ts);
        if let Some(o) = &mut self.open {
            o.part_independent = independent;
        }
    }

    fn open_segment(&mut self, ts: u64, discontinuity: bool, now_ms: u64) {
        if self.video.is_none() && self.audio.is_none() {
            return;
        }
        let msn = self.next_msn;
        let mut id = match self.s.naming {
            Naming::Sequential => msn,
            Naming::Timestamp => ts,
            Naming::System => now_ms,
        };
        if let Some(slot) = id.checked_div(self.s.naming_granularity) {
            id = slot * self.s.naming_granularity;
        }
        let key = self.s.keys.is_some().then(|| self.key_for(id));
        // Not `||`: the flag is spent by the first segment even when it is a discontinuity anyway.
        let resumed = std::mem::take(&mut self.resume_discontinuity);
        if resumed {
            self.pdt_anchor = None;
        }
        let discontinuity = resumed | (discontinuity && !self.window.is_empty());
        let program_date_time_ms = self.program_date_time(ts, now_ms);
        let mut seg = OpenSegment {
            msn,
            id,
            start: ts,
            discontinuity,
            key,
            program_date_time_ms,
            data: Vec::with_capacity(256 * 1024),
            parts: Vec::new(),
            part_start: ts,
            part_offset: 0,
            part_independent: true,
            audio_data: Vec::new(),
            audio_part_gaps: Vec::new(),
            audio_part_offset: 0,
            video_span: None,
            audio_span: None,
        };
        match self.s.container {
            Container::Ts => {
                let ts_state = self.ts.get_or_insert_with(|| new_ts_state(self.video.as_ref(), self.audio.as_ref()));
                ts_state.muxer.write_tables(&mut seg.data);
            }
            Container::Fmp4 => {
                self.write_init();
                seg.data.extend_from_slice(&fmp4::segment_type());
                if self.split {
                    seg.audio_data.extend_from_slice(&fmp4::segment_type());
                }
            }
        }
        self.open = Some(seg);
        // "start fragment with audio to make iPhone happy" (nginx-rtmp)
        self.flush_ts_audio();
    }

    /// The wall-clock time (Unix ms) of a segment starting at `ts`: the anchor plus media time
    /// since it. Without an anchor (the first segment, or after a discontinuity) the segment is
    /// dated `now_ms`, the arrival of its first frame, but never before the previous segment's end.
    fn program_date_time(&mut self, ts: u64, now_ms: u64) -> u64 {
        let start = ts / TICKS_PER_MS;
        match self.pdt_anchor {
            Some((wall, media)) if start >= media => wall + (start - media),
            _ => {
                let wall = now_ms.max(self.pdt_end.unwrap_or(0));
                self.pdt_anchor = Some((wall, start));
                wall
            }
        }
    }

    fn key_for(&mut self, id: u64) -> (KeyRef, [u8; 16]) {
        let per = self.s.keys.as_ref().map_or(0, |k| k.fragments_per_key);
        let rotate = match &mut self.key {
            Some(_) if per == 0 => false,
            Some(k) if k.uses_left > 0 => {
                k.uses_left -= 1;
                false
            }
            _ => true,
        };
        if rotate {
            let key = (self.new_key)();
            self.key = Some(CurrentKey { id, key, uses_left: per.saturating_sub(1) });
            self.events.push_back(Event::Key { file: self.key_file(id), key });
        }
        let k = self.key.as_ref().expect("a key was just made");
        (KeyRef { uri: self.key_uri(k.id), iv: u128::from(k.id) }, k.key)
    }

    fn close_segment(&mut self, end: u64) {
        if self.open.is_none() {
            return;
        }
        self.flush_ts_audio();
        // A cut on audio (forced) would otherwise carry the held last frame of this GOP into
        // the next segment, ahead of its keyframe.
        self.finish_video_sample(end);
        self.flush_fragment();
        self.close_part(end);
        let Some(mut o) = self.open.take() else { return };
        let ms = span_ms(o.start, end);
        let duration = ms as f64 / 1000.0;
        self.target_duration = self.target_duration.max(rounded_seconds(ms));
        self.pdt_end = Some(o.program_date_time_ms + ms);
        let key = o.key.take();
        if let Some((k, bytes)) = &key {
            crypt::encrypt_segment(bytes, k.iv, &mut o.data);
        }
        // Segments are held for a while (memory, disk writes): without its growth slack.
        o.data.shrink_to_fit();
        o.audio_data.shrink_to_fit();
        let bytes = (o.data.len() + o.audio_data.len()) as u64;
        self.peak_bps = self.peak_bps.max((bytes * 8 * 1000).checked_div(ms).unwrap_or(0));
        let video_ms = self.span_in_ms(o.video_span, false);
        let audio_ms = self.span_in_ms(o.audio_span, true);
        let file = self.segment_file(o.id);
        // Split, a track without samples in this segment: its file would be only a `styp`.
        let (video_gap, audio_gap) = (self.split && video_ms.is_none(), self.split && audio_ms.is_none());
        let audio_gaps = Gaps { segment: audio_gap, parts: std::mem::take(&mut o.audio_part_gaps) };
        let entry = SegmentEntry {
            msn: o.msn,
            duration,
            uri: self.segment_uri(o.id),
            discontinuity: o.discontinuity,
            key: key.map(|(k, _)| k),
            program_date_time_ms: self.s.part_target.map(|_| o.program_date_time_ms),
            parts: o.parts,
            map: self.map_uri(),
            gap: video_gap,
        };
        let (tracks, media_ms) = match self.carried.unwrap_or_else(|| self.tracks()) {
            _ if self.split => (Tracks::Video, video_ms),
            Tracks::Audio => (Tracks::Audio, audio_ms),
            t => (t, video_ms),
        };
        let data = Bytes::from(o.data);
        // A gap's file is not written (nor served): its playlist says not to load it.
        if !video_gap {
            self.events.push_back(Event::Segment { msn: o.msn, file: file.clone(), data, duration, tracks, media_ms });
        }
        if self.split && !audio_gap {
            let (file, data) = (audio_name(&file), Bytes::from(o.audio_data));
            let media_ms = audio_ms;
            self.events.push_back(Event::Segment { msn: o.msn, file, data, duration, tracks: Tracks::Audio, media_ms });
        }
        if video_gap || audio_gap {
            self.warn("a track had no samples for a whole segment; its playlist lists a gap there (#EXT-X-GAP)");
        }
        self.window.push_back(Listed { entry, file, audio_gaps });
        self.next_msn = o.msn + 1;
        self.trim_window();
        self.events.push_back(Event::Playlist);
    }

    /// Close the current part (low-latency HLS only): its bytes are what was written since the
    /// last part.
    fn close_part(&mut self, end: u64) {
        if self.s.part_target.is_none() {
            return;
        }
        if self.s.container == Container::Fmp4 {
            self.flush_fragment();
        } else {
            self.flush_ts_audio();
        }
        let ext = self.extension();
        let split = self.split;
        let Some(o) = &mut self.open else { return };
        if o.data.len() == o.part_offset && o.audio_data.len() == o.audio_part_offset {
            return;
        }
        let index = o.parts.len() as u32;
        let stem = self.s.session.map_or_else(|| o.id.to_string(), |s| format!("{s}-{}", o.id));
        let file = part_name(&self.name, self.s.nested, &stem, index, ext, false, &self.s.base_url);
        let uri = part_name(&self.name, self.s.nested, &stem, index, ext, true, &self.s.base_url);
        let data = Bytes::copy_from_slice(&o.data[o.part_offset..]);
        let audio_part =
            split.then(|| (audio_name(&file), Bytes::copy_from_slice(&o.audio_data[o.audio_part_offset..])));
        // Split, a part with no fragment of a track (at most the segment's `styp`) is a gap of it.
        let empty = |bytes: &[u8]| split && bytes.len() <= if index == 0 { fmp4::segment_type().len() } else { 0 };
        let gap = empty(&data);
        if let Some((_, audio)) = &audio_part {
            o.audio_part_gaps.push(empty(audio));
        }
        o.audio_part_offset = o.audio_data.len();
        // Whole milliseconds of the timeline, so that the parts add up to the segment exactly.
        let ms = span_ms(o.part_start, end);
        self.longest_part_ms = self.longest_part_ms.max(ms);
        o.parts.push(PartEntry { duration: ms as f64 / 1000.0, uri, independent: o.part_independent, gap });
        o.part_start = end;
        o.part_offset = o.data.len();
        let msn = o.msn;
        let (video_span, audio_span) = (o.video_span, o.audio_span);
        let video_start = self.span_in_ms(video_span, false).map(|s| s.0);
        let audio_start = self.span_in_ms(audio_span, true).map(|s| s.0);
        let (tracks, media_start_ms) = match self.carried.unwrap_or_else(|| self.tracks()) {
            _ if split => (Tracks::Video, video_start),
            Tracks::Audio => (Tracks::Audio, audio_start),
            t => (t, video_start),
        };
        self.events.push_back(Event::Part { msn, index, file, data, tracks, media_start_ms });
        if let Some((file, data)) = audio_part {
            let (tracks, media_start_ms) = (Tracks::Audio, audio_start);
            self.events.push_back(Event::Part { msn, index, file, data, tracks, media_start_ms });
        }
        self.events.push_back(Event::Playlist);
    }

    fn trim_window(&mut self) {
        if self.s.playlist_type == PlaylistType::Event {
            return;
        }
        let limit = self.s.playlist_length.as_secs_f64();
        let mut total: f64 = self.window.iter().map(|l| l.entry.duration).sum();
        while self.window.len() > 1 && total - self.window[0].entry.duration >= limit {
            let gone = self.window.pop_front().expect("window has segments");
            total -= gone.entry.duration;
            if self.window.front().is_some_and(|l| l.entry.discontinuity) {
                self.discontinuity_sequence += 1;
            }
            if self.split {
                self.events.push_back(Event::Expired { msn: gone.entry.msn, file: audio_name(&gone.file) });
            }
            self.events.push_back(Event::Expired { msn: gone.entry.msn, file: gone.file });
            // The last segment of an earlier publish (`hls_continuous`) takes its init segment.
            let current = self.map_uri();
            let next = self.window.front().and_then(|l| l.entry.map.clone());
            if let Some(map) = gone.entry.map.filter(|m| Some(m) != current.as_ref() && Some(m) != next.as_ref()) {
                let file = self.file_from_uri(&map);
                if self.split {
                    self.events.push_back(Event::Expired { msn: gone.entry.msn, file: audio_name(&file) });
                }
                self.events.push_back(Event::Expired { msn: gone.entry.msn, file });
            }
        }
    }

    fn write_video(&mut self, dts: u64, pts: u64, key: bool, data: Bytes) {
        let Some(v) = &self.video else { return };
        match self.s.container {
            Container::Ts => {
                let codec = if v.codec == VideoCodec::Hevc { VideoType::H265 } else { VideoType::H264 };
                let Some(params) = &v.params else { return };
                let mut es_data = Vec::with_capacity(data.len() + 256);
                if es::to_annex_b(codec, params, &data, key, &mut es_data).is_err() {
                    return self.warn("a video frame had malformed NAL units; skipped");
                }
                let delay = duration_90k(self.s.muxdelay);
                let (Some(ts), Some(o)) = (&mut self.ts, &mut self.open) else { return };
                start_ts_part(ts, o);
                let pes = Pes {
                    pts: pts + delay,
                    dts: Some(dts + delay),
                    pcr: Some(dts),
                    random_access: key,
                    data: &es_data,
                };
                if ts.muxer.write_pes(Track::Video, &pes, &mut o.data).is_err() {
                    self.warn("a video frame could not be muxed; skipped");
                }
            }
            Container::Fmp4 => {
                let cts = pts as i64 - dts as i64;
                let sample = fmp4::Sample { duration: 0, keyframe: key, cts_offset: cts as i32, data };
                if self.mp4.video.is_empty() && self.mp4.held_video.is_none() {
                    self.mp4.video_base = Some(dts);
                }
                self.mp4.held_video = Some((dts, sample));
            }
        }
    }

    /// The held fMP4 video sample's duration is known once the next frame (or the end) comes.
    /// After a pause in video over a second the frame lasts one frame interval and the fragment
    /// ends with it, so the next one starts at the next frame's own decode time: video stays in
    /// step with audio and the playlist instead of closing the pause.
    fn finish_video_sample(&mut self, next_dts: u64) {
        if let Some((dts, mut s)) = self.mp4.held_video.take() {
            let d = next_dts.saturating_sub(dts);
            let pause = d > HZ;
            s.duration = if d == 0 || pause { self.video_interval as u32 } else { d as u32 };
            self.mp4.video.push(s);
            if pause {
                self.flush_fragment();
            }
        }
    }

    fn write_audio(&mut self, ts: u64, data: Bytes) {
        let Some(a) = &self.audio else { return };
        match self.s.container {
            Container::Ts => self.write_ts_audio(ts, &data),
            Container::Fmp4 => {
                let samples = match a.codec {
                    AudioCodec::Opus => opus_packet_samples(&data).unwrap_or(OPUS_DEFAULT_SAMPLES),
                    _ => AAC_FRAME_SAMPLES,
                };
                let at = ts * u64::from(a.sample_rate.max(1)) / HZ;
                let sample = fmp4::Sample { duration: samples as u32, keyframe: true, cts_offset: 0, data };
                if self.open.is_none() && self.mp4.pending_bytes() + sample.data.len() > self.audio_buffer_limit() {
                    // No segment to write into (no keyframe yet): the oldest audio goes.
                    self.mp4.audio.clear();
                    self.warn("audio is waiting for a video keyframe that does not come; buffered audio dropped");
                }
                self.count_audio_samples(at, samples);
                self.mp4.audio.push(sample);
            }
        }
    }

    /// fMP4 audio decode times follow the sample count from the first frame's timestamp, so
    /// fragments neither overlap nor leave gaps (RTMP's milliseconds would, by up to 1 ms). A
    /// frame stamped more than [`AUDIO_RESYNC_FRAMES`] frames away from the count is a real gap
    /// or jump: what is buffered is written (or, before the first segment, dropped) and the count
    /// starts again at the frame's own time `at` (track timescale).
    fn count_audio_samples(&mut self, at: u64, samples: u64) {
        let tolerance = AUDIO_RESYNC_FRAMES * samples;
        let next = self.mp4.audio_next.filter(|n| n.abs_diff(at) <= tolerance);
        if next.is_none() && !self.mp4.audio.is_empty() {
            if self.open.is_some() {
                self.flush_fragment();
            } else {
                self.mp4.audio.clear();
            }
        }
        let next = next.unwrap_or(at);
        if self.mp4.audio.is_empty() {
            self.mp4.audio_base = Some(next);
        }
        self.mp4.audio_next = Some(next + samples);
    }

    /// nginx-rtmp's `ngx_rtmp_hls_audio`: ADTS frames gathered into one PES, timestamps smoothed
    /// by counting samples while they stay within `hls_sync` of the real ones.
    fn write_ts_audio(&mut self, pts: u64, raw: &[u8]) {
        let Some(a) = &self.audio else { return };
        let header = match &a.aac {
            Some(cfg) => match es::adts_header(cfg, raw.len()) {
                Ok(h) => Some(h),
                Err(_) => return self.warn("an AAC frame is too large for ADTS; skipped"),
            },
            None => None,
        };
        let sample_rate = u64::from(a.sample_rate);
        let frame_samples = audio_frame_samples(a);
        let buffer_size = self.audio_buffer_limit();
        let sync = duration_90k(self.s.sync);
        let size = raw.len() + header.map_or(0, |h| h.len());
        if self.ts.as_ref().is_some_and(|t| t.audio.len() + size > buffer_size) {
            self.flush_ts_audio();
            // No segment to flush into (no keyframe yet): the oldest audio goes.
            if let Some(t) = self.ts.as_mut().filter(|t| !t.audio.is_empty()) {
                t.audio.clear();
                self.warn("audio is waiting for a video keyframe that does not come; buffered audio dropped");
            }
        }
        let ts = self.ts.get_or_insert_with(|| new_ts_state(self.video.as_ref(), self.audio.as_ref()));
        if ts.audio.is_empty() {
            ts.audio_pts = pts;
            if sync > 0 && sample_rate > 0 {
                let estimate = ts.audio_base + ts.audio_frames * HZ * frame_samples / sample_rate;
                if estimate.abs_diff(pts) <= sync {
                    ts.audio_pts = estimate;
                    ts.audio_frames += 1;
                } else {
                    ts.audio_base = pts;
                    ts.audio_frames = 1;
                }
            }
        } else {
            ts.audio_frames += 1;
        }
        if let Some(h) = header {
            ts.audio.extend_from_slice(&h);
        }
        ts.audio.extend_from_slice(raw);
    }

    fn maybe_flush_ts_audio(&mut self, ts_now: u64, flush_rate: u64) {
        let delay = duration_90k(self.s.max_audio_delay) / flush_rate.max(1);
        let due = self.ts.as_ref().is_some_and(|t| !t.audio.is_empty() && t.audio_pts + delay < ts_now);
        if due && self.open.is_some() {
            self.flush_ts_audio();
        }
    }

    fn flush_ts_audio(&mut self) {
        let video = self.video.is_some();
        let delay = duration_90k(self.s.muxdelay);
        let (Some(ts), Some(o)) = (&mut self.ts, &mut self.open) else { return };
        if ts.audio.is_empty() {
            return;
        }
        start_ts_part(ts, o);
        // Sample counting may run a little ahead of the next PES's own timestamp.
        let pts = ts.last_audio_pts.map_or(ts.audio_pts, |last| ts.audio_pts.max(last + 1));
        ts.last_audio_pts = Some(pts);
        let pes =
            Pes { pts: pts + delay, dts: None, pcr: (!video).then_some(pts), random_access: !video, data: &ts.audio };
        let written = ts.muxer.write_pes(Track::Audio, &pes, &mut o.data);
        ts.audio.clear();
        if written.is_err() {
            self.warn("audio could not be muxed; skipped");
        }
    }

    fn write_init(&mut self) {
        if self.mp4.init_written {
            return;
        }
        let mut tracks = Vec::new();
        if let Some(v) = &self.video {
            let codec = match v.codec {
                VideoCodec::Hevc => fmp4::Codec::Hevc { hvcc: v.config.clone(), width: v.width, height: v.height },
                VideoCodec::Av1 => fmp4::Codec::Av1 { av1c: v.config.clone(), width: v.width, height: v.height },
                _ => fmp4::Codec::Avc { avcc: v.config.clone(), width: v.width, height: v.height },
            };
            tracks.push(fmp4::TrackInfo { id: VIDEO_TRACK, timescale: HZ as u32, codec });
        }
        if let Some(a) = &self.audio {
            let codec = match a.codec {
                AudioCodec::Opus => {
                    fmp4::Codec::Opus { channels: a.channels, pre_skip: 312, input_sample_rate: 48_000 }
                }
                _ => fmp4::Codec::Aac { asc: a.config.clone(), sample_rate: a.sample_rate, channels: a.channels },
            };
            tracks.push(fmp4::TrackInfo { id: AUDIO_TRACK, timescale: a.sample_rate.max(1), codec });
        }
        self.mp4.init_written = true;
        self.split |= self.s.demux && tracks.len() == 2;
        self.carried = Some(if tracks.len() == 2 { Tracks::Both } else { self.tracks() });
        let file = self.init_file().unwrap_or_default();
        let inits = if self.split {
            // One init segment per track (a later publish of a split playlist may lack one).
            let named = |t: fmp4::TrackInfo| match t.codec.is_video() {
                true => (vec![t], file.clone(), Tracks::Video),
                false => (vec![t], audio_name(&file), Tracks::Audio),
            };
            tracks.into_iter().map(named).collect()
        } else {
            vec![(tracks, file, self.tracks())]
        };
        for (tracks, file, kind) in inits {
            match fmp4::init_segment(&tracks) {
                Ok(data) => self.events.push_back(Event::Init { file, data: Bytes::from(data), tracks: kind }),
                Err(e) => self.warn(&format!("the fMP4 init segment could not be written: {e}")),
            }
        }
    }

    /// What an unsplit stream's files carry.
    fn tracks(&self) -> Tracks {
        match (self.video.is_some(), self.audio.is_some()) {
            (true, false) => Tracks::Video,
            (false, true) => Tracks::Audio,
            _ => Tracks::Both,
        }
    }

    /// Write the fMP4 samples gathered so far as one fragment (moof + mdat).
    fn flush_fragment(&mut self) {
        if self.s.container != Container::Fmp4 || self.open.is_none() {
            return;
        }
        let m = &mut self.mp4;
        if m.video.is_empty() && m.audio.is_empty() {
            return;
        }
        let video = std::mem::take(&mut m.video);
        let audio = std::mem::take(&mut m.audio);
        let video_base = m.video_base.unwrap_or(0);
        let audio_base = m.audio_base.unwrap_or(0);
        let video_end = video_base + video.iter().map(|s| u64::from(s.duration)).sum::<u64>();
        let audio_end = audio_base + audio.iter().map(|s| u64::from(s.duration)).sum::<u64>();
        m.video_base = Some(video_end);
        m.audio_base = Some(audio_end);
        // Demuxed, a track that began after the init segment was written has no init segment
        // (nor a playlist): its samples would be a track the files do not declare.
        let (keep_video, keep_audio) = match (self.s.demux, self.carried) {
            (true, Some(Tracks::Video)) => (true, false),
            (true, Some(Tracks::Audio)) => (false, true),
            _ => (true, true),
        };
        let dropped = (!keep_video && !video.is_empty()) || (!keep_audio && !audio.is_empty());
        let video = if keep_video { video } else { Vec::new() };
        let audio = if keep_audio { audio } else { Vec::new() };
        let video_run = (!video.is_empty()).then(|| fmp4::TrackRun {
            track_id: VIDEO_TRACK,
            base_decode_time: video_base,
            samples: &video,
        });
        let audio_run = (!audio.is_empty()).then(|| fmp4::TrackRun {
            track_id: AUDIO_TRACK,
            base_decode_time: audio_base,
            samples: &audio,
        });
        // Split: one fragment per track, each in its own file; else one fragment with both.
        let fragments: Vec<(Vec<fmp4::TrackRun<'_>>, bool)> = if self.split {
            video_run.into_iter().map(|r| (vec![r], false)).chain(audio_run.map(|r| (vec![r], true))).collect()
        } else {
            let runs: Vec<_> = video_run.into_iter().chain(audio_run).collect();
            if runs.is_empty() {
                Vec::new()
            } else {
                vec![(runs, false)]
            }
        };
        let mut failed = None;
        for (runs, is_audio) in fragments {
            m.sequence += 1;
            match (fmp4::fragment(m.sequence, &runs), &mut self.open) {
                (Ok(bytes), Some(o)) => {
                    let out = if is_audio { &mut o.audio_data } else { &mut o.data };
                    out.extend_from_slice(&bytes);
                }
                (Err(e), _) => failed = Some(e),
                _ => {}
            }
        }
        if let Some(o) = &mut self.open {
            if !video.is_empty() {
                o.video_span = Some((o.video_span.map_or(video_base, |s| s.0), video_end));
            }
            if !audio.is_empty() {
                o.audio_span = Some((o.audio_span.map_or(audio_base, |s| s.0), audio_end));
            }
        }
        if let Some(e) = failed {
            self.warn(&format!("an fMP4 fragment could not be written: {e}"));
        }
        if dropped {
            self.warn("a track that began after the first segment is left out until the next publish");
        }
    }

    /// A track's span (track timescale) in ms of its clock.
    fn span_in_ms(&self, span: Option<(u64, u64)>, audio: bool) -> Option<(u64, u64)> {
        let scale = if audio { u64::from(self.audio.as_ref()?.sample_rate.max(1)) } else { HZ };
        span.map(|(start, end)| (start * 1000 / scale, end * 1000 / scale))
    }

    fn warn(&mut self, what: &str) {
        if !self.warned.iter().any(|w| w == what) {
            self.warned.push(what.to_string());
            self.events.push_back(Event::Warning(what.to_string()));
        }
    }

    fn extension(&self) -> &'static str {
        match self.s.container {
            Container::Ts => "ts",
            Container::Fmp4 => "m4s",
        }
    }

    /// nginx-rtmp's names: `NAME-ID.ts`, or `NAME/ID.ts` nested; with a session,
    /// `NAME-SESSION-ID.ts`, nested `NAME/SESSION-ID.ts`.
    fn segment_file(&self, id: u64) -> String {
        format!("{}{}.{}", self.file_prefix(), self.stem(id), self.extension())
    }

    /// The playlist's URI for a segment: relative to the playlist, or under `hls_base_url`.
    fn segment_uri(&self, id: u64) -> String {
        format!("{}{}.{}", self.uri_prefix(&self.s.base_url), self.stem(id), self.extension())
    }

    /// `NAME-`, nested `NAME/`: what file names start with, relative to `hls_path`.
    fn file_prefix(&self) -> String {
        let sep = if self.s.nested { '/' } else { '-' };
        format!("{}{sep}", self.name)
    }

    fn session_prefix(&self) -> String {
        self.s.session.map_or_else(String::new, |s| format!("{s}-"))
    }

    /// A segment's (or its parts' or key's) name without directory, stream name or extension.
    fn stem(&self, id: u64) -> String {
        format!("{}{id}", self.session_prefix())
    }

    /// nginx-rtmp's `hls_base_url` + name + separator logic (`ngx_rtmp_hls_write_playlist`).
    fn uri_prefix(&self, base: &str) -> String {
        match (self.s.nested, base.is_empty()) {
            (false, _) => format!("{base}{}-", self.name),
            (true, true) => String::new(),
            (true, false) => format!("{base}{}/", self.name),
        }
    }

    fn file_from_uri(&self, uri: &str) -> String {
        let name = uri.rsplit('/').next().unwrap_or(uri);
        if self.s.nested {
            format!("{}/{name}", self.name)
        } else {
            name.to_string()
        }
    }

    /// The fMP4 initialisation segment's file name relative to `hls_path` (`None` for MPEG-TS).
    pub fn init_file(&self) -> Option<String> {
        (self.s.container == Container::Fmp4)
            .then(|| format!("{}{}init.mp4", self.file_prefix(), self.session_prefix()))
    }

    fn map_uri(&self) -> Option<String> {
        (self.s.container == Container::Fmp4)
            .then(|| format!("{}{}init.mp4", self.uri_prefix(&self.s.base_url), self.session_prefix()))
    }

    fn key_file(&self, id: u64) -> String {
        format!("{}{}.key", self.file_prefix(), self.stem(id))
    }

    fn key_uri(&self, id: u64) -> String {
        let url = self.s.keys.as_ref().map_or("", |k| k.key_url.as_str());
        format!("{}{}.key", self.uri_prefix(url), self.stem(id))
    }

    fn preload_hint(&self) -> Option<String> {
        self.s.part_target?;
        let o = self.open.as_ref()?;
        let stem = self.stem(o.id);
        Some(part_name(
            &self.name,
            self.s.nested,
            &stem,
            o.parts.len() as u32,
            self.extension(),
            true,
            &self.s.base_url,
        ))
    }

    /// The publisher left, and the same stream may be published again while players still
    /// read the playlist: close the open segment without ending the playlist, and start over as
    /// a new publish would (codec configuration, timeline, keys and init segment all new) under
    /// `session`, so no URL is reused. The listed segments, their numbering and the discontinuity
    /// sequence stay; the next segment starts with `#EXT-X-DISCONTINUITY`. Events not yet polled
    /// (the closed segment among them) are kept. [`Segmenter::finish`] ends the playlist if
    /// nobody comes back.
    pub fn interrupt(&mut self, session: Option<u64>) -> Result<(), SettingsError> {
        self.finish();
        let unused: Box<dyn FnMut() -> [u8; 16] + Send> = Box::new(|| [0; 16]);
        let mut next = Segmenter::new(Settings { session, ..self.s.clone() }, &self.name, unused)?;
        std::mem::swap(&mut next.new_key, &mut self.new_key);
        next.window = std::mem::take(&mut self.window);
        next.next_msn = self.next_msn;
        next.discontinuity_sequence = self.discontinuity_sequence;
        // What the listed segments already made the playlist say stays true of them: the target
        // never goes down, and the new publisher's dates start after the old ones end.
        next.target_duration = self.target_duration;
        next.longest_part_ms = self.longest_part_ms;
        next.pdt_end = self.pdt_end;
        next.split = self.split;
        next.peak_bps = self.peak_bps;
        // No `resume_discontinuity`: a stream's first segment after listed ones is one anyway.
        next.events = std::mem::take(&mut self.events);
        *self = next;
        Ok(())
    }
}

/// Each low-latency TS part after the first starts with PAT/PMT so it parses on its own.
fn start_ts_part(ts: &mut TsState, o: &mut OpenSegment) {
    if o.data.len() == o.part_offset && !o.parts.is_empty() {
        ts.muxer.write_tables(&mut o.data);
    }
}

/// Samples in one frame of the track's codec (Opus: its usual 20 ms; packets say their own).
fn audio_frame_samples(a: &AudioTrack) -> u64 {
    match a.codec {
        AudioCodec::Mp3 if a.sample_rate < 32_000 => MP3_FRAME_SAMPLES / 2,
        AudioCodec::Mp3 => MP3_FRAME_SAMPLES,
        AudioCodec::Opus => OPUS_DEFAULT_SAMPLES,
        _ => AAC_FRAME_SAMPLES,
    }
}

const VIDEO_TRACK: u32 = 1;
const AUDIO_TRACK: u32 = 2;

fn new_ts_state(video: Option<&VideoTrack>, audio: Option<&AudioTrack>) -> TsState {
    let v = video.map(|v| if v.codec == VideoCodec::Hevc { VideoType::H265 } else { VideoType::H264 });
    let a = audio.map(|a| if a.codec == AudioCodec::Mp3 { AudioType::Mp3 } else { AudioType::Aac });
    TsState {
        muxer: Muxer::new(v, a),
        audio: Vec::new(),
        audio_pts: 0,
        audio_base: 0,
        audio_frames: 0,
        last_audio_pts: None,
    }
}

/// A part's file name (relative to `hls_path`) or URI (relative to the playlist):
/// `NAME-ID.INDEX.ts`, nested `NAME/ID.INDEX.ts` (`ID` with its session, if any).
fn part_name(name: &str, nested: bool, id: &str, index: u32, ext: &str, uri: bool, base: &str) -> String {
    match (nested, uri) {
        (false, false) => format!("{name}-{id}.{index}.{ext}"),
        (false, true) => format!("{base}{name}-{id}.{index}.{ext}"),
        (true, false) => format!("{name}/{id}.{index}.{ext}"),
        (true, true) if base.is_empty() => format!("{id}.{index}.{ext}"),
        (true, true) => format!("{base}{name}/{id}.{index}.{ext}"),
    }
}

/// Whole milliseconds of the timeline from `start` to `end` (90 kHz). Playlist durations are
/// these differences of truncated times, so consecutive spans add up to their sum exactly and
/// print exactly with three decimals.
fn span_ms(start: u64, end: u64) -> u64 {
    (end / TICKS_PER_MS).saturating_sub(start / TICKS_PER_MS)
}

/// A duration read from a playlist, in whole milliseconds as it was printed.
fn duration_ms(seconds: f64) -> u64 {
    (seconds.max(0.0) * 1000.0).round() as u64
}

/// Milliseconds rounded to the nearest whole second, as RFC 8216 §4.3.3.1 compares `#EXTINF`
/// with `#EXT-X-TARGETDURATION` (half a second rounds up).
fn rounded_seconds(ms: u64) -> u64 {
    ms.saturating_add(500) / 1000
}

/// The target duration before any segment: `hls_fragment` rounded, at least 1 s.
fn settings_target(s: &Settings) -> u64 {
    rounded_seconds(s.fragment.as_millis() as u64).max(1)
}

/// Samples in one Opus packet at 48 kHz, from its TOC byte (RFC 6716 §3.1).
pub fn opus_packet_samples(packet: &[u8]) -> Option<u64> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame sizes in units of 2.5 ms (120 samples).
    let units: u64 = match config {
        0..=11 => [4, 8, 16, 24][usize::from(config % 4)],
        12..=15 => [4, 8][usize::from(config % 2)],
        _ => [1, 2, 4, 8][usize::from(config % 4)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(*packet.get(1)? & 0x3f),
    };
    let samples = units * 120 * frames;
    // RFC 6716: a packet holds at most 120 ms.
    (1..=5760).contains(&samples).then_some(samples)
}

fn duration_90k(d: Duration) -> u64 {
    (d.as_micros() as u64).saturating_mul(HZ) / 1_000_000
}

#[cfg(test)]
#[path = "segmenter_tests.rs"]
mod tests;

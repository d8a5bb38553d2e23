//! What a publisher sends: an FLV file looped forever, or a synthetic H.264/AAC-shaped stream.
//!
//! Sources are plain iterators over frames with media timestamps; pacing them against a clock
//! is the caller's business.

use std::path::Path;

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use rtmp::MediaKind;

/// One RTMP media message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame {
    /// Audio, video or data (`onMetaData`).
    pub kind: MediaKind,
    /// Timestamp in milliseconds (decode order; the RTMP message timestamp).
    pub timestamp: u32,
    /// The message payload: an FLV tag body.
    pub payload: Bytes,
    /// A video keyframe (never set on sequence headers).
    pub keyframe: bool,
    /// A sequence header or metadata, which players need before any frame.
    pub header: bool,
}

/// A stream of frames to publish.
pub trait Source {
    /// The next frame in decode order; sources loop forever.
    fn next_frame(&mut self) -> MediaFrame;
    /// Frames to send first on every (re)connect: metadata, sequence headers.
    fn headers(&self) -> Vec<MediaFrame>;
    /// Average payload bytes per second of media time.
    fn bytes_per_second(&self) -> u64;
}

/// Frame interval assumed for a file with a single video frame.
const DEFAULT_FRAME_INTERVAL_MS: u32 = 40;

/// An FLV file held in memory, played in a loop.
///
/// `onMetaData` and the first sequence headers are [`Source::headers`]; the media frames repeat
/// forever with timestamps that start at 0 and keep increasing: each loop is shifted by the
/// file's duration plus one video frame interval. Timestamps that go backwards within the file
/// are clamped to the previous one. Video command frames, end-of-sequence tags and script tags
/// other than `onMetaData` are dropped.
#[derive(Debug, Clone)]
pub struct FlvSource {
    headers: Vec<MediaFrame>,
    /// Media frames with timestamps relative to the first one.
    media: Vec<MediaFrame>,
    /// Timestamp shift from one loop to the next.
    period: u32,
    next: usize,
    /// Added to the timestamps of the current loop (wrapping, as RTMP timestamps do).
    offset: u32,
}

impl FlvSource {
    /// Reads the FLV file at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_bytes(Bytes::from(data)).with_context(|| format!("loading FLV file {}", path.display()))
    }

    /// Splits an FLV file held in memory; payloads are slices of `data`.
    pub fn from_bytes(data: Bytes) -> anyhow::Result<Self> {
        let reader = flv::FlvReader::new(data).context("not an FLV file")?;
        let mut metadata = None;
        let mut video_header: Option<Bytes> = None;
        let mut audio_header: Option<Bytes> = None;
        // A sequence header that differs from the first one of its kind is kept in the media,
        // so the decoder must get the first ones back at the start of every loop.
        let mut config_changes = false;
        let mut media: Vec<MediaFrame> = Vec::new();

        for tag in reader {
            let tag = tag.context("reading FLV tags")?;
            let body = tag.body;
            let (kind, keyframe, header) = match tag.tag_type {
                flv::TAG_SCRIPT => {
                    if metadata.is_none() && is_on_metadata(&body) {
                        metadata = Some(body);
                    }
                    continue;
                }
                flv::TAG_VIDEO => {
                    let Ok(v) = flv::parse_video(&body) else { continue };
                    if matches!(v.frame_type, flv::FrameType::Command) || v.packet == flv::VideoPacket::SequenceEnd {
                        continue;
                    }
                    (MediaKind::Video, v.is_keyframe() && !v.is_sequence_header(), v.is_sequence_header())
                }
                flv::TAG_AUDIO => {
                    let Ok(a) = flv::parse_audio(&body) else { continue };
                    if a.packet == flv::AudioPacket::SequenceEnd {
                        continue;
                    }
                    (MediaKind::Audio, false, a.is_sequence_header())
                }
                _ => continue,
            };
            if header {
                let first = if kind == MediaKind::Video { &mut video_header } else { &mut audio_header };
                match first {
                    None => {
                        *first = Some(body);
                        continue;
                    }
                    Some(first) if *first == body => continue,
                    Some(_) => config_changes = true,
                }
            }
            media.push(MediaFrame { kind, timestamp: tag.timestamp, payload: body, keyframe, header });
        }

        if !media.iter().any(|f| f.kind == MediaKind::Video && !f.header) {
            bail!("the FLV file has no video frames");
        }
        if video_header.is_none() {
            bail!("the FLV file has no video sequence header");
        }

        let header_frame = |kind, payload| MediaFrame { kind, timestamp: 0, payload, keyframe: false, header: true };
        let headers: Vec<MediaFrame> = [
            metadata.map(|m| header_frame(MediaKind::Data, m)),
            video_header.map(|v| header_frame(MediaKind::Video, v)),
            audio_header.map(|a| header_frame(MediaKind::Audio, a)),
        ]
        .into_iter()
        .flatten()
        .collect();

        // Timestamps relative to the first frame, never going backwards.
        let start = media[0].timestamp;
        let mut last = 0;
        for f in &mut media {
            last = f.timestamp.wrapping_sub(start).max(last);
            f.timestamp = last;
        }
        if config_changes {
            let again = headers.iter().filter(|h| h.kind != MediaKind::Data).cloned();
            media.splice(0..0, again);
        }

        let video: Vec<u32> =
            media.iter().filter(|f| f.kind == MediaKind::Video && !f.header).map(|f| f.timestamp).collect();
        let interval = match video.len() {
            0 | 1 => DEFAULT_FRAME_INTERVAL_MS,
            n => ((video[n - 1] - video[0]) / (n as u32 - 1)).max(1),
        };
        let period = last.saturating_add(interval);
        Ok(FlvSource { headers, media, period, next: 0, offset: 0 })
    }

    /// The timestamp shift between loops: the file's duration plus one frame interval, in ms.
    pub fn loop_period_ms(&self) -> u32 {
        self.period
    }
}

impl Source for FlvSource {
    fn next_frame(&mut self) -> MediaFrame {
        let mut frame = self.media[self.next].clone();
        frame.timestamp = frame.timestamp.wrapping_add(self.offset);
        self.next += 1;
        if self.next == self.media.len() {
            self.next = 0;
            self.offset = self.offset.wrapping_add(self.period);
        }
        frame
    }

    fn headers(&self) -> Vec<MediaFrame> {
        self.headers.clone()
    }

    fn bytes_per_second(&self) -> u64 {
        let bytes: u64 = self.media.iter().map(|f| f.payload.len() as u64).sum();
        bytes * 1000 / u64::from(self.period.max(1))
    }
}

/// True for a script tag body whose name is `onMetaData`.
fn is_on_metadata(body: &[u8]) -> bool {
    let mut name = Vec::new();
    amf0::encode(&amf0::Value::String("onMetaData".into()), &mut name);
    body.starts_with(&name)
}

/// A legacy FLV AVC sequence header for 1280x720 H.264 High profile, level 3.1, 4-byte NAL
/// lengths: SPS and PPS from x264 (`ffmpeg -f lavfi -i testsrc=size=1280x720:rate=30
/// -pix_fmt yuv420p -c:v libx264 -profile:v high -f flv`).
pub const SYNTHETIC_AVC_SEQUENCE_HEADER: [u8; 52] = [
    0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9,
    0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19,
    0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8, 0x00,
];
/// A legacy FLV AAC sequence header: AAC LC, 44100 Hz, stereo.
pub const SYNTHETIC_AAC_SEQUENCE_HEADER: [u8; 4] = [0xAF, 0x00, 0x12, 0x10];

/// AAC samples per frame and sample rate.
const AAC_FRAME_SAMPLES: u64 = 1024;
const AAC_SAMPLE_RATE: u64 = 44_100;
/// Share of the bitrate given to video, in percent.
const VIDEO_SHARE_PERCENT: u64 = 90;
/// A keyframe is this many times the size of an inter frame.
const KEYFRAME_WEIGHT: u64 = 5;
/// Legacy AVC tag header (5) + NAL length (4) + NAL header (1).
const MIN_VIDEO_PAYLOAD: usize = 10;
/// Legacy AAC tag header (2) + one byte.
const MIN_AUDIO_PAYLOAD: usize = 3;
/// Distinct payloads kept for reuse; frame sizes take only a few values.
const PAYLOAD_CACHE: usize = 16;

/// A fake H.264 + AAC stream of a given bitrate, costing next to nothing to generate.
///
/// Video gets about 90% of the bitrate: `fps` frames a second, a keyframe (IDR, about five
/// times the size of an inter frame) every `gop_frames`, each a legacy FLV AVC tag with one
/// NAL unit of filler. Audio gets the rest as AAC frames at 44100/1024 a second. Sizes are
/// rounded so that every GOP and the running total hit the target exactly (at least the
/// smallest possible tag). Frames come interleaved in timestamp order, video first on ties.
/// Filler bytes are never zero, so the NAL units contain no start code emulation.
#[derive(Debug, Clone)]
pub struct SyntheticSource {
    video_bps: u64,
    audio_bps: u64,
    fps: u64,
    gop_frames: u64,
    /// Index of the next video and audio frame.
    video_n: u64,
    audio_n: u64,
    /// Non-zero filler, as long as the largest frame so far.
    filler: Bytes,
    /// Recently built payloads, reused by size.
    cache: Vec<Bytes>,
    metadata: Bytes,
}

impl SyntheticSource {
    /// A stream of about `bitrate_bps` at `fps` frames a second with a keyframe every
    /// `gop_frames` frames (`fps` and `gop_frames` of 0 count as 1).
    pub fn new(bitrate_bps: u64, fps: u32, gop_frames: u32) -> Self {
        let video_bps = bitrate_bps / 100 * VIDEO_SHARE_PERCENT + bitrate_bps % 100 * VIDEO_SHARE_PERCENT / 100;
        let audio_bps = bitrate_bps - video_bps;
        let fps = u64::from(fps.max(1));
        let metadata = {
            let kbps = |bps: u64| amf0::Value::Number(bps as f64 / 1000.0);
            let props = vec![
                ("duration".to_string(), amf0::Value::Number(0.0)),
                ("width".to_string(), amf0::Value::Number(1280.0)),
                ("height".to_string(), amf0::Value::Number(720.0)),
                ("videodatarate".to_string(), kbps(video_bps)),
                ("framerate".to_string(), amf0::Value::Number(fps as f64)),
                ("videocodecid".to_string(), amf0::Value::Number(7.0)),
                ("audiodatarate".to_string(), kbps(audio_bps)),
                ("audiosamplerate".to_string(), amf0::Value::Number(AAC_SAMPLE_RATE as f64)),
                ("audiosamplesize".to_string(), amf0::Value::Number(16.0)),
                ("stereo".to_string(), amf0::Value::Boolean(true)),
                ("audiocodecid".to_string(), amf0::Value::Number(10.0)),
                ("encoder".to_string(), amf0::Value::String("sluice-bench".into())),
            ];
            let mut out = Vec::new();
            amf0::encode(&amf0::Value::String("onMetaData".into()), &mut out);
            amf0::encode(&amf0::Value::EcmaArray(props), &mut out);
            Bytes::from(out)
        };
        SyntheticSource {
            video_bps,
            audio_bps,
            fps,
            gop_frames: u64::from(gop_frames.max(1)),
            video_n: 0,
            audio_n: 0,
            filler: Bytes::new(),
            cache: Vec::new(),
            metadata,
        }
    }

    /// Timestamp of video frame `n`.
    fn video_ts(&self, n: u64) -> u32 {
        (u128::from(n) * 1000 / u128::from(self.fps)) as u32
    }

    /// Timestamp of audio frame `n`.
    fn audio_ts(n: u64) -> u32 {
        (u128::from(n) * u128::from(AAC_FRAME_SAMPLES) * 1000 / u128::from(AAC_SAMPLE_RATE)) as u32
    }

    /// Payload size of video frame `n`: the GOP's exact share of the bitrate, split 5:1:1:...
    fn video_size(&self, n: u64) -> usize {
        let g = self.gop_frames;
        let gop = n / g;
        // Bytes due by the end of GOP k: video_bps * g * k / (8 * fps).
        let due = |k: u64| u128::from(self.video_bps) * u128::from(g) * u128::from(k) / (8 * u128::from(self.fps));
        let gop_bytes = due(gop + 1) - due(gop);
        let inter = gop_bytes / u128::from(g - 1 + KEYFRAME_WEIGHT);
        let size = if n.is_multiple_of(g) { gop_bytes - inter * u128::from(g - 1) } else { inter };
        usize::try_from(size).unwrap_or(usize::MAX).clamp(MIN_VIDEO_PAYLOAD, flv::writer::MAX_TAG_BODY)
    }

    /// Payload size of audio frame `n`: its exact share of the audio bitrate.
    fn audio_size(&self, n: u64) -> usize {
        let due = |k: u64| {
            u128::from(self.audio_bps) * u128::from(k) * u128::from(AAC_FRAME_SAMPLES)
                / (8 * u128::from(AAC_SAMPLE_RATE))
        };
        let size = due(n + 1) - due(n);
        usize::try_from(size).unwrap_or(usize::MAX).clamp(MIN_AUDIO_PAYLOAD, flv::writer::MAX_TAG_BODY)
    }

    /// A payload of `size` bytes starting with `head`, then filler; reused when seen recently.
    fn payload(&mut self, head: &[u8], size: usize) -> Bytes {
        if let Some(p) = self.cache.iter().find(|p| p.len() == size && p.starts_with(head)) {
            return p.clone();
        }
        let fill = size - head.len();
        if self.filler.len() < fill {
            self.filler = filler(fill.max(2 * self.filler.len()));
        }
        let mut out = BytesMut::with_capacity(size);
        out.put_slice(head);
        out.put_slice(&self.filler[..fill]);
        let out = out.freeze();
        if self.cache.len() == PAYLOAD_CACHE {
            self.cache.remove(0);
        }
        self.cache.push(out.clone());
        out
    }
}

impl Source for SyntheticSource {
    fn next_frame(&mut self) -> MediaFrame {
        let (vts, ats) = (self.video_ts(self.video_n), Self::audio_ts(self.audio_n));
        if vts <= ats {
            let n = self.video_n;
            self.video_n += 1;
            let size = self.video_size(n);
            let keyframe = n.is_multiple_of(self.gop_frames);
            let nal_len = (size - 9) as u32;
            let mut head = [0u8; MIN_VIDEO_PAYLOAD];
            head[..5].copy_from_slice(&[if keyframe { 0x17 } else { 0x27 }, 0x01, 0, 0, 0]);
            head[5..9].copy_from_slice(&nal_len.to_be_bytes());
            // nal_ref_idc 3; type 5 IDR slice or 1 non-IDR slice.
            head[9] = if keyframe { 0x65 } else { 0x41 };
            let payload = self.payload(&head, size);
            MediaFrame { kind: MediaKind::Video, timestamp: vts, payload, keyframe, header: false }
        } else {
            let n = self.audio_n;
            self.audio_n += 1;
            let size = self.audio_size(n);
            let payload = self.payload(&[0xAF, 0x01], size);
            MediaFrame { kind: MediaKind::Audio, timestamp: ats, payload, keyframe: false, header: false }
        }
    }

    fn headers(&self) -> Vec<MediaFrame> {
        let header = |kind, payload| MediaFrame { kind, timestamp: 0, payload, keyframe: false, header: true };
        vec![
            header(MediaKind::Data, self.metadata.clone()),
            header(MediaKind::Video, Bytes::from_static(&SYNTHETIC_AVC_SEQUENCE_HEADER)),
            header(MediaKind::Audio, Bytes::from_static(&SYNTHETIC_AAC_SEQUENCE_HEADER)),
        ]
    }

    fn bytes_per_second(&self) -> u64 {
        (self.video_bps + self.audio_bps) / 8
    }
}

/// `len` pseudo-random non-zero bytes (xorshift; deterministic).
fn filler(len: usize) -> Bytes {
    let mut x: u32 = 0x9E37_79B9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8 | 0x01
        })
        .collect::<Vec<u8>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames until (not including) the first at or after `until_ms`.
    fn take_until(src: &mut impl Source, until_ms: u32) -> Vec<MediaFrame> {
        let mut out = Vec::new();
        loop {
            let f = src.next_frame();
            if f.timestamp >= until_ms {
                return out;
            }
            out.push(f);
        }
    }

    #[test]
    fn synthetic_bitrate_is_on_target() {
        for (bps, fps, gop) in [(2_500_000, 30, 60), (6_000_000, 60, 120), (500_000, 25, 50), (1_000_000, 24, 1)] {
            let mut src = SyntheticSource::new(bps, fps, gop);
            let frames = take_until(&mut src, 10_000);
            let bytes = |kind| frames.iter().filter(|f| f.kind == kind).map(|f| f.payload.len() as u64).sum::<u64>();
            let (video, audio) = (bytes(MediaKind::Video) * 8 / 10, bytes(MediaKind::Audio) * 8 / 10);
            let total = video + audio;
            assert!(total.abs_diff(bps) * 20 <= bps, "{bps} {fps} {gop}: {total} b/s");
            assert!(video.abs_diff(bps * 9 / 10) * 20 <= bps * 9 / 10, "{bps}: video {video} b/s");
            assert!(audio.abs_diff(bps / 10) * 20 <= bps / 10, "{bps}: audio {audio} b/s");
            let count = |kind| frames.iter().filter(|f| f.kind == kind).count();
            assert_eq!(count(MediaKind::Video), 10 * fps as usize);
            assert_eq!(count(MediaKind::Audio), 431, "44100/1024 frames a second");
        }
    }

    #[test]
    fn synthetic_keyframes_and_frame_shape() {
        let mut src = SyntheticSource::new(3_000_000, 30, 60);
        let video: Vec<MediaFrame> =
            take_until(&mut src, 10_000).into_iter().filter(|f| f.kind == MediaKind::Video).collect();
        for (i, f) in video.iter().enumerate() {
            assert_eq!(f.keyframe, i % 60 == 0, "frame {i}");
            let h = flv::parse_video(&f.payload).unwrap();
            assert_eq!(h.codec, flv::VideoCodec::Avc);
            assert_eq!(h.is_keyframe(), f.keyframe);
            assert!(!h.is_sequence_header());
            let p = &f.payload;
            assert_eq!(u32::from_be_bytes(p[5..9].try_into().unwrap()) as usize, p.len() - 9);
            assert_eq!(p[9], if f.keyframe { 0x65 } else { 0x41 });
            assert!(!p[10..].contains(&0));
            assert_eq!(f.timestamp, (i * 1000 / 30) as u32);
        }
        // Keyframes are about 5x inter frames, and a GOP adds up to 3 Mb/s * 90% * 2 s.
        let (key, inter) = (video[0].payload.len(), video[1].payload.len());
        assert!((key as f64 / inter as f64 - 5.0).abs() < 0.01, "{key} {inter}");
        let gop: usize = video[..60].iter().map(|f| f.payload.len()).sum();
        assert_eq!(gop, 2_700_000 * 2 / 8);
        // Payloads share their memory.
        assert_eq!(video[1].payload.as_ptr(), video[2].payload.as_ptr());
    }

    #[test]
    fn synthetic_interleaves_in_timestamp_order() {
        let mut src = SyntheticSource::new(1_000_000, 30, 30);
        let frames = take_until(&mut src, 5_000);
        assert!(frames.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert_eq!(frames[0].kind, MediaKind::Video, "video first on ties");
        assert!(frames[0].keyframe);
        assert_eq!(frames[1].kind, MediaKind::Audio);
        // Never two video frames without the audio due between them.
        let mut last_video = 0;
        for f in &frames {
            match f.kind {
                MediaKind::Video => last_video = f.timestamp,
                _ => assert!(f.timestamp >= last_video),
            }
            if f.kind == MediaKind::Audio {
                assert_eq!(&f.payload[..2], [0xAF, 0x01]);
            }
        }
    }

    #[test]
    fn synthetic_headers() {
        let src = SyntheticSource::new(1_000_000, 30, 30);
        let h = src.headers();
        assert_eq!(h.iter().map(|f| f.kind).collect::<Vec<_>>(), [MediaKind::Data, MediaKind::Video, MediaKind::Audio]);
        assert!(h.iter().all(|f| f.header && !f.keyframe && f.timestamp == 0));
        let meta = amf0::decode_all(&h[0].payload).unwrap();
        assert_eq!(meta[0], amf0::Value::String("onMetaData".into()));
        assert_eq!(meta[1].get("width"), Some(&amf0::Value::Number(1280.0)));
        let v = flv::parse_video(&h[1].payload).unwrap();
        assert!(v.is_sequence_header());
        let params = flv::parse_avc_config(v.payload(&h[1].payload)).unwrap();
        assert_eq!((params.width, params.height), (1280, 720));
        assert_eq!(crate::sei::nal_length_size(&h[1].payload), Some(4));
        let a = flv::parse_audio(&h[2].payload).unwrap();
        assert!(a.is_sequence_header());
        let aac = flv::parse_aac_config(a.payload(&h[2].payload)).unwrap();
        assert_eq!(aac.sample_rate, 44_100);
    }

    #[test]
    fn synthetic_frames_can_be_stamped() {
        let mut src = SyntheticSource::new(1_000_000, 30, 30);
        let f = src.next_frame();
        let stamped = crate::sei::stamp_avc(&f.payload, 4, 123, 4).unwrap();
        assert_eq!(crate::sei::read_avc(&stamped, 4), Some((123, 4)));
    }

    fn metadata_body() -> Vec<u8> {
        amf0::encode_all(&[
            amf0::Value::String("onMetaData".into()),
            amf0::Value::EcmaArray(vec![("duration".into(), amf0::Value::Number(0.3))]),
        ])
    }

    /// A small FLV file: metadata, sequence headers, video at 100..=300 ms with a keyframe
    /// first, audio in between.
    fn sample_flv(config_change: bool) -> Vec<u8> {
        let mut out = flv::file_header(true, true).to_vec();
        let mut tag = |t, ts, body: &[u8]| flv::write_tag(&mut out, t, ts, body).unwrap();
        tag(flv::TAG_SCRIPT, 0, &metadata_body());
        tag(flv::TAG_VIDEO, 0, &SYNTHETIC_AVC_SEQUENCE_HEADER);
        tag(flv::TAG_AUDIO, 0, &SYNTHETIC_AAC_SEQUENCE_HEADER);
        tag(flv::TAG_VIDEO, 100, &[0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0xAA]);
        tag(flv::TAG_AUDIO, 110, &[0xAF, 1, 0x21]);
        tag(flv::TAG_VIDEO, 200, &[0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 0xBB]);
        if config_change {
            tag(flv::TAG_AUDIO, 200, &[0xAF, 0x00, 0x11, 0x90]);
        }
        tag(flv::TAG_AUDIO, 190, &[0xAF, 1, 0x22]);
        tag(flv::TAG_VIDEO, 300, &[0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 0xCC]);
        tag(flv::TAG_VIDEO, 300, &[0x17, 2, 0, 0, 0]);
        out
    }

    #[test]
    fn flv_source_headers_and_loop() {
        let path = std::env::temp_dir().join(format!("sluice-bench-source-{}.flv", std::process::id()));
        std::fs::write(&path, sample_flv(false)).unwrap();
        let opened = FlvSource::open(&path);
        std::fs::remove_file(&path).unwrap();
        let mut src = opened.unwrap();

        let h = src.headers();
        assert_eq!(h.iter().map(|f| f.kind).collect::<Vec<_>>(), [MediaKind::Data, MediaKind::Video, MediaKind::Audio]);
        assert_eq!(h[0].payload, metadata_body());
        assert_eq!(h[1].payload[..], SYNTHETIC_AVC_SEQUENCE_HEADER);
        assert_eq!(h[2].payload[..], SYNTHETIC_AAC_SEQUENCE_HEADER);
        assert!(h.iter().all(|f| f.header && f.timestamp == 0));

        // Duration 200 ms (the audio at 190 is clamped to 200), video interval 100 ms.
        assert_eq!(src.loop_period_ms(), 300);
        let frames: Vec<MediaFrame> = (0..15).map(|_| src.next_frame()).collect();
        let ts: Vec<u32> = frames.iter().map(|f| f.timestamp).collect();
        assert_eq!(ts, [0, 10, 100, 100, 200, 300, 310, 400, 400, 500, 600, 610, 700, 700, 800]);
        let kinds = [MediaKind::Video, MediaKind::Audio, MediaKind::Video, MediaKind::Audio, MediaKind::Video];
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.kind, kinds[i % 5], "frame {i}");
            assert_eq!(f.keyframe, i % 5 == 0);
            assert!(!f.header);
        }
        // The end-of-sequence tag is dropped.
        assert_eq!(frames[4].payload[..], [0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 0xCC]);
    }

    #[test]
    fn flv_source_resends_headers_after_a_config_change() {
        let mut src = FlvSource::from_bytes(Bytes::from(sample_flv(true))).unwrap();
        let frames: Vec<MediaFrame> = (0..16).map(|_| src.next_frame()).collect();
        // Each loop starts with the first sequence headers again, at the loop's start.
        for start in [0, 8] {
            assert!(frames[start].header && frames[start + 1].header);
            assert_eq!(frames[start].payload[..], SYNTHETIC_AVC_SEQUENCE_HEADER);
            assert_eq!(frames[start + 1].payload[..], SYNTHETIC_AAC_SEQUENCE_HEADER);
            assert_eq!(frames[start].timestamp, frames[start + 2].timestamp);
            assert!(frames[start + 2].keyframe);
        }
        assert!(frames[5].header && frames[5].payload[..] == [0xAF, 0x00, 0x11, 0x90]);
        assert!(frames.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    }

    #[test]
    fn flv_source_errors() {
        let mut audio_only = flv::file_header(true, false).to_vec();
        flv::write_tag(&mut audio_only, flv::TAG_SCRIPT, 0, &metadata_body()).unwrap();
        flv::write_tag(&mut audio_only, flv::TAG_AUDIO, 0, &SYNTHETIC_AAC_SEQUENCE_HEADER).unwrap();
        flv::write_tag(&mut audio_only, flv::TAG_AUDIO, 23, &[0xAF, 1, 0x21]).unwrap();
        let err = FlvSource::from_bytes(Bytes::from(audio_only)).unwrap_err();
        assert!(err.to_string().contains("no video"), "{err:#}");

        let err = FlvSource::from_bytes(Bytes::from_static(b"not an flv file")).unwrap_err();
        assert!(format!("{err:#}").contains("FLV"), "{err:#}");

        let missing = std::env::temp_dir().join("sluice-bench-no-such-file.flv");
        let err = FlvSource::open(&missing).unwrap_err();
        assert!(format!("{err:#}").contains("no-such-file"), "{err:#}");
    }
}

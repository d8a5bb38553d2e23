//! Media files as a sample index, for playing them back: FLV, progressive MP4 (`moov` at the
//! start or at the end) and fragmented MP4 (`moof` + `mdat`, as sluice's MP4 recordings are
//! written), with H.264, HEVC or AV1 video and AAC, MP3 or Opus audio (MP4; an FLV file's
//! tags are sent as they are).
//!
//! Sans-IO: [`Media::open`] reads the byte ranges it needs through [`ReadAt`], which the caller
//! implements (a file, a buffer); the samples' own bytes are read by the caller later, a few at
//! a time, and turned into RTMP message payloads (FLV tag bodies) by [`Media::payload`]. The
//! whole file is never needed in memory.
//!
//! Everything read from the file is bounded before it is used: box sizes ([`MAX_BOX`]), sample
//! counts ([`MAX_SAMPLES`]), codec headers ([`MAX_HEADER`]); a file past a bound is refused
//! with a typed [`MediaError`].

mod flv_file;
mod mp4_file;

use bytes::{BufMut, Bytes, BytesMut};

/// Most samples (video frames, audio frames, FLV tags) indexed for one file: 4 Mi, about 18
/// hours of 30 fps video with 48 kHz AAC. The index costs 24 bytes a sample (96 MiB at most).
pub const MAX_SAMPLES: usize = 4 << 20;
/// Largest box read whole (`moov`, `moof`): 64 MiB.
pub const MAX_BOX: u64 = 64 << 20;
/// Largest codec header or `onMetaData` kept (sent to every player).
pub const MAX_HEADER: usize = 1 << 20;
/// Most top-level boxes or FLV tags walked before giving up (bounds the work on hostile files).
pub const MAX_ITEMS: usize = 2 * MAX_SAMPLES;

/// Why a file cannot be played.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Reading failed.
    #[error("read: {0}")]
    Io(#[from] std::io::Error),
    /// Neither FLV nor MP4.
    #[error("not an FLV or MP4 file")]
    UnknownFormat,
    /// The file is not what its format says.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// Something valid this reader does not play.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// Past one of the bounds (`MAX_*`).
    #[error("too large: {0}")]
    TooLarge(&'static str),
    /// Nothing to play.
    #[error("no audio or video")]
    Empty,
}

/// Reads byte ranges of one file. A read past the end returns what there is (maybe nothing).
pub trait ReadAt {
    /// Up to `len` bytes from `offset`.
    fn read_at(&mut self, offset: u64, len: usize) -> std::io::Result<Vec<u8>>;
    /// The file's length.
    fn size(&self) -> u64;
}

/// A file held in memory (tests, fuzzing).
pub struct Slice<'a>(pub &'a [u8]);

impl ReadAt for Slice<'_> {
    fn read_at(&mut self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.0.len());
        let end = start.saturating_add(len).min(self.0.len());
        Ok(self.0[start..end].to_vec())
    }

    fn size(&self) -> u64 {
        self.0.len() as u64
    }
}

/// Exactly `len` bytes at `offset`, or [`MediaError::Malformed`] (`what`) when the file ends first.
pub(crate) fn read_exact(
    r: &mut dyn ReadAt,
    offset: u64,
    len: usize,
    what: &'static str,
) -> Result<Vec<u8>, MediaError> {
    let data = r.read_at(offset, len)?;
    if data.len() < len {
        return Err(MediaError::Malformed(what));
    }
    Ok(data)
}

/// Which RTMP message a sample becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Video (message type 9).
    Video,
    /// Audio (message type 8).
    Audio,
    /// Script data, `onMetaData` and cue points (message type 18).
    Data,
}

/// How a sample's bytes become an FLV tag body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Already a tag body (FLV files).
    Tag,
    /// H.264 (legacy FLV codec 7).
    Avc,
    /// HEVC (Enhanced RTMP, `hvc1`).
    Hevc,
    /// AV1 (Enhanced RTMP, `av01`).
    Av1,
    /// AAC (FLV sound format 10).
    Aac,
    /// MP3 (FLV sound format 2): `header` is the tag's first byte (rate, size, channels).
    Mp3 {
        /// The FLV audio tag header byte.
        header: u8,
    },
    /// Opus (Enhanced RTMP, `Opus`).
    Opus,
}

impl Codec {
    /// The name logs and tests use.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Tag => "flv",
            Codec::Avc => "h264",
            Codec::Hevc => "hevc",
            Codec::Av1 => "av1",
            Codec::Aac => "aac",
            Codec::Mp3 { .. } => "mp3",
            Codec::Opus => "opus",
        }
    }
}

/// One sample (frame) of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Where its bytes start in the file.
    pub offset: u64,
    /// How many bytes.
    pub size: u32,
    /// Decode time, milliseconds from the file's start.
    pub dts: u32,
    /// Composition time minus decode time, milliseconds.
    pub cts: i32,
    /// A video keyframe (playback may start here).
    pub keyframe: bool,
    /// Which track: an index into [`Media::codecs`].
    pub track: u8,
}

/// The container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// FLV.
    Flv,
    /// MP4 with sample tables in `moov`.
    Mp4,
    /// MP4 with `moof` fragments (maybe some samples in `moov` too).
    FragmentedMp4,
}

/// A file ready to play: what to send first, and where every sample is.
#[derive(Debug, Clone)]
pub struct Media {
    /// The container.
    pub format: Format,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Where the file's time 0 is on its samples' timeline (ms): past 0 when an MP4 edit list
    /// starts a track into its media (B-frame video, primed AAC), which moved every sample
    /// later so that none is before 0. A time asked for (seek, `play` start) is counted from it.
    pub start_ms: u64,
    /// RTMP messages every player gets first, and again after a seek: `onMetaData`, the
    /// video and audio sequence headers.
    pub headers: Vec<(Kind, Bytes)>,
    /// Per track: its kind and how its samples are wrapped.
    pub codecs: Vec<(Kind, Codec)>,
    /// Every sample, in the order to send them (decode order).
    pub samples: Vec<Sample>,
}

/// Which tracks of an MP4 file play (nginx-rtmp's `?aindex=N&vindex=N`): the N-th audio and
/// video track (0-based, counted by their handler, `soun` and `vide`, playable or not); `None`
/// plays the first of that kind this reader plays. FLV files have one of each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Tracks {
    /// The audio track's index.
    pub audio: Option<u8>,
    /// The video track's index.
    pub video: Option<u8>,
}

impl Media {
    /// Reads the index of the file `r` reads: the format is recognised from its first bytes.
    pub fn open(r: &mut dyn ReadAt) -> Result<Media, MediaError> {
        Self::open_tracks(r, Tracks::default())
    }

    /// [`Media::open`] with the MP4 tracks `tracks` chooses.
    pub fn open_tracks(r: &mut dyn ReadAt, tracks: Tracks) -> Result<Media, MediaError> {
        let head = r.read_at(0, 12)?;
        let media = if head.starts_with(b"FLV") {
            flv_file::open(r)?
        } else if head.len() >= 8 && mp4_file::is_mp4(&head) {
            mp4_file::open(r, tracks)?
        } else {
            return Err(MediaError::UnknownFormat);
        };
        if media.samples.is_empty() {
            return Err(MediaError::Empty);
        }
        Ok(media)
    }

    /// The kind of message `sample` becomes.
    pub fn kind(&self, sample: &Sample) -> Kind {
        self.codecs.get(sample.track as usize).map_or(Kind::Data, |(k, _)| *k)
    }

    /// Whether the file has video keyframes to start at.
    pub fn has_video(&self) -> bool {
        self.samples.iter().any(|s| s.keyframe && self.kind(s) == Kind::Video)
    }

    /// The codecs of the file, for logs and tests (`h264+aac`, `flv`).
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.codecs.iter().map(|(_, c)| c.name()).collect();
        names.join("+")
    }

    /// Where to start playing at `ms`: the last video keyframe at or before it (the first
    /// sample when there is none), or, without video, the last sample at or before it.
    /// Time 0 is the first sample, whatever it is (audio an edit list put before the first
    /// keyframe plays too, and `onMetaData` goes at 0, where players take it for metadata).
    pub fn seek(&self, ms: u64) -> usize {
        if ms == 0 {
            return 0;
        }
        let ms = ms.saturating_add(self.start_ms);
        let video = self.has_video();
        let mut at = 0;
        for (i, s) in self.samples.iter().enumerate() {
            if u64::from(s.dts) > ms {
                break;
            }
            let start = if video { s.keyframe && self.kind(s) == Kind::Video } else { true };
            if start {
                at = i;
            }
        }
        at
    }

    /// The RTMP message payload (FLV tag body) of `sample`, whose bytes are `data`.
    pub fn payload(&self, sample: &Sample, data: &[u8]) -> Bytes {
        let codec = self.codecs.get(sample.track as usize).map_or(Codec::Tag, |(_, c)| *c);
        let mut out = BytesMut::with_capacity(data.len() + 8);
        let frame_type: u8 = if sample.keyframe { 1 } else { 2 };
        match codec {
            Codec::Tag => return Bytes::copy_from_slice(data),
            Codec::Avc => {
                out.put_u8(frame_type << 4 | 7);
                out.put_u8(1);
                put_i24(&mut out, sample.cts);
            }
            Codec::Hevc => {
                // Enhanced RTMP: CodedFrames (1), with a composition time offset.
                out.put_u8(0x80 | frame_type << 4 | 1);
                out.put_slice(b"hvc1");
                put_i24(&mut out, sample.cts);
            }
            Codec::Av1 => {
                out.put_u8(0x80 | frame_type << 4 | 1);
                out.put_slice(b"av01");
            }
            Codec::Aac => out.put_slice(&[0xAF, 1]),
            Codec::Mp3 { header } => out.put_u8(header),
            Codec::Opus => {
                // Enhanced RTMP audio: ExHeader (9), CodedFrames (1).
                out.put_u8(0x91);
                out.put_slice(b"Opus");
            }
        }
        out.put_slice(data);
        out.freeze()
    }
}

fn put_i24(out: &mut BytesMut, v: i32) {
    let v = v.clamp(-(1 << 23), (1 << 23) - 1) as u32;
    out.put_slice(&v.to_be_bytes()[1..]);
}

/// A video sequence header tag body for `codec` with configuration record `config`.
pub(crate) fn video_header(codec: Codec, config: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(config.len() + 5);
    match codec {
        Codec::Avc => out.put_slice(&[0x17, 0, 0, 0, 0]),
        Codec::Hevc => {
            out.put_u8(0x90);
            out.put_slice(b"hvc1");
        }
        Codec::Av1 => {
            out.put_u8(0x90);
            out.put_slice(b"av01");
        }
        Codec::Aac | Codec::Tag | Codec::Mp3 { .. } | Codec::Opus => {}
    }
    out.put_slice(config);
    out.freeze()
}

/// The AAC sequence header tag body for AudioSpecificConfig `asc`.
pub(crate) fn aac_header(asc: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(asc.len() + 2);
    out.put_slice(&[0xAF, 0]);
    out.put_slice(asc);
    out.freeze()
}

/// The FLV audio tag header byte of MP3 at `rate` Hz with `channels` channels (16-bit; a rate
/// FLV has no code for, such as 48 kHz, says 44 kHz: decoders take the rate from the frames).
pub(crate) fn mp3_tag_header(rate: u32, channels: u16) -> u8 {
    let rate_code = match rate {
        0 | 44_100.. => 3,
        22_050.. => 2,
        11_025.. => 1,
        _ => 0,
    };
    0x20 | rate_code << 2 | 0x02 | u8::from(channels > 1)
}

/// The Enhanced RTMP Opus sequence start tag body for identification header `opus_head`.
pub(crate) fn opus_header(opus_head: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(opus_head.len() + 5);
    // ExHeader (9), SequenceStart (0).
    out.put_u8(0x90);
    out.put_slice(b"Opus");
    out.put_slice(opus_head);
    out.freeze()
}

/// An `onMetaData` data message body with `props`.
pub(crate) fn metadata(props: Vec<(&str, amf0::Value)>) -> Bytes {
    let values = [amf0::Value::String("onMetaData".into()), amf0::Value::ecma_array(props)];
    Bytes::from(amf0::encode_all(&values))
}

/// `(n * 1000 / timescale)` in milliseconds, saturating at `u32::MAX`.
pub(crate) fn to_ms(n: u64, timescale: u32) -> u32 {
    let ms = u128::from(n) * 1000 / u128::from(timescale.max(1));
    u32::try_from(ms).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;

use thiserror::Error;

use crate::mux::Track;

/// Everything that can go wrong while turning FLV payloads into elementary streams
/// (see [`crate::es`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EsError {
    /// The input ended before the named structure was complete.
    #[error("{0} is truncated")]
    Truncated(&'static str),
    /// A decoder configuration record with a version other than 1.
    #[error("{what} version {version} is not 1")]
    BadConfigVersion {
        /// The record's name.
        what: &'static str,
        /// The version byte found.
        version: u8,
    },
    /// A decoder configuration record carries no parameter set of the named kind.
    #[error("no {0} in the decoder configuration record")]
    MissingParameterSet(&'static str),
    /// A NAL unit length prefix points past the end of the frame.
    #[error("NAL unit of {len} bytes at offset {offset} runs past the end of the {total}-byte frame")]
    NalPastEnd {
        /// Where the length prefix starts in the frame.
        offset: usize,
        /// The length the prefix claims.
        len: usize,
        /// The frame size.
        total: usize,
    },
    /// A frame ends inside a NAL unit length prefix.
    #[error("frame ends inside a {size}-byte NAL length prefix at offset {offset}")]
    NalLengthTruncated {
        /// Where the prefix starts.
        offset: usize,
        /// The prefix size in bytes.
        size: u8,
    },
    /// A video frame without NAL units (other than access unit delimiters): no access unit to
    /// write.
    #[error("video frame carries no NAL units")]
    EmptyFrame,
    /// An `AudioSpecificConfig` with audioObjectType 0 (null object).
    #[error("AAC audio object type 0 is not a codec")]
    NullObjectType,
    /// A reserved samplingFrequencyIndex (13 or 14).
    #[error("AAC sampling frequency index {0} is reserved")]
    ReservedSampleRateIndex(u8),
    /// ADTS can carry only object types 1 to 4 (AAC Main, LC, SSR, LTP) in its 2-bit profile.
    #[error("AAC audio object type {0} cannot be carried in an ADTS header")]
    AdtsObjectType(u8),
    /// ADTS has no escape for a sampling frequency missing from the index table.
    #[error("AAC sample rate {0} Hz has no ADTS sampling frequency index")]
    AdtsSampleRate(u32),
    /// ADTS carries channelConfiguration in 3 bits, and 0 needs an in-band program config element.
    #[error("AAC channel configuration {0} cannot be carried in an ADTS header")]
    AdtsChannels(u8),
    /// An ADTS frame (7-byte header plus raw data) longer than its 13-bit length field allows.
    #[error("ADTS frame of {0} bytes exceeds {max}", max = crate::es::MAX_ADTS_FRAME)]
    AdtsFrameTooLarge(usize),
}

/// Everything that can go wrong while muxing (see [`crate::Muxer`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MuxError {
    /// A PES for a track the muxer was not created with: it is missing from the PMT.
    #[error("the muxer has no {0:?} track")]
    NoSuchTrack(Track),
    /// An audio PES whose length does not fit PES_packet_length; only video may leave it
    /// unbounded (ISO/IEC 13818-1, 2.4.3.7).
    #[error("audio PES payload of {0} bytes does not fit PES_packet_length")]
    AudioPesTooLarge(usize),
}

use thiserror::Error;

use crate::FourCc;

/// Everything that can go wrong while writing or reading fragmented MP4.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Fmp4Error {
    /// Track id 0 is reserved (ISO/IEC 14496-12, 8.3.2.3).
    #[error("track id 0 is not allowed")]
    ZeroTrackId,
    /// Two tracks of one init segment share an id.
    #[error("track id {0} is used twice")]
    DuplicateTrackId(u32),
    /// A track's timescale is 0, so no time in it can be expressed.
    #[error("track {track_id} has timescale 0")]
    ZeroTimescale {
        /// The track.
        track_id: u32,
    },
    /// A codec configuration record does not look like the named record.
    #[error("track {track_id}: {record} is invalid: {reason}")]
    BadConfig {
        /// The track.
        track_id: u32,
        /// The record (`avcC`, `hvcC`, `av1C`, `AudioSpecificConfig`).
        record: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A codec configuration record longer than [`crate::MAX_CONFIG_SIZE`].
    #[error("track {track_id}: {record} of {len} bytes is larger than {} bytes", crate::MAX_CONFIG_SIZE)]
    ConfigTooLarge {
        /// The track.
        track_id: u32,
        /// The record.
        record: &'static str,
        /// Its length.
        len: usize,
    },
    /// Opus with a channel count that channel mapping family 0 cannot describe (only 1 or 2).
    #[error("track {track_id}: Opus with {channels} channels is not supported (1 or 2 only)")]
    OpusChannels {
        /// The track.
        track_id: u32,
        /// The channel count asked for.
        channels: u16,
    },
    /// A fragment larger than [`crate::MAX_FRAGMENT_SIZE`]: `trun` data offsets are signed
    /// 32-bit numbers counted from the start of the `moof`.
    #[error("fragment of {size} bytes is larger than {} bytes", crate::MAX_FRAGMENT_SIZE)]
    FragmentTooLarge {
        /// The size the fragment would have had.
        size: u64,
    },
    /// A box that this crate reads back is missing, too short, or holds impossible values.
    #[error("{what} is malformed")]
    Malformed {
        /// The box or field, e.g. `"trun"`, `"moov: no mvhd"`.
        what: &'static str,
    },
    /// A valid box feature that this crate does not read, e.g. explicit base data offsets.
    #[error("{what} is not supported")]
    Unsupported {
        /// The feature.
        what: &'static str,
    },
    /// Sample tables for a track the initialization segment does not have.
    #[error("no track {0} in the initialization segment")]
    UnknownTrack(u32),
    /// Fewer than 8 bytes were left where a box header should start.
    #[error("box header at offset {offset} is truncated")]
    TruncatedHeader {
        /// Where the header starts.
        offset: usize,
    },
    /// A box whose size field is smaller than its own header.
    #[error("box {} at offset {offset} has impossible size {size}", fourcc(.kind))]
    BadBoxSize {
        /// The box type.
        kind: FourCc,
        /// Where the box starts.
        offset: usize,
        /// The size it declares.
        size: u64,
    },
    /// A box that declares more bytes than are left.
    #[error("box {} at offset {offset} declares {size} bytes, only {available} are left", fourcc(.kind))]
    TruncatedBox {
        /// The box type.
        kind: FourCc,
        /// Where the box starts.
        offset: usize,
        /// The size it declares.
        size: u64,
        /// The bytes left from `offset` to the end of the input.
        available: u64,
    },
}

/// A box type for messages: the four characters where printable, escaped otherwise.
fn fourcc(kind: &FourCc) -> String {
    kind.iter().flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect()
}

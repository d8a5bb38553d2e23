use thiserror::Error;

/// Everything that can go wrong while parsing FLV tags, codec configuration records or FLV files.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlvError {
    /// The input ended before the named structure was complete.
    #[error("{0} is truncated")]
    Truncated(&'static str),
    /// More Enhanced RTMP ModEx prefixes than [`crate::tag::MAX_MOD_EX`].
    #[error("more than {} ModEx prefixes", crate::tag::MAX_MOD_EX)]
    TooManyModEx,
    /// A field holds a value the spec does not allow; the text names the field.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// A configuration record carries no parameter set of the named kind.
    #[error("no {0} in the configuration record")]
    MissingParameterSet(&'static str),
    /// The file does not start with `FLV`.
    #[error("not an FLV file (signature {0:02x?})")]
    BadSignature([u8; 3]),
    /// The FLV header's DataOffset is smaller than the 9-byte header.
    #[error("FLV header size {0} is smaller than 9")]
    BadHeaderSize(u32),
    /// A tag body longer than the 24-bit DataSize field can describe.
    #[error("tag body of {0} bytes does not fit in 24 bits")]
    TagTooLarge(usize),
    /// A recording's `onMetaData` needs more bytes than were reserved for it.
    #[error("onMetaData needs {needed} bytes, only {reserved} are reserved")]
    MetadataTooLarge {
        /// Bytes the properties need.
        needed: usize,
        /// Bytes reserved in the file.
        reserved: usize,
    },
}

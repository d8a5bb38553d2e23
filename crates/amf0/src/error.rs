use thiserror::Error;

/// Everything that can go wrong while decoding AMF0 or AMF3.
///
/// Encoding cannot fail.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Amf0Error {
    /// The input ended in the middle of a value.
    #[error("unexpected end of input: needed {needed} more bytes")]
    UnexpectedEof {
        /// Bytes still missing when the input ran out.
        needed: usize,
    },
    /// An AMF0 type marker this decoder does not know (or a reserved one such as movieclip).
    #[error("unknown or unsupported AMF0 marker {0:#04x}")]
    UnknownMarker(u8),
    /// An AMF3 type marker this decoder does not support (byte arrays, vectors, dictionaries).
    #[error("unsupported AMF3 marker {0:#04x}")]
    UnsupportedAmf3Marker(u8),
    /// Objects and arrays are nested deeper than [`crate::MAX_DEPTH`].
    #[error("values nested deeper than {limit} levels")]
    TooDeep {
        /// The limit that was hit.
        limit: usize,
    },
    /// An AMF0 reference (marker 0x07); RTMP peers do not send them and they are not supported.
    #[error("AMF0 references are not supported (index {0})")]
    Reference(u16),
    /// An AMF3 reference points past the end of its table or at a value still being decoded.
    #[error("AMF3 {table} reference {index} is out of range")]
    BadAmf3Reference {
        /// Which table: "string", "object" or "traits".
        table: &'static str,
        /// The index that was out of range.
        index: usize,
    },
    /// The decoded values (with the copies AMF3 references make) would take more than the
    /// [`crate::Budget`] allows.
    #[error("decoded AMF values exceed the budget of {limit} bytes")]
    BudgetExceeded {
        /// The budget's limit in bytes.
        limit: usize,
    },
    /// An AMF3 externalizable object; its body format is private to the class.
    #[error("AMF3 externalizable objects are not supported (class {0:?})")]
    Externalizable(String),
}

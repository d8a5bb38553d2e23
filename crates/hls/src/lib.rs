//! HLS without I/O: nginx-rtmp's `hls` module as functions over bytes.
//!
//! | spec | what is used |
//! |---|---|
//! | RFC 8216 (HLS) | media playlists, `#EXT-X-KEY` AES-128, `#EXT-X-MAP`, discontinuities |
//! | RFC 8216 §4.3.4.2, RFC 6381 | master playlists (`hls_variant`) with `CODECS`, `RESOLUTION`, `FRAME-RATE` |
//! | RFC 8216bis §4.4.3–4.4.5 | low-latency HLS: parts, preload hints, blocking reload |
//! | ISO/IEC 13818-1 | MPEG-TS segments (through the `mpegts` crate) |
//! | ISO/IEC 23000-19 (CMAF) | fMP4 segments (through the `fmp4` crate) |
//!
//! The [`segmenter`] takes a publisher's RTMP messages (FLV tag bodies, their tag headers
//! already parsed by the caller, with millisecond timestamps) and cuts them into segments as nginx-rtmp does; the [`playlist`] module renders
//! and reads M3U8 text. Writing files, serving HTTP and timers are the caller's business.

#![deny(missing_docs)]

mod crypt;
pub mod master;
pub mod playlist;
pub mod segmenter;
mod timeline;

pub use playlist::PlaylistType;
pub use segmenter::{
    Container, Event, KeySettings, Naming, Position, Segmenter, Settings, SettingsError, Slicing, Tracks,
};

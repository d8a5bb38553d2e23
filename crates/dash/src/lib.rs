//! MPEG-DASH without I/O: one publisher's RTMP messages in; init segments, media fragments and
//! the MPD out (nginx-rtmp's `dash` module, `dash/ngx_rtmp_dash_module.c`).
//!
//! | Spec | Where |
//! | --- | --- |
//! | ISO/IEC 23009-1 (DASH) 5.3 MPD, Period, AdaptationSet, Representation; 5.3.9.4 `SegmentTemplate` with `$Time$`; 5.3.9.6 `SegmentTimeline`; 8.4 ISOBMFF live profile (`urn:mpeg:dash:profile:isoff-live:2011`) | [`mpd`] |
//! | ISO/IEC 14496-12 / 23000-19 (CMAF): init segments, `styp` + `moof` + `mdat` fragments (the `fmp4` crate) | [`Packager`] |
//!
//! Files are named as nginx-rtmp names them: flat `NAME.mpd`, `NAME-init.m4v`, `NAME-init.m4a`,
//! `NAME-T.m4v`, `NAME-T.m4a` (T: the fragment's start in ms); nested (`dash_nested`)
//! `NAME/index.mpd`, `NAME/init.m4v`, `NAME/T.m4v`, .... Video and audio are separate tracks in
//! separate files (one AdaptationSet each) and are cut together: both share one timeline.
//!
//! With [`Settings::part`] (low latency) each fragment is also given out as CMAF chunks while it
//! is built ([`Event::Part`]), and the MPD announces it with `availabilityTimeOffset`.
//!
//! Call [`Packager::push_video`] / [`Packager::push_audio`] for every message (tag header parsed
//! by the caller, once), drain [`Packager::poll_event`], and render [`Packager::mpd`] when an
//! event says it changed. Time is passed in: media timestamps, and the wall clock in Unix ms.

#![deny(missing_docs, unsafe_code, unreachable_pub)]

pub mod mpd;
mod packager;

pub use packager::{Event, Packager, Settings, MAX_FRAGMENT_BYTES, MAX_FRAGMENT_SAMPLES};

/// The MPD's file name for stream `name`, relative to `dash_path`: `NAME.mpd`, or
/// `NAME/index.mpd` with `dash_nested`.
pub fn manifest_file(name: &str, nested: bool) -> String {
    if nested {
        format!("{name}/index.mpd")
    } else {
        format!("{name}.mpd")
    }
}

//! sluice-bench: a load tool for any RTMP server. One publisher replays an FLV file (or a
//! synthetic stream) in real time, stamping every video frame with its send time in an SEI NAL;
//! thousands of players play it. Bulk players only drain and count bytes (cheaply, with
//! `recv(MSG_TRUNC)`); a few probe players parse everything to measure time to first frame and
//! publish-to-play latency. The report says how many players kept up, per step of a ramp.
//! With `--http-flv URL` the players and probes play over HTTP-FLV ([`httpflv`]) instead; with
//! `--hls URL` HLS viewers ([`hls`]) take the players' place.

pub mod hls;
pub mod hostile;
pub mod httpflv;
pub mod lag;
pub mod players;
pub mod procstat;
pub mod report;
pub mod sei;
pub mod source;

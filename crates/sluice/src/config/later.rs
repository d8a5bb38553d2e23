//! Directives of nginx-rtmp features sluice does not implement yet (exec, relay, VOD play,
//! DASH, logging, and a notify fork's `notify_send_redirect`). They are accepted, so existing
//! configs keep loading, kept as raw words in `extra` (on `ServerConf`, `AppConf` and `Recorder`) for the feature
//! that implements them later, and logged as a warning. Argument counts are checked loosely
//! (nginx-rtmp's own counts, widened where forks add arguments).
//!
//! When a feature is implemented, move its rows to its own module with a typed field.

use nginx_conf::Directive;

use super::value::{
    ctx::{HTTP, RSA, RSAR, TOP},
    spec, Args, DirectiveSpec, Kind,
};

const ONE: Args = Args::Exactly(1);
const ONE_UP: Args = Args::AtLeast(1);

/// Not yet implemented directives, accepted and carried in `extra`.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    // notify (a fork's directive: answer redirects to the client instead of following them)
    spec("notify_send_redirect", RSA, ONE, Kind::Raw, "off"),
    // exec
    spec("exec", RSA, ONE_UP, Kind::Raw, ""),
    spec("exec_push", RSA, ONE_UP, Kind::Raw, ""),
    spec("exec_pull", RSA, ONE_UP, Kind::Raw, ""),
    spec("exec_static", RSA, ONE_UP, Kind::Raw, ""),
    spec("exec_options", RSA, ONE, Kind::Raw, "off"),
    spec("exec_publish", RSA, ONE_UP, Kind::Raw, ""),
    spec("exec_publish_done", RSA, ONE_UP, Kind::Raw, ""),
    spec("exec_play", RSA, ONE_UP, Kind::Raw, ""),
    spec("exec_play_done", RSA, ONE_UP, Kind::Raw, ""),
    spec("exec_record_done", RSAR, ONE_UP, Kind::Raw, ""),
    spec("exec_kill_signal", RSA, ONE, Kind::Raw, "kill"),
    spec("respawn", RSA, ONE, Kind::Raw, "on"),
    spec("respawn_timeout", RSA, ONE, Kind::Raw, "5s"),
    // relay
    spec("push", RSA, ONE_UP, Kind::Raw, ""),
    spec("pull", RSA, ONE_UP, Kind::Raw, ""),
    spec("push_reconnect", RSA, ONE, Kind::Raw, "3s"),
    spec("pull_reconnect", RSA, ONE, Kind::Raw, "3s"),
    spec("relay_buffer", RSA, ONE, Kind::Raw, "5s"),
    spec("session_relay", RSA, ONE, Kind::Raw, "off"),
    // play (VOD)
    spec("play", RSA, ONE_UP, Kind::Raw, ""),
    spec("play_temp_path", RSA, ONE, Kind::Raw, "/tmp"),
    spec("play_local_path", RSA, ONE, Kind::Raw, ""),
    // dash
    spec("dash", RSA, ONE, Kind::Raw, "off"),
    spec("dash_path", RSA, ONE, Kind::Raw, ""),
    spec("dash_fragment", RSA, ONE, Kind::Raw, "5s"),
    spec("dash_playlist_length", RSA, ONE, Kind::Raw, "30s"),
    spec("dash_nested", RSA, ONE, Kind::Raw, "off"),
    spec("dash_cleanup", RSA, ONE, Kind::Raw, "on"),
    spec("dash_repetition", RSA, ONE, Kind::Raw, "off"),
    spec("dash_clock_compensation", RSA, ONE, Kind::Raw, "off"),
    spec("dash_clock_helper_uri", RSA, ONE, Kind::Raw, ""),
    // log, netcall
    spec("access_log", RSA, Args::Between(1, 2), Kind::Raw, ""),
    spec("log_format", RSA, ONE_UP, Kind::Raw, ""),
    spec("log_interval", RSA, ONE, Kind::Raw, ""),
    spec("log_size", RSA, ONE, Kind::Raw, ""),
    spec("netcall_timeout", RSA, ONE, Kind::Raw, "7s"),
    spec("netcall_buffer", RSA, ONE, Kind::Raw, "1k"),
    // Valid only in `http { location { } }`: listed so that using them inside `rtmp` says so.
    spec("rtmp_stat", HTTP, ONE, Kind::Raw, ""),
    spec("rtmp_stat_stylesheet", HTTP, ONE, Kind::Raw, ""),
    spec("rtmp_stat_format", HTTP, ONE, Kind::Raw, ""),
    spec("rtmp_control", HTTP, ONE, Kind::Raw, ""),
    spec("flv_live", HTTP, ONE, Kind::Raw, ""),
    // Valid only at the top level (outside `rtmp`), where sluice ignores them.
    spec("rtmp_auto_push", TOP, ONE, Kind::Raw, ""),
    spec("rtmp_auto_push_reconnect", TOP, ONE, Kind::Raw, ""),
    spec("rtmp_socket_dir", TOP, ONE, Kind::Raw, ""),
];

/// Records a not-yet-implemented directive: a warning now, raw words for later.
pub(crate) fn accept(d: &Directive) -> (String, Vec<String>) {
    tracing::warn!(
        directive = %d.name,
        line = d.span.line,
        "directive is accepted but not implemented yet; it has no effect"
    );
    (d.name.clone(), d.args.iter().map(|a| a.value.clone()).collect())
}

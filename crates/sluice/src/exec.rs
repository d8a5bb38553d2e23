//! nginx-rtmp's exec module: programs run on stream events (`exec_push`, `exec_publish`,
//! `exec_record_done`, ...) and at start-up (`exec_static`), supervised.
//!
//! - [`command`] (sans-IO): a command line, its variables and redirects, and the rules that
//!   keep client values from reaching further than one argument.
//! - `child`: spawning, stderr into the log, killing, respawning.
//! - `limits`: how many children may be alive (one bound per [`Exec`] instance).
//! - [`Exec`]: the output module (one line in [`crate::modules::registered`], one instance per
//!   server, which owns the state below): on publish it starts `exec_push` children and runs
//!   `exec_publish`; when the publisher leaves it stops them and runs `exec_publish_done`. Its
//!   `on_start` runs `exec_static` children and `exec_record_done`.
//! - `play`: the module's `on_play`: `exec_play`, `exec_play_done` and `exec_pull` (players
//!   counted per name), for every player of [`crate::streams::Streams::play`].
//!
//! What an exec'd ffmpeg publishes back (`-f flv rtmp://localhost/...`) comes in through RTMP
//! like any publisher.

mod child;
pub mod command;
mod limits;
mod module;
mod play;

pub use child::{backoff, RateLimit, KILL_GRACE, LOG_LINES_PER_SEC, MAX_BACKOFF};
// The transcode module runs its ffmpeg under the same supervision and bound.
pub(crate) use child::{Label, Managed, Pipes};
pub use limits::{Limits, MAX_CHILDREN, MAX_CHILDREN_PER_APP};
pub use module::Exec;

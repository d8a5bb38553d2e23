//! Output modules: what a published stream starts, whoever publishes it (an RTMP client, a
//! relay pull, an exec'd process), and what a player starts, whoever plays. Each one implements
//! [`Module`] and is listed once in [`registered`]; [`crate::streams::Streams`] runs them all
//! for every publisher ([`Module::on_publish`]) and every player ([`Module::on_play`]). Adding
//! an output (relay push, exec, DASH, stats) is one new module plus one line in [`registered`].
//!
//! A module subscribes to the stream in the hub like a player and runs its own task: it never
//! slows the publisher (see the invariant in [`crate::hub`]).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{AppConf, Config};
use crate::events::Notices;
use crate::hub::Stream;
use crate::server::Shared;
use crate::streams::{Player, Source, Streams};

/// An `onStatus` for the publisher, such as `record_notify`'s `NetStream.Record.Start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `status` or `error`.
    pub level: &'static str,
    /// The code.
    pub code: &'static str,
    /// The description (for recordings, the recorder's name).
    pub description: String,
}

/// Where modules send statuses for the publisher. Unbounded because a module sends a few per
/// publish (a start and a stop per recorder), not per frame.
pub type StatusSender = mpsc::UnboundedSender<Status>;
/// What the publisher's source reads them from; it ends when every module dropped its sender.
pub type StatusReceiver = mpsc::UnboundedReceiver<Status>;

/// What a module learns about a new publisher.
pub struct PublishCtx<'a> {
    /// Who publishes what, as the source gave it to [`crate::streams::Streams::publish`].
    pub source: &'a Source<'a>,
    /// The stream, already claimed in the hub: subscribe to it before the first frame.
    pub stream: &'a Arc<Stream>,
    /// The publish path itself, for a module that publishes streams of its own (transcode's
    /// renditions) so that every module runs on them too. A task may keep it while it runs.
    pub streams: &'a Arc<Streams>,
    /// Statuses for the publisher: clone it to send some.
    pub status: &'a StatusSender,
    /// The stream is a relay pull's copy of another server's stream (the cluster's directory
    /// registers only originals).
    pub pulled: bool,
}

/// What a module learns about a new player.
pub struct PlayCtx<'a> {
    /// Who plays what, as the source gave it to [`crate::streams::Streams::play`].
    pub player: &'a Player<'a>,
    /// The stream the player subscribed to (maybe not published yet); `None` for a file
    /// played on demand ([`crate::vod`]), which is no stream in the hub.
    pub stream: Option<&'a Arc<Stream>>,
}

/// What a module's [`Module::on_play`] gives the player to hold: dropped when the player leaves.
pub type PlayGuard = Box<dyn Any + Send + Sync>;

/// What a module learns when the server starts.
pub struct StartCtx<'a> {
    /// The whole configuration.
    pub config: &'a Config,
    /// Server-wide notices (recordings closed, ...).
    pub notices: &'a Arc<Notices>,
    /// Cancelled at shutdown, or when a reload restarts the task ([`Module::start_changed`]).
    pub shutdown: CancellationToken,
}

/// A task a module runs for the life of the server; shutdown waits for it.
pub type ServerTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An output that every published stream, or every player, of an application may start.
pub trait Module: Send + Sync {
    /// Short name, for logs.
    fn name(&self) -> &'static str;

    /// A stream was published: start this output for it if the application wants it. Must not
    /// block: spawn a task that subscribes to `ctx.stream`.
    fn on_publish(&self, ctx: &PublishCtx<'_>);

    /// A player started: do what the application wants done per player. What it returns is
    /// held by the player's [`crate::hub::Subscriber`] (a file's player: its
    /// [`crate::vod::Playback`]) and dropped when the player leaves (a guard whose `Drop` does
    /// the "player left" part). Must not block.
    fn on_play(&self, _ctx: &PlayCtx<'_>) -> Option<PlayGuard> {
        None
    }

    /// Whether this module brings `name` in `app` when a player comes (`exec_pull`): its
    /// players wait for the stream even with `idle_streams off`, as for a relay pull.
    fn publishes_on_play(&self, _app: &AppConf, _name: &str) -> bool {
        false
    }

    /// The server started: a task this module runs until shutdown (`exec_static`), if any.
    /// Called once, before the first connection.
    fn on_start(&self, _ctx: &StartCtx<'_>) -> Option<ServerTask> {
        None
    }

    /// Whether a reload from `old` to `new` changes what [`Module::on_start`]'s task does:
    /// then its task is stopped (its `shutdown` cancelled) and started again with `new`.
    fn start_changed(&self, _old: &Config, _new: &Config) -> bool {
        false
    }
}

/// The registered modules, shared by every source.
pub type Modules = Arc<[Arc<dyn Module>]>;

/// THE registration list: every output module, in the order they start.
pub fn registered(shared: &Shared) -> Vec<Arc<dyn Module>> {
    vec![
        Arc::new(crate::hls::Output::new(shared.hls.clone()).sharing_with(shared.dash.clone())),
        Arc::new(crate::dash::Output::new(shared.dash.clone())),
        Arc::new(crate::record::Output::new(shared.records.clone(), shared.notices.clone())),
        Arc::new(crate::relay::push::Push::new(shared.clients.clone())),
        // Its state (children alive, `exec_pull` players) lives in this one instance.
        Arc::new(crate::exec::Exec::new()),
        Arc::new(crate::transcode::Transcode::default()),
        // Registers the streams published here in the cluster's stream directory.
        Arc::new(crate::cluster::Registrar::new(shared.directory.clone())),
    ]
}

#[cfg(test)]
mod tests {
    /// The architecture's rule: sources reach outputs only through `streams` and this list,
    /// and `streams` (and `app`, which starts them) only through the `Module` trait. A source
    /// that named an output module would start it only for its own publishers or players.
    #[test]
    fn sources_name_no_output_module() {
        let sources = [
            ("connection.rs", include_str!("connection.rs")),
            ("relay/pull.rs", include_str!("relay/pull.rs")),
            ("streams.rs", include_str!("streams.rs")),
            ("app.rs", include_str!("app.rs")),
        ];
        let outputs = [
            "crate::hls::Output",
            "crate::record::Output",
            "crate::relay::push",
            "super::push",
            "crate::exec",
            ".exec.",
        ];
        for (file, text) in sources {
            let code = text.split("#[cfg(test)]").next().unwrap_or(text);
            for output in outputs {
                assert!(!code.contains(output), "{file} names the output module {output}");
            }
        }
    }
}

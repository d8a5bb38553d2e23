//! Output modules: what a published stream starts, whoever publishes it (an RTMP client today,
//! a relay pull or an exec'd process later). Each one implements [`Module`] and is listed once
//! in [`registered`]; [`crate::streams::publish`] runs them all for every publisher. Adding an
//! output (relay push, exec, DASH, stats) is one new module plus one line in [`registered`].
//!
//! A module subscribes to the stream in the hub like a player and runs its own task: it never
//! slows the publisher (see the invariant in [`crate::hub`]).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::AppConf;
use crate::events::ClientInfo;
use crate::hub::Stream;
use crate::server::Shared;

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
    /// The application published to.
    pub app: &'a Arc<AppConf>,
    /// The stream, already claimed in the hub: subscribe to it before the first frame.
    pub stream: &'a Arc<Stream>,
    /// The stream name (checked by [`crate::untrusted::stream_name`]).
    pub name: &'a str,
    /// The publish query string.
    pub args: &'a str,
    /// The publishing client, when there is one (an RTMP connection).
    pub client: Option<&'a ClientInfo>,
    /// An `rtmp://` location an `on_publish` callback redirected the publish to: the relay
    /// push module pushes there too (`notify_relay_redirect`).
    pub push_to: Option<&'a str>,
    /// The index of the `server {}` block the stream is published in: relay legs register
    /// under it, so control's `srv=` finds them.
    pub srv: usize,
    /// Statuses for the publisher: clone it to send some.
    pub status: &'a StatusSender,
}

/// An output that every published stream of an application may start.
pub trait Module: Send + Sync {
    /// Short name, for logs.
    fn name(&self) -> &'static str;

    /// A stream was published: start this output for it if the application wants it. Must not
    /// block: spawn a task that subscribes to `ctx.stream`.
    fn on_publish(&self, ctx: &PublishCtx<'_>);

    /// Called once the list is built, with the whole list: for a module that publishes
    /// streams itself (transcode's renditions) and must start every module on them.
    fn bind(&self, _all: &Modules) {}
}

/// The registered modules, shared by every source.
pub type Modules = Arc<[Arc<dyn Module>]>;

/// THE registration list: every output module, in the order they start.
pub fn registered(shared: &Shared) -> Vec<Arc<dyn Module>> {
    vec![
        Arc::new(crate::hls::Output::new(shared.hls.clone())),
        Arc::new(crate::record::Output::new(shared.records.clone(), shared.notices.clone())),
        Arc::new(crate::relay::push::Push::new(shared.clients.clone())),
        Arc::new(crate::exec::Exec::new()),
        Arc::new(crate::transcode::Transcode::new(shared.hub.clone())),
    ]
}

#[cfg(test)]
mod tests {
    /// The architecture's rule: sources reach outputs only through `streams` and this list.
    /// A source that named an output module would start it only for its own publishers.
    #[test]
    fn sources_name_no_output_module() {
        let sources =
            [("connection.rs", include_str!("connection.rs")), ("relay/pull.rs", include_str!("relay/pull.rs"))];
        for (file, text) in sources {
            let code = text.split("#[cfg(test)]").next().unwrap_or(text);
            for output in ["crate::hls", "crate::record", "crate::relay::push", "super::push"] {
                assert!(!code.contains(output), "{file} names the output module {output}");
            }
        }
    }
}

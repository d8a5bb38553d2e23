//! nginx-rtmp's `record` module (to be written: issue "Recording"). The connection calls
//! [`on_publish`] when a stream starts; start-up calls [`repair_on_start`].

use std::sync::Arc;

use crate::config::{AppConf, Config};
use crate::events::ClientInfo;
use crate::hub::Stream;
use crate::server::ServerCtx;

/// A stream was just published: start its recorders.
pub fn on_publish(
    _ctx: &ServerCtx,
    _app: &Arc<AppConf>,
    _stream: &Arc<Stream>,
    _name: &str,
    _args: &str,
    _client: &ClientInfo,
) {
}

/// Before serving: repair recordings a crash left unfinished.
pub fn repair_on_start(_config: &Config) {}

//! nginx's main-context directives that sluice acts on: the process as a whole, outside
//! `rtmp { }` (`pid`, `worker_shutdown_timeout`). Other main-context directives of an nginx.conf
//! (`user`, `worker_processes`, `events { }`, ...) stay nginx's business and are skipped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nginx_conf::Directive;

use super::value::{ctx::TOP, put, spec, text, time, Args, DirectiveSpec, Fail, Kind};

/// The main-context table.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    spec("pid", TOP, Args::Exactly(1), Kind::Text, ""),
    spec("worker_shutdown_timeout", TOP, Args::Exactly(1), Kind::Time, "10s"),
];

/// How long a graceful stop (`sluice -s quit`, SIGQUIT) waits for clients to leave when the
/// configuration does not say. nginx waits without limit; a live publisher never leaves on
/// its own, so sluice bounds it (systemd's default stop timeout is 90 s).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The process-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConf {
    /// `pid FILE;`: where the process id is written at start-up (and removed at exit), and
    /// where `sluice -s SIGNAL` reads it. None: no pid file.
    pub pid: Option<PathBuf>,
    /// `worker_shutdown_timeout`: how long a graceful stop waits for clients to leave before
    /// closing them.
    pub shutdown_timeout: Duration,
}

impl Default for ProcessConf {
    fn default() -> Self {
        ProcessConf { pid: None, shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT }
    }
}

/// The main-context directives as written, before defaults.
#[derive(Debug, Default)]
pub(crate) struct ProcessLayer {
    pid: Option<PathBuf>,
    shutdown_timeout: Option<Duration>,
}

impl ProcessLayer {
    /// Whether `d` is one of this table's directives (then it is read into the layer).
    pub(crate) fn set(&mut self, d: &Directive, base: &Path) -> Result<bool, Fail> {
        match d.name.as_str() {
            "pid" => {
                super::value::check_shape(&DIRECTIVES[0], d)?;
                let path = PathBuf::from(text(d)?);
                if path.as_os_str().is_empty() {
                    return Err(Fail::new(d.span, "\"pid\" directive needs a file name"));
                }
                // Relative to the configuration's directory, as nginx's paths are to its prefix.
                put(&mut self.pid, base.join(path), d)?;
            }
            "worker_shutdown_timeout" => {
                super::value::check_shape(&DIRECTIVES[1], d)?;
                put(&mut self.shutdown_timeout, time(d)?, d)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(crate) fn finish(self) -> ProcessConf {
        ProcessConf { pid: self.pid, shutdown_timeout: self.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT) }
    }
}

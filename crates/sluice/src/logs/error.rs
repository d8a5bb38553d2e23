//! The error log: every `tracing` event, to stderr or the `error_log` file, at its level.

use std::io::Write;
use std::sync::{Arc, OnceLock, RwLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter};

use super::LogFile;
use crate::config::ErrorLogConf;

/// The level when neither `error_log` nor `RUST_LOG` gives one (sluice's; nginx's `error`
/// applies to an `error_log` written without a level).
const DEFAULT_LEVEL: &str = "info";

/// Where events go: the `error_log` file, or stderr when `None`.
static FILE: RwLock<Option<Arc<LogFile>>> = RwLock::new(None);

/// What [`set`] changes in the installed subscriber.
struct Control {
    /// `RUST_LOG` was set (and valid): it decides the level, not `error_log`.
    env_level: bool,
    /// Whether stderr is a terminal (colours there only).
    terminal: bool,
    level: Box<dyn Fn(&str) + Send + Sync>,
    ansi: Box<dyn Fn(bool) + Send + Sync>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// Installs the process's `tracing` subscriber: events to stderr at `RUST_LOG`'s level (info
/// when unset), until [`super::init`] applies `error_log`. Call once, first thing.
pub fn install() {
    let from_env = EnvFilter::try_from_default_env().ok();
    let env_level = from_env.is_some();
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (filter, filter_handle) = reload::Layer::new(from_env.unwrap_or_else(|| DEFAULT_LEVEL.into()));
    let (layer, layer_handle) = reload::Layer::new(fmt::layer().with_ansi(terminal).with_writer(Writer));
    // A second call (or another subscriber installed first) leaves things as they are.
    if tracing_subscriber::registry().with(filter).with(layer).try_init().is_err() {
        return;
    }
    let _ = CONTROL.set(Control {
        env_level,
        terminal,
        level: Box::new(move |level| {
            let _ = filter_handle.reload(EnvFilter::new(level));
        }),
        ansi: Box::new(move |on| {
            let _ = layer_handle.modify(|l| l.set_ansi(on));
        }),
    });
}

/// Switches events to `file` (stderr when `None`) at `conf`'s level (sluice's default when no
/// `error_log` is written), unless `RUST_LOG` decides.
pub(super) fn set(conf: Option<&ErrorLogConf>, file: Option<Arc<LogFile>>) {
    let to_file = file.is_some();
    *FILE.write().unwrap_or_else(|e| e.into_inner()) = file;
    let Some(control) = CONTROL.get() else { return };
    (control.ansi)(control.terminal && !to_file);
    if !control.env_level {
        (control.level)(conf.map_or(DEFAULT_LEVEL, |c| c.level.filter()));
    }
}

/// The subscriber's writer: each event is one `write_all` of its formatted line.
struct Writer;

impl<'a> fmt::MakeWriter<'a> for Writer {
    type Writer = Writer;

    fn make_writer(&'a self) -> Writer {
        Writer
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let file = FILE.read().unwrap_or_else(|e| e.into_inner()).clone();
        match file {
            Some(f) => f.write(buf),
            None => std::io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

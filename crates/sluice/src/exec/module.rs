//! Where exec lines are triggered: the output module ([`Exec`]) on publish and its end, on
//! play (in `play`), at start-up (`exec_static`) and for closed recordings
//! (`exec_record_done`), all under the module instance's bound on children.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::child::{run_unmanaged, Label, Managed};
use super::command::Values;
use super::limits::{Limits, MAX_CHILDREN, MAX_CHILDREN_PER_APP};
use super::play::{self, Players};
use crate::config::{AppConf, Config, ExecLine};
use crate::events::{ClientInfo, Notice, Notices};
use crate::hub::{Entry, StreamKey, Subscriber};
use crate::modules::{Module, PlayCtx, PlayGuard, PublishCtx, ServerTask, StartCtx};
use crate::untrusted;

/// How long after shutdown `exec_record_done` still runs for recordings being closed.
const RECORD_DONE_GRACE: Duration = Duration::from_secs(2);

/// The exec output module: one per server process ([`crate::modules::registered`]), owning
/// what the server's exec lines share: the bound on children and the `exec_pull` players.
pub struct Exec {
    /// Children alive, for every trigger (`exec_static` included): the machine is one.
    limits: Arc<Limits>,
    /// The stop token of each published stream's children: a new publish of the same stream
    /// stops the previous one's even if its end was missed.
    publishes: Arc<Mutex<HashMap<StreamKey, CancellationToken>>>,
    /// Players counted per stream for `exec_pull`.
    pub(super) players: Arc<Players>,
}

impl Default for Exec {
    fn default() -> Self {
        Exec::new()
    }
}

impl Exec {
    /// The module, with its bound on children ([`MAX_CHILDREN`], [`MAX_CHILDREN_PER_APP`]).
    pub fn new() -> Self {
        Exec {
            limits: Arc::new(Limits::new(MAX_CHILDREN, MAX_CHILDREN_PER_APP)),
            publishes: Arc::default(),
            players: Arc::default(),
        }
    }

    /// Players counted for `exec_pull` of `app`/`name` (0 when none).
    pub fn pull_players(&self, app: &str, name: &str) -> usize {
        self.players.count(app, name)
    }
}

/// The session variables (`$app $flashver $swfurl $tcurl $pageurl $addr`).
pub(super) fn session(app: &str, client: Option<&ClientInfo>) -> Values {
    let v = Values::new().with("app", app);
    match client {
        Some(c) => v
            .with("flashver", c.flash_ver.clone())
            .with("swfurl", c.swf_url.clone())
            .with("tcurl", c.tc_url.clone())
            .with("pageurl", c.page_url.clone())
            .with("addr", c.addr.ip().to_string()),
        None => v,
    }
}

fn label(line: &ExecLine, app: &str, stream: &str) -> Label {
    Label {
        origin: format!("{}:{}", line.file, line.line),
        directive: line.directive.clone(),
        app: Some(app.to_owned()),
        stream: Some(stream.to_owned()),
    }
}

/// Runs the unmanaged `lines` matching `name`.
pub(super) fn run_lines<'a>(
    lines: impl IntoIterator<Item = &'a ExecLine>,
    values: &Values,
    app: &str,
    name: &str,
    limits: &Arc<Limits>,
) {
    for line in lines.into_iter().filter(|l| l.matches(name)) {
        let label = label(line, app, name);
        match line.command.resolve(Some(values)) {
            Ok(cmd) => run_unmanaged(&label, &cmd, limits),
            Err(e) => tracing::warn!("{}: not run ({}): {e}", label.prefix(), label.origin),
        }
    }
}

impl Module for Exec {
    fn name(&self) -> &'static str {
        "exec"
    }

    fn on_publish(&self, ctx: &PublishCtx<'_>) {
        let conf = &ctx.source.app.exec;
        let any = |lines: &[ExecLine]| lines.iter().any(|l| l.matches(ctx.source.name));
        if !any(&conf.push) && !any(&conf.publish) && !any(&conf.publish_done) {
            return;
        }
        let app = ctx.source.app.name.as_str();
        let values = session(app, ctx.source.client).with("name", ctx.source.name).with("args", ctx.source.args);
        run_lines(&conf.publish, &values, app, ctx.source.name, &self.limits);
        let stop = CancellationToken::new();
        if let Some(old) = lock(&self.publishes).insert(ctx.stream.key.clone(), stop.clone()) {
            old.cancel();
        }
        for line in conf.push.iter().filter(|l| l.matches(ctx.source.name)) {
            let label = label(line, app, ctx.source.name);
            let cmd = match line.command.resolve(Some(&values)) {
                Ok(cmd) => cmd,
                Err(e) => {
                    tracing::warn!("{}: not run ({}): {e}", label.prefix(), label.origin);
                    continue;
                }
            };
            let respawn = conf.respawn.then_some(conf.respawn_timeout);
            let managed = Managed { label, cmd, respawn, kill_signal: conf.kill_signal, limits: self.limits.clone() };
            tokio::spawn(managed.run(stop.clone()));
        }
        // Subscribed now, before the first frame: the end of this publish is in the ring.
        let (_, sub) = ctx.stream.subscribe();
        let (app_conf, name, limits, publishes) =
            (ctx.source.app.clone(), ctx.source.name.to_owned(), self.limits.clone(), self.publishes.clone());
        tokio::spawn(async move {
            until_unpublished(sub, &stop).await;
            stop.cancel();
            {
                let mut map = lock(&publishes);
                let key = StreamKey { app: app_conf.name.clone(), name: name.clone() };
                if map.get(&key).is_some_and(|t| t.is_cancelled()) {
                    map.remove(&key);
                }
            }
            run_lines(&app_conf.exec.publish_done, &values, &app_conf.name, &name, &limits);
        });
    }

    /// `exec_play` now; `exec_play_done`, and the `exec_pull` count, when the guard drops.
    fn on_play(&self, ctx: &PlayCtx<'_>) -> Option<PlayGuard> {
        play::on_play(&self.players, &self.limits, ctx)
    }

    fn publishes_on_play(&self, app: &AppConf, name: &str) -> bool {
        app.exec.pull.iter().any(|l| l.matches(name))
    }

    /// `exec_static` and `exec_record_done`.
    fn on_start(&self, ctx: &StartCtx<'_>) -> Option<ServerTask> {
        Some(Box::pin(start(ctx.config, ctx.notices, ctx.shutdown.clone(), self.limits.clone())))
    }

    /// `exec_static` children restart only when a reload changes what the task runs.
    fn start_changed(&self, old: &Config, new: &Config) -> bool {
        let changed = server_task_part(old) != server_task_part(new);
        if changed {
            tracing::info!("reload: exec_static or exec_record_done changed; exec_static programs restart");
        }
        changed
    }
}

/// The exec lines an application runs when a recording closes.
type RecordDoneLines<'a> = (&'a [ExecLine], &'a [(String, Vec<ExecLine>)]);

/// What the server task runs: the global exec settings and the applications'
/// `exec_record_done` lines.
fn server_task_part(config: &Config) -> (&crate::config::ExecGlobal, Vec<(&str, RecordDoneLines<'_>)>) {
    let apps = config.servers.iter().flat_map(|s| &s.apps);
    let lines = apps
        .filter(|a| !a.exec.record_done.is_empty() || !a.exec.recorder_record_done.is_empty())
        .map(|a| (a.name.as_str(), (a.exec.record_done.as_slice(), a.exec.recorder_record_done.as_slice())))
        .collect();
    (&config.exec, lines)
}

/// Reads the subscriber (discarding media) until the publish ends or `stop` is cancelled.
async fn until_unpublished(mut sub: Subscriber, stop: &CancellationToken) {
    loop {
        tokio::select! {
            batch = sub.next_batch(64) => {
                if batch.entries.iter().any(|e| matches!(e, Entry::Unpublished)) {
                    return;
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

/// `exec_static` children (started now, stopped at shutdown) and `exec_record_done` (for
/// every recording closed from now on), under `limits`. Subscribes to `notices` before
/// returning, so no recording is missed; the future ends after shutdown once the static
/// children are gone.
fn start(
    config: &Config,
    notices: &Notices,
    shutdown: CancellationToken,
    limits: Arc<Limits>,
) -> impl Future<Output = ()> + Send + 'static {
    let apps: Vec<Arc<AppConf>> = config.servers.iter().flat_map(|s| &s.apps).cloned().map(Arc::new).collect();
    let wants_record_done = apps
        .iter()
        .any(|a| !a.exec.record_done.is_empty() || a.exec.recorder_record_done.iter().any(|(_, l)| !l.is_empty()));
    let mut rx = wants_record_done.then(|| notices.subscribe());
    let stop = CancellationToken::new();
    let mut statics = tokio::task::JoinSet::new();
    for line in &config.exec.statics {
        let label = Label {
            origin: format!("{}:{}", line.file, line.line),
            directive: line.directive.clone(),
            app: None,
            stream: None,
        };
        let Ok(cmd) = line.command.resolve(None) else { continue };
        let managed = Managed {
            label,
            cmd,
            // exec_static always respawns.
            respawn: Some(config.exec.respawn_timeout),
            kill_signal: config.exec.kill_signal,
            limits: limits.clone(),
        };
        statics.spawn(managed.run(stop.clone()));
    }
    async move {
        let mut deadline = None;
        loop {
            let Some(notices) = rx.as_mut() else {
                shutdown.cancelled().await;
                break;
            };
            let received = match deadline {
                None => tokio::select! {
                    n = notices.recv() => n,
                    () = shutdown.cancelled() => {
                        stop.cancel();
                        deadline = Some(tokio::time::Instant::now() + RECORD_DONE_GRACE);
                        continue;
                    }
                },
                Some(at) => match tokio::time::timeout_at(at, notices.recv()).await {
                    Ok(n) => n,
                    Err(_) => break,
                },
            };
            match received {
                Ok(notice) => record_done(&apps, notice, &limits),
                Err(RecvError::Lagged(n)) => tracing::warn!("exec: {n} record_done notices missed (too many at once)"),
                Err(RecvError::Closed) => break,
            }
        }
        stop.cancel();
        while statics.join_next().await.is_some() {}
    }
}

/// Runs the `exec_record_done` lines for a closed recording. The application is found by
/// name (the first of that name, when several server blocks have one).
fn record_done(apps: &[Arc<AppConf>], notice: Notice, limits: &Arc<Limits>) {
    let Notice::RecordDone { client, name, args, recorder, path } = notice;
    let Some(app) = apps.iter().find(|a| a.name == client.app) else { return };
    let lines: Vec<&ExecLine> = app.exec.record_done_for(&recorder).collect();
    if lines.is_empty() {
        return;
    }
    let text = |p: Option<&std::ffi::OsStr>| p.map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let p = Path::new(&path);
    let values = session(&app.name, Some(&client))
        .with("name", name.clone())
        .with("args", args)
        .with("recorder", recorder.clone())
        .with("path", path.to_string_lossy().into_owned())
        .with("filename", text(p.file_name()))
        .with("basename", text(p.file_stem()))
        .with("dirname", text(p.parent().map(Path::as_os_str)));
    tracing::debug!(app = %app.name, stream = %untrusted::for_log(&name), path = %p.display(), "exec_record_done");
    run_lines(lines, &values, &app.name, &name, limits);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

//! The play side of exec, the exec module's `on_play`: `exec_play` when a player starts,
//! `exec_play_done` when it leaves, and the managed `exec_pull` children, started by the first
//! player of a name in an application and stopped when the last one leaves (nginx-rtmp counts
//! them the same way). [`crate::streams::Streams::play`], the one entry every player source
//! goes through, runs it (and [`crate::streams::Streams::play_file`] for a file's player, as
//! nginx-rtmp's exec module runs for any play); the player's `Subscriber` (or a file's
//! `Playback`) holds the returned guard, whose drop counts it out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::child::{Label, Managed};
use super::command::Values;
use super::limits::Limits;
use super::module::{run_lines, session};
use crate::config::{AppConf, ExecLine};
use crate::hub::StreamKey;
use crate::modules::{PlayCtx, PlayGuard};

/// Players counted per stream for `exec_pull`: the number of players and the stop token of
/// the stream's pull children. One per exec module instance; an entry lives while the stream
/// has players (bounded by the hub's streams).
#[derive(Default)]
pub(super) struct Players(Mutex<HashMap<StreamKey, (usize, CancellationToken)>>);

impl Players {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, (usize, CancellationToken)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Players counted for `app`/`name`.
    pub(super) fn count(&self, app: &str, name: &str) -> usize {
        let key = StreamKey { app: app.to_owned(), name: name.to_owned() };
        self.lock().get(&key).map_or(0, |e| e.0)
    }
}

/// A player (`ctx.player`) started: runs `exec_play`, starts `exec_pull` for the first player of
/// the name, and returns the guard whose drop runs `exec_play_done` and stops `exec_pull` after
/// the last player. `None` when the application has no such lines.
pub(super) fn on_play(players: &Arc<Players>, limits: &Arc<Limits>, ctx: &PlayCtx<'_>) -> Option<PlayGuard> {
    let (app, name) = (ctx.player.app, ctx.player.name);
    let conf = &app.exec;
    let any = |lines: &[ExecLine]| lines.iter().any(|l| l.matches(name));
    if !any(&conf.play) && !any(&conf.play_done) && !any(&conf.pull) {
        return None;
    }
    tokio::runtime::Handle::try_current().ok()?;
    let values = session(&app.name, ctx.player.client).with("name", name).with("args", ctx.player.args);
    run_lines(&conf.play, &values, &app.name, name, limits);
    let key = StreamKey { app: app.name.clone(), name: name.to_owned() };
    let pull = any(&conf.pull).then(|| {
        join_pull(players, &key, app, name, limits);
        players.clone()
    });
    let done: Vec<ExecLine> = conf.play_done.iter().filter(|l| l.matches(name)).cloned().collect();
    Some(Box::new(Guard {
        key,
        pull,
        done,
        values,
        app: app.name.clone(),
        name: name.to_owned(),
        limits: limits.clone(),
    }))
}

/// Counts a player in; the first one starts the `exec_pull` children (with `$name $app` only).
fn join_pull(players: &Players, key: &StreamKey, app: &AppConf, name: &str, limits: &Arc<Limits>) {
    let mut pulls = players.lock();
    let entry = pulls.entry(key.clone()).or_insert_with(|| (0, CancellationToken::new()));
    entry.0 += 1;
    if entry.0 > 1 {
        return;
    }
    let values = Values::new().with("name", name).with("app", app.name.clone());
    for line in app.exec.pull.iter().filter(|l| l.matches(name)) {
        let label = Label {
            origin: format!("{}:{}", line.file, line.line),
            directive: line.directive.clone(),
            app: Some(app.name.clone()),
            stream: Some(name.to_owned()),
        };
        match line.command.resolve(Some(&values)) {
            Ok(cmd) => {
                let respawn = app.exec.respawn.then_some(app.exec.respawn_timeout);
                let managed =
                    Managed { label, cmd, respawn, kill_signal: app.exec.kill_signal, limits: limits.clone() };
                tokio::spawn(managed.run(entry.1.clone()));
            }
            Err(e) => tracing::warn!("{}: not run ({}): {e}", label.prefix(), label.origin),
        }
    }
}

/// Held by a player's subscription.
struct Guard {
    key: StreamKey,
    /// Where the player was counted for `exec_pull`, if it was.
    pull: Option<Arc<Players>>,
    done: Vec<ExecLine>,
    values: Values,
    app: String,
    name: String,
    limits: Arc<Limits>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(players) = &self.pull {
            let mut pulls = players.lock();
            if let Some(entry) = pulls.get_mut(&self.key) {
                entry.0 -= 1;
                if entry.0 == 0 {
                    entry.1.cancel();
                    pulls.remove(&self.key);
                }
            }
        }
        if !self.done.is_empty() && tokio::runtime::Handle::try_current().is_ok() {
            run_lines(&self.done, &self.values, &self.app, &self.name, &self.limits);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::exec::Exec;
    use crate::hub::{Hub, StreamKey, StreamOptions};
    use crate::modules::Module;
    use crate::streams::{Player, Streams};

    struct Counted(std::sync::Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The relay pull and exec both mark a player: dropping it drops both guards.
    #[test]
    fn a_subscriber_keeps_every_guard() {
        let hub = Hub::new();
        let key = StreamKey { app: "a".into(), name: "s".into() };
        let (_, mut sub) = hub.subscribe(&key, Some(StreamOptions { ring_len: 16, gop_cache: true })).unwrap();
        let dropped = std::sync::Arc::new(AtomicUsize::new(0));
        sub.hold(Box::new(Counted(dropped.clone())));
        sub.hold(Box::new(Counted(dropped.clone())));
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
        drop(sub);
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
    }

    /// Players are counted per name, by the module instance: the exec_pull children start with
    /// the first and stop with the last. Another instance (another server) counts its own.
    #[tokio::test]
    async fn exec_pull_counts_players_per_name() {
        let app = crate::config::test_app("live on; exec_pull sleep 1000; exec_pull true name=x;");
        let (exec, other_server) = (std::sync::Arc::new(Exec::new()), std::sync::Arc::new(Exec::new()));
        let modules: Vec<std::sync::Arc<dyn Module>> = vec![exec.clone()];
        let streams = Streams::new(Hub::new(), modules.into(), Default::default());
        let play = |name: &'static str| {
            let player = Player { app: &app, name, args: "", client: None, srv: 0 };
            streams.play(&player, StreamOptions { ring_len: 16, gop_cache: true })
        };
        let (_, a) = play("cam").unwrap();
        let (_, b) = play("cam").unwrap();
        let (_, c) = play("other").unwrap();
        assert_eq!((exec.pull_players("live", "cam"), exec.pull_players("live", "other")), (2, 1));
        assert_eq!(other_server.pull_players("live", "cam"), 0);
        drop(a);
        assert_eq!(exec.pull_players("live", "cam"), 1);
        drop((b, c));
        assert_eq!((exec.pull_players("live", "cam"), exec.pull_players("live", "other")), (0, 0));
        assert!(exec.players.lock().is_empty(), "forgotten after the last");
    }
}

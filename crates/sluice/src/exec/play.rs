//! The play side of exec: `exec_play` when a player starts, `exec_play_done` when it leaves,
//! and the managed `exec_pull` children, started by the first player of a name in an
//! application and stopped when the last one leaves (nginx-rtmp counts them the same way).
//! Called from [`crate::streams::play`], the one entry every player source goes through; the
//! player's [`Subscriber`] holds a guard whose drop counts it out.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use tokio_util::sync::CancellationToken;

use super::child::{Label, Managed};
use super::command::Values;
use super::limits::{self, Limits};
use super::module::{run_lines, session};
use crate::config::{AppConf, ExecLine};
use crate::events::ClientInfo;
use crate::hub::{Hub, StreamKey, Subscriber};

/// Players counted per stream for `exec_pull`, per hub (tests run several servers in one
/// process): the number of players and the stop token of the stream's pull children.
type PullKey = (usize, StreamKey);
static PULLS: LazyLock<Mutex<HashMap<PullKey, (usize, CancellationToken)>>> = LazyLock::new(Mutex::default);

/// A player of `name` in `app` started (`sub` is its subscription): runs `exec_play`, starts
/// `exec_pull` for the first player of the name, and marks `sub` so that its drop runs
/// `exec_play_done` and stops `exec_pull` after the last player. `args` and `client` are the
/// player's, when the source knows them (else those variables are empty).
pub fn on_play(
    hub: &Arc<Hub>,
    app: &AppConf,
    name: &str,
    args: &str,
    client: Option<&ClientInfo>,
    sub: &mut Subscriber,
) {
    let conf = &app.exec;
    let any = |lines: &[ExecLine]| lines.iter().any(|l| l.matches(name));
    if !any(&conf.play) && !any(&conf.play_done) && !any(&conf.pull) {
        return;
    }
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let lim = limits::server();
    let values = session(&app.name, client).with("name", name).with("args", args);
    run_lines(&conf.play, &values, &app.name, name, &lim);
    let key = (Arc::as_ptr(hub) as usize, StreamKey { app: app.name.clone(), name: name.to_owned() });
    let pull = any(&conf.pull).then(|| join_pull(&key, app, name, &lim));
    let done: Vec<ExecLine> = conf.play_done.iter().filter(|l| l.matches(name)).cloned().collect();
    let guard = Guard { key, pull, done, values, app: app.name.clone(), name: name.to_owned(), limits: lim };
    sub.hold(Box::new(guard));
}

/// Counts a player in; the first one starts the `exec_pull` children (with `$name $app` only).
fn join_pull(key: &PullKey, app: &AppConf, name: &str, limits: &Arc<Limits>) -> bool {
    let mut pulls = lock();
    let entry = pulls.entry(key.clone()).or_insert_with(|| (0, CancellationToken::new()));
    entry.0 += 1;
    if entry.0 > 1 {
        return true;
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
    true
}

/// Held by a player's subscription.
struct Guard {
    key: PullKey,
    /// Whether the player was counted for `exec_pull`.
    pull: Option<bool>,
    done: Vec<ExecLine>,
    values: Values,
    app: String,
    name: String,
    limits: Arc<Limits>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.pull.is_some() {
            let mut pulls = lock();
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

fn lock() -> std::sync::MutexGuard<'static, HashMap<PullKey, (usize, CancellationToken)>> {
    PULLS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Players counted for `exec_pull` of `app`/`name` in `hub` (for tests).
pub fn pull_players(hub: &Arc<Hub>, app: &str, name: &str) -> usize {
    let key = (Arc::as_ptr(hub) as usize, StreamKey { app: app.to_owned(), name: name.to_owned() });
    lock().get(&key).map_or(0, |e| e.0)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::hub::StreamOptions;

    struct Counted(Arc<AtomicUsize>);

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
        let dropped = Arc::new(AtomicUsize::new(0));
        sub.hold(Box::new(Counted(dropped.clone())));
        sub.hold(Box::new(Counted(dropped.clone())));
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
        drop(sub);
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
    }

    /// Players are counted per name: the exec_pull children start with the first and stop with
    /// the last.
    #[tokio::test]
    async fn exec_pull_counts_players_per_name() {
        let app = crate::config::test_app("live on; exec_pull sleep 1000; exec_pull true name=x;");
        let hub = Hub::new();
        let play = |name: &str| crate::streams::play(&hub, &app, name, StreamOptions { ring_len: 16, gop_cache: true });
        let (_, a) = play("cam").unwrap();
        let (_, b) = play("cam").unwrap();
        let (_, c) = play("other").unwrap();
        assert_eq!((pull_players(&hub, "live", "cam"), pull_players(&hub, "live", "other")), (2, 1));
        drop(a);
        assert_eq!(pull_players(&hub, "live", "cam"), 1);
        drop((b, c));
        assert_eq!((pull_players(&hub, "live", "cam"), pull_players(&hub, "live", "other")), (0, 0));
        assert!(!lock().keys().any(|(h, _)| *h == Arc::as_ptr(&hub) as usize), "forgotten after the last");
    }
}

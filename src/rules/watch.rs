//! The rule set in force in this daemon ([`SharedRules`], swapped whole),
//! the outcome of the last change ([`ReloadStatus`]) and the watch on the
//! `rules/` folder ([`RulesWatcher`]). What a change does (store it in the
//! registry, follow other daemons' changes) is in [`crate::active_rules`].

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;

use super::RuleSet;

/// The rule set in force, shared by every engine worker.
pub type SharedRules = Arc<ArcSwap<RuleSet>>;

/// The outcome of the last reload attempt, for administrators (and tests)
/// who need to know whether their edit is in force or was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadStatus {
    /// The version in force.
    pub version: String,
    /// Why the last edit was refused (file:line problems), if it was.
    pub refused: Option<String>,
    /// How many reload attempts were made; changes on every attempt.
    pub attempts: u64,
}

/// A status channel starting at the set in force.
pub fn status_channel(
    shared: &SharedRules,
) -> (
    tokio::sync::watch::Sender<ReloadStatus>,
    tokio::sync::watch::Receiver<ReloadStatus>,
) {
    tokio::sync::watch::channel(ReloadStatus {
        version: shared.load().version.clone(),
        refused: None,
        attempts: 0,
    })
}

/// A watch on the rules folder, set up before the daemon reports that it
/// runs, so no edit made after start-up is missed.
pub struct RulesWatcher {
    _watcher: notify::RecommendedWatcher,
    changes: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl RulesWatcher {
    /// Starts watching the folder of the set in force.
    pub fn new(shared: &SharedRules) -> Result<Self, notify::Error> {
        let dir = shared.load().dir.clone();
        let (tx, changes) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(&dir, RecursiveMode::Recursive)?;
        tracing::info!(dir = %dir.display(), "watching rules for changes");
        Ok(Self {
            _watcher: watcher,
            changes,
        })
    }

    /// Waits for a change to the folder and then until it is quiet
    /// (editors write in several steps); false once no change can come.
    pub async fn next_change(&mut self, shutdown: &CancellationToken) -> bool {
        let rx = &mut self.changes;
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            got = rx.recv() => if got.is_none() { return false },
        }
        while let Ok(Some(())) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        }
        true
    }
}

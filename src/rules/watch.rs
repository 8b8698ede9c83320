//! Hot reload of `rules/`: on a file change the whole folder is loaded again
//! and swapped in atomically, but only when the new set has no problem; a
//! broken edit is logged with file:line and the running set keeps routing.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;

use super::{RuleSet, RulesError};

/// The rule set in force, shared by every engine worker.
pub type SharedRules = Arc<ArcSwap<RuleSet>>;

/// Loads the folder again and swaps it in if valid. Returns the new version.
pub fn reload(shared: &SharedRules) -> Result<String, RulesError> {
    let dir = shared.load().dir.clone();
    let set = RuleSet::load(&dir)?;
    let version = set.version.clone();
    shared.store(Arc::new(set));
    Ok(version)
}

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

    /// Reloads after changes settle and reports each attempt on `status`,
    /// until `shutdown`.
    pub async fn run(
        mut self,
        shared: SharedRules,
        status: tokio::sync::watch::Sender<ReloadStatus>,
        shutdown: CancellationToken,
    ) {
        let rx = &mut self.changes;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                got = rx.recv() => if got.is_none() { return },
            }
            // Editors write in several steps: wait until the folder is quiet.
            while let Ok(Some(())) =
                tokio::time::timeout(Duration::from_millis(300), rx.recv()).await
            {}
            let before = shared.load().version.clone();
            let refused = match reload(&shared) {
                Ok(v) => {
                    if v != before {
                        tracing::info!(from = %before, to = %v, "rules reloaded");
                        crate::metrics::rules_reloaded(true);
                    }
                    None
                }
                Err(e) => {
                    tracing::error!(version_kept = %before, "{e}");
                    crate::metrics::rules_reloaded(false);
                    Some(e.to_string())
                }
            };
            let version = shared.load().version.clone();
            status.send_modify(|s| {
                s.version = version;
                s.refused = refused;
                s.attempts += 1;
            });
        }
    }
}

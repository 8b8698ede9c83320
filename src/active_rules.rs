//! The one rule set in force for every daemon. Rules, units, services,
//! calendar and terms are versioned in the registry (`ruleset_versions`)
//! with a pointer to the active version (`ruleset_active`, see
//! [`crate::registry::rulesets`]); every change — the desk's editor, an
//! ad-hoc holiday, `pietura rules apply`, an edit of this host's `rules/` —
//! moves that pointer, and every daemon follows it within seconds
//! ([`Follower`]: `LISTEN`/`NOTIFY` on PostgreSQL, polling on SQLite) into
//! its [`SharedRules`], reporting on the [`ReloadStatus`] watch as before.
//!
//! `rules/` is the bootstrap and a git-friendly import/export: an empty
//! registry takes it at start ([`at_start`]); at a later start the folder is
//! applied only when its content is a version the registry has never seen
//! (edited while the daemon was down), never when it equals an older known
//! version (a stale host must not roll the others back).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::registry::desk::RulesChange;
use crate::registry::rulesets::{Activation, RULESET_CHANNEL, Replacing};
use crate::registry::{Registry, RegistryError};
use crate::rules::holiday::{AddHolidayError, with_dated_holiday};
use crate::rules::watch::{ReloadStatus, RulesWatcher, SharedRules};
use crate::rules::{RuleSet, RuleSources, RulesError, TOP_LEVEL_FILES};

/// How often a SQLite daemon looks for a new active version.
pub const SQLITE_POLL: Duration = Duration::from_secs(1);
/// How often a PostgreSQL daemon looks anyway, in case a notification was
/// lost while its listening connection was re-established.
pub const POSTGRES_POLL: Duration = Duration::from_secs(5);

/// Why the rule set in force was not read or not changed.
#[derive(Debug, thiserror::Error)]
pub enum ActiveRulesError {
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Holiday(#[from] AddHolidayError),
    #[error(
        "the rule set in force changed meanwhile (from {expected} to {active}); nothing was changed, try again on the set in force"
    )]
    Conflict { expected: String, active: String },
    #[error(
        "the registry has no rule set in force yet: start the daemon once (it takes rules/) or run `pietura rules apply DIR`"
    )]
    NoneActive,
    #[error("the registry names rule set {0} as in force but does not hold its texts")]
    MissingVersion(String),
    #[error("rule set file name {0:?} is not one a rules folder has; not exported")]
    BadFileName(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("listening for rule set changes on PostgreSQL: {0}")]
    Listen(#[source] sqlx::Error),
}

impl ActiveRulesError {
    /// Worth trying again (the database, a colleague's change meanwhile).
    pub fn is_transient(&self) -> bool {
        match self {
            ActiveRulesError::Registry(e) => e.is_transient(),
            ActiveRulesError::Conflict { .. } | ActiveRulesError::Listen(_) => true,
            _ => false,
        }
    }
}

/// This host as it signs changes it makes by itself (a file edit, the bootstrap).
pub fn this_host() -> String {
    let name = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    format!("pietura@{}", name.as_deref().unwrap_or("localhost"))
}

/// A history line for an activation; the registry fills in the time and
/// the versions.
pub fn change(action: &str, actor: &str, file: Option<String>, note: String) -> RulesChange {
    RulesChange {
        at: String::new(),
        actor: actor.to_string(),
        action: action.to_string(),
        file,
        from_version: String::new(),
        to_version: String::new(),
        note,
    }
}

/// A stored version compiled; `dir` labels the problems' file names.
pub async fn compile_version(
    registry: &Registry,
    dir: &Path,
    version: &str,
) -> Result<RuleSet, ActiveRulesError> {
    let sources = registry
        .ruleset_sources(version)
        .await?
        .ok_or_else(|| ActiveRulesError::MissingVersion(version.to_string()))?;
    Ok(RuleSet::from_sources(dir, sources)?)
}

/// The rule set in force, if the registry has one.
pub async fn load_active(
    registry: &Registry,
    dir: &Path,
) -> Result<Option<RuleSet>, ActiveRulesError> {
    match registry.active_ruleset().await? {
        Some(active) => compile_version(registry, dir, &active.version)
            .await
            .map(Some),
        None => Ok(None),
    }
}

/// The rule set a starting daemon runs with: the registry's, after
/// bootstrapping an empty registry from `dir` or applying `dir` when it
/// holds a version the registry has never seen.
pub async fn at_start(registry: &Registry, dir: &Path) -> Result<RuleSet, ActiveRulesError> {
    let folder = RuleSet::load(dir);
    // Two daemons may start together: a lost race reads the winner's set.
    for _ in 0..3 {
        let Some(active) = registry.active_ruleset().await? else {
            let set = match &folder {
                Ok(set) => set.clone(),
                Err(e) => {
                    return Err(ActiveRulesError::Rules(RulesError {
                        dir: e.dir.clone(),
                        problems: e.problems.clone(),
                    }));
                }
            };
            let note = format!("{} taken by an empty registry", dir.display());
            let line = change("bootstrap", &this_host(), None, note);
            if registry
                .activate_ruleset(&set, &Replacing::Nothing, &line)
                .await?
                == Activation::Activated
            {
                tracing::info!(version = %set.version, dir = %dir.display(), "rules folder taken as the rule set in force (empty registry)");
                return Ok(set);
            }
            continue;
        };
        let in_force = compile_version(registry, dir, &active.version).await?;
        let folder = match &folder {
            Ok(f) if f.version == in_force.version => return Ok(in_force),
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(in_force = %in_force.version, "the rules folder is not applied, the registry's rule set stays in force: {e}");
                return Ok(in_force);
            }
        };
        if registry.ruleset_known(&folder.version).await? {
            tracing::warn!(
                folder = %folder.version,
                in_force = %in_force.version,
                dir = %dir.display(),
                "the rules folder holds an older rule set the registry knows: not applied (a stale host must not roll the others back); `pietura rules export DIR` brings a folder up to date"
            );
            return Ok(in_force);
        }
        let note = format!("{} edited while the daemon was down", dir.display());
        let line = change("files", &this_host(), None, note);
        let replacing = Replacing::Version(in_force.version.clone());
        if registry.activate_ruleset(folder, &replacing, &line).await? == Activation::Activated {
            tracing::info!(from = %in_force.version, to = %folder.version, "rules folder edited while the daemon was down: applied to the registry");
            return Ok(folder.clone());
        }
    }
    match load_active(registry, dir).await? {
        Some(set) => Ok(set),
        None => Err(ActiveRulesError::NoneActive),
    }
}

/// What `pietura rules apply` did.
pub struct Applied {
    pub set: RuleSet,
    /// The version in force before, if any.
    pub from: Option<String>,
    /// False when the folder already was the set in force.
    pub changed: bool,
}

/// Validates a rules folder and puts it in force for every daemon.
pub async fn apply_dir(
    registry: &Registry,
    dir: &Path,
    actor: &str,
) -> Result<Applied, ActiveRulesError> {
    let set = RuleSet::load(dir)?;
    let from = registry.active_ruleset().await?.map(|a| a.version);
    if from.as_deref() == Some(set.version.as_str()) {
        return Ok(Applied {
            set,
            from,
            changed: false,
        });
    }
    let note = format!("pietura rules apply {}", dir.display());
    let line = change("apply", actor, None, note);
    match registry
        .activate_ruleset(&set, &Replacing::Any, &line)
        .await?
    {
        Activation::Activated => Ok(Applied {
            set,
            from,
            changed: true,
        }),
        Activation::Conflict { active } => Err(ActiveRulesError::Conflict {
            expected: from.unwrap_or_default(),
            active: active.unwrap_or_default(),
        }),
    }
}

/// Whether `name` is a file a rules folder holds (a top-level file or
/// `routing/<name>.toml`), so writing it stays inside the folder.
pub fn is_rules_file(name: &str) -> bool {
    TOP_LEVEL_FILES.contains(&name)
        || name
            .strip_prefix("routing/")
            .and_then(|n| n.strip_suffix(".toml"))
            .is_some_and(|n| !n.is_empty() && !n.starts_with('.') && !n.contains(['/', '\\']))
}

/// Writes `text` to `dir/file` so that a reader sees the old or the new
/// file, never half of one (a synced temporary file renamed over it).
pub fn write_atomically(dir: &Path, file: &str, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let target: PathBuf = dir.join(file);
    let parent = target.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".pietura-{}.tmp", uuid::Uuid::now_v7().simple()));
    let mut out = std::fs::File::create(&tmp)?;
    out.write_all(text.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&tmp, &target).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Writes a rule set's files into `dir` and removes the `routing/*.toml`
/// it does not have, so the folder loads as exactly this set.
pub fn export(sources: &RuleSources, dir: &Path) -> Result<(), ActiveRulesError> {
    if let Some(bad) = sources.files.keys().find(|f| !is_rules_file(f)) {
        return Err(ActiveRulesError::BadFileName(bad.clone()));
    }
    let written = |path: PathBuf| move |source| ActiveRulesError::Write { path, source };
    for (file, text) in &sources.files {
        write_atomically(dir, file, text).map_err(written(dir.join(file)))?;
    }
    let routing = dir.join("routing");
    std::fs::create_dir_all(&routing).map_err(written(routing.clone()))?;
    let entries = std::fs::read_dir(&routing).map_err(written(routing.clone()))?;
    for entry in entries.filter_map(Result::ok) {
        let name = format!("routing/{}", entry.file_name().to_string_lossy());
        if name.ends_with(".toml") && !sources.files.contains_key(&name) {
            std::fs::remove_file(entry.path()).map_err(written(entry.path()))?;
        }
    }
    Ok(())
}

/// Adds a one-off holiday to the calendar in force and activates the
/// result for every daemon (a colleague's change meanwhile is built upon).
pub async fn add_holiday(
    registry: &Registry,
    dir: &Path,
    date: NaiveDate,
    name: &str,
    added_by: &str,
) -> Result<RuleSet, ActiveRulesError> {
    let mut last = ActiveRulesError::NoneActive;
    for _ in 0..5 {
        let current = load_active(registry, dir)
            .await?
            .ok_or(ActiveRulesError::NoneActive)?;
        let set = with_dated_holiday(&current, date, name, added_by, Utc::now())?;
        let note = format!("ad-hoc holiday {date}");
        let line = change("holiday", added_by, Some("calendar.toml".into()), note);
        let replacing = Replacing::Version(current.version.clone());
        match registry.activate_ruleset(&set, &replacing, &line).await? {
            Activation::Activated => return Ok(set),
            Activation::Conflict { active } => {
                last = ActiveRulesError::Conflict {
                    expected: current.version.clone(),
                    active: active.unwrap_or_default(),
                };
            }
        }
    }
    Err(last)
}

/// Puts `set` in force in this daemon and reports it on `status`.
fn put_in_force(shared: &SharedRules, status: &watch::Sender<ReloadStatus>, set: Arc<RuleSet>) {
    let version = set.version.clone();
    shared.store(set);
    status.send_modify(|s| {
        s.version = version;
        s.refused = None;
        s.attempts += 1;
    });
}

/// Follows the registry's active version into this daemon's [`SharedRules`].
pub struct Follower {
    pub registry: Registry,
    pub shared: SharedRules,
    pub status: watch::Sender<ReloadStatus>,
    /// PostgreSQL's URL, to listen for notifications; None on SQLite (polling).
    pub listen_url: Option<String>,
}

impl Follower {
    /// Runs until `shutdown`; returns an error (and is restarted by the
    /// supervisor) when the listening connection cannot be kept.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ActiveRulesError> {
        let mut listener = match &self.listen_url {
            Some(url) => {
                let mut l = sqlx::postgres::PgListener::connect(url)
                    .await
                    .map_err(ActiveRulesError::Listen)?;
                l.listen(RULESET_CHANNEL)
                    .await
                    .map_err(ActiveRulesError::Listen)?;
                Some(l)
            }
            None => None,
        };
        // A version this binary refused, so it is reported once, not every poll.
        let mut refused: Option<String> = None;
        loop {
            if let Err(e) = self.catch_up(&mut refused).await {
                tracing::warn!("rule set in force not checked (tried again shortly): {e}");
            }
            match listener.as_mut() {
                Some(l) => tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    got = l.recv() => { got.map_err(ActiveRulesError::Listen)?; }
                    _ = tokio::time::sleep(POSTGRES_POLL) => {}
                },
                None => tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(SQLITE_POLL) => {}
                },
            }
        }
    }

    /// Swaps in the registry's active version if this daemon runs another.
    async fn catch_up(&self, refused: &mut Option<String>) -> Result<(), ActiveRulesError> {
        let Some(active) = self.registry.active_ruleset().await? else {
            return Ok(());
        };
        let local = self.shared.load_full();
        if active.version == local.version || refused.as_deref() == Some(&active.version) {
            return Ok(());
        }
        match compile_version(&self.registry, &local.dir, &active.version).await {
            Ok(set) => {
                *refused = None;
                let version = set.version.clone();
                // Unless this daemon put something else in force meanwhile
                // (its own edit): the next look decides then.
                let previous = self.shared.compare_and_swap(&local, Arc::new(set));
                if Arc::ptr_eq(&*previous, &local) {
                    tracing::info!(from = %local.version, to = %version, "following the rule set in force");
                    crate::metrics::rules_reloaded(true);
                    self.status.send_modify(|s| {
                        s.version = version;
                        s.refused = None;
                        s.attempts += 1;
                    });
                }
                Ok(())
            }
            Err(ActiveRulesError::Rules(e)) => {
                tracing::error!(version_kept = %local.version, "the rule set in force does not compile here: {e}");
                crate::metrics::rules_reloaded(false);
                *refused = Some(active.version.clone());
                self.status.send_modify(|s| {
                    s.refused = Some(e.to_string());
                    s.attempts += 1;
                });
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Applies edits of this host's `rules/` to the registry (so every daemon
/// follows them) until `shutdown`; a broken edit is refused with file:line
/// and the set in force keeps routing, and so is a folder equal to an older
/// version the registry knows (a stale folder touched).
pub async fn apply_file_edits(
    mut watcher: RulesWatcher,
    registry: Registry,
    shared: SharedRules,
    status: watch::Sender<ReloadStatus>,
    shutdown: CancellationToken,
) {
    while watcher.next_change(&shutdown).await {
        let before = shared.load_full();
        let refused = match RuleSet::load(&before.dir) {
            Err(e) => {
                tracing::error!(version_kept = %before.version, "{e}");
                crate::metrics::rules_reloaded(false);
                Some(e.to_string())
            }
            Ok(set) if set.version == before.version => None,
            Ok(set) if registry.ruleset_known(&set.version).await.unwrap_or(false) => {
                // A stale folder touched (or checked out at an old commit)
                // must not roll the others back.
                tracing::warn!(folder = %set.version, in_force = %before.version, "the rules folder holds an older rule set the registry knows: not applied; `pietura rules apply DIR` puts it back in force, `pietura rules export DIR` updates the folder");
                Some(format!(
                    "{}: rule set {} is an older version the registry knows; not applied (use `pietura rules apply`)",
                    before.dir.display(),
                    set.version
                ))
            }
            Ok(set) => {
                let note = format!("{} edited", before.dir.display());
                let line = change("files", &this_host(), None, note);
                match registry
                    .activate_ruleset(&set, &Replacing::Any, &line)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(from = %before.version, to = %set.version, "rules folder edited: in force for every daemon");
                        crate::metrics::rules_reloaded(true);
                        put_in_force(&shared, &status, Arc::new(set));
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(version_kept = %before.version, "rules folder edit not stored in the registry, not in force: {e}");
                        Some(format!(
                            "rule set {} not stored in the registry: {e}",
                            set.version
                        ))
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rules_files_are_exported() {
        for good in ["units.toml", "calendar.toml", "routing/50-units.toml"] {
            assert!(is_rules_file(good), "{good}");
        }
        for bad in [
            "../etc/passwd",
            "routing/../x.toml",
            "routing/.toml",
            "other.toml",
            "routing/sub/x.toml",
        ] {
            assert!(!is_rules_file(bad), "{bad}");
        }
    }

    #[test]
    fn an_atomic_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        write_atomically(dir.path(), "routing/10-a.toml", "x = 1\n").expect("write");
        write_atomically(dir.path(), "routing/10-a.toml", "x = 2\n").expect("write again");
        let names: Vec<String> = std::fs::read_dir(dir.path().join("routing"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["10-a.toml"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("routing/10-a.toml")).expect("read"),
            "x = 2\n"
        );
    }
}

//! The janitor: nothing grows without a reader. One supervised task per
//! daemon, but one run at a time across daemons: each run is a claim of the
//! periodic job `janitor` (named work of the leased-work primitive,
//! [`crate::registry::lease::NAMED`]), so two daemons never prune at once
//! and a daemon that dies mid-run leaves it to the next claim.
//!
//! A run removes
//! - routed notices on the embedded bus (no unit consumes them there): older
//!   than `janitor.notice_retention_hours`, or past `bus.unit_queue_max_length`
//!   per queue ([`crate::bus::Bus::prune_notices`]);
//! - door claims ([`crate::registry::claims`]) of registered items after
//!   `janitor.door_claim_retention_hours` (the registry then recognises the
//!   key and compares the content itself), and of submissions that never
//!   arrived after `janitor.unfinished_claim_retention_days`, unless parked;
//! - blobs nothing refers to (no item, attachment, audit line, parked item
//!   or message on the embedded bus) whose file is older than
//!   `janitor.blob_grace_hours`, so an upload or a message still on its way
//!   is never collected, and only while no message waits in a broker's
//!   intake or dead-letter queue; and temporary files of uploads given up
//!   as long.
//!
//! Parked items need no pruning: they are removed once registered.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::Utc;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::blobs::BlobStore;
use crate::bus::{Bus, BusError};
use crate::config::JanitorSettings;
use crate::registry::{Registry, RegistryError};

/// The periodic job's name (named work in `work_leases`).
pub const JOB: &str = "janitor";
/// How long one run's claim lasts (renewed between its steps).
const CLAIM_SECS: i64 = 900;
/// How often a daemon looks whether the job is due.
const TICK: Duration = Duration::from_secs(60);
/// Rows read per query while collecting blob references.
const PAGE: i64 = 500;

/// Why a run of the janitor failed; the next run tries again.
#[derive(Debug, thiserror::Error)]
pub enum JanitorError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("blob store {path}: {source}")]
    Blobs {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What one run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub notices: u64,
    pub door_claims: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub temp_files: u64,
}

impl std::fmt::Display for Pruned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} notices, {} door claims, {} blobs ({} bytes), {} temporary files",
            self.notices, self.door_claims, self.blobs, self.blob_bytes, self.temp_files
        )
    }
}

/// Runs the janitor whenever its job is due and this daemon wins the claim.
/// `notice_max`: the most notices kept per routed queue (`bus.unit_queue_max_length`).
pub async fn run(
    registry: Registry,
    bus: Arc<dyn Bus>,
    blobs: BlobStore,
    settings: JanitorSettings,
    notice_max: u32,
    shutdown: CancellationToken,
) -> Result<(), JanitorError> {
    loop {
        if let Some(lease) = registry.claim_periodic(JOB, CLAIM_SECS).await? {
            let pruned = prune_once(
                &registry,
                bus.as_ref(),
                &blobs,
                &settings,
                notice_max,
                &lease,
            )
            .await;
            let every = i64::try_from(settings.every_minutes.saturating_mul(60)).unwrap_or(3600);
            match pruned {
                Ok(p) => {
                    tracing::info!(%p, "janitor: pruned");
                    registry
                        .periodic_done(&lease, every, &p.to_string())
                        .await?;
                }
                Err(e) => {
                    // Due again sooner; the supervisor sees no failure for
                    // a run that merely found the database or bus away.
                    tracing::warn!("janitor run failed, tried again later: {e}");
                    let _ = registry
                        .periodic_done(&lease, every.min(600), &format!("failed: {e}"))
                        .await;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// One run under `lease` (renewed between the steps; a lost claim ends it).
pub async fn prune_once(
    registry: &Registry,
    bus: &dyn Bus,
    blobs: &BlobStore,
    settings: &JanitorSettings,
    notice_max: u32,
    lease: &crate::registry::lease::Lease,
) -> Result<Pruned, JanitorError> {
    // At most a century back: a huge setting never overflows the clock.
    let hours = |h: u64| chrono::Duration::hours(i64::try_from(h.min(876_000)).unwrap_or(876_000));
    let now = Utc::now();
    let renew = || registry.renew(&crate::registry::lease::NAMED, lease, CLAIM_SECS);
    let mut pruned = Pruned {
        notices: bus
            .prune_notices(now - hours(settings.notice_retention_hours), notice_max)
            .await?,
        ..Pruned::default()
    };
    crate::metrics::pruned("notices", pruned.notices);
    renew().await?;
    pruned.door_claims = registry
        .prune_door_claims(
            now - hours(settings.door_claim_retention_hours),
            now - hours(settings.unfinished_claim_retention_days.saturating_mul(24)),
        )
        .await?;
    crate::metrics::pruned("door_claims", pruned.door_claims);
    renew().await?;
    // Dead letters not yet parked, and messages waiting in a broker's
    // intake queue (a registry down for longer than the grace period), refer
    // to blobs the registry cannot see: collected another time.
    if bus.dead_letter_count().await? == 0 && bus.intake_backlog().await? == 0 {
        let grace = Duration::from_secs(settings.blob_grace_hours.saturating_mul(3600));
        let referenced = blob_references(registry).await?;
        renew().await?;
        let (n, bytes, temps) = collect_blobs(blobs, referenced, grace).await?;
        pruned.blobs = n;
        pruned.blob_bytes = bytes;
        pruned.temp_files = temps;
        crate::metrics::pruned("blobs", n);
        crate::metrics::pruned("blob_bytes", bytes);
        crate::metrics::pruned("temp_files", temps);
    }
    Ok(pruned)
}

/// Every blob address the registry refers to: the attachments, and every
/// SHA-256 in stored messages (originals of e-mail and scans), audit lines
/// (bounce reports), parked items, messages on the embedded bus and
/// signed answer documents.
pub async fn blob_references(registry: &Registry) -> Result<HashSet<String>, RegistryError> {
    let mut found = HashSet::new();
    for (table, key, text) in [
        ("items", "id", "message_json"),
        ("audit_log", "id", "detail"),
        ("bus_messages", "id", "payload"),
        ("parked", "id", "payload_b64"),
        ("attachments", "item_id || '/' || sha256", "sha256"),
        // Signed answer documents (src/answers.rs).
        ("answers", "id", "COALESCE(document_sha256, '')"),
    ] {
        let mut after = String::new();
        loop {
            let sql = format!(
                "SELECT {key} AS k, {text} AS t FROM {table} WHERE {key} > $1 ORDER BY {key} LIMIT $2"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(after.clone())
                .bind(PAGE)
                .fetch_all(registry.pool())
                .await
                .map_err(|source| RegistryError::Query {
                    context: format!("blob references in {table}"),
                    source,
                })?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("k").map_err(|source| RegistryError::Query {
                context: format!("blob references in {table}"),
                source,
            })?;
            for row in &rows {
                let t: String = row.try_get("t").unwrap_or_default();
                if table == "parked" {
                    use base64::Engine as _;
                    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&t) {
                        hex_runs(&String::from_utf8_lossy(&bytes), &mut found);
                    }
                } else {
                    hex_runs(&t, &mut found);
                }
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
    }
    Ok(found)
}

/// Adds every run of exactly 64 hex digits in `text` (lowercased).
fn hex_runs(text: &str, into: &mut HashSet<String>) {
    let bytes = text.as_bytes();
    let mut start = None;
    for i in 0..=bytes.len() {
        let hex = bytes.get(i).is_some_and(u8::is_ascii_hexdigit);
        match (hex, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s == 64 {
                    into.insert(text[s..i].to_ascii_lowercase());
                }
                start = None;
            }
            _ => {}
        }
    }
}

fn older_than(path: &Path, grace: Duration, now: SystemTime) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age >= grace))
}

/// Removes blobs not in `referenced` whose file is older than `grace`, and
/// temporary files as old; (blobs, their bytes, temporary files).
async fn collect_blobs(
    blobs: &BlobStore,
    referenced: HashSet<String>,
    grace: Duration,
) -> Result<(u64, u64, u64), JanitorError> {
    let dir = blobs.dir().to_path_buf();
    tokio::task::spawn_blocking(move || collect_blobs_in(&dir, &referenced, grace))
        .await
        .unwrap_or_else(|e| {
            Err(JanitorError::Blobs {
                path: "blob collection".into(),
                source: std::io::Error::other(e.to_string()),
            })
        })
}

fn collect_blobs_in(
    dir: &Path,
    referenced: &HashSet<String>,
    grace: Duration,
) -> Result<(u64, u64, u64), JanitorError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| JanitorError::Blobs { path, source }
    };
    let now = SystemTime::now();
    let (mut n, mut bytes, mut temps) = (0, 0, 0);
    let trash = dir.join("tmp");
    for shard in std::fs::read_dir(dir).map_err(io(dir))? {
        let shard = shard.map_err(io(dir))?.path();
        let is_shard = shard
            .file_name()
            .and_then(|s| s.to_str())
            .is_some_and(|s| s.len() == 2 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        if shard == trash {
            for f in std::fs::read_dir(&shard).map_err(io(&shard))? {
                let f = f.map_err(io(&shard))?.path();
                if older_than(&f, grace, now) && std::fs::remove_file(&f).is_ok() {
                    temps += 1;
                }
            }
            continue;
        }
        if !is_shard || !shard.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&shard).map_err(io(&shard))? {
            let path = f.map_err(io(&shard))?.path();
            let Some(name) = path.file_name().and_then(|s| s.to_str()) else {
                continue;
            };
            if name.len() != 64
                || referenced.contains(&name.to_ascii_lowercase())
                || !older_than(&path, grace, now)
            {
                continue;
            }
            // Moved aside first, then looked at again: a blob stored anew
            // just now (same content, a new upload) is a fresh file, put back.
            let aside = trash.join(format!("collect-{name}"));
            if std::fs::rename(&path, &aside).is_err() {
                continue;
            }
            if older_than(&aside, grace, now) {
                let size = std::fs::metadata(&aside).map(|m| m.len()).unwrap_or(0);
                if std::fs::remove_file(&aside).is_ok() {
                    n += 1;
                    bytes += size;
                }
            } else {
                let _ = std::fs::rename(&aside, &path);
            }
        }
    }
    Ok((n, bytes, temps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_runs_finds_only_whole_addresses() {
        let a = "ab".repeat(32);
        let text = format!(
            "{{\"sha256\":\"{a}\",\"x\":\"{}\",\"y\":\"{}\"}}",
            "c".repeat(63),
            "d".repeat(65)
        );
        let mut found = HashSet::new();
        hex_runs(&text, &mut found);
        assert_eq!(found, HashSet::from([a]));
    }
}

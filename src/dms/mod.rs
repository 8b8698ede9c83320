//! Registration in an external document-management system (a sink beside
//! the built-in registry). The registry stays the register of record: each
//! new item gets a `dms_registrations` row in its registering transaction,
//! and [`run`] uploads it to the configured DMS with retries, so a DMS that
//! is down only delays the upload ("pending registration" on the item).
//!
//! One module per connector behind the narrow [`Connector`] trait; the one
//! in use is chosen in `[dms.connector]` by `type`. Every connector looks its
//! document up by the item id before creating one, so a retry after a crash
//! or a lost answer never uploads an item twice.

pub mod cmis;
mod document;
mod http;
pub mod mayan;
pub mod paperless;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::blobs::BlobStore;
use crate::registry::Registry;
use crate::registry::dms::DmsTask;
use crate::rules::watch::SharedRules;

pub use document::{DmsDocument, DmsFile, FIELDS, FileBody};

/// Why a DMS call failed. Every variant is retried (the item must not be
/// lost); they differ in what the operator is told to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DmsError {
    /// Connection refused, timeout, 5xx, 429: the DMS is down or busy.
    #[error("{0} (the DMS is down or busy; it is tried again)")]
    Unavailable(String),
    /// 401/403: the credentials in `[dms.connector]` are wrong or lack a permission.
    #[error("{0} (check the credentials and permissions in [dms.connector])")]
    Auth(String),
    /// Another 4xx: the DMS refused this request.
    #[error("{0}")]
    Rejected(String),
    /// An answer that is not what the DMS's API documents.
    #[error("{0} (the DMS answered outside its documented API; is the URL right?)")]
    Malformed(String),
    /// A file of the item could not be read from the blob store.
    #[error("{0}")]
    File(String),
    /// A setting is missing or wrong (a secret file or variable, say).
    #[error("{0}")]
    Config(String),
}

/// A registration the DMS finished: its document id and where people see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRecord {
    pub id: String,
    pub url: Option<String>,
}

/// A document-management system Pietura registers items in.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Short name stored with each item (`mayan`, `paperless`, `cmis`).
    fn kind(&self) -> &'static str;

    /// Registers the item with its files and metadata and returns the DMS's
    /// id. `known` is the id from an earlier attempt, if one was recorded.
    /// Must be idempotent: a document already there for this item (found
    /// by its item id) is completed, never created again.
    async fn register(
        &self,
        doc: &DmsDocument,
        known: Option<&str>,
    ) -> Result<ExternalRecord, DmsError>;

    /// Sends the item's metadata again after it changed (re-routed,
    /// deadline moved).
    async fn update(&self, doc: &DmsDocument, id: &str) -> Result<ExternalRecord, DmsError>;

    /// Whether the DMS answers and accepts our credentials.
    async fn health(&self) -> Result<(), DmsError>;
}

/// `[dms]`: the external DMS and how hard to try it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmsSettings {
    pub connector: ConnectorSettings,
    /// Longest pause between two attempts for one item.
    #[serde(default = "default_retry_max_seconds")]
    pub retry_max_seconds: u64,
    /// Longest wait for one DMS request (uploads included).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Items uploaded at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_retry_max_seconds() -> u64 {
    600
}
fn default_timeout_seconds() -> u64 {
    120
}
fn default_concurrency() -> usize {
    4
}

/// The connectors there are; one per deployment.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConnectorSettings {
    Mayan(mayan::MayanSettings),
    Paperless(paperless::PaperlessSettings),
    Cmis(cmis::CmisSettings),
}

impl ConnectorSettings {
    /// The connector's short name, stored with each item.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectorSettings::Mayan(_) => mayan::KIND,
            ConnectorSettings::Paperless(_) => paperless::KIND,
            ConnectorSettings::Cmis(_) => cmis::KIND,
        }
    }
}

impl DmsSettings {
    /// Problems as `(key under [dms], message)`, all at once.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if self.concurrency == 0 {
            issues.push(("dms.concurrency".into(), "must be at least 1".into()));
        }
        if self.timeout_seconds == 0 {
            issues.push(("dms.timeout_seconds".into(), "must be at least 1".into()));
        }
        if self.retry_max_seconds == 0 {
            issues.push(("dms.retry_max_seconds".into(), "must be at least 1".into()));
        }
        let connector = match &self.connector {
            ConnectorSettings::Mayan(s) => s.validate(),
            ConnectorSettings::Paperless(s) => s.validate(),
            ConnectorSettings::Cmis(s) => s.validate(),
        };
        issues.extend(
            connector
                .into_iter()
                .map(|(key, message)| (format!("dms.connector.{key}"), message)),
        );
        issues
    }

    /// The configured connector.
    pub fn build(&self) -> Result<Arc<dyn Connector>, DmsError> {
        let client = http::client(Duration::from_secs(self.timeout_seconds))?;
        Ok(match &self.connector {
            ConnectorSettings::Mayan(s) => Arc::new(mayan::Mayan::new(s.clone(), client)),
            ConnectorSettings::Paperless(s) => {
                Arc::new(paperless::Paperless::new(s.clone(), client))
            }
            ConnectorSettings::Cmis(s) => Arc::new(cmis::Cmis::new(s.clone(), client)),
        })
    }
}

/// The DMS task's parts.
pub struct DmsWorker {
    pub registry: Registry,
    pub blobs: BlobStore,
    pub rules: SharedRules,
    pub connector: Arc<dyn Connector>,
    pub retry_max: Duration,
    pub concurrency: usize,
}

impl DmsWorker {
    /// Uploads due items until `shutdown`; an upload in flight at shutdown
    /// is abandoned and its lease expires, so it is completed later.
    pub async fn run(self, shutdown: CancellationToken) {
        let worker = Arc::new(self);
        let mut healthy: Option<bool> = None;
        let (mut last_health, mut last_count): (Option<Instant>, Option<Instant>) = (None, None);
        loop {
            // Said once per change, not on every round.
            if last_health.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                last_health = Some(Instant::now());
                let now = worker.connector.health().await;
                crate::metrics::dms_up(now.is_ok());
                match (&now, healthy) {
                    (Ok(()), Some(true)) => {}
                    (Ok(()), _) => tracing::info!(dms = worker.connector.kind(), "DMS reachable"),
                    (Err(e), Some(false)) => tracing::debug!("DMS still failing: {e}"),
                    (Err(e), _) => tracing::warn!(
                        dms = worker.connector.kind(),
                        "DMS health check failed: {e}"
                    ),
                }
                healthy = Some(now.is_ok());
            }
            let claimed = match worker.registry.claim_dms(worker.concurrency as i64).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("DMS registrations cannot be read: {e}");
                    Vec::new()
                }
            };
            let busy = !claimed.is_empty();
            let work = claimed.iter().cloned().map(|task| {
                let span = tracing::info_span!("dms", item = %task.item_id, number = %task.registration_number, dms = %task.connector);
                let worker = worker.clone();
                async move { worker.settle(&task).await }.instrument(span)
            });
            let stopped = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = futures::future::join_all(work) => false,
            };
            if stopped {
                // Those not settled yet are taken up at the next start.
                if let Err(e) = worker.registry.dms_release(&claimed).await {
                    tracing::warn!("DMS leases not given back (they expire by themselves): {e}");
                }
                return;
            }
            if last_count.is_none_or(|t| t.elapsed() >= Duration::from_secs(15)) {
                last_count = Some(Instant::now());
                if let Ok(n) = worker.registry.dms_pending_count().await {
                    crate::metrics::dms_pending(n);
                }
            }
            if !busy {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    /// One attempt for one item, recorded whatever its outcome.
    async fn settle(&self, task: &DmsTask) {
        // Several requests (each with its timeout) may outlast the claim:
        // it is renewed while they run, so no other daemon uploads meanwhile.
        let renewal = crate::registry::lease::Renewal::start(
            self.registry.clone(),
            &crate::registry::lease::DMS,
            task.lease.clone(),
            crate::registry::dms::LEASE_SECS,
        );
        let result = self.attempt(task).await;
        renewal.stop();
        let recorded = match result {
            Ok(record) => {
                if task.registered {
                    tracing::info!(external_id = %record.id, "DMS metadata updated");
                } else {
                    crate::metrics::dms_registered();
                    tracing::info!(external_id = %record.id, "registered in the DMS");
                }
                self.registry
                    .dms_done(task, &record.id, record.url.as_deref())
                    .await
            }
            Err(e) => {
                crate::metrics::dms_failed();
                let pause =
                    crate::backoff::doubling(Duration::from_secs(5), task.attempts, self.retry_max);
                let after = chrono::Duration::from_std(pause).unwrap_or_default();
                let next = Utc::now() + after;
                let why = format!("item {}: {e}", task.registration_number);
                match e {
                    DmsError::Unavailable(_) => {
                        tracing::warn!(%next, "DMS registration waits: {why}")
                    }
                    _ => tracing::error!(%next, "DMS registration failed, will retry: {why}"),
                }
                self.registry.dms_failed(task, &e.to_string(), after).await
            }
        };
        if let Err(e) = recorded {
            tracing::error!(
                "DMS outcome not recorded (the lease expires and it is tried again): {e}"
            );
        }
    }

    async fn attempt(&self, task: &DmsTask) -> Result<ExternalRecord, DmsError> {
        let doc = document::load(
            &self.registry,
            &self.blobs,
            &self.rules.load(),
            &task.item_id,
        )
        .await?;
        match (&task.external_id, task.registered) {
            (Some(id), true) => self.connector.update(&doc, id).await,
            (known, _) => self.connector.register(&doc, known.as_deref()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_connector_types_and_fields_are_refused() {
        let unknown: Result<DmsSettings, _> =
            toml::from_str("[connector]\ntype = \"sharepoint\"\nurl = \"http://x\"\n");
        let message = unknown.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("sharepoint"), "{message}");
        let typo: Result<DmsSettings, _> = toml::from_str(
            "[connector]\ntype = \"mayan\"\nurl = \"http://x\"\ndocument_typ = \"x\"\n",
        );
        let message = typo.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("document_typ"), "{message}");
    }
}

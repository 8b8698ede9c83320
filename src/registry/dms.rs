//! The `dms_registrations` table: items waiting to be registered in (or
//! updated in) an external document-management system. Rows are written in
//! the registering transaction, so an item the engine acknowledged is never
//! missing here; the DMS task claims them with a lease and records each
//! outcome, so "pending registration" is visible on the item meanwhile.

use chrono::{Duration, Utc};
use serde::Serialize;
use sqlx::Row;

use super::lease::{self, Lease};
use super::{Registry, RegistryError, db_time, insert_audit, q};

/// One item the DMS task has claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmsTask {
    pub item_id: String,
    pub registration_number: String,
    pub connector: String,
    /// Attempts started before this one (a crashed one counts).
    pub attempts: i64,
    /// Set once the DMS gave a document id (an earlier attempt, or registered).
    pub external_id: Option<String>,
    /// True once registered: only the metadata is sent again.
    pub registered: bool,
    /// The change this update answers; cleared only if nothing changed since.
    pub stale_since: Option<String>,
    /// The worker's claim on the item.
    pub lease: Lease,
}

/// Where an item stands in the DMS, for the item view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DmsState {
    pub connector: String,
    /// `pending`, `registered`, or `update_pending`.
    pub state: &'static str,
    pub external_id: Option<String>,
    pub external_url: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub registered_at: Option<String>,
}

/// How long a claimed item is left to its worker before another may try
/// unless renewed (the DMS task renews it while an attempt runs).
pub const LEASE_SECS: i64 = 900;

impl Registry {
    /// Claims up to `limit` items whose DMS registration or update is due
    /// ([`lease::DMS`], on the database's clock).
    pub async fn claim_dms(&self, limit: i64) -> Result<Vec<DmsTask>, RegistryError> {
        let ctx = "DMS registrations due";
        let leases = self.claim(&lease::DMS, None, limit, LEASE_SECS).await?;
        let rows = self
            .rows_of_leases(
                &leases,
                "SELECT d.item_id, i.registration_number, d.connector, d.attempts, d.external_id, \
                 d.registered_at, d.stale_since \
                 FROM dms_registrations d JOIN items i ON i.id = d.item_id \
                 WHERE d.item_id IN ({keys}) ORDER BY d.next_attempt_at",
                ctx,
            )
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for (r, lease) in rows {
            let item_id: String = r.try_get("item_id").map_err(q(ctx))?;
            let registered: Option<String> = r.try_get("registered_at").map_err(q(ctx))?;
            // The claim counted this attempt already.
            let attempts: i64 = r.try_get("attempts").map_err(q(ctx))?;
            claimed.push(DmsTask {
                item_id,
                registration_number: r.try_get("registration_number").map_err(q(ctx))?,
                connector: r.try_get("connector").map_err(q(ctx))?,
                attempts: attempts - 1,
                external_id: r.try_get("external_id").map_err(q(ctx))?,
                registered: registered.is_some(),
                stale_since: r.try_get("stale_since").map_err(q(ctx))?,
                lease,
            });
        }
        Ok(claimed)
    }

    /// Records a finished registration or update, with its audit line.
    pub async fn dms_done(
        &self,
        task: &DmsTask,
        external_id: &str,
        external_url: Option<&str>,
    ) -> Result<(), RegistryError> {
        let ctx = format!("DMS registration of item {}", task.registration_number);
        let now = db_time(Utc::now());
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        lease::fence_one(&mut tx, &lease::DMS, &task.lease).await?;
        // A change made while this attempt ran keeps the row stale.
        sqlx::query(
            "UPDATE dms_registrations SET external_id = $2, external_url = $3, \
             registered_at = COALESCE(registered_at, $4), attempts = 0, last_error = NULL, \
             next_attempt_at = $4, \
             stale_since = CASE WHEN stale_since = $5 THEN NULL ELSE stale_since END \
             WHERE item_id = $1",
        )
        .bind(&task.item_id)
        .bind(external_id)
        .bind(external_url)
        .bind(&now)
        .bind(&task.stale_since)
        .execute(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        let action = if task.registered {
            "dms_updated"
        } else {
            "dms_registered"
        };
        let detail = serde_json::json!({
            "connector": task.connector,
            "external_id": external_id,
            "url": external_url,
        });
        insert_audit(&mut tx, &task.item_id, "pietura", action, &detail, &ctx).await?;
        tx.commit().await.map_err(q(ctx))
    }

    /// Records a failed attempt and ends the claim; the item is tried
    /// again `after` from now (database clock). Refused when the claim was
    /// taken over since.
    pub async fn dms_failed(
        &self,
        task: &DmsTask,
        error: &str,
        after: Duration,
    ) -> Result<(), RegistryError> {
        let ctx = format!("DMS registration of item {}", task.registration_number);
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        lease::fence_one(&mut tx, &lease::DMS, &task.lease).await?;
        let next = lease::db_now_plus(self.sqlite, after.num_seconds());
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE dms_registrations SET last_error = $2, next_attempt_at = {next} \
             WHERE item_id = $1"
        )))
        .bind(&task.item_id)
        .bind(error)
        .execute(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        tx.commit().await.map_err(q(ctx))
    }

    /// Gives back the claims of attempts abandoned at shutdown, so the next
    /// start takes them up at once instead of after the lease.
    pub async fn dms_release(&self, tasks: &[DmsTask]) -> Result<(), RegistryError> {
        let leases: Vec<Lease> = tasks.iter().map(|t| t.lease.clone()).collect();
        self.release(&lease::DMS, &leases).await
    }

    /// Where the item stands in the DMS; none when no DMS was configured
    /// when it was registered.
    pub async fn dms_state(&self, item_id: &str) -> Result<Option<DmsState>, RegistryError> {
        let ctx = format!("DMS state of item {item_id}");
        let row = sqlx::query(
            "SELECT connector, attempts, last_error, next_attempt_at, external_id, external_url, \
             registered_at, stale_since FROM dms_registrations WHERE item_id = $1",
        )
        .bind(item_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q(ctx.clone()))?;
        let Some(r) = row else { return Ok(None) };
        let registered_at: Option<String> = r.try_get("registered_at").map_err(q(ctx.clone()))?;
        let stale: Option<String> = r.try_get("stale_since").map_err(q(ctx.clone()))?;
        let state = match (&registered_at, &stale) {
            (None, _) => "pending",
            (Some(_), Some(_)) => "update_pending",
            (Some(_), None) => "registered",
        };
        let next: String = r.try_get("next_attempt_at").map_err(q(ctx.clone()))?;
        Ok(Some(DmsState {
            connector: r.try_get("connector").map_err(q(ctx.clone()))?,
            state,
            external_id: r.try_get("external_id").map_err(q(ctx.clone()))?,
            external_url: r.try_get("external_url").map_err(q(ctx.clone()))?,
            attempts: r.try_get("attempts").map_err(q(ctx.clone()))?,
            last_error: r.try_get("last_error").map_err(q(ctx))?,
            next_attempt_at: (state != "registered").then_some(next),
            registered_at,
        }))
    }

    /// Items still waiting for their first DMS registration (the repeated
    /// condition lets the database use the partial index of due rows).
    pub async fn dms_pending_count(&self) -> Result<i64, RegistryError> {
        sqlx::query(
            "SELECT COUNT(*) FROM dms_registrations \
             WHERE registered_at IS NULL AND (registered_at IS NULL OR stale_since IS NOT NULL)",
        )
        .fetch_one(&self.pool)
        .await
        .and_then(|r| r.try_get::<i64, _>(0))
        .map_err(q("DMS registrations pending"))
    }
}

/// Marks an item's DMS record out of date after a change to the item, in
/// the changing transaction; a no-op when the item has no DMS record.
pub(super) async fn mark_dms_stale(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    item_id: &str,
    ctx: &str,
) -> Result<(), RegistryError> {
    let now = db_time(Utc::now());
    sqlx::query(
        "UPDATE dms_registrations SET stale_since = $2, next_attempt_at = $2 WHERE item_id = $1",
    )
    .bind(item_id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map(|_| ())
    .map_err(q(ctx.to_string()))
}

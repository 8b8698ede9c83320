//! Malware in the registry ([`crate::malware`]): quarantined blobs, which
//! the desk never serves, and the items waiting unrouted for a scan
//! (`malware_scans`, worked under [`super::lease::MALWARE_SCANS`] leases),
//! routed in one transaction once scanned.

use chrono::Utc;
use sqlx::Row;
use uuid::Uuid;

use super::lease::{Lease, MALWARE_SCANS, fence_one};
use super::{
    ItemState, ItemSummary, ROUTED_BY_RULES, Registry, RegistryError, RoutedNotice,
    SUMMARY_COLUMNS, db_time, insert_audit, q,
};
use crate::message::IntakeMessage;

impl Registry {
    /// Marks a blob as malware (the first item and signature are kept).
    pub async fn quarantine(
        &self,
        sha256: &str,
        signature: &str,
        item_id: &str,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO quarantined_blobs (sha256, signature, item_id, quarantined_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(sha256.to_string())
        .bind(signature.to_string())
        .bind(item_id.to_string())
        .bind(db_time(Utc::now()))
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(q(format!("quarantine of blob {sha256}")))
    }

    /// The signature found in a quarantined blob; None when it is not quarantined.
    pub async fn quarantined(&self, sha256: &str) -> Result<Option<String>, RegistryError> {
        let row = sqlx::query("SELECT signature FROM quarantined_blobs WHERE sha256 = $1")
            .bind(sha256.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(q(format!("quarantine state of blob {sha256}")))?;
        Ok(row.and_then(|r| r.try_get(0).ok()))
    }

    /// How many items wait unrouted for a malware scan.
    pub async fn scans_waiting(&self) -> Result<i64, RegistryError> {
        let row = sqlx::query("SELECT COUNT(*) FROM malware_scans")
            .fetch_one(&self.pool)
            .await
            .map_err(q("count of items waiting for a malware scan"))?;
        row.try_get(0)
            .map_err(q("count of items waiting for a malware scan"))
    }

    /// Claims up to `limit` waiting items with their messages. An item
    /// whose message no longer decodes is routed to review at once.
    pub async fn claim_pending_scans(
        &self,
        limit: i64,
        ttl_secs: i64,
    ) -> Result<Vec<(Lease, IntakeMessage)>, RegistryError> {
        let leases = self.claim(&MALWARE_SCANS, None, limit, ttl_secs).await?;
        let mut out = Vec::with_capacity(leases.len());
        for lease in leases {
            match self.item_message(&lease.key).await {
                Ok(msg) => out.push((lease, msg)),
                Err(e) => {
                    let reason = format!("the message could not be read for its malware scan: {e}");
                    self.finish_pending_scan(&lease, Some(&reason)).await?;
                }
            }
        }
        Ok(out)
    }

    /// Gives a claimed scan back unworked (clamd went away meanwhile).
    pub async fn release_pending_scan(&self, lease: &Lease) -> Result<(), RegistryError> {
        self.release(&MALWARE_SCANS, std::slice::from_ref(lease))
            .await
    }

    /// Routes a scanned item, in one transaction fenced by its claim: as
    /// the rules said when it was registered, or to review with
    /// `review_reason` (malware found, or unscannable). Its notice goes to
    /// the outbox and the scan on its history.
    pub async fn finish_pending_scan(
        &self,
        lease: &Lease,
        review_reason: Option<&str>,
    ) -> Result<(), RegistryError> {
        let item_id = lease.key.as_str();
        let ctx = format!("routing of scanned item {item_id}");
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        fence_one(&mut tx, &MALWARE_SCANS, lease).await?;
        let row =
            sqlx::query("DELETE FROM malware_scans WHERE item_id = $1 RETURNING intended_state")
                .bind(item_id.to_string())
                .fetch_one(&mut *tx)
                .await
                .map_err(q(ctx.clone()))?;
        let intended: String = row.try_get(0).map_err(q(ctx.clone()))?;
        let now = db_time(Utc::now());
        let (state, routed_by) = match review_reason {
            Some(_) => (ItemState::Review.as_str().to_string(), None),
            None if intended == ItemState::Review.as_str() => (intended, None),
            None => (intended, Some(ROUTED_BY_RULES.to_string())),
        };
        sqlx::query(
            "UPDATE items SET state = $2, review_reason = COALESCE($3, review_reason), \
             routed_by = $4, routed_at = $5, revision = revision + 1 WHERE id = $1",
        )
        .bind(item_id.to_string())
        .bind(state.clone())
        .bind(review_reason.map(str::to_string))
        .bind(routed_by.clone())
        .bind(routed_by.as_ref().map(|_| now.clone()))
        .execute(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM items i WHERE i.id = $1"
        )))
        .bind(item_id.to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        let item = ItemSummary::from_row(&row).map_err(q(ctx.clone()))?;
        let destination = match (state.as_str(), &item.unit_id) {
            ("review", _) | (_, None) => "review".to_string(),
            (_, Some(u)) => format!("unit:{u}"),
        };
        sqlx::query(
            "INSERT INTO outbox (id, item_id, destination, payload, created_at, attempts) \
             VALUES ($1, $2, $3, $4, $5, 0)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(item_id.to_string())
        .bind(destination)
        .bind(serde_json::to_string(&RoutedNotice::of(&item)).unwrap_or_default())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        let detail = serde_json::json!({
            "state": state,
            "unit": item.unit_id,
            "malware": review_reason,
        });
        insert_audit(
            &mut tx,
            item_id,
            "pietura",
            "malware_scanned",
            &detail,
            &ctx,
        )
        .await?;
        tx.commit().await.map_err(q(ctx))
    }
}

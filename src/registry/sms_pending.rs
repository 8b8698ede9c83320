//! Storage for SMS held before registration (see the SMS channel): rows are
//! grouped, read whole, sealed as one group (under the gateway id the item
//! is published with) before publishing, and marked once the group was
//! published as one item; marked rows stay a week so a late retry of any SMS
//! of the group is a no-op. Sealing is done under the channel's flush claim
//! ([`super::lease`]), and an SMS held after its group was sealed never
//! joins it.

use sqlx::Row;

use chrono::{DateTime, Duration, Utc};

use super::lease::{Lease, NAMED};
use super::{Registry, RegistryError, db_time, q};

/// One held SMS (or part of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSms {
    pub gateway_id: String,
    pub group_key: String,
    pub from_address: String,
    pub to_address: Option<String>,
    pub text: String,
    pub part_no: i64,
    pub part_count: i64,
    pub received_at: String,
    /// Set once the group was sealed for publishing: the gateway id it is
    /// published under (its first SMS's).
    pub sealed_as: Option<String>,
}

impl Registry {
    /// Holds an SMS; a gateway's retry of the same message (before or after
    /// its group was published) changes nothing.
    pub async fn hold_sms(&self, instance: &str, sms: &HeldSms) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO sms_pending (channel_instance, gateway_id, group_key, from_address, \
             to_address, text, part_no, part_count, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (channel_instance, gateway_id) DO NOTHING",
        )
        .bind(instance)
        .bind(&sms.gateway_id)
        .bind(&sms.group_key)
        .bind(&sms.from_address)
        .bind(&sms.to_address)
        .bind(&sms.text)
        .bind(sms.part_no)
        .bind(sms.part_count)
        .bind(&sms.received_at)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(q(format!(
            "held SMS {} of channel {instance}",
            sms.gateway_id
        )))
    }

    /// Every held SMS of a channel not yet published, oldest first.
    pub async fn held_sms(&self, instance: &str) -> Result<Vec<HeldSms>, RegistryError> {
        let ctx = format!("held SMS of channel {instance}");
        let rows = sqlx::query(
            "SELECT gateway_id, group_key, from_address, to_address, text, part_no, part_count, \
             received_at, sealed_as FROM sms_pending WHERE channel_instance = $1 AND published_at IS NULL \
             ORDER BY received_at, part_no",
        )
        .bind(instance)
        .fetch_all(&self.pool)
        .await
        .map_err(q(ctx.clone()))?;
        rows.iter()
            .map(|r| {
                Ok(HeldSms {
                    gateway_id: r.try_get("gateway_id")?,
                    group_key: r.try_get("group_key")?,
                    from_address: r.try_get("from_address")?,
                    to_address: r.try_get("to_address")?,
                    text: r.try_get("text")?,
                    part_no: r.try_get("part_no")?,
                    part_count: r.try_get("part_count")?,
                    received_at: r.try_get("received_at")?,
                    sealed_as: r.try_get("sealed_as")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q(ctx))
    }

    /// Seals held SMS as one group published under `sealed_as`, while
    /// `flush` (the channel's flush claim) is still this daemon's; false
    /// (nothing sealed) when any of them was sealed or published meanwhile.
    pub async fn seal_sms_group(
        &self,
        instance: &str,
        flush: &Lease,
        gateway_ids: &[&str],
        sealed_as: &str,
        ttl_secs: i64,
    ) -> Result<bool, RegistryError> {
        let ctx = format!("sealing held SMS {sealed_as} of channel {instance}");
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        super::lease::renew_in(&mut tx, self.sqlite, &NAMED, flush, ttl_secs).await?;
        let sql = format!(
            "UPDATE sms_pending SET sealed_as = $2 WHERE channel_instance = $1 \
             AND sealed_as IS NULL AND published_at IS NULL AND gateway_id IN ({})",
            super::register::numbered(3, gateway_ids.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(instance)
            .bind(sealed_as);
        for id in gateway_ids {
            query = query.bind(*id);
        }
        let n = query
            .execute(&mut *tx)
            .await
            .map_err(q(ctx.clone()))?
            .rows_affected();
        if n != gateway_ids.len() as u64 {
            tx.rollback().await.map_err(q(ctx))?;
            return Ok(false);
        }
        tx.commit().await.map_err(q(ctx))?;
        Ok(true)
    }

    /// Marks held SMS as published (by id, so one that arrived for the same
    /// group meanwhile stays for the next round) and forgets those published
    /// more than a week before `now`.
    pub async fn mark_sms_published(
        &self,
        instance: &str,
        gateway_ids: &[&str],
        now: DateTime<Utc>,
    ) -> Result<(), RegistryError> {
        let ctx = format!("held SMS of channel {instance}");
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        if !gateway_ids.is_empty() {
            let sql = format!(
                "UPDATE sms_pending SET published_at = $2 WHERE channel_instance = $1 AND gateway_id IN ({})",
                super::register::numbered(3, gateway_ids.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(instance)
                .bind(db_time(now));
            for id in gateway_ids {
                query = query.bind(*id);
            }
            query.execute(&mut *tx).await.map_err(q(ctx.clone()))?;
        }
        sqlx::query("DELETE FROM sms_pending WHERE channel_instance = $1 AND published_at < $2")
            .bind(instance)
            .bind(db_time(now - Duration::days(7)))
            .execute(&mut *tx)
            .await
            .map_err(q(ctx.clone()))?;
        tx.commit().await.map_err(q(ctx))
    }
}

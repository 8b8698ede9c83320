//! Storage for SMS held before registration (see the SMS channel): rows are
//! grouped, read whole, and deleted once the group was published as one item.

use sqlx::Row;

use super::{Registry, RegistryError, q};

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
}

impl Registry {
    /// Holds an SMS; a gateway's retry of the same message changes nothing.
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

    /// Every held SMS of a channel, oldest first.
    pub async fn held_sms(&self, instance: &str) -> Result<Vec<HeldSms>, RegistryError> {
        let ctx = format!("held SMS of channel {instance}");
        let rows = sqlx::query(
            "SELECT gateway_id, group_key, from_address, to_address, text, part_no, part_count, \
             received_at FROM sms_pending WHERE channel_instance = $1 \
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
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q(ctx))
    }

    /// Drops held SMS once they were published (by id, so one that arrived
    /// for the same group meanwhile stays for the next round).
    pub async fn release_sms(
        &self,
        instance: &str,
        gateway_ids: &[&str],
    ) -> Result<(), RegistryError> {
        if gateway_ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "DELETE FROM sms_pending WHERE channel_instance = $1 AND gateway_id IN ({})",
            super::register::numbered(2, gateway_ids.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(instance);
        for id in gateway_ids {
            query = query.bind(*id);
        }
        query
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(q(format!("held SMS of channel {instance}")))
    }
}

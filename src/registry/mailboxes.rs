//! What the e-mail channel keeps in the registry: per mailbox, where reading
//! stopped and which daemon holds it (so with several daemons each mailbox
//! is read by exactly one), and the bounces of our acknowledgements, which
//! are recorded on the item they concern instead of becoming new items.

use chrono::{DateTime, Duration, Utc};
use sqlx::Row;

use super::{Registry, RegistryError, db_time, insert_audit, q};

/// Where reading a mailbox stopped: mail with a UID above `last_uid` under
/// this `uid_validity` has not been handed on yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxPosition {
    pub uid_validity: u32,
    pub last_uid: u32,
}

/// A mailbox as the channels overview shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MailboxStatus {
    pub channel_instance: String,
    pub mailbox: String,
    pub uid_validity: i64,
    pub last_uid: i64,
    pub lease_holder: Option<String>,
    pub lease_until: Option<String>,
    /// The last failure (connection, login…), cleared by the next mail read.
    pub last_error: Option<String>,
    pub last_read_at: Option<String>,
}

impl Registry {
    /// Every mailbox the e-mail channels have opened.
    pub async fn mailbox_statuses(&self) -> Result<Vec<MailboxStatus>, RegistryError> {
        let ctx = "mailbox statuses";
        let rows = sqlx::query(
            "SELECT channel_instance, mailbox, uid_validity, last_uid, lease_holder, lease_until, \
             last_error, last_read_at FROM mailbox_state ORDER BY channel_instance, mailbox",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q(ctx))?;
        rows.iter()
            .map(|r| {
                Ok(MailboxStatus {
                    channel_instance: r.try_get("channel_instance")?,
                    mailbox: r.try_get("mailbox")?,
                    uid_validity: r.try_get("uid_validity")?,
                    last_uid: r.try_get("last_uid")?,
                    lease_holder: r.try_get("lease_holder")?,
                    lease_until: r.try_get("lease_until")?,
                    last_error: r.try_get("last_error")?,
                    last_read_at: r.try_get("last_read_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q(ctx))
    }

    /// Takes or renews the mailbox's lease for `holder` until `now + ttl`.
    /// False while another holder's lease runs.
    pub async fn lease_mailbox(
        &self,
        channel: &str,
        mailbox: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, RegistryError> {
        let ctx = format!("lease of mailbox {mailbox} of channel {channel}");
        sqlx::query(
            "INSERT INTO mailbox_state (channel_instance, mailbox, uid_validity, last_uid) \
             VALUES ($1, $2, 0, 0) ON CONFLICT (channel_instance, mailbox) DO NOTHING",
        )
        .bind(channel)
        .bind(mailbox)
        .execute(&self.pool)
        .await
        .map_err(q(ctx.clone()))?;
        let won = sqlx::query(
            "UPDATE mailbox_state SET lease_holder = $3, lease_until = $4 \
             WHERE channel_instance = $1 AND mailbox = $2 \
             AND (lease_holder IS NULL OR lease_holder = $3 OR lease_until < $5)",
        )
        .bind(channel)
        .bind(mailbox)
        .bind(holder)
        .bind(db_time(now + ttl))
        .bind(db_time(now))
        .execute(&self.pool)
        .await
        .map_err(q(ctx))?
        .rows_affected();
        Ok(won == 1)
    }

    /// Who holds the mailbox's lease and until when (as stored), if anyone.
    pub async fn mailbox_lease(
        &self,
        channel: &str,
        mailbox: &str,
    ) -> Result<Option<(String, String)>, RegistryError> {
        let ctx = format!("lease of mailbox {mailbox} of channel {channel}");
        let row = sqlx::query(
            "SELECT lease_holder, lease_until FROM mailbox_state \
             WHERE channel_instance = $1 AND mailbox = $2",
        )
        .bind(channel)
        .bind(mailbox)
        .fetch_optional(&self.pool)
        .await
        .map_err(q(ctx.clone()))?;
        let Some(row) = row else { return Ok(None) };
        let holder: Option<String> = row.try_get(0).map_err(q(ctx.clone()))?;
        let until: Option<String> = row.try_get(1).map_err(q(ctx))?;
        Ok(holder.map(|h| (h, until.unwrap_or_default())))
    }

    /// Gives the lease up (on shutdown), so another daemon need not wait for it to expire.
    pub async fn release_mailbox(
        &self,
        channel: &str,
        mailbox: &str,
        holder: &str,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "UPDATE mailbox_state SET lease_holder = NULL, lease_until = NULL \
             WHERE channel_instance = $1 AND mailbox = $2 AND lease_holder = $3",
        )
        .bind(channel)
        .bind(mailbox)
        .bind(holder)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(q(format!(
            "release of mailbox {mailbox} of channel {channel}"
        )))
    }

    /// Where reading stopped (zeros for a mailbox never read).
    pub async fn mailbox_position(
        &self,
        channel: &str,
        mailbox: &str,
    ) -> Result<MailboxPosition, RegistryError> {
        let ctx = format!("position in mailbox {mailbox} of channel {channel}");
        let row = sqlx::query(
            "SELECT uid_validity, last_uid FROM mailbox_state \
             WHERE channel_instance = $1 AND mailbox = $2",
        )
        .bind(channel)
        .bind(mailbox)
        .fetch_optional(&self.pool)
        .await
        .map_err(q(ctx.clone()))?;
        let Some(row) = row else {
            return Ok(MailboxPosition {
                uid_validity: 0,
                last_uid: 0,
            });
        };
        let validity: i64 = row.try_get(0).map_err(q(ctx.clone()))?;
        let last: i64 = row.try_get(1).map_err(q(ctx))?;
        Ok(MailboxPosition {
            uid_validity: u32::try_from(validity).unwrap_or(0),
            last_uid: u32::try_from(last).unwrap_or(0),
        })
    }

    /// Records that everything up to `pos.last_uid` was handed on, only
    /// while `holder` still holds the lease (a daemon that lost it must not
    /// move the position of the one that took over).
    pub async fn advance_mailbox(
        &self,
        channel: &str,
        mailbox: &str,
        holder: &str,
        pos: MailboxPosition,
    ) -> Result<bool, RegistryError> {
        let moved = sqlx::query(
            "UPDATE mailbox_state SET uid_validity = $4, last_uid = $5, last_read_at = $6, \
             last_error = NULL \
             WHERE channel_instance = $1 AND mailbox = $2 AND lease_holder = $3",
        )
        .bind(channel)
        .bind(mailbox)
        .bind(holder)
        .bind(i64::from(pos.uid_validity))
        .bind(i64::from(pos.last_uid))
        .bind(db_time(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(q(format!(
            "position in mailbox {mailbox} of channel {channel}"
        )))?
        .rows_affected();
        Ok(moved == 1)
    }

    /// The mailbox's last error, shown in the channels overview.
    pub async fn mailbox_error(
        &self,
        channel: &str,
        mailbox: &str,
        error: &str,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "UPDATE mailbox_state SET last_error = $3 WHERE channel_instance = $1 AND mailbox = $2",
        )
        .bind(channel)
        .bind(mailbox)
        .bind(error)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(q(format!(
            "error of mailbox {mailbox} of channel {channel}"
        )))
    }

    /// Records a delivery failure report for our answer to `item_id`, once
    /// per report (`report_key`). False when the item is unknown.
    pub async fn record_bounce(
        &self,
        item_id: &str,
        report_key: &str,
        detail: serde_json::Value,
    ) -> Result<bool, RegistryError> {
        let ctx = format!("bounce of the answer to item {item_id}");
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        let known: i64 = sqlx::query("SELECT COUNT(*) FROM items WHERE id = $1")
            .bind(item_id)
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(q(ctx.clone()))?;
        if known == 0 {
            return Ok(false);
        }
        let seen: i64 = sqlx::query(
            "SELECT COUNT(*) FROM audit_log WHERE item_id = $1 AND action = 'reply_bounced' \
             AND detail LIKE $2",
        )
        .bind(item_id)
        .bind(format!("%\"report\":\"{report_key}\"%"))
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(q(ctx.clone()))?;
        if seen == 0 {
            let mut detail = detail;
            if let Some(obj) = detail.as_object_mut() {
                obj.insert("report".into(), report_key.into());
            }
            insert_audit(&mut tx, item_id, "pietura", "reply_bounced", &detail, &ctx).await?;
        }
        tx.commit().await.map_err(q(ctx))?;
        Ok(true)
    }
}

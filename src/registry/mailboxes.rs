//! What the e-mail channel keeps in the registry: per mailbox, where reading
//! stopped and which daemon holds it (named work of the one leased-work
//! primitive, [`super::lease`], so with several daemons each mailbox is read
//! by exactly one), and the bounces of our acknowledgements, which are
//! recorded on the item they concern instead of becoming new items.

use chrono::Utc;
use sqlx::Row;

use super::lease::{Lease, NAMED};
use super::{Registry, RegistryError, db_time, insert_audit, q};

/// The name a mailbox is leased under ([`super::lease::NAMED`]).
pub fn mailbox_work(channel: &str, mailbox: &str) -> String {
    format!("mailbox:{channel}:{mailbox}")
}

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
            "SELECT m.channel_instance, m.mailbox, m.uid_validity, m.last_uid, w.lease_holder, \
             w.lease_until, m.last_error, m.last_read_at FROM mailbox_state m \
             LEFT JOIN work_leases w ON w.name = 'mailbox:' || m.channel_instance || ':' || m.mailbox \
             ORDER BY m.channel_instance, m.mailbox",
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

    /// Takes the mailbox's lease for `ttl_secs` (database clock), or renews
    /// `held`, this daemon's claim; None while another daemon's lease runs.
    pub async fn lease_mailbox(
        &self,
        channel: &str,
        mailbox: &str,
        held: Option<&Lease>,
        ttl_secs: i64,
    ) -> Result<Option<Lease>, RegistryError> {
        let ctx = format!("lease of mailbox {mailbox} of channel {channel}");
        if let Some(lease) = held {
            match self.renew(&NAMED, lease, ttl_secs).await {
                Ok(()) => return Ok(Some(lease.clone())),
                Err(RegistryError::LeaseLost { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        sqlx::query(
            "INSERT INTO mailbox_state (channel_instance, mailbox, uid_validity, last_uid) \
             VALUES ($1, $2, 0, 0) ON CONFLICT (channel_instance, mailbox) DO NOTHING",
        )
        .bind(channel)
        .bind(mailbox)
        .execute(&self.pool)
        .await
        .map_err(q(ctx))?;
        self.claim_named(&mailbox_work(channel, mailbox), ttl_secs)
            .await
    }

    /// Who holds the mailbox's lease and until when (database time), if anyone.
    pub async fn mailbox_lease(
        &self,
        channel: &str,
        mailbox: &str,
    ) -> Result<Option<(String, String)>, RegistryError> {
        self.named_holder(&mailbox_work(channel, mailbox)).await
    }

    /// Gives the lease up (on shutdown), so another daemon need not wait for it to expire.
    pub async fn release_mailbox(&self, lease: &Lease) -> Result<(), RegistryError> {
        self.release(&NAMED, std::slice::from_ref(lease)).await
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
    /// while `lease` still holds the mailbox (a daemon that lost it must
    /// not move the position of the one that took over); renews the lease.
    pub async fn advance_mailbox(
        &self,
        channel: &str,
        mailbox: &str,
        lease: &Lease,
        ttl_secs: i64,
        pos: MailboxPosition,
    ) -> Result<bool, RegistryError> {
        let ctx = format!("position in mailbox {mailbox} of channel {channel}");
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        match super::lease::renew_in(&mut tx, self.sqlite, &NAMED, lease, ttl_secs).await {
            Ok(()) => {}
            Err(RegistryError::LeaseLost { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        sqlx::query(
            "UPDATE mailbox_state SET uid_validity = $3, last_uid = $4, last_read_at = $5, \
             last_error = NULL WHERE channel_instance = $1 AND mailbox = $2",
        )
        .bind(channel)
        .bind(mailbox)
        .bind(i64::from(pos.uid_validity))
        .bind(i64::from(pos.last_uid))
        .bind(db_time(Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        tx.commit().await.map_err(q(ctx))?;
        Ok(true)
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
        // The item's row is locked (PostgreSQL; SQLite has one writer), so
        // the same report handled twice at once is recorded once.
        let lock = if self.sqlite { "" } else { " FOR UPDATE" };
        let known = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM items WHERE id = $1{lock}"
        )))
        .bind(item_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        if known.is_none() {
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

//! The replies table: answers waiting to go back on the channel an item came
//! by. A replier claims rows of its channel ([`lease::REPLIES`], so two
//! daemons never send the same answer at once), then marks each done or
//! schedules its next attempt, both refused when its claim was taken over.

use chrono::{Duration, Utc};
use serde::Serialize;
use sqlx::Row;

use super::lease::{self, Lease};
use super::{Registry, RegistryError, db_time, insert_audit, q};

/// The outcome prefix of an answer whose sender died mid-send: it may
/// have gone out, and it is not sent again.
pub const UNCERTAIN: &str = "uncertain: ";

/// An answer to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingReply {
    pub item_id: String,
    pub registration_number: String,
    pub channel_instance: String,
    pub address: String,
    pub attempts: i64,
    /// The deadline the answer names: forwarding, else reply.
    pub due: Option<String>,
    /// When an earlier sender started sending it and never wrote what
    /// became of it (it died mid-send): it may have gone out.
    pub interrupted_since: Option<String>,
    /// Set when this is the item's answer (an outgoing document,
    /// [`super::answers`]), not the acknowledgement of its receipt.
    pub answer_id: Option<String>,
    /// The sender's claim on the answer.
    #[serde(skip)]
    pub lease: Lease,
}

/// Where an item's answer stands, for the item view: waiting (with the
/// last error and the next attempt), sent, or not sent and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnswerState {
    /// `waiting`, `sent`, `not_sent`, or `uncertain` (its sender died while
    /// sending: it may have gone out, and was not sent again).
    pub state: &'static str,
    /// Why it was not sent (suppressed or refused), or why it is uncertain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub channel_instance: String,
    pub address: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub done_at: Option<String>,
    pub outcome: Option<String>,
}

impl Registry {
    /// Claims up to `limit` due answers of one channel instance for
    /// `ttl_secs` (database clock).
    pub async fn claim_replies(
        &self,
        channel_instance: &str,
        limit: i64,
        ttl_secs: i64,
    ) -> Result<Vec<PendingReply>, RegistryError> {
        let ctx = "replies due";
        let leases = self
            .claim(&lease::REPLIES, Some(channel_instance), limit, ttl_secs)
            .await?;
        let rows = self
            .rows_of_leases(
                &leases,
                "SELECT r.item_id, i.registration_number, r.channel_instance, r.address, r.attempts, \
                 COALESCE(i.forward_due, i.reply_due) AS due, r.sending_since, r.answer_id \
                 FROM replies r JOIN items i ON i.id = r.item_id \
                 WHERE r.item_id IN ({keys}) ORDER BY r.next_attempt_at",
                ctx,
            )
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for (r, lease) in rows {
            let item_id: String = r.try_get("item_id").map_err(q(ctx))?;
            claimed.push(PendingReply {
                item_id,
                registration_number: r.try_get("registration_number").map_err(q(ctx))?,
                channel_instance: r.try_get("channel_instance").map_err(q(ctx))?,
                address: r.try_get("address").map_err(q(ctx))?,
                attempts: r.try_get("attempts").map_err(q(ctx))?,
                due: r.try_get("due").map_err(q(ctx))?,
                interrupted_since: r.try_get("sending_since").map_err(q(ctx))?,
                answer_id: r.try_get("answer_id").map_err(q(ctx))?,
                lease,
            });
        }
        Ok(claimed)
    }

    /// Channel instances with answers due that are not in `running`: no
    /// sender on this daemon claims them.
    pub async fn replies_due_elsewhere(
        &self,
        running: &[String],
    ) -> Result<Vec<String>, RegistryError> {
        let now = lease::db_now_plus(self.sqlite, 0);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT channel_instance FROM replies \
             WHERE done_at IS NULL AND next_attempt_at <= {now}"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(q("replies due"))?;
        let mut out = Vec::new();
        for r in &rows {
            let channel: String = r.try_get(0).map_err(q("replies due"))?;
            if !running.contains(&channel) {
                out.push(channel);
            }
        }
        Ok(out)
    }

    /// Marks the answer as being sent, just before its gateway is called
    /// (refused when the claim was taken over): should this daemon die
    /// before the outcome is written, the next claimant does not send it
    /// again ([`PendingReply::interrupted_since`]).
    pub async fn reply_sending(&self, reply: &PendingReply) -> Result<(), RegistryError> {
        let ctx = format!("reply to item {}", reply.registration_number);
        let now = lease::db_now_plus(self.sqlite, 0);
        let marked = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE replies SET sending_since = {now} \
             WHERE item_id = $1 AND lease_token = $2 AND done_at IS NULL"
        )))
        .bind(&reply.item_id)
        .bind(reply.lease.token)
        .execute(&self.pool)
        .await
        .map_err(q(ctx))?
        .rows_affected();
        if marked == 1 {
            Ok(())
        } else {
            Err(RegistryError::LeaseLost {
                what: lease::REPLIES.name,
                key: reply.item_id.clone(),
                token: reply.lease.token,
            })
        }
    }

    /// Records the answer as sent, or as not sent and why (`outcome`;
    /// `uncertain: …` when its sender died mid-send), with its audit line.
    pub async fn reply_done(
        &self,
        reply: &PendingReply,
        outcome: &str,
        detail: serde_json::Value,
    ) -> Result<(), RegistryError> {
        let ctx = format!("reply to item {}", reply.registration_number);
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        lease::fence_one(&mut tx, &lease::REPLIES, &reply.lease).await?;
        sqlx::query(
            "UPDATE replies SET done_at = $2, outcome = $3, attempts = attempts + 1 \
             WHERE item_id = $1 AND done_at IS NULL",
        )
        .bind(&reply.item_id)
        .bind(db_time(Utc::now()))
        .bind(outcome)
        .execute(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        let action = if outcome == "sent" {
            "replied"
        } else if outcome.starts_with(UNCERTAIN) {
            "reply_uncertain"
        } else {
            "reply_not_sent"
        };
        insert_audit(&mut tx, &reply.item_id, "pietura", action, &detail, &ctx).await?;
        tx.commit().await.map_err(q(ctx))
    }

    /// Records a failed attempt and ends the claim; the reply is tried
    /// again `after` from now (database clock). Refused when the claim was
    /// taken over since.
    pub async fn reply_failed(
        &self,
        reply: &PendingReply,
        error: &str,
        after: Duration,
    ) -> Result<(), RegistryError> {
        let ctx = format!("reply to item {}", reply.registration_number);
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        lease::fence_one(&mut tx, &lease::REPLIES, &reply.lease).await?;
        let next = lease::db_now_plus(self.sqlite, after.num_seconds());
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE replies SET attempts = attempts + 1, last_error = $2, \
             next_attempt_at = {next}, sending_since = NULL \
             WHERE item_id = $1 AND done_at IS NULL"
        )))
        .bind(&reply.item_id)
        .bind(error)
        .execute(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        tx.commit().await.map_err(q(ctx))
    }

    /// The answer of one item, if its channel answers.
    pub async fn answer_state(&self, item_id: &str) -> Result<Option<AnswerState>, RegistryError> {
        let ctx = format!("answer of item {item_id}");
        let row = sqlx::query(
            "SELECT channel_instance, address, attempts, last_error, next_attempt_at, done_at, \
             outcome FROM replies WHERE item_id = $1",
        )
        .bind(item_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q(ctx.clone()))?;
        let Some(r) = row else { return Ok(None) };
        let done_at: Option<String> = r.try_get("done_at").map_err(q(ctx.clone()))?;
        let next: String = r.try_get("next_attempt_at").map_err(q(ctx.clone()))?;
        let outcome: Option<String> = r.try_get("outcome").map_err(q(ctx.clone()))?;
        let (state, reason) = match (&done_at, outcome.as_deref()) {
            (None, _) => ("waiting", None),
            (Some(_), Some("sent")) => ("sent", None),
            (Some(_), Some(o)) if o.starts_with(UNCERTAIN) => (
                "uncertain",
                Some(o.trim_start_matches(UNCERTAIN).to_string()),
            ),
            (Some(_), other) => (
                "not_sent",
                other.map(|o| o.split_once(": ").map_or(o, |(_, why)| why).to_string()),
            ),
        };
        Ok(Some(AnswerState {
            state,
            reason,
            channel_instance: r.try_get("channel_instance").map_err(q(ctx.clone()))?,
            address: r.try_get("address").map_err(q(ctx.clone()))?,
            attempts: r.try_get("attempts").map_err(q(ctx.clone()))?,
            last_error: r.try_get("last_error").map_err(q(ctx.clone()))?,
            next_attempt_at: done_at.is_none().then_some(next),
            outcome,
            done_at,
        }))
    }

    /// Takes one answer to `address` against its daily `limit`; false when
    /// the limit is reached. Atomic (one conditional upsert), so daemons
    /// racing for the same address never exceed it together.
    pub async fn take_reply_quota(
        &self,
        address: &str,
        day: chrono::NaiveDate,
        limit: i64,
    ) -> Result<bool, RegistryError> {
        let taken = sqlx::query(
            "INSERT INTO reply_quota (address, day, taken) VALUES ($1, $2, 1) \
             ON CONFLICT (address, day) DO UPDATE SET taken = reply_quota.taken + 1 \
             WHERE reply_quota.taken < $3",
        )
        .bind(address)
        .bind(day.to_string())
        .bind(limit)
        .execute(&self.pool)
        .await
        .map_err(q(format!("answer quota of {address}")))?
        .rows_affected();
        Ok(taken == 1 && limit > 0)
    }

    /// Gives back an answer taken by [`Registry::take_reply_quota`] that was not sent.
    pub async fn return_reply_quota(
        &self,
        address: &str,
        day: chrono::NaiveDate,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "UPDATE reply_quota SET taken = taken - 1 WHERE address = $1 AND day = $2 AND taken > 0",
        )
        .bind(address)
        .bind(day.to_string())
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(q(format!("answer quota of {address}")))
    }
}

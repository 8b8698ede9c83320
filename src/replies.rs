//! Answers on the channel an item came by. Registration writes a row to
//! `replies` in the same transaction as the item; this task hands each row
//! to its channel's [`Replier`] and records the outcome. A gateway that is
//! down is tried again with backoff; nothing is sent twice by two daemons
//! (rows are leased), and a crash after the gateway accepted but before the
//! row was marked sends that one answer again (at least once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::registry::Registry;
use crate::registry::replies::PendingReply;

/// What became of one answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyOutcome {
    /// The gateway accepted it; `detail` goes to the audit log.
    Sent(serde_json::Value),
    /// Deliberately not sent (a limit, an address that cannot receive).
    Suppressed(String),
}

/// Why an answer could not be sent now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Worth trying again later (gateway down, timeout, 5xx).
    #[error("{0}")]
    Transient(String),
    /// No retry will help (the gateway refused this answer).
    #[error("{0}")]
    Permanent(String),
}

/// At most `per_day` answers to one address a calendar day; `setting` names
/// the channel file's key, for the reason recorded when one is held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyLimit {
    pub per_day: i64,
    pub setting: &'static str,
}

/// A channel's way of answering.
#[async_trait]
pub trait Replier: Send + Sync {
    async fn reply(&self, reply: &PendingReply) -> Result<ReplyOutcome, ReplyError>;

    /// The per-address daily limit, enforced here for every channel (and
    /// across daemons) before [`Replier::reply`] is called.
    fn daily_limit(&self) -> Option<DailyLimit> {
        None
    }
}

/// Backoff after `attempts` failures: 15 s doubling up to an hour.
fn backoff(attempts: i64) -> chrono::Duration {
    let secs = 15_i64.saturating_mul(1 << attempts.clamp(0, 8));
    chrono::Duration::seconds(secs.min(3600))
}

/// Sends due answers until `shutdown`; `repliers` by channel instance.
pub async fn run(
    registry: Registry,
    repliers: HashMap<String, Arc<dyn Replier>>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match registry.claim_replies(Utc::now(), 50).await {
            Ok(batch) => {
                for reply in batch {
                    let span = tracing::info_span!("reply", item = %reply.item_id, number = %reply.registration_number, channel = %reply.channel_instance);
                    send_one(&registry, &repliers, &reply)
                        .instrument(span)
                        .await;
                }
            }
            Err(e) => tracing::warn!("replies: {e}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

async fn send_one(
    registry: &Registry,
    repliers: &HashMap<String, Arc<dyn Replier>>,
    reply: &PendingReply,
) {
    let Some(replier) = repliers.get(&reply.channel_instance) else {
        // The channel is not configured here (any more): keep the row.
        let next = Utc::now() + backoff(reply.attempts);
        let why = format!(
            "channel {} is not running on this daemon",
            reply.channel_instance
        );
        tracing::warn!("answer waits: {why}");
        let _ = registry.reply_failed(reply, &why, next).await;
        return;
    };
    // The limit is taken before sending and given back when nothing was sent.
    let today = Utc::now()
        .with_timezone(&chrono_tz::Europe::Riga)
        .date_naive();
    let quota = match replier.daily_limit() {
        None => None,
        Some(limit) => match registry
            .take_reply_quota(&reply.address, today, limit.per_day)
            .await
        {
            Ok(true) => Some(limit),
            Ok(false) => {
                let why = format!(
                    "{} answers to this address today already ({} = {})",
                    limit.per_day, limit.setting, limit.per_day
                );
                tracing::info!("answer not sent: {why}");
                let outcome = format!("suppressed: {why}");
                let detail = serde_json::json!({ "reason": why });
                if let Err(e) = registry.reply_done(reply, &outcome, detail).await {
                    tracing::error!("answer outcome not recorded: {e}");
                }
                return;
            }
            Err(e) => {
                let next = Utc::now() + backoff(reply.attempts);
                tracing::warn!("answer waits, its daily limit cannot be checked: {e}");
                let _ = registry.reply_failed(reply, &e.to_string(), next).await;
                return;
            }
        },
    };
    let result = replier.reply(reply).await;
    if quota.is_some()
        && !matches!(result, Ok(ReplyOutcome::Sent(_)))
        && let Err(e) = registry.return_reply_quota(&reply.address, today).await
    {
        tracing::warn!("an unsent answer still counts against today's limit: {e}");
    }
    let recorded = match result {
        Ok(ReplyOutcome::Sent(detail)) => {
            tracing::info!("answer sent");
            registry.reply_done(reply, "sent", detail).await
        }
        Ok(ReplyOutcome::Suppressed(why)) => {
            tracing::info!("answer not sent: {why}");
            let outcome = format!("suppressed: {why}");
            registry
                .reply_done(reply, &outcome, serde_json::json!({ "reason": why }))
                .await
        }
        Err(ReplyError::Permanent(why)) => {
            tracing::error!("answer refused by the gateway, not retried: {why}");
            let outcome = format!("failed: {why}");
            registry
                .reply_done(reply, &outcome, serde_json::json!({ "error": why }))
                .await
        }
        Err(ReplyError::Transient(why)) => {
            let next = Utc::now() + backoff(reply.attempts);
            tracing::warn!(next = %next, "answer not sent, will retry: {why}");
            registry.reply_failed(reply, &why, next).await
        }
    };
    if let Err(e) = recorded {
        tracing::error!(
            "answer outcome not recorded (the lease expires and it is tried again): {e}"
        );
    }
}

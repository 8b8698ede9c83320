//! Answers on the channel an item came by. Registration writes a row to
//! `replies` in the same transaction as the item; this task hands each row
//! to its channel's [`Replier`] and records the outcome. Each channel is
//! served on its own (a hung SMTP relay does not hold up SMS answers). A
//! gateway that is down is tried again with backoff. Two daemons never send
//! the same answer: a few rows at a time are claimed on the database's clock
//! (`registry::lease`), each claim renewed before its send, and one send is
//! cut off well before its claim could run out, so a slow gateway never
//! outlives a claim; an outcome whose claim was taken over is refused.
//!
//! An answer goes out at most once: it is marked as being sent just before
//! its gateway is called. A daemon that dies before the outcome is written
//! leaves the mark; whoever claims the answer next does not send it again
//! but records it as `uncertain` (it may have gone out), on the item's
//! audit log and the desk, for the office to check. A gateway that refuses
//! or fails to answer in time is tried again, as before.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::registry::replies::PendingReply;
use crate::registry::{Registry, lease};

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
    crate::backoff::doubling_chrono(
        std::time::Duration::from_secs(15),
        attempts,
        std::time::Duration::from_secs(3600),
    )
}

/// How answers are claimed and how long one send may take.
#[derive(Debug, Clone, Copy)]
pub struct ReplyTiming {
    /// Rows claimed at once per channel.
    pub batch: i64,
    /// Seconds (database clock) a claim runs from its last renewal.
    pub claim_secs: i64,
    /// One send is abandoned (and retried later) after this: shorter than
    /// the claim, so a slow gateway never outlives it.
    pub send_limit: Duration,
    /// Pause when a channel has nothing due.
    pub poll: Duration,
}

impl ReplyTiming {
    /// How long an outcome may be written again after its send: half of
    /// what surely remains of the claim (renewed just before the send).
    fn record_window(&self) -> Duration {
        let claim = Duration::from_secs(u64::try_from(self.claim_secs).unwrap_or(0));
        claim.saturating_sub(self.send_limit) / 2
    }
}

impl Default for ReplyTiming {
    fn default() -> Self {
        Self {
            batch: 5,
            claim_secs: 180,
            send_limit: Duration::from_secs(120),
            poll: Duration::from_secs(1),
        }
    }
}

/// Sends due answers until `shutdown`, each channel instance of `repliers`
/// on its own.
pub async fn run(
    registry: Registry,
    repliers: HashMap<String, Arc<dyn Replier>>,
    timing: ReplyTiming,
    shutdown: CancellationToken,
) {
    let running: Vec<String> = repliers.keys().cloned().collect();
    // Dropped with this task, so the senders stop with it.
    let mut senders = tokio::task::JoinSet::new();
    for (channel, replier) in repliers {
        senders.spawn(serve_channel(
            registry.clone(),
            channel,
            replier,
            timing,
            shutdown.clone(),
        ));
    }
    senders.spawn(watch_unserved(registry, running, shutdown));
    while let Some(done) = senders.join_next().await {
        if let Err(e) = done {
            tracing::error!("answer sender stopped: {e}");
        }
    }
}

/// Answers of one channel instance, a few claimed at a time.
async fn serve_channel(
    registry: Registry,
    channel: String,
    replier: Arc<dyn Replier>,
    timing: ReplyTiming,
    shutdown: CancellationToken,
) {
    loop {
        let batch = match registry
            .claim_replies(&channel, timing.batch, timing.claim_secs)
            .await
        {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(channel = %channel, "replies: {e}");
                Vec::new()
            }
        };
        let full = batch.len() as i64 >= timing.batch;
        for (i, reply) in batch.iter().enumerate() {
            if shutdown.is_cancelled() {
                let left: Vec<_> = batch[i..].iter().map(|r| r.lease.clone()).collect();
                if let Err(e) = registry.release(&lease::REPLIES, &left).await {
                    tracing::warn!(
                        "answer claims not given back (they run out by themselves): {e}"
                    );
                }
                return;
            }
            let span = tracing::info_span!("reply", item = %reply.item_id, number = %reply.registration_number, channel = %reply.channel_instance);
            // The claim runs its full time from here, whatever the answers
            // before this one took.
            if let Err(e) = registry
                .renew(&lease::REPLIES, &reply.lease, timing.claim_secs)
                .await
            {
                span.in_scope(|| tracing::warn!("answer skipped: {e}"));
                continue;
            }
            send_one(
                &registry,
                replier.as_ref(),
                reply,
                timing.send_limit,
                timing.record_window(),
            )
            .instrument(span)
            .await;
        }
        if !full {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(timing.poll) => {}
            }
        }
    }
}

/// Says (once a change) which channels have answers waiting that no sender
/// of this daemon serves: another daemon may run them, or none does.
async fn watch_unserved(registry: Registry, running: Vec<String>, shutdown: CancellationToken) {
    let mut said: Vec<String> = Vec::new();
    loop {
        if let Ok(waiting) = registry.replies_due_elsewhere(&running).await
            && waiting != said
        {
            for channel in waiting.iter().filter(|c| !said.contains(c)) {
                tracing::warn!(
                    channel = %channel,
                    "answers of channel {channel} wait: it is not running on this daemon"
                );
            }
            said = waiting;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

async fn send_one(
    registry: &Registry,
    replier: &dyn Replier,
    reply: &PendingReply,
    send_limit: Duration,
    record_window: Duration,
) {
    // The limit is taken before sending and given back when nothing was sent.
    let today = Utc::now()
        .with_timezone(&chrono_tz::Europe::Riga)
        .date_naive();
    if let Some(since) = &reply.interrupted_since {
        // Its sender died mid-send: it may have gone out; never twice.
        let why = format!(
            "a daemon stopped while sending it (since {since}); it may have gone out and is not sent again"
        );
        tracing::warn!("answer not sent again: {why}");
        let outcome = format!("{}{why}", crate::registry::replies::UNCERTAIN);
        let detail = serde_json::json!({ "reason": why });
        if let Err(e) = registry.reply_done(reply, &outcome, detail).await {
            tracing::error!("answer outcome not recorded: {e}");
        }
        crate::metrics::reply_uncertain();
        return;
    }
    // The daily limit holds back automatic answers, never an item's answer.
    let limit = replier.daily_limit().filter(|_| reply.answer_id.is_none());
    let quota = match limit {
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
                tracing::warn!("answer waits, its daily limit cannot be checked: {e}");
                let _ = registry
                    .reply_failed(reply, &e.to_string(), backoff(reply.attempts))
                    .await;
                return;
            }
        },
    };
    if let Err(e) = registry.reply_sending(reply).await {
        tracing::warn!("answer not sent now: {e}");
        if quota.is_some()
            && let Err(e) = registry.return_reply_quota(&reply.address, today).await
        {
            tracing::warn!("an unsent answer still counts against today's limit: {e}");
        }
        return;
    }
    let result = match tokio::time::timeout(send_limit, replier.reply(reply)).await {
        Ok(result) => result,
        Err(_) => Err(ReplyError::Transient(format!(
            "the gateway did not finish within {} s; abandoned before this daemon's claim ran out (it may have gone out)",
            send_limit.as_secs()
        ))),
    };
    if quota.is_some()
        && !matches!(result, Ok(ReplyOutcome::Sent(_)))
        && let Err(e) = registry.return_reply_quota(&reply.address, today).await
    {
        tracing::warn!("an unsent answer still counts against today's limit: {e}");
    }
    let outcome = match result {
        Ok(ReplyOutcome::Sent(detail)) => {
            tracing::info!("answer sent");
            Outcome::Done("sent".into(), detail)
        }
        Ok(ReplyOutcome::Suppressed(why)) => {
            tracing::info!("answer not sent: {why}");
            let detail = serde_json::json!({ "reason": why });
            Outcome::Done(format!("suppressed: {why}"), detail)
        }
        Err(ReplyError::Permanent(why)) => {
            tracing::error!("answer refused by the gateway, not retried: {why}");
            let detail = serde_json::json!({ "error": why });
            Outcome::Done(format!("failed: {why}"), detail)
        }
        Err(ReplyError::Transient(why)) => {
            let after = backoff(reply.attempts);
            tracing::warn!(
                retry_in_secs = after.num_seconds(),
                "answer not sent, will retry: {why}"
            );
            Outcome::Retry(why, after)
        }
    };
    // An answer that went out must not go out again because the database
    // was away for a moment when its outcome was written (it would be sent
    // again once the claim ran out): the outcome is written again while
    // the claim surely holds.
    let started = tokio::time::Instant::now();
    let mut failures = 0;
    loop {
        let recorded = match &outcome {
            Outcome::Done(text, detail) => registry.reply_done(reply, text, detail.clone()).await,
            Outcome::Retry(why, after) => registry.reply_failed(reply, why, *after).await,
        };
        let pause =
            crate::backoff::doubling(Duration::from_millis(200), failures, Duration::from_secs(5));
        match recorded {
            Ok(()) => return,
            Err(e) if e.is_transient() && started.elapsed() + pause < record_window => {
                tracing::warn!("writing the answer's outcome failed, again in {pause:?}: {e}");
                failures += 1;
                tokio::time::sleep(pause).await;
            }
            Err(e) => {
                tracing::error!(
                    "answer outcome not recorded (unless another daemon took it over, it is tried again when the claim runs out): {e}"
                );
                return;
            }
        }
    }
}

/// What is written once an answer was tried.
enum Outcome {
    /// Done: sent, suppressed or refused for good (outcome text, audit detail).
    Done(String, serde_json::Value),
    /// Not sent this time: why, and when to try again.
    Retry(String, chrono::Duration),
}

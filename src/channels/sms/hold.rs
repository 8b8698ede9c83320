//! SMS held before registration: the parts of a concatenated SMS that the
//! gateway did not join, and (when `join_window_seconds` is set) several SMS
//! from one number. Each is stored before the gateway gets its 2xx; a group
//! becomes one item when it is complete or its window has closed, and is
//! published with the first SMS's id as idempotency key, so a crash between
//! publishing and marking it published registers it once. Published SMS are
//! kept a week, so a gateway retrying any of them then holds nothing new.
//!
//! One daemon at a time flushes a channel's held SMS (a claim of the
//! leased-work primitive, renewed while it publishes), and a group is sealed
//! before it is published: after a crash the sealed rows are published again
//! exactly as they were, and an SMS held later starts a group of its own
//! (published under its own id) instead of joining one whose key is taken.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::{Accepted, InboundSms, Refusal, Sms};
use crate::channels::context::{HeldSms, Lease, db_time, parse_db_time};
use crate::message::IntakeMessage;

pub(super) fn default_part_timeout() -> u64 {
    600
}

/// How long a channel's flush claim lasts unless renewed (renewed while
/// the flush publishes).
const FLUSH_CLAIM_SECS: i64 = 30;

impl Sms {
    /// Stores one SMS (or part) for later; the gateway may now get its 2xx.
    pub(super) async fn hold(
        &self,
        sms: &InboundSms,
        msg: &IntakeMessage,
    ) -> Result<Accepted, Refusal> {
        let from = msg
            .meta::<super::SmsMeta>()
            .map(|m| m.from)
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| sms.from.clone());
        let (group_key, part_no, part_count) = match &sms.part {
            Some(p) => (
                format!("udh:{from}:{}", p.reference),
                i64::from(p.part),
                i64::from(p.parts),
            ),
            None => (format!("win:{from}"), 1, 1),
        };
        let held = HeldSms {
            gateway_id: sms.gateway_id.trim().to_string(),
            group_key,
            from_address: from,
            to_address: sms.to.clone(),
            // As sent: a part may end inside a word or on a space, so the
            // text is normalised once joined, not part by part.
            text: sms.text.clone(),
            part_no,
            part_count,
            received_at: db_time(msg.received_at),
            sealed_as: None,
        };
        self.ctx
            .state
            .hold_sms(&held)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        tracing::info!(channel = %self.cfg.id, gateway_id = %held.gateway_id, group = %held.group_key, "held until its group is complete");
        Ok(Accepted::Held)
    }

    /// Publishes every group that is ready at `now`, if no other daemon
    /// is flushing this channel; returns how many.
    pub async fn flush_held(&self, now: DateTime<Utc>) -> Result<usize, String> {
        let state = &self.ctx.state;
        let Some(lease) = state
            .claim("sms-flush", "", FLUSH_CLAIM_SECS)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(0);
        };
        let renewal = state.renewal(&lease, FLUSH_CLAIM_SECS);
        let flushed = self.flush_groups(now, &lease).await;
        renewal.stop();
        // Given back at once: the next round may be another daemon's.
        if let Err(e) = state.release(&lease).await {
            tracing::warn!(channel = %self.cfg.id, "flush claim not given back ({e}); it runs out by itself");
        }
        flushed
    }

    /// The flush under this daemon's claim `lease`.
    async fn flush_groups(&self, now: DateTime<Utc>, lease: &Lease) -> Result<usize, String> {
        let held = self.ctx.state.held_sms().await.map_err(|e| e.to_string())?;
        // A sealed group (published, not yet marked: a crash in between) is
        // published again exactly as sealed; the rest group by their key.
        let mut groups: BTreeMap<String, Vec<&HeldSms>> = BTreeMap::new();
        for h in &held {
            let key = match &h.sealed_as {
                Some(first) => format!("sealed:{first}"),
                None => h.group_key.clone(),
            };
            groups.entry(key).or_default().push(h);
        }
        let mut published = 0;
        for (key, mut rows) in groups {
            let sealed = rows.first().and_then(|r| r.sealed_as.clone());
            let first_at = rows
                .iter()
                .filter_map(|r| parse_db_time(&r.received_at))
                .min()
                .unwrap_or(now);
            let age = now - first_at;
            let parts = rows
                .first()
                .is_some_and(|r| r.group_key.starts_with("udh:"));
            // Every row is marked with the group, a part sent twice under
            // two gateway ids included.
            let ids: Vec<&str> = rows.iter().map(|r| r.gateway_id.as_str()).collect();
            let incomplete = if parts {
                rows.sort_by_key(|r| r.part_no);
                rows.dedup_by_key(|r| r.part_no);
                let expected = rows.first().map_or(0, |r| r.part_count);
                let complete = rows.len() as i64 == expected;
                if sealed.is_none()
                    && !complete
                    && age < Duration::seconds(self.cfg.part_timeout_seconds as i64)
                {
                    continue;
                }
                !complete
            } else {
                if sealed.is_none() && age < Duration::seconds(self.cfg.join_window_seconds as i64)
                {
                    continue;
                }
                false
            };
            let Some(first) = rows.first() else { continue };
            // Sealed under its first SMS's id before it goes out; a group
            // sealed already keeps the id it was sealed under.
            let first_id = match &sealed {
                Some(id) => id.clone(),
                None => {
                    let sealed_now = self
                        .ctx
                        .state
                        .seal_sms_group(lease, &ids, &first.gateway_id, FLUSH_CLAIM_SECS)
                        .await
                        .map_err(|e| format!("group {key}: {e}"))?;
                    if !sealed_now {
                        tracing::warn!(channel = %self.cfg.id, group = %key, "held SMS group changed while it was sealed; taken again in the next round");
                        continue;
                    }
                    first.gateway_id.clone()
                }
            };
            // Parts are one text; separate SMS are separate paragraphs.
            let text = rows
                .iter()
                .map(|r| r.text.as_str())
                .collect::<Vec<_>>()
                .join(if parts { "" } else { "\n\n" });
            let joined = InboundSms {
                gateway_id: first_id,
                from: first.from_address.clone(),
                to: first.to_address.clone(),
                text,
                part: None,
                binary: None,
            };
            let mut msg = match self.normalise(&joined) {
                Ok(m) => m,
                Err(e) => {
                    // Kept held (nothing lost); the other groups go on.
                    tracing::error!(channel = %self.cfg.id, group = %key, "held SMS cannot become an item: {e}");
                    continue;
                }
            };
            msg.received_at = first_at;
            if let Some(mut meta) = msg.meta::<super::SmsMeta>() {
                meta.joined_gateway_ids = Some(rows.iter().map(|r| r.gateway_id.clone()).collect());
                meta.incomplete_parts = incomplete;
                msg.set_meta(&meta);
            }
            self.ctx
                .publisher
                .publish(&msg)
                .await
                .map_err(|e| format!("group {key}: {e}"))?;
            self.ctx
                .state
                .mark_sms_published(&ids, now)
                .await
                .map_err(|e| format!("group {key} was published, marking it failed (it is published again, registered once): {e}"))?;
            tracing::info!(channel = %self.cfg.id, group = %key, sms = ids.len(), incomplete, "held SMS published as one item");
            published += 1;
        }
        Ok(published)
    }
}

//! Client opinions: one short answer (1–5 and a comment) per closed item,
//! given on the citizen's status page, and read back for the statistics
//! with the item's channel and unit only.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::consultations::margins;
use super::{Registry, RegistryError, db_time, decode_db_time, q};
use crate::stats::{OpinionRecord, Period};

/// What giving an opinion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpinionOutcome {
    Accepted,
    /// The item has an opinion already: the first one stays.
    AlreadyGiven,
    /// The item is not closed (or was discarded): nothing to rate yet.
    NotClosed,
}

impl Registry {
    /// Records the opinion on `item_id` if the item is closed and has none yet.
    pub async fn give_opinion(
        &self,
        item_id: &str,
        score: u8,
        comment: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<OpinionOutcome, RegistryError> {
        let ctx = || format!("opinion on item {item_id}");
        let closed = sqlx::query(
            "SELECT 1 AS one FROM items WHERE id = $1 AND closed_at IS NOT NULL AND state <> 'discarded'",
        )
        .bind(item_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q(ctx()))?;
        if closed.is_none() {
            return Ok(OpinionOutcome::NotClosed);
        }
        let done = sqlx::query(
            "INSERT INTO opinions (item_id, score, comment, given_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (item_id) DO NOTHING",
        )
        .bind(item_id)
        .bind(i64::from(score))
        .bind(comment)
        .bind(db_time(at))
        .execute(&self.pool)
        .await
        .map_err(q(ctx()))?;
        Ok(if done.rows_affected() > 0 {
            OpinionOutcome::Accepted
        } else {
            OpinionOutcome::AlreadyGiven
        })
    }

    /// Whether `item_id` has an opinion already.
    pub async fn has_opinion(&self, item_id: &str) -> Result<bool, RegistryError> {
        sqlx::query("SELECT 1 AS one FROM opinions WHERE item_id = $1")
            .bind(item_id)
            .fetch_optional(&self.pool)
            .await
            .map(|r| r.is_some())
            .map_err(q(format!("opinion on item {item_id}")))
    }

    /// Opinions given in `period` (with a day's margin, as
    /// [`Registry::stats_consultations`]) with their item's channel and
    /// unit, never the item; one unit's when `unit` is given.
    pub async fn stats_opinions(
        &self,
        period: Period,
        unit: Option<&str>,
    ) -> Result<Vec<OpinionRecord>, RegistryError> {
        let ctx = format!("opinions for {}", period.label());
        let (from, to) = margins(period);
        let rows = sqlx::query(
            "SELECT i.channel_kind, i.unit_id, o.score, o.given_at FROM opinions o \
             JOIN items i ON i.id = o.item_id \
             WHERE o.given_at >= $1 AND o.given_at < $2 AND ($3 IS NULL OR i.unit_id = $3)",
        )
        .bind(from)
        .bind(to)
        .bind(unit)
        .fetch_all(&self.pool)
        .await
        .map_err(q(ctx.clone()))?;
        rows.iter()
            .map(|r| {
                Ok(OpinionRecord {
                    channel: r.try_get("channel_kind")?,
                    unit: r.try_get("unit_id")?,
                    score: u64::try_from(r.try_get::<i64, _>("score")?).unwrap_or(0),
                    given_at: decode_db_time(&r.try_get::<String, _>("given_at")?)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q(ctx))
    }
}

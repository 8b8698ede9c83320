//! Outgoing documents: an item's answer, registered in its own gap-free
//! number series (a `registration_counters` row of the series
//! [`OUTGOING_SERIES`], apart from every incoming series), linked to the
//! incoming item, and closed with it in one transaction: the counter, the
//! answer, its delivery (a `replies` row for an answer sent electronically),
//! the item's close (the close action's own assignments) and the audit lines
//! commit together or not at all, so a number is never lost.
//!
//! A letter is delivered by a person: [`Registry::answer_posted`] records
//! who printed and posted it.

use chrono::{Datelike, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::deadlines::{ActionError, close_parts, record_in};
use super::numbering::Pattern;
use super::{Registry, RegistryError, db_time, insert_audit, q};

/// The counter series of outgoing numbers (no unit index looks like it).
pub const OUTGOING_SERIES: &str = "~outgoing";

/// An answer to register.
#[derive(Debug, Clone)]
pub struct NewAnswer<'a> {
    /// The incoming item (id or registration number).
    pub item: &'a str,
    pub body: &'a str,
    /// The signed answer document uploaded: (blob SHA-256, file name).
    pub document: Option<(&'a str, &'a str)>,
    /// `email`, `sms` or `letter`.
    pub delivery: &'a str,
    /// Sent electronically: the channel instance whose replier sends it, and
    /// the address.
    pub send_via: Option<(&'a str, &'a str)>,
    pub actor: &'a str,
    /// The outgoing number's pattern (`{unit_index}` is the item's unit's).
    pub pattern: &'a Pattern,
    pub unit_index: &'a str,
}

/// A registered answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Answer {
    pub id: String,
    pub item_id: String,
    pub number: String,
    pub body: String,
    pub document_sha256: Option<String>,
    pub document_name: Option<String>,
    pub delivery: String,
    pub created_by: String,
    pub created_at: String,
    pub posted_by: Option<String>,
    pub posted_at: Option<String>,
}

const ANSWER_COLUMNS: &str = "id, item_id, number, body, document_sha256, document_name, delivery, \
     created_by, created_at, posted_by, posted_at";

fn answer_of(r: &sqlx::any::AnyRow) -> Result<Answer, sqlx::Error> {
    Ok(Answer {
        id: r.try_get("id")?,
        item_id: r.try_get("item_id")?,
        number: r.try_get("number")?,
        body: r.try_get("body")?,
        document_sha256: r.try_get("document_sha256")?,
        document_name: r.try_get("document_name")?,
        delivery: r.try_get("delivery")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        posted_by: r.try_get("posted_by")?,
        posted_at: r.try_get("posted_at")?,
    })
}

impl Registry {
    /// Registers the answer to an open item with the next outgoing number,
    /// queues its delivery and closes the item with that number.
    pub async fn register_answer(&self, a: &NewAnswer<'_>) -> Result<Answer, ActionError> {
        let row = self.deadline_row(a.item).await?;
        row.open()?;
        if a.body.trim().is_empty() && a.document.is_none() {
            return Err(ActionError::Invalid(format!(
                "item {}: an answer needs its text or the signed document",
                row.number
            )));
        }
        let now = Utc::now();
        let year = i64::from(crate::deadline::local_date(now).year());
        let ctx = format!("answer to item {}", row.number);
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        let seq: i64 = sqlx::query(
            "INSERT INTO registration_counters (series, reg_year, last_seq) VALUES ($1, $2, 1) \
             ON CONFLICT (series, reg_year) DO UPDATE SET last_seq = registration_counters.last_seq + 1 \
             RETURNING last_seq",
        )
        .bind(OUTGOING_SERIES)
        .bind(year)
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(q(ctx.clone()))?;
        let answer = Answer {
            id: Uuid::now_v7().to_string(),
            item_id: row.id.clone(),
            number: a.pattern.render(a.unit_index, year, seq),
            body: a.body.trim().to_string(),
            document_sha256: a.document.map(|(sha, _)| sha.to_string()),
            document_name: a.document.map(|(_, name)| name.to_string()),
            delivery: a.delivery.to_string(),
            created_by: a.actor.to_string(),
            created_at: db_time(now),
            posted_by: None,
            posted_at: None,
        };
        sqlx::query(
            "INSERT INTO answers (id, item_id, number, reg_year, reg_seq, body, document_sha256, \
             document_name, delivery, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&answer.id)
        .bind(&answer.item_id)
        .bind(&answer.number)
        .bind(year)
        .bind(seq)
        .bind(&answer.body)
        .bind(answer.document_sha256.clone())
        .bind(answer.document_name.clone())
        .bind(&answer.delivery)
        .bind(&answer.created_by)
        .bind(&answer.created_at)
        .execute(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        if let Some((channel, address)) = a.send_via {
            // The item's acknowledgement row, if any, now carries its answer.
            sqlx::query(
                "INSERT INTO replies (item_id, channel_instance, address, created_at, attempts, \
                 next_attempt_at, answer_id) VALUES ($1, $2, $3, $4, 0, $4, $5) \
                 ON CONFLICT (item_id) DO UPDATE SET channel_instance = excluded.channel_instance, \
                 address = excluded.address, attempts = 0, \
                 next_attempt_at = excluded.next_attempt_at, last_error = NULL, done_at = NULL, \
                 outcome = NULL, sending_since = NULL, answer_id = excluded.answer_id",
            )
            .bind(&answer.item_id)
            .bind(channel)
            .bind(address)
            .bind(&answer.created_at)
            .bind(&answer.id)
            .execute(&mut *tx)
            .await
            .map_err(q(ctx.clone()))?;
        }
        insert_audit(
            &mut tx,
            &row.id,
            a.actor,
            "answer_registered",
            &serde_json::json!({
                "number": answer.number, "delivery": answer.delivery,
                "document": answer.document_name,
            }),
            &ctx,
        )
        .await?;
        let (set, binds, detail) = close_parts(&row, Some(&answer.number), now);
        record_in(&mut tx, &row, set, binds, a.actor, "closed", &detail).await?;
        tx.commit().await.map_err(q(ctx))?;
        tracing::info!(item = %row.id, number = %row.number, answer = %answer.number, delivery = %answer.delivery, "answer registered, item closed");
        Ok(answer)
    }

    /// The answers of an item, oldest first.
    pub async fn answers_of(&self, item_id: &str) -> Result<Vec<Answer>, RegistryError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ANSWER_COLUMNS} FROM answers WHERE item_id = $1 ORDER BY reg_year, reg_seq"
        )))
        .bind(item_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("answers of an item"))?;
        rows.iter()
            .map(answer_of)
            .collect::<Result<_, _>>()
            .map_err(q("answers of an item"))
    }

    /// One answer by its id.
    pub async fn answer(&self, id: &str) -> Result<Option<Answer>, RegistryError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ANSWER_COLUMNS} FROM answers WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("answer"))?
        .map(|r| answer_of(&r))
        .transpose()
        .map_err(q("answer"))
    }

    /// Records that `actor` printed and posted the answer letter.
    pub async fn answer_posted(&self, answer_id: &str, actor: &str) -> Result<Answer, ActionError> {
        let ctx = format!("posting of answer {answer_id}");
        let found = self
            .answer(answer_id)
            .await?
            .ok_or_else(|| ActionError::NotFound(answer_id.to_string()))?;
        if let Some(by) = &found.posted_by {
            return Err(ActionError::Conflict {
                item: found.number,
                why: format!("already printed and posted by {by}"),
            });
        }
        let now = db_time(Utc::now());
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        let done = sqlx::query(
            "UPDATE answers SET posted_by = $2, posted_at = $3 WHERE id = $1 AND posted_at IS NULL",
        )
        .bind(answer_id)
        .bind(actor)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        if done.rows_affected() == 0 {
            return Err(ActionError::Conflict {
                item: found.number,
                why: "someone else recorded it at the same moment".into(),
            });
        }
        insert_audit(
            &mut tx,
            &found.item_id,
            actor,
            "answer_posted",
            &serde_json::json!({ "number": found.number, "by": actor }),
            &ctx,
        )
        .await?;
        tx.commit().await.map_err(q(ctx))?;
        Ok(Answer {
            posted_by: Some(actor.to_string()),
            posted_at: Some(now),
            ..found
        })
    }
}

//! Storage of parked items (see [`crate::parked`]): dead letters kept with
//! their raw bytes until they are registered.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Registry, RegistryError, db_time, q};

/// One parked item as `pietura parked list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParkedItem {
    /// The message id (tracking id) when the bytes are a message, else the
    /// SHA-256 of the bytes.
    pub id: String,
    pub message_id: Option<String>,
    pub reason: String,
    /// The reason may pass by itself (the delivery limit burned while the
    /// registry was failing): retried automatically.
    pub transient: bool,
    pub first_seen: String,
    pub last_seen: String,
    /// Times it was dead-lettered or retried.
    pub attempts: i64,
    pub retry_after: String,
    #[serde(skip)]
    pub payload: Vec<u8>,
}

fn parked_item(r: &sqlx::any::AnyRow) -> Result<ParkedItem, sqlx::Error> {
    let b64: String = r.try_get("payload_b64")?;
    Ok(ParkedItem {
        id: r.try_get("id")?,
        message_id: r.try_get("message_id")?,
        reason: r.try_get("reason")?,
        transient: r.try_get::<i32, _>("transient")? != 0,
        first_seen: r.try_get("first_seen")?,
        last_seen: r.try_get("last_seen")?,
        attempts: r.try_get("attempts")?,
        retry_after: r.try_get("retry_after")?,
        payload: base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}

/// A parked item's id: the message id (the citizen's tracking id) when the
/// bytes carry one, else the SHA-256 of the bytes.
pub fn parked_id(payload: &[u8]) -> (String, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Id {
        id: uuid::Uuid,
    }
    match serde_json::from_slice::<Id>(payload) {
        Ok(m) => (m.id.to_string(), Some(m.id.to_string())),
        Err(_) => (hex::encode(Sha256::digest(payload)), None),
    }
}

macro_rules! select_parked {
    ($rest:literal) => {
        concat!(
            "SELECT id, message_id, payload_b64, reason, transient, first_seen, last_seen, ",
            "attempts, retry_after FROM parked ",
            $rest
        )
    };
}

impl Registry {
    /// Parks a dead letter, or notes that a parked one came back (one more
    /// attempt, the latest reason).
    #[allow(clippy::too_many_arguments)]
    pub async fn park(
        &self,
        id: &str,
        message_id: Option<&str>,
        payload: &[u8],
        reason: &str,
        transient: bool,
        now: DateTime<Utc>,
        retry_after: DateTime<Utc>,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO parked (id, message_id, payload_b64, reason, transient, first_seen, \
             last_seen, attempts, retry_after) VALUES ($1, $2, $3, $4, $5, $6, $6, 1, $7) \
             ON CONFLICT (id) DO UPDATE SET reason = excluded.reason, \
             transient = excluded.transient, last_seen = excluded.last_seen, \
             attempts = parked.attempts + 1, retry_after = excluded.retry_after",
        )
        .bind(id)
        .bind(message_id)
        .bind(base64::engine::general_purpose::STANDARD.encode(payload))
        .bind(reason)
        .bind(i32::from(transient))
        .bind(db_time(now))
        .bind(db_time(retry_after))
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(q(format!("parking {id}")))
    }

    /// Parks a message the engine refused (the database refuses its data,
    /// or it kept failing while others registered), with the reason, so the
    /// reason is kept whatever the bus; the caller then acknowledges it.
    /// The item's id.
    pub async fn park_refused(
        &self,
        payload: &[u8],
        reason: &str,
    ) -> Result<String, RegistryError> {
        let (id, message_id) = parked_id(payload);
        let now = Utc::now();
        self.park(&id, message_id.as_deref(), payload, reason, false, now, now)
            .await?;
        Ok(id)
    }

    /// Every parked item, oldest first.
    pub async fn parked(&self) -> Result<Vec<ParkedItem>, RegistryError> {
        let rows = sqlx::query(select_parked!("ORDER BY first_seen, id"))
            .fetch_all(&self.pool)
            .await
            .map_err(q("parked items"))?;
        rows.iter()
            .map(parked_item)
            .collect::<Result<_, _>>()
            .map_err(q("parked items"))
    }

    /// One parked item by its id.
    pub async fn parked_item(&self, id: &str) -> Result<Option<ParkedItem>, RegistryError> {
        let row = sqlx::query(select_parked!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q(format!("parked item {id}")))?;
        row.as_ref()
            .map(parked_item)
            .transpose()
            .map_err(q(format!("parked item {id}")))
    }

    /// Whether the item behind a tracking id is parked.
    pub async fn is_parked(&self, message_id: &str) -> Result<bool, RegistryError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM parked WHERE message_id = $1")
            .bind(message_id)
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(q("parked lookup"))?;
        Ok(n > 0)
    }

    /// How many items are parked.
    pub async fn parked_count(&self) -> Result<u64, RegistryError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM parked")
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(q("parked count"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// A parked item was published again: one more attempt, not before
    /// `retry_after` automatically.
    pub async fn parked_retried(
        &self,
        id: &str,
        now: DateTime<Utc>,
        retry_after: DateTime<Utc>,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "UPDATE parked SET attempts = attempts + 1, last_seen = $2, retry_after = $3 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(db_time(now))
        .bind(db_time(retry_after))
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(q(format!("parked item {id}")))
    }

    /// A records officer (the desk's audit name) asked for a retry: written
    /// on the item's audit log once it is registered ([`Self::unpark_registered`]).
    pub async fn parked_retry_asked(&self, id: &str, actor: &str) -> Result<(), RegistryError> {
        sqlx::query("UPDATE parked SET retried_by = $2 WHERE id = $1")
            .bind(id)
            .bind(actor)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(q(format!("parked item {id}")))
    }

    /// A parked item is registered as `item_id`: no longer parked; the
    /// officer who asked for its retry goes on the item's audit log, in the
    /// same transaction.
    pub async fn unpark_registered(&self, id: &str, item_id: &str) -> Result<(), RegistryError> {
        let ctx = format!("parked item {id}");
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        let row = sqlx::query(
            "DELETE FROM parked WHERE id = $1 RETURNING retried_by, reason, first_seen, attempts",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        if let Some(row) = row
            && let Some(actor) = row
                .try_get::<Option<String>, _>(0)
                .map_err(q(ctx.clone()))?
        {
            let detail = serde_json::json!({
                "parked_since": row.try_get::<String, _>(2).map_err(q(ctx.clone()))?,
                "reason": row.try_get::<String, _>(1).map_err(q(ctx.clone()))?,
                "attempts": row.try_get::<i64, _>(3).map_err(q(ctx.clone()))?,
            });
            super::insert_audit(&mut tx, item_id, &actor, "parked_retried", &detail, &ctx).await?;
        }
        tx.commit().await.map_err(q(ctx))
    }

    /// A parked item is registered: no longer parked.
    pub async fn unpark(&self, id: &str) -> Result<(), RegistryError> {
        sqlx::query("DELETE FROM parked WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(q(format!("parked item {id}")))
    }
}

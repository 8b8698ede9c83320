//! Claims on idempotency keys by the doors that take submissions directly
//! (web form, JSON API): written before publishing, so a key reused with
//! other content is recognised even while its first message is still on the
//! bus and not yet registered.

use sqlx::Row;

use super::{Registry, RegistryError, db_time, q};

/// Who holds an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// The key was free and is now held by this submission.
    New,
    /// An earlier submission holds it: its content hash and message (tracking) id.
    Held {
        content_sha256: String,
        message_id: String,
    },
}

impl Registry {
    /// Claims `key` for a submission with this content and message id; a
    /// concurrent claim of the same key is decided by the database.
    pub async fn claim_key(
        &self,
        key: &str,
        content_sha256: &str,
        message_id: &str,
    ) -> Result<KeyClaim, RegistryError> {
        let ctx = "an idempotency key claim";
        sqlx::query(
            "INSERT INTO door_claims (idempotency_key, content_sha256, message_id, claimed_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(key)
        .bind(content_sha256)
        .bind(message_id)
        .bind(db_time(chrono::Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(q(ctx))?;
        let row = sqlx::query(
            "SELECT content_sha256, message_id FROM door_claims WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_one(&self.pool)
        .await
        .map_err(q(ctx))?;
        let held: String = row.try_get("message_id").map_err(q(ctx))?;
        if held == message_id {
            return Ok(KeyClaim::New);
        }
        Ok(KeyClaim::Held {
            content_sha256: row.try_get("content_sha256").map_err(q(ctx))?,
            message_id: held,
        })
    }

    /// Removes door claims nothing needs any more: those of registered
    /// items claimed before `registered_before` (the item's own key and
    /// stored message then answer a reuse, see the web form), and those of
    /// submissions that never arrived (publishing failed, the citizen was
    /// told to retry) claimed before `unfinished_before`, unless parked.
    /// The number removed.
    pub async fn prune_door_claims(
        &self,
        registered_before: chrono::DateTime<chrono::Utc>,
        unfinished_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, RegistryError> {
        let ctx = "pruning door claims";
        let registered = sqlx::query(
            "DELETE FROM door_claims WHERE claimed_at < $1 \
             AND idempotency_key IN (SELECT idempotency_key FROM items)",
        )
        .bind(db_time(registered_before))
        .execute(&self.pool)
        .await
        .map_err(q(ctx))?
        .rows_affected();
        let unfinished = sqlx::query(
            "DELETE FROM door_claims WHERE claimed_at < $1 \
             AND idempotency_key NOT IN (SELECT idempotency_key FROM items) \
             AND message_id NOT IN (SELECT message_id FROM parked WHERE message_id IS NOT NULL)",
        )
        .bind(db_time(unfinished_before))
        .execute(&self.pool)
        .await
        .map_err(q(ctx))?
        .rows_affected();
        Ok(registered + unfinished)
    }
}

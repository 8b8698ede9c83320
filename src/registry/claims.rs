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
}

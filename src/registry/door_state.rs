//! A door's small keyed state (`door_state`): one value per channel
//! instance and key, read, written and compared-and-set. Doors reach it
//! through [`crate::channels::DoorState`], namespaced to their instance.

use sqlx::Row;

use super::{Registry, RegistryError, db_time, q};

impl Registry {
    /// The value of `key` in `instance`'s state, if set.
    pub async fn door_state(
        &self,
        instance: &str,
        key: &str,
    ) -> Result<Option<String>, RegistryError> {
        let ctx = format!("state {key} of channel {instance}");
        sqlx::query(
            "SELECT state_value FROM door_state WHERE channel_instance = $1 AND state_key = $2",
        )
        .bind(instance)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .and_then(|row| row.map(|r| r.try_get(0)).transpose())
        .map_err(q(ctx))
    }

    /// Sets `key` in `instance`'s state to `value`, whatever it was.
    pub async fn put_door_state(
        &self,
        instance: &str,
        key: &str,
        value: &str,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO door_state (channel_instance, state_key, state_value, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (channel_instance, state_key) \
             DO UPDATE SET state_value = excluded.state_value, updated_at = excluded.updated_at",
        )
        .bind(instance)
        .bind(key)
        .bind(value)
        .bind(db_time(chrono::Utc::now()))
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(q(format!("state {key} of channel {instance}")))
    }

    /// Sets `key` to `value` only while it is `expected` (None: not set);
    /// false when another writer changed it first.
    pub async fn swap_door_state(
        &self,
        instance: &str,
        key: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, RegistryError> {
        let ctx = format!("state {key} of channel {instance}");
        let now = db_time(chrono::Utc::now());
        let done =
            match expected {
                None => sqlx::query(
                    "INSERT INTO door_state (channel_instance, state_key, state_value, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (channel_instance, state_key) DO NOTHING",
                )
                .bind(instance)
                .bind(key)
                .bind(value)
                .bind(now)
                .execute(&self.pool)
                .await,
                Some(old) => {
                    sqlx::query(
                        "UPDATE door_state SET state_value = $3, updated_at = $4 \
                 WHERE channel_instance = $1 AND state_key = $2 AND state_value = $5",
                    )
                    .bind(instance)
                    .bind(key)
                    .bind(value)
                    .bind(now)
                    .bind(old)
                    .execute(&self.pool)
                    .await
                }
            };
        done.map(|r| r.rows_affected() == 1).map_err(q(ctx))
    }
}

//! Storage of the item API's clients (see [`crate::api_clients`]): name,
//! token hash, scopes as text, created / last used / revoked; and the item
//! list restricted to a client's units.

use chrono::{Duration, Utc};
use sqlx::Row;

use super::{ItemFilter, ItemSummary, Registry, RegistryError, SUMMARY_COLUMNS, db_time, q};

/// One stored client, as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiClient {
    pub name: String,
    pub token_sha256: String,
    /// `*` for every unit, else a JSON array of unit ids.
    pub units: String,
    /// Comma-separated action names.
    pub actions: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

const COLUMNS: &str = "name, token_sha256, units, actions, created_at, last_used_at, revoked_at";

fn stored(r: &sqlx::any::AnyRow) -> Result<StoredApiClient, sqlx::Error> {
    Ok(StoredApiClient {
        name: r.try_get("name")?,
        token_sha256: r.try_get("token_sha256")?,
        units: r.try_get("units")?,
        actions: r.try_get("actions")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

impl Registry {
    /// Adds a client; a name in use (revoked included) is a unique violation.
    pub async fn api_client_insert(&self, c: &StoredApiClient) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO api_clients (name, token_sha256, units, actions, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&c.name)
        .bind(&c.token_sha256)
        .bind(&c.units)
        .bind(&c.actions)
        .bind(&c.created_at)
        .execute(self.pool())
        .await
        .map(|_| ())
        .map_err(q(format!("adding API client {}", c.name)))
    }

    /// Revokes a client; false when there is no such client not yet revoked.
    pub async fn api_client_revoke(&self, name: &str) -> Result<bool, RegistryError> {
        sqlx::query("UPDATE api_clients SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
            .bind(db_time(Utc::now()))
            .bind(name)
            .execute(self.pool())
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(q(format!("revoking API client {name}")))
    }

    /// Every client, revoked ones included, by name.
    pub async fn api_clients(&self) -> Result<Vec<StoredApiClient>, RegistryError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_clients ORDER BY name"
        )))
        .fetch_all(self.pool())
        .await
        .map_err(q("API client list"))?;
        rows.iter()
            .map(stored)
            .collect::<Result<_, _>>()
            .map_err(q("API client list"))
    }

    /// The client (not revoked) whose token has this SHA-256.
    pub async fn api_client_by_token(
        &self,
        token_sha256: &str,
    ) -> Result<Option<StoredApiClient>, RegistryError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_clients WHERE token_sha256 = $1 AND revoked_at IS NULL"
        )))
        .bind(token_sha256)
        .fetch_optional(self.pool())
        .await
        .map_err(q("API client lookup"))?;
        row.map(|r| stored(&r))
            .transpose()
            .map_err(q("API client lookup"))
    }

    /// Notes that a client was used now (at most one write a minute per client).
    pub async fn api_client_used(&self, name: &str) -> Result<(), RegistryError> {
        let now = Utc::now();
        sqlx::query(
            "UPDATE api_clients SET last_used_at = $1 \
             WHERE name = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(db_time(now))
        .bind(name)
        .bind(db_time(now - Duration::minutes(1)))
        .execute(self.pool())
        .await
        .map(|_| ())
        .map_err(q(format!("last use of API client {name}")))
    }

    /// [`Registry::list`] restricted to items routed to one of `units`.
    pub async fn list_in_units(
        &self,
        f: &ItemFilter,
        units: &[String],
    ) -> Result<Vec<ItemSummary>, RegistryError> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        // Numbered in the order they appear (SQLite numbers `$n` so).
        let placeholders: Vec<String> = (0..units.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM items i \
             WHERE ($1 IS NULL OR i.state = $1) AND ($2 IS NULL OR i.unit_id = $2) \
             AND i.unit_id IN ({}) \
             ORDER BY i.received_at DESC, i.id DESC LIMIT ${}",
            placeholders.join(", "),
            units.len() + 3
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&f.state)
            .bind(&f.unit);
        for unit in units {
            query = query.bind(unit);
        }
        let query = query.bind(if f.limit > 0 { f.limit } else { 100 });
        let rows = query.fetch_all(self.pool()).await.map_err(q("item list"))?;
        rows.iter()
            .map(ItemSummary::from_row)
            .collect::<Result<_, _>>()
            .map_err(q("item list"))
    }
}

//! Desk accounts beyond the password: accounts that sign in through an
//! OpenID provider or a directory (found by their directory identity,
//! created or updated at sign-in), the administrators' list with the last
//! sign-in, disabling and role changes, the accounts' audit log, and the
//! desk's signing key shared by every daemon.

use chrono::Utc;
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::desk::User;
use super::{Registry, RegistryError, db_time, q};

/// One row of the administrators' users page.
#[derive(Debug, Clone, Serialize)]
pub struct AccountRow {
    pub user: User,
    /// When the account last signed in (database time), if ever.
    pub last_sign_in_at: Option<String>,
}

/// One line of the accounts' audit log.
#[derive(Debug, Clone, Serialize)]
pub struct AccountEvent {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub user_id: Option<String>,
    pub detail: serde_json::Value,
}

/// An account as a directory or OpenID provider describes it at sign-in.
#[derive(Debug, Clone)]
pub struct ExternalAccount<'a> {
    /// `oidc` or `ldap`.
    pub source: &'a str,
    /// The provider's subject or the directory entry's DN.
    pub external_id: &'a str,
    pub username: &'a str,
    pub display_name: &'a str,
    /// The role the group mapping gives.
    pub role: &'a str,
}

const USER_COLUMNS: &str =
    "id, username, display_name, role, password_hash, disabled_at, source, last_sign_in_at";

fn account_of(r: &sqlx::any::AnyRow) -> Result<AccountRow, sqlx::Error> {
    let disabled: Option<String> = r.try_get(5)?;
    Ok(AccountRow {
        user: User {
            id: r.try_get(0)?,
            username: r.try_get(1)?,
            display_name: r.try_get(2)?,
            role: r.try_get(3)?,
            password_hash: r.try_get(4)?,
            disabled: disabled.is_some(),
            source: r.try_get(6)?,
        },
        last_sign_in_at: r.try_get(7)?,
    })
}

impl Registry {
    /// Every account, by username.
    pub async fn accounts(&self) -> Result<Vec<AccountRow>, RegistryError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(q("accounts"))?;
        rows.iter()
            .map(account_of)
            .collect::<Result<_, _>>()
            .map_err(q("accounts"))
    }

    /// The account a directory identity signs in as: found by (source,
    /// external id), its name and role brought up to date, or created.
    /// A disabled account stays disabled.
    pub async fn external_account(&self, a: &ExternalAccount<'_>) -> Result<User, RegistryError> {
        let ctx = || format!("{} account", a.source);
        let found = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE source = $1 AND external_id = $2"
        )))
        .bind(a.source)
        .bind(a.external_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q(ctx()))?;
        if let Some(row) = found {
            let mut user = account_of(&row).map_err(q(ctx()))?.user;
            sqlx::query("UPDATE users SET display_name = $2, role = $3 WHERE id = $1")
                .bind(user.id.clone())
                .bind(a.display_name)
                .bind(a.role)
                .execute(&self.pool)
                .await
                .map_err(q(ctx()))?;
            user.display_name = a.display_name.to_string();
            user.role = a.role.to_string();
            return Ok(user);
        }
        let user = User {
            id: Uuid::now_v7().to_string(),
            username: a.username.to_string(),
            display_name: a.display_name.to_string(),
            role: a.role.to_string(),
            password_hash: None,
            disabled: false,
            source: a.source.to_string(),
        };
        sqlx::query(
            "INSERT INTO users (id, username, display_name, role, password_hash, created_at, source, external_id) \
             VALUES ($1, $2, $3, $4, NULL, $5, $6, $7)",
        )
        .bind(user.id.clone())
        .bind(user.username.clone())
        .bind(user.display_name.clone())
        .bind(user.role.clone())
        .bind(db_time(Utc::now()))
        .bind(a.source)
        .bind(a.external_id)
        .execute(&self.pool)
        .await
        .map_err(q(ctx()))?;
        Ok(user)
    }

    /// Notes a successful sign-in.
    pub async fn note_sign_in(&self, user_id: &str) -> Result<(), RegistryError> {
        sqlx::query("UPDATE users SET last_sign_in_at = $2 WHERE id = $1")
            .bind(user_id)
            .bind(db_time(Utc::now()))
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(q("last sign-in"))
    }

    /// Disables (or enables again) an account; false when there is no such account.
    pub async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled: bool,
    ) -> Result<bool, RegistryError> {
        let at = disabled.then(|| db_time(Utc::now()));
        sqlx::query("UPDATE users SET disabled_at = $2 WHERE id = $1")
            .bind(user_id)
            .bind(at)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(q("account state"))
    }

    /// Changes a local account's role; false when there is no such local account.
    pub async fn set_user_role(&self, user_id: &str, role: &str) -> Result<bool, RegistryError> {
        sqlx::query("UPDATE users SET role = $2 WHERE id = $1 AND source = 'local'")
            .bind(user_id)
            .bind(role)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(q("account role"))
    }

    /// Appends a line to the accounts' audit log.
    pub async fn account_event(
        &self,
        actor: &str,
        action: &str,
        user_id: Option<&str>,
        detail: &serde_json::Value,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO account_events (id, at, actor, action, user_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(db_time(Utc::now()))
        .bind(actor)
        .bind(action)
        .bind(user_id)
        .bind(detail.to_string())
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(q("account audit"))
    }

    /// The accounts' audit log, newest first.
    pub async fn account_events(&self, limit: i64) -> Result<Vec<AccountEvent>, RegistryError> {
        let rows = sqlx::query(
            "SELECT at, actor, action, user_id, detail FROM account_events \
             ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("account audit"))?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get(4)?;
                Ok(AccountEvent {
                    at: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    action: r.try_get(2)?,
                    user_id: r.try_get(3)?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("account audit"))
    }

    /// The desk's secret `name`: the one stored, or `fresh` stored now (the
    /// first daemon to ask wins; every daemon gets the same value).
    pub async fn desk_secret(&self, name: &str, fresh: &str) -> Result<String, RegistryError> {
        sqlx::query(
            "INSERT INTO desk_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .execute(&self.pool)
        .await
        .map_err(q("desk secret"))?;
        sqlx::query("SELECT value FROM desk_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(q("desk secret"))
    }

    /// Stored web sessions that have not expired (what anonymous visits must not add to).
    pub async fn web_session_count(&self) -> Result<i64, RegistryError> {
        sqlx::query("SELECT COUNT(*) FROM web_sessions WHERE expires_at > $1")
            .bind(db_time(Utc::now()))
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(q("web sessions"))
    }
}

//! The pointer to the rule set in force for every daemon (`ruleset_active`),
//! moved only together with the version's texts (`ruleset_versions`) and a
//! history line (`ruleset_changes`), in one transaction. On PostgreSQL the
//! move is announced on the [`RULESET_CHANNEL`] notification channel.

use chrono::Utc;
use sqlx::Row;
use uuid::Uuid;

use super::desk::RulesChange;
use super::{Registry, RegistryError, db_time, q};
use crate::rules::RuleSet;

/// The PostgreSQL `LISTEN`/`NOTIFY` channel a new active version is announced on.
pub const RULESET_CHANNEL: &str = "pietura_ruleset";

/// The rule set in force, as the registry names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRuleSet {
    pub version: String,
    pub activated_at: String,
    pub activated_by: String,
    pub reason: String,
}

/// Which version an activation expects to replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replacing {
    /// None yet (the bootstrap from `rules/`).
    Nothing,
    /// Exactly this version: a draft written against it.
    Version(String),
    /// Whatever is in force (an explicit `rules apply`, a file edit).
    Any,
}

/// The outcome of an activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    Activated,
    /// The pointer was not where the caller expected: nothing changed.
    Conflict {
        active: Option<String>,
    },
}

impl Registry {
    /// The rule set in force, if one was ever activated.
    pub async fn active_ruleset(&self) -> Result<Option<ActiveRuleSet>, RegistryError> {
        let row = sqlx::query(
            "SELECT version, activated_at, activated_by, reason FROM ruleset_active WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(q("active rule set"))?;
        row.map(|r| {
            Ok(ActiveRuleSet {
                version: r.try_get(0)?,
                activated_at: r.try_get(1)?,
                activated_by: r.try_get(2)?,
                reason: r.try_get(3)?,
            })
        })
        .transpose()
        .map_err(q("active rule set"))
    }

    /// Whether the registry has ever stored this version's texts.
    pub async fn ruleset_known(&self, version: &str) -> Result<bool, RegistryError> {
        let row = sqlx::query("SELECT 1 FROM ruleset_versions WHERE version = $1")
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(q(format!("rule set version {version}")))?;
        Ok(row.is_some())
    }

    /// Puts `set` in force for every daemon if the pointer is where
    /// `replacing` says; stores its texts and `change` (whose `to_version`
    /// is `set`'s) in the same transaction.
    pub async fn activate_ruleset(
        &self,
        set: &RuleSet,
        replacing: &Replacing,
        change: &RulesChange,
    ) -> Result<Activation, RegistryError> {
        let ctx = format!("activating rule set {}", set.version);
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        let current: Option<String> =
            sqlx::query("SELECT version FROM ruleset_active WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await
                .and_then(|r| r.map(|r| r.try_get::<String, _>(0)).transpose())
                .map_err(q(ctx.clone()))?;
        let now = db_time(Utc::now());
        let reason = if change.note.is_empty() {
            change.action.clone()
        } else {
            format!("{}: {}", change.action, change.note)
        };
        let moved = match replacing {
            Replacing::Nothing => sqlx::query(
                "INSERT INTO ruleset_active (id, version, activated_at, activated_by, reason) \
                 VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
            ),
            Replacing::Version(_) => sqlx::query(
                "UPDATE ruleset_active SET version = $1, activated_at = $2, activated_by = $3, \
                 reason = $4 WHERE id = 1 AND version = $5",
            ),
            Replacing::Any => sqlx::query(
                "INSERT INTO ruleset_active (id, version, activated_at, activated_by, reason) \
                 VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET \
                 version = excluded.version, activated_at = excluded.activated_at, \
                 activated_by = excluded.activated_by, reason = excluded.reason",
            ),
        }
        .bind(set.version.clone())
        .bind(now.clone())
        .bind(change.actor.clone())
        .bind(reason);
        let moved = match replacing {
            Replacing::Version(base) => moved.bind(base.clone()),
            _ => moved,
        }
        .execute(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?
        .rows_affected();
        if moved == 0 {
            tx.rollback().await.map_err(q(ctx))?;
            return Ok(Activation::Conflict { active: current });
        }
        self.store_ruleset_in(&mut tx, set).await?;
        sqlx::query(
            "INSERT INTO ruleset_changes (id, at, actor, action, file, from_version, to_version, note) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(now)
        .bind(change.actor.clone())
        .bind(change.action.clone())
        .bind(change.file.clone())
        .bind(current.unwrap_or_default())
        .bind(set.version.clone())
        .bind(change.note.clone())
        .execute(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        if !self.sqlite {
            // Delivered to every listener when the transaction commits.
            sqlx::query(sqlx::AssertSqlSafe(format!("NOTIFY {RULESET_CHANNEL}")))
                .execute(&mut *tx)
                .await
                .map_err(q(ctx.clone()))?;
        }
        tx.commit().await.map_err(q(ctx))?;
        Ok(Activation::Activated)
    }
}

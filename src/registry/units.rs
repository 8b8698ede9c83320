//! Units at the desk: which units an account belongs to, the items a unit
//! works (open ones, with the colleague each is assigned to), assignment
//! to a colleague and comments. Assignment is a recorded action like the
//! deadline actions ([`Registry::record_action`]: guarded by the revision,
//! with its audit line); a comment is an audit line.

use sqlx::Row;

use super::deadlines::ActionError;
use super::desk::User;
use super::{ItemSummary, Registry, RegistryError, SUMMARY_COLUMNS, insert_audit, q};

/// An open item of a unit, with the account it is assigned to.
#[derive(Debug, Clone)]
pub struct UnitItem {
    pub item: ItemSummary,
    pub assignee: Option<String>,
}

impl Registry {
    /// The units `user_id` belongs to, sorted.
    pub async fn units_of(&self, user_id: &str) -> Result<Vec<String>, RegistryError> {
        let rows =
            sqlx::query("SELECT unit_id FROM user_units WHERE user_id = $1 ORDER BY unit_id")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await
                .map_err(q("units of an account"))?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()
            .map_err(q("units of an account"))
    }

    /// Sets the units of `user_id` (all at once), on the accounts' audit log.
    pub async fn set_units(
        &self,
        user_id: &str,
        units: &[String],
        actor: &str,
    ) -> Result<(), RegistryError> {
        let ctx = "units of an account";
        let mut tx = self.pool.begin().await.map_err(q(ctx))?;
        sqlx::query("DELETE FROM user_units WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(q(ctx))?;
        let mut units: Vec<&String> = units.iter().collect();
        units.sort();
        units.dedup();
        for unit in &units {
            sqlx::query("INSERT INTO user_units (user_id, unit_id) VALUES ($1, $2)")
                .bind(user_id)
                .bind(unit.as_str())
                .execute(&mut *tx)
                .await
                .map_err(q(ctx))?;
        }
        tx.commit().await.map_err(q(ctx))?;
        self.account_event(
            actor,
            "units_changed",
            Some(user_id),
            &serde_json::json!({ "units": units }),
        )
        .await
    }

    /// The enabled accounts of `unit`, by name.
    pub async fn unit_members(&self, unit: &str) -> Result<Vec<User>, RegistryError> {
        let rows = sqlx::query(
            "SELECT u.id, u.username, u.display_name, u.role, u.source FROM users u \
             JOIN user_units m ON m.user_id = u.id \
             WHERE m.unit_id = $1 AND u.disabled_at IS NULL ORDER BY u.display_name",
        )
        .bind(unit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("members of a unit"))?;
        rows.iter()
            .map(|r| {
                Ok(User {
                    id: r.try_get(0)?,
                    username: r.try_get(1)?,
                    display_name: r.try_get(2)?,
                    role: r.try_get(3)?,
                    password_hash: None,
                    disabled: false,
                    source: r.try_get(4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("members of a unit"))
    }

    /// The open items routed to any of `units`, earliest deadline first.
    pub async fn unit_open_items(&self, units: &[String]) -> Result<Vec<UnitItem>, RegistryError> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (1..=units.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS}, i.assignee FROM items i \
             WHERE i.unit_id IN ({}) AND i.closed_at IS NULL AND i.state = 'routed' \
             ORDER BY COALESCE(i.reply_due, i.forward_due), i.received_at",
            marks.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for u in units {
            query = query.bind(u.as_str());
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(q("open items of units"))?;
        rows.iter()
            .map(|r| {
                Ok(UnitItem {
                    item: ItemSummary::from_row(r)?,
                    assignee: r.try_get("assignee")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("open items of units"))
    }

    /// The account an item is assigned to.
    pub async fn assignee_of(&self, item_id: &str) -> Result<Option<String>, RegistryError> {
        sqlx::query("SELECT assignee FROM items WHERE id = $1")
            .bind(item_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("assignee of an item"))?
            .map(|r| r.try_get::<Option<String>, _>(0))
            .transpose()
            .map(Option::flatten)
            .map_err(q("assignee of an item"))
    }

    /// Assigns an open item to the account `assignee_id` (`assignee_name`
    /// on the audit log).
    pub async fn assign_item(
        &self,
        item: &str,
        assignee_id: &str,
        assignee_name: &str,
        actor: &str,
    ) -> Result<ItemSummary, ActionError> {
        let row = self.deadline_row(item).await?;
        row.open()?;
        self.record_action(
            &row,
            "assignee = $3",
            vec![Some(assignee_id.to_string())],
            actor,
            "assigned_to",
            serde_json::json!({ "assignee": assignee_name }),
        )
        .await
    }

    /// Adds a comment to an item's history.
    pub async fn comment_item(
        &self,
        item_id: &str,
        text: &str,
        actor: &str,
    ) -> Result<(), ActionError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ActionError::Invalid("a comment needs its text".into()));
        }
        let ctx = format!("comment on item {item_id}");
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        insert_audit(
            &mut tx,
            item_id,
            actor,
            "commented",
            &serde_json::json!({ "text": text }),
            &ctx,
        )
        .await?;
        tx.commit().await.map_err(q(ctx))?;
        Ok(())
    }
}

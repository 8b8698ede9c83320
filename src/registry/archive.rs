//! What the archival handover ([`crate::archive`]) reads from the register:
//! the items registered in a period (optionally of one case) with their
//! case and formal status. Read-only: nothing here changes or deletes an item.

use super::{ItemSummary, Registry, RegistryError, SUMMARY_COLUMNS, q};

/// An item as the register of a handover package lists it.
#[derive(Debug, Clone)]
pub struct RegisterEntry {
    /// The item, its case (`case_code`, none until classified) and formal
    /// status included.
    pub item: ItemSummary,
}

impl Registry {
    /// Items registered in `[from, until)` (RFC 3339 UTC times as stored),
    /// of one case if given, in registration order.
    pub async fn register_entries(
        &self,
        from: &str,
        until: &str,
        case_code: Option<&str>,
    ) -> Result<Vec<RegisterEntry>, RegistryError> {
        let ctx = "items of the archival period";
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM items i \
             WHERE i.registered_at >= $1 AND i.registered_at < $2 \
             AND ($3 IS NULL OR i.case_code = $3) \
             ORDER BY i.registered_at, i.id"
        )))
        .bind(from.to_string())
        .bind(until.to_string())
        .bind(case_code.map(str::to_string))
        .fetch_all(&self.pool)
        .await
        .map_err(q(ctx))?;
        entries(&rows).map_err(q(ctx))
    }

    /// Every closed item (the retention review's candidates), oldest
    /// closing first.
    pub async fn closed_entries(&self) -> Result<Vec<RegisterEntry>, RegistryError> {
        let ctx = "closed items";
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM items i \
             WHERE i.closed_at IS NOT NULL ORDER BY i.closed_at, i.id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(q(ctx))?;
        entries(&rows).map_err(q(ctx))
    }
}

fn entries(rows: &[sqlx::any::AnyRow]) -> Result<Vec<RegisterEntry>, sqlx::Error> {
    rows.iter()
        .map(|r| {
            Ok(RegisterEntry {
                item: ItemSummary::from_row(r)?,
            })
        })
        .collect()
}

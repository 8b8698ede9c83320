//! The per-item records the statistics are computed from.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use sqlx::Row;

use super::{Registry, RegistryError, db_time, decode_db_time, parse_db_day, q};
use crate::stats::{Contacts, ItemRecord, Period};

fn utc_midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

impl Registry {
    /// The consultations and opinions of `period` (one unit's when given).
    pub async fn stats_contacts(
        &self,
        period: Period,
        unit: Option<&str>,
    ) -> Result<Contacts, RegistryError> {
        Ok(Contacts {
            consultations: self.stats_consultations(period, unit).await?,
            opinions: self.stats_opinions(period, unit).await?,
        })
    }

    /// Items received in `period` (a day's margin either side for time
    /// zones; [`crate::stats::report`] keeps exact local days), and items
    /// that were waiting for the records officer at some time in it; only
    /// one unit's when `unit` is given.
    pub async fn stats_records(
        &self,
        period: Period,
        unit: Option<&str>,
    ) -> Result<Vec<ItemRecord>, RegistryError> {
        let ctx = format!("statistics for {}", period.label());
        let from = db_time(utc_midnight(period.from - Days::new(1)));
        let to = db_time(utc_midnight(period.to + Days::new(2)));
        let rows = sqlx::query(
            "SELECT channel_kind, unit_id, service_id, state, received_at, registered_at, \
             routed_by, routed_at, closed_at, COALESCE(forward_due, reply_due) AS due, formal_status FROM items \
             WHERE ($3 IS NULL OR unit_id = $3) AND ((received_at >= $1 AND received_at < $2) \
             OR ((routed_by IS NULL OR routed_by <> 'rules') AND registered_at < $2 \
                 AND (routed_at IS NULL OR routed_at >= $1) AND (closed_at IS NULL OR closed_at >= $1)))",
        )
        .bind(from)
        .bind(to)
        .bind(unit)
        .fetch_all(&self.pool)
        .await
        .map_err(q(ctx.clone()))?;
        rows.iter()
            .map(|r| {
                let opt_time = |col: &str| -> Result<Option<DateTime<Utc>>, sqlx::Error> {
                    r.try_get::<Option<String>, _>(col)?
                        .as_deref()
                        .map(decode_db_time)
                        .transpose()
                };
                let due: Option<String> = r.try_get("due")?;
                Ok(ItemRecord {
                    channel: r.try_get("channel_kind")?,
                    unit: r.try_get("unit_id")?,
                    service: r.try_get("service_id")?,
                    state: r.try_get("state")?,
                    received_at: decode_db_time(&r.try_get::<String, _>("received_at")?)?,
                    registered_at: decode_db_time(&r.try_get::<String, _>("registered_at")?)?,
                    routed_by: r.try_get("routed_by")?,
                    routed_at: opt_time("routed_at")?,
                    closed_at: opt_time("closed_at")?,
                    due: due.as_deref().and_then(parse_db_day),
                    formal_status: r.try_get("formal_status")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q(ctx))
    }
}

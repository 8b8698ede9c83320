//! Consultations: visits and calls that were not submissions, logged at the
//! desk without personal data, and read back for the quarterly statistics.

use chrono::{DateTime, Days, Utc};
use sqlx::Row;

use super::{Registry, RegistryError, db_time, decode_db_time, q};
use crate::stats::{ConsultationRecord, Period};

/// A consultation to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsultation {
    /// `counter`, `phone`, `email` … ([`crate::rules::catalogue::APPLY_CHANNELS`]).
    pub channel: String,
    /// The topic: a service of the catalogue.
    pub service_id: String,
    /// The service's unit.
    pub unit_id: Option<String>,
    /// 1–600.
    pub minutes: u32,
    pub at: DateTime<Utc>,
}

impl Registry {
    /// Logs a consultation; returns its id.
    pub async fn log_consultation(&self, c: &NewConsultation) -> Result<String, RegistryError> {
        let id = uuid::Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO consultations (id, logged_at, channel, service_id, unit_id, minutes) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(db_time(c.at))
        .bind(&c.channel)
        .bind(&c.service_id)
        .bind(&c.unit_id)
        .bind(i64::from(c.minutes))
        .execute(&self.pool)
        .await
        .map_err(q("logging a consultation"))?;
        Ok(id)
    }

    /// Consultations logged in `period` (a day's margin either side for
    /// time zones; [`crate::stats::report`] keeps exact local days); one
    /// unit's when `unit` is given.
    pub async fn stats_consultations(
        &self,
        period: Period,
        unit: Option<&str>,
    ) -> Result<Vec<ConsultationRecord>, RegistryError> {
        let ctx = format!("consultations for {}", period.label());
        let (from, to) = margins(period);
        let rows = sqlx::query(
            "SELECT channel, service_id, unit_id, minutes, logged_at FROM consultations \
             WHERE logged_at >= $1 AND logged_at < $2 AND ($3 IS NULL OR unit_id = $3)",
        )
        .bind(from)
        .bind(to)
        .bind(unit)
        .fetch_all(&self.pool)
        .await
        .map_err(q(ctx.clone()))?;
        rows.iter()
            .map(|r| {
                Ok(ConsultationRecord {
                    channel: r.try_get("channel")?,
                    service: r.try_get("service_id")?,
                    unit: r.try_get("unit_id")?,
                    minutes: u64::try_from(r.try_get::<i64, _>("minutes")?).unwrap_or(0),
                    logged_at: decode_db_time(&r.try_get::<String, _>("logged_at")?)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q(ctx))
    }
}

/// The stored-time bounds of `period`, a day wider on each side.
pub(super) fn margins(period: Period) -> (String, String) {
    let midnight = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc();
    (
        db_time(midnight(period.from - Days::new(1))),
        db_time(midnight(period.to + Days::new(2))),
    )
}

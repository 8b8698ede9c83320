//! The embedded bus: a queue table (`bus_messages`) in the registry database.
//! A publish is a committed insert, so a crash loses nothing; a delivery is a
//! lease that expires if the process dies, so it is delivered again.
//! Routed notices (unit and review queues) have no consumer here: the
//! janitor prunes them ([`Bus::prune_notices`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::Row;
use tokio::sync::Notify;

use super::{Acker, Bus, BusError, Consumer, DeadReason, Delivery, Route};
use crate::registry::{Registry, db_time};

const INTAKE: &str = "intake";
/// How long a delivery stays invisible to other consumers.
const LEASE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);

fn db_err(e: sqlx::Error) -> BusError {
    BusError::Unavailable(format!("embedded bus database: {e}"))
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The queue table, shared with the registry's database.
#[derive(Clone)]
pub struct EmbeddedBus {
    registry: Registry,
    delivery_limit: u32,
    wake: Arc<Notify>,
}

impl EmbeddedBus {
    /// A bus on the registry's database.
    pub fn new(registry: Registry, delivery_limit: u32) -> Self {
        Self {
            registry,
            delivery_limit,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Leases the next visible intake message, live or dead-lettered, and
    /// returns its row (`id`, `payload`, `deliveries`, `dead_reason`).
    async fn lease_next(&self, dead: bool) -> Result<Option<sqlx::any::AnyRow>, BusError> {
        let now = now_ms();
        let (is, counted) = if dead {
            ("IS NOT NULL", "")
        } else {
            ("IS NULL", ", deliveries = deliveries + 1")
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE bus_messages SET visible_at = $1{counted} \
             WHERE id = (SELECT id FROM bus_messages WHERE queue = $2 AND dead_reason {is} \
                         AND visible_at <= $3 ORDER BY id LIMIT 1) \
               AND dead_reason {is} AND visible_at <= $3 \
             RETURNING id, payload, deliveries, dead_reason"
        )))
        .bind(now + LEASE.as_millis() as i64)
        .bind(INTAKE)
        .bind(now)
        .fetch_optional(self.registry.pool())
        .await
        .map_err(db_err)
    }

    async fn claim(&self) -> Result<Option<Delivery>, BusError> {
        let row = self.lease_next(false).await?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get("id").map_err(db_err)?;
        let payload: String = row.try_get("payload").map_err(db_err)?;
        let deliveries: i64 = row.try_get("deliveries").map_err(db_err)?;
        let acker = EmbeddedAcker {
            registry: self.registry.clone(),
            id: id.clone(),
        };
        if deliveries > i64::from(self.delivery_limit) {
            // Delivered too often without an ack: the consumer keeps dying on it.
            acker
                .dead_letter(&format!("{LIMIT_REACHED} {} reached", self.delivery_limit))
                .await?;
            crate::metrics::item_dead_lettered();
            tracing::error!(bus_message = %id, deliveries, "message dead-lettered after too many deliveries");
            return Ok(None);
        }
        Ok(Some(Delivery::new(
            payload.into_bytes(),
            u32::try_from(deliveries - 1).unwrap_or(0),
            Box::new(acker),
        )))
    }

    /// Takes the next dead letter (leased like a delivery).
    async fn claim_dead(&self) -> Result<Option<Delivery>, BusError> {
        let row = self.lease_next(true).await?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get("id").map_err(db_err)?;
        let payload: String = row.try_get("payload").map_err(db_err)?;
        let reason: String = row.try_get("dead_reason").map_err(db_err)?;
        Ok(Some(Delivery::dead(
            payload.into_bytes(),
            DeadReason {
                transient: reason.starts_with(LIMIT_REACHED),
                reason,
            },
            Box::new(EmbeddedAcker {
                registry: self.registry.clone(),
                id,
            }),
        )))
    }
}

/// How the reason of a message dead-lettered by the delivery limit starts.
const LIMIT_REACHED: &str = "delivery limit of";

struct EmbeddedAcker {
    registry: Registry,
    id: String,
}

#[async_trait]
impl Acker for EmbeddedAcker {
    async fn ack(&self) -> Result<(), BusError> {
        sqlx::query("DELETE FROM bus_messages WHERE id = $1")
            .bind(&self.id)
            .execute(self.registry.pool())
            .await
            .map(|_| ())
            .map_err(db_err)
    }

    async fn retry(&self) -> Result<(), BusError> {
        sqlx::query("UPDATE bus_messages SET visible_at = $2 WHERE id = $1")
            .bind(&self.id)
            .bind(now_ms() + 1000)
            .execute(self.registry.pool())
            .await
            .map(|_| ())
            .map_err(db_err)
    }

    async fn dead_letter(&self, reason: &str) -> Result<(), BusError> {
        // Visible at once to the dead-letter consumer, which parks it.
        sqlx::query("UPDATE bus_messages SET dead_reason = $2, visible_at = 0 WHERE id = $1")
            .bind(&self.id)
            .bind(reason)
            .execute(self.registry.pool())
            .await
            .map(|_| ())
            .map_err(db_err)
    }
}

struct EmbeddedConsumer {
    bus: EmbeddedBus,
    dead: bool,
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        let mut backoff = POLL;
        loop {
            let claimed = if self.dead {
                self.bus.claim_dead().await
            } else {
                self.bus.claim().await
            };
            match claimed {
                Ok(Some(d)) => return Some(d),
                Ok(None) => backoff = POLL,
                Err(e) => {
                    tracing::warn!("{e}; retrying in {backoff:?}");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
            if self.dead {
                // Dead letters are rare: no need to poll as often.
                tokio::time::sleep(backoff * 4).await;
                continue;
            }
            tokio::select! {
                _ = self.bus.wake.notified() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn publish(
        &self,
        route: Route<'_>,
        payload: &[u8],
        message_id: &str,
    ) -> Result<(), BusError> {
        let queue = match route {
            Route::Intake(_) => INTAKE.to_string(),
            Route::Unit(u) => format!("unit.{u}"),
            Route::Review => "review".to_string(),
        };
        let text = std::str::from_utf8(payload)
            .map_err(|e| BusError::Other(format!("message {message_id} is not UTF-8 JSON: {e}")))?;
        // The row id orders the queue; the message id is inside the payload.
        sqlx::query(
            "INSERT INTO bus_messages (id, queue, payload, deliveries, visible_at, created_at) \
             VALUES ($1, $2, $3, 0, 0, $4)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&queue)
        .bind(text)
        .bind(db_time(Utc::now()))
        .execute(self.registry.pool())
        .await
        .map_err(|e| BusError::NotConfirmed {
            message_id: message_id.to_string(),
            reason: e.to_string(),
        })?;
        if queue == INTAKE {
            self.wake.notify_one();
        }
        Ok(())
    }

    async fn consume_intake(&self) -> Result<Box<dyn Consumer>, BusError> {
        Ok(Box::new(EmbeddedConsumer {
            bus: self.clone(),
            dead: false,
        }))
    }

    async fn consume_dead(&self) -> Result<Box<dyn Consumer>, BusError> {
        Ok(Box::new(EmbeddedConsumer {
            bus: self.clone(),
            dead: true,
        }))
    }

    async fn ready(&self) -> bool {
        self.registry.ping().await.is_ok()
    }

    async fn prune_notices(
        &self,
        before: chrono::DateTime<Utc>,
        keep: u32,
    ) -> Result<u64, BusError> {
        let pool = self.registry.pool();
        let mut removed = sqlx::query(
            "DELETE FROM bus_messages WHERE queue <> $1 AND dead_reason IS NULL AND created_at < $2",
        )
        .bind(INTAKE)
        .bind(db_time(before))
        .execute(pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        if keep == 0 {
            return Ok(removed);
        }
        let queues: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT queue FROM bus_messages WHERE queue <> $1")
                .bind(INTAKE)
                .fetch_all(pool)
                .await
                .map_err(db_err)?;
        for (queue,) in queues {
            // Row ids are UUIDv7: their order is the order of publishing.
            removed += sqlx::query(
                "DELETE FROM bus_messages WHERE queue = $1 AND dead_reason IS NULL AND id NOT IN \
                 (SELECT id FROM bus_messages WHERE queue = $1 ORDER BY id DESC LIMIT $2)",
            )
            .bind(&queue)
            .bind(i64::from(keep))
            .execute(pool)
            .await
            .map_err(db_err)?
            .rows_affected();
        }
        Ok(removed)
    }

    async fn dead_letter_count(&self) -> Result<u64, BusError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM bus_messages WHERE dead_reason IS NOT NULL")
            .fetch_one(self.registry.pool())
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

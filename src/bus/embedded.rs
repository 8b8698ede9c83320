//! The embedded bus: a queue table (`bus_messages`) in the registry database.
//! A publish is a committed insert, so a crash loses nothing; a delivery is a
//! claim of the one leased-work primitive ([`crate::registry::lease`],
//! database clock, fencing token), renewed while the engine holds it and
//! run out if the process dies, so it is delivered again.
//! Routed notices (unit and review queues) have no consumer here: the
//! janitor prunes them ([`Bus::prune_notices`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::Row;
use tokio::sync::Notify;

use super::{Acker, Bus, BusError, Consumer, DeadReason, Delivery, Route};
use crate::registry::lease::{BUS_DEAD, BUS_INTAKE, Lease, Queue, Renewal};
use crate::registry::{Registry, RegistryError, db_time};

const INTAKE: &str = "intake";
/// How long a delivery stays invisible to other consumers without renewal
/// (the daemon renews it while the engine holds it).
const LEASE_SECS: i64 = 60;
const POLL: Duration = Duration::from_millis(250);
/// A retried delivery is due again after this long.
const RETRY_SECS: i64 = 1;

fn db_err(e: sqlx::Error) -> BusError {
    BusError::Unavailable(format!("embedded bus database: {e}"))
}

fn lease_err(e: RegistryError) -> BusError {
    match e {
        RegistryError::LeaseLost { .. } => BusError::Other(e.to_string()),
        e => BusError::Unavailable(format!("embedded bus database: {e}")),
    }
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

    /// Claims the next intake message, live or dead-lettered, with its
    /// row (`payload`, `deliveries`, `dead_reason`).
    async fn lease_next(
        &self,
        queue: &'static Queue,
    ) -> Result<Option<(sqlx::any::AnyRow, Lease)>, BusError> {
        let mut claimed = self
            .registry
            .claim_rows(
                queue,
                None,
                1,
                LEASE_SECS,
                &["payload", "deliveries", "dead_reason"],
            )
            .await
            .map_err(lease_err)?;
        Ok(claimed.pop())
    }

    fn acker(&self, queue: &'static Queue, lease: Lease) -> EmbeddedAcker {
        EmbeddedAcker {
            registry: self.registry.clone(),
            renewal: Renewal::start(self.registry.clone(), queue, lease.clone(), LEASE_SECS),
            queue,
            lease,
        }
    }

    async fn claim(&self) -> Result<Option<Delivery>, BusError> {
        let Some((row, lease)) = self.lease_next(&BUS_INTAKE).await? else {
            return Ok(None);
        };
        let payload: String = row.try_get("payload").map_err(db_err)?;
        let deliveries: i64 = row.try_get("deliveries").map_err(db_err)?;
        let id = lease.key.clone();
        let acker = self.acker(&BUS_INTAKE, lease);
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

    /// Takes the next dead letter (claimed like a delivery).
    async fn claim_dead(&self) -> Result<Option<Delivery>, BusError> {
        let Some((row, lease)) = self.lease_next(&BUS_DEAD).await? else {
            return Ok(None);
        };
        let payload: String = row.try_get("payload").map_err(db_err)?;
        let reason: String = row.try_get("dead_reason").map_err(db_err)?;
        Ok(Some(Delivery::dead(
            payload.into_bytes(),
            DeadReason {
                transient: reason.starts_with(LIMIT_REACHED),
                reason,
            },
            Box::new(self.acker(&BUS_DEAD, lease)),
        )))
    }
}

/// How the reason of a message dead-lettered by the delivery limit starts.
const LIMIT_REACHED: &str = "delivery limit of";

struct EmbeddedAcker {
    registry: Registry,
    queue: &'static Queue,
    lease: Lease,
    /// Keeps the claim while the engine holds the delivery (a registry
    /// stall does not hand it to another consumer); stops when dropped.
    #[allow(dead_code)]
    renewal: Renewal,
}

#[async_trait]
impl Acker for EmbeddedAcker {
    async fn ack(&self) -> Result<(), BusError> {
        match self.registry.remove(self.queue, &self.lease).await {
            // Claimed again by another consumer after this claim ran out:
            // it registers (a duplicate, recognised) and removes it.
            Err(e @ RegistryError::LeaseLost { .. }) => {
                tracing::warn!("{e}; left to the consumer holding it now");
                Ok(())
            }
            other => other.map_err(lease_err),
        }
    }

    async fn retry(&self) -> Result<(), BusError> {
        self.registry
            .postpone(self.queue, &self.lease, RETRY_SECS)
            .await
            .map_err(lease_err)
    }

    async fn dead_letter(&self, reason: &str) -> Result<(), BusError> {
        // Unclaimed at once, for the dead-letter consumer, which parks it.
        let n = sqlx::query(
            "UPDATE bus_messages SET dead_reason = $3, lease_holder = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_token = $2",
        )
        .bind(&self.lease.key)
        .bind(self.lease.token)
        .bind(reason)
        .execute(self.registry.pool())
        .await
        .map_err(db_err)?
        .rows_affected();
        if n == 1 {
            Ok(())
        } else {
            Err(BusError::Other(format!(
                "bus message {}: claim {} was taken over before it could be dead-lettered",
                self.lease.key, self.lease.token
            )))
        }
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

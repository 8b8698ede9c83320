//! Parked items: nothing accepted is dead-lettered unseen. A consumer of the
//! dead-letter queue (`<prefix>.dead`, the embedded bus's dead rows) keeps
//! each dead letter in the registry's `parked` table with its raw bytes and
//! the reason, then removes it from the queue. `pietura parked retry`
//! publishes a parked item to intake again; one whose reason may pass by
//! itself (the delivery limit burned while the registry was failing) is
//! retried by the consumer, with backoff, while the registry answers. The
//! engine's idempotency makes a retry of a registered item harmless; a
//! parked item found registered is no longer parked.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, BusError, DeadReason, Route};
use crate::message::IntakeMessage;
use crate::registry::parked::{ParkedItem, parked_id};
use crate::registry::{Registry, RegistryError};

/// How often parked items are looked at (registered since? due for a retry?).
const TICK: Duration = Duration::from_secs(2);
/// The first automatic retry's wait; doubled per attempt, up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// Why parking or retrying failed.
#[derive(Debug, thiserror::Error)]
pub enum ParkedError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("no parked item {0}")]
    NotFound(String),
    #[error("parked item {0} is not a message this build can read; it stays parked")]
    Unreadable(String),
}

impl ParkedError {
    /// Worth trying again later (the database or the bus was unreachable).
    pub fn is_transient(&self) -> bool {
        match self {
            ParkedError::Registry(e) => e.is_transient(),
            ParkedError::Bus(BusError::Refused(_) | BusError::Tls(_)) => false,
            ParkedError::Bus(_) => true,
            ParkedError::NotFound(_) | ParkedError::Unreadable(_) => false,
        }
    }
}

/// The wait before the next automatic retry after `attempts`.
fn backoff(attempts: i64) -> chrono::Duration {
    crate::backoff::doubling_chrono(BACKOFF_FIRST, attempts - 1, BACKOFF_MAX)
}

/// Keeps one dead letter as a parked item.
pub async fn park(
    registry: &Registry,
    payload: &[u8],
    why: &DeadReason,
) -> Result<String, RegistryError> {
    let (id, message_id) = parked_id(payload);
    let now = Utc::now();
    let previous = registry.parked_item(&id).await?.map_or(0, |p| p.attempts);
    registry
        .park(
            &id,
            message_id.as_deref(),
            payload,
            &why.reason,
            why.transient,
            now,
            now + backoff(previous + 1),
        )
        .await?;
    Ok(id)
}

/// Publishes a parked item to intake again. It stays parked until the
/// engine has registered it (then [`tidy`] removes it).
pub async fn retry(
    registry: &Registry,
    bus: &dyn Bus,
    item: &ParkedItem,
) -> Result<(), ParkedError> {
    let msg: IntakeMessage = serde_json::from_slice(&item.payload)
        .map_err(|_| ParkedError::Unreadable(item.id.clone()))?;
    bus.publish(Route::Intake(&msg), &item.payload, &msg.id.to_string())
        .await?;
    let now = Utc::now();
    registry
        .parked_retried(&item.id, now, now + backoff(item.attempts + 1))
        .await?;
    Ok(())
}

/// Retries one parked item by its id.
pub async fn retry_id(registry: &Registry, bus: &dyn Bus, id: &str) -> Result<(), ParkedError> {
    retry_asked(registry, bus, id, None).await
}

/// Retries one parked item by its id for `actor` (a records officer on the
/// desk), whose request goes on the item's audit log once it is registered.
pub async fn retry_asked(
    registry: &Registry,
    bus: &dyn Bus,
    id: &str,
    actor: Option<&str>,
) -> Result<(), ParkedError> {
    let item = registry
        .parked_item(id)
        .await?
        .ok_or_else(|| ParkedError::NotFound(id.to_string()))?;
    if let Some(actor) = actor {
        registry.parked_retry_asked(id, actor).await?;
    }
    retry(registry, bus, &item).await
}

/// Removes parked items that are registered by now; with `auto`, retries
/// those whose reason may have passed and whose backoff is over. The
/// number retried.
pub async fn tidy(registry: &Registry, bus: &dyn Bus, auto: bool) -> Result<usize, ParkedError> {
    let now = crate::registry::db_time(Utc::now());
    let mut retried = 0;
    for item in registry.parked().await? {
        if let Some(mid) = &item.message_id
            && let Some(registered) = registry.find_by_message(mid).await?
        {
            registry.unpark_registered(&item.id, &registered.id).await?;
            tracing::info!(parked = %item.id, "parked item is registered; no longer parked");
            continue;
        }
        if auto && item.transient && item.retry_after <= now {
            retry(registry, bus, &item).await?;
            tracing::info!(parked = %item.id, attempts = item.attempts, "parked item retried");
            retried += 1;
        }
    }
    Ok(retried)
}

/// The dead-letter consumer and the automatic retries, until `shutdown`.
pub async fn run(registry: Registry, bus: Arc<dyn Bus>, shutdown: CancellationToken) {
    let consume = {
        let (registry, bus, stop) = (registry.clone(), bus.clone(), shutdown.clone());
        async move {
            let mut dead = loop {
                match bus.consume_dead().await {
                    Ok(c) => break c,
                    Err(e) => {
                        tracing::warn!("dead-letter consumer: {e}; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(TICK) => {}
                        }
                    }
                }
            };
            loop {
                let d = tokio::select! {
                    _ = stop.cancelled() => return,
                    d = dead.next() => d,
                };
                let Some(d) = d else { return };
                let why = d.dead_reason.clone().unwrap_or(DeadReason {
                    reason: "dead-lettered".into(),
                    transient: false,
                });
                match park(&registry, &d.payload, &why).await {
                    Ok(id) => {
                        crate::metrics::item_parked();
                        tracing::warn!(parked = %id, reason = %why.reason, "dead letter parked");
                        if let Err(e) = d.ack().await {
                            tracing::warn!(
                                "parked, but the dead letter stays ({e}); parked again later, harmlessly"
                            );
                        }
                    }
                    Err(e) => {
                        tracing::error!("dead letter not parked, it stays in the queue: {e}");
                        let _ = d.retry().await;
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(TICK) => {}
                        }
                    }
                }
            }
        }
    };
    let auto = async {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            if registry.parked_count().await.is_ok_and(|n| n == 0) {
                continue;
            }
            // Only while the registry can register: a retry into a failing
            // registry would only burn the delivery limit again.
            if !crate::engine::registry_can_register(&registry).await {
                continue;
            }
            if let Err(e) = tidy(&registry, bus.as_ref(), true).await {
                tracing::warn!("parked items not looked at: {e}");
            }
        }
    };
    tokio::join!(consume, auto);
}

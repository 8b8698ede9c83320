//! Drains the outbox: routed notices committed with their items are claimed
//! (leased, so several daemons draining one outbox publish each notice once),
//! published to unit and review queues with confirms, then deleted. A failed
//! publish leaves the row for the next round, so a broker outage delays
//! routing notices but never loses them.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, Route};
use crate::registry::{OutboxEntry, Registry};

const BATCH: i64 = 200;
/// How long a claimed batch is this daemon's: far longer than publishing
/// with confirms takes. A daemon stalled past it finds its deletion refused
/// (logged) and the batch published again by whoever claimed it next.
const CLAIM_SECS: i64 = 60;
/// A publish not confirmed within this long (a blocked broker) is cut off
/// and counted as failed, well inside the claim: the entry is given back
/// for a later try instead of being published again behind this daemon's
/// back once its claim ran out.
const PUBLISH_CUT_OFF: Duration = Duration::from_secs(CLAIM_SECS as u64 / 2);

/// Publishes outbox rows until `shutdown`.
pub async fn run(
    registry: Registry,
    bus: Arc<dyn Bus>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut pause = Duration::from_millis(500);
    loop {
        match drain_once(&registry, bus.as_ref()).await {
            Ok(n) if n as i64 == BATCH => continue,
            Ok(_) => pause = Duration::from_millis(500),
            Err(e) => {
                tracing::warn!("outbox: {e}; retrying in {pause:?}");
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

async fn publish_one(registry: &Registry, bus: &dyn Bus, e: &OutboxEntry) -> Result<(), String> {
    let route = match e.destination.strip_prefix("unit:") {
        Some(unit) => Route::Unit(unit),
        None => Route::Review,
    };
    let published = tokio::time::timeout(
        PUBLISH_CUT_OFF,
        bus.publish(route, e.payload.as_bytes(), &e.id),
    )
    .await
    .unwrap_or_else(|_| {
        Err(crate::bus::BusError::NotConfirmed {
            message_id: e.id.clone(),
            reason: format!("not confirmed within {} s", PUBLISH_CUT_OFF.as_secs()),
        })
    });
    match published {
        Ok(()) => {
            if let Some(unit) = e.destination.strip_prefix("unit:") {
                crate::metrics::item_routed(unit);
            }
            Ok(())
        }
        Err(err) => {
            let text = format!(
                "item {}: publishing to {} failed: {err}",
                e.item_id, e.destination
            );
            let _ = registry.outbox_failed(e, &text).await;
            Err(text)
        }
    }
}

/// Claims and publishes one batch (confirms awaited together) and removes
/// the delivered rows in one transaction; returns how many were delivered.
/// A crash between the two publishes a notice again once its claim runs
/// out: units see the item id and must treat a repeat as the same item.
pub async fn drain_once(registry: &Registry, bus: &dyn Bus) -> Result<usize, String> {
    let pending = registry
        .outbox_claim(BATCH, CLAIM_SECS)
        .await
        .map_err(|e| e.to_string())?;
    let results = join_all(pending.iter().map(|e| publish_one(registry, bus, e))).await;
    let delivered: Vec<&OutboxEntry> = pending
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(e, _)| e)
        .collect();
    if !delivered.is_empty() {
        registry
            .outbox_delivered(&delivered)
            .await
            .map_err(|e| e.to_string())?;
    }
    match results.into_iter().find_map(Result::err) {
        Some(first_error) => Err(first_error),
        None => Ok(delivered.len()),
    }
}

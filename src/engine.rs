//! The rules engine's consumer: take an intake message, classify it, register
//! it (one transaction, outbox included) and only then acknowledge it.
//!
//! Failure handling per item: an undecodable message is dead-lettered at
//! once (poison); a registry outage keeps the delivery unacknowledged and
//! retries in place, so waiting for the database never burns the delivery
//! limit; a crash mid-item means redelivery, which the idempotency key turns
//! into a no-op.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::{Bus, BusError, Delivery};
use crate::deadline::Calendar;
use crate::message::IntakeMessage;
use crate::registry::numbering::Pattern;
use crate::registry::{Registration, Registry};
use crate::rules::watch::SharedRules;

/// Everything the engine needs, shared by its workers.
pub struct Engine {
    pub registry: Registry,
    pub bus: Arc<dyn Bus>,
    pub rules: SharedRules,
    pub pattern: Pattern,
    pub unclassified_index: String,
    pub calendar: Arc<dyn Calendar>,
    pub concurrency: usize,
    /// Woken after each registration so the dispatcher publishes at once.
    pub dispatch_wake: Arc<Notify>,
}

impl Engine {
    /// Consumes until `shutdown`, then waits for items in flight.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), BusError> {
        let mut consumer = self.bus.consume_intake().await?;
        let permits = Arc::new(Semaphore::new(self.concurrency));
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break,
                d = consumer.next() => match d { Some(d) => d, None => break },
            };
            let engine = self.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                engine.handle(delivery, &stop).await;
                drop(permit);
            });
        }
        // In-flight items finish (or give up on shutdown) before we return.
        let _ = permits.acquire_many(self.concurrency as u32).await;
        tracing::info!("rules engine stopped");
        Ok(())
    }

    /// Processes one delivery to its end: acked, dead-lettered, or left for redelivery.
    pub async fn handle(&self, delivery: Delivery, shutdown: &CancellationToken) {
        let msg = match IntakeMessage::decode(&delivery.payload) {
            Ok(m) => m,
            Err(e) => {
                let preview: String = String::from_utf8_lossy(&delivery.payload)
                    .chars()
                    .take(200)
                    .collect();
                tracing::error!(error = %e, payload_start = %preview, "dead-lettering a message that cannot be read; inspect the dead-letter queue");
                crate::metrics::item_dead_lettered();
                if let Err(e) = delivery.dead_letter(&e.to_string()).await {
                    tracing::error!("dead-lettering failed, it will be delivered again: {e}");
                }
                return;
            }
        };
        let span = tracing::info_span!("item", id = %msg.id, channel = %msg.channel.kind, instance = %msg.channel.instance);
        self.register(msg, delivery, shutdown)
            .instrument(span)
            .await
    }

    async fn register(&self, msg: IntakeMessage, delivery: Delivery, shutdown: &CancellationToken) {
        let rules = self.rules.load_full();
        let decision = rules.evaluate(&msg);
        let mut backoff = Duration::from_millis(200);
        let registration = loop {
            match self
                .registry
                .register(
                    &msg,
                    &decision,
                    &rules,
                    &self.pattern,
                    &self.unclassified_index,
                    self.calendar.as_ref(),
                )
                .await
            {
                Ok(r) => break r,
                Err(e) => {
                    tracing::warn!("registration failed, retrying in {backoff:?}: {e}");
                    tokio::select! {
                        // Unacknowledged: the bus delivers it again after restart.
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        };
        match &registration {
            Registration::New(item) => {
                let waited =
                    (chrono::Utc::now() - msg.received_at).num_milliseconds() as f64 / 1000.0;
                crate::metrics::item_registered(msg.channel.kind.as_str(), &item.state, waited);
                tracing::info!(
                    number = %item.registration_number,
                    state = %item.state,
                    unit = item.unit_id.as_deref().unwrap_or("-"),
                    rule = item.rule_id.as_deref().unwrap_or("-"),
                    reason = item.review_reason.as_deref().unwrap_or("-"),
                    "registered"
                );
                self.dispatch_wake.notify_one();
            }
            Registration::Duplicate(item) => {
                crate::metrics::item_duplicate(msg.channel.kind.as_str());
                tracing::info!(number = %item.registration_number, "already registered; redelivery acknowledged");
            }
        }
        if let Err(e) = delivery.ack().await {
            tracing::warn!(
                "ack failed after registration ({e}); the redelivery will be recognised as a duplicate"
            );
        }
    }
}

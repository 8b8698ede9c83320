//! The rules engine's consumer: take an intake message, resolve what its
//! door described ([`crate::enrich`]: follow-ups, bounces), classify it,
//! register it (one transaction, outbox included), link it to its
//! near-duplicates ([`crate::enrich::duplicates`]) and only then acknowledge it.
//!
//! Failure handling per item: an undecodable message is dead-lettered at
//! once (poison, then parked: [`crate::parked`]); a registry outage keeps
//! the delivery unacknowledged and retries in place; a crash mid-item means
//! redelivery, which the idempotency key turns into a no-op. An item the
//! database refuses (by the driver's error kind,
//! [`crate::registry::refuses_the_data`]), or that fails
//! [`Engine::poison_attempts`] times while the registry registers others,
//! is dead-lettered and so parked, and its delivery settled: it never holds
//! a worker or its batch.
//!
//! A restart while the registry is failing must not burn the bus's delivery
//! limit: the engine consumes only once [`registry_can_register`] says the
//! registry can take a registration, stops taking new deliveries while
//! registrations fail, and leaves a stalled batch unacknowledged on
//! shutdown. What still reaches the limit is parked and retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::{Bus, BusError, Delivery};
use crate::enrich::Enriched;
use crate::message::IntakeMessage;
use crate::registry::numbering::Pattern;
use crate::registry::{RegisterPolicy, Registration, Registry};
use crate::rules::RuleSet;
use crate::rules::eval::Decision;
use crate::rules::watch::SharedRules;

/// Everything the engine needs, shared by its workers.
pub struct Engine {
    pub registry: Registry,
    pub bus: Arc<dyn Bus>,
    pub rules: SharedRules,
    pub pattern: Pattern,
    pub unclassified_index: String,
    /// The configured external DMS connector, whose registration is queued
    /// with each new item (`None`: the built-in registry only).
    pub dms_connector: Option<String>,
    pub concurrency: usize,
    /// Most deliveries registered in one transaction.
    pub batch_max: usize,
    /// Woken after each registration so the dispatcher publishes at once.
    pub dispatch_wake: Arc<Notify>,
    /// Tries of one item that fail for a reason classified transient while
    /// the registry registers others, after which the item is poison: it is
    /// dead-lettered (then parked), not retried in place for ever.
    pub poison_attempts: u32,
    /// clamd, when configured: every message's blobs are scanned before it
    /// is classified ([`Engine::scan`]).
    pub malware: Option<Arc<crate::malware::Scanner>>,
    /// Near-duplicates linked once an item is registered ([`Engine::link_duplicates`]).
    pub duplicates: crate::enrich::duplicates::DuplicateSettings,
    /// One item at a time looks for its duplicates and stores its
    /// fingerprint, so two copies registered in one batch find each other.
    pub duplicate_turn: tokio::sync::Mutex<()>,
}

/// Whether the registry can take a registration now: it answers, and (on
/// PostgreSQL) the number counters can be locked for writing within 2 s, as
/// each registration does. False while the counters are locked by someone
/// else or the database fails.
pub async fn registry_can_register(registry: &Registry) -> bool {
    if registry.is_sqlite() {
        return registry.ping().await.is_ok();
    }
    let probe = async {
        let mut tx = registry.pool().begin().await?;
        sqlx::query("SET LOCAL lock_timeout = '2s'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SET LOCAL statement_timeout = '4s'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("LOCK TABLE registration_counters IN ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        tx.rollback().await
    };
    match tokio::time::timeout(Duration::from_secs(6), probe).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!("registry cannot register now: {e}");
            false
        }
        Err(_) => false,
    }
}

/// Waits until [`registry_can_register`]; false if shutdown came first.
async fn wait_for_registry(registry: &Registry, shutdown: &CancellationToken) -> bool {
    let mut backoff = Duration::from_millis(500);
    let mut said = false;
    loop {
        if registry_can_register(registry).await {
            if said {
                tracing::info!("the registry can register again; consuming");
            }
            return true;
        }
        if !said {
            tracing::warn!(
                "the registry cannot register now; not taking deliveries until it can (the bus's delivery limit is not burned)"
            );
            said = true;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

impl Engine {
    /// Consumes until `shutdown`, then waits for items in flight.
    ///
    /// A feeder task moves deliveries into a channel; each worker takes what
    /// is waiting there (up to `batch_max`) and registers it in one
    /// transaction, so a burst costs one commit per batch, not per item.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), BusError> {
        // Deliveries taken while the registry cannot register would each
        // count against the delivery limit at the next restart.
        if !wait_for_registry(&self.registry, &shutdown).await {
            return Ok(());
        }
        let mut consumer = self.bus.consume_intake().await?;
        let (tx, mut rx) = mpsc::channel::<Delivery>(self.batch_max);
        let stop = shutdown.clone();
        // Set while registrations fail for a transient reason: no new
        // deliveries are taken until the registry can register again.
        let registry_failing = Arc::new(AtomicBool::new(false));
        let (registry, failing) = (self.registry.clone(), registry_failing.clone());
        let feeder = tokio::spawn(async move {
            loop {
                if failing.load(Ordering::Relaxed) {
                    if !wait_for_registry(&registry, &stop).await {
                        return;
                    }
                    failing.store(false, Ordering::Relaxed);
                }
                let next = tokio::select! {
                    _ = stop.cancelled() => return,
                    d = consumer.next() => d,
                };
                let Some(d) = next else { return };
                if tx.send(d).await.is_err() {
                    return;
                }
            }
        });
        let permits = Arc::new(Semaphore::new(self.concurrency));
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                d = rx.recv() => match d { Some(d) => d, None => break },
            };
            let mut batch = vec![first];
            while batch.len() < self.batch_max {
                match rx.try_recv() {
                    Ok(d) => batch.push(d),
                    Err(_) => break,
                }
            }
            let engine = self.clone();
            let stop = shutdown.clone();
            let failing = registry_failing.clone();
            tokio::spawn(async move {
                engine.handle_batch(batch, &stop, &failing).await;
                drop(permit);
            });
        }
        // Deliveries still in the channel are not acknowledged: the bus
        // delivers them again. Items in flight finish (or give up) first.
        let _ = feeder.await;
        let _ = permits.acquire_many(self.concurrency as u32).await;
        tracing::info!("rules engine stopped");
        Ok(())
    }

    fn policy<'a>(&'a self, rules: &'a RuleSet) -> RegisterPolicy<'a> {
        RegisterPolicy {
            rules,
            pattern: &self.pattern,
            unclassified_index: &self.unclassified_index,
            dms_connector: self.dms_connector.as_deref(),
        }
    }

    /// Processes deliveries to their end: acked, dead-lettered, or left for redelivery.
    /// `registry_failing` is set while the registry fails, cleared when it
    /// registers again.
    pub async fn handle_batch(
        &self,
        deliveries: Vec<Delivery>,
        shutdown: &CancellationToken,
        registry_failing: &AtomicBool,
    ) {
        let mut items = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match IntakeMessage::decode(&delivery.payload) {
                Ok(msg) => items.push((msg, delivery)),
                Err(e) => {
                    // Its size, never its content: a citizen's data stays
                    // out of the log (the parked item keeps the bytes).
                    tracing::error!(error = %e, payload_bytes = delivery.payload.len(), "dead-lettering a message that cannot be read; it is parked for the records office");
                    dead_letter(delivery, &e.to_string()).await;
                }
            }
        }
        // What the doors only described is resolved first: a recorded
        // bounce is settled here, a follow-up learns its item.
        let mut kept = Vec::with_capacity(items.len());
        for (mut msg, delivery) in items {
            let span = tracing::info_span!("item", id = %msg.id, channel = %msg.channel.kind, instance = %msg.channel.instance);
            match self.enrich(&mut msg, shutdown).instrument(span).await {
                // Shutting down: unacknowledged, delivered again later.
                None => return,
                Some(Enriched::Register) => kept.push((msg, delivery)),
                Some(Enriched::BounceRecorded { .. }) => {
                    if let Err(e) = delivery.ack().await {
                        tracing::warn!(
                            "ack failed after recording a bounce ({e}); the redelivery records nothing twice"
                        );
                    }
                }
            }
        }
        let mut items = kept;
        if items.is_empty() {
            return;
        }
        if let Some(scanner) = &self.malware {
            for (msg, _) in items.iter_mut() {
                self.scan(scanner, msg).await;
            }
        }
        let started = std::time::Instant::now();
        let rules = self.rules.load_full();
        let decisions: Vec<Decision> = items.iter().map(|(m, _)| rules.evaluate(m)).collect();
        let eval_us = started.elapsed().as_micros() as u64;
        let pairs: Vec<(&IntakeMessage, &Decision)> =
            items.iter().map(|(m, _)| m).zip(&decisions).collect();
        let mut backoff = Duration::from_millis(200);
        let mut failures = 0u32;
        let registrations = loop {
            // A stalled registry must not hold a shutdown: the batch stays
            // unacknowledged and is delivered again.
            let policy = self.policy(&rules);
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.registry.register_batch(&pairs, &policy) => r,
            };
            match attempt {
                Ok(r) => {
                    registry_failing.store(false, Ordering::Relaxed);
                    break Some(r);
                }
                // A lost race or one item the database refuses: settle
                // each item on its own so the others are not held back.
                Err(e) if e.is_unique_violation() || !e.is_transient() => break None,
                Err(e) => {
                    // Failing again while the registry can register: one
                    // item may be what fails; each is settled on its own
                    // (a poison one parked), not holding the batch for ever.
                    if failures >= 1 && registry_can_register(&self.registry).await {
                        break None;
                    }
                    failures += 1;
                    registry_failing.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        items = items.len(),
                        "registration failed, retrying in {backoff:?}: {e}"
                    );
                    // On shutdown they stay unacknowledged: delivered again after restart.
                    if !crate::backoff::pause_before_retry(&mut backoff, shutdown).await {
                        return;
                    }
                }
            }
        };
        // Where a batch's time goes, for tuning `engine.batch_max` and `concurrency`.
        tracing::debug!(
            size = items.len(),
            eval_us,
            register_ms = started.elapsed().as_millis() as u64,
            "batch registered"
        );
        // In batch order; `None` everywhere when the batch fell back to one by one.
        let mut registered = registrations.map(Vec::into_iter);
        let work = items.into_iter().zip(decisions).map(|((msg, delivery), decision)| {
            let span = tracing::info_span!("item", id = %msg.id, channel = %msg.channel.kind, instance = %msg.channel.instance);
            let done = registered.as_mut().and_then(Iterator::next);
            let rules = rules.clone();
            async move {
                let outcome = match done {
                    Some(r) => RegisterOutcome::Registered(Box::new(r)),
                    None => match self.register_one(&msg, &decision, &rules, shutdown).await {
                        Some(outcome) => outcome,
                        // Shutting down: unacknowledged, delivered again later.
                        None => return,
                    },
                };
                if let RegisterOutcome::Registered(r) = &outcome
                    && !self.link_duplicates(&msg, r.item(), shutdown).await
                {
                    // Shutting down: unacknowledged; the redelivery is
                    // recognised as registered and linked then.
                    return;
                }
                self.finish(&msg, outcome, delivery).await;
            }
            .instrument(span)
        });
        futures::future::join_all(work).await;
    }

    /// The enrichment step ([`crate::enrich`]), a transient registry
    /// failure retried in place; `None` on shutdown. References that cannot
    /// be resolved for good leave the item a new one.
    async fn enrich(
        &self,
        msg: &mut IntakeMessage,
        shutdown: &CancellationToken,
    ) -> Option<Enriched> {
        let mut backoff = Duration::from_millis(200);
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return None,
                r = crate::enrich::enrich(&self.registry, msg) => r,
            };
            match attempt {
                Ok(enriched) => return Some(enriched),
                Err(e) if !e.is_transient() => {
                    tracing::warn!("references not resolved ({e}); registered as a new item");
                    return Some(Enriched::Register);
                }
                Err(e) => {
                    tracing::warn!("resolving references failed, retrying in {backoff:?}: {e}");
                    if !crate::backoff::pause_before_retry(&mut backoff, shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Links a registered item to its near-duplicates
    /// ([`crate::enrich::duplicates`]), a transient registry failure retried
    /// in place; false on shutdown. Run for a redelivered item too, so a
    /// crash between registration and linking links it then (never twice).
    /// A permanent failure leaves the item registered, unlinked.
    async fn link_duplicates(
        &self,
        msg: &IntakeMessage,
        item: &crate::registry::ItemSummary,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut backoff = Duration::from_millis(200);
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return false,
                r = async {
                    let _turn = self.duplicate_turn.lock().await;
                    crate::enrich::duplicates::link_duplicates(&self.registry, &self.duplicates, msg, item).await
                } => r,
            };
            match attempt {
                Ok(_) => return true,
                Err(e) if !e.is_transient() => {
                    tracing::warn!("near-duplicates not linked ({e}); the item stays registered");
                    return true;
                }
                Err(e) => {
                    tracing::warn!("linking near-duplicates failed, retrying in {backoff:?}: {e}");
                    if !crate::backoff::pause_before_retry(&mut backoff, shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Scans the message's blobs before it is classified and notes the
    /// outcome in the channel's metadata (`metadata.<kind>.malware`): malware quarantines the blob and
    /// sends the item to review (the reason names the signature, never a
    /// file); clamd out of reach leaves it `pending` (registered unrouted,
    /// [`crate::malware::run_pending`] routes it) or, when not required,
    /// `not_scanned`.
    async fn scan(&self, scanner: &crate::malware::Scanner, msg: &mut IntakeMessage) {
        use crate::malware::{Verdict, infected_reason, unscannable_reason};
        let note = match scanner.scan_message(msg).await {
            Ok(Verdict::Clean) => serde_json::json!({ "state": "clean" }),
            Ok(Verdict::Infected(found)) => {
                let mut kept = true;
                for (sha, signature) in &found {
                    if let Err(e) = self
                        .registry
                        .quarantine(sha, signature, &msg.id.to_string())
                        .await
                    {
                        tracing::warn!(
                            "malware found, but the quarantine could not be recorded ({e}); the item waits for a scan again"
                        );
                        kept = false;
                    }
                }
                if kept {
                    crate::metrics::malware_found();
                    let signatures: Vec<&str> = found.iter().map(|(_, s)| s.as_str()).collect();
                    tracing::warn!(signatures = ?signatures, "malware found; quarantined, the item goes to review");
                    msg.review_reason = Some(infected_reason(&found));
                    serde_json::json!({ "state": "infected", "signatures": signatures })
                } else {
                    serde_json::json!({ "state": "pending" })
                }
            }
            Err(e) if e.is_transient() => {
                if scanner.required {
                    tracing::warn!(
                        "not scanned for malware ({e}); registered unrouted until clamd answers"
                    );
                    serde_json::json!({ "state": "pending" })
                } else {
                    tracing::warn!(
                        "not scanned for malware ({e}); routed unscanned (malware.required = false)"
                    );
                    serde_json::json!({ "state": "not_scanned" })
                }
            }
            Err(e) => {
                msg.review_reason = Some(unscannable_reason(&e));
                serde_json::json!({ "state": "unscannable" })
            }
        };
        // Kept with the channel's own metadata (its only top-level key).
        msg.add_note("malware", note);
    }

    /// The one-item path: retries transient failures in place; an item the
    /// database refuses comes back as `Refused`. `None` on shutdown: the item
    /// stays unacknowledged for redelivery.
    async fn register_one(
        &self,
        msg: &IntakeMessage,
        decision: &Decision,
        rules: &RuleSet,
        shutdown: &CancellationToken,
    ) -> Option<RegisterOutcome> {
        let mut backoff = Duration::from_millis(200);
        let mut failures = 0u32;
        loop {
            let policy = self.policy(rules);
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return None,
                r = self.registry.register(msg, decision, &policy) => r,
            };
            match attempt {
                Ok(r) => return Some(RegisterOutcome::Registered(Box::new(r))),
                Err(e) if !e.is_transient() => {
                    return Some(RegisterOutcome::Refused(e.to_string()));
                }
                Err(e) => {
                    failures += 1;
                    // Only while others can be registered: a registry that
                    // fails for everyone is waited for, never a reason to
                    // park what it cannot take now.
                    if failures >= self.poison_attempts
                        && registry_can_register(&self.registry).await
                    {
                        crate::metrics::item_poison();
                        return Some(RegisterOutcome::Refused(format!(
                            "failed {failures} times while the registry registered other items: {e}"
                        )));
                    }
                    tracing::warn!("registration failed, retrying in {backoff:?}: {e}");
                    if !crate::backoff::pause_before_retry(&mut backoff, shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Logs, counts and acknowledges a settled item.
    async fn finish(&self, msg: &IntakeMessage, outcome: RegisterOutcome, delivery: Delivery) {
        let registration = match outcome {
            RegisterOutcome::Registered(r) => *r,
            RegisterOutcome::Refused(reason) => {
                // Parked here, with the reason, whatever the bus (RabbitMQ's
                // dead-letter queue would keep only "rejected"); the
                // dead-letter queue is the way when the registry cannot.
                match self.registry.park_refused(&delivery.payload, &reason).await {
                    Ok(parked) => {
                        crate::metrics::item_parked();
                        tracing::error!(%parked, "the registry refuses this item; parked for the records office: {reason}");
                        if let Err(e) = delivery.ack().await {
                            tracing::warn!(
                                "parked, but the ack failed ({e}); a redelivery is parked again, harmlessly"
                            );
                        }
                    }
                    Err(e) => {
                        tracing::error!(
                            "the registry refuses this item and it could not be parked ({e}); dead-lettering it: {reason}"
                        );
                        dead_letter(delivery, &reason).await;
                    }
                }
                return;
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

/// What registering one item came to.
enum RegisterOutcome {
    Registered(Box<Registration>),
    /// The database refuses the item's data; no retry will change that.
    Refused(String),
}

async fn dead_letter(delivery: Delivery, reason: &str) {
    crate::metrics::item_dead_lettered();
    if let Err(e) = delivery.dead_letter(reason).await {
        tracing::error!("dead-lettering failed, it will be delivered again: {e}");
    }
}

//! The durable hand-off between channels and the rules engine, and from the
//! engine to unit queues. Two implementations behind one narrow trait:
//! RabbitMQ ([`amqp`]) for production and a queue table in the registry
//! database ([`embedded`]) for a single machine with no broker.
//!
//! The contract both keep: [`Bus::publish`] returns `Ok` only once the
//! message is durably stored (publisher confirm, or committed row), so a
//! channel may acknowledge its source after it; a consumer acknowledges a
//! delivery only after the registry commit; a poison message is
//! dead-lettered, never dropped.

pub mod amqp;
pub mod embedded;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{BusKind, Settings};
use crate::message::IntakeMessage;
use crate::registry::Registry;

/// Bus failures. Transient ones are retried by the caller; the message says which.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unreachable: {0} (is RabbitMQ running at the configured bus.url / bus.urls?)")]
    Unavailable(String),
    #[error("message {message_id} was not confirmed by the bus: {reason}")]
    NotConfirmed { message_id: String, reason: String },
    #[error("bus error: {0}")]
    Other(String),
    /// A file `bus.tls` names cannot be used: fix the configuration.
    #[error("bus TLS: {0}")]
    Tls(#[from] crate::tls::TlsFileError),
    /// Refused before publishing: the door answers 400 naming the field.
    #[error("message refused before publishing: {0}")]
    Refused(#[from] crate::message::MessageError),
}

/// Where a message goes.
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    /// From a channel to the rules engine.
    Intake(&'a IntakeMessage),
    /// A registered item's notice to a unit's queue.
    Unit(&'a str),
    /// A registered item's notice to the review queue.
    Review,
}

/// One delivery taken from the intake queue.
pub struct Delivery {
    pub payload: Vec<u8>,
    /// How many times this message has been delivered before, if the bus knows.
    pub previous_deliveries: u32,
    /// Why the bus dead-lettered it (deliveries from [`Bus::consume_dead`]).
    pub dead_reason: Option<DeadReason>,
    acker: Box<dyn Acker>,
}

/// Why a message is in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadReason {
    pub reason: String,
    /// The delivery limit was reached (restarts, a failing registry): it may
    /// pass by itself, unlike a message the engine refused.
    pub transient: bool,
}

impl Delivery {
    /// Wraps a payload and its bus-specific acknowledger.
    pub fn new(payload: Vec<u8>, previous_deliveries: u32, acker: Box<dyn Acker>) -> Self {
        Self {
            payload,
            previous_deliveries,
            dead_reason: None,
            acker,
        }
    }

    /// A delivery from the dead-letter queue, with why it is there.
    pub fn dead(payload: Vec<u8>, reason: DeadReason, acker: Box<dyn Acker>) -> Self {
        Self {
            payload,
            previous_deliveries: 0,
            dead_reason: Some(reason),
            acker,
        }
    }

    /// Done: remove from the queue. Call only after the registry commit.
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }

    /// Give back for another try (counts towards the delivery limit).
    pub async fn retry(self) -> Result<(), BusError> {
        self.acker.retry().await
    }

    /// Poison: move to the dead-letter queue with a reason.
    pub async fn dead_letter(self, reason: &str) -> Result<(), BusError> {
        self.acker.dead_letter(reason).await
    }
}

/// Bus-specific acknowledgement of one delivery.
#[async_trait]
pub trait Acker: Send + Sync {
    async fn ack(&self) -> Result<(), BusError>;
    async fn retry(&self) -> Result<(), BusError>;
    async fn dead_letter(&self, reason: &str) -> Result<(), BusError>;
}

/// A stream of deliveries from the intake queue.
#[async_trait]
pub trait Consumer: Send {
    /// The next delivery; reconnects internally. `None` when the bus is closed.
    async fn next(&mut self) -> Option<Delivery>;
}

/// Publishing and consuming, whatever carries the messages.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Durably hands over a message; `Ok` means the bus has it.
    async fn publish(
        &self,
        route: Route<'_>,
        payload: &[u8],
        message_id: &str,
    ) -> Result<(), BusError>;

    /// Starts consuming the rules engine's intake queue.
    async fn consume_intake(&self) -> Result<Box<dyn Consumer>, BusError>;

    /// Readiness: can we publish right now?
    async fn ready(&self) -> bool;

    /// Starts consuming the dead-letter queue (`<prefix>.dead`; the embedded
    /// bus's dead rows); acknowledging a delivery removes the dead letter.
    async fn consume_dead(&self) -> Result<Box<dyn Consumer>, BusError>;

    /// Messages currently in the dead-letter queue.
    async fn dead_letter_count(&self) -> Result<u64, BusError>;

    /// Messages waiting in the intake queue outside the registry's
    /// database (RabbitMQ's `<prefix>.engine`); the embedded bus's are rows
    /// the registry can read, so 0 there.
    async fn intake_backlog(&self) -> Result<u64, BusError> {
        Ok(0)
    }

    /// Removes routed notices (unit and review queues) nothing will read:
    /// those older than `before`, and all but the newest `keep` of a queue
    /// (0: no count bound); the number removed. Only the embedded bus keeps
    /// them (in the registry's database, where no unit consumes them);
    /// RabbitMQ's queues are bounded by their arguments.
    async fn prune_notices(
        &self,
        _before: chrono::DateTime<chrono::Utc>,
        _keep: u32,
    ) -> Result<u64, BusError> {
        Ok(0)
    }

    /// Makes sure each unit has its queue before the first notice for it.
    async fn declare_units(&self, _units: &[String]) -> Result<(), BusError> {
        Ok(())
    }
}

/// Publishes a channel's message to the engine (the common case), after
/// the one normalisation and validation ([`IntakeMessage::prepare`]) the
/// engine runs too: what the engine would refuse is refused here, before
/// the door answers 2xx ([`BusError::Refused`]).
pub async fn publish_intake(bus: &dyn Bus, msg: &IntakeMessage) -> Result<(), BusError> {
    let prepared;
    let msg = if msg.check().is_ok() {
        msg
    } else {
        let mut m = msg.clone();
        m.prepare()?;
        prepared = m;
        &prepared
    };
    let payload = msg.encode();
    bus.publish(Route::Intake(msg), &payload, &msg.id.to_string())
        .await?;
    crate::metrics::item_received(msg.channel.kind.as_str());
    Ok(())
}

/// Opens the bus the settings ask for.
pub async fn open(settings: &Settings, registry: &Registry) -> Result<Arc<dyn Bus>, BusError> {
    match settings.bus.kind {
        BusKind::Embedded => Ok(Arc::new(embedded::EmbeddedBus::new(
            registry.clone(),
            settings.bus.delivery_limit,
        ))),
        BusKind::Amqp => {
            let urls = settings.bus_urls().map_err(BusError::Other)?;
            if urls.is_empty() {
                return Err(BusError::Other("bus.url is not set".into()));
            }
            let bus = amqp::AmqpBus::connect(amqp::AmqpOptions {
                urls,
                quorum_group_size: settings.bus.quorum_group_size,
                prefix: settings.bus.prefix.clone(),
                prefetch: settings.bus.prefetch,
                delivery_limit: settings.bus.delivery_limit,
                publish_timeout: std::time::Duration::from_secs(30),
                notice_bounds: amqp::NoticeBounds {
                    max_length: settings.bus.unit_queue_max_length,
                    max_bytes: settings.bus.unit_queue_max_bytes,
                },
                tls: settings.amqp_tls()?,
            })
            .await?;
            Ok(Arc::new(bus))
        }
    }
}

//! What a door gets: the narrow source interface. A door turns what
//! arrives into messages; it does not look into the registry, the daemon's
//! settings or the rules. It gets
//!
//! - a [`Publisher`]: hands an [`IntakeMessage`] to the bus, confirmed;
//! - a [`BlobSink`]: stores bytes and returns their SHA-256 reference;
//! - its [`DoorState`]: a small keyed store namespaced to its instance
//!   (get / put / compare-and-set, and named leases on the one lease
//!   primitive, [`crate::registry::lease`]), plus the door tables that
//!   predate it (mailbox positions, held SMS, idempotency-key claims);
//! - [`Registrations`]: a read-only view answering "is this key or message
//!   registered, under which number" (a form's receipt, a repeated callback);
//! - [`Site`]: the few daemon facts a door shows or obeys (its public
//!   address, the submission rate, how long a form waits for its number,
//!   the signature trust anchors), and the unit ids a door may name;
//! - shutdown: the [`CancellationToken`](tokio_util::sync::CancellationToken)
//!   its [`Channel::run`](super::Channel::run) receives.
//!
//! Its own settings are its typed config ([`super::DoorConfig`]).
//! What answers the sender is a sink ([`SinkContext`]): built beside the
//! door from the same config, it may read the registry and the rules.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::blobs::{BlobError, BlobStore, BlobWriter, StoredBlob};
use crate::bus::{Bus, BusError};
use crate::config::Settings;
use crate::message::IntakeMessage;
use crate::registry::Registry;
use crate::registry::lease::NAMED;
use crate::rules::watch::SharedRules;
use crate::xmldsig::TrustList;

pub use crate::registry::ItemSummary;
pub use crate::registry::RegistryError as StateError;
pub use crate::registry::claims::KeyClaim;
pub use crate::registry::lease::{Lease, Renewal};
pub use crate::registry::mailboxes::MailboxPosition;
pub use crate::registry::sms_pending::HeldSms;
pub use crate::registry::{db_time, parse_db_time};

/// What a door is built with (see the module's text).
#[derive(Clone)]
pub struct DoorContext {
    pub publisher: Publisher,
    pub blobs: BlobSink,
    pub state: DoorState,
    pub registrations: Registrations,
    pub site: Arc<Site>,
}

/// What the sinks beside a door (its replier, its upkeep) are built with.
#[derive(Clone)]
pub struct SinkContext {
    pub registry: Registry,
    pub settings: Arc<Settings>,
    pub rules: SharedRules,
    pub blobs: BlobStore,
}

/// The daemon facts a door shows or obeys.
#[derive(Debug, Clone, Default)]
pub struct Site {
    /// The daemon's public address, without a trailing `/`.
    pub public_url: String,
    /// Submissions one client may make per minute (forms).
    pub submissions_per_minute: u32,
    /// How long a form waits for its registration number.
    pub registration_wait: Duration,
    /// Trust anchors for signed containers (`[signatures] trust`).
    pub signature_trust: Arc<TrustList>,
    /// The units of the rules in force when the door was built (a door's
    /// sub-address map names them).
    pub units: BTreeSet<String>,
}

impl Site {
    /// The facts of `settings`, with the units of the rules in force.
    pub fn of(settings: &Settings, rules: &SharedRules, trust: Arc<TrustList>) -> Self {
        Site {
            public_url: settings.http.public_url.trim_end_matches('/').to_string(),
            submissions_per_minute: settings.http.submissions_per_minute,
            registration_wait: Duration::from_millis(settings.http.registration_wait_ms),
            signature_trust: trust,
            units: rules.load().units.keys().cloned().collect(),
        }
    }

    /// The public status page of a tracking id.
    pub fn status_url(&self, tracking_id: &str) -> String {
        format!("{}/status/{tracking_id}", self.public_url)
    }
}

impl DoorContext {
    /// The context of door `instance`.
    pub fn new(
        instance: &str,
        bus: Arc<dyn Bus>,
        blobs: BlobStore,
        registry: Registry,
        site: Arc<Site>,
    ) -> Self {
        DoorContext {
            publisher: Publisher { bus },
            blobs: BlobSink { store: blobs },
            state: DoorState::new(instance, registry.clone()),
            registrations: Registrations { registry },
            site,
        }
    }
}

/// Hands messages to the bus; `publish` returns once the bus confirmed.
#[derive(Clone)]
pub struct Publisher {
    bus: Arc<dyn Bus>,
}

impl Publisher {
    /// Publishes `msg` on the intake route, confirmed ([`crate::bus::publish_intake`]).
    pub async fn publish(&self, msg: &IntakeMessage) -> Result<(), BusError> {
        crate::bus::publish_intake(self.bus.as_ref(), msg).await
    }
}

/// Stores attachments and originals before their message is published.
#[derive(Clone)]
pub struct BlobSink {
    store: BlobStore,
}

impl BlobSink {
    /// Stores `bytes`; their SHA-256 and size.
    pub async fn put(&self, bytes: &[u8]) -> Result<StoredBlob, BlobError> {
        self.store.put(bytes).await
    }

    /// A blob written in chunks, refused past `limit` bytes.
    pub async fn writer(&self, limit: u64) -> Result<BlobWriter, BlobError> {
        self.store.writer(limit).await
    }
}

/// Read-only: which items are registered under a key or message id.
#[derive(Clone)]
pub struct Registrations {
    registry: Registry,
}

impl Registrations {
    /// The item registered under idempotency key `key`.
    pub async fn by_key(&self, key: &str) -> Result<Option<ItemSummary>, StateError> {
        self.registry.find_by_key(key).await
    }

    /// The item message `message_id` was registered as.
    pub async fn by_message(&self, message_id: &str) -> Result<Option<ItemSummary>, StateError> {
        self.registry.find_by_message(message_id).await
    }

    /// The message an item was registered from.
    pub async fn message_of(&self, item_id: &str) -> Result<IntakeMessage, StateError> {
        self.registry.item_message(item_id).await
    }
}

/// One door instance's state: its keyed values, its named leases and its
/// door tables, all under its instance id.
#[derive(Clone)]
pub struct DoorState {
    instance: Arc<str>,
    registry: Registry,
}

impl DoorState {
    /// The state of door `instance`, kept in `registry`.
    pub fn new(instance: &str, registry: Registry) -> Self {
        DoorState {
            instance: instance.into(),
            registry,
        }
    }

    /// The instance every key and lease is namespaced to.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The value of `key`, if set.
    pub async fn get(&self, key: &str) -> Result<Option<String>, StateError> {
        self.registry.door_state(&self.instance, key).await
    }

    /// Sets `key` to `value`.
    pub async fn put(&self, key: &str, value: &str) -> Result<(), StateError> {
        self.registry
            .put_door_state(&self.instance, key, value)
            .await
    }

    /// Sets `key` to `value` only while it is `expected` (None: unset);
    /// false when another daemon changed it first.
    pub async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StateError> {
        self.registry
            .swap_door_state(&self.instance, key, expected, value)
            .await
    }

    /// The named work `what` of this instance (`what:instance[:detail]`).
    fn work(&self, what: &str, detail: &str) -> String {
        if detail.is_empty() {
            format!("{what}:{}", self.instance)
        } else {
            format!("{what}:{}:{detail}", self.instance)
        }
    }

    /// Claims the named work `what` (`detail` tells one piece from another)
    /// for `ttl_secs`; None while another daemon holds it.
    pub async fn claim(
        &self,
        what: &str,
        detail: &str,
        ttl_secs: i64,
    ) -> Result<Option<Lease>, StateError> {
        self.registry
            .claim_named(&self.work(what, detail), ttl_secs)
            .await
    }

    /// Renews `lease` in the background until stopped ([`Renewal`]).
    pub fn renewal(&self, lease: &Lease, ttl_secs: i64) -> Renewal {
        Renewal::start(self.registry.clone(), &NAMED, lease.clone(), ttl_secs)
    }

    /// Gives `lease` back: the work may be claimed at once.
    pub async fn release(&self, lease: &Lease) -> Result<(), StateError> {
        self.registry
            .release(&NAMED, std::slice::from_ref(lease))
            .await
    }

    /// Removes the work of `lease` (done, never claimed again).
    pub async fn remove(&self, lease: &Lease) -> Result<(), StateError> {
        self.registry.remove(&NAMED, lease).await
    }

    /// Records `outcome` on the work of `lease` and gives it back.
    pub async fn complete(&self, lease: &Lease, outcome: &str) -> Result<(), StateError> {
        self.registry.complete_named(lease, outcome).await
    }

    /// Takes or renews (`held`) the lease of `mailbox`; None while another
    /// daemon holds it.
    pub async fn lease_mailbox(
        &self,
        mailbox: &str,
        held: Option<&Lease>,
        ttl_secs: i64,
    ) -> Result<Option<Lease>, StateError> {
        self.registry
            .lease_mailbox(&self.instance, mailbox, held, ttl_secs)
            .await
    }

    /// Who holds `mailbox`'s lease and until when.
    pub async fn mailbox_holder(
        &self,
        mailbox: &str,
    ) -> Result<Option<(String, String)>, StateError> {
        self.registry.mailbox_lease(&self.instance, mailbox).await
    }

    /// Where reading `mailbox` stopped.
    pub async fn mailbox_position(&self, mailbox: &str) -> Result<MailboxPosition, StateError> {
        self.registry
            .mailbox_position(&self.instance, mailbox)
            .await
    }

    /// Moves `mailbox`'s position while `lease` holds it (false: lost).
    pub async fn advance_mailbox(
        &self,
        mailbox: &str,
        lease: &Lease,
        ttl_secs: i64,
        pos: MailboxPosition,
    ) -> Result<bool, StateError> {
        self.registry
            .advance_mailbox(&self.instance, mailbox, lease, ttl_secs, pos)
            .await
    }

    /// `mailbox`'s last error (the desk's channel overview).
    pub async fn mailbox_error(&self, mailbox: &str, error: &str) -> Result<(), StateError> {
        self.registry
            .mailbox_error(&self.instance, mailbox, error)
            .await
    }

    /// Holds one SMS part until its group is complete.
    pub async fn hold_sms(&self, sms: &HeldSms) -> Result<(), StateError> {
        self.registry.hold_sms(&self.instance, sms).await
    }

    /// Every SMS part held and not yet published.
    pub async fn held_sms(&self) -> Result<Vec<HeldSms>, StateError> {
        self.registry.held_sms(&self.instance).await
    }

    /// Seals a group under `sealed_as` while `flush` holds the flush.
    pub async fn seal_sms_group(
        &self,
        flush: &Lease,
        gateway_ids: &[&str],
        sealed_as: &str,
        ttl_secs: i64,
    ) -> Result<bool, StateError> {
        self.registry
            .seal_sms_group(&self.instance, flush, gateway_ids, sealed_as, ttl_secs)
            .await
    }

    /// Marks a group's parts published.
    pub async fn mark_sms_published(
        &self,
        gateway_ids: &[&str],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StateError> {
        self.registry
            .mark_sms_published(&self.instance, gateway_ids, now)
            .await
    }

    /// Claims idempotency key `key` for a submission (its content hash and
    /// message id) before it is published.
    pub async fn claim_key(
        &self,
        key: &str,
        content_sha256: &str,
        message_id: &str,
    ) -> Result<KeyClaim, StateError> {
        self.registry
            .claim_key(key, content_sha256, message_id)
            .await
    }
}

//! The engine's enrichment step: what a door only *describes* about an
//! item — the answers it replies to, a registration number it names, the
//! acknowledgement a delivery report is about — resolved against the
//! registry before the item is classified. Doors never look items up for
//! this; they write a [`References`] into their metadata (`refers_to`) and
//! the engine ([`crate::engine`]) calls [`enrich`].
//!
//! - A **delivery report** about our answer to a registered item is recorded
//!   on that item (`reply_bounced`, once per report: a redelivery records
//!   nothing twice) and not registered.
//! - A **follow-up** — a message replying to our answer, or naming an
//!   item's number — is linked to that item (`follow_up_of`, the shape
//!   [`IntakeMessage::follow_up_of`] reads) only when it comes from that
//!   item's sender; else it would leak into a stranger's case and is a new
//!   item.
//!
//! Whether the sender is proven enough for either is the door's decision,
//! made before it writes the references (e-mail: SPF, DKIM, DMARC under the
//! channel's `[authenticity]`, [`crate::channels::email::authenticity`]): a
//! door writes only the references it vouches for.
//!
//! Once an item is registered, [`duplicates::link_duplicates`] links it to
//! the items that may be the same letter come by another door (same sender,
//! similar text within a window); never merged, never dropped.

pub mod duplicates;

use serde::{Deserialize, Serialize};

use crate::message::{FollowUp, IntakeMessage};
use crate::registry::{Registry, RegistryError};

/// The metadata key (in the door's own metadata object) of [`References`].
pub const REFERS_TO: &str = "refers_to";

/// What an arriving item says it refers to, as its door read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct References {
    /// Items whose answer this message replies to (e-mail: our
    /// acknowledgement's Message-ID in `In-Reply-To`/`References`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replies_to: Vec<String>,
    /// A registration number the message names (e-mail: the subject's `[Nr. …]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// The message reports that our answer did not arrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<DeliveryReport>,
}

/// A delivery report (a bounce) about our answer to some items.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryReport {
    /// The items whose answer it returns, as it names them.
    pub items: Vec<String>,
    /// The report's own identity (e-mail: its SHA-256, the kept original):
    /// recorded once per item, however often it is delivered.
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostic: Option<String>,
}

impl References {
    /// Nothing to resolve.
    pub fn is_empty(&self) -> bool {
        self.replies_to.is_empty() && self.number.is_none() && self.report.is_none()
    }

    /// The references `msg`'s door wrote, if any (unreadable ones are none:
    /// the item is registered as new).
    pub fn of(msg: &IntakeMessage) -> Option<References> {
        let v = msg.channel_metadata()?.get(REFERS_TO)?;
        serde_json::from_value(v.clone()).ok()
    }
}

/// What the enrichment step decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enriched {
    /// Register the message (a follow-up now says so in its metadata).
    Register,
    /// Nothing to register: a delivery report recorded on the item it is
    /// about. The delivery is acknowledged.
    BounceRecorded { item: String },
}

/// Resolves `msg`'s references against the registry. Read-only but for a
/// bounce's audit line (idempotent by the report's key), so a redelivered
/// message is enriched again to the same result. A registry error is
/// returned as it is (the engine retries a transient one in place).
pub async fn enrich(
    registry: &Registry,
    msg: &mut IntakeMessage,
) -> Result<Enriched, RegistryError> {
    let Some(refs) = References::of(msg) else {
        return Ok(Enriched::Register);
    };
    if let Some(report) = &refs.report {
        let detail = serde_json::json!({
            "from": msg.sender.email,
            "subject": msg.subject,
            "status": report.status,
            "diagnostic": report.diagnostic,
            "original": report.key,
        });
        for item in &report.items {
            if registry
                .record_bounce(item, &report.key, detail.clone())
                .await?
            {
                crate::metrics::answer_bounced(msg.channel.kind.as_str());
                tracing::warn!(item = %item, "our answer bounced; recorded on the item");
                return Ok(Enriched::BounceRecorded { item: item.clone() });
            }
        }
    }
    if let Some(follow_up) = follow_up(registry, msg, &refs).await? {
        let own = msg
            .metadata
            .entry(msg.channel.kind.as_str().to_string())
            .or_insert_with(|| serde_json::json!({}));
        if let Some(obj) = own.as_object_mut() {
            obj.insert(
                "follow_up_of".into(),
                serde_json::to_value(&follow_up).unwrap_or_default(),
            );
        }
    }
    Ok(Enriched::Register)
}

/// The item `msg` follows up: named by our answer it replies to or by its
/// number, and only when `msg` comes from that item's sender.
async fn follow_up(
    registry: &Registry,
    msg: &IntakeMessage,
    refs: &References,
) -> Result<Option<FollowUp>, RegistryError> {
    let Some(sender) = msg.sender.email.as_deref() else {
        return Ok(None);
    };
    let candidates = refs
        .replies_to
        .iter()
        .map(|id| (id.as_str(), "in_reply_to"))
        .chain(refs.number.iter().map(|n| (n.as_str(), "subject_tag")));
    for (key, matched_by) in candidates {
        let Some(item) = registry.find(key).await? else {
            continue;
        };
        let same_sender = item
            .sender_email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(sender));
        if !same_sender {
            tracing::info!(
                number = %item.registration_number,
                "the message names a registered item but does not come from its sender: a new item"
            );
            continue;
        }
        return Ok(Some(FollowUp {
            item_id: item.id,
            registration_number: item.registration_number,
            unit_id: item.unit_id,
            service_id: item.service_id,
            matched_by: matched_by.into(),
        }));
    }
    Ok(None)
}

//! Counter and phone intake: a visitor's or caller's submission, typed in
//! by an officer at the desk ([`crate::desk::counter_form`]), becomes a
//! message of kind `counter` or `phone` like any door's: published on the
//! bus, registered and routed by the engine. Not a configured channel
//! instance (nothing listens; the desk is the door), so its instance is
//! always [`INSTANCE`].
//!
//! What only these kinds carry: the formal status "signed paper" when the
//! visitor signed ([`FormalStatus::SignedPaper`]), the officer's name and
//! the service the officer chose (`metadata.<kind>.chosen_service`, which
//! routes to that service's unit, [`IntakeMessage::chosen_service`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Kind, Words};
use crate::bus::{Bus, BusError, publish_intake};
use crate::message::meta::{KindMetadata, Other};
use crate::message::{AttachmentRef, ChannelKind, ChannelRef, FormalStatus, IntakeMessage};
use crate::phone::normalise_phone;

/// The counter: a visitor's submission.
pub const COUNTER: Kind = Kind::at_desk::<DeskEntryMeta>(
    ChannelKind::Counter,
    Words {
        lv: "klātienē",
        en: "at the counter",
    },
);

/// The phone: a caller's submission.
pub const PHONE: Kind = Kind::at_desk::<DeskEntryMeta>(
    ChannelKind::Phone,
    Words {
        lv: "pa tālruni",
        en: "by phone",
    },
);

/// The channel instance of every counter and phone item.
pub const INSTANCE: &str = "desk";

/// `metadata.counter` and `metadata.phone`: typed in at the desk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct DeskEntryMeta {
    /// The officer who registered it.
    pub officer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_person: Option<String>,
    /// The service the officer chose (routes to its unit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chosen_service: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

impl KindMetadata for DeskEntryMeta {
    const KINDS: &'static [ChannelKind] = &[ChannelKind::Counter, ChannelKind::Phone];
}

/// What the officer typed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterEntry {
    /// The person or company.
    pub sender_name: String,
    /// A contact person (for a company).
    pub contact: String,
    pub postal_address: String,
    pub phone: String,
    pub email: String,
    /// The personas kods the officer typed (checked at the desk).
    pub personal_code: String,
    pub subject: String,
    pub text: String,
    /// The service the officer chose, if any.
    pub service: Option<String>,
    /// The visitor signed the paper submission.
    pub signed_paper: bool,
    /// The scanned paper or a photo, already in the blob store.
    pub attachment: Option<AttachmentRef>,
    /// Who registered it at the desk (for the audit trail).
    pub officer: String,
}

/// Whether `kind` is one of this module's (`counter` or `phone`).
pub fn is_desk_kind(kind: ChannelKind) -> bool {
    matches!(kind, ChannelKind::Counter | ChannelKind::Phone)
}

/// The message for `entry`, under `id` (the desk form's one-time id, so a
/// double click registers once: it is also the idempotency key's).
pub fn message(kind: ChannelKind, id: Uuid, entry: &CounterEntry) -> IntakeMessage {
    let some = |v: &str| {
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_string())
    };
    let mut msg = IntakeMessage::new(
        ChannelRef {
            kind,
            instance: INSTANCE.into(),
        },
        format!("{}:{id}", kind.as_str()),
        entry.text.trim().replace("\r\n", "\n"),
    );
    msg.id = id;
    msg.sender.name = some(&entry.sender_name);
    msg.sender.email = some(&entry.email).map(|e| e.to_lowercase());
    msg.sender.phone = some(&entry.phone).and_then(|p| normalise_phone(&p));
    msg.sender.postal_address = some(&entry.postal_address);
    msg.sender.personal_code =
        some(&entry.personal_code).and_then(|c| crate::personal_code::parse(&c));
    msg.subject = some(&entry.subject);
    msg.language = Some("lv".into());
    msg.attachments = entry.attachment.iter().cloned().collect();
    msg.formal_status = entry.signed_paper.then_some(FormalStatus::SignedPaper);
    msg.set_meta(&DeskEntryMeta {
        officer: entry.officer.clone(),
        contact_person: some(&entry.contact),
        chosen_service: entry.service.as_deref().and_then(some),
        other: Other::new(),
    });
    msg
}

/// Hands the message on to intake (confirmed by the bus before returning).
pub async fn hand_on(bus: &dyn Bus, msg: &IntakeMessage) -> Result<(), BusError> {
    publish_intake(bus, msg).await?;
    crate::metrics::item_received(msg.channel.kind.as_str());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_counter_entry_becomes_a_message_with_its_service_and_status() {
        let id = Uuid::now_v7();
        let entry = CounterEntry {
            sender_name: " Anna Liepa ".into(),
            phone: "29123456".into(),
            email: "Anna@Example.LV".into(),
            personal_code: " 32123456789 ".into(),
            subject: "Pabalsts".into(),
            text: "Lūdzu piešķirt pabalstu.\r\nAnna".into(),
            service: Some("pabalsti".into()),
            signed_paper: true,
            officer: "ilze".into(),
            ..CounterEntry::default()
        };
        let mut msg = message(ChannelKind::Counter, id, &entry);
        assert_eq!(msg.id, id);
        assert_eq!(msg.idempotency_key, format!("counter:{id}"));
        assert_eq!(msg.sender.name.as_deref(), Some("Anna Liepa"));
        assert_eq!(msg.sender.phone.as_deref(), Some("+37129123456"));
        assert_eq!(msg.sender.email.as_deref(), Some("anna@example.lv"));
        assert_eq!(msg.sender.personal_code.as_deref(), Some("321234-56789"));
        assert_eq!(msg.body, "Lūdzu piešķirt pabalstu.\nAnna");
        assert_eq!(msg.formal_status, Some(FormalStatus::SignedPaper));
        assert_eq!(msg.chosen_service(), Some("pabalsti"));
        msg.prepare().expect("a valid message");

        let call = message(ChannelKind::Phone, Uuid::now_v7(), &CounterEntry::default());
        assert_eq!(call.formal_status, None);
        assert_eq!(call.chosen_service(), None);
        assert!(is_desk_kind(call.channel.kind));
    }
}

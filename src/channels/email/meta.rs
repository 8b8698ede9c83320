//! `metadata.email`: what the e-mail door writes about a mail.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::enrich::References;
use crate::message::ChannelKind;
use crate::message::meta::{KindMetadata, Other, StoredOriginal};

/// Where a mail was read (`metadata.email.imap`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ImapPlace {
    pub mailbox: String,
    pub uid_validity: u32,
    pub uid: u32,
}

/// `metadata.email`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct EmailMeta {
    /// The raw `.eml` as stored.
    pub original: StoredOriginal,
    /// The `Message-ID:` header, if the mail had one.
    pub message_id: Option<String>,
    /// Whether the sender may be acknowledged (not an auto-reply, a list,
    /// one of our addresses, an unproven sender …).
    pub acknowledge: bool,
    pub has_html: bool,
    /// Why no acknowledgement goes out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_acknowledgement: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub forwarded_messages: usize,
    /// SHA-256 of the parts shown inline.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inline: Vec<String>,
    /// Signed containers (.edoc, .asice), with their verdicts
    /// ([`crate::channels::email::edoc::ListedContainer`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signed_containers: Vec<Value>,
    /// Parts that could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imap: Option<ImapPlace>,
    /// What the mail refers to, for the engine's enrichment.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Value>")]
    pub refers_to: Option<References>,
    #[serde(flatten)]
    pub other: Other,
}

impl KindMetadata for EmailMeta {
    const KINDS: &'static [ChannelKind] = &[ChannelKind::Email];
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

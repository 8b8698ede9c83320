//! `metadata.sms`: what the SMS door writes about a message.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::message::ChannelKind;
use crate::message::meta::{KindMetadata, Other};

/// `metadata.sms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SmsMeta {
    /// The gateway kind (`kannel`, `twilio`, …).
    pub gateway: String,
    pub gateway_id: String,
    /// The sender as the gateway said it (a number, short code or name).
    pub from: String,
    /// The number texted (null when neither the gateway nor the channel says).
    pub to: Option<String>,
    /// Whether the answer goes back by SMS.
    pub answer_by_sms: bool,
    /// The size of a binary (8-bit) message, kept as an attachment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary_bytes: Option<usize>,
    /// A long SMS joined from its parts: every part's gateway id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined_gateway_ids: Option<Vec<String>>,
    /// Parts were missing when the join window closed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub incomplete_parts: bool,
    #[serde(flatten)]
    pub other: Other,
}

impl KindMetadata for SmsMeta {
    const KINDS: &'static [ChannelKind] = &[ChannelKind::Sms];
}

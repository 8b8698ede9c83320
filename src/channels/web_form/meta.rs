//! `metadata.web_form`: what the form writes about a submission.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::message::ChannelKind;
use crate::message::meta::{KindMetadata, Other};

/// `metadata.web_form`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct WebFormMeta {
    pub form_id: String,
    /// The field values as normalised (not the honeypot or page token).
    pub fields: BTreeMap<String, String>,
    #[serde(flatten)]
    pub other: Other,
}

impl KindMetadata for WebFormMeta {
    const KINDS: &'static [ChannelKind] = &[ChannelKind::WebForm];
}

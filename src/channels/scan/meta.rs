//! `metadata.scan`: what the scan door writes about a letter.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::message::ChannelKind;
use crate::message::meta::{KindMetadata, Other, StoredOriginal};

/// `metadata.scan`: one letter of a scanned file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ScanMeta {
    /// The scanned file's name.
    pub file: String,
    /// The letter's first and last page in the file.
    pub pages: [u32; 2],
    /// Each page: its text, how it was read (text layer, OCR confidence,
    /// rotation, skew) or why it could not be.
    pub page_details: Vec<Value>,
    /// The letter's mean OCR confidence (0–100).
    pub confidence: i32,
    pub original: StoredOriginal,
    /// What the heuristics found (sender, subject, personas kods …).
    pub extracted: Value,
    #[serde(flatten)]
    pub other: Other,
}

impl KindMetadata for ScanMeta {
    const KINDS: &'static [ChannelKind] = &[ChannelKind::Scan];
}

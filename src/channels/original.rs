//! How an item's original is shown on the desk, as each kind of door
//! describes it ([`super::Door::original`]): the desk renders these, it
//! does not know the kinds.

use crate::message::meta::StoredOriginal;

/// One scanned page for the item page.
pub struct ScanPage {
    pub number: u32,
    pub text: String,
    /// OCR confidence (0–100); none for a PDF's own text layer.
    pub confidence: Option<i64>,
}

/// What the item page shows as the original.
pub enum Original {
    Email {
        /// Sanitised HTML of the mail's HTML part, if it had one.
        html: Option<String>,
        text: String,
    },
    Scan {
        file: String,
        pages: Vec<ScanPage>,
    },
    /// SMS and web forms: the fields as received.
    Fields(Vec<(String, String)>),
    Text(String),
}

impl Original {
    /// The fields of a JSON object as received (`{"name": "Anna"}`), values
    /// that are not text in their JSON form.
    pub fn fields_of(value: Option<&serde_json::Value>) -> Original {
        let Some(serde_json::Value::Object(map)) = value else {
            return Original::Fields(Vec::new());
        };
        Original::Fields(
            map.iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect(),
        )
    }
}

/// The file an item arrived as (a raw mail, a scanned PDF), downloadable
/// from the desk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalFile {
    pub sha256: String,
    pub content_type: String,
    /// The download's name.
    pub name: String,
}

impl OriginalFile {
    /// The stored original of an item (`metadata.<kind>.original`), named
    /// `name`; None when it names no blob.
    pub fn of(original: &StoredOriginal, name: String) -> Option<OriginalFile> {
        if original.sha256.is_empty() {
            return None;
        }
        Some(OriginalFile {
            sha256: original.sha256.clone(),
            content_type: if original.content_type.is_empty() {
                "application/octet-stream".into()
            } else {
                original.content_type.clone()
            },
            name,
        })
    }
}

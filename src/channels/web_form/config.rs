//! A web form's configuration (`channels/<file>.toml`, `type = "web_form"`)
//! and the body limits that follow from its fields and attachments.

use serde::Deserialize;

use super::{HONEYPOT, TOKEN};
use crate::channels::DoorConfig;

/// What a form field feeds in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FieldRole {
    SenderName,
    SenderEmail,
    SenderPhone,
    SenderAddress,
    /// The personas kods: checked, carried as `sender.personal_code` (and
    /// not kept among the metadata's fields), the key of the person's e-adrese.
    SenderPersonalCode,
    Subject,
    Body,
    /// Kept in the message's metadata only.
    #[default]
    Other,
}

/// The HTML input kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    #[default]
    Text,
    Email,
    Tel,
    Textarea,
    /// A personas kods (`DDMMYY-CNNNK` or `32…`–`39…`), checked as such.
    PersonalCode,
}

/// One form field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    pub name: String,
    pub label: String,
    #[serde(default)]
    pub label_en: Option<String>,
    #[serde(default)]
    pub kind: FieldKind,
    #[serde(default)]
    pub role: FieldRole,
    #[serde(default)]
    pub required: bool,
    #[serde(default = "default_max_length")]
    pub max_length: usize,
}

fn default_max_length() -> usize {
    500
}

/// `channels/<file>.toml` with `type = "web_form"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebFormConfig {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub title_en: Option<String>,
    #[serde(default)]
    pub intro: Option<String>,
    #[serde(default)]
    pub intro_en: Option<String>,
    #[serde(default = "default_max_attachments")]
    pub max_attachments: usize,
    #[serde(default = "default_max_attachment_bytes")]
    pub max_attachment_bytes: u64,
    #[serde(default = "default_types")]
    pub allowed_attachment_types: Vec<String>,
    /// Name of the environment variable holding the portal's API key; without
    /// it the JSON API of this form is off.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Submissions of this form read at the same time (the form and its JSON
    /// API together); more wait briefly, then get 503 with `Retry-After`.
    #[serde(default = "default_uploads_in_flight")]
    pub uploads_in_flight: usize,
    #[serde(rename = "field")]
    pub fields: Vec<FieldConfig>,
}

fn default_max_attachments() -> usize {
    10
}
fn default_uploads_in_flight() -> usize {
    4
}
fn default_max_attachment_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_types() -> Vec<String> {
    [
        "application/pdf",
        "image/jpeg",
        "image/png",
        "image/tiff",
        "application/vnd.etsi.asic-e+zip",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.oasis.opendocument.text",
    ]
    .map(String::from)
    .to_vec()
}

/// Bytes a multipart part's headers may take (its name, file name and type).
const PART_OVERHEAD: u64 = 1024;
/// Bytes the hidden fields (page token, honeypot, language) may take each.
pub(super) const HIDDEN_FIELD_BYTES: u64 = 256;
/// How many hidden fields a form carries.
const HIDDEN_FIELDS: u64 = 3;

impl DoorConfig for WebFormConfig {
    fn id(&self) -> &str {
        &self.id
    }

    /// Problems a file loader reports with the file name.
    fn validate(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.fields.is_empty() {
            out.push("a form needs at least one [[field]]".into());
        }
        if !self.fields.iter().any(|f| f.role == FieldRole::Body) {
            out.push("one field must have role = \"body\" (the submission's text)".into());
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.fields {
            if !seen.insert(&f.name) {
                out.push(format!("field {:?} is defined twice", f.name));
            }
            if f.name == HONEYPOT || f.name == TOKEN || f.name == "attachments" || f.name == "lang"
            {
                out.push(format!("field name {:?} is reserved", f.name));
            }
            if f.max_length == 0 {
                out.push(format!("field {:?}: max_length must be at least 1", f.name));
            }
        }
        if self.uploads_in_flight == 0 {
            out.push("uploads_in_flight must be at least 1".into());
        }
        out
    }
}

impl WebFormConfig {
    /// The most bytes a field's value may take: 4 a character in UTF-8.
    pub(super) fn value_bytes(&self, name: &str) -> u64 {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map_or(HIDDEN_FIELD_BYTES, |f| f.max_length as u64 * 4)
    }

    /// The largest `multipart/form-data` body the fields and attachments allow.
    pub fn multipart_limit(&self) -> u64 {
        let fields: u64 = self
            .fields
            .iter()
            .map(|f| self.value_bytes(&f.name) + PART_OVERHEAD)
            .sum();
        let hidden = HIDDEN_FIELDS * (HIDDEN_FIELD_BYTES + PART_OVERHEAD);
        let files = self.max_attachments as u64 * (self.max_attachment_bytes + PART_OVERHEAD);
        fields + hidden + files + PART_OVERHEAD
    }

    /// The largest urlencoded body (no attachments; every byte may be
    /// percent-encoded as three).
    pub fn urlencoded_limit(&self) -> u64 {
        let fields: u64 = self
            .fields
            .iter()
            .map(|f| 3 * (self.value_bytes(&f.name) + f.name.len() as u64) + 2)
            .sum();
        fields + HIDDEN_FIELDS * (3 * HIDDEN_FIELD_BYTES + 32)
    }

    /// The largest JSON API body: text may be `\uXXXX`-escaped (12 bytes a
    /// character at worst), attachments are base64 (4 bytes for 3, with
    /// room for escaped slashes).
    pub fn json_limit(&self) -> u64 {
        let fields: u64 = self
            .fields
            .iter()
            .map(|f| 12 * f.max_length as u64 + f.name.len() as u64 + 8)
            .sum();
        let files = self.max_attachments as u64
            * (self.max_attachment_bytes.div_ceil(3) * 4 * 3 / 2 + PART_OVERHEAD);
        fields + 12 * HIDDEN_FIELD_BYTES + files + PART_OVERHEAD
    }
}

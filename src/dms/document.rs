//! An item as every DMS receives it: a title, the register's fields, and the
//! files (the original as it came, then the attachments), built from the
//! registry and the blob store so every connector uploads the same thing.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::blobs::BlobStore;
use crate::message::IntakeMessage;
use crate::registry::{ItemSummary, Registry};
use crate::rules::RuleSet;

use super::DmsError;

/// The register's fields sent as metadata: `(key, Latvian label)`. Keys
/// become Mayan metadata type names and Paperless custom field names with
/// the `pietura_` prefix; CMIS maps them to properties in its settings.
pub const FIELDS: [(&str, &str); 10] = [
    ("item_id", "Pietura vienības ID"),
    ("registration_number", "Reģistrācijas numurs"),
    ("received_at", "Saņemšanas laiks"),
    ("channel", "Kanāls"),
    ("sender", "Iesniedzējs"),
    ("subject", "Temats"),
    ("unit", "Struktūrvienība"),
    ("service", "Pakalpojums"),
    ("deadline", "Atbildes termiņš"),
    ("state", "Stāvoklis"),
];

/// One item, ready to upload.
#[derive(Debug, Clone)]
pub struct DmsDocument {
    pub item_id: String,
    pub registration_number: String,
    /// `<number> <subject>`, at most 200 characters.
    pub title: String,
    /// The receipt date (Riga), for a DMS's own "created" date.
    pub received_on: chrono::NaiveDate,
    /// Values for [`FIELDS`], in that order; empty where unknown.
    pub fields: Vec<(&'static str, String)>,
    /// Names unique within the item (a DMS matches files by name on retry).
    pub files: Vec<DmsFile>,
}

impl DmsDocument {
    /// One field's value (`""` when unknown).
    pub fn field(&self, key: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The line a connector stores in the DMS to find this item again.
    pub fn marker(&self) -> String {
        format!("pietura-item:{}", self.item_id)
    }
}

/// A file to upload.
#[derive(Debug, Clone)]
pub struct DmsFile {
    pub name: String,
    pub content_type: String,
    pub body: FileBody,
}

/// Where a file's bytes are.
#[derive(Debug, Clone)]
pub enum FileBody {
    /// A blob (read only when uploaded).
    Blob(PathBuf),
    /// Made here: the text of an item that came without a file of its own.
    Inline(Vec<u8>),
}

impl DmsFile {
    /// The bytes to upload.
    pub async fn bytes(&self) -> Result<Vec<u8>, DmsError> {
        match &self.body {
            FileBody::Inline(b) => Ok(b.clone()),
            FileBody::Blob(path) => tokio::fs::read(path).await.map_err(|e| {
                DmsError::File(format!(
                    "file {} ({}) cannot be read from the blob store: {e}; restore the blob and it is tried again",
                    self.name,
                    path.display()
                ))
            }),
        }
    }
}

/// Builds the document of item `item_id` from what the registry holds now.
pub(super) async fn load(
    registry: &Registry,
    blobs: &BlobStore,
    rules: &RuleSet,
    item_id: &str,
) -> Result<DmsDocument, DmsError> {
    let item = registry
        .find(item_id)
        .await
        .map_err(|e| DmsError::Unavailable(e.to_string()))?
        .ok_or_else(|| DmsError::Rejected(format!("item {item_id} is not in the registry")))?;
    let msg = registry
        .item_message(item_id)
        .await
        .map_err(|e| DmsError::Unavailable(e.to_string()))?;
    Ok(build(&item, &msg, blobs, rules))
}

/// The document of one registered item (pure apart from blob paths).
pub fn build(
    item: &ItemSummary,
    msg: &IntakeMessage,
    blobs: &BlobStore,
    rules: &RuleSet,
) -> DmsDocument {
    let unit = item.unit_id.as_ref().map(|id| match rules.units.get(id) {
        Some(u) => format!("{} ({id})", u.name),
        None => id.clone(),
    });
    let service = item
        .service_id
        .as_ref()
        .map(|id| match rules.services.get(id) {
            Some(s) => format!("{} ({id})", s.name),
            None => id.clone(),
        });
    let sender = [
        item.sender_name.as_deref(),
        item.sender_email
            .as_deref()
            .map(|e| format!("<{e}>"))
            .as_deref(),
        item.sender_phone.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let values: [Option<String>; 10] = [
        Some(item.id.clone()),
        Some(item.registration_number.clone()),
        Some(item.received_at.clone()),
        Some(item.channel_kind.clone()),
        Some(sender),
        item.subject.clone(),
        unit,
        service,
        item.due().map(str::to_string),
        Some(item.state.clone()),
    ];
    let fields = FIELDS
        .iter()
        .zip(values)
        .map(|((key, _), v)| (*key, v.unwrap_or_default()))
        .collect();
    let title: String = match item.subject.as_deref() {
        Some(s) if !s.trim().is_empty() => format!("{} {}", item.registration_number, s.trim()),
        _ => item.registration_number.clone(),
    }
    .chars()
    .take(200)
    .collect();
    let received_on = chrono::DateTime::parse_from_rfc3339(&item.received_at)
        .map(|t| crate::deadline::local_date(t.with_timezone(&chrono::Utc)))
        .unwrap_or_else(|_| chrono::Utc::now().date_naive());
    DmsDocument {
        item_id: item.id.clone(),
        registration_number: item.registration_number.clone(),
        title,
        received_on,
        fields,
        files: files_of(item, msg, blobs),
    }
}

/// The original first (the mail as received, the scan), or the item's text
/// when its channel keeps none; then the attachments.
fn files_of(item: &ItemSummary, msg: &IntakeMessage, blobs: &BlobStore) -> Vec<DmsFile> {
    let stem: String = item
        .registration_number
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut files = Vec::with_capacity(msg.attachments.len() + 1);
    // The file the item arrived as, as its door names it.
    let original = crate::channels::Kind::original_file_of(msg)
        .and_then(|f| Some((blobs.path_of(&f.sha256).ok()?, f.content_type)));
    match original {
        Some((path, content_type)) => {
            let ext = match content_type.as_str() {
                "message/rfc822" => "eml",
                "application/pdf" => "pdf",
                "image/tiff" => "tif",
                "image/png" => "png",
                "image/jpeg" => "jpg",
                _ => "bin",
            };
            files.push(DmsFile {
                name: format!("{stem}.{ext}"),
                content_type,
                body: FileBody::Blob(path),
            })
        }
        None => files.push(DmsFile {
            name: format!("{stem}.txt"),
            content_type: "text/plain; charset=utf-8".into(),
            body: FileBody::Inline(item_text(item, msg).into_bytes()),
        }),
    }
    let mut taken: HashSet<String> = files.iter().map(|f| f.name.to_lowercase()).collect();
    for a in &msg.attachments {
        let Ok(path) = blobs.path_of(&a.sha256) else {
            continue;
        };
        let name = unique_name(&a.filename, &mut taken);
        files.push(DmsFile {
            name,
            content_type: a.content_type.clone(),
            body: FileBody::Blob(path),
        });
    }
    files
}

/// `name`, or `name (2)` … when another file of the item has it already.
fn unique_name(name: &str, taken: &mut HashSet<String>) -> String {
    let name = if name.trim().is_empty() {
        "pielikums"
    } else {
        name.trim()
    };
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    let mut candidate = name.to_string();
    let mut n = 2;
    while !taken.insert(candidate.to_lowercase()) {
        candidate = format!("{stem} ({n}){ext}");
        n += 1;
    }
    candidate
}

/// A plain-text rendering of an item that came as fields (form, SMS).
fn item_text(item: &ItemSummary, msg: &IntakeMessage) -> String {
    let mut out = format!(
        "Reģistrācijas numurs: {}\nSaņemts: {}\nKanāls: {} ({})\n",
        item.registration_number, item.received_at, item.channel_kind, item.channel_instance
    );
    for (label, value) in [
        ("Iesniedzējs", &msg.sender.name),
        ("E-pasts", &msg.sender.email),
        ("Tālrunis", &msg.sender.phone),
        ("Adrese", &msg.sender.postal_address),
        ("Temats", &msg.subject),
    ] {
        if let Some(v) = value {
            out.push_str(&format!("{label}: {v}\n"));
        }
    }
    out.push('\n');
    out.push_str(&msg.body);
    if !msg.body.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::unique_name;
    use std::collections::HashSet;

    #[test]
    fn file_names_stay_unique_within_an_item() {
        let mut taken = HashSet::from(["2026-1.eml".to_string()]);
        assert_eq!(unique_name("plāns.pdf", &mut taken), "plāns.pdf");
        assert_eq!(unique_name("Plāns.pdf", &mut taken), "Plāns (2).pdf");
        assert_eq!(unique_name("plāns.pdf", &mut taken), "plāns (3).pdf");
        assert_eq!(unique_name("", &mut taken), "pielikums");
        assert_eq!(unique_name("2026-1.eml", &mut taken), "2026-1 (2).eml");
    }
}

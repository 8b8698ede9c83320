//! The files of a handover package: names made safe, the registers (XML
//! and CSV) and the SHA-256 manifest. [`super::verify`] reads what is
//! written here, by the same names.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use sha2::{Digest, Sha256};

use super::{ArchiveError, ExportRequest, io_at};
use crate::registry::archive::RegisterEntry;

pub const MANIFEST: &str = "manifest-sha256.txt";
pub const REGISTER_XML: &str = "register.xml";
pub const REGISTER_CSV: &str = "register.csv";
pub const FILES_CSV: &str = "register-files.csv";
/// The register XML's namespace (this package format, version 1).
pub const XML_NS: &str = "urn:pietura:archive:register:1";

/// The columns of `register.csv`, in order.
pub const ITEM_COLUMNS: &[&str] = &[
    "registration_number",
    "item_id",
    "received_at",
    "registered_at",
    "channel",
    "sender_name",
    "sender_email",
    "sender_phone",
    "sender_address",
    "sender_e_address",
    "subject",
    "case_code",
    "unit",
    "service",
    "state",
    "formal_status",
    "signature_status",
    "answer_numbers",
    "closed_at",
];

/// The columns of `register-files.csv`, in order.
pub const FILE_COLUMNS: &[&str] = &[
    "registration_number",
    "role",
    "path",
    "name",
    "sha256",
    "size",
    "content_type",
    "note",
];

/// What a file of an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    /// The item as received (raw mail, scanned file).
    Original,
    Attachment,
    /// The PDF/A made for the archive.
    Rendition,
    /// The document of an answer to the item (as uploaded).
    Answer,
}

impl FileRole {
    pub fn as_str(self) -> &'static str {
        match self {
            FileRole::Original => "original",
            FileRole::Attachment => "attachment",
            FileRole::Rendition => "rendition",
            FileRole::Answer => "answer",
        }
    }
}

/// One file of an item in the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub role: FileRole,
    /// Its path in the package; none when it was left out (quarantined).
    pub path: Option<String>,
    /// The name it was received under (display only).
    pub name: String,
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
    pub note: String,
}

/// One item of the register with its files.
#[derive(Debug, Clone)]
pub struct ItemRecord {
    pub entry: RegisterEntry,
    pub sender_address: Option<String>,
    pub sender_e_address: Option<String>,
    pub signature_status: String,
    /// Outgoing numbers of the item's answers.
    pub answer_numbers: Vec<String>,
    pub files: Vec<FileEntry>,
}

impl ItemRecord {
    /// The values of [`ITEM_COLUMNS`].
    fn row(&self) -> Vec<String> {
        let i = &self.entry.item;
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            i.registration_number.clone(),
            i.id.clone(),
            i.received_at.clone(),
            i.registered_at.clone(),
            i.channel_kind.clone(),
            o(&i.sender_name),
            o(&i.sender_email),
            o(&i.sender_phone),
            o(&self.sender_address),
            o(&self.sender_e_address),
            o(&i.subject),
            o(&self.entry.item.case_code),
            o(&i.unit_id),
            o(&i.service_id),
            i.state.clone(),
            o(&self.entry.item.formal_status),
            self.signature_status.clone(),
            self.answer_numbers.join("; "),
            o(&i.closed_at),
        ]
    }
}

/// A sender's file name or a registration number as one path component:
/// letters (Latvian ones too), digits, `.`, `-`, `_`; anything else `_`;
/// never hidden, never `..`, at most 100 characters.
pub fn safe_component(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    while s.starts_with('.') {
        s.replace_range(..1, "_");
    }
    if s.is_empty() { "file".into() } else { s }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A path of the package (relative, `/`-separated) as a path on disk, if it
/// stays inside the package.
pub fn inside(root: &Path, rel: &str) -> Option<PathBuf> {
    let ok = !rel.is_empty()
        && !rel.starts_with('/')
        && !rel.contains('\\')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    ok.then(|| root.join(rel))
}

/// Writes `register.csv`, `register-files.csv` and `register.xml`.
pub fn write_registers(
    out: &Path,
    req: &ExportRequest,
    records: &[ItemRecord],
    made: DateTime<Utc>,
) -> Result<(), ArchiveError> {
    let csv_err = |path: PathBuf| {
        move |e: csv::Error| ArchiveError::Io {
            path,
            source: std::io::Error::other(e),
        }
    };
    let items_path = out.join(REGISTER_CSV);
    let mut w = csv::Writer::from_path(&items_path).map_err(csv_err(items_path.clone()))?;
    w.write_record(ITEM_COLUMNS)
        .map_err(csv_err(items_path.clone()))?;
    for r in records {
        w.write_record(r.row())
            .map_err(csv_err(items_path.clone()))?;
    }
    w.flush().map_err(io_at(&items_path))?;

    let files_path = out.join(FILES_CSV);
    let mut w = csv::Writer::from_path(&files_path).map_err(csv_err(files_path.clone()))?;
    w.write_record(FILE_COLUMNS)
        .map_err(csv_err(files_path.clone()))?;
    for r in records {
        for f in &r.files {
            let size = f.size.to_string();
            w.write_record([
                r.entry.item.registration_number.as_str(),
                f.role.as_str(),
                f.path.as_deref().unwrap_or(""),
                f.name.as_str(),
                f.sha256.as_str(),
                size.as_str(),
                f.content_type.as_str(),
                f.note.as_str(),
            ])
            .map_err(csv_err(files_path.clone()))?;
        }
    }
    w.flush().map_err(io_at(&files_path))?;

    let xml_path = out.join(REGISTER_XML);
    let xml = register_xml(req, records, made).map_err(io_at(&xml_path))?;
    std::fs::write(&xml_path, xml).map_err(io_at(&xml_path))
}

/// The register as XML: one `item` per item, its details as elements
/// (empty ones left out), its files as `file` elements.
fn register_xml(
    req: &ExportRequest,
    records: &[ItemRecord],
    made: DateTime<Utc>,
) -> std::io::Result<Vec<u8>> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let from = req.period.from.to_string();
    let to = req.period.to.to_string();
    let made = crate::registry::db_time(made);
    let mut root = BytesStart::new("register").with_attributes([
        ("xmlns", XML_NS),
        ("period-from", from.as_str()),
        ("period-to", to.as_str()),
        ("created", made.as_str()),
    ]);
    if let Some(case) = &req.case_code {
        root.push_attribute(("case", case.as_str()));
    }
    w.write_event(Event::Start(root))?;
    for r in records {
        let i = &r.entry.item;
        w.write_event(Event::Start(BytesStart::new("item").with_attributes([
            ("number", i.registration_number.as_str()),
            ("id", i.id.as_str()),
        ])))?;
        let row = r.row();
        for (column, value) in ITEM_COLUMNS.iter().zip(&row).skip(2) {
            if column == &"answer_numbers" {
                continue;
            }
            if !value.is_empty() {
                let name = column.replace('_', "-");
                w.write_event(Event::Start(BytesStart::new(name.as_str())))?;
                w.write_event(Event::Text(BytesText::new(value)))?;
                w.write_event(Event::End(BytesEnd::new(name.as_str())))?;
            }
        }
        for number in &r.answer_numbers {
            w.write_event(Event::Empty(
                BytesStart::new("answer").with_attributes([("number", number.as_str())]),
            ))?;
        }
        for f in &r.files {
            let size = f.size.to_string();
            let mut e = BytesStart::new("file").with_attributes([
                ("role", f.role.as_str()),
                ("name", f.name.as_str()),
                ("sha256", f.sha256.as_str()),
                ("size", size.as_str()),
                ("content-type", f.content_type.as_str()),
            ]);
            if let Some(path) = &f.path {
                e.push_attribute(("path", path.as_str()));
            }
            if !f.note.is_empty() {
                e.push_attribute(("note", f.note.as_str()));
            }
            w.write_event(Event::Empty(e))?;
        }
        w.write_event(Event::End(BytesEnd::new("item")))?;
    }
    w.write_event(Event::End(BytesEnd::new("register")))?;
    let mut xml = w.into_inner();
    xml.push(b'\n');
    Ok(xml)
}

/// Every file under `root` (relative, `/`-separated), sorted.
pub fn files_under(root: &Path) -> Result<Vec<String>, ArchiveError> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.map_err(|e| ArchiveError::Io {
            path: e.path().unwrap_or(root).to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        out.push(rel);
    }
    out.sort();
    Ok(out)
}

/// Writes `manifest-sha256.txt` over every other file; returns their count.
pub fn write_manifest(out: &Path) -> Result<usize, ArchiveError> {
    let mut manifest = String::new();
    let files: Vec<String> = files_under(out)?
        .into_iter()
        .filter(|f| f != MANIFEST)
        .collect();
    for rel in &files {
        let path = out.join(rel);
        let bytes = std::fs::read(&path).map_err(io_at(&path))?;
        manifest.push_str(&format!("{}  {rel}\n", sha256_hex(&bytes)));
    }
    let path = out.join(MANIFEST);
    std::fs::write(&path, manifest).map_err(io_at(&path))?;
    Ok(files.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_one_visible_component() {
        assert_eq!(safe_component("IZ-2026/7"), "IZ-2026_7");
        assert_eq!(safe_component("../../etc/passwd"), "_._.._etc_passwd");
        assert_eq!(
            safe_component("Iesniegums par ūdeni.pdf"),
            "Iesniegums_par_ūdeni.pdf"
        );
        assert_eq!(safe_component(""), "file");
        assert_eq!(safe_component(".hidden"), "_hidden");
        let root = Path::new("/pkg");
        assert!(inside(root, "items/a/b.pdf").is_some());
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", "a\\b", ""] {
            assert!(inside(root, bad).is_none(), "{bad}");
        }
    }
}

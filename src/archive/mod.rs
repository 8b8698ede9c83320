//! Archival handover (issue 19): a package of a period's registered items
//! for the National Archives (LNA) or the municipality's own archive, its
//! re-check, and the list of items past their retention period.
//!
//! A package (`pietura archive export`) is a folder:
//!
//! ```text
//! OUT/
//!   manifest-sha256.txt     every other file's SHA-256 (`sha256sum -c` reads it)
//!   register.xml            the register of the included items
//!   register.csv            the same, one row per item
//!   register-files.csv      one row per file of an item (original, attachment, rendition)
//!   items/<number>/
//!     original/<name>       the original exactly as received (raw mail, scan file)
//!     attachments/NN-<name> every attachment exactly as received
//!     rendition.pdf         PDF/A: the e-mail, form or SMS as text; a scan with its OCR text
//!     answers/<nr>-<name>   the documents of its answers, as uploaded
//! ```
//!
//! Renditions are made by OCRmyPDF ([`ArchiveSettings`]), which converts
//! through Ghostscript to PDF/A (XMP `pdfaid`, an sRGB OutputIntent, every
//! font embedded) and OCRs scans with Tesseract: text items are first
//! printed by [`crate::print`] (one embedded font), scans are OCRed from
//! their original file. [`verify`] re-checks a package; [`retention`] lists
//! items whose retention period has ended, for a destruction review. Nothing
//! here deletes or changes an item.

pub mod package;
pub mod retention;
mod verify;

use std::path::{Path, PathBuf};

use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use tracing::Instrument;

use crate::blobs::{BlobError, BlobStore};
use crate::channels::Kind;
use crate::channels::original::Original;
use crate::message::IntakeMessage;
use crate::print::{PrintFont, Printout};
use crate::registry::archive::RegisterEntry;
use crate::registry::{Registry, RegistryError};

pub use package::{FileEntry, FileRole, ItemRecord};
pub use retention::{RetentionDue, RetentionReview, retention_review};
pub use verify::{VerifyProblem, verify};

/// `[archive]` of the daemon's configuration: how renditions are made.
/// Which PDF/A part LNA takes is UNCONFIRMED, hence a setting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveSettings {
    /// The OCRmyPDF command (Debian `ocrmypdf`, or PyPI `ocrmypdf` with
    /// Ghostscript and Tesseract).
    pub ocrmypdf: PathBuf,
    /// `pdfa-1`, `pdfa-2` or `pdfa-3` (OCRmyPDF's `--output-type`).
    pub pdfa: String,
    /// Tesseract languages for scans, `+`-joined.
    pub ocr_languages: String,
    /// The resolution assumed for scanned images that do not state one.
    pub image_dpi: u32,
    /// The qpdf command: a letter's own pages out of a scanned stack.
    pub qpdf: PathBuf,
}

impl Default for ArchiveSettings {
    fn default() -> Self {
        Self {
            ocrmypdf: PathBuf::from("ocrmypdf"),
            pdfa: "pdfa-2".into(),
            ocr_languages: "lav+eng".into(),
            image_dpi: 300,
            qpdf: PathBuf::from("qpdf"),
        }
    }
}

impl ArchiveSettings {
    /// Problems as (`archive.key`, message), for the configuration check.
    pub fn issues(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !["pdfa-1", "pdfa-2", "pdfa-3"].contains(&self.pdfa.as_str()) {
            out.push((
                "archive.pdfa".into(),
                format!(
                    "{:?} is not one of \"pdfa-1\", \"pdfa-2\", \"pdfa-3\"",
                    self.pdfa
                ),
            ));
        }
        let langs_ok = !self.ocr_languages.is_empty()
            && self
                .ocr_languages
                .split('+')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        if !langs_ok {
            out.push((
                "archive.ocr_languages".into(),
                format!(
                    "{:?} is not a list of Tesseract languages like \"lav+eng\"",
                    self.ocr_languages
                ),
            ));
        }
        if !(72..=1200).contains(&self.image_dpi) {
            out.push((
                "archive.image_dpi".into(),
                "must be between 72 and 1200".into(),
            ));
        }
        out
    }
}

/// Why a package could not be made or checked.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The period given is not `YYYY-MM-DD..YYYY-MM-DD` (permanent).
    #[error("period {0:?}: expected YYYY-MM-DD..YYYY-MM-DD with the start not after the end")]
    Period(String),
    /// The output folder holds files already (permanent: choose another).
    #[error("{0}: the folder is not empty; a package is written into a new or empty folder")]
    NotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The registry could not be read (may be transient).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("item {number}: {source}")]
    Blob {
        number: String,
        #[source]
        source: BlobError,
    },
    /// A stored blob's bytes no longer match their address (permanent:
    /// the store was damaged).
    #[error("item {number}: blob {sha256} does not hash to its address; the blob store is damaged")]
    BlobDamaged { number: String, sha256: String },
    /// OCRmyPDF could not be started (permanent until installed).
    #[error("{tool}: {source} (install ocrmypdf and qpdf, or set archive.ocrmypdf / archive.qpdf)")]
    ToolMissing {
        tool: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// OCRmyPDF failed on one item's rendition.
    #[error("item {number}: the PDF/A rendition failed: {message}")]
    Rendition { number: String, message: String },
    #[error("font for the renditions: {0}")]
    Font(#[from] crate::print::PrintError),
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A period of registration days (local Riga dates), both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl std::str::FromStr for Period {
    type Err = ArchiveError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ArchiveError::Period(s.to_string());
        let (a, b) = s.split_once("..").ok_or_else(bad)?;
        let day = |d: &str| NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").map_err(|_| bad());
        let (from, to) = (day(a)?, day(b)?);
        if from > to {
            return Err(bad());
        }
        Ok(Period { from, to })
    }
}

impl Period {
    pub fn contains(&self, day: NaiveDate) -> bool {
        self.from <= day && day <= self.to
    }
}

/// What `pietura archive export` was asked for.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub period: Period,
    /// One case (`items.case_code`) only.
    pub case_code: Option<String>,
    pub out: PathBuf,
}

/// What a written package holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub items: usize,
    pub files: usize,
}

/// Everything an export uses.
pub struct Exporter<'a> {
    pub registry: &'a Registry,
    pub blobs: &'a BlobStore,
    pub settings: &'a ArchiveSettings,
    pub font: PrintFont,
}

impl Exporter<'_> {
    /// Writes the package of the period's items (of one case, if asked).
    pub async fn export(&self, req: &ExportRequest) -> Result<ExportSummary, ArchiveError> {
        prepare_out(&req.out)?;
        // Stored times are UTC; the period is of local days: a day's margin
        // each side, then the local date decides.
        let from = crate::registry::db_time(
            (req.period.from - chrono::Days::new(1))
                .and_hms_opt(0, 0, 0)
                .unwrap_or_default()
                .and_utc(),
        );
        let until = crate::registry::db_time(
            (req.period.to + chrono::Days::new(2))
                .and_hms_opt(0, 0, 0)
                .unwrap_or_default()
                .and_utc(),
        );
        let entries: Vec<RegisterEntry> = self
            .registry
            .register_entries(&from, &until, req.case_code.as_deref())
            .await?
            .into_iter()
            .filter(|e| {
                crate::registry::parse_db_time(&e.item.registered_at)
                    .is_some_and(|t| req.period.contains(crate::deadline::local_date(t)))
            })
            .collect();
        let mut records = Vec::with_capacity(entries.len());
        for entry in entries {
            let span = tracing::info_span!("archive_item", item = %entry.item.id);
            records.push(self.item(&req.out, entry).instrument(span).await?);
        }
        package::write_registers(&req.out, req, &records, Utc::now())?;
        let files = package::write_manifest(&req.out)?;
        tracing::info!(items = records.len(), files, "archive package written");
        Ok(ExportSummary {
            items: records.len(),
            files,
        })
    }

    /// One item's folder: original, attachments, rendition.
    async fn item(&self, out: &Path, entry: RegisterEntry) -> Result<ItemRecord, ArchiveError> {
        let number = entry.item.registration_number.clone();
        let msg = self.registry.item_message(&entry.item.id).await?;
        let dir_rel = format!("items/{}", package::safe_component(&number));
        let dir = out.join(&dir_rel);
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let mut files = Vec::new();

        let original = Kind::original_file_of(&msg);
        if let Some(o) = &original {
            let rel = format!("{dir_rel}/original/{}", package::safe_component(&o.name));
            files.push(
                self.copy_blob(
                    out,
                    &number,
                    &o.sha256,
                    rel,
                    FileRole::Original,
                    &o.name,
                    &o.content_type,
                )
                .await?,
            );
        }
        for (i, a) in msg.attachments.iter().enumerate() {
            let rel = format!(
                "{dir_rel}/attachments/{:02}-{}",
                i + 1,
                package::safe_component(&a.filename)
            );
            files.push(
                self.copy_blob(
                    out,
                    &number,
                    &a.sha256,
                    rel,
                    FileRole::Attachment,
                    &a.filename,
                    &a.content_type,
                )
                .await?,
            );
        }

        let rendition_rel = format!("{dir_rel}/rendition.pdf");
        let rendition = out.join(&rendition_rel);
        let scanned = matches!(msg.channel.kind, crate::message::ChannelKind::Scan);
        let source = match (&original, scanned) {
            (Some(o), true) => files
                .iter()
                .find(|f| f.role == FileRole::Original && f.sha256 == o.sha256)
                .and_then(|f| f.path.as_ref())
                .map(|p| out.join(p)),
            _ => None,
        };
        match source {
            Some(scan) => {
                self.to_pdfa(&number, &scan, &rendition).await?;
                // A letter of a scanned stack: its own pages only.
                if let Some((first, last)) = letter_pages(&msg) {
                    self.keep_pages(&number, &rendition, first, last).await?;
                }
            }
            None => {
                // Printed beside the package, converted, removed.
                let printed = out.join(format!(".printed-{}.pdf", uuid::Uuid::now_v7()));
                let pdf = self.printout(&entry, &msg).await.render();
                std::fs::write(&printed, pdf).map_err(io_at(&printed))?;
                let converted = self.to_pdfa(&number, &printed, &rendition).await;
                std::fs::remove_file(&printed).map_err(io_at(&printed))?;
                converted?;
            }
        }
        let bytes = std::fs::read(&rendition).map_err(io_at(&rendition))?;
        files.push(FileEntry {
            role: FileRole::Rendition,
            path: Some(rendition_rel),
            name: format!("{}.pdf", package::safe_component(&number)),
            sha256: package::sha256_hex(&bytes),
            size: bytes.len() as u64,
            content_type: "application/pdf".into(),
            note: format!("PDF/A ({})", self.settings.pdfa),
        });

        let answers = self.registry.answers_of(&entry.item.id).await?;
        for a in &answers {
            if let (Some(sha), Some(name)) = (&a.document_sha256, &a.document_name) {
                let rel = format!(
                    "{dir_rel}/answers/{}-{}",
                    package::safe_component(&a.number),
                    package::safe_component(name)
                );
                let mut file = self
                    .copy_blob(
                        out,
                        &number,
                        sha,
                        rel,
                        FileRole::Answer,
                        name,
                        "application/octet-stream",
                    )
                    .await?;
                if file.note.is_empty() {
                    file.note = format!("answer {}", a.number);
                }
                files.push(file);
            }
        }
        Ok(ItemRecord {
            signature_status: signature_status(&msg),
            sender_address: msg.sender.postal_address.clone(),
            sender_e_address: msg.sender.e_address.clone(),
            answer_numbers: answers.into_iter().map(|a| a.number).collect(),
            entry,
            files,
        })
    }

    /// Copies a blob into the package, its bytes checked against its address;
    /// a quarantined (malware) blob is listed but not copied.
    #[allow(clippy::too_many_arguments)]
    async fn copy_blob(
        &self,
        out: &Path,
        number: &str,
        sha256: &str,
        rel: String,
        role: FileRole,
        name: &str,
        content_type: &str,
    ) -> Result<FileEntry, ArchiveError> {
        let mut entry = FileEntry {
            role,
            path: None,
            name: name.to_string(),
            sha256: sha256.to_string(),
            size: 0,
            content_type: content_type.to_string(),
            note: String::new(),
        };
        if let Some(signature) = self.registry.quarantined(sha256).await? {
            entry.note = format!("quarantined as malware ({signature}); not included");
            return Ok(entry);
        }
        let bytes = self
            .blobs
            .get(sha256)
            .await
            .map_err(|source| ArchiveError::Blob {
                number: number.to_string(),
                source,
            })?;
        if package::sha256_hex(&bytes) != sha256.to_ascii_lowercase() {
            return Err(ArchiveError::BlobDamaged {
                number: number.to_string(),
                sha256: sha256.to_string(),
            });
        }
        let path = out.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        std::fs::write(&path, &bytes).map_err(io_at(&path))?;
        entry.size = bytes.len() as u64;
        entry.path = Some(rel);
        Ok(entry)
    }

    /// The item as text on paper: its register details, then the e-mail,
    /// the form's or SMS's fields, or the text, as the desk shows them.
    async fn printout(&self, entry: &RegisterEntry, msg: &IntakeMessage) -> Printout {
        let item = &entry.item;
        let mut p = Printout::new(&self.font, &item.registration_number);
        p.heading(&format!("Nr. {}", item.registration_number));
        let mut head = vec![
            format!("Saņemts / received: {}", item.received_at),
            format!("Reģistrēts / registered: {}", item.registered_at),
            format!("Kanāls / channel: {}", item.channel_kind),
        ];
        let s = &msg.sender;
        let sender: Vec<&str> = [&s.name, &s.email, &s.phone, &s.postal_address, &s.e_address]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if !sender.is_empty() {
            head.push(format!("Sūtītājs / sender: {}", sender.join(", ")));
        }
        if let Some(subject) = &msg.subject {
            head.push(format!("Temats / subject: {subject}"));
        }
        for a in &msg.attachments {
            head.push(format!(
                "Pielikums / attachment: {} ({})",
                a.filename, a.sha256
            ));
        }
        p.paragraph(&head.join("\n")).space(4.0);
        match Kind::original_of(msg, self.blobs).await {
            Original::Email { text, .. } | Original::Text(text) => {
                p.paragraph(&text);
            }
            Original::Fields(fields) => {
                let lines: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                p.paragraph(&lines.join("\n"));
            }
            Original::Scan { pages, .. } => {
                for page in pages {
                    p.heading(&format!("{}. lpp. / page {}", page.number, page.number))
                        .paragraph(&page.text);
                }
            }
        }
        p.footer(&item.registration_number);
        p
    }

    /// Keeps pages `first..=last` of `pdf` (qpdf, keeping the document's
    /// catalog: its PDF/A metadata and OutputIntent).
    async fn keep_pages(
        &self,
        number: &str,
        pdf: &Path,
        first: u64,
        last: u64,
    ) -> Result<(), ArchiveError> {
        let selected = pdf.with_extension("pages.pdf");
        let range = format!("{first}-{last}");
        let mut cmd = tokio::process::Command::new(&self.settings.qpdf);
        cmd.arg(pdf)
            .arg("--pages")
            .arg(".")
            .arg(&range)
            .arg("--")
            .arg(&selected);
        run_tool(&self.settings.qpdf, number, cmd).await?;
        std::fs::rename(&selected, pdf).map_err(io_at(pdf))
    }

    /// OCRmyPDF: `input` (a PDF or a scanned image) to a PDF/A at `output`;
    /// pages with text keep it, pages without are OCRed.
    async fn to_pdfa(&self, number: &str, input: &Path, output: &Path) -> Result<(), ArchiveError> {
        let s = self.settings;
        let mut cmd = tokio::process::Command::new(&s.ocrmypdf);
        cmd.arg("--output-type")
            .arg(&s.pdfa)
            .arg("--pdfa-image-compression")
            .arg("lossless")
            .arg("--skip-text")
            .arg("--jobs")
            .arg("1")
            .arg("--language")
            .arg(&s.ocr_languages)
            .arg("--image-dpi")
            .arg(s.image_dpi.to_string())
            .arg("--quiet")
            .arg(input)
            .arg(output)
            .env("OMP_THREAD_LIMIT", "1");
        run_tool(&s.ocrmypdf, number, cmd).await
    }
}

/// Runs a rendition tool; its failure is the item's, with the end of what
/// it said.
async fn run_tool(
    tool: &Path,
    number: &str,
    mut cmd: tokio::process::Command,
) -> Result<(), ArchiveError> {
    let run =
        cmd.kill_on_drop(true)
            .output()
            .await
            .map_err(|source| ArchiveError::ToolMissing {
                tool: tool.to_path_buf(),
                source,
            })?;
    if run.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&run.stderr);
    let mut tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    tail.reverse();
    Err(ArchiveError::Rendition {
        number: number.to_string(),
        message: format!(
            "{} exited with {}: {}",
            tool.display(),
            run.status,
            tail.join(" | ")
        ),
    })
}

/// The pages `[first, last]` of its scanned file a scan item is
/// (`metadata.scan.pages`), when the file held more than that letter.
fn letter_pages(msg: &IntakeMessage) -> Option<(u64, u64)> {
    let pages = msg.channel_metadata()?.get("pages")?.as_array()?;
    let first = pages.first()?.as_u64()?;
    let last = pages.get(1)?.as_u64()?;
    (first >= 1 && last >= first).then_some((first, last))
}

/// The output folder: created, or empty.
fn prepare_out(out: &Path) -> Result<(), ArchiveError> {
    std::fs::create_dir_all(out).map_err(io_at(out))?;
    let mut entries = std::fs::read_dir(out).map_err(io_at(out))?;
    if entries.next().is_some() {
        return Err(ArchiveError::NotEmpty(out.to_path_buf()));
    }
    Ok(())
}

/// `none`; or, for e-signed containers (.edoc/.asice), `e_signed_verified`
/// when every container's signatures check out, `e_signed_failed` when one
/// fails, else `e_signed_not_checked`.
pub fn signature_status(msg: &IntakeMessage) -> String {
    let listed = crate::channels::email::edoc::listed_in(msg);
    if listed.is_empty() {
        return "none".into();
    }
    let containers: Vec<_> = listed.iter().map(|l| l.container.as_ref()).collect();
    if containers.iter().all(|c| c.is_some_and(|c| c.verified)) {
        return "e_signed_verified".into();
    }
    let failed = containers
        .iter()
        .flatten()
        .any(|c| matches!(c.verification, Some(crate::xmldsig::Verdict::Failed(_))));
    if failed {
        "e_signed_failed".into()
    } else {
        "e_signed_not_checked".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_and_settings_are_checked() {
        let p: Period = "2026-01-01..2026-12-31".parse().unwrap();
        assert!(p.contains(NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()));
        assert!(!p.contains(NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()));
        for bad in ["2026", "2026-12-31..2026-01-01", "2026-01-01..2026-13-01"] {
            assert!(bad.parse::<Period>().is_err(), "{bad}");
        }
        assert!(ArchiveSettings::default().issues().is_empty());
        let wrong = ArchiveSettings {
            pdfa: "pdfa-4".into(),
            ocr_languages: "lav+".into(),
            image_dpi: 10,
            ..ArchiveSettings::default()
        };
        let keys: Vec<String> = wrong.issues().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["archive.pdfa", "archive.ocr_languages", "archive.image_dpi"]
        );
    }
}

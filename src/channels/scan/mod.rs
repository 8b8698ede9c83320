//! Scanned paper post: the mailroom's scanner drops files into a folder
//! (local or a network share, so it is polled); each file is taken apart
//! into pages, read by the OCR pool, split into letters at separator pages
//! (a blank page, a sheet with the municipality's separator QR code), and
//! each letter is published as one item. The file is moved to `processed/`
//! (or deleted) only after every letter's publish was confirmed; a file
//! that cannot be read goes to `failed/` with a note beside it.
//!
//! A letter's idempotency key is the file's SHA-256 and its page range, so
//! a crash mid-file reads the file again without registering any letter
//! twice.
//!
//! Several daemons may watch one folder (a network share): a file is read
//! only under a claim of the leased-work primitive ([`super::DoorState::claim`],
//! named by the channel, the file's name, size and time), renewed while its
//! pages are read; the daemon holding the claim hands the file on and moves
//! it, the others leave it alone, and a file already gone is no error.

pub mod extract;
mod meta;
pub mod pages;

pub use meta::ScanMeta;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::context::Lease;
use super::original::{Original, OriginalFile, ScanPage};
use super::{Channel, ChannelError, Door, DoorConfig, DoorContext, Words};
use crate::blobs::BlobStore;
use crate::message::meta::StoredOriginal;
use crate::message::{ChannelKind, ChannelRef, IntakeMessage};
use crate::ocr::{OcrError, OcrPool, OcrSettings, PageText};
use pages::{Page, ScanKind};

/// What to do with a file once all its letters are handed on.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AfterScan {
    /// Into `<folder>/processed/` (kept for the mailroom's own checks).
    #[default]
    Move,
    Delete,
}

/// Where letters are split.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitSettings {
    /// A blank page ends a letter.
    pub blank_pages: bool,
    /// A page with a QR code holding exactly this ends a letter; none: off.
    pub separator_qr: Option<String>,
}

impl Default for SplitSettings {
    fn default() -> Self {
        Self {
            blank_pages: true,
            separator_qr: Some("PIETURA-SEPARATOR".into()),
        }
    }
}

/// `channels/<id>.toml` with `type = "scan"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    pub id: String,
    /// The folder the scanner writes to.
    pub folder: PathBuf,
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
    /// A file is taken only when its size and time stayed the same this long.
    #[serde(default = "default_stable")]
    pub stable_seconds: u64,
    #[serde(default)]
    pub after: AfterScan,
    #[serde(default = "default_max_bytes")]
    pub max_file_bytes: u64,
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// Below this mean OCR confidence (0–100) a letter goes to review.
    #[serde(default = "default_min_confidence")]
    pub min_confidence: i32,
    /// PDF pages without a text layer are rasterised at this resolution.
    #[serde(default = "default_pdf_dpi")]
    pub pdf_dpi: u32,
    #[serde(default)]
    pub split: SplitSettings,
    #[serde(default)]
    pub ocr: OcrSettings,
    /// The variable holding the bearer token scanners and the mailroom's
    /// desk send with `POST /scan/<id>`; unset: uploads are refused.
    pub upload_token_env: Option<String>,
}

fn default_poll() -> u64 {
    5
}
fn default_stable() -> u64 {
    3
}
fn default_max_bytes() -> u64 {
    500 * 1024 * 1024
}
fn default_max_pages() -> u32 {
    500
}
fn default_min_confidence() -> i32 {
    70
}
fn default_pdf_dpi() -> u32 {
    300
}

impl DoorConfig for ScanConfig {
    fn id(&self) -> &str {
        &self.id
    }

    /// Problems with the file's values, each naming its key.
    fn validate(&self) -> Vec<String> {
        let mut issues = Vec::new();
        if self.folder.as_os_str().is_empty() {
            issues.push("folder: give the folder the scanner writes to".into());
        }
        if !(0..=100).contains(&self.min_confidence) {
            issues.push("min_confidence: must be 0–100".into());
        }
        if !(70..=600).contains(&self.pdf_dpi) {
            issues.push("pdf_dpi: must be 70–600".into());
        }
        if self.max_pages == 0 || self.poll_seconds == 0 {
            issues.push("max_pages and poll_seconds: must be at least 1".into());
        }
        if self.ocr.languages.trim().is_empty() {
            issues.push("ocr.languages: e.g. \"lav+eng\"".into());
        }
        issues
    }
}

/// A running scan channel.
pub struct Scan {
    cfg: ScanConfig,
    ctx: DoorContext,
    pool: Arc<OcrPool>,
    /// The file this daemon holds a claim on, given back on shutdown.
    claimed: std::sync::Mutex<Option<Lease>>,
}

/// How long a claim on a file lasts unless renewed (renewed every third of
/// it while the file is read): a daemon that dies mid-file holds it up at
/// most this long.
const FILE_CLAIM_SECS: i64 = 60;

impl Scan {
    /// Files in the folder whose size and time have not moved for
    /// `stable_seconds` (the scanner has finished writing them).
    fn stable_files(
        &self,
        seen: &mut HashMap<PathBuf, (u64, SystemTime, std::time::Instant)>,
    ) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.cfg.folder) else {
            return Vec::new();
        };
        let mut ready = Vec::new();
        let mut present = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let Ok(meta) = entry.metadata() else { continue };
            // Hidden, partial and our own notes are not scans.
            if !meta.is_file()
                || name.starts_with('.')
                || name.ends_with(".part")
                || name.ends_with(".tmp")
                || name.ends_with(".error.txt")
            {
                continue;
            }
            present.push(path.clone());
            let now = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            match seen.get(&path) {
                Some((len, modified, since)) if (*len, *modified) == now => {
                    if since.elapsed() >= Duration::from_secs(self.cfg.stable_seconds) {
                        ready.push(path);
                    }
                }
                _ => {
                    seen.insert(path, (now.0, now.1, std::time::Instant::now()));
                }
            }
        }
        seen.retain(|p, _| present.contains(p));
        ready.sort();
        ready
    }

    /// Claims `path` for this daemon: None when another daemon holds it,
    /// or it is gone (moved by the daemon that read it: not an error).
    async fn claim(&self, path: &Path, name: &str) -> Option<Lease> {
        let meta = match tokio::fs::metadata(path).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("cannot look at the scan ({e}); tried again in the next round");
                return None;
            }
        };
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let work = format!("{name}:{}:{modified}", meta.len());
        let state = &self.ctx.state;
        let lease = match state.claim("scan", &work, FILE_CLAIM_SECS).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                tracing::debug!("scan claimed by another daemon");
                return None;
            }
            Err(e) => {
                tracing::warn!("scan not claimed ({e}); tried again in the next round");
                return None;
            }
        };
        // Read and moved by another daemon between the listing and the claim.
        if !tokio::fs::try_exists(path).await.unwrap_or(true) {
            let _ = state.remove(&lease).await;
            return None;
        }
        Some(lease)
    }

    fn set_claimed(&self, lease: Option<Lease>) {
        *self.claimed.lock().unwrap_or_else(|p| p.into_inner()) = lease;
    }

    /// Reads one file to its end under this daemon's claim: every letter
    /// handed on and the file moved, or the file in `failed/` with the
    /// reason beside it. A file another daemon holds is left to it.
    async fn take(&self, path: &Path) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let Some(lease) = self.claim(path, &name).await else {
            return;
        };
        self.set_claimed(Some(lease.clone()));
        let renewal = self.ctx.state.renewal(&lease, FILE_CLAIM_SECS);
        let outcome = self.hand_on(path, &name).await;
        if renewal.lost() {
            // Another daemon took the file over while this one stalled: it
            // reads it again (its letters are recognised) and moves it.
            tracing::warn!(
                "scan claim lost while reading; the file is left to the daemon holding it now"
            );
            self.set_claimed(None);
            return;
        }
        match outcome {
            Ok(letters) => {
                let done = match self.cfg.after {
                    AfterScan::Move => move_into(path, &self.cfg.folder.join("processed")).await,
                    AfterScan::Delete => tokio::fs::remove_file(path)
                        .await
                        .map_err(|e| e.to_string()),
                };
                match done {
                    Ok(()) => tracing::info!(letters, "scan handed on"),
                    Err(_) if !tokio::fs::try_exists(path).await.unwrap_or(true) => {
                        tracing::info!(
                            letters,
                            "scan handed on; the file had already left the folder"
                        )
                    }
                    // Handed on already: a second pass only finds duplicates.
                    Err(e) => tracing::error!(
                        "scan handed on but not moved out of the folder ({e}); it will be read again and recognised"
                    ),
                }
            }
            Err(_) if !tokio::fs::try_exists(path).await.unwrap_or(true) => {
                tracing::info!("scan left the folder while it was read; nothing set aside");
            }
            Err(reason) => {
                tracing::error!("scan not readable, moved to failed/: {reason}");
                let failed = self.cfg.folder.join("failed");
                let note = failed.join(format!("{name}.error.txt"));
                let text = format!(
                    "{}\nfile: {name}\nchannel: {}\nwhat to do: check the scan and put it back into the folder, or register it by hand\n",
                    reason, self.cfg.id
                );
                let moved = move_into(path, &failed).await;
                if let Err(e) = tokio::fs::write(&note, text)
                    .await
                    .map_err(|e| e.to_string())
                    .and(moved)
                {
                    tracing::error!(
                        "the failed scan could not be set aside ({e}); it stays in the folder"
                    );
                }
            }
        }
        renewal.stop();
        self.set_claimed(None);
        // The file has left the folder: its claim is not needed any more.
        if let Err(e) = self.ctx.state.remove(&lease).await {
            tracing::warn!("scan claim not removed ({e}); it runs out by itself");
        }
    }

    /// Pages → letters → published; how many letters. An error is the
    /// reason the file goes to `failed/`.
    async fn hand_on(&self, path: &Path, name: &str) -> Result<usize, String> {
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        if meta.len() > self.cfg.max_file_bytes {
            return Err(format!(
                "{name} is {} bytes, over max_file_bytes = {}",
                meta.len(),
                self.cfg.max_file_bytes
            ));
        }
        let bytes = Arc::new(
            tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read {name}: {e}"))?,
        );
        let kind = ScanKind::of(&bytes);
        if kind == ScanKind::Image {
            // Header check first: a bomb or a non-image fails here, before decoding.
            crate::ocr::check_header(&bytes, self.cfg.ocr.max_page_pixels)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        let total = pages::count(
            path,
            kind,
            &bytes,
            self.cfg.pdf_dpi,
            self.cfg.ocr.max_page_pixels,
        )
        .await
        .map_err(|e| format!("{name}: {e}"))?;
        if total > self.cfg.max_pages {
            return Err(format!(
                "{name} has {total} pages, over max_pages = {}",
                self.cfg.max_pages
            ));
        }
        let original = self
            .ctx
            .blobs
            .put(&bytes)
            .await
            .map_err(|e| format!("{name}: storing the original: {e}"))?;
        let content_type = kind.content_type(&bytes);
        let separator: Option<Arc<str>> = self.cfg.split.separator_qr.as_deref().map(Arc::from);
        // Pages in order, `workers` at a time: bounded memory, all cores busy.
        let mut read = futures::stream::iter(1..=total)
            .map(|n| {
                let (bytes, separator) = (bytes.clone(), separator.clone());
                async move {
                    let page =
                        pages::page(path, kind, &bytes, n, self.cfg.pdf_dpi, separator).await?;
                    match page {
                        Page::Text(text) => Ok(PageRead::text_layer(text)),
                        Page::Image(img) => match self.pool.read(img).await {
                            Ok(text) => Ok(PageRead::Ocr(text)),
                            // A page no decoder reads, in a file of several, is
                            // still a page of its letter: the letter goes to
                            // review with the original attached.
                            Err(OcrError::Unreadable(why)) if total > 1 => {
                                Ok(PageRead::Unreadable(why))
                            }
                            Err(e) => Err(format!("page {n}: {e}")),
                        },
                    }
                }
            })
            .buffered(self.pool.workers());
        let mut letters = 0;
        let mut current: Vec<(u32, PageRead)> = Vec::new();
        let mut n = 0;
        while let Some(page) = read.next().await {
            n += 1;
            let page = page.map_err(|e| format!("{name}: {e}"))?;
            if n % 20 == 0 || n == total {
                tracing::info!("{name}: page {n} of {total} read, {letters} letters handed on");
            }
            let ends_letter = page.separator() || (self.cfg.split.blank_pages && page.blank());
            if ends_letter {
                if !current.is_empty() {
                    self.publish(name, &original, content_type, std::mem::take(&mut current))
                        .await?;
                    letters += 1;
                }
                continue;
            }
            current.push((n, page));
        }
        // Every page counted in the directory must have been read (into a
        // letter, or as a blank or separator page) before the file may leave.
        if n != total {
            return Err(format!(
                "{name}: only {n} of its {total} pages could be taken apart"
            ));
        }
        if !current.is_empty() {
            self.publish(name, &original, content_type, current).await?;
            letters += 1;
        }
        if letters == 0 {
            // Nothing but blank pages: kept for the officer, not lost.
            let empty = vec![(
                1,
                PageRead::Ocr(PageText {
                    text: String::new(),
                    confidence: 0,
                    blank: true,
                    ink_ratio: 0.0,
                    rotated_by: 0,
                    skew_degrees: 0.0,
                    osd: false,
                    width: 0,
                    height: 0,
                    separator: false,
                }),
            )];
            self.publish(name, &original, content_type, empty).await?;
            letters = 1;
        }
        Ok(letters)
    }

    /// Publishes one letter (pages `pages`) with its broker confirm.
    async fn publish(
        &self,
        name: &str,
        original: &crate::blobs::StoredBlob,
        content_type: &str,
        pages: Vec<(u32, PageRead)>,
    ) -> Result<(), String> {
        let (first, last) = (
            pages.first().map_or(1, |p| p.0),
            pages.last().map_or(1, |p| p.0),
        );
        let key = format!("scan:{}:{}:{first}-{last}", self.cfg.id, original.sha256);
        let text = pages
            .iter()
            .map(|(_, p)| p.text())
            .collect::<Vec<_>>()
            .join("\n\n");
        let read: Vec<&PageRead> = pages
            .iter()
            .map(|(_, p)| p)
            .filter(|p| !matches!(p, PageRead::Unreadable(_)))
            .collect();
        let unreadable: Vec<String> = pages
            .iter()
            .filter_map(|(n, p)| match p {
                PageRead::Unreadable(why) => Some(format!("page {n} ({why})")),
                _ => None,
            })
            .collect();
        let confidence = if read.is_empty() {
            0
        } else {
            read.iter().map(|p| p.confidence()).sum::<i32>() / read.len() as i32
        };
        let facts = extract::extract(&text);
        let mut msg = IntakeMessage::new(
            ChannelRef {
                kind: ChannelKind::Scan,
                instance: self.cfg.id.clone(),
            },
            key,
            text.trim().to_string(),
        );
        msg.language = Some("lv".into());
        msg.subject = facts.subject.as_ref().map(|f| f.value.clone());
        msg.sender.name = facts.sender_name.as_ref().map(|f| f.value.clone());
        msg.sender.postal_address = facts.postal_address.as_ref().map(|f| f.value.clone());
        msg.sender.email = facts.email.as_ref().map(|f| f.value.clone());
        msg.sender.phone = facts.phone.as_ref().map(|f| f.value.clone());
        msg.review_reason = if !unreadable.is_empty() {
            // The page is in the original scan, attached for the officer.
            msg.attachments.push(crate::message::AttachmentRef {
                sha256: original.sha256.clone(),
                filename: name.to_string(),
                content_type: content_type.to_string(),
                size: original.size,
            });
            Some(format!(
                "unreadable scan page: {} of {name} could not be read; see the attached original scan",
                unreadable.join(", ")
            ))
        } else if msg.body.chars().filter(|c| c.is_alphabetic()).count() < 20 {
            Some(format!(
                "no text recognised on pages {first}–{last} of {name} (blank or illegible)"
            ))
        } else if confidence < self.cfg.min_confidence {
            Some(format!(
                "OCR confidence {confidence} on pages {first}–{last} of {name} is below min_confidence = {}",
                self.cfg.min_confidence
            ))
        } else {
            None
        };
        let page_info: Vec<serde_json::Value> = pages
            .iter()
            .map(|(n, p)| match p {
                PageRead::TextLayer(t) => {
                    serde_json::json!({ "page": n, "text_layer": true, "text": t.trim() })
                }
                PageRead::Unreadable(why) => {
                    serde_json::json!({ "page": n, "unreadable": why })
                }
                PageRead::Ocr(t) => serde_json::json!({
                    "page": n, "confidence": t.confidence, "rotated_by": t.rotated_by,
                    "skew_degrees": t.skew_degrees, "text": t.text.trim(),
                }),
            })
            .collect();
        msg.set_meta(&ScanMeta {
            file: name.to_string(),
            pages: [first, last],
            page_details: page_info,
            confidence,
            original: StoredOriginal {
                sha256: original.sha256.clone(),
                size: original.size,
                content_type: content_type.to_string(),
            },
            extracted: serde_json::to_value(&facts).unwrap_or_default(),
            other: Default::default(),
        });
        let span = tracing::info_span!("item", id = %msg.id, channel = "scan", instance = %self.cfg.id, pages = %format!("{first}-{last}"));
        async {
            if let Some(code) = &facts.personas_kods {
                tracing::debug!(personas_kods = %extract::mask_personas_kods(&code.value), "personas kods found");
            }
            self.ctx.publisher.publish(&msg)
                .await
                .map_err(|e| format!("letter on pages {first}–{last} not handed on: {e}"))?;
            crate::metrics::item_received("scan");
            tracing::info!(confidence, review = msg.review_reason.is_some(), "letter handed on");
            Ok(())
        }
        .instrument(span)
        .await
    }
}

/// A page as read: from the PDF's text layer or by OCR, or a page of a
/// multi-page file that cannot be decoded (why).
enum PageRead {
    TextLayer(String),
    Ocr(PageText),
    Unreadable(String),
}

impl PageRead {
    fn text_layer(text: String) -> PageRead {
        PageRead::TextLayer(text)
    }
    fn text(&self) -> &str {
        match self {
            PageRead::TextLayer(t) => t.trim(),
            PageRead::Ocr(p) => p.text.trim(),
            PageRead::Unreadable(_) => "",
        }
    }
    fn confidence(&self) -> i32 {
        match self {
            PageRead::TextLayer(_) => 100,
            PageRead::Ocr(p) => p.confidence,
            PageRead::Unreadable(_) => 0,
        }
    }
    fn blank(&self) -> bool {
        matches!(self, PageRead::Ocr(p) if p.blank)
    }
    fn separator(&self) -> bool {
        matches!(self, PageRead::Ocr(p) if p.separator)
    }
}

/// `POST /scan/<id>?name=<file name>` with the scan as the body and
/// `Authorization: Bearer <token>`: the file is written to the folder
/// (streamed, size-limited, synced to disk, then renamed in) and answered
/// 202; from there it is read like any scan. The 202 means the scan is on
/// disk in the queue folder: it is not lost from then on.
async fn upload(
    axum::extract::State(scan): axum::extract::State<Arc<Scan>>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use subtle::ConstantTimeEq;
    let refuse = |status: StatusCode, why: String| {
        (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
    };
    let Some(var) = &scan.cfg.upload_token_env else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!(
                "uploads to {} are off (upload_token_env is not set)",
                scan.cfg.id
            ),
        );
    };
    let Ok(token) = std::env::var(var) else {
        tracing::warn!(channel = %scan.cfg.id, "scan upload refused: the variable {var} (upload_token_env) is not set");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("uploads are not configured: set {var}"),
        );
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if token.is_empty() || !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required".into(),
        );
    }
    let name: String = q
        .get("name")
        .map(String::as_str)
        .unwrap_or("scan")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("scan")
        .chars()
        .filter(|c| c.is_alphanumeric() || "._-".contains(*c))
        .take(80)
        .collect();
    let name = if name.trim_matches('.').is_empty() {
        "scan".to_string()
    } else {
        name
    };
    let id = uuid::Uuid::now_v7();
    let part = scan.cfg.folder.join(format!(".upload-{id}.part"));
    let target = scan.cfg.folder.join(format!("{id}-{name}"));
    match write_upload(&part, body, scan.cfg.max_file_bytes).await {
        Ok(size) => match tokio::fs::rename(&part, &target).await {
            Ok(()) => {
                tracing::info!(channel = %scan.cfg.id, file = %target.display(), size, "scan uploaded");
                (StatusCode::ACCEPTED, axum::Json(serde_json::json!({ "file": format!("{id}-{name}"), "size": size, "queued": true }))).into_response()
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                tracing::error!(channel = %scan.cfg.id, "scan upload not stored: {e}");
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the scan could not be stored; send it again".into(),
                )
            }
        },
        Err((status, why)) => {
            let _ = tokio::fs::remove_file(&part).await;
            if status.is_server_error() {
                tracing::error!(channel = %scan.cfg.id, "scan upload not stored: {why}");
            }
            refuse(status, why)
        }
    }
}

/// How much more of a refused (oversized) upload is read and dropped so the
/// sender gets its 413; past this the connection is closed.
const DRAIN_REFUSED_BYTES: u64 = 64 * 1024 * 1024;

/// Streams `body` into `path` (at most `limit` bytes) and syncs it to disk.
async fn write_upload(
    path: &Path,
    body: axum::body::Body,
    limit: u64,
) -> Result<u64, (axum::http::StatusCode, String)> {
    use axum::http::StatusCode;
    use tokio::io::AsyncWriteExt;
    let io = |e: std::io::Error| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("writing the scan: {e}"),
        )
    };
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut size = 0_u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("the upload broke off: {e}"),
            )
        })?;
        size += chunk.len() as u64;
        if size > limit {
            drop(file);
            // Read (and drop) what the scanner is still sending, up to a
            // bound, so it gets the 413 rather than a connection reset
            // while it writes.
            let mut drained = 0_u64;
            while drained < DRAIN_REFUSED_BYTES {
                match stream.next().await {
                    Some(Ok(more)) => drained += more.len() as u64,
                    _ => break,
                }
            }
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the scan is over max_file_bytes = {limit}"),
            ));
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    if size == 0 {
        return Err((
            StatusCode::BAD_REQUEST,
            "the body is empty: send the scan as the request body".into(),
        ));
    }
    file.sync_all().await.map_err(io)?;
    Ok(size)
}

/// True for the file events that can bring a new or grown scan (created,
/// written, renamed in, closed after writing). Opening, reading and closing
/// the folder or a file, which the loop itself does, are not among them.
fn brings_a_file(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
    match kind {
        EventKind::Create(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        _ => false,
    }
}

/// Moves `file` into `dir` (a name taken there gets a time suffix).
async fn move_into(file: &Path, dir: &Path) -> Result<(), String> {
    let name = file.file_name().ok_or("no file name")?;
    let mut target = dir.join(name);
    if tokio::fs::try_exists(&target).await.unwrap_or(false) {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f");
        target = dir.join(format!("{stamp}-{}", name.to_string_lossy()));
    }
    tokio::fs::rename(file, &target)
        .await
        .map_err(|e| format!("moving to {}: {e}", target.display()))
}

/// A scan as the desk shows it: its file, page by page with the OCR text.
fn scanned_original(msg: &IntakeMessage) -> Original {
    let scan = msg.meta::<ScanMeta>().unwrap_or_default();
    let pages = scan
        .page_details
        .iter()
        .map(|p| ScanPage {
            number: p.get("page").and_then(|n| n.as_u64()).unwrap_or(0) as u32,
            text: p
                .get("text")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string(),
            confidence: p.get("confidence").and_then(|c| c.as_i64()),
        })
        .collect();
    Original::Scan {
        file: scan.file,
        pages,
    }
}

impl Door for Scan {
    const KIND: ChannelKind = ChannelKind::Scan;
    const WORDS: Words = Words {
        lv: "skenēts pasts",
        en: "scanned post",
    };
    type Config = ScanConfig;
    type Meta = ScanMeta;

    fn build(cfg: ScanConfig, ctx: DoorContext) -> Result<Self, ChannelError> {
        let fail = |message: String| ChannelError {
            channel: cfg.id.clone(),
            message,
        };
        for sub in ["processed", "failed"] {
            std::fs::create_dir_all(cfg.folder.join(sub)).map_err(|e| {
                fail(format!(
                    "folder {}: cannot create {sub}/: {e} (check `folder` and its permissions)",
                    cfg.folder.display()
                ))
            })?;
        }
        let pool = OcrPool::start(cfg.ocr.clone()).map_err(|e| fail(e.to_string()))?;
        Ok(Scan {
            pool: Arc::new(pool),
            cfg,
            ctx,
            claimed: std::sync::Mutex::new(None),
        })
    }

    fn original<'a>(msg: &'a IntakeMessage, _blobs: &'a BlobStore) -> BoxFuture<'a, Original> {
        Box::pin(std::future::ready(scanned_original(msg)))
    }

    fn original_file(msg: &IntakeMessage) -> Option<OriginalFile> {
        let scan = msg.meta::<ScanMeta>()?;
        let name = if scan.file.is_empty() {
            "scan".to_string()
        } else {
            scan.file
        };
        OriginalFile::of(&scan.original, name)
    }
}

#[async_trait]
impl Channel for Scan {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Scan
    }

    fn routes(self: Arc<Self>) -> Option<axum::Router> {
        let path = format!("/scan/{}", self.cfg.id);
        Some(
            axum::Router::new()
                .route(&path, axum::routing::post(upload))
                .with_state(self),
        )
    }

    async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), ChannelError> {
        let mut seen = HashMap::new();
        tracing::info!(channel = %self.cfg.id, folder = %self.cfg.folder.display(), workers = self.pool.workers(), "watching the scan folder");
        // File events wake the loop at once where the folder has them (a
        // local disk); a network share has none, and polling covers it.
        let (wake_tx, mut wake) = tokio::sync::mpsc::channel::<()>(1);
        let _watcher = {
            use notify::Watcher;
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Only what can bring a scan; the loop's own listing of the
                // folder (open, read, close) must not wake it again.
                if event.is_ok_and(|e| brings_a_file(&e.kind)) {
                    let _ = wake_tx.try_send(());
                }
            })
            .and_then(|mut w| w.watch(&self.cfg.folder, notify::RecursiveMode::NonRecursive).map(|()| w))
            .map_err(|e| tracing::info!(channel = %self.cfg.id, "no file events for the scan folder ({e}); polling every {} s", self.cfg.poll_seconds))
            .ok()
        };
        loop {
            for file in self.stable_files(&mut seen) {
                if shutdown.is_cancelled() {
                    break;
                }
                let span =
                    tracing::info_span!("scan", channel = %self.cfg.id, file = %file.display());
                // Shutdown abandons the file mid-way: it stays in the folder
                // and is read again; its letters already handed on are duplicates.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.take(&file).instrument(span) => {}
                }
                seen.remove(&file);
            }
            // A file seen but not yet stable is looked at again within a second.
            let pause = if seen.is_empty() {
                self.cfg.poll_seconds
            } else {
                self.cfg.poll_seconds.min(1)
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.recv() => {}
                _ = tokio::time::sleep(Duration::from_secs(pause)) => {}
            }
        }
        // A file abandoned mid-way is given back, for another daemon (or
        // this one after its restart) to read at once.
        let abandoned = self
            .claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(lease) = abandoned {
            let _ = self.ctx.state.release(&lease).await;
        }
        let pool = self.pool.clone();
        let _ = tokio::task::spawn_blocking(move || pool.stop()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::brings_a_file;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, EventKind, MetadataKind, ModifyKind, RenameMode,
    };

    #[test]
    fn only_events_that_can_bring_a_scan_wake_the_folder_loop() {
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
        ] {
            assert!(brings_a_file(&kind), "{kind:?} should wake the loop");
        }
        // The loop's own listing of the folder and reading of a file.
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
        ] {
            assert!(!brings_a_file(&kind), "{kind:?} must not wake the loop");
        }
    }
}

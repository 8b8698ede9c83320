//! The HTML form's `POST`: urlencoded (read whole, up to what the fields
//! allow) or multipart (text fields read up to their length, attachments
//! streamed into the blob store while they arrive, never held in memory).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::page::{LangQuery, ReceiptPage, render};
use super::{Lang, Outcome, Refusal, Submission, TOKEN, WebForm};
use crate::blobs::{BlobError, StoredBlob};
use crate::channels::form_data::urlencoded_pairs;
use crate::message::{AttachmentRef, display_filename};

/// The last path component of a sender's file name, for display only.
pub(super) fn display_name(raw: &str) -> String {
    display_filename(raw.rsplit(['/', '\\']).next().unwrap_or(""))
}

/// The `Content-Length` a client declared, if any.
pub(super) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads a whole body of at most `limit` bytes.
pub(super) async fn read_body(
    body: Body,
    limit: u64,
    too_large: impl FnOnce() -> Refusal,
) -> Result<Vec<u8>, Refusal> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Refusal::BadRequest(vec![(
                None,
                format!("the request body could not be read: {e}"),
            )])
        })?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

impl WebForm {
    fn multipart_refusal(&self, e: MultipartError, lang: Lang) -> Refusal {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            self.too_large(self.cfg.multipart_limit(), lang)
        } else {
            Refusal::BadRequest(vec![(
                None,
                format!("the form data could not be read: {}", e.body_text()),
            )])
        }
    }

    /// Reads a multipart body part by part.
    async fn read_multipart(&self, mut mp: Multipart, lang: Lang) -> Result<Submission, Refusal> {
        let mut values = BTreeMap::new();
        let mut attachments = Vec::new();
        loop {
            let mut field = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(self.multipart_refusal(e, lang)),
            };
            let name = field.name().unwrap_or("").to_string();
            // A name or file name that is not UTF-8 is dropped by the
            // parser: refuse it, never skip the part.
            let header_is_text = field
                .headers()
                .get(header::CONTENT_DISPOSITION)
                .is_none_or(|v| std::str::from_utf8(v.as_bytes()).is_ok());
            if !header_is_text {
                let which = if name.is_empty() { "?" } else { name.as_str() };
                return Err(self.not_utf8(which, lang));
            }
            if name == "attachments" {
                let raw_name = field.file_name().unwrap_or("").to_string();
                if raw_name.is_empty() {
                    // An empty file input still sends a part; skip it, but
                    // never drop content silently.
                    match field.chunk().await {
                        Ok(None) => continue,
                        Ok(Some(c)) if c.is_empty() => continue,
                        Ok(Some(_)) => {
                            return Err(Refusal::Invalid(vec![(
                                Some("attachments".into()),
                                lang.t("field.no_file_name").into(),
                            )]));
                        }
                        Err(e) => return Err(self.multipart_refusal(e, lang)),
                    }
                }
                let mut filename = display_name(&raw_name);
                if filename.is_empty() {
                    filename = format!("pielikums-{}", attachments.len() + 1);
                }
                if attachments.len() >= self.cfg.max_attachments {
                    return Err(Refusal::TooLarge(format!(
                        "at most {} attachments are accepted",
                        self.cfg.max_attachments
                    )));
                }
                let content_type = field
                    .content_type()
                    .unwrap_or("application/octet-stream")
                    .to_string();
                self.check_attachment_type(&content_type, &filename)?;
                let stored = self.store_stream(field, &filename, lang).await?;
                attachments.push(AttachmentRef {
                    sha256: stored.sha256,
                    filename,
                    content_type,
                    size: stored.size,
                });
            } else {
                let cap = self.cfg.value_bytes(&name);
                let mut bytes = Vec::new();
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            if (bytes.len() + chunk.len()) as u64 > cap {
                                return Err(self.too_long(&name, lang));
                            }
                            bytes.extend_from_slice(&chunk);
                        }
                        Ok(None) => break,
                        Err(e) => return Err(self.multipart_refusal(e, lang)),
                    }
                }
                let text = String::from_utf8(bytes).map_err(|_| self.not_utf8(&name, lang))?;
                values.insert(name, text);
            }
        }
        Ok(Submission {
            values,
            attachments,
        })
    }

    /// Writes an attachment into the blob store as it arrives, hashing as it goes.
    async fn store_stream(
        &self,
        mut field: Field<'_>,
        filename: &str,
        lang: Lang,
    ) -> Result<StoredBlob, Refusal> {
        let limit = self.cfg.max_attachment_bytes;
        let unavailable = |e: BlobError| {
            tracing::error!(channel = %self.cfg.id, "an attachment could not be stored: {e}");
            Refusal::Unavailable
        };
        let mut w = self.ctx.blobs.writer(limit).await.map_err(unavailable)?;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => match w.write(&chunk).await {
                    Err(BlobError::TooLarge { limit }) => {
                        return Err(Refusal::TooLarge(format!(
                            "attachment {filename:?} is larger than {} MB",
                            limit / (1024 * 1024)
                        )));
                    }
                    Err(e) => return Err(unavailable(e)),
                    Ok(()) => {}
                },
                Ok(None) => break,
                Err(e) => return Err(self.multipart_refusal(e, lang)),
            }
        }
        w.finish().await.map_err(unavailable)
    }

    /// Reads the body within the form's limits, holding an upload slot.
    async fn read_submission(
        &self,
        headers: &HeaderMap,
        req: Request,
        lang: Lang,
    ) -> Result<Submission, Refusal> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let is_multipart = content_type == "multipart/form-data";
        if !is_multipart && content_type != "application/x-www-form-urlencoded" {
            return Err(Refusal::Unsupported(format!(
                "the form is sent as multipart/form-data or application/x-www-form-urlencoded, not {content_type:?}"
            )));
        }
        let limit = if is_multipart {
            self.cfg.multipart_limit()
        } else {
            self.cfg.urlencoded_limit()
        };
        if declared_length(headers).is_some_and(|n| n > limit) {
            return Err(self.too_large(limit, lang));
        }
        let _slot = self.upload_slot().await?;
        if is_multipart {
            let mp = Multipart::from_request(req, &())
                .await
                .map_err(|e| Refusal::BadRequest(vec![(None, e.body_text())]))?;
            self.read_multipart(mp, lang).await
        } else {
            let raw = read_body(req.into_body(), limit, || self.too_large(limit, lang)).await?;
            let pairs = urlencoded_pairs(&raw).map_err(|e| self.not_utf8(&e.field, lang))?;
            Ok(Submission {
                values: pairs.into_iter().collect(),
                attachments: Vec::new(),
            })
        }
    }
}

pub(super) async fn submit_form(
    State(form): State<Arc<WebForm>>,
    Query(q): Query<LangQuery>,
    client: crate::http::client::ClientAddr,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let lang = Lang::pick(q.lang.as_deref(), &headers);
    let json = wants_json(&headers);
    // On a refusal the citizen gets the form back with what they typed.
    let result: Result<Outcome, (Refusal, BTreeMap<String, String>)> = async {
        let none = BTreeMap::new;
        form.check_rate(client.ip()).map_err(|r| (r, none()))?;
        let sub = form
            .read_submission(&headers, req, lang)
            .await
            .map_err(|r| (r, none()))?;
        let values = sub.values.clone();
        form.validate(&sub.values, lang)
            .map_err(|r| (r, values.clone()))?;
        let token = sub
            .values
            .get(TOKEN)
            .and_then(|t| uuid::Uuid::parse_str(t.trim()).ok())
            .map(|u| u.to_string());
        let token = match token {
            Some(t) => t,
            None => content_key(&sub),
        };
        let key = format!("web_form:{}:{token}", form.cfg.id);
        form.accept(key, sub, lang, false)
            .await
            .map_err(|r| (r, values))
    }
    .await;
    match result {
        Ok(outcome) => {
            let (status, receipt) = form.receipt(outcome);
            if json {
                return (status, Json(receipt)).into_response();
            }
            let registered = receipt.registration_number.is_some();
            let page = ReceiptPage {
                lang: lang.code(),
                title: form.cfg.title.clone(),
                registered,
                number: receipt.registration_number.unwrap_or_default(),
                reply_due: receipt.reply_due.unwrap_or_default(),
                status_url: receipt.status_url,
                t_heading: lang.t("receipt.heading"),
                t_number: lang.t("receipt.number"),
                t_due: lang.t("receipt.due"),
                t_pending: lang.t("receipt.pending"),
                t_status: lang.t("receipt.status"),
            };
            let mut resp = render(page);
            *resp.status_mut() = status;
            resp
        }
        Err((refusal, mut values)) => {
            let status = refusal.status();
            tracing::info!(channel = %form.cfg.id, %status, "submission refused: {:?}", refusal);
            if json {
                return refusal.json(lang);
            }
            if matches!(refusal, Refusal::Conflict { .. }) {
                // A fresh page token: submitting again registers what was typed.
                values.remove(TOKEN);
            }
            let mut resp = render(form.page(lang, &values, refusal.messages(lang)));
            *resp.status_mut() = status;
            refusal.with_retry_after(resp)
        }
    }
}

/// Without a page token, identical content within the same day is one submission.
fn content_key(sub: &Submission) -> String {
    let mut h = Sha256::new();
    for (k, v) in &sub.values {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.trim().as_bytes());
        h.update([0]);
    }
    for a in &sub.attachments {
        h.update(a.sha256.as_bytes());
    }
    h.update(chrono::Utc::now().date_naive().to_string().as_bytes());
    format!("content-{}", hex::encode(&h.finalize()[..16]))
}

//! The JSON API for the municipality's own portal:
//! `POST /api/v1/forms/{id}/submissions` with `Authorization: Bearer <key>`,
//! `Content-Type: application/json`, optionally `Idempotency-Key`.
//! Attachments come base64-encoded and are decoded into the blob store a
//! piece at a time.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::form::{declared_length, display_name, read_body};
use super::{Lang, Refusal, Submission, WebForm};
use crate::blobs::{BlobError, StoredBlob};
use crate::message::AttachmentRef;

/// The portal's JSON submission.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSubmission<'a> {
    fields: BTreeMap<String, String>,
    #[serde(default, borrow)]
    attachments: Vec<JsonAttachment<'a>>,
    #[serde(default)]
    lang: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonAttachment<'a> {
    filename: String,
    content_type: String,
    /// Borrowed from the body when it has no escapes: never copied whole.
    #[serde(borrow)]
    content_base64: Cow<'a, str>,
}

/// `application/json`, with or without parameters.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Which field of a body that is not UTF-8 holds the broken bytes: read
/// again with replacement characters to find it (`teksts`, `attachments[0].filename`).
fn field_not_utf8(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let broken = |s: &str| s.contains('\u{FFFD}');
    if let Some(fields) = v.get("fields").and_then(|f| f.as_object()) {
        for (k, val) in fields {
            if broken(k) || val.as_str().is_some_and(broken) {
                return Some(k.clone());
            }
        }
    }
    if let Some(list) = v.get("attachments").and_then(|a| a.as_array()) {
        for (i, a) in list.iter().enumerate() {
            for key in ["filename", "content_type", "content_base64"] {
                if a.get(key).and_then(|s| s.as_str()).is_some_and(broken) {
                    return Some(format!("attachments[{i}].{key}"));
                }
            }
        }
    }
    v.get("lang")
        .and_then(|s| s.as_str())
        .is_some_and(broken)
        .then(|| "lang".to_string())
}

impl WebForm {
    /// Decodes base64 into the blob store 64 KiB of text at a time.
    async fn store_base64(&self, b64: &str, filename: &str) -> Result<StoredBlob, Refusal> {
        let unavailable = |e: BlobError| {
            tracing::error!(channel = %self.cfg.id, "an attachment could not be stored: {e}");
            Refusal::Unavailable
        };
        let mut w = self
            .ctx
            .blobs
            .writer(self.cfg.max_attachment_bytes)
            .await
            .map_err(unavailable)?;
        // Whole groups of four characters decode on their own.
        for piece in b64.as_bytes().chunks(64 * 1024) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(piece)
                .map_err(|e| {
                    Refusal::BadRequest(vec![(
                        None,
                        format!("attachment {filename:?}: content_base64 is not base64: {e}"),
                    )])
                })?;
            match w.write(&bytes).await {
                Ok(()) => {}
                Err(BlobError::TooLarge { limit }) => {
                    return Err(Refusal::TooLarge(format!(
                        "attachment {filename:?} is larger than {limit} bytes"
                    )));
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        w.finish().await.map_err(unavailable)
    }

    /// Everything before the hand-off, with the upload slot held.
    async fn read_json(
        &self,
        headers: &HeaderMap,
        req: Request,
    ) -> Result<(Submission, Lang, String), Refusal> {
        let limit = self.cfg.json_limit();
        if declared_length(headers).is_some_and(|n| n > limit) {
            return Err(self.too_large(limit, Lang::En));
        }
        let _slot = self.upload_slot().await?;
        let body = read_body(req.into_body(), limit, || self.too_large(limit, Lang::En)).await?;
        if std::str::from_utf8(&body).is_err() {
            return Err(match field_not_utf8(&body) {
                Some(field) => self.not_utf8(&field, Lang::En),
                None => {
                    Refusal::BadRequest(vec![(None, "the body is not valid UTF-8 text".into())])
                }
            });
        }
        let sub: JsonSubmission = serde_json::from_slice(&body).map_err(|e| {
            let problem = vec![(None, format!("body is not a valid submission: {e}"))];
            if e.is_data() {
                Refusal::Invalid(problem)
            } else {
                Refusal::BadRequest(problem)
            }
        })?;
        let lang = if sub.lang.as_deref() == Some("en") {
            Lang::En
        } else {
            Lang::Lv
        };
        self.validate(&sub.fields, lang)?;
        if sub.attachments.len() > self.cfg.max_attachments {
            return Err(Refusal::TooLarge(format!(
                "at most {} attachments are accepted",
                self.cfg.max_attachments
            )));
        }
        let mut attachments = Vec::new();
        for a in &sub.attachments {
            let filename = display_name(&a.filename);
            self.check_attachment_type(&a.content_type, &filename)?;
            let stored = self.store_base64(&a.content_base64, &filename).await?;
            attachments.push(AttachmentRef {
                sha256: stored.sha256,
                filename,
                content_type: a.content_type.to_ascii_lowercase(),
                size: stored.size,
            });
        }
        let body_sha256 = hex::encode(Sha256::digest(&body));
        Ok((
            Submission {
                values: sub.fields,
                attachments,
            },
            lang,
            body_sha256,
        ))
    }
}

pub(super) async fn submit_json(
    State(form): State<Arc<WebForm>>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let Some(expected) = &form.api_key else {
        return Refusal::NotEnabled.json(Lang::En);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes())) {
        tracing::warn!(channel = %form.cfg.id, "JSON submission with a wrong API key refused");
        return Refusal::Unauthorized.json(Lang::En);
    }
    if !is_json(&headers) {
        return Refusal::Unsupported(
            "send the submission as JSON with Content-Type: application/json".into(),
        )
        .json(Lang::En);
    }
    let (sub, lang, body_sha256) = match form.read_json(&headers, req).await {
        Ok(read) => read,
        Err(r) => return r.json(Lang::En),
    };
    let key = match headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200)
    {
        Some(k) => format!("web_form:{}:api:{k}", form.cfg.id),
        None => format!("web_form:{}:api:sha256:{body_sha256}", form.cfg.id),
    };
    match form.accept(key, sub, lang, true).await {
        Ok(outcome) => {
            let (status, receipt) = form.receipt(outcome);
            (status, Json(receipt)).into_response()
        }
        Err(r) => r.json(Lang::En),
    }
}

//! Web forms: an accessible HTML page per configured form (Latvian and
//! English), `POST` as multipart or urlencoded, and a JSON API for the
//! municipality's own portal. The citizen gets a 2xx only after the bus
//! confirmed the message; the answer carries the registration number if it
//! is ready within a short wait, otherwise a tracking link.
//!
//! `config` (the TOML and the body limits it implies), `lang` (the page's
//! language, its texts from `templates/form/i18n/`), `page` (form and
//! receipt pages), `validate`, `refusal` (each refusal's status and words),
//! `form` (the HTML form's POST, attachments streamed to the blob store) and
//! `api` (the JSON API); here the door itself and the intake of a checked
//! submission (door claim, publish, receipt).

mod api;
mod config;
mod form;
mod lang;
mod meta;
mod page;
mod refusal;
mod validate;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use futures::future::BoxFuture;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use secrecy::SecretString;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::Instrument;
use unicode_normalization::UnicodeNormalization;

pub use config::{FieldConfig, FieldKind, FieldRole, WebFormConfig};
pub use lang::Lang;
pub use meta::WebFormMeta;
use refusal::{Problem, Refusal};

use super::context::{ItemSummary, KeyClaim, StateError};
use super::original::Original;
use super::{Channel, ChannelError, Door, DoorContext, Words};
use crate::blobs::BlobStore;
use crate::message::{AttachmentRef, ChannelKind, ChannelRef, IntakeMessage};
use crate::phone::normalise_phone;

/// The hidden field a bot fills in and a person never sees.
const HONEYPOT: &str = "website";
/// The hidden per-page token that makes a double submit idempotent.
const TOKEN: &str = "form_token";
/// How long a submission waits for a free upload slot before 503.
const UPLOAD_WAIT: Duration = Duration::from_secs(3);

/// A running web form.
pub struct WebForm {
    cfg: WebFormConfig,
    ctx: DoorContext,
    api_key: Option<SecretString>,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Submissions being read and stored now (the page and the API together).
    uploads: Semaphore,
}

impl WebForm {
    /// A slot for reading a submission's body, waiting briefly for one.
    async fn upload_slot(&self) -> Result<SemaphorePermit<'_>, Refusal> {
        match tokio::time::timeout(UPLOAD_WAIT, self.uploads.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                tracing::warn!(channel = %self.cfg.id, "all {} upload slots busy: submission refused with 503", self.cfg.uploads_in_flight);
                Err(Refusal::Busy)
            }
        }
    }
}

impl Door for WebForm {
    const KIND: ChannelKind = ChannelKind::WebForm;
    const WORDS: Words = Words {
        lv: "tīmekļa veidlapa",
        en: "web form",
    };
    type Config = WebFormConfig;
    type Meta = WebFormMeta;

    fn build(cfg: WebFormConfig, ctx: DoorContext) -> Result<Self, ChannelError> {
        let api_key = match &cfg.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(v) if v.len() >= 16 => Some(SecretString::from(v)),
                Ok(_) => {
                    return Err(ChannelError {
                        channel: cfg.id.clone(),
                        message: format!("{var} must hold an API key of at least 16 characters"),
                    });
                }
                Err(_) => {
                    tracing::info!(channel = %cfg.id, "{var} is not set: the JSON API of this form is off");
                    None
                }
            },
            None => None,
        };
        let per_minute =
            NonZeroU32::new(ctx.site.submissions_per_minute).unwrap_or(NonZeroU32::MIN);
        let uploads = Semaphore::new(cfg.uploads_in_flight.max(1));
        Ok(Self {
            cfg,
            ctx,
            api_key,
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            uploads,
        })
    }

    fn original<'a>(msg: &'a IntakeMessage, _blobs: &'a BlobStore) -> BoxFuture<'a, Original> {
        let fields = msg
            .meta::<WebFormMeta>()
            .map(|m| m.fields.into_iter().collect())
            .unwrap_or_default();
        Box::pin(std::future::ready(Original::Fields(fields)))
    }
}

#[async_trait::async_trait]
impl Channel for WebForm {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::WebForm
    }

    fn limits_own_bodies(&self) -> bool {
        true
    }

    fn routes(self: Arc<Self>) -> Option<Router> {
        let id = self.cfg.id.clone();
        let limit = usize::try_from(self.cfg.multipart_limit()).unwrap_or(usize::MAX);
        Some(
            Router::new()
                .route(
                    &format!("/forms/{id}"),
                    get(page::show_form).post(form::submit_form),
                )
                .route(
                    &format!("/api/v1/forms/{id}/submissions"),
                    post(api::submit_json),
                )
                .layer(DefaultBodyLimit::max(limit))
                .with_state(self),
        )
    }
}

/// A submission after parsing, before validation.
struct Submission {
    values: BTreeMap<String, String>,
    attachments: Vec<AttachmentRef>,
}

impl WebForm {
    /// Claims the key for this content, publishes (with confirm) and waits
    /// briefly for the registration number. The same key with the same
    /// content is the earlier submission; with other content it is refused
    /// before anything is published.
    async fn accept(
        &self,
        idempotency_key: String,
        sub: Submission,
        lang: Lang,
        api: bool,
    ) -> Result<Outcome, Refusal> {
        let mut msg = normalise(
            &self.cfg,
            idempotency_key,
            &sub.values,
            sub.attachments,
            lang.code(),
        );
        // The engine's own check, before anything is claimed or answered.
        msg.prepare().map_err(|e| self.refused(&e, lang))?;
        let content = content_sha256(&msg);
        let unavailable = |e: StateError| {
            tracing::error!(channel = %self.cfg.id, "submission refused, its key could not be checked: {e}");
            Refusal::Unavailable
        };
        let registrations = &self.ctx.registrations;
        let key = msg.idempotency_key.clone();
        match self
            .ctx
            .state
            .claim_key(&key, &content, &msg.id.to_string())
            .await
            .map_err(unavailable)?
        {
            KeyClaim::Held { content_sha256, .. } if content_sha256 != content => {
                return Err(Refusal::Conflict { api });
            }
            KeyClaim::Held { message_id, .. } => {
                // The same submission again: a double click, a client's retry.
                if let Some(item) = registrations.by_key(&key).await.map_err(unavailable)? {
                    return Ok(Outcome::Registered(Box::new(item)));
                }
                // On its way, or its publishing failed: publish it again
                // under the first tracking id; the engine registers it once.
                if let Ok(id) = uuid::Uuid::parse_str(&message_id) {
                    msg.id = id;
                }
            }
            KeyClaim::New => {
                // An item registered before keys were claimed.
                if let Some(item) = registrations.by_key(&key).await.map_err(unavailable)? {
                    let earlier = registrations
                        .message_of(&item.id)
                        .await
                        .map_err(unavailable)?;
                    return if content_sha256(&earlier) == content {
                        Ok(Outcome::Registered(Box::new(item)))
                    } else {
                        Err(Refusal::Conflict { api })
                    };
                }
            }
        }
        let span = tracing::info_span!("item", id = %msg.id, channel = "web_form", instance = %self.cfg.id);
        if let Err(e) = self
            .ctx
            .publisher
            .publish(&msg)
            .instrument(span.clone())
            .await
        {
            if let crate::bus::BusError::Refused(e) = &e {
                return Err(self.refused(e, lang));
            }
            tracing::error!(parent: &span, "not accepted, the citizen was told to retry: {e}");
            return Err(Refusal::Unavailable);
        }
        tracing::info!(parent: &span, "accepted");
        let wait = self.ctx.site.registration_wait;
        let message_id = msg.id.to_string();
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(20);
        loop {
            if let Ok(Some(item)) = self.ctx.registrations.by_message(&message_id).await {
                return Ok(Outcome::Registered(Box::new(item)));
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Ok(Outcome::Pending {
                    tracking_id: message_id,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// A message the one validation refuses ([`IntakeMessage::prepare`]):
    /// 400 naming the form field (or the message field) it is about.
    fn refused(&self, e: &crate::message::MessageError, lang: Lang) -> Refusal {
        let field = e.field().map(|f| {
            f.strip_prefix("metadata.web_form.fields.")
                .unwrap_or(f)
                .to_string()
        });
        let label = field
            .as_deref()
            .map(|f| self.label(f, lang))
            .unwrap_or_default();
        let text = lang.text("field.not_storable", &[("label", &label), ("error", &e)]);
        Refusal::BadRequest(vec![(field, text)])
    }

    fn status_url(&self, tracking_id: &str) -> String {
        self.ctx.site.status_url(tracking_id)
    }
}

/// What "the same submission" means for an idempotency key: the SHA-256 of
/// the normalised field values (`metadata.web_form.fields`: NFC, trimmed,
/// `\n` line ends) and the attachments (content hash, name, type).
fn content_sha256(msg: &IntakeMessage) -> String {
    let fields = msg.meta::<WebFormMeta>().map(|m| m.fields);
    let attachments: Vec<[&str; 3]> = msg
        .attachments
        .iter()
        .map(|a| {
            [
                a.sha256.as_str(),
                a.filename.as_str(),
                a.content_type.as_str(),
            ]
        })
        .collect();
    let canonical = serde_json::json!({ "fields": fields, "attachments": attachments });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// Turns a form's field values into the one message format. Pure, so the
/// golden-file tests pin it down: text is NFC with `\n` line ends, the
/// phone E.164, the subject falls back to the form's title, and every field
/// but the honeypot and page token is kept under `metadata.web_form.fields`.
pub fn normalise(
    cfg: &WebFormConfig,
    idempotency_key: String,
    values: &BTreeMap<String, String>,
    attachments: Vec<AttachmentRef>,
    lang: &str,
) -> IntakeMessage {
    let clean = |v: &str| -> String {
        v.replace("\r\n", "\n")
            .replace('\r', "\n")
            .replace('\0', "")
            .trim()
            .nfc()
            .collect()
    };
    let role_value = |role: FieldRole| {
        cfg.fields
            .iter()
            .filter(|f| f.role == role)
            .filter_map(|f| values.get(&f.name))
            .map(|v| clean(v))
            .find(|v| !v.is_empty())
    };
    let body = cfg
        .fields
        .iter()
        .filter(|f| f.role == FieldRole::Body)
        .filter_map(|f| values.get(&f.name))
        .map(|v| clean(v))
        .filter(|v| !v.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    let mut msg = IntakeMessage::new(
        ChannelRef {
            kind: ChannelKind::WebForm,
            instance: cfg.id.clone(),
        },
        idempotency_key,
        body,
    );
    msg.sender.name = role_value(FieldRole::SenderName);
    msg.sender.email = role_value(FieldRole::SenderEmail).map(|e| e.to_lowercase());
    msg.sender.phone = role_value(FieldRole::SenderPhone).and_then(|p| normalise_phone(&p));
    msg.sender.postal_address = role_value(FieldRole::SenderAddress);
    msg.sender.personal_code =
        role_value(FieldRole::SenderPersonalCode).and_then(|c| crate::personal_code::parse(&c));
    msg.subject = role_value(FieldRole::Subject).or_else(|| Some(cfg.title.clone()));
    msg.language = Some(lang.into());
    msg.attachments = attachments;
    // The personas kods travels as `sender.personal_code` only.
    let personal: Vec<&str> = cfg
        .fields
        .iter()
        .filter(|f| f.role == FieldRole::SenderPersonalCode)
        .map(|f| f.name.as_str())
        .collect();
    let fields: BTreeMap<String, String> = values
        .iter()
        .filter(|(k, _)| k.as_str() != HONEYPOT && k.as_str() != TOKEN && k.as_str() != "lang")
        .filter(|(k, _)| !personal.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), clean(v)))
        .collect();
    msg.set_meta(&WebFormMeta {
        form_id: cfg.id.clone(),
        fields,
        ..WebFormMeta::default()
    });
    msg
}

/// What the citizen is told after a successful hand-off.
enum Outcome {
    Registered(Box<ItemSummary>),
    Pending { tracking_id: String },
}

/// The JSON answer of both POST endpoints.
#[derive(Serialize)]
struct Receipt {
    status: &'static str,
    registration_number: Option<String>,
    reply_due: Option<String>,
    tracking_id: String,
    status_url: String,
}

impl WebForm {
    fn receipt(&self, outcome: Outcome) -> (StatusCode, Receipt) {
        match outcome {
            Outcome::Registered(item) => (
                StatusCode::CREATED,
                Receipt {
                    status: "registered",
                    reply_due: item.due().map(str::to_string),
                    registration_number: Some(item.registration_number),
                    status_url: self.status_url(&item.id),
                    tracking_id: item.id,
                },
            ),
            Outcome::Pending { tracking_id } => (
                StatusCode::ACCEPTED,
                Receipt {
                    status: "accepted",
                    registration_number: None,
                    reply_due: None,
                    status_url: self.status_url(&tracking_id),
                    tracking_id,
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_file_names_never_become_paths() {
        assert_eq!(form::display_name("../../etc/passwd"), "passwd");
        assert_eq!(
            form::display_name("C:\\Users\\x\\iesniegums.pdf"),
            "iesniegums.pdf"
        );
        assert_eq!(form::display_name("līgums\u{202E}fdp.exe"), "līgumsfdp.exe");
    }
}

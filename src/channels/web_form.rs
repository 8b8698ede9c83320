//! Web forms: an accessible HTML page per configured form (Latvian and
//! English), `POST` as multipart or urlencoded, and a JSON API for the
//! municipality's own portal. The citizen gets a 2xx only after the bus
//! confirmed the message; the answer carries the registration number if it
//! is ready within a short wait, otherwise a tracking link.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequest, Multipart, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::Instrument;
use unicode_normalization::UnicodeNormalization;

use super::{Channel, ChannelContext, ChannelError};
use crate::blobs::BlobError;
use crate::bus::publish_intake;
use crate::message::{AttachmentRef, ChannelKind, ChannelRef, IntakeMessage};
use crate::phone::normalise_phone;
use crate::registry::ItemSummary;

/// The hidden field a bot fills in and a person never sees.
const HONEYPOT: &str = "website";
/// The hidden per-page token that makes a double submit idempotent.
const TOKEN: &str = "form_token";

/// What a form field feeds in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FieldRole {
    SenderName,
    SenderEmail,
    SenderPhone,
    SenderAddress,
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
    #[serde(rename = "field")]
    pub fields: Vec<FieldConfig>,
}

fn default_max_attachments() -> usize {
    10
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

impl WebFormConfig {
    /// Problems a file loader reports with the file name.
    pub fn validate(&self) -> Vec<String> {
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
        out
    }
}

/// A running web form.
pub struct WebForm {
    cfg: WebFormConfig,
    ctx: ChannelContext,
    api_key: Option<SecretString>,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl WebForm {
    /// Builds the form; the API key is read from its environment variable now.
    pub fn new(cfg: WebFormConfig, ctx: ChannelContext) -> Result<Self, ChannelError> {
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
            NonZeroU32::new(ctx.settings.http.submissions_per_minute).unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            cfg,
            ctx,
            api_key,
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
        })
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

    fn routes(self: Arc<Self>) -> Option<Router> {
        let id = self.cfg.id.clone();
        Some(
            Router::new()
                .route(&format!("/forms/{id}"), get(show_form).post(submit_form))
                .route(
                    &format!("/api/v1/forms/{id}/submissions"),
                    post(submit_json),
                )
                .with_state(self),
        )
    }
}

/// Page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Lv,
    En,
}

impl Lang {
    fn pick(query: Option<&str>, headers: &HeaderMap) -> Self {
        match query {
            Some("en") => Lang::En,
            Some("lv") => Lang::Lv,
            _ => {
                let accept = headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if accept.trim_start().starts_with("en") {
                    Lang::En
                } else {
                    Lang::Lv
                }
            }
        }
    }
    fn code(self) -> &'static str {
        match self {
            Lang::Lv => "lv",
            Lang::En => "en",
        }
    }
    fn t(self, lv: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Lv => lv,
            Lang::En => en,
        }
    }
}

/// A field as shown on the page.
struct FieldView {
    name: String,
    label: String,
    kind: &'static str,
    required: bool,
    max_length: usize,
    value: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "form.html")]
struct FormPage {
    lang: &'static str,
    other_lang: &'static str,
    other_lang_name: &'static str,
    title: String,
    intro: Option<String>,
    action: String,
    token: String,
    fields: Vec<FieldView>,
    errors: Vec<String>,
    max_attachments: usize,
    accept: String,
    t_required: &'static str,
    t_attachments: &'static str,
    t_attachments_hint: String,
    t_submit: &'static str,
    t_errors: &'static str,
    t_honeypot: &'static str,
}

#[derive(Template)]
#[template(path = "receipt.html")]
struct ReceiptPage {
    lang: &'static str,
    title: String,
    registered: bool,
    number: String,
    reply_due: String,
    status_url: String,
    t_heading: &'static str,
    t_number: &'static str,
    t_due: &'static str,
    t_pending: &'static str,
    t_status: &'static str,
}

#[derive(Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("template rendering failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "page could not be rendered",
            )
                .into_response()
        }
    }
}

impl WebForm {
    fn page(
        &self,
        lang: Lang,
        values: &BTreeMap<String, String>,
        errors: Vec<(Option<String>, String)>,
    ) -> FormPage {
        let field_error = |name: &str| {
            errors
                .iter()
                .find(|(f, _)| f.as_deref() == Some(name))
                .map(|(_, m)| m.clone())
        };
        FormPage {
            lang: lang.code(),
            other_lang: lang.t("en", "lv"),
            other_lang_name: lang.t("English", "Latviešu"),
            title: match lang {
                Lang::En => self
                    .cfg
                    .title_en
                    .clone()
                    .unwrap_or_else(|| self.cfg.title.clone()),
                Lang::Lv => self.cfg.title.clone(),
            },
            intro: match lang {
                Lang::En => self.cfg.intro_en.clone().or_else(|| self.cfg.intro.clone()),
                Lang::Lv => self.cfg.intro.clone(),
            },
            action: format!("/forms/{}?lang={}", self.cfg.id, lang.code()),
            token: values
                .get(TOKEN)
                .cloned()
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            fields: self
                .cfg
                .fields
                .iter()
                .map(|f| FieldView {
                    name: f.name.clone(),
                    label: match lang {
                        Lang::En => f.label_en.clone().unwrap_or_else(|| f.label.clone()),
                        Lang::Lv => f.label.clone(),
                    },
                    kind: match f.kind {
                        FieldKind::Text => "text",
                        FieldKind::Email => "email",
                        FieldKind::Tel => "tel",
                        FieldKind::Textarea => "textarea",
                    },
                    required: f.required,
                    max_length: f.max_length,
                    value: values.get(&f.name).cloned().unwrap_or_default(),
                    error: field_error(&f.name),
                })
                .collect(),
            errors: errors.iter().map(|(_, m)| m.clone()).collect(),
            max_attachments: self.cfg.max_attachments,
            accept: self.cfg.allowed_attachment_types.join(","),
            t_required: lang.t("obligāts", "required"),
            t_attachments: lang.t("Pielikumi", "Attachments"),
            t_attachments_hint: match lang {
                Lang::Lv => format!(
                    "Līdz {} failiem, katrs līdz {} MB.",
                    self.cfg.max_attachments,
                    self.cfg.max_attachment_bytes / (1024 * 1024)
                ),
                Lang::En => format!(
                    "Up to {} files, each up to {} MB.",
                    self.cfg.max_attachments,
                    self.cfg.max_attachment_bytes / (1024 * 1024)
                ),
            },
            t_submit: lang.t("Iesniegt", "Submit"),
            t_errors: lang.t("Lūdzu, izlabojiet:", "Please correct:"),
            t_honeypot: lang.t("Neaizpildiet šo lauku", "Leave this field empty"),
        }
    }
}

async fn show_form(
    State(form): State<Arc<WebForm>>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::pick(q.lang.as_deref(), &headers);
    render(form.page(lang, &BTreeMap::new(), Vec::new()))
}

/// A submission after parsing, before validation.
struct Submission {
    values: BTreeMap<String, String>,
    attachments: Vec<AttachmentRef>,
}

/// Why a submission was refused; each maps to one status and one clear message.
#[derive(Debug)]
enum Refusal {
    Invalid(Vec<(Option<String>, String)>),
    TooLarge(String),
    Unsupported(String),
    RateLimited,
    Bot,
    Unauthorized,
    Unavailable,
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Bot => StatusCode::BAD_REQUEST,
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn messages(&self, lang: Lang) -> Vec<(Option<String>, String)> {
        let one = |m: String| vec![(None, m)];
        match self {
            Refusal::Invalid(list) => list.clone(),
            Refusal::TooLarge(m) | Refusal::Unsupported(m) => one(m.clone()),
            Refusal::RateLimited => one(lang.t("Pārāk daudz iesniegumu no jūsu adreses; lūdzu, mēģiniet pēc minūtes.", "Too many submissions from your address; please try again in a minute.").into()),
            Refusal::Bot => one(lang.t("Slēptais lauks „website” ir aizpildīts, tāpēc iesniegums netika pieņemts. Ja esat cilvēks, atstājiet to tukšu un iesniedziet vēlreiz.", "The hidden field \"website\" was filled in, so the submission was not accepted. If you are a person, leave it empty and submit again.").into()),
            Refusal::Unauthorized => one("missing or wrong API key (Authorization: Bearer <key>)".into()),
            Refusal::Unavailable => one(lang.t("Iesniegumu šobrīd nevar pieņemt; nekas netika reģistrēts. Lūdzu, mēģiniet vēlreiz pēc brīža.", "Your submission cannot be accepted right now; nothing was registered. Please try again shortly.").into()),
        }
    }
}

fn field_problem(field: &str, lang: Lang, lv: String, en: String) -> (Option<String>, String) {
    (
        Some(field.to_string()),
        if lang == Lang::En { en } else { lv },
    )
}

impl WebForm {
    fn check_rate(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.limiter
            .check_key(&ip)
            .map_err(|_| Refusal::RateLimited)
    }

    /// Validates the fields, reporting every problem at once.
    fn validate(&self, values: &BTreeMap<String, String>, lang: Lang) -> Result<(), Refusal> {
        if values.get(HONEYPOT).is_some_and(|v| !v.trim().is_empty()) {
            return Err(Refusal::Bot);
        }
        let mut problems = Vec::new();
        for f in &self.cfg.fields {
            let v = values.get(&f.name).map(|s| s.trim()).unwrap_or("");
            let label = if lang == Lang::En {
                f.label_en.as_deref().unwrap_or(&f.label)
            } else {
                &f.label
            };
            if f.required && v.is_empty() {
                problems.push(field_problem(
                    &f.name,
                    lang,
                    format!("Lauks „{label}” ir obligāts."),
                    format!("\"{label}\" is required."),
                ));
                continue;
            }
            let len = v.chars().count();
            if len > f.max_length {
                problems.push(field_problem(
                    &f.name,
                    lang,
                    format!(
                        "Lauks „{label}” ir par garu ({len} zīmes, atļautas {}).",
                        f.max_length
                    ),
                    format!(
                        "\"{label}\" is too long ({len} characters, {} allowed).",
                        f.max_length
                    ),
                ));
            }
            if !v.is_empty() && f.kind == FieldKind::Email && !looks_like_email(v) {
                problems.push(field_problem(
                    &f.name,
                    lang,
                    format!("Lauks „{label}” nav e-pasta adrese."),
                    format!("\"{label}\" is not an e-mail address."),
                ));
            }
            if !v.is_empty() && f.kind == FieldKind::Tel && normalise_phone(v).is_none() {
                problems.push(field_problem(
                    &f.name,
                    lang,
                    format!("Lauks „{label}” nav tālruņa numurs."),
                    format!("\"{label}\" is not a phone number."),
                ));
            }
        }
        let known: std::collections::HashSet<&str> = self
            .cfg
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .chain([HONEYPOT, TOKEN, "lang"])
            .collect();
        if let Some(extra) = values.keys().find(|k| !known.contains(k.as_str())) {
            problems.push((None, format!("unknown field {extra:?}")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Refusal::Invalid(problems))
        }
    }

    fn check_attachment_type(&self, content_type: &str, filename: &str) -> Result<(), Refusal> {
        let ct = content_type.to_ascii_lowercase();
        if self.cfg.allowed_attachment_types.contains(&ct) {
            Ok(())
        } else {
            Err(Refusal::Unsupported(format!(
                "attachment {filename:?} has type {ct}, which this form does not accept (allowed: {})",
                self.cfg.allowed_attachment_types.join(", ")
            )))
        }
    }

    /// Builds, publishes (with confirm) and waits briefly for the registration number.
    async fn accept(
        &self,
        idempotency_key: String,
        sub: Submission,
        lang: Lang,
    ) -> Result<Outcome, Refusal> {
        if let Ok(Some(item)) = self.ctx.registry.find_by_key(&idempotency_key).await {
            return Ok(Outcome::Registered(Box::new(item)));
        }
        let msg = normalise(
            &self.cfg,
            idempotency_key,
            &sub.values,
            sub.attachments,
            lang.code(),
        );
        let span = tracing::info_span!("item", id = %msg.id, channel = "web_form", instance = %self.cfg.id);
        if let Err(e) = publish_intake(self.ctx.bus.as_ref(), &msg)
            .instrument(span.clone())
            .await
        {
            tracing::error!(parent: &span, "not accepted, the citizen was told to retry: {e}");
            return Err(Refusal::Unavailable);
        }
        tracing::info!(parent: &span, "accepted");
        let wait = Duration::from_millis(self.ctx.settings.http.registration_wait_ms);
        let message_id = msg.id.to_string();
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(20);
        loop {
            if let Ok(Some(item)) = self.ctx.registry.find_by_message(&message_id).await {
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

    fn status_url(&self, tracking_id: &str) -> String {
        format!(
            "{}/status/{tracking_id}",
            self.ctx.settings.http.public_url.trim_end_matches('/')
        )
    }
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
    msg.subject = role_value(FieldRole::Subject).or_else(|| Some(cfg.title.clone()));
    msg.language = Some(lang.into());
    msg.attachments = attachments;
    let fields: BTreeMap<&String, String> = values
        .iter()
        .filter(|(k, _)| k.as_str() != HONEYPOT && k.as_str() != TOKEN && k.as_str() != "lang")
        .map(|(k, v)| (k, clean(v)))
        .collect();
    msg.metadata.insert(
        ChannelKind::WebForm.as_str().into(),
        serde_json::json!({ "form_id": cfg.id, "fields": fields }),
    );
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

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

async fn read_multipart(form: &WebForm, mut mp: Multipart) -> Result<Submission, Refusal> {
    let mut values = BTreeMap::new();
    let mut attachments = Vec::new();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_refusal(e)),
        };
        let name = field.name().unwrap_or("").to_string();
        if name == "attachments" {
            let filename = display_name(field.file_name().unwrap_or(""));
            if filename.is_empty() {
                // An empty file input still sends a part; skip it.
                let _ = field.bytes().await;
                continue;
            }
            if attachments.len() >= form.cfg.max_attachments {
                return Err(Refusal::TooLarge(format!(
                    "at most {} attachments are accepted",
                    form.cfg.max_attachments
                )));
            }
            let content_type = field
                .content_type()
                .unwrap_or("application/octet-stream")
                .to_string();
            form.check_attachment_type(&content_type, &filename)?;
            let stored = store_stream(form, field, &filename).await?;
            attachments.push(AttachmentRef {
                sha256: stored.sha256,
                filename,
                content_type,
                size: stored.size,
            });
        } else {
            let text = field.text().await.map_err(multipart_refusal)?;
            values.insert(name, text);
        }
    }
    Ok(Submission {
        values,
        attachments,
    })
}

fn multipart_refusal(e: axum::extract::multipart::MultipartError) -> Refusal {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Refusal::TooLarge(format!("the upload is too large: {}", e.body_text()))
    } else {
        Refusal::Invalid(vec![(
            None,
            format!("the form data could not be read: {}", e.body_text()),
        )])
    }
}

async fn store_stream(
    form: &WebForm,
    mut field: axum::extract::multipart::Field<'_>,
    filename: &str,
) -> Result<crate::blobs::StoredBlob, Refusal> {
    let limit = form.cfg.max_attachment_bytes;
    let unavailable = |e: BlobError| {
        tracing::error!("attachment {filename:?} could not be stored: {e}");
        Refusal::Unavailable
    };
    let mut w = form.ctx.blobs.writer(limit).await.map_err(unavailable)?;
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
            Err(e) => return Err(multipart_refusal(e)),
        }
    }
    w.finish().await.map_err(unavailable)
}

/// The last path component of a sender's file name, for display only.
fn display_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    base.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn looks_like_email(v: &str) -> bool {
    match v.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !v.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

async fn submit_form(
    State(form): State<Arc<WebForm>>,
    Query(q): Query<LangQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let lang = Lang::pick(q.lang.as_deref(), &headers);
    let json = wants_json(&headers);
    // On a refusal the citizen gets the form back with what they typed.
    let result: Result<Outcome, (Refusal, BTreeMap<String, String>)> = async {
        let none = BTreeMap::new;
        form.check_rate(peer.ip()).map_err(|r| (r, none()))?;
        let is_multipart = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("multipart/form-data"));
        let sub = if is_multipart {
            let mp = Multipart::from_request(req, &())
                .await
                .map_err(|e| (Refusal::Invalid(vec![(None, e.body_text())]), none()))?;
            read_multipart(&form, mp).await.map_err(|r| (r, none()))?
        } else {
            let Form(pairs): Form<Vec<(String, String)>> = Form::from_request(req, &())
                .await
                .map_err(|e| (Refusal::Invalid(vec![(None, e.body_text())]), none()))?;
            Submission {
                values: pairs.into_iter().collect(),
                attachments: Vec::new(),
            }
        };
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
        form.accept(key, sub, lang).await.map_err(|r| (r, values))
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
                t_heading: lang.t("Paldies! Jūsu iesniegums ir saņemts.", "Thank you! Your submission has been received."),
                t_number: lang.t("Reģistrācijas numurs", "Registration number"),
                t_due: lang.t("Atbildi sniegsim līdz", "We will reply by"),
                t_pending: lang.t("Iesniegums tiek reģistrēts. Reģistrācijas numuru redzēsiet šeit:", "Your submission is being registered. You will see its registration number here:"),
                t_status: lang.t("Iesnieguma statuss", "Submission status"),
            };
            let mut resp = render(page);
            *resp.status_mut() = status;
            resp
        }
        Err((refusal, values)) => {
            let status = refusal.status();
            tracing::info!(channel = %form.cfg.id, %status, "submission refused: {:?}", refusal);
            if json {
                let errors: Vec<serde_json::Value> = refusal
                    .messages(lang)
                    .into_iter()
                    .map(|(f, m)| serde_json::json!({"field": f, "message": m}))
                    .collect();
                return (
                    status,
                    Json(serde_json::json!({ "status": "refused", "errors": errors })),
                )
                    .into_response();
            }
            let mut resp = render(form.page(lang, &values, refusal.messages(lang)));
            *resp.status_mut() = status;
            resp
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

/// The portal's JSON submission.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSubmission {
    fields: BTreeMap<String, String>,
    #[serde(default)]
    attachments: Vec<JsonAttachment>,
    #[serde(default)]
    lang: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonAttachment {
    filename: String,
    content_type: String,
    content_base64: String,
}

async fn submit_json(
    State(form): State<Arc<WebForm>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let refuse = |r: Refusal| {
        let errors: Vec<serde_json::Value> = r
            .messages(Lang::En)
            .into_iter()
            .map(|(f, m)| serde_json::json!({"field": f, "message": m}))
            .collect();
        (
            r.status(),
            Json(serde_json::json!({ "status": "refused", "errors": errors })),
        )
            .into_response()
    };
    let Some(expected) = &form.api_key else {
        return (StatusCode::NOT_FOUND, Json(serde_json::json!({"status": "refused", "errors": [{"field": null, "message": "the JSON API of this form is not enabled (set its api_key_env)"}]}))).into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes())) {
        tracing::warn!(channel = %form.cfg.id, "JSON submission with a wrong API key refused");
        return refuse(Refusal::Unauthorized);
    }
    let sub: JsonSubmission = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return refuse(Refusal::Invalid(vec![(
                None,
                format!("body is not a valid submission: {e}"),
            )]));
        }
    };
    let lang = if sub.lang.as_deref() == Some("en") {
        Lang::En
    } else {
        Lang::Lv
    };
    if let Err(r) = form.validate(&sub.fields, lang) {
        return refuse(r);
    }
    if sub.attachments.len() > form.cfg.max_attachments {
        return refuse(Refusal::TooLarge(format!(
            "at most {} attachments are accepted",
            form.cfg.max_attachments
        )));
    }
    let mut attachments = Vec::new();
    for a in sub.attachments {
        let filename = display_name(&a.filename);
        if let Err(r) = form.check_attachment_type(&a.content_type, &filename) {
            return refuse(r);
        }
        let bytes =
            match base64::engine::general_purpose::STANDARD.decode(a.content_base64.as_bytes()) {
                Ok(b) => b,
                Err(e) => {
                    return refuse(Refusal::Invalid(vec![(
                        None,
                        format!("attachment {filename:?}: content_base64 is not base64: {e}"),
                    )]));
                }
            };
        if bytes.len() as u64 > form.cfg.max_attachment_bytes {
            return refuse(Refusal::TooLarge(format!(
                "attachment {filename:?} is larger than {} bytes",
                form.cfg.max_attachment_bytes
            )));
        }
        match form.ctx.blobs.put(&bytes).await {
            Ok(stored) => attachments.push(AttachmentRef {
                sha256: stored.sha256,
                filename,
                content_type: a.content_type.to_ascii_lowercase(),
                size: stored.size,
            }),
            Err(e) => {
                tracing::error!(channel = %form.cfg.id, "attachment {filename:?} could not be stored: {e}");
                return refuse(Refusal::Unavailable);
            }
        }
    }
    let key = match headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200)
    {
        Some(k) => format!("web_form:{}:api:{k}", form.cfg.id),
        None => format!(
            "web_form:{}:api:sha256:{}",
            form.cfg.id,
            hex::encode(Sha256::digest(&body))
        ),
    };
    match form
        .accept(
            key,
            Submission {
                values: sub.fields,
                attachments,
            },
            lang,
        )
        .await
    {
        Ok(outcome) => {
            let (status, receipt) = form.receipt(outcome);
            (status, Json(receipt)).into_response()
        }
        Err(r) => refuse(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_file_names_never_become_paths() {
        assert_eq!(display_name("../../etc/passwd"), "passwd");
        assert_eq!(
            display_name("C:\\Users\\x\\iesniegums.pdf"),
            "iesniegums.pdf"
        );
    }
}

//! The SMS channel: mobile-originated messages from an SMS gateway's HTTP
//! callback, authenticated per gateway, normalised into the one message
//! format and published with a broker confirm before the gateway gets its
//! 2xx (so the gateway retries whenever we fail). The gateway's own message
//! id is the idempotency key: a retried callback never registers twice.
//!
//! Gateways (`gateway.kind` in the channel file):
//! - `kannel`: smsbox `get-url`/`post-url` with a shared secret parameter,
//!   accepted only from the listed source addresses. Kannel joins
//!   concatenated parts itself (`sms-combine-concatenated-mo`). The text
//!   (`%b`) is decoded by its data coding (`coding=%c`, `charset=%C`):
//!   text (UTF-8 with `mo-recode`), UCS-2 (UTF-16BE), or 8-bit data, which is
//!   not text: its bytes are kept as an attachment and the item goes to review.
//! - `twilio`: Twilio-compatible form webhooks, `X-Twilio-Signature`
//!   (HMAC-SHA1 over the public URL and the sorted parameters).
//! - `json_hmac`: a JSON body signed with HMAC-SHA256 in `X-Signature-256`.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use unicode_normalization::UnicodeNormalization;

mod hold;
mod meta;
mod reply;
pub mod segments;

pub use meta::SmsMeta;

pub use reply::ReplySettings;

use super::original::Original;
use super::{Channel, ChannelError, Door, DoorConfig, DoorContext, DoorSinks, SinkContext, Words};
use crate::blobs::BlobStore;
use crate::message::{ChannelKind, ChannelRef, IntakeMessage};
use crate::phone::SmsAddress;

/// Review reason of an SMS with no text.
pub const REASON_EMPTY: &str = "empty SMS: the message has no text";
/// Review reason of 8-bit (binary) content; the bytes are an attachment.
pub const REASON_BINARY: &str =
    "binary SMS: 8-bit data, not text; the bytes are kept as an attachment";
/// Review reason of a text with control characters, from a gateway that
/// did not say the data coding.
pub const REASON_CONTROL: &str = "binary SMS: the text has control characters, 8-bit data passed on as text (Kannel: add coding=%c&charset=%C to get-url); the bytes are kept as an attachment";

/// Longest text accepted by default: 255 concatenated parts of 153 characters.
const DEFAULT_MAX_CHARS: usize = 39_015;

fn default_max_chars() -> usize {
    DEFAULT_MAX_CHARS
}

/// `channels/<id>.toml` with `type = "sms"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    pub id: String,
    /// The number or short code citizens text (kept in the metadata).
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default = "default_max_chars")]
    pub max_chars: usize,
    pub gateway: GatewayConfig,
    /// The answer with the registration number.
    #[serde(default)]
    pub reply: ReplySettings,
    /// SMS from one number within this many seconds of the first become one
    /// item (0 = off: every SMS is its own item).
    #[serde(default)]
    pub join_window_seconds: u64,
    /// Parts of a concatenated SMS still incomplete after this long are
    /// registered as they are (marked incomplete).
    #[serde(default = "hold::default_part_timeout")]
    pub part_timeout_seconds: u64,
}

/// How the gateway calls us and proves it is the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GatewayConfig {
    Kannel {
        /// The `secret` parameter in smsbox's get-url, or the variable holding it.
        #[serde(default)]
        secret: Option<SecretString>,
        #[serde(default)]
        secret_env: Option<String>,
        /// smsbox's addresses; anything else gets 403.
        allow_from: Vec<IpAddr>,
        /// smsbox's `sendsms` URL for answers, e.g. http://127.0.0.1:13013/cgi-bin/sendsms.
        #[serde(default)]
        send_url: Option<String>,
        #[serde(default)]
        send_username: Option<String>,
        #[serde(default)]
        send_password: Option<SecretString>,
        #[serde(default)]
        send_password_env: Option<String>,
    },
    Twilio {
        #[serde(default)]
        auth_token: Option<SecretString>,
        #[serde(default)]
        auth_token_env: Option<String>,
        /// The URL the provider calls, when it differs from http.public_url
        /// (a proxy in front); the signature covers it.
        #[serde(default)]
        public_url: Option<String>,
        /// For answers through the Messages REST API.
        #[serde(default)]
        account_sid: Option<String>,
        #[serde(default = "reply::twilio_api_base")]
        api_base: String,
    },
    JsonHmac {
        #[serde(default)]
        secret: Option<SecretString>,
        #[serde(default)]
        secret_env: Option<String>,
        /// Where answers are POSTed (JSON, signed like the callbacks).
        #[serde(default)]
        send_url: Option<String>,
    },
}

impl GatewayConfig {
    /// The gateway's own names of the id, sender, recipient and text
    /// parameters, for 400s that name the field.
    fn field_names(&self) -> [&'static str; 4] {
        match self {
            GatewayConfig::Twilio { .. } => ["MessageSid", "From", "To", "Body"],
            GatewayConfig::Kannel { .. } | GatewayConfig::JsonHmac { .. } => {
                ["id", "from", "to", "text"]
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            GatewayConfig::Kannel { .. } => "kannel",
            GatewayConfig::Twilio { .. } => "twilio",
            GatewayConfig::JsonHmac { .. } => "json_hmac",
        }
    }

    /// The configured secret, from the file or its environment variable.
    fn secret(&self) -> Result<SecretString, String> {
        let (value, env, key) = match self {
            GatewayConfig::Kannel {
                secret, secret_env, ..
            }
            | GatewayConfig::JsonHmac {
                secret, secret_env, ..
            } => (secret, secret_env, "secret"),
            GatewayConfig::Twilio {
                auth_token,
                auth_token_env,
                ..
            } => (auth_token, auth_token_env, "auth_token"),
        };
        if let Some(v) = value {
            return Ok(v.clone());
        }
        let Some(var) = env else {
            return Err(format!("gateway.{key} or gateway.{key}_env is required"));
        };
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(SecretString::from(v)),
            _ => Err(format!("the variable {var} (gateway.{key}_env) is not set")),
        }
    }
}

impl DoorConfig for SmsConfig {
    fn id(&self) -> &str {
        &self.id
    }

    /// Problems with the file, each naming its key.
    fn validate(&self) -> Vec<String> {
        let mut issues = Vec::new();
        if self.max_chars == 0 {
            issues.push("max_chars must be at least 1".into());
        }
        match &self.gateway {
            GatewayConfig::Kannel {
                secret,
                secret_env,
                allow_from,
                ..
            } => {
                if allow_from.is_empty() {
                    issues.push("gateway.allow_from must list smsbox's addresses".into());
                }
                if secret.is_none() && secret_env.is_none() {
                    issues.push("gateway.secret or gateway.secret_env is required".into());
                }
            }
            GatewayConfig::Twilio {
                auth_token,
                auth_token_env,
                public_url,
                ..
            } => {
                if auth_token.is_none() && auth_token_env.is_none() {
                    issues.push("gateway.auth_token or gateway.auth_token_env is required".into());
                }
                if public_url
                    .as_deref()
                    .is_some_and(|u| !(u.starts_with("https://") || u.starts_with("http://")))
                {
                    issues.push("gateway.public_url must start with https:// or http://".into());
                }
            }
            GatewayConfig::JsonHmac {
                secret, secret_env, ..
            } => {
                if secret.is_none() && secret_env.is_none() {
                    issues.push("gateway.secret or gateway.secret_env is required".into());
                }
            }
        }
        issues.extend(self.reply.validate(&self.gateway));
        issues
    }
}

/// A running SMS channel.
pub struct Sms {
    cfg: SmsConfig,
    ctx: DoorContext,
    /// None when the secret is missing: every callback then gets 503, so
    /// the gateway keeps the messages until the secret is configured.
    secret: Option<SecretString>,
}

/// An inbound SMS as the gateway described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSms {
    pub gateway_id: String,
    pub from: String,
    pub to: Option<String>,
    pub text: String,
    /// One part of a concatenated SMS the gateway did not join.
    pub part: Option<Part>,
    /// The bytes of 8-bit data (data coding 1), which are not text; `text`
    /// is then empty.
    pub binary: Option<Vec<u8>>,
}

/// The concatenation header of one part (UDH reference, number, count).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    #[serde(rename = "ref")]
    pub reference: String,
    pub part: u32,
    pub parts: u32,
}

/// Why a callback was not accepted; each maps to the status the gateway gets.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("forged or unauthorised request: {0}")]
    Forbidden(String),
    #[error("bad request: {0}")]
    Invalid(String),
    #[error("SMS channel {0} is not configured: {1}")]
    NotConfigured(String, String),
    #[error("could not hand the SMS on (the gateway will retry): {0}")]
    Unavailable(String),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
            Refusal::NotConfigured(..) | Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

const NOT_UTF8: &str =
    "a parameter is not valid UTF-8 (send the text as UTF-8: Kannel mo-recode = true)";

/// `application/x-www-form-urlencoded` pairs; invalid UTF-8 is an error, not
/// replacement characters in a citizen's text.
pub fn form_pairs(raw: &[u8]) -> Result<Vec<(String, String)>, String> {
    form_pairs_raw(raw)?
        .into_iter()
        .map(|(k, v)| Ok((k, String::from_utf8(v).map_err(|_| NOT_UTF8.to_string())?)))
        .collect()
}

/// Form pairs whose values stay bytes (Kannel's `%b` of a UCS-2 or 8-bit
/// SMS); the names must be UTF-8.
fn form_pairs_raw(raw: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    raw.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let decode = |part: Option<&[u8]>| -> Vec<u8> {
                let plus: Vec<u8> = part
                    .unwrap_or_default()
                    .iter()
                    .map(|b| if *b == b'+' { b' ' } else { *b })
                    .collect();
                percent_encoding::percent_decode(&plus).collect()
            };
            let key = String::from_utf8(decode(it.next())).map_err(|_| NOT_UTF8.to_string())?;
            Ok((key, decode(it.next())))
        })
        .collect()
}

/// Kannel's `%b` by its data coding (`%c`) and charset (`%C`): the text,
/// or for 8-bit data the bytes. Without a coding (an older get-url) the
/// text must be UTF-8, as `mo-recode = true` delivers it.
fn kannel_text(
    raw: Vec<u8>,
    coding: Option<&str>,
    charset: Option<&str>,
) -> Result<(String, Option<Vec<u8>>), Refusal> {
    let utf8 =
        |raw: Vec<u8>| String::from_utf8(raw).map_err(|_| Refusal::Invalid(NOT_UTF8.to_string()));
    let charset_is = |name: &str| charset.is_some_and(|c| c.trim().eq_ignore_ascii_case(name));
    match coding.map(str::trim) {
        None | Some("") | Some("0") => Ok((utf8(raw)?, None)),
        // mo-recode turns UCS-2 into UTF-8 where it can; otherwise UTF-16BE.
        Some("2") if charset_is("UTF-8") => Ok((utf8(raw)?, None)),
        Some("2") => {
            let units: Vec<u16> = raw
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
                .collect();
            match String::from_utf16(&units) {
                Ok(text) if raw.len().is_multiple_of(2) => Ok((text, None)),
                // Not UTF-16 at all: kept as bytes, for a person to look at.
                _ => Ok((String::new(), Some(raw))),
            }
        }
        Some("1") => Ok((String::new(), Some(raw))),
        Some(other) => Err(Refusal::Invalid(format!(
            "coding {other:?} is not a data coding (0 text, 1 8-bit, 2 UCS-2)"
        ))),
    }
}

/// The bytes of an SMS that is not text, and why: 8-bit data, or text with
/// control characters (8-bit data a gateway passed on as if it were text).
fn binary_content(sms: &InboundSms) -> Option<(&[u8], &'static str)> {
    match &sms.binary {
        Some(bytes) => Some((bytes, REASON_BINARY)),
        None if has_control_characters(&sms.text) => Some((sms.text.as_bytes(), REASON_CONTROL)),
        None => None,
    }
}

/// Control characters other than line breaks and tabs: what 8-bit data
/// looks like when a gateway passes it on as if it were text.
fn has_control_characters(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn required(pairs: &[(String, String)], key: &str) -> Result<String, Refusal> {
    param(pairs, key)
        .map(str::to_string)
        .ok_or_else(|| Refusal::Invalid(format!("parameter {key:?} is missing")))
}

fn same(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// `X-Twilio-Signature`: Base64(HMAC-SHA1(token, url + sorted key+value)).
pub fn twilio_signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `X-Signature-256: sha256=<hex>` of the raw body.
pub fn body_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSms {
    id: String,
    from: String,
    #[serde(default)]
    to: Option<String>,
    text: String,
    /// For providers that do not join concatenated SMS themselves.
    #[serde(default)]
    concat: Option<Part>,
}

/// What became of an accepted callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Handed to the bus (or already registered): the item's tracking id.
    Published(String),
    /// Held until its group is complete or its window closes.
    Held,
}

/// What the handler got from axum.
struct Callback<'a> {
    peer: IpAddr,
    headers: &'a HeaderMap,
    method: &'a Method,
    uri: &'a Uri,
    body: &'a [u8],
}

impl Sms {
    /// Authenticates and parses one callback.
    fn parse(&self, c: &Callback<'_>) -> Result<InboundSms, Refusal> {
        let Some(secret) = &self.secret else {
            return Err(Refusal::NotConfigured(
                self.cfg.id.clone(),
                "its gateway secret is missing (see the daemon's start-up warning)".into(),
            ));
        };
        let secret = secret.expose_secret();
        match &self.cfg.gateway {
            GatewayConfig::Kannel { allow_from, .. } => {
                if !allow_from.contains(&c.peer) {
                    return Err(Refusal::Forbidden(format!(
                        "{} is not in gateway.allow_from",
                        c.peer
                    )));
                }
                let mut raw = form_pairs_raw(c.uri.query().unwrap_or("").as_bytes())
                    .map_err(Refusal::Invalid)?;
                if c.method == Method::POST {
                    raw.extend(form_pairs_raw(c.body).map_err(Refusal::Invalid)?);
                }
                let given = raw
                    .iter()
                    .find(|(k, _)| k == "secret")
                    .map_or(&[][..], |(_, v)| v.as_slice());
                if !same(given, secret.as_bytes()) {
                    return Err(Refusal::Forbidden(
                        "wrong or missing secret parameter".into(),
                    ));
                }
                // The text is decoded by its coding; every other value is UTF-8.
                let mut text = None;
                let mut pairs = Vec::with_capacity(raw.len());
                for (k, v) in raw {
                    if k == "text" {
                        text.get_or_insert(v);
                    } else {
                        let v = String::from_utf8(v)
                            .map_err(|_| Refusal::Invalid(NOT_UTF8.to_string()))?;
                        pairs.push((k, v));
                    }
                }
                let text =
                    text.ok_or_else(|| Refusal::Invalid("parameter \"text\" is missing".into()))?;
                let (text, binary) =
                    kannel_text(text, param(&pairs, "coding"), param(&pairs, "charset"))?;
                Ok(InboundSms {
                    gateway_id: required(&pairs, "id")?,
                    from: required(&pairs, "from")?,
                    to: param(&pairs, "to").map(str::to_string),
                    text,
                    part: None,
                    binary,
                })
            }
            GatewayConfig::Twilio { public_url, .. } => {
                let pairs = form_pairs(c.body).map_err(Refusal::Invalid)?;
                let base = public_url.clone().unwrap_or_else(|| {
                    format!(
                        "{}{}",
                        self.ctx.site.public_url,
                        c.uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
                    )
                });
                let expected = twilio_signature(secret, &base, &pairs);
                let given = c
                    .headers
                    .get("x-twilio-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if given.is_empty() || !same(given.as_bytes(), expected.as_bytes()) {
                    return Err(Refusal::Forbidden(format!(
                        "X-Twilio-Signature does not match (signed URL {base})"
                    )));
                }
                Ok(InboundSms {
                    gateway_id: required(&pairs, "MessageSid")?,
                    from: required(&pairs, "From")?,
                    to: param(&pairs, "To").map(str::to_string),
                    text: required(&pairs, "Body")?,
                    part: None,
                    binary: None,
                })
            }
            GatewayConfig::JsonHmac { .. } => {
                let given = c
                    .headers
                    .get("x-signature-256")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if given.is_empty()
                    || !same(given.as_bytes(), body_signature(secret, c.body).as_bytes())
                {
                    return Err(Refusal::Forbidden(
                        "X-Signature-256 does not match the body".into(),
                    ));
                }
                let sms: JsonSms = serde_json::from_slice(c.body)
                    .map_err(|e| Refusal::Invalid(format!("JSON body: {e}")))?;
                if let Some(p) = &sms.concat
                    && (p.parts < 2 || p.part == 0 || p.part > p.parts || p.parts > 255)
                {
                    return Err(Refusal::Invalid(format!(
                        "concat: part {} of {} is not a part of a concatenated SMS",
                        p.part, p.parts
                    )));
                }
                Ok(InboundSms {
                    gateway_id: sms.id,
                    from: sms.from,
                    to: sms.to,
                    text: sms.text,
                    part: sms.concat,
                    binary: None,
                })
            }
        }
    }

    /// The one message format for an inbound SMS.
    pub fn normalise(&self, sms: &InboundSms) -> Result<IntakeMessage, Refusal> {
        let [id_field, from_field, _, text_field] = self.cfg.gateway.field_names();
        if sms.gateway_id.trim().is_empty() || sms.gateway_id.len() > 200 {
            return Err(Refusal::Invalid(format!(
                "parameter {id_field:?}: the gateway message id must be 1–200 characters"
            )));
        }
        // The id is the item's idempotency key: never changed, so a
        // control character in it is refused, not removed.
        if sms.gateway_id.chars().any(char::is_control) {
            return Err(Refusal::Invalid(format!(
                "parameter {id_field:?}: the gateway message id contains a control character"
            )));
        }
        let from = SmsAddress::parse(&sms.from).ok_or_else(|| {
            Refusal::Invalid(format!(
                "parameter {from_field:?}: sender {:?} is not a phone number, short code or sender name",
                sms.from
            ))
        })?;
        let binary = binary_content(sms);
        let text: String = match binary {
            Some(_) => String::new(),
            None => sms
                .text
                .replace("\r\n", "\n")
                .replace(['\r'], "\n")
                .trim()
                .nfc()
                .collect(),
        };
        if text.chars().count() > self.cfg.max_chars {
            return Err(Refusal::Invalid(format!(
                "parameter {text_field:?}: the text has {} characters, more than max_chars = {}",
                text.chars().count(),
                self.cfg.max_chars
            )));
        }
        let mut msg = IntakeMessage::new(
            ChannelRef {
                kind: ChannelKind::Sms,
                instance: self.cfg.id.clone(),
            },
            format!("sms:{}:{}", self.cfg.id, sms.gateway_id.trim()),
            text,
        );
        if let SmsAddress::Number(n) = &from {
            msg.sender.phone = Some(n.clone());
        }
        msg.review_reason = match &binary {
            Some((_, reason)) => Some((*reason).to_string()),
            None if msg.body.is_empty() => Some(REASON_EMPTY.to_string()),
            None => None,
        };
        msg.set_meta(&SmsMeta {
            gateway: self.cfg.gateway.kind().to_string(),
            gateway_id: sms.gateway_id.trim().to_string(),
            from: from.as_str().to_string(),
            to: sms.to.clone().or_else(|| self.cfg.number.clone()),
            // Answered by SMS only when the sender can receive one and this
            // channel answers at all.
            answer_by_sms: from.can_reply() && self.cfg.reply.enabled,
            binary_bytes: binary.as_ref().map(|(bytes, _)| bytes.len()),
            ..SmsMeta::default()
        });
        Ok(msg)
    }

    /// Authenticates, normalises, publishes with confirm: the gateway's 2xx
    /// comes only after the item is durably handed on.
    async fn receive(&self, c: Callback<'_>) -> Result<Accepted, Refusal> {
        let mut sms = self.parse(&c)?;
        // Made storable (NUL removed) before it is held or published.
        sms.to = sms
            .to
            .map(|to| crate::message::storable_text(&to).into_owned());
        let mut msg = self.normalise(&sms)?;
        if let Some((bytes, _)) = binary_content(&sms) {
            // Binary content is an item of its own, its bytes an attachment
            // stored before the item is published.
            let blob = self
                .ctx
                .blobs
                .put(bytes)
                .await
                .map_err(|e| Refusal::Unavailable(e.to_string()))?;
            msg.attachments.push(crate::message::AttachmentRef {
                sha256: blob.sha256,
                filename: "sms-8bit.bin".into(),
                content_type: "application/octet-stream".into(),
                size: blob.size,
            });
        } else if sms.part.is_some() || self.cfg.join_window_seconds > 0 {
            return self.hold(&sms, &msg).await;
        }
        let span =
            tracing::info_span!("item", id = %msg.id, channel = "sms", instance = %self.cfg.id);
        if let Ok(Some(item)) = self.ctx.registrations.by_key(&msg.idempotency_key).await {
            tracing::info!(parent: &span, number = %item.registration_number, "repeated callback: already registered");
            return Ok(Accepted::Published(item.id));
        }
        self.ctx
            .publisher
            .publish(&msg)
            .instrument(span.clone())
            .await
            .map_err(|e| match e {
                crate::bus::BusError::Refused(e) => {
                    Refusal::Invalid(format!("field {}: {e}", e.field().unwrap_or("message")))
                }
                e => Refusal::Unavailable(e.to_string()),
            })?;
        tracing::info!(parent: &span, "accepted");
        Ok(Accepted::Published(msg.id.to_string()))
    }

    /// The body each gateway expects with its 2xx.
    fn answer(&self, accepted: &Accepted) -> Response {
        match self.cfg.gateway {
            // With max-messages = 0 smsbox does not text this back.
            GatewayConfig::Kannel { .. } => (StatusCode::OK, "ok").into_response(),
            GatewayConfig::Twilio { .. } => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/xml")],
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
            )
                .into_response(),
            GatewayConfig::JsonHmac { .. } => (
                StatusCode::OK,
                axum::Json(match accepted {
                    Accepted::Published(id) => {
                        serde_json::json!({ "status": "accepted", "tracking_id": id })
                    }
                    Accepted::Held => serde_json::json!({ "status": "held" }),
                }),
            )
                .into_response(),
        }
    }
}

async fn inbound(
    State(sms): State<Arc<Sms>>,
    peer: crate::http::client::ClientAddr,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The gateway's address (behind a trusted proxy: the forwarded one),
    // IPv4-mapped addresses made plain.
    let callback = Callback {
        peer: peer.ip(),
        headers: &headers,
        method: &method,
        uri: &uri,
        body: &body,
    };
    match sms.receive(callback).await {
        Ok(accepted) => sms.answer(&accepted),
        Err(refusal) => {
            match &refusal {
                Refusal::Forbidden(_) => {
                    tracing::warn!(channel = %sms.cfg.id, %peer, "SMS callback refused: {refusal}")
                }
                _ => {
                    tracing::error!(channel = %sms.cfg.id, %peer, "SMS callback refused: {refusal}")
                }
            }
            (refusal.status(), refusal.to_string()).into_response()
        }
    }
}

impl Door for Sms {
    const KIND: ChannelKind = ChannelKind::Sms;
    const WORDS: Words = Words {
        lv: "īsziņa",
        en: "SMS",
    };
    type Config = SmsConfig;
    type Meta = SmsMeta;

    fn build(cfg: SmsConfig, ctx: DoorContext) -> Result<Self, ChannelError> {
        let secret = match cfg.gateway.secret() {
            Ok(s) => Some(s),
            Err(why) => {
                tracing::warn!(channel = %cfg.id, "SMS callbacks are refused with 503 until configured: {why}");
                None
            }
        };
        Ok(Sms { cfg, ctx, secret })
    }

    /// The answer SMS, when `[reply] enabled`.
    fn sinks(cfg: &SmsConfig, sinks: &SinkContext) -> Result<DoorSinks, ChannelError> {
        if !cfg.reply.enabled {
            return Ok(DoorSinks::default());
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .map_err(|e| ChannelError {
                channel: cfg.id.clone(),
                message: format!("HTTP client for answers: {e}"),
            })?;
        Ok(DoorSinks {
            replier: Some(Arc::new(reply::SmsReplier::new(cfg.clone(), http, sinks))),
            upkeep: None,
        })
    }

    fn original<'a>(msg: &'a IntakeMessage, _blobs: &'a BlobStore) -> BoxFuture<'a, Original> {
        Box::pin(std::future::ready(Original::fields_of(
            msg.channel_metadata(),
        )))
    }
}

#[async_trait]
impl Channel for Sms {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }

    /// Publishes held SMS whose group is complete or whose window closed.
    async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), ChannelError> {
        loop {
            if let Err(e) = self.flush_held(chrono::Utc::now()).await {
                tracing::warn!(channel = %self.cfg.id, "held SMS stay for the next round: {e}");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
    }

    fn routes(self: Arc<Self>) -> Option<Router> {
        let path = format!("/sms/{}/inbound", self.cfg.id);
        Some(Router::new().route(&path, any(inbound)).with_state(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_signature_matches_the_documented_example() {
        // The example of Twilio's webhook-security documentation and SDK tests.
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            twilio_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
    }

    #[test]
    fn form_bodies_decode_utf8_and_refuse_broken_bytes() {
        let pairs = form_pairs("text=L%C5%ABdzu+b%C5%ABvatļauju&from=%2B37129123456".as_bytes())
            .expect("valid");
        assert_eq!(param(&pairs, "text"), Some("Lūdzu būvatļauju"));
        assert_eq!(param(&pairs, "from"), Some("+37129123456"));
        assert!(form_pairs(b"text=%C5").is_err());
    }
}

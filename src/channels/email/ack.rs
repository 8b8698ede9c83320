//! The acknowledgement: once an e-mail is registered, its sender gets the
//! registration number, the unit, the reply deadline and the office's
//! contact, in Latvian or English (the item's language), as a reply to
//! their mail (`In-Reply-To`, subject tag `[Nr. …]`), so their next mail
//! threads. Marked `Auto-Submitted: auto-replied` so no robot answers it,
//! at most `max_per_address_per_day` per address. Sent by the replies task
//! ([`crate::replies`]): a relay that is down delays it, never registration.

use askama::Template;
use async_trait::async_trait;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::Security;
use super::normalise::{acknowledgement_id, reply_subject, subject_tag};
use crate::channels::SinkContext;
use crate::registry::Registry;
use crate::registry::replies::PendingReply;
use crate::replies::{DailyLimit, Replier, ReplyError, ReplyOutcome};
use crate::rules::watch::SharedRules;

/// `[acknowledgement.smtp]`: the relay the acknowledgements go through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default = "default_smtp_security")]
    pub security: Security,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretString>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// Extra CA certificate (PEM) to trust, for an internal relay.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

fn default_smtp_port() -> u16 {
    587
}
fn default_smtp_security() -> Security {
    Security::Starttls
}
fn default_max_per_day() -> i64 {
    5
}

/// `[acknowledgement]` of an e-mail channel file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckSettings {
    /// `Name <address>` the acknowledgements come from.
    pub from: String,
    /// Who is answering, as the letter names it.
    pub municipality: String,
    /// How to reach the office (phone, address, hours).
    pub contact: String,
    #[serde(default = "default_max_per_day")]
    pub max_per_address_per_day: i64,
    pub smtp: SmtpConfig,
}

impl AckSettings {
    /// Problems, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut issues = Vec::new();
        if self.from.parse::<Mailbox>().is_err() {
            issues.push(format!(
                "acknowledgement.from {:?} is not an address (\"Name <user@example.lv>\")",
                self.from
            ));
        }
        if self.max_per_address_per_day < 1 {
            issues.push("acknowledgement.max_per_address_per_day must be at least 1".into());
        }
        let s = &self.smtp;
        if s.security == Security::Plain && !crate::tls::is_local_host(&s.host) {
            issues.push(format!(
                "acknowledgement.smtp.security = \"plain\" to {} would send mail unprotected; use \"starttls\" or \"tls\"",
                s.host
            ));
        }
        if s.username.is_some() && s.password.is_none() && s.password_env.is_none() {
            issues.push("acknowledgement.smtp.username needs password or password_env".into());
        }
        issues
    }

    /// The sender's address, lowercase.
    pub fn from_address(&self) -> Option<String> {
        self.from
            .parse::<Mailbox>()
            .ok()
            .map(|m| m.email.to_string().to_lowercase())
    }
}

#[derive(Template)]
#[template(path = "ack_lv.txt", escape = "none")]
struct AckLv<'a> {
    view: &'a AckView,
}

#[derive(Template)]
#[template(path = "ack_en.txt", escape = "none")]
struct AckEn<'a> {
    view: &'a AckView,
}

/// What the letter says, in either language.
struct AckView {
    name: Option<String>,
    number: String,
    subject: Option<String>,
    received: String,
    unit: Option<String>,
    /// Outside the municipality's competence: forwarded.
    forwarding: bool,
    due: Option<String>,
    municipality: String,
    contact: String,
}

/// Sends acknowledgements for one e-mail channel.
pub struct Acknowledger {
    settings: AckSettings,
    from: Mailbox,
    domain: String,
    ours: Vec<String>,
    /// Why nothing can be sent (a secret not set), checked before each answer.
    missing_secret: Option<String>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    registry: Registry,
    rules: SharedRules,
}

impl Acknowledger {
    /// Builds the SMTP transport (connections are made when sending).
    pub fn new(
        channel: &str,
        settings: AckSettings,
        ours: Vec<String>,
        ctx: &SinkContext,
    ) -> Result<Self, String> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| format!("acknowledgement.from: {e}"))?;
        let domain = from.email.domain().to_string();
        let s = &settings.smtp;
        let tls = |wrap: fn(TlsParameters) -> Tls| -> Result<Tls, String> {
            let mut params = TlsParameters::builder(s.host.clone());
            if let Some(file) = &s.ca_file {
                let pem = std::fs::read(file)
                    .map_err(|e| format!("acknowledgement.smtp.ca_file {}: {e}", file.display()))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| format!("acknowledgement.smtp.ca_file {}: {e}", file.display()))?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build()
                .map_err(|e| format!("acknowledgement.smtp: {e}"))?;
            Ok(wrap(params))
        };
        let tls = match s.security {
            Security::Plain => Tls::None,
            Security::Starttls => tls(Tls::Required)?,
            Security::Tls => tls(Tls::Wrapper)?,
        };
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str())
            .port(s.port)
            .tls(tls)
            .timeout(Some(std::time::Duration::from_secs(60)));
        // A password variable that is not set leaves the answers waiting
        // (with this reason on each item), not the daemon unable to start.
        let mut missing_secret = None;
        let builder = match &s.username {
            Some(user) => {
                let password = match (&s.password, &s.password_env) {
                    (Some(p), _) => p.expose_secret().to_string(),
                    (None, Some(var)) => std::env::var(var).unwrap_or_else(|_| {
                        missing_secret = Some(format!(
                            "channel {channel}: the variable {var} with the SMTP password (acknowledgement.smtp.password_env) is not set; set it and restart"
                        ));
                        String::new()
                    }),
                    (None, None) => String::new(),
                };
                builder.credentials(Credentials::new(user.clone(), password))
            }
            None => builder,
        };
        if let Some(why) = &missing_secret {
            tracing::warn!("acknowledgements wait: {why}");
        }
        Ok(Self {
            settings,
            from,
            domain,
            ours,
            missing_secret,
            transport: builder.build(),
            registry: ctx.registry.clone(),
            rules: ctx.rules.clone(),
        })
    }

    fn registry_error(e: crate::registry::RegistryError) -> ReplyError {
        ReplyError::Transient(e.to_string())
    }

    /// The letter for one registered item.
    async fn compose(&self, reply: &PendingReply) -> Result<(Message, String), ReplyError> {
        let item = self
            .registry
            .find(&reply.item_id)
            .await
            .map_err(Self::registry_error)?
            .ok_or_else(|| ReplyError::Permanent(format!("item {} is gone", reply.item_id)))?;
        let original = self
            .registry
            .item_message(&reply.item_id)
            .await
            .map_err(Self::registry_error)?;
        let english = original.language.as_deref() == Some("en");
        let unit = item.unit_id.as_ref().and_then(|u| {
            let rules = self.rules.load();
            rules.units.get(u).map(|u| match (&u.name_en, english) {
                (Some(en), true) => en.clone(),
                _ => u.name.clone(),
            })
        });
        let date = |d: &str| match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(day) if !english => day.format("%d.%m.%Y.").to_string(),
            _ => d.to_string(),
        };
        let received = crate::registry::parse_db_time(&item.received_at)
            .map(|t| {
                t.with_timezone(&chrono_tz::Europe::Riga)
                    .format(if english {
                        "%Y-%m-%d %H:%M"
                    } else {
                        "%d.%m.%Y. %H:%M"
                    })
                    .to_string()
            })
            .unwrap_or_else(|| item.received_at.clone());
        let view = AckView {
            name: item.sender_name.clone(),
            number: item.registration_number.clone(),
            subject: item.subject.clone(),
            received,
            unit,
            forwarding: item.state == "forwarding",
            due: item.due().map(date),
            municipality: self.settings.municipality.clone(),
            contact: self.settings.contact.clone(),
        };
        let text = if english {
            AckEn { view: &view }.render()
        } else {
            AckLv { view: &view }.render()
        }
        .map_err(|e| ReplyError::Permanent(format!("acknowledgement template: {e}")))?;
        let number = &item.registration_number;
        let subject = match (&item.subject, english) {
            (Some(s), _) => reply_subject(s, number),
            (None, false) => format!("Jūsu iesniegums saņemts {}", subject_tag(number)),
            (None, true) => format!("Your submission was received {}", subject_tag(number)),
        };
        let to = match item.sender_name.as_deref() {
            Some(name) => format!("{} <{}>", quote_name(name), reply.address),
            None => reply.address.clone(),
        };
        let to: Mailbox = to.parse().or_else(|_| reply.address.parse()).map_err(|e| {
            ReplyError::Permanent(format!(
                "address {:?} cannot receive mail: {e}",
                reply.address
            ))
        })?;
        let message_id = acknowledgement_id(&item.id, &self.domain);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(message_id.clone()))
            .header(ContentType::TEXT_PLAIN);
        let original_id = original
            .meta::<super::EmailMeta>()
            .and_then(|m| m.message_id)
            .map(|id| format!("<{}>", id.trim_matches(['<', '>'])));
        if let Some(id) = &original_id {
            builder = builder.in_reply_to(id.clone()).references(id.clone());
        }
        // lettre picks 8bit, quoted-printable or base64 by the text's lines.
        let body = Body::new(text);
        let mut mail = builder
            .body(body)
            .map_err(|e| ReplyError::Permanent(format!("acknowledgement cannot be built: {e}")))?;
        let headers = mail.headers_mut();
        for (name, value) in [
            // RFC 3834: an automatic answer, never to be answered automatically.
            ("Auto-Submitted", "auto-replied"),
            ("X-Auto-Response-Suppress", "All"),
            ("Content-Language", if english { "en" } else { "lv" }),
        ] {
            headers.insert_raw(HeaderValue::new(
                HeaderName::new_from_ascii_str(name),
                value.into(),
            ));
        }
        Ok((mail, message_id))
    }
}

/// A display name safe inside `Name <addr>`.
fn quote_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| !matches!(c, '"' | '\\' | '<' | '>' | '\r' | '\n'))
        .collect();
    format!("\"{clean}\"")
}

#[async_trait]
impl Replier for Acknowledger {
    fn daily_limit(&self) -> Option<DailyLimit> {
        Some(DailyLimit {
            per_day: self.settings.max_per_address_per_day,
            setting: "acknowledgement.max_per_address_per_day",
        })
    }

    async fn reply(&self, reply: &PendingReply) -> Result<ReplyOutcome, ReplyError> {
        let address = reply.address.to_lowercase();
        if super::normalise::is_ours(&self.ours, &address) {
            return Ok(ReplyOutcome::Suppressed(
                "the address is one of our own".into(),
            ));
        }
        if let Some(why) = &self.missing_secret {
            return Err(ReplyError::Transient(why.clone()));
        }
        let (mail, message_id) = self.compose(reply).await?;
        match self.transport.send(mail).await {
            Ok(resp) => Ok(ReplyOutcome::Sent(serde_json::json!({
                "message_id": message_id,
                "smtp": resp.code().to_string(),
            }))),
            Err(e) if e.is_permanent() => Err(ReplyError::Permanent(format!(
                "the mail relay refused the acknowledgement: {e}"
            ))),
            Err(e) => Err(ReplyError::Transient(format!(
                "the mail relay could not take the acknowledgement: {e}"
            ))),
        }
    }
}

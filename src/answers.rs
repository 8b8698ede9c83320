//! The answer to an item goes back through the citizen's channel. The unit
//! registers it on the desk ([`crate::desk::unit`]) as an outgoing document
//! ([`crate::registry::answers`]); [`delivery_for`] decides how it travels:
//!
//! - e-mail (items that came by e-mail or a form with an address): the
//!   [`AnswerMail`] replier sends the answer with its document attached
//!   (the signed document uploaded, else the letter as a PDF);
//! - SMS: the SMS channel's replier sends a notice with the status link;
//! - e-adrese: items that came by e-adrese, and any item whose sender gave
//!   a personas kods with an active e-adrese in the addressee directory
//!   ([`answer_delivery`]), by the e-adrese channel's replier;
//! - a letter (scanned post, anything without an electronic address): the
//!   PDF from [`letter_pdf`], printed and posted by an officer, who marks it.
//!
//! E-mail and SMS go through the replies table and its senders
//! ([`crate::replies`]): claimed under a lease, sent once, retried with
//! backoff, the outcome on the item's audit log.

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::blobs::BlobStore;
use crate::channels::email::normalise::{answer_mail_id, subject_tag};
use crate::message::{ChannelKind, IntakeMessage};
use crate::print::{PrintFont, PrintSettings, Printout};
use crate::registry::answers::Answer;
use crate::registry::replies::PendingReply;
use crate::registry::{ItemSummary, Registry};
use crate::replies::{Replier, ReplyError, ReplyOutcome};

/// The replies' channel instance of answers sent by e-mail.
pub const ANSWER_MAIL: &str = "answers:email";

/// `[answers]` of the daemon's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerSettings {
    /// The outgoing numbers' pattern: `{year}`, `{seq}`, `{seq:N}` and
    /// `{unit_index}` (the answering unit's); one gap-free series per year.
    pub number_pattern: String,
    /// The relay e-mail answers go through (`smtp://host:port`,
    /// `smtps://user:pass@host`); unset: e-mail answers wait, said at start.
    pub smtp_url: Option<SecretString>,
    /// The sender of e-mail answers.
    pub from: String,
}

impl Default for AnswerSettings {
    fn default() -> Self {
        Self {
            number_pattern: "IZ-{year}/{seq}".into(),
            smtp_url: None,
            from: "Pietura <pietura@localhost>".into(),
        }
    }
}

impl AnswerSettings {
    /// Problems as (`answers.key`, message), for the configuration check.
    pub fn issues(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Err(e) = crate::registry::numbering::Pattern::parse(&self.number_pattern) {
            out.push(("answers.number_pattern".into(), e.to_string()));
        }
        if let Err(e) = self.from.parse::<Mailbox>() {
            out.push(("answers.from".into(), e.to_string()));
        }
        if let Some(url) = &self.smtp_url
            && let Err(e) = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
        {
            out.push(("answers.smtp_url".into(), e.to_string()));
        }
        out
    }
}

/// What the desk needs to register and print answers, made at start.
#[derive(Debug, Clone)]
pub struct AnswerDesk {
    pub font: PrintFont,
    pub print: PrintSettings,
    pub pattern: crate::registry::numbering::Pattern,
}

impl AnswerDesk {
    pub fn new(settings: &crate::config::Settings) -> Result<Self, AnswerDeskError> {
        Ok(Self {
            font: PrintFont::load(&settings.print.font)?,
            print: settings.print.clone(),
            pattern: crate::registry::numbering::Pattern::parse(&settings.answers.number_pattern)?,
        })
    }
}

/// Why the desk cannot register answers (both found by the configuration check).
#[derive(Debug, thiserror::Error)]
pub enum AnswerDeskError {
    #[error(transparent)]
    Font(#[from] crate::print::PrintError),
    #[error("answers.number_pattern: {0}")]
    Pattern(#[from] crate::registry::numbering::PatternError),
}

/// How an answer reaches the citizen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    Email,
    Sms,
    Letter,
    EAdrese,
}

impl DeliveryKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Email => "email",
            DeliveryKind::Sms => "sms",
            DeliveryKind::Letter => "letter",
            DeliveryKind::EAdrese => "e_adrese",
        }
    }
}

/// An answer's way back: its kind and, sent electronically, the channel
/// instance whose replier sends it and the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub kind: DeliveryKind,
    pub send_via: Option<(String, String)>,
}

/// How an item's answer travels by the channel it came by (a new channel
/// adds its arm here). The desk asks [`answer_delivery`], which first sends
/// to the person's active e-adrese when the item names their personas kods.
pub fn delivery_for(msg: &IntakeMessage) -> Delivery {
    let letter = Delivery {
        kind: DeliveryKind::Letter,
        send_via: None,
    };
    match msg.channel.kind {
        ChannelKind::Sms => match &msg.sender.phone {
            Some(phone) => Delivery {
                kind: DeliveryKind::Sms,
                send_via: Some((msg.channel.instance.clone(), phone.clone())),
            },
            None => letter,
        },
        // Sent through e-adrese: answered there (Oficiālās elektroniskās
        // adreses likums, s.12), by the channel instance it came through.
        ChannelKind::EAdrese => match &msg.sender.e_address {
            Some(address) => Delivery {
                kind: DeliveryKind::EAdrese,
                send_via: Some((msg.channel.instance.clone(), address.clone())),
            },
            None => letter,
        },
        // Paper in, paper out.
        ChannelKind::Scan => letter,
        // E-mail, web forms, the counter and the phone: by e-mail when the
        // person gave an address, otherwise by post.
        _ => match &msg.sender.email {
            Some(email) => Delivery {
                kind: DeliveryKind::Email,
                send_via: Some((ANSWER_MAIL.to_string(), email.clone())),
            },
            None => letter,
        },
    }
}

/// The e-adrese an answer to `msg` must go to, whatever door the item came
/// by: the person gave their personas kods (`sender.personal_code`), an
/// e-adrese channel is configured (`eadrese_channel`, whose replier sends
/// it), and the addressee directory ([`crate::eadrese::directory`]) lists
/// `_PRIVATE@<code>` as active (Oficiālās elektroniskās adreses likums: a
/// person with an active e-adrese is answered there). `None` otherwise.
pub async fn active_eadrese(
    registry: &Registry,
    eadrese_channel: Option<&str>,
    msg: &IntakeMessage,
) -> Result<Option<Delivery>, crate::registry::RegistryError> {
    let (Some(channel), Some(code)) = (eadrese_channel, &msg.sender.personal_code) else {
        return Ok(None);
    };
    if msg.channel.kind == ChannelKind::EAdrese {
        return Ok(None);
    }
    let address = crate::personal_code::e_address(code);
    if !crate::eadrese::directory::has_active_eadrese(registry, &address).await? {
        return Ok(None);
    }
    Ok(Some(Delivery {
        kind: DeliveryKind::EAdrese,
        send_via: Some((channel.to_string(), address)),
    }))
}

/// How the answer to `msg` travels: to the person's active e-adrese when
/// the directory knows one ([`active_eadrese`]), else by the channel it
/// came by ([`delivery_for`]). `channels` are the configured channels as
/// (id, kind); the first e-adrese one sends.
pub async fn answer_delivery(
    registry: &Registry,
    channels: &[(String, String)],
    msg: &IntakeMessage,
) -> Result<Delivery, crate::registry::RegistryError> {
    let eadrese = channels
        .iter()
        .find(|(_, kind)| kind == ChannelKind::EAdrese.as_str())
        .map(|(id, _)| id.as_str());
    Ok(active_eadrese(registry, eadrese, msg)
        .await?
        .unwrap_or_else(|| delivery_for(msg)))
}

/// A database time as the local date `dd.mm.yyyy.`.
fn local_day(at: &str) -> String {
    crate::registry::parse_db_time(at)
        .map(|t| {
            t.with_timezone(&chrono_tz::Europe::Riga)
                .format("%d.%m.%Y.")
                .to_string()
        })
        .unwrap_or_else(|| at.to_string())
}

/// The citizen's address for the envelope window: name, then the postal
/// address broken at its commas or lines.
pub fn address_lines(msg: &IntakeMessage) -> Vec<String> {
    let mut lines: Vec<String> = msg.sender.name.iter().cloned().collect();
    if let Some(address) = &msg.sender.postal_address {
        lines.extend(
            address
                .split([',', '\n'])
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    lines
}

/// The answer as a letter: the municipality's header, the citizen's
/// address in the envelope window, the answer's number and date, what it
/// answers, and its text.
pub fn letter_pdf(
    font: &PrintFont,
    print: &PrintSettings,
    item: &ItemSummary,
    msg: &IntakeMessage,
    answer: &Answer,
) -> Vec<u8> {
    let mut p = Printout::new(font, &format!("Atbilde {}", answer.number));
    p.header(&print.header)
        .address_window(&print.return_address, &address_lines(msg))
        .paragraph(&format!(
            "{}  Nr. {}",
            local_day(&answer.created_at),
            answer.number
        ))
        .paragraph(&format!(
            "Uz {} iesniegumu Nr. {}",
            local_day(&item.received_at),
            item.registration_number
        ))
        .space(4.0);
    if let Some(subject) = &msg.subject {
        p.heading(subject);
    }
    p.paragraph(&answer.body)
        .footer(print.header.first().map_or("", String::as_str));
    p.render()
}

/// The document an answer carries, as (file name, bytes): the signed
/// document the officer uploaded, else the letter as a PDF. One choice for
/// every electronic way an answer travels (e-mail, e-adrese).
pub async fn answer_document(
    blobs: &BlobStore,
    font: &PrintFont,
    print: &PrintSettings,
    item: &ItemSummary,
    msg: &IntakeMessage,
    answer: &Answer,
) -> Result<(String, Vec<u8>), ReplyError> {
    if let (Some(sha), Some(name)) = (&answer.document_sha256, &answer.document_name) {
        let bytes = blobs
            .get(sha)
            .await
            .map_err(|e| ReplyError::Transient(format!("answer document: {e}")))?;
        return Ok((name.clone(), bytes));
    }
    let (font, print) = (font.clone(), print.clone());
    let (i, m, a) = (item.clone(), msg.clone(), answer.clone());
    let pdf = tokio::task::spawn_blocking(move || letter_pdf(&font, &print, &i, &m, &a))
        .await
        .map_err(|e| ReplyError::Transient(format!("the letter PDF: {e}")))?;
    Ok((
        format!("{}.pdf", answer.number.replace(['/', '\\'], "-")),
        pdf,
    ))
}

/// The media type of an answer's document, by its name.
pub fn document_mime(name: &str) -> &'static str {
    mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream")
}

/// Sends answers by e-mail (replies of [`ANSWER_MAIL`]).
pub struct AnswerMail {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    registry: Registry,
    blobs: BlobStore,
    font: PrintFont,
    print: PrintSettings,
    public_url: String,
}

/// Why the e-mail answers cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum AnswerMailError {
    #[error("answers.smtp_url: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("answers.from: {0}")]
    From(#[from] lettre::address::AddressError),
    #[error(transparent)]
    Font(#[from] crate::print::PrintError),
}

impl AnswerMail {
    /// None when no relay is configured.
    pub fn new(
        settings: &crate::config::Settings,
        registry: Registry,
        blobs: BlobStore,
    ) -> Result<Option<Self>, AnswerMailError> {
        let Some(url) = &settings.answers.smtp_url else {
            return Ok(None);
        };
        Ok(Some(Self {
            transport: AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())?.build(),
            from: settings.answers.from.parse()?,
            registry,
            blobs,
            font: PrintFont::load(&settings.print.font)?,
            print: settings.print.clone(),
            public_url: settings.http.public_url.trim_end_matches('/').to_string(),
        }))
    }

    async fn compose(&self, reply: &PendingReply) -> Result<Message, ReplyError> {
        let transient = |e: crate::registry::RegistryError| ReplyError::Transient(e.to_string());
        let Some(answer_id) = &reply.answer_id else {
            return Err(ReplyError::Permanent(
                "only answers are sent by e-mail here".into(),
            ));
        };
        let answer = self
            .registry
            .answer(answer_id)
            .await
            .map_err(transient)?
            .ok_or_else(|| ReplyError::Permanent(format!("answer {answer_id} is gone")))?;
        let item = self
            .registry
            .find(&reply.item_id)
            .await
            .map_err(transient)?
            .ok_or_else(|| ReplyError::Permanent(format!("item {} is gone", reply.item_id)))?;
        let msg = self
            .registry
            .item_message(&reply.item_id)
            .await
            .map_err(transient)?;
        let (file, bytes) =
            answer_document(&self.blobs, &self.font, &self.print, &item, &msg, &answer).await?;
        let content_type = ContentType::parse(document_mime(&file))
            .or_else(|_| ContentType::parse("application/octet-stream"))
            .map_err(|e| ReplyError::Permanent(format!("content type: {e}")))?;
        let text = format!(
            "Atbilde Nr. {} uz Jūsu iesniegumu Nr. {}\n\n{}\n\nIesnieguma statuss: {}/status/{}\n",
            answer.number, item.registration_number, answer.body, self.public_url, item.id
        );
        let to: Mailbox = reply.address.parse().map_err(|e| {
            ReplyError::Permanent(format!(
                "address {:?} cannot receive mail: {e}",
                reply.address
            ))
        })?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .message_id(Some(answer_mail_id(&item.id, self.from.email.domain())))
            .subject(format!(
                "Atbilde Nr. {} {}",
                answer.number,
                subject_tag(&item.registration_number)
            ))
            .date_now()
            .multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(text))
                    .singlepart(Attachment::new(file).body(bytes, content_type)),
            )
            .map_err(|e| ReplyError::Permanent(format!("the answer cannot be built: {e}")))
    }
}

#[async_trait]
impl Replier for AnswerMail {
    async fn reply(&self, reply: &PendingReply) -> Result<ReplyOutcome, ReplyError> {
        let mail = self.compose(reply).await?;
        match self.transport.send(mail).await {
            Ok(resp) => Ok(ReplyOutcome::Sent(serde_json::json!({
                "answer": reply.answer_id,
                "smtp": resp.code().to_string(),
            }))),
            Err(e) if e.is_permanent() => Err(ReplyError::Permanent(format!(
                "the mail relay refused the answer: {e}"
            ))),
            Err(e) => Err(ReplyError::Transient(format!(
                "the mail relay could not take the answer: {e}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ChannelRef;

    fn message(kind: ChannelKind, email: Option<&str>, phone: Option<&str>) -> IntakeMessage {
        let mut m = IntakeMessage::new(
            ChannelRef {
                kind,
                instance: "door".into(),
            },
            "key".into(),
            "teksts".into(),
        );
        m.sender.email = email.map(str::to_string);
        m.sender.phone = phone.map(str::to_string);
        m.sender.name = Some("Jānis Bērziņš".into());
        m.sender.postal_address = Some("Ēdoles iela 7-12, Rīga,\nLV-1013".into());
        m
    }

    #[test]
    fn the_channel_an_item_came_by_decides_how_its_answer_goes() {
        let mail = delivery_for(&message(ChannelKind::Email, Some("a@b.lv"), None));
        assert_eq!(mail.kind, DeliveryKind::Email);
        assert_eq!(
            mail.send_via,
            Some((ANSWER_MAIL.to_string(), "a@b.lv".to_string()))
        );
        let form = delivery_for(&message(ChannelKind::WebForm, Some("a@b.lv"), None));
        assert_eq!(form.kind, DeliveryKind::Email);
        let sms = delivery_for(&message(ChannelKind::Sms, None, Some("+37129123456")));
        assert_eq!(sms.kind, DeliveryKind::Sms);
        assert_eq!(
            sms.send_via,
            Some(("door".to_string(), "+37129123456".to_string()))
        );
        for letter in [
            message(ChannelKind::Scan, Some("a@b.lv"), None),
            message(ChannelKind::WebForm, None, None),
            message(ChannelKind::Sms, None, None),
        ] {
            let d = delivery_for(&letter);
            assert_eq!((d.kind, d.send_via), (DeliveryKind::Letter, None));
        }
    }

    #[test]
    fn the_window_address_is_the_name_and_the_postal_address_lines() {
        let m = message(ChannelKind::Scan, None, None);
        assert_eq!(
            address_lines(&m),
            ["Jānis Bērziņš", "Ēdoles iela 7-12", "Rīga", "LV-1013"]
        );
    }
}

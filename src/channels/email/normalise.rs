//! One raw e-mail (RFC 5322 bytes) into the parts of an
//! [`IntakeMessage`]: sender, subject, plain-text body (HTML converted,
//! forwarded messages included), attachments as content-addressed blobs
//! (signed containers listed), and what decides how it is handled: whether
//! it may be acknowledged (RFC 3834), whether it is a delivery report about
//! one of our acknowledgements, which of our items it refers to. Pure: no
//! I/O, so the golden files test exactly what the channel publishes.
//! MIME and every legacy charset are decoded by `mail-parser`.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use mail_parser::{Message, MessageParser, MimeHeaders};
use regex::Regex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

use super::edoc;
use crate::message::{AttachmentRef, ChannelKind, ChannelRef, FollowUp, IntakeMessage, Sender};

/// Forwarded messages are followed this deep (a forward of a forward…).
const MAX_NESTING: usize = 3;
/// Longest attachment name kept for display.
const MAX_FILENAME_CHARS: usize = 200;

/// Bytes and their SHA-256: the blob store's address, computed here so the
/// message can name it before the store has it.
#[derive(Debug, Clone)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl Blob {
    fn of(bytes: Vec<u8>) -> Self {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Self { bytes, sha256 }
    }
}

/// One attachment as found in the mail.
#[derive(Debug, Clone)]
pub struct Part {
    /// The sender's name for it, cleaned for display; never a path.
    pub filename: String,
    pub content_type: String,
    pub blob: Blob,
    /// Shown inside the HTML body (a logo, a pasted picture).
    pub inline: bool,
    pub signed: Option<Result<edoc::SignedContainer, String>>,
}

/// Where the mail was read from, kept in the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapSource {
    pub mailbox: String,
    pub uid_validity: u32,
    pub uid: u32,
}

/// A mail taken apart.
#[derive(Debug, Clone)]
pub struct ParsedMail {
    /// The message as received (headers only when it was over the size limit).
    pub raw: Blob,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub sender: Sender,
    pub body: String,
    pub language: Option<String>,
    pub parts: Vec<Part>,
    pub has_html: bool,
    pub forwarded_messages: usize,
    /// Parts that could not be read (kept as they came).
    pub problems: Vec<String>,
    /// Why it must go to the records officer (oversized, malformed).
    pub review_reason: Option<String>,
    /// Why it must not be acknowledged (auto-generated, a list, our own…).
    pub no_acknowledgement: Option<String>,
    /// A delivery report (bounce).
    pub is_report: bool,
    /// Items whose acknowledgement this mail names (In-Reply-To, References,
    /// or, in a report, the returned headers).
    pub acknowledged_items: Vec<Uuid>,
    /// A registration number in the subject (`[Nr. …]`), as our acknowledgements carry it.
    pub subject_number: Option<String>,
}

/// The Message-ID of our acknowledgement for an item: the item id makes
/// replies and bounces traceable without storing anything.
pub fn acknowledgement_id(item_id: &str, domain: &str) -> String {
    format!("<{item_id}.ack@{domain}>")
}

/// The subject tag that carries the registration number.
pub fn subject_tag(number: &str) -> String {
    format!("[Nr. {number}]")
}

static ACK_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.ack@")
        .expect("static regex")
});
static SUBJECT_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[Nr\.\s*([^\]\s][^\]]{0,40}?)\s*\]").expect("static regex"));

fn ack_ids_in(text: &str) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = ACK_ID
        .captures_iter(text)
        .filter_map(|c| Uuid::parse_str(&c[1]).ok())
        .collect();
    ids.dedup();
    ids
}

/// Plain text fit for rules and the registry: NFC, LF line ends, no control
/// characters (PostgreSQL refuses NUL), at most one blank line in a row.
pub fn clean_text(s: &str) -> String {
    let unified = s.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(unified.len());
    let mut blank_run = 0;
    for line in unified.nfc().collect::<String>().lines() {
        let line: String = line
            .chars()
            .filter(|c| !c.is_control() || *c == '\t')
            .collect::<String>()
            .replace('\u{a0}', " ");
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_string()
}

/// An attachment name for display: the last path component, no control
/// characters, not empty, not too long.
fn clean_filename(name: Option<&str>, n: usize, content_type: &str) -> String {
    let base = name
        .unwrap_or("")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .nfc()
        .collect::<String>();
    let base = base.trim().trim_start_matches('.').trim();
    if base.is_empty() {
        let ext = match content_type {
            "message/rfc822" => "eml",
            "application/pdf" => "pdf",
            "image/jpeg" => "jpg",
            "image/png" => "png",
            "text/plain" => "txt",
            "text/html" => "html",
            _ => "bin",
        };
        return format!("attachment-{n}.{ext}");
    }
    base.chars().take(MAX_FILENAME_CHARS).collect()
}

/// Latvian when the text has its letters or common words, English when it
/// has English function words, else unknown (answered in Latvian).
pub fn guess_language(text: &str) -> Option<&'static str> {
    let lower = text.to_lowercase();
    let latvian_letters = lower.chars().filter(|c| "āčēģīķļņšūž".contains(*c)).count();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .collect();
    let count = |list: &[&str]| words.iter().filter(|w| list.contains(w)).count();
    let lv = count(&[
        "un", "par", "ir", "lūdzu", "ludzu", "labdien", "ar", "uz", "no", "kā",
    ]);
    let en = count(&[
        "the", "and", "please", "dear", "of", "to", "is", "my", "for", "regards",
    ]);
    if latvian_letters > 0 || lv > en {
        Some("lv")
    } else if en >= 2 {
        Some("en")
    } else {
        None
    }
}

fn header_text(m: &Message<'_>, name: &str) -> Option<String> {
    m.header_raw(name).map(|v| v.trim().to_string())
}

/// Why a mail must not be answered automatically (RFC 3834 and the usual
/// signs of robots, lists and bounces), or `None`.
fn why_not_acknowledge(m: &Message<'_>, from: Option<&str>, ours: &[String]) -> Option<String> {
    if let Some(v) = header_text(m, "Auto-Submitted")
        && !v.eq_ignore_ascii_case("no")
    {
        return Some(format!("auto-generated (Auto-Submitted: {v})"));
    }
    if let Some(v) = header_text(m, "Precedence") {
        let v = v.to_lowercase();
        if ["bulk", "junk", "list"].contains(&v.as_str()) {
            return Some(format!("bulk mail (Precedence: {v})"));
        }
    }
    if m.header_raw("X-Loop").is_some() {
        return Some("X-Loop header present".into());
    }
    if m.header_raw("List-Id").is_some() || m.header_raw("List-Unsubscribe").is_some() {
        return Some("mailing-list mail".into());
    }
    if let Some(v) = header_text(m, "X-Auto-Response-Suppress") {
        let v = v.to_lowercase();
        if v.contains("all") || v.contains("autoreply") || v.contains("oof") {
            return Some(format!("the sender asked for no auto-replies ({v})"));
        }
    }
    if m.header_raw("X-Autoreply").is_some() || m.header_raw("X-Autorespond").is_some() {
        return Some("auto-reply".into());
    }
    if header_text(m, "Return-Path").is_some_and(|v| v.trim_matches(['<', '>', ' ']).is_empty()) {
        return Some("empty Return-Path (a bounce or a robot)".into());
    }
    let Some(from) = from else {
        return Some("no sender address".into());
    };
    let local = from.split('@').next().unwrap_or("");
    if [
        "mailer-daemon",
        "postmaster",
        "noreply",
        "no-reply",
        "donotreply",
        "do-not-reply",
    ]
    .contains(&local)
    {
        return Some(format!("robot sender ({local})"));
    }
    if ours.iter().any(|o| o == from) {
        return Some("sent from one of our own addresses".into());
    }
    None
}

/// Everything read from one message, nested forwards included.
struct Walk {
    body: Vec<String>,
    parts: Vec<Part>,
    has_html: bool,
    forwarded: usize,
    /// What could not be read (kept as it came), for the records officer.
    problems: Vec<String>,
}

/// Outlook's rich-text mail carries its attachments inside `winmail.dat`
/// (TNEF): they are unpacked beside it, and it is kept as it came.
fn is_tnef(filename: &str, content_type: &str) -> bool {
    content_type == "application/ms-tnef"
        || content_type == "application/vnd.ms-tnef"
        || filename.eq_ignore_ascii_case("winmail.dat")
}

/// The files inside a TNEF container, numbered after `first`; or why not.
fn unpack_tnef(bytes: &[u8], first: usize) -> Result<Vec<Part>, String> {
    let inside = tnef::read_attachments(bytes).map_err(|e| format!("{e:?}"))?;
    Ok(inside
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let content_type = mime_guess::from_path(&a.title)
                .first_or_octet_stream()
                .essence_str()
                .to_string();
            let filename = clean_filename(Some(&a.title), first + i, &content_type);
            let data = a.data.to_vec();
            let signed = edoc::looks_signed(&filename, &data).then(|| edoc::inspect(&data));
            Part {
                filename,
                content_type,
                blob: Blob::of(data),
                inline: false,
                signed,
            }
        })
        .collect())
}

fn walk(m: &Message<'_>, depth: usize, w: &mut Walk) {
    let mut texts = Vec::new();
    for i in 0..m.text_body_count() {
        if let Some(t) = m.body_text(i) {
            texts.push(t.into_owned());
        }
    }
    w.has_html |= m.html_body_count() > 0 && m.html_bodies().any(|p| p.is_text_html());
    w.body.push(texts.join("\n\n"));
    for part in m.attachments() {
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".into())
            .to_lowercase();
        let filename = clean_filename(part.attachment_name(), w.parts.len() + 1, &content_type);
        let inline = part.content_disposition().is_some_and(|d| d.is_inline())
            || (part.content_id().is_some() && part.content_disposition().is_none());
        let bytes = part.contents().to_vec();
        if let Some(nested) = part.message() {
            w.forwarded += 1;
            w.parts.push(Part {
                filename,
                content_type: "message/rfc822".into(),
                blob: Blob::of(bytes),
                inline: false,
                signed: None,
            });
            if depth < MAX_NESTING {
                let from = nested
                    .from()
                    .and_then(|a| a.first())
                    .map(|a| match (a.name(), a.address()) {
                        (Some(n), Some(e)) => format!("{n} <{e}>"),
                        (None, Some(e)) => e.to_string(),
                        (Some(n), None) => n.to_string(),
                        (None, None) => String::new(),
                    })
                    .unwrap_or_default();
                w.body.push(format!(
                    "--- Pārsūtīta vēstule / Forwarded message ---\nNo / From: {from}\nTēma / Subject: {}",
                    nested.subject().unwrap_or("")
                ));
                walk(nested, depth + 1, w);
            }
            continue;
        }
        let signed = edoc::looks_signed(&filename, &bytes).then(|| edoc::inspect(&bytes));
        let unpacked = is_tnef(&filename, &content_type)
            .then(|| (filename.clone(), unpack_tnef(&bytes, w.parts.len() + 2)));
        w.parts.push(Part {
            filename,
            content_type,
            blob: Blob::of(bytes),
            inline,
            signed,
        });
        match unpacked {
            Some((_, Ok(inside))) => w.parts.extend(inside),
            Some((container, Err(e))) => w.problems.push(format!(
                "{container} (TNEF) could not be unpacked: {e}; it is kept as it came"
            )),
            None => {}
        }
    }
}

/// Takes a raw mail apart. `original_size` is set when `raw` holds only the
/// headers of a mail over the size limit of `limit` bytes. `ours` are our
/// own addresses, lowercase.
pub fn parse(raw: Vec<u8>, original_size: Option<(u64, u64)>, ours: &[String]) -> ParsedMail {
    // A mail has at least one standard header (From, Date, Received…);
    // bytes that yield only unknown "headers" are not a mail.
    let parsed = MessageParser::default().parse(&raw).filter(|m| {
        m.headers()
            .iter()
            .any(|h| !matches!(h.name, mail_parser::HeaderName::Other(_)))
    });
    let Some(m) = parsed.as_ref() else {
        // Kept raw and whole for the records officer.
        let preview = clean_text(&String::from_utf8_lossy(&raw[..raw.len().min(4000)]));
        return ParsedMail {
            raw: Blob::of(raw),
            message_id: None,
            subject: None,
            sender: Sender::default(),
            body: preview,
            language: None,
            parts: Vec::new(),
            has_html: false,
            forwarded_messages: 0,
            problems: Vec::new(),
            review_reason: Some(
                "malformed e-mail: no RFC 5322 header could be read; the raw message is kept"
                    .into(),
            ),
            no_acknowledgement: Some("the mail could not be read".into()),
            is_report: false,
            acknowledged_items: Vec::new(),
            subject_number: None,
        };
    };
    let from = m.from().and_then(|a| a.first());
    let email = from
        .and_then(|a| a.address())
        .map(|a| a.trim().to_lowercase())
        .filter(|a| a.contains('@'));
    let sender = Sender {
        name: from
            .and_then(|a| a.name())
            .map(clean_text)
            .filter(|n| !n.is_empty()),
        email: email.clone(),
        phone: None,
        postal_address: None,
    };
    let subject = m.subject().map(clean_text).filter(|s| !s.is_empty());
    let mut w = Walk {
        body: Vec::new(),
        parts: Vec::new(),
        has_html: false,
        forwarded: 0,
        problems: Vec::new(),
    };
    let review_reason = match original_size {
        Some((size, limit)) => {
            w.body.push(format!(
                "(Vēstule ir {size} baitu liela, vairāk nekā atļautie {limit}; saglabātas tikai tās galvenes. / The message is {size} bytes, over the limit of {limit}; only its headers were kept.)"
            ));
            Some(format!(
                "oversized e-mail: {size} bytes, over the limit of {limit}; only the headers were kept; the whole mail stays on the mail server"
            ))
        }
        None => {
            walk(m, 0, &mut w);
            None
        }
    };
    let body = clean_text(&w.body.join("\n\n"));
    let content_type = m
        .content_type()
        .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_lowercase());
    let robot_sender = email.as_deref().is_some_and(|e| {
        let local = e.split('@').next().unwrap_or("");
        local == "mailer-daemon" || local == "postmaster"
    });
    let is_report = content_type.as_deref() == Some("multipart/report") || robot_sender;
    let mut refs = String::new();
    for name in ["In-Reply-To", "References"] {
        if let Some(v) = m.header_raw(name) {
            refs.push_str(v);
            refs.push(' ');
        }
    }
    let acknowledged_items = if is_report {
        // The returned headers of our acknowledgement carry its Message-ID.
        ack_ids_in(&String::from_utf8_lossy(&raw))
    } else {
        ack_ids_in(&refs)
    };
    let subject_number = subject
        .as_deref()
        .and_then(|s| SUBJECT_NUMBER.captures(s))
        .map(|c| c[1].to_string());
    let language = guess_language(&format!("{}\n{body}", subject.as_deref().unwrap_or("")))
        .map(str::to_string);
    ParsedMail {
        message_id: m.message_id().map(str::to_string),
        no_acknowledgement: why_not_acknowledge(m, email.as_deref(), ours),
        raw: Blob::of(raw.clone()),
        subject,
        sender,
        body,
        language,
        parts: w.parts,
        has_html: w.has_html,
        forwarded_messages: w.forwarded,
        problems: w.problems,
        review_reason,
        is_report,
        acknowledged_items,
        subject_number,
    }
}

impl ParsedMail {
    /// The idempotency key: the same bytes are the same mail, whatever UID
    /// or UIDVALIDITY it has now.
    pub fn idempotency_key(&self, instance: &str) -> String {
        format!("email:{instance}:{}", self.raw.sha256)
    }

    /// The one message format. `follow_up` is the item this mail answers,
    /// found by the channel after checking the sender.
    pub fn to_message(
        &self,
        instance: &str,
        received_at: DateTime<Utc>,
        source: Option<&ImapSource>,
        follow_up: Option<&FollowUp>,
    ) -> IntakeMessage {
        let channel = ChannelRef {
            kind: ChannelKind::Email,
            instance: instance.to_string(),
        };
        let mut msg =
            IntakeMessage::new(channel, self.idempotency_key(instance), self.body.clone());
        msg.received_at = received_at;
        msg.sender = self.sender.clone();
        msg.subject = self.subject.clone();
        msg.language = self.language.clone();
        msg.review_reason = self.review_reason.clone();
        msg.attachments = self
            .parts
            .iter()
            .map(|p| AttachmentRef {
                sha256: p.blob.sha256.clone(),
                filename: p.filename.clone(),
                content_type: p.content_type.clone(),
                size: p.blob.bytes.len() as u64,
            })
            .collect();
        let signed: Vec<Value> = self
            .parts
            .iter()
            .filter_map(|p| {
                let s = p.signed.as_ref()?;
                Some(match s {
                    Ok(c) => json!({ "attachment": p.filename, "sha256": p.blob.sha256, "container": c }),
                    Err(problem) => json!({ "attachment": p.filename, "sha256": p.blob.sha256, "problem": problem }),
                })
            })
            .collect();
        let inline: Vec<&str> = self
            .parts
            .iter()
            .filter(|p| p.inline)
            .map(|p| p.blob.sha256.as_str())
            .collect();
        let mut meta = json!({
            "original": { "sha256": self.raw.sha256, "size": self.raw.bytes.len(), "content_type": "message/rfc822" },
            "message_id": self.message_id,
            "acknowledge": self.no_acknowledgement.is_none(),
            "has_html": self.has_html,
        });
        let obj = meta.as_object_mut().expect("json! object");
        if let Some(why) = &self.no_acknowledgement {
            obj.insert("no_acknowledgement".into(), why.clone().into());
        }
        if self.forwarded_messages > 0 {
            obj.insert("forwarded_messages".into(), self.forwarded_messages.into());
        }
        if !inline.is_empty() {
            obj.insert("inline".into(), json!(inline));
        }
        if !signed.is_empty() {
            obj.insert("signed_containers".into(), Value::Array(signed));
        }
        if !self.problems.is_empty() {
            obj.insert("problems".into(), json!(self.problems));
        }
        if let Some(s) = source {
            obj.insert(
                "imap".into(),
                json!({ "mailbox": s.mailbox, "uid_validity": s.uid_validity, "uid": s.uid }),
            );
        }
        if let Some(f) = follow_up {
            obj.insert(
                "follow_up_of".into(),
                serde_json::to_value(f).unwrap_or(Value::Null),
            );
        }
        msg.metadata
            .insert(ChannelKind::Email.as_str().into(), meta);
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cleaned_for_rules_and_the_database() {
        assert_eq!(
            clean_text("a\r\n\r\n\r\n\r\nb\u{0}c  \n"),
            "a\n\nbc",
            "blank runs folded, NUL gone, trailing space gone"
        );
        assert_eq!(clean_text("bu\u{304}vatl\u{327}auja"), "būvatļauja", "NFC");
    }

    #[test]
    fn filenames_never_become_paths() {
        assert_eq!(
            clean_filename(Some("../../etc/passwd"), 1, "text/plain"),
            "passwd"
        );
        assert_eq!(
            clean_filename(Some("C:\\x\\Iesniegums.pdf"), 1, "application/pdf"),
            "Iesniegums.pdf"
        );
        assert_eq!(
            clean_filename(Some(".."), 2, "application/pdf"),
            "attachment-2.pdf"
        );
        assert_eq!(
            clean_filename(None, 3, "message/rfc822"),
            "attachment-3.eml"
        );
    }

    #[test]
    fn robots_lists_and_our_own_mail_are_not_acknowledged() {
        let ours = vec!["dokumenti@example.lv".to_string()];
        let case = |headers: &str| {
            let raw = format!("{headers}\r\nSubject: x\r\n\r\nbody\r\n");
            parse(raw.into_bytes(), None, &ours).no_acknowledgement
        };
        assert_eq!(case("From: Jānis <janis@example.com>"), None);
        assert!(case("From: a@example.com\r\nAuto-Submitted: auto-replied").is_some());
        assert_eq!(case("From: a@example.com\r\nAuto-Submitted: no"), None);
        assert!(case("From: a@example.com\r\nPrecedence: bulk").is_some());
        assert!(case("From: a@example.com\r\nX-Loop: x").is_some());
        assert!(case("From: a@example.com\r\nList-Id: <l.example.com>").is_some());
        assert!(case("From: a@example.com\r\nReturn-Path: <>").is_some());
        assert!(case("From: MAILER-DAEMON@example.com").is_some());
        assert!(case("From: Dokumenti <Dokumenti@Example.lv>").is_some());
        assert!(case("To: a@example.com").is_some(), "no sender address");
    }

    #[test]
    fn references_to_our_acknowledgements_and_subject_numbers_are_found() {
        let id = "01937b2c-0000-7000-8000-000000000001";
        let raw = format!(
            "From: a@example.com\r\nSubject: Re: Reģistrēts {} Iesniegums\r\nIn-Reply-To: {}\r\n\r\nPaldies\r\n",
            subject_tag("2026/1-7"),
            acknowledgement_id(id, "example.lv")
        );
        let p = parse(raw.into_bytes(), None, &[]);
        assert_eq!(p.subject_number.as_deref(), Some("2026/1-7"));
        assert_eq!(
            p.acknowledged_items,
            vec![Uuid::parse_str(id).expect("uuid")]
        );
        assert!(!p.is_report);
    }

    #[test]
    fn language_is_guessed_from_letters_and_words() {
        assert_eq!(guess_language("Lūdzu izsniegt būvatļauju"), Some("lv"));
        assert_eq!(
            guess_language("Ludzu izsniegt atlauju un par to"),
            Some("lv")
        );
        assert_eq!(
            guess_language("Dear sir, please send the permit"),
            Some("en")
        );
        assert_eq!(guess_language("12345"), None);
    }

    #[test]
    fn a_broken_winmail_dat_is_kept_and_named_as_a_problem() {
        let raw = "From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/ms-tnef\r\nContent-Disposition: attachment; filename=winmail.dat\r\n\r\nnot tnef at all\r\n--b--\r\n";
        let p = parse(raw.as_bytes().to_vec(), None, &[]);
        assert_eq!(p.parts.len(), 1, "winmail.dat kept as it came");
        assert_eq!(p.parts[0].filename, "winmail.dat");
        assert!(
            p.problems
                .iter()
                .any(|m| m.contains("winmail.dat (TNEF) could not be unpacked")),
            "{:?}",
            p.problems
        );
    }

    #[test]
    fn unreadable_bytes_are_kept_for_review() {
        let p = parse(vec![0xff, 0xfe, 0x00, 0x01], None, &[]);
        assert!(p.review_reason.is_some());
        assert_eq!(p.raw.bytes, vec![0xff, 0xfe, 0x00, 0x01]);
    }
}

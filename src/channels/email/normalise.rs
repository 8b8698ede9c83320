//! One raw e-mail (RFC 5322 bytes) into the parts of an
//! [`IntakeMessage`]: sender, subject, plain-text body (HTML converted,
//! forwarded messages included), attachments as content-addressed blobs
//! (signed containers listed), and what decides how it is handled: whether
//! it may be acknowledged (RFC 3834), whether it is a delivery report about
//! one of our acknowledgements, which of our items it refers to. Pure: no
//! I/O, so the golden files test exactly what the channel publishes.
//! MIME and every legacy charset are decoded by `mail-parser`.

use std::sync::LazyLock;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use mail_parser::{Encoding, Message, MessageParser, MessagePart, MimeHeaders, PartType};
use regex::Regex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

use super::edoc;
use super::{EmailMeta, ImapPlace};
use crate::enrich::References;
use crate::message::meta::StoredOriginal;
use crate::message::{AttachmentRef, ChannelKind, ChannelRef, IntakeMessage, Sender};

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

/// The `Message-ID` of the mail that carries an item's answer: a reply to
/// it or a delivery report about it names the item as an acknowledgement's
/// does.
pub fn answer_mail_id(item_id: &str, domain: &str) -> String {
    format!("<{item_id}.answer@{domain}>")
}

/// The subject tag that carries the registration number.
pub fn subject_tag(number: &str) -> String {
    format!("[Nr. {number}]")
}

/// Reply and forward prefixes as mail clients write them (English, German,
/// Nordic, Latvian…), with Outlook's counters (`Re[2]:`).
static REPLY_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(?:re|aw|sv|vs|antw|odp|fw|fwd|wg|tr|rv|atb|pārs|pars)\.?(?:\s*\[\d+\])?\s*[:：]\s*")
        .expect("static regex")
});

/// The subject of our answer to a mail: one `Re:`, the item's own number
/// tag, and the sender's subject without the reply prefixes and `[Nr. …]`
/// tags it piled up (a follow-up's subject already carries the first
/// item's tag).
pub fn reply_subject(subject: &str, number: &str) -> String {
    let mut s = SUBJECT_NUMBER.replace_all(subject, " ").into_owned();
    loop {
        let trimmed = REPLY_PREFIX.replace(&s, "").into_owned();
        if trimmed == s {
            break;
        }
        s = trimmed;
    }
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.is_empty() {
        format!("Re: {}", subject_tag(number))
    } else {
        format!("Re: {s} {}", subject_tag(number))
    }
}

static ACK_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.(?:ack|answer)@",
    )
    .expect("static regex")
});
static SUBJECT_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[Nr\.\s*([^\]\s][^\]]{0,40}?)\s*\]").expect("static regex"));

/// An RFC 2047 encoded word in base64 (`=?charset?B?…?=`).
static B_WORD: LazyLock<regex::bytes::Regex> = LazyLock::new(|| {
    regex::bytes::Regex::new(r"=\?([^?\s]+)\?([Bb])\?([A-Za-z0-9+/]+)\?=").expect("static regex")
});

/// The mail with every base64 encoded word that lacks its `=` padding
/// padded, as mail clients read them (`mail-parser` drops the last group
/// of `=?utf-8?B?bm90LWJhc2U2NA?=`). Only header lines are touched; the
/// raw mail is kept as it came.
fn pad_encoded_words(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !B_WORD.is_match(raw) {
        return raw.into();
    }
    let mut out = Vec::with_capacity(raw.len() + 16);
    let mut in_header = true;
    for line in raw.split_inclusive(|b| *b == b'\n') {
        let content = line.trim_ascii_end();
        // A header line (`Name: …`, or its folded continuation) of the mail
        // or of a MIME part; a blank line ends a header block, a boundary
        // line starts one.
        if content.is_empty() {
            in_header = false;
        } else if content.starts_with(b"--") {
            in_header = true;
        }
        let header_like = content.first().is_some_and(|c| *c == b' ' || *c == b'\t')
            || content.iter().position(|c| *c == b':').is_some_and(|i| {
                i > 0
                    && content[..i]
                        .iter()
                        .all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            });
        if !(in_header || header_like) {
            out.extend_from_slice(line);
            continue;
        }
        let padded = B_WORD.replace_all(line, |c: &regex::bytes::Captures<'_>| {
            let pad: &[u8] = match c[3].len() % 4 {
                2 => b"==",
                3 => b"=",
                _ => b"",
            };
            [b"=?", &c[1], b"?", &c[2], b"?", &c[3], pad, b"?="].concat()
        });
        out.extend_from_slice(&padded);
    }
    out.into()
}

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

/// Whether `address` (lowercase) is one of ours: `ours` holds addresses
/// (`dokumenti@novads.lv`), whole domains (`@novads.example.lv`) and
/// patterns where `*` stands for any run of characters and `?` for one
/// (`*@*.novads.lv`), lowercase, as `our_addresses` gives them.
pub fn is_ours(ours: &[String], address: &str) -> bool {
    ours.iter().any(|o| {
        if o.contains(['*', '?']) {
            let pattern = regex::escape(o).replace(r"\*", ".*").replace(r"\?", ".");
            Regex::new(&format!("^{pattern}$")).is_ok_and(|r| r.is_match(address))
        } else if let Some(domain) = o.strip_prefix('@') {
            address.rsplit_once('@').is_some_and(|(_, d)| d == domain)
        } else {
            o == address
        }
    })
}

/// Why an `our_addresses` entry cannot be used, or `None`.
pub fn our_address_problem(entry: &str) -> Option<String> {
    let e = entry.trim();
    if e.is_empty() || e.chars().any(char::is_whitespace) {
        return Some("must be an address, @domain or pattern without spaces".into());
    }
    if e.matches('@').count() != 1 {
        return Some(
            "needs exactly one @ (an address, @domain or a pattern such as *@*.novads.lv)".into(),
        );
    }
    if e.ends_with('@') || e.contains("@.") || e.ends_with('.') {
        return Some("has no domain after the @".into());
    }
    None
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
    if is_ours(ours, from) {
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
    /// How many of the problems are parts cut off or damaged in transit.
    damaged: usize,
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

/// Base64 as mail clients decode a damaged or cut-off part: whatever is
/// not of the alphabet skipped, up to the padding; an incomplete last group
/// decoded as far as it goes. True when that last group was incomplete.
fn lenient_base64(raw: &[u8]) -> (Vec<u8>, bool) {
    let end = raw.iter().position(|c| *c == b'=').unwrap_or(raw.len());
    let padding = raw[end..].iter().filter(|c| **c == b'=').count().min(2);
    let mut chars: Vec<u8> = raw[..end]
        .iter()
        .copied()
        .filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        .collect();
    let incomplete = !(chars.len() + padding).is_multiple_of(4);
    if chars.len() % 4 == 1 {
        chars.pop();
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    (engine.decode(&chars).unwrap_or_default(), incomplete)
}

/// A part's body exactly as its transfer encoding gives it, read from the
/// raw mail (never through text, whatever its charset), and what is wrong
/// with it, if anything:
/// cut off before its boundary, or base64 ending in an incomplete group.
fn part_bytes(m: &Message<'_>, part: &MessagePart<'_>) -> (Vec<u8>, Option<&'static str>) {
    let start = part.offset_body as usize;
    let end = (part.offset_end as usize).min(m.raw_message.len());
    let raw = m.raw_message.get(start..end).unwrap_or_default();
    let base64 = part.encoding == Encoding::Base64
        || part
            .content_transfer_encoding()
            .is_some_and(|e| e.trim().eq_ignore_ascii_case("base64"));
    let cut_off = part.is_encoding_problem && end == m.raw_message.len();
    let (bytes, incomplete) = if base64 {
        lenient_base64(raw)
    } else if part
        .content_transfer_encoding()
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("quoted-printable"))
    {
        let decoded = mail_parser::decoders::quoted_printable::quoted_printable_decode(raw);
        (decoded.unwrap_or_else(|| raw.to_vec()), false)
    } else {
        (raw.to_vec(), false)
    };
    let problem = if cut_off {
        Some("cut off: the mail ends inside it, before its closing MIME boundary")
    } else if incomplete {
        Some("cut off: its base64 ends in an incomplete group")
    } else if part.is_encoding_problem {
        Some("damaged: its transfer encoding could not be read")
    } else {
        None
    };
    // An intact binary part: the parser's own decoding. A text part the
    // parser turned into UTF-8 (from its charset) is kept as its transfer
    // encoding gives it instead: an attachment is a file, not text.
    let binary = matches!(part.body, PartType::Binary(_) | PartType::InlineBinary(_));
    if problem.is_none() && !part.is_encoding_problem && binary {
        return (part.contents().to_vec(), None);
    }
    (bytes, problem)
}

fn content_type_of(part: &MessagePart<'_>) -> String {
    part.content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        })
        .unwrap_or_else(|| "application/octet-stream".into())
        .to_lowercase()
}

/// The damage `walk` does not meet part by part: a multipart without its
/// closing delimiter (the mail was cut off), a body text whose base64 ends
/// in an incomplete group.
fn damaged_structure(m: &Message<'_>) -> Vec<String> {
    let mut found = Vec::new();
    for (i, part) in m.parts.iter().enumerate() {
        if matches!(part.body, PartType::Message(_)) {
            continue;
        }
        let ct = content_type_of(part);
        if ct.starts_with("multipart/") {
            let boundary = part.content_type().and_then(|c| c.attribute("boundary"));
            if let Some(b) = boundary {
                let closing = [b"--".as_slice(), b.as_bytes(), b"--"].concat();
                let rest = m
                    .raw_message
                    .get(part.offset_body as usize..)
                    .unwrap_or_default();
                if !rest.windows(closing.len()).any(|w| w == closing.as_slice()) {
                    found.push(format!(
                        "{ct} (part {}) has no closing boundary: the mail was cut off",
                        i + 1
                    ));
                }
            }
            continue;
        }
        let body_text = m.text_body.contains(&(i as u32)) || m.html_body.contains(&(i as u32));
        if body_text
            && !m.attachments.contains(&(i as u32))
            && let (_, Some(problem)) = part_bytes(m, part)
        {
            found.push(format!(
                "the text of the mail ({ct}, part {}) is {problem}",
                i + 1
            ));
        }
    }
    found
}

fn walk(m: &Message<'_>, depth: usize, w: &mut Walk) {
    let damaged = damaged_structure(m);
    w.damaged += damaged.len();
    w.problems.extend(damaged);
    let mut texts = Vec::new();
    for i in 0..m.text_body_count() {
        if let Some(t) = m.body_text(i) {
            texts.push(t.into_owned());
        }
    }
    w.has_html |= m.html_body_count() > 0 && m.html_bodies().any(|p| p.is_text_html());
    w.body.push(texts.join("\n\n"));
    for part in m.attachments() {
        let content_type = content_type_of(part);
        let filename = clean_filename(part.attachment_name(), w.parts.len() + 1, &content_type);
        let inline = part.content_disposition().is_some_and(|d| d.is_inline())
            || (part.content_id().is_some() && part.content_disposition().is_none());
        let (bytes, damage) = match part.message() {
            Some(_) => (part.contents().to_vec(), None),
            None => part_bytes(m, part),
        };
        if let Some(problem) = damage {
            w.damaged += 1;
            w.problems.push(format!(
                "{filename} ({content_type}) is {problem}; kept as far as it came"
            ));
            // The mail's own text, cut off: read as text, not kept as a file.
            let is_attachment = part
                .content_disposition()
                .is_some_and(|d| d.is_attachment())
                || part.attachment_name().is_some();
            if !is_attachment && (content_type == "text/plain" || content_type == "text/html") {
                let charset = part.content_type().and_then(|c| c.attribute("charset"));
                let text = match charset.and_then(|c| {
                    mail_parser::decoders::charsets::map::charset_decoder(c.as_bytes())
                }) {
                    Some(decode) => decode(&bytes),
                    None => String::from_utf8_lossy(&bytes).into_owned(),
                };
                w.body.push(if content_type == "text/html" {
                    mail_parser::decoders::html::html_to_text(&text)
                } else {
                    text
                });
                continue;
            }
        }
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
///
/// The parsers of outside data (mail-parser, TNEF, the eDoc container's
/// zip and X.509) run contained: if one panics on this mail, the mail is
/// kept raw and whole for review with the reason [`PARSER_FAILED`], and
/// the mailbox moves on.
pub fn parse(raw: Vec<u8>, original_size: Option<(u64, u64)>, ours: &[String]) -> ParsedMail {
    parse_contained(raw, |raw| take_apart(raw, original_size, ours))
}

/// The review reason of a mail a parser panicked on.
pub const PARSER_FAILED: &str = "the parser failed on this mail; the raw message is kept";

fn parse_contained(raw: Vec<u8>, take_apart: impl FnOnce(&[u8]) -> ParsedMail) -> ParsedMail {
    match crate::supervise::contain(|| take_apart(&raw)) {
        Ok(parsed) => parsed,
        Err(_) => {
            tracing::warn!("a mail parser panicked; the mail is kept raw for review");
            kept_raw(raw, PARSER_FAILED)
        }
    }
}

/// A mail that could not be taken apart: kept raw and whole for the
/// records officer, with a preview of its bytes as the body.
fn kept_raw(raw: Vec<u8>, reason: &str) -> ParsedMail {
    let preview = clean_text(&String::from_utf8_lossy(&raw[..raw.len().min(4000)]));
    ParsedMail {
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
        review_reason: Some(reason.into()),
        no_acknowledgement: Some("the mail could not be read".into()),
        is_report: false,
        acknowledged_items: Vec::new(),
        subject_number: None,
    }
}

fn take_apart(raw: &[u8], original_size: Option<(u64, u64)>, ours: &[String]) -> ParsedMail {
    // A mail has at least one standard header (From, Date, Received…);
    // bytes that yield only unknown "headers" are not a mail.
    let padded = pad_encoded_words(raw);
    let parsed = MessageParser::default().parse(padded.as_ref()).filter(|m| {
        m.headers()
            .iter()
            .any(|h| !matches!(h.name, mail_parser::HeaderName::Other(_)))
    });
    let Some(m) = parsed.as_ref() else {
        return kept_raw(
            raw.to_vec(),
            "malformed e-mail: no RFC 5322 header could be read; the raw message is kept",
        );
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
        e_address: None,
        personal_code: None,
    };
    let subject = m.subject().map(clean_text).filter(|s| !s.is_empty());
    let mut w = Walk {
        body: Vec::new(),
        parts: Vec::new(),
        has_html: false,
        forwarded: 0,
        problems: Vec::new(),
        damaged: 0,
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
            (w.damaged > 0).then(|| {
                format!(
                    "e-mail cut off or damaged in transit: {} MIME part(s) incomplete (listed in the problems); the raw message is kept",
                    w.damaged
                )
            })
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
        ack_ids_in(&String::from_utf8_lossy(raw))
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
        raw: Blob::of(raw.to_vec()),
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

    /// The one message format. `refers_to` is what the mail says it
    /// answers or reports on, as far as the channel vouches for its sender
    /// (resolved by the engine, [`crate::enrich`]).
    pub fn to_message(
        &self,
        instance: &str,
        received_at: DateTime<Utc>,
        source: Option<&ImapSource>,
        refers_to: Option<&References>,
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
        let inline: Vec<String> = self
            .parts
            .iter()
            .filter(|p| p.inline)
            .map(|p| p.blob.sha256.clone())
            .collect();
        msg.set_meta(&EmailMeta {
            original: StoredOriginal {
                sha256: self.raw.sha256.clone(),
                size: self.raw.bytes.len() as u64,
                content_type: "message/rfc822".into(),
            },
            message_id: self.message_id.clone(),
            acknowledge: self.no_acknowledgement.is_none(),
            has_html: self.has_html,
            no_acknowledgement: self.no_acknowledgement.clone(),
            forwarded_messages: self.forwarded_messages,
            inline,
            signed_containers: signed,
            problems: self.problems.clone(),
            imap: source.map(|s| ImapPlace {
                mailbox: s.mailbox.clone(),
                uid_validity: s.uid_validity,
                uid: s.uid,
            }),
            refers_to: refers_to.filter(|r| !r.is_empty()).cloned(),
            other: Default::default(),
        });
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No input is known that panics the parsers at their locked versions
    /// (the mail-parser panics reported upstream are fixed in 0.11.9), so a
    /// panicking stand-in for `take_apart` shows what the channel does.
    #[test]
    fn a_mail_the_parser_panics_on_is_kept_raw_for_review() {
        let raw = b"From: a@example.com\r\nSubject: x\r\n\r\nhello\r\n".to_vec();
        let p = parse_contained(raw.clone(), |_| panic!("a third-party parser bug"));
        assert_eq!(p.raw.bytes, raw, "kept raw and whole");
        assert_eq!(p.review_reason.as_deref(), Some(PARSER_FAILED));
        assert!(p.no_acknowledgement.is_some());
        let msg = p.to_message("imap-test", Utc::now(), None, None);
        assert_eq!(msg.review_reason.as_deref(), Some(PARSER_FAILED));
        // A mail the parser takes is not touched by the containment.
        let fine = parse_contained(raw.clone(), |r| take_apart(r, None, &[]));
        assert_eq!(fine.subject.as_deref(), Some("x"));
        assert_eq!(fine.review_reason, None);
    }

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
    fn our_addresses_are_addresses_domains_and_patterns() {
        let ours: Vec<String> = [
            "dokumenti@example.lv",
            "@novads.example.lv",
            "*@*.novads.lv",
            "kanc?@x.lv",
        ]
        .map(String::from)
        .to_vec();
        assert!(is_ours(&ours, "dokumenti@example.lv"));
        assert!(!is_ours(&ours, "janis@example.lv"));
        assert!(is_ours(&ours, "ilze.kalna@novads.example.lv"));
        assert!(
            !is_ours(&ours, "ilze@citsnovads.example.lv"),
            "a domain is matched whole"
        );
        assert!(is_ours(&ours, "anna@buvvalde.novads.lv"));
        assert!(!is_ours(&ours, "anna@novads.lv.example.com"));
        assert!(is_ours(&ours, "kanc1@x.lv"));
        assert!(!is_ours(&ours, "kanc12@x.lv"));
        for good in ["a@b.lv", "@novads.lv", "*@*.novads.lv"] {
            assert_eq!(our_address_problem(good), None, "{good}");
        }
        for bad in ["", "novads.lv", "a@b@c", "a@", "@", "a b@c.lv", "a@.lv"] {
            assert!(our_address_problem(bad).is_some(), "{bad:?}");
        }
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
    fn a_delivery_report_about_an_answer_mail_names_its_item() {
        let id = "01937b2c-0000-7000-8000-000000000002";
        let raw = format!(
            "From: MAILER-DAEMON@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n\
             --b\r\nContent-Type: message/delivery-status\r\n\r\n\
             Final-Recipient: rfc822; anna@example.lv\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
             --b\r\nContent-Type: text/rfc822-headers\r\n\r\n\
             Message-ID: {}\r\nSubject: Atbilde\r\n\r\n--b--\r\n",
            answer_mail_id(id, "example.lv")
        );
        let p = parse(raw.into_bytes(), None, &[]);
        assert!(p.is_report);
        assert_eq!(
            p.acknowledged_items,
            vec![Uuid::parse_str(id).expect("uuid")]
        );
    }

    #[test]
    fn an_answer_subject_has_one_re_and_one_number() {
        assert_eq!(
            reply_subject("Re: Re: [Nr. 4/2026/1] Iesniegums", "4/2026/2"),
            "Re: Iesniegums [Nr. 4/2026/2]"
        );
        assert_eq!(
            reply_subject("AW: Fwd: RE[2]: Iesniegums [Nr. 4/2026/1]", "4/2026/3"),
            "Re: Iesniegums [Nr. 4/2026/3]"
        );
        assert_eq!(
            reply_subject("Atb.: Pārs: Par būvatļauju", "7"),
            "Re: Par būvatļauju [Nr. 7]"
        );
        assert_eq!(reply_subject("Iesniegums", "1"), "Re: Iesniegums [Nr. 1]");
        assert_eq!(reply_subject("Re: [Nr. 1]", "2"), "Re: [Nr. 2]");
        assert_eq!(
            reply_subject("Reģistrācija: dzīvesvieta", "3"),
            "Re: Reģistrācija: dzīvesvieta [Nr. 3]",
            "a word that starts like a prefix is kept"
        );
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
    fn a_text_cut_off_mid_stream_is_read_and_sent_to_review() {
        // The mail's only text, in base64, ends mid-group with no boundary.
        let raw = "From: a@example.com\r\nSubject: buvatlauja\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nTMWrZHp1IGl6c25pZWd0IGLFq3ZhdMS8YXVqdS4=\r\nTMWrZ";
        let p = parse(raw.as_bytes().to_vec(), None, &[]);
        assert!(
            p.body.starts_with("Lūdzu izsniegt būvatļauju."),
            "{:?}",
            p.body
        );
        assert!(p.parts.is_empty(), "the text is the body, not a file");
        assert!(
            p.review_reason
                .as_deref()
                .is_some_and(|r| r.contains("cut off"))
        );
        assert!(
            p.problems.iter().any(|m| m.contains("no closing boundary")),
            "{:?}",
            p.problems
        );
    }

    #[test]
    fn base64_ending_in_an_incomplete_group_is_a_problem_even_with_its_boundary() {
        let raw = "From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/octet-stream; name=a.bin\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\nBgc\r\n--b--\r\n";
        let p = parse(raw.as_bytes().to_vec(), None, &[]);
        assert_eq!(p.parts.len(), 1);
        assert_eq!(
            p.parts[0].blob.bytes,
            [0, 1, 2, 3, 4, 5, 6, 7],
            "decoded as far as it goes"
        );
        assert!(p.review_reason.is_some());
        assert!(
            p.problems.iter().any(|m| m.contains("incomplete group")),
            "{:?}",
            p.problems
        );
        // Whole groups: nothing to say.
        let whole = raw.replace("Bgc\r\n", "BgcI\r\n");
        let p = parse(whole.into_bytes(), None, &[]);
        assert_eq!(p.review_reason, None, "{:?}", p.problems);
        assert_eq!(p.parts[0].blob.bytes, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn text_attachments_are_kept_as_their_bytes_not_converted_to_utf8() {
        // "Bērziņš;Rīga" in windows-1257, quoted-printable; then 8-bit bytes
        // that are not UTF-8 at all.
        let mut raw = b"From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: text/csv; charset=windows-1257\r\nContent-Disposition: attachment; filename=saraksts.csv\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nB=E7rzi=F2=F0;R=EEga\r\n--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=dati.txt\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
        raw.extend_from_slice(b"\xff\xfe\x80ok");
        raw.extend_from_slice(b"\r\n--b--\r\n");
        let p = parse(raw, None, &[]);
        assert_eq!(p.parts.len(), 2);
        assert_eq!(p.parts[0].blob.bytes, b"B\xe7rzi\xf2\xf0;R\xeega");
        assert_eq!(p.parts[1].blob.bytes, b"\xff\xfe\x80ok");
        assert_eq!(p.review_reason, None, "{:?}", p.problems);
    }

    #[test]
    fn unpadded_encoded_words_are_read_whole_and_bodies_untouched() {
        let raw = "From: a@example.com\r\nSubject: =?utf-8?B?bm90LWJhc2U2NA?=\r\n\r\nliteral =?utf-8?B?bm90LWJhc2U2NA?= stays\r\n";
        let p = parse(raw.as_bytes().to_vec(), None, &[]);
        assert_eq!(p.subject.as_deref(), Some("not-base64"));
        assert!(
            p.body.contains("=?utf-8?B?bm90LWJhc2U2NA?= stays"),
            "{}",
            p.body
        );
        assert_eq!(
            p.raw.bytes,
            raw.as_bytes(),
            "the raw mail is kept as it came"
        );
    }

    #[test]
    fn unreadable_bytes_are_kept_for_review() {
        let p = parse(vec![0xff, 0xfe, 0x00, 0x01], None, &[]);
        assert!(p.review_reason.is_some());
        assert_eq!(p.raw.bytes, vec![0xff, 0xfe, 0x00, 0x01]);
    }
}

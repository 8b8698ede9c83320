//! The one message format (schema v1) that every channel produces and the
//! rules engine consumes. Attachments travel by reference (SHA-256 of a blob
//! already in the blob store), never as bytes on the bus.
//!
//! `docs/message-v1.schema.json` is generated from these types
//! (`pietura schema`) and every produced message is validated against it in tests.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod meta;

use self::meta::{KindMetadata, Shared};

/// The schema version this build writes and accepts.
pub const SCHEMA_VERSION: u32 = 1;

/// Declares [`ChannelKind`]: one line per kind, `Variant = "wire_name"`.
/// The wire name is the stable string of schema v1 (`channel.kind`, the
/// `metadata` key, rule files, metrics): never renamed once items carry it.
macro_rules! channel_kinds {
    ($($variant:ident = $name:literal,)+) => {
        /// The door an item came through. Closed: a new channel adds a variant here.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum ChannelKind {
            $(#[serde(rename = $name)] $variant,)+
        }

        impl ChannelKind {
            /// Every kind, in declaration order.
            pub const ALL: &[ChannelKind] = &[$(ChannelKind::$variant),+];

            /// The snake_case name used in rules, metrics and metadata keys.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ChannelKind::$variant => $name,)+
                }
            }
        }
    };
}

channel_kinds! {
    WebForm = "web_form",
    Email = "email",
    Scan = "scan",
    Sms = "sms",
    Counter = "counter",
    Phone = "phone",
    EAdrese = "e_adrese",
}

impl ChannelKind {
    /// Parses the snake_case name (as written in rule files).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Every kind's name, for messages that list them (`web_form, email, …`).
    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which configured channel instance produced the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelRef {
    pub kind: ChannelKind,
    /// The instance id from `channels/<file>.toml`.
    pub instance: String,
}

/// Who sent the item; every part is optional because paper post or an SMS
/// may carry only some of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sender {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// E.164, e.g. `+37129123456`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_address: Option<String>,
    /// The official electronic address (`_PRIVATE@…`, `_DEFAULT@…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_address: Option<String>,
    /// The personas kods the person gave (web form, counter), checked and
    /// written `NNNNNN-NNNNN` ([`crate::personal_code::parse`]): the key of
    /// their e-adrese, so an answer goes there when it is active. Personal
    /// data: never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_code: Option<String>,
}

/// An attachment stored in the blob store before the message was published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRef {
    /// Lowercase hex SHA-256 of the content: the blob's address.
    pub sha256: String,
    /// The name the sender gave; display only, never used as a path.
    pub filename: String,
    pub content_type: String,
    pub size: u64,
}

/// One incoming item, whatever door it came through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntakeMessage {
    /// Always [`SCHEMA_VERSION`] for this format.
    pub schema_version: u32,
    /// UUIDv7 given by the channel when the item arrived.
    pub id: Uuid,
    /// Derived from the source (form token, Message-ID + UID, gateway id…):
    /// the same source item always yields the same key, so redelivery
    /// never registers twice.
    pub idempotency_key: String,
    pub channel: ChannelRef,
    /// The legal receipt time.
    pub received_at: DateTime<Utc>,
    #[serde(default)]
    pub sender: Sender,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Plain text body (HTML converted, OCR text, SMS text, form fields).
    pub body: String,
    /// BCP 47 language tag if known (`lv`, `en`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentRef>,
    /// Channel-specific data, one object per channel kind name
    /// (`{"web_form": {"form_id": "…", "fields": {…}}}`), each typed by its
    /// door ([`crate::channels::Door::Meta`]; read with [`Self::meta`],
    /// written with [`Self::set_meta`]).
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Set by a channel that could not read the item fully (oversized,
    /// malformed, illegible): the item is registered but goes to the records
    /// officer with this reason, whatever the rules say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_reason: Option<String>,
    /// Whether the sender is who the message says (e-mail: SPF, DKIM,
    /// DMARC); absent for channels that cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_authenticity: Option<SenderAuthenticity>,
    /// The item's formal standing as its channel established it; absent
    /// where the channel cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formal_status: Option<FormalStatus>,
}

/// A submission's formal status: how it was established who sent it and
/// whether it is signed. A door asserts what only it can know
/// ([`FormalStatus::SignedPaper`] at the counter,
/// [`FormalStatus::AuthenticatedByStatePortal`] from e-adrese); the engine
/// derives the rest from the message at registration ([`FormalStatus::of`]),
/// stores it on the item (`items.formal_status`) and the deadline regime
/// of `deadlines.toml` may depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FormalStatus {
    /// The visitor signed the paper submission at the counter.
    SignedPaper,
    /// Sent through e-adrese: the state portal authenticated the sender.
    AuthenticatedByStatePortal,
    /// Carries an .edoc/.asice/.bdoc whose signatures were all verified.
    #[serde(rename = "e_signed")]
    ESigned,
    /// An e-mail without a verified e-signature.
    UnsignedEmail,
    Sms,
    /// Sent through the web form.
    Form,
    /// A scanned letter: whether the paper was signed cannot be known from the scan.
    Paper,
    /// Taken down from a phone call.
    Phone,
    /// Handed in at the counter, not signed there.
    Counter,
}

impl FormalStatus {
    /// Every status, in the order the desk and the statistics list them.
    pub const ALL: [FormalStatus; 9] = [
        FormalStatus::ESigned,
        FormalStatus::AuthenticatedByStatePortal,
        FormalStatus::SignedPaper,
        FormalStatus::UnsignedEmail,
        FormalStatus::Form,
        FormalStatus::Sms,
        FormalStatus::Paper,
        FormalStatus::Counter,
        FormalStatus::Phone,
    ];

    /// The snake_case name stored in the registry and written in `deadlines.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            FormalStatus::SignedPaper => "signed_paper",
            FormalStatus::AuthenticatedByStatePortal => "authenticated_by_state_portal",
            FormalStatus::ESigned => "e_signed",
            FormalStatus::UnsignedEmail => "unsigned_email",
            FormalStatus::Sms => "sms",
            FormalStatus::Form => "form",
            FormalStatus::Paper => "paper",
            FormalStatus::Phone => "phone",
            FormalStatus::Counter => "counter",
        }
    }

    /// Parses a stored or written name.
    pub fn parse(s: &str) -> Option<FormalStatus> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Every name, for messages that list them.
    pub fn names() -> String {
        Self::ALL.map(FormalStatus::as_str).join(", ")
    }

    /// The desk catalog's key for the status in words.
    pub fn label_key(self) -> String {
        format!("formal.{}", self.as_str())
    }

    /// The one place an item's formal status is decided: what its door
    /// asserted, else what the message shows — a signed container whose
    /// signatures were all verified makes it e-signed, whatever the channel.
    pub fn of(msg: &IntakeMessage) -> FormalStatus {
        if let Some(asserted) = msg.formal_status {
            return asserted;
        }
        let e_signed = msg
            .metadata
            .get(msg.channel.kind.as_str())
            .and_then(|m| m.get("signed_containers"))
            .and_then(|v| v.as_array())
            .is_some_and(|list| {
                list.iter().any(|c| {
                    c.get("container")
                        .and_then(|c| c.get("verified"))
                        .and_then(serde_json::Value::as_bool)
                        == Some(true)
                })
            });
        if e_signed {
            return FormalStatus::ESigned;
        }
        match msg.channel.kind {
            ChannelKind::Email => FormalStatus::UnsignedEmail,
            ChannelKind::WebForm => FormalStatus::Form,
            ChannelKind::Sms => FormalStatus::Sms,
            ChannelKind::Scan => FormalStatus::Paper,
            ChannelKind::Phone => FormalStatus::Phone,
            ChannelKind::Counter => FormalStatus::Counter,
            // The portal authenticates every sender it delivers for; a
            // message not marked so was not verified by it.
            ChannelKind::EAdrese => FormalStatus::UnsignedEmail,
        }
    }
}

impl fmt::Display for FormalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an e-mail's `From:` is proven, as the e-mail channel found it
/// ([`crate::channels::email::authenticity`]). Threading into a case,
/// bounce recording and acknowledgements wait for [`AuthenticityVerdict::Pass`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SenderAuthenticity {
    pub verdict: AuthenticityVerdict,
    /// `evaluated` (checked by Pietura) or `trusted_relay` (the relay's
    /// `Authentication-Results`).
    pub method: String,
    /// The results as RFC 8601 names them (`pass`, `fail`, `none`, `temperror`…).
    pub spf: String,
    pub dkim: String,
    pub dmarc: String,
}

/// The one answer the channel acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthenticityVerdict {
    /// The `From:` domain is proven (DMARC pass, or an aligned DKIM or SPF
    /// pass where the domain publishes no DMARC policy).
    Pass,
    /// Not proven: forged, unsigned, or the checks could not be made.
    Fail,
    /// The channel does not check (`authenticity.mode = "off"`).
    NotChecked,
}

impl AuthenticityVerdict {
    /// The snake_case name stored in the registry.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthenticityVerdict::Pass => "pass",
            AuthenticityVerdict::Fail => "fail",
            AuthenticityVerdict::NotChecked => "not_checked",
        }
    }
}

/// A registered item this message follows up, found by the engine's
/// enrichment step ([`crate::enrich`]) from what the door read (our
/// acknowledgement's number or Message-ID) after checking that the sender is
/// the item's sender. Kept in the channel's metadata as `follow_up_of`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    pub item_id: String,
    pub registration_number: String,
    /// Where the item is: a follow-up goes to the same unit.
    #[serde(default)]
    pub unit_id: Option<String>,
    #[serde(default)]
    pub service_id: Option<String>,
    /// `subject_tag` or `in_reply_to`.
    pub matched_by: String,
}

/// Why a message on the bus cannot be processed; such messages are dead-lettered.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("message is not valid JSON for schema v{SCHEMA_VERSION}: {0}")]
    Decode(#[from] serde_json::Error),
    #[error(
        "message {id}: schema version {found} is not supported (this build reads v{SCHEMA_VERSION})"
    )]
    Version { id: Uuid, found: u32 },
    #[error("message {id}: {field}: {problem}")]
    Invalid {
        id: Uuid,
        /// Where in the message (`body`, `sender.email`, `metadata.sms.to`…).
        field: String,
        problem: String,
    },
}

impl MessageError {
    /// The field a refusal is about, for a door's 400 (`None`: not one field).
    pub fn field(&self) -> Option<&str> {
        match self {
            MessageError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Text as the registry can store it: without NUL, which PostgreSQL's
/// `text` and `jsonb` cannot hold (and SQLite's C API cuts at). Everything
/// else (backslash sequences, the six characters `\u0000`, lone combining
/// marks, long text) is legal and kept as sent.
pub fn storable_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', ""))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn make_storable(s: &mut String) {
    if s.contains('\0') {
        s.retain(|c| c != '\0');
    }
}

fn make_storable_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => make_storable(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(make_storable_json),
        serde_json::Value::Object(o) => {
            if o.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(o);
                for (mut k, v) in old {
                    make_storable(&mut k);
                    o.insert(k, v);
                }
            }
            o.values_mut().for_each(make_storable_json);
        }
        _ => {}
    }
}

/// The first text value in `v` (keys included) the registry cannot store,
/// as a path below `at`.
fn unstorable_json(v: &serde_json::Value, at: &str) -> Option<String> {
    match v {
        serde_json::Value::String(s) => s.contains('\0').then(|| at.to_string()),
        serde_json::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| unstorable_json(v, &format!("{at}[{i}]"))),
        serde_json::Value::Object(o) => o.iter().find_map(|(k, v)| {
            let here = format!("{at}.{}", storable_text(k));
            if k.contains('\0') {
                Some(here)
            } else {
                unstorable_json(v, &here)
            }
        }),
        _ => None,
    }
}

impl IntakeMessage {
    /// A message with a fresh UUIDv7 and the current time as receipt time.
    pub fn new(channel: ChannelRef, idempotency_key: String, body: String) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            id: Uuid::now_v7(),
            idempotency_key,
            channel,
            received_at: Utc::now(),
            sender: Sender::default(),
            subject: None,
            body,
            language: None,
            attachments: Vec::new(),
            metadata: BTreeMap::new(),
            review_reason: None,
            sender_authenticity: None,
            formal_status: None,
        }
    }

    /// Decodes and checks a message taken from the bus (or the registry);
    /// attachment names come out fit for display ([`display_filename`]),
    /// whichever channel produced them.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let mut msg: IntakeMessage = serde_json::from_slice(bytes)?;
        msg.prepare()?;
        for a in &mut msg.attachments {
            if a.filename.chars().any(hidden_in_names) {
                a.filename = display_filename(&a.filename);
            }
        }
        Ok(msg)
    }

    /// Encodes for the bus.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The one normalisation and validation, run by every door before it
    /// answers 2xx ([`crate::bus::publish_intake`]) and by the engine
    /// ([`Self::decode`]): text made storable ([`storable_text`]), then
    /// [`Self::check`]. Idempotent.
    pub fn prepare(&mut self) -> Result<(), MessageError> {
        self.normalise();
        self.check()
    }

    /// Makes every text value storable ([`storable_text`]), metadata included.
    pub fn normalise(&mut self) {
        make_storable(&mut self.idempotency_key);
        make_storable(&mut self.channel.instance);
        for s in [
            &mut self.sender.name,
            &mut self.sender.email,
            &mut self.sender.phone,
            &mut self.sender.postal_address,
            &mut self.sender.e_address,
            &mut self.sender.personal_code,
            &mut self.subject,
            &mut self.language,
            &mut self.review_reason,
        ]
        .into_iter()
        .flatten()
        {
            make_storable(s);
        }
        make_storable(&mut self.body);
        for a in &mut self.attachments {
            make_storable(&mut a.filename);
            make_storable(&mut a.content_type);
        }
        self.metadata.values_mut().for_each(make_storable_json);
    }

    /// The text values, each with its field path (metadata not included).
    fn texts(&self) -> Vec<(String, &str)> {
        let mut all: Vec<(String, &str)> = vec![
            ("idempotency_key".into(), self.idempotency_key.as_str()),
            ("channel.instance".into(), self.channel.instance.as_str()),
            ("body".into(), self.body.as_str()),
        ];
        for (name, v) in [
            ("sender.name", &self.sender.name),
            ("sender.email", &self.sender.email),
            ("sender.phone", &self.sender.phone),
            ("sender.postal_address", &self.sender.postal_address),
            ("sender.e_address", &self.sender.e_address),
            ("sender.personal_code", &self.sender.personal_code),
            ("subject", &self.subject),
            ("language", &self.language),
            ("review_reason", &self.review_reason),
        ] {
            if let Some(v) = v {
                all.push((name.into(), v.as_str()));
            }
        }
        for (i, a) in self.attachments.iter().enumerate() {
            all.push((format!("attachments[{i}].filename"), a.filename.as_str()));
            all.push((
                format!("attachments[{i}].content_type"),
                a.content_type.as_str(),
            ));
        }
        all
    }

    /// The invariants the JSON shape alone does not express. Inspects the
    /// values, never the serialised JSON.
    pub fn check(&self) -> Result<(), MessageError> {
        let at = |field: &str, problem: String| MessageError::Invalid {
            id: self.id,
            field: field.to_string(),
            problem,
        };
        if self.schema_version != SCHEMA_VERSION {
            return Err(MessageError::Version {
                id: self.id,
                found: self.schema_version,
            });
        }
        if self.idempotency_key.trim().is_empty() {
            return Err(at("idempotency_key", "is empty".into()));
        }
        if self.channel.instance.trim().is_empty() {
            return Err(at("channel.instance", "is empty".into()));
        }
        // Only a checked code in its written form (the value is not echoed:
        // personal data).
        if let Some(code) = &self.sender.personal_code
            && crate::personal_code::parse(code).as_deref() != Some(code.as_str())
        {
            return Err(at(
                "sender.personal_code",
                "is not a personas kods written NNNNNN-NNNNN".into(),
            ));
        }
        for (i, a) in self.attachments.iter().enumerate() {
            if a.sha256.len() != 64 || !a.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(at(
                    &format!("attachments[{i}].sha256"),
                    "is not a SHA-256 hex digest".into(),
                ));
            }
        }
        // PostgreSQL text cannot hold NUL: a message not made storable
        // ([`Self::normalise`]) would otherwise never register.
        let nul = self
            .texts()
            .into_iter()
            .find(|(_, v)| v.contains('\0'))
            .map(|(f, _)| f)
            .or_else(|| {
                self.metadata
                    .iter()
                    .find_map(|(k, v)| unstorable_json(v, &format!("metadata.{k}")))
            });
        if let Some(field) = nul {
            return Err(at(&field, "contains a NUL character".into()));
        }
        if let Some(key) = self
            .metadata
            .keys()
            .find(|k| ChannelKind::parse(k).is_none())
        {
            return Err(at(
                &format!("metadata.{}", storable_text(key)),
                format!("is not a channel kind ({})", ChannelKind::names()),
            ));
        }
        Ok(())
    }

    /// This channel's own metadata object, if any.
    pub fn channel_metadata(&self) -> Option<&serde_json::Value> {
        self.metadata.get(self.channel.kind.as_str())
    }

    /// This channel's metadata as its door's type `M`: None when the item
    /// came through another kind or has no object; keys `M` does not name
    /// are kept in its `other`.
    pub fn meta<M: KindMetadata>(&self) -> Option<M> {
        if !M::KINDS.contains(&self.channel.kind) {
            return None;
        }
        M::deserialize(self.channel_metadata()?).ok()
    }

    /// Writes this channel's metadata object (`metadata.<kind>`) from `meta`.
    pub fn set_meta<M: KindMetadata>(&mut self, meta: &M) {
        let value = serde_json::to_value(meta)
            .unwrap_or_else(|_| serde_json::Value::Object(Default::default()));
        self.metadata
            .insert(self.channel.kind.as_str().to_string(), value);
    }

    /// Adds the engine's note `key` (`malware`, `follow_up_of`) to this
    /// channel's object, beside the door's own keys.
    pub fn add_note(&mut self, key: &str, note: serde_json::Value) {
        let own = self
            .metadata
            .entry(self.channel.kind.as_str().to_string())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if !own.is_object() {
            *own = serde_json::json!({ "value": own.clone() });
        }
        if let Some(obj) = own.as_object_mut() {
            obj.insert(key.to_string(), note);
        }
    }

    /// The keys any channel's object may carry ([`Shared`]), read in place.
    pub fn shared_meta(&self) -> Shared<'_> {
        Shared::of(self.channel_metadata())
    }

    /// Where to answer on the channel the item came by, when that channel
    /// answers at all: the SMS sender's number when the channel said so
    /// (`metadata.sms.answer_by_sms`), the e-mail sender when the mail may
    /// be acknowledged (`metadata.email.acknowledge`: not auto-generated);
    /// for any other door, the address it names (`metadata.<kind>.reply_to`),
    /// so a new door with a replier needs no arm here.
    pub fn reply_address(&self) -> Option<&str> {
        use crate::channels::{email::EmailMeta, sms::SmsMeta};
        match self.channel.kind {
            ChannelKind::Sms => self
                .sender
                .phone
                .as_deref()
                .filter(|_| self.meta::<SmsMeta>().is_some_and(|m| m.answer_by_sms)),
            ChannelKind::Email => self
                .sender
                .email
                .as_deref()
                .filter(|_| self.meta::<EmailMeta>().is_some_and(|m| m.acknowledge)),
            _ => self.shared_meta().reply_to,
        }
    }

    /// Why no answer goes back on the channel, when none does: the
    /// channel's own reason (`metadata.email.no_acknowledgement`: an
    /// auto-reply, a list, one of our addresses…; another door's
    /// `metadata.<kind>.no_reply`), else what the channel cannot do. `None`
    /// when an answer is due ([`Self::reply_address`]).
    pub fn why_no_reply(&self) -> Option<String> {
        if self.reply_address().is_some() {
            return None;
        }
        Some(match self.channel.kind {
            ChannelKind::Email => self
                .meta::<crate::channels::email::EmailMeta>()
                .and_then(|m| m.no_acknowledgement)
                .unwrap_or_else(|| "no sender address".into()),
            ChannelKind::Sms => {
                "the sender cannot receive an SMS answer, or the channel sends none".into()
            }
            kind => self.shared_meta().no_reply.map_or_else(
                || format!("the {} channel sends no answers", kind.as_str()),
                str::to_string,
            ),
        })
    }

    /// The registered item this message follows up, if its channel found one.
    pub fn follow_up_of(&self) -> Option<FollowUp> {
        self.shared_meta().follow_up_of
    }

    /// Where the engine's malware scan left the message
    /// (`metadata.<kind>.malware.state`: `clean`, `infected`, `pending`,
    /// `not_scanned`, `unscannable`; see [`crate::malware`]).
    pub fn malware_state(&self) -> Option<&str> {
        self.shared_meta().malware?.state
    }

    /// The service an officer chose when registering the item at the desk
    /// (`metadata.<kind>.service`): it routes the item to that service's unit.
    pub fn chosen_service(&self) -> Option<&str> {
        self.shared_meta().chosen_service
    }

    /// The unit an e-adrese sub-address (struktūrvienība) names, as the
    /// channel mapped it (`metadata.e_adrese.unit`).
    pub fn addressed_unit(&self) -> Option<String> {
        self.meta::<crate::channels::eadrese::EadreseMeta>()?.unit
    }

    /// The web form id, for rules that match on it.
    pub fn form_id(&self) -> Option<String> {
        self.meta::<crate::channels::web_form::WebFormMeta>()
            .map(|m| m.form_id)
    }
}

/// Characters that change how a name reads without being seen: control
/// characters and the bidirectional formatting ones (U+202A–U+202E
/// embeddings and overrides, U+2066–U+2069 isolates, U+200E/U+200F marks,
/// U+061C) that make `līgums\u{202E}fdp.exe` show as `līgumsexe.pdf`.
fn hidden_in_names(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
}

/// An attachment's name as every channel shows it: without control and
/// bidirectional formatting characters, at most 200 characters. Display
/// only: the blob keeps the sender's bytes, and a name is never a path.
pub fn display_filename(raw: &str) -> String {
    raw.chars()
        .filter(|c| !hidden_in_names(*c))
        .take(200)
        .collect()
}

/// The JSON Schema of [`IntakeMessage`], as published under `docs/`:
/// `metadata.<kind>` described by each kind's door
/// ([`crate::channels::Door::Meta`]), other keys allowed.
pub fn json_schema() -> serde_json::Value {
    let mut root = serde_json::to_value(schemars::schema_for!(IntakeMessage)).unwrap_or_default();
    let mut kinds = serde_json::Map::new();
    let mut defs = serde_json::Map::new();
    for kind in crate::channels::KINDS {
        let mut schema = (kind.meta_schema)();
        if let Some(obj) = schema.as_object_mut() {
            obj.remove("$schema");
            if let Some(serde_json::Value::Object(d)) = obj.remove("$defs") {
                defs.extend(d);
            }
        }
        kinds.insert(kind.kind.as_str().to_string(), schema);
    }
    if let Some(metadata) = root
        .pointer_mut("/properties/metadata")
        .and_then(serde_json::Value::as_object_mut)
    {
        metadata.insert("properties".into(), serde_json::Value::Object(kinds));
    }
    if !defs.is_empty()
        && let Some(obj) = root.as_object_mut()
    {
        let all = obj
            .entry("$defs")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let Some(all) = all.as_object_mut() {
            all.extend(defs);
        }
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IntakeMessage {
        IntakeMessage::new(
            ChannelRef {
                kind: ChannelKind::WebForm,
                instance: "iesniegums".into(),
            },
            "web_form:iesniegums:token-1".into(),
            "Lūdzu būvatļauju".into(),
        )
    }

    #[test]
    fn why_no_answer_is_sent_is_said() {
        let mut m = sample();
        m.channel.kind = ChannelKind::Email;
        assert_eq!(m.why_no_reply().as_deref(), Some("no sender address"));
        m.sender.email = Some("a@example.com".into());
        m.metadata.insert(
            "email".into(),
            serde_json::json!({ "acknowledge": false, "no_acknowledgement": "mailing-list mail" }),
        );
        assert_eq!(m.why_no_reply().as_deref(), Some("mailing-list mail"));
        m.metadata
            .insert("email".into(), serde_json::json!({ "acknowledge": true }));
        assert_eq!(m.why_no_reply(), None, "an answer is due");
        assert_eq!(
            sample().why_no_reply().as_deref(),
            Some("the web_form channel sends no answers")
        );
        // Any other door names the address itself, or why there is none.
        let mut m = sample();
        m.metadata.insert(
            "web_form".into(),
            serde_json::json!({ "no_reply": "the citizen asked for none" }),
        );
        assert_eq!(
            m.why_no_reply().as_deref(),
            Some("the citizen asked for none")
        );
        m.metadata.insert(
            "web_form".into(),
            serde_json::json!({ "reply_to": "anna@example.lv" }),
        );
        assert_eq!(m.reply_address(), Some("anna@example.lv"));
        assert_eq!(m.why_no_reply(), None);
    }

    #[test]
    fn the_check_reads_values_not_the_serialised_json() {
        // The six characters `\u0000` and backslashes are text like any other.
        let mut m = sample();
        m.body = "C:\\u0000 un \\\\u0000".into();
        m.metadata.insert(
            "web_form".into(),
            serde_json::json!({ "fields": { "teksts": "\\u0000" } }),
        );
        assert!(m.check().is_ok(), "{:?}", m.check());
        assert_eq!(IntakeMessage::decode(&m.encode()).unwrap(), m);
        // A NUL is named by its field, and the normalisation removes it.
        let mut m = sample();
        m.metadata.insert(
            "sms".into(),
            serde_json::json!({ "to": "18\u{0}88", "parts": ["a\u{0}"] }),
        );
        assert_eq!(
            m.check().unwrap_err().field(),
            Some("metadata.sms.parts[0]")
        );
        m.sender.name = Some("An\u{0}na".into());
        assert_eq!(m.check().unwrap_err().field(), Some("sender.name"));
        m.prepare().unwrap();
        assert_eq!(m.sender.name.as_deref(), Some("Anna"));
        assert_eq!(m.metadata["sms"]["to"], "1888");
        // The engine takes a producer's NUL as the door would have.
        let mut raw = sample();
        raw.body = "a\u{0}b".into();
        assert_eq!(IntakeMessage::decode(&raw.encode()).unwrap().body, "ab");
    }

    #[test]
    fn round_trips_through_the_bus_encoding() {
        let m = sample();
        assert_eq!(IntakeMessage::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn only_a_checked_personas_kods_in_its_written_form_passes_and_is_not_echoed() {
        let mut m = sample();
        m.sender.personal_code = Some("321234-56789".into());
        m.check().expect("a written new-format code");
        for bad in ["32123456789", "150385-12345", "nav kods"] {
            m.sender.personal_code = Some(bad.into());
            let e = m.check().expect_err(bad).to_string();
            assert!(e.contains("sender.personal_code"), "{e}");
            assert!(!e.contains(bad), "the value is not echoed: {e}");
        }
    }

    #[test]
    fn unknown_versions_and_keys_are_refused() {
        let mut m = sample();
        m.schema_version = 2;
        assert!(matches!(
            IntakeMessage::decode(&m.encode()),
            Err(MessageError::Version { found: 2, .. })
        ));
        let mut m = sample();
        m.metadata.insert("fax".into(), serde_json::json!({}));
        assert!(IntakeMessage::decode(&m.encode()).is_err());
        assert!(IntakeMessage::decode(b"{\"schema_version\":1").is_err());
    }

    #[test]
    fn bidi_controls_never_reach_an_attachment_name() {
        let mut m = sample();
        for (i, name) in [
            "līgums\u{202E}fdp.exe",
            "\u{2066}rēķins\u{2069}\u{200F}.pdf\u{061C}",
            "a\u{202A}b\u{202B}c\u{202C}d\u{202D}e\u{200E}f\u{2067}g\u{2068}.png",
            "tab\there.pdf",
        ]
        .into_iter()
        .enumerate()
        {
            m.attachments.push(AttachmentRef {
                sha256: format!("{i:064}"),
                filename: name.into(),
                content_type: "application/pdf".into(),
                size: 1,
            });
        }
        let names: Vec<String> = IntakeMessage::decode(&m.encode())
            .unwrap()
            .attachments
            .into_iter()
            .map(|a| a.filename)
            .collect();
        assert_eq!(
            names,
            ["līgumsfdp.exe", "rēķins.pdf", "abcdefg.png", "tabhere.pdf"]
        );
        assert_eq!(display_filename("Iesniegums (1).pdf"), "Iesniegums (1).pdf");
    }
}

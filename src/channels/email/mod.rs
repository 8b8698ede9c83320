//! The e-mail channel: one IMAP mailbox per channel file, read by exactly
//! one daemon at a time (a lease in its door state), every new mail
//! normalised ([`normalise`]) and published with a broker confirm, and only
//! then moved to the processed folder or flagged. Its door state keeps the
//! mailbox position (UIDVALIDITY, last UID handed on), so nothing already
//! handed on is fetched again; the idempotency key is the mail's content
//! hash, so a crash between confirm and move, a restart mid-batch or a
//! UIDVALIDITY change never registers a mail twice.
//!
//! - [`imap`]: the protocol (TLS/STARTTLS, password or XOAUTH2, IDLE).
//! - [`normalise`]: raw mail → the one message format (pure, golden-tested).
//! - [`edoc`]: signed containers (.edoc/.asice/.bdoc) listed and their signatures verified.
//! - [`ack`]: the acknowledgement with the registration number (SMTP).
//! - [`original`]: the mail as the desk shows it (HTML sanitised).
//! - [`authenticity`]: SPF, DKIM and DMARC; threading, bounces and
//!   acknowledgements only for mail whose sender is proven.

pub mod ack;
pub mod authenticity;
pub mod edoc;
pub mod imap;
mod meta;
pub mod normalise;
pub mod original;

pub use meta::{EmailMeta, ImapPlace};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::authenticity::Requirement;
use self::imap::{Credentials, ImapError, Mailbox, Waiting};
use self::normalise::{ImapSource, ParsedMail};
use super::context::{Lease, MailboxPosition, StateError};
use super::original::{Original, OriginalFile};
use super::{Channel, ChannelError, Door, DoorConfig, DoorContext, DoorSinks, SinkContext, Words};
use crate::blobs::BlobStore;
use crate::enrich::{DeliveryReport, References};
use crate::message::{ChannelKind, IntakeMessage};

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// No TLS: allowed only to a loopback address (tests, a local relay).
    Plain,
    Starttls,
    Tls,
}

/// What happens to a mail once it is durably handed on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum AfterHandOff {
    /// Moved to this folder (created if missing).
    Move { folder: String },
    /// Left in place, marked \Seen and `$Pietura`.
    Flag,
}

impl Default for AfterHandOff {
    fn default() -> Self {
        AfterHandOff::Move {
            folder: "Registered".into(),
        }
    }
}

/// `[imap]` of an e-mail channel file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    pub host: String,
    #[serde(default = "default_imap_port")]
    pub port: u16,
    #[serde(default = "default_security")]
    pub security: Security,
    pub username: String,
    /// One of: the password, the variable holding it, or an OAuth2 access
    /// token (variable or a file an external helper keeps fresh).
    #[serde(default)]
    pub password: Option<SecretString>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub oauth2_token_env: Option<String>,
    #[serde(default)]
    pub oauth2_token_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) to trust, for an internal server.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Use IDLE where the server offers it.
    #[serde(default = "yes")]
    pub idle: bool,
    /// How often to look for mail without IDLE.
    #[serde(default = "default_poll_seconds")]
    pub poll_seconds: u64,
}

fn default_imap_port() -> u16 {
    993
}
fn default_security() -> Security {
    Security::Tls
}
fn yes() -> bool {
    true
}
fn default_poll_seconds() -> u64 {
    60
}
fn default_mailbox() -> String {
    "INBOX".into()
}
fn default_batch_mails() -> usize {
    100
}
fn default_max_message_bytes() -> u64 {
    25 * 1024 * 1024
}

/// `channels/<id>.toml` with `type = "email"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub id: String,
    pub imap: ImapConfig,
    #[serde(default = "default_mailbox")]
    pub mailbox: String,
    #[serde(default)]
    pub after: AfterHandOff,
    /// A larger mail is registered with its headers only and sent to review.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u64,
    /// Mails handed on together (published concurrently, moved in one
    /// command); also bounded to 32 MiB a batch.
    #[serde(default = "default_batch_mails")]
    pub batch_mails: usize,
    /// Our own addresses: mail from them is never acknowledged (the IMAP
    /// user and the acknowledgement sender are added). Each is an address
    /// (`dokumenti@novads.lv`), a whole domain (`@novads.example.lv`) or a
    /// pattern with `*` and `?` (`*@*.novads.lv`).
    #[serde(default)]
    pub our_addresses: Vec<String>,
    /// The acknowledgement with the registration number; none when absent.
    #[serde(default)]
    pub acknowledgement: Option<ack::AckSettings>,
    /// Whether the sender is who `From:` says, and what waits for it.
    #[serde(default)]
    pub authenticity: Box<authenticity::AuthenticityConfig>,
}

impl DoorConfig for EmailConfig {
    fn id(&self) -> &str {
        &self.id
    }

    /// Problems with the file's values, each naming its key.
    fn validate(&self) -> Vec<String> {
        let mut issues = Vec::new();
        let i = &self.imap;
        let secrets = [
            i.password.is_some(),
            i.password_env.is_some(),
            i.oauth2_token_env.is_some(),
            i.oauth2_token_file.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if secrets != 1 {
            issues.push("imap: set exactly one of password, password_env, oauth2_token_env, oauth2_token_file".into());
        }
        if i.security == Security::Plain && !crate::tls::is_local_host(&i.host) {
            issues.push(format!(
                "imap.security = \"plain\" would send the password in clear to {}; use \"tls\" or \"starttls\"",
                i.host
            ));
        }
        if i.poll_seconds == 0 {
            issues.push("imap.poll_seconds must be at least 1".into());
        }
        if self.mailbox.trim().is_empty() {
            issues.push("mailbox must not be empty".into());
        }
        if let AfterHandOff::Move { folder } = &self.after
            && (folder.trim().is_empty() || folder == &self.mailbox)
        {
            issues.push("after.folder must name a folder other than the mailbox read".into());
        }
        if !(1..=1000).contains(&self.batch_mails) {
            issues.push("batch_mails must be 1 to 1000".into());
        }
        if self.max_message_bytes < 1024 {
            issues.push("max_message_bytes must be at least 1024".into());
        }
        for (i, a) in self.our_addresses.iter().enumerate() {
            if let Some(why) = normalise::our_address_problem(a) {
                issues.push(format!("our_addresses[{i}] {a:?} {why}"));
            }
        }
        if let Some(a) = &self.acknowledgement {
            issues.extend(a.validate());
        }
        issues.extend(self.authenticity.validate());
        issues
    }
}

impl EmailConfig {
    /// The credentials as they are now (read at each connection: tokens rotate).
    fn credentials(&self) -> Result<Credentials, String> {
        let i = &self.imap;
        let var = |name: &str| {
            std::env::var(name).map_err(|_| {
                format!(
                    "the variable {name} with the mailbox's secret (channels file of {}, [imap]) is not set; set it to read the mailbox",
                    self.id
                )
            })
        };
        if let Some(p) = &i.password {
            return Ok(Credentials::Password(p.expose_secret().to_string()));
        }
        if let Some(v) = &i.password_env {
            return var(v).map(Credentials::Password);
        }
        if let Some(v) = &i.oauth2_token_env {
            return var(v).map(Credentials::Bearer);
        }
        if let Some(f) = &i.oauth2_token_file {
            return std::fs::read_to_string(f)
                .map(|t| Credentials::Bearer(t.trim().to_string()))
                .map_err(|e| format!("oauth2_token_file {}: {e}", f.display()));
        }
        Err("no IMAP credentials configured".into())
    }

    /// Our own addresses, lowercase.
    fn ours(&self) -> Vec<String> {
        let mut ours: Vec<String> = self
            .our_addresses
            .iter()
            .map(|a| a.trim().to_lowercase())
            .collect();
        if self.imap.username.contains('@') {
            ours.push(self.imap.username.to_lowercase());
        }
        if let Some(a) = self.acknowledgement.as_ref().and_then(|a| a.from_address()) {
            ours.push(a);
        }
        ours.sort();
        ours.dedup();
        ours
    }
}

/// Mail handed on together: at most this many bytes (a mail over the size
/// limit counts only its headers).
const BATCH_BYTES: u64 = 32 * 1024 * 1024;

/// Splits the waiting mail into batches of at most `per_batch`, in UID order.
fn batches(waiting: &[Waiting], per_batch: usize, max_message_bytes: u64) -> Vec<&[Waiting]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, w) in waiting.iter().enumerate() {
        let size = if w.size > max_message_bytes {
            64 * 1024
        } else {
            w.size
        };
        if i > start && (i - start >= per_batch || bytes + size > BATCH_BYTES) {
            out.push(&waiting[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < waiting.len() {
        out.push(&waiting[start..]);
    }
    out
}

/// Why a round with the mailbox ended.
enum RoundEnd {
    /// Shutdown.
    Stopped,
    /// Another daemon holds the mailbox.
    NotOurs,
    Failed(String),
}

impl From<ImapError> for RoundEnd {
    fn from(e: ImapError) -> Self {
        RoundEnd::Failed(e.to_string())
    }
}

impl From<StateError> for RoundEnd {
    fn from(e: StateError) -> Self {
        RoundEnd::Failed(e.to_string())
    }
}

/// A running e-mail channel.
pub struct Email {
    cfg: EmailConfig,
    ctx: DoorContext,
    ours: Vec<String>,
    checker: authenticity::Checker,
    /// This daemon's claim on the mailbox, while it holds it.
    lease: std::sync::Mutex<Option<Lease>>,
    /// The other holder last reported (reported again when it changes).
    lease_seen: std::sync::Mutex<Option<String>>,
}

/// How long a mailbox lease lasts unless renewed: a daemon that dies
/// without releasing it holds the mailbox up at most this long.
const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often the holder renews its lease (IDLE re-issued, poll sleeps cut).
const LEASE_RENEW: Duration = Duration::from_secs(10);

impl Email {
    /// How long one wait for mail lasts: IDLE is re-issued (and the lease
    /// renewed) every [`LEASE_RENEW`]; polling sleeps `poll_seconds`,
    /// renewing the lease meanwhile.
    fn wait(&self) -> Duration {
        if self.cfg.imap.idle {
            LEASE_RENEW
        } else {
            Duration::from_secs(self.cfg.imap.poll_seconds)
        }
    }

    /// Takes or renews the mailbox's lease, measured by the database's clock.
    async fn lease(&self) -> Result<bool, RoundEnd> {
        let state = &self.ctx.state;
        let held = self.held();
        let lease = state
            .lease_mailbox(&self.cfg.mailbox, held.as_ref(), LEASE_TTL.as_secs() as i64)
            .await?;
        let won = lease.is_some();
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = lease;
        if won {
            *self.lease_seen.lock().unwrap_or_else(|p| p.into_inner()) = None;
        } else {
            // Said at INFO once per holder: a standby daemon, or one waiting
            // out a crashed daemon's lease, says whom it waits for.
            let lease = state.mailbox_holder(&self.cfg.mailbox).await?;
            if let Some((holder, until)) = lease {
                let mut seen = self.lease_seen.lock().unwrap_or_else(|p| p.into_inner());
                if seen.as_deref() != Some(holder.as_str()) {
                    tracing::info!(
                        channel = %self.cfg.id,
                        mailbox = %self.cfg.mailbox,
                        holder = %holder,
                        until = %until,
                        "mailbox leased by another daemon until {until}; taking over when it is released or runs out"
                    );
                    *seen = Some(holder);
                }
            }
        }
        Ok(won)
    }

    /// One connection's life: connect, read what waits, wait for more.
    async fn round(&self, shutdown: &CancellationToken, backoff: &mut Duration) -> RoundEnd {
        match self.round_inner(shutdown, backoff).await {
            Ok(()) => RoundEnd::Stopped,
            Err(end) => end,
        }
    }

    async fn round_inner(
        &self,
        shutdown: &CancellationToken,
        backoff: &mut Duration,
    ) -> Result<(), RoundEnd> {
        if !self.lease().await? {
            return Err(RoundEnd::NotOurs);
        }
        let credentials = self.cfg.credentials().map_err(RoundEnd::Failed)?;
        let mut mb = imap::connect(&self.cfg.imap, &credentials).await?;
        mb.features.idle &= self.cfg.imap.idle;
        if let AfterHandOff::Move { folder } = &self.cfg.after {
            mb.ensure_folder(folder).await?;
        }
        let mut opened = false;
        loop {
            if !self.lease().await? {
                mb.logout().await;
                return Err(RoundEnd::NotOurs);
            }
            // Selected again each round: a UIDVALIDITY changed under an
            // open session is seen at once.
            let validity = mb.select(&self.cfg.mailbox).await?;
            if !opened {
                tracing::info!(
                    mailbox = %self.cfg.mailbox,
                    uid_validity = validity,
                    idle = mb.features.idle,
                    "mailbox open"
                );
                *backoff = Duration::from_secs(1);
                opened = true;
            }
            let mut pos = self.ctx.state.mailbox_position(&self.cfg.mailbox).await?;
            if pos.uid_validity != validity {
                if pos.uid_validity != 0 {
                    tracing::warn!(
                        mailbox = %self.cfg.mailbox,
                        old = pos.uid_validity,
                        new = validity,
                        "UIDVALIDITY changed: reading the mailbox from its start; mail already registered is recognised by its content"
                    );
                }
                pos = MailboxPosition {
                    uid_validity: validity,
                    last_uid: 0,
                };
                self.advance(pos).await?;
            }
            let waiting = mb.waiting(pos.last_uid, &self.cfg.after).await?;
            if !waiting.is_empty() {
                tracing::info!(mailbox = %self.cfg.mailbox, count = waiting.len(), "new mail");
            }
            let mut renewed = Instant::now();
            for batch in batches(&waiting, self.cfg.batch_mails, self.cfg.max_message_bytes) {
                if shutdown.is_cancelled() {
                    break;
                }
                if renewed.elapsed() > LEASE_RENEW {
                    if !self.lease().await? {
                        mb.logout().await;
                        return Err(RoundEnd::NotOurs);
                    }
                    renewed = Instant::now();
                }
                let (handed_on, failure) = self.hand_on(&mut mb, batch, validity).await?;
                if let Some(last) = handed_on {
                    pos.last_uid = last;
                    self.advance(pos).await?;
                }
                if let Some(failure) = failure {
                    return Err(failure);
                }
            }
            if shutdown.is_cancelled() {
                mb.logout().await;
                return Ok(());
            }
            // Wait for mail, renewing the lease at least every LEASE_RENEW.
            let mut waited = Duration::ZERO;
            loop {
                let step = (self.wait() - waited).min(LEASE_RENEW);
                mb = mb.wait_for_mail(step, shutdown).await?;
                if shutdown.is_cancelled() {
                    mb.logout().await;
                    return Ok(());
                }
                waited += step;
                if mb.features.idle || waited >= self.wait() {
                    break;
                }
                if !self.lease().await? {
                    mb.logout().await;
                    return Err(RoundEnd::NotOurs);
                }
            }
        }
    }

    /// This daemon's claim on the mailbox, if it holds one.
    fn held(&self) -> Option<Lease> {
        self.lease.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn advance(&self, pos: MailboxPosition) -> Result<(), RoundEnd> {
        let Some(lease) = self.held() else {
            return Err(RoundEnd::NotOurs);
        };
        let held = self
            .ctx
            .state
            .advance_mailbox(&self.cfg.mailbox, &lease, LEASE_TTL.as_secs() as i64, pos)
            .await?;
        if held { Ok(()) } else { Err(RoundEnd::NotOurs) }
    }

    /// Reads a batch of mail, hands it on (blobs stored, messages published
    /// with confirms, all concurrently) and puts away the longest run, in
    /// UID order, that was handed on, in one command. Returns the last UID
    /// put away and the failure that stopped the rest (left in place, read
    /// again in the next round).
    async fn hand_on(
        &self,
        mb: &mut Mailbox,
        batch: &[Waiting],
        validity: u32,
    ) -> Result<(Option<u32>, Option<RoundEnd>), RoundEnd> {
        let mut outcomes: Vec<Result<(), String>> = Vec::with_capacity(batch.len());
        let mut to_publish = Vec::new();
        for (i, w) in batch.iter().enumerate() {
            let oversized = w.size > self.cfg.max_message_bytes;
            let raw = match mb.fetch(w.uid, oversized).await {
                Ok(raw) => raw,
                Err(e) => {
                    outcomes.push(Err(e.to_string()));
                    break;
                }
            };
            let mut parsed = normalise::parse(
                raw,
                oversized.then_some((w.size, self.cfg.max_message_bytes)),
                &self.ours,
            );
            for part in &mut parsed.parts {
                if let Some(Ok(container)) = part.signed.as_mut() {
                    edoc::verify(&part.blob.bytes, container, &self.ctx.site.signature_trust);
                }
            }
            if self.cfg.acknowledgement.is_none() {
                parsed
                    .no_acknowledgement
                    .get_or_insert_with(|| "the channel sends no acknowledgements".into());
            }
            let span = self.span(&parsed, w.uid);
            if let Some(reason) = &parsed.review_reason {
                span.in_scope(|| tracing::warn!("kept for review: {reason}"));
            }
            let proven = self.checker.check(&parsed.raw.bytes).await;
            let policy = self.checker.config();
            if !policy.allows(Requirement::Acknowledgement, &proven) {
                parsed.no_acknowledgement.get_or_insert_with(|| {
                    "the sender is not proven (SPF, DKIM, DMARC): no acknowledgement to a possibly forged address".into()
                });
            }
            let refs = span.in_scope(|| references(&parsed, &proven, policy));
            let source = ImapSource {
                mailbox: self.cfg.mailbox.clone(),
                uid_validity: validity,
                uid: w.uid,
            };
            let received_at = w.received_at.unwrap_or_else(Utc::now);
            let mut msg = parsed.to_message(&self.cfg.id, received_at, Some(&source), Some(&refs));
            msg.sender_authenticity = Some(proven);
            outcomes.push(Err("not handed on yet".into()));
            to_publish.push((i, parsed, msg, span));
        }
        // Blobs, then the message: a published message never names a missing blob.
        let published =
            futures::future::join_all(to_publish.iter().map(|(_, parsed, msg, span)| {
                async move {
                    self.store_blobs(parsed).await?;
                    self.ctx
                        .publisher
                        .publish(msg)
                        .await
                        .map_err(|e| format!("not handed on: {e}"))?;
                    tracing::info!(id = %msg.id, "handed on");
                    Ok::<(), String>(())
                }
                .instrument(span.clone())
            }))
            .await;
        for ((i, ..), result) in to_publish.iter().zip(published) {
            outcomes[*i] = result;
        }
        let done: Vec<u32> = batch
            .iter()
            .zip(&outcomes)
            .take_while(|(_, o)| o.is_ok())
            .map(|(w, _)| w.uid)
            .collect();
        let failure = batch.iter().zip(&outcomes).find_map(|(w, o)| {
            o.as_ref()
                .err()
                .map(|e| RoundEnd::Failed(format!("mail UID {}: {e}", w.uid)))
        });
        // Only now may the mail leave the inbox.
        if !done.is_empty() {
            mb.hand_off_done(&done, &self.cfg.after).await?;
        }
        Ok((done.last().copied(), failure))
    }

    fn span(&self, parsed: &ParsedMail, uid: u32) -> tracing::Span {
        tracing::info_span!("item", key = %parsed.idempotency_key(&self.cfg.id), channel = "email", instance = %self.cfg.id, uid)
    }

    /// Blobs before the message: a published message never names a missing blob.
    async fn store_blobs(&self, parsed: &ParsedMail) -> Result<(), String> {
        let all = std::iter::once(&parsed.raw).chain(parsed.parts.iter().map(|p| &p.blob));
        for blob in all {
            self.ctx
                .blobs
                .put(&blob.bytes)
                .await
                .map_err(|e| format!("blob {} not stored: {e}", blob.sha256))?;
        }
        Ok(())
    }
}

/// What a mail refers to, as far as its sender is proven for it: a
/// delivery report's items only when bounces may be recorded, the answers
/// it replies to and the number it names only when it may be threaded
/// (the engine resolves them, [`crate::enrich`]).
fn references(
    parsed: &ParsedMail,
    proven: &crate::message::SenderAuthenticity,
    policy: &authenticity::AuthenticityConfig,
) -> References {
    let mut refs = References::default();
    let items: Vec<String> = parsed
        .acknowledged_items
        .iter()
        .map(ToString::to_string)
        .collect();
    if parsed.is_report {
        if !policy.allows(Requirement::Bounces, proven) {
            tracing::info!(dkim = %proven.dkim, spf = %proven.spf, dmarc = %proven.dmarc, "a delivery report whose sender is not proven: registered as mail, not recorded as a bounce");
        } else if !items.is_empty() {
            let text = String::from_utf8_lossy(&parsed.raw.bytes);
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
            };
            refs.report = Some(DeliveryReport {
                items: items.clone(),
                key: parsed.raw.sha256.clone(),
                status: field("Status:"),
                diagnostic: field("Diagnostic-Code:"),
            });
        }
    }
    if policy.allows(Requirement::Threading, proven) {
        refs.replies_to = items;
        refs.number = parsed.subject_number.clone();
    } else if !items.is_empty() || parsed.subject_number.is_some() {
        tracing::info!(dkim = %proven.dkim, spf = %proven.spf, dmarc = %proven.dmarc, "mail names a registered item but its sender is not proven: a new item, not threaded");
    }
    refs
}

impl Door for Email {
    const KIND: ChannelKind = ChannelKind::Email;
    const WORDS: Words = Words {
        lv: "e-pasts",
        en: "e-mail",
    };
    type Config = EmailConfig;
    type Meta = EmailMeta;

    fn build(cfg: EmailConfig, ctx: DoorContext) -> Result<Self, ChannelError> {
        let ours = cfg.ours();
        let checker =
            authenticity::Checker::new((*cfg.authenticity).clone()).map_err(|e| ChannelError {
                channel: cfg.id.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            cfg,
            ctx,
            ours,
            checker,
            lease: std::sync::Mutex::new(None),
            lease_seen: std::sync::Mutex::new(None),
        })
    }

    /// Acknowledgements, when `[acknowledgement]` is set.
    fn sinks(cfg: &EmailConfig, sinks: &SinkContext) -> Result<DoorSinks, ChannelError> {
        let Some(a) = &cfg.acknowledgement else {
            return Ok(DoorSinks::default());
        };
        let ack =
            ack::Acknowledger::new(&cfg.id, a.clone(), cfg.ours(), sinks).map_err(|message| {
                ChannelError {
                    channel: cfg.id.clone(),
                    message,
                }
            })?;
        Ok(DoorSinks {
            replier: Some(Arc::new(ack)),
            upkeep: None,
        })
    }

    fn original<'a>(msg: &'a IntakeMessage, blobs: &'a BlobStore) -> BoxFuture<'a, Original> {
        Box::pin(original::of(msg, blobs))
    }

    fn original_file(msg: &IntakeMessage) -> Option<OriginalFile> {
        let meta = msg.meta::<EmailMeta>()?;
        OriginalFile::of(&meta.original, format!("{}.eml", msg.id))
    }
}

#[async_trait]
impl Channel for Email {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), ChannelError> {
        let mut backoff = Duration::from_secs(1);
        let mut waiting_for: Option<String> = None;
        loop {
            // Inert until configured: a missing secret is said once, not every minute.
            if let Err(why) = self.cfg.credentials() {
                if waiting_for.as_deref() != Some(why.as_str()) {
                    tracing::warn!(channel = %self.cfg.id, "e-mail channel waits: {why}");
                    waiting_for = Some(why);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => continue,
                }
            }
            waiting_for = None;
            let pause = match self.round(&shutdown, &mut backoff).await {
                RoundEnd::Stopped => break,
                RoundEnd::NotOurs => LEASE_RENEW,
                RoundEnd::Failed(e) => {
                    crate::metrics::mailbox_error(&self.cfg.id);
                    tracing::warn!(channel = %self.cfg.id, mailbox = %self.cfg.mailbox, "mailbox: {e}; trying again in {backoff:?}");
                    let _ = self.ctx.state.mailbox_error(&self.cfg.mailbox, &e).await;
                    let pause = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    pause
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        if let Some(lease) = self.held() {
            let _ = self.ctx.state.release(&lease).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(src: &str) -> EmailConfig {
        toml::from_str(src).expect("valid channel file")
    }

    #[test]
    fn plain_imap_is_refused_off_loopback_and_one_secret_is_required() {
        let c = config(
            "id = \"e\"\n[imap]\nhost = \"mail.example.lv\"\nsecurity = \"plain\"\nusername = \"u\"\n",
        );
        let issues = c.validate().join("\n");
        assert!(issues.contains("in clear"), "{issues}");
        assert!(issues.contains("exactly one of password"), "{issues}");
        let c = config(
            "id = \"e\"\n[imap]\nhost = \"127.0.0.1\"\nsecurity = \"plain\"\nusername = \"u\"\npassword_env = \"X\"\n",
        );
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.after, AfterHandOff::default());
    }

    #[test]
    fn our_addresses_are_checked() {
        let c = config(
            "id = \"e\"\nour_addresses = [\"@novads.lv\", \"*@*.novads.lv\", \"novads.lv\", \"a@\"]\n[imap]\nhost = \"127.0.0.1\"\nsecurity = \"plain\"\nusername = \"u\"\npassword_env = \"X\"\n",
        );
        let issues = c.validate();
        assert_eq!(issues.len(), 2, "{issues:?}");
        assert!(
            issues[0].starts_with("our_addresses[2] \"novads.lv\""),
            "{issues:?}"
        );
        assert!(
            issues[1].starts_with("our_addresses[3] \"a@\""),
            "{issues:?}"
        );
    }

    #[test]
    fn xoauth2_is_the_documented_sasl_string() {
        assert_eq!(
            imap::xoauth2_response(
                "someuser@example.com",
                "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
            ),
            "user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
    }
}

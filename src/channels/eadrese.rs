//! The e-adrese door: polls the institution's DIV message list, turns each
//! message into an [`IntakeMessage`] (files decrypted into blobs first),
//! publishes it with a confirm and only then confirms it to the service, so
//! a crash in between serves the message again and the engine recognises
//! it by its idempotency key (`e_adrese:<DIV message id>`). The poll runs
//! under a named lease (`eadrese-poll:<channel>`): one daemon at a time.
//! Acknowledgements go back to the sender's e-adrese, signed, with the
//! delivery confirmation recorded. The protocol is [`crate::eadrese`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use schemars::JsonSchema;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    Channel, ChannelError, Door, DoorConfig, DoorContext, DoorSinks, SinkContext, Upkeep, Words,
};
use crate::blobs::BlobStore;
use crate::eadrese::{
    Credentials, DivClient, DivEndpoint, DivError, InboundMessage, OauthClient, Outbound,
    OutboundFile,
};
use crate::message::meta::{KindMetadata, Other};
use crate::message::{
    AttachmentRef, ChannelKind, ChannelRef, FormalStatus, IntakeMessage, display_filename,
};
use crate::print::{PrintFont, PrintSettings};
use crate::registry::Registry;
use crate::registry::replies::PendingReply;
use crate::replies::{Replier, ReplyError, ReplyOutcome};
use crate::rules::watch::SharedRules;

/// `channels/<id>.toml` with `type = "e_adrese"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EadreseConfig {
    pub id: String,
    /// The UnifiedService URL (the test environment first).
    pub endpoint: String,
    /// The institution's own e-address, `_DEFAULT@<registration number>`.
    pub address: String,
    /// The client certificate (PEM): a file or a variable holding it.
    pub certificate_file: Option<PathBuf>,
    pub certificate_env: Option<String>,
    /// Its private key (PEM, PKCS#8 or PKCS#1).
    pub key_file: Option<PathBuf>,
    pub key_env: Option<String>,
    /// Trust only this CA for the service; default: the public roots.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Send the registration acknowledgement to the sender's e-adrese.
    #[serde(default = "yes")]
    pub acknowledge: bool,
    /// Addressee directory refresh; 0 turns it off.
    #[serde(default = "default_directory_minutes")]
    pub directory_sync_minutes: u64,
    /// Sub-addresses (struktūrvienības) and the unit each one routes to.
    #[serde(default)]
    pub sub_addresses: BTreeMap<String, String>,
    /// The OAuth2 client-credentials token some environments require.
    pub oauth: Option<EadreseOauthConfig>,
}

/// `[oauth]` of an e-adrese channel file: every call then carries a bearer
/// token from `token_url` (client credentials).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EadreseOauthConfig {
    pub token_url: String,
    pub client_id: String,
    /// The client secret: a file or a variable holding it.
    pub client_secret_file: Option<PathBuf>,
    pub client_secret_env: Option<String>,
    pub scope: Option<String>,
}

fn default_poll() -> u64 {
    60
}
fn default_max_file_bytes() -> u64 {
    50 * 1024 * 1024
}
fn yes() -> bool {
    true
}
fn default_directory_minutes() -> u64 {
    60
}

impl DoorConfig for EadreseConfig {
    fn id(&self) -> &str {
        &self.id
    }

    /// Problems with the file's values, each naming its key.
    fn validate(&self) -> Vec<String> {
        let mut issues = Vec::new();
        match reqwest::Url::parse(&self.endpoint) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(_) => issues.push("endpoint: must be https:// (mutual TLS)".into()),
            Err(e) => issues.push(format!("endpoint: not a URL ({e})")),
        }
        if !self.address.contains('@') {
            issues.push("address: the institution's e-address, e.g. _DEFAULT@90000000000".into());
        }
        for key in ["certificate", "key"] {
            let (file, env) = if key == "key" {
                (&self.key_file, &self.key_env)
            } else {
                (&self.certificate_file, &self.certificate_env)
            };
            if file.is_some() == env.is_some() {
                issues.push(format!("give exactly one of {key}_file and {key}_env"));
            }
        }
        if self.poll_seconds == 0 {
            issues.push("poll_seconds: must be at least 1".into());
        }
        if let Some(o) = &self.oauth {
            match reqwest::Url::parse(&o.token_url) {
                Ok(u) if u.scheme() == "https" => {}
                Ok(_) => issues.push("oauth.token_url: must be https://".into()),
                Err(e) => issues.push(format!("oauth.token_url: not a URL ({e})")),
            }
            if o.client_id.trim().is_empty() {
                issues.push("oauth.client_id: must not be empty".into());
            }
            if o.client_secret_file.is_some() == o.client_secret_env.is_some() {
                issues.push(
                    "give exactly one of oauth.client_secret_file and oauth.client_secret_env"
                        .into(),
                );
            }
        }
        issues
    }
}

impl EadreseConfig {
    fn credentials(&self) -> Result<Credentials, String> {
        let read = |key, file, env| {
            crate::config::secret_from_file_or_env(key, file, env)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{key}_file or {key}_env is required"))
        };
        let cert = read("certificate", &self.certificate_file, &self.certificate_env)?;
        let key = read("key", &self.key_file, &self.key_env)?;
        Credentials::from_pem(cert.expose_secret(), key.expose_secret()).map_err(|e| e.to_string())
    }

    /// The OAuth2 client of `[oauth]` (its secret read now), if any.
    fn oauth_client(&self) -> Result<Option<OauthClient>, String> {
        let Some(o) = &self.oauth else {
            return Ok(None);
        };
        let secret = crate::config::secret_from_file_or_env(
            "oauth.client_secret",
            &o.client_secret_file,
            &o.client_secret_env,
        )
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            "oauth.client_secret_file or oauth.client_secret_env is required".to_string()
        })?;
        Ok(Some(OauthClient {
            token_url: o.token_url.clone(),
            client_id: o.client_id.clone(),
            // A secret file ends with a newline.
            client_secret: secret.expose_secret().trim().to_string().into(),
            scope: o.scope.clone(),
        }))
    }

    /// The client this file describes (certificate and key read now).
    pub fn client(&self) -> Result<DivClient, ChannelError> {
        let problem = |message: String| ChannelError {
            channel: self.id.clone(),
            message,
        };
        let creds = self.credentials().map_err(problem)?;
        let oauth = self.oauth_client().map_err(problem)?;
        let client = DivClient::new(
            DivEndpoint {
                url: self.endpoint.clone(),
                address: self.address.clone(),
                ca_file: self.ca_file.clone(),
                timeout: Duration::from_secs(60),
            },
            creds,
        )
        .map_err(|e| problem(e.to_string()))?;
        Ok(match oauth {
            Some(o) => client.with_oauth(o),
            None => client,
        })
    }
}

/// `metadata.e_adrese`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct EadreseMeta {
    /// The DIV message id (the idempotency key's source).
    pub message_id: String,
    /// The e-addresses it was sent to (ours, sub-addresses included).
    pub recipients: Vec<String>,
    /// The sub-address (struktūrvienība) it was sent to, if one is mapped.
    pub sub_address: Option<String>,
    /// The unit that sub-address names.
    pub unit: Option<String>,
    /// The sender's own reference.
    pub sender_ref: Option<String>,
    pub document_date: Option<String>,
    /// The sender's e-adrese, when the channel acknowledges.
    pub reply_to: Option<String>,
    /// Why not, when it does not.
    pub no_reply: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

impl KindMetadata for EadreseMeta {
    const KINDS: &'static [ChannelKind] = &[ChannelKind::EAdrese];
}

/// A running e-adrese channel.
pub struct Eadrese {
    cfg: EadreseConfig,
    ctx: DoorContext,
    client: DivClient,
}

/// The sinks beside an e-adrese door: answers and acknowledgements to the
/// sender's e-adrese (recorded with the delivery confirmation) and the
/// addressee directory's upkeep. Built from the same channel file.
pub struct EadreseSink {
    cfg: EadreseConfig,
    client: DivClient,
    registry: Registry,
    rules: SharedRules,
    blobs: BlobStore,
    print: PrintSettings,
    /// Answers without an uploaded document carry the letter as a PDF.
    font: PrintFont,
}

/// How long one poll's claim runs (renewed while it works).
const POLL_CLAIM_SECS: i64 = 120;

impl Door for Eadrese {
    const KIND: ChannelKind = ChannelKind::EAdrese;
    const WORDS: Words = Words {
        lv: "e-adrese",
        en: "e-adrese (official electronic address)",
    };
    type Config = EadreseConfig;
    type Meta = EadreseMeta;

    fn build(cfg: EadreseConfig, ctx: DoorContext) -> Result<Self, ChannelError> {
        if let Some((sub, unit)) = cfg
            .sub_addresses
            .iter()
            .find(|(_, u)| !ctx.site.units.contains(*u))
        {
            return Err(ChannelError {
                channel: cfg.id.clone(),
                message: format!("sub_addresses.{sub:?}: unit {unit:?} is not in units.toml"),
            });
        }
        let client = cfg.client()?;
        Ok(Self { cfg, ctx, client })
    }

    /// Always a replier: answers go back through e-adrese;
    /// acknowledgements only when `acknowledge` (the item then names its
    /// `reply_to`). Upkeep when `directory_sync_minutes` is set.
    fn sinks(cfg: &EadreseConfig, sinks: &SinkContext) -> Result<DoorSinks, ChannelError> {
        let font = PrintFont::load(&sinks.settings.print.font).map_err(|e| ChannelError {
            channel: cfg.id.clone(),
            message: format!("answers carry a letter PDF: {e}"),
        })?;
        let sink = Arc::new(EadreseSink {
            cfg: cfg.clone(),
            client: cfg.client()?,
            registry: sinks.registry.clone(),
            rules: sinks.rules.clone(),
            blobs: sinks.blobs.clone(),
            print: sinks.settings.print.clone(),
            font,
        });
        Ok(DoorSinks {
            replier: Some(sink.clone()),
            upkeep: (cfg.directory_sync_minutes > 0).then_some(sink as Arc<dyn Upkeep>),
        })
    }
}

impl Eadrese {
    fn error(&self, message: impl std::fmt::Display) -> ChannelError {
        ChannelError {
            channel: self.cfg.id.clone(),
            message: message.to_string(),
        }
    }

    /// One pass over the message list; the number of messages handed on.
    async fn poll(&self) -> Result<usize, DivError> {
        let ids = self.client.message_list().await?;
        let mut handed = 0;
        for id in ids {
            let span = tracing::info_span!("eadrese_message", channel = %self.cfg.id, div_id = %id);
            match self.take(&id).instrument(span.clone()).await {
                Ok(true) => handed += 1,
                Ok(false) => {}
                Err(e) if e.is_transient() => return Err(e),
                // Not confirmed: served again and tried at the next poll.
                Err(e) => span.in_scope(|| tracing::warn!("message not taken: {e}")),
            }
        }
        Ok(handed)
    }

    /// Fetches, stores, publishes and then confirms one message; false when
    /// it was left for the next poll (a blob or the bus failed).
    async fn take(&self, div_id: &str) -> Result<bool, DivError> {
        let inbound = self.client.message(div_id, self.cfg.max_file_bytes).await?;
        let msg = match self.message(&inbound).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("not handed on, tried again at the next poll: {e}");
                return Ok(false);
            }
        };
        if let Err(e) = self.ctx.publisher.publish(&msg).await {
            tracing::warn!("not published, tried again at the next poll: {e}");
            return Ok(false);
        }
        self.client.confirm(div_id).await?;
        tracing::info!(message_id = %msg.id, "e-adrese message handed on and confirmed");
        Ok(true)
    }

    /// The intake message of an inbound message, its files stored as blobs.
    async fn message(&self, m: &InboundMessage) -> Result<IntakeMessage, crate::blobs::BlobError> {
        let mut msg = IntakeMessage::new(
            ChannelRef {
                kind: ChannelKind::EAdrese,
                instance: self.cfg.id.clone(),
            },
            format!("e_adrese:{}", m.message_id),
            m.description.clone(),
        );
        msg.sender.e_address = Some(m.sender_address.clone());
        msg.subject = Some(m.title.clone()).filter(|t| !t.is_empty());
        msg.language = Some("lv".into());
        if m.sender_verified {
            msg.formal_status = Some(FormalStatus::AuthenticatedByStatePortal);
        }
        if !m.unreadable.is_empty() {
            let files: Vec<String> = m
                .unreadable
                .iter()
                .map(|(name, e)| format!("{}: {e}", display_filename(name)))
                .collect();
            msg.review_reason = Some(format!(
                "e-adrese files that could not be opened: {}",
                files.join("; ")
            ));
        }
        for f in &m.files {
            let stored = self.ctx.blobs.put(&f.content).await?;
            msg.attachments.push(AttachmentRef {
                sha256: stored.sha256,
                filename: display_filename(&f.name),
                content_type: f.mime_type.clone(),
                size: stored.size,
            });
        }
        let sub_address = m
            .recipients
            .iter()
            .find(|r| self.cfg.sub_addresses.contains_key(*r));
        let unit = sub_address.and_then(|s| self.cfg.sub_addresses.get(s));
        msg.set_meta(&EadreseMeta {
            message_id: m.message_id.clone(),
            recipients: m.recipients.clone(),
            sub_address: sub_address.cloned(),
            unit: unit.cloned(),
            sender_ref: m.sender_ref.clone(),
            document_date: m.document_date.clone(),
            reply_to: self.cfg.acknowledge.then(|| m.sender_address.clone()),
            no_reply: (!self.cfg.acknowledge)
                .then(|| "the channel sends no acknowledgements".to_string()),
            other: Other::new(),
        });
        Ok(msg)
    }

    async fn poll_claimed(&self) -> Result<(), ChannelError> {
        let state = &self.ctx.state;
        let Some(lease) = state
            .claim("eadrese-poll", "", POLL_CLAIM_SECS)
            .await
            .map_err(|e| self.error(e))?
        else {
            return Ok(());
        };
        let renewal = state.renewal(&lease, POLL_CLAIM_SECS);
        let result = self.poll().await;
        renewal.stop();
        let outcome = match &result {
            Ok(n) => format!("{n} message(s) at {}", Utc::now()),
            Err(e) => format!("failed at {}: {e}", Utc::now()),
        };
        if let Err(e) = self.ctx.state.complete(&lease, &outcome).await {
            tracing::warn!(channel = %self.cfg.id, "e-adrese poll claim: {e}");
        }
        result.map(|_| ()).map_err(|e| self.error(e))
    }
}

#[async_trait]
impl Channel for Eadrese {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::EAdrese
    }

    async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), ChannelError> {
        let every = Duration::from_secs(self.cfg.poll_seconds);
        loop {
            if let Err(e) = self.poll_claimed().await {
                // Down or refusing: logged, tried again at the next poll.
                tracing::warn!("{e}");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

impl EadreseSink {
    /// An answer as a sent document: its text, and its document (the signed
    /// document uploaded, else the letter PDF) as the one file, as by e-mail.
    async fn answer_outbound(
        &self,
        r: &PendingReply,
        answer_id: &str,
    ) -> Result<Outbound, ReplyError> {
        let registry = &self.registry;
        let transient = |e: crate::registry::RegistryError| ReplyError::Transient(e.to_string());
        let answer = registry
            .answer(answer_id)
            .await
            .map_err(transient)?
            .ok_or_else(|| ReplyError::Permanent(format!("answer {answer_id} is gone")))?;
        let item = registry
            .find(&r.item_id)
            .await
            .map_err(transient)?
            .ok_or_else(|| ReplyError::Permanent(format!("item {} is gone", r.item_id)))?;
        let msg = registry.item_message(&r.item_id).await.map_err(transient)?;
        let (name, content) = crate::answers::answer_document(
            &self.blobs,
            &self.font,
            &self.print,
            &item,
            &msg,
            &answer,
        )
        .await?;
        Ok(Outbound {
            recipient: r.address.clone(),
            title: format!(
                "Atbilde Nr. {} uz iesniegumu {}",
                answer.number, r.registration_number
            ),
            description: answer.body,
            sender_ref: answer.number,
            files: vec![OutboundFile {
                mime_type: crate::answers::document_mime(&name).to_string(),
                name,
                content,
            }],
        })
    }
}

#[async_trait]
impl Upkeep for EadreseSink {
    /// The addressee directory, refreshed when due (checked every poll).
    async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), ChannelError> {
        let every = Duration::from_secs(self.cfg.poll_seconds);
        let every_secs = i64::try_from(self.cfg.directory_sync_minutes * 60).unwrap_or(i64::MAX);
        loop {
            if let Err(e) = crate::eadrese::directory::sync_due(
                &self.client,
                &self.registry,
                &self.cfg.id,
                every_secs,
            )
            .await
            {
                tracing::warn!(channel = %self.cfg.id, "{e}");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

#[async_trait]
impl Replier for EadreseSink {
    /// The acknowledgement (registration number, deadline) to the sender's
    /// e-adrese; the send and the service's delivery confirmation are
    /// recorded, with the legal notification date (the second working day
    /// after sending).
    async fn reply(&self, r: &PendingReply) -> Result<ReplyOutcome, ReplyError> {
        let out = match &r.answer_id {
            Some(answer_id) => self.answer_outbound(r, answer_id).await?,
            None => {
                let due = r
                    .due
                    .as_deref()
                    .map(|d| format!(" Atbildes termiņš: {d}."))
                    .unwrap_or_default();
                Outbound {
                    recipient: r.address.clone(),
                    title: format!("Iesniegums reģistrēts: {}", r.registration_number),
                    description: format!(
                        "Jūsu iesniegums ir saņemts un reģistrēts ar numuru {}.{due}",
                        r.registration_number
                    ),
                    sender_ref: r.registration_number.clone(),
                    files: Vec::new(),
                }
            }
        };
        let failed = |e: DivError| {
            if e.is_transient() {
                ReplyError::Transient(e.to_string())
            } else {
                ReplyError::Permanent(e.to_string())
            }
        };
        let sent_at = Utc::now();
        let div_id = self.client.send(&out).await.map_err(failed)?;
        let notified_on = self
            .rules
            .load()
            .deadlines
            .working_days_after(crate::deadline::local_date(sent_at), 2);
        let registry = &self.registry;
        let recorded = registry
            .record_eadrese_sent(&r.item_id, &div_id, &r.address, sent_at, notified_on)
            .await;
        if let Err(e) = &recorded {
            tracing::warn!(item = %r.item_id, "e-adrese answer sent but not recorded: {e}");
        }
        let delivery = match self.client.server_confirmation(&div_id).await {
            Ok(Some(c)) => {
                if let Err(e) = registry
                    .record_eadrese_confirmation(&r.item_id, &c.status, c.delivered_at)
                    .await
                {
                    tracing::warn!(item = %r.item_id, "delivery confirmation not recorded: {e}");
                }
                Some(c.status)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(item = %r.item_id, "no delivery confirmation yet: {e}");
                None
            }
        };
        Ok(ReplyOutcome::Sent(serde_json::json!({
            "div_message_id": div_id,
            "sent_at": crate::registry::db_time(sent_at),
            "notified_on": notified_on.to_string(),
            "delivery": delivery,
        })))
    }
}

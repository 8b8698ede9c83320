//! Deadline upkeep, one background task: recomputes open deadlines whenever
//! the calendar or the legal terms change (and once at start, since the files
//! may have been edited while the daemon was down), and sends each unit its
//! daily digest when that is switched on.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Europe::Riga;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::config::DeadlineSettings;
use crate::deadline::{Calendar, Deadlines};
use crate::registry::{ItemSummary, Registry};
use crate::rules::watch::{ReloadStatus, SharedRules};

/// Why a digest was not sent; the claim is released and the next tick retries.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("digest for unit {unit}: address {address:?}: {source}")]
    Address {
        unit: String,
        address: String,
        source: lettre::address::AddressError,
    },
    #[error("digest for unit {unit}: {source}")]
    Build {
        unit: String,
        source: lettre::error::Error,
    },
    #[error(
        "digest for unit {unit}: SMTP: {source} (is deadlines.smtp_url right and the server up?)"
    )]
    Smtp {
        unit: String,
        source: lettre::transport::smtp::Error,
    },
    #[error("digest for unit {unit}: template: {source}")]
    Template { unit: String, source: askama::Error },
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

#[derive(Template)]
#[template(path = "digest.txt", escape = "none")]
struct DigestMail<'a> {
    unit_name: &'a str,
    today: String,
    horizon: String,
    overdue: &'a [ItemSummary],
    due_soon: &'a [ItemSummary],
}

/// The upkeep task's handles.
pub struct Keeper {
    pub registry: Registry,
    pub rules: SharedRules,
    pub settings: DeadlineSettings,
    pub status: tokio::sync::watch::Receiver<ReloadStatus>,
    /// How often the digest is checked.
    pub tick: Duration,
}

impl Keeper {
    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut in_force: Arc<Deadlines> = self.rules.load().deadlines.clone();
        let today = crate::deadline::local_date(Utc::now());
        if !in_force.covers(today) {
            tracing::warn!(
                year = %today.format("%Y"),
                "rules/calendar.toml is not checked for this year (checked_years): add its transfer order and ad-hoc holidays, deadlines use the yearly holidays only"
            );
        }
        self.recompute(&in_force, "daemon start").await;
        let mut ticker = tokio::time::interval(self.tick);
        let mut watching = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = self.status.changed(), if watching => {
                    if changed.is_err() {
                        // Rules are not watched: only the ticker is left.
                        watching = false;
                        continue;
                    }
                    let rules = self.rules.load_full();
                    if *rules.deadlines != *in_force {
                        in_force = rules.deadlines.clone();
                        let cause = format!("calendar or terms changed (rules version {})", rules.version);
                        self.recompute(&in_force, &cause).await;
                    }
                }
                _ = ticker.tick(), if self.settings.digest_enabled => {
                    self.send_digests(Utc::now()).await;
                }
            }
        }
    }

    async fn recompute(&self, deadlines: &Deadlines, cause: &str) {
        match self
            .registry
            .recompute_open_deadlines(deadlines, cause)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(moved = n, %cause, "open deadlines recomputed"),
            Err(e) => {
                tracing::error!(%cause, "open deadlines not recomputed (kept as they were): {e}")
            }
        }
    }

    /// Sends today's digests that are due and not yet sent by any instance.
    pub async fn send_digests(&self, now: DateTime<Utc>) {
        let rules = self.rules.load_full();
        let local = now.with_timezone(&Riga);
        let today = local.date_naive();
        let at =
            NaiveTime::parse_from_str(&self.settings.digest_at, "%H:%M").unwrap_or(NaiveTime::MIN);
        if !rules.deadlines.calendar.is_working_day(today) || local.time() < at {
            return;
        }
        let Some(url) = self.settings.smtp_url.as_ref() else {
            return;
        };
        let transport = match AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret()) {
            Ok(t) => t.timeout(Some(Duration::from_secs(30))).build(),
            Err(e) => {
                tracing::error!("digest not sent: deadlines.smtp_url: {e}");
                return;
            }
        };
        let horizon = rules
            .deadlines
            .working_days_after(today, self.settings.due_soon_working_days);
        for unit in rules.units.values().filter(|u| !u.external) {
            let Some(address) = unit.email.as_deref() else {
                continue;
            };
            let result = async {
                let due = self
                    .registry
                    .due_items(today, horizon, Some(&unit.id))
                    .await?;
                if due.overdue.is_empty() && due.due_soon.is_empty() {
                    return Ok(false);
                }
                let count = (due.overdue.len() + due.due_soon.len()) as i64;
                if !self.registry.claim_digest(today, &unit.id, count).await? {
                    return Ok(false);
                }
                let sent = self
                    .send_one(&transport, &unit.id, &unit.name, address, &due)
                    .await;
                if sent.is_err() {
                    self.registry.release_digest(today, &unit.id).await?;
                }
                sent.map(|()| true)
            }
            .await;
            match result {
                Ok(true) => tracing::info!(unit = %unit.id, "deadline digest sent"),
                Ok(false) => {}
                Err(e) => tracing::error!(unit = %unit.id, "{e}"),
            }
        }
    }

    async fn send_one(
        &self,
        transport: &AsyncSmtpTransport<Tokio1Executor>,
        unit: &str,
        unit_name: &str,
        address: &str,
        due: &crate::registry::deadlines::DueItems,
    ) -> Result<(), DigestError> {
        let to: Mailbox = address.parse().map_err(|source| DigestError::Address {
            unit: unit.into(),
            address: address.into(),
            source,
        })?;
        let from: Mailbox =
            self.settings
                .digest_from
                .parse()
                .map_err(|source| DigestError::Address {
                    unit: unit.into(),
                    address: self.settings.digest_from.clone(),
                    source,
                })?;
        let body = DigestMail {
            unit_name,
            today: due.today.to_string(),
            horizon: due.horizon.to_string(),
            overdue: &due.overdue,
            due_soon: &due.due_soon,
        }
        .render()
        .map_err(|source| DigestError::Template {
            unit: unit.into(),
            source,
        })?;
        let mail = Message::builder()
            .from(from)
            .to(to)
            .subject(format!(
                "Termiņi {}: {} nokavēti, {} drīz / deadlines: {} overdue, {} due soon",
                due.today,
                due.overdue.len(),
                due.due_soon.len(),
                due.overdue.len(),
                due.due_soon.len()
            ))
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            // 8bit keeps the Latvian text readable in the raw mail; every
            // relay worth using speaks 8BITMIME.
            .body(
                lettre::message::Body::new_with_encoding(
                    body,
                    lettre::message::header::ContentTransferEncoding::EightBit,
                )
                .map_err(|_| DigestError::Build {
                    unit: unit.into(),
                    source: lettre::error::Error::NonAsciiChars,
                })?,
            )
            .map_err(|source| DigestError::Build {
                unit: unit.into(),
                source,
            })?;
        // Our own mail is automatic: no auto-replies to it (RFC 3834).
        let mut mail = mail;
        mail.headers_mut()
            .insert_raw(lettre::message::header::HeaderValue::new(
                lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ));
        transport
            .send(mail)
            .await
            .map(|_| ())
            .map_err(|source| DigestError::Smtp {
                unit: unit.into(),
                source,
            })
    }
}

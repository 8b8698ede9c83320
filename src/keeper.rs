//! Deadline upkeep, one background task: recomputes open deadlines whenever
//! the calendar or the legal terms change (and once at start, since the files
//! may have been edited while the daemon was down), and sends each unit its
//! daily digest when that is switched on.
//!
//! With several daemons, each recompute pass and each digest runs under a
//! claim of the leased-work primitive (one daemon at a time); a pass is
//! recorded with the rule-set version it was done for, and a daemon finding
//! it done for its version does nothing.

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
use crate::registry::deadlines::Recompute;
use crate::registry::lease::NAMED;
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
    /// The unit's page on the desk.
    link: String,
}

/// How long a daemon's claim on sending one digest lasts (the SMTP send is
/// cut off after 30 s, well inside it).
const DIGEST_CLAIM_SECS: i64 = 120;

/// The upkeep task's handles.
pub struct Keeper {
    pub registry: Registry,
    pub rules: SharedRules,
    pub settings: DeadlineSettings,
    pub status: tokio::sync::watch::Receiver<ReloadStatus>,
    /// How often the digest is checked.
    pub tick: Duration,
    /// The daemon's public address: the digest links to the unit's page.
    pub public_url: String,
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
        let version = self.rules.load().version.clone();
        // A pass another daemon is running now is tried again at each tick.
        let mut pending = self
            .recompute(&in_force, &version, "daemon start")
            .await
            .then(|| (in_force.clone(), version, "daemon start".to_string()));
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
                        pending = self
                            .recompute(&in_force, &rules.version, &cause)
                            .await
                            .then(|| (in_force.clone(), rules.version.clone(), cause));
                    }
                }
                _ = ticker.tick() => {
                    if let Some((deadlines, version, cause)) = pending.take() {
                        pending = self
                            .recompute(&deadlines, &version, &cause)
                            .await
                            .then_some((deadlines, version, cause));
                    }
                    if self.settings.digest_enabled {
                        self.send_digests(Utc::now()).await;
                    }
                }
            }
        }
    }

    /// One recompute pass for `version`; true when it is still to be done
    /// (another daemon was running one, or the registry failed).
    async fn recompute(&self, deadlines: &Deadlines, version: &str, cause: &str) -> bool {
        match self
            .registry
            .recompute_for_version(deadlines, version, cause)
            .await
        {
            Ok(Recompute::Moved(0)) => false,
            Ok(Recompute::Moved(n)) => {
                tracing::info!(moved = n, %cause, "open deadlines recomputed");
                false
            }
            Ok(Recompute::AlreadyDone) => {
                tracing::debug!(%version, "open deadlines already recomputed for this version");
                false
            }
            Ok(Recompute::Busy) => {
                tracing::info!(%cause, "another daemon is recomputing open deadlines; tried again at the next tick");
                true
            }
            Err(e) => {
                tracing::error!(%cause, "open deadlines not recomputed (kept as they were, tried again at the next tick): {e}");
                true
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
                // The SMTP timeout (30 s) cuts a hung relay off well inside the claim.
                let Some(claim) = self
                    .registry
                    .claim_digest(today, &unit.id, DIGEST_CLAIM_SECS)
                    .await?
                else {
                    return Ok(false);
                };
                let sent = self
                    .send_one(&transport, &unit.id, &unit.name, address, &due)
                    .await;
                match sent {
                    Ok(()) => {
                        self.registry
                            .record_digest(&claim, today, &unit.id, count)
                            .await?;
                        Ok(true)
                    }
                    Err(e) => {
                        self.registry
                            .release(&NAMED, std::slice::from_ref(&claim))
                            .await?;
                        Err(e)
                    }
                }
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
            link: format!("{}/desk/unit", self.public_url.trim_end_matches('/')),
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

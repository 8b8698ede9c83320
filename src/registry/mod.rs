//! The registry: items, gap-free registration numbers, attachments, the
//! append-only audit log and the routing outbox, in PostgreSQL or SQLite
//! through one dialect-neutral schema (`migrations/`).
//!
//! Registration is one transaction: the duplicate check, the number, the
//! item, its attachments, the audit entry and the outbox row commit together
//! or not at all. The bus message is acknowledged only after that commit.

pub mod accounts;
pub mod api_clients;
pub mod archive;
pub mod claims;
pub mod consultations;
pub mod deadlines;
pub mod desk;
pub mod dms;
pub mod door_state;
pub mod duplicates;
pub mod eadrese;
pub mod lease;
pub mod listing;
pub mod mailboxes;
pub mod numbering;
pub mod opinions;
mod register;
pub use register::RegisterPolicy;
pub mod answers;
pub mod parked;
pub mod quarantine;
pub mod replies;
pub mod rulesets;
pub mod sms_pending;
mod stats;
pub mod units;

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use uuid::Uuid;

use crate::message::IntakeMessage;
use crate::rules::eval::Decision;
use crate::rules::{RuleSet, RuleSources};

/// Registry failures; each names the item where there is one.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("database {url_hint}: {source} (is the database running and the URL right?)")]
    Connect {
        url_hint: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error while handling {context}: {source}")]
    Query {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "item {item} could not be registered after {attempts} attempts (concurrent registrations kept colliding)"
    )]
    Contention { item: Uuid, attempts: u32 },
    /// A command that only reads or adds to a registry found none; only
    /// `pietura run` and `pietura migrate` create one.
    #[error(
        "no registry at {}: nothing was created. Run the command where the daemon's data is, or point to it with --config FILE (or PIETURA_CONFIG) setting data_dir or database.url; `pietura migrate` creates a new registry",
        .path.display()
    )]
    Missing { path: std::path::PathBuf },
    /// A claim ran out and another daemon claimed the row since: this
    /// daemon's outcome is refused (see [`lease`]).
    #[error("{what} {key}: claim {token} ran out and was taken over by another daemon")]
    LeaseLost {
        what: &'static str,
        key: String,
        token: i64,
    },
}

impl RegistryError {
    /// Another transaction registered the same key or number first.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, RegistryError::Query { source: sqlx::Error::Database(e), .. } if e.is_unique_violation())
    }

    /// Worth retrying (database down, busy, a lost race); false when the
    /// database refused the data itself, which no retry will change. Decided
    /// by the driver's error kind, so PostgreSQL and SQLite classify alike
    /// ([`refuses_the_data`]).
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Query {
                source: sqlx::Error::Database(e),
                ..
            } => !refuses_the_data(e.as_ref()),
            // The item's data could not be encoded for the database.
            RegistryError::Query {
                source: sqlx::Error::Encode(_),
                ..
            } => false,
            RegistryError::Migrate(_) | RegistryError::LeaseLost { .. } => false,
            _ => true,
        }
    }
}

/// Whether the database refused the data itself (a constraint, a value it
/// cannot take), which no retry changes; false for a unique violation (a
/// lost race, settled by looking again) and for everything about the
/// database's state (down, busy, locked, full).
///
/// The driver's [`sqlx::error::ErrorKind`] first (both drivers map their
/// codes to it); then PostgreSQL's SQLSTATE class (22 data exception, 23
/// integrity, 54 a limit such as an index row too large) or SQLite's primary
/// result code (19 CONSTRAINT: a trigger's `RAISE(ABORT)` and the rest, 18
/// TOOBIG, 20 MISMATCH, 25 RANGE) of its extended code.
pub fn refuses_the_data(e: &(dyn sqlx::error::DatabaseError + 'static)) -> bool {
    use sqlx::error::ErrorKind;
    match e.kind() {
        ErrorKind::UniqueViolation => return false,
        ErrorKind::ForeignKeyViolation
        | ErrorKind::NotNullViolation
        | ErrorKind::CheckViolation => {
            return true;
        }
        _ => {}
    }
    let code = e.code().unwrap_or_default();
    if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        const CONSTRAINT: i64 = 19;
        const TOOBIG: i64 = 18;
        const MISMATCH: i64 = 20;
        const RANGE: i64 = 25;
        let primary = code.parse::<i64>().map_or(0, |c| c & 0xff);
        return matches!(primary, CONSTRAINT | TOOBIG | MISMATCH | RANGE);
    }
    code.starts_with("22") || code.starts_with("23") || code.starts_with("54")
}

fn q(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> RegistryError {
    let context = context.into();
    move |source| RegistryError::Query { context, source }
}

/// The state an item is in after registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    /// A rule routed it to one of the municipality's units.
    Routed,
    /// Waiting for the records officer.
    Review,
    /// Outside the municipality's competence: to be forwarded.
    Forwarding,
    /// The records officer found it is spam or not a submission: kept, closed.
    Discarded,
    /// Registered while clamd could not be reached: unrouted until its
    /// malware scan ([`crate::malware`]).
    ScanPending,
}

impl ItemState {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Routed => "routed",
            ItemState::Review => "review",
            ItemState::Forwarding => "forwarding",
            ItemState::Discarded => "discarded",
            ItemState::ScanPending => "scan_pending",
        }
    }
}

/// An item as listed by the API and CLI.
#[derive(Debug, Clone, Serialize)]
pub struct ItemSummary {
    pub id: String,
    pub registration_number: String,
    pub state: String,
    pub channel_kind: String,
    pub channel_instance: String,
    pub received_at: String,
    pub registered_at: String,
    pub unit_id: Option<String>,
    pub service_id: Option<String>,
    pub rule_id: Option<String>,
    pub ruleset_version: String,
    pub review_reason: Option<String>,
    pub priority: String,
    pub tags: Vec<String>,
    /// The reply deadline (YYYY-MM-DD); none for items being forwarded.
    pub reply_due: Option<String>,
    /// The forwarding deadline, for items outside the municipality's competence.
    pub forward_due: Option<String>,
    /// `rules`, or the records officer who routed it; none while in review.
    pub routed_by: Option<String>,
    /// Set while the deadline is paused waiting for the submitter.
    pub paused_since: Option<String>,
    /// Set once the item was answered (or forwarded) and closed.
    pub closed_at: Option<String>,
    pub sender_name: Option<String>,
    pub sender_email: Option<String>,
    pub sender_phone: Option<String>,
    pub subject: Option<String>,
    /// The item this one follows up (a sender's reply to our acknowledgement),
    /// or that the records officer linked it to (same case).
    pub linked_item_id: Option<String>,
    /// E-mail: whether the sender is proven (`pass`, `fail`, `not_checked`);
    /// none for other channels.
    pub sender_authenticity: Option<String>,
    /// The case of the classification scheme (`cases.toml`) it is filed
    /// under; none: not classified yet.
    pub case_code: Option<String>,
    /// How it was submitted and signed ([`crate::message::FormalStatus`]'s
    /// name); none on items registered before it was recorded.
    pub formal_status: Option<String>,
    /// Bumped by every recorded action: an action names the revision it
    /// was decided on, so a concurrent change is a conflict, not a loss.
    pub revision: i64,
}

const SUMMARY_COLUMNS: &str = "i.id, i.registration_number, i.state, i.channel_kind, i.channel_instance, \
     i.received_at, i.registered_at, i.unit_id, i.service_id, i.rule_id, i.ruleset_version, \
     i.review_reason, i.priority, i.tags, i.reply_due, i.sender_name, i.sender_email, \
     i.sender_phone, i.subject, i.forward_due, i.routed_by, i.paused_since, i.closed_at, \
     i.linked_item_id, i.revision, i.sender_authenticity, i.case_code, i.formal_status";

impl ItemSummary {
    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        let tags: String = r.try_get("tags")?;
        Ok(Self {
            id: r.try_get("id")?,
            registration_number: r.try_get("registration_number")?,
            state: r.try_get("state")?,
            channel_kind: r.try_get("channel_kind")?,
            channel_instance: r.try_get("channel_instance")?,
            received_at: r.try_get("received_at")?,
            registered_at: r.try_get("registered_at")?,
            unit_id: r.try_get("unit_id")?,
            service_id: r.try_get("service_id")?,
            rule_id: r.try_get("rule_id")?,
            ruleset_version: r.try_get("ruleset_version")?,
            review_reason: r.try_get("review_reason")?,
            priority: r.try_get("priority")?,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            reply_due: r.try_get("reply_due")?,
            forward_due: r.try_get("forward_due")?,
            routed_by: r.try_get("routed_by")?,
            paused_since: r.try_get("paused_since")?,
            closed_at: r.try_get("closed_at")?,
            sender_name: r.try_get("sender_name")?,
            sender_email: r.try_get("sender_email")?,
            sender_phone: r.try_get("sender_phone")?,
            subject: r.try_get("subject")?,
            linked_item_id: r.try_get("linked_item_id")?,
            sender_authenticity: r.try_get("sender_authenticity")?,
            case_code: r.try_get("case_code")?,
            formal_status: r.try_get("formal_status")?,
            revision: r.try_get("revision")?,
        })
    }
}

/// What registering a message did.
#[derive(Debug, Clone)]
pub enum Registration {
    /// A new item with a new number.
    New(ItemSummary),
    /// The idempotency key was known: the existing item, nothing written but a receipt line.
    Duplicate(ItemSummary),
}

impl Registration {
    /// The item, new or existing.
    pub fn item(&self) -> &ItemSummary {
        match self {
            Registration::New(i) | Registration::Duplicate(i) => i,
        }
    }
}

/// A routed notice waiting in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: String,
    pub item_id: String,
    /// `unit:<id>` or `review`.
    pub destination: String,
    pub payload: String,
    pub attempts: i64,
    /// This daemon's claim on the entry.
    pub lease: lease::Lease,
}

/// The notice a unit (or the review desk) receives for a registered item.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct RoutedNotice {
    pub item_id: String,
    pub registration_number: String,
    pub state: String,
    pub unit_id: Option<String>,
    pub service_id: Option<String>,
    pub priority: String,
    pub tags: Vec<String>,
    pub channel: String,
    pub received_at: String,
    pub reply_due: Option<String>,
    #[serde(default)]
    pub forward_due: Option<String>,
    pub subject: Option<String>,
    pub review_reason: Option<String>,
}

impl RoutedNotice {
    /// The notice for an item as it stands.
    pub fn of(s: &ItemSummary) -> Self {
        RoutedNotice {
            item_id: s.id.clone(),
            registration_number: s.registration_number.clone(),
            state: s.state.clone(),
            unit_id: s.unit_id.clone(),
            service_id: s.service_id.clone(),
            priority: s.priority.clone(),
            tags: s.tags.clone(),
            channel: s.channel_kind.clone(),
            received_at: s.received_at.clone(),
            reply_due: s.reply_due.clone(),
            forward_due: s.forward_due.clone(),
            subject: s.subject.clone(),
            review_reason: s.review_reason.clone(),
        }
    }
}

/// `routed_by` of items a rule routed at registration.
pub const ROUTED_BY_RULES: &str = "rules";

impl ItemSummary {
    /// The deadline that binds the item now: forwarding, else reply.
    pub fn due(&self) -> Option<&str> {
        self.forward_due.as_deref().or(self.reply_due.as_deref())
    }
}

/// Filters for listing items.
#[derive(Debug, Clone, Default)]
pub struct ItemFilter {
    pub state: Option<String>,
    pub unit: Option<String>,
    pub limit: i64,
}

/// Formats a time for storage: fixed width, so text order is time order.
pub fn db_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Reads a time stored by [`db_time`].
pub fn parse_db_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// [`parse_db_time`] for a column that must hold a time: a decode error otherwise.
fn decode_db_time(s: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    parse_db_time(s)
        .ok_or_else(|| sqlx::Error::Decode(format!("time {s:?} is not RFC 3339").into()))
}

/// Reads a date column (deadlines: `YYYY-MM-DD`).
pub fn parse_db_day(s: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// The file of a `sqlite:` URL; None for other databases and in-memory SQLite.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest
        .strip_prefix("//")
        .unwrap_or(rest)
        .split('?')
        .next()
        .unwrap_or("");
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// The registry handle (cheap to clone).
#[derive(Debug, Clone)]
pub struct Registry {
    pool: AnyPool,
    sqlite: bool,
    /// Names this daemon in the leases it holds ([`lease`]).
    holder: Arc<str>,
    /// Rule-set versions known to be in `ruleset_versions`, so each is
    /// written once, not with every batch.
    stored_rulesets: Arc<Mutex<HashSet<String>>>,
}

impl Registry {
    /// Connects to `postgres://…` or `sqlite://…` (created if missing).
    pub async fn connect(url: &str, max_connections: Option<u32>) -> Result<Self, RegistryError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let url_hint = url.split('@').next_back().unwrap_or(url).to_string();
        if let Some(path) = sqlite_file(url)
            && let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            let _ = std::fs::create_dir_all(parent);
        }
        // SQLite has one writer; one pooled connection avoids lock-upgrade
        // failures between concurrent transactions.
        let max = if sqlite {
            1
        } else {
            max_connections.unwrap_or(10)
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(std::time::Duration::from_secs(30))
            // No reaping task: sqlx-core 0.9.0's loops over its idle count
            // without yielding, and that count wraps below zero for a moment
            // when a connection is taken while another is being returned
            // (`release` pushes before it counts), so the task can spin a
            // runtime thread for good (seen: `pietura api-client list` hung
            // at 100 % CPU; transact-rs/sqlx#3645, fixed upstream by #4289,
            // not yet released). Connections are checked before each use
            // (`test_before_acquire`), so one broken by a database restart
            // is replaced all the same.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect(url)
            .await
            .map_err(|source| RegistryError::Connect {
                url_hint: url_hint.clone(),
                source,
            })?;
        if sqlite {
            for pragma in [
                "PRAGMA journal_mode = WAL",
                "PRAGMA synchronous = FULL",
                "PRAGMA foreign_keys = ON",
            ] {
                sqlx::query(pragma).execute(&pool).await.map_err(|source| {
                    RegistryError::Connect {
                        url_hint: url_hint.clone(),
                        source,
                    }
                })?;
            }
        }
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "pietura".into());
        let holder = format!("{host}:{}:{}", std::process::id(), Uuid::now_v7());
        Ok(Self {
            pool,
            sqlite,
            holder: holder.into(),
            stored_rulesets: Arc::default(),
        })
    }

    /// Connects to a registry that must already exist: a SQLite file that
    /// is missing is an error naming it, and nothing is created (for the
    /// commands that read the registry or add to it). A server database
    /// exists or the connection fails.
    pub async fn connect_existing(
        url: &str,
        max_connections: Option<u32>,
    ) -> Result<Self, RegistryError> {
        if let Some(path) = sqlite_file(url)
            && !path.is_file()
        {
            return Err(RegistryError::Missing {
                path: std::path::absolute(&path).unwrap_or(path),
            });
        }
        Self::connect(url, max_connections).await
    }

    /// Applies the embedded migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), RegistryError> {
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        // The register's full-text index is each database's own; items
        // registered before it get their search words now, in batches.
        listing::prepare(self).await?;
        let indexed = listing::backfill(self).await?;
        if indexed > 0 {
            tracing::info!(
                items = indexed,
                "earlier items indexed for the register's search"
            );
        }
        Ok(())
    }

    /// The pool, for the embedded bus which shares the database.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// True when running on SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.sqlite
    }

    /// Readiness probe.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(q("readiness check"))
    }

    /// Registers a classified message, or recognises it as already registered.
    pub async fn register(
        &self,
        msg: &IntakeMessage,
        decision: &Decision,
        policy: &RegisterPolicy<'_>,
    ) -> Result<Registration, RegistryError> {
        const ATTEMPTS: u32 = 5;
        for _ in 0..ATTEMPTS {
            match self.try_register(msg, decision, policy).await {
                Err(RegistryError::Query {
                    source: sqlx::Error::Database(e),
                    ..
                }) if e.is_unique_violation() => {
                    // Another worker registered the same key first: loop to find it.
                    continue;
                }
                other => return other,
            }
        }
        Err(RegistryError::Contention {
            item: msg.id,
            attempts: ATTEMPTS,
        })
    }

    async fn try_register(
        &self,
        msg: &IntakeMessage,
        decision: &Decision,
        policy: &RegisterPolicy<'_>,
    ) -> Result<Registration, RegistryError> {
        let mut done = self.register_batch(&[(msg, decision)], policy).await?;
        done.pop().ok_or(RegistryError::Contention {
            item: msg.id,
            attempts: 1,
        })
    }

    /// Registers several classified messages in one transaction: one commit
    /// (one disk flush) for the lot, which is what lets the engine keep up
    /// with the broker. All or none: on any error nothing is written and the
    /// caller registers them one by one.
    pub async fn register_batch(
        &self,
        batch: &[(&IntakeMessage, &Decision)],
        policy: &RegisterPolicy<'_>,
    ) -> Result<Vec<Registration>, RegistryError> {
        let ctx = format!("batch of {} items", batch.len());
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        let rules = policy.rules;
        let new_version = !self.ruleset_stored(&rules.version);
        if new_version {
            self.store_ruleset_in(&mut tx, rules).await?;
        }
        let out = register::register_batch_in(&mut tx, batch, policy).await?;
        tx.commit().await.map_err(q(ctx))?;
        if new_version && let Ok(mut known) = self.stored_rulesets.lock() {
            known.insert(rules.version.clone());
        }
        Ok(out)
    }

    fn ruleset_stored(&self, version: &str) -> bool {
        self.stored_rulesets
            .lock()
            .map(|known| known.contains(version))
            .unwrap_or(false)
    }

    /// Writes a rule set's texts under its version, in the registering
    /// transaction, so no item ever names a version the registry lacks.
    async fn store_ruleset_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        rules: &RuleSet,
    ) -> Result<(), RegistryError> {
        let ctx = format!("rule set version {}", rules.version);
        let sources = serde_json::to_string(rules.sources.as_ref())
            .map_err(|e| q(ctx.clone())(sqlx::Error::Encode(Box::new(e))))?;
        sqlx::query(
            "INSERT INTO ruleset_versions (version, sources_json, first_used) VALUES ($1, $2, $3) \
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(rules.version.clone())
        .bind(sources)
        .bind(db_time(Utc::now()))
        .execute(&mut **tx)
        .await
        .map(|_| ())
        .map_err(q(ctx))
    }

    /// The rule texts of a version that registered items, if stored.
    pub async fn ruleset_sources(
        &self,
        version: &str,
    ) -> Result<Option<RuleSources>, RegistryError> {
        let ctx = format!("rule set version {version}");
        let row = sqlx::query("SELECT sources_json FROM ruleset_versions WHERE version = $1")
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(q(ctx.clone()))?;
        let Some(row) = row else { return Ok(None) };
        let json: String = row.try_get(0).map_err(q(ctx.clone()))?;
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| q(ctx)(sqlx::Error::Decode(Box::new(e))))
    }

    /// The message an item was registered from, as the channel sent it.
    pub async fn item_message(&self, item_id: &str) -> Result<IntakeMessage, RegistryError> {
        let ctx = format!("message of item {item_id}");
        let row = sqlx::query("SELECT message_json FROM items WHERE id = $1")
            .bind(item_id)
            .fetch_one(&self.pool)
            .await
            .map_err(q(ctx.clone()))?;
        let json: String = row.try_get(0).map_err(q(ctx.clone()))?;
        IntakeMessage::decode(json.as_bytes()).map_err(|e| q(ctx)(sqlx::Error::Decode(Box::new(e))))
    }

    /// The messages of several items in one query, by item id; an item
    /// whose stored message no longer decodes is left out (and logged).
    pub async fn item_messages(
        &self,
        item_ids: &[&str],
    ) -> Result<std::collections::HashMap<String, IntakeMessage>, RegistryError> {
        if item_ids.is_empty() {
            return Ok(Default::default());
        }
        let ctx = format!("messages of {} items", item_ids.len());
        let sql = format!(
            "SELECT id, message_json FROM items WHERE id IN ({})",
            register::numbered(1, item_ids.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in item_ids {
            query = query.bind(id.to_string());
        }
        let rows = query.fetch_all(&self.pool).await.map_err(q(ctx.clone()))?;
        let mut out = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get(0).map_err(q(ctx.clone()))?;
            let json: String = row.try_get(1).map_err(q(ctx.clone()))?;
            match IntakeMessage::decode(json.as_bytes()) {
                Ok(m) => {
                    out.insert(id, m);
                }
                Err(e) => tracing::error!(item = %id, "stored message does not decode: {e}"),
            }
        }
        Ok(out)
    }

    /// The item a bus message (first or repeated delivery) ended up in.
    pub async fn find_by_message(
        &self,
        message_id: &str,
    ) -> Result<Option<ItemSummary>, RegistryError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM received_messages r JOIN items i ON i.id = r.item_id \
             WHERE r.message_id = $1"
        )))
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q(format!("status of message {message_id}")))?;
        row.map(|r| ItemSummary::from_row(&r))
            .transpose()
            .map_err(q(format!("status of message {message_id}")))
    }

    /// An item by its id or its registration number.
    pub async fn find(&self, id_or_number: &str) -> Result<Option<ItemSummary>, RegistryError> {
        let ctx = format!("lookup of item {id_or_number}");
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM items i WHERE i.id = $1 OR i.registration_number = $1"
        )))
        .bind(id_or_number)
        .fetch_optional(&self.pool)
        .await
        .map_err(q(ctx.clone()))?;
        row.map(|r| ItemSummary::from_row(&r))
            .transpose()
            .map_err(q(ctx))
    }

    /// The item registered for a source's idempotency key.
    pub async fn find_by_key(&self, key: &str) -> Result<Option<ItemSummary>, RegistryError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM items i WHERE i.idempotency_key = $1"
        )))
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(q(format!("lookup of key {key}")))?;
        row.map(|r| ItemSummary::from_row(&r))
            .transpose()
            .map_err(q(format!("lookup of key {key}")))
    }

    /// Items newest first, filtered.
    pub async fn list(&self, f: &ItemFilter) -> Result<Vec<ItemSummary>, RegistryError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM items i \
             WHERE ($1 IS NULL OR i.state = $1) AND ($2 IS NULL OR i.unit_id = $2) \
             ORDER BY i.received_at DESC, i.id DESC LIMIT $3"
        )))
        .bind(&f.state)
        .bind(&f.unit)
        .bind(if f.limit > 0 { f.limit } else { 100 })
        .fetch_all(&self.pool)
        .await
        .map_err(q("item list"))?;
        rows.iter()
            .map(ItemSummary::from_row)
            .collect::<Result<_, _>>()
            .map_err(q("item list"))
    }

    /// Number of items (for tests and the benchmark).
    pub async fn count(&self) -> Result<i64, RegistryError> {
        sqlx::query("SELECT COUNT(*) FROM items")
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(q("item count"))
    }

    /// Claims up to `limit` outbox entries for this daemon for `ttl_secs`
    /// ([`lease::OUTBOX`]), oldest first: another daemon draining the same
    /// outbox takes other entries.
    pub async fn outbox_claim(
        &self,
        limit: i64,
        ttl_secs: i64,
    ) -> Result<Vec<OutboxEntry>, RegistryError> {
        let leases = self.claim(&lease::OUTBOX, None, limit, ttl_secs).await?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id, item_id, destination, payload, attempts FROM outbox WHERE id IN ({}) \
             ORDER BY id",
            register::numbered(1, leases.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for l in &leases {
            query = query.bind(l.key.clone());
        }
        let rows = query.fetch_all(&self.pool).await.map_err(q("outbox"))?;
        let tokens: std::collections::HashMap<&str, i64> =
            leases.iter().map(|l| (l.key.as_str(), l.token)).collect();
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let token = tokens.get(id.as_str()).copied().unwrap_or_default();
                Ok(OutboxEntry {
                    item_id: r.try_get("item_id")?,
                    destination: r.try_get("destination")?,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                    lease: lease::Lease {
                        key: id.clone(),
                        token,
                    },
                    id,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("outbox"))
    }

    /// Removes delivered outbox entries and notes each routing in the audit
    /// log, in one transaction. An entry whose claim was taken over by
    /// another daemon is left to it (refused by the fence, and logged).
    pub async fn outbox_delivered(&self, entries: &[&OutboxEntry]) -> Result<(), RegistryError> {
        let ctx = format!("outbox ({} delivered notices)", entries.len());
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        let now = db_time(Utc::now());
        let leases: Vec<lease::Lease> = entries.iter().map(|e| e.lease.clone()).collect();
        let held = lease::fence(&mut tx, &lease::OUTBOX, &leases).await?;
        if held.is_empty() {
            return tx.commit().await.map_err(q(ctx));
        }
        let sql = format!(
            "DELETE FROM outbox WHERE id IN ({}) RETURNING item_id, destination",
            register::numbered(1, held.len())
        );
        let mut delete = sqlx::query(sqlx::AssertSqlSafe(sql));
        for l in &held {
            delete = delete.bind(l.key.clone());
        }
        let gone = delete.fetch_all(&mut *tx).await.map_err(q(ctx.clone()))?;
        if !gone.is_empty() {
            let sql = register::multi_insert(
                "INSERT INTO audit_log (id, item_id, at, actor, action, detail)",
                gone.len(),
                6,
                "",
            );
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in &gone {
                let item_id: String = row.try_get(0).map_err(q(ctx.clone()))?;
                let destination: String = row.try_get(1).map_err(q(ctx.clone()))?;
                insert = insert
                    .bind(Uuid::now_v7().to_string())
                    .bind(item_id)
                    .bind(now.clone())
                    .bind("pietura")
                    .bind("published")
                    .bind(serde_json::json!({ "destination": destination }).to_string());
            }
            insert.execute(&mut *tx).await.map_err(q(ctx.clone()))?;
        }
        tx.commit().await.map_err(q(ctx))
    }

    /// Records a failed publish attempt and gives the claim back; the entry
    /// stays for the next try.
    pub async fn outbox_failed(&self, e: &OutboxEntry, error: &str) -> Result<(), RegistryError> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $3, lease_holder = NULL, \
             lease_until = NULL WHERE id = $1 AND lease_token = $2",
        )
        .bind(&e.id)
        .bind(e.lease.token)
        .bind(error)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(q(format!("item {} outbox {}", e.item_id, e.id)))
    }

    /// The audit history of one item, oldest first: (at, actor, action, detail).
    pub async fn audit_of(
        &self,
        item_id: &str,
    ) -> Result<Vec<(String, String, String, String)>, RegistryError> {
        let rows = sqlx::query(
            "SELECT at, actor, action, detail FROM audit_log WHERE item_id = $1 ORDER BY at, id",
        )
        .bind(item_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q(format!("audit of item {item_id}")))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q(format!("audit of item {item_id}")))
    }
}

/// One audit line, in the caller's transaction.
async fn insert_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    item_id: &str,
    actor: &str,
    action: &str,
    detail: &serde_json::Value,
    ctx: &str,
) -> Result<(), RegistryError> {
    sqlx::query(
        "INSERT INTO audit_log (id, item_id, at, actor, action, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(item_id.to_string())
    .bind(db_time(Utc::now()))
    .bind(actor.to_string())
    .bind(action.to_string())
    .bind(detail.to_string())
    .execute(&mut **tx)
    .await
    .map(|_| ())
    .map_err(q(ctx.to_string()))
}

impl FromStr for ItemState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "routed" => Ok(Self::Routed),
            "review" => Ok(Self::Review),
            "forwarding" => Ok(Self::Forwarding),
            "discarded" => Ok(Self::Discarded),
            other => Err(format!(
                "unknown state {other:?} (routed, review, forwarding, discarded)"
            )),
        }
    }
}

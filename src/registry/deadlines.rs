//! Deadline actions on registered items (extend, pause, resume, close), the
//! recomputation of open deadlines after a calendar or terms change, and the
//! lists of overdue and due-soon items per unit.
//!
//! Every action is one transaction: a guarded update of the item (it applies
//! only to the revision that was read) and its audit line. Two people acting
//! on one item at once: the second gets [`ActionError::Conflict`].

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::lease::{self, Lease};
use super::{
    ItemSummary, Registry, RegistryError, SUMMARY_COLUMNS, db_time, decode_db_time, insert_audit,
    parse_db_day, parse_db_time, q,
};
use crate::deadline::{DeadlineBasis, Deadlines, ExtensionError, local_date};

/// Why a deadline action was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("item {0} not found: check the id or registration number (`pietura items list`)")]
    NotFound(String),
    #[error("item {item}: {why}")]
    Conflict { item: String, why: String },
    #[error("item {item}: extension refused: {source}")]
    Extension {
        item: String,
        #[source]
        source: ExtensionError,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// The deadline state of one item, as read before an action.
pub(super) struct DeadlineRow {
    pub(super) id: String,
    pub(super) number: String,
    pub(super) forwarding: bool,
    pub(super) basis: DeadlineBasis,
    pub(super) reply_due: Option<String>,
    pub(super) forward_due: Option<String>,
    pub(super) paused_since: Option<String>,
    pub(super) closed_at: Option<String>,
    pub(super) revision: i64,
}

const DEADLINE_COLUMNS: &str = "id, registration_number, state, received_at, reply_working_days, \
     paused_working_days, extended_until, reply_due, forward_due, paused_since, closed_at, revision, \
     formal_status";

impl DeadlineRow {
    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        let received: String = r.try_get("received_at")?;
        let extended: Option<String> = r.try_get("extended_until")?;
        let own: Option<i64> = r.try_get("reply_working_days")?;
        let paused: i64 = r.try_get("paused_working_days")?;
        let state: String = r.try_get("state")?;
        Ok(Self {
            id: r.try_get("id")?,
            number: r.try_get("registration_number")?,
            forwarding: state == "forwarding",
            basis: DeadlineBasis {
                received_at: decode_db_time(&received)?,
                reply_working_days: own.and_then(|n| u32::try_from(n).ok()),
                paused_working_days: u32::try_from(paused).unwrap_or(0),
                extended_until: extended.as_deref().and_then(parse_db_day),
                formal_status: r
                    .try_get::<Option<String>, _>("formal_status")?
                    .as_deref()
                    .and_then(crate::message::FormalStatus::parse),
            },
            reply_due: r.try_get("reply_due")?,
            forward_due: r.try_get("forward_due")?,
            paused_since: r.try_get("paused_since")?,
            closed_at: r.try_get("closed_at")?,
            revision: r.try_get("revision")?,
        })
    }

    /// The deadlines this basis gives under `d`: (reply, forward).
    fn computed(&self, d: &Deadlines) -> (Option<String>, Option<String>) {
        if self.forwarding {
            (None, Some(d.forward_due(&self.basis).to_string()))
        } else {
            (d.legal_reply_due(&self.basis).map(|d| d.to_string()), None)
        }
    }

    pub(super) fn open(&self) -> Result<(), ActionError> {
        match &self.closed_at {
            Some(at) => Err(ActionError::Conflict {
                item: self.number.clone(),
                why: format!("closed at {at}; nothing more can be recorded on it"),
            }),
            None => Ok(()),
        }
    }
}

/// Applies `set` (SQL assignments, parameters from $3 on) to the item's
/// revision `revision` inside `tx`, bumping it; someone else's change in
/// between is a [`ActionError::Conflict`].
pub(super) async fn guarded_update(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    number: &str,
    revision: i64,
    set: &str,
    binds: Vec<Option<String>>,
    ctx: &str,
) -> Result<(), ActionError> {
    let mut update = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE items SET {set}, revision = revision + 1 WHERE id = $1 AND revision = $2"
    )))
    .bind(id.to_string())
    .bind(revision);
    for b in binds {
        update = update.bind(b);
    }
    let done = update
        .execute(&mut **tx)
        .await
        .map_err(q(ctx.to_string()))?;
    if done.rows_affected() == 0 {
        return Err(ActionError::Conflict {
            item: number.to_string(),
            why: "someone else changed it at the same moment; reload it and try again".into(),
        });
    }
    Ok(())
}

/// A recorded action inside `tx`: the guarded update, its audit line, and
/// the external DMS told the item changed.
pub(super) async fn record_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    row: &DeadlineRow,
    set: &str,
    binds: Vec<Option<String>>,
    actor: &str,
    action: &str,
    detail: &serde_json::Value,
) -> Result<(), ActionError> {
    let ctx = format!("{action} of item {}", row.number);
    guarded_update(tx, &row.id, &row.number, row.revision, set, binds, &ctx).await?;
    insert_audit(tx, &row.id, actor, action, detail, &ctx).await?;
    super::dms::mark_dms_stale(tx, &row.id, &ctx).await?;
    Ok(())
}

/// What closing an item with its reply records: (assignments, parameters, detail).
pub(super) fn close_parts(
    row: &DeadlineRow,
    reply_reference: Option<&str>,
    now: DateTime<Utc>,
) -> (&'static str, Vec<Option<String>>, serde_json::Value) {
    let due = row.forward_due.clone().or(row.reply_due.clone());
    let closed_on = local_date(now).to_string();
    let on_time = due.as_deref().is_none_or(|d| closed_on.as_str() <= d);
    (
        "closed_at = $3, reply_reference = $4, paused_since = NULL",
        vec![Some(db_time(now)), reply_reference.map(str::to_string)],
        serde_json::json!({
            "reply_reference": reply_reference, "due": due, "on_time": on_time,
        }),
    )
}

/// Open items whose deadline has passed or comes soon, for one unit or all.
#[derive(Debug, Clone, Serialize)]
pub struct DueItems {
    pub today: NaiveDate,
    /// The last day counted as "soon" (today plus the working-day horizon).
    pub horizon: NaiveDate,
    pub overdue: Vec<ItemSummary>,
    pub due_soon: Vec<ItemSummary>,
}

impl Registry {
    pub(super) async fn deadline_row(&self, item: &str) -> Result<DeadlineRow, ActionError> {
        let ctx = format!("deadline of item {item}");
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEADLINE_COLUMNS} FROM items WHERE id = $1 OR registration_number = $1"
        )))
        .bind(item)
        .fetch_optional(&self.pool)
        .await
        .map_err(q(ctx.clone()))?
        .ok_or_else(|| ActionError::NotFound(item.to_string()))?;
        Ok(DeadlineRow::from_row(&row).map_err(q(ctx))?)
    }

    /// Applies `set` (SQL assignments, parameters from $3 on) to the revision
    /// read, with its audit line, in one transaction.
    pub(super) async fn record_action(
        &self,
        row: &DeadlineRow,
        set: &str,
        binds: Vec<Option<String>>,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<ItemSummary, ActionError> {
        if actor.trim().is_empty() {
            return Err(ActionError::Invalid(format!(
                "item {}: say who records the {action} (actor)",
                row.number
            )));
        }
        let ctx = format!("{action} of item {}", row.number);
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        record_in(&mut tx, row, set, binds, actor, action, &detail).await?;
        tx.commit().await.map_err(q(ctx))?;
        tracing::info!(item = %row.id, number = %row.number, %actor, %action, %detail, "deadline action recorded");
        self.find(&row.id)
            .await?
            .ok_or_else(|| ActionError::NotFound(row.id.clone()))
    }

    /// Extends the reply deadline to `until` (default: the longest the law
    /// allows), with the reason the law asks for.
    pub async fn extend_deadline(
        &self,
        item: &str,
        until: Option<NaiveDate>,
        reason: &str,
        actor: &str,
        d: &Deadlines,
    ) -> Result<ItemSummary, ActionError> {
        let row = self.deadline_row(item).await?;
        row.open()?;
        if row.forwarding {
            return Err(ActionError::Conflict {
                item: row.number,
                why: "it is being forwarded; a forwarding term cannot be extended".into(),
            });
        }
        if reason.trim().is_empty() {
            return Err(ActionError::Invalid(format!(
                "item {}: an extension needs its reason (more information needed, other institutions asked, a large volume)",
                row.number
            )));
        }
        let basis = d
            .extend(&row.basis, until)
            .map_err(|source| ActionError::Extension {
                item: row.number.clone(),
                source,
            })?;
        let due = d.reply_due(&basis).to_string();
        let detail = serde_json::json!({
            "from": row.reply_due, "to": due, "reason": reason,
        });
        self.record_action(
            &row,
            "extended_until = $3, extension_reason = $4, reply_due = $5",
            vec![
                basis.extended_until.map(|u| u.to_string()),
                Some(reason.to_string()),
                Some(due),
            ],
            actor,
            "deadline_extended",
            detail,
        )
        .await
    }

    /// Pauses the deadline while the item waits for the submitter.
    pub async fn pause_deadline(
        &self,
        item: &str,
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<ItemSummary, ActionError> {
        let row = self.deadline_row(item).await?;
        row.open()?;
        if reason.trim().is_empty() {
            return Err(ActionError::Invalid(format!(
                "item {}: a pause needs its reason (what the submitter is asked for)",
                row.number
            )));
        }
        if let Some(since) = &row.paused_since {
            return Err(ActionError::Conflict {
                item: row.number,
                why: format!("already paused since {since}"),
            });
        }
        self.record_action(
            &row,
            "paused_since = $3",
            vec![Some(db_time(now))],
            actor,
            "deadline_paused",
            serde_json::json!({ "reason": reason }),
        )
        .await
    }

    /// Resumes a paused deadline: the working days it waited are added.
    pub async fn resume_deadline(
        &self,
        item: &str,
        actor: &str,
        now: DateTime<Utc>,
        d: &Deadlines,
    ) -> Result<ItemSummary, ActionError> {
        let row = self.deadline_row(item).await?;
        row.open()?;
        let Some(since) = row.paused_since.as_deref().and_then(parse_db_time) else {
            return Err(ActionError::Conflict {
                item: row.number,
                why: "its deadline is not paused".into(),
            });
        };
        let waited = d.working_days_between(local_date(since), local_date(now));
        let mut resumed = DeadlineRow {
            basis: DeadlineBasis {
                paused_working_days: row.basis.paused_working_days + waited,
                ..row.basis.clone()
            },
            ..row
        };
        let (reply, forward) = resumed.computed(d);
        let detail = serde_json::json!({
            "paused_since": resumed.paused_since, "working_days": waited,
            "reply_due": reply, "forward_due": forward,
        });
        resumed.paused_since = None;
        self.record_action(
            &resumed,
            "paused_since = NULL, paused_working_days = CAST($3 AS BIGINT), reply_due = $4, forward_due = $5",
            vec![
                Some(resumed.basis.paused_working_days.to_string()),
                reply,
                forward,
            ],
            actor,
            "deadline_resumed",
            detail,
        )
        .await
    }

    /// Closes an item with its reply (or its forwarding): the deadline is met
    /// or missed from here on.
    pub async fn close_item(
        &self,
        item: &str,
        reply_reference: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<ItemSummary, ActionError> {
        let row = self.deadline_row(item).await?;
        row.open()?;
        let (set, binds, detail) = close_parts(&row, reply_reference, now);
        self.record_action(&row, set, binds, actor, "closed", detail)
            .await
    }

    /// Recomputes the deadlines of every open item under `d` (after a calendar
    /// or terms change) and records each one that moved. Returns how many moved.
    pub async fn recompute_open_deadlines(
        &self,
        d: &Deadlines,
        cause: &str,
    ) -> Result<u64, RegistryError> {
        let ctx = "recomputing open deadlines";
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEADLINE_COLUMNS} FROM items WHERE closed_at IS NULL"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(q(ctx))?;
        let mut moved = 0;
        for chunk in rows.chunks(500) {
            let mut tx = self.pool.begin().await.map_err(q(ctx))?;
            for r in chunk {
                let row = DeadlineRow::from_row(r).map_err(q(ctx))?;
                let (reply, forward) = row.computed(d);
                if (&reply, &forward) == (&row.reply_due, &row.forward_due) {
                    continue;
                }
                let done = sqlx::query(
                    "UPDATE items SET reply_due = $3, forward_due = $4, revision = revision + 1 \
                     WHERE id = $1 AND revision = $2",
                )
                .bind(row.id.clone())
                .bind(row.revision)
                .bind(reply.clone())
                .bind(forward.clone())
                .execute(&mut *tx)
                .await
                .map_err(q(ctx))?;
                // An item acted on meanwhile keeps what that action computed.
                if done.rows_affected() == 0 {
                    continue;
                }
                let detail = serde_json::json!({
                    "cause": cause,
                    "reply_due": { "from": row.reply_due, "to": reply },
                    "forward_due": { "from": row.forward_due, "to": forward },
                });
                insert_audit(&mut tx, &row.id, "pietura", "deadline_moved", &detail, ctx).await?;
                super::dms::mark_dms_stale(&mut tx, &row.id, ctx).await?;
                moved += 1;
            }
            tx.commit().await.map_err(q(ctx))?;
        }
        Ok(moved)
    }

    /// Open, unpaused items overdue on `today` or due by `horizon`.
    pub async fn due_items(
        &self,
        today: NaiveDate,
        horizon: NaiveDate,
        unit: Option<&str>,
    ) -> Result<DueItems, RegistryError> {
        let ctx = "items due";
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM items i \
             WHERE i.closed_at IS NULL AND i.paused_since IS NULL \
             AND COALESCE(i.forward_due, i.reply_due) <= $1 AND ($2 IS NULL OR i.unit_id = $2) \
             ORDER BY COALESCE(i.forward_due, i.reply_due), i.received_at"
        )))
        .bind(horizon.to_string())
        .bind(unit)
        .fetch_all(&self.pool)
        .await
        .map_err(q(ctx))?;
        let today_text = today.to_string();
        let mut out = DueItems {
            today,
            horizon,
            overdue: Vec::new(),
            due_soon: Vec::new(),
        };
        for r in &rows {
            let item = ItemSummary::from_row(r).map_err(q(ctx))?;
            if item.due().is_some_and(|d| d < today_text.as_str()) {
                out.overdue.push(item);
            } else {
                out.due_soon.push(item);
            }
        }
        Ok(out)
    }
}

/// Open items of one unit (`""` for items without one), by deadline state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenCounts {
    pub unit: String,
    pub open: i64,
    pub overdue: i64,
    pub due_soon: i64,
    pub paused: i64,
    pub in_review: i64,
}

impl Registry {
    /// Open items per unit, for the gauges and the dashboard.
    pub async fn open_counts(
        &self,
        today: NaiveDate,
        horizon: NaiveDate,
    ) -> Result<Vec<OpenCounts>, RegistryError> {
        let ctx = "open item counts";
        let rows = sqlx::query(
            "SELECT COALESCE(unit_id, '') AS unit, COUNT(*) AS open, \
             SUM(CASE WHEN paused_since IS NULL AND COALESCE(forward_due, reply_due) < $1 THEN 1 ELSE 0 END) AS overdue, \
             SUM(CASE WHEN paused_since IS NULL AND COALESCE(forward_due, reply_due) >= $1 \
                      AND COALESCE(forward_due, reply_due) <= $2 THEN 1 ELSE 0 END) AS due_soon, \
             SUM(CASE WHEN paused_since IS NOT NULL THEN 1 ELSE 0 END) AS paused, \
             SUM(CASE WHEN state = 'review' THEN 1 ELSE 0 END) AS in_review \
             FROM items WHERE closed_at IS NULL GROUP BY COALESCE(unit_id, '') ORDER BY unit",
        )
        .bind(today.to_string())
        .bind(horizon.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(q(ctx))?;
        rows.iter()
            .map(|r| {
                Ok(OpenCounts {
                    unit: r.try_get("unit")?,
                    open: r.try_get("open")?,
                    overdue: r.try_get("overdue")?,
                    due_soon: r.try_get("due_soon")?,
                    paused: r.try_get("paused")?,
                    in_review: r.try_get("in_review")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q(ctx))
    }

    /// Whether the digest of `unit` for `day` was sent (by any daemon).
    pub async fn digest_sent(&self, day: NaiveDate, unit: &str) -> Result<bool, RegistryError> {
        let n: i64 =
            sqlx::query("SELECT COUNT(*) FROM digests_sent WHERE day = $1 AND unit_id = $2")
                .bind(day.to_string())
                .bind(unit)
                .fetch_one(&self.pool)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(q(format!("digest of unit {unit} for {day}")))?;
        Ok(n > 0)
    }

    /// Claims the sending of the digest of `unit` for `day` ([`lease::NAMED`]):
    /// None while another daemon sends it, or once it was sent.
    pub async fn claim_digest(
        &self,
        day: NaiveDate,
        unit: &str,
        ttl_secs: i64,
    ) -> Result<Option<Lease>, RegistryError> {
        if self.digest_sent(day, unit).await? {
            return Ok(None);
        }
        let Some(lease) = self
            .claim_named(&format!("digest:{day}:{unit}"), ttl_secs)
            .await?
        else {
            return Ok(None);
        };
        // Sent by another daemon between the look and the claim.
        if self.digest_sent(day, unit).await? {
            self.release(&lease::NAMED, std::slice::from_ref(&lease))
                .await?;
            return Ok(None);
        }
        Ok(Some(lease))
    }

    /// Records the digest claimed by `lease` as sent (and drops the claim's
    /// row). A claim taken over meanwhile is logged: the mail went out.
    pub async fn record_digest(
        &self,
        lease: &Lease,
        day: NaiveDate,
        unit: &str,
        items: i64,
    ) -> Result<(), RegistryError> {
        let ctx = format!("digest of unit {unit} for {day}");
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        if !lease::remove_in(&mut tx, &lease::NAMED, lease).await? {
            tracing::warn!(unit, %day, "digest sent after its claim ran out and was taken over: it may go twice");
        }
        sqlx::query(
            "INSERT INTO digests_sent (day, unit_id, sent_at, items) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (day, unit_id) DO NOTHING",
        )
        .bind(day.to_string())
        .bind(unit)
        .bind(db_time(Utc::now()))
        .bind(items)
        .execute(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        tx.commit().await.map_err(q(ctx))
    }

    /// Recomputes open deadlines under `d` for rule-set `version`, one
    /// daemon at a time (a claim of the named work `deadlines:recompute`,
    /// renewed while it runs), and only once per version: a daemon that
    /// finds the pass done for its version does nothing.
    pub async fn recompute_for_version(
        &self,
        d: &Deadlines,
        version: &str,
        cause: &str,
    ) -> Result<Recompute, RegistryError> {
        const TTL: i64 = 300;
        let Some(claim) = self.claim_named(RECOMPUTE_WORK, TTL).await? else {
            return Ok(Recompute::Busy);
        };
        let done = match self.named_state(RECOMPUTE_WORK).await {
            Ok(done) => done,
            Err(e) => {
                let _ = self
                    .release(&lease::NAMED, std::slice::from_ref(&claim))
                    .await;
                return Err(e);
            }
        };
        if done.as_deref() == Some(version) {
            self.complete_named(&claim, version).await?;
            return Ok(Recompute::AlreadyDone);
        }
        let renewal = lease::Renewal::start(self.clone(), &lease::NAMED, claim.clone(), TTL);
        let moved = self.recompute_open_deadlines(d, cause).await;
        renewal.stop();
        match moved {
            Ok(n) => {
                self.complete_named(&claim, version).await?;
                Ok(Recompute::Moved(n))
            }
            Err(e) => {
                let _ = self
                    .release(&lease::NAMED, std::slice::from_ref(&claim))
                    .await;
                Err(e)
            }
        }
    }
}

/// The named work ([`lease::NAMED`]) a recompute pass is claimed under.
pub const RECOMPUTE_WORK: &str = "deadlines:recompute";

/// What [`Registry::recompute_for_version`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recompute {
    /// Recomputed: this many deadlines moved.
    Moved(u64),
    /// The pass was done for this version already (by any daemon).
    AlreadyDone,
    /// Another daemon is recomputing now: try again later.
    Busy,
}

//! Registration of a batch of classified messages inside one transaction,
//! with a fixed number of statements per batch (not per item): the duplicate
//! check, one counter bump per number series, and one multi-row insert per
//! table. Numbers stay gap-free because the counters move in the same
//! transaction as the items.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, Utc};
use sqlx::Row;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use uuid::Uuid;

use super::numbering::Pattern;
use super::{
    ItemState, ItemSummary, ROUTED_BY_RULES, Registration, RegistryError, RoutedNotice,
    SUMMARY_COLUMNS, db_time, q,
};
use crate::deadline::DeadlineBasis;
use crate::message::IntakeMessage;
use crate::rules::RuleSet;
use crate::rules::eval::Decision;

/// How items are registered: numbers, deadlines, and whether an external
/// DMS registration is queued with each item.
pub struct RegisterPolicy<'a> {
    pub rules: &'a RuleSet,
    pub pattern: &'a Pattern,
    /// Number series of items no rule routed.
    pub unclassified_index: &'a str,
    /// The configured DMS connector (`mayan`, …): each new item gets a row
    /// in `dms_registrations` in the same transaction.
    pub dms_connector: Option<&'a str>,
}

impl RegisterPolicy<'_> {
    /// The number series (a unit's index) and register year of an item.
    fn counter_of(&self, msg: &IntakeMessage, decision: &Decision) -> (String, i64) {
        let series = decision
            .unit
            .as_ref()
            .and_then(|u| self.rules.units.get(u))
            .map(|u| u.index.as_str())
            .unwrap_or(self.unclassified_index);
        let year = i64::from(crate::deadline::local_date(msg.received_at).year());
        (series.to_string(), year)
    }

    fn state_of(&self, decision: &Decision) -> ItemState {
        let unit = decision.unit.as_ref().and_then(|u| self.rules.units.get(u));
        match (unit, &decision.review_reason) {
            (_, Some(_)) | (None, _) => ItemState::Review,
            (Some(u), None) if u.external => ItemState::Forwarding,
            (Some(_), None) => ItemState::Routed,
        }
    }
}

type AnyQuery<'q> = Query<'q, sqlx::Any, AnyArguments>;

/// `($1,$2,…),($n+1,…)` for `rows` rows of `cols` columns.
fn placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", cells.join(","))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `INSERT … VALUES (…),(…) tail` for `rows` rows of `cols` columns.
pub(super) fn multi_insert(head: &str, rows: usize, cols: usize, tail: &str) -> String {
    format!("{head} VALUES {} {tail}", placeholders(rows, cols))
}

/// `$first,$first+1,…` for `n` values, for an `IN (…)` list.
pub(super) fn numbered(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A new item, before it is written.
struct NewItem<'m> {
    msg: &'m IntakeMessage,
    decision: &'m Decision,
    series: String,
    year: i64,
    seq: i64,
    summary: ItemSummary,
    state: ItemState,
    /// The state the rules gave; differs from `state` while a scan is pending.
    intended: ItemState,
}

/// Registers `batch` in `tx`; the caller commits. Results are in batch order.
pub(super) async fn register_batch_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    batch: &[(&IntakeMessage, &Decision)],
    how: &RegisterPolicy<'_>,
) -> Result<Vec<Registration>, RegistryError> {
    let ctx = match batch {
        [(m, _)] => format!("item {} ({})", m.id, m.idempotency_key),
        _ => format!("batch of {} items", batch.len()),
    };
    let now = db_time(Utc::now());

    // 1. Keys registered before (redeliveries, double submits).
    let keys: Vec<&str> = batch
        .iter()
        .map(|(m, _)| m.idempotency_key.as_str())
        .collect();
    let sql = format!(
        "SELECT i.idempotency_key, {SUMMARY_COLUMNS} FROM items i WHERE i.idempotency_key IN ({})",
        numbered(1, keys.len())
    );
    let mut query: AnyQuery<'_> = sqlx::query(sqlx::AssertSqlSafe(sql));
    for k in &keys {
        query = query.bind(*k);
    }
    let rows = query.fetch_all(&mut **tx).await.map_err(q(ctx.clone()))?;
    let mut known: HashMap<String, ItemSummary> = HashMap::new();
    for row in rows {
        let key: String = row.try_get("idempotency_key").unwrap_or_default();
        let item = ItemSummary::from_row(&row).map_err(q(ctx.clone()))?;
        known.insert(key, item);
    }

    // 2. Which entries are new; a key twice in one batch is new once.
    let mut new_index: HashMap<&str, usize> = HashMap::new();
    let mut fresh: Vec<(usize, (String, i64))> = Vec::new();
    for (i, (m, d)) in batch.iter().enumerate() {
        if known.contains_key(&m.idempotency_key)
            || new_index.contains_key(m.idempotency_key.as_str())
        {
            continue;
        }
        new_index.insert(&m.idempotency_key, i);
        fresh.push((i, how.counter_of(m, d)));
    }

    // 3. Numbers: one bump per series, in one global order (no deadlocks
    //    between concurrent batches).
    let mut per_counter: BTreeMap<(String, i64), Vec<usize>> = BTreeMap::new();
    for (i, counter) in &fresh {
        per_counter.entry(counter.clone()).or_default().push(*i);
    }
    let mut seq_of: HashMap<usize, i64> = HashMap::new();
    if !per_counter.is_empty() {
        // One statement for all series; rows lock in the VALUES order.
        let sql = multi_insert(
            "INSERT INTO registration_counters (series, reg_year, last_seq)",
            per_counter.len(),
            3,
            "ON CONFLICT (series, reg_year) DO UPDATE \
             SET last_seq = registration_counters.last_seq + excluded.last_seq \
             RETURNING series, reg_year, last_seq",
        );
        let mut query: AnyQuery<'_> = sqlx::query(sqlx::AssertSqlSafe(sql));
        for ((series, year), members) in &per_counter {
            query = query
                .bind(series.clone())
                .bind(*year)
                .bind(members.len() as i64);
        }
        let rows = query.fetch_all(&mut **tx).await.map_err(q(ctx.clone()))?;
        for row in rows {
            let counter: (String, i64) = (
                row.try_get(0).map_err(q(ctx.clone()))?,
                row.try_get(1).map_err(q(ctx.clone()))?,
            );
            let last: i64 = row.try_get(2).map_err(q(ctx.clone()))?;
            let members = per_counter.get(&counter).map_or(&[][..], Vec::as_slice);
            let first = last - members.len() as i64 + 1;
            for (k, i) in members.iter().enumerate() {
                seq_of.insert(*i, first + k as i64);
            }
        }
    }

    let mut items: Vec<NewItem<'_>> = Vec::with_capacity(fresh.len());
    for (i, (series, year)) in fresh {
        let (msg, decision) = batch[i];
        let Some(seq) = seq_of.get(&i).copied() else {
            return Err(q(ctx)(sqlx::Error::Protocol(format!(
                "the database returned no counter for series {series}, year {year}"
            ))));
        };
        // Waiting for clamd: registered, routed once scanned.
        let intended = how.state_of(decision);
        let state = if msg.malware_state() == Some("pending") {
            ItemState::ScanPending
        } else {
            intended
        };
        let basis = DeadlineBasis {
            received_at: msg.received_at,
            reply_working_days: decision.reply_working_days,
            formal_status: Some(decision.formal_status),
            ..DeadlineBasis::default()
        };
        let deadlines = &how.rules.deadlines;
        let (reply_due, forward_due) = match state {
            ItemState::Forwarding => (None, Some(deadlines.forward_due(&basis))),
            _ => (deadlines.legal_reply_due(&basis), None),
        };
        let routed_by = matches!(state, ItemState::Routed | ItemState::Forwarding)
            .then(|| ROUTED_BY_RULES.to_string());
        let summary = ItemSummary {
            id: msg.id.to_string(),
            registration_number: how.pattern.render(&series, year, seq),
            state: state.as_str().into(),
            channel_kind: msg.channel.kind.as_str().into(),
            channel_instance: msg.channel.instance.clone(),
            received_at: db_time(msg.received_at),
            registered_at: now.clone(),
            unit_id: decision.unit.clone(),
            service_id: decision.service.clone(),
            rule_id: decision.rule_id.clone(),
            ruleset_version: decision.ruleset_version.clone(),
            review_reason: decision.review_reason.clone(),
            priority: decision.priority.as_str().into(),
            tags: decision.tags.iter().cloned().collect(),
            reply_due: reply_due.map(|d| d.to_string()),
            forward_due: forward_due.map(|d| d.to_string()),
            routed_by,
            paused_since: None,
            closed_at: None,
            sender_name: msg.sender.name.clone(),
            sender_email: msg.sender.email.clone(),
            sender_phone: msg.sender.phone.clone(),
            subject: msg.subject.clone(),
            linked_item_id: msg.follow_up_of().map(|f| f.item_id),
            sender_authenticity: msg
                .sender_authenticity
                .as_ref()
                .map(|a| a.verdict.as_str().to_string()),
            case_code: decision.case.clone(),
            formal_status: Some(decision.formal_status.as_str().to_string()),
            revision: 0,
        };
        items.push(NewItem {
            msg,
            decision,
            series,
            year,
            seq,
            summary,
            state,
            intended,
        });
    }

    if !items.is_empty() {
        insert_items(tx, &items, &ctx).await?;
        let words: Vec<(String, String)> = items
            .iter()
            .map(|n| (n.summary.id.clone(), super::listing::message_words(n.msg)))
            .collect();
        super::listing::insert_search_words(tx, &words, &ctx).await?;
        insert_attachments(tx, &items, &ctx).await?;
        insert_audit_and_outbox(tx, &items, &now, &ctx).await?;
        if let Some(connector) = how.dms_connector {
            insert_dms_registrations(tx, &items, connector, &now, &ctx).await?;
        }
    }

    // 4. Every delivery seen, new or repeated, so tracking ids resolve.
    let by_key: HashMap<&str, &ItemSummary> = items
        .iter()
        .map(|n| (n.msg.idempotency_key.as_str(), &n.summary))
        .collect();
    let mut out = Vec::with_capacity(batch.len());
    let mut seen: Vec<(String, String, i64)> = Vec::with_capacity(batch.len());
    for (i, (m, _)) in batch.iter().enumerate() {
        let key = m.idempotency_key.as_str();
        if new_index.get(key) == Some(&i) {
            let item = by_key.get(key).map(|s| (*s).clone());
            let Some(item) = item else { continue };
            seen.push((m.id.to_string(), item.id.clone(), 0));
            out.push(Registration::New(item));
        } else {
            let item = known
                .get(key)
                .cloned()
                .or_else(|| by_key.get(key).map(|s| (*s).clone()));
            let Some(item) = item else { continue };
            seen.push((m.id.to_string(), item.id.clone(), 1));
            out.push(Registration::Duplicate(item));
        }
    }
    let sql = multi_insert(
        "INSERT INTO received_messages (message_id, item_id, seen_at, duplicate)",
        seen.len(),
        4,
        "ON CONFLICT (message_id) DO NOTHING",
    );
    let mut query: AnyQuery<'_> = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (message_id, item_id, duplicate) in seen {
        query = query
            .bind(message_id)
            .bind(item_id)
            .bind(now.clone())
            .bind(duplicate);
    }
    query.execute(&mut **tx).await.map_err(q(ctx.clone()))?;
    Ok(out)
}

async fn insert_items(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    items: &[NewItem<'_>],
    ctx: &str,
) -> Result<(), RegistryError> {
    let sql = multi_insert(
        "INSERT INTO items (id, idempotency_key, registration_number, series, reg_year, reg_seq, \
         channel_kind, channel_instance, received_at, registered_at, state, unit_id, service_id, \
         rule_id, ruleset_version, review_reason, priority, tags, reply_due, sender_name, \
         sender_email, sender_phone, sender_address, subject, body, message_json, decision_json, \
         forward_due, reply_working_days, routed_by, routed_at, linked_item_id, sender_authenticity, \
         case_code, formal_status)",
        items.len(),
        35,
        "",
    );
    let mut query: AnyQuery<'_> = sqlx::query(sqlx::AssertSqlSafe(sql));
    for n in items {
        let (m, s) = (n.msg, &n.summary);
        query = query
            .bind(s.id.clone())
            .bind(m.idempotency_key.clone())
            .bind(s.registration_number.clone())
            .bind(n.series.clone())
            .bind(n.year)
            .bind(n.seq)
            .bind(s.channel_kind.clone())
            .bind(s.channel_instance.clone())
            .bind(s.received_at.clone())
            .bind(s.registered_at.clone())
            .bind(s.state.clone())
            .bind(s.unit_id.clone())
            .bind(s.service_id.clone())
            .bind(s.rule_id.clone())
            .bind(s.ruleset_version.clone())
            .bind(s.review_reason.clone())
            .bind(s.priority.clone())
            .bind(serde_json::to_string(&s.tags).unwrap_or_else(|_| "[]".into()))
            .bind(s.reply_due.clone())
            .bind(m.sender.name.clone())
            .bind(m.sender.email.clone())
            .bind(m.sender.phone.clone())
            .bind(m.sender.postal_address.clone())
            .bind(m.subject.clone())
            .bind(m.body.clone())
            .bind(serde_json::to_string(m).unwrap_or_default())
            .bind(serde_json::to_string(n.decision).unwrap_or_default())
            .bind(s.forward_due.clone())
            .bind(n.decision.reply_working_days.map(i64::from))
            .bind(s.routed_by.clone())
            .bind(s.routed_by.as_ref().map(|_| s.registered_at.clone()))
            .bind(s.linked_item_id.clone())
            .bind(s.sender_authenticity.clone())
            .bind(s.case_code.clone())
            .bind(s.formal_status.clone());
    }
    query
        .execute(&mut **tx)
        .await
        .map(|_| ())
        .map_err(q(ctx.to_string()))
}

async fn insert_attachments(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    items: &[NewItem<'_>],
    ctx: &str,
) -> Result<(), RegistryError> {
    let rows: Vec<(&str, usize, &crate::message::AttachmentRef)> = items
        .iter()
        .flat_map(|n| {
            n.msg
                .attachments
                .iter()
                .enumerate()
                .map(move |(i, a)| (n.summary.id.as_str(), i, a))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let sql = multi_insert(
        "INSERT INTO attachments (item_id, ordinal, sha256, filename, content_type, size)",
        rows.len(),
        6,
        "",
    );
    let mut query: AnyQuery<'_> = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (item_id, ordinal, a) in rows {
        query = query
            .bind(item_id.to_string())
            .bind(ordinal as i64)
            .bind(a.sha256.clone())
            .bind(a.filename.clone())
            .bind(a.content_type.clone())
            .bind(a.size as i64);
    }
    query
        .execute(&mut **tx)
        .await
        .map(|_| ())
        .map_err(q(ctx.to_string()))
}

/// The 'registered' audit line, the reply waiting for the channel's replier
/// (when the channel answers), and the routed notice waiting for the dispatcher.
async fn insert_audit_and_outbox(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    items: &[NewItem<'_>],
    now: &str,
    ctx: &str,
) -> Result<(), RegistryError> {
    let sql = multi_insert(
        "INSERT INTO audit_log (id, item_id, at, actor, action, detail)",
        items.len(),
        6,
        "",
    );
    let mut query: AnyQuery<'_> = sqlx::query(sqlx::AssertSqlSafe(sql));
    for n in items {
        let s = &n.summary;
        let detail = serde_json::json!({
            "registration_number": s.registration_number,
            "state": s.state,
            "unit": s.unit_id,
            "service": s.service_id,
            "rule": s.rule_id,
            "ruleset_version": s.ruleset_version,
            "review_reason": s.review_reason,
            "follow_up_of": s.linked_item_id,
            "case": s.case_code,
            "case_from": n.decision.case_from,
            "formal_status": s.formal_status,
        });
        query = query
            .bind(Uuid::now_v7().to_string())
            .bind(s.id.clone())
            .bind(now.to_string())
            .bind("pietura")
            .bind("registered")
            .bind(detail.to_string());
    }
    query.execute(&mut **tx).await.map_err(q(ctx.to_string()))?;
    // The item a follow-up answers shows it in its own history.
    for n in items {
        if let Some(original) = &n.summary.linked_item_id {
            let detail = serde_json::json!({
                "follow_up": n.summary.id,
                "registration_number": n.summary.registration_number,
            });
            super::insert_audit(tx, original, "pietura", "follow_up_received", &detail, ctx)
                .await?;
        }
    }

    let replies: Vec<(&str, &str, &str)> = items
        .iter()
        .filter_map(|n| {
            n.msg
                .reply_address()
                .map(|a| (n.summary.id.as_str(), n.msg.channel.instance.as_str(), a))
        })
        .collect();
    if !replies.is_empty() {
        let sql = multi_insert(
            "INSERT INTO replies (item_id, channel_instance, address, created_at, attempts, next_attempt_at)",
            replies.len(),
            6,
            "",
        );
        let mut query: AnyQuery<'_> = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (item, instance, address) in replies {
            query = query
                .bind(item.to_string())
                .bind(instance.to_string())
                .bind(address.to_string())
                .bind(now.to_string())
                .bind(0_i64)
                .bind(now.to_string());
        }
        query.execute(&mut **tx).await.map_err(q(ctx.to_string()))?;
    }

    // Items waiting for clamd get no notice yet: a scan row instead.
    let (pending, routed): (Vec<&NewItem<'_>>, Vec<&NewItem<'_>>) = items
        .iter()
        .partition(|n| n.state == ItemState::ScanPending);
    if !pending.is_empty() {
        let sql = multi_insert(
            "INSERT INTO malware_scans (item_id, intended_state, created_at)",
            pending.len(),
            3,
            "",
        );
        let mut query: AnyQuery<'_> = sqlx::query(sqlx::AssertSqlSafe(sql));
        for n in &pending {
            query = query
                .bind(n.summary.id.clone())
                .bind(n.intended.as_str().to_string())
                .bind(now.to_string());
        }
        query.execute(&mut **tx).await.map_err(q(ctx.to_string()))?;
    }
    if routed.is_empty() {
        return Ok(());
    }
    let sql = multi_insert(
        "INSERT INTO outbox (id, item_id, destination, payload, created_at, attempts)",
        routed.len(),
        6,
        "",
    );
    let mut query: AnyQuery<'_> = sqlx::query(sqlx::AssertSqlSafe(sql));
    for n in routed {
        let s = &n.summary;
        let notice = RoutedNotice::of(s);
        let destination = match (n.state, &s.unit_id) {
            (ItemState::Review, _) | (_, None) => "review".to_string(),
            (_, Some(u)) => format!("unit:{u}"),
        };
        query = query
            .bind(Uuid::now_v7().to_string())
            .bind(s.id.clone())
            .bind(destination)
            .bind(serde_json::to_string(&notice).unwrap_or_default())
            .bind(now.to_string())
            .bind(0_i64);
    }
    query
        .execute(&mut **tx)
        .await
        .map(|_| ())
        .map_err(q(ctx.to_string()))
}

/// The external DMS registration each new item waits for, due at once.
async fn insert_dms_registrations(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    items: &[NewItem<'_>],
    connector: &str,
    now: &str,
    ctx: &str,
) -> Result<(), RegistryError> {
    let sql = multi_insert(
        "INSERT INTO dms_registrations (item_id, connector, created_at, attempts, next_attempt_at)",
        items.len(),
        5,
        "",
    );
    let mut query: AnyQuery<'_> = sqlx::query(sqlx::AssertSqlSafe(sql));
    for n in items {
        query = query
            .bind(n.summary.id.clone())
            .bind(connector.to_string())
            .bind(now.to_string())
            .bind(0_i64)
            .bind(now.to_string());
    }
    query
        .execute(&mut **tx)
        .await
        .map(|_| ())
        .map_err(q(ctx.to_string()))
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_number_rows_in_sequence() {
        assert_eq!(placeholders(2, 3), "($1,$2,$3),($4,$5,$6)");
        assert_eq!(placeholders(1, 1), "($1)");
    }
}

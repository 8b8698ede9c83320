//! What the web desk stores: the records officer's decisions on items
//! (assign, re-route, forward, correct, link, discard, a unit's "not ours"),
//! the review queue, local accounts and their sessions, and the history of
//! rule edits made in the browser.
//!
//! Every decision is one transaction on the revision the officer saw: the
//! guarded update, the routed notice for the unit's queue (outbox), the
//! sender's notice where one is due, and the audit line with who decided.
//! A second officer deciding on the same revision gets a conflict.

use chrono::Utc;
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::deadlines::{ActionError, guarded_update};
use super::{
    ItemSummary, Registry, RegistryError, RoutedNotice, SUMMARY_COLUMNS, db_time, insert_audit, q,
};
use crate::rules::RuleSet;

/// A records officer's decision on one item.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Route an item waiting in review to a unit (and service), as a rule would.
    Assign {
        unit: String,
        service: Option<String>,
    },
    /// Send a routed item to another unit.
    Reroute {
        unit: String,
        service: Option<String>,
        reason: String,
    },
    /// Outside the municipality's competence: forward to the external
    /// institution `unit` (an `external = true` unit) and tell the sender.
    Forward { unit: String, note: String },
    /// Correct what the channel read wrongly.
    Correct {
        sender_name: Option<String>,
        subject: Option<String>,
    },
    /// Same case as another item (id or registration number).
    Link { other: String },
    /// Spam, or not a submission at all: kept and closed, never routed.
    Discard { spam: bool, note: String },
    /// A unit says the item is not theirs: back to the review queue.
    Return { unit: String, reason: String },
    /// File the item under a case of the classification scheme (`cases.toml`),
    /// or take its case away (`None`: not classified).
    Classify { case: Option<String> },
}

impl Decision {
    /// The audit log's name for it.
    pub fn action(&self) -> &'static str {
        match self {
            Decision::Assign { .. } => "assigned",
            Decision::Reroute { .. } => "rerouted",
            Decision::Forward { .. } => "forwarded",
            Decision::Correct { .. } => "corrected",
            Decision::Link { .. } => "linked",
            Decision::Discard { spam: true, .. } => "marked_spam",
            Decision::Discard { spam: false, .. } => "marked_not_submission",
            Decision::Return { .. } => "returned",
            Decision::Classify { .. } => "classified",
        }
    }
}

/// What the review queue is narrowed to.
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    pub channel: Option<String>,
    /// A reason's kind, as [`reason_kind`] names it.
    pub reason: Option<String>,
    /// Only items received at least this many days ago.
    pub min_age_days: Option<i64>,
}

impl ReviewFilter {
    /// Whether `item` (from [`Registry::review_queue`]) passes the filter.
    pub fn admits(&self, item: &ItemSummary) -> bool {
        let oldest = self
            .min_age_days
            .map(|d| db_time(Utc::now() - chrono::Duration::days(d)));
        self.channel
            .as_ref()
            .is_none_or(|c| &item.channel_kind == c)
            && self
                .reason
                .as_ref()
                .is_none_or(|r| &reason_kind(item.review_reason.as_deref()) == r)
            && oldest.is_none_or(|o| item.received_at <= o)
    }
}

/// The kind of a review reason, for filtering: the text before its first
/// `:` or `(` ("OCR confidence 41 % below 70 %" stays whole).
pub fn reason_kind(reason: Option<&str>) -> String {
    let r = reason.unwrap_or(crate::rules::eval::NO_RULE_REASON);
    r.split([':', '('])
        .next()
        .unwrap_or(r)
        .trim()
        .chars()
        .take(60)
        .collect()
}

/// A local account.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: String,
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub disabled: bool,
    /// Where the account signs in: `local`, `oidc` or `ldap`.
    pub source: String,
}

/// One saved or rolled-back rule edit.
#[derive(Debug, Clone, Serialize)]
pub struct RulesChange {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub file: Option<String>,
    pub from_version: String,
    pub to_version: String,
    pub note: String,
}

impl Registry {
    /// Applies an officer's decision to `item` as of `revision`.
    pub async fn decide(
        &self,
        item: &str,
        revision: i64,
        actor: &str,
        decision: &Decision,
        rules: &RuleSet,
    ) -> Result<ItemSummary, ActionError> {
        let row = self.deadline_row(item).await?;
        let current = self
            .find(&row.id)
            .await?
            .ok_or_else(|| ActionError::NotFound(item.to_string()))?;
        if current.revision != revision {
            return Err(ActionError::Conflict {
                item: row.number.clone(),
                why: format!(
                    "it changed since you opened it ({} by {}); reload it and decide again",
                    current.state,
                    current.routed_by.as_deref().unwrap_or("pietura")
                ),
            });
        }
        let number = row.number.clone();
        let unit_of = |id: &str| {
            rules.units.get(id).ok_or_else(|| {
                ActionError::Invalid(format!("item {number}: no unit {id:?} in units.toml"))
            })
        };
        let service_of =
            |unit: &str, service: &Option<String>| -> Result<Option<u32>, ActionError> {
                match service {
                    None => Ok(None),
                    Some(id) => match rules.services.get(id) {
                        Some(s) if s.unit == unit => Ok(s.reply_working_days),
                        Some(s) => Err(ActionError::Invalid(format!(
                            "item {number}: service {id:?} belongs to unit {:?}, not {unit:?}",
                            s.unit
                        ))),
                        None => Err(ActionError::Invalid(format!(
                            "item {number}: no service {id:?} in services.toml"
                        ))),
                    },
                }
            };
        let now = db_time(Utc::now());
        let d = &rules.deadlines;
        // (SET clause, its binds from $3, audit detail, notice for a unit, re-send the sender's answer)
        let (set, binds, detail, notify_unit, notify_sender): (
            &str,
            Vec<Option<String>>,
            serde_json::Value,
            bool,
            bool,
        ) = match decision {
            Decision::Assign { unit, service } | Decision::Reroute { unit, service, .. } => {
                row.open()?;
                let reroute = matches!(decision, Decision::Reroute { .. });
                match (reroute, current.state.as_str()) {
                    (false, "review") | (true, "routed") => {}
                    (false, state) => {
                        return Err(ActionError::Conflict {
                            item: number.clone(),
                            why: format!(
                                "it is {state}, not waiting for review; re-route it instead"
                            ),
                        });
                    }
                    (true, state) => {
                        return Err(ActionError::Conflict {
                            item: number.clone(),
                            why: format!("it is {state}; only a routed item can be re-routed"),
                        });
                    }
                }
                if unit_of(unit)?.external {
                    return Err(ActionError::Invalid(format!(
                        "item {number}: {unit} is an external institution; forward the item instead"
                    )));
                }
                if reroute && current.unit_id.as_deref() == Some(unit.as_str()) {
                    return Err(ActionError::Invalid(format!(
                        "item {number}: it is already with {unit}"
                    )));
                }
                let own_days = service_of(unit, service)?;
                let mut basis = row.basis.clone();
                basis.reply_working_days = own_days;
                let due = d.legal_reply_due(&basis).map(|d| d.to_string());
                let reason = match decision {
                    Decision::Reroute { reason, .. } => Some(reason.clone()),
                    _ => None,
                };
                (
                    "state = 'routed', unit_id = $3, service_id = $4, rule_id = NULL, \
                     review_reason = NULL, routed_by = $5, routed_at = $6, reply_due = $7, \
                     forward_due = NULL, reply_working_days = CAST($8 AS BIGINT)",
                    vec![
                        Some(unit.clone()),
                        service.clone(),
                        Some(actor.to_string()),
                        Some(now.clone()),
                        due.clone(),
                        own_days.map(|n| n.to_string()),
                    ],
                    serde_json::json!({
                        "from_unit": current.unit_id, "unit": unit, "service": service,
                        "reply_due": due, "reason": reason,
                    }),
                    true,
                    false,
                )
            }
            Decision::Forward { unit, note } => {
                row.open()?;
                if !unit_of(unit)?.external {
                    return Err(ActionError::Invalid(format!(
                        "item {number}: {unit} is one of our units; assign it instead of forwarding"
                    )));
                }
                let due = d.forward_due(&row.basis).to_string();
                (
                    "state = 'forwarding', unit_id = $3, service_id = NULL, rule_id = NULL, \
                     review_reason = NULL, routed_by = $4, routed_at = $5, reply_due = NULL, \
                     forward_due = $6",
                    vec![
                        Some(unit.clone()),
                        Some(actor.to_string()),
                        Some(now.clone()),
                        Some(due.clone()),
                    ],
                    serde_json::json!({
                        "from_unit": current.unit_id, "institution": unit,
                        "forward_due": due, "note": note,
                    }),
                    true,
                    true,
                )
            }
            Decision::Correct {
                sender_name,
                subject,
            } => {
                let clean = |v: &Option<String>| {
                    v.as_ref()
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                };
                let (name, subj) = (clean(sender_name), clean(subject));
                if name.is_none() && subj.is_none() {
                    return Err(ActionError::Invalid(format!(
                        "item {number}: give the sender's name or the subject to correct"
                    )));
                }
                (
                    "sender_name = COALESCE($3, sender_name), subject = COALESCE($4, subject)",
                    vec![name.clone(), subj.clone()],
                    serde_json::json!({
                        "sender_name": { "from": current.sender_name, "to": name },
                        "subject": { "from": current.subject, "to": subj },
                    }),
                    false,
                    false,
                )
            }
            Decision::Link { other } => {
                let target = self.find(other.trim()).await?.ok_or_else(|| {
                    ActionError::Invalid(format!("item {number}: no item {other:?} to link to"))
                })?;
                if target.id == current.id {
                    return Err(ActionError::Invalid(format!(
                        "item {number}: an item cannot be linked to itself"
                    )));
                }
                (
                    "linked_item_id = $3",
                    vec![Some(target.id.clone())],
                    serde_json::json!({
                        "linked_to": target.id, "registration_number": target.registration_number,
                    }),
                    false,
                    false,
                )
            }
            Decision::Discard { spam, note } => {
                row.open()?;
                let reason = if *spam {
                    "spam".to_string()
                } else {
                    format!("not a submission: {note}")
                };
                (
                    "state = 'discarded', review_reason = $3, closed_at = $4",
                    vec![Some(reason), Some(now.clone())],
                    serde_json::json!({ "spam": spam, "note": note, "state_was": current.state }),
                    false,
                    false,
                )
            }
            Decision::Return { unit, reason } => {
                row.open()?;
                if current.state != "routed" || current.unit_id.as_deref() != Some(unit.as_str()) {
                    return Err(ActionError::Conflict {
                        item: number.clone(),
                        why: format!(
                            "it is not routed to {unit} (state {}, unit {})",
                            current.state,
                            current.unit_id.as_deref().unwrap_or("none")
                        ),
                    });
                }
                if reason.trim().is_empty() {
                    return Err(ActionError::Invalid(format!(
                        "item {number}: say why it is not {unit}'s"
                    )));
                }
                (
                    "state = 'review', review_reason = $3, unit_id = NULL, service_id = NULL, \
                     routed_by = NULL, routed_at = NULL",
                    vec![Some(format!("returned by {unit}: {}", reason.trim()))],
                    serde_json::json!({ "unit": unit, "reason": reason }),
                    false,
                    false,
                )
            }
            Decision::Classify { case } => {
                if let Some(code) = case
                    && rules.cases.get(code).is_none()
                {
                    return Err(ActionError::Invalid(format!(
                        "item {number}: no case {code:?} in cases.toml"
                    )));
                }
                if *case == current.case_code {
                    return Err(ActionError::Invalid(format!(
                        "item {number}: it is filed under {} already",
                        case.as_deref().unwrap_or("no case")
                    )));
                }
                (
                    "case_code = $3",
                    vec![case.clone()],
                    serde_json::json!({
                        "case": { "from": current.case_code, "to": case },
                        "scheme_version": rules.cases.version,
                    }),
                    false,
                    false,
                )
            }
        };
        let action = decision.action();
        let ctx = format!("{action} of item {number}");
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        guarded_update(&mut tx, &row.id, &number, revision, set, binds, &ctx).await?;
        let after = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM items i WHERE i.id = $1"
        )))
        .bind(row.id.clone())
        .fetch_one(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        let after = ItemSummary::from_row(&after).map_err(q(ctx.clone()))?;
        if notify_unit && let Some(unit) = &after.unit_id {
            sqlx::query(
                "INSERT INTO outbox (id, item_id, destination, payload, created_at, attempts) \
                 VALUES ($1, $2, $3, $4, $5, 0)",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(after.id.clone())
            .bind(format!("unit:{unit}"))
            .bind(serde_json::to_string(&RoutedNotice::of(&after)).unwrap_or_default())
            .bind(now.clone())
            .execute(&mut *tx)
            .await
            .map_err(q(ctx.clone()))?;
        }
        let mut detail = detail;
        if notify_sender {
            // The answer row is re-armed: the channel's replier writes from
            // the item's state now (forwarded, with the forwarding term).
            let rearmed = sqlx::query(
                "UPDATE replies SET done_at = NULL, outcome = NULL, last_error = NULL, \
                 attempts = 0, next_attempt_at = $2 WHERE item_id = $1",
            )
            .bind(after.id.clone())
            .bind(now.clone())
            .execute(&mut *tx)
            .await
            .map_err(q(ctx.clone()))?;
            detail["sender_notified"] = serde_json::Value::Bool(rearmed.rows_affected() > 0);
        }
        insert_audit(&mut tx, &row.id, actor, action, &detail, &ctx).await?;
        if let Decision::Link { .. } = decision
            && let Some(other) = &after.linked_item_id
        {
            let back = serde_json::json!({
                "linked_from": after.id, "registration_number": after.registration_number,
            });
            insert_audit(&mut tx, other, actor, "linked_from", &back, &ctx).await?;
        }
        super::dms::mark_dms_stale(&mut tx, &row.id, &ctx).await?;
        tx.commit().await.map_err(q(ctx))?;
        tracing::info!(item = %row.id, %number, %actor, %action, %detail, "officer's decision recorded");
        Ok(after)
    }

    /// Items waiting for the records officer, oldest first (at most `limit`).
    pub async fn review_queue(&self, limit: i64) -> Result<Vec<ItemSummary>, RegistryError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM items i \
             WHERE i.state = 'review' AND i.closed_at IS NULL \
             ORDER BY i.received_at, i.id LIMIT $1"
        )))
        .bind(limit.clamp(1, 5000))
        .fetch_all(&self.pool)
        .await
        .map_err(q("review queue"))?;
        rows.iter()
            .map(ItemSummary::from_row)
            .collect::<Result<_, _>>()
            .map_err(q("review queue"))
    }

    /// The officers' routing decisions, newest first: (subject and body, unit).
    /// What the desk's suggestion learns from.
    pub async fn officer_decisions(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, String)>, RegistryError> {
        let rows = sqlx::query(
            "SELECT COALESCE(subject, ''), body, unit_id FROM items \
             WHERE routed_by IS NOT NULL AND routed_by <> 'rules' AND unit_id IS NOT NULL \
             ORDER BY routed_at DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("officers' decisions"))?;
        rows.iter()
            .map(|r| {
                let subject: String = r.try_get(0)?;
                let body: String = r.try_get(1)?;
                Ok((format!("{subject}\n{body}"), r.try_get(2)?))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("officers' decisions"))
    }

    /// Adds a local account (`pietura user add`); the username is unique.
    pub async fn add_user(
        &self,
        username: &str,
        display_name: &str,
        role: &str,
        password_hash: &str,
    ) -> Result<User, RegistryError> {
        let user = User {
            id: Uuid::now_v7().to_string(),
            username: username.to_string(),
            display_name: display_name.to_string(),
            role: role.to_string(),
            password_hash: Some(password_hash.to_string()),
            disabled: false,
            source: "local".into(),
        };
        sqlx::query(
            "INSERT INTO users (id, username, display_name, role, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user.id.clone())
        .bind(user.username.clone())
        .bind(user.display_name.clone())
        .bind(user.role.clone())
        .bind(password_hash.to_string())
        .bind(db_time(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(q(format!("new user {username}")))?;
        Ok(user)
    }

    /// Sets a new password (and role) on an existing local account.
    pub async fn update_user(
        &self,
        username: &str,
        role: &str,
        password_hash: &str,
    ) -> Result<bool, RegistryError> {
        sqlx::query(
            "UPDATE users SET role = $2, password_hash = $3, disabled_at = NULL \
             WHERE username = $1 AND source = 'local'",
        )
        .bind(username)
        .bind(role)
        .bind(password_hash)
        .execute(&self.pool)
        .await
        .map(|r| r.rows_affected() > 0)
        .map_err(q(format!("user {username}")))
    }

    /// An account by its username.
    pub async fn user(&self, username: &str) -> Result<Option<User>, RegistryError> {
        self.user_where("username", username).await
    }

    /// An account by its id (a session names it).
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, RegistryError> {
        self.user_where("id", id).await
    }

    async fn user_where(&self, column: &str, value: &str) -> Result<Option<User>, RegistryError> {
        let ctx = format!("user {value}");
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, username, display_name, role, password_hash, disabled_at, source FROM users \
             WHERE {column} = $1"
        )))
        .bind(value)
        .fetch_optional(&self.pool)
        .await
        .map_err(q(ctx.clone()))?;
        row.map(|r| {
            let disabled: Option<String> = r.try_get(5)?;
            Ok(User {
                id: r.try_get(0)?,
                username: r.try_get(1)?,
                display_name: r.try_get(2)?,
                role: r.try_get(3)?,
                password_hash: r.try_get(4)?,
                disabled: disabled.is_some(),
                source: r.try_get(6)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| q(ctx)(e))
    }

    /// A web session's stored data, if it has not expired.
    pub async fn web_session(&self, id: &str) -> Result<Option<String>, RegistryError> {
        let row = sqlx::query("SELECT data FROM web_sessions WHERE id = $1 AND expires_at > $2")
            .bind(id)
            .bind(db_time(Utc::now()))
            .fetch_optional(&self.pool)
            .await
            .map_err(q("web session"))?;
        row.map(|r| r.try_get(0))
            .transpose()
            .map_err(q("web session"))
    }

    /// Writes a web session (insert or replace) and drops expired ones.
    pub async fn save_web_session(
        &self,
        id: &str,
        data: &str,
        expires_at: chrono::DateTime<Utc>,
    ) -> Result<(), RegistryError> {
        let now = db_time(Utc::now());
        sqlx::query(
            "INSERT INTO web_sessions (id, data, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
        )
        .bind(id)
        .bind(data)
        .bind(db_time(expires_at))
        .execute(&self.pool)
        .await
        .map_err(q("web session"))?;
        sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(q("expired web sessions"))
    }

    /// Writes a new web session; false when the id is taken already.
    pub async fn create_web_session(
        &self,
        id: &str,
        data: &str,
        expires_at: chrono::DateTime<Utc>,
    ) -> Result<bool, RegistryError> {
        sqlx::query(
            "INSERT INTO web_sessions (id, data, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(data)
        .bind(db_time(expires_at))
        .execute(&self.pool)
        .await
        .map(|r| r.rows_affected() == 1)
        .map_err(q("new web session"))
    }

    /// Ends a web session.
    pub async fn delete_web_session(&self, id: &str) -> Result<(), RegistryError> {
        sqlx::query("DELETE FROM web_sessions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(q("web session"))
    }

    /// Rule edits, newest first.
    pub async fn rules_changes(&self, limit: i64) -> Result<Vec<RulesChange>, RegistryError> {
        let rows = sqlx::query(
            "SELECT at, actor, action, file, from_version, to_version, note FROM ruleset_changes \
             ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("rules history"))?;
        rows.iter()
            .map(|r| {
                Ok(RulesChange {
                    at: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    action: r.try_get(2)?,
                    file: r.try_get(3)?,
                    from_version: r.try_get(4)?,
                    to_version: r.try_get(5)?,
                    note: r.try_get(6)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("rules history"))
    }

    /// Per channel instance: items received, the last one's time, and how
    /// many wait in review, for the channels overview.
    pub async fn channel_activity(&self) -> Result<Vec<ChannelActivity>, RegistryError> {
        let since = db_time(Utc::now() - chrono::Duration::hours(24));
        let rows = sqlx::query(
            "SELECT channel_instance, MAX(channel_kind), COUNT(*), MAX(received_at), \
             SUM(CASE WHEN received_at >= $1 THEN 1 ELSE 0 END), \
             SUM(CASE WHEN state = 'review' AND closed_at IS NULL THEN 1 ELSE 0 END) \
             FROM items GROUP BY channel_instance",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(q("channel activity"))?;
        rows.iter()
            .map(|r| {
                Ok(ChannelActivity {
                    instance: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    items: r.try_get(2)?,
                    last_received: r.try_get(3)?,
                    last_24h: r.try_get(4)?,
                    in_review: r.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("channel activity"))
    }

    /// Routed notices not yet published to the unit and review queues.
    pub async fn outbox_backlog(&self) -> Result<i64, RegistryError> {
        sqlx::query("SELECT COUNT(*) FROM outbox")
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(q("outbox backlog"))
    }
}

/// What the registry knows of one channel's traffic.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelActivity {
    pub instance: String,
    pub kind: String,
    pub items: i64,
    pub last_received: Option<String>,
    pub last_24h: i64,
    pub in_review: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_kinds_group_reasons_by_their_head() {
        assert_eq!(reason_kind(None), "no routing rule matched");
        assert_eq!(
            reason_kind(Some("returned by buvvalde: nav mūsu")),
            "returned by buvvalde"
        );
        assert_eq!(
            reason_kind(Some("OCR confidence 41 % below 70 % (page 2)")),
            "OCR confidence 41 % below 70 %"
        );
    }
}

//! The records officer's review queue, the item page and the decisions
//! taken on it. A decision names the item's revision as the page showed
//! it; a colleague's decision in between is a conflict page, never a
//! second registration or a lost change.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Session;

use super::auth::{Role, Viewer, posting, viewer};
use super::i18n::Lang;
use super::original::Original;
use super::suggest::{Suggester, Suggestion};
use super::{Nav, html, status_page};
use crate::http::HttpState;
use crate::registry::ItemSummary;
use crate::registry::deadlines::ActionError;
use crate::registry::desk::{Decision, ReviewFilter, reason_kind};
use crate::rules::eval::RuleTrace;

/// Officers' decisions the suggestion learns from, and how many it needs.
const LEARN_FROM: i64 = 2000;
const MIN_DECISIONS: usize = 5;
/// Queue items read (the filter lists come from all of them) and shown.
const QUEUE_READ: i64 = 5000;
const QUEUE_SHOWN: usize = 500;

#[derive(Deserialize, Default)]
pub struct QueueQuery {
    channel: Option<String>,
    reason: Option<String>,
    /// Received at least this many days ago.
    age: Option<i64>,
    lang: Option<String>,
    /// A message after a decision (`assigned`, …) with its item's number.
    done: Option<String>,
    number: Option<String>,
}

/// One queue row.
pub struct QueueRow {
    pub item: ItemSummary,
    /// The reason and the channel kind in the desk's language.
    pub reason: String,
    pub channel: String,
    /// The formal status in words.
    pub formal: String,
    pub received: String,
    pub due: String,
    pub overdue: bool,
    pub suggestion: Option<Suggestion>,
    /// Linked to a possible duplicate ([`crate::enrich::duplicates`]).
    pub duplicate: bool,
}

#[derive(Template)]
#[template(path = "desk/queue.html")]
struct QueuePage {
    l: Lang,
    nav: Nav,
    rows: Vec<QueueRow>,
    /// (value, label) of the filters' choices.
    channels: Vec<(String, String)>,
    reasons: Vec<(String, String)>,
    channel: String,
    reason: String,
    age: String,
    done: Option<String>,
}

fn some(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Local time of a stored timestamp, to the minute.
pub fn local_time(stored: &str) -> String {
    crate::registry::parse_db_time(stored)
        .map(|t| {
            t.with_timezone(&chrono_tz::Europe::Riga)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| stored.to_string())
}

async fn suggester(s: &HttpState) -> Suggester {
    match s.registry.officer_decisions(LEARN_FROM).await {
        Ok(d) => Suggester::train(d.iter().map(|(t, u)| (t.as_str(), u.as_str()))),
        Err(e) => {
            tracing::warn!("desk suggestion unavailable: {e}");
            Suggester::default()
        }
    }
}

fn suggestion_for(sg: &Suggester, item: &ItemSummary, body: &str) -> Option<Suggestion> {
    let text = format!("{}\n{body}", item.subject.as_deref().unwrap_or_default());
    sg.suggest(&text, MIN_DECISIONS)
}

/// `GET /desk`: the review queue, oldest first.
pub async fn queue(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<QueueQuery>,
) -> Response {
    let v = match viewer(&s, &session, &headers, q.lang.as_deref()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    // A unit's member works on their units' page; the review queue is not theirs.
    if v.role == Role::Unit {
        return Redirect::to("/desk/unit").into_response();
    }
    let everything = match s.registry.review_queue(QUEUE_READ).await {
        Ok(items) => items,
        Err(e) => {
            tracing::error!("review queue: {e}");
            return status_page(
                StatusCode::SERVICE_UNAVAILABLE,
                v.lang,
                v.lang.t("error.unavailable_title"),
                v.lang.t("error.unavailable"),
            );
        }
    };
    let filter = ReviewFilter {
        channel: some(&q.channel),
        reason: some(&q.reason),
        min_age_days: q.age.filter(|a| *a > 0),
    };
    let mut channels: Vec<String> = everything.iter().map(|i| i.channel_kind.clone()).collect();
    channels.sort();
    channels.dedup();
    let channels = channels
        .into_iter()
        .map(|c| {
            let label = v.lang.channel_kind(&c);
            (c, label)
        })
        .collect();
    let mut reasons: Vec<String> = everything
        .iter()
        .map(|i| reason_kind(i.review_reason.as_deref()))
        .collect();
    reasons.sort();
    reasons.dedup();
    let reasons = reasons
        .into_iter()
        .map(|r| {
            let label = v.lang.reason(Some(&r));
            (r, label)
        })
        .collect();
    let items: Vec<ItemSummary> = everything
        .into_iter()
        .filter(|i| filter.admits(i))
        .take(QUEUE_SHOWN)
        .collect();
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let messages = s.registry.item_messages(&ids).await.unwrap_or_else(|e| {
        tracing::warn!("review queue: messages for the suggestion unavailable: {e}");
        Default::default()
    });
    let duplicates = s.registry.with_duplicates(&ids).await.unwrap_or_else(|e| {
        tracing::warn!("review queue: duplicate marks unavailable: {e}");
        Default::default()
    });
    let sg = suggester(&s).await;
    let today = crate::deadline::local_date(chrono::Utc::now()).to_string();
    let mut rows = Vec::with_capacity(items.len());
    for item in items {
        let body = messages.get(&item.id).map_or("", |m| m.body.as_str());
        let due = item.due().unwrap_or_default().to_string();
        rows.push(QueueRow {
            reason: v.lang.reason(item.review_reason.as_deref()),
            formal: v.lang.formal_status(item.formal_status.as_deref()),
            channel: v.lang.channel_kind(&item.channel_kind),
            received: local_time(&item.received_at),
            overdue: !due.is_empty() && due < today,
            due,
            suggestion: suggestion_for(&sg, &item, body),
            duplicate: duplicates.contains(&item.id),
            item,
        });
    }
    let done = match (some(&q.done), some(&q.number)) {
        (Some(action), Some(number)) => Some(format!(
            "{} {number}: {}",
            v.lang.t("item.title"),
            v.lang.t(&format!("history.{action}"))
        )),
        _ => None,
    };
    html(QueuePage {
        l: v.lang,
        nav: Nav::of(&v, "/desk"),
        rows,
        channels,
        reasons,
        channel: some(&q.channel).unwrap_or_default(),
        reason: some(&q.reason).unwrap_or_default(),
        age: q.age.map(|a| a.to_string()).unwrap_or_default(),
        done,
    })
}

/// A unit or service for the choice lists.
pub struct Choice {
    pub id: String,
    pub name: String,
    /// For services: their unit.
    pub unit: String,
}

/// One audit line on the item page.
pub struct HistoryLine {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

/// An item's audit log in words, oldest first (the item pages of the
/// records office and of the units).
pub async fn history(s: &HttpState, item_id: &str, l: Lang) -> Vec<HistoryLine> {
    s.registry
        .audit_of(item_id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(at, actor, action, detail)| HistoryLine {
            at: local_time(&at),
            actor,
            action: l.t(&format!("history.{action}")).to_string(),
            detail,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "desk/item.html")]
struct ItemPage {
    l: Lang,
    nav: Nav,
    item_id: String,
    state_label: String,
    item: ItemSummary,
    received: String,
    /// The channel kind and the review reason in the desk's language.
    channel: String,
    reason: Option<String>,
    unit_name: String,
    original: Original,
    attachments: Vec<(usize, String, String, u64)>,
    has_original_file: bool,
    trace: Vec<RuleTrace>,
    explanation: String,
    suggestion: Option<Suggestion>,
    suggestion_name: String,
    units: Vec<Choice>,
    services: Vec<Choice>,
    institutions: Vec<Choice>,
    history: Vec<HistoryLine>,
    can_decide: bool,
    open: bool,
    error: Option<String>,
    sender_address: String,
    /// Signed containers (.edoc…) with their files and signers, not verified.
    signed: Vec<crate::channels::email::edoc::ListedContainer>,
    /// E-mail: the verdict, in words, and SPF/DKIM/DMARC.
    authenticity: Option<(String, String, String)>,
    /// Items that may be the same letter, either way.
    duplicates: Vec<DuplicateView>,
    /// The item's case and formal status in words.
    case_label: String,
    formal_label: String,
    /// The scheme's cases to choose from (id: the code).
    cases: Vec<Choice>,
}

/// A possible duplicate on the item page: "Nr. … (e-pasts, 92 %)".
pub struct DuplicateView {
    pub id: String,
    pub number: String,
    /// The other item's channel kind in the desk's language.
    pub channel: String,
    pub percent: i64,
    /// Why it was linked, in words.
    pub reason: String,
}

/// `item_id`'s possible duplicates in the desk's language (none when the
/// registry cannot say now: the page still opens).
pub async fn duplicate_views(s: &HttpState, item_id: &str, l: Lang) -> Vec<DuplicateView> {
    let links = s.registry.duplicates_of(item_id).await.unwrap_or_else(|e| {
        tracing::warn!(item = %item_id, "desk: duplicates unavailable: {e}");
        Vec::new()
    });
    links
        .into_iter()
        .map(|d| DuplicateView {
            channel: l.channel_kind(&d.other_channel),
            reason: l.t(&format!("item.duplicate_{}", d.reason)).to_string(),
            id: d.other_id,
            number: d.other_number,
            percent: d.percent,
        })
        .collect()
}

pub(super) fn unit_name(s: &HttpState, l: Lang, id: Option<&str>) -> String {
    let rules = s.rules.load();
    match id.and_then(|id| rules.units.get(id)) {
        Some(u) => match (l, &u.name_en) {
            (Lang::En, Some(en)) => en.clone(),
            _ => u.name.clone(),
        },
        None => id.unwrap_or("—").to_string(),
    }
}

async fn render_item(s: &HttpState, v: &Viewer, item: &str, error: Option<String>) -> Response {
    let l = v.lang;
    let found = match s.registry.find(item).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            return status_page(
                StatusCode::NOT_FOUND,
                l,
                l.t("error.not_found_title"),
                l.t("error.not_found"),
            );
        }
        Err(e) => {
            tracing::error!(%item, "desk: {e}");
            return status_page(
                StatusCode::SERVICE_UNAVAILABLE,
                l,
                l.t("error.unavailable_title"),
                l.t("error.unavailable"),
            );
        }
    };
    let msg = match s.registry.item_message(&found.id).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(item = %found.id, "desk: stored message unreadable: {e}");
            return status_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                l,
                l.t("error.unavailable_title"),
                &e.to_string(),
            );
        }
    };
    let original = crate::channels::Kind::original_of(&msg, &s.blobs).await;
    let (trace, explanation) =
        match crate::explain::explain_message(&s.registry, &found, &msg).await {
            // Which rule set decided and what; the table below has the rest.
            Ok(d) => {
                let outcome = match (&d.rule_id, &d.unit) {
                    (Some(rule), Some(unit)) => format!(
                        "{} {rule} → {}",
                        l.t("explain.rule"),
                        unit_name(s, l, Some(unit))
                    ),
                    _ => l.reason(d.review_reason.as_deref()),
                };
                let summary = format!(
                    "{} {}: {outcome}",
                    l.t("explain.ruleset"),
                    d.ruleset_version
                );
                (d.trace, summary)
            }
            Err(e) => (Vec::new(), e.to_string()),
        };
    let history = history(s, &found.id, l).await;
    let duplicates = duplicate_views(s, &found.id, l).await;
    let rules = s.rules.load();
    let name = |l: Lang, n: &str, en: &Option<String>| match (l, en) {
        (Lang::En, Some(en)) => en.clone(),
        _ => n.to_string(),
    };
    let units = rules
        .units
        .values()
        .filter(|u| !u.external)
        .map(|u| Choice {
            id: u.id.clone(),
            name: name(l, &u.name, &u.name_en),
            unit: u.id.clone(),
        })
        .collect();
    let institutions = rules
        .units
        .values()
        .filter(|u| u.external)
        .map(|u| Choice {
            id: u.id.clone(),
            name: name(l, &u.name, &u.name_en),
            unit: u.id.clone(),
        })
        .collect();
    let services = rules
        .services
        .values()
        .map(|sv| Choice {
            id: sv.id.clone(),
            name: name(l, &sv.name, &sv.name_en),
            unit: sv.unit.clone(),
        })
        .collect();
    let cases = rules
        .cases
        .cases
        .values()
        .map(|c| Choice {
            id: c.code.clone(),
            name: c.title_in(l == Lang::En).to_string(),
            unit: c.unit.clone(),
        })
        .collect();
    let suggestion = suggestion_for(&suggester(s).await, &found, &msg.body);
    let suggestion_name = unit_name(s, l, suggestion.as_ref().map(|x| x.unit.as_str()));
    let open = found.closed_at.is_none() && found.state != "discarded";
    let has_original_file = crate::channels::Kind::original_file_of(&msg).is_some();
    let page = ItemPage {
        l,
        nav: Nav::of(v, &format!("/desk/items/{}", found.id)),
        received: local_time(&found.received_at),
        channel: l.channel_kind(&found.channel_kind),
        reason: found.review_reason.as_deref().map(|r| l.reason(Some(r))),
        unit_name: unit_name(s, l, found.unit_id.as_deref()),
        original,
        attachments: msg
            .attachments
            .iter()
            .enumerate()
            .map(|(i, a)| (i, a.filename.clone(), a.content_type.clone(), a.size))
            .collect(),
        has_original_file,
        trace,
        explanation,
        suggestion,
        suggestion_name,
        units,
        services,
        institutions,
        history,
        can_decide: v.role >= Role::Officer,
        open,
        sender_address: msg.sender.postal_address.clone().unwrap_or_default(),
        signed: crate::channels::email::edoc::listed_in(&msg),
        authenticity: msg.sender_authenticity.as_ref().map(|a| {
            let verdict = a.verdict.as_str();
            (
                verdict.to_string(),
                l.t(&format!("item.authenticity_{verdict}")).to_string(),
                format!(
                    "SPF {}, DKIM {}, DMARC {}; {}",
                    a.spf, a.dkim, a.dmarc, a.method
                ),
            )
        }),
        duplicates,
        case_label: l.case(&rules.cases, found.case_code.as_deref()),
        formal_label: l.formal_status(found.formal_status.as_deref()),
        cases,
        error: error.clone(),
        item_id: found.id.clone(),
        state_label: l.t(&format!("state.{}", found.state)).to_string(),
        item: found,
    };
    let status = if error.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    (status, html(page)).into_response()
}

/// Pages whose only parameter is `?lang=`.
#[derive(Deserialize)]
pub struct LangOnly {
    lang: Option<String>,
}

impl LangOnly {
    pub fn lang(&self) -> Option<&str> {
        self.lang.as_deref()
    }
}

/// `GET /desk/items/{id or number}`.
pub async fn item_page(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path(item): Path<String>,
    Query(q): Query<LangOnly>,
) -> Response {
    match viewer(&s, &session, &headers, q.lang.as_deref()).await {
        Ok(v) => match v.require(Role::ReadOnly) {
            Ok(()) => render_item(&s, &v, &item, None).await,
            Err(r) => r.into(),
        },
        Err(r) => r,
    }
}

/// The decision form: `action` names the decision, the rest its fields.
#[derive(Deserialize)]
pub struct DecisionForm {
    csrf: String,
    revision: i64,
    action: String,
    unit: Option<String>,
    service: Option<String>,
    institution: Option<String>,
    reason: Option<String>,
    note: Option<String>,
    sender_name: Option<String>,
    subject: Option<String>,
    other: Option<String>,
    /// `classify`: the case's code; empty takes the case away.
    case: Option<String>,
}

impl DecisionForm {
    fn decision(&self, l: Lang) -> Result<Decision, String> {
        let need = |v: &Option<String>, what: &str| {
            some(v).ok_or_else(|| format!("{}: {what}", l.t("error.missing")))
        };
        Ok(match self.action.as_str() {
            "assign" => Decision::Assign {
                unit: need(&self.unit, l.t("item.unit"))?,
                service: some(&self.service),
            },
            "reroute" => Decision::Reroute {
                unit: need(&self.unit, l.t("item.unit"))?,
                service: some(&self.service),
                reason: need(&self.reason, l.t("item.reason"))?,
            },
            "forward" => Decision::Forward {
                unit: need(&self.institution, l.t("item.institution"))?,
                note: some(&self.note).unwrap_or_default(),
            },
            "correct" => Decision::Correct {
                sender_name: some(&self.sender_name),
                subject: some(&self.subject),
            },
            "classify" => Decision::Classify {
                case: some(&self.case),
            },
            "link" => Decision::Link {
                other: need(&self.other, l.t("item.link_to"))?,
            },
            "spam" => Decision::Discard {
                spam: true,
                note: some(&self.note).unwrap_or_default(),
            },
            "not_submission" => Decision::Discard {
                spam: false,
                note: need(&self.note, l.t("item.note"))?,
            },
            other => return Err(format!("unknown action {other:?}")),
        })
    }
}

/// `POST /desk/items/{id}/decide`: records the decision; back to the queue
/// (the next item is one key away) or, on a problem, the item page with it.
pub async fn decide(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path(item): Path<String>,
    Form(f): Form<DecisionForm>,
) -> Response {
    let v = match posting(&s, &session, &headers, Role::Officer, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let decision = match f.decision(v.lang) {
        Ok(d) => d,
        Err(e) => return render_item(&s, &v, &item, Some(e)).await,
    };
    let rules = s.rules.load_full();
    match s
        .registry
        .decide(&item, f.revision, &v.actor(), &decision, &rules)
        .await
    {
        Ok(after) => {
            let back_to_item = matches!(
                decision,
                Decision::Correct { .. } | Decision::Link { .. } | Decision::Classify { .. }
            );
            if back_to_item {
                Redirect::to(&format!("/desk/items/{}", after.id)).into_response()
            } else {
                let number: String = percent_encoding::utf8_percent_encode(
                    &after.registration_number,
                    percent_encoding::NON_ALPHANUMERIC,
                )
                .to_string();
                Redirect::to(&format!("/desk?done={}&number={number}", decision.action()))
                    .into_response()
            }
        }
        Err(ActionError::Conflict { why, .. }) => {
            render_item(
                &s,
                &v,
                &item,
                Some(format!("{} {why}", v.lang.t("error.conflict"))),
            )
            .await
        }
        Err(
            e
            @ (ActionError::Invalid(_) | ActionError::NotFound(_) | ActionError::Extension { .. }),
        ) => render_item(&s, &v, &item, Some(e.to_string())).await,
        Err(ActionError::Registry(e)) => {
            tracing::error!(%item, "decision not recorded: {e}");
            status_page(
                StatusCode::SERVICE_UNAVAILABLE,
                v.lang,
                v.lang.t("error.unavailable_title"),
                v.lang.t("error.unavailable"),
            )
        }
    }
}

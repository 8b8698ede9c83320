//! A unit's desk: its members (role `unit`, [`crate::registry::units`]) see
//! the open items of their units only — overdue, due soon, paused, open,
//! highlighted — and work each one: assign it to a colleague, comment,
//! extend / pause / resume its deadline, return it to the records office
//! with a reason, and answer it ([`crate::answers`]). Every action is the
//! recorded action the API uses (`registry::deadlines`, `registry::desk`),
//! with the account on the audit log. An item of another unit is not found
//! (404) for a unit's member; officers and administrators reach every unit.

use askama::Template;
use axum::Form;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use tower_sessions::Session;

use super::auth::{Role, Viewer, posting, viewer_as};
use super::i18n::Lang;
use super::review::{HistoryLine, LangOnly};
use super::{Nav, html, status_page};
use crate::http::HttpState;
use crate::registry::ItemSummary;
use crate::registry::answers::{Answer, NewAnswer};
use crate::registry::deadlines::ActionError;
use crate::registry::desk::Decision;

/// The units the viewer works: their own for a unit's member, every unit
/// of the rules for the records office.
async fn units_of(s: &HttpState, v: &Viewer) -> Result<Vec<String>, Response> {
    if v.role > Role::Unit {
        return Ok(s.rules.load().units.keys().cloned().collect());
    }
    s.registry
        .units_of(&v.user.id)
        .await
        .map_err(|e| unavailable(v.lang, &e.to_string()))
}

fn unavailable(l: Lang, e: &str) -> Response {
    tracing::error!("unit desk: {e}");
    status_page(
        StatusCode::SERVICE_UNAVAILABLE,
        l,
        l.t("error.unavailable_title"),
        l.t("error.unavailable"),
    )
}

fn not_found(l: Lang) -> Response {
    status_page(
        StatusCode::NOT_FOUND,
        l,
        l.t("error.not_found_title"),
        l.t("error.not_found"),
    )
}

/// A unit's member, or the records office (officers, administrators), acts
/// on a unit's items; a read-only account only looks (403).
async fn actor_posting(
    s: &HttpState,
    session: &Session,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Viewer, Response> {
    let v = posting(s, session, headers, Role::Unit, csrf).await?;
    if v.role != Role::Unit {
        v.require(Role::Officer)?;
    }
    Ok(v)
}

/// The item, when it is one of the viewer's units'; else 404.
async fn reachable(s: &HttpState, v: &Viewer, item: &str) -> Result<ItemSummary, Response> {
    let found = s
        .registry
        .find(item)
        .await
        .map_err(|e| unavailable(v.lang, &e.to_string()))?
        .ok_or_else(|| not_found(v.lang))?;
    let units = units_of(s, v).await?;
    match &found.unit_id {
        Some(u) if v.role > Role::Unit || units.contains(u) => Ok(found),
        _ => Err(not_found(v.lang)),
    }
}

/// Where an open item's deadline stands: `overdue`, `due-soon`, `paused` or `open`.
fn standing(s: &HttpState, item: &ItemSummary) -> &'static str {
    let (today, horizon) = s.due_window(None);
    let due = item
        .due()
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    match due {
        _ if item.paused_since.is_some() => "paused",
        Some(d) if d < today => "overdue",
        Some(d) if d <= horizon => "due-soon",
        _ => "open",
    }
}

struct UnitRow {
    id: String,
    number: String,
    subject: String,
    received: String,
    due: String,
    unit: String,
    standing: &'static str,
    standing_label: String,
    assignee: String,
}

#[derive(Template)]
#[template(path = "desk/unit.html")]
struct UnitPage {
    l: Lang,
    nav: Nav,
    units: String,
    rows: Vec<UnitRow>,
    overdue: usize,
    due_soon: usize,
    paused: usize,
    open: usize,
}

/// `GET /desk/unit`: the open items of the viewer's units.
pub async fn unit_page(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<LangOnly>,
) -> Response {
    let v = match viewer_as(&s, &session, &headers, q.lang(), Role::Unit).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let units = match units_of(&s, &v).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let items = match s.registry.unit_open_items(&units).await {
        Ok(i) => i,
        Err(e) => return unavailable(v.lang, &e.to_string()),
    };
    let mut names = std::collections::HashMap::new();
    let mut rows = Vec::with_capacity(items.len());
    for it in items {
        let assignee = match &it.assignee {
            Some(id) => match names.get(id) {
                Some(n) => String::clone(n),
                None => {
                    let n = s
                        .registry
                        .user_by_id(id)
                        .await
                        .ok()
                        .flatten()
                        .map_or_else(|| id.clone(), |u| u.display_name);
                    names.insert(id.clone(), n.clone());
                    n
                }
            },
            None => String::new(),
        };
        let standing = standing(&s, &it.item);
        rows.push(UnitRow {
            standing,
            standing_label: v
                .lang
                .t(&format!("unit.{}", standing.replace('-', "_")))
                .to_string(),
            id: it.item.id.clone(),
            number: it.item.registration_number.clone(),
            subject: it.item.subject.clone().unwrap_or_default(),
            received: super::review::local_time(&it.item.received_at),
            due: it.item.due().unwrap_or("—").to_string(),
            unit: super::review::unit_name(&s, v.lang, it.item.unit_id.as_deref()),
            assignee,
        });
    }
    let count = |k: &str| rows.iter().filter(|r| r.standing == k).count();
    let (overdue, due_soon, paused, open) = (
        count("overdue"),
        count("due-soon"),
        count("paused"),
        count("open"),
    );
    html(UnitPage {
        l: v.lang,
        nav: Nav::of(&v, "/desk/unit"),
        units: units
            .iter()
            .map(|u| super::review::unit_name(&s, v.lang, Some(u)))
            .collect::<Vec<_>>()
            .join(", "),
        rows,
        overdue,
        due_soon,
        paused,
        open,
    })
}

#[derive(Template)]
#[template(path = "desk/unit_item.html")]
struct UnitItemPage {
    l: Lang,
    nav: Nav,
    item: ItemSummary,
    standing: &'static str,
    received: String,
    body: String,
    unit_name: String,
    /// The item's case and formal status in words.
    case_label: String,
    formal_label: String,
    assignee: String,
    colleagues: Vec<(String, String)>,
    history: Vec<HistoryLine>,
    answers: Vec<Answer>,
    delivery: String,
    open: bool,
    error: Option<String>,
}

async fn render_item(s: &HttpState, v: &Viewer, item: &str, error: Option<String>) -> Response {
    let l = v.lang;
    let found = match reachable(s, v, item).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let msg = match s.registry.item_message(&found.id).await {
        Ok(m) => m,
        Err(e) => return unavailable(l, &e.to_string()),
    };
    let colleagues = match &found.unit_id {
        Some(u) => s.registry.unit_members(u).await.unwrap_or_default(),
        None => Vec::new(),
    }
    .into_iter()
    .map(|u| (u.id, u.display_name))
    .collect::<Vec<_>>();
    let assignee = s
        .registry
        .assignee_of(&found.id)
        .await
        .ok()
        .flatten()
        .map(|id| {
            colleagues
                .iter()
                .find(|(c, _)| *c == id)
                .map_or(id.clone(), |(_, n)| n.clone())
        })
        .unwrap_or_default();
    let history = super::review::history(s, &found.id, l).await;
    let answers = s.registry.answers_of(&found.id).await.unwrap_or_default();
    let delivery = match crate::answers::answer_delivery(&s.registry, &s.channels, &msg).await {
        Ok(d) => d,
        Err(e) => return unavailable(l, &e.to_string()),
    };
    let status = if error.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    let page = UnitItemPage {
        l,
        nav: Nav::of(v, &format!("/desk/unit/items/{}", found.id)),
        standing: standing(s, &found),
        received: super::review::local_time(&found.received_at),
        body: msg.body.clone(),
        unit_name: super::review::unit_name(s, l, found.unit_id.as_deref()),
        case_label: l.case(&s.rules.load().cases, found.case_code.as_deref()),
        formal_label: l.formal_status(found.formal_status.as_deref()),
        assignee,
        colleagues,
        history,
        answers,
        delivery: l
            .t(&format!("unit.delivery_{}", delivery.kind.as_str()))
            .to_string(),
        open: found.closed_at.is_none(),
        error,
        item: found,
    };
    (status, html(page)).into_response()
}

/// `GET /desk/unit/items/{id}`.
pub async fn item_page(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path(item): Path<String>,
    Query(q): Query<LangOnly>,
) -> Response {
    match viewer_as(&s, &session, &headers, q.lang(), Role::Unit).await {
        Ok(v) => render_item(&s, &v, &item, None).await,
        Err(r) => r,
    }
}

/// One of the unit's actions on an item: `action` names it, the rest its fields.
#[derive(Deserialize)]
pub struct UnitActionForm {
    csrf: String,
    action: String,
    reason: Option<String>,
    until: Option<String>,
    assignee: Option<String>,
    text: Option<String>,
}

fn filled(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// `POST /desk/unit/items/{id}/act`: records the action; back to the item.
pub async fn act(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path(item): Path<String>,
    Form(f): Form<UnitActionForm>,
) -> Response {
    let v = match actor_posting(&s, &session, &headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let found = match reachable(&s, &v, &item).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let actor = v.actor();
    let rules = s.rules.load_full();
    let reason = filled(&f.reason).unwrap_or_default();
    let result: Result<(), ActionError> = match f.action.as_str() {
        "extend" => {
            let until = match filled(&f.until)
                .map(|u| NaiveDate::parse_from_str(&u, "%Y-%m-%d"))
                .transpose()
            {
                Ok(u) => u,
                Err(e) => return render_item(&s, &v, &item, Some(format!("until: {e}"))).await,
            };
            s.registry
                .extend_deadline(&found.id, until, &reason, &actor, &rules.deadlines)
                .await
                .map(drop)
        }
        "pause" => s
            .registry
            .pause_deadline(&found.id, &reason, &actor, Utc::now())
            .await
            .map(drop),
        "resume" => s
            .registry
            .resume_deadline(&found.id, &actor, Utc::now(), &rules.deadlines)
            .await
            .map(drop),
        "comment" => {
            s.registry
                .comment_item(&found.id, &filled(&f.text).unwrap_or_default(), &actor)
                .await
        }
        "assign" => {
            let colleague = match (&found.unit_id, filled(&f.assignee)) {
                (Some(unit), Some(id)) => s
                    .registry
                    .unit_members(unit)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .find(|u| u.id == id),
                _ => None,
            };
            match colleague {
                Some(c) => s
                    .registry
                    .assign_item(&found.id, &c.id, &super::auth::actor_of(&c), &actor)
                    .await
                    .map(drop),
                None => Err(ActionError::Invalid(
                    v.lang.t("unit.no_such_colleague").to_string(),
                )),
            }
        }
        "return" => {
            if reason.is_empty() {
                Err(ActionError::Invalid(
                    v.lang.t("unit.return_needs_reason").to_string(),
                ))
            } else {
                let decision = Decision::Return {
                    unit: found.unit_id.clone().unwrap_or_default(),
                    reason,
                };
                match s
                    .registry
                    .decide(&found.id, found.revision, &actor, &decision, &rules)
                    .await
                {
                    // Back with the records office: no longer the unit's.
                    Ok(_) => return Redirect::to("/desk/unit?done=returned").into_response(),
                    Err(e) => Err(e),
                }
            }
        }
        other => Err(ActionError::Invalid(format!("unknown action {other:?}"))),
    };
    action_done(&s, &v, &found.id, result).await
}

async fn action_done(
    s: &HttpState,
    v: &Viewer,
    item: &str,
    result: Result<(), ActionError>,
) -> Response {
    match result {
        Ok(()) => Redirect::to(&format!("/desk/unit/items/{item}")).into_response(),
        Err(ActionError::Conflict { why, .. }) => {
            render_item(
                s,
                v,
                item,
                Some(format!("{} {why}", v.lang.t("error.conflict"))),
            )
            .await
        }
        Err(ActionError::Registry(e)) => unavailable(v.lang, &e.to_string()),
        Err(e) => render_item(s, v, item, Some(e.to_string())).await,
    }
}

/// The largest signed answer document taken.
const DOCUMENT_LIMIT: u64 = 20 * 1024 * 1024;

/// `POST /desk/unit/items/{id}/answer` (multipart: csrf, body, document):
/// registers the answer with its outgoing number, queues its delivery and
/// closes the item.
pub async fn answer(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path(item): Path<String>,
    mut form: Multipart,
) -> Response {
    let (mut csrf, mut body, mut document) = (String::new(), String::new(), None);
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
        };
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "csrf" => csrf = field.text().await.unwrap_or_default(),
            "body" => body = field.text().await.unwrap_or_default(),
            "document" => {
                let file = field
                    .file_name()
                    .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n).to_string())
                    .unwrap_or_default();
                let bytes = match field.bytes().await {
                    Ok(b) => b,
                    Err(e) => return (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
                };
                if !file.is_empty() && !bytes.is_empty() {
                    document = Some((file, bytes));
                }
            }
            _ => {}
        }
    }
    let v = match actor_posting(&s, &session, &headers, &csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let found = match reachable(&s, &v, &item).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    // Scanned like every file that comes in; refused while clamd is away.
    if let (Some(scanner), Some((_, bytes))) = (&s.malware, &document) {
        let refused = match scanner.scan_bytes(bytes).await {
            Ok(None) => None,
            Ok(Some(signature)) => Some(format!(
                "{} ({signature})",
                v.lang.t("unit.document_malware")
            )),
            Err(e) => Some(format!("{} ({e})", v.lang.t("unit.document_unscanned"))),
        };
        if let Some(why) = refused {
            tracing::warn!(item = %found.id, "answer document refused: {why}");
            return render_item(&s, &v, &item, Some(why)).await;
        }
    }
    let stored = match &document {
        Some((name, bytes)) if bytes.len() as u64 <= DOCUMENT_LIMIT => {
            match s.blobs.put(bytes).await {
                Ok(b) => Some((b.sha256, name.clone())),
                Err(e) => return unavailable(v.lang, &e.to_string()),
            }
        }
        Some(_) => {
            return render_item(
                &s,
                &v,
                &item,
                Some(v.lang.t("unit.document_too_large").to_string()),
            )
            .await;
        }
        None => None,
    };
    let msg = match s.registry.item_message(&found.id).await {
        Ok(m) => m,
        Err(e) => return unavailable(v.lang, &e.to_string()),
    };
    let delivery = match crate::answers::answer_delivery(&s.registry, &s.channels, &msg).await {
        Ok(d) => d,
        Err(e) => return unavailable(v.lang, &e.to_string()),
    };
    let unit_index = {
        let rules = s.rules.load();
        found
            .unit_id
            .as_ref()
            .and_then(|u| rules.units.get(u))
            .map(|u| u.index.clone())
            .unwrap_or_default()
    };
    let actor = v.actor();
    let registered = s
        .registry
        .register_answer(&NewAnswer {
            item: &found.id,
            body: &body,
            document: stored
                .as_ref()
                .map(|(sha, name)| (sha.as_str(), name.as_str())),
            delivery: delivery.kind.as_str(),
            send_via: delivery
                .send_via
                .as_ref()
                .map(|(c, a)| (c.as_str(), a.as_str())),
            actor: &actor,
            pattern: &s.answers.pattern,
            unit_index: &unit_index,
        })
        .await;
    action_done(&s, &v, &found.id, registered.map(drop)).await
}

/// The answer, when its item is one of the viewer's units'.
async fn reachable_answer(s: &HttpState, v: &Viewer, id: &str) -> Result<Answer, Response> {
    let answer = s
        .registry
        .answer(id)
        .await
        .map_err(|e| unavailable(v.lang, &e.to_string()))?
        .ok_or_else(|| not_found(v.lang))?;
    reachable(s, v, &answer.item_id).await?;
    Ok(answer)
}

/// `GET /desk/unit/answers/{id}/letter.pdf`: the answer as a printable letter.
pub async fn letter(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let v = match viewer_as(&s, &session, &headers, None, Role::Unit).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let answer = match reachable_answer(&s, &v, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (item, msg) = match (
        s.registry.find(&answer.item_id).await,
        s.registry.item_message(&answer.item_id).await,
    ) {
        (Ok(Some(i)), Ok(m)) => (i, m),
        _ => return not_found(v.lang),
    };
    let desk = s.answers.clone();
    let pdf = match tokio::task::spawn_blocking(move || {
        crate::answers::letter_pdf(&desk.font, &desk.print, &item, &msg, &answer)
    })
    .await
    {
        Ok(pdf) => pdf,
        Err(e) => return unavailable(v.lang, &e.to_string()),
    };
    (
        [
            (header::CONTENT_TYPE, "application/pdf"),
            (
                header::CONTENT_DISPOSITION,
                "inline; filename=\"answer.pdf\"",
            ),
        ],
        pdf,
    )
        .into_response()
}

/// `POST /desk/unit/answers/{id}/posted`: the letter was printed and posted.
pub async fn posted(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<super::auth::CsrfForm>,
) -> Response {
    let v = match actor_posting(&s, &session, &headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let answer = match reachable_answer(&s, &v, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let result = s.registry.answer_posted(&answer.id, &v.actor()).await;
    action_done(&s, &v, &answer.item_id, result.map(drop)).await
}

//! The deadline API: recorded actions on an item (extend, pause, resume,
//! close), the overdue and due-soon lists, and the calendar (read it, add an
//! ad-hoc holiday). Same authorisation as the item API: each action needs
//! its scope and an item of a unit the client reaches. The actor recorded is
//! always the client's name; an `actor` in the body is accepted for older
//! clients and ignored.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{NaiveDate, Utc};
use serde::Deserialize;

use super::client::ClientAddr;
use super::{HttpState, api_caller_for, json_error, reachable_item};
use crate::active_rules::ActiveRulesError;
use crate::api_clients::{ApiAction, UnitScope};
use crate::registry::ItemSummary;
use crate::registry::deadlines::ActionError;
use crate::rules::holiday::AddHolidayError;

/// The deadline routes, merged into the daemon's router.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/api/v1/items/{item}/deadline/extend", post(extend))
        .route("/api/v1/items/{item}/deadline/pause", post(pause))
        .route("/api/v1/items/{item}/deadline/resume", post(resume))
        .route("/api/v1/items/{item}/close", post(close))
        .route("/api/v1/items/{item}/return", post(return_item))
        .route("/api/v1/deadlines", get(due))
        .route("/api/v1/calendar/{year}", get(calendar_year))
        .route("/api/v1/calendar/holidays", post(add_holiday))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    /// Ignored: the actor is the API client's name.
    #[serde(default)]
    #[allow(dead_code)]
    actor: Option<String>,
    reason: String,
    /// Default: the longest term the law allows.
    until: Option<NaiveDate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    /// Ignored: the actor is the API client's name.
    #[serde(default)]
    #[allow(dead_code)]
    actor: Option<String>,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActorBody {
    /// Ignored: the actor is the API client's name.
    #[serde(default)]
    #[allow(dead_code)]
    actor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    /// Ignored: the actor is the API client's name.
    #[serde(default)]
    #[allow(dead_code)]
    actor: Option<String>,
    /// The reply's own registration number or reference.
    reply_reference: Option<String>,
}

fn action_result(r: Result<ItemSummary, ActionError>) -> Response {
    match r {
        Ok(item) => Json(item).into_response(),
        Err(e) => {
            let status = match &e {
                ActionError::NotFound(_) => StatusCode::NOT_FOUND,
                ActionError::Conflict { .. } => StatusCode::CONFLICT,
                ActionError::Extension { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                ActionError::Invalid(_) => StatusCode::BAD_REQUEST,
                ActionError::Registry(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            if status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::error!("deadline action failed: {e}");
            }
            json_error(status, e.to_string())
        }
    }
}

/// The request body, or the status and text of what is wrong with it.
fn body<T>(parsed: Result<Json<T>, JsonRejection>) -> Result<T, (StatusCode, String)> {
    parsed
        .map(|Json(b)| b)
        .map_err(|e| (e.status(), e.body_text()))
}

/// The caller, allowed `action` (else 401, 403), the parsed body (else its
/// JSON error) and the item, in the caller's reach (else 404).
macro_rules! guarded {
    ($s:expr, $headers:expr, $client:expr, $item:expr, $action:expr, body $b:expr) => {{
        let caller = match api_caller_for(&$s, &$headers, $client, $action).await {
            Ok(c) => c,
            Err(refusal) => return refusal,
        };
        let b = match body($b) {
            Ok(b) => b,
            Err((status, text)) => return json_error(status, text),
        };
        match reachable_item(&$s, &caller, &$item).await {
            Ok(found) => (caller, found, b),
            Err(refusal) => return refusal,
        }
    }};
}

async fn extend(
    State(s): State<HttpState>,
    client: ClientAddr,
    headers: HeaderMap,
    Path(item): Path<String>,
    b: Result<Json<ExtendBody>, JsonRejection>,
) -> Response {
    let (caller, found, b) = guarded!(s, headers, client, item, ApiAction::Extend, body b);
    let rules = s.rules.load_full();
    action_result(
        s.registry
            .extend_deadline(
                &found.id,
                b.until,
                &b.reason,
                &caller.name,
                &rules.deadlines,
            )
            .await,
    )
}

async fn pause(
    State(s): State<HttpState>,
    client: ClientAddr,
    headers: HeaderMap,
    Path(item): Path<String>,
    b: Result<Json<PauseBody>, JsonRejection>,
) -> Response {
    let (caller, found, b) = guarded!(s, headers, client, item, ApiAction::Pause, body b);
    action_result(
        s.registry
            .pause_deadline(&found.id, &b.reason, &caller.name, Utc::now())
            .await,
    )
}

async fn resume(
    State(s): State<HttpState>,
    client: ClientAddr,
    headers: HeaderMap,
    Path(item): Path<String>,
    b: Result<Json<ActorBody>, JsonRejection>,
) -> Response {
    let (caller, found, _) = guarded!(s, headers, client, item, ApiAction::Resume, body b);
    let rules = s.rules.load_full();
    action_result(
        s.registry
            .resume_deadline(&found.id, &caller.name, Utc::now(), &rules.deadlines)
            .await,
    )
}

async fn close(
    State(s): State<HttpState>,
    client: ClientAddr,
    headers: HeaderMap,
    Path(item): Path<String>,
    b: Result<Json<CloseBody>, JsonRejection>,
) -> Response {
    let (caller, found, b) = guarded!(s, headers, client, item, ApiAction::Close, body b);
    action_result(
        s.registry
            .close_item(
                &found.id,
                b.reply_reference.as_deref(),
                &caller.name,
                Utc::now(),
            )
            .await,
    )
}

#[derive(Deserialize)]
struct DueQuery {
    unit: Option<String>,
    /// Working days ahead counted as "due soon" (default from the configuration).
    within: Option<u32>,
}

/// `GET /api/v1/deadlines?unit=…&within=N`: overdue and due-soon items
/// (of the units the client reaches).
async fn due(
    State(s): State<HttpState>,
    client: ClientAddr,
    headers: HeaderMap,
    Query(q): Query<DueQuery>,
) -> Response {
    let caller = match api_caller_for(&s, &headers, client, ApiAction::Read).await {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    let (today, horizon) = s.due_window(Some(q.within.unwrap_or(s.due_soon_working_days).min(60)));
    match s
        .registry
        .due_items(today, horizon, q.unit.as_deref())
        .await
    {
        Ok(mut due) => {
            due.overdue.retain(|i| caller.reaches(i.unit_id.as_deref()));
            due.due_soon
                .retain(|i| caller.reaches(i.unit_id.as_deref()));
            Json(due).into_response()
        }
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `GET /api/v1/calendar/{year}`: the days off and the Saturdays worked.
async fn calendar_year(State(s): State<HttpState>, Path(year): Path<i32>) -> Response {
    let rules = s.rules.load_full();
    let (days_off, worked_saturdays) = rules.deadlines.calendar.year_overview(year);
    Json(serde_json::json!({
        "year": year,
        "checked": rules.deadlines.calendar.covers(year),
        "office_closes": rules.deadlines.calendar.office_closes().format("%H:%M").to_string(),
        "days_off": days_off,
        "worked_days_off": worked_saturdays,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayBody {
    date: NaiveDate,
    name: String,
    /// Ignored: the actor is the API client's name.
    #[serde(default)]
    #[allow(dead_code)]
    actor: Option<String>,
}

/// `POST /api/v1/calendar/holidays`: an ad-hoc holiday added to the rule
/// set in force for every daemon (the registry's), put in force here at
/// once, open deadlines moved; other daemons follow within seconds. Every
/// unit's deadlines move: only a client reaching every unit may.
async fn add_holiday(
    State(s): State<HttpState>,
    client: ClientAddr,
    headers: HeaderMap,
    b: Result<Json<HolidayBody>, JsonRejection>,
) -> Response {
    let caller = match api_caller_for(&s, &headers, client, ApiAction::Holiday).await {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    if caller.units != UnitScope::All {
        return json_error(
            StatusCode::FORBIDDEN,
            format!("API client {} does not reach every unit", caller.name),
        );
    }
    let b = match body(b) {
        Ok(b) => b,
        Err((status, text)) => return json_error(status, text),
    };
    let actor = caller.name.as_str();
    let dir = s.rules.load().dir.clone();
    let added = crate::active_rules::add_holiday(&s.registry, &dir, b.date, &b.name, actor).await;
    let set = match added {
        Ok(set) => std::sync::Arc::new(set),
        Err(
            e @ ActiveRulesError::Holiday(
                AddHolidayError::AlreadyOff { .. } | AddHolidayError::Invalid,
            ),
        ) => {
            return json_error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
        }
        Err(e) if e.is_transient() => {
            tracing::warn!("ad-hoc holiday {} not added: {e}", b.date);
            return json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
        Err(e) => {
            tracing::error!("ad-hoc holiday {} not added: {e}", b.date);
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    s.rules.store(set.clone());
    tracing::info!(date = %b.date, client = %actor, version = %set.version, "ad-hoc holiday added");
    let cause = format!("holiday {} added by {actor}", b.date);
    match s
        .registry
        .recompute_open_deadlines(&set.deadlines, &cause)
        .await
    {
        Ok(moved) => (
            StatusCode::CREATED,
            Json(serde_json::json!({ "version": set.version, "deadlines_moved": moved })),
        )
            .into_response(),
        Err(e) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "holiday added (rules version {}), but open deadlines were not moved yet: {e}; they move on the next reload or restart",
                set.version
            ),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnBody {
    /// Ignored: the actor is the API client's name.
    #[serde(default)]
    #[allow(dead_code)]
    actor: Option<String>,
    /// The unit giving the item back: the one it is routed to.
    unit: String,
    reason: String,
    /// The revision the unit saw (`item.revision`); default: the current one.
    revision: Option<i64>,
}

/// `POST /api/v1/items/{item}/return`: a unit says "not ours"; the item
/// goes back to the records officer's review queue with the reason.
async fn return_item(
    State(s): State<HttpState>,
    client: ClientAddr,
    headers: HeaderMap,
    Path(item): Path<String>,
    b: Result<Json<ReturnBody>, JsonRejection>,
) -> Response {
    let (caller, found, b) = guarded!(s, headers, client, item, ApiAction::Decide, body b);
    if !caller.reaches(Some(&b.unit)) {
        return json_error(
            StatusCode::FORBIDDEN,
            format!(
                "API client {} does not act for unit {:?}",
                caller.name, b.unit
            ),
        );
    }
    let revision = b.revision.unwrap_or(found.revision);
    let decision = crate::registry::desk::Decision::Return {
        unit: b.unit,
        reason: b.reason,
    };
    let rules = s.rules.load_full();
    action_result(
        s.registry
            .decide(&found.id, revision, &caller.name, &decision, &rules)
            .await,
    )
}

//! The deadline API: recorded actions on an item (extend, pause, resume,
//! close), the overdue and due-soon lists, and the calendar (read it, add an
//! ad-hoc holiday). Same authorisation as the item API; the body names the
//! actor until the review desk has its own accounts.

use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{NaiveDate, Utc};
use serde::Deserialize;

use super::{HttpState, api_allowed, json_error, unauthorized};
use crate::active_rules::ActiveRulesError;
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
    actor: String,
    reason: String,
    /// Default: the longest term the law allows.
    until: Option<NaiveDate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    actor: String,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActorBody {
    actor: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    actor: String,
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

/// Answers 401 unless the caller may use the API; with `body b`, also
/// answers the JSON error for a body that does not parse, else yields it.
macro_rules! guarded {
    ($s:expr, $headers:expr, $peer:expr) => {
        if !api_allowed(&$s, &$headers, $peer.ip()) {
            return unauthorized();
        }
    };
    ($s:expr, $headers:expr, $peer:expr, body $b:expr) => {{
        guarded!($s, $headers, $peer);
        match body($b) {
            Ok(b) => b,
            Err((status, text)) => return json_error(status, text),
        }
    }};
}

async fn extend(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(item): Path<String>,
    b: Result<Json<ExtendBody>, JsonRejection>,
) -> Response {
    let b = guarded!(s, headers, peer, body b);
    let rules = s.rules.load_full();
    action_result(
        s.registry
            .extend_deadline(&item, b.until, &b.reason, &b.actor, &rules.deadlines)
            .await,
    )
}

async fn pause(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(item): Path<String>,
    b: Result<Json<PauseBody>, JsonRejection>,
) -> Response {
    let b = guarded!(s, headers, peer, body b);
    action_result(
        s.registry
            .pause_deadline(&item, &b.reason, &b.actor, Utc::now())
            .await,
    )
}

async fn resume(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(item): Path<String>,
    b: Result<Json<ActorBody>, JsonRejection>,
) -> Response {
    let b = guarded!(s, headers, peer, body b);
    let rules = s.rules.load_full();
    action_result(
        s.registry
            .resume_deadline(&item, &b.actor, Utc::now(), &rules.deadlines)
            .await,
    )
}

async fn close(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(item): Path<String>,
    b: Result<Json<CloseBody>, JsonRejection>,
) -> Response {
    let b = guarded!(s, headers, peer, body b);
    action_result(
        s.registry
            .close_item(&item, b.reply_reference.as_deref(), &b.actor, Utc::now())
            .await,
    )
}

#[derive(Deserialize)]
struct DueQuery {
    unit: Option<String>,
    /// Working days ahead counted as "due soon" (default from the configuration).
    within: Option<u32>,
}

/// `GET /api/v1/deadlines?unit=…&within=N`: overdue and due-soon items.
async fn due(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<DueQuery>,
) -> Response {
    guarded!(s, headers, peer);
    let (today, horizon) = s.due_window(Some(q.within.unwrap_or(s.due_soon_working_days).min(60)));
    match s
        .registry
        .due_items(today, horizon, q.unit.as_deref())
        .await
    {
        Ok(due) => Json(due).into_response(),
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
    actor: String,
}

/// `POST /api/v1/calendar/holidays`: an ad-hoc holiday added to the rule
/// set in force for every daemon (the registry's), put in force here at
/// once, open deadlines moved; other daemons follow within seconds.
async fn add_holiday(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    b: Result<Json<HolidayBody>, JsonRejection>,
) -> Response {
    let b = guarded!(s, headers, peer, body b);
    let dir = s.rules.load().dir.clone();
    let added =
        crate::active_rules::add_holiday(&s.registry, &dir, b.date, &b.name, &b.actor).await;
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
    tracing::info!(date = %b.date, actor = %b.actor, version = %set.version, "ad-hoc holiday added");
    let cause = format!("holiday {} added by {}", b.date, b.actor);
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
    actor: String,
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(item): Path<String>,
    b: Result<Json<ReturnBody>, JsonRejection>,
) -> Response {
    let b = guarded!(s, headers, peer, body b);
    let revision = match b.revision {
        Some(r) => r,
        None => match s.registry.find(&item).await {
            Ok(Some(found)) => found.revision,
            Ok(None) => return json_error(StatusCode::NOT_FOUND, format!("no item {item:?}")),
            Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        },
    };
    let decision = crate::registry::desk::Decision::Return {
        unit: b.unit,
        reason: b.reason,
    };
    let rules = s.rules.load_full();
    action_result(
        s.registry
            .decide(&item, revision, &b.actor, &decision, &rules)
            .await,
    )
}

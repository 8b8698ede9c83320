//! The daemon's HTTP server: every channel's routes, the public status page,
//! the item JSON API, `/healthz`, `/readyz` and Prometheus `/metrics`, with
//! a body limit enforced before anything is buffered and security headers on
//! every response.

use std::sync::Arc;

use askama::Template;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;

mod catalogue;
pub mod client;
mod dashboard;
mod deadlines;
mod opinion;

use crate::api_clients::{ApiAction, ApiClient, DEV_LOOPBACK_CLIENT, LEGACY_CLIENT};
use crate::bus::Bus;
use crate::channels::Channel;
use crate::registry::{ItemFilter, Registry};

/// Shared by the daemon's own routes.
#[derive(Clone)]
pub struct HttpState {
    pub registry: Registry,
    pub bus: Arc<dyn Bus>,
    pub metrics: Option<PrometheusHandle>,
    pub forms: Vec<String>,
    /// The legacy bearer token for the item API (client `api-token`, every scope).
    pub api_token: Option<SecretString>,
    /// Development only: loopback clients may use the item API without a credential.
    pub dev_trust_loopback: bool,
    /// Trusted proxies and their header: who the client of a request is.
    pub client_addressing: Arc<client::ClientAddressing>,
    /// The rule set in force (its calendar and legal terms, too).
    pub rules: crate::rules::watch::SharedRules,
    /// Working days ahead that count as "due soon".
    pub due_soon_working_days: u32,
    /// Attachments and originals, for the desk's downloads and scan pages.
    pub blobs: crate::blobs::BlobStore,
    /// The configured channels (id, kind), for the channels overview.
    pub channels: Vec<(String, String)>,
    /// The supervised tasks' states.
    pub components: crate::supervise::Components,
    /// The desk's sign-in: signing key, throttle, directory, OpenID provider.
    pub identity: Arc<crate::desk::auth::Identity>,
    pub desk: crate::desk::DeskOptions,
    /// Answers: the outgoing numbers' pattern, the letter's font and header.
    pub answers: Arc<crate::answers::AnswerDesk>,
    /// The daemon's public address (the status links answers carry).
    pub public_url: String,
    /// clamd, for files uploaded at the desk (signed answer documents).
    pub malware: Option<Arc<crate::malware::Scanner>>,
}

impl HttpState {
    /// Today (Europe/Riga) and the last day counted as "due soon": `within`
    /// working days ahead (default `due_soon_working_days`) on the calendar
    /// in force.
    pub(crate) fn due_window(&self, within: Option<u32>) -> (chrono::NaiveDate, chrono::NaiveDate) {
        let today = crate::deadline::local_date(chrono::Utc::now());
        let horizon = self
            .rules
            .load()
            .deadlines
            .working_days_after(today, within.unwrap_or(self.due_soon_working_days));
        (today, horizon)
    }
}

/// Builds the whole router.
pub fn router(state: HttpState, channels: &[Arc<dyn Channel>], max_body_bytes: usize) -> Router {
    let addressing = state.client_addressing.clone();
    let mut app = Router::new()
        .route("/", get(index))
        .route("/static/pietura.css", get(css))
        .route("/status/{tracking_id}", get(status))
        .route(
            "/status/{tracking_id}/opinion",
            axum::routing::post(opinion::give),
        )
        .route("/api/v1/items", get(list_items))
        .route("/api/v1/items/{item}", get(show_item))
        .route("/api/v1/items/{item}/explanation", get(explain_item))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(deadlines::routes())
        .merge(catalogue::routes())
        .merge(dashboard::routes().layer(crate::desk::session_layer(&state)))
        .merge(crate::desk::routes(&state))
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(RequestBodyLimitLayer::new(max_body_bytes));
    for ch in channels {
        if let Some(routes) = ch.clone().routes() {
            // A web form's limit follows from its own fields and attachments.
            app = app.merge(if ch.limits_own_bodies() {
                routes
            } else {
                routes
                    .layer(DefaultBodyLimit::max(max_body_bytes))
                    .layer(RequestBodyLimitLayer::new(max_body_bytes))
            });
        }
    }
    app.layer(axum::middleware::from_fn(api_errors_as_json))
        .layer(axum::middleware::from_fn_with_state(addressing, client::record))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
        ))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    forms: &'a [String],
}

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    registered: bool,
    /// Held for the records office ([`crate::parked`]), not on its way.
    parked: bool,
    number: String,
    received_at: String,
    reply_due: String,
    /// The client-opinion question ([`opinion`]): asked, or its outcome.
    opinion: opinion::Ask,
    tracking_id: String,
    /// The local day the item was answered (closed), when it was.
    answered_on: String,
    /// The answer's outgoing number, when one was registered.
    answer_number: String,
}

fn html(t: impl Template) -> Response {
    match t.render() {
        Ok(h) => Html(h).into_response(),
        Err(e) => {
            tracing::error!("template rendering failed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn index(State(s): State<HttpState>) -> Response {
    html(IndexPage { forms: &s.forms })
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/pietura.css"),
    )
        .into_response()
}

/// Public status by tracking id: the number and dates only, never the content.
async fn status(
    State(s): State<HttpState>,
    Path(tracking_id): Path<String>,
    Query(shown): Query<opinion::Shown>,
    headers: HeaderMap,
) -> Response {
    if uuid::Uuid::parse_str(&tracking_id).is_err() {
        return (StatusCode::NOT_FOUND, "unknown tracking id").into_response();
    }
    let item = match s.registry.find_by_message(&tracking_id).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("status lookup failed: {e}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "status is unavailable right now, please retry",
            )
                .into_response();
        }
    };
    // A parked item is never "accepted" (on its way): it waits for a person.
    let parked = item.is_none() && s.registry.is_parked(&tracking_id).await.unwrap_or(false);
    let json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if json {
        return Json(serde_json::json!({
            "tracking_id": tracking_id,
            "status": match (&item, parked) {
                (Some(_), _) => "registered",
                (None, true) => "parked",
                (None, false) => "accepted",
            },
            "registration_number": item.as_ref().map(|i| &i.registration_number),
            "reply_due": item.as_ref().and_then(|i| i.reply_due.as_ref()),
            "forward_due": item.as_ref().and_then(|i| i.forward_due.as_ref()),
            "closed_at": item.as_ref().and_then(|i| i.closed_at.as_ref()),
        }))
        .into_response();
    }
    let answer_number = match &item {
        Some(i) if i.closed_at.is_some() => s
            .registry
            .answers_of(&i.id)
            .await
            .ok()
            .and_then(|a| a.last().map(|a| a.number.clone()))
            .unwrap_or_default(),
        _ => String::new(),
    };
    html(StatusPage {
        answered_on: item
            .as_ref()
            .and_then(|i| i.closed_at.as_deref())
            .and_then(crate::registry::parse_db_time)
            .map(|t| {
                crate::deadline::local_date(t)
                    .format("%d.%m.%Y.")
                    .to_string()
            })
            .unwrap_or_default(),
        answer_number,
        registered: item.is_some(),
        parked,
        number: item
            .as_ref()
            .map(|i| i.registration_number.clone())
            .unwrap_or_default(),
        received_at: item
            .as_ref()
            .map(|i| i.received_at.clone())
            .unwrap_or_default(),
        reply_due: item
            .as_ref()
            .and_then(|i| i.due().map(str::to_string))
            .unwrap_or_default(),
        opinion: opinion::ask(&s, item.as_ref(), shown).await,
        tracking_id,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    unit: Option<String>,
    limit: Option<i64>,
}

/// Who is calling the item API: the client whose bearer token it sent
/// (an issued client, or the legacy `http.api_token`), or — only with
/// `http.dev_trust_loopback` — a loopback client without a credential;
/// otherwise the 401 to answer.
async fn api_caller(
    s: &HttpState,
    headers: &HeaderMap,
    client: client::ClientAddr,
) -> Result<ApiClient, Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(given) = given else {
        if s.dev_trust_loopback && client.ip().is_loopback() {
            return Ok(ApiClient::with_every_scope(DEV_LOOPBACK_CLIENT));
        }
        return Err(unauthorized());
    };
    match crate::api_clients::authenticate(&s.registry, given).await {
        Ok(Some(found)) => return Ok(found),
        Ok(None) => {}
        Err(e) => {
            tracing::error!("API client lookup failed: {e}");
            return Err(json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()));
        }
    }
    match &s.api_token {
        Some(token) if bool::from(given.as_bytes().ct_eq(token.expose_secret().as_bytes())) => {
            Ok(ApiClient::with_every_scope(LEGACY_CLIENT))
        }
        _ => {
            tracing::warn!(%client, "item API call with an unknown or revoked token refused");
            Err(unauthorized())
        }
    }
}

/// [`api_caller`], refused with 403 unless it may take `action`.
async fn api_caller_for(
    s: &HttpState,
    headers: &HeaderMap,
    client: client::ClientAddr,
    action: ApiAction,
) -> Result<ApiClient, Response> {
    let caller = api_caller(s, headers, client).await?;
    if caller.may(action) {
        Ok(caller)
    } else {
        Err(json_error(
            StatusCode::FORBIDDEN,
            format!("API client {} may not {action}", caller.name),
        ))
    }
}

/// The item API's error shape: `{"error": "…"}`.
fn json_error(status: StatusCode, text: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": text.into() }))).into_response()
}

/// Every error under `/api/` is JSON with an `error` text, whoever answered
/// it: the body limit (413), an extractor's rejection (400, 415, 422), an
/// unknown path or method. Answers that are JSON already pass unchanged.
async fn api_errors_as_json(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !api || is_json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut json = json_error(status, text);
    for (name, value) in parts.headers.iter() {
        json.headers_mut().append(name.clone(), value.clone());
    }
    json
}

fn unauthorized() -> Response {
    let mut resp = json_error(
        StatusCode::UNAUTHORIZED,
        "item API needs Authorization: Bearer <token> of a client issued with `pietura api-client add`",
    );
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// Items for the records officer's tools (review queue: `?state=review`);
/// a client limited to some units sees only theirs.
async fn list_items(
    State(s): State<HttpState>,
    client: client::ClientAddr,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let caller = match api_caller_for(&s, &headers, client, ApiAction::Read).await {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    let filter = ItemFilter {
        state: q.state,
        unit: q.unit,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let listed = match &caller.units {
        crate::api_clients::UnitScope::All => s.registry.list(&filter).await,
        crate::api_clients::UnitScope::Only(units) => {
            let units: Vec<String> = units.iter().cloned().collect();
            s.registry.list_in_units(&filter, &units).await
        }
    };
    match listed {
        Ok(items) => Json(items).into_response(),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The item an item-API path names (id or registration number), for a
/// caller allowed to take `action` on it; otherwise the answer to give
/// (401, 403, 404 — also for an item of a unit out of the caller's reach —, 503).
async fn api_item(
    s: &HttpState,
    headers: &HeaderMap,
    client: client::ClientAddr,
    item: &str,
    action: ApiAction,
) -> Result<(ApiClient, crate::registry::ItemSummary), Response> {
    let caller = api_caller_for(s, headers, client, action).await?;
    let found = reachable_item(s, &caller, item).await?;
    Ok((caller, found))
}

/// The item `item` names if `caller` reaches its unit; 404 otherwise, as
/// for an item that does not exist.
async fn reachable_item(
    s: &HttpState,
    caller: &ApiClient,
    item: &str,
) -> Result<crate::registry::ItemSummary, Response> {
    match s.registry.find(item).await {
        Ok(Some(found)) if caller.reaches(found.unit_id.as_deref()) => Ok(found),
        Ok(_) => Err(json_error(
            StatusCode::NOT_FOUND,
            format!("no item {item:?}"),
        )),
        Err(e) => Err(json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

/// `GET /api/v1/items/{id or number}`: the item, where its answer to the
/// sender stands (`state`: waiting with the last error, sent, uncertain
/// (its sender died mid-send), or not_sent with the `reason`, also when
/// none was queued at intake), the signed
/// containers it came with (files, signers, each signature's verdict),
/// where its external DMS registration stands (pending with the last error,
/// or the DMS's id and link), and its history.
async fn show_item(
    State(s): State<HttpState>,
    client: client::ClientAddr,
    headers: HeaderMap,
    Path(item): Path<String>,
) -> Response {
    let found = match api_item(&s, &headers, client, &item, ApiAction::Read).await {
        Ok((_, found)) => found,
        Err(refusal) => return refusal,
    };
    let msg = match s.registry.item_message(&found.id).await {
        Ok(m) => m,
        Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let answer = match s.registry.answer_state(&found.id).await {
        Ok(Some(a)) => Ok(serde_json::to_value(a).unwrap_or_default()),
        // No answer was queued at intake: say why (an auto-reply, a list…).
        Ok(None) => Ok(serde_json::json!({
            "state": "not_sent",
            "reason": msg.why_no_reply(),
            "channel_instance": msg.channel.instance,
        })),
        Err(e) => Err(e),
    };
    // Signed containers (.edoc…): files, signers and verdicts as stored at intake.
    let signed = crate::channels::email::edoc::listed_in(&msg);
    let dms = s.registry.dms_state(&found.id).await;
    let history = s.registry.audit_of(&found.id).await;
    match (answer, dms, history) {
        (Ok(answer), Ok(dms), Ok(history)) => {
            let history: Vec<serde_json::Value> = history
                .into_iter()
                .map(|(at, actor, action, detail)| {
                    serde_json::json!({
                        "at": at,
                        "actor": actor,
                        "action": action,
                        "detail": serde_json::from_str::<serde_json::Value>(&detail)
                            .unwrap_or(serde_json::Value::String(detail)),
                    })
                })
                .collect();
            Json(serde_json::json!({
                "item": found,
                "answer": answer,
                "signed_containers": signed,
                "sender_authenticity": msg.sender_authenticity,
                "dms": dms,
                "history": history,
            }))
            .into_response()
        }
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

/// `GET /api/v1/items/{id or number}/explanation`: the decision with every
/// rule tried, rebuilt from the item's own rule-set version.
async fn explain_item(
    State(s): State<HttpState>,
    client: client::ClientAddr,
    headers: HeaderMap,
    Path(item): Path<String>,
) -> Response {
    let found = match api_item(&s, &headers, client, &item, ApiAction::Read).await {
        Ok((_, found)) => found,
        Err(refusal) => return refusal,
    };
    match crate::explain::explain(&s.registry, &found).await {
        Ok(d) => Json(serde_json::json!({
            "item": found,
            "decision": d,
            "trace": d.trace,
        }))
        .into_response(),
        Err(crate::explain::ExplainError::Registry(e)) => {
            json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e) => json_error(StatusCode::CONFLICT, e.to_string()),
    }
}

/// Ready when the database and the bus answer and every supervised
/// component runs; the JSON names what is not, and the rule-set version
/// in force here.
async fn ready(State(s): State<HttpState>) -> Response {
    let db = s.registry.ping().await.is_ok();
    let bus = s.bus.ready().await;
    let not_running = s.components.not_running();
    let status = if db && bus && not_running.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({
            "database": db,
            "bus": bus,
            // The rule-set version this daemon routes by: the same on every
            // daemon once it followed the registry's (src/active_rules.rs).
            "rules": s.rules.load().version,
            "not_running": not_running,
            "components": s.components.snapshot(),
        })),
    )
        .into_response()
}

/// Prometheus text; the deadline gauges are read from the registry at each
/// scrape, so they are never staler than the scrape itself.
async fn metrics(State(s): State<HttpState>) -> Response {
    let (today, horizon) = s.due_window(None);
    match s.registry.open_counts(today, horizon).await {
        Ok(counts) => {
            let rules = s.rules.load();
            crate::metrics::open_items(rules.units.keys().map(String::as_str), &counts)
        }
        Err(e) => tracing::warn!("deadline gauges not refreshed: {e}"),
    }
    match &s.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics exporter not installed").into_response(),
    }
}

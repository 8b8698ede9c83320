//! Consultations logged in a few clicks: a visit or call that is not a
//! submission, with its topic (a service of the catalogue), the channel and
//! the minutes spent — no personal data. Counted in the quarterly
//! statistics per channel, unit and service ([`crate::stats`]).

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;
use tower_sessions::Session;

use super::auth::{Role, posting, viewer_as};
use super::i18n::Lang;
use super::service_search::channel_label;
use super::{Nav, html, status_page};
use crate::http::HttpState;
use crate::registry::consultations::NewConsultation;
use crate::rules::catalogue::APPLY_CHANNELS;

/// The longest consultation one entry may record.
pub const MAX_MINUTES: u32 = 600;

#[derive(Template)]
#[template(path = "desk/consultations.html")]
struct ConsultationPage {
    l: Lang,
    nav: Nav,
    /// (id, name) of every service.
    services: Vec<(String, String)>,
    /// (channel, label).
    channels: Vec<(String, String)>,
    service: String,
    channel: String,
    minutes: String,
    done: bool,
    error: Option<String>,
}

/// `?service=` pre-selects the topic; `?done=1` after logging one.
#[derive(Deserialize)]
pub struct ConsultationQuery {
    lang: Option<String>,
    service: Option<String>,
    channel: Option<String>,
    done: Option<String>,
}

/// The form as posted.
#[derive(Deserialize)]
pub struct ConsultationForm {
    csrf: String,
    service: String,
    channel: String,
    minutes: String,
}

fn page_for(s: &HttpState, l: Lang, nav: Nav) -> ConsultationPage {
    let rules = s.rules.load();
    let mut services: Vec<(String, String)> = rules
        .services
        .values()
        .map(|svc| (svc.id.clone(), svc.name_in(l == Lang::En).to_string()))
        .collect();
    services.sort_by(|a, b| a.1.cmp(&b.1));
    ConsultationPage {
        l,
        nav,
        services,
        channels: APPLY_CHANNELS
            .iter()
            .map(|c| (c.to_string(), channel_label(l, c)))
            .collect(),
        service: String::new(),
        channel: "counter".into(),
        minutes: "10".into(),
        done: false,
        error: None,
    }
}

/// `GET /desk/consultations`.
pub async fn form(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<ConsultationQuery>,
) -> Response {
    let v = match viewer_as(&s, &session, &headers, q.lang.as_deref(), Role::Officer).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut page = page_for(&s, v.lang, Nav::of(&v, "/desk/consultations"));
    page.service = q.service.unwrap_or_default();
    if let Some(c) = q.channel.filter(|c| APPLY_CHANNELS.contains(&c.as_str())) {
        page.channel = c;
    }
    page.done = q.done.is_some();
    html(page)
}

/// `POST /desk/consultations`: checks and logs one consultation.
pub async fn log(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Form(f): Form<ConsultationForm>,
) -> Response {
    let v = match posting(&s, &session, &headers, Role::Officer, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let unit = s
        .rules
        .load()
        .services
        .get(&f.service)
        .map(|svc| svc.unit.clone());
    let minutes = f
        .minutes
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|m| (1..=MAX_MINUTES).contains(m));
    let error = if unit.is_none() {
        Some("consult.bad_service")
    } else if !APPLY_CHANNELS.contains(&f.channel.as_str()) {
        Some("consult.bad_channel")
    } else if minutes.is_none() {
        Some("consult.bad_minutes")
    } else {
        None
    };
    let (Some(unit), Some(minutes), None) = (unit, minutes, error) else {
        let mut page = page_for(&s, v.lang, Nav::of(&v, "/desk/consultations"));
        page.error = error.map(|e| v.lang.t(e).to_string());
        page.service = f.service;
        page.channel = f.channel;
        page.minutes = f.minutes;
        return (StatusCode::UNPROCESSABLE_ENTITY, html(page)).into_response();
    };
    let entry = NewConsultation {
        channel: f.channel.clone(),
        service_id: f.service.clone(),
        unit_id: Some(unit),
        minutes,
        at: Utc::now(),
    };
    match s.registry.log_consultation(&entry).await {
        Ok(_) => {
            tracing::info!(channel = %entry.channel, service = %entry.service_id, minutes, "consultation logged");
            Redirect::to(&format!(
                "/desk/consultations?done=1&channel={}",
                entry.channel
            ))
            .into_response()
        }
        Err(e) => {
            tracing::error!("consultation not logged: {e}");
            status_page(
                StatusCode::SERVICE_UNAVAILABLE,
                v.lang,
                v.lang.t("error.unavailable_title"),
                v.lang.t("error.unavailable"),
            )
        }
    }
}

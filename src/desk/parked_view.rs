//! Parked items on the desk: what was accepted but could not be registered
//! (the database refused it, it kept failing, the bus's delivery limit ran
//! out), with when, by which door, why and how often it was tried, and a
//! retry button for the records officer: the action of `pietura parked
//! retry`, CSRF-protected, whose request goes on the item's audit log with
//! the officer's name once the item is registered.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Session;

use super::auth::{Role, posting, viewer_as};
use super::i18n::Lang;
use super::review::local_time;
use super::{Nav, html, status_page};
use crate::http::HttpState;
use crate::parked::ParkedError;
use crate::registry::parked::ParkedItem;

/// One parked item's row.
pub struct ParkedRow {
    pub id: String,
    pub first_seen: String,
    pub last_seen: String,
    /// The door's kind and instance, when the bytes are a message.
    pub door: String,
    pub reason: String,
    pub attempts: i64,
    /// Retried by itself (a reason that may pass).
    pub automatic: bool,
}

impl ParkedRow {
    fn of(p: &ParkedItem, l: Lang) -> ParkedRow {
        #[derive(Deserialize)]
        struct Door {
            kind: String,
            instance: String,
        }
        #[derive(Deserialize)]
        struct Head {
            channel: Door,
        }
        let door = serde_json::from_slice::<Head>(&p.payload)
            .map(|h| {
                format!(
                    "{} · {}",
                    l.channel_kind(&h.channel.kind),
                    h.channel.instance
                )
            })
            .unwrap_or_else(|_| "—".into());
        ParkedRow {
            id: p.id.clone(),
            first_seen: local_time(&p.first_seen),
            last_seen: local_time(&p.last_seen),
            door,
            reason: p.reason.clone(),
            attempts: p.attempts,
            automatic: p.transient,
        }
    }
}

#[derive(Template)]
#[template(path = "desk/parked.html")]
struct ParkedPage {
    l: Lang,
    nav: Nav,
    rows: Vec<ParkedRow>,
    done: Option<String>,
}

/// `?lang=` and the outcome of a retry just made.
#[derive(Deserialize)]
pub struct ParkedQuery {
    lang: Option<String>,
    done: Option<String>,
}

/// `GET /desk/parked`.
pub async fn list(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<ParkedQuery>,
) -> Response {
    let v = match viewer_as(&s, &session, &headers, q.lang.as_deref(), Role::Officer).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let parked = match s.registry.parked().await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("parked items: {e}");
            return status_page(
                StatusCode::SERVICE_UNAVAILABLE,
                v.lang,
                v.lang.t("error.unavailable_title"),
                v.lang.t("error.unavailable"),
            );
        }
    };
    html(ParkedPage {
        l: v.lang,
        nav: Nav::of(&v, "/desk/parked"),
        rows: parked.iter().map(|p| ParkedRow::of(p, v.lang)).collect(),
        done: q
            .done
            .filter(|d| d == "retry")
            .map(|_| v.lang.t("parked.retried").to_string()),
    })
}

/// The retry button's form.
#[derive(Deserialize)]
pub struct RetryForm {
    csrf: String,
}

/// `POST /desk/parked/{id}/retry`: publishes the item to intake again.
pub async fn retry(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<RetryForm>,
) -> Response {
    let v = match posting(&s, &session, &headers, Role::Officer, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match crate::parked::retry_asked(&s.registry, s.bus.as_ref(), &id, Some(v.actor().as_str()))
        .await
    {
        Ok(()) => {
            tracing::info!(parked = %id, "parked item retried from the desk");
            Redirect::to("/desk/parked?done=retry").into_response()
        }
        Err(e @ (ParkedError::NotFound(_) | ParkedError::Unreadable(_))) => status_page(
            StatusCode::NOT_FOUND,
            v.lang,
            v.lang.t("parked.title"),
            &e.to_string(),
        ),
        Err(e) => {
            tracing::error!(parked = %id, "parked item not retried: {e}");
            status_page(
                StatusCode::SERVICE_UNAVAILABLE,
                v.lang,
                v.lang.t("error.unavailable_title"),
                v.lang.t("error.unavailable"),
            )
        }
    }
}

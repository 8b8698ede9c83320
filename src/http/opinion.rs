//! The client-opinion question on the citizen's status page: once an item
//! is closed, one short question (a score 1–5 and a comment), answered at
//! most once per item ([`crate::registry::opinions`]). The status page's
//! tracking id is the only credential; nothing else about the citizen is
//! asked or stored.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;

use super::HttpState;
use crate::registry::ItemSummary;
use crate::registry::opinions::OpinionOutcome;

/// The longest comment kept.
pub const MAX_COMMENT_CHARS: usize = 1000;

/// What the status page shows about the question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Nothing: the item is not closed, or the registry did not say.
    No,
    /// The question with its form.
    Question,
    /// Thanks for the opinion just given.
    Thanks,
    /// An opinion was given before.
    Given,
}

/// `?opinion=thanks` after answering.
#[derive(Deserialize)]
pub struct Shown {
    opinion: Option<String>,
}

/// Whether to ask about `item` (closed, not discarded, no opinion yet).
pub async fn ask(s: &HttpState, item: Option<&ItemSummary>, shown: Shown) -> Ask {
    let Some(item) = item.filter(|i| i.closed_at.is_some() && i.state != "discarded") else {
        return Ask::No;
    };
    match s.registry.has_opinion(&item.id).await {
        Ok(false) => Ask::Question,
        Ok(true) if shown.opinion.as_deref() == Some("thanks") => Ask::Thanks,
        Ok(true) => Ask::Given,
        Err(e) => {
            tracing::warn!("opinion state unknown: {e}");
            Ask::No
        }
    }
}

/// The answer as posted.
#[derive(Deserialize)]
pub struct OpinionForm {
    score: String,
    #[serde(default)]
    comment: String,
}

/// `POST /status/{tracking_id}/opinion`: 303 back to the status page when
/// taken; 409 when the item has an opinion already or is not closed.
pub async fn give(
    State(s): State<HttpState>,
    Path(tracking_id): Path<String>,
    Form(f): Form<OpinionForm>,
) -> Response {
    if uuid::Uuid::parse_str(&tracking_id).is_err() {
        return (StatusCode::NOT_FOUND, "unknown tracking id").into_response();
    }
    let Some(score) = f
        .score
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|n| (1..=5).contains(n))
    else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "choose 1–5 / izvēlieties 1–5",
        )
            .into_response();
    };
    let comment: String = f
        .comment
        .trim()
        .replace('\0', "")
        .chars()
        .take(MAX_COMMENT_CHARS)
        .collect();
    let comment = (!comment.is_empty()).then_some(comment);
    let unavailable = |e: crate::registry::RegistryError| {
        tracing::error!("opinion not recorded: {e}");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "please retry / lūdzu, mēģiniet vēlreiz",
        )
            .into_response()
    };
    let item = match s.registry.find_by_message(&tracking_id).await {
        Ok(Some(i)) => i,
        Ok(None) => return (StatusCode::NOT_FOUND, "unknown tracking id").into_response(),
        Err(e) => return unavailable(e),
    };
    match s
        .registry
        .give_opinion(&item.id, score, comment.as_deref(), Utc::now())
        .await
    {
        Ok(OpinionOutcome::Accepted) => {
            tracing::info!(item = %item.id, score, "client opinion recorded");
            Redirect::to(&format!("/status/{tracking_id}?opinion=thanks")).into_response()
        }
        Ok(OpinionOutcome::AlreadyGiven) => (
            StatusCode::CONFLICT,
            "an opinion on this item was given already / vērtējums jau ir sniegts",
        )
            .into_response(),
        Ok(OpinionOutcome::NotClosed) => (
            StatusCode::CONFLICT,
            "the item is not closed yet / iesniegums vēl nav izskatīts",
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

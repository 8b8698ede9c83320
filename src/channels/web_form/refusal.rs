//! Why a submission is refused: one status and one clear message each, in
//! the page's language, as the HTML page shows them or as JSON.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Lang;

/// A problem to show: the field it is about (if one) and the message.
pub(super) type Problem = (Option<String>, String);

/// `Retry-After` (seconds) when the form is busy or the bus is away.
const RETRY_AFTER_SECS: u64 = 5;

/// Why a submission was refused; each maps to one status and one clear message.
#[derive(Debug)]
pub(super) enum Refusal {
    Invalid(Vec<Problem>),
    /// Not readable as sent: bytes that are not UTF-8, JSON that does not parse.
    BadRequest(Vec<Problem>),
    TooLarge(String),
    Unsupported(String),
    /// The idempotency key (page token, `Idempotency-Key`) was used for other content.
    Conflict {
        api: bool,
    },
    RateLimited,
    Bot,
    Unauthorized,
    /// The JSON API of this form is off (no key configured).
    NotEnabled,
    /// Every upload slot is taken.
    Busy,
    Unavailable,
}

impl Refusal {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Refusal::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::BadRequest(_) | Refusal::Bot => StatusCode::BAD_REQUEST,
            Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Conflict { .. } => StatusCode::CONFLICT,
            Refusal::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::NotEnabled => StatusCode::NOT_FOUND,
            Refusal::Busy | Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub(super) fn messages(&self, lang: Lang) -> Vec<Problem> {
        let one = |m: String| vec![(None, m)];
        match self {
            Refusal::Invalid(list) | Refusal::BadRequest(list) => list.clone(),
            Refusal::TooLarge(m) | Refusal::Unsupported(m) => one(m.clone()),
            Refusal::Conflict { api: true } => one("this Idempotency-Key was already used for a submission with different content; nothing was registered for this request (send new content with a new key)".into()),
            Refusal::Conflict { api: false } => one(lang.t("refusal.conflict").into()),
            Refusal::RateLimited => one(lang.t("refusal.rate_limited").into()),
            Refusal::Bot => one(lang.t("refusal.bot").into()),
            Refusal::Unauthorized => one("missing or wrong API key (Authorization: Bearer <key>)".into()),
            Refusal::NotEnabled => one("the JSON API of this form is not enabled (set its api_key_env)".into()),
            Refusal::Busy => one(lang.t("refusal.busy").into()),
            Refusal::Unavailable => one(lang.t("refusal.unavailable").into()),
        }
    }

    /// Sets `Retry-After` where trying again later helps.
    pub(super) fn with_retry_after(&self, mut resp: Response) -> Response {
        if matches!(self, Refusal::Busy | Refusal::Unavailable) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        resp
    }

    /// The JSON answer of both POST endpoints: `status`, every problem in
    /// `errors` (with its field), and `error`, the item API's one text.
    pub(super) fn json(&self, lang: Lang) -> Response {
        let problems = self.messages(lang);
        let error = problems
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let errors: Vec<serde_json::Value> = problems
            .into_iter()
            .map(|(f, m)| serde_json::json!({"field": f, "message": m}))
            .collect();
        self.with_retry_after(
            (
                self.status(),
                Json(serde_json::json!({ "status": "refused", "error": error, "errors": errors })),
            )
                .into_response(),
        )
    }
}

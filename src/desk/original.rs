//! An item as the citizen sent it, as its door describes it
//! ([`crate::channels::Door::original`]: an e-mail's HTML sanitised, a scan
//! page by page beside its OCR text, an SMS's or a form's fields);
//! attachments and originals are downloaded, never shown inline
//! (`Content-Disposition: attachment`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use super::auth::{Role, viewer};
use super::status_page;
use crate::channels::Kind;
pub use crate::channels::original::{Original, ScanPage};
use crate::http::HttpState;
use crate::message::IntakeMessage;

/// The stored message of an item, for a signed-in viewer.
async fn message_for(
    s: &HttpState,
    session: &Session,
    headers: &HeaderMap,
    item: &str,
) -> Result<IntakeMessage, Response> {
    let v = viewer(s, session, headers, None).await?;
    v.require(Role::ReadOnly)?;
    let not_found = || {
        status_page(
            StatusCode::NOT_FOUND,
            v.lang,
            v.lang.t("error.not_found_title"),
            v.lang.t("error.not_found"),
        )
    };
    let found = s.registry.find(item).await.map_err(|e| {
        tracing::error!(%item, "desk: {e}");
        not_found()
    })?;
    let Some(found) = found else {
        return Err(not_found());
    };
    // Its files are read (served, or a scan's page drawn) only once clamd
    // has checked them (src/malware.rs).
    if found.state == crate::registry::ItemState::ScanPending.as_str() {
        return Err((
            StatusCode::CONFLICT,
            "this item's files wait for the malware scan; they are served once it is done",
        )
            .into_response());
    }
    s.registry.item_message(&found.id).await.map_err(|e| {
        tracing::error!(%item, "desk: stored message unreadable: {e}");
        not_found()
    })
}

/// A download: never rendered by the browser (the router's CSP and
/// nosniff apply to it as to every response).
fn download(bytes: Vec<u8>, content_type: &str, filename: &str) -> Response {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded =
        percent_encoding::utf8_percent_encode(filename, percent_encoding::NON_ALPHANUMERIC);
    let disposition = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}");
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// A blob clamd found malware in is never served ([`crate::malware`]).
async fn refused_if_quarantined(s: &HttpState, sha256: &str) -> Option<Response> {
    match s.registry.quarantined(sha256).await {
        Ok(None) => None,
        Ok(Some(signature)) => Some(
            (
                StatusCode::FORBIDDEN,
                format!(
                    "quarantined: malware ({signature}) was found in this file; it is not served"
                ),
            )
                .into_response(),
        ),
        Err(e) => {
            tracing::error!("quarantine state unknown: {e}");
            Some(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "whether this file is quarantined cannot be checked now; try again",
                )
                    .into_response(),
            )
        }
    }
}

/// `GET /desk/items/{item}/attachments/{ordinal}` (from 0).
pub async fn attachment(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path((item, ordinal)): Path<(String, usize)>,
) -> Response {
    let msg = match message_for(&s, &session, &headers, &item).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(a) = msg.attachments.get(ordinal) else {
        return (StatusCode::NOT_FOUND, "no such attachment").into_response();
    };
    if let Some(refusal) = refused_if_quarantined(&s, &a.sha256).await {
        return refusal;
    }
    match s.blobs.get(&a.sha256).await {
        Ok(bytes) => download(bytes, &a.content_type, &a.filename),
        Err(e) => {
            tracing::error!(item = %msg.id, sha256 = %a.sha256, "attachment unreadable: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the attachment's blob is unreadable; see the log",
            )
                .into_response()
        }
    }
}

/// `GET /desk/items/{item}/original`: the raw mail or scan as received.
pub async fn original_file(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path(item): Path<String>,
) -> Response {
    let msg = match message_for(&s, &session, &headers, &item).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(file) = Kind::original_file_of(&msg) else {
        return (StatusCode::NOT_FOUND, "this item has no original file").into_response();
    };
    let (sha, content_type, name) = (file.sha256, file.content_type, file.name);
    if let Some(refusal) = refused_if_quarantined(&s, &sha).await {
        return refusal;
    }
    match s.blobs.get(&sha).await {
        Ok(bytes) => download(bytes, &content_type, &name),
        Err(e) => {
            tracing::error!(item = %msg.id, "original unreadable: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the original's blob is unreadable; see the log",
            )
                .into_response()
        }
    }
}

/// `GET /desk/items/{item}/pages/{n}`: a scanned page as PNG.
pub async fn page_image(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path((item, page)): Path<(String, u32)>,
) -> Response {
    let msg = match message_for(&s, &session, &headers, &item).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(sha) = msg
        .meta::<crate::channels::scan::ScanMeta>()
        .map(|m| m.original.sha256)
        .filter(|sha| !sha.is_empty())
    else {
        return (StatusCode::NOT_FOUND, "this item is not a scan").into_response();
    };
    let (path, bytes) = match (s.blobs.path_of(&sha), s.blobs.get(&sha).await) {
        (Ok(p), Ok(b)) => (p, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(item = %msg.id, "scan original unreadable: {e}");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the scan's blob is unreadable; see the log",
            )
                .into_response();
        }
    };
    match crate::channels::scan::pages::preview_png(
        &path,
        std::sync::Arc::new(bytes),
        page,
        1000,
        200_000_000,
    )
    .await
    {
        Ok(png) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        Err(e) => {
            tracing::warn!(item = %msg.id, page, "page preview: {e}");
            (StatusCode::UNPROCESSABLE_ENTITY, e).into_response()
        }
    }
}

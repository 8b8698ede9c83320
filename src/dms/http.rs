//! What every connector does with HTTP: one client with a timeout, answers
//! sorted into [`DmsError`]s by status, JSON read with the request named,
//! and secrets read from the settings (or a file) at each use.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::DmsError;

/// The client every connector uses.
pub(super) fn client(timeout: Duration) -> Result<reqwest::Client, DmsError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .user_agent(concat!("pietura/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| DmsError::Config(format!("HTTP client: {e}")))
}

/// Sends `req`; a status outside 2xx becomes the matching error, with
/// `what` (e.g. "Mayan: creating the document") and the start of the body.
pub(super) async fn send(req: RequestBuilder, what: &str) -> Result<Response, DmsError> {
    let resp = req.send().await.map_err(|e| {
        let why = if e.is_timeout() {
            "no answer in time".to_string()
        } else if e.is_connect() {
            format!("cannot connect ({})", root_cause(&e))
        } else {
            root_cause(&e)
        };
        DmsError::Unavailable(format!("{what}: {why}"))
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    let text = format!("{what}: HTTP {status}: {}", body.trim());
    Err(match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => DmsError::Auth(text),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => DmsError::Unavailable(text),
        s if s.is_server_error() => DmsError::Unavailable(text),
        _ => DmsError::Rejected(text),
    })
}

/// Reads a JSON answer into `T`.
pub(super) async fn json<T: DeserializeOwned>(resp: Response, what: &str) -> Result<T, DmsError> {
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| DmsError::Unavailable(format!("{what}: reading the answer: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let start: String = String::from_utf8_lossy(&bytes).chars().take(120).collect();
        DmsError::Malformed(format!("{what}: not the JSON expected ({e}): {start}"))
    })
}

/// A secret given inline or in a file (read at each use, so a rotated
/// token is picked up without a restart). `key` names the setting.
pub(super) fn secret(
    inline: &Option<SecretString>,
    file: &Option<PathBuf>,
    key: &str,
) -> Result<Option<String>, DmsError> {
    match (inline, file) {
        (Some(v), _) => Ok(Some(v.expose_secret().trim().to_string())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| {
                DmsError::Config(format!(
                    "[dms.connector] {key}_file = {}: cannot read it: {e}",
                    path.display()
                ))
            }),
        (None, None) => Ok(None),
    }
}

/// `url` without a trailing slash; checked for a scheme at load.
pub(super) fn base(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

/// The problem with a base URL, if any.
pub(super) fn check_url(url: &str) -> Option<String> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => None,
        Ok(_) => Some("must start with http:// or https://".into()),
        Err(e) => Some(format!("not a URL ({e})")),
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

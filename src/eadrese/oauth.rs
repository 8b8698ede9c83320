//! The OAuth2 bearer token some DIV environments require on top of mutual
//! TLS: client credentials (RFC 6749 s.4.4) posted as a form to the token
//! endpoint, the token kept until shortly before it expires and fetched
//! anew when the service answers 401 (once per call, by the client).

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

/// A token is fetched anew this long before its stated expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// Lifetime assumed when the endpoint states none.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// Who we are to the token endpoint (the channel's `[oauth]`).
#[derive(Clone)]
pub struct OauthClient {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scope: Option<String>,
}

impl std::fmt::Debug for OauthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OauthClient")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Why no token was had; names the token endpoint.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the OAuth2 token endpoint {url} could not be reached: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the OAuth2 token endpoint {url} refused the client credentials (HTTP {status}{detail})"
    )]
    Refused {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("the OAuth2 token endpoint {url} answered HTTP {status}")]
    Unavailable { url: String, status: u16 },
    #[error("the OAuth2 token endpoint {url} gave no usable token: {problem}")]
    Malformed { url: String, problem: String },
}

impl TokenError {
    /// Down or busy: worth another try; refused credentials are not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TokenError::Unreachable { .. } | TokenError::Unavailable { .. }
        )
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenRefusal {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The cached token of one client.
pub(crate) struct TokenSource {
    client: OauthClient,
    cached: Mutex<Option<(SecretString, Instant)>>,
}

impl TokenSource {
    pub(crate) fn new(client: OauthClient) -> Self {
        Self {
            client,
            cached: Mutex::new(None),
        }
    }

    /// A token valid for a while yet: the cached one, or a new one.
    pub(crate) async fn bearer(&self, http: &reqwest::Client) -> Result<SecretString, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.fetch(http).await?;
        let until = Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN.min(lifetime / 2));
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    /// Forgets the cached token if it is `refused` (a call running at the
    /// same time may have fetched a new one already).
    pub(crate) async fn forget(&self, refused: &SecretString) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|(t, _)| t.expose_secret() == refused.expose_secret())
        {
            *cached = None;
        }
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<(SecretString, Duration), TokenError> {
        let c = &self.client;
        let url = || c.token_url.clone();
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.expose_secret()),
        ];
        if let Some(scope) = &c.scope {
            form.push(("scope", scope));
        }
        let response = http
            .post(&c.token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|source| TokenError::Unreachable { url: url(), source })?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|source| TokenError::Unreachable { url: url(), source })?;
        if (400..500).contains(&status) {
            let detail = serde_json::from_slice::<TokenRefusal>(&body)
                .map(|r| match r.error_description {
                    Some(d) => format!(": {}, {d}", r.error),
                    None => format!(": {}", r.error),
                })
                .unwrap_or_default();
            return Err(TokenError::Refused {
                url: url(),
                status,
                detail,
            });
        }
        if status >= 300 {
            return Err(TokenError::Unavailable { url: url(), status });
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|e| TokenError::Malformed {
                url: url(),
                problem: e.to_string(),
            })?;
        if let Some(kind) = &answer.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(TokenError::Malformed {
                url: url(),
                problem: format!("token_type {kind:?}, not Bearer"),
            });
        }
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        Ok((SecretString::from(answer.access_token), lifetime))
    }
}

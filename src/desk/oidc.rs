//! Sign-in through an OpenID provider (Keycloak, Azure AD / Entra ID, …):
//! the authorization code flow with PKCE, `state` and `nonce`, the ID token
//! verified by the `openidconnect` crate (signature against the provider's
//! JWKS, issuer, audience, expiry, nonce).
//!
//! Nothing is stored before the sign-in succeeds: state, nonce and PKCE
//! verifier travel in a signed, short-lived, HttpOnly cookie
//! (`pietura_oidc`, SameSite=Lax so it comes back with the provider's
//! redirect). Accounts: a person signing in for the first time gets a
//! `users` row (source `oidc`, username `oidc:<subject>`) **only when the
//! group mapping gives a role** (`role_map`, or `default_role`); the role
//! follows the provider's groups at every sign-in; an administrator can
//! disable the account at the desk.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;
use tower_sessions::Session;
use tower_sessions::cookie::SameSite;

use super::auth::{Role, SignInError, role_from_groups};
use super::i18n::Lang;
use super::signed;
use crate::http::HttpState;
use crate::registry::accounts::ExternalAccount;

/// The cookie carrying the round trip's state.
const COOKIE: &str = "pietura_oidc";
/// How long a person may take at the provider's pages.
const ROUND_TRIP: Duration = Duration::from_secs(600);
/// Provider metadata and keys are fetched again after this long (key rotation).
const METADATA_TTL: Duration = Duration::from_secs(600);
/// The callback's path; `redirect_url` must end with it.
pub const CALLBACK_PATH: &str = "/login/oidc/callback";

/// `[desk.oidc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The provider's issuer URL (its discovery document is under
    /// `/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// `https://desk.example.lv/login/oidc/callback`, as registered at the provider.
    pub redirect_url: String,
    /// Scopes beyond `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim with the person's groups (a list or one string).
    #[serde(default = "default_claim")]
    pub groups_claim: String,
    /// Group → role (`readonly`, `officer`, `admin`); the highest counts.
    #[serde(default)]
    pub role_map: BTreeMap<String, String>,
    /// The role of a person in none of the mapped groups; none: refused.
    #[serde(default)]
    pub default_role: Option<String>,
    /// The sign-in button's text.
    #[serde(default = "default_label")]
    pub label: String,
}

fn default_scopes() -> Vec<String> {
    vec!["profile".into(), "groups".into()]
}
fn default_claim() -> String {
    "groups".into()
}
fn default_label() -> String {
    "OpenID Connect".into()
}

impl OidcSettings {
    /// Problems as `(key, message)`, all at once.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        let mut issue = |k: &str, m: String| issues.push((format!("desk.oidc.{k}"), m));
        if IssuerUrl::new(self.issuer.clone()).is_err() || !self.issuer.starts_with("http") {
            issue("issuer", "must be the provider's http(s) URL".into());
        }
        if self.client_id.trim().is_empty() {
            issue("client_id", "must not be empty".into());
        }
        match crate::config::resolve_secret(&self.client_secret, &self.client_secret_file) {
            Err(e) => issue("client_secret", e),
            Ok(None) => issue(
                "client_secret",
                "give client_secret or client_secret_file (a confidential client)".into(),
            ),
            Ok(Some(_)) => {}
        }
        if RedirectUrl::new(self.redirect_url.clone()).is_err()
            || !self.redirect_url.ends_with(CALLBACK_PATH)
        {
            issue(
                "redirect_url",
                format!("must be the desk's URL ending in {CALLBACK_PATH}"),
            );
        }
        for (group, role) in &self.role_map {
            if Role::parse(role).is_none() {
                issue(
                    &format!("role_map.{group}"),
                    format!("role {role:?} is unknown: use readonly, officer or admin"),
                );
            }
        }
        if let Some(r) = &self.default_role
            && Role::parse(r).is_none()
        {
            issue(
                "default_role",
                format!("role {r:?} is unknown: use readonly, officer or admin"),
            );
        }
        issues
    }
}

type Discovered = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why the OpenID round trip failed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered nonsense: try again.
    #[error("OpenID provider unavailable: {0}")]
    Provider(String),
    /// The answer does not hold (state, nonce, signature, audience, expiry…).
    #[error("OpenID sign-in rejected: {0}")]
    Rejected(String),
}

/// The configured provider, its metadata fetched on first use and refreshed.
pub struct Oidc {
    settings: OidcSettings,
    secret: String,
    http: reqwest::Client,
    client: Mutex<Option<(Arc<Discovered>, Instant)>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

/// What the cookie carries between the redirect and the callback.
#[derive(Serialize, Deserialize)]
struct RoundTrip {
    state: String,
    nonce: String,
    verifier: String,
}

/// A person the provider vouched for.
#[derive(Debug, Clone)]
pub struct ProviderUser {
    pub subject: String,
    pub display_name: String,
    pub groups: Vec<String>,
    pub role: Option<Role>,
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Result<Oidc, OidcError> {
        let secret =
            crate::config::resolve_secret(&settings.client_secret, &settings.client_secret_file)
                .map_err(OidcError::Rejected)?
                .unwrap_or_default();
        let http = reqwest::Client::builder()
            // The token endpoint must not redirect us anywhere (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        Ok(Oidc {
            settings,
            secret,
            http,
            client: Mutex::new(None),
        })
    }

    pub fn label(&self) -> &str {
        &self.settings.label
    }

    async fn client(&self, fresh: bool) -> Result<Arc<Discovered>, OidcError> {
        let mut cached = self.client.lock().await;
        if let Some((c, at)) = cached.as_ref()
            && !fresh
            && at.elapsed() < METADATA_TTL
        {
            return Ok(c.clone());
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone())
            .map_err(|e| OidcError::Rejected(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Provider(format!("discovery: {e}")))?;
        let redirect = RedirectUrl::new(self.settings.redirect_url.clone())
            .map_err(|e| OidcError::Rejected(e.to_string()))?;
        let client = Arc::new(
            CoreClient::from_provider_metadata(
                metadata,
                ClientId::new(self.settings.client_id.clone()),
                Some(ClientSecret::new(self.secret.clone())),
            )
            .set_redirect_uri(redirect),
        );
        *cached = Some((client.clone(), Instant::now()));
        Ok(client)
    }

    /// The provider's authorization URL and the sealed round-trip state.
    async fn start(&self, signer: &signed::Signer) -> Result<(String, String), OidcError> {
        let client = self.client(false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in &self.settings.scopes {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = request.url();
        let trip = RoundTrip {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        };
        let payload =
            serde_json::to_string(&trip).map_err(|e| OidcError::Rejected(e.to_string()))?;
        Ok((url.to_string(), signer.seal("oidc", &payload, ROUND_TRIP)))
    }

    /// Checks the callback against the cookie, exchanges the code and
    /// verifies the ID token.
    async fn finish(
        &self,
        signer: &signed::Signer,
        sealed: Option<&str>,
        q: &Callback,
    ) -> Result<ProviderUser, OidcError> {
        if let Some(e) = &q.error {
            return Err(OidcError::Rejected(format!("the provider answered {e}")));
        }
        let trip: RoundTrip = sealed
            .and_then(|v| signer.open("oidc", v))
            .and_then(|p| serde_json::from_str(&p).ok())
            .ok_or_else(|| OidcError::Rejected("no valid round-trip cookie".into()))?;
        let state = q.state.as_deref().unwrap_or_default();
        if state.is_empty() || !bool::from(state.as_bytes().ct_eq(trip.state.as_bytes())) {
            return Err(OidcError::Rejected("state does not match".into()));
        }
        let code = q
            .code
            .clone()
            .ok_or_else(|| OidcError::Rejected("no code".into()))?;
        let client = self.client(false).await?;
        let token = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| OidcError::Rejected(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(trip.verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Provider(format!("token exchange: {e}")))?;
        let id_token = token
            .id_token()
            .ok_or_else(|| OidcError::Rejected("no ID token in the answer".into()))?;
        let nonce = Nonce::new(trip.nonce);
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(c) => c.clone(),
            Err(first) => {
                // The provider may have rotated its keys: fetch them once more.
                let again = self.client(true).await?;
                id_token
                    .claims(&again.id_token_verifier(), &nonce)
                    .map_err(|_| OidcError::Rejected(format!("ID token: {first}")))?
                    .clone()
            }
        };
        // The token is verified: read the groups claim from its payload.
        let raw = id_token.to_string();
        let payload: serde_json::Value = raw
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let groups: Vec<String> = match payload.get(&self.settings.groups_claim) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        let subject = claims.subject().as_str().to_string();
        let display_name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_string())
            .or_else(|| claims.preferred_username().map(|u| u.as_str().to_string()))
            .unwrap_or_else(|| subject.clone());
        let role = role_from_groups(
            &groups,
            &self.settings.role_map,
            self.settings.default_role.as_deref(),
        );
        Ok(ProviderUser {
            subject,
            display_name,
            groups,
            role,
        })
    }
}

/// `GET /login/oidc`: off to the provider.
pub async fn start(State(s): State<HttpState>, headers: HeaderMap) -> Response {
    let lang = Lang::pick(None, &headers);
    let Some(oidc) = s.identity.oidc.as_ref() else {
        return Redirect::to("/login").into_response();
    };
    match oidc.start(&s.identity.signer).await {
        Ok((url, sealed)) => {
            let mut r = Redirect::to(&url).into_response();
            if let Some(c) = signed::set_cookie(
                COOKIE,
                &sealed,
                ROUND_TRIP,
                SameSite::Lax,
                s.desk.secure_cookies,
            ) {
                r.headers_mut().append(header::SET_COOKIE, c);
            }
            r
        }
        Err(e) => {
            tracing::error!("OpenID sign-in cannot start: {e}");
            super::status_page(
                StatusCode::SERVICE_UNAVAILABLE,
                lang,
                lang.t("error.unavailable_title"),
                lang.t("login.provider_unavailable"),
            )
        }
    }
}

/// The provider's redirect back.
#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /login/oidc/callback`.
pub async fn callback(
    State(s): State<HttpState>,
    peer: crate::http::client::ClientAddr,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Response {
    let address = peer.ip();
    let lang = Lang::pick(None, &headers);
    let Some(oidc) = s.identity.oidc.as_ref() else {
        return Redirect::to("/login").into_response();
    };
    let sealed = signed::cookie(&headers, COOKIE);
    let outcome = oidc.finish(&s.identity.signer, sealed.as_deref(), &q).await;
    let mut response = match outcome {
        Ok(person) => {
            let result = match person.role {
                None => Err(SignInError::NoRole),
                Some(role) => s
                    .registry
                    .external_account(&ExternalAccount {
                        source: "oidc",
                        external_id: &person.subject,
                        username: &format!("oidc:{}", person.subject),
                        display_name: &person.display_name,
                        role: role.as_str(),
                    })
                    .await
                    .map_err(SignInError::from),
            };
            match super::auth::complete_external(&s, &session, result, "oidc", address, lang).await
            {
                Ok(()) => continue_to_desk(lang),
                Err(r) => r,
            }
        }
        Err(e) => {
            tracing::warn!(%address, "OpenID sign-in failed: {e}");
            let detail = serde_json::json!({ "source": "oidc", "address": address.to_string(), "reason": e.to_string() });
            if let Err(e) = s
                .registry
                .account_event("anonymous", "sign_in_failed", None, &detail)
                .await
            {
                tracing::error!("account audit: {e}");
            }
            let status = match e {
                OidcError::Provider(_) => StatusCode::SERVICE_UNAVAILABLE,
                OidcError::Rejected(_) => StatusCode::UNAUTHORIZED,
            };
            super::status_page(
                status,
                lang,
                lang.t("login.title"),
                lang.t("login.provider_failed"),
            )
        }
    };
    if let Some(c) = signed::set_cookie(
        COOKIE,
        "",
        Duration::ZERO,
        SameSite::Lax,
        s.desk.secure_cookies,
    ) {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

/// The callback arrives from the provider's site, so the browser would not
/// send the (SameSite=Strict) session cookie along a redirect from it: a
/// page of our own continues to the desk.
fn continue_to_desk(lang: Lang) -> Response {
    let text = lang.t("login.continue");
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url=/desk\">\
         <title>{text}</title></head><body><p><a id=\"continue\" href=\"/desk\">{text}</a></p></body></html>"
    ))
    .into_response()
}

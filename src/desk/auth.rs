//! Who is at the desk: local accounts with Argon2id password hashes, the
//! sign-in form (rate-limited per username and per client address), the
//! session's CSRF token, and the role check every page makes.
//!
//! An account is a row of `users`; the session holds only its id, so a
//! disabled account or a changed role takes effect on the next request.
//! OIDC later: another way to reach [`Viewer`], the pages stay as they are.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use super::i18n::Lang;
use super::{Page, page};
use crate::http::HttpState;
use crate::registry::desk::User;

const USER_KEY: &str = "user_id";
const CSRF_KEY: &str = "csrf";

/// What a role may do at the desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Sees the queue and items, decides nothing.
    ReadOnly,
    /// The records officer: decides on items.
    Officer,
    /// Administrator: rules, channels, accounts (and an officer's work).
    Admin,
}

impl Role {
    /// From the `users.role` column; an unknown value grants nothing more than read-only.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "readonly" => Some(Role::ReadOnly),
            "officer" => Some(Role::Officer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "readonly",
            Role::Officer => "officer",
            Role::Admin => "admin",
        }
    }
}

/// Why an account could not be added or changed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("role {0:?} is unknown: use officer, admin or readonly")]
    Role(String),
    #[error(
        "username {0:?}: use 2–64 letters, digits, '.', '-' or '_' (it is typed at every sign-in)"
    )]
    Username(String),
    #[error("the password must have at least 10 characters")]
    WeakPassword,
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

/// An Argon2id PHC string for `password` (a fresh random salt each time).
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    if password.chars().count() < 10 {
        return Err(AccountError::WeakPassword);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Adds an account, or sets a new password and role on an existing one
/// (`pietura user add`). Returns true when the account is new.
pub async fn add_or_update_user(
    registry: &crate::registry::Registry,
    username: &str,
    display_name: &str,
    role: &str,
    password: &str,
) -> Result<bool, AccountError> {
    if Role::parse(role).is_none() {
        return Err(AccountError::Role(role.to_string()));
    }
    let ok_name = (2..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !ok_name {
        return Err(AccountError::Username(username.to_string()));
    }
    let hash = hash_password(password)?;
    if registry.update_user(username, role, &hash).await? {
        return Ok(false);
    }
    registry
        .add_user(username, display_name, role, &hash)
        .await?;
    Ok(true)
}

/// Sign-in attempts per username and per client address.
pub struct LoginLimiter {
    by_user: DefaultKeyedRateLimiter<String>,
    by_address: DefaultKeyedRateLimiter<IpAddr>,
}

impl LoginLimiter {
    /// `per_minute` attempts per username, four times that per address.
    pub fn new(per_minute: u32) -> Arc<Self> {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let wide = NonZeroU32::new(per_minute.max(1).saturating_mul(4)).unwrap_or(n);
        Arc::new(Self {
            by_user: RateLimiter::keyed(Quota::per_minute(n)),
            by_address: RateLimiter::keyed(Quota::per_minute(wide)),
        })
    }

    fn allow(&self, username: &str, peer: IpAddr) -> bool {
        self.by_address.check_key(&peer).is_ok()
            && self.by_user.check_key(&username.to_lowercase()).is_ok()
    }
}

/// A page refused to the viewer (403 with its reason), boxed: it travels
/// in `Result`s through every handler.
#[derive(Debug)]
pub struct Refused(Box<Response>);

impl From<Refused> for Response {
    fn from(r: Refused) -> Response {
        *r.0
    }
}

/// The signed-in person, as every desk page sees them.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: User,
    pub role: Role,
    pub csrf: String,
    pub lang: Lang,
}

impl Viewer {
    /// The name written in the audit log.
    pub fn actor(&self) -> String {
        format!("{} ({})", self.user.display_name, self.user.username)
    }

    /// A 403 page unless the role may do `min`.
    pub fn require(&self, min: Role) -> Result<(), Refused> {
        if self.role >= min {
            Ok(())
        } else {
            Err(Refused(Box::new(forbidden(self.lang))))
        }
    }

    /// Checks a submitted form's CSRF token against the session's.
    pub fn check_csrf(&self, given: &str) -> Result<(), Refused> {
        if bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes())) && !given.is_empty() {
            Ok(())
        } else {
            let page = (StatusCode::FORBIDDEN, self.lang.t("error.csrf").to_string());
            Err(Refused(Box::new(page.into_response())))
        }
    }
}

fn forbidden(lang: Lang) -> Response {
    (
        StatusCode::FORBIDDEN,
        page(Page::message(
            lang,
            lang.t("error.forbidden_title"),
            lang.t("error.forbidden"),
        )),
    )
        .into_response()
}

/// A new random token (CSRF).
fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The session's CSRF token, made on first use.
async fn csrf_of(session: &Session) -> Result<String, Response> {
    match session.get::<String>(CSRF_KEY).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => {
            let t = random_token();
            session
                .insert(CSRF_KEY, &t)
                .await
                .map_err(|e| unavailable(&e.to_string()))?;
            Ok(t)
        }
        Err(e) => Err(unavailable(&e.to_string())),
    }
}

fn unavailable(e: &str) -> Response {
    tracing::error!("desk session store: {e}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the desk cannot reach its database right now; try again in a minute",
    )
        .into_response()
}

/// The signed-in viewer, or a redirect to the sign-in page.
pub async fn viewer(
    s: &HttpState,
    session: &Session,
    headers: &HeaderMap,
    lang_query: Option<&str>,
) -> Result<Viewer, Response> {
    let lang = Lang::pick(lang_query, headers);
    let id = session
        .get::<String>(USER_KEY)
        .await
        .map_err(|e| unavailable(&e.to_string()))?;
    let Some(id) = id else {
        return Err(Redirect::to("/login").into_response());
    };
    let user = s
        .registry
        .user_by_id(&id)
        .await
        .map_err(|e| unavailable(&e.to_string()))?;
    let Some(user) = user.filter(|u| !u.disabled) else {
        let _ = session.flush().await;
        return Err(Redirect::to("/login").into_response());
    };
    let role = Role::parse(&user.role).unwrap_or(Role::ReadOnly);
    Ok(Viewer {
        csrf: csrf_of(session).await?,
        user,
        role,
        lang,
    })
}

#[derive(Template)]
#[template(path = "desk/login.html")]
struct LoginPage {
    lang: Lang,
    csrf: String,
    error: Option<String>,
    username: String,
}

#[derive(Deserialize)]
pub struct LangQuery {
    pub lang: Option<String>,
}

/// `GET /login`.
pub async fn login_form(
    session: Session,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = Lang::pick(q.lang.as_deref(), &headers);
    match csrf_of(&session).await {
        Ok(csrf) => super::html(LoginPage {
            lang,
            csrf,
            error: None,
            username: String::new(),
        }),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
}

/// `POST /login`: checks the form's token, the rate limits, the password;
/// a new session id on success (no fixation).
pub async fn login(
    State(s): State<HttpState>,
    peer: crate::http::client::ClientAddr,
    session: Session,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let lang = Lang::pick(None, &headers);
    let csrf = match csrf_of(&session).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let again = |status: StatusCode, error: &str| {
        let page = super::html(LoginPage {
            lang,
            csrf: csrf.clone(),
            error: Some(error.to_string()),
            username: f.username.clone(),
        });
        (status, page).into_response()
    };
    if !bool::from(f.csrf.as_bytes().ct_eq(csrf.as_bytes())) {
        return again(StatusCode::FORBIDDEN, lang.t("error.csrf"));
    }
    let username = f.username.trim();
    if !s.login_limiter.allow(username, peer.ip()) {
        tracing::warn!(%username, peer = %peer.ip(), "sign-in refused: too many attempts");
        return again(StatusCode::TOO_MANY_REQUESTS, lang.t("login.too_many"));
    }
    let user = match s.registry.user(username).await {
        Ok(u) => u,
        Err(e) => return unavailable(&e.to_string()),
    };
    let user = user.filter(|u| {
        !u.disabled
            && u.password_hash
                .as_deref()
                .is_some_and(|h| verify_password(&f.password, h))
    });
    let Some(user) = user else {
        tracing::warn!(%username, peer = %peer.ip(), "sign-in failed");
        return again(StatusCode::UNAUTHORIZED, lang.t("login.failed"));
    };
    if let Err(e) = session.cycle_id().await {
        return unavailable(&e.to_string());
    }
    let fresh = random_token();
    if let Err(e) = session.insert(USER_KEY, &user.id).await {
        return unavailable(&e.to_string());
    }
    if let Err(e) = session.insert(CSRF_KEY, &fresh).await {
        return unavailable(&e.to_string());
    }
    tracing::info!(username = %user.username, role = %user.role, "signed in");
    Redirect::to("/desk").into_response()
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /logout`.
pub async fn logout(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    match viewer(&s, &session, &headers, None).await {
        Ok(v) => {
            if let Err(r) = v.check_csrf(&f.csrf) {
                return r.into();
            }
            let _ = session.flush().await;
            Redirect::to("/login").into_response()
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("pareiza-parole-1").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("pareiza-parole-1", &h));
        assert!(!verify_password("nepareiza-parole", &h));
        assert_ne!(
            h,
            hash_password("pareiza-parole-1").expect("hash"),
            "salted"
        );
        assert!(matches!(
            hash_password("īsa"),
            Err(AccountError::WeakPassword)
        ));
    }

    #[test]
    fn roles_are_ordered_by_what_they_may_do() {
        assert!(Role::Admin > Role::Officer && Role::Officer > Role::ReadOnly);
        assert_eq!(Role::parse("officer"), Some(Role::Officer));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn sign_in_attempts_are_limited_per_username() {
        let l = LoginLimiter::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(l.allow("anna", ip));
        assert!(l.allow("Anna", ip));
        assert!(!l.allow("anna", ip), "third attempt in a minute");
        assert!(l.allow("janis", ip), "another account is not blocked");
    }
}

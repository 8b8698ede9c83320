//! Who is at the desk: local accounts with Argon2id password hashes,
//! directory accounts (LDAP / Active Directory, [`super::ldap`]) and OpenID
//! accounts ([`super::oidc`]); the sign-in form, the session's CSRF token,
//! and the role check every page makes.
//!
//! An account is a row of `users`; the session holds only its id, so a
//! disabled account or a changed role takes effect on the next request.
//!
//! Sign-in hardening: no session is stored before a sign-in succeeds (the
//! form's CSRF token is a signed double-submit cookie, [`super::signed`]);
//! Argon2 runs on the blocking pool, and for an unknown username against a
//! dummy hash, so the answer takes as long as for a real account; failures
//! slow the guesser ([`super::throttle`]) without locking the user out;
//! sign-ins and failures are on the accounts' audit log, the typed username
//! never (only a keyed fingerprint of it) in logs.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tower_sessions::Session;
use tower_sessions::cookie::SameSite;

use super::i18n::Lang;
use super::ldap::{Directory, LdapError};
use super::oidc::{Oidc, OidcError};
use super::signed::{self, Signer};
use super::throttle::SignInThrottle;
use super::{Page, page};
use crate::http::HttpState;
use crate::registry::RegistryError;
use crate::registry::accounts::ExternalAccount;
use crate::registry::desk::User;

const USER_KEY: &str = "user_id";
const CSRF_KEY: &str = "csrf";

/// What a role may do at the desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// A unit's member: sees and works only the items of their units
    /// (`user_units`), on the unit pages ([`super::unit`]); below read-only,
    /// so every other desk page refuses them.
    Unit,
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
            "unit" => Some(Role::Unit),
            "readonly" => Some(Role::ReadOnly),
            "officer" => Some(Role::Officer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Unit => "unit",
            Role::ReadOnly => "readonly",
            Role::Officer => "officer",
            Role::Admin => "admin",
        }
    }
}

/// Why an account could not be added or changed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("role {0:?} is unknown: use officer, admin, readonly or unit")]
    Role(String),
    #[error(
        "username {0:?}: use 2–64 letters, digits, '.', '-' or '_' (it is typed at every sign-in)"
    )]
    Username(String),
    #[error("the password must have at least 10 characters")]
    WeakPassword,
    #[error("unit {0:?} is not in the rules in force (units.toml)")]
    UnknownUnit(String),
    #[error("no account {0:?}")]
    NoAccount(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

/// An Argon2id PHC string for `password` (a fresh random salt each time).
/// CPU- and memory-heavy: async code calls [`hash_password_blocking`].
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

/// [`hash_password`] on the blocking pool.
pub async fn hash_password_blocking(password: &str) -> Result<String, AccountError> {
    let password = password.to_string();
    let _permit = ARGON2_SLOTS.acquire().await;
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AccountError::Hash(e.to_string()))?
}

/// Argon2 runs at once (each takes ~19 MiB): more wait their turn.
static ARGON2_SLOTS: Semaphore = Semaphore::const_new(4);

/// A hash no password matches in practice, verified for unknown usernames
/// and accounts without a password, so they cost what a real one costs.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password(&signed::random_hex()).unwrap_or_else(|_| {
            // Unreachable (the password is long enough); a valid fixed hash.
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG".into()
        })
    })
}

/// Checks `password` against `phc` (or the dummy hash) on the blocking pool.
pub async fn verify_password_blocking(password: &str, phc: Option<&str>) -> bool {
    let password = password.to_string();
    let phc = phc.map(str::to_string);
    let real = phc.is_some();
    let _permit = ARGON2_SLOTS.acquire().await;
    let ok = tokio::task::spawn_blocking(move || {
        verify_password(&password, phc.as_deref().unwrap_or_else(|| dummy_hash()))
    })
    .await
    .unwrap_or(false);
    ok && real
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
    let hash = hash_password_blocking(password).await?;
    if registry.update_user(username, role, &hash).await? {
        return Ok(false);
    }
    registry
        .add_user(username, display_name, role, &hash)
        .await?;
    Ok(true)
}

/// Sets the units an account works for (`pietura user units`, the users
/// page); each must be a unit of the rules in force (`known`).
pub async fn set_user_units(
    registry: &crate::registry::Registry,
    username: &str,
    units: &[String],
    known: &[String],
    actor: &str,
) -> Result<(), AccountError> {
    if let Some(unknown) = units.iter().find(|u| !known.contains(u)) {
        return Err(AccountError::UnknownUnit(unknown.clone()));
    }
    let user = registry
        .user(username)
        .await?
        .ok_or_else(|| AccountError::NoAccount(username.to_string()))?;
    registry.set_units(&user.id, units, actor).await?;
    Ok(())
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
        actor_of(&self.user)
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

/// The highest role `groups` map to (a group named by its full DN or its
/// CN, case-insensitively), else `default`.
pub fn role_from_groups(
    groups: &[String],
    map: &BTreeMap<String, String>,
    default: Option<&str>,
) -> Option<Role> {
    let cn = |g: &str| {
        g.split(',')
            .next()
            .and_then(|rdn| rdn.split_once('='))
            .map(|(_, v)| v.trim().to_string())
    };
    groups
        .iter()
        .filter_map(|g| {
            map.iter()
                .find(|(k, _)| {
                    k.eq_ignore_ascii_case(g.trim())
                        || cn(g).is_some_and(|c| k.eq_ignore_ascii_case(&c))
                })
                .and_then(|(_, r)| Role::parse(r))
        })
        .max()
        .or_else(|| default.and_then(Role::parse))
}

/// Why a sign-in did not lead to a session.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("wrong username or password")]
    BadCredentials,
    #[error("the account is disabled")]
    Disabled,
    #[error("no desk role for this person's groups")]
    NoRole,
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Directory(#[from] LdapError),
}

impl SignInError {
    /// The audit log's reason.
    fn reason(&self) -> &'static str {
        match self {
            SignInError::BadCredentials => "bad_credentials",
            SignInError::Disabled => "disabled",
            SignInError::NoRole => "no_role",
            SignInError::Registry(_) => "registry_unavailable",
            SignInError::Directory(_) => "directory_unavailable",
        }
    }

    /// Whether it is the system's fault, not the visitor's.
    fn unavailable(&self) -> bool {
        matches!(self, SignInError::Registry(_) | SignInError::Directory(_))
    }
}

/// Why the desk's sign-in could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("[desk.ldap]: {0}")]
    Ldap(#[from] LdapError),
    #[error("[desk.oidc]: {0}")]
    Oidc(#[from] OidcError),
}

/// Everything the sign-in needs, made at start-up.
#[derive(Debug)]
pub struct Identity {
    pub signer: Signer,
    pub throttle: Arc<SignInThrottle>,
    pub directory: Option<Directory>,
    pub oidc: Option<Oidc>,
}

impl Identity {
    pub async fn start(
        registry: &crate::registry::Registry,
        desk: &crate::config::DeskSettings,
    ) -> Result<Identity, IdentityError> {
        Ok(Identity {
            signer: Signer::from_registry(registry).await?,
            throttle: SignInThrottle::new(
                desk.login_attempts_per_minute,
                Duration::from_secs(desk.login_max_delay_seconds),
            ),
            directory: desk.ldap.clone().map(Directory::new).transpose()?,
            oidc: desk.oidc.clone().map(Oidc::new).transpose()?,
        })
    }
}

/// The sign-in form's CSRF cookie (a signed double-submit token).
const LOGIN_COOKIE: &str = "pietura_login";
/// How long a sign-in form stays valid.
const LOGIN_FORM_TTL: Duration = Duration::from_secs(3600);

/// The session's CSRF token (made at sign-in).
async fn csrf_of(session: &Session) -> Result<String, Response> {
    match session.get::<String>(CSRF_KEY).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => {
            let t = signed::random_hex();
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
    tracing::error!("desk sign-in: {e}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the desk cannot reach its database or directory right now; try again in a minute",
    )
        .into_response()
}

/// The signed-in viewer, when their role is at least `role`; otherwise
/// the sign-in page or 403.
pub async fn viewer_as(
    s: &HttpState,
    session: &Session,
    headers: &HeaderMap,
    lang_query: Option<&str>,
    role: Role,
) -> Result<Viewer, Response> {
    let v = viewer(s, session, headers, lang_query).await?;
    v.require(role)?;
    Ok(v)
}

/// A desk form's post: the viewer with at least `role`, then the
/// session's CSRF token — the preamble of every handler that changes
/// something.
pub async fn posting(
    s: &HttpState,
    session: &Session,
    headers: &HeaderMap,
    role: Role,
    csrf: &str,
) -> Result<Viewer, Response> {
    let v = viewer_as(s, session, headers, None, role).await?;
    v.check_csrf(csrf)?;
    Ok(v)
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
    /// The OpenID button's text, when a provider is configured.
    oidc: Option<String>,
}

#[derive(Deserialize)]
pub struct LangQuery {
    pub lang: Option<String>,
}

/// The form's token: the valid one the browser holds, or a new one.
fn form_token(s: &HttpState, headers: &HeaderMap) -> (String, bool) {
    match signed::cookie(headers, LOGIN_COOKIE) {
        Some(t) if s.identity.signer.open("login", &t).is_some() => (t, false),
        _ => (
            s.identity
                .signer
                .seal("login", &signed::random_hex(), LOGIN_FORM_TTL),
            true,
        ),
    }
}

/// The sign-in page with its token (and the cookie, when new).
fn login_page(
    s: &HttpState,
    headers: &HeaderMap,
    lang: Lang,
    status: StatusCode,
    error: Option<&str>,
    username: &str,
) -> Response {
    let (token, new) = form_token(s, headers);
    let mut r = (
        status,
        super::html(LoginPage {
            lang,
            csrf: token.clone(),
            error: error.map(str::to_string),
            username: username.to_string(),
            oidc: s.identity.oidc.as_ref().map(|o| o.label().to_string()),
        }),
    )
        .into_response();
    if new
        && let Some(c) = signed::set_cookie(
            LOGIN_COOKIE,
            &token,
            LOGIN_FORM_TTL,
            SameSite::Strict,
            s.desk.secure_cookies,
        )
    {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

/// `GET /login`: stores nothing (the token is a signed cookie).
pub async fn login_form(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = Lang::pick(q.lang.as_deref(), &headers);
    login_page(&s, &headers, lang, StatusCode::OK, None, "")
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
}

/// Checks a typed username and password: a local account's Argon2 hash,
/// else the directory (when configured), else a dummy hash so an unknown
/// name costs what a known one does.
async fn check_password(
    s: &HttpState,
    username: &str,
    password: &str,
) -> Result<User, SignInError> {
    let found = s.registry.user(username).await?;
    match found {
        Some(u) if u.source == "local" => {
            let ok = verify_password_blocking(password, u.password_hash.as_deref()).await;
            match (ok, u.disabled) {
                (true, false) => Ok(u),
                (true, true) => Err(SignInError::Disabled),
                (false, _) => Err(SignInError::BadCredentials),
            }
        }
        Some(u) if u.source == "ldap" && s.identity.directory.is_some() => {
            ldap_sign_in(s, username, password).await
        }
        None if s.identity.directory.is_some() => ldap_sign_in(s, username, password).await,
        _ => {
            verify_password_blocking(password, None).await;
            Err(SignInError::BadCredentials)
        }
    }
}

async fn ldap_sign_in(s: &HttpState, username: &str, password: &str) -> Result<User, SignInError> {
    let Some(directory) = s.identity.directory.as_ref() else {
        return Err(SignInError::BadCredentials);
    };
    let person = directory
        .authenticate(username, password)
        .await?
        .ok_or(SignInError::BadCredentials)?;
    let role = person.role.ok_or(SignInError::NoRole)?;
    let user = s
        .registry
        .external_account(&ExternalAccount {
            source: "ldap",
            external_id: &person.dn,
            username,
            display_name: &person.display_name,
            role: role.as_str(),
        })
        .await?;
    if user.disabled {
        return Err(SignInError::Disabled);
    }
    Ok(user)
}

/// A new session for `user` (a new id: no fixation), noted on the account
/// and the audit log.
async fn begin_session(
    s: &HttpState,
    session: &Session,
    user: &User,
    address: IpAddr,
) -> Result<(), Response> {
    session
        .cycle_id()
        .await
        .map_err(|e| unavailable(&e.to_string()))?;
    session
        .insert(USER_KEY, &user.id)
        .await
        .map_err(|e| unavailable(&e.to_string()))?;
    session
        .insert(CSRF_KEY, signed::random_hex())
        .await
        .map_err(|e| unavailable(&e.to_string()))?;
    if let Err(e) = s.registry.note_sign_in(&user.id).await {
        tracing::error!("last sign-in: {e}");
    }
    let detail = serde_json::json!({ "source": user.source, "address": address.to_string() });
    if let Err(e) = s
        .registry
        .account_event(&actor_of(user), "sign_in", Some(&user.id), &detail)
        .await
    {
        tracing::error!("account audit: {e}");
    }
    tracing::info!(user_id = %user.id, role = %user.role, source = %user.source, "signed in");
    Ok(())
}

/// Notes a refused sign-in on the audit log (the account when there is
/// one, else only a fingerprint of the typed name) and in the log.
async fn note_failure(
    s: &HttpState,
    typed: Option<&str>,
    source: &str,
    address: IpAddr,
    e: &SignInError,
) {
    let fingerprint = typed.map(|t| s.identity.signer.fingerprint(t));
    let account = match typed {
        Some(t) => s.registry.user(t).await.ok().flatten(),
        None => None,
    };
    tracing::warn!(
        user_fingerprint = fingerprint.as_deref().unwrap_or("-"),
        %address,
        source,
        reason = e.reason(),
        "sign-in refused"
    );
    if e.unavailable() {
        tracing::error!("sign-in: {e}");
    }
    let detail = serde_json::json!({
        "source": source,
        "address": address.to_string(),
        "reason": e.reason(),
        "user_fingerprint": fingerprint,
    });
    if let Err(e) = s
        .registry
        .account_event(
            "anonymous",
            "sign_in_failed",
            account.as_ref().map(|u| u.id.as_str()),
            &detail,
        )
        .await
    {
        tracing::error!("account audit: {e}");
    }
}

/// `POST /login`: the form's double-submit token, the throttle's delay,
/// the password; a new session on success.
pub async fn login(
    State(s): State<HttpState>,
    peer: crate::http::client::ClientAddr,
    session: Session,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let address = peer.ip();
    let lang = Lang::pick(None, &headers);
    let username = f.username.trim();
    let again = |status: StatusCode, error: &str| {
        login_page(&s, &headers, lang, status, Some(error), username)
    };
    let cookie = signed::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let token_ok = !cookie.is_empty()
        && bool::from(f.csrf.as_bytes().ct_eq(cookie.as_bytes()))
        && s.identity.signer.open("login", &cookie).is_some();
    if !token_ok {
        return again(StatusCode::FORBIDDEN, lang.t("error.csrf"));
    }
    if username.is_empty() || username.len() > 256 || f.password.len() > 1024 {
        return again(StatusCode::UNAUTHORIZED, lang.t("login.failed"));
    }
    let Some(attempt) = s.identity.throttle.admit(username, address) else {
        tracing::warn!(%address, "sign-in refused: too many attempts at once from one address");
        return again(StatusCode::TOO_MANY_REQUESTS, lang.t("login.too_many"));
    };
    if !attempt.delay.is_zero() {
        tokio::time::sleep(attempt.delay).await;
    }
    let outcome = check_password(&s, username, &f.password).await;
    drop(attempt);
    match outcome {
        Ok(user) => {
            s.identity.throttle.succeeded(username, address);
            if let Err(r) = begin_session(&s, &session, &user, address).await {
                return r;
            }
            let mut r = Redirect::to("/desk").into_response();
            if let Some(c) = signed::set_cookie(
                LOGIN_COOKIE,
                "",
                Duration::ZERO,
                SameSite::Strict,
                s.desk.secure_cookies,
            ) {
                r.headers_mut().append(header::SET_COOKIE, c);
            }
            r
        }
        Err(e) => {
            if !e.unavailable() {
                s.identity.throttle.failed(username, address);
            }
            note_failure(&s, Some(username), "password", address, &e).await;
            if e.unavailable() {
                return again(StatusCode::SERVICE_UNAVAILABLE, lang.t("error.unavailable"));
            }
            let text = match e {
                SignInError::NoRole => lang.t("login.no_role"),
                _ => lang.t("login.failed"),
            };
            again(StatusCode::UNAUTHORIZED, text)
        }
    }
}

/// Ends an external sign-in (OpenID): a session for the account, or the
/// refusal noted and shown.
pub async fn complete_external(
    s: &HttpState,
    session: &Session,
    account: Result<User, SignInError>,
    source: &str,
    address: IpAddr,
    lang: Lang,
) -> Result<(), Response> {
    let account = account.and_then(|u| {
        if u.disabled {
            Err(SignInError::Disabled)
        } else {
            Ok(u)
        }
    });
    match account {
        Ok(user) => begin_session(s, session, &user, address).await,
        Err(e) => {
            note_failure(s, None, source, address, &e).await;
            let (status, text) = match &e {
                _ if e.unavailable() => (StatusCode::SERVICE_UNAVAILABLE, "error.unavailable"),
                SignInError::NoRole => (StatusCode::FORBIDDEN, "login.no_role"),
                _ => (StatusCode::FORBIDDEN, "login.disabled"),
            };
            Err(super::status_page(
                status,
                lang,
                lang.t("login.title"),
                lang.t(text),
            ))
        }
    }
}

/// The name written in the audit log for an account.
pub fn actor_of(user: &User) -> String {
    format!("{} ({})", user.display_name, user.username)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
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
    fn groups_map_to_their_highest_role_by_dn_or_cn() {
        let map: BTreeMap<String, String> = [
            ("pietura-officers", "officer"),
            ("cn=Pietura Admins,ou=groups,dc=novads,dc=lv", "admin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            role_from_groups(
                &g(&["cn=pietura-officers,ou=groups,dc=novads,dc=lv"]),
                &map,
                None
            ),
            Some(Role::Officer)
        );
        assert_eq!(
            role_from_groups(
                &g(&[
                    "pietura-officers",
                    "CN=Pietura Admins,OU=groups,DC=novads,DC=lv"
                ]),
                &map,
                None
            ),
            Some(Role::Admin)
        );
        assert_eq!(role_from_groups(&g(&["kitchen"]), &map, None), None);
        assert_eq!(
            role_from_groups(&g(&[]), &map, Some("readonly")),
            Some(Role::ReadOnly)
        );
    }

    #[tokio::test]
    async fn unknown_users_cost_an_argon2_verification_too() {
        // A dummy hash is verified (and never matches).
        assert!(!verify_password_blocking("anything-at-all", None).await);
        let h = hash_password("pareiza-parole-1").expect("hash");
        assert!(verify_password_blocking("pareiza-parole-1", Some(&h)).await);
        assert!(
            PasswordHash::new(dummy_hash()).is_ok(),
            "a real Argon2 hash"
        );
    }
}

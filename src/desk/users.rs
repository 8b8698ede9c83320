//! The administrators' users page: every account with its role, where it
//! signs in (password, OpenID Connect, LDAP / AD), whether it is disabled
//! and when it last signed in; a local account added, any account disabled
//! or enabled, a local account's role changed (directory and OpenID
//! accounts take their role from their groups at each sign-in). Every form
//! is CSRF-protected and every change is on the accounts' audit log, shown
//! below the list with the latest sign-ins and failures.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Session;

use super::auth::{AccountError, Role, add_or_update_user, posting, set_user_units, viewer_as};
use super::i18n::Lang;
use super::review::local_time;
use super::{Nav, html, status_page};
use crate::http::HttpState;

/// One account's row.
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub name: String,
    pub role: String,
    pub source: String,
    pub local: bool,
    pub disabled: bool,
    pub last_sign_in: String,
    pub is_self: bool,
    /// The units the account works for, comma-separated.
    pub units: String,
}

/// One audit line.
pub struct EventRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "desk/users.html")]
struct UsersPage {
    l: Lang,
    nav: Nav,
    rows: Vec<UserRow>,
    events: Vec<EventRow>,
    roles: Vec<&'static str>,
    done: Option<String>,
    error: Option<String>,
}

/// `?lang=`, and the outcome of a change just made.
#[derive(Deserialize)]
pub struct UsersQuery {
    lang: Option<String>,
    done: Option<String>,
    error: Option<String>,
}

fn unavailable(l: Lang, e: &dyn std::fmt::Display) -> Response {
    tracing::error!("users page: {e}");
    status_page(
        StatusCode::SERVICE_UNAVAILABLE,
        l,
        l.t("error.unavailable_title"),
        l.t("error.unavailable"),
    )
}

/// `GET /admin/users`.
pub async fn list(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<UsersQuery>,
) -> Response {
    let v = match viewer_as(&s, &session, &headers, q.lang.as_deref(), Role::Admin).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let l = v.lang;
    let (accounts, events) = match (
        s.registry.accounts().await,
        s.registry.account_events(50).await,
    ) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(e), _) | (_, Err(e)) => return unavailable(l, &e),
    };
    let mut units = Vec::with_capacity(accounts.len());
    for a in &accounts {
        match s.registry.units_of(&a.user.id).await {
            Ok(u) => units.push(u.join(", ")),
            Err(e) => return unavailable(l, &e),
        }
    }
    let rows = accounts
        .into_iter()
        .zip(units)
        .map(|(a, units)| UserRow {
            units,
            is_self: a.user.id == v.user.id,
            id: a.user.id,
            username: a.user.username,
            name: a.user.display_name,
            role: a.user.role,
            local: a.user.source == "local",
            source: l.t(&format!("users.{}", a.user.source)).to_string(),
            disabled: a.user.disabled,
            last_sign_in: a
                .last_sign_in_at
                .as_deref()
                .map(local_time)
                .unwrap_or_else(|| l.t("users.never").to_string()),
        })
        .collect();
    let events = events
        .into_iter()
        .map(|e| EventRow {
            at: local_time(&e.at),
            actor: e.actor,
            action: e.action,
            detail: match &e.detail {
                serde_json::Value::Object(m) => m
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| {
                        format!(
                            "{k}: {}",
                            v.as_str().map_or_else(|| v.to_string(), str::to_string)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            },
        })
        .collect();
    // Only known codes: the page never shows text taken from its URL.
    let error = match q.error.as_deref() {
        Some(
            code @ ("exists" | "self" | "invalid_username" | "weak_password" | "unknown_role"
            | "role_by_directory" | "unknown_unit"),
        ) => Some(l.t(&format!("users.{code}")).to_string()),
        _ => None,
    };
    html(UsersPage {
        l,
        nav: Nav::of(&v, "/admin/users"),
        rows,
        events,
        roles: vec!["unit", "readonly", "officer", "admin"],
        done: q.done.map(|d| {
            if d == "added" {
                l.t("users.added").to_string()
            } else {
                l.t("users.changed").to_string()
            }
        }),
        error,
    })
}

/// The add form.
#[derive(Deserialize)]
pub struct AddForm {
    csrf: String,
    username: String,
    name: String,
    role: String,
    password: String,
}

fn back(query: &str) -> Response {
    Redirect::to(&format!("/admin/users?{query}")).into_response()
}

fn problem(e: &AccountError) -> Response {
    back(match e {
        AccountError::Username(_) => "error=invalid_username",
        AccountError::WeakPassword => "error=weak_password",
        _ => "error=unknown_role",
    })
}

/// `POST /admin/users/add`: a local account.
pub async fn add(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Form(f): Form<AddForm>,
) -> Response {
    let v = match posting(&s, &session, &headers, Role::Admin, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let username = f.username.trim();
    match s.registry.user(username).await {
        Ok(Some(_)) => return back("error=exists"),
        Ok(None) => {}
        Err(e) => return unavailable(v.lang, &e),
    }
    let name = if f.name.trim().is_empty() {
        username
    } else {
        f.name.trim()
    };
    match add_or_update_user(&s.registry, username, name, &f.role, &f.password).await {
        Ok(_) => {}
        Err(AccountError::Registry(e)) => return unavailable(v.lang, &e),
        Err(e) => return problem(&e),
    }
    let added = match s.registry.user(username).await {
        Ok(u) => u,
        Err(e) => return unavailable(v.lang, &e),
    };
    let detail = serde_json::json!({ "username": username, "role": f.role, "source": "local" });
    if let Err(e) = s
        .registry
        .account_event(
            &v.actor(),
            "user_added",
            added.as_ref().map(|u| u.id.as_str()),
            &detail,
        )
        .await
    {
        return unavailable(v.lang, &e);
    }
    back("done=added")
}

/// The disable / enable form.
#[derive(Deserialize)]
pub struct StateForm {
    csrf: String,
    /// `disable` or `enable`.
    action: String,
}

/// `POST /admin/users/{id}/state`.
pub async fn set_state(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<StateForm>,
) -> Response {
    let v = match posting(&s, &session, &headers, Role::Admin, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let disable = match f.action.as_str() {
        "disable" => true,
        "enable" => false,
        _ => return (StatusCode::BAD_REQUEST, "action must be disable or enable").into_response(),
    };
    if disable && id == v.user.id {
        return back("error=self");
    }
    match s.registry.set_user_disabled(&id, disable).await {
        Ok(true) => {}
        Ok(false) => {
            return status_page(
                StatusCode::NOT_FOUND,
                v.lang,
                v.lang.t("error.not_found_title"),
                v.lang.t("users.title"),
            );
        }
        Err(e) => return unavailable(v.lang, &e),
    }
    let action = if disable {
        "user_disabled"
    } else {
        "user_enabled"
    };
    if let Err(e) = s
        .registry
        .account_event(&v.actor(), action, Some(&id), &serde_json::json!({}))
        .await
    {
        return unavailable(v.lang, &e);
    }
    tracing::info!(user_id = %id, action, "account changed at the desk");
    back("done=changed")
}

/// The role form.
#[derive(Deserialize)]
pub struct RoleForm {
    csrf: String,
    role: String,
}

/// `POST /admin/users/{id}/role`: a local account's role.
pub async fn set_role(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<RoleForm>,
) -> Response {
    let v = match posting(&s, &session, &headers, Role::Admin, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(role) = Role::parse(&f.role) else {
        return problem(&AccountError::Role(f.role.clone()));
    };
    if id == v.user.id && role < Role::Admin {
        return back("error=self");
    }
    let before = match s.registry.user_by_id(&id).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return status_page(
                StatusCode::NOT_FOUND,
                v.lang,
                v.lang.t("error.not_found_title"),
                v.lang.t("users.title"),
            );
        }
        Err(e) => return unavailable(v.lang, &e),
    };
    match s.registry.set_user_role(&id, role.as_str()).await {
        Ok(true) => {}
        Ok(false) => return back("error=role_by_directory"),
        Err(e) => return unavailable(v.lang, &e),
    }
    let detail = serde_json::json!({ "from": before.role, "to": role.as_str() });
    if let Err(e) = s
        .registry
        .account_event(&v.actor(), "role_changed", Some(&id), &detail)
        .await
    {
        return unavailable(v.lang, &e);
    }
    back("done=changed")
}

#[derive(Deserialize)]
pub struct UnitsForm {
    csrf: String,
    /// Unit ids, separated by commas or spaces.
    units: String,
}

/// `POST /admin/users/{id}/units`: the units an account works for.
pub async fn set_units(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<UnitsForm>,
) -> Response {
    let v = match posting(&s, &session, &headers, Role::Admin, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let user = match s.registry.user_by_id(&id).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return status_page(
                StatusCode::NOT_FOUND,
                v.lang,
                v.lang.t("error.not_found_title"),
                v.lang.t("users.title"),
            );
        }
        Err(e) => return unavailable(v.lang, &e),
    };
    let units: Vec<String> = f
        .units
        .split([',', ' '])
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    let known: Vec<String> = s.rules.load().units.keys().cloned().collect();
    match set_user_units(&s.registry, &user.username, &units, &known, &v.actor()).await {
        Ok(()) => back("done=changed"),
        Err(AccountError::UnknownUnit(_)) => back("error=unknown_unit"),
        Err(e) => unavailable(v.lang, &e),
    }
}

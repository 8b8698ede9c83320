//! The records office's web desk, served by the daemon's HTTP server:
//!
//! - [`auth`]: accounts, sign-in, sessions' CSRF token, roles;
//! - [`ldap`]: sign-in against LDAP / Active Directory with group → role;
//! - [`oidc`]: sign-in through an OpenID provider (code flow, PKCE);
//! - [`signed`]: signed stateless tokens for visitors not signed in yet;
//! - [`throttle`]: growing delays for failed sign-ins, no lockout;
//! - [`users`]: the administrators' accounts page;
//! - [`review`]: the review queue, the item page and the officer's decisions;
//! - [`original`]: an item as the citizen sent it (sanitised e-mail HTML,
//!   scanned pages beside their OCR text, SMS and form fields);
//! - [`suggest`]: the unit the officers' past decisions point to;
//! - [`rules_editor`]: rules, units and services edited with the files'
//!   validation, a dry run against recent items, versions and roll-back;
//! - [`channels`]: each channel's state for administrators;
//! - [`parked_view`]: parked items (accepted, not registered) with a retry;
//! - [`service_search`]: the service catalogue searched at the counter;
//! - [`consultations`]: visits and calls that are not submissions, logged
//!   without personal data;
//! - [`counter_form`]: a visitor's or caller's submission registered by an
//!   officer (counter and phone intake).
//! - [`register_view`]: the register of every item, filtered, searched
//!   (words folded as the rules fold them, or a registration number),
//!   paged and exported as CSV or XLSX;
//! - [`unit`]: a unit's items and its work on them (deadline actions,
//!   assignment, comments, return, the answer).
//!
//! Server-rendered (askama), usable without JavaScript; `static/desk.js`
//! only adds keyboard shortcuts. Every page checks the viewer's role.

pub mod auth;
pub mod channels;
pub mod consultations;
pub mod counter_form;
pub mod i18n;
pub mod ldap;
pub mod oidc;
pub mod original;
pub mod parked_view;
pub mod register_view;
pub mod review;
pub mod rules_editor;
pub mod service_search;
pub mod sessions;
pub mod signed;
pub mod suggest;
pub mod throttle;
pub mod unit;
pub mod users;

use askama::Template;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::http::HttpState;
use auth::{Role, Viewer};
use i18n::Lang;

/// The desk's session layer: a session is stored only once it holds
/// something (a signed-in account), never for an anonymous visit.
pub fn session_layer(s: &HttpState) -> SessionManagerLayer<sessions::RegistrySessions> {
    SessionManagerLayer::new(sessions::RegistrySessions(s.registry.clone()))
        .with_name("pietura_session")
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(s.desk.secure_cookies)
        .with_path("/")
        .with_always_save(true)
        .with_expiry(Expiry::OnInactivity(
            tower_sessions::cookie::time::Duration::minutes(s.desk.session_idle_minutes),
        ))
}

/// The desk's routes, with their session layer (the API and channels' routes have none).
pub fn routes(s: &HttpState) -> Router<HttpState> {
    let layer = session_layer(s);
    Router::new()
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/login/oidc", get(oidc::start))
        .route(oidc::CALLBACK_PATH, get(oidc::callback))
        .route("/logout", post(auth::logout))
        .route("/desk", get(review::queue))
        .route("/desk/register", get(register_view::page))
        .route("/desk/register.csv", get(register_view::csv_export))
        .route("/desk/register.xlsx", get(register_view::xlsx_export))
        .route("/desk/items/{item}", get(review::item_page))
        .route("/desk/items/{item}/decide", post(review::decide))
        .route(
            "/desk/items/{item}/attachments/{ordinal}",
            get(original::attachment),
        )
        .route("/desk/items/{item}/original", get(original::original_file))
        .route("/desk/items/{item}/pages/{page}", get(original::page_image))
        .route("/desk/unit", get(unit::unit_page))
        .route("/desk/unit/items/{item}", get(unit::item_page))
        .route("/desk/unit/items/{item}/act", post(unit::act))
        .route("/desk/unit/items/{item}/answer", post(unit::answer))
        .route("/desk/unit/answers/{id}/letter.pdf", get(unit::letter))
        .route("/desk/unit/answers/{id}/posted", post(unit::posted))
        .route("/desk/parked", get(parked_view::list))
        .route("/desk/services", get(service_search::page))
        .route(
            "/desk/counter",
            get(counter_form::form).post(counter_form::register),
        )
        .route("/desk/counter/{id}", get(counter_form::done))
        .route("/desk/counter/{id}/receipt.pdf", get(counter_form::receipt))
        .route(
            "/desk/consultations",
            get(consultations::form).post(consultations::log),
        )
        .route("/desk/parked/{id}/retry", post(parked_view::retry))
        .route("/admin/rules", get(rules_editor::editor))
        .route("/admin/rules/check", post(rules_editor::check))
        .route("/admin/rules/save", post(rules_editor::save))
        .route("/admin/rules/rollback", post(rules_editor::rollback))
        .route("/admin/channels", get(channels::overview))
        .route("/admin/users", get(users::list))
        .route("/admin/users/add", post(users::add))
        .route("/admin/users/{id}/state", post(users::set_state))
        .route("/admin/users/{id}/role", post(users::set_role))
        .route("/admin/users/{id}/units", post(users::set_units))
        .route("/static/desk.js", get(script))
        .layer(layer)
        .layer(axum::middleware::from_fn(remember_language))
}

/// `?lang=en|lv` on any desk page is remembered in a cookie, so the choice
/// holds on the pages that follow.
async fn remember_language(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let chosen = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("lang="))
            .filter(|l| matches!(*l, "lv" | "en"))
            .map(str::to_string)
    });
    let mut response = next.run(req).await;
    if let Some(lang) = chosen
        && let Ok(v) = header::HeaderValue::from_str(&format!(
            "pietura_lang={lang}; Path=/; Max-Age=31536000; SameSite=Lax"
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// What the desk's settings decide at start-up.
#[derive(Debug, Clone)]
pub struct DeskOptions {
    pub secure_cookies: bool,
    pub session_idle_minutes: i64,
    pub dry_run_items: i64,
    /// The dashboard and reports are open to anyone (`desk.public_statistics`).
    pub public_statistics: bool,
    /// `http.public_url` without its trailing `/`: the citizens' status links.
    pub public_url: String,
    /// Font and letterhead of the counter receipts (`[print]`).
    pub print: crate::print::PrintSettings,
}

/// The header every desk page shows: who is signed in, what they may open.
pub struct Nav {
    pub name: String,
    pub csrf: String,
    pub officer: bool,
    pub admin: bool,
    /// A unit's member: their units' page instead of the review queue.
    pub unit: bool,
    /// The path of the page, for the language switch.
    pub here: String,
}

impl Nav {
    pub fn of(v: &Viewer, here: &str) -> Nav {
        Nav {
            name: v.user.display_name.clone(),
            csrf: v.csrf.clone(),
            officer: v.role >= Role::Officer,
            admin: v.role >= Role::Admin,
            unit: v.role == Role::Unit,
            here: here.to_string(),
        }
    }
}

/// A plain message page (forbidden, not found, conflict …).
#[derive(Template)]
#[template(path = "desk/message.html")]
pub struct Page {
    pub l: Lang,
    pub title: String,
    pub text: String,
}

impl Page {
    pub fn message(l: Lang, title: &str, text: &str) -> Page {
        Page {
            l,
            title: title.to_string(),
            text: text.to_string(),
        }
    }
}

/// Renders a page; a template error is logged and answered with 500.
pub fn html(t: impl Template) -> Response {
    match t.render() {
        Ok(h) => Html(h).into_response(),
        Err(e) => {
            tracing::error!("desk template rendering failed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A message page.
pub fn page(p: Page) -> Response {
    html(p)
}

/// A message page with a status.
pub fn status_page(status: StatusCode, l: Lang, title: &str, text: &str) -> Response {
    (status, page(Page::message(l, title, text))).into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/desk.js"),
    )
        .into_response()
}

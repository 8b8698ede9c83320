//! The desk's service search: a counter officer who is not the specialist
//! finds the service by any word of its name, description or documents
//! (folded as the rules fold text, [`crate::rules::catalogue::search`]),
//! reads who may receive it, the channels and documents, and starts the
//! counter submission or logs a consultation with it pre-selected.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use tower_sessions::Session;

use super::auth::{Role, viewer_as};
use super::i18n::Lang;
use super::{Nav, html};
use crate::http::HttpState;
use crate::rules::Service;
use crate::rules::catalogue::{ServiceText, search};

/// A way to apply, in words.
pub fn channel_label(l: Lang, c: &str) -> String {
    match c {
        "post" => l.t("catalogue.via_post").to_string(),
        "e_adrese" => l.t("catalogue.via_e_adrese").to_string(),
        other => l.channel_kind(other),
    }
}

/// One service as a page shows it, in the reader's language.
pub struct ServiceView {
    pub id: String,
    pub name: String,
    pub unit: String,
    pub text: ServiceText,
    pub channels: Vec<String>,
    pub form: Option<String>,
    pub unconfirmed: Vec<String>,
    pub note: Option<String>,
}

impl ServiceView {
    pub fn of(
        s: &Service,
        l: Lang,
        units: &std::collections::BTreeMap<String, crate::rules::Unit>,
    ) -> Self {
        let en = l == Lang::En;
        ServiceView {
            id: s.id.clone(),
            name: s.name_in(en).to_string(),
            unit: units
                .get(&s.unit)
                .map(|u| match (&u.name_en, en) {
                    (Some(n), true) => n.clone(),
                    _ => u.name.clone(),
                })
                .unwrap_or_else(|| s.unit.clone()),
            text: s.text_in(en).clone(),
            channels: s
                .catalogue
                .channels
                .iter()
                .map(|c| channel_label(l, c))
                .collect(),
            form: s.catalogue.form.clone(),
            unconfirmed: s.catalogue.unconfirmed.clone(),
            note: s.note.clone(),
        }
    }

    /// Whether the fact under `key` is not confirmed yet.
    pub fn unsure(&self, key: &str) -> bool {
        self.unconfirmed.iter().any(|k| k == key)
    }
}

#[derive(Template)]
#[template(path = "desk/services.html")]
struct SearchPage {
    l: Lang,
    nav: Nav,
    q: String,
    results: Vec<ServiceView>,
}

/// `?q=` and `?lang=`.
#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    lang: Option<String>,
}

/// `GET /desk/services?q=`: the whole catalogue without a query.
pub async fn page(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<SearchQuery>,
) -> Response {
    let v = match viewer_as(&s, &session, &headers, q.lang.as_deref(), Role::ReadOnly).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let rules = s.rules.load();
    let query = q.q.unwrap_or_default();
    let results = search(&rules.services, &query)
        .into_iter()
        .map(|svc| ServiceView::of(svc, v.lang, &rules.units))
        .collect();
    html(SearchPage {
        l: v.lang,
        nav: Nav::of(&v, "/desk/services"),
        q: query,
        results,
    })
}

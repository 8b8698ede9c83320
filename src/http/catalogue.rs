//! The public service catalogue: `/services` (every service by unit, with a
//! search) and `/services/{id}` (who may receive it, where, when and how to
//! apply, documents, term, fee, the form), in Latvian and English
//! (`?lang=en`, remembered like the desk's choice). The text is
//! `rules/services.toml`'s ([`crate::rules::catalogue`]); facts a unit has
//! not confirmed are marked so. Internal notes are never shown here.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{HttpState, html};
use crate::desk::i18n::Lang;
use crate::desk::service_search::ServiceView;
use crate::rules::catalogue::search;

/// The catalogue's routes.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/services", get(list))
        .route("/services/{id}", get(one))
}

/// `?lang=` and `?q=`.
#[derive(Deserialize)]
pub struct CatalogueQuery {
    lang: Option<String>,
    q: Option<String>,
}

#[derive(Template)]
#[template(path = "services.html")]
struct ListPage {
    l: Lang,
    q: String,
    services: Vec<ServiceView>,
}

#[derive(Template)]
#[template(path = "service.html")]
struct ServicePage {
    l: Lang,
    s: ServiceView,
}

async fn list(
    State(st): State<HttpState>,
    headers: HeaderMap,
    Query(q): Query<CatalogueQuery>,
) -> Response {
    let l = Lang::pick(q.lang.as_deref(), &headers);
    let rules = st.rules.load();
    let query = q.q.unwrap_or_default();
    let mut services: Vec<ServiceView> = search(&rules.services, &query)
        .into_iter()
        .filter(|s| s.catalogue.is_described())
        .map(|s| ServiceView::of(s, l, &rules.units))
        .collect();
    if query.trim().is_empty() {
        services.sort_by(|a, b| a.unit.cmp(&b.unit).then_with(|| a.name.cmp(&b.name)));
    }
    html(ListPage {
        l,
        q: query,
        services,
    })
}

async fn one(
    State(st): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<CatalogueQuery>,
) -> Response {
    let l = Lang::pick(q.lang.as_deref(), &headers);
    let rules = st.rules.load();
    match rules
        .services
        .get(&id)
        .filter(|s| s.catalogue.is_described())
    {
        Some(s) => html(ServicePage {
            l,
            s: ServiceView::of(s, l, &rules.units),
        }),
        None => (StatusCode::NOT_FOUND, l.t("catalogue.none").to_string()).into_response(),
    }
}

//! The form page and the receipt page, in Latvian and English.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::config::FieldKind;
use super::{Lang, TOKEN, WebForm};

/// A field as shown on the page.
struct FieldView {
    name: String,
    label: String,
    kind: &'static str,
    required: bool,
    max_length: usize,
    value: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "form.html")]
pub(super) struct FormPage {
    lang: &'static str,
    other_lang: &'static str,
    other_lang_name: &'static str,
    title: String,
    intro: Option<String>,
    action: String,
    token: String,
    fields: Vec<FieldView>,
    errors: Vec<String>,
    max_attachments: usize,
    accept: String,
    t_required: &'static str,
    t_attachments: &'static str,
    t_attachments_hint: String,
    t_submit: &'static str,
    t_errors: &'static str,
    t_honeypot: &'static str,
}

#[derive(Template)]
#[template(path = "receipt.html")]
pub(super) struct ReceiptPage {
    pub(super) lang: &'static str,
    pub(super) title: String,
    pub(super) registered: bool,
    pub(super) number: String,
    pub(super) reply_due: String,
    pub(super) status_url: String,
    pub(super) t_heading: &'static str,
    pub(super) t_number: &'static str,
    pub(super) t_due: &'static str,
    pub(super) t_pending: &'static str,
    pub(super) t_status: &'static str,
}

#[derive(Deserialize)]
pub(super) struct LangQuery {
    pub(super) lang: Option<String>,
}

pub(super) fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("template rendering failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "page could not be rendered",
            )
                .into_response()
        }
    }
}

impl WebForm {
    pub(super) fn page(
        &self,
        lang: Lang,
        values: &BTreeMap<String, String>,
        errors: Vec<(Option<String>, String)>,
    ) -> FormPage {
        let field_error = |name: &str| {
            errors
                .iter()
                .find(|(f, _)| f.as_deref() == Some(name))
                .map(|(_, m)| m.clone())
        };
        FormPage {
            lang: lang.code(),
            other_lang: lang.t("page.other_lang"),
            other_lang_name: lang.t("page.other_lang_name"),
            title: match lang {
                Lang::En => self
                    .cfg
                    .title_en
                    .clone()
                    .unwrap_or_else(|| self.cfg.title.clone()),
                Lang::Lv => self.cfg.title.clone(),
            },
            intro: match lang {
                Lang::En => self.cfg.intro_en.clone().or_else(|| self.cfg.intro.clone()),
                Lang::Lv => self.cfg.intro.clone(),
            },
            action: format!("/forms/{}?lang={}", self.cfg.id, lang.code()),
            token: values
                .get(TOKEN)
                .cloned()
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            fields: self
                .cfg
                .fields
                .iter()
                .map(|f| FieldView {
                    name: f.name.clone(),
                    label: match lang {
                        Lang::En => f.label_en.clone().unwrap_or_else(|| f.label.clone()),
                        Lang::Lv => f.label.clone(),
                    },
                    kind: match f.kind {
                        FieldKind::Text => "text",
                        FieldKind::Email => "email",
                        FieldKind::Tel => "tel",
                        FieldKind::Textarea => "textarea",
                        FieldKind::PersonalCode => "text",
                    },
                    required: f.required,
                    max_length: f.max_length,
                    value: values.get(&f.name).cloned().unwrap_or_default(),
                    error: field_error(&f.name),
                })
                .collect(),
            errors: errors.iter().map(|(_, m)| m.clone()).collect(),
            max_attachments: self.cfg.max_attachments,
            accept: self.cfg.allowed_attachment_types.join(","),
            t_required: lang.t("page.required"),
            t_attachments: lang.t("page.attachments"),
            t_attachments_hint: lang.text(
                "page.attachments_hint",
                &[
                    ("files", &self.cfg.max_attachments),
                    ("mb", &(self.cfg.max_attachment_bytes / (1024 * 1024))),
                ],
            ),
            t_submit: lang.t("page.submit"),
            t_errors: lang.t("page.errors"),
            t_honeypot: lang.t("page.honeypot"),
        }
    }
}

pub(super) async fn show_form(
    State(form): State<Arc<WebForm>>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::pick(q.lang.as_deref(), &headers);
    render(form.page(lang, &BTreeMap::new(), Vec::new()))
}

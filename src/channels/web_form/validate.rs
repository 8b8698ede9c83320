//! Checking a submission's fields and attachment types, every problem at
//! once, in the page's language.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::config::{FieldKind, FieldRole};
use super::{HONEYPOT, Lang, Problem, Refusal, TOKEN, WebForm};
use crate::phone::normalise_phone;

/// A problem with one field, in the page's language: the catalog's `key`
/// (`field.…`) about its `label`, with further `values`.
pub(super) fn field_problem(
    field: &str,
    lang: Lang,
    key: &'static str,
    label: &str,
    values: &[(&str, &dyn std::fmt::Display)],
) -> Problem {
    let mut all: Vec<(&str, &dyn std::fmt::Display)> = vec![("label", &label)];
    all.extend_from_slice(values);
    (Some(field.to_string()), lang.text(key, &all))
}

impl WebForm {
    pub(super) fn check_rate(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.limiter
            .check_key(&ip)
            .map_err(|_| Refusal::RateLimited)
    }

    /// Validates the fields, reporting every problem at once.
    pub(super) fn validate(
        &self,
        values: &BTreeMap<String, String>,
        lang: Lang,
    ) -> Result<(), Refusal> {
        if values.get(HONEYPOT).is_some_and(|v| !v.trim().is_empty()) {
            return Err(Refusal::Bot);
        }
        let mut problems = Vec::new();
        for f in &self.cfg.fields {
            let v = values.get(&f.name).map(|s| s.trim()).unwrap_or("");
            let label = if lang == Lang::En {
                f.label_en.as_deref().unwrap_or(&f.label)
            } else {
                &f.label
            };
            if f.required && v.is_empty() {
                problems.push(field_problem(&f.name, lang, "field.required", label, &[]));
                continue;
            }
            let len = v.chars().count();
            if len > f.max_length {
                problems.push(field_problem(
                    &f.name,
                    lang,
                    "field.too_long_counted",
                    label,
                    &[("len", &len), ("max", &f.max_length)],
                ));
            }
            if !v.is_empty() && f.kind == FieldKind::Email && !looks_like_email(v) {
                problems.push(field_problem(&f.name, lang, "field.not_email", label, &[]));
            }
            if !v.is_empty() && f.kind == FieldKind::Tel && normalise_phone(v).is_none() {
                problems.push(field_problem(&f.name, lang, "field.not_phone", label, &[]));
            }
            if !v.is_empty()
                && (f.kind == FieldKind::PersonalCode || f.role == FieldRole::SenderPersonalCode)
                && crate::personal_code::parse(v).is_none()
            {
                problems.push(field_problem(
                    &f.name,
                    lang,
                    "field.not_personal_code",
                    label,
                    &[],
                ));
            }
        }
        let known: std::collections::HashSet<&str> = self
            .cfg
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .chain([HONEYPOT, TOKEN, "lang"])
            .collect();
        if let Some(extra) = values.keys().find(|k| !known.contains(k.as_str())) {
            problems.push((None, format!("unknown field {extra:?}")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Refusal::Invalid(problems))
        }
    }

    pub(super) fn check_attachment_type(
        &self,
        content_type: &str,
        filename: &str,
    ) -> Result<(), Refusal> {
        let ct = content_type.to_ascii_lowercase();
        if self.cfg.allowed_attachment_types.contains(&ct) {
            Ok(())
        } else {
            Err(Refusal::Unsupported(format!(
                "attachment {filename:?} has type {ct}, which this form does not accept (allowed: {})",
                self.cfg.allowed_attachment_types.join(", ")
            )))
        }
    }

    /// A field's label in the page's language (its name when not configured).
    pub(super) fn label(&self, name: &str, lang: Lang) -> String {
        match self.cfg.fields.iter().find(|f| f.name == name) {
            Some(f) if lang == Lang::En => f.label_en.clone().unwrap_or_else(|| f.label.clone()),
            Some(f) => f.label.clone(),
            None => name.to_string(),
        }
    }

    /// A field whose bytes are not UTF-8 text: refused (400) naming it.
    pub(super) fn not_utf8(&self, field: &str, lang: Lang) -> Refusal {
        let label = self.label(field, lang);
        Refusal::BadRequest(vec![field_problem(
            field,
            lang,
            "field.not_utf8",
            &label,
            &[],
        )])
    }

    /// A value longer than its field allows, found while reading it.
    pub(super) fn too_long(&self, field: &str, lang: Lang) -> Refusal {
        let label = self.label(field, lang);
        let max = self
            .cfg
            .fields
            .iter()
            .find(|f| f.name == field)
            .map(|f| f.max_length);
        Refusal::Invalid(vec![match max {
            Some(max) => field_problem(field, lang, "field.too_long_max", &label, &[("max", &max)]),
            None => field_problem(field, lang, "field.too_long", &label, &[]),
        }])
    }

    /// A body larger than this form can take.
    pub(super) fn too_large(&self, limit: u64, lang: Lang) -> Refusal {
        let mb = limit.div_ceil(1024 * 1024);
        Refusal::TooLarge(lang.text("refusal.too_large", &[("mb", &mb)]))
    }
}

pub(super) fn looks_like_email(v: &str) -> bool {
    match v.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !v.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

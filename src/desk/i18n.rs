//! The desk's words in Latvian and English. The catalogs are TOML files
//! (`templates/desk/i18n/`), so a translator edits text, not code; a unit
//! test keeps both catalogs' keys identical.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::http::{HeaderMap, header};

/// The desk's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Lv,
    En,
}

type Catalog = HashMap<String, String>;

fn parse(name: &str, text: &str) -> Catalog {
    match toml::from_str::<HashMap<String, HashMap<String, String>>>(text) {
        Ok(sections) => sections
            .into_iter()
            .flat_map(|(section, words)| {
                words
                    .into_iter()
                    .map(move |(k, v)| (format!("{section}.{k}"), v))
            })
            .collect(),
        Err(e) => {
            tracing::error!("desk catalog {name} is broken: {e}");
            Catalog::new()
        }
    }
}

static LV: LazyLock<Catalog> =
    LazyLock::new(|| parse("lv.toml", include_str!("../../templates/desk/i18n/lv.toml")));
static EN: LazyLock<Catalog> =
    LazyLock::new(|| parse("en.toml", include_str!("../../templates/desk/i18n/en.toml")));

impl Lang {
    /// From `?lang=`, the `pietura_lang` cookie, then Accept-Language; Latvian by default.
    pub fn pick(query: Option<&str>, headers: &HeaderMap) -> Lang {
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("pietura_lang="));
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                if v.trim_start().starts_with("en") {
                    "en"
                } else {
                    "lv"
                }
            });
        match query.or(cookie).or(accept) {
            Some("en") => Lang::En,
            _ => Lang::Lv,
        }
    }

    /// The code used in `lang=` attributes and cookies.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Lv => "lv",
            Lang::En => "en",
        }
    }

    /// The text for `key`; the key itself when a catalog lacks it (visible, not fatal).
    pub fn t(self, key: &str) -> &str {
        let catalog = match self {
            Lang::Lv => &*LV,
            Lang::En => &*EN,
        };
        match catalog.get(key) {
            // The catalogs live for the whole program.
            Some(text) => text.as_str(),
            None => key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_catalogs_have_the_same_keys_and_no_empty_text() {
        let mut lv: Vec<&String> = LV.keys().collect();
        let mut en: Vec<&String> = EN.keys().collect();
        lv.sort();
        en.sort();
        assert!(
            lv.len() > 50,
            "the Latvian catalog was not read: {}",
            lv.len()
        );
        assert_eq!(lv, en);
        for (k, v) in LV.iter().chain(EN.iter()) {
            assert!(!v.trim().is_empty(), "{k} is empty");
        }
        assert_eq!(Lang::Lv.t("queue.title"), "Izskatāmie dokumenti");
        assert_eq!(Lang::En.t("queue.title"), "Review queue");
    }

    #[test]
    fn language_comes_from_query_cookie_then_browser() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::pick(None, &h), Lang::Lv);
        h.insert(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.8".parse().unwrap());
        assert_eq!(Lang::pick(None, &h), Lang::En);
        h.insert(header::COOKIE, "a=b; pietura_lang=lv".parse().unwrap());
        assert_eq!(Lang::pick(None, &h), Lang::Lv);
        assert_eq!(Lang::pick(Some("en"), &h), Lang::En);
    }
}

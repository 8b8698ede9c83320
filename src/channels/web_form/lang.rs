//! The form page's language (Latvian or English, from `?lang=` then the
//! browser) and its texts, kept in the catalogs `templates/form/i18n/`.

use std::sync::LazyLock;

use axum::http::{HeaderMap, header};

use crate::catalog::Catalog;

/// Page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Lv,
    En,
}

impl Lang {
    pub(super) fn pick(query: Option<&str>, headers: &HeaderMap) -> Self {
        match query {
            Some("en") => Lang::En,
            Some("lv") => Lang::Lv,
            _ => {
                let accept = headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if accept.trim_start().starts_with("en") {
                    Lang::En
                } else {
                    Lang::Lv
                }
            }
        }
    }
    pub(super) fn code(self) -> &'static str {
        match self {
            Lang::Lv => "lv",
            Lang::En => "en",
        }
    }
    /// The text for `key` (`section.key` in `templates/form/i18n/`); the
    /// key itself when a catalog lacks it (visible, not fatal).
    pub(super) fn t(self, key: &'static str) -> &'static str {
        let catalog = match self {
            Lang::Lv => &*FORM_LV,
            Lang::En => &*FORM_EN,
        };
        catalog.get(key).map_or(key, String::as_str)
    }

    /// The text for `key` with its `{name}`s filled in.
    pub(super) fn text(
        self,
        key: &'static str,
        values: &[(&str, &dyn std::fmt::Display)],
    ) -> String {
        crate::catalog::fill(self.t(key), values)
    }
}

static FORM_LV: LazyLock<Catalog> = LazyLock::new(|| {
    crate::catalog::parse(
        "form lv.toml",
        include_str!("../../../templates/form/i18n/lv.toml"),
    )
});
static FORM_EN: LazyLock<Catalog> = LazyLock::new(|| {
    crate::catalog::parse(
        "form en.toml",
        include_str!("../../../templates/form/i18n/en.toml"),
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_form_catalogs_have_the_same_keys_and_fill_their_values() {
        let mut lv: Vec<&String> = FORM_LV.keys().collect();
        let mut en: Vec<&String> = FORM_EN.keys().collect();
        lv.sort();
        en.sort();
        assert!(lv.len() >= 25, "the Latvian form catalog was not read");
        assert_eq!(lv, en);
        for (k, v) in FORM_LV.iter().chain(FORM_EN.iter()) {
            assert!(!v.trim().is_empty(), "{k} is empty");
        }
        assert_eq!(
            Lang::Lv.text(
                "field.too_long_counted",
                &[("label", &"Vārds"), ("len", &9), ("max", &8)]
            ),
            "Lauks „Vārds” ir par garu (9 zīmes, atļautas 8)."
        );
        assert_eq!(Lang::En.t("page.submit"), "Submit");
    }
}

//! The desk's words in Latvian and English. The catalogs are TOML files
//! (`templates/desk/i18n/`, read by [`crate::catalog`]), so a translator
//! edits text, not code; a unit test keeps both catalogs' keys identical.

use std::sync::LazyLock;

use axum::http::{HeaderMap, header};

use crate::catalog::{Catalog, parse};

/// The desk's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Lv,
    En,
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
        self.get(key).unwrap_or(key)
    }

    fn get(self, key: &str) -> Option<&'static str> {
        let catalog = match self {
            Lang::Lv => &*LV,
            Lang::En => &*EN,
        };
        catalog.get(key).map(String::as_str)
    }

    /// A channel kind in words (`web_form`: "tīmekļa veidlapa"), as its
    /// door names itself ([`crate::channels::Door::WORDS`]); an unknown kind
    /// as it is.
    pub fn channel_kind(self, kind: &str) -> String {
        let words = crate::message::ChannelKind::parse(kind)
            .and_then(crate::channels::Kind::get)
            .map(|k| k.words);
        match (self, words) {
            (Lang::Lv, Some(w)) => w.lv.to_string(),
            (Lang::En, Some(w)) => w.en.to_string(),
            (_, None) => kind.to_string(),
        }
    }

    /// A stored formal status in words; "—" for items registered before
    /// it was recorded, an unknown name as it is.
    pub fn formal_status(self, status: Option<&str>) -> String {
        match status.and_then(crate::message::FormalStatus::parse) {
            Some(f) => self.t(&f.label_key()).to_string(),
            None => status.unwrap_or("—").to_string(),
        }
    }

    /// An item's case in words: code, title and retention from the scheme
    /// in force; "nav klasificēts" without one.
    pub fn case(self, cases: &crate::rules::cases::CaseScheme, code: Option<&str>) -> String {
        use crate::rules::cases::Retention;
        let Some(code) = code else {
            return self.t("item.not_classified").to_string();
        };
        match cases.get(code) {
            Some(c) => {
                let kept = match c.retention {
                    Retention::Permanent => self.t("item.retention_permanent").to_string(),
                    Retention::Years(n) => format!("{n} {}", self.t("item.retention_years")),
                };
                format!(
                    "{code} {} ({} {kept})",
                    c.title_in(self == Lang::En),
                    self.t("item.retention")
                )
            }
            // Filed under a case the scheme in force no longer has.
            None => code.to_string(),
        }
    }

    /// A review reason in words. The registry and the API keep the machine
    /// reason; the reasons the channels, the rules engine and the desk give
    /// are in the catalogs by their head, anything else (a rule's own
    /// `review_reason`, in the office's words) is shown as it is.
    pub fn reason(self, reason: Option<&str>) -> String {
        let reason = reason.unwrap_or(crate::rules::eval::NO_RULE_REASON);
        if let Some(rest) = reason.strip_prefix("returned by ") {
            // "returned by <unit>: <the unit's note>"
            let (unit, note) = rest.split_once(':').unwrap_or((rest, ""));
            let note = note.trim();
            let head = format!("{} ({})", self.t("reason.returned"), unit.trim());
            return if note.is_empty() {
                head
            } else {
                format!("{head}: {note}")
            };
        }
        REASONS
            .iter()
            .find(|(head, _)| reason.starts_with(head))
            .map_or_else(|| reason.to_string(), |(_, key)| self.t(key).to_string())
    }
}

/// Machine reasons by their head, and their catalog keys.
const REASONS: &[(&str, &str)] = &[
    (crate::rules::eval::NO_RULE_REASON, "reason.no_rule"),
    ("empty SMS", "reason.sms_empty"),
    ("binary SMS", "reason.sms_binary"),
    ("oversized e-mail", "reason.email_oversized"),
    ("malformed e-mail", "reason.email_malformed"),
    ("e-mail cut off", "reason.email_cut_off"),
    ("no text recognised", "reason.scan_no_text"),
    ("unreadable scan page", "reason.scan_unreadable_page"),
    ("OCR confidence", "reason.scan_low_confidence"),
];

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
    fn reasons_and_channel_kinds_are_words_in_both_languages() {
        for (head, key) in REASONS {
            assert_ne!(Lang::Lv.t(key), *key, "{key} missing");
            assert_ne!(Lang::Lv.reason(Some(head)), *head);
            assert_ne!(Lang::En.reason(Some(head)), *head);
        }
        assert_eq!(Lang::Lv.reason(None), Lang::Lv.t("reason.no_rule"));
        assert_eq!(
            Lang::Lv.reason(Some("returned by buvvalde: nav mūsu")),
            format!("{} (buvvalde): nav mūsu", Lang::Lv.t("reason.returned"))
        );
        assert_eq!(
            Lang::Lv.reason(Some("Pārbaudīt personīgi")),
            "Pārbaudīt personīgi"
        );
        for kind in crate::message::ChannelKind::ALL {
            let kind = kind.as_str();
            assert_ne!(Lang::Lv.channel_kind(kind), kind);
            assert_ne!(Lang::En.channel_kind(kind), kind);
        }
        assert_eq!(Lang::Lv.channel_kind("email"), "e-pasts");
        for f in crate::message::FormalStatus::ALL {
            assert_ne!(Lang::Lv.formal_status(Some(f.as_str())), f.as_str());
            assert_ne!(Lang::En.formal_status(Some(f.as_str())), f.as_str());
        }
        assert_eq!(Lang::En.channel_kind("fax"), "fax");
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

//! The service catalogue (pakalpojumu apraksti): what `services.toml` says
//! about each service beyond routing — who may receive it, where, when and
//! through which channels to apply, the documents to bring, the term, the
//! fee and the form to use, in Latvian and English — validated with the
//! rest of the rules (`file:line` problems), and searched the way the rules
//! match text ([`super::text`]: case, diacritics and Latvian endings folded).

use std::collections::BTreeMap;

use serde::Serialize;
use toml::Spanned;

use super::Service;
use super::files::{ServiceDef, ServiceTextDef};
use super::text::{Keyword, Words};
use crate::tomlfile::Problems;

/// The ways to apply a catalogue entry may name in `channels`.
pub const APPLY_CHANNELS: [&str; 7] = [
    "counter", "phone", "post", "email", "e_adrese", "web_form", "sms",
];

/// The catalogue keys `unconfirmed` may name.
pub const CATALOGUE_KEYS: [&str; 8] = [
    "who",
    "where",
    "when",
    "documents",
    "term",
    "fee",
    "channels",
    "form",
];

/// A service's catalogue text in one language.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceText {
    pub who: Option<String>,
    pub where_: Option<String>,
    pub when: Option<String>,
    pub documents: Vec<String>,
    pub term: Option<String>,
    pub fee: Option<String>,
}

impl From<ServiceTextDef> for ServiceText {
    fn from(d: ServiceTextDef) -> Self {
        ServiceText {
            who: d.who,
            where_: d.where_,
            when: d.when,
            documents: d.documents,
            term: d.term,
            fee: d.fee,
        }
    }
}

/// A service's catalogue entry, as compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Catalogue {
    pub lv: ServiceText,
    pub en: ServiceText,
    /// Ways to apply, from [`APPLY_CHANNELS`].
    pub channels: Vec<String>,
    /// The web form to use, if any.
    pub form: Option<String>,
    /// Keys whose facts are not confirmed yet.
    pub unconfirmed: Vec<String>,
}

impl Catalogue {
    /// Validates the catalogue part of a service definition; problems are
    /// added at their lines (`at`: the service's own start).
    pub(crate) fn compile(s: &mut ServiceDef, at: usize, p: &mut Problems<'_>) -> Catalogue {
        let id = s.id.clone();
        let mut channels = Vec::new();
        for c in std::mem::take(&mut s.channels) {
            let line = c.span().start;
            let c = c.into_inner();
            if !APPLY_CHANNELS.contains(&c.as_str()) {
                p.at(
                    line,
                    format!(
                        "service {id}: channels: {c:?} is not a way to apply (one of {})",
                        APPLY_CHANNELS.join(", ")
                    ),
                );
            } else if channels.contains(&c) {
                p.at(
                    line,
                    format!("service {id}: channels: {c:?} is given twice"),
                );
            } else {
                channels.push(c);
            }
        }
        let mut unconfirmed = Vec::new();
        for k in std::mem::take(&mut s.unconfirmed) {
            let line = k.span().start;
            let k = k.into_inner();
            if CATALOGUE_KEYS.contains(&k.as_str()) {
                unconfirmed.push(k);
            } else {
                p.at(
                    line,
                    format!(
                        "service {id}: unconfirmed: {k:?} is not a catalogue key (one of {})",
                        CATALOGUE_KEYS.join(", ")
                    ),
                );
            }
        }
        let form = s.form.take().and_then(|f| {
            let line = f.span().start;
            let f = f.into_inner();
            if super::is_id(&f) {
                Some(f)
            } else {
                p.at(
                    line,
                    format!(
                        "service {id}: form {f:?} must be a form id (lowercase a-z, 0-9, - or _)"
                    ),
                );
                None
            }
        });
        let lv = text_of(&id, s.lv.take(), "lv", p);
        let en = text_of(&id, s.en.take(), "en", p);
        match (&lv, &en) {
            (None, Some((line, _))) => p.at(
                *line,
                format!("service {id}: [service.en] without [service.lv]: write the Latvian text first"),
            ),
            (Some((_, lv)), Some((line, en))) if lv.documents.len() != en.documents.len() => p.at(
                *line,
                format!(
                    "service {id}: en.documents has {} entries, lv.documents {}: each document needs its translation",
                    en.documents.len(),
                    lv.documents.len()
                ),
            ),
            (None, None) if !channels.is_empty() => p.at(
                at,
                format!("service {id}: channels given but no [service.lv] description"),
            ),
            _ => {}
        }
        Catalogue {
            lv: lv.map(|t| t.1).unwrap_or_default(),
            en: en.map(|t| t.1).unwrap_or_default(),
            channels,
            form,
            unconfirmed,
        }
    }

    /// Whether the catalogue describes the service at all.
    pub fn is_described(&self) -> bool {
        self.lv != ServiceText::default()
    }

    /// Whether `key` ([`CATALOGUE_KEYS`]) is marked unconfirmed.
    pub fn unconfirmed(&self, key: &str) -> bool {
        self.unconfirmed.iter().any(|k| k == key)
    }
}

/// One language's text, with the line it starts at.
fn text_of(
    id: &str,
    t: Option<Spanned<ServiceTextDef>>,
    lang: &str,
    p: &mut Problems<'_>,
) -> Option<(usize, ServiceText)> {
    let t = t?;
    let line = t.span().start;
    let t = t.into_inner();
    if t.documents.iter().any(|d| d.trim().is_empty()) {
        p.at(
            line,
            format!("service {id}: {lang}.documents: an entry is empty"),
        );
    }
    Some((line, ServiceText::from(t)))
}

impl Service {
    /// The name in `en`glish when there is one, else the Latvian.
    pub fn name_in(&self, en: bool) -> &str {
        match (&self.name_en, en) {
            (Some(n), true) => n,
            _ => &self.name,
        }
    }

    /// The catalogue text in `en`glish when written, else the Latvian.
    pub fn text_in(&self, en: bool) -> &ServiceText {
        if en && self.catalogue.en != ServiceText::default() {
            &self.catalogue.en
        } else {
            &self.catalogue.lv
        }
    }

    /// Everything a visitor might search the service by, in both languages.
    fn searchable(&self) -> String {
        let mut all = vec![self.id.replace('_', " "), self.name.clone()];
        all.extend(self.name_en.clone());
        all.extend(self.note.clone());
        for t in [&self.catalogue.lv, &self.catalogue.en] {
            all.extend(t.who.clone());
            all.extend(t.documents.iter().cloned());
        }
        all.join("\n")
    }
}

/// Services whose name, description or documents hold every word of
/// `query` (folded and stemmed as routing keywords are; `prefix*` allowed),
/// those matching in their names first; every service for an empty query.
pub fn search<'a>(services: &'a BTreeMap<String, Service>, query: &str) -> Vec<&'a Service> {
    let words: Vec<Keyword> = query
        .split_whitespace()
        .filter_map(Keyword::parse)
        .collect();
    let mut found: Vec<(bool, &Service)> = services
        .values()
        .filter_map(|s| {
            let all = Words::of(&s.searchable());
            if !words.iter().all(|k| k.occurs_in(&all)) {
                return None;
            }
            let names = Words::of(&format!(
                "{} {}",
                s.name,
                s.name_en.as_deref().unwrap_or("")
            ));
            Some((words.iter().all(|k| k.occurs_in(&names)), s))
        })
        .collect();
    // Stable: equal ranks keep the catalogue's (id) order.
    found.sort_by_key(|(in_name, _)| !*in_name);
    found.into_iter().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(id: &str, name: &str, documents: &[&str]) -> Service {
        Service {
            id: id.into(),
            name: name.into(),
            name_en: None,
            unit: "u".into(),
            reply_working_days: None,
            case: None,
            note: None,
            catalogue: Catalogue {
                lv: ServiceText {
                    documents: documents.iter().map(|d| d.to_string()).collect(),
                    ..ServiceText::default()
                },
                ..Catalogue::default()
            },
        }
    }

    #[test]
    fn search_folds_case_diacritics_and_latvian_endings() {
        let services: BTreeMap<String, Service> = [
            service("buvatlauja", "Būvatļauja", &["Būvniecības iecere"]),
            service(
                "pabalsti",
                "Sociālās palīdzības pabalsti",
                &["Iztikas līdzekļu deklarācija"],
            ),
            service("pases", "Pases", &["Būvatļaujas kopija"]),
        ]
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
        let ids = |q: &str| -> Vec<String> {
            search(&services, q)
                .into_iter()
                .map(|s| s.id.clone())
                .collect()
        };
        // Name matches first, then a document's.
        assert_eq!(ids("BUVATLAUJU"), ["buvatlauja", "pases"]);
        assert_eq!(ids("pabalstu"), ["pabalsti"]);
        assert_eq!(ids("deklarācijas"), ["pabalsti"]);
        assert_eq!(ids("ieceri buvniec*"), ["buvatlauja"]);
        assert!(ids("kafija").is_empty());
        assert_eq!(ids("  ").len(), 3);
    }
}

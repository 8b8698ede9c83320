//! Items past their retention period, for the records office's destruction
//! review (`pietura archive retention`). This only lists: destroying
//! documents takes a review and an act, never this program.
//!
//! The retention of a case comes from the classification scheme (years, or
//! `None` for permanent). The period is counted from 1 January of the year
//! after the item was closed (LNA's practice for case files; UNCONFIRMED for
//! single items), so an item closed in 2026 with a 5-year term is due for
//! review from 2032-01-01. Open items are never due.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};

use crate::registry::archive::RegisterEntry;

/// An item whose retention period has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionDue {
    pub registration_number: String,
    pub item_id: String,
    pub case_code: String,
    pub years: u16,
    /// The local day it was closed.
    pub closed_on: NaiveDate,
    /// The first day it may be reviewed for destruction.
    pub due_from: NaiveDate,
}

/// What the review finds among the items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReview {
    /// Past their period, oldest first.
    pub due: Vec<RetentionDue>,
    /// Closed items with no case yet: their retention is unknown.
    pub unclassified: Vec<String>,
    /// Closed items whose case the scheme does not know: (number, case).
    pub unknown_case: Vec<(String, String)>,
}

/// The items (closed ones) past their retention on `as_of`, by `scheme`
/// (case code → years; `None` = kept permanently).
pub fn retention_review(
    entries: &[RegisterEntry],
    scheme: &BTreeMap<String, Option<u16>>,
    as_of: NaiveDate,
) -> RetentionReview {
    let mut review = RetentionReview::default();
    for e in entries {
        let Some(closed_on) = e
            .item
            .closed_at
            .as_deref()
            .and_then(crate::registry::parse_db_time)
            .map(crate::deadline::local_date)
        else {
            continue;
        };
        let number = e.item.registration_number.clone();
        let Some(case) = &e.item.case_code else {
            review.unclassified.push(number);
            continue;
        };
        let years = match scheme.get(case) {
            None => {
                review.unknown_case.push((number, case.clone()));
                continue;
            }
            Some(None) => continue,
            Some(Some(years)) => *years,
        };
        let Some(due_from) = NaiveDate::from_ymd_opt(closed_on.year() + 1 + i32::from(years), 1, 1)
        else {
            continue;
        };
        if as_of >= due_from {
            review.due.push(RetentionDue {
                registration_number: number,
                item_id: e.item.id.clone(),
                case_code: case.clone(),
                years,
                closed_on,
                due_from,
            });
        }
    }
    review.due.sort_by(|a, b| {
        (a.due_from, &a.registration_number).cmp(&(b.due_from, &b.registration_number))
    });
    review
}

/// `CODE=YEARS` or `CODE=permanent` (the command line's `--retention`).
pub fn parse_retention(spec: &str) -> Option<(String, Option<u16>)> {
    let (code, term) = spec.split_once('=')?;
    let code = code.trim();
    if code.is_empty() {
        return None;
    }
    let term = term.trim();
    let years = if term.eq_ignore_ascii_case("permanent") {
        None
    } else {
        Some(term.parse().ok()?)
    };
    Some((code.to_string(), years))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ItemSummary;

    fn entry(number: &str, case: Option<&str>, closed_at: Option<&str>) -> RegisterEntry {
        let none = || None;
        RegisterEntry {
            item: ItemSummary {
                id: format!("id-{number}"),
                registration_number: number.into(),
                state: "routed".into(),
                channel_kind: "web_form".into(),
                channel_instance: "iesniegums".into(),
                received_at: "2019-01-01T10:00:00.000000Z".into(),
                registered_at: "2019-01-01T10:00:00.000000Z".into(),
                unit_id: none(),
                service_id: none(),
                rule_id: none(),
                ruleset_version: "v".into(),
                review_reason: none(),
                priority: "normal".into(),
                tags: Vec::new(),
                reply_due: none(),
                forward_due: none(),
                routed_by: none(),
                paused_since: none(),
                closed_at: closed_at.map(str::to_string),
                sender_name: none(),
                sender_email: none(),
                sender_phone: none(),
                subject: none(),
                linked_item_id: none(),
                sender_authenticity: none(),
                revision: 0,
                case_code: case.map(str::to_string),
                formal_status: None,
            },
        }
    }

    #[test]
    fn the_term_runs_from_the_new_year_after_closing_and_permanent_never_ends() {
        let scheme: BTreeMap<String, Option<u16>> =
            [("1-10".to_string(), Some(5)), ("1-1".to_string(), None)].into();
        let entries = [
            // Closed 2020-12-31 22:30 UTC = 2021-01-01 00:30 in Riga: a 2021 closing.
            entry("A/1", Some("1-10"), Some("2020-12-31T22:30:00.000000Z")),
            entry("A/2", Some("1-10"), Some("2020-06-01T10:00:00.000000Z")),
            entry("A/3", Some("1-1"), Some("1990-06-01T10:00:00.000000Z")),
            entry("A/4", None, Some("2000-06-01T10:00:00.000000Z")),
            entry("A/5", Some("9-9"), Some("2000-06-01T10:00:00.000000Z")),
            entry("A/6", Some("1-10"), None),
        ];
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let review = retention_review(&entries, &scheme, day("2025-12-31"));
        assert!(review.due.is_empty(), "{review:?}");
        let review = retention_review(&entries, &scheme, day("2026-01-01"));
        let due: Vec<_> = review
            .due
            .iter()
            .map(|d| d.registration_number.as_str())
            .collect();
        assert_eq!(due, ["A/2"]);
        assert_eq!(review.due[0].due_from, day("2026-01-01"));
        assert_eq!(review.unclassified, ["A/4"]);
        assert_eq!(
            review.unknown_case,
            [("A/5".to_string(), "9-9".to_string())]
        );
        let review = retention_review(&entries, &scheme, day("2027-01-01"));
        let due: Vec<_> = review
            .due
            .iter()
            .map(|d| d.registration_number.as_str())
            .collect();
        assert_eq!(due, ["A/2", "A/1"]);
    }

    #[test]
    fn retention_flags_parse() {
        assert_eq!(parse_retention("1-10=5"), Some(("1-10".into(), Some(5))));
        assert_eq!(parse_retention("1-1=permanent"), Some(("1-1".into(), None)));
        assert_eq!(parse_retention("1-1"), None);
        assert_eq!(parse_retention("=5"), None);
        assert_eq!(parse_retention("1-1=ever"), None);
    }
}

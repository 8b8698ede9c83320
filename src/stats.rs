//! Service-delivery statistics for the quarterly evaluation: per channel,
//! unit and service, how many items came in, how they were routed (by a
//! rule or by the records officer), forwarded, answered on time or late, and
//! how long registration and replies took; plus the review backlog by day.
//!
//! The registry hands over one small record per item ([`ItemRecord`]); the
//! figures are computed here, in plain Rust, so they are the same on
//! PostgreSQL and SQLite and can be tested on a seeded set without a database.
//! Percentiles are nearest-rank: the median of 1, 2, 3, 4 is 2.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use serde::Serialize;

use crate::deadline::local_date;
use crate::registry::ROUTED_BY_RULES;

/// One item, as the statistics need it.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRecord {
    pub channel: String,
    pub unit: Option<String>,
    pub service: Option<String>,
    pub state: String,
    pub received_at: DateTime<Utc>,
    pub registered_at: DateTime<Utc>,
    pub routed_by: Option<String>,
    pub routed_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The binding deadline (forwarding, else reply).
    pub due: Option<NaiveDate>,
}

impl ItemRecord {
    /// Registered for the records officer (no rule routed it).
    fn went_to_review(&self) -> bool {
        self.routed_by.as_deref() != Some(ROUTED_BY_RULES)
    }
}

/// A period of whole local days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    /// A calendar quarter, `2026Q3` (or `2026-Q3`).
    pub fn quarter(spec: &str) -> Result<Period, String> {
        let bad = || format!("quarter {spec:?} must look like 2026Q3");
        let (y, q) = spec.split_once(['Q', 'q']).ok_or_else(bad)?;
        let year: i32 = y.trim_end_matches('-').parse().map_err(|_| bad())?;
        let q: u32 = q.parse().map_err(|_| bad())?;
        if !(1..=4).contains(&q) {
            return Err(bad());
        }
        let from = NaiveDate::from_ymd_opt(year, 3 * q - 2, 1).ok_or_else(bad)?;
        let to = from
            .checked_add_months(Months::new(3))
            .and_then(|d| d.pred_opt())
            .ok_or_else(bad)?;
        Ok(Period { from, to })
    }

    /// The quarter `day` is in.
    pub fn quarter_of(day: NaiveDate) -> Period {
        let q = (day.month() - 1) / 3 + 1;
        Period::quarter(&format!("{}Q{q}", day.year())).unwrap_or(Period { from: day, to: day })
    }

    /// `2026Q3`, or `from..to` for other periods.
    pub fn label(&self) -> String {
        let q = (self.from.month() - 1) / 3 + 1;
        if Period::quarter(&format!("{}Q{q}", self.from.year())).as_ref() == Ok(self) {
            format!("{}Q{q}", self.from.year())
        } else {
            format!("{}..{}", self.from, self.to)
        }
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        self.from <= day && day <= self.to
    }

    /// Every day of the period.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.from.iter_days().take_while(|d| *d <= self.to)
    }
}

/// Figures for one group (a channel, unit or service, or everything).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub key: String,
    /// Items received in the period.
    pub received: u64,
    /// Items registered in the period.
    pub registered: u64,
    pub routed_by_rules: u64,
    pub routed_by_officer: u64,
    /// Still waiting for the records officer.
    pub in_review: u64,
    pub forwarded: u64,
    pub answered_on_time: u64,
    pub answered_late: u64,
    /// Open, with the deadline passed at the end of the period (or today).
    pub open_overdue: u64,
    pub registration_median_s: Option<i64>,
    pub registration_p90_s: Option<i64>,
    pub reply_median_s: Option<i64>,
    pub reply_p90_s: Option<i64>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub period: Period,
    pub label: String,
    pub total: Figures,
    pub by_channel: Vec<Figures>,
    pub by_unit: Vec<Figures>,
    pub by_service: Vec<Figures>,
    /// Items waiting for the records officer at the end of each day.
    pub review_backlog: Vec<(NaiveDate, u64)>,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

fn figures<'a>(
    key: &str,
    items: impl Iterator<Item = &'a ItemRecord>,
    period: &Period,
    as_of: NaiveDate,
) -> Figures {
    let mut f = Figures {
        key: key.to_string(),
        ..Figures::default()
    };
    let mut to_registration = Vec::new();
    let mut to_reply = Vec::new();
    for i in items {
        let received = local_date(i.received_at);
        if !period.contains(received) {
            continue;
        }
        f.received += 1;
        if period.contains(local_date(i.registered_at)) {
            f.registered += 1;
        }
        to_registration.push((i.registered_at - i.received_at).num_seconds());
        match (i.went_to_review(), &i.routed_by) {
            (false, _) => f.routed_by_rules += 1,
            (true, Some(_)) => f.routed_by_officer += 1,
            (true, None) if i.closed_at.is_none() => f.in_review += 1,
            (true, None) => {}
        }
        if i.state == "forwarding" {
            f.forwarded += 1;
        }
        match (i.closed_at, i.due) {
            (Some(closed), due) => {
                to_reply.push((closed - i.received_at).num_seconds());
                if due.is_none_or(|d| local_date(closed) <= d) {
                    f.answered_on_time += 1;
                } else {
                    f.answered_late += 1;
                }
            }
            (None, Some(due)) if due < as_of => f.open_overdue += 1,
            (None, _) => {}
        }
    }
    to_registration.sort_unstable();
    to_reply.sort_unstable();
    f.registration_median_s = percentile(&to_registration, 50.0);
    f.registration_p90_s = percentile(&to_registration, 90.0);
    f.reply_median_s = percentile(&to_reply, 50.0);
    f.reply_p90_s = percentile(&to_reply, 90.0);
    f
}

fn grouped(
    items: &[ItemRecord],
    period: &Period,
    as_of: NaiveDate,
    key: impl Fn(&ItemRecord) -> String,
) -> Vec<Figures> {
    let mut groups: BTreeMap<String, Vec<&ItemRecord>> = BTreeMap::new();
    for i in items
        .iter()
        .filter(|i| period.contains(local_date(i.received_at)))
    {
        groups.entry(key(i)).or_default().push(i);
    }
    groups
        .into_iter()
        .map(|(k, list)| figures(&k, list.into_iter(), period, as_of))
        .collect()
}

/// Computes the report for `period` from the records of items received in
/// it plus any item that was in review during it; `today` bounds "overdue".
pub fn report(items: &[ItemRecord], period: Period, today: NaiveDate) -> Report {
    let as_of = today.min(period.to.succ_opt().unwrap_or(period.to));
    let none = || "—".to_string();
    let review_backlog = period
        .days()
        .map(|day| {
            let end = day.checked_add_days(Days::new(1)).unwrap_or(day);
            let waiting = items
                .iter()
                .filter(|i| i.went_to_review())
                .filter(|i| local_date(i.registered_at) < end)
                .filter(|i| i.routed_at.is_none_or(|t| local_date(t) >= end))
                .filter(|i| i.closed_at.is_none_or(|t| local_date(t) >= end))
                .count() as u64;
            (day, waiting)
        })
        .take_while(|(day, _)| *day <= today)
        .collect();
    Report {
        period,
        label: period.label(),
        total: figures("total", items.iter(), &period, as_of),
        by_channel: grouped(items, &period, as_of, |i| i.channel.clone()),
        by_unit: grouped(items, &period, as_of, |i| {
            i.unit.clone().unwrap_or_else(none)
        }),
        by_service: grouped(items, &period, as_of, |i| {
            i.service.clone().unwrap_or_else(none)
        }),
        review_backlog,
    }
}

/// The report as CSV: one row per group, `dimension` first.
pub fn to_csv(r: &Report) -> String {
    let mut out = String::from(
        "period,dimension,key,received,registered,routed_by_rules,routed_by_officer,in_review,forwarded,answered_on_time,answered_late,open_overdue,registration_median_s,registration_p90_s,reply_median_s,reply_p90_s\n",
    );
    let rows = std::iter::once(("total", &r.total))
        .chain(r.by_channel.iter().map(|f| ("channel", f)))
        .chain(r.by_unit.iter().map(|f| ("unit", f)))
        .chain(r.by_service.iter().map(|f| ("service", f)));
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    for (dim, f) in rows {
        let key = if f.key.contains([',', '"']) {
            format!("\"{}\"", f.key.replace('"', "\"\""))
        } else {
            f.key.clone()
        };
        out.push_str(&format!(
            "{},{dim},{key},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.label,
            f.received,
            f.registered,
            f.routed_by_rules,
            f.routed_by_officer,
            f.in_review,
            f.forwarded,
            f.answered_on_time,
            f.answered_late,
            f.open_overdue,
            opt(f.registration_median_s),
            opt(f.registration_p90_s),
            opt(f.reply_median_s),
            opt(f.reply_p90_s),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90.0), Some(9));
        assert_eq!(percentile(&[7], 90.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn quarters() {
        let q = Period::quarter("2026Q2").expect("valid");
        assert_eq!(
            (q.from.to_string(), q.to.to_string()),
            ("2026-04-01".into(), "2026-06-30".into())
        );
        assert_eq!(q.label(), "2026Q2");
        assert!(Period::quarter("2026Q5").is_err());
        assert_eq!(Period::quarter_of(q.to), q);
    }
}

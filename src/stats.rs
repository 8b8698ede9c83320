//! Service-delivery statistics for the quarterly evaluation: per channel,
//! unit and service, how many items came in, how they were routed (by a
//! rule or by the records officer), forwarded, answered on time or late, and
//! how long registration and replies took; plus the review backlog by day.
//!
//! The registry hands over one small record per item ([`ItemRecord`]); the
//! figures are computed here, in plain Rust, so they are the same on
//! PostgreSQL and SQLite and can be tested on a seeded set without a database.
//! Percentiles are nearest-rank: the median of 1, 2, 3, 4 is 2.
//!
//! Beside the items, the office's other contacts ([`Contacts`]):
//! consultations (visits and calls that were not submissions) per channel,
//! unit and service, and client opinions per channel and unit — counts and
//! sums only, never which item an opinion is about.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use serde::Serialize;

use crate::deadline::local_date;
use crate::message::FormalStatus;
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
    /// How it was submitted ([`FormalStatus`]'s name); none on items
    /// registered before it was recorded.
    pub formal_status: Option<String>,
}

impl ItemRecord {
    /// Registered for the records officer (no rule routed it).
    fn went_to_review(&self) -> bool {
        self.routed_by.as_deref() != Some(ROUTED_BY_RULES)
    }
}

/// One consultation, as the statistics need it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsultationRecord {
    pub channel: String,
    pub service: String,
    pub unit: Option<String>,
    pub minutes: u64,
    pub logged_at: DateTime<Utc>,
}

/// One client opinion, with its item's channel and unit only.
#[derive(Debug, Clone, PartialEq)]
pub struct OpinionRecord {
    pub channel: String,
    pub unit: Option<String>,
    /// 1–5.
    pub score: u64,
    pub given_at: DateTime<Utc>,
}

/// The contacts that are not items, for the same report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contacts {
    pub consultations: Vec<ConsultationRecord>,
    pub opinions: Vec<OpinionRecord>,
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

    /// The quarter `spec` names, or the one `today` is in when none is named.
    pub fn quarter_or_current(spec: Option<&str>, today: NaiveDate) -> Result<Period, String> {
        spec.map_or(Ok(Period::quarter_of(today)), Period::quarter)
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
    /// Consultations logged in the period, and their minutes.
    pub consultations: u64,
    pub consultation_minutes: u64,
    /// Client opinions given in the period, and the sum of their scores.
    pub opinions: u64,
    pub opinion_score_sum: u64,
    /// Items received in the period per formal status, in
    /// [`FormalStatus::ALL`] order, then those without one ([`FORMAL_KEYS`]).
    pub formal: [u64; FORMAL_KEYS.len()],
}

/// The formal statuses as the statistics count them: every
/// [`FormalStatus`], then `unknown` (items registered before it was recorded).
pub const FORMAL_KEYS: [&str; 10] = [
    "e_signed",
    "authenticated_by_state_portal",
    "signed_paper",
    "unsigned_email",
    "form",
    "sms",
    "paper",
    "counter",
    "phone",
    "unknown",
];

/// An item's formal status as a statistics key ([`FORMAL_KEYS`]).
fn formal_key(status: Option<&str>) -> &'static str {
    status
        .and_then(FormalStatus::parse)
        .map_or("unknown", FormalStatus::as_str)
}

impl Figures {
    /// The mean opinion score (1–5), if any opinion was given.
    pub fn opinion_mean(&self) -> Option<f64> {
        (self.opinions > 0).then(|| self.opinion_score_sum as f64 / self.opinions as f64)
    }

    /// How many items of formal status `key` ([`FORMAL_KEYS`]) were received.
    pub fn formal_count(&self, key: &str) -> u64 {
        FORMAL_KEYS
            .iter()
            .position(|k| *k == key)
            .map_or(0, |i| self.formal[i])
    }

    fn add_consultation(&mut self, c: &ConsultationRecord) {
        self.consultations += 1;
        self.consultation_minutes += c.minutes;
    }

    fn add_opinion(&mut self, o: &OpinionRecord) {
        self.opinions += 1;
        self.opinion_score_sum += o.score;
    }
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
    /// Per formal status (with its reply times: the law applies fully
    /// only to signed or authenticated submissions).
    pub by_formal_status: Vec<Figures>,
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
        let key = formal_key(i.formal_status.as_deref());
        if let Some(k) = FORMAL_KEYS.iter().position(|k| *k == key) {
            f.formal[k] += 1;
        }
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
        // Spam and non-submissions are closed without an answer.
        let answered = if i.state == "discarded" {
            None
        } else {
            i.closed_at
        };
        match (answered, i.due) {
            (Some(closed), due) => {
                to_reply.push((closed - i.received_at).num_seconds());
                if due.is_none_or(|d| local_date(closed) <= d) {
                    f.answered_on_time += 1;
                } else {
                    f.answered_late += 1;
                }
            }
            (None, Some(due)) if due < as_of && i.closed_at.is_none() => f.open_overdue += 1,
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

/// How one dimension groups items and the other contacts (`None`: the
/// contact is not counted in this dimension).
struct Dimension<I, C, O>
where
    I: Fn(&ItemRecord) -> String,
    C: Fn(&ConsultationRecord) -> Option<String>,
    O: Fn(&OpinionRecord) -> Option<String>,
{
    item: I,
    consultation: C,
    opinion: O,
}

fn grouped<I, C, O>(
    items: &[ItemRecord],
    contacts: &Contacts,
    period: &Period,
    as_of: NaiveDate,
    d: Dimension<I, C, O>,
) -> Vec<Figures>
where
    I: Fn(&ItemRecord) -> String,
    C: Fn(&ConsultationRecord) -> Option<String>,
    O: Fn(&OpinionRecord) -> Option<String>,
{
    let mut groups: BTreeMap<String, Vec<&ItemRecord>> = BTreeMap::new();
    for i in items
        .iter()
        .filter(|i| period.contains(local_date(i.received_at)))
    {
        groups.entry((d.item)(i)).or_default().push(i);
    }
    let mut by_key: BTreeMap<String, Figures> = groups
        .into_iter()
        .map(|(k, list)| {
            let f = figures(&k, list.into_iter(), period, as_of);
            (k, f)
        })
        .collect();
    fn entry(figures: &mut BTreeMap<String, Figures>, k: String) -> &mut Figures {
        figures.entry(k.clone()).or_insert_with(|| Figures {
            key: k,
            ..Figures::default()
        })
    }
    for c in contacts
        .consultations
        .iter()
        .filter(|c| period.contains(local_date(c.logged_at)))
    {
        if let Some(k) = (d.consultation)(c) {
            entry(&mut by_key, k).add_consultation(c);
        }
    }
    for o in contacts
        .opinions
        .iter()
        .filter(|o| period.contains(local_date(o.given_at)))
    {
        if let Some(k) = (d.opinion)(o) {
            entry(&mut by_key, k).add_opinion(o);
        }
    }
    by_key.into_values().collect()
}

/// Computes the report for `period` from the records of items received in
/// it plus any item that was in review during it, and the consultations
/// and opinions of the period; `today` bounds "overdue".
pub fn report(
    items: &[ItemRecord],
    contacts: &Contacts,
    period: Period,
    today: NaiveDate,
) -> Report {
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
    let mut total = figures("total", items.iter(), &period, as_of);
    for c in contacts
        .consultations
        .iter()
        .filter(|c| period.contains(local_date(c.logged_at)))
    {
        total.add_consultation(c);
    }
    for o in contacts
        .opinions
        .iter()
        .filter(|o| period.contains(local_date(o.given_at)))
    {
        total.add_opinion(o);
    }
    Report {
        period,
        label: period.label(),
        total,
        by_channel: grouped(
            items,
            contacts,
            &period,
            as_of,
            Dimension {
                item: |i: &ItemRecord| i.channel.clone(),
                consultation: |c: &ConsultationRecord| Some(c.channel.clone()),
                opinion: |o: &OpinionRecord| Some(o.channel.clone()),
            },
        ),
        by_unit: grouped(
            items,
            contacts,
            &period,
            as_of,
            Dimension {
                item: |i: &ItemRecord| i.unit.clone().unwrap_or_else(none),
                consultation: |c: &ConsultationRecord| Some(c.unit.clone().unwrap_or_else(none)),
                opinion: |o: &OpinionRecord| Some(o.unit.clone().unwrap_or_else(none)),
            },
        ),
        by_service: grouped(
            items,
            contacts,
            &period,
            as_of,
            Dimension {
                item: |i: &ItemRecord| i.service.clone().unwrap_or_else(none),
                consultation: |c: &ConsultationRecord| Some(c.service.clone()),
                // An opinion is about the office's handling, not a service.
                opinion: |_: &OpinionRecord| None,
            },
        ),
        by_formal_status: grouped(
            items,
            contacts,
            &period,
            as_of,
            Dimension {
                item: |i: &ItemRecord| formal_key(i.formal_status.as_deref()).to_string(),
                // Consultations and opinions are not submissions.
                consultation: |_: &ConsultationRecord| None,
                opinion: |_: &OpinionRecord| None,
            },
        ),
        review_backlog,
    }
}

/// The report as CSV: one row per group, `dimension` first.
pub fn to_csv(r: &Report) -> String {
    let formal_columns: String = FORMAL_KEYS.iter().map(|k| format!(",formal_{k}")).collect();
    let mut out = format!(
        "period,dimension,key,received,registered,routed_by_rules,routed_by_officer,in_review,forwarded,answered_on_time,answered_late,open_overdue{formal_columns},registration_median_s,registration_p90_s,reply_median_s,reply_p90_s,consultations,consultation_minutes,opinions,opinion_mean\n",
    );
    let rows = std::iter::once(("total", &r.total))
        .chain(r.by_channel.iter().map(|f| ("channel", f)))
        .chain(r.by_unit.iter().map(|f| ("unit", f)))
        .chain(r.by_service.iter().map(|f| ("service", f)))
        .chain(r.by_formal_status.iter().map(|f| ("formal_status", f)));
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    for (dim, f) in rows {
        let key = if f.key.contains([',', '"']) {
            format!("\"{}\"", f.key.replace('"', "\"\""))
        } else {
            f.key.clone()
        };
        let formal: String = f.formal.iter().map(|n| format!(",{n}")).collect();
        out.push_str(&format!(
            "{},{dim},{key},{},{},{},{},{},{},{},{},{}{formal},{},{},{},{},{},{},{},{}\n",
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
            f.consultations,
            f.consultation_minutes,
            f.opinions,
            f.opinion_mean()
                .map(|m| format!("{m:.2}"))
                .unwrap_or_default(),
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

    use chrono::TimeZone;
    use chrono_tz::Europe::Riga;

    fn riga(m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Riga.with_ymd_and_hms(2026, m, d, h, 0, 0)
            .single()
            .expect("local time")
            .with_timezone(&Utc)
    }

    fn day(m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, d).expect("date")
    }

    #[allow(clippy::too_many_arguments)]
    fn rec(
        channel: &str,
        unit: Option<&str>,
        state: &str,
        received: DateTime<Utc>,
        registration_s: i64,
        routed: Option<(&str, DateTime<Utc>)>,
        closed: Option<DateTime<Utc>>,
        due: NaiveDate,
    ) -> ItemRecord {
        ItemRecord {
            channel: channel.into(),
            unit: unit.map(str::to_string),
            service: None,
            state: state.into(),
            received_at: received,
            registered_at: received + chrono::Duration::seconds(registration_s),
            routed_by: routed.map(|r| r.0.to_string()),
            routed_at: routed.map(|r| r.1),
            closed_at: closed,
            due: Some(due),
            formal_status: None,
        }
    }

    /// Seven items around 2026Q2, each chosen for one figure.
    fn seeded() -> Vec<ItemRecord> {
        vec![
            // 1. routed by a rule, answered on time after 8 days.
            rec(
                "web_form",
                Some("buvvalde"),
                "routed",
                riga(4, 2, 10),
                2,
                Some(("rules", riga(4, 2, 10))),
                Some(riga(4, 10, 10)),
                day(4, 16),
            ),
            // 2. routed by a rule, answered late after 23 days.
            rec(
                "web_form",
                Some("buvvalde"),
                "routed",
                riga(4, 7, 10),
                4,
                Some(("rules", riga(4, 7, 10))),
                Some(riga(4, 30, 10)),
                day(4, 21),
            ),
            // 3. routed by a rule, still open past its deadline.
            rec(
                "email",
                Some("socialais"),
                "routed",
                riga(5, 5, 9),
                6,
                Some(("rules", riga(5, 5, 9))),
                None,
                day(5, 19),
            ),
            // 4. to review, routed by the officer two days later, answered in 6 days.
            rec(
                "email",
                Some("kanceleja"),
                "routed",
                riga(5, 6, 12),
                8,
                Some(("anna", riga(5, 8, 12))),
                Some(riga(5, 12, 12)),
                day(5, 20),
            ),
            // 5. to review, still waiting at the end of the quarter.
            rec(
                "sms",
                None,
                "review",
                riga(6, 29, 12),
                10,
                None,
                None,
                day(7, 13),
            ),
            // 6. forwarded by a rule within 2 days.
            rec(
                "post",
                Some("vid"),
                "forwarding",
                riga(6, 1, 10),
                20,
                Some(("rules", riga(6, 1, 10))),
                Some(riga(6, 3, 10)),
                day(6, 8),
            ),
            // 7. received in Q1, in review until 2 April: only in the backlog.
            rec(
                "web_form",
                Some("kanceleja"),
                "routed",
                riga(3, 31, 12),
                5,
                Some(("janis", riga(4, 2, 9))),
                None,
                day(4, 15),
            ),
        ]
    }

    #[test]
    fn seeded_quarter_gives_exact_figures() {
        let q2 = Period::quarter("2026Q2").expect("quarter");
        let r = report(&seeded(), &Contacts::default(), q2, day(7, 15));
        let t = &r.total;
        assert_eq!(
            (
                t.received,
                t.registered,
                t.routed_by_rules,
                t.routed_by_officer,
                t.in_review,
                t.forwarded
            ),
            (6, 6, 4, 1, 1, 1)
        );
        assert_eq!(
            (t.answered_on_time, t.answered_late, t.open_overdue),
            (3, 1, 1)
        );
        // Registration seconds 2, 4, 6, 8, 10, 20: median (rank 3) 6, p90 (rank 6) 20.
        assert_eq!(
            (t.registration_median_s, t.registration_p90_s),
            (Some(6), Some(20))
        );
        // Replies after 2, 6, 8 and 23 days: median (rank 2) 6 days, p90 (rank 4) 23 days.
        assert_eq!(
            (t.reply_median_s, t.reply_p90_s),
            (Some(6 * 86_400), Some(23 * 86_400))
        );

        let by = |list: &[Figures], key: &str| {
            list.iter()
                .find(|f| f.key == key)
                .cloned()
                .unwrap_or_default()
        };
        let web = by(&r.by_channel, "web_form");
        assert_eq!(
            (web.received, web.answered_on_time, web.answered_late),
            (2, 1, 1)
        );
        assert_eq!(by(&r.by_channel, "sms").in_review, 1);
        let buvvalde = by(&r.by_unit, "buvvalde");
        assert_eq!(
            (buvvalde.received, buvvalde.reply_median_s),
            (2, Some(8 * 86_400))
        );
        assert_eq!(by(&r.by_unit, "—").received, 1);
        assert_eq!(r.by_channel.iter().map(|f| f.received).sum::<u64>(), 6);

        let backlog: BTreeMap<NaiveDate, u64> = r.review_backlog.iter().copied().collect();
        assert_eq!(backlog.len(), 91, "every day of the quarter");
        assert_eq!(
            [
                day(4, 1),
                day(4, 2),
                day(5, 6),
                day(5, 7),
                day(5, 8),
                day(6, 29),
                day(6, 30)
            ]
            .map(|d| backlog[&d]),
            [1, 0, 1, 1, 0, 1, 1]
        );
        assert_eq!(backlog.values().sum::<u64>(), 5);

        let csv = to_csv(&r);
        assert!(
            csv.lines()
                // No formal status recorded on the seeded items: all six `unknown`.
                .any(|l| l
                    == "2026Q2,total,total,6,6,4,1,1,1,3,1,1,0,0,0,0,0,0,0,0,0,6,6,20,518400,1987200,0,0,0,"),
            "{csv}"
        );
    }

    #[test]
    fn consultations_and_opinions_are_counted_per_channel_unit_and_service() {
        let consult =
            |channel: &str, service: &str, unit: &str, minutes: u64, at| ConsultationRecord {
                channel: channel.into(),
                service: service.into(),
                unit: Some(unit.into()),
                minutes,
                logged_at: at,
            };
        let opinion = |channel: &str, unit: &str, score: u64, at| OpinionRecord {
            channel: channel.into(),
            unit: Some(unit.into()),
            score,
            given_at: at,
        };
        let contacts = Contacts {
            consultations: vec![
                consult("counter", "pabalsti", "socialais", 10, riga(4, 3, 9)),
                consult("counter", "pabalsti", "socialais", 20, riga(5, 3, 9)),
                consult("phone", "buvatlauja", "buvvalde", 5, riga(6, 30, 23)),
                // 1 July in Riga: the next quarter.
                consult("phone", "buvatlauja", "buvvalde", 7, riga(7, 1, 1)),
            ],
            opinions: vec![
                opinion("web_form", "buvvalde", 5, riga(4, 12, 10)),
                opinion("web_form", "buvvalde", 2, riga(5, 12, 10)),
                opinion("counter", "socialais", 4, riga(6, 1, 10)),
                opinion("counter", "socialais", 1, riga(3, 31, 10)),
            ],
        };
        let q2 = Period::quarter("2026Q2").expect("quarter");
        let r = report(&seeded(), &contacts, q2, day(7, 15));
        let t = &r.total;
        assert_eq!(
            (
                t.consultations,
                t.consultation_minutes,
                t.opinions,
                t.opinion_score_sum
            ),
            (3, 35, 3, 11)
        );
        let by = |list: &[Figures], key: &str| {
            list.iter()
                .find(|f| f.key == key)
                .cloned()
                .unwrap_or_default()
        };
        let counter = by(&r.by_channel, "counter");
        assert_eq!(
            (
                counter.received,
                counter.consultations,
                counter.consultation_minutes,
                counter.opinions
            ),
            (0, 2, 30, 1)
        );
        let web = by(&r.by_channel, "web_form");
        assert_eq!(
            (web.received, web.opinions, web.opinion_mean()),
            (2, 2, Some(3.5))
        );
        assert_eq!(by(&r.by_channel, "phone").consultations, 1);
        assert_eq!(by(&r.by_service, "pabalsti").consultation_minutes, 30);
        assert_eq!(by(&r.by_service, "buvatlauja").consultations, 1);
        assert_eq!(
            by(&r.by_service, "buvatlauja").opinions,
            0,
            "opinions are per unit, not service"
        );
        let buvvalde = by(&r.by_unit, "buvvalde");
        assert_eq!(
            (buvvalde.received, buvvalde.consultations, buvvalde.opinions),
            (2, 1, 2)
        );
        let csv = to_csv(&r);
        assert!(
            csv.lines()
                .any(|l| l.starts_with("2026Q2,channel,web_form,") && l.ends_with(",0,0,2,3.50")),
            "{csv}"
        );
        assert!(
            csv.lines()
                .any(|l| l.starts_with("2026Q2,channel,counter,0,") && l.ends_with(",2,30,1,4.00")),
            "{csv}"
        );
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

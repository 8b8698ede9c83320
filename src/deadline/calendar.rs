//! The working-day calendar, read from `rules/calendar.toml`: yearly public
//! holidays (fixed dates and Easter-based ones), one-off holidays (the Song
//! and Dance Festival's closing day, a holiday the Saeima declares overnight),
//! transferred working days, and the office's closing time. Data, not code:
//! an administrator's edit is reloaded with the rules and moves open deadlines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{Datelike, Days, NaiveDate, NaiveTime, Weekday};
use serde::Deserialize;
use toml::Spanned;

use super::Calendar;
use crate::tomlfile::{Problems, RuleProblem, parse_toml};

/// Years the yearly holidays are expanded for; far beyond any open deadline.
const FIRST_YEAR: i32 = 2000;
const LAST_YEAR: i32 = 2100;

/// `calendar.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    /// Local time (Europe/Riga) after which an item counts as received on
    /// the next working day, e.g. "17:00".
    office_closes: Spanned<String>,
    /// The years this file was checked for (holidays and transfer orders).
    checked_years: Spanned<Vec<i32>>,
    #[serde(default)]
    holiday: Vec<Spanned<YearlyHolidayDef>>,
    #[serde(default)]
    dated_holiday: Vec<Spanned<DatedHolidayDef>>,
    #[serde(default)]
    transfer: Vec<Spanned<TransferDef>>,
}

/// A holiday every year: `date = "MM-DD"` or `easter_offset = N`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YearlyHolidayDef {
    name: String,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    easter_offset: Option<i64>,
    /// If it falls on a Saturday or Sunday, the next working day is a holiday.
    #[serde(default)]
    weekend_moves_to_next_working_day: bool,
}

/// A holiday on one date only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatedHolidayDef {
    date: toml::value::Datetime,
    name: String,
    #[serde(default)]
    weekend_moves_to_next_working_day: bool,
    /// Who added it and on what basis: for the people reading the file.
    #[serde(default)]
    #[expect(dead_code, reason = "read by people, accepted by the parser")]
    added_by: Option<String>,
    #[serde(default)]
    #[expect(dead_code, reason = "read by people, accepted by the parser")]
    basis: Option<String>,
}

/// A working day made a day off, worked on a Saturday instead.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferDef {
    day_off: toml::value::Datetime,
    worked_on: toml::value::Datetime,
    /// The order (rīkojums) that made the transfer: for people.
    #[serde(default)]
    #[expect(dead_code, reason = "read by people, accepted by the parser")]
    basis: Option<String>,
}

/// A day that is not worked, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DayOff {
    pub date: NaiveDate,
    pub reason: String,
}

/// The compiled calendar: which days are worked, and when the office closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkCalendar {
    holidays: BTreeMap<NaiveDate, String>,
    transferred_off: BTreeMap<NaiveDate, NaiveDate>,
    transferred_on: BTreeSet<NaiveDate>,
    office_closes: NaiveTime,
    checked_years: Vec<i32>,
}

impl Calendar for WorkCalendar {
    fn is_working_day(&self, day: NaiveDate) -> bool {
        if self.transferred_on.contains(&day) {
            return true;
        }
        !is_weekend(day)
            && !self.holidays.contains_key(&day)
            && !self.transferred_off.contains_key(&day)
    }
}

/// Saturday or Sunday.
pub fn is_weekend(day: NaiveDate) -> bool {
    matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
}

/// Easter Sunday (Gregorian, anonymous algorithm).
pub fn easter_sunday(year: i32) -> Option<NaiveDate> {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32)
}

/// A TOML plain date (`2026-03-01`); a time or offset makes it `None`.
pub(super) fn toml_date(d: &toml::value::Datetime) -> Option<NaiveDate> {
    match (d.date, d.time) {
        (Some(date), None) => NaiveDate::from_ymd_opt(
            i32::from(date.year),
            u32::from(date.month),
            u32::from(date.day),
        ),
        _ => None,
    }
}

impl WorkCalendar {
    /// The holiday's name if `day` is one.
    pub fn holiday_name(&self, day: NaiveDate) -> Option<&str> {
        self.holidays.get(&day).map(String::as_str)
    }

    /// The local time after which receipt counts from the next working day.
    pub fn office_closes(&self) -> NaiveTime {
        self.office_closes
    }

    /// True when the file says it was checked for `year`; deadlines in
    /// other years rest on the yearly rules alone (no transfer orders).
    pub fn covers(&self, year: i32) -> bool {
        self.checked_years.contains(&year)
    }

    /// Every day off in `year` that is not a plain weekend, with its reason,
    /// and every Saturday worked instead: what `pietura calendar show` prints.
    pub fn year_overview(&self, year: i32) -> (Vec<DayOff>, Vec<NaiveDate>) {
        let in_year = |d: &NaiveDate| d.year() == year;
        let mut off: Vec<DayOff> = self
            .holidays
            .iter()
            .filter(|(d, _)| in_year(d))
            .map(|(d, r)| DayOff {
                date: *d,
                reason: r.clone(),
            })
            .collect();
        off.extend(
            self.transferred_off
                .iter()
                .filter(|(d, _)| in_year(d))
                .map(|(d, on)| DayOff {
                    date: *d,
                    reason: format!("pārceltā darba diena (strādā {on})"),
                }),
        );
        off.sort_by_key(|d| d.date);
        let on = self
            .transferred_on
            .iter()
            .copied()
            .filter(in_year)
            .collect();
        (off, on)
    }

    /// Compiles `calendar.toml`; problems are reported as `file:line`.
    pub(crate) fn compile(
        path: &Path,
        src: &str,
        problems: &mut Vec<RuleProblem>,
    ) -> Option<WorkCalendar> {
        let file = parse_toml::<CalendarFile>(path, src, problems)?;
        let before = problems.len();
        let mut p = Problems {
            file: path,
            src,
            list: problems,
        };
        let office_closes = match NaiveTime::parse_from_str(file.office_closes.get_ref(), "%H:%M") {
            Ok(t) => t,
            Err(_) => {
                p.at(
                    file.office_closes.span().start,
                    format!(
                        "office_closes {:?} must be a local time like \"17:00\"",
                        file.office_closes.get_ref()
                    ),
                );
                NaiveTime::MIN
            }
        };

        let mut holidays: BTreeMap<NaiveDate, String> = BTreeMap::new();
        let mut moves: Vec<(NaiveDate, String)> = Vec::new();
        let mut add = |day: NaiveDate, name: &str, moves_from_weekend: bool| {
            holidays.entry(day).or_insert_with(|| name.to_string());
            if moves_from_weekend && is_weekend(day) {
                moves.push((day, name.to_string()));
            }
        };
        for h in &file.holiday {
            let at = h.span().start;
            let h = h.get_ref();
            match (&h.date, h.easter_offset) {
                (Some(md), None) => {
                    let Some((m, d)) = md
                        .split_once('-')
                        .and_then(|(m, d)| Some((m.parse::<u32>().ok()?, d.parse::<u32>().ok()?)))
                        .filter(|(m, d)| NaiveDate::from_ymd_opt(2000, *m, *d).is_some())
                    else {
                        p.at(at, format!("holiday {:?}: date {md:?} must be \"MM-DD\"", h.name));
                        continue;
                    };
                    for year in FIRST_YEAR..=LAST_YEAR {
                        if let Some(day) = NaiveDate::from_ymd_opt(year, m, d) {
                            add(day, &h.name, h.weekend_moves_to_next_working_day);
                        }
                    }
                }
                (None, Some(offset)) if offset.abs() <= 100 => {
                    for year in FIRST_YEAR..=LAST_YEAR {
                        if let Some(day) = easter_sunday(year)
                            .and_then(|e| e.checked_add_signed(chrono::Duration::days(offset)))
                        {
                            add(day, &h.name, h.weekend_moves_to_next_working_day);
                        }
                    }
                }
                _ => p.at(
                    at,
                    format!(
                        "holiday {:?}: give exactly one of date = \"MM-DD\" or easter_offset = N (|N| ≤ 100)",
                        h.name
                    ),
                ),
            }
        }
        for h in &file.dated_holiday {
            let at = h.span().start;
            let h = h.get_ref();
            match toml_date(&h.date) {
                Some(day) => add(day, &h.name, h.weekend_moves_to_next_working_day),
                None => p.at(
                    at,
                    format!(
                        "dated_holiday {:?}: date must be a plain date like 2026-05-04",
                        h.name
                    ),
                ),
            }
        }
        // A holiday on a weekend that moves: the next Monday-to-Friday day
        // that is not already a holiday.
        for (day, name) in moves {
            let mut next = day;
            while let Some(n) = next.checked_add_days(Days::new(1)) {
                next = n;
                if !is_weekend(next) && !holidays.contains_key(&next) {
                    holidays.insert(next, format!("{name} (pārcelta no {day})"));
                    break;
                }
            }
        }

        let mut transferred_off = BTreeMap::new();
        let mut transferred_on = BTreeSet::new();
        for t in &file.transfer {
            let at = t.span().start;
            let t = t.get_ref();
            match (toml_date(&t.day_off), toml_date(&t.worked_on)) {
                (Some(off), Some(on)) => {
                    if is_weekend(off) || holidays.contains_key(&off) {
                        p.at(
                            at,
                            format!("transfer: day_off {off} is not a working day to begin with"),
                        );
                    }
                    if !is_weekend(on) {
                        p.at(
                            at,
                            format!("transfer: worked_on {on} is not a Saturday or Sunday"),
                        );
                    }
                    transferred_off.insert(off, on);
                    transferred_on.insert(on);
                }
                _ => p.at(
                    at,
                    "transfer: day_off and worked_on must be plain dates like 2026-06-22".into(),
                ),
            }
        }
        let checked_years = file.checked_years.get_ref().clone();
        if checked_years.is_empty() {
            p.at(
                file.checked_years.span().start,
                "checked_years must name at least one year".into(),
            );
        }
        (problems.len() == before).then_some(WorkCalendar {
            holidays,
            transferred_off,
            transferred_on,
            office_closes,
            checked_years,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn easter_dates_match_the_research_table() {
        assert_eq!(easter_sunday(2025), Some(ymd(2025, 4, 20)));
        assert_eq!(easter_sunday(2026), Some(ymd(2026, 4, 5)));
        assert_eq!(easter_sunday(2027), Some(ymd(2027, 3, 28)));
    }
}

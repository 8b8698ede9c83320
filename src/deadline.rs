//! Reply deadlines under the Submissions Law (Iesniegumu likums), chosen by
//! the rule in force on the receipt date: from 2026-03-01 ten working days
//! (forwarding: five), before that one month (forwarding: seven working days).
//!
//! Working days here are Monday to Friday in Europe/Riga; public holidays and
//! transferred working days are a calendar file of their own (issue 8) and
//! plug in through [`Calendar`].

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc, Weekday};
use chrono_tz::Europe::Riga;

/// The day the 2026 amendments took effect.
pub fn amendment_2026() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 1).unwrap_or_default()
}

/// Tells which days are working days.
pub trait Calendar: Send + Sync {
    fn is_working_day(&self, day: NaiveDate) -> bool;
}

/// Monday to Friday, no holidays.
#[derive(Debug, Clone, Copy, Default)]
pub struct Weekdays;

impl Calendar for Weekdays {
    fn is_working_day(&self, day: NaiveDate) -> bool {
        !matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
    }
}

/// The local (Riga) date of a receipt time: it decides the year of the
/// registration number and the law in force.
pub fn local_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&Riga).date_naive()
}

/// The day `n` working days after `start` (the term starts the next day).
pub fn add_working_days(cal: &dyn Calendar, start: NaiveDate, n: u32) -> NaiveDate {
    let mut day = start;
    let mut left = n;
    while left > 0 {
        day = day.succ_opt().unwrap_or(day);
        if cal.is_working_day(day) {
            left -= 1;
        }
    }
    day
}

/// Moves a day off forward to the next working day.
fn roll_forward(cal: &dyn Calendar, mut day: NaiveDate) -> NaiveDate {
    while !cal.is_working_day(day) {
        day = day.succ_opt().unwrap_or(day);
    }
    day
}

/// The reply deadline for an item received at `received_at`; a rule or
/// service may give its own number of working days.
pub fn reply_due(
    cal: &dyn Calendar,
    received_at: DateTime<Utc>,
    working_days: Option<u32>,
) -> NaiveDate {
    let day = local_date(received_at);
    match working_days {
        Some(n) => add_working_days(cal, day, n),
        None if day >= amendment_2026() => add_working_days(cal, day, 10),
        None => roll_forward(cal, day.checked_add_months(Months::new(1)).unwrap_or(day)),
    }
}

/// The deadline to forward an item outside the municipality's competence.
pub fn forward_due(cal: &dyn Calendar, received_at: DateTime<Utc>) -> NaiveDate {
    let day = local_date(received_at);
    let n = if day >= amendment_2026() { 5 } else { 7 };
    add_working_days(cal, day, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn the_rule_in_force_on_the_receipt_date_applies() {
        // Monday 2026-03-02: ten working days → Monday 2026-03-16.
        assert_eq!(
            reply_due(&Weekdays, utc(2026, 3, 2, 9), None),
            NaiveDate::from_ymd_opt(2026, 3, 16).unwrap()
        );
        // 2026-02-27 (old rule): one month → 2026-03-27 (Friday).
        assert_eq!(
            reply_due(&Weekdays, utc(2026, 2, 27, 9), None),
            NaiveDate::from_ymd_opt(2026, 3, 27).unwrap()
        );
        assert_eq!(
            forward_due(&Weekdays, utc(2026, 3, 2, 9)),
            NaiveDate::from_ymd_opt(2026, 3, 9).unwrap()
        );
    }

    #[test]
    fn receipt_date_is_local_to_riga() {
        // 23:00 UTC on 31 December is already New Year in Riga.
        assert_eq!(local_date(utc(2026, 12, 31, 23)).year(), 2027);
    }
}

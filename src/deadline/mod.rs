//! Reply and forwarding deadlines under the Submissions Law (Iesniegumu
//! likums), computed on the working-day calendar by the regime in force on
//! the date an item was received.
//!
//! Both the calendar ([`calendar`]) and the legal terms ([`terms`]) are files
//! in `rules/`, compiled with the routing rules into one [`Deadlines`] value,
//! so they are validated, versioned and hot-reloaded the same way. What is
//! stored per item is only what the calendar cannot know ([`DeadlineBasis`]:
//! a rule's own term, pauses, an extension), so any calendar change can
//! recompute every open deadline.

pub mod calendar;
pub mod terms;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use chrono_tz::Europe::Riga;
use serde::Serialize;

pub use calendar::WorkCalendar;
pub use terms::{Regime, Regimes, StatusTerm, Term};

/// Tells which days are working days.
pub trait Calendar: Send + Sync {
    fn is_working_day(&self, day: NaiveDate) -> bool;
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
        let Some(next) = day.checked_add_days(Days::new(1)) else {
            return day;
        };
        day = next;
        if cal.is_working_day(day) {
            left -= 1;
        }
    }
    day
}

/// `day` if it is a working day, else the next one.
pub fn roll_forward(cal: &dyn Calendar, mut day: NaiveDate) -> NaiveDate {
    // A year without a working day is a broken calendar; stop rather than spin.
    for _ in 0..366 {
        if cal.is_working_day(day) {
            break;
        }
        match day.checked_add_days(Days::new(1)) {
            Some(next) => day = next,
            None => break,
        }
    }
    day
}

/// Working days after `from` up to and including `to` (0 if `to <= from`).
pub fn working_days_between(cal: &dyn Calendar, from: NaiveDate, to: NaiveDate) -> u32 {
    from.iter_days()
        .skip(1)
        .take_while(|d| *d <= to)
        .filter(|d| cal.is_working_day(*d))
        .count() as u32
}

/// What an item's deadlines are computed from, besides the calendar.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeadlineBasis {
    pub received_at: DateTime<Utc>,
    /// A rule's or service's own reply term, replacing the regime's.
    pub reply_working_days: Option<u32>,
    /// Working days the item waited for the submitter (pauses).
    pub paused_working_days: u32,
    /// The date a recorded extension moved the reply deadline to.
    pub extended_until: Option<NaiveDate>,
    /// How it was submitted: the regime may give other terms, or none, to
    /// submissions the law does not apply to fully (`[regime.formal_status]`).
    /// None (items from before it was recorded): the law's terms.
    pub formal_status: Option<crate::message::FormalStatus>,
}

/// The calendar and the legal terms in force: part of a rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlines {
    pub calendar: WorkCalendar,
    pub regimes: Regimes,
}

/// Why an extension was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    #[error("the new deadline {asked} is not later than the current one {current}")]
    NotLater {
        asked: NaiveDate,
        current: NaiveDate,
    },
    #[error(
        "the new deadline {asked} is past the longest term the law allows ({limit}, {term} from receipt under {regime:?})"
    )]
    BeyondLimit {
        asked: NaiveDate,
        limit: NaiveDate,
        term: Term,
        regime: String,
    },
}

impl Deadlines {
    /// The day receipt counts from: the local date, or the next working day
    /// when the item came after the office closed or on a day off.
    pub fn legal_receipt_day(&self, at: DateTime<Utc>) -> NaiveDate {
        let local = at.with_timezone(&Riga);
        let day = local.date_naive();
        if self.calendar.is_working_day(day) && local.time() < self.calendar.office_closes() {
            day
        } else {
            add_working_days(&self.calendar, day, 1)
        }
    }

    /// The regime in force on the date the item was received.
    pub fn regime(&self, received_at: DateTime<Utc>) -> &Regime {
        self.regimes.in_force(local_date(received_at))
    }

    fn end_of(&self, start: NaiveDate, term: Term) -> NaiveDate {
        match term {
            Term::WorkingDays(n) => add_working_days(&self.calendar, start, n),
            Term::Months(n) => roll_forward(
                &self.calendar,
                start.checked_add_months(Months::new(n)).unwrap_or(start),
            ),
        }
    }

    fn shifted(&self, day: NaiveDate, b: &DeadlineBasis) -> NaiveDate {
        add_working_days(&self.calendar, day, b.paused_working_days)
    }

    /// What the regime in force gives a submission of the item's formal
    /// status: the law's terms, a term of the municipality's, or none.
    pub fn status_term(&self, b: &DeadlineBasis) -> StatusTerm {
        b.formal_status
            .map(|f| self.regime(b.received_at).for_status(f))
            .unwrap_or(StatusTerm::Law)
    }

    /// The reply term that applies: the municipality's for a formal status
    /// the law does not apply to fully; else the rule's or service's own,
    /// else the law's.
    pub fn reply_term(&self, b: &DeadlineBasis) -> Term {
        if let StatusTerm::Term(t) = self.status_term(b) {
            return t;
        }
        b.reply_working_days
            .map(Term::WorkingDays)
            .unwrap_or(self.regime(b.received_at).reply)
    }

    /// The reply deadline, or none when the regime gives the item's formal
    /// status no legal deadline. What registration and every recompute store.
    pub fn legal_reply_due(&self, b: &DeadlineBasis) -> Option<NaiveDate> {
        match self.status_term(b) {
            StatusTerm::NoDeadline if b.extended_until.is_none() => None,
            _ => Some(self.reply_due(b)),
        }
    }

    /// The reply deadline.
    pub fn reply_due(&self, b: &DeadlineBasis) -> NaiveDate {
        let base = match b.extended_until {
            Some(until) => roll_forward(&self.calendar, until),
            None => self.end_of(self.legal_receipt_day(b.received_at), self.reply_term(b)),
        };
        self.shifted(base, b)
    }

    /// The deadline to forward an item outside the municipality's competence.
    pub fn forward_due(&self, b: &DeadlineBasis) -> NaiveDate {
        let regime = self.regime(b.received_at);
        let base = self.end_of(self.legal_receipt_day(b.received_at), regime.forward);
        self.shifted(base, b)
    }

    /// The latest date an extension may set.
    pub fn extension_limit(&self, b: &DeadlineBasis) -> NaiveDate {
        let regime = self.regime(b.received_at);
        let base = self.end_of(self.legal_receipt_day(b.received_at), regime.extended_max);
        self.shifted(base, b)
    }

    /// Checks an extension to `asked` (or to the longest allowed term when
    /// `None`) and returns the basis with it recorded.
    pub fn extend(
        &self,
        b: &DeadlineBasis,
        asked: Option<NaiveDate>,
    ) -> Result<DeadlineBasis, ExtensionError> {
        let current = self.reply_due(b);
        let limit = self.extension_limit(b);
        let asked = roll_forward(&self.calendar, asked.unwrap_or(limit));
        if asked <= current {
            return Err(ExtensionError::NotLater { asked, current });
        }
        if asked > limit {
            let regime = self.regime(b.received_at);
            return Err(ExtensionError::BeyondLimit {
                asked,
                limit,
                term: regime.extended_max,
                regime: regime.name.clone(),
            });
        }
        // Stored without the pauses so far: they are added on top again.
        let mut out = b.clone();
        let mut unpaused = asked;
        for _ in 0..b.paused_working_days {
            unpaused = previous_working_day(&self.calendar, unpaused);
        }
        out.extended_until = Some(unpaused);
        Ok(out)
    }

    /// The working day `n` working days after `day` (for "due soon" horizons).
    pub fn working_days_after(&self, day: NaiveDate, n: u32) -> NaiveDate {
        add_working_days(&self.calendar, day, n)
    }

    /// Working days after `from` up to and including `to`.
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> u32 {
        working_days_between(&self.calendar, from, to)
    }

    /// True when the calendar file was checked for the year of `day`.
    pub fn covers(&self, day: NaiveDate) -> bool {
        self.calendar.covers(day.year())
    }
}

fn previous_working_day(cal: &dyn Calendar, day: NaiveDate) -> NaiveDate {
    let mut d = day;
    for _ in 0..366 {
        match d.checked_sub_days(Days::new(1)) {
            Some(prev) => d = prev,
            None => return day,
        }
        if cal.is_working_day(d) {
            return d;
        }
    }
    day
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::path::Path;

    const CALENDAR: &str = include_str!("../../rules/calendar.toml");
    const TERMS: &str = include_str!("../../rules/deadlines.toml");

    fn shipped_with(extra_calendar: &str) -> Deadlines {
        let mut problems = Vec::new();
        let calendar = WorkCalendar::compile(
            Path::new("calendar.toml"),
            &format!("{CALENDAR}\n{extra_calendar}"),
            &mut problems,
        );
        let regimes = Regimes::compile(Path::new("deadlines.toml"), TERMS, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        Deadlines {
            calendar: calendar.expect("calendar"),
            regimes: regimes.expect("regimes"),
        }
    }

    fn shipped() -> Deadlines {
        shipped_with("")
    }

    /// A local Riga wall-clock time.
    fn riga(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Riga.with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .expect("unambiguous local time")
            .with_timezone(&Utc)
    }

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    fn received(at: DateTime<Utc>) -> DeadlineBasis {
        DeadlineBasis {
            received_at: at,
            ..DeadlineBasis::default()
        }
    }

    #[test]
    fn midsummer_2026_skips_the_transferred_day_and_both_holidays() {
        let d = shipped();
        // Fri 19 Jun, office hours. 22 Jun transferred day off, 23–24 Jun
        // holidays; Sat 27 Jun is the transferred working day: 25 (1),
        // 26 (2), 27 (3), 29 (4), 30 (5), 1 Jul (6), 2 (7), 3 (8), 6 (9), 7 (10).
        assert!(!d.calendar.is_working_day(ymd(2026, 6, 22)));
        assert!(!d.calendar.is_working_day(ymd(2026, 6, 23)));
        assert!(!d.calendar.is_working_day(ymd(2026, 6, 24)));
        assert!(d.calendar.is_working_day(ymd(2026, 6, 27)));
        assert_eq!(
            d.reply_due(&received(riga(2026, 6, 19, 10, 0))),
            ymd(2026, 7, 7)
        );
    }

    #[test]
    fn receipt_on_a_day_off_or_after_hours_counts_from_the_next_working_day() {
        let d = shipped();
        // Saturday 20 Jun: received Thu 25 Jun, ten working days → 8 Jul.
        assert_eq!(
            d.legal_receipt_day(riga(2026, 6, 20, 11, 0)),
            ymd(2026, 6, 25)
        );
        assert_eq!(
            d.reply_due(&received(riga(2026, 6, 20, 11, 0))),
            ymd(2026, 7, 8)
        );
        // Friday 19 Jun at 17:30, after the office closed: the same as Saturday.
        assert_eq!(
            d.reply_due(&received(riga(2026, 6, 19, 17, 30))),
            ymd(2026, 7, 8)
        );
        // 16:59 is still Friday.
        assert_eq!(
            d.reply_due(&received(riga(2026, 6, 19, 16, 59))),
            ymd(2026, 7, 7)
        );
    }

    #[test]
    fn the_rule_in_force_on_the_receipt_date_applies() {
        let d = shipped();
        // Fri 27 Feb 2026, old rule: one month → Fri 27 Mar; forward in 7
        // working days → Tue 10 Mar.
        let old = received(riga(2026, 2, 27, 10, 0));
        assert_eq!(d.regime(old.received_at).reply, Term::Months(1));
        assert_eq!(d.reply_due(&old), ymd(2026, 3, 27));
        assert_eq!(d.forward_due(&old), ymd(2026, 3, 10));
        // Mon 2 Mar 2026, new rule: ten working days → Mon 16 Mar; forward
        // in 5 → Mon 9 Mar.
        let new = received(riga(2026, 3, 2, 10, 0));
        assert_eq!(d.regime(new.received_at).reply, Term::WorkingDays(10));
        assert_eq!(d.reply_due(&new), ymd(2026, 3, 16));
        assert_eq!(d.forward_due(&new), ymd(2026, 3, 9));
    }

    #[test]
    fn a_month_ending_on_a_day_off_moves_to_the_next_working_day() {
        // 30 Jan 2026 + one month = 28 Feb (a Saturday) → Mon 2 Mar.
        assert_eq!(
            shipped().reply_due(&received(riga(2026, 1, 30, 9, 0))),
            ymd(2026, 3, 2)
        );
    }

    #[test]
    fn weekend_holidays_that_move_and_transfers_of_2025() {
        let d = shipped();
        // 4 May 2025 was a Sunday: Monday 5 May is off; 2 May transferred.
        assert!(!d.calendar.is_working_day(ymd(2025, 5, 5)));
        assert!(!d.calendar.is_working_day(ymd(2025, 5, 2)));
        assert!(d.calendar.is_working_day(ymd(2025, 5, 10)));
        // 18 Nov 2028 is a Saturday: Monday 20 Nov is off.
        assert!(!d.calendar.is_working_day(ymd(2028, 11, 20)));
        // Easter 2027: Good Friday 26 Mar, Easter Monday 29 Mar.
        assert!(!d.calendar.is_working_day(ymd(2027, 3, 26)));
        assert!(!d.calendar.is_working_day(ymd(2027, 3, 29)));
        assert!(d.covers(ymd(2027, 1, 4)) && !d.covers(ymd(2028, 1, 3)));
    }

    #[test]
    fn an_added_holiday_moves_the_deadline() {
        let before = shipped().reply_due(&received(riga(2026, 3, 2, 10, 0)));
        let after = shipped_with(
            "[[dated_holiday]]\ndate = 2026-03-10\nname = \"Ārkārtas svētku diena\"\n",
        )
        .reply_due(&received(riga(2026, 3, 2, 10, 0)));
        assert_eq!((before, after), (ymd(2026, 3, 16), ymd(2026, 3, 17)));
    }

    #[test]
    fn extension_is_capped_by_the_law_and_pauses_add_working_days() {
        let d = shipped();
        let b = received(riga(2026, 3, 2, 10, 0));
        // One month from receipt: Thu 2 Apr 2026.
        assert_eq!(d.extension_limit(&b), ymd(2026, 4, 2));
        assert!(matches!(
            d.extend(&b, Some(ymd(2026, 4, 3))),
            Err(ExtensionError::BeyondLimit { .. })
        ));
        assert!(matches!(
            d.extend(&b, Some(ymd(2026, 3, 13))),
            Err(ExtensionError::NotLater { .. })
        ));
        let extended = d.extend(&b, None).expect("to the limit");
        assert_eq!(d.reply_due(&extended), ymd(2026, 4, 2));
        // Three working days waiting for the submitter: 16 Mar → 19 Mar;
        // extended: 2 Apr → 9 Apr (3 Apr Good Friday, 6 Apr Easter Monday).
        let paused = DeadlineBasis {
            paused_working_days: 3,
            ..b.clone()
        };
        assert_eq!(d.reply_due(&paused), ymd(2026, 3, 19));
        let paused_extended = DeadlineBasis {
            paused_working_days: 3,
            ..extended
        };
        assert_eq!(d.reply_due(&paused_extended), ymd(2026, 4, 9));
        let again = d.extend(&paused, None).expect("paused then extended");
        assert_eq!(d.reply_due(&again), ymd(2026, 4, 9));
    }

    #[test]
    fn every_receipt_of_2025_to_2027_gets_a_working_day_the_law_counts_to() {
        let d = shipped();
        let mut day = ymd(2025, 1, 1);
        while day <= ymd(2027, 12, 31) {
            for hour in [10, 18] {
                let b = received(riga(day.year(), day.month(), day.day(), hour, 0));
                let legal = d.legal_receipt_day(b.received_at);
                assert!(
                    legal >= day && d.calendar.is_working_day(legal),
                    "{day} {hour}h"
                );
                let due = d.reply_due(&b);
                assert!(d.calendar.is_working_day(due), "{day} {hour}h → {due}");
                if day >= ymd(2026, 3, 1) {
                    assert_eq!(
                        d.working_days_between(legal, due),
                        10,
                        "{day} {hour}h → {due}"
                    );
                    assert_eq!(d.working_days_between(legal, d.forward_due(&b)), 5);
                } else {
                    assert!(due >= legal.checked_add_months(Months::new(1)).expect("month"));
                    assert_eq!(d.working_days_between(legal, d.forward_due(&b)), 7);
                }
            }
            day = day.succ_opt().expect("next day");
        }
    }

    #[test]
    fn a_service_term_replaces_the_law_term() {
        let b = DeadlineBasis {
            reply_working_days: Some(3),
            ..received(riga(2026, 3, 2, 10, 0))
        };
        assert_eq!(shipped().reply_due(&b), ymd(2026, 3, 5));
    }
}

//! An ad-hoc holiday added to a rule set's `calendar.toml` (the desk API and
//! `pietura calendar add-holiday`): the text is appended, the whole set
//! compiled again, and the result is a new rule set to activate.

use chrono::{DateTime, NaiveDate, Utc};

use super::{RuleSet, RulesError};
use crate::deadline::Calendar;
use crate::deadline::calendar::is_weekend;

/// Why an ad-hoc holiday was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddHolidayError {
    #[error("{date} is already a day off ({reason}); nothing added")]
    AlreadyOff { date: NaiveDate, reason: String },
    #[error("an ad-hoc holiday needs its name and who adds it")]
    Invalid,
    #[error(transparent)]
    Rules(#[from] RulesError),
}

/// `current` with a one-off holiday appended to its `calendar.toml`,
/// compiled (not yet in force anywhere).
pub fn with_dated_holiday(
    current: &RuleSet,
    date: NaiveDate,
    name: &str,
    added_by: &str,
    now: DateTime<Utc>,
) -> Result<RuleSet, AddHolidayError> {
    if name.trim().is_empty() || added_by.trim().is_empty() {
        return Err(AddHolidayError::Invalid);
    }
    let calendar = &current.deadlines.calendar;
    if !calendar.is_working_day(date) && !is_weekend(date) {
        let reason = calendar
            .holiday_name(date)
            .unwrap_or("transferred day off")
            .to_string();
        return Err(AddHolidayError::AlreadyOff { date, reason });
    }
    let mut sources = (*current.sources).clone();
    let text = sources
        .files
        .get("calendar.toml")
        .cloned()
        .unwrap_or_default();
    let block = format!(
        "\n[[dated_holiday]]\ndate = {date}\nname = {}\nadded_by = {}\n",
        toml::Value::String(name.to_string()),
        toml::Value::String(format!("{added_by}, {}", now.format("%Y-%m-%d %H:%M UTC"))),
    );
    sources.files.insert(
        "calendar.toml".into(),
        format!("{}{block}", text.trim_end_matches('\n')),
    );
    Ok(RuleSet::from_sources(&current.dir, sources)?)
}

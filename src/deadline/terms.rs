//! The legal terms, read from `rules/deadlines.toml`: one regime per version
//! of the Submissions Law, chosen by the date an item was received, so an
//! item keeps the rule that was in force when it arrived.

use std::path::Path;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::message::FormalStatus;
use crate::tomlfile::{Problems, RuleProblem, parse_toml};

/// A length of time as the law states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Term {
    /// Counted on the working-day calendar, from the day after receipt.
    WorkingDays(u32),
    /// The same date so many months later (the last day of a shorter month).
    Months(u32),
}

impl std::fmt::Display for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Term::WorkingDays(n) => write!(f, "{n} working days"),
            Term::Months(n) => write!(f, "{n} month(s)"),
        }
    }
}

/// What a regime gives submissions of one formal status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusTerm {
    /// The law applies fully: the regime's terms (`"law"`, the default).
    Law,
    /// The municipality's own reply term (`{ working_days = N }`, `{ months = N }`).
    Term(Term),
    /// No legal deadline (`"none"`).
    NoDeadline,
}

/// How a status is written in `[regime.formal_status]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StatusTermDef {
    Word(String),
    Term(Term),
}

/// The terms in force from one date on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Regime {
    pub from: NaiveDate,
    pub name: String,
    /// The reply term.
    pub reply: Term,
    /// The longest a reply term may be extended to, counted from receipt.
    pub extended_max: Term,
    /// The term to forward an item outside the municipality's competence.
    pub forward: Term,
    /// Formal statuses given other than the law's terms; the rest: [`StatusTerm::Law`].
    pub by_status: Vec<(FormalStatus, StatusTerm)>,
}

impl Regime {
    /// What this regime gives a submission of formal status `f`.
    pub fn for_status(&self, f: FormalStatus) -> StatusTerm {
        self.by_status
            .iter()
            .find(|(s, _)| *s == f)
            .map(|(_, t)| *t)
            .unwrap_or(StatusTerm::Law)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadlinesFile {
    #[serde(default)]
    regime: Vec<Spanned<RegimeDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegimeDef {
    from: toml::value::Datetime,
    name: String,
    reply: Term,
    extended_max: Term,
    forward: Term,
    /// Formal status name → `"law"`, `"none"` or a term.
    #[serde(default)]
    formal_status: BTreeMap<String, Spanned<StatusTermDef>>,
}

/// The regimes, newest first; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regimes {
    newer: Vec<Regime>,
    oldest: Regime,
}

impl Regimes {
    /// The regime in force on `day`; before the oldest one, the oldest.
    pub fn in_force(&self, day: NaiveDate) -> &Regime {
        self.newer
            .iter()
            .find(|r| r.from <= day)
            .unwrap_or(&self.oldest)
    }

    /// Compiles `deadlines.toml`; problems are reported as `file:line`.
    pub(crate) fn compile(
        path: &Path,
        src: &str,
        problems: &mut Vec<RuleProblem>,
    ) -> Option<Regimes> {
        let file = parse_toml::<DeadlinesFile>(path, src, problems)?;
        let before = problems.len();
        let mut p = Problems {
            file: path,
            src,
            list: problems,
        };
        let mut regimes = Vec::new();
        for r in &file.regime {
            let at = r.span().start;
            let def = r.get_ref();
            let Some(from) = super::calendar::toml_date(&def.from) else {
                p.at(
                    at,
                    format!(
                        "regime {:?}: from must be a plain date like 2026-03-01",
                        def.name
                    ),
                );
                continue;
            };
            for (key, term) in [
                ("reply", def.reply),
                ("extended_max", def.extended_max),
                ("forward", def.forward),
            ] {
                if matches!(term, Term::WorkingDays(0) | Term::Months(0)) {
                    p.at(
                        at,
                        format!("regime {:?}: {key} must be longer than zero", def.name),
                    );
                }
            }
            if regimes.iter().any(|x: &Regime| x.from == from) {
                p.at(
                    at,
                    format!("regime {:?}: another regime starts on {from} too", def.name),
                );
            }
            let mut by_status = Vec::new();
            for (name, t) in &def.formal_status {
                let line = t.span().start;
                let Some(status) = FormalStatus::parse(name) else {
                    p.at(
                        line,
                        format!(
                            "regime {:?}: formal_status.{name} is not a formal status (one of {})",
                            def.name,
                            FormalStatus::names()
                        ),
                    );
                    continue;
                };
                let term = match t.get_ref() {
                    StatusTermDef::Word(w) if w == "law" => StatusTerm::Law,
                    StatusTermDef::Word(w) if w == "none" => StatusTerm::NoDeadline,
                    StatusTermDef::Term(Term::WorkingDays(0) | Term::Months(0)) => {
                        p.at(
                            line,
                            format!(
                                "regime {:?}: formal_status.{name} must be longer than zero (or \"none\")",
                                def.name
                            ),
                        );
                        continue;
                    }
                    StatusTermDef::Term(term) => StatusTerm::Term(*term),
                    StatusTermDef::Word(w) => {
                        p.at(
                            line,
                            format!(
                                "regime {:?}: formal_status.{name} = {w:?}: write \"law\", \"none\", {{ working_days = N }} or {{ months = N }}",
                                def.name
                            ),
                        );
                        continue;
                    }
                };
                by_status.push((status, term));
            }
            regimes.push(Regime {
                from,
                name: def.name.clone(),
                reply: def.reply,
                extended_max: def.extended_max,
                forward: def.forward,
                by_status,
            });
        }
        regimes.sort_by_key(|r| std::cmp::Reverse(r.from));
        let Some(oldest) = regimes.pop() else {
            problems.push(RuleProblem {
                file: path.to_path_buf(),
                line: None,
                message: "no [[regime]]: at least one set of legal terms is needed".into(),
            });
            return None;
        };
        (problems.len() == before).then_some(Regimes {
            newer: regimes,
            oldest,
        })
    }
}

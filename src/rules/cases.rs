//! The classification scheme (klasifikācijas shēma, formerly the lietu
//! nomenklatūra): the cases an item is filed under, each with its
//! responsible unit and retention period, read from `rules/cases.toml` with
//! the rest of the rules (validated at `file:line`, versioned and
//! hot-reloaded with them). An item gets its case at registration — a
//! rule's `then.case`, else its service's `case` — or from the records
//! officer on the desk.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::Unit;
use crate::tomlfile::{Problems, RuleProblem, parse_toml};

/// How long a case's documents are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// So many years (short-term up to 10, long-term beyond).
    Years(u16),
    /// Kept for ever (handed over to the National Archives).
    Permanent,
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retention::Years(n) => write!(f, "{n} years"),
            Retention::Permanent => f.write_str("permanent"),
        }
    }
}

/// One case of the scheme, as compiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseDef {
    /// The case index (`1-10`).
    pub code: String,
    pub title: String,
    pub title_en: Option<String>,
    /// The responsible unit (`units.toml`).
    pub unit: String,
    pub retention: Retention,
}

impl CaseDef {
    /// The title in `en`glish when there is one, else the Latvian.
    pub fn title_in(&self, en: bool) -> &str {
        match (&self.title_en, en) {
            (Some(t), true) => t,
            _ => &self.title,
        }
    }
}

/// The scheme: its version and approval, and its cases by code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CaseScheme {
    pub version: String,
    pub name: String,
    /// Who approved it and when (or that it is a draft).
    pub approval: Option<String>,
    pub cases: BTreeMap<String, CaseDef>,
}

impl CaseScheme {
    /// The case with this code.
    pub fn get(&self, code: &str) -> Option<&CaseDef> {
        self.cases.get(code)
    }

    /// Each case's retention in years (`None`: permanent), as the
    /// retention review ([`crate::archive::retention_review`]) takes it.
    pub fn retention_years(&self) -> BTreeMap<String, Option<u16>> {
        self.cases
            .iter()
            .map(|(code, c)| {
                let years = match c.retention {
                    Retention::Years(n) => Some(n),
                    Retention::Permanent => None,
                };
                (code.clone(), years)
            })
            .collect()
    }
}

/// `cases.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    scheme: Spanned<SchemeDef>,
    #[serde(default)]
    case: Vec<Spanned<CaseFileDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemeDef {
    version: String,
    name: String,
    #[serde(default)]
    approval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFileDef {
    code: String,
    title: String,
    #[serde(default)]
    title_en: Option<String>,
    unit: Spanned<String>,
    retention: Spanned<RetentionDef>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RetentionDef {
    Years(i64),
    Word(String),
}

/// Whether `code` is a case index: digits and letters in groups joined by
/// `-` or `.` (`1-10`, `2.1-3`, `A-1`).
fn is_code(code: &str) -> bool {
    !code.is_empty()
        && code
            .split(['-', '.'])
            .all(|g| !g.is_empty() && g.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl CaseScheme {
    /// Compiles `cases.toml`; problems are reported as `file:line`.
    pub(crate) fn compile(
        path: &Path,
        src: &str,
        units: &BTreeMap<String, Unit>,
        problems: &mut Vec<RuleProblem>,
    ) -> Option<CaseScheme> {
        let file = parse_toml::<CasesFile>(path, src, problems)?;
        let before = problems.len();
        let mut p = Problems {
            file: path,
            src,
            list: problems,
        };
        let scheme_at = file.scheme.span().start;
        let scheme = file.scheme.into_inner();
        if scheme.version.trim().is_empty() {
            p.at(scheme_at, "scheme: version must not be empty".into());
        }
        let mut cases = BTreeMap::new();
        for c in file.case {
            let at = c.span().start;
            let c = c.into_inner();
            let code = c.code.trim().to_string();
            if !is_code(&code) {
                p.at(
                    at,
                    format!(
                        "case {:?}: code must be letters and digits joined by - or . (like 1-10)",
                        c.code
                    ),
                );
            }
            if c.title.trim().is_empty() {
                p.at(at, format!("case {code}: title must not be empty"));
            }
            if !units.contains_key(c.unit.get_ref()) {
                p.at(
                    c.unit.span().start,
                    format!(
                        "case {code}: unit {:?} is not defined in units.toml",
                        c.unit.get_ref()
                    ),
                );
            }
            let retention_at = c.retention.span().start;
            let retention = match c.retention.into_inner() {
                RetentionDef::Years(n) => match u16::try_from(n) {
                    Ok(n) if n > 0 => Some(Retention::Years(n)),
                    _ => None,
                },
                RetentionDef::Word(w) if w == "permanent" => Some(Retention::Permanent),
                RetentionDef::Word(_) => None,
            };
            let Some(retention) = retention else {
                p.at(
                    retention_at,
                    format!(
                        "case {code}: retention must be a number of years (1 or more) or \"permanent\""
                    ),
                );
                continue;
            };
            let case = CaseDef {
                code: code.clone(),
                title: c.title,
                title_en: c.title_en,
                unit: c.unit.into_inner(),
                retention,
            };
            if cases.insert(code.clone(), case).is_some() {
                p.at(at, format!("case {code} is defined twice"));
            }
        }
        (problems.len() == before).then_some(CaseScheme {
            version: scheme.version,
            name: scheme.name,
            approval: scheme.approval,
            cases,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert!(is_code("1-10"));
        assert!(is_code("2.1-3"));
        assert!(!is_code("1--2"));
        assert!(!is_code(""));
        assert!(!is_code("1 10"));
    }
}

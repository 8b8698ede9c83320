//! TOML files with problems located as `file:line`: the one parser and
//! problem list shared by the routing rules ([`crate::rules`]) and the
//! calendar and legal terms ([`crate::deadline`]), so neither needs the other's
//! helpers.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a TOML file, located as `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file.display(), l, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Turns a byte offset into a 1-based line number.
pub(crate) fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

/// Collects problems while a file is compiled.
pub(crate) struct Problems<'a> {
    pub file: &'a Path,
    pub src: &'a str,
    pub list: &'a mut Vec<RuleProblem>,
}

impl Problems<'_> {
    pub(crate) fn at(&mut self, offset: usize, message: String) {
        self.list.push(RuleProblem {
            file: self.file.to_path_buf(),
            line: Some(line_of(self.src, offset)),
            message,
        });
    }
}

/// Deserialises `src`; a syntax or shape error becomes a problem at its line.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    src: &str,
    problems: &mut Vec<RuleProblem>,
) -> Option<T> {
    match toml::from_str::<T>(src) {
        Ok(v) => Some(v),
        Err(e) => {
            let line = e.span().map(|s| line_of(src, s.start));
            problems.push(RuleProblem {
                file: path.to_path_buf(),
                line,
                message: e.message().trim().to_string(),
            });
            None
        }
    }
}

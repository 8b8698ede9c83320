//! Registration-number patterns such as `{unit_index}/{year}/{seq}` or
//! `{unit_index}-{year}/{seq:4}`. The sequence itself is allocated by the
//! registry inside the registering transaction (gap-free per series and year).

use std::fmt::Write;

/// Why a pattern is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("unknown placeholder {{{0}}}; use {{unit_index}}, {{year}}, {{seq}} or {{seq:N}}")]
    Unknown(String),
    #[error("unclosed '{{' in pattern")]
    Unclosed,
    #[error("the pattern must contain {{seq}}, or numbers would repeat")]
    NoSequence,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    UnitIndex,
    Year,
    Seq { width: usize },
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<Piece>);

impl Pattern {
    /// Parses and checks a pattern from the configuration.
    pub fn parse(src: &str) -> Result<Self, PatternError> {
        let mut pieces = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let close = rest[open..].find('}').ok_or(PatternError::Unclosed)? + open;
            let name = &rest[open + 1..close];
            pieces.push(match name {
                "unit_index" => Piece::UnitIndex,
                "year" => Piece::Year,
                "seq" => Piece::Seq { width: 0 },
                other => match other.strip_prefix("seq:").and_then(|w| w.parse().ok()) {
                    Some(width) if width <= 12 => Piece::Seq { width },
                    _ => return Err(PatternError::Unknown(other.to_string())),
                },
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        if !pieces.iter().any(|p| matches!(p, Piece::Seq { .. })) {
            return Err(PatternError::NoSequence);
        }
        Ok(Pattern(pieces))
    }

    /// The registration number for one allocated sequence value.
    pub fn render(&self, unit_index: &str, year: i64, seq: i64) -> String {
        let mut out = String::new();
        for p in &self.0 {
            let _ = match p {
                Piece::Text(t) => write!(out, "{t}"),
                Piece::UnitIndex => write!(out, "{unit_index}"),
                Piece::Year => write!(out, "{year}"),
                Piece::Seq { width } => write!(out, "{seq:0width$}"),
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders_and_padding() {
        let p = Pattern::parse("{unit_index}-{year}/{seq:4}").unwrap();
        assert_eq!(p.render("3", 2026, 42), "3-2026/0042");
        assert_eq!(
            Pattern::parse("{unit_index}/{year}/{seq}")
                .unwrap()
                .render("BV", 2026, 7),
            "BV/2026/7"
        );
    }

    #[test]
    fn refuses_bad_patterns() {
        assert_eq!(Pattern::parse("{year}/x"), Err(PatternError::NoSequence));
        assert_eq!(
            Pattern::parse("{yr}/{seq}"),
            Err(PatternError::Unknown("yr".into()))
        );
        assert_eq!(Pattern::parse("{seq"), Err(PatternError::Unclosed));
    }
}

//! Latvian text normalisation for routing: lowercase, diacritic folding and a
//! light suffix stemmer, so that "Būvatļaujas", "būvatļauju" and an SMS typed
//! as "buvatlauju" all meet the same key.
//!
//! Folding happens *before* stemming: citizens often type without diacritics,
//! and folding first also removes the palatalisation splits (ceļš/ceļa) that a
//! diacritic-aware stemmer would produce. The suffix list is Lucene's
//! `LatvianStemmer` (Kreslins' light stemmer, Apache-2.0) in folded form.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Lowercases and strips diacritics: "Ķēķis Šūnā" → "kekis suna".
pub fn fold(text: &str) -> String {
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Splits folded text into words (letters and digits), in order.
pub fn tokens(text: &str) -> Vec<String> {
    fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// A text's words as the register's full-text index keeps them and as a
/// search is asked: folded and stemmed exactly as the rules match them,
/// space-separated ("Būvatļaujas izsniegšana" → "buvatlauj izsniegsan").
/// The one function for both sides, so the desk's search ignores case,
/// diacritics and endings the way routing does.
pub fn index_text(text: &str) -> String {
    tokens(text)
        .iter()
        .map(|w| stem(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// (suffix, vowels that must be in the word beyond the suffix's own).
const SUFFIXES: &[(&str, usize)] = &[
    ("ajiem", 3),
    ("ajai", 3),
    ("ajam", 2),
    ("ajos", 2),
    ("ajas", 2),
    ("iem", 2),
    ("aja", 2),
    ("ais", 2),
    ("ai", 2),
    ("ei", 2),
    ("am", 1),
    ("em", 1),
    ("im", 1),
    ("um", 1),
    ("us", 1),
    ("as", 1),
    ("es", 1),
    ("os", 1),
    ("ij", 1),
    ("is", 1),
    ("ie", 1),
    ("u", 1),
    ("a", 1),
    ("i", 1),
    ("e", 1),
    ("o", 1),
    ("s", 0),
];

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

/// Strips one inflectional suffix from a *folded* word. Words of three
/// letters or fewer are left alone ("īre" and "īri" stay apart).
pub fn stem(word: &str) -> &str {
    let len = word.chars().count();
    let vowels = word.chars().filter(|c| is_vowel(*c)).count();
    for (suffix, needed) in SUFFIXES {
        if vowels > *needed && len >= suffix.len() + 3 && word.ends_with(suffix) {
            return &word[..word.len() - suffix.len()];
        }
    }
    word
}

/// A keyword as written in a rule: `word` (any inflection), `prefix*`
/// (any word starting so) or a phrase of several words in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyword {
    /// As written, for explanations.
    pub source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Stem(String),
    Prefix(String),
}

impl Part {
    fn matches(&self, words: &Words, at: usize) -> bool {
        match self {
            Part::Stem(s) => words.stems[at] == s.as_str(),
            Part::Prefix(p) => words.folded[at].starts_with(p.as_str()),
        }
    }
}

/// A text's words, folded and stemmed once, so that matching many keywords
/// does not stem the same word again for each of them.
#[derive(Debug, Clone, Default)]
pub struct Words {
    folded: Vec<String>,
    stems: Vec<String>,
}

impl Words {
    /// Folds, splits and stems `text`.
    pub fn of(text: &str) -> Self {
        let folded = tokens(text);
        let stems = folded.iter().map(|w| stem(w).to_string()).collect();
        Words { folded, stems }
    }

    /// The stemmed words, in order.
    pub fn stems(&self) -> &[String] {
        &self.stems
    }
}

impl Keyword {
    /// Parses a keyword; `None` if it has no letters at all.
    pub fn parse(source: &str) -> Option<Self> {
        let words: Vec<&str> = source.split_whitespace().collect();
        let mut parts = Vec::with_capacity(words.len());
        for w in words {
            let (body, prefix) = match w.strip_suffix('*') {
                Some(b) => (b, true),
                None => (w, false),
            };
            let folded: String = tokens(body).concat();
            if folded.is_empty() {
                return None;
            }
            parts.push(if prefix {
                Part::Prefix(folded)
            } else {
                Part::Stem(stem(&folded).to_string())
            });
        }
        (!parts.is_empty()).then(|| Keyword {
            source: source.to_string(),
            parts,
        })
    }

    /// True if the keyword occurs in the text's words, parts in a row.
    pub fn occurs_in(&self, words: &Words) -> bool {
        let n = self.parts.len();
        let len = words.folded.len();
        len >= n
            && (0..=len - n).any(|start| {
                self.parts
                    .iter()
                    .enumerate()
                    .all(|(k, p)| p.matches(words, start + k))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_removes_every_latvian_diacritic() {
        assert_eq!(fold("ĀČĒĢĪĶĻŅŠŪŽ āčēģīķļņšūž"), "acegiklnsuz acegiklnsuz");
    }

    #[test]
    fn inflections_share_a_stem_with_and_without_diacritics() {
        let forms = [
            "būvatļauja",
            "būvatļaujas",
            "būvatļauju",
            "Būvatļaujā",
            "buvatlauju",
        ];
        for f in forms {
            assert_eq!(stem(&fold(f)), "buvatlauj", "{f}");
        }
        for f in ["pabalsts", "pabalsta", "pabalstu", "pabalsti", "pabalstiem"] {
            assert_eq!(stem(&fold(f)), "pabalst", "{f}");
        }
        assert_eq!(stem("ire"), "ire");
    }

    #[test]
    fn index_text_is_folded_stems_in_order() {
        assert_eq!(
            index_text("Būvatļaujas izsniegšana, 2026/17!"),
            "buvatlauj izsniegsan 2026 17"
        );
        assert_eq!(index_text("buvatlauja"), index_text("BŪVATĻAUJU"));
        assert_eq!(index_text(" ,.; "), "");
    }

    #[test]
    fn keywords_match_words_prefixes_and_phrases() {
        let text = Words::of("Lūdzu izsniegt būvatļauju; pievienoju paskaidrojuma rakstu.");
        assert!(Keyword::parse("būvatļauja").unwrap().occurs_in(&text));
        assert!(Keyword::parse("būvatļauj*").unwrap().occurs_in(&text));
        assert!(
            Keyword::parse("paskaidrojuma raksts")
                .unwrap()
                .occurs_in(&text)
        );
        assert!(
            !Keyword::parse("raksts paskaidrojuma")
                .unwrap()
                .occurs_in(&text)
        );
        assert!(!Keyword::parse("pabalsts").unwrap().occurs_in(&text));
        assert!(Keyword::parse("  ** ").is_none());
    }
}

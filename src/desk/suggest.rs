//! The desk's suggestion: which unit the records officers' own past
//! decisions point to for an item, with a confidence. A multinomial naive
//! Bayes over folded, stemmed words (the rules' own text handling), trained
//! on the officers' most recent decisions each time it is asked, so it
//! follows them as they change. Shown, never applied.

use std::collections::{BTreeMap, HashMap};

use crate::rules::text::{stem, tokens};

/// A trained classifier.
#[derive(Debug, Default)]
pub struct Suggester {
    /// Per unit: documents seen, word counts, total words.
    units: BTreeMap<String, UnitCounts>,
    vocabulary: usize,
    documents: usize,
}

#[derive(Debug, Default)]
struct UnitCounts {
    documents: usize,
    words: HashMap<String, usize>,
    total: usize,
}

/// A suggested unit and how sure the classifier is (0–1).
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    pub unit: String,
    pub confidence: f64,
    /// Decisions it learned from.
    pub learned_from: usize,
}

fn features(text: &str) -> Vec<String> {
    tokens(text)
        .iter()
        .filter(|w| w.chars().count() > 2)
        .map(|w| stem(w).to_string())
        .collect()
}

impl Suggester {
    /// Trains on (text, unit) decisions.
    pub fn train<'a>(decisions: impl IntoIterator<Item = (&'a str, &'a str)>) -> Suggester {
        let mut s = Suggester::default();
        let mut vocabulary = std::collections::HashSet::new();
        for (text, unit) in decisions {
            let counts = s.units.entry(unit.to_string()).or_default();
            counts.documents += 1;
            for f in features(text) {
                counts.total += 1;
                vocabulary.insert(f.clone());
                *counts.words.entry(f).or_default() += 1;
            }
            s.documents += 1;
        }
        s.vocabulary = vocabulary.len();
        s
    }

    /// The likeliest unit for `text`; none until at least `min_decisions`
    /// decisions were seen, or when the text has no known word.
    pub fn suggest(&self, text: &str, min_decisions: usize) -> Option<Suggestion> {
        if self.documents < min_decisions || self.units.len() < 2 {
            return None;
        }
        let words = features(text);
        let known: Vec<&String> = words
            .iter()
            .filter(|w| self.units.values().any(|u| u.words.contains_key(*w)))
            .collect();
        if known.is_empty() {
            return None;
        }
        let v = self.vocabulary as f64;
        let scores: Vec<(&String, f64)> = self
            .units
            .iter()
            .map(|(unit, c)| {
                let prior = (c.documents as f64 / self.documents as f64).ln();
                let denominator = c.total as f64 + v;
                let likelihood: f64 = known
                    .iter()
                    .map(|w| ((*c.words.get(*w).unwrap_or(&0) as f64 + 1.0) / denominator).ln())
                    .sum();
                (unit, prior + likelihood)
            })
            .collect();
        let best = scores.iter().cloned().max_by(|a, b| a.1.total_cmp(&b.1))?;
        // Softmax over the log scores: the best unit's share.
        let total: f64 = scores.iter().map(|(_, s)| (s - best.1).exp()).sum();
        Some(Suggestion {
            unit: best.0.clone(),
            confidence: 1.0 / total,
            learned_from: self.documents,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_units_from_inflected_latvian_decisions() {
        let decisions = [
            ("Lūdzu izsniegt būvatļauju šķūnim", "buvvalde"),
            ("Būvatļaujas pagarināšana garāžai", "buvvalde"),
            ("Jautājums par būvatļaujām un būvniecību", "buvvalde"),
            ("Nekustamā īpašuma nodokļa pārmaksa", "finanses"),
            ("Nodokļa atvieglojums pensionāram", "finanses"),
            ("Par nekustamā īpašuma nodokli", "finanses"),
        ];
        let s = Suggester::train(decisions.iter().map(|(t, u)| (*t, *u)));
        let b = s
            .suggest("Vēlos saņemt būvatļauju pirtij", 5)
            .expect("a suggestion");
        assert_eq!(b.unit, "buvvalde");
        assert!(b.confidence > 0.7, "{b:?}");
        let f = s.suggest("nodoklis par zemi", 5).expect("a suggestion");
        assert_eq!(f.unit, "finanses");
        assert_eq!(f.learned_from, 6);
        assert_eq!(s.suggest("kafija", 5), None, "no known word");
        assert_eq!(s.suggest("būvatļauja", 10), None, "too few decisions yet");
    }
}

//! Best-effort facts read from a letter's OCR text: who wrote it (name and
//! postal address), when, their personas kods, e-mail and phone, and what it
//! is about ("Iesniegums par …", "Par …"). Each comes with a confidence,
//! so the records officer sees what was guessed. Pure: text in, facts out.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// One extracted value and how sure the heuristic is (0–1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Found<T> {
    pub value: T,
    pub confidence: f32,
}

fn found<T>(value: T, confidence: f32) -> Option<Found<T>> {
    Some(Found { value, confidence })
}

/// What the heuristics found in one letter.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Extracted {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<Found<String>>,
    /// The name signed under the closing ("Ar cieņu, / Anna Bērziņa").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<Found<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_address: Option<Found<String>>,
    /// ISO date of the letter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<Found<chrono::NaiveDate>>,
    /// A personas kods whose old-format check digit is right (or a new-format one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub personas_kods: Option<Found<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<Found<String>>,
    /// E.164.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<Found<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Found<String>>,
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b")
        .expect("email regex")
});
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+371[\s-]?)?\b[26]\d(?:[\s-]?\d){6}\b").expect("phone regex")
});
static PERSONAS_KODS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{6})\s?-\s?(\d{5})\b").expect("personas kods regex"));
static DATE_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(20\d{2})\.\s*gada\s+(\d{1,2})\.\s*([a-zāčēģīķļņšūž]+)").expect("date regex")
});
static DATE_DIGITS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{1,2})\.(\d{1,2})\.(20\d{2})\b").expect("date regex"));
static SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*((?:iesniegums|sūdzība|lūgums|priekšlikums)\s+par\s+.+|par\s+.+)$")
        .expect("subject regex")
});

/// A Latvian letter's closing, after which it is signed ("Ar cieņu,", "Ar
/// patiesu cieņu", "Cieņā", "Ar sveicieniem"), or the submitter's label
/// ("Iesniedzējs:"); what follows on the same line is kept. OCR sometimes
/// loses the cedilla (`cienu`) or adds a macron (`Ār`).
static CLOSING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(?:[aā]r\s+(?:patiesu\s+|dziļu\s+|lielu\s+)?cie[ņn]u|cie[ņn]ā|[aā]r\s+(?:labiem\s+|labākajiem\s+)?(?:sveicieniem|(?:no)?vēlējumiem)|iesniedzēj[sa]\s*:)\s*[,.;:]?\s*(.*)$",
    )
    .expect("closing regex")
});

/// Latvian month names as they appear after a day ("16. novembrī"), by stem.
const MONTHS: [&str; 12] = [
    "janvār", "februār", "mart", "aprīl", "maij", "jūnij", "jūlij", "august", "septembr", "oktobr",
    "novembr", "decembr",
];

pub use crate::personal_code::{mask as mask_personas_kods, valid as personas_kods_valid};

/// Reads the facts out of a letter's text.
pub fn extract(text: &str) -> Extracted {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = Extracted {
        email: EMAIL
            .find(text)
            .and_then(|m| found(m.as_str().to_lowercase(), 0.9)),
        phone: PHONE
            .find_iter(text)
            .find_map(|m| crate::phone::normalise_phone(m.as_str()))
            .and_then(|p| found(p, 0.8)),
        personas_kods: PERSONAS_KODS.captures_iter(text).find_map(|c| {
            let code = format!("{}-{}", &c[1], &c[2]);
            personas_kods_valid(&code).then_some(Found {
                value: code,
                confidence: 0.95,
            })
        }),
        date: date_in(text),
        subject: lines
            .iter()
            .find(|l| SUBJECT.is_match(l) && l.chars().count() <= 160)
            .and_then(|l| found(l.trim_end_matches('.').to_string(), 0.7)),
        ..Extracted::default()
    };
    // The sender's block is the top of the letter: a name, then address
    // lines, until the first line with a phone, e-mail, code or date.
    let is_contact = |l: &str| {
        EMAIL.is_match(l) || PHONE.is_match(l) || PERSONAS_KODS.is_match(l) || date_in(l).is_some()
    };
    out.signer = signer(&lines);
    if let Some(first) = lines.first()
        && looks_like_name(first)
    {
        // The same name at the top and under the closing: surely the sender.
        let confirmed = out
            .signer
            .as_ref()
            .is_some_and(|s| same_name(&s.value, first));
        let confidence = match (&out.signer, confirmed) {
            (_, true) => 0.9,
            (Some(_), false) => 0.5,
            (None, _) => 0.6,
        };
        out.sender_name = found(first.to_string(), confidence);
        let address: Vec<&str> = lines
            .iter()
            .skip(1)
            .take(3)
            .take_while(|l| !is_contact(l) && !SUBJECT.is_match(l))
            .map(|l| l.trim_end_matches(','))
            .collect();
        let has_postcode = address
            .iter()
            .any(|l| l.contains("LV-") || l.contains("LV–"));
        if !address.is_empty()
            && (has_postcode
                || address
                    .iter()
                    .any(|l| l.chars().any(|c| c.is_ascii_digit())))
        {
            out.postal_address = found(address.join(", "), if has_postcode { 0.8 } else { 0.5 });
        }
    }
    if out.sender_name.is_none() {
        // No sender's block at the top: the letter is known by its signature.
        out.sender_name = out
            .signer
            .as_ref()
            .and_then(|s| found(s.value.clone(), 0.75));
    }
    out
}

/// The name signed at the end: the last closing formula, then the name on
/// its own line or on one of the next three (a "(paraksts)" mark, a line of
/// underscores or a stray scribble may come between).
fn signer(lines: &[&str]) -> Option<Found<String>> {
    let at = lines.iter().rposition(|l| CLOSING.is_match(l))?;
    let rest = CLOSING
        .captures(lines[at])
        .and_then(|c| c.get(1))
        .map_or("", |m| m.as_str());
    std::iter::once(rest)
        .chain(lines.iter().skip(at + 1).take(3).copied())
        .map(|l| l.trim_matches(|c: char| c == '_' || c == '/' || c.is_whitespace() || c == ','))
        .find(|l| looks_like_name(l))
        .and_then(|l| found(l.to_string(), 0.8))
}

/// The same name, whatever the case and spacing.
fn same_name(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(" ")
    };
    norm(a) == norm(b)
}

/// Two to four capitalised words, no digits: a person's or firm's name.
fn looks_like_name(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    (2..=4).contains(&words.len())
        && !line.chars().any(|c| c.is_ascii_digit() || c == '@')
        && words
            .iter()
            .all(|w| w.chars().next().is_some_and(char::is_uppercase) || w.starts_with('"'))
}

fn date_in(text: &str) -> Option<Found<chrono::NaiveDate>> {
    if let Some(c) = DATE_WORDS.captures(text) {
        let year: i32 = c[1].parse().ok()?;
        let day: u32 = c[2].parse().ok()?;
        let word = c[3].to_lowercase();
        if let Some(month) = MONTHS.iter().position(|m| word.starts_with(m))
            && let Some(d) = chrono::NaiveDate::from_ymd_opt(year, month as u32 + 1, day)
        {
            return found(d, 0.9);
        }
    }
    DATE_DIGITS.captures_iter(text).find_map(|c| {
        let d = chrono::NaiveDate::from_ymd_opt(
            c[3].parse().ok()?,
            c[2].parse().ok()?,
            c[1].parse().ok()?,
        )?;
        found(d, 0.7)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LETTER: &str = "Anna Bērziņa\nOzolu iela 3-7, Ilūkste,\nAugšdaugavas novads, LV-5447\n+371 29123456\nanna.berzina@example.lv\np.k. 150385-12346\nIlūkstē, 2026. gada 16. novembrī\nAugšdaugavas novada pašvaldībai\nIesniegums par būvatļaujas izsniegšanu\nLūdzu izsniegt būvatļauju.\n";

    #[test]
    fn a_letter_head_gives_sender_address_contacts_date_and_subject() {
        let x = extract(LETTER);
        assert_eq!(
            x.sender_name.map(|f| f.value).as_deref(),
            Some("Anna Bērziņa")
        );
        assert_eq!(
            x.postal_address.map(|f| f.value).as_deref(),
            Some("Ozolu iela 3-7, Ilūkste, Augšdaugavas novads, LV-5447")
        );
        assert_eq!(x.phone.map(|f| f.value).as_deref(), Some("+37129123456"));
        assert_eq!(
            x.email.map(|f| f.value).as_deref(),
            Some("anna.berzina@example.lv")
        );
        assert_eq!(
            x.personas_kods.map(|f| f.value).as_deref(),
            Some("150385-12346")
        );
        assert_eq!(
            x.date.map(|f| f.value),
            chrono::NaiveDate::from_ymd_opt(2026, 11, 16)
        );
        assert_eq!(
            x.subject.map(|f| f.value).as_deref(),
            Some("Iesniegums par būvatļaujas izsniegšanu")
        );
    }

    #[test]
    fn digits_dates_local_phones_and_missing_facts() {
        let x = extract(
            "Pēteris Ozoliņš\nDzirnavu iela 14, Subate,\ntālr. 26345678\n02.11.2026.\nPar ielu apgaismojuma remontu\n",
        );
        assert_eq!(x.phone.map(|f| f.value).as_deref(), Some("+37126345678"));
        assert_eq!(
            x.date.map(|f| f.value),
            chrono::NaiveDate::from_ymd_opt(2026, 11, 2)
        );
        assert_eq!(
            x.subject.map(|f| f.value).as_deref(),
            Some("Par ielu apgaismojuma remontu")
        );
        assert!(x.email.is_none() && x.personas_kods.is_none());
    }

    #[test]
    fn a_letter_signed_only_at_the_bottom_is_known_by_its_signer() {
        let x = extract(
            "Augšdaugavas novada pašvaldībai\nIlūkstē, 2026. gada 3. decembrī\nPar koplietošanas ceļa uzturēšanu\nLūdzu novērst bedres ceļā.\nAr cieņu,\n(paraksts)\nMārtiņš Zariņš\n",
        );
        let name = x.sender_name.expect("sender from the signature");
        assert_eq!(name.value, "Mārtiņš Zariņš");
        assert!((name.confidence - 0.75).abs() < 1e-6, "{}", name.confidence);
        assert_eq!(x.signer.map(|f| f.value).as_deref(), Some("Mārtiņš Zariņš"));
        assert!(x.postal_address.is_none());
    }

    #[test]
    fn the_same_name_at_the_top_and_signed_is_surer() {
        let x = extract(&format!("{LETTER}Ar cieņu,\nAnna Bērziņa\n"));
        let name = x.sender_name.expect("sender");
        assert_eq!(name.value, "Anna Bērziņa");
        assert!((name.confidence - 0.9).abs() < 1e-6, "{}", name.confidence);
        // Without the signature, the top alone is a guess.
        let top = extract(LETTER).sender_name.expect("sender");
        assert!((top.confidence - 0.6).abs() < 1e-6);
    }

    #[test]
    fn closings_on_one_line_other_formulas_and_no_closing() {
        let signer = |t: &str| extract(t).signer.map(|f| f.value);
        assert_eq!(
            signer("Lūdzu atbildēt.\nAr cieņu, Jānis Kļaviņš\n").as_deref(),
            Some("Jānis Kļaviņš")
        );
        assert_eq!(
            signer("Lūdzu atbildēt.\nAr patiesu cieņu\n________\nA. Bērziņa\n2026-12-01\n")
                .as_deref(),
            Some("A. Bērziņa")
        );
        assert_eq!(
            signer("Iesniedzējs: Pēteris Ozoliņš\n").as_deref(),
            Some("Pēteris Ozoliņš")
        );
        // OCR without the cedilla, with a macron too many.
        assert_eq!(
            signer("Ār cienu,\nIlze Kalniņa\n").as_deref(),
            Some("Ilze Kalniņa")
        );
        assert_eq!(
            signer("Lūdzu atbildēt.\nIlze Kalniņa\n"),
            None,
            "no closing"
        );
        assert_eq!(
            signer("Ar cieņu,\nlūdzu atbildēt pēc iespējas ātrāk\n"),
            None,
            "no name under the closing"
        );
    }

    #[test]
    fn a_firm_at_the_top_keeps_the_sender_and_the_person_signs() {
        let x = extract(
            "SIA Zaļais Dārzs\nRīgas iela 5, Daugavpils, LV-5401\nPar koku zāģēšanu\nLūdzam atļauju.\nAr cieņu,\nvaldes loceklis\nKārlis Liepa\n",
        );
        let sender = x.sender_name.expect("sender");
        assert_eq!(sender.value, "SIA Zaļais Dārzs");
        assert!(sender.confidence < 0.6, "{}", sender.confidence);
        assert_eq!(x.signer.map(|f| f.value).as_deref(), Some("Kārlis Liepa"));
    }

    #[test]
    fn a_personas_kods_with_a_wrong_check_digit_is_not_taken() {
        assert!(personas_kods_valid("150385-12346"));
        assert!(!personas_kods_valid("040958-11237"));
        assert!(personas_kods_valid("040958-11234"));
        assert!(
            personas_kods_valid("32123456789"),
            "new format, no checksum"
        );
        assert!(!personas_kods_valid("991385-12346"), "no 99th day");
        assert!(extract("p.k. 040958-11237").personas_kods.is_none());
        assert_eq!(mask_personas_kods("150385-12346"), "150385-*****");
    }
}

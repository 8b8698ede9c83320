//! The personas kods (Latvian personal code): checked where a person types
//! it (the web form, the counter), found in scanned letters, and the key of
//! a natural person's e-adrese (`_PRIVATE@<11 digits>`). Two formats:
//!
//! - old: `DDMMYY-CNNNK`, the birth date, a century digit (0: 1800s,
//!   1: 1900s, 2: 2000s) and a mod-11 check digit (weights 1 6 3 7 9 10 5 8 4 2);
//! - new (from 1 July 2017): `3` then `2`–`9`, then nine digits; no birth
//!   date and no published checksum.
//!
//! Either may be written with or without the hyphen after the sixth digit.
//! It is personal data: logs show at most [`mask`].

use chrono::NaiveDate;

/// The eleven digits of `input` when it is a valid personas kods in either
/// format (surrounding spaces and the one hyphen allowed), else `None`.
fn digits(input: &str) -> Option<[u32; 11]> {
    let s = input.trim();
    let compact: String = match s.split_once('-') {
        Some((head, tail)) if head.len() == 6 => format!("{head}{tail}"),
        Some(_) => return None,
        None => s.to_string(),
    };
    if compact.len() != 11 || !compact.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut d = [0u32; 11];
    for (slot, c) in d.iter_mut().zip(compact.chars()) {
        *slot = c.to_digit(10)?;
    }
    Some(d)
}

/// True for an old-format code whose date exists and whose check digit is right.
fn old_format_valid(d: &[u32; 11]) -> bool {
    let century = match d[6] {
        0 => 1800,
        1 => 1900,
        2 => 2000,
        _ => return false,
    };
    let (day, month, year) = (d[0] * 10 + d[1], d[2] * 10 + d[3], d[4] * 10 + d[5]);
    let Ok(year) = i32::try_from(year) else {
        return false;
    };
    if NaiveDate::from_ymd_opt(century + year, month, day).is_none() {
        return false;
    }
    const WEIGHTS: [u32; 10] = [1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = d.iter().zip(WEIGHTS).map(|(d, w)| d * w).sum();
    let check = (1101 - sum % 11) % 11;
    check < 10 && check == d[10]
}

/// The code in its written form `NNNNNN-NNNNN` when `input` is a valid
/// personas kods (old format with its date and check digit, or new format),
/// else `None`.
pub fn parse(input: &str) -> Option<String> {
    let d = digits(input)?;
    let new_format = d[0] == 3 && (2..=9).contains(&d[1]);
    // An old-format code of someone born on the 30th or 31st also starts
    // with 3: taken as old when its date and check digit hold.
    if !new_format && !old_format_valid(&d) {
        return None;
    }
    let s: String = d
        .iter()
        .map(|n| char::from_digit(*n, 10).unwrap_or('0'))
        .collect();
    Some(format!("{}-{}", &s[..6], &s[6..]))
}

/// True when `code` is a valid personas kods ([`parse`]).
pub fn valid(code: &str) -> bool {
    parse(code).is_some()
}

/// `150385-*****`: what a log may show of a personas kods.
pub fn mask(code: &str) -> String {
    let head: String = code.chars().take(6).collect();
    format!("{head}-*****")
}

/// The natural person's e-adrese of a (parsed) personas kods:
/// `_PRIVATE@<11 digits>`, as the addressee directory lists it.
pub fn e_address(code: &str) -> String {
    let digits: String = code.chars().filter(char::is_ascii_digit).collect();
    format!("_PRIVATE@{digits}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_codes_need_a_real_date_and_the_right_check_digit() {
        assert_eq!(parse("150385-12346").as_deref(), Some("150385-12346"));
        assert_eq!(parse(" 15038512346 ").as_deref(), Some("150385-12346"));
        assert_eq!(parse("040958-11234").as_deref(), Some("040958-11234"));
        assert!(parse("040958-11237").is_none(), "wrong check digit");
        assert!(parse("991385-12346").is_none(), "no 99th day");
        assert!(
            parse("310285-12342").is_none(),
            "no 31 February (check digit right)"
        );
        assert!(parse("150385-32346").is_none(), "century digit 0–2");
        assert!(
            parse("1503-8512346").is_none(),
            "hyphen after the sixth digit"
        );
        assert!(parse("150385-1234").is_none(), "ten digits");
        assert!(parse("150385-1234x").is_none());
        assert!(parse("").is_none());
    }

    #[test]
    fn new_codes_are_32_to_39_and_nine_digits() {
        assert_eq!(parse("32123456789").as_deref(), Some("321234-56789"));
        assert_eq!(parse("391234-56780").as_deref(), Some("391234-56780"));
        assert!(
            parse("31123456789").is_none(),
            "31…: an old code, century digit 5"
        );
        assert_eq!(
            parse("311223-12347").as_deref(),
            Some("311223-12347"),
            "born on the 31st"
        );
        assert!(parse("30123456789").is_none());
        assert_eq!(e_address("321234-56789"), "_PRIVATE@32123456789");
        assert_eq!(mask("321234-56789"), "321234-*****");
    }
}

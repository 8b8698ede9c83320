//! How long an SMS is on the air: GSM-7 when every character is in the GSM
//! 03.38 table (160 characters, 153 per part when concatenated; the
//! extension characters count twice), else UCS-2 (70, 67 per part; a
//! character outside the BMP counts twice). No Latvian diacritic is in GSM-7.

/// The GSM 03.38 basic table.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table (escape + character: two septets).
const GSM7_EXTENSION: &str = "^{}\\[~]|€\u{c}";

/// The alphabet a text needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

/// A text's encoding, length in units and number of parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    pub parts: usize,
}

/// Measures `text` as a phone would send it.
pub fn measure(text: &str) -> Segments {
    let gsm_units: Option<usize> = text
        .chars()
        .map(|c| {
            if GSM7_BASIC.contains(c) {
                Some(1)
            } else if GSM7_EXTENSION.contains(c) {
                Some(2)
            } else {
                None
            }
        })
        .sum();
    let (encoding, units, single, part) = match gsm_units {
        Some(n) => (Encoding::Gsm7, n, 160, 153),
        None => (Encoding::Ucs2, text.encode_utf16().count(), 70, 67),
    };
    let parts = if units <= single {
        1
    } else {
        units.div_ceil(part)
    };
    Segments {
        encoding,
        units,
        parts,
    }
}

/// Latvian letters without their diacritics, for a reply that must fit GSM-7.
pub fn fold_to_gsm7(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'ā' => 'a',
            'č' => 'c',
            'ē' => 'e',
            'ģ' => 'g',
            'ī' => 'i',
            'ķ' => 'k',
            'ļ' => 'l',
            'ņ' => 'n',
            'š' => 's',
            'ū' => 'u',
            'ž' => 'z',
            'Ā' => 'A',
            'Č' => 'C',
            'Ē' => 'E',
            'Ģ' => 'G',
            'Ī' => 'I',
            'Ķ' => 'K',
            'Ļ' => 'L',
            'Ņ' => 'N',
            'Š' => 'S',
            'Ū' => 'U',
            'Ž' => 'Z',
            '–' | '—' => '-',
            '„' | '“' | '”' => '"',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latvian_needs_ucs2_and_counts_like_the_research() {
        // latvian-records-domain.md §5: 80 characters, UCS-2 → 2 parts;
        // the same without diacritics, GSM-7 → 1 part.
        let lv = "Jūsu iesniegums reģistrēts ar Nr. ILD/2.1-12/26/123. Atbilde 10 darbdienu laikā.";
        let m = measure(lv);
        assert_eq!((m.encoding, m.units, m.parts), (Encoding::Ucs2, 80, 2));
        let plain = measure(&fold_to_gsm7(lv));
        assert_eq!(
            (plain.encoding, plain.units, plain.parts),
            (Encoding::Gsm7, 80, 1)
        );
    }

    #[test]
    fn boundaries_and_extension_characters() {
        assert_eq!(measure(&"a".repeat(160)).parts, 1);
        assert_eq!(measure(&"a".repeat(161)).parts, 2);
        assert_eq!(measure(&"a".repeat(306)).parts, 2);
        assert_eq!(measure(&"€".repeat(80)).units, 160);
        assert_eq!(measure(&"ā".repeat(70)).parts, 1);
        assert_eq!(measure(&"ā".repeat(71)).parts, 2);
        assert_eq!(measure("😀").units, 2);
    }
}

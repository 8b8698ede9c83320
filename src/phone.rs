//! Phone numbers as citizens and SMS gateways write them, made E.164. Shared
//! by the form's phone field and the SMS channel, so a sender is the same
//! number whichever door they used.

/// E.164 for Latvian and international numbers: "29 123 456", "371 29123456"
/// and "0037129123456" all become "+37129123456".
pub fn normalise_phone(raw: &str) -> Option<String> {
    let digits: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let (plus, rest) = match digits.strip_prefix('+') {
        Some(r) => (true, r.to_string()),
        None => match digits.strip_prefix("00") {
            Some(r) => (true, r.to_string()),
            None => (false, digits),
        },
    };
    if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let full = if plus {
        rest
    } else if rest.len() == 8 {
        format!("371{rest}")
    } else if rest.len() == 11 && rest.starts_with("371") {
        // Gateways often give the international number without its '+'.
        rest
    } else {
        return None;
    };
    (8..=15).contains(&full.len()).then(|| format!("+{full}"))
}

/// Who an SMS came from: only a real number can be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsAddress {
    /// A phone number, E.164.
    Number(String),
    /// An operator's or service's short number (3–6 digits), e.g. 1643.
    ShortCode(String),
    /// A name instead of a number ("LMT", "Swedbank").
    Alphanumeric(String),
}

impl SmsAddress {
    /// Classifies a gateway's sender field; `None` for what is none of these.
    pub fn parse(raw: &str) -> Option<SmsAddress> {
        let t = raw.trim();
        if let Some(n) = normalise_phone(t) {
            return Some(SmsAddress::Number(n));
        }
        if (3..=6).contains(&t.len()) && t.chars().all(|c| c.is_ascii_digit()) {
            return Some(SmsAddress::ShortCode(t.to_string()));
        }
        let alnum = t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-');
        (alnum && (1..=11).contains(&t.len()) && t.chars().any(|c| c.is_ascii_alphabetic()))
            .then(|| SmsAddress::Alphanumeric(t.to_string()))
    }

    /// The address as stored on the item.
    pub fn as_str(&self) -> &str {
        match self {
            SmsAddress::Number(s) | SmsAddress::ShortCode(s) | SmsAddress::Alphanumeric(s) => s,
        }
    }

    /// Short codes and names cannot receive a reply.
    pub fn can_reply(&self) -> bool {
        matches!(self, SmsAddress::Number(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_normalised_to_e164() {
        for raw in [
            "29 123 456",
            "+371 2912-3456",
            "0037129123456",
            "37129123456",
        ] {
            assert_eq!(
                normalise_phone(raw).as_deref(),
                Some("+37129123456"),
                "{raw}"
            );
        }
        assert_eq!(
            normalise_phone("+44 20 7946 0958").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(normalise_phone("12ab"), None);
        assert_eq!(normalise_phone("1234"), None);
    }

    #[test]
    fn sms_senders_are_told_apart() {
        assert_eq!(
            SmsAddress::parse("37129123456"),
            Some(SmsAddress::Number("+37129123456".into()))
        );
        assert_eq!(
            SmsAddress::parse("1643"),
            Some(SmsAddress::ShortCode("1643".into()))
        );
        assert_eq!(
            SmsAddress::parse("LMT"),
            Some(SmsAddress::Alphanumeric("LMT".into()))
        );
        assert!(!SmsAddress::parse("1643").is_some_and(|a| a.can_reply()));
        assert_eq!(SmsAddress::parse("<script>"), None);
        assert_eq!(SmsAddress::parse(""), None);
    }
}

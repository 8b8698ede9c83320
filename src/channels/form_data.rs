//! `application/x-www-form-urlencoded` bodies, for every door that takes
//! them: invalid UTF-8 is refused naming the field, never turned into
//! U+FFFD replacement characters in a citizen's text.

/// A field whose name or value is not valid UTF-8 once percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field:?} is not valid UTF-8 text")]
pub struct NotUtf8 {
    /// The field's name (with replacement characters if the name itself is broken).
    pub field: String,
}

/// The name/value pairs of a urlencoded body, in order.
pub fn urlencoded_pairs(raw: &[u8]) -> Result<Vec<(String, String)>, NotUtf8> {
    raw.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let name = decode(it.next().unwrap_or_default());
            let value = decode(it.next().unwrap_or_default());
            match (name, value) {
                (Ok(n), Ok(v)) => Ok((n, v)),
                (Ok(n), Err(_)) => Err(NotUtf8 { field: n }),
                (Err(raw_name), _) => Err(NotUtf8 {
                    field: String::from_utf8_lossy(&raw_name).into_owned(),
                }),
            }
        })
        .collect()
}

/// `+` is a space, then percent-decoding; the bytes back when they are not UTF-8.
fn decode(part: &[u8]) -> Result<String, Vec<u8>> {
    let plus: Vec<u8> = part
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&plus).collect();
    String::from_utf8(bytes).map_err(|e| e.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_decode_and_broken_bytes_name_their_field() {
        assert_eq!(
            urlencoded_pairs(b"vards=Anna+Kalni%C5%86a&teksts=&x").unwrap(),
            [
                ("vards".to_string(), "Anna Kalniņa".to_string()),
                ("teksts".to_string(), String::new()),
                ("x".to_string(), String::new()),
            ]
        );
        assert_eq!(
            urlencoded_pairs(b"vards=Anna&teksts=L%FCdzu").unwrap_err(),
            NotUtf8 {
                field: "teksts".into()
            }
        );
        // Raw (not percent-encoded) bytes are refused the same way.
        assert_eq!(
            urlencoded_pairs(b"temats=\xc5").unwrap_err().field,
            "temats"
        );
        assert_eq!(urlencoded_pairs(b"t%FF=1").unwrap_err().field, "t\u{FFFD}");
    }
}

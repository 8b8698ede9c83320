//! Words in Latvian and English kept in TOML catalogs (`[section]` tables
//! of `key = "text"`), so a translator edits text, not code: the desk's
//! (`templates/desk/i18n/`) and the citizen's form pages
//! (`templates/form/i18n/`). A text names the values it shows in braces
//! (`„{label}” ir obligāts`), filled in by [`fill`].

use std::collections::HashMap;
use std::fmt::Display;

/// A catalog's texts by `section.key`.
pub type Catalog = HashMap<String, String>;

/// Reads a catalog; a broken one is logged and empty (each text then shows
/// its key: visible, not fatal), and a unit test keeps that from shipping.
pub fn parse(name: &str, text: &str) -> Catalog {
    match toml::from_str::<HashMap<String, HashMap<String, String>>>(text) {
        Ok(sections) => sections
            .into_iter()
            .flat_map(|(section, words)| {
                words
                    .into_iter()
                    .map(move |(k, v)| (format!("{section}.{k}"), v))
            })
            .collect(),
        Err(e) => {
            tracing::error!("catalog {name} is broken: {e}");
            Catalog::new()
        }
    }
}

/// `text` with each `{name}` replaced by its value.
pub fn fill(text: &str, values: &[(&str, &dyn Display)]) -> String {
    let mut out = text.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), &value.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_become_prefixes_and_values_are_filled() {
        let c = parse("t", "[field]\nrequired = \"„{label}” ir obligāts ({n})\"\n");
        assert_eq!(
            fill(&c["field.required"], &[("label", &"Vārds"), ("n", &3)]),
            "„Vārds” ir obligāts (3)"
        );
        assert!(parse("broken", "[x\n").is_empty());
    }
}

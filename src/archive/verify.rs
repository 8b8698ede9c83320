//! `pietura archive verify DIR`: a package re-checked as the archive
//! receiving it would: every manifest line matches its file, no file is
//! missing or extra, the registers parse and every file they name is in
//! the package.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::ArchiveError;
use super::package::{
    FILE_COLUMNS, FILES_CSV, ITEM_COLUMNS, MANIFEST, REGISTER_CSV, REGISTER_XML, XML_NS,
    files_under, inside, sha256_hex,
};

/// One thing wrong with a package, at the file it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyProblem {
    /// The package-relative path of the file (or the manifest, or a register).
    pub file: String,
    pub problem: String,
}

impl std::fmt::Display for VerifyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.problem)
    }
}

/// Checks the package at `dir`; an empty list is a package in order.
/// `Err` only when the folder itself cannot be read.
pub fn verify(dir: &Path) -> Result<Vec<VerifyProblem>, ArchiveError> {
    let mut problems = Vec::new();
    let mut say = |file: &str, problem: String| {
        problems.push(VerifyProblem {
            file: file.to_string(),
            problem,
        })
    };
    if !dir.is_dir() {
        return Err(ArchiveError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        });
    }

    // The manifest, line by line.
    let mut listed: BTreeMap<String, String> = BTreeMap::new();
    match std::fs::read_to_string(dir.join(MANIFEST)) {
        Err(e) => say(MANIFEST, format!("cannot be read: {e}")),
        Ok(text) => {
            for (n, line) in text.lines().enumerate() {
                let parsed = line.split_once("  ").filter(|(h, p)| {
                    h.len() == 64
                        && h.bytes().all(|b| b.is_ascii_hexdigit())
                        && inside(dir, p).is_some()
                });
                let Some((hash, rel)) = parsed else {
                    say(
                        &format!("{MANIFEST}:{}", n + 1),
                        "not a line \"<sha256>  <path inside the package>\"".into(),
                    );
                    continue;
                };
                if listed
                    .insert(rel.to_string(), hash.to_ascii_lowercase())
                    .is_some()
                {
                    say(rel, format!("listed twice in {MANIFEST}"));
                }
            }
        }
    }

    // Every listed file is there with its checksum; nothing else is there.
    let present: BTreeSet<String> = files_under(dir)?.into_iter().collect();
    for (rel, hash) in &listed {
        let path = dir.join(rel);
        if !present.contains(rel) {
            say(rel, format!("listed in {MANIFEST} but missing"));
            continue;
        }
        match std::fs::read(&path) {
            Ok(bytes) if &sha256_hex(&bytes) == hash => {}
            Ok(_) => say(
                rel,
                format!("SHA-256 differs from {MANIFEST}: the file was changed"),
            ),
            Err(e) => say(rel, format!("cannot be read: {e}")),
        }
    }
    for rel in present.iter().filter(|f| *f != MANIFEST) {
        if !listed.contains_key(rel) {
            say(rel, format!("not listed in {MANIFEST}"));
        }
    }

    // The registers parse, agree on the items, and name files that exist.
    for required in [REGISTER_XML, REGISTER_CSV, FILES_CSV] {
        if !present.contains(required) {
            say(required, "missing: every package has it".into());
        }
    }
    // (register, path, the SHA-256 the register gives it)
    let mut referenced: Vec<(String, String, String)> = Vec::new();
    let csv_numbers = read_csv(dir, REGISTER_CSV, ITEM_COLUMNS, &mut say, |row| {
        row.first().cloned()
    });
    let _ = read_csv(dir, FILES_CSV, FILE_COLUMNS, &mut say, |row| {
        if let Some(path) = row.get(2).filter(|p| !p.is_empty()) {
            let sha = row.get(4).cloned().unwrap_or_default();
            referenced.push((FILES_CSV.to_string(), path.clone(), sha));
        }
        None
    });
    let xml_numbers = read_xml(dir, &mut say, &mut referenced);
    if let (Some(csv), Some(xml)) = (csv_numbers, xml_numbers)
        && csv != xml
    {
        let only_csv: Vec<_> = csv.difference(&xml).cloned().collect();
        let only_xml: Vec<_> = xml.difference(&csv).cloned().collect();
        say(
            REGISTER_XML,
            format!(
                "lists other items than {REGISTER_CSV} (only in the CSV: {only_csv:?}; only in the XML: {only_xml:?})"
            ),
        );
    }
    for (register, rel, sha) in referenced {
        if inside(dir, &rel).is_none() {
            say(
                &register,
                format!("names {rel:?}, a path outside the package"),
            );
        } else if !listed.contains_key(&rel) || !present.contains(&rel) {
            say(
                &register,
                format!("names {rel}, which is not in the package"),
            );
        } else if listed.get(&rel) != Some(&sha.to_ascii_lowercase()) {
            say(
                &register,
                format!("gives {rel} another SHA-256 than {MANIFEST}"),
            );
        }
    }
    Ok(problems)
}

/// Reads a register CSV with its header checked; `each` sees every row
/// and may give a key to collect (its set is returned, None if unreadable).
fn read_csv(
    dir: &Path,
    name: &str,
    columns: &[&str],
    say: &mut impl FnMut(&str, String),
    mut each: impl FnMut(&Vec<String>) -> Option<String>,
) -> Option<BTreeSet<String>> {
    let mut reader = match csv::Reader::from_path(dir.join(name)) {
        Ok(r) => r,
        Err(_) => return None, // missing: said already
    };
    match reader.headers() {
        Ok(h) if h.iter().eq(columns.iter().copied()) => {}
        Ok(h) => {
            say(
                name,
                format!(
                    "header {:?} is not {columns:?}",
                    h.iter().collect::<Vec<_>>()
                ),
            );
            return None;
        }
        Err(e) => {
            say(name, format!("does not parse as CSV: {e}"));
            return None;
        }
    }
    let mut keys = BTreeSet::new();
    for (n, record) in reader.records().enumerate() {
        match record {
            Ok(r) => {
                let row: Vec<String> = r.iter().map(str::to_string).collect();
                if let Some(k) = each(&row) {
                    keys.insert(k);
                }
            }
            Err(e) => {
                say(
                    &format!("{name}:{}", n + 2),
                    format!("does not parse as CSV: {e}"),
                );
                return None;
            }
        }
    }
    Some(keys)
}

/// Reads `register.xml`: the items' numbers, and the paths its `file`
/// elements name (into `referenced`).
fn read_xml(
    dir: &Path,
    say: &mut impl FnMut(&str, String),
    referenced: &mut Vec<(String, String, String)>,
) -> Option<BTreeSet<String>> {
    let text = std::fs::read_to_string(dir.join(REGISTER_XML)).ok()?;
    let doc = match roxmltree::Document::parse(&text) {
        Ok(d) => d,
        Err(e) => {
            say(REGISTER_XML, format!("does not parse as XML: {e}"));
            return None;
        }
    };
    let root = doc.root_element();
    if root.tag_name().name() != "register" || root.tag_name().namespace() != Some(XML_NS) {
        say(
            REGISTER_XML,
            format!("the root is not <register xmlns=\"{XML_NS}\">"),
        );
        return None;
    }
    let mut numbers = BTreeSet::new();
    for item in root.children().filter(|n| n.has_tag_name((XML_NS, "item"))) {
        let Some(number) = item.attribute("number") else {
            say(REGISTER_XML, "an <item> has no number".into());
            continue;
        };
        numbers.insert(number.to_string());
        for file in item.children().filter(|n| n.has_tag_name((XML_NS, "file"))) {
            if let Some(path) = file.attribute("path") {
                let sha = file.attribute("sha256").unwrap_or_default();
                referenced.push((REGISTER_XML.to_string(), path.to_string(), sha.to_string()));
            }
        }
    }
    Some(numbers)
}

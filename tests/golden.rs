//! Golden files for normalisation: each `tests/golden/<channel>/<case>.input.json`
//! (for e-mail, `<case>.eml`, the raw mail) lies beside `<case>.expected.json`,
//! the message the channel must produce (with `id` and `received_at`, which
//! change on every run, left out).
//! `PIETURA_BLESS=1 cargo test --test golden` rewrites the expected files.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pietura::channels::load_dir;
use pietura::channels::web_form::{WebFormConfig, normalise};
use serde::Deserialize;

fn cases(channel: &str, suffix: &str) -> Vec<PathBuf> {
    let dir = support::repo_path(&format!("tests/golden/{channel}"));
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("golden folder {} not found: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no golden inputs in {}", dir.display());
    inputs
}

/// Compares with the expected file, or writes it when blessing.
fn check(input: &Path, suffix: &str, mut produced: serde_json::Value) {
    let obj = produced.as_object_mut().expect("message is an object");
    obj.remove("id");
    obj.remove("received_at");
    let expected_path = PathBuf::from(input.to_string_lossy().replace(suffix, ".expected.json"));
    let pretty = serde_json::to_string_pretty(&produced).expect("JSON") + "\n";
    if std::env::var_os("PIETURA_BLESS").is_some() {
        std::fs::write(&expected_path, pretty).expect("write expected");
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
        panic!(
            "{} missing ({e}); create it with PIETURA_BLESS=1",
            expected_path.display()
        )
    });
    let expected: serde_json::Value = serde_json::from_str(&expected).expect("expected JSON");
    assert_eq!(
        produced,
        expected,
        "{} differs from {}:\n{pretty}",
        input.display(),
        expected_path.display()
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormInput {
    form: String,
    lang: String,
    idempotency_key: String,
    values: BTreeMap<String, String>,
}

#[test]
fn web_form_submissions_normalise_to_the_golden_messages() {
    let configs = load_dir(&support::repo_path("channels")).expect("channels/ loads");
    for input in cases("web_form", ".input.json") {
        let case: FormInput =
            serde_json::from_str(&std::fs::read_to_string(&input).expect("read input"))
                .unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let cfg = configs
            .iter()
            .find_map(|c| c.settings::<WebFormConfig>().filter(|f| f.id == case.form))
            .unwrap_or_else(|| {
                panic!(
                    "{}: no web form {:?} in channels/",
                    input.display(),
                    case.form
                )
            });
        let msg = normalise(
            cfg,
            case.idempotency_key,
            &case.values,
            Vec::new(),
            &case.lang,
        );
        msg.check()
            .unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        check(
            &input,
            ".input.json",
            serde_json::from_slice(&msg.encode()).expect("JSON"),
        );
    }
}

#[test]
fn e_mails_normalise_to_the_golden_messages() {
    let ours = vec!["dokumenti@example.lv".to_string()];
    let received = chrono::DateTime::parse_from_rfc3339("2026-11-23T08:00:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    let inputs = cases("email", ".eml");
    assert!(
        inputs.len() >= 7,
        "e-mail golden inputs missing: {inputs:?}"
    );
    for input in inputs {
        let raw = std::fs::read(&input).expect("read .eml");
        let parsed = pietura::channels::email::normalise::parse(raw, None, &ours);
        let msg = parsed.to_message("epasts", received, None, None);
        msg.check()
            .unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        check(
            &input,
            ".eml",
            serde_json::from_slice(&msg.encode()).expect("JSON"),
        );
    }
}

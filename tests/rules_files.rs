//! Rule files as administrators meet them: the shipped set loads, a broken
//! set is refused with every problem at its file:line, and the CLI says so.

mod support;

use std::process::Command;

use pietura::rules::RuleSet;

#[test]
fn shipped_rules_load() {
    let set = RuleSet::load(&support::repo_path("rules")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        set.units.len() >= 10 && set.rules.len() >= 30,
        "units {} rules {}",
        set.units.len(),
        set.rules.len()
    );
}

#[test]
fn every_problem_of_a_broken_set_is_reported_with_file_and_line() {
    let err = RuleSet::load(&support::repo_path("tests/fixtures/rules-invalid"))
        .expect_err("the invalid fixture must be refused");
    let text = err.to_string();
    for (at, what) in [
        ("routing/bad.toml:19", "keywrods"),
        ("routing/bad.toml:30", "gamma"),
        ("routing/bad.toml:37", "(unclosed"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(at))
            .unwrap_or_else(|| panic!("{at} not reported in:\n{text}"));
        assert!(line.contains(what), "{at} should mention {what}: {line}");
    }
    assert!(
        !text.contains("ok-alpha"),
        "a valid rule was reported:\n{text}"
    );
    assert_eq!(err.problems.len(), 3, "{text}");
}

#[test]
fn cli_rules_check_fails_on_a_broken_set_and_passes_the_shipped_one() {
    let bin = env!("CARGO_BIN_EXE_pietura");
    let bad = Command::new(bin)
        .args(["rules", "check"])
        .arg(support::repo_path("tests/fixtures/rules-invalid"))
        .output()
        .expect("run pietura");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("bad.toml:30"), "{stderr}");

    let good = Command::new(bin)
        .args(["rules", "check"])
        .arg(support::repo_path("rules"))
        .output()
        .expect("run pietura");
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        stdout.contains("units") && stdout.contains("version"),
        "{stdout}"
    );
}

#[test]
fn cli_rules_test_explains_the_match() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("iesniegums.txt");
    std::fs::write(&file, "Lūdzu izsniegt būvatļauju palīgēkas pārbūvei.").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_pietura"))
        .args(["rules", "test", "--rules"])
        .arg(support::repo_path("rules"))
        .arg(&file)
        .output()
        .expect("run pietura");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("buvvalde"), "{stdout}");
}

#[test]
fn a_broken_calendar_or_terms_file_is_refused_with_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(rules.join("routing")).expect("mkdir");
    for name in ["units.toml", "services.toml", "deadlines.toml"] {
        std::fs::copy(support::repo_path("rules").join(name), rules.join(name)).expect("copy");
    }
    std::fs::copy(
        support::repo_path("rules/routing/50-units.toml"),
        rules.join("routing/50-units.toml"),
    )
    .expect("copy");
    let calendar = "office_closes = \"5pm\"\n\
                    checked_years = [2026]\n\
                    \n\
                    [[holiday]]\n\
                    name = \"Jaungada diena\"\n\
                    date = \"13-01\"\n\
                    \n\
                    [[transfer]]\n\
                    day_off = 2026-06-22\n\
                    worked_on = 2026-06-26\n";
    std::fs::write(rules.join("calendar.toml"), calendar).expect("write");
    let err = RuleSet::load(&rules).expect_err("a broken calendar must be refused");
    let text = err.to_string();
    for (at, what) in [
        ("calendar.toml:1", "office_closes"),
        ("calendar.toml:4", "MM-DD"),
        ("calendar.toml:8", "not a Saturday or Sunday"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(at))
            .unwrap_or_else(|| panic!("{at} not reported in:\n{text}"));
        assert!(line.contains(what), "{at} should mention {what}: {line}");
    }

    std::fs::copy(
        support::repo_path("rules/calendar.toml"),
        rules.join("calendar.toml"),
    )
    .expect("copy");
    std::fs::write(
        rules.join("deadlines.toml"),
        "[[regime]]\nfrom = 2026-03-01\nname = \"x\"\nreply = { weeks = 2 }\nextended_max = { months = 1 }\nforward = { working_days = 5 }\n",
    )
    .expect("write");
    let text = RuleSet::load(&rules)
        .expect_err("unknown term unit")
        .to_string();
    assert!(
        text.contains("deadlines.toml:") && text.contains("weeks"),
        "{text}"
    );
}

#[test]
fn a_rule_can_ask_for_facts_a_channel_extracted_and_unknown_facts_are_refused() {
    use pietura::message::{ChannelKind, ChannelRef, IntakeMessage};
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in
        std::fs::read_dir(support::repo_path("tests/fixtures/rules-small")).expect("fixture")
    {
        let entry = entry.expect("entry");
        if entry.path().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
        }
    }
    let units: toml::Table =
        toml::from_str(&std::fs::read_to_string(dir.path().join("units.toml")).expect("units"))
            .expect("units toml");
    let unit = units["unit"]
        .as_array()
        .and_then(|u| u.first())
        .and_then(|u| u["id"].as_str())
        .expect("a unit")
        .to_string();
    let routing = dir.path().join("routing");
    std::fs::create_dir_all(&routing).expect("routing dir");
    let rule = |facts: &str| {
        format!(
            "[[rule]]\nid = \"with-code\"\npriority = 1\n[rule.when]\nchannel = [\"scan\"]\nextracted = [{facts}]\n[rule.then]\nunit = \"{unit}\"\n"
        )
    };
    std::fs::write(
        routing.join("99-facts.toml"),
        rule("\"personas_kods\", \"datum\""),
    )
    .expect("rule");
    let err = RuleSet::load(dir.path()).expect_err("unknown fact refused");
    assert!(
        err.to_string().contains("99-facts.toml:6") && err.to_string().contains("datum"),
        "{err}"
    );

    std::fs::write(
        routing.join("99-facts.toml"),
        rule("\"personas_kods\", \"date\""),
    )
    .expect("rule");
    let set = RuleSet::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let letter = |extracted: serde_json::Value| {
        let mut m = IntakeMessage::new(
            ChannelRef {
                kind: ChannelKind::Scan,
                instance: "pasts".into(),
            },
            "k".into(),
            "Teksts".into(),
        );
        m.metadata
            .insert("scan".into(), serde_json::json!({ "extracted": extracted }));
        m
    };
    let both = letter(
        serde_json::json!({ "personas_kods": { "value": "150385-12346" }, "date": { "value": "2026-11-16" } }),
    );
    assert_eq!(set.evaluate(&both).rule_id.as_deref(), Some("with-code"));
    let one = letter(serde_json::json!({ "date": { "value": "2026-11-16" } }));
    assert_ne!(set.evaluate(&one).rule_id.as_deref(), Some("with-code"));
}

#[test]
fn catalogue_mistakes_are_reported_at_their_lines() {
    let err = RuleSet::load(&support::repo_path(
        "tests/fixtures/rules-catalogue-invalid",
    ))
    .expect_err("the catalogue fixture must be refused");
    let text = err.to_string();
    for (at, what) in [
        ("services.toml:7", "\"fax\" is not a way to apply"),
        ("services.toml:7", "\"counter\" is given twice"),
        ("services.toml:8", "form \"Iesniegums!\""),
        ("services.toml:9", "\"price\" is not a catalogue key"),
        (
            "services.toml:13",
            "en.documents has 1 entries, lv.documents 2",
        ),
        ("services.toml:21", "[service.en] without [service.lv]"),
    ] {
        assert!(
            text.lines().any(|l| l.contains(at) && l.contains(what)),
            "{at}: {what} not reported in:\n{text}"
        );
    }
    assert_eq!(err.problems.len(), 6, "{text}");
}

#[test]
fn shipped_catalogue_describes_every_service_in_both_languages() {
    let set = RuleSet::load(&support::repo_path("rules")).unwrap_or_else(|e| panic!("{e}"));
    for s in set.services.values() {
        let c = &s.catalogue;
        assert!(
            c.is_described() && !c.channels.is_empty(),
            "{} has no catalogue entry",
            s.id
        );
        assert!(
            c.lv.who.is_some() && c.en.who.is_some() && c.lv.term.is_some(),
            "{}: who and term in both languages",
            s.id
        );
    }
    let permit = &set.services["buvatlauja"].catalogue;
    assert!(permit.unconfirmed("fee"), "invented fees are marked");
}

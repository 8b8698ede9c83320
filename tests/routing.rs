//! Routing behaviour as data: every `[[case]]` of `tests/routing/cases.toml`
//! is routed through the shipped `rules/` and must reach its expected unit
//! (or review), service and tags. Adding a case needs no Rust.

mod support;

use pietura::message::{ChannelKind, ChannelRef, IntakeMessage};
use pietura::rules::RuleSet;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    channel: String,
    subject: Option<String>,
    body: String,
    sender_email: Option<String>,
    sender_phone: Option<String>,
    form_id: Option<String>,
    /// A unit id, or "review" when no rule may match.
    expect_unit: String,
    expect_service: Option<String>,
    #[serde(default)]
    expect_tags: Vec<String>,
}

fn message(case: &Case) -> IntakeMessage {
    let kind = ChannelKind::parse(&case.channel)
        .unwrap_or_else(|| panic!("case {:?}: unknown channel {:?}", case.name, case.channel));
    let mut msg = IntakeMessage::new(
        ChannelRef {
            kind,
            instance: "test".into(),
        },
        format!("case:{}", case.name),
        case.body.clone(),
    );
    msg.subject = case.subject.clone();
    msg.sender.email = case.sender_email.clone();
    msg.sender.phone = case.sender_phone.clone();
    if let Some(form) = &case.form_id {
        msg.metadata
            .insert(kind.as_str().into(), serde_json::json!({ "form_id": form }));
    }
    msg
}

#[test]
fn shipped_rules_route_every_case_as_expected() {
    let path = support::repo_path("tests/routing/cases.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("routing cases {} not found: {e}", path.display()));
    let cases: Cases = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        cases.case.len() >= 50,
        "only {} routing cases found",
        cases.case.len()
    );
    let rules = RuleSet::load(&support::repo_path("rules")).unwrap_or_else(|e| panic!("{e}"));

    let mut failures = Vec::new();
    for case in &cases.case {
        let d = rules.evaluate(&message(case));
        let unit = d.unit.clone().unwrap_or_else(|| "review".into());
        let mut wrong = Vec::new();
        if unit != case.expect_unit {
            wrong.push(format!("unit {unit}, expected {}", case.expect_unit));
        }
        if case.expect_unit == "review" && d.review_reason.is_none() {
            wrong.push("no review reason".into());
        }
        if let Some(service) = &case.expect_service
            && d.service.as_ref() != Some(service)
        {
            wrong.push(format!("service {:?}, expected {service}", d.service));
        }
        for tag in &case.expect_tags {
            if !d.tags.contains(tag) {
                wrong.push(format!("tag {tag} missing (tags: {:?})", d.tags));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\n{}",
                case.name,
                wrong.join("; "),
                d.explain()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases routed wrongly:\n\n{}",
        failures.len(),
        cases.case.len(),
        failures.join("\n\n")
    );
}

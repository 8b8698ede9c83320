//! The register (issue 19, items 1 and 2) on both registries: each item is
//! filed under a case of the classification scheme at registration (a
//! rule's `then.case`, else its service's `case`), the records officer
//! files it on the desk (audited, officers only, CSRF); every item's formal
//! status is derived from its door and stored, shown on the desk, counted in
//! the statistics, and `deadlines.toml` may give a formal status another
//! reply term or none — at registration and in the keeper's recompute.
//! `cases.toml` problems are reported at file:line.

mod support;

use std::path::Path;

use chrono::Utc;
use pietura::deadline::DeadlineBasis;
use pietura::message::{ChannelKind, ChannelRef, FormalStatus, IntakeMessage};
use pietura::registry::ItemSummary;
use pietura::rules::RuleSet;
use pietura::rules::cases::Retention;
use support::desk::{DeskClient, OFFICER, READER, add_accounts};
use support::dovecot::Dovecot;
use support::{Backend, Options, TestEnv};
use tempfile::TempDir;

const WATER: (&str, &str) = ("Ūdensvads", "Mūsu ielā plīsis ūdensvads, lūdzu salabot.");
const BUILDING: (&str, &str) = (
    "Būvatļauja",
    "Lūdzu izsniegt būvatļauju šķūņa būvniecībai Bebrenes pagastā.",
);
const NOBODYS: (&str, &str) = ("Sveiki", "Vai jums garšo kafija?");

/// A rule that names a service with a default case (5-2) and its own case.
const CASE_RULE: &str = r#"
[[rule]]
id = "udensvads-lieta"
priority = 600
description = "Ūdensvads: kā privātpersonas iesniegums"
[rule.when]
keywords = ["ūdensvad*"]
[rule.then]
service = "udens_kanalizacija"
case = "1-10"
"#;

/// Web forms get 15 working days, phone calls no legal deadline.
const STATUS_TERMS: &str =
    "\n[regime.formal_status]\nform = { working_days = 15 }\nphone = \"none\"\n\n";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The shipped rules with [`CASE_RULE`] and [`STATUS_TERMS`] in the regime in force.
fn register_rules() -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(&support::repo_path("rules"), dir.path());
    std::fs::write(dir.path().join("routing/05-cases.toml"), CASE_RULE).expect("rule");
    let path = dir.path().join("deadlines.toml");
    let text = std::fs::read_to_string(&path).expect("deadlines.toml");
    // The first [[regime]] is the one in force: its table goes before the second.
    let second = text
        .match_indices("[[regime]]")
        .nth(1)
        .expect("two regimes")
        .0;
    let text = format!("{}{STATUS_TERMS}{}", &text[..second], &text[second..]);
    std::fs::write(&path, text).expect("write deadlines.toml");
    dir
}

async fn audit(env: &TestEnv, item: &str) -> Vec<(String, String, serde_json::Value)> {
    env.daemon
        .registry
        .audit_of(item)
        .await
        .expect("audit log")
        .into_iter()
        .map(|(_, actor, action, detail)| {
            (
                actor,
                action,
                serde_json::from_str(&detail).expect("detail JSON"),
            )
        })
        .collect()
}

async fn find(env: &TestEnv, id: &str) -> ItemSummary {
    env.daemon
        .registry
        .find(id)
        .await
        .expect("find")
        .expect("item")
}

/// A message as a door would publish it, through the bus to the engine.
async fn published(env: &TestEnv, kind: ChannelKind, instance: &str, body: &str) -> ItemSummary {
    let mut msg = IntakeMessage::new(
        ChannelRef {
            kind,
            instance: instance.into(),
        },
        format!("{kind}:test:{}", uuid::Uuid::now_v7()),
        body.into(),
    );
    if kind == ChannelKind::EAdrese {
        msg.formal_status = Some(FormalStatus::AuthenticatedByStatePortal);
    }
    pietura::bus::publish_intake(env.daemon.bus.as_ref(), &msg)
        .await
        .expect("publish");
    env.registered(&msg.id.to_string()).await
}

fn basis(item: &ItemSummary, own_days: Option<u32>) -> DeadlineBasis {
    DeadlineBasis {
        received_at: pietura::registry::parse_db_time(&item.received_at).expect("received_at"),
        reply_working_days: own_days,
        ..DeadlineBasis::default()
    }
}

async fn classification_formal_status_deadlines_and_statistics(backend: Backend) {
    let rules = register_rules();
    let mut opts = Options::new(backend);
    opts.rules_from = rules.path().to_path_buf();
    let env = TestEnv::start(opts).await;
    add_accounts(&env).await;

    // --- Classification at registration: the rule's case beats its service's.
    let water = env.submit_item(WATER.0, WATER.1).await;
    assert_eq!(water.service_id.as_deref(), Some("udens_kanalizacija"));
    assert_eq!(water.case_code.as_deref(), Some("1-10"), "{water:?}");
    let building = env.submit_item(BUILDING.0, BUILDING.1).await;
    assert_eq!(building.service_id.as_deref(), Some("buvatlauja"));
    assert_eq!(building.case_code.as_deref(), Some("4-3"), "{building:?}");
    let nobodys = env.submit_item(NOBODYS.0, NOBODYS.1).await;
    assert_eq!(nobodys.state, "review");
    assert_eq!(nobodys.case_code, None);
    let registered = |lines: &[(String, String, serde_json::Value)]| {
        lines
            .iter()
            .find(|(_, a, _)| a == "registered")
            .map(|(_, _, d)| d.clone())
            .expect("registered line")
    };
    let line = registered(&audit(&env, &water.id).await);
    assert_eq!(line["case"], "1-10", "{line}");
    assert_eq!(line["case_from"], "rule udensvads-lieta", "{line}");
    assert_eq!(line["formal_status"], "form", "{line}");
    let line = registered(&audit(&env, &building.id).await);
    assert_eq!(line["case_from"], "service buvatlauja", "{line}");
    let line = registered(&audit(&env, &nobodys.id).await);
    assert_eq!(line["case"], serde_json::Value::Null, "{line}");

    // --- Formal status from each door.
    let desk = DeskClient::new(&env);
    assert_eq!(desk.sign_in(OFFICER.0, OFFICER.1).await, 303);
    let signed = desk
        .counter_submission(
            &[
                ("kind", "counter"),
                ("sender_name", "Anna Liepa"),
                ("subject", "Iesniegums"),
                ("text", "Lūdzu izvērtēt manu situāciju."),
                ("signed", "1"),
            ],
            None,
        )
        .await;
    let unsigned = desk
        .counter_submission(
            &[
                ("kind", "counter"),
                ("sender_name", "Jānis Ozols"),
                ("text", "Lūdzu informāciju par pabalstiem."),
            ],
            None,
        )
        .await;
    let call = desk
        .counter_submission(
            &[
                ("kind", "phone"),
                ("sender_name", "Pēteris Kalns"),
                ("text", "Uz ielas ir liela bedre, lūdzu salabot ceļu."),
            ],
            None,
        )
        .await;
    let signed = env.registered(&signed).await;
    let unsigned = env.registered(&unsigned).await;
    let call = env.registered(&call).await;
    let scan = published(&env, ChannelKind::Scan, "skeneris", "Lūdzu būvatļauju.").await;
    let portal = published(&env, ChannelKind::EAdrese, "e-adrese", "Lūdzu izziņu.").await;
    for (item, want) in [
        (&water, "form"),
        (&building, "form"),
        (&nobodys, "form"),
        (&signed, "signed_paper"),
        (&unsigned, "counter"),
        (&call, "phone"),
        (&scan, "paper"),
        (&portal, "authenticated_by_state_portal"),
    ] {
        assert_eq!(
            item.formal_status.as_deref(),
            Some(want),
            "{} ({})",
            item.registration_number,
            item.channel_kind
        );
    }

    // --- The deadline regime per formal status: forms 15 working days,
    // phone calls none, the rest the law's.
    let d = env.daemon.rules.load().deadlines.clone();
    let due = |b: &DeadlineBasis| Some(d.reply_due(b).to_string());
    assert_eq!(water.reply_due, due(&basis(&water, Some(15))));
    assert_ne!(water.reply_due, due(&basis(&water, None)));
    assert_eq!(unsigned.reply_due, due(&basis(&unsigned, None)));
    assert_eq!(call.reply_due, None, "{call:?}");
    // The keeper's recompute under the shipped terms (the law's for all).
    let shipped = RuleSet::load(&support::repo_path("rules")).expect("shipped rules");
    let moved = env
        .daemon
        .registry
        .recompute_open_deadlines(&shipped.deadlines, "test: shipped terms")
        .await
        .expect("recompute");
    assert!(moved >= 2, "moved {moved}");
    let law = |b: &DeadlineBasis| Some(shipped.deadlines.reply_due(b).to_string());
    assert_eq!(
        find(&env, &water.id).await.reply_due,
        law(&basis(&water, None))
    );
    assert_eq!(
        find(&env, &call.id).await.reply_due,
        law(&basis(&call, None))
    );
    // And back: the terms in force again take the phone call's deadline away.
    env.daemon
        .registry
        .recompute_open_deadlines(&d, "test: terms in force")
        .await
        .expect("recompute");
    assert_eq!(find(&env, &call.id).await.reply_due, None);

    // --- The records officer files an item on the desk (its revision
    // moved with the recomputes).
    let nobodys = find(&env, &nobodys.id).await;
    let (status, _, location) = desk
        .decide(
            &nobodys.id,
            nobodys.revision,
            &[("action", "classify"), ("case", "7-1")],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(
        location.as_deref(),
        Some(format!("/desk/items/{}", nobodys.id).as_str())
    );
    let filed = find(&env, &nobodys.id).await;
    assert_eq!(filed.case_code.as_deref(), Some("7-1"));
    let lines = audit(&env, &nobodys.id).await;
    let (actor, _, detail) = lines
        .iter()
        .find(|(_, a, _)| a == "classified")
        .expect("classified line");
    assert!(actor.contains("liga"), "{actor}");
    assert_eq!(detail["case"]["from"], serde_json::Value::Null, "{detail}");
    assert_eq!(detail["case"]["to"], "7-1", "{detail}");
    assert_eq!(detail["scheme_version"], "2026-draft-1", "{detail}");
    // Changed again: old → new.
    let (status, _, _) = desk
        .decide(
            &nobodys.id,
            filed.revision,
            &[("action", "classify"), ("case", "1-10")],
        )
        .await;
    assert_eq!(status, 303);
    let lines = audit(&env, &nobodys.id).await;
    let last = lines
        .iter()
        .rev()
        .find(|(_, a, _)| a == "classified")
        .expect("second classified line");
    assert_eq!(last.2["case"]["from"], "7-1", "{:?}", last.2);
    assert_eq!(last.2["case"]["to"], "1-10", "{:?}", last.2);
    let filed = find(&env, &nobodys.id).await;
    // A case the scheme does not have: refused, nothing changed.
    let (status, page, _) = desk
        .decide(
            &nobodys.id,
            filed.revision,
            &[("action", "classify"), ("case", "9-99")],
        )
        .await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("9-99"), "{page}");
    // A forged post without the session's token: refused.
    let revision = filed.revision.to_string();
    let (status, _, _) = desk
        .post(
            &format!("/desk/items/{}/decide", nobodys.id),
            &[
                ("csrf", "forged"),
                ("revision", revision.as_str()),
                ("action", "classify"),
                ("case", "7-1"),
            ],
        )
        .await;
    assert_eq!(status, 403);
    // A read-only account may not file items.
    let reader = DeskClient::new(&env);
    assert_eq!(reader.sign_in(READER.0, READER.1).await, 303);
    let (status, _, _) = reader
        .decide(
            &nobodys.id,
            filed.revision,
            &[("action", "classify"), ("case", "7-1")],
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        find(&env, &nobodys.id).await.case_code.as_deref(),
        Some("1-10")
    );

    // --- Shown on the desk in both languages.
    for (lang, case, formal) in [
        ("lv", "1-10 Privātpersonu iesniegumi", "tīmekļa veidlapa"),
        ("en", "1-10 Private persons' submissions", "web form"),
    ] {
        let (status, page) = reader
            .page(&format!("/desk/items/{}?lang={lang}", water.id))
            .await;
        assert_eq!(status, 200);
        let facts = page
            .split("id=\"item-facts\"")
            .nth(1)
            .and_then(|s| s.split("</table>").next())
            .expect("facts table");
        assert!(facts.contains("data-status=\"form\""), "{facts}");
        assert!(facts.contains(formal), "{lang}: {facts}");
        assert!(facts.contains("data-case=\"1-10\""), "{facts}");
        // The page escapes the apostrophe.
        let facts = facts.replace("&#39;", "'").replace("&#x27;", "'");
        assert!(facts.contains(case), "{lang}: {facts}");
    }
    let (_, queue) = desk.page("/desk?lang=en").await;
    assert!(queue.contains("class=\"formal-status\""), "{queue}");

    // --- Counted in the statistics.
    let today = pietura::deadline::local_date(Utc::now());
    let period = pietura::stats::Period::quarter_of(today);
    let records = env
        .daemon
        .registry
        .stats_records(period, None)
        .await
        .expect("records");
    let contacts = env
        .daemon
        .registry
        .stats_contacts(period, None)
        .await
        .expect("contacts");
    let report = pietura::stats::report(&records, &contacts, period, today);
    let by = |list: &[pietura::stats::Figures], key: &str| {
        list.iter()
            .find(|f| f.key == key)
            .cloned()
            .unwrap_or_else(|| panic!("no {key} in {list:?}"))
    };
    let t = &report.total;
    assert_eq!(t.received, 8);
    for (key, n) in [
        ("form", 3),
        ("signed_paper", 1),
        ("counter", 1),
        ("phone", 1),
        ("paper", 1),
        ("authenticated_by_state_portal", 1),
        ("e_signed", 0),
        ("unsigned_email", 0),
        ("unknown", 0),
    ] {
        assert_eq!(t.formal_count(key), n, "total {key}");
    }
    let web = by(&report.by_channel, "web_form");
    assert_eq!(web.formal_count("form"), 3);
    let counter = by(&report.by_channel, "counter");
    assert_eq!(
        (
            counter.formal_count("signed_paper"),
            counter.formal_count("counter")
        ),
        (1, 1)
    );
    assert_eq!(by(&report.by_unit, "buvvalde").formal_count("form"), 1);
    assert_eq!(by(&report.by_formal_status, "form").received, 3);
    let csv = pietura::stats::to_csv(&report);
    let header = csv.lines().next().expect("header");
    assert!(
        header.contains(",open_overdue,formal_e_signed,formal_authenticated_by_state_portal,formal_signed_paper,formal_unsigned_email,formal_form,formal_sms,formal_paper,formal_counter,formal_phone,formal_unknown,registration_median_s,"),
        "{header}"
    );
    let label = period.label();
    let row = csv
        .lines()
        .find(|l| l.starts_with(&format!("{label},channel,counter,")))
        .expect("counter row");
    // received 2; formal columns: signed_paper 1, counter 1.
    let cells: Vec<&str> = row.split(',').collect();
    assert_eq!(
        &cells[12..22],
        ["0", "0", "1", "0", "0", "0", "0", "1", "0", "0"],
        "{row}"
    );
    assert!(
        csv.lines()
            .any(|l| l.starts_with(&format!("{label},formal_status,form,3,"))),
        "{csv}"
    );
    let (status, html) = reader
        .page(&format!("/reports/quarterly?quarter={label}"))
        .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"formal-status\""), "{html}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classification_formal_status_deadlines_and_statistics_sqlite() {
    classification_formal_status_deadlines_and_statistics(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classification_formal_status_deadlines_and_statistics_postgres() {
    classification_formal_status_deadlines_and_statistics(Backend::Amqp).await;
}

async fn email_and_sms_formal_status(backend: Backend) {
    let ca = support::edoc::pki("Pietura test CA", "ANNA PARAUGA");
    let files: &[(&str, &[u8])] = &[("iesniegums.txt", "Lūdzu izsniegt būvatļauju.".as_bytes())];
    let at = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let sig = support::edoc::xades(
        &ca,
        files,
        &at,
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    );
    let good = support::edoc::container(files, &sig);
    let tampered =
        support::edoc::container(&[("iesniegums.txt", "Lūdzu neizsniegt.".as_bytes())], &sig);

    let dovecot = Dovecot::start();
    let channels = tempfile::tempdir().expect("channels");
    std::fs::write(
        channels.path().join("epasts.toml"),
        dovecot.channel_file("epasts", ""),
    )
    .expect("e-mail channel");
    std::fs::copy(
        support::repo_path("tests/fixtures/channels-sms/sms-kannel.toml"),
        channels.path().join("sms-kannel.toml"),
    )
    .expect("SMS channel");
    let mut opts = Options::new(backend);
    opts.channels_from = channels.path().to_path_buf();
    let trust = ca.ca.clone();
    opts.tweak = Some(Box::new(move |s| s.signatures.trust = vec![trust]));
    let env = TestEnv::start(opts).await;

    let key = |raw: &[u8]| {
        pietura::channels::email::normalise::parse(raw.to_vec(), None, &[])
            .idempotency_key("epasts")
    };
    let signed = support::edoc::mail_with("Parakstīts iesniegums", &[("iesniegums.asice", &good)]);
    let broken = support::edoc::mail_with("Bojāts paraksts", &[("iesniegums.edoc", &tampered)]);
    let plain = support::edoc::mail_with("Bez paraksta", &[]);
    for raw in [&signed, &broken, &plain] {
        dovecot.deliver(raw);
    }
    let text = "B%C5%ABvat%C4%BCauja+kl%C4%93tij"; // "Būvatļauja klētij"
    let r = reqwest::get(format!(
        "{}/sms/sms-kannel/inbound?secret=kannel-secret&id=f1&from=37129123456&to=1888&text={text}",
        env.base
    ))
    .await
    .expect("SMS webhook");
    assert!(r.status().is_success(), "{}", r.status());
    let sms = env.registered_key("sms:sms-kannel:f1").await;
    assert_eq!(sms.formal_status.as_deref(), Some("sms"));
    for (raw, want) in [
        (&signed, "e_signed"),
        (&broken, "unsigned_email"),
        (&plain, "unsigned_email"),
    ] {
        let item = env.registered_key(&key(raw)).await;
        assert_eq!(item.formal_status.as_deref(), Some(want), "{item:?}");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_signed_unsigned_and_sms_formal_status_sqlite() {
    email_and_sms_formal_status(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_signed_unsigned_and_sms_formal_status_postgres() {
    email_and_sms_formal_status(Backend::Amqp).await;
}

/// The engine's one derivation, for every door (no daemon needed).
#[test]
fn formal_status_is_derived_in_one_place_for_every_door() {
    let rules = RuleSet::load(&support::repo_path("rules")).expect("shipped rules");
    let msg = |kind: ChannelKind| {
        IntakeMessage::new(
            ChannelRef {
                kind,
                instance: "x".into(),
            },
            "k".into(),
            "Labdien".into(),
        )
    };
    for (kind, want) in [
        (ChannelKind::WebForm, FormalStatus::Form),
        (ChannelKind::Email, FormalStatus::UnsignedEmail),
        (ChannelKind::Sms, FormalStatus::Sms),
        (ChannelKind::Scan, FormalStatus::Paper),
        (ChannelKind::Phone, FormalStatus::Phone),
        (ChannelKind::Counter, FormalStatus::Counter),
    ] {
        assert_eq!(rules.evaluate(&msg(kind)).formal_status, want, "{kind}");
    }
    let mut signed = msg(ChannelKind::Counter);
    signed.formal_status = Some(FormalStatus::SignedPaper);
    assert_eq!(
        rules.evaluate(&signed).formal_status,
        FormalStatus::SignedPaper
    );
    let mut portal = msg(ChannelKind::EAdrese);
    portal.formal_status = Some(FormalStatus::AuthenticatedByStatePortal);
    assert_eq!(
        rules.evaluate(&portal).formal_status,
        FormalStatus::AuthenticatedByStatePortal
    );
    // A verified container makes a mail e-signed; a failed one does not.
    let mut mail = msg(ChannelKind::Email);
    for (verified, want) in [
        (false, FormalStatus::UnsignedEmail),
        (true, FormalStatus::ESigned),
    ] {
        mail.metadata.insert(
            "email".into(),
            serde_json::json!({ "signed_containers": [
                { "attachment": "a.asice", "sha256": "00", "container": {
                    "format": "asic-e", "files": [], "signers": [], "verified": verified } }
            ]}),
        );
        assert_eq!(rules.evaluate(&mail).formal_status, want);
    }
    // The names round-trip and the catalogs have each in words.
    for f in FormalStatus::ALL {
        assert_eq!(FormalStatus::parse(f.as_str()), Some(f));
        assert_eq!(serde_json::to_value(f).expect("json"), f.as_str());
    }
}

#[test]
fn the_shipped_scheme_loads_and_is_looked_up_by_code() {
    let rules = RuleSet::load(&support::repo_path("rules")).expect("shipped rules");
    assert!(rules.cases.cases.len() >= 10, "{:?}", rules.cases);
    let case = rules.cases.get("1-10").expect("1-10");
    assert_eq!(case.unit, "kanceleja");
    assert_eq!(case.retention, Retention::Years(5));
    assert_eq!(
        rules.cases.get("1-1").expect("1-1").retention,
        Retention::Permanent
    );
    assert!(
        rules
            .cases
            .approval
            .as_deref()
            .is_some_and(|a| a.contains("UNCONFIRMED"))
    );
    assert_eq!(rules.services["iesniegumi"].case.as_deref(), Some("1-10"));
}

/// A rules folder: the shipped one with `edit` applied to some files.
fn edited(edits: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(&support::repo_path("rules"), dir.path());
    for (file, text) in edits {
        std::fs::write(dir.path().join(file), text).expect("write");
    }
    dir
}

fn problems_of(dir: &TempDir) -> String {
    RuleSet::load(dir.path())
        .expect_err("must be refused")
        .to_string()
}

fn line_with(text: &str, at: &str, what: &str) {
    let line = text
        .lines()
        .find(|l| l.contains(at))
        .unwrap_or_else(|| panic!("{at} not reported in:\n{text}"));
    assert!(line.contains(what), "{at} should mention {what}: {line}");
}

#[test]
fn cases_toml_problems_are_reported_at_file_and_line() {
    let cases = "[scheme]\nversion = \"1\"\nname = \"Shēma\"\n\n\
[[case]]\ncode = \"1-1\"\ntitle = \"Protokoli\"\nunit = \"kanceleja\"\nretention = \"permanent\"\n\n\
[[case]]\ncode = \"1-1\"\ntitle = \"Atkārtots\"\nunit = \"kanceleja\"\nretention = 5\n\n\
[[case]]\ncode = \"2-1\"\ntitle = \"Nezināma nodaļa\"\nunit = \"nav-tadas\"\nretention = 5\n\n\
[[case]]\ncode = \"3-1\"\ntitle = \"Slikts termiņš\"\nunit = \"kanceleja\"\nretention = \"ilgi\"\n";
    let dir = edited(&[("cases.toml", cases)]);
    let text = problems_of(&dir);
    line_with(&text, "cases.toml:11", "defined twice");
    line_with(&text, "cases.toml:20", "nav-tadas");
    line_with(&text, "cases.toml:27", "permanent");

    // An unknown field.
    let typo = "[scheme]\nversion = \"1\"\nname = \"Shēma\"\n\n[[case]]\ncode = \"1-1\"\ntitle = \"Protokoli\"\nunit = \"kanceleja\"\nretention = 5\nretension = 10\n";
    let text = problems_of(&edited(&[("cases.toml", typo)]));
    line_with(&text, "cases.toml:", "retension");

    // A rule's then.case and a service's case must be in the scheme.
    let rule = "[[rule]]\nid = \"x\"\n[rule.when]\nkeywords = [\"x\"]\n[rule.then]\nunit = \"kanceleja\"\ncase = \"8-88\"\n";
    let text = problems_of(&edited(&[("routing/05-x.toml", rule)]));
    line_with(&text, "routing/05-x.toml:7", "8-88");
    let services = std::fs::read_to_string(support::repo_path("rules/services.toml"))
        .expect("services.toml")
        .replacen("case = \"1-10\"", "case = \"7-77\"", 1);
    let line = services
        .lines()
        .position(|l| l.contains("7-77"))
        .expect("edited line")
        + 1;
    let text = problems_of(&edited(&[("services.toml", &services)]));
    line_with(&text, &format!("services.toml:{line}"), "7-77");

    // Per-status terms: an unknown status and a bad word, at their lines.
    let deadlines = std::fs::read_to_string(support::repo_path("rules/deadlines.toml"))
        .expect("deadlines.toml");
    let second = deadlines
        .match_indices("[[regime]]")
        .nth(1)
        .expect("two regimes")
        .0;
    let table = "[regime.formal_status]\nfax = \"law\"\nsms = \"sometimes\"\n\n";
    let text_with = format!("{}{table}{}", &deadlines[..second], &deadlines[second..]);
    let first = deadlines[..second].lines().count() + 2;
    let text = problems_of(&edited(&[("deadlines.toml", &text_with)]));
    line_with(&text, &format!("deadlines.toml:{first}"), "fax");
    line_with(&text, &format!("deadlines.toml:{}", first + 1), "sometimes");

    // Without cases.toml (rule sets stored before it existed) the rest loads.
    let dir = edited(&[]);
    std::fs::remove_file(dir.path().join("cases.toml")).expect("remove");
    let services = std::fs::read_to_string(dir.path().join("services.toml"))
        .expect("services")
        .lines()
        .filter(|l| !l.starts_with("case = "))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join("services.toml"), services).expect("write");
    let set = RuleSet::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(set.cases.cases.is_empty());
}

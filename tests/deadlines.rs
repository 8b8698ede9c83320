//! Deadlines end to end on a running daemon: the recorded actions over the
//! API (with their conflicts and audit lines), an ad-hoc holiday that moves
//! open deadlines, and the units' daily digest through a real SMTP server.

mod support;

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Riga;
use pietura::deadline::{Calendar, DeadlineBasis};
use pietura::registry::ItemSummary;
use serde_json::json;
use support::smtp::SmtpServer;
use support::{Backend, Options, TestEnv};

const BUILDING: (&str, &str) = (
    "Būvatļauja",
    "Lūdzu izsniegt būvatļauju šķūņa būvniecībai Bebrenes pagastā.",
);

fn basis(item: &ItemSummary) -> DeadlineBasis {
    DeadlineBasis {
        received_at: DateTime::parse_from_rfc3339(&item.received_at)
            .expect("received_at")
            .with_timezone(&Utc),
        ..DeadlineBasis::default()
    }
}

fn date(v: &serde_json::Value) -> NaiveDate {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a date: {v}"))
}

async fn actions_are_recorded_and_conflicts_refused(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;
    let item = env.submit_item(BUILDING.0, BUILDING.1).await;
    let rules = env.daemon.rules.load_full();
    let law_due = rules.deadlines.reply_due(&basis(&item));
    assert_eq!(
        item.reply_due.as_deref(),
        Some(law_due.to_string().as_str())
    );
    let path = |action: &str| format!("/api/v1/items/{}/{action}", item.id);

    // Two officers pause at once: one wins, the other is told.
    let pause = json!({ "actor": "anna", "reason": "gaidām zemes robežu plānu" });
    let pause_path = path("deadline/pause");
    let (a, b) = tokio::join!(
        env.post_json(&pause_path, pause.clone()),
        env.post_json(&pause_path, pause.clone())
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let (status, again) = env.post_json(&path("deadline/pause"), pause).await;
    assert_eq!(status, 409, "{again}");
    assert!(
        again["error"]
            .as_str()
            .unwrap_or("")
            .contains("already paused"),
        "{again}"
    );

    let (status, resumed) = env
        .post_json(&path("deadline/resume"), json!({ "actor": "anna" }))
        .await;
    assert_eq!(status, 200, "{resumed}");
    assert!(resumed["paused_since"].is_null());
    // Paused and resumed the same day: no working day was lost.
    assert_eq!(date(&resumed["reply_due"]), law_due);

    let extend = |reason: &str, until: Option<&str>| json!({ "actor": "anna", "reason": reason, "until": until });
    let (status, body) = env
        .post_json(&path("deadline/extend"), extend(" ", None))
        .await;
    assert_eq!(status, 400, "an extension needs a reason: {body}");
    let (status, body) = env
        .post_json(
            &path("deadline/extend"),
            extend("cita iestāde", Some("2099-01-01")),
        )
        .await;
    assert_eq!(status, 422, "beyond the law's month: {body}");
    let (status, body) = env
        .post_json(&path("deadline/extend"), json!({ "actor": "anna" }))
        .await;
    assert_eq!(status, 422, "the reason is required: {body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("reason"),
        "{body}"
    );
    let (status, extended) = env
        .post_json(
            &path("deadline/extend"),
            extend("jāsaņem VZD atzinums", None),
        )
        .await;
    assert_eq!(status, 200, "{extended}");
    let limit = rules.deadlines.extension_limit(&basis(&item));
    assert_eq!(date(&extended["reply_due"]), limit);
    assert!(limit > law_due);

    let close = json!({ "actor": "janis", "reply_reference": "4-2/2026/77" });
    let (status, closed) = env.post_json(&path("close"), close.clone()).await;
    assert_eq!(status, 200, "{closed}");
    assert!(closed["closed_at"].is_string());
    for (action, body) in [
        ("close", close),
        ("deadline/extend", extend("vēlreiz", None)),
    ] {
        let (status, body) = env.post_json(&path(action), body).await;
        assert_eq!(status, 409, "{action} after closing: {body}");
    }
    let (status, _) = env
        .post_json(
            "/api/v1/items/no-such-item/close",
            json!({ "actor": "anna" }),
        )
        .await;
    assert_eq!(status, 404);

    let audit = env.daemon.registry.audit_of(&item.id).await.expect("audit");
    let recorded: Vec<(&str, &str)> = audit
        .iter()
        .filter(|a| a.1 != "pietura")
        .map(|a| (a.1.as_str(), a.2.as_str()))
        .collect();
    // The actor is the API client (the token's), never the body's "anna".
    assert_eq!(
        recorded,
        [
            ("tests", "deadline_paused"),
            ("tests", "deadline_resumed"),
            ("tests", "deadline_extended"),
            ("tests", "closed"),
        ]
    );
    let closing = audit.iter().find(|a| a.2 == "closed").expect("closed line");
    assert!(closing.3.contains("\"on_time\":true"), "{}", closing.3);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_actions_amqp_postgres() {
    actions_are_recorded_and_conflicts_refused(Backend::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_actions_embedded_sqlite() {
    actions_are_recorded_and_conflicts_refused(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_holiday_moves_open_deadlines_only() {
    let env = TestEnv::start(Options::new(Backend::Amqp)).await;
    let open = env.submit_item(BUILDING.0, BUILDING.1).await;
    let closed = env
        .submit_item(BUILDING.0, "Vēl viena būvatļauja klēts pārbūvei.")
        .await;
    let (status, _) = env
        .post_json(
            &format!("/api/v1/items/{}/close", closed.id),
            json!({ "actor": "janis" }),
        )
        .await;
    assert_eq!(status, 200);

    let before = env.daemon.rules.load_full();
    let due_before = before.deadlines.reply_due(&basis(&open));
    // The second working day of the term becomes a holiday.
    let receipt_day = before.deadlines.legal_receipt_day(basis(&open).received_at);
    let holiday = before.deadlines.working_days_after(receipt_day, 2);
    let (status, body) = env
        .post_json(
            "/api/v1/calendar/holidays",
            json!({ "date": holiday, "name": "Ārkārtas svētku diena", "actor": "admin" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["deadlines_moved"], 1,
        "only the open item moves: {body}"
    );
    let body_version = body["version"].clone();

    let after = env
        .daemon
        .registry
        .find(&open.id)
        .await
        .expect("find")
        .expect("item");
    let due_after = date(&json!(after.reply_due));
    assert_eq!(
        due_after,
        before.deadlines.working_days_after(due_before, 1)
    );
    let still = env
        .daemon
        .registry
        .find(&closed.id)
        .await
        .expect("find")
        .expect("item");
    assert_eq!(
        still.reply_due, closed.reply_due,
        "a closed item keeps its deadline"
    );

    // The holiday is in the registry's rule set in force for every daemon
    // (not written to this host's folder) and in force here.
    let active = env
        .daemon
        .registry
        .active_ruleset()
        .await
        .expect("active")
        .expect("a set in force");
    assert_eq!(Some(active.version.as_str()), body_version.as_str());
    let sources = env
        .daemon
        .registry
        .ruleset_sources(&active.version)
        .await
        .expect("sources")
        .expect("stored");
    let text = &sources.files["calendar.toml"];
    assert!(text.contains("Ārkārtas svētku diena") && text.contains(&holiday.to_string()));
    let file = std::fs::read_to_string(env.rules_dir.join("calendar.toml")).expect("calendar");
    assert!(
        !file.contains("Ārkārtas svētku diena"),
        "the folder is not written"
    );
    let year = env
        .get_json(&format!("/api/v1/calendar/{}", holiday.format("%Y")))
        .await;
    assert!(
        year["days_off"]
            .as_array()
            .expect("days")
            .iter()
            .any(|d| d["date"] == json!(holiday)),
        "{year}"
    );
    let moved = env.daemon.registry.audit_of(&open.id).await.expect("audit");
    assert!(
        moved
            .iter()
            .any(|a| a.2 == "deadline_moved" && a.3.contains("added by tests")),
        "{moved:?}"
    );

    let (status, body) = env
        .post_json(
            "/api/v1/calendar/holidays",
            json!({ "date": holiday, "name": "Vēlreiz", "actor": "admin" }),
        )
        .await;
    assert_eq!(status, 422, "already a day off: {body}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_get_one_digest_a_day_through_real_smtp() {
    let mail = tempfile::tempdir().expect("temp dir");
    // aiosmtpd creates the Maildir when the folder does not exist yet.
    let maildir = mail.path().join("maildir");
    let smtp = SmtpServer::start(&maildir);
    let env = TestEnv::start(Options::new(Backend::Amqp)).await;
    let item = env.submit_item(BUILDING.0, BUILDING.1).await;
    let rules = env.daemon.rules.load_full();
    let due = rules.deadlines.reply_due(&basis(&item));
    // 09:00 on the working day before the deadline: the item is due soon.
    let mut day = due.pred_opt().expect("day");
    while !rules.deadlines.calendar.is_working_day(day) {
        day = day.pred_opt().expect("day");
    }
    let morning = Riga
        .from_local_datetime(&day.and_hms_opt(9, 0, 0).expect("time"))
        .single()
        .expect("local time")
        .with_timezone(&Utc);

    let keeper = pietura::keeper::Keeper {
        registry: env.daemon.registry.clone(),
        rules: env.daemon.rules.clone(),
        settings: pietura::config::DeadlineSettings {
            digest_enabled: true,
            smtp_url: Some(format!("smtp://127.0.0.1:{}", smtp.port).into()),
            digest_from: "Pietura <pietura@novads.example.lv>".into(),
            ..Default::default()
        },
        status: env.daemon.rules_status.clone(),
        tick: Duration::from_secs(60),
        public_url: "https://iesniegumi.novads.example.lv/".into(),
    };
    // A second daemon's keeper (its own connection and holder) at once.
    let other = pietura::keeper::Keeper {
        registry: pietura::registry::Registry::connect(&env.database_url(), None)
            .await
            .expect("second daemon"),
        rules: env.daemon.rules.clone(),
        settings: keeper.settings.clone(),
        status: env.daemon.rules_status.clone(),
        tick: Duration::from_secs(60),
        public_url: "https://iesniegumi.novads.example.lv/".into(),
    };
    tokio::join!(keeper.send_digests(morning), other.send_digests(morning));
    keeper.send_digests(morning).await;
    other.send_digests(morning).await;
    let got = SmtpServer::messages(&maildir);
    assert_eq!(got.len(), 1, "one digest, once: {got:?}");
    let text = &got[0];
    assert!(text.contains("buvvalde@example.lv"), "{text}");
    assert!(text.contains("Auto-Submitted: auto-generated"), "{text}");
    assert!(text.contains(&item.registration_number), "{text}");
    // The digest links to the unit's page on the desk.
    assert!(
        text.contains("https://iesniegumi.novads.example.lv/desk/unit"),
        "{text}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_of_rule_sets_stored_before_the_calendar_are_still_explained() {
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    let item = env.submit_item(BUILDING.0, BUILDING.1).await;
    let registry = &env.daemon.registry;
    let mut sources = registry
        .ruleset_sources(&item.ruleset_version)
        .await
        .expect("lookup")
        .expect("stored version");
    // As a version was stored before calendar.toml and deadlines.toml existed.
    sources.files.remove("calendar.toml");
    sources.files.remove("deadlines.toml");
    sqlx::query("UPDATE ruleset_versions SET sources_json = $1 WHERE version = $2")
        .bind(serde_json::to_string(&sources).expect("json"))
        .bind(&item.ruleset_version)
        .execute(registry.pool())
        .await
        .expect("rewrite stored version");
    let decision = pietura::explain::explain(registry, &item)
        .await
        .expect("explained with the shipped calendar filling in");
    assert_eq!(decision.unit.as_deref(), Some("buvvalde"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_deadlines_are_recomputed_once_per_version_by_one_daemon_at_a_time() {
    use pietura::registry::deadlines::{RECOMPUTE_WORK, Recompute};
    let env = TestEnv::start(Options::new(Backend::Amqp)).await;
    let open = env.submit_item(BUILDING.0, BUILDING.1).await;
    let before = env.daemon.rules.load_full();
    let receipt_day = before.deadlines.legal_receipt_day(basis(&open).received_at);
    let holiday = before.deadlines.working_days_after(receipt_day, 2);
    // The calendar as it stands after the holiday was added (not yet in
    // force on the test's daemon, which does not watch its rules).
    let set = pietura::rules::holiday::with_dated_holiday(
        &before,
        holiday,
        "Ārkārtas svētku diena",
        "admin",
        chrono::Utc::now(),
    )
    .expect("holiday added");
    let url = env.database_url();
    let connect = || pietura::registry::Registry::connect(&url, None);
    let (a, b) = (connect().await.expect("A"), connect().await.expect("B"));

    // While A runs a pass, B does not start one.
    let held = a
        .claim_named(RECOMPUTE_WORK, 60)
        .await
        .expect("claim")
        .expect("A claims the pass");
    let busy = b
        .recompute_for_version(&set.deadlines, &set.version, "test")
        .await
        .expect("B");
    assert_eq!(busy, Recompute::Busy);
    a.release(&pietura::registry::lease::NAMED, &[held])
        .await
        .expect("release");

    // Both daemons follow the new version at once: one pass moves the
    // deadline, the other finds it running or done.
    let (ra, rb) = tokio::join!(
        a.recompute_for_version(&set.deadlines, &set.version, "calendar changed"),
        b.recompute_for_version(&set.deadlines, &set.version, "calendar changed"),
    );
    let mut outcomes = vec![ra.expect("A"), rb.expect("B")];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert!(
        outcomes.contains(&Recompute::Moved(1))
            && (outcomes.contains(&Recompute::Busy) || outcomes.contains(&Recompute::AlreadyDone)),
        "{outcomes:?}"
    );
    // Later, either daemon seeing the same version does nothing.
    for daemon in [&a, &b] {
        let again = daemon
            .recompute_for_version(&set.deadlines, &set.version, "calendar changed")
            .await
            .expect("again");
        assert_eq!(again, Recompute::AlreadyDone);
    }
    let moved = env.daemon.registry.audit_of(&open.id).await.expect("audit");
    let moves = moved.iter().filter(|a| a.2 == "deadline_moved").count();
    assert_eq!(moves, 1, "{moved:?}");
    env.stop().await;
}

//! Counter and phone intake, consultations and client opinions on both
//! registries (PostgreSQL with RabbitMQ, SQLite with the embedded bus): a
//! seeded set made through the desk and the status page, and the quarterly
//! figures asserted exactly, in the report and in the CSV export (which
//! names no item and no person).

mod support;

use pietura::message::{ChannelKind, FormalStatus};
use pietura::stats::{Figures, Period};
use serde_json::json;
use support::desk::{DeskClient, OFFICER, add_accounts};
use support::{Backend, Options, TestEnv};

fn by<'a>(list: &'a [Figures], key: &str) -> &'a Figures {
    list.iter()
        .find(|f| f.key == key)
        .unwrap_or_else(|| panic!("no row {key:?} in {list:#?}"))
}

async fn opinion(env: &TestEnv, tracking_id: &str, score: &str, comment: &str) -> u16 {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{}/status/{tracking_id}/opinion", env.base))
        .form(&[("score", score), ("comment", comment)])
        .send()
        .await
        .expect("POST opinion")
        .status()
        .as_u16()
}

async fn close(env: &TestEnv, item: &str) {
    let (status, body) = env
        .post_json(
            &format!("/api/v1/items/{item}/close"),
            json!({ "actor": "janis", "reply_reference": "1-2/2026/1" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn seeded_figures(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;
    add_accounts(&env).await;
    let desk = DeskClient::new(&env);
    assert_eq!(desk.sign_in(OFFICER.0, OFFICER.1).await, 303);

    // A visitor's signed paper with its scan, the service chosen by the
    // officer; a caller's complaint the rules route; a web form item.
    let visit = desk
        .counter_submission(
            &[
                ("kind", "counter"),
                ("service", "pabalsti"),
                ("sender_name", "Anna Liepa"),
                ("phone", "29123456"),
                ("subject", "Iesniegums"),
                ("text", "Lūdzu izvērtēt manu situāciju."),
                ("signed", "1"),
            ],
            Some((
                "iesniegums.pdf",
                "application/pdf",
                b"%PDF-1.4\n% scanned paper\n".to_vec(),
            )),
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
    let visit_item = env.registered(&visit).await;
    let call_item = env.registered(&call).await;
    let web_item = env
        .submit_item("Būvatļauja", "Lūdzu būvatļauju šķūņa pārbūvei.")
        .await;
    assert_eq!(
        (
            visit_item.channel_kind.as_str(),
            visit_item.unit_id.as_deref()
        ),
        ("counter", Some("socialais")),
        "the chosen service routes to its unit"
    );
    assert_eq!(visit_item.service_id.as_deref(), Some("pabalsti"));
    assert_eq!(call_item.channel_kind, "phone");
    assert_eq!(
        call_item.unit_id.as_deref(),
        Some("komunala"),
        "{call_item:?}"
    );
    let msg = env.message_of(&visit_item).await;
    assert_eq!(msg.channel.kind, ChannelKind::Counter);
    assert_eq!(msg.formal_status, Some(FormalStatus::SignedPaper));
    assert_eq!(msg.attachments.len(), 1, "the scan is attached");
    assert_eq!(env.message_of(&call_item).await.formal_status, None);
    env.assert_stored_message_matches_schema(&visit_item.id)
        .await;

    // Consultations: three logged, one refused.
    let csrf = desk.csrf().await;
    for (channel, service, minutes, want) in [
        ("counter", "pabalsti", "10", 303),
        ("counter", "pabalsti", "15", 303),
        ("phone", "buvatlauja", "5", 303),
        ("phone", "buvatlauja", "0", 422),
        ("fax", "buvatlauja", "5", 422),
    ] {
        let (status, page, _) = desk
            .post(
                "/desk/consultations",
                &[
                    ("csrf", csrf.as_str()),
                    ("service", service),
                    ("channel", channel),
                    ("minutes", minutes),
                ],
            )
            .await;
        assert_eq!(status, want, "{channel} {service} {minutes}: {page}");
    }

    // Opinions: only after closing, once per item.
    assert_eq!(opinion(&env, &visit, "4", "").await, 409, "not closed yet");
    close(&env, &visit_item.id).await;
    close(&env, &web_item.id).await;
    assert_eq!(opinion(&env, &visit, "4", "Laipni apkalpoja").await, 303);
    assert_eq!(
        opinion(&env, &visit, "1", "otrreiz").await,
        409,
        "once per item"
    );
    assert_eq!(opinion(&env, &web_item.id, "2", "").await, 303);
    assert_eq!(opinion(&env, &web_item.id, "9", "").await, 422);
    let status_page = env
        .http
        .get(format!("{}/status/{visit}", env.base))
        .send()
        .await
        .expect("status page")
        .text()
        .await
        .expect("text");
    assert!(
        status_page.contains("id=\"opinion-given\"") && !status_page.contains("id=\"opinion\""),
        "the question is not asked twice:\n{status_page}"
    );

    // The figures, exactly.
    let today = pietura::deadline::local_date(chrono::Utc::now());
    let period = Period::quarter_of(today);
    let registry = &env.daemon.registry;
    let records = registry.stats_records(period, None).await.expect("records");
    let contacts = registry
        .stats_contacts(period, None)
        .await
        .expect("contacts");
    let r = pietura::stats::report(&records, &contacts, period, today);
    let t = &r.total;
    assert_eq!(
        (
            t.received,
            t.consultations,
            t.consultation_minutes,
            t.opinions,
            t.opinion_score_sum
        ),
        (3, 3, 30, 2, 6)
    );
    let counter = by(&r.by_channel, "counter");
    assert_eq!(
        (
            counter.received,
            counter.consultations,
            counter.consultation_minutes,
            counter.opinions,
            counter.opinion_score_sum
        ),
        (1, 2, 25, 1, 4)
    );
    let phone = by(&r.by_channel, "phone");
    assert_eq!(
        (
            phone.received,
            phone.consultations,
            phone.consultation_minutes,
            phone.opinions
        ),
        (1, 1, 5, 0)
    );
    let web = by(&r.by_channel, "web_form");
    assert_eq!(
        (web.received, web.opinions, web.opinion_score_sum),
        (1, 1, 2)
    );
    let pabalsti = by(&r.by_service, "pabalsti");
    assert_eq!(
        (
            pabalsti.received,
            pabalsti.consultations,
            pabalsti.consultation_minutes
        ),
        (1, 2, 25)
    );
    assert_eq!(by(&r.by_service, "buvatlauja").consultations, 1);
    let socialais = by(&r.by_unit, "socialais");
    assert_eq!(
        (
            socialais.received,
            socialais.consultations,
            socialais.opinions,
            socialais.opinion_score_sum
        ),
        (1, 2, 1, 4)
    );
    assert_eq!(by(&r.by_unit, "buvvalde").opinions, 1);

    // One unit's report holds only its own contacts.
    let unit_contacts = registry
        .stats_contacts(period, Some("buvvalde"))
        .await
        .expect("unit contacts");
    assert_eq!(
        (
            unit_contacts.consultations.len(),
            unit_contacts.opinions.len()
        ),
        (1, 1)
    );

    // The dashboard's totals say the same.
    let (status, dashboard) = desk.page("/dashboard").await;
    assert_eq!(status, 200, "{dashboard}");
    assert!(
        dashboard.contains("<th>Konsultācijas / consultations</th><td>3 (30 min)</td>")
            && dashboard.contains("<td>2 (vidēji / mean 3,00)</td>"),
        "{dashboard}"
    );

    // The web form and the status page lead to the service catalogue.
    let form = env
        .http
        .get(format!("{}/forms/iesniegums", env.base))
        .send()
        .await
        .expect("form page")
        .text()
        .await
        .expect("text");
    assert!(form.contains("href=\"/services?lang=lv\""), "{form}");
    assert!(status_page.contains("href=\"/services\""), "{status_page}");

    // The public catalogue's own search folds as the rules do.
    let found = env
        .http
        .get(format!("{}/services?q=pabalstu", env.base))
        .send()
        .await
        .expect("catalogue search")
        .text()
        .await
        .expect("text");
    assert!(
        found.contains("id=\"service-pabalsti\"") && !found.contains("id=\"service-buvatlauja\""),
        "{found}"
    );
    let missing = env
        .http
        .get(format!("{}/services/no_such_service", env.base))
        .send()
        .await
        .expect("unknown service");
    assert_eq!(missing.status().as_u16(), 404);

    // The export: the same figures, no tracking id, no sender, no comment.
    let (status, csv) = desk
        .page(&format!(
            "/reports/quarterly.csv?quarter={}",
            period.label()
        ))
        .await;
    assert_eq!(status, 200, "{csv}");
    let row = |dim: &str, key: &str| -> Vec<String> {
        csv.lines()
            .find(|l| l.split(',').nth(1) == Some(dim) && l.split(',').nth(2) == Some(key))
            .unwrap_or_else(|| panic!("no {dim} {key} row:\n{csv}"))
            .split(',')
            .map(str::to_string)
            .collect()
    };
    // The consultation and opinion columns, found by their headings.
    let c = csv
        .lines()
        .next()
        .and_then(|h| h.split(',').position(|name| name == "consultations"))
        .unwrap_or_else(|| panic!("no consultations column:\n{csv}"));
    assert_eq!(
        row("channel", "counter")[c..],
        ["2", "25", "1", "4.00"],
        "{csv}"
    );
    assert_eq!(
        row("channel", "web_form")[c..],
        ["0", "0", "1", "2.00"],
        "{csv}"
    );
    assert_eq!(row("service", "buvatlauja")[c..c + 2], ["1", "5"], "{csv}");
    assert_eq!(row("unit", "socialais")[c + 2..], ["1", "4.00"], "{csv}");
    for private in [
        visit.as_str(),
        visit_item.id.as_str(),
        "Anna",
        "Laipni",
        &visit_item.registration_number,
    ] {
        assert!(!csv.contains(private), "{private} in the export:\n{csv}");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_consultations_and_opinions_on_postgresql() {
    seeded_figures(Backend::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_consultations_and_opinions_on_sqlite() {
    seeded_figures(Backend::Embedded).await;
}

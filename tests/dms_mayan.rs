//! Registration in a real Mayan EDMS 4.12 (installed from PyPI by
//! `scripts/test.sh`, one fresh copy per test under gunicorn), with the
//! daemon on RabbitMQ + PostgreSQL: items reach Mayan with their files and
//! metadata, wait while Mayan is down, and are never uploaded twice.

mod support;

use std::time::Duration;

use base64::Engine as _;
use pietura::registry::ItemSummary;
use pietura::registry::dms::DmsState;
use support::dovecot::Dovecot;
use support::mayan::{self, Mayan};
use support::{Backend, Options, TestEnv, wait_until};

const LONG_WAIT: Duration = Duration::from_secs(180);

async fn start(mayan: &Mayan, password: &str, channels: Option<&std::path::Path>) -> TestEnv {
    let mut opts = Options::new(Backend::Amqp);
    opts.dms = Some(mayan.settings(password));
    if let Some(dir) = channels {
        opts.channels_from = dir.to_path_buf();
    }
    TestEnv::start(opts).await
}

async fn dms_state(env: &TestEnv, item: &ItemSummary) -> DmsState {
    env.daemon
        .registry
        .dms_state(&item.id)
        .await
        .expect("dms state")
        .unwrap_or_else(|| panic!("item {} has no DMS record", item.registration_number))
}

/// Waits until every item is registered in the DMS; their states.
async fn wait_registered(env: &TestEnv, items: &[ItemSummary]) -> Vec<DmsState> {
    wait_until(
        LONG_WAIT,
        &format!("{} items registered in Mayan", items.len()),
        || async {
            for item in items {
                if dms_state(env, item).await.state != "registered" {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let mut states = Vec::new();
    for item in items {
        states.push(dms_state(env, item).await);
    }
    states
}

fn external_id(state: &DmsState) -> String {
    state.external_id.clone().expect("external id")
}

/// A mail with a PDF and a text attachment.
fn mail_with_two_attachments(pdf: &[u8], text: &[u8]) -> Vec<u8> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    format!(
        "From: =?utf-8?q?Anna_B=C4=93rzi=C5=86a?= <anna.berzina@example.lv>\r\n\
         To: dokumenti@example.lv\r\n\
         Subject: =?utf-8?q?B=C5=ABvat=C4=BCaujas_pieprasijums?=\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0200\r\n\
         Message-ID: <{}@example.lv>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Lūdzu izsniegt būvatļauju šķūņa būvniecībai. Plāns pielikumā.\r\n\
         --b1\r\nContent-Type: application/pdf; name=\"plans.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"plans.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8; name=\"apraksts.txt\"\r\n\
         Content-Disposition: attachment; filename=\"apraksts.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --b1--\r\n",
        uuid::Uuid::now_v7(),
        b64(pdf),
        b64(text),
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_form_item_and_a_mail_with_two_attachments_reach_mayan_with_files_and_metadata() {
    let mayan = Mayan::start().await;
    let dovecot = Dovecot::start();
    let channels = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        support::repo_path("channels/iesniegums.toml"),
        channels.path().join("iesniegums.toml"),
    )
    .expect("form channel");
    std::fs::write(
        channels.path().join("epasts.toml"),
        dovecot.channel_file("epasts", ""),
    )
    .expect("mail channel");
    let env = start(&mayan, mayan::PASSWORD, Some(channels.path())).await;

    let form = env
        .submit_item(
            "Būvatļauja šķūnim",
            "Lūdzu izsniegt būvatļauju šķūnim Ozolu ielā 3.",
        )
        .await;
    let pdf = b"%PDF-1.4\n% pietura test plan\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".to_vec();
    let text = "Šķūņa apraksts: 4×6 m, koka.\n".as_bytes().to_vec();
    let raw = mail_with_two_attachments(&pdf, &text);
    dovecot.deliver(&raw);
    let key = pietura::channels::email::normalise::parse(raw.clone(), None, &[])
        .idempotency_key("epasts");
    let mail = env.registered_key(&key).await;

    let states = wait_registered(&env, &[form.clone(), mail.clone()]).await;
    let (form_doc, mail_doc) = (external_id(&states[0]), external_id(&states[1]));
    assert_ne!(form_doc, mail_doc);
    assert_eq!(
        mayan.documents().await.len(),
        2,
        "one Mayan document per item"
    );
    for state in &states {
        assert_eq!(state.connector, "mayan");
        let url = state.external_url.as_deref().expect("link");
        assert!(
            url.starts_with(&mayan.url()) && url.contains("/documents/documents/"),
            "{url}"
        );
    }

    // The form item: its text as a file, and the register's fields.
    let stem = form.registration_number.replace('/', "-");
    let files = mayan.files(&form_doc).await;
    assert_eq!(
        files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        [format!("{stem}.txt")]
    );
    let body = String::from_utf8(mayan.file_bytes(&form_doc, &format!("{stem}.txt")).await)
        .expect("utf-8");
    assert!(
        body.contains("Ozolu ielā 3") && body.contains(&form.registration_number),
        "{body}"
    );
    let meta = mayan.metadata(&form_doc).await;
    assert_eq!(
        meta["pietura_registration_number"],
        form.registration_number
    );
    assert_eq!(meta["pietura_item_id"], form.id);
    assert_eq!(meta["pietura_channel"], "web_form");
    assert_eq!(meta["pietura_subject"], "Būvatļauja šķūnim");
    assert!(meta["pietura_sender"].contains("Anna Kalniņa"), "{meta:?}");
    assert_eq!(
        Some(meta["pietura_deadline"].as_str()),
        form.reply_due.as_deref()
    );
    assert_eq!(meta["pietura_received_at"], form.received_at);

    // The mail: the .eml as received and both attachments, byte for byte.
    let stem = mail.registration_number.replace('/', "-");
    let mut files = mayan.files(&mail_doc).await;
    files.sort();
    let mut expected = vec![
        (format!("{stem}.eml"), raw.len() as u64),
        ("apraksts.txt".to_string(), text.len() as u64),
        ("plans.pdf".to_string(), pdf.len() as u64),
    ];
    expected.sort();
    assert_eq!(files, expected);
    assert_eq!(mayan.file_bytes(&mail_doc, "plans.pdf").await, pdf);
    assert_eq!(
        mayan.file_bytes(&mail_doc, &format!("{stem}.eml")).await,
        raw
    );
    let meta = mayan.metadata(&mail_doc).await;
    assert_eq!(
        meta["pietura_registration_number"],
        mail.registration_number
    );
    assert_eq!(meta["pietura_channel"], "email");
    assert!(
        meta["pietura_sender"].contains("anna.berzina@example.lv"),
        "{meta:?}"
    );
    assert_eq!(
        mail.unit_id.as_deref(),
        Some("buvvalde"),
        "the shipped rules route a building permit"
    );
    assert!(meta["pietura_unit"].contains("(buvvalde)"), "{meta:?}");
    let documents = mayan.documents().await;
    let label = documents
        .iter()
        .find(|d| d["id"].as_u64() == mail_doc.parse().ok())
        .and_then(|d| d["label"].as_str())
        .expect("label");
    assert!(label.starts_with(&mail.registration_number), "{label}");

    // The deadline is extended: the DMS's copy follows.
    let (status, extended) = env
        .post_json(
            &format!("/api/v1/items/{}/deadline/extend", form.id),
            serde_json::json!({ "actor": "anna", "reason": "jāsaņem VZD atzinums" }),
        )
        .await;
    assert_eq!(status, 200, "{extended}");
    let new_due = extended["reply_due"]
        .as_str()
        .expect("new deadline")
        .to_string();
    assert_ne!(Some(new_due.as_str()), form.reply_due.as_deref());
    wait_until(LONG_WAIT, "the new deadline in Mayan", || async {
        dms_state(&env, &form).await.state == "registered"
            && mayan.metadata(&form_doc).await["pietura_deadline"] == new_due
    })
    .await;
    assert_eq!(
        mayan.documents().await.len(),
        2,
        "an update creates nothing"
    );

    // The item's history and API show it.
    let shown = env.get_json(&format!("/api/v1/items/{}", mail.id)).await;
    assert_eq!(shown["dms"]["state"], "registered");
    assert_eq!(shown["dms"]["external_id"], mail_doc.as_str());
    assert!(
        shown["history"]
            .as_array()
            .expect("history")
            .iter()
            .any(|h| h["action"] == "dms_registered"),
        "{shown}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn items_wait_while_mayan_is_down_and_are_registered_once_when_it_returns() {
    let mut mayan = Mayan::start().await;
    let env = start(&mayan, mayan::PASSWORD, None).await;
    let mut items = Vec::new();
    for i in 0..6 {
        items.push(
            env.submit_item(&format!("Iesniegums {i}"), "Lūdzu atbildēt.")
                .await,
        );
    }
    // Mid-run: some are in Mayan already, the rest not.
    let first = items[0].clone();
    wait_until(LONG_WAIT, "the first item in Mayan", || async {
        dms_state(&env, &first).await.state == "registered"
    })
    .await;
    mayan.stop();
    for i in 6..12 {
        items.push(
            env.submit_item(&format!("Iesniegums {i}"), "Lūdzu atbildēt.")
                .await,
        );
    }
    let last = items[11].clone();
    wait_until(
        LONG_WAIT,
        "an item waiting with the connection error",
        || async {
            let s = dms_state(&env, &last).await;
            s.state == "pending"
                && s.attempts >= 2
                && s.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("cannot connect"))
        },
    )
    .await;
    let shown = env.get_json(&format!("/api/v1/items/{}", last.id)).await;
    assert_eq!(shown["dms"]["state"], "pending", "{shown}");
    assert!(shown["dms"]["next_attempt_at"].is_string(), "{shown}");

    mayan.resume().await;
    let states = wait_registered(&env, &items).await;
    let documents = mayan.documents().await;
    assert_eq!(documents.len(), 12, "exactly one Mayan document per item");
    let mut ids: Vec<String> = states.iter().map(external_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12);
    for (item, state) in items.iter().zip(&states) {
        let doc = external_id(state);
        assert_eq!(
            mayan.files(&doc).await.len(),
            1,
            "item {}",
            item.registration_number
        );
        assert_eq!(mayan.metadata(&doc).await["pietura_item_id"], item.id);
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn neither_a_redelivery_nor_a_lost_answer_uploads_an_item_twice() {
    let mayan = Mayan::start().await;
    let env = start(&mayan, mayan::PASSWORD, None).await;
    let item = env
        .submit_item("Par ielu apgaismojumu", "Nedeg laterna.")
        .await;
    let first = external_id(&wait_registered(&env, std::slice::from_ref(&item)).await[0]);

    // The channel hands the same source item in again (a resubmitted form,
    // a mail read again after a crash): a duplicate, nothing queued.
    let mut msg = env.message_of(&item).await;
    msg.id = uuid::Uuid::now_v7();
    pietura::bus::publish_intake(env.daemon.bus.as_ref(), &msg)
        .await
        .expect("publish again");
    let pool = env.daemon.registry.pool().clone();
    wait_until(LONG_WAIT, "the redelivery recognised", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM received_messages WHERE item_id = $1 AND message_id = $2 AND duplicate = 1",
        )
        .bind(&item.id)
        .bind(msg.id.to_string())
        .fetch_one(&pool)
        .await
        .expect("count");
        n >= 1
    })
    .await;

    // The DMS created the document but its answer was lost (a crash before
    // it was recorded): the next attempt must find that document.
    sqlx::query(
        "UPDATE dms_registrations SET registered_at = NULL, external_id = NULL, \
         external_url = NULL, next_attempt_at = '2000-01-01T00:00:00.000000Z' WHERE item_id = $1",
    )
    .bind(&item.id)
    .execute(&pool)
    .await
    .expect("forget the answer");
    let again = external_id(&wait_registered(&env, std::slice::from_ref(&item)).await[0]);
    assert_eq!(again, first, "the earlier document was found and completed");
    assert_eq!(mayan.documents().await.len(), 1);
    assert_eq!(mayan.files(&first).await.len(), 1);
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dms_registrations")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 1, "one DMS record per item, none for the redelivery");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_credentials_keep_the_item_pending_with_the_reason_and_the_daemon_running() {
    let mayan = Mayan::start().await;
    let env = start(&mayan, "not-the-password", None).await;
    let item = env.submit_item("Par atkritumiem", "Nav izvesti.").await;
    wait_until(LONG_WAIT, "the refusal on the item", || async {
        let s = dms_state(&env, &item).await;
        s.state == "pending"
            && s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("check the credentials"))
    })
    .await;
    assert!(mayan.documents().await.is_empty());
    // Still taking items.
    let next = env.submit_item("Vēl viens", "Teksts.").await;
    assert_eq!(dms_state(&env, &next).await.state, "pending");
    env.stop().await;
}

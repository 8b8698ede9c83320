//! Accepted means registered (issue 21): legal but awkward text is
//! registered whatever door it came through, and what cannot be taken is
//! refused at the door with 400 naming the field, never 2xx and then lost.

mod support;

use std::sync::Once;

use pietura::channels::sms::body_signature;
use serde_json::{Value, json};
use support::{Backend, Options, TestEnv};

const KEY_VAR: &str = "PIETURA_FORM_IESNIEGUMS_KEY";
const API_KEY: &str = "accepted-test-portal-key-0123456789";
const API: &str = "/api/v1/forms/iesniegums/submissions";

/// Turns the JSON API of `channels/iesniegums.toml` on before a daemon starts.
fn portal_key() -> &'static str {
    static ONCE: Once = Once::new();
    // SAFETY: set once, to the same value, before any daemon of this test
    // binary reads it; no other test binary shares the process.
    ONCE.call_once(|| unsafe { std::env::set_var(KEY_VAR, API_KEY) });
    API_KEY
}

/// Backslash sequences, the six characters `\u0000`, a lone combining mark.
const AWKWARD: &str = "\u{0301}Ceļš C:\\new\\t un \\u0000 un \\\\u0000 beigas";

/// The awkward text padded to exactly 20,000 characters (the form's limit).
fn long_awkward() -> String {
    let mut t = AWKWARD.to_string();
    let pad = 20_000 - t.chars().count();
    t.extend(std::iter::repeat_n('ā', pad));
    t
}

async fn post_sms(env: &TestEnv, body: Value) -> (u16, String) {
    let body = body.to_string();
    let resp = env
        .http
        .post(format!("{}/sms/sms-json/inbound", env.base))
        .header("content-type", "application/json")
        .header(
            "X-Signature-256",
            body_signature("json-secret", body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("POST SMS");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

async fn web_doors(env: &TestEnv) {
    // The HTML form (JSON receipt): 20,000 awkward characters, and a NUL.
    for (text, stored) in [
        (long_awkward(), long_awkward()),
        (format!("{AWKWARD}\0NUL"), format!("{AWKWARD}NUL")),
    ] {
        let token = env.form_token().await;
        let (status, receipt) = env.submit(&token, "Awkward \\u0000", &text).await;
        assert!(status == 201 || status == 202, "{status}: {receipt}");
        let item = env
            .registered(receipt["tracking_id"].as_str().expect("tracking id"))
            .await;
        let msg = env.message_of(&item).await;
        assert_eq!(msg.body.trim_end(), stored.trim(), "form text kept as sent");
        assert_eq!(msg.subject.as_deref(), Some("Awkward \\u0000"));
    }
    // The JSON API, the same text.
    let resp = env
        .http
        .post(format!("{}{API}", env.base))
        .bearer_auth(portal_key())
        .header(
            "Idempotency-Key",
            format!("awkward-{}", uuid::Uuid::now_v7()),
        )
        .json(&json!({
            "fields": {"vards": "Anna \\u0000", "temats": "API \\u0000", "teksts": long_awkward()},
            "lang": "lv",
        }))
        .send()
        .await
        .expect("POST API");
    let status = resp.status().as_u16();
    let receipt: Value = resp.json().await.expect("JSON");
    assert!(status == 201 || status == 202, "{status}: {receipt}");
    let item = env
        .registered(receipt["tracking_id"].as_str().expect("tracking id"))
        .await;
    assert!(env.message_of(&item).await.body.contains(AWKWARD.trim()));
}

async fn sms_door(env: &TestEnv) {
    // (a) the six characters in the text.
    let (status, answer) = post_sms(
        env,
        json!({"id": "aw-1", "from": "+37129123456", "to": "1888", "text": AWKWARD}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (_, msg) = env.registered_message("sms:sms-json:aw-1").await;
    assert_eq!(msg.body, AWKWARD.trim());
    // (b) a NUL in `to`: registered, the NUL gone.
    let (status, answer) = post_sms(
        env,
        json!({"id": "aw-2", "from": "+37129123456", "to": "18\u{0}88", "text": "Sveiki"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (_, msg) = env.registered_message("sms:sms-json:aw-2").await;
    assert_eq!(msg.metadata["sms"]["to"], "1888");
    // (b) a NUL in `id`, the item's key: refused before any 2xx, naming it.
    let (status, answer) = post_sms(
        env,
        json!({"id": "aw\u{0}3", "from": "+37129123456", "text": "Sveiki"}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("\"id\""), "names the field: {answer}");
}

async fn awkward_text_is_registered_at_every_door(backend: Backend) {
    portal_key();
    let env = TestEnv::start(Options::new(backend)).await;
    web_doors(&env).await;
    env.stop().await;
    let env = TestEnv::start(Options {
        channels_from: support::repo_path("tests/fixtures/channels-sms"),
        ..Options::new(backend)
    })
    .await;
    sms_door(&env).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_text_is_registered_at_every_door_on_amqp_postgres() {
    awkward_text_is_registered_at_every_door(Backend::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_text_is_registered_at_every_door_on_embedded_sqlite() {
    awkward_text_is_registered_at_every_door(Backend::Embedded).await;
}

/// A message as a channel would publish it.
fn form_message(text: &str) -> pietura::message::IntakeMessage {
    let mut m = pietura::message::IntakeMessage::new(
        pietura::message::ChannelRef {
            kind: pietura::message::ChannelKind::WebForm,
            instance: "iesniegums".into(),
        },
        format!("web_form:iesniegums:parked-{}", uuid::Uuid::now_v7()),
        text.into(),
    );
    m.subject = Some("Parked".into());
    m
}

/// What the bus does with a message the engine refused: it lands in the
/// dead-letter queue (`<prefix>.dead` with RabbitMQ's reason header; the
/// embedded bus's dead row).
async fn dead_letter(env: &TestEnv, payload: &[u8], limit: bool) {
    match env.backend {
        Backend::Amqp => {
            use lapin::types::{AMQPValue, FieldTable};
            let conn = lapin::Connection::connect(
                &support::amqp_url(),
                lapin::ConnectionProperties::default(),
            )
            .await
            .expect("connect RabbitMQ");
            let ch = conn.create_channel().await.expect("channel");
            ch.confirm_select(Default::default())
                .await
                .expect("confirms");
            let mut headers = FieldTable::default();
            headers.insert(
                "x-first-death-reason".into(),
                AMQPValue::LongString(if limit { "delivery_limit" } else { "rejected" }.into()),
            );
            ch.basic_publish(
                format!("{}.dead", env.prefix).as_str().into(),
                "".into(),
                Default::default(),
                payload,
                lapin::BasicProperties::default().with_headers(headers),
            )
            .await
            .expect("publish")
            .await
            .expect("confirmed");
            let _ = conn.close(200, "done".into()).await;
        }
        Backend::Embedded => {
            sqlx::query(
                "INSERT INTO bus_messages (id, queue, payload, deliveries, visible_at, created_at, \
                 dead_reason) VALUES ($1, 'intake', $2, 1, 0, $3, $4)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(std::str::from_utf8(payload).expect("JSON"))
            .bind(pietura::registry::db_time(chrono::Utc::now()))
            .bind(if limit {
                "delivery limit of 5 reached"
            } else {
                "refused by the test"
            })
            .execute(env.daemon.registry.pool())
            .await
            .expect("dead row");
        }
    }
}

async fn status_of(env: &TestEnv, id: &str) -> (String, String) {
    let json = env
        .http
        .get(format!("{}/status/{id}", env.base))
        .header("accept", "application/json")
        .send()
        .await
        .expect("status")
        .json::<Value>()
        .await
        .expect("status JSON");
    let page = env
        .http
        .get(format!("{}/status/{id}", env.base))
        .send()
        .await
        .expect("status page")
        .text()
        .await
        .expect("page");
    (json["status"].as_str().unwrap_or("").to_string(), page)
}

async fn a_dead_letter_is_parked_and_registered_once_by_retry(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;
    let msg = form_message("Lūdzu reģistrēt pēc dead letter");
    let id = msg.id.to_string();
    dead_letter(&env, &msg.encode(), false).await;
    let registry = env.daemon.registry.clone();
    support::wait_until(support::WAIT, "the dead letter is parked", || {
        let (registry, id) = (registry.clone(), id.clone());
        async move { registry.parked_item(&id).await.expect("parked").is_some() }
    })
    .await;
    let parked = registry
        .parked_item(&id)
        .await
        .expect("parked")
        .expect("row");
    assert_eq!(parked.payload, msg.encode(), "the raw bytes are kept");
    assert!(!parked.transient, "{parked:?}");
    assert_eq!(parked.message_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        env.daemon
            .bus
            .dead_letter_count()
            .await
            .expect("dead count"),
        0,
        "the dead letter left the queue once parked"
    );
    // The citizen is told the item is held, not "accepted".
    let (status, page) = status_of(&env, &id).await;
    assert_eq!(status, "parked");
    assert!(page.contains("id=\"parked\""), "{page}");
    assert_eq!(registry.count().await.expect("count"), 0);

    // A permanent reason is not retried by itself; `parked retry` does it.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        registry.count().await.expect("count"),
        0,
        "not retried unasked"
    );
    pietura::parked::retry_id(&registry, env.daemon.bus.as_ref(), &id)
        .await
        .expect("retry");
    let item = env.registered(&id).await;
    // A second retry (an operator's --all) registers nothing twice.
    if registry.parked_item(&id).await.expect("parked").is_some() {
        pietura::parked::retry_id(&registry, env.daemon.bus.as_ref(), &id)
            .await
            .expect("retry again");
    }
    support::wait_until(
        support::WAIT,
        "the registered item is no longer parked",
        || {
            let (registry, id) = (registry.clone(), id.clone());
            async move { !registry.is_parked(&id).await.expect("parked") }
        },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(registry.count().await.expect("count"), 1, "registered once");
    let (status, page) = status_of(&env, &id).await;
    assert_eq!(status, "registered");
    assert!(page.contains(&item.registration_number), "{page}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_parked_and_registered_once_by_retry_on_amqp_postgres() {
    a_dead_letter_is_parked_and_registered_once_by_retry(Backend::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_parked_and_registered_once_by_retry_on_embedded_sqlite() {
    a_dead_letter_is_parked_and_registered_once_by_retry(Backend::Embedded).await;
}

/// (c) The number counters locked (a registry stall) while items are
/// accepted and the daemon is restarted more often than the delivery limit
/// (5): once the lock is gone, every accepted item is registered once, and
/// nothing was dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_during_a_registry_stall_never_burn_the_delivery_limit() {
    use futures::future::join_all;
    let mut env = TestEnv::start(Options::new(Backend::Amqp)).await;
    let mut lock = env
        .daemon
        .registry
        .pool()
        .acquire()
        .await
        .expect("connection")
        .detach();
    sqlx::query("BEGIN")
        .execute(&mut lock)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE registration_counters IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .expect("lock the number counters");

    const ITEMS: usize = 12;
    let receipts = join_all((0..ITEMS).map(|i| {
        let env = &env;
        async move {
            let token = env.form_token().await;
            env.submit(&token, &format!("Stall {i}"), "Lūdzu reģistrēt")
                .await
        }
    }))
    .await;
    let mut tracking = Vec::new();
    for (status, receipt) in receipts {
        assert_eq!(status, 202, "accepted, not yet registered: {receipt}");
        tracking.push(receipt["tracking_id"].as_str().expect("id").to_string());
    }
    for round in 0..6 {
        env = tokio::time::timeout(std::time::Duration::from_secs(60), env.restart())
            .await
            .unwrap_or_else(|_| panic!("restart {round} hung on the stalled registry"));
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert_eq!(env.daemon.registry.count().await.expect("count"), 0);
    // Not one delivery limit burned: nothing dead-lettered, nothing parked.
    assert_eq!(env.daemon.bus.dead_letter_count().await.expect("dead"), 0);
    assert_eq!(env.daemon.registry.parked_count().await.expect("parked"), 0);
    sqlx::query("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("release the lock");

    let mut numbers = std::collections::HashSet::new();
    for id in &tracking {
        numbers.insert(env.registered(id).await.registration_number);
    }
    assert_eq!(
        numbers.len(),
        ITEMS,
        "every accepted item, each its own number"
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        env.daemon.registry.count().await.expect("count"),
        ITEMS as i64,
        "registered once"
    );
    assert_eq!(
        env.daemon.bus.dead_letter_count().await.expect("dead"),
        0,
        "nothing dead-lettered"
    );
    assert_eq!(
        env.daemon.registry.parked_count().await.expect("parked"),
        0,
        "nothing parked"
    );
    env.stop().await;
}

/// A dead letter whose reason may pass by itself (the delivery limit) is
/// parked, then retried by the consumer, without anyone asking.
async fn a_delivery_limit_dead_letter_is_retried_by_itself(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;
    let msg = form_message("Lūdzu reģistrēt pēc restartiem");
    let id = msg.id.to_string();
    dead_letter(&env, &msg.encode(), true).await;
    env.registered(&id).await;
    let registry = env.daemon.registry.clone();
    support::wait_until(support::WAIT, "no longer parked once registered", || {
        let (registry, id) = (registry.clone(), id.clone());
        async move { !registry.is_parked(&id).await.expect("parked") }
    })
    .await;
    assert_eq!(registry.count().await.expect("count"), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_limit_dead_letter_is_retried_by_itself_on_amqp_postgres() {
    a_delivery_limit_dead_letter_is_retried_by_itself(Backend::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_limit_dead_letter_is_retried_by_itself_on_embedded_sqlite() {
    a_delivery_limit_dead_letter_is_retried_by_itself(Backend::Embedded).await;
}

/// `pietura parked list` and `pietura parked retry ID|--all`, the built
/// binary on the daemon's registry (embedded: its data folder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parked_commands_list_and_retry() {
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    let msg = form_message("Lūdzu reģistrēt ar komandu");
    let id = msg.id.to_string();
    dead_letter(&env, &msg.encode(), false).await;
    let registry = env.daemon.registry.clone();
    support::wait_until(support::WAIT, "the dead letter is parked", || {
        let (registry, id) = (registry.clone(), id.clone());
        async move { registry.is_parked(&id).await.expect("parked") }
    })
    .await;
    let data_dir = env.blob_dir().parent().expect("data dir").to_path_buf();
    let pietura = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pietura"))
            .args(args)
            .env("PIETURA__DATA_DIR", &data_dir)
            .env_remove("PIETURA_CONFIG")
            .output()
            .expect("run pietura");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {text}{err}");
        text
    };
    let list = pietura(&["parked", "list"]);
    assert!(
        list.contains(&id) && list.contains("refused by the test"),
        "{list}"
    );
    let listed: Value =
        serde_json::from_str(&pietura(&["parked", "list", "--json"])).expect("JSON");
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed[0]["transient"], false, "{listed}");
    assert_eq!(registry.count().await.expect("count"), 0);
    // The administrators' channels page shows it with the backlogs.
    support::desk::add_accounts(&env).await;
    let admin = support::desk::DeskClient::new(&env);
    let (user, password) = support::desk::ADMIN;
    assert_eq!(admin.sign_in(user, password).await, 303);
    let (status, page) = admin.page("/admin/channels").await;
    assert_eq!(status, 200);
    assert!(page.contains("<td id=\"parked\">1</td>"), "{page}");
    let out = pietura(&["parked", "retry", &id]);
    assert!(out.contains("1 parked item(s) retried"), "{out}");
    env.registered(&id).await;
    // --all again, before or after the row is tidied: nothing twice.
    pietura(&["parked", "retry", "--all"]);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(registry.count().await.expect("count"), 1, "registered once");
    env.stop().await;
}

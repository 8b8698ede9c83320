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

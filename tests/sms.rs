//! The SMS channel's inbound webhooks on a running daemon: each gateway's
//! authentication (forged requests get 403 and register nothing), the
//! gateway's message id as idempotency key, Latvian text intact, and routing
//! by the same rules as every other channel.

mod support;

use pietura::channels::sms::{body_signature, twilio_signature};
use support::{Backend, Options, TestEnv};

const TWILIO_URL: &str = "https://iesniegumi.example.lv/sms/sms-twilio/inbound";
const BUILDING: &str = "Lūdzu izsniegt būvatļauju pirts būvniecībai Subatē. Jānis";

fn options(backend: Backend) -> Options {
    Options {
        channels_from: support::repo_path("tests/fixtures/channels-sms"),
        ..Options::new(backend)
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn post_twilio(
    env: &TestEnv,
    params: &[(String, String)],
    signature: Option<&str>,
) -> (u16, String) {
    let mut req = env
        .http
        .post(format!("{}/sms/sms-twilio/inbound", env.base))
        .form(params);
    if let Some(sig) = signature {
        req = req.header("X-Twilio-Signature", sig);
    }
    let resp = req.send().await.expect("POST twilio webhook");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

async fn twilio_webhooks(backend: Backend) {
    let env = TestEnv::start(options(backend)).await;
    let params = pairs(&[
        ("MessageSid", "SM0001"),
        ("From", "+37129123456"),
        ("To", "+37163400000"),
        ("Body", BUILDING),
        ("NumMedia", "0"),
    ]);
    let good = twilio_signature("test-auth-token", TWILIO_URL, &params);

    // Forged: no signature, a wrong one, a signed body that was altered.
    let (status, _) = post_twilio(&env, &params, None).await;
    assert_eq!(status, 403, "missing signature");
    let (status, _) = post_twilio(&env, &params, Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA=")).await;
    assert_eq!(status, 403, "invalid signature");
    let mut altered = params.clone();
    altered[3].1 = "Lūdzu pārskaitīt naudu uz kontu".into();
    let (status, _) = post_twilio(&env, &altered, Some(&good)).await;
    assert_eq!(status, 403, "altered body");
    let wrong_token = twilio_signature("another-token", TWILIO_URL, &params);
    let (status, _) = post_twilio(&env, &params, Some(&wrong_token)).await;
    assert_eq!(status, 403, "signed with another token");
    assert_eq!(
        env.daemon.registry.count().await.expect("count"),
        0,
        "nothing registered"
    );

    // Genuine, twice (the provider retries): one item.
    for _ in 0..2 {
        let (status, body) = post_twilio(&env, &params, Some(&good)).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("<Response>"), "TwiML answer: {body}");
    }
    let item = env.registered_key("sms:sms-twilio:SM0001").await;
    support::assert_sms_routed(&item, "+37129123456", "buvvalde");
    let message = env.message_of(&item).await;
    assert_eq!(message.body, BUILDING, "diacritics intact");
    assert_eq!(message.metadata["sms"]["gateway_id"], "SM0001");
    env.assert_stored_message_matches_schema(&item.id).await;
    // A late retry after registration is answered from the registry.
    let (status, _) = post_twilio(&env, &params, Some(&good)).await;
    assert_eq!(status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        env.daemon.registry.count().await.expect("count"),
        1,
        "registered once"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_webhooks_amqp_postgres() {
    twilio_webhooks(Backend::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_webhooks_embedded_sqlite() {
    twilio_webhooks(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kannel_and_json_callbacks_are_authenticated_and_checked() {
    let env = TestEnv::start(options(Backend::Embedded)).await;
    let get = |path: String| {
        let http = env.http.clone();
        async move {
            let resp = http.get(path).send().await.expect("GET");
            (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            )
        }
    };
    let kannel = |secret: &str, id: &str, from: &str, text: &str| {
        format!(
            "{}/sms/sms-kannel/inbound?secret={secret}&id={id}&from={from}&to=1888&text={text}",
            env.base
        )
    };
    let text = "B%C5%ABvat%C4%BCauja+kl%C4%93tij"; // "Būvatļauja klētij"

    let (status, body) = get(kannel("wrong", "k1", "37129123456", text)).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = get(format!(
        "{}/sms/sms-kannel-remote/inbound?secret=kannel-secret&id=k1&from=37129123456&text={text}",
        env.base
    ))
    .await;
    assert_eq!(status, 403, "loopback is not the listed smsbox: {body}");
    let (status, body) = get(kannel("kannel-secret", "k2", "37129123456", "B%C5")).await;
    assert_eq!(status, 400, "invalid UTF-8: {body}");
    assert!(body.contains("UTF-8"), "{body}");
    let (status, body) = get(kannel("kannel-secret", "k3", "%3Cscript%3E", text)).await;
    assert_eq!(status, 400, "not a sender: {body}");
    let (status, body) = get(format!(
        "{}/sms/sms-unconfigured/inbound?secret=x&id=k4&from=37129123456&text={text}",
        env.base
    ))
    .await;
    assert_eq!(
        status, 503,
        "missing secret: the gateway keeps the SMS: {body}"
    );
    assert_eq!(env.daemon.registry.count().await.expect("count"), 0);

    let (status, body) = get(kannel("kannel-secret", "k5", "37129123456", text)).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let item = env.registered_key("sms:sms-kannel:k5").await;
    assert_eq!(item.sender_phone.as_deref(), Some("+37129123456"));
    assert_eq!(item.unit_id.as_deref(), Some("buvvalde"));
    // A service's short number: registered, but it can never be answered.
    let (status, _) = get(kannel("kannel-secret", "k6", "1643", text)).await;
    assert_eq!(status, 200);
    let short = env.registered_key("sms:sms-kannel:k6").await;
    assert_eq!(short.sender_phone, None);
    let message = env.message_of(&short).await;
    assert_eq!(message.metadata["sms"]["answer_by_sms"], false);
    assert_eq!(message.metadata["sms"]["from"], "1643");

    let body = serde_json::json!({
        "id": "j1", "from": "+37126000000", "text": "Sveiki, kur var pieteikt bērnu bērnudārzā?"
    })
    .to_string();
    let send = |signature: String, body: String| {
        let http = env.http.clone();
        let url = format!("{}/sms/sms-json/inbound", env.base);
        async move {
            let resp = http
                .post(url)
                .header("content-type", "application/json")
                .header("X-Signature-256", signature)
                .body(body)
                .send()
                .await
                .expect("POST json");
            (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            )
        }
    };
    let (status, _) = send(body_signature("other", body.as_bytes()), body.clone()).await;
    assert_eq!(status, 403);
    let (status, answer) = send(body_signature("json-secret", body.as_bytes()), body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("tracking_id"), "{answer}");
    let item = env.registered_key("sms:sms-json:j1").await;
    assert_eq!(item.sender_phone.as_deref(), Some("+37126000000"));
    assert_eq!(env.daemon.registry.count().await.expect("count"), 3);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kannel_text_is_decoded_by_its_coding_and_binary_or_empty_sms_go_to_review() {
    let env = TestEnv::start(options(Backend::Embedded)).await;
    let get = |id: &str, params: &str| {
        let url = format!(
            "{}/sms/sms-kannel/inbound?secret=kannel-secret&id={id}&from=37129123456&to=1888&{params}",
            env.base
        );
        let http = env.http.clone();
        async move {
            let resp = http.get(url).send().await.expect("GET");
            (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            )
        }
    };
    // UCS-2 that mo-recode could not turn into UTF-8: UTF-16BE bytes.
    let ucs2: String = "Būvatļauja klētij"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .map(|b| format!("%{b:02X}"))
        .collect();
    let (status, body) = get("c2", &format!("coding=2&charset=UTF-16BE&text={ucs2}")).await;
    assert_eq!(status, 200, "{body}");
    let (item, message) = env.registered_message("sms:sms-kannel:c2").await;
    assert_eq!(message.body, "Būvatļauja klētij");
    assert_eq!(item.unit_id.as_deref(), Some("buvvalde"));

    // 8-bit data (concatenated parts Kannel joined), not valid UTF-8:
    // registered, sent to review with the reason, the bytes kept exactly.
    let bytes: &[u8] = &[0x05, 0x00, 0x03, 0xFF, 0x62, 0xC5, 0xAB, 0x76, 0x00, 0x01];
    let data: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
    let (status, body) = get("c1", &format!("coding=1&charset=8-BIT&text={data}")).await;
    assert_eq!(status, 200, "{body}");
    let (item, message) = env.registered_message("sms:sms-kannel:c1").await;
    assert_eq!(item.state, "review");
    assert!(
        item.review_reason
            .as_deref()
            .unwrap_or("")
            .starts_with("binary SMS: 8-bit data"),
        "{item:?}"
    );
    assert_eq!(message.body, "");
    assert_eq!(message.attachments.len(), 1, "{message:?}");
    let kept = pietura::blobs::BlobStore::open(env.blob_dir())
        .expect("blobs")
        .get(&message.attachments[0].sha256)
        .await
        .expect("blob");
    assert_eq!(kept, bytes);
    assert_eq!(
        message.attachments[0].content_type,
        "application/octet-stream"
    );

    // An older get-url without the coding: control characters are not routed text.
    let (status, body) = get("c0", "text=%01%02B%C5%ABvat%C4%BCauja%03").await;
    assert_eq!(status, 200, "{body}");
    let (item, message) = env.registered_message("sms:sms-kannel:c0").await;
    assert_eq!(item.state, "review");
    assert!(
        item.review_reason
            .as_deref()
            .unwrap_or("")
            .contains("coding=%c"),
        "{item:?}"
    );
    assert_eq!(message.attachments.len(), 1);

    // An empty SMS says so.
    let (status, body) = get("e0", "coding=0&charset=UTF-8&text=").await;
    assert_eq!(status, 200, "{body}");
    let item = env.registered_key("sms:sms-kannel:e0").await;
    assert_eq!(item.state, "review");
    assert_eq!(
        item.review_reason.as_deref(),
        Some(pietura::channels::sms::REASON_EMPTY)
    );
    // A coding that does not exist is refused.
    let (status, _) = get("x9", "coding=7&text=abc").await;
    assert_eq!(status, 400);
    env.stop().await;
}

async fn post_signed(env: &TestEnv, channel: &str, body: serde_json::Value) -> u16 {
    let body = body.to_string();
    env.http
        .post(format!("{}/sms/{channel}/inbound", env.base))
        .header("content-type", "application/json")
        .header(
            "X-Signature-256",
            body_signature("json-secret", body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("POST json")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_and_messages_within_the_window_become_one_item() {
    let env = TestEnv::start(options(Backend::Amqp)).await;
    // A concatenated SMS whose provider does not join it, parts out of order
    // and the first part retried.
    let part = |id: &str, no: u32, text: &str| {
        serde_json::json!({
            "id": id, "from": "+37129123456", "text": text,
            "concat": { "ref": "a7", "part": no, "parts": 2 }
        })
    };
    assert_eq!(
        post_signed(&env, "sms-json", part("p2", 2, "ļauju pirts būvniecībai.")).await,
        200
    );
    assert_eq!(
        post_signed(&env, "sms-json", part("p1", 1, "Lūdzu izsniegt būvat")).await,
        200
    );
    assert_eq!(
        post_signed(&env, "sms-json", part("p1", 1, "Lūdzu izsniegt būvat")).await,
        200
    );
    let bad = serde_json::json!({
        "id": "p9", "from": "+37129123456", "text": "x",
        "concat": { "ref": "a7", "part": 3, "parts": 2 }
    });
    assert_eq!(post_signed(&env, "sms-json", bad).await, 400);
    let (joined, message) = env.registered_message("sms:sms-json:p1").await;
    assert_eq!(message.body, "Lūdzu izsniegt būvatļauju pirts būvniecībai.");
    assert_eq!(
        joined.unit_id.as_deref(),
        Some("buvvalde"),
        "the joined text is routed"
    );
    assert_eq!(
        message.metadata["sms"]["joined_gateway_ids"],
        serde_json::json!(["p1", "p2"])
    );
    // A part that ends on a space keeps it: parts are joined as sent.
    let spaced = |id: &str, no: u32, text: &str| {
        serde_json::json!({
            "id": id, "from": "+37129123456", "text": text,
            "concat": { "ref": "b8", "part": no, "parts": 2 }
        })
    };
    assert_eq!(
        post_signed(&env, "sms-json", spaced("s1", 1, "Lūdzu izsniegt ")).await,
        200
    );
    assert_eq!(
        post_signed(&env, "sms-json", spaced("s2", 2, "būvatļauju klētij.")).await,
        200
    );
    let (_, message) = env.registered_message("sms:sms-json:s1").await;
    assert_eq!(message.body, "Lūdzu izsniegt būvatļauju klētij.");

    // Two SMS from one number within the window: one item, both texts.
    let sms = |id: &str, text: &str| serde_json::json!({ "id": id, "from": "+37126000000", "text": text });
    assert_eq!(
        post_signed(&env, "sms-json-window", sms("w1", "Sveiki!")).await,
        200
    );
    assert_eq!(
        post_signed(
            &env,
            "sms-json-window",
            sms("w2", "Kur pieteikt bērnu bērnudārzā?")
        )
        .await,
        200
    );
    let (_, message) = env.registered_message("sms:sms-json-window:w1").await;
    assert_eq!(message.body, "Sveiki!\n\nKur pieteikt bērnu bērnudārzā?");
    // The gateway retries the second SMS after the group was registered:
    // it joins nothing and registers nothing (counted below).
    assert_eq!(
        post_signed(
            &env,
            "sms-json-window",
            sms("w2", "Kur pieteikt bērnu bērnudārzā?")
        )
        .await,
        200
    );
    // Long enough for a wrongly held retry to pass the window and the flush.
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    assert_eq!(
        env.daemon.registry.count().await.expect("count"),
        3,
        "three items, not seven"
    );
    env.stop().await;
}

/// Whether every held SMS of `channel` with these gateway ids is marked published.
async fn all_marked(env: &TestEnv, channel: &str, ids: &[&str]) -> bool {
    let mut marked = 0;
    for id in ids {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM sms_pending WHERE channel_instance = $1 AND gateway_id = $2 \
             AND published_at IS NOT NULL",
        )
        .bind(channel)
        .bind(*id)
        .fetch_one(env.daemon.registry.pool())
        .await
        .expect("held SMS");
        marked += n;
    }
    marked == ids.len() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_held_after_its_group_was_published_is_registered_with_its_own_key() {
    const CHANNEL: &str = "sms-json-window";
    let env = TestEnv::start(options(Backend::Amqp)).await;
    let sms = |id: &str, text: &str| serde_json::json!({ "id": id, "from": "+37126111111", "text": text });
    assert_eq!(post_signed(&env, CHANNEL, sms("c1", "Sveiki!")).await, 200);
    let first = env.registered_key("sms:sms-json-window:c1").await;
    support::wait_until(support::WAIT, "c1 marked published", || {
        all_marked(&env, CHANNEL, &["c1"])
    })
    .await;
    // The crash window: the group was published, the daemon died before
    // marking it (its mark undone here), and meanwhile another SMS from
    // the same number was held (as the webhook holds it, in one
    // transaction with the undoing, so no flush runs between).
    let pool = env.daemon.registry.pool();
    let mut tx = pool.begin().await.expect("transaction");
    let (group, from): (String, String) = sqlx::query_as(
        "UPDATE sms_pending SET published_at = NULL WHERE channel_instance = $1 \
         AND gateway_id = 'c1' RETURNING group_key, from_address",
    )
    .bind(CHANNEL)
    .fetch_one(&mut *tx)
    .await
    .expect("undo the mark");
    sqlx::query(
        "INSERT INTO sms_pending (channel_instance, gateway_id, group_key, from_address, \
         to_address, text, part_no, part_count, received_at) \
         VALUES ($1, 'c2', $2, $3, NULL, $4, 1, 1, $5)",
    )
    .bind(CHANNEL)
    .bind(&group)
    .bind(&from)
    .bind("Kur pieteikt bērnu bērnudārzā?")
    .bind(pietura::registry::db_time(chrono::Utc::now()))
    .execute(&mut *tx)
    .await
    .expect("hold c2");
    tx.commit().await.expect("commit");

    support::wait_until(support::WAIT, "c1 and c2 marked published", || {
        all_marked(&env, CHANNEL, &["c1", "c2"])
    })
    .await;
    // c2's text reaches the registry under a key of its own; c1's group
    // is published again as it was (recognised, not registered twice).
    let registry = &env.daemon.registry;
    let mut found = None;
    for _ in 0..100 {
        found = registry
            .find_by_key("sms:sms-json-window:c2")
            .await
            .expect("lookup");
        if found.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let bodies: Vec<String> = {
        let mut out = Vec::new();
        for item in registry
            .list(&pietura::registry::ItemFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list")
        {
            out.push(env.message_of(&item).await.body);
        }
        out
    };
    let second = found.unwrap_or_else(|| {
        panic!("the SMS held after its group was published never reached the registry: {bodies:?}")
    });
    assert_ne!(second.id, first.id);
    assert_eq!(
        env.message_of(&second).await.body,
        "Kur pieteikt bērnu bērnudārzā?"
    );
    assert_eq!(env.message_of(&first).await.body, "Sveiki!");
    assert_eq!(registry.count().await.expect("count"), 2, "{bodies:?}");
    env.stop().await;
}

/// What a provider's API received: (path, authorization, body).
type Captured = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>;

/// A stand-in for the providers' sending APIs, built from their documented
/// request and answer shapes (Twilio's Messages resource with its
/// `num_segments`; our signed JSON with `parts`): it records each request
/// and answers 201, saying it sends one part.
async fn fake_provider() -> (String, Captured) {
    use axum::extract::State;
    let captured: Captured = Default::default();
    let app = axum::Router::new()
        .fallback(
            |State(c): State<Captured>,
             uri: axum::http::Uri,
             headers: axum::http::HeaderMap,
             body: String| async move {
                let auth = headers
                    .get("authorization")
                    .or_else(|| headers.get("x-signature-256"))
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                c.lock()
                    .expect("lock")
                    .push((uri.path().to_string(), auth, body));
                (
                    axum::http::StatusCode::CREATED,
                    "{\"sid\":\"SMxx\",\"status\":\"queued\",\"num_segments\":\"1\",\"parts\":1}",
                )
            },
        )
        .with_state(captured.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), captured)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_go_out_through_twilio_and_json_apis_within_the_per_number_limit() {
    let (provider, captured) = fake_provider().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("sms-twilio.toml"),
        format!(
            "type = \"sms\"\nid = \"sms-twilio\"\nnumber = \"+37163400000\"\n[gateway]\nkind = \"twilio\"\n\
             auth_token = \"test-auth-token\"\npublic_url = \"{TWILIO_URL}\"\naccount_sid = \"AC123\"\napi_base = \"{provider}\"\n\
             [reply]\nlanguage = \"en\"\nmax_per_number_per_day = 1\n"
        ),
    )
    .expect("twilio channel");
    std::fs::write(
        dir.path().join("sms-json.toml"),
        format!(
            "type = \"sms\"\nid = \"sms-json\"\n[gateway]\nkind = \"json_hmac\"\nsecret = \"json-secret\"\n\
             send_url = \"{provider}/send\"\n"
        ),
    )
    .expect("json channel");
    let env = TestEnv::start(Options {
        channels_from: dir.path().to_path_buf(),
        ..Options::new(Backend::Embedded)
    })
    .await;

    // Two SMS from one number through Twilio: the limit is one answer a day.
    for sid in ["SM1", "SM2"] {
        let params = pairs(&[
            ("MessageSid", sid),
            ("From", "+37129123456"),
            ("Body", BUILDING),
        ]);
        let sig = twilio_signature("test-auth-token", TWILIO_URL, &params);
        assert_eq!(post_twilio(&env, &params, Some(&sig)).await.0, 200);
        env.registered_key(&format!("sms:sms-twilio:{sid}")).await;
    }
    // One through the JSON gateway.
    assert_eq!(
        post_signed(&env, "sms-json", serde_json::json!({ "id": "j1", "from": "+37126000000", "text": "Kur pieteikt bērnu bērnudārzā?" })).await,
        200
    );
    let json_item = env.registered_key("sms:sms-json:j1").await;

    // Answers are sent within a few seconds.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while captured.lock().expect("lock").len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let got = captured.lock().expect("lock").clone();
    assert_eq!(
        got.len(),
        2,
        "one Twilio answer (limit 1 per number) and one JSON answer: {got:?}"
    );
    let twilio = got
        .iter()
        .find(|c| c.0 == "/2010-04-01/Accounts/AC123/Messages.json")
        .expect("Twilio call");
    assert!(
        twilio.1.starts_with("Basic "),
        "basic auth with the account: {twilio:?}"
    );
    assert!(
        twilio.2.contains("To=%2B37129123456") && twilio.2.contains("Registered+No."),
        "{twilio:?}"
    );
    let json = got.iter().find(|c| c.0 == "/send").expect("JSON call");
    assert_eq!(
        json.1,
        body_signature("json-secret", json.2.as_bytes()),
        "signed like the callbacks"
    );
    let sent: serde_json::Value = serde_json::from_str(&json.2).expect("JSON answer");
    assert_eq!(sent["to"], "+37126000000");
    assert!(
        sent["text"]
            .as_str()
            .unwrap_or("")
            .contains(&json_item.registration_number),
        "{sent}"
    );

    // The JSON gateway says it sends one part of the answer's two: recorded
    // on the answer (and warned); Twilio's one-part answer is whole.
    let replied = |id: String| {
        let registry = env.daemon.registry.clone();
        async move {
            registry
                .audit_of(&id)
                .await
                .expect("audit")
                .into_iter()
                .find(|l| l.2 == "replied")
                .map(|l| l.3)
                .unwrap_or_default()
        }
    };
    let detail = replied(json_item.id.clone()).await;
    assert!(
        detail.contains("\"gateway_parts\":1") && detail.contains("cut off"),
        "{detail}"
    );

    // The second Twilio item's answer is recorded as not sent, with why.
    let second = env.registered_key("sms:sms-twilio:SM2").await;
    let first = env.registered_key("sms:sms-twilio:SM1").await;
    let lines = |id: String| {
        let registry = env.daemon.registry.clone();
        async move { registry.audit_of(&id).await.expect("audit") }
    };
    let (a, b) = (
        lines(first.id.clone()).await,
        lines(second.id.clone()).await,
    );
    let not_sent = a
        .iter()
        .chain(b.iter())
        .filter(|l| l.2 == "reply_not_sent")
        .count();
    let replied = a
        .iter()
        .chain(b.iter())
        .filter(|l| l.2 == "replied")
        .count();
    assert_eq!((replied, not_sent), (1, 1), "{a:?}\n{b:?}");
    assert!(
        a.iter()
            .chain(b.iter())
            .any(|l| l.3.contains("max_per_number_per_day")),
        "the reason is recorded"
    );
    let whole = a
        .iter()
        .chain(b.iter())
        .find(|l| l.2 == "replied")
        .map(|l| l.3.clone())
        .unwrap_or_default();
    assert!(
        whole.contains("\"gateway_parts\":1") && !whole.contains("cut off"),
        "{whole}"
    );
    env.stop().await;
}

//! The e-adrese channel against the DIV stand-in (tests/support/div/), which
//! checks the protocol with its own code: mutual TLS with a test CA, the
//! WS-Security and XAdES signatures verified by xmlsec, attachments
//! encrypted as the public description has them (RSA-OAEP wrapped AES-CBC
//! key, gzip), and confirm semantics (a message not confirmed is served again).

mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use pietura::eadrese::soap::Operation;
use pietura::eadrese::{Credentials, DivClient, DivEndpoint, DivError, Outbound};
use pietura::message::FormalStatus;
use serde_json::json;
use support::div::{DivStandin, INSTITUTION};
use support::{Backend, Options, TestEnv};

const LATVIAN: &str = "Lūdzu izsniegt būvatļauju: ā č ē ģ ī ķ ļ ņ š ū ž — Ādažu ielā 7.";
const CITIZEN: &str = "_PRIVATE@01019912345";
const SUB_ADDRESS: &str = "_DEFAULT@90000000001-BUVVALDE";

/// A daemon whose one channel is the stand-in's institution.
async fn daemon(
    standin: &DivStandin,
    dir: &std::path::Path,
    extra: &str,
    backend: Backend,
) -> TestEnv {
    let extra = format!(
        "directory_sync_minutes = 0\n{extra}\n[sub_addresses]\n\"{SUB_ADDRESS}\" = \"buvvalde\"\n"
    );
    let channels = standin.channels_dir(dir, &standin.cert, &standin.key, &extra);
    TestEnv::start(Options {
        channels_from: channels,
        ..Options::new(backend)
    })
    .await
}

fn client(standin: &DivStandin, cert: &std::path::Path, key: &std::path::Path) -> DivClient {
    let creds = Credentials::from_pem(
        &std::fs::read_to_string(cert).expect("cert"),
        &std::fs::read_to_string(key).expect("key"),
    )
    .expect("credentials");
    DivClient::new(
        DivEndpoint {
            url: standin.url.clone(),
            address: INSTITUTION.into(),
            ca_file: Some(standin.ca.clone()),
            timeout: Duration::from_secs(30),
        },
        creds,
    )
    .expect("client")
}

async fn wait_state(
    standin: &DivStandin,
    what: &str,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let state = standin.state().await;
        if done(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stand-in: {what} did not happen; state {state:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_latvian_message_with_two_encrypted_attachments_is_registered_once_confirmed_and_acknowledged()
 {
    let dir = tempfile::tempdir().expect("temp dir");
    // Sections of 1 KiB: the larger file comes through GetAttachmentSection.
    let standin = DivStandin::start(dir.path(), 1024);
    let plan: Vec<u8> = (0..6000u32).flat_map(|i| i.to_le_bytes()).collect();
    let letter = format!("{LATVIAN}\n").repeat(20).into_bytes();
    let div_id = standin
        .add_message(json!({
            "sender": CITIZEN,
            "recipient": SUB_ADDRESS,
            "title": "Būvatļauja pirtij",
            "description": LATVIAN,
            "attachments": [
                {"name": "iesniegums.txt", "mime": "text/plain", "content_b64": B64.encode(&letter), "compress": true},
                {"name": "plāns.bin", "mime": "application/octet-stream", "content_b64": B64.encode(&plan)},
            ],
        }))
        .await;
    // Production's RabbitMQ and PostgreSQL (the other tests run on SQLite).
    let env = daemon(&standin, dir.path(), "", Backend::Amqp).await;

    let key = format!("e_adrese:{div_id}");
    let (item, msg) = env.registered_message(&key).await;
    assert_eq!(msg.subject.as_deref(), Some("Būvatļauja pirtij"));
    assert_eq!(msg.body, LATVIAN);
    assert_eq!(msg.sender.e_address.as_deref(), Some(CITIZEN));
    assert_eq!(
        msg.formal_status,
        Some(FormalStatus::AuthenticatedByStatePortal)
    );
    assert_eq!(
        item.unit_id.as_deref(),
        Some("buvvalde"),
        "routed by sub-address"
    );
    assert_eq!(msg.attachments.len(), 2);
    for (a, want) in msg.attachments.iter().zip([&letter, &plan]) {
        let stored = pietura::blobs::BlobStore::open(env.blob_dir())
            .expect("blobs")
            .get(&a.sha256)
            .await
            .expect("blob");
        assert_eq!(&stored, want, "{} decrypted as sent", a.filename);
    }
    assert_eq!(msg.attachments[1].filename, "plāns.bin");
    env.assert_stored_message_matches_schema(&item.id).await;

    // Confirmed once it was handed on, and never served again.
    let state = wait_state(&standin, "the confirm", |s| {
        s["confirmed"].as_array().is_some_and(|c| c.len() == 1)
    })
    .await;
    assert_eq!(state["served"][&div_id], 1, "{state:#}");

    // The acknowledgement: to the citizen's e-adrese, its XAdES signature
    // verified by the stand-in, the delivery confirmation recorded.
    let state = wait_state(&standin, "the acknowledgement", |s| {
        s["sent"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let sent = &state["sent"][0];
    assert_eq!(sent["recipients"], json!([CITIZEN]));
    assert_eq!(sent["signature_ok"], true);
    assert!(
        sent["description"]
            .as_str()
            .is_some_and(|d| d.contains(&item.registration_number)),
        "{sent:#}"
    );
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let record = loop {
        if let Some(r) = env
            .daemon
            .registry
            .eadrese_sent(&item.id)
            .await
            .expect("lookup")
            .filter(|r| r.delivery_status.is_some())
        {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no confirmation recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        record.div_message_id,
        sent["message_id"].as_str().unwrap_or("")
    );
    assert_eq!(record.delivery_status.as_deref(), Some("Delivered"));
    let sent_day = pietura::deadline::local_date(
        pietura::registry::parse_db_time(&record.sent_at).expect("sent_at"),
    );
    let rules = env.daemon.rules.load();
    assert_eq!(
        record.notified_on,
        rules.deadlines.working_days_after(sent_day, 2).to_string(),
        "notified on the second working day after sending"
    );
    assert!(
        state["refusals"].as_array().is_some_and(|r| r.is_empty()),
        "{state:#}"
    );

    // The unit's answer goes back to the citizen's e-adrese, signed, and
    // closes the item with the outgoing number.
    let delivery = pietura::answers::delivery_for(&msg);
    assert_eq!(delivery.kind, pietura::answers::DeliveryKind::EAdrese);
    let pattern = pietura::registry::numbering::Pattern::parse("IZ-{year}/{seq}").expect("pattern");
    let answer_text = "Būvatļauja izsniegta; to var saņemt Ādažu ielā 7.";
    let answer = env
        .daemon
        .registry
        .register_answer(&pietura::registry::answers::NewAnswer {
            item: &item.id,
            body: answer_text,
            document: None,
            delivery: delivery.kind.as_str(),
            send_via: delivery
                .send_via
                .as_ref()
                .map(|(c, a)| (c.as_str(), a.as_str())),
            actor: "janis",
            pattern: &pattern,
            unit_index: "",
        })
        .await
        .expect("answer registered");
    let state = wait_state(&standin, "the answer", |s| {
        s["sent"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    let sent = &state["sent"][1];
    assert_eq!(sent["recipients"], json!([CITIZEN]));
    assert_eq!(sent["signature_ok"], true, "{sent:#}");
    assert_eq!(sent["description"], answer_text, "{sent:#}");
    assert!(
        sent["title"]
            .as_str()
            .is_some_and(|t| t.contains(&answer.number)),
        "{sent:#}"
    );
    let closed = env
        .daemon
        .registry
        .find(&item.id)
        .await
        .expect("lookup")
        .expect("the item");
    assert!(
        closed.closed_at.is_some(),
        "closed by the answer: {closed:?}"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_confirm_that_fails_after_publishing_registers_nothing_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let standin = DivStandin::start(dir.path(), 64 * 1024);
    // The first two confirms fail after the message was published: it is
    // served again and published again.
    standin.faults(json!({"fail_confirm": 2})).await;
    let div_id = standin
        .add_message(json!({"sender": CITIZEN, "title": "Jautājums", "description": LATVIAN}))
        .await;
    let env = daemon(
        &standin,
        dir.path(),
        "acknowledge = false",
        Backend::Embedded,
    )
    .await;
    let item = env.registered_key(&format!("e_adrese:{div_id}")).await;
    let state = wait_state(&standin, "the confirm", |s| {
        s["confirmed"].as_array().is_some_and(|c| c.len() == 1)
    })
    .await;
    assert_eq!(state["served"][&div_id], 3, "{state:#}");
    // Every publish reached the engine before the confirm that followed it.
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM items WHERE channel_kind = 'e_adrese'")
            .fetch_one(env.daemon.registry.pool())
            .await
            .expect("count");
    assert_eq!(count, 1, "registered once ({})", item.registration_number);
    env.stop().await;
}

#[tokio::test]
async fn a_file_that_does_not_open_goes_to_review_with_the_message_confirmed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let standin = DivStandin::start(dir.path(), 64 * 1024);
    let good = "Pielikums, kas atveras.".repeat(10);
    let div_id = standin
        .add_message(json!({
            "sender": CITIZEN,
            "title": "Iesniegums",
            "description": LATVIAN,
            "attachments": [
                {"name": "bojāts.pdf", "mime": "application/pdf", "content_b64": B64.encode([7u8; 4000]), "corrupt": true},
                {"name": "labs.txt", "mime": "text/plain", "content_b64": B64.encode(good.as_bytes())},
            ],
        }))
        .await;
    let env = daemon(
        &standin,
        dir.path(),
        "acknowledge = false",
        Backend::Embedded,
    )
    .await;
    let (item, msg) = env.registered_message(&format!("e_adrese:{div_id}")).await;
    let reason = item.review_reason.clone().unwrap_or_default();
    assert!(
        reason.contains("bojāts.pdf") && reason.contains("could not be opened"),
        "{reason}"
    );
    assert_eq!(item.unit_id, None, "for the records officer");
    assert_eq!(msg.attachments.len(), 1);
    assert_eq!(msg.attachments[0].filename, "labs.txt");
    wait_state(&standin, "the confirm", |s| {
        s["confirmed"].as_array().is_some_and(|c| c.len() == 1)
    })
    .await;
    env.stop().await;
}

#[tokio::test]
async fn the_stand_in_refuses_a_bad_signature_and_a_wrong_client_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let standin = DivStandin::start(dir.path(), 64 * 1024);
    let good = client(&standin, &standin.cert, &standin.key);

    // Signed as we sign: accepted.
    assert_eq!(
        good.message_list().await.expect("list"),
        Vec::<String>::new()
    );

    // One character of the signed Timestamp changed: refused.
    let request = good
        .signed_request(Operation::GetMessageList, "")
        .expect("request");
    let tampered = request.replacen("<u:Created>2", "<u:Created>1", 1);
    assert_ne!(tampered, request);
    match good.post(Operation::GetMessageList, tampered).await {
        Err(DivError::Fault { reason, .. }) => {
            assert!(reason.contains("does not verify"), "{reason}")
        }
        other => panic!("a tampered WS-Security signature was not refused: {other:?}"),
    }

    // A SendMessage whose signed SenderDocument was changed: refused.
    let out = Outbound {
        recipient: CITIZEN.into(),
        title: "Atbilde".into(),
        description: "Jūsu iesniegums reģistrēts.".into(),
        sender_ref: "1/2026/1".into(),
    };
    let request = good
        .send_request(&out, chrono::Utc::now())
        .expect("request");
    let tampered = request.replacen("reģistrēts", "noraidīts", 1);
    assert_ne!(tampered, request);
    match good.post(Operation::SendMessage, tampered).await {
        Err(DivError::Fault { reason, .. }) => {
            assert!(
                reason.contains("XAdES signature does not verify"),
                "{reason}"
            )
        }
        other => panic!("a tampered XAdES signature was not refused: {other:?}"),
    }
    // The same request untouched is accepted.
    good.post(Operation::SendMessage, request)
        .await
        .expect("a correctly signed SendMessage");

    // Another certificate of the same CA: a connection, but refused.
    let (other_cert, other_key) = support::make_client_certificate(dir.path(), "cits");
    match client(&standin, &other_cert, &other_key)
        .message_list()
        .await
    {
        Err(DivError::Fault { reason, .. }) => {
            assert!(reason.contains("not registered"), "{reason}")
        }
        other => panic!("a foreign certificate was not refused: {other:?}"),
    }
    // A certificate of another CA: no TLS connection at all.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    support::make_certificates(&elsewhere);
    let (stray_cert, stray_key) = support::make_client_certificate(&elsewhere, "svesais");
    let err = client(&standin, &stray_cert, &stray_key)
        .message_list()
        .await
        .expect_err("a certificate of another CA");
    assert!(err.is_transient(), "a TLS refusal: {err}");
    let state = standin.state().await;
    assert_eq!(state["sent"].as_array().map(Vec::len), Some(1), "{state:#}");
}

#[tokio::test]
async fn pietura_eadrese_check_validates_the_certificate_and_lists_without_confirming() {
    let dir = tempfile::tempdir().expect("temp dir");
    let standin = DivStandin::start(dir.path(), 64 * 1024);
    let div_id = standin
        .add_message(json!({"sender": CITIZEN, "title": "Jautājums", "description": LATVIAN}))
        .await;
    let channels = standin.channels_dir(dir.path(), &standin.cert, &standin.key, "");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pietura"))
        .args(["eadrese", "check"])
        .env("PIETURA__CHANNELS__DIR", &channels)
        .env("PIETURA__DATA_DIR", dir.path().join("data"))
        .env_remove("PIETURA_LOG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run pietura");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("CertValidate: certificate accepted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("GetMessageList: 1 message(s) waiting"),
        "{stdout}"
    );
    // The exchange is logged, the citizen's personas kods is not.
    assert!(stderr.contains("GetMessageListOutput"), "{stderr}");
    assert!(stderr.contains(&div_id), "{stderr}");
    assert!(!stderr.contains("01019912345"), "{stderr}");
    let state = standin.state().await;
    assert_eq!(state["confirmed"], json!([]), "check confirms nothing");
}

#[tokio::test]
async fn the_addressee_directory_is_synced_whole_then_by_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let standin = DivStandin::start(dir.path(), 64 * 1024);
    standin
        .add_addressees(json!([
            {"e_address": "_PRIVATE@01019912345", "active": true},
            {"e_address": "_PRIVATE@02029912345", "active": false},
        ]))
        .await;
    let env = daemon(
        &standin,
        dir.path(),
        "acknowledge = false",
        Backend::Embedded,
    )
    .await;
    let registry = &env.daemon.registry;
    let div = client(&standin, &standin.cert, &standin.key);
    let sync = || async {
        let deadline = tokio::time::Instant::now() + support::WAIT;
        loop {
            if let Some(n) = pietura::eadrese::directory::sync_due(&div, registry, "e-adrese", 0)
                .await
                .expect("sync")
            {
                return n;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sync never came due"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let active = |a: &'static str| async move {
        pietura::eadrese::directory::has_active_eadrese(registry, a)
            .await
            .expect("lookup")
    };
    assert_eq!(sync().await, 2);
    assert!(active("_PRIVATE@01019912345").await);
    assert!(!active("_PRIVATE@02029912345").await);
    assert!(!active("_PRIVATE@03039912345").await);

    standin
        .add_addressees(json!([
            {"e_address": "_PRIVATE@02029912345", "active": true},
            {"e_address": "_PRIVATE@01019912345", "active": false},
        ]))
        .await;
    // Only the changes since the last token come.
    assert_eq!(sync().await, 2);
    assert!(!active("_PRIVATE@01019912345").await);
    assert!(active("_PRIVATE@02029912345").await);
    assert_eq!(sync().await, 0);
    env.stop().await;
}

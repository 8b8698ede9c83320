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
    // No document uploaded: the letter as a PDF, as an e-mail answer has it.
    let files = sent["files"].as_array().expect("files");
    assert_eq!(files.len(), 1, "{sent:#}");
    assert_eq!(files[0]["mime_type"], "application/pdf");
    assert_eq!(files[0]["digest_checked"], true);
    let letter_pdf = B64
        .decode(files[0]["content_b64"].as_str().unwrap_or(""))
        .expect("base64");
    assert!(letter_pdf.starts_with(b"%PDF"), "a PDF");
    assert_eq!(
        files[0]["name"],
        format!("{}.pdf", answer.number.replace('/', "-"))
    );
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

/// Registers an answer to `item` as the desk does, with `document` (bytes,
/// name) uploaded; its outgoing number.
async fn answer_with_document(
    env: &TestEnv,
    item: &pietura::registry::ItemSummary,
    msg: &pietura::message::IntakeMessage,
    body: &str,
    document: Option<(&[u8], &str)>,
) -> String {
    let stored = match document {
        Some((bytes, _)) => Some(
            pietura::blobs::BlobStore::open(env.blob_dir())
                .expect("blobs")
                .put(bytes)
                .await
                .expect("stored"),
        ),
        None => None,
    };
    let delivery = pietura::answers::delivery_for(msg);
    assert_eq!(delivery.kind, pietura::answers::DeliveryKind::EAdrese);
    let pattern = pietura::registry::numbering::Pattern::parse("IZ-{year}/{seq}").expect("pattern");
    env.daemon
        .registry
        .register_answer(&pietura::registry::answers::NewAnswer {
            item: &item.id,
            body,
            document: stored
                .as_ref()
                .zip(document)
                .map(|(s, (_, name))| (s.sha256.as_str(), name)),
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
        .expect("answer registered")
        .number
}

/// A PDF-like document with every byte value in it (and Latvian text).
fn signed_pdf() -> Vec<u8> {
    let mut pdf = b"%PDF-1.7\n% Atbilde: \xc4\x81\xc4\x8d\xc4\x93\n".to_vec();
    pdf.extend((0..=255u8).cycle().take(200_000));
    pdf.extend_from_slice(b"\n%%EOF\n");
    pdf
}

#[tokio::test]
async fn an_answer_with_an_uploaded_pdf_goes_over_e_adrese_with_the_file_byte_identical() {
    let dir = tempfile::tempdir().expect("temp dir");
    let standin = DivStandin::start(dir.path(), 64 * 1024);
    let div_id = standin
        .add_message(json!({"sender": CITIZEN, "title": "Būvatļauja", "description": LATVIAN}))
        .await;
    let env = daemon(
        &standin,
        dir.path(),
        "acknowledge = false",
        Backend::Embedded,
    )
    .await;
    let (item, msg) = env.registered_message(&format!("e_adrese:{div_id}")).await;
    let pdf = signed_pdf();
    let answer_text = "Būvatļauja izsniegta, pielikumā parakstīts lēmums.";
    let number =
        answer_with_document(&env, &item, &msg, answer_text, Some((&pdf, "lēmums.pdf"))).await;

    let state = wait_state(&standin, "the answer", |s| {
        s["sent"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let sent = &state["sent"][0];
    assert_eq!(sent["recipients"], json!([CITIZEN]));
    assert_eq!(sent["signature_ok"], true, "{sent:#}");
    assert_eq!(sent["description"], answer_text);
    assert!(sent["title"].as_str().is_some_and(|t| t.contains(&number)));
    let files = sent["files"].as_array().expect("files");
    assert_eq!(files.len(), 1, "{sent:#}");
    let file = &files[0];
    assert_eq!(file["name"], "lēmums.pdf");
    assert_eq!(file["mime_type"], "application/pdf");
    assert_eq!(file["size"], pdf.len());
    assert_eq!(file["appendix"], "1");
    assert_eq!(
        file["digest_checked"], true,
        "SHA-512 checked by the stand-in"
    );
    let received = B64
        .decode(file["content_b64"].as_str().unwrap_or(""))
        .expect("base64");
    assert!(received == pdf, "the stand-in's copy is byte-identical");
    assert!(
        state["refusals"].as_array().is_some_and(|r| r.is_empty()),
        "{state:#}"
    );
    env.stop().await;
}

#[tokio::test]
async fn the_stand_in_refuses_a_file_whose_digest_does_not_match_its_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let standin = DivStandin::start(dir.path(), 64 * 1024);
    let div = client(&standin, &standin.cert, &standin.key);
    let pdf = signed_pdf();
    let out = Outbound {
        recipient: CITIZEN.into(),
        title: "Atbilde".into(),
        description: "Lēmums pielikumā.".into(),
        sender_ref: "IZ-2026/1".into(),
        files: vec![pietura::eadrese::OutboundFile {
            name: "lēmums.pdf".into(),
            mime_type: "application/pdf".into(),
            content: pdf.clone(),
        }],
    };
    let request = div.send_request(&out, chrono::Utc::now()).expect("request");
    // The attached bytes changed after signing (one byte, same length): the
    // signature over the metadata still holds, the SHA-512 digest does not.
    let mut other = pdf.clone();
    other[100] ^= 0xff;
    let tampered = request.replacen(&B64.encode(&pdf), &B64.encode(&other), 1);
    assert_ne!(tampered, request);
    refused_with(
        "SHA-512 digest does not match",
        "a file not matching its digest",
        div.post(Operation::SendMessage, tampered),
    )
    .await;
    // The digest itself changed in the signed metadata: the XAdES signature fails.
    let digest = {
        use sha2::Digest;
        B64.encode(sha2::Sha512::digest(&pdf))
    };
    let forged = {
        use sha2::Digest;
        B64.encode(sha2::Sha512::digest(&other))
    };
    let tampered =
        request
            .replacen(&digest, &forged, 1)
            .replacen(&B64.encode(&pdf), &B64.encode(&other), 1);
    assert_ne!(tampered, request);
    refused_with(
        "XAdES signature does not verify",
        "a re-digested file",
        div.post(Operation::SendMessage, tampered),
    )
    .await;
    // Untouched: accepted, the bytes kept as sent.
    div.post(Operation::SendMessage, request)
        .await
        .expect("a correct SendMessage with a file");
    let state = standin.state().await;
    assert_eq!(state["sent"].as_array().map(Vec::len), Some(1), "{state:#}");
    let kept = B64
        .decode(
            state["sent"][0]["files"][0]["content_b64"]
                .as_str()
                .unwrap_or(""),
        )
        .expect("base64");
    assert!(kept == pdf, "kept byte-identical");
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
    refused_with(
        "does not verify",
        "a tampered WS-Security signature",
        good.post(Operation::GetMessageList, tampered),
    )
    .await;

    // A SendMessage whose signed SenderDocument was changed: refused.
    let out = Outbound {
        recipient: CITIZEN.into(),
        title: "Atbilde".into(),
        description: "Jūsu iesniegums reģistrēts.".into(),
        sender_ref: "1/2026/1".into(),
        files: Vec::new(),
    };
    let request = good
        .send_request(&out, chrono::Utc::now())
        .expect("request");
    let tampered = request.replacen("reģistrēts", "noraidīts", 1);
    assert_ne!(tampered, request);
    refused_with(
        "XAdES signature does not verify",
        "a tampered XAdES signature",
        good.post(Operation::SendMessage, tampered),
    )
    .await;
    // The same request untouched is accepted.
    good.post(Operation::SendMessage, request)
        .await
        .expect("a correctly signed SendMessage");

    // Another certificate of the same CA: a connection, but refused.
    let (other_cert, other_key) = support::make_client_certificate(dir.path(), "cits");
    refused_with(
        "not registered",
        "a foreign certificate",
        client(&standin, &other_cert, &other_key).message_list(),
    )
    .await;
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

/// The OAuth2 client the stand-in accepts, and its secret's file.
const OAUTH_CLIENT: &str = "pietura-pasvaldiba";
const OAUTH_SECRET: &str = "slepens-noslēpums-42";

fn oauth_table(standin: &DivStandin, secret_file: &std::path::Path) -> String {
    format!(
        "[oauth]\ntoken_url = \"{}\"\nclient_id = \"{OAUTH_CLIENT}\"\nclient_secret_file = \"{}\"\nscope = \"div\"\n",
        standin.token_url(),
        secret_file.display()
    )
}

#[tokio::test]
async fn with_oauth_required_intake_and_sending_work_with_a_cached_token_refreshed_on_401() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("oauth-secret");
    std::fs::write(&secret, format!("{OAUTH_SECRET}\n")).expect("secret file");
    let standin = DivStandin::start_with(dir.path(), 64 * 1024, Some((OAUTH_CLIENT, &secret)));

    // Without a token the service refuses, and says why.
    let bare = client(&standin, &standin.cert, &standin.key);
    match bare.message_list().await {
        Err(e @ DivError::Unauthorized { .. }) => {
            assert!(e.to_string().contains("OAuth2"), "{e}")
        }
        other => panic!("a call without a token was not refused: {other:?}"),
    }

    let first = standin
        .add_message(json!({"sender": CITIZEN, "title": "Jautājums", "description": LATVIAN}))
        .await;
    let env = daemon(
        &standin,
        dir.path(),
        &oauth_table(&standin, &secret),
        Backend::Embedded,
    )
    .await;
    let (item, _) = env.registered_message(&format!("e_adrese:{first}")).await;
    // The acknowledgement is sent with the token too.
    let state = wait_state(&standin, "the acknowledgement", |s| {
        s["sent"].as_array().is_some_and(|a| !a.is_empty())
            && s["confirmed"].as_array().is_some_and(|c| c.len() == 1)
    })
    .await;
    assert!(
        state["sent"][0]["description"]
            .as_str()
            .is_some_and(|d| d.contains(&item.registration_number)),
        "{state:#}"
    );
    // Several calls (list, get, confirm, send, confirmation), one token.
    assert!(state["requests"].as_u64().unwrap_or(0) >= 5, "{state:#}");
    assert_eq!(state["tokens_issued"], 1, "the token is cached: {state:#}");
    assert_eq!(
        state["unauthorized"], 1,
        "only the bare client's call: {state:#}"
    );
    // The acknowledgement's delivery confirmation is fetched too before the
    // tokens are revoked.
    let deadline = tokio::time::Instant::now() + support::WAIT;
    while env
        .daemon
        .registry
        .eadrese_sent(&item.id)
        .await
        .expect("lookup")
        .and_then(|r| r.delivery_status)
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no confirmation recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The service forgets its tokens: the next call gets 401, a new token is
    // fetched once and the call goes through.
    standin.faults(json!({"revoke_tokens": true})).await;
    let second = standin
        .add_message(json!({"sender": CITIZEN, "title": "Otrs", "description": LATVIAN}))
        .await;
    env.registered_key(&format!("e_adrese:{second}")).await;
    let state = wait_state(&standin, "the second confirm", |s| {
        s["confirmed"].as_array().is_some_and(|c| c.len() == 2)
    })
    .await;
    assert_eq!(state["tokens_issued"], 2, "one new token: {state:#}");
    assert!(
        state["unauthorized"].as_u64().unwrap_or(0) >= 2,
        "the revoked token was refused: {state:#}"
    );
    assert!(
        state["refusals"].as_array().is_some_and(|r| r.is_empty()),
        "{state:#}"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_wrong_oauth_client_secret_names_the_token_endpoint_and_nothing_is_taken() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("oauth-secret");
    std::fs::write(&secret, OAUTH_SECRET).expect("secret file");
    let wrong = dir.path().join("wrong-secret");
    std::fs::write(&wrong, "nepareizs").expect("secret file");
    let standin = DivStandin::start_with(dir.path(), 64 * 1024, Some((OAUTH_CLIENT, &secret)));

    let div =
        client(&standin, &standin.cert, &standin.key).with_oauth(pietura::eadrese::OauthClient {
            token_url: standin.token_url(),
            client_id: OAUTH_CLIENT.into(),
            client_secret: "nepareizs".to_string().into(),
            scope: None,
        });
    let err = div.message_list().await.expect_err("a wrong secret");
    assert!(matches!(err, DivError::Token { .. }), "{err:?}");
    assert!(
        !err.is_transient(),
        "refused credentials are not retried as transient"
    );
    let text = err.to_string();
    assert!(text.contains(&standin.token_url()), "{text}");
    assert!(text.contains("invalid_client"), "{text}");

    // The daemon with the wrong secret: polls fail at the token, the message
    // is neither fetched, registered nor confirmed.
    let div_id = standin
        .add_message(json!({"sender": CITIZEN, "title": "Jautājums", "description": LATVIAN}))
        .await;
    let env = daemon(
        &standin,
        dir.path(),
        &oauth_table(&standin, &wrong),
        Backend::Embedded,
    )
    .await;
    let state = wait_state(&standin, "two refused token requests", |s| {
        s["token_refusals"].as_u64().unwrap_or(0) >= 3
    })
    .await;
    assert_eq!(state["requests"], 0, "no SOAP call got through: {state:#}");
    assert_eq!(state["served"][&div_id], 0, "{state:#}");
    assert_eq!(state["confirmed"], json!([]), "{state:#}");
    assert!(
        env.daemon
            .registry
            .find_by_key(&format!("e_adrese:{div_id}"))
            .await
            .expect("lookup")
            .is_none(),
        "nothing registered"
    );
    env.stop().await;
}

/// A new-format personas kods whose e-adrese the stand-in's directory lists
/// as active.
const ACTIVE_CODE: &str = "321234-56789";
const ACTIVE_ADDRESS: &str = "_PRIVATE@32123456789";
const UNIT_PASSWORD: &str = "buvvaldes-parole-2026";

/// Submits the repository's general form (urlencoded, as a browser does)
/// with `extra` fields; the registered item.
async fn submit_form(
    env: &TestEnv,
    text: &str,
    extra: &[(&str, &str)],
) -> pietura::registry::ItemSummary {
    let token = env.form_token().await;
    let mut form = vec![
        ("form_token", token.as_str()),
        ("vards", "Ēriks Šķērslis"),
        ("adrese", "Dārza iela 7-12, Ērgļi, LV-4840"),
        ("temats", "Būvatļauja"),
        ("teksts", text),
    ];
    form.extend_from_slice(extra);
    let resp = env
        .http
        .post(format!("{}/forms/iesniegums", env.base))
        .header("accept", "application/json")
        .form(&form)
        .send()
        .await
        .expect("POST form");
    let status = resp.status().as_u16();
    let receipt: serde_json::Value = resp.json().await.expect("receipt");
    assert!(status == 201 || status == 202, "{status}: {receipt}");
    env.registered(receipt["tracking_id"].as_str().expect("tracking id"))
        .await
}

/// Answers `item` on the desk as the unit's member (multipart, as the
/// browser sends it); the answer as registered.
async fn answer_on_desk(
    env: &TestEnv,
    desk: &support::desk::DeskClient,
    csrf: &str,
    item: &str,
    text: &str,
) -> pietura::registry::answers::Answer {
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.to_string())
        .text("body", text.to_string());
    let r = desk
        .http
        .post(format!("{}/desk/unit/items/{item}/answer", desk.base))
        .multipart(form)
        .send()
        .await
        .expect("POST answer");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(status, 303, "the answer was refused: {body}");
    let answers = env.daemon.registry.answers_of(item).await.expect("answers");
    assert_eq!(answers.len(), 1, "{answers:?}");
    answers.into_iter().next().expect("the answer")
}

#[tokio::test]
async fn a_web_form_or_counter_item_with_the_personas_kods_of_an_active_e_adrese_is_answered_there()
{
    let dir = tempfile::tempdir().expect("temp dir");
    let standin = DivStandin::start(dir.path(), 64 * 1024);
    standin
        .add_addressees(json!([
            {"e_address": ACTIVE_ADDRESS, "active": true},
            {"e_address": "_PRIVATE@15038512346", "active": false},
        ]))
        .await;
    // The e-adrese channel next to the repository's general web form.
    let channels = standin.channels_dir(
        dir.path(),
        &standin.cert,
        &standin.key,
        "acknowledge = false\ndirectory_sync_minutes = 0\n",
    );
    std::fs::copy(
        support::repo_path("channels/iesniegums.toml"),
        channels.join("iesniegums.toml"),
    )
    .expect("form channel");
    let env = TestEnv::start(Options {
        channels_from: channels,
        ..Options::new(Backend::Embedded)
    })
    .await;
    let registry = &env.daemon.registry;
    // The addressee directory, synced from the stand-in.
    let div = client(&standin, &standin.cert, &standin.key);
    let deadline = tokio::time::Instant::now() + support::WAIT;
    while pietura::eadrese::directory::sync_due(&div, registry, "e-adrese", 0)
        .await
        .expect("sync")
        .is_none()
    {
        assert!(tokio::time::Instant::now() < deadline, "no sync");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A bad personas kods is refused, the field named, nothing registered.
    let token = env.form_token().await;
    let refused = env
        .http
        .post(format!("{}/forms/iesniegums?lang=en", env.base))
        .header("accept", "application/json")
        .form(&[
            ("form_token", token.as_str()),
            ("vards", "Ēriks Šķērslis"),
            ("personas_kods", "150385-12345"),
            ("temats", "Būvatļauja"),
            ("teksts", "Lūdzu izsniegt būvatļauju."),
        ])
        .send()
        .await
        .expect("POST form");
    assert_eq!(refused.status().as_u16(), 422);
    let text = refused.text().await.unwrap_or_default();
    assert!(text.contains("personas_kods"), "{text}");
    assert!(text.contains("not a valid personal code"), "{text}");

    // With the code of an active e-adrese (written without its hyphen).
    let with_code = submit_form(
        &env,
        "Lūdzu izsniegt būvatļauju šķūņa būvniecībai Bebrenes pagastā.",
        &[("personas_kods", " 32123456789 ")],
    )
    .await;
    let msg = env.message_of(&with_code).await;
    assert_eq!(msg.sender.personal_code.as_deref(), Some(ACTIVE_CODE));
    assert!(
        !serde_json::to_string(&msg.metadata)
            .expect("metadata")
            .contains("32123456789"),
        "the code travels as sender.personal_code only"
    );
    env.assert_stored_message_matches_schema(&with_code.id)
        .await;
    // Without a code: by e-mail, as before.
    let without = submit_form(
        &env,
        "Lūdzu izsniegt būvatļauju garāžas būvniecībai Ērgļu pagastā.",
        &[("epasts", "eriks@example.lv")],
    )
    .await;

    // The unit answers both on the desk.
    let known: Vec<String> = env.daemon.rules.load().units.keys().cloned().collect();
    pietura::desk::auth::add_or_update_user(registry, "janis", "Jānis", "unit", UNIT_PASSWORD)
        .await
        .expect("account");
    let unit = with_code.unit_id.clone().expect("routed to a unit");
    assert_eq!(without.unit_id.as_deref(), Some(unit.as_str()));
    pietura::desk::auth::set_user_units(registry, "janis", &[unit], &known, "tests")
        .await
        .expect("units of the account");
    let desk = support::desk::DeskClient::new(&env);
    assert_eq!(desk.sign_in("janis", UNIT_PASSWORD).await, 303);
    let (status, page) = desk
        .page(&format!("/desk/unit/items/{}", with_code.id))
        .await;
    assert_eq!(status, 200, "{page}");
    let csrf = support::desk::hidden(&page, "csrf");

    let answer_text = "Būvatļauja izsniegta; to var saņemt Ādažu ielā 7.";
    let answer = answer_on_desk(&env, &desk, &csrf, &with_code.id, answer_text).await;
    assert_eq!(answer.delivery, "e_adrese");
    let state = wait_state(&standin, "the answer", |s| {
        s["sent"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let sent = &state["sent"][0];
    assert_eq!(sent["recipients"], json!([ACTIVE_ADDRESS]), "{sent:#}");
    assert_eq!(sent["signature_ok"], true, "{sent:#}");
    assert_eq!(sent["description"], answer_text, "{sent:#}");
    let files = sent["files"].as_array().expect("files");
    assert_eq!(files.len(), 1, "{sent:#}");
    assert_eq!(
        files[0]["name"],
        format!("{}.pdf", answer.number.replace('/', "-"))
    );
    assert_eq!(files[0]["digest_checked"], true);
    let pdf = B64
        .decode(files[0]["content_b64"].as_str().unwrap_or(""))
        .expect("base64");
    assert!(pdf.starts_with(b"%PDF"), "the answer letter as a PDF");
    let deadline = tokio::time::Instant::now() + support::WAIT;
    while registry
        .eadrese_sent(&with_code.id)
        .await
        .expect("lookup")
        .is_none()
    {
        assert!(tokio::time::Instant::now() < deadline, "send not recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let by_mail = answer_on_desk(&env, &desk, &csrf, &without.id, "Atbilde pa e-pastu.").await;
    assert_eq!(by_mail.delivery, "email");
    let state = standin.state().await;
    assert_eq!(
        state["sent"].as_array().map(Vec::len),
        Some(1),
        "nothing else went to e-adrese: {state:#}"
    );

    // At the counter the officer types the code: answered over e-adrese too.
    support::desk::add_accounts(&env).await;
    let officer = support::desk::DeskClient::new(&env);
    assert_eq!(
        officer
            .sign_in(support::desk::OFFICER.0, support::desk::OFFICER.1)
            .await,
        303
    );
    let tracking = officer
        .counter_submission(
            &[
                ("kind", "counter"),
                ("sender_name", "Ēriks Šķērslis"),
                ("personal_code", "321234-56789"),
                ("subject", "Būvatļauja"),
                (
                    "text",
                    "Lūdzu izsniegt būvatļauju pirts būvniecībai Bebrenes pagastā.",
                ),
            ],
            None,
        )
        .await;
    let at_counter = env.registered(&tracking).await;
    let msg = env.message_of(&at_counter).await;
    assert_eq!(msg.sender.personal_code.as_deref(), Some(ACTIVE_CODE));
    assert_eq!(at_counter.unit_id, with_code.unit_id);
    let counter_answer = answer_on_desk(&env, &desk, &csrf, &at_counter.id, "Atbilde.").await;
    assert_eq!(counter_answer.delivery, "e_adrese");
    let state = wait_state(&standin, "the counter item's answer", |s| {
        s["sent"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    assert_eq!(state["sent"][1]["recipients"], json!([ACTIVE_ADDRESS]));
    assert_eq!(state["sent"][1]["signature_ok"], true);
    env.stop().await;
}

/// Asserts the stand-in refused the call with a SOAP fault naming `needle`.
async fn refused_with<T: std::fmt::Debug>(
    needle: &str,
    what: &str,
    call: impl std::future::Future<Output = Result<T, DivError>>,
) {
    match call.await {
        Err(DivError::Fault { reason, .. }) => assert!(reason.contains(needle), "{what}: {reason}"),
        other => panic!("{what} was not refused: {other:?}"),
    }
}

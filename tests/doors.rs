//! The doors citizens and the portal submit through (the HTML form and the
//! JSON API): idempotency keys reused with other content, bytes that are not
//! UTF-8, body limits, upload slots and one error shape, on a real daemon.

mod support;

use std::path::Path;
use std::sync::Once;

use base64::Engine as _;
use pietura::channels::DoorState;
use serde_json::{Value, json};
use support::{Backend, Options, TestEnv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY_VAR: &str = "PIETURA_FORM_IESNIEGUMS_KEY";
const API_KEY: &str = "doors-test-portal-key-0123456789";
const API: &str = "/api/v1/forms/iesniegums/submissions";

/// Turns the JSON API of `channels/iesniegums.toml` on; every test of this
/// file calls it before its daemon starts.
fn portal_key() -> &'static str {
    static ONCE: Once = Once::new();
    // SAFETY: set once, to the same value, before any daemon of this test
    // binary reads it; no other test binary shares the process.
    ONCE.call_once(|| unsafe { std::env::set_var(KEY_VAR, API_KEY) });
    API_KEY
}

fn submission(subject: &str, text: &str) -> Value {
    json!({
        "fields": {"vards": "Pārvaldnieks SIA", "temats": subject, "teksts": text},
        "lang": "lv",
    })
}

/// POSTs to the JSON API as the portal does.
async fn api(env: &TestEnv, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = env
        .http
        .post(format!("{}{API}", env.base))
        .bearer_auth(portal_key())
        .json(body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await.expect("POST submission");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("answer");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} not JSON ({e}): {text}")),
    )
}

/// A request written by hand on a fresh connection (`Connection: close`):
/// the status, the headers (lowercased) and the body of the answer.
async fn raw(env: &TestEnv, head: &str, body: &[u8]) -> (u16, String, String) {
    let addr = env.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(head.as_bytes()).await.expect("write head");
    // The server may answer (and close) before the body is read.
    let _ = conn.write_all(body).await;
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (headers, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {headers:?}"));
    (status, headers.to_ascii_lowercase(), body.to_string())
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {body:?}"))
}

async fn reused_keys_with_other_content_are_refused(backend: Backend) {
    portal_key();
    let env = TestEnv::start(Options::new(backend)).await;

    // The portal's Idempotency-Key: the same content twice is one item.
    let first = submission("Ielas apgaismojums", "Lūdzu salabot lampu Rīgas ielā 5.");
    let (s1, r1) = api(&env, Some("portal-17"), &first).await;
    assert!(s1 == 201 || s1 == 202, "{s1}: {r1}");
    let item = env
        .registered_key("web_form:iesniegums:api:portal-17")
        .await;
    let (s2, r2) = api(&env, Some("portal-17"), &first).await;
    assert_eq!(s2, 201, "the earlier item: {r2}");
    assert_eq!(r2["registration_number"], json!(item.registration_number));

    // The same key with other content: refused, nothing dropped silently.
    let other = submission("Ielas apgaismojums", "Lūdzu salabot lampu Rīgas ielā 7.");
    let (s3, r3) = api(&env, Some("portal-17"), &other).await;
    assert_eq!(s3, 409, "{r3}");
    assert_eq!(r3["status"], "refused");
    let text = r3["error"].as_str().expect("error text");
    assert!(
        text.contains("Idempotency-Key") && text.contains("different content"),
        "{text}"
    );
    assert!(r3.get("registration_number").is_none(), "{r3}");

    // Two submissions racing on one key before either is registered: the
    // key is claimed before publishing, so exactly one wins.
    let one = submission("Koku zāģēšana", "Pagalmā nolūzis zars.");
    let two = submission("Koku zāģēšana", "Pagalmā nolūzuši divi zari.");
    let (a, b) = tokio::join!(
        api(&env, Some("portal-18"), &one),
        api(&env, Some("portal-18"), &two),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert!(
        matches!(statuses, [201 | 202, 409]),
        "one accepted, one refused: {a:?} {b:?}"
    );

    // The same content twice at once (a client retrying before the first
    // answer): one item, and both answers lead to it.
    let same = submission("Suns", "Kaimiņu suns rej naktīs.");
    let (a, b) = tokio::join!(
        api(&env, Some("portal-19"), &same),
        api(&env, Some("portal-19"), &same),
    );
    assert!(
        matches!(a.0, 201 | 202) && matches!(b.0, 201 | 202),
        "{a:?} {b:?}"
    );
    let item_a = env
        .registered(a.1["tracking_id"].as_str().expect("id"))
        .await;
    let item_b = env
        .registered(b.1["tracking_id"].as_str().expect("id"))
        .await;
    assert_eq!(item_a.id, item_b.id);

    // A form page submitted again (Back, edit, submit) with other content.
    let token = env.form_token().await;
    let (s4, r4) = env
        .submit(&token, "Būvatļauja", "Lūdzu būvatļauju šķūnim.")
        .await;
    assert!(s4 == 201 || s4 == 202, "{s4}: {r4}");
    let page = env
        .http
        .post(format!("{}/forms/iesniegums", env.base))
        .form(&[
            ("form_token", token.as_str()),
            ("vards", "Anna Kalniņa"),
            ("temats", "Būvatļauja"),
            ("teksts", "Lūdzu būvatļauju garāžai."),
        ])
        .send()
        .await
        .expect("POST form again");
    assert_eq!(page.status().as_u16(), 409);
    let html = page.text().await.expect("page");
    assert!(html.contains("jau tika iesniegta ar citu saturu"), "{html}");
    assert!(
        html.contains("Lūdzu būvatļauju garāžai.") && !html.contains(&token),
        "the page keeps what was typed, with a fresh page token"
    );
    // The double click with the same content still gets the earlier number.
    let (s5, r5) = env
        .submit(&token, "Būvatļauja", "Lūdzu būvatļauju šķūnim.")
        .await;
    assert_eq!(s5, 201, "{r5}");
    let first_form = env
        .registered_key(&format!("web_form:iesniegums:{token}"))
        .await;
    assert_eq!(
        r5["registration_number"],
        json!(first_form.registration_number)
    );

    // Four items: portal-17, the winner of portal-18, portal-19, the form page.
    support::wait_until(support::WAIT, "four items", || async {
        env.daemon.registry.count().await.expect("count") >= 4
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(env.daemon.registry.count().await.expect("count"), 4);
    let (_, msg) = env
        .registered_message("web_form:iesniegums:api:portal-17")
        .await;
    assert!(msg.body.contains("Rīgas ielā 5."), "{}", msg.body);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_keys_with_other_content_are_refused_on_amqp_postgres() {
    reused_keys_with_other_content_are_refused(Backend::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_keys_with_other_content_are_refused_on_embedded_sqlite() {
    reused_keys_with_other_content_are_refused(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_utf8_are_refused_at_every_door_naming_the_field() {
    portal_key();
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    let token = env.form_token().await;
    let url = format!("{}/forms/iesniegums", env.base);
    let urlencoded =
        format!("form_token={token}&vards=Anna&temats=Iesniegums&teksts=L%FCdzu+%E2%28%A1");

    // The form, urlencoded, asking for JSON.
    let resp = env
        .http
        .post(&url)
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(urlencoded.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 400);
    let answer: Value = resp.json().await.expect("JSON");
    assert_eq!(answer["errors"][0]["field"], "teksts", "{answer}");
    assert!(
        answer["error"].as_str().unwrap_or("").contains("UTF-8"),
        "{answer}"
    );

    // The same from a browser: the page, naming the field by its label.
    let resp = env
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(urlencoded)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 400);
    let html = resp.text().await.expect("page");
    assert!(
        html.contains("„Iesnieguma teksts” satur baitus, kas nav UTF-8 teksts"),
        "{html}"
    );

    // Multipart: a text field with raw bytes, and a file name with them.
    let boundary = "XdoorsX";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"vards\"\r\n\r\nAnna\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"temats\"\r\n\r\nT").as_bytes());
    body.push(0xc5);
    body.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"teksts\"\r\n\r\nTeksts\r\n--{boundary}--\r\n").as_bytes());
    let bad_field = body.clone();
    let mut bad_name = Vec::new();
    bad_name.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"vards\"\r\n\r\nAnna\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"temats\"\r\n\r\nT\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"teksts\"\r\n\r\nTeksts\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"attachments\"; filename=\"").as_bytes());
    bad_name.extend_from_slice(b"l\xefgums.pdf");
    bad_name.extend_from_slice(
        format!("\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4 x\r\n--{boundary}--\r\n")
            .as_bytes(),
    );
    for (body, field) in [(bad_field, "temats"), (bad_name, "attachments")] {
        let resp = env
            .http
            .post(&url)
            .header("accept", "application/json")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .expect("POST multipart");
        assert_eq!(resp.status().as_u16(), 400);
        let answer: Value = resp.json().await.expect("JSON");
        assert_eq!(answer["errors"][0]["field"], field, "{answer}");
    }

    // The JSON API: the same answer shape.
    let mut json_body = br#"{"fields": {"vards": "Anna", "temats": "T", "teksts": "L"#.to_vec();
    json_body.extend_from_slice(b"\xfc");
    json_body.extend_from_slice(br#"dzu"}}"#);
    let resp = env
        .http
        .post(format!("{}{API}", env.base))
        .bearer_auth(portal_key())
        .header("content-type", "application/json")
        .body(json_body)
        .send()
        .await
        .expect("POST API");
    assert_eq!(resp.status().as_u16(), 400);
    let answer: Value = resp.json().await.expect("JSON");
    assert_eq!(answer["status"], "refused", "{answer}");
    assert_eq!(answer["errors"][0]["field"], "teksts", "{answer}");

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        env.daemon.registry.count().await.expect("count"),
        0,
        "nothing registered with replacement characters"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_json_the_api_wants_json_and_names_lose_bidi_controls() {
    portal_key();
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    let host = env.base.trim_start_matches("http://").to_string();

    // Larger than the form allows (and than http.max_body_bytes): JSON 413,
    // answered from Content-Length before anything is read.
    let (status, headers, body) = raw(
        &env,
        &format!("POST {API} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: 200000000\r\nConnection: close\r\n\r\n"),
        b"",
    )
    .await;
    assert_eq!(status, 413, "{headers}");
    assert!(
        headers.contains("content-type: application/json"),
        "{headers}"
    );
    let answer = json_of(&body);
    assert_eq!(answer["status"], "refused");
    assert!(
        answer["error"].as_str().is_some_and(|e| e.contains("MB")),
        "{answer}"
    );

    // The item API under the daemon-wide limit: JSON too.
    let (status, headers, body) = raw(
        &env,
        &format!("POST /api/v1/items/x/return HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 30000000\r\nConnection: close\r\n\r\n"),
        b"",
    )
    .await;
    assert_eq!(status, 413, "{headers}");
    assert!(json_of(&body)["error"].is_string(), "{body}");
    // An extractor's rejection (not JSON at all) and an unknown path, too.
    let (status, _, body) = raw(
        &env,
        &format!("POST /api/v1/items/x/return HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n", env.api_token),
        b"{}",
    )
    .await;
    assert_eq!(status, 415, "{body}");
    assert!(json_of(&body)["error"].is_string(), "{body}");
    let (status, _, body) = raw(
        &env,
        &format!("GET /api/v1/nothing-here HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        b"",
    )
    .await;
    assert_eq!(status, 404);
    assert!(json_of(&body)["error"].is_string(), "{body}");

    // The form's own limit follows from its fields: a 1 MB urlencoded post
    // is refused before it is read.
    let (status, _, body) = raw(
        &env,
        &format!("POST /forms/iesniegums HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n"),
        b"",
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(json_of(&body)["status"], "refused");

    // The form takes form encodings only.
    let resp = env
        .http
        .post(format!("{}/forms/iesniegums", env.base))
        .header("accept", "application/json")
        .header("content-type", "text/plain")
        .body("vards=Anna&temats=T&teksts=Teksts")
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 415);

    // The JSON API wants JSON.
    let resp = env
        .http
        .post(format!("{}{API}", env.base))
        .bearer_auth(portal_key())
        .header("content-type", "text/plain")
        .body(submission("Temats", "Teksts").to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 415);
    let answer: Value = resp.json().await.expect("JSON");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("application/json")),
        "{answer}"
    );

    // A right-to-left override in a file name: shown without it, the
    // blob keeps the bytes as sent.
    let pdf = b"%PDF-1.4\n% l\xc4\xabgums\n%%EOF\n".to_vec();
    let mut with_file = submission("Līgums", "Pielikumā līgums.");
    with_file["attachments"] = json!([{
        "filename": "līgums\u{202E}fdp.exe",
        "content_type": "application/pdf",
        "content_base64": base64::engine::general_purpose::STANDARD.encode(&pdf),
    }]);
    let (status, receipt) = api(&env, Some("bidi-1"), &with_file).await;
    assert!(status == 201 || status == 202, "{status}: {receipt}");
    let (_, msg) = env
        .registered_message("web_form:iesniegums:api:bidi-1")
        .await;
    assert_eq!(msg.attachments.len(), 1);
    assert_eq!(msg.attachments[0].filename, "līgumsfdp.exe");
    let blobs = pietura::blobs::BlobStore::open(env.blob_dir()).expect("blob store");
    assert_eq!(
        blobs.get(&msg.attachments[0].sha256).await.expect("blob"),
        pdf
    );
    env.stop().await;
}

/// A copy of the repository's channels with one upload slot for the form.
fn channels_with_one_upload_slot(dir: &Path) {
    let src = std::fs::read_to_string(support::repo_path("channels/iesniegums.toml"))
        .expect("channels/iesniegums.toml");
    let line = format!("api_key_env = \"{KEY_VAR}\"\n");
    assert!(src.contains(&line), "{src}");
    std::fs::write(
        dir.join("iesniegums.toml"),
        src.replace(&line, &format!("{line}uploads_in_flight = 1\n")),
    )
    .expect("write channel file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_slots_gets_503_with_retry_after() {
    portal_key();
    let channels = tempfile::tempdir().expect("channels dir");
    channels_with_one_upload_slot(channels.path());
    let mut opts = Options::new(Backend::Embedded);
    opts.channels_from = channels.path().to_path_buf();
    let env = TestEnv::start(opts).await;
    let host = env.base.trim_start_matches("http://").to_string();

    // An upload that has sent half of its attachment holds the one slot.
    let boundary = "XslotX";
    let head_part = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"vards\"\r\n\r\nAnna\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"temats\"\r\n\r\nT\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"teksts\"\r\n\r\nPielikumā plāns.\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"attachments\"; filename=\"plans.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4 "
    );
    let tail_part = format!("\r\n--{boundary}--\r\n");
    let half = vec![b'a'; 200_000];
    let total = head_part.len() + 2 * half.len() + tail_part.len();
    let addr = host.clone();
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    slow.write_all(format!("POST /forms/iesniegums HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n{head_part}").as_bytes()).await.expect("head");
    slow.write_all(&half).await.expect("first half");
    let tmp = env.blob_dir().join("tmp");
    support::wait_until(support::WAIT, "the slow upload's blob file", || {
        let tmp = tmp.clone();
        async move {
            std::fs::read_dir(&tmp)
                .map(|d| d.count() > 0)
                .unwrap_or(false)
        }
    })
    .await;

    // Meanwhile the API finds no slot: 503 with Retry-After, after a short wait.
    let resp = env
        .http
        .post(format!("{}{API}", env.base))
        .bearer_auth(portal_key())
        .json(&submission("Temats", "Teksts"))
        .send()
        .await
        .expect("POST API");
    assert_eq!(resp.status().as_u16(), 503);
    assert!(
        resp.headers().contains_key("retry-after"),
        "{:?}",
        resp.headers()
    );
    let answer: Value = resp.json().await.expect("JSON");
    assert_eq!(answer["status"], "refused", "{answer}");

    // The slow upload completes and is registered.
    slow.write_all(&half).await.expect("second half");
    slow.write_all(tail_part.as_bytes()).await.expect("tail");
    let mut answer = Vec::new();
    slow.read_to_end(&mut answer).await.expect("answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 201") || answer.starts_with("HTTP/1.1 202"),
        "{answer}"
    );
    // And the slot is free again.
    let (status, receipt) = api(&env, None, &submission("Temats", "Teksts")).await;
    assert!(status == 201 || status == 202, "{status}: {receipt}");
    env.stop().await;
}

/// A door's state (`channels::DoorState`): values under its own instance,
/// compare-and-set decided by the database, named leases on the one lease
/// primitive (`<what>:<instance>`, the names the desk's overview reads).
async fn a_door_keeps_its_own_state(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;
    let other_daemon = pietura::registry::Registry::connect(&env.database_url(), None)
        .await
        .expect("a second daemon's registry");
    let a = DoorState::new("pasts-a", env.daemon.registry.clone());
    let a_elsewhere = DoorState::new("pasts-a", other_daemon.clone());
    let b = DoorState::new("pasts-b", env.daemon.registry.clone());

    assert_eq!(a.get("pozīcija").await.expect("get"), None);
    assert!(a.compare_and_set("pozīcija", None, "1").await.expect("cas"));
    // Set already: a second "was unset" loses, on either daemon.
    assert!(
        !a_elsewhere
            .compare_and_set("pozīcija", None, "7")
            .await
            .expect("cas")
    );
    assert!(
        a_elsewhere
            .compare_and_set("pozīcija", Some("1"), "2")
            .await
            .expect("cas")
    );
    assert!(
        !a.compare_and_set("pozīcija", Some("1"), "3")
            .await
            .expect("cas")
    );
    assert_eq!(a.get("pozīcija").await.expect("get").as_deref(), Some("2"));
    assert_eq!(
        b.get("pozīcija").await.expect("get"),
        None,
        "another door's key"
    );
    b.put("pozīcija", "ārā").await.expect("put");
    a.put("pozīcija", "9").await.expect("put");
    assert_eq!(a.get("pozīcija").await.expect("get").as_deref(), Some("9"));
    assert_eq!(
        b.get("pozīcija").await.expect("get").as_deref(),
        Some("ārā")
    );

    // Leases: one holder per instance and work, given back for the next.
    let lease = a.claim("poll", "", 60).await.expect("claim").expect("free");
    assert_eq!(lease.key, "poll:pasts-a");
    assert!(
        a_elsewhere
            .claim("poll", "", 60)
            .await
            .expect("claim")
            .is_none(),
        "held by the first daemon"
    );
    assert!(
        b.claim("poll", "", 60).await.expect("claim").is_some(),
        "its own work"
    );
    let holder = other_daemon
        .named_holder("poll:pasts-a")
        .await
        .expect("holder");
    assert!(holder.is_some(), "the lease is the named work's row");
    a.release(&lease).await.expect("release");
    let taken = a_elsewhere.claim("poll", "", 60).await.expect("claim");
    assert!(taken.is_some(), "given back at once");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_door_keeps_its_own_state_on_postgres() {
    a_door_keeps_its_own_state(Backend::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_door_keeps_its_own_state_on_sqlite() {
    a_door_keeps_its_own_state(Backend::Embedded).await;
}

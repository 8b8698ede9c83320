//! Personal data stays out of the log (issue 17): the built daemon runs the
//! whole pipeline at TRACE level — on PostgreSQL and RabbitMQ, so the
//! database and broker clients trace too — while a web form, a signed SMS,
//! a mail into a real Dovecot (acknowledged through a real SMTP server), a
//! failed desk sign-in and an unreadable message carry seeded names, e-mail
//! addresses, phone numbers and personas kodi. Then the log is searched for
//! every seeded value, as text and as the byte lists a library's `{:?}` of
//! a buffer prints.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pietura::channels::sms::body_signature;
use pietura::registry::Registry;
use support::dovecot::Dovecot;
use support::smtp::SmtpServer;

const SMS_SECRET: &str = "redaction-secret";

/// Seeded personal data: none of it may appear in the log.
const SEEDS: &[&str] = &[
    // The form's sender.
    "Ilze Ozoliņa",
    "Ozoliņa",
    "ilze.ozolina.seed@example.lv",
    "+37129876543",
    "29876543",
    // A personas kods in the form's text and the SMS.
    "120386-12345",
    "12038612345",
    // The SMS sender.
    "+37126543219",
    "26543219",
    // The mail's sender.
    "Kārlis Sēklinieks",
    "karlis.seed@example.lv",
    // The username typed at a failed sign-in.
    "ilze.login.seed",
];

/// `s` as Rust's `{:?}` of its bytes prints it (`[73, 108, …]` without the brackets).
fn as_byte_list(s: &str) -> String {
    s.bytes()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn wait_for<F: std::future::Future<Output = bool>>(
    what: &str,
    log: &Path,
    mut f: impl FnMut() -> F,
) {
    let start = std::time::Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "{what} did not happen within 180 s; the log ends: {}",
            {
                let l = std::fs::read_to_string(log).unwrap_or_default();
                l[l.floor_char_boundary(l.len().saturating_sub(3000))..].to_string()
            }
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_pipeline_at_trace_level_logs_no_personal_data() {
    let root = tempfile::tempdir().expect("temp dir");
    let (db_url, db_name) = support::fresh_pg_database().await;
    let dovecot = Dovecot::start();
    let smtp_maildir = root.path().join("smtp");
    let smtp = SmtpServer::start(&smtp_maildir);
    let channels = root.path().join("channels");
    std::fs::create_dir_all(&channels).expect("channels");
    std::fs::copy(
        support::repo_path("channels/iesniegums.toml"),
        channels.join("iesniegums.toml"),
    )
    .expect("form channel");
    std::fs::write(
        channels.join("sms-seed.toml"),
        format!(
            "type = \"sms\"\nid = \"sms-seed\"\n[gateway]\nkind = \"json_hmac\"\nsecret = \"{SMS_SECRET}\"\n[reply]\nenabled = false\n"
        ),
    )
    .expect("sms channel");
    let ack = format!(
        "[acknowledgement]\nfrom = \"Pašvaldības dokumenti <dokumenti@example.lv>\"\n\
         municipality = \"Parauga novada pašvaldība\"\ncontact = \"tālr. 65400000\"\n\
         [acknowledgement.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n",
        smtp.port
    );
    std::fs::write(
        channels.join("pasts-seed.toml"),
        dovecot.channel_file("pasts-seed", &ack),
    )
    .expect("e-mail channel");
    let port = support::free_port();
    let prefix = format!("redact{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let config = root.path().join("pietura.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}\"\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
             [database]\nurl = \"{db_url}\"\n\
             [bus]\nkind = \"amqp\"\nurl = \"{amqp}\"\nprefix = \"{prefix}\"\n\
             [rules]\ndir = \"{rules}\"\n\
             [channels]\ndir = \"{channels}\"\n",
            data = root.path().join("data").display(),
            amqp = support::amqp_url(),
            rules = support::repo_path("rules").display(),
            channels = channels.display(),
        ),
    )
    .expect("config");
    let log = root.path().join("daemon.log");
    let out = std::fs::File::create(&log).expect("log file");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_pietura"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env_remove("PIETURA_CONFIG")
        .env_remove("RUST_LOG")
        .env("PIETURA_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("start pietura run");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let start = std::time::Instant::now();
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if let Ok(Some(status)) = daemon.try_wait() {
            panic!(
                "the daemon exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the daemon was not ready within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A web form from Ilze, with her phone and personas kods in the text.
    let page = http
        .get(format!("{base}/forms/iesniegums"))
        .send()
        .await
        .expect("form page")
        .text()
        .await
        .expect("form page text");
    let token = page
        .split("name=\"form_token\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("form token");
    let form = http
        .post(format!("{base}/forms/iesniegums"))
        .header("accept", "application/json")
        .form(&[
            ("form_token", token),
            ("vards", "Ilze Ozoliņa"),
            ("epasts", "ilze.ozolina.seed@example.lv"),
            ("talrunis", "+37129876543"),
            ("temats", "Būvatļauja"),
            (
                "teksts",
                "Lūdzu izsniegt būvatļauju. Mans personas kods 120386-12345, tālrunis 29876543.",
            ),
        ])
        .send()
        .await
        .expect("form");
    assert!(form.status().is_success(), "form: {}", form.status());

    // A signed SMS from another number, with a personas kods.
    let body = serde_json::json!({
        "id": "seed-1",
        "from": "+37126543219",
        "to": "1888",
        "text": "Mans personas kods 12038612345, kur pieteikt bērnu bērnudārzā?",
    })
    .to_string();
    let sms = http
        .post(format!("{base}/sms/sms-seed/inbound"))
        .header("content-type", "application/json")
        .header(
            "X-Signature-256",
            body_signature(SMS_SECRET, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("sms");
    assert!(sms.status().is_success(), "sms: {}", sms.status());

    // A mail from Kārlis, acknowledged to him.
    dovecot.deliver(
        "From: =?utf-8?Q?K=C4=81rlis_S=C4=93klinieks?= <karlis.seed@example.lv>\r\n\
         To: intake@example.lv\r\nSubject: Par ielu\r\nMessage-ID: <seed-1@example.lv>\r\n\
         Date: Mon, 30 Nov 2026 10:00:00 +0200\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Lūdzu salabot ielas apgaismojumu. Kārlis Sēklinieks, tālr. +37126543219\r\n"
            .as_bytes(),
    );

    // A failed sign-in with a typed username.
    let login = http
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("login page")
        .text()
        .await
        .expect("login text");
    let csrf = login
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_string();
    let signin = http
        .post(format!("{base}/login"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "ilze.login.seed"),
            ("password", "nav-pareiza-parole"),
        ])
        .send()
        .await
        .expect("sign-in");
    assert!(
        !signin.url().path().starts_with("/desk"),
        "an unknown user was let in"
    );

    // A message nobody can read on the engine's queue, with Ilze's data
    // in it: it is parked, and its content stays out of the log.
    let amqp = lapin::Connection::connect(&support::amqp_url(), Default::default())
        .await
        .expect("RabbitMQ");
    let channel = amqp.create_channel().await.expect("channel");
    channel
        .basic_publish(
            "".into(),
            format!("{prefix}.engine").as_str().into(),
            Default::default(),
            r#"{"schema_version": 1, "sender": {"name": "Ilze Ozoliņa", "email": "ilze.ozolina.seed@example.lv", "phone": "+37129876543"}, "body": "#
                .as_bytes(),
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let _ = amqp.close(200, "done".into()).await;

    // Everything registered and the mail acknowledged: every part of the
    // pipeline has run (and logged) by then.
    let registry = Registry::connect(&db_url, Some(1)).await.expect("registry");
    wait_for("three items registered", &log, || {
        let registry = registry.clone();
        async move { registry.count().await.unwrap_or(0) >= 3 }
    })
    .await;
    wait_for("the unreadable message parked", &log, || {
        let registry = registry.clone();
        async move { registry.parked_count().await.unwrap_or(0) >= 1 }
    })
    .await;
    wait_for("the mail acknowledged", &log, || {
        std::future::ready(!SmtpServer::messages(&smtp_maildir).is_empty())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = daemon.kill();
    let _ = daemon.wait();
    drop(registry);
    support::drop_pg_database(&db_name).await;

    let text = std::fs::read_to_string(&log).expect("read the log");
    // The log is a real TRACE log (the libraries' traces are in it), and it
    // says what happened, with the personal data masked.
    assert!(text.contains("TRACE"), "not a TRACE log");
    assert!(text.lines().count() > 200, "a thin log: {text}");
    let mut found = Vec::new();
    for seed in SEEDS {
        for (form, needle) in [("text", seed.to_string()), ("bytes", as_byte_list(seed))] {
            if let Some(line) = text.lines().find(|l| l.contains(&needle)) {
                found.push(format!("{seed:?} as {form}: {line}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "personal data in the TRACE log:\n{}",
        found.join("\n")
    );
}

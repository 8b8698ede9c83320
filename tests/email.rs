//! The e-mail channel end to end against a real Dovecot IMAP server, a real
//! SMTP server (aiosmtpd) for the acknowledgements, RabbitMQ and PostgreSQL:
//! mail delivered into the Maildir is registered, routed, acknowledged and
//! moved; replies thread only from the item's sender; bounces land on the
//! item; restarts of Dovecot and of the daemon lose and duplicate nothing;
//! a UIDVALIDITY change registers nothing twice.

mod support;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use pietura::channels::email::normalise;
use support::dovecot::Dovecot;
use support::smtp::SmtpServer;
use support::{Backend, Options, TestEnv, wait_until};
use tempfile::TempDir;

const INSTANCE: &str = "epasts";
const LONG_WAIT: Duration = Duration::from_secs(90);

fn fixture(name: &str) -> Vec<u8> {
    let path = support::repo_path(&format!("tests/golden/email/{name}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} not found: {e}", path.display()))
}

/// The key the channel gives a mail: its content hash.
fn key_of(raw: &[u8]) -> String {
    normalise::parse(raw.to_vec(), None, &[]).idempotency_key(INSTANCE)
}

fn mail(from: &str, subject: &str, body: &str, headers: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: dokumenti@example.lv\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0200\r\nMessage-ID: <{}@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n{headers}\r\n{body}\r\n",
        uuid::Uuid::now_v7()
    )
    .into_bytes()
}

/// The `[acknowledgement]` tables of a channel file: sent through the SMTP
/// server on `port` with `security`; `ack_extra` and `smtp_extra` are added
/// lines of either table.
fn acknowledging(port: u16, security: &str, ack_extra: &str, smtp_extra: &str) -> String {
    format!(
        "[acknowledgement]\nfrom = \"Pašvaldības dokumenti <dokumenti@example.lv>\"\nmunicipality = \"Parauga novada pašvaldība\"\ncontact = \"tālr. 65400000, dome@example.lv\"\n{ack_extra}\n[acknowledgement.smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"{security}\"\n{smtp_extra}\n"
    )
}

/// A channel folder holding `epasts.toml` for this Dovecot (`extra`: more
/// top-level keys and tables).
fn channel_dir(dovecot: &Dovecot, extra: &str) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("epasts.toml"),
        dovecot.channel_file(INSTANCE, extra),
    )
    .expect("channel file");
    dir
}

/// The channel folder for this Dovecot (and SMTP server, when acknowledging).
fn channels(dovecot: &Dovecot, smtp: Option<&SmtpServer>, extra: &str) -> TempDir {
    let ack = smtp
        .map(|s| acknowledging(s.port, "plain", "", ""))
        .unwrap_or_default();
    channel_dir(dovecot, &format!("{extra}\n{ack}"))
}

async fn start(channels_dir: &Path) -> TestEnv {
    let mut opts = Options::new(Backend::Amqp);
    opts.channels_from = channels_dir.to_path_buf();
    TestEnv::start(opts).await
}

async fn count(env: &TestEnv) -> i64 {
    env.daemon.registry.count().await.expect("count")
}

async fn wait_items(env: &TestEnv, n: i64) {
    wait_until(LONG_WAIT, &format!("{n} items registered"), || async {
        count(env).await >= n
    })
    .await;
}

/// Delivers a mail and waits for its item.
async fn hand_in(env: &TestEnv, dovecot: &Dovecot, raw: &[u8]) -> pietura::registry::ItemSummary {
    dovecot.deliver(raw);
    env.registered_key(&key_of(raw)).await
}

/// Waits until a mailbox (`instance`, or any) records an error containing `needle`.
async fn wait_mailbox_error(env: &TestEnv, instance: Option<&str>, needle: &str) {
    let registry = env.daemon.registry.clone();
    wait_until(
        LONG_WAIT,
        &format!("a mailbox error with {needle:?}"),
        || async {
            registry
                .mailbox_statuses()
                .await
                .expect("statuses")
                .iter()
                .any(|m| {
                    instance.is_none_or(|i| m.channel_instance == i)
                        && m.last_error.as_deref().is_some_and(|e| e.contains(needle))
                })
        },
    )
    .await;
}

fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    mail.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

/// A received mail: its raw headers and its decoded text.
struct Received {
    raw: String,
    text: String,
}

/// The acknowledgement sent to `address`, once it has arrived.
async fn acknowledgement_to(maildir: &Path, address: &str) -> Received {
    let mut found = None;
    wait_until(
        LONG_WAIT,
        &format!("an acknowledgement to {address}"),
        || {
            found = SmtpServer::messages(maildir)
                .into_iter()
                .find(|m| header(m, "To").is_some_and(|t| t.contains(address)));
            std::future::ready(found.is_some())
        },
    )
    .await;
    let raw = found.expect("found");
    let text = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .and_then(|m| m.body_text(0).map(|t| t.into_owned()))
        .expect("the acknowledgement has a text body");
    Received { raw, text }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mails_are_registered_routed_acknowledged_and_put_away() {
    let dovecot = Dovecot::start();
    let mail_dir = tempfile::tempdir().expect("temp dir");
    let maildir = mail_dir.path().join("maildir");
    let smtp = SmtpServer::start(&maildir);
    let names = [
        "plain-windows-1257.eml",
        "html-only.eml",
        "multi-attachment.eml",
        "forwarded.eml",
        "edoc.eml",
        "auto-reply.eml",
    ];
    for name in names {
        dovecot.deliver(&fixture(name));
    }
    let dir = channels(&dovecot, Some(&smtp), "");
    let env = start(dir.path()).await;
    wait_items(&env, names.len() as i64).await;

    let plain = env
        .registered_key(&key_of(&fixture("plain-windows-1257.eml")))
        .await;
    assert_eq!(plain.unit_id.as_deref(), Some("buvvalde"), "{plain:?}");
    assert_eq!(plain.channel_kind, "email");
    assert_eq!(
        plain.sender_email.as_deref(),
        Some("janis.berzins@example.com")
    );
    assert_eq!(plain.subject.as_deref(), Some("Iesniegums par būvatļauju"));
    let msg = env.message_of(&plain).await;
    assert!(
        msg.body.contains("Lūdzu izsniegt būvatļauju"),
        "{}",
        msg.body
    );
    let imap = &msg.metadata["email"]["imap"];
    assert_eq!(imap["mailbox"], "INBOX");
    assert!(imap["uid"].as_u64().is_some_and(|u| u >= 1), "{imap}");

    let html = env.registered_key(&key_of(&fixture("html-only.eml"))).await;
    let html_msg = env.message_of(&html).await;
    assert!(html_msg.body.contains("nekustamā"), "{}", html_msg.body);
    assert!(
        !html_msg.body.contains("alert") && !html_msg.body.contains("hidden"),
        "script text reached the body: {}",
        html_msg.body
    );

    let multi = env
        .registered_key(&key_of(&fixture("multi-attachment.eml")))
        .await;
    let multi_msg = env.message_of(&multi).await;
    let attached: Vec<&str> = multi_msg
        .attachments
        .iter()
        .map(|a| a.filename.as_str())
        .collect();
    assert_eq!(
        attached,
        ["Līgums Nr. 12.pdf", "foto.jpg", "attachment-3.bin"]
    );
    let blobs = pietura::blobs::BlobStore::open(env.blob_dir()).expect("blob store");
    for a in &multi_msg.attachments {
        let bytes = blobs.get(&a.sha256).await.expect("attachment kept");
        assert_eq!(bytes.len() as u64, a.size);
    }
    let original = multi_msg.metadata["email"]["original"]["sha256"]
        .as_str()
        .expect("original sha");
    let eml = blobs.get(original).await.expect("raw .eml kept");
    assert_eq!(
        eml,
        fixture("multi-attachment.eml"),
        "the raw mail is kept as it came"
    );

    let edoc = env.registered_key(&key_of(&fixture("edoc.eml"))).await;
    let edoc_msg = env.message_of(&edoc).await;
    let container = &edoc_msg.metadata["email"]["signed_containers"][0]["container"];
    assert_eq!(
        container["signers"][0]["name"], "ANNA BĒRZIŅA",
        "{container}"
    );
    assert_eq!(container["files"][0], "iesniegums.pdf");

    // Every mail left the inbox for the processed folder, after its hand-off.
    wait_until(LONG_WAIT, "the inbox emptied into Registered", || {
        std::future::ready(
            dovecot.count("INBOX") == 0 && dovecot.count("Registered") == names.len(),
        )
    })
    .await;

    // Acknowledgements: with the number, threaded, marked automatic.
    let ack = acknowledgement_to(&maildir, "janis.berzins@example.com").await;
    let subject = mail_parser::MessageParser::default()
        .parse(ack.raw.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .expect("subject");
    assert!(
        subject.contains(&format!("[Nr. {}]", plain.registration_number)),
        "{subject}"
    );
    assert!(
        ack.text.contains(&plain.registration_number),
        "{}",
        ack.text
    );
    assert_eq!(header(&ack.raw, "Auto-Submitted"), Some("auto-replied"));
    assert_eq!(
        header(&ack.raw, "In-Reply-To"),
        Some("<plain-1257@example.com>")
    );
    assert!(ack.text.contains("Būvvalde"), "unit named: {}", ack.text);
    assert!(
        ack.text.contains("Atbildi sniegsim līdz"),
        "deadline named: {}",
        ack.text
    );
    for address in [
        "ilze@example.com",
        "birojs@koks.example",
        "info-forward@example.com",
        "anna@example.com",
    ] {
        acknowledgement_to(&maildir, address).await;
    }
    // The out-of-office reply is registered but never answered.
    let oof = env
        .registered_key(&key_of(&fixture("auto-reply.eml")))
        .await;
    let audit = env.daemon.registry.audit_of(&oof.id).await.expect("audit");
    assert!(!audit.iter().any(|a| a.2 == "replied"), "{audit:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = SmtpServer::messages(&maildir);
    assert!(
        !all.iter().any(|m| m.contains("andris@example.com")),
        "an auto-reply was acknowledged"
    );
    assert_eq!(all.len(), 5, "one acknowledgement per human mail");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_thread_only_from_the_items_sender_and_bounces_land_on_the_item() {
    let dovecot = Dovecot::start();
    let mail_dir = tempfile::tempdir().expect("temp dir");
    let maildir = mail_dir.path().join("maildir");
    let smtp = SmtpServer::start(&maildir);
    let dir = channels(&dovecot, Some(&smtp), "");
    let env = start(dir.path()).await;

    let first = fixture("plain-windows-1257.eml");
    let item = hand_in(&env, &dovecot, &first).await;
    let ack = acknowledgement_to(&maildir, "janis.berzins@example.com").await;
    let ack_id = header(&ack.raw, "Message-ID")
        .expect("our Message-ID")
        .to_string();

    // The sender answers our acknowledgement: linked, same unit.
    let reply = mail(
        "Jānis Bērziņš <janis.berzins@example.com>",
        &format!("Re: Iesniegums [Nr. {}]", item.registration_number),
        "Papildinu iesniegumu: pievienoju zemes robežu plānu.",
        &format!("In-Reply-To: {ack_id}\r\nReferences: {ack_id}\r\n"),
    );
    let follow = hand_in(&env, &dovecot, &reply).await;
    assert_eq!(follow.linked_item_id.as_deref(), Some(item.id.as_str()));
    assert_eq!(follow.unit_id, item.unit_id);
    assert_eq!(follow.rule_id.as_deref(), Some("follow-up"));
    let audit = env.daemon.registry.audit_of(&item.id).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|a| a.2 == "follow_up_received" && a.3.contains(&follow.registration_number)),
        "{audit:?}"
    );

    // Someone else quoting the number is not let into the case.
    let stranger = mail(
        "Svešinieks <stranger@example.net>",
        &format!("Par [Nr. {}]", item.registration_number),
        "Lūdzu informāciju par šo lietu.",
        &format!("In-Reply-To: {ack_id}\r\n"),
    );
    let other = hand_in(&env, &dovecot, &stranger).await;
    assert_eq!(
        other.linked_item_id, None,
        "a stranger's mail joined the case"
    );
    assert_ne!(other.rule_id.as_deref(), Some("follow-up"));

    // A bounce of our acknowledgement: recorded on the item, not registered.
    let before = count(&env).await;
    let bounce = format!(
        "From: Mail Delivery System <MAILER-DAEMON@example.lv>\r\nTo: dokumenti@example.lv\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <bounce-1@example.lv>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.lv\r\n\r\nFinal-Recipient: rfc822; janis.berzins@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: dokumenti@example.lv\r\nTo: janis.berzins@example.com\r\nMessage-ID: {ack_id}\r\nSubject: Re: Iesniegums\r\n--b--\r\n"
    );
    dovecot.deliver(bounce.as_bytes());
    wait_until(LONG_WAIT, "the bounce recorded on the item", || async {
        env.daemon
            .registry
            .audit_of(&item.id)
            .await
            .expect("audit")
            .iter()
            .any(|a| a.2 == "reply_bounced" && a.3.contains("5.1.1"))
    })
    .await;
    wait_until(LONG_WAIT, "the bounce put away", || {
        std::future::ready(dovecot.count("INBOX") == 0)
    })
    .await;
    assert_eq!(count(&env).await, before, "a bounce became an item");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_mail_is_registered_for_review() {
    let dovecot = Dovecot::start();
    let dir = channels(&dovecot, None, "max_message_bytes = 4096");
    let big = mail(
        "Liels Fails <big@example.com>",
        "Skenētie dokumenti",
        &"Lūdzu izskatīt pielikumu. ".repeat(400),
        "",
    );
    assert!(big.len() > 4096);
    dovecot.deliver(&big);
    dovecot.deliver(&fixture("malformed.eml"));
    // A second mailbox whose login fails must not hold the first one up.
    let broken = dovecot
        .channel_file("postkaste", "")
        .replace(support::dovecot::PASSWORD, "wrong-password");
    std::fs::write(dir.path().join("postkaste.toml"), broken).expect("channel file");
    let env = start(dir.path()).await;
    wait_items(&env, 2).await;
    let items = env
        .daemon
        .registry
        .list(&pietura::registry::ItemFilter::default())
        .await
        .expect("list");
    let oversized = items
        .iter()
        .find(|i| i.sender_email.as_deref() == Some("big@example.com"))
        .expect("the oversized mail is registered");
    assert_eq!(oversized.state, "review");
    assert!(
        oversized
            .review_reason
            .as_deref()
            .is_some_and(|r| r.contains("oversized")),
        "{oversized:?}"
    );
    assert_eq!(oversized.subject.as_deref(), Some("Skenētie dokumenti"));
    let malformed = items
        .iter()
        .find(|i| i.sender_email.is_none())
        .expect("the malformed mail is registered");
    assert_eq!(malformed.state, "review");
    assert!(
        malformed
            .review_reason
            .as_deref()
            .is_some_and(|r| r.contains("malformed")),
        "{malformed:?}"
    );
    wait_until(LONG_WAIT, "both mails put away", || {
        std::future::ready(dovecot.count("INBOX") == 0)
    })
    .await;
    wait_mailbox_error(&env, Some("postkaste"), "login").await;
    env.stop().await;
}

/// The subject of a received mail, decoded.
fn subject_of(raw: &str) -> String {
    mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .expect("subject")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_ups_acknowledgement_has_one_re_and_its_own_number_only() {
    let dovecot = Dovecot::start();
    let mail_dir = tempfile::tempdir().expect("temp dir");
    let maildir = mail_dir.path().join("maildir");
    let smtp = SmtpServer::start(&maildir);
    let dir = channels(&dovecot, Some(&smtp), "");
    let env = start(dir.path()).await;
    let first = mail(
        "Jānis <janis@example.com>",
        "Iesniegums par būvatļauju",
        "Lūdzu būvatļauju.",
        "",
    );
    let item = hand_in(&env, &dovecot, &first).await;
    let ack = acknowledgement_to(&maildir, "janis@example.com").await;
    let ack_subject = subject_of(&ack.raw);
    assert_eq!(
        ack_subject,
        format!(
            "Re: Iesniegums par būvatļauju [Nr. {}]",
            item.registration_number
        )
    );
    // The citizen answers our acknowledgement (their client adds "Re: ").
    let ack_id = header(&ack.raw, "Message-ID")
        .expect("our Message-ID")
        .to_string();
    let reply = mail(
        "Jānis <janis@example.com>",
        &format!("Re: {ack_subject}"),
        "Pievienoju plānu.",
        &format!("In-Reply-To: {ack_id}\r\nReferences: {ack_id}\r\n"),
    );
    let follow = hand_in(&env, &dovecot, &reply).await;
    assert_eq!(follow.linked_item_id.as_deref(), Some(item.id.as_str()));
    let mut second = None;
    wait_until(LONG_WAIT, "the follow-up's acknowledgement", || {
        second = SmtpServer::messages(&maildir)
            .into_iter()
            .find(|m| m.contains(&follow.registration_number));
        std::future::ready(second.is_some())
    })
    .await;
    assert_eq!(
        subject_of(&second.expect("found")),
        format!(
            "Re: Iesniegums par būvatļauju [Nr. {}]",
            follow.registration_number
        ),
        "one Re:, one number tag: the follow-up's"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colleagues_forwards_are_not_acknowledged_and_the_item_api_says_why() {
    let dovecot = Dovecot::start();
    let mail_dir = tempfile::tempdir().expect("temp dir");
    let maildir = mail_dir.path().join("maildir");
    let smtp = SmtpServer::start(&maildir);
    let dir = channels(
        &dovecot,
        Some(&smtp),
        "our_addresses = [\"@novads.example.lv\", \"*@*.novads.lv\"]",
    );
    let env = start(dir.path()).await;
    // A clerk forwards a citizen's mail; another from a unit's subdomain.
    let forward = mail(
        "Ilze Kalna <ilze.kalna@novads.example.lv>",
        "Fwd: Iesniegums par būvatļauju",
        "---------- Forwarded message ----------\r\nNo: Jānis <janis@example.com>\r\nLūdzu būvatļauju.",
        "",
    );
    let unit = mail(
        "Anna <anna@buvvalde.novads.lv>",
        "Fwd: iesniegums",
        "Lūdzu būvatļauju.",
        "",
    );
    let citizen = mail(
        "Pēteris <peteris@example.com>",
        "Iesniegums",
        "Lūdzu būvatļauju.",
        "",
    );
    let oof = fixture("auto-reply.eml");
    let forwarded = hand_in(&env, &dovecot, &forward).await;
    let from_unit = hand_in(&env, &dovecot, &unit).await;
    hand_in(&env, &dovecot, &citizen).await;
    let auto = hand_in(&env, &dovecot, &oof).await;
    acknowledgement_to(&maildir, "peteris@example.com").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = SmtpServer::messages(&maildir);
    assert_eq!(sent.len(), 1, "only the citizen is acknowledged: {sent:?}");

    // The item API says the answer was not sent, and why.
    for (item, why) in [
        (&forwarded, "our own addresses"),
        (&from_unit, "our own addresses"),
        (&auto, "Auto-Submitted"),
    ] {
        let shown = env.get_json(&format!("/api/v1/items/{}", item.id)).await;
        let answer = &shown["answer"];
        assert_eq!(answer["state"], "not_sent", "{shown}");
        assert!(
            answer["reason"].as_str().is_some_and(|r| r.contains(why)),
            "{why}: {shown}"
        );
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_cut_off_mid_stream_goes_to_review_with_its_bytes_as_they_came() {
    let dovecot = Dovecot::start();
    let dir = channels(&dovecot, None, "");
    let env = start(dir.path()).await;
    let blobs = pietura::blobs::BlobStore::open(env.blob_dir()).expect("blob store");
    // Its subject would route it to the building board: it is reviewed instead.
    let cut = hand_in(&env, &dovecot, &fixture("truncated-base64.eml")).await;
    assert_eq!(cut.state, "review", "{cut:?}");
    assert!(
        cut.review_reason
            .as_deref()
            .is_some_and(|r| r.contains("cut off")),
        "{cut:?}"
    );
    let msg = env.message_of(&cut).await;
    assert!(
        msg.body.contains("Lūdzu izsniegt būvatļauju"),
        "{}",
        msg.body
    );
    let problems = msg.metadata["email"]["problems"].to_string();
    assert!(problems.contains("plans.pdf"), "{problems}");

    // IMAP cannot carry every byte (Dovecot turns bare LF into CRLF and NUL
    // into 0x80), so the mail as fetched is the reference: the attachment
    // is the part's bytes exactly as they are in it, not UTF-8-mended.
    dovecot.deliver(&fixture("unterminated-binary.eml"));
    wait_items(&env, 2).await;
    let listed = env.get_json("/api/v1/items?state=review").await;
    let id = listed
        .as_array()
        .and_then(|items| items.iter().find(|i| i["subject"] == "Pielikums"))
        .and_then(|i| i["id"].as_str())
        .unwrap_or_else(|| panic!("the binary mail in review: {listed}"))
        .to_string();
    let binary = env
        .daemon
        .registry
        .find(&id)
        .await
        .expect("find")
        .expect("item");
    let msg = env.message_of(&binary).await;
    let original = msg.metadata["email"]["original"]["sha256"]
        .as_str()
        .expect("original");
    let raw = blobs.get(original).await.expect("raw mail kept");
    let marker = b"Content-Transfer-Encoding: binary\r\n\r\n";
    let start = raw
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the binary part")
        + marker.len();
    let stored = blobs
        .get(&msg.attachments[0].sha256)
        .await
        .expect("attachment kept");
    assert_eq!(stored, raw[start..], "the part's bytes, byte for byte");
    assert!(stored.len() >= 258, "{}", stored.len());
    assert!(
        !stored.windows(3).any(|w| w == "\u{fffd}".as_bytes()),
        "replacement characters in the attachment"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_waits_for_a_relay_that_is_down_without_holding_registration() {
    let dovecot = Dovecot::start();
    let mail_dir = tempfile::tempdir().expect("temp dir");
    let maildir = mail_dir.path().join("maildir");
    let relay_port = support::free_port();
    let dir = channel_dir(&dovecot, &acknowledging(relay_port, "plain", "", ""));
    let env = start(dir.path()).await;
    let first = fixture("plain-windows-1257.eml");
    let item = hand_in(&env, &dovecot, &first).await;
    assert_eq!(
        item.state, "routed",
        "registration does not wait for the relay"
    );

    // The failed attempt is visible on the item, with the next try.
    let path = format!("/api/v1/items/{}", item.id);
    wait_until(
        LONG_WAIT,
        "the failed acknowledgement shown on the item",
        || {
            let env = &env;
            let path = path.clone();
            async move { env.get_json(&path).await["answer"]["attempts"].as_i64() >= Some(1) }
        },
    )
    .await;
    let shown = env.get_json(&path).await;
    let answer = &shown["answer"];
    assert!(
        answer["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("could not take")),
        "{shown}"
    );
    assert!(answer["next_attempt_at"].is_string(), "{shown}");
    assert!(answer["done_at"].is_null(), "{shown}");

    // The relay comes up: the acknowledgement goes out on the next try.
    let _smtp = SmtpServer::start_on(&maildir, relay_port);
    acknowledgement_to(&maildir, "janis.berzins@example.com").await;
    wait_until(LONG_WAIT, "the answer recorded as sent", || {
        let env = &env;
        let path = path.clone();
        async move { env.get_json(&path).await["answer"]["outcome"] == "sent" }
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_of_dovecot_and_of_the_daemon_lose_and_duplicate_nothing() {
    const TOTAL: usize = 2000;
    let dovecot = Dovecot::start();
    for n in 0..TOTAL {
        dovecot.deliver(&mail(
            &format!("Iedzīvotājs {n} <person{n}@example.com>"),
            &format!("Iesniegums {n}"),
            &format!("Lūdzu izsniegt būvatļauju nr. {n}."),
            "",
        ));
    }
    // Small batches, so the restarts land between them.
    let dir = channels(&dovecot, None, "batch_mails = 5");
    let env = start(dir.path()).await;

    // Dovecot goes away as soon as the first batch left the inbox…
    wait_until(LONG_WAIT, "the first batch put away", || {
        std::future::ready(dovecot.count("INBOX") < TOTAL)
    })
    .await;
    dovecot.stop();
    let left_at_stop = dovecot.count("INBOX");
    tokio::time::sleep(Duration::from_secs(2)).await;
    dovecot.resume();
    // …and the daemon is restarted as soon as reading went on.
    wait_until(LONG_WAIT, "reading resumed", || {
        std::future::ready(dovecot.count("INBOX") < left_at_stop)
    })
    .await;
    let env = env.restart().await;
    let left_at_restart = dovecot.count("INBOX");
    wait_items(&env, TOTAL as i64).await;
    wait_until(LONG_WAIT, "the inbox emptied", || {
        std::future::ready(dovecot.count("INBOX") == 0)
    })
    .await;
    // Nothing more arrives late.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        count(&env).await,
        TOTAL as i64,
        "items lost or registered twice"
    );
    assert_eq!(dovecot.count("Registered"), TOTAL);
    assert!(
        left_at_stop > 0 && left_at_restart > 0,
        "the restarts came after the batch ({left_at_stop} and {left_at_restart} mails left): the test proved nothing"
    );
    eprintln!(
        "Dovecot stopped with {left_at_stop}, the daemon restarted with {left_at_restart} of {TOTAL} mails in the inbox"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uidvalidity_change_registers_nothing_twice() {
    let dovecot = Dovecot::start();
    let dir = channels(&dovecot, None, "after = { action = \"flag\" }");
    let first: Vec<Vec<u8>> = (0..3)
        .map(|n| {
            mail(
                "Jānis <janis@example.com>",
                &format!("Pirmais {n}"),
                "Lūdzu būvatļauju.",
                "",
            )
        })
        .collect();
    for m in &first {
        dovecot.deliver(m);
    }
    let env = start(dir.path()).await;
    wait_items(&env, 3).await;
    let registry = env.daemon.registry.clone();
    wait_until(LONG_WAIT, "the position reaches UID 3", || async {
        registry
            .mailbox_position(INSTANCE, "INBOX")
            .await
            .expect("position")
            .last_uid
            == 3
    })
    .await;
    assert_eq!(
        dovecot.count("INBOX"),
        3,
        "flag mode leaves the mail in place"
    );

    // The server renumbers everything and the flags are gone: every mail
    // looks new, and only the two really new ones may become items.
    dovecot.remove_keyword("INBOX", "$Pietura");
    dovecot.change_uid_validity("INBOX", 777);
    for n in 0..2 {
        dovecot.deliver(&mail(
            "Anna <anna@example.com>",
            &format!("Otrais {n}"),
            "Lūdzu būvatļauju.",
            "",
        ));
    }
    wait_until(LONG_WAIT, "the new UIDVALIDITY is read", || async {
        registry
            .mailbox_position(INSTANCE, "INBOX")
            .await
            .expect("position")
            .uid_validity
            == 777
    })
    .await;
    wait_items(&env, 5).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        count(&env).await,
        5,
        "mail registered twice after the UIDVALIDITY change"
    );
    for m in &first {
        assert!(
            env.daemon
                .registry
                .find_by_key(&key_of(m))
                .await
                .expect("lookup")
                .is_some()
        );
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_read_a_mailbox_one_at_a_time() {
    let dovecot = Dovecot::start();
    let logins = || dovecot.log().matches("imap-login: Info: Login:").count();
    let dir = channels(&dovecot, None, "");
    let env = start(dir.path()).await;
    let second = env.another_daemon().await;
    for n in 0..50 {
        dovecot.deliver(&mail(
            &format!("P{n} <p{n}@example.com>"),
            &format!("Iesniegums {n}"),
            "Lūdzu būvatļauju.",
            "",
        ));
    }
    wait_items(&env, 50).await;
    assert_eq!(
        logins(),
        1,
        "both daemons read the mailbox: {}",
        dovecot.log()
    );

    // The reader stops (and gives the lease up); one daemon goes on.
    let env = env.restart().await;
    for n in 50..60 {
        dovecot.deliver(&mail(
            &format!("P{n} <p{n}@example.com>"),
            &format!("Iesniegums {n}"),
            "Lūdzu būvatļauju.",
            "",
        ));
    }
    wait_items(&env, 60).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&env).await, 60);
    assert_eq!(
        logins(),
        2,
        "one new session after the hand-over: {}",
        dovecot.log()
    );
    second.shutdown().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_answer_limit_holds_when_daemons_race() {
    let env = TestEnv::start(Options::new(Backend::Amqp)).await;
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).expect("day");
    let takes = (0..10).map(|_| {
        let r = env.daemon.registry.clone();
        tokio::spawn(async move { r.take_reply_quota("janis@example.com", day, 3).await })
    });
    let granted = futures::future::join_all(takes)
        .await
        .into_iter()
        .filter(|t| matches!(t, Ok(Ok(true))))
        .count();
    assert_eq!(granted, 3, "ten racing senders, a limit of three");
    let r = &env.daemon.registry;
    assert!(
        !r.take_reply_quota("janis@example.com", day, 3)
            .await
            .expect("take")
    );
    // An answer that was not sent gives its place back; the next day is new.
    r.return_reply_quota("janis@example.com", day)
        .await
        .expect("give back");
    assert!(
        r.take_reply_quota("janis@example.com", day, 3)
            .await
            .expect("take")
    );
    let next = day.succ_opt().expect("day");
    assert!(
        r.take_reply_quota("janis@example.com", next, 3)
            .await
            .expect("take")
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_measured_by_the_database_clock_on_postgresql_and_sqlite() {
    for backend in [Backend::Amqp, Backend::Embedded] {
        let env = TestEnv::start(Options::new(backend)).await;
        let r = &env.daemon.registry;
        let before = Utc::now() - chrono::Duration::seconds(2);
        let clock = r.clock().await.expect("the database's clock");
        let after = Utc::now() + chrono::Duration::seconds(2);
        assert!(
            before <= clock && clock <= after,
            "sqlite {}: {clock} not between {before} and {after}",
            r.is_sqlite()
        );
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_is_leased_to_one_daemon_at_a_time() {
    let env = TestEnv::start(Options::new(Backend::Amqp)).await;
    // Two daemons: each its own connection and holder name.
    let url = env.database_url();
    let connect = || pietura::registry::Registry::connect(&url, None);
    let (a, b) = (
        connect().await.expect("daemon A"),
        connect().await.expect("daemon B"),
    );
    let held_a = a
        .lease_mailbox("x", "INBOX", None, 60)
        .await
        .expect("lease")
        .expect("A takes the mailbox");
    assert!(
        b.lease_mailbox("x", "INBOX", None, 60)
            .await
            .expect("lease")
            .is_none(),
        "B takes a mailbox A holds"
    );
    let renewed = a
        .lease_mailbox("x", "INBOX", Some(&held_a), 60)
        .await
        .expect("renew")
        .expect("A renews");
    assert_eq!(renewed, held_a);
    // A's lease runs out (a 0 s renewal stands for a stalled daemon) and
    // B takes over; A may no longer move the position.
    a.renew(&pietura::registry::lease::NAMED, &held_a, 0)
        .await
        .expect("renew");
    let held_b = b
        .lease_mailbox("x", "INBOX", None, 60)
        .await
        .expect("take over")
        .expect("B takes the mailbox over");
    let pos = pietura::registry::mailboxes::MailboxPosition {
        uid_validity: 1,
        last_uid: 9,
    };
    assert!(
        !a.advance_mailbox("x", "INBOX", &held_a, 60, pos)
            .await
            .expect("advance")
    );
    assert!(
        a.lease_mailbox("x", "INBOX", Some(&held_a), 60)
            .await
            .expect("renew")
            .is_none(),
        "A renewed a lease B took over"
    );
    assert!(
        b.advance_mailbox("x", "INBOX", &held_b, 60, pos)
            .await
            .expect("advance")
    );
    assert_eq!(
        a.mailbox_position("x", "INBOX").await.expect("position"),
        pos
    );
    let status = a.mailbox_statuses().await.expect("statuses");
    assert_eq!(status.len(), 1, "{status:?}");
    assert!(status[0].lease_holder.is_some(), "{status:?}");
    // A released lease is free at once.
    b.release_mailbox(&held_b).await.expect("release");
    assert!(
        a.lease_mailbox("x", "INBOX", None, 60)
            .await
            .expect("lease")
            .is_some()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edoc_signers_are_shown_and_a_malformed_signature_failed_on_the_desk_and_in_the_api() {
    let dovecot = Dovecot::start();
    let dir = channels(&dovecot, None, "");
    let env = start(dir.path()).await;
    let item = hand_in(&env, &dovecot, &fixture("edoc.eml")).await;

    let shown = env.get_json(&format!("/api/v1/items/{}", item.id)).await;
    let listed = &shown["signed_containers"][0];
    assert_eq!(listed["attachment"], "iesniegums.edoc", "{shown}");
    assert_eq!(listed["container"]["files"][0], "iesniegums.pdf", "{shown}");
    assert_eq!(
        listed["container"]["signers"][0]["name"], "ANNA BĒRZIŅA",
        "{shown}"
    );
    assert_eq!(listed["container"]["verified"], false, "{shown}");
    // The fixture's SignedInfo is not XML-DSig (no CanonicalizationMethod).
    assert_eq!(
        listed["container"]["signers"][0]["verification"]["verdict"], "failed",
        "{shown}"
    );

    support::desk::add_accounts(&env).await;
    let reader = support::desk::DeskClient::new(&env);
    let (user, password) = support::desk::READER;
    assert_eq!(reader.sign_in(user, password).await, 303);
    for (lang, not_verified) in [("lv", "paraksts nav derīgs"), ("en", "signature failed")] {
        let (status, page) = reader
            .page(&format!("/desk/items/{}?lang={lang}", item.id))
            .await;
        assert_eq!(status, 200);
        let section = page
            .split("id=\"signed-containers\"")
            .nth(1)
            .unwrap_or_else(|| panic!("no signed containers on the {lang} page: {page}"));
        let section = section.split("</ul>").next().unwrap_or_default();
        for expected in [
            "iesniegums.edoc",
            "iesniegums.pdf",
            "ANNA BĒRZIŅA",
            not_verified,
        ] {
            assert!(
                section.contains(expected),
                "{lang}: {expected:?} missing in {section}"
            );
        }
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edoc_signatures_arriving_by_email_are_verified_stored_and_shown_on_both_registries() {
    let ca = support::edoc::pki("Pietura test CA", "ANNA PARAUGA");
    let files: &[(&str, &[u8])] = &[("iesniegums.txt", "Lūdzu izsniegt būvatļauju.".as_bytes())];
    let at = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let sig = support::edoc::xades(
        &ca,
        files,
        &at,
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    );
    let good = support::edoc::container(files, &sig);
    let tampered =
        support::edoc::container(&[("iesniegums.txt", "Lūdzu neizsniegt.".as_bytes())], &sig);
    for backend in [Backend::Amqp, Backend::Embedded] {
        let dovecot = Dovecot::start();
        let dir = channels(&dovecot, None, "");
        let mut opts = Options::new(backend);
        opts.channels_from = dir.path().to_path_buf();
        let trust = ca.ca.clone();
        opts.tweak = Some(Box::new(move |s| s.signatures.trust = vec![trust]));
        let env = TestEnv::start(opts).await;
        let item = hand_in(
            &env,
            &dovecot,
            &support::edoc::mail_with(
                "Parakstīts iesniegums",
                &[("labais.edoc", &good), ("mainitais.asice", &tampered)],
            ),
        )
        .await;

        // Stored in the item's metadata, as the item API shows it.
        let msg = env
            .daemon
            .registry
            .item_message(&item.id)
            .await
            .expect("message");
        let stored = &msg.metadata["email"]["signed_containers"];
        assert_eq!(stored[0]["attachment"], "labais.edoc", "{stored}");
        assert_eq!(stored[0]["container"]["verified"], true, "{stored}");
        assert_eq!(
            stored[0]["container"]["signers"][0]["verification"]["verdict"], "verified",
            "{stored}"
        );
        assert_eq!(stored[1]["container"]["verified"], false, "{stored}");
        assert_eq!(
            stored[1]["container"]["signers"][0]["verification"],
            serde_json::json!({"verdict": "failed", "reason": "digest of iesniegums.txt differs"}),
            "{stored}"
        );
        let shown = env.get_json(&format!("/api/v1/items/{}", item.id)).await;
        assert_eq!(&shown["signed_containers"], stored, "{shown}");

        support::desk::add_accounts(&env).await;
        let reader = support::desk::DeskClient::new(&env);
        let (user, password) = support::desk::READER;
        assert_eq!(reader.sign_in(user, password).await, 303);
        for (lang, verified, failed) in [
            ("lv", "paraksts pārbaudīts", "paraksts nav derīgs"),
            ("en", "signature verified", "signature failed"),
        ] {
            let (status, page) = reader
                .page(&format!("/desk/items/{}?lang={lang}", item.id))
                .await;
            assert_eq!(status, 200);
            let section = page
                .split("id=\"signed-containers\"")
                .nth(1)
                .and_then(|s| s.split("</ul>").next())
                .unwrap_or_else(|| panic!("no signed containers on the {lang} page: {page}"));
            let (first, second) = section.split_once("mainitais.asice").expect("both listed");
            assert!(first.contains(verified), "{lang}: {first}");
            assert!(second.contains(failed), "{lang}: {second}");
            assert!(
                second.contains("digest of iesniegums.txt differs"),
                "{lang}: {second}"
            );
        }
        env.stop().await;
    }
}

/// Log lines written while the returned guard lives, on this thread (the
/// test runs on one thread, so every daemon task logs here).
fn capture_logs() -> (
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    tracing::subscriber::DefaultGuard,
) {
    #[derive(Clone)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,pietura=info"))
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    (buf, tracing::subscriber::set_default(subscriber))
}

/// The mailbox's lease as stored: holder and until.
async fn lease_of(env: &TestEnv) -> Option<(String, chrono::DateTime<Utc>)> {
    env.daemon
        .registry
        .mailbox_statuses()
        .await
        .expect("statuses")
        .into_iter()
        .find(|m| m.channel_instance == INSTANCE)
        .and_then(|m| {
            let until = m
                .lease_until
                .as_deref()
                .and_then(pietura::registry::parse_db_time)?;
            Some((m.lease_holder?, until))
        })
}

// One thread: the log capture sees every daemon task.
#[tokio::test(flavor = "current_thread")]
async fn a_crashed_daemons_mailbox_is_taken_over_within_the_short_lease() {
    let (logs, _guard) = capture_logs();
    let dovecot = Dovecot::start();
    let dir = channels(&dovecot, None, "");
    let mut env = start(dir.path()).await;
    let mut first = None;
    wait_until(LONG_WAIT, "the first daemon holds the mailbox", || {
        let env = &env;
        async move { lease_of(env).await.is_some() }
    })
    .await;
    if let Some((holder, until)) = lease_of(&env).await {
        // The lease runs at most 30 s ahead (the README's figure), not minutes.
        let ttl = chrono::Duration::seconds(30);
        assert!(
            until <= Utc::now() + ttl + chrono::Duration::seconds(5),
            "the lease runs until {until}, more than {ttl} ahead"
        );
        first = Some(holder);
    }
    let first = first.expect("first holder");

    // A second daemon waits, and says at INFO whom for and until when.
    let second = env.another_daemon().await;
    let said = || String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    wait_until(LONG_WAIT, "the waiting daemon names the holder", || {
        std::future::ready(said().lines().any(|l| {
            l.contains(" INFO ")
                && l.contains("mailbox leased by another daemon")
                && l.contains(&first)
        }))
    })
    .await;

    // The first daemon dies without releasing its lease (its tasks are
    // dropped, as a killed process's would stop).
    let crashed = std::mem::replace(&mut env.daemon, second);
    drop(crashed);
    let raw = mail(
        "Jānis <janis@example.com>",
        "Pēc avārijas",
        "Lūdzu būvatļauju.",
        "",
    );
    dovecot.deliver(&raw);
    let key = key_of(&raw);
    // Within the short lease (and one renewal), far below the old ~150 s.
    wait_until(
        LONG_WAIT,
        "the mail registered by the second daemon",
        || {
            let env = &env;
            let key = key.clone();
            async move {
                env.daemon
                    .registry
                    .find_by_key(&key)
                    .await
                    .expect("lookup")
                    .is_some()
            }
        },
    )
    .await;
    let (holder, _) = lease_of(&env).await.expect("a lease");
    assert_ne!(holder, first, "the dead daemon's lease was taken over");

    // A clean shutdown gives the lease up at once.
    let third = env.another_daemon().await;
    let second = std::mem::replace(&mut env.daemon, third);
    second.shutdown().await;
    let now_held = lease_of(&env).await.map(|(h, _)| h);
    assert_ne!(
        now_held.as_deref(),
        Some(holder.as_str()),
        "not released at shutdown"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_is_read_over_tls_and_starttls_with_a_private_ca() {
    let dovecot = Dovecot::start_with_tls();
    let ca = dovecot.ca_file.clone().expect("CA");
    for (security, port) in [("tls", dovecot.imaps_port), ("starttls", dovecot.port)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dovecot
            .channel_file(INSTANCE, "")
            .replace(
                "security = \"plain\"",
                &format!(
                    "security = \"{security}\"\nca_file = {:?}",
                    ca.display().to_string()
                ),
            )
            .replace(
                &format!("port = {}", dovecot.port),
                &format!("port = {port}"),
            );
        std::fs::write(dir.path().join("epasts.toml"), file).expect("channel file");
        let env = start(dir.path()).await;
        let raw = mail(
            "Jānis <janis@example.com>",
            &format!("Būvatļauja ({security})"),
            "Lūdzu izsniegt būvatļauju.",
            "",
        );
        let item = hand_in(&env, &dovecot, &raw).await;
        assert_eq!(item.unit_id.as_deref(), Some("buvvalde"), "{security}");
        env.stop().await;
    }
    assert!(
        dovecot.log().contains("TLS"),
        "the server saw no TLS session: {}",
        dovecot.log()
    );

    // Without the private CA the certificate is refused: nothing is read,
    // and the mailbox shows why.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dovecot
        .channel_file("untrusted", "")
        .replace("security = \"plain\"", "security = \"tls\"")
        .replace(
            &format!("port = {}", dovecot.port),
            &format!("port = {}", dovecot.imaps_port),
        );
    std::fs::write(dir.path().join("untrusted.toml"), file).expect("channel file");
    let env = start(dir.path()).await;
    let raw = mail(
        "Jānis <janis@example.com>",
        "Nedrošs",
        "Lūdzu būvatļauju.",
        "",
    );
    dovecot.deliver(&raw);
    wait_mailbox_error(&env, None, "certificate").await;
    assert_eq!(
        count(&env).await,
        0,
        "mail read over an untrusted connection"
    );
    assert_eq!(dovecot.count("INBOX"), 1);
    env.stop().await;
}

/// A stand-in for the identity provider's userinfo endpoint, which Dovecot
/// asks about each bearer token: `good-token` is intake@example.lv.
async fn userinfo_server() -> String {
    use axum::http::{HeaderMap, StatusCode};
    async fn userinfo(headers: HeaderMap) -> (StatusCode, axum::Json<serde_json::Value>) {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if bearer == "Bearer good-token" {
            let user = serde_json::json!({ "email": support::dovecot::USER });
            (StatusCode::OK, axum::Json(user))
        } else {
            let refusal = serde_json::json!({ "error": "invalid_token" });
            (StatusCode::UNAUTHORIZED, axum::Json(refusal))
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route("/userinfo", axum::routing::get(userinfo));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/userinfo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth2_bearer_token_logs_in_with_xoauth2() {
    let url = userinfo_server().await;
    let dovecot = Dovecot::start_with_oauth2(&url);
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("epasts.token");
    std::fs::write(&token, "good-token\n").expect("token file");
    let bad = dir.path().join("old.token");
    std::fs::write(&bad, "expired-token").expect("token file");
    let password_line = format!("password = \"{}\"", support::dovecot::PASSWORD);
    for (id, file) in [(INSTANCE, &token), ("expired", &bad)] {
        let channel = dovecot.channel_file(id, "").replace(
            &password_line,
            &format!("oauth2_token_file = {:?}", file.display().to_string()),
        );
        std::fs::write(dir.path().join(format!("{id}.toml")), channel).expect("channel file");
    }
    let env = start(dir.path()).await;
    let raw = mail(
        "Jānis <janis@example.com>",
        "Būvatļauja",
        "Lūdzu izsniegt būvatļauju.",
        "",
    );
    let item = hand_in(&env, &dovecot, &raw).await;
    assert_eq!(item.unit_id.as_deref(), Some("buvvalde"));
    assert!(
        dovecot.log().contains("method=XOAUTH2"),
        "no XOAUTH2 login: {}",
        dovecot.log()
    );
    wait_mailbox_error(&env, Some("expired"), "refused").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unset_smtp_password_holds_the_answers_not_the_daemon() {
    let dovecot = Dovecot::start();
    let dir = channel_dir(
        &dovecot,
        &acknowledging(
            25,
            "plain",
            "",
            "username = \"pietura\"\npassword_env = \"PIETURA_TEST_SMTP_PASSWORD_NEVER_SET\"",
        ),
    );
    let env = start(dir.path()).await;
    let raw = mail(
        "Jānis <janis@example.com>",
        "Būvatļauja",
        "Lūdzu būvatļauju.",
        "",
    );
    let item = hand_in(&env, &dovecot, &raw).await;
    let path = format!("/api/v1/items/{}", item.id);
    wait_until(LONG_WAIT, "the missing password named on the item", || {
        let env = &env;
        let path = path.clone();
        async move {
            env.get_json(&path).await["answer"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("PIETURA_TEST_SMTP_PASSWORD_NEVER_SET"))
        }
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_go_out_over_starttls_and_smtps_at_most_n_a_day() {
    let dovecot = Dovecot::start();
    let certs = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = support::make_certificates(certs.path());
    for (security, implicit) in [("starttls", false), ("tls", true)] {
        let mail_dir = tempfile::tempdir().expect("temp dir");
        let maildir = mail_dir.path().join("maildir");
        let smtp = SmtpServer::start_tls(&maildir, &cert, &key, implicit);
        let dir = channel_dir(
            &dovecot,
            &acknowledging(
                smtp.port,
                security,
                "max_per_address_per_day = 1",
                &format!("ca_file = {:?}", ca.display().to_string()),
            ),
        );
        let env = start(dir.path()).await;
        let first = mail(
            "Jānis <janis@example.com>",
            &format!("Pirmais ({security})"),
            "Lūdzu būvatļauju.",
            "",
        );
        let first = hand_in(&env, &dovecot, &first).await;
        acknowledgement_to(&maildir, "janis@example.com").await;
        // A second mail the same day: registered, not acknowledged again.
        let second = mail(
            "Jānis <janis@example.com>",
            &format!("Otrais ({security})"),
            "Lūdzu būvatļauju.",
            "",
        );
        let second = hand_in(&env, &dovecot, &second).await;
        let path = format!("/api/v1/items/{}", second.id);
        wait_until(LONG_WAIT, "the second answer settled", || {
            let env = &env;
            let path = path.clone();
            async move { env.get_json(&path).await["answer"]["outcome"].is_string() }
        })
        .await;
        let answer = env.get_json(&path).await["answer"].clone();
        assert!(
            answer["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("suppressed")),
            "{answer}"
        );
        let first_answer =
            env.get_json(&format!("/api/v1/items/{}", first.id)).await["answer"].clone();
        assert_eq!(first_answer["outcome"], "sent", "{first_answer}");
        assert_eq!(SmtpServer::messages(&maildir).len(), 1, "{security}");
        drop(smtp);
        env.stop().await;
    }
}

//! Mail authenticity end to end (issue 17): SPF, DKIM and DMARC evaluated
//! against a real DNS server (dnsmasq) publishing a test DKIM key, mail
//! read from a real Dovecot, acknowledgements through a real SMTP server
//! (aiosmtpd), RabbitMQ and PostgreSQL. A properly signed mail passes and is
//! threaded; a forged follow-up is not linked into the case, a forged
//! delivery report is not recorded as a bounce, and a failing sender gets no
//! acknowledgement; all are registered.

#[path = "support/dns.rs"]
mod dns;
mod support;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use dns::Dns;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use pietura::channels::email::normalise;
use support::dovecot::Dovecot;
use support::smtp::SmtpServer;
use support::{Backend, Options, TestEnv, wait_until};

const INSTANCE: &str = "epasts";
const LONG_WAIT: Duration = Duration::from_secs(90);
const CITIZEN: &str = "janis@sender.example";
/// The address our receiving MTA saw the sender's server at (SPF allows it).
const SENDER_MTA: &str = "192.0.2.10";

fn key_of(raw: &[u8]) -> String {
    normalise::parse(raw.to_vec(), None, &[]).idempotency_key(INSTANCE)
}

/// A mail as our MX stored it: its `Received:` naming the client address on top.
fn mail(from: &str, client: &str, subject: &str, body: &str, headers: &str) -> Vec<u8> {
    format!(
        "Received: from mta.sender.example (mta.sender.example [{client}])\r\n\tby mx.example.lv with ESMTP; Mon, 30 Nov 2026 10:00:00 +0200\r\nReturn-Path: <{from}>\r\nFrom: Jānis <{from}>\r\nTo: dokumenti@example.lv\r\nSubject: {subject}\r\nDate: Mon, 30 Nov 2026 10:00:00 +0200\r\nMessage-ID: <{}@sender.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n{headers}\r\n{body}\r\n",
        uuid::Uuid::now_v7()
    )
    .into_bytes()
}

/// The sender's domain key: signs mail, published in DNS.
struct SenderDomain {
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

impl SenderDomain {
    fn new() -> Self {
        let pkcs8 = Ed25519Key::generate_pkcs8().expect("ed25519 key");
        let public = Ed25519Key::from_pkcs8_der(&pkcs8)
            .expect("key")
            .public_key();
        SenderDomain { pkcs8, public }
    }

    fn records(&self) -> Vec<(String, String)> {
        vec![
            (
                "s1._domainkey.sender.example".into(),
                format!(
                    "v=DKIM1; k=ed25519; p={}",
                    base64::engine::general_purpose::STANDARD.encode(&self.public)
                ),
            ),
            (
                "sender.example".into(),
                format!("v=spf1 ip4:{SENDER_MTA} -all"),
            ),
            ("_dmarc.sender.example".into(), "v=DMARC1; p=reject".into()),
        ]
    }

    /// The mail with the domain's DKIM-Signature on top (inside our Received:).
    fn sign(&self, raw: &[u8]) -> Vec<u8> {
        let key = Ed25519Key::from_pkcs8_der(&self.pkcs8).expect("key");
        let signature = DkimSigner::from_key(key)
            .domain("sender.example")
            .selector("s1")
            .headers(["From", "To", "Subject", "Date", "Message-ID"])
            .sign(raw)
            .expect("DKIM signature");
        let mut out = signature.to_header().into_bytes();
        out.extend_from_slice(raw);
        out
    }
}

fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    mail.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

fn acknowledgements_to(maildir: &Path, address: &str) -> Vec<String> {
    SmtpServer::messages(maildir)
        .into_iter()
        .filter(|m| header(m, "To").is_some_and(|t| t.contains(address)))
        .collect()
}

async fn wait_acknowledgements(maildir: &Path, address: &str, n: usize) -> Vec<String> {
    wait_until(
        LONG_WAIT,
        &format!("{n} acknowledgements to the citizen"),
        || std::future::ready(acknowledgements_to(maildir, address).len() >= n),
    )
    .await;
    acknowledgements_to(maildir, address)
}

async fn hand_in(env: &TestEnv, dovecot: &Dovecot, raw: &[u8]) -> pietura::registry::ItemSummary {
    dovecot.deliver(raw);
    env.registered_key(&key_of(raw)).await
}

fn channel_dir(dovecot: &Dovecot, smtp: &SmtpServer, authenticity: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = format!(
        "[acknowledgement]\nfrom = \"Pašvaldības dokumenti <dokumenti@example.lv>\"\nmunicipality = \"Parauga novada pašvaldība\"\ncontact = \"tālr. 65400000\"\n\
         [acknowledgement.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
         [authenticity]\n{authenticity}\n",
        smtp.port
    );
    std::fs::write(
        dir.path().join("epasts.toml"),
        dovecot.channel_file(INSTANCE, &extra),
    )
    .expect("channel file");
    dir
}

async fn start(channels_dir: &Path) -> TestEnv {
    let mut opts = Options::new(Backend::Amqp);
    opts.channels_from = channels_dir.to_path_buf();
    TestEnv::start(opts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_mail_is_registered_but_not_threaded_bounced_or_acknowledged() {
    let domain = SenderDomain::new();
    let records = domain.records();
    let records: Vec<(&str, &str)> = records
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let dns = Dns::start(&records);
    let dovecot = Dovecot::start();
    let mail_dir = tempfile::tempdir().expect("temp dir");
    let maildir = mail_dir.path().join("maildir");
    let smtp = SmtpServer::start(&maildir);
    let dir = channel_dir(
        &dovecot,
        &smtp,
        &format!(
            "mode = \"evaluate\"\nnameservers = [\"{}\"]\n",
            dns.nameserver()
        ),
    );
    let env = start(dir.path()).await;

    // A properly signed mail from the citizen's domain: proven, acknowledged.
    let first = domain.sign(&mail(
        CITIZEN,
        SENDER_MTA,
        "Iesniegums par būvatļauju",
        "Lūdzu izsniegt būvatļauju.",
        "",
    ));
    let item = hand_in(&env, &dovecot, &first).await;
    assert_eq!(
        item.sender_authenticity.as_deref(),
        Some("pass"),
        "{item:?}"
    );
    let msg = env.message_of(&item).await;
    let proven = msg.sender_authenticity.expect("verdict on the message");
    assert_eq!(
        (
            proven.dkim.as_str(),
            proven.spf.as_str(),
            proven.dmarc.as_str()
        ),
        ("pass", "pass", "pass"),
        "{proven:?}"
    );
    let acks = wait_acknowledgements(&maildir, CITIZEN, 1).await;
    let ack_id = header(&acks[0], "Message-ID")
        .expect("our Message-ID")
        .to_string();

    // The citizen's signed answer to our acknowledgement is threaded.
    let reply = domain.sign(&mail(
        CITIZEN,
        SENDER_MTA,
        &format!("Re: Iesniegums [Nr. {}]", item.registration_number),
        "Papildinu iesniegumu.",
        &format!("In-Reply-To: {ack_id}\r\nReferences: {ack_id}\r\n"),
    ));
    let follow = hand_in(&env, &dovecot, &reply).await;
    assert_eq!(follow.linked_item_id.as_deref(), Some(item.id.as_str()));
    assert_eq!(follow.sender_authenticity.as_deref(), Some("pass"));
    wait_acknowledgements(&maildir, CITIZEN, 2).await;

    // A stranger forges the citizen's From: (unsigned, from another
    // server): registered, but not let into the case and not acknowledged.
    let forged = mail(
        CITIZEN,
        "203.0.113.9",
        &format!("Re: Iesniegums [Nr. {}]", item.registration_number),
        "Lūdzu nosūtīt man visus lietas dokumentus.",
        &format!("In-Reply-To: {ack_id}\r\nReferences: {ack_id}\r\n"),
    );
    let intruder = hand_in(&env, &dovecot, &forged).await;
    assert_eq!(
        intruder.linked_item_id, None,
        "a forged mail joined the citizen's case"
    );
    assert_ne!(intruder.rule_id.as_deref(), Some("follow-up"));
    assert_eq!(intruder.sender_authenticity.as_deref(), Some("fail"));
    let msg = env.message_of(&intruder).await;
    let verdict = msg.sender_authenticity.expect("verdict");
    assert_eq!(
        (verdict.spf.as_str(), verdict.dmarc.as_str()),
        ("fail", "fail")
    );

    // A signed mail changed on the way (body appended), sent from a server
    // the domain's SPF does not allow: the signature no longer proves it.
    let mut tampered = domain.sign(&mail(
        CITIZEN,
        "203.0.113.9",
        "Iesniegums",
        "Lūdzu izsniegt būvatļauju.",
        "",
    ));
    tampered.extend_from_slice(b"P.S. un vel viens.\r\n");
    let broken = hand_in(&env, &dovecot, &tampered).await;
    assert_eq!(broken.sender_authenticity.as_deref(), Some("fail"));
    let msg = env.message_of(&broken).await;
    let verdict = msg.sender_authenticity.expect("verdict");
    assert_ne!(verdict.dkim, "pass", "{verdict:?}");
    assert_ne!(
        verdict.dkim, "none",
        "the broken signature was not seen: {verdict:?}"
    );

    // A forged delivery report naming our acknowledgement: not recorded as
    // a bounce, registered as mail for the records officer.
    let bounce = format!(
        "Received: from mta.evil.example (mta.evil.example [203.0.113.9])\r\n\tby mx.example.lv with ESMTP; Mon, 30 Nov 2026 10:00:00 +0200\r\nFrom: Mail Delivery System <MAILER-DAEMON@sender.example>\r\nTo: dokumenti@example.lv\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <bounce-{}@sender.example>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mta.sender.example\r\n\r\nFinal-Recipient: rfc822; {CITIZEN}\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: dokumenti@example.lv\r\nTo: {CITIZEN}\r\nMessage-ID: {ack_id}\r\nSubject: Re: Iesniegums\r\n--b--\r\n",
        uuid::Uuid::now_v7()
    );
    let registered = hand_in(&env, &dovecot, bounce.as_bytes()).await;
    assert_eq!(registered.sender_authenticity.as_deref(), Some("fail"));
    let audit = env.daemon.registry.audit_of(&item.id).await.expect("audit");
    assert!(
        !audit.iter().any(|a| a.2 == "reply_bounced"),
        "a forged report marked our answer as bounced: {audit:?}"
    );

    // No acknowledgement went to the forged sender (backscatter), and the
    // item API says why, with the verdict.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        acknowledgements_to(&maildir, CITIZEN).len(),
        2,
        "only the proven mails are acknowledged"
    );
    let shown = env
        .get_json(&format!("/api/v1/items/{}", intruder.id))
        .await;
    assert_eq!(shown["answer"]["state"], "not_sent", "{shown}");
    assert!(
        shown["answer"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not proven")),
        "{shown}"
    );
    assert_eq!(shown["item"]["sender_authenticity"], "fail", "{shown}");
    assert_eq!(shown["sender_authenticity"]["spf"], "fail", "{shown}");

    // The desk's item page shows the verdict.
    let reader = support::desk::DeskClient::new(&env);
    support::desk::add_accounts(&env).await;
    let (user, password) = support::desk::READER;
    assert_eq!(reader.sign_in(user, password).await, 303);
    let (status, page) = reader
        .page(&format!("/desk/items/{}?lang=en", intruder.id))
        .await;
    assert_eq!(status, 200);
    assert!(
        page.contains("id=\"item-authenticity\" data-verdict=\"fail\"")
            && page.contains("possibly forged"),
        "{page}"
    );
    let (_, page) = reader
        .page(&format!("/desk/items/{}?lang=en", item.id))
        .await;
    assert!(page.contains("data-verdict=\"pass\""), "{page}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_relays_verdict_is_believed_only_in_its_own_top_most_header() {
    let dovecot = Dovecot::start();
    let mail_dir = tempfile::tempdir().expect("temp dir");
    let maildir = mail_dir.path().join("maildir");
    let smtp = SmtpServer::start(&maildir);
    let dir = channel_dir(
        &dovecot,
        &smtp,
        "mode = \"trusted_relay\"\nauthserv_id = \"mx.example.lv\"\n",
    );
    let env = start(dir.path()).await;
    let proven = mail(CITIZEN, SENDER_MTA, "Iesniegums", "Lūdzu būvatļauju.", "");
    let mut raw = b"Authentication-Results: mx.example.lv; spf=pass smtp.mailfrom=sender.example;\r\n dkim=pass header.d=sender.example; dmarc=pass header.from=sender.example\r\n".to_vec();
    raw.extend_from_slice(&proven);
    let item = hand_in(&env, &dovecot, &raw).await;
    assert_eq!(item.sender_authenticity.as_deref(), Some("pass"));
    wait_acknowledgements(&maildir, CITIZEN, 1).await;

    // The sender's own "pass" under our relay's "fail" is not believed.
    let mut raw = b"Authentication-Results: mx.example.lv; spf=fail smtp.mailfrom=sender.example; dkim=none; dmarc=fail header.from=sender.example\r\nAuthentication-Results: mx.example.lv; dmarc=pass\r\n".to_vec();
    raw.extend_from_slice(&mail(CITIZEN, "203.0.113.9", "Iesniegums 2", "Teksts.", ""));
    let forged = hand_in(&env, &dovecot, &raw).await;
    assert_eq!(forged.sender_authenticity.as_deref(), Some("fail"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(acknowledgements_to(&maildir, CITIZEN).len(), 1);
    env.stop().await;
}

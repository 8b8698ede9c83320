//! Cross-channel near-duplicates (`src/enrich/duplicates.rs`): the same
//! Latvian letter arriving by e-mail and as a scan (OCR text without
//! diacritics, a few wrong letters) is linked both ways, with its
//! similarity, audit-logged, shown on both item pages and marked in the
//! review queue; an unrelated letter from the same sender in the same days
//! and the same letter received outside the window are not; a redelivered
//! scan is registered once and linked once. Nothing is merged or dropped.
//! Runs on the embedded bus over SQLite and on RabbitMQ + PostgreSQL, the
//! real engine through TestEnv.

mod support;

use chrono::{Duration, Utc};
use pietura::message::{ChannelKind, ChannelRef, IntakeMessage};
use pietura::registry::ItemSummary;
use support::desk::{DeskClient, OFFICER, add_accounts};
use support::{Backend, Options, TestEnv};

const LETTER: &str = "Labdien! Lūdzu izsniegt būvatļauju šķūņa būvniecībai manā \
    zemesgabalā Kalnu ielā 12, Ogrē. Pielikumā pievienoju zemes robežu plānu, \
    būvprojektu minimālā sastāvā un īpašuma tiesības apliecinošu dokumentu. \
    Atbildi lūdzu sūtīt uz manu elektroniskā pasta adresi. Ar cieņu, Anna Kalniņa";

/// The letter as OCR read the paper copy: no diacritics, some letters wrong.
const SCANNED: &str = "Labdien! Ludzu izsniegt buvatlauju skuna buvniecibai mana \
    zemesgabala Ka1nu iela 12, Ogre. Pielikuma pievienoju zemes robezu pl4nu, \
    buvprojektu minimala sastava un ipasuma tiesibas apliecinosu dokumentu. \
    Atbi1di ludzu sutit uz manu elektroniska pasta adresi. Ar cienu, Anna Kalnina";

/// Another letter from the same sender in the same days.
const UNRELATED: &str = "Labdien! Lūdzu piešķirt vienreizēju sociālo pabalstu sakarā \
    ar ugunsgrēku mājā, kurā dzīvoju kopā ar ģimeni. Pielikumā pievienoju izziņu \
    no ugunsdzēsības dienesta un ģimenes locekļu sarakstu. Ar cieņu, Anna Kalniņa";

fn message(
    kind: ChannelKind,
    instance: &str,
    key: &str,
    days_ago: i64,
    body: &str,
) -> IntakeMessage {
    let mut msg = IntakeMessage::new(
        ChannelRef {
            kind,
            instance: instance.into(),
        },
        key.into(),
        body.into(),
    );
    msg.received_at = Utc::now() - Duration::days(days_ago);
    msg
}

fn from_anna(mut msg: IntakeMessage, subject: &str) -> IntakeMessage {
    msg.sender.name = Some("Anna Kalniņa".into());
    msg.sender.email = Some("anna.kalnina@example.lv".into());
    msg.subject = Some(subject.into());
    msg
}

async fn links(env: &TestEnv, item: &ItemSummary) -> Vec<(String, String, i64, String)> {
    env.daemon
        .registry
        .duplicates_of(&item.id)
        .await
        .expect("duplicates")
        .into_iter()
        .map(|d| (d.other_number, d.other_channel, d.percent, d.reason))
        .collect()
}

async fn linked_lines(env: &TestEnv, item: &ItemSummary) -> Vec<String> {
    env.daemon
        .registry
        .audit_of(&item.id)
        .await
        .expect("audit")
        .into_iter()
        .filter(|a| a.2 == "duplicate_linked")
        .map(|a| a.3)
        .collect()
}

async fn the_same_letter_by_email_and_post_is_linked(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;

    // The same letter two months ago (another sender): outside the window.
    let mut old = message(ChannelKind::Email, "pasts", "dup:old", 60, LETTER);
    old.sender.email = Some("janis.berzins@example.lv".into());
    old.subject = Some("Būvatļaujas pieprasījums".into());
    env.publish(&old).await;
    let old = env.registered_key("dup:old").await;

    let email = from_anna(
        message(ChannelKind::Email, "pasts", "dup:email", 2, LETTER),
        "Būvatļaujas pieprasījums",
    );
    env.publish(&email).await;
    let email = env.registered_key("dup:email").await;

    let unrelated = from_anna(
        message(
            ChannelKind::WebForm,
            "iesniegums",
            "dup:unrelated",
            1,
            UNRELATED,
        ),
        "Pabalsts",
    );
    env.publish(&unrelated).await;
    let unrelated = env.registered_key("dup:unrelated").await;

    // The paper copy, scanned: no sender read from it; low OCR confidence
    // sends it to review. Delivered twice.
    let mut scan = message(ChannelKind::Scan, "pasts-skeneris", "dup:scan", 0, SCANNED);
    scan.subject = Some("Buvatlaujas pieprasijums".into());
    scan.review_reason = Some("OCR confidence 62 % is below the channel's 70 %".into());
    env.publish(&scan).await;
    env.publish(&scan).await;
    let marker = message(
        ChannelKind::WebForm,
        "iesniegums",
        "dup:marker",
        0,
        "Lūdzu informēt par atkritumu izvešanas grafiku.",
    );
    env.publish(&marker).await;
    env.registered_key("dup:marker").await;
    let scan = env.registered_key("dup:scan").await;
    assert_eq!(
        env.daemon.registry.count().await.expect("count"),
        5,
        "every item registered once: nothing merged, dropped or registered twice"
    );

    // Linked both ways, with the text's similarity.
    let scan_links = links(&env, &scan).await;
    assert_eq!(scan_links.len(), 1, "{scan_links:?}");
    let (number, channel, percent, reason) = &scan_links[0];
    assert_eq!(number, &email.registration_number);
    assert_eq!(channel, "email");
    assert_eq!(reason, "text", "the scan names no sender");
    assert!((50..100).contains(percent), "similarity {percent} %");
    assert_eq!(
        links(&env, &email).await,
        vec![(
            scan.registration_number.clone(),
            "scan".to_string(),
            *percent,
            "text".to_string()
        )]
    );
    // The same sender's other letter, and the letter outside the window: not linked.
    assert_eq!(links(&env, &unrelated).await, vec![]);
    assert_eq!(links(&env, &old).await, vec![]);

    // Audit-logged once on each, however often the scan was delivered.
    let on_scan = linked_lines(&env, &scan).await;
    assert_eq!(on_scan.len(), 1, "{on_scan:?}");
    assert!(
        on_scan[0].contains(&email.registration_number),
        "{on_scan:?}"
    );
    let on_email = linked_lines(&env, &email).await;
    assert_eq!(on_email.len(), 1, "{on_email:?}");
    assert!(
        on_email[0].contains(&scan.registration_number),
        "{on_email:?}"
    );

    // The officer sees it on both item pages and in the review queue.
    add_accounts(&env).await;
    let desk = DeskClient::new(&env);
    assert_eq!(desk.sign_in(OFFICER.0, OFFICER.1).await, 303);
    let (status, page) = desk.page(&format!("/desk/items/{}", email.id)).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Iespējams dublikāts"), "{page}");
    let shown = format!(
        "Nr. {}</a> (skenēts pasts, {percent} %)",
        scan.registration_number
    );
    assert!(page.contains(&shown), "{shown} not on the page:\n{page}");
    let (_, page) = desk.page(&format!("/desk/items/{}?lang=en", scan.id)).await;
    assert!(page.contains("Possible duplicate"), "{page}");
    let shown = format!(
        "No. {}</a> (e-mail, {percent} %)",
        email.registration_number
    );
    assert!(page.contains(&shown), "{shown} not on the page:\n{page}");
    let (_, page) = desk.page(&format!("/desk/items/{}", unrelated.id)).await;
    assert!(!page.contains("Iespējams dublikāts"), "{page}");
    // The language chosen last is kept by the session: ask for Latvian.
    let (_, queue) = desk.page("/desk?lang=lv").await;
    let row = queue
        .split("<tr data-href=")
        .find(|r| r.contains(&scan.registration_number))
        .unwrap_or_else(|| panic!("the scan is not in the review queue:\n{queue}"));
    assert!(row.contains("duplicate-mark"), "{row}");
    assert!(row.contains("iespējams dublikāts"), "{row}");

    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_on_the_embedded_bus() {
    the_same_letter_by_email_and_post_is_linked(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_on_rabbitmq_and_postgresql() {
    the_same_letter_by_email_and_post_is_linked(Backend::Amqp).await;
}

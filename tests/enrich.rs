//! The engine's enrichment step (`src/enrich.rs`): doors only describe what
//! an item refers to (`metadata.<kind>.refers_to`); the engine links a
//! follow-up to its item only when it comes from that item's sender, and
//! records a delivery report on the item once, without registering it —
//! whatever door the message came through, and however often it is
//! delivered. Runs on the embedded bus over SQLite and on RabbitMQ +
//! PostgreSQL.

mod support;

use pietura::enrich::{DeliveryReport, REFERS_TO, References};
use pietura::message::{ChannelKind, ChannelRef, IntakeMessage};
use pietura::registry::ItemSummary;
use support::{Backend, Options, TestEnv};

/// A message from the form's channel naming what it refers to.
fn referring(key: &str, from: &str, refs: &References) -> IntakeMessage {
    let mut msg = IntakeMessage::new(
        ChannelRef {
            kind: ChannelKind::WebForm,
            instance: "iesniegums".into(),
        },
        key.into(),
        "Papildinu savu iesniegumu ar vēl vienu dokumentu.".into(),
    );
    msg.subject = Some("Papildinājums".into());
    msg.sender.email = Some(from.into());
    msg.metadata.insert(
        ChannelKind::WebForm.as_str().into(),
        serde_json::json!({ REFERS_TO: refs }),
    );
    msg
}

async fn audit(env: &TestEnv, item: &ItemSummary) -> Vec<(String, String, String, String)> {
    env.daemon.registry.audit_of(&item.id).await.expect("audit")
}

async fn follow_ups_are_linked_only_from_the_items_sender_and_bounces_recorded_once(
    backend: Backend,
) {
    let env = TestEnv::start(Options::new(backend)).await;
    // The form's sender is anna.kalnina@example.lv.
    let first = env
        .submit_item("Būvatļauja", "Lūdzu izsniegt būvatļauju šķūnim.")
        .await;

    // By number, from the item's sender (another case of letters): linked.
    let by_number = References {
        number: Some(first.registration_number.clone()),
        ..References::default()
    };
    let own = referring("enrich:own", "Anna.Kalnina@example.lv", &by_number);
    env.publish(&own).await;
    let (own_item, stored) = env.registered_message("enrich:own").await;
    let link = stored.follow_up_of().expect("the follow-up is linked");
    assert_eq!(link.item_id, first.id);
    assert_eq!(link.registration_number, first.registration_number);
    assert_eq!(link.matched_by, "subject_tag");
    assert_eq!(
        link.unit_id, first.unit_id,
        "a follow-up goes to the same unit"
    );
    env.assert_stored_message_matches_schema(&own_item.id).await;

    // By the answer it replies to, from a stranger: a new item, not linked.
    let by_reply = References {
        replies_to: vec![first.id.clone()],
        ..References::default()
    };
    let stranger = referring("enrich:stranger", "mallory@example.com", &by_reply);
    env.publish(&stranger).await;
    let (_, stored) = env.registered_message("enrich:stranger").await;
    assert_eq!(stored.follow_up_of(), None, "linked into a stranger's case");
    // The same reference from the sender: linked by the reply.
    let reply = referring("enrich:reply", "anna.kalnina@example.lv", &by_reply);
    env.publish(&reply).await;
    let (_, stored) = env.registered_message("enrich:reply").await;
    assert_eq!(
        stored.follow_up_of().map(|f| (f.item_id, f.matched_by)),
        Some((first.id.clone(), "in_reply_to".to_string()))
    );
    let before = env.daemon.registry.count().await.expect("count");

    // A delivery report about our answer: recorded on the item, not
    // registered, and delivered twice it is recorded once.
    let report = References {
        report: Some(DeliveryReport {
            items: vec![first.id.clone()],
            key: "0".repeat(64),
            status: Some("5.1.1".into()),
            diagnostic: Some("smtp; 550 5.1.1 no such user".into()),
        }),
        ..References::default()
    };
    let bounce = referring("enrich:bounce", "mailer-daemon@example.lv", &report);
    env.publish(&bounce).await;
    env.publish(&bounce).await;
    // Something after both, to know the engine has been past them.
    let marker = referring(
        "enrich:marker",
        "anna.kalnina@example.lv",
        &References::default(),
    );
    env.publish(&marker).await;
    env.registered_key("enrich:marker").await;
    support::wait_until(support::WAIT, "the bounce recorded on the item", || async {
        audit(&env, &first)
            .await
            .iter()
            .any(|a| a.2 == "reply_bounced")
    })
    .await;
    let bounces: Vec<_> = audit(&env, &first)
        .await
        .into_iter()
        .filter(|a| a.2 == "reply_bounced")
        .collect();
    assert_eq!(bounces.len(), 1, "recorded once: {bounces:?}");
    assert!(bounces[0].3.contains("5.1.1"), "{bounces:?}");
    assert_eq!(
        env.daemon.registry.count().await.expect("count"),
        before + 1,
        "the report became an item (only the marker may)"
    );
    assert!(
        env.daemon
            .registry
            .find_by_key("enrich:bounce")
            .await
            .expect("lookup")
            .is_none()
    );

    // A report naming no item we know is registered as a message.
    let unknown = References {
        report: Some(DeliveryReport {
            items: vec!["01890000-0000-7000-8000-000000000000".into()],
            key: "1".repeat(64),
            status: None,
            diagnostic: None,
        }),
        ..References::default()
    };
    let stray = referring("enrich:stray", "mailer-daemon@example.lv", &unknown);
    env.publish(&stray).await;
    env.registered_key("enrich:stray").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_and_bounces_on_the_embedded_bus() {
    follow_ups_are_linked_only_from_the_items_sender_and_bounces_recorded_once(Backend::Embedded)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_and_bounces_on_rabbitmq_and_postgresql() {
    follow_ups_are_linked_only_from_the_items_sender_and_bounces_recorded_once(Backend::Amqp).await;
}

//! End to end: a citizen's form → the bus → the rules engine → the registry →
//! a unit queue, on real RabbitMQ + PostgreSQL and on the embedded bus over
//! SQLite. Each scenario runs on both.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use pietura::bus::Route;
use pietura::message::{ChannelKind, ChannelRef, IntakeMessage};
use support::{Backend, CuttableProxy, Options, TestEnv};

const BUILDING: (&str, &str) = (
    "Būvatļauja",
    "Lūdzu izsniegt būvatļauju šķūņa būvniecībai Bebrenes pagastā.",
);
const NOTHING: (&str, &str) = ("Sveiki", "Sveiki, vai jums garšo kafija?");

async fn form_item_is_registered_and_routed_to_its_unit(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;
    let token = env.form_token().await;
    let (status, receipt) = env.submit(&token, BUILDING.0, BUILDING.1).await;
    assert_eq!(status, 201, "receipt: {receipt}");
    let number = receipt["registration_number"]
        .as_str()
        .expect("a number")
        .to_string();
    assert!(
        number.starts_with("4/2026/"),
        "Būvvalde's index is 4: {number}"
    );
    assert!(receipt["reply_due"].is_string(), "receipt: {receipt}");

    let item = env
        .registered(receipt["tracking_id"].as_str().expect("tracking id"))
        .await;
    assert_eq!(item.state, "routed");
    assert_eq!(item.unit_id.as_deref(), Some("buvvalde"));
    assert_eq!(item.registration_number, number);
    assert_eq!(item.sender_name.as_deref(), Some("Anna Kalniņa"));
    env.assert_stored_message_matches_schema(&item.id).await;

    let notices = env.wait_routed("unit.buvvalde", 1).await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].registration_number, number);
    assert!(
        env.drain_routed("review").await.is_empty(),
        "nothing for review"
    );
    env.stop().await;
}

async fn unmatched_item_is_registered_for_review(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;
    let token = env.form_token().await;
    let (status, receipt) = env.submit(&token, NOTHING.0, NOTHING.1).await;
    assert_eq!(status, 201, "receipt: {receipt}");
    let number = receipt["registration_number"].as_str().expect("a number");
    assert!(
        number.starts_with("0/2026/"),
        "unclassified index 0: {number}"
    );
    let item = env
        .registered(receipt["tracking_id"].as_str().expect("tracking id"))
        .await;
    assert_eq!(item.state, "review");
    assert_eq!(item.unit_id, None);
    assert!(item.review_reason.is_some());
    let notices = env.wait_routed("review", 1).await;
    assert_eq!(notices[0].registration_number, number);
    env.stop().await;
}

async fn same_submission_twice_registers_once(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;
    // A double click: the same page token twice.
    let token = env.form_token().await;
    let (s1, r1) = env.submit(&token, BUILDING.0, BUILDING.1).await;
    let (s2, r2) = env.submit(&token, BUILDING.0, BUILDING.1).await;
    assert_eq!((s1, s2), (201, 201), "{r1} {r2}");
    assert_eq!(r1["registration_number"], r2["registration_number"]);

    // A redelivery: the very same message handed to the bus twice.
    let mut msg = IntakeMessage::new(
        ChannelRef {
            kind: ChannelKind::WebForm,
            instance: "iesniegums".into(),
        },
        "web_form:iesniegums:redelivered".into(),
        NOTHING.1.into(),
    );
    msg.subject = Some(NOTHING.0.into());
    let payload = msg.encode();
    for _ in 0..2 {
        env.daemon
            .bus
            .publish(Route::Intake(&msg), &payload, &msg.id.to_string())
            .await
            .expect("publish");
    }
    let item = env.registered(&msg.id.to_string()).await;
    assert_eq!(item.state, "review");
    // Both deliveries processed: the second finds the first's item.
    let routed = env.wait_routed("review", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late = env.drain_routed("review").await;
    assert_eq!(
        routed.len() + late.len(),
        1,
        "one notice per item, not per delivery"
    );
    assert_eq!(env.daemon.registry.count().await.expect("count"), 2);
    env.stop().await;
}

async fn malformed_message_is_dead_lettered_and_consumer_keeps_going(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;
    let carrier = IntakeMessage::new(
        ChannelRef {
            kind: ChannelKind::WebForm,
            instance: "iesniegums".into(),
        },
        "carrier".into(),
        String::new(),
    );
    let poison: [&[u8]; 3] = [
        b"{not json at all",
        br#"{"schema_version": 99, "id": "x"}"#,
        br#"{"schema_version": 1}"#,
    ];
    for (i, p) in poison.iter().enumerate() {
        env.daemon
            .bus
            .publish(Route::Intake(&carrier), p, &format!("poison-{i}"))
            .await
            .expect("publish poison");
    }
    let token = env.form_token().await;
    let (status, receipt) = env.submit(&token, BUILDING.0, BUILDING.1).await;
    assert_eq!(
        status, 201,
        "the engine still registers after poison: {receipt}"
    );

    // Dead-lettered, then parked with their bytes (src/parked.rs).
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let parked = env.daemon.registry.parked().await.expect("parked");
        if parked.len() == 3 {
            let mut bytes: Vec<Vec<u8>> = parked.into_iter().map(|p| p.payload).collect();
            bytes.sort();
            let mut sent: Vec<Vec<u8>> = poison.iter().map(|p| p.to_vec()).collect();
            sent.sort();
            assert_eq!(bytes, sent, "each poison message parked as it was");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of 3 poison messages dead-lettered and parked",
            parked.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(env.daemon.registry.count().await.expect("count"), 1);
    env.stop().await;
}

async fn invalid_rules_are_refused_and_the_old_set_keeps_routing(backend: Backend) {
    let mut opts = Options::new(backend);
    opts.watch_rules = true;
    let env = TestEnv::start(opts).await;
    let mut status = env.daemon.rules_status.clone();
    let old = status.borrow().version.clone();

    // An administrator saves a broken edit: an unknown unit on line 5.
    let bad = env.rules_dir.join("routing/55-edit.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nid = \"kafija\"\npriority = 900\n[rule.then]\nunit = \"kafejnica\"\n[rule.when]\nkeywords = [\"kafij*\"]\n",
    )
    .expect("write rules edit");
    tokio::time::timeout(support::WAIT, status.changed())
        .await
        .expect("the watcher reports the edit")
        .expect("watcher alive");
    let refused = status
        .borrow()
        .refused
        .clone()
        .expect("the edit is refused");
    assert!(refused.contains("55-edit.toml:5"), "file:line in {refused}");
    assert!(refused.contains("kafejnica"), "{refused}");
    assert_eq!(status.borrow().version, old);
    assert_eq!(env.daemon.rules.load().version, old);

    let token = env.form_token().await;
    let (_, receipt) = env.submit(&token, NOTHING.0, NOTHING.1).await;
    let first = env
        .registered(receipt["tracking_id"].as_str().expect("tracking id"))
        .await;
    assert_eq!(first.state, "review", "old set still routes");
    assert_eq!(first.ruleset_version, old);

    // The fix goes live at once.
    std::fs::write(
        &bad,
        "[[rule]]\nid = \"kafija\"\npriority = 900\n[rule.then]\nunit = \"kanceleja\"\n[rule.when]\nkeywords = [\"kafij*\"]\n",
    )
    .expect("write rules fix");
    tokio::time::timeout(support::WAIT, status.changed())
        .await
        .expect("the watcher reports the fix")
        .expect("watcher alive");
    let now = status.borrow().clone();
    assert_eq!(now.refused, None);
    assert_ne!(now.version, old);
    let token = env.form_token().await;
    let (_, receipt) = env.submit(&token, NOTHING.0, NOTHING.1).await;
    let item = env
        .registered(receipt["tracking_id"].as_str().expect("tracking id"))
        .await;
    assert_eq!(item.unit_id.as_deref(), Some("kanceleja"));
    assert_eq!(item.rule_id.as_deref(), Some("kafija"));

    // Each item is explained by the rule set that registered it, not by
    // today's: the first one still shows that no rule matched.
    let explained = env
        .http
        .get(format!(
            "{}/api/v1/items/{}/explanation",
            env.base,
            // A number has slashes: sent percent-encoded, as one segment.
            first.registration_number.replace('/', "%2F")
        ))
        .send()
        .await
        .expect("explanation request");
    assert_eq!(explained.status().as_u16(), 200);
    let explained: serde_json::Value = explained.json().await.expect("explanation JSON");
    assert_eq!(explained["decision"]["ruleset_version"], old.as_str());
    assert_eq!(explained["decision"]["unit"], serde_json::Value::Null);
    assert_eq!(
        explained["decision"]["review_reason"],
        "no routing rule matched"
    );
    let tried = explained["trace"].as_array().expect("trace");
    assert!(tried.len() > 10, "every rule tried is listed: {tried:?}");
    assert!(
        tried
            .iter()
            .all(|t| t["matched"] == false && t["rule_id"] != "kafija")
    );

    let now_item = env
        .daemon
        .registry
        .find(&item.id)
        .await
        .expect("find")
        .expect("item");
    let decision = pietura::explain::explain(&env.daemon.registry, &now_item)
        .await
        .expect("explain the fixed-rules item");
    assert_eq!(decision.rule_id.as_deref(), Some("kafija"));
    let kafija = decision
        .trace
        .iter()
        .find(|t| t.rule_id == "kafija")
        .expect("kafija in the trace");
    assert!(
        kafija.matched && kafija.location.contains("routing/55-edit.toml:"),
        "{kafija:?}"
    );
    env.stop().await;
}

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod amqp_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Backend::Amqp).await;
                }
            )*
        }
        mod embedded_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Backend::Embedded).await;
                }
            )*
        }
    };
}

on_both_backends!(
    form_item_is_registered_and_routed_to_its_unit,
    unmatched_item_is_registered_for_review,
    same_submission_twice_registers_once,
    malformed_message_is_dead_lettered_and_consumer_keeps_going,
    invalid_rules_are_refused_and_the_old_set_keeps_routing,
);

/// Cutting the broker connection while citizens submit: every submission the
/// citizen saw accepted (2xx) ends registered exactly once and routed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_broker_connection_loses_nothing() {
    support::require("RabbitMQ", &support::amqp_url()).await;
    let upstream = {
        let url = support::amqp_url();
        let after = url.split('@').next_back().unwrap_or(&url).to_string();
        after.split('/').next().unwrap_or(&after).to_string()
    };
    let proxy = CuttableProxy::start(upstream).await;
    let mut opts = Options::new(Backend::Amqp);
    opts.amqp_url = Some(proxy.url());
    let env = std::sync::Arc::new(TestEnv::start(opts).await);

    const N: usize = 60;
    let mut submissions = tokio::task::JoinSet::new();
    for i in 0..N {
        let env = env.clone();
        submissions.spawn(async move {
            tokio::time::sleep(Duration::from_millis(25 * i as u64)).await;
            let token = env.form_token().await;
            env.submit(
                &token,
                "Būvatļauja",
                &format!("Lūdzu būvatļauju, pieprasījums {i}."),
            )
            .await
        });
    }
    // Three cuts spread over the submissions.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        proxy.cut_all();
    }
    let mut accepted = Vec::new();
    while let Some(res) = submissions.join_next().await {
        let (status, receipt) = res.expect("submission task");
        if status == 201 || status == 202 {
            accepted.push(
                receipt["tracking_id"]
                    .as_str()
                    .expect("tracking id")
                    .to_string(),
            );
        } else {
            // The citizen was told nothing was accepted and to retry.
            assert_eq!(status, 503, "only 503 may refuse: {receipt}");
        }
    }
    assert!(
        accepted.len() >= N / 2,
        "most submissions accepted: {}",
        accepted.len()
    );
    let mut numbers = HashSet::new();
    for id in &accepted {
        let item = env.registered(id).await;
        assert_eq!(item.state, "routed");
        assert!(
            numbers.insert(item.registration_number.clone()),
            "one number per item"
        );
    }
    let notices = env.wait_routed("unit.buvvalde", accepted.len()).await;
    let routed: HashSet<_> = notices
        .iter()
        .map(|n| n.registration_number.clone())
        .collect();
    assert!(
        numbers.is_subset(&routed),
        "every accepted item reached its unit queue"
    );
    // Republishing after a cut must not register anything twice: at most
    // one item per submission (each had its own page token).
    let count = env.daemon.registry.count().await.expect("count");
    assert!(count as usize <= N, "{count} items for {N} submissions");
    match std::sync::Arc::try_unwrap(env) {
        Ok(env) => env.stop().await,
        Err(_) => panic!("test env still shared"),
    }
}

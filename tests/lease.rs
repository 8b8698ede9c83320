//! Leased work shared by several daemons on one database
//! (`registry::lease`): claims are disjoint, a claim that ran out is taken
//! over, a completion under a stale fencing token is refused; the outbox is
//! published once by three daemons; one hung answer channel does not hold up
//! another. Real PostgreSQL + RabbitMQ, and SQLite + the embedded bus.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use pietura::registry::lease::{DMS, Lease, REPLIES};
use pietura::registry::replies::PendingReply;
use pietura::registry::{Registry, RegistryError};
use pietura::replies::{Replier, ReplyError, ReplyOutcome, ReplyTiming};
use support::{Backend, Options, TestEnv, WAIT, wait_until};

const CHANNEL: &str = "t-lease";

/// Registers `n` form items and queues an answer for each on `channel`
/// (a channel instance no daemon runs, so only the test claims them).
async fn items_with_answers(env: &TestEnv, n: usize, channel: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let item = env
            .submit_item(&format!("Atbilde {i}"), "Lūdzu atbildi.")
            .await;
        queue_answer(env, &item.id, channel, "2000-01-01T00:00:00.000000Z").await;
        ids.push(item.id);
    }
    ids
}

async fn queue_answer(env: &TestEnv, item_id: &str, channel: &str, due: &str) {
    sqlx::query(
        "INSERT INTO replies (item_id, channel_instance, address, created_at, attempts, \
         next_attempt_at) VALUES ($1, $2, 'anna@example.lv', $3, 0, $3) \
         ON CONFLICT (item_id) DO UPDATE SET channel_instance = $2, next_attempt_at = $3, \
         done_at = NULL, outcome = NULL",
    )
    .bind(item_id)
    .bind(channel)
    .bind(due)
    .execute(env.daemon.registry.pool())
    .await
    .expect("queue an answer");
}

/// Another daemon's registry handle: its own connection and holder name.
async fn holder(env: &TestEnv) -> Registry {
    Registry::connect(&env.database_url(), None)
        .await
        .expect("connect as another daemon")
}

fn keys(leases: &[Lease]) -> HashSet<String> {
    leases.iter().map(|l| l.key.clone()).collect()
}

async fn claims_are_disjoint_expire_and_fence(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;
    let ids = items_with_answers(&env, 12, CHANNEL).await;
    let (a, b) = (holder(&env).await, holder(&env).await);

    // Two holders at once: disjoint, together everything due.
    let (got_a, got_b) = tokio::join!(
        a.claim(&REPLIES, Some(CHANNEL), 8, 60),
        b.claim(&REPLIES, Some(CHANNEL), 8, 60)
    );
    let (got_a, got_b) = (got_a.expect("claim A"), got_b.expect("claim B"));
    assert!(
        keys(&got_a).is_disjoint(&keys(&got_b)),
        "both claimed some: {got_a:?} {got_b:?}"
    );
    let all: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        keys(&got_a)
            .union(&keys(&got_b))
            .cloned()
            .collect::<HashSet<_>>(),
        all
    );
    assert!(
        a.claim(&REPLIES, Some(CHANNEL), 20, 60)
            .await
            .expect("claim")
            .is_empty(),
        "a claimed row was claimed again before its claim ran out"
    );
    assert!(
        a.claim(&REPLIES, Some("another-channel"), 20, 60)
            .await
            .expect("claim")
            .is_empty(),
        "the scope was not applied"
    );

    // A's claim runs out (0 s) and B takes the row over.
    let first = got_a[0].clone();
    a.release(&REPLIES, std::slice::from_ref(&first))
        .await
        .expect("release");
    let stale = a.claim(&REPLIES, Some(CHANNEL), 5, 0).await.expect("claim");
    assert_eq!(keys(&stale), HashSet::from([first.key.clone()]));
    let stale = stale[0].clone();
    let taken = b
        .claim(&REPLIES, Some(CHANNEL), 5, 60)
        .await
        .expect("claim");
    assert_eq!(
        keys(&taken),
        HashSet::from([first.key.clone()]),
        "the run-out claim was not taken over"
    );
    let taken = taken[0].clone();
    assert!(taken.token > stale.token, "{taken:?} after {stale:?}");

    // The stale token is refused everywhere; B's claim stands.
    for refused in [
        a.complete(&REPLIES, &stale).await,
        a.renew(&REPLIES, &stale, 60).await,
    ] {
        assert!(
            matches!(refused, Err(RegistryError::LeaseLost { .. })),
            "{refused:?}"
        );
    }
    a.release(&REPLIES, std::slice::from_ref(&stale))
        .await
        .expect("release");
    assert!(
        a.claim(&REPLIES, Some(CHANNEL), 5, 60)
            .await
            .expect("claim")
            .is_empty()
    );
    b.renew(&REPLIES, &taken, 60).await.expect("B renews");
    b.complete(&REPLIES, &taken).await.expect("B completes");

    // An answer claimed by a daemon that then stalls: the one that took it
    // over records it; the stalled one's "sent" is refused, not recorded.
    let stalled: Vec<PendingReply> = a.claim_replies(CHANNEL, 5, 0).await.expect("claim");
    assert_eq!(stalled.len(), 1, "{stalled:?}");
    let fresh = b.claim_replies(CHANNEL, 5, 60).await.expect("claim");
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    b.reply_done(&fresh[0], "sent", serde_json::json!({}))
        .await
        .expect("B records");
    let late = a
        .reply_done(&stalled[0], "sent", serde_json::json!({}))
        .await;
    assert!(
        matches!(late, Err(RegistryError::LeaseLost { .. })),
        "{late:?}"
    );
    let late = a
        .reply_failed(&stalled[0], "late", chrono::Duration::seconds(15))
        .await;
    assert!(
        matches!(late, Err(RegistryError::LeaseLost { .. })),
        "{late:?}"
    );
    let audit = env
        .daemon
        .registry
        .audit_of(&first.key)
        .await
        .expect("audit");
    let replied = audit
        .iter()
        .filter(|(_, _, action, _)| action == "replied")
        .count();
    assert_eq!(replied, 1, "{audit:?}");
    let state = env
        .daemon
        .registry
        .answer_state(&first.key)
        .await
        .expect("state")
        .expect("answer");
    assert_eq!(state.outcome.as_deref(), Some("sent"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_disjoint_expire_and_fence_postgres() {
    claims_are_disjoint_expire_and_fence(Backend::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_disjoint_expire_and_fence_sqlite() {
    claims_are_disjoint_expire_and_fence(Backend::Embedded).await;
}

/// A gateway that never answers (a hung SMTP relay).
struct Hung;

#[async_trait]
impl Replier for Hung {
    async fn reply(&self, _: &PendingReply) -> Result<ReplyOutcome, ReplyError> {
        futures::future::pending().await
    }
}

/// A gateway that accepts and counts.
struct Counting(Arc<AtomicUsize>);

#[async_trait]
impl Replier for Counting {
    async fn reply(&self, _: &PendingReply) -> Result<ReplyOutcome, ReplyError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(ReplyOutcome::Sent(serde_json::json!({})))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_outcome_of_a_taken_over_claim_is_refused() {
    let env = TestEnv::start(Options::new(Backend::Amqp)).await;
    let item = env.submit_item("DMS", "Lūdzu reģistrēt.").await;
    sqlx::query(
        "INSERT INTO dms_registrations (item_id, connector, created_at, attempts, next_attempt_at) \
         VALUES ($1, 'paperless', $2, 0, $2)",
    )
    .bind(&item.id)
    .bind("2000-01-01T00:00:00.000000Z")
    .execute(env.daemon.registry.pool())
    .await
    .expect("queue a DMS registration");
    let (a, b) = (holder(&env).await, holder(&env).await);
    // A claims and its claim runs out at once; B takes the item over.
    let stale = a.claim(&DMS, None, 5, 0).await.expect("claim");
    assert_eq!(keys(&stale), HashSet::from([item.id.clone()]));
    let tasks = b.claim_dms(5).await.expect("claim");
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].attempts, 1, "each claim counts as an attempt");
    let mut late = tasks[0].clone();
    late.lease = stale[0].clone();
    let refused = a
        .dms_failed(&late, "late", chrono::Duration::seconds(5))
        .await;
    assert!(
        matches!(refused, Err(RegistryError::LeaseLost { .. })),
        "{refused:?}"
    );
    let refused = a.dms_done(&late, "doc-a", None).await;
    assert!(
        matches!(refused, Err(RegistryError::LeaseLost { .. })),
        "{refused:?}"
    );
    b.dms_done(&tasks[0], "doc-b", None)
        .await
        .expect("B records");
    let state = env
        .daemon
        .registry
        .dms_state(&item.id)
        .await
        .expect("state")
        .expect("row");
    assert_eq!(
        (state.state, state.external_id.as_deref()),
        ("registered", Some("doc-b"))
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hung_channel_does_not_hold_up_another() {
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    // The hung channel's answers are due first.
    let hung = items_with_answers(&env, 3, "t-smtp").await;
    let sms = env.submit_item("SMS", "Lūdzu atbildi.").await;
    queue_answer(&env, &sms.id, "t-sms", "2001-01-01T00:00:00.000000Z").await;
    let sent = Arc::new(AtomicUsize::new(0));
    let repliers: HashMap<String, Arc<dyn Replier>> = HashMap::from([
        ("t-smtp".to_string(), Arc::new(Hung) as Arc<dyn Replier>),
        (
            "t-sms".to_string(),
            Arc::new(Counting(sent.clone())) as Arc<dyn Replier>,
        ),
    ]);
    let stop = tokio_util::sync::CancellationToken::new();
    let timing = ReplyTiming {
        poll: std::time::Duration::from_millis(100),
        send_limit: std::time::Duration::from_secs(1),
        ..ReplyTiming::default()
    };
    let task = tokio::spawn(pietura::replies::run(
        holder(&env).await,
        repliers,
        timing,
        stop.clone(),
    ));
    wait_until(
        WAIT,
        "the SMS answer sent while the SMTP relay hangs",
        || {
            let sent = sent.clone();
            async move { sent.load(Ordering::SeqCst) == 1 }
        },
    )
    .await;
    let state = env
        .daemon
        .registry
        .answer_state(&sms.id)
        .await
        .expect("state")
        .expect("answer");
    assert_eq!(state.outcome.as_deref(), Some("sent"));
    // The hung sends are cut off (well inside their claims) and retried later.
    let registry = &env.daemon.registry;
    wait_until(WAIT, "the hung sends cut off", || async {
        let mut cut = 0;
        for id in &hung {
            let state = registry
                .answer_state(id)
                .await
                .expect("state")
                .expect("answer");
            assert_eq!(state.done_at, None, "{state:?}");
            if state
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("did not finish within 1 s"))
            {
                cut += 1;
            }
        }
        cut == hung.len()
    })
    .await;
    stop.cancel();
    task.abort();
    env.stop().await;
}

/// Every routed notice waiting in the test's unit and review queues, by item.
async fn notices_by_item(env: &TestEnv) -> HashMap<String, usize> {
    let mut queues: Vec<String> = env
        .daemon
        .rules
        .load()
        .units
        .keys()
        .map(|u| format!("unit.{u}"))
        .collect();
    queues.push("review".into());
    let mut count = HashMap::new();
    for queue in queues {
        for notice in env.drain_routed(&queue).await {
            *count.entry(notice.item_id).or_insert(0) += 1;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_publish_each_unit_notice_once() {
    const N: usize = 300;
    let env = TestEnv::start(Options::new(Backend::Amqp)).await;
    let second = env.another_daemon().await;
    let third = env.another_daemon().await;
    let bases = [
        env.base.clone(),
        format!("http://{}", second.addr),
        format!("http://{}", third.addr),
    ];
    // Submitted through all three doors at once.
    let env_ref = &env;
    let tracking: Vec<String> = futures::stream::iter(0..N)
        .map(|i| {
            let base = bases[i % bases.len()].clone();
            async move { submit_at(env_ref, &base, i).await }
        })
        .buffer_unordered(24)
        .collect()
        .await;
    for id in &tracking {
        env.registered(id).await;
    }
    wait_until(WAIT, "the outbox drained", || async {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox")
            .fetch_one(env.daemon.registry.pool())
            .await
            .expect("outbox count");
        n == 0
    })
    .await;
    // Late duplicates would be published by now too.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let count = notices_by_item(&env).await;
    let total: usize = count.values().sum();
    let twice = count.values().filter(|&&n| n > 1).count();
    eprintln!(
        "{N} items, {} with a notice, {total} notices, {twice} items published more than once",
        count.len()
    );
    assert_eq!(count.len(), N, "not every item's notice was delivered");
    assert_eq!(
        total, N,
        "{twice} items' notices were published more than once"
    );
    second.shutdown().await;
    third.shutdown().await;
    env.stop().await;
}

/// Submits form `i` at the daemon at `base`; its tracking id.
async fn submit_at(env: &TestEnv, base: &str, i: usize) -> String {
    let page = env
        .http
        .get(format!("{base}/forms/iesniegums"))
        .send()
        .await
        .expect("GET form")
        .text()
        .await
        .expect("form page");
    let marker = "name=\"form_token\" value=\"";
    let start = page.find(marker).expect("token on the form page") + marker.len();
    let token = page[start..].split('"').next().expect("token").to_string();
    let subject = format!("Būvatļauja {i}");
    let resp = env
        .http
        .post(format!("{base}/forms/iesniegums"))
        .header("accept", "application/json")
        .form(&[
            ("form_token", token.as_str()),
            ("vards", "Anna Kalniņa"),
            ("epasts", "anna.kalnina@example.lv"),
            ("temats", subject.as_str()),
            ("teksts", "Lūdzu būvatļauju."),
        ])
        .send()
        .await
        .expect("POST form");
    let status = resp.status().as_u16();
    let receipt: serde_json::Value = resp.json().await.expect("receipt");
    assert!(status == 201 || status == 202, "{status}: {receipt}");
    receipt["tracking_id"]
        .as_str()
        .expect("tracking id")
        .to_string()
}

/// Two daemons' embedded buses on one PostgreSQL database: every intake
/// delivery is a claim of the primitive, so each message goes to one
/// consumer; a retried delivery comes back (counted), a dead letter goes to
/// the dead-letter consumer, and an acknowledgement under a claim taken
/// over since removes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_bus_deliveries_are_claims_of_one_consumer_each() {
    use pietura::bus::embedded::EmbeddedBus;
    use pietura::bus::{Bus, Route};
    use pietura::message::{ChannelKind, ChannelRef, IntakeMessage};
    const N: usize = 40;
    let (url, name) = support::fresh_pg_database().await;
    let connect = || Registry::connect(&url, None);
    let (a, b) = (connect().await.expect("A"), connect().await.expect("B"));
    a.migrate().await.expect("migrate");
    let (bus_a, bus_b) = (
        EmbeddedBus::new(a.clone(), 5),
        EmbeddedBus::new(b.clone(), 5),
    );
    for i in 0..N {
        let msg = IntakeMessage::new(
            ChannelRef {
                kind: ChannelKind::WebForm,
                instance: "t".into(),
            },
            format!("k{i}"),
            format!("teksts {i}"),
        );
        let payload = serde_json::to_vec(&msg).expect("json");
        bus_a
            .publish(Route::Intake(&msg), &payload, &msg.id.to_string())
            .await
            .expect("publish");
    }
    let take = |bus: EmbeddedBus| async move {
        let mut consumer = bus.consume_intake().await.expect("consumer");
        let mut got = Vec::new();
        // Until nothing more comes within a second.
        while let Ok(Some(d)) =
            tokio::time::timeout(std::time::Duration::from_secs(1), consumer.next()).await
        {
            let msg: IntakeMessage = serde_json::from_slice(&d.payload).expect("payload");
            got.push(msg.idempotency_key);
            d.ack().await.expect("ack");
        }
        got
    };
    let (got_a, got_b) = tokio::join!(take(bus_a.clone()), take(bus_b.clone()));
    let mut all: Vec<String> = got_a.iter().chain(&got_b).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(
        got_a.len() + got_b.len(),
        N,
        "delivered more than once: A {} B {}",
        got_a.len(),
        got_b.len()
    );
    assert_eq!(all.len(), N);

    // A retried delivery comes back, counted; a dead letter goes to the
    // dead-letter consumer.
    let msg = IntakeMessage::new(
        ChannelRef {
            kind: ChannelKind::WebForm,
            instance: "t".into(),
        },
        "again".into(),
        "teksts".into(),
    );
    let payload = serde_json::to_vec(&msg).expect("json");
    bus_a
        .publish(Route::Intake(&msg), &payload, &msg.id.to_string())
        .await
        .expect("publish");
    let mut consumer = bus_b.consume_intake().await.expect("consumer");
    let first = consumer.next().await.expect("delivery");
    assert_eq!(first.previous_deliveries, 0);
    first.retry().await.expect("retry");
    let second = consumer.next().await.expect("delivered again");
    assert_eq!(second.previous_deliveries, 1);
    second
        .dead_letter("refused by the test")
        .await
        .expect("dead");
    let mut dead = bus_a.consume_dead().await.expect("dead consumer");
    let parked = dead.next().await.expect("dead letter");
    assert_eq!(
        parked.dead_reason.as_ref().map(|r| r.reason.as_str()),
        Some("refused by the test")
    );
    // Its claim runs out (0 s) and B claims it again: A's late
    // acknowledgement removes nothing, B's does.
    let (id,): (String,) = sqlx::query_as("SELECT id FROM bus_messages WHERE queue = 'intake'")
        .fetch_one(a.pool())
        .await
        .expect("row");
    sqlx::query(
        "UPDATE bus_messages SET lease_until = '2000-01-01T00:00:00.000000Z' WHERE id = $1",
    )
    .bind(&id)
    .execute(a.pool())
    .await
    .expect("run out");
    let mut dead_b = bus_b.consume_dead().await.expect("dead consumer");
    let retaken = dead_b.next().await.expect("dead letter again");
    parked.ack().await.expect("late ack");
    assert_eq!(
        bus_a.dead_letter_count().await.expect("count"),
        1,
        "a late acknowledgement removed a message another consumer holds"
    );
    retaken.ack().await.expect("ack");
    assert_eq!(bus_a.dead_letter_count().await.expect("count"), 0);
    drop((a, b));
    support::drop_pg_database(&name).await;
}

/// A claim renewed in the background (slow work: OCR of a long file, a
/// delivery held through a registry stall) stays its holder's well past its
/// first term, and runs out once the renewing stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_claim_outlives_its_term_and_runs_out_once_dropped() {
    use pietura::registry::lease::{NAMED, Renewal};
    let env = TestEnv::start(Options::new(Backend::Amqp)).await;
    let (a, b) = (holder(&env).await, holder(&env).await);
    let held = a
        .claim_named("t:slow-work", 3)
        .await
        .expect("claim")
        .expect("A claims");
    let renewal = Renewal::start(a.clone(), &NAMED, held.clone(), 3);
    // More than twice its 3 s term later, it is still A's.
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    assert!(
        b.claim_named("t:slow-work", 60)
            .await
            .expect("claim")
            .is_none(),
        "a renewed claim was taken over"
    );
    assert!(!renewal.lost());
    drop(renewal);
    wait_until(WAIT, "the claim run out and taken over", || async {
        b.claim_named("t:slow-work", 60)
            .await
            .expect("claim")
            .is_some()
    })
    .await;
    let refused = a.complete_named(&held, "late").await;
    assert!(
        matches!(refused, Err(RegistryError::LeaseLost { .. })),
        "{refused:?}"
    );
    env.stop().await;
}

/// A daemon that dies while its gateway is sending an answer (after the
/// answer was marked as being sent, before its outcome was written) leaves
/// it to the next claimant, who does not send it again: at most once, and
/// the item says that it may not have gone out. An answer nobody started
/// is sent by the next claimant as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_whose_sender_died_mid_send_is_never_sent_again() {
    let env = TestEnv::start(Options::new(Backend::Amqp)).await;
    let interrupted = items_with_answers(&env, 1, "t-crash").await.remove(0);
    // Daemon A: its gateway takes the answer and never returns.
    let a = tokio::spawn(pietura::replies::run(
        holder(&env).await,
        HashMap::from([("t-crash".to_string(), Arc::new(Hung) as Arc<dyn Replier>)]),
        ReplyTiming {
            batch: 1,
            claim_secs: 2,
            send_limit: std::time::Duration::from_secs(600),
            poll: std::time::Duration::from_millis(100),
        },
        tokio_util::sync::CancellationToken::new(),
    ));
    let pool = env.daemon.registry.pool().clone();
    wait_until(WAIT, "A sending the answer", || {
        let pool = pool.clone();
        let id = interrupted.clone();
        async move {
            let (since,): (Option<String>,) =
                sqlx::query_as("SELECT sending_since FROM replies WHERE item_id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .expect("reply row");
            since.is_some()
        }
    })
    .await;
    // A dies mid-send (as under SIGKILL: nothing more is written).
    a.abort();
    let _ = a.await;
    let fresh = items_with_answers(&env, 1, "t-crash").await.remove(0);

    // Daemon B claims both once A's claim ran out.
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let b = tokio::spawn(pietura::replies::run(
        holder(&env).await,
        HashMap::from([(
            "t-crash".to_string(),
            Arc::new(Counting(sent.clone())) as Arc<dyn Replier>,
        )]),
        ReplyTiming {
            poll: std::time::Duration::from_millis(100),
            ..ReplyTiming::default()
        },
        stop.clone(),
    ));
    let registry = &env.daemon.registry;
    wait_until(WAIT, "B settling both answers", || async {
        let a = registry.answer_state(&interrupted).await.expect("state");
        let f = registry.answer_state(&fresh).await.expect("state");
        a.is_some_and(|s| s.done_at.is_some()) && f.is_some_and(|s| s.done_at.is_some())
    })
    .await;
    let state = registry
        .answer_state(&interrupted)
        .await
        .expect("state")
        .expect("answer");
    assert_eq!(state.state, "uncertain", "{state:?}");
    assert!(
        state
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("may have gone out")),
        "{state:?}"
    );
    let fresh_state = registry
        .answer_state(&fresh)
        .await
        .expect("state")
        .expect("answer");
    assert_eq!(fresh_state.state, "sent", "{fresh_state:?}");
    assert_eq!(
        sent.load(Ordering::SeqCst),
        1,
        "only the answer nobody had started was sent"
    );
    let (actions,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_log WHERE item_id = $1 AND action = 'reply_uncertain'",
    )
    .bind(&interrupted)
    .fetch_one(registry.pool())
    .await
    .expect("audit");
    assert_eq!(actions, 1);
    stop.cancel();
    b.abort();
    env.stop().await;
}

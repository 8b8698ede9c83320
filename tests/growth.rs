//! Poison contained and bounded growth (issue 21, builds 5 and 6): an item
//! the registry keeps refusing is parked, visible, while the daemon keeps
//! registering others; delivered notices, old door claims and orphan blobs
//! are pruned by the janitor, and what is in flight is kept.

mod support;

use support::{Backend, Options, TestEnv};

/// The marker in a text the test's trigger refuses.
const POISON: &str = "INDE-21";

/// A trigger that refuses every item whose text carries [`POISON`], as a
/// constraint the data breaks would: on SQLite `RAISE(ABORT)` (extended code
/// 1811, SQLITE_CONSTRAINT_TRIGGER, which the driver gives no kind); on
/// PostgreSQL a plain `RAISE EXCEPTION` (SQLSTATE P0001, which says nothing
/// about the data, so only the repeated failure while others register
/// makes it poison).
async fn install_poison_trigger(env: &TestEnv) {
    let pool = env.daemon.registry.pool();
    let statements: &[&str] = match env.backend {
        Backend::Embedded => &[
            "CREATE TRIGGER poison BEFORE INSERT ON items WHEN NEW.body LIKE '%INDE-21%' \
             BEGIN SELECT RAISE(ABORT, 'poison item refused by the test'); END",
        ],
        Backend::Amqp => &[
            "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
             IF NEW.body LIKE '%INDE-21%' THEN RAISE EXCEPTION 'poison item refused by the test'; \
             END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER poison BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION poison()",
        ],
    };
    for sql in statements {
        sqlx::query(*sql)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

async fn status_of(env: &TestEnv, id: &str) -> String {
    let json: serde_json::Value = env
        .http
        .get(format!("{}/status/{id}", env.base))
        .header("accept", "application/json")
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    json["status"].as_str().unwrap_or_default().to_string()
}

async fn a_poison_item_is_parked_while_others_register(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;
    install_poison_trigger(&env).await;
    let token = env.form_token().await;
    let (status, receipt) = env
        .submit(
            &token,
            "Inde",
            &format!("Šis teksts ir {POISON}, to nevar reģistrēt"),
        )
        .await;
    assert!(status == 201 || status == 202, "{status}: {receipt}");
    let poison = receipt["tracking_id"]
        .as_str()
        .expect("tracking id")
        .to_string();
    // Other items go on being registered, during and after.
    for i in 0..4 {
        env.submit_item(&format!("Labs {i}"), "Lūdzu salabot ielas apgaismojumu")
            .await;
    }
    let registry = env.daemon.registry.clone();
    support::wait_until(support::WAIT, "the poison item is parked", || {
        let (registry, poison) = (registry.clone(), poison.clone());
        async move {
            registry
                .parked_item(&poison)
                .await
                .expect("parked")
                .is_some()
        }
    })
    .await;
    let parked = registry
        .parked_item(&poison)
        .await
        .expect("parked")
        .expect("row");
    assert!(
        !parked.transient,
        "refused, not retried by itself: {}",
        parked.reason
    );
    assert!(
        parked.reason.contains("poison item refused by the test"),
        "the reason is kept whatever the bus: {}",
        parked.reason
    );
    // SQLite's constraint code is a refusal of the data at once; PostgreSQL's
    // P0001 says nothing about the data, so the repeated failure decides.
    let repeated = parked
        .reason
        .contains("times while the registry registered other items");
    assert_eq!(repeated, backend == Backend::Amqp, "{}", parked.reason);
    assert_eq!(status_of(&env, &poison).await, "parked");
    env.submit_item("Pēc indes", "Lūdzu izvest atkritumus")
        .await;
    assert_eq!(registry.count().await.expect("count"), 5);
    assert!(
        registry
            .find_by_message(&poison)
            .await
            .expect("find")
            .is_none()
    );
    // Its delivery was settled: nothing of it is left on the bus.
    assert_eq!(env.daemon.bus.dead_letter_count().await.expect("dead"), 0);
    if backend == Backend::Embedded {
        let (left,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM bus_messages WHERE queue = 'intake'")
                .fetch_one(registry.pool())
                .await
                .expect("intake rows");
        assert_eq!(left, 0, "the poison delivery is acknowledged");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_item_is_parked_while_others_register_on_embedded_sqlite() {
    a_poison_item_is_parked_while_others_register(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_item_is_parked_while_others_register_on_amqp_postgres() {
    a_poison_item_is_parked_while_others_register(Backend::Amqp).await;
}

/// The desk's parked items: listed for officers with when, door, reason and
/// tries; the retry button is CSRF-protected, for officers only, and the
/// officer's request goes on the registered item's audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desk_lists_parked_items_and_an_officer_retries_one() {
    use support::desk::{DeskClient, OFFICER, READER, add_accounts};
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    add_accounts(&env).await;
    install_poison_trigger(&env).await;
    let token = env.form_token().await;
    let (status, receipt) = env
        .submit(&token, "Inde", &format!("Teksts ar {POISON} iekšā"))
        .await;
    assert!(status == 201 || status == 202, "{status}: {receipt}");
    let id = receipt["tracking_id"].as_str().expect("id").to_string();
    let registry = env.daemon.registry.clone();
    support::wait_until(support::WAIT, "the item is parked", || {
        let (registry, id) = (registry.clone(), id.clone());
        async move { registry.parked_item(&id).await.expect("parked").is_some() }
    })
    .await;

    let reader = DeskClient::new(&env);
    assert_eq!(reader.sign_in(READER.0, READER.1).await, 303);
    assert_eq!(reader.page("/desk/parked").await.0, 403, "officers only");
    let officer = DeskClient::new(&env);
    assert_eq!(officer.sign_in(OFFICER.0, OFFICER.1).await, 303);
    let (status, page) = officer.page("/desk/parked?lang=en").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&format!("id=\"parked-{id}\"")), "{page}");
    assert!(page.contains("poison item refused by the test"), "{page}");
    assert!(page.contains("web form · iesniegums"), "{page}");
    assert!(page.contains("<td class=\"attempts\">1</td>"), "{page}");
    assert!(page.contains("Parked items"), "{page}");
    let (_, lv) = officer.page("/desk/parked?lang=lv").await;
    assert!(lv.contains("Aizturētie iesniegumi"), "{lv}");

    let retry = format!("/desk/parked/{id}/retry");
    let (status, _, _) = officer.post(&retry, &[("csrf", "0000")]).await;
    assert_eq!(
        status, 403,
        "a retry without the session's token is refused"
    );
    let (status, _, _) = reader.post(&retry, &[("csrf", &reader.csrf().await)]).await;
    assert_eq!(status, 403, "a reader cannot retry");
    assert_eq!(registry.count().await.expect("count"), 0);

    // The cause is fixed; the officer retries.
    sqlx::query("DROP TRIGGER poison")
        .execute(registry.pool())
        .await
        .expect("drop trigger");
    let csrf = officer.csrf().await;
    let (status, _, location) = officer.post(&retry, &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/desk/parked?done=retry"));
    let item = env.registered(&id).await;
    support::wait_until(support::WAIT, "the registered item leaves the list", || {
        let (registry, id) = (registry.clone(), id.clone());
        async move { !registry.is_parked(&id).await.expect("parked") }
    })
    .await;
    let audit = registry.audit_of(&item.id).await.expect("audit");
    let line = audit
        .iter()
        .find(|(_, _, action, _)| action == "parked_retried")
        .unwrap_or_else(|| panic!("no parked_retried line: {audit:?}"));
    assert_eq!(line.1, "Līga Ozola (liga)");
    assert!(
        line.3.contains("poison item refused by the test"),
        "{line:?}"
    );
    let (_, page) = officer.page("/desk/parked?lang=en").await;
    assert!(page.contains("Nothing is parked."), "{page}");
    env.stop().await;
}

/// Sets a file's modification time `hours` back, as if written then.
fn age(path: &std::path::Path, hours: u64) {
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(hours * 3600))
        .expect("set mtime");
}

fn hours_ago(h: i64) -> String {
    pietura::registry::db_time(chrono::Utc::now() - chrono::Duration::hours(h))
}

async fn bus_rows(env: &TestEnv, queue: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM bus_messages WHERE queue = $1")
        .bind(queue)
        .fetch_one(env.daemon.registry.pool())
        .await
        .expect("count rows");
    n
}

async fn door_claim(env: &TestEnv, key: &str, message_id: &str, claimed_at: &str) {
    sqlx::query(
        "INSERT INTO door_claims (idempotency_key, content_sha256, message_id, claimed_at) \
         VALUES ($1, 'x', $2, $3)",
    )
    .bind(key)
    .bind(message_id)
    .bind(claimed_at)
    .execute(env.daemon.registry.pool())
    .await
    .expect("door claim");
}

async fn has_claim(env: &TestEnv, key: &str) -> bool {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM door_claims WHERE idempotency_key = $1")
            .bind(key)
            .fetch_one(env.daemon.registry.pool())
            .await
            .expect("claims");
    n == 1
}

/// One janitor run under its claim: old notices, door claims nothing needs
/// and orphan blobs go; fresh notices, claims still needed, blobs an item
/// refers to and a blob of an upload in flight stay. The claim is one
/// daemon's at a time.
/// Makes the janitor's periodic job due and claims it, as the daemon
/// whose turn it is.
async fn claim_janitor_now(
    registry: &pietura::registry::Registry,
) -> pietura::registry::lease::Lease {
    sqlx::query("UPDATE work_leases SET lease_until = NULL WHERE name = 'janitor'")
        .execute(registry.pool())
        .await
        .expect("due");
    registry
        .claim_periodic(pietura::janitor::JOB, 900)
        .await
        .expect("claim")
        .expect("due and free")
}

/// One janitor run under `lease` with the default settings (3 notices kept
/// per queue), ended as the daemon ends it.
async fn janitor_run(
    registry: &pietura::registry::Registry,
    bus: &dyn pietura::bus::Bus,
    store: &pietura::blobs::BlobStore,
    lease: &pietura::registry::lease::Lease,
) -> pietura::janitor::Pruned {
    let settings = pietura::config::JanitorSettings::default();
    let pruned = pietura::janitor::prune_once(registry, bus, store, &settings, 3, lease)
        .await
        .expect("janitor run");
    registry
        .periodic_done(lease, 3600, &pruned.to_string())
        .await
        .expect("done");
    pruned
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_prunes_what_nothing_reads_and_keeps_what_is_in_flight() {
    use pietura::bus::Route;
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    let registry = env.daemon.registry.clone();
    let bus = env.daemon.bus.clone();
    // The daemon's own first run, at start, is done (its next is an hour away).
    support::wait_until(support::WAIT, "the daemon's first janitor run", || {
        let registry = registry.clone();
        async move {
            let row: Option<(Option<String>,)> =
                sqlx::query_as("SELECT updated_at FROM work_leases WHERE name = 'janitor'")
                    .fetch_optional(registry.pool())
                    .await
                    .expect("job row");
            row.is_some_and(|(at,)| at.is_some())
        }
    })
    .await;

    // Notices: one ten days old, then five fresh ones in one queue (three kept).
    let notice = br#"{"item_id":"x"}"#;
    bus.publish(Route::Unit("vecais"), notice, "old")
        .await
        .expect("publish");
    sqlx::query("UPDATE bus_messages SET created_at = $1 WHERE queue = 'unit.vecais'")
        .bind(hours_ago(240))
        .execute(registry.pool())
        .await
        .expect("age notice");
    for i in 0..5 {
        bus.publish(Route::Unit("svaigais"), notice, &format!("n{i}"))
            .await
            .expect("publish");
    }
    // A registered item's claim two days old (pruned); unfinished claims:
    // 40 days old (pruned), a day old (kept), 40 days old but parked (kept).
    let item = env.submit_item("Ielas apgaismojums", "Lūdzu salabot").await;
    let key = env.message_of(&item).await.idempotency_key;
    assert!(has_claim(&env, &key).await, "the form claims its key");
    sqlx::query("UPDATE door_claims SET claimed_at = $1 WHERE idempotency_key = $2")
        .bind(hours_ago(48))
        .bind(&key)
        .execute(registry.pool())
        .await
        .expect("age claim");
    door_claim(
        &env,
        "old-unfinished",
        &uuid::Uuid::now_v7().to_string(),
        &hours_ago(960),
    )
    .await;
    door_claim(
        &env,
        "new-unfinished",
        &uuid::Uuid::now_v7().to_string(),
        &hours_ago(24),
    )
    .await;
    let parked_msg = uuid::Uuid::now_v7().to_string();
    door_claim(&env, "old-parked", &parked_msg, &hours_ago(960)).await;
    let now = chrono::Utc::now();
    registry
        .park(
            &parked_msg,
            Some(&parked_msg),
            b"{}",
            "test",
            false,
            now,
            now,
        )
        .await
        .expect("park");

    // Blobs: an item's attachment and e-mail original (old, kept), an
    // orphan (old, collected), an orphan in flight (fresh, kept), an
    // abandoned upload's temporary file (old, removed) and a fresh one (kept).
    let mail = support::desk::hostile_email_item(&env).await;
    let store = pietura::blobs::BlobStore::open(env.blob_dir()).expect("blobs");
    let referenced: Vec<String> = {
        let msg = env.message_of(&mail).await;
        let mut r: Vec<String> = msg.attachments.iter().map(|a| a.sha256.clone()).collect();
        r.push(
            msg.metadata["email"]["original"]["sha256"]
                .as_str()
                .expect("original")
                .to_string(),
        );
        r
    };
    let orphan = store.put(b"refused submission's file").await.expect("put");
    let in_flight = store.put(b"an upload still on its way").await.expect("put");
    for sha in referenced.iter().chain([&orphan.sha256]) {
        age(&store.path_of(sha).expect("path"), 48);
    }
    let old_tmp = env.blob_dir().join("tmp").join("abandoned");
    let new_tmp = env.blob_dir().join("tmp").join("uploading");
    std::fs::write(&old_tmp, b"half").expect("tmp");
    std::fs::write(&new_tmp, b"half").expect("tmp");
    age(&old_tmp, 48);

    // The job is due again; this "daemon" claims it, no other can meanwhile.
    let lease = claim_janitor_now(&registry).await;
    let other = pietura::registry::Registry::connect(&env.database_url(), None)
        .await
        .expect("second daemon's registry");
    assert_eq!(
        other
            .claim_periodic(pietura::janitor::JOB, 900)
            .await
            .expect("claim"),
        None,
        "one daemon at a time"
    );
    let pruned = janitor_run(&registry, bus.as_ref(), &store, &lease).await;
    assert_eq!(
        other
            .claim_periodic(pietura::janitor::JOB, 900)
            .await
            .expect("claim"),
        None,
        "not due again for an hour"
    );

    assert_eq!(bus_rows(&env, "unit.vecais").await, 0, "old notice pruned");
    assert_eq!(
        bus_rows(&env, "unit.svaigais").await,
        3,
        "the newest three kept"
    );
    assert!(
        !has_claim(&env, &key).await,
        "a registered item's old claim pruned"
    );
    assert!(!has_claim(&env, "old-unfinished").await);
    assert!(has_claim(&env, "new-unfinished").await);
    assert!(
        has_claim(&env, "old-parked").await,
        "a parked item's claim is kept"
    );
    for sha in &referenced {
        assert!(store.get(sha).await.is_ok(), "referenced blob {sha} kept");
    }
    assert!(
        store.get(&in_flight.sha256).await.is_ok(),
        "blob in flight kept"
    );
    assert!(store.get(&orphan.sha256).await.is_err(), "orphan collected");
    assert!(!old_tmp.exists() && new_tmp.exists());
    assert_eq!(pruned.blobs, 1, "{pruned}");
    assert_eq!(pruned.temp_files, 1, "{pruned}");
    assert_eq!(pruned.door_claims, 2, "{pruned}");
    assert!(pruned.notices >= 3, "{pruned}");
    // A redelivered or re-read item still finds its blobs.
    assert!(store.get(&referenced[0]).await.is_ok());
    let metrics = env
        .http
        .get(format!("{}/metrics", env.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("pietura_pruned_total{what=\"blobs\"}"),
        "{metrics}"
    );
    env.stop().await;
}

async fn queue_length(ch: &lapin::Channel, name: &str) -> u32 {
    ch.queue_declare(
        name.into(),
        lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("queue {name}: {e}"))
    .message_count()
}

/// Unit queues are bounded (RabbitMQ 3.10 quorum queues: x-max-length with
/// drop-head): a unit nobody reads keeps its newest notices and publishing
/// never blocks. A queue declared before, without bounds, is used as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unit_queues_are_bounded_and_an_unbounded_existing_queue_still_works() {
    use pietura::bus::amqp::{AmqpBus, AmqpOptions, NoticeBounds};
    use pietura::bus::{Bus, Route};
    let url = support::amqp_url();
    support::require("RabbitMQ", &url).await;
    let prefix = format!("pt{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    // An older deployment's unit queue: quorum, no bounds.
    let mut args = lapin::types::FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    let legacy = format!("{prefix}.unit.vecais");
    ch.queue_declare(
        legacy.as_str().into(),
        lapin::options::QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("legacy queue");
    let bus = AmqpBus::connect(AmqpOptions {
        urls: vec![url.clone()],
        quorum_group_size: None,
        prefix: prefix.clone(),
        prefetch: 10,
        delivery_limit: 5,
        publish_timeout: std::time::Duration::from_secs(10),
        notice_bounds: NoticeBounds {
            max_length: 3,
            max_bytes: 1024 * 1024,
        },
        tls: Default::default(),
    })
    .await
    .expect("bus");
    let units = vec!["jaunais".to_string(), "vecais".to_string()];
    bus.declare_units(&units).await.expect("declare units");
    for i in 0..5 {
        let payload = format!("{{\"n\":{i}}}");
        for unit in &units {
            bus.publish(
                Route::Unit(unit),
                payload.as_bytes(),
                &format!("{unit}-{i}"),
            )
            .await
            .unwrap_or_else(|e| panic!("publish {i} to {unit}: {e}"));
        }
        bus.publish(Route::Review, payload.as_bytes(), &format!("r-{i}"))
            .await
            .expect("publish review");
    }
    let bounded = format!("{prefix}.unit.jaunais");
    assert_eq!(
        queue_length(&ch, &bounded).await,
        3,
        "the newest three kept"
    );
    assert_eq!(queue_length(&ch, &format!("{prefix}.review")).await, 3);
    assert_eq!(
        queue_length(&ch, &legacy).await,
        5,
        "the old queue as it was"
    );
    let first = ch
        .basic_get(bounded.as_str().into(), Default::default())
        .await
        .expect("get")
        .expect("a notice");
    assert_eq!(first.delivery.data, b"{\"n\":2}", "the oldest were dropped");
    // A reconnect declares the same way again, the legacy queue included.
    bus.force_disconnect().await;
    bus.publish(Route::Unit("vecais"), b"{\"n\":5}", "vecais-5")
        .await
        .expect("publish after reconnect");
    let _ = conn.close(200, "done".into()).await;
    pietura::bus::amqp::delete_topology(&url, &Default::default(), &prefix, &units)
        .await
        .expect("delete topology");
}

/// The janitor's queries on PostgreSQL: the daemon's own first run
/// succeeds, and a run prunes an old claim and an orphan blob there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_runs_on_postgres() {
    let env = TestEnv::start(Options::new(Backend::Amqp)).await;
    let registry = env.daemon.registry.clone();
    let item = env.submit_item("Ielas apgaismojums", "Lūdzu salabot").await;
    let last = || {
        let registry = registry.clone();
        async move {
            let (at, result): (Option<String>, Option<String>) =
                sqlx::query_as("SELECT updated_at, state FROM work_leases WHERE name = 'janitor'")
                    .fetch_one(registry.pool())
                    .await
                    .expect("job row");
            at.and(result)
        }
    };
    support::wait_until(support::WAIT, "the daemon's first janitor run", || {
        let last = last();
        async move { last.await.is_some() }
    })
    .await;
    let result = last().await.expect("result");
    assert!(!result.starts_with("failed"), "{result}");

    door_claim(
        &env,
        "old-unfinished",
        &uuid::Uuid::now_v7().to_string(),
        &hours_ago(960),
    )
    .await;
    let store = pietura::blobs::BlobStore::open(env.blob_dir()).expect("blobs");
    let orphan = store.put(b"refused submission's file").await.expect("put");
    age(&store.path_of(&orphan.sha256).expect("path"), 48);
    let lease = claim_janitor_now(&registry).await;
    let pruned = janitor_run(&registry, env.daemon.bus.as_ref(), &store, &lease).await;
    assert!(!has_claim(&env, "old-unfinished").await);
    assert!(has_claim(&env, &env.message_of(&item).await.idempotency_key).await);
    assert_eq!(pruned.blobs, 1, "{pruned}");
    assert!(store.get(&orphan.sha256).await.is_err());
    env.stop().await;
}

/// A message waiting in RabbitMQ's intake queue (a registry away for
/// longer than the grace period) refers to a blob the registry cannot see:
/// no blob is collected while the queue holds messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_not_collected_while_messages_wait_in_the_broker() {
    use pietura::bus::amqp::{AmqpBus, AmqpOptions, NoticeBounds};
    use pietura::message::{AttachmentRef, ChannelKind, ChannelRef, IntakeMessage};
    let url = support::amqp_url();
    support::require("RabbitMQ", &url).await;
    let prefix = format!("pt{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let bus = AmqpBus::connect(AmqpOptions {
        urls: vec![url.clone()],
        quorum_group_size: None,
        prefix: prefix.clone(),
        prefetch: 10,
        delivery_limit: 5,
        publish_timeout: std::time::Duration::from_secs(10),
        notice_bounds: NoticeBounds::default(),
        tls: Default::default(),
    })
    .await
    .expect("bus");
    let (db_url, db_name) = support::fresh_pg_database().await;
    let registry = pietura::registry::Registry::connect(&db_url, None)
        .await
        .expect("registry");
    registry.migrate().await.expect("migrate");
    let dir = tempfile::tempdir().expect("dir");
    let store = pietura::blobs::BlobStore::open(dir.path()).expect("blobs");
    let blob = store.put(b"a waiting message's file").await.expect("put");
    age(&store.path_of(&blob.sha256).expect("path"), 48);
    let mut msg = IntakeMessage::new(
        ChannelRef {
            kind: ChannelKind::WebForm,
            instance: "iesniegums".into(),
        },
        format!("web_form:iesniegums:{}", uuid::Uuid::now_v7()),
        "Lūdzu pievienot pielikumu".into(),
    );
    msg.attachments = vec![AttachmentRef {
        sha256: blob.sha256.clone(),
        filename: "pielikums.pdf".into(),
        content_type: "application/pdf".into(),
        size: blob.size,
    }];
    pietura::bus::publish_intake(&bus, &msg)
        .await
        .expect("publish");
    let run = || async {
        let lease = claim_janitor_now(&registry).await;
        janitor_run(&registry, &bus, &store, &lease).await
    };
    assert_eq!(run().await.blobs, 0, "kept while its message waits");
    assert!(store.get(&blob.sha256).await.is_ok());
    // The message gone (and never registered): the blob is an orphan now.
    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_purge(
        format!("{prefix}.engine").as_str().into(),
        Default::default(),
    )
    .await
    .expect("purge");
    let _ = conn.close(200, "done".into()).await;
    assert_eq!(run().await.blobs, 1);
    assert!(store.get(&blob.sha256).await.is_err());
    pietura::bus::amqp::delete_topology(&url, &Default::default(), &prefix, &[])
        .await
        .expect("delete topology");
    support::drop_pg_database(&db_name).await;
}

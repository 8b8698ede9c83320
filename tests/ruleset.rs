//! One rule set in force for every daemon (issue 21): daemons started as
//! processes on one PostgreSQL (and on one SQLite file) follow a rules edit
//! or an ad-hoc holiday made through another daemon or the CLI; a stale
//! host's folder never rolls the others back, a folder edited while the
//! daemon was down is applied; `pietura rules apply|export` round-trip.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pietura::deadline::DeadlineBasis;
use pietura::registry::rulesets::{Activation, Replacing};
use pietura::registry::{ItemSummary, Registry};
use pietura::rules::RuleSet;
use sqlx::Connection;
use support::{Backend, Options, TestEnv};

/// How long a change may take to reach another daemon (the promise).
const FOLLOW: Duration = Duration::from_secs(5);

const COFFEE: (&str, &str) = ("Kafija", "Vai varu pasūtīt kafiju apmeklētājiem?");
const COFFEE_RULE: &str = "\n[[rule]]\nid = \"kanceleja-kafija\"\npriority = 120\ndescription = \"Kafija\"\n[rule.when]\nkeywords = [\"kafij*\"]\n[rule.then]\nunit = \"kanceleja\"\n";
const BUILDING: (&str, &str) = (
    "Būvatļauja",
    "Lūdzu izsniegt būvatļauju šķūņa būvniecībai Bebrenes pagastā.",
);

/// A copy of the shipped rules with the coffee rule added.
fn rules_with_coffee(to: &Path) {
    copy_dir(&support::repo_path("rules"), to);
    let file = to.join("routing/90-kanceleja.toml");
    let text = std::fs::read_to_string(&file).expect("routing file");
    std::fs::write(&file, format!("{text}{COFFEE_RULE}")).expect("write rule");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The built `pietura` with none of the caller's Pietura settings but `env`.
fn pietura(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pietura"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PIETURA") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(args: &[&str], env: &[(&str, String)]) -> Output {
    pietura(args, env).output().expect("run pietura")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A daemon running as its own process, killed when dropped.
struct Process {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Starts `pietura run` with `env` (plus its own port, rules and data
    /// folders under `home`) and waits until it answers.
    async fn start(home: &Path, rules: &Path, env: &[(&str, String)]) -> Process {
        let port = support::free_port();
        std::fs::create_dir_all(home).expect("home");
        let log = home.join("daemon.log");
        let out = std::fs::File::create(&log).expect("log file");
        let mut all: Vec<(&str, String)> = vec![
            ("PIETURA__HTTP__LISTEN", format!("127.0.0.1:{port}")),
            ("PIETURA__HTTP__SUBMISSIONS_PER_MINUTE", "100000".into()),
            // The item API without a token from this test (development flag).
            ("PIETURA__HTTP__DEV_TRUST_LOOPBACK", "true".into()),
            ("PIETURA__RULES__DIR", rules.display().to_string()),
            (
                "PIETURA__CHANNELS__DIR",
                support::repo_path("channels").display().to_string(),
            ),
            ("PIETURA__DATA_DIR", home.join("data").display().to_string()),
            ("PIETURA_LOG", "info,sqlx=warn".into()),
        ];
        all.extend(env.iter().cloned());
        let child = pietura(&["run"], &all)
            .stdout(Stdio::null())
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start pietura run");
        let mut p = Process {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = tokio::time::Instant::now() + support::WAIT;
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("daemon exited ({status}):\n{}", p.log_text());
            }
            if p.rules_version().await.is_some() {
                return p;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "daemon did not answer on {} within {:?}:\n{}",
                p.base,
                support::WAIT,
                p.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The rule-set version the daemon routes by (its `/readyz`).
    async fn rules_version(&self) -> Option<String> {
        let body: serde_json::Value = reqwest::get(format!("{}/readyz", self.base))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["rules"].as_str().map(str::to_string)
    }

    /// Waits up to [`FOLLOW`] until the daemon routes by `version`.
    async fn follows(&self, version: &str, what: &str) {
        let deadline = tokio::time::Instant::now() + FOLLOW;
        loop {
            let now = self.rules_version().await;
            if now.as_deref() == Some(version) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: still {now:?}, not {version}, after {FOLLOW:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Submits the web form through this daemon; the tracking id.
    async fn submit(&self, subject: &str, body: &str) -> String {
        let http = reqwest::Client::new();
        let page = http
            .get(format!("{}/forms/iesniegums", self.base))
            .send()
            .await
            .expect("GET form")
            .text()
            .await
            .expect("form page");
        let marker = "name=\"form_token\" value=\"";
        let start = page.find(marker).expect("token field") + marker.len();
        let token = page[start..].split('"').next().expect("token").to_string();
        let resp = http
            .post(format!("{}/forms/iesniegums", self.base))
            .header("accept", "application/json")
            .form(&[
                ("form_token", token.as_str()),
                ("vards", "Anna Kalniņa"),
                ("epasts", "anna.kalnina@example.lv"),
                ("temats", subject),
                ("teksts", body),
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
}

/// Waits until the message is registered.
async fn registered(registry: &Registry, tracking_id: &str) -> ItemSummary {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        if let Some(item) = registry.find_by_message(tracking_id).await.expect("lookup") {
            return item;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{tracking_id} not registered within {:?}",
            support::WAIT
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `pietura rules apply DIR` against `db`; the version it printed.
fn apply(dir: &Path, env: &[(&str, String)]) -> String {
    let out = run(
        &[
            "rules",
            "apply",
            &dir.display().to_string(),
            "--by",
            "tests",
        ],
        env,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("in force"), "{stdout}");
    let set = RuleSet::load(dir).expect("applied folder loads");
    assert!(stdout.contains(&set.version), "{stdout}");
    set.version
}

/// A rules edit through the CLI on one daemon's host is in force on the
/// other within 5 s, routes there, and an ad-hoc holiday added through
/// one daemon moves the other's deadline computations.
async fn two_daemons_follow(
    db: &str,
    a_env: Vec<(&'static str, String)>,
    b_env: Vec<(&'static str, String)>,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a_rules, b_rules) = (dir.path().join("a-rules"), dir.path().join("b-rules"));
    copy_dir(&support::repo_path("rules"), &a_rules);
    copy_dir(&support::repo_path("rules"), &b_rules);
    let a = Process::start(&dir.path().join("a"), &a_rules, &a_env).await;
    let b = Process::start(&dir.path().join("b"), &b_rules, &b_env).await;
    let shipped = RuleSet::load(&a_rules).expect("shipped rules");
    a.follows(&shipped.version, "A at start").await;
    b.follows(&shipped.version, "B at start").await;
    let registry = Registry::connect(db, Some(2)).await.expect("registry");

    // The edit, applied with A's configuration (the registry is the same).
    let edited = dir.path().join("edited");
    rules_with_coffee(&edited);
    let db_env = [("PIETURA__DATABASE__URL", db.to_string())];
    let version = apply(&edited, &db_env);
    b.follows(&version, "B after the edit on A").await;
    a.follows(&version, "A after its edit").await;
    let item = registered(&registry, &b.submit(COFFEE.0, COFFEE.1).await).await;
    assert_eq!(item.rule_id.as_deref(), Some("kanceleja-kafija"));
    assert_eq!(item.unit_id.as_deref(), Some("kanceleja"));
    assert_eq!(item.ruleset_version, version);

    // An ad-hoc holiday through A's API: B computes deadlines with it.
    let before = RuleSet::load(&edited).expect("edited set");
    let receipt_day = before.deadlines.legal_receipt_day(Utc::now());
    let holiday = before.deadlines.working_days_after(receipt_day, 2);
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/calendar/holidays", a.base))
        .json(
            &serde_json::json!({ "date": holiday, "name": "Ārkārtas brīvdiena", "actor": "admin" }),
        )
        .send()
        .await
        .expect("POST holiday");
    assert_eq!(resp.status().as_u16(), 201);
    let body: serde_json::Value = resp.json().await.expect("JSON");
    let with_holiday = body["version"].as_str().expect("version").to_string();
    b.follows(&with_holiday, "B after the holiday on A").await;
    let year: serde_json::Value = reqwest::get(format!(
        "{}/api/v1/calendar/{}",
        b.base,
        holiday.format("%Y")
    ))
    .await
    .expect("GET calendar")
    .json()
    .await
    .expect("calendar JSON");
    assert!(
        year["days_off"]
            .as_array()
            .expect("days off")
            .iter()
            .any(|d| d["date"] == serde_json::json!(holiday)),
        "B's calendar has the holiday: {year}"
    );
    let item = registered(&registry, &b.submit(BUILDING.0, BUILDING.1).await).await;
    assert_eq!(item.ruleset_version, with_holiday);
    let basis = DeadlineBasis {
        received_at: DateTime::parse_from_rfc3339(&item.received_at)
            .expect("received_at")
            .with_timezone(&Utc),
        ..DeadlineBasis::default()
    };
    let sources = registry
        .ruleset_sources(&with_holiday)
        .await
        .expect("sources")
        .expect("stored");
    let after = RuleSet::from_sources(&edited, sources).expect("compiles");
    if before.deadlines.legal_receipt_day(basis.received_at) == receipt_day {
        assert_ne!(
            before.deadlines.reply_due(&basis),
            after.deadlines.reply_due(&basis),
            "the holiday falls inside the term"
        );
    }
    assert_eq!(
        item.reply_due,
        Some(after.deadlines.reply_due(&basis).to_string()),
        "B computed the deadline with A's holiday"
    );
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_on_one_postgres_follow_an_edit_and_a_holiday_within_seconds() {
    let amqp = support::amqp_url();
    support::require("RabbitMQ", &amqp).await;
    let (db, name) = support::fresh_pg_database().await;
    let prefix = |p: &str| format!("{p}{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let (pa, pb) = (prefix("ra"), prefix("rb"));
    // Each daemon its own queues, so an item sent to B is routed by B.
    let env = |p: &str| {
        vec![
            ("PIETURA__DATABASE__URL", db.clone()),
            ("PIETURA__BUS__KIND", "amqp".to_string()),
            ("PIETURA__BUS__URL", amqp.clone()),
            ("PIETURA__BUS__PREFIX", p.to_string()),
        ]
    };
    two_daemons_follow(&db, env(&pa), env(&pb)).await;
    let units: Vec<String> = RuleSet::load(&support::repo_path("rules"))
        .expect("rules")
        .units
        .into_keys()
        .collect();
    for p in [pa, pb] {
        let _ = pietura::bus::amqp::delete_topology(&amqp, &Default::default(), &p, &units).await;
    }
    if let Ok(mut conn) = sqlx::PgConnection::connect(&support::pg_admin_url()).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_sharing_one_sqlite_file_follow_an_edit_and_a_holiday() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("shared.db").display()
    );
    let env = vec![
        ("PIETURA__DATABASE__URL", db.clone()),
        ("PIETURA__BUS__KIND", "embedded".to_string()),
    ];
    two_daemons_follow(&db, env.clone(), env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_folder_never_rolls_back_and_an_offline_edit_is_applied() {
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    let shipped = env.daemon.rules.load_full();
    let registry = &env.daemon.registry;

    // Another host applies an edit; this daemon follows.
    let dir = tempfile::tempdir().expect("temp dir");
    let edited = dir.path().join("edited");
    rules_with_coffee(&edited);
    let applied = pietura::active_rules::apply_dir(registry, &edited, "tests")
        .await
        .expect("apply");
    assert!(applied.changed);
    let version = applied.set.version.clone();
    support::wait_until(FOLLOW, "the daemon follows the edit", || async {
        env.daemon.rules.load().version == version
    })
    .await;

    // A daemon starting on the old folder (a version the registry knows)
    // runs the set in force and leaves it in force.
    let stale = env.another_daemon().await;
    assert_eq!(
        stale.rules.load().version,
        version,
        "stale folder not taken"
    );
    let active = registry
        .active_ruleset()
        .await
        .expect("active")
        .expect("set");
    assert_eq!(
        active.version, version,
        "not rolled back to {}",
        shipped.version
    );
    stale.shutdown().await;

    // A draft written against a version no longer in force (a colleague's
    // save on another daemon in between) changes nothing.
    let line = pietura::active_rules::change("edit", "tests", None, String::new());
    let replacing = Replacing::Version(shipped.version.clone());
    let refused = registry
        .activate_ruleset(&shipped, &replacing, &line)
        .await
        .expect("activation");
    assert_eq!(
        refused,
        Activation::Conflict {
            active: Some(version.clone())
        }
    );

    // The folder edited while no daemon watched it: a version never seen,
    // applied by the next daemon to start, followed by the running one.
    std::fs::write(
        env.rules_dir.join("routing/05-jauns.toml"),
        "[[rule]]\nid = \"jauns-teja\"\npriority = 130\n[rule.when]\nkeywords = [\"tēj*\"]\n[rule.then]\nunit = \"kanceleja\"\n",
    )
    .expect("write rule");
    let offline = RuleSet::load(&env.rules_dir).expect("edited folder");
    let starting = env.another_daemon().await;
    assert_eq!(starting.rules.load().version, offline.version);
    let active = registry
        .active_ruleset()
        .await
        .expect("active")
        .expect("set");
    assert_eq!(active.version, offline.version);
    support::wait_until(FOLLOW, "the running daemon follows", || async {
        env.daemon.rules.load().version == offline.version
    })
    .await;
    starting.shutdown().await;
    let history: Vec<String> = registry
        .rules_changes(10)
        .await
        .expect("history")
        .into_iter()
        .map(|c| c.action)
        .collect();
    assert_eq!(history, ["files", "apply", "bootstrap"]);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_touched_stale_folder_is_refused_and_a_real_edit_is_applied() {
    let mut opts = Options::new(Backend::Embedded);
    opts.watch_rules = true;
    let env = TestEnv::start(opts).await;
    let registry = &env.daemon.registry;
    let dir = tempfile::tempdir().expect("temp dir");
    let edited = dir.path().join("edited");
    rules_with_coffee(&edited);
    let applied = pietura::active_rules::apply_dir(registry, &edited, "tests")
        .await
        .expect("apply");
    let version = applied.set.version.clone();
    let status = env.daemon.rules_status.clone();
    support::wait_until(FOLLOW, "the daemon follows the edit", || async {
        status.borrow().version == version
    })
    .await;

    // The folder (still the bootstrap version) is written again unchanged.
    let attempts = status.borrow().attempts;
    let units = env.rules_dir.join("units.toml");
    let same = std::fs::read_to_string(&units).expect("units");
    std::fs::write(&units, &same).expect("rewrite");
    support::wait_until(support::WAIT, "the watcher reports the touch", || async {
        status.borrow().attempts > attempts
    })
    .await;
    let refused = status.borrow().refused.clone().expect("refused");
    assert!(refused.contains("older version"), "{refused}");
    let active = registry
        .active_ruleset()
        .await
        .expect("active")
        .expect("set");
    assert_eq!(active.version, version, "not rolled back");
    assert_eq!(env.daemon.rules.load().version, version);

    // A real edit of the folder is a new version: in force everywhere.
    std::fs::write(&units, format!("{same}\n# edited on this host\n")).expect("edit");
    let mut edited_now = None;
    support::wait_until(support::WAIT, "the edit is applied", || {
        let now = status.borrow().clone();
        let done = now.refused.is_none() && now.version != version;
        edited_now = Some(now);
        async move { done }
    })
    .await;
    let active = registry
        .active_ruleset()
        .await
        .expect("active")
        .expect("set");
    assert_eq!(Some(active.version), edited_now.map(|s| s.version));
    env.stop().await;
}

#[test]
fn rules_apply_and_export_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [(
        "PIETURA__DATA_DIR",
        dir.path().join("data").display().to_string(),
    )];
    let shipped = support::repo_path("rules");
    let version = apply(&shipped, &env);
    let again = run(&["rules", "apply", &shipped.display().to_string()], &env);
    assert!(
        text(&again.stdout).contains("already in force"),
        "{}",
        text(&again.stdout)
    );

    // A broken folder is refused with file:line; the set in force stays.
    let invalid = support::repo_path("tests/fixtures/rules-invalid");
    let out = run(&["rules", "apply", &invalid.display().to_string()], &env);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(".toml:"),
        "{}",
        text(&out.stderr)
    );

    // Export into a folder with a routing file the set does not have.
    let out_dir = dir.path().join("exported");
    std::fs::create_dir_all(out_dir.join("routing")).expect("mkdir");
    std::fs::write(out_dir.join("routing/99-old.toml"), "").expect("stale file");
    let out = run(&["rules", "export", &out_dir.display().to_string()], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&version),
        "{}",
        text(&out.stdout)
    );
    assert!(!out_dir.join("routing/99-old.toml").exists());
    let exported = RuleSet::load(&out_dir).expect("exported folder loads");
    assert_eq!(exported.version, version);
    let original = RuleSet::load(&shipped).expect("shipped");
    assert_eq!(exported.sources, original.sources, "byte for byte");

    // A holiday through the CLI is in the next export.
    let out = run(
        &[
            "calendar",
            "add-holiday",
            "2031-06-18",
            "Ārkārtas brīvdiena",
            "--by",
            "tests",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&["rules", "export", &out_dir.display().to_string()], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let calendar = std::fs::read_to_string(out_dir.join("calendar.toml")).expect("calendar");
    assert!(calendar.contains("2031-06-18") && calendar.contains("Ārkārtas brīvdiena"));
    assert_ne!(RuleSet::load(&out_dir).expect("loads").version, version);
}

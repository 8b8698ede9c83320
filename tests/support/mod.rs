//! Shared by the integration tests: a daemon on real services (RabbitMQ +
//! PostgreSQL, or the embedded bus on SQLite), a citizen submitting the form
//! over HTTP, and readers for the unit queues.
//!
//! Services are never skipped: when one is missing the test fails and says
//! what to start (`scripts/test.sh` starts both).
#![allow(dead_code)]

pub mod desk;
pub mod div;
pub mod dovecot;
pub mod edoc;
pub mod identity;
pub mod mayan;
pub mod servers;
pub mod smtp;
pub mod standins;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicGetOptions};
use pietura::config::{BusKind, Settings};
use pietura::daemon::Daemon;
use pietura::registry::{ItemSummary, RoutedNotice};
use secrecy::SecretString;
use sqlx::Connection;
use tempfile::TempDir;

/// Which bus and database the daemon runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// RabbitMQ + PostgreSQL: production.
    Amqp,
    /// The embedded queue table on SQLite: single-machine installs.
    Embedded,
}

pub const WAIT: Duration = Duration::from_secs(30);

/// Waits up to `limit` until `check` holds, or fails saying what was waited for.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {limit:?} for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The test scans `tests/fixtures/scan/render.py` draws (Latvian letters
/// with their ground truth), rendered once per test binary.
pub fn scan_fixtures() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pietura-scans-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("fixture dir");
        let out = Command::new("/usr/bin/python3")
            .arg(repo_path("tests/fixtures/scan/render.py"))
            .arg(&dir)
            .output()
            .expect("run render.py with Debian's python3 (python3-pil, python3-cairo, python3-qrcode: scripts/test.sh installs them)");
        assert!(out.status.success(), "render.py failed: {}", String::from_utf8_lossy(&out.stderr));
        let manifest = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json");
        assert!(manifest.contains("letter_300.png") && manifest.contains("batch.pdf"), "fixtures not rendered: {manifest}");
        dir
    })
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Waits up to 10 s for a server to listen on a loopback port.
pub fn wait_port(port: u16, what: &str) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on 127.0.0.1:{port}");
}

/// Runs the openssl command in `root`; fails the test with its stderr.
pub fn openssl(root: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private CA and a server certificate for 127.0.0.1 signed by it, made
/// with the openssl command: (CA certificate, server certificate, key).
pub fn make_certificates(root: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| openssl(root, args);
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Pietura test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        root.join("san.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\n",
    )
    .expect("san.ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    (
        root.join("ca.pem"),
        root.join("server.pem"),
        root.join("server.key"),
    )
}

/// A client certificate with common name `cn`, signed by the CA that
/// [`make_certificates`] made in `root`: (certificate, key), PEM.
pub fn make_client_certificate(root: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let run = |args: &[&str]| openssl(root, args);
    let (cert, key, csr) = (
        format!("{cn}.pem"),
        format!("{cn}.key"),
        format!("{cn}.csr"),
    );
    let subject = format!("/CN={cn}");
    run(&[
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", &subject, "-keyout", &key, "-out", &csr,
    ]);
    std::fs::write(
        root.join("client.ext"),
        "extendedKeyUsage = clientAuth\nbasicConstraints = CA:FALSE\n",
    )
    .expect("client.ext");
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "client.ext",
        "-out",
        &cert,
    ]);
    (root.join(cert), root.join(key))
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn amqp_url() -> String {
    std::env::var("PIETURA_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn pg_admin_url() -> String {
    std::env::var("PIETURA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://pietura:pietura@127.0.0.1:5432/pietura_test".into())
}

fn host_port(url: &str) -> String {
    let after = url.split("://").nth(1).unwrap_or(url);
    let after = after.rsplit('@').next().unwrap_or(after);
    after.split('/').next().unwrap_or(after).to_string()
}

/// The message schema as published in `docs/`.
pub fn published_schema() -> serde_json::Value {
    let path = repo_path("docs/message-v1.schema.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} not found: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Fails the test with instructions when a service's port is closed.
pub async fn require(service: &str, url: &str) {
    let addr = host_port(url);
    if let Err(e) = tokio::net::TcpStream::connect(&addr).await {
        panic!(
            "{service} is not reachable at {addr} ({e}). Start it first: `scripts/test.sh` \
             installs and starts RabbitMQ and PostgreSQL, or point PIETURA_TEST_AMQP_URL / \
             PIETURA_TEST_DATABASE_URL at running servers."
        );
    }
}

/// A fresh PostgreSQL database per test, dropped at the end.
pub async fn fresh_pg_database() -> (String, String) {
    let admin = pg_admin_url();
    require("PostgreSQL", &admin).await;
    let name = format!(
        "pietura_t_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot log in to PostgreSQL as {admin}: {e} (scripts/test.sh creates the role)")
        });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e} (the role needs CREATEDB)"));
    let (base, _) = admin.rsplit_once('/').expect("database URL has a path");
    (format!("{base}/{name}"), name)
}

pub async fn drop_pg_database(name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

/// A last change to a test daemon's settings.
pub type SettingsTweak = Box<dyn FnOnce(&mut Settings) + Send>;

/// How a test wants its daemon.
pub struct Options {
    pub backend: Backend,
    /// A rules folder to copy (the copy may be edited by the test).
    pub rules_from: PathBuf,
    pub watch_rules: bool,
    /// Connect to RabbitMQ here instead (a proxy the test can cut).
    pub amqp_url: Option<String>,
    /// The channels folder (default: the repository's `channels/`).
    pub channels_from: PathBuf,
    /// An external DMS to register items in too.
    pub dms: Option<pietura::dms::DmsSettings>,
    /// clamd (`[malware]`); none by default.
    pub malware: pietura::malware::MalwareSettings,
    /// Last changes to the daemon's settings (desk sign-in, a fixed port …).
    pub tweak: Option<SettingsTweak>,
}

impl Options {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            rules_from: repo_path("rules"),
            watch_rules: false,
            amqp_url: None,
            channels_from: repo_path("channels"),
            dms: None,
            malware: pietura::malware::MalwareSettings::default(),
            tweak: None,
        }
    }
}

/// A running daemon and what it runs on.
pub struct TestEnv {
    pub daemon: Daemon,
    pub base: String,
    pub backend: Backend,
    pub prefix: String,
    pub rules_dir: PathBuf,
    /// Sends the token of [`TestEnv::api_token`] with every request.
    pub http: reqwest::Client,
    /// Token of the API client `tests` (every unit, every action).
    pub api_token: String,
    pg_db: Option<String>,
    settings: Settings,
    _dir: TempDir,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create rules copy");
    let entries: Vec<_> = std::fs::read_dir(from)
        .unwrap_or_else(|e| panic!("rules fixture {} not found: {e}", from.display()))
        .collect();
    assert!(
        !entries.is_empty(),
        "rules fixture {} is empty",
        from.display()
    );
    for entry in entries {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy rules file");
        }
    }
}

/// An HTTP client that sends `Authorization: Bearer <token>` with every request.
pub fn api_http(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("token header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("HTTP client")
}

/// Daemon logs in the test output, filtered by `PIETURA_LOG` (default: warnings).
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PIETURA_LOG")
                .unwrap_or_else(|_| "warn,sqlx=error".into()),
        )
        .with_test_writer()
        .try_init();
}

impl TestEnv {
    pub async fn start(opts: Options) -> TestEnv {
        init_logs();
        let dir = tempfile::tempdir().expect("temp dir");
        let rules_dir = dir.path().join("rules");
        copy_dir(&opts.rules_from, &rules_dir);
        let prefix = format!("pt{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let mut s = Settings {
            data_dir: dir.path().join("data"),
            ..Settings::default()
        };
        s.http.listen = "127.0.0.1:0".parse().expect("addr");
        s.http.submissions_per_minute = 100_000;
        s.rules.dir = rules_dir.clone();
        s.rules.watch = opts.watch_rules;
        s.channels.dir = opts.channels_from.clone();
        s.bus.prefix = prefix.clone();
        s.dms = opts.dms.clone();
        s.malware = opts.malware.clone();
        if let Some(tweak) = opts.tweak {
            tweak(&mut s);
        }
        let mut pg_db = None;
        match opts.backend {
            Backend::Amqp => {
                let direct = amqp_url();
                require("RabbitMQ", &direct).await;
                s.bus.kind = BusKind::Amqp;
                s.bus.url = Some(SecretString::from(opts.amqp_url.unwrap_or(direct)));
                let (url, name) = fresh_pg_database().await;
                s.database.url = Some(SecretString::from(url));
                pg_db = Some(name);
            }
            Backend::Embedded => {
                s.bus.kind = BusKind::Embedded;
            }
        }
        let daemon = Daemon::start(s.clone())
            .await
            .unwrap_or_else(|e| panic!("daemon did not start: {e}"));
        let base = format!("http://{}", daemon.addr);
        let (_, api_token) = pietura::api_clients::add(
            &daemon.registry,
            "tests",
            pietura::api_clients::UnitScope::All,
            pietura::api_clients::ApiAction::ALL.into_iter().collect(),
        )
        .await
        .expect("API client for the tests");
        TestEnv {
            daemon,
            base,
            backend: opts.backend,
            prefix,
            rules_dir,
            http: api_http(&api_token),
            api_token,
            pg_db,
            settings: s,
            _dir: dir,
        }
    }

    /// A second daemon on the same database, queues, data folder and
    /// channels, as a second instance of a scaled-out deployment.
    pub async fn another_daemon(&self) -> Daemon {
        let mut settings = self.settings.clone();
        settings.http.listen = "127.0.0.1:0".parse().expect("addr");
        Daemon::start(settings)
            .await
            .unwrap_or_else(|e| panic!("second daemon did not start: {e}"))
    }

    /// The registry's URL, for a test that connects as another daemon would.
    /// Runs the real `pietura` binary on this daemon's registry and rules,
    /// with `vars` set and no other `PIETURA*` variable of the test's own.
    pub fn cli(&self, args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pietura"));
        cmd.args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("PIETURA") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.env("PIETURA__DATABASE__URL", self.database_url())
            .env("PIETURA__RULES__DIR", &self.rules_dir)
            .envs(vars.iter().copied());
        cmd.output().expect("run pietura")
    }

    pub fn database_url(&self) -> String {
        self.settings.database_url().expect("database URL")
    }

    /// Where the daemon keeps blobs (attachments, raw mail).
    pub fn blob_dir(&self) -> PathBuf {
        self.settings.blob_dir()
    }

    /// Stops the daemon as an operator would and starts a new one on the
    /// same database, queues and data folder.
    pub async fn restart(self) -> TestEnv {
        let TestEnv {
            daemon,
            backend,
            prefix,
            rules_dir,
            http,
            api_token,
            pg_db,
            settings,
            _dir,
            ..
        } = self;
        daemon.shutdown().await;
        let daemon = Daemon::start(settings.clone())
            .await
            .unwrap_or_else(|e| panic!("daemon did not start again: {e}"));
        let base = format!("http://{}", daemon.addr);
        TestEnv {
            daemon,
            base,
            backend,
            prefix,
            rules_dir,
            http,
            api_token,
            pg_db,
            settings,
            _dir,
        }
    }

    /// Stops the daemon and removes the test's queues and database.
    pub async fn stop(self) {
        let TestEnv {
            daemon,
            prefix,
            pg_db,
            backend,
            ..
        } = self;
        let units: Vec<String> = daemon.rules.load().units.keys().cloned().collect();
        daemon.shutdown().await;
        if backend == Backend::Amqp
            && let Err(e) = pietura::bus::amqp::delete_topology(
                &amqp_url(),
                &Default::default(),
                &prefix,
                &units,
            )
            .await
        {
            eprintln!("could not delete the test's queues ({prefix}.*): {e}");
        }
        if let Some(name) = pg_db {
            drop_pg_database(&name).await;
        }
    }

    /// A fresh page token, as the browser gets it with the form.
    pub async fn form_token(&self) -> String {
        let page = self
            .http
            .get(format!("{}/forms/iesniegums", self.base))
            .send()
            .await
            .expect("GET form")
            .text()
            .await
            .expect("form page");
        let start = page
            .find("name=\"form_token\" value=\"")
            .expect("token field on the form page")
            + "name=\"form_token\" value=\"".len();
        page[start..]
            .split('"')
            .next()
            .expect("token value")
            .to_string()
    }

    /// Submits the form as a browser would (urlencoded), asking for the JSON receipt.
    pub async fn submit(&self, token: &str, subject: &str, text: &str) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}/forms/iesniegums", self.base))
            .header("accept", "application/json")
            .form(&[
                ("form_token", token),
                ("vards", "Anna Kalniņa"),
                ("epasts", "anna.kalnina@example.lv"),
                ("temats", subject),
                ("teksts", text),
            ])
            .send()
            .await
            .expect("POST form");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// Submits a form and waits for its item to be registered.
    pub async fn submit_item(&self, subject: &str, text: &str) -> ItemSummary {
        let token = self.form_token().await;
        let (status, receipt) = self.submit(&token, subject, text).await;
        assert!(status == 201 || status == 202, "{status}: {receipt}");
        self.registered(receipt["tracking_id"].as_str().expect("tracking id"))
            .await
    }

    /// POSTs JSON to the daemon; the status and the JSON answer.
    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// GETs JSON from the daemon.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
    }

    /// Publishes an intake message on the daemon's bus (with confirm), as a
    /// door would.
    pub async fn publish(&self, msg: &pietura::message::IntakeMessage) {
        self.daemon
            .bus
            .publish(
                pietura::bus::Route::Intake(msg),
                &msg.encode(),
                &msg.id.to_string(),
            )
            .await
            .expect("publish");
    }

    /// Waits until the item with a source's idempotency key is registered.
    pub async fn registered_key(&self, key: &str) -> ItemSummary {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(item) = self.daemon.registry.find_by_key(key).await.expect("lookup") {
                return item;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no item with key {key} within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The message an item was registered from.
    pub async fn message_of(&self, item: &ItemSummary) -> pietura::message::IntakeMessage {
        self.daemon
            .registry
            .item_message(&item.id)
            .await
            .unwrap_or_else(|e| panic!("message of {}: {e}", item.registration_number))
    }

    /// Waits for the item with `key`; the item and its message.
    pub async fn registered_message(
        &self,
        key: &str,
    ) -> (ItemSummary, pietura::message::IntakeMessage) {
        let item = self.registered_key(key).await;
        let message = self.message_of(&item).await;
        (item, message)
    }

    /// Waits until the item behind a tracking id (message id) is registered.
    pub async fn registered(&self, tracking_id: &str) -> ItemSummary {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(item) = self
                .daemon
                .registry
                .find_by_message(tracking_id)
                .await
                .expect("registry lookup")
            {
                return item;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "message {tracking_id} was not registered within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The message the channel produced, as kept in the registry, validates
    /// against the published schema.
    pub async fn assert_stored_message_matches_schema(&self, item_id: &str) {
        let (stored,): (String,) = sqlx::query_as("SELECT message_json FROM items WHERE id = $1")
            .bind(item_id)
            .fetch_one(self.daemon.registry.pool())
            .await
            .expect("stored message");
        let validator = jsonschema::validator_for(&published_schema()).expect("schema compiles");
        let msg: serde_json::Value = serde_json::from_str(&stored).expect("stored JSON");
        let errors: Vec<String> = validator.iter_errors(&msg).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{msg}\n{errors:?}");
    }

    /// Takes every notice waiting in a routed queue (`unit.<id>` or `review`).
    pub async fn drain_routed(&self, queue: &str) -> Vec<RoutedNotice> {
        match self.backend {
            Backend::Amqp => {
                let conn =
                    lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
                        .await
                        .expect("connect to RabbitMQ");
                let ch = conn.create_channel().await.expect("channel");
                let name = format!("{}.{queue}", self.prefix);
                let mut out = Vec::new();
                while let Some(msg) = ch
                    .basic_get(name.clone().into(), BasicGetOptions::default())
                    .await
                    .unwrap_or_else(|e| panic!("basic_get {name}: {e}"))
                {
                    out.push(
                        serde_json::from_slice(&msg.delivery.data).expect("routed notice JSON"),
                    );
                    msg.delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await
                        .expect("ack");
                }
                let _ = conn.close(200, "done".into()).await;
                out
            }
            Backend::Embedded => {
                let rows: Vec<(String,)> =
                    sqlx::query_as("DELETE FROM bus_messages WHERE queue = $1 RETURNING payload")
                        .bind(queue)
                        .fetch_all(self.daemon.registry.pool())
                        .await
                        .expect("read embedded queue");
                rows.iter()
                    .map(|(p,)| serde_json::from_str(p).expect("routed notice JSON"))
                    .collect()
            }
        }
    }

    /// Collects routed notices until `want` have arrived in `queue`.
    pub async fn wait_routed(&self, queue: &str, want: usize) -> Vec<RoutedNotice> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut got = Vec::new();
        loop {
            got.extend(self.drain_routed(queue).await);
            if got.len() >= want {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {want} notices reached {queue} within {WAIT:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A TCP proxy in front of RabbitMQ whose connections the test can cut,
/// as a network failure or a broker restart would.
pub struct CuttableProxy {
    pub addr: SocketAddr,
    cut: tokio::sync::broadcast::Sender<()>,
}

impl CuttableProxy {
    pub async fn start(upstream: String) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (cut, _) = tokio::sync::broadcast::channel(16);
        let cut_tx = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let mut cut_rx = cut_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.recv() => {}
                    }
                    // Dropping both sockets closes them abruptly.
                });
            }
        });
        CuttableProxy { addr, cut }
    }

    /// Closes every open connection through the proxy.
    pub fn cut_all(&self) {
        let _ = self.cut.send(());
    }

    /// An AMQP URL that goes through the proxy.
    pub fn url(&self) -> String {
        let direct = amqp_url();
        let host = host_port(&direct);
        direct.replacen(&host, &self.addr.to_string(), 1)
    }
}

/// An SMS item from `phone`, routed to `unit` by the rules.
pub fn assert_sms_routed(item: &ItemSummary, phone: &str, unit: &str) {
    assert_eq!(item.channel_kind, "sms", "{item:?}");
    assert_eq!(item.sender_phone.as_deref(), Some(phone), "{item:?}");
    assert_eq!(
        item.unit_id.as_deref(),
        Some(unit),
        "routed by the rules: {item:?}"
    );
}

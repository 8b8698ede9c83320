//! TLS to PostgreSQL and RabbitMQ (issue 17), against the real servers with
//! a private CA this test makes with `openssl`: its own PostgreSQL that
//! takes TLS connections only (`hostssl … cert`: a client certificate signed
//! by the CA is the sign-in) and its own RabbitMQ node with a TLS listener
//! that requires a client certificate. Both are started once and shared by
//! the parts of the one test below (CI has two cores).
//!
//! Before this change sqlx and lapin were built without TLS: `sslmode=require`
//! failed, the default `prefer` was plaintext, and `amqps://` could not
//! connect — each part below fails on that build.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use pietura::bus::BusError;
use pietura::bus::amqp::{AmqpBus, AmqpOptions, NoticeBounds};
use pietura::config::Settings;
use pietura::daemon::Daemon;
use pietura::registry::Registry;
use pietura::tls::{AmqpTls, BusTlsSettings};
use sqlx::Connection;
use support::servers::{Cluster, PgOptions, PgTls, Postgres, RabbitOptions, RabbitTls};

/// The files of the test's private CA, and of a CA nobody trusts.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    /// Common name `pietura`: PostgreSQL's user (`cert` authentication).
    db_cert: PathBuf,
    db_key: PathBuf,
    bus_cert: PathBuf,
    bus_key: PathBuf,
}

impl Pki {
    fn make(root: &Path) -> Pki {
        let ours = root.join("ca");
        let theirs = root.join("other-ca");
        std::fs::create_dir_all(&ours).expect("ca dir");
        std::fs::create_dir_all(&theirs).expect("other ca dir");
        let (ca, server_cert, server_key) = support::make_certificates(&ours);
        let (other_ca, _, _) = support::make_certificates(&theirs);
        let (db_cert, db_key) = support::make_client_certificate(&ours, "pietura");
        let (bus_cert, bus_key) = support::make_client_certificate(&ours, "pietura-bus");
        Pki {
            ca,
            other_ca,
            server_cert,
            server_key,
            db_cert,
            db_key,
            bus_cert,
            bus_key,
        }
    }
}

/// The TLS-only PostgreSQL and the RabbitMQ node with a TLS listener.
struct Servers {
    pg: Postgres,
    rabbit: Cluster,
}

impl Servers {
    fn start(root: &Path, pki: &Pki) -> Servers {
        std::thread::scope(|s| {
            let pg = s.spawn(|| {
                Postgres::start_with(
                    root,
                    PgOptions {
                        tls: Some(PgTls {
                            ca: pki.ca.clone(),
                            cert: pki.server_cert.clone(),
                            key: pki.server_key.clone(),
                        }),
                        // TLS only, signed in by the client certificate; the
                        // server's own socket for nothing but its tools.
                        hba: Some(
                            "local all all trust\nhostssl all all 127.0.0.1/32 cert\n".into(),
                        ),
                    },
                )
            });
            let rabbit = s.spawn(|| {
                Cluster::start_with(
                    root,
                    RabbitOptions {
                        nodes: 1,
                        name: "tls".into(),
                        tls: Some(RabbitTls {
                            ca: pki.ca.clone(),
                            cert: pki.server_cert.clone(),
                            key: pki.server_key.clone(),
                            require_client_certificate: true,
                        }),
                    },
                )
            });
            Servers {
                pg: pg.join().expect("PostgreSQL started"),
                rabbit: rabbit.join().expect("RabbitMQ started"),
            }
        })
    }

    /// A database URL with the given TLS parameters (libpq's names).
    fn db_url(&self, db: &str, params: &str) -> String {
        format!(
            "postgres://pietura@127.0.0.1:{}/{db}?{params}",
            self.pg.port
        )
    }
}

fn client_cert_params(pki: &Pki) -> String {
    format!(
        "sslcert={}&sslkey={}",
        pki.db_cert.display(),
        pki.db_key.display()
    )
}

async fn connect_error(url: &str) -> String {
    match Registry::connect(url, Some(1)).await {
        Ok(_) => panic!("connected, but should have been refused: {url}"),
        Err(e) => format!("{e} / {:?}", std::error::Error::source(&e)),
    }
}

fn bus_options(url: &str, tls: AmqpTls) -> AmqpOptions {
    AmqpOptions {
        urls: vec![url.to_string()],
        quorum_group_size: None,
        prefix: format!("tls{}", &uuid::Uuid::now_v7().simple().to_string()[24..]),
        prefetch: 10,
        delivery_limit: 5,
        publish_timeout: Duration::from_secs(10),
        notice_bounds: NoticeBounds::default(),
        tls,
    }
}

async fn bus_error(url: &str, tls: BusTlsSettings) -> String {
    let tls = AmqpTls::load(&tls).expect("TLS files load");
    match AmqpBus::connect(bus_options(url, tls)).await {
        Ok(_) => panic!("the bus connected, but should have been refused"),
        Err(e @ BusError::Unavailable(_)) => e.to_string(),
        Err(e) => panic!("expected the connection to be refused, got: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_and_rabbitmq_over_tls_with_a_private_ca() {
    let root = tempfile::tempdir().expect("temp dir");
    let pki = Pki::make(root.path());
    let servers = tokio::task::block_in_place(|| Servers::start(root.path(), &pki));
    let admin = servers.db_url(
        "postgres",
        &format!(
            "sslmode=verify-full&sslrootcert={}&{}",
            pki.ca.display(),
            client_cert_params(&pki)
        ),
    );
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "verify-full to the test's PostgreSQL: {e}\n{}",
                servers.pg.log()
            )
        });
    sqlx::query("CREATE DATABASE pietura")
        .execute(&mut conn)
        .await
        .expect("create database");
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .expect("pg_stat_ssl");
    assert!(ssl, "the connection is not TLS");
    drop(conn);

    sslmode_require_connects(&servers, &pki).await;
    default_prefer_uses_tls(&servers).await;
    plaintext_is_refused_by_a_tls_only_server(&servers).await;
    a_wrong_ca_is_refused(&servers, &pki).await;
    the_bus_needs_its_client_certificate(&servers, &pki).await;
    an_item_goes_through_the_daemon_over_tls(root.path(), &servers, &pki).await;
}

/// The old defect: with `sslmode=require` the registry could not connect
/// ("SQLx was built without TLS support").
async fn sslmode_require_connects(servers: &Servers, pki: &Pki) {
    let url = servers.db_url(
        "pietura",
        &format!("sslmode=require&{}", client_cert_params(pki)),
    );
    let registry = Registry::connect(&url, Some(1))
        .await
        .unwrap_or_else(|e| panic!("sslmode=require: {e}"));
    registry.ping().await.expect("ping over TLS");
}

/// The default `prefer` now tries TLS first: the server sees a TLS
/// connection (asking for the client certificate), not plaintext.
async fn default_prefer_uses_tls(servers: &Servers) {
    let text = connect_error(&servers.db_url("pietura", "application_name=pietura")).await;
    assert!(
        text.contains("certificate") && !text.contains("no encryption"),
        "prefer did not use TLS: {text}"
    );
}

async fn plaintext_is_refused_by_a_tls_only_server(servers: &Servers) {
    let text = connect_error(&servers.db_url("pietura", "sslmode=disable")).await;
    assert!(
        text.contains("no encryption"),
        "plaintext not refused as such: {text}"
    );
}

/// A server whose certificate is not signed by the configured CA (another
/// CA of the same name) is refused, by the database connection and by the bus.
async fn a_wrong_ca_is_refused(servers: &Servers, pki: &Pki) {
    let url = servers.db_url(
        "pietura",
        &format!(
            "sslmode=verify-full&sslrootcert={}&{}",
            pki.other_ca.display(),
            client_cert_params(pki)
        ),
    );
    let text = connect_error(&url).await;
    assert!(
        text.contains("invalid peer certificate"),
        "database: not refused for its certificate: {text}"
    );
    let text = bus_error(
        &servers.rabbit.tls_urls()[0],
        BusTlsSettings {
            ca_file: Some(pki.other_ca.clone()),
            client_cert: Some(pki.bus_cert.clone()),
            client_key: Some(pki.bus_key.clone()),
        },
    )
    .await;
    assert!(
        text.contains("invalid peer certificate"),
        "bus: not refused for its certificate: {text}"
    );
}

/// The broker asks for a client certificate: without one it refuses, with
/// one signed by its CA it accepts.
async fn the_bus_needs_its_client_certificate(servers: &Servers, pki: &Pki) {
    let url = &servers.rabbit.tls_urls()[0];
    let text = bus_error(
        url,
        BusTlsSettings {
            ca_file: Some(pki.ca.clone()),
            ..Default::default()
        },
    )
    .await;
    // TLS 1.3 sends the client's (empty) certificate after the client
    // already thinks the handshake is done: the broker's alert arrives as
    // `CertificateRequired`, or, when it closes first, as a reset. Either
    // is a refusal; the same address with the certificate works below.
    assert!(
        text.contains("CertificateRequired") || text.contains("Connection reset by peer"),
        "not refused for the missing client certificate: {text}"
    );
    let tls = AmqpTls::load(&BusTlsSettings {
        ca_file: Some(pki.ca.clone()),
        client_cert: Some(pki.bus_cert.clone()),
        client_key: Some(pki.bus_key.clone()),
    })
    .expect("TLS files");
    let opts = bus_options(url, tls.clone());
    let prefix = opts.prefix.clone();
    AmqpBus::connect(opts)
        .await
        .unwrap_or_else(|e| panic!("amqps with the client certificate: {e}"));
    pietura::bus::amqp::delete_topology(url, &tls, &prefix, &[])
        .await
        .expect("delete topology over TLS");
}

/// The daemon, configured from a file with `sslmode=verify-full` and
/// `amqps://` + `bus.tls`: a form submission is published with confirm,
/// consumed and registered.
async fn an_item_goes_through_the_daemon_over_tls(root: &Path, servers: &Servers, pki: &Pki) {
    let file = root.join("pietura.toml");
    let db_url = servers.db_url(
        "pietura",
        &format!(
            "sslmode=verify-full&sslrootcert={}&{}",
            pki.ca.display(),
            client_cert_params(pki)
        ),
    );
    std::fs::write(
        &file,
        format!(
            "data_dir = \"{data}\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\
             [database]\nurl = \"{db_url}\"\n\
             [bus]\nkind = \"amqp\"\nurls = [\"{amqps}\"]\nprefix = \"tlsdaemon\"\n\
             [bus.tls]\nca_file = \"{ca}\"\nclient_cert = \"{cert}\"\nclient_key = \"{key}\"\n\
             [rules]\ndir = \"{rules}\"\nwatch = false\n\
             [channels]\ndir = \"{channels}\"\n",
            data = root.join("data").display(),
            amqps = servers.rabbit.tls_urls()[0],
            ca = pki.ca.display(),
            cert = pki.bus_cert.display(),
            key = pki.bus_key.display(),
            rules = support::repo_path("rules").display(),
            channels = support::repo_path("channels").display(),
        ),
    )
    .expect("config file");
    let settings = Settings::load_with_env(Some(&file), Vec::<(String, String)>::new())
        .unwrap_or_else(|e| panic!("the TLS configuration does not load: {e}"));
    let daemon = Daemon::start(settings)
        .await
        .unwrap_or_else(|e| panic!("daemon over TLS did not start: {e}"));
    let base = format!("http://{}", daemon.addr);
    let http = reqwest::Client::new();
    let page = http
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
    let resp = http
        .post(format!("{base}/forms/iesniegums"))
        .header("accept", "application/json")
        .form(&[
            ("form_token", token.as_str()),
            ("vards", "Anna Kalniņa"),
            ("epasts", "anna.kalnina@example.lv"),
            ("temats", "Pārbaude pār TLS"),
            ("teksts", "Lūdzu izsniegt izziņu par deklarēto dzīvesvietu."),
        ])
        .send()
        .await
        .expect("POST form");
    let status = resp.status().as_u16();
    let receipt: serde_json::Value = resp.json().await.expect("JSON receipt");
    assert!(status == 201 || status == 202, "{status}: {receipt}");
    let tracking = receipt["tracking_id"].as_str().expect("tracking id");
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let item = loop {
        if let Some(item) = daemon
            .registry
            .find_by_message(tracking)
            .await
            .expect("registry lookup over TLS")
        {
            break item;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the item was not registered over TLS within {:?}",
            support::WAIT
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!item.registration_number.is_empty(), "{item:?}");
    // The broker saw the daemon's connections over TLS, with its certificate.
    let node = servers.rabbit.nodes[0].name.clone();
    let connections = tokio::task::block_in_place(|| {
        servers.rabbit.ctl(
            &node,
            &["-q", "list_connections", "ssl", "peer_cert_subject"],
        )
    });
    assert!(
        connections.contains("true") && connections.contains("CN=pietura-bus"),
        "{connections}"
    );
    assert!(
        !connections.lines().any(|l| l.starts_with("false")),
        "a plaintext connection: {connections}"
    );
    daemon.shutdown().await;
}

//! TLS to the daemon's own servers, checked before anything connects.
//!
//! - PostgreSQL: the database URL carries libpq's parameters (`sslmode`,
//!   `sslrootcert`, `sslcert`, `sslkey`); sqlx speaks TLS with rustls.
//!   [`database_url_issues`] finds files that are not there and a URL that
//!   could talk plaintext to another host.
//! - RabbitMQ over `amqps://`: [`BusTlsSettings`] (`bus.tls`) names the CA
//!   that signed the brokers' certificates (the only one trusted: there is no
//!   built-in root store) and an optional client certificate;
//!   [`AmqpTls::load`] reads them once for every connection.
//!
//! A server on another host is reached over TLS; plaintext only when the
//! section says `allow_plaintext = true` (a private network the operator
//! vouches for). Loopback and Unix sockets are always allowed.

use std::fmt;
use std::path::{Path, PathBuf};

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use serde::Deserialize;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// `bus.tls`: the files for `amqps://`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusTlsSettings {
    /// PEM file with the CA certificate(s) that signed the brokers'
    /// certificates; required for `amqps://` (for a broker with a public
    /// certificate: the system bundle, `/etc/ssl/certs/ca-certificates.crt`).
    pub ca_file: Option<PathBuf>,
    /// PEM file with this daemon's client certificate (and its chain), for
    /// a broker that asks for one (`ssl_options.verify = verify_peer`).
    pub client_cert: Option<PathBuf>,
    /// PEM file with the client certificate's private key (unencrypted).
    pub client_key: Option<PathBuf>,
}

/// A file named in `bus.tls` that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("{key}: cannot read {}: {source}", .path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: {} holds no PEM {what}", .path.display())]
    Empty {
        key: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("{key}: {} is not valid PEM: {message}", .path.display())]
    Invalid {
        key: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("bus.tls.{given} is set without bus.tls.{missing}: give both or neither")]
    Half {
        given: &'static str,
        missing: &'static str,
    },
}

impl TlsFileError {
    /// The configuration key at fault (`bus.tls.ca_file`, …).
    pub fn key(&self) -> &'static str {
        match self {
            TlsFileError::Read { key, .. }
            | TlsFileError::Empty { key, .. }
            | TlsFileError::Invalid { key, .. } => key,
            TlsFileError::Half { given, .. } => match *given {
                "client_cert" => "bus.tls.client_cert",
                _ => "bus.tls.client_key",
            },
        }
    }
}

/// The TLS lapin uses for `amqps://` addresses, read from `bus.tls` once.
/// Its `Debug` shows which files were given, never the key.
#[derive(Clone, Default)]
pub struct AmqpTls {
    config: OwnedTLSConfig,
}

impl fmt::Debug for AmqpTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpTls")
            .field("ca", &self.config.cert_chain.is_some())
            .field("client_certificate", &self.config.identity.is_some())
            .finish()
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a PEM file that must hold at least one certificate.
fn certificates(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsFileError::Invalid {
            key,
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsFileError::Empty {
            key,
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(pem)
}

impl AmqpTls {
    /// Reads and checks the files `bus.tls` names (all of them, so a
    /// mistake shows at start, not at the first reconnect).
    pub fn load(s: &BusTlsSettings) -> Result<Self, TlsFileError> {
        let cert_chain = match &s.ca_file {
            Some(path) => {
                let pem = certificates("bus.tls.ca_file", path)?;
                Some(String::from_utf8(pem).map_err(|e| TlsFileError::Invalid {
                    key: "bus.tls.ca_file",
                    path: path.clone(),
                    message: e.to_string(),
                })?)
            }
            None => None,
        };
        let identity = match (&s.client_cert, &s.client_key) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(TlsFileError::Half {
                    given: "client_cert",
                    missing: "client_key",
                });
            }
            (None, Some(_)) => {
                return Err(TlsFileError::Half {
                    given: "client_key",
                    missing: "client_cert",
                });
            }
            (Some(cert), Some(key_path)) => {
                let pem = certificates("bus.tls.client_cert", cert)?;
                let key = read("bus.tls.client_key", key_path)?;
                PrivateKeyDer::from_pem_slice(&key).map_err(|e| TlsFileError::Invalid {
                    key: "bus.tls.client_key",
                    path: key_path.clone(),
                    message: format!("no private key ({e})"),
                })?;
                Some(OwnedIdentity::PKCS8 { pem, key })
            }
        };
        Ok(Self {
            config: OwnedTLSConfig {
                identity,
                cert_chain,
            },
        })
    }

    /// What lapin's `connect_with_config` takes.
    pub fn lapin_config(&self) -> OwnedTLSConfig {
        self.config.clone()
    }
}

/// Problems with `bus.tls` given the bus addresses, as `(key, message)`.
pub fn bus_tls_issues(s: &BusTlsSettings, urls: &[String]) -> Vec<(String, String)> {
    let tls_urls = urls.iter().filter(|u| u.starts_with("amqps://")).count();
    let mut issues = Vec::new();
    if tls_urls > 0 && s.ca_file.is_none() {
        issues.push((
            "bus.tls.ca_file".to_string(),
            "an amqps:// address needs the CA that signed the brokers' certificates: set \
             bus.tls.ca_file to its PEM file (for a public CA, the system bundle \
             /etc/ssl/certs/ca-certificates.crt)"
                .to_string(),
        ));
    }
    if tls_urls == 0 && (s.ca_file.is_some() || s.client_cert.is_some() || s.client_key.is_some()) {
        issues.push((
            "bus.tls".to_string(),
            "is set but no bus address uses amqps://, so it would not be used: write the \
             addresses as amqps://…:5671/…"
                .to_string(),
        ));
    }
    if let Err(e) = AmqpTls::load(s) {
        let text = e.to_string();
        let message = text
            .strip_prefix(&format!("{}: ", e.key()))
            .unwrap_or(&text)
            .to_string();
        issues.push((e.key().to_string(), message));
    }
    issues
}

/// `localhost`, a loopback address, or a Unix socket directory: a host
/// plaintext may go to (the database, the bus, IMAP and SMTP).
pub fn is_local_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.is_empty()
        || host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Plain `amqp://` addresses to another host, refused unless
/// `bus.allow_plaintext`: `(index, host)`.
pub fn plaintext_bus_hosts(urls: &[String]) -> Vec<(usize, String)> {
    urls.iter()
        .enumerate()
        .filter(|(_, u)| u.starts_with("amqp://"))
        .filter_map(|(i, u)| {
            let host = url::Url::parse(u).ok()?.host_str()?.to_string();
            (!is_local_host(&host)).then_some((i, host))
        })
        .collect()
}

/// What a `postgres://` URL asks of TLS (libpq's names and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTransport {
    /// The host, or the socket directory, connected to.
    pub host: String,
    /// `disable`, `allow`, `prefer` (the default), `require`, `verify-ca`, `verify-full`.
    pub sslmode: String,
    pub sslrootcert: Option<PathBuf>,
    pub sslcert: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
}

impl PgTransport {
    /// Reads a `postgres://` URL; `None` for another scheme or a URL that
    /// does not parse (the connection reports that).
    pub fn of_url(database_url: &str) -> Option<Self> {
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return None;
        }
        let url = url::Url::parse(database_url).ok()?;
        let mut t = PgTransport {
            host: url.host_str().unwrap_or("").to_string(),
            sslmode: std::env::var("PGSSLMODE").unwrap_or_else(|_| "prefer".into()),
            sslrootcert: std::env::var_os("PGSSLROOTCERT").map(PathBuf::from),
            sslcert: std::env::var_os("PGSSLCERT").map(PathBuf::from),
            sslkey: std::env::var_os("PGSSLKEY").map(PathBuf::from),
        };
        if t.host.is_empty() {
            t.host = std::env::var("PGHOST").unwrap_or_default();
        }
        for (k, v) in url.query_pairs() {
            match &*k {
                "sslmode" | "ssl-mode" => t.sslmode = v.to_ascii_lowercase(),
                "sslrootcert" | "ssl-root-cert" | "ssl-ca" => {
                    t.sslrootcert = Some(PathBuf::from(&*v))
                }
                "sslcert" | "ssl-cert" => t.sslcert = Some(PathBuf::from(&*v)),
                "sslkey" | "ssl-key" => t.sslkey = Some(PathBuf::from(&*v)),
                "host" | "hostaddr" => t.host = v.into_owned(),
                _ => {}
            }
        }
        Some(t)
    }

    /// Whether the connection may go without TLS (sqlx falls back to
    /// plaintext with `prefer` and `allow`).
    pub fn may_be_plaintext(&self) -> bool {
        matches!(self.sslmode.as_str(), "disable" | "allow" | "prefer")
    }

    /// Whether the server's name is checked against its certificate.
    pub fn verifies_host(&self) -> bool {
        self.sslmode == "verify-full"
    }
}

/// Problems with a database URL's TLS, as messages for `database.url`
/// (never quoting the URL: it may hold the password).
pub fn database_url_issues(database_url: &str, allow_plaintext: bool) -> Vec<String> {
    let Some(t) = PgTransport::of_url(database_url) else {
        return Vec::new();
    };
    let mut issues = Vec::new();
    const MODES: [&str; 6] = [
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
    ];
    if !MODES.contains(&t.sslmode.as_str()) {
        issues.push(format!(
            "sslmode={} is not one of {}",
            t.sslmode,
            MODES.join(", ")
        ));
    }
    for (name, file) in [
        ("sslrootcert", &t.sslrootcert),
        ("sslcert", &t.sslcert),
        ("sslkey", &t.sslkey),
    ] {
        if let Some(path) = file
            && !path.is_file()
        {
            issues.push(format!("{name}: {} is not a readable file", path.display()));
        }
    }
    if t.sslcert.is_some() != t.sslkey.is_some() {
        issues.push("give sslcert and sslkey together (the client certificate and its key)".into());
    }
    if t.may_be_plaintext() && !allow_plaintext && !is_local_host(&t.host) {
        issues.push(format!(
            "sslmode={} may send the registry's data in plaintext to {}: use \
             sslmode=verify-full&sslrootcert=/path/to/ca.pem, or set \
             database.allow_plaintext = true for a network you trust",
            t.sslmode, t.host
        ));
    }
    issues
}

/// What the operator should know but need not fix, for the start-up log:
/// TLS that does not check whom it talks to.
pub fn database_url_warnings(database_url: &str) -> Vec<String> {
    match PgTransport::of_url(database_url) {
        Some(t) if !t.may_be_plaintext() && !t.verifies_host() && !is_local_host(&t.host) => {
            vec![format!(
                "database.url: sslmode={} encrypts but does not check the server's name; \
                 sslmode=verify-full&sslrootcert=… does",
                t.sslmode
            )]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts_are_loopback_names_addresses_and_sockets() {
        for h in [
            "localhost",
            "127.0.0.1",
            "127.0.0.5",
            "[::1]",
            "::1",
            "/run/postgresql",
            "",
        ] {
            assert!(is_local_host(h), "{h}");
        }
        for h in ["db.example.lv", "10.0.0.5", "postgres", "[2001:db8::1]"] {
            assert!(!is_local_host(h), "{h}");
        }
    }

    #[test]
    fn a_plain_or_preferring_url_to_another_host_is_refused_unless_allowed() {
        let remote = "postgres://u:secretpw@db.example.lv:5432/pietura";
        let issues = database_url_issues(remote, false);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(issues[0].contains("sslmode=prefer") && issues[0].contains("db.example.lv"));
        assert!(!issues[0].contains("secretpw"), "{issues:?}");
        assert!(database_url_issues(remote, true).is_empty());
        for mode in ["disable", "allow"] {
            let u = format!("{remote}?sslmode={mode}");
            assert_eq!(database_url_issues(&u, false).len(), 1, "{mode}");
        }
        // TLS required: accepted; a warning when the name is not checked.
        let require = format!("{remote}?sslmode=require");
        assert!(database_url_issues(&require, false).is_empty());
        assert_eq!(database_url_warnings(&require).len(), 1);
        // Loopback and sockets: plaintext is fine.
        assert!(database_url_issues("postgres://u@127.0.0.1/p", false).is_empty());
        assert!(database_url_issues("postgres://u@localhost/p?sslmode=disable", false).is_empty());
        assert!(database_url_issues("postgres:///p?host=/run/postgresql", false).is_empty());
        assert!(database_url_issues("sqlite://x.db", false).is_empty());
    }

    #[test]
    fn missing_certificate_files_and_unknown_modes_are_named() {
        let issues = database_url_issues(
            "postgres://u@db.example.lv/p?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem&sslcert=/nonexistent/c.pem",
            false,
        );
        let text = issues.join("\n");
        assert!(text.contains("sslrootcert: /nonexistent/ca.pem"), "{text}");
        assert!(text.contains("sslcert: /nonexistent/c.pem"), "{text}");
        assert!(text.contains("sslcert and sslkey together"), "{text}");
        let issues = database_url_issues("postgres://u@127.0.0.1/p?sslmode=verify_full", false);
        assert!(issues[0].contains("not one of"), "{issues:?}");
    }

    #[test]
    fn amqps_needs_a_ca_file_and_tls_files_need_amqps() {
        let tls = vec!["amqps://u:p@mq.example.lv:5671/%2f".to_string()];
        let issues = bus_tls_issues(&BusTlsSettings::default(), &tls);
        assert_eq!(issues[0].0, "bus.tls.ca_file", "{issues:?}");
        let missing = BusTlsSettings {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let issues = bus_tls_issues(&missing, &tls);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].0, "bus.tls.ca_file");
        assert!(issues[0].1.contains("/nonexistent/ca.pem"), "{issues:?}");
        let plain = vec!["amqp://u:p@127.0.0.1:5672/%2f".to_string()];
        let issues = bus_tls_issues(&missing, &plain);
        assert!(
            issues
                .iter()
                .any(|(k, m)| k == "bus.tls" && m.contains("amqps://"))
        );
        let half = BusTlsSettings {
            client_key: Some("/k.pem".into()),
            ..Default::default()
        };
        let issues = bus_tls_issues(&half, &plain);
        assert!(
            issues.iter().any(|(k, _)| k == "bus.tls.client_key"),
            "{issues:?}"
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a certificate\n").unwrap();
        let s = BusTlsSettings {
            ca_file: Some(file),
            ..Default::default()
        };
        let e = AmqpTls::load(&s).unwrap_err();
        assert_eq!(e.key(), "bus.tls.ca_file");
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn plaintext_bus_addresses_to_other_hosts_are_found() {
        let urls = vec![
            "amqp://u:p@127.0.0.1:5672/%2f".to_string(),
            "amqp://u:p@mq2.example.lv:5672/%2f".to_string(),
            "amqps://u:p@mq3.example.lv:5671/%2f".to_string(),
        ];
        assert_eq!(
            plaintext_bus_hosts(&urls),
            vec![(1, "mq2.example.lv".to_string())]
        );
    }
}

//! The daemon's configuration: embedded defaults, an optional TOML file and
//! `PIETURA__SECTION__KEY` environment overrides, validated in one pass so an
//! operator sees every mistake at once, each with the file and key to fix.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Why the configuration could not be loaded; the message names the file and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration {source_name}: {source}")]
    Parse {
        source_name: String,
        #[source]
        source: config::ConfigError,
    },
    #[error("configuration {source_name} has {} problem(s):\n{}", .issues.len(), .issues.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        source_name: String,
        issues: Vec<ConfigIssue>,
    },
}

/// One problem with one key.
#[derive(Debug, Clone)]
pub struct ConfigIssue {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Everything the daemon needs to start. Every field has an embedded default so
/// that `pietura run` works with no file at all (SQLite + embedded bus).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Folder for the embedded database and blobs when they are not set explicitly.
    pub data_dir: PathBuf,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub bus: BusSettings,
    pub blobs: BlobSettings,
    pub rules: RulesSettings,
    pub channels: ChannelsSettings,
    pub registration: RegistrationSettings,
    pub engine: EngineSettings,
    pub deadlines: DeadlineSettings,
    /// An external document-management system to register items in too;
    /// none: the built-in registry only.
    pub dms: Option<crate::dms::DmsSettings>,
    pub desk: DeskSettings,
    pub janitor: JanitorSettings,
    /// ClamAV's clamd: every attachment and original scanned before routing.
    pub malware: crate::malware::MalwareSettings,
    /// Signed containers (.edoc, .asice, .bdoc): the trust list their
    /// signers' certificates must chain to.
    pub signatures: SignatureSettings,
    /// PDF printing (answer letters, counter receipts): font and letterhead.
    pub print: crate::print::PrintSettings,
    /// Answers to items: outgoing numbers, the e-mail relay.
    pub answers: crate::answers::AnswerSettings,
    /// The archival handover's PDF/A renditions (`pietura archive export`).
    pub archive: crate::archive::ArchiveSettings,
    /// Cross-channel near-duplicates linked at registration.
    pub duplicates: crate::enrich::duplicates::DuplicateSettings,
}

/// `[signatures]`: trust anchors for verifying signed containers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignatureSettings {
    /// PEM files, or directories of `*.pem` / `*.crt`, with the CA
    /// certificates accepted as trust anchors. Empty: no signer is trusted,
    /// so signatures are at best "failed: certificate not trusted".
    pub trust: Vec<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("pietura-data"),
            http: HttpSettings::default(),
            database: DatabaseSettings::default(),
            bus: BusSettings::default(),
            blobs: BlobSettings::default(),
            rules: RulesSettings::default(),
            channels: ChannelsSettings::default(),
            registration: RegistrationSettings::default(),
            engine: EngineSettings::default(),
            deadlines: DeadlineSettings::default(),
            dms: None,
            desk: DeskSettings::default(),
            janitor: JanitorSettings::default(),
            malware: crate::malware::MalwareSettings::default(),
            signatures: SignatureSettings::default(),
            print: crate::print::PrintSettings::default(),
            answers: crate::answers::AnswerSettings::default(),
            archive: crate::archive::ArchiveSettings::default(),
            duplicates: crate::enrich::duplicates::DuplicateSettings::default(),
        }
    }
}

/// The janitor (`src/janitor.rs`): what it prunes, and how often; one
/// daemon at a time runs it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JanitorSettings {
    /// Minutes between runs.
    pub every_minutes: u64,
    /// Embedded bus: routed notices are kept this many hours (nothing
    /// consumes them there; the registry keeps every item).
    pub notice_retention_hours: u64,
    /// A door claim of a registered item is kept this many hours.
    pub door_claim_retention_hours: u64,
    /// A door claim whose submission never arrived is kept this many days.
    pub unfinished_claim_retention_days: u64,
    /// A blob nothing refers to is collected once its file is this many
    /// hours old: longer than any upload takes or any message waits on the bus.
    pub blob_grace_hours: u64,
}

impl Default for JanitorSettings {
    fn default() -> Self {
        Self {
            every_minutes: 60,
            notice_retention_hours: 168,
            door_claim_retention_hours: 24,
            unfinished_claim_retention_days: 30,
            blob_grace_hours: 24,
        }
    }
}

/// The records office's web desk (review queue, rules editor, accounts).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeskSettings {
    /// Send the session cookie only over HTTPS. Unset: on, unless the
    /// daemon listens on a loopback address (a desk behind a local proxy
    /// or a test). Set it `true` whenever a TLS proxy is in front.
    pub secure_cookies: Option<bool>,
    /// A session ends after this many minutes without a request.
    pub session_idle_minutes: i64,
    /// Failed sign-ins per username and per client address (within 15
    /// minutes) before each further attempt is delayed; the delay doubles
    /// from 250 ms with each failure. Nobody is locked out.
    pub login_attempts_per_minute: u32,
    /// The longest delay a sign-in waits, however many failures came before.
    pub login_max_delay_seconds: u64,
    /// Items a rules dry run compares by default.
    pub dry_run_items: i64,
    /// The dashboard and the quarterly reports (aggregates only) are open
    /// without signing in; false: any desk account must sign in.
    pub public_statistics: bool,
    /// Sign-in through an OpenID provider ([`crate::desk::oidc`]).
    pub oidc: Option<crate::desk::oidc::OidcSettings>,
    /// Sign-in against LDAP / Active Directory ([`crate::desk::ldap`]).
    pub ldap: Option<crate::desk::ldap::LdapSettings>,
}

impl Default for DeskSettings {
    fn default() -> Self {
        Self {
            secure_cookies: None,
            session_idle_minutes: 480,
            login_attempts_per_minute: 5,
            login_max_delay_seconds: 10,
            dry_run_items: 200,
            public_statistics: false,
            oidc: None,
            ldap: None,
        }
    }
}

/// The daemon's HTTP server (forms, webhooks, API, health, metrics).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// The address citizens reach us at; used in status links.
    pub public_url: String,
    /// Requests larger than this are refused with 413 before being read.
    pub max_body_bytes: usize,
    /// How long a form submission waits for its registration number before
    /// answering with a tracking link instead.
    pub registration_wait_ms: u64,
    /// Form submissions allowed per client address per minute.
    pub submissions_per_minute: u32,
    /// Legacy bearer token for the item API: an all-units, all-actions
    /// client named `api-token` (deprecated: issue scoped clients with
    /// `pietura api-client add`).
    pub api_token: Option<SecretString>,
    /// Networks of reverse proxies whose forwarded-client header is believed
    /// (e.g. `["127.0.0.1/32", "10.0.0.0/8"]`); nobody else's is.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header a trusted proxy appends the client's address to:
    /// `x-forwarded-for` (nginx, HAProxy) or `forwarded` (RFC 7239).
    pub client_address_header: crate::http::client::ForwardedHeader,
    /// Development only: an item-API call without a credential from a
    /// loopback client is allowed (actor `dev-loopback`). Logged as a
    /// warning at start.
    pub dev_trust_loopback: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            max_body_bytes: 25 * 1024 * 1024,
            registration_wait_ms: 3000,
            submissions_per_minute: 20,
            api_token: None,
            trusted_proxies: Vec::new(),
            client_address_header: crate::http::client::ForwardedHeader::default(),
            dev_trust_loopback: false,
        }
    }
}

/// The registry database: `postgres://…` in production, `sqlite://…` embedded.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub url: Option<SecretString>,
    /// A file holding the URL (e.g. a Docker or systemd secret).
    pub url_file: Option<PathBuf>,
    pub max_connections: Option<u32>,
    /// Allow a URL that may talk plaintext (`sslmode` `disable`, `allow` or
    /// the default `prefer`) to a database on another host: only for a
    /// private network the operator vouches for. Loopback and Unix sockets
    /// need no TLS. Otherwise give `sslmode=verify-full&sslrootcert=…`.
    pub allow_plaintext: bool,
}

/// Which bus carries items from channels to the engine.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    /// A durable queue table in the registry database: one machine, no broker.
    #[default]
    Embedded,
    /// RabbitMQ (AMQP 0-9-1) with quorum queues and publisher confirms.
    Amqp,
}

/// Bus settings; the AMQP URL is a secret (it carries the password).
///
/// A RabbitMQ cluster is given as several addresses, one per node: either
/// `urls = ["amqp://…@node1:5672/%2f", "amqp://…@node2:5672/%2f", …]` or a
/// comma-separated list in `url` / the file `url_file` (handy in an
/// environment variable; a comma inside a password is written `%2C`). The
/// bus connects to the first node that answers and moves to another when
/// its node goes away.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusSettings {
    pub kind: BusKind,
    pub url: Option<SecretString>,
    pub url_file: Option<PathBuf>,
    /// The cluster's nodes (instead of `url`).
    pub urls: Vec<SecretString>,
    /// TLS for `amqps://` addresses: the CA file, an optional client certificate.
    pub tls: crate::tls::BusTlsSettings,
    /// Allow plain `amqp://` to a broker on another host (a private network
    /// the operator vouches for); otherwise such an address is refused.
    pub allow_plaintext: bool,
    /// Replicas of each quorum queue (`x-quorum-initial-group-size`). Unset:
    /// the broker's `quorum_cluster_size` (3: every node of a three-node
    /// cluster). Set it before the queues are first declared: RabbitMQ
    /// refuses to declare an existing queue again with other arguments.
    pub quorum_group_size: Option<u16>,
    /// Prefix for every exchange and queue name, so several installations can share a broker.
    pub prefix: String,
    /// Unacknowledged deliveries per consumer.
    pub prefetch: u16,
    /// Deliveries of one message before it is dead-lettered as poison.
    pub delivery_limit: u32,
    /// Most notices a unit (or the review) queue keeps before the oldest
    /// is dropped, so a queue nobody reads never blocks intake (the
    /// registry keeps every item); 0: no bound.
    pub unit_queue_max_length: u32,
    /// The same in bytes of notices; 0: no bound. RabbitMQ only (on the
    /// embedded bus the janitor keeps the newest `unit_queue_max_length`).
    pub unit_queue_max_bytes: u64,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            kind: BusKind::Embedded,
            url: None,
            url_file: None,
            urls: Vec::new(),
            tls: crate::tls::BusTlsSettings::default(),
            allow_plaintext: false,
            quorum_group_size: None,
            prefix: "pietura".into(),
            prefetch: 256,
            delivery_limit: 5,
            unit_queue_max_length: 50_000,
            unit_queue_max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Where attachment blobs live (default `<data_dir>/blobs`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BlobSettings {
    pub dir: Option<PathBuf>,
}

/// The routing rules folder (`units.toml`, `services.toml`, `routing/*.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesSettings {
    pub dir: PathBuf,
    /// Reload on file change (atomic swap, only when the new set is valid).
    pub watch: bool,
}

impl Default for RulesSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("rules"),
            watch: true,
        }
    }
}

/// The folder with one TOML file per configured channel instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsSettings {
    pub dir: PathBuf,
}

impl Default for ChannelsSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("channels"),
        }
    }
}

/// How registration numbers look. Placeholders: `{unit_index}`, `{year}`,
/// `{seq}` and `{seq:N}` (zero-padded to N digits).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationSettings {
    pub pattern: String,
    /// Series index for items that no rule routed (they wait for the records officer).
    pub unclassified_index: String,
}

impl Default for RegistrationSettings {
    fn default() -> Self {
        Self {
            pattern: "{unit_index}/{year}/{seq}".into(),
            unclassified_index: "0".into(),
        }
    }
}

/// The rules engine's consumer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// Batches registered concurrently by one daemon.
    pub concurrency: usize,
    /// Most items registered in one database transaction.
    pub batch_max: usize,
    /// Tries of one item failing while the registry registers others
    /// before it is parked as poison (doubling from 0.2 s: 6 tries take
    /// about 13 s, well inside the embedded bus's 60 s delivery lease).
    pub poison_attempts: u32,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            batch_max: 64,
            poison_attempts: 6,
        }
    }
}

/// Deadline upkeep: the "due soon" horizon and the daily digest to units.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadlineSettings {
    /// Working days ahead that count as "due soon".
    pub due_soon_working_days: u32,
    /// Each unit gets a daily e-mail of its overdue and due-soon items.
    pub digest_enabled: bool,
    /// Local time (Europe/Riga) on working days after which the digest goes out.
    pub digest_at: String,
    /// `smtp://host:port` (plain, loopback), `smtp://…?tls=required` or
    /// `smtps://user:password@host` (lettre's URL form).
    pub smtp_url: Option<SecretString>,
    /// The digest's sender address.
    pub digest_from: String,
}

impl Default for DeadlineSettings {
    fn default() -> Self {
        Self {
            due_soon_working_days: 2,
            digest_enabled: false,
            digest_at: "08:00".into(),
            smtp_url: None,
            digest_from: "Pietura <pietura@localhost>".into(),
        }
    }
}

impl Settings {
    /// Loads defaults, then `file` (if given), then `PIETURA__…` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Same as [`Settings::load`] with an explicit environment (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let source_name = match file {
            Some(f) => format!("file {} (+ PIETURA__* environment)", f.display()),
            None => "embedded defaults (+ PIETURA__* environment)".to_string(),
        };
        let mut builder = config::Config::builder();
        if let Some(f) = file {
            builder = builder.add_source(config::File::from(f).format(config::FileFormat::Toml));
        }
        let env_map: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("PIETURA__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("PIETURA")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env_map)),
        );
        let settings: Settings =
            builder
                .build()
                .and_then(|c| c.try_deserialize())
                .map_err(|source| ConfigError::Parse {
                    source_name: source_name.clone(),
                    source,
                })?;
        let issues = settings.validate();
        if issues.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError::Invalid {
                source_name,
                issues,
            })
        }
    }

    /// Every problem found, not only the first.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut issue = |key: &str, message: String| {
            issues.push(ConfigIssue {
                key: key.into(),
                message,
            })
        };
        if let Err(e) = crate::xmldsig::TrustList::load(&self.signatures.trust) {
            issue("signatures.trust", e.to_string());
        }
        match self.database_url() {
            Err(e) => issue("database.url", e),
            Ok(url) => {
                let scheme_ok = url.starts_with("postgres://")
                    || url.starts_with("postgresql://")
                    || url.starts_with("sqlite:");
                if !scheme_ok {
                    issue(
                    "database.url",
                    "must start with postgres:// or sqlite: (e.g. sqlite://pietura-data/pietura.db)"
                            .into(),
                    );
                }
                for message in crate::tls::database_url_issues(&url, self.database.allow_plaintext)
                {
                    issue("database.url", message);
                }
            }
        }
        match self.bus.kind {
            BusKind::Amqp => {
                for (key, message) in self.bus_url_issues() {
                    issue(&key, message);
                }
            }
            BusKind::Embedded => {}
        }
        if self.bus.quorum_group_size == Some(0) {
            issue("bus.quorum_group_size", "must be at least 1".into());
        }
        if self.bus.prefetch == 0 {
            issue("bus.prefetch", "must be at least 1".into());
        }
        if self.bus.delivery_limit == 0 {
            issue("bus.delivery_limit", "must be at least 1".into());
        }
        if self.bus.prefix.is_empty()
            || !self
                .bus
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            issue(
                "bus.prefix",
                "must be non-empty ASCII letters, digits, '-', '_' or '.'".into(),
            );
        }
        if let Err(e) = crate::registry::numbering::Pattern::parse(&self.registration.pattern) {
            issue("registration.pattern", e.to_string());
        }
        if self.registration.unclassified_index.trim().is_empty() {
            issue(
                "registration.unclassified_index",
                "must not be empty".into(),
            );
        }
        if self
            .http
            .api_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().trim().len() < 16)
        {
            issue(
                "http.api_token",
                "must be at least 16 characters (better: issue clients with `pietura api-client add`)"
                    .into(),
            );
        }
        if self.http.max_body_bytes < 1024 {
            issue("http.max_body_bytes", "must be at least 1024".into());
        }
        if self.desk.session_idle_minutes < 1 {
            issue("desk.session_idle_minutes", "must be at least 1".into());
        }
        if self.desk.login_attempts_per_minute == 0 {
            issue(
                "desk.login_attempts_per_minute",
                "must be at least 1".into(),
            );
        }
        if !(1..=300).contains(&self.desk.login_max_delay_seconds) {
            issue(
                "desk.login_max_delay_seconds",
                "must be between 1 and 300".into(),
            );
        }
        for (key, message) in self
            .desk
            .oidc
            .iter()
            .flat_map(|o| o.validate())
            .chain(self.desk.ldap.iter().flat_map(|l| l.validate()))
        {
            issue(&key, message);
        }
        if !(1..=10_000).contains(&self.desk.dry_run_items) {
            issue("desk.dry_run_items", "must be between 1 and 10000".into());
        }
        if !(self.http.public_url.starts_with("http://")
            || self.http.public_url.starts_with("https://"))
        {
            issue(
                "http.public_url",
                "must start with http:// or https://".into(),
            );
        }
        if self.engine.concurrency == 0 {
            issue("engine.concurrency", "must be at least 1".into());
        }
        if self.engine.batch_max == 0 {
            issue("engine.batch_max", "must be at least 1".into());
        }
        if !(1..=10_080).contains(&self.janitor.every_minutes) {
            issue(
                "janitor.every_minutes",
                "must be between 1 and 10080 (a week)".into(),
            );
        }
        if self.janitor.blob_grace_hours < 1 {
            issue(
                "janitor.blob_grace_hours",
                "must be at least 1, so an upload in flight is never collected".into(),
            );
        }
        for (key, message) in self.malware.issues() {
            issue(&key, message);
        }
        for (key, message) in self.print.issues() {
            issue(&key, message);
        }
        for (key, message) in self.answers.issues() {
            issue(&key, message);
        }
        for (key, message) in self.archive.issues() {
            issue(&key, message);
        }
        for (key, message) in self.duplicates.issues() {
            issue(&key, message);
        }
        if !(1..=20).contains(&self.engine.poison_attempts) {
            issue("engine.poison_attempts", "must be between 1 and 20".into());
        }
        if chrono::NaiveTime::parse_from_str(&self.deadlines.digest_at, "%H:%M").is_err() {
            issue(
                "deadlines.digest_at",
                "must be a local time like \"08:00\"".into(),
            );
        }
        if self.deadlines.digest_enabled {
            match self.deadlines.smtp_url.as_ref().map(|u| u.expose_secret().to_string()) {
                Some(u) if u.starts_with("smtp://") || u.starts_with("smtps://") => {}
                _ => issue(
                    "deadlines.smtp_url",
                    "deadlines.digest_enabled needs smtp_url = \"smtp://host:port\" or \"smtps://user:password@host\"".into(),
                ),
            }
            if self
                .deadlines
                .digest_from
                .parse::<lettre::message::Mailbox>()
                .is_err()
            {
                issue(
                    "deadlines.digest_from",
                    "must be an address like \"Pietura <pietura@novads.lv>\"".into(),
                );
            }
        }
        if let Some(dms) = &self.dms {
            for (key, message) in dms.validate() {
                issue(&key, message);
            }
        }
        issues
    }

    /// The database URL from `database.url`, `database.url_file` or the default SQLite file.
    pub fn database_url(&self) -> Result<String, String> {
        match resolve_secret(&self.database.url, &self.database.url_file)? {
            Some(url) => Ok(url),
            None => Ok(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("pietura.db").display()
            )),
        }
    }

    /// The first AMQP address, if one is configured (benchmarks and tools
    /// that need one node).
    pub fn bus_url(&self) -> Result<Option<String>, String> {
        Ok(self.bus_urls()?.into_iter().next())
    }

    /// Every configured AMQP address, in the order given: `bus.urls`, or the
    /// comma-separated list in `bus.url` / `bus.url_file`.
    pub fn bus_urls(&self) -> Result<Vec<String>, String> {
        let listed: Vec<String> = self
            .bus
            .urls
            .iter()
            .map(|u| u.expose_secret().trim().to_string())
            .collect();
        let single = resolve_secret(&self.bus.url, &self.bus.url_file)?;
        if !listed.is_empty() && single.is_some() {
            return Err("give bus.urls or bus.url / bus.url_file, not both".into());
        }
        if !listed.is_empty() {
            return Ok(listed);
        }
        Ok(single
            .map(|s| {
                s.split(',')
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Problems with the AMQP addresses, each with its key (`bus.urls[1]`).
    fn bus_url_issues(&self) -> Vec<(String, String)> {
        let from_list = !self.bus.urls.is_empty();
        let key = if from_list {
            "bus.urls"
        } else if self.bus.url_file.is_some() && self.bus.url.is_none() {
            "bus.url_file"
        } else {
            "bus.url"
        };
        let urls = match self.bus_urls() {
            Ok(urls) => urls,
            Err(e) => return vec![(key.to_string(), e)],
        };
        if urls.is_empty() {
            return vec![(
                key.to_string(),
                "bus.kind = \"amqp\" needs bus.url, bus.urls or bus.url_file (e.g. amqp://guest:guest@127.0.0.1:5672/%2f)".into(),
            )];
        }
        let several = urls.len() > 1;
        let at = |i: usize| {
            if from_list {
                format!("bus.urls[{i}]")
            } else if several {
                format!("{key} (address {} of {})", i + 1, urls.len())
            } else {
                key.to_string()
            }
        };
        let mut issues: Vec<(String, String)> = urls
            .iter()
            .enumerate()
            .filter(|(_, u)| !(u.starts_with("amqp://") || u.starts_with("amqps://")))
            .map(|(i, _)| (at(i), "must start with amqp:// or amqps://".into()))
            .collect();
        if !self.bus.allow_plaintext {
            for (i, host) in crate::tls::plaintext_bus_hosts(&urls) {
                issues.push((
                    at(i),
                    format!(
                        "amqp:// would carry items in plaintext to {host}: use amqps:// with \
                         bus.tls.ca_file, or set bus.allow_plaintext = true for a network you trust"
                    ),
                ));
            }
        }
        issues.extend(crate::tls::bus_tls_issues(&self.bus.tls, &urls));
        issues
    }

    /// What the operator should know but need not fix (logged at start):
    /// TLS to the database that does not check the server's name.
    pub fn warnings(&self) -> Vec<String> {
        match self.database_url() {
            Ok(url) => crate::tls::database_url_warnings(&url),
            Err(_) => Vec::new(),
        }
    }

    /// The TLS settings for `amqps://` addresses, read from `bus.tls`.
    pub fn amqp_tls(&self) -> Result<crate::tls::AmqpTls, crate::tls::TlsFileError> {
        crate::tls::AmqpTls::load(&self.bus.tls)
    }

    /// Where blobs are stored.
    pub fn blob_dir(&self) -> PathBuf {
        self.blobs
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }
}

/// A value given inline or through a file; both at once is a mistake.
pub(crate) fn resolve_secret(
    inline: &Option<SecretString>,
    file: &Option<PathBuf>,
) -> Result<Option<String>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err("give the value or the _file variant, not both".into()),
        (Some(v), None) => Ok(Some(v.expose_secret().to_string())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| format!("cannot read secret file {}: {e}", path.display())),
        (None, None) => Ok(None),
    }
}

/// Why a secret given by file or environment variable could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretSourceError {
    #[error("give {key}_file or {key}_env, not both")]
    Both { key: &'static str },
    #[error("{key}_file {}: cannot read it: {source}", .path.display())]
    File {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the variable {var} ({key}_env) is not set")]
    Env { key: &'static str, var: String },
}

/// A secret from the file `<key>_file` names or the environment variable
/// `<key>_env` names (PEM keys, certificates); None when neither is given.
pub fn secret_from_file_or_env(
    key: &'static str,
    file: &Option<PathBuf>,
    env: &Option<String>,
) -> Result<Option<SecretString>, SecretSourceError> {
    match (file, env) {
        (Some(_), Some(_)) => Err(SecretSourceError::Both { key }),
        (Some(path), None) => std::fs::read_to_string(path)
            .map(|s| Some(SecretString::from(s)))
            .map_err(|source| SecretSourceError::File {
                key,
                path: path.clone(),
                source,
            }),
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(SecretString::from(v))),
            _ => Err(SecretSourceError::Env {
                key,
                var: var.clone(),
            }),
        },
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_defaults_need_no_file() {
        let s = Settings::load_with_env(None, env(&[])).expect("defaults load");
        assert_eq!(s.bus.kind, BusKind::Embedded);
        assert!(s.database_url().unwrap().starts_with("sqlite://"));
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("PIETURA__BUS__KIND", "amqp"),
                ("PIETURA__BUS__URL", "amqp://u:secret@127.0.0.1:5672/%2f"),
                ("PIETURA__BUS__PREFETCH", "7"),
            ]),
        )
        .expect("env config loads");
        assert_eq!(s.bus.kind, BusKind::Amqp);
        assert_eq!(s.bus.prefetch, 7);
        let debug = format!("{s:?}");
        assert!(!debug.contains("secret"), "secrets leak in Debug: {debug}");
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pietura.toml");
        std::fs::write(
            &file,
            "[bus]\nkind = \"amqp\"\nprefetch = 0\n[registration]\npattern = \"{nope}\"\n",
        )
        .unwrap();
        let err = Settings::load_with_env(Some(&file), env(&[])).unwrap_err();
        let text = err.to_string();
        for key in ["bus.url", "bus.prefetch", "registration.pattern"] {
            assert!(text.contains(key), "{key} missing from: {text}");
        }
        assert!(text.contains("pietura.toml"), "file not named: {text}");
    }

    #[test]
    fn the_signature_trust_list_is_checked_at_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pietura.toml");
        std::fs::write(&file, "[signatures]\ntrust = [\"/nonexistent/ca.pem\"]\n").unwrap();
        let text = Settings::load_with_env(Some(&file), env(&[]))
            .unwrap_err()
            .to_string();
        for part in ["pietura.toml", "signatures.trust", "/nonexistent/ca.pem"] {
            assert!(text.contains(part), "{part} missing from: {text}");
        }
        std::fs::write(&file, "[signatures]\ntrusted = []\n").unwrap();
        let text = Settings::load_with_env(Some(&file), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(text.contains("trusted"), "unknown key not named: {text}");
    }

    #[test]
    fn an_external_dms_is_set_by_file_or_environment_and_checked_with_its_keys() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("PIETURA__DMS__CONNECTOR__TYPE", "mayan"),
                ("PIETURA__DMS__CONNECTOR__URL", "http://mayan:8000"),
                ("PIETURA__DMS__CONNECTOR__TOKEN", "0123secret"),
                ("PIETURA__DMS__RETRY_MAX_SECONDS", "30"),
            ]),
        )
        .expect("env config loads");
        let dms = s.dms.expect("dms set");
        assert_eq!(dms.connector.kind(), "mayan");
        assert_eq!(dms.retry_max_seconds, 30);
        assert!(!format!("{dms:?}").contains("0123secret"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pietura.toml");
        std::fs::write(
            &file,
            "[dms]\nconcurrency = 0\n[dms.connector]\ntype = \"cmis\"\nurl = \"ftp://x\"\nfolder = \"Pietura\"\n\
             [dms.connector.properties]\nnumber = \"x:y\"\n",
        )
        .unwrap();
        let text = Settings::load_with_env(Some(&file), env(&[]))
            .unwrap_err()
            .to_string();
        for key in [
            "dms.concurrency",
            "dms.connector.url",
            "dms.connector.folder",
            "dms.connector.username",
            "dms.connector.properties.number",
        ] {
            assert!(text.contains(key), "{key} missing from: {text}");
        }
    }

    #[test]
    fn a_cluster_is_given_as_a_list_or_comma_separated_and_each_address_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pietura.toml");
        std::fs::write(
            &file,
            "[bus]\nkind = \"amqp\"\nallow_plaintext = true\nurls = [\"amqp://a:5672/%2f\", \"http://b:5672\", \"amqp://c:5672/%2f\"]\n",
        )
        .unwrap();
        let text = Settings::load_with_env(Some(&file), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("bus.urls[1]: must start with amqp://"),
            "{text}"
        );
        assert!(
            !text.contains("bus.urls[0]") && !text.contains("bus.urls[2]"),
            "{text}"
        );

        std::fs::write(
            &file,
            "[bus]\nkind = \"amqp\"\nallow_plaintext = true\nurls = [\"amqp://a:5672/%2f\", \"amqp://b:5672/%2f\"]\n",
        )
        .unwrap();
        let s = Settings::load_with_env(Some(&file), env(&[])).expect("list loads");
        assert_eq!(
            s.bus_urls().unwrap(),
            ["amqp://a:5672/%2f", "amqp://b:5672/%2f"]
        );
        // The same from the environment, comma-separated in bus.url.
        let s = Settings::load_with_env(
            None,
            env(&[
                ("PIETURA__BUS__KIND", "amqp"),
                ("PIETURA__BUS__ALLOW_PLAINTEXT", "true"),
                (
                    "PIETURA__BUS__URL",
                    "amqp://a:5672/%2f, amqp://b:5672/%2f,amqp://c/%2f",
                ),
            ]),
        )
        .expect("comma list loads");
        assert_eq!(s.bus_urls().unwrap().len(), 3);
        assert_eq!(s.bus_url().unwrap().as_deref(), Some("amqp://a:5672/%2f"));
        // Both forms at once is a mistake, named at its key.
        let text = Settings::load_with_env(
            Some(&file),
            env(&[("PIETURA__BUS__URL", "amqp://x:5672/%2f")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            text.contains("bus.urls: give bus.urls or bus.url"),
            "{text}"
        );
        // One address: as before.
        let s = Settings::load_with_env(
            None,
            env(&[
                ("PIETURA__BUS__KIND", "amqp"),
                ("PIETURA__BUS__URL", "amqp://u:p@127.0.0.1:5672/%2f"),
            ]),
        )
        .expect("one address loads");
        assert_eq!(s.bus_urls().unwrap(), ["amqp://u:p@127.0.0.1:5672/%2f"]);
    }

    #[test]
    fn amqps_without_a_ca_file_or_with_a_missing_one_is_refused_at_its_key() {
        // Before TLS was built in, amqps:// passed this check and then
        // could not connect.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pietura.toml");
        std::fs::write(
            &file,
            "[bus]\nkind = \"amqp\"\nurls = [\"amqps://u:p@mq1.example.lv:5671/%2f\"]\n",
        )
        .unwrap();
        let text = Settings::load_with_env(Some(&file), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(text.contains("pietura.toml"), "{text}");
        assert!(
            text.contains("bus.tls.ca_file: an amqps:// address needs"),
            "{text}"
        );
        std::fs::write(
            &file,
            "[bus]\nkind = \"amqp\"\nurls = [\"amqps://u:p@mq1.example.lv:5671/%2f\"]\n\
             [bus.tls]\nca_file = \"/nonexistent/pietura-ca.pem\"\n",
        )
        .unwrap();
        let text = Settings::load_with_env(Some(&file), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("bus.tls.ca_file: cannot read /nonexistent/pietura-ca.pem"),
            "{text}"
        );
        // A readable CA file: accepted; an unknown key under bus.tls: refused.
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, TEST_CERT).unwrap();
        std::fs::write(
            &file,
            format!(
                "[bus]\nkind = \"amqp\"\nurls = [\"amqps://u:p@mq1.example.lv:5671/%2f\"]\n\
                 [bus.tls]\nca_file = \"{}\"\n",
                ca.display()
            ),
        )
        .unwrap();
        let s = Settings::load_with_env(Some(&file), env(&[])).expect("amqps with a CA loads");
        assert!(format!("{:?}", s.amqp_tls().unwrap()).contains("ca: true"));
        std::fs::write(&file, "[bus.tls]\ncafile = \"x\"\n").unwrap();
        let text = Settings::load_with_env(Some(&file), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(text.contains("cafile"), "{text}");
    }

    #[test]
    fn plaintext_to_a_database_or_broker_on_another_host_is_refused_unless_allowed() {
        let text = Settings::load_with_env(
            None,
            env(&[
                (
                    "PIETURA__DATABASE__URL",
                    "postgres://u:pw@db.example.lv/pietura",
                ),
                ("PIETURA__BUS__KIND", "amqp"),
                ("PIETURA__BUS__URL", "amqp://u:pw@mq.example.lv:5672/%2f"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            text.contains("database.url: sslmode=prefer may send the registry's data in plaintext to db.example.lv"),
            "{text}"
        );
        assert!(
            text.contains("bus.url: amqp:// would carry items in plaintext to mq.example.lv"),
            "{text}"
        );
        let s = Settings::load_with_env(
            None,
            env(&[
                (
                    "PIETURA__DATABASE__URL",
                    "postgres://u:pw@db.example.lv/pietura",
                ),
                ("PIETURA__DATABASE__ALLOW_PLAINTEXT", "true"),
                ("PIETURA__BUS__KIND", "amqp"),
                ("PIETURA__BUS__URL", "amqp://u:pw@mq.example.lv:5672/%2f"),
                ("PIETURA__BUS__ALLOW_PLAINTEXT", "true"),
            ]),
        )
        .expect("allowed plaintext loads");
        assert!(s.warnings().is_empty());
        let s = Settings::load_with_env(
            None,
            env(&[(
                "PIETURA__DATABASE__URL",
                "postgres://u:pw@db.example.lv/pietura?sslmode=require",
            )]),
        )
        .expect("sslmode=require loads");
        assert!(s.warnings()[0].contains("does not check the server's name"));
    }

    /// A self-signed certificate (only parsed, never trusted).
    const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBkTCCATegAwIBAgIUa6609bxAJRPX9v3QwWptpc4mrhEwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTcGlldHVyYS1jb25maWctdGVzdDAeFw0yNjExMzAyMjA4MDla
Fw0zNjExMjcyMjA4MDlaMB4xHDAaBgNVBAMME3BpZXR1cmEtY29uZmlnLXRlc3Qw
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATMPDjeZT56LjyBJifGmkE6nm0Qj/j+
VTN4Ci5DqdKKKs2tehZ7TG5o4mOQIlPs8IaztywGEZPOvdjb+dXNzKUNo1MwUTAd
BgNVHQ4EFgQUcSXRS4sDBiVt0zG2XXZwb6HkwVkwHwYDVR0jBBgwFoAUcSXRS4sD
BiVt0zG2XXZwb6HkwVkwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBF
AiAX+W7DIJn+KLjsOZ3PmenSbNrwcICcSFDBkPzziTmGhwIhANOuSzSl4k02OYm1
53YHe2c/Qfc193zEvT5v0lCBkBrd
-----END CERTIFICATE-----
";

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pietura.toml");
        std::fs::write(&file, "[bus]\nknd = \"amqp\"\n").unwrap();
        let err = Settings::load_with_env(Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().contains("knd"), "{err}");
    }

    #[test]
    fn trusted_proxies_are_networks_and_a_bad_one_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pietura.toml");
        std::fs::write(
            &file,
            "[http]\ntrusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\nclient_address_header = \"forwarded\"\n",
        )
        .unwrap();
        let s = Settings::load_with_env(Some(&file), env(&[])).expect("loads");
        assert_eq!(s.http.trusted_proxies.len(), 2);
        assert_eq!(
            s.http.client_address_header,
            crate::http::client::ForwardedHeader::Forwarded
        );
        assert!(!s.http.dev_trust_loopback, "off unless asked for");
        std::fs::write(&file, "[http]\ntrusted_proxies = [\"10.0.0.0/33\"]\n").unwrap();
        let err = Settings::load_with_env(Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().contains("trusted_proxies"), "{err}");
        std::fs::write(&file, "[http]\napi_token = \"short\"\n").unwrap();
        let err = Settings::load_with_env(Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().contains("http.api_token"), "{err}");
    }
}

//! The IMAP side of the e-mail channel, kept apart from what is done with
//! the mail: connect (plain for loopback tests, STARTTLS or TLS), log in
//! (password or OAuth2 XOAUTH2 bearer token for Microsoft 365 and Google),
//! find the UIDs not handed on yet, fetch one mail at a time (memory stays
//! bounded), move or flag it once handed on, and wait for new mail with
//! IDLE. Every network step has a timeout, so a dead connection is noticed.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::{Authenticator, Client, Session};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use super::{AfterHandOff, ImapConfig, Security};

/// Longest wait for any one IMAP step before the connection is given up.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// The keyword set on handed-on mail in flag mode.
pub const HANDED_ON_KEYWORD: &str = "$Pietura";

/// Any byte stream an IMAP session can run over (TCP or TLS).
pub trait ImapStream: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> ImapStream for T {}

type Stream = Box<dyn ImapStream>;

/// Why an IMAP step failed; every variant means: reconnect later.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("TLS with {host}: {message}")]
    Tls { host: String, message: String },
    #[error("login as {user} refused: {message} (check the channel's credentials)")]
    Login { user: String, message: String },
    #[error("{step}: {source}")]
    Protocol {
        step: String,
        source: async_imap::error::Error,
    },
    #[error("{step}: no answer within {}s", STEP_TIMEOUT.as_secs())]
    Timeout { step: String },
    #[error("{0}")]
    Other(String),
}

async fn step<T, F>(name: &str, fut: F) -> Result<T, ImapError>
where
    F: std::future::Future<Output = Result<T, async_imap::error::Error>>,
{
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(ImapError::Protocol {
            step: name.to_string(),
            source,
        }),
        Err(_) => Err(ImapError::Timeout {
            step: name.to_string(),
        }),
    }
}

/// How to prove who we are.
#[derive(Debug, Clone)]
pub enum Credentials {
    Password(String),
    /// An OAuth2 access token, sent with SASL XOAUTH2.
    Bearer(String),
}

/// SASL XOAUTH2 as Microsoft and Google document it.
struct XOAuth2<'a> {
    user: &'a str,
    token: &'a str,
}

impl Authenticator for XOAuth2<'_> {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        xoauth2_response(self.user, self.token)
    }
}

/// The XOAUTH2 initial response (before base64).
pub fn xoauth2_response(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

fn tls_connector(cfg: &ImapConfig) -> Result<TlsConnector, ImapError> {
    let tls_err = |message: String| ImapError::Tls {
        host: cfg.host.clone(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(file) = &cfg.ca_file {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(file)
            .map_err(|e| tls_err(format!("ca_file {}: {e}", file.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| tls_err(format!("ca_file {}: {e}", file.display())))?;
            roots
                .add(cert)
                .map_err(|e| tls_err(format!("ca_file {}: {e}", file.display())))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn wrap_tls(cfg: &ImapConfig, tcp: TcpStream) -> Result<Stream, ImapError> {
    let name =
        rustls::pki_types::ServerName::try_from(cfg.host.clone()).map_err(|e| ImapError::Tls {
            host: cfg.host.clone(),
            message: e.to_string(),
        })?;
    let tls = tokio::time::timeout(STEP_TIMEOUT, tls_connector(cfg)?.connect(name, tcp))
        .await
        .map_err(|_| ImapError::Timeout {
            step: "TLS handshake".into(),
        })?
        .map_err(|e| ImapError::Tls {
            host: cfg.host.clone(),
            message: e.to_string(),
        })?;
    Ok(Box::new(tls))
}

async fn greeting<T: ImapStream>(client: &mut Client<T>) -> Result<(), ImapError> {
    match tokio::time::timeout(STEP_TIMEOUT, client.read_response()).await {
        Ok(Ok(Some(_))) => Ok(()),
        Ok(Ok(None)) => Err(ImapError::Other(
            "the server closed the connection before its greeting".into(),
        )),
        Ok(Err(e)) => Err(ImapError::Other(format!("greeting: {e}"))),
        Err(_) => Err(ImapError::Timeout {
            step: "greeting".into(),
        }),
    }
}

/// What the server offers that changes how we work.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerFeatures {
    pub idle: bool,
    pub r#move: bool,
    pub uidplus: bool,
}

/// A logged-in session on one mailbox.
pub struct Mailbox {
    session: Session<Stream>,
    pub features: ServerFeatures,
}

/// One mail waiting: its UID, size and the server's receipt time.
#[derive(Debug, Clone, Copy)]
pub struct Waiting {
    pub uid: u32,
    pub size: u64,
    pub received_at: Option<DateTime<Utc>>,
}

/// `1,2,5` for a list of UIDs.
fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Connects and logs in.
pub async fn connect(cfg: &ImapConfig, credentials: &Credentials) -> Result<Mailbox, ImapError> {
    let address = format!("{}:{}", cfg.host, cfg.port);
    let tcp = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(&address))
        .await
        .map_err(|_| ImapError::Timeout {
            step: format!("connect to {address}"),
        })?
        .map_err(|source| ImapError::Connect {
            address: address.clone(),
            source,
        })?;
    let client = match cfg.security {
        Security::Tls => {
            let mut c = Client::new(wrap_tls(cfg, tcp).await?);
            greeting(&mut c).await?;
            c
        }
        Security::Plain => {
            let mut c = Client::new(Box::new(tcp) as Stream);
            greeting(&mut c).await?;
            c
        }
        Security::Starttls => {
            let mut c = Client::new(tcp);
            greeting(&mut c).await?;
            step("STARTTLS", c.run_command_and_check_ok("STARTTLS", None)).await?;
            Client::new(wrap_tls(cfg, c.into_inner()).await?)
        }
    };
    let login = match credentials {
        Credentials::Password(p) => {
            tokio::time::timeout(STEP_TIMEOUT, client.login(&cfg.username, p)).await
        }
        Credentials::Bearer(token) => {
            let auth = XOAuth2 {
                user: &cfg.username,
                token,
            };
            tokio::time::timeout(STEP_TIMEOUT, client.authenticate("XOAUTH2", auth)).await
        }
    };
    let mut session = match login {
        Ok(Ok(s)) => s,
        Ok(Err((e, _))) => {
            return Err(ImapError::Login {
                user: cfg.username.clone(),
                message: e.to_string(),
            });
        }
        Err(_) => {
            return Err(ImapError::Timeout {
                step: "login".into(),
            });
        }
    };
    let caps = step("CAPABILITY", session.capabilities()).await?;
    let features = ServerFeatures {
        idle: caps.has_str("IDLE"),
        r#move: caps.has_str("MOVE"),
        uidplus: caps.has_str("UIDPLUS"),
    };
    Ok(Mailbox { session, features })
}

impl Mailbox {
    /// Selects the mailbox; returns its UIDVALIDITY.
    pub async fn select(&mut self, mailbox: &str) -> Result<u32, ImapError> {
        let mb = step(&format!("SELECT {mailbox}"), self.session.select(mailbox)).await?;
        mb.uid_validity.ok_or_else(|| {
            ImapError::Other(format!(
                "the server gave no UIDVALIDITY for {mailbox}; it cannot be read safely"
            ))
        })
    }

    /// Creates the folder handed-on mail goes to, if missing.
    pub async fn ensure_folder(&mut self, folder: &str) -> Result<(), ImapError> {
        match tokio::time::timeout(STEP_TIMEOUT, self.session.create(folder)).await {
            Ok(Ok(())) => Ok(()),
            // NO: it exists already (servers word this differently).
            Ok(Err(async_imap::error::Error::No(_))) => Ok(()),
            Ok(Err(source)) => Err(ImapError::Protocol {
                step: format!("CREATE {folder}"),
                source,
            }),
            Err(_) => Err(ImapError::Timeout {
                step: format!("CREATE {folder}"),
            }),
        }
    }

    /// Mail above `after` not yet handed on, oldest first, with size and
    /// receipt time. Only the new range is asked for: no full scans.
    pub async fn waiting(
        &mut self,
        after: u32,
        mode: &AfterHandOff,
    ) -> Result<Vec<Waiting>, ImapError> {
        let mut query = format!("UID {}:*", after.saturating_add(1));
        if matches!(mode, AfterHandOff::Flag) {
            query.push_str(&format!(" NOT KEYWORD {HANDED_ON_KEYWORD}"));
        }
        let found = step("UID SEARCH", self.session.uid_search(&query)).await?;
        // `n:*` always matches the highest UID, even below n.
        let mut uids: Vec<u32> = found.into_iter().filter(|u| *u > after).collect();
        uids.sort_unstable();
        let mut waiting = Vec::with_capacity(uids.len());
        for chunk in uids.chunks(200) {
            let set = uid_set(chunk);
            let fetches: Vec<_> = step("UID FETCH sizes", async {
                self.session
                    .uid_fetch(&set, "(UID RFC822.SIZE INTERNALDATE)")
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
            for f in fetches {
                if let Some(uid) = f.uid {
                    waiting.push(Waiting {
                        uid,
                        size: u64::from(f.size.unwrap_or(0)),
                        received_at: f.internal_date().map(|d| d.with_timezone(&Utc)),
                    });
                }
            }
        }
        waiting.sort_by_key(|w| w.uid);
        Ok(waiting)
    }

    /// The whole mail (`headers_only`: just its header), without setting \Seen.
    pub async fn fetch(&mut self, uid: u32, headers_only: bool) -> Result<Vec<u8>, ImapError> {
        let what = if headers_only {
            "(UID BODY.PEEK[HEADER])"
        } else {
            "(UID BODY.PEEK[])"
        };
        let fetches: Vec<_> = step(&format!("UID FETCH {uid}"), async {
            self.session
                .uid_fetch(uid.to_string(), what)
                .await?
                .try_collect()
                .await
        })
        .await?;
        let f = fetches
            .iter()
            .find(|f| f.uid == Some(uid))
            .ok_or_else(|| ImapError::Other(format!("UID {uid} vanished before it was read")))?;
        let bytes = if headers_only { f.header() } else { f.body() };
        Ok(bytes.unwrap_or_default().to_vec())
    }

    /// Takes handed-on mail out of the way: moved to `folder` (UID MOVE, or
    /// COPY + \Deleted + UID EXPUNGE), or flagged.
    pub async fn hand_off_done(
        &mut self,
        uids: &[u32],
        mode: &AfterHandOff,
    ) -> Result<(), ImapError> {
        let set = uid_set(uids);
        match mode {
            AfterHandOff::Flag => {
                let flags = format!("+FLAGS.SILENT (\\Seen {HANDED_ON_KEYWORD})");
                step("UID STORE", async {
                    self.session
                        .uid_store(&set, &flags)
                        .await?
                        .try_collect::<Vec<_>>()
                        .await
                })
                .await?;
            }
            AfterHandOff::Move { folder } if self.features.r#move => {
                step("UID MOVE", self.session.uid_mv(&set, folder)).await?;
            }
            AfterHandOff::Move { folder } => {
                step("UID COPY", self.session.uid_copy(&set, folder)).await?;
                step("UID STORE \\Deleted", async {
                    self.session
                        .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                        .await?
                        .try_collect::<Vec<_>>()
                        .await
                })
                .await?;
                if self.features.uidplus {
                    step("UID EXPUNGE", async {
                        self.session
                            .uid_expunge(&set)
                            .await?
                            .try_collect::<Vec<_>>()
                            .await
                    })
                    .await?;
                } else {
                    step("EXPUNGE", async {
                        self.session.expunge().await?.try_collect::<Vec<_>>().await
                    })
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Waits for new mail: IDLE up to `wait` where the server has it, else
    /// just `wait`. Returns early on shutdown. The session comes back for
    /// the next round.
    pub async fn wait_for_mail(
        self,
        wait: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Self, ImapError> {
        let features = self.features;
        if !features.idle {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            return Ok(self);
        }
        let mut handle = self.session.idle();
        step("IDLE", handle.init()).await?;
        let outcome = {
            let (idle, _stop) = handle.wait_with_timeout(wait);
            tokio::select! {
                r = idle => Some(r),
                _ = shutdown.cancelled() => None,
            }
        };
        if let Some(Err(source)) = outcome {
            return Err(ImapError::Protocol {
                step: "IDLE".into(),
                source,
            });
        }
        if let Some(Ok(IdleResponse::NewData(_))) = outcome {
            tracing::debug!("IDLE: the mailbox changed");
        }
        let session = step("DONE", handle.done()).await?;
        Ok(Self { session, features })
    }

    /// Adds a mail to a folder (the benchmark fills its mailbox this way).
    pub async fn append(&mut self, folder: &str, raw: &[u8]) -> Result<(), ImapError> {
        step(
            &format!("APPEND {folder}"),
            self.session.append(folder, None, None, raw),
        )
        .await
    }

    /// Removes a folder and its mail (the benchmark's, afterwards).
    pub async fn delete(&mut self, folder: &str) -> Result<(), ImapError> {
        step(&format!("DELETE {folder}"), self.session.delete(folder)).await
    }

    /// Logs out politely (errors do not matter any more).
    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.session.logout()).await;
    }
}

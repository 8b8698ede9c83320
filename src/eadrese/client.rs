//! The DIV UnifiedService operations Pietura uses, over mutual TLS with
//! the institution's certificate, each request signed (WS-Security; XAdES
//! on what is sent). Answers are read into owned values; inbound files are
//! fetched (in sections when the service says so) and decrypted here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use sha2::Digest;

use secrecy::{ExposeSecret, SecretString};

use super::credentials::Credentials;
use super::crypto::{self, DecryptError};
use super::dsig::{SignError, esc};
use super::oauth::{OauthClient, TokenError, TokenSource};
use super::soap::{self, Answer, NS_DIV, Operation};
use super::{wssec, xades};

/// Where and as whom to call the service.
#[derive(Debug, Clone)]
pub struct DivEndpoint {
    /// The UnifiedService URL.
    pub url: String,
    /// Our own e-address (`_DEFAULT@<registration number>`).
    pub address: String,
    /// Trust only this CA for the service (else the public roots).
    pub ca_file: Option<PathBuf>,
    /// One call is given up after this.
    pub timeout: Duration,
}

/// Why a call did not succeed; [`DivError::is_transient`] tells whether
/// trying again later may help.
#[derive(Debug, thiserror::Error)]
pub enum DivError {
    #[error("DIV could not be reached: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("DIV answered {operation} with HTTP {status} and no SOAP fault")]
    Status {
        operation: &'static str,
        status: u16,
    },
    #[error("DIV refused {operation}: {reason}")]
    Fault {
        operation: &'static str,
        reason: String,
    },
    #[error("DIV's answer to {operation} is not as described: {problem}")]
    Malformed {
        operation: &'static str,
        problem: String,
    },
    #[error("signing the {operation} request: {source}")]
    Sign {
        operation: &'static str,
        #[source]
        source: SignError,
    },
    #[error("the TLS client cannot be set up: {0}")]
    Setup(String),
    /// No OAuth2 token (the endpoint is named in the message).
    #[error("no OAuth2 token for {operation}: {source}")]
    Token {
        operation: &'static str,
        #[source]
        source: TokenError,
    },
    #[error("DIV refused {operation} with HTTP 401: {hint}")]
    Unauthorized {
        operation: &'static str,
        hint: &'static str,
    },
}

impl DivError {
    /// Down, timed out or busy (5xx without a fault): worth another try.
    pub fn is_transient(&self) -> bool {
        match self {
            DivError::Transport(_) => true,
            DivError::Status { status, .. } => *status >= 500 || *status == 429,
            DivError::Token { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

/// One file of an inbound message, decrypted.
#[derive(Debug, Clone)]
pub struct InboundFile {
    pub name: String,
    pub mime_type: String,
    pub content: Vec<u8>,
}

/// An inbound message as Pietura needs it.
#[derive(Debug)]
pub struct InboundMessage {
    /// The service's message id (the idempotency key).
    pub message_id: String,
    pub sender_address: String,
    pub sender_ref: Option<String>,
    pub title: String,
    pub description: String,
    /// The document's date as the sender gave it.
    pub document_date: Option<String>,
    pub recipients: Vec<String>,
    /// The service says it authenticated the sender.
    pub sender_verified: bool,
    pub files: Vec<InboundFile>,
    /// Files that could not be opened (wrong key, corrupt, over the limit),
    /// by name: the message is still taken, for the records officer.
    pub unreadable: Vec<(String, DecryptError)>,
}

/// A document to send: its metadata and its files (none for a bare
/// acknowledgement).
#[derive(Debug, Clone)]
pub struct Outbound {
    pub recipient: String,
    pub title: String,
    pub description: String,
    /// Our reference (the registration number).
    pub sender_ref: String,
    /// Sent as `PayloadReference/File` entries (numbered as appendices in
    /// this order), their bytes in `AttachmentsInput`, unencrypted.
    pub files: Vec<OutboundFile>,
}

/// One file of a sent document.
#[derive(Clone)]
pub struct OutboundFile {
    pub name: String,
    pub mime_type: String,
    pub content: Vec<u8>,
}

impl std::fmt::Debug for OutboundFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundFile")
            .field("mime_type", &self.mime_type)
            .field("size", &self.content.len())
            .finish_non_exhaustive()
    }
}

/// The service's delivery confirmation of a message we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfirmation {
    pub status: String,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Addressee directory records since a token, and the next token.
#[derive(Debug, Clone)]
pub struct AddresseeChanges {
    /// (e-address, whether it is active).
    pub records: Vec<(String, bool)>,
    pub token: String,
}

/// A client of the service for one institution.
#[derive(Clone)]
pub struct DivClient {
    http: reqwest::Client,
    endpoint: Arc<DivEndpoint>,
    creds: Arc<Credentials>,
    /// Log every request and answer (at info; personal data redacted by
    /// the daemon's log writer): `pietura eadrese check`.
    log_exchange: bool,
    /// The OAuth2 bearer token, where the environment requires one.
    oauth: Option<Arc<TokenSource>>,
}

impl DivClient {
    pub fn new(endpoint: DivEndpoint, creds: Credentials) -> Result<Self, DivError> {
        let identity = reqwest::Identity::from_pem(&creds.identity_pem)
            .map_err(|e| DivError::Setup(format!("client certificate and key: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .identity(identity)
            .timeout(endpoint.timeout)
            .use_rustls_tls();
        if let Some(ca) = &endpoint.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| DivError::Setup(format!("{}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| DivError::Setup(format!("{}: {e}", ca.display())))?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| DivError::Setup(e.to_string()))?;
        Ok(Self {
            http,
            endpoint: Arc::new(endpoint),
            creds: Arc::new(creds),
            log_exchange: false,
            oauth: None,
        })
    }

    /// Sends an OAuth2 bearer token (client credentials, fetched over the
    /// same TLS client, cached until shortly before it expires) with every call.
    pub fn with_oauth(mut self, client: OauthClient) -> Self {
        self.oauth = Some(Arc::new(TokenSource::new(client)));
        self
    }

    /// Logs each request and answer (for a validation run).
    pub fn logging_exchange(mut self) -> Self {
        self.log_exchange = true;
        self
    }

    /// Our own e-address.
    pub fn address(&self) -> &str {
        &self.endpoint.address
    }

    /// A whole signed request for `op` with `input` inside its input element.
    pub fn signed_request(&self, op: Operation, input: &str) -> Result<String, DivError> {
        let header = wssec::header(&self.creds, &op.action(), &self.endpoint.url, Utc::now())
            .map_err(|source| DivError::Sign {
                operation: op.name(),
                source,
            })?;
        Ok(soap::envelope(&header, op, input))
    }

    /// Sends a request as it is and returns the answer's text (the output
    /// element's document), or the fault.
    pub async fn post(&self, op: Operation, request: String) -> Result<String, DivError> {
        if self.log_exchange {
            tracing::info!(operation = op.name(), "request: {request}");
        }
        let (response, token) = self.send_once(op, &request).await?;
        let response = match (&self.oauth, token) {
            // The token was refused (revoked, expired early): a new one, once.
            (Some(tokens), Some(token))
                if response.status() == reqwest::StatusCode::UNAUTHORIZED =>
            {
                tokens.forget(&token).await;
                self.send_once(op, &request).await?.0
            }
            _ => response,
        };
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Err(DivError::Unauthorized {
                operation: op.name(),
                hint: if self.oauth.is_some() {
                    "a freshly fetched OAuth2 token was refused too"
                } else {
                    "the service may require an OAuth2 token ([oauth] in the channel file)"
                },
            });
        }
        let status = response.status().as_u16();
        let text = response.text().await.map_err(DivError::Transport)?;
        if self.log_exchange {
            tracing::info!(operation = op.name(), status, "answer: {text}");
        }
        let doc = roxmltree::Document::parse(&text).map_err(|e| {
            if status >= 400 {
                DivError::Status {
                    operation: op.name(),
                    status,
                }
            } else {
                DivError::Malformed {
                    operation: op.name(),
                    problem: e.to_string(),
                }
            }
        })?;
        match soap::answer(&doc) {
            Some(Answer::Fault(reason)) => Err(DivError::Fault {
                operation: op.name(),
                reason,
            }),
            Some(Answer::Output(_)) if status < 300 => Ok(text),
            _ => Err(DivError::Status {
                operation: op.name(),
                status,
            }),
        }
    }

    /// One HTTP exchange of a request, with the bearer token when required
    /// (returned, to be forgotten if refused).
    async fn send_once(
        &self,
        op: Operation,
        request: &str,
    ) -> Result<(reqwest::Response, Option<SecretString>), DivError> {
        let mut builder = self
            .http
            .post(&self.endpoint.url)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!(
                    "application/soap+xml; charset=utf-8; action=\"{}\"",
                    op.action()
                ),
            )
            .body(request.to_string());
        if let Some(tokens) = &self.oauth {
            let token = tokens
                .bearer(&self.http)
                .await
                .map_err(|source| DivError::Token {
                    operation: op.name(),
                    source,
                })?;
            builder = builder.bearer_auth(token.expose_secret());
            let response = builder.send().await.map_err(DivError::Transport)?;
            return Ok((response, Some(token)));
        }
        let response = builder.send().await.map_err(DivError::Transport)?;
        Ok((response, None))
    }

    async fn call(&self, op: Operation, input: &str) -> Result<String, DivError> {
        let request = self.signed_request(op, input)?;
        self.post(op, request).await
    }

    /// The certificate check (CertValidate): true when the service accepts it.
    pub async fn cert_validate(&self) -> Result<bool, DivError> {
        let op = Operation::CertValidate;
        let text = self.call(op, "").await?;
        with_output(&text, op, |out| {
            Ok(soap::text_of(out, "Valid").is_some_and(|v| v.trim() == "true"))
        })
    }

    /// The ids of the messages waiting for us (not yet confirmed).
    pub async fn message_list(&self) -> Result<Vec<String>, DivError> {
        let op = Operation::GetMessageList;
        let text = self.call(op, "").await?;
        with_output(&text, op, |out| {
            Ok(soap::all(out, "MessageId")
                .filter_map(|n| n.text())
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect())
        })
    }

    /// One message with its files decrypted; files over `limit` bytes are refused.
    pub async fn message(&self, message_id: &str, limit: u64) -> Result<InboundMessage, DivError> {
        let op = Operation::GetMessage;
        let text = self
            .call(op, &format!("<MessageId>{}</MessageId>", esc(message_id)))
            .await?;
        let ours = B64.encode(self.creds.thumbprint_sha1());
        let raw = with_output(&text, op, |out| read_message(out, &ours))?;
        let key = match &raw.key {
            Some(k) => B64
                .decode(strip_ws(k))
                .map_err(|e| malformed(op, format!("EncryptionInfo key: {e}")))?,
            None => Vec::new(),
        };
        let mut files = Vec::new();
        let mut unreadable = Vec::new();
        for f in &raw.files {
            let contents = match raw.contents.iter().find(|(cid, ..)| *cid == f.content_id) {
                Some((_, Some(bytes), _)) => bytes.clone(),
                Some((_, None, sections)) => {
                    self.sections(message_id, &f.content_id, *sections).await?
                }
                None => {
                    return Err(malformed(
                        op,
                        format!("no contents for file {}", f.content_id),
                    ));
                }
            };
            let opened = crypto::unwrap_key(&self.creds.private, &key).and_then(|content_key| {
                crypto::decrypt_file(
                    &content_key,
                    &contents,
                    f.compressed,
                    f.sha512.as_deref(),
                    limit,
                )
            });
            match opened {
                Ok(content) => files.push(InboundFile {
                    name: f.name.clone(),
                    mime_type: f.mime_type.clone(),
                    content,
                }),
                Err(e) => unreadable.push((f.name.clone(), e)),
            }
        }
        Ok(InboundMessage {
            message_id: message_id.to_string(),
            sender_address: raw.sender_address,
            sender_ref: raw.sender_ref,
            title: raw.title,
            description: raw.description,
            document_date: raw.document_date,
            recipients: raw.recipients,
            sender_verified: raw.sender_verified,
            files,
            unreadable,
        })
    }

    async fn sections(
        &self,
        message_id: &str,
        content_id: &str,
        count: u32,
    ) -> Result<Vec<u8>, DivError> {
        let op = Operation::GetAttachmentSection;
        let mut all = Vec::new();
        for index in 0..count {
            let text = self
                .call(
                    op,
                    &format!(
                        "<MessageId>{}</MessageId><ContentId>{}</ContentId>\
                         <SectionIndex>{index}</SectionIndex>",
                        esc(message_id),
                        esc(content_id)
                    ),
                )
                .await?;
            let part = with_output(&text, op, |out| {
                let b64 = soap::text_of(out, "Contents").unwrap_or_default();
                B64.decode(strip_ws(b64))
                    .map_err(|e| malformed(op, format!("section {index}: {e}")))
            })?;
            all.extend_from_slice(&part);
        }
        Ok(all)
    }

    /// Confirms a message: the service stops serving it.
    pub async fn confirm(&self, message_id: &str) -> Result<(), DivError> {
        self.call(
            Operation::ConfirmMessage,
            &format!("<MessageId>{}</MessageId>", esc(message_id)),
        )
        .await
        .map(|_| ())
    }

    /// Sends a document, its SenderDocument signed (XAdES-BES); the new message's id.
    pub async fn send(&self, out: &Outbound) -> Result<String, DivError> {
        let op = Operation::SendMessage;
        let request = self.send_request(out, Utc::now())?;
        let text = self.post(op, request).await?;
        with_output(&text, op, |o| {
            soap::text_of(o, "MessageId")
                .map(|t| t.trim().to_string())
                .ok_or_else(|| malformed(op, "no MessageId".into()))
        })
    }

    /// The whole signed SendMessage request.
    pub fn send_request(&self, out: &Outbound, now: DateTime<Utc>) -> Result<String, DivError> {
        let op = Operation::SendMessage;
        let sign = |source| DivError::Sign {
            operation: op.name(),
            source,
        };
        let ours = esc(&self.endpoint.address);
        let (payload, attachments) = payload(&out.files);
        let document = super::dsig::exc_c14n(&format!(
            "<SenderDocument xmlns=\"{NS_DIV}\" Id=\"{}\"><DocumentMetadata><GeneralMetadata>\
             <Authors><AuthorEntry><Institution><Title>{ours}</Title></Institution></AuthorEntry>\
             </Authors><Date>{}</Date><Title>{}</Title><Description>{}</Description>\
             <DocumentKind><DocumentKindCode>DOC_EMPTY</DocumentKindCode></DocumentKind>\
             </GeneralMetadata>{payload}</DocumentMetadata><SenderTransportMetadata>\
             <SenderE-Address>{ours}</SenderE-Address><SenderRefNumber>{}</SenderRefNumber>\
             <Recipients><RecipientEntry><RecipientE-Address>{}</RecipientE-Address>\
             </RecipientEntry></Recipients><NotifySenderOnDelivery>true</NotifySenderOnDelivery>\
             <Priority>normal</Priority></SenderTransportMetadata></SenderDocument>",
            xades::SENDER_DOCUMENT_ID,
            now.format("%Y-%m-%d"),
            esc(&out.title),
            esc(&out.description),
            esc(&out.sender_ref),
            esc(&out.recipient),
        ))
        .map_err(sign)?;
        let signature = xades::sign_sender_document(&self.creds, &document, now).map_err(sign)?;
        let input = format!(
            "<Envelope xmlns=\"{NS_DIV}\">{document}<Signatures>{signature}</Signatures></Envelope>\
             <AttachmentsInput>{attachments}</AttachmentsInput>"
        );
        self.signed_request(op, &input)
    }

    /// The delivery confirmation of a message we sent, once the service has one.
    pub async fn server_confirmation(
        &self,
        message_id: &str,
    ) -> Result<Option<ServerConfirmation>, DivError> {
        let op = Operation::GetMessageServerConfirmation;
        let text = self
            .call(op, &format!("<MessageId>{}</MessageId>", esc(message_id)))
            .await?;
        with_output(&text, op, |out| {
            let Some(status) = soap::text_of(out, "Status") else {
                return Ok(None);
            };
            let delivered_at = soap::text_of(out, "DeliveryDate")
                .and_then(|d| DateTime::parse_from_rfc3339(d.trim()).ok())
                .map(|d| d.with_timezone(&Utc));
            Ok(Some(ServerConfirmation {
                status: status.trim().to_string(),
                delivered_at,
            }))
        })
    }

    /// The addressee directory: all of it (`token` None) or what changed since `token`.
    pub async fn addressees(&self, token: Option<&str>) -> Result<AddresseeChanges, DivError> {
        let (op, input) = match token {
            None => (Operation::GetInitialAddresseeRecordList, String::new()),
            Some(t) => (
                Operation::GetChangedAddresseeRecordList,
                format!("<Token>{}</Token>", esc(t)),
            ),
        };
        let text = self.call(op, &input).await?;
        with_output(&text, op, |out| {
            let records = soap::all(out, "AddresseeRecord")
                .filter_map(|r| {
                    let address = soap::text_of(r, "E-Address")?.trim().to_string();
                    let active = soap::text_of(r, "Active").is_some_and(|a| a.trim() == "true");
                    Some((address, active))
                })
                .collect();
            let token = soap::text_of(out, "Token")
                .map(|t| t.trim().to_string())
                .ok_or_else(|| malformed(op, "no Token".into()))?;
            Ok(AddresseeChanges { records, token })
        })
    }
}

/// The `PayloadReference` of a sent document (empty without files) and the
/// `AttachmentsInput` entries carrying the files' bytes, one whole section
/// each (by `ContentId` = the File's `ContentReference`). The SHA-512
/// digest and size are inside the signed SenderDocument, so the XAdES
/// signature covers the files too.
fn payload(files: &[OutboundFile]) -> (String, String) {
    if files.is_empty() {
        return (String::new(), String::new());
    }
    let mut references = String::new();
    let mut attachments = String::new();
    for (n, f) in files.iter().enumerate() {
        let number = n + 1;
        let content_id = format!("file{number}");
        let digest = sha2::Sha512::digest(&f.content);
        references.push_str(&format!(
            "<File><MimeType>{}</MimeType><Size>{}</Size><Name>{}</Name>\
             <DigestMethod>http://www.w3.org/2001/04/xmlenc#sha512</DigestMethod>\
             <DigestValue>{}</DigestValue><ContentReference>{content_id}</ContentReference>\
             <Compressed>false</Compressed><AppendixNumber>{number}</AppendixNumber></File>",
            esc(&f.mime_type),
            f.content.len(),
            esc(&f.name),
            B64.encode(digest),
        ));
        attachments.push_str(&format!(
            "<AttachmentInput><ContentId>{content_id}</ContentId><Contents>{}</Contents>\
             </AttachmentInput>",
            B64.encode(&f.content)
        ));
    }
    (
        format!("<PayloadReference>{references}</PayloadReference>"),
        attachments,
    )
}

fn malformed(operation: Operation, problem: String) -> DivError {
    DivError::Malformed {
        operation: operation.name(),
        problem,
    }
}

fn strip_ws(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Runs `read` on the output element of an answer already known to be one.
fn with_output<T>(
    text: &str,
    op: Operation,
    read: impl FnOnce(roxmltree::Node<'_, '_>) -> Result<T, DivError>,
) -> Result<T, DivError> {
    let doc = roxmltree::Document::parse(text).map_err(|e| malformed(op, e.to_string()))?;
    match soap::answer(&doc) {
        Some(Answer::Output(out)) => read(out),
        _ => Err(malformed(op, "no output element".into())),
    }
}

struct RawFile {
    name: String,
    mime_type: String,
    content_id: String,
    compressed: bool,
    sha512: Option<Vec<u8>>,
}

struct RawMessage {
    sender_address: String,
    sender_ref: Option<String>,
    title: String,
    description: String,
    document_date: Option<String>,
    recipients: Vec<String>,
    sender_verified: bool,
    key: Option<String>,
    files: Vec<RawFile>,
    /// (content id, contents if given inline, section count otherwise).
    contents: Vec<(String, Option<Vec<u8>>, u32)>,
}

/// Reads GetMessage's output; `ours` is the certificate thumbprint (base64)
/// whose recipient entry carries our key.
fn read_message(out: roxmltree::Node<'_, '_>, ours: &str) -> Result<RawMessage, DivError> {
    let op = Operation::GetMessage;
    let text = |n: roxmltree::Node<'_, '_>, local: &str| {
        soap::text_of(n, local).map(|t| t.trim().to_string())
    };
    let envelope = soap::all(out, "Envelope")
        .next()
        .ok_or_else(|| malformed(op, "no Envelope".into()))?;
    let document = soap::all(envelope, "SenderDocument")
        .next()
        .ok_or_else(|| malformed(op, "no SenderDocument".into()))?;
    let sender_address = soap::all(document, "SenderE-Address")
        .next()
        .and_then(|n| n.text())
        .map(|t| t.trim().to_string())
        .ok_or_else(|| malformed(op, "no SenderE-Address".into()))?;
    let mut recipients = Vec::new();
    let mut key = None;
    for entry in soap::all(document, "RecipientEntry") {
        if let Some(a) = text(entry, "RecipientE-Address") {
            recipients.push(a);
        }
        let thumb = text(entry, "CertificateThumbprint").unwrap_or_default();
        if key.is_none() && (thumb.is_empty() || thumb == ours) {
            key = text(entry, "Key");
        }
    }
    let mut files = Vec::new();
    for f in soap::all(document, "File") {
        let sha512 = match (text(f, "DigestMethod"), text(f, "DigestValue")) {
            (Some(m), Some(v)) if m.ends_with("#sha512") => Some(
                B64.decode(strip_ws(&v))
                    .map_err(|e| malformed(op, format!("File DigestValue: {e}")))?,
            ),
            _ => None,
        };
        files.push(RawFile {
            name: text(f, "Name").unwrap_or_else(|| "attachment".into()),
            mime_type: text(f, "MimeType").unwrap_or_else(|| "application/octet-stream".into()),
            content_id: text(f, "ContentReference")
                .ok_or_else(|| malformed(op, "a File without ContentReference".into()))?,
            compressed: text(f, "Compressed").is_some_and(|c| c == "true"),
            sha512,
        });
    }
    let mut contents = Vec::new();
    for a in soap::all(out, "AttachmentOutput") {
        let cid = text(a, "ContentId").unwrap_or_default();
        match text(a, "Contents") {
            Some(b64) => contents.push((
                cid,
                Some(
                    B64.decode(strip_ws(&b64))
                        .map_err(|e| malformed(op, format!("Contents: {e}")))?,
                ),
                0,
            )),
            None => {
                let count = text(a, "SectionCount")
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| malformed(op, "neither Contents nor SectionCount".into()))?;
                contents.push((cid, None, count));
            }
        }
    }
    let metadata = soap::all(document, "GeneralMetadata").next();
    let general = |local: &str| {
        metadata?
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == local)?
            .text()
            .map(|t| t.trim().to_string())
    };
    Ok(RawMessage {
        sender_address,
        sender_ref: text(document, "SenderRefNumber").filter(|r| !r.is_empty()),
        title: general("Title").unwrap_or_default(),
        description: general("Description").unwrap_or_default(),
        document_date: general("Date"),
        recipients,
        sender_verified: soap::all(envelope, "SenderVerified")
            .next()
            .and_then(|n| n.text())
            .is_some_and(|v| v.trim() == "true"),
        key,
        files,
        contents,
    })
}

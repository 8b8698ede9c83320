//! Mayan EDMS (REST API v4). One Mayan document per item: created empty with
//! the item's marker in its description, then the files (the original as
//! the active version's pages, the attachments kept beside it), then one
//! metadata entry per register field (`pietura_*` metadata types).
//!
//! Idempotency: before creating, the document is searched for by the item
//! id and its description checked exactly (Mayan's search is fuzzy); files
//! already on the document are matched by name and not uploaded again.
//! Each upload is confirmed by listing the files, because with a Celery
//! worker Mayan stores a file after answering 202.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::RequestBuilder;
use reqwest::multipart::{Form, Part};
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use super::http::{self, send};
use super::{Connector, DmsDocument, DmsError, ExternalRecord, FIELDS};

/// The connector's name in settings and on items.
pub const KIND: &str = "mayan";

/// `[dms.connector] type = "mayan"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MayanSettings {
    /// Where Pietura reaches Mayan, e.g. `http://mayan.novads.lv:8000`.
    pub url: String,
    /// Where people open Mayan, for the link on each item (default `url`).
    pub public_url: Option<String>,
    /// An API token (`/api/v4/auth/token/obtain/`), or…
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
    /// …a user and password (HTTP Basic).
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub password_file: Option<PathBuf>,
    /// The document type items are filed under (matched by label).
    #[serde(default = "default_document_type")]
    pub document_type: String,
    /// Create the document type and the `pietura_*` metadata types when
    /// they are missing (needs those permissions); false: only check.
    #[serde(default = "default_provision")]
    pub provision: bool,
}

fn default_document_type() -> String {
    "Pietura iesniegums".into()
}
fn default_provision() -> bool {
    true
}

impl MayanSettings {
    pub(super) fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        for (key, url) in [
            ("url", Some(&self.url)),
            ("public_url", self.public_url.as_ref()),
        ] {
            if let Some(problem) = url.and_then(|u| http::check_url(u)) {
                issues.push((key.to_string(), problem));
            }
        }
        let token = self.token.is_some() || self.token_file.is_some();
        let password = self.password.is_some() || self.password_file.is_some();
        match (token, self.username.is_some(), password) {
            (true, false, false) | (false, true, true) => {}
            _ => issues.push((
                "token".into(),
                "set token (or token_file), or username with password (or password_file)".into(),
            )),
        }
        if self.document_type.trim().is_empty() {
            issues.push(("document_type".into(), "must not be empty".into()));
        }
        issues
    }
}

/// Ids of what Mayan has to have before the first upload.
#[derive(Debug)]
struct Prepared {
    document_type_id: u64,
    /// Register field key → metadata type id.
    metadata_types: HashMap<&'static str, u64>,
}

/// The Mayan EDMS connector.
pub struct Mayan {
    settings: MayanSettings,
    base: String,
    client: reqwest::Client,
    prepared: OnceCell<Prepared>,
}

#[derive(Deserialize)]
struct Page<T> {
    next: Option<String>,
    results: Vec<T>,
}

#[derive(Deserialize)]
struct Labeled {
    id: u64,
    label: String,
}

#[derive(Deserialize)]
struct Named {
    id: u64,
    name: String,
}

#[derive(Deserialize)]
struct Document {
    id: u64,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct DocumentFile {
    filename: String,
}

#[derive(Deserialize)]
struct TypeMetadata {
    metadata_type: Named,
}

#[derive(Deserialize)]
struct DocumentMetadata {
    id: u64,
    metadata_type: Named,
    #[serde(default)]
    value: Option<String>,
}

/// Mayan keeps metadata values up to 255 characters.
const VALUE_MAX: usize = 255;

impl Mayan {
    pub(super) fn new(settings: MayanSettings, client: reqwest::Client) -> Self {
        Self {
            base: http::base(&settings.url),
            settings,
            client,
            prepared: OnceCell::new(),
        }
    }

    fn api(&self, path: &str) -> String {
        format!("{}/api/v4/{path}", self.base)
    }

    fn authed(&self, req: RequestBuilder) -> Result<RequestBuilder, DmsError> {
        let s = &self.settings;
        let req = req.header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = http::secret(&s.token, &s.token_file, "token")? {
            return Ok(req.header(reqwest::header::AUTHORIZATION, format!("Token {token}")));
        }
        let password = http::secret(&s.password, &s.password_file, "password")?.unwrap_or_default();
        Ok(req.basic_auth(s.username.clone().unwrap_or_default(), Some(password)))
    }

    async fn get<T: DeserializeOwned>(&self, url: &str, what: &str) -> Result<T, DmsError> {
        let resp = send(self.authed(self.client.get(url))?, what).await?;
        http::json(resp, what).await
    }

    /// Every result of a paginated list.
    async fn list<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<Vec<T>, DmsError> {
        let mut out = Vec::new();
        let mut url = Some(self.api(path));
        while let Some(u) = url {
            let page: Page<T> = self.get(&u, what).await?;
            out.extend(page.results);
            url = page.next;
        }
        Ok(out)
    }

    async fn post_form<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, String)],
        what: &str,
    ) -> Result<T, DmsError> {
        let req = self.authed(self.client.post(self.api(path)))?.form(form);
        http::json(send(req, what).await?, what).await
    }

    async fn prepared(&self) -> Result<&Prepared, DmsError> {
        self.prepared.get_or_try_init(|| self.prepare()).await
    }

    /// Finds (or, with `provision`, creates) the document type and the
    /// metadata types, and attaches the metadata types to the document type.
    async fn prepare(&self) -> Result<Prepared, DmsError> {
        let wanted = &self.settings.document_type;
        let types: Vec<Labeled> = self
            .list("document_types/", "Mayan: listing document types")
            .await?;
        let document_type_id = match types.iter().find(|t| &t.label == wanted) {
            Some(t) => t.id,
            None if self.settings.provision => {
                let created: Labeled = self
                    .post_form(
                        "document_types/",
                        &[("label", wanted.clone())],
                        "Mayan: creating the document type",
                    )
                    .await?;
                tracing::info!(document_type = %wanted, id = created.id, "Mayan document type created");
                created.id
            }
            None => {
                return Err(DmsError::Config(format!(
                    "Mayan has no document type labelled {wanted:?}: create it, or set [dms.connector] provision = true"
                )));
            }
        };
        let existing: Vec<Named> = self
            .list("metadata_types/", "Mayan: listing metadata types")
            .await?;
        let mut metadata_types = HashMap::new();
        for (key, label) in FIELDS {
            let name = format!("pietura_{key}");
            let id = match existing.iter().find(|m| m.name == name) {
                Some(m) => m.id,
                None if self.settings.provision => {
                    let created: Named = self
                        .post_form(
                            "metadata_types/",
                            &[("name", name.clone()), ("label", label.to_string())],
                            "Mayan: creating a metadata type",
                        )
                        .await?;
                    created.id
                }
                None => {
                    return Err(DmsError::Config(format!(
                        "Mayan has no metadata type {name:?}: create it, or set [dms.connector] provision = true"
                    )));
                }
            };
            metadata_types.insert(key, id);
        }
        let attached: Vec<TypeMetadata> = self
            .list(
                &format!("document_types/{document_type_id}/metadata_types/"),
                "Mayan: listing the document type's metadata types",
            )
            .await?;
        for (key, id) in &metadata_types {
            if attached.iter().any(|a| a.metadata_type.id == *id) {
                continue;
            }
            if !self.settings.provision {
                return Err(DmsError::Config(format!(
                    "Mayan metadata type pietura_{key} is not attached to document type {wanted:?}"
                )));
            }
            let _: serde_json::Value = self
                .post_form(
                    &format!("document_types/{document_type_id}/metadata_types/"),
                    &[
                        ("metadata_type_id", id.to_string()),
                        ("required", "false".into()),
                    ],
                    "Mayan: attaching a metadata type to the document type",
                )
                .await?;
        }
        Ok(Prepared {
            document_type_id,
            metadata_types,
        })
    }

    /// The document an earlier attempt created for this item, if any.
    async fn find(&self, doc: &DmsDocument) -> Result<Option<u64>, DmsError> {
        let marker = doc.marker();
        let found: Vec<Document> = self
            .list(
                &format!("documents/?description={}", doc.item_id),
                "Mayan: looking the item up",
            )
            .await?;
        Ok(found
            .into_iter()
            .find(|d| d.description.lines().next() == Some(marker.as_str()))
            .map(|d| d.id))
    }

    fn description(doc: &DmsDocument) -> String {
        format!(
            "{}\nReģistrēts Pietura sistēmā ar numuru {}.",
            doc.marker(),
            doc.registration_number
        )
    }

    async fn file_names(&self, id: u64) -> Result<Vec<String>, DmsError> {
        let files: Vec<DocumentFile> = self
            .list(
                &format!("documents/{id}/files/"),
                "Mayan: listing the document's files",
            )
            .await?;
        Ok(files.into_iter().map(|f| f.filename).collect())
    }

    /// Uploads the files the document lacks, each confirmed before the next.
    async fn upload_missing(&self, doc: &DmsDocument, id: u64) -> Result<(), DmsError> {
        let mut present = self.file_names(id).await?;
        for (i, file) in doc.files.iter().enumerate() {
            if present.contains(&file.name) {
                continue;
            }
            let what = format!("Mayan: uploading {} to document {id}", file.name);
            let part = Part::bytes(file.bytes().await?)
                .file_name(file.name.clone())
                .mime_str(
                    file.content_type
                        .split(';')
                        .next()
                        .unwrap_or("application/octet-stream"),
                )
                .map_err(|e| DmsError::File(format!("{what}: {e}")))?;
            // The original's pages make the document's version; attachments are kept beside.
            let action = if i == 0 { "replace" } else { "keep" };
            let form = Form::new()
                .part("file_new", part)
                .text("action_name", action)
                .text("filename", file.name.clone())
                .text("comment", format!("Pietura {}", doc.registration_number));
            let req = self
                .authed(
                    self.client
                        .post(self.api(&format!("documents/{id}/files/"))),
                )?
                .multipart(form);
            send(req, &what).await?;
            present = self.wait_for_file(id, &file.name, &what).await?;
        }
        Ok(())
    }

    /// Waits until Mayan lists `name` (stored by its worker after the 202).
    async fn wait_for_file(
        &self,
        id: u64,
        name: &str,
        what: &str,
    ) -> Result<Vec<String>, DmsError> {
        let started = Instant::now();
        loop {
            let present = self.file_names(id).await?;
            if present.iter().any(|n| n == name) {
                return Ok(present);
            }
            if started.elapsed() > Duration::from_secs(120) {
                return Err(DmsError::Unavailable(format!(
                    "{what}: accepted but not stored after 120 s (is Mayan's worker running?)"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Sets every register field on the document, creating or changing
    /// only what differs.
    async fn put_metadata(&self, doc: &DmsDocument, id: u64) -> Result<(), DmsError> {
        let prepared = self.prepared().await?;
        let current: Vec<DocumentMetadata> = self
            .list(
                &format!("documents/{id}/metadata/"),
                "Mayan: reading the document's metadata",
            )
            .await?;
        for (key, value) in &doc.fields {
            let Some(type_id) = prepared.metadata_types.get(key) else {
                continue;
            };
            let value: String = value.chars().take(VALUE_MAX).collect();
            let what = format!("Mayan: setting pietura_{key} on document {id}");
            match current.iter().find(|m| m.metadata_type.id == *type_id) {
                Some(m) if m.value.as_deref().unwrap_or("") == value => {}
                Some(m) => {
                    let req = self
                        .authed(
                            self.client
                                .patch(self.api(&format!("documents/{id}/metadata/{}/", m.id))),
                        )?
                        .form(&[("value", value)]);
                    send(req, &what).await?;
                }
                None if value.is_empty() => {}
                None => {
                    let _: serde_json::Value = self
                        .post_form(
                            &format!("documents/{id}/metadata/"),
                            &[("metadata_type_id", type_id.to_string()), ("value", value)],
                            &what,
                        )
                        .await?;
                }
            }
        }
        Ok(())
    }

    fn record(&self, id: u64) -> ExternalRecord {
        let public = self
            .settings
            .public_url
            .as_deref()
            .map(http::base)
            .unwrap_or_else(|| self.base.clone());
        ExternalRecord {
            id: id.to_string(),
            url: Some(format!("{public}/#/documents/documents/{id}/preview/")),
        }
    }

    fn parse_id(id: &str) -> Result<u64, DmsError> {
        id.parse().map_err(|_| {
            DmsError::Malformed(format!(
                "Mayan document id {id:?} recorded on the item is not a number"
            ))
        })
    }
}

#[async_trait]
impl Connector for Mayan {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn register(
        &self,
        doc: &DmsDocument,
        known: Option<&str>,
    ) -> Result<ExternalRecord, DmsError> {
        let prepared = self.prepared().await?;
        let id = match known {
            Some(id) => Self::parse_id(id)?,
            None => match self.find(doc).await? {
                Some(id) => {
                    tracing::info!(
                        document = id,
                        "Mayan already has this item's document (an earlier attempt); completing it"
                    );
                    id
                }
                None => {
                    let created: Document = self
                        .post_form(
                            "documents/",
                            &[
                                ("document_type_id", prepared.document_type_id.to_string()),
                                ("label", doc.title.clone()),
                                ("description", Self::description(doc)),
                                ("language", "lav".into()),
                            ],
                            "Mayan: creating the document",
                        )
                        .await?;
                    created.id
                }
            },
        };
        self.upload_missing(doc, id).await?;
        self.put_metadata(doc, id).await?;
        Ok(self.record(id))
    }

    async fn update(&self, doc: &DmsDocument, id: &str) -> Result<ExternalRecord, DmsError> {
        let id = Self::parse_id(id)?;
        let req = self
            .authed(self.client.patch(self.api(&format!("documents/{id}/"))))?
            .form(&[("label", doc.title.clone())]);
        send(req, &format!("Mayan: renaming document {id}")).await?;
        self.put_metadata(doc, id).await?;
        Ok(self.record(id))
    }

    async fn health(&self) -> Result<(), DmsError> {
        // Lists answer 200 (empty) without credentials: ask who we are.
        let _: serde_json::Value = self
            .get(
                &self.api("users/current/"),
                "Mayan: checking the credentials",
            )
            .await?;
        self.prepared().await.map(|_| ())
    }
}

//! Paperless-ngx (REST API, written against its published API document:
//! `post_document` + task polling, custom fields). Paperless keeps one file
//! per document, so an item becomes one document per file: the original
//! (whose id is the item's external id) and one per attachment. Every one
//! carries the `pietura_*` custom fields, `pietura_item_id` and
//! `pietura_file` among them, which is how a retry finds what an earlier
//! attempt uploaded (`custom_field_query`).
//!
//! A file consumed but not yet tagged when an attempt broke off is
//! refused by Paperless as a duplicate of that document; its id is taken
//! from the refusal and the document is tagged then.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::RequestBuilder;
use reqwest::multipart::{Form, Part};
use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::http::{self, send};
use super::{Connector, DmsDocument, DmsError, DmsFile, ExternalRecord, FIELDS};

/// The connector's name in settings and on items.
pub const KIND: &str = "paperless";

/// `[dms.connector] type = "paperless"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperlessSettings {
    /// e.g. `https://paperless.novads.lv`
    pub url: String,
    /// Where people open Paperless (default `url`).
    pub public_url: Option<String>,
    /// An API token (Paperless: My Profile → API Auth Token).
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
    /// A document type id to file items under (optional).
    pub document_type: Option<u64>,
    /// Tag ids added to every document (optional).
    #[serde(default)]
    pub tags: Vec<u64>,
    /// Longest wait for Paperless to consume one upload.
    #[serde(default = "default_consume_seconds")]
    pub consume_timeout_seconds: u64,
}

fn default_consume_seconds() -> u64 {
    300
}

impl PaperlessSettings {
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
        if self.token.is_some() == self.token_file.is_some() {
            issues.push((
                "token".into(),
                "set token or token_file (one of them)".into(),
            ));
        }
        issues
    }
}

/// Paperless keeps string custom fields up to 128 characters.
const VALUE_MAX: usize = 128;

/// The Paperless-ngx connector.
pub struct Paperless {
    settings: PaperlessSettings,
    base: String,
    client: reqwest::Client,
    /// Custom field name → id.
    fields: OnceCell<HashMap<String, u64>>,
}

#[derive(Deserialize)]
struct Page<T> {
    next: Option<String>,
    results: Vec<T>,
}

#[derive(Deserialize)]
struct CustomField {
    id: u64,
    name: String,
}

#[derive(Deserialize)]
struct FieldValue {
    field: u64,
    #[serde(default)]
    value: serde_json::Value,
}

#[derive(Deserialize)]
struct Document {
    id: u64,
    #[serde(default)]
    custom_fields: Vec<FieldValue>,
}

#[derive(Deserialize)]
struct Task {
    status: String,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    related_document: Option<serde_json::Value>,
}

impl Paperless {
    pub(super) fn new(settings: PaperlessSettings, client: reqwest::Client) -> Self {
        Self {
            base: http::base(&settings.url),
            settings,
            client,
            fields: OnceCell::new(),
        }
    }

    fn api(&self, path: &str) -> String {
        format!("{}/api/{path}", self.base)
    }

    fn authed(&self, req: RequestBuilder) -> Result<RequestBuilder, DmsError> {
        let s = &self.settings;
        let token = http::secret(&s.token, &s.token_file, "token")?.unwrap_or_default();
        Ok(req
            .header(reqwest::header::ACCEPT, "application/json; version=5")
            .header(reqwest::header::AUTHORIZATION, format!("Token {token}")))
    }

    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        url: String,
        what: &str,
    ) -> Result<Vec<T>, DmsError> {
        let mut out = Vec::new();
        let mut next = Some(url);
        while let Some(u) = next {
            let resp = send(self.authed(self.client.get(&u))?, what).await?;
            let page: Page<T> = http::json(resp, what).await?;
            out.extend(page.results);
            next = page.next;
        }
        Ok(out)
    }

    /// The `pietura_*` custom fields' ids, created when missing.
    async fn field_ids(&self) -> Result<&HashMap<String, u64>, DmsError> {
        self.fields
            .get_or_try_init(|| async {
                let existing: Vec<CustomField> = self
                    .list(
                        self.api("custom_fields/?page_size=100"),
                        "Paperless: listing custom fields",
                    )
                    .await?;
                let mut ids: HashMap<String, u64> =
                    existing.into_iter().map(|f| (f.name, f.id)).collect();
                let wanted = FIELDS.iter().map(|(k, _)| *k).chain(["file"]);
                for key in wanted {
                    let name = format!("pietura_{key}");
                    if ids.contains_key(&name) {
                        continue;
                    }
                    let what = format!("Paperless: creating custom field {name}");
                    let req = self
                        .authed(self.client.post(self.api("custom_fields/")))?
                        .json(&serde_json::json!({ "name": name, "data_type": "string" }));
                    let created: CustomField = http::json(send(req, &what).await?, &what).await?;
                    ids.insert(created.name, created.id);
                }
                Ok(ids)
            })
            .await
    }

    /// This item's documents by file name.
    async fn existing(&self, doc: &DmsDocument) -> Result<HashMap<String, u64>, DmsError> {
        let ids = self.field_ids().await?;
        let (Some(item_field), Some(file_field)) =
            (ids.get("pietura_item_id"), ids.get("pietura_file"))
        else {
            return Ok(HashMap::new());
        };
        let query = serde_json::json!(["pietura_item_id", "exact", doc.item_id]).to_string();
        let url = reqwest::Url::parse_with_params(
            &self.api("documents/"),
            &[("custom_field_query", query.as_str()), ("page_size", "100")],
        )
        .map_err(|e| DmsError::Config(format!("Paperless URL: {e}")))?;
        let found: Vec<Document> = self
            .list(url.to_string(), "Paperless: looking the item up")
            .await?;
        let value_of = |d: &Document, field: u64| {
            d.custom_fields
                .iter()
                .find(|f| f.field == field)
                .and_then(|f| f.value.as_str().map(str::to_string))
        };
        Ok(found
            .iter()
            // The query is trusted only as far as it is checked.
            .filter(|d| value_of(d, *item_field).as_deref() == Some(doc.item_id.as_str()))
            .filter_map(|d| value_of(d, *file_field).map(|name| (name, d.id)))
            .collect())
    }

    /// Uploads one file and waits until Paperless consumed it.
    async fn upload(
        &self,
        doc: &DmsDocument,
        file: &DmsFile,
        index: usize,
    ) -> Result<u64, DmsError> {
        let what = format!("Paperless: uploading {}", file.name);
        let part = Part::bytes(file.bytes().await?)
            .file_name(file.name.clone())
            .mime_str(
                file.content_type
                    .split(';')
                    .next()
                    .unwrap_or("application/octet-stream"),
            )
            .map_err(|e| DmsError::File(format!("{what}: {e}")))?;
        let mut form = Form::new()
            .part("document", part)
            .text("title", title_of(doc, file, index))
            .text("created", doc.received_on.to_string());
        if let Some(t) = self.settings.document_type {
            form = form.text("document_type", t.to_string());
        }
        for t in &self.settings.tags {
            form = form.text("tags", t.to_string());
        }
        let req = self
            .authed(self.client.post(self.api("documents/post_document/")))?
            .multipart(form);
        let task_id: String = http::json(send(req, &what).await?, &what).await?;
        self.wait_for_task(&task_id, &what).await
    }

    async fn wait_for_task(&self, task_id: &str, what: &str) -> Result<u64, DmsError> {
        let started = Instant::now();
        let url = reqwest::Url::parse_with_params(&self.api("tasks/"), &[("task_id", task_id)])
            .map_err(|e| DmsError::Config(format!("Paperless URL: {e}")))?;
        loop {
            let resp = send(self.authed(self.client.get(url.clone()))?, what).await?;
            let tasks: Vec<Task> = http::json(resp, what).await?;
            if let Some(task) = tasks.first() {
                match task.status.as_str() {
                    "SUCCESS" => return document_id(task.related_document.as_ref(), what),
                    "FAILURE" | "REVOKED" => {
                        let result = task.result.clone().unwrap_or_default();
                        return match duplicate_of(&result) {
                            Some(id) => {
                                tracing::info!(
                                    document = id,
                                    "Paperless already has this file (an earlier attempt); tagging that document"
                                );
                                Ok(id)
                            }
                            None => Err(DmsError::Rejected(format!(
                                "{what}: consumption failed: {result}"
                            ))),
                        };
                    }
                    _ => {}
                }
            }
            if started.elapsed() > Duration::from_secs(self.settings.consume_timeout_seconds) {
                return Err(DmsError::Unavailable(format!(
                    "{what}: task {task_id} not finished after {} s (is the consumer running?)",
                    self.settings.consume_timeout_seconds
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Sets the title and every `pietura_*` field of one document.
    async fn tag(
        &self,
        doc: &DmsDocument,
        file: &DmsFile,
        index: usize,
        id: u64,
    ) -> Result<(), DmsError> {
        let ids = self.field_ids().await?;
        let mut values: Vec<serde_json::Value> = Vec::new();
        let file_value = ("file", file.name.clone());
        for (key, value) in doc
            .fields
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .chain([file_value])
        {
            if let Some(field) = ids.get(&format!("pietura_{key}")) {
                let value: String = value.chars().take(VALUE_MAX).collect();
                values.push(serde_json::json!({ "field": field, "value": value }));
            }
        }
        let what = format!("Paperless: setting the fields of document {id}");
        let req = self
            .authed(self.client.patch(self.api(&format!("documents/{id}/"))))?
            .json(&serde_json::json!({
                "title": title_of(doc, file, index),
                "custom_fields": values,
            }));
        send(req, &what).await.map(|_| ())
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
            url: Some(format!("{public}/documents/{id}/details")),
        }
    }
}

fn title_of(doc: &DmsDocument, file: &DmsFile, index: usize) -> String {
    if index == 0 {
        doc.title.clone()
    } else {
        format!("{} pielikums: {}", doc.registration_number, file.name)
    }
}

/// The document id in a task's `related_document` (a number or its text).
fn document_id(v: Option<&serde_json::Value>, what: &str) -> Result<u64, DmsError> {
    let id = match v {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    id.ok_or_else(|| {
        DmsError::Malformed(format!("{what}: task succeeded without a related_document"))
    })
}

/// Paperless's refusal of a file it has: "… It is a duplicate of X (#123)".
fn duplicate_of(result: &str) -> Option<u64> {
    if !result.to_lowercase().contains("duplicate") {
        return None;
    }
    let start = result.rfind("(#")? + 2;
    let digits: String = result[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[async_trait]
impl Connector for Paperless {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn register(
        &self,
        doc: &DmsDocument,
        _known: Option<&str>,
    ) -> Result<ExternalRecord, DmsError> {
        let existing = self.existing(doc).await?;
        let mut main = None;
        for (i, file) in doc.files.iter().enumerate() {
            let id = match existing.get(&file.name) {
                Some(id) => *id,
                None => self.upload(doc, file, i).await?,
            };
            self.tag(doc, file, i, id).await?;
            if i == 0 {
                main = Some(id);
            }
        }
        let id = main.ok_or_else(|| {
            DmsError::Rejected(format!(
                "item {} has no file to upload",
                doc.registration_number
            ))
        })?;
        Ok(self.record(id))
    }

    async fn update(&self, doc: &DmsDocument, id: &str) -> Result<ExternalRecord, DmsError> {
        let existing = self.existing(doc).await?;
        for (i, file) in doc.files.iter().enumerate() {
            if let Some(doc_id) = existing.get(&file.name) {
                self.tag(doc, file, i, *doc_id).await?;
            }
        }
        let id: u64 = id.parse().map_err(|_| {
            DmsError::Malformed(format!("Paperless document id {id:?} is not a number"))
        })?;
        Ok(self.record(id))
    }

    async fn health(&self) -> Result<(), DmsError> {
        let req = self.authed(self.client.get(self.api("documents/?page_size=1")))?;
        send(req, "Paperless: checking the credentials").await?;
        self.field_ids().await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::duplicate_of;

    #[test]
    fn a_duplicate_refusal_names_the_document() {
        assert_eq!(
            duplicate_of("Not consuming 2026-1.eml: It is a duplicate of 2026-1 (#42)."),
            Some(42)
        );
        assert_eq!(duplicate_of("Not consuming x: unsupported file type"), None);
        assert_eq!(duplicate_of("duplicate, but no id"), None);
    }
}

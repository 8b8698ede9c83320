//! CMIS 1.1 browser binding (Alfresco, Nuxeo and others), written against
//! the OASIS specification. An item becomes a folder named by its
//! registration number under `folder`, holding the original and the
//! attachments as documents. The folder's `cmis:description` starts with
//! the item's marker; register fields go to the properties named in
//! `[dms.connector.properties]` (repository-specific, e.g. an Alfresco aspect).
//!
//! Idempotency: the folder is looked up by path before it is created, and
//! a document already in it is matched by name.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use reqwest::RequestBuilder;
use reqwest::multipart::{Form, Part};
use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::http::{self, send};
use super::{Connector, DmsDocument, DmsError, ExternalRecord, FIELDS};

/// The connector's name in settings and on items.
pub const KIND: &str = "cmis";

/// `[dms.connector] type = "cmis"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmisSettings {
    /// The browser binding's service URL, e.g.
    /// `https://dms.novads.lv/alfresco/api/-default-/public/cmis/versions/1.1/browser`.
    pub url: String,
    /// The repository; default: the first the service lists.
    pub repository_id: Option<String>,
    /// The folder (path from the root) that holds one folder per item.
    #[serde(default = "default_folder")]
    pub folder: String,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub password_file: Option<PathBuf>,
    /// A bearer token instead of a user and password.
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
    #[serde(default = "default_folder_type")]
    pub folder_type: String,
    #[serde(default = "default_document_type")]
    pub document_type: String,
    /// Register field → property id set on the item's folder, e.g.
    /// `registration_number = "pietura:registrationNumber"`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// A link for people, `{id}` replaced by the folder's object id.
    pub link_template: Option<String>,
}

fn default_folder() -> String {
    "/Pietura".into()
}
fn default_folder_type() -> String {
    "cmis:folder".into()
}
fn default_document_type() -> String {
    "cmis:document".into()
}

impl CmisSettings {
    pub(super) fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if let Some(problem) = http::check_url(&self.url) {
            issues.push(("url".into(), problem));
        }
        if !self.folder.starts_with('/') {
            issues.push((
                "folder".into(),
                "must be a path from the root, e.g. \"/Pietura\"".into(),
            ));
        }
        let token = self.token.is_some() || self.token_file.is_some();
        let password = self.password.is_some() || self.password_file.is_some();
        match (token, self.username.is_some(), password) {
            (true, false, false) | (false, true, true) => {}
            _ => issues.push((
                "username".into(),
                "set username with password (or password_file), or token (or token_file)".into(),
            )),
        }
        for key in self.properties.keys() {
            if !FIELDS.iter().any(|(k, _)| k == key) {
                let known: Vec<&str> = FIELDS.iter().map(|(k, _)| *k).collect();
                issues.push((
                    format!("properties.{key}"),
                    format!("unknown field; known: {}", known.join(", ")),
                ));
            }
        }
        issues
    }
}

/// The CMIS browser binding connector.
pub struct Cmis {
    settings: CmisSettings,
    client: reqwest::Client,
    root: OnceCell<String>,
}

#[derive(Deserialize)]
struct Repository {
    #[serde(rename = "repositoryId")]
    repository_id: String,
    #[serde(rename = "rootFolderUrl")]
    root_folder_url: String,
}

#[derive(Deserialize)]
struct Object {
    #[serde(rename = "succinctProperties")]
    properties: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct ChildEntry {
    object: Object,
}

#[derive(Deserialize)]
struct Children {
    #[serde(default)]
    objects: Vec<ChildEntry>,
    #[serde(default, rename = "hasMoreItems")]
    has_more_items: bool,
}

impl Object {
    fn text(&self, id: &str) -> Option<&str> {
        match self.properties.get(id)? {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Array(a) => a.first()?.as_str(),
            _ => None,
        }
    }
}

/// `cmis:name` cannot hold `/` (nor `\`, `:` and friends in many repositories).
fn folder_name(doc: &DmsDocument) -> String {
    doc.registration_number
        .chars()
        .map(|c| if "/\\:*?\"<>|".contains(c) { '-' } else { c })
        .collect()
}

impl Cmis {
    pub(super) fn new(settings: CmisSettings, client: reqwest::Client) -> Self {
        Self {
            settings,
            client,
            root: OnceCell::new(),
        }
    }

    fn authed(&self, req: RequestBuilder) -> Result<RequestBuilder, DmsError> {
        let s = &self.settings;
        let req = req.header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = http::secret(&s.token, &s.token_file, "token")? {
            return Ok(req.bearer_auth(token));
        }
        let password = http::secret(&s.password, &s.password_file, "password")?.unwrap_or_default();
        Ok(req.basic_auth(s.username.clone().unwrap_or_default(), Some(password)))
    }

    /// The repository's root folder URL (from the service document).
    async fn root(&self) -> Result<&str, DmsError> {
        self.root
            .get_or_try_init(|| async {
                let what = "CMIS: reading the repositories";
                let resp = send(self.authed(self.client.get(&self.settings.url))?, what).await?;
                let repos: BTreeMap<String, Repository> = http::json(resp, what).await?;
                let repo = match &self.settings.repository_id {
                    Some(id) => repos.into_values().find(|r| &r.repository_id == id).ok_or_else(|| {
                        DmsError::Config(format!("CMIS: the service has no repository {id:?} (dms.connector.repository_id)"))
                    })?,
                    None => repos.into_values().next().ok_or_else(|| {
                        DmsError::Malformed(format!("{what}: the service lists no repository"))
                    })?,
                };
                Ok(repo.root_folder_url)
            })
            .await
            .map(String::as_str)
    }

    /// The URL of the object at `path` (from the root), percent-encoded.
    async fn path_url(&self, path: &str) -> Result<String, DmsError> {
        let root = self.root().await?.trim_end_matches('/').to_string();
        let encoded: Vec<String> = path
            .split('/')
            .filter(|p| !p.is_empty())
            .map(|p| {
                percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            })
            .collect();
        if encoded.is_empty() {
            return Ok(root);
        }
        Ok(format!("{root}/{}", encoded.join("/")))
    }

    /// The object at `path`, or none (404 `objectNotFound`).
    async fn object_at(&self, path: &str) -> Result<Option<Object>, DmsError> {
        let url = format!(
            "{}?cmisselector=object&succinct=true",
            self.path_url(path).await?
        );
        let what = format!("CMIS: reading {path}");
        match send(self.authed(self.client.get(&url))?, &what).await {
            Ok(resp) => Ok(Some(http::json(resp, &what).await?)),
            Err(DmsError::Rejected(text)) if text.contains("404") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `cmisaction` form fields for `properties`.
    fn property_fields(properties: &[(String, String)]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, (id, value)) in properties.iter().enumerate() {
            out.push((format!("propertyId[{i}]"), id.clone()));
            out.push((format!("propertyValue[{i}]"), value.clone()));
        }
        out
    }

    /// The configured register-field properties.
    fn mapped(&self, doc: &DmsDocument) -> Vec<(String, String)> {
        self.settings
            .properties
            .iter()
            .map(|(key, id)| (id.clone(), doc.field(key).to_string()))
            .collect()
    }

    async fn create_folder(
        &self,
        parent: &str,
        name: &str,
        extra: Vec<(String, String)>,
    ) -> Result<Object, DmsError> {
        let what = format!("CMIS: creating folder {name} in {parent}");
        let mut props = vec![
            (
                "cmis:objectTypeId".to_string(),
                self.settings.folder_type.clone(),
            ),
            ("cmis:name".to_string(), name.to_string()),
        ];
        props.extend(extra);
        let mut form = vec![
            ("cmisaction".to_string(), "createFolder".to_string()),
            ("succinct".to_string(), "true".to_string()),
        ];
        form.extend(Self::property_fields(&props));
        let req = self
            .authed(self.client.post(self.path_url(parent).await?))?
            .form(&form);
        http::json(send(req, &what).await?, &what).await
    }

    /// The item's folder: found by path (checked to be this item's), or created.
    async fn item_folder(&self, doc: &DmsDocument) -> Result<(String, String), DmsError> {
        let parent = self.settings.folder.trim_end_matches('/').to_string();
        if self.object_at(&parent).await?.is_none() {
            let (above, name) = parent.rsplit_once('/').unwrap_or(("", parent.as_str()));
            let above = if above.is_empty() { "/" } else { above };
            self.create_folder(above, name, Vec::new()).await?;
        }
        let name = folder_name(doc);
        let path = format!("{parent}/{name}");
        let marker = doc.marker();
        let folder = match self.object_at(&path).await? {
            Some(existing) => {
                let description = existing.text("cmis:description").unwrap_or("");
                if description.lines().next() != Some(marker.as_str()) {
                    return Err(DmsError::Rejected(format!(
                        "CMIS: folder {path} exists but is not this item's (its cmis:description does not start with {marker}); rename it"
                    )));
                }
                existing
            }
            None => {
                let mut extra = vec![(
                    "cmis:description".to_string(),
                    format!("{marker}\n{}", doc.title),
                )];
                extra.extend(self.mapped(doc));
                self.create_folder(&parent, &name, extra).await?
            }
        };
        let id = folder
            .text("cmis:objectId")
            .ok_or_else(|| {
                DmsError::Malformed(format!("CMIS: folder {path} has no cmis:objectId"))
            })?
            .to_string();
        Ok((id, path))
    }

    async fn child_names(&self, path: &str) -> Result<Vec<String>, DmsError> {
        let base = self.path_url(path).await?;
        let what = format!("CMIS: listing {path}");
        let mut names = Vec::new();
        let mut skip = 0;
        loop {
            let url =
                format!("{base}?cmisselector=children&succinct=true&maxItems=500&skipCount={skip}");
            let resp = send(self.authed(self.client.get(&url))?, &what).await?;
            let page: Children = http::json(resp, &what).await?;
            let n = page.objects.len();
            names.extend(
                page.objects
                    .iter()
                    .filter_map(|c| c.object.text("cmis:name").map(str::to_string)),
            );
            if !page.has_more_items || n == 0 {
                return Ok(names);
            }
            skip += n;
        }
    }

    fn record(&self, id: String) -> ExternalRecord {
        let url = self
            .settings
            .link_template
            .as_ref()
            .map(|t| t.replace("{id}", &id));
        ExternalRecord { id, url }
    }
}

#[async_trait]
impl Connector for Cmis {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn register(
        &self,
        doc: &DmsDocument,
        _known: Option<&str>,
    ) -> Result<ExternalRecord, DmsError> {
        let (id, path) = self.item_folder(doc).await?;
        let present = self.child_names(&path).await?;
        let folder_url = self.path_url(&path).await?;
        for file in &doc.files {
            if present.contains(&file.name) {
                continue;
            }
            let what = format!("CMIS: uploading {} to {path}", file.name);
            let part = Part::bytes(file.bytes().await?)
                .file_name(file.name.clone())
                .mime_str(
                    file.content_type
                        .split(';')
                        .next()
                        .unwrap_or("application/octet-stream"),
                )
                .map_err(|e| DmsError::File(format!("{what}: {e}")))?;
            let props = vec![
                (
                    "cmis:objectTypeId".to_string(),
                    self.settings.document_type.clone(),
                ),
                ("cmis:name".to_string(), file.name.clone()),
            ];
            let mut form = Form::new()
                .text("cmisaction", "createDocument")
                .text("succinct", "true");
            for (k, v) in Self::property_fields(&props) {
                form = form.text(k, v);
            }
            // The content part comes last, as the specification's examples have it.
            let req = self
                .authed(self.client.post(&folder_url))?
                .multipart(form.part("content", part));
            send(req, &what).await?;
        }
        Ok(self.record(id))
    }

    async fn update(&self, doc: &DmsDocument, id: &str) -> Result<ExternalRecord, DmsError> {
        let mut props = vec![(
            "cmis:description".to_string(),
            format!("{}\n{}", doc.marker(), doc.title),
        )];
        props.extend(self.mapped(doc));
        let mut form = vec![
            ("cmisaction".to_string(), "update".to_string()),
            ("objectId".to_string(), id.to_string()),
            ("succinct".to_string(), "true".to_string()),
        ];
        form.extend(Self::property_fields(&props));
        let what = format!("CMIS: updating folder {id}");
        let root = self.root().await?.to_string();
        let req = self.authed(self.client.post(&root))?.form(&form);
        send(req, &what).await?;
        Ok(self.record(id.to_string()))
    }

    async fn health(&self) -> Result<(), DmsError> {
        let what = "CMIS: reading the repositories";
        send(self.authed(self.client.get(&self.settings.url))?, what).await?;
        self.root().await.map(|_| ())
    }
}

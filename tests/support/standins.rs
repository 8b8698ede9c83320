//! Local stand-ins for Paperless-ngx and a CMIS 1.1 browser-binding
//! repository, implementing the request and answer shapes their published
//! API documents give (Paperless: `post_document`, `tasks`, `documents`
//! with `custom_field_query`, `custom_fields`; CMIS: repository infos,
//! `cmisselector=object|children`, `cmisaction=createFolder|createDocument|update`).
//! They are not the products: the connectors' tests say so.
//!
//! Each can be told to fail: answer 503 for a while, lose the answer to an
//! upload it did accept, or answer something that is not JSON.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Value, json};

/// Failures a stand-in serves on purpose.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Requests still to answer 503.
    pub unavailable: u32,
    /// The next accepted upload is stored but answered 502.
    pub lose_next_upload_answer: bool,
    /// Answer 200 with an HTML page instead of JSON.
    pub not_json: bool,
}

fn take_fault(faults: &Mutex<Faults>) -> Option<Response> {
    let mut f = faults.lock().expect("faults");
    if f.not_json {
        return Some((StatusCode::OK, "<html>proxy login</html>").into_response());
    }
    if f.unavailable > 0 {
        f.unavailable -= 1;
        return Some((StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response());
    }
    None
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

// ---------------------------------------------------------------- Paperless

pub const PAPERLESS_TOKEN: &str = "paperless-test-token";

/// A Paperless document as the stand-in keeps it.
#[derive(Debug, Clone)]
pub struct PaperlessDocument {
    pub id: u64,
    pub title: String,
    pub created: String,
    pub file_name: String,
    pub content: Vec<u8>,
    /// Custom field id → value.
    pub fields: BTreeMap<u64, String>,
}

#[derive(Default)]
struct PaperlessState {
    fields: Vec<(u64, String)>,
    documents: Vec<PaperlessDocument>,
    /// task id → (polls left before it finishes, result).
    tasks: BTreeMap<String, (u32, Value)>,
    uploads: u32,
}

/// The Paperless-ngx stand-in.
#[derive(Clone)]
pub struct Paperless {
    pub url: String,
    state: Arc<Mutex<PaperlessState>>,
    pub faults: Arc<Mutex<Faults>>,
}

impl Paperless {
    pub async fn start() -> Paperless {
        let state = Arc::new(Mutex::new(PaperlessState::default()));
        let faults = Arc::new(Mutex::new(Faults::default()));
        let shared = (state.clone(), faults.clone());
        let app = Router::new()
            .route("/api/custom_fields/", get(p_fields).post(p_create_field))
            .route("/api/documents/", get(p_documents))
            .route("/api/documents/post_document/", post(p_post_document))
            .route("/api/documents/{id}/", patch(p_patch_document))
            .route("/api/tasks/", get(p_tasks))
            .with_state(shared);
        Paperless {
            url: serve(app).await,
            state,
            faults,
        }
    }

    pub fn documents(&self) -> Vec<PaperlessDocument> {
        self.state.lock().expect("state").documents.clone()
    }

    /// Uploads received (accepted or refused as duplicates).
    pub fn uploads(&self) -> u32 {
        self.state.lock().expect("state").uploads
    }

    /// A document's custom fields by name.
    pub fn fields_of(&self, doc: &PaperlessDocument) -> BTreeMap<String, String> {
        let state = self.state.lock().expect("state");
        doc.fields
            .iter()
            .filter_map(|(id, v)| {
                let name = state.fields.iter().find(|(f, _)| f == id)?.1.clone();
                Some((name, v.clone()))
            })
            .collect()
    }

    pub fn settings_toml(&self, token: &str) -> String {
        format!(
            "retry_max_seconds = 1\n[connector]\ntype = \"paperless\"\nurl = \"{}\"\ntoken = \"{token}\"\nconsume_timeout_seconds = 20\n",
            self.url
        )
    }
}

type PaperlessShared = (Arc<Mutex<PaperlessState>>, Arc<Mutex<Faults>>);

fn paperless_auth(headers: &HeaderMap) -> Option<Response> {
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Token {PAPERLESS_TOKEN}"));
    (!ok).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "detail": "Invalid token." })),
        )
            .into_response()
    })
}

fn page(results: Vec<Value>) -> Json<Value> {
    Json(json!({ "count": results.len(), "next": null, "previous": null, "results": results }))
}

async fn p_fields(State((state, faults)): State<PaperlessShared>, headers: HeaderMap) -> Response {
    if let Some(r) = paperless_auth(&headers).or_else(|| take_fault(&faults)) {
        return r;
    }
    let s = state.lock().expect("state");
    let results = s
        .fields
        .iter()
        .map(|(id, name)| json!({ "id": id, "name": name, "data_type": "string" }))
        .collect();
    page(results).into_response()
}

async fn p_create_field(
    State((state, faults)): State<PaperlessShared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = paperless_auth(&headers).or_else(|| take_fault(&faults)) {
        return r;
    }
    let mut s = state.lock().expect("state");
    let name = body["name"].as_str().unwrap_or_default().to_string();
    if s.fields.iter().any(|(_, n)| *n == name) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "name": ["custom field with this name already exists."] })),
        )
            .into_response();
    }
    let id = s.fields.len() as u64 + 1;
    s.fields.push((id, name.clone()));
    (
        StatusCode::CREATED,
        Json(json!({ "id": id, "name": name, "data_type": body["data_type"] })),
    )
        .into_response()
}

fn paperless_doc_json(d: &PaperlessDocument) -> Value {
    let fields: Vec<Value> = d
        .fields
        .iter()
        .map(|(f, v)| json!({ "field": f, "value": v }))
        .collect();
    json!({ "id": d.id, "title": d.title, "created": d.created, "original_file_name": d.file_name, "custom_fields": fields })
}

async fn p_documents(
    State((state, faults)): State<PaperlessShared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = paperless_auth(&headers).or_else(|| take_fault(&faults)) {
        return r;
    }
    let s = state.lock().expect("state");
    // custom_field_query = ["<name or id>", "exact", "<value>"]
    let filter: Option<(String, String)> = q.get("custom_field_query").and_then(|raw| {
        let v: Value = serde_json::from_str(raw).ok()?;
        let a = v.as_array()?;
        (a.get(1)?.as_str()? == "exact").then(|| {
            (
                a[0].as_str().unwrap_or_default().to_string(),
                a[2].as_str().unwrap_or_default().to_string(),
            )
        })
    });
    let results = s
        .documents
        .iter()
        .filter(|d| match &filter {
            None => true,
            Some((name, value)) => s
                .fields
                .iter()
                .find(|(_, n)| n == name)
                .is_some_and(|(id, _)| d.fields.get(id) == Some(value)),
        })
        .map(paperless_doc_json)
        .collect();
    page(results).into_response()
}

async fn p_post_document(
    State((state, faults)): State<PaperlessShared>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    if let Some(r) = paperless_auth(&headers).or_else(|| take_fault(&faults)) {
        return r;
    }
    let (mut title, mut created, mut file_name, mut content) =
        (String::new(), String::new(), String::new(), None);
    while let Ok(Some(field)) = form.next_field().await {
        match field.name().unwrap_or_default() {
            "document" => {
                file_name = field.file_name().unwrap_or_default().to_string();
                content = field.bytes().await.ok().map(|b| b.to_vec());
            }
            "title" => title = field.text().await.unwrap_or_default(),
            "created" => created = field.text().await.unwrap_or_default(),
            _ => {}
        }
    }
    let Some(content) = content else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "document": ["No file was submitted."] })),
        )
            .into_response();
    };
    let mut s = state.lock().expect("state");
    s.uploads += 1;
    let task_id = uuid::Uuid::now_v7().to_string();
    // Paperless refuses a file it has already (by checksum).
    let result = match s.documents.iter().find(|d| d.content == content) {
        Some(d) => json!({
            "status": "FAILURE",
            "result": format!("Not consuming {file_name}: It is a duplicate of {} (#{}).", d.title, d.id),
            "related_document": null,
        }),
        None => {
            let id = s.documents.len() as u64 + 1;
            s.documents.push(PaperlessDocument {
                id,
                title,
                created,
                file_name,
                content,
                fields: BTreeMap::new(),
            });
            json!({ "status": "SUCCESS", "result": format!("Success. New document id {id} created"), "related_document": id.to_string() })
        }
    };
    s.tasks.insert(task_id.clone(), (1, result));
    drop(s);
    let mut f = faults.lock().expect("faults");
    if f.lose_next_upload_answer {
        f.lose_next_upload_answer = false;
        return (StatusCode::BAD_GATEWAY, "upstream connection reset").into_response();
    }
    Json(Value::String(task_id)).into_response()
}

async fn p_tasks(
    State((state, faults)): State<PaperlessShared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = paperless_auth(&headers).or_else(|| take_fault(&faults)) {
        return r;
    }
    let mut s = state.lock().expect("state");
    let Some(id) = q.get("task_id") else {
        return Json(json!([])).into_response();
    };
    let Some((polls_left, result)) = s.tasks.get_mut(id) else {
        return Json(json!([])).into_response();
    };
    let mut task = json!({ "task_id": id, "task_file_name": "upload", "type": "file", "status": "STARTED", "result": null, "related_document": null });
    if *polls_left > 0 {
        *polls_left -= 1;
    } else if let (Some(t), Some(r)) = (task.as_object_mut(), result.as_object()) {
        t.extend(r.clone());
    }
    Json(json!([task])).into_response()
}

async fn p_patch_document(
    State((state, faults)): State<PaperlessShared>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = paperless_auth(&headers).or_else(|| take_fault(&faults)) {
        return r;
    }
    let mut s = state.lock().expect("state");
    let Some(doc) = s.documents.iter_mut().find(|d| d.id == id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "detail": "No Document matches the given query." })),
        )
            .into_response();
    };
    if let Some(t) = body["title"].as_str() {
        doc.title = t.to_string();
    }
    if let Some(fields) = body["custom_fields"].as_array() {
        doc.fields = fields
            .iter()
            .filter_map(|f| Some((f["field"].as_u64()?, f["value"].as_str()?.to_string())))
            .collect();
    }
    Json(paperless_doc_json(doc)).into_response()
}

// --------------------------------------------------------------------- CMIS

pub const CMIS_USER: &str = "pietura";
pub const CMIS_PASSWORD: &str = "cmis-pass";

/// A CMIS object as the stand-in keeps it, by path.
#[derive(Debug, Clone)]
pub struct CmisObject {
    pub id: String,
    pub folder: bool,
    pub properties: BTreeMap<String, String>,
    pub content: Vec<u8>,
}

#[derive(Default)]
struct CmisState {
    /// Path ("/Pietura/2026-1") → object; "/" is the root.
    objects: BTreeMap<String, CmisObject>,
    creates: u32,
}

/// The CMIS browser-binding stand-in (repository `repo1`).
#[derive(Clone)]
pub struct Cmis {
    pub url: String,
    state: Arc<Mutex<CmisState>>,
    pub faults: Arc<Mutex<Faults>>,
}

type CmisShared = (Arc<Mutex<CmisState>>, Arc<Mutex<Faults>>, String);

impl Cmis {
    pub async fn start() -> Cmis {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let mut objects = BTreeMap::new();
        objects.insert(
            "/".to_string(),
            CmisObject {
                id: "root".into(),
                folder: true,
                properties: BTreeMap::new(),
                content: Vec::new(),
            },
        );
        let state = Arc::new(Mutex::new(CmisState {
            objects,
            creates: 0,
        }));
        let faults = Arc::new(Mutex::new(Faults::default()));
        let shared: CmisShared = (state.clone(), faults.clone(), base.clone());
        let app = Router::new()
            .route("/cmis/browser", get(c_repositories))
            .route(
                "/cmis/browser/repo1/root",
                get(c_get_root).post(c_post_root),
            )
            .route("/cmis/browser/repo1/root/{*path}", get(c_get).post(c_post))
            .with_state(shared);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Cmis {
            url: format!("{base}/cmis/browser"),
            state,
            faults,
        }
    }

    /// Objects under `prefix` (paths).
    pub fn objects_under(&self, prefix: &str) -> BTreeMap<String, CmisObject> {
        self.state
            .lock()
            .expect("state")
            .objects
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(p, o)| (p.clone(), o.clone()))
            .collect()
    }

    /// createFolder and createDocument calls that created something.
    pub fn creates(&self) -> u32 {
        self.state.lock().expect("state").creates
    }

    pub fn settings_toml(&self, password: &str) -> String {
        format!(
            "retry_max_seconds = 1\n[connector]\ntype = \"cmis\"\nurl = \"{}\"\nusername = \"{CMIS_USER}\"\npassword = \"{password}\"\n\
             folder = \"/Pietura\"\nlink_template = \"https://dms.example.lv/share/page/folder-details?nodeRef={{id}}\"\n\
             [connector.properties]\nregistration_number = \"pietura:registrationNumber\"\nunit = \"pietura:unit\"\ndeadline = \"pietura:deadline\"\n",
            self.url
        )
    }
}

fn cmis_auth(headers: &HeaderMap) -> Option<Response> {
    use base64::Engine as _;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CMIS_USER}:{CMIS_PASSWORD}"))
    );
    let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
    (!ok).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "exception": "permissionDenied", "message": "Unauthorized" })),
        )
            .into_response()
    })
}

fn cmis_error(status: StatusCode, exception: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "exception": exception, "message": message })),
    )
        .into_response()
}

fn succinct(o: &CmisObject) -> Value {
    let mut props = serde_json::Map::new();
    props.insert("cmis:objectId".into(), json!(o.id));
    props.insert(
        "cmis:baseTypeId".into(),
        json!(if o.folder {
            "cmis:folder"
        } else {
            "cmis:document"
        }),
    );
    for (k, v) in &o.properties {
        props.insert(k.clone(), json!(v));
    }
    if !o.folder {
        props.insert("cmis:contentStreamLength".into(), json!(o.content.len()));
    }
    json!({ "succinctProperties": props })
}

async fn c_repositories(
    State((_, faults, base)): State<CmisShared>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = cmis_auth(&headers).or_else(|| take_fault(&faults)) {
        return r;
    }
    Json(json!({ "repo1": {
        "repositoryId": "repo1",
        "repositoryName": "Stand-in",
        "cmisVersionSupported": "1.1",
        "repositoryUrl": format!("{base}/cmis/browser/repo1"),
        "rootFolderUrl": format!("{base}/cmis/browser/repo1/root"),
    }}))
    .into_response()
}

async fn c_get_root(
    state: State<CmisShared>,
    headers: HeaderMap,
    query: Query<BTreeMap<String, String>>,
) -> Response {
    c_get(state, headers, Path(String::new()), query).await
}

async fn c_get(
    State((state, faults, _)): State<CmisShared>,
    headers: HeaderMap,
    Path(path): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = cmis_auth(&headers).or_else(|| take_fault(&faults)) {
        return r;
    }
    let path = format!("/{}", path.trim_matches('/'));
    let s = state.lock().expect("state");
    let Some(object) = s.objects.get(&path) else {
        return cmis_error(
            StatusCode::NOT_FOUND,
            "objectNotFound",
            &format!("{path} not found"),
        );
    };
    match q.get("cmisselector").map(String::as_str) {
        Some("children") => {
            let prefix = if path == "/" {
                "/".to_string()
            } else {
                format!("{path}/")
            };
            let children: Vec<Value> = s
                .objects
                .iter()
                .filter(|(p, _)| {
                    p.starts_with(&prefix)
                        && p.len() > prefix.len()
                        && !p[prefix.len()..].contains('/')
                })
                .map(|(_, o)| json!({ "object": succinct(o) }))
                .collect();
            let skip: usize = q.get("skipCount").and_then(|v| v.parse().ok()).unwrap_or(0);
            let max: usize = q
                .get("maxItems")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100);
            let page: Vec<Value> = children.iter().skip(skip).take(max).cloned().collect();
            let more = skip + page.len() < children.len();
            Json(json!({ "objects": page, "hasMoreItems": more, "numItems": children.len() }))
                .into_response()
        }
        _ => Json(succinct(object)).into_response(),
    }
}

async fn c_post_root(state: State<CmisShared>, headers: HeaderMap, req: Request) -> Response {
    c_post(state, headers, Path(String::new()), req).await
}

/// The form fields and the content part of a browser-binding POST.
async fn read_post(
    req: Request,
) -> Result<(BTreeMap<String, String>, Option<(String, Vec<u8>)>), Response> {
    let multipart = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/"));
    let mut fields = BTreeMap::new();
    let mut content = None;
    if multipart {
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(IntoResponse::into_response)?;
        while let Ok(Some(field)) = form.next_field().await {
            let name = field.name().unwrap_or_default().to_string();
            if name == "content" {
                let file = field.file_name().unwrap_or_default().to_string();
                content = Some((
                    file,
                    field.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
                ));
            } else {
                fields.insert(name, field.text().await.unwrap_or_default());
            }
        }
    } else {
        let axum::Form(pairs) = axum::Form::<Vec<(String, String)>>::from_request(req, &())
            .await
            .map_err(IntoResponse::into_response)?;
        fields.extend(pairs);
    }
    Ok((fields, content))
}

/// `propertyId[i]` / `propertyValue[i]` pairs.
fn properties_of(fields: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for i in 0.. {
        let Some(id) = fields.get(&format!("propertyId[{i}]")) else {
            break;
        };
        out.insert(
            id.clone(),
            fields
                .get(&format!("propertyValue[{i}]"))
                .cloned()
                .unwrap_or_default(),
        );
    }
    out
}

async fn c_post(
    State((state, faults, _)): State<CmisShared>,
    headers: HeaderMap,
    Path(path): Path<String>,
    req: Request,
) -> Response {
    if let Some(r) = cmis_auth(&headers).or_else(|| take_fault(&faults)) {
        return r;
    }
    let (fields, content) = match read_post(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let parent = format!("/{}", path.trim_matches('/'));
    let mut s = state.lock().expect("state");
    let props = properties_of(&fields);
    match fields.get("cmisaction").map(String::as_str) {
        Some(action @ ("createFolder" | "createDocument")) => {
            if !s.objects.get(&parent).is_some_and(|o| o.folder) {
                return cmis_error(
                    StatusCode::NOT_FOUND,
                    "objectNotFound",
                    &format!("folder {parent} not found"),
                );
            }
            let Some(name) = props.get("cmis:name").cloned() else {
                return cmis_error(
                    StatusCode::BAD_REQUEST,
                    "constraint",
                    "cmis:name is required",
                );
            };
            let path = if parent == "/" {
                format!("/{name}")
            } else {
                format!("{parent}/{name}")
            };
            if s.objects.contains_key(&path) {
                return cmis_error(
                    StatusCode::CONFLICT,
                    "nameConstraintViolation",
                    &format!("{name} exists"),
                );
            }
            let folder = action == "createFolder";
            if !folder && content.is_none() {
                return cmis_error(
                    StatusCode::BAD_REQUEST,
                    "constraint",
                    "content stream required",
                );
            }
            let object = CmisObject {
                id: uuid::Uuid::now_v7().to_string(),
                folder,
                properties: props,
                content: content.map(|c| c.1).unwrap_or_default(),
            };
            let answer = succinct(&object);
            s.objects.insert(path, object);
            s.creates += 1;
            drop(s);
            let mut f = faults.lock().expect("faults");
            if !folder && f.lose_next_upload_answer {
                f.lose_next_upload_answer = false;
                return (StatusCode::BAD_GATEWAY, "upstream connection reset").into_response();
            }
            (StatusCode::CREATED, Json(answer)).into_response()
        }
        Some("update") => {
            let Some(id) = fields.get("objectId") else {
                return cmis_error(
                    StatusCode::BAD_REQUEST,
                    "invalidArgument",
                    "objectId is required",
                );
            };
            let Some(object) = s.objects.values_mut().find(|o| &o.id == id) else {
                return cmis_error(StatusCode::NOT_FOUND, "objectNotFound", id);
            };
            object.properties.extend(props);
            Json(succinct(object)).into_response()
        }
        other => cmis_error(
            StatusCode::BAD_REQUEST,
            "notSupported",
            &format!("cmisaction {other:?}"),
        ),
    }
}

//! The web desk from a test: accounts made as `pietura user add` makes
//! them, a signed-in HTTP client with its cookie jar (for the desk's
//! HTTP-level checks), and an e-mail item with an HTML original and an
//! attachment, handed to the daemon as the IMAP channel would.

use pietura::message::{AttachmentRef, ChannelKind, ChannelRef, IntakeMessage};
use pietura::registry::ItemSummary;

use super::TestEnv;

pub const OFFICER: (&str, &str) = ("liga", "liga-parole-2026");
pub const ADMIN: (&str, &str) = ("admins", "admina-parole-2026");
pub const READER: (&str, &str) = ("lasitajs", "lasitaja-parole-2026");

/// A rule the administrator adds in the editor tests: coffee to Kanceleja.
pub const COFFEE_RULE: &str = "\n[[rule]]\nid = \"kanceleja-kafija\"\npriority = 120\ndescription = \"Kafija\"\n[rule.when]\nkeywords = [\"kafij*\"]\n[rule.then]\nunit = \"kanceleja\"\nservice = \"iesniegumi\"\n";

/// Adds the officer (Līga Ozola), the administrator and a read-only account.
pub async fn add_accounts(env: &TestEnv) {
    for ((user, password), (name, role)) in [OFFICER, ADMIN, READER].into_iter().zip([
        ("Līga Ozola", "officer"),
        ("Admins Kārlis", "admin"),
        ("Lasītājs", "readonly"),
    ]) {
        pietura::desk::auth::add_or_update_user(&env.daemon.registry, user, name, role, password)
            .await
            .unwrap_or_else(|e| panic!("account {user}: {e}"));
    }
}

/// A hostile HTML mail: a script, an event handler, a remote image, a
/// javascript: link; its text says "Labdien" so the page shows it.
pub const HOSTILE_EML: &str = "From: \"Ļaunais Sūtītājs\" <launais@example.lv>\r\n\
To: pasts@novads.example.lv\r\n\
Subject: =?UTF-8?Q?Kait=C4=ABgs_HTML?=\r\n\
Message-ID: <hostile-1@example.lv>\r\n\
Date: Mon, 30 Nov 2026 08:00:00 +0200\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Labdien, pielikumā dokuments.\r\n\
--b1\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<html><body><p id=\"greeting\">Labdien, <b>pielikum\u{0101} dokuments</b>.</p>\
<script>window.__pwned = 1; document.title = 'PWNED';</script>\
<img src=\"http://tracker.invalid/p.gif\" onerror=\"window.__pwned = 2\">\
<a id=\"evil-link\" href=\"javascript:window.__pwned=3\">klikšķini</a>\
<p onmouseover=\"window.__pwned = 4\">Ar cieņu</p></body></html>\r\n\
--b1--\r\n";

/// Hands the hostile mail (with a PDF attachment) to the daemon as the
/// e-mail channel would, and waits until it is registered.
pub async fn hostile_email_item(env: &TestEnv) -> ItemSummary {
    let blobs = pietura::blobs::BlobStore::open(env.blob_dir()).expect("blob store");
    let raw = blobs.put(HOSTILE_EML.as_bytes()).await.expect("store mail");
    let pdf = blobs
        .put(b"%PDF-1.4\n% a citizen's attachment\n")
        .await
        .expect("store attachment");
    let mut msg = IntakeMessage::new(
        ChannelRef {
            kind: ChannelKind::Email,
            instance: "epasts".into(),
        },
        format!("email:test:{}", raw.sha256),
        "Labdien, pielikumā dokuments.".into(),
    );
    msg.subject = Some("Kaitīgs HTML".into());
    msg.sender.name = Some("Ļaunais Sūtītājs".into());
    msg.sender.email = Some("launais@example.lv".into());
    msg.attachments = vec![AttachmentRef {
        sha256: pdf.sha256.clone(),
        filename: "iesniegums <script>.pdf".into(),
        content_type: "application/pdf".into(),
        size: pdf.size,
    }];
    msg.metadata.insert(
        "email".into(),
        serde_json::json!({
            "message_id": "<hostile-1@example.lv>",
            "original": { "sha256": raw.sha256, "size": raw.size, "content_type": "message/rfc822" },
        }),
    );
    pietura::bus::publish_intake(env.daemon.bus.as_ref(), &msg)
        .await
        .expect("publish the mail");
    env.registered(&msg.id.to_string()).await
}

/// A signed-in client (cookies kept, redirects not followed).
pub struct DeskClient {
    pub http: reqwest::Client,
    pub base: String,
}

/// The value of the first hidden `name` field on a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field on the page:\n{page}"))
        + marker.len();
    page[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_string()
}

impl DeskClient {
    /// A client with a fresh cookie jar; not signed in yet.
    pub fn new(env: &TestEnv) -> DeskClient {
        DeskClient {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("HTTP client"),
            base: env.base.clone(),
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub async fn page(&self, path: &str) -> (u16, String) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        (status, r.text().await.expect("page text"))
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String, Option<String>) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (status, r.text().await.expect("response text"), location)
    }

    /// Signs in; returns the status of the sign-in POST (303 on success).
    pub async fn sign_in(&self, user: &str, password: &str) -> u16 {
        let (_, login) = self.page("/login").await;
        let csrf = hidden(&login, "csrf");
        self.post(
            "/login",
            &[("username", user), ("password", password), ("csrf", &csrf)],
        )
        .await
        .0
    }

    /// Posts a decision on `item` as of `revision`, with the session's token.
    pub async fn decide(
        &self,
        item: &str,
        revision: i64,
        fields: &[(&str, &str)],
    ) -> (u16, String, Option<String>) {
        let csrf = self.csrf().await;
        let revision = revision.to_string();
        let mut form = vec![("csrf", csrf.as_str()), ("revision", revision.as_str())];
        form.extend_from_slice(fields);
        self.post(&format!("/desk/items/{item}/decide"), &form)
            .await
    }

    /// The session's CSRF token, from a desk page.
    pub async fn csrf(&self) -> String {
        let (status, page) = self.page("/desk").await;
        assert_eq!(status, 200, "{page}");
        hidden(&page, "csrf")
    }
}

/// A scan or photo attached at the counter: (file name, content type, bytes).
pub type CounterFile<'a> = (&'a str, &'a str, Vec<u8>);

impl DeskClient {
    /// Registers a counter or phone submission through the desk form (its
    /// CSRF token and one-time id taken from the form page); returns the
    /// tracking id the form redirects to.
    pub async fn counter_submission(
        &self,
        fields: &[(&str, &str)],
        file: Option<CounterFile<'_>>,
    ) -> String {
        let (status, page) = self.page("/desk/counter").await;
        assert_eq!(status, 200, "{page}");
        let mut form = reqwest::multipart::Form::new()
            .text("csrf", hidden(&page, "csrf"))
            .text("nonce", hidden(&page, "nonce"));
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        if let Some((name, content_type, bytes)) = file {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(bytes)
                    .file_name(name.to_string())
                    .mime_str(content_type)
                    .expect("content type"),
            );
        }
        let r = self
            .http
            .post(format!("{}/desk/counter", self.base))
            .multipart(form)
            .send()
            .await
            .expect("POST /desk/counter");
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = r.text().await.unwrap_or_default();
        assert_eq!(status, 303, "the counter form was refused:\n{text}");
        location
            .and_then(|l| l.strip_prefix("/desk/counter/").map(str::to_string))
            .unwrap_or_else(|| panic!("no redirect to the registered item:\n{text}"))
    }
}

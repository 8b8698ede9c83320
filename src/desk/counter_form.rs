//! The counter and phone desk form: an officer registers a visitor's or
//! caller's submission (sender, contact, address, phone, e-mail, subject,
//! text, service, "the visitor signed the paper"), with the scanned paper or
//! a photo attached into the blob store like any door's attachment (the scan
//! channel's upload would register the paper as a letter of its own). The
//! message is made and handed on by [`crate::channels::counter`]; the page
//! then waits for the registration number and shows it with the status link
//! for the visitor, and prints the visitor's receipt (PDF: number, date,
//! deadline, status link; laid out by [`crate::print`]).

use askama::Template;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Session;
use tracing::Instrument;

use super::auth::{Role, viewer_as};
use super::i18n::Lang;
use super::review::local_time;
use super::{Nav, html, status_page};
use crate::blobs::BlobError;
use crate::channels::counter::{CounterEntry, hand_on, is_desk_kind, message};
use crate::http::HttpState;
use crate::message::{AttachmentRef, ChannelKind, display_filename};

/// The largest scan or photo attached at the counter.
pub const MAX_SCAN_BYTES: u64 = 25 * 1024 * 1024;

#[derive(Template)]
#[template(path = "desk/counter.html")]
struct CounterPage {
    l: Lang,
    nav: Nav,
    /// The form's one-time id: the item's tracking id.
    nonce: String,
    /// (id, name) of every service, by name.
    services: Vec<(String, String)>,
    service: String,
    kind: String,
    entry: CounterEntry,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "desk/counter_done.html")]
struct DonePage {
    l: Lang,
    nav: Nav,
    tracking_id: String,
    registered: bool,
    number: String,
    received: String,
    due: String,
    status_url: String,
}

/// `?service=` pre-selects the service (from the service search); `?kind=phone`.
#[derive(Deserialize)]
pub struct CounterQuery {
    lang: Option<String>,
    service: Option<String>,
    kind: Option<String>,
}

fn services(s: &HttpState, l: Lang) -> Vec<(String, String)> {
    let rules = s.rules.load();
    let mut list: Vec<(String, String)> = rules
        .services
        .values()
        .map(|svc| (svc.id.clone(), svc.name_in(l == Lang::En).to_string()))
        .collect();
    list.sort_by(|a, b| a.1.cmp(&b.1));
    list
}

/// `GET /desk/counter`.
pub async fn form(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<CounterQuery>,
) -> Response {
    let v = match viewer_as(&s, &session, &headers, q.lang.as_deref(), Role::Officer).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    html(CounterPage {
        l: v.lang,
        services: services(&s, v.lang),
        nav: Nav::of(&v, "/desk/counter"),
        nonce: uuid::Uuid::now_v7().to_string(),
        service: q.service.unwrap_or_default(),
        kind: match q.kind.as_deref() {
            Some("phone") => "phone".into(),
            _ => "counter".into(),
        },
        entry: CounterEntry::default(),
        error: None,
    })
}

/// The form as read from its multipart body.
#[derive(Default)]
struct Posted {
    csrf: String,
    nonce: String,
    kind: String,
    service: String,
    entry: CounterEntry,
}

/// Why a posted form is not handed on.
enum Refusal {
    /// The officer's mistake, shown on the form again (catalog key).
    Form(&'static str),
    /// The body broke off or was malformed.
    BadRequest(String),
    /// The blob store failed.
    Unavailable(BlobError),
}

async fn read_form(s: &HttpState, mut mp: Multipart) -> Result<Posted, Refusal> {
    let mut p = Posted::default();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(Refusal::BadRequest(e.to_string())),
        };
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let filename = display_filename(field.file_name().unwrap_or(""));
            let content_type = field.content_type().map(str::to_string).unwrap_or_else(|| {
                mime_guess::from_path(&filename)
                    .first_or_octet_stream()
                    .to_string()
            });
            let stored = store(s, field).await?;
            if let Some(blob) = stored.filter(|_| !filename.is_empty()) {
                p.entry.attachment = Some(AttachmentRef {
                    sha256: blob.sha256,
                    filename,
                    content_type,
                    size: blob.size,
                });
            }
            continue;
        }
        let value = field
            .text()
            .await
            .map_err(|e| Refusal::BadRequest(e.to_string()))?;
        let e = &mut p.entry;
        match name.as_str() {
            "csrf" => p.csrf = value,
            "nonce" => p.nonce = value,
            "kind" => p.kind = value,
            "service" => p.service = value,
            "sender_name" => e.sender_name = value,
            "contact" => e.contact = value,
            "address" => e.postal_address = value,
            "phone" => e.phone = value,
            "email" => e.email = value,
            "personal_code" => e.personal_code = value,
            "subject" => e.subject = value,
            "text" => e.text = value,
            "signed" => e.signed_paper = value == "1",
            _ => {}
        }
    }
    Ok(p)
}

/// Streams an uploaded file into the blob store; `None` for an empty part
/// (no file chosen).
async fn store(
    s: &HttpState,
    mut field: axum::extract::multipart::Field<'_>,
) -> Result<Option<crate::blobs::StoredBlob>, Refusal> {
    let mut w = s
        .blobs
        .writer(MAX_SCAN_BYTES)
        .await
        .map_err(Refusal::Unavailable)?;
    let mut any = false;
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                any |= !chunk.is_empty();
                match w.write(&chunk).await {
                    Err(BlobError::TooLarge { .. }) => {
                        return Err(Refusal::Form("counter.too_large"));
                    }
                    Err(e) => return Err(Refusal::Unavailable(e)),
                    Ok(()) => {}
                }
            }
            Ok(None) => break,
            Err(e) => return Err(Refusal::BadRequest(e.to_string())),
        }
    }
    if !any {
        return Ok(None);
    }
    w.finish().await.map(Some).map_err(Refusal::Unavailable)
}

/// `POST /desk/counter`: registers the submission, then shows its number.
pub async fn register(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    mp: Multipart,
) -> Response {
    let v = match viewer_as(&s, &session, &headers, None, Role::Officer).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let unavailable = |why: &str| {
        tracing::error!("counter submission not handed on: {why}");
        status_page(
            StatusCode::SERVICE_UNAVAILABLE,
            v.lang,
            v.lang.t("error.unavailable_title"),
            v.lang.t("error.unavailable"),
        )
    };
    let (mut posted, problem) = match read_form(&s, mp).await {
        Ok(p) => (p, None),
        Err(Refusal::Form(key)) => (Posted::default(), Some(key)),
        Err(Refusal::BadRequest(why)) => return (StatusCode::BAD_REQUEST, why).into_response(),
        Err(Refusal::Unavailable(e)) => return unavailable(&e.to_string()),
    };
    if problem.is_none()
        && let Err(refused) = v.check_csrf(&posted.csrf)
    {
        return refused.into();
    }
    let kind = ChannelKind::parse(&posted.kind).filter(|k| is_desk_kind(*k));
    let id = uuid::Uuid::parse_str(&posted.nonce).ok();
    let problem = problem
        .or_else(|| {
            posted
                .entry
                .text
                .trim()
                .is_empty()
                .then_some("counter.missing_text")
        })
        .or_else(|| {
            let code = posted.entry.personal_code.trim();
            (!code.is_empty() && crate::personal_code::parse(code).is_none())
                .then_some("counter.bad_personal_code")
        });
    let (Some(kind), Some(id), None) = (kind, id, problem) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            html(CounterPage {
                l: v.lang,
                services: services(&s, v.lang),
                nav: Nav::of(&v, "/desk/counter"),
                nonce: uuid::Uuid::now_v7().to_string(),
                service: posted.service,
                kind: posted.kind,
                error: Some(
                    v.lang
                        .t(problem.unwrap_or("counter.missing_text"))
                        .to_string(),
                ),
                entry: posted.entry,
            }),
        )
            .into_response();
    };
    posted.entry.service = s
        .rules
        .load()
        .services
        .contains_key(&posted.service)
        .then_some(posted.service);
    posted.entry.officer = v.actor();
    let msg = message(kind, id, &posted.entry);
    let span = tracing::info_span!("item", id = %msg.id, channel = kind.as_str());
    match hand_on(s.bus.as_ref(), &msg).instrument(span.clone()).await {
        Ok(()) => {
            tracing::info!(parent: &span, signed = msg.formal_status.is_some(), "registered at the desk, handed on");
            Redirect::to(&format!("/desk/counter/{id}")).into_response()
        }
        Err(crate::bus::BusError::Refused(e)) => {
            (StatusCode::BAD_REQUEST, e.to_string()).into_response()
        }
        Err(e) => unavailable(&e.to_string()),
    }
}

/// `GET /desk/counter/{id}`: the registration number once the engine has
/// registered the item (the page refreshes itself until then).
pub async fn done(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let v = match viewer_as(&s, &session, &headers, None, Role::Officer).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if uuid::Uuid::parse_str(&id).is_err() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let item = match s.registry.find_by_message(&id).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("counter item lookup failed: {e}");
            None
        }
    };
    html(DonePage {
        l: v.lang,
        nav: Nav::of(&v, "/desk/counter"),
        status_url: format!("{}/status/{id}", s.desk.public_url),
        registered: item.is_some(),
        number: item
            .as_ref()
            .map(|i| i.registration_number.clone())
            .unwrap_or_default(),
        received: item
            .as_ref()
            .map(|i| local_time(&i.received_at))
            .unwrap_or_default(),
        due: item
            .as_ref()
            .and_then(|i| i.due().map(str::to_string))
            .unwrap_or_default(),
        tracking_id: id,
    })
}

/// `GET /desk/counter/{id}/receipt.pdf`: the visitor's receipt for a
/// registered item (404 until it is registered).
pub async fn receipt(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let v = match viewer_as(&s, &session, &headers, None, Role::Officer).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let unavailable = |why: String| {
        tracing::error!("counter receipt not printed: {why}");
        status_page(
            StatusCode::SERVICE_UNAVAILABLE,
            v.lang,
            v.lang.t("error.unavailable_title"),
            v.lang.t("error.unavailable"),
        )
    };
    if uuid::Uuid::parse_str(&id).is_err() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let item = match s.registry.find_by_message(&id).await {
        Ok(Some(i)) => i,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(e) => return unavailable(e.to_string()),
    };
    let lines = ReceiptLines {
        number: item.registration_number.clone(),
        received: local_time(&item.received_at),
        due: item.due().unwrap_or("—").to_string(),
        channel: format!(
            "{} / {}",
            Lang::Lv.channel_kind(&item.channel_kind),
            Lang::En.channel_kind(&item.channel_kind)
        ),
        status_url: format!("{}/status/{id}", s.desk.public_url),
    };
    let print = s.desk.print.clone();
    let pdf = tokio::task::spawn_blocking(move || {
        crate::print::PrintFont::load(&print.font).map(|font| lines.render(&font, &print.header))
    })
    .await;
    match pdf {
        Ok(Ok(pdf)) => (
            [
                (header::CONTENT_TYPE, "application/pdf".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "inline; filename=\"kvits-{}.pdf\"",
                        item.registration_number.replace(['/', '\\', '"'], "-")
                    ),
                ),
            ],
            pdf,
        )
            .into_response(),
        Ok(Err(e)) => unavailable(e.to_string()),
        Err(e) => unavailable(e.to_string()),
    }
}

/// What a counter receipt says.
struct ReceiptLines {
    number: String,
    received: String,
    due: String,
    channel: String,
    status_url: String,
}

impl ReceiptLines {
    fn render(&self, font: &crate::print::PrintFont, letterhead: &[String]) -> Vec<u8> {
        crate::print::Printout::new(font, &format!("Apliecinājums {}", self.number))
            .header(letterhead)
            .heading("Apliecinājums par iesnieguma saņemšanu / Receipt of your submission")
            .paragraph(&format!(
                "Reģistrācijas numurs / Registration number: {}\n\
                 Saņemts / Received: {}\n\
                 Saņemšanas veids / Received: {}\n\
                 Atbilde līdz / Reply by: {}",
                self.number, self.received, self.channel, self.due
            ))
            .space(4.0)
            .paragraph("Iesnieguma statuss / Status of your submission:")
            .paragraph(&self.status_url)
            .footer(&format!("Apliecinājums {}", self.number))
            .render()
    }
}

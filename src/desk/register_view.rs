//! The register on the desk (`/desk/register`): every registered item, not
//! only the review queue, filtered by period, channel, unit, case, state,
//! formal status and overdue, searched by words or registration number
//! ([`crate::registry::listing`]), paged, and exported whole as CSV or
//! XLSX. The records office's roles and read-only accounts see it; a
//! unit's member is refused (403).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::Deserialize;
use tower_sessions::Session;

use super::auth::{Role, Viewer, viewer_as};
use super::i18n::Lang;
use super::review::{local_time, unit_name};
use super::{Nav, html, status_page};
use crate::http::HttpState;
use crate::registry::listing::{RegisterFilter, RegisterRow};

/// Rows on one page of the register.
pub const PAGE_ROWS: i64 = 50;

/// The register's query string: its filters, the search and the page.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct RegisterQuery {
    /// Words or a registration number.
    #[serde(default)]
    q: Option<String>,
    /// Registered from / to (local days, `YYYY-MM-DD`).
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    case: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    formal: Option<String>,
    /// `1`: only overdue items.
    #[serde(default)]
    overdue: Option<String>,
    /// 1-based.
    #[serde(default)]
    page: Option<i64>,
    #[serde(default)]
    lang: Option<String>,
}

fn some(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn day(s: &Option<String>) -> Option<NaiveDate> {
    some(s).and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
}

impl RegisterQuery {
    fn filter(&self) -> RegisterFilter {
        RegisterFilter {
            registered_from: day(&self.from),
            registered_to: day(&self.to),
            channel: some(&self.channel),
            unit: some(&self.unit),
            case_code: some(&self.case),
            state: some(&self.state),
            formal_status: some(&self.formal),
            overdue_on: some(&self.overdue)
                .map(|_| crate::deadline::local_date(chrono::Utc::now())),
            text: some(&self.q),
        }
    }

    /// The filters and search as a query string (without the page), for
    /// the pager and the export links.
    fn query_string(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", &self.q),
            ("from", &self.from),
            ("to", &self.to),
            ("channel", &self.channel),
            ("unit", &self.unit),
            ("case", &self.case),
            ("state", &self.state),
            ("formal", &self.formal),
            ("overdue", &self.overdue),
        ] {
            if let Some(v) = some(v) {
                s.append_pair(k, &v);
            }
        }
        s.finish()
    }
}

/// One register line in the desk's language.
pub struct RegisterLine {
    pub id: String,
    pub number: String,
    pub registered: String,
    pub channel: String,
    pub sender: String,
    pub subject: String,
    pub unit: String,
    pub case_code: Option<String>,
    pub formal_status: Option<String>,
    pub state: String,
    pub due: String,
    pub overdue: bool,
    pub number_match: bool,
}

fn line(s: &HttpState, l: Lang, today: &str, r: RegisterRow) -> RegisterLine {
    let i = r.item;
    let due = i.due().unwrap_or_default().to_string();
    RegisterLine {
        overdue: !due.is_empty() && due.as_str() < today && i.closed_at.is_none(),
        number: i.registration_number,
        registered: local_time(&i.registered_at),
        channel: l.channel_kind(&i.channel_kind),
        sender: i
            .sender_name
            .or(i.sender_email)
            .or(i.sender_phone)
            .unwrap_or_default(),
        subject: i.subject.unwrap_or_default(),
        unit: match i.unit_id.as_deref() {
            Some(u) => unit_name(s, l, Some(u)),
            None => String::new(),
        },
        case_code: i.case_code,
        formal_status: i.formal_status.map(|f| l.formal_status(Some(&f))),
        state: l.t(&format!("state.{}", i.state)).to_string(),
        due,
        number_match: r.number_match,
        id: i.id,
    }
}

fn lines(s: &HttpState, l: Lang, rows: Vec<RegisterRow>) -> Vec<RegisterLine> {
    let today = crate::deadline::local_date(chrono::Utc::now()).to_string();
    rows.into_iter().map(|r| line(s, l, &today, r)).collect()
}

#[derive(Template)]
#[template(path = "desk/register.html")]
struct RegisterPageView {
    l: Lang,
    nav: Nav,
    rows: Vec<RegisterLine>,
    /// (value, label) of the filters' choices.
    channels: Vec<(String, String)>,
    units: Vec<(String, String)>,
    cases: Vec<(String, String)>,
    formals: Vec<(String, String)>,
    states: Vec<(String, String)>,
    q: String,
    from: String,
    to: String,
    channel: String,
    unit: String,
    case: String,
    state: String,
    formal: String,
    overdue: bool,
    page: i64,
    first: i64,
    previous: Option<String>,
    next: Option<String>,
    /// The filters' query string, for the export links.
    filters: String,
}

const STATES: &[&str] = &[
    "review",
    "routed",
    "forwarding",
    "discarded",
    "scan_pending",
];

async fn signed_in(
    s: &HttpState,
    session: &Session,
    headers: &HeaderMap,
    q: &RegisterQuery,
) -> Result<Viewer, Response> {
    viewer_as(s, session, headers, q.lang.as_deref(), Role::ReadOnly).await
}

fn unavailable(l: Lang, e: &crate::registry::RegistryError) -> Response {
    tracing::error!("register: {e}");
    status_page(
        StatusCode::SERVICE_UNAVAILABLE,
        l,
        l.t("error.unavailable_title"),
        l.t("error.unavailable"),
    )
}

/// `GET /desk/register`: one page of the register.
pub async fn page(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<RegisterQuery>,
) -> Response {
    let v = match signed_in(&s, &session, &headers, &q).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let l = v.lang;
    let page = q.page.unwrap_or(1).max(1);
    let offset = (page - 1).saturating_mul(PAGE_ROWS);
    let found = match s
        .registry
        .register_page(&q.filter(), offset, PAGE_ROWS)
        .await
    {
        Ok(p) => p,
        Err(e) => return unavailable(l, &e),
    };
    let filters = q.query_string();
    let at = |p: i64| {
        if filters.is_empty() {
            format!("/desk/register?page={p}")
        } else {
            format!("/desk/register?{filters}&page={p}")
        }
    };
    let channels = crate::message::ChannelKind::ALL
        .iter()
        .map(|k| (k.as_str().to_string(), l.channel_kind(k.as_str())))
        .collect();
    let mut units: Vec<(String, String)> = s
        .rules
        .load()
        .units
        .keys()
        .map(|id| (id.clone(), unit_name(&s, l, Some(id.as_str()))))
        .collect();
    units.sort_by(|a, b| a.1.cmp(&b.1));
    let cases = s
        .rules
        .load()
        .cases
        .cases
        .values()
        .map(|c| {
            (
                c.code.clone(),
                format!("{} {}", c.code, c.title_in(l == Lang::En)),
            )
        })
        .collect();
    let formals = crate::message::FormalStatus::ALL
        .iter()
        .map(|f| (f.as_str().to_string(), l.formal_status(Some(f.as_str()))))
        .collect();
    let states = STATES
        .iter()
        .map(|st| (st.to_string(), l.t(&format!("state.{st}")).to_string()))
        .collect();
    html(RegisterPageView {
        l,
        nav: Nav::of(&v, "/desk/register"),
        previous: (page > 1).then(|| at(page - 1)),
        next: found.more.then(|| at(page + 1)),
        rows: lines(&s, l, found.rows),
        channels,
        units,
        cases,
        formals,
        states,
        q: some(&q.q).unwrap_or_default(),
        from: day(&q.from).map(|d| d.to_string()).unwrap_or_default(),
        to: day(&q.to).map(|d| d.to_string()).unwrap_or_default(),
        channel: some(&q.channel).unwrap_or_default(),
        unit: some(&q.unit).unwrap_or_default(),
        case: some(&q.case).unwrap_or_default(),
        state: some(&q.state).unwrap_or_default(),
        formal: some(&q.formal).unwrap_or_default(),
        overdue: some(&q.overdue).is_some(),
        page,
        first: offset + 1,
        filters,
    })
}

/// The export's columns: catalog keys of the headings.
const COLUMNS: &[&str] = &[
    "register.number",
    "register.registered",
    "register.channel",
    "register.sender",
    "register.subject",
    "register.unit",
    "register.case",
    "register.formal_status",
    "register.state",
    "register.due",
];

fn cells(r: &RegisterLine) -> [&str; 10] {
    [
        r.number.as_str(),
        r.registered.as_str(),
        r.channel.as_str(),
        r.sender.as_str(),
        r.subject.as_str(),
        r.unit.as_str(),
        r.case_code.as_deref().unwrap_or_default(),
        r.formal_status.as_deref().unwrap_or_default(),
        r.state.as_str(),
        r.due.as_str(),
    ]
}

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("CSV: {0}")]
    CsvFlush(#[from] std::io::Error),
    #[error("XLSX: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
}

/// CSV in UTF-8 with a byte-order mark, so Excel shows "ā" as "ā".
fn csv_bytes(l: Lang, rows: &[RegisterLine]) -> Result<Vec<u8>, ExportError> {
    let mut w = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    w.write_record(COLUMNS.iter().map(|k| l.t(k)))?;
    for r in rows {
        w.write_record(cells(r))?;
    }
    Ok(w.into_inner().map_err(|e| e.into_error())?)
}

fn xlsx_bytes(l: Lang, rows: &[RegisterLine]) -> Result<Vec<u8>, ExportError> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let bold = rust_xlsxwriter::Format::new().set_bold();
    let sheet = book.add_worksheet();
    sheet.set_name(l.t("register.sheet"))?;
    for (c, k) in COLUMNS.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, l.t(k), &bold)?;
    }
    for (n, r) in rows.iter().enumerate() {
        let row = u32::try_from(n + 1).unwrap_or(u32::MAX);
        for (c, v) in cells(r).iter().enumerate() {
            sheet.write_string(row, c as u16, *v)?;
        }
    }
    sheet.set_freeze_panes(1, 0)?;
    sheet.autofit();
    Ok(book.save_to_buffer()?)
}

async fn export(
    s: HttpState,
    session: Session,
    headers: HeaderMap,
    q: RegisterQuery,
    xlsx: bool,
) -> Response {
    let v = match signed_in(&s, &session, &headers, &q).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let l = v.lang;
    let rows = match s.registry.register_all(&q.filter()).await {
        Ok(r) => lines(&s, l, r),
        Err(e) => return unavailable(l, &e),
    };
    let (bytes, content_type, name) = if xlsx {
        (
            xlsx_bytes(l, &rows),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "register.xlsx",
        )
    } else {
        (
            csv_bytes(l, &rows),
            "text/csv; charset=utf-8",
            "register.csv",
        )
    };
    match bytes {
        Ok(b) => (
            [
                (header::CONTENT_TYPE, content_type.to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            b,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("register export: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `GET /desk/register.csv`: every row matching the filters, as CSV.
pub async fn csv_export(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<RegisterQuery>,
) -> Response {
    export(s, session, headers, q, false).await
}

/// `GET /desk/register.xlsx`: every row matching the filters, as XLSX.
pub async fn xlsx_export(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<RegisterQuery>,
) -> Response {
    export(s, session, headers, q, true).await
}

//! The statistics dashboard and the quarterly report: server-rendered HTML
//! with inline SVG charts (readable without JavaScript, printable), and the
//! same figures as CSV. They show aggregates only, never an item's content.
//! Any desk account must sign in to see them, unless
//! `desk.public_statistics = true` opens them to everyone.

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use serde::Deserialize;
use tower_sessions::Session;

use super::{HttpState, html};
use crate::deadline::local_date;
use crate::registry::deadlines::OpenCounts;
use crate::stats::{Figures, Period, Report};

/// The statistics routes, merged into the daemon's router.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/dashboard", get(dashboard))
        .route("/reports/quarterly", get(report_page))
        .route("/reports/quarterly.csv", get(report_csv))
}

#[derive(Deserialize)]
struct PeriodQuery {
    /// `2026Q3`; default: the current quarter.
    quarter: Option<String>,
    /// One unit's report instead of the whole municipality's.
    unit: Option<String>,
}

/// A duration for people: "3 min", "2,5 h", "4,0 d".
fn human(seconds: Option<i64>) -> String {
    match seconds {
        None => "—".into(),
        Some(s) if s < 120 => format!("{s} s"),
        Some(s) if s < 7200 => format!("{} min", s / 60),
        Some(s) if s < 172_800 => format!("{:.1} h", s as f64 / 3600.0).replace('.', ","),
        Some(s) => format!("{:.1} d", s as f64 / 86_400.0).replace('.', ","),
    }
}

/// A table row: figures with a display name and formatted timings.
struct Row<'a> {
    name: String,
    f: &'a Figures,
    registration: String,
    reply: String,
    /// The mean client opinion, `4,50` (— without opinions).
    opinion_mean: String,
}

fn row<'a>(f: &'a Figures, names: &BTreeMap<String, String>) -> Row<'a> {
    Row {
        name: names.get(&f.key).cloned().unwrap_or_else(|| f.key.clone()),
        f,
        registration: format!(
            "{} / {}",
            human(f.registration_median_s),
            human(f.registration_p90_s)
        ),
        reply: format!("{} / {}", human(f.reply_median_s), human(f.reply_p90_s)),
        opinion_mean: f
            .opinion_mean()
            .map_or_else(|| "—".into(), |m| format!("{m:.2}").replace('.', ",")),
    }
}

struct Segment {
    x: f64,
    width: f64,
    fill: &'static str,
    title: String,
}

struct Bar {
    label: String,
    y: u32,
    end: f64,
    total: u64,
    segments: Vec<Segment>,
}

struct BarChart {
    id: &'static str,
    title: &'static str,
    width: u32,
    height: u32,
    legend: Vec<(&'static str, &'static str)>,
    bars: Vec<Bar>,
}

const LABEL_WIDTH: f64 = 220.0;
const PLOT_WIDTH: f64 = 520.0;

/// One stacked bar: its label and (value, fill, name) per segment.
type BarRow = (String, Vec<(u64, &'static str, &'static str)>);

/// Stacked horizontal bars.
fn bar_chart(
    id: &'static str,
    title: &'static str,
    legend: Vec<(&'static str, &'static str)>,
    rows: Vec<BarRow>,
) -> BarChart {
    let max = rows
        .iter()
        .map(|(_, s)| s.iter().map(|v| v.0).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = PLOT_WIDTH / max as f64;
    let bars: Vec<Bar> = rows
        .into_iter()
        .enumerate()
        .map(|(n, (label, values))| {
            let mut x = LABEL_WIDTH;
            let total = values.iter().map(|v| v.0).sum();
            let segments = values
                .into_iter()
                .filter(|v| v.0 > 0)
                .map(|(value, fill, name)| {
                    let width = value as f64 * scale;
                    let seg = Segment {
                        x,
                        width,
                        fill,
                        title: format!("{label}: {name} {value}"),
                    };
                    x += width;
                    seg
                })
                .collect();
            let label: String = label.chars().take(32).collect();
            Bar {
                label,
                y: 4 + n as u32 * 24,
                end: x,
                total,
                segments,
            }
        })
        .collect();
    BarChart {
        id,
        title,
        width: (LABEL_WIDTH + PLOT_WIDTH + 50.0) as u32,
        height: 8 + bars.len().max(1) as u32 * 24,
        legend,
        bars,
    }
}

struct LineChart {
    width: u32,
    height: u32,
    max: u64,
    points: String,
    first: String,
    last: String,
}

fn backlog_chart(r: &Report) -> LineChart {
    let (width, height) = (790u32, 140u32);
    let max = r
        .review_backlog
        .iter()
        .map(|d| d.1)
        .max()
        .unwrap_or(0)
        .max(1);
    // Spread over the whole period, so a quarter still running ends at today.
    let n = (r.period.to - r.period.from).num_days().max(1);
    let points = r
        .review_backlog
        .iter()
        .enumerate()
        .map(|(i, (_, v))| {
            let x = 40.0 + (f64::from(width) - 50.0) * i as f64 / n as f64;
            let y = f64::from(height) - (f64::from(height) - 10.0) * *v as f64 / max as f64;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    LineChart {
        width,
        height,
        max,
        points,
        first: r.period.from.to_string(),
        last: r.period.to.to_string(),
    }
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage<'a> {
    report: &'a Report,
    total: Row<'a>,
    previous: String,
    next: Option<String>,
    charts: Vec<BarChart>,
    backlog: LineChart,
    open: Vec<(String, OpenCounts)>,
    soon_days: u32,
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage<'a> {
    report: &'a Report,
    unit: Option<String>,
    generated: String,
    sections: Vec<(&'static str, Vec<Row<'a>>)>,
    /// Items received per formal status: its names in words (lv / en), and
    /// per section (total, channels, units) a row of counts in that order.
    formal_heads: Vec<String>,
    formal_sections: Vec<(&'static str, Vec<FormalRow>)>,
}

/// A row of the formal-status table: the group's name and its counts.
type FormalRow = (String, Vec<u64>);

fn bad_request(text: String) -> Response {
    (StatusCode::BAD_REQUEST, text).into_response()
}

/// Open to everyone with `desk.public_statistics`, else to signed-in
/// desk accounts (any role); others go to the sign-in page.
async fn allowed(s: &HttpState, session: &Session, headers: &HeaderMap) -> Result<(), Response> {
    if s.desk.public_statistics {
        return Ok(());
    }
    crate::desk::auth::viewer(s, session, headers, None)
        .await
        .map(|_| ())
}

/// Loads the report the query asks for (`unit` narrows it to one unit),
/// for a visitor [`allowed`] to see it.
async fn load(
    s: &HttpState,
    session: &Session,
    headers: &HeaderMap,
    q: &PeriodQuery,
) -> Result<Report, Response> {
    allowed(s, session, headers).await?;
    let today = local_date(Utc::now());
    let period = Period::quarter_or_current(q.quarter.as_deref(), today).map_err(bad_request)?;
    let unavailable = |e: crate::registry::RegistryError| {
        tracing::error!("statistics unavailable: {e}");
        (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
    };
    let records = s
        .registry
        .stats_records(period, q.unit.as_deref())
        .await
        .map_err(unavailable)?;
    let contacts = s
        .registry
        .stats_contacts(period, q.unit.as_deref())
        .await
        .map_err(unavailable)?;
    Ok(crate::stats::report(&records, &contacts, period, today))
}

/// Display names by id (units or services), for the tables and charts.
fn display_names<T>(
    by_id: &BTreeMap<String, T>,
    name: impl Fn(&T) -> &str,
) -> BTreeMap<String, String> {
    by_id
        .iter()
        .map(|(id, v)| (id.clone(), name(v).to_string()))
        .collect()
}

async fn dashboard(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let report = match load(&s, &session, &headers, &q).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let names = display_names(&s.rules.load().units, |u| &u.name);
    let (today, horizon) = s.due_window(None);
    let open = match s.registry.open_counts(today, horizon).await {
        Ok(c) => c,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let outcome = |f: &Figures| {
        vec![
            (f.answered_on_time, "#2e7d32", "laikā / on time"),
            (f.answered_late, "#9e1b32", "novēloti / late"),
            (
                f.received
                    .saturating_sub(f.answered_on_time + f.answered_late),
                "#c77700",
                "atvērti / open",
            ),
        ]
    };
    let legend = vec![
        ("ok", "atbildēts laikā / answered on time"),
        ("late", "novēloti / late"),
        ("open", "vēl atvērti / still open"),
    ];
    let charts = vec![
        bar_chart(
            "by-channel",
            "Pa kanāliem / by channel",
            legend.clone(),
            report
                .by_channel
                .iter()
                .map(|f| (f.key.clone(), outcome(f)))
                .collect(),
        ),
        bar_chart(
            "by-unit",
            "Pa struktūrvienībām / by unit",
            legend.clone(),
            report
                .by_unit
                .iter()
                .map(|f| {
                    (
                        names.get(&f.key).cloned().unwrap_or(f.key.clone()),
                        outcome(f),
                    )
                })
                .collect(),
        ),
        bar_chart(
            "routing",
            "Maršrutēšana / routing",
            vec![
                ("ok", "noteikumi / rules"),
                ("open", "lietvedis / records officer"),
                ("review", "gaida / waiting"),
            ],
            vec![(
                "visi / all".into(),
                vec![
                    (report.total.routed_by_rules, "#2e7d32", "rules"),
                    (report.total.routed_by_officer, "#c77700", "officer"),
                    (report.total.in_review, "#555555", "waiting"),
                ],
            )],
        ),
    ];
    let previous = Period::quarter_of(report.period.from.pred_opt().unwrap_or(report.period.from));
    let next = report
        .period
        .to
        .succ_opt()
        .filter(|d| *d <= today)
        .map(|d| Period::quarter_of(d).label());
    let open = open
        .into_iter()
        .map(|c| {
            let name = if c.unit.is_empty() {
                "(nav piešķirta / unassigned)".to_string()
            } else {
                names.get(&c.unit).cloned().unwrap_or(c.unit.clone())
            };
            (name, c)
        })
        .collect();
    html(DashboardPage {
        total: row(&report.total, &names),
        backlog: backlog_chart(&report),
        report: &report,
        previous: previous.label(),
        next,
        charts,
        open,
        soon_days: s.due_soon_working_days,
    })
}

async fn report_page(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let report = match load(&s, &session, &headers, &q).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let rules = s.rules.load();
    let names = display_names(&rules.units, |u| &u.name);
    fn rows<'a>(list: &'a [Figures], names: &BTreeMap<String, String>) -> Vec<Row<'a>> {
        list.iter().map(|f| row(f, names)).collect()
    }
    let sections = vec![
        ("Kopā / total", vec![row(&report.total, &names)]),
        ("Pa kanāliem / by channel", rows(&report.by_channel, &names)),
        (
            "Pa struktūrvienībām / by unit",
            rows(&report.by_unit, &names),
        ),
        (
            "Pa pakalpojumiem / by service",
            rows(
                &report.by_service,
                &display_names(&rules.services, |v| &v.name),
            ),
        ),
    ];
    let unit = q
        .unit
        .as_ref()
        .map(|u| names.get(u).cloned().unwrap_or(u.clone()));
    let formal_heads = crate::stats::FORMAL_KEYS
        .iter()
        .map(|k| match *k {
            "unknown" => "nav zināms / not recorded".to_string(),
            k => format!(
                "{} / {}",
                crate::desk::i18n::Lang::Lv.formal_status(Some(k)),
                crate::desk::i18n::Lang::En.formal_status(Some(k))
            ),
        })
        .collect();
    let counts = |list: &[Figures], names: &BTreeMap<String, String>| -> Vec<FormalRow> {
        list.iter()
            .map(|f| {
                let name = names.get(&f.key).cloned().unwrap_or_else(|| f.key.clone());
                (name, f.formal.to_vec())
            })
            .collect()
    };
    let formal_sections = vec![
        (
            "Kopā / total",
            counts(std::slice::from_ref(&report.total), &names),
        ),
        (
            "Pa kanāliem / by channel",
            counts(&report.by_channel, &names),
        ),
        (
            "Pa struktūrvienībām / by unit",
            counts(&report.by_unit, &names),
        ),
    ];
    html(ReportPage {
        report: &report,
        unit,
        generated: Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        sections,
        formal_heads,
        formal_sections,
    })
}

async fn report_csv(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let report = match load(&s, &session, &headers, &q).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let file = format!(
        "attachment; filename=\"pietura-{}{}.csv\"",
        report.label,
        q.unit
            .as_deref()
            .map(|u| format!("-{u}"))
            .unwrap_or_default()
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, file),
        ],
        crate::stats::to_csv(&report),
    )
        .into_response()
}

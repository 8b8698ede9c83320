//! The channels overview for administrators: each configured channel with
//! what the registry saw of it (last item, the day's count, items waiting
//! in review), each mailbox's reader and last error, and the backlogs
//! between the stages (dead letters, unpublished notices, DMS queue), and
//! every supervised component's state (running, restarting since, restarts).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use tower_sessions::Session;

use super::auth::{Role, viewer};
use super::i18n::Lang;
use super::review::{LangOnly, local_time};
use super::{Nav, html};
use crate::http::HttpState;
use crate::registry::mailboxes::MailboxStatus;
use crate::supervise::{ComponentState, Phase};

/// One channel's row.
pub struct ChannelRow {
    pub id: String,
    pub kind: String,
    pub running: bool,
    pub last_item: String,
    pub last_24h: i64,
    pub items: i64,
    pub in_review: i64,
    pub mailboxes: Vec<MailboxStatus>,
    /// A mailbox error, shown in the state column.
    pub error: Option<String>,
    /// The channel's task when it is not running (restarting after a failure).
    pub component: Option<ComponentRow>,
}

/// One supervised component's row.
#[derive(Clone)]
pub struct ComponentRow {
    pub name: String,
    pub running: bool,
    /// The state's i18n key.
    pub state: &'static str,
    pub since: String,
    pub restarts: u64,
    pub last_error: String,
}

impl ComponentRow {
    fn of(name: &str, c: &ComponentState) -> ComponentRow {
        ComponentRow {
            name: name.to_string(),
            running: c.state == Phase::Running,
            state: match c.state {
                Phase::Running => "channels.running",
                Phase::Restarting => "channels.restarting",
                Phase::Stopped => "channels.stopped",
            },
            since: c
                .since
                .with_timezone(&chrono_tz::Europe::Riga)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            restarts: c.restarts,
            last_error: c.last_error.clone().unwrap_or_else(|| "—".into()),
        }
    }
}

#[derive(Template)]
#[template(path = "desk/channels.html")]
struct ChannelsPage {
    l: Lang,
    nav: Nav,
    rows: Vec<ChannelRow>,
    components: Vec<ComponentRow>,
    dead_letters: String,
    parked: String,
    outbox: String,
    dms_pending: String,
    rules_version: String,
}

/// `GET /admin/channels`.
pub async fn overview(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<LangOnly>,
) -> Response {
    let v = match viewer(&s, &session, &headers, q.lang()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(r) = v.require(Role::Admin) {
        return r.into();
    }
    let activity = s.registry.channel_activity().await.unwrap_or_else(|e| {
        tracing::error!("channels overview: {e}");
        Vec::new()
    });
    let mailboxes = s.registry.mailbox_statuses().await.unwrap_or_default();
    let components: Vec<ComponentRow> = s
        .components
        .snapshot()
        .iter()
        .map(|(name, c)| ComponentRow::of(name, c))
        .collect();
    let mut rows: Vec<ChannelRow> = s
        .channels
        .iter()
        .map(|(id, kind)| (id.clone(), kind.clone(), true))
        .chain(
            activity
                .iter()
                .filter(|a| !s.channels.iter().any(|(id, _)| id == &a.instance))
                .map(|a| (a.instance.clone(), a.kind.clone(), false)),
        )
        .map(|(id, kind, running)| {
            let seen = activity.iter().find(|a| a.instance == id);
            let boxes: Vec<MailboxStatus> = mailboxes
                .iter()
                .filter(|m| m.channel_instance == id)
                .cloned()
                .collect();
            ChannelRow {
                component: components
                    .iter()
                    .find(|c| !c.running && c.name == format!("channel:{id}"))
                    .cloned(),
                error: boxes.iter().find_map(|m| m.last_error.clone()),
                last_item: seen
                    .and_then(|a| a.last_received.as_deref())
                    .map(local_time)
                    .unwrap_or_else(|| "—".into()),
                last_24h: seen.map_or(0, |a| a.last_24h),
                items: seen.map_or(0, |a| a.items),
                in_review: seen.map_or(0, |a| a.in_review),
                mailboxes: boxes,
                id,
                kind: v.lang.channel_kind(&kind),
                running,
            }
        })
        .collect();
    rows.sort_by(|a, b| (!a.running, &a.id).cmp(&(!b.running, &b.id)));
    let shown = |r: Result<i64, String>| {
        r.map(|n| n.to_string())
            .unwrap_or_else(|e| format!("? ({e})"))
    };
    html(ChannelsPage {
        l: v.lang,
        nav: Nav::of(&v, "/admin/channels"),
        rows,
        components,
        dead_letters: shown(
            s.bus
                .dead_letter_count()
                .await
                .map(|n| n as i64)
                .map_err(|e| e.to_string()),
        ),
        parked: shown(
            s.registry
                .parked_count()
                .await
                .map(|n| n as i64)
                .map_err(|e| e.to_string()),
        ),
        outbox: shown(s.registry.outbox_backlog().await.map_err(|e| e.to_string())),
        dms_pending: shown(
            s.registry
                .dms_pending_count()
                .await
                .map_err(|e| e.to_string()),
        ),
        rules_version: s.rules.load().version.clone(),
    })
}

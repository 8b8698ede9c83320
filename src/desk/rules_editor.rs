//! The administrators' rules editor. A draft of one rules file is checked
//! by the very compiler the daemon loads `rules/` with (problems with file
//! and line), tried against recent items (which would be routed
//! differently), then stored in the registry as the rule set in force for
//! every daemon (see [`crate::active_rules`]; files are not written, `pietura
//! rules export` writes them), swapped in here at once and recorded with
//! who changed what. Any earlier version can be brought back the same way.

use std::path::Path as FsPath;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Session;

use super::auth::{Role, Viewer, posting, viewer_as};
use super::i18n::Lang;
use super::{Nav, html};
use crate::http::HttpState;
use crate::registry::desk::RulesChange;
use crate::registry::rulesets::{Activation, Replacing};
use crate::rules::{RuleProblem, RuleSet, RuleSources};

/// One save or roll-back at a time in this daemon; the base version check
/// catches a colleague's save from another daemon.
static SAVING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An item the draft would route differently.
pub struct Difference {
    pub id: String,
    pub number: String,
    pub subject: String,
    pub now: String,
    pub draft: String,
}

/// A dry run's outcome.
pub struct DryRun {
    pub compared: usize,
    pub differences: Vec<Difference>,
}

#[derive(Template)]
#[template(path = "desk/rules.html")]
struct EditorPage {
    l: Lang,
    nav: Nav,
    files: Vec<String>,
    file: String,
    text: String,
    version: String,
    items: i64,
    problems: Vec<String>,
    dry_run: Option<DryRun>,
    message: Option<String>,
    history: Vec<RulesChange>,
}

#[derive(Deserialize)]
pub struct EditorQuery {
    file: Option<String>,
    lang: Option<String>,
    saved: Option<String>,
}

#[derive(Deserialize)]
pub struct DraftForm {
    csrf: String,
    file: String,
    text: String,
    /// The version the draft was written against.
    base_version: String,
    items: Option<i64>,
}

#[derive(Deserialize)]
pub struct RollbackForm {
    csrf: String,
    version: String,
}

/// The file the editor opens with: the first routing file.
fn default_file(current: &RuleSet) -> String {
    current
        .sources
        .files
        .keys()
        .find(|k| k.starts_with("routing/"))
        .cloned()
        .unwrap_or_else(|| "units.toml".into())
}

/// A rules file an editor may write: one the set has, or a new `routing/*.toml`.
fn editable(current: &RuleSources, file: &str) -> bool {
    if current.files.contains_key(file) {
        return true;
    }
    file.strip_prefix("routing/")
        .and_then(|n| n.strip_suffix(".toml"))
        .is_some_and(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn problem_lines(problems: &[RuleProblem], dir: &FsPath) -> Vec<String> {
    problems
        .iter()
        .map(|p| {
            let file = p
                .file
                .strip_prefix(dir)
                .unwrap_or(&p.file)
                .display()
                .to_string();
            match p.line {
                Some(line) => format!("{file}:{line}: {}", p.message),
                None => format!("{file}: {}", p.message),
            }
        })
        .collect()
}

/// The draft set: the rules in force with `file` replaced.
fn draft_of(current: &RuleSet, file: &str, text: &str) -> Result<RuleSet, Vec<String>> {
    let mut sources = (*current.sources).clone();
    // Browsers send CRLF from a textarea; the files keep LF.
    sources
        .files
        .insert(file.to_string(), text.replace("\r\n", "\n"));
    RuleSet::from_sources(&current.dir, sources)
        .map_err(|e| problem_lines(&e.problems, &current.dir))
}

fn describe(l: Lang, d: &crate::rules::eval::Decision) -> String {
    let target = match (&d.unit, &d.review_reason) {
        (_, Some(r)) => format!("{}: {r}", l.t("rules.to_review")),
        (Some(u), None) => match &d.service {
            Some(sv) => format!("{u} / {sv}"),
            None => u.clone(),
        },
        (None, None) => l.t("rules.to_review").to_string(),
    };
    let target = match &d.case {
        Some(case) => format!("{target}; {} {case}", l.t("item.case")),
        None => target,
    };
    match &d.rule_id {
        Some(rule) => format!("{target} ({rule})"),
        None => target,
    }
}

/// Evaluates the last `n` items under the rules in force and the draft.
async fn dry_run(s: &HttpState, l: Lang, current: &RuleSet, draft: &RuleSet, n: i64) -> DryRun {
    let filter = crate::registry::ItemFilter {
        state: None,
        unit: None,
        limit: n,
    };
    let items = s.registry.list(&filter).await.unwrap_or_else(|e| {
        tracing::error!("dry run: {e}");
        Vec::new()
    });
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let messages = s.registry.item_messages(&ids).await.unwrap_or_else(|e| {
        tracing::error!("dry run: {e}");
        Default::default()
    });
    let mut out = DryRun {
        compared: 0,
        differences: Vec::new(),
    };
    for item in &items {
        let Some(msg) = messages.get(&item.id) else {
            continue;
        };
        out.compared += 1;
        let (now, then) = (current.evaluate(msg), draft.evaluate(msg));
        let same = now.unit == then.unit
            && now.service == then.service
            && now.case == then.case
            && now.review_reason.is_some() == then.review_reason.is_some();
        if !same {
            out.differences.push(Difference {
                id: item.id.clone(),
                number: item.registration_number.clone(),
                subject: item.subject.clone().unwrap_or_default(),
                now: describe(l, &now),
                draft: describe(l, &then),
            });
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn render(
    s: &HttpState,
    v: &Viewer,
    file: &str,
    text: Option<String>,
    items: i64,
    problems: Vec<String>,
    dry: Option<DryRun>,
    message: Option<String>,
) -> Response {
    let current = s.rules.load_full();
    let files: Vec<String> = current.sources.files.keys().cloned().collect();
    let text = text.unwrap_or_else(|| current.sources.files.get(file).cloned().unwrap_or_default());
    let history = s.registry.rules_changes(50).await.unwrap_or_else(|e| {
        tracing::error!("rules history: {e}");
        Vec::new()
    });
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = EditorPage {
        l: v.lang,
        nav: Nav::of(v, "/admin/rules"),
        files,
        file: file.to_string(),
        text,
        version: current.version.clone(),
        items,
        problems,
        dry_run: dry,
        message,
        history,
    };
    (status, html(page)).into_response()
}

/// `GET /admin/rules?file=…`.
pub async fn editor(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<EditorQuery>,
) -> Response {
    let v = match viewer_as(&s, &session, &headers, q.lang.as_deref(), Role::Admin).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let current = s.rules.load_full();
    let file = q
        .file
        .filter(|f| current.sources.files.contains_key(f))
        .unwrap_or_else(|| default_file(&current));
    let message = q
        .saved
        .map(|version| format!("{} {version}", v.lang.t("rules.saved")));
    render(
        &s,
        &v,
        &file,
        None,
        s.desk.dry_run_items,
        Vec::new(),
        None,
        message,
    )
    .await
}

/// `POST /admin/rules/check`: validation, then the dry run.
pub async fn check(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Form(f): Form<DraftForm>,
) -> Response {
    let v = match posting(&s, &session, &headers, Role::Admin, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let items = f.items.unwrap_or(s.desk.dry_run_items).clamp(1, 10_000);
    let current = s.rules.load_full();
    if !editable(&current.sources, &f.file) {
        let why = vec![format!("{}: {}", f.file, v.lang.t("rules.not_editable"))];
        return render(&s, &v, &f.file, Some(f.text), items, why, None, None).await;
    }
    match draft_of(&current, &f.file, &f.text) {
        Err(problems) => render(&s, &v, &f.file, Some(f.text), items, problems, None, None).await,
        Ok(draft) => {
            let dry = dry_run(&s, v.lang, &current, &draft, items).await;
            let message = Some(format!("{} {}", v.lang.t("rules.valid"), draft.version));
            render(
                &s,
                &v,
                &f.file,
                Some(f.text),
                items,
                Vec::new(),
                Some(dry),
                message,
            )
            .await
        }
    }
}

/// Puts `set` in force for every daemon if `base` still is the version in
/// force (a colleague's save on any daemon is caught), here at once; the
/// history line is written with it.
async fn activate(
    s: &HttpState,
    l: Lang,
    set: RuleSet,
    base: &str,
    line: &RulesChange,
) -> Result<Arc<RuleSet>, String> {
    let replacing = Replacing::Version(base.to_string());
    match s.registry.activate_ruleset(&set, &replacing, line).await {
        Ok(Activation::Activated) => {
            let set = Arc::new(set);
            s.rules.store(set.clone());
            crate::metrics::rules_reloaded(true);
            Ok(set)
        }
        Ok(Activation::Conflict { active }) => Err(format!(
            "{} {base} → {}",
            l.t("rules.changed_meanwhile"),
            active.unwrap_or_default()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// `POST /admin/rules/save`.
pub async fn save(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Form(f): Form<DraftForm>,
) -> Response {
    let v = match posting(&s, &session, &headers, Role::Admin, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let items = f.items.unwrap_or(s.desk.dry_run_items);
    let _one_at_a_time = SAVING.lock().await;
    let current = s.rules.load_full();
    if current.version != f.base_version {
        let why = vec![format!(
            "{} {} → {}",
            v.lang.t("rules.changed_meanwhile"),
            f.base_version,
            current.version
        )];
        return render(&s, &v, &f.file, Some(f.text), items, why, None, None).await;
    }
    if !editable(&current.sources, &f.file) {
        let why = vec![format!("{}: {}", f.file, v.lang.t("rules.not_editable"))];
        return render(&s, &v, &f.file, Some(f.text), items, why, None, None).await;
    }
    let draft = match draft_of(&current, &f.file, &f.text) {
        Ok(d) => d,
        Err(problems) => {
            return render(&s, &v, &f.file, Some(f.text), items, problems, None, None).await;
        }
    };
    if draft.version == current.version {
        let msg = Some(v.lang.t("rules.unchanged").to_string());
        return render(&s, &v, &f.file, None, items, Vec::new(), None, msg).await;
    }
    let line = crate::active_rules::change("edit", &v.actor(), Some(f.file.clone()), String::new());
    let activated = match activate(&s, v.lang, draft, &current.version, &line).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(file = %f.file, "rules edit not saved: {e}");
            return render(&s, &v, &f.file, Some(f.text), items, vec![e], None, None).await;
        }
    };
    tracing::info!(file = %f.file, from = %current.version, to = %activated.version, "rules edited in the desk");
    let file: String =
        percent_encoding::utf8_percent_encode(&f.file, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    Redirect::to(&format!(
        "/admin/rules?file={file}&saved={}",
        activated.version
    ))
    .into_response()
}

/// `POST /admin/rules/rollback`: an earlier version back in force.
pub async fn rollback(
    State(s): State<HttpState>,
    session: Session,
    headers: HeaderMap,
    Form(f): Form<RollbackForm>,
) -> Response {
    let v = match posting(&s, &session, &headers, Role::Admin, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let _one_at_a_time = SAVING.lock().await;
    let current = s.rules.load_full();
    let restored = async {
        let sources = match s.registry.ruleset_sources(&f.version).await {
            Ok(Some(src)) => src,
            Ok(None) => {
                return Err(format!(
                    "{}: {}",
                    f.version,
                    v.lang.t("rules.unknown_version")
                ));
            }
            Err(e) => return Err(e.to_string()),
        };
        let set = RuleSet::from_sources(&current.dir, sources).map_err(|e| e.to_string())?;
        let note = format!("back to {}", f.version);
        let line = crate::active_rules::change("rollback", &v.actor(), None, note);
        activate(&s, v.lang, set, &current.version, &line).await
    }
    .await;
    let activated = match restored {
        Ok(a) => a,
        Err(why) => {
            let (file, items) = (default_file(&current), s.desk.dry_run_items);
            return render(&s, &v, &file, None, items, vec![why], None, None).await;
        }
    };
    tracing::info!(from = %current.version, to = %activated.version, "rules rolled back in the desk");
    Redirect::to(&format!("/admin/rules?saved={}", activated.version)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rules_files_are_editable() {
        let mut sources = RuleSources::default();
        sources.files.insert("units.toml".into(), String::new());
        assert!(editable(&sources, "units.toml"));
        assert!(editable(&sources, "routing/60-jauns.toml"));
        for bad in [
            "../etc/passwd",
            "routing/../x.toml",
            "routing/.toml",
            "other.toml",
            "routing/a b.toml",
        ] {
            assert!(!editable(&sources, bad), "{bad}");
        }
    }
}

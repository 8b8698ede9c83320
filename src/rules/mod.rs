//! The routing rules: loading and validating `rules/` into an immutable
//! [`RuleSet`], evaluating it on a message with a full explanation
//! ([`eval`]), and hot reload with an atomic swap ([`watch`]).

pub mod cases;
pub mod catalogue;
pub mod eval;
pub mod files;
pub mod holiday;
pub mod text;
pub mod watch;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::deadline::{Deadlines, Regimes, WorkCalendar};
use crate::message::ChannelKind;
pub use crate::tomlfile::RuleProblem;
use crate::tomlfile::{Problems, line_of, parse_toml};
use files::{RoutingFile, RuleDef, ServicesFile, UnitsFile};
use text::Keyword;
use toml::Spanned;

/// How urgent an item is; the highest given by any matching rule wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

impl Priority {
    /// The name stored in the registry.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }
}

/// Why a rule set was refused; the running set stays in force.
#[derive(Debug, thiserror::Error)]
#[error("rule set in {} refused, {} problem(s):\n{}", .dir.display(), .problems.len(), .problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct RulesError {
    pub dir: PathBuf,
    pub problems: Vec<RuleProblem>,
}

/// A unit items can be routed to.
#[derive(Debug, Clone, Serialize)]
pub struct Unit {
    pub id: String,
    pub index: String,
    pub name: String,
    pub name_en: Option<String>,
    pub email: Option<String>,
    pub external: bool,
}

/// An entry of the service catalogue.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub name_en: Option<String>,
    pub unit: String,
    pub reply_working_days: Option<u32>,
    /// The case its items are filed under by default (`cases.toml`).
    pub case: Option<String>,
    pub note: Option<String>,
    /// What the public catalogue pages and the desk's search show.
    pub catalogue: catalogue::Catalogue,
}

/// A condition, compiled.
#[derive(Debug, Clone)]
pub enum Condition {
    Channel(Vec<ChannelKind>),
    ChannelInstance(Vec<String>),
    SenderEmail(Vec<String>),
    SenderDomain(Vec<String>),
    PhonePrefix(Vec<String>),
    Keywords {
        any: Vec<Keyword>,
        min_hits: usize,
    },
    AllKeywords(Vec<Keyword>),
    NoneKeywords(Vec<Keyword>),
    SubjectKeywords(Vec<Keyword>),
    Regex(Vec<Regex>),
    FormId(Vec<String>),
    AttachmentType(Vec<String>),
    AttachmentName(Vec<(String, Regex)>),
    AttachmentCount {
        min: Option<u32>,
        max: Option<u32>,
    },
    /// Every named fact was extracted by the channel.
    Extracted(Vec<String>),
}

/// The facts channels extract (`metadata.<channel>.extracted`), by name.
pub const EXTRACTED_FACTS: [&str; 8] = [
    "sender_name",
    "signer",
    "postal_address",
    "date",
    "personas_kods",
    "email",
    "phone",
    "subject",
];

/// What a matching rule sets.
#[derive(Debug, Clone, Default)]
pub struct Action {
    pub unit: Option<String>,
    pub service: Option<String>,
    pub case: Option<String>,
    pub tags: Vec<String>,
    pub priority: Option<Priority>,
    pub reply_working_days: Option<u32>,
    pub review_reason: Option<String>,
    pub continue_: bool,
}

/// A compiled rule, remembering where it was written.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub priority: i64,
    pub description: String,
    pub file: PathBuf,
    pub line: usize,
    pub conditions: Vec<Condition>,
    pub action: Action,
}

/// An immutable, validated rule set. Swapped whole, never edited in place.
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// Content hash of every file read: recorded on each routed item.
    pub version: String,
    pub dir: PathBuf,
    pub units: BTreeMap<String, Unit>,
    pub services: BTreeMap<String, Service>,
    /// The classification scheme (`cases.toml`; empty without the file).
    pub cases: Arc<cases::CaseScheme>,
    /// In evaluation order.
    pub rules: Vec<Rule>,
    /// The working-day calendar and legal terms (`calendar.toml`, `deadlines.toml`).
    pub deadlines: Arc<Deadlines>,
    /// The texts it was compiled from.
    pub sources: Arc<RuleSources>,
}

/// Splits a routing file at its `[[rule]]` headers. Each piece keeps the
/// lines before it as empty lines, so positions in it are positions in the file.
fn rule_chunks(src: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for line in src.split_inclusive('\n') {
        if line.trim_start().starts_with("[[rule]]") && !current.trim().is_empty() {
            // The padded piece holds every line so far.
            let lines_so_far = current.matches('\n').count();
            chunks.push(std::mem::take(&mut current));
            current = "\n".repeat(lines_so_far);
        }
        current.push_str(line);
    }
    chunks.push(current);
    chunks
}

/// An id usable in queue names and URLs: lowercase a-z, 0-9, `-` or `_`.
/// Units, services and channel instances share it.
pub(crate) fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// The files at the top of a rules folder; `routing/*.toml` come besides.
pub const TOP_LEVEL_FILES: [&str; 5] = [
    "units.toml",
    "services.toml",
    "calendar.toml",
    "deadlines.toml",
    CASES_FILE,
];

/// The classification scheme's file: optional, so rule sets stored before
/// it existed still compile (without it no item gets a case).
pub const CASES_FILE: &str = "cases.toml";

/// The text of every file of a rules folder, keyed by its path relative to
/// the folder (`units.toml`, `routing/50-units.toml`). Kept with each rule
/// set and stored once per version in the registry, so an item's routing can
/// be explained later by the very rules that routed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSources {
    pub files: BTreeMap<String, String>,
}

impl RuleSources {
    /// Reads the [`TOP_LEVEL_FILES`] and `routing/*.toml`; unreadable
    /// files are problems, reported with the rest when compiling.
    pub fn read(dir: &Path) -> (RuleSources, Vec<RuleProblem>) {
        let mut sources = RuleSources::default();
        let mut problems = Vec::new();
        let mut names: Vec<String> = TOP_LEVEL_FILES.iter().map(|n| n.to_string()).collect();
        let routing_dir = dir.join("routing");
        match std::fs::read_dir(&routing_dir) {
            Ok(entries) => names.extend(
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .map(|n| format!("routing/{n}")),
            ),
            Err(e) => problems.push(RuleProblem {
                file: routing_dir,
                line: None,
                message: format!("cannot read the routing rules folder: {e}"),
            }),
        }
        for name in names {
            let path = dir.join(&name);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    sources.files.insert(name, text);
                }
                Err(e) if name == CASES_FILE && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => problems.push(RuleProblem {
                    file: path,
                    line: None,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        (sources, problems)
    }

    /// A short content hash: the version recorded on every routed item.
    pub fn version(&self) -> String {
        let mut hasher = Sha256::new();
        for (name, text) in &self.files {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(text.as_bytes());
            hasher.update([0]);
        }
        hex::encode(&hasher.finalize()[..6])
    }
}

impl RuleSet {
    /// Reads and validates a whole rules folder; all problems are returned together.
    pub fn load(dir: &Path) -> Result<RuleSet, RulesError> {
        let (sources, problems) = RuleSources::read(dir);
        Self::compile(dir, sources, problems)
    }

    /// Validates rule texts that were read elsewhere (a stored version, an
    /// editor's draft); `dir` only labels the problems' file names.
    pub fn from_sources(dir: &Path, sources: RuleSources) -> Result<RuleSet, RulesError> {
        Self::compile(dir, sources, Vec::new())
    }

    fn compile(
        dir: &Path,
        sources: RuleSources,
        mut problems: Vec<RuleProblem>,
    ) -> Result<RuleSet, RulesError> {
        let read = |path: &Path, problems: &mut Vec<RuleProblem>| -> Option<String> {
            let name = path
                .strip_prefix(dir)
                .ok()?
                .to_string_lossy()
                .replace('\\', "/");
            let text = sources.files.get(&name).cloned();
            if text.is_none() && !problems.iter().any(|p| p.file == path) {
                problems.push(RuleProblem {
                    file: path.to_path_buf(),
                    line: None,
                    message: "missing".into(),
                });
            }
            text
        };

        let units_path = dir.join("units.toml");
        let mut units = BTreeMap::new();
        if let Some(src) = read(&units_path, &mut problems)
            && let Some(file) = parse_toml::<UnitsFile>(&units_path, &src, &mut problems)
        {
            let mut p = Problems {
                file: &units_path,
                src: &src,
                list: &mut problems,
            };
            let mut indexes = HashSet::new();
            for u in file.unit {
                let at = u.span().start;
                let u = u.into_inner();
                if !is_id(&u.id) {
                    p.at(
                        at,
                        format!("unit id {:?} must be lowercase a-z, 0-9, - or _", u.id),
                    );
                }
                if !indexes.insert(u.index.clone()) {
                    p.at(
                        at,
                        format!("unit {}: index {:?} is used twice", u.id, u.index),
                    );
                }
                let unit = Unit {
                    id: u.id.clone(),
                    index: u.index,
                    name: u.name,
                    name_en: u.name_en,
                    email: u.email,
                    external: u.external,
                };
                if units.insert(u.id.clone(), unit).is_some() {
                    p.at(at, format!("unit id {:?} is defined twice", u.id));
                }
            }
        }

        let cases_path = dir.join(CASES_FILE);
        let case_scheme = match sources.files.get(CASES_FILE) {
            Some(src) => cases::CaseScheme::compile(&cases_path, src, &units, &mut problems)
                .unwrap_or_default(),
            None => cases::CaseScheme::default(),
        };

        let services_path = dir.join("services.toml");
        let mut services = BTreeMap::new();
        if let Some(src) = read(&services_path, &mut problems)
            && let Some(file) = parse_toml::<ServicesFile>(&services_path, &src, &mut problems)
        {
            let mut p = Problems {
                file: &services_path,
                src: &src,
                list: &mut problems,
            };
            for s in file.service {
                let at = s.span().start;
                let mut s = s.into_inner();
                let catalogue = catalogue::Catalogue::compile(&mut s, at, &mut p);
                if !is_id(&s.id) {
                    p.at(
                        at,
                        format!("service id {:?} must be lowercase a-z, 0-9, - or _", s.id),
                    );
                }
                if !units.contains_key(s.unit.get_ref()) {
                    p.at(
                        s.unit.span().start,
                        format!(
                            "service {}: unit {:?} is not defined in units.toml",
                            s.id,
                            s.unit.get_ref()
                        ),
                    );
                }
                if let Some(c) = &s.case
                    && case_scheme.get(c.get_ref()).is_none()
                {
                    p.at(
                        c.span().start,
                        format!(
                            "service {}: case {:?} is not defined in cases.toml",
                            s.id,
                            c.get_ref()
                        ),
                    );
                }
                let service = Service {
                    id: s.id.clone(),
                    name: s.name,
                    name_en: s.name_en,
                    unit: s.unit.into_inner(),
                    reply_working_days: s.reply_working_days,
                    case: s.case.map(Spanned::into_inner),
                    note: s.note,
                    catalogue,
                };
                if services.insert(s.id.clone(), service).is_some() {
                    p.at(at, format!("service id {:?} is defined twice", s.id));
                }
            }
        }

        let calendar_path = dir.join("calendar.toml");
        let calendar = read(&calendar_path, &mut problems)
            .and_then(|src| WorkCalendar::compile(&calendar_path, &src, &mut problems));
        let deadlines_path = dir.join("deadlines.toml");
        let regimes = read(&deadlines_path, &mut problems)
            .and_then(|src| Regimes::compile(&deadlines_path, &src, &mut problems));

        let mut files: Vec<PathBuf> = sources
            .files
            .keys()
            .filter(|name| name.starts_with("routing/"))
            .map(|name| dir.join(name))
            .collect();
        files.sort();
        let mut rules = Vec::new();
        let mut ids = HashSet::new();
        for path in &files {
            let Some(src) = read(path, &mut problems) else {
                continue;
            };
            // A file that does not deserialise as a whole is read again one
            // rule at a time, so every broken rule is reported, not only the first.
            let parsed: Vec<(String, RoutingFile)> = match toml::from_str::<RoutingFile>(&src) {
                Ok(file) => vec![(src, file)],
                Err(_) => rule_chunks(&src)
                    .into_iter()
                    .filter_map(|chunk| {
                        parse_toml::<RoutingFile>(path, &chunk, &mut problems).map(|f| (chunk, f))
                    })
                    .collect(),
            };
            for (src, file) in parsed {
                let mut p = Problems {
                    file: path,
                    src: &src,
                    list: &mut problems,
                };
                for def in file.rule {
                    let at = def.span().start;
                    let def = def.into_inner();
                    if !ids.insert(def.id.clone()) {
                        p.at(at, format!("rule id {:?} is used twice", def.id));
                    }
                    let known = Known {
                        units: &units,
                        services: &services,
                        cases: &case_scheme,
                    };
                    if let Some(rule) = compile_rule(def, path, at, &known, &mut p) {
                        rules.push(rule);
                    }
                }
            }
        }
        // Stable: equal priorities keep file and in-file order.
        rules.sort_by_key(|r| std::cmp::Reverse(r.priority));

        let deadlines = match (calendar, regimes) {
            (Some(calendar), Some(regimes)) if problems.is_empty() => {
                Deadlines { calendar, regimes }
            }
            _ => {
                return Err(RulesError {
                    dir: dir.to_path_buf(),
                    problems,
                });
            }
        };
        Ok(RuleSet {
            version: sources.version(),
            dir: dir.to_path_buf(),
            units,
            services,
            cases: Arc::new(case_scheme),
            rules,
            deadlines: Arc::new(deadlines),
            sources: Arc::new(sources),
        })
    }
}

fn keywords(list: Vec<toml::Spanned<String>>, key: &str, p: &mut Problems<'_>) -> Vec<Keyword> {
    list.into_iter()
        .filter_map(|k| {
            let parsed = Keyword::parse(k.get_ref());
            if parsed.is_none() {
                p.at(
                    k.span().start,
                    format!("when.{key}: {:?} has no letters to match", k.get_ref()),
                );
            }
            parsed
        })
        .collect()
}

fn glob_regex(glob: &str) -> Result<Regex, regex::Error> {
    let mut re = String::from("(?i)^");
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re)
}

/// What a rule may name.
struct Known<'a> {
    units: &'a BTreeMap<String, Unit>,
    services: &'a BTreeMap<String, Service>,
    cases: &'a cases::CaseScheme,
}

fn compile_rule(
    def: RuleDef,
    path: &Path,
    at: usize,
    known: &Known<'_>,
    p: &mut Problems<'_>,
) -> Option<Rule> {
    let (units, services) = (known.units, known.services);
    let before = p.list.len();
    let id = def.id.clone();
    if !is_id(&id) {
        p.at(
            at,
            format!("rule id {id:?} must be lowercase a-z, 0-9, - or _"),
        );
    }
    let w = def.when;
    let mut conditions = Vec::new();
    if !w.channel.is_empty() {
        let mut kinds = Vec::new();
        for c in &w.channel {
            match ChannelKind::parse(c.get_ref()) {
                Some(k) => kinds.push(k),
                None => p.at(
                    c.span().start,
                    format!(
                        "rule {id}: when.channel {:?} is not one of {}",
                        c.get_ref(),
                        ChannelKind::names()
                    ),
                ),
            }
        }
        conditions.push(Condition::Channel(kinds));
    }
    if !w.channel_instance.is_empty() {
        conditions.push(Condition::ChannelInstance(w.channel_instance));
    }
    let lower = |v: Vec<String>| v.into_iter().map(|s| s.to_lowercase()).collect::<Vec<_>>();
    if !w.sender_email.is_empty() {
        conditions.push(Condition::SenderEmail(lower(w.sender_email)));
    }
    if !w.sender_domain.is_empty() {
        conditions.push(Condition::SenderDomain(lower(w.sender_domain)));
    }
    if !w.phone_prefix.is_empty() {
        conditions.push(Condition::PhonePrefix(w.phone_prefix));
    }
    if !w.keywords.is_empty() {
        let any = keywords(w.keywords, "keywords", p);
        let min_hits = w.min_keyword_hits.unwrap_or(1) as usize;
        if min_hits == 0 || min_hits > any.len() {
            p.at(
                at,
                format!(
                    "rule {id}: when.min_keyword_hits = {min_hits} but there are {} keywords",
                    any.len()
                ),
            );
        }
        conditions.push(Condition::Keywords { any, min_hits });
    } else if w.min_keyword_hits.is_some() {
        p.at(
            at,
            format!("rule {id}: when.min_keyword_hits without when.keywords"),
        );
    }
    if !w.all_keywords.is_empty() {
        conditions.push(Condition::AllKeywords(keywords(
            w.all_keywords,
            "all_keywords",
            p,
        )));
    }
    if !w.none_keywords.is_empty() {
        conditions.push(Condition::NoneKeywords(keywords(
            w.none_keywords,
            "none_keywords",
            p,
        )));
    }
    if !w.subject_keywords.is_empty() {
        conditions.push(Condition::SubjectKeywords(keywords(
            w.subject_keywords,
            "subject_keywords",
            p,
        )));
    }
    if !w.regex.is_empty() {
        let mut res = Vec::new();
        for r in &w.regex {
            match Regex::new(r.get_ref()) {
                Ok(re) => res.push(re),
                Err(e) => p.at(
                    r.span().start,
                    format!("rule {id}: when.regex {:?} is invalid: {e}", r.get_ref()),
                ),
            }
        }
        conditions.push(Condition::Regex(res));
    }
    if !w.form_id.is_empty() {
        conditions.push(Condition::FormId(w.form_id));
    }
    if !w.attachment_type.is_empty() {
        conditions.push(Condition::AttachmentType(lower(w.attachment_type)));
    }
    if !w.attachment_name.is_empty() {
        let mut globs = Vec::new();
        for g in &w.attachment_name {
            match glob_regex(g.get_ref()) {
                Ok(re) => globs.push((g.get_ref().clone(), re)),
                Err(e) => p.at(
                    g.span().start,
                    format!("rule {id}: when.attachment_name {:?}: {e}", g.get_ref()),
                ),
            }
        }
        conditions.push(Condition::AttachmentName(globs));
    }
    if w.min_attachments.is_some() || w.max_attachments.is_some() {
        conditions.push(Condition::AttachmentCount {
            min: w.min_attachments,
            max: w.max_attachments,
        });
    }
    if !w.extracted.is_empty() {
        let mut facts = Vec::new();
        for f in &w.extracted {
            if EXTRACTED_FACTS.contains(&f.get_ref().as_str()) {
                facts.push(f.get_ref().clone());
            } else {
                p.at(
                    f.span().start,
                    format!(
                        "rule {id}: when.extracted {:?} is not a fact channels extract ({})",
                        f.get_ref(),
                        EXTRACTED_FACTS.join(", ")
                    ),
                );
            }
        }
        conditions.push(Condition::Extracted(facts));
    }

    let t = def.then;
    if let Some(u) = &t.unit
        && !units.contains_key(u.get_ref())
    {
        p.at(
            u.span().start,
            format!(
                "rule {id}: then.unit {:?} is not defined in units.toml",
                u.get_ref()
            ),
        );
    }
    if let Some(s) = &t.service {
        match services.get(s.get_ref()) {
            None => p.at(
                s.span().start,
                format!(
                    "rule {id}: then.service {:?} is not defined in services.toml",
                    s.get_ref()
                ),
            ),
            Some(svc) => {
                if t.unit.as_ref().is_some_and(|u| *u.get_ref() != svc.unit) {
                    p.at(
                        s.span().start,
                        format!(
                            "rule {id}: then.service {:?} belongs to unit {:?}, not to then.unit",
                            s.get_ref(),
                            svc.unit
                        ),
                    );
                }
            }
        }
    }
    if let Some(c) = &t.case
        && known.cases.get(c.get_ref()).is_none()
    {
        p.at(
            c.span().start,
            format!(
                "rule {id}: then.case {:?} is not defined in cases.toml",
                c.get_ref()
            ),
        );
    }
    let does_something = t.unit.is_some()
        || t.service.is_some()
        || t.case.is_some()
        || !t.tags.is_empty()
        || t.priority.is_some()
        || t.review_reason.is_some();
    if !does_something {
        p.at(
            at,
            format!(
                "rule {id}: then sets nothing (give unit, service, case, tags, priority or review_reason)"
            ),
        );
    }
    if conditions.is_empty() {
        p.at(
            at,
            format!("rule {id}: when has no condition; every item would match"),
        );
    }
    if p.list.len() > before {
        return None;
    }
    // A service implies its unit.
    let unit = t.unit.map(|u| u.into_inner()).or_else(|| {
        t.service
            .as_ref()
            .and_then(|s| services.get(s.get_ref()))
            .map(|s| s.unit.clone())
    });
    Some(Rule {
        id,
        priority: def.priority,
        description: def.description,
        file: path.to_path_buf(),
        line: line_of(p.src, at),
        conditions,
        action: Action {
            unit,
            service: t.service.map(|s| s.into_inner()),
            case: t.case.map(|c| c.into_inner()),
            tags: t.tags,
            priority: t.priority,
            reply_working_days: t.reply_working_days,
            review_reason: t.review_reason,
            continue_: t.continue_,
        },
    })
}

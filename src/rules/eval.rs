//! Evaluating a [`RuleSet`] on one message. Every condition of every rule
//! tried is recorded, so `pietura rules test` and the review desk can say
//! exactly why an item went where it went, or why it went nowhere.

use std::collections::BTreeSet;

use serde::Serialize;

use super::text::{Keyword, Words};
use super::{Condition, Priority, Rule, RuleSet};
use crate::message::{FormalStatus, IntakeMessage};

/// The review reason of an item no rule routed (machine-readable; the
/// desk shows it in words).
pub const NO_RULE_REASON: &str = "no routing rule matched";

/// The `rule_id` of an item routed because it follows up a registered item.
pub const FOLLOW_UP_RULE: &str = "follow-up";
/// The `rule_id` of items routed by the service an officer chose at the desk.
pub const CHOSEN_SERVICE_RULE: &str = "chosen-service";
/// The `rule_id` of an item routed by the e-adrese sub-address it was sent to.
pub const SUB_ADDRESS_RULE: &str = "e-adrese-sub-address";

/// One condition's result.
#[derive(Debug, Clone, Serialize)]
pub struct ConditionTrace {
    pub condition: String,
    pub passed: bool,
    pub detail: String,
}

/// One rule's result.
#[derive(Debug, Clone, Serialize)]
pub struct RuleTrace {
    pub rule_id: String,
    pub location: String,
    pub matched: bool,
    pub conditions: Vec<ConditionTrace>,
}

/// What the rules decided for one message.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub ruleset_version: String,
    /// The first matching rule that set a unit.
    pub rule_id: Option<String>,
    pub unit: Option<String>,
    pub service: Option<String>,
    /// The case (`cases.toml`) the item is filed under: the routing rule's
    /// `then.case`, else its service's; none when neither names one.
    pub case: Option<String>,
    /// Where the case came from: `rule <id>` or `service <id>`.
    pub case_from: Option<String>,
    /// How the submission was made and signed ([`FormalStatus::of`]).
    pub formal_status: FormalStatus,
    pub tags: BTreeSet<String>,
    pub priority: Priority,
    pub reply_working_days: Option<u32>,
    /// Set when the item must be seen by the records officer.
    pub review_reason: Option<String>,
    /// Not stored with the item (it is most of the decision's size): the
    /// registry keeps each rule-set version once and evaluates again to explain.
    #[serde(skip_serializing)]
    pub trace: Vec<RuleTrace>,
}

/// The message's text, prepared once for all rules.
struct Prepared<'a> {
    msg: &'a IntakeMessage,
    all: Words,
    subject: Words,
    raw: String,
}

fn keyword_hits<'k>(kws: &'k [Keyword], words: &Words) -> Vec<&'k str> {
    kws.iter()
        .filter(|k| k.occurs_in(words))
        .map(|k| k.source.as_str())
        .collect()
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn check(cond: &Condition, m: &Prepared<'_>) -> ConditionTrace {
    let msg = m.msg;
    let (name, passed, detail) = match cond {
        Condition::Channel(kinds) => {
            let ok = kinds.contains(&msg.channel.kind);
            ("channel", ok, format!("channel is {}", msg.channel.kind))
        }
        Condition::ChannelInstance(ids) => {
            let ok = ids.contains(&msg.channel.instance);
            (
                "channel_instance",
                ok,
                format!("instance is {}", msg.channel.instance),
            )
        }
        Condition::SenderEmail(list) => {
            let email = msg.sender.email.as_deref().unwrap_or("").to_lowercase();
            let ok = !email.is_empty() && list.contains(&email);
            ("sender_email", ok, format!("sender e-mail is {email:?}"))
        }
        Condition::SenderDomain(domains) => {
            let email = msg.sender.email.as_deref().unwrap_or("").to_lowercase();
            let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            let ok = domains
                .iter()
                .any(|d| domain == d || domain.ends_with(&format!(".{d}")));
            ("sender_domain", ok, format!("sender domain is {domain:?}"))
        }
        Condition::PhonePrefix(prefixes) => {
            let phone = msg.sender.phone.as_deref().unwrap_or("");
            let ok = !phone.is_empty() && prefixes.iter().any(|p| phone.starts_with(p.as_str()));
            ("phone_prefix", ok, format!("sender phone is {phone:?}"))
        }
        Condition::Keywords { any, min_hits } => {
            let hits = keyword_hits(any, &m.all);
            (
                "keywords",
                hits.len() >= *min_hits,
                format!(
                    "{} of at least {min_hits} found: {}",
                    hits.len(),
                    list(&hits)
                ),
            )
        }
        Condition::AllKeywords(kws) => {
            let missing: Vec<&str> = kws
                .iter()
                .filter(|k| !k.occurs_in(&m.all))
                .map(|k| k.source.as_str())
                .collect();
            (
                "all_keywords",
                missing.is_empty(),
                format!("missing: {}", list(&missing)),
            )
        }
        Condition::NoneKeywords(kws) => {
            let hits = keyword_hits(kws, &m.all);
            (
                "none_keywords",
                hits.is_empty(),
                format!("present: {}", list(&hits)),
            )
        }
        Condition::SubjectKeywords(kws) => {
            let hits = keyword_hits(kws, &m.subject);
            (
                "subject_keywords",
                !hits.is_empty(),
                format!("in subject: {}", list(&hits)),
            )
        }
        Condition::Regex(res) => {
            let hit = res.iter().find(|r| r.is_match(&m.raw));
            (
                "regex",
                hit.is_some(),
                match hit {
                    Some(r) => format!("/{}/ matches", r.as_str()),
                    None => "no pattern matches".into(),
                },
            )
        }
        Condition::FormId(ids) => {
            let form = msg.form_id().unwrap_or_default();
            let ok = ids.contains(&form);
            ("form_id", ok, format!("form is {form:?}"))
        }
        Condition::AttachmentType(types) => {
            let found: Vec<&str> = msg
                .attachments
                .iter()
                .map(|a| a.content_type.as_str())
                .collect();
            let ok = msg.attachments.iter().any(|a| {
                let ct = a.content_type.to_lowercase();
                types.iter().any(|t| match t.strip_suffix("/*") {
                    Some(major) => ct.split('/').next() == Some(major),
                    None => ct == *t,
                })
            });
            (
                "attachment_type",
                ok,
                format!("attachment types: {}", list(&found)),
            )
        }
        Condition::AttachmentName(globs) => {
            let ok = msg
                .attachments
                .iter()
                .any(|a| globs.iter().any(|(_, re)| re.is_match(&a.filename)));
            let names: Vec<&str> = msg
                .attachments
                .iter()
                .map(|a| a.filename.as_str())
                .collect();
            (
                "attachment_name",
                ok,
                format!("attachment names: {}", list(&names)),
            )
        }
        Condition::AttachmentCount { min, max } => {
            let n = msg.attachments.len() as u32;
            let ok = min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m);
            ("attachment_count", ok, format!("{n} attachment(s)"))
        }
        Condition::Extracted(facts) => {
            let found = msg
                .meta::<crate::channels::scan::ScanMeta>()
                .map(|m| m.extracted);
            let missing: Vec<&str> = facts
                .iter()
                .filter(|f| found.as_ref().and_then(|x| x.get(f.as_str())).is_none())
                .map(String::as_str)
                .collect();
            (
                "extracted",
                missing.is_empty(),
                format!("not extracted: {}", list(&missing)),
            )
        }
    };
    ConditionTrace {
        condition: name.into(),
        passed,
        detail,
    }
}

fn trace_rule(rule: &Rule, m: &Prepared<'_>) -> RuleTrace {
    let conditions: Vec<ConditionTrace> = rule.conditions.iter().map(|c| check(c, m)).collect();
    RuleTrace {
        rule_id: rule.id.clone(),
        location: format!("{}:{}", rule.file.display(), rule.line),
        matched: conditions.iter().all(|c| c.passed),
        conditions,
    }
}

impl RuleSet {
    /// Classifies one message. Rules run in priority order; the first
    /// matching rule without `continue` ends the evaluation.
    pub fn evaluate(&self, msg: &IntakeMessage) -> Decision {
        let subject = msg.subject.as_deref().unwrap_or("");
        let raw = format!("{subject}\n{}", msg.body);
        let prepared = Prepared {
            msg,
            all: Words::of(&raw),
            subject: Words::of(subject),
            raw,
        };
        let mut d = Decision {
            ruleset_version: self.version.clone(),
            rule_id: None,
            unit: None,
            service: None,
            case: None,
            case_from: None,
            formal_status: FormalStatus::of(msg),
            tags: BTreeSet::new(),
            priority: Priority::Normal,
            reply_working_days: None,
            review_reason: None,
            trace: Vec::new(),
        };
        for rule in &self.rules {
            let t = trace_rule(rule, &prepared);
            let matched = t.matched;
            d.trace.push(t);
            if !matched {
                continue;
            }
            let a = &rule.action;
            d.tags.extend(a.tags.iter().cloned());
            if let Some(p) = a.priority {
                d.priority = d.priority.max(p);
            }
            if d.review_reason.is_none() {
                d.review_reason = a.review_reason.clone();
            }
            // A case-only rule (with `continue`) classifies without routing.
            if d.case.is_none()
                && let Some(case) = &a.case
            {
                d.case = Some(case.clone());
                d.case_from = Some(format!("rule {}", rule.id));
            }
            if d.unit.is_none() && a.unit.is_some() {
                d.unit = a.unit.clone();
                d.service = a.service.clone();
                d.rule_id = Some(rule.id.clone());
                d.reply_working_days = a.reply_working_days.or_else(|| {
                    a.service
                        .as_ref()
                        .and_then(|s| self.services.get(s))
                        .and_then(|s| s.reply_working_days)
                });
            }
            if !a.continue_ {
                break;
            }
        }
        // An e-adrese sub-address names its unit: the sender chose it.
        if let Some(unit) = msg.addressed_unit().filter(|u| self.units.contains_key(u))
            && d.unit.as_ref() != Some(&unit)
        {
            d.unit = Some(unit);
            d.service = None;
            d.rule_id = Some(SUB_ADDRESS_RULE.into());
            d.review_reason = None;
            d.reply_working_days = None;
        }
        // A follow-up joins the item it answers, at the unit that has it.
        if let Some(f) = msg.follow_up_of()
            && let Some(unit) = f.unit_id.filter(|u| self.units.contains_key(u))
        {
            d.unit = Some(unit);
            d.service = f.service_id.filter(|s| self.services.contains_key(s));
            d.rule_id = Some(FOLLOW_UP_RULE.into());
            d.review_reason = None;
            d.reply_working_days = d
                .service
                .as_ref()
                .and_then(|s| self.services.get(s))
                .and_then(|s| s.reply_working_days);
        }
        // A service chosen by the officer at the counter routes to its unit.
        if let Some(service) = msg.chosen_service().and_then(|s| self.services.get(s)) {
            d.unit = Some(service.unit.clone());
            d.service = Some(service.id.clone());
            d.rule_id = Some(CHOSEN_SERVICE_RULE.into());
            d.review_reason = None;
            d.reply_working_days = service.reply_working_days;
        }
        if let Some(reason) = &msg.review_reason {
            d.unit = None;
            d.service = None;
            d.rule_id = None;
            d.review_reason = Some(reason.clone());
        }
        if d.unit.is_none() && d.review_reason.is_none() {
            d.review_reason = Some(NO_RULE_REASON.into());
        }
        if d.case.is_none()
            && let Some(service) = d.service.as_ref().and_then(|s| self.services.get(s))
            && let Some(case) = &service.case
        {
            d.case = Some(case.clone());
            d.case_from = Some(format!("service {}", service.id));
        }
        d
    }
}

impl Decision {
    /// A human-readable account of the evaluation, for `pietura rules test`.
    pub fn explain(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "rule set {}", self.ruleset_version);
        for t in &self.trace {
            let _ = writeln!(
                out,
                "{} {} ({})",
                if t.matched { "MATCH" } else { "  -  " },
                t.rule_id,
                t.location
            );
            for c in &t.conditions {
                let _ = writeln!(
                    out,
                    "        [{}] {}: {}",
                    if c.passed { "x" } else { " " },
                    c.condition,
                    c.detail
                );
            }
        }
        let _ = writeln!(out, "unit:     {}", self.unit.as_deref().unwrap_or("-"));
        let _ = writeln!(out, "service:  {}", self.service.as_deref().unwrap_or("-"));
        let _ = writeln!(out, "rule:     {}", self.rule_id.as_deref().unwrap_or("-"));
        let _ = writeln!(
            out,
            "case:     {}",
            match (&self.case, &self.case_from) {
                (Some(c), Some(from)) => format!("{c} (from {from})"),
                (Some(c), None) => c.clone(),
                _ => "- (nav klasificēts)".into(),
            }
        );
        let _ = writeln!(out, "formal:   {}", self.formal_status);
        let tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "tags:     {}",
            if tags.is_empty() {
                "-".into()
            } else {
                tags.join(", ")
            }
        );
        let _ = writeln!(out, "priority: {}", self.priority.as_str());
        let _ = write!(
            out,
            "review:   {}",
            self.review_reason.as_deref().unwrap_or("no")
        );
        out
    }
}

//! The on-disk shape of `rules/`: `units.toml`, `services.toml` and
//! (`cases.toml` is [`super::cases`]'s)
//! `routing/*.toml`. Unknown keys are errors so a typo never silently
//! disables a condition.

use serde::Deserialize;
use toml::Spanned;

/// `units.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitsFile {
    #[serde(default)]
    pub unit: Vec<Spanned<UnitDef>>,
}

/// One organisational unit (or an outside institution items are forwarded to).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitDef {
    pub id: String,
    /// The register series index used in registration numbers.
    pub index: String,
    pub name: String,
    #[serde(default)]
    pub name_en: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// Outside the municipality: items go there by forwarding.
    #[serde(default)]
    pub external: bool,
}

/// `services.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesFile {
    #[serde(default)]
    pub service: Vec<Spanned<ServiceDef>>,
}

/// One entry of the service catalogue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub name_en: Option<String>,
    pub unit: Spanned<String>,
    #[serde(default)]
    pub reply_working_days: Option<u32>,
    /// The case (`cases.toml`) its items are filed under unless a rule says otherwise.
    #[serde(default)]
    pub case: Option<Spanned<String>>,
    #[serde(default)]
    pub note: Option<String>,
    /// The catalogue page in Latvian (`[service.lv]`) and English (`[service.en]`).
    #[serde(default)]
    pub lv: Option<Spanned<ServiceTextDef>>,
    #[serde(default)]
    pub en: Option<Spanned<ServiceTextDef>>,
    /// Where one may apply ([`crate::rules::catalogue::APPLY_CHANNELS`]).
    #[serde(default)]
    pub channels: Vec<Spanned<String>>,
    /// The web form to use (`/forms/<form>`).
    #[serde(default)]
    pub form: Option<Spanned<String>>,
    /// Catalogue facts the unit has not confirmed yet, by key (`fee`, `term` …).
    #[serde(default)]
    pub unconfirmed: Vec<Spanned<String>>,
}

/// A service's catalogue text in one language.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTextDef {
    /// Who may receive the service.
    #[serde(default)]
    pub who: Option<String>,
    /// Where and when to apply.
    #[serde(default, rename = "where")]
    pub where_: Option<String>,
    #[serde(default)]
    pub when: Option<String>,
    /// Documents to bring or attach.
    #[serde(default)]
    pub documents: Vec<String>,
    /// How long the service takes.
    #[serde(default)]
    pub term: Option<String>,
    #[serde(default)]
    pub fee: Option<String>,
}

/// One `routing/*.toml` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingFile {
    #[serde(default)]
    pub rule: Vec<Spanned<RuleDef>>,
}

/// A rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    pub id: String,
    /// Higher runs first; ties keep file and file order.
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub when: WhenDef,
    pub then: ThenDef,
}

/// Conditions; every one given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenDef {
    #[serde(default)]
    pub channel: Vec<Spanned<String>>,
    #[serde(default)]
    pub channel_instance: Vec<String>,
    #[serde(default)]
    pub sender_email: Vec<String>,
    #[serde(default)]
    pub sender_domain: Vec<String>,
    #[serde(default)]
    pub phone_prefix: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<Spanned<String>>,
    #[serde(default)]
    pub min_keyword_hits: Option<u32>,
    #[serde(default)]
    pub all_keywords: Vec<Spanned<String>>,
    #[serde(default)]
    pub none_keywords: Vec<Spanned<String>>,
    #[serde(default)]
    pub subject_keywords: Vec<Spanned<String>>,
    #[serde(default)]
    pub regex: Vec<Spanned<String>>,
    #[serde(default)]
    pub form_id: Vec<String>,
    #[serde(default)]
    pub attachment_type: Vec<String>,
    #[serde(default)]
    pub attachment_name: Vec<Spanned<String>>,
    #[serde(default)]
    pub min_attachments: Option<u32>,
    #[serde(default)]
    pub max_attachments: Option<u32>,
    /// Facts the channel found in the item (`metadata.<channel>.extracted`,
    /// e.g. a scanned letter's `personas_kods`, `date`): all must be there.
    #[serde(default)]
    pub extracted: Vec<Spanned<String>>,
}

/// What a matching rule does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThenDef {
    #[serde(default)]
    pub unit: Option<Spanned<String>>,
    #[serde(default)]
    pub service: Option<Spanned<String>>,
    /// The case (`cases.toml`) the item is filed under; else its service's.
    #[serde(default)]
    pub case: Option<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub priority: Option<crate::rules::Priority>,
    #[serde(default)]
    pub reply_working_days: Option<u32>,
    /// Route, but also put the item before the records officer with this reason.
    #[serde(default)]
    pub review_reason: Option<String>,
    /// Apply this rule's tags and keep evaluating.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
}

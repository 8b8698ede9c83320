//! Why an item went where it went. The per-rule trace is not stored with
//! each item; the stored message is evaluated again with the stored rule-set
//! version that registered it. Evaluation is pure (message and rules only),
//! so this gives the same decision the engine made, rule edits since then
//! notwithstanding.

use std::path::PathBuf;

use thiserror::Error;

use crate::message::IntakeMessage;
use crate::registry::{ItemSummary, Registry, RegistryError};
use crate::rules::eval::Decision;
use crate::rules::{RuleSet, RulesError};

/// Why an explanation could not be given.
#[derive(Debug, Error)]
pub enum ExplainError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(
        "item {item}: rule set version {version} is not in the registry (registered before versions were kept); no explanation can be rebuilt"
    )]
    UnknownVersion { item: String, version: String },
    #[error("item {item}: the stored rule set {version} no longer compiles: {source}")]
    Rules {
        item: String,
        version: String,
        #[source]
        source: RulesError,
    },
}

/// The decision for `item`, trace included, as its own rule-set version made it.
pub async fn explain(registry: &Registry, item: &ItemSummary) -> Result<Decision, ExplainError> {
    let message = registry.item_message(&item.id).await?;
    explain_message(registry, item, &message).await
}

/// [`explain`] for a caller that has read the item's message already.
pub async fn explain_message(
    registry: &Registry,
    item: &ItemSummary,
    message: &IntakeMessage,
) -> Result<Decision, ExplainError> {
    let version = item.ruleset_version.clone();
    let Some(mut sources) = registry.ruleset_sources(&version).await? else {
        return Err(ExplainError::UnknownVersion {
            item: item.registration_number.clone(),
            version,
        });
    };
    // Versions stored before the calendar and terms were rules files lack
    // them; routing never reads them, so the shipped ones complete the set.
    for (name, text) in [
        ("calendar.toml", include_str!("../rules/calendar.toml")),
        ("deadlines.toml", include_str!("../rules/deadlines.toml")),
    ] {
        sources
            .files
            .entry(name.to_string())
            .or_insert_with(|| text.to_string());
    }
    let label = PathBuf::from(format!("rules@{version}"));
    let rules = RuleSet::from_sources(&label, sources).map_err(|source| ExplainError::Rules {
        item: item.registration_number.clone(),
        version: version.clone(),
        source,
    })?;
    Ok(rules.evaluate(message))
}

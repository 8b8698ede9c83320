//! Clients of the item API: each has a name (the actor recorded for every
//! action it takes), a random token shown once when it is issued and kept
//! only as its SHA-256, the units whose items it may see and act on, and the
//! actions it may take. Issued, revoked and listed by
//! `pietura api-client add|revoke|list`; the HTTP side asks
//! [`authenticate`] who a bearer token belongs to.
//!
//! The legacy `http.api_token` is the client [`LEGACY_CLIENT`] with every
//! scope; the development-only loopback exemption is [`DEV_LOOPBACK_CLIENT`].

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::Engine as _;
use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::registry::api_clients::StoredApiClient;
use crate::registry::{Registry, RegistryError, db_time};

/// The name actions taken with the legacy `http.api_token` are recorded under.
pub const LEGACY_CLIENT: &str = "api-token";
/// The name actions taken under `http.dev_trust_loopback` are recorded under.
pub const DEV_LOOPBACK_CLIENT: &str = "dev-loopback";
/// Tokens start with this, so a leaked one is recognisable in a scan.
const TOKEN_PREFIX: &str = "pietura_";

/// What a client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiAction {
    /// See items (list, one item, its explanation, the due lists).
    Read,
    Extend,
    Pause,
    Resume,
    Close,
    /// Give an item back to review (`POST …/return`).
    Decide,
    /// Add an ad-hoc holiday (municipality-wide: an all-units client only).
    Holiday,
}

impl ApiAction {
    pub const ALL: [ApiAction; 7] = [
        Self::Read,
        Self::Extend,
        Self::Pause,
        Self::Resume,
        Self::Close,
        Self::Decide,
        Self::Holiday,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Extend => "extend",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Close => "close",
            Self::Decide => "decide",
            Self::Holiday => "holiday",
        }
    }
}

impl fmt::Display for ApiAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApiAction {
    type Err = ApiClientError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s.trim())
            .ok_or_else(|| ApiClientError::UnknownAction(s.trim().to_string()))
    }
}

/// Whose items a client may see and act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitScope {
    /// Every unit, and items not routed to any (review).
    All,
    /// Items routed to one of these units.
    Only(BTreeSet<String>),
}

/// A client of the item API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiClient {
    pub name: String,
    pub units: UnitScope,
    pub actions: BTreeSet<ApiAction>,
    pub created_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl ApiClient {
    /// A client with every scope (legacy token, development loopback).
    pub fn with_every_scope(name: &str) -> Self {
        Self {
            name: name.to_string(),
            units: UnitScope::All,
            actions: ApiAction::ALL.into_iter().collect(),
            created_at: None,
            last_used_at: None,
            revoked_at: None,
        }
    }

    pub fn may(&self, action: ApiAction) -> bool {
        self.actions.contains(&action)
    }

    /// Whether an item routed to `unit` (none: in review) is within reach.
    pub fn reaches(&self, unit: Option<&str>) -> bool {
        match (&self.units, unit) {
            (UnitScope::All, _) => true,
            (UnitScope::Only(units), Some(unit)) => units.contains(unit),
            (UnitScope::Only(_), None) => false,
        }
    }

    /// The units as `pietura api-client list` shows them.
    pub fn units_text(&self) -> String {
        match &self.units {
            UnitScope::All => "*".into(),
            UnitScope::Only(units) => units.iter().cloned().collect::<Vec<_>>().join(","),
        }
    }

    /// The actions as `pietura api-client list` shows them.
    pub fn actions_text(&self) -> String {
        self.actions
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn from_stored(s: StoredApiClient) -> Result<Self, ApiClientError> {
        let units = if s.units == "*" {
            UnitScope::All
        } else {
            UnitScope::Only(
                serde_json::from_str(&s.units).map_err(|e| ApiClientError::Stored {
                    name: s.name.clone(),
                    what: format!("units {:?}: {e}", s.units),
                })?,
            )
        };
        let actions = s
            .actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(ApiAction::from_str)
            .collect::<Result<_, _>>()
            .map_err(|e| ApiClientError::Stored {
                name: s.name.clone(),
                what: e.to_string(),
            })?;
        Ok(Self {
            name: s.name,
            units,
            actions,
            created_at: Some(s.created_at),
            last_used_at: s.last_used_at,
            revoked_at: s.revoked_at,
        })
    }
}

/// Why a client could not be issued, revoked or read.
#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    #[error(
        "API client name {0:?}: use lower-case letters, digits, '-' and '_' (it is the actor on the audit log)"
    )]
    InvalidName(String),
    #[error("API client name {0:?} is reserved")]
    ReservedName(String),
    #[error("an API client named {0:?} exists (names are never reused, revoked ones included)")]
    Exists(String),
    #[error("no API client {0:?} that is not revoked")]
    NotFound(String),
    #[error("unknown action {0:?} (read, extend, pause, resume, close, decide, holiday)")]
    UnknownAction(String),
    #[error("unit id {0:?}: use lower-case letters, digits, '-' and '_'")]
    InvalidUnit(String),
    #[error("give at least one action and either --units or --all-units")]
    Empty,
    #[error(
        "the holiday action changes every unit's deadlines: only an --all-units client may have it"
    )]
    HolidayNeedsAllUnits,
    #[error("API client {name} is stored with {what}")]
    Stored { name: String, what: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl ApiClientError {
    /// Worth retrying (the registry was unavailable).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Registry(e) if e.is_transient() && !e.is_unique_violation())
    }
}

fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Issues a client; the token is returned once and stored only as its hash.
pub async fn add(
    registry: &Registry,
    name: &str,
    units: UnitScope,
    actions: BTreeSet<ApiAction>,
) -> Result<(ApiClient, String), ApiClientError> {
    if !crate::rules::is_id(name) || name.len() > 64 {
        return Err(ApiClientError::InvalidName(name.to_string()));
    }
    if [LEGACY_CLIENT, DEV_LOOPBACK_CLIENT, "pietura"].contains(&name) {
        return Err(ApiClientError::ReservedName(name.to_string()));
    }
    let units_text = match &units {
        UnitScope::All => "*".to_string(),
        UnitScope::Only(list) => {
            if let Some(bad) = list.iter().find(|u| !crate::rules::is_id(u)) {
                return Err(ApiClientError::InvalidUnit(bad.clone()));
            }
            if list.is_empty() {
                return Err(ApiClientError::Empty);
            }
            if actions.contains(&ApiAction::Holiday) {
                return Err(ApiClientError::HolidayNeedsAllUnits);
            }
            serde_json::Value::from(list.iter().cloned().collect::<Vec<_>>()).to_string()
        }
    };
    if actions.is_empty() {
        return Err(ApiClientError::Empty);
    }
    let token = new_token();
    let client = ApiClient {
        name: name.to_string(),
        units,
        actions,
        created_at: Some(db_time(Utc::now())),
        last_used_at: None,
        revoked_at: None,
    };
    let stored = StoredApiClient {
        name: client.name.clone(),
        token_sha256: token_sha256(&token),
        units: units_text,
        actions: client.actions_text(),
        created_at: client.created_at.clone().unwrap_or_default(),
        last_used_at: None,
        revoked_at: None,
    };
    match registry.api_client_insert(&stored).await {
        Ok(()) => Ok((client, token)),
        Err(e) if e.is_unique_violation() => Err(ApiClientError::Exists(name.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// Revokes a client: its token is refused from then on.
pub async fn revoke(registry: &Registry, name: &str) -> Result<(), ApiClientError> {
    if registry.api_client_revoke(name).await? {
        Ok(())
    } else {
        Err(ApiClientError::NotFound(name.to_string()))
    }
}

/// Every client (revoked ones too), never their tokens.
pub async fn list(registry: &Registry) -> Result<Vec<ApiClient>, ApiClientError> {
    registry
        .api_clients()
        .await?
        .into_iter()
        .map(ApiClient::from_stored)
        .collect()
}

/// The client a bearer token belongs to, if any and not revoked; notes its use.
pub async fn authenticate(
    registry: &Registry,
    token: &str,
) -> Result<Option<ApiClient>, ApiClientError> {
    let hash = token_sha256(token);
    let Some(stored) = registry.api_client_by_token(&hash).await? else {
        return Ok(None);
    };
    if !bool::from(stored.token_sha256.as_bytes().ct_eq(hash.as_bytes())) {
        return Ok(None);
    }
    if let Err(e) = registry.api_client_used(&stored.name).await {
        tracing::warn!(client = %stored.name, "last use of an API client not noted: {e}");
    }
    ApiClient::from_stored(stored).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.len() > 40, "{a}");
        assert_eq!(token_sha256(&a).len(), 64);
        assert_ne!(token_sha256(&a), token_sha256(&b));
    }

    #[test]
    fn scopes_limit_units_and_actions() {
        let c = ApiClient {
            units: UnitScope::Only(["buvvalde".to_string()].into_iter().collect()),
            actions: [ApiAction::Read].into_iter().collect(),
            ..ApiClient::with_every_scope("portal")
        };
        assert!(c.reaches(Some("buvvalde")));
        assert!(!c.reaches(Some("socialais")));
        assert!(!c.reaches(None));
        assert!(c.may(ApiAction::Read));
        assert!(!c.may(ApiAction::Close));
        assert_eq!("close".parse::<ApiAction>().ok(), Some(ApiAction::Close));
        assert!("delete".parse::<ApiAction>().is_err());
    }
}

//! The addressee directory: who has an active e-adrese. A periodic job,
//! one daemon at a time (`registry::lease` named work
//! `eadrese-directory:<channel>`), asks the service for the whole list the
//! first time and for the changes since the last token after that; the
//! token is the job's recorded state. The reply routing asks
//! [`has_active_eadrese`].

use tracing::Instrument;

use super::client::{DivClient, DivError};
use crate::registry::{Registry, RegistryError};

/// Why a sync did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("addressee directory: {0}")]
    Div(#[from] DivError),
    #[error("addressee directory: {0}")]
    Registry(#[from] RegistryError),
}

impl DirectoryError {
    pub fn is_transient(&self) -> bool {
        match self {
            DirectoryError::Div(e) => e.is_transient(),
            DirectoryError::Registry(_) => true,
        }
    }
}

/// The named work of a channel's directory sync.
pub fn job_name(channel: &str) -> String {
    format!("eadrese-directory:{channel}")
}

/// One sync when it is due and no other daemon runs it: the number of
/// records stored, None when it was not this daemon's turn.
pub async fn sync_due(
    client: &DivClient,
    registry: &Registry,
    channel: &str,
    every_secs: i64,
) -> Result<Option<usize>, DirectoryError> {
    let name = job_name(channel);
    let Some(lease) = registry.claim_periodic(&name, 300).await? else {
        return Ok(None);
    };
    let span = tracing::info_span!("eadrese_directory", channel);
    async {
        let token = registry.named_state(&name).await?.filter(|t| !t.is_empty());
        let changes = match client.addressees(token.as_deref()).await {
            Ok(c) => c,
            Err(e) => {
                // Tried again at the next turn; the old token stays.
                registry
                    .periodic_done(&lease, every_secs, token.as_deref().unwrap_or(""))
                    .await?;
                return Err(e.into());
            }
        };
        registry.store_addressees(&changes.records).await?;
        registry
            .periodic_done(&lease, every_secs, &changes.token)
            .await?;
        tracing::info!(
            records = changes.records.len(),
            "addressee directory synced"
        );
        Ok(Some(changes.records.len()))
    }
    .instrument(span)
    .await
}

/// Whether `e_address` has an active e-adrese as the cache last saw it:
/// a person with one must be answered there.
pub async fn has_active_eadrese(
    registry: &Registry,
    e_address: &str,
) -> Result<bool, RegistryError> {
    registry.addressee_active(e_address).await
}

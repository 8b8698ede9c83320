//! Desk sessions in the registry database, through tower-sessions' store
//! trait: they survive a daemon restart and are shared by every daemon of
//! a scaled-out installation. The cookie carries only the random id.

use async_trait::async_trait;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::registry::Registry;

/// The registry as a tower-sessions store.
#[derive(Debug, Clone)]
pub struct RegistrySessions(pub Registry);

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn encoded(record: &Record) -> session_store::Result<(String, chrono::DateTime<chrono::Utc>)> {
    let data = serde_json::to_string(&record.data)
        .map_err(|e| session_store::Error::Encode(e.to_string()))?;
    let expires = chrono::DateTime::from_timestamp(record.expiry_date.unix_timestamp(), 0)
        .ok_or_else(|| session_store::Error::Encode("session expiry out of range".into()))?;
    Ok((data, expires))
}

#[async_trait]
impl SessionStore for RegistrySessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let (data, expires) = encoded(record)?;
        // A new id until one is free (a collision of 128 random bits is
        // improbable, but a taken id must never be overwritten).
        while !self
            .0
            .create_web_session(&record.id.to_string(), &data, expires)
            .await
            .map_err(backend)?
        {
            record.id = Id::default();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let (data, expires) = encoded(record)?;
        self.0
            .save_web_session(&record.id.to_string(), &data, expires)
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let Some(data) = self.0.web_session(&id.to_string()).await.map_err(backend)? else {
            return Ok(None);
        };
        let data =
            serde_json::from_str(&data).map_err(|e| session_store::Error::Decode(e.to_string()))?;
        // The expiry is renewed by the layer on every request (inactivity).
        let expiry_date = tower_sessions::cookie::time::OffsetDateTime::now_utc()
            + tower_sessions::cookie::time::Duration::minutes(1);
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.0
            .delete_web_session(&id.to_string())
            .await
            .map_err(backend)
    }
}

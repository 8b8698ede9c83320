//! Storage for the e-adrese connector: the addressee directory cache and
//! the record of answers sent to an e-adrese with their delivery
//! confirmation (the protocol is in [`crate::eadrese`]).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

use super::{Registry, RegistryError, db_time, q};

/// An answer sent to an e-adrese, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EadreseSent {
    pub item_id: String,
    pub div_message_id: String,
    pub recipient: String,
    pub sent_at: String,
    /// The legal notification date: the second working day after sending.
    pub notified_on: String,
    pub delivery_status: Option<String>,
    pub delivered_at: Option<String>,
}

impl Registry {
    /// Stores directory records (e-address, active); a later record of the
    /// same address replaces the earlier.
    pub async fn store_addressees(&self, records: &[(String, bool)]) -> Result<(), RegistryError> {
        let ctx = "e-adrese directory records";
        let now = db_time(Utc::now());
        let mut tx = self.pool.begin().await.map_err(q(ctx))?;
        for (address, active) in records {
            sqlx::query(
                "INSERT INTO eadrese_addressees (e_address, active, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (e_address) DO UPDATE SET active = excluded.active, \
                 updated_at = excluded.updated_at",
            )
            .bind(address)
            .bind(i64::from(*active))
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(q(ctx))?;
        }
        tx.commit().await.map_err(q(ctx))
    }

    /// Whether the directory cache lists `e_address` as active.
    pub async fn addressee_active(&self, e_address: &str) -> Result<bool, RegistryError> {
        let row = sqlx::query("SELECT active FROM eadrese_addressees WHERE e_address = $1")
            .bind(e_address)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("e-adrese directory lookup"))?;
        match row {
            Some(r) => Ok(r
                .try_get::<i64, _>(0)
                .map_err(q("e-adrese directory lookup"))?
                == 1),
            None => Ok(false),
        }
    }

    /// Records an answer sent to an e-adrese.
    pub async fn record_eadrese_sent(
        &self,
        item_id: &str,
        div_message_id: &str,
        recipient: &str,
        sent_at: DateTime<Utc>,
        notified_on: NaiveDate,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO eadrese_sent (item_id, div_message_id, recipient, sent_at, notified_on) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (item_id) DO NOTHING",
        )
        .bind(item_id)
        .bind(div_message_id)
        .bind(recipient)
        .bind(db_time(sent_at))
        .bind(notified_on.to_string())
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(q(format!("e-adrese answer of item {item_id}")))
    }

    /// Records the service's delivery confirmation of an answer.
    pub async fn record_eadrese_confirmation(
        &self,
        item_id: &str,
        status: &str,
        delivered_at: Option<DateTime<Utc>>,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "UPDATE eadrese_sent SET delivery_status = $2, delivered_at = $3, confirmed_at = $4 \
             WHERE item_id = $1",
        )
        .bind(item_id)
        .bind(status)
        .bind(delivered_at.map(db_time))
        .bind(db_time(Utc::now()))
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(q(format!("delivery confirmation of item {item_id}")))
    }

    /// The e-adrese answer of an item, if one was sent.
    pub async fn eadrese_sent(&self, item_id: &str) -> Result<Option<EadreseSent>, RegistryError> {
        let ctx = format!("e-adrese answer of item {item_id}");
        let row = sqlx::query(
            "SELECT item_id, div_message_id, recipient, sent_at, notified_on, delivery_status, \
             delivered_at FROM eadrese_sent WHERE item_id = $1",
        )
        .bind(item_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q(ctx.clone()))?;
        let Some(r) = row else { return Ok(None) };
        let read = || -> Result<EadreseSent, sqlx::Error> {
            Ok(EadreseSent {
                item_id: r.try_get(0)?,
                div_message_id: r.try_get(1)?,
                recipient: r.try_get(2)?,
                sent_at: r.try_get(3)?,
                notified_on: r.try_get(4)?,
                delivery_status: r.try_get(5)?,
                delivered_at: r.try_get(6)?,
            })
        };
        read().map(Some).map_err(q(ctx))
    }
}

//! Storage of near-duplicate fingerprints and links
//! ([`crate::enrich::duplicates`] decides): each item's MinHash signature
//! and lookup keys, and the pairs of items that may be the same letter,
//! once per pair, audit-logged on both.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::register::{multi_insert, numbered};
use super::{Registry, RegistryError, db_time, insert_audit, q};

/// An item's fingerprint as stored.
#[derive(Debug, Clone)]
pub struct Fingerprint {
    pub item_id: String,
    pub received_at: DateTime<Utc>,
    pub channel_kind: String,
    /// The MinHash signature in hex; none for a text too short.
    pub minhash: Option<String>,
    /// LSH band keys and sender keys.
    pub lookups: Vec<String>,
}

/// An item within the window sharing a lookup key with a new item.
#[derive(Debug, Clone)]
pub struct DuplicateCandidate {
    pub item_id: String,
    pub registration_number: String,
    pub channel_kind: String,
    pub minhash: Option<String>,
    /// A sender key is shared.
    pub same_sender: bool,
}

/// A link between an item and another that may be the same letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateLink {
    pub other_id: String,
    pub other_number: String,
    /// The other item's channel kind.
    pub other_channel: String,
    /// Estimated text similarity, 0–100.
    pub percent: i64,
    /// `text`, `sender` or `sender_text`.
    pub reason: String,
}

/// Most candidates compared for one item (the most recent first).
const MOST_CANDIDATES: usize = 1000;

impl Registry {
    /// Items received within `window` of `fp`'s sharing one of its lookup
    /// keys (its own item left out), with their signatures.
    pub async fn duplicate_candidates(
        &self,
        fp: &Fingerprint,
        senders: &[String],
        window: chrono::Duration,
    ) -> Result<Vec<DuplicateCandidate>, RegistryError> {
        if fp.lookups.is_empty() {
            return Ok(Vec::new());
        }
        let ctx = format!("duplicate lookup of item {}", fp.item_id);
        let n = fp.lookups.len();
        let sql = format!(
            "SELECT item_id, lookup FROM duplicate_keys WHERE lookup IN ({}) \
             AND received_at >= ${} AND received_at <= ${} AND item_id <> ${} \
             ORDER BY received_at DESC",
            numbered(1, n),
            n + 1,
            n + 2,
            n + 3
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for l in &fp.lookups {
            query = query.bind(l.clone());
        }
        let rows = query
            .bind(db_time(fp.received_at - window))
            .bind(db_time(fp.received_at + window))
            .bind(fp.item_id.clone())
            .fetch_all(&self.pool)
            .await
            .map_err(q(ctx.clone()))?;
        let senders: HashSet<&str> = senders.iter().map(String::as_str).collect();
        // item → a sender key shared; in the order found (most recent first).
        let mut found: Vec<(String, bool)> = Vec::new();
        for r in &rows {
            let item: String = r.try_get(0).map_err(q(ctx.clone()))?;
            let lookup: String = r.try_get(1).map_err(q(ctx.clone()))?;
            let sender = senders.contains(lookup.as_str());
            match found.iter().position(|(i, _)| *i == item) {
                Some(at) => found[at].1 |= sender,
                None if found.len() < MOST_CANDIDATES => found.push((item, sender)),
                None => {}
            }
        }
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT s.item_id, i.registration_number, s.channel_kind, s.minhash \
             FROM duplicate_signatures s JOIN items i ON i.id = s.item_id \
             WHERE s.item_id IN ({})",
            numbered(1, found.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (item, _) in &found {
            query = query.bind(item.clone());
        }
        let rows = query.fetch_all(&self.pool).await.map_err(q(ctx.clone()))?;
        let mut by_id = BTreeMap::new();
        for r in &rows {
            let id: String = r.try_get(0).map_err(q(ctx.clone()))?;
            by_id.insert(id, r);
        }
        let mut out = Vec::with_capacity(found.len());
        for (item, same_sender) in found {
            let Some(r) = by_id.get(&item) else { continue };
            out.push(DuplicateCandidate {
                registration_number: r.try_get(1).map_err(q(ctx.clone()))?,
                channel_kind: r.try_get(2).map_err(q(ctx.clone()))?,
                minhash: r.try_get(3).map_err(q(ctx.clone()))?,
                same_sender,
                item_id: item,
            });
        }
        Ok(out)
    }

    /// Stores `fp` (once) and the `links` of its item not stored yet, each
    /// with an audit line on both items; the links that were new.
    pub async fn record_duplicates(
        &self,
        fp: &Fingerprint,
        own_number: &str,
        links: &[DuplicateLink],
    ) -> Result<Vec<DuplicateLink>, RegistryError> {
        let ctx = format!("duplicates of item {}", fp.item_id);
        let received = db_time(fp.received_at);
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        sqlx::query(
            "INSERT INTO duplicate_signatures (item_id, received_at, channel_kind, minhash) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (item_id) DO NOTHING",
        )
        .bind(fp.item_id.clone())
        .bind(received.clone())
        .bind(fp.channel_kind.clone())
        .bind(fp.minhash.clone())
        .execute(&mut *tx)
        .await
        .map_err(q(ctx.clone()))?;
        let mut lookups: Vec<&String> = fp.lookups.iter().collect();
        lookups.sort();
        lookups.dedup();
        if !lookups.is_empty() {
            let sql = multi_insert(
                "INSERT INTO duplicate_keys (lookup, item_id, received_at)",
                lookups.len(),
                3,
                "ON CONFLICT (lookup, item_id) DO NOTHING",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for l in lookups {
                query = query
                    .bind(l.clone())
                    .bind(fp.item_id.clone())
                    .bind(received.clone());
            }
            query.execute(&mut *tx).await.map_err(q(ctx.clone()))?;
        }
        let mut new = Vec::new();
        let now = db_time(Utc::now());
        for link in links {
            let (a, b) = if fp.item_id < link.other_id {
                (&fp.item_id, &link.other_id)
            } else {
                (&link.other_id, &fp.item_id)
            };
            let done = sqlx::query(
                "INSERT INTO duplicate_links (item_a, item_b, percent, reason, found_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (item_a, item_b) DO NOTHING",
            )
            .bind(a.clone())
            .bind(b.clone())
            .bind(link.percent)
            .bind(link.reason.clone())
            .bind(now.clone())
            .execute(&mut *tx)
            .await
            .map_err(q(ctx.clone()))?;
            if done.rows_affected() == 0 {
                continue;
            }
            let about = |number: &str, channel: &str| {
                serde_json::json!({
                    "other": number,
                    "channel": channel,
                    "percent": link.percent,
                    "reason": link.reason,
                })
            };
            let here = about(&link.other_number, &link.other_channel);
            let there = about(own_number, &fp.channel_kind);
            insert_audit(
                &mut tx,
                &fp.item_id,
                "pietura",
                "duplicate_linked",
                &here,
                &ctx,
            )
            .await?;
            insert_audit(
                &mut tx,
                &link.other_id,
                "pietura",
                "duplicate_linked",
                &there,
                &ctx,
            )
            .await?;
            new.push(link.clone());
        }
        tx.commit().await.map_err(q(ctx))?;
        Ok(new)
    }

    /// The items linked to `item_id` as possible duplicates, either way,
    /// in the order they were registered.
    pub async fn duplicates_of(&self, item_id: &str) -> Result<Vec<DuplicateLink>, RegistryError> {
        let ctx = format!("duplicates of item {item_id}");
        let rows = sqlx::query(
            "SELECT i.id, i.registration_number, i.channel_kind, l.percent, l.reason \
             FROM duplicate_links l JOIN items i \
               ON i.id = CASE WHEN l.item_a = $1 THEN l.item_b ELSE l.item_a END \
             WHERE l.item_a = $1 OR l.item_b = $1 ORDER BY i.registered_at, i.id",
        )
        .bind(item_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q(ctx.clone()))?;
        rows.iter()
            .map(|r| {
                Ok(DuplicateLink {
                    other_id: r.try_get(0)?,
                    other_number: r.try_get(1)?,
                    other_channel: r.try_get(2)?,
                    percent: r.try_get(3)?,
                    reason: r.try_get(4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q(ctx))
    }

    /// Which of `ids` have a possible duplicate (for the review queue's mark).
    pub async fn with_duplicates(&self, ids: &[&str]) -> Result<HashSet<String>, RegistryError> {
        let mut out = HashSet::new();
        // Bounded lists: SQLite takes at most 32,766 parameters.
        for chunk in ids.chunks(500) {
            let n = chunk.len();
            let sql = format!(
                "SELECT item_a, item_b FROM duplicate_links \
                 WHERE item_a IN ({}) OR item_b IN ({})",
                numbered(1, n),
                numbered(n + 1, n)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk.iter().chain(chunk) {
                query = query.bind(id.to_string());
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .map_err(q("items with duplicates"))?;
            let wanted: HashSet<&str> = chunk.iter().copied().collect();
            for r in &rows {
                for col in 0..2 {
                    let id: String = r.try_get(col).map_err(q("items with duplicates"))?;
                    if wanted.contains(id.as_str()) {
                        out.insert(id);
                    }
                }
            }
        }
        Ok(out)
    }
}

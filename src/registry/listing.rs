//! The register on the desk: every registered item, filtered, searched
//! and paged, newest first (issue 19).
//!
//! Each item's words (subject, body — a scan's OCR text is its body —
//! and the sender's fields) are folded and stemmed by
//! [`crate::rules::text::index_text`], the rules' own folding, and stored in
//! `item_search` in the registering transaction. A search is folded by the
//! same function, so `buvatlauja` finds `būvatļaujas` on both databases.
//! The full-text index is each database's own, made by [`prepare`] after
//! the migrations: a GIN index on `to_tsvector('simple', search_text)` in
//! PostgreSQL, an FTS5 table filled by triggers (inside the same
//! transaction) in SQLite. A search that looks like a registration number
//! also matches numbers starting so (or with a segment starting so:
//! `2026/17` finds `AN/2026/17`), and those rows come first.

use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use super::register::multi_insert;
use super::{ItemSummary, Registry, RegistryError, SUMMARY_COLUMNS, db_time, q};
use crate::message::IntakeMessage;
use crate::rules::text::index_text;

/// Items indexed per statement when indexing items registered before the
/// register had its search table.
const BACKFILL_BATCH: i64 = 500;

/// Fewer matches than this, and a search takes its matches from the
/// full-text index before looking at the items (PostgreSQL).
const RARE_MATCHES: i64 = 2000;

/// What the register shows: every field is optional, all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct RegisterFilter {
    /// Registered on or after this local (Riga) day.
    pub registered_from: Option<NaiveDate>,
    /// Registered on or before this local day.
    pub registered_to: Option<NaiveDate>,
    pub channel: Option<String>,
    pub unit: Option<String>,
    /// `items.case_code`.
    pub case_code: Option<String>,
    pub state: Option<String>,
    /// `items.formal_status`.
    pub formal_status: Option<String>,
    /// Only open, unpaused items whose deadline was before this day.
    pub overdue_on: Option<NaiveDate>,
    /// Words in any case, with or without diacritics, in any ending; or a
    /// registration number (whole or its beginning).
    pub text: Option<String>,
}

/// One line of the register.
#[derive(Debug, Clone, Serialize)]
pub struct RegisterRow {
    /// The item, its case and formal status included.
    pub item: ItemSummary,
    /// The registration number matched the search (these rows come first).
    pub number_match: bool,
}

/// One page of the register.
#[derive(Debug, Clone)]
pub struct RegisterPage {
    pub rows: Vec<RegisterRow>,
    /// More rows follow this page.
    pub more: bool,
}

/// The words of an item as the search index keeps them.
pub fn search_words(parts: &[Option<&str>]) -> String {
    let text: Vec<&str> = parts.iter().flatten().copied().collect();
    index_text(&text.join("\n"))
}

/// [`search_words`] of a message about to be registered.
pub(super) fn message_words(m: &IntakeMessage) -> String {
    search_words(&[
        m.subject.as_deref(),
        Some(m.body.as_str()),
        m.sender.name.as_deref(),
        m.sender.email.as_deref(),
        m.sender.phone.as_deref(),
        m.sender.postal_address.as_deref(),
    ])
}

type AnyQuery<'q> = Query<'q, sqlx::Any, AnyArguments>;

/// Writes the search words of new items (the caller's transaction).
pub(super) async fn insert_search_words(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rows: &[(String, String)],
    ctx: &str,
) -> Result<(), RegistryError> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = multi_insert(
        "INSERT INTO item_search (item_id, search_text)",
        rows.len(),
        2,
        "ON CONFLICT (item_id) DO NOTHING",
    );
    let mut query: AnyQuery<'_> = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (id, words) in rows {
        query = query.bind(id.clone()).bind(words.clone());
    }
    query
        .execute(&mut **tx)
        .await
        .map(|_| ())
        .map_err(q(ctx.to_string()))
}

/// The dialect's full-text index over `item_search` (idempotent).
pub(super) async fn prepare(reg: &Registry) -> Result<(), RegistryError> {
    let statements: &[&str] = if reg.sqlite {
        &[
            "CREATE VIRTUAL TABLE IF NOT EXISTS item_search_fts USING fts5(\
             item_id UNINDEXED, search_text, tokenize = 'unicode61 remove_diacritics 0')",
            "CREATE TRIGGER IF NOT EXISTS item_search_fts_insert AFTER INSERT ON item_search BEGIN \
             INSERT INTO item_search_fts (item_id, search_text) VALUES (new.item_id, new.search_text); END",
            "CREATE TRIGGER IF NOT EXISTS item_search_fts_delete AFTER DELETE ON item_search BEGIN \
             DELETE FROM item_search_fts WHERE item_id = old.item_id; END",
            "CREATE TRIGGER IF NOT EXISTS item_search_fts_update AFTER UPDATE ON item_search BEGIN \
             DELETE FROM item_search_fts WHERE item_id = old.item_id; \
             INSERT INTO item_search_fts (item_id, search_text) VALUES (new.item_id, new.search_text); END",
        ]
    } else {
        &[
            "CREATE INDEX IF NOT EXISTS item_search_words ON item_search \
             USING GIN (to_tsvector('simple', search_text))",
        ]
    };
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(*s))
            .execute(&reg.pool)
            .await
            .map_err(q("the register's full-text index"))?;
    }
    Ok(())
}

/// Indexes the items that have no search words yet (registered before the
/// register existed), in batches; returns how many.
pub(super) async fn backfill(reg: &Registry) -> Result<u64, RegistryError> {
    let ctx = "indexing the register's earlier items";
    let mut done = 0_u64;
    loop {
        let rows = sqlx::query(
            "SELECT i.id, i.subject, i.body, i.sender_name, i.sender_email, i.sender_phone, \
             i.sender_address FROM items i \
             WHERE NOT EXISTS (SELECT 1 FROM item_search s WHERE s.item_id = i.id) LIMIT $1",
        )
        .bind(BACKFILL_BATCH)
        .fetch_all(&reg.pool)
        .await
        .map_err(q(ctx))?;
        if rows.is_empty() {
            return Ok(done);
        }
        let mut words = Vec::with_capacity(rows.len());
        for r in &rows {
            let text = |c: &str| r.try_get::<Option<String>, _>(c).map_err(q(ctx));
            let body: String = r.try_get("body").map_err(q(ctx))?;
            words.push((
                r.try_get::<String, _>("id").map_err(q(ctx))?,
                search_words(&[
                    text("subject")?.as_deref(),
                    Some(body.as_str()),
                    text("sender_name")?.as_deref(),
                    text("sender_email")?.as_deref(),
                    text("sender_phone")?.as_deref(),
                    text("sender_address")?.as_deref(),
                ]),
            ));
        }
        let mut tx = reg.pool.begin().await.map_err(q(ctx))?;
        insert_search_words(&mut tx, &words, ctx).await?;
        tx.commit().await.map_err(q(ctx))?;
        done += words.len() as u64;
    }
}

/// The first moment of a local (Riga) day, as stored.
fn local_day_start(d: NaiveDate) -> String {
    chrono_tz::Europe::Riga
        .from_local_datetime(&d.and_time(NaiveTime::MIN))
        .earliest()
        .map(|t| db_time(t.with_timezone(&Utc)))
        .unwrap_or_else(|| format!("{d}T00:00:00.000000Z"))
}

/// `text` for a LIKE pattern with `\` as escape.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A search that may be a registration number: digits and no spaces.
fn number_search(text: &str) -> Option<String> {
    let t = text.trim();
    (t.chars().any(|c| c.is_ascii_digit()) && !t.contains(char::is_whitespace))
        .then(|| like_escape(&t.to_uppercase()))
}

/// The statement's text and its text arguments, numbered as added.
#[derive(Default)]
struct RegisterArgs {
    args: Vec<String>,
    /// `WITH …` before the statement (rare words' matches, PostgreSQL).
    with_: String,
}

impl RegisterArgs {
    fn arg(&mut self, value: String) -> String {
        self.args.push(value);
        format!("${}", self.args.len())
    }
}

impl Registry {
    /// The register's `WHERE` conditions, the number-match expression and
    /// the order (number matches first when a number is searched).
    ///
    /// `rare`: the words match few items, so their matches are taken from
    /// the full-text index first; otherwise PostgreSQL may walk the items
    /// newest first and check each, which finds a page of a common word at
    /// once but reads the whole register for a word that is nowhere.
    fn register_conditions(
        &self,
        f: &RegisterFilter,
        st: &mut RegisterArgs,
        rare: bool,
    ) -> (String, String, &'static str) {
        let mut cond: Vec<String> = Vec::new();
        if let Some(d) = f.registered_from {
            cond.push(format!("i.registered_at >= {}", st.arg(local_day_start(d))));
        }
        if let Some(d) = f.registered_to
            && let Some(next) = d.succ_opt()
        {
            cond.push(format!(
                "i.registered_at < {}",
                st.arg(local_day_start(next))
            ));
        }
        for (column, value) in [
            ("i.channel_kind", &f.channel),
            ("i.unit_id", &f.unit),
            ("i.case_code", &f.case_code),
            ("i.state", &f.state),
            ("i.formal_status", &f.formal_status),
        ] {
            if let Some(v) = value {
                cond.push(format!("{column} = {}", st.arg(v.clone())));
            }
        }
        if let Some(today) = f.overdue_on {
            cond.push(format!(
                "i.closed_at IS NULL AND i.paused_since IS NULL \
                 AND COALESCE(i.forward_due, i.reply_due) < {}",
                st.arg(today.to_string())
            ));
        }
        let mut number = "CAST(0 AS BIGINT)".to_string();
        if let Some(text) = &f.text {
            let terms: Vec<String> = index_text(text)
                .split(' ')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            let words = (!terms.is_empty()).then(|| {
                if self.sqlite {
                    let fts: Vec<String> = terms.iter().map(|t| format!("\"{t}\"")).collect();
                    format!(
                        "i.id IN (SELECT item_id FROM item_search_fts WHERE item_search_fts MATCH {})",
                        st.arg(fts.join(" "))
                    )
                } else {
                    let matches = format!(
                        "SELECT s.item_id FROM item_search s WHERE \
                         to_tsvector('simple', s.search_text) @@ plainto_tsquery('simple', {})",
                        st.arg(terms.join(" "))
                    );
                    if rare {
                        st.with_ = format!("WITH matched AS MATERIALIZED ({matches})");
                        "i.id IN (SELECT item_id FROM matched)".to_string()
                    } else {
                        format!("i.id IN ({matches})")
                    }
                }
            });
            let numbers = number_search(text).map(|n| {
                let (start, slash, dash) = (
                    st.arg(format!("{n}%")),
                    st.arg(format!("%/{n}%")),
                    st.arg(format!("%-{n}%")),
                );
                format!(
                    "(UPPER(i.registration_number) LIKE {start} ESCAPE '\\' \
                     OR UPPER(i.registration_number) LIKE {slash} ESCAPE '\\' \
                     OR UPPER(i.registration_number) LIKE {dash} ESCAPE '\\')"
                )
            });
            match (words, numbers) {
                (Some(w), Some(n)) => {
                    cond.push(format!("({w} OR {n})"));
                    number = format!("CAST(CASE WHEN {n} THEN 1 ELSE 0 END AS BIGINT)");
                }
                (Some(w), None) => cond.push(w),
                (None, Some(n)) => {
                    cond.push(n.clone());
                    number = format!("CAST(CASE WHEN {n} THEN 1 ELSE 0 END AS BIGINT)");
                }
                (None, None) => {}
            }
        }
        let where_ = if cond.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", cond.join(" AND "))
        };
        let order = if number.contains("CASE") {
            "number_match DESC, i.registered_at DESC, i.id DESC"
        } else {
            "i.registered_at DESC, i.id DESC"
        };
        (where_, number, order)
    }

    /// The register's rows matching `f`: number matches first, then newest
    /// first; `limit` rows from `offset`, or every row when `limit` is None.
    async fn register_rows(
        &self,
        f: &RegisterFilter,
        offset: i64,
        limit: Option<i64>,
    ) -> Result<Vec<RegisterRow>, RegistryError> {
        let ctx = "the register";
        let mut st = RegisterArgs::default();
        let rare = self.rare_words(f).await?;
        let (where_, number, order) = self.register_conditions(f, &mut st, rare);
        let page = match limit {
            Some(n) => format!("LIMIT {} OFFSET {}", n.clamp(1, 10_000), offset.max(0)),
            None => String::new(),
        };
        let sql = format!(
            "{} SELECT {SUMMARY_COLUMNS}, {number} AS number_match \
             FROM items i {where_} ORDER BY {order} {page}",
            st.with_
        );
        let mut query: AnyQuery<'_> = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in st.args {
            query = query.bind(a);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(q(ctx))?;
        rows.iter()
            .map(|r| {
                Ok(RegisterRow {
                    item: ItemSummary::from_row(r)?,
                    number_match: r.try_get::<i64, _>("number_match")? != 0,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q(ctx))
    }

    /// PostgreSQL: whether the searched words match fewer than
    /// [`RARE_MATCHES`] items (one index probe, stopped there).
    async fn rare_words(&self, f: &RegisterFilter) -> Result<bool, RegistryError> {
        let terms = f.text.as_deref().map(index_text).unwrap_or_default();
        if self.sqlite || terms.is_empty() {
            return Ok(false);
        }
        let found: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM item_search s WHERE \
             to_tsvector('simple', s.search_text) @@ plainto_tsquery('simple', $1) \
             LIMIT {RARE_MATCHES}) m"
        )))
        .bind(terms)
        .fetch_one(&self.pool)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(q("the register's search"))?;
        Ok(found < RARE_MATCHES)
    }

    /// One page of the register: `size` rows after `offset`.
    pub async fn register_page(
        &self,
        f: &RegisterFilter,
        offset: i64,
        size: i64,
    ) -> Result<RegisterPage, RegistryError> {
        let size = size.clamp(1, 1000);
        let mut rows = self.register_rows(f, offset, Some(size + 1)).await?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        Ok(RegisterPage { rows, more })
    }

    /// Every row of the register matching `f` (the exports).
    pub async fn register_all(
        &self,
        f: &RegisterFilter,
    ) -> Result<Vec<RegisterRow>, RegistryError> {
        self.register_rows(f, 0, None).await
    }

    /// The query plan of a register search (the benchmark and its test
    /// check that the full-text index is used).
    pub async fn register_plan(
        &self,
        f: &RegisterFilter,
        size: i64,
    ) -> Result<String, RegistryError> {
        let mut st = RegisterArgs::default();
        let rare = self.rare_words(f).await?;
        let (where_, number, order) = self.register_conditions(f, &mut st, rare);
        let explain = if self.sqlite {
            "EXPLAIN QUERY PLAN"
        } else {
            "EXPLAIN"
        };
        let sql = format!(
            "{explain} {} SELECT i.id, {number} AS number_match FROM items i {where_} \
             ORDER BY {order} LIMIT {}",
            st.with_,
            size.clamp(1, 1000)
        );
        let mut query: AnyQuery<'_> = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in st.args {
            query = query.bind(a);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(q("the register's query plan"))?;
        let column = usize::from(self.sqlite) * 3;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>(column).ok())
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_searched_as_escaped_prefixes() {
        assert_eq!(number_search(" an/2026/17 ").as_deref(), Some("AN/2026/17"));
        assert_eq!(number_search("1_2%").as_deref(), Some("1\\_2\\%"));
        assert_eq!(number_search("būvatļauja"), None);
        assert_eq!(number_search("iela 17"), None);
    }

    #[test]
    fn local_days_start_at_riga_midnight() {
        let d = NaiveDate::from_ymd_opt(2026, 7, 1).expect("date");
        assert_eq!(local_day_start(d), "2026-06-30T21:00:00.000000Z");
        let w = NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
        assert_eq!(local_day_start(w), "2026-11-30T22:00:00.000000Z");
    }

    #[test]
    fn search_words_join_every_field() {
        assert_eq!(
            search_words(&[Some("Būvatļaujas"), None, Some("Jānis Bērziņš")]),
            "buvatlauj jan berzin"
        );
    }
}

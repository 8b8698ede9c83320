//! The register's search on a large PostgreSQL registry (issue 19): the
//! first page of a filtered full-text search, p50/p95 over rotating
//! queries, against the unfiltered first page measured in the same run.
//!
//! `scripts/bench-register.sh` runs it. It works in its own database
//! (`pietura_bench_register`, created when missing, filled once with
//! `generate_series` and kept for later runs), never in the tests'.
//!
//! Environment: `PIETURA_TEST_DATABASE_URL` (the admin connection, as for
//! the tests), `BENCH_ITEMS` (default 1,000,000), `BENCH_QUERIES` (50).

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::NaiveDate;
use pietura::registry::Registry;
use pietura::registry::listing::RegisterFilter;
use pietura::rules::text::index_text;
use sqlx::Connection;

const DATABASE: &str = "pietura_bench_register";

/// Words of the generated subjects and bodies (with their diacritics).
const WORDS: &[&str] = &[
    "būvatļauja",
    "pabalsts",
    "iesniegums",
    "sūdzība",
    "ceļš",
    "apgaismojums",
    "atkritumi",
    "nodoklis",
    "zemesgabals",
    "īre",
    "dzīvoklis",
    "skola",
    "bērnudārzs",
    "sports",
    "kultūra",
    "ūdensvads",
    "kanalizācija",
    "koks",
    "zāģēšana",
    "parks",
    "autobuss",
    "pietura",
    "laterna",
    "bedre",
    "trotuārs",
    "sniegs",
    "tīrīšana",
    "dzīvnieks",
    "suns",
    "troksnis",
    "kaimiņš",
    "licence",
    "tirdzniecība",
    "reklāma",
    "pasākums",
    "atļauja",
    "izziņa",
    "deklarācija",
    "adrese",
    "pirts",
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn array(words: &[String]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    format!("ARRAY[{}]", quoted.join(","))
}

/// Fills `items` and `item_search` with `n` items after the `from`th,
/// in one statement each; the search words are the Rust function's stems
/// of the same words, so the search sees what registration would store.
async fn fill(reg: &Registry, from: i64, n: i64) -> anyhow::Result<()> {
    let words: Vec<String> = WORDS.iter().map(|w| w.to_string()).collect();
    let stems: Vec<String> = WORDS.iter().map(|w| index_text(w)).collect();
    let filler = "Lūdzu izskatīt manu iesniegumu un sniegt atbildi.";
    let filler_stems = index_text(filler);
    let n_words = WORDS.len();
    // Word k of item i: a different spread for each position.
    let pick = |arr: &str, mul: i64| format!("({arr})[((i * {mul}) % {n_words}) + 1]");
    let (w, s) = (array(&words), array(&stems));
    let sql = format!(
        "INSERT INTO items (id, idempotency_key, registration_number, series, reg_year, reg_seq, \
         channel_kind, channel_instance, received_at, registered_at, state, unit_id, ruleset_version, \
         priority, tags, reply_due, sender_name, subject, body, message_json, decision_json, \
         case_code, formal_status) \
         SELECT 'bench-' || lpad(i::text, 9, '0'), 'bench:' || i, \
         ((i % 10) + 1) || '/2026/' || i, ((i % 10) + 1)::text, 2026, i, \
         (ARRAY['web_form','email','scan','sms','e_adrese'])[(i % 5) + 1], 'bench', t, t, \
         (ARRAY['routed','routed','routed','review','forwarding','discarded','routed'])[(i % 7) + 1], \
         (ARRAY['kanceleja','finanses','attistiba','buvvalde','komunala','izglitiba','socialais'])[(i % 7) + 1], \
         'bench', 'normal', '[]', to_char(ts + interval '20 days', 'YYYY-MM-DD'), \
         'Iedzīvotājs ' || i, {w1} || ' ' || {w2}, {w3} || ' ' || {w4} || '. {filler}', '{{}}', '{{}}', \
         ((i % 12) + 1) || '-' || ((i % 5) + 1), \
         (ARRAY['e_signed','unsigned_email','form','sms','signed_paper'])[(i % 5) + 1] \
         FROM (SELECT i, ts, to_char(ts, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS t FROM \
               (SELECT i, timestamp '2025-01-01' + i * interval '30 seconds' AS ts \
                FROM generate_series($1::bigint, $2::bigint) AS i) g) x",
        w1 = pick(&w, 7919),
        w2 = pick(&w, 104_729),
        w3 = pick(&w, 1_299_709),
        w4 = pick(&w, 15_485_863),
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(from + 1)
        .bind(from + n)
        .execute(reg.pool())
        .await
        .context("items")?;
    let sql = format!(
        "INSERT INTO item_search (item_id, search_text) \
         SELECT 'bench-' || lpad(i::text, 9, '0'), \
         {s1} || ' ' || {s2} || ' ' || {s3} || ' ' || {s4} || ' {filler_stems} iedzivotaj ' || i \
         FROM generate_series($1::bigint, $2::bigint) AS i",
        s1 = pick(&s, 7919),
        s2 = pick(&s, 104_729),
        s3 = pick(&s, 1_299_709),
        s4 = pick(&s, 15_485_863),
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(from + 1)
        .bind(from + n)
        .execute(reg.pool())
        .await
        .context("search words")?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// p50 and p95 in ms of the first page for each filter.
async fn measure(reg: &Registry, filters: &[RegisterFilter]) -> anyhow::Result<(f64, f64, f64)> {
    let mut times = Vec::with_capacity(filters.len());
    let mut rows = 0_usize;
    for f in filters {
        let start = Instant::now();
        let page = reg.register_page(f, 0, 50).await?;
        times.push(start.elapsed());
        rows += page.rows.len();
    }
    times.sort();
    Ok((
        percentile(&times, 0.5),
        percentile(&times, 0.95),
        rows as f64 / filters.len() as f64,
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let items: i64 = env_or("BENCH_ITEMS", 1_000_000);
    let queries: usize = env_or("BENCH_QUERIES", 50);
    let admin = std::env::var("PIETURA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://pietura:pietura@127.0.0.1:5432/pietura_test".into());
    let (base, _) = admin.rsplit_once('/').context("database URL has a path")?;
    let url = format!("{base}/{DATABASE}");
    {
        let mut conn = sqlx::PgConnection::connect(&admin).await?;
        let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(DATABASE)
            .fetch_optional(&mut conn)
            .await?;
        if exists.is_none() {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}")))
                .execute(&mut conn)
                .await?;
        }
    }
    let reg = Registry::connect(&url, Some(2)).await?;
    reg.migrate().await?;
    let have = reg.count().await?;
    if have < items {
        let start = Instant::now();
        // Bulk load without the full-text index, built once afterwards.
        sqlx::query("DROP INDEX IF EXISTS item_search_words")
            .execute(reg.pool())
            .await?;
        let mut from = have;
        while from < items {
            let n = (items - from).min(250_000);
            fill(&reg, from, n).await?;
            from += n;
            eprintln!("{from} items");
        }
        reg.migrate().await?;
        sqlx::query("ANALYZE").execute(reg.pool()).await?;
        eprintln!("filled in {:.0} s", start.elapsed().as_secs_f64());
    }
    let total = reg.count().await?;

    // Searches as an officer types them (another ending, no diacritics),
    // each with a channel and a month of registration, rotating.
    let typed = [
        "būvatļaujas",
        "pabalstu",
        "sudzibu",
        "ceļa",
        "apgaismojumu",
        "atkritumiem",
        "nodokli",
        "dzivokli",
        "kanalizacijas",
        "zāģēšanu",
        "laternas",
        "bedri",
        "sniega tirisana",
        "suni",
        "kaimiņa troksnis",
        "licences",
        "izzinas",
        "pirts",
    ];
    let channels = ["email", "web_form", "scan", "sms", "e_adrese"];
    let month = |k: usize| {
        let m = (k % 11) as u32 + 1;
        (
            NaiveDate::from_ymd_opt(2025, m, 1).unwrap_or_default(),
            NaiveDate::from_ymd_opt(2025, m + 1, 1)
                .and_then(|d| d.pred_opt())
                .unwrap_or_default(),
        )
    };
    let filtered: Vec<RegisterFilter> = (0..queries)
        .map(|k| {
            let (from, to) = month(k);
            RegisterFilter {
                text: Some(typed[k % typed.len()].to_string()),
                channel: Some(channels[k % channels.len()].to_string()),
                registered_from: Some(from),
                registered_to: Some(to),
                ..RegisterFilter::default()
            }
        })
        .collect();
    let text_only: Vec<RegisterFilter> = (0..queries)
        .map(|k| RegisterFilter {
            text: Some(typed[k % typed.len()].to_string()),
            ..RegisterFilter::default()
        })
        .collect();
    let unfiltered = vec![RegisterFilter::default(); queries];

    // Warm the caches once, as a daemon that has been running would be.
    measure(&reg, &filtered[..filtered.len().min(5)]).await?;
    let (b50, b95, b_rows) = measure(&reg, &unfiltered).await?;
    let (f50, f95, f_rows) = measure(&reg, &filtered).await?;
    let (t50, t95, t_rows) = measure(&reg, &text_only).await?;
    let plan = reg.register_plan(&filtered[0], 50).await?;
    println!("{plan}\n");
    // A word that is nowhere must not read the whole register.
    let nowhere = RegisterFilter {
        text: Some("sniega tīrīšanu".into()),
        ..RegisterFilter::default()
    };
    let rare_plan = reg.register_plan(&nowhere, 50).await?;
    println!("{rare_plan}\n");
    println!("items: {total}, queries per kind: {queries}");
    println!("| first page of | p50 ms | p95 ms | rows |");
    println!("|---|---|---|---|");
    println!("| unfiltered (baseline) | {b50:.1} | {b95:.1} | {b_rows:.0} |");
    println!("| full-text + channel + month | {f50:.1} | {f95:.1} | {f_rows:.0} |");
    println!("| full-text only | {t50:.1} | {t95:.1} | {t_rows:.0} |");
    println!(
        "filtered p95 / baseline p95: {:.2}; target p95 <= 300 ms: {}",
        f95 / b95.max(0.001),
        if f95 <= 300.0 { "met" } else { "NOT met" }
    );
    anyhow::ensure!(
        rare_plan.contains("item_search_words"),
        "a rare word's search does not use the full-text index:\n{rare_plan}"
    );
    Ok(())
}

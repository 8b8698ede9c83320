//! The register on the desk (issue 19), on SQLite and on PostgreSQL: the
//! full-text search folds case, diacritics and Latvian endings as the
//! rules do, a registration number is found whole or by its beginning and
//! ranks first; the filters, stable paging, the CSV and XLSX exports of the
//! whole selection, the roles, and items indexed again at start-up.
//! The browser-level search is in tests/browser.rs; the 1,000,000-item
//! benchmark in examples/bench_register.rs.

mod support;

use std::io::Cursor;

use calamine::Reader;
use pietura::registry::ItemSummary;
use pietura::registry::listing::{RegisterFilter, RegisterRow};
use support::desk::{DeskClient, OFFICER, READER, add_accounts};
use support::{Backend, Options, TestEnv};

fn search(text: &str) -> RegisterFilter {
    RegisterFilter {
        text: Some(text.to_string()),
        ..RegisterFilter::default()
    }
}

async fn rows(env: &TestEnv, f: &RegisterFilter) -> Vec<RegisterRow> {
    env.daemon
        .registry
        .register_all(f)
        .await
        .unwrap_or_else(|e| panic!("register {f:?}: {e}"))
}

async fn ids(env: &TestEnv, f: &RegisterFilter) -> Vec<String> {
    let mut ids: Vec<String> = rows(env, f).await.into_iter().map(|r| r.item.id).collect();
    ids.sort();
    ids
}

fn sorted(items: &[&ItemSummary]) -> Vec<String> {
    let mut ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
    ids.sort();
    ids
}

struct Items {
    permit: ItemSummary,
    plain: ItemSummary,
    coffee: ItemSummary,
    reference: ItemSummary,
}

/// Four web-form items from Anna Kalniņa; the permit's case and formal
/// status set as registration fills them, the coffee item overdue.
async fn items(env: &TestEnv) -> Items {
    let permit = env
        .submit_item(
            "Būvatļaujas izsniegšana",
            "Lūdzu izsniegt būvatļauju pirts būvniecībai Subatē.",
        )
        .await;
    let plain = env
        .submit_item(
            "Buvatlauja",
            "rakstu bez garumzimem: vajag buvatlauju kutij",
        )
        .await;
    let coffee = env.submit_item("Sveiki", "Vai jums garšo kafija?").await;
    let reference = env
        .submit_item(
            "Atbilde",
            &format!(
                "Atsaucoties uz {} — paldies par ziņu.",
                permit.registration_number
            ),
        )
        .await;
    let pool = env.daemon.registry.pool();
    sqlx::query("UPDATE items SET case_code = $1, formal_status = $2 WHERE id = $3")
        .bind("4-2.1")
        .bind("unsigned_email")
        .bind(&permit.id)
        .execute(pool)
        .await
        .expect("case and formal status");
    sqlx::query(
        "UPDATE items SET reply_due = $1, forward_due = NULL, closed_at = NULL, paused_since = NULL WHERE id = $2",
    )
    .bind("2020-01-02")
    .bind(&coffee.id)
    .execute(pool)
    .await
    .expect("an overdue item");
    Items {
        permit,
        plain,
        coffee,
        reference,
    }
}

async fn search_filters_and_paging(env: &TestEnv, it: &Items) {
    let permits = sorted(&[&it.permit, &it.plain]);
    // Endings, diacritics and case are folded as the rules fold them.
    for q in ["buvatlauja", "būvatļaujas", "BŪVATĻAUJU", "Buvatlaujai"] {
        assert_eq!(ids(env, &search(q)).await, permits, "{q}");
    }
    assert_eq!(
        ids(env, &search("būvatļauja izsniegšanu")).await,
        sorted(&[&it.permit]),
        "every word must match"
    );
    assert_eq!(ids(env, &search("kafiju")).await, sorted(&[&it.coffee]));
    // The sender's fields are searched too.
    assert_eq!(ids(env, &search("Kalniņai")).await.len(), 4);
    assert!(ids(env, &search("nekas tāds")).await.is_empty());

    // A registration number, whole or its end segments' beginning, comes
    // first; the item whose text cites it follows.
    let number = it.permit.registration_number.clone();
    let found = rows(env, &search(&number)).await;
    assert_eq!(found[0].item.id, it.permit.id, "{number}: {found:?}");
    assert!(found[0].number_match);
    let cited = found
        .iter()
        .find(|r| r.item.id == it.reference.id)
        .expect("the item citing the number");
    assert!(!cited.number_match);
    let (_, tail) = number.split_once('/').expect("a number with a series");
    let found = rows(env, &search(tail)).await;
    assert!(
        found
            .iter()
            .take_while(|r| r.number_match)
            .any(|r| r.item.id == it.permit.id),
        "{tail}: {found:?}"
    );
    assert!(found.iter().any(|r| r.item.id == it.reference.id));

    // Filters.
    let all = sorted(&[&it.permit, &it.plain, &it.coffee, &it.reference]);
    let f = |g: fn(&mut RegisterFilter)| {
        let mut f = RegisterFilter::default();
        g(&mut f);
        f
    };
    assert_eq!(ids(env, &RegisterFilter::default()).await, all);
    assert_eq!(
        ids(env, &f(|f| f.channel = Some("web_form".into()))).await,
        all
    );
    assert!(
        ids(env, &f(|f| f.channel = Some("sms".into())))
            .await
            .is_empty()
    );
    assert_eq!(
        ids(env, &f(|f| f.case_code = Some("4-2.1".into()))).await,
        sorted(&[&it.permit])
    );
    assert_eq!(
        ids(env, &f(|f| f.formal_status = Some("unsigned_email".into()))).await,
        sorted(&[&it.permit])
    );
    let today = pietura::deadline::local_date(chrono::Utc::now());
    let overdue = RegisterFilter {
        overdue_on: Some(today),
        ..RegisterFilter::default()
    };
    assert_eq!(ids(env, &overdue).await, sorted(&[&it.coffee]));
    let state = RegisterFilter {
        state: Some(it.coffee.state.clone()),
        ..RegisterFilter::default()
    };
    assert!(ids(env, &state).await.contains(&it.coffee.id));
    if let Some(unit) = &it.permit.unit_id {
        let mut by_unit = RegisterFilter {
            unit: Some(unit.clone()),
            ..RegisterFilter::default()
        };
        assert!(ids(env, &by_unit).await.contains(&it.permit.id));
        by_unit.unit = Some("nav-tadas".into());
        assert!(ids(env, &by_unit).await.is_empty());
    }
    let mut period = RegisterFilter {
        registered_from: Some(today),
        registered_to: Some(today),
        ..RegisterFilter::default()
    };
    assert_eq!(ids(env, &period).await, all);
    period.registered_from = today.succ_opt();
    period.registered_to = None;
    assert!(ids(env, &period).await.is_empty());
    period.registered_from = None;
    period.registered_to = today.pred_opt();
    assert!(ids(env, &period).await.is_empty());
    // Filters and search together.
    let mut both = search("buvatlauju");
    both.case_code = Some("4-2.1".into());
    assert_eq!(ids(env, &both).await, sorted(&[&it.permit]));

    // Pages of 3: every item once, newest first, the same order again.
    let reg = &env.daemon.registry;
    let everything = RegisterFilter::default();
    let first = reg.register_page(&everything, 0, 3).await.expect("page 1");
    let second = reg.register_page(&everything, 3, 3).await.expect("page 2");
    assert_eq!((first.rows.len(), first.more), (3, true));
    assert_eq!((second.rows.len(), second.more), (1, false));
    let paged: Vec<String> = first
        .rows
        .iter()
        .chain(&second.rows)
        .map(|r| r.item.id.clone())
        .collect();
    let whole: Vec<String> = rows(env, &everything)
        .await
        .into_iter()
        .map(|r| r.item.id)
        .collect();
    assert_eq!(paged, whole);
    let times: Vec<&str> = first
        .rows
        .iter()
        .chain(&second.rows)
        .map(|r| r.item.registered_at.as_str())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert_eq!(whole[0], it.reference.id, "newest first");

    // The full-text index is the one searched.
    let plan = reg
        .register_plan(&search("buvatlauja"), 50)
        .await
        .expect("plan");
    if env.daemon.registry.is_sqlite() {
        assert!(plan.contains("item_search_fts"), "{plan}");
    }
}

async fn desk_pages_and_exports(env: &TestEnv, it: &Items) {
    let reader = DeskClient::new(env);
    assert_eq!(reader.sign_in(READER.0, READER.1).await, 303);
    let (status, page) = reader.page("/desk/register?q=buvatlauja").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&it.permit.registration_number), "{page}");
    assert!(page.contains(&it.plain.registration_number));
    assert!(!page.contains(&it.coffee.registration_number));
    assert!(page.contains(&format!("href=\"/desk/items/{}\"", it.permit.id)));
    assert!(
        page.contains("Reģistrs") && page.contains("4-2.1"),
        "{page}"
    );
    // Formal statuses in words; the filters offer the scheme's cases.
    assert!(
        page.contains("e-pasts bez e-paraksta") && page.contains("tīmekļa veidlapa"),
        "{page}"
    );
    assert!(page.contains("<option value=\"1-10\""), "{page}");
    let (_, english) = reader.page("/desk/register?lang=en&state=nope").await;
    assert!(
        english.contains("Register") && english.contains("Nothing matches the filters."),
        "{english}"
    );

    // The CSV: a byte-order mark for Excel, Latvian text intact, every match.
    let r = reader
        .get("/desk/register.csv?lang=lv&q=b%C5%ABvat%C4%BCauja")
        .await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap_or_default()
            .contains("register.csv")
    );
    let bytes = r.bytes().await.expect("CSV");
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
    let mut csv = csv::Reader::from_reader(&bytes[3..]);
    let header = csv.headers().expect("CSV header").clone();
    assert_eq!(&header[0], "Reģ. nr.");
    assert_eq!(&header[7], "Formālais statuss");
    let records: Vec<csv::StringRecord> = csv.records().map(|r| r.expect("CSV row")).collect();
    assert_eq!(records.len(), 2);
    let permit = records
        .iter()
        .find(|r| &r[0] == it.permit.registration_number.as_str())
        .expect("the permit's row");
    assert_eq!(&permit[3], "Anna Kalniņa");
    assert_eq!(&permit[4], "Būvatļaujas izsniegšana");
    assert_eq!(&permit[6], "4-2.1");
    // In the officer's language, like the page.
    assert_eq!(&permit[7], "e-pasts bez e-paraksta");

    // The XLSX of the whole register (no filter), read back.
    let r = reader.get("/desk/register.xlsx?lang=lv").await;
    assert_eq!(r.status().as_u16(), 200);
    let bytes = r.bytes().await.expect("XLSX").to_vec();
    let mut book: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(Cursor::new(bytes)).expect("an XLSX workbook");
    let sheet = book
        .worksheet_range("Reģistrs")
        .expect("the register sheet");
    let cells: Vec<Vec<String>> = sheet
        .rows()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    assert_eq!(cells.len(), 5, "{cells:?}");
    assert_eq!(cells[0][4], "Temats");
    let permit = cells
        .iter()
        .find(|r| r[0] == it.permit.registration_number)
        .expect("the permit's row");
    assert_eq!(permit[4], "Būvatļaujas izsniegšana");
    assert_eq!(permit[6], "4-2.1");
    assert!(cells.iter().any(|r| r[4] == "Sveiki" && r[6].is_empty()));

    // An officer sees it too; a unit's member does not.
    let officer = DeskClient::new(env);
    assert_eq!(officer.sign_in(OFFICER.0, OFFICER.1).await, 303);
    assert_eq!(officer.page("/desk/register").await.0, 200);
    pietura::desk::auth::add_or_update_user(
        &env.daemon.registry,
        "vieniba",
        "Vienības Loceklis",
        "unit",
        "vienibas-parole-2026",
    )
    .await
    .expect("a unit's member");
    let member = DeskClient::new(env);
    assert_eq!(member.sign_in("vieniba", "vienibas-parole-2026").await, 303);
    for path in [
        "/desk/register",
        "/desk/register.csv",
        "/desk/register.xlsx",
    ] {
        assert_eq!(member.get(path).await.status().as_u16(), 403, "{path}");
    }
    let anonymous = DeskClient::new(env);
    assert_eq!(
        anonymous.get("/desk/register.csv").await.status().as_u16(),
        303
    );
}

/// Items registered before the search table existed are indexed at start-up.
async fn earlier_items_indexed_at_start(env: &TestEnv, it: &Items) {
    let reg = &env.daemon.registry;
    sqlx::query("DELETE FROM item_search")
        .execute(reg.pool())
        .await
        .expect("forget the search words");
    assert!(ids(env, &search("buvatlauja")).await.is_empty());
    reg.migrate().await.expect("start-up indexing");
    assert_eq!(
        ids(env, &search("buvatlauja")).await,
        sorted(&[&it.permit, &it.plain])
    );
}

async fn register_on(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;
    add_accounts(&env).await;
    let it = items(&env).await;
    search_filters_and_paging(&env, &it).await;
    desk_pages_and_exports(&env, &it).await;
    earlier_items_indexed_at_start(&env, &it).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_search_filters_paging_and_exports_on_sqlite() {
    register_on(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_search_filters_paging_and_exports_on_postgres() {
    register_on(Backend::Amqp).await;
}

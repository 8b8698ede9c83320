//! Issue 17, trust at the item API and behind proxies, on a running daemon
//! (PostgreSQL + RabbitMQ, and SQLite + the embedded queue):
//! no credential → 401 even from loopback (unless the development flag is
//! on); scoped clients see and act on their units' items only, with the
//! actions they were given, and the audit log names the client whatever
//! the body says; a revoked token is refused; the CLI issues, lists and
//! revokes clients; the form's rate limit keys on the client behind a
//! trusted proxy and ignores forwarded headers from anyone else.

mod support;

use std::net::IpAddr;
use std::process::Output;

use pietura::api_clients::{self, ApiAction, UnitScope};
use serde_json::json;
use support::{Backend, Options, TestEnv, api_http};

const BUILDING: (&str, &str) = (
    "Būvatļauja",
    "Lūdzu izsniegt būvatļauju šķūņa būvniecībai Bebrenes pagastā.",
);
const SOCIAL: (&str, &str) = (
    "Pabalsts",
    "Lūdzu piešķirt pabalsts trūcīgas ģimenes statusam, jo esmu bez darba.",
);
const NOBODYS: (&str, &str) = ("Sveiki", "Vai jums garšo kafija?");

/// GET with `http`; the status and the JSON answer.
async fn get(http: &reqwest::Client, url: String) -> (u16, serde_json::Value) {
    let resp = http
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// POST JSON with `http`; the status and the JSON answer.
async fn post(
    http: &reqwest::Client,
    url: String,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let resp = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_without_a_credential_gets_401() {
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    let item = env.submit_item(BUILDING.0, BUILDING.1).await;
    let anonymous = reqwest::Client::new();
    for path in [
        "/api/v1/items".to_string(),
        format!("/api/v1/items/{}", item.id),
        format!("/api/v1/items/{}/explanation", item.id),
        "/api/v1/deadlines".to_string(),
    ] {
        let (status, body) = get(&anonymous, format!("{}{path}", env.base)).await;
        assert_eq!(
            status, 401,
            "GET {path} from loopback without a token: {body}"
        );
        assert!(body["error"].is_string(), "{body}");
    }
    for (path, body) in [
        (
            format!("/api/v1/items/{}/close", item.id),
            json!({ "actor": "anyone" }),
        ),
        (
            format!("/api/v1/items/{}/deadline/pause", item.id),
            json!({ "reason": "x" }),
        ),
        (
            "/api/v1/calendar/holidays".to_string(),
            json!({ "date": "2099-12-01", "name": "x" }),
        ),
    ] {
        let (status, answer) = post(&anonymous, format!("{}{path}", env.base), body).await;
        assert_eq!(status, 401, "POST {path} without a token: {answer}");
    }
    let (status, _) = get(
        &api_http("pietura_not-a-token"),
        format!("{}/api/v1/items", env.base),
    )
    .await;
    assert_eq!(status, 401, "an unknown token");
    // Nothing happened to the item.
    let after = env
        .daemon
        .registry
        .find(&item.id)
        .await
        .expect("find")
        .expect("item");
    assert!(after.closed_at.is_none() && after.paused_since.is_none());
    // The tests' own client is let in.
    let (status, _) = get(&env.http, format!("{}/api/v1/items", env.base)).await;
    assert_eq!(status, 200);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_flag_lets_loopback_in_but_not_a_proxy_s_clients() {
    let env = TestEnv::start(Options {
        tweak: Some(Box::new(|s: &mut pietura::config::Settings| {
            s.http.dev_trust_loopback = true;
            s.http.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
        })),
        ..Options::new(Backend::Embedded)
    })
    .await;
    let item = env.submit_item(BUILDING.0, BUILDING.1).await;
    let anonymous = reqwest::Client::new();
    let (status, body) = get(&anonymous, format!("{}/api/v1/items/{}", env.base, item.id)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &anonymous,
        format!("{}/api/v1/items/{}/close", env.base, item.id),
        json!({ "actor": "janis" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let audit = env.daemon.registry.audit_of(&item.id).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|a| a.1 == "dev-loopback" && a.2 == "closed"),
        "{audit:?}"
    );
    // A citizen reaching us through the (trusted) proxy on this host is not loopback.
    let resp = anonymous
        .get(format!("{}/api/v1/items", env.base))
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 401);
    env.stop().await;
}

async fn scoped_clients_reach_their_units_only(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;
    let ours = env.submit_item(BUILDING.0, BUILDING.1).await;
    let theirs = env.submit_item(SOCIAL.0, SOCIAL.1).await;
    let nobodys = env.submit_item(NOBODYS.0, NOBODYS.1).await;
    assert_eq!(ours.unit_id.as_deref(), Some("buvvalde"));
    assert_eq!(theirs.unit_id.as_deref(), Some("socialais"));
    assert_eq!(nobodys.unit_id, None, "in review: {nobodys:?}");

    let (_, token) = api_clients::add(
        &env.daemon.registry,
        "buvvalde-portal",
        UnitScope::Only(["buvvalde".to_string()].into_iter().collect()),
        [ApiAction::Read, ApiAction::Close, ApiAction::Decide]
            .into_iter()
            .collect(),
    )
    .await
    .expect("client");
    let unit = api_http(&token);
    let url = |p: &str| format!("{}{p}", env.base);

    let (status, body) = get(&unit, url(&format!("/api/v1/items/{}", ours.id))).await;
    assert_eq!(status, 200, "{body}");
    for other in [&theirs, &nobodys] {
        for path in [
            format!("/api/v1/items/{}", other.id),
            format!(
                "/api/v1/items/{}",
                other.registration_number.replace('/', "%2F")
            ),
            format!("/api/v1/items/{}/explanation", other.id),
        ] {
            let (status, body) = get(&unit, url(&path)).await;
            assert_eq!(
                status, 404,
                "{path}: another unit's item is not there: {body}"
            );
        }
        let (status, body) = post(
            &unit,
            url(&format!("/api/v1/items/{}/close", other.id)),
            json!({}),
        )
        .await;
        assert_eq!(status, 404, "{body}");
    }
    // The list is the unit's, whatever the filter asks for.
    for query in ["", "?unit=socialais", "?state=review"] {
        let (status, list) = get(&unit, url(&format!("/api/v1/items{query}"))).await;
        assert_eq!(status, 200, "{list}");
        let units: Vec<&str> = list
            .as_array()
            .expect("list")
            .iter()
            .map(|i| i["unit_id"].as_str().unwrap_or("(none)"))
            .collect();
        assert!(units.iter().all(|u| *u == "buvvalde"), "{query}: {units:?}");
        if query.is_empty() {
            assert_eq!(units, ["buvvalde"]);
        }
    }
    let (status, due) = get(&unit, url("/api/v1/deadlines?within=60")).await;
    assert_eq!(status, 200, "{due}");
    for list in ["overdue", "due_soon"] {
        assert!(
            due[list]
                .as_array()
                .expect("due list")
                .iter()
                .all(|i| i["unit_id"] == "buvvalde"),
            "{due}"
        );
    }
    // The whole office's list has all three (the tests' all-units client).
    let (_, all) = get(&env.http, url("/api/v1/items")).await;
    assert_eq!(all.as_array().expect("list").len(), 3, "{all}");

    // Actions it was not given: 403, nothing recorded.
    let (status, body) = post(
        &unit,
        url(&format!("/api/v1/items/{}/deadline/extend", ours.id)),
        json!({ "reason": "jāsaņem atzinums" }),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(
        &unit,
        url("/api/v1/calendar/holidays"),
        json!({ "date": "2099-12-01", "name": "x" }),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // Giving an item back for another unit: refused.
    let (status, body) = post(
        &unit,
        url(&format!("/api/v1/items/{}/return", ours.id)),
        json!({ "unit": "socialais", "reason": "nav mūsu" }),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // The actor is the client, whatever the body claims.
    let (status, body) = post(
        &unit,
        url(&format!("/api/v1/items/{}/close", ours.id)),
        json!({ "actor": "mayor", "reply_reference": "4-2/2026/5" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let audit = env.daemon.registry.audit_of(&ours.id).await.expect("audit");
    let closing = audit.iter().find(|a| a.2 == "closed").expect("closed line");
    assert_eq!(closing.1, "buvvalde-portal", "{audit:?}");
    assert!(!audit.iter().any(|a| a.1 == "mayor"), "{audit:?}");
    let (_, shown) = get(&unit, url(&format!("/api/v1/items/{}", ours.id))).await;
    assert!(
        shown["history"]
            .as_array()
            .expect("history")
            .iter()
            .any(|h| h["actor"] == "buvvalde-portal" && h["action"] == "closed"),
        "{shown}"
    );
    let listed = api_clients::list(&env.daemon.registry).await.expect("list");
    let me = listed
        .iter()
        .find(|c| c.name == "buvvalde-portal")
        .expect("listed");
    assert!(me.last_used_at.is_some(), "{me:?}");

    // Revoked: refused from the next request on.
    api_clients::revoke(&env.daemon.registry, "buvvalde-portal")
        .await
        .expect("revoke");
    let (status, body) = get(&unit, url(&format!("/api/v1/items/{}", ours.id))).await;
    assert_eq!(status, 401, "{body}");
    let again = api_clients::add(
        &env.daemon.registry,
        "buvvalde-portal",
        UnitScope::All,
        [ApiAction::Read].into_iter().collect(),
    )
    .await;
    assert!(
        matches!(again, Err(api_clients::ApiClientError::Exists(_))),
        "a revoked client's name is not reused: {again:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_clients_amqp_postgres() {
    scoped_clients_reach_their_units_only(Backend::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_clients_embedded_sqlite() {
    scoped_clients_reach_their_units_only(Backend::Embedded).await;
}

/// Runs the `pietura` binary on the test daemon's registry and rules.
fn pietura(env: &TestEnv, args: &[&str]) -> Output {
    env.cli(args, &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn cli_issues_lists_and_revokes(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;
    let item = env.submit_item(BUILDING.0, BUILDING.1).await;

    let out = pietura(
        &env,
        &[
            "api-client",
            "add",
            "portal",
            "--units",
            "buvvalde,nosuchunit",
            "--actions",
            "read",
        ],
    );
    assert!(!out.status.success(), "an unknown unit: {}", stdout(&out));
    assert!(stderr(&out).contains("nosuchunit"), "{}", stderr(&out));
    let out = pietura(
        &env,
        &[
            "api-client",
            "add",
            "portal",
            "--units",
            "buvvalde",
            "--actions",
            "read,delete",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("delete"), "{}", stderr(&out));

    let out = pietura(
        &env,
        &[
            "api-client",
            "add",
            "portal",
            "--units",
            "buvvalde,socialais",
            "--actions",
            "read,close",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_string();
    assert!(token.starts_with("pietura_") && token.len() > 40, "{token}");
    let out = pietura(
        &env,
        &[
            "api-client",
            "add",
            "portal",
            "--all-units",
            "--actions",
            "read",
        ],
    );
    assert!(!out.status.success(), "the name is taken");

    let url = format!("{}/api/v1/items/{}", env.base, item.id);
    let (status, body) = get(&api_http(&token), url.clone()).await;
    assert_eq!(status, 200, "{body}");

    let out = pietura(&env, &["api-client", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&out);
    let line = listed
        .lines()
        .find(|l| l.starts_with("portal\t"))
        .unwrap_or_else(|| panic!("portal listed: {listed}"));
    assert!(
        line.contains("\tbuvvalde,socialais\tread,close\t"),
        "{line}"
    );
    assert!(!line.contains("never"), "it was used: {line}");
    assert!(!listed.contains(&token), "no token in the list: {listed}");
    let out = pietura(&env, &["api-client", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON list");
    assert!(!json.to_string().contains(&token));
    assert!(
        json.as_array()
            .expect("array")
            .iter()
            .any(|c| c["name"] == "portal"),
        "{json}"
    );

    let out = pietura(&env, &["api-client", "revoke", "portal"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, _) = get(&api_http(&token), url).await;
    assert_eq!(status, 401, "revoked by the CLI");
    let out = pietura(&env, &["api-client", "revoke", "portal"]);
    assert!(!out.status.success(), "revoked already");
    let out = pietura(&env, &["api-client", "list"]);
    let line = stdout(&out)
        .lines()
        .find(|l| l.starts_with("portal\t"))
        .map(str::to_string)
        .expect("still listed");
    assert!(
        !line.ends_with("\t-"),
        "the revocation time is shown: {line}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_api_clients_amqp_postgres() {
    cli_issues_lists_and_revokes(Backend::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_api_clients_embedded_sqlite() {
    cli_issues_lists_and_revokes(Backend::Embedded).await;
}

/// One form submission from `http` (its own page token first), with an
/// `X-Forwarded-For` as a proxy would send it; the status.
async fn submit_as(env: &TestEnv, http: &reqwest::Client, forwarded_for: Option<&str>) -> u16 {
    let page = http
        .get(format!("{}/forms/iesniegums", env.base))
        .send()
        .await
        .expect("GET form")
        .text()
        .await
        .expect("form page");
    let start = page
        .find("name=\"form_token\" value=\"")
        .expect("token field")
        + "name=\"form_token\" value=\"".len();
    let token = page[start..].split('"').next().expect("token").to_string();
    let mut req = http
        .post(format!("{}/forms/iesniegums", env.base))
        .header("accept", "application/json")
        .form(&[
            ("form_token", token.as_str()),
            ("vards", "Anna Kalniņa"),
            ("epasts", "anna.kalnina@example.lv"),
            ("temats", BUILDING.0),
            ("teksts", BUILDING.1),
        ]);
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.expect("POST form").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_limit_keys_on_the_client_behind_a_trusted_proxy_only() {
    let env = TestEnv::start(Options {
        tweak: Some(Box::new(|s: &mut pietura::config::Settings| {
            s.http.submissions_per_minute = 2;
            // The proxy on this host; 127.0.0.2 is an ordinary client.
            s.http.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
        })),
        ..Options::new(Backend::Embedded)
    })
    .await;
    // The test plays the proxy: it connects from 127.0.0.1 and appends the
    // address its client came from.
    let proxy = reqwest::Client::new();
    let accepted = |s: u16| s == 201 || s == 202;
    for _ in 0..2 {
        assert!(accepted(submit_as(&env, &proxy, Some("203.0.113.1")).await));
    }
    assert_eq!(submit_as(&env, &proxy, Some("203.0.113.1")).await, 429);
    // Another citizen behind the same proxy has a limit of their own.
    assert!(accepted(submit_as(&env, &proxy, Some("203.0.113.2")).await));
    // 203.0.113.1 writes an address of its own choosing; the proxy appends
    // the real one, which is what counts.
    assert_eq!(
        submit_as(&env, &proxy, Some("198.51.100.77, 203.0.113.1")).await,
        429
    );
    // A second proxy hop that is trusted too is looked through.
    assert_eq!(
        submit_as(&env, &proxy, Some("203.0.113.1, 127.0.0.1")).await,
        429
    );

    // Not a trusted proxy: its forwarded header is ignored, it is the client.
    let ordinary: IpAddr = "127.0.0.2".parse().expect("ip");
    let direct = reqwest::Client::builder()
        .local_address(ordinary)
        .build()
        .expect("client");
    for n in 0..2 {
        let xff = format!("192.0.2.{n}");
        assert!(accepted(submit_as(&env, &direct, Some(&xff)).await));
    }
    assert_eq!(
        submit_as(&env, &direct, Some("192.0.2.99")).await,
        429,
        "a made-up X-Forwarded-For does not buy an untrusted client a new limit"
    );
    env.stop().await;
}

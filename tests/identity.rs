//! Desk identity (issue 17): no stored session before sign-in, statistics
//! behind sign-in, Argon2 for unknown usernames too and off the runtime
//! threads, throttling that slows a guesser without locking the user out,
//! the administrators' users page with its audit log, LDAP sign-in against a
//! real slapd and OpenID Connect against a real `oidc-provider` (the
//! browser-level OpenID sign-in is in tests/browser.rs).

mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use pietura::config::Settings;
use support::desk::{ADMIN, DeskClient, OFFICER, READER, add_accounts, hidden};
use support::identity::{LDAP_ADMIN_USER, LDAP_OFFICER, LDAP_OUTSIDER, OidcProvider, Slapd};
use support::{Backend, Options, TestEnv};

fn options(tweak: impl FnOnce(&mut Settings) + Send + 'static) -> Options {
    let mut o = Options::new(Backend::Embedded);
    o.tweak = Some(Box::new(tweak));
    o
}

/// A desk client whose connections come from `local` (another loopback address).
fn client_from(env: &TestEnv, local: &str) -> DeskClient {
    DeskClient {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .local_address(local.parse::<IpAddr>().expect("address"))
            .build()
            .expect("HTTP client"),
        base: env.base.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_visits_store_no_session_and_statistics_need_sign_in() {
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    add_accounts(&env).await;
    let registry = &env.daemon.registry;

    // 300 anonymous visits of the sign-in page store nothing.
    let visitor = DeskClient::new(&env);
    for _ in 0..300 {
        let (status, _) = visitor.page("/login").await;
        assert_eq!(status, 200);
    }
    let anonymous = DeskClient::new(&env);
    for _ in 0..20 {
        assert_eq!(anonymous.get("/desk").await.status().as_u16(), 303);
    }
    assert_eq!(registry.web_session_count().await.expect("count"), 0);

    // The statistics are behind the sign-in.
    for path in ["/dashboard", "/reports/quarterly", "/reports/quarterly.csv"] {
        let r = anonymous.get(path).await;
        assert_eq!(r.status().as_u16(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/login", "{path}");
    }

    // The form's token is a double-submit cookie: without the cookie, or
    // with another token, the sign-in is refused.
    let (_, login) = visitor.page("/login").await;
    let token = hidden(&login, "csrf");
    let stranger = DeskClient::new(&env);
    let (status, _, _) = stranger
        .post(
            "/login",
            &[
                ("username", OFFICER.0),
                ("password", OFFICER.1),
                ("csrf", &token),
            ],
        )
        .await;
    assert_eq!(status, 403, "a token without its cookie");
    let (status, _, _) = visitor
        .post(
            "/login",
            &[
                ("username", OFFICER.0),
                ("password", OFFICER.1),
                ("csrf", "0000"),
            ],
        )
        .await;
    assert_eq!(status, 403, "a forged token");
    assert_eq!(registry.web_session_count().await.expect("count"), 0);

    // Signed in (even read-only), the statistics open; one session stored.
    let reader = DeskClient::new(&env);
    assert_eq!(reader.sign_in(READER.0, READER.1).await, 303);
    for path in ["/dashboard", "/reports/quarterly", "/reports/quarterly.csv"] {
        assert_eq!(reader.get(path).await.status().as_u16(), 200, "{path}");
    }
    assert_eq!(registry.web_session_count().await.expect("count"), 1);
    env.stop().await;

    // desk.public_statistics opens them again, still storing nothing.
    let env = TestEnv::start(options(|s| s.desk.public_statistics = true)).await;
    let anonymous = DeskClient::new(&env);
    for path in ["/dashboard", "/reports/quarterly.csv"] {
        assert_eq!(anonymous.get(path).await.status().as_u16(), 200, "{path}");
    }
    assert_eq!(anonymous.get("/desk").await.status().as_u16(), 303);
    assert_eq!(
        env.daemon
            .registry
            .web_session_count()
            .await
            .expect("count"),
        0
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_slows_the_guesser_but_never_locks_the_user_out() {
    let env = TestEnv::start(options(|s| {
        s.desk.login_attempts_per_minute = 3;
        s.desk.login_max_delay_seconds = 1;
    }))
    .await;
    add_accounts(&env).await;
    let admin_id = env
        .daemon
        .registry
        .user(ADMIN.0)
        .await
        .expect("user")
        .expect("admin")
        .id;

    // Eight wrong passwords from one address: refused as wrong, never
    // locked; from the fourth on each waits (250 ms, 500 ms, 1 s, 1 s, 1 s).
    let guesser = client_from(&env, "127.0.0.1");
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(guesser.sign_in(ADMIN.0, "minējums-123").await);
    }
    let guessing = started.elapsed();
    assert_eq!(statuses, [401; 8]);
    assert!(
        guessing >= Duration::from_millis(3750),
        "the guesser was slowed: {guessing:?}"
    );

    // The administrator, from another address, signs in (after at most
    // the bounded delay), instead of being locked out as before.
    let admin = client_from(&env, "127.0.0.2");
    assert_eq!(admin.sign_in(ADMIN.0, ADMIN.1).await, 303);
    let (status, _) = admin.page("/desk").await;
    assert_eq!(status, 200);
    // Even from the guesser's address the right password gets in.
    assert_eq!(guesser.sign_in(ADMIN.0, ADMIN.1).await, 303);

    // The audit log names the account attacked, never the typed name of an
    // account that does not exist.
    assert_eq!(
        guesser.sign_in("nav-tada-lietotaja", "x-parole-123").await,
        401
    );
    let events = env
        .daemon
        .registry
        .account_events(100)
        .await
        .expect("events");
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.action == "sign_in_failed")
        .collect();
    assert_eq!(failed.len(), 9);
    assert_eq!(
        failed
            .iter()
            .filter(|e| e.user_id.as_deref() == Some(admin_id.as_str()))
            .count(),
        8
    );
    assert!(failed.iter().all(|e| e.detail["address"] == "127.0.0.1"));
    assert!(
        failed
            .iter()
            .all(|e| e.detail["user_fingerprint"].is_string())
    );
    let text = serde_json::to_string(&events).expect("json");
    assert!(!text.contains("nav-tada-lietotaja"), "{text}");
    assert!(!text.contains("minējums"), "{text}");
    let signed_in: Vec<_> = events.iter().filter(|e| e.action == "sign_in").collect();
    assert_eq!(signed_in.len(), 2);
    assert!(
        signed_in
            .iter()
            .all(|e| e.actor == "Admins Kārlis (admins)")
    );
    env.stop().await;
}

/// The median of `n` timed sign-ins.
async fn median_sign_in(client: &DeskClient, user: &str, n: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        assert_eq!(client.sign_in(user, "nepareiza-parole-9").await, 401);
        times.push(t.elapsed());
    }
    times.sort();
    times[n / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_username_costs_what_a_known_one_costs() {
    let env = TestEnv::start(options(|s| s.desk.login_attempts_per_minute = 10_000)).await;
    add_accounts(&env).await;
    let client = DeskClient::new(&env);
    // Warm up (the dummy hash is made on first use).
    client.sign_in("nezinams", "x").await;
    let mut ratios = Vec::new();
    for _ in 0..2 {
        let known = median_sign_in(&client, OFFICER.0, 5).await;
        let unknown = median_sign_in(&client, "nezinams-lietotajs", 5).await;
        ratios.push(unknown.as_secs_f64() / known.as_secs_f64());
    }
    // Before: ~0.01 (no Argon2 for unknown names). Same work now: ~1.
    assert!(
        ratios.iter().all(|r| *r > 0.4),
        "unknown/known sign-in time ratios: {ratios:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn argon2_runs_off_the_runtime_threads() {
    // One runtime thread serves the daemon, the client and a ticker: while
    // Argon2 ran on it, nothing else moved for a whole verification.
    let env = TestEnv::start(options(|s| s.desk.login_attempts_per_minute = 10_000)).await;
    add_accounts(&env).await;
    let hash = pietura::desk::auth::hash_password("viena-parole-12").expect("hash");
    let mut one = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let h = hash.clone();
        tokio::task::spawn_blocking(move || {
            let parsed = argon2::PasswordHash::new(&h).expect("hash");
            let _ = argon2::PasswordVerifier::verify_password(
                &argon2::Argon2::default(),
                b"cita-parole-12",
                &parsed,
            );
        })
        .await
        .expect("verify");
        one.push(t.elapsed());
    }
    one.sort();
    let verification = one[1];

    let mut worst_gaps = Vec::new();
    for _ in 0..3 {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut last = Instant::now();
                let mut worst = Duration::ZERO;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    worst = worst.max(last.elapsed());
                    last = Instant::now();
                }
                worst
            })
        };
        let sign_ins: Vec<_> = (0..4)
            .map(|_| {
                let client = DeskClient::new(&env);
                tokio::spawn(async move { client.sign_in(OFFICER.0, "nepareiza-parole-9").await })
            })
            .collect();
        for s in sign_ins {
            assert_eq!(s.await.expect("sign-in"), 401);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        worst_gaps.push(ticker.await.expect("ticker"));
    }
    worst_gaps.sort();
    assert!(
        worst_gaps[0] < verification,
        "the runtime thread stalled {worst_gaps:?}; one Argon2 verification takes {verification:?}"
    );
    env.stop().await;
}

/// The id of a user's row on the users page.
fn row_id(page: &str, username: &str) -> String {
    let marker = format!("id=\"user-{username}\" data-id=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for {username}:\n{page}"))
        + marker.len();
    page[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The users page's row of `username`, as text.
fn row_of<'a>(page: &'a str, username: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"user-{username}\""))
        .unwrap_or_else(|| panic!("no row for {username}:\n{page}"));
    let end = page[start..]
        .find("</tr>")
        .map_or(page.len(), |e| start + e);
    &page[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_add_disable_and_change_roles_on_the_users_page() {
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    add_accounts(&env).await;
    let admin = DeskClient::new(&env);
    assert_eq!(admin.sign_in(ADMIN.0, ADMIN.1).await, 303);
    let officer = DeskClient::new(&env);
    assert_eq!(officer.sign_in(OFFICER.0, OFFICER.1).await, 303);

    // Only administrators see the page.
    assert_eq!(officer.page("/admin/users").await.0, 403);
    let (status, page) = admin.page("/admin/users").await;
    assert_eq!(status, 200, "{page}");
    let liga = row_of(&page, OFFICER.0);
    assert!(
        liga.contains("officer") && liga.contains("aktīvs"),
        "{liga}"
    );
    assert!(
        row_of(&page, ADMIN.0).contains("20"),
        "last sign-in shown: {}",
        row_of(&page, ADMIN.0)
    );
    assert!(row_of(&page, READER.0).contains("nekad"), "never signed in");
    let csrf = hidden(&page, "csrf");

    // A new local account; without the token nothing happens.
    let new = [
        ("username", "marta"),
        ("name", "Marta Bērziņa"),
        ("role", "readonly"),
        ("password", "martas-parole-2026"),
    ];
    let (status, _, _) = admin.post("/admin/users/add", &new).await;
    assert!(
        (400..500).contains(&status),
        "no token field at all: {status}"
    );
    let mut forged = new.to_vec();
    forged.push(("csrf", "0000"));
    assert_eq!(admin.post("/admin/users/add", &forged).await.0, 403);
    assert!(
        env.daemon
            .registry
            .user("marta")
            .await
            .expect("user")
            .is_none()
    );
    let mut form = new.to_vec();
    form.push(("csrf", &csrf));
    let (status, _, location) = admin.post("/admin/users/add", &form).await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/admin/users?done=added"))
    );
    let (_, _, location) = admin.post("/admin/users/add", &form).await;
    assert_eq!(location.as_deref(), Some("/admin/users?error=exists"));
    let marta = DeskClient::new(&env);
    assert_eq!(marta.sign_in("marta", "martas-parole-2026").await, 303);
    assert_eq!(marta.page("/desk/parked").await.0, 403, "read-only");

    // The role changes: Marta may now open what officers open.
    let (_, page) = admin.page("/admin/users").await;
    let marta_id = row_id(&page, "marta");
    let (status, _, _) = admin
        .post(
            &format!("/admin/users/{marta_id}/role"),
            &[("csrf", &csrf), ("role", "officer")],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(marta.page("/desk/parked").await.0, 200, "officer now");

    // Disabled: her open session ends, her password no longer signs in.
    let (status, _, _) = admin
        .post(
            &format!("/admin/users/{marta_id}/state"),
            &[("csrf", &csrf), ("action", "disable")],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(marta.get("/desk").await.status().as_u16(), 303);
    assert_eq!(
        DeskClient::new(&env)
            .sign_in("marta", "martas-parole-2026")
            .await,
        401
    );
    let (_, page) = admin.page("/admin/users").await;
    assert!(
        row_of(&page, "marta").contains("atslēgts"),
        "disabled shown"
    );
    // … and enabled again.
    admin
        .post(
            &format!("/admin/users/{marta_id}/state"),
            &[("csrf", &csrf), ("action", "enable")],
        )
        .await;
    assert_eq!(
        DeskClient::new(&env)
            .sign_in("marta", "martas-parole-2026")
            .await,
        303
    );

    // An administrator cannot lock themselves out.
    let admin_id = row_id(&page, ADMIN.0);
    let (_, _, location) = admin
        .post(
            &format!("/admin/users/{admin_id}/state"),
            &[("csrf", &csrf), ("action", "disable")],
        )
        .await;
    assert_eq!(location.as_deref(), Some("/admin/users?error=self"));
    assert_eq!(admin.page("/admin/users").await.0, 200);

    // Every change is on the accounts' audit log, with who made it.
    let events = env
        .daemon
        .registry
        .account_events(100)
        .await
        .expect("events");
    let by_admin: Vec<&str> = events
        .iter()
        .filter(|e| e.actor == "Admins Kārlis (admins)" && e.action != "sign_in")
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        by_admin,
        [
            "user_enabled",
            "user_disabled",
            "role_changed",
            "user_added"
        ],
        "newest first"
    );
    let (_, page) = admin.page("/admin/users").await;
    assert!(
        page.contains("role_changed") && page.contains("from: readonly"),
        "history shown"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_users_sign_in_with_their_groups_roles() {
    let slapd = Slapd::start();
    let ldap = slapd.settings();
    let env = TestEnv::start(options(move |s| s.desk.ldap = Some(ldap))).await;
    add_accounts(&env).await;

    // An officer and an administrator by their groups.
    let ilze = DeskClient::new(&env);
    assert_eq!(ilze.sign_in(LDAP_OFFICER.0, LDAP_OFFICER.1).await, 303);
    let (status, queue) = ilze.page("/desk").await;
    assert_eq!(status, 200);
    assert!(queue.contains("Ilze Kalniņa"), "name from the directory");
    assert_eq!(ilze.page("/desk/parked").await.0, 200);
    assert_eq!(ilze.page("/admin/users").await.0, 403);
    let andris = DeskClient::new(&env);
    assert_eq!(
        andris.sign_in(LDAP_ADMIN_USER.0, LDAP_ADMIN_USER.1).await,
        303
    );
    let (status, page) = andris.page("/admin/users").await;
    assert_eq!(status, 200);
    let row = row_of(&page, LDAP_OFFICER.0);
    assert!(
        row.contains("LDAP / AD") && row.contains("officer"),
        "{row}"
    );

    // Wrong and empty passwords, a person in no mapped group, nobody.
    let other = DeskClient::new(&env);
    assert_eq!(other.sign_in(LDAP_OFFICER.0, "nepareiza-parole").await, 401);
    assert_eq!(other.sign_in(LDAP_OFFICER.0, "").await, 401);
    let (_, login) = other.page("/login").await;
    let csrf = hidden(&login, "csrf");
    let (status, body, _) = other
        .post(
            "/login",
            &[
                ("username", LDAP_OUTSIDER.0),
                ("password", LDAP_OUTSIDER.1),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(status, 401);
    assert!(body.contains("nav lomas"), "told there is no role: {body}");
    assert_eq!(other.sign_in("neviens", "kaut-kas-123").await, 401);
    assert_eq!(other.sign_in("*", "kaut-kas-123").await, 401);
    // Local accounts still sign in with their passwords.
    assert_eq!(other.sign_in(OFFICER.0, OFFICER.1).await, 303);

    // An administrator disables a directory account: the directory's
    // "yes" no longer lets it in.
    let csrf = hidden(&page, "csrf");
    let ilze_id = row_id(&page, LDAP_OFFICER.0);
    andris
        .post(
            &format!("/admin/users/{ilze_id}/state"),
            &[("csrf", &csrf), ("action", "disable")],
        )
        .await;
    assert_eq!(
        DeskClient::new(&env)
            .sign_in(LDAP_OFFICER.0, LDAP_OFFICER.1)
            .await,
        401
    );
    let events = env
        .daemon
        .registry
        .account_events(100)
        .await
        .expect("events");
    let reasons: Vec<&str> = events
        .iter()
        .filter(|e| e.action == "sign_in_failed")
        .filter_map(|e| e.detail["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"no_role") && reasons.contains(&"disabled"),
        "{reasons:?}"
    );
    env.stop().await;
    drop(slapd);
}

/// Follows the provider's pages as a person would (its login page takes
/// any password for a known account; then the consent page) until the
/// provider sends the browser back to the desk; returns the callback URL.
async fn through_the_provider(client: &DeskClient, provider: &OidcProvider, login: &str) -> String {
    let abs = |u: &str| {
        if u.starts_with("http") {
            u.to_string()
        } else {
            format!("{}{u}", provider.issuer)
        }
    };
    let r = client.get("/login/oidc").await;
    assert_eq!(r.status().as_u16(), 303);
    let mut url = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let action = regex::Regex::new(r#"<form[^>]*action="([^"]+)""#).expect("regex");
    for _ in 0..12 {
        if url.starts_with(&client.base) {
            return url;
        }
        let r = client.http.get(&url).send().await.expect("provider");
        if r.status().is_redirection() {
            url = abs(r.headers()["location"].to_str().expect("location"));
            continue;
        }
        let page = r.text().await.expect("provider page");
        let to = action
            .captures(&page)
            .unwrap_or_else(|| panic!("no form on the provider's page:\n{page}"))[1]
            .to_string();
        let fields: Vec<(&str, &str)> = if page.contains("name=\"login\"") {
            vec![
                ("prompt", "login"),
                ("login", login),
                ("password", "jebkas"),
            ]
        } else {
            vec![("prompt", "consent")]
        };
        let r = client
            .http
            .post(abs(&to))
            .form(&fields)
            .send()
            .await
            .expect("submit");
        assert!(
            r.status().is_redirection(),
            "{}",
            r.text().await.unwrap_or_default()
        );
        url = abs(r.headers()["location"].to_str().expect("location"));
    }
    panic!("the provider never sent us back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_connect_sign_in_maps_groups_and_rejects_forgeries() {
    let port = support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let provider = OidcProvider::start(
        &base,
        serde_json::json!({
            "dace": { "name": "Dace Vītola", "groups": ["pietura-officers"] },
            "viesis": { "name": "Viesis", "groups": ["kitchen"] },
        }),
    );
    let oidc = provider.settings();
    let env = TestEnv::start(options(move |s| {
        s.http.listen = format!("127.0.0.1:{port}").parse().expect("addr");
        s.desk.oidc = Some(oidc);
    }))
    .await;
    assert_eq!(env.base, base);

    // The sign-in page offers the provider.
    let dace = DeskClient::new(&env);
    let (_, login) = dace.page("/login").await;
    assert!(
        login.contains("Novada ID") && login.contains("/login/oidc"),
        "{login}"
    );

    // A forged callback (state not ours, no cookie) is refused.
    let forged = DeskClient::new(&env);
    let r = forged.get("/login/oidc/callback?code=abc&state=xyz").await;
    assert_eq!(r.status().as_u16(), 401);

    // Dace signs in through the provider: an officer by her group.
    let callback = through_the_provider(&dace, &provider, "dace").await;
    assert!(callback.starts_with(&format!("{base}/login/oidc/callback?")));
    // The callback with its state altered is refused …
    let tampered = callback.replace("state=", "state=x");
    let r = dace.http.get(&tampered).send().await.expect("callback");
    assert_eq!(r.status().as_u16(), 401);
    // … which also spent the round trip: a fresh one signs her in.
    let callback = through_the_provider(&dace, &provider, "dace").await;
    let r = dace.http.get(&callback).send().await.expect("callback");
    assert_eq!(r.status().as_u16(), 200);
    let (status, queue) = dace.page("/desk").await;
    assert_eq!(status, 200);
    assert!(queue.contains("Dace Vītola"), "{queue}");
    assert_eq!(dace.page("/desk/parked").await.0, 200, "officer");
    // Replaying the same code does not sign anyone in.
    let replay = DeskClient::new(&env);
    assert_ne!(
        replay
            .http
            .get(&callback)
            .send()
            .await
            .expect("replay")
            .status()
            .as_u16(),
        200
    );

    // A person in no mapped group gets no account.
    let guest = DeskClient::new(&env);
    let callback = through_the_provider(&guest, &provider, "viesis").await;
    let r = guest.http.get(&callback).send().await.expect("callback");
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(guest.get("/desk").await.status().as_u16(), 303);

    let accounts = env.daemon.registry.accounts().await.expect("accounts");
    let oidc: Vec<_> = accounts
        .iter()
        .filter(|a| a.user.source == "oidc")
        .collect();
    assert_eq!(oidc.len(), 1);
    assert_eq!(oidc[0].user.username, "oidc:dace");
    assert_eq!(oidc[0].user.role, "officer");
    assert!(oidc[0].last_sign_in_at.is_some());
    env.stop().await;
    drop(provider);
}

//! In a real browser (Debian's chromium through chromedriver): a citizen
//! submits the form, then the statistics dashboard and the printable
//! quarterly report show what the registry holds; the records officer
//! assigns an unclassified item at the desk, a hostile HTML e-mail runs no
//! script, and the administrator edits the rules (a refused edit, a dry run,
//! a saved one that routes new items); an officer searches the register
//! without diacritics and opens the item found. Screenshots are written to
//! `target/screenshots/` (copies are kept in `docs/screenshots/`).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use support::desk::{ADMIN, COFFEE_RULE, OFFICER, add_accounts, hostile_email_item};
use support::{Backend, Options, TestEnv};

/// chromedriver on a free loopback port, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: `apt-get install -y chromium chromium-driver` (scripts/test.sh does)"
            );
        }
        let port = support::free_port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        // Owned at once, so a failed start below still stops the process.
        let driver = Driver { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return driver;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("chromedriver did not listen on 127.0.0.1:{port}");
    }

    async fn browser(&self) -> Client {
        // lettre and fantoccini both link rustls: say which crypto it uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1200,1900", "--lang=lv"]
            }),
        );
        ClientBuilder::rustls()
            .expect("TLS setup")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    let dir = support::repo_path("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    std::fs::write(dir.join(name), png).expect("write screenshot");
}

async fn cell(browser: &Client, table: &str, row_starts: &str) -> String {
    browser
        .find(Locator::XPath(&format!(
            "//table[@id='{table}']//tr[th[starts-with(normalize-space(.), '{row_starts}')]]/td"
        )))
        .await
        .unwrap_or_else(|e| panic!("row {row_starts:?} of #{table}: {e}"))
        .text()
        .await
        .expect("cell text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_dashboard_and_quarterly_report_in_chromium() {
    let driver = Driver::start();
    // Statistics open to everyone (`desk.public_statistics`; by default
    // they need a sign-in, tests/identity.rs).
    let mut options = Options::new(Backend::Amqp);
    options.tweak = Some(Box::new(|s| s.desk.public_statistics = true));
    let env = TestEnv::start(options).await;
    let browser = driver.browser().await;

    // A citizen submits the form in the browser.
    browser
        .goto(&format!("{}/forms/iesniegums", env.base))
        .await
        .expect("form page");
    for (field, value) in [
        ("vards", "Jānis Bērziņš"),
        ("epasts", "janis.berzins@example.lv"),
        ("temats", "Būvatļauja"),
        (
            "teksts",
            "Lūdzu izsniegt būvatļauju pirts būvniecībai Subatē.",
        ),
    ] {
        browser
            .find(Locator::Css(&format!("[name='{field}']")))
            .await
            .unwrap_or_else(|e| panic!("field {field}: {e}"))
            .send_keys(value)
            .await
            .expect("type");
    }
    browser
        .find(Locator::Css("button[type='submit']"))
        .await
        .expect("submit button")
        .click()
        .await
        .expect("submit");
    let number = browser
        .wait()
        .for_element(Locator::Id("registration-number"))
        .await
        .expect("the receipt shows a registration number")
        .text()
        .await
        .expect("number");
    assert!(number.starts_with("4/"), "Būvvalde's series: {number}");

    // Two more items: one routed and answered, one for the records officer.
    let answered = env
        .submit_item("Būvatļauja", "Lūdzu būvatļauju šķūņa pārbūvei.")
        .await;
    let (status, _) = env
        .post_json(
            &format!("/api/v1/items/{}/close", answered.id),
            json!({ "actor": "janis", "reply_reference": "4-2/2026/1" }),
        )
        .await;
    assert_eq!(status, 200);
    let review = env.submit_item("Sveiki", "Vai jums garšo kafija?").await;
    assert_eq!(review.state, "review");

    // The dashboard: exact counts from the live registry, charts as SVG.
    browser
        .goto(&format!("{}/dashboard", env.base))
        .await
        .expect("dashboard");
    assert_eq!(cell(&browser, "totals", "Saņemti").await, "3");
    assert_eq!(
        cell(&browser, "totals", "Maršrutēti automātiski").await,
        "2"
    );
    assert_eq!(cell(&browser, "totals", "Gaida lietvedi").await, "1");
    assert_eq!(cell(&browser, "totals", "Atbildēts laikā").await, "1");
    let charts = browser
        .find_all(Locator::Css("svg.chart"))
        .await
        .expect("charts");
    assert_eq!(charts.len(), 4, "three bar charts and the backlog line");
    let unit_bar = browser
        .find(Locator::XPath(
            "//*[name()='svg']//*[name()='rect']/*[name()='title'][contains(., 'Būvvalde: laikā')]",
        ))
        .await
        .expect("an on-time bar for Būvvalde");
    assert!(unit_bar.html(true).await.expect("title").contains("1"));
    screenshot(&browser, "dashboard.png").await;

    // The printable quarterly report, per unit.
    browser
        .goto(&format!("{}/reports/quarterly?unit=buvvalde", env.base))
        .await
        .expect("report");
    let heading = browser
        .find(Locator::Css("h1"))
        .await
        .expect("h1")
        .text()
        .await
        .expect("text");
    assert!(heading.contains("ceturkšņa pārskats"), "{heading}");
    let total_row = browser
        .find(Locator::XPath("//table[1]//tr[2]"))
        .await
        .expect("total row")
        .text()
        .await
        .expect("text");
    assert!(
        total_row.starts_with("total 2 2 2 0 0 0 1 0"),
        "{total_row}"
    );
    screenshot(&browser, "quarterly-report.png").await;
    browser.close().await.expect("close browser");

    // The CSV export and the gauges say the same.
    let csv = env
        .http
        .get(format!("{}/reports/quarterly.csv", env.base))
        .send()
        .await
        .expect("CSV")
        .text()
        .await
        .expect("CSV text");
    let total = csv
        .lines()
        .find(|l| l.split(',').nth(1) == Some("total"))
        .unwrap_or_else(|| panic!("{csv}"));
    let cols: Vec<&str> = total.split(',').collect();
    assert_eq!(
        &cols[3..12],
        ["3", "3", "2", "0", "1", "0", "1", "0", "0"],
        "{csv}"
    );
    let metrics = env
        .http
        .get(format!("{}/metrics", env.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    for line in [
        "pietura_items_open{unit=\"buvvalde\"} 1",
        "pietura_review_backlog 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
    env.stop().await;
}

async fn sign_in(browser: &Client, base: &str, (user, password): (&str, &str)) {
    browser
        .goto(&format!("{base}/login"))
        .await
        .expect("login page");
    browser
        .find(Locator::Id("username"))
        .await
        .expect("username field")
        .send_keys(user)
        .await
        .expect("type");
    browser
        .find(Locator::Id("password"))
        .await
        .expect("password field")
        .send_keys(password)
        .await
        .expect("type");
    browser
        .find(Locator::Css("form.login button[type='submit']"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("sign in");
    let who = browser
        .wait()
        .for_element(Locator::Id("signed-in"))
        .await
        .expect("the desk after signing in")
        .text()
        .await
        .expect("name");
    assert!(!who.is_empty());
}

/// Clicks the element `#button`, then waits for `#shown` and returns its text.
async fn click_and_read(browser: &Client, button: &str, shown: &str) -> String {
    browser
        .find(Locator::Id(button))
        .await
        .unwrap_or_else(|e| panic!("#{button}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click #{button}: {e}"));
    // The click starts a navigation: `#shown` may still be found on the
    // page being left and go stale before it is read; then it is found
    // again on the new page.
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let text = browser
            .wait()
            .for_element(Locator::Id(shown))
            .await
            .unwrap_or_else(|e| panic!("#{shown} after #{button}: {e}"))
            .text()
            .await;
        match text {
            Ok(text) => return text,
            Err(fantoccini::error::CmdError::Standard(e))
                if e.error == fantoccini::error::ErrorStatus::StaleElementReference
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("text of #{shown} after #{button}: {e}"),
        }
    }
}

async fn text_of(browser: &Client, id: &str) -> String {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .text()
        .await
        .expect("text")
}

async fn sign_out(browser: &Client) {
    browser
        .find(Locator::Css("header form button[type='submit']"))
        .await
        .expect("sign-out button")
        .click()
        .await
        .expect("sign out");
    browser
        .wait()
        .for_element(Locator::Id("username"))
        .await
        .expect("back at the sign-in page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officer_assigns_and_administrator_edits_rules_in_chromium() {
    let driver = Driver::start();
    let env = TestEnv::start(Options::new(Backend::Amqp)).await;
    add_accounts(&env).await;
    let coffee = env.submit_item("Sveiki", "Vai jums garšo kafija?").await;
    assert_eq!(coffee.state, "review");
    let hostile = hostile_email_item(&env).await;
    assert_eq!(hostile.state, "review");
    env.wait_routed("review", 2).await;
    let browser = driver.browser().await;

    // The records officer: the queue, the item, a unit assigned. The
    // language chosen once (Latvian) holds on every page after.
    browser
        .goto(&format!("{}/desk?lang=lv", env.base))
        .await
        .expect("desk");
    browser
        .wait()
        .for_element(Locator::Id("username"))
        .await
        .expect("signing in is required first");
    screenshot(&browser, "desk-login.png").await;
    sign_in(&browser, &env.base, OFFICER).await;
    assert_eq!(text_of(&browser, "queue-count").await, "2");
    screenshot(&browser, "desk-review-queue.png").await;
    browser
        .find(Locator::LinkText(&coffee.registration_number))
        .await
        .expect("the unclassified item in the queue")
        .click()
        .await
        .expect("open it");
    assert_eq!(
        text_of(&browser, "item-number").await,
        coffee.registration_number
    );
    let reason = text_of(&browser, "item-reason").await;
    // In Latvian words, from the catalog (the API keeps the machine reason).
    assert!(
        reason.contains("Neviens maršrutēšanas noteikums neatbilst"),
        "{reason}"
    );
    let trace_rows = browser
        .find_all(Locator::Css("#trace tbody tr"))
        .await
        .expect("the rules tried");
    assert!(
        trace_rows.len() > 10,
        "every rule tried is explained: {}",
        trace_rows.len()
    );
    browser
        .find(Locator::Css("#assign-unit option[value='kanceleja']"))
        .await
        .expect("Kanceleja in the unit list")
        .click()
        .await
        .expect("choose the unit");
    screenshot(&browser, "desk-item.png").await;
    let done = click_and_read(&browser, "assign-submit", "done").await;
    assert!(done.contains(&coffee.registration_number), "{done}");
    assert_eq!(text_of(&browser, "queue-count").await, "1");
    let routed = env
        .daemon
        .registry
        .find(&coffee.id)
        .await
        .expect("find")
        .expect("item");
    assert_eq!(routed.state, "routed");
    assert_eq!(routed.unit_id.as_deref(), Some("kanceleja"));
    assert_eq!(routed.routed_by.as_deref(), Some("Līga Ozola (liga)"));
    assert!(routed.reply_due.is_some());
    let notices = env.wait_routed("unit.kanceleja", 1).await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].item_id, coffee.id);
    assert_eq!(notices[0].state, "routed");
    let history = env
        .daemon
        .registry
        .audit_of(&coffee.id)
        .await
        .expect("audit");
    assert!(
        history
            .iter()
            .any(|(_, actor, action, _)| action == "assigned" && actor == "Līga Ozola (liga)"),
        "{history:?}"
    );

    // A hostile HTML e-mail: shown sanitised, nothing of it runs.
    browser
        .goto(&format!("{}/desk/items/{}", env.base, hostile.id))
        .await
        .expect("the hostile mail");
    let shown = text_of(&browser, "email-html").await;
    assert!(shown.contains("Labdien, pielikumā dokuments."), "{shown}");
    if let Ok(link) = browser.find(Locator::Id("evil-link")).await {
        let _ = link.click().await;
    }
    let pwned = browser
        .execute(
            "return window.__pwned === undefined ? null : window.__pwned;",
            vec![],
        )
        .await
        .expect("run a probe");
    assert_eq!(pwned, serde_json::Value::Null, "a script from the mail ran");
    let title = browser.title().await.expect("title");
    assert!(!title.contains("PWNED"), "{title}");
    let markup = browser
        .find(Locator::Id("email-html"))
        .await
        .expect("mail")
        .html(true)
        .await
        .expect("markup");
    for gone in ["<script", "onerror", "onmouseover", "javascript:", "<img"] {
        assert!(!markup.contains(gone), "{gone} survived: {markup}");
    }
    screenshot(&browser, "desk-hostile-email.png").await;

    // An officer cannot open the rules editor.
    browser
        .goto(&format!("{}/admin/rules", env.base))
        .await
        .expect("rules editor");
    assert_eq!(
        text_of(&browser, "message").await,
        "Jūsu lomai šī lapa nav pieejama."
    );
    browser
        .goto(&format!("{}/desk", env.base))
        .await
        .expect("desk");
    sign_out(&browser).await;

    // The administrator: an invalid edit is refused, the old rules stay.
    sign_in(&browser, &env.base, ADMIN).await;
    let file = "routing/90-kanceleja.toml";
    browser
        .goto(&format!(
            "{}/admin/rules?file={}",
            env.base,
            file.replace('/', "%2F")
        ))
        .await
        .expect("rules editor");
    let version = text_of(&browser, "rules-version").await;
    assert_eq!(version, env.daemon.rules.load().version);
    let original = std::fs::read_to_string(env.rules_dir.join(file)).expect("rules file");
    let set_text = |text: String| {
        let browser = browser.clone();
        async move {
            browser
                .execute(
                    "document.getElementById('rules-text').value = arguments[0];",
                    vec![json!(text)],
                )
                .await
                .expect("edit the text");
        }
    };
    let broken = format!(
        "{original}\n[[rule]]\nid = \"kanceleja-kafija\"\npriority = 120\n[rule.when]\nkeywords = [\"kafij*\"]\nsmell = [\"espresso\"]\n[rule.then]\nunit = \"kanceleja\"\n"
    );
    let bad_line = broken
        .lines()
        .position(|l| l.starts_with("smell"))
        .expect("line")
        + 1;
    set_text(broken).await;
    let problems = click_and_read(&browser, "rules-save", "rules-problems").await;
    assert!(
        problems.contains(&format!("{file}:{bad_line}")),
        "line {bad_line}: {problems}"
    );
    assert_eq!(
        env.daemon.rules.load().version,
        version,
        "old rules still in force"
    );
    assert_eq!(
        std::fs::read_to_string(env.rules_dir.join(file)).expect("file"),
        original
    );
    screenshot(&browser, "rules-editor-error.png").await;

    // A valid edit: the dry run shows the coffee item would now go by rule.
    let good = format!("{original}{COFFEE_RULE}");
    set_text(good.clone()).await;
    click_and_read(&browser, "rules-check", "dry-run").await;
    assert_eq!(text_of(&browser, "dry-differences").await, "1");
    let difference = text_of(&browser, "dry-table").await;
    assert!(
        difference.contains(&coffee.registration_number) && difference.contains("kanceleja-kafija"),
        "{difference}"
    );
    screenshot(&browser, "rules-editor-dry-run.png").await;
    let saved = click_and_read(&browser, "rules-save", "rules-message").await;
    let new_version = env.daemon.rules.load().version.clone();
    assert_ne!(new_version, version);
    assert!(saved.contains(&new_version), "{saved}");
    // Stored as the set in force for every daemon; the folder is not written.
    assert_eq!(env.daemon.rules.load().sources.files.get(file), Some(&good));
    let active = env.daemon.registry.active_ruleset().await.expect("active");
    assert_eq!(active.map(|a| a.version), Some(new_version.clone()));
    assert_eq!(
        std::fs::read_to_string(env.rules_dir.join(file)).expect("file"),
        original
    );
    let next = env
        .submit_item("Kafija", "Lūdzu kafiju apmeklētājiem.")
        .await;
    assert_eq!(
        (next.state.as_str(), next.rule_id.as_deref()),
        ("routed", Some("kanceleja-kafija"))
    );
    assert_eq!(next.ruleset_version, new_version);
    let history = text_of(&browser, "rules-history").await;
    assert!(
        history.contains("Admins Kārlis (admins)") && history.contains(file),
        "{history}"
    );

    browser
        .goto(&format!("{}/admin/channels", env.base))
        .await
        .expect("channels");
    let web_form = text_of(&browser, "channel-iesniegums").await;
    assert!(web_form.contains("tīmekļa veidlapa"), "{web_form}");
    screenshot(&browser, "channels.png").await;
    browser.close().await.expect("close browser");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrator_signs_in_through_openid_connect_in_chromium() {
    use support::identity::OidcProvider;
    let driver = Driver::start();
    let port = support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let provider = OidcProvider::start(
        &base,
        json!({ "inese": { "name": "Inese Krūmiņa", "groups": ["pietura-admins"] } }),
    );
    let oidc = provider.settings();
    let mut options = Options::new(Backend::Embedded);
    options.tweak = Some(Box::new(move |s| {
        s.http.listen = format!("127.0.0.1:{port}").parse().expect("addr");
        s.desk.oidc = Some(oidc);
    }));
    let env = TestEnv::start(options).await;
    let browser = driver.browser().await;

    // The desk's sign-in page offers the provider; its own pages follow.
    browser
        .goto(&format!("{base}/login"))
        .await
        .expect("login page");
    browser
        .find(Locator::Id("oidc-sign-in"))
        .await
        .expect("the OpenID button")
        .click()
        .await
        .expect("to the provider");
    let login = browser
        .wait()
        .for_element(Locator::Css("input[name='login']"))
        .await
        .expect("the provider's login page");
    login.send_keys("inese").await.expect("type");
    browser
        .find(Locator::Css("input[name='password']"))
        .await
        .expect("password field")
        .send_keys("provider-parole")
        .await
        .expect("type");
    screenshot(&browser, "oidc-provider-login.png").await;
    browser
        .find(Locator::Css("button[type='submit']"))
        .await
        .expect("the provider's sign-in button")
        .click()
        .await
        .expect("sign in at the provider");
    browser
        .wait()
        .for_element(Locator::XPath("//button[normalize-space(.)='Continue']"))
        .await
        .expect("the provider's consent page")
        .click()
        .await
        .expect("consent");

    // Back at the desk, signed in as the administrator her group makes her.
    let who = browser
        .wait()
        .for_element(Locator::Id("signed-in"))
        .await
        .expect("the desk after the provider")
        .text()
        .await
        .expect("name");
    assert_eq!(who, "Inese Krūmiņa");
    browser
        .goto(&format!("{base}/admin/users"))
        .await
        .expect("users page");
    let row = browser
        .find(Locator::XPath("//tr[@id='user-oidc:inese']"))
        .await
        .expect("her account on the users page")
        .text()
        .await
        .expect("row");
    assert!(
        row.contains("OpenID Connect") && row.contains("admin"),
        "{row}"
    );
    screenshot(&browser, "users.png").await;
    browser.close().await.expect("close browser");
    env.stop().await;
    drop(provider);
}

/// The text of the first element matching `css`.
async fn css_text(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_submission_consultation_and_service_catalogue_in_chromium() {
    let driver = Driver::start();
    let env = TestEnv::start(Options::new(Backend::Amqp)).await;
    add_accounts(&env).await;
    let browser = driver.browser().await;
    sign_in(&browser, &env.base, OFFICER).await;

    // A counter officer finds the service by an inflected word typed
    // without diacritics, reads its documents and channels …
    browser
        .goto(&format!("{}/desk/services?lang=lv", env.base))
        .await
        .expect("service search");
    browser
        .find(Locator::Id("service-query"))
        .await
        .expect("search field")
        .send_keys("pabalstu deklaracija")
        .await
        .expect("type");
    browser
        .find(Locator::Id("service-search"))
        .await
        .expect("search button")
        .click()
        .await
        .expect("search");
    // The results page: its field holds the query as its value attribute.
    browser
        .wait()
        .for_element(Locator::XPath(
            "//input[@id='service-query' and @value='pabalstu deklaracija']",
        ))
        .await
        .expect("the search results");
    let documents = css_text(&browser, "#service-pabalsti ul.documents").await;
    assert!(
        documents.contains("Iztikas līdzekļu deklarācija"),
        "{documents}"
    );
    let channels = css_text(&browser, "#service-pabalsti dd.channels").await;
    assert!(
        channels.contains("klātienē") && channels.contains("e-adrese"),
        "{channels}"
    );
    let hits = browser
        .find_all(Locator::Css("section.service"))
        .await
        .expect("results");
    assert_eq!(hits.len(), 1, "only the benefits service holds both words");
    screenshot(&browser, "desk-service-search.png").await;

    // … and starts the counter submission with the service pre-selected.
    browser
        .find(Locator::Css("#service-pabalsti a.start-counter"))
        .await
        .expect("start link")
        .click()
        .await
        .expect("open the counter form");
    let chosen = browser
        .wait()
        .for_element(Locator::Css("#c-service option[selected]"))
        .await
        .expect("a pre-selected service")
        .attr("value")
        .await
        .expect("value");
    assert_eq!(chosen.as_deref(), Some("pabalsti"));
    for (id, value) in [
        ("c-sender_name", "Anna Liepa"),
        ("c-address", "Skolas iela 1, Subate"),
        ("c-phone", "29123456"),
        ("c-subject", "Pabalsts"),
        ("c-text", "Lūdzu piešķirt pabalstu."),
    ] {
        browser
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("#{id}: {e}"))
            .send_keys(value)
            .await
            .expect("type");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let scan = dir.path().join("iesniegums.pdf");
    std::fs::write(&scan, b"%PDF-1.4\n% the signed paper\n").expect("scan file");
    browser
        .find(Locator::Id("c-file"))
        .await
        .expect("file field")
        .send_keys(&scan.to_string_lossy())
        .await
        .expect("attach the scan");
    browser
        .find(Locator::Id("c-signed"))
        .await
        .expect("signed box")
        .click()
        .await
        .expect("tick");
    screenshot(&browser, "desk-counter-form.png").await;
    browser
        .find(Locator::Id("register"))
        .await
        .expect("register button")
        .click()
        .await
        .expect("register");
    let number = browser
        .wait()
        .for_element(Locator::Id("registration-number"))
        .await
        .expect("the registration number once registered")
        .text()
        .await
        .expect("number");
    let status_link = text_of(&browser, "status-link").await;
    let tracking_id = status_link
        .rsplit('/')
        .next()
        .expect("tracking id")
        .to_string();
    screenshot(&browser, "desk-counter-registered.png").await;
    let item = env.registered(&tracking_id).await;
    assert_eq!(item.registration_number, number);
    assert_eq!(
        (item.channel_kind.as_str(), item.unit_id.as_deref()),
        ("counter", Some("socialais"))
    );
    let notices = env.wait_routed("unit.socialais", 1).await;
    assert_eq!(notices[0].item_id, item.id, "routed to the unit's queue");
    let msg = env.message_of(&item).await;
    assert_eq!(
        msg.formal_status,
        Some(pietura::message::FormalStatus::SignedPaper)
    );
    assert_eq!(msg.attachments[0].filename, "iesniegums.pdf");

    // The receipt for the visitor: number, deadline and status link in the PDF's text.
    let receipt_path = browser
        .find(Locator::Id("receipt"))
        .await
        .expect("a receipt link")
        .attr("href")
        .await
        .expect("href")
        .expect("the link's target");
    let desk = support::desk::DeskClient::new(&env);
    assert_eq!(desk.sign_in(OFFICER.0, OFFICER.1).await, 303);
    let pdf = desk
        .get(receipt_path.trim_start_matches(env.base.as_str()))
        .await;
    assert_eq!(
        pdf.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/pdf")
    );
    let pdf_file = dir.path().join("receipt.pdf");
    std::fs::write(&pdf_file, pdf.bytes().await.expect("receipt bytes")).expect("save receipt");
    let text = Command::new("pdftotext")
        .arg(&pdf_file)
        .arg("-")
        .output()
        .expect("pdftotext (apt-get install poppler-utils)");
    let text = String::from_utf8_lossy(&text.stdout);
    let due = item.reply_due.clone().expect("a reply deadline");
    for want in [
        number.as_str(),
        due.as_str(),
        status_link.as_str(),
        "Apliecinājums par iesnieguma saņemšanu",
    ] {
        assert!(text.contains(want), "{want:?} not in the receipt:\n{text}");
    }

    // A call that was not a submission: a consultation in a few clicks,
    // then in the quarterly report.
    browser
        .goto(&format!(
            "{}/desk/consultations?service=buvatlauja",
            env.base
        ))
        .await
        .expect("consultation form");
    browser
        .find(Locator::Id("c-channel-phone"))
        .await
        .expect("phone")
        .click()
        .await
        .expect("choose phone");
    let minutes = browser
        .find(Locator::Id("c-minutes"))
        .await
        .expect("minutes");
    minutes.clear().await.expect("clear");
    minutes.send_keys("12").await.expect("type");
    let done = click_and_read(&browser, "log-consultation", "done").await;
    assert!(done.contains("reģistrēta"), "{done}");
    browser
        .goto(&format!("{}/reports/quarterly", env.base))
        .await
        .expect("report");
    let phone = browser
        .find(Locator::XPath(
            "//h2[starts-with(., 'Pa kanāliem')]/following-sibling::table[1]//tr[td[1]='phone']",
        ))
        .await
        .expect("a phone row in the channel table")
        .text()
        .await
        .expect("row");
    assert!(phone.ends_with(" 1 12 0 —"), "{phone}");
    let service = browser
        .find(Locator::XPath(
            "//h2[starts-with(., 'Pa pakalpojumiem')]/following-sibling::table[1]//tr[starts-with(td[1], 'Būvatļauja')]",
        ))
        .await
        .expect("the permit row in the service table")
        .text()
        .await
        .expect("row");
    assert!(service.ends_with(" 1 12 0 —"), "{service}");
    screenshot(&browser, "quarterly-report-consultations.png").await;

    // The public service page, in English, with its documents and channels.
    browser
        .goto(&format!("{}/services/pabalsti?lang=en", env.base))
        .await
        .expect("service page");
    assert!(
        text_of(&browser, "service-name")
            .await
            .contains("Social assistance")
    );
    let documents = css_text(&browser, "ul.documents").await;
    assert!(
        documents.contains("means-of-subsistence declaration"),
        "{documents}"
    );
    let channels = css_text(&browser, "dd.channels").await;
    assert!(
        channels.contains("at the counter") && channels.contains("by post"),
        "{channels}"
    );
    assert!(
        css_text(&browser, "dd.when")
            .await
            .contains("not confirmed yet")
    );
    screenshot(&browser, "service-page.png").await;
    browser
        .goto(&format!("{}/status/{tracking_id}", env.base))
        .await
        .expect("status page");
    browser
        .find(Locator::Id("services-link"))
        .await
        .expect("the status page links to the catalogue")
        .click()
        .await
        .expect("open the catalogue");
    browser
        .wait()
        .for_element(Locator::Id("service-pabalsti"))
        .await
        .expect("the catalogue lists the service");
    browser.close().await.expect("close browser");
    env.stop().await;
}

/// Issue 20: a unit's member signs in, sees the unit's item, extends its
/// deadline, then answers it; the answer goes out by e-mail with its PDF,
/// the item is closed on time, and the citizen's status page says answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_member_extends_and_answers_an_item_in_chromium() {
    let driver = Driver::start();
    let mail = tempfile::tempdir().expect("mail folder");
    // aiosmtpd makes its Maildir when the folder does not exist yet.
    let maildir = mail.path().join("maildir");
    let smtp = support::smtp::SmtpServer::start(&maildir);
    let port = smtp.port;
    let mut options = Options::new(Backend::Embedded);
    options.tweak = Some(Box::new(move |s| {
        s.answers.smtp_url = Some(format!("smtp://127.0.0.1:{port}").into());
        s.print.header = vec!["Ērgļu novada pašvaldība".into()];
    }));
    let env = TestEnv::start(options).await;
    let member = ("janis", "buvvaldes-parole-2026");
    pietura::desk::auth::add_or_update_user(
        &env.daemon.registry,
        member.0,
        "Jānis Būvnieks",
        "unit",
        member.1,
    )
    .await
    .expect("unit member");
    let known: Vec<String> = env.daemon.rules.load().units.keys().cloned().collect();
    pietura::desk::auth::set_user_units(
        &env.daemon.registry,
        member.0,
        &["buvvalde".to_string()],
        &known,
        "tests",
    )
    .await
    .expect("units");
    let item = env
        .submit_item("Būvatļauja", "Lūdzu būvatļauju šķūņa pārbūvei.")
        .await;
    assert_eq!(item.unit_id.as_deref(), Some("buvvalde"));
    let browser = driver.browser().await;

    // Signed in, the member lands on the unit's page with the item.
    sign_in(&browser, &env.base, member).await;
    let row = browser
        .wait()
        .for_element(Locator::Id(&format!("unit-item-{}", item.id)))
        .await
        .expect("the item on the unit's page");
    assert!(
        row.text()
            .await
            .expect("row")
            .contains(&item.registration_number)
    );
    screenshot(&browser, "unit-page.png").await;
    row.find(Locator::Css("a"))
        .await
        .expect("the item's link")
        .click()
        .await
        .expect("open the item");

    // The deadline is extended with its reason.
    browser
        .wait()
        .for_element(Locator::Id("extend-reason"))
        .await
        .expect("the extension form")
        .send_keys("Jāpieprasa atzinums citai iestādei")
        .await
        .expect("type");
    browser
        .find(Locator::Id("extend-submit"))
        .await
        .expect("extend button")
        .click()
        .await
        .expect("extend");
    if let Err(e) = browser
        .wait()
        .for_element(Locator::XPath(
            "//table[@id='history']//tr[td[@class='actor'] = 'Jānis Būvnieks (janis)'][contains(., 'Jāpieprasa atzinums')]",
        ))
        .await
    {
        let page = browser.source().await.unwrap_or_default();
        panic!("the extension on the item's history ({e}):\n{page}");
    }
    let extended = env
        .daemon
        .registry
        .find(&item.id)
        .await
        .expect("find")
        .expect("item");
    assert!(extended.reply_due > item.reply_due, "{extended:?}");

    // The answer, written on the desk.
    browser
        .find(Locator::Id("answer-body"))
        .await
        .expect("the answer form")
        .send_keys("Būvatļauja šķūņa pārbūvei ir izsniegta; to varat saņemt klientu centrā.")
        .await
        .expect("type");
    screenshot(&browser, "answer-form.png").await;
    browser
        .find(Locator::Id("answer-submit"))
        .await
        .expect("answer button")
        .click()
        .await
        .expect("answer");
    let number = browser
        .wait()
        .for_element(Locator::Css("#answers .answer-number"))
        .await
        .expect("the registered answer")
        .text()
        .await
        .expect("number");
    assert!(number.starts_with("IZ-"), "{number}");
    browser
        .find(Locator::Id("item-closed"))
        .await
        .expect("the item is closed");

    // The mail reaches the relay with the PDF.
    support::wait_until(
        Duration::from_secs(30),
        "the answer at the relay",
        || async { !support::smtp::SmtpServer::messages(&maildir).is_empty() },
    )
    .await;
    let mails = support::smtp::SmtpServer::messages(&maildir);
    use mail_parser::MimeHeaders as _;
    let parsed = mail_parser::MessageParser::default()
        .parse(mails[0].as_bytes())
        .expect("a readable mail");
    assert!(
        parsed.subject().is_some_and(|s| s.contains(&number)),
        "{:?}",
        parsed.subject()
    );
    assert!(
        parsed.attachments().any(
            |a| a.content_type().is_some_and(|c| c.subtype() == Some("pdf"))
                && a.contents().starts_with(b"%PDF")
        ),
        "the answer's PDF is attached"
    );
    // Closed on time, by the member, with the answer's number.
    let audit = env.daemon.registry.audit_of(&item.id).await.expect("audit");
    let (_, actor, _, detail) = audit
        .iter()
        .find(|(_, _, action, _)| action == "closed")
        .expect("closed");
    assert_eq!(actor, "Jānis Būvnieks (janis)");
    assert!(
        detail.contains(&number) && detail.contains("\"on_time\":true"),
        "{detail}"
    );

    // The citizen's status page says answered.
    browser
        .goto(&format!("{}/status/{}", env.base, item.id))
        .await
        .expect("status page");
    let answered = browser
        .find(Locator::Id("answered"))
        .await
        .expect("answered on the status page")
        .text()
        .await
        .expect("text");
    assert!(
        answered.contains("Atbildēts") && answered.contains(&number),
        "{answered}"
    );
    browser.close().await.expect("close browser");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officer_searches_the_register_and_opens_an_item_in_chromium() {
    let driver = Driver::start();
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    add_accounts(&env).await;
    let permit = env
        .submit_item(
            "Būvatļaujas izsniegšana",
            "Lūdzu izsniegt būvatļauju pirts būvniecībai Subatē.",
        )
        .await;
    env.submit_item("Sveiki", "Vai jums garšo kafija?").await;
    env.submit_item("Ielu apgaismojums", "Nedeg laterna Skolas ielā.")
        .await;
    let browser = driver.browser().await;
    sign_in(&browser, &env.base, OFFICER).await;
    browser
        .goto(&format!("{}/desk/register?lang=lv", env.base))
        .await
        .expect("the register");
    assert_eq!(
        browser
            .find_all(Locator::Css("#register tbody tr"))
            .await
            .expect("rows")
            .len(),
        3
    );
    // Typed without diacritics and in another ending.
    browser
        .find(Locator::Id("register-q"))
        .await
        .expect("the search field")
        .send_keys("buvatlauja")
        .await
        .expect("type");
    browser
        .find(Locator::Id("register-search"))
        .await
        .expect("the search button")
        .click()
        .await
        .expect("search");
    for _ in 0..100 {
        let url = browser.current_url().await.expect("URL");
        if url.query().is_some_and(|q| q.contains("q=buvatlauja")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let found = browser
        .find_all(Locator::Css("#register tbody tr"))
        .await
        .expect("rows");
    assert_eq!(found.len(), 1);
    screenshot(&browser, "register-search.png").await;
    browser
        .find(Locator::LinkText(&permit.registration_number))
        .await
        .expect("the permit in the register")
        .click()
        .await
        .expect("open it");
    assert_eq!(
        text_of(&browser, "item-number").await,
        permit.registration_number
    );
    env.stop().await;
}

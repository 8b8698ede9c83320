//! In a real browser (Debian's chromium through chromedriver): a citizen
//! submits the form, then the statistics dashboard and the printable
//! quarterly report show what the registry holds. Screenshots are written to
//! `target/screenshots/` (copies are kept in `docs/screenshots/`).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
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
    let env = TestEnv::start(Options::new(Backend::Amqp)).await;
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

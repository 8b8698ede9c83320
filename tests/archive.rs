//! The archival handover (issue 19) with the real binary on both
//! registries: an e-mail with attachments (real Dovecot), a scanned letter
//! (real Tesseract) and a web form are registered; `pietura archive export`
//! writes their package, `pietura archive verify` passes it and fails a
//! tampered one naming the file; every rendition is a PDF/A as far as
//! independent tools can tell (poppler's `pdfinfo`/`pdffonts`/`pdftotext`,
//! qpdf), the scan's with its OCR text; `pietura archive retention` lists
//! the closed items past their term and deletes nothing.
//!
//! No PDF/A validator is installable from the registries this project
//! uses (veraPDF is Java from Maven); what the tests check instead is what
//! PDF/A requires and those tools can see: the `pdfaid` identification in
//! the XMP metadata, an OutputIntent `GTS_PDFA1` with an RGB ICC profile,
//! every font embedded, and the text extractable.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::Datelike;
use pietura::channels::email::normalise;
use pietura::registry::ItemSummary;
use support::dovecot::Dovecot;
use support::{Backend, Options, TestEnv, repo_path, scan_fixtures, wait_until};

const LONG_WAIT: Duration = Duration::from_secs(240);
const FORM: (&str, &str) = (
    "Būvatļauja",
    "Lūdzu izsniegt būvatļauju šķūņa būvniecībai Bebrenes pagastā.",
);

/// A channel folder: the shipped web form, the e-mail channel on this
/// Dovecot and a scan channel on `scans`.
fn channels(dovecot: &Dovecot, scans: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("channels dir");
    std::fs::copy(
        repo_path("channels/iesniegums.toml"),
        dir.path().join("iesniegums.toml"),
    )
    .expect("form channel");
    std::fs::write(
        dir.path().join("epasts.toml"),
        dovecot.channel_file("epasts", ""),
    )
    .expect("e-mail channel");
    std::fs::write(
        dir.path().join("pasts.toml"),
        format!(
            "type = \"scan\"\nid = \"pasts\"\nfolder = \"{}\"\npoll_seconds = 1\nstable_seconds = 1\nmin_confidence = 70\n",
            scans.display()
        ),
    )
    .expect("scan channel");
    dir
}

/// The three items: (form, e-mail, scan).
async fn register_three(
    env: &TestEnv,
    dovecot: &Dovecot,
    scans: &Path,
) -> (ItemSummary, ItemSummary, ItemSummary) {
    let form = env.submit_item(FORM.0, FORM.1).await;
    let raw = std::fs::read(repo_path("tests/golden/email/multi-attachment.eml"))
        .expect("e-mail fixture");
    dovecot.deliver(&raw);
    let key = normalise::parse(raw.clone(), None, &[]).idempotency_key("epasts");
    let mail = env.registered_key(&key).await;
    let part = scans.join(".letter.png.part");
    std::fs::copy(scan_fixtures().join("letter_300.png"), &part).expect("scan fixture");
    std::fs::rename(&part, scans.join("letter.png")).expect("scan dropped in");
    let registry = env.daemon.registry.clone();
    let scan_item = || async {
        registry
            .list(&pietura::registry::ItemFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_iter()
            .find(|i| i.channel_kind == "scan")
    };
    wait_until(LONG_WAIT, "the scanned letter registered", || async {
        scan_item().await.is_some()
    })
    .await;
    let scan = scan_item().await.expect("scan item");
    (form, mail, scan)
}

fn run(env: &TestEnv, args: &[&str]) -> (bool, String, String) {
    let blobs = env.blob_dir().to_string_lossy().to_string();
    let out = env.cli(args, &[("PIETURA__BLOBS__DIR", blobs.as_str())]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (scripts/test.sh installs it)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// What PDF/A requires that independent tools can see; the problems found.
fn pdfa_problems(pdf: &Path) -> Vec<String> {
    let path = pdf.to_string_lossy().to_string();
    let mut problems = Vec::new();
    // XMP identification (poppler reads the metadata stream).
    let meta = tool("pdfinfo", &["-meta", &path]);
    let part = ["pdfaid:part=\"2\"", "<pdfaid:part>2</pdfaid:part>"];
    let conformance = [
        "pdfaid:conformance=\"B\"",
        "<pdfaid:conformance>B</pdfaid:conformance>",
    ];
    if !part.iter().any(|p| meta.contains(p)) || !conformance.iter().any(|c| meta.contains(c)) {
        problems.push(format!(
            "no PDF/A-2B identification in the XMP metadata: {meta}"
        ));
    }
    // Every font embedded (poppler's font list: the `emb` column).
    let fonts = tool("pdffonts", &[&path]);
    for line in fonts.lines().skip(2) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 6 || cols[cols.len() - 5] != "yes" {
            problems.push(format!("font not embedded: {line}"));
        }
    }
    // The OutputIntent with its ICC profile (qpdf's object dump).
    let json: serde_json::Value =
        serde_json::from_str(&tool("qpdf", &["--json=2", "--json-key=qpdf", &path]))
            .expect("qpdf JSON");
    let objects = &json["qpdf"][1];
    let object = |r: &serde_json::Value| -> serde_json::Value {
        let key = format!("obj:{}", r.as_str().unwrap_or_default());
        let o = &objects[key.as_str()];
        if o["stream"].is_object() {
            o["stream"]["dict"].clone()
        } else {
            o["value"].clone()
        }
    };
    let catalog = objects
        .as_object()
        .expect("objects")
        .values()
        .find(|o| o["value"]["/Type"] == "/Catalog")
        .map(|o| o["value"].clone())
        .unwrap_or_default();
    let intents = catalog["/OutputIntents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let pdfa_intent = intents
        .iter()
        .map(&object)
        .find(|i| i["/S"] == "/GTS_PDFA1");
    match pdfa_intent {
        None => problems.push(format!(
            "no GTS_PDFA1 OutputIntent in the catalog {catalog}"
        )),
        Some(intent) => {
            let profile = object(&intent["/DestOutputProfile"]);
            if profile["/N"] != 3 {
                problems.push(format!(
                    "the OutputIntent's ICC profile is not RGB: {profile}"
                ));
            }
        }
    }
    problems
}

fn text_of(pdf: &Path) -> String {
    tool("pdftotext", &[&pdf.to_string_lossy(), "-"])
}

/// register-files.csv as (number, role, path, name, sha256) rows.
fn file_rows(pkg: &Path) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(pkg.join("register-files.csv")).expect("files CSV");
    let headers = reader.headers().expect("header").clone();
    reader
        .records()
        .map(|r| {
            let r = r.expect("row");
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("read")))
}

async fn export_verify_and_tamper(backend: Backend) {
    let dovecot = Dovecot::start();
    let scans = tempfile::tempdir().expect("scan folder");
    let channels = channels(&dovecot, scans.path());
    let mut opts = Options::new(backend);
    opts.channels_from = channels.path().to_path_buf();
    let env = TestEnv::start(opts).await;
    let (form, mail, scan) = register_three(&env, &dovecot, scans.path()).await;
    let year = chrono::Utc::now().year();
    let work = tempfile::tempdir().expect("work dir");
    let pkg = work.path().join("nodošana");
    let pkg_s = pkg.to_string_lossy().to_string();
    let period = format!("{year}-01-01..{year}-12-31");

    let (ok, stdout, stderr) = run(
        &env,
        &["archive", "export", "--period", &period, "--out", &pkg_s],
    );
    assert!(ok, "export failed: {stderr}");
    assert!(stdout.contains("3 items"), "{stdout}");
    let (ok, stdout, stderr) = run(&env, &["archive", "verify", &pkg_s]);
    assert!(ok, "a fresh package verifies: {stderr}");
    assert!(stdout.contains("package verified"), "{stdout}");
    // A second export into the same folder is refused.
    let (ok, _, stderr) = run(
        &env,
        &["archive", "export", "--period", &period, "--out", &pkg_s],
    );
    assert!(!ok && stderr.contains("not empty"), "{stderr}");

    // The register: three items with their metadata, CSV and XML alike.
    let mut reader = csv::Reader::from_path(pkg.join("register.csv")).expect("register.csv");
    let headers = reader.headers().expect("header").clone();
    let rows: Vec<BTreeMap<String, String>> = reader
        .records()
        .map(|r| {
            headers
                .iter()
                .zip(r.expect("row").iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect();
    let row_of = |item: &ItemSummary| {
        rows.iter()
            .find(|r| r["registration_number"] == item.registration_number)
            .unwrap_or_else(|| panic!("{} not in register.csv: {rows:?}", item.registration_number))
            .clone()
    };
    assert_eq!(rows.len(), 3, "{rows:?}");
    let form_row = row_of(&form);
    assert_eq!(form_row["subject"], FORM.0);
    assert_eq!(form_row["channel"], "web_form");
    assert_eq!(form_row["unit"], form.unit_id.clone().unwrap_or_default());
    assert_eq!(form_row["received_at"], form.received_at);
    assert_eq!(form_row["signature_status"], "none");
    let mail_row = row_of(&mail);
    assert_eq!(mail_row["subject"], "Atkritumu izvešanas līgums");
    assert_eq!(
        mail_row["sender_email"],
        mail.sender_email.clone().unwrap_or_default()
    );
    assert_eq!(row_of(&scan)["channel"], "scan");
    let xml = std::fs::read_to_string(pkg.join("register.xml")).expect("register.xml");
    let doc = roxmltree::Document::parse(&xml).expect("register.xml parses");
    let numbers: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("item"))
        .filter_map(|n| n.attribute("number"))
        .collect();
    for item in [&form, &mail, &scan] {
        assert!(
            numbers.contains(&item.registration_number.as_str()),
            "{numbers:?}"
        );
    }
    assert!(
        xml.contains("<subject>Atkritumu izvešanas līgums</subject>"),
        "{xml}"
    );

    // Originals and attachments as received, with their checksums.
    let files = file_rows(&pkg);
    let mail_msg = env.message_of(&mail).await;
    assert!(mail_msg.attachments.len() >= 2);
    for a in &mail_msg.attachments {
        let row = files
            .iter()
            .find(|f| {
                f["registration_number"] == mail.registration_number
                    && f["role"] == "attachment"
                    && f["sha256"] == a.sha256
            })
            .unwrap_or_else(|| panic!("attachment {} not listed: {files:?}", a.filename));
        assert_eq!(row["name"], a.filename);
        let path = pkg.join(&row["path"]);
        assert_eq!(sha256_of(&path), a.sha256, "{}", row["path"]);
        assert!(!row["path"].contains(".."), "{}", row["path"]);
    }
    let original_of = |item: &ItemSummary| {
        files
            .iter()
            .find(|f| {
                f["registration_number"] == item.registration_number && f["role"] == "original"
            })
            .unwrap_or_else(|| panic!("no original of {}: {files:?}", item.registration_number))
            .clone()
    };
    let raw = std::fs::read(repo_path("tests/golden/email/multi-attachment.eml")).expect("eml");
    assert_eq!(
        std::fs::read(pkg.join(&original_of(&mail)["path"])).expect("original mail"),
        raw,
        "the mail's original is the raw mail as received"
    );
    let scan_original = pkg.join(&original_of(&scan)["path"]);
    assert_eq!(
        std::fs::read(&scan_original).expect("original scan"),
        std::fs::read(scan_fixtures().join("letter_300.png")).expect("fixture"),
        "the scan's original is the scanned file as received"
    );

    // The renditions: PDF/A, with the item's text; the scan's with OCR text.
    let rendition_of = |item: &ItemSummary| {
        let row = files
            .iter()
            .find(|f| {
                f["registration_number"] == item.registration_number && f["role"] == "rendition"
            })
            .unwrap_or_else(|| panic!("no rendition of {}", item.registration_number))
            .clone();
        pkg.join(&row["path"])
    };
    for item in [&form, &mail, &scan] {
        let pdf = rendition_of(item);
        let problems = pdfa_problems(&pdf);
        assert!(problems.is_empty(), "{}: {problems:#?}", pdf.display());
    }
    let form_text = text_of(&rendition_of(&form));
    assert!(form_text.contains("šķūņa būvniecībai"), "{form_text}");
    assert!(form_text.contains(&form.registration_number), "{form_text}");
    let mail_text = text_of(&rendition_of(&mail));
    assert!(
        mail_text.contains("Atkritumu izvešanas līgums"),
        "{mail_text}"
    );
    let scan_text = text_of(&rendition_of(&scan));
    for word in ["Iesniegums", "būvatļauju", "Ilūkstē"] {
        assert!(
            scan_text.contains(word),
            "OCR text lacks {word:?}: {scan_text}"
        );
    }

    // Tampering: a changed attachment, an added file, a removed file.
    let attachment = files
        .iter()
        .find(|f| f["role"] == "attachment")
        .expect("an attachment")["path"]
        .clone();
    let mut bytes = std::fs::read(pkg.join(&attachment)).expect("attachment");
    bytes.push(b'!');
    std::fs::write(pkg.join(&attachment), bytes).expect("tamper");
    std::fs::write(pkg.join("items/extra.txt"), "slipped in").expect("extra");
    let rendition = rendition_of(&form);
    let rendition_rel = rendition
        .strip_prefix(&pkg)
        .expect("inside")
        .to_string_lossy()
        .to_string();
    std::fs::remove_file(&rendition).expect("remove");
    let (ok, _, stderr) = run(&env, &["archive", "verify", &pkg_s]);
    assert!(!ok, "a tampered package fails");
    for needle in [
        format!("{attachment}: SHA-256 differs"),
        "items/extra.txt: not listed".to_string(),
        format!("{rendition_rel}: listed in manifest-sha256.txt but missing"),
        format!("register-files.csv: names {rendition_rel}, which is not in the package"),
    ] {
        assert!(stderr.contains(&needle), "{needle:?} not in:\n{stderr}");
    }
    env.stop().await;
}

async fn retention_lists_and_never_deletes(backend: Backend) {
    let mut opts = Options::new(backend);
    let channels = tempfile::tempdir().expect("channels");
    std::fs::copy(
        repo_path("channels/iesniegums.toml"),
        channels.path().join("iesniegums.toml"),
    )
    .expect("form channel");
    opts.channels_from = channels.path().to_path_buf();
    let env = TestEnv::start(opts).await;
    let old = env.submit_item(FORM.0, FORM.1).await;
    let recent = env.submit_item(FORM.0, "Otrs iesniegums par šķūni.").await;
    let permanent = env.submit_item(FORM.0, "Trešais iesniegums.").await;
    let unclassified = env.submit_item(FORM.0, "Ceturtais iesniegums.").await;
    let open = env.submit_item(FORM.0, "Piektais iesniegums.").await;
    // The case (another engineer's classification fills it) and the closing
    // time (an answer sets it), as stored.
    for (item, case, closed) in [
        (&old, Some("1-10"), Some("2020-06-01T10:00:00.000000Z")),
        (&recent, Some("1-10"), Some("2025-06-01T10:00:00.000000Z")),
        (&permanent, Some("1-1"), Some("2000-06-01T10:00:00.000000Z")),
        (&unclassified, None, Some("2019-06-01T10:00:00.000000Z")),
        (&open, Some("1-10"), None),
    ] {
        sqlx::query("UPDATE items SET case_code = $1, closed_at = $2 WHERE id = $3")
            .bind(case.map(str::to_string))
            .bind(closed.map(str::to_string))
            .bind(item.id.clone())
            .execute(env.daemon.registry.pool())
            .await
            .expect("case and closing");
    }
    let before = env.daemon.registry.count().await.expect("count");
    let (ok, stdout, stderr) = run(
        &env,
        // The terms come from the classification scheme in force
        // (rules/cases.toml: 1-10 five years, 1-1 permanent).
        &["archive", "retention", "--as-of", "2026-06-01"],
    );
    assert!(ok, "{stderr}");
    let listed: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(
        listed,
        vec![format!("{},1-10,5,2020-06-01,2026-01-01", old.registration_number).as_str()],
        "only the item closed in 2020 is past 5 years on 2026-06-01: {stdout}"
    );
    // --retention overrides the scheme's term: ten years keep it.
    let (ok, stdout, stderr) = run(
        &env,
        &[
            "archive",
            "retention",
            "--as-of",
            "2026-06-01",
            "--retention",
            "1-10=10",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().skip(1).count(), 0, "{stdout}");
    assert!(
        stderr.contains("1 closed without a case") && stderr.contains("nothing was deleted"),
        "{stderr}"
    );
    assert_eq!(env.daemon.registry.count().await.expect("count"), before);
    assert!(
        env.daemon
            .registry
            .find(&old.id)
            .await
            .expect("find")
            .is_some()
    );

    // Export of one case only.
    let work = tempfile::tempdir().expect("work");
    let pkg: PathBuf = work.path().join("lieta");
    let year = chrono::Utc::now().year();
    let (ok, stdout, stderr) = run(
        &env,
        &[
            "archive",
            "export",
            "--period",
            &format!("{year}-01-01..{year}-12-31"),
            "--case",
            "1-10",
            "--out",
            &pkg.to_string_lossy(),
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("3 items"), "{stdout}");
    let (ok, _, stderr) = run(&env, &["archive", "verify", &pkg.to_string_lossy()]);
    assert!(ok, "{stderr}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_period_exports_verifies_and_tampering_is_named_amqp_postgres() {
    export_verify_and_tamper(Backend::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_period_exports_verifies_and_tampering_is_named_embedded_sqlite() {
    export_verify_and_tamper(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_lists_past_items_and_deletes_nothing_amqp_postgres() {
    retention_lists_and_never_deletes(Backend::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_lists_past_items_and_deletes_nothing_embedded_sqlite() {
    retention_lists_and_never_deletes(Backend::Embedded).await;
}

//! The scanned-post channel end to end, with real Tesseract, poppler,
//! RabbitMQ and PostgreSQL: scans dropped into the watched folder become
//! registered items routed by the shipped rules; stacks are split at blank
//! and QR separator pages; illegible letters go to review; broken files go
//! to `failed/` with a note; a file handed in again registers nothing twice.

mod support;

use std::path::Path;
use std::time::Duration;

use pietura::registry::ItemSummary;
use support::{Backend, Options, TestEnv, scan_fixtures, wait_until};

const LONG_WAIT: Duration = Duration::from_secs(240);

fn channel_dir(folder: &Path) -> tempfile::TempDir {
    channel_dir_with(folder, "")
}

/// A channel folder with the scan channel `pasts` on `folder`, plus `extra` keys.
fn channel_dir_with(folder: &Path, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("pasts.toml"),
        format!(
            "type = \"scan\"\nid = \"pasts\"\nfolder = \"{}\"\npoll_seconds = 1\nstable_seconds = 1\nmin_confidence = 70\n{extra}\n",
            folder.display()
        ),
    )
    .expect("channel file");
    dir
}

fn drop_in(folder: &Path, name: &str) {
    // Written beside and renamed in, as a scanner's scan-to-folder does.
    let part = folder.join(format!(".{name}.part"));
    std::fs::copy(scan_fixtures().join(name), &part).expect("copy fixture");
    std::fs::rename(&part, folder.join(name)).expect("rename");
}

async fn items(env: &TestEnv) -> Vec<ItemSummary> {
    let mut all = env
        .daemon
        .registry
        .list(&pietura::registry::ItemFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list");
    all.sort_by(|a, b| a.received_at.cmp(&b.received_at));
    all
}

async fn scan_meta(env: &TestEnv, item: &ItemSummary) -> serde_json::Value {
    env.message_of(item).await.metadata["scan"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scans_become_routed_items_split_checked_and_never_registered_twice() {
    let folder = tempfile::tempdir().expect("scan folder");
    let channels = channel_dir(folder.path());
    let mut opts = Options::new(Backend::Amqp);
    opts.channels_from = channels.path().to_path_buf();
    let env = TestEnv::start(opts).await;

    for name in [
        "letter_300.png",
        "batch.pdf",
        "text_layer.pdf",
        "low_quality.png",
        "corrupt.pdf",
        "bomb.png",
    ] {
        drop_in(folder.path(), name);
    }
    // A 5 × 5 m page: rendered at 300 dpi it would be 3.6 gigapixels.
    std::fs::write(
        folder.path().join("giant.pdf"),
        "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n\
         3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 14400 14400]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n",
    )
    .expect("giant.pdf");
    let processed = folder.path().join("processed");
    let failed = folder.path().join("failed");
    wait_until(LONG_WAIT, "every scan processed or failed", || async {
        let n = |d: &Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
        n(&processed) == 4 && n(&failed) == 6
    })
    .await;
    // Files leave the folder once published; registration follows.
    // letter 1 + batch 3 + text layer 1 + low quality 1
    wait_until(LONG_WAIT, "6 letters registered", || async {
        items(&env).await.len() >= 6
    })
    .await;
    let registered = items(&env).await;
    assert_eq!(registered.len(), 6, "{registered:#?}");

    let mut by_file: std::collections::BTreeMap<String, Vec<(serde_json::Value, ItemSummary)>> =
        Default::default();
    for item in &registered {
        let meta = scan_meta(&env, item).await;
        by_file
            .entry(meta["file"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push((meta, item.clone()));
    }

    // The clean letter: routed by the shipped rules, its facts extracted.
    let (meta, letter) = &by_file["letter_300.png"][0];
    assert_eq!(letter.unit_id.as_deref(), Some("buvvalde"), "{letter:?}");
    assert_eq!(letter.sender_name.as_deref(), Some("Anna Bērziņa"));
    assert_eq!(
        letter.sender_email.as_deref(),
        Some("anna.berzina@example.lv")
    );
    assert_eq!(letter.sender_phone.as_deref(), Some("+37129123456"));
    assert_eq!(
        letter.subject.as_deref(),
        Some("Iesniegums par būvatļaujas izsniegšanu")
    );
    assert_eq!(meta["extracted"]["personas_kods"]["value"], "150385-12346");
    assert_eq!(meta["extracted"]["date"]["value"], "2026-11-16");
    assert_eq!(meta["original"]["content_type"], "image/png");
    let blob = env.blob_dir();
    let sha = meta["original"]["sha256"].as_str().expect("sha");
    assert!(
        blob.join(&sha[..2]).join(sha).exists(),
        "the original scan is kept"
    );

    // The stack: three letters at the separators, each to its unit.
    let mut batch: Vec<(Vec<u64>, Option<String>)> = by_file["batch.pdf"]
        .iter()
        .map(|(m, i)| {
            (
                m["pages"]
                    .as_array()
                    .expect("pages")
                    .iter()
                    .filter_map(|p| p.as_u64())
                    .collect(),
                i.unit_id.clone(),
            )
        })
        .collect();
    batch.sort();
    assert_eq!(
        batch,
        vec![
            (vec![1, 1], Some("buvvalde".to_string())),
            (vec![3, 4], Some("komunala".to_string())),
            (vec![6, 6], Some("socialais".to_string())),
        ]
    );
    let (meta, c) = by_file["batch.pdf"]
        .iter()
        .find(|(m, _)| m["pages"][0] == 6)
        .expect("letter C");
    assert!(
        meta["extracted"].get("personas_kods").is_none(),
        "a wrong check digit is not taken: {meta}"
    );
    assert_eq!(c.sender_name.as_deref(), Some("Ilze Kalniņa"));

    // The PDF's own text layer is used, not OCR.
    let (meta, _) = &by_file["text_layer.pdf"][0];
    assert_eq!(meta["page_details"][0]["text_layer"], true, "{meta}");
    assert!(
        meta["page_details"][1]["text"].as_str().unwrap_or("").len() > 100,
        "per-page text: {meta}"
    );

    // Illegible: registered, in review with the reason.
    let (meta, poor) = &by_file["low_quality.png"][0];
    assert_eq!(poor.state, "review", "{meta}");
    assert!(
        poor.review_reason
            .as_deref()
            .unwrap_or("")
            .contains("min_confidence"),
        "{poor:?}"
    );

    // Broken files: set aside with a note naming the problem.
    let note = std::fs::read_to_string(failed.join("bomb.png.error.txt")).expect("note");
    assert!(note.contains("max_page_pixels"), "{note}");
    let note = std::fs::read_to_string(failed.join("giant.pdf.error.txt")).expect("note");
    assert!(
        note.contains("Page 1 is 14400 × 14400 pt") && note.contains("max_page_pixels"),
        "{note}"
    );
    let note = std::fs::read_to_string(failed.join("corrupt.pdf.error.txt")).expect("note");
    assert!(note.contains("corrupt.pdf"), "{note}");

    // The same stack handed in again: nothing new is registered.
    drop_in(folder.path(), "batch.pdf");
    wait_until(LONG_WAIT, "the second batch.pdf processed", || async {
        std::fs::read_dir(&processed)
            .map(|r| r.count())
            .unwrap_or(0)
            == 5
    })
    .await;
    // Its letters are published again and recognised as duplicates.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        items(&env).await.len(),
        6,
        "a file read again registers no letter twice"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_tiff_page_is_accounted_for_converted_or_kept_for_review() {
    let folder = tempfile::tempdir().expect("scan folder");
    let channels = channel_dir(folder.path());
    let mut opts = Options::new(Backend::Amqp);
    opts.channels_from = channels.path().to_path_buf();
    let env = TestEnv::start(opts).await;
    // mixed_depth.tif: A, blank, C as 16-bit grey with alpha (Leptonica
    // cannot decode it). unreadable_page.tif: A, A's enclosure in JPEG 2000
    // (nothing here decodes it), blank, C.
    drop_in(folder.path(), "mixed_depth.tif");
    drop_in(folder.path(), "unreadable_page.tif");
    let processed = folder.path().join("processed");
    let failed = folder.path().join("failed");
    let n = |d: &Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
    wait_until(LONG_WAIT, "both TIFFs processed", || async {
        n(&processed) + n(&failed) == 2
    })
    .await;
    assert_eq!(n(&failed), 0, "nothing set aside");
    wait_until(LONG_WAIT, "4 letters registered", || async {
        items(&env).await.len() >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let registered = items(&env).await;
    assert_eq!(registered.len(), 4, "{registered:#?}");
    let mut letters = Vec::new();
    for item in &registered {
        let msg = env.message_of(item).await;
        let meta = msg.metadata["scan"].clone();
        letters.push((
            meta["file"].as_str().unwrap_or_default().to_string(),
            meta["pages"].to_string(),
            item.clone(),
            msg,
            meta,
        ));
    }
    letters.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let found: Vec<(&str, &str)> = letters
        .iter()
        .map(|(f, p, ..)| (f.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            ("mixed_depth.tif", "[1,1]"),
            ("mixed_depth.tif", "[3,3]"),
            ("unreadable_page.tif", "[1,2]"),
            ("unreadable_page.tif", "[4,4]"),
        ]
    );
    // The 16-bit page was converted and read like any other.
    let (_, _, c, _, _) = &letters[1];
    assert_eq!(c.unit_id.as_deref(), Some("socialais"), "{c:?}");
    assert_eq!(c.sender_name.as_deref(), Some("Ilze Kalniņa"));
    // The letter with the undecodable page: registered with what could be
    // read, the original attached, in review naming the page.
    let (_, _, a, msg, meta) = &letters[2];
    assert_eq!(a.state, "review", "{a:?}");
    let reason = a.review_reason.as_deref().unwrap_or("");
    assert!(
        reason.contains("page 2") && reason.contains("unreadable_page.tif"),
        "{reason}"
    );
    assert!(msg.body.contains("būvatļauj"), "page 1's text is kept");
    assert_eq!(msg.attachments.len(), 1, "{:?}", msg.attachments);
    assert_eq!(
        msg.attachments[0].sha256,
        meta["original"]["sha256"].as_str().unwrap_or("")
    );
    assert!(meta["page_details"][1]["unreadable"].is_string(), "{meta}");
    let (_, _, c, _, _) = &letters[3];
    assert_eq!(c.unit_id.as_deref(), Some("socialais"), "{c:?}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daemon_stopped_mid_stack_registers_no_letter_twice_after_restart() {
    let folder = tempfile::tempdir().expect("scan folder");
    let channels = channel_dir(folder.path());
    let mut opts = Options::new(Backend::Amqp);
    opts.channels_from = channels.path().to_path_buf();
    let env = TestEnv::start(opts).await;
    // A stack of 18 pages: batch.pdf three times over. Nothing separates
    // one copy's last letter (C) from the next copy's first (A), so they
    // are one letter: A, B, C+A, B, C+A, B, C = 7 letters.
    let batch = scan_fixtures().join("batch.pdf");
    let stack = folder.path().join(".stack.pdf.part");
    let made = std::process::Command::new("pdfunite")
        .args([&batch, &batch, &batch])
        .arg(&stack)
        .status()
        .expect("pdfunite (poppler-utils)");
    assert!(made.success());
    std::fs::rename(&stack, folder.path().join("stack.pdf")).expect("rename");

    // Stopped once some letters are registered and before the file is done.
    wait_until(LONG_WAIT, "two letters of the stack registered", || async {
        items(&env).await.len() >= 2
    })
    .await;
    let before = items(&env).await.len();
    let env = env.restart().await;
    assert!(
        folder.path().join("stack.pdf").exists(),
        "stopped mid-stack ({before} of 7 letters): the file stays in the folder"
    );
    assert!(
        before < 7,
        "the stack was finished before the stop; the test proves nothing"
    );

    let processed = folder.path().join("processed");
    wait_until(
        LONG_WAIT,
        "the stack processed after the restart",
        || async {
            std::fs::read_dir(&processed)
                .map(|r| r.count())
                .unwrap_or(0)
                == 1
        },
    )
    .await;
    wait_until(LONG_WAIT, "7 letters registered", || async {
        items(&env).await.len() >= 7
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = items(&env).await;
    assert_eq!(after.len(), 7, "every letter once: {after:#?}");
    let mut ranges: Vec<String> = Vec::new();
    for item in &after {
        ranges.push(scan_meta(&env, item).await["pages"].to_string());
    }
    ranges.sort();
    ranges.dedup();
    assert_eq!(ranges.len(), 7, "{ranges:?}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scanner_uploads_over_http_with_its_token_and_the_letter_is_registered() {
    const VAR: &str = "PIETURA_TEST_SCAN_UPLOAD_TOKEN";
    // SAFETY: set once, before the daemon starts; no other test reads it.
    unsafe { std::env::set_var(VAR, "scanner-secret") };
    let folder = tempfile::tempdir().expect("scan folder");
    let channels = channel_dir_with(
        folder.path(),
        &format!("upload_token_env = \"{VAR}\"\nmax_file_bytes = 1000000"),
    );
    let mut opts = Options::new(Backend::Amqp);
    opts.channels_from = channels.path().to_path_buf();
    let env = TestEnv::start(opts).await;
    let url = format!("{}/scan/pasts?name=../../etc/v%C4%93stule.png", env.base);
    let letter = std::fs::read(scan_fixtures().join("letter_300.png")).expect("fixture");

    let wrong = env
        .http
        .post(&url)
        .bearer_auth("guess")
        .body(letter.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status(), 401);
    let big = std::fs::read(scan_fixtures().join("image_only.pdf")).expect("fixture");
    let refused = env
        .http
        .post(&url)
        .bearer_auth("scanner-secret")
        .body(big)
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), 413, "over max_file_bytes");
    let queued = env
        .http
        .post(&url)
        .bearer_auth("scanner-secret")
        .body(letter)
        .send()
        .await
        .expect("post");
    assert_eq!(queued.status(), 202);
    let answer: serde_json::Value = queued.json().await.expect("json");
    let file = answer["file"].as_str().expect("file").to_string();
    assert!(
        file.ends_with("-vēstule.png") && !file.contains('/'),
        "{file}"
    );

    wait_until(LONG_WAIT, "the uploaded letter registered", || async {
        items(&env).await.len() == 1
    })
    .await;
    let item = &items(&env).await[0];
    assert_eq!(item.unit_id.as_deref(), Some("buvvalde"));
    assert_eq!(scan_meta(&env, item).await["file"], file.as_str());
    assert_eq!(
        std::fs::read_dir(folder.path().join("processed"))
            .map(|r| r.count())
            .unwrap_or(0),
        1
    );
    env.stop().await;
}

/// CPU seconds (user + system, all threads) the process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // Fields after the command name (which may hold spaces): state is 3rd,
    // utime the 14th and stime the 15th of the whole line.
    let after = stat.rsplit_once(')').expect("stat format").1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    ticks / hz
}

/// Kills the daemon when the test ends, passed or not.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_scan_folder_costs_no_cpu_and_a_new_file_still_wakes_it() {
    // The daemon as a process of its own (embedded bus on SQLite), so its
    // CPU time is its own and not the other tests'.
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = dir.path().join("scans");
    std::fs::create_dir_all(&folder).expect("scan folder");
    // Polling once an hour: a file found quickly was found by its file event.
    let channels = dir.path().join("channels");
    std::fs::create_dir_all(&channels).expect("channels");
    std::fs::write(
        channels.join("pasts.toml"),
        format!(
            "type = \"scan\"\nid = \"pasts\"\nfolder = \"{}\"\npoll_seconds = 3600\nstable_seconds = 1\n[ocr]\nworkers = 1\n",
            folder.display()
        ),
    )
    .expect("channel file");
    let port = support::free_port();
    let daemon = Kill(
        std::process::Command::new(env!("CARGO_BIN_EXE_pietura"))
            .arg("run")
            .env("PIETURA__DATA_DIR", dir.path().join("data"))
            .env("PIETURA__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("PIETURA__CHANNELS__DIR", &channels)
            .env("PIETURA__RULES__DIR", support::repo_path("rules"))
            .env("PIETURA_LOG", "warn")
            .env("OMP_THREAD_LIMIT", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start pietura run"),
    );
    let pid = daemon.0.id();
    wait_until(Duration::from_secs(60), "the daemon listening", || async {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    // Start-up (engines loading, migrations) is over after a moment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = cpu_seconds(pid) - before;
    eprintln!("idle daemon with a scan channel: {idle:.3} CPU-s in 10 s");
    assert!(
        idle < 0.2,
        "an empty scan folder cost {idle:.2} CPU-seconds in 10 s of idling"
    );

    // Not a scan: set aside at once, found through its file event.
    let part = folder.join(".junk.png.part");
    std::fs::write(&part, b"\x89PNG\r\n\x1a\nnot really").expect("write");
    std::fs::rename(&part, folder.join("junk.png")).expect("rename");
    let note = folder.join("failed").join("junk.png.error.txt");
    wait_until(Duration::from_secs(30), "junk.png set aside", || async {
        note.exists()
    })
    .await;
    drop(daemon);
}

/// `fixture` written into `folder` as `name`, made a file of its own by
/// bytes after its end (after a PNG's IEND, a PDF's %%EOF), which readers
/// ignore: another SHA-256, so another letter.
fn drop_variant(folder: &Path, fixture: &str, name: &str, n: usize) {
    let mut bytes = std::fs::read(scan_fixtures().join(fixture)).expect("fixture");
    bytes.extend_from_slice(format!("\n% copy {n}\n").as_bytes());
    let part = folder.join(format!(".{name}.part"));
    std::fs::write(&part, bytes).expect("write variant");
    std::fs::rename(&part, folder.join(name)).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_on_one_folder_read_each_file_once() {
    let folder = tempfile::tempdir().expect("scan folder");
    let channels = channel_dir_with(folder.path(), "[ocr]\nworkers = 1");
    let mut opts = Options::new(Backend::Amqp);
    opts.channels_from = channels.path().to_path_buf();
    let env = TestEnv::start(opts).await;
    // A second daemon on the same registry, queues and channel files: it
    // watches the same folder, as two hosts on one network share do.
    let second = env.another_daemon().await;
    const PDFS: usize = 6;
    for n in 0..PDFS {
        drop_variant(folder.path(), "text_layer.pdf", &format!("t{n}.pdf"), n);
    }
    drop_variant(folder.path(), "letter_300.png", "letter.png", 0);
    let files = PDFS + 1;
    let processed = folder.path().join("processed");
    let failed = folder.path().join("failed");
    let n = |d: &Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
    wait_until(LONG_WAIT, "every scan moved out of the folder", || async {
        n(&processed) + n(&failed) >= files
    })
    .await;
    wait_until(LONG_WAIT, "every letter registered", || async {
        items(&env).await.len() >= files
    })
    .await;
    // Late second readings would be published and registered by now too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let notes: Vec<String> = std::fs::read_dir(&failed)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(notes.is_empty(), "files set aside as failed: {notes:?}");
    assert_eq!(n(&processed), files, "each file moved once");
    let registered = items(&env).await;
    assert_eq!(registered.len(), files, "each letter registered once");
    // Each letter was read and handed on by one daemon: one bus message
    // per item, none recognised as a repeat.
    let (published, repeats): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN duplicate = 1 THEN 1 ELSE 0 END), 0) \
         FROM received_messages",
    )
    .fetch_one(env.daemon.registry.pool())
    .await
    .expect("receipts");
    assert_eq!(
        (published, repeats),
        (files as i64, 0),
        "letters read and handed on by both daemons"
    );
    second.shutdown().await;
    env.stop().await;
}

//! The chaos proof (issue 21): three `pietura run` daemons on a three-node
//! RabbitMQ cluster and the test's own PostgreSQL, all started here as the
//! test's processes on loopback, take a mixed load (web forms, signed SMS
//! webhooks, mails into a real Dovecot acknowledged through a real SMTP
//! server, scanned letters in one shared scan folder; some with awkward
//! text) while daemons are SIGKILLed, broker nodes
//! are killed and brought back, PostgreSQL is shut down `-m immediate` and
//! the number counters are locked across several daemon restarts. Then every
//! accepted item is accounted for: 0 lost, 0 registered twice, numbers
//! gap-free per series, every item's notice in its unit's queue, every SMS
//! and mail answer sent at most once, no scan file set aside, no deadline
//! moved twice. The same, shorter, for
//! the embedded default (SQLite + embedded queue) with SIGKILLs and a poison
//! message.
//!
//! Sized by the environment (the defaults are the short run of
//! `scripts/test.sh`; `scripts/chaos.sh` runs the long one):
//! `PIETURA_CHAOS_ITEMS`, `PIETURA_CHAOS_KILLS`, `PIETURA_CHAOS_NODE_STOPS`,
//! `PIETURA_CHAOS_PG_RESTARTS`, `PIETURA_CHAOS_STALL_RESTARTS`,
//! `PIETURA_CHAOS_WORKERS` (citizens sending at once),
//! `PIETURA_CHAOS_SEED`; `PIETURA_CHAOS_REPORT=FILE` writes the figures as
//! JSON (`PIETURA_CHAOS_EMBEDDED_ITEMS`, `…_KILLS` and `…_REPORT` for the
//! embedded run). Needs RabbitMQ's and PostgreSQL's programs installed
//! (`scripts/test.sh` installs them); the shared servers are not touched.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::{BasicAckOptions, BasicGetOptions};
use pietura::channels::sms::body_signature;
use pietura::registry::{Registry, RoutedNotice};
use serde_json::json;
use sqlx::Connection;
use support::dovecot::Dovecot;
use support::servers::{Cluster, Postgres, log_file, port};
use support::smtp::SmtpServer;

const SMS_SECRET: &str = "chaos-secret";

/// Backslash sequences (the six characters `\u0000` too), a lone combining mark.
const AWKWARD: &str = "\u{0301}Ceļš C:\\new\\t un \\u0000 un \\\\u0000 beigas";

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// A small deterministic generator (the seed is printed, so a run can be repeated).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

/// Runs a blocking step (a server's command-line tool) without holding up
/// the runtime's other tasks (the citizens keep sending meanwhile).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

// ----------------------------------------------------------- SMS provider

/// SMS answers the daemons sent, by recipient number.
type Answers = Arc<Mutex<HashMap<String, usize>>>;

/// A stand-in for the SMS gateway's sending API (our signed JSON): it
/// counts every answer by recipient and says it sent it.
async fn sms_provider() -> (String, Answers) {
    use axum::extract::State;
    let answers: Answers = Default::default();
    let app = axum::Router::new()
        .fallback(|State(a): State<Answers>, body: String| async move {
            let to = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["to"].as_str().map(str::to_string))
                .unwrap_or_default();
            *a.lock().expect("lock").entry(to).or_default() += 1;
            (axum::http::StatusCode::CREATED, "{\"parts\":1}")
        })
        .with_state(answers.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/send"), answers)
}

fn write_channels(dir: &Path, send_url: &str) {
    std::fs::create_dir_all(dir).expect("channels dir");
    std::fs::copy(
        support::repo_path("channels/iesniegums.toml"),
        dir.join("iesniegums.toml"),
    )
    .expect("form channel");
    std::fs::write(
        dir.join("sms-chaos.toml"),
        format!(
            "type = \"sms\"\nid = \"sms-chaos\"\n[gateway]\nkind = \"json_hmac\"\nsecret = \"{SMS_SECRET}\"\n\
             send_url = \"{send_url}\"\n[reply]\nmax_per_number_per_day = 100\n"
        ),
    )
    .expect("sms channel");
}

/// The e-mail channel on `dovecot`, acknowledging through the SMTP server
/// on `smtp_port`, and the scan channel on `folder` (text-layer PDFs: no OCR).
fn write_other_channels(dir: &Path, dovecot: &Dovecot, smtp_port: u16, folder: &Path) {
    let ack = format!(
        "[acknowledgement]\nfrom = \"Pašvaldības dokumenti <dokumenti@example.lv>\"\n\
         municipality = \"Parauga novada pašvaldība\"\ncontact = \"tālr. 65400000\"\n\
         [acknowledgement.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"plain\"\n"
    );
    std::fs::write(
        dir.join("pasts-chaos.toml"),
        dovecot.channel_file("pasts-chaos", &ack),
    )
    .expect("e-mail channel");
    std::fs::create_dir_all(folder).expect("scan folder");
    std::fs::write(
        dir.join("skeneris-chaos.toml"),
        format!(
            "type = \"scan\"\nid = \"skeneris-chaos\"\nfolder = \"{}\"\npoll_seconds = 1\n\
             stable_seconds = 1\n[ocr]\nworkers = 1\n",
            folder.display()
        ),
    )
    .expect("scan channel");
}

/// A one-page PDF whose text layer reads `text` (ASCII, Helvetica), as a
/// scanner that runs its own OCR writes it.
fn text_pdf(text: &str) -> Vec<u8> {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('(', "\\(")
        .replace(')', "\\)");
    let content = format!("BT /F1 11 Tf 60 760 Td ({escaped}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] \
         /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
            .to_string(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        pdf.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

/// Acknowledgements the SMTP server received, by recipient address.
fn mail_answers(maildir: &Path) -> HashMap<String, usize> {
    let mut by_to: HashMap<String, usize> = HashMap::new();
    for raw in SmtpServer::messages(maildir) {
        let to = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .and_then(|m| {
                m.to()
                    .and_then(|t| t.first())
                    .and_then(|a| a.address())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        *by_to.entry(to).or_default() += 1;
    }
    by_to
}

// ----------------------------------------------------------------- daemons

/// `pietura run` processes, each with its own port and configuration file.
struct Daemons {
    configs: Vec<PathBuf>,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    logs: Vec<PathBuf>,
}

impl Daemons {
    fn new(root: &Path, n: usize, config: impl Fn(usize, u16) -> String) -> Daemons {
        let mut d = Daemons {
            configs: vec![],
            ports: vec![],
            children: vec![],
            logs: vec![],
        };
        for i in 0..n {
            let port = port();
            let file = root.join(format!("pietura-{i}.toml"));
            std::fs::write(&file, config(i, port)).expect("daemon config");
            d.configs.push(file);
            d.ports.push(port);
            d.children.push(None);
            d.logs.push(root.join(format!("daemon-{i}.log")));
        }
        d
    }

    fn start(&mut self, i: usize) {
        let child = Command::new(env!("CARGO_BIN_EXE_pietura"))
            .arg("--config")
            .arg(&self.configs[i])
            .arg("run")
            .env_remove("PIETURA_CONFIG")
            .env("PIETURA_LOG", "warn,pietura=info")
            .stdin(Stdio::null())
            .stdout(log_file(&self.logs[i]))
            .stderr(log_file(&self.logs[i]))
            .spawn()
            .expect("start pietura run");
        self.children[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    /// Waits until daemon `i` answers `/readyz` with 200; how long it took.
    async fn ready(&mut self, http: &reqwest::Client, i: usize, limit: Duration) -> Duration {
        self.answers(http, i, "/readyz", limit).await
    }

    /// Waits until daemon `i` answers `path` with 2xx.
    async fn answers(
        &mut self,
        http: &reqwest::Client,
        i: usize,
        path: &str,
        limit: Duration,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}{path}", self.base(i))).send().await
                && r.status().is_success()
            {
                return start.elapsed();
            }
            if let Some(c) = self.children[i].as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("daemon {i} exited ({status}): {}", self.tail(i));
            }
            assert!(
                start.elapsed() < limit,
                "daemon {i} did not answer {path} within {limit:?}: {}",
                self.tail(i)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(&self.logs[i]).unwrap_or_default();
        log[log.floor_char_boundary(log.len().saturating_sub(4000))..].to_string()
    }

    /// Lines of every daemon's log that contain `text`.
    fn log_lines(&self, text: &str) -> usize {
        self.logs
            .iter()
            .map(|l| {
                std::fs::read_to_string(l)
                    .unwrap_or_default()
                    .lines()
                    .filter(|line| line.contains(text))
                    .count()
            })
            .sum()
    }

    fn stop_all(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.stop_all();
    }
}

// -------------------------------------------------------------------- load

/// What the citizens sent and what the doors answered.
#[derive(Default)]
struct Ledger {
    /// Markers of items a door accepted (2xx).
    accepted: HashSet<String>,
    /// SMS markers with their sender numbers.
    sms_numbers: HashMap<String, String>,
    /// Mail markers with their senders' addresses.
    mail_senders: HashMap<String, String>,
    /// Markers of scan files put into the scan folder.
    scans: HashSet<String>,
    /// Attempts answered with something else (or nothing), by status.
    refused: BTreeMap<String, usize>,
}

struct Load {
    ports: Vec<u16>,
    up: Vec<AtomicBool>,
    http: reqwest::Client,
    sent: AtomicUsize,
    /// Items numbered below this may be sent now: the faults let the load on
    /// in steps, so that every fault meets items in flight.
    allowed: AtomicUsize,
    ledger: Mutex<Ledger>,
    /// The other doors, when the run uses them: the mailbox the e-mail
    /// channel reads and the folder the scan channel watches.
    doors: OtherDoors,
}

/// The doors that are not HTTP: mail delivered into Dovecot, scan files
/// written into the shared scan folder.
#[derive(Default)]
struct OtherDoors {
    mail: Option<Arc<Dovecot>>,
    scans: Option<PathBuf>,
}

impl Load {
    fn pick(&self, n: usize) -> usize {
        for k in 0..self.ports.len() {
            let i = (n + k) % self.ports.len();
            if self.up[i].load(Ordering::SeqCst) {
                return i;
            }
        }
        n % self.ports.len()
    }

    fn refused(&self, what: String) {
        *self
            .ledger
            .lock()
            .expect("ledger")
            .refused
            .entry(what)
            .or_default() += 1;
    }

    /// One web form, tried until a door accepts it (each try a new item).
    async fn form(&self, n: usize) {
        let text = match n % 50 {
            7 => {
                let mut t = AWKWARD.to_string();
                let pad = 20_000 - t.chars().count();
                t.extend(std::iter::repeat_n('ā', pad));
                t
            }
            19 => format!("{AWKWARD}\0NUL"),
            33 => AWKWARD.to_string(),
            _ => "Lūdzu izsniegt būvatļauju pirts būvniecībai.".to_string(),
        };
        for attempt in 0..200 {
            let marker = format!("F{n}.{attempt}");
            match self.form_once(self.pick(n + attempt), &marker, &text).await {
                Ok(()) => return,
                Err(why) => self.refused(why),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("form {n} was never accepted in 200 tries");
    }

    /// One try at the form on daemon `i`: the page, then the submission;
    /// accepted (recorded in the ledger) or why not.
    async fn form_once(&self, i: usize, marker: &str, text: &str) -> Result<(), String> {
        let base = format!("http://127.0.0.1:{}", self.ports[i]);
        let page = self
            .http
            .get(format!("{base}/forms/iesniegums"))
            .send()
            .await
            .map_err(|_| "form page: no answer".to_string())?
            .text()
            .await
            .unwrap_or_default();
        let token = page
            .split("name=\"form_token\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .ok_or_else(|| "form page: no token".to_string())?;
        let subject = format!("Chaos {marker}");
        let resp = self
            .http
            .post(format!("{base}/forms/iesniegums"))
            .header("accept", "application/json")
            .form(&[
                ("form_token", token),
                ("vards", "Anna Kalniņa"),
                ("epasts", "anna.kalnina@example.lv"),
                ("temats", subject.as_str()),
                ("teksts", text),
            ])
            .send()
            .await
            .map_err(|_| "form: no answer".to_string())?;
        if resp.status().is_success() {
            self.ledger
                .lock()
                .expect("ledger")
                .accepted
                .insert(marker.to_string());
            Ok(())
        } else {
            Err(format!("form {}", resp.status().as_u16()))
        }
    }

    /// One SMS webhook, retried by the gateway (same id) until a door says 2xx.
    async fn sms(&self, n: usize) {
        let marker = format!("S{n}");
        let from = format!("+3712{:07}", 1_000_000 + n);
        let text = if n % 40 == 11 {
            format!("[{marker}] {AWKWARD}")
        } else {
            format!("[{marker}] Kur pieteikt bērnu bērnudārzā?")
        };
        let body = json!({"id": format!("chaos-{n}"), "from": from, "to": "1888", "text": text})
            .to_string();
        for attempt in 0..400 {
            let base = format!("http://127.0.0.1:{}", self.ports[self.pick(n + attempt)]);
            let resp = self
                .http
                .post(format!("{base}/sms/sms-chaos/inbound"))
                .header("content-type", "application/json")
                .header(
                    "X-Signature-256",
                    body_signature(SMS_SECRET, body.as_bytes()),
                )
                .body(body.clone())
                .send()
                .await;
            match resp {
                Ok(r) if r.status().is_success() => {
                    let mut l = self.ledger.lock().expect("ledger");
                    l.accepted.insert(marker.clone());
                    l.sms_numbers.insert(marker, from);
                    return;
                }
                Ok(r) => self.refused(format!("sms {}", r.status().as_u16())),
                Err(_) => self.refused("sms: no answer".into()),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("SMS {n} was never accepted in 400 tries");
    }

    /// One mail into the channel's mailbox, as the municipality's mail
    /// server's delivery agent puts it there: accepted once delivered.
    fn mail(&self, n: usize) {
        let Some(dovecot) = &self.doors.mail else {
            return;
        };
        let marker = format!("E{n}");
        let from = format!("pilsonis{n}@example.lv");
        let text = if n % 30 == 7 {
            format!("{AWKWARD}\r\n\r\nAr cieņu, Pilsonis")
        } else {
            "Lūdzu izsniegt būvatļauju šķūņa būvniecībai.\r\n\r\nAr cieņu, Pilsonis".to_string()
        };
        let raw = format!(
            "From: Pilsonis {n} <{from}>\r\nTo: {to}\r\nSubject: Chaos {marker}\r\n\
             Message-ID: <chaos-{n}@example.lv>\r\nDate: {date}\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n",
            to = support::dovecot::USER,
            date = chrono::Utc::now().to_rfc2822(),
        );
        dovecot.deliver(raw.as_bytes());
        let mut l = self.ledger.lock().expect("ledger");
        l.accepted.insert(marker.clone());
        l.mail_senders.insert(marker, from);
    }

    /// One scanned letter with its text layer, written beside the scan
    /// folder and renamed in, as a scanner's scan-to-folder does: accepted
    /// once it is in the folder.
    fn scan(&self, n: usize) {
        let Some(folder) = &self.doors.scans else {
            return;
        };
        let marker = format!("K{n}");
        let part = folder.join(format!(".{marker}.pdf.part"));
        let text = format!("[{marker}] Ludzu salabot ielas apgaismojumu pie skolas, lampas nedeg.");
        std::fs::write(&part, text_pdf(&text)).expect("write scan");
        std::fs::rename(&part, folder.join(format!("{marker}.pdf"))).expect("put scan in");
        let mut l = self.ledger.lock().expect("ledger");
        l.accepted.insert(marker.clone());
        l.scans.insert(marker);
    }

    /// `workers` citizens sending `items` items: a third SMS; with the other
    /// doors, a sixth mail and a twelfth scanned letter; the rest web forms.
    async fn run(self: Arc<Self>, items: usize, workers: usize) {
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (me, next) = (self.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= items {
                        return;
                    }
                    while n >= me.allowed.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if n % 3 == 2 {
                        me.sms(n).await;
                    } else if n % 6 == 1 && me.doors.mail.is_some() {
                        me.mail(n);
                    } else if n % 12 == 4 && me.doors.scans.is_some() {
                        me.scan(n);
                    } else {
                        me.form(n).await;
                    }
                    me.sent.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        for t in tasks {
            t.await.expect("load worker");
        }
    }
}

// -------------------------------------------------------------- accounting

/// The accounting of one run, as `scripts/chaos.sh` writes it to docs/reliability.md.
#[derive(Debug, Default, serde::Serialize)]
struct Figures {
    backend: String,
    items_accepted: usize,
    /// Of which SMS (each from its own number, so at most one answer each).
    sms_accepted: usize,
    /// Of which mails into Dovecot (each from its own address).
    mails_accepted: usize,
    /// Of which scanned letters put into the scan folder.
    scans_accepted: usize,
    items_registered: usize,
    refused_attempts: BTreeMap<String, usize>,
    daemon_kills: usize,
    node_stops: usize,
    pg_restarts: usize,
    stall_restarts: usize,
    lost: usize,
    duplicated: usize,
    gaps: usize,
    notices_missing: usize,
    answers_twice: usize,
    answers_sent: usize,
    /// Daemon log lines saying an answer went out but its outcome could not
    /// be recorded (it is sent again once its claim runs out).
    answer_outcomes_unrecorded: usize,
    deadlines_moved_twice: usize,
    /// Scan files set aside as failed (`failed/…error.txt`).
    scans_set_aside: usize,
    parked: u64,
    longest_recovery_ms: u64,
    seconds: u64,
}

struct Registered {
    id: String,
    marker: String,
    series: String,
    year: i64,
    seq: i64,
    unit: Option<String>,
}

fn marker_of(subject: Option<&str>, body: &str) -> String {
    if let Some(m) = subject.and_then(|s| s.strip_prefix("Chaos ")) {
        return m.trim().to_string();
    }
    body.split('[')
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap_or("")
        .to_string()
}

/// An `items` row as the accounting reads it.
type ItemRow = (
    String,
    Option<String>,
    String,
    String,
    i64,
    i64,
    Option<String>,
);

async fn registered(registry: &Registry) -> Vec<Registered> {
    let rows: Vec<ItemRow> =
        sqlx::query_as("SELECT id, subject, body, series, reg_year, reg_seq, unit_id FROM items")
            .fetch_all(registry.pool())
            .await
            .expect("read items");
    rows.into_iter()
        .map(|(id, subject, body, series, year, seq, unit)| Registered {
            id,
            marker: marker_of(subject.as_deref(), &body),
            series,
            year,
            seq,
            unit,
        })
        .collect()
}

/// Waits until every accepted item is registered and the outbox is empty.
async fn settle(registry: &Registry, accepted: &HashSet<String>, limit: Duration) {
    let start = Instant::now();
    loop {
        let items = registered(registry).await;
        let have: HashSet<&str> = items.iter().map(|r| r.marker.as_str()).collect();
        let missing = accepted
            .iter()
            .filter(|m| !have.contains(m.as_str()))
            .count();
        let (outbox,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox")
            .fetch_one(registry.pool())
            .await
            .expect("outbox");
        if missing == 0 && outbox == 0 {
            return;
        }
        if start.elapsed() > limit {
            eprintln!(
                "settle: {missing} accepted items unregistered, {outbox} notices unsent after {limit:?}"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Counts lost, twice, gaps and deadlines moved twice into `f`.
async fn account(registry: &Registry, ledger: &Ledger, f: &mut Figures) -> Vec<Registered> {
    let items = registered(registry).await;
    f.items_accepted = ledger.accepted.len();
    f.sms_accepted = ledger.sms_numbers.len();
    f.mails_accepted = ledger.mail_senders.len();
    f.scans_accepted = ledger.scans.len();
    f.items_registered = items.len();
    let mut by_marker: HashMap<&str, usize> = HashMap::new();
    for r in &items {
        *by_marker.entry(r.marker.as_str()).or_default() += 1;
    }
    f.lost = ledger
        .accepted
        .iter()
        .filter(|m| !by_marker.contains_key(m.as_str()))
        .count();
    f.duplicated = by_marker.values().filter(|&&c| c > 1).map(|c| c - 1).sum();
    let mut series: BTreeMap<(String, i64), Vec<i64>> = BTreeMap::new();
    for r in &items {
        series
            .entry((r.series.clone(), r.year))
            .or_default()
            .push(r.seq);
    }
    for ((s, y), mut seqs) in series {
        seqs.sort_unstable();
        let max = seqs.last().copied().unwrap_or(0);
        // Missing numbers below the highest one given, and numbers given twice.
        let distinct: HashSet<i64> = seqs.iter().copied().collect();
        f.gaps += (max as usize).saturating_sub(distinct.len()) + (seqs.len() - distinct.len());
        let (last,): (i64,) = sqlx::query_as(
            "SELECT last_seq FROM registration_counters WHERE series = $1 AND reg_year = $2",
        )
        .bind(&s)
        .bind(y)
        .fetch_one(registry.pool())
        .await
        .expect("counter");
        if last != max {
            eprintln!("series {s}/{y}: counter at {last}, highest registered {max}");
            f.gaps += 1;
        }
    }
    let moved: Vec<(String, i64)> = sqlx::query_as(
        "SELECT item_id, COUNT(*) FROM audit_log WHERE action = 'deadline_moved' GROUP BY item_id",
    )
    .fetch_all(registry.pool())
    .await
    .expect("audit");
    f.deadlines_moved_twice = moved.iter().filter(|(_, c)| *c > 1).count();
    f.parked = registry.parked_count().await.expect("parked");
    items
}

/// Every notice in the test's routed queues on the cluster (taken).
async fn drain_notices(url: &str, prefix: &str, queues: &[String]) -> Vec<RoutedNotice> {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("connect to the cluster");
    let ch = conn.create_channel().await.expect("channel");
    let mut out = Vec::new();
    for q in queues {
        let name = format!("{prefix}.{q}");
        while let Some(msg) = ch
            .basic_get(name.clone().into(), BasicGetOptions::default())
            .await
            .unwrap_or_else(|e| panic!("basic_get {name}: {e}"))
        {
            out.push(serde_json::from_slice(&msg.delivery.data).expect("notice JSON"));
            msg.delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
        }
    }
    let _ = conn.close(200, "done".into()).await;
    out
}

/// Counts the answers the SMS gateway and the SMTP server received: how
/// many, and how many citizens got theirs more than once.
fn answers_into(
    answers: &Answers,
    mails: &HashMap<String, usize>,
    ledger: &Ledger,
    f: &mut Figures,
) {
    let a = answers.lock().expect("answers");
    f.answers_sent = a.values().sum::<usize>() + mails.values().sum::<usize>();
    f.answers_twice = a.values().chain(mails.values()).filter(|&&c| c > 1).count();
    let strangers = a
        .keys()
        .filter(|to| !ledger.sms_numbers.values().any(|n| n == *to))
        .count();
    assert_eq!(strangers, 0, "answers to numbers that never wrote: {a:?}");
    let strangers = mails
        .keys()
        .filter(|to| !ledger.mail_senders.values().any(|s| s == *to))
        .count();
    assert_eq!(
        strangers, 0,
        "answers to addresses that never wrote: {mails:?}"
    );
}

/// Waits (at most a minute) until every SMS and mail sender has an answer,
/// then a little longer for any second answer to arrive; what the SMTP
/// server received.
async fn await_answers(
    answers: &Answers,
    smtp_maildir: &Path,
    ledger: &Ledger,
) -> HashMap<String, usize> {
    let wait = Instant::now();
    while (answers.lock().expect("answers").len() < ledger.sms_numbers.len()
        || mail_answers(smtp_maildir).len() < ledger.mail_senders.len())
        && wait.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    mail_answers(smtp_maildir)
}

/// The mail and scan doors of a run: a Dovecot with its channel file, the
/// SMTP server the acknowledgements go to, and the scan folder.
struct MailAndScans {
    dovecot: Arc<Dovecot>,
    _smtp: SmtpServer,
    smtp_maildir: PathBuf,
    folder: PathBuf,
}

impl MailAndScans {
    fn start(root: &Path, channels: &Path) -> MailAndScans {
        let dovecot = Arc::new(Dovecot::start());
        let smtp_maildir = root.join("smtp-sink");
        let smtp = SmtpServer::start(&smtp_maildir);
        let folder = root.join("scans");
        write_other_channels(channels, &dovecot, smtp.port, &folder);
        MailAndScans {
            dovecot,
            _smtp: smtp,
            smtp_maildir,
            folder,
        }
    }

    fn doors(&self) -> OtherDoors {
        OtherDoors {
            mail: Some(self.dovecot.clone()),
            scans: Some(self.folder.clone()),
        }
    }
}

/// Prints the figures, and writes them as JSON to the file in `var` if set.
fn report(f: &Figures, var: &str) {
    let json = serde_json::to_string_pretty(f).expect("figures JSON");
    eprintln!("chaos figures: {json}");
    if let Ok(path) = std::env::var(var) {
        std::fs::write(&path, json).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

fn assert_clean(f: &Figures) {
    assert_eq!(f.lost, 0, "accepted items lost: {f:#?}");
    assert_eq!(f.duplicated, 0, "items registered twice: {f:#?}");
    assert_eq!(f.gaps, 0, "gaps in the numbering: {f:#?}");
    assert_eq!(
        f.notices_missing, 0,
        "items whose notice never reached a queue: {f:#?}"
    );
    assert_eq!(f.answers_twice, 0, "SMS answered twice: {f:#?}");
    // An answer sent while PostgreSQL was away for a moment has its outcome
    // written once it is back, not given up (and sent again later).
    assert_eq!(
        f.answer_outcomes_unrecorded, 0,
        "answers sent whose outcome was not written: {f:#?}"
    );
    assert_eq!(f.deadlines_moved_twice, 0, "deadlines moved twice: {f:#?}");
    assert_eq!(
        f.scans_set_aside, 0,
        "scan files set aside as failed: {f:#?}"
    );
}

// ------------------------------------------------------------------ faults

/// Fault `k` of `total` comes when this many of `items` have been sent.
fn due(items: usize, k: usize, total: usize) -> usize {
    if k >= total {
        items
    } else {
        items * (k + 1) / (total + 1)
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillDaemon,
    StopNode,
    RestartPostgres,
    Stall,
}

/// Three daemons, a three-node RabbitMQ cluster, PostgreSQL: the faults an
/// operator of a scaled-out deployment sees, under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_on_a_rabbitmq_cluster_lose_nothing_under_faults() {
    let items = env_usize("PIETURA_CHAOS_ITEMS", 240);
    let kills = env_usize("PIETURA_CHAOS_KILLS", 4);
    let node_stops = env_usize("PIETURA_CHAOS_NODE_STOPS", 2);
    let pg_restarts = env_usize("PIETURA_CHAOS_PG_RESTARTS", 1);
    let stall_restarts = env_usize("PIETURA_CHAOS_STALL_RESTARTS", 3);
    let seed = env_usize("PIETURA_CHAOS_SEED", std::process::id() as usize) as u64;
    eprintln!(
        "chaos: {items} items, {kills} kills, {node_stops} node stops, {pg_restarts} PostgreSQL \
         restarts, a stall across {stall_restarts} restarts, seed {seed}"
    );
    let began = Instant::now();
    let root = tempfile::tempdir().expect("temp dir");
    let mut cluster = blocking(|| Cluster::start(root.path()));
    let pg = blocking(|| Postgres::start(root.path()));
    let admin = pg.url("postgres");
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("the test's PostgreSQL at {admin}: {e}"));
    sqlx::query("CREATE DATABASE chaos")
        .execute(&mut conn)
        .await
        .expect("create database");
    drop(conn);
    let db_url = pg.url("chaos");
    let (send_url, answers) = sms_provider().await;
    let channels = root.path().join("channels");
    write_channels(&channels, &send_url);
    let other = blocking(|| MailAndScans::start(root.path(), &channels));
    let blobs = root.path().join("blobs");
    let urls = cluster.urls();
    // Daemon i lists node i first, so each node stop takes one daemon's link.
    let urls_toml = |i: usize| {
        (0..3)
            .map(|k| format!("\"{}\"", urls[(i + k) % 3]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let prefix = "chaos";
    let rules = support::repo_path("rules");
    let mut daemons = Daemons::new(root.path(), 3, |i, port| {
        format!(
            "data_dir = \"{data}\"\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
             submissions_per_minute = 1000000\nregistration_wait_ms = 1000\n\
             [database]\nurl = \"{db_url}\"\n\
             [bus]\nkind = \"amqp\"\nurls = [{urls}]\nprefix = \"{prefix}\"\n\
             [blobs]\ndir = \"{blobs}\"\n\
             [rules]\ndir = \"{rules}\"\nwatch = false\n\
             [channels]\ndir = \"{channels}\"\n",
            data = root.path().join(format!("data-{i}")).display(),
            urls = urls_toml(i),
            blobs = blobs.display(),
            rules = rules.display(),
            channels = channels.display(),
        )
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .expect("client");
    // The first daemon migrates the registry, then the others join.
    daemons.start(0);
    daemons.ready(&http, 0, Duration::from_secs(120)).await;
    daemons.start(1);
    daemons.start(2);
    daemons.ready(&http, 1, Duration::from_secs(120)).await;
    daemons.ready(&http, 2, Duration::from_secs(120)).await;
    // Every queue is replicated on the three nodes.
    let replicas = blocking(|| cluster.replicas(0, prefix));
    assert!(replicas.contains_key("chaos.engine"), "{replicas:?}");
    assert!(
        replicas.values().all(|&n| n == 3),
        "quorum queues on 3 nodes: {replicas:?}"
    );

    let load = Arc::new(Load {
        ports: daemons.ports.clone(),
        up: (0..3).map(|_| AtomicBool::new(true)).collect(),
        http: http.clone(),
        sent: AtomicUsize::new(0),
        allowed: AtomicUsize::new(0),
        ledger: Mutex::new(Ledger::default()),
        doors: other.doors(),
    });

    let mut faults: Vec<Fault> = std::iter::repeat_n(Fault::KillDaemon, kills)
        .chain(std::iter::repeat_n(Fault::StopNode, node_stops))
        .chain(std::iter::repeat_n(Fault::RestartPostgres, pg_restarts))
        .chain(std::iter::once(Fault::Stall).filter(|_| stall_restarts > 0))
        .collect();
    let mut rng = Rng(seed);
    for i in (1..faults.len()).rev() {
        faults.swap(i, rng.below(i + 1));
    }
    let mut f = Figures {
        backend: "3 daemons, RabbitMQ 3-node cluster, PostgreSQL".into(),
        ..Figures::default()
    };
    let mut longest = Duration::ZERO;
    let mut next_node = rng.below(3);
    let total = faults.len();
    load.allowed.store(due(items, 1, total), Ordering::SeqCst);
    let workers = env_usize("PIETURA_CHAOS_WORKERS", 6);
    let load_task = tokio::spawn(load.clone().run(items, workers));
    for (k, fault) in faults.into_iter().enumerate() {
        // Spread the faults over the load.
        while load.sent.load(Ordering::SeqCst) < due(items, k, total) && !load_task.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "chaos: fault {}/{total}: {fault:?} at {} items",
            k + 1,
            load.sent.load(Ordering::SeqCst)
        );
        let at = Instant::now();
        match fault {
            Fault::KillDaemon => {
                let i = rng.below(3);
                load.up[i].store(false, Ordering::SeqCst);
                daemons.kill(i);
                f.daemon_kills += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
                daemons.start(i);
                daemons.ready(&http, i, Duration::from_secs(120)).await;
                load.up[i].store(true, Ordering::SeqCst);
            }
            Fault::StopNode => {
                let j = next_node;
                next_node = (next_node + 1) % 3;
                blocking(|| cluster.kill_node(j));
                f.node_stops += 1;
                // Every daemon still takes submissions with the node down:
                // daemon j was on node j and moves to another node.
                for i in 0..3 {
                    let marker = format!("P{k}.{i}");
                    if let Err(why) = load.form_once(i, &marker, "Lūdzu reģistrēt.").await {
                        panic!("daemon {i} refused a submission with node {j} down: {why}");
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                blocking(|| {
                    cluster.start_node(j);
                    cluster.await_node(j);
                });
            }
            Fault::RestartPostgres => {
                blocking(|| pg.stop_immediate());
                f.pg_restarts += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                blocking(|| pg.pg_ctl_start());
            }
            Fault::Stall => {
                let mut lock = sqlx::PgConnection::connect(&db_url)
                    .await
                    .expect("lock connection");
                sqlx::query("BEGIN")
                    .execute(&mut lock)
                    .await
                    .expect("begin");
                sqlx::query("LOCK TABLE registration_counters IN ACCESS EXCLUSIVE MODE")
                    .execute(&mut lock)
                    .await
                    .expect("lock the number counters");
                for _ in 0..stall_restarts {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let i = rng.below(3);
                    load.up[i].store(false, Ordering::SeqCst);
                    daemons.kill(i);
                    f.stall_restarts += 1;
                    daemons.start(i);
                    // Alive (not ready: the registry is what is failing).
                    daemons
                        .answers(&http, i, "/healthz", Duration::from_secs(120))
                        .await;
                    load.up[i].store(true, Ordering::SeqCst);
                }
                sqlx::query("ROLLBACK")
                    .execute(&mut lock)
                    .await
                    .expect("unlock");
            }
        }
        // Recovered: every daemon ready again.
        for i in 0..3 {
            daemons.ready(&http, i, Duration::from_secs(180)).await;
        }
        longest = longest.max(at.elapsed());
        load.allowed
            .store(due(items, k + 2, total), Ordering::SeqCst);
    }
    load.allowed.store(items, Ordering::SeqCst);
    load_task.await.expect("load");
    f.longest_recovery_ms = u64::try_from(longest.as_millis()).unwrap_or(u64::MAX);

    let registry = Registry::connect(&db_url, Some(2)).await.expect("registry");
    let ledger = std::mem::take(&mut *load.ledger.lock().expect("ledger"));
    f.refused_attempts = ledger.refused.clone();
    settle(&registry, &ledger.accepted, Duration::from_secs(180)).await;
    let items_now = account(&registry, &ledger, &mut f).await;
    // Every registered item's notice reached its unit's queue (or review).
    let mut queues: Vec<String> = items_now
        .iter()
        .filter_map(|r| r.unit.as_ref().map(|u| format!("unit.{u}")))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    queues.push("review".into());
    let notices = drain_notices(&urls[0], prefix, &queues).await;
    let noticed: HashSet<&str> = notices.iter().map(|n| n.item_id.as_str()).collect();
    f.notices_missing = items_now
        .iter()
        .filter(|r| !noticed.contains(r.id.as_str()))
        .count();
    // Answers (SMS and mail acknowledgements): each citizen's at most once.
    let mails = await_answers(&answers, &other.smtp_maildir, &ledger).await;
    answers_into(&answers, &mails, &ledger, &mut f);
    f.scans_set_aside = std::fs::read_dir(other.folder.join("failed"))
        .map(|d| d.count())
        .unwrap_or(0);
    f.answer_outcomes_unrecorded = daemons.log_lines("answer outcome not recorded");
    // The replicas survived the node stops.
    let replicas = blocking(|| cluster.replicas(0, prefix));
    assert!(
        replicas.values().all(|&n| n == 3),
        "quorum queues on 3 nodes: {replicas:?}"
    );
    f.seconds = began.elapsed().as_secs();
    report(&f, "PIETURA_CHAOS_REPORT");
    // A rules edit applied on daemon 0's host is in force on all three
    // within 5 s (the registry holds the one rule set; they follow it).
    let followed = rules_edit_followed(&mut daemons, &http, root.path(), &rules).await;
    assert!(
        followed <= Duration::from_secs(5),
        "a rules edit on daemon 0 took {followed:?} to be in force on all daemons"
    );
    daemons.stop_all();
    assert_clean(&f);
    assert_eq!(f.parked, 0, "nothing accepted stays parked: {f:#?}");
    blocking(|| cluster.stop());
}

/// The rule-set version daemon `i` routes by (its `/readyz`).
async fn rules_version(http: &reqwest::Client, base: &str) -> Option<String> {
    let ready: serde_json::Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    ready["rules"].as_str().map(str::to_string)
}

/// Applies an edited copy of `rules` with `pietura rules apply` under
/// daemon 0's configuration (its host), then waits until every daemon
/// routes by the new version; how long that took after the apply.
async fn rules_edit_followed(
    daemons: &mut Daemons,
    http: &reqwest::Client,
    root: &Path,
    rules: &Path,
) -> Duration {
    for i in 0..daemons.ports.len() {
        daemons.ready(http, i, Duration::from_secs(120)).await;
    }
    let before = rules_version(http, &daemons.base(0))
        .await
        .expect("daemon 0's rule-set version");
    let edited = root.join("rules-edited");
    let copy = Command::new("cp")
        .arg("-r")
        .arg(rules)
        .arg(&edited)
        .status()
        .expect("cp");
    assert!(copy.success(), "copying the rules folder");
    let units = edited.join("units.toml");
    let mut text = std::fs::read_to_string(&units).expect("units.toml");
    text.push_str("\n# edited during the chaos run\n");
    std::fs::write(&units, text).expect("units.toml");
    let applied = Command::new(env!("CARGO_BIN_EXE_pietura"))
        .arg("--config")
        .arg(&daemons.configs[0])
        .args(["rules", "apply"])
        .arg(&edited)
        .args(["--by", "chaos"])
        .env_remove("PIETURA_CONFIG")
        .output()
        .expect("pietura rules apply");
    assert!(
        applied.status.success(),
        "pietura rules apply: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let start = Instant::now();
    loop {
        let mut versions = Vec::new();
        for i in 0..daemons.ports.len() {
            versions.push(rules_version(http, &daemons.base(i)).await);
        }
        let first = versions[0].clone();
        if first.as_deref().is_some_and(|v| v != before) && versions.iter().all(|v| *v == first) {
            return start.elapsed();
        }
        if start.elapsed() > Duration::from_secs(30) {
            panic!(
                "daemons' rule-set versions 30 s after the edit: {versions:?} (before: {before})"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The embedded default (SQLite + embedded queue): SIGKILLs under load and
/// a poison message; everything accepted registered once, the poison parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_loses_nothing_under_kills_and_parks_poison() {
    let items = env_usize("PIETURA_CHAOS_EMBEDDED_ITEMS", 90);
    let kills = env_usize("PIETURA_CHAOS_EMBEDDED_KILLS", 3);
    let began = Instant::now();
    let root = tempfile::tempdir().expect("temp dir");
    let (send_url, answers) = sms_provider().await;
    let channels = root.path().join("channels");
    write_channels(&channels, &send_url);
    let other = blocking(|| MailAndScans::start(root.path(), &channels));
    let data = root.path().join("data");
    let rules = support::repo_path("rules");
    let mut daemons = Daemons::new(root.path(), 1, |_, port| {
        format!(
            "data_dir = \"{data}\"\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
             submissions_per_minute = 1000000\nregistration_wait_ms = 1000\n\
             [rules]\ndir = \"{rules}\"\nwatch = false\n\
             [channels]\ndir = \"{channels}\"\n",
            data = data.display(),
            rules = rules.display(),
            channels = channels.display(),
        )
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .expect("client");
    daemons.start(0);
    daemons.ready(&http, 0, Duration::from_secs(120)).await;
    let db_url = format!("sqlite://{}", data.join("pietura.db").display());
    let registry = Registry::connect_existing(&db_url, Some(1))
        .await
        .expect("registry");
    // A poison message on the intake queue: not a message at all.
    sqlx::query(
        "INSERT INTO bus_messages (id, queue, payload, deliveries, visible_at, created_at) \
         VALUES ($1, 'intake', $2, 0, 0, $3)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind("{\"schema\": \"not a message\"")
    .bind(pietura::registry::db_time(chrono::Utc::now()))
    .execute(registry.pool())
    .await
    .expect("poison row");

    let load = Arc::new(Load {
        ports: daemons.ports.clone(),
        up: vec![AtomicBool::new(true)],
        http: http.clone(),
        sent: AtomicUsize::new(0),
        allowed: AtomicUsize::new(due(items, 1, kills)),
        ledger: Mutex::new(Ledger::default()),
        doors: other.doors(),
    });
    let load_task = tokio::spawn(load.clone().run(items, 4));
    let mut f = Figures {
        backend: "1 daemon, embedded queue, SQLite".into(),
        ..Figures::default()
    };
    let mut longest = Duration::ZERO;
    for k in 0..kills {
        while load.sent.load(Ordering::SeqCst) < due(items, k, kills) && !load_task.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let at = Instant::now();
        daemons.kill(0);
        f.daemon_kills += 1;
        daemons.start(0);
        daemons.ready(&http, 0, Duration::from_secs(120)).await;
        longest = longest.max(at.elapsed());
        load.allowed
            .store(due(items, k + 2, kills), Ordering::SeqCst);
    }
    load.allowed.store(items, Ordering::SeqCst);
    load_task.await.expect("load");
    f.longest_recovery_ms = u64::try_from(longest.as_millis()).unwrap_or(u64::MAX);
    let ledger = std::mem::take(&mut *load.ledger.lock().expect("ledger"));
    f.refused_attempts = ledger.refused.clone();
    settle(&registry, &ledger.accepted, Duration::from_secs(120)).await;
    // The poison is parked (by the dead-letter consumer) and blocks nothing.
    support::wait_until(
        Duration::from_secs(120),
        "the poison message is parked",
        || {
            let registry = registry.clone();
            async move { registry.parked_count().await.expect("parked") >= 1 }
        },
    )
    .await;
    let items_now = account(&registry, &ledger, &mut f).await;
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT payload FROM bus_messages WHERE queue <> 'intake'")
            .fetch_all(registry.pool())
            .await
            .expect("routed rows");
    let noticed: HashSet<String> = rows
        .iter()
        .filter_map(|(p,)| serde_json::from_str::<RoutedNotice>(p).ok())
        .map(|n| n.item_id)
        .collect();
    f.notices_missing = items_now
        .iter()
        .filter(|r| !noticed.contains(&r.id))
        .count();
    let mails = await_answers(&answers, &other.smtp_maildir, &ledger).await;
    answers_into(&answers, &mails, &ledger, &mut f);
    f.scans_set_aside = std::fs::read_dir(other.folder.join("failed"))
        .map(|d| d.count())
        .unwrap_or(0);
    f.answer_outcomes_unrecorded = daemons.log_lines("answer outcome not recorded");
    f.seconds = began.elapsed().as_secs();
    report(&f, "PIETURA_CHAOS_EMBEDDED_REPORT");
    daemons.stop_all();
    assert_clean(&f);
    assert_eq!(f.parked, 1, "the poison, and only it, is parked: {f:#?}");
}

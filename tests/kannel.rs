//! The SMS channel against a real gateway: Kannel's bearerbox and smsbox with
//! the fake SMSC of kannel-extras. A citizen's SMS in Latvian (UCS-2) goes
//! fakesmsc → bearerbox → smsbox → our callback → registry and rules; our
//! answer goes sendsms → smsbox → bearerbox → back to fakesmsc, in as many
//! concatenated parts as it needs (the `sendsms-user` group's `max-messages`
//! defaults to 1, which cuts it silently). 8-bit data goes to review.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{Backend, Options, TestEnv};

const FAKESMSC: &str = "/usr/lib/kannel/test/fakesmsc";
const TEXT: &str = "Lūdzu izsniegt būvatļauju pirts būvniecībai Subatē. Jānis Bērziņš";

/// bearerbox + smsbox, stopped on drop.
struct Kannel {
    children: Vec<Child>,
    smsc_port: u16,
}

impl Kannel {
    fn start(dir: &Path, get_url: &str, sendsms_port: u16) -> Kannel {
        for bin in ["/usr/sbin/bearerbox", "/usr/sbin/smsbox", FAKESMSC] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: `apt-get install -y kannel kannel-extras` (scripts/test.sh does)"
            );
        }
        let (admin, boxes, smsc) = (
            support::free_port(),
            support::free_port(),
            support::free_port(),
        );
        let conf = dir.join("kannel.conf");
        let log = |name: &str| dir.join(name).display().to_string();
        std::fs::write(
            &conf,
            format!(
                r#"group = core
admin-port = {admin}
admin-password = "admin-{admin}"
admin-allow-ip = "127.0.0.1"
smsbox-port = {boxes}
box-allow-ip = "127.0.0.1"
log-file = "{bb_log}"
log-level = 1

group = smsc
smsc = fake
smsc-id = fake
port = {smsc}
connect-allow-ip = "127.0.0.1"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {boxes}
sendsms-port = {sendsms_port}
mo-recode = true
http-request-retry = 5
http-queue-delay = 1
log-file = "{sb_log}"
log-level = 1

group = sendsms-user
username = pietura
password = sendsms-pw
user-deny-ip = "*.*.*.*"
user-allow-ip = "127.0.0.1"
max-messages = 10
concatenation = true

group = sms-service
keyword = default
catch-all = true
max-messages = 0
get-url = "{get_url}"
"#,
                bb_log = log("bearerbox.log"),
                sb_log = log("smsbox.log"),
            ),
        )
        .expect("write kannel.conf");
        let spawn = |bin: &str| {
            Command::new(bin)
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {bin}: {e}"))
        };
        let mut kannel = Kannel {
            children: vec![spawn("/usr/sbin/bearerbox")],
            smsc_port: smsc,
        };
        support::wait_port(boxes, "bearerbox");
        kannel.children.push(spawn("/usr/sbin/smsbox"));
        support::wait_port(sendsms_port, "smsbox");
        support::wait_port(smsc, "the fake SMSC");
        kannel
    }

    /// Sends one mobile-originated SMS from fakesmsc and returns the parts
    /// of the first answer the phone gets back (decoded), waiting up to `wait`.
    fn text_and_wait_for_answer(
        &self,
        from: &str,
        to: &str,
        text: &str,
        wait: Duration,
    ) -> Option<Vec<MtPart>> {
        let ucs2: String = text
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .map(|b| format!("%{b:02X}"))
            .collect();
        let (mut child, rx) = self.fakesmsc(&format!("{from} {to} ucs2 {ucs2}"));
        // The first answer part, then any further parts that follow it closely.
        let mut deadline = std::time::Instant::now() + wait;
        let mut parts: Vec<MtPart> = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("Got message") => {
                    if let Some((_, m)) = line.split_once(": <") {
                        parts.push(decode_mt(m.trim_end_matches('>')));
                    }
                    deadline = std::time::Instant::now() + Duration::from_millis(1500);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        (!parts.is_empty()).then_some(parts)
    }

    /// Sends one message as fakesmsc writes it ("from to kind [udh] data")
    /// and waits until it is on its way to bearerbox.
    fn send_mo(&self, spec: &str) {
        let (mut child, rx) = self.fakesmsc(spec);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut sent = false;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("sent message 1") => {
                    sent = true;
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // bearerbox reads it from the open connection.
        std::thread::sleep(Duration::from_millis(500));
        let _ = child.kill();
        let _ = child.wait();
        assert!(sent, "fakesmsc did not send {spec}");
    }

    /// fakesmsc connected to the fake SMSC with one message to send, and its
    /// output lines.
    fn fakesmsc(&self, spec: &str) -> (Child, mpsc::Receiver<String>) {
        let mut child = Command::new(FAKESMSC)
            .args([
                "-H",
                "127.0.0.1",
                "-r",
                &self.smsc_port.to_string(),
                "-i",
                "0.1",
                "-m",
                "1",
            ])
            .arg(spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fakesmsc");
        let (tx, rx) = mpsc::channel::<String>();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        (child, rx)
    }
}

/// One message the phone received: its concatenation header (if any) and text.
#[derive(Debug)]
struct MtPart {
    udh: Option<Vec<u8>>,
    text: String,
}

fn url_bytes(data: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(&data.replace('+', "%20")).collect()
}

fn utf16be(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// fakesmsc's "from to type data": `ucs-2` data is URL-encoded UTF-16BE
/// (`+` for the byte 0x20); a concatenated part is "udh <header> data
/// <bytes>", the bytes UTF-16BE here, as every answer in these tests is UCS-2.
fn decode_mt(line: &str) -> MtPart {
    let mut parts = line.splitn(4, ' ');
    let (_from, _to, kind, data) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next().unwrap_or(""),
    );
    match kind {
        Some("ucs2" | "ucs-2") => MtPart {
            udh: None,
            text: utf16be(&url_bytes(data)),
        },
        Some("udh") => {
            let (udh, rest) = data.split_once(' ').unwrap_or((data, ""));
            let payload = rest.strip_prefix("data ").unwrap_or(rest);
            MtPart {
                udh: Some(url_bytes(udh)),
                text: utf16be(&url_bytes(payload)),
            }
        }
        _ => MtPart {
            udh: None,
            text: data.to_string(),
        },
    }
}

impl Drop for Kannel {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A daemon with one Kannel SMS channel, and Kannel calling it with the
/// documented get-url.
async fn daemon_and_kannel(dir: &Path, backend: Backend) -> (TestEnv, Kannel, String) {
    let channels = dir.join("channels");
    std::fs::create_dir_all(&channels).expect("channels dir");
    let sendsms_port = support::free_port();
    std::fs::write(
        channels.join("sms.toml"),
        format!(
            r#"type = "sms"
id = "sms"
number = "1888"
[gateway]
kind = "kannel"
secret = "kannel-callback-secret"
allow_from = ["127.0.0.1"]
send_url = "http://127.0.0.1:{sendsms_port}/cgi-bin/sendsms"
send_username = "pietura"
send_password = "sendsms-pw"
"#
        ),
    )
    .expect("channel file");
    let env = TestEnv::start(Options {
        channels_from: channels,
        ..Options::new(backend)
    })
    .await;
    let get_url = format!(
        "{}/sms/sms/inbound?secret=kannel-callback-secret&id=%I&from=%p&to=%P&coding=%c&charset=%C&text=%b",
        env.base
    );
    let kannel = Kannel::start(dir, &get_url, sendsms_port);
    (env, kannel, get_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latvian_sms_through_kannel_is_registered_routed_and_answered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (env, kannel, get_url) = daemon_and_kannel(dir.path(), Backend::Amqp).await;

    let answer = tokio::task::spawn_blocking(move || {
        let answer =
            kannel.text_and_wait_for_answer("37129123456", "1888", TEXT, Duration::from_secs(30));
        (kannel, answer)
    });
    let (kannel, answer) = answer.await.expect("fakesmsc thread");
    let answer = answer.unwrap_or_else(|| {
        let log = std::fs::read_to_string(dir.path().join("smsbox.log")).unwrap_or_default();
        panic!("no answer reached the phone; smsbox.log:\n{log}")
    });

    let items = env
        .daemon
        .registry
        .list(&pietura::registry::ItemFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("items");
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    support::assert_sms_routed(item, "+37129123456", "buvvalde");
    let message = env.message_of(item).await;
    assert_eq!(message.body, TEXT, "the text arrived intact through UCS-2");

    // The phone got the whole answer as the daemon rendered it, in its
    // concatenated parts (reference, part i of n), diacritics intact.
    let audit = env.daemon.registry.audit_of(&item.id).await.expect("audit");
    let detail: serde_json::Value = audit
        .iter()
        .find(|a| a.2 == "replied")
        .and_then(|a| serde_json::from_str(&a.3).ok())
        .unwrap_or_else(|| panic!("no answer recorded: {audit:?}"));
    let sent = detail["text"].as_str().expect("answer text");
    assert_eq!(
        (detail["encoding"].as_str(), detail["parts"].as_u64()),
        (Some("Ucs2"), Some(2)),
        "{detail}"
    );
    let received: String = answer.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(
        received,
        sent,
        "the phone got {} part(s): {answer:?}",
        answer.len()
    );
    assert!(received.contains(&item.registration_number) && received.contains("Reģistrēts"));
    assert_eq!(answer.len(), 2, "{answer:?}");
    for (i, part) in answer.iter().enumerate() {
        let udh = part.udh.as_deref().unwrap_or_default();
        assert_eq!(
            (udh.len(), udh.get(4), udh.get(5)),
            (6, Some(&2), Some(&(i as u8 + 1))),
            "concatenation header of part {}: {answer:?}",
            i + 1
        );
    }

    // smsbox retrying the same callback (same Kannel id): still one item, one answer.
    let gateway_id = message.metadata["sms"]["gateway_id"]
        .as_str()
        .expect("id")
        .to_string();
    let retry = get_url
        .replace("%I", &gateway_id)
        .replace("%p", "%2B37129123456")
        .replace("%P", "1888")
        .replace("%c", "0")
        .replace("%C", "UTF-8")
        .replace("%b", "L%C5%ABdzu+izsniegt+b%C5%ABvat%C4%BCauju");
    let status = env.http.get(retry).send().await.expect("retry").status();
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.daemon.registry.count().await.expect("count"), 1);
    let audit = env.daemon.registry.audit_of(&item.id).await.expect("audit");
    assert_eq!(
        audit.iter().filter(|a| a.2 == "replied").count(),
        1,
        "{audit:?}"
    );
    drop(kannel);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8bit_concatenated_sms_through_kannel_goes_to_review_with_its_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (env, kannel, _) = daemon_and_kannel(dir.path(), Backend::Embedded).await;
    // Two 8-bit parts (concatenation reference 0x7A); Kannel joins them
    // and passes coding=1, charset=8-BIT.
    let (first, second): (&[u8], &[u8]) =
        (&[0x00, 0x01, 0x02, b'p', b'1'], &[0xFF, 0xFE, b'p', 0x0B]);
    let hex = |b: &[u8]| b.iter().map(|b| format!("%{b:02X}")).collect::<String>();
    let specs = [
        format!(
            "37129123456 1888 udh-data %05%00%03%7A%02%01 {}",
            hex(first)
        ),
        format!(
            "37129123456 1888 udh-data %05%00%03%7A%02%02 {}",
            hex(second)
        ),
    ];
    let kannel = tokio::task::spawn_blocking(move || {
        for spec in &specs {
            kannel.send_mo(spec);
        }
        kannel
    })
    .await
    .expect("fakesmsc thread");
    let registry = env.daemon.registry.clone();
    support::wait_until(Duration::from_secs(30), "the 8-bit SMS registered", || {
        let registry = registry.clone();
        async move { registry.count().await.unwrap_or(0) == 1 }
    })
    .await;
    let items = registry
        .list(&pietura::registry::ItemFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("items");
    let item = &items[0];
    assert_eq!(item.state, "review", "{item:?}");
    assert_eq!(item.unit_id, None);
    assert!(
        item.review_reason
            .as_deref()
            .unwrap_or("")
            .starts_with("binary SMS: 8-bit data"),
        "{item:?}"
    );
    let message = env.message_of(item).await;
    assert_eq!(message.body, "");
    let kept = pietura::blobs::BlobStore::open(env.blob_dir())
        .expect("blobs")
        .get(&message.attachments[0].sha256)
        .await
        .expect("blob");
    assert_eq!(kept, [first, second].concat(), "both parts, byte for byte");
    drop(kannel);
    env.stop().await;
}

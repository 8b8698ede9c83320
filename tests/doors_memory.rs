//! Memory under large posts: 20 concurrent 24 MB posts to the public form
//! from one address (half of them three 8 MB attachments, half a 24 MB
//! urlencoded text) must not take the daemon's memory with them. The daemon
//! runs in this process, and this file holds one test, so the process's
//! peak resident memory (VmHWM, reset before the burst) is the daemon's.

mod support;

use std::time::Duration;

use support::{Backend, Options, TestEnv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POSTS: usize = 20;
const POST_BYTES: usize = 24 * 1024 * 1024;
/// Peak growth allowed over the resident memory before the burst. Buffering
/// the posts costs at least their size (20 × 24 MB = 480 MB, the old code
/// took 488 MB); streaming them costs a few MB a post.
const PEAK_GROWTH_LIMIT: u64 = 120 * 1024 * 1024;

fn status_kb(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} not in /proc/self/status"))
}

/// Literal bytes, then optionally `len` bytes of one filler byte.
type Piece = (Vec<u8>, Option<(u8, usize)>);

/// Streams `len` bytes of `fill` without ever holding them.
async fn write_fill(conn: &mut tokio::net::TcpStream, fill: u8, len: usize) -> bool {
    let chunk = vec![fill; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        if conn.write_all(&chunk[..n]).await.is_err() {
            return false;
        }
        left -= n;
    }
    true
}

/// One post; the status, or `None` when the server closed the connection
/// before answering (a refusal while the body was still being sent).
async fn post(host: String, multipart: bool, i: usize) -> (bool, Option<u16>, String) {
    let mut conn = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    let token = uuid::Uuid::now_v7();
    let mut parts: Vec<Piece> = Vec::new();
    let head = if multipart {
        let b = "XmemX";
        let mut text = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"form_token\"\r\n\r\n{token}\r\n--{b}\r\nContent-Disposition: form-data; name=\"vards\"\r\n\r\nAnna Kalniņa\r\n--{b}\r\nContent-Disposition: form-data; name=\"temats\"\r\n\r\nBūvprojekts\r\n--{b}\r\nContent-Disposition: form-data; name=\"teksts\"\r\n\r\nPielikumā būvprojekts {i}.\r\n"
        );
        let per_file = POST_BYTES / 3;
        for f in 0..3 {
            text.push_str(&format!("--{b}\r\nContent-Disposition: form-data; name=\"attachments\"; filename=\"projekts-{f}.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4\n"));
            parts.push((
                std::mem::take(&mut text).into_bytes(),
                Some((b'0' + f as u8, per_file)),
            ));
            text.push_str("\r\n");
        }
        text.push_str(&format!("--{b}--\r\n"));
        parts.push((text.into_bytes(), None));
        let total: usize = parts
            .iter()
            .map(|(t, f)| t.len() + f.map_or(0, |f| f.1))
            .sum();
        format!(
            "POST /forms/iesniegums HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nContent-Type: multipart/form-data; boundary={b}\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
        )
    } else {
        let text = format!("form_token={token}&vards=Anna&temats=Garš&teksts=");
        let total = text.len() + POST_BYTES;
        parts.push((text.into_bytes(), Some((b'a', POST_BYTES))));
        format!(
            "POST /forms/iesniegums HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
        )
    };
    let mut sent = conn.write_all(head.as_bytes()).await.is_ok();
    for (text, fill) in &parts {
        sent = sent && conn.write_all(text).await.is_ok();
        if let Some((byte, len)) = fill {
            sent = sent && write_fill(&mut conn, *byte, *len).await;
        }
    }
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok());
    (sent, status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_24_mb_posts_do_not_take_the_memory_with_them() {
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    let host = env.base.trim_start_matches("http://").to_string();
    // Warm up the paths once (first-use allocations are not the burst's).
    let token = env.form_token().await;
    let (status, receipt) = env.submit(&token, "Sveiki", "Iesildīšanās.").await;
    assert!(status == 201 || status == 202, "{status}: {receipt}");

    // Reset the peak to now (Linux ≥ 4.0), then measure from here.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM via /proc/self/clear_refs");
    let before = status_kb("VmRSS:") * 1024;
    assert!(
        status_kb("VmHWM:") * 1024 <= before + 8 * 1024 * 1024,
        "VmHWM was reset"
    );

    let mut posts = tokio::task::JoinSet::new();
    for i in 0..POSTS {
        posts.spawn(post(host.clone(), i % 2 == 0, i));
    }
    let mut outcomes = Vec::new();
    while let Some(res) = posts.join_next().await {
        outcomes.push(res.expect("post task"));
    }
    let peak = status_kb("VmHWM:") * 1024;
    let growth = peak.saturating_sub(before);
    let accepted = outcomes
        .iter()
        .filter(|(_, s, _)| matches!(s, Some(201 | 202)))
        .count();
    eprintln!(
        "RSS before {} MB, peak {} MB (+{} MB) for {POSTS} posts of {} MB; {accepted} accepted",
        before >> 20,
        peak >> 20,
        growth >> 20,
        POST_BYTES >> 20
    );
    assert!(
        growth < PEAK_GROWTH_LIMIT,
        "peak resident memory grew by {} MB (limit {} MB)",
        growth >> 20,
        PEAK_GROWTH_LIMIT >> 20
    );
    for (i, (sent, status, answer)) in outcomes.iter().enumerate() {
        match status {
            Some(201 | 202) => {}
            Some(413) => assert!(answer.contains("\"status\":\"refused\""), "{answer}"),
            Some(503) => assert!(
                answer.to_ascii_lowercase().contains("retry-after:"),
                "{answer}"
            ),
            Some(other) => panic!("post {i}: unexpected {other}: {answer}"),
            // Refused while still sending: the body was never read.
            None => assert!(!sent, "post {i}: sent whole, no answer"),
        }
    }
    assert!(
        accepted >= 1,
        "attachments streamed and registered: {outcomes:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    env.stop().await;
}

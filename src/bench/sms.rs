//! `pietura bench --sms`: the SMS webhook's throughput and response time with
//! the broker confirm included, against a baseline measured in the same run:
//! the daemon's own `/healthz` over the same HTTP client and concurrency.
//! The ratio says how much of the HTTP stack's rate is left once every
//! request is authenticated, normalised and durably handed to RabbitMQ.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;

use super::BenchResult;
use crate::channels::sms::body_signature;
use crate::config::{BusKind, Settings};
use crate::daemon::Daemon;

const SECRET: &str = "bench-secret";
const CONCURRENCY: usize = 32;

/// One phase: requests per second and the response-time distribution (µs).
#[derive(Debug, Clone)]
pub struct Phase {
    pub per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// What one SMS benchmark run measured.
#[derive(Debug, Clone)]
pub struct SmsBenchReport {
    pub requests: usize,
    pub baseline: Phase,
    pub webhook: Phase,
}

impl std::fmt::Display for SmsBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = |name: &str, p: &Phase| {
            format!(
                "{name:<30}{:>8.0} req/s, p50 {:.1} ms, p99 {:.1} ms",
                p.per_s, p.p50_ms, p.p99_ms
            )
        };
        writeln!(
            f,
            "{:<30}{} ({CONCURRENCY} concurrent)",
            "requests per phase", self.requests
        )?;
        writeln!(f, "{}", line("baseline GET /healthz", &self.baseline))?;
        writeln!(
            f,
            "{}",
            line("SMS webhook (signed, confirmed)", &self.webhook)
        )?;
        write!(
            f,
            "{:<30}{:.1} %",
            "ratio webhook / baseline",
            100.0 * self.webhook.per_s / self.baseline.per_s
        )
    }
}

/// Runs `n` requests with `CONCURRENCY` in flight; `make(i)` builds request i.
async fn phase<F>(n: usize, make: F) -> BenchResult<Phase>
where
    F: Fn(usize) -> reqwest::RequestBuilder,
{
    let mut hist = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut results = futures::stream::iter((0..n).map(|i| {
        let req = make(i);
        async move {
            let t = Instant::now();
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let _ = resp.bytes().await;
            if !status.is_success() {
                return Err(format!("request {i} answered {status}"));
            }
            Ok::<u64, String>(t.elapsed().as_micros() as u64)
        }
    }))
    .buffer_unordered(CONCURRENCY);
    while let Some(r) = results.next().await {
        hist.record(r?.max(1)).map_err(|e| e.to_string())?;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    Ok(Phase {
        per_s: n as f64 / secs,
        p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

/// Starts a daemon with one signed-JSON SMS channel and measures both phases.
pub async fn run(mut settings: Settings, n: usize) -> BenchResult<SmsBenchReport> {
    if settings.bus.kind != BusKind::Amqp {
        return Err("the benchmark measures RabbitMQ: set bus.kind = \"amqp\" and bus.url".into());
    }
    let url = settings.bus_url()?.unwrap_or_default();
    let tls = settings.amqp_tls().map_err(|e| e.to_string())?;
    let channels = tempfile_dir()?;
    std::fs::write(
        channels.join("sms-bench.toml"),
        format!(
            "type = \"sms\"\nid = \"sms-bench\"\n[gateway]\nkind = \"json_hmac\"\nsecret = \"{SECRET}\"\n[reply]\nenabled = false\n"
        ),
    )
    .map_err(|e| format!("bench channel file: {e}"))?;
    settings.channels.dir = channels.clone();
    settings.http.listen = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    settings.rules.watch = false;
    let prefix = format!("pietura-smsbench-{}", std::process::id());
    settings.bus.prefix = prefix.clone();
    let daemon = Daemon::start(settings).await.map_err(|e| e.to_string())?;
    let base = format!("http://{}", daemon.addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let client = Arc::new(client);

    eprintln!("baseline: {n} GET /healthz…");
    let health = format!("{base}/healthz");
    let baseline = phase(n, |_| client.get(&health)).await;
    eprintln!("SMS webhook: {n} signed callbacks, each answered after the broker confirm…");
    let hook = format!("{base}/sms/sms-bench/inbound");
    let webhook = phase(n, |i| {
        let body = serde_json::json!({
            "id": format!("{run_id}-{i}"),
            "from": format!("+3712{:07}", i % 10_000_000),
            "text": "Lūdzu izsniegt būvatļauju šķūņa būvniecībai Bebrenes pagastā.",
        })
        .to_string();
        client
            .post(&hook)
            .header("content-type", "application/json")
            .header("X-Signature-256", body_signature(SECRET, body.as_bytes()))
            .body(body)
    })
    .await;

    let units: Vec<String> = daemon.rules.load().units.keys().cloned().collect();
    daemon.shutdown().await;
    if let Err(e) = crate::bus::amqp::delete_topology(&url, &tls, &prefix, &units).await {
        eprintln!("could not delete the benchmark's queues ({prefix}.*): {e}");
    }
    let _ = std::fs::remove_dir_all(&channels);
    Ok(SmsBenchReport {
        requests: n,
        baseline: baseline?,
        webhook: webhook?,
    })
}

/// A scratch folder for the benchmark's channel file.
fn tempfile_dir() -> BenchResult<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("pietura-smsbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

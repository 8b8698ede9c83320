//! `pietura bench`: the pipeline against the raw broker, measured in one run.
//!
//! 1. Ceiling: publish N messages of a form item's size with confirms to a
//!    scratch quorum queue while consuming them with manual acks.
//! 2. Pipeline: N form items through the real daemon (RabbitMQ → engine →
//!    PostgreSQL registry → outbox → unit queue), items/s and the latency
//!    from receipt to the routed notice being confirmed in its unit queue.
//! 3. The same at half the measured pipeline rate, for the latency target.

pub mod eadrese;
pub mod email;
pub mod ocr;
pub mod sms;

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use lapin::BasicProperties;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use sqlx::Row;

use crate::bus::publish_intake;
use crate::config::{BusKind, Settings};
use crate::daemon::Daemon;
use crate::message::{ChannelKind, ChannelRef, IntakeMessage, Sender};

/// What one benchmark run measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub items: usize,
    pub ceiling_per_s: f64,
    pub pipeline_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub half_load_per_s: f64,
    pub half_p50_ms: f64,
    pub half_p99_ms: f64,
    /// CPU spent by the whole machine (broker, database, daemon, load) in
    /// the ceiling and full-load phases; `None` where /proc is missing.
    pub ceiling_cpu: Option<CpuUse>,
    pub pipeline_cpu: Option<CpuUse>,
}

impl BenchReport {
    /// The end-to-end rate as a share of the broker ceiling.
    pub fn ratio(&self) -> f64 {
        self.pipeline_per_s / self.ceiling_per_s
    }
}

/// Machine-wide CPU use over one phase, from /proc/stat. It tells a phase
/// that waits (idle CPU) from one that is bound by the machine itself.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    /// Share of all cores that was busy, 0..1.
    pub busy: f64,
    /// CPU milliseconds per message (ceiling) or per item (pipeline).
    pub ms_per_unit: f64,
}

#[derive(Debug, Clone, Copy)]
struct CpuSample {
    busy: u64,
    total: u64,
    at: Instant,
}

impl CpuSample {
    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().next()?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let field = |i: usize| v.get(i).copied().unwrap_or(0);
        let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
        Some(CpuSample {
            busy,
            total: busy + field(3) + field(4),
            at: Instant::now(),
        })
    }

    /// CPU used since `self`, shared over `units` messages or items.
    fn use_until(self, end: Option<CpuSample>, units: usize) -> Option<CpuUse> {
        let end = end?;
        let total = end.total.checked_sub(self.total).filter(|t| *t > 0)?;
        let busy = end.busy.saturating_sub(self.busy) as f64 / total as f64;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let cpu_ms = busy * cores * (end.at - self.at).as_secs_f64() * 1000.0;
        Some(CpuUse {
            busy,
            ms_per_unit: cpu_ms / units.max(1) as f64,
        })
    }
}

fn cpu_line(label: &str, cpu: Option<CpuUse>, unit: &str) -> String {
    match cpu {
        Some(c) => format!(
            "{label}machine CPU {:.0} % busy, {:.2} CPU-ms per {unit}",
            c.busy * 100.0,
            c.ms_per_unit
        ),
        None => format!("{label}machine CPU not measured (no /proc/stat)"),
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "items per run                 {}", self.items)?;
        writeln!(
            f,
            "raw broker ceiling            {:.0} msg/s (publish+confirm, consume+ack)",
            self.ceiling_per_s
        )?;
        writeln!(
            f,
            "pipeline (full load)          {:.0} items/s, receipt→routed p50 {:.0} ms, p99 {:.0} ms",
            self.pipeline_per_s, self.p50_ms, self.p99_ms
        )?;
        writeln!(
            f,
            "ratio pipeline / ceiling      {:.1} %",
            self.ratio() * 100.0
        )?;
        writeln!(
            f,
            "half load ({:.0} items/s)      receipt→routed p50 {:.0} ms, p99 {:.0} ms",
            self.half_load_per_s, self.half_p50_ms, self.half_p99_ms
        )?;
        writeln!(
            f,
            "{}",
            cpu_line(
                "ceiling phase                 ",
                self.ceiling_cpu,
                "message"
            )
        )?;
        write!(
            f,
            "{}",
            cpu_line("full-load phase               ", self.pipeline_cpu, "item")
        )
    }
}

/// Errors end the run; the message says which stage failed.
pub type BenchResult<T> = Result<T, String>;

const SAMPLE_BODIES: &[&str] = &[
    "Labdien! Lūdzu izsniegt būvatļauju palīgēkas pārbūvei Bebrenes pagastā. Pielikumā paskaidrojuma raksts.",
    "ludzu pieskirt malkas pabalstu, esmu trucigs pensionars",
    "Ielas apgaismojums nedeg Raiņa ielā, bedres ceļā uz Šēderi.",
    "Cik ilgi jāgaida rindā uz bērnudārzu Subatē?",
    "Sveiki, vai jums garšo kafija?",
];

fn form_item(i: usize, run: &str) -> IntakeMessage {
    let mut m = IntakeMessage::new(
        ChannelRef {
            kind: ChannelKind::WebForm,
            instance: "bench".into(),
        },
        format!("bench:{run}:{i}"),
        SAMPLE_BODIES[i % SAMPLE_BODIES.len()].repeat(4),
    );
    m.subject = Some("Iesniegums".into());
    m.sender = Sender {
        name: Some("Jānis Bērziņš".into()),
        email: Some("janis@example.lv".into()),
        ..Sender::default()
    };
    m.set_meta(&crate::channels::web_form::WebFormMeta {
        form_id: "bench".into(),
        fields: [("name".to_string(), "Jānis Bērziņš".to_string())].into(),
        ..Default::default()
    });
    m
}

async fn ceiling(
    url: &str,
    tls: &crate::tls::AmqpTls,
    n: usize,
    size: usize,
    window: usize,
) -> BenchResult<f64> {
    let conn = crate::bus::amqp::connect_to(url, tls, "pietura-bench")
        .await
        .map_err(|e| format!("ceiling: connect: {e}"))?;
    let pubch = conn.create_channel().await.map_err(|e| e.to_string())?;
    pubch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let queue = format!("pietura-bench-raw-{}", uuid::Uuid::now_v7());
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    pubch
        .queue_declare(
            queue.clone().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .map_err(|e| e.to_string())?;
    let conch = conn.create_channel().await.map_err(|e| e.to_string())?;
    conch
        .basic_qos(
            window.min(u16::MAX as usize) as u16,
            BasicQosOptions::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut consumer = conch
        .basic_consume(
            queue.clone().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let payload = vec![b'x'; size];
    let start = Instant::now();
    let consume = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            match consumer.next().await {
                Some(Ok(d)) => {
                    let _ = d.ack(BasicAckOptions::default()).await;
                    got += 1;
                }
                _ => break,
            }
        }
        got
    });
    let mut inflight = FuturesUnordered::new();
    for _ in 0..n {
        if inflight.len() >= window {
            inflight.next().await;
        }
        let confirm = pubch
            .basic_publish(
                "".into(),
                queue.clone().into(),
                BasicPublishOptions::default(),
                &payload,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .map_err(|e| e.to_string())?;
        inflight.push(confirm);
    }
    while inflight.next().await.is_some() {}
    let got = consume.await.map_err(|e| e.to_string())?;
    let elapsed = start.elapsed().as_secs_f64();
    let _ = pubch
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    let _ = conn.close(200, "bench done".into()).await;
    if got < n {
        return Err(format!("ceiling: consumed only {got} of {n}"));
    }
    Ok(n as f64 / elapsed)
}

/// Publishes `n` items (paced to `rate` per second if given) and waits until
/// every routed notice is confirmed; returns (items/s, latency histogram in ms).
async fn pipeline(
    daemon: &Daemon,
    n: usize,
    rate: Option<f64>,
    window: usize,
) -> BenchResult<(f64, Histogram<u64>)> {
    let run = uuid::Uuid::now_v7().to_string();
    let items: Vec<IntakeMessage> = (0..n).map(|i| form_item(i, &run)).collect();
    let bus = daemon.bus.clone();
    let start = Instant::now();
    // Spawned, not pushed into a stream polled only when the window is full:
    // an unpolled publish would sit idle after its receipt time was taken.
    let mut inflight = tokio::task::JoinSet::new();
    for (i, mut m) in items.into_iter().enumerate() {
        if let Some(r) = rate {
            let due = start + Duration::from_secs_f64(i as f64 / r);
            tokio::time::sleep_until(due.into()).await;
        }
        while inflight.len() >= window {
            settle(inflight.join_next().await)?;
        }
        m.received_at = chrono::Utc::now();
        let bus = bus.clone();
        inflight.spawn(async move {
            publish_intake(bus.as_ref(), &m)
                .await
                .map_err(|e| e.to_string())
        });
    }
    while let Some(done) = inflight.join_next().await {
        settle(Some(done))?;
    }
    let pool = daemon.registry.pool().clone();
    let prefix = format!("bench:{run}:%");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let routed: i64 = sqlx::query(
            "SELECT COUNT(*) FROM items i WHERE i.idempotency_key LIKE $1 AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.item_id = i.id)",
        )
        .bind(&prefix)
        .fetch_one(&pool)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| e.to_string())?;
        if routed as usize >= n {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "pipeline: only {routed} of {n} items routed after 300 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rows = sqlx::query(
        "SELECT i.received_at, a.at FROM items i JOIN audit_log a ON a.item_id = i.id AND a.action = 'published' WHERE i.idempotency_key LIKE $1",
    )
    .bind(&prefix)
    .fetch_all(&pool)
    .await
    .map_err(|e| e.to_string())?;
    let mut hist = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    for r in rows {
        let received: String = r.try_get(0).map_err(|e| e.to_string())?;
        let routed: String = r.try_get(1).map_err(|e| e.to_string())?;
        let (Ok(a), Ok(b)) = (
            chrono::DateTime::parse_from_rfc3339(&received),
            chrono::DateTime::parse_from_rfc3339(&routed),
        ) else {
            continue;
        };
        let _ = hist.record((b - a).num_milliseconds().max(0) as u64);
    }
    Ok((n as f64 / elapsed, hist))
}

/// A finished publish task's result; a panicked task is an error too.
fn settle(done: Option<Result<BenchResult<()>, tokio::task::JoinError>>) -> BenchResult<()> {
    match done {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(format!("pipeline: a publish task failed: {e}")),
        None => Ok(()),
    }
}

/// Runs the whole benchmark. `settings` must select AMQP (and normally PostgreSQL).
pub async fn run(mut settings: Settings, n: usize) -> BenchResult<BenchReport> {
    if settings.bus.kind != BusKind::Amqp {
        return Err("the benchmark measures RabbitMQ: set bus.kind = \"amqp\" and bus.url".into());
    }
    let url = settings.bus_url()?.unwrap_or_default();
    let tls = settings.amqp_tls().map_err(|e| e.to_string())?;
    settings.http.listen = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    settings.rules.watch = false;
    let prefix = format!("pietura-bench-{}", std::process::id());
    settings.bus.prefix = prefix.clone();
    let size = form_item(0, "size").encode().len();
    let window = usize::from(settings.bus.prefetch).max(64) * 4;
    eprintln!("measuring the raw broker ceiling with {n} messages of {size} bytes…");
    let before = CpuSample::now();
    let ceiling_per_s = ceiling(&url, &tls, n, size, window).await?;
    let ceiling_cpu = before.and_then(|b| b.use_until(CpuSample::now(), n));
    let daemon = Daemon::start(settings).await.map_err(|e| e.to_string())?;
    eprintln!("pushing {n} items through the pipeline at full load…");
    let before = CpuSample::now();
    let (pipeline_per_s, full) = pipeline(&daemon, n, None, window).await?;
    let pipeline_cpu = before.and_then(|b| b.use_until(CpuSample::now(), n));
    let half = pipeline_per_s / 2.0;
    eprintln!("pushing {n} items at half load ({half:.0}/s)…");
    let (_, halfh) = pipeline(&daemon, n, Some(half), window).await?;
    let units: Vec<String> = daemon.rules.load().units.keys().cloned().collect();
    daemon.shutdown().await;
    if let Err(e) = crate::bus::amqp::delete_topology(&url, &tls, &prefix, &units).await {
        eprintln!("could not delete the benchmark's queues ({prefix}.*): {e}");
    }
    Ok(BenchReport {
        items: n,
        ceiling_per_s,
        pipeline_per_s,
        p50_ms: full.value_at_quantile(0.5) as f64,
        p99_ms: full.value_at_quantile(0.99) as f64,
        half_load_per_s: half,
        half_p50_ms: halfh.value_at_quantile(0.5) as f64,
        half_p99_ms: halfh.value_at_quantile(0.99) as f64,
        ceiling_cpu,
        pipeline_cpu,
    })
}

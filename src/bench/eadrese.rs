//! `pietura bench --eadrese`: DIV messages to registered items, beside the
//! raw list+get rate of the same service measured in the same run. The
//! baseline lists the waiting messages and fetches each once (GetMessage,
//! decryption of its file), as the channel does; the pipeline adds blob
//! storage, the broker confirm, ConfirmMessage and registration.
//! `scripts/bench-eadrese.sh` starts the tests' DIV stand-in for it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::BenchResult;
use crate::config::Settings;
use crate::daemon::Daemon;
use crate::eadrese::{Credentials, DivClient, DivEndpoint};

/// The stand-in to measure against.
#[derive(Debug, Clone)]
pub struct DivTarget {
    /// The UnifiedService URL.
    pub url: String,
    /// The stand-in's control URL (adds the messages).
    pub control: String,
    /// `ca.pem`, `client.pem`, `client.key`.
    pub certs: PathBuf,
    pub address: String,
}

/// What one e-adrese benchmark run measured.
#[derive(Debug, Clone)]
pub struct EadreseBenchReport {
    pub messages: usize,
    pub raw_per_s: f64,
    pub pipeline_per_s: f64,
}

impl std::fmt::Display for EadreseBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<36}{}",
            "messages (one 2 KiB file each)", self.messages
        )?;
        writeln!(
            f,
            "{:<36}{:>8.1} messages/s",
            "raw DIV list + get (+ decrypt)", self.raw_per_s
        )?;
        writeln!(
            f,
            "{:<36}{:>8.1} messages/s",
            "DIV → registered (whole pipeline)", self.pipeline_per_s
        )?;
        write!(
            f,
            "{:<36}{:.1} %",
            "ratio pipeline / raw",
            100.0 * self.pipeline_per_s / self.raw_per_s
        )
    }
}

fn client(target: &DivTarget) -> BenchResult<DivClient> {
    let read = |name: &str| {
        std::fs::read_to_string(target.certs.join(name))
            .map_err(|e| format!("{}: {e}", target.certs.join(name).display()))
    };
    let creds = Credentials::from_pem(&read("client.pem")?, &read("client.key")?)
        .map_err(|e| e.to_string())?;
    DivClient::new(
        DivEndpoint {
            url: target.url.clone(),
            address: target.address.clone(),
            ca_file: Some(target.certs.join("ca.pem")),
            timeout: Duration::from_secs(60),
        },
        creds,
    )
    .map_err(|e| e.to_string())
}

/// Adds `n` messages to the stand-in, measures both phases.
pub async fn run(
    mut settings: Settings,
    target: DivTarget,
    n: usize,
) -> BenchResult<EadreseBenchReport> {
    let http = reqwest::Client::new();
    eprintln!("adding {n} messages to the stand-in…");
    let file =
        "Labdien! Lūdzu izsniegt būvatļauju šķūņa būvniecībai Bebrenes pagastā.\n".repeat(28);
    for i in 0..n {
        http.post(format!("{}/messages", target.control))
            .json(&serde_json::json!({
                "sender": format!("_PRIVATE@0101{i:07}"),
                "title": format!("Iesniegums {i}"),
                "description": "Lūdzu izskatīt pielikumā pievienoto iesniegumu.",
                "attachments": [{"name": "iesniegums.txt", "mime": "text/plain",
                                 "content_b64": B64.encode(file.as_bytes()), "compress": i % 2 == 0}],
            }))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("stand-in control: {e}"))?;
    }

    eprintln!("baseline: list, then get each message once…");
    let div = client(&target)?;
    let started = Instant::now();
    let ids = div.message_list().await.map_err(|e| e.to_string())?;
    for id in &ids {
        div.message(id, 1 << 20).await.map_err(|e| e.to_string())?;
    }
    let raw_secs = started.elapsed().as_secs_f64().max(1e-9);
    if ids.len() != n {
        return Err(format!(
            "the stand-in lists {} messages, not {n}",
            ids.len()
        ));
    }

    let channels =
        std::env::temp_dir().join(format!("pietura-eadresebench-{}", std::process::id()));
    std::fs::create_dir_all(&channels).map_err(|e| format!("{}: {e}", channels.display()))?;
    let path = |name: &str| toml::Value::String(target.certs.join(name).display().to_string());
    std::fs::write(
        channels.join("e-adrese-bench.toml"),
        format!(
            "type = \"e_adrese\"\nid = \"e-adrese-bench\"\nendpoint = \"{}\"\naddress = \"{}\"\n\
             certificate_file = {}\nkey_file = {}\nca_file = {}\npoll_seconds = 1\n\
             acknowledge = false\ndirectory_sync_minutes = 0\n",
            target.url,
            target.address,
            path("client.pem"),
            path("client.key"),
            path("ca.pem"),
        ),
    )
    .map_err(|e| format!("bench channel file: {e}"))?;
    settings.channels.dir = channels.clone();
    settings.http.listen = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    settings.rules.watch = false;
    let url = settings.bus_url()?.unwrap_or_default();
    let tls = settings.amqp_tls().map_err(|e| e.to_string())?;
    let prefix = format!("pietura-eadresebench-{}", std::process::id());
    settings.bus.prefix = prefix.clone();
    let amqp = settings.bus.kind == crate::config::BusKind::Amqp;

    eprintln!("pipeline: DIV → registered…");
    let started = Instant::now();
    let daemon = Daemon::start(settings).await.map_err(|e| e.to_string())?;
    let before = daemon.registry.count().await.map_err(|e| e.to_string())?;
    let wanted = before + n as i64;
    let limit = Instant::now() + Duration::from_secs(600);
    let outcome = loop {
        match daemon.registry.count().await {
            Ok(c) if c >= wanted => break Ok(started.elapsed().as_secs_f64()),
            Ok(_) if Instant::now() > limit => {
                break Err("not every message was registered within 10 minutes".to_string());
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => break Err(e.to_string()),
        }
    };
    let units: Vec<String> = daemon.rules.load().units.keys().cloned().collect();
    daemon.shutdown().await;
    if amqp && let Err(e) = crate::bus::amqp::delete_topology(&url, &tls, &prefix, &units).await {
        eprintln!("could not delete the benchmark's queues ({prefix}.*): {e}");
    }
    let _ = std::fs::remove_dir_all(&channels);
    let pipeline_secs = outcome?.max(1e-9);
    Ok(EadreseBenchReport {
        messages: n,
        raw_per_s: n as f64 / raw_secs,
        pipeline_per_s: n as f64 / pipeline_secs,
    })
}

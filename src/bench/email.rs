//! `pietura bench --email`: mail from an IMAP server to registered items,
//! beside the raw IMAP fetch rate of the same mailbox measured in the same
//! run. The baseline reads every mail once, one `UID FETCH` each, as the
//! channel does; the pipeline adds parsing, blob storage, the broker
//! confirm, the move to the processed folder, the position update, and
//! registration. `scripts/bench-email.sh` starts a throwaway Dovecot for it.

use std::time::{Duration, Instant};

use super::BenchResult;
use crate::channels::email::imap::{self, Credentials};
use crate::channels::email::{AfterHandOff, ImapConfig, Security};
use crate::config::{BusKind, Settings};
use crate::daemon::Daemon;

/// Where the benchmark's mailbox is.
#[derive(Debug, Clone)]
pub struct ImapTarget {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
}

/// What one e-mail benchmark run measured.
#[derive(Debug, Clone)]
pub struct EmailBenchReport {
    pub mails: usize,
    pub bytes: usize,
    pub fetch_per_s: f64,
    pub pipeline_per_s: f64,
}

impl std::fmt::Display for EmailBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<34}{} ({} KiB)",
            "mails",
            self.mails,
            self.bytes / 1024
        )?;
        writeln!(
            f,
            "{:<34}{:>8.0} mails/s",
            "raw IMAP fetch (one UID FETCH each)", self.fetch_per_s
        )?;
        writeln!(
            f,
            "{:<34}{:>8.0} mails/s",
            "IMAP → registered (whole pipeline)", self.pipeline_per_s
        )?;
        write!(
            f,
            "{:<34}{:.1} %",
            "ratio pipeline / fetch",
            100.0 * self.pipeline_per_s / self.fetch_per_s
        )
    }
}

/// One citizen's mail, distinct per `i`, with a small attachment every tenth.
fn sample(i: usize, run: &str) -> Vec<u8> {
    let mut mail = format!(
        "From: Iedzīvotājs {i} <person{i}@example.com>\r\nTo: dokumenti@example.lv\r\n\
         Subject: Iesniegums par būvatļauju {i}\r\nMessage-ID: <{run}-{i}@bench.example>\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0200\r\nMIME-Version: 1.0\r\n"
    );
    let text = "Labdien! Lūdzu izsniegt būvatļauju šķūņa būvniecībai Bebrenes pagastā. \
                Pielikumā zemes robežu plāns.\r\nAr cieņu, Jānis Bērziņš\r\n";
    if i.is_multiple_of(10) {
        mail.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}--b\r\n\
             Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"plans-{i}.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
            "JVBERi0xLjQKJcTl8uXrp/Og0MTGCjEgMCBvYmo8PD4+ZW5kb2JqCnRyYWlsZXI8PD4+CiUlRU9GCg==\r\n"
                .repeat(40)
        ));
    } else {
        mail.push_str(&format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}"
        ));
    }
    mail.into_bytes()
}

fn imap_config(target: &ImapTarget) -> ImapConfig {
    ImapConfig {
        host: target.host.clone(),
        port: target.port,
        security: Security::Plain,
        username: target.username.clone(),
        password: None,
        password_env: None,
        oauth2_token_env: None,
        oauth2_token_file: None,
        ca_file: None,
        idle: true,
        poll_seconds: 1,
    }
}

/// Fills a scratch mailbox with `n` mails, measures both phases, removes it.
pub async fn run(
    mut settings: Settings,
    target: ImapTarget,
    n: usize,
) -> BenchResult<EmailBenchReport> {
    if settings.bus.kind != BusKind::Amqp {
        return Err("the benchmark measures RabbitMQ: set bus.kind = \"amqp\" and bus.url".into());
    }
    let cfg = imap_config(&target);
    let credentials = Credentials::Password(target.password.clone());
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let inbox = format!("PieturaBench{}", &run_id[20..]);
    let done = format!("{inbox}Done");
    let mut mb = imap::connect(&cfg, &credentials)
        .await
        .map_err(|e| e.to_string())?;
    mb.ensure_folder(&inbox).await.map_err(|e| e.to_string())?;
    eprintln!("filling {inbox} with {n} mails…");
    let mut bytes = 0;
    for i in 0..n {
        let mail = sample(i, &run_id);
        bytes += mail.len();
        mb.append(&inbox, &mail).await.map_err(|e| e.to_string())?;
    }

    eprintln!("baseline: fetching each mail once…");
    mb.select(&inbox).await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    let waiting = mb
        .waiting(0, &AfterHandOff::Flag)
        .await
        .map_err(|e| e.to_string())?;
    for w in &waiting {
        mb.fetch(w.uid, false).await.map_err(|e| e.to_string())?;
    }
    let fetch_secs = started.elapsed().as_secs_f64().max(1e-9);
    if waiting.len() != n {
        return Err(format!(
            "the mailbox holds {} mails, not {n}",
            waiting.len()
        ));
    }
    mb.logout().await;

    let channels = std::env::temp_dir().join(format!("pietura-emailbench-{}", std::process::id()));
    std::fs::create_dir_all(&channels).map_err(|e| format!("{}: {e}", channels.display()))?;
    // The scratch folder is the benchmark's own; the password is the test
    // server's; its mail is unsigned and DNS out of reach: no SPF/DKIM/DMARC.
    let password = toml::Value::String(target.password.clone());
    std::fs::write(
        channels.join("epasts-bench.toml"),
        format!(
            "type = \"email\"\nid = \"epasts-bench\"\nmailbox = \"{inbox}\"\nafter = {{ action = \"move\", folder = \"{done}\" }}\n\
             [imap]\nhost = \"{}\"\nport = {}\nsecurity = \"plain\"\nusername = \"{}\"\npassword = {password}\n\
             [authenticity]\nmode = \"off\"\n",
            target.host, target.port, target.username
        ),
    )
    .map_err(|e| format!("bench channel file: {e}"))?;
    settings.channels.dir = channels.clone();
    settings.http.listen = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    settings.rules.watch = false;
    let url = settings.bus_url()?.unwrap_or_default();
    let tls = settings.amqp_tls().map_err(|e| e.to_string())?;
    let prefix = format!("pietura-emailbench-{}", std::process::id());
    settings.bus.prefix = prefix.clone();

    eprintln!("pipeline: IMAP → registered…");
    let started = Instant::now();
    let daemon = Daemon::start(settings).await.map_err(|e| e.to_string())?;
    let before = daemon.registry.count().await.map_err(|e| e.to_string())?;
    let wanted = before + n as i64;
    let limit = Instant::now() + Duration::from_secs(600);
    let outcome = loop {
        match daemon.registry.count().await {
            Ok(c) if c >= wanted => break Ok(started.elapsed().as_secs_f64()),
            Ok(_) if Instant::now() > limit => {
                break Err("not every mail was registered within 10 minutes".to_string());
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => break Err(e.to_string()),
        }
    };

    let units: Vec<String> = daemon.rules.load().units.keys().cloned().collect();
    daemon.shutdown().await;
    if let Err(e) = crate::bus::amqp::delete_topology(&url, &tls, &prefix, &units).await {
        eprintln!("could not delete the benchmark's queues ({prefix}.*): {e}");
    }
    let _ = std::fs::remove_dir_all(&channels);
    if let Ok(mut mb) = imap::connect(&cfg, &credentials).await {
        for folder in [&inbox, &done] {
            if let Err(e) = mb.delete(folder).await {
                eprintln!("could not delete {folder}: {e}");
            }
        }
        mb.logout().await;
    }
    let pipeline_secs = outcome?;
    Ok(EmailBenchReport {
        mails: n,
        bytes,
        fetch_per_s: n as f64 / fetch_secs,
        pipeline_per_s: n as f64 / pipeline_secs,
    })
}

//! Wires the parts together and owns their lifetimes: one cancellation token
//! is passed down to every task, and [`Daemon::shutdown`] waits for all of
//! them (items in flight finish or stay unacknowledged for redelivery).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::active_rules::{ActiveRulesError, Follower};
use crate::blobs::{BlobError, BlobStore};
use crate::bus::{self, Bus, BusError};
use crate::channels::{self, Channel, ChannelError, ChannelFileError};
use crate::config::Settings;
use crate::engine::Engine;
use crate::registry::numbering::Pattern;
use crate::registry::{Registry, RegistryError};
use crate::rules::watch::SharedRules;
use crate::supervise::{Components, Supervisor};

/// Why the daemon could not start; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Rules(#[from] ActiveRulesError),
    #[error("channel files in error:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    ChannelFiles(Vec<ChannelFileError>),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Blobs(#[from] BlobError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("[dms]: {0}")]
    Dms(#[from] crate::dms::DmsError),
    #[error(
        "cannot listen on {addr}: {source} (is another process using the port? set http.listen)"
    )]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running daemon.
pub struct Daemon {
    /// The address the HTTP server listens on (useful with port 0).
    pub addr: SocketAddr,
    pub registry: Registry,
    pub bus: Arc<dyn Bus>,
    pub rules: SharedRules,
    /// The outcome of the last rules reload (the watcher's reports).
    pub rules_status: tokio::sync::watch::Receiver<crate::rules::watch::ReloadStatus>,
    shutdown: CancellationToken,
    tasks: Supervisor,
}

/// The process-wide Prometheus recorder (installed once, shared by daemons in tests).
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!("metrics exporter not installed: {e}");
                None
            }
        })
        .clone()
}

impl Daemon {
    /// Starts everything the settings describe; refuses to start on any invalid file.
    pub async fn start(settings: Settings) -> Result<Daemon, StartError> {
        let settings = Arc::new(settings);
        let channel_configs =
            channels::load_dir(&settings.channels.dir).map_err(StartError::ChannelFiles)?;
        let pattern = Pattern::parse(&settings.registration.pattern)
            .map_err(|e| StartError::Config(format!("registration.pattern: {e}")))?;
        let db_url = settings.database_url().map_err(StartError::Config)?;
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        let registry = Registry::connect(&db_url, settings.database.max_connections).await?;
        registry.migrate().await?;
        // The rule set in force for every daemon, from the registry (an
        // empty registry takes rules/).
        let rules: SharedRules = Arc::new(ArcSwap::from_pointee(
            crate::active_rules::at_start(&registry, &settings.rules.dir).await?,
        ));
        let blobs = BlobStore::open(settings.blob_dir())?;
        let blobs_for_desk = blobs.clone();
        let bus = bus::open(&settings, &registry).await?;
        // Unit queues exist before the first item, so nothing routed is unroutable.
        let units: Vec<String> = rules.load().units.keys().cloned().collect();
        bus.declare_units(&units).await?;

        let shutdown = CancellationToken::new();
        let mut tasks = Supervisor::new(shutdown.clone());
        let dms = match &settings.dms {
            Some(d) => Some((d.build()?, d)),
            None => None,
        };
        let trust = crate::xmldsig::TrustList::load(&settings.signatures.trust)
            .map_err(|e| StartError::Config(format!("signatures.trust: {e}")))?;
        let site = Arc::new(channels::Site::of(&settings, &rules, Arc::new(trust)));
        let sink_ctx = channels::SinkContext {
            registry: registry.clone(),
            settings: settings.clone(),
            rules: rules.clone(),
            blobs: blobs.clone(),
        };
        let mut running: Vec<Arc<dyn Channel>> = Vec::new();
        let mut repliers: std::collections::HashMap<String, Arc<dyn crate::replies::Replier>> =
            std::collections::HashMap::new();
        let mut upkeep = Vec::new();
        for cfg in channel_configs {
            let ctx = channels::DoorContext::new(
                cfg.id(),
                bus.clone(),
                blobs.clone(),
                registry.clone(),
                site.clone(),
            );
            let id = cfg.id().to_string();
            let built = cfg.build(ctx, &sink_ctx)?;
            if let Some(r) = built.sinks.replier {
                repliers.insert(id.clone(), r);
            }
            if let Some(u) = built.sinks.upkeep {
                upkeep.push((id, u));
            }
            running.push(built.channel);
        }
        for ch in &running {
            let ch = ch.clone();
            let stop = shutdown.clone();
            tasks.spawn(format!("channel:{}", ch.id()), move || {
                ch.clone().run(stop.clone())
            });
        }
        for (id, u) in upkeep {
            let stop = shutdown.clone();
            tasks.spawn(format!("upkeep:{id}"), move || u.clone().run(stop.clone()));
        }

        match crate::answers::AnswerMail::new(&settings, registry.clone(), blobs.clone())
            .map_err(|e| StartError::Config(e.to_string()))?
        {
            Some(mail) => {
                repliers.insert(crate::answers::ANSWER_MAIL.to_string(), Arc::new(mail));
            }
            None => tracing::warn!(
                "answers.smtp_url is not set: answers by e-mail wait until it is (letters and SMS go out)"
            ),
        }
        let answer_desk = Arc::new(
            crate::answers::AnswerDesk::new(&settings)
                .map_err(|e| StartError::Config(e.to_string()))?,
        );
        let (reg, stop) = (registry.clone(), shutdown.clone());
        tasks.spawn("replies", move || {
            crate::replies::run(
                reg.clone(),
                repliers.clone(),
                crate::replies::ReplyTiming::default(),
                stop.clone(),
            )
        });

        let malware = crate::malware::Scanner::new(&settings.malware, blobs.clone())
            .map_err(|e| StartError::Config(format!("malware.clamd: {e}")))?
            .map(Arc::new);
        match &malware {
            Some(scanner) => {
                let (reg, sc, stop) = (registry.clone(), scanner.clone(), shutdown.clone());
                tasks.spawn("malware", move || {
                    crate::malware::run_pending(reg.clone(), sc.clone(), stop.clone())
                });
            }
            None => tracing::warn!(
                "no [malware] clamd configured: attachments are not scanned for malware"
            ),
        }
        let wake = Arc::new(Notify::new());
        let engine = Arc::new(Engine {
            registry: registry.clone(),
            bus: bus.clone(),
            rules: rules.clone(),
            pattern,
            unclassified_index: settings.registration.unclassified_index.clone(),
            dms_connector: dms.as_ref().map(|(c, _)| c.kind().to_string()),
            concurrency: settings.engine.concurrency,
            batch_max: settings.engine.batch_max,
            dispatch_wake: wake.clone(),
            poison_attempts: settings.engine.poison_attempts,
            malware: malware.clone(),
            duplicates: settings.duplicates.clone(),
            duplicate_turn: Default::default(),
        });
        let stop = shutdown.clone();
        tasks.spawn("engine", move || engine.clone().run(stop.clone()));
        let (reg, b, stop) = (registry.clone(), bus.clone(), shutdown.clone());
        tasks.spawn("dispatch", move || {
            crate::dispatch::run(reg.clone(), b.clone(), wake.clone(), stop.clone())
        });
        let (reg, b, blob_store, stop) = (
            registry.clone(),
            bus.clone(),
            blobs.clone(),
            shutdown.clone(),
        );
        let (janitor, notice_max) = (settings.janitor.clone(), settings.bus.unit_queue_max_length);
        tasks.spawn("janitor", move || {
            crate::janitor::run(
                reg.clone(),
                b.clone(),
                blob_store.clone(),
                janitor.clone(),
                notice_max,
                stop.clone(),
            )
        });
        let (reg, b, stop) = (registry.clone(), bus.clone(), shutdown.clone());
        tasks.spawn("parked", move || {
            crate::parked::run(reg.clone(), b.clone(), stop.clone())
        });
        if let Some((connector, d)) = dms {
            tracing::info!(
                dms = connector.kind(),
                "items are registered in the external DMS too"
            );
            let (reg, r, stop) = (registry.clone(), rules.clone(), shutdown.clone());
            let (retry_max, concurrency) = (
                std::time::Duration::from_secs(d.retry_max_seconds),
                d.concurrency,
            );
            tasks.spawn("dms", move || {
                crate::dms::DmsWorker {
                    registry: reg.clone(),
                    blobs: blobs.clone(),
                    rules: r.clone(),
                    connector: connector.clone(),
                    retry_max,
                    concurrency,
                }
                .run(stop.clone())
            });
        }
        let (status_tx, rules_status) = crate::rules::watch::status_channel(&rules);
        // Every daemon follows the registry's active rule set.
        let listen_url = (!registry.is_sqlite()).then(|| db_url.clone());
        let (reg, r, tx, stop) = (
            registry.clone(),
            rules.clone(),
            status_tx.clone(),
            shutdown.clone(),
        );
        tasks.spawn("rules-follow", move || {
            Follower {
                registry: reg.clone(),
                shared: r.clone(),
                status: tx.clone(),
                listen_url: listen_url.clone(),
            }
            .run(stop.clone())
        });
        if settings.rules.watch {
            match crate::rules::watch::RulesWatcher::new(&rules) {
                Ok(first) => {
                    // A restart sets up a new watch on the folder.
                    let mut first = Some(first);
                    let (reg, r, stop) = (registry.clone(), rules.clone(), shutdown.clone());
                    tasks.spawn("rules-watch", move || {
                        let watcher = first
                            .take()
                            .map_or_else(|| crate::rules::watch::RulesWatcher::new(&r), Ok);
                        let (reg, r, status_tx, stop) =
                            (reg.clone(), r.clone(), status_tx.clone(), stop.clone());
                        async move {
                            crate::active_rules::apply_file_edits(
                                watcher?, reg, r, status_tx, stop,
                            )
                            .await;
                            Ok::<(), notify::Error>(())
                        }
                    });
                }
                Err(e) => tracing::error!(
                    "rules folder is not watched, its edits need `pietura rules apply`: {e}"
                ),
            }
        }
        let public_url = settings.http.public_url.clone();
        let (reg, r, deadlines, status, stop) = (
            registry.clone(),
            rules.clone(),
            settings.deadlines.clone(),
            rules_status.clone(),
            shutdown.clone(),
        );
        tasks.spawn("keeper", move || {
            crate::keeper::Keeper {
                registry: reg.clone(),
                rules: r.clone(),
                settings: deadlines.clone(),
                status: status.clone(),
                tick: std::time::Duration::from_secs(60),
                public_url: public_url.clone(),
            }
            .run(stop.clone())
        });

        if settings.http.dev_trust_loopback {
            tracing::warn!(
                "http.dev_trust_loopback is on: loopback clients use the item API without a credential (development only)"
            );
        }
        if settings.http.api_token.is_some() {
            tracing::warn!(
                "http.api_token is deprecated: it acts as the client \"api-token\" with every scope; issue scoped clients with `pietura api-client add`"
            );
        }
        let state = crate::http::HttpState {
            registry: registry.clone(),
            bus: bus.clone(),
            metrics: metrics_handle(),
            forms: running
                .iter()
                .filter(|c| c.kind() == crate::message::ChannelKind::WebForm)
                .map(|c| c.id().to_string())
                .collect(),
            api_token: settings.http.api_token.clone(),
            dev_trust_loopback: settings.http.dev_trust_loopback,
            client_addressing: std::sync::Arc::new(crate::http::client::ClientAddressing {
                trusted_proxies: settings.http.trusted_proxies.clone(),
                header: settings.http.client_address_header,
            }),
            rules: rules.clone(),
            due_soon_working_days: settings.deadlines.due_soon_working_days,
            blobs: blobs_for_desk,
            channels: running
                .iter()
                .map(|c| (c.id().to_string(), c.kind().as_str().to_string()))
                .collect(),
            components: tasks.components(),
            identity: Arc::new(
                crate::desk::auth::Identity::start(&registry, &settings.desk)
                    .await
                    .map_err(|e| StartError::Config(e.to_string()))?,
            ),
            desk: crate::desk::DeskOptions {
                secure_cookies: settings
                    .desk
                    .secure_cookies
                    .unwrap_or(!settings.http.listen.ip().is_loopback()),
                session_idle_minutes: settings.desk.session_idle_minutes,
                dry_run_items: settings.desk.dry_run_items,
                public_statistics: settings.desk.public_statistics,
                public_url: settings.http.public_url.trim_end_matches('/').to_string(),
                print: settings.print.clone(),
            },
            answers: answer_desk,
            malware,
            public_url: settings.http.public_url.trim_end_matches('/').to_string(),
        };
        let app = crate::http::router(state, &running, settings.http.max_body_bytes);
        let listener = tokio::net::TcpListener::bind(settings.http.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: settings.http.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: settings.http.listen,
            source,
        })?;
        // A restarted server listens on the same socket.
        let listener = listener.into_std().map_err(|source| StartError::Listen {
            addr: settings.http.listen,
            source,
        })?;
        let stop = shutdown.clone();
        tasks.spawn("http", move || {
            let (app, stop) = (app.clone(), stop.clone());
            let listener = listener
                .try_clone()
                .and_then(tokio::net::TcpListener::from_std);
            async move {
                axum::serve(
                    listener?,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
            }
        });
        tracing::info!(%addr, rules = %rules.load().version, "pietura is running");
        Ok(Daemon {
            addr,
            registry,
            bus,
            rules,
            rules_status,
            shutdown,
            tasks,
        })
    }

    /// A token that stops the daemon when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Every supervised component's state.
    pub fn components(&self) -> Components {
        self.tasks.components()
    }

    /// Runs one more long-running task as component `name` under the
    /// daemon's supervisor (restarted after a failure, stopped with the
    /// daemon); `start` gets a fresh run going.
    pub fn supervise<F, Fut>(&mut self, name: impl Into<String>, start: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future + Send + 'static,
        Fut::Output: crate::supervise::Outcome,
    {
        self.tasks.spawn(name, start);
    }

    /// Stops every task and waits for them.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        self.tasks.join().await;
    }

    /// Waits until the token is cancelled, then shuts down.
    pub async fn run_until_stopped(self) {
        self.shutdown.cancelled().await;
        self.shutdown().await;
    }
}

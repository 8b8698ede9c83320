//! Supervision: every long-running task of the daemon (channels, engine,
//! dispatcher, replies, DMS, keeper, rules watcher, HTTP server) runs under
//! one [`Supervisor`] that restarts it after an error, a panic or a return
//! before shutdown, with the engine's backoff, and keeps each component's
//! state in [`Components`] for `/readyz`, `/metrics` and the desk's
//! channels page. A clean return at shutdown is not restarted.
//!
//! Also [`contain`]: a parser of outside data run so that its panic costs
//! one item, not the worker that reads them.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The first pause before a restart (then doubled, up to the engine's cap).
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// A run this long was healthy: the next failure starts the backoff over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// Error texts kept for display are cut here.
const MAX_ERROR_CHARS: usize = 300;
/// What is shown for a panic: its message may quote the data being parsed,
/// so only the standard error (the panic hook) has it.
pub const PANICKED: &str = "panicked (the panic message is on the daemon's standard error)";

/// Where a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Running,
    /// Failed, waiting for its restart.
    Restarting,
    /// Returned at shutdown.
    Stopped,
}

/// One component's state.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentState {
    pub state: Phase,
    /// When it entered `state`.
    pub since: DateTime<Utc>,
    /// How often it was started again after a failure.
    pub restarts: u64,
    /// The last failure (an error's text or [`PANICKED`]), kept after recovery.
    pub last_error: Option<String>,
}

/// Every supervised component's state, by name; shared with the HTTP server.
#[derive(Clone, Default)]
pub struct Components(Arc<Mutex<BTreeMap<String, ComponentState>>>);

impl Components {
    /// A copy of every component's state, by name.
    pub fn snapshot(&self) -> BTreeMap<String, ComponentState> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The names of the components that are not running.
    pub fn not_running(&self) -> Vec<String> {
        self.snapshot()
            .into_iter()
            .filter(|(_, c)| c.state != Phase::Running)
            .map(|(name, _)| name)
            .collect()
    }

    /// One component's state.
    pub fn get(&self, name: &str) -> Option<ComponentState> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut ComponentState)) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let c = map.entry(name.to_string()).or_insert(ComponentState {
            state: Phase::Running,
            since: Utc::now(),
            restarts: 0,
            last_error: None,
        });
        f(c);
        crate::metrics::component_up(name, c.state == Phase::Running);
    }

    fn enter(&self, name: &str, phase: Phase) {
        self.update(name, |c| {
            c.state = phase;
            c.since = Utc::now();
        });
    }
}

/// How a task's return is read: `Err` is a failure; any return before
/// shutdown is one too (the caller sees that).
pub trait Outcome: Send + 'static {
    /// The error's text, if it failed.
    fn failure(self) -> Option<String>;
}

impl Outcome for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<E: std::fmt::Display + Send + 'static> Outcome for Result<(), E> {
    fn failure(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

/// Starts tasks and keeps them running until shutdown.
pub struct Supervisor {
    components: Components,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Supervisor {
    pub fn new(shutdown: CancellationToken) -> Self {
        Supervisor {
            components: Components::default(),
            shutdown,
            tasks: JoinSet::new(),
        }
    }

    /// The components' states (a shared handle).
    pub fn components(&self) -> Components {
        self.components.clone()
    }

    /// Runs `start()`'s future as component `name`, and a new one after
    /// each failure (an error, a panic, a return before shutdown).
    pub fn spawn<F, Fut>(&mut self, name: impl Into<String>, mut start: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Outcome,
    {
        let name = name.into();
        let components = self.components.clone();
        let shutdown = self.shutdown.clone();
        components.enter(&name, Phase::Running);
        self.tasks.spawn(async move {
            let mut pause = FIRST_PAUSE;
            loop {
                let began = Instant::now();
                let run = AssertUnwindSafe(async { start().await })
                    .catch_unwind()
                    .await;
                if shutdown.is_cancelled() {
                    components.enter(&name, Phase::Stopped);
                    return;
                }
                let why = match run {
                    Ok(out) => out
                        .failure()
                        .map(|e| e.chars().take(MAX_ERROR_CHARS).collect())
                        .unwrap_or_else(|| "returned before shutdown".to_string()),
                    Err(_) => PANICKED.to_string(),
                };
                pause = pause_after(pause, began.elapsed());
                tracing::error!(component = %name, "stopped: {why}; restarting in {pause:?}");
                components.update(&name, |c| {
                    c.state = Phase::Restarting;
                    c.since = Utc::now();
                    c.last_error = Some(why);
                });
                if !crate::backoff::pause_before_retry(&mut pause, &shutdown).await {
                    components.enter(&name, Phase::Stopped);
                    return;
                }
                components.update(&name, |c| {
                    c.state = Phase::Running;
                    c.since = Utc::now();
                    c.restarts += 1;
                });
                crate::metrics::component_restarted(&name);
                tracing::info!(component = %name, "restarted");
            }
        });
    }

    /// Waits until every task has returned (after the shutdown token fired).
    pub async fn join(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The pause before the next restart: back to the first after a run of
/// [`HEALTHY_RUN`] or more, else the one the backoff reached.
fn pause_after(pause: Duration, ran: Duration) -> Duration {
    if ran >= HEALTHY_RUN {
        FIRST_PAUSE
    } else {
        pause
    }
}

/// A parser of outside data panicked on one item.
#[derive(Debug, thiserror::Error)]
#[error("the parser panicked")]
pub struct ParserPanicked;

/// Runs `parse` so that a panic in it (a third-party parser meeting input
/// it did not expect) is a [`ParserPanicked`] for this one item instead of
/// unwinding through the worker. The panic hook still writes the message
/// to standard error.
pub fn contain<T>(parse: impl FnOnce() -> T) -> Result<T, ParserPanicked> {
    std::panic::catch_unwind(AssertUnwindSafe(parse)).map_err(|_| ParserPanicked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_healthy_run_starts_the_backoff_over() {
        let long = Duration::from_secs(30);
        assert_eq!(pause_after(long, Duration::from_secs(5)), long);
        assert_eq!(pause_after(long, HEALTHY_RUN), FIRST_PAUSE);
        assert_eq!(pause_after(long, Duration::from_secs(3600)), FIRST_PAUSE);
    }

    #[test]
    fn a_panicking_parser_costs_its_item_only() {
        let items: Vec<&[u8]> = vec![b"ok", b"boom", b"fine"];
        let results: Vec<Result<usize, ParserPanicked>> = items
            .iter()
            .map(|item| {
                contain(|| {
                    if *item == b"boom" {
                        panic!("a third-party parser met input it did not expect");
                    }
                    item.len()
                })
            })
            .collect();
        assert!(matches!(results[0], Ok(2)));
        assert!(matches!(results[1], Err(ParserPanicked)));
        assert!(matches!(results[2], Ok(4)));
    }
}

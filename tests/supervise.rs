//! Supervision over real HTTP against the in-process daemon: a task that
//! returns an error and one that panics are restarted with backoff, shown
//! as restarting on `/readyz` (503), `/metrics` and the desk's channels page
//! until they run again (200); a clean return at shutdown is not restarted.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pietura::supervise::{PANICKED, Phase};
use support::desk::{ADMIN, DeskClient, add_accounts};
use support::{Backend, Options, TestEnv, WAIT, wait_until};

async fn readyz(env: &TestEnv) -> (u16, serde_json::Value) {
    let r = env
        .http
        .get(format!("{}/readyz", env.base))
        .send()
        .await
        .expect("GET /readyz");
    let status = r.status().as_u16();
    (status, r.json().await.expect("/readyz JSON"))
}

async fn metrics(env: &TestEnv) -> String {
    env.http
        .get(format!("{}/metrics", env.base))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of `name{component="…"}` in Prometheus text.
fn metric(text: &str, name: &str, component: &str) -> Option<f64> {
    let prefix = format!("{name}{{component=\"{component}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// The desk's table row of component `name`.
fn row(page: &str, name: &str) -> String {
    let start = page
        .find(&format!("id=\"component-{name}\""))
        .unwrap_or_else(|| panic!("no row for {name}: {page}"));
    let end = page[start..]
        .find("</tr>")
        .map_or(page.len(), |e| start + e);
    page[start..end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erring_and_a_panicking_task_are_restarted_and_shown_until_they_run() {
    let mut env = TestEnv::start(Options::new(Backend::Embedded)).await;
    add_accounts(&env).await;

    // Every long-running task of the daemon runs supervised.
    let (status, body) = readyz(&env).await;
    assert_eq!(status, 200, "{body}");
    for name in [
        "engine",
        "dispatch",
        "replies",
        "keeper",
        "http",
        "channel:iesniegums",
    ] {
        assert_eq!(
            body["components"][name]["state"], "running",
            "{name}: {body}"
        );
    }
    assert_eq!(body["database"], true);
    assert_eq!(body["bus"], true);

    // Two tasks that fail until the test lets them run.
    let tag = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let erring = format!("test-erring-{tag}");
    let panicking = format!("test-panicking-{tag}");
    let healthy = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let stop = env.daemon.shutdown_token();
    {
        let (healthy, runs, stop) = (healthy.clone(), runs.clone(), stop.clone());
        env.daemon.supervise(erring.clone(), move || {
            runs.fetch_add(1, Ordering::SeqCst);
            let (healthy, stop) = (healthy.clone(), stop.clone());
            async move {
                if !healthy.load(Ordering::SeqCst) {
                    return Err(std::io::Error::other("the test's own failure"));
                }
                stop.cancelled().await;
                Ok(())
            }
        });
    }
    {
        let (healthy, stop) = (healthy.clone(), stop.clone());
        env.daemon.supervise(panicking.clone(), move || {
            let (healthy, stop) = (healthy.clone(), stop.clone());
            async move {
                if !healthy.load(Ordering::SeqCst) {
                    panic!("the test's own panic");
                }
                stop.cancelled().await;
            }
        });
    }

    // Restarted at least once and still failing: not ready, and /readyz says which.
    let deadline = tokio::time::Instant::now() + WAIT;
    let seen = loop {
        let (status, body) = readyz(&env).await;
        let restarting = |name: &str| {
            body["components"][name]["state"] == "restarting"
                && body["components"][name]["restarts"].as_u64() >= Some(1)
        };
        if status == 503 && restarting(&erring) && restarting(&panicking) {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both test tasks restarting on /readyz: {status} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        seen["components"][&erring]["last_error"], "the test's own failure",
        "{seen}"
    );
    assert_eq!(seen["components"][&panicking]["last_error"], PANICKED);
    let not_running: Vec<&str> = seen["not_running"]
        .as_array()
        .expect("not_running")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        not_running.contains(&erring.as_str()) && not_running.contains(&panicking.as_str()),
        "{seen}"
    );
    assert!(
        runs.load(Ordering::SeqCst) >= 2,
        "the erring task ran again"
    );

    let text = metrics(&env).await;
    for name in [&erring, &panicking] {
        assert!(
            metric(&text, "pietura_component_restarts_total", name) >= Some(1.0),
            "{name}:\n{text}"
        );
    }

    // The desk's channels page shows both as restarting, with the reason.
    let admin = DeskClient::new(&env);
    assert_eq!(admin.sign_in(ADMIN.0, ADMIN.1).await, 303);
    let (status, page) = admin.page("/admin/channels?lang=en").await;
    assert_eq!(status, 200);
    let erring_row = row(&page, &erring);
    assert!(
        erring_row.contains("restarting") && erring_row.contains("own failure"),
        "{erring_row}"
    );
    let panicking_row = row(&page, &panicking);
    assert!(
        panicking_row.contains("restarting") && panicking_row.contains("panicked"),
        "{panicking_row}"
    );
    let engine_row = row(&page, "engine");
    assert!(engine_row.contains("running"), "{engine_row}");

    // Once they can run, they are restarted into the running state: ready again.
    healthy.store(true, Ordering::SeqCst);
    wait_until(WAIT, "/readyz 200 with both test tasks running", || async {
        let (status, body) = readyz(&env).await;
        status == 200
            && body["components"][&erring]["state"] == "running"
            && body["components"][&panicking]["state"] == "running"
    })
    .await;
    let text = metrics(&env).await;
    for name in [&erring, &panicking] {
        assert_eq!(
            metric(&text, "pietura_component_up", name),
            Some(1.0),
            "{name}:\n{text}"
        );
    }
    let (_, page) = admin.page("/admin/channels?lang=en").await;
    let erring_row = row(&page, &erring);
    assert!(
        erring_row.contains("running") && !erring_row.contains("restarting"),
        "{erring_row}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_return_at_shutdown_is_not_restarted() {
    let mut env = TestEnv::start(Options::new(Backend::Amqp)).await;
    let name = format!(
        "test-clean-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let returned = Arc::new(AtomicBool::new(false));
    let stop = env.daemon.shutdown_token();
    {
        let (runs, returned) = (runs.clone(), returned.clone());
        env.daemon.supervise(name.clone(), move || {
            runs.fetch_add(1, Ordering::SeqCst);
            let (returned, stop) = (returned.clone(), stop.clone());
            async move {
                stop.cancelled().await;
                returned.store(true, Ordering::SeqCst);
                Ok::<(), std::io::Error>(())
            }
        });
    }
    let components = env.daemon.components();
    let (status, body) = readyz(&env).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["components"][&name]["state"], "running", "{body}");

    env.stop().await;
    assert!(
        returned.load(Ordering::SeqCst),
        "shutdown waited for the task"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "not started again");
    let state = components.get(&name).expect("state kept");
    assert_eq!(state.state, Phase::Stopped);
    assert_eq!(state.restarts, 0);
    assert_eq!(state.last_error, None, "a clean return is no failure");
    // The daemon's own tasks stopped the same way.
    for (component, c) in components.snapshot() {
        assert_eq!(c.state, Phase::Stopped, "{component}");
        assert_eq!(c.last_error, None, "{component}");
    }
}

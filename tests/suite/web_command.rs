//! `palermo web`, the real binary: it refuses settings that would expose the dashboard or
//! leak a password, serves the dashboard while its recorder keeps the store current (no
//! other command runs), and stops cleanly on SIGTERM.

use crate::admin_support;
use crate::support;
use crate::web_support;

use std::time::Duration;

use admin_support::{stderr, Admin};
use palermo::{Options, Worker};
use palermo_store::{Filter, Page, Store};
use support::{eventually, RunningWorker};
use web_support::Dashboard;

const WAIT: Duration = Duration::from_secs(20);

#[palermo::job(max_attempts = 1)]
async fn web_command_fails(order: u64) -> anyhow::Result<()> {
    anyhow::bail!("declined order {order}")
}

#[tokio::test]
async fn a_public_bind_without_auth_is_refused() {
    let admin = Admin::new("sqlite", "web").await;
    for bind in ["0.0.0.0:0", "[::]:0"] {
        let out = admin
            .command(&["web", "--bind", bind])
            .env_remove("PALERMO_WEB_AUTH")
            .output()
            .expect("run palermo web");
        assert_eq!(out.status.code(), Some(1), "{bind}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("refusing to serve the dashboard")
                && err.contains("--auth")
                && err.contains("--insecure-no-auth"),
            "{bind}: {err}"
        );
    }
    let file = admin.db.url.trim_start_matches("sqlite:");
    assert!(
        !std::path::Path::new(file).exists(),
        "a refused bind opened the store"
    );
}

#[tokio::test]
async fn a_bad_auth_value_is_refused_without_echoing_it() {
    let admin = Admin::new("sqlite", "web").await;
    let cases = [
        ("nocolon-s3cret", "a colon"),
        (":s3cret", "user name is empty"),
        ("admin:", "password is empty"),
    ];
    for (value, reason) in cases {
        let by_flag = admin
            .command(&["web", "--auth", value])
            .env_remove("PALERMO_WEB_AUTH")
            .output()
            .expect("run palermo web");
        let by_env = admin
            .command(&["web"])
            .env("PALERMO_WEB_AUTH", value)
            .output()
            .expect("run palermo web");
        for out in [by_flag, by_env] {
            assert_eq!(out.status.code(), Some(1), "{value}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(err.contains("--auth") && err.contains(reason), "{err}");
            assert!(!err.contains("s3cret"), "the password was echoed: {err}");
        }
    }
}

/// Starts, answers /health, records a failure and a worker's stop by itself, and exits 0 on
/// SIGTERM.
#[tokio::test]
async fn serves_and_records_until_sigterm() {
    let admin = Admin::new("sqlite", "web-command").await;
    let queue = admin.rig.queue.clone();
    let dashboard = Dashboard::start(&admin, &["--env-name", "test"]);
    let (status, body) = dashboard.get("/health");
    assert_eq!(
        (status, body.trim()),
        (200, "ok"),
        "{}",
        dashboard.log_text()
    );

    let worker = RunningWorker::start_with(Worker::builder(admin.worker_config(&[&queue])));
    let client = support::client().await;
    client
        .enqueue_with(WebCommandFails { order: 7 }, Options::new().queue(&queue))
        .await
        .expect("enqueue");
    let store = Store::open(&admin.db.url).await.expect("open the store");
    let filter = Filter {
        queue: Some(queue.clone()),
        ..Filter::default()
    };
    eventually(
        WAIT,
        "the dashboard's recorder records the failure",
        || async {
            let page = store.list_failures(&filter, Page::default()).await;
            page.is_ok_and(|page| {
                page.total == 1 && page.failures[0].error.contains("declined order 7")
            })
        },
    )
    .await;
    worker.stop().await;
    eventually(
        WAIT,
        "the dashboard's recorder records the worker's stop",
        || async {
            let workers = store.workers().await.unwrap_or_default();
            workers
                .iter()
                .any(|w| w.queues == [queue.clone()] && w.status == "stopped")
        },
    )
    .await;

    let status = dashboard.stop(Duration::from_secs(15));
    assert!(status.success(), "palermo web exited with {status}");
    store.close().await;
    client.close().await.expect("close the client");
}

/// A public bind is served once a login is given, and every flag reaches the dashboard:
/// the login guards pages but not /health or (with --metrics-public) /metrics, the
/// environment label is in the page, and --read-only offers no action.
#[tokio::test]
async fn a_public_bind_with_auth_is_served_with_its_flags() {
    let admin = Admin::new("sqlite", "web").await;
    let flags = [
        "--bind",
        "0.0.0.0:0",
        "--auth",
        "ops:pw",
        "--read-only",
        "--env-name",
        "staging-x",
        "--metrics-public",
    ];
    let dashboard = Dashboard::start(&admin, &flags);
    let port = dashboard.url.rsplit(':').next().expect("a port");
    let local = format!("http://127.0.0.1:{port}");
    let get = |path: &str| web_support::get(&format!("{local}{path}")).0;
    assert_eq!(get("/health"), 200, "{}", dashboard.log_text());
    assert_eq!(get("/metrics"), 200, "--metrics-public");
    assert_eq!(get("/"), 401, "a page without the login");
    // base64("ops:pw")
    let login = [("Authorization", "Basic b3BzOnB3")];
    let (status, overview) = web_support::get_with(&format!("{local}/"), &login);
    assert_eq!(status, 200);
    assert!(overview.contains("staging-x"), "no environment label");
    let (status, failed) = web_support::get_with(&format!("{local}/failed"), &login);
    assert_eq!(status, 200);
    assert!(
        failed.contains("read-only-badge") && !failed.contains("retry-selected"),
        "--read-only still offers actions"
    );
    assert!(dashboard.stop(Duration::from_secs(15)).success());
}

//! examples/python/list_failures.py against the real `palermo web`: it lists a failure
//! through the dashboard's JSON API (`/api/failed`), as a table with the error's control
//! characters escaped, and as JSON lines. Needs python3 (`scripts/python.sh`).

use crate::admin_support;
use crate::support;
use crate::web_support;

use std::time::Duration;

use admin_support::Admin;
use palermo::{Options, Worker};
use support::{eventually, RunningWorker};
use web_support::Dashboard;

/// An error with a terminal escape in it: text from a message must not drive the terminal.
#[palermo::job(max_attempts = 1)]
async fn python_listed_fails(order: u64) -> anyhow::Result<()> {
    anyhow::bail!("declined order {order} \u{1b}[31mred")
}

#[tokio::test]
async fn list_failures_reads_the_dashboard_api() {
    let admin = Admin::new("sqlite", "python-failures").await;
    let queue = admin.rig.queue.clone();
    let dashboard = Dashboard::start(&admin, &[]);
    let worker = RunningWorker::start_with(Worker::builder(admin.worker_config(&[&queue])));
    support::client()
        .await
        .enqueue_with(PythonListedFails { order: 7 }, Options::new().queue(&queue))
        .await
        .expect("enqueue");
    let api = format!("/api/failed?queue={queue}");
    eventually(
        Duration::from_secs(20),
        "the dashboard lists the failure",
        || {
            let (status, body) = dashboard.get(&api);
            async move { status == 200 && body.contains("\"total\":1") }
        },
    )
    .await;
    worker.stop().await;

    let url = dashboard.url.clone();
    let table = support::python::run("list_failures.py", &["--url", &url, "--queue", &queue]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "one failure and the count: {table}");
    assert!(
        lines[0].contains(&queue)
            && lines[0].contains("python_listed_fails")
            && lines[0].contains("declined order 7 \\u{1b}[31mred"),
        "{table}"
    );
    assert!(
        !table.contains('\u{1b}'),
        "a raw escape reached the terminal: {table:?}"
    );
    assert_eq!(lines[1], "1 shown of 1 open failures");

    let json = support::python::run(
        "list_failures.py",
        &["--url", &url, "--queue", &queue, "--json", "--all"],
    );
    let failure: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON line");
    assert_eq!(failure["job_name"], "python_listed_fails");
    assert_eq!(failure["error_kind"], "error");
    assert!(failure["error"]
        .as_str()
        .is_some_and(|e| e.contains("\u{1b}[31m")));
}

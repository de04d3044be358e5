//! The admin side when processes die: a worker killed with SIGKILL is marked gone after three
//! missed heartbeats; a recorder killed between its commit and its ack leaves no duplicate.
//! They kill processes, so they are `#[ignore]`d in the normal run and run alone afterwards
//! (scripts/test.sh): `cargo test --test 'disruptive_*' -- --ignored --test-threads=1`.

use crate::admin_support;
use crate::support;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use admin_support::{palermo_bin, Admin, BACKENDS};
use palermo::{Client, Format, Options};
use support::RawJob;
use support::{amqp_url, eventually};

const WORKER: &str = env!("CARGO_BIN_EXE_palermo-test-worker");
const WAIT: Duration = Duration::from_secs(20);

async fn enqueue(queue: &str, job: &str, args: &str) -> String {
    let client = Client::connect(&amqp_url()).await.expect("client");
    let id = client
        .enqueue_raw(
            RawJob {
                name: job.into(),
                queue: queue.into(),
                format: Format::Json,
                body: args.as_bytes().to_vec(),
                max_attempts: Some(1),
            },
            Options::new(),
        )
        .await
        .expect("enqueue")
        .id();
    id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: run by scripts/test.sh after the other tests"]
async fn a_killed_worker_is_gone_after_three_missed_heartbeats() {
    let admin = Admin::new("sqlite", "killed").await;
    let (rig, queue) = (&admin.rig, admin.rig.queue.clone());
    let mut child = Command::new(WORKER)
        .args(["--queues", &queue, "--failed-queue", &admin.failed])
        .args([
            "--events-exchange",
            &admin.events,
            "--heartbeat-interval",
            "0.3",
        ])
        .env("PALERMO_AMQP_URL", amqp_url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the test worker");
    let job = enqueue(&queue, "sleep_ms", r#"{"ms":60000}"#).await;

    let started = Instant::now();
    let mut seen = serde_json::Value::Null;
    while started.elapsed() < WAIT {
        seen = admin.json(&["workers"]);
        if seen[0]["running"][0]["id"] == job.as_str() {
            break;
        }
    }
    assert_eq!(seen[0]["status"], "alive", "{seen}");
    assert_eq!(seen[0]["running"][0]["id"], job.as_str(), "{seen}");
    assert_eq!(seen[0]["pid"], child.id());

    child.kill().expect("SIGKILL");
    let killed = Instant::now();
    let _ = child.wait();
    let mut status = String::new();
    while killed.elapsed() < WAIT {
        status = admin.json(&["workers"])[0]["status"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if status == "gone" {
            break;
        }
    }
    assert_eq!(status, "gone");
    assert!(
        killed.elapsed() >= Duration::from_millis(600),
        "gone too early: {:?}",
        killed.elapsed()
    );
    let workers = admin.json(&["workers"]);
    assert_eq!(
        workers[0]["running"],
        serde_json::json!([]),
        "a gone worker runs nothing"
    );
    eventually(WAIT, "the killed job is back on its queue", || async {
        rig.ready(&queue).await == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: run by scripts/test.sh after the other tests"]
async fn a_recorder_killed_between_commit_and_ack_leaves_no_duplicate() {
    for backend in BACKENDS {
        let admin = Admin::new(backend, "crash").await;
        let (rig, queue) = (&admin.rig, admin.rig.queue.clone());
        let mut worker = Command::new(WORKER)
            .args(["--queues", &queue, "--failed-queue", &admin.failed])
            .args(["--events-exchange", &admin.events])
            .env("PALERMO_AMQP_URL", amqp_url())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the test worker");
        enqueue(&queue, "fail", r#"{"reason":"boom"}"#).await;
        eventually(WAIT, "the failure is queued", || async {
            rig.ready(&admin.failed).await == 1
        })
        .await;
        let _ = worker.kill();
        let _ = worker.wait();

        // Records the failure, commits, then aborts before the ack.
        let crashed = Command::new(palermo_bin())
            .args(["failed", "list", "--crash-after-commit"])
            .env("PALERMO_AMQP_URL", amqp_url())
            .env("PALERMO_DATABASE_URL", &admin.db.url)
            .env("PALERMO_FAILED_QUEUE", &admin.failed)
            .env("PALERMO_EVENTS_EXCHANGE", &admin.events)
            .output()
            .expect("run palermo");
        assert!(!crashed.status.success(), "the crash hook did not fire");
        eventually(
            WAIT,
            "the broker redelivers the unacked failure",
            || async { rig.ready(&admin.failed).await == 1 },
        )
        .await;
        let store = palermo_store::Store::open(&admin.db.url)
            .await
            .expect("store");
        let rows = store
            .list_failures(&Default::default(), Default::default())
            .await
            .expect("list");
        assert_eq!(
            rows.total, 1,
            "{backend}: the row was committed before the crash"
        );
        store.close().await;

        let list = admin.json(&["failed", "list"]);
        assert_eq!(list["total"], 1, "{backend}: recorded again, still one row");
        assert_eq!(rig.ready(&admin.failed).await, 0, "acked this time");
    }
}

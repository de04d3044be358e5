//! A job that kills its worker process must not loop forever: after `--max-redeliveries`
//! returns it goes to the failed queue as a poison message, and workers keep going.
//! Disruptive (its workers abort), so it runs after the other tests.
//!
//! The same on every broker and queue type (scripts/matrix.sh runs it on 3.10 and 4.0,
//! classic and quorum): classic queues count through Palermo's own header, quorum queues
//! through the broker's `x-delivery-count`, which RabbitMQ 4.0 still raises when a consumer
//! dies holding the message, and whose default delivery limit (20 on 4.0) is above
//! Palermo's default of 5.

use crate::support;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use palermo::{Client, Format, Options};
use support::RawJob;
use support::{
    amqp_url, eventually,
    process::WORKER,
    wire::{header, header_str},
    Rig,
};

async fn enqueue(client: &Client, queue: &str, name: &str, args: serde_json::Value) {
    client
        .enqueue_raw(
            RawJob {
                name: name.into(),
                queue: queue.into(),
                format: Format::Json,
                body: serde_json::to_vec(&args).expect("json"),
                max_attempts: None,
            },
            Options::new(),
        )
        .await
        .expect("enqueue");
}

#[tokio::test]
#[ignore = "disruptive: kills worker processes; run by scripts/test.sh after the other tests"]
async fn a_job_that_aborts_its_worker_ends_in_the_failed_queue_as_poison() {
    aborts_then_fails(&["--max-redeliveries", "3"], 3).await;
}

/// With the default limit (5): five deaths, then the failed queue.
#[tokio::test]
#[ignore = "disruptive: kills worker processes; run by scripts/test.sh after the other tests"]
async fn with_the_default_limit_a_job_that_kills_its_worker_five_times_is_failed_as_poison() {
    aborts_then_fails(&[], 5).await;
}

/// Restarts a worker (with `limit_args`) every time the job kills it; checks that it died
/// `expected` times, then the job went to the failed queue as poison and the next job ran.
async fn aborts_then_fails(limit_args: &[&str], expected: usize) {
    let rig = Rig::new("poison").await;
    let (queue, failed) = (&rig.queue, &rig.failed);
    let client = rig.client();
    enqueue(
        client,
        queue,
        "abort_now",
        serde_json::json!({"why": "a fatal bug"}),
    )
    .await;
    enqueue(client, queue, "sleep_ms", serde_json::json!({"ms": 1})).await;

    // Restart the worker every time the job kills it, as a process supervisor would.
    let mut aborts = 0;
    for _ in 0..10 {
        let status = Command::new(WORKER)
            .args(rig.worker_args())
            .args(limit_args)
            .args(["--shutdown-timeout", "1"])
            .env("PALERMO_AMQP_URL", amqp_url())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn worker");
        let mut child = status;
        // Either the job kills it, or the poison message was failed and the queue drained.
        let mut exited = None;
        for _ in 0..200 {
            if let Some(s) = child.try_wait().expect("try_wait") {
                exited = Some(s);
                break;
            }
            if rig.ready(failed).await == 1 && rig.ready(queue).await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match exited {
            Some(status) => {
                assert!(!status.success(), "the worker died of the job");
                aborts += 1;
            }
            None => {
                // SAFETY: kill(2) on our own child.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                let _ = child.wait();
                break;
            }
        }
    }
    eventually(
        Duration::from_secs(10),
        "the poison message is in the failed queue",
        || async { rig.ready(failed).await == 1 },
    )
    .await;
    assert_eq!(
        aborts, expected,
        "one first run plus one per allowed redelivery, then no more"
    );
    assert_eq!(rig.ready(queue).await, 0, "the good job ran too");

    let failures = rig.drain(failed).await;
    let get = |name| header_str(&failures[0].0, name).unwrap_or_default();
    assert_eq!(get(header::ERROR_KIND), "poison");
    let delivered = format!("delivered {} times", expected + 1);
    assert!(
        get(header::ERROR).contains(&delivered),
        "{}",
        get(header::ERROR)
    );
    assert_eq!(get(header::JOB), "abort_now");
}

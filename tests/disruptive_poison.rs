//! A job that kills its worker process must not loop forever: after `--max-redeliveries`
//! returns it goes to the failed queue as a poison message, and workers keep going.
//! Disruptive (its workers abort), so it runs after the other tests.

mod support;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use palermo::{
    admin::{wire::header, RawJob},
    Client, Format,
};
use support::{amqp_url, eventually, unique, Broker};

const WORKER: &str = env!("CARGO_BIN_EXE_palermo-test-worker");

async fn enqueue(client: &Client, queue: &str, name: &str, args: serde_json::Value) {
    client
        .enqueue_raw(RawJob {
            name: name.into(),
            queue: queue.into(),
            format: Format::Json,
            body: serde_json::to_vec(&args).expect("json"),
            max_attempts: None,
        })
        .await
        .expect("enqueue");
}

#[tokio::test]
#[ignore = "disruptive: kills worker processes; run by scripts/test.sh after the other tests"]
async fn a_job_that_aborts_its_worker_ends_in_the_failed_queue_as_poison() {
    let broker = Broker::connect().await;
    let (queue, failed) = (unique("poison"), unique("failed"));
    broker.track(&[&queue, &failed]);
    let events = broker.events_exchange();
    let client = Client::connect(&amqp_url()).await.expect("client");
    enqueue(
        &client,
        &queue,
        "abort_now",
        serde_json::json!({"why": "a fatal bug"}),
    )
    .await;
    enqueue(&client, &queue, "sleep_ms", serde_json::json!({"ms": 1})).await;

    // Restart the worker every time the job kills it, as a process supervisor would.
    let mut aborts = 0;
    for _ in 0..10 {
        let status = Command::new(WORKER)
            .args([
                "--queues",
                &queue,
                "--failed-queue",
                &failed,
                "--events-exchange",
                &events,
            ])
            .args(["--max-redeliveries", "3", "--shutdown-timeout", "1"])
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
            if broker.ready(&failed).await == 1 && broker.ready(&queue).await == 0 {
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
        || async { broker.ready(&failed).await == 1 },
    )
    .await;
    assert_eq!(
        aborts, 3,
        "one first run plus one per allowed redelivery, then no more"
    );
    assert_eq!(broker.ready(&queue).await, 0, "the good job ran too");

    let failures = broker.drain(&failed).await;
    let headers = failures[0].0.headers().clone().unwrap_or_default();
    let get = |name| {
        palermo::admin::wire::get_str(&headers, name)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    assert_eq!(get(header::ERROR_KIND), "poison");
    assert!(
        get(header::ERROR).contains("delivered 4 times"),
        "{}",
        get(header::ERROR)
    );
    assert_eq!(get(header::JOB), "abort_now");
    broker.cleanup().await;
}

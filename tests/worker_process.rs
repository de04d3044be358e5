//! The worker as a process: signals, exit codes, start-up errors.

mod support;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use support::{amqp_url, eventually, unique, Broker};

const WORKER: &str = env!("CARGO_BIN_EXE_palermo-test-worker");
const WAIT: Duration = Duration::from_secs(20);

/// The test worker's `sleep_ms` job, enqueued by name.
#[derive(Serialize, Deserialize)]
struct SleepMs {
    ms: u64,
}

async fn enqueue_sleep(queue: &str, ms: u64) {
    let client = palermo::Client::connect(&amqp_url()).await.expect("client");
    let body = serde_json::to_vec(&SleepMs { ms }).expect("json");
    client
        .enqueue_raw(palermo::admin::RawJob {
            name: "sleep_ms".into(),
            queue: queue.into(),
            format: palermo::Format::Json,
            body,
            max_attempts: Some(1),
        })
        .await
        .expect("enqueue");
}

/// Spawns the test worker with its own events exchange, tracked for cleanup.
fn spawn_worker(broker: &Broker, args: &[&str]) -> Child {
    Command::new(WORKER)
        .args(args)
        .args(["--events-exchange", &broker.events_exchange()])
        .env("PALERMO_AMQP_URL", amqp_url())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the test worker")
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on a pid we spawned and have not reaped.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill failed");
}

async fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the worker did not exit within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigterm_lets_the_running_job_finish_and_leaves_the_others_queued() {
    let broker = Broker::connect().await;
    let (queue, failed) = (unique("term"), unique("failed"));
    broker.track(&[&queue, &failed]);
    enqueue_sleep(&queue, 1500).await;
    for _ in 0..3 {
        enqueue_sleep(&queue, 1).await;
    }
    let mut child = spawn_worker(
        &broker,
        &[
            "--queues",
            &queue,
            "--failed-queue",
            &failed,
            "--shutdown-timeout",
            "10",
        ],
    );
    eventually(WAIT, "the first job is delivered", || async {
        broker.ready(&queue).await == 3
    })
    .await;
    // Delivered is not yet started: a stop in between rightly hands the job back. The job
    // sleeps 1.5 s, so 300 ms after its delivery it is running and still far from its end.
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, libc::SIGTERM);
    let started = Instant::now();
    let status = wait_exit(&mut child, WAIT).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it did not wait for the timeout"
    );
    // The running job was acked (else it would be back: 4), the others were never started.
    assert_eq!(broker.ready(&queue).await, 3);
    assert_eq!(broker.ready(&failed).await, 0);
    broker.cleanup().await;
}

#[tokio::test]
async fn a_second_signal_exits_at_once_and_returns_the_job_to_its_queue() {
    let broker = Broker::connect().await;
    let (queue, failed) = (unique("term2"), unique("failed"));
    broker.track(&[&queue, &failed]);
    enqueue_sleep(&queue, 60_000).await;
    let mut child = spawn_worker(&broker, &["--queues", &queue, "--failed-queue", &failed]);
    eventually(WAIT, "the job is running", || async {
        broker.ready(&queue).await == 0
    })
    .await;
    signal(&child, libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, libc::SIGINT);
    let status = wait_exit(&mut child, Duration::from_secs(5)).await;
    assert!(!status.success());
    eventually(WAIT, "the unacked job is back in its queue", || async {
        broker.ready(&queue).await == 1
    })
    .await;
    broker.cleanup().await;
}

fn run_to_end(args: &[&str], url: &str) -> (i32, String) {
    let output = Command::new(WORKER)
        .args(args)
        .env("PALERMO_AMQP_URL", url)
        .output()
        .expect("run the test worker");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_worker_refuses_bad_start_up_input_with_a_clear_message() {
    let url = amqp_url();
    let (code, err) = run_to_end(&["--queues", ""], &url);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("queue name cannot be empty"), "{err}");

    let (code, err) = run_to_end(&[], &url);
    assert_ne!(code, 0);
    assert!(err.contains("--queues"), "{err}");

    let (code, err) = run_to_end(&["--queues", "a", "--concurrency", "0"], &url);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("concurrency is 0"), "{err}");

    let (code, err) = run_to_end(&["--queues", "a"], "not a url");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("invalid AMQP URL"), "{err}");
    assert_eq!(
        err.trim()
            .lines()
            .filter(|l| l.starts_with("error"))
            .count(),
        1,
        "{err}"
    );

    let (code, err) = run_to_end(
        &["--queues", "a"],
        "amqp://guest:wrong-password@127.0.0.1:5672/%2f",
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot connect") && !err.contains("wrong-password"),
        "{err}"
    );
}

//! The worker as a process: signals, exit codes, start-up errors.

use crate::support;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use support::{
    amqp_url, eventually,
    process::{enqueue_sleep, read_log, Running, WORKER},
    Rig, WAIT,
};

/// The test worker on the rig's queue, failed queue and events exchange, logging to `log`.
fn spawn_worker(rig: &Rig, log: &std::path::Path, extra: &[&str]) -> Running {
    let mut args = rig.worker_args().to_vec();
    args.extend_from_slice(extra);
    Running::spawn(&args, log)
}

/// Waits until the worker's log says that the `sleep_ms` job of `ms` started.
async fn wait_running(log: &std::path::Path, ms: u64) {
    let line = format!("sleep_ms: sleeping {ms} ms");
    eventually(WAIT, &line, || async { read_log(log).contains(&line) }).await;
}

#[tokio::test]
async fn sigterm_lets_the_running_job_finish_and_leaves_the_others_queued() {
    let rig = Rig::new("term").await;
    let queue = &rig.queue;
    enqueue_sleep(rig.client(), queue, 1500).await;
    for _ in 0..3 {
        enqueue_sleep(rig.client(), queue, 1).await;
    }
    let log = rig.temp_file("worker.log");
    let worker = spawn_worker(&rig, &log, &["--shutdown-timeout", "10"]);
    // Running, not only delivered: a stop between delivery and start rightly hands it back.
    wait_running(&log, 1500).await;
    let started = Instant::now();
    let status = worker.stop(WAIT).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it did not wait for the timeout"
    );
    // The running job was acked (else it would be back: 4), the others were never started.
    assert_eq!(rig.ready(queue).await, 3);
    assert_eq!(rig.ready(&rig.failed).await, 0);
}

#[tokio::test]
async fn a_second_signal_exits_at_once_and_returns_the_job_to_its_queue() {
    let rig = Rig::new("term2").await;
    let queue = &rig.queue;
    enqueue_sleep(rig.client(), queue, 60_000).await;
    let log = rig.temp_file("worker.log");
    let worker = spawn_worker(&rig, &log, &[]);
    wait_running(&log, 60_000).await;
    worker.signal(libc::SIGTERM);
    eventually(WAIT, "the worker took the first signal", || async {
        read_log(&log).contains("stop requested")
    })
    .await;
    worker.signal(libc::SIGINT);
    let status = worker.wait(Duration::from_secs(5)).await;
    assert!(!status.success());
    eventually(WAIT, "the unacked job is back in its queue", || async {
        rig.ready(queue).await == 1
    })
    .await;
}

#[tokio::test]
async fn with_prefetch_a_stop_returns_the_held_jobs_unrun() {
    let rig = Rig::new("prefetch").await;
    let queue = &rig.queue;
    enqueue_sleep(rig.client(), queue, 4000).await;
    for _ in 0..12 {
        enqueue_sleep(rig.client(), queue, 1).await;
    }
    let log = rig.temp_file("worker.log");
    let extra = ["--prefetch", "10", "--shutdown-timeout", "10"];
    let worker = spawn_worker(&rig, &log, &extra);
    wait_running(&log, 4000).await;
    // The slot holds 10 unacked: the running job and 9 waiting their turn.
    eventually(WAIT, "the slot holds 10 deliveries", || async {
        rig.ready(queue).await == 3
    })
    .await;
    let status = worker.stop(WAIT).await;
    assert!(status.success(), "exit status {status:?}");
    // The running job was acked; the 9 it held are back, none lost and none acked unrun.
    eventually(WAIT, "the held jobs are back in the queue", || async {
        rig.ready(queue).await == 12
    })
    .await;
    assert_eq!(rig.ready(&rig.failed).await, 0);
    let log = read_log(&log);
    assert!(
        !log.contains("sleep_ms: sleeping 1 ms"),
        "a held job ran:\n{log}"
    );
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

    let (code, err) = run_to_end(&["--queues", "a", "--prefetch", "0"], &url);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("prefetch is 0"), "{err}");

    let (code, err) = run_to_end(
        &["--queues", "a", "--limit", "record_span:concurrency=0"],
        &url,
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--limit") && err.contains("concurrency is 0; it must be from 1 to 1000"),
        "{err}"
    );

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

    let (code, err) = run_to_end(&["--queues", "a"], "amqp://guest:secret@x,,amqp://y");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(r#"invalid AMQP URL "" (address 2 of 3 in the list): the address is empty"#)
            && !err.contains("secret"),
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

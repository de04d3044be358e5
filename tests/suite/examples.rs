//! The examples in examples/ are programs people copy, so they are run, not only built:
//! `minimal` (its `main`, built by this package as `palermo-example-minimal`) enqueues its job
//! to a queue of this test, runs it and exits 0.
//! `axum-app` and the rest are built by the workspace build (`cargo clippy --workspace`,
//! `cargo test --workspace`).

use crate::support;

use std::{process::Command, time::Duration};

use support::{eventually, Rig};

#[tokio::test]
async fn minimal_enqueues_runs_its_job_and_exits_0() {
    let rig = Rig::new("examples").await;
    let queue = rig.another_queue("minimal");
    let binary = env!("CARGO_BIN_EXE_palermo-example-minimal");
    let run = tokio::task::spawn_blocking({
        let queue = queue.clone();
        move || {
            Command::new(binary)
                .args(["--queue", &queue])
                .env("PALERMO_AMQP_URL", support::amqp_url())
                .output()
        }
    });
    // The example gives up on its job after 30 s and exits 1; this only guards against a hang.
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("minimal did not exit within 60 s")
        .expect("run thread")
        .expect("start minimal");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "minimal exited with {}:\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains(&format!("to queue {queue}")), "{stdout}");
    assert!(
        stdout.contains("Hello, Ada! (job "),
        "the job ran: {stdout}"
    );
    assert!(
        stdout.contains("done: the job ran and the worker stopped"),
        "{stdout}"
    );
    // Its job is acked: nothing is left in the queue.
    eventually(Duration::from_secs(5), "the queue is empty", || async {
        rig.ready(&queue).await == 0
    })
    .await;
}

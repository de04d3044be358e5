//! A unique job's lock when its worker is SIGKILLed mid-run: still held right after (the job
//! is redelivered with its lock), and expired after its TTL, so the key can be enqueued
//! again. Disruptive (it kills a worker process), so scripts/test.sh runs it after the rest.

use crate::support;

use std::time::Duration;

use palermo::{admin::unique::lock_name, Enqueued, Options};
use support::{
    eventually,
    process::{read_log, Running},
    Rig, WAIT,
};
use tokio::time::Instant;

/// The test worker's `sleep_ms` job (tests/support/test_worker.rs): same wire name and
/// arguments, so this test can enqueue it as a typed, unique job.
#[palermo::job]
async fn sleep_ms(ms: u64) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(())
}

#[tokio::test]
#[ignore = "disruptive: kills a worker process; run by scripts/test.sh after the other tests"]
async fn a_lock_held_by_a_killed_worker_expires_after_its_ttl() {
    let rig = Rig::new("unique-killed").await;
    let ttl = Duration::from_secs(3);
    let key = rig.queue.clone();
    rig.track(&[&lock_name(key.as_bytes(), ttl)]);
    let log = rig.temp_file("worker.log");
    let worker = Running::spawn(&rig.worker_args(), &log);
    let client = rig.client();
    let enqueue = || {
        client.enqueue_with(
            SleepMs { ms: 120_000 },
            Options::new().queue(&rig.queue).unique(&key, ttl),
        )
    };
    let first = enqueue().await.expect("first");
    let taken = Instant::now();
    assert!(first.is_new(), "{first:?}");
    eventually(WAIT, "the job running in the worker process", || async {
        read_log(&log).contains("sleep_ms: sleeping")
    })
    .await;
    worker.kill();
    let held = enqueue().await.expect("held");
    if taken.elapsed() < ttl {
        assert_eq!(held, Enqueued::Duplicate(first.id()), "held after the kill");
    }
    let mut later = held;
    while !later.is_new() && taken.elapsed() < ttl * 4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        later = enqueue().await.expect("later");
    }
    assert!(later.is_new(), "expired after the TTL: {later:?}");
    assert!(
        taken.elapsed() >= ttl - Duration::from_millis(500),
        "not long before the TTL"
    );
    // The killed run came back to the queue (at-least-once), next to the new job.
    assert_eq!(rig.ready(&rig.queue).await, 2);
}

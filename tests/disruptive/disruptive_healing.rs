//! Broker objects Palermo owns deleted under a running worker (an operator in the management
//! UI, a policy, a mistake): the worker declares them again and goes on, without a hot loop.
//! The failed queue and the events exchange are the test's own; the delay layout is shared
//! by every test, so the test that deletes it runs alone, after the other tests
//! (scripts/test.sh), only under `flock -x /tmp/palermo-broker.lock`, and declares the layout
//! again before it ends.

use crate::support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use palermo::{Options, State, Worker};
use support::{eventually, policy::QueuePolicy, Rig, WAIT};

/// Runs of the jobs of a test.
#[derive(Default)]
struct Runs(AtomicUsize);

#[palermo::job(max_attempts = 1)]
async fn broken(runs: State<Arc<Runs>>) -> anyhow::Result<()> {
    (*runs).0.fetch_add(1, Ordering::SeqCst);
    anyhow::bail!("broken on purpose")
}

/// A rig with a worker of `concurrency` slots consuming, and the runs of its jobs.
async fn consuming(prefix: &str, concurrency: usize) -> (Rig, Arc<Runs>) {
    let rig = Rig::new(prefix).await;
    let runs = Arc::new(Runs::default());
    let mut config = rig.config();
    config.concurrency = concurrency;
    rig.start(Worker::builder(config).state(runs.clone()));
    rig.wait_consuming().await;
    (rig, runs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: deletes broker objects under a worker; run by scripts/test.sh after the other tests"]
async fn a_failed_queue_deleted_mid_run_is_declared_again_and_the_failure_recorded() {
    let (rig, runs) = consuming("heal-failed", 2).await;
    rig.enqueue(Broken {}).await;
    rig.wait_failed(1).await;

    rig.channel
        .queue_delete(rig.failed.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete the failed queue");
    let deleted = Instant::now();
    rig.enqueue(Broken {}).await;
    rig.wait_failed(1).await;
    let recorded = deleted.elapsed();
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(recorded)).await;
    let attempts = runs.0.load(Ordering::SeqCst) - 1;
    println!("failed queue deleted: failure recorded after {recorded:?}, {attempts} run(s) in 5 s");
    assert!(
        attempts < 20,
        "{attempts} runs in the first 5 s: a hot loop"
    );
    assert_eq!(rig.ready(&rig.failed).await, 1);
    assert_eq!(rig.ready(&rig.queue).await, 0);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: sets a broker policy; run by scripts/test.sh after the other tests"]
async fn a_job_whose_failure_cannot_be_stored_is_held_back_not_redelivered_in_a_loop() {
    let (rig, runs) = consuming("heal-held", 4).await;
    // The broker refuses (nacks) every publish to the failed queue.
    let refusing = QueuePolicy::set(
        &rig.failed,
        r#"{"max-length":0,"overflow":"reject-publish"}"#,
    );
    eventually(WAIT, "the policy applies", || async { refusing.applied() }).await;
    rig.enqueue(Broken {}).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let attempts = runs.0.load(Ordering::SeqCst);
    println!("failed queue refusing: {attempts} run(s) in 5 s");
    assert!(
        attempts >= 2,
        "the job was handed back and ran again ({attempts})"
    );
    assert!(attempts < 20, "{attempts} runs in 5 s: a hot loop");
    drop(refusing);
    rig.wait_failed(1).await;
    rig.stop().await;
}

/// Heartbeats in the rig's events queue sent after `since` (ms since the epoch).
async fn beats_since(rig: &Rig, since: i64) -> usize {
    // Nothing queued, or the queue not declared yet (a get on a missing queue closes the
    // rig's channel).
    if rig.ready(&rig.events).await == 0 {
        return 0;
    }
    rig.drain(&rig.events)
        .await
        .iter()
        .filter_map(|(_, body)| serde_json::from_slice::<serde_json::Value>(body).ok())
        .filter(|beat| beat["sent_at"].as_i64().is_some_and(|at| at > since))
        .count()
}

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: deletes broker objects under a worker; run by scripts/test.sh after the other tests"]
async fn heartbeats_come_back_within_two_intervals_after_the_events_exchange_is_deleted() {
    const INTERVAL: Duration = Duration::from_secs(1);
    let rig = Rig::new("heal-events").await;
    let mut config = rig.config();
    config.heartbeat_interval = INTERVAL;
    rig.start(Worker::builder(config));
    eventually(WAIT, "a first heartbeat", || async {
        beats_since(&rig, 0).await > 0
    })
    .await;

    rig.channel
        .exchange_delete(rig.events.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete the events exchange");
    let (deleted, deleted_ms) = (Instant::now(), now_ms());
    eventually(2 * INTERVAL, "a heartbeat after the deletion", || async {
        beats_since(&rig, deleted_ms).await > 0
    })
    .await;
    println!(
        "events exchange deleted: heartbeats back after {:?}",
        deleted.elapsed()
    );
    rig.stop().await;
}

/// Attempts of the flaky jobs of a test, by key.
#[derive(Default)]
struct Attempts(std::sync::Mutex<std::collections::HashMap<String, u32>>);

#[palermo::job(max_attempts = 3, backoff = "1s..1s")]
async fn flaky(key: String, attempts: State<Arc<Attempts>>) -> anyhow::Result<()> {
    let attempt = {
        let mut seen = (*attempts).0.lock().expect("attempts");
        let n = seen.entry(key).or_default();
        *n += 1;
        *n
    };
    anyhow::ensure!(attempt > 1, "the first attempt fails");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: deletes the shared delay layout; run alone, under flock -x /tmp/palermo-broker.lock"]
async fn a_retry_still_happens_after_the_delay_exchanges_are_deleted() {
    let rig = Rig::new("heal-delay").await;
    let attempts = Arc::new(Attempts::default());
    let count = |key: &str| {
        attempts
            .0
            .lock()
            .expect("attempts")
            .get(key)
            .copied()
            .unwrap_or(0)
    };
    rig.start(Worker::builder(rig.config()).state(attempts.clone()));
    // A first retry, so the worker has declared the layout and remembers it; then the
    // layout's exchanges are deleted, and a second job must still be retried.
    for key in ["before", "after"] {
        if key == "after" {
            support::delay::delete_exchanges(&rig.channel).await;
        }
        rig.enqueue(Flaky { key: key.into() }).await;
        let what = format!("the {key} job retried and done");
        eventually(WAIT, &what, || async { count(key) >= 2 }).await;
    }
    rig.wait_queue_empty().await;
    assert_eq!(rig.ready(&rig.failed).await, 0, "nothing failed");
    rig.stop().await;
    // Leave the layout as found, whatever the worker declared.
    support::delay::declare(&rig.channel).await;
}

/// Not disruptive: the AMQP heartbeat Palermo asks for (docs/reliability.md) is what the
/// connection uses, and a URL's own `heartbeat` wins.
#[tokio::test]
async fn connections_ask_for_a_30_s_amqp_heartbeat_unless_the_url_says_otherwise() {
    use palermo::admin::broker::{connect, HEARTBEAT};
    let connection = connect(&support::amqp_url(), "test: heartbeat")
        .await
        .expect("connect");
    assert_eq!(HEARTBEAT, 30);
    assert_eq!(connection.configuration().heartbeat(), HEARTBEAT);
    let _ = connection.close(200, "done".into()).await;
    let url = format!("{}?heartbeat=10", support::amqp_url());
    let connection = connect(&url, "test: heartbeat").await.expect("connect");
    assert_eq!(connection.configuration().heartbeat(), 10);
    let _ = connection.close(200, "done".into()).await;
}

/// Not disruptive (the queue is the test's own): a client whose queue was deleted after it
/// declared it declares it again at the next enqueue instead of failing.
#[tokio::test]
async fn a_client_declares_a_deleted_queue_again_and_the_enqueue_succeeds() {
    let rig = Rig::new("heal-client").await;
    rig.enqueue(Broken {}).await;
    rig.channel
        .queue_delete(rig.queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete the queue");
    rig.client()
        .enqueue_with(Broken {}, Options::new().queue(&rig.queue))
        .await
        .expect("enqueue after the queue was deleted");
    assert_eq!(rig.ready(&rig.queue).await, 1);
}

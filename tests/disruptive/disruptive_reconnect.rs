//! Reconnects. RabbitMQ is restarted under an idle and then a busy worker, a client and a
//! recorder, and each must be working again within seconds of the broker's return; a worker
//! stops cleanly while the broker is down; a connection cut by the broker is made again
//! (tests/disruptive_consumer_timeout.rs covers a channel closed under a running job).
//!
//! Disruptive (broker restarts), so `#[ignore]`d in the normal run and run alone afterwards:
//! `cargo test --test 'disruptive_*' -- --ignored --test-threads=1`. A
//! [`support::BrokerGuard`] starts the broker again even if a test fails.

use crate::support;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use palermo::{Client, Options, State, Worker};
use support::{
    ensure_broker_running, eventually,
    process::{enqueue_sleep, read_log, Running},
    rabbitmqctl, restart_broker, unique, Broker, BrokerGuard, Rig, RunningWorker,
};

/// How soon after the broker is back a new job must have run.
const RESUME_WITHIN: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(30);
/// How long the busy job runs, in milliseconds: longer than a broker restart and reconnection.
const BUSY_MS: u64 = 20_000;

/// Every start and end of a run, by label.
#[derive(Default)]
struct Seen(Mutex<Vec<(String, &'static str)>>);

impl Seen {
    fn note(&self, label: &str, what: &'static str) {
        self.0.lock().expect("lock").push((label.to_string(), what));
    }

    fn count(&self, label: &str, what: &str) -> usize {
        let seen = self.0.lock().expect("lock");
        seen.iter().filter(|s| s.0 == label && s.1 == what).count()
    }
}

/// Holds its slot for `hold_ms`, noting when it starts and ends.
#[palermo::job(max_attempts = 3)]
async fn note(label: String, hold_ms: u64, seen: State<Arc<Seen>>) -> anyhow::Result<()> {
    seen.note(&label, "start");
    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
    seen.note(&label, "done");
    Ok(())
}

/// Fails for good at once, for the recorder to record.
#[palermo::job(name = "reconnect_broken", max_attempts = 1)]
async fn broken() -> anyhow::Result<()> {
    anyhow::bail!("broken on purpose")
}

async fn enqueue_note(client: &Client, queue: &str, label: &str, hold_ms: u64) {
    let job = Note {
        label: label.into(),
        hold_ms,
    };
    client
        .enqueue_with(job, Options::new().queue(queue))
        .await
        .unwrap_or_else(|e| panic!("enqueue {label}: {e}"));
}

async fn done(seen: &Seen, label: &str, times: usize) {
    eventually(WAIT, &format!("{label} done {times} time(s)"), || async {
        seen.count(label, "done") >= times
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: restarts RabbitMQ; run by scripts/test.sh after the other tests"]
async fn worker_client_and_recorder_come_back_after_broker_restarts() {
    let _guard = BrokerGuard::new();
    let before = Broker::connect().await;
    let (queue, failed) = (unique("reconnect"), unique("failed"));
    let mut config = before.worker_config(&[&queue], &failed);
    // One slot for the busy job's first run, one for its redelivered copy, one for the rest.
    config.concurrency = 3;
    config.heartbeat_interval = Duration::from_millis(500);
    let events = config.deployment.events_exchange.clone();
    let seen = Arc::new(Seen::default());
    let start_worker =
        || RunningWorker::start_with(Worker::builder(config.clone()).state(seen.clone()));
    let running = start_worker();
    let client = support::client()
        .await
        .with_reconnect_wait(Duration::from_secs(60));

    let db = std::env::temp_dir().join(format!("palermo-reconnect-{}.db", uuid::Uuid::new_v4()));
    let store = palermo_store::Store::open(&format!("sqlite:{}", db.display()))
        .await
        .expect("store");
    let recorder_config = palermo_store::RecorderConfig {
        deployment: palermo::Deployment {
            failed_queue: failed.clone(),
            events_exchange: events,
            ..support::deployment()
        },
        ..Default::default()
    };
    let recorder = palermo_store::Recorder::connect(store.clone(), recorder_config)
        .await
        .expect("recorder");
    let (stop_recorder, recorder_shutdown) = crate::support::shutdown::channel();
    let recording = tokio::spawn(recorder.run(recorder_shutdown));

    enqueue_note(&client, &queue, "warm-up", 0).await;
    done(&seen, "warm-up", 1).await;

    // An idle worker.
    let away = restart_broker().await;
    let back = Instant::now();
    enqueue_note(&client, &queue, "after-idle", 0).await;
    done(&seen, "after-idle", 1).await;
    let idle = back.elapsed();
    println!("idle worker: RabbitMQ away {away:?}; the next job ran {idle:?} after it was back");
    assert!(idle < RESUME_WITHIN, "took {idle:?}");

    // A busy worker: the running job goes on, cannot be acked, and runs again. It runs for
    // longer than the restart and the worker's reconnection take (a few seconds), so that its
    // redelivered copy arrives while the first run still goes on and runs on another slot.
    // (A copy redelivered after the first run finished is acked without running again, as
    // already run here: also nothing lost, but not what this part shows.)
    enqueue_note(&client, &queue, "busy", BUSY_MS).await;
    eventually(WAIT, "the busy job started", || async {
        seen.count("busy", "start") == 1
    })
    .await;
    let away = restart_broker().await;
    let back = Instant::now();
    enqueue_note(&client, &queue, "after-busy", 0).await;
    done(&seen, "after-busy", 1).await;
    let busy = back.elapsed();
    println!("busy worker: RabbitMQ away {away:?}; the next job ran {busy:?} after it was back");
    assert!(busy < RESUME_WITHIN, "took {busy:?}");
    eventually(
        Duration::from_millis(2 * BUSY_MS) + WAIT,
        "busy done 2 time(s)",
        || async { seen.count("busy", "done") >= 2 },
    )
    .await;

    // While the broker is down: the client fails at once or waits for its return, and the
    // worker still stops promptly and cleanly.
    let stopped = rabbitmqctl(&["stop_app"]).expect("rabbitmqctl stop_app");
    assert!(stopped.status.success(), "stop_app failed");
    let stopping = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), running.stop())
        .await
        .expect("the worker stops while disconnected");
    println!(
        "worker stopped while disconnected in {:?}",
        stopping.elapsed()
    );
    let quick = client.clone().with_reconnect_wait(Duration::ZERO);
    let job = Note {
        label: "refused".into(),
        hold_ms: 0,
    };
    let err = quick
        .enqueue_with(job, Options::new().queue(&queue))
        .await
        .expect_err("no broker");
    assert!(matches!(err, palermo::Error::Unavailable { .. }), "{err}");
    println!("enqueue with the broker down: {err}");
    let patient = {
        let (client, queue) = (client.clone(), queue.clone());
        tokio::spawn(async move { enqueue_note(&client, &queue, "waited", 0).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !patient.is_finished(),
        "an enqueue succeeded with the broker down"
    );
    tokio::task::spawn_blocking(|| {
        let started = rabbitmqctl(&["start_app"]).expect("rabbitmqctl start_app");
        assert!(started.status.success(), "start_app failed");
        ensure_broker_running();
    })
    .await
    .expect("start_app");
    patient.await.expect("the waiting enqueue succeeded");
    let running = start_worker();
    done(&seen, "waited", 1).await;
    assert_eq!(seen.count("refused", "start"), 0);

    // The recorder kept recording through all of it.
    let client = client.with_reconnect_wait(Duration::from_secs(10));
    client
        .enqueue_with(Broken {}, Options::new().queue(&queue))
        .await
        .expect("enqueue");
    eventually(WAIT, "the recorder stored the failure", || async {
        let failures = store
            .list_failures(&Default::default(), Default::default())
            .await
            .expect("list");
        failures.total == 1
    })
    .await;
    // Heartbeats from before and after the restarts were recorded: both worker runs are
    // there, and between them they report every job (the second one's count arrives with
    // its next heartbeat).
    eventually(WAIT, "the recorder heard both workers' counts", || async {
        let workers = store.workers().await.expect("workers");
        workers.len() >= 2 && workers.iter().map(|w| w.processed).sum::<i64>() >= 5
    })
    .await;

    running.stop().await;
    stop_recorder.stop();
    recording
        .await
        .expect("task")
        .expect("recorder ends cleanly");
    store.close().await;
    let _ = std::fs::remove_file(&db);
    let broker = Broker::connect().await;
    broker.adopt(&before);
    broker.cleanup().await;
}

#[tokio::test]
#[ignore = "disruptive: closes broker connections; run by scripts/test.sh after the other tests"]
async fn a_connection_closed_by_the_broker_is_made_again() {
    let rig = Rig::new("cut").await;
    let queue = &rig.queue;
    let path = rig.temp_file("worker.log");
    let worker = Running::spawn(&rig.worker_args(), &path);
    rig.wait_consuming().await;
    // The worker's connection is named after its identity, which holds the queue name.
    let out = rabbitmqctl(&[
        "list_connections",
        "-q",
        "--no-table-headers",
        "pid",
        "client_properties",
    ])
    .expect("rabbitmqctl list_connections");
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let connection = listing
        .lines()
        .find(|line| line.contains(queue.as_str()))
        .and_then(|line| line.split_whitespace().next())
        .expect("the worker's connection");
    let cut = Instant::now();
    let out = rabbitmqctl(&["close_connection", connection, "test: cut"]).expect("close");
    assert!(out.status.success());
    let id = enqueue_sleep(rig.client(), queue, 1).await;
    eventually(WAIT, "the job ran on the new connection", || async {
        read_log(&path)
            .lines()
            .any(|l| l.contains("job done") && l.contains(&id.to_string()))
    })
    .await;
    println!("connection cut: the next job ran {:?} later", cut.elapsed());
    let text = read_log(&path);
    assert_eq!(
        text.matches("lost the broker connection").count(),
        1,
        "the loss is logged once:\n{text}"
    );
    assert!(text.contains("reconnected to the broker"), "{text}");
    assert!(worker.stop(WAIT).await.success());
}

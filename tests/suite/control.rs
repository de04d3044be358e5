//! The control plane against the real broker (docs/admin.md, "Control"): pausing a queue
//! cancels a running worker's consumers and keeps a worker started later from consuming it;
//! resuming starts its jobs; quiet takes no new jobs and stays connected; stop is a graceful
//! stop that ends `Worker::run` with `Ok`. Each test has its own control exchange, so its
//! broadcasts reach only its own workers; its pause markers are deleted with its queues.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use palermo::{control, shutdown, Deployment, State, Worker, WorkerConfig};

use crate::support::{self, eventually, Rig, WAIT};

/// How many `control_count` runs ended, per test.
#[derive(Default)]
struct Runs(AtomicUsize);

#[palermo::job(name = "control_count")]
async fn control_count(runs: State<Arc<Runs>>) -> anyhow::Result<()> {
    runs.0 .0.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// `config` with a control exchange of this test (deleted with its queues), and the
/// deployment an admin uses to reach its workers.
fn with_control(rig: &Rig, mut config: WorkerConfig) -> (WorkerConfig, Deployment) {
    let exchange = support::unique("control");
    rig.owned().exchange(&exchange);
    config.deployment.control_exchange = exchange;
    for queue in &config.queues {
        rig.owned()
            .exchange(&control::pause_marker(&config.deployment, queue));
    }
    let deployment = config.deployment.clone();
    (config, deployment)
}

fn start(
    config: WorkerConfig,
    runs: &Arc<Runs>,
) -> (Worker, shutdown::Trigger, shutdown::Shutdown) {
    let worker = Worker::builder(config)
        .state(runs.clone())
        .build()
        .expect("worker");
    let (trigger, stop) = shutdown::channel();
    (worker, trigger, stop)
}

#[tokio::test]
async fn a_pause_holds_for_running_and_later_workers_until_resumed() {
    let rig = Rig::new("pause").await;
    let other = rig.another_queue("pause-other");
    let (config, deployment) = with_control(&rig, rig.config());
    let runs = Arc::new(Runs::default());
    rig.start(Worker::builder(config.clone()).state(runs.clone()));
    rig.wait_consuming().await;

    let paused_at = Instant::now();
    control::pause(&rig.connection, &deployment, &rig.queue)
        .await
        .expect("pause");
    eventually(WAIT, "no consumer on the paused queue", || async {
        rig.consumers(&rig.queue).await == 0
    })
    .await;
    println!("pause -> no consumer: {:?}", paused_at.elapsed());
    for _ in 0..3 {
        rig.enqueue(ControlCount {}).await;
    }
    assert_eq!(
        rig.ready(&rig.queue).await,
        3,
        "the jobs wait in the paused queue"
    );

    // A worker started after the pause: it consumes its other queue, never the paused one.
    let mut later = config.clone();
    later.queues = vec![rig.queue.clone(), other.clone()];
    rig.start(Worker::builder(later).state(runs.clone()));
    eventually(
        WAIT,
        "the later worker consumes its other queue",
        || async { rig.consumers(&other).await >= 1 },
    )
    .await;
    assert_eq!(
        rig.consumers(&rig.queue).await,
        0,
        "nobody consumes the paused queue"
    );
    assert_eq!(rig.ready(&rig.queue).await, 3);
    assert_eq!(runs.0.load(Ordering::SeqCst), 0);

    let resumed_at = Instant::now();
    control::resume(&rig.connection, &deployment, &rig.queue)
        .await
        .expect("resume");
    eventually(WAIT, "the three jobs ran", || async {
        runs.0.load(Ordering::SeqCst) == 3
    })
    .await;
    println!("resume -> 3 jobs ran: {:?}", resumed_at.elapsed());
    eventually(WAIT, "both workers consume the queue again", || async {
        rig.consumers(&rig.queue).await >= 2
    })
    .await;
    rig.stop().await;
}

#[tokio::test]
async fn quiet_takes_no_new_jobs_and_stop_ends_the_run() {
    let rig = Rig::new("quiet").await;
    let (config, deployment) = with_control(&rig, rig.config());
    let runs = Arc::new(Runs::default());
    let (worker, _trigger, stop) = start(config, &runs);
    let key = control::worker_key(&worker.id().to_string());
    let running = tokio::spawn(worker.run(stop));
    rig.wait_consuming().await;

    control::send(&rig.connection, &deployment, &key, &control::Command::Quiet)
        .await
        .expect("quiet");
    eventually(WAIT, "the quiet worker cancelled its consumers", || async {
        rig.consumers(&rig.queue).await == 0
    })
    .await;
    rig.enqueue(ControlCount {}).await;
    assert_eq!(
        rig.ready(&rig.queue).await,
        1,
        "a quiet worker takes nothing"
    );
    assert!(!running.is_finished(), "a quiet worker stays");

    // A command to another worker's key is not for it.
    let stranger = control::worker_key(&uuid::Uuid::new_v4().to_string());
    control::send(
        &rig.connection,
        &deployment,
        &stranger,
        &control::Command::Stop,
    )
    .await
    .expect("stop another");
    control::send(&rig.connection, &deployment, &key, &control::Command::Stop)
        .await
        .expect("stop");
    let ended = tokio::time::timeout(WAIT, running)
        .await
        .expect("the worker stops")
        .expect("worker task");
    assert!(ended.is_ok(), "a stop command is a clean stop: {ended:?}");
    assert_eq!(runs.0.load(Ordering::SeqCst), 0);
    assert_eq!(
        rig.ready(&rig.queue).await,
        1,
        "the job waits for another worker"
    );
}

/// Pause → no consumer and resume → first job started, 10 times each (docs/admin.md quotes
/// the medians). Run by hand: `cargo test --workspace --test suite -- --ignored
/// control::pause_and_resume_times --nocapture`.
#[tokio::test]
#[ignore]
async fn pause_and_resume_times() {
    let rig = Rig::new("pausetimes").await;
    let (config, deployment) = with_control(&rig, rig.config());
    let runs = Arc::new(Runs::default());
    rig.start(Worker::builder(config).state(runs.clone()));
    rig.wait_consuming().await;
    let (mut pauses, mut resumes) = (Vec::new(), Vec::new());
    for round in 1..=10 {
        let at = Instant::now();
        control::pause(&rig.connection, &deployment, &rig.queue)
            .await
            .expect("pause");
        poll(|| async { rig.consumers(&rig.queue).await == 0 }).await;
        pauses.push(at.elapsed());
        rig.enqueue(ControlCount {}).await;
        let at = Instant::now();
        control::resume(&rig.connection, &deployment, &rig.queue)
            .await
            .expect("resume");
        poll(|| async { runs.0.load(Ordering::SeqCst) == round }).await;
        resumes.push(at.elapsed());
    }
    pauses.sort();
    resumes.sort();
    println!(
        "pause -> no consumer: median {:?} (min {:?}, max {:?}); resume -> job ran: median {:?} (min {:?}, max {:?})",
        pauses[5], pauses[0], pauses[9], resumes[5], resumes[0], resumes[9]
    );
    rig.stop().await;
}

/// Polls every 2 ms (finer than `eventually`, for the measurement).
async fn poll<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

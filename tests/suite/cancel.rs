//! Cancelling jobs against the real broker (docs/admin.md, "Control"): a queued job and a
//! delayed one are acked without running when they are delivered, also by a worker started
//! after the cancellation; a running job is told (`ctx.cancelled()`) and its outcome is
//! cancelled; one that does not listen is dropped after the cancel grace period. Each test has
//! its own control exchange, so its own cancellations stream (deleted with its queues).

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use palermo::{
    control::cancellations,
    middleware::{JobInfo, Middleware, Outcome},
    Deployment, JobContext, Options, State, Worker, WorkerConfig,
};

use crate::support::{self, eventually, Rig, WAIT};

/// Runs started and finished of this test's jobs, and the outcomes middleware saw.
#[derive(Default)]
struct Seen {
    started: AtomicUsize,
    finished: AtomicUsize,
    outcomes: Mutex<Vec<Outcome>>,
}

#[derive(Clone, Default)]
struct Outcomes(Arc<Seen>);

impl Middleware for Outcomes {
    fn after(&self, _job: &JobInfo<'_>, outcome: &Outcome, _elapsed: Duration) {
        self.0
            .outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(outcome.clone());
    }
}

/// Counts its runs; `wait_ms` long, or until cancelled when `listens`.
#[palermo::job(name = "cancel_probe")]
async fn cancel_probe(
    wait_ms: u64,
    listens: bool,
    seen: State<Arc<Seen>>,
    ctx: JobContext,
) -> anyhow::Result<()> {
    seen.started.fetch_add(1, Ordering::SeqCst);
    let wait = tokio::time::sleep(Duration::from_millis(wait_ms));
    if listens {
        tokio::select! {
            () = ctx.cancelled() => assert!(ctx.is_cancelled()),
            () = wait => {}
        }
    } else {
        wait.await;
    }
    seen.finished.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// `config` with a control exchange (and so a cancellations stream) of this test.
fn with_control(rig: &Rig, mut config: WorkerConfig) -> (WorkerConfig, Deployment) {
    let exchange = support::unique("control");
    rig.owned().exchange(&exchange);
    config.deployment.control_exchange = exchange;
    rig.owned()
        .queue(&cancellations::stream_name(&config.deployment));
    let deployment = config.deployment.clone();
    (config, deployment)
}

fn builder(config: WorkerConfig, seen: &Outcomes) -> palermo::WorkerBuilder {
    Worker::builder(config)
        .state(seen.0.clone())
        .middleware(seen.clone())
}

async fn cancel(rig: &Rig, deployment: &Deployment, id: uuid::Uuid) {
    cancellations::cancel(&rig.connection, deployment, &[id], "test")
        .await
        .expect("cancel");
}

#[tokio::test]
async fn a_queued_job_cancelled_before_any_worker_started_is_never_run() {
    let rig = Rig::new("cancel-queued").await;
    let (config, deployment) = with_control(&rig, rig.config());
    let seen = Outcomes::default();
    let cancelled = rig
        .enqueue(CancelProbe {
            wait_ms: 0,
            listens: false,
        })
        .await;
    cancel(&rig, &deployment, cancelled).await;
    let kept = rig
        .enqueue(CancelProbe {
            wait_ms: 0,
            listens: false,
        })
        .await;
    assert_ne!(cancelled, kept);

    // Started after the cancellation: it reads the stream before its first delivery.
    rig.start(builder(config, &seen));
    eventually(WAIT, "the other job ran", || async {
        seen.0.finished.load(Ordering::SeqCst) == 1
    })
    .await;
    rig.wait_queue_empty().await;
    rig.stop().await;
    assert_eq!(
        seen.0.started.load(Ordering::SeqCst),
        1,
        "the cancelled job never ran"
    );
    assert_eq!(rig.ready(&rig.failed).await, 0, "cancelled is not failed");
    assert_eq!(rig.ready(&rig.queue).await, 0, "acked, not requeued");
}

#[tokio::test]
async fn a_delayed_job_cancelled_while_it_waits_is_not_run_when_due() {
    let rig = Rig::new("cancel-delayed").await;
    let (config, deployment) = with_control(&rig, rig.config());
    let seen = Outcomes::default();
    rig.start(builder(config, &seen));
    rig.wait_consuming().await;
    let delayed = Options::new()
        .queue(&rig.queue)
        .delay(Duration::from_secs(2));
    let job = CancelProbe {
        wait_ms: 0,
        listens: false,
    };
    let id = rig
        .client()
        .enqueue_with(job, delayed.clone())
        .await
        .expect("enqueue")
        .id();
    cancel(&rig, &deployment, id).await;
    // A second delayed job, not cancelled, shows when the first came due.
    let job = CancelProbe {
        wait_ms: 0,
        listens: false,
    };
    rig.client()
        .enqueue_with(job, delayed)
        .await
        .expect("enqueue");
    eventually(WAIT, "the job not cancelled ran", || async {
        seen.0.finished.load(Ordering::SeqCst) == 1
    })
    .await;
    rig.wait_queue_empty().await;
    // Both were delivered at the same time; give the cancelled one a moment more to be acked.
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.stop().await;
    assert_eq!(
        seen.0.started.load(Ordering::SeqCst),
        1,
        "the cancelled job never ran"
    );
    assert_eq!(rig.ready(&rig.failed).await, 0);
}

#[tokio::test]
async fn a_running_job_is_told_and_its_outcome_is_cancelled() {
    let rig = Rig::new("cancel-running").await;
    let (config, deployment) = with_control(&rig, rig.config());
    let seen = Outcomes::default();
    rig.start(builder(config, &seen));
    rig.wait_consuming().await;
    let id = rig
        .enqueue(CancelProbe {
            wait_ms: 60_000,
            listens: true,
        })
        .await;
    eventually(WAIT, "the job started", || async {
        seen.0.started.load(Ordering::SeqCst) == 1
    })
    .await;
    let cancelled_at = Instant::now();
    cancel(&rig, &deployment, id).await;
    eventually(WAIT, "the job returned", || async {
        seen.0.finished.load(Ordering::SeqCst) == 1
    })
    .await;
    println!(
        "cancel -> the running job returned: {:?}",
        cancelled_at.elapsed()
    );
    eventually(WAIT, "middleware saw the outcome", || async {
        !seen
            .0
            .outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    })
    .await;
    rig.stop().await;
    let outcomes = seen
        .0
        .outcomes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(
        matches!(&outcomes[..], [Outcome::Cancelled { by, .. }] if by == "test"),
        "{outcomes:?}"
    );
    assert_eq!(rig.ready(&rig.queue).await, 0, "acked, not requeued");
    assert_eq!(rig.ready(&rig.failed).await, 0, "cancelled is not failed");
}

#[tokio::test]
async fn a_running_job_that_does_not_listen_is_dropped_after_the_grace_period() {
    let rig = Rig::new("cancel-grace").await;
    let (mut config, deployment) = with_control(&rig, rig.config());
    config.cancel_grace = Duration::from_millis(500);
    let seen = Outcomes::default();
    rig.start(builder(config, &seen));
    rig.wait_consuming().await;
    let id = rig
        .enqueue(CancelProbe {
            wait_ms: 60_000,
            listens: false,
        })
        .await;
    eventually(WAIT, "the job started", || async {
        seen.0.started.load(Ordering::SeqCst) == 1
    })
    .await;
    let cancelled_at = Instant::now();
    cancel(&rig, &deployment, id).await;
    eventually(WAIT, "the run was dropped", || async {
        !seen
            .0
            .outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    })
    .await;
    let took = cancelled_at.elapsed();
    println!("cancel -> a deaf job dropped: {took:?}");
    assert!(
        took >= Duration::from_millis(500),
        "not before the grace period: {took:?}"
    );
    rig.wait_queue_empty().await;
    rig.stop().await;
    let outcomes = seen
        .0
        .outcomes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(
        matches!(&outcomes[..], [Outcome::Cancelled { .. }]),
        "{outcomes:?}"
    );
    assert_eq!(
        seen.0.finished.load(Ordering::SeqCst),
        0,
        "the run was dropped"
    );
    assert_eq!(rig.ready(&rig.failed).await, 0);
}

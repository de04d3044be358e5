//! Delayed jobs survive a broker restart (on classic queues, or on quorum queues with
//! `PALERMO_TEST_QUEUE_TYPE=quorum`). This restarts RabbitMQ, so it is `#[ignore]`d in the
//! normal run and run alone afterwards (scripts/test.sh):
//! `cargo test --test 'disruptive_*' -- --ignored --test-threads=1`.
//! A [`support::BrokerGuard`] starts the broker again even if the test fails.

use crate::support;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use palermo::{Backoff, JobContext, Options, State, Worker};
use support::{eventually, restart_broker, unique, Broker, BrokerGuard, RunningWorker};

/// How long the jobs wait: longer than the restart, so they are still waiting when the
/// broker comes back.
const DELAY: Duration = Duration::from_secs(12);

/// label → (attempt, when it started) of every run.
#[derive(Default)]
struct Seen(Mutex<Vec<(String, u32, SystemTime)>>);

impl Seen {
    fn record(&self, run: (String, u32, SystemTime)) {
        self.0.lock().expect("lock").push(run);
    }

    fn runs(&self, label: &str) -> Vec<(u32, SystemTime)> {
        let runs = self.0.lock().expect("lock");
        runs.iter()
            .filter(|r| r.0 == label)
            .map(|r| (r.1, r.2))
            .collect()
    }
}

#[palermo::job(max_attempts = 2)]
async fn fails_once(label: String, seen: State<Arc<Seen>>, ctx: JobContext) -> anyhow::Result<()> {
    let run = (label, ctx.attempt, SystemTime::now());
    let fail = run.0 == "retried" && run.1 == 1;
    seen.record(run);
    if fail {
        anyhow::bail!("the first attempt of \"retried\" fails");
    }
    Ok(())
}

fn worker(broker: &Broker, queue: &str, failed: &str, seen: &Arc<Seen>) -> RunningWorker {
    let mut config = broker.worker_config(&[queue], failed);
    config.backoff = Backoff::exponential(DELAY, DELAY).with_jitter(0.0);
    RunningWorker::start_with(Worker::builder(config).state(seen.clone()))
}

#[tokio::test]
#[ignore = "disruptive: restarts RabbitMQ; run by scripts/test.sh after the other tests"]
async fn scheduled_and_retrying_jobs_survive_a_broker_restart_and_still_run() {
    let _guard = BrokerGuard::new();
    let (queue, failed) = (unique("restart"), unique("failed"));
    let seen = Arc::new(Seen::default());

    // A retry: the first attempt fails and its retry waits in the delay queues.
    let client = support::client().await;
    client
        .enqueue_with(
            FailsOnce {
                label: "retried".into(),
            },
            Options::new().queue(&queue),
        )
        .await
        .expect("enqueue");
    let before_restart = Broker::connect().await;
    let running = worker(&before_restart, &queue, &failed, &seen);
    eventually(Duration::from_secs(20), "the first attempt ran", || async {
        !seen.runs("retried").is_empty()
    })
    .await;
    running.stop().await; // the retry is confirmed and the original acked
    let retry_due = seen.runs("retried")[0].1 + DELAY;

    // A scheduled job.
    let scheduled_due = SystemTime::now() + DELAY;
    client
        .enqueue_with(
            FailsOnce {
                label: "scheduled".into(),
            },
            Options::new().queue(&queue).delay(DELAY),
        )
        .await
        .expect("delayed enqueue");

    let away = restart_broker().await;
    println!("RabbitMQ restarted; away for {away:?}");
    assert!(
        SystemTime::now() < scheduled_due,
        "the restart took longer than the delay; make DELAY longer"
    );

    let broker = Broker::connect().await;
    broker.adopt(&before_restart);
    let running = worker(&broker, &queue, &failed, &seen);
    eventually(
        Duration::from_secs(60),
        "both jobs ran after the restart",
        || async { seen.runs("retried").len() == 2 && !seen.runs("scheduled").is_empty() },
    )
    .await;
    running.stop().await;

    let retried = seen.runs("retried");
    assert_eq!(retried[1].0, 2, "the retry is attempt 2");
    for (label, due, started) in [
        ("retry", retry_due, retried[1].1),
        ("scheduled", scheduled_due, seen.runs("scheduled")[0].1),
    ] {
        let late = started
            .duration_since(due)
            .unwrap_or_else(|early| panic!("the {label} ran {:?} early", early.duration()));
        println!("{label}: ran {late:?} after it was due");
        assert!(late < Duration::from_secs(3), "{label} ran {late:?} late");
    }
    assert_eq!(broker.ready(&failed).await, 0);
    broker.cleanup().await;
}

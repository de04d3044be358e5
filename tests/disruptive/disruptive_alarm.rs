//! RabbitMQ's resource alarms (a disk alarm, raised by setting the free-space limit above the
//! free space): no caller hangs, no job is lost or acked twice, and work resumes when the
//! alarm clears. Raising an alarm blocks every publisher on the broker, so these run alone,
//! after the other tests (scripts/test.sh), and only under `flock -x /tmp/palermo-broker.lock`;
//! [`DiskAlarm`] puts the limit back whatever happens.

use crate::admin_support;
use crate::support;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use palermo::{Error, Options, State, Worker};
use support::{alarm::DiskAlarm, eventually, Rig, WAIT};

/// The publish timeout the tests give their clients.
const TIMEOUT: Duration = Duration::from_secs(2);

#[palermo::job(max_attempts = 1)]
async fn noop() -> anyhow::Result<()> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: raises a disk alarm; run by scripts/test.sh after the other tests"]
async fn an_enqueue_during_a_disk_alarm_fails_in_time_naming_the_reason_then_succeeds() {
    let rig = Rig::new("alarm-enqueue").await;
    let client = support::client_with(palermo::ClientConfig {
        publish_timeout: TIMEOUT,
        ..palermo::ClientConfig::new(support::deployment())
    })
    .await;
    let mut alarm = DiskAlarm::raise();

    let started = Instant::now();
    let refused = client
        .enqueue_with(Noop {}, Options::new().queue(&rig.queue))
        .await
        .map(|e| e.id());
    let waited = started.elapsed();
    match &refused {
        Err(Error::Blocked { reason, .. }) => assert!(reason.contains("disk"), "{reason}"),
        other => panic!("expected Error::Blocked, got {other:?}"),
    }
    let message = refused.expect_err("blocked").to_string();
    let again = client
        .enqueue_with(Noop {}, Options::new().queue(&rig.queue))
        .await
        .map(|e| e.id());
    assert!(matches!(again, Err(Error::Blocked { .. })), "{again:?}");
    assert!(
        message.starts_with("RabbitMQ is blocking publishers: low on disk"),
        "{message}"
    );
    assert!(
        waited >= TIMEOUT && waited < TIMEOUT + Duration::from_secs(2),
        "{waited:?}"
    );

    // The CLI says the same and exits 1, within its --timeout.
    let cli = std::process::Command::new(admin_support::palermo_bin())
        .args([
            "--amqp-url",
            &support::amqp_url(),
            "enqueue",
            "noop",
            "--queue",
            &rig.queue,
            "--timeout",
            "1s",
        ])
        .output()
        .expect("run palermo");
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert_eq!(cli.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("RabbitMQ is blocking publishers: low on disk"),
        "{stderr}"
    );

    alarm.clear();
    client
        .enqueue_with(Noop {}, Options::new().queue(&rig.queue))
        .await
        .expect("enqueue after the alarm");
    // Nothing was sent while blocked: exactly the one job is stored.
    // RabbitMQ tells a connection it is blocked only once it publishes: the first enqueue
    // into the alarm (and the CLI's) was sent and is stored now that the alarm cleared; the
    // client's second one, made knowing the block, was never sent.
    let ready = rig.ready(&rig.queue).await;
    assert_eq!(
        ready, 3,
        "the first blocked enqueue, the CLI's and the one after the alarm"
    );
}

/// Start and end of every run, by job number.
#[derive(Default)]
struct Runs(Mutex<Vec<(u32, Instant, Instant)>>);

#[palermo::job(max_attempts = 1)]
async fn numbered(n: u32, ms: u64, runs: State<Arc<Runs>>) -> anyhow::Result<()> {
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(ms)).await;
    (*runs)
        .0
        .lock()
        .expect("runs")
        .push((n, start, Instant::now()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: raises a disk alarm; run by scripts/test.sh after the other tests"]
async fn a_worker_under_a_disk_alarm_stalls_without_losing_or_acking_twice_then_drains() {
    const JOBS: u32 = 2_000;
    let rig = Rig::new("alarm-worker").await;
    let runs = Arc::new(Runs::default());
    let done = || runs.0.lock().expect("runs").len();
    let jobs = (0..JOBS).map(|n| Numbered { n, ms: 20 });
    rig.client()
        .enqueue_many(jobs, Options::new().queue(&rig.queue))
        .await
        .expect("enqueue");
    let mut config = rig.config();
    config.concurrency = 4;
    config.heartbeat_interval = Duration::from_secs(1);
    rig.start(Worker::builder(config).state(runs.clone()));
    eventually(WAIT, "40 jobs done", || async { done() >= 40 }).await;

    let mut alarm = DiskAlarm::raise();
    let raised = Instant::now();
    // Blocked, the worker cannot ack: each slot finishes the job it holds and gets no more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = runs
        .0
        .lock()
        .expect("runs")
        .iter()
        .filter(|r| r.1 > raised + Duration::from_secs(1))
        .count();
    assert!(
        during <= 4,
        "{during} jobs started more than 1 s into the alarm"
    );

    let cleared = alarm.clear();
    eventually(WAIT, "every job done", || async { done() >= JOBS as usize }).await;
    let first = runs
        .0
        .lock()
        .expect("runs")
        .iter()
        .filter(|r| r.1 >= cleared)
        .map(|r| r.2)
        .min();
    let first = first
        .expect("a job ran after the alarm")
        .duration_since(cleared);
    println!("alarm cleared → first job done: {first:?}");
    rig.wait_queue_empty().await;
    rig.stop().await;

    let mut numbers: Vec<u32> = runs.0.lock().expect("runs").iter().map(|r| r.0).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), JOBS as usize, "every job ran");
    assert_eq!(
        done(),
        JOBS as usize,
        "no job ran twice (an ack lost or sent twice would)"
    );
    assert_eq!(rig.ready(&rig.failed).await, 0);
    // The worker said it was blocked in the heartbeats it queued meanwhile.
    let events = rig.drain(&rig.events).await;
    let blocked = events.iter().filter(|(_, body)| {
        serde_json::from_slice::<serde_json::Value>(body)
            .is_ok_and(|v| v["blocked"].as_str().is_some_and(|r| r.contains("disk")))
    });
    assert!(
        blocked.count() >= 1,
        "a heartbeat reports the block ({} events)",
        events.len()
    );
    // ... and the last one (the offline event) its end.
    let last = events
        .last()
        .map(|(_, body)| serde_json::from_slice::<serde_json::Value>(body));
    assert!(
        matches!(&last, Some(Ok(v)) if v["blocked"].is_null()),
        "the last event still reports a block: {last:?}"
    );
}

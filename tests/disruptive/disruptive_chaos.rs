//! The chaos test: no job is lost when worker processes are SIGKILLed at random moments,
//! RabbitMQ restarts in the middle of the run, and then a disk alarm blocks every publisher
//! for a few seconds.
//!
//! A client enqueues 5,000 `record_id` jobs over about forty seconds, reconnecting through
//! the broker restart and waiting out the alarm. Each job appends its id to a file and fsyncs it. A worker process runs
//! them at concurrency 32; it is killed with SIGKILL ten times, each time at a random moment,
//! and started again at once, as a process supervisor would. In a second phase the disk
//! alarm is raised for a few seconds ([`support::alarm::DiskAlarm`]), which blocks the
//! enqueuer and the worker alike. Once the enqueuer is done the last worker
//! drains the queue, and every id the broker confirmed must be in the file at least once.
//! Ids in the file more than once are the at-least-once duplicates (a run that ended but was
//! not acked before its worker died). The test prints one line,
//! `lost=0 duplicates=K jobs=N kills=M broker_restarts=1 alarms=1`, and fails if anything was
//! lost.
//!
//! Disruptive, so `#[ignore]`d in the normal run and run alone afterwards:
//! `cargo test --test 'disruptive_*' -- --ignored --test-threads=1`.

use crate::support;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use palermo::Options;
use support::chaos::{
    lost_and_duplicates, print_log_tail, random, record_id, recorded, started_workers,
};
use support::{process::Running, restart_broker, unique, Broker, BrokerGuard};
use uuid::Uuid;
const JOBS: usize = 5_000;
const KILLS: usize = 10;
/// The kill after which the broker restarts.
const RESTART_AFTER_KILL: usize = 5;
/// How long the disk alarm of the second phase lasts.
const ALARM: Duration = Duration::from_secs(4);
/// How long the last worker may take to drain the queue.
const DRAIN: Duration = Duration::from_secs(90);

/// Starts a worker, appending its log to `log`.
fn spawn_worker(queue: &str, failed: &str, events: &str, log: &Path) -> Running {
    let args = [
        ["--queues", queue],
        ["--failed-queue", failed],
        ["--events-exchange", events],
        ["--concurrency", "32"],
        ["--shutdown-timeout", "5"],
        ["--heartbeat-interval", "1"],
        // Killed workers return their jobs many times over; count them, but keep them. A job
        // comes back at most once per kill (10); 20 is the most quorum queues allow.
        ["--max-redeliveries", "20"],
    ];
    Running::spawn(&args.concat(), log)
}

/// Enqueues `JOBS` jobs at a steady pace; returns the ids the broker confirmed and the
/// number of enqueues that failed (their job may or may not exist).
async fn enqueue_all(queue: String, record: PathBuf) -> (Vec<Uuid>, usize) {
    let client = support::client()
        .await
        .with_reconnect_wait(Duration::from_secs(60));
    let (mut ids, mut errors) = (Vec::with_capacity(JOBS), 0);
    while ids.len() < JOBS {
        match client
            .enqueue_raw(record_id(&queue, &record, 15), Options::new())
            .await
            .map(|e| e.id())
        {
            Ok(id) => ids.push(id),
            Err(e) => {
                errors += 1;
                eprintln!("chaos: enqueue failed, enqueueing another ({e})");
            }
        }
        if ids.len() % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(140)).await;
        }
    }
    (ids, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: SIGKILLs workers and restarts RabbitMQ; run by scripts/test.sh after the other tests"]
async fn no_job_is_lost_when_workers_are_killed_and_the_broker_restarts() {
    let _guard = BrokerGuard::new();
    let before = Broker::connect().await;
    let (queue, failed) = (unique("chaos"), unique("failed"));
    before.track(&[&queue, &failed]);
    let events = before.events_exchange();
    let dir = std::env::temp_dir();
    let record = dir.join(format!("{queue}.ids"));
    let log = dir.join(format!("{queue}.worker.log"));
    let started = Instant::now();

    let enqueuer = tokio::spawn(enqueue_all(queue.clone(), record.clone()));
    let mut worker = spawn_worker(&queue, &failed, &events, &log);
    let mut kills = 0;
    let mut away = Duration::ZERO;
    for round in 1..=KILLS {
        tokio::time::sleep(Duration::from_millis(random(800, 2_500))).await;
        worker.kill();
        kills += 1;
        if round == RESTART_AFTER_KILL {
            // The worker is started again before the broker goes away, so that the restart
            // hits a running worker, which must reconnect on its own.
            worker = spawn_worker(&queue, &failed, &events, &log);
            tokio::time::sleep(Duration::from_millis(random(300, 1_500))).await;
            away = restart_broker().await;
            eprintln!("chaos: RabbitMQ restarted, away for {away:?}");
        } else {
            tokio::time::sleep(Duration::from_millis(random(0, 300))).await;
            worker = spawn_worker(&queue, &failed, &events, &log);
        }
    }
    // Phase two: a disk alarm blocks the enqueuer and the worker for a few seconds.
    let mut alarm = tokio::task::spawn_blocking(support::alarm::DiskAlarm::raise)
        .await
        .expect("raise the alarm");
    tokio::time::sleep(ALARM).await;
    tokio::task::spawn_blocking(move || {
        alarm.clear();
    })
    .await
    .expect("clear the alarm");
    let enqueuing_after_alarm = !enqueuer.is_finished();
    let (ids, enqueue_errors) = enqueuer.await.expect("enqueuer");
    let chaos_done = started.elapsed();

    let deadline = Instant::now() + DRAIN;
    let expected: HashSet<Uuid> = ids.iter().copied().collect();
    let mut seen = recorded(&record);
    while expected.iter().any(|id| !seen.contains_key(id)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        seen = recorded(&record);
    }
    // A worker killed before it set up its signal handlers would die of the SIGTERM.
    let spawned = kills + 1;
    while started_workers(&log) < spawned && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = worker.stop(Duration::from_secs(30)).await;

    let (lost, duplicates) = lost_and_duplicates(&ids, &seen);
    let extra = seen.keys().filter(|id| !expected.contains(id)).count();
    println!(
        "lost={lost} duplicates={duplicates} jobs={} kills={kills} broker_restarts=1 alarms=1",
        ids.len()
    );
    eprintln!(
        "chaos: {:?} in all ({chaos_done:?} of chaos), RabbitMQ away {away:?}, {enqueue_errors} failed enqueues, \
         {extra} recorded ids from failed enqueues; still enqueueing after the alarm: {enqueuing_after_alarm}",
        started.elapsed()
    );

    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let count = |what: &str| text.lines().filter(|l| l.contains(what)).count();
    eprintln!(
        "chaos: {} redelivered runs, {} failed acks; reconnects: {:?}",
        count("redelivered job"),
        count("before its ack") + count("ack failed"),
        text.lines()
            .filter(|l| l.contains("reconnected to the broker"))
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("after=")))
            .collect::<Vec<_>>()
    );

    let broker = Broker::connect().await;
    broker.adopt(&before);
    let in_failed = broker.ready(&failed).await;
    let left = broker.ready(&queue).await;
    broker.cleanup().await;
    if lost > 0 || in_failed > 0 || !status.success() {
        print_log_tail(&text);
    }
    let _ = std::fs::remove_file(&record);
    let _ = std::fs::remove_file(&log);
    assert_eq!(lost, 0, "jobs lost ({left} still queued)");
    assert_eq!(in_failed, 0, "jobs in the failed queue");
    assert!(status.success(), "the last worker exited with {status:?}");
    assert_eq!(ids.len(), JOBS);
}

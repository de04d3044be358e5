//! Retries, snoozes, scheduled jobs and timeouts against the real RabbitMQ: every delay goes
//! through the broker's delay queues, and the worker holds nothing while jobs wait.
//!
//! The workers here use a 1-second backoff without jitter, so delays are exact whole seconds
//! and the suite stays fast. Timing checks allow 1.5 s of lateness ("about a second"), never
//! earliness.

mod admin_support;
mod support;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use lapin::BasicProperties;
use palermo::{
    admin::wire::{header, history},
    Backoff, Job, JobContext, JobError, State, Worker,
};
use support::{amqp_url, eventually, unique, Broker, RunningWorker};
use tokio::sync::Semaphore;

const WAIT: Duration = Duration::from_secs(20);
/// How late a delayed job may start: about a second (rounding to whole seconds, the hops
/// through the delay levels, the worker picking it up on a busy 2-core machine).
const LATE: Duration = Duration::from_millis(1500);

/// One run: its attempt number and when it started.
type Run = (u32, Instant, SystemTime);

/// What the jobs of this file saw, shared through worker state.
#[derive(Default)]
struct Seen {
    /// label → (attempt, when it started) of every run.
    runs: Mutex<HashMap<String, Vec<Run>>>,
    cancelled: AtomicUsize,
    completed: AtomicUsize,
    /// Blocks `hold` jobs until released.
    gate: Gate,
    held: AtomicUsize,
}

struct Gate(Semaphore);

impl Default for Gate {
    fn default() -> Self {
        Gate(Semaphore::new(0))
    }
}

impl Seen {
    fn record(&self, label: &str, attempt: u32) {
        let mut runs = self.runs.lock().expect("lock");
        let run = (attempt, Instant::now(), SystemTime::now());
        runs.entry(label.to_string()).or_default().push(run);
    }

    fn runs(&self, label: &str) -> Vec<Run> {
        let runs = self.runs.lock().expect("lock");
        runs.get(label).cloned().unwrap_or_default()
    }
}

#[palermo::job(max_attempts = 5)]
async fn flaky(label: String, seen: State<Arc<Seen>>, ctx: JobContext) -> anyhow::Result<()> {
    seen.record(&label, ctx.attempt);
    if ctx.attempt < 3 {
        anyhow::bail!("flaky: attempt {} failed", ctx.attempt);
    }
    Ok(())
}

#[palermo::job(max_attempts = 3, backoff = "1s..2s")]
async fn doomed(label: String, seen: State<Arc<Seen>>, ctx: JobContext) -> anyhow::Result<()> {
    seen.record(&label, ctx.attempt);
    anyhow::bail!("doomed: attempt {} of {}", ctx.attempt, ctx.max_attempts)
}

#[palermo::job(max_attempts = 5)]
async fn bad_argument(
    label: String,
    seen: State<Arc<Seen>>,
    ctx: JobContext,
) -> Result<(), JobError> {
    seen.record(&label, ctx.attempt);
    Err(JobError::fail_now(anyhow::anyhow!(
        "user {label:?} does not exist"
    )))
}

#[palermo::job(max_attempts = 2)]
async fn sleepy(label: String, seen: State<Arc<Seen>>, ctx: JobContext) -> Result<(), JobError> {
    seen.record(&label, ctx.attempt);
    if ctx.attempt == 1 {
        return Err(JobError::snooze(Duration::from_secs(2)));
    }
    Ok(())
}

/// Counts a run that was dropped before it finished.
struct CancelGuard(Arc<Seen>, bool);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[palermo::job(max_attempts = 2, timeout = "300ms")]
async fn stuck(label: String, seen: State<Arc<Seen>>, ctx: JobContext) -> anyhow::Result<()> {
    seen.record(&label, ctx.attempt);
    let mut guard = CancelGuard(Arc::clone(&seen), false);
    tokio::time::sleep(Duration::from_secs(30)).await;
    guard.1 = true;
    seen.completed.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[palermo::job(max_attempts = 1)]
async fn scheduled(label: String, seen: State<Arc<Seen>>, ctx: JobContext) -> anyhow::Result<()> {
    seen.record(&label, ctx.attempt);
    Ok(())
}

/// Waits for the gate, so that the worker's slots stay busy.
#[palermo::job(max_attempts = 1)]
async fn hold(payload: String, seen: State<Arc<Seen>>) -> anyhow::Result<()> {
    let _ = payload;
    seen.held.fetch_add(1, Ordering::SeqCst);
    let _permit = seen.gate.0.acquire().await?;
    Ok(())
}

/// A worker on `queue` with its own failed queue and a fast backoff: 1 s, 2 s, 2 s...
fn worker(
    broker: &Broker,
    queue: &str,
    failed: &str,
    concurrency: usize,
    seen: &Arc<Seen>,
) -> RunningWorker {
    let mut config = broker.worker_config(&[queue], failed);
    config.concurrency = concurrency;
    config.backoff =
        Backoff::exponential(Duration::from_secs(1), Duration::from_secs(2)).with_jitter(0.0);
    RunningWorker::start_with(Worker::builder(config).state(seen.clone()))
}

fn headers(props: &BasicProperties) -> lapin::types::FieldTable {
    props.headers().clone().unwrap_or_default()
}

fn header_str(props: &BasicProperties, name: &str) -> Option<String> {
    palermo::admin::wire::get_str(&headers(props), name)
        .ok()
        .flatten()
}

fn header_int(props: &BasicProperties, name: &str) -> Option<i64> {
    palermo::admin::wire::get_int(&headers(props), name)
        .ok()
        .flatten()
}

#[test]
fn the_backoff_option_sets_the_jobs_policy() {
    assert_eq!(
        Doomed::BACKOFF,
        Some(Backoff::exponential(
            Duration::from_secs(1),
            Duration::from_secs(2)
        ))
    );
    assert_eq!(Flaky::BACKOFF, None, "the worker's backoff applies");
    assert_eq!(Stuck::TIMEOUT, Some(Duration::from_millis(300)));
}

#[tokio::test]
async fn a_job_failing_twice_then_succeeding_runs_three_times_with_growing_delays() {
    let broker = Broker::connect().await;
    let (queue, failed) = (unique("flaky"), unique("failed"));
    broker.track(&[&queue, &failed]);
    let seen = Arc::new(Seen::default());
    let running = worker(&broker, &queue, &failed, 2, &seen);
    let client = support::client().await;
    // The worker declares the delay queues at its first delayed publish; let a snooze do it,
    // so that the first retry's delay is not measured with the declarations in it.
    client
        .enqueue_to(
            &queue,
            Sleepy {
                label: "warm-up".into(),
            },
        )
        .await
        .expect("enqueue warm-up");
    eventually(
        WAIT,
        "the warm-up job came back from its snooze",
        || async { seen.runs("warm-up").len() == 2 },
    )
    .await;
    let label = "flaky";
    client
        .enqueue_to(
            &queue,
            Flaky {
                label: label.into(),
            },
        )
        .await
        .expect("enqueue");

    eventually(WAIT, "the third attempt ran", || async {
        seen.runs(label).len() == 3
    })
    .await;
    eventually(WAIT, "the job is acked", || async {
        broker.ready(&queue).await == 0
    })
    .await;
    running.stop().await;

    let runs = seen.runs(label);
    let attempts: Vec<u32> = runs.iter().map(|r| r.0).collect();
    assert_eq!(attempts, [1, 2, 3]);
    let first_gap = runs[1].1 - runs[0].1;
    let second_gap = runs[2].1 - runs[1].1;
    println!("retry delays: {first_gap:?}, {second_gap:?} (backoff 1 s, 2 s)");
    assert!(first_gap >= Duration::from_secs(1), "{first_gap:?}");
    assert!(second_gap >= Duration::from_secs(2), "{second_gap:?}");
    assert!(second_gap > first_gap, "{first_gap:?} then {second_gap:?}");
    assert!(second_gap < Duration::from_secs(2) + LATE, "{second_gap:?}");
    assert_eq!(broker.ready(&failed).await, 0, "nothing failed");
    broker.cleanup().await;
}

#[tokio::test]
async fn a_job_that_always_fails_reaches_the_failed_queue_once_with_its_whole_history() {
    let broker = Broker::connect().await;
    let (queue, failed) = (unique("doomed"), unique("failed"));
    broker.track(&[&queue, &failed]);
    let seen = Arc::new(Seen::default());
    let running = worker(&broker, &queue, &failed, 1, &seen);
    let client = support::client().await;
    let label = "doomed";
    let id = client
        .enqueue_to(
            &queue,
            Doomed {
                label: label.into(),
            },
        )
        .await
        .expect("enqueue");

    eventually(WAIT, "the job reached the failed queue", || async {
        broker.ready(&failed).await == 1
    })
    .await;
    running.stop().await;

    let attempts: Vec<u32> = seen.runs(label).iter().map(|r| r.0).collect();
    assert_eq!(attempts, [1, 2, 3], "three runs, no more");
    let messages = broker.drain(&failed).await;
    assert_eq!(messages.len(), 1, "exactly one failure");
    let (props, _) = &messages[0];
    assert_eq!(
        props.message_id().as_ref().map(|m| m.to_string()),
        Some(id.to_string())
    );
    assert_eq!(header_int(props, header::ATTEMPT), Some(3));
    assert_eq!(header_int(props, header::MAX_ATTEMPTS), Some(3));
    assert_eq!(
        header_str(props, header::GAVE_UP).as_deref(),
        Some("attempts_exhausted")
    );
    assert_eq!(
        header_str(props, header::SOURCE_QUEUE).as_deref(),
        Some(queue.as_str())
    );
    assert_eq!(
        header_str(props, header::ERROR).as_deref(),
        Some("doomed: attempt 3 of 3")
    );
    assert!(
        !headers(props).contains_key("x-death"),
        "broker headers are dropped"
    );
    let history = history::read(&headers(props));
    let summary: Vec<(u32, &str, &str)> = history
        .iter()
        .map(|e| (e.attempt, e.kind.as_str(), e.error.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, "error", "doomed: attempt 1 of 3"),
            (2, "error", "doomed: attempt 2 of 3"),
            (3, "error", "doomed: attempt 3 of 3"),
        ]
    );
    assert!(history.windows(2).all(|w| w[0].at < w[1].at));
    assert_eq!(
        header_int(props, header::FIRST_FAILED_AT),
        Some(history[0].at)
    );
    assert_eq!(header_int(props, header::FAILED_AT), Some(history[2].at));
    assert_eq!(broker.ready(&queue).await, 0);
    broker.cleanup().await;
}

#[tokio::test]
async fn fail_now_skips_the_remaining_attempts() {
    let broker = Broker::connect().await;
    let (queue, failed) = (unique("failnow"), unique("failed"));
    broker.track(&[&queue, &failed]);
    let seen = Arc::new(Seen::default());
    let running = worker(&broker, &queue, &failed, 1, &seen);
    let client = support::client().await;
    let label = "ghost";
    client
        .enqueue_to(
            &queue,
            BadArgument {
                label: label.into(),
            },
        )
        .await
        .expect("enqueue");

    eventually(WAIT, "the job reached the failed queue", || async {
        broker.ready(&failed).await == 1
    })
    .await;
    // A retry would come back after 1 s; give it the chance to show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    running.stop().await;

    assert_eq!(seen.runs(label).len(), 1, "ran once, not retried");
    let messages = broker.drain(&failed).await;
    assert_eq!(messages.len(), 1);
    let (props, _) = &messages[0];
    assert_eq!(
        header_str(props, header::GAVE_UP).as_deref(),
        Some("fail_now")
    );
    assert_eq!(header_int(props, header::ATTEMPT), Some(1));
    assert_eq!(header_int(props, header::MAX_ATTEMPTS), Some(5));
    let history = history::read(&headers(props));
    assert_eq!(history.len(), 1);
    assert!(history[0].error.contains("does not exist"), "{history:?}");
    broker.cleanup().await;
}

#[tokio::test]
async fn a_snooze_runs_the_job_again_later_without_using_an_attempt() {
    let broker = Broker::connect().await;
    let (queue, failed) = (unique("snooze"), unique("failed"));
    broker.track(&[&queue, &failed]);
    let seen = Arc::new(Seen::default());
    let running = worker(&broker, &queue, &failed, 1, &seen);
    let client = support::client().await;
    let label = "sleepy";
    client
        .enqueue_to(
            &queue,
            Sleepy {
                label: label.into(),
            },
        )
        .await
        .expect("enqueue");

    eventually(WAIT, "the job ran again after its snooze", || async {
        seen.runs(label).len() == 2
    })
    .await;
    eventually(WAIT, "the job is acked", || async {
        broker.ready(&queue).await == 0
    })
    .await;
    running.stop().await;

    let runs = seen.runs(label);
    assert_eq!(runs[0].0, 1);
    assert_eq!(runs[1].0, 1, "a snooze is not an attempt");
    let gap = runs[1].1 - runs[0].1;
    println!("snoozed 2 s: ran again after {gap:?}");
    assert!(gap >= Duration::from_secs(2), "{gap:?}");
    assert!(gap < Duration::from_secs(2) + LATE, "{gap:?}");
    assert_eq!(broker.ready(&failed).await, 0, "a snooze is not a failure");
    broker.cleanup().await;
}

#[tokio::test]
async fn scheduled_jobs_start_on_time_and_a_long_delay_does_not_hold_back_a_short_one() {
    let broker = Broker::connect().await;
    let (queue, failed) = (unique("scheduled"), unique("failed"));
    broker.track(&[&queue, &failed]);
    let seen = Arc::new(Seen::default());
    let running = worker(&broker, &queue, &failed, 2, &seen);
    let client = support::client().await;
    let job = |label: &str| Scheduled {
        label: label.into(),
    };

    // In front: a job due in 5 minutes (it will find its queue gone and be dropped). The
    // client's first delayed enqueue declares the delay layout.
    let declare = Instant::now();
    client
        .enqueue_to_in(&queue, job("long"), Duration::from_secs(300))
        .await
        .expect("enqueue long");
    println!(
        "first delayed enqueue (declares the layout): {:?}",
        declare.elapsed()
    );
    let mut due = HashMap::new();
    for secs in [2, 5] {
        let label = format!("in {secs}s");
        due.insert(label.clone(), SystemTime::now() + Duration::from_secs(secs));
        client
            .enqueue_to_in(&queue, job(&label), Duration::from_secs(secs))
            .await
            .expect("enqueue_in");
    }
    // By name, as `palermo enqueue --in 2s` does.
    let raw = palermo::admin::RawJob {
        name: "scheduled".into(),
        queue: queue.clone(),
        format: palermo::Format::Json,
        body: br#"{"label":"raw +2s"}"#.to_vec(),
        max_attempts: None,
    };
    let raw_due = SystemTime::now() + Duration::from_secs(2);
    due.insert("raw +2s".into(), raw_due);
    client
        .enqueue_raw_at(raw, raw_due)
        .await
        .expect("enqueue_raw_at");
    let at = SystemTime::now() + Duration::from_millis(3500);
    due.insert("at +3.5s".into(), at);
    client
        .enqueue_to_at(&queue, job("at +3.5s"), at)
        .await
        .expect("enqueue_at");

    eventually(WAIT, "the short jobs ran", || async {
        due.keys().all(|label| !seen.runs(label).is_empty())
    })
    .await;
    running.stop().await;

    for (label, due) in &due {
        let runs = seen.runs(label);
        assert_eq!(runs.len(), 1, "{label} ran once");
        let started = runs[0].2;
        let late = started.duration_since(*due).unwrap_or_else(|early| {
            panic!("{label} started {:?} early", early.duration());
        });
        println!("{label}: started {late:?} after it was due");
        assert!(late < LATE, "{label} started {late:?} late");
    }
    assert!(seen.runs("long").is_empty());
    broker.cleanup().await;
}

#[tokio::test]
async fn a_timed_out_job_is_cancelled_recorded_as_timed_out_and_retried() {
    let broker = Broker::connect().await;
    let (queue, failed) = (unique("stuck"), unique("failed"));
    broker.track(&[&queue, &failed]);
    let seen = Arc::new(Seen::default());
    let running = worker(&broker, &queue, &failed, 1, &seen);
    let client = support::client().await;
    let label = "stuck";
    client
        .enqueue_to(
            &queue,
            Stuck {
                label: label.into(),
            },
        )
        .await
        .expect("enqueue");

    eventually(WAIT, "both attempts timed out", || async {
        broker.ready(&failed).await == 1
    })
    .await;
    running.stop().await;

    let attempts: Vec<u32> = seen.runs(label).iter().map(|r| r.0).collect();
    assert_eq!(attempts, [1, 2], "retried after the timeout");
    assert_eq!(
        seen.cancelled.load(Ordering::SeqCst),
        2,
        "both runs cancelled"
    );
    assert_eq!(seen.completed.load(Ordering::SeqCst), 0);
    let messages = broker.drain(&failed).await;
    let (props, _) = &messages[0];
    assert_eq!(
        header_str(props, header::ERROR_KIND).as_deref(),
        Some("timeout")
    );
    assert_eq!(
        header_str(props, header::ERROR).as_deref(),
        Some("timed out after 300ms")
    );
    let kinds: Vec<String> = history::read(&headers(props))
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["timeout", "timeout"]);
    broker.cleanup().await;
}

/// The worker's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Unacked messages of `queue`, from `rabbitmqctl` (AMQP does not tell).
fn unacked(queue: &str) -> u32 {
    let output = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages_unacknowledged",
        ])
        .output()
        .expect("rabbitmqctl (the tests run next to the broker)");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(name, _)| *name == queue)
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("queue {queue} not in rabbitmqctl's list: {text}"))
}

#[tokio::test]
async fn while_a_thousand_delayed_jobs_wait_the_worker_holds_only_its_running_jobs() {
    const DELAYED: usize = 1000;
    const CONCURRENCY: usize = 2;
    let payload = "x".repeat(64 * 1024);
    let broker = Broker::connect().await;
    let (queue, failed) = (unique("thousand"), unique("failed"));
    broker.track(&[&queue, &failed]);
    let seen = Arc::new(Seen::default());
    let running = worker(&broker, &queue, &failed, CONCURRENCY, &seen);
    let client = support::client().await;
    // Occupy both slots, so the worker would take more if the broker offered more.
    for _ in 0..CONCURRENCY {
        client
            .enqueue_to(
                &queue,
                Hold {
                    payload: String::new(),
                },
            )
            .await
            .expect("enqueue hold");
    }
    eventually(WAIT, "both slots are busy", || async {
        seen.held.load(Ordering::SeqCst) == CONCURRENCY
    })
    .await;
    let before = rss_kib();

    for _ in 0..DELAYED {
        client
            .enqueue_to_in(
                &queue,
                Hold {
                    payload: payload.clone(),
                },
                Duration::from_secs(30),
            )
            .await
            .expect("enqueue_in");
    }
    let connection = palermo::admin::broker::connect(&amqp_url(), "retries test")
        .await
        .expect("connect");
    let waiting = palermo::admin::delay::waiting(
        &connection,
        palermo::admin::delay::Layout::of(support::queue_type()),
    )
    .await
    .expect("count");
    let _ = connection.close(200, "done".into()).await;
    let after = rss_kib();
    let unacked_now = unacked(&queue);
    println!(
        "{DELAYED} delayed jobs of 64 KiB: {} scheduled in the delay queues, {unacked_now} unacked, \
         memory {before} KiB → {after} KiB",
        waiting.scheduled
    );
    assert!(waiting.scheduled >= DELAYED as u64, "{waiting:?}");
    assert_eq!(
        unacked_now, CONCURRENCY as u32,
        "the worker holds its running jobs only"
    );
    assert_eq!(
        broker.ready(&queue).await,
        0,
        "the delayed jobs are not in the queue yet"
    );
    assert!(
        after < before + 32 * 1024,
        "memory grew from {before} KiB to {after} KiB with {DELAYED} × 64 KiB jobs waiting"
    );

    seen.gate.0.add_permits(CONCURRENCY);
    eventually(WAIT, "the held jobs finish", || async {
        unacked(&queue) == 0
    })
    .await;
    running.stop().await;
    broker.cleanup().await;
}

#[tokio::test]
async fn palermo_enqueue_in_schedules_a_job_and_palermo_queues_counts_it() {
    let broker = Broker::connect().await;
    let admin = admin_support::Admin::new("sqlite").await;
    let queue = unique("cli");
    broker.track(&[&queue]);
    let seen = Arc::new(Seen::default());
    admin_support::palermo_bin(); // built now, not while the delay runs
                                  // Long enough for the `palermo queues` run below to see the job still waiting.
    let delay = Duration::from_secs(8);
    let before = SystemTime::now();
    let args = r#"{"label":"from the cli"}"#;
    let out = admin.palermo(&[
        "enqueue",
        "scheduled",
        "--queue",
        &queue,
        "--args",
        args,
        "--in",
        "8s",
    ]);
    let after = SystemTime::now();
    assert!(out.status.success(), "{}", admin_support::stderr(&out));
    assert!(admin_support::stderr(&out).contains("scheduled for"));
    let rows = admin.json(&["queues", &queue]);
    let layout = palermo::admin::delay::Layout::of(support::queue_type());
    use palermo::admin::delay::Kind;
    let row = |name: &str| {
        rows.as_array()
            .and_then(|rows| rows.iter().find(|r| r["queue"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no row {name} in {rows}"))
    };
    assert!(
        row(&layout.queues_of(Kind::Scheduled))["ready"].as_u64() >= Some(1),
        "{rows}"
    );
    assert!(
        row(&layout.queues_of(Kind::Retry))["ready"]
            .as_u64()
            .is_some(),
        "{rows}"
    );
    assert_eq!(row(&queue)["ready"], 0, "not in its queue yet: {rows}");

    let running = worker(&broker, &queue, &admin.failed, 1, &seen);
    eventually(WAIT, "the scheduled job ran", || async {
        !seen.runs("from the cli").is_empty()
    })
    .await;
    running.stop().await;
    let started = seen.runs("from the cli")[0].2;
    assert!(started >= before + delay, "ran early");
    let late = started.duration_since(after + delay).unwrap_or_default();
    assert!(late < LATE, "ran {late:?} late");

    let out = admin.palermo(&[
        "enqueue",
        "scheduled",
        "--queue",
        &queue,
        "--at",
        "tomorrow",
    ]);
    assert!(!out.status.success());
    assert!(
        admin_support::stderr(&out).contains("--at"),
        "{}",
        admin_support::stderr(&out)
    );
    admin.cleanup(&broker).await;
    broker.cleanup().await;
}

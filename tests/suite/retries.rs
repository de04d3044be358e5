//! Retries, snoozes, scheduled jobs and timeouts against the real RabbitMQ: every delay goes
//! through the broker's delay queues, and the worker holds nothing while jobs wait.
//!
//! The workers here use a 1-second backoff without jitter, so delays are exact whole seconds
//! and the suite stays fast. Timing checks allow 1.5 s of lateness ("about a second"), never
//! earliness.

use crate::admin_support;
use crate::support;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use palermo::{Backoff, Job, JobContext, JobError, Options, State, Worker};
use support::{
    eventually,
    wire::{header, header_int, header_str, headers, history},
    Rig, WAIT,
};
use tokio::sync::Semaphore;
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

#[palermo::job(name = "retries_flaky", max_attempts = 5)]
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

/// Snoozes 2 s on its first run and succeeds on the next. (A snooze uses no attempt, so
/// the attempt cannot tell the runs apart: a job snoozing while `attempt == 1` would snooze
/// forever and leave its last snooze in the shared delay layout when the test ends.)
#[palermo::job(max_attempts = 2)]
async fn sleepy(label: String, seen: State<Arc<Seen>>, ctx: JobContext) -> Result<(), JobError> {
    seen.record(&label, ctx.attempt);
    if seen.runs(&label).len() == 1 {
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

/// Starts a worker on the rig's queue with a fast backoff (1 s, 2 s, 2 s...) and `seen` as
/// its state.
fn start(rig: &Rig, concurrency: usize, seen: &Arc<Seen>) {
    let mut config = rig.config();
    config.concurrency = concurrency;
    config.backoff =
        Backoff::exponential(Duration::from_secs(1), Duration::from_secs(2)).with_jitter(0.0);
    rig.start(Worker::builder(config).state(seen.clone()));
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
    let rig = Rig::new("flaky").await;
    let seen = Arc::new(Seen::default());
    start(&rig, 2, &seen);
    // The worker declares the delay queues at its first delayed publish; let a snooze do it,
    // so that the first retry's delay is not measured with the declarations in it.
    rig.enqueue(Sleepy {
        label: "warm-up".into(),
    })
    .await;
    eventually(
        WAIT,
        "the warm-up job came back from its snooze",
        || async { seen.runs("warm-up").len() == 2 },
    )
    .await;
    let label = "flaky";
    rig.enqueue(Flaky {
        label: label.into(),
    })
    .await;

    eventually(WAIT, "the third attempt ran", || async {
        seen.runs(label).len() == 3
    })
    .await;
    rig.wait_queue_empty().await; // acked
    rig.stop().await;

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
    assert_eq!(rig.ready(&rig.failed).await, 0, "nothing failed");
}

#[tokio::test]
async fn a_job_that_always_fails_reaches_the_failed_queue_once_with_its_whole_history() {
    let rig = Rig::new("doomed").await;
    let queue = &rig.queue;
    let seen = Arc::new(Seen::default());
    let retries = rig.watch_retries(queue).await;
    start(&rig, 1, &seen);
    let label = "doomed";
    let id = rig
        .enqueue(Doomed {
            label: label.into(),
        })
        .await;

    rig.wait_failed(1).await;
    rig.stop().await;

    let attempts: Vec<u32> = seen.runs(label).iter().map(|r| r.0).collect();
    assert_eq!(attempts, [1, 2, 3], "three runs, no more");
    assert_eq!(
        rig.ready(&retries).await,
        2,
        "two retries went through the delay queues"
    );
    let messages = rig.drain(&rig.failed).await;
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
    let history = history(props);
    let summary: Vec<(u32, &str, &str)> = history
        .iter()
        .map(|(attempt, _, kind, error)| (*attempt, kind.as_str(), error.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, "error", "doomed: attempt 1 of 3"),
            (2, "error", "doomed: attempt 2 of 3"),
            (3, "error", "doomed: attempt 3 of 3"),
        ]
    );
    assert!(history.windows(2).all(|w| w[0].1 < w[1].1));
    assert_eq!(
        header_int(props, header::FIRST_FAILED_AT),
        Some(history[0].1)
    );
    assert_eq!(header_int(props, header::FAILED_AT), Some(history[2].1));
    assert_eq!(rig.ready(queue).await, 0);
}

#[tokio::test]
async fn fail_now_skips_the_remaining_attempts() {
    let rig = Rig::new("failnow").await;
    let queue = &rig.queue;
    let seen = Arc::new(Seen::default());
    let retries = rig.watch_retries(queue).await;
    start(&rig, 1, &seen);
    let label = "ghost";
    rig.enqueue(BadArgument {
        label: label.into(),
    })
    .await;

    rig.wait_failed(1).await;
    // Stopped, the worker has acked the job, and a retry is published (and confirmed) before
    // the ack: had there been one, the probe would hold it now, not a second later.
    rig.stop().await;

    assert_eq!(seen.runs(label).len(), 1, "ran once");
    assert_eq!(rig.ready(&retries).await, 0, "no retry was published");
    let messages = rig.drain(&rig.failed).await;
    assert_eq!(messages.len(), 1);
    let (props, _) = &messages[0];
    assert_eq!(
        header_str(props, header::GAVE_UP).as_deref(),
        Some("fail_now")
    );
    assert_eq!(header_int(props, header::ATTEMPT), Some(1));
    assert_eq!(header_int(props, header::MAX_ATTEMPTS), Some(5));
    let history = history(props);
    assert_eq!(history.len(), 1);
    assert!(history[0].3.contains("does not exist"), "{history:?}");
}

#[tokio::test]
async fn a_snooze_runs_the_job_again_later_without_using_an_attempt() {
    let rig = Rig::new("snooze").await;
    let seen = Arc::new(Seen::default());
    start(&rig, 1, &seen);
    let label = "sleepy";
    rig.enqueue(Sleepy {
        label: label.into(),
    })
    .await;

    eventually(WAIT, "the job ran again after its snooze", || async {
        seen.runs(label).len() == 2
    })
    .await;
    rig.wait_queue_empty().await; // acked
    rig.stop().await;

    let runs = seen.runs(label);
    assert_eq!(runs[0].0, 1);
    assert_eq!(runs[1].0, 1, "a snooze is not an attempt");
    let gap = runs[1].1 - runs[0].1;
    println!("snoozed 2 s: ran again after {gap:?}");
    assert!(gap >= Duration::from_secs(2), "{gap:?}");
    assert!(gap < Duration::from_secs(2) + LATE, "{gap:?}");
    assert_eq!(rig.ready(&rig.failed).await, 0, "a snooze is not a failure");
}

#[tokio::test]
async fn scheduled_jobs_start_on_time_and_a_long_delay_does_not_hold_back_a_short_one() {
    let rig = Rig::new("scheduled").await;
    let queue = &rig.queue;
    let seen = Arc::new(Seen::default());
    start(&rig, 2, &seen);
    let client = rig.client();
    let job = |label: &str| Scheduled {
        label: label.into(),
    };

    // In front: a job due in 5 minutes (taken back at the end). The client's first delayed
    // enqueue declares the delay layout.
    let declare = Instant::now();
    let long = client
        .enqueue_with(
            job("long"),
            Options::new().queue(queue).delay(Duration::from_secs(300)),
        )
        .await
        .expect("enqueue long")
        .id();
    println!(
        "first delayed enqueue (declares the layout): {:?}",
        declare.elapsed()
    );
    let mut due = HashMap::new();
    for secs in [2, 5] {
        let label = format!("in {secs}s");
        due.insert(label.clone(), SystemTime::now() + Duration::from_secs(secs));
        client
            .enqueue_with(
                job(&label),
                Options::new().queue(queue).delay(Duration::from_secs(secs)),
            )
            .await
            .expect("delayed enqueue");
    }
    // By name, as `palermo enqueue --in 2s` does.
    let raw = crate::support::RawJob {
        name: "scheduled".into(),
        queue: queue.clone(),
        format: palermo::Format::Json,
        body: br#"{"label":"raw +2s"}"#.to_vec(),
        max_attempts: None,
    };
    let raw_due = SystemTime::now() + Duration::from_secs(2);
    due.insert("raw +2s".into(), raw_due);
    client
        .enqueue_raw(raw, Options::new().at(raw_due))
        .await
        .expect("raw enqueue at a time");
    let at = SystemTime::now() + Duration::from_millis(3500);
    due.insert("at +3.5s".into(), at);
    client
        .enqueue_with(job("at +3.5s"), Options::new().queue(queue).at(at))
        .await
        .expect("enqueue at a time");

    eventually(WAIT, "the short jobs ran", || async {
        due.keys().all(|label| !seen.runs(label).is_empty())
    })
    .await;
    rig.stop().await;

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
    // The delay layout is shared and outlives the test: take the long job back out of its
    // first level (300 s = 256 + 32 + 8 + 4), or in five minutes it would reach a queue
    // that is gone (the quorum layout keeps it as an orphan).
    let ids = std::collections::HashSet::from([long.to_string()]);
    let taken = support::delay::take_back(8, &ids).await;
    assert_eq!(taken, 1, "the long job taken back");
}

#[tokio::test]
async fn a_timed_out_job_is_cancelled_recorded_as_timed_out_and_retried() {
    let rig = Rig::new("stuck").await;
    let seen = Arc::new(Seen::default());
    start(&rig, 1, &seen);
    let label = "stuck";
    rig.enqueue(Stuck {
        label: label.into(),
    })
    .await;

    rig.wait_failed(1).await; // both attempts timed out
    rig.stop().await;

    let attempts: Vec<u32> = seen.runs(label).iter().map(|r| r.0).collect();
    assert_eq!(attempts, [1, 2], "retried after the timeout");
    assert_eq!(
        seen.cancelled.load(Ordering::SeqCst),
        2,
        "both runs cancelled"
    );
    assert_eq!(seen.completed.load(Ordering::SeqCst), 0);
    let messages = rig.drain(&rig.failed).await;
    let (props, _) = &messages[0];
    assert_eq!(
        header_str(props, header::ERROR_KIND).as_deref(),
        Some("timeout")
    );
    assert_eq!(
        header_str(props, header::ERROR).as_deref(),
        Some("timed out after 300ms")
    );
    let kinds: Vec<String> = history(props).into_iter().map(|e| e.2).collect();
    assert_eq!(kinds, ["timeout", "timeout"]);
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
    let output = support::rabbitmqctl(&[
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "messages_unacknowledged",
    ])
    .expect("rabbitmqctl (the tests run next to the broker)");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(name, _)| *name == queue)
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("queue {queue} not in rabbitmqctl's list: {text}"))
}

/// Asks `count` every 200 ms until `enough` says yes or [`WAIT`] is up, and gives its last
/// answer. A quorum queue answers a count within 250 ms or says 0 (RabbitMQ 3.10's
/// `rabbit_quorum_queue:stat`), which a queue just handed 64 MB can miss, and its figures
/// lag: ask again rather than read one answer.
async fn ask_until<F: std::future::Future<Output = u64>>(
    mut count: impl FnMut() -> F,
    enough: impl Fn(u64) -> bool,
) -> u64 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let counted = count().await;
        if enough(counted) || std::time::Instant::now() > deadline {
            return counted;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "measures the process's memory: run alone, `cargo test --test suite -- --ignored`"]
async fn while_a_thousand_delayed_jobs_wait_the_worker_holds_only_its_running_jobs() {
    const DELAYED: usize = 1000;
    const CONCURRENCY: usize = 2;
    let payload = "x".repeat(64 * 1024);
    let rig = Rig::new("thousand").await;
    let queue = &rig.queue;
    let seen = Arc::new(Seen::default());
    start(&rig, CONCURRENCY, &seen);
    let client = rig.client();
    // Occupy both slots, so the worker would take more if the broker offered more.
    for _ in 0..CONCURRENCY {
        rig.enqueue(Hold {
            payload: String::new(),
        })
        .await;
    }
    eventually(WAIT, "both slots are busy", || async {
        seen.held.load(Ordering::SeqCst) == CONCURRENCY
    })
    .await;
    let before = rss_kib();

    // Longer than the test: no job moves between delay levels while they are counted (on
    // quorum queues a job being dead-lettered to the next level is in neither for a moment).
    let mut ids = std::collections::HashSet::new();
    for _ in 0..DELAYED {
        let id = client
            .enqueue_with(
                Hold {
                    payload: payload.clone(),
                },
                Options::new().queue(queue).delay(Duration::from_secs(600)),
            )
            .await
            .expect("delayed enqueue")
            .id();
        ids.insert(id.to_string());
    }
    let scheduled = ask_until(support::delay::scheduled_waiting, |n| n >= DELAYED as u64).await;
    let after = rss_kib();
    // The worker's two running jobs stay unacked throughout, so any other count that lasts
    // is the worker holding more (or fewer) than its running jobs.
    let unacked_now = ask_until(
        || async { u64::from(unacked(queue)) },
        |n| n == CONCURRENCY as u64,
    )
    .await;
    println!(
        "{DELAYED} delayed jobs of 64 KiB: {scheduled} scheduled in the delay queues, \
         {unacked_now} unacked, memory {before} KiB → {after} KiB",
    );
    assert!(scheduled >= DELAYED as u64, "{scheduled} scheduled");
    assert_eq!(
        unacked_now, CONCURRENCY as u64,
        "the worker holds its running jobs only"
    );
    assert_eq!(
        rig.ready(queue).await,
        0,
        "the delayed jobs are not in the queue yet"
    );
    assert!(
        after < before + 32 * 1024,
        "memory grew from {before} KiB to {after} KiB with {DELAYED} × 64 KiB jobs waiting"
    );

    seen.gate.0.add_permits(CONCURRENCY);
    eventually(WAIT, "the held jobs finish", || async {
        unacked(queue) == 0
    })
    .await;
    rig.stop().await;
    // The delay layout is shared and outlives the test: take the jobs back out of their
    // first level (600 s = 512 + 64 + 16 + 8), or in ten minutes they would reach a queue
    // that is gone (the quorum layout keeps them as orphans).
    let taken = support::delay::take_back(9, &ids).await;
    assert_eq!(taken, DELAYED, "delayed jobs taken back");
}

#[tokio::test]
async fn palermo_enqueue_in_schedules_a_job_and_palermo_queues_counts_it() {
    let admin = admin_support::Admin::new("sqlite", "cli").await;
    let (rig, queue) = (&admin.rig, &admin.rig.queue);
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
        queue,
        "--args",
        args,
        "--in",
        "8s",
    ]);
    let after = SystemTime::now();
    assert!(out.status.success(), "{}", admin_support::stderr(&out));
    assert!(admin_support::stderr(&out).contains("scheduled for"));
    let rows = admin.json(&["queues", queue]);
    let row = |name: &str| {
        rows.as_array()
            .and_then(|rows| rows.iter().find(|r| r["queue"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no row {name} in {rows}"))
    };
    assert!(
        row(&support::delay::scheduled_queues())["ready"].as_u64() >= Some(1),
        "{rows}"
    );
    assert!(
        row(&support::delay::retry_queues())["ready"]
            .as_u64()
            .is_some(),
        "{rows}"
    );
    assert_eq!(row(queue)["ready"], 0, "not in its queue yet: {rows}");

    start(rig, 1, &seen);
    eventually(WAIT, "the scheduled job ran", || async {
        !seen.runs("from the cli").is_empty()
    })
    .await;
    rig.stop().await;
    let started = seen.runs("from the cli")[0].2;
    assert!(started >= before + delay, "ran early");
    let late = started.duration_since(after + delay).unwrap_or_default();
    assert!(late < LATE, "ran {late:?} late");

    let out = admin.palermo(&["enqueue", "scheduled", "--queue", queue, "--at", "tomorrow"]);
    assert!(!out.status.success());
    assert!(
        admin_support::stderr(&out).contains("--at"),
        "{}",
        admin_support::stderr(&out)
    );
}

//! Chains against the real broker (docs/workflows.md): steps on two queues run one after the
//! other, each only once the one before it succeeded; a step that fails for good stops the
//! chain in the failed queue, its record (`palermo failed show`, the dashboard) shows the
//! steps after it, and `palermo failed retry` resumes the chain; the testing mode runs chains
//! by the same rules.

use crate::admin_support;
use crate::support;
use crate::web_support;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use palermo::{Error, JobContext, Options, State, Worker};
use support::{eventually, Rig, WAIT};
use uuid::Uuid;

/// One run of a step: its label, job id, queue, attempt, and when it started and ended.
#[derive(Clone, Debug)]
struct Span {
    label: String,
    id: Uuid,
    queue: String,
    ok: bool,
    start: Instant,
    end: Instant,
}

/// What the steps saw, shared through worker state.
#[derive(Default)]
struct Seen {
    spans: Mutex<Vec<Span>>,
    /// Whether `chains_flaky` succeeds (it fails for good until then).
    healed: AtomicBool,
}

impl Seen {
    fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("lock").clone()
    }

    fn labels(&self) -> Vec<String> {
        self.spans()
            .iter()
            .map(|s| format!("{}{}", s.label, if s.ok { "" } else { "!" }))
            .collect()
    }

    fn record(&self, label: &str, ctx: &JobContext, start: Instant, ok: bool) {
        let span = Span {
            label: label.to_string(),
            id: ctx.id,
            queue: ctx.queue.to_string(),
            ok,
            start,
            end: Instant::now(),
        };
        self.spans.lock().expect("lock").push(span);
    }
}

#[palermo::job(name = "chains_step")]
async fn step(
    label: String,
    ms: u64,
    seen: State<Arc<Seen>>,
    ctx: JobContext,
) -> anyhow::Result<()> {
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(ms)).await;
    seen.record(&label, &ctx, start, true);
    Ok(())
}

#[palermo::job(name = "chains_flaky", max_attempts = 1)]
async fn flaky(label: String, seen: State<Arc<Seen>>, ctx: JobContext) -> anyhow::Result<()> {
    let start = Instant::now();
    let healed = seen.healed.load(Ordering::SeqCst);
    seen.record(&label, &ctx, start, healed);
    if !healed {
        anyhow::bail!("{label} is broken until healed");
    }
    Ok(())
}

#[palermo::job(name = "chains_once", max_attempts = 2, backoff = "1s..1s")]
async fn once(label: String, seen: State<Arc<Seen>>, ctx: JobContext) -> anyhow::Result<()> {
    let start = Instant::now();
    seen.record(&label, &ctx, start, ctx.attempt > 1);
    if ctx.attempt == 1 {
        anyhow::bail!("{label} fails its first attempt");
    }
    Ok(())
}

fn step_job(label: &str, ms: u64) -> Step {
    Step {
        label: label.into(),
        ms,
    }
}

#[tokio::test]
async fn three_steps_on_two_queues_run_in_order() {
    let rig = Rig::new("chains").await;
    let other = rig.another_queue("chains-other");
    let seen = Arc::new(Seen::default());
    let mut config = rig.config_for(&[&rig.queue, &other]);
    config.concurrency = 4;
    rig.start(Worker::builder(config).state(seen.clone()));
    let on = |queue: &str| Options::new().queue(queue);
    let chain = rig
        .client()
        .chain()
        .then_with(step_job("a", 300), on(&rig.queue))
        .then_with(step_job("b", 100), on(&other))
        .then_with(step_job("c", 50), on(&rig.queue))
        .enqueue()
        .await
        .expect("enqueue the chain");
    eventually(WAIT, "the three steps ran", || async {
        seen.spans().len() >= 3
    })
    .await;
    // Nothing more follows the last step.
    tokio::time::sleep(Duration::from_millis(500)).await;
    rig.stop().await;
    let spans = seen.spans();
    assert_eq!(seen.labels(), ["a", "b", "c"], "chain {chain}: {spans:#?}");
    let queues: Vec<&str> = spans.iter().map(|s| s.queue.as_str()).collect();
    assert_eq!(queues, [&rig.queue, &other, &rig.queue]);
    for pair in spans.windows(2) {
        assert!(
            pair[1].start >= pair[0].end,
            "{} started before {} ended: {spans:#?}",
            pair[1].label,
            pair[0].label
        );
    }
    let ids: std::collections::HashSet<Uuid> = spans.iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), 3, "each step is a job of its own");
    let ms = |d: Duration| d.as_millis();
    println!(
        "chain {chain}: a {}..{} ms, b {}..{} ms, c {}..{} ms (from a's start)",
        0,
        ms(spans[0].end - spans[0].start),
        ms(spans[1].start - spans[0].start),
        ms(spans[1].end - spans[0].start),
        ms(spans[2].start - spans[0].start),
        ms(spans[2].end - spans[0].start),
    );
    assert_eq!(rig.ready(&rig.queue).await + rig.ready(&other).await, 0);
    assert_eq!(rig.ready(&rig.failed).await, 0);
}

#[tokio::test]
async fn a_failed_step_stops_the_chain_and_its_retry_resumes_it() {
    let admin = admin_support::Admin::new("sqlite", "chains-retry").await;
    let rig = &admin.rig;
    let other = rig.another_queue("chains-after");
    let seen = Arc::new(Seen::default());
    let config = admin.worker_config(&[&rig.queue, &other]);
    rig.start(Worker::builder(config).state(seen.clone()));
    let chain = rig
        .client()
        .chain()
        .then_with(step_job("a", 10), Options::new().queue(&rig.queue))
        .then_with(
            Flaky { label: "b".into() },
            Options::new().queue(&rig.queue),
        )
        .then_with(step_job("c", 10), Options::new().queue(&other))
        .enqueue()
        .await
        .expect("enqueue the chain");
    rig.wait_failed(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen.labels(), ["a", "b!"], "the chain stopped at b");
    assert_eq!(rig.ready(&other).await, 0, "c was not published");

    // The failure record names the chain and the step a retry resumes.
    let list = admin.json(&["failed", "list"]);
    let id = list["failures"][0]["id"]
        .as_str()
        .expect("a failure")
        .to_string();
    let shown = admin.json(&["failed", "show", &id]);
    let recorded = &shown["chain"];
    assert_eq!(recorded["id"], chain.to_string(), "{shown}");
    assert_eq!(
        (recorded["step"].as_u64(), recorded["steps"].as_u64()),
        (Some(2), Some(3))
    );
    let next = recorded["next"].as_array().expect("the steps after b");
    assert_eq!(next.len(), 1, "{recorded}");
    assert_eq!(next[0]["job"], "chains_step");
    assert_eq!(next[0]["queue"], other.as_str());
    assert_eq!(next[0]["args"]["label"], "c");
    let text = admin_support::stdout(&admin.palermo(&["failed", "show", &id]));
    assert!(
        text.contains(&format!("chain {chain}, step 2 of 3"))
            && text.contains("step 3: chains_step on"),
        "{text}"
    );
    let dashboard = web_support::Dashboard::start(&admin, &[]);
    let (status, page) = dashboard.get(&format!("/failed/{id}"));
    assert_eq!(status, 200);
    assert!(
        page.contains(r#"id="failure-chain""#) && page.contains("step 3: chains_step on"),
        "{page}"
    );
    let (status, api) = dashboard.get(&format!("/api/failed/{id}"));
    assert_eq!(status, 200, "{api}");
    assert!(api.contains(&chain.to_string()), "{api}");

    // Retried from the store (what `palermo failed retry` does), b runs again and c follows.
    seen.healed.store(true, Ordering::SeqCst);
    let out = admin.palermo(&["failed", "retry", &id]);
    assert!(out.status.success(), "{}", admin_support::stderr(&out));
    eventually(WAIT, "the chain finished", || async {
        seen.spans().len() >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.stop().await;
    assert_eq!(seen.labels(), ["a", "b!", "b", "c"]);
    let spans = seen.spans();
    assert_eq!(spans[1].id, spans[2].id, "the retry runs the same job id");
    assert!(spans[3].start >= spans[2].end);
    assert_eq!(spans[3].queue, other);
    assert_eq!(rig.ready(&rig.failed).await, 0);
}

/// A step's own retries keep its chain: the retry carries the header, and the chain goes on
/// after the retry succeeded.
#[tokio::test]
async fn a_retried_step_keeps_its_chain() {
    let rig = Rig::new("chains-retried").await;
    let seen = Arc::new(Seen::default());
    rig.start(Worker::builder(rig.config()).state(seen.clone()));
    let on = || Options::new().queue(&rig.queue);
    rig.client()
        .chain()
        .then_with(step_job("a", 0), on())
        .then_with(Once { label: "b".into() }, on())
        .then_with(step_job("c", 0), on())
        .enqueue()
        .await
        .expect("enqueue the chain");
    eventually(WAIT, "the chain finished", || async {
        seen.spans().len() >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.stop().await;
    assert_eq!(seen.labels(), ["a", "b!", "b", "c"]);
    assert_eq!(rig.ready(&rig.failed).await, 0);
}

/// What a crash between the publish of a step and the ack of the step before leaves: the
/// step twice in its queue, under one job id. The worker that runs the first copy acks the
/// second without running it (it remembers the run), so the steps after it run once.
#[tokio::test]
async fn a_step_published_twice_runs_once_on_the_worker_that_ran_it() {
    let rig = Rig::new("chains-twice").await;
    let seen = Arc::new(Seen::default());
    let on = || Options::new().queue(&rig.queue);
    rig.client()
        .chain()
        .then_with(step_job("a", 0), on())
        .then_with(step_job("b", 0), on())
        .enqueue()
        .await
        .expect("enqueue the chain");
    let taken = rig.drain(&rig.queue).await;
    assert_eq!(taken.len(), 1, "only the first step is published");
    let (properties, body) = &taken[0];
    for _ in 0..2 {
        rig.publish_raw(&rig.queue, body, properties.clone()).await;
    }
    let mut config = rig.config();
    config.concurrency = 1;
    rig.start(Worker::builder(config).state(seen.clone()));
    eventually(WAIT, "both steps ran", || async { seen.spans().len() >= 2 }).await;
    rig.wait_queue_empty().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    rig.stop().await;
    assert_eq!(seen.labels(), ["a", "b"], "a's copy was acked unrun");
    assert_eq!(rig.ready(&rig.failed).await, 0, "the copy is no failure");
}

#[tokio::test]
async fn a_chain_too_large_or_empty_is_refused_before_anything_is_published() {
    let rig = Rig::new("chains-refused").await;
    let huge = step_job(&"x".repeat(20_000), 0);
    let refused = rig
        .client()
        .chain()
        .then_with(step_job("a", 0), Options::new().queue(&rig.queue))
        .then_with(huge, Options::new().queue(&rig.queue))
        .enqueue()
        .await;
    assert!(
        matches!(refused, Err(Error::ChainTooLarge { .. })),
        "{refused:?}"
    );
    let empty = rig.client().chain().enqueue().await;
    assert!(matches!(empty, Err(Error::Config(_))), "{empty:?}");
    let locked = rig
        .client()
        .chain()
        .then_with(
            step_job("a", 0),
            Options::new().unique("k", Duration::from_secs(5)),
        )
        .enqueue()
        .await;
    assert!(matches!(locked, Err(Error::Config(_))), "{locked:?}");
    assert_eq!(rig.ready(&rig.queue).await, 0);
}

/// The testing mode runs a chain step by step: the next step only after the one before
/// succeeded, none after a step that failed for good.
#[tokio::test]
async fn the_fake_runs_chains_by_the_same_rules() {
    let seen = Arc::new(Seen::default());
    let fake = palermo::testing::Fake::new().with_state(seen.clone());
    let client = fake.client();
    client
        .chain()
        .then(step_job("a", 0))
        .then(Flaky { label: "b".into() })
        .then(step_job("c", 0))
        .enqueue()
        .await
        .expect("enqueue");
    assert_eq!(fake.count(), 1, "only the first step is enqueued");
    let runs = fake.drain().await;
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["chains_step", "chains_flaky"]);
    assert!(!runs[1].outcome.is_ok() && !runs[1].outcome.runs_again());
    assert_eq!(seen.labels(), ["a", "b!"]);

    seen.healed.store(true, Ordering::SeqCst);
    client
        .chain()
        .then(step_job("d", 0))
        .then_with(
            Flaky { label: "e".into() },
            Options::new().delay(Duration::from_secs(60)),
        )
        .then(step_job("f", 0))
        .enqueue()
        .await
        .expect("enqueue");
    let runs = fake.drain().await;
    assert_eq!(runs.len(), 3);
    assert_eq!(&seen.labels()[2..], ["d", "e", "f"]);
    let waited = runs[1].at.duration_since(runs[0].at).expect("later");
    assert!(
        waited >= Duration::from_secs(60),
        "{waited:?}: e waits its delay after d"
    );
}

/// Counts its runs and wakes the measurement.
#[derive(Default)]
struct Count {
    runs: std::sync::atomic::AtomicUsize,
    ran: tokio::sync::Notify,
}

#[palermo::job(name = "chains_noop")]
async fn noop(n: u32, count: State<Arc<Count>>) -> anyhow::Result<()> {
    let _ = n;
    count.runs.fetch_add(1, Ordering::SeqCst);
    count.ran.notify_one();
    Ok(())
}

/// The overhead of a chain step against a plain job: 1,000 no-op steps (twenty 50-step
/// chains, one after the other: a chain's header holds about a hundred small steps, fewer with the long queue names of the tests) against
/// 1,000 no-op jobs each enqueued once the one before it ran, on one worker. A
/// measurement for docs/workflows.md, not a timed test:
/// `cargo test --workspace --release --test suite -- --ignored --nocapture chains::measure`.
#[tokio::test]
#[ignore = "a measurement, run by hand"]
async fn measure_chain_step_overhead() {
    const STEPS: u32 = 1000;
    let rig = Rig::new("chains-measure").await;
    let count = Arc::new(Count::default());
    rig.start(Worker::builder(rig.config()).state(count.clone()));
    let on = || Options::new().queue(&rig.queue);
    let wait_for = |n: usize| {
        let count = count.clone();
        async move {
            while count.runs.load(Ordering::SeqCst) < n {
                let _ = tokio::time::timeout(Duration::from_millis(50), count.ran.notified()).await;
            }
        }
    };
    // Warm up: the queue declared, the worker's channel busy once.
    rig.client()
        .enqueue_with(Noop { n: 0 }, on())
        .await
        .expect("enqueue");
    wait_for(1).await;

    let started = Instant::now();
    for n in 0..STEPS {
        rig.client()
            .enqueue_with(Noop { n }, on())
            .await
            .expect("enqueue");
        wait_for(2 + n as usize).await;
    }
    let sequential = started.elapsed();

    const CHAIN: u32 = 50;
    let started = Instant::now();
    for _ in 0..STEPS / CHAIN {
        let mut chain = rig.client().chain();
        for n in 0..CHAIN {
            chain = chain.then_with(Noop { n }, on());
        }
        let before = count.runs.load(Ordering::SeqCst);
        chain.enqueue().await.expect("enqueue the chain");
        wait_for(before + CHAIN as usize).await;
    }
    let chained = started.elapsed();
    rig.stop().await;
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / f64::from(STEPS);
    println!(
        "{STEPS} sequential enqueue-and-wait: {sequential:?} ({:.2} ms each); \
         {STEPS} chain steps ({CHAIN}-step chains): {chained:?} ({:.2} ms a step); ratio {:.2}",
        per(sequential),
        per(chained),
        chained.as_secs_f64() / sequential.as_secs_f64()
    );
}

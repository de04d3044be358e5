//! Fleet-wide limits against the real broker (docs/limits.md): worker processes of the test
//! worker binary given `--limit record_span:...`, each run recording its start and end, and
//! the records checked: no more than the limit at once, per key, per window; a job waiting
//! for its limit does not hold up the other jobs of its queue.

use crate::support;

use std::time::{Duration, Instant};

use palermo::{Job, Limit, LimitNames, Rate};
use support::{
    eventually,
    limits::{enqueue_span, max_overlap, slot_held, spans},
    process::Running,
    Rig,
};

/// Long enough for 200 limited jobs on a loaded 2-core machine.
const RECORDED: Duration = Duration::from_secs(180);

/// `n` worker processes at concurrency `c` on the rig's queue, with `--limit limit`.
fn workers(rig: &Rig, n: usize, c: usize, limit: &str, log: &std::path::Path) -> Vec<Running> {
    let mut args: Vec<&str> = rig.worker_args().to_vec();
    let c = c.to_string();
    args.extend(["--concurrency", &c, "--limit", limit]);
    (0..n).map(|_| Running::spawn(&args, log)).collect()
}

async fn wait_recorded(path: &std::path::Path, n: usize) {
    let what = format!("{n} runs recorded");
    eventually(RECORDED, &what, || async { spans(path).len() >= n }).await;
}

#[tokio::test]
async fn three_workers_never_run_more_than_the_concurrency_limit_at_once() {
    let rig = Rig::new("limits-concurrency").await;
    let (record, log) = (rig.temp_file("spans"), rig.temp_file("workers.log"));
    let limit = format!("record_span:concurrency=3,name={}", rig.queue);
    let _workers = workers(&rig, 3, 8, &limit, &log);
    let started = Instant::now();
    for _ in 0..200 {
        enqueue_span(rig.client(), &rig.queue, &record, 30, "").await;
    }
    wait_recorded(&record, 200).await;
    let spans = spans(&record);
    let most = max_overlap(&spans);
    println!(
        "200 jobs, concurrency = 3, 3 workers x 8 slots: at most {most} at once, {:?}",
        started.elapsed()
    );
    assert!(most <= 3, "{most} runs at once; the limit is 3");
    assert!(most >= 2, "the limit let only {most} run at once");
}

#[tokio::test]
async fn per_key_no_two_runs_of_a_key_overlap_while_keys_run_in_parallel() {
    let rig = Rig::new("limits-key").await;
    let (record, log) = (rig.temp_file("spans"), rig.temp_file("workers.log"));
    let limit = format!("record_span:concurrency=1,key=key,name={}", rig.queue);
    let _workers = workers(&rig, 2, 4, &limit, &log);
    let keys = ["a", "b", "c", "d"];
    for _ in 0..10 {
        for key in keys {
            enqueue_span(rig.client(), &rig.queue, &record, 50, key).await;
        }
    }
    wait_recorded(&record, 40).await;
    let spans = spans(&record);
    for key in keys {
        let of_key = spans.iter().filter(|s| s.key == key);
        assert_eq!(max_overlap(of_key), 1, "two runs of key {key} overlapped");
    }
    let most = max_overlap(&spans);
    assert!(most >= 2, "different keys never ran in parallel ({most})");
}

#[tokio::test]
async fn a_rate_of_20_per_second_never_starts_more_than_20_in_any_second() {
    let rig = Rig::new("limits-rate").await;
    let (record, log) = (rig.temp_file("spans"), rig.temp_file("workers.log"));
    rig.track(&[&LimitNames::of(&rig.queue, None).rate()]);
    let limit = format!("record_span:rate=20/s,name={}", rig.queue);
    let _workers = workers(&rig, 2, 4, &limit, &log);
    for _ in 0..200 {
        enqueue_span(rig.client(), &rig.queue, &record, 1, "").await;
    }
    wait_recorded(&record, 200).await;
    let mut starts: Vec<u64> = spans(&record).iter().map(|s| s.start).collect();
    starts.sort_unstable();
    let most = starts
        .iter()
        .enumerate()
        .map(|(i, &t)| starts[i..].iter().take_while(|&&s| s < t + 1000).count())
        .max()
        .unwrap_or(0);
    // The 21st start after each start: at least a second later, if the rate held.
    let closest = starts
        .windows(21)
        .map(|w| w[20] - w[0])
        .min()
        .unwrap_or(u64::MAX);
    let took = starts.last().copied().unwrap_or(0) - starts.first().copied().unwrap_or(0);
    println!(
        "rate 20/s: 200 starts over {took} ms ({:.1}/s), at most {most} in any 1 s window, \
         the 21st start after a start {closest} ms later at the closest",
        200_000.0 / took.max(1) as f64
    );
    assert!(most <= 20, "{most} starts in one second; the rate is 20/s");
    assert!(took >= 9_000, "200 starts at 20/s took only {took} ms");
}

#[tokio::test]
async fn a_job_waiting_for_its_limit_does_not_hold_up_unlimited_jobs() {
    let rig = Rig::new("limits-hol").await;
    let (record, log) = (rig.temp_file("spans"), rig.temp_file("worker.log"));
    let ids = rig.temp_file("ids");
    let limit = format!("record_span:concurrency=1,name={}", rig.queue);
    let _worker = workers(&rig, 1, 2, &limit, &log);
    // One run holds the limit's only slot; twenty more wait, cycling through the queue.
    enqueue_span(rig.client(), &rig.queue, &record, 15_000, "").await;
    let slot = LimitNames::of(&rig.queue, None).slot(0);
    eventually(support::WAIT, "the slot taken", || async {
        slot_held(&rig.connection, &slot).await
    })
    .await;
    for _ in 0..20 {
        enqueue_span(rig.client(), &rig.queue, &record, 1, "").await;
    }
    // Measured once every waiting job went through its first wait (the worker declares the
    // delay queues at its first one): the steady state of jobs cycling while they wait.
    eventually(support::WAIT, "the limited jobs waiting", || async {
        support::process::read_log(&log)
            .matches("limit reached")
            .count()
            >= 20
    })
    .await;
    for n in 1..=10 {
        let job = support::chaos::record_id(&rig.queue, &ids, 0);
        let enqueued = Instant::now();
        rig.client()
            .enqueue_raw(job, palermo::Options::new())
            .await
            .expect("enqueue");
        eventually(support::WAIT, "the unlimited job ran", || async {
            std::fs::read_to_string(&ids)
                .unwrap_or_default()
                .lines()
                .count()
                >= n
        })
        .await;
        let waited = enqueued.elapsed();
        println!("unlimited job {n}: ran {waited:?} after its enqueue");
        assert!(waited < Duration::from_secs(1), "held up for {waited:?}");
        // Spread over the waiting jobs' one-second cycle.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(
        spans(&record).len(),
        0,
        "a limited job ran beside the holder"
    );
}

/// `#[job]`'s limit options become the job's `LIMIT`.
#[palermo::job(concurrency = 2, key = "account", rate = "600/min", limit = "payments")]
async fn limits_macro_job(account: u64) -> anyhow::Result<()> {
    let _ = account;
    Ok(())
}

#[test]
fn the_macro_writes_the_limit() {
    let limit = <LimitsMacroJob as Job>::LIMIT;
    let rate = Rate {
        count: 600,
        per: Duration::from_secs(60),
    };
    assert_eq!(limit.concurrency, Some(2));
    assert_eq!(limit.rate, Some(rate));
    assert_eq!(limit.key.as_deref(), Some("account"));
    assert_eq!(limit.name_for("x"), "payments");
    assert!(limit.validate("limits_macro_job").is_ok());
    assert!(<LimitsUnlimitedJob as Job>::LIMIT.is_none());
    assert_eq!(Limit::NONE, Limit::default());
}

#[palermo::job]
async fn limits_unlimited_job() -> anyhow::Result<()> {
    Ok(())
}

/// Runs of `limits_key_fn_job`: its `n` and its start and end.
static KEYED_RUNS: std::sync::Mutex<Vec<(u64, Instant, Instant)>> =
    std::sync::Mutex::new(Vec::new());

/// The key of a `limits_key_fn_job`: whether its `n` is odd.
fn parity_of(job: &LimitsKeyFnJob) -> String {
    (job.n % 2).to_string()
}

#[palermo::job(max_attempts = 1, concurrency = 1, key_fn = parity_of)]
async fn limits_key_fn_job(n: u64) -> anyhow::Result<()> {
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let mut runs = KEYED_RUNS.lock().unwrap_or_else(|p| p.into_inner());
    runs.push((n, start, Instant::now()));
    Ok(())
}

#[test]
fn a_key_function_computes_the_key_from_the_arguments() {
    let limit = <LimitsKeyFnJob as Job>::LIMIT;
    let key_fn = limit.key_fn.expect("key_fn");
    assert_eq!(key_fn.name, "parity_of");
    assert_eq!(limit.per().as_deref(), Some("parity_of()"));
    let key = |body: &[u8]| (key_fn.compute)(palermo::Format::Json, body);
    assert_eq!(key(br#"{"n": 7}"#).as_deref(), Some("1"));
    assert_eq!(key(br#"{"n": 4}"#).as_deref(), Some("0"));
    assert_eq!(key(b"not json"), None);
    let both = Limit {
        key: Some("n".into()),
        ..limit.clone()
    };
    let err = both
        .validate("limits_key_fn_job")
        .expect_err("key and key_fn");
    assert!(err.to_string().contains("both a key and a key_fn"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_function_no_two_runs_of_a_key_overlap_while_keys_run_in_parallel() {
    let rig = Rig::new("limits-key-fn").await;
    let mut config = rig.config_for(&[&rig.queue]);
    config.concurrency = 6;
    // The job's own limit under this test's name, so that its slots are this test's alone.
    let limit = Limit {
        name: Some(rig.queue.clone().into()),
        ..<LimitsKeyFnJob as Job>::LIMIT
    };
    config.limits.insert("limits_key_fn_job".into(), limit);
    let worker = support::RunningWorker::start_with(palermo::Worker::builder(config));
    let jobs = (0..12).map(|n| LimitsKeyFnJob { n });
    rig.client()
        .enqueue_many(jobs, palermo::Options::new().queue(&rig.queue))
        .await
        .expect("enqueue");
    let done = || KEYED_RUNS.lock().map(|r| r.len()).unwrap_or(0) >= 12;
    eventually(RECORDED, "12 keyed runs", || std::future::ready(done())).await;
    worker.stop().await;
    let runs = KEYED_RUNS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let overlap = |a: &(u64, Instant, Instant), b: &(u64, Instant, Instant)| a.1 < b.2 && b.1 < a.2;
    let mut across = 0;
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            if overlap(a, b) {
                assert_ne!(
                    a.0 % 2,
                    b.0 % 2,
                    "runs {} and {} of one key overlapped",
                    a.0,
                    b.0
                );
                across += 1;
            }
        }
    }
    assert!(across > 0, "the two keys never ran in parallel");
}

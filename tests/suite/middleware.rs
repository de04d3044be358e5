//! Middleware against the real broker: a worker's hooks fire around every run, in order, with
//! each outcome; a header set by the client's middleware reaches the worker's; a refused
//! enqueue is a typed error.

use crate::support;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use palermo::{
    middleware::{Enqueue, EnqueueMiddleware, JobInfo, Middleware, Outcome, Refused},
    Backoff, Error, JobError, Options, State, Worker,
};
use support::{eventually, Rig, WAIT};
use uuid::Uuid;

/// What the worker's middleware saw: per job id, its events in order.
type Log = Arc<Mutex<HashMap<Uuid, Vec<String>>>>;

/// A worker middleware that logs its hooks, labelled, with the tenant header.
struct Recorder(&'static str, Log);

impl Recorder {
    fn push(&self, job: &JobInfo<'_>, event: String) {
        let tenant = job.header("x-tenant").unwrap_or("-");
        let line = format!("{} {tenant} {event}", self.0);
        let mut log = self.1.lock().expect("log");
        log.entry(job.context().id).or_default().push(line);
    }
}

impl Middleware for Recorder {
    fn before(&self, job: &JobInfo<'_>) {
        self.push(job, format!("before #{}", job.context().attempt));
    }
    fn after(&self, job: &JobInfo<'_>, outcome: &Outcome, _elapsed: Duration) {
        let outcome = match outcome {
            Outcome::Retry { .. } => "Retry".to_string(),
            Outcome::Failed { error } => format!("Failed({error})"),
            Outcome::Panicked { message, retry } => format!("Panicked({message}, {retry})"),
            other => format!("{other:?}"),
        };
        self.push(job, format!("after {outcome}"));
    }
}

/// A client middleware stamping the tenant, or refusing when there is none.
struct Tenant(Option<&'static str>);

impl EnqueueMiddleware for Tenant {
    fn on_enqueue(&self, job: &mut Enqueue<'_>) -> Result<(), Refused> {
        let tenant = self.0.ok_or_else(|| Refused::new("no tenant"))?;
        job.set_header("x-tenant", tenant);
        Ok(())
    }
}

#[derive(Default)]
struct Snoozes {
    count: AtomicU32,
}

/// Ends as `mode` says: ok, fail, snooze (once), timeout, panic.
#[palermo::job(timeout = "1s")]
async fn act(mode: String, snoozes: State<Snoozes>) -> Result<(), JobError> {
    match mode.as_str() {
        "fail" => Err(JobError::retry(anyhow::anyhow!("it broke"))),
        "snooze" if snoozes.count.fetch_add(1, Ordering::Relaxed) == 0 => {
            Err(JobError::snooze(Duration::from_secs(1)))
        }
        "timeout" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        }
        "panic" => panic!("boom"),
        _ => Ok(()),
    }
}

/// Fails its first run, succeeds on the retry.
#[palermo::job(max_attempts = 2)]
async fn flaky(ctx: palermo::JobContext) -> anyhow::Result<()> {
    anyhow::ensure!(ctx.attempt > 1, "first run fails");
    Ok(())
}

#[tokio::test]
async fn middleware_fires_in_order_with_each_outcome_and_sees_client_headers() {
    let rig = Rig::new("middleware").await;
    let log = Log::default();
    let mut config = rig.config();
    config.max_attempts = 1;
    config.backoff =
        Backoff::exponential(Duration::from_secs(1), Duration::from_secs(1)).with_jitter(0.0);
    rig.start(
        Worker::builder(config)
            .state(Snoozes::default())
            .middleware(Recorder("outer", log.clone()))
            .middleware(Recorder("inner", log.clone())),
    );
    let client = rig.client().clone().with_middleware(Tenant(Some("acme")));
    let mut ids = HashMap::new();
    for mode in ["ok", "fail", "snooze", "timeout", "panic"] {
        let job = Act { mode: mode.into() };
        let id = client
            .enqueue_with(job, Options::new().queue(&rig.queue))
            .await
            .expect("enqueue")
            .id();
        ids.insert(mode, id);
    }
    ids.insert(
        "flaky",
        client
            .enqueue_with(Flaky {}, Options::new().queue(&rig.queue))
            .await
            .expect("enqueue")
            .id(),
    );

    let expected_events = 4 * 4 + 2 * 8; // one run each, two runs for snooze and flaky
    eventually(WAIT, "every hook fired", || async {
        log.lock()
            .expect("log")
            .values()
            .map(Vec::len)
            .sum::<usize>()
            >= expected_events
    })
    .await;
    rig.stop().await;

    let log = log.lock().expect("log").clone();
    let events = |mode: &str| log.get(&ids[mode]).cloned().unwrap_or_default();
    let around = |attempt: u32, outcome: &str| {
        vec![
            format!("outer acme before #{attempt}"),
            format!("inner acme before #{attempt}"),
            format!("inner acme after {outcome}"),
            format!("outer acme after {outcome}"),
        ]
    };
    assert_eq!(events("ok"), around(1, "Ok"));
    assert_eq!(events("fail"), around(1, "Failed(it broke)"));
    let snoozed = [around(1, "Snoozed { delay: 1s }"), around(1, "Ok")].concat();
    assert_eq!(events("snooze"), snoozed);
    assert_eq!(
        events("timeout"),
        around(1, "TimedOut { timeout: 1s, retry: false }")
    );
    assert_eq!(
        events("panic"),
        around(1, "Panicked(panicked: boom, false)")
    );
    assert_eq!(
        events("flaky"),
        [around(1, "Retry"), around(2, "Ok")].concat()
    );
}

#[tokio::test]
async fn a_refused_enqueue_is_a_typed_error_and_publishes_nothing() {
    let rig = Rig::new("refused").await;
    let client = rig.client().clone().with_middleware(Tenant(None));
    let refused = client
        .enqueue_with(Flaky {}, Options::new().queue(&rig.queue))
        .await
        .map(|e| e.id());
    match refused {
        Err(Error::Refused { job, queue, reason }) => {
            assert_eq!(
                (job.as_str(), queue.as_str()),
                ("flaky", rig.queue.as_str())
            );
            assert_eq!(reason, Refused::new("no tenant"));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Nothing was published: a job enqueued after it is the only one there.
    rig.client()
        .enqueue_with(Act { mode: "ok".into() }, Options::new().queue(&rig.queue))
        .await
        .expect("enqueue");
    let log = Log::default();
    rig.start(
        Worker::builder(rig.config())
            .state(Snoozes::default())
            .middleware(Recorder("only", log.clone())),
    );
    eventually(WAIT, "the job ran", || async {
        log.lock()
            .expect("log")
            .values()
            .flatten()
            .any(|e| e.contains("after Ok"))
    })
    .await;
    rig.stop().await;
    assert_eq!(
        log.lock().expect("log").len(),
        1,
        "one job ran: the refused one was never published"
    );
}

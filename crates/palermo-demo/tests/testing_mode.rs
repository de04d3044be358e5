//! `palermo::testing` on the demo's jobs: what a user's unit tests of their jobs look like.
//! No broker: the fake client records, `drain` and inline mode run the real job functions.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use palermo::{
    middleware::{JobInfo, Middleware, Outcome},
    testing::Fake,
    Backoff, Client, Error, Options, State, WorkerConfig,
};
use palermo_demo::{ChargeCard, Mailer, NotifyWebhook, SendEmail, Webhooks};

fn email(to: &str) -> SendEmail {
    SendEmail {
        to: to.into(),
        subject: "hello".into(),
    }
}

#[tokio::test]
async fn the_fake_records_lists_counts_and_clears() {
    let fake = Fake::new();
    let client = fake.client();
    let id = client.enqueue(email("a@b")).await.expect("enqueue").id();
    client.enqueue(email("c@d")).await.expect("enqueue");
    client
        .enqueue(ChargeCard {
            order_id: 7,
            cents: 990,
        })
        .await
        .expect("enqueue");

    let found = fake.assert_enqueued::<SendEmail>(|job| job.to == "a@b");
    assert_eq!(found.subject, "hello");
    let to: Vec<String> = fake
        .enqueued::<SendEmail>()
        .into_iter()
        .map(|j| j.to)
        .collect();
    assert_eq!(to, ["a@b", "c@d"]);
    assert_eq!(fake.count_of::<SendEmail>(), 2);
    assert_eq!(fake.count_of::<ChargeCard>(), 1);
    assert_eq!(fake.count(), 3);
    let first = &fake.jobs()[0];
    assert_eq!(
        (first.id, first.queue.as_str(), first.due),
        (id, "mail", None)
    );
    assert!(
        first.header("traceparent").is_some(),
        "every enqueue carries a trace context"
    );

    fake.clear();
    assert_eq!(fake.count(), 0);
}

#[tokio::test]
#[should_panic(expected = "no send_email job matching the condition was enqueued")]
async fn assert_enqueued_fails_the_test_when_nothing_matches() {
    let fake = Fake::new();
    fake.client().enqueue(email("a@b")).await.expect("enqueue");
    fake.assert_enqueued::<SendEmail>(|job| job.to == "someone@else");
}

#[tokio::test]
async fn delayed_jobs_keep_their_due_time() {
    let fake = Fake::new();
    let before = SystemTime::now();
    fake.client()
        .enqueue_with(
            email("a@b"),
            Options::new().delay(Duration::from_secs(3600)),
        )
        .await
        .expect("delayed enqueue");
    let due = fake.jobs()[0].due.expect("a due time");
    let wait = due.duration_since(before).expect("in the future");
    // Due times travel in whole milliseconds (the x-palermo-next-run-at header).
    let hour = Duration::from_secs(3600);
    assert!(
        wait + Duration::from_millis(1) >= hour && wait < hour + Duration::from_secs(2),
        "{wait:?}"
    );
}

#[tokio::test]
async fn drain_runs_the_real_jobs_with_their_state() {
    let fake = Fake::new().with_state(Mailer::default());
    let client = fake.client();
    client.enqueue(email("a@b")).await.expect("enqueue");
    client
        .enqueue(email("not an address"))
        .await
        .expect("enqueue");

    let runs = fake.drain().await;
    let outcomes: Vec<_> = runs.iter().map(|r| r.outcome.clone()).collect();
    assert_eq!(outcomes[0], Outcome::Ok);
    assert!(
        matches!(&outcomes[1], Outcome::Failed { error } if error.contains("not an email address")),
        "{outcomes:?}"
    );
    assert_eq!(runs.len(), 2, "fail_now is not retried");
    assert_eq!(fake.count(), 0);
}

#[tokio::test]
async fn drain_follows_retries_and_snoozes_without_waiting() {
    let fake = Fake::new().with_state(Webhooks::default());
    let state = fake.state::<Webhooks>().expect("given");
    state.busy_for(1);
    state.down_for(1);
    fake.client()
        .enqueue(NotifyWebhook { order_id: 42 })
        .await
        .expect("enqueue");

    let started = std::time::Instant::now();
    let runs = fake.drain().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no real waiting"
    );
    let seen: Vec<(u32, &Outcome)> = runs.iter().map(|r| (r.attempt, &r.outcome)).collect();
    assert!(
        matches!(seen[0], (1, Outcome::Snoozed { delay }) if *delay == Duration::from_secs(30))
    );
    assert!(matches!(seen[1], (1, Outcome::Retry { error }) if error.contains("endpoint down")));
    assert_eq!(seen[2], (2, &Outcome::Ok));
    assert_eq!(runs.len(), 3);
    assert_eq!(state.delivered(), 1);
    assert!(
        runs[1].at >= runs[0].at + Duration::from_secs(30),
        "the snooze moved the clock"
    );
    assert!(
        runs[2].at > runs[1].at,
        "the retry waited its backoff, virtually"
    );
}

#[palermo::job(queue = "default")]
async fn place_order(order_id: u64, email: String, client: State<Client>) -> anyhow::Result<()> {
    let subject = format!("order {order_id} confirmed");
    client.enqueue(SendEmail { to: email, subject }).await?;
    client.enqueue(NotifyWebhook { order_id }).await?;
    Ok(())
}

#[tokio::test]
async fn jobs_enqueued_by_jobs_are_drained_too() {
    let fake = Fake::new()
        .with_state(Mailer::default())
        .with_state(Webhooks::default());
    let fake = fake.clone().with_state(fake.client());
    fake.client()
        .enqueue(PlaceOrder {
            order_id: 1,
            email: "a@b".into(),
        })
        .await
        .expect("enqueue");

    let names: Vec<String> = fake.drain().await.into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["place_order", "send_email", "notify_webhook"]);
    assert_eq!(fake.state::<Mailer>().expect("given").sent(), 1);
    assert_eq!(fake.state::<Webhooks>().expect("given").delivered(), 1);
}

#[tokio::test]
async fn inline_mode_runs_the_job_at_enqueue() {
    let fake = Fake::inline().with_state(Mailer::default());
    let client = fake.client();
    client.enqueue(email("a@b")).await.expect("ran inline");
    assert_eq!(
        fake.state::<Mailer>().expect("given").sent(),
        1,
        "ran before enqueue returned"
    );
    assert_eq!(fake.count(), 0);

    let failed = client.enqueue(email("nobody")).await;
    assert!(
        matches!(&failed, Err(Error::InlineJobFailed { job, outcome: Outcome::Failed { .. } }) if job == "send_email"),
        "{failed:?}"
    );
    assert_eq!(fake.runs().len(), 2);
}

/// Fails every run; sleeps `sleep_ms` first.
#[palermo::job]
async fn always_down(sleep_ms: u64) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
    anyhow::bail!("still down")
}

/// Fails every run; two attempts.
#[palermo::job(max_attempts = 2)]
async fn down_twice() -> anyhow::Result<()> {
    anyhow::bail!("down")
}

#[tokio::test]
async fn drain_retries_by_the_applications_retry_settings() {
    let fake = Fake::new();
    fake.client()
        .enqueue(AlwaysDown { sleep_ms: 0 })
        .await
        .expect("enqueue");
    assert_eq!(
        fake.drain().await.len(),
        15,
        "without a config, WorkerConfig::default()'s 15 attempts"
    );

    let mut config = WorkerConfig {
        max_attempts: 3,
        backoff: Backoff::exponential(Duration::from_secs(7), Duration::from_secs(600))
            .with_jitter(0.0),
        ..WorkerConfig::default()
    };
    let fake = Fake::new().with_config(&config);
    fake.client()
        .enqueue(AlwaysDown { sleep_ms: 0 })
        .await
        .expect("enqueue");
    let runs = fake.drain().await;
    let attempts: Vec<u32> = runs.iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [1, 2, 3], "config.max_attempts runs");
    let waits: Vec<Duration> = runs
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at).expect("later"))
        .collect();
    // Due times travel in whole milliseconds (the x-palermo-next-run-at header).
    let secs = |d: &Duration| (d.as_millis() + 500) / 1000;
    assert_eq!(
        waits.iter().map(secs).collect::<Vec<_>>(),
        [7, 14],
        "config.backoff's delays: {waits:?}"
    );
    assert!(matches!(&runs[1].outcome, Outcome::Retry { error } if error == "still down"));
    assert!(matches!(&runs[2].outcome, Outcome::Failed { error } if error == "still down"));
    assert!(!runs[2].outcome.runs_again());

    // A job's own max_attempts comes before the application's.
    fake.client().enqueue(DownTwice {}).await.expect("enqueue");
    assert_eq!(fake.drain().await.len(), 2, "#[job(max_attempts = 2)]");

    config.max_attempts = 1;
    config.job_timeout = Duration::from_millis(20);
    let fake = Fake::new().with_config(&config);
    fake.client()
        .enqueue(AlwaysDown { sleep_ms: 10_000 })
        .await
        .expect("enqueue");
    let runs = fake.drain().await;
    assert_eq!(
        runs.iter().map(|r| &r.outcome).collect::<Vec<_>>(),
        [&Outcome::TimedOut {
            timeout: Duration::from_millis(20),
            retry: false
        }],
        "config.job_timeout"
    );
}

/// Arguments serde writes but cannot read back (NaN becomes JSON `null`).
#[palermo::job]
async fn resize_image(scale: f64) -> anyhow::Result<()> {
    let _ = scale;
    Ok(())
}

#[tokio::test]
async fn an_argument_that_does_not_round_trip_fails_at_enqueue() {
    let fake = Fake::new();
    let refused = fake.client().enqueue(ResizeImage { scale: f64::NAN }).await;
    assert!(
        matches!(&refused, Err(Error::Serialize { job, .. }) if job == "resize_image"),
        "{refused:?}"
    );
    assert_eq!(fake.count(), 0, "nothing recorded");
    fake.client()
        .enqueue(ResizeImage { scale: 0.5 })
        .await
        .expect("a finite scale round-trips");
}

/// Writes what it sees into a shared log.
struct Recorder(&'static str, Arc<Mutex<Vec<String>>>);

impl Middleware for Recorder {
    fn before(&self, job: &JobInfo<'_>) {
        let line = format!(
            "{} before {}#{}",
            self.0,
            job.context().name,
            job.context().attempt
        );
        self.1.lock().expect("log").push(line);
    }
    fn after(&self, _job: &JobInfo<'_>, outcome: &Outcome, _elapsed: Duration) {
        self.1
            .lock()
            .expect("log")
            .push(format!("{} after {outcome:?}", self.0));
    }
}

#[tokio::test]
async fn the_drain_runs_middleware_around_each_run() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let fake = Fake::new()
        .with_state(Webhooks::default())
        .with_middleware(Recorder("outer", log.clone()))
        .with_middleware(Recorder("inner", log.clone()));
    fake.state::<Webhooks>().expect("given").down_for(1);
    fake.client()
        .enqueue(NotifyWebhook { order_id: 3 })
        .await
        .expect("enqueue");
    fake.drain().await;
    let log = log.lock().expect("log").clone();
    assert_eq!(log.len(), 8, "{log:#?}");
    assert_eq!(log[0], "outer before notify_webhook#1");
    assert_eq!(log[1], "inner before notify_webhook#1");
    assert!(log[2].starts_with("inner after Retry"), "{log:#?}");
    assert!(log[3].starts_with("outer after Retry"), "{log:#?}");
    assert_eq!(log[4], "outer before notify_webhook#2");
    assert_eq!(log[6], "inner after Ok");
}

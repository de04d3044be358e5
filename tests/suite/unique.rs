//! Unique jobs against the real RabbitMQ: one job per key while it is queued or running, the
//! duplicate enqueue returning the holder's id; the lock released after success and after a
//! final failure, and expired after its TTL when the holder never finishes; the lock taken
//! on every enqueue path (delayed, at a time, many, raw, with options).

use crate::support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use palermo::{admin::unique::lock_name, Enqueued, Job, Options, State, Worker};
use support::{eventually, Rig, WAIT};
use tokio::sync::Semaphore;

/// What the jobs of this file saw.
struct Seen {
    ran: AtomicUsize,
    /// `held` jobs wait for a permit.
    gate: Semaphore,
}

fn seen() -> Arc<Seen> {
    Arc::new(Seen {
        ran: AtomicUsize::new(0),
        gate: Semaphore::new(0),
    })
}

#[palermo::job]
async fn counted(_label: String, seen: State<Arc<Seen>>) -> anyhow::Result<()> {
    seen.ran.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[palermo::job(max_attempts = 1)]
async fn broken(_label: String, seen: State<Arc<Seen>>) -> anyhow::Result<()> {
    seen.ran.fetch_add(1, Ordering::SeqCst);
    anyhow::bail!("broken on purpose")
}

#[palermo::job]
async fn held(_label: String, seen: State<Arc<Seen>>) -> anyhow::Result<()> {
    seen.ran.fetch_add(1, Ordering::SeqCst);
    let _permit = seen.gate.acquire().await?;
    Ok(())
}

#[palermo::job(unique = "1m")]
async fn deduped(_label: String, seen: State<Arc<Seen>>) -> anyhow::Result<()> {
    seen.ran.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// A key of this test and its lock queue, deleted with the rig's queues.
fn lock_of(rig: &Rig, ttl: Duration) -> (String, String) {
    let key = rig.queue.clone();
    let lock = lock_name(key.as_bytes(), ttl);
    rig.track(&[&lock]);
    (key, lock)
}

async fn ran(seen: &Seen, n: usize) {
    eventually(WAIT, &format!("{n} runs"), || async {
        seen.ran.load(Ordering::SeqCst) >= n
    })
    .await;
}

/// Enqueues `job` on the rig's queue with `key` (the tests' jobs default to `default`).
async fn enqueue<J: Job>(rig: &Rig, job: J, key: &str, ttl: Duration) -> Enqueued {
    rig.client()
        .enqueue_with(job, Options::new().queue(&rig.queue).unique(key, ttl))
        .await
        .expect("unique enqueue")
}

#[tokio::test]
async fn two_concurrent_enqueues_run_one_job_and_the_lock_goes_after_success() {
    let rig = Rig::new("unique-concurrent").await;
    let ttl = Duration::from_secs(60);
    let (key, _lock) = lock_of(&rig, ttl);
    let job = |label: &str| Counted {
        _label: label.into(),
    };
    let (a, b) = tokio::join!(
        enqueue(&rig, job("a"), &key, ttl),
        enqueue(&rig, job("b"), &key, ttl)
    );
    let (new, duplicate) = if a.is_new() { (a, b) } else { (b, a) };
    assert!(new.is_new(), "one of {a:?}, {b:?} is new");
    assert_eq!(duplicate, Enqueued::Duplicate(new.id()));
    assert_eq!(rig.ready(&rig.queue).await, 1, "one job queued");

    let seen = seen();
    rig.start(Worker::builder(rig.config()).state(seen.clone()));
    ran(&seen, 1).await;
    // Released once acked: the next enqueue is new and runs.
    let mut again = enqueue(&rig, job("c"), &key, ttl).await;
    for _ in 0..50 {
        if again.is_new() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        again = enqueue(&rig, job("c"), &key, ttl).await;
    }
    assert!(
        again.is_new(),
        "the lock is released after success: {again:?}"
    );
    ran(&seen, 2).await;
    rig.stop().await;
    assert_eq!(seen.ran.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_lock_goes_after_a_final_failure() {
    let rig = Rig::new("unique-failed").await;
    let ttl = Duration::from_secs(60);
    let (key, _lock) = lock_of(&rig, ttl);
    let first = enqueue(&rig, Broken { _label: "x".into() }, &key, ttl).await;
    assert!(first.is_new());
    let seen = seen();
    rig.start(Worker::builder(rig.config()).state(seen.clone()));
    eventually(WAIT, "the failure in the failed queue", || async {
        rig.ready(&rig.failed).await == 1
    })
    .await;
    let mut again = enqueue(&rig, Broken { _label: "y".into() }, &key, ttl).await;
    for _ in 0..50 {
        if again.is_new() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        again = enqueue(&rig, Broken { _label: "y".into() }, &key, ttl).await;
    }
    assert!(
        again.is_new(),
        "released after the final failure: {again:?}"
    );
    assert_ne!(again.id(), first.id());
    rig.stop().await;
}

#[tokio::test]
async fn a_lock_whose_job_never_finishes_expires_after_its_ttl() {
    let rig = Rig::new("unique-expiry").await;
    let ttl = Duration::from_secs(2);
    let (key, _lock) = lock_of(&rig, ttl);
    let seen = seen();
    rig.start(Worker::builder(rig.config()).state(seen.clone()));
    let first = enqueue(&rig, Held { _label: "1".into() }, &key, ttl).await;
    ran(&seen, 1).await;
    let started = tokio::time::Instant::now();
    let duplicate = enqueue(&rig, Held { _label: "2".into() }, &key, ttl).await;
    assert_eq!(
        duplicate,
        Enqueued::Duplicate(first.id()),
        "held while running"
    );
    let mut later = duplicate;
    while !later.is_new() && started.elapsed() < ttl * 3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        later = enqueue(&rig, Held { _label: "3".into() }, &key, ttl).await;
    }
    assert!(later.is_new(), "expired after the TTL: {later:?}");
    assert!(started.elapsed() >= ttl / 2, "not before its TTL");
    seen.gate.add_permits(2);
    ran(&seen, 2).await;
    rig.stop().await;
}

#[tokio::test]
async fn a_unique_job_enqueued_twice_is_queued_once() {
    let rig = Rig::new("unique-macro").await;
    let label = rig.queue.clone();
    let job = || Deduped {
        _label: label.clone(),
    };
    let body = serde_json::to_vec(&job()).expect("json");
    let key = palermo::admin::unique::default_key(Deduped::NAME, &body);
    let lock = lock_name(&key, Duration::from_secs(60));
    rig.track(&[&lock]);
    let client = rig.client();
    let first = client
        .enqueue_with(job(), Options::new().queue(&rig.queue))
        .await
        .expect("first");
    let second = client
        .enqueue_with(job(), Options::new().queue(&rig.queue))
        .await
        .expect("second");
    assert!(first.is_new());
    assert_eq!(second, Enqueued::Duplicate(first.id()));
    assert_eq!(second.id(), first.id(), "a duplicate gives the holder's id");
    assert_eq!(rig.ready(&rig.queue).await, 1);
    let seen = seen();
    rig.start(Worker::builder(rig.config()).state(seen.clone()));
    ran(&seen, 1).await;
    rig.stop().await;
    assert_eq!(seen.ran.load(Ordering::SeqCst), 1);
}

/// Every enqueue path asks for the lock: a `#[job(unique)]` job delayed, then the same job at
/// a time, now with options and in a batch; a plain job with an options key in a batch,
/// delayed, and raw. Each duplicate names the holder and publishes nothing; the delayed
/// holder carries its lock through the delay queues and gives it back when it has run.
#[tokio::test]
async fn every_enqueue_path_takes_the_lock() {
    let rig = Rig::new("unique-paths").await;
    let on_queue = || Options::new().queue(&rig.queue);
    let deduped = || Deduped {
        _label: rig.queue.clone(),
    };
    let body = serde_json::to_vec(&deduped()).expect("json");
    let default_key = palermo::admin::unique::default_key(Deduped::NAME, &body);
    let job_lock = lock_name(&default_key, Duration::from_secs(60));
    rig.track(&[&job_lock]);
    let ttl = Duration::from_secs(60);
    let (key, _lock) = lock_of(&rig, ttl);
    let client = rig.client();

    // The job's own lock.
    let delayed = client
        .enqueue_with(deduped(), on_queue().delay(Duration::from_secs(1)))
        .await
        .expect("delayed");
    assert!(delayed.is_new(), "{delayed:?}");
    let holder = Enqueued::Duplicate(delayed.id());
    let at = std::time::SystemTime::now() + Duration::from_secs(1);
    let paths = [
        (
            "at",
            client.enqueue_with(deduped(), on_queue().at(at)).await,
        ),
        (
            "with",
            client.enqueue_with(deduped(), on_queue().priority(3)).await,
        ),
    ];
    for (path, enqueued) in paths {
        assert_eq!(enqueued.expect(path), holder, "{path}");
    }
    let many = client
        .enqueue_many([deduped(), deduped()], on_queue())
        .await
        .expect("many");
    assert_eq!(many, [holder, holder], "many");

    // A key given in the options, on a job that is not unique itself.
    let counted = |label: &str| Counted {
        _label: label.into(),
    };
    let many = client
        .enqueue_many([counted("a"), counted("b")], on_queue().unique(&key, ttl))
        .await
        .expect("many with a key");
    let owner = Enqueued::Duplicate(many[0].id());
    assert!(many[0].is_new(), "{many:?}");
    assert_eq!(many[1], owner, "one key for the whole batch");
    let later = on_queue().unique(&key, ttl).delay(Duration::from_secs(1));
    let delayed_dup = client.enqueue_with(counted("c"), later).await;
    assert_eq!(delayed_dup.expect("delayed with a key"), owner);
    let raw = palermo::admin::RawJob {
        name: Counted::NAME.into(),
        queue: rig.queue.clone(),
        format: palermo::Format::Json,
        body: serde_json::to_vec(&counted("d")).expect("json"),
        max_attempts: None,
    };
    let raw = client
        .enqueue_raw(raw, Options::new().unique(&key, ttl))
        .await;
    assert_eq!(raw.expect("raw with a key"), owner);

    // Two jobs exist: the delayed holder (once due) and the batch's first.
    eventually(WAIT, "the delayed holder due in the queue", || async {
        rig.ready(&rig.queue).await == 2
    })
    .await;
    let seen = seen();
    rig.start(Worker::builder(rig.config()).state(seen.clone()));
    ran(&seen, 2).await;
    eventually(WAIT, "the delayed holder's lock given back", || async {
        client
            .enqueue_with(deduped(), on_queue())
            .await
            .expect("again")
            .is_new()
    })
    .await;
    ran(&seen, 3).await;
    rig.stop().await;
    assert_eq!(seen.ran.load(Ordering::SeqCst), 3);
}

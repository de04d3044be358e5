//! Unique jobs against the real RabbitMQ: one job per key while it is queued or running, the
//! duplicate enqueue returning the holder's id; the lock released after success and after a
//! final failure, and expired after its TTL when the holder never finishes.

use crate::support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use palermo::{admin::unique::lock_name, Enqueued, Job, State, Worker};
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
        .enqueue_unique_to(&rig.queue, job, key, ttl)
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
        .enqueue_once_to(&rig.queue, job())
        .await
        .expect("first");
    let second = client
        .enqueue_once_to(&rig.queue, job())
        .await
        .expect("second");
    assert!(first.is_new());
    assert_eq!(second, Enqueued::Duplicate(first.id()));
    let plain = client.enqueue_to(&rig.queue, job()).await.expect("plain");
    assert_eq!(plain, first.id(), "enqueue returns the holder's id");
    assert_eq!(rig.ready(&rig.queue).await, 1);
    let seen = seen();
    rig.start(Worker::builder(rig.config()).state(seen.clone()));
    ran(&seen, 1).await;
    rig.stop().await;
    assert_eq!(seen.ran.load(Ordering::SeqCst), 1);
}

//! One store, many admins: three recorders (`palermo web` processes) on one PostgreSQL store
//! record every failure once and keep workers and statistics exact, also when one crashes
//! between a commit and its ack and another is SIGKILLed mid-run; two admins retrying or removing the same failure at the same moment:
//! one wins, the other is told who was first, and a retried job is published once.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use palermo::Options;
use palermo_store::{Filter, Recorder, RecorderConfig, Requeuer, Store, StoreError};

use crate::{
    admin_support::{Admin, BACKENDS},
    support::eventually,
    web_support::Dashboard,
    AlwaysFails, Seen, WAIT,
};

/// Jobs per half of the run; every third fails (one attempt), straight to the failed queue.
const HALF: u64 = 150;

/// Works a moment, then fails when `n` is a multiple of 3.
#[palermo::job(max_attempts = 1)]
async fn settle(n: u64, seen: palermo::State<Arc<Seen>>) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    seen.ran.fetch_add(1, Ordering::SeqCst);
    if n.is_multiple_of(3) {
        anyhow::bail!("settlement {n} refused");
    }
    Ok(())
}

/// What the store says: open failures, total processed and failed, and the workers.
async fn snapshot(store: &Store) -> (usize, i64, i64, Vec<(String, String)>) {
    let failures = store
        .failure_ids(&Filter::default(), 10_000)
        .await
        .expect("failures");
    let stats = store
        .stats(palermo_store::time::now_ms())
        .await
        .expect("stats");
    let workers = store
        .workers()
        .await
        .expect("workers")
        .into_iter()
        .map(|w| (w.id, w.status))
        .collect();
    (
        failures.len(),
        stats.total.processed,
        stats.total.failed,
        workers,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recorders_on_one_store_record_every_failure_and_count_once_even_when_they_die() {
    let admin = Admin::new("postgres", "admins").await;
    let rig = &admin.rig;
    let store = Store::open(&admin.db.url).await.expect("open the store");

    // Three dashboards, each with its recorder, competing for the failed and events queues.
    // The first crashes right after committing its first failure, before acking it (the
    // test hook of a crash mid-write); the second is SIGKILLed mid-run; the third survives.
    let mut crashing = Dashboard::start(&admin, &["--crash-after-commit"]);
    let killed = Dashboard::start(&admin, &[]);
    let survivor = Dashboard::start(&admin, &[]);
    eventually(WAIT, "three recorders consume both queues", || async {
        rig.consumers(&admin.failed).await == 3 && rig.consumers(&admin.events).await == 3
    })
    .await;

    // Three workers, each a run of its own with its own heartbeats.
    let seen = Arc::new(Seen::default());
    let workers: Vec<_> = (0..3)
        .map(|_| crate::worker(&admin, &[&rig.queue], 4, &seen))
        .collect();
    let client = rig.client();
    client
        .enqueue_many(
            (0..HALF).map(|n| Settle { n }),
            Options::new().queue(&rig.queue),
        )
        .await
        .expect("enqueue the first half");
    let mut crashed = None;
    eventually(
        WAIT,
        "a crash after a commit, and a third of the first half's failures recorded",
        || {
            crashed = crashed.or_else(|| crashing.exited());
            let (done, store) = (crashed.is_some(), &store);
            async move { done && snapshot(store).await.0 >= (HALF / 3 / 3) as usize }
        },
    )
    .await;
    assert_eq!(
        crashed.and_then(|status| status.code()),
        Some(70),
        "the first dashboard died between a commit and its ack; its log:\n{}",
        crashing.log_text()
    );

    // Another dies mid-run: what it took and did not ack goes to the survivor.
    drop(killed);
    client
        .enqueue_many(
            (HALF..2 * HALF).map(|n| Settle { n }),
            Options::new().queue(&rig.queue),
        )
        .await
        .expect("enqueue the second half");
    eventually(WAIT, "every job ran", || async {
        seen.ran.load(Ordering::SeqCst) == 2 * HALF as usize
    })
    .await;
    let worker_count = workers.len();
    for worker in workers {
        worker.stop().await;
    }
    let (failures, processed, failed) = ((2 * HALF / 3) as usize, 2 * HALF as i64, 2 * HALF / 3);
    eventually(
        WAIT,
        "the surviving recorder recorded everything",
        || async {
            let (f, p, _, w) = snapshot(&store).await;
            f >= failures
                && p >= processed
                && w.len() == worker_count
                && w.iter().all(|(_, s)| s == "stopped")
        },
    )
    .await;

    // Stop it, record what is left with the CLI (a third recorder), and compare exactly: a
    // failure or an increment recorded twice would show here.
    assert!(
        survivor.stop(WAIT).success(),
        "the surviving dashboard stops cleanly"
    );
    admin.json(&["workers"]);
    let (f, p, fl, w) = snapshot(&store).await;
    assert_eq!(f, failures, "each failure recorded once");
    assert_eq!((p, fl), (processed, failed as i64), "exact statistics");
    assert_eq!(w.len(), worker_count, "each worker listed once: {w:?}");
    assert!(w.iter().all(|(_, status)| status == "stopped"), "{w:?}");
    assert_eq!(rig.ready(&admin.failed).await, 0);
    store.close().await;
}

/// Two admins: their own store pool, broker connection and actor name.
struct TwoAdmins {
    recorders: [Recorder; 2],
}

impl TwoAdmins {
    async fn connect(admin: &Admin) -> TwoAdmins {
        let one = || async {
            let store = Store::open(&admin.db.url).await.expect("open the store");
            let config = RecorderConfig {
                deployment: palermo::Deployment {
                    failed_queue: admin.failed.clone(),
                    events_exchange: admin.events.clone(),
                    ..crate::support::deployment()
                },
                ..RecorderConfig::default()
            };
            Recorder::connect(store, config).await.expect("recorder")
        };
        TwoAdmins {
            recorders: [one().await, one().await],
        }
    }

    async fn requeuer(&self, which: usize) -> Requeuer<'_> {
        let recorder = &self.recorders[which];
        let deployment = crate::support::deployment();
        Requeuer::new(
            recorder.store(),
            recorder.connection(),
            ACTORS[which],
            &deployment,
        )
        .await
        .expect("requeuer")
    }
}

const ACTORS: [&str; 2] = ["admin-ada", "admin-bob"];

/// Of two results of racing actions, exactly one succeeded and the other names the winner.
fn one_wins<T: std::fmt::Debug>(results: [Result<T, StoreError>; 2], what: &str) -> usize {
    let winner = results
        .iter()
        .position(Result::is_ok)
        .unwrap_or_else(|| panic!("{what}: nobody won: {results:?}"));
    let loser = &results[1 - winner];
    let Err(StoreError::Rejected(rejections)) = loser else {
        panic!("{what}: both won, or the loser failed otherwise: {results:?}");
    };
    let reason = &rejections[0].reason;
    assert!(
        reason.starts_with("already ") && reason.contains(&format!("by {}", ACTORS[winner])),
        "{what}: the loser is told who was first: {reason:?}"
    );
    winner
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_admins_acting_on_one_failure_at_once_one_wins_and_a_retry_is_published_once() {
    const N: u64 = 12;
    for backend in BACKENDS {
        let admin = Admin::new(backend, "race").await;
        let rig = &admin.rig;
        let seen = Arc::new(Seen::default());
        let running = crate::worker(&admin, &[&rig.queue], 2, &seen);
        rig.client()
            .enqueue_many(
                (0..N).map(|n| AlwaysFails { n }),
                Options::new().queue(&rig.queue),
            )
            .await
            .expect("enqueue");
        rig.wait_failed(N as u32).await;
        running.stop().await;
        let admins = TwoAdmins::connect(&admin).await;
        admins.recorders[0].drain().await.expect("record");
        let mut ids = admins.recorders[0]
            .store()
            .failure_ids(&Filter::default(), 100)
            .await
            .expect("ids");
        ids.sort();
        assert_eq!(ids.len(), N as usize);

        let retried = AtomicUsize::new(0);
        let (mut ada, mut bob) = (admins.requeuer(0).await, admins.requeuer(1).await);
        for (i, id) in ids.iter().enumerate() {
            let one = std::slice::from_ref(id);
            let what = format!("{backend}: failure {i}");
            match i % 3 {
                // Both retry it.
                0 => {
                    let (a, b) = tokio::join!(ada.retry(one), bob.retry(one));
                    one_wins([a, b], &what);
                    retried.fetch_add(1, Ordering::SeqCst);
                }
                // One retries, the other removes.
                1 => {
                    let (a, b) = tokio::join!(
                        ada.retry(one),
                        admins.recorders[1].store().remove(one, ACTORS[1])
                    );
                    if one_wins([a.map(|_| ()), b.map(|_| ())], &what) == 0 {
                        retried.fetch_add(1, Ordering::SeqCst);
                    }
                }
                // Both remove it.
                _ => {
                    let (a, b) = tokio::join!(
                        admins.recorders[0].store().remove(one, ACTORS[0]),
                        admins.recorders[1].store().remove(one, ACTORS[1])
                    );
                    one_wins([a, b], &what);
                }
            }
        }
        // Every id at once from both sides: nothing is open any more, both are refused.
        let (a, b) = tokio::join!(ada.retry(&ids), bob.retry(&ids));
        assert!(a.is_err() && b.is_err(), "{backend}: nothing left to retry");
        drop((ada, bob));

        let store = admins.recorders[0].store();
        assert!(
            store
                .failure_ids(&Filter::default(), 100)
                .await
                .expect("ids")
                .is_empty(),
            "{backend}: every failure resolved"
        );
        for id in &ids {
            let detail = store.failure(id).await.expect("read").expect("the failure");
            assert_eq!(
                detail.actions.len(),
                1,
                "{backend}: one history row per failure: {:?}",
                detail.actions
            );
        }
        assert_eq!(
            rig.ready(&rig.queue).await as usize,
            retried.load(Ordering::SeqCst),
            "{backend}: each retried job published once"
        );
    }
}

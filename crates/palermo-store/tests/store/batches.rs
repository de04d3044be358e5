//! Batches in the store (docs/workflows.md, "Batches"), on SQLite and PostgreSQL: events
//! apply once and in any order, a member's state only moves up, a callback is claimed by one
//! caller however many race for it, a claim left by a dead recorder is taken again after
//! the lease, and finished batches are pruned.

use palermo::admin::wire::batch::{Callback, Opened, EVENT_VERSION};
use palermo_store::{
    batches::{FAILED, SUCCEEDED},
    Store,
};
use uuid::Uuid;

use super::each_backend;

fn callback(name: &str) -> Option<Callback> {
    Some(Callback {
        id: Uuid::new_v4(),
        name: name.into(),
        queue: "q".into(),
        serializer: "json".into(),
        body: b"{}".to_vec(),
        max_attempts: None,
    })
}

fn opened(batch: Uuid, members: &[Uuid]) -> Opened {
    Opened {
        version: EVENT_VERSION,
        batch,
        description: "import".into(),
        created_at: 1,
        total: members.len() as u64,
        members: members.to_vec(),
        on_success: callback("notify"),
        on_complete: callback("summary"),
    }
}

/// The callbacks claimed now (kinds, sorted), with a lease that has not run out.
async fn due(store: &Store, batch: Uuid, now: i64) -> Vec<&'static str> {
    let mut kinds: Vec<_> = store
        .batch_due(&batch.to_string(), now, 0)
        .await
        .expect("due")
        .into_iter()
        .map(|f| f.kind)
        .collect();
    kinds.sort_unstable();
    kinds
}

#[tokio::test]
async fn events_count_once_in_any_order_and_states_only_move_up() {
    each_backend(|store| async move {
        let batch = Uuid::new_v4();
        let members: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let id = |i: usize| members[i].to_string();
        // A member's outcome before its batch's opened event, and twice.
        store
            .batch_member_done(batch, &id(0), SUCCEEDED, 5)
            .await
            .expect("done");
        store
            .batch_member_done(batch, &id(0), SUCCEEDED, 6)
            .await
            .expect("again");
        assert!(due(&store, batch, 10).await.is_empty(), "no batch yet");
        store
            .batch_opened(&opened(batch, &members), 7)
            .await
            .expect("opened");
        // The opened event redelivered: nothing changes.
        store
            .batch_opened(&opened(batch, &members), 8)
            .await
            .expect("opened again");
        let row = store
            .batch(&batch.to_string())
            .await
            .expect("read")
            .expect("known");
        assert_eq!(
            (row.batch.total, row.batch.succeeded, row.batch.pending),
            (3, 1, 2)
        );
        store
            .batch_member_done(batch, &id(1), FAILED, 9)
            .await
            .expect("failed");
        assert!(
            due(&store, batch, 10).await.is_empty(),
            "one member pending"
        );
        store
            .batch_member_done(batch, &id(2), SUCCEEDED, 11)
            .await
            .expect("last");
        assert_eq!(
            due(&store, batch, 12).await,
            ["complete"],
            "not all succeeded"
        );
        assert!(due(&store, batch, 13).await.is_empty(), "claimed once");
        store
            .batch_fired(&batch.to_string(), "complete", 14)
            .await
            .expect("fired");
        // A success replayed for a member that succeeded changes nothing; a late failure
        // of a member that succeeded does not take it back.
        store
            .batch_member_done(batch, &id(2), FAILED, 15)
            .await
            .expect("late failure");
        assert!(due(&store, batch, 16).await.is_empty());
        // The failed member retried and succeeding: on_success now, once.
        store
            .batch_member_done(batch, &id(1), SUCCEEDED, 17)
            .await
            .expect("retried");
        assert_eq!(due(&store, batch, 18).await, ["success"]);
        assert!(due(&store, batch, 19).await.is_empty());
        store
            .batch_fired(&batch.to_string(), "success", 20)
            .await
            .expect("fired");
        let detail = store
            .batch(&batch.to_string())
            .await
            .expect("read")
            .expect("known");
        let b = &detail.batch;
        assert_eq!((b.succeeded, b.failed, b.pending), (3, 0, 0));
        assert_eq!(
            (b.success_state.as_str(), b.complete_state.as_str()),
            ("fired", "fired")
        );
        assert!(store.batches_waiting().await.expect("waiting").is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_claims_win_once_and_a_dead_claim_is_taken_again_after_the_lease() {
    each_backend(|store| async move {
        let batch = Uuid::new_v4();
        let members: Vec<Uuid> = (0..2).map(|_| Uuid::new_v4()).collect();
        store
            .batch_opened(&opened(batch, &members), 1)
            .await
            .expect("opened");
        for m in &members {
            store
                .batch_member_done(batch, &m.to_string(), SUCCEEDED, 2)
                .await
                .expect("done");
        }
        // Eight claimers at once, as recorders finishing the last two members would be.
        let claims = (0..8).map(|_| {
            let store = store.clone();
            async move {
                store
                    .batch_due(&batch.to_string(), 10, 0)
                    .await
                    .expect("due")
            }
        });
        let handles: Vec<_> = claims.map(tokio::spawn).collect();
        let mut won = Vec::new();
        for h in handles {
            won.extend(h.await.expect("task"));
        }
        let mut kinds: Vec<_> = won.iter().map(|f| f.kind).collect();
        kinds.sort_unstable();
        assert_eq!(kinds, ["complete", "success"], "each callback claimed once");
        let outcome = &won[0].outcome;
        assert_eq!(
            (outcome.total, outcome.succeeded, outcome.failed),
            (2, 2, 0)
        );
        // The winner "died" before marking: within the lease nobody takes it again, after
        // it the next check does.
        assert!(store
            .batch_due(&batch.to_string(), 20, 5)
            .await
            .expect("due")
            .is_empty());
        let again = store
            .batch_due(&batch.to_string(), 40, 30)
            .await
            .expect("due");
        assert_eq!(again.len(), 2, "taken again after the lease");
        assert_eq!(
            again[0].callback.id,
            won.iter()
                .find(|f| f.kind == again[0].kind)
                .expect("same")
                .callback
                .id
        );
        for f in &again {
            store
                .batch_fired(&batch.to_string(), f.kind, 41)
                .await
                .expect("fired");
        }
        assert_eq!(
            store.prune_batches(5).await.expect("prune"),
            0,
            "finished at 10, kept"
        );
        assert_eq!(store.prune_batches(11).await.expect("prune"), 1);
        assert!(store
            .batch(&batch.to_string())
            .await
            .expect("read")
            .is_none());
    })
    .await;
}

/// The store's cost per member (a measurement, not a timed test): opening a batch of 20,000
/// members, then each member's outcome with the check that follows it, as the recorder does.
/// `cargo test --workspace --test store -- --ignored measure_batch --nocapture`
#[tokio::test]
#[ignore = "a measurement; prints the store's per-member cost"]
async fn measure_batch_member_cost() {
    each_backend(|store| async move {
        let n = 20_000;
        let batch = Uuid::new_v4();
        let members: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
        let started = std::time::Instant::now();
        for chunk in members.chunks(5_000) {
            let mut event = opened(batch, chunk);
            event.total = n as u64;
            store.batch_opened(&event, 1).await.expect("opened");
        }
        let opened_in = started.elapsed();
        let started = std::time::Instant::now();
        let mut fired = 0;
        for m in &members {
            store.batch_member_done(batch, &m.to_string(), SUCCEEDED, 2).await.expect("done");
            fired += store.batch_due(&batch.to_string(), 3, 0).await.expect("due").len();
        }
        let done_in = started.elapsed();
        assert_eq!(fired, 2);
        println!(
            "{:?}: opened {n} members in {opened_in:?}; {n} outcomes with their checks in {done_in:?} ({:.0} µs per member)",
            store.backend(),
            done_in.as_micros() as f64 / n as f64
        );
    })
    .await;
}

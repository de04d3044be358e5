//! The test rig itself (tests/support/rig.rs): a test that panics halfway, with a worker
//! running, a job failed and a retry probe bound, leaves no queue and no exchange behind.

use crate::support;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use palermo::{Options, State, Worker};
use support::{
    cleanup::{exists, Names, Object},
    eventually, Broker, Rig, WAIT,
};

#[palermo::job(max_attempts = 1)]
async fn count_then_fail(fail: bool, runs: State<Arc<AtomicUsize>>) -> anyhow::Result<()> {
    runs.fetch_add(1, Ordering::SeqCst);
    anyhow::ensure!(!fail, "failing on purpose");
    Ok(())
}

/// Sets up a rig as a real test would, checks that its names exist, sends them out, and
/// panics with the worker still running.
async fn panic_halfway(names: tokio::sync::oneshot::Sender<Names>) {
    let rig = Rig::new("panics").await;
    let runs = Arc::new(AtomicUsize::new(0));
    rig.start(Worker::builder(rig.config()).state(runs.clone()));
    let retries = rig.watch_retries(&rig.queue).await;
    let jobs = [CountThenFail { fail: true }, CountThenFail { fail: false }];
    rig.client()
        .enqueue_many(jobs, Options::new().queue(&rig.queue))
        .await
        .expect("enqueue");
    rig.wait_failed(1).await;
    eventually(WAIT, "both jobs ran", || async {
        runs.load(Ordering::SeqCst) == 2
    })
    .await;
    let owned = rig.owned().list();
    for queue in [&rig.queue, &rig.failed, &rig.events, &retries] {
        assert!(owned.queues.contains(queue), "{queue} is not owned");
        assert!(
            exists(&rig.connection, Object::Queue, queue).await,
            "{queue} exists"
        );
    }
    assert_eq!(owned.exchanges, std::slice::from_ref(&rig.events));
    assert!(exists(&rig.connection, Object::Exchange, &rig.events).await);
    let _ = names.send(owned);
    panic!("on purpose, with the worker running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_that_panics_inside_the_rig_leaves_no_queue_or_exchange_behind() {
    let (send, names) = tokio::sync::oneshot::channel();
    // A panicking task unwinds like a failing #[tokio::test]: the rig is dropped inside the
    // runtime, while its worker runs.
    let outcome = tokio::spawn(panic_halfway(send)).await;
    let panic = outcome.expect_err("the body panicked");
    assert!(panic.is_panic());
    let names = names.await.expect("the body got as far as the panic");
    // Dropping the rig finished the cleanup before the task's panic was reported.
    let broker = Broker::connect().await;
    for queue in &names.queues {
        assert!(
            !exists(&broker.connection, Object::Queue, queue).await,
            "queue {queue} left behind"
        );
    }
    for exchange in &names.exchanges {
        assert!(
            !exists(&broker.connection, Object::Exchange, exchange).await,
            "exchange {exchange} left behind"
        );
    }
}

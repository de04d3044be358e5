//! A pause survives a broker restart: the worker that reconnects reads the pause marker
//! before its slots consume again, so the paused queue's jobs wait until it is resumed
//! (docs/admin.md, "Control"). Disruptive (restarts RabbitMQ), so `#[ignore]`d in the normal
//! run; it takes the broker lock exclusively:
//! `flock -x /tmp/palermo-broker.lock cargo test --workspace --test disruptive -- --ignored disruptive_control::`.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use palermo::{control, Options, State, Worker};

use crate::support::{
    self, eventually, restart_broker, unique, Broker, BrokerGuard, RunningWorker, WAIT,
};

#[derive(Default)]
struct Runs(AtomicUsize);

#[palermo::job(name = "disruptive_control_count")]
async fn disruptive_control_count(runs: State<Arc<Runs>>) -> anyhow::Result<()> {
    runs.0 .0.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: restarts RabbitMQ; run by scripts/test.sh after the other tests"]
async fn a_pause_survives_a_broker_restart() {
    let _guard = BrokerGuard::new();
    let before = Broker::connect().await;
    let (queue, other, failed) = (unique("ctlrestart"), unique("ctlother"), unique("failed"));
    let mut config = before.worker_config(&[&queue, &other], &failed);
    let exchange = unique("control");
    before.owned().exchange(&exchange);
    config.deployment.control_exchange = exchange;
    let deployment = config.deployment.clone();
    before
        .owned()
        .exchange(&control::pause_marker(&deployment, &queue));
    let runs = Arc::new(Runs::default());
    let running = RunningWorker::start_with(Worker::builder(config).state(runs.clone()));
    eventually(WAIT, "the worker consumes", || async {
        before.consumers(&queue).await >= 1
    })
    .await;
    control::pause(&before.connection, &deployment, &queue)
        .await
        .expect("pause");
    eventually(WAIT, "no consumer on the paused queue", || async {
        before.consumers(&queue).await == 0
    })
    .await;

    let away = restart_broker().await;
    println!("RabbitMQ away {away:?}");
    let broker = Broker::connect().await;
    broker.adopt(&before);
    let client = support::client().await;
    for _ in 0..2 {
        client
            .enqueue_with(DisruptiveControlCount {}, Options::new().queue(&queue))
            .await
            .expect("enqueue");
    }
    // Reconnected: it consumes its other queue again, and still not the paused one.
    eventually(
        WAIT,
        "the worker reconnected and consumes its other queue",
        || async { broker.consumers(&other).await >= 1 },
    )
    .await;
    assert_eq!(
        broker.consumers(&queue).await,
        0,
        "the pause held across the restart"
    );
    assert_eq!(broker.ready(&queue).await, 2);
    assert_eq!(runs.0.load(Ordering::SeqCst), 0);

    control::resume(&broker.connection, &deployment, &queue)
        .await
        .expect("resume");
    eventually(WAIT, "both jobs ran after the resume", || async {
        runs.0.load(Ordering::SeqCst) == 2
    })
    .await;
    running.stop().await;
    client.close().await.expect("close");
    broker.cleanup().await;
}

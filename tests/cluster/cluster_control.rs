//! A pause holds on a quorum deployment when a cluster node dies: the marker is an exchange,
//! cluster metadata on every node, so the worker that moves to another node after its own
//! was SIGKILLed reads it before consuming again (docs/admin.md, "Control").
//!
//! Brings up `scripts/cluster.sh`'s three nodes (and takes them down at the end); `#[ignore]`d:
//! `cargo test --workspace --test cluster -- --ignored cluster_control:: --test-threads=1`.

use crate::support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use palermo::{admin::topology, control, Options, QueueType, State, Worker, WorkerConfig};
use support::{cluster::Cluster, eventually, unique, RunningWorker};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Runs(AtomicUsize);

#[palermo::job(name = "cluster_control_count")]
async fn cluster_control_count(runs: State<Arc<Runs>>) -> anyhow::Result<()> {
    runs.0 .0.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

async fn consumers(connection: &lapin::Connection, queue: &str) -> u32 {
    topology::inspect(connection, queue)
        .await
        .ok()
        .flatten()
        .map_or(0, |d| d.consumers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: runs a three-node cluster and SIGKILLs a node; run by hand or scripts/test.sh"]
async fn a_pause_holds_when_the_workers_node_dies() {
    let cluster = Arc::new(tokio::task::spawn_blocking(Cluster::up).await.expect("up"));
    let queue = unique("ccontrol");
    let mut config = WorkerConfig::new([queue.as_str()]);
    config.deployment = palermo::Deployment {
        queue_type: QueueType::Quorum,
        failed_queue: unique("cfailed"),
        events_exchange: unique("cevents"),
        control_exchange: unique("ccontrol-exchange"),
        ..palermo::Deployment::new(cluster.urls())
    };
    let deployment = config.deployment.clone();
    let runs = Arc::new(Runs::default());
    let worker = RunningWorker::start_with(Worker::builder(config).state(runs.clone()));
    let node = cluster.await_connection(1, &queue).await;
    let other = if node == 1 { 2 } else { 1 };
    let admin = cluster.connect(other).await;
    eventually(WAIT, "the worker consumes", || async {
        consumers(&admin, &queue).await >= 1
    })
    .await;
    control::pause(&admin, &deployment, &queue)
        .await
        .expect("pause");
    eventually(WAIT, "no consumer", || async {
        consumers(&admin, &queue).await == 0
    })
    .await;

    let killed = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || killed.kill(node))
        .await
        .expect("kill");
    println!("killed node {node}, the worker's");
    let moved = cluster.await_connection(other, &queue).await;
    assert_ne!(moved, node, "the worker moved to a live node");
    let client = palermo::Client::connect_with(&palermo::ClientConfig::new(deployment.clone()))
        .await
        .expect("client")
        .with_reconnect_wait(WAIT);
    for _ in 0..2 {
        client
            .enqueue_with(ClusterControlCount {}, Options::new().queue(&queue))
            .await
            .expect("enqueue");
    }
    // The worker is connected again (its heartbeats' queue has its binding back), and still
    // takes nothing from the paused queue.
    eventually(WAIT, "the jobs wait", || async {
        topology::inspect(&admin, &queue)
            .await
            .ok()
            .flatten()
            .is_some_and(|d| d.ready == 2)
    })
    .await;
    assert_eq!(consumers(&admin, &queue).await, 0, "the pause held");
    assert_eq!(runs.0.load(Ordering::SeqCst), 0);

    control::resume(&admin, &deployment, &queue)
        .await
        .expect("resume");
    eventually(WAIT, "the jobs ran after the resume", || async {
        runs.0.load(Ordering::SeqCst) == 2
    })
    .await;
    worker.stop().await;
    client.close().await.expect("close");
}

//! Failover on the cluster: given every node's URL, a client keeps enqueueing when the node it
//! is connected to dies (within its reconnect wait), and a worker moves to another node and
//! keeps consuming when its own dies.
//!
//! The test brings up the three-node cluster of `scripts/cluster.sh` (and takes it down at
//! the end, failing or not). Both the client and a worker process get the comma-separated
//! list of the nodes. The node the client is connected to is SIGKILLed: every enqueue after
//! that must succeed, none may be lost. The node is started again; then the node the worker
//! is connected to is SIGKILLed: a job enqueued after that must still run. It prints how long
//! the enqueues and the worker were held up (figures for docs/scaling.md, not assertions).
//!
//! Disruptive and slow to set up, so `#[ignore]`d; scripts/test.sh runs it after the
//! disruptive tests: `cargo test --test 'cluster_*' -- --ignored --test-threads=1`.

use crate::support;

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use palermo::{admin::topology::QueueType, Options};
use support::{
    chaos::{record_id, recorded},
    cluster::Cluster,
    eventually,
    process::Running,
    unique,
};
use uuid::Uuid;

/// Enqueues after the client's node died.
const AFTER_KILL: usize = 20;
/// How long a job may take to run, failover included.
const RUN: Duration = Duration::from_secs(60);

/// Kills node `n` on a blocking thread.
async fn kill(cluster: &Arc<Cluster>, n: usize) {
    let cluster = Arc::clone(cluster);
    tokio::task::spawn_blocking(move || cluster.kill(n))
        .await
        .expect("kill");
}

/// Waits until `id` is in the record file.
async fn ran(record: &Path, id: Uuid) {
    eventually(RUN, &format!("job {id} ran"), || async {
        recorded(record).contains_key(&id)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: runs a three-node cluster and SIGKILLs its nodes; run by scripts/test.sh after the other tests"]
async fn enqueues_and_workers_move_to_another_node_when_theirs_dies() {
    let cluster = Arc::new(tokio::task::spawn_blocking(Cluster::up).await.expect("up"));
    let urls = cluster.urls();
    let (queue, failed, events) = (unique("cfailover"), unique("cfailed"), unique("cevents"));
    let dir = std::env::temp_dir();
    let record = dir.join(format!("{queue}.ids"));
    let log = dir.join(format!("{queue}.worker.log"));

    let client = palermo::Client::connect_with(&palermo::ClientConfig::new(palermo::Deployment {
        queue_type: QueueType::Quorum,
        ..palermo::Deployment::new(urls.as_str())
    }))
    .await
    .expect("client")
    .with_reconnect_wait(RUN);
    let first = client
        .enqueue_raw(record_id(&queue, &record, 0), Options::new())
        .await
        .expect("first enqueue")
        .id();
    let args = [
        ["--queues", queue.as_str()],
        ["--failed-queue", failed.as_str()],
        ["--events-exchange", events.as_str()],
        ["--concurrency", "4"],
        ["--shutdown-timeout", "5"],
    ];
    let worker = Running::spawn_with_env(
        &args.concat(),
        &[
            ("PALERMO_AMQP_URL", urls.as_str()),
            ("PALERMO_QUEUE_TYPE", "quorum"),
        ],
        &log,
    );
    ran(&record, first).await;

    // The client's node dies: the next enqueues go to another node. Until the cluster has
    // noticed and, if that node led the queue, elected a new leader, an enqueue may fail: on
    // the dead connection (the client learns of the death from it), or nacked by the new
    // node while the queue has no leader. Neither stored the job, and the caller tries again,
    // as an application would. After one succeeds, none may fail.
    let node = cluster.await_connection(1, "palermo client").await;
    kill(&cluster, node).await;
    let killed = Instant::now();
    let mut ids = Vec::with_capacity(AFTER_KILL);
    let mut enqueue_back = None;
    let mut in_flight_errors = 0;
    while ids.len() < AFTER_KILL {
        match client
            .enqueue_raw(record_id(&queue, &record, 0), Options::new())
            .await
            .map(|e| e.id())
        {
            Ok(id) => {
                enqueue_back.get_or_insert(killed.elapsed());
                ids.push(id);
            }
            Err(e) => {
                assert!(ids.is_empty(), "an enqueue failed after the failover: {e}");
                assert!(
                    killed.elapsed() < RUN,
                    "enqueues still fail {RUN:?} after the client's node died: {e}"
                );
                eprintln!("failover: an enqueue failed during the failover ({e}); again");
                in_flight_errors += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    for &id in &ids {
        ran(&record, id).await;
    }
    let enqueue_back = enqueue_back.unwrap_or_default();
    let started = Instant::now();
    let restart = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || restart.start(node))
        .await
        .expect("start");
    let restarted = started.elapsed();

    // The worker's node dies: it consumes again from another node.
    let via = if node == 1 { 2 } else { 1 };
    let worker_node = cluster.await_connection(via, &queue).await;
    kill(&cluster, worker_node).await;
    let killed = Instant::now();
    // The client may be on that node too: then, as above, an enqueue may fail until it has
    // moved, and the caller tries again.
    let after = loop {
        match client
            .enqueue_raw(record_id(&queue, &record, 0), Options::new())
            .await
            .map(|e| e.id())
        {
            Ok(id) => break id,
            Err(e) => {
                assert!(
                    killed.elapsed() < RUN,
                    "enqueues still fail {RUN:?} after the worker's node died: {e}"
                );
                eprintln!("failover: an enqueue failed as the worker's node died ({e}); again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    ran(&record, after).await;
    let consuming_back = killed.elapsed();

    println!(
        "failover: enqueue back {enqueue_back:?} after its node (palermo-c{node}) died \
         ({in_flight_errors} enqueue(s) failed during the failover); \
         worker consuming again {consuming_back:?} after its node (palermo-c{worker_node}) died; \
         a killed node rejoins in {restarted:?}"
    );
    let status = worker.stop(Duration::from_secs(30)).await;
    client.close().await.expect("close");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&record);
    let _ = std::fs::remove_file(&log);
    assert!(status.success(), "the worker exited with {status:?}");
    assert!(
        text.contains("reconnected to the broker"),
        "the worker did not reconnect:\n{text}"
    );
}

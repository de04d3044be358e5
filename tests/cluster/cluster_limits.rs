//! A concurrency limit in the three-node cluster while the node holding one of its slots
//! dies (docs/limits.md, "Concurrency"): a slot is an exclusive queue on its connection's
//! node, so it goes with that node; the worker reconnects elsewhere while the job it was
//! running goes on. What the docs promise, checked from the runs' recorded start and end
//! times: at most the limit at once before the kill and again once the runs that were going
//! at the kill have ended; in between, a brief over-run of at most those runs; every job ran.
//!
//! Brings up `scripts/cluster.sh`'s three nodes (and takes them down at the end); `#[ignore]`d:
//! `cargo test --workspace --test cluster -- --ignored cluster_limits:: --test-threads=1 --nocapture`.

use crate::support;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use palermo::{Limit, LimitNames, Options, QueueType, State, Worker, WorkerConfig};
use support::{cluster::Cluster, eventually, unique, RunningWorker};

const WAIT: Duration = Duration::from_secs(90);
const LIMIT: u32 = 2;
const JOBS: u32 = 16;

/// One run: the job's number, its start and its end.
type Run = (u32, Instant, Instant);

#[derive(Default)]
struct Runs(Mutex<Vec<Run>>);

impl Runs {
    fn all(&self) -> Vec<Run> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[palermo::job(name = "cluster_limits_sleep")]
async fn cluster_limits_sleep(n: u32, runs: State<Arc<Runs>>) -> anyhow::Result<()> {
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let run = (n, start, Instant::now());
    runs.0
         .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(run);
    Ok(())
}

/// The most runs of `runs` going at once at any instant within `from..to`.
fn most_at_once(runs: &[Run], from: Instant, to: Instant) -> usize {
    runs.iter()
        .map(|r| r.1)
        .filter(|&t| t >= from && t < to)
        .map(|t| runs.iter().filter(|r| r.1 <= t && t < r.2).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: runs a three-node cluster and SIGKILLs a node; run by hand or scripts/test.sh"]
async fn a_limit_holds_across_workers_while_a_slots_node_dies() {
    let cluster = Arc::new(tokio::task::spawn_blocking(Cluster::up).await.expect("up"));
    let queue = unique("climits");
    let deployment = palermo::Deployment {
        queue_type: QueueType::Quorum,
        failed_queue: unique("cfailed"),
        events_exchange: unique("cevents"),
        control_exchange: unique("ccontrol-exchange"),
        ..palermo::Deployment::new(cluster.urls())
    };
    let runs = Arc::new(Runs::default());
    // Two workers of 4 slots each, one limit of 2 under this test's name.
    let workers: Vec<RunningWorker> = (0..2)
        .map(|_| {
            let mut config = WorkerConfig::new([queue.as_str()]);
            config.deployment = deployment.clone();
            config.concurrency = 4;
            let limit = Limit {
                concurrency: Some(LIMIT),
                name: Some(queue.clone().into()),
                ..Limit::NONE
            };
            config.limits.insert("cluster_limits_sleep".into(), limit);
            RunningWorker::start_with(Worker::builder(config).state(runs.clone()))
        })
        .collect();
    let client = palermo::Client::connect_with(&palermo::ClientConfig::new(deployment.clone()))
        .await
        .expect("client")
        .with_reconnect_wait(WAIT);
    client
        .enqueue_many(
            (0..JOBS).map(|n| ClusterLimitsSleep { n }),
            Options::new().queue(&queue),
        )
        .await
        .expect("enqueue");

    // Kill the node of a slot while its run is going, after a few runs ended.
    let names = LimitNames::of(&queue, None);
    let slots: Vec<String> = (0..LIMIT).map(|i| names.slot(i)).collect();
    let via = 1;
    let node = eventually_node(&cluster, via, &slots, &runs).await;
    let killed_node = Arc::clone(&cluster);
    let killed = Instant::now();
    tokio::task::spawn_blocking(move || killed_node.kill(node))
        .await
        .expect("kill");
    println!("killed node {node}, which held a slot of the limit");

    eventually(WAIT, "every job ran to its end", || async {
        let done: HashSet<u32> = runs.all().iter().map(|r| r.0).collect();
        done.len() == JOBS as usize
    })
    .await;
    for worker in workers {
        worker.stop().await;
    }
    client.close().await.ok();

    let all = runs.all();
    let going_at_kill = all.iter().filter(|r| r.1 < killed && killed < r.2).count();
    let settled = all
        .iter()
        .filter(|r| r.1 < killed && killed < r.2)
        .map(|r| r.2)
        .max()
        .unwrap_or(killed);
    let first = all.iter().map(|r| r.1).min().expect("runs");
    let far = Instant::now() + Duration::from_secs(1);
    let before = most_at_once(&all, first, killed);
    let during = most_at_once(&all, killed, settled);
    let after = most_at_once(&all, settled, far);
    println!(
        "limit {LIMIT}: at most {before} at once before the kill, {during} while the {going_at_kill} \
         run(s) going at the kill ended, {after} after; {} runs for {JOBS} jobs",
        all.len()
    );
    assert!(before <= LIMIT as usize, "{before} at once before the kill");
    assert!(
        during <= LIMIT as usize + going_at_kill,
        "{during} at once: more than the limit and the runs going at the kill"
    );
    assert!(
        after <= LIMIT as usize,
        "{after} at once after the over-run"
    );
}

/// Waits until two runs ended and a slot queue lives on a node, and returns that node.
async fn eventually_node(cluster: &Cluster, via: usize, slots: &[String], runs: &Runs) -> usize {
    let mut found = None;
    eventually(WAIT, "a slot held after two runs", || {
        found = None;
        if runs.all().len() >= 2 {
            found = slots.iter().find_map(|s| cluster.node_of_queue(via, s));
        }
        std::future::ready(found.is_some())
    })
    .await;
    found.expect("a slot's node")
}

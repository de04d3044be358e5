//! The admin side end to end: real workers fail jobs into a real failed queue, the real
//! `palermo` binary records them into SQLite and PostgreSQL, lists, shows, retries and
//! removes them; heartbeats make workers and statistics; several admins (recorders, retries,
//! removals) on one store at once.

#[path = "../admin_support/mod.rs"]
mod admin_support;
#[path = "../support/mod.rs"]
mod support;
#[path = "../web_support/mod.rs"]
mod web_support;

mod batches;
mod control;
mod deployment;
mod escaping;
mod failures;
mod many_admins;
mod metrics;
mod times;
mod workers;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use admin_support::Admin;
use palermo::{State, Worker};
use serde_json::Value;
use support::RunningWorker;

pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// What the jobs of these tests saw.
#[derive(Default)]
pub(crate) struct Seen {
    pub fail: AtomicBool,
    pub ran: AtomicUsize,
    pub succeeded: AtomicUsize,
    pub running: AtomicUsize,
}

/// Fails while `seen.fail` is set.
#[palermo::job(max_attempts = 1)]
async fn charge(order: u64, seen: State<Arc<Seen>>) -> anyhow::Result<()> {
    seen.ran.fetch_add(1, Ordering::SeqCst);
    if seen.fail.load(Ordering::SeqCst) {
        anyhow::bail!("card declined for order {order}");
    }
    seen.succeeded.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[palermo::job(max_attempts = 1)]
async fn always_fails(n: u64) -> anyhow::Result<()> {
    anyhow::bail!("broken #{n}")
}

#[palermo::job(max_attempts = 1)]
async fn sleepy(ms: u64, seen: State<Arc<Seen>>) -> anyhow::Result<()> {
    seen.running.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    seen.running.fetch_sub(1, Ordering::SeqCst);
    seen.succeeded.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

pub(crate) fn worker(
    admin: &Admin,
    queues: &[&str],
    concurrency: usize,
    seen: &Arc<Seen>,
) -> RunningWorker {
    let mut config = admin.worker_config(queues);
    config.concurrency = concurrency;
    RunningWorker::start_with(Worker::builder(config).state(seen.clone()))
}

pub(crate) fn failure_rows(list: &Value) -> Vec<Value> {
    list["failures"].as_array().cloned().unwrap_or_default()
}

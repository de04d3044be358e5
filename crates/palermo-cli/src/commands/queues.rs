//! `palermo queues [QUEUE...]`: ready messages and consumers per queue, from AMQP (passive
//! declare), for the queues named, the queues the workers' heartbeats mention, the queues
//! of open failures, and the failed queue; then the jobs waiting in the delay queues, retries
//! (`palermo.delay.retry.*`) and scheduled or snoozed jobs (`palermo.delay.scheduled.*`).
//!
//! AMQP cannot count unacked messages. The UNACKED column is the number of jobs of that queue
//! the alive workers reported running at their last heartbeat: a worker holds one unacked
//! delivery per job it runs (prefetch 1 per slot), so this is the unacked count as of a few
//! seconds ago.

use std::collections::{BTreeMap, BTreeSet};

use palermo::admin::{delay, topology};
use serde::Serialize;

use crate::{admin::Settings, output::Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Queues to show besides the known ones (the failed queue is always shown).
    queues: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    queue: String,
    exists: bool,
    ready: Option<u32>,
    /// Jobs of this queue running on alive workers (from heartbeats).
    unacked: u32,
    consumers: Option<u32>,
    /// Open failures of jobs from this queue, in the store.
    failed: i64,
}

pub async fn run(amqp_url: &str, settings: &Settings, args: Args) -> anyhow::Result<()> {
    for name in &args.queues {
        topology::validate_queue_name(name).map_err(anyhow::Error::msg)?;
    }
    let recorder = settings.recorder(amqp_url).await?;
    let store = recorder.store();
    let workers = store.workers().await?;
    let failed: BTreeMap<String, i64> = store.failed_per_queue().await?.into_iter().collect();

    let mut names: BTreeSet<String> = args.queues.into_iter().collect();
    let mut unacked: BTreeMap<String, u32> = BTreeMap::new();
    for worker in workers.iter().filter(|w| w.status == "alive") {
        names.extend(worker.queues.iter().cloned());
        for job in &worker.running {
            *unacked.entry(job.queue.clone()).or_default() += 1;
        }
    }
    names.extend(
        failed
            .keys()
            .filter(|q| topology::validate_queue_name(q).is_ok())
            .cloned(),
    );
    names.insert(settings.failed_queue.clone());

    let mut rows = Vec::new();
    for queue in names {
        let depth = topology::inspect(recorder.connection(), &queue).await?;
        rows.push(Row {
            exists: depth.is_some(),
            ready: depth.map(|d| d.ready),
            unacked: unacked.get(&queue).copied().unwrap_or(0),
            consumers: depth.map(|d| d.consumers),
            failed: failed.get(&queue).copied().unwrap_or(0),
            queue,
        });
    }
    let layout = delay::Layout::of(settings.queue_type);
    let waiting = delay::waiting(recorder.connection(), layout).await?;
    for (kind, count) in [
        (delay::Kind::Retry, waiting.retrying),
        (delay::Kind::Scheduled, waiting.scheduled),
    ] {
        rows.push(Row {
            queue: layout.queues_of(kind),
            exists: waiting.declared,
            ready: Some(u32::try_from(count).unwrap_or(u32::MAX)),
            unacked: 0,
            consumers: Some(0),
            failed: 0,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut table = Table::new(["QUEUE", "READY", "UNACKED", "CONSUMERS", "FAILED"]);
    for row in &rows {
        let show = |n: Option<u32>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
        let queue = if row.exists {
            row.queue.clone()
        } else {
            format!("{} (missing)", row.queue)
        };
        table.row([
            queue,
            show(row.ready),
            row.unacked.to_string(),
            show(row.consumers),
            row.failed.to_string(),
        ]);
    }
    print!("{table}");
    Ok(())
}

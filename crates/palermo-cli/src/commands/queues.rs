//! `palermo queues [QUEUE...]`: ready messages and consumers per queue, from AMQP (passive
//! declare), for the queues named, the queues the workers' heartbeats mention, the queues
//! of open failures, and the failed queue; then the jobs waiting in the delay queues, retries
//! (`palermo.delay.retry.*`) and scheduled or snoozed jobs (`palermo.delay.scheduled.*`),
//! and on quorum queues the delayed jobs whose queue was deleted while they waited (the
//! orphans queue, `palermo.qdelay.v2.orphans`).
//!
//! AMQP cannot count unacked messages. The UNACKED column is the number of jobs of that queue
//! the alive workers reported running at their last heartbeat: a worker holds one unacked
//! delivery per job it runs (prefetch 1 per slot), so this is the unacked count as of a few
//! seconds ago.

use palermo::admin::topology;
use palermo_store::queues::QueueRow;

use crate::{admin::Settings, output::Table};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// Queues to show besides the known ones (the failed queue is always shown).
    queues: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// What can be done to a queue (docs/admin.md, "Control").
#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Pause a queue for every worker, now and after restarts: within 3 s no worker consumes
    /// it (running jobs finish); enqueues are still accepted and wait.
    Pause(Target),
    /// Resume a paused queue: its workers consume it again within 3 s.
    Resume(Target),
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The job queue.
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    match args.action {
        Some(Action::Pause(target)) => return act(settings, target, true).await,
        Some(Action::Resume(target)) => return act(settings, target, false).await,
        None => {}
    }
    for name in &args.queues {
        topology::validate_queue_name(name).map_err(anyhow::Error::msg)?;
    }
    let recorder = settings.recorder().await?;
    let deployment = settings.deployment();
    let report = palermo_store::queues::report(
        recorder.connection(),
        recorder.store(),
        &deployment,
        &args.queues,
    )
    .await?;
    let mut rows = report.queues;
    let layout = palermo::admin::delay::Layout::of(settings.deployment.queue_type);
    let orphans = (settings.deployment.queue_type == topology::QueueType::Quorum)
        .then(|| (layout.orphans(), report.orphaned));
    let delays = [
        (palermo::admin::delay::Kind::Retry, report.retrying),
        (palermo::admin::delay::Kind::Scheduled, report.scheduled),
    ]
    .map(|(kind, count)| (layout.queues_of(kind), count));
    for (queue, count) in delays.into_iter().chain(orphans) {
        rows.push(QueueRow {
            queue,
            exists: report.delay_queues_declared,
            ready: Some(u32::try_from(count).unwrap_or(u32::MAX)),
            unacked: 0,
            consumers: Some(0),
            failed: 0,
            paused: false,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut table = Table::new(["QUEUE", "STATE", "READY", "UNACKED", "CONSUMERS", "FAILED"]);
    for row in &rows {
        let show = |n: Option<u32>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
        let queue = if row.exists {
            row.queue.clone()
        } else {
            format!("{} (missing)", row.queue)
        };
        table.row([
            queue,
            if row.paused { "paused" } else { "-" }.to_string(),
            show(row.ready),
            row.unacked.to_string(),
            show(row.consumers),
            row.failed.to_string(),
        ]);
    }
    print!("{table}");
    Ok(())
}

/// Pauses (`pause`) or resumes the queue, recording the actor.
async fn act(settings: &Settings, target: Target, pause: bool) -> anyhow::Result<()> {
    topology::validate_queue_name(&target.name).map_err(anyhow::Error::msg)?;
    // A valid queue name is plain ASCII: safe to print as it is.
    let recorder = settings.connect_recorder().await?;
    let (connection, store) = (recorder.connection(), recorder.store());
    let (deployment, actor) = (settings.deployment(), crate::admin::actor());
    let name = &target.name;
    palermo_store::control::set_paused(connection, &deployment, store, name, pause, &actor).await?;
    if target.json {
        println!("{}", serde_json::json!({"queue": name, "paused": pause}));
    } else if pause {
        println!(
            "paused {}: workers stop consuming it within 3 s (running jobs finish); new jobs wait in it",
            name
        );
    } else {
        println!("resumed {}: workers consume it again within 3 s", name);
    }
    Ok(())
}

//! `palermo workers`: every worker the heartbeats told about, alive first, with the jobs it is
//! running. A worker is `gone` after three missed heartbeats, `stopped` after a clean stop;
//! both stay listed for an hour. STATE is what the worker applied of the operators'
//! commands (running, quiet, stopping) and which of its queues are paused.
//!
//! `palermo workers quiet ID|--all` and `stop ID|--all` send those commands (docs/admin.md,
//! "Control"); ID is a worker's id (`--json` shows it) or its identity.
//!
//! A worker the broker blocks in a resource alarm shows it in its status:
//! `alive (blocked: low on disk)`.

use palermo::control::Command;
use palermo_store::{control, time};

use crate::{admin::Settings, output::Table};

struct Listing {
    json: bool,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Take no new jobs, finish the running ones, stay connected.
    Quiet(Target),
    /// The same graceful stop as SIGTERM: running jobs finish within the worker's shutdown
    /// timeout, then it exits 0.
    Stop(Target),
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The worker's id (from `palermo workers --json`) or identity (host:pid:queues).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    id: Option<String>,
    /// Every alive worker.
    #[arg(long)]
    all: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let (target, command) = match args.action {
        Some(Action::Quiet(target)) => (target, Command::Quiet),
        Some(Action::Stop(target)) => (target, Command::Stop),
        None => return list(settings, args.json).await,
    };
    let recorder = settings.recorder().await?;
    let workers = match &target.id {
        Some(id) => control::Workers::One(id),
        None => control::Workers::All,
    };
    let (deployment, actor) = (settings.deployment(), crate::admin::actor());
    let (connection, store) = (recorder.connection(), recorder.store());
    let told =
        control::command_workers(connection, &deployment, store, workers, &command, &actor).await?;
    let verb = if command == Command::Stop {
        "stop"
    } else {
        "quiet"
    };
    if target.json {
        let ids: Vec<&str> = told.iter().map(|w| w.id.as_str()).collect();
        println!("{}", serde_json::json!({ "command": verb, "workers": ids }));
    } else if told.is_empty() {
        println!("no alive worker to {verb}");
    } else {
        for worker in &told {
            println!("{verb} sent to {} ({})", worker.id, text(&worker.identity));
        }
    }
    Ok(())
}

async fn list(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let args = Listing { json };
    let recorder = settings.recorder().await?;
    let workers = recorder.store().workers().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&workers)?);
        return Ok(());
    }
    if workers.is_empty() {
        println!("no workers have sent a heartbeat");
        return Ok(());
    }
    let now = time::now_ms();
    let mut table = Table::new([
        "WORKER",
        "STATUS",
        "STATE",
        "BUSY",
        "PROCESSED",
        "FAILED",
        "STARTED",
        "LAST SEEN",
        "RUNNING",
    ]);
    for w in &workers {
        let running: Vec<String> = w
            .running
            .iter()
            .map(|j| {
                format!(
                    "{} {} on {} for {}",
                    j.name,
                    j.id,
                    j.queue,
                    time::ago(j.started_at, now)
                )
            })
            .collect();
        table.row([
            w.identity.clone(),
            match &w.blocked {
                Some(reason) => format!("{} (blocked: {reason})", w.status),
                None => w.status.clone(),
            },
            state(w),
            format!("{}/{}", w.running.len(), w.concurrency),
            w.processed.to_string(),
            w.failed.to_string(),
            time::short(w.started_at),
            format!("{} ago", time::ago(w.last_seen_at, now)),
            if running.is_empty() {
                "-".into()
            } else {
                running.join("; ")
            },
        ]);
    }
    print!("{table}");
    Ok(())
}

/// `running`, `quiet`, `stopping`, with the paused queues: `running, paused: mail`.
fn state(worker: &palermo_store::workers::WorkerRow) -> String {
    if worker.status != "alive" {
        return "-".into();
    }
    if worker.paused.is_empty() {
        worker.state.clone()
    } else {
        format!("{}, paused: {}", worker.state, worker.paused.join(","))
    }
}

/// A worker's identity (its host name comes from its heartbeats) for the terminal.
fn text(identity: &str) -> String {
    crate::output::escape(identity)
}

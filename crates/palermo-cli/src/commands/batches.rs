//! `palermo batches`: batches with their progress and callbacks, newest first;
//! `palermo batches show ID`: one batch and its failed members (docs/workflows.md,
//! "Batches"). Like every command it records what is queued first, so it also moves batches
//! forward (and fires their callbacks) when no dashboard runs.
//!
//! LAST EVENT is how long ago the recorder last heard of the batch: an unfinished batch whose
//! last event is old has members still queued or running, or no recorder running.

use anyhow::bail;
use palermo_store::{batches::BatchRow, time};

use crate::{admin::Settings, output::Table};

/// Batches listed at most.
const LIMIT: i64 = 500;

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
    /// One batch: its counts, callbacks and failed members.
    Show {
        /// The batch id (printed by `palermo batches`).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let recorder = settings.recorder().await?;
    let store = recorder.store();
    let now = time::now_ms();
    if let Some(Action::Show { id, json }) = args.action {
        let Some(detail) = store.batch(&id).await? else {
            bail!(
                "no batch {} in the store (unknown id, or finished and pruned)",
                crate::output::escape(&id)
            );
        };
        if json {
            println!("{}", serde_json::to_string_pretty(&detail)?);
            return Ok(());
        }
        let b = &detail.batch;
        println!("batch        {}", b.id);
        println!("description  {}", crate::output::escape(&b.description));
        println!("created      {}", time::ago(b.created_at, now));
        println!("last event   {}", time::ago(b.last_event_at, now));
        println!(
            "finished     {}",
            b.finished_at
                .map_or_else(|| "no".to_string(), |at| time::ago(at, now))
        );
        println!(
            "members      {} total, {} pending, {} succeeded, {} failed",
            b.total, b.pending, b.succeeded, b.failed
        );
        println!(
            "on_success   {}",
            callback(&b.success_state, &b.success_job_id)
        );
        println!(
            "on_complete  {}",
            callback(&b.complete_state, &b.complete_job_id)
        );
        for id in &detail.failed_ids {
            println!("failed       {id}  (palermo failed list --search {id})");
        }
        return Ok(());
    }
    let batches = store.batches(LIMIT).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&batches)?);
        return Ok(());
    }
    if batches.is_empty() {
        println!("no batches");
        return Ok(());
    }
    let mut table = Table::new([
        "BATCH",
        "DESCRIPTION",
        "CREATED",
        "TOTAL",
        "PENDING",
        "SUCCEEDED",
        "FAILED",
        "ON_SUCCESS",
        "ON_COMPLETE",
        "LAST EVENT",
    ]);
    for b in &batches {
        table.row(row(b, now));
    }
    print!("{table}");
    Ok(())
}

fn row(b: &BatchRow, now: i64) -> [String; 10] {
    [
        b.id.clone(),
        crate::admin::cell(&b.description, 40),
        time::ago(b.created_at, now),
        b.total.to_string(),
        b.pending.to_string(),
        b.succeeded.to_string(),
        b.failed.to_string(),
        b.success_state.clone(),
        b.complete_state.clone(),
        time::ago(b.last_event_at, now),
    ]
}

/// A callback's state, with its job id once it can run.
fn callback(state: &str, job_id: &Option<String>) -> String {
    match (state, job_id) {
        ("fired", Some(id)) => format!("fired (job {id})"),
        (state, _) => state.to_string(),
    }
}

//! `palermo limits`: the fleet-wide limits of the alive workers' jobs (docs/limits.md,
//! "Seeing limits"), one row per limit and kind: its setting, how much of it is in use
//! (concurrency: slots held at the workers' last heartbeats; rate: starts in the current
//! window, from the broker; `-` for a rate per key, which is not counted) and how many jobs
//! were sent back to wait for it during the workers' last heartbeat intervals.

use crate::{admin::Settings, output::Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let recorder = settings.recorder().await?;
    let rows = palermo_store::limits::report(recorder.connection(), recorder.store()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no alive worker runs a job with a limit");
        return Ok(());
    }
    let mut table = Table::new([
        "LIMIT", "KIND", "SETTING", "IN USE", "WAITING", "JOBS", "WORKERS",
    ]);
    for row in &rows {
        table.row([
            row.limit.clone(),
            row.kind.clone(),
            row.setting(),
            row.in_use.map_or_else(|| "-".into(), |n| n.to_string()),
            row.waiting.to_string(),
            row.jobs.join(","),
            row.workers.to_string(),
        ]);
    }
    print!("{table}");
    Ok(())
}

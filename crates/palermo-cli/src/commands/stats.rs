//! `palermo stats`: processed and failed runs, all time and in the last hour, per queue and
//! job, from the workers' heartbeats. "Processed" counts every finished run, failed ones
//! included, as in Sidekiq.

use crate::{admin::Settings, output::Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let recorder = settings.recorder().await?;
    let stats = recorder
        .store()
        .stats(palermo_store::time::now_ms())
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    let mut table = Table::new(["", "PROCESSED", "FAILED"]);
    table.row([
        "all time".into(),
        stats.total.processed.to_string(),
        stats.total.failed.to_string(),
    ]);
    table.row([
        "last hour".into(),
        stats.last_hour.processed.to_string(),
        stats.last_hour.failed.to_string(),
    ]);
    print!("{table}");
    if stats.by_job.is_empty() {
        return Ok(());
    }
    println!();
    let mut table = Table::new([
        "QUEUE",
        "JOB",
        "PROCESSED",
        "FAILED",
        "LAST HOUR",
        "FAILED LAST HOUR",
    ]);
    for j in &stats.by_job {
        table.row([
            j.queue.clone(),
            crate::admin::job_name(&j.job).to_string(),
            j.total.processed.to_string(),
            j.total.failed.to_string(),
            j.last_hour.processed.to_string(),
            j.last_hour.failed.to_string(),
        ]);
    }
    print!("{table}");
    Ok(())
}

//! `palermo workers`: every worker the heartbeats told about, alive first, with the jobs it is
//! running. A worker is `gone` after three missed heartbeats, `stopped` after a clean stop;
//! both stay listed for an hour. A worker the broker blocks in a resource alarm shows it in
//! its status: `alive (blocked: low on disk)`.

use palermo_store::time;

use crate::{admin::Settings, output::Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
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

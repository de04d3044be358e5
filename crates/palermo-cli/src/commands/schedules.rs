//! `palermo schedules`: the periodic jobs, their last and next run, and the active scheduler,
//! as the active scheduler last published them (docs/scheduling.md). Read from RabbitMQ only,
//! without taking the message: the admin store is not needed.

use anyhow::Context;
use palermo::admin::{broker, schedules};
use palermo_store::time;

use crate::{
    admin::Settings,
    output::{escape, Table},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let deployment = &settings.deployment;
    let connection = broker::connect(&deployment.amqp_url, "palermo schedules").await?;
    let status = schedules::read(&connection, &deployment.scheduler_queue).await;
    let _ = connection.close(200, "done".into()).await;
    let status = status.context("reading the scheduler status")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let Some(status) = status else {
        println!("no scheduler has been active (start a worker with --scheduler)");
        return Ok(());
    };
    let now = time::now_ms();
    println!(
        "active scheduler: {} (as of {} ago)",
        escape(&status.leader),
        time::ago(status.written_at, now)
    );
    let mut table = Table::new(["SCHEDULE", "WHEN", "JOB", "QUEUE", "LAST RUN", "NEXT RUN"]);
    let at = |ms: Option<i64>| ms.map_or_else(|| "-".to_string(), time::short);
    for row in &status.schedules {
        table.row([
            row.name.clone(),
            row.spec.clone(),
            row.job.clone(),
            row.queue.clone(),
            at(row.last_run),
            at(row.next_run),
        ]);
    }
    print!("{table}");
    Ok(())
}

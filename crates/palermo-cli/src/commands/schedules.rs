//! `palermo schedules`: the periodic jobs, their last and next run, whether each is paused,
//! and the active scheduler, as the active scheduler last published them (docs/scheduling.md),
//! read from RabbitMQ only, without taking the message: the listing needs no admin store.
//! `palermo schedules run|pause|resume NAME` act on one schedule (docs/admin.md, "Control")
//! and record the action with its actor in the store.

use anyhow::Context;
use palermo::{admin::broker, Enqueued};
use palermo_store::{schedules, time};

use crate::{
    admin::Settings,
    output::{escape, Table},
};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// What can be done to a schedule (docs/admin.md, "Control").
#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Enqueue one run of the schedule's job now (its job, queue and arguments); its next
    /// tick is not moved.
    Run(Target),
    /// Pause a schedule for every scheduler, also after failovers and restarts: its ticks
    /// are skipped (not queued up for later) until it is resumed.
    Pause(Target),
    /// Resume a paused schedule: its next tick is enqueued again.
    Resume(Target),
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The schedule's name (`palermo schedules` lists them).
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    match args.action {
        Some(Action::Run(target)) => return run_now(settings, target).await,
        Some(Action::Pause(target)) => return set_paused(settings, target, true).await,
        Some(Action::Resume(target)) => return set_paused(settings, target, false).await,
        None => {}
    }
    let deployment = settings.deployment();
    let connection = broker::connect(&deployment.amqp_url, "palermo schedules").await?;
    let loaded = schedules::load(&connection, &deployment).await;
    let _ = connection.close(200, "done".into()).await;
    let loaded = loaded.context("reading the scheduler status")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&loaded)?);
        return Ok(());
    }
    let Some(loaded) = loaded else {
        println!("no scheduler has been active (start a worker with --scheduler)");
        return Ok(());
    };
    let now = time::now_ms();
    println!(
        "active scheduler: {} (as of {} ago)",
        escape(&loaded.leader),
        time::ago(loaded.written_at, now)
    );
    let mut table = Table::new([
        "SCHEDULE", "WHEN", "JOB", "QUEUE", "STATE", "LAST RUN", "NEXT RUN",
    ]);
    for s in &loaded.schedules {
        let row = &s.row;
        table.row([
            row.name.clone(),
            row.spec.clone(),
            row.job.clone(),
            row.queue.clone(),
            if s.paused { "paused" } else { "-" }.to_string(),
            schedules::at(row.last_run),
            schedules::at(row.next_run),
        ]);
    }
    print!("{table}");
    Ok(())
}

/// Enqueues one run of the schedule's job now, recording the actor.
async fn run_now(settings: &Settings, target: Target) -> anyhow::Result<()> {
    let recorder = settings.connect_recorder().await?;
    let (connection, store) = (recorder.connection(), recorder.store());
    let (deployment, actor) = (settings.deployment(), crate::admin::actor());
    let name = &target.name;
    let enqueued = schedules::run_now(connection, &deployment, store, name, &actor).await?;
    let (id, duplicate) = match enqueued {
        Enqueued::New(id) => (id, false),
        Enqueued::Duplicate(holder) => (holder, true),
    };
    if target.json {
        let json = if duplicate {
            serde_json::json!({"schedule": name, "enqueued": false, "lock_holder": id.to_string()})
        } else {
            serde_json::json!({"schedule": name, "enqueued": true, "id": id.to_string()})
        };
        println!("{json}");
    } else if duplicate {
        println!(
            "not enqueued: schedule {}'s job is unique and job {id} holds its lock",
            escape(name)
        );
    } else {
        println!(
            "enqueued one run of schedule {} now: job {id}; its next tick is unchanged",
            escape(name)
        );
    }
    Ok(())
}

/// Pauses (`pause`) or resumes the schedule, recording the actor.
async fn set_paused(settings: &Settings, target: Target, pause: bool) -> anyhow::Result<()> {
    let recorder = settings.connect_recorder().await?;
    let (connection, store) = (recorder.connection(), recorder.store());
    let (deployment, actor) = (settings.deployment(), crate::admin::actor());
    let name = &target.name;
    schedules::set_paused(connection, &deployment, store, name, pause, &actor).await?;
    if target.json {
        println!("{}", serde_json::json!({"schedule": name, "paused": pause}));
    } else if pause {
        println!(
            "paused schedule {}: its ticks are skipped (not queued up for later) until it is resumed",
            escape(name)
        );
    } else {
        println!(
            "resumed schedule {}: its next tick is enqueued",
            escape(name)
        );
    }
    Ok(())
}

//! `palermo`: the admin command. It speaks AMQP to the broker and links no job code, so it
//! can enqueue, inspect and (with the store) list and retry any job by name.

mod admin;
mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Palermo's admin command.
#[derive(Debug, Parser)]
#[command(
    name = "palermo",
    version,
    about = "Inspect and manage Palermo jobs on RabbitMQ"
)]
struct Cli {
    #[command(flatten)]
    admin: admin::Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish a job by name, without linking its code; prints its id once confirmed.
    Enqueue(commands::enqueue::Args),
    /// Job queues: ready and consumers from AMQP, unacked from heartbeats, failed from the store.
    Queues(commands::queues::Args),
    /// List, show, retry and remove failed jobs (recorded from the failed queue).
    Failed(commands::failed::Args),
    /// Act on jobs by id: `palermo jobs cancel ID...`.
    Jobs(commands::jobs::Args),
    /// Workers from their heartbeats: alive, stopped or gone, and what each is running.
    Workers(commands::workers::Args),
    /// Fleet-wide limits of the alive workers' jobs: setting, in use, jobs waiting.
    Limits(commands::limits::Args),
    /// Periodic jobs: their next and last run, and the active scheduler (from RabbitMQ).
    Schedules(commands::schedules::Args),
    /// Processed and failed job counts: all time and the last hour.
    Stats(commands::stats::Args),
    /// Apply the admin database's pending migrations.
    Migrate(commands::migrate::Args),
    /// Serve the web dashboard (default http://127.0.0.1:9090/), recording continuously.
    Web(commands::web::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    admin::init_logging();
    admin::default_sigpipe();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if !matches!(cli.command, Command::Migrate(_)) {
            // A bad setting is an error before anything else is opened.
            cli.admin.deployment().validate()?;
        }
        let settings = &cli.admin;
        match cli.command {
            Command::Enqueue(args) => commands::enqueue::run(settings, args).await,
            Command::Queues(args) => commands::queues::run(settings, args).await,
            Command::Failed(args) => commands::failed::run(settings, args).await,
            Command::Jobs(args) => commands::jobs::run(settings, args).await,
            Command::Workers(args) => commands::workers::run(settings, args).await,
            Command::Limits(args) => commands::limits::run(settings, args).await,
            Command::Schedules(args) => commands::schedules::run(settings, args).await,
            Command::Stats(args) => commands::stats::run(settings, args).await,
            Command::Migrate(args) => commands::migrate::run(settings, args).await,
            Command::Web(args) => commands::web::run(settings, args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<commands::jobs::Exit>().is_some() => {
            let code = e
                .downcast_ref::<commands::jobs::Exit>()
                .map_or(1, |exit| exit.code);
            eprintln!("{}", output::escape(&e.to_string()));
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("error: {}", output::escape(&admin::error_line(&e)));
            ExitCode::FAILURE
        }
    }
}

//! `palermo-bench`: how close Palermo comes to the raw-AMQP limit, measured in one run.
//!
//! With persistent messages, publisher confirms and prefetch 1, throughput is bounded by
//! RabbitMQ and the round trips, not by the client. So the honest yardstick is raw lapin
//! doing the same AMQP work against the same broker in the same run: absolute figures drift
//! on a shared machine, the ratio Palermo / raw holds. Each figure is the median of `--reps`
//! repetitions, with min and max. Every queue is unique to the run and deleted after it.
//!
//! ```text
//! cargo run --release -p palermo-bench -- --jobs 20000 --reps 5
//! ```
//!
//! The workers being measured are this executable started with a hidden subcommand
//! (`worker` for Palermo, `raw-worker` for lapin), each in its own process, so their RSS and
//! CPU time are theirs alone. docs/performance.md explains each row and what bounds it.

mod bench;
mod child;
mod drain;
mod enqueue;
mod jobs;
mod latency;
mod limits;
mod nodes;
mod raw;
mod report;
mod scale;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use crate::{bench::Bench, report::Report};

/// Measures Palermo against raw lapin on the same RabbitMQ and prints a Markdown table.
#[derive(Debug, Parser)]
#[command(name = "palermo-bench")]
struct Args {
    /// Jobs per enqueue and drain measurement. Defaults to 20000.
    #[arg(long, default_value_t = 20_000)]
    jobs: u64,
    /// Repetitions of every measurement; the table shows their median, min and max.
    /// Defaults to 5.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Probes per latency measurement, sent one at a time. Defaults to 2000.
    #[arg(long, default_value_t = 2000)]
    latency_jobs: usize,
    /// Measure only these groups (footprint comes with drain; `sleep` is the 5 ms nap).
    /// Defaults to all.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Group>,
    /// RabbitMQ URL, or a cluster's nodes as a comma-separated list
    /// (`scripts/cluster.sh urls`): the harness uses the first, worker processes take them in
    /// turn.
    #[arg(long, env = "PALERMO_AMQP_URL", default_value = palermo::DEFAULT_AMQP_URL)]
    amqp_url: String,
    /// Type of the queues the run declares: classic, or quorum (replicated over a cluster).
    /// Defaults to classic.
    #[arg(long, default_value = "classic")]
    queue_type: palermo::admin::topology::QueueType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Group {
    Enqueue,
    Drain,
    Prefetch,
    Scale,
    Sleep,
    Latency,
    Limits,
}

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some(jobs::WORKER_COMMAND) => return jobs::worker_main(),
        Some(raw::WORKER_COMMAND) => return raw::worker_main(),
        _ => {}
    }
    let args = Args::parse();
    if args.jobs == 0 || args.reps == 0 || args.latency_jobs == 0 {
        eprintln!("error: --jobs, --reps and --latency-jobs must be at least 1");
        return ExitCode::FAILURE;
    }
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(&args)));
    match result {
        Ok(report) => {
            println!(
                "palermo-bench: {} jobs per enqueue/drain run, {} latency probes, median of {} rep(s)\n",
                args.jobs, args.latency_jobs, args.reps
            );
            print!("{}", report.table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<Report> {
    let nodes = nodes::Nodes::parse(&args.amqp_url, args.queue_type)?;
    let bench = Bench::connect(nodes, args.jobs, args.latency_jobs).await?;
    // Ctrl-C or SIGTERM still removes the run's queues: dropping the measurement kills its
    // worker, and the clean-up below runs.
    let result = tokio::select! {
        result = measure(&bench, args) => result,
        signal = interrupted() => Err(signal),
    };
    bench.finish(result.is_ok()).await;
    result
}

/// Completes with an error naming the signal at SIGINT or SIGTERM.
async fn interrupted() -> anyhow::Error {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => anyhow::anyhow!("interrupted (SIGINT)"),
        _ = term.recv() => anyhow::anyhow!("terminated (SIGTERM)"),
    }
}

async fn measure(bench: &Bench, args: &Args) -> anyhow::Result<Report> {
    let wanted = |group| args.only.is_empty() || args.only.contains(&group);
    let mut report = Report::default();
    eprintln!("warming up");
    enqueue::warm_up(bench).await?;
    for rep in 0..args.reps {
        let progress = |what: &str| eprintln!("rep {}/{}: {what}", rep + 1, args.reps);
        if wanted(Group::Enqueue) {
            progress("enqueue");
            enqueue::measure(bench, rep, &mut report).await?;
        }
        if wanted(Group::Drain) {
            progress("drain and footprint");
            drain::measure(bench, rep, &mut report).await?;
        }
        if wanted(Group::Prefetch) {
            progress("prefetch");
            drain::measure_prefetch(bench, rep, &mut report).await?;
        }
        if wanted(Group::Scale) {
            progress("scale");
            scale::measure(bench, rep, &mut report).await?;
        }
        if wanted(Group::Sleep) {
            progress("5 ms nap");
            drain::measure_sleep(bench, rep, &mut report).await?;
        }
        if wanted(Group::Latency) {
            progress("latency");
            latency::measure(bench, rep, &mut report).await?;
        }
        if wanted(Group::Limits) {
            progress("limits");
            limits::measure(bench, rep, &mut report).await?;
        }
    }
    Ok(report)
}

//! The Palermo side of the bench: three jobs, and the worker that runs them.
//!
//! The worker is this same executable started as `palermo-bench worker --queues …`, which is
//! exactly what `palermo::cli::main` does in an application's worker binary. It runs
//! in its own process so that its RSS and CPU time are its own, and it is the same executable
//! as the harness so that `cargo run` can never pair a fresh harness with a stale worker.
//!
//! The jobs tell the harness what happened on stdout, one line per event: `drained` when the
//! last job of a batch ran, `latency <ns>` when a latency probe started.

use std::{
    process::ExitCode,
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use clap::Parser;
use palermo::cli::{self, WorkerArgs};

/// The subcommand that makes this executable a Palermo worker.
pub const WORKER_COMMAND: &str = "worker";

/// Jobs run since the last `drained` line.
static RUN: AtomicU64 = AtomicU64::new(0);

/// Does nothing; the one that completes a batch of `batch` jobs prints `drained`.
#[palermo::job(queue = "palermo-bench")]
pub async fn noop(batch: u64) -> anyhow::Result<()> {
    count_run(batch);
    Ok(())
}

/// Sleeps `ms` milliseconds (a job waiting on I/O); the one that completes a batch of
/// `batch` jobs prints `drained`.
#[palermo::job(queue = "palermo-bench")]
pub async fn nap(batch: u64, ms: u64) -> anyhow::Result<()> {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    count_run(batch);
    Ok(())
}

/// Counts a run; prints `drained` at the `batch`-th.
fn count_run(batch: u64) {
    if RUN.fetch_add(1, Ordering::Relaxed) + 1 == batch {
        RUN.store(0, Ordering::Relaxed);
        println!("drained");
    }
}

/// Prints how long ago, in wall-clock nanoseconds, it was enqueued.
#[palermo::job(queue = "palermo-bench")]
pub async fn latency(sent_at_ns: u64) -> anyhow::Result<()> {
    println!("latency {}", now_ns().saturating_sub(sent_at_ns));
    Ok(())
}

/// Wall-clock nanoseconds since the Unix epoch: comparable between the harness and the
/// worker because both read the same machine's clock.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `palermo-bench worker …`: what `palermo::cli::main(|worker| worker)` does, with the
/// subcommand taken off the arguments.
pub fn worker_main() -> ExitCode {
    let args = WorkerArgs::parse_from(std::env::args_os().skip(1));
    cli::init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args, |worker| worker)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

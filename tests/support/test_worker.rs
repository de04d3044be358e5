//! A worker binary for the end-to-end tests that need a real process (signals, exit codes,
//! SIGKILL). Its jobs are small and controllable from their arguments.

use std::{process::ExitCode, time::Duration};

/// Sleeps `ms` milliseconds, then succeeds.
#[palermo::job(queue = "test", max_attempts = 1)]
async fn sleep_ms(ms: u64) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(())
}

/// Always fails with `reason`.
#[palermo::job(queue = "test", max_attempts = 1)]
async fn fail(reason: String) -> anyhow::Result<()> {
    Err(anyhow::anyhow!("{reason}"))
}

/// Kills the whole worker process, as a job with a fatal bug would.
#[palermo::job(queue = "test")]
async fn abort_now(why: String) -> anyhow::Result<()> {
    eprintln!("aborting: {why}");
    std::process::abort();
}

fn main() -> ExitCode {
    palermo::worker::cli::main(|worker| worker)
}

//! A worker binary for the end-to-end tests that need a real process (signals, exit codes,
//! SIGKILL). Its jobs are small and controllable from their arguments.

use std::{process::ExitCode, time::Duration};

/// Sleeps `ms` milliseconds, then succeeds.
#[palermo::job(queue = "test", max_attempts = 1)]
async fn sleep_ms(ms: u64) -> anyhow::Result<()> {
    // The tests wait for this line in the log to know that the job runs.
    eprintln!("sleep_ms: sleeping {ms} ms");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(())
}

/// Always fails with `reason`.
#[palermo::job(queue = "test", max_attempts = 1)]
async fn fail(reason: String) -> anyhow::Result<()> {
    Err(anyhow::anyhow!("{reason}"))
}

/// Works `work_ms` milliseconds, then appends its job id and a newline to the file at `path`
/// and fsyncs it: the durable record of the chaos test (tests/disruptive/disruptive_chaos.rs).
/// One short `O_APPEND` write per run, so lines of concurrent runs never interleave.
#[palermo::job(queue = "test", max_attempts = 3)]
async fn record_id(path: String, work_ms: u64, ctx: palermo::JobContext) -> anyhow::Result<()> {
    use std::io::Write;
    tokio::time::sleep(Duration::from_millis(work_ms)).await;
    let line = format!("{}\n", ctx.id);
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        file.write_all(line.as_bytes())?;
        file.sync_data()
    })
    .await??;
    Ok(())
}

/// Appends `<start> <end> <key>` (ms since the epoch) to the file at `path` after working
/// `ms` milliseconds: the record of the limits tests (tests/suite/limits.rs), which give its
/// limits with `--limit record_span:...`. One `O_APPEND` write per run.
#[palermo::job(queue = "test", max_attempts = 1)]
async fn record_span(path: String, ms: u64, key: String) -> anyhow::Result<()> {
    use std::io::Write;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    };
    let start = now();
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let line = format!("{start} {} {key}\n", now());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(line.as_bytes())?;
    Ok(())
}

/// Kills the whole worker process, as a job with a fatal bug would.
#[palermo::job(queue = "test")]
async fn abort_now(why: String) -> anyhow::Result<()> {
    eprintln!("aborting: {why}");
    std::process::abort();
}

/// A periodic job for tests/disruptive/disruptive_scheduler.rs: with `PALERMO_TEST_SCHEDULE`
/// (its name) and `PALERMO_TEST_TICKS` (its queue), the worker schedules it every second.
#[palermo::job(queue = "test")]
async fn tick() -> anyhow::Result<()> {
    Ok(())
}

fn main() -> ExitCode {
    let schedule = std::env::var("PALERMO_TEST_SCHEDULE").ok();
    let ticks = std::env::var("PALERMO_TEST_TICKS").ok();
    palermo::cli::main(move |worker| match (schedule, ticks) {
        (Some(name), Some(queue)) => {
            match palermo::Periodic::every(&name, "1s").and_then(|p| p.queue(&queue)) {
                Ok(every) => worker.periodic(every, Tick {}),
                Err(e) => {
                    eprintln!("bad test schedule: {e}");
                    worker
                }
            }
        }
        _ => worker,
    })
}

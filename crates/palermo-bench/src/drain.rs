//! Drain throughput and the worker's footprint, measured together.
//!
//! The worker starts on an empty queue (its idle RSS is read once its consumers are up), is
//! frozen with SIGSTOP while the queue is filled with `jobs` no-op jobs, and is timed from
//! SIGCONT to its `drained` line. Filling first means the figure is the consumer's speed, not
//! the publisher's, on a machine where both would share two cores. Its CPU time is read from
//! `/proc` before and after, its peak RSS (`VmHWM`) after.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::{
    bench::{Bench, Side},
    jobs::Noop,
    raw::Message,
    report::{Metric, Report},
};

/// One repetition of the drain at concurrency 1 and 4, for both sides.
pub async fn measure(bench: &Bench, rep: usize, report: &mut Report) -> anyhow::Result<()> {
    for concurrency in [1, 4] {
        for side in Side::in_turn(rep) {
            let palermo = side == Side::Palermo;
            let run = drain_once(bench, side, concurrency, rep).await?;
            let per_10k = run.cpu_s / bench.jobs as f64 * 10_000.0;
            if concurrency == 1 {
                report.add(Metric::Drain1, palermo, run.rate);
                report.add(Metric::RssIdle, palermo, run.idle_rss_mb);
                report.add(Metric::Cpu1, palermo, per_10k);
            } else {
                report.add(Metric::Drain4, palermo, run.rate);
                report.add(Metric::RssDraining, palermo, run.peak_rss_mb);
                report.add(Metric::Cpu4, palermo, per_10k);
            }
        }
    }
    Ok(())
}

struct DrainRun {
    rate: f64,
    idle_rss_mb: f64,
    peak_rss_mb: f64,
    cpu_s: f64,
}

async fn drain_once(
    bench: &Bench,
    side: Side,
    concurrency: usize,
    rep: usize,
) -> anyhow::Result<DrainRun> {
    let n = bench.jobs;
    let queue = bench
        .queue(&format!("drain-{}-c{concurrency}-r{rep}", side.name()))
        .await?;
    let mut worker = bench.spawn_worker(side, &queue, concurrency, n)?;
    bench
        .wait_for_consumers(&mut worker, &queue, concurrency as u32)
        .await?;
    // Let start-up finish (threads parked, buffers settled) before calling it idle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = worker.usage()?;

    worker.pause()?;
    let message = Message::of(&queue, &Noop { batch: n })?;
    bench.raw.publish_pipelined(&queue, &message, n).await?;
    let before = worker.usage()?;
    let started = Instant::now();
    worker.resume()?;
    let timeout = Duration::from_secs(60).max(Duration::from_millis(n));
    let line = worker.line(timeout).await?;
    let elapsed = started.elapsed();
    if line != "drained" {
        bail!("the worker printed {line:?} while draining {queue}");
    }
    let after = worker.usage()?;
    worker.stop().await?;
    bench.delete(&queue).await?;
    Ok(DrainRun {
        rate: n as f64 / elapsed.as_secs_f64(),
        idle_rss_mb: idle.rss_mb,
        peak_rss_mb: after.peak_rss_mb,
        cpu_s: after.cpu_s - before.cpu_s,
    })
}

//! Scale: drain with 1, 2 and 4 worker processes (concurrency 4 each) against as many raw
//! lapin processes (4 channels each), to show where RabbitMQ, not the client, becomes the
//! limit on this machine.
//!
//! Several processes share the queue, so none of them knows when the last job ran: the
//! harness polls the queue (a passive declare every 5 ms) and stops the clock when it holds
//! no ready message. At that moment at most one delivery per slot is still running (16 of
//! `--jobs` with 4 processes), which the figure leaves out; both sides are timed alike.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::{
    bench::{Bench, Side},
    jobs::Noop,
    raw::Message,
    report::{Metric, Report},
};

/// Slots (Palermo) or channels (raw lapin) per process.
const CONCURRENCY: usize = 4;

/// One repetition of the scale rows, for both sides.
pub async fn measure(bench: &Bench, rep: usize, report: &mut Report) -> anyhow::Result<()> {
    let rows = [
        (1, Metric::Scale1),
        (2, Metric::Scale2),
        (4, Metric::Scale4),
    ];
    for (processes, metric) in rows {
        for side in Side::in_turn(rep) {
            let rate = drain_shared(bench, side, processes, rep).await?;
            report.add(metric, side, rate);
        }
    }
    Ok(())
}

/// Jobs per second of `processes` workers of `side` draining one queue of `--jobs` no-ops.
async fn drain_shared(
    bench: &Bench,
    side: Side,
    processes: usize,
    rep: usize,
) -> anyhow::Result<f64> {
    let n = bench.jobs;
    let queue = bench
        .queue(&format!("scale-{}-x{processes}-r{rep}", side.name()))
        .await?;
    let mut workers = Vec::with_capacity(processes);
    for _ in 0..processes {
        // Never `drained`: no process sees the whole batch.
        workers.push(bench.spawn_worker(side, &queue, CONCURRENCY, u64::MAX)?);
    }
    let consumers = (processes * CONCURRENCY) as u32;
    for worker in &mut workers {
        bench.wait_for_consumers(worker, &queue, consumers).await?;
    }
    for worker in &workers {
        worker.pause()?;
    }
    let message = Message::of(&queue, &Noop { batch: u64::MAX })?;
    bench.raw.publish_pipelined(&queue, &message, n).await?;
    let started = Instant::now();
    for worker in &workers {
        worker.resume()?;
    }
    let deadline = started + Duration::from_secs(60).max(Duration::from_millis(n));
    loop {
        let (ready, _) = bench.queue_state(&queue).await?;
        if ready == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{ready} jobs still in {queue} after {:?}",
                started.elapsed()
            );
        }
        for worker in &mut workers {
            worker.check_alive()?;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    for worker in workers {
        worker.stop().await?;
    }
    bench.delete(&queue).await?;
    Ok(n as f64 / elapsed.as_secs_f64())
}

//! Drain throughput and the worker's footprint, measured together.
//!
//! The worker starts on an empty queue (its idle RSS is read once its consumers are up), is
//! frozen with SIGSTOP while the queue is filled with `jobs` no-op jobs, and is timed from
//! SIGCONT to its `drained` line. Filling first means the figure is the consumer's speed, not
//! the publisher's, on a machine where both would share two cores. Its CPU time is read from
//! `/proc` before and after, its peak RSS (`VmHWM`) after.
//!
//! The same drain, one process, gives the prefetch rows (a slot holding 10 or 100
//! deliveries) and the nap rows (each job sleeps 5 ms, as one waiting on I/O would).

use std::time::{Duration, Instant};

use anyhow::bail;

use palermo::admin::topology::QueueType;

use crate::{
    bench::{Bench, Side},
    jobs::{Nap, Noop},
    raw::Message,
    report::{Metric, Report},
};

/// One repetition of the drain at concurrency 1 and 4, for the three sides.
pub async fn measure(bench: &Bench, rep: usize, report: &mut Report) -> anyhow::Result<()> {
    for concurrency in [1, 4] {
        for side in Side::all_in_turn(rep) {
            // Quorum queues refuse a channel-wide (global) prefetch: that column stays empty.
            if side == Side::RawGlobal && bench.nodes.queue_type == QueueType::Quorum {
                continue;
            }
            let run = drain_once(bench, side, Load::noop(bench.jobs, concurrency), rep).await?;
            let per_10k = run.cpu_s / bench.jobs as f64 * 10_000.0;
            let [drain, rss, cpu] = if concurrency == 1 {
                [Metric::Drain1, Metric::RssIdle, Metric::Cpu1]
            } else {
                [Metric::Drain4, Metric::RssDraining, Metric::Cpu4]
            };
            report.add(drain, side, run.rate);
            report.add(cpu, side, per_10k);
            let rss_mb = if concurrency == 1 {
                run.idle_rss_mb
            } else {
                run.peak_rss_mb
            };
            report.add(rss, side, rss_mb);
        }
    }
    Ok(())
}

/// One repetition of the drain at concurrency 1 with prefetch 10 and 100, against raw lapin
/// at the same per-consumer prefetch.
pub async fn measure_prefetch(
    bench: &Bench,
    rep: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    for (prefetch, metric) in [(10, Metric::Prefetch10), (100, Metric::Prefetch100)] {
        for side in Side::in_turn(rep) {
            let load = Load {
                prefetch,
                ..Load::noop(bench.jobs, 1)
            };
            report.add(metric, side, drain_once(bench, side, load, rep).await?.rate);
        }
    }
    Ok(())
}

/// One repetition of the 5 ms nap at concurrency 1, 16 and 64. Each run is sized to last
/// about 2 s at the ideal rate (concurrency / 5 ms), capped at `--jobs`.
pub async fn measure_sleep(bench: &Bench, rep: usize, report: &mut Report) -> anyhow::Result<()> {
    let rows = [
        (1, Metric::Sleep1),
        (16, Metric::Sleep16),
        (64, Metric::Sleep64),
    ];
    for (concurrency, metric) in rows {
        let jobs = bench.jobs.min(400 * concurrency as u64);
        for side in Side::in_turn(rep) {
            let load = Load {
                nap_ms: Some(5),
                ..Load::noop(jobs, concurrency)
            };
            report.add(metric, side, drain_once(bench, side, load, rep).await?.rate);
        }
    }
    Ok(())
}

/// What one drain runs.
#[derive(Clone, Copy)]
pub struct Load {
    pub jobs: u64,
    pub concurrency: usize,
    pub prefetch: u16,
    /// Each job sleeps this long; `None` for the no-op.
    pub nap_ms: Option<u64>,
    /// A Palermo worker's `--limit JOB:SETTINGS`, named after the drain's queue.
    pub limit: Option<&'static str>,
}

impl Load {
    pub fn noop(jobs: u64, concurrency: usize) -> Self {
        Self {
            jobs,
            concurrency,
            prefetch: 1,
            nap_ms: None,
            limit: None,
        }
    }
}

pub struct DrainRun {
    pub rate: f64,
    idle_rss_mb: f64,
    peak_rss_mb: f64,
    cpu_s: f64,
}

pub async fn drain_once(
    bench: &Bench,
    side: Side,
    load: Load,
    rep: usize,
) -> anyhow::Result<DrainRun> {
    let (n, concurrency) = (load.jobs, load.concurrency);
    let nap = load.nap_ms.map_or(String::new(), |ms| format!("-nap{ms}"));
    let limited = if load.limit.is_some() { "-limit" } else { "" };
    let queue = bench
        .queue(&format!(
            "drain-{}-c{concurrency}-p{}{nap}{limited}-r{rep}",
            side.name(),
            load.prefetch
        ))
        .await?;
    let limit = load.limit.map(|limit| format!("{limit},name={queue}"));
    let mut worker = bench.spawn_worker_with(
        side,
        &queue,
        concurrency,
        load.prefetch,
        n,
        limit.as_deref(),
    )?;
    bench
        .wait_for_consumers(&mut worker, &queue, concurrency as u32)
        .await?;
    // Let start-up finish (threads parked, buffers settled) before calling it idle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = worker.usage()?;

    worker.pause()?;
    let message = match load.nap_ms {
        Some(ms) => Message::of(&queue, &Nap { batch: n, ms })?,
        None => Message::of(&queue, &Noop { batch: n })?,
    };
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
    if limit.is_some_and(|limit| limit.contains("rate=")) {
        bench
            .delete(&palermo::LimitNames::of(&queue, None).rate())
            .await?;
    }
    Ok(DrainRun {
        rate: n as f64 / elapsed.as_secs_f64(),
        idle_rss_mb: idle.rss_mb,
        peak_rss_mb: after.peak_rss_mb,
        cpu_s: after.cpu_s - before.cpu_s,
    })
}

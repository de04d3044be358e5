//! Enqueue throughput: Palermo's `enqueue_with` one job at a time (each waits for its confirm)
//! against raw lapin doing publish + confirm serially, and Palermo's `enqueue_many`
//! (publish all, then wait for the confirms) against raw lapin doing the same pipelining.

use std::time::Instant;

use palermo::Options;

use crate::{
    bench::{Bench, Side},
    jobs::Noop,
    raw::Message,
    report::{Metric, Report},
};

/// Runs both publish paths once, unmeasured, so that the first measurement does not pay
/// for cold connections, allocators and broker caches.
pub async fn warm_up(bench: &Bench) -> anyhow::Result<()> {
    let n = bench.jobs.min(1000);
    let job = Noop { batch: n };
    let queue = bench.queue("warm-up").await?;
    for _ in 0..n.min(100) {
        bench
            .client
            .enqueue_with(job.clone(), Options::new().queue(&queue))
            .await?;
    }
    bench
        .client
        .enqueue_many((0..n).map(|_| job.clone()), Options::new().queue(&queue))
        .await?;
    let message = Message::of(&queue, &job)?;
    bench
        .raw
        .publish_serial(&queue, &message, n.min(100))
        .await?;
    bench.raw.publish_pipelined(&queue, &message, n).await?;
    bench.delete(&queue).await
}

/// One repetition of both enqueue measurements, for both sides.
pub async fn measure(bench: &Bench, rep: usize, report: &mut Report) -> anyhow::Result<()> {
    let n = bench.jobs;
    let job = Noop { batch: n };
    for side in Side::in_turn(rep) {
        let queue = bench
            .queue(&format!("enqueue-one-{}-r{rep}", side.name()))
            .await?;
        let message = Message::of(&queue, &job)?;
        let started = Instant::now();
        match side {
            Side::Palermo => {
                for _ in 0..n {
                    bench
                        .client
                        .enqueue_with(job.clone(), Options::new().queue(&queue))
                        .await?;
                }
            }
            Side::Raw | Side::RawGlobal => bench.raw.publish_serial(&queue, &message, n).await?,
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        report.add(Metric::EnqueueOne, side, rate);
        bench.delete(&queue).await?;
    }
    for side in Side::in_turn(rep) {
        let queue = bench
            .queue(&format!("enqueue-many-{}-r{rep}", side.name()))
            .await?;
        let message = Message::of(&queue, &job)?;
        let started = Instant::now();
        match side {
            Side::Palermo => {
                let jobs = (0..n).map(|_| job.clone());
                bench
                    .client
                    .enqueue_many(jobs, Options::new().queue(&queue))
                    .await?;
            }
            Side::Raw | Side::RawGlobal => bench.raw.publish_pipelined(&queue, &message, n).await?,
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        report.add(Metric::EnqueueMany, side, rate);
        bench.delete(&queue).await?;
    }
    Ok(())
}

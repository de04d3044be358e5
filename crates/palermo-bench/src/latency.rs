//! Latency from enqueue to job start on an idle worker (concurrency 1): one probe at a time,
//! each carrying the wall-clock time it was enqueued; the job prints how long ago that was.
//! Raw lapin does the same with a publish + confirm and a consumer that reads the time.

use std::time::Duration;

use anyhow::Context;
use palermo::Options;

use crate::{
    bench::{Bench, Side},
    jobs::{now_ns, Latency},
    raw::Message,
    report::{quantile, Metric, Report},
};

/// One repetition of the latency measurement, for both sides.
pub async fn measure(bench: &Bench, rep: usize, report: &mut Report) -> anyhow::Result<()> {
    for side in Side::in_turn(rep) {
        let mut samples = probe(bench, side, rep).await?;
        samples.sort_by(f64::total_cmp);
        report.add(Metric::LatencyP50, side, quantile(&samples, 0.50));
        report.add(Metric::LatencyP99, side, quantile(&samples, 0.99));
        report.add(Metric::LatencyMax, side, quantile(&samples, 1.0));
    }
    Ok(())
}

/// The latencies in ms of `latency_jobs` probes through a fresh idle worker of `side`.
async fn probe(bench: &Bench, side: Side, rep: usize) -> anyhow::Result<Vec<f64>> {
    let queue = bench
        .queue(&format!("latency-{}-r{rep}", side.name()))
        .await?;
    let mut worker = bench.spawn_worker(side, &queue, 1, u64::MAX)?;
    bench.wait_for_consumers(&mut worker, &queue, 1).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The raw side sends Palermo's headers too, built once: only the body changes.
    let mut message = Message::of(&queue, &Latency { sent_at_ns: 0 })?;
    let mut samples = Vec::with_capacity(bench.latency_jobs);
    for _ in 0..bench.latency_jobs {
        let probe = Latency {
            sent_at_ns: now_ns(),
        };
        match side {
            Side::Palermo => {
                bench
                    .client
                    .enqueue_with(probe, Options::new().queue(&queue))
                    .await?;
            }
            Side::Raw | Side::RawGlobal => {
                message.body = serde_json::to_vec(&probe).context("encoding a probe")?;
                bench.raw.publish_confirmed(&queue, &message).await?;
            }
        }
        let line = worker.line(Duration::from_secs(30)).await?;
        let ns: f64 = line
            .strip_prefix("latency ")
            .and_then(|ns| ns.parse().ok())
            .with_context(|| format!("expected `latency <ns>`, the worker printed {line:?}"))?;
        samples.push(ns / 1e6);
    }
    worker.stop().await?;
    bench.delete(&queue).await?;
    Ok(samples)
}

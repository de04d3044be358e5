//! The rows of fleet-wide limits (docs/limits.md), beside raw lapin in the same run:
//!
//! - the no-op drain at concurrency 4 with a *limited job registered* in the worker (`nap`,
//!   `concurrency = 4`) and none of the drained jobs limited: what unlimited jobs pay for
//!   limits existing (goal: the Palermo / raw ratio ≥ 0.95 of the plain drain's);
//! - the no-op drain with `concurrency = 4` on the drained job at concurrency 4: every job
//!   takes and gives back a slot queue (its cost per job);
//! - a job limited to `rate = "200/s"` drained at concurrency 4: throughput against the rate.

use crate::{
    bench::{Bench, Side},
    drain::{drain_once, Load},
    report::{Metric, Report},
};

/// The rate of the rate row, in starts per second.
pub const RATE: u64 = 200;

/// One repetition of the limits rows.
pub async fn measure(bench: &Bench, rep: usize, report: &mut Report) -> anyhow::Result<()> {
    let rows = [
        (Metric::LimitRegistered, "nap:concurrency=4"),
        (Metric::LimitConcurrency4, "noop:concurrency=4"),
    ];
    for (metric, limit) in rows {
        for side in Side::in_turn(rep) {
            let load = Load {
                limit: Some(limit),
                ..Load::noop(bench.jobs, 4)
            };
            report.add(metric, side, drain_once(bench, side, load, rep).await?.rate);
        }
    }
    // Five seconds' worth at the rate: its first second's burst, then the window's pace.
    let load = Load {
        limit: Some("noop:rate=200/s"),
        ..Load::noop(RATE * 5, 4)
    };
    let run = drain_once(bench, Side::Palermo, load, rep).await?;
    report.add(Metric::LimitRate, Side::Palermo, run.rate);
    Ok(())
}

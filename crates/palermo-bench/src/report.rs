//! The table: every figure as the median of the repetitions with its min and max, Palermo
//! beside raw lapin, and their ratio, which is the number that holds on a noisy machine.
//!
//! The ratio is paired: each repetition measures both sides back to back, so its ratio
//! cancels the drift of a shared machine between repetitions; the table shows the median of
//! those ratios with their min and max, which also says how much to trust the row.

use std::fmt::Write;

use crate::bench::Side;

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    EnqueueOne,
    EnqueueMany,
    Drain1,
    Drain4,
    Prefetch10,
    Prefetch100,
    Scale1,
    Scale2,
    Scale4,
    Sleep1,
    Sleep16,
    Sleep64,
    LatencyP50,
    LatencyP99,
    LatencyMax,
    RssIdle,
    RssDraining,
    Cpu1,
    Cpu4,
    LimitRegistered,
    LimitConcurrency4,
    LimitRate,
}

impl Metric {
    /// Every row, in table order.
    pub const ALL: [Metric; 22] = [
        Metric::EnqueueOne,
        Metric::EnqueueMany,
        Metric::Drain1,
        Metric::Drain4,
        Metric::Prefetch10,
        Metric::Prefetch100,
        Metric::Scale1,
        Metric::Scale2,
        Metric::Scale4,
        Metric::Sleep1,
        Metric::Sleep16,
        Metric::Sleep64,
        Metric::LatencyP50,
        Metric::LatencyP99,
        Metric::LatencyMax,
        Metric::RssIdle,
        Metric::RssDraining,
        Metric::Cpu1,
        Metric::Cpu4,
        Metric::LimitRegistered,
        Metric::LimitConcurrency4,
        Metric::LimitRate,
    ];

    /// The row's label: what Palermo does, against what raw lapin does, in which unit.
    pub fn label(self) -> &'static str {
        match self {
            Metric::EnqueueOne => "enqueue one by one vs publish+confirm serial (jobs/s)",
            Metric::EnqueueMany => "enqueue_many vs publish pipelined, confirms after (jobs/s)",
            Metric::Drain1 => "drain no-op, concurrency 1 vs 1 channel (jobs/s)",
            Metric::Drain4 => "drain no-op, concurrency 4 vs 4 channels (jobs/s)",
            Metric::Prefetch10 => "drain no-op, concurrency 1, prefetch 10 vs 1 channel, prefetch 10 (jobs/s)",
            Metric::Prefetch100 => "drain no-op, concurrency 1, prefetch 100 vs 1 channel, prefetch 100 (jobs/s)",
            Metric::Scale1 => "drain no-op, 1 worker process × concurrency 4 vs 1 raw process × 4 channels (jobs/s)",
            Metric::Scale2 => "drain no-op, 2 worker processes × concurrency 4 vs 2 raw processes × 4 channels (jobs/s)",
            Metric::Scale4 => "drain no-op, 4 worker processes × concurrency 4 vs 4 raw processes × 4 channels (jobs/s)",
            Metric::Sleep1 => "job sleeping 5 ms, concurrency 1 vs 1 channel (jobs/s)",
            Metric::Sleep16 => "job sleeping 5 ms, concurrency 16 vs 16 channels (jobs/s)",
            Metric::Sleep64 => "job sleeping 5 ms, concurrency 64 vs 64 channels (jobs/s)",
            Metric::LatencyP50 => "latency enqueue → start, p50, idle (ms)",
            Metric::LatencyP99 => "latency enqueue → start, p99, idle (ms)",
            Metric::LatencyMax => "latency enqueue → start, max, idle (ms)",
            Metric::RssIdle => "worker RSS idle, concurrency 1 (MB)",
            Metric::RssDraining => "worker peak RSS draining, concurrency 4 (MB)",
            Metric::Cpu1 => "worker CPU s per 10,000 jobs, concurrency 1",
            Metric::Cpu4 => "worker CPU s per 10,000 jobs, concurrency 4",
            Metric::LimitRegistered => "drain no-op, concurrency 4, a limited job registered (not drained) vs 4 channels (jobs/s)",
            Metric::LimitConcurrency4 => "drain no-op with concurrency = 4, at concurrency 4 vs 4 channels (jobs/s)",
            Metric::LimitRate => "drain no-op with rate = \"200/s\", concurrency 4 (jobs/s)",
        }
    }

    /// The goal for the row, if it has one.
    fn goal(self) -> &'static str {
        match self {
            Metric::EnqueueMany | Metric::Drain1 | Metric::Drain4 => "≥ 0.90",
            Metric::Cpu1 | Metric::Cpu4 => "≤ 1.10",
            Metric::RssIdle => "≤ 15 MB",
            Metric::Sleep1 => "ideal 200 (1 / 5 ms)",
            Metric::Sleep16 => "ideal 3200 (16 / 5 ms)",
            Metric::Sleep64 => "ideal 12800 (64 / 5 ms), broker-bound",
            Metric::LimitRegistered => "≥ 0.95 × the plain drain's ratio",
            Metric::LimitRate => "ideal 200",
            _ => "",
        }
    }

    fn decimals(self) -> usize {
        match self {
            Metric::LatencyP50 | Metric::LatencyP99 | Metric::LatencyMax => 2,
            Metric::RssIdle | Metric::RssDraining => 1,
            Metric::Cpu1 | Metric::Cpu4 => 3,
            _ => 0,
        }
    }
}

/// The samples of every row, one per repetition and side.
#[derive(Default)]
pub struct Report {
    /// Per row, the samples of [`Side::Palermo`], [`Side::Raw`] and [`Side::RawGlobal`].
    rows: Vec<(Metric, [Vec<f64>; 3])>,
}

/// The table's header; the smoke test looks for it.
pub const HEADER: &str = "| measure | Palermo median (min–max) | raw lapin median (min–max) | Palermo / raw, paired median (min–max) | raw lapin, global QoS, median (min–max) | Palermo / raw global QoS, paired median (min–max) | goal |";

impl Report {
    /// Adds one repetition's figure for `side`.
    pub fn add(&mut self, metric: Metric, side: Side, value: f64) {
        let index = match self.rows.iter().position(|(m, _)| *m == metric) {
            Some(index) => index,
            None => {
                self.rows.push((metric, Default::default()));
                self.rows.len() - 1
            }
        };
        self.rows[index].1[side as usize].push(value);
    }

    /// A Markdown table of the rows measured, in [`Metric::ALL`] order. The raw lapin
    /// columns are per-consumer prefetch (the yardstick) and, where measured, global QoS.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(HEADER);
        out.push_str("\n|---|---|---|---|---|---|---|\n");
        for metric in Metric::ALL {
            let Some((_, [palermo, raw, global])) = self.rows.iter().find(|(m, _)| *m == metric)
            else {
                continue;
            };
            let d = metric.decimals();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                metric.label(),
                Spread::show(Spread::of(palermo), d),
                Spread::show(Spread::of(raw), d),
                Spread::show(Spread::of(&paired(palermo, raw)), 2),
                Spread::show(Spread::of(global), d),
                Spread::show(Spread::of(&paired(palermo, global)), 2),
                metric.goal()
            );
        }
        out
    }
}

/// The ratios `a / b` of the repetitions both sides measured.
fn paired(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter(|(_, b)| **b > 0.0)
        .map(|(a, b)| a / b)
        .collect()
}

/// Median, min and max of some samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Spread> {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        if n == 0 {
            return None;
        }
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }

    fn show(spread: Option<Spread>, decimals: usize) -> String {
        match spread {
            Some(s) => format!(
                "{:.d$} ({:.d$}–{:.d$})",
                s.median,
                s.min,
                s.max,
                d = decimals
            ),
            None => "–".into(),
        }
    }
}

/// The `q` quantile (0..=1) of sorted samples, by nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_quantiles_and_the_table() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).expect("samples");
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 2.0]).expect("samples").median, 1.5);
        assert_eq!(Spread::of(&[]), None);
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.5), 50.0);
        assert_eq!(quantile(&sorted, 0.99), 99.0);
        assert_eq!(quantile(&sorted, 1.0), 100.0);

        let mut report = Report::default();
        for (palermo, raw) in [(900.0, 1000.0), (1000.0, 800.0), (450.0, 600.0)] {
            report.add(Metric::Drain1, Side::Palermo, palermo);
            report.add(Metric::Drain1, Side::Raw, raw);
        }
        let table = report.table();
        assert!(
            table.contains("| 900 (450–1000) | 800 (600–1000) | 0.90 (0.75–1.25) | – | – |"),
            "{table}"
        );
    }
}

//! `/metrics`' histograms: run time per job (`palermo_job_duration_seconds`) and wait to start
//! per queue (`palermo_queue_latency_seconds`), from the store's all-time bucket totals.
//!
//! `prometheus-client`'s own histogram observes values one by one; these are sums already
//! made, so [`Frozen`] hands them to its encoder as they are (it writes `_bucket`, `_sum`
//! and `_count` with cumulative bucket counts). Every series gets the same `le` labels: the
//! bounds of this version's workers plus any other bound stored, then `+Inf`.

use std::collections::BTreeMap;

use palermo::admin::wire::event::TIMING_BOUNDS_MS;
use palermo_store::timings::{BucketSum, UNBOUNDED};
use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::MetricType,
};

type Labels = Vec<(String, String)>;

/// One series: its labels, buckets as (upper bound in seconds, count in that bucket alone),
/// the sum in seconds, the count.
type Series = (Labels, Vec<(f64, u64)>, f64, u64);

/// One histogram per label set.
#[derive(Debug, Default)]
pub(crate) struct Frozen(Vec<Series>);

impl Frozen {
    /// A histogram per group (`label` = the group's name), from the store's buckets.
    pub(crate) fn from_groups(label: &str, groups: &BTreeMap<String, Vec<BucketSum>>) -> Frozen {
        let mut bounds: Vec<i64> = TIMING_BOUNDS_MS
            .iter()
            .map(|&b| i64::try_from(b).unwrap_or(i64::MAX))
            .collect();
        bounds.extend(groups.values().flatten().map(|b| b.le_ms));
        bounds.push(UNBOUNDED);
        bounds.sort_unstable();
        bounds.dedup();
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Frozen(
            groups
                .iter()
                .map(|(name, buckets)| {
                    let per_bound: BTreeMap<i64, u64> =
                        buckets.iter().map(|b| (b.le_ms, count(b.count))).collect();
                    let series = bounds
                        .iter()
                        .map(|le| {
                            let upper = if *le == UNBOUNDED {
                                f64::INFINITY
                            } else {
                                *le as f64 / 1000.0
                            };
                            (upper, per_bound.get(le).copied().unwrap_or(0))
                        })
                        .collect();
                    let sum = buckets.iter().map(|b| b.sum_us as f64).sum::<f64>() / 1e6;
                    let total = buckets.iter().map(|b| count(b.count)).sum();
                    (vec![(label.to_string(), name.clone())], series, sum, total)
                })
                .collect(),
        )
    }
}

impl EncodeMetric for Frozen {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, buckets, sum, count) in &self.0 {
            encoder
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

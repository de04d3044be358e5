//! Percentiles from histogram buckets, as Prometheus' `histogram_quantile` reads them: the
//! bucket holding the rank is found exactly, and the value is interpolated linearly inside
//! it. So a percentile is known to within its bucket (the workers' bounds are ×2 to ×2.5
//! apart); in the last, unbounded bucket it reads as that bucket's lower bound, 1 h.

use palermo::admin::wire::event::TIMING_BOUNDS_MS;
use serde::Serialize;

/// The upper bound stored for the last bucket, which has none.
pub const UNBOUNDED: i64 = i64::MAX;

/// One bucket: its upper bound ([`UNBOUNDED`] for the last), observations and their sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BucketSum {
    pub le_ms: i64,
    pub count: i64,
    pub sum_us: i64,
}

/// Percentiles of one histogram over a window, ms; `None` without observations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: i64,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Percentiles {
    /// Reads the percentiles of `buckets` (any order).
    pub fn of(buckets: &[BucketSum]) -> Percentiles {
        let mut sorted = buckets.to_vec();
        sorted.sort_by_key(|b| b.le_ms);
        let count: i64 = sorted.iter().map(|b| b.count).sum();
        let sum_us: i64 = sorted.iter().map(|b| b.sum_us).sum();
        let round = |ms: f64| (ms * 1000.0).round() / 1000.0;
        Percentiles {
            count,
            mean_ms: (count > 0).then(|| round(sum_us as f64 / count as f64 / 1000.0)),
            p50_ms: quantile(&sorted, 0.50).map(round),
            p95_ms: quantile(&sorted, 0.95).map(round),
            p99_ms: quantile(&sorted, 0.99).map(round),
        }
    }
}

/// The `q` quantile (0 to 1) of `buckets`, sorted by bound, in ms: the bucket where the
/// cumulative count reaches `q × total`, interpolated linearly between its lower and upper
/// bound. In the unbounded bucket, its lower bound. `None` when empty.
///
/// Empty buckets are not stored, so a bucket's lower bound is the bound before its own in
/// [`TIMING_BOUNDS_MS`] (or the bucket before it, for other bounds).
pub fn quantile(buckets: &[BucketSum], q: f64) -> Option<f64> {
    let total: i64 = buckets.iter().map(|b| b.count).sum();
    if total <= 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let (mut below, mut lower) = (0i64, 0i64);
    for bucket in buckets.iter().filter(|b| b.count > 0) {
        let standard = TIMING_BOUNDS_MS
            .iter()
            .map(|&b| i64::try_from(b).unwrap_or(i64::MAX))
            .take_while(|&b| b < bucket.le_ms)
            .last()
            .unwrap_or(0);
        lower = lower.max(standard);
        if (below + bucket.count) as f64 >= rank {
            if bucket.le_ms == UNBOUNDED {
                return Some(lower as f64);
            }
            let inside = (rank - below as f64) / bucket.count as f64;
            return Some(lower as f64 + (bucket.le_ms - lower) as f64 * inside);
        }
        below += bucket.count;
        lower = bucket.le_ms;
    }
    Some(lower as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(le_ms: i64, count: i64) -> BucketSum {
        BucketSum {
            le_ms,
            count,
            sum_us: 0,
        }
    }

    #[test]
    fn a_quantile_is_interpolated_inside_its_bucket() {
        // 100 runs: 50 up to 10 ms, 40 in (10, 20], 10 in (20, 50].
        let buckets = [bucket(10, 50), bucket(20, 40), bucket(50, 10)];
        assert_eq!(quantile(&buckets, 0.5), Some(10.0));
        assert_eq!(quantile(&buckets, 0.7), Some(15.0));
        assert_eq!(quantile(&buckets, 0.95), Some(35.0));
        // The lower bound of (5, 10] is 5, though the bucket below it is empty.
        assert_eq!(quantile(&buckets, 0.25), Some(7.5));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn in_the_unbounded_bucket_a_quantile_is_its_lower_bound() {
        let buckets = [bucket(100, 1), bucket(UNBOUNDED, 9)];
        assert_eq!(quantile(&buckets, 0.99), Some(3_600_000.0));
        assert_eq!(quantile(&buckets, 0.05), Some(75.0));
        let p = Percentiles::of(&[BucketSum {
            le_ms: 2,
            count: 4,
            sum_us: 6000,
        }]);
        assert_eq!((p.count, p.mean_ms, p.p50_ms), (4, Some(1.5), Some(1.5)));
    }
}

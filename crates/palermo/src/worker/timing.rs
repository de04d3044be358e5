//! Run-time and wait histograms, recorded on the hot path and carried in heartbeats.
//!
//! Each queue and job has two ([`super::stats`] keeps them beside its counters): how long
//! runs took and how long jobs waited to start. A record is two relaxed atomic additions
//! into fixed buckets ([`TIMING_BOUNDS_MS`]), found by a binary search over 20 bounds: no
//! lock, no allocation, nothing shared with other queues and jobs. The buckets only grow,
//! like the counters, so the recorder stores the difference from the last heartbeat it saw
//! and a lost or repeated heartbeat changes no total. Percentiles are read from the bucket
//! sums on the admin side (`palermo_store::timings`), known to within one bucket. A job's
//! wait is counted from when it was ready: enqueued, or due ([`waited`]).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use lapin::message::Delivery;

use crate::wire::{
    self,
    event::{self, TIMING_BOUNDS_MS},
    header, JobMeta,
};

/// Buckets: one per bound, and one for everything longer.
const BUCKETS: usize = TIMING_BOUNDS_MS.len() + 1;

/// A cumulative histogram over [`TIMING_BOUNDS_MS`].
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
    sums_us: [AtomicU64; BUCKETS],
}

impl Histogram {
    /// Counts one observation.
    pub fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        // The first bound at or above the observation (a bound is inclusive).
        let bucket = TIMING_BOUNDS_MS.partition_point(|&bound| bound.saturating_mul(1000) < us);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sums_us[bucket].fetch_add(us, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The histogram as a heartbeat carries it, trailing empty buckets left out.
    pub fn snapshot(&self) -> event::Histogram {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let used = counts
            .iter()
            .rposition(|&c| c > 0)
            .map_or(0, |last| last + 1);
        event::Histogram {
            sums_us: self.sums_us[..used]
                .iter()
                .map(|s| s.load(Ordering::Relaxed))
                .collect(),
            counts: counts[..used].to_vec(),
        }
    }
}

/// How long the job of `meta` waited to start at `now`: since it was enqueued, or since it
/// was due when it went through the delay queues (a retry, a snooze, a scheduled job).
/// `None` for a message that does not say when it was enqueued.
pub(crate) fn waited(delivery: &Delivery, meta: &JobMeta, now: i64) -> Option<std::time::Duration> {
    if meta.enqueued_at_ms <= 0 {
        return None;
    }
    let due = wire::get_int(wire::headers(&delivery.properties), header::NEXT_RUN_AT)
        .ok()
        .flatten()
        .unwrap_or(0);
    let ready = meta.enqueued_at_ms.max(due);
    // Clocks of different hosts: a start "before" the enqueue counts as no wait.
    Some(std::time::Duration::from_millis(
        u64::try_from(now - ready).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use lapin::BasicProperties;

    use super::*;
    use crate::worker::stats::tests::meta;

    #[test]
    fn a_job_waits_from_its_enqueue_or_from_when_it_was_due() {
        let mut meta = meta("mail", "send");
        meta.enqueued_at_ms = 10_000;
        let plain = Delivery::mock(1, "".into(), "mail".into(), false, Vec::new());
        assert_eq!(
            waited(&plain, &meta, 10_250),
            Some(std::time::Duration::from_millis(250))
        );
        let mut headers = lapin::types::FieldTable::default();
        wire::put_int(&mut headers, header::NEXT_RUN_AT, 60_000);
        let mut delayed = Delivery::mock(2, "".into(), "mail".into(), false, Vec::new());
        delayed.properties = BasicProperties::default().with_headers(headers);
        assert_eq!(
            waited(&delayed, &meta, 60_040),
            Some(std::time::Duration::from_millis(40)),
            "a delayed job waits from its due time"
        );
        assert_eq!(
            waited(&plain, &meta, 9_000),
            Some(std::time::Duration::ZERO),
            "clock skew"
        );
        meta.enqueued_at_ms = 0;
        assert_eq!(waited(&plain, &meta, 9_000), None);
    }

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_holds_them() {
        let histogram = Histogram::default();
        let ms = Duration::from_millis;
        for took in [
            Duration::from_micros(300),  // bucket 0 (≤ 1 ms)
            ms(1),                       // bucket 0: bounds are inclusive
            Duration::from_micros(1001), // bucket 1 (≤ 2 ms)
            ms(150),                     // bucket 7 (≤ 200 ms)
            ms(150),
        ] {
            histogram.record(took);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts, [2, 1, 0, 0, 0, 0, 0, 2]);
        assert_eq!(snapshot.sums_us, [1300, 1001, 0, 0, 0, 0, 0, 300_000]);
        assert_eq!(histogram.count(), 5);
    }

    #[test]
    fn longer_than_every_bound_is_the_last_bucket() {
        let histogram = Histogram::default();
        histogram.record(Duration::from_secs(7200));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts.len(), BUCKETS);
        assert_eq!(snapshot.counts[BUCKETS - 1], 1);
        assert!(Histogram::default().snapshot().counts.is_empty());
    }
}

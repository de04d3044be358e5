//! Per-job metrics: how long runs took and how long jobs waited, from the histograms workers
//! carry in their heartbeats (`timings`, docs/wire-format.md).
//!
//! Recording works as for the counters ([`crate::stats`]): the buckets only grow, the store
//! keeps the last values seen from each worker run (`worker_timings`) and adds the difference
//! to the heartbeat's minute (`timing_minutes`, pruned with the minute statistics) and to the
//! all-time totals (`timing_totals`, for `/metrics`). Buckets are stored by their upper bound,
//! not their index, so workers with other bounds still add up.
//!
//! Percentiles are read from the bucket sums by `percentiles.rs` ([`quantile`]).

use std::collections::{BTreeMap, HashMap};

use palermo::admin::wire::event::{Heartbeat, Histogram};
use sqlx::{Any, Row, Transaction};

pub use crate::percentiles::{quantile, BucketSum, Percentiles};
use crate::{
    error::{Result, StoreError},
    series::{HOUR_MS, MINUTE_MS},
    Store,
};

pub use crate::percentiles::UNBOUNDED;

/// The two histograms of each queue and job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Run time: from the start of the job's function to its end.
    Duration,
    /// Wait: from when the job was ready (enqueued or due) to the start of its run.
    Latency,
}

impl Kind {
    /// As stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Duration => "duration",
            Kind::Latency => "latency",
        }
    }
}

/// What [`Store::timing_buckets`] sums over: every queue of a job, or every job of a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// Per job name.
    Job,
    /// Per queue.
    Queue,
}

/// Adds the buckets `beat` filled since the worker's previous event to the metrics.
pub(crate) async fn add_increments(tx: &mut Transaction<'_, Any>, beat: &Heartbeat) -> Result<()> {
    if beat.timings.is_empty() {
        return Ok(());
    }
    let doing = "recording job metrics";
    let worker = beat.id.to_string();
    let rows = sqlx::query(
        "SELECT queue, job, kind, le_ms, count, sum_us FROM worker_timings WHERE worker_id = $1",
    )
    .bind(&worker)
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::query(doing))?;
    let mut seen: HashMap<(String, String, String, i64), (i64, i64)> = HashMap::new();
    for row in &rows {
        let read = || -> Result<_, sqlx::Error> {
            Ok((
                (
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                ),
                (row.try_get(4)?, row.try_get(5)?),
            ))
        };
        let (key, value) = read().map_err(StoreError::query(doing))?;
        seen.insert(key, value);
    }
    let minute = beat.sent_at.div_euclid(MINUTE_MS) * MINUTE_MS;
    // In key order, as the counters: two recorders take their row locks in the same order.
    let mut timings: Vec<_> = beat.timings.iter().collect();
    timings.sort_by(|a, b| (&a.queue, &a.job).cmp(&(&b.queue, &b.job)));
    for timing in timings {
        for (kind, histogram) in [
            (Kind::Duration, &timing.duration),
            (Kind::Latency, &timing.latency),
        ] {
            for bucket in buckets(&beat.timing_bounds_ms, histogram) {
                let key = (
                    timing.queue.clone(),
                    timing.job.clone(),
                    kind.as_str().to_string(),
                    bucket.le_ms,
                );
                let before = seen.get(&key).copied().unwrap_or((0, 0));
                let delta = (
                    (bucket.count - before.0).max(0),
                    (bucket.sum_us - before.1).max(0),
                );
                if delta == (0, 0) {
                    continue;
                }
                let (queue, job, kind, le_ms) = key;
                sqlx::query(
                    "INSERT INTO worker_timings (worker_id, queue, job, kind, le_ms, count, sum_us) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (worker_id, queue, job, kind, le_ms) DO UPDATE SET \
                     count = excluded.count, sum_us = excluded.sum_us",
                )
                .bind(&worker)
                .bind(&queue)
                .bind(&job)
                .bind(&kind)
                .bind(le_ms)
                .bind(before.0.max(bucket.count))
                .bind(before.1.max(bucket.sum_us))
                .execute(&mut **tx)
                .await
                .map_err(StoreError::query(doing))?;
                sqlx::query(
                    "INSERT INTO timing_minutes (minute, queue, job, kind, le_ms, count, sum_us) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (minute, queue, job, kind, le_ms) DO UPDATE SET \
                     count = timing_minutes.count + excluded.count, \
                     sum_us = timing_minutes.sum_us + excluded.sum_us",
                )
                .bind(minute)
                .bind(&queue)
                .bind(&job)
                .bind(&kind)
                .bind(le_ms)
                .bind(delta.0)
                .bind(delta.1)
                .execute(&mut **tx)
                .await
                .map_err(StoreError::query(doing))?;
                sqlx::query(
                    "INSERT INTO timing_totals (queue, job, kind, le_ms, count, sum_us) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (queue, job, kind, le_ms) DO UPDATE SET \
                     count = timing_totals.count + excluded.count, \
                     sum_us = timing_totals.sum_us + excluded.sum_us",
                )
                .bind(&queue)
                .bind(&job)
                .bind(&kind)
                .bind(le_ms)
                .bind(delta.0)
                .bind(delta.1)
                .execute(&mut **tx)
                .await
                .map_err(StoreError::query(doing))?;
            }
        }
    }
    Ok(())
}

/// The largest count or sum taken from one event: far beyond any real one (35 years of
/// µs), and small enough that adding it to a stored total cannot overflow a BIGINT, which
/// would fail the transaction and return a malformed event to its queue for ever.
const MAX_VALUE: u64 = 1 << 50;

/// The non-empty buckets of `histogram` with their bounds; a bucket past the last bound is
/// the unbounded one, and any further one (a malformed event) is left out.
fn buckets<'a>(
    bounds: &'a [u64],
    histogram: &'a Histogram,
) -> impl Iterator<Item = BucketSum> + 'a {
    let as_i64 = |n: u64| i64::try_from(n.min(MAX_VALUE)).unwrap_or(i64::MAX);
    histogram
        .counts
        .iter()
        .enumerate()
        .take(bounds.len() + 1)
        .filter(|(_, &count)| count > 0)
        .map(move |(i, &count)| BucketSum {
            le_ms: bounds.get(i).map_or(UNBOUNDED, |&b| as_i64(b)),
            count: as_i64(count),
            sum_us: as_i64(histogram.sums_us.get(i).copied().unwrap_or(0)),
        })
}

impl Store {
    /// The buckets of `kind` summed per job or per queue, over the minutes from `since` on;
    /// `since` = `None` reads the all-time totals.
    pub async fn timing_buckets(
        &self,
        kind: Kind,
        by: By,
        since: Option<i64>,
    ) -> Result<BTreeMap<String, Vec<BucketSum>>> {
        let doing = "reading job metrics";
        let column = match by {
            By::Job => "job",
            By::Queue => "queue",
        };
        let (table, window) = match since {
            Some(_) => ("timing_minutes", "AND minute >= $2"),
            None => ("timing_totals", ""),
        };
        let sql = format!(
            "SELECT {column}, le_ms, CAST(SUM(count) AS BIGINT), CAST(SUM(sum_us) AS BIGINT) \
             FROM {table} WHERE kind = $1 {window} GROUP BY {column}, le_ms"
        );
        let mut query = sqlx::query(&sql).bind(kind.as_str());
        if let Some(since) = since {
            query = query.bind(since);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(doing))?;
        let mut grouped: BTreeMap<String, Vec<BucketSum>> = BTreeMap::new();
        for row in &rows {
            let read = || -> Result<_, sqlx::Error> {
                Ok((
                    row.try_get::<String, _>(0)?,
                    BucketSum {
                        le_ms: row.try_get(1)?,
                        count: row.try_get(2)?,
                        sum_us: row.try_get(3)?,
                    },
                ))
            };
            let (name, bucket) = read().map_err(StoreError::query(doing))?;
            grouped.entry(name).or_default().push(bucket);
        }
        for buckets in grouped.values_mut() {
            buckets.sort_by_key(|b| b.le_ms);
        }
        Ok(grouped)
    }

    /// Run-time buckets per job and minute of the last hour (the current minute included):
    /// job → minute start → buckets.
    pub async fn duration_minutes(
        &self,
        now: i64,
    ) -> Result<BTreeMap<String, BTreeMap<i64, Vec<BucketSum>>>> {
        let doing = "reading job metrics";
        let since = hour_start(now);
        let rows = sqlx::query(
            "SELECT job, minute, le_ms, CAST(SUM(count) AS BIGINT), CAST(SUM(sum_us) AS BIGINT) \
             FROM timing_minutes WHERE kind = 'duration' AND minute >= $1 \
             GROUP BY job, minute, le_ms",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(doing))?;
        let mut out: BTreeMap<String, BTreeMap<i64, Vec<BucketSum>>> = BTreeMap::new();
        for row in &rows {
            let read = || -> Result<_, sqlx::Error> {
                Ok((
                    row.try_get::<String, _>(0)?,
                    row.try_get::<i64, _>(1)?,
                    BucketSum {
                        le_ms: row.try_get(2)?,
                        count: row.try_get(3)?,
                        sum_us: row.try_get(4)?,
                    },
                ))
            };
            let (job, minute, bucket) = read().map_err(StoreError::query(doing))?;
            out.entry(job)
                .or_default()
                .entry(minute)
                .or_default()
                .push(bucket);
        }
        Ok(out)
    }
}

/// The first minute of the last hour at `now` (the current minute is the 60th).
pub(crate) fn hour_start(now: i64) -> i64 {
    now.div_euclid(MINUTE_MS) * MINUTE_MS - HOUR_MS + MINUTE_MS
}

/// The first minute of the last day at `now`.
pub(crate) fn day_start(now: i64) -> i64 {
    now.div_euclid(MINUTE_MS) * MINUTE_MS - 24 * HOUR_MS + MINUTE_MS
}

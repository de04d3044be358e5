//! The Metrics page's numbers (and `/api/metrics`'): per job, runs, failures and run-time
//! percentiles over the last hour and day, with the last hour's p50 and p95 per minute for
//! its chart; per queue, the wait from enqueue to start (p50, p95) over the same windows.
//!
//! Runs and failures come from the minute counters ([`crate::stats`]), the times from the
//! minute histograms ([`crate::timings`]); both are kept for
//! [`crate::RecorderConfig::stats_retention`] (7 days by default), longer than either window.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use sqlx::Row;

use crate::{
    error::{Result, StoreError},
    series::MINUTE_MS,
    stats::Counts,
    timings::{day_start, hour_start, By, Kind, Percentiles},
    Store,
};

/// One job over one window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Window {
    /// Runs finished (failed ones included) and failed.
    #[serde(flatten)]
    pub runs: Counts,
    /// How long the runs took.
    pub duration: Percentiles,
}

/// One minute of a job's chart.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MinutePoint {
    pub start_ms: i64,
    pub runs: i64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

/// A job name's numbers, whatever queue ran it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobMetrics {
    pub job: String,
    pub last_hour: Window,
    pub last_day: Window,
    /// The last 60 minutes, oldest first, every minute present.
    pub minutes: Vec<MinutePoint>,
}

/// A queue's wait from enqueue (or due time) to start.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueLatency {
    pub queue: String,
    pub last_hour: Percentiles,
    pub last_day: Percentiles,
}

/// What the Metrics page shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metrics {
    /// The histograms' bucket bounds of this version's workers, ms: a percentile is known to
    /// within its bucket.
    pub bucket_bounds_ms: Vec<u64>,
    pub jobs: Vec<JobMetrics>,
    pub queues: Vec<QueueLatency>,
}

impl Store {
    /// Per-job and per-queue metrics over the hour and the day before `now`.
    pub async fn metrics(&self, now: i64) -> Result<Metrics> {
        let (hour, day) = (hour_start(now), day_start(now));
        let (runs_hour, runs_day, duration_hour, duration_day, latency_hour, latency_day, minutes) =
            tokio::try_join!(
                self.runs_by_job(hour),
                self.runs_by_job(day),
                self.timing_buckets(Kind::Duration, By::Job, Some(hour)),
                self.timing_buckets(Kind::Duration, By::Job, Some(day)),
                self.timing_buckets(Kind::Latency, By::Queue, Some(hour)),
                self.timing_buckets(Kind::Latency, By::Queue, Some(day)),
                self.duration_minutes(now),
            )?;
        let names: BTreeSet<&String> = runs_day.keys().chain(duration_day.keys()).collect();
        let jobs = names
            .into_iter()
            .map(|job| {
                let window =
                    |runs: &HashMap<String, Counts>, buckets: &BTreeMap<_, Vec<_>>| Window {
                        runs: runs.get(job).copied().unwrap_or_default(),
                        duration: buckets
                            .get(job)
                            .map(|b: &Vec<_>| Percentiles::of(b))
                            .unwrap_or_default(),
                    };
                let per_minute = minutes.get(job);
                JobMetrics {
                    job: job.clone(),
                    last_hour: window(&runs_hour, &duration_hour),
                    last_day: window(&runs_day, &duration_day),
                    minutes: (0..60)
                        .map(|i| {
                            let start = hour + i * MINUTE_MS;
                            let p = per_minute
                                .and_then(|m| m.get(&start))
                                .map(|b| Percentiles::of(b))
                                .unwrap_or_default();
                            MinutePoint {
                                start_ms: start,
                                runs: p.count,
                                p50_ms: p.p50_ms,
                                p95_ms: p.p95_ms,
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        let queues = latency_day
            .iter()
            .map(|(queue, day)| QueueLatency {
                queue: queue.clone(),
                last_hour: latency_hour
                    .get(queue)
                    .map(|b| Percentiles::of(b))
                    .unwrap_or_default(),
                last_day: Percentiles::of(day),
            })
            .collect();
        Ok(Metrics {
            bucket_bounds_ms: palermo::admin::wire::event::TIMING_BOUNDS_MS.to_vec(),
            jobs,
            queues,
        })
    }

    /// Runs and failures per job name since `since`.
    async fn runs_by_job(&self, since: i64) -> Result<HashMap<String, Counts>> {
        let doing = "reading job metrics";
        let rows = sqlx::query(
            "SELECT job, CAST(SUM(processed) AS BIGINT), CAST(SUM(failed) AS BIGINT) \
             FROM stats_minutes WHERE minute >= $1 GROUP BY job",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(doing))?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    Counts {
                        processed: row.try_get(1)?,
                        failed: row.try_get(2)?,
                    },
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::query(doing))
    }
}

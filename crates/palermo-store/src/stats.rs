//! Throughput statistics: processed and failed runs per minute, queue and job, and all-time
//! totals.
//!
//! Heartbeats carry counters that only grow (since the worker started). For each worker run
//! the store keeps the last values it saw (`worker_counters`) and adds the difference to the
//! minute of the heartbeat and to the totals. A repeated or late heartbeat adds nothing, and
//! a lost one is made up by the next, so the totals are exact for every worker that stopped
//! cleanly (its offline event carries the final counts); a worker killed loses at most the
//! counts since its last heartbeat.
//!
//! Several recorders on one store (two dashboards, a dashboard and the CLI) share the events
//! queue, so each event reaches one of them; two events of one worker recorded at once are
//! still counted once each: [`crate::Store::record_heartbeat`] first upserts the worker's
//! row, which locks it, so the second transaction reads the counters the first one wrote.

use std::collections::HashMap;

use palermo::admin::wire::event::Heartbeat;
use serde::Serialize;
use sqlx::{Any, Row, Transaction};

use crate::{
    error::{Result, StoreError},
    time, Store,
};

const MINUTE_MS: i64 = 60_000;

/// Processed and failed runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Runs finished, whatever their outcome.
    pub processed: i64,
    /// Runs failed (included in `processed`).
    pub failed: i64,
}

/// The numbers of one queue and job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobStats {
    pub queue: String,
    pub job: String,
    pub total: Counts,
    pub last_hour: Counts,
}

/// One minute of throughput.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Minute {
    #[serde(serialize_with = "time::serialize")]
    pub minute: i64,
    #[serde(flatten)]
    pub counts: Counts,
}

/// What `palermo stats` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub total: Counts,
    /// The last 60 minutes, the current one included.
    pub last_hour: Counts,
    pub by_job: Vec<JobStats>,
    /// The minutes of the last hour that saw any run, oldest first.
    pub minutes: Vec<Minute>,
}

/// Adds what `beat` counted since the worker's previous event to the statistics.
pub(crate) async fn add_increments(tx: &mut Transaction<'_, Any>, beat: &Heartbeat) -> Result<()> {
    let doing = "recording statistics";
    let worker = beat.id.to_string();
    let rows = sqlx::query(
        "SELECT queue, job, processed, failed FROM worker_counters WHERE worker_id = $1",
    )
    .bind(&worker)
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::query(doing))?;
    let mut seen: HashMap<(String, String), (i64, i64)> = HashMap::new();
    for row in &rows {
        let key = (
            row.try_get(0).map_err(StoreError::query(doing))?,
            row.try_get(1).map_err(StoreError::query(doing))?,
        );
        let value = (
            row.try_get(2).map_err(StoreError::query(doing))?,
            row.try_get(3).map_err(StoreError::query(doing))?,
        );
        seen.insert(key, value);
    }
    let minute = beat.sent_at.div_euclid(MINUTE_MS) * MINUTE_MS;
    // In (queue, job) order: two recorders adding to the same statistics rows then take
    // their locks in the same order, so neither waits on the other in a cycle.
    let mut counters: Vec<_> = beat.counters.iter().collect();
    counters.sort_by(|a, b| (&a.queue, &a.job).cmp(&(&b.queue, &b.job)));
    for counter in counters {
        let now = (
            i64::try_from(counter.processed).unwrap_or(i64::MAX),
            i64::try_from(counter.failed).unwrap_or(i64::MAX),
        );
        let before = seen
            .get(&(counter.queue.clone(), counter.job.clone()))
            .copied()
            .unwrap_or((0, 0));
        let delta = ((now.0 - before.0).max(0), (now.1 - before.1).max(0));
        if delta == (0, 0) {
            continue;
        }
        let statements = [
            "INSERT INTO worker_counters (worker_id, queue, job, processed, failed) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (worker_id, queue, job) DO UPDATE SET \
             processed = excluded.processed, failed = excluded.failed",
            "INSERT INTO stats_minutes (minute, queue, job, processed, failed) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (minute, queue, job) DO UPDATE SET \
             processed = stats_minutes.processed + excluded.processed, \
             failed = stats_minutes.failed + excluded.failed",
        ];
        sqlx::query(statements[0])
            .bind(&worker)
            .bind(&counter.queue)
            .bind(&counter.job)
            .bind(before.0.max(now.0))
            .bind(before.1.max(now.1))
            .execute(&mut **tx)
            .await
            .map_err(StoreError::query(doing))?;
        sqlx::query(statements[1])
            .bind(minute)
            .bind(&counter.queue)
            .bind(&counter.job)
            .bind(delta.0)
            .bind(delta.1)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::query(doing))?;
        sqlx::query(
            "INSERT INTO stats_totals (queue, job, processed, failed) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (queue, job) DO UPDATE SET \
             processed = stats_totals.processed + excluded.processed, \
             failed = stats_totals.failed + excluded.failed",
        )
        .bind(&counter.queue)
        .bind(&counter.job)
        .bind(delta.0)
        .bind(delta.1)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query(doing))?;
    }
    Ok(())
}

impl Store {
    /// Totals, the last hour, per queue and job, and the minutes of the last hour.
    pub async fn stats(&self, now: i64) -> Result<Stats> {
        let doing = "reading statistics";
        let since = now.div_euclid(MINUTE_MS) * MINUTE_MS - 59 * MINUTE_MS;
        let totals = sqlx::query(
            "SELECT queue, job, processed, failed FROM stats_totals ORDER BY queue, job",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(doing))?;
        let hour = sqlx::query(
            "SELECT queue, job, CAST(SUM(processed) AS BIGINT), CAST(SUM(failed) AS BIGINT) \
             FROM stats_minutes WHERE minute >= $1 GROUP BY queue, job",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(doing))?;
        let minutes = sqlx::query(
            "SELECT minute, CAST(SUM(processed) AS BIGINT), CAST(SUM(failed) AS BIGINT) \
             FROM stats_minutes WHERE minute >= $1 GROUP BY minute ORDER BY minute",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(doing))?;

        let counts = |row: &sqlx::any::AnyRow, at: usize| -> Result<Counts, sqlx::Error> {
            Ok(Counts {
                processed: row.try_get(at)?,
                failed: row.try_get(at + 1)?,
            })
        };
        let read = || -> Result<Stats, sqlx::Error> {
            let mut last: HashMap<(String, String), Counts> = HashMap::new();
            for row in &hour {
                last.insert((row.try_get(0)?, row.try_get(1)?), counts(row, 2)?);
            }
            let mut stats = Stats {
                total: Counts::default(),
                last_hour: Counts::default(),
                by_job: Vec::new(),
                minutes: Vec::new(),
            };
            for row in &totals {
                let (queue, job): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                let total = counts(row, 2)?;
                let last_hour = last
                    .get(&(queue.clone(), job.clone()))
                    .copied()
                    .unwrap_or_default();
                stats.total.processed += total.processed;
                stats.total.failed += total.failed;
                stats.last_hour.processed += last_hour.processed;
                stats.last_hour.failed += last_hour.failed;
                stats.by_job.push(JobStats {
                    queue,
                    job,
                    total,
                    last_hour,
                });
            }
            for row in &minutes {
                stats.minutes.push(Minute {
                    minute: row.try_get(0)?,
                    counts: counts(row, 1)?,
                });
            }
            Ok(stats)
        };
        read().map_err(StoreError::query(doing))
    }

    /// Deletes minute buckets of counters and histograms older than `before` (the totals
    /// keep their counts); returns how many counter minutes.
    pub async fn prune_stats(&self, before: i64) -> Result<u64> {
        let mut pruned = 0;
        for table in ["stats_minutes", "timing_minutes"] {
            let result = sqlx::query(&format!("DELETE FROM {table} WHERE minute < $1"))
                .bind(before)
                .execute(&self.pool)
                .await
                .map_err(StoreError::query("pruning statistics"))?;
            if table == "stats_minutes" {
                pruned = result.rows_affected();
            }
        }
        Ok(pruned)
    }
}

//! Throughput over time for the dashboard's charts: processed and failed runs per minute
//! over the last hour and per hour over the last days, every bucket present (empty ones as
//! zero) so that a chart's x axis is time, not "minutes that saw a run".
//!
//! Read from the per-minute statistics (`stats_minutes`), which the recorder keeps for
//! [`crate::RecorderConfig::stats_retention`] (7 days by default): older hours read as zero.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::Row;

use crate::{
    error::{Result, StoreError},
    stats::Counts,
    Store,
};

/// A minute, in ms.
pub const MINUTE_MS: i64 = 60_000;
/// An hour, in ms.
pub const HOUR_MS: i64 = 3_600_000;

/// Runs in one time bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// The bucket's start, ms since the epoch.
    #[serde(rename = "start_ms")]
    pub start: i64,
    #[serde(flatten)]
    pub counts: Counts,
}

/// A run of equal buckets, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Series {
    /// Each bucket's length, ms.
    pub step_ms: i64,
    pub buckets: Vec<Bucket>,
}

impl Store {
    /// The last 60 minutes, the current one included, per minute.
    pub async fn minutes_series(&self, now: i64) -> Result<Series> {
        self.series(now, MINUTE_MS, 60).await
    }

    /// The last `days` × 24 hours, the current one included, per hour.
    pub async fn hours_series(&self, now: i64, days: u32) -> Result<Series> {
        self.series(now, HOUR_MS, days.clamp(1, 366) * 24).await
    }

    async fn series(&self, now: i64, step_ms: i64, count: u32) -> Result<Series> {
        let doing = "reading throughput";
        let last = now.div_euclid(step_ms) * step_ms;
        let first = last - (i64::from(count) - 1) * step_ms;
        // Buckets are whole minutes, so integer division finds each minute's bucket.
        let rows = sqlx::query(
            "SELECT (minute - $1) / $2, CAST(SUM(processed) AS BIGINT), CAST(SUM(failed) AS BIGINT) \
             FROM stats_minutes WHERE minute >= $1 AND minute < $3 GROUP BY (minute - $1) / $2",
        )
        .bind(first)
        .bind(step_ms)
        .bind(last + step_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(doing))?;
        let mut seen: HashMap<i64, Counts> = HashMap::new();
        for row in &rows {
            let index: i64 = row.try_get(0).map_err(StoreError::query(doing))?;
            let counts = Counts {
                processed: row.try_get(1).map_err(StoreError::query(doing))?,
                failed: row.try_get(2).map_err(StoreError::query(doing))?,
            };
            seen.insert(index, counts);
        }
        let buckets = (0..i64::from(count))
            .map(|i| Bucket {
                start: first + i * step_ms,
                counts: seen.get(&i).copied().unwrap_or_default(),
            })
            .collect();
        Ok(Series { step_ms, buckets })
    }
}
